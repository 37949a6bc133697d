import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { StorageError } from '../checkpoint/errors.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { atomicWrite, BlobStore, hashPackedIn, ReadRun, readBlobIn, testHooks } from '../checkpoint/store.ts'
import { compress, COMPRESS_MIN_BYTES, FRAME_HEADER, isPackName } from '../checkpoint/pack.ts'
import { createHash, randomBytes } from 'node:crypto'
import { zstdDecompressSync } from 'node:zlib'
import { cidOfDigest, digestOfCid } from '../checkpoint/hash.ts'

let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-store-')) })
test.after.each(() => { testHooks.beforeRename = null; fs.rmSync(dir, { recursive: true, force: true }) })

test('atomicWrite writes one buffer or many chunks, with the given mode', () => {
  const f = path.join(dir, 'a.ckpt')
  atomicWrite(f, [Buffer.from('ab'), new Uint8Array(0), Buffer.from('cd')], 0o600)
  assert.is(fs.readFileSync(f, 'utf8'), 'abcd')
  assert.is(fs.statSync(f).mode & 0o777, 0o600)
  atomicWrite(f, Buffer.from('new'))
  assert.is(fs.readFileSync(f, 'utf8'), 'new')
  // more chunks than one writev takes
  const chunks = Array.from({ length: 3000 }, (_, i) => Buffer.from([i & 255]))
  atomicWrite(f, chunks)
  assert.equal([...fs.readFileSync(f)], chunks.map((c) => c[0]))
})

test('a write that fails midway leaves the old file and no temp file', () => {
  const f = path.join(dir, 'a.ckpt')
  atomicWrite(f, Buffer.from('old contents'))
  // fails while writing: the second chunk is not a byte array
  assert.throws(() => atomicWrite(f, [Buffer.alloc(100000, 1), 'oops' as unknown as Uint8Array]))
  assert.is(fs.readFileSync(f, 'utf8'), 'old contents')
  // fails after the data is written, before the rename (as a crash there would)
  testHooks.beforeRename = () => { throw new Error('simulated crash') }
  assert.throws(() => atomicWrite(f, Buffer.from('new contents')), /simulated crash/)
  assert.is(fs.readFileSync(f, 'utf8'), 'old contents')
  assert.equal(fs.readdirSync(dir), ['a.ckpt'])
})

test('atomicWrite reports I/O failure as StorageError naming the path', () => {
  assert.throws(() => atomicWrite(path.join(dir, 'no', 'such', 'dir', 'x'), Buffer.from('x')), (e: Error) => e instanceof StorageError && /cannot create: ENOENT/.test(e.message))
})

test('BlobStore keeps code-like blobs as files by CID, skips existing ones and returns bytes unverified', () => {
  const s = new BlobStore(path.join(dir, 'blobs'))
  const b = Buffer.from('page body')
  const { cid } = s.putFile(b)
  assert.is(cid, cidOf(b))
  assert.ok(s.has(cid))
  assert.is(fs.readFileSync(path.join(dir, 'blobs', cid), 'utf8'), 'page body')
  assert.is(s.putEx(b).written, false)
  // a second store on the same dir also skips it: the file is not rewritten
  fs.writeFileSync(path.join(dir, 'blobs', cid), 'tampered')
  assert.is(new BlobStore(path.join(dir, 'blobs')).putEx(b).written, false)
  assert.is(Buffer.from(s.get(cid)).toString(), 'tampered')
  assert.not.ok(s.has(cidOf(Buffer.from('other'))))
  assert.throws(() => s.get(cidOf(Buffer.from('other'))), (e: Error) => e instanceof StorageError && /cannot read: ENOENT/.test(e.message))
  fs.writeFileSync(path.join(dir, 'file'), 'x')
  assert.throws(() => new BlobStore(path.join(dir, 'file', 'blobs')), (e: Error) => e instanceof StorageError && /cannot create directory/.test(e.message))
})

