/**
 * The feature gate of DESIGN §5.4: what a wasm module may use to run as an igord agent, checked
 * before instrumentation. Also a tiny reader/patcher of the module-level sections that
 * `instrument.ts` needs (memory limits, exports), so those facts do not depend on binaryen.
 *
 * Allowed: MVP, mutable globals (v128 ones too), sign-extension, non-trapping float-to-int, bulk
 * memory (incl. binaryen's BulkMemoryOpt), multi-value, SIMD128 without relaxed SIMD, active
 * element segments of functions into table 0 in any encoding, declarative funcref segments.
 * Rejected (ModuleError naming the feature, and the function, segment, item or global where it was
 * found): threads/atomics and shared memory, relaxed SIMD, exception handling, tail calls,
 * reference types and GC beyond the MVP's one funcref table (incl. null elements and non-funcref
 * element segments), memory64, multi-memory, custom page sizes, extended constant expressions
 * (global initializers, data and element offsets), constant expressions reading a module-defined
 * global, stack switching, strings, wide arithmetic, run-time table mutation (`table.set`,
 * `table.grow`, `table.fill`, `table.copy`, `table.init`, `elem.drop`), passive element segments,
 * an imported memory, imported mutable globals, and ABI exports of the wrong signature.
 * {@link checkHeader} names inputs that are not core modules (empty, text, components, other magic).
 *
 * Sources: WebAssembly Core Specification 2.0 §5 (binary format) and the proposals' binary
 * encodings (threads: shared limits flag 0x02; memory64: flag 0x04; custom-page-sizes: flag 0x08;
 * exception handling: tag section id 13; extended-const: i32/i64 add, sub, mul in constant
 * expressions; component model: version 0x0d, layer 1).
 */
import binaryen from 'binaryen'
import { ModuleError } from '../checkpoint/errors.ts'
import { Cursor } from './wasm-code.ts'

const F = binaryen.Features

/**
 * The binaryen feature set igord reads and writes modules with: exactly the allowed features.
 * Never `Features.All` (binaryen 132 then emits a compact-imports encoding V8 rejects).
 */
export const ALLOWED_FEATURES: number = F.MutableGlobals | F.SignExt | F.NontrappingFPToInt |
  F.BulkMemory | F.BulkMemoryOpt | F.Multivalue | F.SIMD128

/** One entry of a module's import section (WebAssembly spec §5.5.5). */
export interface ImportFact {
  module: string
  name: string
  /** 0 func, 1 table, 2 memory, 3 global, 4 tag (exception handling). */
  kind: number
  /** Globals only: whether the imported global is mutable. */
  mutable?: boolean
  /** Memories only: the imported memory's limits. */
  limits?: Limits
}

/** One entry of a module's export section (WebAssembly spec §5.5.10). */
export interface ExportFact {
  name: string
  /** 0 func, 1 table, 2 memory, 3 global, 4 tag. */
  kind: number
  /** Index into the kind's index space (imports first). */
  index: number
}

/** Memory limits as read from a memory type (WebAssembly spec §5.3.8 + threads/memory64 flags). */
export interface Limits {
  /** The raw flags byte: bit 0 has-max, bit 1 shared, bit 2 64-bit, bit 3 custom page size. */
  flags: number
  /** Minimum size, in 64 KiB pages. */
  initial: number
  /** Maximum size, in 64 KiB pages, when bit 0 of `flags` is set. */
  maximum?: number
}

/** A function type: parameter and result value types as binary type codes (0x7f i32 … 0x7b v128). */
export interface FuncType { params: number[]; results: number[] }

/** Module-level facts read by {@link scanModule}. */
export interface ModuleFacts {
  imports: ImportFact[]
  exports: ExportFact[]
  /** Memories defined in the memory section (not the imported ones). */
  memories: Limits[]
  /** Number of tables, imported and defined. */
  tables: number
  /** The first reason, if any, a table is not a plain funcref table. */
  tableProblem?: string
  /** Number of imported plus defined globals (the global index space). */
  globals: number
  /** Whether a tag section (exception handling) is present. */
  hasTags: boolean
  /** The first non-MVP type found in the type section, if any. */
  typeProblem?: string
  /** Function types by type index, up to the first non-function type (GC types are refused). */
  types: FuncType[]
  /** The type index of each function, imports first (the function index space). */
  funcTypes: number[]
  /**
   * The first constant expression or element segment the gate refuses (an extended constant
   * expression, a null element, a non-funcref segment, …), with the segment, item or global.
   */
  segmentProblem?: string
  /**
   * The first passive element segment, if any (refused by {@link checkCode} given these facts,
   * after the code: a `table.init` that uses it is the better thing to name).
   */
  passiveProblem?: string
  /** Sections by id with byte ranges [start of id byte, end of contents). */
  sections: { id: number; start: number; contentStart: number; end: number }[]
}

