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
 * What one tick may record is bounded ({@link TickLimits}, docs/ABI.md "Per-tick limits"): the
 * number of events, the bytes of log output, the bytes of randomness and the total size of its
 * events. A hostcall asks {@link EventLog.admit} before it takes an outside value or does work
 * proportional to a length, and {@link EventLog.record} checks again; crossing a bound throws
 * {@link TickLimitTrap}, which traps the tick (rolled back, counted as a failure, the trap text
 * recorded). Because the check runs before the value is taken, replay reaches the same trap at the
 * same event.
 *
 * Segment layout (canonical CBOR, RFC 8949 §4.2.1; documented in docs/ABI.md "Event log"):
 * ```
 * { "v": 1, "ticks": [ { "tick": uint, "events": [[hostcall: text, payload: bytes|int|text]…],
 *                        "fuel": uint, "result": int|null, "trap": text|null } … ] }
 * ```
 */
import { decode, describe, encode, headBytes, intBytes, putBytes, putHead, putInt, putText } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'

/** Version of the segment layout, the `v` field. */
export const EVENTLOG_VERSION = 1

/**
 * A host function refused to go on (memory access out of bounds, `env.abort`, a per-tick limit):
 * the tick traps with this message, which is what the event log records as the trap reason.
 * (Defined here so that the event log can throw it; `hostcalls/igor.ts` re-exports it.)
 */
export class HostTrap extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'HostTrap'
  }
}

/**
 * Per-tick bounds on what the host records for one tick (docs/ABI.md "Per-tick limits"). Each is
 * a positive integer; the manifest may lower the defaults ({@link DEFAULT_TICK_LIMITS}) through
 * `resource_limits` (field names in {@link TICK_LIMIT_FIELDS}), a node caps what it accepts.
 */
export interface TickLimits {
  /** Events one tick may record (every hostcall answer, log line and output line is one). */
  events: number
  /** Bytes of log output one tick may produce: `log_emit` lines and WASI stdout/stderr, UTF-8. */
  logBytes: number
  /** Bytes of randomness one tick may take: `rand_bytes`, `env.seed`, WASI `random_get`, WASI 0.2 `wasi:random/*` (hostcalls/wasi2.ts). */
  randomBytes: number
  /**
   * Total size of one tick's events, bytes: every payload (bytes and UTF-8 text by length, an
   * integer as 8) plus the messages `agent_sign` reads from memory.
   */
  eventBytes: number
}

/**
 * Default per-tick limits: 10,000 events, 1 MiB of log output, 1 MiB of randomness, 4 MiB of
 * events in all. A tick at every limit holds about 5 MiB of host memory in its record.
 */
export const DEFAULT_TICK_LIMITS: Readonly<TickLimits> = Object.freeze({
  events: 10_000,
  logBytes: 1024 * 1024,
  randomBytes: 1024 * 1024,
  eventBytes: 4 * 1024 * 1024,
})

/** The manifest field (`resource_limits.<field>`) of each {@link TickLimits} member. */
export const TICK_LIMIT_FIELDS: Readonly<Record<keyof TickLimits, string>> = Object.freeze({
  events: 'max_events_per_tick',
  logBytes: 'max_log_bytes_per_tick',
  randomBytes: 'max_random_bytes_per_tick',
  eventBytes: 'max_event_bytes_per_tick',
})

/** What each limit counts, for the trap message (`10001 events`, `1049600 log bytes`). */
const TICK_LIMIT_UNITS: Readonly<Record<keyof TickLimits, string>> = { events: 'events', logBytes: 'log bytes', randomBytes: 'random bytes', eventBytes: 'event bytes' }

/** Hostcalls (event names) whose payload is log output, counted against `logBytes`. */
export const LOG_EVENTS: ReadonlySet<string> = new Set(['log_emit', 'wasi.stdout', 'wasi.stderr'])
/** Hostcalls (event names) whose payload is randomness, counted against `randomBytes`. */
export const RANDOM_EVENTS: ReadonlySet<string> = new Set(['rand_bytes', 'env.seed', 'wasi.random_get',
  // WASI 0.2 (hostcalls/wasi2.ts WASI2_EVENTS)
  'wasi:random/random.get-random-bytes', 'wasi:random/random.get-random-u64', 'wasi:random/insecure.get-insecure-random-bytes',
  'wasi:random/insecure.get-insecure-random-u64', 'wasi:random/insecure-seed.insecure-seed'])

