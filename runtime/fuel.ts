/**
 * Exact, deterministic fuel metering of a wasm binary (DESIGN §5.1; the cost model is in
 * docs/ABI.md "Fuel"). The meter is the last step of the instrumenter: it rewrites the code section
 * of the module binaryen emitted (which already has the exported i64 global `__igor_fuel`), so the
 * instructions it counts are exactly the instructions the engine runs, minus the meter's own.
 *
 * Cost model: fuel = the weighted number of instructions executed, weight {@link weightOf}
 * (1 per instruction, 0 for `block`, `loop`, `else`, `end`, `nop`), plus ceil(len / 64) for each
 * `memory.fill`/`memory.copy`/`memory.init` (charged just before it runs) and 1024 per page a
 * `memory.grow` actually grew (charged just after it). Each basic block's weight is charged when
 * control enters it. The counter is checked (counter < 0 ⇒ store it in `__igor_fuel`, trap with
 * `unreachable`) at every loop header, before every call and `call_indirect`, after each dynamic
 * charge, and before every exit from the function (`return`, a branch to the function's outermost
 * label, the final `end`). The counter is threaded through direct calls (see {@link meter}).
 */
import { Cursor, decodeCode, exportedGlobal, replaceSections, sleb, uleb } from './wasm-code.ts'
import type { Body, Code, Instr } from './wasm-code.ts'

/** Name (internal and export) of the i64 fuel counter global. */
export const FUEL_GLOBAL = '__igor_fuel'

/** Initial value of `__igor_fuel` (fuel): what a wasm start function may burn during instantiation. */
export const START_FUEL = 1_000_000_000n

/**
 * Export name of the dirty map: memory 1 of an instrumented module, one byte per 4 KiB chunk of
 * memory 0 (byte k covers addresses [k × 4096, (k + 1) × 4096)). Every store, `memory.fill`,
 * `memory.copy` and `memory.init` sets to 1 the byte of the chunk its first written byte is in
 * (a store of up to 16 bytes may spill into the next chunk: the reader covers chunk k + 1 too);
 * bulk operations set every byte of their destination range. The agent's code cannot name memory 1
 * (the feature gate refuses multi-memory), so it cannot read or clear the map. See docs/ABI.md
 * "Dirty map".
 */
export const DIRTY_EXPORT = '__igor_dirty'

/** Size of the dirty map in 64 KiB pages: 2^32 bytes of memory 0 / 4 KiB chunks = 2^20 bytes. */
export const DIRTY_MAP_PAGES = 16

/** log2 of the dirty map's grain, bytes (4 KiB: checkpoint/pack.ts CHUNK_SIZE). */
export const DIRTY_SHIFT = 12

/**
 * Fuel per executed instruction (structural ones cost 0, see {@link weightOf}), bytes of bulk
 * memory per unit of fuel (rounded up), and fuel per 64 KiB page grown.
 */
export const COSTS = { instruction: 1, bulkBytesPerFuel: 64, growPage: 1024 } as const

/**
 * The static weight of one instruction: 0 for `block` (0x02), `loop` (0x03), `else` (0x05), `end`
 * (0x0B) and `nop` (0x01), which compile to no work; {@link COSTS}.instruction for every other one.
 * @param op the opcode byte (the prefix byte for 0xFC/0xFD instructions).
 */
export function weightOf (op: number): number {
  return op === 0x02 || op === 0x03 || op === 0x05 || op === 0x0b || op === 0x01 ? 0 : COSTS.instruction
}

const I32 = 0x7f; const I64 = 0x7e
const OP = {
  unreachable: 0x00, block: 0x02, if: 0x04, end: 0x0b, localGet: 0x20, localSet: 0x21, localTee: 0x22, globalGet: 0x23, globalSet: 0x24,
  i32Const: 0x41, i64Const: 0x42, i32Ne: 0x47, i64LtS: 0x53, i64Add: 0x7c, i64Sub: 0x7d, i64Shl: 0x86, i64ShrU: 0x88, i64ExtendI32U: 0xad,
} as const
const VOID = 0x40

