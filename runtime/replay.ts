/**
 * Replay (DESIGN §8, docs/FORMAT.md "Replay"): re-executes an agent's recorded ticks from an
 * archived checkpoint with the values its event log recorded, and checks that every tick produces
 * the same record (events, fuel, result, trap) and that each following checkpoint's header agrees
 * (tick, lifetime fuel, budget, state root). It never reads a real clock or random source and uses
 * no network: every outside value comes from the log.
 *
 * How recorded values are served, generically over hostcalls (igor, `env.seed`, WASI, later ones):
 * a host function that takes an outside value asks `ctx.now()` or `ctx.randomFill(buf)` and then
 * records exactly that value as its next event. So when the agent asks, the answer is the recorded
 * event at the position the tick's log has reached: an integer for `now`, bytes of the requested
 * length for `randomFill`. `agent_sign` is answered with the recorded signature after checking it
 * against the DID's public key (replay holds no secret key). Everything else the agent sees (its DID,
 * wallet balance, log output) is recomputed and compared with the record. Top-ups are host inputs:
 * the `fund` events a tick record starts with are checked (checkpoint/fund.ts `verifyTopUp`, each
 * applied once) and handed back to `Agent.runTick`, which applies them before the tick is charged.
 *
 * Entry points: {@link Replayer} (restore or birth, then `runSegment` per checkpoint — the piece a
 * migration target reuses to replay the ticks before accepting an agent), {@link replaySegment},
 * {@link replayChain} over a verified history, {@link replayHistory} (verify + replay, what
 * `igord verify --replay` runs) and {@link formatReplay}.
 */
import { existsSync } from 'node:fs'
import { dirname } from 'node:path'
import { readArchivedBlob, archivedState } from '../checkpoint/archive.ts'
import { codeCacheDir } from '../checkpoint/layout.ts'
import { CheckpointError, IgordError } from '../checkpoint/errors.ts'
import { decodeTopUp, FUND_EVENT, verifyTopUp } from '../checkpoint/fund.ts'
import type { TopUp } from '../checkpoint/fund.ts'
import type { CheckpointHeader } from '../checkpoint/header.ts'
import { nextPageTable, verifyChain } from '../checkpoint/history.ts'
import type { PageTable, VerifiedChain, VerifyReport } from '../checkpoint/history.ts'
import { publicKeyFromDid, verifySignature } from '../checkpoint/identity.ts'
import type { Identity } from '../checkpoint/identity.ts'
import { stateRoot } from '../checkpoint/state.ts'
import type { GlobalValue } from '../checkpoint/state.ts'
import { decodeIo, decodeMessage } from '../checkpoint/io.ts'
import { E_TOO_MANY } from '../hostcalls/http.ts'
import type { IoState, Message } from '../checkpoint/io.ts'
import { EventLog } from '../hostcalls/eventlog.ts'
import type { Event, Payload, TickRecord } from '../hostcalls/eventlog.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { Agent } from './agent.ts'
import { tickCost } from './cost.ts'
import type { AgentSpec, RestoreState } from './agent.ts'
import type { InputSource } from './inputs.ts'
import type { CodeCache } from './code-cache.ts'

/**
 * The first difference replay found. `tick` is the tick whose re-execution differs (for a header
 * check, the checkpoint's tick); `field` names what differs — `event 2 (log_emit)`, `events`,
 * `trap`, `result`, `fuel`, `log` (the segment does not cover the ticks), `header fuel`,
 * `header budget`, `state root`, `code`; `message` is one line, e.g. `fuel 1234 ≠ recorded 1240`;
 * `file` the history entry of the checkpoint whose segment or header was being checked, when known.
 */
export interface Divergence { tick: number; field: string; message: string; file?: string }

/**
 * A checkpoint to start replay from: its header, code, manifest and state (archived or live).
 * The replayed agent's image keeps `pages` (RestoreState `borrow`): nothing may write them while it
 * replays.
 */