/** The module scan's reader: the shared byte cursor plus table/memory limits (§5.3.7). */
class Reader extends Cursor {
  limits (): Limits {
    const flags = this.byte()
    if (flags > 0x0f) throw new RangeError(`unknown limits flags 0x${flags.toString(16)}`)
    const initial = this.u()
    const maximum = (flags & 1) !== 0 ? this.u() : undefined
    if ((flags & 8) !== 0) this.u() // custom page size log2
    return maximum === undefined ? { flags, initial } : { flags, initial, maximum }
  }
}

const NUM_TYPES = new Set([0x7f, 0x7e, 0x7d, 0x7c, 0x7b])

/** Reads a reference type; returns true iff it is plain `funcref` (0x70). */
function refType (r: Reader): boolean {
  const t = r.byte()
  if (t === 0x63 || t === 0x64) { r.skipLeb(); return false }
  return t === 0x70
}

/**
 * Reads the module-level facts of a wasm binary (WebAssembly spec §5.5): imports, exports,
 * memories, table and global counts, tags, and whether the type section uses anything beyond
 * numeric/v128 function types. Code and data are skipped.
 * @param wasm a module that `WebAssembly.validate` accepted.
 * @throws RangeError on a malformed section (cannot happen for a validated module).
 */
export function scanModule (wasm: Uint8Array): ModuleFacts {
  const facts: ModuleFacts = { imports: [], exports: [], memories: [], tables: 0, globals: 0, hasTags: false, types: [], funcTypes: [], sections: [] }
  let pos = 8
  while (pos < wasm.length) {
    const start = pos
    const head = new Reader(wasm, pos, wasm.length)
    const id = head.byte()
    const size = head.u()
    const contentStart = head.pos
    const end = contentStart + size
    if (end > wasm.length) throw new RangeError(`section ${id} runs past the end`)
    facts.sections.push({ id, start, contentStart, end })
    const r = new Reader(wasm, contentStart, end)
    switch (id) {
      case 1: readTypes(r, facts); break
      case 2: readImports(r, facts); break
      case 4: {
        const n = r.u()
        for (let i = 0; i < n; i++) {
          facts.tables++
          if (r.b[r.pos] === 0x40) { facts.tableProblem ??= 'a table with an initializer expression'; r.pos = end; break }
          if (!refType(r)) facts.tableProblem ??= 'a table of non-funcref references'
          const l = r.limits()
          if ((l.flags & 4) !== 0) facts.tableProblem ??= 'a 64-bit table'
        }
        break
      }
      case 3: { const n = r.u(); for (let i = 0; i < n; i++) facts.funcTypes.push(r.u()); break }
      case 5: { const n = r.u(); for (let i = 0; i < n; i++) facts.memories.push(r.limits()); break }
      case 6: readGlobals(r, facts); break
      case 7: {
        const n = r.u()
        for (let i = 0; i < n; i++) { const name = r.name(); const kind = r.byte(); facts.exports.push({ name, kind, index: r.u() }) }
        break
      }
      case 9: readElements(r, facts); break
      case 11: readData(r, facts); break
      case 13: facts.hasTags = true; break
    }
    pos = end
  }
  return facts
}

function readTypes (r: Reader, facts: ModuleFacts): void {
  const n = r.u()
  for (let i = 0; i < n; i++) {
    const form = r.byte()
    if (form !== 0x60) { facts.typeProblem = 'GC types (struct, array, sub or rec types)'; return }
    const ft: FuncType = { params: [], results: [] }
    for (const list of [ft.params, ft.results]) {
      const m = r.u()
      for (let j = 0; j < m; j++) {
        const t = r.byte()
        if (!NUM_TYPES.has(t)) { facts.typeProblem = 'reference types (a function type with a reference-typed parameter or result)'; return }
        list.push(t)
      }
    }
    facts.types.push(ft)
  }
}

