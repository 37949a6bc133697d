/**
 * The write barrier and dirty map (runtime/fuel.ts `DIRTY_EXPORT`, runtime/memory.ts `track`):
 * every store, `memory.fill`, `memory.copy` and `memory.init` marks the 4 KiB chunk it writes;
 * the barrier changes neither results, traps nor fuel; a commit guided by the map sees every write
 * of wasm code and of host functions (rand_bytes, WASI clock/random), including random writes at
 * chunk boundaries and with large static offsets; a module cannot take the map's export name.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { GATE_FEATURES as FEATURES, wat } from './wat.ts'
import { ModuleError } from '../checkpoint/errors.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { Agent } from '../runtime/agent.ts'
import type { AgentSpec } from '../runtime/agent.ts'
import { DIRTY_EXPORT, DIRTY_MAP_PAGES, meter } from '../runtime/fuel.ts'
import { simulatedInputs } from '../runtime/inputs.ts'
import { FUEL_GLOBAL, fuelUsed, rewrite } from '../runtime/instrument.ts'
import { PageImage } from '../runtime/memory.ts'
import { prng } from './prng.ts'

const CHUNK = 4096

type Exports = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any
function instantiate (bin: Uint8Array): Exports {
  return new WebAssembly.Instance(new WebAssembly.Module(bin as Uint8Array<ArrayBuffer>), {}).exports as Exports
}

/** Offsets the store functions are built with: 0, unaligned, chunk edges, page size, near 2^32. */
const OFFSETS = [0, 1, 4093, 4096, 65535, 0xfffffff0]
const STORES: Array<[string, string]> = [
  ['i32.store', 'i32'], ['i32.store8', 'i32'], ['i32.store16', 'i32'], ['i64.store', 'i64'], ['i64.store8', 'i64'],
  ['i64.store16', 'i64'], ['i64.store32', 'i64'], ['f32.store', 'f32'], ['f64.store', 'f64'], ['v128.store', 'v128'],
]
const value: Record<string, string> = { i32: '(i32.const -1)', i64: '(i64.const -1)', f32: '(f32.const -1)', f64: '(f64.const -1)', v128: '(v128.const i32x4 -1 -1 -1 -1)' }

/** A module of 4 pages with one exported function per store kind × offset, plus bulk operations. */
const WRITER = wat(`(module (memory 4 4)
  (data $d "0123456789abcdefghijklmnopqrstuvwxyz")
  ${STORES.flatMap(([op, t], i) => OFFSETS.map((o, j) => `(func (export "s${i}_${j}") (param $a i32) (${op} offset=${o} (local.get $a) ${value[t]}))`)).join('\n  ')}
  (func (export "lane") (param $a i32) (v128.store32_lane offset=3 1 (local.get $a) (v128.const i32x4 -1 -1 -1 -1)))
  (func (export "fill") (param $d i32) (param $n i32) (memory.fill (local.get $d) (i32.const 255) (local.get $n)))
  (func (export "copy") (param $d i32) (param $s i32) (param $n i32) (memory.copy (local.get $d) (local.get $s) (local.get $n)))
  (func (export "init") (param $d i32) (param $s i32) (param $n i32) (memory.init $d (local.get $d) (local.get $s) (local.get $n)))
  (func (export "loop") (param $n i32) (local $i i32)
    (block $out (loop $l
      (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store (i32.and (i32.mul (local.get $i) (i32.const 4099)) (i32.const 0x3fffc)) (local.get $i))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))))`)

type Call = [string, number[]]
function callIn (ex: Exports, [fn, args]: Call): { result: unknown; fuel: bigint } {
  ex[FUEL_GLOBAL].value = 1_000_000_000n
  let result: unknown
  try { result = ex[fn](...args) } catch (e) { result = (e as Error).message }
  return { result, fuel: fuelUsed(1_000_000_000n, ex[FUEL_GLOBAL].value as bigint) }
}

/** Random writes, most of them near chunk and memory edges, some out of bounds. */
function randomCalls (seed: number, n: number): Call[] {
  const next = prng(seed)
  const r = { int: (k: number): number => Math.floor(next() * k) }
  const size = 4 * PAGE_SIZE
  const addr = (): number => {
    const k = r.int(4)
    if (k === 0) return r.int(size)
    if (k === 1) return (r.int(64) * CHUNK + r.int(33) - 16 + size) % size // around a chunk edge
    if (k === 2) return (size - r.int(40)) >>> 0 // the end of memory
    return (0x100000000 - r.int(64) * CHUNK - r.int(40)) >>> 0 // wraps with a large offset
  }
  const calls: Call[] = []
  for (let i = 0; i < n; i++) {
    const k = r.int(STORES.length + 4)
    if (k < STORES.length) calls.push([`s${k}_${r.int(OFFSETS.length)}`, [addr() | 0]])
    else if (k === STORES.length) calls.push(['lane', [addr() | 0]])
    else if (k === STORES.length + 1) calls.push(['fill', [addr() | 0, r.int(3) === 0 ? 0 : r.int(3 * CHUNK)]])
    else if (k === STORES.length + 2) calls.push(['copy', [addr() | 0, addr() | 0, r.int(2 * CHUNK)]])
    else calls.push(['init', [addr() | 0, r.int(40), r.int(40)]])
  }
  return calls
}

