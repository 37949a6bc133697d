import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { createHash } from 'node:crypto'
import { cidOf } from '../checkpoint/hash.ts'
import type { Status } from '../checkpoint/header.ts'
import { generateIdentity, type Identity } from '../checkpoint/identity.ts'
import { readLive } from '../checkpoint/live.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { CheckpointWriter, decodeEntry, encodeEntry, type HistoryEntry, type Snapshot } from '../checkpoint/writer.ts'
import { findHistory, formatReport, verifyHistory, type VerifyReport } from '../checkpoint/history.ts'
import { blobBytes, dropBlob, flipBlobByte } from './blobs.ts'
import { entriesIn, entryFiles, explode, segmentFiles } from './hist.ts'

/** A stand-in for the runtime: pages, a dirty set, counters and lineage. */
class Fake {
  readonly id: Identity
  pages = new Map<number, Buffer>()
  dirty = new Set<number>()
  tick = 0; fuel = 0n; budget = 1_000_000n; epoch = 0; host = 'hostA'
  prev: string | null = null
  constructor (id: Identity) { this.id = id }
  step (salt = 0) {
    const i = this.tick % 3
    let p = this.pages.get(i)
    if (p === undefined) { p = Buffer.alloc(PAGE_SIZE); this.pages.set(i, p) }
    p.writeUInt32LE(this.tick * 7 + salt, 16 * (this.tick % 50)); this.dirty.add(i)
  }
  snapshot (): Snapshot {
    const pages = [...this.pages.entries()].sort((a, b) => a[0] - b[0]) as [number, Uint8Array][]
    const s: Snapshot = { pageCount: 4, pages, digests: pages.map(([i, p]) => [i, createHash('sha256').update(p).digest()]), changed: [...this.dirty], globals: [{ index: 3, type: 'i64', bytes: new Uint8Array(8).fill(this.tick & 255) }] }
    this.dirty.clear()
    return s
  }
  write (w: CheckpointWriter, status: Status = 'running', target?: string) {
    const r = w.write({ identity: this.id, wasm: Buffer.from('\0asmfake'), manifest: Buffer.from('{}'), snapshot: this.snapshot(), tick: this.tick, epoch: this.epoch, prev: this.prev, fuel: this.fuel, budget: this.budget, price: 1000n, host: this.host, status, ...(target ? { target } : {}), log: Buffer.from(`log of tick ${this.tick}`) })
    this.prev = r.cid; this.tick++; this.fuel += 1000n; this.budget -= 3n
    return r
  }
  run (w: CheckpointWriter, n: number, salt = 0) { for (let k = 0; k < n; k++) { if (this.tick > 0) this.step(salt); this.write(w) } }
}

const tmp: string[] = []
const mkdir = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-history-')); tmp.push(d); return d }
test.after.each(() => { for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })
const hist = (dir: string) => path.join(dir, 'history', 'a')
/** The entry file of `tick` in the history of data dir `dir`, once {@link explode}d (the layout before segments: one file per entry). */
const entryAt = (dir: string, tick: number) => {
  const f = entryFiles(hist(dir)).find((n) => path.basename(n).startsWith(String(tick).padStart(12, '0') + '-'))
  if (f === undefined) throw new Error(`no entry file of tick ${tick} in ${hist(dir)} (explode it first)`)
  return f
}
/** Rewrites the history of data dir `dir` as one entry file per entry, which verify still reads: tests that corrupt, delete, swap or forge single entries work on them. */
const explodeDir = (dir: string, alone = true) => {
  assert.ok(segmentFiles(hist(dir)).length > 0, 'a writer writes segments')
  explode(hist(dir))
  if (alone) assert.ok(verifyHistory([dir]).valid, 'exploded history verifies')
}
const faultTicks = (r: VerifyReport) => r.faults.map((f) => f.tick)

function history30 (): { dir: string; fake: Fake } {
  const dir = mkdir(); const fake = new Fake(generateIdentity())
  fake.run(new CheckpointWriter(dir, 'a'), 30)
  return { dir, fake }
}