function readImports (r: Reader, facts: ModuleFacts): void {
  const n = r.u()
  for (let i = 0; i < n; i++) {
    const module = r.name(); const name = r.name(); const kind = r.byte()
    const imp: ImportFact = { module, name, kind }
    switch (kind) {
      case 0: facts.funcTypes.push(r.u()); break
      case 1: {
        facts.tables++
        if (!refType(r)) facts.tableProblem ??= 'a table of non-funcref references'
        if ((r.limits().flags & 4) !== 0) facts.tableProblem ??= 'a 64-bit table'
        break
      }
      case 2: imp.limits = r.limits(); break
      case 3: {
        const t = r.byte()
        if (t === 0x63 || t === 0x64) r.skipLeb()
        if (!NUM_TYPES.has(t)) facts.typeProblem ??= 'reference types (a reference-typed global import)'
        imp.mutable = r.byte() === 1
        facts.globals++
        break
      }
      case 4: facts.hasTags = true; r.byte(); r.u(); break
      default: throw new RangeError(`unknown import kind 0x${kind.toString(16)}`)
    }
    facts.imports.push(imp)
  }
}

const EXTENDED_CONST_OPS: Record<number, string> = { 0x6a: 'i32.add', 0x6b: 'i32.sub', 0x6c: 'i32.mul', 0x7c: 'i64.add', 0x7d: 'i64.sub', 0x7e: 'i64.mul' }

/** A constant expression (WebAssembly spec §3.3.10) as far as the gate cares. */
interface ConstExpr {
  /** The single instruction's opcode (0x41 i32.const, 0x23 global.get, 0xd0 ref.null, 0xd2 ref.func, …). */
  op: number
  /** What the gate refuses in it, phrased as a feature (`extended constant expressions (i32.add)`). */
  problem?: string
}

/**
 * Reads a constant expression up to and including its `end`. Allowed: exactly one of
 * `i32/i64/f32/f64/v128.const`, `ref.null`, `ref.func`, or `global.get` of an imported global.
 * On a refused instruction the reader stops there (the caller stops reading the section).
 */
function constExpr (r: Reader, facts: ModuleFacts): ConstExpr {
  const importedGlobals = facts.imports.filter((x) => x.kind === 3).length
  const ops: number[] = []
  let problem: string | undefined
  for (;;) {
    const op = r.byte()
    if (op === 0x0b) break
    ops.push(op)
    switch (op) {
      case 0x41: case 0x42: r.skipLeb(); break
      case 0x43: r.skipBytes(4); break
      case 0x44: r.skipBytes(8); break
      case 0xd0: r.skipLeb(); break
      case 0xd2: r.u(); break
      case 0x23: {
        const g = r.u()
        if (g >= importedGlobals) problem ??= `a GC-proposal constant expression (global.get of module-defined global ${g}; only imported globals may be read there)`
        break
      }
      case 0xfd: {
        const sub = r.u()
        if (sub !== 12) return { op: ops[0], problem: `SIMD instruction 0xfd ${sub} in a constant expression` }
        r.skipBytes(16)
        break
      }
      case 0xfb: return { op: ops[0], problem: 'GC (a GC instruction in a constant expression)' }
      default:
        if (EXTENDED_CONST_OPS[op] === undefined) return { op: ops[0], problem: `an unsupported constant expression (opcode 0x${op.toString(16)})` }
    }
  }
  if (ops.length > 1) {
    const arith = [...new Set(ops.map((o) => EXTENDED_CONST_OPS[o]).filter((x) => x !== undefined))]
    return { op: ops[0], problem: `extended constant expressions (${arith.length > 0 ? arith.join(', ') : `${ops.length} instructions`})` }
  }
  if (ops.length === 0) return { op: -1, problem: 'an empty constant expression' }
  return problem === undefined ? { op: ops[0] } : { op: ops[0], problem }
}

/** Global section (§5.5.9): counts the globals and checks each initializer. */
function readGlobals (r: Reader, facts: ModuleFacts): void {
  const n = r.u()
  const base = facts.globals
  facts.globals += n
  for (let i = 0; i < n; i++) {
    const t = r.byte()
    if (t === 0x63 || t === 0x64) r.skipLeb()
    r.byte() // mutability
    const e = constExpr(r, facts)
    if (e.problem !== undefined) { facts.segmentProblem ??= `${e.problem} in the initializer of global ${base + i}`; return }
  }
}

/** An active segment's offset: one `i32.const` or `global.get` of an imported global. */
function offsetExpr (r: Reader, facts: ModuleFacts, where: string): boolean {
  const e = constExpr(r, facts)
  if (e.problem !== undefined) { facts.segmentProblem ??= `${e.problem} in the offset of ${where}`; return false }
  if (e.op !== 0x41 && e.op !== 0x23) { facts.segmentProblem ??= `an offset that is not i32.const or global.get (opcode 0x${e.op.toString(16)}) in ${where}`; return false }
  return true
}