/**
 * Meters every defined function of a module (see the module comment). The counter is threaded
 * through direct calls: each defined function gets a twin (appended to the function index space)
 * with the counter as an extra trailing i64 parameter and an extra trailing i64 result; the twin
 * holds the original body, metered, with the counter in that parameter. The original function
 * becomes a wrapper that reads `__igor_fuel`, calls its twin and writes the counter back; it
 * serves exports, table entries and the start function. Around calls to imports and
 * `call_indirect` the twin writes the counter to `__igor_fuel` and reloads it afterwards.
 * @param wasm a module that passed the feature gate and exports its i64 fuel counter as {@link FUEL_GLOBAL}.
 * @param unmetered export names of functions that stay unmetered (the instrumenter's own v128 global
 *   accessors, which the host calls between ticks, also while the counter is below zero): their
 *   index keeps the original body, charging nothing (their twin is still emitted, unused).
 * @returns the metered module (it validates whenever `wasm` does).
 * @throws RangeError when the module has no `__igor_fuel` export or uses an instruction the decoder
 *   does not know (the feature gate refuses those first).
 */
export function meter (wasm: Uint8Array, unmetered: ReadonlySet<string> = new Set(), opts: { dirtyMap?: boolean } = {}): Uint8Array {
  const code = decodeCode(wasm)
  const g = exportedGlobal(code, FUEL_GLOBAL)
  const dirtyMap = opts.dirtyMap !== false
  const plain = new Set(code.exports.filter(([n, k]) => k === 0 && unmetered.has(n)).map(([, , i]) => i))
  const nDef = code.bodies.length
  if (nDef === 0) return wasm
  const encType = (params: number[][], results: number[][]): number[] =>
    [0x60, ...uleb(params.length), ...params.flat(), ...uleb(results.length), ...results.flat()]
  const types = code.types.map((t) => encType(t.params, t.results))
  const typeIndex = new Map<string, number>()
  types.forEach((t, i) => { if (!typeIndex.has(t.join())) typeIndex.set(t.join(), i) })
  const typeOf = (params: number[][], results: number[][]): number => {
    const t = encType(params, results)
    let i = typeIndex.get(t.join())
    if (i === undefined) { i = types.push(t) - 1; typeIndex.set(t.join(), i) }
    return i
  }
  const twinOf = (f: number): number => f >= code.importedFuncs ? f + nDef : -1
  const twinTypes: number[] = []
  const wrappers: number[][] = []
  const twins: number[][] = []
  for (const [i, body] of code.bodies.entries()) {
    const t = code.types[code.funcTypes[i]]
    twinTypes.push(typeOf([...t.params, [I64]], [...t.results, [I64]]))
    // the block that takes the original body's place: its type is the original result type
    const bt = t.results.length === 0 ? [VOID] : t.results.length === 1 ? t.results[0] : sleb(typeOf([], t.results))
    twins.push(meterBody(wasm, body, g, bt, twinOf, dirtyMap))
    if (plain.has(body.funcIndex)) { wrappers.push(originalBody(wasm, body)); continue }
    const w: number[] = [0]
    for (let k = 0; k < t.params.length; k++) w.push(OP.localGet, ...uleb(k))
    w.push(OP.globalGet, ...uleb(g), 0x10, ...uleb(twinOf(body.funcIndex)), OP.globalSet, ...uleb(g), OP.end)
    wrappers.push([...uleb(w.length), ...w])
  }
  const typeSection = [...uleb(types.length), ...types.flat()]
  const funcSection = [...uleb(2 * nDef), ...[...code.funcTypes, ...twinTypes].flatMap((x) => uleb(x))]
  const bodies = [...wrappers, ...twins]
  const codeSection = [...uleb(bodies.length), ...bodies.flat()]
  const sections = new Map([[1, typeSection], [3, funcSection], [10, codeSection]])
  if (dirtyMap) addDirtyMap(wasm, code, sections)
  return replaceSections(wasm, code, sections)
}

