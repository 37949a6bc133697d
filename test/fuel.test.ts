/**
 * Tests of runtime/fuel.ts (docs/ABI.md "Fuel"): fuel is exactly the weighted number of wasm
 * instructions executed. On a corpus — the AssemblyScript and C agents (incl. the `vm`
 * switch-interpreter kernel), SIMD, bulk memory, `call_indirect`, import calls whose operands call
 * metered functions, `memory.grow` in call operands, br_table-heavy code, deep nesting, multi-value
 * blocks — every call that completes is charged exactly what the naive per-instruction reference
 * meter (test/fuel-reference.ts) counts; given exactly that fuel it completes, given one unit less
 * it traps out of fuel; and every run charges the same.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { GATE_FEATURES as FEATURES, wat } from './wat.ts'
import fs from 'node:fs'
import path from 'node:path'
import { rewrite, fuelUsed, FUEL_GLOBAL, COSTS } from '../runtime/instrument.ts'
import { meter, weightOf } from '../runtime/fuel.ts'
import { decodeCode } from '../runtime/wasm-code.ts'
import { referenceMeter } from './fuel-reference.ts'

const ROOT = path.join(import.meta.dirname, '..')
type Exports = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

/** Thrown by the test host's `proc_exit`. */
class Exit extends Error {}

/**
 * Deterministic host functions for every import of the corpus: a fresh state per instance, so two
 * instances given the same calls see the same answers. WASI functions not listed answer EBADF (8).
 */
function host (mem: () => WebAssembly.Memory): WebAssembly.Imports {
  let clock = 1_700_000_000_000_000_000n
  let x = 0x9e3779b9
  const fill = (ptr: number, len: number): void => {
    const b = new Uint8Array(mem().buffer, ptr >>> 0, len >>> 0)
    for (let i = 0; i < b.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b[i] = x & 255 }
  }
  const wasi: Record<string, (...a: never[]) => unknown> = {
    fd_write: (_fd: number, iovs: number, n: number, out: number) => {
      const v = new DataView(mem().buffer); let total = 0
      for (let i = 0; i < n; i++) total += v.getUint32(iovs + 8 * i + 4, true)
      v.setUint32(out, total, true); return 0
    },
    clock_time_get: (_id: number, _p: bigint, out: number) => { new DataView(mem().buffer).setBigUint64(out, clock += 1000n, true); return 0 },
    random_get: (ptr: number, len: number) => { fill(ptr, len); return 0 },
    fd_fdstat_get: (_fd: number, out: number) => { new Uint8Array(mem().buffer, out, 24).fill(0); return 0 },
    proc_exit: (code: number) => { throw new Exit(`exit ${code}`) },
  }
  const wasiProxy = new Proxy(wasi, { get: (t, k: string) => t[k] ?? (() => 8) })
  return {
    env: { abort: () => { throw new Error('abort') }, seed: () => 42 },
    igor: {
      clock_now: () => (clock += 1000n),
      rand_bytes: (ptr: number, len: number) => { fill(ptr, len); return 0 },
      log_emit: () => {},
      agent_did: (ptr: number, len: number) => { new Uint8Array(mem().buffer, ptr, len).fill(65); return 56 },
      agent_sign: (_m: number, _l: number, out: number) => { new Uint8Array(mem().buffer, out, 64).fill(7); return 0 },
      migrate_request: () => 0,
      wallet_balance: () => 1000n,
    },
    host: { sink: (a: number) => a ^ 0x55, sink2: (a: number, b: number) => (a * 3 + b) | 0 },
    wasi_snapshot_preview1: wasiProxy,
  }
}

const compiled = new WeakMap<Uint8Array, WebAssembly.Module>()
function instantiate (bin: Uint8Array): Exports {
  const box: { mem?: WebAssembly.Memory } = {}
  let mod = compiled.get(bin)
  if (mod === undefined) { mod = new WebAssembly.Module(bin as Uint8Array<ArrayBuffer>); compiled.set(bin, mod) }
  const inst = new WebAssembly.Instance(mod, host(() => box.mem!))
  box.mem = inst.exports.memory as WebAssembly.Memory
  return inst.exports as Exports
}

