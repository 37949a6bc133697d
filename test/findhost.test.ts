// test-timeout: 300
/**
 * `findHost` with and without confirmation (p2p/discovery.ts, docs/PROTOCOL.md "Discovery"), three
 * in-process libp2p peers on 127.0.0.1 with their kad-dht discovery: a lookup with `confirm: false`
 * takes a DHT answer that names one provider as it is (the provider is not asked
 * `/igor/host/1.0.0`); the default lookup asks it; after a handoff (old host's record still stored,
 * new host announced) a DHT answer naming both is confirmed, and the new host is found.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateIdentity } from '../checkpoint/identity.ts'
import { KadDiscovery } from '../p2p/discovery.ts'
import type { Whereabouts } from '../p2p/discovery.ts'
import { startPeer } from '../p2p/peer.ts'
import type { Peer } from '../p2p/peer.ts'

const seed = () => new Uint8Array(32).map(() => Math.floor(Math.random() * 256))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A peer with its discovery; `where` is what it says about DIDs, `asked` counts the host questions it answered. */
async function node (): Promise<{ peer: Peer; disc: KadDiscovery; where: Map<string, Whereabouts>; asked: () => number }> {
  const peer = await startPeer(seed(), ['/ip4/127.0.0.1/tcp/0'])
  const where = new Map<string, Whereabouts>()
  let asked = 0
  // `where` is asked by the node's own lookups too; these tests look up from other nodes only
  const disc = new KadDiscovery(peer, { where: (did) => { asked++; return where.get(did) ?? { state: 'unknown' } }, info: async () => ({ price: 1n, capabilities: [] }), bootstrap: [], note: () => {} })
  await disc.start()
  return { peer, disc, where, asked: () => asked }
}

async function until (pred: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now()
  while (!(await pred())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

test('confirm: false takes a one-provider DHT answer as it is; the default asks; after a handoff both records are confirmed and the new host wins', async () => {
  const nodes: Awaited<ReturnType<typeof node>>[] = []
  try {
    for (let i = 0; i < 3; i++) nodes.push(await node())
    const [a, b, c] = nodes
    for (const x of [b, c]) await x.peer.dial(a.peer.getMultiaddrs()[0])
    await c.peer.dial(b.peer.getMultiaddrs()[0])
    const did = generateIdentity().did
    a.where.set(did, { state: 'here', epoch: 1 })
    await until(async () => { await a.disc.announce(did); return (await b.disc.findHost(did, 3000)) !== null }, 60_000, 'b to find the agent on a')

    const before = a.asked()
    const fast = await b.disc.findHost(did, 5000, { confirm: false })
    assert.is(fast?.peer, a.peer.peerId.toString())
    assert.ok((fast?.addrs.length ?? 0) > 0 && fast!.addrs.every((x) => x.endsWith(`/p2p/${a.peer.peerId.toString()}`)), JSON.stringify(fast))
    assert.is(a.asked(), before, 'a was not asked')
    const sure = await b.disc.findHost(did, 5000)
    assert.is(sure?.peer, a.peer.peerId.toString())
    assert.is(a.asked(), before + 1, 'a was asked once')

    // handoff a → c: a answers moved, withdraws its record (copies stay stored on b and c), c announces
    a.where.set(did, { state: 'moved', peer: c.peer.peerId.toString(), addrs: c.peer.getMultiaddrs().map((m) => m.toString()) })
    await a.disc.withdraw(did)
    c.where.set(did, { state: 'here', epoch: 2 })
    await c.disc.announce(did)
    await until(async () => (await b.disc.findHost(did, 5000))?.peer === c.peer.peerId.toString(), 60_000, 'b to find the agent on c (confirmed)')
    // b stores both records now: its first DHT answer names two providers, so it is confirmed too
    const after = await b.disc.findHost(did, 5000, { confirm: false })
    assert.is(after?.peer, c.peer.peerId.toString(), 'two providers: asked, the host that has it now wins')
  } finally {
    for (const n of nodes) { n.disc.close(); await n.peer.stop() }
  }
})

type Node = Awaited<ReturnType<typeof node>>

/** Runs `f` with a list of the nodes it starts; stops them all afterwards. */
async function withNodes (f: (nodes: Node[]) => Promise<void>): Promise<void> {
  const nodes: Node[] = []
  try { await f(nodes) } finally {
    for (const n of nodes) { n.disc.close(); await n.peer.stop() }
  }
}

/** Node `a` announces six DIDs while it has no peer (all parked), then node `b` dials it. */
async function parkedThenDialed (nodes: Node[]): Promise<{ a: Node; b: Node; dids: string[] }> {
  const a = await node()
  nodes.push(a)
  const dids = Array.from({ length: 6 }, () => generateIdentity().did)
  for (const did of dids) { a.where.set(did, { state: 'here', epoch: 1 }); await a.disc.announce(did) }
  assert.is(a.disc.parked, dids.length, 'all parked: nobody to announce to')
  const b = await node()
  nodes.push(b)
  await b.peer.dial(a.peer.getMultiaddrs()[0])
  return { a, b, dids }
}

test('an announcement made with no peer connected waits for one (no retry timer), then reaches it', () => withNodes(async (nodes) => {
  const { a, b, dids } = await parkedThenDialed(nodes)
  await until(async () => a.disc.parked === 0, 30_000, 'the parked announcements to go out')
  for (const did of dids) await until(async () => (await b.disc.findHost(did, 3000))?.peer === a.peer.peerId.toString(), 60_000, `b to find ${did} on a`)
}))

test('a peer that connects and leaves at once: the parked announcements wait for the next one, without spinning', () => withNodes(async (nodes) => {
  const { a, b, dids } = await parkedThenDialed(nodes)
  await b.peer.stop()
  // a spinning re-park would starve this (shared) event loop: timers still fire, and every DID parks again
  const t0 = Date.now()
  await sleep(100)
  assert.ok(Date.now() - t0 < 10_000, 'the event loop turns')
  await until(async () => a.disc.parked === dids.length && a.peer.getConnections().length === 0, 60_000, 'every announcement parked again')
}))

test.run()
