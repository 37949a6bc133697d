/**
 * Unit tests of runtime/pool.ts and runtime/worker.ts: agents born, resumed and ticking in worker
 * threads; the last checkpoint handed to a migration in shared memory; the wall-clock watchdog
 * ending a runaway tick (rolled back to the last checkpoint, counted as a failure, paused after
 * `max_consecutive_failures`); a stop that does not wait for a
 * spinning tick; co-resident agents surviving their worker's termination; the main thread staying
 * responsive while agents spin; two spinning agents using two threads.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { verifyHistory } from '../checkpoint/history.ts'
import { readLive } from '../checkpoint/live.ts'
import type { TickResult } from '../runtime/agent.ts'
import { AgentHandle, formatLimit, TickPool } from '../runtime/pool.ts'
import { agentWasm, cleanup, tempDir } from './helpers.ts'

test.after(cleanup)

const settings = (dir: string) => ({ dir, price: 1000n })
function files (name: string, manifest?: string) {
  const wasmFile = agentWasm(name)
  const manifestFile = wasmFile.replace(/\.wasm$/, '.manifest.json')
  return { name, wasm: fs.readFileSync(wasmFile), wasmFile, manifest: manifest === undefined ? fs.readFileSync(manifestFile) : Buffer.from(manifest), manifestFile, budget: 10n ** 15n }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
/** `p`, or a failure naming `what` after `ms` (a broken watchdog fails the test instead of hanging it). */
async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms) })
  try { return await Promise.race([p, late]) } finally { clearTimeout(timer) }
}
async function until (pred: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = performance.now()
  while (!pred()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(10)
  }
}

test('birth and a loop in a worker: ticks, log lines, status mirror and checkpoints as in-process', async () => {
  const pool = new TickPool({ size: 1 })
  const dir = tempDir()
  try {
    const lines: string[] = []
    const h = await pool.birth(settings(dir), files('heartbeat'), (l) => lines.push(l))
    assert.ok(h instanceof AgentHandle)
    assert.match(h.did, /^did:key:z/)
    assert.is(h.status.tick, 0)
    assert.is(h.ckptPath, path.resolve(dir, 'heartbeat.ckpt'))
    const end = await within(h.run({ intervalMs: 1, maxTicks: 5 }), 60_000, 'five ticks')
    assert.equal(end, { status: 'running', ticks: 5 })
    assert.is(h.status.tick, 5)
    assert.is(h.status.lastTick, 5)
    assert.ok(lines.includes('heartbeat born') && lines.some((l) => l.startsWith('tick 5,')), lines.join('|'))
    assert.is(readLive(h.ckptPath).parsed.tick, 5)
    assert.ok(verifyHistory([dir]).valid)
  } finally { await pool.close() }
})

test('lastCheckpoint answers with its pages in shared memory: a copy of the checkpoint, untouched by later ticks', async () => {
  const pool = new TickPool({ size: 1 })
  const dir = tempDir()
  try {
    const h = await pool.birth(settings(dir), files('heartbeat'), () => {})
    assert.equal(await within(h.run({ intervalMs: 1, maxTicks: 3 }), 60_000, 'three ticks'), { status: 'running', ticks: 3 })
    const onDisk = readLive(h.ckptPath)
    const last = await h.lastCheckpoint()
    assert.is(last.parsed.tick, 3)
    assert.ok(last.pages.length > 0)
    assert.ok(last.pages.every(([, p]) => p.buffer instanceof SharedArrayBuffer), 'shared with the main thread, not cloned')
    assert.equal(last.pages.map(([i]) => i), onDisk.pages.map(([i]) => i))
    last.pages.forEach(([i, p], k) => assert.ok(Buffer.from(p).equals(onDisk.pages[k][1]), `page ${i}`))
    // the agent ticks on (its memory and image change): what was handed out stays the checkpoint's
    assert.equal(await within(h.run({ intervalMs: 1, maxTicks: 3 }), 60_000, 'three more ticks'), { status: 'running', ticks: 3 })
    const later = readLive(h.ckptPath)
    assert.is(later.parsed.tick, 6)
    assert.ok(later.pages.some(([, p], k) => !Buffer.from(p).equals(onDisk.pages[k][1])), 'the heartbeat changed a page')
    last.pages.forEach(([i, p], k) => assert.ok(Buffer.from(p).equals(onDisk.pages[k][1]), `page ${i} after more ticks`))
  } finally { await pool.close() }
})

