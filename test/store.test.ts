import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { StorageError } from '../checkpoint/errors.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { atomicWrite, BlobStore, testHooks } from '../checkpoint/store.ts'

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

test('BlobStore names blobs by CID, skips existing ones and returns bytes unverified', () => {
  const s = new BlobStore(path.join(dir, 'blobs'))
  const b = Buffer.from('page body')
  const cid = s.put(b)
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

test.run()