export interface ReplayStart extends Omit<RestoreState, 'tick' | 'fuel' | 'borrow'> {
  /** Its header (tick and lifetime fuel come from here). */
  header: CheckpointHeader
  /** Original wasm bytes (CID = header.code). */
  wasm: Uint8Array
  /** Manifest bytes (CID = header.manifest). */
  manifest: Uint8Array
  /**
   * The on-disk cache of instrumented code to use (runtime/code-cache.ts); absent: memory only.
   * Crossing to a tick worker (runtime/pool.ts `replay`) it carries only `dir` and `maxBytes`.
   */
  codeCache?: CodeCache
  /** Its I/O state (the blob `header.io` names; absent: empty). Replay needs its request counters. */
  io?: IoState
}

/** What {@link Replayer.prepare} needs of a {@link ReplayStart}: everything but the state itself. */
export type PrepareStart = Pick<ReplayStart, 'header' | 'wasm' | 'manifest' | 'pageCount' | 'codeCache'>

/**
 * A replay prepared by {@link Replayer.prepare}, used by the {@link Replayer.restore} whose start
 * has the same `key` (the checkpoint's agent, tick, code, manifest, state root, budget, price and
 * page count) and ignored by any other.
 */
export interface PreparedReplay { key: string; spec: AgentSpec; inputs: RecordedInputs; agent: Agent }

/**
 * The key of a {@link PreparedReplay} for `s`: a restore of a start with the same key may use it.
 * A string naming the checkpoint's agent, tick, code and manifest CIDs, state root, budget, price and page count.
 */
export function preparedKey (s: PrepareStart): string {
  const h = s.header
  return `${h.agent} ${h.tick} ${h.code} ${h.manifest} ${Buffer.from(h.state).toString('hex')} ${h.budget} ${h.price} ${s.pageCount}`
}

/** Thrown inside a host function when the agent asks for a value the log does not hold at that point. */
class ReplayMismatch extends Error {}

function describePayload (p: Payload): string {
  if (typeof p === 'bigint') return p.toString()
  if (typeof p === 'string') return JSON.stringify(p.length > 80 ? p.slice(0, 80) + '…' : p)
  const hex = Buffer.from(p.subarray(0, 16)).toString('hex')
  return `${p.length} bytes ${hex}${p.length > 16 ? '…' : ''}`
}

function samePayload (a: Payload, b: Payload): boolean {
  if (a instanceof Uint8Array) return b instanceof Uint8Array && Buffer.compare(a, b) === 0
  return typeof a === typeof b && a === b
}

/**
 * The replay input source: serves `now()` and `randomFill()` from the recorded tick, at the
 * position the tick's event log has reached (see the module doc), and answers `agent_sign` with the
 * recorded signature once it verifies for the message and the agent's public key. The first
 * mismatch is kept in `mismatch` and also thrown into the agent (which traps the tick).
 */
class RecordedInputs implements InputSource {
  readonly log: EventLog
  readonly publicKey: Uint8Array
  record: TickRecord | null = null
  mismatch: { field: string; message: string } | null = null

  constructor (log: EventLog, publicKey: Uint8Array) {
    this.log = log
    this.publicKey = publicKey
  }

  beginTick (): void {}

  /** The recorded event the hostcall now being answered will record, or a mismatch. */
  private next (wants: string, ok: (p: Payload) => boolean): Payload {
    const k = this.log.currentEvents.length
    const events = this.record?.events ?? []
    const ev: Event | undefined = events[k]
    if (ev !== undefined && ok(ev[1])) return ev[1]
    const field = `event ${k} (${ev === undefined ? 'none recorded' : ev[0]})`
    const message = ev === undefined
      ? `event ${k}: the agent asked for ${wants}, but the log holds only ${events.length} events for this tick`
      : `event ${k}: the agent asked for ${wants}, but the log records ${ev[0]} ${describePayload(ev[1])} here`
    if (this.mismatch === null) this.mismatch = { field, message }
    throw new ReplayMismatch(`replay: ${message}`)
  }

  now (): bigint {
    return this.next('the time', (p) => typeof p === 'bigint') as bigint
  }

