/**
 * p2p/authority.ts: the records a node keeps so that a migration never leaves two live copies or
 * none — pending arrivals, the handoff record, finding a committed handoff in the history, checking
 * a handoff against the offered checkpoint, and the outcome log.
 */
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decodeHeader, headerCid } from '../checkpoint/header.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import type { Identity } from '../checkpoint/identity.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { readEntryAt } from '../checkpoint/entries.ts'
import { CheckpointWriter, decodeEntry } from '../checkpoint/writer.ts'
import * as authority from '../p2p/authority.ts'
import { entriesIn, explode } from './hist.ts'

const tmp: string[] = []
const mkdir = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-authority-')); tmp.push(d); return d }
test.after.each(() => { for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })

/** Writes checkpoint C (running, tick 3) and then its handoff H to `target`; returns both, signed. */
function offeredAndHandoff (dir: string, id: Identity, target = 'hostB', tweak: { fuel?: bigint } = {}) {
  const w = new CheckpointWriter(dir, 'a')
  const page = new Uint8Array(PAGE_SIZE).fill(9)
  const snap = () => ({ pageCount: 1, pages: [[0, page]] as [number, Uint8Array][], digests: [[0, createHash('sha256').update(page).digest()]] as [number, Uint8Array][], changed: null, globals: [] })
  const base = { identity: id, wasm: Buffer.from('\0asmfake'), manifest: Buffer.from('{}'), tick: 3, epoch: 0, budget: 500n, price: 1000n, host: 'hostA', log: null }
  const c = w.write({ ...base, snapshot: snap(), prev: null, fuel: 100n, status: 'running' })
  const cEntry = decodeEntry(readEntryAt(w.lastStats!.entryFile, w.lastStats!.entryAt), 'c')
  w.write({ ...base, snapshot: snap(), prev: c.cid, fuel: tweak.fuel ?? 100n, status: 'handoff', target })
  const hEntry = decodeEntry(readEntryAt(w.lastStats!.entryFile, w.lastStats!.entryAt), 'h')
  return { c: { header: cEntry.headerBytes, sig: cEntry.sig, parsed: cEntry.parsed, cid: c.cid }, h: { header: hEntry.headerBytes, sig: hEntry.sig } }
}

test('pending records: written 0600, read back, listed, dropped', () => {
  const dir = mkdir()
  const rec = { id: 'ab'.repeat(16), from: 'peerA', addrs: ['/ip4/127.0.0.1/tcp/1/p2p/peerA'], offer: 'bafkreiabc', agent: 'did:key:z6Mk', tick: 7, epoch: 2 }
  authority.writePending(dir, 'agent1', [new Uint8Array([1, 2]), new Uint8Array([3])], rec)
  const p = authority.recordPaths(dir, 'agent1')
  assert.equal(fs.readFileSync(p.pendingCkpt), Buffer.from([1, 2, 3]))
  assert.is(fs.statSync(p.pendingCkpt).mode & 0o777, 0o600)
  assert.is(fs.statSync(p.pending).mode & 0o777, 0o600)
  assert.equal(authority.readPending(dir, 'agent1'), rec)
  assert.equal(authority.pendingNames(dir), ['agent1'])
  authority.dropPending(dir, 'agent1')
  assert.is(authority.readPending(dir, 'agent1'), null)
  assert.equal(authority.pendingNames(dir), [])
  assert.not.ok(fs.existsSync(p.pendingCkpt))
})

const REC = { id: 'cd'.repeat(16), from: 'peerA', addrs: ['/ip4/127.0.0.1/tcp/1/p2p/peerA'], offer: 'bafkreiabc', agent: 'did:key:z6Mk', tick: 7, epoch: 2 }
const CKPT = new Uint8Array([7, 7, 7, 7])

/** The one quarantine folder of `dir` and its files with their bytes. */
function quarantinedFiles (dir: string): { folder: string; files: Map<string, Buffer> } {
  const q = authority.quarantined(dir)
  assert.is(q.length, 1, `one quarantine folder: ${q.join(', ')}`)
  const files = new Map<string, Buffer>()
  for (const n of fs.readdirSync(q[0])) if (fs.statSync(path.join(q[0], n)).isFile()) files.set(n, fs.readFileSync(path.join(q[0], n)))
  return { folder: q[0], files }
}