/**
 * Adds the dirty map (memory 1, {@link DIRTY_MAP_PAGES} pages, minimum = maximum) to the memory
 * section and exports it as {@link DIRTY_EXPORT}. Memory 0 is the module's one memory: defined
 * (a core agent: the feature gate and the memory cap see to it) or imported (a core module of a
 * component, which shares another's memory; the map is then the module's only defined memory, the
 * sections are created when absent).
 */
function addDirtyMap (wasm: Uint8Array, code: Code, sections: Map<number, number[]>): void {
  const mem = code.sections.find(([id]) => id === 5)
  const ex = code.sections.find(([id]) => id === 7)
  if (code.exports.some(([n]) => n === DIRTY_EXPORT)) throw new RangeError(`the module already exports ${DIRTY_EXPORT}`)
  const body = (s: [number, number, number] | undefined): { count: number; rest: number[] } => {
    if (s === undefined) return { count: 0, rest: [] }
    const c = new Cursor(wasm, s[1] + 1, s[2]); c.u() // section size
    const count = c.u()
    return { count, rest: Array.from(wasm.subarray(c.pos, s[2])) }
  }
  const m = body(mem)
  const imported = code.importedMemories
  if (m.count + imported !== 1) throw new RangeError(`${m.count} defined and ${imported} imported memories where one was expected`)
  sections.set(5, [...uleb(m.count + 1), ...m.rest, 0x01, ...uleb(DIRTY_MAP_PAGES), ...uleb(DIRTY_MAP_PAGES)])
  const e = body(ex)
  const name = Array.from(new TextEncoder().encode(DIRTY_EXPORT))
  sections.set(7, [...uleb(e.count + 1), ...e.rest, ...uleb(name.length), ...name, 0x02, ...uleb(1)])
}

/** One body as it was, size-prefixed (locals and instruction bytes unchanged). */
function originalBody (wasm: Uint8Array, body: Body): number[] {
  const out: number[] = [...uleb(body.locals.length)]
  for (const [n, t] of body.locals) out.push(...uleb(n), ...t)
  for (const x of body.instrs) for (let k = x.start; k < x.end; k++) out.push(wasm[k])
  return [...uleb(out.length), ...out]
}

/**
 * The twin of one body, size-prefixed: `block <bt>` + the metered body + a check + the counter.
 * Local indices at or above the parameter count move up by one (the counter is the new last parameter).
 */
