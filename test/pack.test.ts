/**
 * Pack reads on verify's fast paths (checkpoint/pack.ts): the reused zstd decompression context
 * decodes exactly what the one-shot `zstdDecompressSync` path does (damaged, torn and concatenated
 * frames included), `zstdContentSize` reads the framing of RFC 8878, and a run's read-ahead window
 * (`PackRun`) serves whole frames only, so a frame appended after the window was read comes from
 * the file, and payloads handed out are buffers of their own.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib'
import { cidOfDigest } from '../checkpoint/hash.ts'
import { compress, decompressOne, FRAME_BLOB, FRAME_ZSTD, PackIndex, PackRun, readSlot, zstdContentSize, type PackSlot } from '../checkpoint/pack.ts'
import { BlobStore } from '../checkpoint/store.ts'

const tmp: string[] = []
test.after(() => { for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })
const mkdir = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-pack-')); tmp.push(d); return d }

/** What the one-shot path gives for a kind-2 payload: its content, or the payload itself when it does not decode. */
function oneShot (p: Uint8Array): Uint8Array {
  try { return zstdDecompressSync(p) } catch { return p }
}

const chunk = Buffer.alloc(4096)
for (let i = 0; i < chunk.length; i += 3) chunk[i] = (i * 7) & 255

test('decompressOne: a frame as written decodes to its chunk, again and again', () => {
  const f = Buffer.from(compress(chunk)!)
  assert.is(zstdContentSize(f), 4096)
  for (let i = 0; i < 50; i++) assert.is(Buffer.compare(decompressOne(f), chunk), 0)
  const out = decompressOne(f)
  assert.is(out.buffer.byteLength, 4096, 'a buffer of its own (no larger buffer pinned)')
})

test('decompressOne decides like the one-shot path on every damaged, torn or joined frame', () => {
  const f = Buffer.from(compress(chunk)!)
  let cases = 0
  for (let i = 0; i < f.length; i++) {
    for (const x of [0x01, 0x80, 0xff]) {
      const bad = Buffer.from(f); bad[i] ^= x
      assert.is(Buffer.compare(decompressOne(bad), oneShot(bad)), 0, `byte ${i} ^ ${x}`)
      cases++
    }
  }
  for (let k = 0; k < f.length; k++) { const t = f.subarray(0, k); assert.is(Buffer.compare(decompressOne(t), oneShot(t)), 0, `cut at ${k}`); cases++ }
  for (const joined of [Buffer.concat([f, f]), Buffer.concat([f, Buffer.from([0])])]) assert.is(Buffer.compare(decompressOne(joined), oneShot(joined)), 0)
  // and the context is still good afterwards
  assert.is(Buffer.compare(decompressOne(f), chunk), 0)
  assert.ok(cases > 1000)
})

test('zstdContentSize reads the declared size of whole frames only', () => {
  for (const n of [0, 1, 100, 255, 256, 4096, 65535, 65536, 70000]) {
    const b = Buffer.alloc(n, 7)
    const z = zstdCompressSync(b)
    assert.is(zstdContentSize(z), n, `${n} bytes`)
    assert.is(Buffer.compare(decompressOne(z), n <= 65536 ? b : zstdDecompressSync(z)), 0)
  }
  const z = zstdCompressSync(randomBytes(5000))
  assert.is(zstdContentSize(z), 5000)
  assert.is(zstdContentSize(z.subarray(0, z.length - 1)), -1, 'torn')
  assert.is(zstdContentSize(Buffer.concat([z, z])), -1, 'two frames')
  assert.is(zstdContentSize(Buffer.from('not a zstd frame at all')), -1)
})

test('PackRun: frames appended after the window was read are read from the file; payloads are copies', () => {
  const bd = mkdir()
  const s = new BlobStore(bd, 'a')
  const blobs = Array.from({ length: 8 }, (_, i) => Buffer.from(`blob ${i} `.repeat(50 + i)))
  for (const b of blobs.slice(0, 4)) s.putEx(b, undefined, false)
  s.sync()
  const file = s.packFile
  const slots = new Map<string, PackSlot>()
  const index = new PackIndex(file)
  index.scan((c, sl) => slots.set(c, sl))
  const cid = (b: Buffer) => cidOfDigest(createHash('sha256').update(b).digest())
  const run = new PackRun()
  const first = readSlot(slots.get(cid(blobs[0]))!, cid(blobs[0]), run)
  assert.equal(Buffer.from(first), blobs[0])
  assert.ok(run.len > 0 && run.len <= index.scanned, 'the window holds walked frames only')
  first.fill(0) // the caller owns it: later reads from the window are unaffected
  for (const b of blobs.slice(0, 4)) assert.equal(Buffer.from(readSlot(slots.get(cid(b))!, cid(b), run)), b)
  // a second writer's frames land after the window's end
  for (const b of blobs.slice(4)) s.putEx(b, undefined, false)
  s.sync()
  index.scan((c, sl) => slots.set(c, sl))
  for (const b of blobs) assert.equal(Buffer.from(readSlot(slots.get(cid(b))!, cid(b), run)), b)
  const kinds = new Set([...slots.values()].map((x) => x.kind))
  assert.ok(kinds.has(FRAME_BLOB) && !kinds.has(FRAME_ZSTD))
})

test('PackRun: a frame overwritten in the window is refused as no longer its blob', () => {
  const bd = mkdir()
  const s = new BlobStore(bd, 'a')
  const a = Buffer.from('first blob '.repeat(30)); const b = Buffer.from('second blob '.repeat(30))
  s.putEx(a, undefined, false); s.putEx(b, undefined, true)
  const slots: [string, PackSlot][] = []
  new PackIndex(s.packFile).scan((c, sl) => slots.push([c, sl]))
  const run = new PackRun()
  assert.throws(() => readSlot(slots[1][1], slots[0][0], run), /no longer blob/)
  assert.equal(Buffer.from(readSlot(slots[1][1], slots[1][0], run)), b, 'the run reads on after a refusal')
})

test.run()
