/**
 * The instrumenter (DESIGN §5): validate a wasm module, gate its features, meter it with fuel,
 * export its mutable globals as `__igor_g<index>`, cap and export its memory. Results are cached by
 * the original module's CID, the memory limit and the recipe, in memory and optionally on disk
 * (runtime/code-cache.ts, which also runs {@link rewrite} in a helper thread for code that does not
 * load this module).
 *
 * The ABI this produces is documented in docs/ABI.md ("Fuel and instrumentation").
 */
import binaryen from 'binaryen'
import { ModuleError } from '../checkpoint/errors.ts'
import { clearMemoryCache, loadInstrumented, useInThreadRewrite } from './code-cache.ts'
import type { CodeCache, Instrumented, InstrumentedGlobal } from './code-cache.ts'
import { ALLOWED_FEATURES, checkCode, checkHeader, checkModuleFacts, scanModule, thrownMessage } from './features.ts'
import { uleb } from './wasm-code.ts'
import type { ModuleFacts } from './features.ts'
import { FUEL_GLOBAL, START_FUEL, meter } from './fuel.ts'

export { FUEL_GLOBAL, START_FUEL, COSTS, fuelUsed } from './fuel.ts'

/** Prefix of the export names given to internal mutable globals: `__igor_g<index>`. */
export const GLOBAL_EXPORT_PREFIX = '__igor_g'

export { INSTRUMENT_VERSION, RECIPE } from './code-cache.ts'
export type { Instrumented, InstrumentedGlobal } from './code-cache.ts'

/** Prefixes of the v128 accessor exports: `__igor_v128_get_<index>`, `__igor_v128_set_<index>`. */
export const V128_ACCESSOR_PREFIX = { get: '__igor_v128_get_', set: '__igor_v128_set_' } as const

/** Options of {@link instrument}. */
export interface InstrumentOptions {
  /** Memory cap in 64 KiB pages, integer in [0, 65536] (the manifest's memory limit). */
  memoryLimitPages: number
  /** Name used in error messages (default `module`). */
  file?: string
  /** The on-disk cache (runtime/code-cache.ts); none if absent. */
  cache?: CodeCache
  /** Shorthand for `cache: { dir: cacheDir }`. */
  cacheDir?: string
}

/**
 * Instruments a wasm module for igord (DESIGN §5), or returns the cached result for the same
 * module CID, memory limit and recipe (runtime/code-cache.ts `loadInstrumented`, with this
 * thread's binaryen on a miss).
 * @param wasm the original module bytes.
 * @returns the instrumented binary, the exported globals and the original module's CID.
 * @throws ModuleError when the bytes are not valid wasm, use a rejected feature, import their
 *   memory or a mutable global, need more initial memory than the limit, or are already instrumented.
 * @throws ManifestError when `memoryLimitPages` is not an integer in [0, 65536].
 */
export function instrument (wasm: Uint8Array, opts: InstrumentOptions): Instrumented {
  const cache = opts.cache ?? (opts.cacheDir === undefined ? undefined : { dir: opts.cacheDir })
  return loadInstrumented(wasm, { memoryLimitPages: opts.memoryLimitPages, ...(opts.file === undefined ? {} : { file: opts.file }), ...(cache === undefined ? {} : { cache }), rewrite })
}

/** Empties this thread's in-memory cache of instrumented modules (tests, long-running hosts). */
export function clearInstrumentCache (): void { clearMemoryCache() }

/**
 * The uncached rewrite behind {@link instrument}. Exposed for tests and benchmarks.
 * @param opts.meter false to skip the fuel meter (default true): the result is then the module the
 *   meter would rewrite (`__igor_fuel` defined and exported but never charged), which the tests'
 *   reference meter counts instructions on.
 * @throws ModuleError as {@link instrument}.
 */
