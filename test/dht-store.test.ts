/**
 * The bounded store of igord's kad-dht (p2p/dht-store.ts, docs/PROTOCOL.md "Provider records a
 * node keeps"), driven as kad-dht drives it: one `put` per provider record, keys
 * `/igor-dht/provider/<multihash>/<peer>`, `delete` when a record expires. Per-peer, per-key and
 * total bounds, the rate limit, this node's own records, PUT_VALUE refused, notes rate limited.
 */
import { Key } from 'interface-datastore'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { DEFAULT_DHT_LIMITS, BoundedDhtStore, DhtRefusal, MAX_NOTE_LINES } from '../p2p/dht-store.ts'
import type { DhtLimits } from '../p2p/dht-store.ts'

const SELF = '12D3KooWSelf'
const T = new Uint8Array([0x80, 0x01])
const key = (cid: string, peer: string): Key => new Key(`/igor-dht/provider/${cid}/${peer}`)

/** A store with `limits` over roomy defaults (no rate limit unless asked), and the lines it noted. */
function store (limits: Partial<DhtLimits>): { s: BoundedDhtStore; notes: string[] } {
  const notes: string[] = []
  const s = new BoundedDhtStore(SELF, '/igor-dht', { ratePerPeer: 1e9, rateTotal: 1e9, ...limits }, (l) => notes.push(l))
  return { s, notes }
}

/** Providers of `cid` as kad-dht reads them (a prefix query). */
async function providersOf (s: BoundedDhtStore, cid: string): Promise<string[]> {
  const out: string[] = []
  for await (const e of s.query({ prefix: `/igor-dht/provider/${cid}` })) out.push(e.key.toString().split('/').pop()!)
  return out
}

test('defaults: 1024 per peer, 16384 in total, 64 per key, 256 per peer and 2048 in all per 10 s', () => {
  assert.equal(DEFAULT_DHT_LIMITS, { maxPerPeer: 1024, maxTotal: 16_384, maxPerKey: 64, ratePerPeer: 256, rateTotal: 2048, rateWindowMs: 10_000 })
})

test('per peer: beyond maxPerPeer a new record is refused; refreshes pass; a deleted record frees its place', async () => {
  const { s, notes } = store({ maxPerPeer: 5 })
  for (let i = 0; i < 5; i++) s.put(key(`k${i}`, 'peerA'), T)
  assert.throws(() => s.put(key('k5', 'peerA'), T), (e: Error) => e instanceof DhtRefusal && /from peerA: this peer holds 5 records here \(the limit\)/.test(e.message))
  s.put(key('k0', 'peerA'), T) // a refresh
  s.put(key('k5', 'peerB'), T) // another peer
  assert.is(s.recordsOf('peerA'), 5)
  assert.is(s.has(key('k5', 'peerA')), false)
  s.delete(key('k1', 'peerA'))
  s.put(key('k5', 'peerA'), T)
  assert.is(s.recordsOf('peerA'), 5)
  assert.equal(s.stats(), { records: 6, peers: 2, own: 0, accepted: 8, refused: 1, refusedRate: 0, dropped: 0 })
  assert.is(notes.length, 1)
  assert.match(notes[0], /^dht: refused a provider record from peerA: this peer holds 5 records here/)
})

test('per key: beyond maxPerKey the key\'s oldest provider record is dropped', async () => {
  const { s } = store({ maxPerKey: 3 })
  for (const p of ['p1', 'p2', 'p3', 'p4']) s.put(key('hot', p), T)
  assert.equal((await providersOf(s, 'hot')).sort(), ['p2', 'p3', 'p4'])
  s.put(key('hot', 'p2'), T) // refresh: p2 becomes the newest
  s.put(key('hot', 'p5'), T)
  assert.equal((await providersOf(s, 'hot')).sort(), ['p2', 'p4', 'p5'])
  assert.is(s.stats().records, 3)
  assert.is(s.stats().dropped, 2)
})

