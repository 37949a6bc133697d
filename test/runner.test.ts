/**
 * Unit tests of runtime/runner.ts: the tick loop (fast path, checkpoint throttling, maxTicks,
 * finish, pause after failures, budget exhaustion, abort) and writeCheckpoint's lineage, with a
 * real CheckpointWriter in a temp directory.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { CheckpointHeader } from '../checkpoint/header.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { readLive } from '../checkpoint/live.ts'
import { CheckpointWriter } from '../checkpoint/writer.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { Agent } from '../runtime/agent.ts'
import { peerIdFromPublicKey } from '../runtime/host.ts'
import { simulatedInputs } from '../runtime/inputs.ts'
import { runLoop, writeCheckpoint } from '../runtime/runner.ts'
import type { Lineage } from '../runtime/runner.ts'
import { entriesIn, segmentFiles } from './hist.ts'

function watBytes (text: string): Uint8Array {
  const m = binaryen.parseText(text)
  try { return m.emitBinary() } finally { m.dispose() }
}

/**
 * An agent counting its committed ticks in mem[0]. Each tick returns `ret`, or 2 once the count
 * reaches `finishAt`, or traps with `unreachable` when `trap` is set.
 */
function counter (o: { ret: 0 | 1; finishAt?: number; trap?: boolean }): Uint8Array {
  return watBytes(`(module
    (memory (export "memory") 1 2)
    (func (export "agent_tick") (result i32)
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      ${o.trap ? '(unreachable)' : ''}
      (if (i32.eq (i32.load (i32.const 0)) (i32.const ${o.finishAt ?? -1})) (then (return (i32.const 2))))
      (i32.const ${o.ret})))`)
}

let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-runner-')) })
test.after.each(() => { fs.rmSync(dir, { recursive: true, force: true }) })

interface Setup { agent: Agent; lineage: Lineage; genesis: string }

/** Births an agent and writes its genesis checkpoint (tick 0) into `dir` as agent `a`. */
function setup (wasm: Uint8Array, o: { budget?: bigint; price?: bigint; maxFailures?: number } = {}): Setup {
  const manifestBytes = new TextEncoder().encode(JSON.stringify({ capabilities: ['clock'], resource_limits: { max_fuel_per_tick: 1_000_000, max_consecutive_failures: o.maxFailures ?? 3 } }))
  const manifest = parseManifest(manifestBytes, 'test.manifest.json')
  const identity = generateIdentity()
  const agent = Agent.birth({ wasm, manifest, identity, budget: o.budget ?? 1_000_000_000n, price: o.price ?? 1000n, inputs: simulatedInputs('runner'), emit: () => {}, file: 'test.wasm' })
  const lineage: Lineage = { writer: new CheckpointWriter(dir, 'a'), identity, wasm, manifest: manifestBytes, host: peerIdFromPublicKey(generateIdentity().publicKey), epoch: 0, prev: null, lastTick: -1 }
  const { cid } = writeCheckpoint(agent, lineage, 'running')
  return { agent, lineage, genesis: cid }
}

/** History entries of agent `a` (the frames of its segments), in file order, as `<tick:012>-<cid>`. */
const history = () => entriesIn(path.join(dir, 'history', 'a')).map((e) => `${String(e.tick).padStart(12, '0')}-${e.cid}`)
const live = () => readLive(path.join(dir, 'a.ckpt')).parsed

function recorder () {
  const headers: CheckpointHeader[] = []; const cids: string[] = []
  return { headers, cids, onCheckpoint: (h: CheckpointHeader, c: string) => { headers.push(h); cids.push(c) } }
}

test('writeCheckpoint links to the previous CID and advances the lineage', () => {
  const { agent, lineage, genesis } = setup(counter({ ret: 0 }))
  assert.is(lineage.prev, genesis)
  assert.is(lineage.lastTick, 0)
  assert.is(live().prev, null)
  agent.runTick()
  const { header, cid } = writeCheckpoint(agent, lineage, 'running')
  assert.is(header.prev, genesis)
  assert.is(header.tick, 1)
  assert.is(lineage.prev, cid)
  assert.is(lineage.lastTick, 1)
  assert.is(live().prev, genesis)
  assert.equal(history(), [`000000000000-${genesis}`, `000000000001-${cid}`])
  assert.match(segmentFiles(path.join(dir, 'history', 'a')).map((f) => path.basename(f)).join(' '), new RegExp(`^000000000000-${genesis}-[0-9a-f]{8}\\.hist$`), 'one segment, named after its first entry')
})

test('fast path: an agent returning 1 runs many ticks, checkpoints throttled by checkpointEveryMs', async () => {
  const { agent, lineage, genesis } = setup(counter({ ret: 1 }))
  const rec = recorder()
  let ticks = 0
  const end = await runLoop(agent, lineage, { intervalMs: 60_000, maxTicks: 200, checkpointEveryMs: 3_600_000, onTick: () => { ticks++ }, onCheckpoint: rec.onCheckpoint })
  assert.equal(end, { status: 'running', ticks: 200 })
  assert.is(ticks, 200)
  assert.is(agent.tick, 200)
  assert.is(history().length, 2, 'genesis + one final checkpoint')
  assert.is(rec.headers.length, 1)
  assert.is(rec.headers[0].tick, 200)
  assert.is(rec.headers[0].prev, genesis)
  assert.is(live().tick, 200)
  assert.is(live().status, 'running')
})

