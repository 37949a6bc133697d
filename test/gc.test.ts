/**
 * Tests of retention (checkpoint/gc.ts): which checkpoints keep their pages, the pack merge, dry
 * runs, loose page files of the old layout, the GC record and what verify says with and without it
 * (a lost blob is not a pruned blob), a crash at every durable step of gc, and `verify --replay`
 * restarting from the nearest kept snapshot of a real agent's history.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { createHash } from 'node:crypto'
import { archivedState } from '../checkpoint/archive.ts'
import { gcAgent, gcHooks, gcTargets, readGcRecord } from '../checkpoint/gc.ts'
import { digestOfCid } from '../checkpoint/hash.ts'
import { generateIdentity, type Identity } from '../checkpoint/identity.ts'
import { gcRecordPath } from '../checkpoint/layout.ts'
import { isPackName } from '../checkpoint/pack.ts'
import { segmentFileName } from '../checkpoint/layout.ts'
import { frameHead, SEGMENT_MAGIC } from '../checkpoint/segment.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { verifyChain, verifyHistory } from '../checkpoint/history.ts'
import { CheckpointWriter, type Snapshot } from '../checkpoint/writer.ts'
import { replayHistory } from '../runtime/replay.ts'
import { blobCids, dropBlob, unpackToFiles } from './blobs.ts'
import { entriesIn } from './hist.ts'
import { agentWasm, cleanup, igord, tempDir } from './helpers.ts'

/** A stand-in for the runtime (as in test/history.test.ts): four pages, one changed per tick. */
class Fake {
  readonly id: Identity
  pages = new Map<number, Buffer>()
  dirty = new Set<number>()
  tick = 0; fuel = 0n; budget = 1_000_000n
  prev: string | null = null
  constructor (id: Identity) { this.id = id }
  step () {
    const i = this.tick % 4
    let p = this.pages.get(i)
    if (p === undefined) { p = Buffer.alloc(PAGE_SIZE); this.pages.set(i, p) }
    p.writeUInt32LE(this.tick * 7 + 1, (this.tick * 4099) % (PAGE_SIZE - 4)); this.dirty.add(i) // another 4 KiB chunk each time
  }
  snapshot (): Snapshot {
    const pages = [...this.pages.entries()].sort((a, b) => a[0] - b[0]) as [number, Uint8Array][]
    const s: Snapshot = { pageCount: 4, pages, digests: pages.map(([i, p]) => [i, createHash('sha256').update(p).digest()]), changed: [...this.dirty], globals: [] }
    this.dirty.clear()
    return s
  }
  /** `n` checkpoints with a fresh writer (a new session: a new pack). */
  session (dir: string, n: number): void {
    const w = new CheckpointWriter(dir, 'fake')
    for (let k = 0; k < n; k++) {
      if (this.tick > 0) this.step()
      const r = w.write({ identity: this.id, wasm: Buffer.from('\0asmfake'), manifest: Buffer.from('{}'), snapshot: this.snapshot(), tick: this.tick, epoch: 0, prev: this.prev, fuel: this.fuel, budget: this.budget, price: 1000n, host: 'hostA', status: 'running', log: Buffer.from(`log of tick ${this.tick}`) })
      this.prev = r.cid; this.tick++; this.fuel += 1000n; this.budget -= 3n
    }
    w.close()
  }
}

const tmp: string[] = []
const mkdir = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-gc-')); tmp.push(d); return d }
test.after.each(() => { gcHooks.step = null; for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true }); cleanup() })

/** A fake agent's 25 checkpoints written by 3 sessions (3 packs). */
function history (): { dir: string; fake: Fake } {
  const dir = mkdir()
  const fake = new Fake(generateIdentity())
  fake.session(dir, 10); fake.session(dir, 10); fake.session(dir, 5)
  return { dir, fake }
}
const packs = (dir: string) => fs.readdirSync(path.join(dir, 'blobs')).filter(isPackName)
const listing = (dir: string) => fs.readdirSync(path.join(dir, 'blobs')).sort().map((n) => `${n}:${fs.statSync(path.join(dir, 'blobs', n)).size}`)

