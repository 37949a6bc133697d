/**
 * Instrumented code by original code CID (docs/FORMAT.md "Code cache", docs/RATIONALE.md
 * "Instrumented code cached on disk"): what every run, resume, replay, arrival and tick worker asks
 * for a module's instrumented bytes. Looks in a per-process memory cache, then in the data
 * directory's `cache/code/` (checkpoint/layout.ts), and only on a miss runs the instrumenter
 * (runtime/instrument.ts, binaryen): in this thread when instrument.ts is already loaded here,
 * else in a helper thread this thread waits for. A hit never loads binaryen.
 *
 * An entry is keyed by everything its bytes depend on: the original module's CID, the memory cap
 * in pages, and {@link RECIPE} (the instrumenter version, the binaryen version, the fuel schedule).
 * It is trusted only after its header matches the key and the SHA-256 of its instrumented bytes
 * matches the CID its header records; anything else (truncated, corrupt, another format) is a miss:
 * a note says so, the entry is re-instrumented and replaced. The directory is bounded
 * ({@link CodeCache.maxBytes}, least recently used entries evicted first): the cache is never the
 * only copy of anything, so eviction and deletion are always safe.
 *
 * Entry file (`<cid>-<limit>-<recipe>.code`, 0600, written with checkpoint/store.ts `atomicWrite`):
 * `IGC1` (4 bytes), header length H (u32 little-endian), H bytes of UTF-8 JSON
 * `{ recipe, cid, limit, globals, binary, size }` (`binary`: CID of the instrumented bytes, `size`
 * their length), then the instrumented module bytes.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { IgordError, ManifestError, ModuleError } from '../checkpoint/errors.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { codeCacheEntryName, makePrivateDir } from '../checkpoint/layout.ts'
import { atomicWrite } from '../checkpoint/store.ts'
import { COSTS, START_FUEL } from './fuel.ts'

/**
 * Version of the rewrite (runtime/instrument.ts, fuel.ts, features.ts). Bump it whenever the
 * instrumenter's output can change for the same input — the feature gate, the global exports, the
 * meter's placement, the memory cap — so that no cache entry made by older code is used.
 */
export const INSTRUMENT_VERSION = 'igord-instrument-3'

/** A mutable global of the original module, exported by the instrumenter. */
export interface InstrumentedGlobal {
  /** Index in the module's global index space (imports first; WebAssembly spec §2.5.1). */
  index: number
  /** Its export name, `__igor_g<index>`. */
  exportName: string
  type: 'i32' | 'i64' | 'f32' | 'f64' | 'v128'
  /**
   * v128 globals only (JS cannot read or write a v128 `WebAssembly.Global`): the exported,
   * unmetered accessor functions `__igor_v128_get_<index>: () -> (i64, i64)` and
   * `__igor_v128_set_<index>: (i64, i64) -> ()`. The two i64s are the low and high halves (lanes 0
   * and 1 of `i64x2`), so their little-endian bytes, low first, are the v128's 16 bytes.
   */
  accessors?: { get: string; set: string }
}

/** An instrumented module. Treat it as immutable: it is shared through the caches. */
export interface Instrumented {
  /** The instrumented module (validates in binaryen and V8). */
  binary: Uint8Array
  /** Every internal mutable global of the original module except `__igor_fuel`, by index. */
  globals: InstrumentedGlobal[]
  /** CID (CIDv1, raw, sha2-256, base32) of the ORIGINAL wasm bytes. */
  cid: string
}

/** The instrumenter proper: original bytes and memory cap (pages) → instrumented bytes and globals. */
export type Rewrite = (wasm: Uint8Array, opts: { memoryLimitPages: number; file?: string; importedMemory?: boolean }) => { binary: Uint8Array; globals: InstrumentedGlobal[] }