test('a clean 30-checkpoint history is VALID, by data dir, history dir or files', () => {
  const { dir, fake } = history30()
  const r = verifyHistory([dir])
  assert.ok(r.valid, formatReport(r))
  assert.is(r.checkpoints, 30); assert.equal(r.ticks, [0, 29]); assert.is(r.did, fake.id.did)
  assert.equal(r.epochs, [0]); assert.equal(r.hosts, ['hostA'])
  assert.is(formatReport(r).split('\n')[0], `VALID: 30 checkpoints, ticks 0–29, ${fake.id.did}`)
  assert.ok(verifyHistory([hist(dir)]).valid)
  const files = fs.readdirSync(hist(dir)).map((n) => path.join(hist(dir), n))
  assert.ok(verifyHistory(files).valid)
})

test('flipping any single byte of an archived entry makes it INVALID naming that tick', () => {
  const { dir } = history30()
  explodeDir(dir)
  const file = entryAt(dir, 12)
  const good = fs.readFileSync(file)
  for (let pos = 0; pos < good.length; pos++) {
    const bad = Buffer.from(good); bad[pos] ^= 0x10
    fs.writeFileSync(file, bad)
    const r = verifyHistory([dir])
    assert.not.ok(r.valid, `byte ${pos} flipped yet VALID`)
    assert.ok(faultTicks(r).includes(12), `byte ${pos}: ${formatReport(r)}`)
  }
  fs.writeFileSync(file, good)
  assert.ok(verifyHistory([dir]).valid)
})

test('a flipped byte in a page blob is INVALID naming the tick and the blob', () => {
  const { dir, fake } = history30()
  const r0 = verifyHistory([dir]); assert.ok(r0.valid)
  const page = fake.pages.get(29 % 3)!
  flipBlobByte(dir, cidOf(page), 1000)
  const r = verifyHistory([dir])
  assert.not.ok(r.valid)
  assert.ok(r.faults.some((f) => f.tick === 29 && f.fault.includes(cidOf(page)) && /corrupt/.test(f.fault)), formatReport(r))
  dropBlob(dir, cidOf(page))
  assert.ok(verifyHistory([dir]).faults.some((f) => f.tick === 29 && /missing/.test(f.fault)))
})

test('deleting a middle entry is INVALID naming the tick after the gap', () => {
  const { dir } = history30()
  explodeDir(dir)
  fs.unlinkSync(entryAt(dir, 15))
  const r = verifyHistory([dir])
  assert.not.ok(r.valid)
  assert.ok(r.faults.some((f) => f.tick === 16 && /previous checkpoint .* is missing/.test(f.fault)), formatReport(r))
  assert.match(formatReport(r), /^INVALID: \d+ faults?\ntick 16: previous checkpoint/)
})

test('swapping the names of two entries is INVALID', () => {
  const { dir } = history30()
  explodeDir(dir)
  const a = entryAt(dir, 5); const b = entryAt(dir, 6)
  fs.renameSync(a, a + '.x'); fs.renameSync(b, a); fs.renameSync(a + '.x', b)
  const r = verifyHistory([dir])
  assert.not.ok(r.valid)
  assert.ok(r.faults.some((f) => f.tick === 5 && /file name does not match its content/.test(f.fault)))
  assert.ok(r.faults.some((f) => f.tick === 6 && /file name does not match its content/.test(f.fault)))
})

