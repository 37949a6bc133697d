import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { cidOf } from '../checkpoint/hash.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { readLive } from '../checkpoint/live.ts'
import { verifyHeader } from '../checkpoint/header.ts'
import { FakeAgent } from './fake-agent.ts'
import { CheckpointWriter, decodeEntry, encodeEntry } from '../checkpoint/writer.ts'
import { encodeFile } from '../checkpoint/cbor.ts'
import { formatReport, verifyHistory } from '../checkpoint/history.ts'
import { blobBytes, blobCids, packedBlobs } from './blobs.ts'


let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-writer-')) })
test.after.each(() => { fs.rmSync(dir, { recursive: true, force: true }) })
const blobCount = () => blobCids(dir).length
const entries = () => fs.readdirSync(path.join(dir, 'history', 'a')).filter((n) => !n.startsWith('.')).sort()

test('layout: live file (0600), history entry named <tick:012>-<cid>.cbor, code and manifest as files by CID, pages and logs in the agent\'s pack', () => {
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
  const r = f.write(new CheckpointWriter(dir, 'a'), Buffer.from('log0'))
  const live = path.join(dir, 'a.ckpt')
  assert.is(fs.statSync(live).mode & 0o777, 0o600)
  assert.equal(entries(), [`000000000000-${r.cid}.cbor`])
  assert.is(r.cid, cidOf(r.headerBytes))
  const c = readLive(live)
  assert.is(Buffer.from(c.header).toString('hex'), Buffer.from(r.headerBytes).toString('hex'))
  assert.is(c.parsed.log, cidOf(Buffer.from('log0')))
  // the signed bytes come back from the write (and stay as writer.last): nobody reads them back from disk
  assert.equal(Buffer.from(r.sig), Buffer.from(c.sig))
  assert.ok(verifyHeader(r.headerBytes, r.sig, c.parsed.agent))
  assert.equal(Buffer.from(r.log!), Buffer.from('log0'))
  for (const cid of [r.header.code, r.header.manifest]) assert.ok(fs.existsSync(path.join(dir, 'blobs', cid)), cid)
  const packs = fs.readdirSync(path.join(dir, 'blobs')).filter((n) => n.endsWith('.pack'))
  assert.equal(packs.length, 1); assert.match(packs[0], /^a\+[0-9a-f]{16}\.pack$/)
  assert.equal(packedBlobs(dir).map((x) => x[0]).sort(), [r.header.log!, cidOf(f.pages.get(0)!)].sort(), 'a first write stores whole pages')
  for (const cid of [r.header.code, r.header.manifest, r.header.log!, cidOf(f.pages.get(0)!)]) assert.is(cidOf(blobBytes(dir, cid)), cid)
  assert.not.ok(fs.readdirSync(dir).some((n) => n.includes('.tmp-')))
})

test('first write is a base entry; later ones are deltas that put only changed pages', () => {
  const f = new FakeAgent(generateIdentity())
  f.poke(0, 1, 1); f.poke(1, 1, 2); f.poke(2, 1, 3)
  const w = new CheckpointWriter(dir, 'a')
  f.write(w)
  assert.is(w.lastStats!.base, true)
  assert.is(w.lastStats!.pageBlobsWritten, 3)
  const before = blobCount()
  f.poke(1, 99, 7)
  f.write(w)
  assert.is(blobCount(), before + 2, 'one new page (its 16 chunk digests) and its one changed 4 KiB chunk')
  assert.is(w.lastStats!.pageBlobsWritten, 1)
  const e0 = decodeEntry(fs.readFileSync(path.join(dir, 'history', 'a', entries()[0])), 'e0')
  const e1 = decodeEntry(fs.readFileSync(path.join(dir, 'history', 'a', entries()[1])), 'e1')
  assert.is(e0.base, true); assert.equal(e0.pages.map((p) => p[0]), [0, 1, 2])
  assert.is(e1.base, false); assert.equal(e1.pages, [[1, cidOf(f.pages.get(1)!)]])
  // a page that becomes zero is a null row; an unchanged write stores no page
  f.zero(2); f.write(w)
  const e2 = decodeEntry(fs.readFileSync(path.join(dir, 'history', 'a', entries()[2])), 'e2')
  assert.equal(e2.pages, [[2, null]])
  // a new writer instance (as after a resume) starts with a base entry again
  const w2 = new CheckpointWriter(dir, 'a')
  f.poke(3, 0, 1); f.write(w2)
  assert.is(w2.lastStats!.base, true)
  assert.is(w2.lastStats!.pageBlobsWritten, 1, 'pages already stored are not written again')
  assert.ok(verifyHistory([dir]).valid)
})