/**
 * A tick crossed one of its {@link TickLimits}. The message names the limit, e.g.
 * `tick limit: 10001 events > max_events_per_tick 10000`.
 */
export class TickLimitTrap extends HostTrap {
  /** The manifest field of the limit crossed, e.g. `max_events_per_tick`. */
  readonly field: string
  /** What the tick would have reached (events or bytes). */
  readonly reached: number
  /** The limit. */
  readonly limit: number
  constructor (which: keyof TickLimits, reached: number, limit: number) {
    super(`tick limit: ${reached} ${TICK_LIMIT_UNITS[which]} > ${TICK_LIMIT_FIELDS[which]} ${limit}`)
    this.name = 'TickLimitTrap'
    this.field = TICK_LIMIT_FIELDS[which]
    this.reached = reached
    this.limit = limit
  }
}

/**
 * Closed tick records an event log should hold before the runtime writes a checkpoint (which takes
 * them as a segment), whatever its checkpoint interval: 50,000 events or 8 MiB of events
 * ({@link EventLog.segmentFull}). With the per-tick limits this bounds the records held in memory
 * (and one segment) to these plus one tick.
 */
export const SEGMENT_FLUSH_EVENTS = 50_000
/** See {@link SEGMENT_FLUSH_EVENTS}: bytes (counted as the per-tick `eventBytes`). */
export const SEGMENT_FLUSH_BYTES = 8 * 1024 * 1024

/** What the open tick has recorded so far, in the units of {@link TickLimits}. */
export interface TickUsage { events: number; logBytes: number; randomBytes: number; eventBytes: number }