test('a flipped byte inside a frame of a segment is INVALID naming the segment and the damaged bytes; the entries after it are still read', () => {
  const { dir } = history30()
  const [seg] = segmentFiles(hist(dir))
  assert.is(segmentFiles(hist(dir)).length, 1)
  const es = entriesIn(hist(dir))
  assert.equal(es.map((e) => [e.file, e.tick]), Array.from({ length: 30 }, (_, t) => [seg, t]))
  const from = es[12].at!; const to = es[13].at! // the frame of tick 12: its head and its entry
  const good = fs.readFileSync(seg)
  for (let pos = from; pos < to; pos++) {
    const bad = Buffer.from(good); bad[pos] ^= 0x10
    fs.writeFileSync(seg, bad)
    const r = verifyHistory([dir])
    const at = `byte ${pos} (frame ${from}–${to})`
    assert.not.ok(r.valid, `${at} flipped yet VALID`)
    assert.ok(r.faults.some((f) => f.tick === null && f.file === seg && f.fault === `bytes ${from}–${to} are damaged (not a history frame)`), `${at}: ${formatReport(r)}`)
    // every other entry is read: tick 13 is reported only because its previous checkpoint (12) is gone
    assert.is(r.checkpoints, 29, `${at}: ${formatReport(r)}`)
    assert.equal(r.ticks, [0, 29])
    assert.ok(r.faults.every((f) => f.tick === null || f.tick === 13), `${at}: ${formatReport(r)}`)
    assert.ok(r.faults.some((f) => f.tick === 13 && f.file === es[13].where && /previous checkpoint .* is missing/.test(f.fault)), `${at}: ${formatReport(r)}`)
    assert.is(r.faults.filter((f) => f.tick === null).length, 1, `${at}: ${formatReport(r)}`)
  }
  fs.writeFileSync(seg, good)
  assert.ok(verifyHistory([dir]).valid)
})

test('a segment with a torn tail (a partial frame, zeros, a frame cut short) still verifies VALID for the entries before it', () => {
  const { dir } = history30()
  const [seg] = segmentFiles(hist(dir))
  assert.is(segmentFiles(hist(dir)).length, 1)
  const es = entriesIn(hist(dir))
  const good = fs.readFileSync(seg)
  const last = es[29].at!
  assert.ok(good.length - last > 37)
  const tails: [string, Buffer, number][] = [
    ['37 bytes of a partial frame', Buffer.concat([good, good.subarray(last, last + 37)]), 30],
    ['37 zeros', Buffer.concat([good, Buffer.alloc(37)]), 30],
    ['4 KiB of zeros', Buffer.concat([good, Buffer.alloc(4096)]), 30],
    ['the last frame cut after 37 bytes', good.subarray(0, last + 37), 29],
    ['the last frame zeroed', Buffer.concat([good.subarray(0, last), Buffer.alloc(good.length - last)]), 29],
  ]
  for (const [what, bytes, n] of tails) {
    fs.writeFileSync(seg, bytes)
    const r = verifyHistory([dir])
    assert.ok(r.valid, `${what}: ${formatReport(r)}`)
    assert.is(r.checkpoints, n, what)
    assert.equal(r.ticks, [0, n - 1], what)
    assert.equal(entriesIn(hist(dir)).map((e) => e.where), es.slice(0, n).map((e) => e.where), what)
  }
})

test('two writers continuing from the same prev into two dirs: FORK naming both files', () => {
  const d1 = mkdir(); const d2 = mkdir()
  const a = new Fake(generateIdentity())
  a.run(new CheckpointWriter(d1, 'a'), 8)
  const live = readLive(path.join(d1, 'a.ckpt'))
  // a second copy resumed from the same checkpoint, elsewhere
  const b = new Fake(a.id); b.pages = new Map([...a.pages].map(([i, p]) => [i, Buffer.from(p)])); b.tick = a.tick; b.fuel = a.fuel; b.budget = a.budget; b.prev = a.prev; b.host = 'hostB'
  const w2 = new CheckpointWriter(d2, 'a'); w2.ensureArchived(live)
  a.run(new CheckpointWriter(d1, 'a'), 2)
  b.run(w2, 2, 99)
  assert.ok(verifyHistory([d1]).valid)
  const r = verifyHistory([d1, d2])
  assert.not.ok(r.valid)
  assert.is(r.forks.length, 1)
  assert.is(r.forks[0].tick, 7)
  // the fork names the two entries of tick 8: frames of the segments of d1 and d2 (`<segment>@<offset>`)
  const eight = (d: string) => { const t = entriesIn(hist(d)).filter((e) => e.tick === 8); assert.is(t.length, 1); assert.ok(t[0].at !== null && t[0].file.endsWith('.hist')); return t[0].where }
  assert.equal([...r.forks[0].files].sort(), [eight(d1), eight(d2)].sort())
  assert.ok(r.forks[0].files.some((f) => f.startsWith(d1)) && r.forks[0].files.some((f) => f.startsWith(d2)))
  const line = formatReport(r).split('\n').find((l) => l.startsWith('FORK'))!
  assert.ok([`FORK after tick 7: ${eight(d1)} and ${eight(d2)}`, `FORK after tick 7: ${eight(d2)} and ${eight(d1)}`].some((l) => line.startsWith(l)), line)
})

