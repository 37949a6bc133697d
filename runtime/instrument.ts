/**
 * The instrumenter (DESIGN §5): validate a wasm module, gate its features, meter it with fuel,
 * export its mutable globals as `__igor_g<index>`, cap and export its memory. Results are cached by
 * the original module's CID and the memory limit, in memory and optionally on disk.
 *
 * The ABI this produces is documented in docs/ABI.md ("Fuel and instrumentation").
 */
import binaryen from 'binaryen'
import fs from 'node:fs'
import path from 'node:path'
import { ModuleError, StorageError, ManifestError } from '../checkpoint/errors.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { ALLOWED_FEATURES, checkCode, checkModuleFacts, scanModule, uleb } from './features.ts'
import type { ModuleFacts } from './features.ts'
import { FUEL_GLOBAL, START_FUEL, meter } from './fuel.ts'

export { FUEL_GLOBAL, START_FUEL, COSTS, fuelUsed } from './fuel.ts'

/** Prefix of the export names given to internal mutable globals: `__igor_g<index>`. */
export const GLOBAL_EXPORT_PREFIX = '__igor_g'

/**
 * Version of the rewrite. Part of the on-disk cache record: a cached binary made by another
 * version (another cost model or binaryen) is ignored and rebuilt.
 */
export const INSTRUMENT_VERSION = 'igord-instrument-2/binaryen-132'

/** A mutable global of the original module, exported by the instrumenter. */
export interface InstrumentedGlobal {
  /** Index in the module's global index space (imports first; WebAssembly spec §2.5.1). */
  index: number
  /** Its export name, `__igor_g<index>`. */
  exportName: string
  type: 'i32' | 'i64' | 'f32' | 'f64' | 'v128'
}

/** The result of {@link instrument}. Treat it as immutable: it may be shared through the cache. */
export interface Instrumented {
  /** The instrumented module (validates in binaryen and V8). */
  binary: Uint8Array
  /** Every internal mutable global of the original module except `__igor_fuel`, by index. */
  globals: InstrumentedGlobal[]
  /** CID (CIDv1, raw, sha2-256, base32) of the ORIGINAL wasm bytes. */
  cid: string
}

/** Options of {@link instrument}. */
export interface InstrumentOptions {
  /** Memory cap in 64 KiB pages, integer in [0, 65536] (the manifest's memory limit). */
  memoryLimitPages: number
  /** Name used in error messages (default `module`). */
  file?: string
  /** Directory of the on-disk cache (`<cid>-<limit>.wasm` + `<cid>-<limit>.json`); none if absent. */
  cacheDir?: string
}

const memo = new Map<string, Instrumented>()

/**
 * Instruments a wasm module for igord (DESIGN §5), or returns the cached result for the same
 * module CID and memory limit.
 * @param wasm the original module bytes.
 * @returns the instrumented binary, the exported globals and the original module's CID.
 * @throws ModuleError when the bytes are not valid wasm, use a rejected feature, import their
 *   memory or a mutable global, need more initial memory than the limit, or are already instrumented.
 * @throws ManifestError when `memoryLimitPages` is not an integer in [0, 65536].
 * @throws StorageError when the cache directory cannot be read or written.
 */
export function instrument (wasm: Uint8Array, opts: InstrumentOptions): Instrumented {
  const limit = opts.memoryLimitPages
  if (!Number.isInteger(limit) || limit < 0 || limit > 65536) {
    throw new ManifestError(`memory limit must be an integer number of pages in [0, 65536], got ${limit}`)
  }
  const cid = cidOf(wasm)
  const key = `${cid}-${limit}`
  const hit = memo.get(key)
  if (hit) return hit
  if (opts.cacheDir) {
    const cached = readCache(opts.cacheDir, key, cid)
    if (cached) { memo.set(key, cached); return cached }
  }
  const { binary, globals } = rewrite(wasm, { memoryLimitPages: limit, file: opts.file })
  const result: Instrumented = { binary, globals, cid }
  if (opts.cacheDir) writeCache(opts.cacheDir, key, result)
  memo.set(key, result)
  return result
}

/** Empties the in-memory cache (tests, long-running hosts). */
export function clearInstrumentCache (): void { memo.clear() }

/**
 * The uncached rewrite behind {@link instrument}. Exposed for tests and benchmarks.
 * @param opts.meter false to skip the fuel meter (default true): the result is then the module the
 *   meter would rewrite (`__igor_fuel` defined and exported but never charged), which the tests'
 *   reference meter counts instructions on.
 * @throws ModuleError as {@link instrument}.
 */