test('BlobStore appends pages to its agent\'s pack with one fdatasync per sync; other stores and readers find them; torn tails are ignored', () => {
  const bd = path.join(dir, 'blobs')
  const s = new BlobStore(bd, 'a')
  const pages = [Buffer.alloc(65536, 1), Buffer.alloc(65536, 2), Buffer.from('log')]
  const cids = pages.map((p) => s.putEx(p, undefined, false).cid)
  assert.equal(fs.readdirSync(bd), [], 'nothing on disk before sync')
  assert.is(Buffer.from(s.get(cids[2])).toString(), 'log', 'queued blobs are readable')
  s.sync()
  const packs = fs.readdirSync(bd)
  assert.is(packs.length, 1); assert.match(packs[0], /^a\+[0-9a-f]{16}\.pack$/)
  assert.is(fs.statSync(path.join(bd, packs[0])).mode & 0o777, 0o600)
  assert.is(fs.statSync(path.join(bd, packs[0])).size, 8 + 3 * 37 + 65536 * 2 + 3)
  assert.is(s.putEx(pages[0]).written, false)
  // another store of the directory (a node) and the module reader find every blob
  const all = new BlobStore(bd)
  for (let k = 0; k < 3; k++) { assert.ok(all.has(cids[k])); assert.is(cidOf(all.get(cids[k])), cids[k]); assert.is(cidOf(readBlobIn(bd, cids[k])!), cids[k]) }
  // a store of another agent does not read a's pack
  assert.not.ok(new BlobStore(bd, 'b').has(cids[0]))
  // a torn tail (a frame cut short by a crash) is ignored; later frames of a new writer are found
  fs.appendFileSync(path.join(bd, packs[0]), Buffer.from([1, 0, 1, 0, 0, 9, 9, 9]))
  const s2 = new BlobStore(bd, 'a')
  const c4 = s2.put(Buffer.from('after a crash'))
  assert.is(Buffer.from(new BlobStore(bd, 'a').get(c4)).toString(), 'after a crash')
  assert.is(cidOf(new BlobStore(bd).get(cids[1])), cids[1])
  assert.is(readBlobIn(bd, cidOf(Buffer.from('never stored'))), null)
})

test('a page put with chunk + compress is stored as 4 KiB chunks, zstd-compressed; a page differing in one chunk adds one chunk', () => {
  const bd = path.join(dir, 'blobs')
  const s = new BlobStore(bd, 'a')
  const page = Buffer.alloc(65536)
  for (let k = 0; k < 16; k += 2) page.write(`chunk ${k} `.repeat(40), k * 4096) // 8 non-zero, compressible chunks
  const c1 = s.putEx(page, undefined, false, { chunk: true, compress: true }).cid
  assert.is(Buffer.compare(s.get(c1), page), 0, 'queued: readable')
  s.sync()
  const packSize = () => fs.statSync(s.packFile).size
  const size1 = packSize()
  assert.ok(size1 < 8 + 9 * 37 + 512 + 8 * 200, `8 compressed chunks and the page's digests (${size1} bytes)`)
  const page2 = Buffer.from(page); page2[4096 * 2 + 5] ^= 0xff
  const c2 = s.putEx(page2, undefined, true, { chunk: true, compress: true }).cid
  assert.ok(packSize() - size1 < 2 * 37 + 512 + 200, `one chunk and the digests added (${packSize() - size1} bytes)`)
  for (const [c, p] of [[c1, page], [c2, page2]] as const) {
    assert.is(Buffer.compare(new BlobStore(bd).get(c), p), 0)
    assert.is(Buffer.compare(readBlobIn(bd, c)!, p), 0)
  }
  const log = Buffer.from('tick 1: clock 1700000000000 '.repeat(30))
  const lc = s.putEx(log, undefined, true, { compress: true }).cid
  assert.is(Buffer.compare(readBlobIn(bd, lc)!, log), 0)
  // an all-zero page is its digests only; a page whose chunk is missing is missing
  const zc = s.putEx(Buffer.alloc(65536), undefined, true, { chunk: true }).cid
  assert.is(Buffer.compare(readBlobIn(bd, zc)!, Buffer.alloc(65536)), 0)
})

