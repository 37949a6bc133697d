/**
 * Resume to first tick from a 16 MiB checkpoint (DESIGN §11: ≤ 2× the floor of read + hash + copy).
 *
 * The agent is a small module whose `agent_init` fills 16 MiB of memory with a pattern, so every
 * page is non-zero and stored in the live file. Measured: `resumeAgent` (read, decode, verify
 * signature and state root, instantiate, restore memory and globals) plus the first tick. Floor,
 * in the same run: read the file, SHA-256 every page, copy the pages into a fresh 16 MiB memory.
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import binaryen from 'binaryen'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { startAgent, resumeAgent } from '../runtime/session.ts'
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

/** Runs the resume benchmark; ms figures, best of several runs. */
export async function bench (): Promise<BenchRow[]> {
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
