/**
 * The durable files between checkpoints (checkpoint/spool.ts): the inbox spool
 * `<dir>/inbox/<name>/<seq:012>.cbor`, drop files `in-<id>.cbor`, and the effect journal
 * `<dir>/effects/<name>/<id>.sent`. A corrupt spool file stops the reader with a CheckpointError
 * naming it; a corrupt drop file is set aside as `.bad-…` and never deleted.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { CheckpointError } from '../checkpoint/errors.ts'
import { decodeMessage, encodeMessage } from '../checkpoint/io.ts'
import type { Message } from '../checkpoint/io.ts'
import { EffectJournal, InboxSpool } from '../checkpoint/spool.ts'

const made: string[] = []
const tmp = (): string => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-spool-')); made.push(d); return d }
test.after.each(() => { for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })

const idN = (n: number): Uint8Array => { const b = new Uint8Array(16); new DataView(b.buffer).setUint32(12, n); return b }
const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex')
const T = 1_700_000_000_000_000_000n
const msg = (seq: number, n = seq, time = T + BigInt(n)): Message => ({ id: idN(n), seq, kind: 'message', from: 'tester', time, body: new Uint8Array(Buffer.from(`m${n}`)) })
const mode = (p: string): number => fs.statSync(p).mode & 0o777

function throwsCk (fn: () => unknown, re: RegExp): void {
  try { fn() } catch (e) {
    assert.instance(e, CheckpointError, (e as Error).message)
    assert.match((e as Error).message, re)
    return
  }
  assert.unreachable(`expected a CheckpointError matching ${re}`)
}

test('put writes <seq:012>.cbor (0600 in a 0700 dir), list returns them past `after` in seq order', () => {
  const d = tmp()
  const s = new InboxSpool(d, 'echo')
  assert.is(s.dir, path.join(d, 'inbox', 'echo'))
  assert.equal(s.list(), [], 'no directory yet: empty')
  assert.is(s.lastSeq(), 0)
  for (const k of [3, 1, 12, 2]) s.put(msg(k))
  assert.equal(fs.readdirSync(s.dir).sort(), ['000000000001.cbor', '000000000002.cbor', '000000000003.cbor', '000000000012.cbor'])
  assert.is(mode(s.dir), 0o700)
  assert.is(mode(path.join(d, 'inbox')), 0o700)
  assert.is(mode(path.join(s.dir, '000000000012.cbor')), 0o600)
  // the file is exactly the message's canonical CBOR
  assert.is(hex(fs.readFileSync(path.join(s.dir, '000000000002.cbor'))), hex(encodeMessage(msg(2))))
  assert.equal(s.list().map((m) => m.seq), [1, 2, 3, 12])
  assert.equal(s.list(2).map((m) => m.seq), [3, 12])
  assert.equal(s.list(12), [])
  assert.is(hex(s.list(11)[0].id), hex(idN(12)))
  assert.is(s.lastSeq(), 12)
  // put of the same seq replaces (a retry after a crash writes the same message)
  s.put({ ...msg(3), body: new Uint8Array([9]) })
  assert.equal([...s.list(2)[0].body], [9])
  // names that are not spool files are ignored (temp files, set-aside files, other names)
  for (const n of ['.000000000004.cbor.tmp-1-ab', '.bad-in-x.cbor', '4.cbor', '0000000000013.cbor', 'notes.txt']) fs.writeFileSync(path.join(s.dir, n), 'junk')
  assert.equal(s.list().map((m) => m.seq), [1, 2, 3, 12])
  assert.throws(() => s.put(msg(0)), /without a seq \(0\)/)
  assert.throws(() => s.put({ ...msg(1), seq: -1 }), /without a seq/)
})

test('prune removes spool files up to a seq and nothing else', () => {
  const d = tmp()
  const s = new InboxSpool(d, 'a')
  s.prune(10) // no directory: nothing to do
  for (let k = 1; k <= 5; k++) s.put(msg(k))
  s.putDrop(msg(0, 77))
  s.prune(3)
  assert.equal(s.list().map((m) => m.seq), [4, 5])
  assert.is(s.drops().length, 1, 'drop files are not pruned')
  s.prune(3) // again: nothing left to remove
  s.prune(100)
  assert.equal(s.list(), [])
  assert.is(s.drops().length, 1)
  assert.is(s.lastSeq(), 0)
})

test('a corrupt spool file is a CheckpointError naming the file (nothing skipped, nothing deleted)', () => {
  const d = tmp()
  const s = new InboxSpool(d, 'a')
  s.put(msg(1)); s.put(msg(2))
  const bad = path.join(s.dir, '000000000002.cbor')
  fs.writeFileSync(bad, Buffer.from(encodeMessage(msg(2))).subarray(0, 20)) // truncated
  throwsCk(() => s.list(), new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `))
  assert.equal(s.list(2), [], 'a file at or below `after` is not read')
  assert.ok(fs.existsSync(bad))
  fs.writeFileSync(bad, encodeMessage(msg(7))) // a valid message whose seq differs from the name
  throwsCk(() => s.list(), /000000000002\.cbor: holds message seq 7, not 2/)
  fs.writeFileSync(bad, '')
  throwsCk(() => s.list(), /000000000002\.cbor: empty/)
  // a file too large to be a message is refused before it is read (a sparse file: no disk used)
  fs.truncateSync(bad, 21 * 1024 * 1024)
  throwsCk(() => s.list(), /000000000002\.cbor: larger than 20971520 bytes; not an inbox message/)
  assert.ok(fs.existsSync(bad))
})

test('drops: in-<id>.cbor with seq 0, oldest first; the same id twice is one file; removeDrop', () => {
  const d = tmp()
  const s = new InboxSpool(d, 'a')
  assert.equal(s.drops(), [])
  s.putDrop(msg(5, 30, T + 2n))
  s.putDrop(msg(9, 10, T + 5n))
  s.putDrop(msg(0, 20, T + 2n)) // same time as id 30: the id breaks the tie
  s.putDrop(msg(0, 20, T + 2n)) // same id again: one file
  const names = fs.readdirSync(s.dir).sort()
  assert.equal(names, [`in-${hex(idN(10))}.cbor`, `in-${hex(idN(20))}.cbor`, `in-${hex(idN(30))}.cbor`])
  assert.is(mode(path.join(s.dir, names[0])), 0o600)
  const drops = s.drops()
  assert.equal(drops.map((x) => new DataView(x.msg.id.buffer, x.msg.id.byteOffset).getUint32(12)), [20, 30, 10])
  assert.ok(drops.every((x) => x.msg.seq === 0), 'a drop file carries no seq')
  assert.is(drops[0].file, path.join(s.dir, `in-${hex(idN(20))}.cbor`))
  assert.equal(s.list(), [], 'drop files are not spool files')
  s.removeDrop(drops[0].file)
  s.removeDrop(drops[0].file) // already gone: fine
  assert.is(s.drops().length, 2)
})

test('a corrupt drop file is set aside as .bad-<name>, kept, and not offered again', () => {
  const d = tmp()
  const s = new InboxSpool(d, 'a')
  s.putDrop(msg(0, 1))
  const name = `in-${hex(idN(2))}.cbor`
  fs.writeFileSync(path.join(s.dir, name), 'not cbor at all')
  const name3 = `in-${hex(idN(3))}.cbor`
  fs.writeFileSync(path.join(s.dir, name3), encodeMessage({ ...msg(0, 3), body: new Uint8Array(0) }).subarray(1))
  const drops = s.drops()
  assert.is(drops.length, 1)
  assert.is(hex(drops[0].msg.id), hex(idN(1)))
  assert.is(fs.readFileSync(path.join(s.dir, `.bad-${name}`), 'utf8'), 'not cbor at all', 'kept as it was')
  assert.ok(fs.existsSync(path.join(s.dir, `.bad-${name3}`)))
  assert.not.ok(fs.existsSync(path.join(s.dir, name)))
  assert.is(s.drops().length, 1, 'not offered again')
  s.prune(1000)
  assert.ok(fs.existsSync(path.join(s.dir, `.bad-${name}`)), 'prune never deletes a set-aside file')
  assert.is(s.count(0), 1, 'nor counts it')
})

test('count: spooled past `after` plus drop files', () => {
  const d = tmp()
  const s = new InboxSpool(d, 'a')
  assert.is(s.count(0), 0)
  for (let k = 1; k <= 4; k++) s.put(msg(k))
  s.putDrop(msg(0, 50)); s.putDrop(msg(0, 51))
  assert.is(s.count(0), 6)
  assert.is(s.count(2), 4)
  assert.is(s.count(4), 2)
})

test('spool and drop files of two agents do not mix', () => {
  const d = tmp()
  const a = new InboxSpool(d, 'a'); const b = new InboxSpool(d, 'b')
  a.put(msg(1)); b.put(msg(1, 9)); b.putDrop(msg(0, 8))
  assert.is(hex(a.list()[0].id), hex(idN(1)))
  assert.is(hex(b.list()[0].id), hex(idN(9)))
  assert.is(a.drops().length, 0)
  a.prune(5)
  assert.is(b.list().length, 1)
  assert.is(decodeMessage(fs.readFileSync(path.join(b.dir, '000000000001.cbor')), 'x').seq, 1)
})

test('deferDirSync: puts leave the directory fsync to flush; a failed flush leaves the spool unsynced until one succeeds', () => {
  const s = new InboxSpool(tmp(), 'echo')
  s.deferDirSync = true
  s.put(msg(1)); s.put(msg(2))
  assert.equal(s.list().map((m) => m.seq), [1, 2])
  const away = `${s.dir}.away`
  fs.renameSync(s.dir, away) // the directory cannot be opened: its fsync fails
  assert.throws(() => s.flush(), /cannot open directory/)
  assert.throws(() => s.flush(), /cannot open directory/, 'still unsynced')
  fs.renameSync(away, s.dir)
  s.flush()
  fs.renameSync(s.dir, away)
  s.flush() // synced: nothing to do
  fs.renameSync(away, s.dir)
  s.deferDirSync = false
  s.put(msg(3)) // a put with its own directory fsync
  fs.renameSync(s.dir, away)
  s.flush()
  fs.renameSync(away, s.dir)
  assert.equal(s.list().map((m) => m.seq), [1, 2, 3])
})

test('EffectJournal: markSent is durable and private, wasSent, prune keeps the pending ids', () => {
  const d = tmp()
  const j = new EffectJournal(d, 'poster')
  assert.is(j.dir, path.join(d, 'effects', 'poster'))
  assert.not.ok(j.wasSent(1))
  j.prune(new Set()) // no directory: fine
  for (const id of [1, 2, 3, 10]) j.markSent(id)
  assert.equal(fs.readdirSync(j.dir).sort(), ['1.sent', '10.sent', '2.sent', '3.sent'])
  assert.is(mode(j.dir), 0o700)
  assert.is(mode(path.join(j.dir, '1.sent')), 0o600)
  assert.is(fs.statSync(path.join(j.dir, '1.sent')).size, 0)
  assert.ok(j.wasSent(3)); assert.not.ok(j.wasSent(4))
  j.markSent(3) // again: still one mark
  fs.writeFileSync(path.join(j.dir, 'notes.txt'), 'x')
  j.prune(new Set([2, 10]))
  assert.equal(fs.readdirSync(j.dir).sort(), ['10.sent', '2.sent', 'notes.txt'])
  assert.not.ok(j.wasSent(1)); assert.ok(j.wasSent(2)); assert.ok(j.wasSent(10))
  assert.not.ok(new EffectJournal(d, 'other').wasSent(2), 'per agent')
})

test.run()