function handoff (epochAfter: number, hostAfter: string): VerifyReport {
  const d1 = mkdir(); const d2 = mkdir()
  const a = new Fake(generateIdentity())
  const w1 = new CheckpointWriter(d1, 'a')
  a.run(w1, 5)
  a.step(); a.write(w1, 'handoff', 'hostB')
  const w2 = new CheckpointWriter(d2, 'a'); w2.ensureArchived(readLive(path.join(d1, 'a.ckpt')))
  a.epoch = epochAfter; a.host = hostAfter
  a.run(w2, 3)
  return verifyHistory([d1, d2])
}

test('handoff: the next checkpoint has epoch + 1 on the target host', () => {
  const ok = handoff(1, 'hostB')
  assert.ok(ok.valid, formatReport(ok))
  assert.equal(ok.epochs, [0, 1]); assert.equal(ok.hosts, ['hostA', 'hostB'])
  assert.equal(ok.handoffs, [{ tick: 5, epoch: 0, from: 'hostA', to: 'hostB' }])
  const sameEpoch = handoff(0, 'hostB')
  assert.not.ok(sameEpoch.valid)
  assert.ok(sameEpoch.faults.some((f) => f.tick === 6 && /epoch 0 after a handoff in epoch 0 \(expected 1\)/.test(f.fault)), formatReport(sameEpoch))
  const wrongHost = handoff(1, 'hostC')
  assert.ok(wrongHost.faults.some((f) => f.tick === 6 && /host hostC continues after a handoff to hostB/.test(f.fault)))
})

/** Ticks 0–4 on hostA, a handoff at tick 4 (the same tick as its prev) altered by `alter`, then ticks 5–6 on hostB in epoch 1. */
function sameTickHandoff (alter: (f: Fake) => void): VerifyReport {
  const dir = mkdir(); const f = new Fake(generateIdentity()); const w = new CheckpointWriter(dir, 'a')
  f.run(w, 5)
  f.tick = 4; f.fuel -= 1000n; f.budget += 3n // back to the state of the checkpoint at tick 4
  alter(f)
  f.write(w, 'handoff', 'hostB')
  f.epoch = 1; f.host = 'hostB'
  f.run(w, 2)
  return verifyHistory([dir])
}

test('a handoff at the same tick as its prev is VALID only with the same state root, fuel and budget', () => {
  const ok = sameTickHandoff(() => {})
  assert.ok(ok.valid, formatReport(ok))
  assert.equal(ok.handoffs, [{ tick: 4, epoch: 0, from: 'hostA', to: 'hostB' }])
  const changes = /handoff at tick 4 changes the state of the checkpoint it follows/
  for (const [what, alter] of [['state', (f: Fake) => f.step(99)], ['fuel', (f: Fake) => { f.fuel += 1n }], ['budget', (f: Fake) => { f.budget -= 1n }]] as const) {
    const bad = sameTickHandoff(alter)
    assert.not.ok(bad.valid, `a handoff with another ${what} must be INVALID`)
    assert.ok(bad.faults.some((x) => x.tick === 4 && changes.test(x.fault)), `${what}: ${formatReport(bad)}`)
  }
})

test('an epoch change without a handoff, fuel going down and budget going up are faults', () => {
  const dir = mkdir(); const a = new Fake(generateIdentity())
  const w = new CheckpointWriter(dir, 'a')
  a.run(w, 3)
  a.epoch = 1; a.step(); a.write(w)
  a.epoch = 1; a.fuel = 5n; a.step(); a.write(w)
  a.budget = 2_000_000n; a.step(); a.write(w)
  const r = verifyHistory([dir])
  const lines = formatReport(r)
  assert.match(lines, /tick 3: epoch changed from 0 to 1 without a handoff/)
  assert.match(lines, /tick 4: fuel decreased from 3000 to 5/)
  assert.match(lines, /tick 5: budget increased/)
})