type Call = [string, unknown[]]
interface Outcome { result: unknown; trapped: boolean; remaining: bigint; fuel: bigint }
const BIG = 10n ** 13n

/** Calls `fn(args)` with `limit` in `__igor_fuel`; the thrown message is the result when it traps. */
function call (ex: Exports, [fn, args]: Call, limit = BIG): Outcome {
  ex[FUEL_GLOBAL].value = limit
  let result: unknown; let trapped = false
  try { result = ex[fn](...args) } catch (e) { result = (e as Error).message; trapped = true }
  const remaining = ex[FUEL_GLOBAL].value as bigint
  return { result, trapped, remaining, fuel: fuelUsed(limit, remaining) }
}

interface Case { name: string; wasm: Uint8Array; calls: Call[]; pages?: number }

/** The three builds of a case: plain (unmetered), production-metered, reference-metered. */
function builds (c: Case): { plain: Uint8Array; prod: Uint8Array; ref: Uint8Array } {
  const pages = c.pages ?? 256
  const plain = rewrite(c.wasm, { memoryLimitPages: pages, meter: false, file: c.name }).binary
  // what rewrite() does last (checked against rewrite itself in the straight-line test)
  const prod = meter(plain)
  return { plain, prod, ref: referenceMeter(plain) }
}

/**
 * Checks every property on one case; returns the production outcomes.
 * @param exactLimit how many completed calls to re-run with exactly their fuel and one unit less.
 */
function checkCase (c: Case, exactLimit = 12): Outcome[] {
  const { plain, prod, ref } = builds(c)
  const [P, R, Q] = [prod, ref, plain].map(instantiate)
  const outs: Outcome[] = []
  for (const [k, cl] of c.calls.entries()) {
    const p = call(P, cl); const r = call(R, cl); const q = call(Q, cl)
    const where = `${c.name}: call ${k} ${cl[0]}(${cl[1].join(', ')})`
    assert.equal(p.result, q.result, `${where}: metered result = plain result`)
    assert.equal(r.result, q.result, `${where}: reference result = plain result`)
    assert.is(p.trapped, q.trapped, where)
    if (!p.trapped) {
      assert.is(p.fuel, r.fuel, `${where}: production fuel = reference count`)
      assert.ok(p.remaining >= 0n, where)
    } else {
      assert.ok(p.remaining >= 0n, `${where}: a trap that is not out of fuel leaves the counter ≥ 0`)
    }
    outs.push(p)
  }
  assert.equal(new Uint8Array(P.memory.buffer), new Uint8Array(Q.memory.buffer), `${c.name}: memory after the calls`)
  assert.equal(new Uint8Array(R.memory.buffer), new Uint8Array(Q.memory.buffer), `${c.name}: reference memory after the calls`)
  // the same on every run
  const again = instantiate(prod)
  for (const [k, cl] of c.calls.entries()) {
    const p = call(again, cl)
    assert.is(p.remaining, outs[k].remaining, `${c.name}: call ${k} charged the same on a second run`)
  }
  // exactly the fuel charged completes; one unit less runs out of fuel
  const done = c.calls.map((_, k) => k).filter((k) => !outs[k].trapped && outs[k].fuel > 0n)
  const step = Math.max(1, Math.ceil(done.length / exactLimit))
  for (let j = 0; j < done.length; j += step) {
    const k = done[j]
    for (const minus of [0n, 1n]) {
      const ex = instantiate(prod)
      for (let i = 0; i < k; i++) call(ex, c.calls[i])
      const o = call(ex, c.calls[k], outs[k].fuel - minus)
      const where = `${c.name}: call ${k} ${c.calls[k][0]} with ${outs[k].fuel - minus} fuel`
      if (minus === 0n) {
        assert.not.ok(o.trapped, `${where} completes (${String(o.result)})`)
        assert.equal(o.result, outs[k].result, where)
        assert.is(o.remaining, 0n, where)
      } else {
        assert.ok(o.trapped, `${where} traps`)
        assert.ok(o.remaining < 0n, `${where} runs out of fuel (counter ${o.remaining})`)
        assert.is(o.fuel, outs[k].fuel - 1n, where)
      }
    }
  }
  return outs
}

