/**
 * The JavaScript heartbeat (agents-js/build/heartbeat.wasm: `jco componentize`, StarlingMonkey)
 * next to the AssemblyScript heartbeat (agents-as/build/heartbeat.wasm), same log lines, each run
 * on simulated inputs in this process. Rows (value = JS, floor = AS, ratio):
 * - fuel per tick (the JS one is the sum over its core instances: the engine interprets the script);
 * - wall time per tick;
 * - checkpoint: bytes of the first (full) checkpoint — the `.ckpt` file, code included — and the
 *   time to write it; then the time of a checkpoint after one more tick (incremental);
 * - loading the code: the JS component's first load (jco transpile in a worker + instrumenting
 *   its 12.5 MB engine module; cached by code CID in the bench's code cache directory, so only a
 *   first `make bench` on a machine pays it) vs the AS module's.
 * No rows when `make agents` has not built the JS agent.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { generateIdentity } from '../checkpoint/identity.ts'
import { CheckpointWriter } from '../checkpoint/writer.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { Agent } from '../runtime/agent.ts'
import { peerIdFromPublicKey } from '../runtime/host.ts'
import { simulatedInputs } from '../runtime/inputs.ts'
import { writeCheckpoint } from '../runtime/runner.ts'
import type { Lineage } from '../runtime/runner.ts'
import type { BenchRow } from './row.ts'

const ROOT = path.join(import.meta.dirname, '..')
const JS = path.join(ROOT, 'agents-js', 'build', 'heartbeat.wasm')
const AS = path.join(ROOT, 'agents-as', 'build', 'heartbeat.wasm')
const TICKS = 100
/** Kept between runs (as bench/component.ts's), so a later `make bench` loads the instrumented engine from cache. */
const CACHE = path.join(ROOT, '.bench-cache')

interface Figures { loadMs: number; fuelPerTick: number; msPerTick: number; fullBytes: number; fullMs: number; incrMs: number }

function measure (file: string): Figures {
  const wasm = new Uint8Array(fs.readFileSync(file))
  const manifestBytes = new Uint8Array(fs.readFileSync(file.replace(/\.wasm$/, '.manifest.json')))
  const manifest = parseManifest(manifestBytes, path.basename(file))
  const identity = generateIdentity()
  let t = performance.now()
  const a = Agent.birth({ wasm, manifest, identity, budget: 10n ** 15n, price: 1000n, inputs: simulatedInputs('bench'), emit: () => {}, file: path.basename(file), codeCache: { dir: CACHE } })
  const loadMs = performance.now() - t
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-bench-js-'))
  try {
    const lineage: Lineage = { writer: new CheckpointWriter(dir, 'heartbeat'), identity, wasm, manifest: manifestBytes, host: peerIdFromPublicKey(generateIdentity().publicKey), epoch: 0, prev: null, lastTick: -1 }
    t = performance.now()
    writeCheckpoint(a, lineage, 'running')
    const fullMs = performance.now() - t
    const fullBytes = fs.statSync(path.join(dir, 'heartbeat.ckpt')).size
    const f0 = a.fuel
    t = performance.now()
    for (let i = 0; i < TICKS; i++) if (a.runTick()?.trap) throw new Error(`${file}: tick trapped`)
    const msPerTick = (performance.now() - t) / TICKS
    const fuelPerTick = Number(a.fuel - f0) / TICKS
    writeCheckpoint(a, lineage, 'running')
    a.runTick()
    t = performance.now()
    writeCheckpoint(a, lineage, 'running')
    const incrMs = performance.now() - t
    return { loadMs, fuelPerTick, msPerTick, fullBytes, fullMs, incrMs }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** The rows above; none when the JS agent is not built. */
export async function bench (): Promise<BenchRow[]> {
  if (!fs.existsSync(JS) || !fs.existsSync(AS)) return []
  const as = measure(AS)
  const js = measure(JS)
  const row = (name: string, unit: string, v: number, f: number): BenchRow => ({ name: `JS heartbeat vs AS: ${name}`, value: v, unit, floor: f, ratio: v / Math.max(f, 1e-9) })
  return [
    row('fuel per tick', 'fuel', js.fuelPerTick, as.fuelPerTick),
    row('ms per tick', 'ms', js.msPerTick, as.msPerTick),
    row('first checkpoint size (.ckpt, code included)', 'bytes', js.fullBytes, as.fullBytes),
    row('first (full) checkpoint write', 'ms', js.fullMs, as.fullMs),
    row('checkpoint after 1 tick', 'ms', js.incrMs, as.incrMs),
    row('load (birth; JS: transpile + instrument on a cold cache)', 'ms', js.loadMs, as.loadMs),
  ]
}