test('changed === null writes every changed page and the delta vs the previous entry', () => {
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1); f.poke(1, 1, 1)
  const w = new CheckpointWriter(dir, 'a'); f.write(w)
  f.poke(1, 5, 5)
  const s = f.snapshot(); s.changed = null
  w.write({ identity: f.id, wasm: Buffer.from('\0asmfake'), manifest: Buffer.from('{}'), snapshot: s, tick: 1, epoch: 0, prev: f.prev, fuel: 1n, budget: 1n, price: 1000n, host: 'h', status: 'running', log: null })
  assert.is(w.lastStats!.base, false)
  assert.is(w.lastStats!.entryPages, 1)
  assert.is(w.lastStats!.pageBlobsWritten, 1)
})

test('the secret key is only in the live file', () => {
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  for (let i = 0; i < 3; i++) { f.poke(0, 2, i); f.write(w, Buffer.from('log' + i)) }
  const seed = Buffer.from(f.id.seed)
  assert.ok(fs.readFileSync(path.join(dir, 'a.ckpt')).includes(seed))
  for (const sub of ['blobs', path.join('history', 'a')]) {
    for (const n of fs.readdirSync(path.join(dir, sub))) assert.not.ok(fs.readFileSync(path.join(dir, sub, n)).includes(seed), n)
  }
})

test('ensureArchived adds a resumed checkpoint to a new directory and sets aside a crash orphan', () => {
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  f.write(w); f.poke(0, 2, 2); f.write(w)
  const live = readLive(path.join(dir, 'a.ckpt'))
  // resumed elsewhere: the other dir's history starts with that checkpoint as a base entry
  const other = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-writer2-'))
  try {
    const w2 = new CheckpointWriter(other, 'a')
    w2.ensureArchived(live)
    const names = fs.readdirSync(path.join(other, 'history', 'a'))
    assert.equal(names, [`000000000001-${f.prev}.cbor`])
    f.poke(0, 3, 3); f.write(w2)
    // alone, the new directory's history verifies (state roots, blobs) except for its missing past
    const r = verifyHistory([path.join(other, 'history', 'a')])
    assert.is(r.faults.length, 1, formatReport(r))
    assert.match(r.faults[0].fault, /history starts at tick 1: previous checkpoint .* is not here/)
    assert.ok(verifyHistory([dir, other]).valid)
  } finally { fs.rmSync(other, { recursive: true, force: true }) }
})

test('ensureArchived sets aside an entry left by a crash between the history entry and the live file', () => {
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  f.write(w); f.poke(0, 2, 2); f.write(w)
  const liveFile = path.join(dir, 'a.ckpt')
  const atTick1 = fs.readFileSync(liveFile)
  const prevAtTick1 = f.prev
  f.poke(0, 3, 3); f.write(w)
  fs.writeFileSync(liveFile, atTick1) // as if the process died before renaming the new live file
  const w2 = new CheckpointWriter(dir, 'a')
  w2.ensureArchived(readLive(liveFile))
  assert.ok(fs.readdirSync(path.join(dir, 'history', 'a')).some((n) => n.startsWith('.orphan-000000000002-')))
  f.prev = prevAtTick1; f.tick = 2
  f.poke(0, 4, 4); f.write(w2)
  const r = verifyHistory([dir])
  assert.ok(r.valid, formatReport(r))
  assert.is(r.checkpoints, 3)
})