  randomFill (buf: Uint8Array): void {
    buf.set(this.next(`${buf.length} random bytes`, (p) => p instanceof Uint8Array && p.length === buf.length) as Uint8Array)
  }

  /**
   * What `inbox_next` reads: the message the recorded `inbox` / `inbox_peek` event holds here, or
   * null for a recorded empty inbox (`inbox` 0).
   */
  inboxPeek (): Message | null {
    const p = this.next('its inbox', (x) => x instanceof Uint8Array || x === 0n)
    const ev = this.record!.events[this.log.currentEvents.length]
    if (ev[0] !== 'inbox' && ev[0] !== 'inbox_peek') this.next('its inbox', () => false) // a value of another hostcall: mismatch
    return p instanceof Uint8Array ? decodeMessage(p, `tick ${this.record!.tick} inbox event`) : null
  }

  /**
   * Whether `message_send` found the outbox full: the recorded event at this point is the int
   * E_TOO_MANY (acknowledgements are host facts, not replayed; the rest of the call is recomputed
   * and compared).
   */
  outboxFull (): boolean {
    const ev = this.record?.events[this.log.currentEvents.length]
    return ev !== undefined && ev[0] === 'message_send' && ev[1] === BigInt(E_TOO_MANY)
  }

  sign (msg: Uint8Array): Uint8Array {
    return this.next('a signature', (p) => p instanceof Uint8Array && p.length === 64 && verifySignature(this.publicKey, msg, p)) as Uint8Array
  }
}

/** Compares a re-executed tick's record with the recorded one; the first difference, or null. */
export function compareRecords (replayed: TickRecord, recorded: TickRecord): { field: string; message: string } | null {
  const a = replayed.events; const b = recorded.events
  for (let k = 0; k < Math.max(a.length, b.length); k++) {
    const x = a[k]; const y = b[k]
    if (x === undefined) return { field: `event ${k} (${y[0]})`, message: `event ${k} (${y[0]}) is missing: the log records ${describePayload(y[1])}, the replayed tick made only ${a.length} events` }
    if (y === undefined) return { field: `event ${k} (${x[0]})`, message: `event ${k} (${x[0]}) ${describePayload(x[1])} is not in the log (it records ${b.length} events)` }
    if (x[0] !== y[0]) return { field: `event ${k} (${y[0]})`, message: `event ${k}: replayed ${x[0]} ≠ recorded ${y[0]}` }
    if (!samePayload(x[1], y[1])) return { field: `event ${k} (${y[0]})`, message: `event ${k} (${y[0]}) differs: ${describePayload(x[1])} ≠ recorded ${describePayload(y[1])}` }
  }
  if (replayed.trap !== recorded.trap) return { field: 'trap', message: `trap ${replayed.trap === null ? 'none' : JSON.stringify(replayed.trap)} ≠ recorded ${recorded.trap === null ? 'none' : JSON.stringify(recorded.trap)}` }
  if (replayed.result !== recorded.result) return { field: 'result', message: `result ${String(replayed.result)} ≠ recorded ${String(recorded.result)}` }
  if (replayed.fuel !== recorded.fuel) return { field: 'fuel', message: `fuel ${replayed.fuel} ≠ recorded ${recorded.fuel}` }
  return null
}

export { tickCost } from './cost.ts'

/** What {@link Replayer.compareState} may use to say which part of the state differs. */
export interface ArchivedView { pageCount: number; table: PageTable; globals: GlobalValue[] }

/**
 * One agent under replay. Create it with {@link Replayer.restore} (from a checkpoint) or
 * {@link Replayer.birth} (from the genesis record), then call {@link Replayer.runSegment} with each
 * following checkpoint's header and recorded ticks.
 */
export class Replayer {
  /** The agent being re-executed (tick, fuel, budget follow the replay). */
  readonly agent: Agent
  /** Ticks re-executed so far (birth counts as one). */
  ticks = 0
  readonly #inputs: RecordedInputs
  /** Ids (hex) of the top-ups applied in the ticks replayed so far → the tick that applied each. */
  readonly topUpIds = new Map<string, number>()