function meterBody (wasm: Uint8Array, body: Body, g: number, bt: number[], twinOf: (f: number) => number, dirtyMap: boolean): number[] {
  const { instrs } = body
  const usesGrow = instrs.some((x) => x.op === 0x40)
  const usesBulk = instrs.some((x) => x.op === 0xfc && (x.sub === 8 || x.sub === 10 || x.sub === 11))
  /** Value types of the locals added to the body, in order (index `next + k`). */
  const extra: number[] = []
  const fl = body.params
  const next = body.params + 1 + body.localCount
  const s0 = usesGrow || usesBulk ? next + extra.push(I32) - 1 : -1
  const s1 = usesGrow ? next + extra.push(I32) - 1 : -1
  /** The write barrier's scratch locals, one per role, added on first use. */
  const temps = new Map<string, number>()
  const temp = (role: string, type: number): number => {
    let t = temps.get(role)
    if (t === undefined) { t = next + extra.push(type) - 1; temps.set(role, t) }
    return t
  }

  const gset = [OP.globalSet, ...uleb(g)]
  const get = [OP.localGet, ...uleb(fl)]
  const set = [OP.localSet, ...uleb(fl)]
  /** counter < 0 ⇒ store it in the global and trap. */
  const check = [...get, OP.i64Const, 0, OP.i64LtS, OP.if, VOID, ...get, ...gset, OP.unreachable, OP.end]
  const charge = (w: number): number[] => [...get, OP.i64Const, ...sleb(w), OP.i64Sub, ...set]
  const writeBack = [...get, ...gset]
  const reload = [OP.globalGet, ...uleb(g), ...set]
  // len on the stack → len on the stack, charged ceil(len / 64) and checked.
  const bulk = !usesBulk ? [] : [OP.localTee, ...uleb(s0), ...get, OP.localGet, ...uleb(s0), OP.i64ExtendI32U,
    OP.i64Const, ...sleb(COSTS.bulkBytesPerFuel - 1), OP.i64Add, OP.i64Const, ...sleb(Math.log2(COSTS.bulkBytesPerFuel)), OP.i64ShrU, OP.i64Sub, ...set, ...check]
  // delta on the stack → (memory.grow) → result on the stack; when it is not -1, charge delta × 1024 and check.
  const growBefore = !usesGrow ? [] : [OP.localTee, ...uleb(s0)]
  const growAfter = !usesGrow ? [] : [OP.localTee, ...uleb(s1), OP.i32Const, ...sleb(-1), OP.i32Ne, OP.if, VOID,
    ...get, OP.localGet, ...uleb(s0), OP.i64ExtendI32U, OP.i64Const, ...sleb(Math.log2(COSTS.growPage)), OP.i64Shl, OP.i64Sub, ...set, ...check,
    OP.end, OP.localGet, ...uleb(s1)]

  const insert = new Map<number, number[][]>()
  const at = (i: number): number[][] => { let l = insert.get(i); if (l === undefined) { l = []; insert.set(i, l) } return l }
  /** Replacement bytes for instructions: renumbered locals, direct calls to twins. */
  const replace = new Map<number, number[]>()

  /** The basic block being scanned: its charge is placed at its start once its weight is known. */
  const cur: { block: { seq: number[]; weight: number; loopHeader: boolean } | null } = { block: null }
  const begin = (pos: number, loopHeader: boolean): void => {
    cur.block = { seq: [], weight: 0, loopHeader }
    at(pos).push(cur.block.seq)
  }
  const finish = (): void => {
    const b = cur.block
    if (b === null) return
    if (b.weight > 0) b.seq.push(...charge(b.weight))
    if (b.loopHeader) b.seq.push(...check)
    cur.block = null
  }
  // Renumber locals everywhere (dead code too: it must still validate).
  for (const [i, x] of instrs.entries()) {
    if (x.op >= 0x20 && x.op <= 0x22) {
      const idx = readU(wasm, x.start + 1)
      if (idx >= body.params) replace.set(i, [x.op, ...uleb(idx + 1)])
    }
  }
  // Control frames: whether the construct was opened in dead code. Frame 0 is the function body.
  const frames: boolean[] = [false]
  let dead = false
  begin(0, false)
  for (let i = 0; i < instrs.length; i++) {
    const x = instrs[i]
    const op = x.op
    if (dead) {
      if (op === 0x02 || op === 0x03 || op === 0x04) frames.push(true)
      else if (op === 0x05) { dead = frames[frames.length - 1]; if (!dead) begin(i + 1, false) } else if (op === 0x0b) {
        if (frames.length === 1) break
        dead = frames.pop()!
        if (!dead) begin(i + 1, false)
      }
      continue
    }
    cur.block!.weight += weightOf(op)
    switch (op) {
      case 0x02: frames.push(false); break
      case 0x03: frames.push(false); finish(); begin(i + 1, true); break
      case 0x04: frames.push(false); finish(); begin(i + 1, false); break
      case 0x05: finish(); begin(i + 1, false); break
      case 0x0b:
        if (frames.length === 1) { finish(); break }
        frames.pop(); finish(); begin(i + 1, false); break
      case 0x0c: case 0x0e: finish(); dead = true; break // a branch to frame 0 ends the wrapping block
      case 0x0f: at(i).push(check, get); finish(); dead = true; break
      case 0x0d: finish(); begin(i + 1, false); break
      case 0x00: finish(); dead = true; break
      case 0x10: {
        const f = readU(wasm, x.start + 1)
        const twin = twinOf(f)
        if (twin >= 0) {
          at(i).push(check)
          replace.set(i, [...get, 0x10, ...uleb(twin)])
          at(i + 1).push(set)
        } else { at(i).push(check, writeBack); at(i + 1).push(reload) }
        break
      }
      case 0x11: at(i).push(check, writeBack); at(i + 1).push(reload); break
      case 0x40: at(i).push(growBefore); at(i + 1).push(growAfter); break
      case 0xfc: if (x.sub === 8 || x.sub === 10 || x.sub === 11) { at(i).push(bulk); if (dirtyMap) at(i).push(bulkBarrier(temp)) } break
      default:
        if (dirtyMap) {
          const type = storeType(x)
          if (type !== 0) at(i).push(storeBarrier(wasm, x, type, temp))
        }
    }
  }
  finish()

  const groups: Array<[number, number]> = [] // [count, type] runs of `extra`
  for (const t of extra) { const last = groups.at(-1); if (last !== undefined && last[1] === t) last[0]++; else groups.push([1, t]) }
  const out: number[] = [...uleb(body.locals.length + groups.length)]
  for (const [n, t] of body.locals) out.push(...uleb(n), ...t)
  for (const [n, t] of groups) out.push(...uleb(n), t)
  out.push(OP.block, ...bt)
  for (let i = 0; i < instrs.length; i++) {
    for (const seq of insert.get(i) ?? []) for (const b of seq) out.push(b)
    const r = replace.get(i)
    if (r !== undefined) { for (const b of r) out.push(b); continue }
    const x = instrs[i]
    for (let k = x.start; k < x.end; k++) out.push(wasm[k])
  }
  // instrs' final `end` closed the block; every exit but `return` arrives here
  out.push(...check, ...get, OP.end)
  return [...uleb(out.length), ...out]
}

