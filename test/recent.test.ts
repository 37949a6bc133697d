/**
 * Unit tests of checkpoint/recent.ts (RecentMap: two bounded generations, keys in use stay) and of
 * its use by a writer's blob store: memory stays bounded over many puts, and a forgotten blob is
 * only stored again, never lost.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { RecentMap } from '../checkpoint/recent.ts'
import { BlobStore, readBlobIn } from '../checkpoint/store.ts'
import { WRITER_RECENT } from '../checkpoint/pack.ts'

test('RecentMap keeps at most 2 × max entries, and a key in use survives generations', () => {
  const m = new RecentMap<number, string>(4)
  for (let i = 0; i < 100; i++) {
    m.set(i, `v${i}`)
    assert.ok(m.size <= 8, `size ${m.size}`)
    assert.is(m.get(0), 'v0', 'used every step: never forgotten')
  }
  assert.is(m.get(1), undefined, 'an old key unused since is forgotten')
  assert.is(m.get(99), 'v99')
  m.set(99, 'new'); assert.is(m.get(99), 'new')
  m.clear(); assert.is(m.size, 0); assert.is(m.has(0), false)
  const inf = new RecentMap<number, number>(Infinity)
  for (let i = 0; i < 10_000; i++) inf.set(i, i)
  assert.is(inf.size, 10_000); assert.is(inf.get(0), 0)
})

test('a writer store over many more blobs than it remembers: every blob stays readable, a forgotten one is stored again', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-recent-'))
  try {
    const bd = path.join(dir, 'blobs')
    const s = new BlobStore(bd, 'a')
    const blobs = Array.from({ length: 4 * WRITER_RECENT }, (_, i) => Buffer.from(`blob number ${i} `.repeat(8)))
    const cids = blobs.map((b) => s.putEx(b, undefined, false).cid)
    s.sync()
    const size = fs.statSync(s.packFile).size
    assert.is(s.putEx(blobs.at(-1)!).written, false, 'a recent blob is known')
    assert.is(s.putEx(blobs[0]).written, true, 'the first one is forgotten: stored again')
    assert.ok(fs.statSync(s.packFile).size > size)
    for (let i = 0; i < blobs.length; i++) assert.is(Buffer.compare(readBlobIn(bd, cids[i])!, blobs[i]), 0)
  } finally { fs.rmSync(dir, { recursive: true, force: true }) }
})

test.run()
