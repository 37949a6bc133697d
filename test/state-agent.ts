/**
 * A generated test agent with a chosen amount of state: at birth it fills `pages` 64 KiB pages of
 * memory with non-zero bytes, each page distinct (its index at offset 4); each tick increments one i32 at address 0 and returns 0 (idle), so
 * exactly one page changes per tick. Used by the p2p tests and the migration benchmark.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import binaryen from 'binaryen'

/**
 * Writes `<dir>/state<pages>.wasm` and its manifest (no capabilities, memory limit 128 MiB).
 * `fill` (1–255, default 7): the byte the pages are filled with at birth; another fill gives
 * another module and other pages (`<dir>/state<pages>-<fill>.wasm`), e.g. for a target that must
 * receive everything again.
 * @returns the two paths
 */
export function writeStateAgent (dir: string, pages: number, fill = 7): { wasm: string; manifest: string } {
  const wat = `(module
    (memory (export "memory") ${pages} 2048)
    (func (export "agent_init") (local $i i32)
      (memory.fill (i32.const 0) (i32.const ${fill}) (i32.const ${pages * 65536}))
      (loop $l
        (i32.store (i32.add (i32.mul (local.get $i) (i32.const 65536)) (i32.const 4)) (local.get $i))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const ${pages})))))
    (func (export "agent_tick") (result i32)
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (i32.const 0)))`
  const m = binaryen.parseText(wat)
  m.setFeatures(binaryen.Features.MVP | binaryen.Features.BulkMemory)
  const base = fill === 7 ? `state${pages}` : `state${pages}-${fill}`
  const wasm = join(dir, `${base}.wasm`)
  const manifest = join(dir, `${base}.manifest.json`)
  writeFileSync(wasm, m.emitBinary())
  m.dispose()
  writeFileSync(manifest, JSON.stringify({ capabilities: {}, resource_limits: { max_memory_bytes: 128 * 1024 * 1024 } }))
  return { wasm, manifest }
}
