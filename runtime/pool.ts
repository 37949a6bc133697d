/**
 * Ticks off the main thread (docs/RATIONALE.md "Ticks in worker threads"): a {@link TickPool} of
 * worker threads (runtime/worker.ts) that hold the agents' instances, checkpoint writers and tick
 * loops, and an {@link AgentHandle} per agent through which the main thread (the CLI's signal
 * handlers, the node's control socket and libp2p) drives it with messages.
 *
 * - Several agents share a worker (each worker runs their loops on its own event loop, as the node
 *   once did on the main thread); an agent stays in the worker it was placed in (the one with the
 *   fewest agents), so the pool's threads tick in parallel.
 * - A wall-clock watchdog: a tick (or a birth's `agent_init`, or a restore) that runs longer than
 *   `tickTimeoutMs` is ended by terminating its worker (worker.terminate() interrupts running wasm).
 *   The tick is rolled back: the agent is restored from its last checkpoint in a fresh worker and
 *   the tick counts as a failure (`max_consecutive_failures` then pauses it, as for a trap). The
 *   other agents of that worker are restored from their last checkpoints too and go on.
 * - Stopping never waits for a tick: when a stopped loop has not ended after `stopGraceMs` because
 *   its worker is inside a tick, the worker is terminated; the agents keep their last checkpoints.
 */
import type { GcReport } from '../checkpoint/gc.ts'
import { availableParallelism } from 'node:os'
import type { EventLoopUtilization } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'
import { CheckpointError, IgordError, ManifestError, ModuleError, StorageError } from '../checkpoint/errors.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import type { CheckpointHeader, Status } from '../checkpoint/header.ts'
import type { TickRecord } from '../hostcalls/eventlog.ts'
import type { Manifest } from '../hostcalls/manifest.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import type { TickResult } from './agent.ts'
import type { Divergence, PrepareStart, ReplayStart } from './replay.ts'
import type { Incoming } from './mailbox.ts'
import { E_MSG_UNKNOWN } from '../checkpoint/envelope.ts'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import type { LoopEnd } from './runner.ts'
import { SETTLE_MS } from './runner.ts'
import { DEFAULT_STOP_GRACE_MS, DEFAULT_TICK_TIMEOUT_MS } from './defaults.ts'
import type { AgentFacts, AgentStatus, DeliverManyResult, WorkerLoopOptions, WorkerMessage, WorkerRequest, WorkerSettings } from './worker.ts'

export type { AgentStatus, DeliverManyResult, WorkerLoopOptions, WorkerSettings } from './worker.ts'

/**
 * Cap on a tick thread's young generation, MiB (Worker `resourceLimits.maxYoungGenerationSizeMb`):
 * 24, a new space of 16 MiB (two semi-spaces of 8 MiB). V8's default for a worker here is 192: its
 * new space grew to 64 MiB (and RSS with it, by ~100 MiB a thread, never given back) under a
 * 1,000-agent node's steady allocation of checkpoint buffers, timers and promises, while the live
 * heap stayed flat. Scavenges come more often; their cost follows what survives, which did not
 * change measurably (docs/RATIONALE.md "Density: tick threads' young generation").
 */
export const TICK_THREAD_YOUNG_MB = 24

/**
 * Test-only: set only by the test launcher test/igord-faulty.ts before it runs the CLI, empty in the
 * shipped CLI. `workerFaults` is passed to every worker thread this process starts (as
 * `workerData.faults`); the worker imports `module` and calls its `installWorkerFaults(spec)`
 * (test/faults.ts: hooks that SIGKILL the process at a runtime/mailbox.ts step).
 */
export const injected: { workerFaults?: { module: string; spec: string } } = {}

export { DEFAULT_HIBERNATE_AFTER_MS, DEFAULT_STOP_GRACE_MS, DEFAULT_TICK_TIMEOUT_MS } from './defaults.ts'

/** Options of {@link TickPool}. */
export interface PoolOptions {
  /** Worker threads (default: `max(2, os.availableParallelism())`). */
  size?: number
  /** Wall-clock limit of one tick, ms (default {@link DEFAULT_TICK_TIMEOUT_MS}). */
  tickTimeoutMs?: number
  /** How long a stop waits for a tick in progress before terminating the worker, ms (default {@link DEFAULT_STOP_GRACE_MS}). */
  stopGraceMs?: number
  /** Receives one-line notes (a watchdog kill, a restore after it). */
  note? (line: string): void
  /**
   * Routes a signed message an agent sent (`message_send`) to its recipient (p2p/node.ts); its
   * outcome goes back to the agent's mailbox. `first`: no earlier message of that agent to that
   * recipient waits for an answer (runtime/mailbox.ts). Absent: every message bounces (E_MSG_UNKNOWN).
   */
  route? (from: AgentHandle, env: Envelope, first: boolean): Promise<SendOutcome>
}

