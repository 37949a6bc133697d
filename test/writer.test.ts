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
import { CheckpointWriter, encodeEntry } from '../checkpoint/writer.ts'
import { encodeFile } from '../checkpoint/cbor.ts'
import { formatReport, verifyHistory } from '../checkpoint/history.ts'
import { blobBytes, blobCids, packedBlobs } from './blobs.ts'
import { entriesIn, explode, segmentFiles } from './hist.ts'
import { SEGMENT_MAGIC, SEGMENT_MAX_BYTES } from '../checkpoint/segment.ts'
import type { GlobalValue } from '../checkpoint/state.ts'


let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-writer-')) })
test.after.each(() => { fs.rmSync(dir, { recursive: true, force: true }) })
const blobCount = () => blobCids(dir).length
const entries = () => fs.readdirSync(path.join(dir, 'history', 'a')).filter((n) => !n.startsWith('.')).sort()
const hist = () => path.join(dir, 'history', 'a')

test('layout: live file (0600), history segment named <tick:012>-<cid>-<tag>.hist after its first entry, code and manifest as files by CID, pages and logs in the agent\'s pack', () => {
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  const r = f.write(w, Buffer.from('log0'))
  const live = path.join(dir, 'a.ckpt')
  assert.is(fs.statSync(live).mode & 0o777, 0o600)
  assert.match(entries().join(' '), new RegExp(`^000000000000-${r.cid}-[0-9a-f]{8}\\.hist$`))
  const seg = path.join(hist(), entries()[0])
  assert.is(fs.statSync(seg).mode & 0o777, 0o600)
  assert.equal(Buffer.from(fs.readFileSync(seg).subarray(0, 8)), Buffer.from(SEGMENT_MAGIC))
  const es = entriesIn(hist())
  assert.equal(es.map((e) => [e.file, e.at, e.tick, e.cid]), [[seg, SEGMENT_MAGIC.length, 0, r.cid]])
  assert.is(es[0].e.base, true)
  // the stats name the frame: the segment, its offset, its bytes (12-byte head + the entry): the whole file after the magic
  assert.equal([w.lastStats!.entryFile, w.lastStats!.entryAt, w.lastStats!.entryBytes], [seg, 8, fs.statSync(seg).size])
  assert.is(w.lastStats!.entryBytes, 12 + 8 + es[0].bytes.length, 'a fresh segment: the magic, the frame head, the entry')
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
  assert.is(entries().length, 1, 'one segment holds every entry of a writer')
  const e0 = entriesIn(hist())[0].e
  const e1 = entriesIn(hist())[1].e
  assert.is(e0.base, true); assert.equal(e0.pages.map((p) => p[0]), [0, 1, 2])
  assert.is(e1.base, false); assert.equal(e1.pages, [[1, cidOf(f.pages.get(1)!)]])
  // a page that becomes zero is a null row; an unchanged write stores no page
  f.zero(2); f.write(w)
  const e2 = entriesIn(hist())[2].e
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
    assert.match(names.join(' '), new RegExp(`^000000000001-${f.prev}-[0-9a-f]{8}\\.hist$`))
    const archived = entriesIn(path.join(other, 'history', 'a'))
    assert.equal(archived.map((e) => [e.tick, e.cid, e.e.base]), [[1, f.prev, true]])
    f.poke(0, 3, 3); f.write(w2)
    // alone, the new directory's history verifies (state roots, blobs) except for its missing past
    const r = verifyHistory([path.join(other, 'history', 'a')])
    assert.is(r.faults.length, 1, formatReport(r))
    assert.match(r.faults[0].fault, /history starts at tick 1: previous checkpoint .* is not here/)
    assert.ok(verifyHistory([dir, other]).valid)
  } finally { fs.rmSync(other, { recursive: true, force: true }) }
})

