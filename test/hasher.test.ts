/**
 * p2p/hasher.ts: SHA-256 of ranges of a SharedArrayBuffer in the helper thread (equal to hashing
 * here, in order, any offsets), refusal of views that are not of one shared buffer, and the commit
 * of fresh memory ahead of writes, which never changes a byte.
 */
import { randomBytes } from 'node:crypto'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { sha256 } from '../checkpoint/hash.ts'
import { hashShared, touchShared } from '../p2p/hasher.ts'

test('digests of shared views, in order, equal sha256 here', async () => {
  const buf = new Uint8Array(new SharedArrayBuffer(5 * 65536))
  buf.set(randomBytes(buf.length))
  const views = [buf.subarray(65536, 131072), buf.subarray(0, 65536), buf.subarray(7, 1000), buf.subarray(0, 0), buf.subarray(4 * 65536)]
  const got = await hashShared(views)
  assert.is(got.length, views.length)
  views.forEach((v, k) => assert.ok(Buffer.compare(got[k], sha256(v)) === 0, `view ${k}`))
  assert.equal(await hashShared([]), [])
})

test('views of an unshared buffer, or of two shared ones, are refused', async () => {
  for (const views of [[new Uint8Array(10)], [new Uint8Array(new SharedArrayBuffer(4)), new Uint8Array(new SharedArrayBuffer(4))]]) {
    try { await hashShared(views); assert.unreachable('refused') } catch (e) { assert.match((e as Error).message, /^hash thread: the views must share one SharedArrayBuffer/) }
  }
})

test('touchShared commits memory without changing a byte written before or while it runs', async () => {
  const buf = new Uint8Array(new SharedArrayBuffer(64 * 65536 + 100))
  const data = randomBytes(buf.length)
  buf.set(data.subarray(0, 32 * 65536))
  touchShared(buf.buffer as SharedArrayBuffer)
  buf.set(data.subarray(32 * 65536), 32 * 65536) // written while the thread may be touching it
  await hashShared([buf.subarray(0, 1)]) // answered after the touch (one thread, requests in order)
  assert.ok(Buffer.compare(buf, data) === 0)
})

test.run()