/** For each checkpoint of the chain: can its memory be read back (every page present and right)? */
function restorable (dir: string): boolean[] {
  const c = verifyChain([dir])
  assert.ok(c.report.valid, JSON.stringify(c.report.faults))
  let t: (Uint8Array | undefined)[] = []
  return c.links.map((l) => {
    if (l.entry.base) t = []
    else t = t.slice()
    for (const [i, cid] of l.entry.pages) t[i] = cid === null ? undefined : digestOfCid(cid)
    try { archivedState(c.blobDirs, t, l.entry); return true } catch { return false }
  })
}

test('gc keeps the pages of every 10th checkpoint, the last K and the live one; merges the packs; verify VALID and says how many it could not check', () => {
  const { dir } = history()
  assert.is(packs(dir).length, 3)
  const before = verifyHistory([dir])
  assert.ok(before.valid)
  assert.is(before.pruned, 0)
  const r = gcAgent(dir, 'fake', { keepEvery: 10, keepLast: 2 })
  // positions 0, 10, 20 (every 10th), 23, 24 (the last 2; 24 is also the live one)
  assert.equal([r.checkpoints, r.kept, r.pruned, r.newlyPruned, r.packsBefore, r.packsAfter], [25, 5, 20, 20, 3, 1])
  assert.ok(r.bytesAfter < r.bytesBefore, `${r.bytesBefore} → ${r.bytesAfter}`)
  assert.ok(r.blobsBytesAfter < r.blobsBytesBefore)
  assert.is(packs(dir).length, 1)
  const ok = restorable(dir)
  assert.equal(ok.map((x, k) => x ? k : -1).filter((k) => k >= 0).filter((k) => [0, 10, 20, 23, 24].includes(k)), [0, 10, 20, 23, 24])
  assert.ok(ok.filter((x) => !x).length > 0, 'some pruned checkpoint lost a page')
  const rec = readGcRecord(gcRecordPath(dir, 'fake'))!
  assert.is(rec.pruned.length, 20)
  const v = verifyHistory([dir])
  assert.ok(v.valid, JSON.stringify(v.faults))
  assert.is(v.pruned, 20)
  assert.equal(v.gcRecords, [gcRecordPath(dir, 'fake')])
  // every event log is still there
  const cids = new Set(blobCids(dir))
  for (const l of verifyChain([dir]).links) assert.ok(cids.has(l.entry.parsed.log!), `log of tick ${l.entry.parsed.tick}`)
  // a second pass has nothing left to prune and one pack to keep
  const again = gcAgent(dir, 'fake', { keepEvery: 10, keepLast: 2 })
  assert.equal([again.newlyPruned, again.framesDropped, again.packsAfter], [0, 0, 1])
})

test('--dry-run reports the same plan and changes nothing', () => {
  const { dir } = history()
  const files = listing(dir)
  const dry = gcAgent(dir, 'fake', { keepEvery: 5, keepLast: 1, dryRun: true })
  assert.equal(listing(dir), files)
  assert.not.ok(fs.existsSync(gcRecordPath(dir, 'fake')))
  const real = gcAgent(dir, 'fake', { keepEvery: 5, keepLast: 1 })
  assert.equal({ ...dry, dryRun: false, blobsBytesAfter: 0 }, { ...real, blobsBytesAfter: 0 })
  assert.is(real.bytesAfter, packs(dir).reduce((k, n) => k + fs.statSync(path.join(dir, 'blobs', n)).size, 0))
})

