/**
 * The event log (DESIGN §8): for every tick, every value that entered the agent from outside
 * (clock readings, random bytes, the DID and signatures it asked for, the wallet balance), its log
 * output, the fuel it burned, what `agent_tick` returned and, if it trapped, why. Replay feeds the
 * recorded values back in order and must reproduce the same state, fuel and outcome.
 *
 * Records accumulate in memory; {@link EventLog.takeSegment} hands them out as one canonical CBOR
 * segment (the one the next checkpoint's `log` field names by CID) and starts a new one.
 * Birth (`_initialize` + `agent_init`) is recorded as tick 0.
 *
 * Segment layout (canonical CBOR, RFC 8949 §4.2.1; documented in docs/ABI.md "Event log"):
 * ```
 * { "v": 1, "ticks": [ { "tick": uint, "events": [[hostcall: text, payload: bytes|int|text]…],
 *                        "fuel": uint, "result": int|null, "trap": text|null } … ] }
 * ```
 */
import { decode, describe, encode } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'

/** Version of the segment layout, the `v` field. */
export const EVENTLOG_VERSION = 1

/**
 * A recorded value: raw bytes (random bytes, signatures, the bits of `env.seed`), an integer
 * (64-bit: clock ns, wallet microcents; always a bigint once recorded) or text (log lines, the DID).
 */
export type Payload = Uint8Array | bigint | string

/** One recorded event: the hostcall's name (e.g. `clock_now`, `env.seed`) and its payload. */
export type Event = [hostcall: string, payload: Payload]

/** Everything recorded for one tick. */
export interface TickRecord {
  /** Tick number; 0 is birth (`_initialize` + `agent_init`). */
  tick: number
  /** The tick's events in the order they happened. */
  events: Event[]
  /** Fuel the tick burned (fuel units), including a tick that trapped. */
  fuel: bigint
  /** What `agent_tick` returned (0 idle, 1 more, 2 finished), or null for birth or a trap. */
  result: number | null
  /** Why the tick trapped (e.g. `out of fuel`, `abort: … at file:1:2`), or null if it did not. */
  trap: string | null
}

/** The end of a tick, as given to {@link EventLog.endTick}. */
export interface TickOutcome {
  fuel: bigint
  result: number | null
  trap: string | null
}

/**
 * Per-tick records of one agent. Not thread-safe (one per agent instance).
 *
 * Usage: `beginTick(n)`, then the hostcalls call `record(...)`, then `endTick({fuel, result, trap})`;
 * at a checkpoint, `takeSegment()`.
 */
export class EventLog {
  #done: TickRecord[] = []
  #open: TickRecord | null = null

