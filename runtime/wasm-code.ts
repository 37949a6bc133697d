/**
 * A small reader and re-writer of a wasm module's code section (WebAssembly Core Specification
 * 2.0 §5.4 instructions, §5.5.13 code section), used by the fuel meter (`fuel.ts`) and by the
 * test-only reference meter. It decodes each function body instruction by instruction — every
 * opcode of the MVP, sign-extension, non-trapping float-to-int (0xFC 0–7), bulk memory and table
 * instructions (0xFC 8–17), multi-value block types, reference-type instructions and SIMD128
 * (0xFD, incl. relaxed SIMD encodings) — and re-encodes bodies with extra locals and inserted
 * instruction bytes. Threads/atomics (0xFE), exception handling, tail calls and GC are not
 * decoded: the feature gate refuses them before this code runs.
 */

/** One decoded instruction of a function body. */
export interface Instr {
  /** The opcode byte (0x00–0xFF); for prefixed instructions the prefix (0xFC, 0xFD). */
  op: number
  /** The sub-opcode of a prefixed instruction (0xFC/0xFD); -1 otherwise. */
  sub: number
  /** Byte offset of the instruction's first byte in the module. */
  start: number
  /** Byte offset just past its last immediate. */
  end: number
  /** `br`, `br_if`: [label]; `br_table`: [labels…, default]; otherwise absent. */
  labels?: number[]
}

/** A decoded function body of the code section. */
export interface Body {
  /** Index of the function in the module's function index space (imports first). */
  funcIndex: number
  /** Number of parameters of its type. */
  params: number
  /** Its local declarations as [count, value type byte] (heap-typed locals keep only the first byte). */
  locals: Array<[number, number[]]>
  /** Total number of declared locals (the sum of the counts). */
  localCount: number
  /** Its instructions in order; the last one is the body's final `end`. */
  instrs: Instr[]
}

/** A module's code section, decoded. */
export interface Code {
  /** The bodies, in code-section order. */
  bodies: Body[]
  /** Byte range [start of the section id byte, end of its contents) of the code section. */
  section: { start: number; end: number }
  /** Number of imported functions (defined function i has index imported + i). */
  importedFuncs: number
  /** Number of imported globals. */
  importedGlobals: number
  /** Number of imported memories. */
  importedMemories: number
  /** Exports as [name, kind, index]. */
  exports: Array<[string, number, number]>
  /** The type section's function types, each value type as its raw bytes. */
  types: Array<{ params: number[][]; results: number[][] }>
  /** Type index of each defined function, in order. */
  funcTypes: number[]
  /** Every section as [id, start of the id byte, end of contents). */
  sections: Array<[number, number, number]>
}

/**
 * A byte cursor over a wasm binary with LEB128 readers (WebAssembly spec §5.2.2), shared by this
 * decoder and the feature gate's module scan (`features.ts`). Throws RangeError past `end`.
 */
export class Cursor {
  pos: number
  readonly b: Uint8Array
  readonly end: number
  constructor (b: Uint8Array, pos: number, end: number) { this.b = b; this.pos = pos; this.end = end }
  byte (): number {
    if (this.pos >= this.end) throw new RangeError(`unexpected end at byte ${this.pos}`)
    return this.b[this.pos++]
  }
  /** Unsigned LEB128 as a number (exact up to 2^53). */
  u (): number {
    let result = 0; let mul = 1
    for (let i = 0; i < 10; i++) {
      const x = this.byte()
      result += (x & 0x7f) * mul
      if ((x & 0x80) === 0) return result
      mul *= 128
    }
    throw new RangeError(`LEB128 too long at byte ${this.pos}`)
  }
  /** Skips any LEB128 (signed or unsigned). */
  skipLeb (): void { for (let i = 0; i < 10; i++) if ((this.byte() & 0x80) === 0) return; throw new RangeError(`LEB128 too long at byte ${this.pos}`) }
  /** Skips `n` bytes. */
  skipBytes (n: number): void {
    if (this.pos + n > this.end) throw new RangeError(`unexpected end at byte ${this.pos}`)
    this.pos += n
  }
  name (): string {
    const n = this.u(); const s = this.pos; this.skipBytes(n)
    return new TextDecoder().decode(this.b.subarray(s, s + n))
  }
  /** A value type; reference types `(ref null? ht)` carry a heap type. */
  valType (): void { const t = this.byte(); if (t === 0x63 || t === 0x64) this.skipLeb() }
  /** A block type (§5.4.1): 0x40, a value type, or an s33 type index. */
  blockType (): void {
    const b = this.b[this.pos]
    if (b === 0x63 || b === 0x64) { this.pos++; this.skipLeb() } else if (b >= 0x40 && b <= 0x7f) this.pos++
    else this.skipLeb()
  }
  /** A memarg (§5.4.6): align (bit 6 ⇒ a memory index follows, multi-memory) and offset. */
  memarg (): void { const a = this.u(); if ((a & 0x40) !== 0) this.u(); this.skipLeb() }
}