test('a large history (signatures checked on a second thread) still names a bad signature', () => {
  const dir = mkdir(); const a = new Fake(generateIdentity())
  a.run(new CheckpointWriter(dir, 'a'), 1100)
  assert.ok(verifyHistory([dir]).valid)
  explodeDir(dir)
  const file = entryAt(dir, 700)
  const b = fs.readFileSync(file); b[b.indexOf(Buffer.from('63736967', 'hex')) + 10] ^= 1; fs.writeFileSync(file, b) // inside "sig"
  const r = verifyHistory([dir])
  assert.not.ok(r.valid)
  assert.ok(r.faults.some((f) => f.tick === 700 && /signature does not verify/.test(f.fault)), formatReport(r))
})

test('a large history: bad signatures in the first batch, across a batch boundary and in the last partial batch are all named', () => {
  // entries reach the signature thread in batches of 256 as they are read (history.ts SignatureCheck)
  const dir = mkdir(); const a = new Fake(generateIdentity())
  a.run(new CheckpointWriter(dir, 'a'), 1100)
  explodeDir(dir)
  const bad = [3, 255, 256, 700, 1099]
  for (const t of bad) rewrite(entryAt(dir, t), (e) => { const sig = Uint8Array.from(e.sig); sig[20] ^= 4; return { ...e, sig } })
  const other = decodeEntry(fs.readFileSync(entryAt(dir, 899)), 'tick 899').sig
  rewrite(entryAt(dir, 900), (e) => ({ ...e, sig: Uint8Array.from(other) })) // a valid signature, of another header
  const r = verifyHistory([dir])
  assert.not.ok(r.valid)
  for (const t of [...bad, 900]) assert.ok(r.faults.some((f) => f.tick === t && /signature does not verify/.test(f.fault)), `tick ${t}: ${formatReport(r)}`)
  assert.is(r.faults.filter((f) => /signature does not verify/.test(f.fault)).length, bad.length + 1, formatReport(r))
})

test('nothing to verify, and unreadable paths, are INVALID', () => {
  const dir = mkdir()
  assert.not.ok(verifyHistory([dir]).valid)
  const r = verifyHistory([path.join(dir, 'nope')])
  assert.not.ok(r.valid)
  assert.match(formatReport(r), /cannot read: ENOENT/)
})

/** Decodes the entry in `file`, lets `edit` change it, writes it back re-encoded (same name: the header is untouched). */
function rewrite (file: string, edit: (e: HistoryEntry) => HistoryEntry): void {
  const e = edit(decodeEntry(fs.readFileSync(file), file))
  fs.writeFileSync(file, encodeEntry(e))
}

/**
 * What a host without the key can do to an archive (issue 7 §5): store other page bodies as new
 * blobs, point every entry's page rows at them, change every global, and re-encode the entries.
 * Headers and signatures stay as they are. `genesisBase` sets the genesis entry's unsigned flag.
 */
function rewriteMemory (dir: string, genesisBase: boolean): void {
  explodeDir(dir)
  for (const file of entryFiles(hist(dir))) {
    rewrite(file, (e) => ({
      ...e,
      base: e.parsed.prev === null ? genesisBase : e.base,
      pages: e.pages.map(([i, c]) => {
        if (c === null) return [i, c]
        const body = blobBytes(dir, c); body[0] ^= 0xff
        const cid = cidOf(body); fs.writeFileSync(path.join(dir, 'blobs', cid), body)
        return [i, cid]
      }),
      globals: e.globals.map((g) => ({ ...g, bytes: Uint8Array.from(g.bytes, (b) => b ^ 0x55) })),
    }))
  }
}

