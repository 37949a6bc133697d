/**
 * p2p/wire.ts: frames (one canonical CBOR map with a text `t`, varint length-prefixed) over an
 * in-memory libp2p stream pair (@libp2p/utils `streamPair`, no network): round trip, byte
 * counters, large frames, per-step length limits, expected types, `error` frames, malformed frames, timeouts, a reset
 * stream, and the field readers; `blobs` frames sent as parts and received in their chunks.
 */
import { streamPair } from '@libp2p/utils'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { encode } from '../checkpoint/cbor.ts'
import { NetworkError } from '../p2p/errors.ts'
import { Uint8ArrayList } from 'uint8arraylist'
import { blobsFrameParts, blobsLayout, bytesOf, Channel, copyOut, MAX_OFFER_FRAME, textOf } from '../p2p/wire.ts'
import type { BlobsFrame, Frame } from '../p2p/wire.ts'

// AbortSignal.timeout timers do not keep the process alive; a node's sockets do, here this does
const keepAlive = setInterval(() => {}, 1000)
test.after(() => clearInterval(keepAlive))

async function pair (): Promise<[Channel, Channel]> {
  const [x, y] = await streamPair()
  return [new Channel(x, 'peerB'), new Channel(y, 'peerA')]
}

async function rejects (p: Promise<unknown>, re: RegExp): Promise<void> {
  try { await p } catch (e) {
    assert.instance(e, NetworkError)
    assert.match((e as Error).message, re)
    return
  }
  assert.unreachable('expected a NetworkError')
}

test('a frame round-trips with its fields; counters count frame bytes', async () => {
  const [a, b] = await pair()
  const f: Frame = { t: 'offer', v: 1, name: 'x', blob: new Uint8Array([1, 2, 3]), rows: [[0, 'c']] }
  await a.send(f, 'offer', 1000)
  const got = await b.recv('offer', 1000, ['offer'])
  assert.equal(got, f)
  assert.is(a.sent, encode(f).length)
  assert.is(b.received, a.sent)
  a.abort(); b.abort()
})

test('a 5 MiB frame (above the 4 MiB default of lpStream) arrives whole', async () => {
  const [a, b] = await pair()
  const big = new Uint8Array(5 * 1024 * 1024).map((_, i) => i & 255)
  const [, got] = await Promise.all([a.send({ t: 'blobs', b: [big] }, 'transfer', 10_000), b.recv('transfer', 10_000, ['blobs'])])
  assert.equal((got.b as Uint8Array[])[0], big)
  a.abort(); b.abort()
})

test('an unexpected frame type, and an error frame, are NetworkErrors naming the step and peer', async () => {
  const [a, b] = await pair()
  await a.send({ t: 'blobs', b: [] }, 'x', 1000)
  await rejects(b.recv('pending', 1000, ['pending', 'refuse']), /^pending: unexpected frame "blobs" from peerA \(expected pending or refuse\)/)
  await a.send({ t: 'error', reason: 'disk full' }, 'x', 1000)
  await rejects(b.recv('pending', 1000, ['pending']), /^pending: peerA says: disk full/)
  a.abort(); b.abort()
})

test('malformed frames: not CBOR, not a map, no text t', async () => {
  const [a, b] = await pair()
  await a.sendRaw(new Uint8Array([0xff, 0x00]), 'x', 1000)
  await rejects(b.recv('offer', 1000), /^offer: malformed frame from peerA/)
  await a.sendRaw(encode([1, 2]), 'x', 1000)
  await rejects(b.recv('offer', 1000), /not a map with a text "t"/)
  await a.sendRaw(encode({ t: 5 }), 'x', 1000)
  await rejects(b.recv('offer', 1000), /not a map with a text "t"/)
  a.abort(); b.abort()
})

test('no frame in time is a timeout; a reset stream is a NetworkError', async () => {
  const [a, b] = await pair()
  await rejects(b.recv('handoff', 50), /^handoff: no answer from peerA: timed out after 50 ms/)
  a.abort()
  await rejects(b.recv('handoff', 1000), /^handoff: no answer from peerA/)
  await rejects(a.send({ t: 'x' }, 'started', 1000), /^started: cannot send to peerB/)
  b.abort()
})

test('a frame over the step\'s limit is refused on its length prefix; a prefix over 8 bytes is malformed', async () => {
  const [a, b] = await pair()
  await a.send({ t: 'blobs', b: [new Uint8Array(2000)] }, 'x', 1000)
  await rejects(b.recv('offer', 1000, ['offer'], 1000), /^offer: peerA sent a frame of \d{4} bytes; the limit of this step is 1000 bytes$/)
  const [c, d] = await pair()
  c.stream.send(new Uint8Array(9).fill(0xff))
  await rejects(d.recv('offer', 1000), /^offer: peerA sent a malformed length prefix \(longer than 8 bytes\)$/)
  const [e, f] = await pair()
  e.stream.send(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x40])) // 2^41 bytes claimed, nothing sent
  await rejects(f.recv('offer', 1000, undefined, MAX_OFFER_FRAME), /^offer: peerA sent a frame of 2199023255552 bytes; the limit of this step is 16777216 bytes$/)
  for (const ch of [a, b, c, d, e, f]) ch.abort()
})