test('only a definite "no record" (ENOENT) reads as none: nothing is moved or reported', () => {
  const dir = mkdir()
  const notes: string[] = []
  assert.is(authority.readPending(dir, 'x', (l) => notes.push(l)), null)
  assert.is(authority.readHandoffRecord(dir, 'x', (l) => notes.push(l)), null)
  assert.equal(notes, [])
  assert.equal(authority.quarantined(dir), [])
})

for (const [what, spoil] of [
  ['corrupt bytes', (dir: string) => { fs.writeFileSync(authority.recordPaths(dir, 'x').pending, 'not cbor') }],
  ['a directory in place of the file (EISDIR)', (dir: string) => { const p = authority.recordPaths(dir, 'x').pending; fs.rmSync(p); fs.mkdirSync(p) }],
  ['EACCES', () => { authority.authorityIo.readFile = (p) => { if (p.endsWith('.pending.cbor')) throw Object.assign(new Error(`EACCES: permission denied, open '${p}'`), { code: 'EACCES' }); return fs.readFileSync(p) } }],
  ['EIO', () => { authority.authorityIo.readFile = (p) => { if (p.endsWith('.pending.cbor')) throw Object.assign(new Error(`EIO: i/o error, read '${p}'`), { code: 'EIO' }); return fs.readFileSync(p) } }],
] as const) {
  test(`an unreadable pending arrival (${what}) is moved aside with its live checkpoint and reported, never deleted`, () => {
    const dir = mkdir()
    authority.writePending(dir, 'x', [CKPT], REC)
    spoil(dir)
    const notes: string[] = []
    try {
      assert.is(authority.readPending(dir, 'x', (l) => notes.push(l)), null)
    } finally { authority.authorityIo.readFile = (p) => fs.readFileSync(p) }
    const p = authority.recordPaths(dir, 'x')
    assert.not.ok(fs.existsSync(p.pendingCkpt))
    assert.not.ok(fs.existsSync(p.pending))
    assert.equal(authority.pendingNames(dir), [])
    const { folder, files } = quarantinedFiles(dir)
    assert.match(path.basename(folder), /^x-\d{4}-\d\d-\d\dT/)
    assert.is(fs.statSync(folder).mode & 0o777, 0o700)
    assert.equal(files.get('x.pending.ckpt'), Buffer.from(CKPT), 'the live checkpoint is kept byte for byte')
    assert.ok(fs.existsSync(path.join(folder, 'x.pending.cbor')), 'the record is kept')
    assert.match(files.get('reason.txt')!.toString(), /unreadable pending arrival/)
    assert.is(notes.length, 1)
    assert.match(notes[0], new RegExp(`^x: unreadable pending arrival: .*moved aside to ${folder.replace(/[.]/g, '\\.')}`))
    const log = fs.readFileSync(path.join(dir, 'migrations.log'), 'utf8')
    assert.match(log, /"outcome":"quarantined","name":"x"/)
  })
}

test('a pending arrival that cannot even be moved aside stays where it is and the read throws', () => {
  const dir = mkdir()
  authority.writePending(dir, 'x', [CKPT], REC)
  fs.writeFileSync(authority.recordPaths(dir, 'x').pending, 'not cbor')
  fs.writeFileSync(path.join(dir, 'migrate', 'quarantine'), 'a file where the quarantine folder goes')
  assert.throws(() => authority.readPending(dir, 'x'), /cannot create the quarantine folder/)
  assert.ok(fs.existsSync(authority.recordPaths(dir, 'x').pendingCkpt))
  assert.ok(fs.existsSync(authority.recordPaths(dir, 'x').pending))
})

test('a pending live checkpoint without its record is set aside, not deleted', () => {
  const dir = mkdir()
  authority.writePending(dir, 'x', [CKPT], REC)
  fs.unlinkSync(authority.recordPaths(dir, 'x').pending)
  assert.ok(authority.setAsideOrphanPending(dir, 'x') !== null)
  assert.equal(quarantinedFiles(dir).files.get('x.pending.ckpt'), Buffer.from(CKPT))
  assert.is(authority.setAsideOrphanPending(dir, 'x'), null)
})