function agentCalls (wasm: Uint8Array, ticks: number): Call[] {
  const names = WebAssembly.Module.exports(new WebAssembly.Module(wasm as Uint8Array<ArrayBuffer>)).map((e) => e.name)
  const calls: Call[] = [['_initialize', []]]
  if (names.includes('agent_init')) calls.push(['agent_init', []])
  for (let i = 0; i < ticks; i++) calls.push(['agent_tick', []])
  return calls
}

const read = (p: string): Uint8Array => new Uint8Array(fs.readFileSync(path.join(ROOT, p)))

for (const name of ['badimport', 'bomb', 'finisher', 'heartbeat', 'identity', 'ledger', 'nomad', 'trap']) {
  test(`AssemblyScript agent ${name}: fuel = reference count, exact limit completes, one less runs out`, () => {
    const wasm = read(`agents-as/build/${name}.wasm`)
    const calls = agentCalls(wasm, name === 'bomb' ? 8 : 5)
    if (name === 'ledger') calls.push(['ledger_checksum', []], ['ledger_entries', []])
    const outs = checkCase({ name, wasm, calls, pages: name === 'bomb' ? 64 : 1024 }, 4)
    assert.ok(outs.some((o) => !o.trapped), 'some calls complete')
  })
}

for (const name of ['hashmap', 'probe', 'vm']) {
  test(`C agent ${name}: fuel = reference count, exact limit completes, one less runs out`, () => {
    const wasm = read(`agents-c/build/${name}.wasm`)
    const calls = agentCalls(wasm, name === 'hashmap' ? 6 : 2)
    if (name === 'vm') calls.push(['vm_run', [0]], ['vm_run', [1]], ['vm_run', [37]], ['vm_executed', []])
    checkCase({ name, wasm, calls }, 4)
  })
}

test('the loop agent runs out of fuel at exactly the limit, deterministically', () => {
  const { prod } = builds({ name: 'loop', wasm: read('agents-as/build/loop.wasm'), calls: [] })
  const ex = instantiate(prod)
  call(ex, ['_initialize', []])
  for (const limit of [0n, 1n, 999n, 1_000_000n]) {
    const o = call(ex, ['agent_tick', []], limit)
    assert.ok(o.trapped && o.remaining < 0n)
    assert.is(o.fuel, limit)
  }
})

// Import calls and call_indirect whose operands call metered functions (issue 7 §1: the `thread`
// strategy threw those charges away), memory.grow in call operands.
const OPERANDS = wat(`(module
  (import "host" "sink" (func $sink (param i32) (result i32)))
  (import "host" "sink2" (func $sink2 (param i32 i32) (result i32)))
  (memory 1 100)
  (type $t (func (param i32) (result i32)))
  (table 3 funcref) (elem (i32.const 0) $work $grow1 $work)
  (func $work (export "work") (param $n i32) (result i32) (local $h i32)
    (block $d (loop $l (br_if $d (i32.eqz (local.get $n)))
      (local.set $h (i32.add (i32.mul (local.get $h) (i32.const 31)) (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br $l)))
    (local.get $h))
  (func $grow1 (param i32) (result i32) (memory.grow (i32.and (local.get 0) (i32.const 1))))
  (func (export "import_of_work") (param i32) (result i32) (call $sink (call $work (local.get 0))))
  (func (export "import_of_grow") (result i32) (call $sink (memory.grow (i32.const 1))))
  (func (export "import_of_indirect") (param i32) (result i32)
    (call $sink2 (call_indirect (type $t) (local.get 0) (i32.const 0)) (call_indirect (type $t) (i32.const 1) (i32.const 1))))
  (func (export "indirect_of_work") (param i32) (result i32)
    (call_indirect (type $t) (i32.and (call $work (local.get 0)) (i32.const 1023)) (i32.and (call $work (i32.const 3)) (i32.const 2))))
  (func (export "loop_of_imports") (param $n i32) (result i32) (local $s i32)
    (loop $l (local.set $s (i32.add (local.get $s) (call $sink (call $work (i32.const 50)))))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $s))
  (func (export "grow_in_operands") (param i32) (result i32)
    (call $sink2 (memory.grow (local.get 0)) (call_indirect (type $t) (local.get 0) (i32.const 1))))
)`)

