/**
 * End to end through the real CLI: `igord node` processes on 127.0.0.1, agents started with
 * `run --node`, moved with `migrate`, listed with `ps`; merged histories verified with `verify`.
 * Also: refusals (capability, a final checkpoint the target's replay contradicts), unreachable
 * peers, restarts, and a stock js-libp2p peer.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, loggedTicks } from './helpers.ts'
import { ps, startNode, stopNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const running: NodeProc[] = []
test.after.each(async () => { for (const n of running.splice(0)) if (n.live.child.exitCode === null) { n.live.child.kill('SIGKILL'); await n.live.done() } })
test.after(cleanup)

async function node (args: string[] = [], fault?: string): Promise<NodeProc> { const n = await startNode({ args, ...(fault === undefined ? {} : { fault }) }); running.push(n); return n }
function runOn (n: NodeProc, wasm = 'heartbeat'): void {
  const r = igord(['run', agentWasm(wasm), '--node', n.dir, '--interval', '20ms'])
  assert.is(r.code, 0, r.stderr)
}
function migrate (from: NodeProc, to: string, name = 'heartbeat'): { code: number | null; json: Record<string, unknown> | null; stderr: string } {
  const r = igord(['migrate', name, '--to', to, '--node', from.dir, '--json'], 60_000)
  return { code: r.code, json: r.code === 0 ? JSON.parse(r.stdout) : null, stderr: r.stderr }
}
const tickOf = (n: NodeProc, name = 'heartbeat') => ps(n.dir).find((a) => a.name === name)?.tick ?? -1

test('node: prints its dialable address, keeps host.key 0600, control socket 0600, SIGINT exits 0', async () => {
  const a = await node()
  assert.match(a.addr, /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3KooW/)
  assert.is(statSync(join(a.dir, 'host.key')).mode & 0o777, 0o600)
  assert.is(statSync(join(a.dir, 'control.sock')).mode & 0o777, 0o600)
  const end = await stopNode(a)
  assert.is(end.code, 0, end.stderr)
  assert.not.ok(existsSync(join(a.dir, 'control.sock')))
})

test('chain A → B → C → A: ticks continue without gap or repeat, merged histories VALID with epochs 0–3', async () => {
  const [a, b, c] = await Promise.all([node(), node(), node()])
  runOn(a)
  await until(() => tickOf(a) >= 5, 20_000, 'ticks on A')
  const hops: [NodeProc, NodeProc][] = [[a, b], [b, c], [c, a]]
  let epoch = 0
  for (const [from, to] of hops) {
    const m = migrate(from, to.addr)
    assert.is(m.code, 0, m.stderr)
    epoch++
    assert.is(m.json!.epoch, epoch)
    assert.is(m.json!.to, to.peer)
    assert.ok(Number(m.json!.replayedTicks) >= 1, 'the target replayed the ticks since the offered checkpoint\'s prev')
    await until(() => tickOf(to) > Number(m.json!.tick) + 3, 20_000, 'ticks on the target')
    assert.ok(!ps(from.dir).some((x) => x.name === 'heartbeat' && x.status === 'running'), 'the source no longer runs it')
  }
  const info = ps(a.dir).find((x) => x.name === 'heartbeat')!
  assert.is(info.epoch, 3)
  const ends = await Promise.all([a, b, c].map(stopNode))
  for (const e of ends) assert.is(e.code, 0, e.stderr)
  const ticks = ends.flatMap((e) => loggedTicks(e.stdout)).sort((x, y) => x - y)
  assert.equal(ticks, Array.from({ length: ticks.length }, (_, i) => i + 1), 'every tick ran exactly once')
  const v = igord(['verify', a.dir, b.dir, c.dir, '--json'])
  const rep = JSON.parse(v.stdout)
  assert.is(v.code, 0, v.stdout)
  assert.equal(rep.epochs, [0, 1, 2, 3])
  assert.is(rep.handoffs.length, 3)
  assert.equal(rep.handoffs.map((h: { to: string }) => h.to), [b.peer, c.peer, a.peer])
  assert.equal(new Set(rep.hosts), new Set([a.peer, b.peer, c.peer]))
})

test('target lacking a capability refuses with the reason; the agent keeps running on the source', async () => {
  const [a, b] = await Promise.all([node(), node(['--capabilities', 'clock'])])
  runOn(a)
  await until(() => tickOf(a) >= 2)
  const m = migrate(a, b.addr)
  assert.is(m.code, 9)
  assert.match(m.stderr, /capability "log" not offered by this node/)
  const t = tickOf(a)
  await until(() => tickOf(a) > t + 2, 20_000, 'ticks to continue on A')
  assert.equal(ps(b.dir), [])
})

test('a source whose final checkpoint does not follow from its log is refused (replay diverges); the agent keeps running there', async () => {
  const [a, b] = await Promise.all([node([], 'forge-final'), node()])
  runOn(a)
  await until(() => tickOf(a) >= 2)
  const m = migrate(a, b.addr)
  assert.is(m.code, 9, m.stderr)
  assert.match(m.stderr, /replay diverges at tick \d+ \(state root\): state root differs/)
  const t = tickOf(a)
  await until(() => tickOf(a) > t + 2, 20_000, 'ticks to continue on A')
  assert.is(ps(a.dir)[0].status, 'running')
  assert.equal(ps(b.dir), [])
})

test('unreachable or wrong peer: clear error, exit 9, agent keeps running', async () => {
  const [a, b] = await Promise.all([node(), node()])
  runOn(a)
  await until(() => tickOf(a) >= 2)
  const dead = migrate(a, `/ip4/127.0.0.1/tcp/1/p2p/${b.peer}`)
  assert.is(dead.code, 9)
  assert.match(dead.stderr, /dial \/ip4\/127\.0\.0\.1\/tcp\/1/)
  const wrong = migrate(a, b.addr.replace(b.peer, a.peer))
  assert.is(wrong.code, 9, wrong.stderr)
  const bad = migrate(a, 'not-a-multiaddr')
  assert.is(bad.code, 2)
  const t = tickOf(a)
  await until(() => tickOf(a) > t + 2, 20_000, 'ticks to continue on A')
  assert.is(ps(a.dir)[0].status, 'running')
})

test('a restarted node restores its agents and resumes their schedules', async () => {
  const a = await node()
  runOn(a)
  runOn(a, 'ledger')
  await until(() => tickOf(a) >= 3 && tickOf(a, 'ledger') >= 3)
  const end = await stopNode(a)
  assert.is(end.code, 0, end.stderr)
  const before = loggedTicks(end.stdout).filter((x, i, arr) => arr.indexOf(x) === i)
  const again = await startNode({ dir: a.dir }); running.push(again)
  const t = ps(again.dir).find((x) => x.name === 'heartbeat')!.tick
  assert.ok(t >= Math.max(...before))
  await until(() => tickOf(again) > t + 2 && tickOf(again, 'ledger') > 3)
  const end2 = await stopNode(again)
  const v = igord(['verify', join(a.dir, 'history', 'heartbeat')])
  assert.is(v.code, 0, v.stdout)
  assert.ok(loggedTicks(end2.stdout).includes(t + 1), 'the tick after the restart follows the last one')
})

test('a stock js-libp2p peer can ping and identify an igord node', async () => {
  const a = await node()
  const stock = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify(), ping: ping() } })
  try {
    const rtt = await stock.services.ping.ping(multiaddr(a.addr), { signal: AbortSignal.timeout(10_000) })
    assert.type(rtt, 'number')
    assert.ok(Number.isFinite(rtt) && rtt >= 0 && rtt < 10_000, `rtt ${rtt} ms`)
    // the ping went to the igord node itself (its peer ID), over a connection that is still open
    const conn = stock.getConnections().find((c) => c.remotePeer.toString() === a.peer)
    assert.ok(conn !== undefined, `no connection to ${a.peer}: ${stock.getConnections().map((c) => c.remotePeer.toString()).join(' ')}`)
    // the stock peer identifies the node on its own when the connection opens (identify allows one
    // inbound stream at a time, so a second, explicit identify could race it and be reset): read what
    // it learnt from its peer store, waiting (bounded) for that identify to finish
    let protocols: string[] = []
    for (const t0 = Date.now(); Date.now() - t0 < 20_000; await new Promise((r) => setTimeout(r, 50))) {
      try { protocols = (await stock.peerStore.get(conn.remotePeer)).protocols } catch { /* not in the store yet */ }
      if (protocols.includes('/igor/migrate/1.0.0')) break
    }
    assert.ok(protocols.includes('/igor/migrate/1.0.0'), `identify of the igord node: ${protocols.join(' ')}`)
    assert.ok(protocols.includes('/ipfs/ping/1.0.0'))
  } finally { await stock.stop() }
})

test.run()