  private constructor (agent: Agent, inputs: RecordedInputs) {
    this.agent = agent
    this.#inputs = inputs
  }

  static #spec (wasm: Uint8Array, manifestBytes: Uint8Array, header: CheckpointHeader, budget: bigint, codeCache?: CodeCache): { spec: AgentSpec; inputs: RecordedInputs } {
    const manifest = parseManifest(manifestBytes, `manifest ${header.manifest}`)
    const publicKey = publicKeyFromDid(header.agent)
    const log = new EventLog()
    const inputs = new RecordedInputs(log, publicKey)
    // Replay never holds the agent's secret key: agent_sign is served from the log (checked).
    const identity: Identity = { seed: new Uint8Array(32), publicKey, did: header.agent }
    const spec: AgentSpec = {
      wasm, manifest, identity, budget, price: header.price, inputs, emit: () => {}, file: `code ${header.code}`,
      signer: (msg) => inputs.sign(msg), log,
      inbox: { peek: () => inputs.inboxPeek(), take: () => {} },
      outboxFull: () => inputs.outboxFull(),
      ...(codeCache === undefined ? {} : { codeCache }),
    }
    return { spec, inputs }
  }

  /**
   * Restores the agent of checkpoint `start` (memory, globals, tick, fuel, budget).
   * @throws ModuleError / ManifestError when the archived code or manifest is rejected, or the
   *   state does not fit the module
   */
  static restore (start: ReplayStart, prepared?: PreparedReplay | null): Replayer {
    const h = start.header
    const ready = prepared != null && prepared.key === preparedKey(start) ? prepared : null
    const { spec, inputs } = ready ?? Replayer.#spec(start.wasm, start.manifest, h, h.budget, start.codeCache)
    if (start.io !== undefined) spec.io = start.io
    const agent = Agent.restore(spec, { tick: h.tick, fuel: h.fuel, pageCount: start.pageCount, pages: start.pages, ...(start.digests === undefined ? {} : { digests: start.digests }), globals: start.globals, borrow: true }, ready?.agent)
    return new Replayer(agent, inputs)
  }

  /**
   * Prepares {@link Replayer.restore} of `start` before its pages are at hand: the module loaded
   * and instantiated, memory grown to `start.pageCount` pages and committed where `pages` (the
   * indices of its non-zero pages) will be copied (runtime/agent.ts `Agent.prepare`). A migration
   * target does this while the pages are in transit, so that the replay that gates its `pending`
   * answer copies into memory the kernel has already mapped. Null when it cannot help (a component).
   * @throws ModuleError / ManifestError as {@link Replayer.restore}
   */
  static prepare (start: PrepareStart, pages: readonly number[]): PreparedReplay | null {
    const h = start.header
    const { spec, inputs } = Replayer.#spec(start.wasm, start.manifest, h, h.budget, start.codeCache)
    const agent = Agent.prepare(spec, start.pageCount, pages)
    return agent === null ? null : { key: preparedKey(start), spec, inputs, agent }
  }

  /**
   * Replays birth (`_initialize` + `agent_init`) from the genesis checkpoint's recorded tick 0 and
   * checks the genesis header. The budget before birth is not recorded; it is taken as
   * `genesis.budget + cost(recorded fuel)` (exact unless birth exhausted the budget, which then
   * ends at 0 either way).
   * @param codeCache the on-disk cache of instrumented code (runtime/code-cache.ts); absent: memory only
   * @returns the replayer (null when birth itself diverged) and the first divergence, if any
   * @throws ModuleError / ManifestError when the archived code or manifest is rejected
   */
  static birth (wasm: Uint8Array, manifest: Uint8Array, genesis: CheckpointHeader, record: TickRecord, file?: string, codeCache?: CodeCache): { replayer: Replayer | null; divergence: Divergence | null } {
    const at = (field: string, message: string): Divergence => ({ tick: 0, field, message, ...(file === undefined ? {} : { file }) })
    if (record.tick !== 0) return { replayer: null, divergence: at('log', `the genesis log starts at tick ${record.tick}, not at birth (tick 0)`) }
    const budget = genesis.budget + tickCost(record.fuel, genesis.price, 1n << 64n)
    const { spec, inputs } = Replayer.#spec(wasm, manifest, genesis, budget, codeCache)
    inputs.record = record
    let agent: Agent | null = null
    try {
      agent = Agent.birth(spec)
    } catch (e) {
      // a trap at birth throws; the log still holds the replayed record of tick 0
      const replayed = spec.log!.pending[0]
      if (replayed === undefined) throw e
      const d = inputs.mismatch ?? compareRecords(replayed, record)
      if (d !== null) return { replayer: null, divergence: at(d.field, d.message) }
      throw e
    }
    const r = new Replayer(agent, inputs)
    r.ticks = 1
    const replayed = agent.log.pending[0]
    const d = inputs.mismatch ?? compareRecords(replayed, record)
    if (d !== null) return { replayer: null, divergence: at(d.field, d.message) }
    agent.log.takeSegment()
    return { replayer: r, divergence: r.checkHeader(genesis, file) }
  }

  /**
   * Re-executes the ticks of one segment with their recorded inputs and checks the checkpoint
   * that ends it: `records` must be exactly ticks `agent.tick + 1 … next.tick` (the segment named
   * by `next.log`), charged at `next.price`.
   * @param view the archived page table and globals of `next`, used only to say which page or
   *   global differs when the state root does
   * @returns the first divergence, or null when every tick and the header agree
   */
  runSegment (records: readonly TickRecord[], next: CheckpointHeader, file?: string, view?: ArchivedView): Divergence | null {
    const a = this.agent
    const at = (tick: number, field: string, message: string): Divergence => ({ tick, field, message, ...(file === undefined ? {} : { file }) })
    a.spec.price = next.price
    for (let k = 0; k < records.length; k++) {
      const rec = records[k]
      const want = a.tick + 1
      if (rec.tick !== want) return at(want, 'log', `the log holds tick ${rec.tick} where tick ${want} was expected`)
      if (rec.tick > next.tick) return at(rec.tick, 'log', `the log of the checkpoint at tick ${next.tick} holds tick ${rec.tick}`)
      const topUps = this.#topUpsOf(rec)
      if (!Array.isArray(topUps)) return at(want, topUps.field, topUps.message)
      this.#inputs.record = rec
      this.#inputs.mismatch = null
      let r: ReturnType<Agent['runTick']>
      try { r = a.runTick(topUps) } catch (e) {
        // refused before the tick began: top-ups no host could have applied in one tick
        if (topUps.length === 0 || a.log.openTick !== null) throw e
        return at(want, 'event 0 (fund)', `the tick's top-ups cannot be applied: ${(e as Error).message}`)
      }
      if (r === null) return at(want, 'budget', `the budget was 0 before tick ${want}: the agent could not have run it`)
      this.ticks++
      const replayed = a.log.pending[a.log.pending.length - 1]
      const d = this.#inputs.mismatch ?? compareRecords(replayed, rec)
      if (d !== null) return at(want, d.field, d.message)
    }
    this.#inputs.record = null
    a.log.takeSegment()
    if (a.tick !== next.tick) return at(a.tick + 1, 'log', `the log ends at tick ${a.tick} but the checkpoint is at tick ${next.tick}`)
    return this.checkHeader(next, file, view)
  }

  /**
   * The top-ups a tick record starts with (its leading `fund` events), decoded and checked for
   * this agent, each id applied once in the replayed range; or the first bad one as a divergence
   * field (`event 0 (fund)`) and message (`event 0 (fund): bad signature: …`).
   */
  #topUpsOf (rec: TickRecord): TopUp[] | { field: string; message: string } {
    const out: TopUp[] = []
    const did = this.agent.spec.identity.did
    for (let k = 0; k < rec.events.length && rec.events[k][0] === FUND_EVENT; k++) {
      const bad = (why: string) => ({ field: `event ${k} (fund)`, message: `event ${k} (fund): ${why}` })
      const p = rec.events[k][1]
      if (!(p instanceof Uint8Array)) return bad(`the payload is ${describePayload(p)}, not a CBOR Message`)
      let t: TopUp
      try { t = decodeTopUp(p, 'top-up') } catch (e) { return bad((e as Error).message) }
      const why = verifyTopUp(t, did)
      if (why !== null) return bad(why)
      const id = Buffer.from(t.id).toString('hex')
      const first = this.topUpIds.get(id)
      if (first !== undefined) return bad(`top-up ${id} was already applied at tick ${first}`)
      this.topUpIds.set(id, rec.tick)
      out.push(t)
    }
    return out
  }

  /** Checks the agent's lifetime fuel, budget and state root against a checkpoint header. */
  checkHeader (h: CheckpointHeader, file?: string, view?: ArchivedView): Divergence | null {
    const a = this.agent
    const at = (field: string, message: string): Divergence => ({ tick: h.tick, field, message, ...(file === undefined ? {} : { file }) })
    if (a.fuel !== h.fuel) return at('header fuel', `lifetime fuel ${a.fuel} ≠ ${h.fuel} in the checkpoint`)
    if (a.budget !== h.budget) return at('header budget', `budget ${a.budget} ≠ ${h.budget} microcents in the checkpoint (price ${h.price})`)
    const s = a.checkpointState()
    const root = stateRoot({ pages: s.pageCount, digests: s.digests, globals: s.globals, fuel: a.fuel, budget: a.budget })
    if (Buffer.compare(root, h.state) === 0) return null
    return at('state root', `state root differs${view === undefined ? '' : ` (${whatDiffers(s.pageCount, s.digests, s.globals, view)})`}`)
  }
}