const F32 = 0x7d; const F64 = 0x7c; const V128 = 0x7b
/** i32.store8 into memory 1 at offset 0 (memarg: align 0 with the memory-index flag 0x40, memory 1, offset 0). */
const MARK_STORE = [0x3a, 0x40, 0x01, 0x00]

/** The value type a store instruction takes (its second operand), or 0 when `x` is not a store. */
function storeType (x: Instr): number {
  switch (x.op) {
    case 0x36: case 0x3a: case 0x3b: return I32
    case 0x37: case 0x3c: case 0x3d: case 0x3e: return I64
    case 0x38: return F32
    case 0x39: return F64
    case 0xfd: return x.sub === 11 || (x.sub >= 88 && x.sub <= 91) ? V128 : 0 // v128.store, v128.store*_lane
  }
  return 0
}

/**
 * The write barrier before a store (stack: address, value → address, value): sets the dirty map's
 * byte of the chunk holding the effective address `address + offset` (wrapping in i32: an address
 * that wraps is out of bounds, so the store traps and writes nothing; the mark is then only extra).
 * The function remembers the last chunk it marked (local `last`, holding the chunk's bitwise NOT
 * so that its zero start value matches no chunk) and skips marking it again: the host clears the
 * map only between calls from outside (runtime/memory.ts, after a tick), so a mark made earlier in
 * the same call is still there. A store into the chunk of the store before it, the common case in
 * loops, costs a shift, a xor and a compare. Costs no fuel; it never traps (every i32 shifted
 * right by 12 is inside the 1 MiB map).
 */
