/**
 * Resume to first tick from a 16 MiB checkpoint (DESIGN §11: ≤ 2× the floor of read + hash + copy),
 * and of a 1.3 MB module (issue 10: ≤ 100 ms when its instrumented code is cached on disk).
 *
 * The agent is a small module whose `agent_init` fills 16 MiB of memory with a pattern, so every
 * page is non-zero and stored in the live file. Measured: `resumeAgent` (read, decode, verify
 * signature and state root, instantiate, restore memory and globals) plus the first tick. Floor,
 * in the same run: read the file, SHA-256 every page, copy the pages into a fresh 16 MiB memory.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import binaryen from 'binaryen'
import { codeCacheDir } from '../checkpoint/layout.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { clearMemoryCache } from '../runtime/code-cache.ts'
import { startAgent, resumeAgent } from '../runtime/session.ts'
import { bigCodeModule } from './bigcode.ts'
import type { BenchRow } from './row.ts'

const PAGES = 256 // 16 MiB

/** A module with 16 MiB of memory filled by agent_init; agent_tick bumps one byte. */
export function bigMemoryAgent (pages = PAGES): Uint8Array {
  const wat = `(module
    (memory (export "memory") ${pages})
    (func (export "agent_init")
      (local $i i32)
      (loop $l
        (i32.store (local.get $i) (i32.xor (local.get $i) (i32.const 0x5bd1e995)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const ${pages * PAGE_SIZE})))))
    (func (export "agent_tick") (result i32)
      (i32.store8 (i32.const 0) (i32.add (i32.load8_u (i32.const 0)) (i32.const 1)))
      (i32.const 0)))`
  const m = binaryen.parseText(wat)
  const out = m.emitBinary()
  m.dispose()
  return out
}

const MANIFEST = new TextEncoder().encode(JSON.stringify({ capabilities: {}, resource_limits: { max_memory_bytes: 64 * 1024 * 1024, max_fuel_per_tick: 100_000_000_000 } }))

function best (n: number, f: () => void): number {
  let min = Infinity
  for (let i = 0; i < n; i++) {
    const t = performance.now(); f(); min = Math.min(min, performance.now() - t)
  }
  return min
}

/**
 * Runs `script` (ES module text; `a`, `b` are its two arguments; it sets `work`, ms) in a fresh
 * Node process. Returns `work`, the ms from the process's start to the end, and whether it loaded
 * binaryen.
 */
function inChild (script: string, args: string[]): { work: number; total: number; binaryen: boolean } {
  const head = `import { registerHooks } from 'node:module'
let binaryen = false
registerHooks({ resolve (s, c, next) { if (s === 'binaryen') binaryen = true; return next(s, c) } })
const [a, b] = process.argv.slice(1)
let work = 0
`
  const tail = '\nconsole.log(JSON.stringify({ work, total: performance.now(), binaryen }))'
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', head + script + tail, ...args], { encoding: 'utf8', timeout: 120_000 })
  return JSON.parse(out.trim().split('\n').at(-1)!) as { work: number; total: number; binaryen: boolean }
}

/**
 * A 1.3 MB module (bench/bigcode.ts) with its instrumented code cached on disk: resume to first
 * tick in a fresh process (after its imports: read and verify the live file, load the cached code,
 * compile, instantiate, restore, tick) against the floor of a fresh process compiling the
 * instrumented bytes (`WebAssembly.compile`); the whole process (Node start, imports) beside a
 * fresh process that only reads and compiles them; and cold, instrumenting (binaryen already loaded).
 */
async function bigCode (): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'igord-bench-code-'))
  try {
    const wasm = bigCodeModule()
    const mb = (wasm.length / 1e6).toFixed(1)
    const settings = { dir, price: 1000n, emit: () => {} }
    startAgent(settings, { name: 'big', wasm, wasmFile: 'big.wasm', manifest: MANIFEST, manifestFile: 'big.manifest.json', budget: 1_000_000_000n })
    const file = join(dir, 'big.ckpt')
    const cacheDir = codeCacheDir(dir)
    const entry = join(cacheDir, readdirSync(cacheDir)[0])
    const session = join(new URL('..', import.meta.url).pathname, 'runtime/session.ts')
    const runs = Array.from({ length: 3 }, () => inChild(`const { resumeAgent } = await import(${JSON.stringify(session)})
const t = performance.now()
const s = resumeAgent({ dir: b, price: 1000n, emit: () => {} }, a)
if (s.agent.runTick().trap !== null) throw new Error('first tick failed')
work = performance.now() - t`, [file, dir]))
    const floors = Array.from({ length: 3 }, () => inChild(`const fs = await import('node:fs')
const t = performance.now()
const bytes = fs.readFileSync(a)
await WebAssembly.compile(bytes.subarray(8 + bytes.readUInt32LE(4)))
work = performance.now() - t`, [entry, dir]))
    const cached = Math.min(...runs.map((r) => r.work))
    const floor = Math.min(...floors.map((r) => r.work))
    const total = Math.min(...runs.map((r) => r.total))
    const totalFloor = Math.min(...floors.map((r) => r.total))
    const loaded = runs.some((r) => r.binaryen)
    const firstTick = () => {
      const s = resumeAgent(settings, file)
      const r = s.agent.runTick()
      if (r === null || r.trap !== null) throw new Error('first tick failed')
    }
    const cold = best(1, () => { clearMemoryCache(); rmSync(cacheDir, { recursive: true, force: true }); firstTick() })
    return [
      { name: `resume to first tick, ${mb} MB code, cached`, value: cached, unit: 'ms', floor, ratio: cached / floor, target: `≤ 100 ms, no binaryen (floor: compile)${loaded ? ' — LOADED binaryen' : ''}`, met: cached <= 100 && !loaded },
      { name: '  same, whole fresh process', value: total, unit: 'ms', floor: totalFloor, ratio: total / totalFloor, target: 'informational (floor: node + read + compile)' },
      { name: `resume to first tick, ${mb} MB code, cold`, value: cold, unit: 'ms', floor, ratio: cold / floor, target: 'informational (instrumenting)' },
    ]
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Runs the resume benchmark; ms figures, best of several runs. */
export async function bench (): Promise<BenchRow[]> {
  return [...await bigMemory(), ...await bigCode()]
}

async function bigMemory (): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'igord-bench-resume-'))
  try {
    const settings = { dir, price: 1000n, emit: () => {} }
    startAgent(settings, { name: 'big', wasm: bigMemoryAgent(), wasmFile: 'big.wasm', manifest: MANIFEST, manifestFile: 'big.manifest.json', budget: 1_000_000_000n })
    const file = join(dir, 'big.ckpt')
    const resume = best(7, () => {
      const s = resumeAgent(settings, file)
      const r = s.agent.runTick()
      if (r === null || r.trap !== null) throw new Error('first tick failed')
    })
    const floor = best(7, () => {
      const bytes = readFileSync(file)
      const mem = new Uint8Array(PAGES * PAGE_SIZE)
      for (let i = 0; i < PAGES; i++) {
        const page = bytes.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)
        createHash('sha256').update(page).digest()
        mem.set(page, i * PAGE_SIZE)
      }
    })
    const ratio = resume / floor
    return [{ name: 'resume to first tick, 16 MiB', value: resume, unit: 'ms', floor, ratio, target: '≤ 2× floor (read + hash + copy)', met: ratio <= 2 }]
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