/** Options of {@link AgentHandle.run}: the loop options (ms), an abort signal and a per-tick callback. */
export interface RunOptions extends WorkerLoopOptions {
  /** Aborting stops the loop: after the current tick, or by terminating the worker after the stop grace. */
  signal?: AbortSignal
  /**
   * Called after each failed tick (a trap, or a tick ended by the watchdog, whose `trap` is
   * `tick exceeded wall-clock limit …`), and now and then after successful ones.
   */
  onTick? (r: TickResult): void
}

/** A wall-clock limit as people write it: `10 s`, `250 ms`. */
export function formatLimit (ms: number): string {
  return ms >= 1000 && ms % 100 === 0 ? `${ms / 1000} s` : `${ms} ms`
}

interface Pending {
  id: number
  kind: 'create' | 'run' | 'op'
  resolve (v: unknown): void
  reject (e: Error): void
}

interface WorkerSlot {
  worker: Worker
  busy: Int32Array
  agents: Set<AgentHandle>
  pending: Map<number, Pending>
  /** last seen busy sequence number and when it changed (performance.now(), ms) */
  seq: number
  since: number
  dead: boolean
}

interface Loop {
  opts: RunOptions
  resolve (end: LoopEnd): void
  reject (e: Error): void
  stopRequested: boolean
  startTick: number
  /** ticks of earlier workers (a loop continued after a watchdog kill) */
  ticksBefore: number
}

/** The IgordError classes rebuilt as themselves from a worker's error (others become a plain IgordError with the same `code` and `exitCode`). */
const ERROR_CLASSES: Record<string, new (message: string) => IgordError> = { CheckpointError, ModuleError, ManifestError, StorageError }

function errorFrom (e: { message: string; exitCode: number | null; code?: string; name: string; stack?: string }): Error {
  let err: Error
  const Known = Object.hasOwn(ERROR_CLASSES, e.name) ? ERROR_CLASSES[e.name] : undefined
  if (e.exitCode !== null && Known !== undefined && (e.code === undefined || e.code === new Known('').code)) err = new Known(e.message)
  else if (e.exitCode !== null) err = new IgordError(e.message, e.exitCode, e.code)
  else if (e.name === 'CompileError' || e.name === 'LinkError') err = new ModuleError(e.message) // as the CLI reports them in-process
  else err = new Error(e.message)
  err.name = e.name
  if (e.stack !== undefined) err.stack = `${e.stack}\n    (in a tick worker thread)`
  return err
}

/**
 * One hosted agent, as the main thread sees it: a mirror of its status (updated by the worker
 * after checkpoints, failed ticks and every ~100 ms while it ticks) and async operations that run
 * in its worker. `agent` and `lineage` give the few fields the node reads under the names an
 * in-process {@link import('./session.ts').Session} has.
 */
export class AgentHandle {
  readonly id: number
  readonly name: string
  readonly did: string
  /** This host's peer ID (`12D3KooW…`; empty for an adopted arrival until {@link install}). */
  host: string
  /** The live checkpoint file of the agent. */
  readonly ckptPath: string
  /** The agent's history directory (`<dir>/history/<name>`; empty for an adopted arrival until {@link install}). */
  historyDir: string
  readonly manifest: Manifest
  readonly settings: WorkerSettings
  status: AgentStatus
  /** Receives the agent's log lines. */
  readonly emit: (line: string) => void
  /** @internal the worker holding the agent */
  slot: WorkerSlot
  /** @internal where a fresh worker restores the agent from: its live file, or the arriving checkpoint (not installed yet) */
  origin: { file: string } | { live: LiveCheckpoint }
  /** @internal a handoff linked since the last checkpoint (re-linked after a restore) */
  link: { header: Uint8Array; sig: Uint8Array } | null = null
  /** @internal the loop in progress */
  loop: Loop | null = null
  /** @internal set when the agent could not be restored after its worker was terminated */
  lost: string | null = null
  /** @internal settles when the agent is resident in a worker again after its worker was terminated */
  ready: Promise<void> = Promise.resolve()
  readonly #pool: TickPool

