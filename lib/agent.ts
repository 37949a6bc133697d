/**
 * The library's agents: {@link birth} a new agent from a wasm module or {@link resume} one from its
 * live checkpoint, then drive it through an {@link Agent}: `run`, `tick`, `stop`, `checkpoint`,
 * `close`. Each agent runs in its own tick worker thread (runtime/pool.ts `TickPool` of size 1,
 * with the wall-clock watchdog) and holds the agent lock of its data directory, exactly as
 * `igord run` / `igord resume` do.
 */
import { basename, resolve } from 'node:path'
import { EXIT, IgordError, ManifestError } from '../checkpoint/errors.ts'
import { checkAgentName, nameOfLive } from '../checkpoint/layout.ts'
import { assertNotWritten, describeHolder, lockAgent } from '../checkpoint/lock.ts'
import type { Lock } from '../checkpoint/lock.ts'
import type { GcReport } from '../checkpoint/gc.ts'
import { checkWithinCaps, DEFAULT_NODE_CAPS, parseManifest } from '../hostcalls/manifest.ts'
import type { NodeCaps } from '../hostcalls/manifest.ts'
import type { TickResult } from '../runtime/agent.ts'
import type { AgentHandle, AgentStatus, TickPool } from '../runtime/pool.ts'
import type { LoopEnd } from '../runtime/runner.ts'
import { readInput } from './tools.ts'

export type { LoopEnd } from '../runtime/runner.ts'
export type { TickResult } from '../runtime/agent.ts'

/**
 * An agent's counters as last reported by its worker: `tick`, lifetime `fuel` (units), `budget`
 * (microcents), consecutive `failures`, authority `epoch`, `lastTick` (tick of the last checkpoint
 * written) and `hibernated`.
 */
export type AgentState = AgentStatus

/** Settings shared by {@link birth} and {@link resume}. */
interface HostOptions {
  /** Host price, microcents per million fuel (default 1000n). */
  price?: bigint
  /** Simulation mode: clock and random bytes derived from this seed and the tick number. */
  simSeed?: string
  /** Wall-clock limit of one tick, ms (default 10000): a longer tick is ended, rolled back and counted as a failure. */
  tickTimeoutMs?: number
  /** Receives each line the agent logs (default: dropped). */
  onLog? (line: string): void
  /** Receives host notes (a watchdog kill, a stale lock taken over), one line each (default: dropped). */
  onNote? (line: string): void
}

/** Options of {@link birth}. */
export interface BirthOptions extends HostOptions {
  /** The agent module: a path to a `.wasm` file, or its bytes. */
  wasm: string | Uint8Array
  /** The capability manifest: a path or its bytes (default: `<wasm without .wasm>.manifest.json` when `wasm` is a path). */
  manifest?: string | Uint8Array
  /** Data directory for checkpoints, history and blobs (created when missing). */
  dir: string
  /** Agent name (default: the wasm file name without `.wasm`; required when `wasm` is bytes). */
  name?: string
  /** Budget, microcents (default 1,000,000n = 1 unit). */
  budget?: bigint
  /** The host's highest limits a manifest may ask (default: the default node caps); above them birth is refused. */
  caps?: NodeCaps
}

/** Options of {@link resume}. */
export interface ResumeOptions extends HostOptions {
  /** Data directory to continue in (default: the directory holding the `.ckpt` file). */
  dir?: string
}

/** Options of {@link Agent.run}. */
export interface RunOptions {
  /** Pause after an idle tick (the agent returned 0 and asked for no timer), ms (default 1000). */
  intervalMs?: number
  /** Stop (status `running`, with a checkpoint) after this many ticks of this run; default: no limit. */
  maxTicks?: number
  /** While the agent keeps asking for more work, checkpoint at most this often, ms (default 1000). */
  checkpointEveryMs?: number
  /**
   * While the agent is idle, checkpoint at most this often, ms (default 0: after every idle tick);
   * a tick with an effect is checkpointed at once, and a crash loses at most this much of an idle
   * agent's ticks, which then run again (runtime/runner.ts `idleCheckpointEveryMs`).
   */
  idleCheckpointEveryMs?: number
  /** Aborting stops the loop as {@link Agent.stop} does. */
  signal?: AbortSignal
  /** Called after each failed tick, and now and then after successful ones. */
  onTick? (r: TickResult): void
}

/** How often a running agent takes messages left by `igord send --dir`, ms (as `igord run`). */
const DROP_POLL_MS = 250
/** Default budget: 1 unit, microcents. */
const DEFAULT_BUDGET = 1_000_000n
/** Default price, microcents per million fuel (as `igord run --price`). */
const DEFAULT_PRICE = 1000n