test('a quiet host: the worker sends no log line; the ticks, checkpoints and history are as usual', async () => {
  const pool = new TickPool({ size: 1 })
  const dir = tempDir()
  try {
    const lines: string[] = []
    const h = await pool.birth({ ...settings(dir), quiet: true }, files('heartbeat'), (l) => lines.push(l))
    const end = await within(h.run({ intervalMs: 1, maxTicks: 5 }), 60_000, 'five ticks')
    assert.equal(end, { status: 'running', ticks: 5 })
    assert.equal(lines, [], 'no line crossed to the main thread')
    assert.is(readLive(h.ckptPath).parsed.tick, 5)
    assert.ok(verifyHistory([dir]).valid)
  } finally { await pool.close() }
})

test('the watchdog ends a runaway tick: rolled back to the last checkpoint, counted, paused after max_consecutive_failures', async () => {
  const pool = new TickPool({ size: 1, tickTimeoutMs: 300 })
  const dir = tempDir()
  try {
    const h = await pool.birth(settings(dir), files('spin'), () => {})
    const fails: TickResult[] = []
    const t0 = performance.now()
    const end = await within(h.run({ intervalMs: 1, onTick: (r) => { if (r.trap !== null) fails.push(r) } }), 60_000, 'the watchdog to pause the spinner')
    const ms = performance.now() - t0
    assert.is(end.status, 'paused')
    assert.match(end.reason!, /^2 consecutive failed ticks, last at tick 3: tick exceeded wall-clock limit 300 ms$/)
    assert.is(fails.length, 2, 'spin.manifest.json sets max_consecutive_failures 2')
    for (const f of fails) {
      assert.is(f.tick, 3)
      assert.match(f.trap!, /^tick exceeded wall-clock limit 300 ms \(rolled back to the checkpoint at tick 2\)$/)
    }
    assert.ok(ms >= 600 && ms < 8000, `two timeouts of 300 ms took ${ms.toFixed(0)} ms`)
    assert.is(h.status.tick, 2, 'the agent is back at its last checkpoint')
    assert.is(h.status.failures, 2)
    const live = readLive(h.ckptPath)
    assert.is(live.parsed.tick, 2)
    assert.is(live.parsed.status, 'running', 'nothing was written for the ticks that never ended')
    assert.ok(verifyHistory([dir]).valid)
    // the agent is resident again (in a fresh worker): it can still be checkpointed and inspected
    const last = await h.lastCheckpoint()
    assert.is(last.parsed.tick, 2)
  } finally { await pool.close() }
})

test('a stop does not wait for a spinning tick; the agent keeps its last checkpoint and can run again', async () => {
  const pool = new TickPool({ size: 1, tickTimeoutMs: 60_000, stopGraceMs: 100 })
  const dir = tempDir()
  try {
    const h = await pool.birth(settings(dir), files('spin'), () => {})
    const ctl = new AbortController()
    const loop = h.run({ intervalMs: 1, signal: ctl.signal })
    await until(() => h.status.tick >= 2, 10_000, 'two ticks')
    await sleep(200) // now inside tick 3, which never returns
    const t0 = performance.now()
    ctl.abort()
    const end = await within(loop, 10_000, 'the stopped loop')
    const ms = performance.now() - t0
    assert.is(end.status, 'running')
    assert.ok(ms < 1000, `the stop took ${ms.toFixed(0)} ms`)
    assert.is(h.status.tick, 2)
    assert.is(h.status.failures, 0, 'a stop is not the agent\'s failure')
    assert.is(readLive(h.ckptPath).parsed.tick, 2)
    // it is resident in a fresh worker and runs again (into the same spin)
    const ctl2 = new AbortController()
    const again = h.run({ intervalMs: 1, signal: ctl2.signal })
    await sleep(300)
    ctl2.abort()
    assert.is((await within(again, 10_000, 'the stopped loop')).status, 'running')
    assert.ok(verifyHistory([dir]).valid)
  } finally { await pool.close() }
})

test('an agent sharing the runaway\'s worker is restored from its checkpoint and goes on ticking', async () => {
  const notes: string[] = []
  const pool = new TickPool({ size: 1, tickTimeoutMs: 400, note: (l) => notes.push(l) })
  const a = tempDir(); const b = tempDir()
  try {
    const beat = await pool.birth(settings(a), files('heartbeat'), () => {})
    const spin = await pool.birth(settings(b), files('spin'), () => {})
    const ctl = new AbortController()
    const beatLoop = beat.run({ intervalMs: 20, signal: ctl.signal })
    const spinEnd = await within(spin.run({ intervalMs: 20 }), 60_000, 'the watchdog to pause the spinner')
    assert.is(spinEnd.status, 'paused')
    const t = beat.status.tick
    await until(() => beat.status.tick >= t + 3, 10_000, 'the heartbeat ticking after the kills')
    assert.equal(notes.filter((l) => l.startsWith('spin: tick exceeded wall-clock limit 400 ms at tick 3')).length, 2, notes.join('\n'))
    ctl.abort()
    assert.is((await within(beatLoop, 10_000, 'the heartbeat loop')).status, 'running')
    assert.ok(verifyHistory([a]).valid)
    assert.ok(verifyHistory([b]).valid)
  } finally { await pool.close() }
})