test('everything a writer creates is private: folders 0700, files 0600 (live, entries, blobs), also after ensureArchived elsewhere', () => {
  const root = path.join(dir, 'new', 'data') // does not exist yet: the writer creates it
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
  const w = new CheckpointWriter(root, 'a')
  for (let i = 0; i < 3; i++) { f.poke(i, 2, i); f.write(w, Buffer.from('log' + i)) }
  const other = path.join(dir, 'other')
  new CheckpointWriter(other, 'a').ensureArchived(readLive(path.join(root, 'a.ckpt')))
  const seen = { dirs: 0, files: 0 }
  const walk = (p: string) => {
    const st = fs.statSync(p)
    assert.is(st.mode & 0o777, st.isDirectory() ? 0o700 : 0o600, p)
    if (st.isDirectory()) { seen.dirs++; for (const n of fs.readdirSync(p)) walk(path.join(p, n)) } else seen.files++
  }
  walk(path.join(dir, 'new')); walk(other)
  assert.ok(seen.dirs >= 8 && seen.files >= 10, JSON.stringify(seen))
})

test('encodeEntry frames an entry by hand with the canonical encoder\'s bytes, and falls back to it for anything else', () => {
  const sig = new Uint8Array(64).fill(3)
  const cid = cidOf(Buffer.from('page'))
  const generic = (e: Parameters<typeof encodeEntry>[0]) => Buffer.from(encodeFile({ header: e.headerBytes, sig: e.sig, base: e.base, pageCount: e.pageCount, pages: e.pages, globals: e.globals.map((g) => [g.index, g.type, g.bytes]) })).toString('hex')
  const header = (n: number) => new Uint8Array(n).fill(7)
  const cases: Parameters<typeof encodeEntry>[0][] = [
    { headerBytes: header(300), sig, base: true, pageCount: 0, pages: [], globals: [] },
    { headerBytes: header(23), sig, base: false, pageCount: 23, pages: [[0, cid], [5, null], [22, cid]], globals: [{ index: 0, type: 'i32', bytes: Uint8Array.of(1, 2, 3, 4) }] },
    { headerBytes: header(24), sig, base: false, pageCount: 24, pages: [[23, cid], [24, null]], globals: [{ index: 23, type: 'i64', bytes: new Uint8Array(8) }, { index: 24, type: 'v128', bytes: new Uint8Array(16).fill(9) }] },
    { headerBytes: header(255), sig, base: true, pageCount: 256, pages: [[255, cid]], globals: [{ index: 255, type: 'f64', bytes: new Uint8Array(8) }, { index: 256, type: 'f32', bytes: new Uint8Array(4) }] },
    { headerBytes: header(65536), sig, base: false, pageCount: 65536, pages: [[256, cid], [65535, cid]], globals: [{ index: 65535, type: 'i32', bytes: new Uint8Array(4) }, { index: 65536, type: 'i32', bytes: new Uint8Array(4) }, { index: 0xffffffff, type: 'i32', bytes: new Uint8Array(4) }] },
    { headerBytes: header(10), sig, base: false, pageCount: 3, pages: [[1, 'bä€']], globals: [] }, // non-ASCII text
    { headerBytes: header(10), sig, base: false, pageCount: 2 ** 32, pages: [[2 ** 32, cid]], globals: [] }, // ≥ 2^32: the generic encoder
  ]
  for (const e of cases) assert.is(Buffer.from(encodeEntry(e)).toString('hex'), generic(e))
  const many = Array.from({ length: 1000 }, (_, i): [number, string | null] => [i * 3, i % 7 === 0 ? null : cid])
  const big = { headerBytes: header(400), sig, base: false, pageCount: 3000, pages: many, globals: [] }
  assert.is(Buffer.from(encodeEntry(big)).toString('hex'), generic(big))
})

test.run()
