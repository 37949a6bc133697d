/**
 * Fuel metering overhead (issue 7 §1: metered ÷ plain ≤ 1.15 geomean, ≤ 1.5 worst).
 *
 * Kernels, run plain (the original module) and instrumented (exact per-basic-block fuel,
 * docs/ABI.md "Fuel") alternately in this process, best of N runs of ~0.3–1 s each:
 * - alu: a tight multiply/xor hash loop;
 * - memory: a sieve of Eratosthenes with tight byte stores;
 * - recursion: naive fib, call-bound;
 * - as-program: a realistic AssemblyScript workload (incremental GC runtime: arrays, sort, Map,
 *   string building);
 * - C interpreter: the `vm` C agent's switch-dispatch bytecode VM (agents-c/agents/vm.c, built by
 *   `make agents`), the shape of SQLite's VDBE loop.
 * The AssemblyScript kernels are compiled with -O3 in this run.
 * Rows: one per kernel (value = metered ms, floor = plain ms, ratio), then the geomean and worst
 * over those five. Then the write barrier alone (runtime/fuel.ts: every store and bulk write marks
 * the dirty map): per kernel, plus a store loop (one u32 store per 3 instructions, the worst case),
 * the instrumented module ÷ the same module metered without the barrier, and their geomean (user
 * CPU time, best of 6, alternated: the rows compare two builds, not against a machine floor).
 */
import asc from 'assemblyscript/asc'
import fs from 'node:fs'
import path from 'node:path'
import type { BenchRow } from './row.ts'
import { instrument, rewrite, FUEL_GLOBAL } from '../runtime/instrument.ts'
import { meter } from '../runtime/fuel.ts'

const KERNELS = `
export function alu(n: i32): u32 {
  let h: u32 = 2166136261
  for (let i = 0; i < n; i++) { h ^= <u32>(i & 0xff); h *= 16777619 }
  return h
}
export function sieve(n: i32, reps: i32): i32 {
  const base = __heap_base
  const pages = <i32>((base + <usize>n + 0xffff) >>> 16) - memory.size()
  if (pages > 0) memory.grow(pages)
  let count = 0
  for (let r = 0; r < reps; r++) {
    memory.fill(base, 1, n)
    count = 0
    for (let i = 2; i < n; i++) {
      if (load<u8>(base + i)) { count++; if (i < 46341) for (let j = i * i; j < n; j += i) store<u8>(base + j, 0) }
    }
  }
  return count
}
export function stores(n: i32, reps: i32): u32 {
  const base = __heap_base
  const pages = <i32>((base + (<usize>n << 2) + 0xffff) >>> 16) - memory.size()
  if (pages > 0) memory.grow(pages)
  let h: u32 = 1
  for (let r = 0; r < reps; r++) for (let i = 0; i < n; i++) { h = h * 1664525 + 1013904223; store<u32>(base + (<usize>i << 2), h) }
  return h ^ load<u32>(base + 4)
}
function fib(n: i32): i32 { return n < 2 ? n : fib(n - 1) + fib(n - 2) }
export function fibRec(n: i32): i32 { return fib(n) }
`

const PROGRAM = `
const names = new Map<i32, string>()
export function program(rounds: i32): i32 {
  let h: i32 = 12345
  let acc: i32 = 0
  for (let r = 0; r < rounds; r++) {
    const arr: i32[] = []
    for (let i = 0; i < 2000; i++) { h = h * 1103515245 + 12345; arr.push((h >>> 8) & 0xfffff) }
    arr.sort((a, b) => a - b)
    let s = '{'
    for (let i = 0; i < arr.length; i += 16) {
      const k = arr[i] & 1023
      s += '"' + k.toString() + '":' + arr[i].toString(16) + ','
      if (!names.has(k)) names.set(k, s.slice(-8))
    }
    s += '}'
    acc ^= s.length + names.size
  }
  return acc
}
`

type Fn = (...a: number[]) => number
interface Inst { fn: Fn; fuel?: WebAssembly.Global }

async function compile (src: string, runtime: string): Promise<Uint8Array> {
  const r = await asc.compileString({ 'k.ts': src }, { optimizeLevel: 3, shrinkLevel: 0, noAssert: true, runtime, exportStart: '_initialize' })
  if (r.error || !r.binary) throw new Error(`asc: ${r.error?.message} ${r.stderr.toString()}`)
  return r.binary
}

/** WASI imports of the C kernel: never called by `vm_run`, present so the module links. */
const wasiStubs = new Proxy({}, { get: () => () => 0 })

function load (bin: Uint8Array, name: string): Inst {
  const imports = { env: { abort () { throw new Error('abort') } }, wasi_snapshot_preview1: wasiStubs }
  const ex = new WebAssembly.Instance(new WebAssembly.Module(bin as Uint8Array<ArrayBuffer>), imports).exports as Record<string, unknown>
  const fuel = ex[FUEL_GLOBAL] as WebAssembly.Global | undefined
  if (fuel) fuel.value = 10n ** 15n
  ;(ex._initialize as () => void)()
  return { fn: ex[name] as Fn, fuel }
}

/** User CPU time of this process, ms (less disturbed than wall time by other jobs on the machine). */
const cpuMs = (): number => process.cpuUsage().user / 1000

