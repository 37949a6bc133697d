/**
 * The library API (lib/index.ts) in-process: birth, tick, checkpoint, run/stop, resume, verify,
 * replay, inspect, instrument and startNode, and the IgordError codes its entry points throw.
 * Every agent and node started here is closed in a `finally`.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { birth, CheckpointError, EXIT, IgordError, inspect, instrument, LockedError, replay, resume, startNode, StorageError, verify } from '../lib/index.ts'
import type { Agent } from '../lib/index.ts'
import { agentWasm, cleanup, MIN_WAIT_MS, tempDir } from './helpers.ts'

test.after(cleanup)

/** Asserts `p` rejects with an IgordError of the given code (and exit code). */
async function rejects (p: Promise<unknown>, code: string, exitCode: number, cls: Function = IgordError): Promise<IgordError> {
  try {
    await p
  } catch (e) {
    assert.instance(e, cls)
    const err = e as IgordError
    assert.is(err.code, code, err.message)
    assert.is(err.exitCode, exitCode, err.message)
    assert.not.ok(err.message.includes('\n'), `one line: ${err.message}`)
    return err
  }
  assert.unreachable(`should have thrown ${code}`)
  throw new Error('unreachable')
}

test('birth → tick → checkpoint → run/stop → close → resume → tick; verify, replay and inspect the life', async () => {
  const dir = tempDir('igord-api-')
  const lines: string[] = []
  let agent: Agent | null = await birth({ wasm: agentWasm('heartbeat'), dir, simSeed: 'api', onLog: (l) => lines.push(l) })
  let did: string
  try {
    did = agent.did
    assert.match(did, /^did:key:z6Mk/)
    assert.match(agent.host, /^12D3KooW/)
    assert.is(agent.name, 'heartbeat')
    assert.is(agent.ckptPath, join(dir, 'heartbeat.ckpt'))
    assert.is(agent.status.tick, 0)
    assert.equal(lines, ['heartbeat born'])

    const end = await agent.tick(3)
    assert.equal(end, { status: 'running', ticks: 3 })
    assert.is(agent.status.tick, 3)
    assert.is(agent.status.lastTick, 3)
    assert.ok(agent.status.fuel > 0n)
    assert.ok(agent.status.budget < 1_000_000n, 'fuel is charged to the budget (microcents)')
    assert.ok(lines.includes('tick 3, age 3 s'), lines.join(' | '))

    const ck = await agent.checkpoint()
    assert.is(ck.tick, 3)
    assert.match(ck.cid, /^b/)

    // the lock: another process (or this one) cannot write the agent meanwhile
    await rejects(resume(agent.ckptPath), 'LOCKED', EXIT.LOCKED, LockedError)

    const loop = agent.run({ intervalMs: 20 })
    assert.ok(agent.running)
    await rejects(agent.checkpoint(), 'BAD_REQUEST', EXIT.USAGE)
    await rejects(agent.run(), 'BAD_REQUEST', EXIT.USAGE)
    const deadline = Date.now() + MIN_WAIT_MS
    while (agent.status.tick < 5 && Date.now() < deadline) await sleep(20)
    const stopped = await agent.stop()
    assert.is(stopped?.status, 'running')
    assert.is(await loop, stopped)
    assert.not.ok(agent.running)
    assert.ok(agent.status.tick >= 5, `ticked on: ${agent.status.tick}`)
    assert.is(await agent.stop(), null, 'no loop: nothing to stop')
  } finally { await agent.close() }
  await agent.close() // idempotent
  await rejects(agent.tick(), 'BAD_REQUEST', EXIT.USAGE)
  const tickAtClose = agent.status.tick

  agent = await resume(join(dir, 'heartbeat.ckpt'), { simSeed: 'api', onLog: (l) => lines.push(l) })
  try {
    assert.is(agent.did, did)
    assert.is(agent.status.tick, tickAtClose)
    await agent.tick(2)
    assert.is(agent.status.tick, tickAtClose + 2)
    assert.ok(lines.includes(`tick ${tickAtClose + 2}, age ${tickAtClose + 2} s`), 'the heap came back: the count goes on')
    await rejects(agent.tick(0), 'USAGE', EXIT.USAGE)
  } finally { await agent.close() }

  const v = await verify(dir)
  assert.ok(v.valid, JSON.stringify(v.faults))
  assert.is(v.did, did)
  assert.equal(v.ticks, [0, tickAtClose + 2])
  const r = await replay([dir])
  assert.ok(r.valid, JSON.stringify(r.divergence ?? r.error))
  assert.is(r.range?.[1], tickAtClose + 2)
  const from = await replay(dir, { from: 3 })
  assert.ok(from.valid)
  assert.is(from.from, 3)
  await rejects(replay(dir, { from: -1 }), 'USAGE', EXIT.USAGE)

  const view = await inspect(join(dir, 'heartbeat.ckpt'))
  assert.is(view.did, did)
  assert.is(view.tick, tickAtClose + 2)
  assert.is(view.status, 'running')
  assert.ok(BigInt(view.budget) < 1_000_000n)
})