test('import calls and call_indirect are charged their operands in full (the old undercount)', () => {
  const calls: Call[] = [
    ['work', [100]], ['import_of_work', [100]], ['import_of_work', [8000]], ['import_of_grow', []], ['import_of_indirect', [40]],
    ['indirect_of_work', [77]], ['loop_of_imports', [30]], ['grow_in_operands', [2]], ['grow_in_operands', [1]], ['grow_in_operands', [90]],
  ]
  const o = checkCase({ name: 'operands', wasm: OPERANDS, calls, pages: 100 })
  // local.get + call $work + call $sink on top of work(100)
  assert.is(o[1].fuel, o[0].fuel + 3n)
  assert.ok(o[2].fuel > 8000n * 5n, `an operand doing 8000 rounds is charged them (${o[2].fuel})`)
  // i32.const 1, memory.grow (+1024 for the page grown), call $sink
  assert.is(o[3].fuel, 3n + BigInt(COSTS.growPage))
})

const BULK = wat(`(module (memory 1 8)
  (data $p "hello, passive segment! 0123456789abcdef")
  (data (i32.const 500) "active")
  (func $id (param i32) (result i32) (local.get 0))
  (func (export "fill") (param i32 i32) (memory.fill (local.get 0) (i32.const 7) (local.get 1)))
  (func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))
  (func (export "init") (param i32 i32) (memory.init $p (local.get 0) (i32.const 0) (local.get 1)))
  (func (export "drop") (data.drop $p))
  (func (export "grow_in_operand") (param i32) (result i32) (call $id (memory.grow (local.get 0))))
  (func (export "size") (result i32) (memory.size))
  (func (export "bulk_loop") (param $n i32) (result i32) (local $i i32)
    (loop $l
      (memory.fill (i32.mul (local.get $i) (i32.const 100)) (local.get $i) (i32.add (local.get $i) (i32.const 60)))
      (memory.copy (i32.const 30000) (i32.mul (local.get $i) (i32.const 50)) (i32.mul (local.get $i) (local.get $i)))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
    (i32.load (i32.const 30004)))
)`)

test('bulk memory and memory.grow: dynamic costs equal the reference, in every position', () => {
  const calls: Call[] = [
    ['fill', [0, 0]], ['fill', [10, 1]], ['fill', [10, 64]], ['fill', [10, 65]], ['fill', [0, 65536]], ['copy', [100, 0, 6400]],
    ['init', [1000, 40]], ['init', [1000, 0]], ['drop', []], ['init', [1000, 1]], ['init', [1000, 0]], ['grow_in_operand', [0]],
    ['grow_in_operand', [3]], ['grow_in_operand', [50]], ['size', []], ['bulk_loop', [70]], ['fill', [65536 * 4 - 10, 100]],
  ]
  const o = checkCase({ name: 'bulk', wasm: BULK, calls, pages: 8 })
  assert.is(o[4].fuel - o[1].fuel, BigInt(65536 / COSTS.bulkBytesPerFuel - 1))
  assert.is(o[3].fuel - o[2].fuel, 1n)
  assert.is(o[12].fuel - o[11].fuel, BigInt(3 * COSTS.growPage), 'grow by 3 pages costs 3 × 1024 more than grow by 0')
  assert.is(o[13].fuel, o[11].fuel, 'a failed grow costs nothing extra')
  assert.ok(o[9].trapped && o[16].trapped, 'init after drop and an out-of-bounds fill trap')
})