test('ensureArchived sets aside an entry file an older version left by a crash between the history entry and the live file', () => {
  // versions before segments wrote one .cbor file per entry, and the entry before the live file:
  // a history in that layout (explode), whose live file a crash left one checkpoint behind it
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  f.write(w); f.poke(0, 2, 2); f.write(w)
  const liveFile = path.join(dir, 'a.ckpt')
  const atTick1 = fs.readFileSync(liveFile)
  const prevAtTick1 = f.prev
  f.poke(0, 3, 3); const orphan = f.write(w)
  w.close()
  assert.is(explode(hist()).length, 3)
  fs.writeFileSync(liveFile, atTick1) // as if the process died before renaming the new live file
  const w2 = new CheckpointWriter(dir, 'a')
  assert.is(w2.ensureArchived(readLive(liveFile)), 0, 'the live checkpoint is archived already')
  assert.equal(fs.readdirSync(hist()).filter((n) => n.startsWith('.orphan-')), [`.orphan-000000000002-${orphan.cid}.cbor`])
  f.prev = prevAtTick1; f.tick = 2
  f.poke(0, 4, 4); const fork = f.write(w2)
  assert.ok(fork.cid !== orphan.cid)
  // the legacy entry files stay; the new entry starts a segment
  assert.equal(entries().filter((n) => n.endsWith('.cbor')).length, 2)
  assert.match(entries().filter((n) => n.endsWith('.hist')).join(' '), new RegExp(`^000000000002-${fork.cid}-[0-9a-f]{8}\\.hist$`))
  const r = verifyHistory([dir])
  assert.ok(r.valid, formatReport(r))
  assert.is(r.checkpoints, 3)
})

test('a resume continues the newest segment: write, close, new writer + ensureArchived, write', () => {
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  f.write(w); f.poke(0, 2, 2); f.write(w)
  w.close()
  assert.is(entries().length, 1)
  const seg = path.join(hist(), entries()[0])
  const size = fs.statSync(seg).size
  const w2 = new CheckpointWriter(dir, 'a')
  assert.is(w2.ensureArchived(readLive(path.join(dir, 'a.ckpt'))), 0)
  f.poke(0, 3, 3); f.write(w2); f.poke(1, 1, 1); f.write(w2)
  w2.close()
  assert.equal(entries(), [path.basename(seg)], 'no second segment')
  assert.equal([w2.lastStats!.entryFile, w2.lastStats!.entryAt + w2.lastStats!.entryBytes], [seg, fs.statSync(seg).size])
  const es = entriesIn(hist())
  assert.equal(es.map((e) => e.tick), [0, 1, 2, 3])
  assert.ok(es.every((e) => e.file === seg))
  assert.is(es[2].at, size, 'the resumed writer appends right after the frames there were')
  assert.equal(es.map((e) => e.e.base), [true, false, true, false], 'a new writer starts with a base entry')
  const r = verifyHistory([dir])
  assert.ok(r.valid, formatReport(r))
  assert.is(r.checkpoints, 4)
})

for (const [what, tail] of [['a partial frame', null], ['4096 zero bytes', new Uint8Array(4096)]] as const) {
  test(`a torn tail (${what}) is cut by ensureArchived and the next entries follow an intact frame`, () => {
    const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
    const w = new CheckpointWriter(dir, 'a')
    f.write(w); f.poke(0, 2, 2); f.write(w)
    w.close()
    const seg = path.join(hist(), entries()[0])
    const size = fs.statSync(seg).size
    const before = entriesIn(hist())
    // a partial frame: the head and part of the entry of a copy of the last frame (a power cut during its append)
    const torn = tail ?? fs.readFileSync(seg).subarray(before[1].at!, before[1].at! + 12 + 40)
    fs.appendFileSync(seg, torn)
    assert.equal(entriesIn(hist()).map((e) => e.at), before.map((e) => e.at), 'readers skip the torn tail')
    assert.ok(verifyHistory([dir]).valid, 'a torn tail is no fault')
    const w2 = new CheckpointWriter(dir, 'a')
    assert.is(w2.ensureArchived(readLive(path.join(dir, 'a.ckpt'))), 0)
    assert.is(fs.statSync(seg).size, size, 'cut back to the end of the last intact frame')
    f.poke(0, 3, 3); f.write(w2); f.poke(1, 1, 1); f.write(w2)
    w2.close()
    assert.equal(entries(), [path.basename(seg)])
    const es = entriesIn(hist())
    assert.equal(es.map((e) => e.tick), [0, 1, 2, 3])
    assert.is(es[2].at, size, 'the next frame starts where the intact ones end')
    const r = verifyHistory([dir])
    assert.ok(r.valid, formatReport(r))
    assert.is(r.checkpoints, 4)
    assert.is(r.faults.length, 0, formatReport(r))
  })
}