  /**
   * Opens tick `tick`'s record.
   * @throws Error if a tick is already open (a runtime bug) or `tick` is not a non-negative integer.
   */
  beginTick (tick: number): void {
    if (this.#open !== null) throw new Error(`EventLog.beginTick(${tick}): tick ${this.#open.tick} is still open`)
    if (!Number.isSafeInteger(tick) || tick < 0) throw new Error(`EventLog.beginTick: bad tick number ${tick}`)
    this.#open = { tick, events: [], fuel: 0n, result: null, trap: null }
  }

  /** The open tick's number, or null between ticks. */
  get openTick (): number | null {
    return this.#open === null ? null : this.#open.tick
  }

  /**
   * Appends one event to the open tick. Bytes are copied (the caller may reuse its buffer);
   * a number is stored as a bigint (it must be a safe integer: no floats in the log).
   * @throws Error when no tick is open (call `beginTick(n)` first; birth is tick 0) or a number payload is not an integer.
   */
  record (hostcall: string, payload: Uint8Array | bigint | number | string): void {
    if (this.#open === null) {
      throw new Error(`EventLog.record(${hostcall}) outside a tick: call beginTick(n) first (birth is tick 0)`)
    }
    let p: Payload
    if (payload instanceof Uint8Array) p = payload.slice()
    else if (typeof payload === 'number') {
      if (!Number.isSafeInteger(payload)) throw new Error(`EventLog.record(${hostcall}): ${payload} is not an integer`)
      p = BigInt(payload)
    } else p = payload
    this.#open.events.push([hostcall, p])
  }

  /** The events recorded so far in the open tick (empty between ticks). Read-only view. */
  get currentEvents (): readonly Event[] {
    return this.#open === null ? [] : this.#open.events
  }

  /**
   * Closes the open tick with its outcome and keeps the record (also for a trap: the trap is what
   * replay must reproduce).
   * @returns the finished record
   * @throws Error when no tick is open.
   */
  endTick (outcome: TickOutcome): TickRecord {
    const r = this.#open
    if (r === null) throw new Error('EventLog.endTick: no tick is open')
    r.fuel = outcome.fuel
    r.result = outcome.result
    r.trap = outcome.trap
    this.#done.push(r)
    this.#open = null
    return r
  }

  /** Closed tick records not yet taken, oldest first. Read-only view. */
  get pending (): readonly TickRecord[] {
    return this.#done
  }

  /** Closed tick records not yet taken whose tick number is > `tick`. */
  ticksSince (tick: number): TickRecord[] {
    return this.#done.filter((r) => r.tick > tick)
  }

  /**
   * Hands out every closed tick record since the last take as one canonical CBOR segment and
   * forgets them. An open tick stays open and goes into the next segment.
   * @returns the segment bytes, or null when there is nothing to take
   */
  takeSegment (): Uint8Array | null {
    if (this.#done.length === 0) return null
    const bytes = EventLog.encodeSegment(this.#done)
    this.#done = []
    return bytes
  }

  /** Encodes tick records as a segment (canonical CBOR, layout in the module docs). */
  static encodeSegment (records: readonly TickRecord[]): Uint8Array {
    return encode({
      v: EVENTLOG_VERSION,
      ticks: records.map((r) => ({ tick: r.tick, events: r.events, fuel: r.fuel, result: r.result, trap: r.trap })),
    })
  }

  /**
   * Decodes and validates a segment. Integers in payloads and `fuel` come back as bigint, bytes as
   * plain Uint8Array copies.
   * @param what names the segment in error messages (e.g. a file name or CID)
   * @throws CheckpointError naming `what` and the field when the bytes are not a valid segment.
   */
  static decodeSegment (bytes: Uint8Array, what = 'event log segment'): TickRecord[] {
    const doc = decode(bytes, what)
    const fail = (msg: string): never => { throw new CheckpointError(`${what}: ${msg}`) }
    const m = asMap(doc)
    if (m === null) return fail('not a CBOR map')
    for (const k of m.keys()) if (k !== 'v' && k !== 'ticks') fail(`unknown field ${JSON.stringify(k.slice(0, 40))} (a segment has only "v" and "ticks")`)
    const v = m.get('v')
    if (v === undefined) fail(`no version field "v" (this igord reads ${EVENTLOG_VERSION})`)
    if (v !== EVENTLOG_VERSION) fail(`unknown event log version ${typeof v === 'number' || typeof v === 'bigint' ? String(v) : describe(v)} (this igord reads ${EVENTLOG_VERSION})`)
    const ticks = m.get('ticks')
    if (!Array.isArray(ticks)) return fail('ticks is not an array')
    return ticks.map((t, i): TickRecord => {
      const at = `ticks[${i}]`
      const r = asMap(t)
      if (r === null) return fail(`${at} is not a map`)
      for (const k of r.keys()) if (!['tick', 'events', 'fuel', 'result', 'trap'].includes(k)) fail(`${at}: unknown field ${k}`)
      const tick = toInt(r.get('tick'))
      if (tick === null || tick < 0n || tick > BigInt(Number.MAX_SAFE_INTEGER)) return fail(`${at}.tick is not a tick number`)
      const fuel = toInt(r.get('fuel'))
      if (fuel === null || fuel < 0n) return fail(`${at}.fuel is not a non-negative integer`)
      const res = r.get('result')
      let result: number | null = null
      if (res !== null) {
        const n = toInt(res)
        if (n === null || n < -(2n ** 31n) || n >= 2n ** 31n) return fail(`${at}.result is not an i32 or null`)
        result = Number(n)
      }
      const trap = r.get('trap')
      if (trap !== null && typeof trap !== 'string') return fail(`${at}.trap is not text or null`)
      const evs = r.get('events')
      if (!Array.isArray(evs)) return fail(`${at}.events is not an array`)
      const events = evs.map((e, j): Event => {
        if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string') return fail(`${at}.events[${j}] is not [hostcall, payload]`)
        const [name, p] = e as [string, unknown]
        if (p instanceof Uint8Array) return [name, new Uint8Array(p)]
        if (typeof p === 'string') return [name, p]
        const n = toInt(p)
        if (n === null) return fail(`${at}.events[${j}] (${name}): payload is not bytes, an integer or text`)
        return [name, n]
      })
      return { tick: Number(tick), events, fuel, result, trap: trap as string | null }
    })
  }
}

function asMap (v: unknown): Map<string, unknown> | null {
  if (v instanceof Map) return v as Map<string, unknown>
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)) {
    return new Map(Object.entries(v))
  }
  return null
}

function toInt (v: unknown): bigint | null {
  if (typeof v === 'bigint') return v
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v)
  return null
}
