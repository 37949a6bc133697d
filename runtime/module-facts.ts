/**
 * The byte-level half of the feature gate (DESIGN §5.4; the binaryen half is `features.ts`): a
 * reader of a module's sections (imports, exports, types, memories, globals, element and data
 * segments) that gathers {@link ModuleFacts} and checks them, the ABI export signatures and the
 * 8-byte header. It imports no binaryen, so loading an agent whose instrumented code is cached
 * (runtime/code-cache.ts) never loads binaryen.
 *
 * Sources: WebAssembly Core Specification 2.0 §5 (binary format) and the proposals' binary
 * encodings (threads: shared limits flag 0x02; memory64: flag 0x04; custom-page-sizes: flag 0x08;
 * exception handling: tag section id 13; extended-const: i32/i64 add, sub, mul in constant
 * expressions; component model: version 0x0d, layer 1).
 */
import { ModuleError } from '../checkpoint/errors.ts'
import { Cursor } from './wasm-code.ts'

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
/**
 * Throws the feature gate's refusal: `<file>: uses <what>[ in function <where>], which igord does not allow`.
 * @throws ModuleError always.
 */
export function fail (file: string, what: string, where?: string): never {
  throw new ModuleError(`${file}: uses ${what}${where ? ` in function ${where}` : ''}, which igord does not allow`)
}

/**
 * Checks the module-level part of the feature gate from {@link scanModule}'s facts.
 * @param file the name used in error messages.
 * @param opts.importedMemory accept one imported memory (a core module of a component, which shares
 *   the memory another of its core instances defines; runtime/component.ts), checked like a defined one
 * @throws ModuleError naming the first rejected feature found.
 */
export function checkModuleFacts (facts: ModuleFacts, file: string, opts: { importedMemory?: boolean } = {}): void {
  let importedMemories = 0
  for (const imp of facts.imports) {
    if (imp.kind === 2 && opts.importedMemory === true && imp.limits !== undefined) {
      importedMemories++
      if ((imp.limits.flags & 2) !== 0) fail(file, 'threads (a shared memory)')
      if ((imp.limits.flags & 4) !== 0) fail(file, 'memory64 (a 64-bit memory)')
      if ((imp.limits.flags & 8) !== 0) fail(file, 'custom page sizes')
      continue
    }
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
  if (facts.memories.length + importedMemories > 1) fail(file, `multi-memory (${facts.memories.length + importedMemories} memories)`)
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
