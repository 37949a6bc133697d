/**
 * Provider records hostile peers can make a node hold (p2p/dht-store.ts, issue 9), with real
 * libp2p peers on 127.0.0.1 (p2p/peer.ts `startPeer`, igord's DHT): three hostile peers send raw
 * `ADD_PROVIDER` messages for hundreds of keys (test/evil-peer.ts) to a node with small bounds; the
 * node never holds more than its per-peer and total bounds, refuses over its rate, says so in its
 * notes, refuses `PUT_VALUE`; and an honest peer's record, announced with kad-dht's own `provide`
 * after the flood, is stored there and found by a third peer.
 */
import { randomBytes } from 'node:crypto'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { didKey } from '../p2p/dht.ts'
import { dhtStoreOf, dialableAddrs, startPeer } from '../p2p/peer.ts'
import type { Peer, PeerOptions } from '../p2p/peer.ts'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import { kadAddProviders, kadProviders, kadPutValue } from './evil-peer.ts'
import { until } from './node-helpers.ts'

const LOCAL = ['/ip4/127.0.0.1/tcp/0']
const peers: Peer[] = []
test.after(async () => { await Promise.all(peers.map(async (p) => { await p.stop() })) })

async function start (opts?: PeerOptions): Promise<Peer> {
  const p = await startPeer(randomBytes(32), LOCAL, opts)
  peers.push(p)
  return p
}

/** `n` random 34-byte keys (sha2-256 multihashes, as kad-dht keys a CID). */
function keys (n: number): Uint8Array[] {
  return Array.from({ length: n }, () => Uint8Array.from([0x12, 0x20, ...randomBytes(32)]))
}

test('hostile peers flooding ADD_PROVIDER stay within the per-peer and total bounds; an honest record is still stored and found', async () => {
  const notes: string[] = []
  const node = await start({ dhtLimits: { maxPerPeer: 20, maxTotal: 50, ratePerPeer: 80, rateTotal: 100_000, rateWindowMs: 600_000 }, note: (l) => notes.push(l) })
  const addr = dialableAddrs(node)[0]
  const store = dhtStoreOf(node)
  const evil = [await start(), await start(), await start()]

  // 100 keys each, one peer after the other: 20 stored, 60 refused over the count, 20 over the rate
  let sent = 0
  for (const e of evil) {
    await kadAddProviders(e, addr, keys(100))
    sent += 100
    await until(() => store.stats().accepted + store.stats().refused >= sent, 60_000, `the node to handle ${sent} ADD_PROVIDER`)
    const st = store.stats()
    assert.ok(st.records <= 50, `at most 50 records in all, got ${st.records}`)
    for (const x of evil) assert.ok(store.recordsOf(x.peerId.toString()) <= 20, `at most 20 records per peer, got ${store.recordsOf(x.peerId.toString())}`)
  }
  const st = store.stats()
  assert.is(st.accepted + st.refused, 300, 'every ADD_PROVIDER reached the store')
  assert.is(st.refusedRate, 60, '20 of each peer\'s 100 over its rate of 80')
  assert.is(st.records, 50, 'the total bound is reached')
  // a full store takes the third peer's records from the biggest holders: all three end up alike
  const held = evil.map((e) => store.recordsOf(e.peerId.toString())).sort()
  assert.equal(held, [16, 17, 17])
  for (const e of evil) assert.ok(notes.some((l) => l.startsWith(`dht: refused a provider record from ${e.peerId.toString()}: `)), `a note names ${e.peerId.toString()}`)
  assert.ok(notes.length <= 8, `notes are rate limited (${notes.length} lines)`)

  // what the node answers GET_PROVIDERS with is what it holds: a newcomer's record (a flooder's dropped for it), none for an unknown key
  const late = await start()
  const [k, unknown] = keys(2)
  await kadAddProviders(late, addr, [k])
  await until(() => store.recordsOf(late.peerId.toString()) === 1, 30_000, 'the newcomer\'s record')
  assert.equal(await kadProviders(evil[0], addr, k), [late.peerId.toString()])
  assert.equal(await kadProviders(evil[0], addr, unknown), [])
  assert.is(store.stats().records, 50)

  // PUT_VALUE: refused (stream reset), nothing stored, noted
  assert.is(await kadPutValue(evil[0], addr), false)
  assert.is(store.stats().records, 50)
  assert.ok(notes.some((l) => l.startsWith('dht: refused a value (PUT_VALUE)')), notes.join('\n'))

  // an honest peer announces with kad-dht's provide; the node stores it (evicting a flooder's record); a third peer finds it
  const honest = await start()
  const seeker = await start()
  await honest.dial(node.getMultiaddrs()[0])
  await seeker.dial(node.getMultiaddrs()[0])
  const cid = await didKey('did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK')
  const table = (p: Peer) => (p.services.dht as SingleKadDHT).routingTable.size
  await until(() => table(honest) > 0 && table(seeker) > 0, 30_000, 'routing tables')
  for await (const _e of honest.services.dht.provide(cid, { signal: AbortSignal.timeout(30_000) })) { /* sent */ }
  await until(() => store.recordsOf(honest.peerId.toString()) === 1, 30_000, 'the node to store the honest record')
  assert.ok(store.stats().records <= 50)
  let found = false
  for await (const e of seeker.services.dht.findProviders(cid, { signal: AbortSignal.timeout(30_000) })) {
    if (e.name === 'PROVIDER' && e.providers.some((p) => p.id.equals(honest.peerId))) { found = true; break }
  }
  assert.ok(found, 'the seeker finds the honest provider')
})

test('the node\'s own records are not bounded by what it keeps for others', async () => {
  const node = await start({ dhtLimits: { maxPerPeer: 1, maxTotal: 1 } })
  for (let i = 0; i < 5; i++) {
    const cid = await didKey(`did:key:z6Mk${i}`)
    try { for await (const _e of node.services.dht.provide(cid, { signal: AbortSignal.timeout(300) })) { /* no peers: stored here first, then waits for a peer */ } } catch { /* timed out: no peer to send to */ }
  }
  assert.is(dhtStoreOf(node).stats().own, 5)
  assert.is(dhtStoreOf(node).stats().records, 0)
})

test.run()
