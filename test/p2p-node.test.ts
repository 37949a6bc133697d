/**
 * p2p/node.ts in one process: two nodes on 127.0.0.1 move an agent back and forth 20 times; later
 * visits send only the pages that changed (never the wasm again), and the merged histories verify
 * VALID with one handoff per move. Each target replays the ticks since the offered checkpoint's
 * `prev` before accepting; a source whose final checkpoint does not follow from its log is refused.
 */
import { writeFileSync } from 'node:fs'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { verifyHistory } from '../checkpoint/history.ts'
import { IgordNode } from '../p2p/node.ts'
import { agentWasm, cleanup, tempDir } from './helpers.ts'
import { faultsFrom } from './faults.ts'
import { until } from './node-helpers.ts'
import { writeStateAgent } from './state-agent.ts'

test.after(cleanup)

async function twoNodes (faultA?: string, notesB?: string[]): Promise<[IgordNode, IgordNode]> {
  const mk = (fault?: string, notes?: string[]) => IgordNode.start({ dir: tempDir('igord-p2p-'), listen: ['/ip4/127.0.0.1/tcp/0'], capabilities: ['clock', 'rand', 'log', 'wallet', 'identity'], price: 1000n, intervalMs: 5, note: (l) => notes?.push(l), emit: () => {}, ...(fault === undefined ? {} : { faults: faultsFrom(fault) }) })
  return await Promise.all([mk(faultA), mk(undefined, notesB)]) as [IgordNode, IgordNode]
}

test('20 round trips: later visits transfer only changed pages; history VALID with 40 handoffs', async () => {
  const [a, b] = await twoNodes()
  try {
    await a.run({ wasm: agentWasm('ledger'), budget: 100_000_000n, intervalMs: 5 })
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
    assert.is(results[0].blobsSent, results[0].pagesSent + results[0].basePagesSent + 1, 'first visit: the wasm, every page and the replay base\'s other pages')
    for (const r of results) assert.ok(r.replayedTicks >= 1, 'the target replayed the ticks since the offered checkpoint\'s prev')
    for (const r of results.slice(2)) {
      assert.is(r.blobsSent, r.pagesSent + r.basePagesSent, 'later visits never resend the wasm')
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
    await a.run({ wasm: agent.wasm, manifest: agent.manifest, name: 'big', budget: 100_000_000n, intervalMs: 5 })
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
      assert.ok(v.replayedTicks >= 1)
      assert.ok(v.basePagesSent <= 1, 'the replay base differs from the offered state only in that page')
      assert.is(v.blobsSent, 1 + v.basePagesSent)
      assert.ok(v.bytesSent < (80 + 64 * v.basePagesSent) * 1024)
    }
  } finally { await a.shutdown(); await b.shutdown() }
  assert.ok(verifyHistory([a.dir, b.dir]).valid)
})

test('migration_policy.enabled false: the target refuses with that reason; the agent keeps running here', async () => {
  const [a, b] = await twoNodes()
  try {
    const agent = writeStateAgent(tempDir(), 1)
    writeFileSync(agent.manifest, JSON.stringify({ capabilities: {}, migration_policy: { enabled: false } }))
    await a.run({ wasm: agent.wasm, manifest: agent.manifest, name: 'stay', budget: 100_000_000n, intervalMs: 5 })
    try { await a.migrate('stay', [b.addrs[0]]); assert.unreachable() } catch (e) {
      assert.match((e as Error).message, /the agent's manifest forbids migration \(migration_policy\.enabled is false\)/)
      assert.is((e as { exitCode: number }).exitCode, 9)
    }
    assert.is(a.agents.get('stay')?.state, 'running')
    assert.not.ok(b.agents.has('stay'))
  } finally { await a.shutdown(); await b.shutdown() }
})

test('a final checkpoint that does not follow from its log: the target refuses (replay diverges); the agent keeps running here', async () => {
  const notes: string[] = []
  const [a, b] = await twoNodes('forge-final', notes)
  try {
    await a.run({ wasm: agentWasm('ledger'), budget: 100_000_000n, intervalMs: 5 })
    await new Promise((r) => setTimeout(r, 30))
    try { await a.migrate('ledger', [b.addrs[0]]); assert.unreachable() } catch (e) {
      assert.match((e as Error).message, /replay diverges at tick \d+ \(state root\): state root differs/)
      assert.is((e as { exitCode: number }).exitCode, 9)
    }
    assert.ok(notes.some((l) => /inbound migration of ledger .*replay diverges at tick/.test(l)))
    assert.is(a.agents.get('ledger')?.state, 'running')
    assert.not.ok(b.agents.has('ledger'))
    const t = a.agents.get('ledger')!.session.agent.tick
    // its loop restarts at once; on a loaded machine the next tick may take longer than its 5 ms interval
    await until(() => a.agents.get('ledger')!.session.agent.tick > t, 10_000, 'the agent to go on ticking on the source')
  } finally { await a.shutdown(); await b.shutdown() }
})

test('migrate: unknown agent and bad address are request errors (exit 2)', async () => {
  const [a, b] = await twoNodes()
  try {
    try { await a.migrate('nope', [b.addrs[0]]); assert.unreachable() } catch (e) { assert.match((e as Error).message, /no agent named nope/) }
    await a.run({ wasm: agentWasm('heartbeat'), budget: 1_000_000n, intervalMs: 5 })
    try { await a.migrate('heartbeat', ['nonsense']); assert.unreachable() } catch (e) { assert.is((e as { exitCode: number }).exitCode, 2) }
    assert.is(a.agents.get('heartbeat')?.state, 'running')
  } finally { await a.shutdown(); await b.shutdown() }
})

test.run()