test('an agent that finishes cannot run again; births refused with their codes', async () => {
  const dir = tempDir('igord-api-')
  const agent = await birth({ wasm: agentWasm('finisher'), dir, budget: 5_000_000n, price: 1n })
  try {
    const end = await agent.tick(10)
    assert.is(end.status, 'finished')
    assert.is(end.ticks, 5)
    await rejects(agent.tick(), 'BAD_REQUEST', EXIT.USAGE)
    await rejects(agent.checkpoint(), 'BAD_REQUEST', EXIT.USAGE)
  } finally { await agent.close() }
  await rejects(resume(join(dir, 'finisher.ckpt')), 'CHECKPOINT', EXIT.CHECKPOINT, CheckpointError)
  // an existing agent is never overwritten
  await rejects(birth({ wasm: agentWasm('finisher'), dir }), 'IO', EXIT.IO, StorageError)
  await rejects(birth({ wasm: agentWasm('heartbeat'), dir, name: '.bad' }), 'BAD_NAME', EXIT.USAGE)
  await rejects(birth({ wasm: readFileSync(agentWasm('heartbeat')), dir }), 'USAGE', EXIT.USAGE)
  await rejects(birth({ wasm: readFileSync(agentWasm('heartbeat')), name: 'x', dir }), 'USAGE', EXIT.USAGE)
  await rejects(birth({ wasm: join(dir, 'missing.wasm'), dir }), 'IO', EXIT.IO)
  await rejects(birth({ wasm: readFileSync(agentWasm('heartbeat')), manifest: new TextEncoder().encode('{"capabilities":["nope"]}'), name: 'm', dir }), 'MANIFEST', EXIT.MANIFEST)
  await rejects(birth({ wasm: readFileSync(agentWasm('badimport')), manifest: readFileSync(agentWasm('badimport').replace(/\.wasm$/, '.manifest.json')), name: 'b', dir }), 'MODULE', EXIT.MODULE)
  const big = new TextEncoder().encode('{"capabilities":["log"],"resource_limits":{"max_fuel_per_tick":1000000}}')
  await rejects(birth({ wasm: readFileSync(agentWasm('finisher')), manifest: big, name: 'capped', dir, caps: { maxFuelPerTick: 1000n, maxMemoryBytes: 1 << 30, maxFailures: 100, tickLimits: { events: 10_000, logBytes: 1 << 20, randomBytes: 1 << 20, eventBytes: 4 << 20 } } }), 'MANIFEST', EXIT.MANIFEST)
  // a refused birth leaves no lock behind: the name can be born after all
  const ok = await birth({ wasm: readFileSync(agentWasm('finisher')), manifest: readFileSync(agentWasm('finisher').replace(/\.wasm$/, '.manifest.json')), name: 'capped', dir })
  await ok.close()
})

test('inspect and instrument: results and error codes', async () => {
  const dir = tempDir('igord-api-')
  await rejects(inspect(join(dir, 'none.ckpt')), 'IO', EXIT.IO)
  writeFileSync(join(dir, 'junk.ckpt'), 'not a checkpoint')
  await rejects(inspect(join(dir, 'junk.ckpt')), 'CHECKPOINT', EXIT.CHECKPOINT)
  const out = await instrument(agentWasm('heartbeat'), { memoryLimitBytes: 32 * 65536 })
  assert.ok(out.binary.length > 0)
  assert.ok(out.globals.length > 0)
  assert.match(out.cid, /^b/)
  const again = await instrument(readFileSync(agentWasm('heartbeat')), { memoryLimitBytes: 32 * 65536 })
  assert.is(again.cid, out.cid)
  await rejects(instrument(agentWasm('heartbeat'), { memoryLimitBytes: 1000 }), 'USAGE', EXIT.USAGE)
  await rejects(instrument(new Uint8Array([0, 97, 115, 109, 9, 9])), 'MODULE', EXIT.MODULE)
  await rejects(instrument(out.binary), 'MODULE', EXIT.MODULE) // already instrumented
  const bad = await verify(join(dir, 'junk.ckpt'))
  assert.not.ok(bad.valid)
})

test('startNode: a node in this process runs an agent, lists it, stops it; its history verifies', async () => {
  const dir = tempDir('igord-api-node-')
  const logs: string[] = []
  const node = await startNode({ dir, tickThreads: 1, onLog: (a, l) => logs.push(`[${a}] ${l}`) })
  try {
    assert.match(node.peerId, /^12D3KooW/)
    assert.ok(node.addrs.length > 0 && node.addrs.every((a) => a.startsWith('/ip4/127.0.0.1/') && a.endsWith(`/p2p/${node.peerId}`)), node.addrs.join(' '))
    const info = await node.run({ wasm: agentWasm('heartbeat'), intervalMs: 20 })
    assert.is(info.name, 'heartbeat')
    const deadline = Date.now() + MIN_WAIT_MS
    while (!(node.list()[0]?.tick >= 3) && Date.now() < deadline) await sleep(50)
    assert.ok(node.list()[0].tick >= 3, JSON.stringify(node.list()))
    const stopped = await node.stopAgent('heartbeat')
    assert.is(stopped.status, 'stopped')
    assert.ok(logs.some((l) => l.startsWith('[heartbeat] tick 3,')), logs.join(' | '))
    await rejects(node.stopAgent('nobody'), 'BAD_REQUEST', EXIT.USAGE)
  } finally { await node.close() }
  await node.close() // idempotent
  const v = await verify(dir)
  assert.ok(v.valid, JSON.stringify(v.faults))
  await rejects(startNode({ dir, capabilities: ['nope'] }), 'USAGE', EXIT.USAGE)
})

test.run()