function storeBarrier (wasm: Uint8Array, x: Instr, type: number, temp: (role: string, type: number) => number): number[] {
  const imm = new Cursor(wasm, x.start + 1, x.end)
  if (x.op === 0xfd) imm.u() // sub-opcode
  const align = imm.u()
  if ((align & 0x40) !== 0) imm.u() // memory index (always 0 here: one memory)
  const offset = imm.u()
  const v = temp(`v${type}`, type)
  const a = temp('a', I32); const c = temp('c', I32); const t = temp('t', I32); const last = temp('last', I32)
  return [
    OP.localSet, ...uleb(v), OP.localTee, ...uleb(a),
    ...(offset === 0 ? [] : [OP.i32Const, ...sleb(offset | 0), 0x6a]), // i32.add
    OP.i32Const, 12, 0x76, OP.localTee, ...uleb(c), // i32.shr_u: the chunk
    OP.i32Const, ...sleb(-1), 0x73, OP.localTee, ...uleb(t), OP.localGet, ...uleb(last), OP.i32Ne, OP.if, VOID, // i32.xor: ~chunk ≠ last?
    OP.localGet, ...uleb(t), OP.localSet, ...uleb(last),
    OP.localGet, ...uleb(c), OP.i32Const, 1, ...MARK_STORE, // map[chunk] = 1
    OP.end,
    OP.localGet, ...uleb(a), OP.localGet, ...uleb(v),
  ]
}

/**
 * The write barrier before `memory.fill` / `memory.copy` / `memory.init` (stack: dest, x, len →
 * dest, x, len): when len > 0 and dest + len ≤ 2^32 (computed in i64, so nothing wraps), fills the
 * dirty map's bytes of every chunk in [dest, dest + len) with 1 (one `memory.fill` of memory 1).
 * A range past 2^32 is out of bounds, so the operation traps before writing anything. Costs no
 * fuel; it never traps.
 */
function bulkBarrier (temp: (role: string, type: number) => number): number[] {
  const d = temp('a', I32); const x = temp(`v${I32}`, I32); const n = temp('n', I32); const e = temp(`v${I64}`, I64)
  const chunkOfD = [OP.localGet, ...uleb(d), OP.i32Const, 12, 0x76]
  return [
    OP.localSet, ...uleb(n), OP.localSet, ...uleb(x), OP.localSet, ...uleb(d),
    OP.localGet, ...uleb(n), OP.if, VOID,
    OP.localGet, ...uleb(d), OP.i64ExtendI32U, OP.localGet, ...uleb(n), OP.i64ExtendI32U, OP.i64Add, OP.localTee, ...uleb(e),
    OP.i64Const, ...sleb(0x1_0000_0000n), 0x58, OP.if, VOID, // i64.le_u
    ...chunkOfD, OP.i32Const, 1,
    OP.localGet, ...uleb(e), OP.i64Const, 1, OP.i64Sub, OP.i64Const, 12, OP.i64ShrU, 0xa7, // i32.wrap_i64: last chunk
    ...chunkOfD, 0x6b, OP.i32Const, 1, 0x6a, // − first chunk + 1
    0xfc, ...uleb(11), 0x01, // memory.fill memory 1
    OP.end, OP.end,
    OP.localGet, ...uleb(d), OP.localGet, ...uleb(x), OP.localGet, ...uleb(n),
  ]
}

/** An unsigned LEB128 at `pos` of `b`. */
function readU (b: Uint8Array, pos: number): number {
  let result = 0; let mul = 1
  for (let i = 0; i < 5; i++) {
    const x = b[pos + i]
    result += (x & 0x7f) * mul
    if ((x & 0x80) === 0) return result
    mul *= 128
  }
  throw new RangeError(`bad LEB128 at byte ${pos}`)
}

/**
 * Fuel a call consumed, from the limit the host set and the counter it read back afterwards:
 * `min(limit, limit − remaining)`, never below 0. After an out-of-fuel trap `remaining` is negative,
 * so the result is exactly `limit`.
 * @param limit fuel the host stored in `__igor_fuel` before the call (≥ 0).
 * @param remaining the value of `__igor_fuel` after the call returned or trapped.
 * @returns fuel units consumed, in [0, limit].
 */
export function fuelUsed (limit: bigint, remaining: bigint): bigint {
  const used = limit - remaining
  if (used > limit) return limit
  return used < 0n ? 0n : used
}
