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
 * label, the final `end`).
 */
import { decodeCode, encodeBody, exportedGlobal, replaceCode, sleb, uleb } from './wasm-code.ts'
import type { Body, Code } from './wasm-code.ts'

/** Name (internal and export) of the i64 fuel counter global. */
export const FUEL_GLOBAL = '__igor_fuel'

/** Initial value of `__igor_fuel` (fuel): what a wasm start function may burn during instantiation. */
export const START_FUEL = 1_000_000_000n

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
  unreachable: 0x00, if: 0x04, end: 0x0b, localGet: 0x20, localSet: 0x21, localTee: 0x22, globalGet: 0x23, globalSet: 0x24,
  i32Const: 0x41, i64Const: 0x42, i32Ne: 0x47, i64LtS: 0x53, i64Add: 0x7c, i64Sub: 0x7d, i64Shl: 0x86, i64ShrU: 0x88, i64ExtendI32U: 0xad,
} as const
const VOID = 0x40

/**
 * Meters every defined function of a module (see the module comment). Functions that contain a
 * loop or a call keep the counter in an i64 local: loaded from `__igor_fuel` on entry, written back
 * before each call (and reloaded after it), before each exit and before a fuel trap. The others
 * charge `__igor_fuel` directly.
 * @param wasm a module that passed the feature gate and exports its i64 fuel counter as {@link FUEL_GLOBAL}.
 * @returns the metered module (it validates whenever `wasm` does).
 * @throws RangeError when the module has no `__igor_fuel` export or uses an instruction the decoder
 *   does not know (the feature gate refuses those first).
 */
export function meter (wasm: Uint8Array): Uint8Array {
  const code = decodeCode(wasm)
  const g = exportedGlobal(code, FUEL_GLOBAL)
  return replaceCode(wasm, code, code.bodies.map((b) => meterBody(wasm, code, b, g)))
}

/** Instruments one body; returns it size-prefixed. */
function meterBody (wasm: Uint8Array, _code: Code, body: Body, g: number): number[] {
  const { instrs } = body
  const usesLocal = instrs.some((x) => x.op === 0x03 || x.op === 0x10 || x.op === 0x11)
  const usesGrow = instrs.some((x) => x.op === 0x40)
  const usesBulk = instrs.some((x) => x.op === 0xfc && (x.sub === 8 || x.sub === 10 || x.sub === 11))
  const extra: number[] = []
  const next = body.params + body.localCount
  const fl = usesLocal ? next + extra.push(I64) - 1 : -1
  const s0 = usesGrow || usesBulk ? next + extra.push(I32) - 1 : -1
  const s1 = usesGrow ? next + extra.push(I32) - 1 : -1

  const gget = [OP.globalGet, ...uleb(g)]; const gset = [OP.globalSet, ...uleb(g)]
  const get = usesLocal ? [OP.localGet, ...uleb(fl)] : gget
  const set = usesLocal ? [OP.localSet, ...uleb(fl)] : gset
  const reload = usesLocal ? [...gget, ...set] : []
  /** counter < 0 ⇒ store it in the global (already there without a local) and trap. */
  const check = [...get, OP.i64Const, 0, OP.i64LtS, OP.if, VOID, ...(usesLocal ? [...get, ...gset] : []), OP.unreachable, OP.end]
  const charge = (w: number): number[] => [...get, OP.i64Const, ...sleb(w), OP.i64Sub, ...set]
  const writeBack = usesLocal ? [...get, ...gset] : []
  const exit = [...check, ...writeBack]
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
  if (usesLocal) at(0).push(reload)

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
    const toFunction = (l: number): boolean => l === frames.length - 1
    switch (op) {
      case 0x02: frames.push(false); break
      case 0x03: frames.push(false); finish(); begin(i + 1, true); break
      case 0x04: frames.push(false); finish(); begin(i + 1, false); break
      case 0x05: finish(); begin(i + 1, false); break
      case 0x0b:
        if (frames.length === 1) { at(i).push(exit); finish(); break }
        frames.pop(); finish(); begin(i + 1, false); break
      case 0x0c: case 0x0e: case 0x0f:
        if (op === 0x0f || x.labels!.some(toFunction)) at(i).push(exit)
        finish(); dead = true; break
      case 0x0d:
        if (toFunction(x.labels![0])) at(i).push(exit)
        finish(); begin(i + 1, false); break
      case 0x00: finish(); dead = true; break
      case 0x10: case 0x11: at(i).push(check, writeBack); at(i + 1).push(reload); break
      case 0x40: at(i).push(growBefore); at(i + 1).push(growAfter); break
      case 0xfc: if (x.sub === 8 || x.sub === 10 || x.sub === 11) at(i).push(bulk); break
    }
  }
  finish()
  return encodeBody(wasm, body, extra, insert)
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