test('bytesOf and textOf check type and length', () => {
  const f: Frame = { t: 'end', key: new Uint8Array(32), name: 'abc', n: 5 }
  assert.is(bytesOf(f, 'key', 'end', 32).length, 32)
  assert.throws(() => bytesOf(f, 'key', 'end', 64), /end: field "key" must be 64 bytes/)
  assert.throws(() => bytesOf(f, 'n', 'end'), /end: field "n" must be a byte string/)
  assert.is(textOf(f, 'name', 'offer'), 'abc')
  assert.throws(() => textOf(f, 'name', 'offer', 2), /offer: field "name" must be a text string of at most 2 characters/)
  assert.throws(() => textOf(f, 'key', 'offer'), /must be a text string/)
})


test('blobsFrameParts is encode({t: "blobs", b}) byte for byte, for every head length', () => {
  const sizes = [[0], [1, 23, 24], [255, 256, 65535, 65536], Array.from({ length: 30 }, (_, i) => i * 7), [70_000]]
  for (const ns of sizes) {
    const b = ns.map((n) => new Uint8Array(n).map((_, i) => (i * 13 + n) & 255))
    const joined = Buffer.concat(blobsFrameParts(b))
    assert.ok(Buffer.compare(joined, encode({ t: 'blobs', b })) === 0, `sizes ${ns.join(',')}`)
    const at = blobsLayout(new Uint8ArrayList(joined))!
    assert.equal(at.map(([, n]) => n), ns)
    at.forEach(([off, n], k) => assert.ok(Buffer.compare(joined.subarray(off, off + n), b[k]) === 0))
  }
  assert.ok(blobsFrameParts([new Uint8Array(9)]).some((p) => p.length === 9), 'the blob is a part, not copied')
})

test('blobsLayout: null for any other frame or a layout that is not canonical CBOR', () => {
  const list = (x: Uint8Array | number[]) => new Uint8ArrayList(Uint8Array.from(x))
  assert.is(blobsLayout(list(encode({ t: 'end', key: new Uint8Array(32), log: null }))), null)
  assert.is(blobsLayout(list(encode({ t: 'blobs', b: [new Uint8Array(3)], x: 1 }))), null)
  const good = [...encode({ t: 'blobs', b: [new Uint8Array(3)] })]
  assert.ok(blobsLayout(list(good)) !== null)
  assert.is(blobsLayout(list([...good, 0])), null, 'a byte after the map')
  assert.is(blobsLayout(list(good.slice(0, -1))), null, 'cut short')
  // the byte string's length 3 written as a one-byte argument (0x58 0x03): not the shortest head
  assert.is(blobsLayout(list([0xa2, 0x61, 0x62, 0x81, 0x58, 3, 0, 0, 0, ...good.slice(-8)])), null)
  // a length past the end of the frame
  assert.is(blobsLayout(list([0xa2, 0x61, 0x62, 0x81, 0x5a, 0xff, 0xff, 0xff, 0xff, ...good.slice(-8)])), null)
})

test('copyOut copies a range that spans chunks; past the end is a RangeError', () => {
  const parts = [Uint8Array.of(1, 2, 3), Uint8Array.of(4), Uint8Array.of(5, 6, 7, 8)]
  const l = new Uint8ArrayList(...parts)
  const dst = new Uint8Array(5)
  copyOut(l, 2, dst)
  assert.equal([...dst], [3, 4, 5, 6, 7])
  assert.throws(() => copyOut(l, 6, new Uint8Array(3)), RangeError)
  // into shared memory at an odd offset, from Buffers and plain Uint8Arrays, views at odd offsets of bigger buffers
  const big = new Uint8Array(300).map((_, i) => (i * 7) & 255)
  const mixed = new Uint8ArrayList(Buffer.from(big.subarray(0, 101)), big.subarray(101, 250), new Uint8Array(big.subarray(250)))
  const shared = new Uint8Array(new SharedArrayBuffer(400))
  copyOut(mixed, 3, shared.subarray(13, 13 + 290))
  assert.ok(Buffer.compare(shared.subarray(13, 303), big.subarray(3, 293)) === 0)
  assert.ok(shared.subarray(0, 13).every((x) => x === 0) && shared.subarray(303).every((x) => x === 0), 'nothing outside dst written')
})

test('recvBlobs: a canonical blobs frame (sent as parts) comes as chunks and places; another frame decoded and checked', async () => {
  const [a, b] = await pair()
  const big = [new Uint8Array(200_000).map((_, i) => i & 255), new Uint8Array(65536).fill(7), new Uint8Array(0)]
  const [, got] = await Promise.all([a.sendParts(blobsFrameParts(big), 'transfer', 10_000), b.recvBlobs('transfer', 10_000, ['blobs', 'end'])])
  assert.is(got.t, 'blobs')
  const f = got as BlobsFrame
  assert.is(f.blobs.length, 3)
  f.blobs.forEach(([off, n], k) => { const d = new Uint8Array(n); copyOut(f.chunks, off, d); assert.ok(Buffer.compare(d, big[k]) === 0) })
  assert.is(a.sent, encode({ t: 'blobs', b: big }).length)
  assert.is(b.received, a.sent)
  await a.send({ t: 'end', log: null }, 'transfer', 1000)
  assert.equal(await b.recvBlobs('transfer', 1000, ['blobs', 'end']), { t: 'end', log: null })
  await a.send({ t: 'started' }, 'transfer', 1000)
  await rejects(b.recvBlobs('transfer', 1000, ['blobs', 'end']), /^transfer: unexpected frame "started" from peerA/)
  a.abort(); b.abort()
})

test.run()