test('a segment past SEGMENT_MAX_BYTES: the next entry starts a new segment, named after it', () => {
  // entries of ~1.4 MB: 50,000 v128 globals each (every entry lists all globals)
  const globals = (tick: number): GlobalValue[] => Array.from({ length: 50_000 }, (_, i) => ({ index: i, type: 'v128' as const, bytes: new Uint8Array(16).fill((i + tick) & 255) }))
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  const cids: string[] = []
  const sizes: number[] = []
  for (let tick = 0; tick < 5; tick++) {
    f.poke(0, 2, tick)
    const snapshot = { ...f.snapshot(), globals: globals(tick) }
    const r = w.write({ identity: f.id, wasm: Buffer.from('\0asmfake'), manifest: Buffer.from('{}'), snapshot, tick, epoch: 0, prev: f.prev, fuel: f.fuel, budget: f.budget, price: 1000n, host: 'h', status: 'running', log: null })
    f.prev = r.cid; cids.push(r.cid)
    sizes.push(fs.statSync(w.lastStats!.entryFile).size)
    assert.ok(w.lastStats!.entryBytes > 1_000_000, String(w.lastStats!.entryBytes))
  }
  w.close()
  const segs = segmentFiles(hist())
  assert.is(segs.length, 2, entries().join(' '))
  const es = entriesIn(hist())
  assert.equal(es.map((e) => e.tick), [0, 1, 2, 3, 4])
  const second = es.findIndex((e) => e.file === segs[1])
  assert.ok(second > 0)
  assert.match(path.basename(segs[1]), new RegExp(`^${String(second).padStart(12, '0')}-${cids[second]}-[0-9a-f]{8}\\.hist$`))
  assert.is(es[second].at, SEGMENT_MAGIC.length)
  assert.ok(sizes[second - 1] >= SEGMENT_MAX_BYTES, 'the first segment reached the bound before the second began')
  assert.ok(sizes[second - 2] < SEGMENT_MAX_BYTES, 'and not before its last entry')
  assert.ok(es.slice(0, second).every((e) => e.file === segs[0]) && es.slice(second).every((e) => e.file === segs[1]))
  const r = verifyHistory([dir])
  assert.ok(r.valid, formatReport(r))
  assert.is(r.checkpoints, 5)
})

test('everything a writer creates is private: folders 0700, files 0600 (live, entries, blobs), also after ensureArchived elsewhere', () => {
  const root = path.join(dir, 'new', 'data') // does not exist yet: the writer creates it
  const f = new FakeAgent(generateIdentity()); f.poke(0, 1, 1)
  const w = new CheckpointWriter(root, 'a')
  for (let i = 0; i < 3; i++) { f.poke(i, 2, i); f.write(w, Buffer.from('log' + i)) }
  const other = path.join(dir, 'other')
  new CheckpointWriter(other, 'a').ensureArchived(readLive(path.join(root, 'a.ckpt')))
  const seen = { dirs: 0, files: 0 }
  const files: string[] = []
  const walk = (p: string) => {
    const st = fs.statSync(p)
    assert.is(st.mode & 0o777, st.isDirectory() ? 0o700 : 0o600, p)
    if (st.isDirectory()) { seen.dirs++; for (const n of fs.readdirSync(p)) walk(path.join(p, n)) } else { seen.files++; files.push(path.relative(dir, p)) }
  }
  walk(path.join(dir, 'new')); walk(other)
  // the three entries of root are frames of one segment: 5 files there (live, segment, code, manifest, pack), 4 in other (no live file)
  assert.ok(seen.dirs >= 8 && seen.files >= 9, JSON.stringify(seen))
  const kinds = files.map((f) => f.replace(/[0-9]{12}-[a-z0-9]+-[0-9a-f]{8}\.hist$/, 'SEG').replace(/\+[0-9a-f]{16}\.pack$/, '+PACK').replace(/blobs\/bafk[a-z0-9]+$/, 'blobs/CID'))
  for (const k of ['new/data/a.ckpt', 'new/data/history/a/SEG', 'new/data/blobs/a+PACK', 'other/history/a/SEG', 'other/blobs/a+PACK', 'other/blobs/CID', 'new/data/blobs/CID']) assert.ok(kinds.includes(k), `${k} in ${kinds.join(' ')}`)
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