test('the barrier marks the chunk of every store and the range of every bulk write, and never traps', () => {
  const ex = instantiate(rewrite(WRITER, { memoryLimitPages: 4 }).binary)
  const map = new Uint8Array((ex[DIRTY_EXPORT] as WebAssembly.Memory).buffer)
  assert.is(map.length, DIRTY_MAP_PAGES * PAGE_SIZE)
  const marks = (): number[] => { const out: number[] = []; map.forEach((b, i) => { if (b !== 0) out.push(i) }); map.fill(0); return out }
  callIn(ex, ['s0_3', [2 * CHUNK - 8]]); assert.equal(marks(), [2], 'i32.store offset=4096 at 8 KiB − 8: chunk 2')
  callIn(ex, ['s3_1', [5 * CHUNK - 1]]); assert.equal(marks(), [5], 'i64.store offset=1 at 20 KiB − 1')
  callIn(ex, ['s9_0', [7 * CHUNK - 4]]); assert.equal(marks(), [6], 'a v128 store spilling over is marked at its first byte')
  callIn(ex, ['fill', [2 * CHUNK + 5, 3 * CHUNK]]); assert.equal(marks(), [2, 3, 4, 5], 'fill of 12 KiB from 8 KiB + 5')
  callIn(ex, ['fill', [100, 0]]); assert.equal(marks(), [], 'a fill of 0 bytes marks nothing')
  callIn(ex, ['copy', [10 * CHUNK, 0, 1]]); assert.equal(marks(), [10])
  callIn(ex, ['init', [CHUNK - 2, 0, 4]]); assert.equal(marks(), [0, 1])
  assert.match(String(callIn(ex, ['fill', [-16, 100]]).result), /out of bounds/, 'a fill past 2^32 traps as before')
  assert.equal(marks(), [], 'and marks nothing')
  assert.match(String(callIn(ex, ['s0_5', [64]]).result), /out of bounds/, 'a store whose address wraps traps as before')
  callIn(ex, ['loop', [1000]])
  assert.is(marks().length, 64, 'a loop of stores over 256 KiB marks its 64 chunks')
})

test('results, traps, memory and fuel are those of the module metered without the barrier', () => {
  const plain = rewrite(WRITER, { memoryLimitPages: 4, meter: false }).binary
  const withMap = instantiate(meter(plain))
  const without = instantiate(meter(plain, new Set(), { dirtyMap: false }))
  assert.not.ok(DIRTY_EXPORT in without, 'no map without the barrier')
  for (const c of [...randomCalls(7, 400), ['loop', [5000]] as Call]) {
    const a = callIn(withMap, c); const b = callIn(without, c)
    assert.equal(a, b, `${c[0]}(${c[1].join(', ')})`)
  }
  assert.equal(new Uint8Array(withMap.memory.buffer), new Uint8Array(without.memory.buffer), 'same memory')
})

test('random writes: every chunk that changed is marked, or follows a marked chunk', () => {
  for (const seed of [1, 2, 3, 4]) {
    const ex = instantiate(rewrite(WRITER, { memoryLimitPages: 4 }).binary)
    const mem = new Uint8Array(ex.memory.buffer)
    const map = new Uint8Array((ex[DIRTY_EXPORT] as WebAssembly.Memory).buffer)
    const calls = randomCalls(seed, 2000)
    for (let i = 0; i < calls.length; i += 5) {
      const before = mem.slice()
      map.fill(0)
      for (const c of calls.slice(i, i + 5)) callIn(ex, c)
      for (let k = 0; k < mem.length / CHUNK; k++) {
        if (Buffer.compare(before.subarray(k * CHUNK, (k + 1) * CHUNK), mem.subarray(k * CHUNK, (k + 1) * CHUNK)) === 0) continue
        assert.ok(map[k] === 1 || (k > 0 && map[k - 1] === 1), `seed ${seed}, calls ${i}–${i + 4}: chunk ${k} changed unmarked`)
      }
    }
  }
})