function whatDiffers (pageCount: number, digests: [number, Uint8Array][], globals: GlobalValue[], v: ArchivedView): string {
  if (pageCount !== v.pageCount) return `memory is ${pageCount} pages, the checkpoint has ${v.pageCount}`
  const mine = new Map(digests)
  for (let i = 0; i < pageCount; i++) {
    const x = mine.get(i); const y = v.table[i]
    if ((x === undefined) !== (y === undefined) || (x !== undefined && y !== undefined && Buffer.compare(x, y) !== 0)) return `page ${i} differs`
  }
  for (let k = 0; k < Math.max(globals.length, v.globals.length); k++) {
    const x = globals[k]; const y = v.globals[k]
    if (x === undefined || y === undefined || x.index !== y.index || Buffer.compare(x.bytes, y.bytes) !== 0) return `global ${(x ?? y).index} differs`
  }
  return 'fuel or budget'
}

/**
 * Replays one segment from a checkpoint: restore `start` (into `prepared` when it was made for
 * it: {@link Replayer.prepare}), re-execute `records`, check `next`.
 * @returns ticks re-executed and the first divergence (null: the segment replays exactly)
 * @throws ModuleError / ManifestError when the code or manifest is rejected
 */
export function replaySegment (start: ReplayStart, records: readonly TickRecord[], next: CheckpointHeader, prepared?: PreparedReplay | null): { ticks: number; divergence: Divergence | null } {
  const r = Replayer.restore(start, prepared)
  const divergence = r.runSegment(records, next)
  return { ticks: r.ticks, divergence }
}