/** SIMD sub-opcodes with a memarg; with a memarg and a lane index; with a lane index (§5.4.8). */
const SIMD_MEMARG = new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 92, 93])
const SIMD_MEMARG_LANE = new Set([84, 85, 86, 87, 88, 89, 90, 91])

/**
 * Decodes one instruction at `c.pos` and advances past it.
 * @throws RangeError on an opcode this decoder does not know (atomics, exceptions, GC, tail calls).
 */
function instr (c: Cursor): Instr {
  const start = c.pos
  const op = c.byte()
  let sub = -1
  let labels: number[] | undefined
  if (op >= 0x45 && op <= 0xc4) { /* numeric, no immediates */ } else {
    switch (op) {
      case 0x00: case 0x01: case 0x05: case 0x0b: case 0x0f: case 0x1a: case 0x1b: case 0xd1: break
      case 0x02: case 0x03: case 0x04: c.blockType(); break
      case 0x0c: case 0x0d: labels = [c.u()]; break
      case 0x0e: { const n = c.u(); labels = []; for (let i = 0; i <= n; i++) labels.push(c.u()); break }
      case 0x10: c.u(); break
      case 0x11: c.u(); c.u(); break
      case 0x1c: { const n = c.u(); for (let i = 0; i < n; i++) c.valType(); break }
      case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: c.u(); break
      case 0x3f: case 0x40: c.u(); break
      case 0x41: case 0x42: c.skipLeb(); break
      case 0x43: c.skipBytes(4); break
      case 0x44: c.skipBytes(8); break
      case 0xd0: c.skipLeb(); break
      case 0xd2: c.u(); break
      case 0xfc: {
        sub = c.u()
        if (sub <= 7) break
        switch (sub) {
          case 8: c.u(); c.u(); break // memory.init data mem
          case 9: c.u(); break // data.drop
          case 10: c.u(); c.u(); break // memory.copy dst src
          case 11: c.u(); break // memory.fill mem
          case 12: c.u(); c.u(); break // table.init elem table
          case 13: c.u(); break // elem.drop
          case 14: c.u(); c.u(); break // table.copy
          case 15: case 16: case 17: c.u(); break // table.grow/size/fill
          default: throw new RangeError(`unsupported instruction 0xfc ${sub} at byte ${start}`)
        }
        break
      }
      case 0xfd: {
        sub = c.u()
        if (SIMD_MEMARG.has(sub)) c.memarg()
        else if (SIMD_MEMARG_LANE.has(sub)) { c.memarg(); c.byte() } else if (sub === 12 || sub === 13) c.skipBytes(16)
        else if (sub >= 21 && sub <= 34) c.byte()
        else if (sub > 0x113) throw new RangeError(`unsupported instruction 0xfd ${sub} at byte ${start}`)
        break
      }
      default:
        if (op >= 0x28 && op <= 0x3e) { c.memarg(); break }
        throw new RangeError(`unsupported instruction 0x${op.toString(16)} at byte ${start}`)
    }
  }
  return labels === undefined ? { op, sub, start, end: c.pos } : { op, sub, start, end: c.pos, labels }
}

/**
 * Decodes the code section of a wasm module and the module facts the meters need.
 * @param wasm a module that `WebAssembly.validate` accepted.
 * @returns the bodies (empty when the module has no code section, then `section` is the empty range
 *   at the place a code section would go, the end of the module).
 * @throws RangeError on a malformed module or an instruction this decoder does not know.
 */