/**
 * Element section (§5.5.12, all eight segment kinds). Allowed: active segments into table 0 of
 * function references (index vectors, or `ref.func` expressions), and declarative segments of
 * funcref (they only declare functions for `ref.func`, which the code check refuses anyway; binaryen
 * drops them). Refused: passive segments (only `table.init` reads them), null elements, non-funcref
 * element types.
 */
function readElements (r: Reader, facts: ModuleFacts): void {
  const n = r.u()
  for (let i = 0; i < n; i++) {
    const where = `element segment ${i}`
    const flags = r.u()
    if (flags > 7) throw new RangeError(`${where} has unknown flags ${flags}`)
    const mode = flags & 3 // 0 active table 0, 1 passive, 2 active with table index, 3 declarative
    const exprs = (flags & 4) !== 0
    if (mode === 2) {
      const t = r.u()
      if (t !== 0) facts.segmentProblem ??= `reference types (${where} initialises table ${t})`
    }
    if ((mode === 0 || mode === 2) && !offsetExpr(r, facts, where)) return
    let funcref = true
    if (mode !== 0) {
      if (exprs) {
        const t = r.byte()
        if (t === 0x63 || t === 0x64) { funcref = t === 0x63 && r.b[r.pos] === 0x70; r.skipLeb() } else funcref = t === 0x70
      } else funcref = r.byte() === 0x00
    }
    if (!funcref) facts.segmentProblem ??= `reference types (${where} has an element type other than funcref)`
    const count = r.u()
    for (let k = 0; k < count; k++) {
      if (!exprs) { r.u(); continue }
      const e = constExpr(r, facts)
      if (e.problem !== undefined) { facts.segmentProblem ??= `${e.problem} in item ${k} of ${where}`; return }
      if (mode === 3) continue
      if (e.op === 0xd0) facts.segmentProblem ??= `reference types (a null element: item ${k} of ${where} is ref.null; tables may only be initialised with functions)`
      else if (e.op !== 0xd2) facts.segmentProblem ??= `reference types (item ${k} of ${where} is not a ref.func)`
    }
    if (mode === 1) facts.passiveProblem ??= `a passive element segment (${where}; only table.init, a run-time table mutation, could use it)`
  }
}

/** Data section (§5.5.14): checks the offsets of active segments. */
function readData (r: Reader, facts: ModuleFacts): void {
  const n = r.u()
  for (let i = 0; i < n; i++) {
    const flags = r.u()
    if (flags > 2) throw new RangeError(`data segment ${i} has unknown flags ${flags}`)
    if (flags === 2) r.u() // memory index (more than one memory is refused elsewhere)
    if (flags !== 1 && !offsetExpr(r, facts, `data segment ${i}`)) return
    r.skipBytes(r.u())
  }
}

/**
 * A readable message for anything thrown by binaryen.js: an `Error`'s message, the `message` of the
 * plain objects binaryen's C++ exceptions arrive as, else a JSON rendering — never "[object Object]".
 * @param e anything thrown.
 * @returns one line of text.
 */
export function thrownMessage (e: unknown): string {
  if (e instanceof Error) return e.message.split('\n')[0]
  if (typeof e === 'object' && e !== null) {
    const msg = (e as { message?: unknown }).message
    if (typeof msg === 'string' && msg !== '') return msg
    try { const j = JSON.stringify(e); if (j !== undefined && j !== '{}') return j } catch { /* cyclic: fall through */ }
    return `an exception of type ${e.constructor?.name ?? 'object'} without a message`
  }
  if (typeof e === 'number') return `a native exception (${e})`
  return String(e)
}


function fail (file: string, what: string, where?: string): never {
  throw new ModuleError(`${file}: uses ${what}${where ? ` in function ${where}` : ''}, which igord does not allow`)
}

/**
 * Checks the module-level part of the feature gate from {@link scanModule}'s facts.
 * @param file the name used in error messages.
 * @throws ModuleError naming the first rejected feature found.
 */