test('findHandoff never answers "not handed off" when an entry at that tick cannot be read', () => {
  const src = mkdir(); const id = generateIdentity()
  const { c } = offeredAndHandoff(src, id)
  assert.ok(authority.findHandoff(src, 'a', 3, c.cid) !== null)
  const hist = path.join(src, 'history', 'a')
  explode(hist) // one file per entry (the layout before segments, still read), to spoil the handoff's alone
  assert.ok(authority.findHandoff(src, 'a', 3, c.cid) !== null)
  const handoffFile = entriesIn(hist).find((t) => t.e.parsed.status === 'handoff')!.file
  assert.ok(handoffFile.endsWith('.cbor'))
  fs.writeFileSync(handoffFile, 'garbage')
  assert.throws(() => authority.findHandoff(src, 'a', 3, c.cid), /cannot tell whether a was handed off at tick 3/)
  assert.is(authority.findHandoff(src, 'a', 4, c.cid), null, 'other ticks are still answered')
  assert.is(authority.findHandoff(src, 'nobody', 3, c.cid), null)
})

test('handoff record: a validly signed one reads back; an altered one is quarantined', () => {
  const dir = mkdir(); const id = generateIdentity()
  const { h } = offeredAndHandoff(mkdir(), id)
  authority.writeHandoffRecord(dir, 'a', h)
  const back = authority.readHandoffRecord(dir, 'a')!
  assert.equal(back.header, h.header)
  assert.is(back.parsed.status, 'handoff')
  authority.dropHandoffRecord(dir, 'a')
  assert.not.ok(fs.existsSync(authority.recordPaths(dir, 'a').handoff))
  // an altered one is moved aside (and reported), not trusted and not deleted
  const sig = h.sig.slice(); sig[0] ^= 1
  authority.writeHandoffRecord(dir, 'a', { header: h.header, sig })
  const notes: string[] = []
  assert.is(authority.readHandoffRecord(dir, 'a', (l) => notes.push(l)), null)
  assert.not.ok(fs.existsSync(authority.recordPaths(dir, 'a').handoff))
  assert.match(notes[0], /unreadable handoff record: .*signature does not verify/)
  assert.ok(quarantinedFiles(dir).files.has('a.handoff.cbor'))
})

test('findHandoff finds the committed handoff by tick and prev, and nothing else', () => {
  const dir = mkdir(); const id = generateIdentity()
  const { c, h } = offeredAndHandoff(dir, id)
  const found = authority.findHandoff(dir, 'a', 3, c.cid)!
  assert.equal(found.header, h.header)
  assert.is(found.parsed.target, 'hostB')
  assert.is(authority.findHandoff(dir, 'a', 3, headerCid(h.header)), null, 'another prev')
  assert.is(authority.findHandoff(dir, 'a', 4, c.cid), null, 'another tick')
  assert.is(authority.findHandoff(dir, 'nobody', 3, c.cid), null, 'no history')
})

test('checkHandoff accepts the handoff of the offered checkpoint to me, and names what is wrong otherwise', () => {
  const id = generateIdentity()
  const { c, h } = offeredAndHandoff(mkdir(), id)
  assert.is(authority.checkHandoff(h, c.parsed, c.cid, 'hostB'), null)
  assert.match(authority.checkHandoff(h, c.parsed, c.cid, 'hostC')!, /names hostB, not this node/)
  assert.match(authority.checkHandoff(h, c.parsed, 'bafkreiother', 'hostB')!, /does not follow the offered checkpoint/)
  const sig = h.sig.slice(); sig[5] ^= 1
  assert.match(authority.checkHandoff({ header: h.header, sig }, c.parsed, c.cid, 'hostB')!, /signature does not verify/)
  assert.match(authority.checkHandoff(c, c.parsed, c.cid, 'hostB')!, /status running/)
  const other = offeredAndHandoff(mkdir(), generateIdentity())
  assert.match(authority.checkHandoff(other.h, c.parsed, c.cid, 'hostB')!, /handoff is for did:key:/)
  const changed = offeredAndHandoff(mkdir(), id, 'hostB', { fuel: 101n })
  assert.match(authority.checkHandoff(changed.h, changed.c.parsed, changed.c.cid, 'hostB')!, /changes the offered state/)
  assert.is(decodeHeader(changed.h.header, 'h').fuel, 101n)
})

test('recordOutcome appends one JSON line per outcome with a time', () => {
  const dir = mkdir()
  authority.recordOutcome(dir, { role: 'source', outcome: 'handoff', tick: 3 })
  authority.recordOutcome(dir, { role: 'target', outcome: 'arrived' })
  const lines = fs.readFileSync(path.join(dir, 'migrations.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  assert.is(lines.length, 2)
  assert.is(lines[0].outcome, 'handoff'); assert.is(lines[1].role, 'target')
  assert.ok(!Number.isNaN(Date.parse(lines[0].time)))
})

test.run()