test('an idle agent checkpoints after every tick; maxTicks stops with status running; prev links each header', async () => {
  const { agent, lineage, genesis } = setup(counter({ ret: 0 }))
  const rec = recorder()
  const end = await runLoop(agent, lineage, { intervalMs: 0, maxTicks: 5, onCheckpoint: rec.onCheckpoint })
  assert.equal(end, { status: 'running', ticks: 5 })
  assert.equal(rec.headers.map((h) => h.tick), [1, 2, 3, 4, 5])
  assert.ok(rec.headers.every((h) => h.status === 'running'))
  assert.equal(rec.headers.map((h) => h.prev), [genesis, ...rec.cids.slice(0, 4)])
  assert.is(history().length, 6)
  assert.equal(history().map((n) => n.slice(13)), [genesis, ...rec.cids])
  assert.is(live().tick, 5)
  assert.is(live().prev, rec.cids[3])
})

test('idleCheckpointEveryMs: idle ticks within the deadline are not checkpointed one by one; the stop writes one that holds them all; a wait that may hibernate checkpoints first', async () => {
  const { agent, lineage, genesis } = setup(counter({ ret: 0 }))
  const rec = recorder()
  const end = await runLoop(agent, lineage, { intervalMs: 2, maxTicks: 12, idleCheckpointEveryMs: 3_600_000, onCheckpoint: rec.onCheckpoint })
  assert.equal(end, { status: 'running', ticks: 12 })
  assert.equal(rec.headers.map((h) => h.tick), [12], 'one checkpoint, at the stop')
  assert.is(rec.headers[0].prev, genesis)
  assert.is(live().tick, 12)
  // an idle wait that may outlast the hibernation delay needs the last tick checkpointed
  const rec2 = recorder()
  await runLoop(agent, lineage, { intervalMs: 2, maxTicks: 3, idleCheckpointEveryMs: 3_600_000, hibernate: { afterMs: 1, hibernate: () => {} }, onCheckpoint: rec2.onCheckpoint })
  assert.equal(rec2.headers.map((h) => h.tick), [13, 14, 15])
  // 0 (the default) checkpoints every idle tick
  const rec3 = recorder()
  await runLoop(agent, lineage, { intervalMs: 0, maxTicks: 3, idleCheckpointEveryMs: 0, onCheckpoint: rec3.onCheckpoint })
  assert.equal(rec3.headers.map((h) => h.tick), [16, 17, 18])
})

test('a second loop continues the chain; no checkpoint is written when no tick ran since the last one', async () => {
  const { agent, lineage } = setup(counter({ ret: 0 }))
  await runLoop(agent, lineage, { intervalMs: 0, maxTicks: 2 })
  const last = lineage.prev
  const rec = recorder()
  const none = await runLoop(agent, lineage, { intervalMs: 0, maxTicks: 0, onCheckpoint: rec.onCheckpoint })
  assert.equal(none, { status: 'running', ticks: 0 })
  assert.is(rec.headers.length, 0)
  assert.is(history().length, 3)
  assert.is(lineage.prev, last)
  await runLoop(agent, lineage, { intervalMs: 0, maxTicks: 1, onCheckpoint: rec.onCheckpoint })
  assert.is(rec.headers[0].prev, last)
  assert.is(rec.headers[0].tick, 3)
})

test('returning 2 finishes the agent with a final checkpoint of status finished', async () => {
  const { agent, lineage } = setup(counter({ ret: 1, finishAt: 3 }))
  const rec = recorder()
  const end = await runLoop(agent, lineage, { intervalMs: 0, checkpointEveryMs: 3_600_000, onCheckpoint: rec.onCheckpoint })
  assert.equal(end, { status: 'finished', ticks: 3 })
  assert.is(rec.headers.length, 1)
  assert.is(rec.headers[0].status, 'finished')
  assert.is(live().status, 'finished')
  assert.is(live().tick, 3)
})

test("repeated traps pause the agent after the manifest's max_consecutive_failures", async () => {
  const { agent, lineage } = setup(counter({ ret: 0, trap: true }), { maxFailures: 2 })
  const rec = recorder()
  const end = await runLoop(agent, lineage, { intervalMs: 0, onCheckpoint: rec.onCheckpoint })
  assert.is(end.status, 'paused')
  assert.is(end.ticks, 2)
  assert.match(end.reason ?? '', /2 consecutive failed ticks/)
  assert.match(end.reason ?? '', /unreachable/)
  const h = live()
  assert.is(h.status, 'paused')
  assert.is(h.tick, 2)
  assert.is(h.reason, end.reason)
  // the failed ticks were checkpointed as they happened (an idle-path tick), then the pause
  assert.equal(rec.headers.map((h) => [h.tick, h.status]), [[1, 'running'], [2, 'paused']])
})