/**
 * Result of replaying a history. `valid`: the history verified and every re-executed tick and
 * checkpoint agreed. `ticks`: ticks re-executed (birth counts as one); `range`: first and last
 * tick re-executed (null when none); `from`: the tick of the checkpoint replay started from
 * (null: birth); `checkpoints`: headers checked; `divergence`: the first difference;
 * `error`: why replay could not run (e.g. a blob that cannot be read); `verify`: the plain report.
 */
export interface ReplayReport {
  valid: boolean; did: string | null; ticks: number; range: [number, number] | null; from: number | null
  checkpoints: number; divergence: Divergence | null; error: string | null; verify: VerifyReport
}

/** Options of {@link replayChain}. */
export interface ReplayOptions {
  /** Start from the newest checkpoint at or before this tick (default: replay birth). */
  from?: number
  /** Called after each checkpoint's segment replays exactly (tick of that checkpoint). */
  onCheckpoint? (tick: number): void
  /**
   * The cache of instrumented code (runtime/code-cache.ts). Default: `<dir>/cache/code` of the data
   * directory holding the chain's first blob store (a cache that cannot be written is only not
   * used); null: memory only.
   */
  codeCache?: CodeCache | null
}

/**
 * Replays a verified chain (checkpoint/history.ts `verifyChain`) from birth, or from the
 * checkpoint at or before `opts.from` (the genesis checkpoint, tick 0, always replays birth): for each following checkpoint it reads the segment its
 * `log` names from the blob stores, re-executes it, and checks the header. Where the agent was
 * resumed in its real life (a checkpoint whose every archived copy is a base entry was written by a
 * new session), replay restores a fresh instance from the archived state too.
 * Never throws for bad data: a problem reading the archive is `error`.
 */
