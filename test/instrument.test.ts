/**
 * Tests of runtime/instrument.ts (DESIGN §5): the instrumented module computes exactly what the
 * original computes, fuel is deterministic and follows the documented cost model, out-of-fuel is
 * told apart from other traps, globals and memory are exported, the memory is capped, rejected
 * features are refused with a message naming them, and results are cached by CID.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import asc from 'assemblyscript/asc'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ModuleError } from '../checkpoint/errors.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { instrument, rewrite, clearInstrumentCache, fuelUsed, FUEL_GLOBAL, COSTS, RECIPE } from '../runtime/instrument.ts'
import { referenceMeter } from './fuel-reference.ts'

const F = binaryen.Features
const BASE = F.MutableGlobals | F.SignExt | F.NontrappingFPToInt | F.BulkMemory | F.BulkMemoryOpt | F.Multivalue | F.SIMD128

/** Assembles WAT with binaryen, with `extra` features enabled. */
function wat (text: string, extra = 0): Uint8Array {
  const m = binaryen.parseText(text)
  m.setFeatures(BASE | extra)
  assert.ok(m.validate(), 'test module must validate')
  const b = m.emitBinary()
  m.dispose()
  return b
}

type Exports = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any
const imports = { env: { abort () { throw new Error('abort') } } }
function run (bin: Uint8Array): Exports {
  return new WebAssembly.Instance(new WebAssembly.Module(bin as Uint8Array<ArrayBuffer>), imports).exports as Exports
}
const LIMIT = 10n ** 12n
/** Calls `fn` with `args` with a fresh fuel limit; returns the result (or the thrown error) and the fuel used. */
function metered (ex: Exports, fn: string, args: unknown[], limit = LIMIT): { result: unknown; fuel: bigint; remaining: bigint; trapped: boolean } {
  ex[FUEL_GLOBAL].value = limit
  let result: unknown; let trapped = false
  try { result = ex[fn](...args) } catch (e) { result = (e as Error).message; trapped = true }
  const remaining = ex[FUEL_GLOBAL].value as bigint
  return { result, fuel: fuelUsed(limit, remaining), remaining, trapped }
}
function plainCall (ex: Exports, fn: string, args: unknown[]): unknown {
  try { return ex[fn](...args) } catch (e) { return (e as Error).message }
}
function binaryenValid (bin: Uint8Array): boolean {
  const m = binaryen.readBinary(bin); m.setFeatures(BASE | F.MultiMemory) // the dirty map is memory 1
  const ok = m.validate(); m.dispose(); return ok === 1
}

/** A small deterministic PRNG (xorshift32) for inputs. */
function rng (seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x }
}