/** The on-disk cache to use: a directory (checkpoint/layout.ts `codeCacheDir`) and its bound. */
export interface CodeCache {
  /** Directory of the entries, created 0700 on first write. */
  dir: string
  /** Most bytes of entries kept in `dir` (default {@link DEFAULT_CODE_CACHE_BYTES}); older ones are evicted. */
  maxBytes?: number
  /** Receives one-line notes: an entry not trusted, a write that failed (default: none). */
  note? (line: string): void
}

/** Default bound of a code cache directory: 256 MiB (about 170 modules of 1.3 MB). */
export const DEFAULT_CODE_CACHE_BYTES = 256 * 1024 * 1024

/** Bound of the per-process memory cache, bytes of instrumented code (least recently used dropped). */
const MEMO_BYTES = 128 * 1024 * 1024

/** How long a thread waits for its helper thread's answer before giving up, ms. */
const HELPER_TIMEOUT_MS = 10 * 60_000

/** How long an idle helper thread is kept for the next miss, ms. */
const HELPER_IDLE_MS = 30_000

const MAGIC = Uint8Array.of(0x49, 0x47, 0x43, 0x31) // "IGC1"

function binaryenVersion (): string {
  try {
    return String((createRequire(import.meta.url)('binaryen/package.json') as { version: unknown }).version)
  } catch { return 'unknown' }
}

/**
 * Everything besides the original bytes and the memory cap that an instrumented module depends
 * on, hashed: {@link INSTRUMENT_VERSION}, the installed binaryen's version and the fuel schedule
 * (`COSTS`, `START_FUEL`). 16 hex digits (the first 8 bytes of a SHA-256); part of every entry's
 * file name and header.
 */
export const RECIPE: string = createHash('sha256')
  .update(JSON.stringify([INSTRUMENT_VERSION, binaryenVersion(), COSTS, START_FUEL.toString()]))
  .digest('hex').slice(0, 16)

const memo = new Map<string, Instrumented>()
let memoBytes = 0
let inThread: Rewrite | null = null

/**
 * Registers the instrumenter of this thread (runtime/instrument.ts does, when it is loaded):
 * misses are then instrumented here instead of in a helper thread.
 */
export function useInThreadRewrite (fn: Rewrite): void { inThread = fn }

/** Empties this thread's memory cache (tests, benchmarks). The disk caches are left as they are. */
export function clearMemoryCache (): void { memo.clear(); memoBytes = 0 }

/** Counters of this thread's lookups since it started (tests, benchmarks). */
export const codeCacheStats = { memoryHits: 0, diskHits: 0, misses: 0, rejected: 0, evicted: 0 }

/** Options of {@link loadInstrumented}. */
export interface LoadOptions {
  /** Memory cap in 64 KiB pages, integer in [0, 65536] (the manifest's memory limit). */
  memoryLimitPages: number
  /** Name used in error messages (default `module`). */
  file?: string
  /** The on-disk cache; absent: memory only. */
  cache?: CodeCache
  /** The instrumenter on a miss (default: this thread's registered one, else a helper thread). */
  rewrite?: Rewrite
  /**
   * Accept a module importing its memory (a component's core module; runtime/component.ts). The
   * entry is shared with core agents: a core agent importing memory is refused by its import check.
   */
  importedMemory?: boolean
}

/**
 * The instrumented form of `wasm` under a memory cap: from memory, from the disk cache (verified),
 * or instrumented now and then stored in both (a memory hit is also written to a disk cache that
 * lacks it).
 * @param wasm the original module bytes.
 * @returns the instrumented binary, its exported globals and the original module's CID.
 * @throws ManifestError when `memoryLimitPages` is not an integer in [0, 65536].
 * @throws ModuleError as runtime/instrument.ts `rewrite` on a miss (invalid module, rejected
 *   feature, …), or when the helper thread does not answer within 10 minutes. Never for a bad or
 *   unwritable cache entry: that is a note and a miss.
 */