export function decodeCode (wasm: Uint8Array): Code {
  const typeParams: number[] = []
  const types: Array<{ params: number[][]; results: number[][] }> = []
  const sections: Array<[number, number, number]> = []
  const funcTypes: number[] = []
  const exports: Array<[string, number, number]> = []
  let importedFuncs = 0; let importedGlobals = 0; let importedMemories = 0
  const bodies: Body[] = []
  let section = { start: wasm.length, end: wasm.length }
  let pos = 8
  while (pos < wasm.length) {
    const head = new Cursor(wasm, pos, wasm.length)
    const id = head.byte()
    const size = head.u()
    const end = head.pos + size
    if (end > wasm.length) throw new RangeError(`section ${id} runs past the end`)
    const c = new Cursor(wasm, head.pos, end)
    sections.push([id, pos, end])
    if (id === 1) {
      const n = c.u()
      const vt = (): number[] => { const s = c.pos; c.valType(); return Array.from(wasm.subarray(s, c.pos)) }
      for (let i = 0; i < n; i++) {
        if (c.byte() !== 0x60) throw new RangeError('a non-function type in the type section')
        const params: number[][] = []; const results: number[][] = []
        const np = c.u(); for (let j = 0; j < np; j++) params.push(vt())
        const nr = c.u(); for (let j = 0; j < nr; j++) results.push(vt())
        typeParams.push(np); types.push({ params, results })
      }
    } else if (id === 2) {
      const n = c.u()
      for (let i = 0; i < n; i++) {
        c.name(); c.name()
        const kind = c.byte()
        if (kind === 0) { c.u(); importedFuncs++ } else if (kind === 1) { c.valType(); limits(c) } else if (kind === 2) { limits(c); importedMemories++ }
        else if (kind === 3) { c.valType(); c.byte(); importedGlobals++ } else if (kind === 4) { c.byte(); c.u() } else throw new RangeError(`unknown import kind ${kind}`)
      }
    } else if (id === 3) {
      const n = c.u()
      for (let i = 0; i < n; i++) funcTypes.push(c.u())
    } else if (id === 7) {
      const n = c.u()
      for (let i = 0; i < n; i++) { const name = c.name(); const kind = c.byte(); exports.push([name, kind, c.u()]) }
    } else if (id === 10) {
      section = { start: pos, end }
      const n = c.u()
      if (n !== funcTypes.length) throw new RangeError(`code section has ${n} bodies for ${funcTypes.length} functions`)
      for (let i = 0; i < n; i++) {
        const len = c.u()
        const bodyEnd = c.pos + len
        const b = new Cursor(wasm, c.pos, bodyEnd)
        const locals: Array<[number, number[]]> = []
        let localCount = 0
        const nd = b.u()
        for (let j = 0; j < nd; j++) {
          const count = b.u(); const s = b.pos; b.valType()
          locals.push([count, Array.from(wasm.subarray(s, b.pos))]); localCount += count
        }
        const instrs: Instr[] = []
        while (b.pos < bodyEnd) instrs.push(instr(b))
        if (instrs.length === 0 || instrs[instrs.length - 1].op !== 0x0b) throw new RangeError(`function body ${i} does not end with end`)
        const t = funcTypes[i]
        if (typeParams[t] === undefined) throw new RangeError(`function ${i} has an unknown type ${t}`)
        bodies.push({ funcIndex: importedFuncs + i, params: typeParams[t], locals, localCount, instrs })
        c.pos = bodyEnd
      }
    }
    pos = end
  }
  return { bodies, section, importedFuncs, importedGlobals, importedMemories, exports, types, funcTypes, sections }
}

function limits (c: Cursor): void {
  const flags = c.byte(); c.skipLeb(); if ((flags & 1) !== 0) c.skipLeb(); if ((flags & 8) !== 0) c.skipLeb()
}

/** Encodes an unsigned LEB128 (§5.2.2). */
export function uleb (n: number): number[] {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`uleb of ${n}`)
  const out: number[] = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n !== 0) byte |= 0x80
    out.push(byte)
  } while (n !== 0)
  return out
}