// Hand-written kernels: ALU loop, memory loop, recursion, floats with NaN payloads, i64, br_table,
// multi-value, sign-extension, bulk memory, SIMD, non-trapping conversions, call_indirect.
const KERNELS = wat(`(module
  (memory 2)
  (table 2 funcref) (elem (i32.const 0) $sq $neg)
  (type $un (func (param i32) (result i32)))
  (global $acc (mut i64) (i64.const 0))
  (func $sq (type $un) (i32.mul (local.get 0) (local.get 0)))
  (func $neg (type $un) (i32.sub (i32.const 0) (local.get 0)))
  (func (export "alu") (param $n i32) (param $seed i32) (result i32) (local $h i32)
    (local.set $h (local.get $seed))
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $h (i32.mul (i32.xor (local.get $h) (local.get $n)) (i32.const 16777619)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $h))
  (func (export "memloop") (param $n i32) (param $seed i32) (result i32) (local $i i32) (local $s i32)
    (local.set $n (i32.and (local.get $n) (i32.const 65535)))
    (block $d (loop $l (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (local.get $i) (i32.add (local.get $seed) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l)))
    (local.set $i (i32.const 0))
    (block $d (loop $l (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $s (i32.add (i32.rotl (local.get $s) (i32.const 5)) (i32.load8_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l)))
    (local.get $s))
  (func $fib (export "fib") (param i32) (result i32)
    (if (result i32) (i32.lt_s (local.get 0) (i32.const 2)) (then (local.get 0))
      (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1))) (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func (export "fib_small") (param i32) (result i32) (call $fib (i32.and (local.get 0) (i32.const 15))))
  (func (export "fops") (param i64 i64) (result i64)
    (i64.xor
      (i64.reinterpret_f64 (f64.add (f64.reinterpret_i64 (local.get 0)) (f64.reinterpret_i64 (local.get 1))))
      (i64.extend_i32_u (i32.reinterpret_f32 (f32.mul (f32.reinterpret_i32 (i32.wrap_i64 (local.get 0))) (f32.reinterpret_i32 (i32.wrap_i64 (local.get 1))))))))
  (func (export "fmin") (param f64 f64) (result f64) (f64.copysign (f64.min (local.get 0) (local.get 1)) (local.get 1)))
  (func (export "i64ops") (param i64 i64) (result i64)
    (i64.add (i64.div_u (local.get 0) (i64.or (local.get 1) (i64.const 1)))
      (i64.add (i64.rotr (local.get 0) (local.get 1)) (i64.popcnt (i64.mul (local.get 0) (local.get 1))))))
  (func (export "brtable") (param i32) (result i32)
    (block $c (block $b (block $a (br_table $a $b $c (i32.and (local.get 0) (i32.const 3))))
      (return (i32.const 10))) (return (i32.const 20))) (i32.const 30))
  (func $pair (param i32) (result i32 i32) (i32.add (local.get 0) (i32.const 1)) (i32.mul (local.get 0) (i32.const 3)))
  (func (export "multi") (param i32) (result i32) (call $pair (local.get 0)) (i32.sub))
  (func (export "multi2") (param i32 i32) (result i32 i64) (i32.sub (local.get 0) (local.get 1)) (i64.extend_i32_s (local.get 1)))
  (func (export "signext") (param i32 i64) (result i64)
    (i64.add (i64.extend_i32_s (i32.add (i32.extend8_s (local.get 0)) (i32.extend16_s (local.get 0)))) (i64.extend32_s (local.get 1))))
  (func (export "bulk") (param i32) (param $v i32) (result i32)
    (local.set 0 (i32.and (local.get 0) (i32.const 4095)))
    (memory.fill (i32.const 100) (local.get $v) (local.get 0))
    (memory.copy (i32.const 9000) (i32.const 90) (local.get 0))
    (i32.add (i32.load (i32.const 9010)) (i32.load8_u (i32.add (i32.const 9000) (local.get 0)))))
  (func (export "simd") (param i32 i32) (result i32)
    (local $v v128)
    (local.set $v (i32x4.mul (i32x4.splat (local.get 0)) (i32x4.add (i32x4.splat (local.get 1)) (v128.const i32x4 1 2 3 4))))
    (local.set $v (f32x4.convert_i32x4_s (local.get $v)))
    (i32.add (i32x4.extract_lane 1 (i32x4.trunc_sat_f32x4_s (f32x4.sqrt (f32x4.abs (local.get $v)))))
      (i32x4.extract_lane 3 (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v)))))
  (func (export "trunc") (param f64) (result i32) (i32.add (i32.trunc_sat_f64_s (local.get 0)) (i32.trunc_sat_f64_u (local.get 0))))
  (func (export "indirect") (param i32 i32) (result i32) (call_indirect (type $un) (local.get 1) (i32.and (local.get 0) (i32.const 1))))
  (func (export "accum") (param i64) (result i64) (global.set $acc (i64.add (global.get $acc) (local.get 0))) (global.get $acc))
  (func (export "divtrap") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
)`)