const SIMD = wat(`(module (memory 1)
  (func (export "simd") (param $n i32) (param $s i32) (result i32) (local $v v128) (local $w v128) (local $i i32)
    (local.set $v (i32x4.splat (local.get $s)))
    (loop $l
      (v128.store offset=16 (i32.mul (local.get $i) (i32.const 16)) (i32x4.add (local.get $v) (v128.const i32x4 1 2 3 4)))
      (local.set $w (v128.load offset=16 align=4 (i32.mul (local.get $i) (i32.const 16))))
      (local.set $v (i8x16.shuffle 3 2 1 0 7 6 5 4 11 10 9 8 15 14 13 12 (local.get $w) (i32x4.mul (local.get $v) (local.get $w))))
      (local.set $v (i16x8.replace_lane 3 (local.get $v) (i32x4.extract_lane 2 (local.get $w))))
      (local.set $v (v128.load32_lane 1 (i32.const 64) (local.get $v)))
      (v128.store64_lane 0 (i32.const 200) (local.get $v))
      (local.set $w (v128.load8_splat (i32.add (local.get $i) (i32.const 3))))
      (local.set $w (i32x4.add (local.get $w) (v128.load32_zero (i32.const 20))))
      (local.set $w (i16x8.add (local.get $w) (v128.load16x4_u (i32.const 40))))
      (local.set $v (v128.bitselect (local.get $v) (local.get $w) (i8x16.eq (local.get $v) (local.get $w))))
      (local.set $v (f32x4.convert_i32x4_s (i32x4.trunc_sat_f32x4_s (f32x4.sqrt (f32x4.abs (f32x4.convert_i32x4_u (local.get $v)))))))
      (local.set $v (i32x4.trunc_sat_f32x4_s (local.get $v)))
      (local.set $v (i8x16.swizzle (local.get $v) (i8x16.splat (local.get $i))))
      (local.set $v (i64x2.shl (local.get $v) (i32.and (local.get $i) (i32.const 63))))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
    (i32.add (i32x4.extract_lane 0 (local.get $v)) (i32.add (i8x16.extract_lane_u 5 (local.get $v)) (i32x4.all_true (local.get $w)))))
)`)

test('SIMD (loads, stores, lanes, shuffles, constants): fuel = reference count', () => {
  checkCase({ name: 'simd', wasm: SIMD, calls: [['simd', [1, 5]], ['simd', [10, -7]], ['simd', [300, 123456]]], pages: 1 })
})