/** Encodes a signed LEB128 of a 64-bit integer (§5.2.2), for `i64.const` and `i32.const`. */
export function sleb (v: bigint | number): number[] {
  let x = BigInt(v)
  const out: number[] = []
  for (;;) {
    const byte = Number(x & 0x7fn)
    x >>= 7n
    if ((x === 0n && (byte & 0x40) === 0) || (x === -1n && (byte & 0x40) !== 0)) { out.push(byte); return out }
    out.push(byte | 0x80)
  }
}

/**
 * Re-encodes one body: its local declarations plus `extraLocals` (value type bytes, one local
 * each, appended after the existing locals), then its instructions with `insert[i]` (byte arrays)
 * placed before instruction i. Returns the body with its size prefix.
 */
export function encodeBody (wasm: Uint8Array, body: Body, extraLocals: number[], insert: Map<number, number[][]>): number[] {
  const decls: number[][] = body.locals.map(([n, t]) => [...uleb(n), ...t])
  for (let i = 0; i < extraLocals.length;) {
    let j = i; while (j < extraLocals.length && extraLocals[j] === extraLocals[i]) j++
    decls.push([...uleb(j - i), extraLocals[i]]); i = j
  }
  const out: number[] = [...uleb(decls.length)]
  for (const d of decls) for (const x of d) out.push(x)
  for (let i = 0; i < body.instrs.length; i++) {
    const ins = insert.get(i)
    if (ins !== undefined) for (const seq of ins) for (const x of seq) out.push(x)
    const ii = body.instrs[i]
    for (let k = ii.start; k < ii.end; k++) out.push(wasm[k])
  }
  return [...uleb(out.length), ...out]
}

/**
 * Returns `wasm` with its code section replaced by one holding `bodies` (each already size-prefixed,
 * from {@link encodeBody}).
 */
export function replaceCode (wasm: Uint8Array, code: Code, bodies: number[][]): Uint8Array {
  const content: number[] = [...uleb(bodies.length)]
  for (const b of bodies) for (const x of b) content.push(x)
  if (bodies.length === 0 && code.section.start === code.section.end) return wasm
  const head = [10, ...uleb(content.length)]
  const out = new Uint8Array(code.section.start + head.length + content.length + (wasm.length - code.section.end))
  out.set(wasm.subarray(0, code.section.start), 0)
  let at = code.section.start
  out.set(head, at); at += head.length
  out.set(content, at); at += content.length
  out.set(wasm.subarray(code.section.end), at)
  return out
}

/** The index of the global exported as `name`; throws RangeError when there is none. */
export function exportedGlobal (code: Code, name: string): number {
  const e = code.exports.find(([n, k]) => n === name && k === 3)
  if (e === undefined) throw new RangeError(`no global exported as ${name}`)
  return e[2]
}

/** Position of each known section id in a module (WebAssembly spec §5.5.2: tags, id 13, after memories; data count, id 12, before code). */
const SECTION_ORDER = new Map([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [13, 6], [6, 7], [7, 8], [8, 9], [9, 10], [12, 11], [10, 12], [11, 13]])

/**
 * Returns `wasm` with the contents of some sections replaced (`contents`: section id → new contents
 * without the id and size). An id of `contents` absent from `code.sections` is inserted where the
 * spec's section order puts it (before the first later known section; custom sections stay where
 * they were).
 */
export function replaceSections (wasm: Uint8Array, code: Code, contents: Map<number, number[]>): Uint8Array {
  const section = (id: number, c: number[]): Uint8Array => Uint8Array.from([id, ...uleb(c.length), ...c])
  const missing = [...contents.keys()].filter((id) => !code.sections.some(([x]) => x === id)).sort((a, b) => SECTION_ORDER.get(a)! - SECTION_ORDER.get(b)!)
  const parts: Uint8Array[] = [wasm.subarray(0, 8)]
  for (const [id, start, end] of code.sections) {
    const rank = SECTION_ORDER.get(id)
    while (rank !== undefined && missing.length > 0 && SECTION_ORDER.get(missing[0])! < rank) { const m = missing.shift()!; parts.push(section(m, contents.get(m)!)) }
    const c = contents.get(id)
    parts.push(c === undefined ? wasm.subarray(start, end) : section(id, c))
  }
  for (const m of missing) parts.push(section(m, contents.get(m)!))
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}