test('compress round-trips through the reused zstd context, also right after input it could not shrink', () => {
  const rnd = (n: number, seed: number) => { const b = Buffer.alloc(n); let x = seed; for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = x >>> 24 } return b }
  const inputs: Buffer[] = []
  for (let k = 0; k < 40; k++) {
    const b = k % 3 === 0 ? rnd(4096, k) : Buffer.alloc(k % 2 === 0 ? 4096 : 300)
    if (k % 3 !== 0) for (let i = 0; i < b.length; i += 1 + (k % 11)) b[i] = (i * k) & 255
    inputs.push(b)
  }
  let shrunk = 0; let kept = 0
  for (const b of inputs) {
    const z = compress(b)
    if (z === null) { kept++; continue }
    shrunk++
    assert.ok(z.length < b.length)
    assert.is(Buffer.compare(zstdDecompressSync(z), b), 0)
  }
  assert.ok(shrunk > 0 && kept > 0, `both outcomes exercised (${shrunk} shrunk, ${kept} not)`)
  assert.is(compress(Buffer.alloc(COMPRESS_MIN_BYTES - 1)), null, 'too small to try')
  assert.ok(compress(Buffer.alloc(COMPRESS_MIN_BYTES)) !== null, 'long enough to try')
})

test('putEx with given chunk digests stores the same frames as when it hashes the chunks itself', () => {
  const page = Buffer.alloc(65536)
  for (let k = 0; k < 16; k += 3) page.write(`chunk ${k} `.repeat(40), k * 4096)
  const list = Buffer.alloc(512)
  for (let k = 0; k < 16; k++) {
    const c = page.subarray(k * 4096, (k + 1) * 4096)
    if (c.some((x) => x !== 0)) list.set(createHash('sha256').update(c).digest(), k * 32)
  }
  const a = new BlobStore(path.join(dir, 'a'), 'x')
  const b = new BlobStore(path.join(dir, 'b'), 'x')
  const ca = a.putEx(page, undefined, true, { chunk: true, compress: true }).cid
  const cb = b.putEx(page, undefined, true, { chunk: true, compress: true, chunkDigests: list, loose: false }).cid
  assert.is(ca, cb)
  assert.equal(fs.readFileSync(a.packFile), fs.readFileSync(b.packFile))
  assert.is(Buffer.compare(readBlobIn(path.join(dir, 'b'), cb)!, page), 0)
})

test('putEx with how.present takes the chunks whose digests match it as present (no look-up); the page reads back; epoch changes on forget', () => {
  const listOf = (page: Buffer) => {
    const list = Buffer.alloc(512)
    for (let k = 0; k < 16; k++) list.set(createHash('sha256').update(page.subarray(k * 4096, (k + 1) * 4096)).digest(), k * 32)
    return list
  }
  const s = new BlobStore(path.join(dir, 'p'), 'x')
  // more pages than the store remembers CIDs of: without how.present their chunks are looked up and missed
  const pages = Array.from({ length: 40 }, () => randomBytes(65536))
  const lists = pages.map(listOf)
  for (let i = 0; i < 40; i++) s.putEx(pages[i], undefined, false, { chunk: true, chunkDigests: lists[i], loose: false })
  s.sync()
  const size0 = fs.statSync(s.packFile).size
  const next = pages.map((p) => { const q = Buffer.from(p); q[4096 * 2 + 7] ^= 1; return q })
  for (let i = 0; i < 40; i++) s.putEx(next[i], undefined, false, { chunk: true, chunkDigests: listOf(next[i]), present: lists[i], loose: false })
  s.sync()
  const grown = fs.statSync(s.packFile).size - size0
  assert.ok(grown < 40 * (4096 + 512 + 2 * FRAME_HEADER) + 100, `one chunk and a list a page (${grown} bytes)`)
  for (let i = 0; i < 40; i++) assert.is(Buffer.compare(readBlobIn(path.join(dir, 'p'), cidOf(next[i]))!, next[i]), 0)
  const e = s.epoch
  s.forget()
  assert.ok(s.epoch !== e, 'forget changes the epoch')
})