/**
 * A live agent held by this process (from {@link birth} or {@link resume}). Its state is written
 * as signed checkpoints into `dir`: `<dir>/<name>.ckpt` (live) and `<dir>/history/<name>/`.
 * Call {@link close} when done (or `await using`): it stops the loop with a final checkpoint, ends
 * the worker thread and releases the agent's lock.
 */
export class Agent {
  /** Agent name (file names in `dir`). */
  readonly name: string
  /** The agent's identity, `did:key:z6Mk…`; it never changes. */
  readonly did: string
  /** This host's peer ID (`12D3KooW…`, from `<dir>/host.key`). */
  readonly host: string
  /** The live checkpoint file, absolute. */
  readonly ckptPath: string
  /** The data directory, absolute. */
  readonly dir: string
  readonly #pool: TickPool
  readonly #handle: AgentHandle
  readonly #lock: Lock
  #loop: { controller: AbortController; done: Promise<LoopEnd> } | null = null
  #ended: LoopEnd | null = null
  #closed = false

  /** @internal created by {@link birth} and {@link resume} */
  constructor (pool: TickPool, handle: AgentHandle, lock: Lock, dir: string) {
    this.#pool = pool
    this.#handle = handle
    this.#lock = lock
    this.name = handle.name
    this.did = handle.did
    this.host = handle.host
    this.ckptPath = handle.ckptPath
    this.dir = resolve(dir)
  }