test('total: a full store drops the oldest record of the peer holding the most for a smaller one, and refuses when all hold alike', async () => {
  const { s } = store({ maxTotal: 6, maxPerPeer: 100 })
  for (let i = 0; i < 6; i++) s.put(key(`a${i}`, 'big'), T)
  s.put(key('b0', 'small'), T)
  assert.is(s.recordsOf('big'), 5)
  assert.is(s.recordsOf('small'), 1)
  assert.is(s.has(key('a0', 'big')), false, 'the oldest of the biggest went')
  for (let i = 1; i < 3; i++) s.put(key(`b${i}`, 'small'), T)
  assert.equal([s.recordsOf('big'), s.recordsOf('small')], [3, 3])
  assert.throws(() => s.put(key('b3', 'small'), T), /this node holds 6 records of other peers \(the limit\)/, 'nobody holds 2 more than small')
  s.put(key('c0', 'third'), T)
  assert.equal([s.recordsOf('big'), s.recordsOf('small'), s.recordsOf('third')], [2, 3, 1])
  for (const p of ['p4', 'p5', 'p6']) s.put(key('d0', p), T)
  assert.equal(['big', 'small', 'third', 'p4', 'p5', 'p6'].map((p) => s.recordsOf(p)), [1, 1, 1, 1, 1, 1])
  assert.throws(() => s.put(key('d0', 'p7'), T), /this node holds 6 records/, 'six peers with one record each: a seventh is refused')
  assert.is(s.stats().records, 6)
})

test('total: never more than maxTotal records, whatever the order of many peers', async () => {
  const { s } = store({ maxTotal: 50, maxPerPeer: 20, maxPerKey: 4 })
  let n = 0
  for (let round = 0; round < 30; round++) {
    for (let p = 0; p < 7; p++) {
      try { s.put(key(`k${(round * 7 + p) % 23}`, `peer${p}`), T) } catch (e) { assert.instance(e, DhtRefusal) }
      const st = s.stats()
      assert.ok(st.records <= 50, `records ${st.records}`)
      for (let q = 0; q < 7; q++) assert.ok(s.recordsOf(`peer${q}`) <= 20)
      n++
    }
  }
  let stored = 0
  for await (const _ of s.queryKeys({ prefix: '/igor-dht/provider/' })) stored++
  assert.is(stored, s.stats().records, 'the counts match what is stored')
  assert.is(n, 210)
})

test('rate: beyond ratePerPeer puts per window (refreshes too) a peer is refused; other peers are not; rateTotal bounds all together', () => {
  const { s } = store({ ratePerPeer: 4, rateTotal: 6, rateWindowMs: 600_000 })
  for (let i = 0; i < 4; i++) s.put(key('k', 'fast'), T)
  assert.throws(() => s.put(key('k2', 'fast'), T), /over the rate limit \(4 records per peer, 6 in all, per 600 s\)/)
  s.put(key('k', 'other'), T)
  s.put(key('k2', 'other'), T)
  assert.throws(() => s.put(key('k3', 'third'), T), /over the rate limit/)
  assert.is(s.stats().refusedRate, 2)
  assert.is(s.stats().records, 3)
})

test('this node\'s own records: never bounded nor counted as others\'', () => {
  const { s } = store({ maxTotal: 2, maxPerPeer: 1, maxPerKey: 1, ratePerPeer: 1, rateTotal: 1 })
  for (let i = 0; i < 10; i++) s.put(key(`mine${i}`, SELF), T)
  s.put(key('x', 'peerA'), T)
  assert.equal(s.stats(), { records: 1, peers: 1, own: 10, accepted: 1, refused: 0, refusedRate: 0, dropped: 0 })
  s.delete(key('mine0', SELF))
  assert.is(s.stats().own, 9)
})

test('PUT_VALUE records and malformed provider keys are refused', () => {
  const { s, notes } = store({})
  assert.throws(() => s.put(new Key('/igor-dht/record/L3BrL2FiYw'), T), /dht: refused a value \(PUT_VALUE\): igord keeps no DHT values/)
  assert.throws(() => s.put(new Key('/igor-dht/provider/onlyone'), T), /malformed provider key/)
  assert.throws(() => s.put(new Key(`/igor-dht/provider/${'x'.repeat(300)}/peer`), T), /malformed provider key/)
  assert.is(s.stats().records, 0)
  assert.is(notes.length, 1, 'one line for puts that name no peer')
})

test('notes: one line per peer and at most MAX_NOTE_LINES per window; the rest counted in the next line', () => {
  const { s, notes } = store({ maxPerPeer: 1 })
  for (let p = 0; p < 20; p++) {
    s.put(key('k0', `p${p}`), T)
    for (let i = 1; i < 10; i++) assert.throws(() => s.put(key(`k${i}`, `p${p}`), T), (e: Error) => e instanceof DhtRefusal)
  }
  assert.is(notes.length, MAX_NOTE_LINES)
  assert.is(s.stats().refused, 180)
  assert.match(notes[1], /from p1: .* \(and 8 more refused since the last such note\)$/)
})

test.run()