test('cutZeroedTails cuts a pack whose last frame a power cut zeroed from inside, and changes the epoch (what callers learned was present is void)', () => {
  const d = path.join(dir, 'z')
  const w = new BlobStore(d, 'x')
  const a = randomBytes(20000); const b = randomBytes(20000)
  w.putEx(a, undefined, false, { loose: false }); w.putEx(b, undefined, false, { loose: false })
  w.sync(); w.close()
  const pack = fs.readdirSync(d).filter(isPackName).map((f) => path.join(d, f))[0]
  const size = fs.statSync(pack).size
  const fd = fs.openSync(pack, 'r+'); fs.writeSync(fd, Buffer.alloc(5000), 0, 5000, size - 5000); fs.closeSync(fd)
  const s = new BlobStore(d, 'x')
  const e = s.epoch
  assert.equal(s.cutZeroedTails(), [pack])
  assert.ok(s.epoch !== e, 'a cut changes the epoch')
  assert.ok(fs.statSync(pack).size < size - 20000, 'the damaged frame is cut')
  assert.is(Buffer.compare(readBlobIn(d, cidOf(a))!, a), 0)
  assert.is(readBlobIn(d, cidOf(b)), null)
  // nothing more to cut: the epoch stays
  const e2 = s.epoch
  assert.equal(s.cutZeroedTails(), [])
  assert.is(s.epoch, e2)
})

test('hashPackedIn hashes chunked pages in place as readBlobIn reads them; a damaged chunk shows in a new run; a missing chunk gives null', () => {
  const bd = path.join(dir, 'blobs')
  const s = new BlobStore(bd, 'h')
  const page = Buffer.alloc(65536)
  for (let k = 0; k < 16; k += 2) page.write(`chunk ${k} `.repeat(40), k * 4096) // 8 non-zero, compressible chunks
  const page2 = Buffer.from(page); page2[4096 * 4 + 9] ^= 0xff // shares 7 of them
  const raw = Buffer.from(Array.from({ length: 65536 }, (_, i) => (i * 131) & 255)) // stored whole
  const c1 = s.putEx(page, undefined, false, { chunk: true, compress: true }).cid
  const c2 = s.putEx(page2, undefined, false, { chunk: true, compress: true }).cid
  const c3 = s.putEx(raw, undefined, true).cid
  const sha = (b: Uint8Array) => createHash('sha256').update(b).digest()
  const run = new ReadRun()
  for (const [c, p] of [[c1, page], [c2, page2], [c3, raw]] as const) {
    const h = hashPackedIn(bd, c, run)
    assert.ok(h !== null, 'packed')
    assert.is(h!.length, 65536)
    assert.is(Buffer.compare(h!.digest, digestOfCid(c)), 0)
    assert.is(Buffer.compare(h!.digest, sha(readBlobIn(bd, c)!)), 0)
    assert.is(Buffer.compare(h!.digest, sha(p)), 0)
  }
  assert.is(hashPackedIn(bd, cidOfDigest(sha(Buffer.from('not stored'))), run), null, 'not packed: null')
  // flip a byte inside the frame of chunk 0 of page 1 (stored compressed): a new run sees the page corrupt
  const pack = fs.readdirSync(bd).filter(isPackName).map((n) => path.join(bd, n))[0]
  const b = fs.readFileSync(pack)
  const chunk0 = sha(page.subarray(0, 4096))
  const at = b.indexOf(chunk0)
  assert.ok(at > 0, 'chunk frame found')
  const payloadEnd = at + 32 + b.readUInt32BE(at - 4)
  assert.is(b[at - 5], 2, 'a zstd frame')
  b[payloadEnd - 3] ^= 0x55
  fs.writeFileSync(pack, b)
  const h1 = hashPackedIn(bd, c1, new ReadRun())
  assert.ok(h1 === null || Buffer.compare(h1.digest, digestOfCid(c1)) !== 0, 'damaged chunk: page does not match its CID')
  const back = readBlobIn(bd, c1)
  if (h1 !== null) assert.is(Buffer.compare(h1.digest, sha(back!)), 0, 'the same bytes readBlobIn returns')
  // a chunk frame cut out of the pack: the page is not hashed (null: the caller's slow path names it missing)
  const kept = Buffer.concat([b.subarray(0, at - 5), b.subarray(payloadEnd)])
  fs.writeFileSync(pack, kept)
  assert.is(FRAME_HEADER, 37)
  assert.is(hashPackedIn(bd, c1, new ReadRun()), null)
})

test.run()