export function replayChain (chain: VerifiedChain, opts: ReplayOptions = {}): ReplayReport {
  const links = chain.links
  const report: ReplayReport = { valid: false, did: chain.report.did, ticks: 0, range: null, from: null, checkpoints: 0, divergence: null, error: null, verify: chain.report }
  if (!chain.report.valid || links.length === 0) { report.error = 'the history is not valid (see verify)'; return report }
  const dirs = chain.blobDirs
  const genesis = links[0].entry.parsed
  const codeCache = opts.codeCache === undefined ? defaultCodeCache(dirs) : opts.codeCache ?? undefined
  // checkpoints whose pages igord gc pruned (the GC record) are never restored from: replay starts,
  // and restarts where the agent was resumed, from the nearest kept snapshot at or before
  const kept = (k: number): boolean => k === 0 || !chain.pruned.has(links[k].cid)
  const keptTables = new Map<number, PageTable>()
  let startIndex = 0
  if (opts.from !== undefined) {
    for (let k = 0; k < links.length; k++) if (links[k].entry.parsed.tick <= opts.from && kept(k)) startIndex = k
  }
  let replayer: Replayer | null = null
  let table: PageTable = []
  let firstTick: number | null = null
  const segment = (h: CheckpointHeader, file: string): TickRecord[] => {
    if (h.log === null) return []
    return EventLog.decodeSegment(readArchivedBlob(dirs, h.log, `event log of tick ${h.tick} (${file})`), `event log ${h.log} (${file})`)
  }
  try {
    const wasm = readArchivedBlob(dirs, genesis.code, 'code')
    const manifest = readArchivedBlob(dirs, genesis.manifest, 'manifest')
    for (let k = 0; k < links.length; k++) {
      const link = links[k]
      const h = link.entry.parsed
      const view = (t: PageTable): ArchivedView => ({ pageCount: link.entry.pageCount, table: t, globals: link.entry.globals })
      const prevTable = table
      const next = nextPageTable(link.entry, k === 0 ? null : table, false)
      if (next.table === null) throw new CheckpointError(`${link.file}: cannot rebuild the page table (a delta entry without its parent)`)
      if (kept(k)) keptTables.set(k, next.table)
      if (k < startIndex) { table = next.table; continue }
      if (k === startIndex) {
        if (k === 0) {
          const recs = segment(h, link.file)
          if (recs.length !== 1) {
            report.divergence = { tick: 0, field: 'log', message: `the genesis log holds ${recs.length} tick records, expected birth only`, file: link.file }
            break
          }
          const b = Replayer.birth(wasm, manifest, h, recs[0], link.file, codeCache)
          report.checkpoints++
          firstTick = 0
          report.ticks = 1
          if (b.divergence !== null) { report.divergence = b.divergence; break }
          replayer = b.replayer
        } else {
          report.from = h.tick
        }
        table = next.table
        opts.onCheckpoint?.(h.tick)
        continue
      }
      // Where the real agent was restored from the previous checkpoint, do the same.
      if (replayer === null || link.copies.every((c) => c.entry.base)) {
        let j = k - 1
        while (j > 0 && !kept(j)) j--
        const before = links[j]
        const ticksSoFar = replayer?.ticks ?? 0
        const topUpIds = replayer?.topUpIds ?? new Map<string, number>()
        const bh = before.entry.parsed
        const io = bh.io === undefined ? undefined : decodeIo(readArchivedBlob(dirs, bh.io, `I/O state of tick ${bh.tick}`), `I/O state ${bh.io}`)
        replayer = Replayer.restore({ header: bh, wasm, manifest, ...(codeCache === undefined ? {} : { codeCache }), ...archivedState(dirs, j === k - 1 ? prevTable : keptTables.get(j)!, before.entry), ...(io === undefined ? {} : { io }) })
        for (const [id, tick] of topUpIds) if (tick <= bh.tick) replayer.topUpIds.set(id, tick)
        // the pruned checkpoints between the kept snapshot and this one: replayed again, checked again
        for (let m = j + 1; m < k; m++) {
          const lm = links[m]
          const d = replayer.runSegment(segment(lm.entry.parsed, lm.file), lm.entry.parsed, lm.file)
          if (d !== null) { report.divergence = d; break }
        }
        if (report.divergence !== null) break
        replayer.ticks = ticksSoFar
        for (const [id, tick] of topUpIds) replayer.topUpIds.set(id, tick)
      }
      table = next.table
      const recs = segment(h, link.file)
      if (firstTick === null && recs.length > 0) firstTick = recs[0].tick
      const d = replayer.runSegment(recs, h, link.file, view(table))
      report.ticks = replayer.ticks
      report.checkpoints++
      if (d !== null) { report.divergence = d; break }
      opts.onCheckpoint?.(h.tick)
    }
  } catch (e) {
    if (!(e instanceof IgordError)) throw e
    report.error = e.message
  }
  const last = links[links.length - 1].entry.parsed.tick
  if (firstTick !== null && report.ticks > 0) report.range = [firstTick, firstTick + report.ticks - 1]
  report.valid = report.divergence === null && report.error === null && (report.range === null || report.range[1] === last)
  return report
}