export function rewrite (wasm: Uint8Array, opts: { memoryLimitPages: number; file?: string; meter?: boolean }): { binary: Uint8Array; globals: InstrumentedGlobal[] } {
  const file = opts.file ?? 'module'
  const limit = opts.memoryLimitPages
  if (!WebAssembly.validate(wasm as Uint8Array<ArrayBuffer>)) {
    throw new ModuleError(`${file}: not a valid WebAssembly module (${compileError(wasm)})`)
  }
  let facts: ModuleFacts
  try { facts = scanModule(wasm) } catch (e) {
    throw new ModuleError(`${file}: not a valid WebAssembly module (${(e as Error).message})`)
  }
  if (facts.exports.some((x) => x.name === FUEL_GLOBAL) || facts.imports.some((x) => x.name === FUEL_GLOBAL)) {
    throw new ModuleError(`${file}: already instrumented (it has ${FUEL_GLOBAL})`)
  }
  checkModuleFacts(facts, file)
  const mem = facts.memories[0]
  if (mem && mem.initial > limit) {
    throw new ModuleError(`${file}: initial memory is ${mem.initial} pages, above the limit of ${limit} pages`)
  }
  const memExport = facts.exports.find((x) => x.name === 'memory')
  if (memExport && memExport.kind !== 2) throw new ModuleError(`${file}: exports "memory" but it is not the memory`)

  const m = readQuietly(wasm, file)
  try {
    m.setFeatures(ALLOWED_FEATURES)
    if (m.getGlobal(FUEL_GLOBAL)) {
      throw new ModuleError(`${file}: already instrumented (it defines ${FUEL_GLOBAL})`)
    }
    checkCode(m, file)

    // Globals: export every internal mutable one as __igor_g<index> (before the fuel global is added).
    const globals: InstrumentedGlobal[] = []
    for (let i = 0; i < m.getNumGlobals(); i++) {
      const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i))
      if (g.module || !g.mutable) continue
      const exportName = GLOBAL_EXPORT_PREFIX + i
      const existing = facts.exports.find((x) => x.name === exportName)
      if (existing && (existing.kind !== 3 || existing.index !== i)) {
        throw new ModuleError(`${file}: already exports "${exportName}" as something other than global ${i}`)
      }
      if (!existing) m.addGlobalExport(g.name, exportName)
      globals.push({ index: i, exportName, type: typeName(g.type) })
    }
    if (!mem) m.setMemory(0, limit, 'memory')

    m.addGlobal(FUEL_GLOBAL, binaryen.i64, true, m.i64.const(START_FUEL))
    m.addGlobalExport(FUEL_GLOBAL, FUEL_GLOBAL)

    const problem = validateQuietly(m)
    if (problem !== null) throw new ModuleError(`${file}: could not be instrumented (binaryen: ${problem})`)
    const emitted = m.emitBinary()
    const capped = capMemory(emitted, limit, file)
    // Fuel is metered last, on the exact code the engine will run (docs/ABI.md "Fuel").
    let binary: Uint8Array
    try { binary = opts.meter === false ? capped : meter(capped) } catch (e) {
      throw new ModuleError(`${file}: could not be metered (${(e as Error).message})`)
    }
    if (!WebAssembly.validate(binary as Uint8Array<ArrayBuffer>)) {
      throw new ModuleError(`${file}: the instrumented module does not validate in V8 (${compileError(binary)})`)
    }
    checkExports(binary, globals, file)
    return { binary, globals }
  } finally {
    m.dispose()
  }
}

function typeName (t: number): InstrumentedGlobal['type'] {
  switch (t) {
    case binaryen.i32: return 'i32'
    case binaryen.i64: return 'i64'
    case binaryen.f32: return 'f32'
    case binaryen.f64: return 'f64'
    case binaryen.v128: return 'v128'
  }
  throw new ModuleError(`unsupported global type ${t}`)
}

function compileError (wasm: Uint8Array): string {
  try { new WebAssembly.Module(wasm as Uint8Array<ArrayBuffer>); return 'unknown reason' } catch (e) { return (e as Error).message.replace(/^WebAssembly\.Module\(\): /, '') }
}

/** Runs `fn` with binaryen's stderr/stdout output captured (binaryen prints validation errors). */
function quietly<T> (fn: () => T): { value: T; output: string } {
  const out = process.stdout.write; const err = process.stderr.write
  let output = ''
  const sink = (s: string | Uint8Array): boolean => { output += typeof s === 'string' ? s : Buffer.from(s).toString(); return true }
  process.stdout.write = sink as typeof process.stdout.write
  process.stderr.write = sink as typeof process.stderr.write
  try { return { value: fn(), output } } finally { process.stdout.write = out; process.stderr.write = err }
}