// [function, argument generator]
const gens: Array<[string, (r: () => number) => unknown[]]> = [
  ['alu', (r) => [r() % 5000, r() | 0]],
  ['memloop', (r) => [r() % 3000, r() | 0]],
  ['fib_small', (r) => [r()]],
  ['fops', (r) => {
    // half of the inputs are NaNs with random payloads
    const nan = (x: number) => (0x7ff0000000000000n | BigInt(x % 0xfffff + 1) << 20n | BigInt(x & 0xfffff))
    return [r() % 2 ? nan(r()) : BigInt.asIntN(64, BigInt(r()) << 32n | BigInt(r())), r() % 3 ? nan(r()) : BigInt(r())]
  }],
  ['fmin', (r) => [r() % 4 === 0 ? NaN : (r() | 0) / 7, r() % 5 === 0 ? -0 : (r() | 0) / 3]],
  ['i64ops', (r) => [BigInt.asIntN(64, BigInt(r()) << 29n ^ BigInt(r())), BigInt(r() % 70)]],
  ['brtable', (r) => [r()]],
  ['multi', (r) => [r() | 0]],
  ['multi2', (r) => [r() | 0, r() | 0]],
  ['signext', (r) => [r() | 0, BigInt.asIntN(64, BigInt(r()) << 31n)]],
  ['bulk', (r) => [r(), r() & 255]],
  ['simd', (r) => [(r() | 0) % 100000, (r() | 0) % 1000]],
  ['trunc', (r) => [r() % 7 === 0 ? NaN : (r() | 0) * 12345.678]],
  ['indirect', (r) => [r(), (r() | 0) % 40000]],
  ['divtrap', (r) => [r() | 0, r() % 4 === 0 ? 0 : r() % 9 === 0 ? -1 : r() | 0]],
]

test('hand-written kernels compute exactly what the original computes, with the fuel of the per-instruction reference', () => {
  const orig = run(KERNELS)
  const metered_ = run(rewrite(KERNELS, { memoryLimitPages: 16 }).binary)
  const reference = run(referenceMeter(rewrite(KERNELS, { memoryLimitPages: 16, meter: false }).binary))
  const r = rng(42)
  for (const [fn, gen] of gens) {
    for (let i = 0; i < 150; i++) {
      const args = gen(r)
      const want = plainCall(orig, fn, args)
      const got = metered(metered_, fn, args)
      const ref = metered(reference, fn, args)
      assert.equal(got.result, want, `${fn}(${args.join(', ')})`)
      assert.equal(ref.result, want, `reference ${fn}(${args.join(', ')})`)
      if (got.trapped) continue // fuel is compared on calls that complete (test/fuel.test.ts has the trap rules)
      assert.equal(got.fuel, ref.fuel, `fuel of ${fn}(${args.join(', ')})`)
      assert.ok(got.fuel > 0n)
    }
  }
  // mutable global state evolves identically
  for (const v of [1n, 5n, -3n]) assert.equal(metered_.accum(v), orig.accum(v))
})

test('the instrumented module validates in binaryen and V8 and exports __igor_fuel', () => {
  const out = instrument(KERNELS, { memoryLimitPages: 16 })
  assert.ok(binaryenValid(out.binary))
  const names = WebAssembly.Module.exports(new WebAssembly.Module(out.binary as Uint8Array<ArrayBuffer>)).map((e) => e.name)
  assert.ok(names.includes(FUEL_GLOBAL))
  assert.equal(out.cid, cidOf(KERNELS))
})

test('fuel is identical across two runs, and different arguments give the documented cost deltas', () => {
  const src = wat(`(module
    (func (export "count") (param $n i32) (result i32) (local $i i32)
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (local.get $i)))`)
  const ex = run(instrument(src, { memoryLimitPages: 1 }).binary)
  const fuel = (n: number) => metered(ex, 'count', [n]).fuel
  assert.equal(fuel(7), fuel(7))
  // Each iteration runs 9 instructions (2 local.get, i32.ge_u, br_if, local.get, i32.const, i32.add,
  // local.set, br); the last test of the loop runs 4 (to br_if); then local.get after the block.
  for (const n of [0, 1, 2, 10, 1000]) assert.equal(fuel(n), BigInt(9 * n + 4 + 1), `count(${n})`)
})

test('an endless loop traps with the counter below zero and consumes exactly the limit', () => {
  const ex = run(instrument(wat(`(module (func (export "spin") (loop $l (br $l))))`), { memoryLimitPages: 1 }).binary)
  for (const limit of [0n, 1n, 1000n, 123457n]) {
    const r = metered(ex, 'spin', [], limit)
    assert.ok(r.trapped)
    assert.ok(r.remaining < 0n, 'out of fuel ⇒ counter < 0')
    assert.equal(r.fuel, limit)
  }
  // recursion without loops is stopped too
  const rec = run(instrument(wat(`(module (func $f (export "f") (call $f)))`), { memoryLimitPages: 1 }).binary)
  const r = metered(rec, 'f', [], 5000n)
  assert.ok(r.trapped && r.remaining < 0n)
})