test('every page and global rewritten, genesis base flag cleared: plain verify is INVALID (no key needed to try)', () => {
  for (const genesisBase of [false, true]) {
    const { dir } = history30()
    rewriteMemory(dir, genesisBase)
    const r = verifyHistory([dir])
    assert.not.ok(r.valid, `genesis base ${genesisBase}: ${formatReport(r)}`)
    assert.ok(faultTicks(r).includes(0), formatReport(r))
    if (!genesisBase) assert.ok(r.faults.some((f) => f.tick === 0 && /genesis entry is not a base entry: its page table cannot be rebuilt, so the state roots of ticks 0–29 are unchecked/.test(f.fault)), formatReport(r))
    else assert.ok(r.faults.some((f) => f.tick === 0 && /state root does not match/.test(f.fault)), formatReport(r))
  }
})

test('a genesis entry that is not a base entry is a fault even when its rows are the whole table', () => {
  const { dir } = history30()
  explodeDir(dir)
  rewrite(entryAt(dir, 0), (e) => ({ ...e, base: false }))
  const r = verifyHistory([dir])
  assert.not.ok(r.valid)
  assert.match(formatReport(r), /tick 0: genesis entry is not a base entry/)
})

test('a delta whose parent is missing or did not verify is a fault naming the ticks left unchecked', () => {
  const { dir } = history30()
  explodeDir(dir)
  fs.unlinkSync(entryAt(dir, 15))
  let r = verifyHistory([dir])
  assert.ok(r.faults.some((f) => f.tick === 16 && f.fault === 'delta entry whose previous checkpoint is missing: its page table cannot be rebuilt, so the state roots of ticks 16–29 are unchecked'), formatReport(r))
  const d2 = history30().dir
  explodeDir(d2)
  rewrite(entryAt(d2, 20), (e) => ({ ...e, globals: e.globals.map((g) => ({ ...g, bytes: new Uint8Array(g.bytes.length) })) }))
  r = verifyHistory([d2])
  assert.equal(r.faults.map((f) => [f.tick, f.fault]), [
    [20, 'state root does not match the page table, globals, fuel and budget'],
    [21, 'delta entry whose previous checkpoint (tick 20) has no verified page table: its page table cannot be rebuilt, so the state roots of ticks 21–29 are unchecked'],
  ])
})

test('the unsigned base flag cannot hide a change: a delta marked base, or a base marked delta, verifies only with the same state', () => {
  const { dir } = history30()
  explodeDir(dir)
  // tick 5 changes one page: as a base entry its one row is not the whole table
  rewrite(entryAt(dir, 5), (e) => ({ ...e, base: true }))
  let r = verifyHistory([dir])
  assert.ok(r.faults.some((f) => f.tick === 5 && /state root does not match/.test(f.fault)), formatReport(r))
  // the same delta rewritten as the full table, marked base: the same state, so VALID
  const d2 = history30().dir
  explodeDir(d2)
  const full = decodeEntry(fs.readFileSync(entryAt(d2, 0)), 'genesis').pages // the Fake never zeroes a page: the union of rows is the table
  rewrite(entryAt(d2, 5), (e) => {
    const rows = new Map(full)
    for (let t = 1; t <= 5; t++) for (const [i, c] of decodeEntry(fs.readFileSync(entryAt(d2, t)), 't').pages) if (c !== null) rows.set(i, c)
    return { ...e, base: true, pages: [...rows].sort((a, b) => a[0] - b[0]) }
  })
  r = verifyHistory([d2])
  assert.ok(r.valid, formatReport(r))
})

/**
 * A history with each kind of entry: genesis (d1, tick 0), ordinary deltas, a handoff (d1, tick 5),
 * the handoff checkpoint archived again as the target's base entry (d2, tick 5), ticks 6–8 in d2,
 * then d2's live checkpoint resumed in d3 (a resumed base entry, tick 8) and ticks 9–10 there.
 */