test('a page missing WITHOUT a gc record is still INVALID; so is a kept checkpoint\'s page missing with one', () => {
  const { dir } = history()
  gcAgent(dir, 'fake', { keepEvery: 10, keepLast: 1 })
  assert.ok(verifyHistory([dir]).valid)
  // the record deleted: the pruned pages are lost blobs again
  const rec = fs.readFileSync(gcRecordPath(dir, 'fake'))
  fs.unlinkSync(gcRecordPath(dir, 'fake'))
  const lost = verifyHistory([dir])
  assert.not.ok(lost.valid)
  assert.ok(lost.faults.some((f) => /page \d+ blob \w+ is missing/.test(f.fault)), JSON.stringify(lost.faults))
  // with the record, a page of a kept checkpoint (tick 10) dropped: INVALID, named at tick 10
  fs.writeFileSync(gcRecordPath(dir, 'fake'), rec)
  const c = verifyChain([dir])
  const at10 = c.links[10]
  let t: (Uint8Array | undefined)[] = []
  const cids = new Map<number, string>()
  for (const l of c.links.slice(0, 11)) { if (l.entry.base) { t = []; cids.clear() } for (const [i, cid] of l.entry.pages) { t[i] = cid === null ? undefined : digestOfCid(cid); if (cid !== null) cids.set(i, cid) } }
  const victim = [...cids.values()].find((cid) => !c.links.slice(11).some((l) => l.entry.pages.some(([, x]) => x === cid)) && !c.links.slice(0, 10).some((l) => l.entry.pages.some(([, x]) => x === cid)))
  assert.ok(victim !== undefined && at10.entry.parsed.tick === 10)
  dropBlob(dir, victim)
  const bad = verifyHistory([dir])
  assert.not.ok(bad.valid)
  assert.ok(bad.faults.some((f) => f.tick === 10 && f.fault.includes(`${victim} is missing`)), JSON.stringify(bad.faults))
  // a record of another agent is a fault, not an excuse
  const other = JSON.parse(rec.toString()) as { agent: string }
  other.agent = 'did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH'
  fs.writeFileSync(gcRecordPath(dir, 'fake'), JSON.stringify(other))
  assert.ok(verifyHistory([dir]).faults.some((f) => /GC record of did:key:z6MkpTHR/.test(f.fault)))
})

test('loose page files of the old layout: deleted only when no kept checkpoint and no other agent names them', () => {
  const { dir } = history()
  unpackToFiles(dir)
  const loose = () => fs.readdirSync(path.join(dir, 'blobs')).filter((n) => n.startsWith('bafk'))
  const n0 = loose().length
  // another agent whose history names one of the pages only pruned checkpoints use
  const c = verifyChain([dir])
  const shared = c.links[3].entry.pages.find(([, x]) => x !== null)![1]!
  const oh = path.join(dir, 'history', 'other')
  fs.mkdirSync(oh)
  // its history: a segment of one frame, the entry of fake's tick 3
  const e3 = entriesIn(path.join(dir, 'history', 'fake')).find((t) => t.where === c.links[3].file)!
  assert.is(e3.tick, 3)
  fs.writeFileSync(path.join(oh, segmentFileName(e3.tick, e3.cid, '0000000a')), Buffer.concat([SEGMENT_MAGIC, frameHead(e3.bytes), e3.bytes]))
  assert.equal(entriesIn(oh).map((t) => t.cid), [e3.cid])
  const r = gcAgent(dir, 'fake', { keepEvery: 10, keepLast: 1 })
  assert.ok(r.looseDeleted > 0)
  assert.is(loose().length, n0 - r.looseDeleted)
  assert.ok(loose().includes(shared), 'a page another history names is kept')
  fs.rmSync(oh, { recursive: true })
  assert.ok(verifyHistory([dir]).valid)
})

test('a crash after each durable step of gc leaves a VALID history that a second gc completes and a writer continues', () => {
  for (const step of ['pack-written', 'pack-renamed', 'record-written', 'pack-unlinked']) {
    const { dir, fake } = history()
    gcHooks.step = (s) => { if (s === step) throw new Error(`crash at ${s}`) }
    assert.throws(() => gcAgent(dir, 'fake', { keepEvery: 10, keepLast: 1 }), /crash at/)
    gcHooks.step = null
    for (const n of fs.readdirSync(path.join(dir, 'blobs')).filter((x) => x.startsWith('.gc-'))) fs.unlinkSync(path.join(dir, 'blobs', n)) // a temp file: ignored by readers
    const v = verifyHistory([dir])
    assert.ok(v.valid, `${step}: ${JSON.stringify(v.faults)}`)
    const r = gcAgent(dir, 'fake', { keepEvery: 10, keepLast: 1 })
    assert.is(r.packsAfter, 1, step)
    fake.session(dir, 3)
    const after = verifyHistory([dir])
    assert.ok(after.valid, `${step}, then 3 more checkpoints: ${JSON.stringify(after.faults)}`)
  }
})