  /** @internal created by {@link TickPool} */
  constructor (pool: TickPool, id: number, slot: WorkerSlot, settings: WorkerSettings, emit: (line: string) => void, facts: AgentFacts, origin: AgentHandle['origin']) {
    this.#pool = pool
    this.id = id
    this.slot = slot
    this.settings = settings
    this.emit = emit
    this.name = facts.name
    this.did = facts.did
    this.host = facts.host
    this.ckptPath = facts.ckptPath
    this.historyDir = facts.historyDir
    this.status = facts.status
    this.manifest = parseManifest(facts.manifest, `${facts.name} (manifest)`)
    this.origin = origin
  }

  /** The fields of an in-process `Agent` the node reads (tick, lifetime fuel, budget in microcents, DID, manifest). */
  get agent (): { tick: number; fuel: bigint; budget: bigint; failures: number; spec: { identity: { did: string }; manifest: Manifest } } {
    const s = this.status
    return { tick: s.tick, fuel: s.fuel, budget: s.budget, failures: s.failures, spec: { identity: { did: this.did }, manifest: this.manifest } }
  }

  /** The lineage fields the node reads: authority epoch and the tick of the last checkpoint. */
  get lineage (): { epoch: number; lastTick: number } { return { epoch: this.status.epoch, lastTick: this.status.lastTick } }

  /** True while a loop runs. */
  get running (): boolean { return this.loop !== null }