function readQuietly (wasm: Uint8Array, file: string): binaryen.Module {
  try {
    return quietly(() => binaryen.readBinary(wasm)).value
  } catch (e) {
    throw new ModuleError(`${file}: binaryen could not read the module (${e instanceof Error ? e.message : String(e)})`)
  }
}

/** Validates with binaryen; null when valid, else the first line of its complaint. */
function validateQuietly (m: binaryen.Module): string | null {
  const { value, output } = quietly(() => m.validate())
  if (value) return null
  return output.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'invalid'
}

/**
 * Sets the maximum of memory 0 to min(existing maximum, `limit`) and exports it as `memory` if no
 * export has that name. Works on the bytes binaryen emitted (WebAssembly spec §5.5.8, §5.5.10).
 */
function capMemory (wasm: Uint8Array, limit: number, file: string): Uint8Array {
  const facts = scanModule(wasm)
  const mem = facts.memories[0]
  if (!mem) throw new ModuleError(`${file}: no memory after instrumentation`)
  const max = mem.maximum === undefined ? limit : Math.min(mem.maximum, limit)
  const replace = new Map<number, number[]>()
  replace.set(5, [1, 0x01, ...uleb(mem.initial), ...uleb(max)])
  if (!facts.exports.some((x) => x.name === 'memory')) {
    const sec = facts.sections.find((s) => s.id === 7)!
    const body = wasm.subarray(sec.contentStart, sec.end)
    const count = facts.exports.length
    const countLen = uleb(count).length
    const entry = [...uleb(6), ...new TextEncoder().encode('memory'), 0x02, 0x00]
    replace.set(7, [...uleb(count + 1), ...body.subarray(countLen), ...entry])
  }
  const parts: Uint8Array[] = [wasm.subarray(0, 8)]
  for (const s of facts.sections) {
    const content = replace.get(s.id)
    if (content) parts.push(Uint8Array.from([s.id, ...uleb(content.length), ...content]))
    else parts.push(wasm.subarray(s.start, s.end))
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/** Post-condition: every `__igor_g<i>` export names global i, and the fuel counter is exported. */
function checkExports (wasm: Uint8Array, globals: InstrumentedGlobal[], file: string): void {
  const ex = scanModule(wasm).exports
  for (const g of globals) {
    if (!ex.some((x) => x.name === g.exportName && x.kind === 3 && x.index === g.index)) {
      throw new ModuleError(`${file}: internal error: ${g.exportName} does not name global ${g.index} after instrumentation`)
    }
  }
  if (!ex.some((x) => x.name === FUEL_GLOBAL && x.kind === 3)) throw new ModuleError(`${file}: internal error: ${FUEL_GLOBAL} not exported`)
}

interface CacheRecord { version: string; cid: string; limit: number; globals: InstrumentedGlobal[] }

function readCache (dir: string, key: string, cid: string): Instrumented | null {
  const wasmPath = path.join(dir, `${key}.wasm`); const jsonPath = path.join(dir, `${key}.json`)
  let binary: Uint8Array; let rec: CacheRecord
  try {
    if (!fs.existsSync(wasmPath) || !fs.existsSync(jsonPath)) return null
    binary = new Uint8Array(fs.readFileSync(wasmPath))
    rec = JSON.parse(fs.readFileSync(jsonPath, 'utf8')) as CacheRecord
  } catch (e) {
    if (e instanceof SyntaxError) return null
    throw new StorageError(`${wasmPath}: cannot read the instrumentation cache (${(e as Error).message})`)
  }
  if (rec.version !== INSTRUMENT_VERSION || rec.cid !== cid || !Array.isArray(rec.globals) || !WebAssembly.validate(binary as Uint8Array<ArrayBuffer>)) return null
  if (!scanModule(binary).exports.some((x) => x.name === FUEL_GLOBAL)) return null
  return { binary, globals: rec.globals, cid }
}

function writeCache (dir: string, key: string, r: Instrumented): void {
  const rec: CacheRecord = { version: INSTRUMENT_VERSION, cid: r.cid, limit: Number(key.slice(key.lastIndexOf('-') + 1)), globals: r.globals }
  const wasmPath = path.join(dir, `${key}.wasm`)
  try {
    fs.mkdirSync(dir, { recursive: true })
    // Write to temporary names, then rename: readers never see half a file.
    for (const [p, data] of [[wasmPath, r.binary], [path.join(dir, `${key}.json`), JSON.stringify(rec) + '\n']] as const) {
      const tmp = `${p}.${process.pid}.tmp`
      fs.writeFileSync(tmp, data)
      fs.renameSync(tmp, p)
    }
  } catch (e) {
    throw new StorageError(`${wasmPath}: cannot write the instrumentation cache (${(e as Error).message})`)
  }
}
