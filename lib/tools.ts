/**
 * The library's offline tools: verify a history, replay it, inspect a live checkpoint, instrument
 * a module. Thin async wrappers over checkpoint/history.ts, runtime/replay.ts,
 * checkpoint/inspect.ts and runtime/instrument.ts; `igord verify`, `igord inspect` and
 * `igord instrument` call these.
 */
import { readFileSync } from 'node:fs'
import { EXIT, IgordError, StorageError } from '../checkpoint/errors.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { DEFAULT_MAX_MEMORY_BYTES } from '../hostcalls/manifest.ts'
import type { VerifyReport } from '../checkpoint/history.ts'
import type { InspectView } from '../checkpoint/inspect.ts'
import type { ReplayReport } from '../runtime/replay.ts'
import type { Instrumented } from '../runtime/instrument.ts'

export type { Fault, Fork, Funding, Handoff, VerifyReport } from '../checkpoint/history.ts'
export type { InspectView } from '../checkpoint/inspect.ts'
export type { Divergence, ReplayReport } from '../runtime/replay.ts'
export type { Instrumented, InstrumentedGlobal } from '../runtime/instrument.ts'

/** Reads a file the caller named, or a StorageError (exit 8, code `IO`) naming it. */
export function readInput (path: string, what: string): Uint8Array {
  try {
    return readFileSync(path)
  } catch (e) {
    throw new StorageError(`${path}: cannot read ${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
}

const list = (paths: string | string[]): string[] => typeof paths === 'string' ? [paths] : paths

/**
 * Verifies whole histories: signatures, hash links, one DID, monotonic tick/fuel/budget, epochs,
 * state roots, forks (checkpoint/history.ts `verifyHistory`). The paths are merged: data
 * directories, `history/` folders, `history/<agent>` directories, entry files, or folders of these.
 * Never throws for bad data: every problem is a fault in the report (`valid: false`).
 * @returns the report: `valid`, `did`, `checkpoints`, `ticks` ([first, last]), `epochs`, `hosts`,
 *   `handoffs`, `faults`, `forks`, `topUps` (amounts in microcents)
 * @example
 * ```ts
 * const r = await verify('./data')
 * if (!r.valid) console.error(r.faults.map((f) => `${f.file}: ${f.fault}`).join('\n'))
 * ```
 */
export async function verify (paths: string | string[]): Promise<VerifyReport> {
  const { verifyHistory } = await import('../checkpoint/history.ts')
  return verifyHistory(list(paths))
}

/** Options of {@link replay}. */
export interface ReplayOptions {
  /** Start from the newest checkpoint at or before this tick (default: replay from birth). */
  from?: number
}

/**
 * Verifies the histories at `paths` (as {@link verify}) and re-executes the archived life from its
 * event logs — no real clock, random source or network — checking every tick and checkpoint
 * header (runtime/replay.ts `replayHistory`; `igord verify --replay`).
 * Never throws for bad data: a problem is `valid: false` with `divergence` or `error`.
 * @returns `valid`, `ticks` re-executed, `range`, `from`, `checkpoints` checked, the first
 *   `divergence` (tick, field, message), `error`, and the plain `verify` report
 * @throws IgordError (exit 2, code `USAGE`) when `from` is not a non-negative integer
 * @example
 * ```ts
 * const r = await replay('./data')
 * console.log(r.valid ? `VALID: ${r.ticks} ticks re-executed` : `diverged: ${r.divergence?.message ?? r.error}`)
 * ```
 */
export async function replay (paths: string | string[], opts: ReplayOptions = {}): Promise<ReplayReport> {
  if (opts.from !== undefined && (!Number.isSafeInteger(opts.from) || opts.from < 0)) {
    throw new IgordError(`replay: from must be a non-negative integer tick, got ${opts.from}`, EXIT.USAGE)
  }
  const { replayHistory } = await import('../runtime/replay.ts') // binaryen: loaded only here
  return replayHistory(list(paths), opts.from === undefined ? {} : { from: opts.from })
}

/**
 * Reads, fully checks (signature, CIDs, state root) and summarises a live checkpoint file
 * (`<dir>/<name>.ckpt`; checkpoint/inspect.ts `inspectLive`).
 * @returns DID, tick, epoch, status, `fuel` (units), `budget` (microcents) and `price` as decimal
 *   strings, code and manifest CIDs, memory (`pageCount`, `memoryBytes`), host, time (ISO), inbox
 * @throws StorageError (code `IO`) when unreadable; CheckpointError (code `CHECKPOINT`) when
 *   corrupt, truncated, of an unknown version or badly signed
 * @example
 * ```ts
 * const v = await inspect('./data/heartbeat.ckpt')
 * console.log(`${v.did} at tick ${v.tick}, budget ${v.budget} microcents`)
 * ```
 */
export async function inspect (ckpt: string): Promise<InspectView> {
  const { inspectLive } = await import('../checkpoint/inspect.ts')
  return inspectLive(ckpt)
}

/** Options of {@link instrument}. */
export interface InstrumentOptions {
  /** Memory cap, bytes: a positive multiple of 65536 up to 4 GiB (default 64 MiB, the manifest default). */
  memoryLimitBytes?: number
  /** Name used in error messages (default: the path, or `module`). */
  file?: string
}

/**
 * Rewrites a module as igord runs it: fuel metering, exported globals, memory cap (DESIGN §5;
 * runtime/instrument.ts `instrument`).
 * @param wasm the module's bytes, or a path to a `.wasm` file
 * @returns `binary` (the instrumented module), `globals` (the exported globals) and `cid` (the
 *   original module's CID)
 * @throws IgordError (code `USAGE`) for a bad `memoryLimitBytes`; StorageError (code `IO`) for an
 *   unreadable path; ModuleError (code `MODULE`) when the bytes are not valid wasm, use a rejected
 *   feature, import their memory or a mutable global, or are already instrumented
 * @example
 * ```ts
 * const out = await instrument('agent.wasm', { memoryLimitBytes: 16 * 65536 })
 * writeFileSync('agent.metered.wasm', out.binary)
 * ```
 */
export async function instrument (wasm: Uint8Array | string, opts: InstrumentOptions = {}): Promise<Instrumented> {
  const limit = opts.memoryLimitBytes ?? DEFAULT_MAX_MEMORY_BYTES
  if (!Number.isSafeInteger(limit) || limit <= 0 || limit % PAGE_SIZE !== 0 || limit / PAGE_SIZE > 65536) {
    throw new IgordError(`instrument: memoryLimitBytes ${limit} is not a positive multiple of 65536 up to 4 GiB`, EXIT.USAGE)
  }
  const file = opts.file ?? (typeof wasm === 'string' ? wasm : 'module')
  const bytes = typeof wasm === 'string' ? readInput(wasm, 'the wasm module') : wasm
  const m = await import('../runtime/instrument.ts') // binaryen: loaded only here
  return m.instrument(bytes, { memoryLimitPages: limit / PAGE_SIZE, file })
}