/** Size of a payload in bytes as the limits count it: bytes and UTF-8 text by length, integers 8. */
export function payloadBytes (payload: Uint8Array | bigint | number | string): number {
  if (payload instanceof Uint8Array) return payload.length
  if (typeof payload === 'string') return Buffer.byteLength(payload, 'utf8')
  return 8
}

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
  #limits: TickLimits = { ...DEFAULT_TICK_LIMITS }
  #usage: TickUsage = { events: 0, logBytes: 0, randomBytes: 0, eventBytes: 0 }
  #pendingEvents = 0
  #pendingBytes = 0

  /**
   * @param limits the per-tick limits to enforce (default {@link DEFAULT_TICK_LIMITS}); the runtime
   *   sets the manifest's with {@link EventLog.setLimits}
   */
  constructor (limits: TickLimits = DEFAULT_TICK_LIMITS) {
    this.setLimits(limits)
  }

  /**
   * Sets the per-tick limits (from the next check on).
   * @throws Error when a limit is not a positive safe integer
   */
  setLimits (limits: TickLimits): void {
    for (const k of Object.keys(TICK_LIMIT_FIELDS) as (keyof TickLimits)[]) {
      const v = limits[k]
      if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`EventLog.setLimits: ${TICK_LIMIT_FIELDS[k]} must be a positive integer, got ${String(v)}`)
    }
    this.#limits = { events: limits.events, logBytes: limits.logBytes, randomBytes: limits.randomBytes, eventBytes: limits.eventBytes }
  }

  /** The per-tick limits in force. */
  get limits (): Readonly<TickLimits> { return this.#limits }

  /** What the open tick has recorded so far (zeros between ticks). A copy. */
  get usage (): TickUsage { return { ...this.#usage } }

  /** Events in closed tick records not yet taken by {@link EventLog.takeSegment}. */
  get pendingEvents (): number { return this.#pendingEvents }

  /** Total size (as the limits count it, bytes) of the events in closed tick records not yet taken. */
  get pendingBytes (): number { return this.#pendingBytes }

  /**
   * True when the closed records not yet taken reach {@link SEGMENT_FLUSH_EVENTS} events or
   * {@link SEGMENT_FLUSH_BYTES} bytes: the runtime should checkpoint now (runtime/runner.ts).
   */
  get segmentFull (): boolean { return this.#pendingEvents >= SEGMENT_FLUSH_EVENTS || this.#pendingBytes >= SEGMENT_FLUSH_BYTES }

  /**
   * Opens tick `tick`'s record.
   * @throws Error if a tick is already open (a runtime bug) or `tick` is not a non-negative integer.
   */
  beginTick (tick: number): void {
    if (this.#open !== null) throw new Error(`EventLog.beginTick(${tick}): tick ${this.#open.tick} is still open`)
    if (!Number.isSafeInteger(tick) || tick < 0) throw new Error(`EventLog.beginTick: bad tick number ${tick}`)
    this.#open = { tick, events: [], fuel: 0n, result: null, trap: null }
    this.#usage = { events: 0, logBytes: 0, randomBytes: 0, eventBytes: 0 }
  }

  /** The open tick's number, or null between ticks. */
  get openTick (): number | null {
    return this.#open === null ? null : this.#open.tick
  }

  /**
   * The usage the open tick would reach with one more event of `hostcall` of `bytes` bytes, or
   * throws {@link TickLimitTrap} naming the first limit it would cross (checked in the order
   * events, log bytes, random bytes, event bytes). Between ticks nothing is counted.
   */
  #check (hostcall: string, bytes: number): TickUsage {
    const u = this.#usage
    const next: TickUsage = {
      events: u.events + 1,
      logBytes: u.logBytes + (LOG_EVENTS.has(hostcall) ? bytes : 0),
      randomBytes: u.randomBytes + (RANDOM_EVENTS.has(hostcall) ? bytes : 0),
      eventBytes: u.eventBytes + bytes,
    }
    for (const k of ['events', 'logBytes', 'randomBytes', 'eventBytes'] as const) {
      if (next[k] > this.#limits[k]) throw new TickLimitTrap(k, next[k], this.#limits[k])
    }
    return next
  }

  /**
   * Checks, without recording anything, that the open tick may record one more event of
   * `hostcall` whose size will be at least `bytes` (payload bytes, plus any input counted with it).
   * Hostcalls call it before they take an outside value (so that live runs and replay trap at
   * the same point) or do work proportional to a length the agent chose.
   * @param bytes a lower bound of the event's size in bytes (a non-negative number)
   * @throws TickLimitTrap when the event would cross a per-tick limit
   */
  admit (hostcall: string, bytes: number): void {
    if (this.#open !== null) this.#check(hostcall, bytes)
  }

  /**
   * Appends one event to the open tick. Bytes are copied (the caller may reuse its buffer);
   * a number is stored as a bigint (it must be a safe integer: no floats in the log). The event
   * counts against the per-tick limits with its payload's size plus `inputBytes` (bytes the
   * hostcall read from the agent's memory besides the payload, e.g. the message `agent_sign` signed).
   * @throws TickLimitTrap (nothing recorded) when the event would cross a per-tick limit
   * @throws Error when no tick is open (call `beginTick(n)` first; birth is tick 0) or a number payload is not an integer.
   */
  record (hostcall: string, payload: Uint8Array | bigint | number | string, inputBytes = 0): void {
    if (this.#open === null) {
      throw new Error(`EventLog.record(${hostcall}) outside a tick: call beginTick(n) first (birth is tick 0)`)
    }
    this.#usage = this.#check(hostcall, payloadBytes(payload) + inputBytes)
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
    this.#pendingEvents += r.events.length
    this.#pendingBytes += this.#usage.eventBytes
    this.#usage = { events: 0, logBytes: 0, randomBytes: 0, eventBytes: 0 }
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
    this.#pendingEvents = 0
    this.#pendingBytes = 0
    return bytes
  }

  /**
   * Encodes tick records as a segment (canonical CBOR, layout in the module docs): framed by hand
   * in one buffer (a segment is encoded at every checkpoint), or, for a value the log never records
   * (a float, an integer outside (-2^64, 2^64), text with a lone surrogate, another type), by the
   * generic encoder, which throws TypeError for what it cannot encode. Same bytes either way
   * (test/eventlog.test.ts, the fuzz round trip).
   */
  static encodeSegment (records: readonly TickRecord[]): Uint8Array {
    return framedSegment(records) ?? encode({
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

/**
 * Bytes of `s` as a CBOR text string (head + UTF-8), or -1 when `s` holds a lone surrogate (no
 * UTF-8 form: left to the generic encoder, whatever it does with it).
 */
function textSize (s: string): number {
  if (!s.isWellFormed()) return -1
  const n = Buffer.byteLength(s)
  return headBytes(n) + n
}

/** `s` encoded as a CBOR text string (one {@link textSize} accepts). */
function textItem (s: string): Uint8Array {
  const b = Buffer.allocUnsafe(textSize(s))
  putText(b, 0, s)
  return b
}

/** Encoded hostcall names (a few dozen distinct ones), by name. */
const nameBytes = new Map<string, Uint8Array>()
/** The canonical CBOR map keys of a segment and of a tick record (written in their canonical order, RFC 8949 §4.2.1: by encoded bytes). */
const KEY = Object.fromEntries(['v', 'ticks', 'fuel', 'tick', 'trap', 'events', 'result'].map((k) => [k, textItem(k)])) as Record<string, Uint8Array>

/**
 * {@link EventLog.encodeSegment} framed by hand: one pass to size the segment, one to write it.
 * Null for anything the generic encoder must handle or refuse.
 */
function framedSegment (records: readonly TickRecord[]): Uint8Array | null {
  let size = 1 + KEY.v.length + 1 + KEY.ticks.length + 9
  for (const r of records) {
    const t = intBytes(r.tick); const f = intBytes(r.fuel)
    if (t < 0 || f < 0) return null
    size += 1 + KEY.fuel.length + f + KEY.tick.length + t + KEY.trap.length + KEY.events.length + 9 + KEY.result.length
    if (r.trap === null) size += 1; else { const x = typeof r.trap === 'string' ? textSize(r.trap) : -1; if (x < 0) return null; size += x }
    if (r.result === null) size += 1; else { const x = intBytes(r.result); if (x < 0) return null; size += x }
    for (const e of r.events) {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string') return null
      let name = nameBytes.get(e[0])
      if (name === undefined) {
        if (textSize(e[0]) < 0) return null
        name = textItem(e[0])
        if (nameBytes.size < 256) nameBytes.set(e[0], name)
      }
      size += 1 + name.length
      const v = e[1]
      if (v instanceof Uint8Array) { if (v.constructor !== Uint8Array && !Buffer.isBuffer(v)) return null; size += 9 + v.length } else if (typeof v === 'bigint') { const x = intBytes(v); if (x < 0) return null; size += x } else if (typeof v === 'string') { const x = textSize(v); if (x < 0) return null; size += x } else return null
    }
  }
  const b = Buffer.allocUnsafe(size)
  let p = putHead(b, 0, 5, 2)
  b.set(KEY.v, p); p += KEY.v.length
  p = putHead(b, p, 0, EVENTLOG_VERSION)
  b.set(KEY.ticks, p); p += KEY.ticks.length
  p = putHead(b, p, 4, records.length)
  for (const r of records) {
    p = putHead(b, p, 5, 5)
    b.set(KEY.fuel, p); p += KEY.fuel.length
    p = putInt(b, p, r.fuel)
    b.set(KEY.tick, p); p += KEY.tick.length
    p = putInt(b, p, r.tick)
    b.set(KEY.trap, p); p += KEY.trap.length
    if (r.trap === null) b[p++] = 0xf6; else p = putText(b, p, r.trap)
    b.set(KEY.events, p); p += KEY.events.length
    p = putHead(b, p, 4, r.events.length)
    for (const [hostcall, v] of r.events) {
      b[p++] = 0x82
      const name = nameBytes.get(hostcall)
      if (name !== undefined) { b.set(name, p); p += name.length } else p = putText(b, p, hostcall)
      if (v instanceof Uint8Array) p = putBytes(b, p, v)
      else if (typeof v === 'bigint') p = putInt(b, p, v)
      else p = putText(b, p, v)
    }
    b.set(KEY.result, p); p += KEY.result.length
    if (r.result === null) b[p++] = 0xf6; else p = putInt(b, p, r.result)
  }
  return b.subarray(0, p)
}