test('PageImage: the first commit after track compares everything; later ones only marked chunks and the chunk after', () => {
  const ex = instantiate(rewrite(WRITER, { memoryLimitPages: 4 }).binary)
  const mem = new Uint8Array(ex.memory.buffer)
  const map = new Uint8Array((ex[DIRTY_EXPORT] as WebAssembly.Memory).buffer)
  const check = PageImage.checkMarks
  PageImage.checkMarks = false // this test writes behind the map's back on purpose
  try {
    const img = new PageImage()
    img.track(map)
    assert.not.ok(img.tracking)
    mem[3 * PAGE_SIZE + 7] = 1 // unmarked, before the first commit: found by the whole compare
    assert.is(img.commit(mem), 1)
    assert.ok(img.tracking)
    assert.is(map.indexOf(1), -1, 'the map is cleared')
    mem[PAGE_SIZE + 9] = 1 // unmarked: a commit guided by the map does not see it (the contract)
    assert.is(img.commit(mem), 0)
    mem[PAGE_SIZE + 9] = 0
    callIn(ex, ['s9_0', [2 * PAGE_SIZE - 4]]) // v128 store over a page edge: marked at page 1's last chunk
    assert.is(img.commit(mem), 2, 'the spill into the next page is found')
    assert.equal(img.takeCheckpoint().changed, [1, 2, 3])
    img.wrote(3 * PAGE_SIZE + 4095, 2); mem[3 * PAGE_SIZE + 4096] = 9 // a host write, reported
    assert.is(img.commit(mem), 1)
    // rollback restores marked chunks
    callIn(ex, ['fill', [0, 3 * CHUNK]])
    img.rollback(mem)
    assert.is(mem.subarray(0, 3 * CHUNK).some((b) => b !== 0), false, 'rolled back')
    assert.is(img.commit(mem), 0)
    mem[5] = 1; img.distrust() // distrust: the next commit compares everything
    assert.is(img.commit(mem), 1)
  } finally { PageImage.checkMarks = check }
})

test('a module that exports __igor_dirty itself is refused', () => {
  const bin = wat(`(module (memory 1) (global $x i32 (i32.const 0)) (export "${DIRTY_EXPORT}" (global $x)) (func (export "f")))`)
  assert.throws(() => rewrite(bin, { memoryLimitPages: 1, file: 'x.wasm' }), (e: Error) => e instanceof ModuleError && /already exports "__igor_dirty"/.test(e.message))
})

test('Agent: writes by wasm code and by host functions (rand_bytes, WASI clock and random) reach the checkpoint', () => {
  const check = PageImage.checkMarks
  PageImage.checkMarks = false // what is checked here is what the checkpoint holds
  try {
    const wasm = wat(`(module
      (import "igor" "rand_bytes" (func $rand (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
      (memory (export "memory") 8 8)
      (global $t (mut i32) (i32.const 0))
      (func (export "agent_tick") (result i32)
        (global.set $t (i32.add (global.get $t) (i32.const 1)))
        (i32.store (i32.const 65536) (global.get $t))
        (drop (call $rand (i32.const ${4 * PAGE_SIZE - 3}) (i32.const 8)))
        (drop (call $clock (i32.const 0) (i64.const 1) (i32.const ${5 * PAGE_SIZE})))
        (drop (call $random (i32.const ${6 * PAGE_SIZE + 100}) (i32.const 16)))
        (i32.const 0)))`)
    const doc = { capabilities: ['clock', 'rand', 'wasi'], resource_limits: { max_memory_bytes: 8 * PAGE_SIZE, max_fuel_per_tick: 100_000, max_consecutive_failures: 3 } }
    const spec: AgentSpec = { wasm, manifest: parseManifest(new TextEncoder().encode(JSON.stringify(doc)), 't.json'), identity: generateIdentity(), budget: 10n ** 12n, price: 1n, inputs: simulatedInputs('dirty'), emit: () => {}, file: 't.wasm' }
    const a = Agent.birth(spec)
    a.checkpointState()
    const pages: Array<Map<number, string>> = []
    for (let t = 1; t <= 3; t++) {
      const r = a.runTick()
      assert.is(r?.trap, null)
      const s = a.checkpointState()
      if (t > 1) assert.equal(s.changed, [1, 3, 4, 5, 6], `tick ${t}: the tick's store, rand_bytes over a page edge, the clock and random_get`)
      pages.push(new Map(s.pages.map(([i, p]) => [i, Buffer.from(p).toString('hex')])))
    }
    for (const i of [3, 4, 5, 6]) assert.ok(pages[1].get(i) !== pages[2].get(i), `page ${i} holds the latest host write`)
  } finally { PageImage.checkMarks = check }
})

test.run()