  /** The agent's counters (see {@link AgentState}), updated after checkpoints and failed ticks and every ~100 ms while it ticks. */
  get status (): AgentState { return { ...this.#handle.status } }

  /** True while a {@link run} or {@link tick} is in progress. */
  get running (): boolean { return this.#loop !== null }

  #assertOpen (what: string): void {
    if (this.#closed) throw new IgordError(`${this.name}: ${what}: the agent was closed`, EXIT.USAGE, 'BAD_REQUEST')
  }

  /**
   * Runs the tick loop until the agent finishes (`finished`), pauses after repeated failures
   * (`paused`), exhausts its budget (`exhausted`), reaches `maxTicks` or is stopped (`running`).
   * A checkpoint is written after ticks (at most every `checkpointEveryMs` while the agent asks for
   * more work) and always when the loop ends.
   * @returns how the loop ended: `status`, `reason`, `ticks` run
   * @throws IgordError (code `BAD_REQUEST`) when a loop already runs or the agent was closed or has
   *   ended (finished or paused: resume a paused agent from its checkpoint); StorageError when a
   *   checkpoint cannot be written
   * @example
   * ```ts
   * const end = await agent.run({ intervalMs: 100, maxTicks: 50 })
   * console.log(`${end.status} after ${end.ticks} ticks`)
   * ```
   */
  async run (opts: RunOptions = {}): Promise<LoopEnd> {
    this.#assertOpen('run')
    if (this.#loop !== null) throw new IgordError(`${this.name}: run: a loop is already running`, EXIT.USAGE, 'BAD_REQUEST')
    if (this.#ended !== null && this.#ended.status !== 'running') {
      throw new IgordError(`${this.name}: run: the agent ended (${this.#ended.status}${this.#ended.reason ? `: ${this.#ended.reason}` : ''})`, EXIT.USAGE, 'BAD_REQUEST')
    }
    const controller = new AbortController()
    const signal = opts.signal === undefined ? controller.signal : AbortSignal.any([controller.signal, opts.signal])
    const done = this.#handle.run({
      intervalMs: opts.intervalMs ?? 1000,
      checkpointEveryMs: opts.checkpointEveryMs ?? 1000,
      ...(opts.idleCheckpointEveryMs === undefined ? {} : { idleCheckpointEveryMs: opts.idleCheckpointEveryMs }),
      ...(opts.maxTicks === undefined ? {} : { maxTicks: opts.maxTicks }),
      pollDropsMs: DROP_POLL_MS,
      signal,
      ...(opts.onTick === undefined ? {} : { onTick: opts.onTick }),
    })
    this.#loop = { controller, done }
    try {
      const end = await done
      this.#ended = end
      return end
    } finally { this.#loop = null }
  }

  /**
   * Runs `n` ticks back to back (an idle tick is followed by the next at once, unless the agent
   * asked to sleep) and checkpoints: `run({ maxTicks: n, intervalMs: 0 })`.
   * @param n ticks, a positive integer (default 1)
   * @throws as {@link run}; IgordError (code `USAGE`) for a bad `n`
   * @example
   * ```ts
   * await agent.tick(3)
   * console.log(agent.status.tick) // 3 after birth
   * ```
   */
  async tick (n = 1): Promise<LoopEnd> {
    if (!Number.isSafeInteger(n) || n < 1) throw new IgordError(`${this.name}: tick: n must be a positive integer, got ${n}`, EXIT.USAGE)
    return await this.run({ maxTicks: n, intervalMs: 0 })
  }

  /**
   * Stops a running loop: after the tick in progress, with a final checkpoint (a tick still running
   * after the stop grace, 2 s, is ended and rolled back). Resolves when the loop has ended.
   * @returns how the loop ended, or null when none was running
   * @example
   * ```ts
   * const loop = agent.run({ intervalMs: 50 })
   * setTimeout(() => void agent.stop(), 1000)
   * console.log((await loop).status) // 'running': stopped, resumable
   * ```
   */
  async stop (): Promise<LoopEnd | null> {
    const loop = this.#loop
    if (loop === null) return null
    loop.controller.abort()
    try { return await loop.done } catch { return null }
  }

  /**
   * Retention between ticks (checkpoint/gc.ts, as `igord gc` and `--keep-every`): runs in the
   * agent's worker thread, keeps every history entry, log and I/O state, and the pages of every
   * `keepEvery`-th checkpoint, the newest `keepLast`, and those gc always keeps; merges up to
   * `maxPacks` of the agent's packs (default 32). Safe while the loop runs.
   * @returns the report: checkpoints, pruned, newly pruned, packs and bytes before and after
   * @throws IgordError (code `BAD_REQUEST`) when the agent was closed; CheckpointError /
   *   StorageError from the collection (the agent's files are left as they were)
   * @example
   * ```ts
   * const r = await agent.gc({ keepEvery: 10, keepLast: 2 })
   * console.log(r.blobsBytesBefore, '→', r.blobsBytesAfter)
   * ```
   */
  async gc (opts: { keepEvery: number; keepLast: number; maxPacks?: number }): Promise<GcReport> {
    this.#assertOpen('gc')
    return await this.#handle.gc(opts)
  }

  /**
   * Writes a signed checkpoint of the agent's state now, at its current tick (the loop must be
   * stopped): the live file and a history entry.
   * @returns the header CID and the tick
   * @throws IgordError (code `BAD_REQUEST`) when a loop runs, the agent was closed or has ended;
   *   StorageError (code `IO`) when the files cannot be written
   * @example
   * ```ts
   * const { cid, tick } = await agent.checkpoint()
   * ```
   */
  async checkpoint (): Promise<{ cid: string; tick: number }> {
    this.#assertOpen('checkpoint')
    if (this.#loop !== null) throw new IgordError(`${this.name}: checkpoint: stop the loop first`, EXIT.USAGE, 'BAD_REQUEST')
    if (this.#ended !== null && this.#ended.status !== 'running') throw new IgordError(`${this.name}: checkpoint: the agent ended (${this.#ended.status})`, EXIT.USAGE, 'BAD_REQUEST')
    const { cid } = await this.#handle.checkpoint('running')
    return { cid, tick: this.#handle.status.tick }
  }

  /**
   * Stops the loop (final checkpoint), ends the agent's worker thread and releases its lock. The
   * agent stays resumable from {@link ckptPath}. Idempotent.
   * @example
   * ```ts
   * await agent.close()
   * const again = await resume(agent.ckptPath)
   * ```
   */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    try {
      await this.stop()
      await this.#pool.close()
    } finally { this.#lock.release() }
  }

  /** `await using agent = await birth(…)` closes it at the end of the scope. */
  async [Symbol.asyncDispose] (): Promise<void> { await this.close() }
}

async function newPool (o: HostOptions): Promise<TickPool> {
  const { TickPool } = await import('../runtime/pool.ts')
  return new TickPool({ size: 1, ...(o.tickTimeoutMs === undefined ? {} : { tickTimeoutMs: o.tickTimeoutMs }), note: o.onNote ?? (() => {}) })
}

function settings (dir: string, o: HostOptions): { dir: string; price: bigint; simSeed?: string } {
  return { dir, price: o.price ?? DEFAULT_PRICE, ...(o.simSeed === undefined ? {} : { simSeed: o.simSeed }) }
}

/**
 * Births a new agent: reads and checks the module and manifest, runs its `agent_init`, and writes
 * its genesis checkpoint (tick 0) as `<dir>/<name>.ckpt` — as `igord run` does before its loop.
 * The agent does not tick until {@link Agent.run} or {@link Agent.tick}.
 * @returns the agent, holding the lock of `<dir>/locks/<name>.lock` until {@link Agent.close}
 * @throws NameError (code `BAD_NAME`) for a bad name; IgordError (code `USAGE`) when `wasm` is
 *   bytes without `name` or `manifest`; StorageError (code `IO`) for an unreadable file, or when
 *   `<dir>/<name>.ckpt` exists (resume it instead); ManifestError (code `MANIFEST`) for a bad
 *   manifest or limits above `caps`; ModuleError (code `MODULE`) for a bad module, an import the
 *   manifest does not grant, or an `agent_init` that traps; LockedError (code `LOCKED`) when
 *   another process writes that agent
 * @example
 * ```ts
 * import { birth, verify } from 'igord'
 * const agent = await birth({ wasm: 'build/counter.wasm', dir: 'data', onLog: (l) => console.log(l) })
 * await agent.tick(3)
 * await agent.close()
 * console.log((await verify('data')).valid) // true
 * ```
 */
export async function birth (opts: BirthOptions): Promise<Agent> {
  const wasmFile = typeof opts.wasm === 'string' ? opts.wasm : 'module'
  if (opts.name === undefined && typeof opts.wasm !== 'string') throw new IgordError('birth: name is required when wasm is given as bytes', EXIT.USAGE)
  const name = checkAgentName(opts.name ?? basename(wasmFile).replace(/\.wasm$/, ''), opts.name === undefined ? `${wasmFile} (give a name)` : 'name')
  const wasm = typeof opts.wasm === 'string' ? readInput(opts.wasm, 'the wasm module') : opts.wasm
  let manifestFile: string
  let manifest: Uint8Array
  if (opts.manifest === undefined) {
    if (typeof opts.wasm !== 'string') throw new IgordError('birth: manifest is required when wasm is given as bytes', EXIT.USAGE)
    manifestFile = opts.wasm.replace(/\.wasm$/, '') + '.manifest.json'
    manifest = readInput(manifestFile, 'the manifest')
  } else if (typeof opts.manifest === 'string') {
    manifestFile = opts.manifest
    manifest = readInput(manifestFile, 'the manifest')
  } else {
    manifestFile = 'manifest'
    manifest = opts.manifest
  }
  // refused (not clamped) above the host's caps, as a local `igord run` does (docs/ABI.md)
  const over = checkWithinCaps(parseManifest(manifest, manifestFile), opts.caps ?? DEFAULT_NODE_CAPS)
  if (over !== null) throw new ManifestError(`${manifestFile}: ${over}`)
  const lock = lockAgent(opts.dir, name)
  if (lock.tookOver !== null) opts.onNote?.(`took over the stale lock ${lock.file} of ${describeHolder(lock.tookOver)} (no longer running)`)
  let pool: TickPool | null = null
  try {
    pool = await newPool(opts)
    const handle = await pool.birth(settings(opts.dir, opts), { name, wasm, wasmFile, manifest, manifestFile, budget: opts.budget ?? DEFAULT_BUDGET }, opts.onLog ?? (() => {}))
    return new Agent(pool, handle, lock, opts.dir)
  } catch (e) {
    await pool?.close()
    lock.release()
    throw e
  }
}

/**
 * Restores an agent from its live checkpoint file — same DID, tick count, heap and epoch — ready
 * to continue in `opts.dir` (default: the file's directory), as `igord resume` does.
 * @param ckpt the live checkpoint, `<dir>/<name>.ckpt`
 * @returns the agent, holding its lock until {@link Agent.close}
 * @throws CheckpointError (code `CHECKPOINT`) for a corrupt or badly signed file, or an agent that
 *   finished or was handed off; StorageError (code `IO`); ModuleError; ManifestError; LockedError
 *   (code `LOCKED`) when another process writes that agent (here or in the file's directory)
 * @example
 * ```ts
 * import { resume } from 'igord'
 * const agent = await resume('data/counter.ckpt')
 * await agent.tick(2)
 * await agent.close()
 * ```
 */
export async function resume (ckpt: string, opts: ResumeOptions = {}): Promise<Agent> {
  const name = checkAgentName(nameOfLive(ckpt), ckpt)
  const { defaultResumeDir } = await import('../runtime/session.ts')
  const home = defaultResumeDir(ckpt)
  const dir = opts.dir ?? home
  if (resolve(dir) !== home) assertNotWritten(home, name, ckpt)
  const lock = lockAgent(dir, name)
  if (lock.tookOver !== null) opts.onNote?.(`took over the stale lock ${lock.file} of ${describeHolder(lock.tookOver)} (no longer running)`)
  let pool: TickPool | null = null
  try {
    pool = await newPool(opts)
    const handle = await pool.resume(settings(dir, opts), ckpt, opts.onLog ?? (() => {}))
    return new Agent(pool, handle, lock, dir)
  } catch (e) {
    await pool?.close()
    lock.release()
    throw e
  }
}
