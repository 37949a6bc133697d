/**
 * A test agent whose state is mostly a mutable v128 global (test/features.test.ts,
 * test/e2e-features.test.ts), and the value that global must have after n ticks.
 */
import binaryen from 'binaryen'

/** Assembles WAT with igord's allowed features (SIMD included). */
function wat (text: string): Uint8Array {
  const m = binaryen.parseText(text)
  try {
    const F = binaryen.Features
    m.setFeatures(F.MutableGlobals | F.SignExt | F.NontrappingFPToInt | F.BulkMemory | F.BulkMemoryOpt | F.Multivalue | F.SIMD128)
    if (!m.validate()) throw new Error('v128 test agent does not validate')
    return m.emitBinary()
  } finally { m.dispose() }
}

/**
 * Each tick: n += 1; v = swap_halves(v * 3 + splat(n)) (i64x2 lanes); memory[16..32) = v.
 * With `trapAt`, the tick where n reaches it changes v and then traps.
 */
export function v128Agent (trapAt = -1): Uint8Array {
  return wat(`(module
    (memory (export "memory") 1)
    (global $v (mut v128) (v128.const i64x2 0x0123456789abcdef -2))
    (global $n (mut i32) (i32.const 0))
    (func (export "agent_tick") (result i32)
      (global.set $n (i32.add (global.get $n) (i32.const 1)))
      (global.set $v (i64x2.add (i64x2.mul (global.get $v) (i64x2.splat (i64.const 3))) (i64x2.splat (i64.extend_i32_u (global.get $n)))))
      (global.set $v (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (global.get $v) (global.get $v)))
      (v128.store (i32.const 16) (global.get $v))
      (if (i32.eq (global.get $n) (i32.const ${trapAt})) (then (unreachable)))
      (i32.const 0)))`)
}

/** The agent's v128 after `ticks` ticks, computed in JS: 16 little-endian bytes. */
export function expectedV (ticks: number): Uint8Array {
  const M = (1n << 64n) - 1n
  let lo = 0x0123456789abcdefn; let hi = (-2n) & M
  for (let n = 1n; n <= BigInt(ticks); n++) {
    const a = (lo * 3n + n) & M; const b = (hi * 3n + n) & M
    lo = b; hi = a
  }
  const out = new Uint8Array(16); const dv = new DataView(out.buffer)
  dv.setBigUint64(0, lo, true); dv.setBigUint64(8, hi, true)
  return out
}
