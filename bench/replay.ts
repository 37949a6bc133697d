/**
 * Replay speed (DESIGN §8): re-executed ticks per second beside live tick speed, for the same agent
 * (ledger: clock, random bytes, a log line and heap growth every tick), in the same run.
 *
 * - live, with checkpoints: `runLoop` with a checkpoint after every tick (what `igord run
 *   --interval 0ms` does with ledger), ticks/s;
 * - live, bare ticks: `Agent.runTick` alone on the same agent born again (same simulated inputs,
 *   same ticks) without checkpoints, ticks/s;
 * - live ticks + state root: the same, computing the state root after every tick as replay must
 *   for a life checkpointed every tick — the floor replay is compared with;
 * - replay: `replayChain` over the archived life (read and decode each segment, serve the recorded
 *   inputs, re-execute, compare every record, recompute every checkpoint's state root), ticks/s;
 * - verify --replay: `replayHistory`, i.e. plain verify of the archive plus replay, ticks/s.
 * For throughputs the ratio is floor / value (lower is better).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { verifyChain } from '../checkpoint/history.ts'
import { stateRoot } from '../checkpoint/state.ts'
import { replayChain, replayHistory } from '../runtime/replay.ts'
import { runLoop } from '../runtime/runner.ts'
import { startAgent } from '../runtime/session.ts'
import type { BenchRow } from './row.ts'

const TICKS = 400
const AGENTS = join(import.meta.dirname, '..', 'agents-as', 'build')

/** Runs the replay benchmark on a fresh ledger life of {@link TICKS} ticks. */
export async function bench (): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'igord-bench-replay-'))
  try {
    const settings = { dir, price: 1000n, simSeed: 'bench', emit: () => {} }
    const wasm = readFileSync(join(AGENTS, 'ledger.wasm'))
    const manifest = readFileSync(join(AGENTS, 'ledger.manifest.json'))
    const s = startAgent(settings, { name: 'ledger', wasm, wasmFile: 'ledger.wasm', manifest, manifestFile: 'ledger.manifest.json', budget: 1_000_000_000n })
    let t = performance.now()
    await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: TICKS, checkpointEveryMs: 0 })
    const live = TICKS / ((performance.now() - t) / 1000)

    // bare ticks: the same life again (same simulated inputs), no checkpoints
    const born = (sub: string) => startAgent({ ...settings, dir: join(dir, sub) }, { name: 'ledger', wasm, wasmFile: 'ledger.wasm', manifest, manifestFile: 'ledger.manifest.json', budget: 1_000_000_000n }).agent
    const bare = born('bare')
    t = performance.now()
    for (let i = 0; i < TICKS; i++) if (bare.runTick() === null) throw new Error('bench: budget ran out')
    const bareRate = TICKS / ((performance.now() - t) / 1000)
    // the floor: the same ticks with the state root computed after each, as replay checks it
    const rooted = born('rooted')
    t = performance.now()
    for (let i = 0; i < TICKS; i++) {
      if (rooted.runTick() === null) throw new Error('bench: budget ran out')
      const st = rooted.checkpointState()
      stateRoot({ pages: st.pageCount, digests: st.digests, globals: st.globals, fuel: rooted.fuel, budget: rooted.budget })
    }
    const rootedRate = TICKS / ((performance.now() - t) / 1000)

    const chain = verifyChain([dir])
    t = performance.now()
    const r = replayChain(chain)
    const replayRate = r.ticks / ((performance.now() - t) / 1000)
    if (!r.valid) throw new Error(`bench: replay diverged: ${JSON.stringify(r.divergence ?? r.error)}`)

    t = performance.now()
    const full = replayHistory([dir])
    const fullRate = full.ticks / ((performance.now() - t) / 1000)
    if (!full.valid) throw new Error('bench: verify --replay failed')

    return [
      { name: `live ledger ticks, checkpoint each (${TICKS})`, value: live, unit: 'ticks/s' },
      { name: 'live ledger ticks, bare runTick', value: bareRate, unit: 'ticks/s' },
      { name: 'live ledger ticks + state root each, no I/O', value: rootedRate, unit: 'ticks/s' },
      { name: 'replay: re-executed ledger ticks', value: replayRate, unit: 'ticks/s', floor: rootedRate, ratio: rootedRate / replayRate },
      { name: 'verify --replay (verify + replay), ledger', value: fullRate, unit: 'ticks/s', floor: live, ratio: live / fullRate },
    ]
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
