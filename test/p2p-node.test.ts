/**
 * p2p/node.ts in one process: two nodes on 127.0.0.1 move an agent back and forth 20 times; later
 * visits send only the pages that changed (never the wasm again), and the merged histories verify
 * VALID with one handoff per move. Also the same-tick handoff rule of verify.
 */
import { writeFileSync } from 'node:fs'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { verifyHistory } from '../checkpoint/history.ts'
import { IgordNode } from '../p2p/node.ts'
import { agentWasm, cleanup, tempDir } from './helpers.ts'
import { writeStateAgent } from './state-agent.ts'

test.after(cleanup)

async function twoNodes (): Promise<[IgordNode, IgordNode]> {
  const mk = () => IgordNode.start({ dir: tempDir('igord-p2p-'), listen: ['/ip4/127.0.0.1/tcp/0'], capabilities: ['clock', 'rand', 'log', 'wallet', 'identity'], price: 1000n, intervalMs: 5, note: () => {}, emit: () => {} })
  return await Promise.all([mk(), mk()]) as [IgordNode, IgordNode]
}

test('20 round trips: later visits transfer only changed pages; history VALID with 40 handoffs', async () => {
  const [a, b] = await twoNodes()
  try {
    a.run({ wasm: agentWasm('ledger'), budget: 100_000_000n, intervalMs: 5 })
    const results = []
    let [from, to] = [a, b]
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 30))
      const r = await from.migrate('ledger', [to.addrs[0]])
      assert.ok(r.confirmed)
      assert.is(to.agents.get('ledger')?.state, 'running')
      assert.not.ok(from.agents.has('ledger'))
      results.push(r)
      ;[from, to] = [to, from]
    }
    assert.is(results[0].blobsSent, results[0].pagesSent + 1, 'first visit: the wasm and every page')
    for (const r of results.slice(2)) {
      assert.is(r.blobsSent, r.pagesSent, 'later visits never resend the wasm')
      assert.ok(r.pagesSent <= r.pagesOffered)
    }
    assert.is(results.at(-1)!.epoch, 40)
  } finally { await a.shutdown(); await b.shutdown() }
  const rep = verifyHistory([a.dir, b.dir])
  assert.ok(rep.valid, JSON.stringify(rep.faults.slice(0, 3)))
  assert.is(rep.handoffs.length, 40)
  assert.is(rep.epochs.length, 41)
})

test('a 2 MiB agent: the second visit sends only the pages that changed since the first', async () => {
  const [a, b] = await twoNodes()
  try {
    const agent = writeStateAgent(tempDir(), 32)
    a.run({ wasm: agent.wasm, manifest: agent.manifest, name: 'big', budget: 100_000_000n, intervalMs: 5 })
    const visits = []
    for (const [from, to] of [[a, b], [b, a], [a, b]] as const) {
      await new Promise((r) => setTimeout(r, 30))
      visits.push(await from.migrate('big', [to.addrs[0]]))
    }
    assert.is(visits[0].pagesOffered, 32)
    assert.is(visits[0].pagesSent, 32)
    assert.ok(visits[0].blobBytes >= 32 * 65536)
    for (const v of visits.slice(1)) {
      assert.is(v.pagesSent, 1, 'the target holds every page but the one the ticks changed')
      assert.is(v.blobsSent, 1)
      assert.ok(v.bytesSent < 80 * 1024)
    }
  } finally { await a.shutdown(); await b.shutdown() }
  assert.ok(verifyHistory([a.dir, b.dir]).valid)
})

test('migration_policy.enabled false: the target refuses with that reason; the agent keeps running here', async () => {
  const [a, b] = await twoNodes()
  try {
    const agent = writeStateAgent(tempDir(), 1)
    writeFileSync(agent.manifest, JSON.stringify({ capabilities: {}, migration_policy: { enabled: false } }))
    a.run({ wasm: agent.wasm, manifest: agent.manifest, name: 'stay', budget: 100_000_000n, intervalMs: 5 })
    try { await a.migrate('stay', [b.addrs[0]]); assert.unreachable() } catch (e) {
      assert.match((e as Error).message, /the agent's manifest forbids migration \(migration_policy\.enabled is false\)/)
      assert.is((e as { exitCode: number }).exitCode, 9)
    }
    assert.is(a.agents.get('stay')?.state, 'running')
    assert.not.ok(b.agents.has('stay'))
  } finally { await a.shutdown(); await b.shutdown() }
})

test('migrate: unknown agent and bad address are request errors (exit 2)', async () => {
  const [a, b] = await twoNodes()
  try {
    try { await a.migrate('nope', [b.addrs[0]]); assert.unreachable() } catch (e) { assert.match((e as Error).message, /no agent named nope/) }
    a.run({ wasm: agentWasm('heartbeat'), budget: 1_000_000n, intervalMs: 5 })
    try { await a.migrate('heartbeat', ['nonsense']); assert.unreachable() } catch (e) { assert.is((e as { exitCode: number }).exitCode, 2) }
    assert.is(a.agents.get('heartbeat')?.state, 'running')
  } finally { await a.shutdown(); await b.shutdown() }
})

test.run()