test('a history with a gap (the agent lived elsewhere between) is collected segment by segment; the live .ckpt is never touched', () => {
  const a = mkdir(); const b = mkdir()
  const fake = new Fake(generateIdentity())
  fake.session(a, 12); fake.session(b, 12); fake.session(a, 12) // a: ticks 0–11 and 24–35
  const liveBefore = fs.readFileSync(path.join(a, 'fake.ckpt'))
  assert.not.ok(verifyHistory([a]).valid) // the gap alone
  const r = gcAgent(a, 'fake', { keepEvery: 5, keepLast: 1 })
  // positions 0, 5, 10 | 15, 20 (k % 5), 12 (its segment's first: tick 24), 23 (the last)
  assert.equal([r.checkpoints, r.kept], [24, 7])
  assert.equal(fs.readFileSync(path.join(a, 'fake.ckpt')), liveBefore)
  const v = verifyHistory([a, b])
  assert.ok(v.valid, JSON.stringify(v.faults))
  assert.is(v.pruned, 17)
})

test('in a running writer (the node\'s way): its own pack is left alone, the chunks its pages share with older packs stay, and it writes on after forget()', () => {
  const dir = mkdir()
  const fake = new Fake(generateIdentity())
  fake.session(dir, 10)
  const w = new CheckpointWriter(dir, 'fake')
  const write = (n: number) => {
    for (let k = 0; k < n; k++) {
      fake.step()
      const r = w.write({ identity: fake.id, wasm: Buffer.from('\0asmfake'), manifest: Buffer.from('{}'), snapshot: fake.snapshot(), tick: fake.tick, epoch: 0, prev: fake.prev, fuel: fake.fuel, budget: fake.budget, price: 1000n, host: 'hostA', status: 'running', log: Buffer.from(`log of tick ${fake.tick}`) })
      fake.prev = r.cid; fake.tick++; fake.fuel += 1000n; fake.budget -= 3n
    }
  }
  write(10)
  for (let pass = 0; pass < 3; pass++) {
    const own = path.basename(w.blobs.packFile) // the pack it writes now (a new one after each forget())
    const r = gcAgent(dir, 'fake', { keepEvery: 7, keepLast: 1, excludePacks: new Set([own]) })
    assert.ok(fs.existsSync(path.join(dir, 'blobs', own)), 'the writer\'s pack stays')
    if (pass === 0) assert.ok(r.newlyPruned > 10)
    w.blobs.forget()
    const v = verifyHistory([dir])
    assert.ok(v.valid, `pass ${pass}: ${JSON.stringify(v.faults)}`)
    write(6)
    const v2 = verifyHistory([dir])
    assert.ok(v2.valid, `pass ${pass}, then 6 checkpoints: ${JSON.stringify(v2.faults)}`)
  }
  assert.ok(restorable(dir).at(-1), 'the newest checkpoint can be restored')
  w.close()
})

test('gcTargets: a data directory (every agent) or history/<name>; anything else is refused', () => {
  const { dir } = history()
  assert.equal(gcTargets(dir), { dir, names: ['fake'] })
  assert.equal(gcTargets(path.join(dir, 'history', 'fake')), { dir, names: ['fake'] })
  assert.throws(() => gcTargets(path.join(dir, 'blobs')), /not a data directory/)
})

test('verify --replay of a real agent after gc restarts each resumed segment from the nearest kept snapshot, VALID; --from picks a kept one', () => {
  const dir = tempDir()
  const run = (args: string[]) => { const r = igord([...args, '--interval', '0ms', '-q']); assert.is(r.code, 0, r.stderr) }
  run(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '24', '--sim-seed', 'gc'])
  run(['resume', path.join(dir, 'heartbeat.ckpt'), '--ticks', '8', '--sim-seed', 'gc'])
  run(['resume', path.join(dir, 'heartbeat.ckpt'), '--ticks', '8', '--sim-seed', 'gc'])
  const r = gcAgent(dir, 'heartbeat', { keepEvery: 7, keepLast: 1 })
  assert.ok(r.newlyPruned > 20)
  const whole = replayHistory([dir])
  assert.ok(whole.valid, JSON.stringify(whole.divergence ?? whole.error))
  assert.equal(whole.range, [0, 40])
  const from = replayHistory([dir], { from: 26 })
  assert.ok(from.valid, JSON.stringify(from.divergence ?? from.error))
  assert.is(from.from, 21) // positions 0, 7, 14, 21, 28, 35 keep their pages
})

test.run()