export function rewrite (wasm: Uint8Array, opts: { memoryLimitPages: number; file?: string; meter?: boolean; importedMemory?: boolean }): { binary: Uint8Array; globals: InstrumentedGlobal[] } {
  const file = opts.file ?? 'module'
  const limit = opts.memoryLimitPages
  checkHeader(wasm, file)
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
  checkModuleFacts(facts, file, { importedMemory: opts.importedMemory === true })
  // A component's core module may import the memory another of its instances defines: it is
  // neither given a memory nor capped here (the defining module's cap bounds the shared memory).
  const importsMemory = facts.imports.some((x) => x.kind === 2)
  const mem = facts.memories[0]
  if (mem && mem.initial > limit) {
    throw new ModuleError(`${file}: initial memory is ${mem.initial} pages, above the limit of ${limit} pages`)
  }
  const memExport = facts.exports.find((x) => x.name === 'memory')
  if (memExport && memExport.kind !== 2) throw new ModuleError(`${file}: exports "memory" but it is not the memory`)

  // A module without memory gets an empty one here, in the bytes, so that binaryen keeps its passive
  // data segments (binaryen's setMemory would drop them, and a data.drop would then not validate).
  const m = readQuietly(mem || importsMemory ? wasm : withEmptyMemory(wasm, facts), file)
  try {
    m.setFeatures(ALLOWED_FEATURES)
    if (m.getGlobal(FUEL_GLOBAL)) {
      throw new ModuleError(`${file}: already instrumented (it defines ${FUEL_GLOBAL})`)
    }
    checkCode(m, file, facts)

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
      const type = typeName(g.type)
      if (type === 'v128') {
        for (const n of [V128_ACCESSOR_PREFIX.get + i, V128_ACCESSOR_PREFIX.set + i]) {
          if (facts.exports.some((x) => x.name === n) || m.getFunction(n) !== 0) throw new ModuleError(`${file}: already has "${n}", a name igord gives to a v128 global accessor`)
        }
        globals.push({ index: i, exportName, type, accessors: { get: V128_ACCESSOR_PREFIX.get + i, set: V128_ACCESSOR_PREFIX.set + i } })
      } else globals.push({ index: i, exportName, type })
    }

    m.addGlobal(FUEL_GLOBAL, binaryen.i64, true, m.i64.const(START_FUEL))
    m.addGlobalExport(FUEL_GLOBAL, FUEL_GLOBAL)
    addV128Accessors(m, globals) // left unmetered below: the host calls them between ticks, even with the counter below zero

    const problem = validateQuietly(m)
    if (problem !== null) throw new ModuleError(`${file}: could not be instrumented (binaryen: ${problem})`)
    const emitted = quietly(() => m.emitBinary()).value // binaryen prints warnings ("Some VMs may not accept…")
    const capped = importsMemory ? emitted : capMemory(emitted, limit, file)
    // Fuel is metered last, on the exact code the engine will run (docs/ABI.md "Fuel").
    const accessors = new Set(globals.flatMap((g) => g.accessors === undefined ? [] : [g.accessors.get, g.accessors.set]))
    let binary: Uint8Array
    try { binary = opts.meter === false ? capped : meter(capped, accessors) } catch (e) {
      throw new ModuleError(`${file}: could not be metered (${thrownMessage(e)})`)
    }
    if (!WebAssembly.validate(binary as Uint8Array<ArrayBuffer>)) {
      throw new ModuleError(`${file}: the instrumented module does not validate in V8 (${compileError(binary)})`)
    }
    checkExports(binary, globals, file)
    return { binary, globals }
  } catch (e) {
    // binaryen throws plain objects (C++ exceptions) and aborts; never let one out as "[object Object]".
    if (e instanceof ModuleError) throw e
    if (e instanceof RangeError && /call stack/i.test(e.message)) {
      throw new ModuleError(`${file}: could not be instrumented: its code nests too deeply for the instrumenter (JavaScript stack exhausted)`)
    }
    throw new ModuleError(`${file}: could not be instrumented (${e instanceof Error ? '' : 'binaryen: '}${thrownMessage(e)})`)
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

/**
 * Runs `fn` with binaryen's stderr/stdout output captured (binaryen prints validation errors and
 * parse exceptions). A throw is rethrown as a {@link QuietFailure} carrying the captured output.
 */
function quietly<T> (fn: () => T): { value: T; output: string } {
  const out = process.stdout.write; const err = process.stderr.write
  let output = ''
  const sink = (s: string | Uint8Array): boolean => { output += typeof s === 'string' ? s : Buffer.from(s).toString(); return true }
  process.stdout.write = sink as typeof process.stdout.write
  process.stderr.write = sink as typeof process.stderr.write
  try {
    return { value: fn(), output }
  } catch (e) {
    throw new QuietFailure(e, output)
  } finally { process.stdout.write = out; process.stderr.write = err }
}

/** Something `fn` threw inside {@link quietly}, with binaryen's output up to then. */
class QuietFailure extends Error {
  constructor (cause: unknown, output: string) {
    const said = output.split('\n').map((l) => l.trim()).filter((l) => l !== '').join('; ')
    super(said === '' ? thrownMessage(cause) : `${thrownMessage(cause)}: ${said}`)
  }
}

/**
 * Reads the module with binaryen. Custom sections never affect a module's meaning (WebAssembly
 * spec §5.5.3), but binaryen parses some (`name`, `target_features`, `dylink.0`, branch hints) and
 * throws on a malformed one: then the module is read again without its custom sections.
 * @throws ModuleError with binaryen's parse error when the module cannot be read even so.
 */
function readQuietly (wasm: Uint8Array, file: string): binaryen.Module {
  try {
    return quietly(() => binaryen.readBinary(wasm)).value
  } catch (e) {
    const stripped = withoutCustomSections(wasm)
    if (stripped !== null) {
      try { return quietly(() => binaryen.readBinary(stripped)).value } catch { /* report the first failure */ }
    }
    throw new ModuleError(`${file}: binaryen could not read the module (${thrownMessage(e)})`)
  }
}

/** The module without its custom sections (id 0), or null when it has none. */
function withoutCustomSections (wasm: Uint8Array): Uint8Array | null {
  const sections = scanModule(wasm).sections
  if (!sections.some((s) => s.id === 0)) return null
  return concat([wasm.subarray(0, 8), ...sections.filter((s) => s.id !== 0).map((s) => wasm.subarray(s.start, s.end))])
}

/**
 * The module with a memory section holding one empty memory (0 pages, no maximum) inserted in
 * section order: after the type, import, function and table sections (WebAssembly spec §5.5.2).
 * {@link capMemory} later sets its maximum and exports it.
 */
function withEmptyMemory (wasm: Uint8Array, facts: ModuleFacts): Uint8Array {
  const before = facts.sections.filter((s) => s.id >= 1 && s.id <= 4).at(-1)
  const at = before === undefined ? 8 : before.end
  return concat([wasm.subarray(0, at), Uint8Array.from([5, 3, 1, 0x00, 0]), wasm.subarray(at)])
}

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/**
 * Adds and exports the accessor functions of each v128 global ({@link InstrumentedGlobal.accessors}).
 * Called after metering, so they are not metered: they touch no memory and cost no fuel.
 */
function addV128Accessors (m: binaryen.Module, globals: InstrumentedGlobal[]): void {
  const i64 = binaryen.i64
  for (const g of globals) {
    if (g.accessors === undefined) continue
    const name = binaryen.getGlobalInfo(m.getGlobalByIndex(g.index)).name
    const get = (): number => m.global.get(name, binaryen.v128)
    m.addFunction(g.accessors.get, binaryen.none, binaryen.createType([i64, i64]), [],
      m.tuple.make([m.i64x2.extract_lane(get(), 0), m.i64x2.extract_lane(get(), 1)]))
    m.addFunction(g.accessors.set, binaryen.createType([i64, i64]), binaryen.none, [],
      m.global.set(name, m.i64x2.replace_lane(m.i64x2.splat(m.local.get(0, i64)), 1, m.local.get(1, i64))))
    m.addFunctionExport(g.accessors.get, g.accessors.get)
    m.addFunctionExport(g.accessors.set, g.accessors.set)
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
  for (const g of globals) {
    for (const n of g.accessors === undefined ? [] : [g.accessors.get, g.accessors.set]) {
      if (!ex.some((x) => x.name === n && x.kind === 0)) throw new ModuleError(`${file}: internal error: ${n} not exported`)
    }
  }
}

// Misses of runtime/code-cache.ts in this thread are instrumented here (binaryen is loaded anyway).
useInThreadRewrite(rewrite)