/**
 * Best-of-`reps` ms of plain and metered runs, alternated; also checks both give the same result.
 * `clock`: wall time (default) or {@link cpuMs}.
 */
function measure (plain: Inst, metered: Inst, args: number[], reps: number, clock: () => number = () => performance.now()): { plain: number; metered: number } {
  let bp = Infinity; let bm = Infinity
  for (let i = 0; i < reps; i++) {
    if (plain.fuel) plain.fuel.value = 10n ** 15n
    let t = clock(); const a = plain.fn(...args); bp = Math.min(bp, clock() - t)
    metered.fuel!.value = 10n ** 15n
    t = clock(); const b = metered.fn(...args); bm = Math.min(bm, clock() - t)
    if (a !== b) throw new Error(`metered result ${b} differs from plain ${a}`)
  }
  return { plain: bp, metered: bm }
}

/** Fuel overhead rows: per-kernel metered ÷ plain, the geomean and the worst. */
export async function bench (): Promise<BenchRow[]> {
  const kernels = await compile(KERNELS, 'stub')
  const program = await compile(PROGRAM, 'incremental')
  const kInst = instrument(kernels, { memoryLimitPages: 1024, file: 'kernels.wasm' }).binary
  const pInst = instrument(program, { memoryLimitPages: 1024, file: 'program.wasm' }).binary
  const vmPath = path.join(import.meta.dirname, '..', 'agents-c', 'build', 'vm.wasm')
  if (!fs.existsSync(vmPath)) throw new Error(`${vmPath} is missing: run \`make agents\` first`)
  const vm = new Uint8Array(fs.readFileSync(vmPath))
  const vmInst = instrument(vm, { memoryLimitPages: 256, file: 'vm.wasm' }).binary
  const cases: Array<[string, Uint8Array, Uint8Array, string, number[]]> = [
    ['alu loop (fnv, 4e8 iterations)', kernels, kInst, 'alu', [400_000_000]],
    ['memory loop (sieve 8e6 × 16)', kernels, kInst, 'sieve', [8_000_000, 16]],
    ['recursion (fib 39)', kernels, kInst, 'fibRec', [39]],
    ['AssemblyScript program (arrays, sort, Map, strings)', program, pInst, 'program', [1200]],
    ['C interpreter (switch VM, 2e6 rounds ≈ 3.5e7 VM ops)', vm, vmInst, 'vm_run', [2_000_000]],
  ]
  const rows: BenchRow[] = []
  const ratios: number[] = []
  for (const [name, plainBin, meteredBin, fn, args] of cases) {
    const plain = load(plainBin, fn); const metered = load(meteredBin, fn)
    measure(plain, metered, args, 1) // warm up (tier-up)
    const r = measure(plain, metered, args, 4)
    const ratio = r.metered / r.plain
    ratios.push(ratio)
    rows.push({ name: `fuel: ${name}`, value: round(r.metered), unit: 'ms', floor: round(r.plain), ratio: round(ratio), target: '≤ 1.5 (worst)', met: ratio <= 1.5 })
  }
  const geo = Math.exp(ratios.reduce((s, x) => s + Math.log(x), 0) / ratios.length)
  const worst = Math.max(...ratios)
  rows.push({ name: 'fuel: metered ÷ plain, geomean', value: round(geo), unit: '×', ratio: round(geo), target: '≤ 1.15', met: geo <= 1.15 })
  rows.push({ name: 'fuel: metered ÷ plain, worst', value: round(worst), unit: '×', ratio: round(worst), target: '≤ 1.5', met: worst <= 1.5 })
  // the write barrier alone: the instrumented module against the same module metered without it
  const noBarrier = (bin: Uint8Array, limit: number): Uint8Array => meter(rewrite(bin, { memoryLimitPages: limit, meter: false }).binary, new Set(), { dirtyMap: false })
  const kBare = noBarrier(kernels, 1024); const pBare = noBarrier(program, 1024); const vmBare = noBarrier(vm, 256)
  const barrier: number[] = []
  for (const [name, bare, full, fn, args] of [...cases.map(([n, p, f, fn, a]): [string, Uint8Array, Uint8Array, string, number[]] => [n, p === kernels ? kBare : p === program ? pBare : vmBare, f, fn, a]),
    ['store loop (4e6 u32 stores × 25)', kBare, kInst, 'stores', [4_000_000, 25]] as [string, Uint8Array, Uint8Array, string, number[]]]) {
    const a = load(bare, fn); const b = load(full, fn)
    measure(a, b, args, 1, cpuMs)
    const r = measure(a, b, args, 6, cpuMs)
    const ratio = r.metered / r.plain
    barrier.push(ratio)
    rows.push({ name: `write barrier: ${name}`, value: round(r.metered), unit: 'ms', floor: round(r.plain), ratio: round(ratio) })
  }
  const bgeo = Math.exp(barrier.reduce((s, x) => s + Math.log(x), 0) / barrier.length)
  rows.push({ name: 'write barrier: with ÷ without, geomean', value: round(bgeo), unit: '×', ratio: round(bgeo) })
  return rows
}

function round (x: number): number { return Math.round(x * 1000) / 1000 }

if (import.meta.main) for (const r of await bench()) console.log(JSON.stringify(r))