/** The code cache of the data directory holding `blobDirs[0]` (`<dir>/blobs` → `<dir>/cache/code`), when that blob store exists. */
function defaultCodeCache (blobDirs: readonly string[]): CodeCache | undefined {
  const b = blobDirs[0]
  if (b === undefined || !existsSync(b)) return undefined
  return { dir: codeCacheDir(dirname(b)) }
}

/**
 * `igord verify --replay`: verifies the histories at `paths` merged (checkpoint/history.ts) and,
 * when they are VALID, replays the whole life (or from `opts.from`).
 */
export function replayHistory (paths: string[], opts: ReplayOptions = {}): ReplayReport {
  return replayChain(verifyChain(paths), opts)
}

/**
 * Human rendering of a {@link ReplayReport}. Valid: `VALID: replayed <n> ticks (ticks a–b),
 * <k> checkpoints checked, <did>`. Otherwise the verify report when the history itself is INVALID,
 * or `INVALID: replay diverges at tick <t> (<field>): <message>` with the checkpoint file, or
 * `INVALID: cannot replay: <error>`.
 */
export function formatReplay (r: ReplayReport, formatVerify: (v: VerifyReport) => string): string {
  if (!r.verify.valid) return formatVerify(r.verify)
  const from = r.from === null ? '' : ` from the checkpoint at tick ${r.from}`
  const range = r.range === null ? 'no ticks' : `${r.ticks} tick${r.ticks === 1 ? '' : 's'} (ticks ${r.range[0]}–${r.range[1]})`
  if (r.valid) return `VALID: replayed ${range}${from}, ${r.checkpoints} checkpoint${r.checkpoints === 1 ? '' : 's'} checked, ${r.did}`
  if (r.divergence !== null) {
    const d = r.divergence
    return [
      `INVALID: replay diverges at tick ${d.tick} (${d.field}): ${d.message}`,
      `  in the segment of ${d.file ?? 'the checkpoint'}; ${r.ticks} tick${r.ticks === 1 ? '' : 's'} re-executed${from}`,
    ].join('\n')
  }
  return `INVALID: cannot replay: ${r.error ?? 'unknown error'}`
}