export function loadInstrumented (wasm: Uint8Array, opts: LoadOptions): Instrumented {
  const limit = opts.memoryLimitPages
  if (!Number.isInteger(limit) || limit < 0 || limit > 65536) {
    throw new ManifestError(`memory limit must be an integer number of pages in [0, 65536], got ${limit}`)
  }
  const cid = cidOf(wasm)
  const key = `${cid}-${limit}`
  const cache = opts.cache
  const file = cache === undefined ? null : path.join(cache.dir, codeCacheEntryName(cid, limit, RECIPE))
  const hit = memo.get(key)
  if (hit !== undefined) {
    memo.delete(key); memo.set(key, hit) // most recently used last
    codeCacheStats.memoryHits++
    // instrumented here for another cache (or none): store it in this one too
    if (cache !== undefined && file !== null && !fs.existsSync(file)) writeEntry(file, hit, limit, cache)
    return hit
  }
  if (cache !== undefined && file !== null) {
    const got = readEntry(file, cid, limit, cache)
    if (got !== null) {
      codeCacheStats.diskHits++
      remember(key, got)
      return got
    }
  }
  codeCacheStats.misses++
  const rewrite = opts.rewrite ?? inThread ?? rewriteInHelper
  const { binary, globals } = rewrite(wasm, { memoryLimitPages: limit, ...(opts.file === undefined ? {} : { file: opts.file }), ...(opts.importedMemory === true ? { importedMemory: true } : {}) })
  const result: Instrumented = { binary, globals, cid }
  if (cache !== undefined && file !== null) writeEntry(file, result, limit, cache)
  remember(key, result)
  return result
}

function remember (key: string, r: Instrumented): void {
  memo.set(key, r)
  memoBytes += r.binary.length
  for (const [k, v] of memo) {
    if (memoBytes <= MEMO_BYTES || k === key) break
    memo.delete(k); memoBytes -= v.binary.length
  }
}

interface EntryHeader { recipe: string; cid: string; limit: number; globals: InstrumentedGlobal[]; binary: string; size: number }

const GLOBAL_TYPES = new Set(['i32', 'i64', 'f32', 'f64', 'v128'])

function validGlobals (g: unknown): g is InstrumentedGlobal[] {
  return Array.isArray(g) && g.every((x: Partial<InstrumentedGlobal>) =>
    typeof x === 'object' && x !== null && Number.isInteger(x.index) && typeof x.exportName === 'string' && GLOBAL_TYPES.has(x.type as string) &&
    (x.type === 'v128'
      ? typeof x.accessors === 'object' && x.accessors !== null && typeof x.accessors.get === 'string' && typeof x.accessors.set === 'string'
      : x.accessors === undefined))
}

/**
 * Why the bytes of an entry file cannot be trusted for (cid, limit), or its contents.
 * Checks the magic, the header (recipe, CID, limit, globals), the length, and the instrumented
 * bytes' SHA-256 against the CID the header records.
 */
export function parseEntry (bytes: Uint8Array, cid: string, limit: number): Instrumented | string {
  if (bytes.length < 8 || MAGIC.some((b, i) => bytes[i] !== b)) return 'not a code cache entry (bad magic)'
  const hlen = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true)
  if (8 + hlen > bytes.length) return `truncated (header of ${hlen} bytes, file of ${bytes.length})`
  let h: EntryHeader
  try { h = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + hlen))) as EntryHeader } catch (e) { return `header is not JSON (${(e as Error).message})` }
  if (typeof h !== 'object' || h === null) return 'header is not an object'
  if (h.recipe !== RECIPE) return `made by another instrumenter (recipe ${String(h.recipe)}, this one ${RECIPE})`
  if (h.cid !== cid || h.limit !== limit) return `header names ${String(h.cid)} at ${String(h.limit)} pages, not this module`
  if (!validGlobals(h.globals)) return 'header has a malformed globals list'
  const binary = bytes.subarray(8 + hlen)
  if (binary.length !== h.size) return `truncated (${binary.length} bytes of code, header says ${String(h.size)})`
  if (cidOf(binary) !== h.binary) return 'instrumented bytes do not match their recorded CID (corrupt)'
  return { binary, globals: h.globals, cid }
}