export function checkModuleFacts (facts: ModuleFacts, file: string): void {
  for (const imp of facts.imports) {
    if (imp.kind === 2) throw new ModuleError(`${file}: imports its memory (${imp.module}.${imp.name}); agents must define their own memory`)
    if (imp.kind === 3 && imp.mutable === true) throw new ModuleError(`${file}: imports a mutable global (${imp.module}.${imp.name}); only immutable globals may be imported`)
  }
  if (facts.hasTags) fail(file, 'exception handling (tags)')
  if (facts.typeProblem) fail(file, facts.typeProblem)
  for (const m of facts.memories) {
    if ((m.flags & 2) !== 0) fail(file, 'threads (a shared memory)')
    if ((m.flags & 4) !== 0) fail(file, 'memory64 (a 64-bit memory)')
    if ((m.flags & 8) !== 0) fail(file, 'custom page sizes')
  }
  if (facts.memories.length > 1) fail(file, `multi-memory (${facts.memories.length} memories)`)
  if (facts.tables > 1) fail(file, `reference types (${facts.tables} tables)`)
  if (facts.tableProblem) fail(file, `reference types (${facts.tableProblem})`)
  if (facts.segmentProblem) fail(file, facts.segmentProblem)
  checkAbiExports(facts, file)
}

/**
 * The guest ABI's exported functions and their signatures (docs/ABI.md "Exports"). Only
 * `agent_tick` is required; that is checked where a module becomes an agent (runtime/agent.ts).
 */
export const ABI_EXPORTS: Readonly<Record<string, FuncType>> = {
  agent_tick: { params: [], results: [0x7f] },
  agent_init: { params: [], results: [] },
  _initialize: { params: [], results: [] },
}

const TYPE_NAMES: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128' }
const KIND_NAMES = ['a function', 'a table', 'a memory', 'a global', 'a tag']

/** `(i32, i64) -> f32`, `() -> ()`, `() -> (i32, i32)`. */
export function signatureText (t: FuncType): string {
  const list = (ts: number[]): string => ts.map((x) => TYPE_NAMES[x] ?? `0x${x.toString(16)}`).join(', ')
  return `(${list(t.params)}) -> ${t.results.length === 1 ? list(t.results) : `(${list(t.results)})`}`
}

/**
 * Checks that each ABI export present ({@link ABI_EXPORTS}) is a function of the ABI's signature,
 * so a wrong one is refused at load instead of failing every tick.
 * @throws ModuleError `<file>: exports agent_tick with signature (i32) -> i64; the igor ABI needs agent_tick: () -> i32`
 */
export function checkAbiExports (facts: ModuleFacts, file: string): void {
  for (const [name, want] of Object.entries(ABI_EXPORTS)) {
    const ex = facts.exports.find((x) => x.name === name)
    if (ex === undefined) continue
    if (ex.kind !== 0) {
      throw new ModuleError(`${file}: exports ${name} as ${KIND_NAMES[ex.kind] ?? `kind ${ex.kind}`}; the igor ABI needs ${name} to be a function ${signatureText(want)}`)
    }
    const got = facts.types[facts.funcTypes[ex.index]] as FuncType | undefined
    if (got === undefined) continue // only after a GC type, which checkModuleFacts refuses first
    if (signatureText(got) !== signatureText(want)) {
      throw new ModuleError(`${file}: exports ${name} with signature ${signatureText(got)}; the igor ABI needs ${name}: ${signatureText(want)}`)
    }
  }
}

/** The 8-byte header of a core module: `\0asm`, version 1 (WebAssembly spec §5.5.16). */
const CORE_HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]

/**
 * Checks the 8-byte header before anything else reads the bytes, so that a file that is not a
 * core module gets a message saying what it is instead of V8's decoder error.
 * @param file the name used in error messages.
 * @throws ModuleError for: an empty file; WebAssembly text; a WebAssembly component (component
 *   model, `\0asm` with version 0x0d and layer 1); another binary version; a truncated header;
 *   anything else not starting with `\0asm` (naming its first bytes).
 */
