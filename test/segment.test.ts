/**
 * checkpoint/segment.ts: history segment frames (vector), scanning intact, damaged and torn
 * segments, reading from an offset, and the file names layout.ts gives them.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { CheckpointError } from '../checkpoint/errors.ts'
import { readEntryAt } from '../checkpoint/entries.ts'
import { historyFiles, historyName, segmentFileName } from '../checkpoint/layout.ts'
import { FRAME_HEAD_BYTES, frameHead, MAX_ENTRY_BYTES, readHistoryFile, scanSegment, SEGMENT_MAGIC } from '../checkpoint/segment.ts'

const frame = (entry: Uint8Array) => Buffer.concat([frameHead(entry), entry])
const segment = (...entries: Uint8Array[]) => Buffer.concat([SEGMENT_MAGIC, ...entries.map(frame)])
const entry = (n: number, fill: number) => Buffer.alloc(n, fill)

test('a frame: HENT, big-endian length, CRC-32 of the length bytes and the entry (vector)', () => {
  // CRC-32 (zlib) of 00 00 00 03 01 02 03 = 0x2524299f
  assert.equal([...frameHead(Uint8Array.from([1, 2, 3]))], [0x48, 0x45, 0x4e, 0x54, 0, 0, 0, 3, 0x25, 0x24, 0x29, 0x9f])
  assert.equal([...SEGMENT_MAGIC], [...Buffer.from('IGORDHS\x01', 'latin1')])
  assert.throws(() => frameHead(new Uint8Array(0)), (e: unknown) => e instanceof CheckpointError)
  assert.throws(() => frameHead(new Uint8Array(MAX_ENTRY_BYTES + 1)), (e: unknown) => e instanceof CheckpointError)
})

test('scanSegment reads every intact frame, at its offset', () => {
  const a = entry(10, 1); const b = entry(300, 2); const c = entry(1, 3)
  const s = scanSegment(segment(a, b, c), 'x.hist')
  assert.equal(s.entries.map((e) => e.at), [8, 8 + 12 + 10, 8 + 12 + 10 + 12 + 300])
  assert.equal(s.entries.map((e) => Buffer.from(e.bytes)), [a, b, c])
  assert.equal(s.damaged, [])
  assert.is(s.tail, null)
})

test('a torn tail (a partial frame, zeros, a partial magic) is skipped and its offset given; nothing after it is lost', () => {
  const whole = segment(entry(50, 1), entry(60, 2))
  const end = whole.length
  const third = frame(entry(70, 3))
  for (const cut of [1, 4, FRAME_HEAD_BYTES, FRAME_HEAD_BYTES + 69]) {
    const s = scanSegment(Buffer.concat([whole, third.subarray(0, cut)]), 'x.hist')
    assert.is(s.entries.length, 2, `cut at ${cut}`)
    assert.is(s.tail, end)
  }
  const zeros = scanSegment(Buffer.concat([whole, Buffer.alloc(4096)]), 'x.hist')
  assert.is(zeros.entries.length, 2); assert.is(zeros.tail, end); assert.equal(zeros.damaged, [])
  // a file cut inside its magic, or zeroed whole, holds nothing: all torn tail
  assert.equal(scanSegment(SEGMENT_MAGIC.subarray(0, 5), 'x.hist'), { entries: [], damaged: [], tail: 0 })
  assert.equal(scanSegment(Buffer.alloc(6), 'x.hist'), { entries: [], damaged: [], tail: 0 })
  assert.equal(scanSegment(new Uint8Array(0), 'x.hist'), { entries: [], damaged: [], tail: 0 })
})

test('damaged bytes followed by an intact frame are reported as a range; the frames after them are read', () => {
  const a = entry(40, 1); const b = entry(40, 2); const c = entry(40, 3)
  const bytes = segment(a, b, c)
  const bAt = 8 + 52
  for (const flip of [bAt, bAt + 5, bAt + 9, bAt + 12, bAt + 51]) {
    const bad = Buffer.from(bytes); bad[flip] ^= 0x40
    const s = scanSegment(bad, 'x.hist')
    assert.equal(s.entries.map((e) => e.bytes[0]), [1, 3], `flip at ${flip}`)
    assert.equal(s.damaged, [[bAt, bAt + 52]])
    assert.is(s.tail, null)
  }
})

test('a damaged tail (a complete frame failing its CRC, or garbage, not ending in zero) is damaged, not torn', () => {
  const whole = segment(entry(40, 1), entry(40, 2))
  const lastAt = 8 + 52
  const flipped = Buffer.from(whole); flipped[lastAt + 20] ^= 0x40
  const f = scanSegment(flipped, 'x.hist')
  assert.equal(f.entries.map((e) => [e.at, Buffer.from(e.bytes)]), [[8, entry(40, 1)]])
  assert.equal(f.damaged, [[lastAt, whole.length]]); assert.is(f.tail, null)
  const garbage = Buffer.concat([whole, Buffer.from('garbage!')])
  const g = scanSegment(garbage, 'x.hist')
  assert.equal(g.damaged, [[whole.length, garbage.length]]); assert.is(g.tail, null); assert.is(g.entries.length, 2)
  // the same garbage ending in a zero byte is what a power cut leaves: torn
  const zeroEnded = scanSegment(Buffer.concat([whole, Buffer.from('garbage\0')]), 'x.hist')
  assert.equal(zeroEnded.damaged, []); assert.is(zeroEnded.tail, whole.length)
})

test('a file that is not a segment, or of another segment version, is refused by name', () => {
  assert.throws(() => scanSegment(Buffer.from('not a segment at all'), 'f.hist'), /f\.hist: not a history segment/)
  const v2 = Buffer.from(segment(entry(5, 1))); v2[7] = 2
  assert.throws(() => scanSegment(v2, 'f.hist'), /f\.hist: unsupported history segment version 2 \(this igord reads 1\)/)
})

test('readHistoryFile reads a segment from an offset (a follower reading what was appended), and readEntryAt one frame', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-seg-'))
  try {
    const f = path.join(dir, segmentFileName(0, 'bafkreiaaa', '00000001'))
    fs.writeFileSync(f, segment(entry(20, 1)))
    const r1 = readHistoryFile(f)
    assert.is(r1.entries.length, 1); assert.is(r1.end, 8 + 32)
    // a frame being appended: the reader stops before it, and reads it whole next time
    const next = frame(entry(30, 2))
    fs.appendFileSync(f, next.subarray(0, 17))
    const r2 = readHistoryFile(f, r1.end)
    assert.is(r2.entries.length, 0); assert.is(r2.end, r1.end); assert.is(r2.tail, r1.end)
    fs.appendFileSync(f, next.subarray(17))
    const r3 = readHistoryFile(f, r2.end)
    assert.equal(r3.entries.map((e) => [e.at, e.bytes[0], e.bytes.length]), [[40, 2, 30]])
    assert.is(r3.end, 40 + 42)
    assert.equal(Buffer.from(readEntryAt(f, 40)), entry(30, 2))
    assert.throws(() => readEntryAt(f, 41), /not an intact history frame/)
    // an entry file is one entry, whole
    const old = path.join(dir, '000000000001-bafkreibbb.cbor')
    fs.writeFileSync(old, entry(9, 7))
    assert.equal(readHistoryFile(old).entries.map((e) => [e.at, e.bytes.length]), [[null, 9]])
  } finally { fs.rmSync(dir, { recursive: true, force: true }) }
})

test('readHistoryFile with `last` reads a segment\'s end from its first intact frame on', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-seg-'))
  try {
    const f = path.join(dir, segmentFileName(0, 'bafkreiaaa', '00000002'))
    const entries = Array.from({ length: 50 }, (_, k) => entry(100 + k, k + 1))
    fs.writeFileSync(f, segment(...entries))
    const all = readHistoryFile(f)
    assert.is(all.start, 0); assert.is(all.entries.length, 50)
    const tail = readHistoryFile(f, 0, 1000)
    assert.ok(tail.start !== null && tail.start > 0)
    assert.ok(tail.entries.length >= 5 && tail.entries.length < 50, String(tail.entries.length))
    assert.equal(tail.entries.map((e) => e.at), all.entries.slice(-tail.entries.length).map((e) => e.at))
    assert.is(tail.start, tail.entries[0].at)
    assert.equal(tail.damaged, []); assert.is(tail.tail, null); assert.is(tail.end, all.end)
    // a window bigger than the file reads all of it; one holding no intact frame says so
    assert.is(readHistoryFile(f, 0, 1 << 20).start, 0)
    assert.is(readHistoryFile(f, 0, 50).start, null)
  } finally { fs.rmSync(dir, { recursive: true, force: true }) }
})

test('history file names: segments (first entry, writer tag) and entry files, by the tick of their first entry', () => {
  assert.is(segmentFileName(42, 'bafkreiabc', 'deadbeef'), '000000000042-bafkreiabc-deadbeef.hist')
  assert.equal(historyName('000000000042-bafkreiabc-deadbeef.hist'), { kind: 'segment', tick: 42, cid: 'bafkreiabc', tag: 'deadbeef' })
  assert.equal(historyName('000000000007-bafkreiabc.cbor'), { kind: 'entry', tick: 7, cid: 'bafkreiabc', tag: '' })
  for (const bad of ['.000000000042-x-deadbeef.hist', '42-x-deadbeef.hist', '000000000042-x.hist', '000000000042-x-DEADBEEF.hist', '000000000042-x-deadbeef.hist.tmp', 'gc.json', '.orphan-000000000001-x.cbor']) assert.is(historyName(bad), null, bad)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-seg-'))
  try {
    for (const n of ['000000000010-bafkreizzz-00000002.hist', '000000000010-bafkreizzz-00000001.hist', '000000000003-bafkreiccc.cbor', '000000000200-bafkreiaaa-ffffffff.hist', 'gc.json', '.x.tmp']) fs.writeFileSync(path.join(dir, n), '')
    assert.equal(historyFiles(dir).map((f) => path.basename(f)), ['000000000003-bafkreiccc.cbor', '000000000010-bafkreizzz-00000001.hist', '000000000010-bafkreizzz-00000002.hist', '000000000200-bafkreiaaa-ffffffff.hist'])
  } finally { fs.rmSync(dir, { recursive: true, force: true }) }
})

test.run()