// A wat interpreter: br_table dispatch in a loop, 8 arms of different sizes.
const INTERP = wat(`(module (memory 1)
  (func (export "interp") (param $n i32) (result i32) (local $pc i32) (local $acc i32) (local $steps i32)
    (block $halt
      (loop $next
        (local.set $steps (i32.add (local.get $steps) (i32.const 1)))
        (br_if $halt (i32.ge_u (local.get $steps) (local.get $n)))
        (block $op7 (block $op6 (block $op5 (block $op4 (block $op3 (block $op2 (block $op1 (block $op0
          (br_table $op0 $op1 $op2 $op3 $op4 $op5 $op6 $op7 $halt (i32.and (local.get $pc) (i32.const 7))))
          (local.set $acc (i32.add (local.get $acc) (i32.const 1))) (local.set $pc (i32.add (local.get $pc) (i32.const 3))) (br $next))
          (local.set $acc (i32.mul (local.get $acc) (i32.const 3))) (local.set $pc (i32.add (local.get $pc) (i32.const 5))) (br $next))
          (local.set $acc (i32.xor (local.get $acc) (i32.shl (local.get $acc) (i32.const 7))))
          (local.set $acc (i32.xor (local.get $acc) (i32.shr_u (local.get $acc) (i32.const 9))))
          (local.set $pc (i32.add (local.get $pc) (i32.const 1))) (br $next))
          (i32.store (i32.and (local.get $acc) (i32.const 1020)) (local.get $acc)) (local.set $pc (i32.add (local.get $pc) (i32.const 2))) (br $next))
          (local.set $acc (i32.add (local.get $acc) (i32.load (i32.and (local.get $pc) (i32.const 1020))))) (local.set $pc (i32.add (local.get $pc) (i32.const 7))) (br $next))
          (if (i32.and (local.get $acc) (i32.const 1))
            (then (local.set $acc (i32.sub (local.get $acc) (i32.const 9))))
            (else (local.set $acc (i32.rotl (local.get $acc) (i32.const 3)))))
          (local.set $pc (i32.add (local.get $pc) (i32.const 1))) (br $next))
          (br_if $halt (i32.eq (local.get $acc) (i32.const 424242)))
          (local.set $pc (i32.add (local.get $pc) (i32.const 6))) (br $next))
        (return (local.get $acc))))
    (local.get $acc))
)`)

test('a br_table interpreter: fuel = reference count and per executed step only the arm that ran', () => {
  const o = checkCase({ name: 'interp', wasm: INTERP, calls: [['interp', [0]], ['interp', [1]], ['interp', [10]], ['interp', [1000]], ['interp', [1001]]], pages: 1 })
  const perStep = Number(o[4].fuel - o[3].fuel)
  // the static loop body weighs about 90; one step runs the dispatch (~9) and one arm (≤ 14)
  assert.ok(perStep <= 25, `one interpreter step costs ${perStep}`)
})

/** A deeply nested function: blocks, loops and ifs 24 deep; br/br_if/br_table to every depth, incl. the function's own label; multi-value blocks with params. */
function nested (): Uint8Array {
  const depth = 24
  let open = ''; let close = ''
  for (let d = 0; d < depth; d++) {
    const kind = d % 3
    const lbl = `$L${d}`
    let t = Math.floor(d / 2); while (t % 3 === 1) t-- // a block label: a branch to a loop could spin forever
    const target = `$L${t}`
    const exits = `(br_if ${target} (i32.eq (local.get $x) (i32.const ${d * 7})))`
    if (kind === 0) { open += `(block ${lbl} ${exits} (local.set $acc (i32.add (local.get $acc) (i32.const ${d}))) `; close = ')' + close }
    if (kind === 1) {
      open += `(loop ${lbl} (local.set $c (i32.add (local.get $c) (i32.const 1))) (br_if ${lbl} (i32.lt_u (local.get $c) (i32.const ${d + 2}))) ${exits} `
      close = ')' + close
    }
    if (kind === 2) { open += `(if (i32.and (local.get $x) (i32.const ${1 << (d % 5)})) (then (block ${lbl} ${exits} (local.set $acc (i32.xor (local.get $acc) (local.get $x))) `; close = ')))' + close }
  }
  const core = `(br_table $L0 $L3 $L6 $L9 $L12 $F (i32.rem_u (local.get $x) (i32.const 6)))`
  return wat(`(module
    (func $pair (param i32) (result i32 i32) (i32.add (local.get 0) (i32.const 1)) (i32.mul (local.get 0) (i32.const 3)))
    (func (export "nest") (param $x i32) (result i32) (local $acc i32) (local $c i32)
      (block $F ${open} ${core} ${close})
      (if (i32.eq (local.get $x) (i32.const 13)) (then (return (i32.const -1))))
      (br_if 0 (i32.add (local.get $acc) (local.get $c)) (i32.eq (local.get $x) (i32.const 14)))
      (drop)
      (i32.add (local.get $acc) (local.get $c)))
    (func (export "multi") (param $x i32) (result i32)
      (block (result i32) (i32.sub (call $pair (local.get $x)))))
  )`)
}

