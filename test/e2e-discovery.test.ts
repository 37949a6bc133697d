// test-timeout: 600
/**
 * Discovery end to end through the real CLI (issue 9; p2p/discovery.ts): five `igord node`
 * processes on 127.0.0.1 where node 1 is the only bootstrap peer of the others. `igord peers` on
 * node 5 lists every other node with its price and capabilities; an agent born on node 3 is found
 * by `igord whereis` from node 5 through the DHT, and found on node 4 after `igord migrate`; an
 * unknown DID is "not found" (exit 11); the `nomad` agent on node 5 moves itself to node 4, the
 * cheapest peer, which node 5 knows only through discovery; node 4 restarted on a new port is
 * found again (its agents are announced when restored).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord } from './helpers.ts'
import { nodeTracker, ps, startNode, stopNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const { track, killAll } = nodeTracker()
test.after.each(killAll)
test.after(cleanup)

interface Listed { peer: string; addrs: string[]; price?: string; capabilities?: string[]; source: string }

function peers (n: NodeProc): Listed[] {
  const r = igord(['peers', '--node', n.dir, '--json'], 30_000)
  if (r.code !== 0) throw new Error(`peers failed (${r.code}): ${r.stderr}`)
  return (JSON.parse(r.stdout) as { peers: Listed[] }).peers
}

/** `igord whereis <did> --node <n> --json`: the host's peer ID, or null when not found (exit 11). */
function whereis (n: NodeProc, did: string, timeout = '5s'): string | null {
  const r = igord(['whereis', did, '--node', n.dir, '--timeout', timeout, '--json'], 30_000)
  if (r.code === 11) { assert.match(r.stderr, /not found/); return null }
  if (r.code !== 0) throw new Error(`whereis failed (${r.code}): ${r.stderr}`)
  const o = JSON.parse(r.stdout) as { peer: string; addrs: string[] }
  assert.ok(o.addrs.length > 0 && o.addrs.every((a) => a.endsWith(`/p2p/${o.peer}`)), `dialable addresses: ${o.addrs.join(' ')}`)
  return o.peer
}

test('five nodes, one bootstrap: peers lists them all with prices; whereis follows an agent across a migration; nomad moves to a peer known only through discovery', async () => {
  const n1 = track(await startNode({ args: ['--price', '3000'] }))
  const boot = ['--bootstrap', n1.addr]
  const [n2, n3, n4, n5] = await Promise.all([
    startNode({ args: ['--price', '3000', ...boot] }),
    startNode({ args: ['--price', '3000', ...boot] }),
    startNode({ args: ['--price', '1000', ...boot] }), // the cheapest
    startNode({ args: ['--price', '3000', ...boot] }),
  ].map(async (p) => track(await p)))

  // node 5 learns of nodes 2–4 through the DHT (its only configured peer is node 1)
  await until(() => {
    const list = peers(n5)
    return [n1, n2, n3, n4].every((n) => list.some((p) => p.peer === n.peer && p.price !== undefined))
  }, 60_000, 'node 5 to list nodes 1–4 with their prices')
  const list = peers(n5)
  assert.not.ok(list.some((p) => p.peer === n5.peer), 'a node does not list itself')
  const byId = new Map(list.map((p) => [p.peer, p]))
  assert.is(byId.get(n1.peer)!.source, 'bootstrap')
  for (const n of [n2, n3, n4]) {
    const p = byId.get(n.peer)!
    assert.ok(p.source === 'dht' || p.source === 'connected', `${n.peer} found by discovery (source ${p.source})`)
    assert.ok(p.capabilities!.includes('migrate'), 'capabilities listed')
    assert.ok(p.addrs.some((a) => a.endsWith(`/p2p/${n.peer}`)), 'dialable addresses')
  }
  assert.is(byId.get(n4.peer)!.price, '1000')
  assert.is(byId.get(n2.peer)!.price, '3000')
  const text = igord(['peers', '--node', n5.dir], 30_000)
  assert.is(text.code, 0, text.stderr)
  assert.match(text.stdout, /^PEER\s+SOURCE\s+PRICE/)
  assert.match(text.stdout, new RegExp(`${n4.peer}\\s+\\S+\\s+1000\\s`))

  // an agent born on node 3 is found from node 5 …
  const r = igord(['run', agentWasm('heartbeat'), '--node', n3.dir, '--interval', '50ms'])
  assert.is(r.code, 0, r.stderr)
  const did = /(did:key:\S+)/.exec(r.stdout)![1]
  await until(() => whereis(n5, did) === n3.peer, 60_000, 'whereis from node 5 to find node 3')
  assert.is(whereis(n3, did), n3.peer, 'the host answers for itself')

  // … and on node 4 once it moved there (node 3's stored records may linger: node 3 answers "moved")
  const m = igord(['migrate', 'heartbeat', '--to', n4.addr, '--node', n3.dir], 120_000)
  assert.is(m.code, 0, m.stderr)
  await until(() => whereis(n5, did) === n4.peer, 60_000, 'whereis from node 5 to find node 4')
  assert.is(whereis(n2, did), n4.peer, 'another node finds the new host too')
  assert.is(whereis(n3, did), n4.peer, 'the old host points to the new one')

  // an unknown DID: exit 11, "not found"
  assert.is(whereis(n5, 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK', '2s'), null)

  // self-migration: nomad on node 5 (price 3000) moves to node 4 (1000), which node 5 knows only through discovery
  const nr = igord(['run', agentWasm('nomad'), '--node', n5.dir, '--interval', '20ms'])
  assert.is(nr.code, 0, nr.stderr)
  const nomad = /(did:key:\S+)/.exec(nr.stdout)![1]
  await until(() => ps(n4.dir).some((x) => x.name === 'nomad' && x.status === 'running' && x.tick > 10), 60_000, 'nomad to run on node 4')
  assert.not.ok(ps(n5.dir).some((x) => x.name === 'nomad'), 'node 5 no longer hosts nomad')
  await until(() => whereis(n1, nomad) === n4.peer, 60_000, 'whereis from node 1 to find nomad on node 4')

  // restored on start: node 4 restarts (a new port) and announces both agents again
  const end4 = await stopNode(n4)
  assert.is(end4.code, 0, end4.stderr)
  const n4b = track(await startNode({ dir: n4.dir, args: ['--price', '1000', ...boot] }))
  assert.is(n4b.peer, n4.peer, 'same host key')
  await until(() => whereis(n2, nomad) === n4.peer && whereis(n5, did) === n4.peer, 60_000, 'whereis to find the restored agents on node 4')

  const ends = await Promise.all([n1, n2, n3, n4b, n5].map(stopNode))
  for (const e of ends) assert.is(e.code, 0, e.stderr)
  assert.match(ends[4].stderr, /nomad asked to move to the cheapest known peer/)
  assert.match(ends[4].stderr, new RegExp(`nomad handed off to ${n4.peer}`))
})

test.run()