export function checkHeader (wasm: Uint8Array, file: string): void {
  if (wasm.length === 0) throw new ModuleError(`${file}: not a valid WebAssembly module (the file is empty)`)
  const magic = wasm[0] === 0 && wasm[1] === 0x61 && wasm[2] === 0x73 && wasm[3] === 0x6d
  if (!magic) {
    const hex = Array.from(wasm.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ')
    const head = new TextDecoder().decode(wasm.subarray(0, 256)).replace(/^\uFEFF/, '').trimStart()
    if (/^(\(\s*module\b|\(\s*component\b|;;|\(;)/.test(head)) {
      throw new ModuleError(`${file}: not a valid WebAssembly module (it is WebAssembly text format; assemble it into a binary first, e.g. with wasm-tools parse or wat2wasm)`)
    }
    const sample = wasm.subarray(0, 64)
    if (sample.every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b !== 0x7f))) {
      const line = head.split(/\r?\n/)[0]
      const shown = line.length > 40 ? line.slice(0, 40) + '…' : line
      throw new ModuleError(`${file}: not a valid WebAssembly module (it is a text file, starting ${JSON.stringify(shown)}; a WebAssembly binary starts with 00 61 73 6d, "\\0asm")`)
    }
    throw new ModuleError(`${file}: not a valid WebAssembly module (it starts with bytes ${hex}; a WebAssembly binary starts with 00 61 73 6d, "\\0asm")`)
  }
  if (wasm.length < 8) throw new ModuleError(`${file}: not a valid WebAssembly module (truncated: ${wasm.length} bytes, shorter than the 8-byte header)`)
  if (wasm[6] === 0x01 && wasm[7] === 0x00) {
    throw new ModuleError(`${file}: is a WebAssembly component (component model, layer 1), not a core module; igord runs core WebAssembly modules only (docs/ABI.md, "Feature gate")`)
  }
  for (let i = 4; i < 8; i++) {
    if (wasm[i] !== CORE_HEADER[i]) {
      const version = wasm[4] | (wasm[5] << 8) | (wasm[6] << 16) | (wasm[7] << 24)
      throw new ModuleError(`${file}: not a valid WebAssembly module (binary version ${version >>> 0}; igord reads core modules of version 1)`)
    }
  }
}

/**
 * A binaryen expression id by name. binaryen.js 132 exports some ids only as the C function
 * `_Binaryen<Name>Id` (TableFill, TryTable, …), so fall back to calling it.
 */
function exprId (name: string): number | undefined {
  const b = binaryen as unknown as Record<string, unknown>
  const v = b[name + 'Id']
  if (typeof v === 'number') return v
  const fn = b['_Binaryen' + name + 'Id']
  return typeof fn === 'function' ? (fn as () => number)() : undefined
}

const ID_FEATURE = new Map<number, string>()
function ids (feature: string, names: string[]): void {
  for (const n of names) { const id = exprId(n); if (id !== undefined) ID_FEATURE.set(id, feature) }
}
ids('threads (atomic instructions)', ['AtomicRMW', 'AtomicCmpxchg', 'AtomicWait', 'AtomicNotify', 'AtomicFence', 'Pause', 'StructWait', 'StructNotify'])
ids('exception handling', ['Try', 'TryTable', 'Throw', 'Rethrow', 'ThrowRef', 'Pop'])
ids('reference types', ['RefNull', 'RefIsNull', 'RefFunc', 'RefEq', 'RefAs', 'TableGet', 'TableSize'])
ids('GC', ['RefI31', 'I31Get', 'CallRef', 'RefTest', 'RefCast', 'RefGetDesc', 'BrOn', 'StructNew', 'StructGet', 'StructSet',
  'StructRMW', 'StructCmpxchg', 'ArrayNew', 'ArrayNewData', 'ArrayNewElem', 'ArrayNewFixed', 'ArrayGet', 'ArraySet', 'ArrayLoad',
  'ArrayStore', 'ArrayLen', 'ArrayCopy', 'ArrayFill', 'ArrayInitData', 'ArrayInitElem', 'ArrayRMW', 'ArrayCmpxchg'])
ids('strings', ['StringNew', 'StringConst', 'StringMeasure', 'StringEncode', 'StringConcat', 'StringEq', 'StringTest', 'StringWTF16Get', 'StringSliceWTF'])
ids('stack switching', ['ContNew', 'ContBind', 'Suspend', 'Resume', 'ResumeThrow', 'StackSwitch'])
ids('threads (shared-everything wait queues)', ['WaitqueueNew', 'WaitqueueNotify'])
ids('wide arithmetic', ['WideIntAddSub', 'WideIntMul'])
const TABLE_MUTATION: Record<string, string> = { TableSet: 'table.set', TableGrow: 'table.grow', TableFill: 'table.fill', TableCopy: 'table.copy', TableInit: 'table.init', ElemDrop: 'elem.drop' }
for (const [k, op] of Object.entries(TABLE_MUTATION)) ids(`table mutation at run time (${op}; nothing in a table survives a snapshot)`, [k])

// Relaxed-SIMD op codes by expression id (binaryen's UnaryOp, BinaryOp and SIMDTernaryOp enums overlap).
const RELAXED_OPS = new Map<number, Set<number>>([[binaryen.UnaryId, new Set()], [binaryen.BinaryId, new Set()], [binaryen.SIMDTernaryId, new Set()]])
for (const [k, v] of Object.entries(binaryen as unknown as Record<string, unknown>)) {
  if (!/^Relaxed(?!SIMD$|Atomics$)[A-Z]/.test(k) || typeof v !== 'number') continue
  const id = /Trunc/.test(k) ? binaryen.UnaryId : /Madd|Nmadd|Laneselect|AddS/.test(k) ? binaryen.SIMDTernaryId : binaryen.BinaryId
  RELAXED_OPS.get(id)!.add(v)
}

/** Expression ids the rest of igord understands (allowed features). */
export const ALLOWED_IDS: ReadonlySet<number> = new Set([
  binaryen.NopId, binaryen.BlockId, binaryen.IfId, binaryen.LoopId, binaryen.BreakId, binaryen.SwitchId, binaryen.CallId,
  binaryen.CallIndirectId, binaryen.LocalGetId, binaryen.LocalSetId, binaryen.GlobalGetId, binaryen.GlobalSetId,
  binaryen.LoadId, binaryen.StoreId, binaryen.ConstId, binaryen.UnaryId, binaryen.BinaryId, binaryen.SelectId,
  binaryen.DropId, binaryen.ReturnId, binaryen.MemorySizeId, binaryen.MemoryGrowId, binaryen.UnreachableId,
  binaryen.MemoryInitId, binaryen.DataDropId, binaryen.MemoryCopyId, binaryen.MemoryFillId,
  binaryen.SIMDExtractId, binaryen.SIMDReplaceId, binaryen.SIMDShuffleId, binaryen.SIMDTernaryId, binaryen.SIMDShiftId,
  binaryen.SIMDLoadId, binaryen.SIMDLoadStoreLaneId, binaryen.TupleMakeId, binaryen.TupleExtractId,
])

const VALUE_TYPES = new Set<number>([binaryen.none, binaryen.unreachable, binaryen.i32, binaryen.i64, binaryen.f32, binaryen.f64, binaryen.v128])

/** Whether a binaryen type is none/unreachable, a number, v128, or a tuple of those. */
function typeAllowed (t: number): boolean {
  if (VALUE_TYPES.has(t)) return true
  const parts = binaryen.expandType(t)
  return parts.length > 1 && parts.every((p) => VALUE_TYPES.has(p))
}

/**
 * Checks every function body, global and local of a binaryen module against the feature gate,
 * walking expressions by id. Run it on a module read with `binaryen.readBinary` (binaryen reads
 * every feature; only validation checks them).
 * @param file the name used in error messages.
 * @param facts the module's {@link scanModule} facts: a passive element segment is refused after
 *   the code (so that a `table.init` using it is named first).
 * @throws ModuleError naming the feature and the function where it was found.
 */
export function checkCode (m: binaryen.Module, file: string, facts?: ModuleFacts): void {
  for (let i = 0; i < m.getNumGlobals(); i++) {
    const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i))
    if (!typeAllowed(g.type)) fail(file, `reference types (global ${i})`)
    if (g.init && !g.module) checkConstExpr(g.init, file, `global ${i}`)
  }
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const f = binaryen.getFunctionInfo(m.getFunctionByIndex(i))
    if (f.module) continue
    for (const t of [f.params, f.results, ...f.vars]) if (!typeAllowed(t)) fail(file, 'reference types (a reference-typed parameter, result or local)', f.name)
    walkCheck(f.body, file, f.name)
  }
  if (facts?.passiveProblem !== undefined) fail(file, facts.passiveProblem)
}