test('a success between failures resets the count: no pause', async () => {
  // fails on odd ticks: the tick number comes from the simulated clock (state is rolled back on a trap)
  const w = watBytes(`(module
    (import "igor" "clock_now" (func $now (result i64)))
    (memory (export "memory") 1)
    (func (export "agent_tick") (result i32)
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (if (i32.wrap_i64 (i64.and (i64.div_u (i64.sub (call $now) (i64.const 1700000000000000000)) (i64.const 1000000000)) (i64.const 1)))
        (then (unreachable)))
      (i32.const 0)))`)
  const { agent, lineage } = setup(w, { maxFailures: 2 })
  const end = await runLoop(agent, lineage, { intervalMs: 0, maxTicks: 8 })
  assert.equal(end, { status: 'running', ticks: 8 })
  assert.is(agent.failures, 0)
  const mem = agent.checkpointState().pages[0][1]
  assert.is(mem[0], 4, '4 of the 8 ticks failed')
})

test('budget reaching 0 ends the loop as exhausted with budget 0 in the last header', async () => {
  const { agent, lineage } = setup(counter({ ret: 1 }), { budget: 100n, price: 1_000_000n })
  const end = await runLoop(agent, lineage, { intervalMs: 0, checkpointEveryMs: 3_600_000 })
  assert.is(end.status, 'exhausted')
  assert.match(end.reason ?? '', /budget/)
  assert.ok(end.ticks > 1)
  assert.is(agent.budget, 0n)
  const h = live()
  assert.is(h.status, 'exhausted')
  assert.is(h.budget, 0n)
  assert.is(h.tick, end.ticks)
  // an agent with nothing left does not tick at all and writes nothing
  const rec = recorder()
  const again = await runLoop(agent, lineage, { intervalMs: 0, onCheckpoint: rec.onCheckpoint })
  assert.is(again.status, 'exhausted')
  assert.is(again.ticks, 0)
  assert.is(rec.headers.length, 0)
})

test('aborting the signal stops after the current tick with a final checkpoint', async () => {
  const { agent, lineage } = setup(counter({ ret: 1 }))
  const ac = new AbortController()
  const rec = recorder()
  const end = await runLoop(agent, lineage, {
    intervalMs: 0, checkpointEveryMs: 3_600_000, signal: ac.signal, onCheckpoint: rec.onCheckpoint,
    onTick: (r) => { if (r.tick === 3) ac.abort() },
  })
  assert.equal(end, { status: 'running', ticks: 3 })
  assert.equal(rec.headers.map((h) => h.tick), [3])
  assert.is(live().tick, 3)
  assert.is(history().length, 2)
})

test('aborting during the idle wait ends the loop without another tick or checkpoint', async () => {
  const { agent, lineage } = setup(counter({ ret: 0 }))
  const ac = new AbortController()
  const rec = recorder()
  const end = await runLoop(agent, lineage, {
    intervalMs: 60_000, signal: ac.signal,
    onCheckpoint: (h, c) => { rec.onCheckpoint(h, c); setImmediate(() => ac.abort()) },
  })
  assert.equal(end, { status: 'running', ticks: 1 })
  assert.equal(rec.headers.map((h) => h.tick), [1])
  assert.is(history().length, 2)
})

test('a migration request ends the loop after its checkpoint when the node accepts migrations, else it is ignored', async () => {
  // Asks to move (to the cheapest peer) on its 3rd tick.
  const wasm = watBytes(`(module
    (import "igor" "migrate_request" (func $m (param i32 i32) (result i32)))
    (memory (export "memory") 1 2)
    (func (export "agent_tick") (result i32)
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (if (i32.eq (i32.load (i32.const 0)) (i32.const 3)) (then (drop (call $m (i32.const 0) (i32.const 0)))))
      (i32.const 0)))`)
  const run = async (acceptMigration: boolean) => {
    fs.rmSync(dir, { recursive: true, force: true })
    const manifestBytes = new TextEncoder().encode(JSON.stringify({ capabilities: ['migrate'] }))
    const manifest = parseManifest(manifestBytes, 'test.manifest.json')
    const identity = generateIdentity()
    const agent = Agent.birth({ wasm, manifest, identity, budget: 1_000_000_000n, price: 1000n, inputs: simulatedInputs('runner'), emit: () => {}, file: 'm.wasm' })
    const lineage: Lineage = { writer: new CheckpointWriter(dir, 'a'), identity, wasm, manifest: manifestBytes, host: peerIdFromPublicKey(identity.publicKey), epoch: 0, prev: null, lastTick: -1 }
    writeCheckpoint(agent, lineage, 'running')
    return { end: await runLoop(agent, lineage, { intervalMs: 0, maxTicks: 6, acceptMigration }), agent }
  }
  const accepted = await run(true)
  assert.equal(accepted.end.migrate, { target: null })
  assert.is(accepted.end.status, 'running')
  assert.is(accepted.end.ticks, 3)
  assert.is(live().tick, 3, 'the requesting tick is checkpointed before the node moves the agent')
  const ignored = await run(false)
  assert.is(ignored.end.migrate, undefined)
  assert.is(ignored.end.ticks, 6)
})

test.run()