/** Encodes an entry file for `r` (see the module doc). */
export function encodeEntry (r: Instrumented, limit: number): Uint8Array[] {
  const h: EntryHeader = { recipe: RECIPE, cid: r.cid, limit, globals: r.globals, binary: cidOf(r.binary), size: r.binary.length }
  const json = new TextEncoder().encode(JSON.stringify(h))
  const head = new Uint8Array(8)
  head.set(MAGIC, 0)
  new DataView(head.buffer).setUint32(4, json.length, true)
  return [head, json, r.binary]
}

function readEntry (file: string, cid: string, limit: number, cache: CodeCache): Instrumented | null {
  let bytes: Uint8Array
  try {
    const buf = fs.readFileSync(file)
    bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) // a plain Uint8Array view, not a Buffer
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') cache.note?.(`code cache: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); instrumenting again`)
    return null
  }
  const got = parseEntry(bytes, cid, limit)
  if (typeof got === 'string') {
    codeCacheStats.rejected++
    cache.note?.(`code cache: ${file}: ${got}; instrumenting again and replacing it`)
    try { fs.rmSync(file, { force: true }) } catch { /* replaced below anyway */ }
    return null
  }
  try { const now = new Date(); fs.utimesSync(file, now, now) } catch { /* recency is a hint */ }
  return got // a view of the file's buffer: the header before it is a few hundred bytes
}

function writeEntry (file: string, r: Instrumented, limit: number, cache: CodeCache): void {
  const max = cache.maxBytes ?? DEFAULT_CODE_CACHE_BYTES
  const chunks = encodeEntry(r, limit)
  const size = chunks.reduce((n, c) => n + c.length, 0)
  if (size > max) { cache.note?.(`code cache: ${path.basename(file)} is ${size} bytes, above the cache bound of ${max}; not cached`); return }
  try {
    makePrivateDir(cache.dir)
    atomicWrite(file, chunks)
  } catch (e) {
    cache.note?.(`code cache: cannot write ${file} (${(e as Error).message.split('\n')[0]}); going on without it`)
    return
  }
  evict(cache.dir, max, file)
}

/**
 * Bounds a code cache directory: removes the least recently used entries (oldest mtime; a hit
 * refreshes it) until the entries total at most `maxBytes`, never `keep`. Also removes temp files
 * of writes that died (dotfiles older than an hour). Best effort: entries vanishing meanwhile
 * (another process evicting) are skipped.
 * @returns the number of entries removed.
 */
export function evict (dir: string, maxBytes: number, keep?: string): number {
  let names: string[]
  try { names = fs.readdirSync(dir) } catch { return 0 }
  const entries: Array<{ p: string; size: number; mtime: number }> = []
  const now = Date.now()
  for (const n of names) {
    const p = path.join(dir, n)
    let st: fs.Stats
    try { st = fs.statSync(p) } catch { continue }
    if (!st.isFile()) continue
    if (n.startsWith('.')) {
      if (now - st.mtimeMs > 3600_000) try { fs.rmSync(p, { force: true }) } catch { /* another process's */ }
      continue
    }
    if (n.endsWith('.code')) entries.push({ p, size: st.size, mtime: st.mtimeMs })
  }
  let total = entries.reduce((n, e) => n + e.size, 0)
  let removed = 0
  entries.sort((a, b) => a.mtime - b.mtime)
  for (const e of entries) {
    if (total <= maxBytes) break
    if (e.p === keep) continue
    try { fs.rmSync(e.p, { force: true }) } catch { continue }
    total -= e.size; removed++
  }
  codeCacheStats.evicted += removed
  return removed
}

interface Helper { worker: Worker; signal: Int32Array; failures: MessagePort; timer: NodeJS.Timeout | null }
let helper: Helper | null = null

/**
 * Started with `eval`, so that a helper whose module cannot be loaded still says so: it sets the
 * shared word to 2 and posts the reason instead of leaving the requesting thread waiting.
 */