  async #op (msg: Record<string, unknown> & { t: WorkerRequest['t'] }): Promise<unknown> {
    await this.ready
    if (this.lost !== null) throw new IgordError(`${this.name}: ${this.lost}`, 1)
    return await this.#pool.request(this.slot, { ...msg, id: this.id } as unknown as WorkerRequest, this.id, 'op')
  }

  /**
   * Runs the agent's tick loop in its worker until it finishes, pauses, exhausts its budget, asks
   * to migrate (with `acceptMigration`), reaches `maxTicks` or is stopped through `opts.signal`.
   * A stopped loop whose tick does not end within the stop grace ends with status `running`, the
   * agent at its last checkpoint. A tick ended by the watchdog is a failure; when it is the
   * `max_consecutive_failures`-th in a row the loop ends `paused` (no checkpoint is written: the
   * last one stays the agent's state).
   * @throws Error when a loop already runs, or the worker fails in a way that loses the agent
   */
  async run (opts: RunOptions): Promise<LoopEnd> {
    if (this.loop !== null) throw new Error(`${this.name}: a loop is already running`)
    await this.ready
    if (this.lost !== null) throw new IgordError(`${this.name}: ${this.lost}`, 1)
    return await new Promise<LoopEnd>((resolve, reject) => {
      const loop: Loop = { opts, resolve, reject, stopRequested: false, startTick: this.status.tick, ticksBefore: 0 }
      this.loop = loop
      const onAbort = () => this.#stop(loop)
      if (opts.signal?.aborted) { loop.stopRequested = true; this.loop = null; resolve({ status: 'running', ticks: 0 }); return }
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      const done = () => { opts.signal?.removeEventListener('abort', onAbort); if (this.loop === loop) this.loop = null }
      loop.resolve = (end) => { done(); resolve(end) }
      loop.reject = (e) => { done(); reject(e) }
      this.startLoop()
    })
  }

  /** @internal (re)sends the `run` request of the current loop to the agent's worker. */
  startLoop (): void {
    const loop = this.loop
    if (loop === null) return
    const { signal: _s, onTick: _t, ...wire } = loop.opts
    const opts: WorkerLoopOptions = { ...wire }
    if (wire.maxTicks !== undefined) opts.maxTicks = Math.max(0, wire.maxTicks - loop.ticksBefore)
    this.#pool.request(this.slot, { t: 'run', re: 0, id: this.id, opts }, this.id, 'run').then(
      (end) => { const e = end as LoopEnd; loop.resolve({ ...e, ticks: e.ticks + loop.ticksBefore }) },
      (e: Error) => { if ((e as { relocated?: boolean }).relocated !== true) loop.reject(e) },
    )
  }

  #stop (loop: Loop): void {
    loop.stopRequested = true
    if (this.lost !== null) { loop.resolve({ status: 'running', ticks: loop.ticksBefore }); return }
    this.slot.worker.postMessage({ t: 'stop', id: this.id } satisfies WorkerRequest)
    this.#pool.graceKill(this.slot, loop, this)
  }

  /**
   * Writes a checkpoint of the agent's committed state now (the loop must be stopped), e.g. the
   * signed `handoff` naming `extra.target`.
   * @returns the history entry's header bytes, signature and header CID
   * @throws StorageError (from the writer), Error when the agent is not installed
   */
  async checkpoint (status: Status, extra: { reason?: string; target?: string } = {}): Promise<{ header: Uint8Array; sig: Uint8Array; cid: string }> {
    const r = await this.#op({ t: 'checkpoint', re: 0, status, extra }) as { header: Uint8Array; sig: Uint8Array; cid: string }
    this.link = null
    return r
  }

  /**
   * The agent's last checkpoint as a live checkpoint (from its worker's memory, or its live file).
   * With the loop stopped and messages taken into the inbox since that checkpoint, it first writes a
   * checkpoint at the same tick that holds them (the one a migration offers carries the whole inbox).
   */
  async lastCheckpoint (): Promise<LiveCheckpoint> { return await this.#op({ t: 'last', re: 0 }) as LiveCheckpoint }

  /**
   * Writes the handoff that brought the agent here into this host's history and links the agent's
   * next checkpoint to it (epoch + 1). Re-applied by itself if the worker is restarted before the next checkpoint.
   */
  async linkHandoff (header: Uint8Array, sig: Uint8Array): Promise<void> {
    this.status = await this.#op({ t: 'link', re: 0, header, sig }) as AgentStatus
    this.link = { header, sig }
  }

  /** Gives an adopted arrival (see {@link TickPool.adopt}) its writer and lineage in `settings.dir`, from `live` (now its live file). */
  async install (live: LiveCheckpoint): Promise<void> {
    const f = await this.#op({ t: 'install', re: 0, live }) as AgentFacts
    this.host = f.host
    this.historyDir = f.historyDir
    this.status = f.status
    this.origin = { file: this.ckptPath }
  }

  /**
   * Takes a message into the agent's inbox (runtime/mailbox.ts): stored durably in its spool before
   * this resolves, then the agent is woken. Works whether its loop runs or not.
   * @returns its seq, or `duplicate: true` when the agent already has a message with that id
   * @throws IgordError exit 11 (DeliveryRefused: inbox full, message too large); StorageError
   */
  async deliver (msg: Incoming): Promise<{ seq: number; duplicate: boolean }> {
    return await this.#op({ t: 'deliver', re: 0, msg }) as { seq: number; duplicate: boolean }
  }

  /**
   * Takes several messages into the agent's inbox, in order, with one fsync of its spool directory
   * (group commit): each stored durably before this resolves. Each comes back taken (`seq`),
   * `duplicate`, `refused` (the DeliveryRefused reason) or `failed` (another error; the ones after
   * it are not tried). Works whether its loop runs or not.
   * @throws StorageError when the spool directory cannot be fsynced (none is acknowledged then)
   */
  async deliverMany (msgs: Incoming[]): Promise<DeliverManyResult[]> {
    return await this.#op({ t: 'deliverMany', re: 0, msgs }) as DeliverManyResult[]
  }

  /**
   * Runs one `igord gc` pass over the agent's history in its worker, between its ticks (checkpoint/gc.ts
   * `gcAgent`; the writer's own pack is left alone and its store forgets what it knew).
   * @throws GcError, StorageError
   */
  async gc (opts: { keepEvery: number; keepLast: number; maxPacks?: number; dryRun?: boolean }): Promise<GcReport> { return await this.#op({ t: 'gc', re: 0, opts }) as GcReport }

  /** Test-only fault `forge-final`: flips the last byte of memory, runs a tick and checkpoints it; returns that tick. */
  async forge (): Promise<number> { return await this.#op({ t: 'forge', re: 0 }) as number }

  /** Removes the agent from its worker (stopping a loop first); the handle is unusable afterwards. */
  async close (): Promise<void> {
    if (this.lost !== null) return
    try { await this.#op({ t: 'drop', re: 0 }) } catch { /* the worker is gone */ }
    this.lost = 'closed'
    this.slot.agents.delete(this)
  }
}

/**
 * A pool of tick worker threads. Create agents with {@link birth}, {@link resume} or
 * {@link adopt}; {@link close} terminates every worker (the agents keep their last checkpoints).
 */
export class TickPool {
  readonly size: number
  readonly tickTimeoutMs: number
  readonly stopGraceMs: number
  readonly #note: (line: string) => void
  readonly #route: PoolOptions['route']
  readonly #slots: (WorkerSlot | null)[]
  readonly #handles = new Map<number, AgentHandle>()
  /** log emitters of agents being created (a birth logs before its handle exists) */
  readonly #early = new Map<number, (line: string) => void>()
  #next = 1
  #re = 1
  #closing = false
  #closed: Promise<void> | null = null
  /** the worker that did the last code work ({@link #codeSlot}) */
  #lastCode: WorkerSlot | null = null
  readonly #timer: NodeJS.Timeout

  /** @throws RangeError for a size or timeout that is not a positive integer */
  constructor (opts: PoolOptions = {}) {
    this.size = opts.size ?? Math.max(2, availableParallelism())
    this.tickTimeoutMs = opts.tickTimeoutMs ?? DEFAULT_TICK_TIMEOUT_MS
    this.stopGraceMs = opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS
    if (!Number.isSafeInteger(this.size) || this.size < 1) throw new RangeError(`pool size must be a positive integer, got ${this.size}`)
    if (!Number.isSafeInteger(this.tickTimeoutMs) || this.tickTimeoutMs < 1) throw new RangeError(`tick timeout must be a positive integer of ms, got ${this.tickTimeoutMs}`)
    this.#note = opts.note ?? (() => {})
    this.#route = opts.route
    this.#slots = new Array(this.size).fill(null)
    this.#timer = setInterval(() => this.#watch(), Math.max(10, Math.min(100, Math.floor(this.tickTimeoutMs / 4))))
    this.#timer.unref()
  }

  /**
   * Event-loop utilization of each live worker thread since `since` (a previous result, same
   * order) or since it started: `active` and `idle` ms and `utilization` (0..1). A thread inside a
   * long tick is fully active.
   */
  utilization (since?: EventLoopUtilization[]): EventLoopUtilization[] {
    return this.#slots.filter((s): s is WorkerSlot => s !== null && !s.dead).map((s, i) => s.worker.performance.eventLoopUtilization(since?.[i]))
  }

  /** Live worker threads (created on demand, up to {@link size}). */
  get threads (): number { return this.#slots.filter((s) => s !== null && !s.dead).length }

  #spawn (index: number): WorkerSlot {
    const busy = new Int32Array(new SharedArrayBuffer(16))
    const url = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url)
    const worker = new Worker(url, { workerData: { busy, ...(injected.workerFaults === undefined ? {} : { faults: injected.workerFaults }) }, resourceLimits: { maxYoungGenerationSizeMb: TICK_THREAD_YOUNG_MB } })
    const slot: WorkerSlot = { worker, busy, agents: new Set(), pending: new Map(), seq: 0, since: performance.now(), dead: false }
    worker.on('message', (m: WorkerMessage) => this.#message(slot, m))
    worker.on('error', (e: Error) => { if (!slot.dead) this.#kill(slot, Atomics.load(busy, 0) || null, `the worker thread failed: ${e.message.split('\n')[0]}`, true) })
    worker.on('exit', () => { if (!slot.dead) this.#kill(slot, null, 'the worker thread exited', false) })
    this.#slots[index] = slot
    return slot
  }

  /**
   * The worker for a migration target's code work (warming an arriving module, then its replay):
   * the one that did the last, while it lives — its instrumentation helper (and binaryen) is
   * likely still loaded (runtime/code-cache.ts, kept 30 s), and a replay queued behind the warm of
   * its module finds it in that worker's memory instead of instrumenting it again elsewhere — else
   * the one {@link #place} picks.
   */
  #codeSlot (): WorkerSlot {
    const s = this.#lastCode
    if (s !== null && !s.dead && this.#slots.includes(s) && !this.#closing) return s
    this.#lastCode = this.#place()
    return this.#lastCode
  }

  #place (): WorkerSlot {
    if (this.#closing) throw new Error('the tick pool is closed')
    let best = -1
    for (let i = 0; i < this.#slots.length; i++) {
      const s = this.#slots[i]
      if (s === null) return this.#spawn(i)
      // fewest agents; among equals, fewest requests in flight (a migration target's replay and
      // restore, sent together, then run side by side)
      const b = best < 0 ? null : this.#slots[best]!
      if (b === null || s.agents.size < b.agents.size || (s.agents.size === b.agents.size && s.pending.size < b.pending.size)) best = i
    }
    return this.#slots[best]!
  }

  /** @internal sends a request and returns its answer */
  request (slot: WorkerSlot, msg: WorkerRequest, id: number, kind: Pending['kind']): Promise<unknown> {
    if (slot.dead) return Promise.reject(new Error('the agent\'s worker thread is gone'))
    const re = this.#re++
    return new Promise((resolve, reject) => {
      slot.pending.set(re, { id, kind, resolve, reject })
      slot.worker.postMessage({ ...msg, re })
    })
  }

  #message (slot: WorkerSlot, m: WorkerMessage): void {
    if ('re' in m) {
      const p = slot.pending.get(m.re)
      if (p === undefined) return
      slot.pending.delete(m.re)
      if (m.ok) p.resolve(m.value)
      else p.reject(errorFrom(m.error))
      return
    }
    const h = this.#handles.get(m.id)
    if (h === undefined || h.slot !== slot) { if (m.ev === 'emit') this.#early.get(m.id)?.(m.line); return }
    if (m.ev === 'emit') h.emit(m.line)
    else if (m.ev === 'send') {
      const route = this.#route ?? (async (): Promise<SendOutcome> => ({ ok: false, retry: false, code: E_MSG_UNKNOWN, reason: 'this host routes no messages' }))
      route(h, m.env, m.first !== false).catch((e: Error): SendOutcome => ({ ok: false, retry: true, code: E_MSG_UNKNOWN, reason: e.message.split('\n')[0] }))
        .then((outcome) => { if (!slot.dead) slot.worker.postMessage({ t: 'sent', ref: m.ref, outcome } satisfies WorkerRequest) })
    } else if (m.ev === 'status') h.status = m.status
    else { h.status = m.status; h.loop?.opts.onTick?.(m.r) }
  }

  async #create (settings: WorkerSettings, emit: (line: string) => void, msg: (id: number) => WorkerRequest, origin: (f: AgentFacts) => AgentHandle['origin'], what: string): Promise<AgentHandle> {
    const slot = this.#place()
    const id = this.#next++
    let facts: AgentFacts
    this.#early.set(id, emit)
    try {
      facts = await this.request(slot, msg(id), id, 'create') as AgentFacts
    } catch (e) {
      if ((e as { watchdog?: boolean }).watchdog === true) throw new ModuleError(`${what} failed: it exceeded the wall-clock limit of ${formatLimit(this.tickTimeoutMs)}`)
      throw e
    } finally { this.#early.delete(id) }
    const h = new AgentHandle(this, id, slot, settings, emit, facts, origin(facts))
    if (slot.dead) { // the worker was terminated (by another agent's runaway tick) right after answering
      this.#handles.set(id, h)
      h.ready = this.#relocate(h, this.#place(), null, '')
      await h.ready
      return h
    }
    this.#handles.set(id, h)
    slot.agents.add(h)
    return h
  }

  /**
   * Births a new agent in a worker (as runtime/session.ts `startAgent`: `agent_init`, genesis checkpoint).
   * @throws ModuleError, ManifestError, StorageError as `startAgent`; ModuleError when birth exceeds the tick timeout
   */
  birth (settings: WorkerSettings, a: { name: string; wasm: Uint8Array; wasmFile: string; manifest: Uint8Array; manifestFile: string; budget: bigint }, emit: (line: string) => void): Promise<AgentHandle> {
    return this.#create(settings, emit, (id) => ({ t: 'birth', re: 0, id, settings, a }), (f) => ({ file: f.ckptPath }), `${a.wasmFile}: birth`)
  }

  /**
   * Restores an agent from its live checkpoint file in a worker (as runtime/session.ts `resumeAgent`).
   * @throws CheckpointError, ModuleError, ManifestError, StorageError as `resumeAgent`
   */
  resume (settings: WorkerSettings, file: string, emit: (line: string) => void): Promise<AgentHandle> {
    return this.#create(settings, emit, (id) => ({ t: 'resume', re: 0, id, settings, file, failures: 0 }), (f) => ({ file: f.ckptPath }), `${file}: restore`)
  }

  /**
   * Restores an arriving agent (a verified live checkpoint) in a worker without a lineage yet:
   * {@link AgentHandle.install} gives it one once the arrival is committed.
   * @throws ModuleError, ManifestError when the agent cannot run here
   */
  adopt (settings: WorkerSettings, name: string, live: LiveCheckpoint, emit: (line: string) => void): Promise<AgentHandle> {
    return this.#create(settings, emit, (id) => ({ t: 'adopt', re: 0, id, settings, name, live }), () => ({ live }), `${name}: restore`)
  }

  /**
   * Runs runtime/replay.ts `replaySegment(start, records, next)` in a worker (a migration target's
   * check of the ticks it receives), each replayed tick under the wall-clock limit; in the worker of
   * the last {@link warmCode}, behind it (its module is then at hand there).
   * @returns ticks re-executed and the first divergence, as `replaySegment`
   * @throws ModuleError / ManifestError as `replaySegment`; Error `a replayed tick exceeded the wall-clock limit of …`
   */
  async replay (start: ReplayStart, records: readonly TickRecord[], next: CheckpointHeader): Promise<{ ticks: number; divergence: Divergence | null }> {
    const slot = this.#codeSlot()
    const id = this.#next++
    try {
      return await this.request(slot, { t: 'replay', re: 0, id, start, records, next }, id, 'create') as { ticks: number; divergence: Divergence | null }
    } catch (e) {
      if ((e as { watchdog?: boolean }).watchdog === true) throw new Error(`a replayed tick exceeded the wall-clock limit of ${formatLimit(this.tickTimeoutMs)}`)
      throw e
    }
  }

  /**
   * Instruments `wasm` for a memory cap of `memoryLimitPages` in a worker, through the on-disk code
   * cache of data directory `dir` (runtime/code-cache.ts `loadInstrumented`), so that the replay and
   * restore that follow find it there: a migration target calls it while the offer's pages are
   * still arriving. Runs in the worker of the last one while it lives (its instrumentation helper,
   * with binaryen, is kept for a while after each use). With `prepare`, that worker then prepares the
   * replay of `prepare.start` (runtime/replay.ts `Replayer.prepare`, `pages` the indices of its
   * non-zero pages) for the {@link replay} that follows; it holds at most one, for at most a minute.
   * @throws ModuleError / ManifestError as `loadInstrumented` (a failed prepare throws nothing: the
   *   replay then restores the usual way)
   */
  async warmCode (wasm: Uint8Array, memoryLimitPages: number, dir: string, prepare?: { start: PrepareStart; pages: number[] }): Promise<void> {
    const slot = this.#codeSlot()
    const id = this.#next++
    await this.request(slot, { t: 'code', re: 0, id, wasm, memoryLimitPages, dir, ...(prepare === undefined ? {} : { prepare }) }, id, 'create')
  }

  #watch (): void {
    const now = performance.now()
    for (const slot of this.#slots) {
      if (slot === null || slot.dead) continue
      const seq = Atomics.load(slot.busy, 1)
      if (seq !== slot.seq) { slot.seq = seq; slot.since = now; continue }
      const id = Atomics.load(slot.busy, 0)
      if (id !== 0 && now - slot.since > this.tickTimeoutMs) {
        this.#kill(slot, id, `tick exceeded wall-clock limit ${formatLimit(this.tickTimeoutMs)}`, true)
      }
    }
  }

  /** @internal after the stop grace, terminates the worker if the loop is still inside a tick */
  graceKill (slot: WorkerSlot, loop: Loop, h: AgentHandle): void {
    const t = setTimeout(() => {
      if (h.loop !== loop || slot.dead || h.slot !== slot) return
      if (Atomics.load(slot.busy, 0) !== 0) this.#kill(slot, null, 'stopped during a tick', false)
    }, this.stopGraceMs)
    t.unref()
  }

  /**
   * Terminates a worker and restores its agents in a fresh one. `culprit` (an agent id or null) is
   * the agent whose tick ran too long; with `counts`, that is one more consecutive failure for it.
   */
  #kill (slot: WorkerSlot, culprit: number | null, reason: string, counts: boolean): void {
    if (slot.dead) return
    slot.dead = true
    // the worker is blocked (or gone): what it stored about the tick in progress is final
    const tick = Atomics.load(slot.busy, 2)
    const before = Atomics.load(slot.busy, 3)
    void slot.worker.terminate()
    const index = this.#slots.indexOf(slot)
    const agents = [...slot.agents]
    slot.agents.clear()
    for (const [re, p] of slot.pending) {
      slot.pending.delete(re)
      const e = new Error(`the worker thread was terminated: ${reason}`) as Error & { watchdog?: boolean; relocated?: boolean }
      e.watchdog = p.id === culprit
      e.relocated = p.kind === 'run' // the loop goes on (or ends) in #relocate
      p.reject(e)
    }
    if (index >= 0) this.#slots[index] = null
    if (this.#closing) {
      for (const h of agents) { h.lost = 'the pool is closed'; h.loop?.resolve({ status: 'running', ticks: h.loop.ticksBefore + Math.max(0, h.status.tick - h.loop.startTick) }) }
      return
    }
    const fresh = this.#place()
    for (const h of agents) {
      const fault = h.id === culprit ? { tick, failures: before + (counts ? 1 : 0), counts } : null
      if (fault !== null) this.#note(`${h.name}: ${reason} at tick ${tick}; rolled back to its last checkpoint (tick ${h.status.lastTick})${counts ? `, failure ${fault.failures} of ${h.manifest.maxFailures}` : ''}`)
      h.ready = this.#relocate(h, fresh, fault, reason)
    }
  }

  /**
   * Restores `h` in `slot` from its origin (live file, or the arriving checkpoint) and re-links a
   * pending handoff. Its loop, if any, ends at once when it was being stopped or when `fault`
   * (the tick the watchdog ended) is one failure too many; otherwise it goes on in `slot`.
   */
  async #relocate (h: AgentHandle, slot: WorkerSlot, fault: { tick: number; failures: number; counts: boolean } | null, reason: string): Promise<void> {
    const loop = h.loop
    const failures = fault?.failures ?? h.status.failures
    const rolledBack = h.status.lastTick
    let resume = false
    h.status = { ...h.status, tick: rolledBack, failures }
    if (loop !== null) {
      const ran = Math.max(0, (fault?.tick ?? h.status.tick + 1) - 1 - loop.startTick) + (fault?.counts === true ? 1 : 0)
      loop.ticksBefore += ran
      loop.startTick = rolledBack
      if (fault?.counts === true) loop.opts.onTick?.({ tick: fault.tick, result: null, trap: `${reason} (rolled back to the checkpoint at tick ${rolledBack})`, fuel: 0n, cost: 0n, changedPages: 0 })
      if (loop.stopRequested) loop.resolve({ status: 'running', ticks: loop.ticksBefore })
      else if (fault?.counts === true && failures >= h.manifest.maxFailures) {
        loop.resolve({ status: 'paused', reason: `${failures} consecutive failed ticks, last at tick ${fault.tick}: ${reason}`, ticks: loop.ticksBefore })
      } else resume = true
    }
    h.slot = slot
    slot.agents.add(h)
    try {
      const msg: WorkerRequest = 'file' in h.origin
        ? { t: 'resume', re: 0, id: h.id, settings: h.settings, file: h.origin.file, failures }
        : { t: 'adopt', re: 0, id: h.id, settings: h.settings, name: h.name, live: h.origin.live }
      const f = await this.request(slot, msg, h.id, 'create') as AgentFacts
      h.status = { ...f.status, failures }
      if (h.link !== null) h.status = { ...await this.request(slot, { t: 'link', re: 0, id: h.id, header: h.link.header, sig: h.link.sig }, h.id, 'op') as AgentStatus, failures }
    } catch (e) {
      slot.agents.delete(h)
      if (slot.dead && !this.#closing) { h.ready = this.#relocate(h, this.#place(), null, reason); return await h.ready } // terminated again meanwhile
      h.lost = this.#closing ? 'the pool is closed' : `cannot be restored after its worker was terminated: ${(e as Error).message.split('\n')[0]}`
      if (!this.#closing) this.#note(`${h.name}: ${h.lost}`)
      if (resume && h.loop === loop) loop!.reject(new IgordError(`${h.name}: ${h.lost}`, 1))
      return
    }
    if (resume && h.loop === loop) h.startLoop()
  }

  /**
   * Stops every loop (each ends after its tick, or its worker is terminated after the stop grace)
   * and terminates the workers; agents are not restored elsewhere from then on. The agents keep
   * their last checkpoints. Idempotent; never throws.
   */
  async close (): Promise<void> {
    if (this.#closed !== null) return await this.#closed
    this.#closing = true
    this.#closed = (async () => {
      const loops: Promise<unknown>[] = []
      for (const h of this.#handles.values()) {
        const loop = h.loop
        if (loop === null) continue
        loops.push(new Promise<void>((resolve) => {
          const { resolve: r0, reject: j0 } = loop
          loop.resolve = (e) => { r0(e); resolve() }
          loop.reject = (e) => { j0(e); resolve() }
        }))
        if (!loop.stopRequested) { loop.stopRequested = true; h.slot.worker.postMessage({ t: 'stop', id: h.id } satisfies WorkerRequest); this.graceKill(h.slot, loop, h) }
      }
      // a stopping loop may wait SETTLE_MS for HTTP requests in flight before its final checkpoint
      await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, this.stopGraceMs + SETTLE_MS + 1000).unref())])
      clearInterval(this.#timer)
      for (const slot of this.#slots) if (slot !== null) this.#kill(slot, null, 'the pool is closing', false)
    })()
    await this.#closed
  }
}
