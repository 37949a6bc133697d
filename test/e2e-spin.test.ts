/**
 * End to end through the real CLI: an agent whose tick never returns (agents-as/agents/spin.ts:
 * two ordinary ticks, then a spin under a fuel limit of 2^53-1) cannot make the host deaf.
 * `igord run` stops on SIGINT without waiting for the tick (exit 0, last checkpoint intact, history
 * VALID); `igord node` answers the control socket and keeps other agents ticking while agents spin,
 * stops on SIGTERM, ends a runaway tick with its watchdog (rolled back, counted, paused), and runs
 * two spinners on two threads at once.
 *
 * Timing bounds are generous (the suite runs on a loaded 2-core machine); the measured figures are
 * printed so that a slow host shows in the log rather than as a flaky failure.
 */
import { readFileSync, readdirSync } from 'node:fs'
import * as os from 'node:os'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { controlRequest } from '../p2p/control.ts'
import { agentWasm, cleanup, igord, igordSpawn, inspectJson, tempDir } from './helpers.ts'
import { nodeTracker, ps, startNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const { track, killAll } = nodeTracker()
test.after.each(killAll)
test.after(cleanup)

function runOn (n: NodeProc, wasm: string, name?: string): void {
  const r = igord(['run', agentWasm(wasm), '--node', n.dir, '--interval', '20ms', ...(name === undefined ? [] : ['--name', name])])
  assert.is(r.code, 0, r.stderr)
}

/** Stops a node child with `sig`, returns its exit and the ms from the signal to the process's end. */
async function stopWith (n: NodeProc, sig: NodeJS.Signals): Promise<{ code: number | null; stderr: string; ms: number }> {
  const t0 = performance.now()
  n.live.child.kill(sig)
  const r = await n.live.done(30_000)
  return { code: r.code, stderr: r.stderr, ms: performance.now() - t0 }
}

/** CPU time (user + system, ms) of each thread of process `pid`, from /proc. */
function threadCpu (pid: number): Map<string, number> {
  const tick = 100 // USER_HZ on Linux
  const out = new Map<string, number>()
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.set(t, (Number(f[11]) + Number(f[12])) * 1000 / tick)
    } catch { /* the thread ended */ }
  }
  return out
}

test('igord run: SIGINT while the agent spins exits 0 at once; the last checkpoint is intact and the history VALID', async () => {
  const dir = tempDir()
  const live = igordSpawn(['run', agentWasm('spin'), '--dir', dir, '--interval', '10ms', '--max-fuel-per-tick', String(2 ** 53 - 1)])
  await live.waitFor((out) => out.includes('[spin] spin: spinning'), 60_000)
  await new Promise((r) => setTimeout(r, 500))
  const t0 = performance.now()
  live.child.kill('SIGINT')
  const r = await live.done(30_000)
  const ms = performance.now() - t0
  console.log(`  igord run: SIGINT while spinning → exit ${r.code} after ${ms.toFixed(0)} ms (load average ${os.loadavg()[0].toFixed(1)})`)
  assert.is(r.code, 0, r.stderr)
  assert.ok(ms < 10_000, `igord run took ${ms.toFixed(0)} ms to stop`)
  assert.match(r.stderr, /SIGINT: finishing the tick and writing a final checkpoint \(a tick still running after 250 ms is ended and rolled back\)/)
  assert.match(r.stderr, /stopped at tick 2 \(running\);.*checkpoint .*spin\.ckpt/)
  const h = inspectJson(`${dir}/spin.ckpt`)
  assert.is(h.tick, 2)
  assert.is(h.status, 'running')
  const v = igord(['verify', dir])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID: 3 checkpoints, ticks 0–2/)
  // the next resume continues from that checkpoint (and spins again: the watchdog ends it this time)
  const again = igord(['resume', `${dir}/spin.ckpt`, '--interval', '10ms', '--tick-timeout', '300ms'], 120_000)
  assert.is(again.code, 7, again.stderr)
  assert.match(again.stderr, /tick 3 failed and was rolled back: tick exceeded wall-clock limit 300 ms \(rolled back to the checkpoint at tick 2\)/)
  assert.match(again.stderr, /stopped at tick 2 \(paused: 2 consecutive failed ticks, last at tick 3: tick exceeded wall-clock limit 300 ms\)/)
  assert.is(igord(['verify', dir]).code, 0)
})