function kinds (): { dirs: string[]; entries: Record<'genesis' | 'ordinary' | 'handoff' | 'handoff base' | 'resumed base', [dir: string, tick: number]> } {
  const d1 = mkdir(); const d2 = mkdir(); const d3 = mkdir()
  const a = new Fake(generateIdentity())
  const w1 = new CheckpointWriter(d1, 'a')
  a.run(w1, 5)
  a.step(); a.write(w1, 'handoff', 'hostB')
  const w2 = new CheckpointWriter(d2, 'a'); w2.ensureArchived(readLive(path.join(d1, 'a.ckpt')))
  a.epoch = 1; a.host = 'hostB'
  a.run(w2, 3)
  const w3 = new CheckpointWriter(d3, 'a'); w3.ensureArchived(readLive(path.join(d2, 'a.ckpt')))
  a.run(w3, 2)
  return { dirs: [d1, d2, d3], entries: { genesis: [d1, 0], ordinary: [d1, 3], handoff: [d1, 5], 'handoff base': [d2, 5], 'resumed base': [d3, 8] } }
}

test('a bad signature on any kind of entry (genesis, ordinary, handoff, resumed base) is INVALID naming it', () => {
  const k = kinds()
  const ok = verifyHistory(k.dirs); assert.ok(ok.valid, formatReport(ok))
  assert.is(ok.checkpoints, 11)
  for (const d of k.dirs) explodeDir(d, false) // each holds part of the history only
  assert.ok(verifyHistory(k.dirs).valid, 'exploded histories verify')
  const files = Object.fromEntries(Object.entries(k.entries).map(([kind, [d, t]]) => [kind, entryAt(d, t)])) as Record<keyof typeof k.entries, string>
  const entry = (f: string) => decodeEntry(fs.readFileSync(f), f)
  assert.ok(entry(files.genesis).base && entry(files.genesis).parsed.prev === null)
  assert.ok(!entry(files.ordinary).base && entry(files.ordinary).parsed.status === 'running')
  assert.ok(!entry(files.handoff).base && entry(files.handoff).parsed.status === 'handoff')
  assert.ok(entry(files['handoff base']).base && entry(files['handoff base']).parsed.status === 'handoff')
  assert.ok(entry(files['resumed base']).base && entry(files['resumed base']).parsed.status === 'running')
  for (const [kind, file] of Object.entries(files)) {
    const good = fs.readFileSync(file)
    rewrite(file, (e) => { const sig = Uint8Array.from(e.sig); sig[7] ^= 1; return { ...e, sig } })
    const r = verifyHistory(k.dirs)
    const tick = decodeEntry(good, file).parsed.tick
    assert.not.ok(r.valid, `${kind} entry with a bad signature passed`)
    assert.ok(r.faults.some((f) => f.tick === tick && f.file === file && /signature does not verify/.test(f.fault)), `${kind}: ${formatReport(r)}`)
    fs.writeFileSync(file, good)
  }
  assert.ok(verifyHistory(k.dirs).valid)
})

test('verify accepts a data directory, its history/ folder, history/<name>/, or a folder of them', () => {
  const k = kinds()
  const [d1, d2, d3] = k.dirs
  const parent = mkdir()
  k.dirs.forEach((d, i) => fs.cpSync(d, path.join(parent, `host${i}`), { recursive: true }))
  for (const p of [k.dirs, [path.join(d1, 'history'), path.join(d2, 'history') + '/', d3], [hist(d1), path.join(d2, 'history'), hist(d3) + '/'], [parent]]) {
    const r = verifyHistory(p)
    assert.ok(r.valid, `${p.join(' ')}: ${formatReport(r)}`)
    assert.is(r.checkpoints, 11)
  }
  const src = findHistory([path.join(d1, 'history')])
  assert.equal(src.blobDirs, [path.join(d1, 'blobs')])
  // several agents in one history/ folder: name one
  fs.cpSync(hist(d1), path.join(d1, 'history', 'b'), { recursive: true })
  const r = verifyHistory([path.join(d1, 'history')])
  assert.match(formatReport(r), /holds the histories of several agents \(a, b\): name one/)
  assert.match(formatReport(verifyHistory([mkdir()])), /no history entries found/)
  // a directory without any history (a node that gave the agent back) adds nothing to a merge
  const node = mkdir(); fs.mkdirSync(path.join(node, 'migrate')); fs.writeFileSync(path.join(node, 'migrate', 'a.pending.cbor'), 'not an entry')
  assert.ok(verifyHistory([hist(d1), d2, d3, mkdir(), node]).valid)
})

test.run()