const BOOT = `const { workerData } = require('node:worker_threads')
import(workerData.url).catch((e) => { workerData.failures.postMessage(String((e && e.message) || e)); Atomics.store(workerData.signal, 0, 2); Atomics.notify(workerData.signal, 0) })`

function startHelper (): Helper {
  const url = new URL(import.meta.url.endsWith('.ts') ? './instrument-thread.ts' : './instrument-thread.js', import.meta.url)
  const signal = new Int32Array(new SharedArrayBuffer(4))
  const { port1, port2 } = new MessageChannel()
  // --input-type (of a `node -e` parent) would stop a worker loading a file
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'))
  const worker = new Worker(BOOT, { eval: true, workerData: { url: url.href, signal, failures: port2 }, transferList: [port2], execArgv })
  worker.unref()
  port1.unref()
  const h: Helper = { worker, signal, failures: port1, timer: null }
  const gone = () => { if (helper === h) helper = null }
  worker.on('error', gone)
  worker.on('exit', gone)
  return h
}

function dropHelper (h: Helper): void {
  if (helper === h) helper = null
  if (h.timer !== null) clearTimeout(h.timer)
  h.failures.close()
  void h.worker.terminate()
}

/**
 * Instruments in a helper thread (runtime/instrument-thread.ts, which loads binaryen) and blocks
 * this thread until it answers: Atomics.wait on a shared word, then receiveMessageOnPort (the
 * pattern of the `synckit` package). Keeps loading binaryen off threads whose modules are cached,
 * while the callers (Agent.birth/restore) stay synchronous. The helper is kept for
 * {@link HELPER_IDLE_MS} for the next miss, and never keeps the process alive.
 */
function rewriteInHelper (wasm: Uint8Array, opts: { memoryLimitPages: number; file?: string; importedMemory?: boolean }): { binary: Uint8Array; globals: InstrumentedGlobal[] } {
  const file = opts.file ?? 'module'
  const h = helper ??= startHelper()
  if (h.timer !== null) { clearTimeout(h.timer); h.timer = null }
  const { port1, port2 } = new MessageChannel()
  let keep = false
  try {
    Atomics.store(h.signal, 0, 0)
    h.worker.postMessage({ port: port2, wasm, limit: opts.memoryLimitPages, file: opts.file, importedMemory: opts.importedMemory === true }, [port2])
    const deadline = Date.now() + HELPER_TIMEOUT_MS
    while (Atomics.load(h.signal, 0) === 0) {
      if (Date.now() > deadline) throw new ModuleError(`${file}: the instrumentation thread did not answer within ${HELPER_TIMEOUT_MS / 60_000} minutes`)
      Atomics.wait(h.signal, 0, 0, 1000)
    }
    if (Atomics.load(h.signal, 0) === 2) {
      const why = receiveMessageOnPort(h.failures)?.message as string | undefined
      throw new ModuleError(`${file}: the instrumentation thread could not start (${why ?? 'no reason given'})`)
    }
    const got = receiveMessageOnPort(port1)
    if (got === undefined) throw new ModuleError(`${file}: the instrumentation thread ended without an answer`)
    keep = true
    const m = got.message as { ok: true; binary: Uint8Array; globals: InstrumentedGlobal[] } | { ok: false; name: string; message: string; exitCode: number | null }
    if (m.ok) return { binary: m.binary, globals: m.globals }
    if (m.name === 'ModuleError') throw new ModuleError(m.message)
    if (m.name === 'ManifestError') throw new ManifestError(m.message)
    if (m.exitCode !== null) throw new IgordError(m.message, m.exitCode)
    throw new ModuleError(`${file}: could not be instrumented (${m.message})`)
  } finally {
    port1.close()
    if (!keep) dropHelper(h)
    else if (helper === h) { h.timer = setTimeout(() => dropHelper(h), HELPER_IDLE_MS); h.timer.unref() }
  }
}