/** Extended constant expressions: a global initializer that is not a single constant/global.get. */
function checkConstExpr (e: number, file: string, where: string): void {
  const id = binaryen.getExpressionId(e)
  if (id !== binaryen.ConstId && id !== binaryen.GlobalGetId) {
    throw new ModuleError(`${file}: uses extended constant expressions (${where} initializer), which igord does not allow`)
  }
}

/**
 * The deepest expression nesting (in binaryen's IR of a function body, the body itself at depth 1)
 * the gate accepts. The instrumenter's passes recurse once per level, so without a limit a deep
 * module would exhaust the JavaScript stack at a depth that depends on the thread's stack size
 * (about 1,300 nested blocks on Node's main thread): accepted on one host, refused on another. A
 * C `switch` nests one block per case; real agents stay far below this (SQLite: a few hundred).
 */
export const MAX_NESTING_DEPTH = 1000

function walkCheck (root: number, file: string, fn: string): void {
  const stack: [number, number][] = [[root, 1]]
  while (stack.length > 0) {
    const [e, depth] = stack.pop()!
    if (!e) continue
    if (depth > MAX_NESTING_DEPTH) {
      throw new ModuleError(`${file}: nests expressions more than ${MAX_NESTING_DEPTH} deep in function ${fn}, which igord does not allow`)
    }
    const info = infoOf(e)
    const id = info.id
    if (!ALLOWED_IDS.has(id)) fail(file, ID_FEATURE.get(id) ?? `an unsupported instruction (binaryen expression id ${id})`, fn)
    if (!typeAllowed(info.type)) fail(file, 'reference types', fn)
    if ((id === binaryen.CallId || id === binaryen.CallIndirectId) && info.isReturn === true) fail(file, 'tail calls (return_call)', fn)
    if ((id === binaryen.LoadId || id === binaryen.StoreId) && info.isAtomic === true) fail(file, 'threads (atomic instructions)', fn)
    if (RELAXED_OPS.get(id)?.has(info.op as number) === true) fail(file, 'relaxed SIMD', fn)
    for (const c of childrenOf(info)) stack.push([c, depth + 1])
  }
}

