/**
 * p2p/migrate.ts `Spool`, the target's store of one offer's received blobs: one file per offer
 * (folder 0700, file 0600) appended frame by frame on the thread pool, read back by CID in one read
 * into a SharedArrayBuffer without hashing again, deleted at once or in the background; and
 * `MemorySpool`, the same for an offer within the node's in-memory budget: pages copied into 64 KiB
 * slots of one SharedArrayBuffer, other blobs into their own, nothing on disk.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cidOf } from '../checkpoint/hash.ts'
import { clearSpools, MemorySpool, Spool } from '../p2p/migrate.ts'
import { cleanup, tempDir } from './helpers.ts'

test.after(() => cleanup())

const blob = (n: number): [string, Uint8Array] => { const b = randomBytes(n); return [cidOf(b), b] }

test('blobs appended frame by frame come back by CID, exactly, as views of one SharedArrayBuffer; file 0600 in a folder 0700', async () => {
  const root = join(tempDir('igord-spool-'), 'spool')
  const s = new Spool(root)
  const frames = [[blob(65536), blob(65536)], [blob(1000)], [blob(65536), blob(0), blob(300_000)]]
  for (const f of frames) s.putAll(f)
  const all = frames.flat()
  assert.is(s.count, all.length)
  assert.is(s.bytes, all.reduce((n, [, b]) => n + b.length, 0))
  for (const [c] of all) assert.ok(s.has(c))
  assert.not.ok(s.has(blob(10)[0]))
  const got = await s.load()
  assert.is(s.queued, 0)
  for (const [c, b] of all) {
    const x = got.get(c)!
    assert.ok(x.buffer instanceof SharedArrayBuffer, 'shared, not copied into each worker')
    assert.ok(Buffer.compare(x, b) === 0, `blob ${c}`)
  }
  assert.equal(readdirSync(s.dir), ['blobs'])
  assert.is(statSync(s.dir).mode & 0o777, 0o700)
  assert.is(statSync(root).mode & 0o777, 0o700)
  assert.is(statSync(s.file).mode & 0o777, 0o600)
  assert.ok(Buffer.compare(readFileSync(s.file), Buffer.concat(all.map((x) => x[1]))) === 0, 'the file is the blobs in arrival order')
  s.remove()
  assert.not.ok(existsSync(s.dir), 'removed at once')
  assert.throws(() => s.putAll([blob(5)]), /spool: .* is closed/)
  await s.settled() // the writes queued before the removal end without error
})

test('remove(later) deletes in the background; load after remove fails with a clear line; clearSpools empties the root', async () => {
  const root = join(tempDir('igord-spool-'), 'spool')
  const s = new Spool(root)
  s.putAll([blob(65536)])
  s.remove(true)
  for (let i = 0; i < 200 && existsSync(s.dir); i++) await new Promise((r) => setTimeout(r, 25))
  assert.not.ok(existsSync(s.dir), 'deleted in the background')
  let err: Error | null = null
  try { await s.load() } catch (e) { err = e as Error }
  assert.match(err?.message ?? '', /^spool: removed$/)
  const t = new Spool(root)
  t.putAll([blob(100)])
  await t.settled()
  clearSpools(root)
  assert.not.ok(existsSync(root))
  t.remove()
})

test('the write queue counts the bytes waiting to be written and drains to 0', async () => {
  const s = new Spool(join(tempDir('igord-spool-'), 'spool'))
  const frame = Array.from({ length: 16 }, () => blob(65536))
  s.putAll(frame)
  assert.is(s.queued, 16 * 65536, 'queued until written')
  await s.settled()
  assert.is(s.queued, 0)
  assert.is(statSync(s.file).size, 16 * 65536)
  s.remove()
})

test('MemorySpool: pages come back by CID as slots of one SharedArrayBuffer, other blobs in their own; a page past the slots still fits; nothing waits; removed: load fails', async () => {
  const s = new MemorySpool(3)
  const wasm = blob(300_000)
  const pages = [blob(65536), blob(65536), blob(65536), blob(65536)]
  s.putAll([wasm, pages[0]])
  s.putAll([pages[1], pages[2], pages[3]]) // one more page than slots (e.g. a wasm of 64 KiB took a slot)
  assert.is(s.queued, 0)
  assert.is(s.count, 5)
  assert.is(s.bytes, 300_000 + 4 * 65536)
  for (const [c] of [wasm, ...pages]) assert.ok(s.has(c))
  await s.settled()
  const got = await s.load()
  for (const [c, b] of [wasm, ...pages]) {
    const x = got.get(c)!
    assert.ok(x.buffer instanceof SharedArrayBuffer, 'shared, not copied into each worker')
    assert.ok(Buffer.compare(x, b) === 0, `blob ${c}`)
    assert.ok(x !== b && x.buffer !== b.buffer, 'copied out of the frame')
  }
  const slab = got.get(pages[0][0])!.buffer
  assert.is(slab.byteLength, 3 * 65536)
  assert.ok(got.get(pages[1][0])!.buffer === slab && got.get(pages[2][0])!.buffer === slab, 'the pages share the slots')
  assert.ok(got.get(pages[3][0])!.buffer !== slab && got.get(wasm[0])!.buffer !== slab)
  s.remove()
  let err: Error | null = null
  try { await s.load() } catch (e) { err = e as Error }
  assert.match(err?.message ?? '', /^spool: removed$/)
  assert.throws(() => s.putAll([blob(5)]), /spool: removed/)
  assert.ok(Buffer.compare(got.get(pages[0][0])!, pages[0][1]) === 0, 'what load returned stays valid')
})

test.run()
