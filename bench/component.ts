/**
 * Component agents next to core ones (issue 12): the ledger agent built as a core module
 * (agents-as/build/ledger.wasm) and, unchanged, as a component of world igor:agent/agent
 * (agents-as/build/ledger.component.wasm, `make agents`), each run 200 ticks on simulated inputs
 * in this process. Rows (value = component, floor = core, ratio):
 * - fuel per tick (the component's is the sum over its core instances);
 * - wall time per tick (jco's canonical-ABI glue is host code);
 * - checkpoint state: non-zero pages after 200 ticks;
 * - loading the code: a transpile miss (jco in a worker, instrumenting every core module) vs a
 *   memory-cache hit, both for the component (the floor is the hit).
 */
import fs from 'node:fs'
import path from 'node:path'
import { generateIdentity } from '../checkpoint/identity.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { Agent } from '../runtime/agent.ts'
import { clearComponentCache, loadComponent } from '../runtime/component.ts'
import { simulatedInputs } from '../runtime/inputs.ts'
import type { BenchRow } from './row.ts'

const BUILD = path.join(import.meta.dirname, '..', 'agents-as', 'build')
const TICKS = 200

function run (file: string): { fuelPerTick: number; msPerTick: number; pages: number } {
  const wasm = new Uint8Array(fs.readFileSync(path.join(BUILD, file)))
  const manifest = parseManifest(new Uint8Array(fs.readFileSync(path.join(BUILD, 'ledger.manifest.json'))), 'ledger.manifest.json')
  const a = Agent.birth({ wasm, manifest, identity: generateIdentity(), budget: 10n ** 15n, price: 1000n, inputs: simulatedInputs('bench'), emit: () => {}, file })
  const f0 = a.fuel
  const t0 = performance.now()
  for (let i = 0; i < TICKS; i++) if (a.runTick()?.trap) throw new Error(`${file}: tick trapped`)
  const ms = performance.now() - t0
  const s = a.checkpointState()
  return { fuelPerTick: Number(a.fuel - f0) / TICKS, msPerTick: ms / TICKS, pages: s.pages.length }
}

/** The rows above; none when `make agents` has not built the component. */
export async function bench (): Promise<BenchRow[]> {
  const comp = path.join(BUILD, 'ledger.component.wasm')
  if (!fs.existsSync(comp)) return []
  const wasm = new Uint8Array(fs.readFileSync(comp))
  clearComponentCache()
  let t = performance.now()
  loadComponent(wasm, { memoryLimitPages: 1024 })
  const miss = performance.now() - t
  t = performance.now()
  loadComponent(wasm, { memoryLimitPages: 1024 })
  const hit = performance.now() - t
  const core = run('ledger.wasm')
  const c = run('ledger.component.wasm')
  return [
    { name: 'ledger component: fuel per tick', value: c.fuelPerTick, unit: 'fuel', floor: core.fuelPerTick, ratio: c.fuelPerTick / core.fuelPerTick },
    { name: 'ledger component: ms per tick', value: c.msPerTick, unit: 'ms', floor: core.msPerTick, ratio: c.msPerTick / core.msPerTick },
    { name: `ledger component: non-zero pages after ${TICKS} ticks`, value: c.pages, unit: 'pages', floor: core.pages, ratio: c.pages / core.pages },
    { name: 'ledger component: load, transpile miss vs hit', value: miss, unit: 'ms', floor: hit, ratio: miss / Math.max(hit, 0.001) },
  ]
}