test('other traps leave the counter non-negative', () => {
  const ex = run(instrument(KERNELS, { memoryLimitPages: 16 }).binary)
  const r = metered(ex, 'divtrap', [1, 0])
  assert.ok(r.trapped)
  assert.ok(r.remaining >= 0n)
  const oob = run(instrument(wat(`(module (memory 1) (func (export "f") (param i32) (result i32) (local $i i32)
      (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))
      (i32.load (local.get 0))))`), { memoryLimitPages: 1 }).binary)
  const o = metered(oob, 'f', [70000])
  assert.ok(o.trapped && o.remaining >= 0n)
  assert.is(metered(oob, 'f', [0]).trapped, false)
})

test('memory.grow past the cap returns -1; the maximum is lowered or set; memory is exported', () => {
  const src = wat(`(module (memory 1 100) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`)
  const ex = run(instrument(src, { memoryLimitPages: 3 }).binary)
  assert.is(ex.grow(1), 1)
  assert.is(ex.grow(1), 2)
  assert.is(ex.grow(1), -1)
  assert.instance(ex.memory, WebAssembly.Memory)
  assert.is((ex.memory as WebAssembly.Memory).buffer.byteLength, 3 * 65536)
  // no maximum at all: set to the limit
  const noMax = run(instrument(wat(`(module (memory 2) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`), { memoryLimitPages: 4 }).binary)
  assert.is(noMax.grow(3), -1)
  assert.is(noMax.grow(2), 2)
  // a lower existing maximum is kept
  const low = run(instrument(wat(`(module (memory 1 2) (export "mem" (memory 0)) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`), { memoryLimitPages: 50 }).binary)
  assert.is(low.grow(2), -1)
  assert.instance(low.memory, WebAssembly.Memory)
  assert.ok(low.mem === low.memory)
  // a module without memory gets an empty one
  const none = run(instrument(wat(`(module (func (export "f") (result i32) (i32.const 1)))`), { memoryLimitPages: 8 }).binary)
  assert.is((none.memory as WebAssembly.Memory).buffer.byteLength, 0)
  // initial size above the limit
  assert.throws(() => instrument(wat(`(module (memory 10))`), { memoryLimitPages: 4, file: 'big.wasm' }),
    (e: Error) => e instanceof ModuleError && /big\.wasm: initial memory is 10 pages, above the limit of 4/.test(e.message))
})

test('bulk memory and memory.grow charge in proportion to their size', () => {
  const ex = run(instrument(wat(`(module (memory 1 8)
    (func (export "fill") (param i32) (memory.fill (i32.const 0) (i32.const 7) (local.get 0)))
    (func (export "copy") (param i32) (memory.copy (i32.const 0) (i32.const 1) (local.get 0)))
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`), { memoryLimitPages: 8 }).binary)
  const f = (fn: string, n: number) => metered(ex, fn, [n]).fuel
  const perChunk = COSTS.bulkBytesPerFuel
  assert.is(f('fill', 65536) - f('fill', 64), BigInt(65536 / perChunk - 1))
  assert.is(f('fill', 65) - f('fill', 64), 1n)
  assert.is(f('fill', 0) + 1n, f('fill', 1))
  assert.is(f('copy', 6400) - f('copy', 0), 100n)
  const g0 = f('grow', 0)
  assert.is(f('grow', 2) - g0, BigInt(2 * COSTS.growPage))
  assert.is(f('grow', 100) - g0, 0n, 'a failed grow costs nothing extra')
  // a fill too big for the remaining fuel runs out of fuel before writing anything
  const r = metered(ex, 'fill', [65536], 100n)
  assert.ok(r.trapped && r.remaining < 0n)
  assert.is(new Uint8Array((ex.memory as WebAssembly.Memory).buffer)[65535], 7, 'earlier fills wrote memory')
})

