/**
 * Test-only reference meter for test/fuel.test.ts: a deliberately naive instrumentation that
 * subtracts the weight of every single instruction from `__igor_fuel` right before that instruction
 * runs — no basic blocks, no local counter, no checks — plus the same dynamic extras as the
 * production meter (bulk memory: ceil(len / 64) before the operation; `memory.grow`: 1024 per page
 * grown, after it). Production fuel must equal this count exactly on every call that completes.
 *
 * It shares only the instruction decoder (`runtime/wasm-code.ts`: where each instruction starts and
 * ends) with the production meter; the weights and every inserted sequence are written here again,
 * in a different form (per instruction, `i64.div_u`/`i64.mul` instead of shifts).
 */
import { decodeCode, encodeBody, exportedGlobal, replaceCode, sleb, uleb } from '../runtime/wasm-code.ts'

/** Opcodes that weigh 0: nop, block, loop, else, end. Every other instruction weighs 1. */
const FREE = new Set([0x01, 0x02, 0x03, 0x05, 0x0b])

/**
 * Meters `wasm` (the unmetered module from `rewrite(…, { meter: false })`) per instruction.
 * @returns a module whose `__igor_fuel` drops by exactly the reference cost of what ran.
 */
export function referenceMeter (wasm: Uint8Array): Uint8Array {
  const code = decodeCode(wasm)
  const g = exportedGlobal(code, '__igor_fuel')
  const gget = [0x23, ...uleb(g)]; const gset = [0x24, ...uleb(g)]
  const bodies = code.bodies.map((body) => {
    const a = body.params + body.localCount // i32 scratch: len / delta
    const b = a + 1 // i32 scratch: memory.grow's result
    const insert = new Map<number, number[][]>()
    body.instrs.forEach((x, i) => {
      const seqs: number[][] = []
      if (!FREE.has(x.op)) seqs.push([...gget, 0x42, 1, 0x7d, ...gset]) // fuel -= 1
      if (x.op === 0xfc && (x.sub === 8 || x.sub === 10 || x.sub === 11)) {
        // fuel -= (len + 63) / 64
        seqs.push([0x22, ...uleb(a), ...gget, 0x20, ...uleb(a), 0xad, 0x42, ...sleb(63), 0x7c, 0x42, ...sleb(64), 0x80, 0x7d, ...gset])
      }
      if (x.op === 0x40) {
        seqs.push([0x22, ...uleb(a)])
        // after: r = result; if r != -1 { fuel -= delta * 1024 }; r
        const after = [0x22, ...uleb(b), 0x41, ...sleb(-1), 0x47, 0x04, 0x40, ...gget, 0x20, ...uleb(a), 0xad, 0x42, ...sleb(1024), 0x7e, 0x7d, ...gset, 0x0b, 0x20, ...uleb(b)]
        insert.set(i + 1, [after])
      }
      if (seqs.length > 0) insert.set(i, [...(insert.get(i) ?? []), ...seqs])
    })
    return encodeBody(wasm, body, [0x7f, 0x7f], insert)
  })
  return replaceCode(wasm, code, bodies)
}
