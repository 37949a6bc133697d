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
 * When `make agents` has built the JavaScript heartbeat (agents-js/build/heartbeat.wasm, jco
 * componentize), also the JS heartbeat next to the AS one (agents-as/build/heartbeat.wasm), 50
 * ticks: fuel per tick, ms per tick, checkpoint size (non-zero pages × 64 KiB, MiB) and the time
 * to take a full checkpoint state (hash every non-zero page, ms).
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

function run (wasmPath: string, manifestPath: string, ticks = TICKS): { fuelPerTick: number; msPerTick: number; pages: number; checkpointMs: number } {
  const wasm = new Uint8Array(fs.readFileSync(wasmPath))
  const manifest = parseManifest(new Uint8Array(fs.readFileSync(manifestPath)), path.basename(manifestPath))
  const file = path.basename(wasmPath)
  const a = Agent.birth({ wasm, manifest, identity: generateIdentity(), budget: 10n ** 15n, price: 1000n, inputs: simulatedInputs('bench'), emit: () => {}, file, codeCache: { dir: path.join(BUILD, '..', '..', '.bench-cache') } })
  a.checkpointState()
  const f0 = a.fuel
  const t0 = performance.now()
  for (let i = 0; i < ticks; i++) { const r = a.runTick(); if (r?.trap) throw new Error(`${file}: tick trapped: ${r.trap}`) }
  const ms = performance.now() - t0
  a.checkpointState() // the dirty pages
  const c0 = performance.now()
  const s = a.checkpointState()
  return { fuelPerTick: Number(a.fuel - f0) / ticks, msPerTick: ms / ticks, pages: s.pages.length, checkpointMs: performance.now() - c0 }
}

/** A full checkpoint state's time: hash every non-zero page of `pages` (what a first checkpoint does), ms. */
function hashAll (wasmPath: string, manifestPath: string): number {
  const wasm = new Uint8Array(fs.readFileSync(wasmPath))
  const manifest = parseManifest(new Uint8Array(fs.readFileSync(manifestPath)), path.basename(manifestPath))
  const a = Agent.birth({ wasm, manifest, identity: generateIdentity(), budget: 10n ** 15n, price: 1000n, inputs: simulatedInputs('bench'), emit: () => {}, file: path.basename(wasmPath), codeCache: { dir: path.join(BUILD, '..', '..', '.bench-cache') } })
  const t = performance.now()
  a.checkpointState()
  return performance.now() - t
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
  const core = run(path.join(BUILD, 'ledger.wasm'), path.join(BUILD, 'ledger.manifest.json'))
  const c = run(comp, path.join(BUILD, 'ledger.manifest.json'))
  const rows: BenchRow[] = [
    { name: 'ledger component: fuel per tick', value: c.fuelPerTick, unit: 'fuel', floor: core.fuelPerTick, ratio: c.fuelPerTick / core.fuelPerTick },
    { name: 'ledger component: ms per tick', value: c.msPerTick, unit: 'ms', floor: core.msPerTick, ratio: c.msPerTick / core.msPerTick },
    { name: `ledger component: non-zero pages after ${TICKS} ticks`, value: c.pages, unit: 'pages', floor: core.pages, ratio: c.pages / core.pages },
    { name: 'ledger component: load, transpile miss vs hit', value: miss, unit: 'ms', floor: hit, ratio: miss / Math.max(hit, 0.001) },
  ]
  const js = path.join(BUILD, '..', '..', 'agents-js', 'build', 'heartbeat.wasm')
  if (!fs.existsSync(js)) return rows
  try {
    const as = run(path.join(BUILD, 'heartbeat.wasm'), path.join(BUILD, 'heartbeat.manifest.json'), 50)
    const j = run(js, js.replace(/\.wasm$/, '.manifest.json'), 50)
    const asFull = hashAll(path.join(BUILD, 'heartbeat.wasm'), path.join(BUILD, 'heartbeat.manifest.json'))
    const jFull = hashAll(js, js.replace(/\.wasm$/, '.manifest.json'))
    const mib = (p: number) => p * 65536 / 1048576
    rows.push(
      { name: 'JS heartbeat vs AS: fuel per tick', value: j.fuelPerTick, unit: 'fuel', floor: as.fuelPerTick, ratio: j.fuelPerTick / as.fuelPerTick },
      { name: 'JS heartbeat vs AS: ms per tick', value: j.msPerTick, unit: 'ms', floor: as.msPerTick, ratio: j.msPerTick / as.msPerTick },
      { name: 'JS heartbeat vs AS: checkpoint size', value: mib(j.pages), unit: 'MiB', floor: mib(as.pages), ratio: j.pages / as.pages },
      { name: 'JS heartbeat vs AS: full checkpoint state', value: jFull, unit: 'ms', floor: asFull, ratio: jFull / Math.max(asFull, 0.001) },
    )
  } catch (e) {
    console.error(`bench component: the JS heartbeat did not run (${(e as Error).message.split('\n')[0]})`)
  }
  return rows
}