test('internal mutable globals are exported as __igor_g<index> and can be restored', () => {
  const src = wat(`(module
    (import "env" "k" (global $k i32))
    (global $a (mut i32) (i32.const 5))
    (global $b i64 (i64.const 7))
    (global $c (mut i64) (i64.const -1))
    (global $d (mut f64) (f64.const 1.5))
    (global $e (mut v128) (v128.const i32x4 1 2 3 4))
    (export "already" (global $c))
    (func (export "get") (result i32 i64 f64 i32) (global.get $a) (global.get $c) (global.get $d) (i32x4.extract_lane 2 (global.get $e)))
    (func (export "bump") (global.set $a (i32.add (global.get $a) (global.get $k)))))`)
  const out = instrument(src, { memoryLimitPages: 1 })
  assert.equal(out.globals, [
    { index: 1, exportName: '__igor_g1', type: 'i32' },
    { index: 3, exportName: '__igor_g3', type: 'i64' },
    { index: 4, exportName: '__igor_g4', type: 'f64' },
    { index: 5, exportName: '__igor_g5', type: 'v128', accessors: { get: '__igor_v128_get_5', set: '__igor_v128_set_5' } },
  ])
  const ex = new WebAssembly.Instance(new WebAssembly.Module(out.binary as Uint8Array<ArrayBuffer>), { env: { k: 10 } }).exports as Exports
  ex.bump()
  assert.is(ex.__igor_g1.value, 15)
  // restore into a fresh instance through the exports, read back through a function
  const fresh = new WebAssembly.Instance(new WebAssembly.Module(out.binary as Uint8Array<ArrayBuffer>), { env: { k: 10 } }).exports as Exports
  fresh.__igor_g1.value = 99; fresh.__igor_g3.value = 123456789012345n; fresh.__igor_g4.value = -2.25
  assert.equal(fresh.get(), [99, 123456789012345n, -2.25, 3])
  fresh.already.value = 5n
  assert.is(fresh.__igor_g3.value, 5n, 'an already exported global gets __igor_g<index> too')
})

test('AssemblyScript program (incremental runtime, Map, arrays, strings) runs identically', async () => {
  const src = `
    const m = new Map<i32, string>()
    let total: i64 = 0
    export function work(n: i32, seed: i32): i32 {
      let h = seed
      const arr: i32[] = []
      for (let i = 0; i < n; i++) { h = h * 1103515245 + 12345; arr.push(h >>> 8) }
      arr.sort((a, b) => a - b)
      let s = ''
      for (let i = 0; i < arr.length; i += 7) { s += arr[i].toString(16) + ',' ; m.set(arr[i] & 255, s.slice(-6)) }
      total += <i64>s.length
      return s.length ^ m.size ^ <i32>(total & 0xffff)
    }
    export function fmt(x: f64): string { return x.toString() }
    export function strlen(x: f64): i32 { return fmt(x).length }`
  const r = await asc.compileString({ 'prog.ts': src }, { optimizeLevel: 3, runtime: 'incremental', exportStart: '_initialize' })
  assert.not.ok(r.error, String(r.error) + r.stderr.toString())
  const bin = r.binary!
  const out = instrument(bin, { memoryLimitPages: 256, file: 'prog.wasm' })
  assert.ok(binaryenValid(out.binary))
  assert.ok(out.globals.length >= 5, 'AS keeps its runtime state in mutable globals')
  const orig = run(bin); const inst = run(out.binary)
  orig._initialize(); inst[FUEL_GLOBAL].value = LIMIT; inst._initialize()
  const rand = rng(7)
  const fuels: bigint[] = []
  for (let i = 0; i < 60; i++) {
    const n = rand() % 400; const seed = rand() | 0
    const got = metered(inst, 'work', [n, seed])
    assert.is(got.result, orig.work(n, seed))
    fuels.push(got.fuel)
    const x = (rand() | 0) / 1000
    assert.is(metered(inst, 'strlen', [x]).result, orig.strlen(x))
  }
  assert.equal(new Uint8Array(inst.memory.buffer), new Uint8Array(orig.memory.buffer))
  // the same calls on a fresh instance burn the same fuel
  const again = run(out.binary); again[FUEL_GLOBAL].value = LIMIT; again._initialize()
  const rand2 = rng(7)
  for (let i = 0; i < 60; i++) {
    const n = rand2() % 400; const seed = rand2() | 0
    assert.is(metered(again, 'work', [n, seed]).fuel, fuels[i])
    metered(again, 'strlen', [(rand2() | 0) / 1000])
  }
})