/** An expression's info as a record: `binaryen.getExpressionInfo`, which throws for ids without fields. */
export type Info = binaryen.ExpressionInfo & Record<string, unknown>

/**
 * `binaryen.getExpressionInfo(e)`, also for ids it has no accessor class for (nop, unreachable),
 * which have no fields besides id and type.
 */
export function infoOf (e: number): Info {
  const id = binaryen.getExpressionId(e)
  if (id === binaryen.NopId || id === binaryen.UnreachableId) return { id, type: binaryen.getExpressionType(e) }
  try {
    return binaryen.getExpressionInfo(e) as Info
  } catch (err) {
    if (err instanceof RangeError) throw err // stack exhausted: not an id without fields
    return { id, type: binaryen.getExpressionType(e) }
  }
}

/**
 * The child expressions of an allowed expression, in evaluation order (null entries skipped).
 * @param info from `binaryen.getExpressionInfo`.
 */
export function childrenOf (info: Info): number[] {
  const pick = (...keys: string[]): number[] => {
    const out: number[] = []
    for (const k of keys) { const v = info[k]; if (typeof v === 'number' && v !== 0) out.push(v) }
    return out
  }
  switch (info.id) {
    case binaryen.BlockId: return (info.children as number[]).filter((c) => c !== 0)
    case binaryen.IfId: return pick('condition', 'ifTrue', 'ifFalse')
    case binaryen.LoopId: return pick('body')
    case binaryen.BreakId: return pick('value', 'condition')
    case binaryen.SwitchId: return pick('value', 'condition')
    case binaryen.CallId: case binaryen.TupleMakeId: return (info.operands as number[]).filter((c) => c !== 0)
    case binaryen.CallIndirectId: return [...(info.operands as number[]), info.target as number].filter((c) => c !== 0)
    case binaryen.LocalSetId: case binaryen.GlobalSetId: case binaryen.UnaryId: case binaryen.DropId: case binaryen.ReturnId: return pick('value')
    case binaryen.LoadId: case binaryen.SIMDLoadId: return pick('ptr')
    case binaryen.StoreId: return pick('ptr', 'value')
    case binaryen.BinaryId: case binaryen.SIMDShuffleId: return pick('left', 'right')
    case binaryen.SelectId: return pick('ifTrue', 'ifFalse', 'condition')
    case binaryen.MemoryGrowId: return pick('delta')
    case binaryen.MemoryInitId: return pick('dest', 'offset', 'size')
    case binaryen.MemoryCopyId: return pick('dest', 'source', 'size')
    case binaryen.MemoryFillId: return pick('dest', 'value', 'size')
    case binaryen.SIMDExtractId: return pick('vec')
    case binaryen.SIMDReplaceId: return pick('vec', 'value')
    case binaryen.SIMDTernaryId: return pick('a', 'b', 'c')
    case binaryen.SIMDShiftId: return pick('vec', 'shift')
    case binaryen.SIMDLoadStoreLaneId: return pick('ptr', 'vec')
    case binaryen.TupleExtractId: return pick('tuple')
    default: return []
  }
}