test('deep nesting, branches out of the function at every depth, multi-value: fuel = reference count', () => {
  const calls: Call[] = []
  for (let x = 0; x < 60; x++) calls.push(['nest', [x]])
  calls.push(['nest', [168]], ['multi', [5]], ['multi', [-9]])
  checkCase({ name: 'nest', wasm: nested(), calls, pages: 1 }, 20)
})

test('fuel counts wasm instructions: a straight-line function costs its instruction count', () => {
  const src = wat(`(module (func (export "f") (param i32) (result i32)
    (i32.add (i32.mul (local.get 0) (i32.const 3)) (i32.const 1))))`)
  const full = rewrite(src, { memoryLimitPages: 1 }).binary
  assert.equal(full, meter(rewrite(src, { memoryLimitPages: 1, meter: false }).binary), 'rewrite meters last')
  const ex = instantiate(full)
  // local.get, i32.const, i32.mul, i32.const, i32.add (end is free)
  assert.is(call(ex, ['f', [4]]).fuel, 5n)
  const count = wat(`(module (func (export "count") (param $n i32) (result i32) (local $i i32)
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (local.get $i)))`)
  const c = instantiate(rewrite(count, { memoryLimitPages: 1 }).binary)
  // per iteration: local.get, local.get, i32.ge_u, br_if, local.get, i32.const, i32.add, local.set, br = 9;
  // the last header entry runs the first 4 (the exit test); then local.get after the block.
  for (const n of [0, 1, 2, 10, 1000]) assert.is(call(c, ['count', [n]]).fuel, BigInt(9 * n + 4 + 1), `count(${n})`)
  assert.is(weightOf(0x0b), 0); assert.is(weightOf(0x02), 0); assert.is(weightOf(0x20), 1); assert.is(weightOf(0xfd), 1)
})

test('the C interpreter kernel is charged per VM instruction executed, not per static switch body', () => {
  const wasm = read('agents-c/build/vm.wasm')
  const { prod } = builds({ name: 'vm', wasm, calls: [] })
  const ex = instantiate(prod)
  call(ex, ['_initialize', []])
  const ops = (): bigint => ex.vm_executed() as bigint
  const o0 = ops(); const a = call(ex, ['vm_run', [1000]]); const o1 = ops(); const b = call(ex, ['vm_run', [3000]]); const o2 = ops()
  const perOp = Number(b.fuel - a.fuel) / Number((o2 - o1) - (o1 - o0))
  // the static weight of the interpreter loop (every arm of the switch, as the old meter charged it per iteration)
  const code = decodeCode(rewrite(wasm, { memoryLimitPages: 256, meter: false }).binary)
  let biggestLoop = 0
  for (const body of code.bodies) {
    const stack: Array<{ loop: boolean; w: number }> = []
    for (const x of body.instrs) {
      if (x.op === 0x02 || x.op === 0x03 || x.op === 0x04) stack.push({ loop: x.op === 0x03, w: 0 })
      if (stack.length > 0) stack[stack.length - 1].w += weightOf(x.op)
      if (x.op === 0x0b && stack.length > 0) {
        const f = stack.pop()!
        if (stack.length > 0) stack[stack.length - 1].w += f.w
        if (f.loop) biggestLoop = Math.max(biggestLoop, f.w)
      }
    }
  }
  // Measured: ~66 wasm instructions per VM instruction (clang -O2 keeps the VM stack in linear
  // memory, counts `executed` in a u64 and checks sp/pc bounds after each one); the interpreter
  // loop's static body, which the old meter charged per iteration, weighs several hundred.
  assert.ok(perOp > 10 && perOp <= 100, `fuel per executed VM instruction is ${perOp}`)
  assert.ok(perOp * 5 < biggestLoop, `${perOp} per VM instruction vs the interpreter loop's static weight ${biggestLoop}`)
})

test.run()