test('a start function runs metered from the initial counter', () => {
  const ex = run(instrument(wat(`(module (global $g (mut i32) (i32.const 0)) (func $s (global.set $g (i32.const 42))) (start $s)
    (func (export "g") (result i32) (global.get $g)))`), { memoryLimitPages: 1 }).binary)
  assert.is(ex.g(), 42)
  assert.ok((ex[FUEL_GLOBAL].value as bigint) < 1_000_000_000n)
})

const REJECTS: Array<[string, string, number, RegExp]> = [
  ['shared memory', `(module (memory 1 1 shared))`, F.Atomics, /threads \(a shared memory\)/],
  ['atomics', `(module (memory 1 1) (func (export "f") (result i32) (i32.atomic.load (i32.const 0))))`, F.Atomics, /threads \(atomic instructions\) in function/],
  ['atomic rmw', `(module (memory 1 1) (func $work (result i32) (i32.atomic.rmw.add (i32.const 0) (i32.const 1))))`, F.Atomics, /threads \(atomic instructions\) in function \S+, which igord does not allow$/],
  ['relaxed SIMD', `(module (func (export "f") (result v128) (i8x16.relaxed_swizzle (v128.const i32x4 1 2 3 4) (v128.const i32x4 1 2 3 4))))`, F.RelaxedSIMD, /relaxed SIMD/],
  ['relaxed madd', `(module (func (export "f") (param v128) (result v128) (f32x4.relaxed_madd (local.get 0) (local.get 0) (local.get 0))))`, F.RelaxedSIMD, /relaxed SIMD/],
  ['relaxed trunc', `(module (func (export "f") (param v128) (result v128) (i32x4.relaxed_trunc_f32x4_s (local.get 0))))`, F.RelaxedSIMD, /relaxed SIMD/],
  ['exception handling', `(module (tag $t) (func (export "f") (throw $t)))`, F.ExceptionHandling, /exception handling/],
  ['tail calls', `(module (func $g (result i32) (i32.const 1)) (func (export "f") (result i32) (return_call $g)))`, F.TailCall, /tail calls/],
  ['return_call_indirect', `(module (type $t (func (result i32))) (table 1 funcref) (func (export "f") (result i32) (return_call_indirect (type $t) (i32.const 0))))`, F.TailCall, /tail calls/],
  ['table.set', `(module (table 2 funcref) (func $g) (elem declare func $g) (func (export "f") (table.set (i32.const 0) (ref.func $g))))`, F.ReferenceTypes, /reference types|table mutation/],
  ['table.grow', `(module (table 2 funcref) (func (export "f") (result i32) (table.grow (ref.null func) (i32.const 1))))`, F.ReferenceTypes, /table\.grow|reference types/],
  ['table.fill', `(module (table 2 funcref) (func (export "f") (table.fill (i32.const 0) (ref.null func) (i32.const 1))))`, F.ReferenceTypes, /table\.fill|reference types/],
  ['table.copy', `(module (table 2 funcref) (func (export "f") (table.copy (i32.const 0) (i32.const 1) (i32.const 1))))`, F.ReferenceTypes, /table mutation at run time \(table\.copy/],
  ['table.init', `(module (table 2 funcref) (func $g) (elem $e func $g) (func (export "f") (table.init $e (i32.const 0) (i32.const 0) (i32.const 1))))`, F.ReferenceTypes, /table mutation at run time \(table\.init/],
  ['elem.drop', `(module (table 2 funcref) (func $g) (elem $e func $g) (func (export "f") (elem.drop $e)))`, F.ReferenceTypes, /table mutation at run time \(elem\.drop/],
  ['externref', `(module (func (export "f") (param externref)))`, F.ReferenceTypes, /reference types/],
  ['two tables', `(module (table 1 funcref) (table $b 1 funcref))`, F.ReferenceTypes, /reference types \(2 tables\)/],
  ['GC', `(module (type $s (struct (field i32))) (func (export "f") (result i32) (struct.get $s 0 (struct.new $s (i32.const 1)))))`, F.GC | F.ReferenceTypes, /GC/],
  ['memory64', `(module (memory i64 1) (func (export "f") (result i32) (i32.load (i64.const 0))))`, F.Memory64, /memory64/],
  ['multi-memory', `(module (memory 1) (memory $b 1) (func (export "f") (result i32) (i32.load $b (i32.const 0))))`, F.MultiMemory, /multi-memory \(2 memories\)/],
  ['imported memory', `(module (import "env" "memory" (memory 1)))`, 0, /imports its memory \(env\.memory\); agents must define their own memory/],
  ['imported mutable global', `(module (import "env" "g" (global (mut i32))))`, 0, /imports a mutable global \(env\.g\)/],
  ['extended const', `(module (global $g i32 (i32.add (i32.const 1) (i32.const 2))) (func (export "f") (result i32) (global.get $g)))`, F.ExtendedConst, /extended constant expressions/],
]

for (const [name, text, feats, re] of REJECTS) {
  test(`rejects ${name} with a ModuleError naming it`, () => {
    const bin = wat(text, feats)
    assert.ok(WebAssembly.validate(bin as Uint8Array<ArrayBuffer>), 'V8 accepts the test module')
    try {
      instrument(bin, { memoryLimitPages: 4, file: 'bad.wasm' })
      assert.unreachable('should have thrown')
    } catch (e) {
      assert.instance(e, ModuleError)
      assert.match((e as Error).message, /^bad\.wasm: /)
      assert.match((e as Error).message, re)
      assert.not.match((e as Error).message, /\n/)
    }
  })
}

test('invalid bytes and already-instrumented modules are rejected', () => {
  for (const bytes of [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 99])]) {
    assert.throws(() => instrument(bytes, { memoryLimitPages: 1, file: 'x.wasm' }),
      (e: Error) => e instanceof ModuleError && /^x\.wasm: not a valid WebAssembly module \(.+\)$/.test(e.message))
  }
  const once = instrument(KERNELS, { memoryLimitPages: 16 }).binary
  assert.throws(() => instrument(once, { memoryLimitPages: 16, file: 'twice.wasm' }),
    (e: Error) => e instanceof ModuleError && /twice\.wasm: already instrumented/.test(e.message))
})

test('results are cached by CID and limit, in memory and on disk', () => {
  clearInstrumentCache()
  const a = instrument(KERNELS, { memoryLimitPages: 16 })
  const b = instrument(Uint8Array.from(KERNELS), { memoryLimitPages: 16 })
  assert.ok(a === b, 'same CID and limit: same result')
  const c = instrument(KERNELS, { memoryLimitPages: 17 })
  assert.ok(c !== a)
  assert.equal(c.cid, a.cid)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-instr-'))
  try {
    clearInstrumentCache()
    const d = instrument(KERNELS, { memoryLimitPages: 16, cacheDir: dir })
    assert.equal(d.binary, a.binary, 'deterministic output')
    const entry = path.join(dir, `${a.cid}-16-${RECIPE}.code`)
    assert.ok(fs.existsSync(entry), entry)
    const bytes = new Uint8Array(fs.readFileSync(entry))
    assert.equal(bytes.subarray(bytes.length - a.binary.length), a.binary, 'the entry ends with the instrumented bytes')
    clearInstrumentCache()
    const e = instrument(KERNELS, { memoryLimitPages: 16, cacheDir: dir })
    assert.equal(e.binary, a.binary)
    assert.equal(e.globals, a.globals)
    // a damaged cache entry is ignored and rebuilt
    fs.writeFileSync(entry, bytes.subarray(0, bytes.length - 1))
    clearInstrumentCache()
    assert.equal(instrument(KERNELS, { memoryLimitPages: 16, cacheDir: dir }).binary, a.binary)
    assert.equal(new Uint8Array(fs.readFileSync(entry)), bytes, 'and replaced')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('fuelUsed is min(limit, limit − remaining), never negative', () => {
  assert.is(fuelUsed(100n, 40n), 60n)
  assert.is(fuelUsed(100n, 100n), 0n)
  assert.is(fuelUsed(100n, -5n), 100n)
  assert.is(fuelUsed(100n, 150n), 0n)
})

test('a bad memory limit is refused', () => {
  for (const bad of [-1, 1.5, 65537, NaN]) assert.throws(() => instrument(KERNELS, { memoryLimitPages: bad }), /memory limit/)
})

test.run()