test('agent_init that runs too long: birth fails naming the limit; nothing is written', async () => {
  const pool = new TickPool({ size: 1, tickTimeoutMs: 300 })
  const dir = tempDir()
  try {
    const { default: binaryen } = await import('binaryen')
    const m = binaryen.parseText(`(module (memory (export "memory") 1) (global $g (mut i32) (i32.const 0))
      (func (export "agent_init") (loop $l (global.set $g (i32.add (global.get $g) (i32.const 1))) (br $l)))
      (func (export "agent_tick") (result i32) (i32.const 0)))`)
    const bytes = m.emitBinary(); m.dispose()
    fs.writeFileSync(path.join(dir, 'initspin.wasm'), bytes)
    const err = await within(pool.birth(settings(dir), { name: 'initspin', wasm: bytes, wasmFile: 'initspin.wasm', manifest: Buffer.from('{"resource_limits":{"max_fuel_per_tick":9007199254740991}}'), manifestFile: 'initspin.manifest.json', budget: 10n ** 15n }, () => {}).then(() => null, (e: Error) => e), 60_000, 'the birth to fail')
    assert.ok(err !== null)
    assert.match(err!.message, /^initspin\.wasm: birth failed: it exceeded the wall-clock limit of 300 ms$/)
    assert.is((err as { exitCode?: number }).exitCode, 4)
    assert.is((err as { code?: string }).code, 'MODULE', 'the stable code crosses the thread boundary with the exit code')
    assert.not.ok(fs.existsSync(path.join(dir, 'initspin.ckpt')))
    // the pool still works
    const h = await pool.birth(settings(dir), files('heartbeat'), () => {})
    assert.is((await within(h.run({ intervalMs: 1, maxTicks: 2 }), 60_000, 'two ticks')).ticks, 2)
  } finally { await pool.close() }
})

test('two spinning agents tick on two threads while the main thread stays responsive', async () => {
  const pool = new TickPool({ size: 2, tickTimeoutMs: 60_000, stopGraceMs: 100 })
  const a = tempDir(); const b = tempDir()
  try {
    const s1 = await pool.birth(settings(a), files('spin'), () => {})
    const s2 = await pool.birth(settings(b), files('spin'), () => {})
    assert.is(pool.threads, 2)
    const ctl = new AbortController()
    const loops = [s1.run({ intervalMs: 1, signal: ctl.signal }), s2.run({ intervalMs: 1, signal: ctl.signal })]
    await until(() => s1.status.tick >= 2 && s2.status.tick >= 2, 10_000, 'both spinning')
    await sleep(100)
    // main-thread timer latency while both spin; both threads busy; process CPU time
    let worst = 0
    const elu0 = pool.utilization()
    const cpu0 = process.cpuUsage(); const w0 = performance.now()
    for (let i = 0; i < 40; i++) { const t = performance.now(); await sleep(25); worst = Math.max(worst, performance.now() - t - 25) }
    const cpu = process.cpuUsage(cpu0); const wall = performance.now() - w0
    const elu = pool.utilization(elu0)
    const cpuMs = (cpu.user + cpu.system) / 1000
    const load = os.loadavg()[0]
    ctl.abort()
    for (const l of loops) assert.is((await within(l, 10_000, 'the stopped loops')).status, 'running')
    console.log(`  two spinners: process CPU ${cpuMs.toFixed(0)} ms over ${wall.toFixed(0)} ms wall (${(cpuMs / wall).toFixed(2)} cores), thread utilization ${elu.map((e) => e.utilization.toFixed(2)).join(' ')}, worst timer lateness ${worst.toFixed(0)} ms, load average ${load.toFixed(1)} on ${os.availableParallelism()} cores`)
    assert.ok(worst < 500, `a 25 ms timer fired up to ${worst.toFixed(0)} ms late`)
    assert.is(elu.length, 2)
    for (const e of elu) assert.ok(e.utilization > 0.9, `each worker thread is busy spinning the whole window: ${e.utilization}`)
    // Loosely: more than one core's worth of CPU over the window. Only meaningful when the machine
    // has a spare core (on a saturated machine, the threads share what the scheduler gives them).
    if (load < os.availableParallelism() - 1) assert.ok(cpuMs > wall * 1.2, `process CPU ${cpuMs.toFixed(0)} ms over ${wall.toFixed(0)} ms of wall time`)
  } finally { await pool.close() }
})

test('formatLimit', () => {
  assert.is(formatLimit(10_000), '10 s')
  assert.is(formatLimit(1500), '1.5 s')
  assert.is(formatLimit(300), '300 ms')
})

test.run()