test('igord node: answers the control socket and keeps a heartbeat ticking while an agent spins; SIGTERM stops it at once', async () => {
  const n = track(await startNode({ args: ['--tick-timeout', '120s', '--max-fuel-per-tick', String(2 ** 53 - 1)] }))
  runOn(n, 'heartbeat')
  runOn(n, 'spin')
  await n.live.waitFor((out) => out.includes('[spin] spin: spinning'), 60_000)
  await new Promise((r) => setTimeout(r, 300))
  // the control socket, in-process (no CLI start-up in the figure) …
  const lat: number[] = []
  for (let i = 0; i < 5; i++) {
    const t = performance.now()
    const r = await controlRequest(n.dir, { op: 'ps' })
    lat.push(performance.now() - t)
    assert.is((r.agents as unknown[]).length, 2)
  }
  // … and through the CLI
  const t = performance.now()
  const agents = ps(n.dir)
  const cli = performance.now() - t
  assert.is(agents.find((a) => a.name === 'spin')?.status, 'running')
  const beat0 = agents.find((a) => a.name === 'heartbeat')!.tick
  await until(() => ps(n.dir).find((a) => a.name === 'heartbeat')!.tick >= beat0 + 5, 60_000, 'the heartbeat ticking beside the spinner')
  const stop = await stopWith(n, 'SIGTERM')
  console.log(`  igord node with a spinner: control-socket ps ${lat.map((x) => x.toFixed(0)).join('/')} ms, igord ps ${cli.toFixed(0)} ms, SIGTERM → exit ${stop.code} after ${stop.ms.toFixed(0)} ms (load average ${os.loadavg()[0].toFixed(1)})`)
  assert.ok(Math.max(...lat) < 3000, `the node took up to ${Math.max(...lat).toFixed(0)} ms to answer ps`)
  assert.is(stop.code, 0, stop.stderr)
  assert.ok(stop.ms < 10_000, `the node took ${stop.ms.toFixed(0)} ms to stop`)
  assert.match(stop.stderr, /SIGTERM: checkpointing every agent and stopping/)
  assert.is(inspectJson(`${n.dir}/spin.ckpt`).tick, 2, 'the spinner keeps its last good checkpoint')
  for (const name of ['spin', 'heartbeat']) {
    const v = igord(['verify', `${n.dir}/history/${name}`])
    assert.is(v.code, 0, v.stdout)
  }
})

test('igord node: the watchdog ends each runaway tick (rolled back, counted) and pauses the agent; the others go on', async () => {
  const n = track(await startNode({ args: ['--tick-timeout', '1s', '--max-fuel-per-tick', String(2 ** 53 - 1)] }))
  runOn(n, 'heartbeat')
  runOn(n, 'spin')
  await until(() => ps(n.dir).find((a) => a.name === 'spin')?.status === 'paused', 90_000, 'the spinner paused')
  await until(() => /spin: paused/.test(n.live.stderr()), 10_000, 'the pause note')
  const err = n.live.stderr()
  assert.match(err, /spin: tick exceeded wall-clock limit 1 s at tick 3; rolled back to its last checkpoint \(tick 2\), failure 1 of 2/)
  assert.match(err, /spin: tick 3 failed and was rolled back: tick exceeded wall-clock limit 1 s \(rolled back to the checkpoint at tick 2\)/)
  assert.match(err, /spin: paused \(2 consecutive failed ticks, last at tick 3: tick exceeded wall-clock limit 1 s\) at tick 2/)
  const spin = ps(n.dir).find((a) => a.name === 'spin')!
  assert.is(spin.tick, 2)
  const beat = ps(n.dir).find((a) => a.name === 'heartbeat')!.tick
  await until(() => ps(n.dir).find((a) => a.name === 'heartbeat')!.tick > beat + 3, 60_000, 'the heartbeat ticking after the pause')
  const stop = await stopWith(n, 'SIGINT')
  assert.is(stop.code, 0, stop.stderr)
  for (const name of ['spin', 'heartbeat']) assert.is(igord(['verify', `${n.dir}/history/${name}`]).code, 0)
})

test('igord node: two spinning agents tick on two threads at once', async () => {
  const n = track(await startNode({ args: ['--tick-timeout', '120s', '--tick-threads', '2', '--max-fuel-per-tick', String(2 ** 53 - 1)] }))
  runOn(n, 'spin', 'spin1')
  runOn(n, 'spin', 'spin2')
  await n.live.waitFor((out) => out.includes('[spin1] spin: spinning') && out.includes('[spin2] spin: spinning'), 60_000)
  const pid = n.live.child.pid!
  const c0 = threadCpu(pid); const w0 = performance.now()
  await new Promise((r) => setTimeout(r, 3000))
  const c1 = threadCpu(pid); const wall = performance.now() - w0
  const deltas = [...c1].map(([t, ms]) => ms - (c0.get(t) ?? 0)).sort((a, b) => b - a)
  const total = deltas.reduce((a, b) => a + b, 0)
  const load = os.loadavg()[0]
  console.log(`  two spinners: busiest threads ${deltas.slice(0, 3).map((d) => d.toFixed(0)).join('/')} ms of CPU, process ${total.toFixed(0)} ms over ${wall.toFixed(0)} ms wall (${(total / wall).toFixed(2)} cores; load average ${load.toFixed(1)} on ${os.availableParallelism()} cores)`)
  // Two threads burn CPU over the same window (each gets a fair share even on a loaded machine).
  assert.ok(deltas[1] > Math.max(100, deltas[0] * 0.3), `the second busiest thread used ${deltas[1].toFixed(0)} ms of CPU (busiest ${deltas[0].toFixed(0)} ms)`)
  // Loosely: more than one core's worth, when the machine has a core to spare.
  if (load < os.availableParallelism() - 1) assert.ok(total > wall * 1.2, `process CPU ${total.toFixed(0)} ms over ${wall.toFixed(0)} ms wall`)
  const stop = await stopWith(n, 'SIGTERM')
  assert.is(stop.code, 0, stop.stderr)
})

test.run()
