/**
 * Property test of plain `verify` (issue 7 §5): on a real history — written by the real
 * CheckpointWriter, with a genesis, ordinary delta entries, a resume in the same directory (a base
 * entry), a handoff, the handoff checkpoint archived again as the target's base entry, and a resume
 * in a third directory — many seeded random mutations of entries and blobs are applied one at a
 * time (and a few combined), and after each:
 *
 *   verify says VALID  ⇒  every entry still describes, for its signed header, exactly the memory
 *                         (page bytes as stored) and globals the original archive described.
 *
 * The memory an entry describes is rebuilt here independently of checkpoint/history.ts: a base
 * entry's rows are its table, a delta's rows apply to every copy of its parent's table, page
 * bytes are read raw from the blob stores (not checked against their CID). An entry whose table
 * cannot be rebuilt describes no known memory, so accepting it is a failure too.
 *
 * Seed: `VERIFY_PROPERTY_SEED=<n>` replays a run; otherwise a random seed, printed in every failure.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { createHash } from 'node:crypto'
import { cidOf } from '../checkpoint/hash.ts'
import { headerCid, type Status } from '../checkpoint/header.ts'
import { generateIdentity, type Identity } from '../checkpoint/identity.ts'
import { readLive } from '../checkpoint/live.ts'
import { PAGE_SIZE, stateRoot, type GlobalValue } from '../checkpoint/state.ts'
import { CheckpointWriter, decodeEntry, encodeEntry, type HistoryEntry, type Snapshot } from '../checkpoint/writer.ts'
import { formatReport, verifyHistory } from '../checkpoint/history.ts'
import { prng } from './prng.ts'
import { unpackToFiles } from './blobs.ts'
import { explode, segmentFiles } from './hist.ts'

const SEED = process.env.VERIFY_PROPERTY_SEED !== undefined ? Number(process.env.VERIFY_PROPERTY_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0
const MUTATIONS = 400


const tmp: string[] = []
test.after(() => { for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })
const mkdir = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-vprop-')); tmp.push(d); return d }

/** A stand-in agent with random writes, zeroed pages, growing and shrinking memory, two globals. */
class Agent {
  readonly id: Identity
  pages = new Map<number, Buffer>()
  dirty = new Set<number>()
  pageCount = 4
  g = [0, 0]
  tick = 0; fuel = 0n; budget = 10_000_000n; epoch = 0; host = 'hostA'
  prev: string | null = null
  readonly rnd: () => number
  constructor (id: Identity, rnd: () => number) { this.id = id; this.rnd = rnd }
  step () {
    const r = this.rnd
    const writes = 1 + Math.floor(r() * 3)
    for (let k = 0; k < writes; k++) {
      const i = Math.floor(r() * this.pageCount)
      let p = this.pages.get(i)
      if (p === undefined) { p = Buffer.alloc(PAGE_SIZE); this.pages.set(i, p) }
      p.writeUInt32LE((this.tick * 2654435761 + k) >>> 0, 4 * Math.floor(r() * (PAGE_SIZE / 4)))
      this.dirty.add(i)
    }
    if (r() < 0.2 && this.pages.size > 1) { const i = [...this.pages.keys()][Math.floor(r() * this.pages.size)]; this.pages.delete(i); this.dirty.add(i) }
    if (r() < 0.15 && this.pageCount < 8) this.pageCount++
    else if (r() < 0.1 && this.pageCount > 3) { this.pageCount--; for (const i of [...this.pages.keys()]) if (i >= this.pageCount) { this.pages.delete(i); this.dirty.add(i) } }
    this.g[0] = (this.g[0] + 1 + Math.floor(r() * 5)) | 0
    if (r() < 0.5) this.g[1] = Math.floor(r() * 1e9)
  }
  globals (): GlobalValue[] {
    const a = new Uint8Array(4); new DataView(a.buffer).setInt32(0, this.g[0], true)
    const b = new Uint8Array(8); new DataView(b.buffer).setBigInt64(0, BigInt(this.g[1]), true)
    return [{ index: 1, type: 'i32', bytes: a }, { index: 4, type: 'i64', bytes: b }]
  }
  snapshot (): Snapshot {
    const pages = [...this.pages.entries()].sort((a, b) => a[0] - b[0]) as [number, Uint8Array][]
    const s: Snapshot = { pageCount: this.pageCount, pages, digests: pages.map(([i, p]) => [i, createHash('sha256').update(p).digest()]), changed: [...this.dirty], globals: this.globals() }
    this.dirty.clear()
    return s
  }
  write (w: CheckpointWriter, status: Status = 'running', target?: string) {
    const r = w.write({ identity: this.id, wasm: Buffer.from('\0asm-property'), manifest: Buffer.from('{}'), snapshot: this.snapshot(), tick: this.tick, epoch: this.epoch, prev: this.prev, fuel: this.fuel, budget: this.budget, price: 1000n, host: this.host, status, ...(target ? { target } : {}), log: Buffer.from(`log ${this.tick}`) })
    this.prev = r.cid; this.tick++; this.fuel += 1000n + BigInt(Math.floor(this.rnd() * 100)); this.budget -= 7n
  }
  run (w: CheckpointWriter, n: number) { for (let k = 0; k < n; k++) { if (this.tick > 0) this.step(); this.write(w) } }
}

/**
 * d1: genesis, ticks 1–4; a new writer (a resume in the same directory: a base entry) ticks 5–8;
 * a handoff at tick 9. d2: the handoff checkpoint archived as the target's base entry, ticks 10–13
 * on hostB in epoch 1. d3: d2's live checkpoint resumed (its base entry at tick 13), ticks 14–17.
 */
function build (rnd: () => number): string[] {
  const d1 = mkdir(); const d2 = mkdir(); const d3 = mkdir()
  const a = new Agent(generateIdentity(), rnd)
  a.run(new CheckpointWriter(d1, 'a'), 5)
  const w1 = new CheckpointWriter(d1, 'a')
  a.run(w1, 4)
  a.step(); a.write(w1, 'handoff', 'hostB')
  const w2 = new CheckpointWriter(d2, 'a'); w2.ensureArchived(readLive(path.join(d1, 'a.ckpt')))
  a.epoch = 1; a.host = 'hostB'
  a.run(w2, 4)
  const w3 = new CheckpointWriter(d3, 'a'); w3.ensureArchived(readLive(path.join(d2, 'a.ckpt')))
  a.run(w3, 4)
  return [d1, d2, d3]
}

const histDir = (d: string) => path.join(d, 'history', 'a')
const entryFiles = (dirs: string[]) => dirs.flatMap((d) => fs.readdirSync(histDir(d)).filter((n) => n.endsWith('.cbor') && !n.startsWith('.')).sort().map((n) => path.join(histDir(d), n)))
const blobFiles = (dirs: string[]) => dirs.flatMap((d) => fs.readdirSync(path.join(d, 'blobs')).filter((n) => !n.startsWith('.')).sort().map((n) => path.join(d, 'blobs', n)))

type Table = Map<number, string>

/**
 * For every entry file: the memory + globals it describes, as one hash per way its table can be
 * rebuilt (several when its parent has several copies), or a reason it describes nothing known.
 */
function model (dirs: string[]): Map<string, { cid: string | null; states: string[]; unknown: string | null }> {
  const out = new Map<string, { cid: string | null; states: string[]; unknown: string | null }>()
  const loaded: { file: string; e: HistoryEntry; cid: string }[] = []
  for (const file of entryFiles(dirs)) {
    try {
      const e = decodeEntry(fs.readFileSync(file), file)
      loaded.push({ file, e, cid: headerCid(e.headerBytes) })
    } catch (err) { out.set(file, { cid: null, states: [], unknown: `undecodable: ${(err as Error).message}` }) }
  }
  const byCid = new Map<string, typeof loaded>()
  for (const l of loaded) { const xs = byCid.get(l.cid) ?? []; xs.push(l); byCid.set(l.cid, xs) }
  const memo = new Map<string, Table[]>()
  const tablesOf = (l: typeof loaded[number]): Table[] => {
    const m = memo.get(l.file)
    if (m !== undefined) return m
    let parents: Table[]
    if (l.e.base) parents = [new Map()]
    else if (l.e.parsed.prev === null) parents = []
    else parents = (byCid.get(l.e.parsed.prev) ?? []).filter((p) => p.e.parsed.tick <= l.e.parsed.tick && p.file !== l.file).flatMap(tablesOf)
    const ts = parents.map((p) => {
      const t = new Map(p)
      for (const [i, c] of l.e.pages) { if (c === null) t.delete(i); else t.set(i, c) }
      for (const i of [...t.keys()]) if (i >= l.e.pageCount) t.delete(i)
      return t
    })
    memo.set(l.file, ts)
    return ts
  }
  const readBlob = (cid: string): Buffer | null => {
    for (const d of dirs) { try { return fs.readFileSync(path.join(d, 'blobs', cid)) } catch { /* next */ } }
    return null
  }
  for (const l of loaded) {
    const ts = tablesOf(l)
    const states = ts.map((t) => {
      const h = createHash('sha256').update(`pages ${l.e.pageCount}\n`)
      for (const i of [...t.keys()].sort((a, b) => a - b)) {
        const b = readBlob(t.get(i)!)
        h.update(`page ${i} `); h.update(b === null ? 'missing' : b); h.update('\n')
      }
      for (const g of [...l.e.globals].sort((a, b) => a.index - b.index)) { h.update(`global ${g.index} ${g.type} `); h.update(g.bytes); h.update('\n') }
      return h.digest('hex')
    })
    out.set(l.file, { cid: l.cid, states, unknown: ts.length === 0 ? 'its table cannot be rebuilt' : null })
  }
  return out
}

/** Records each file's bytes before its first change, so that {@link Undo.undo} restores the archive. */
class Undo {
  #saved = new Map<string, Buffer | null>()
  #save (f: string) { if (!this.#saved.has(f)) this.#saved.set(f, fs.existsSync(f) ? fs.readFileSync(f) : null) }
  put (f: string, bytes: Uint8Array) { this.#save(f); fs.writeFileSync(f, bytes) }
  del (f: string) { this.#save(f); fs.unlinkSync(f) }
  undo () {
    for (const [f, b] of this.#saved) { if (b === null) fs.rmSync(f, { force: true }); else fs.writeFileSync(f, b) }
    this.#saved.clear()
  }
}

test(`random mutations of entries and blobs never give VALID with other memory or globals (seed ${SEED})`, () => {
  const rnd = prng(SEED)
  const int = (n: number) => Math.floor(rnd() * n)
  const pick = <T>(xs: T[]): T => xs[int(xs.length)]
  const dirs = build(rnd)
  const ctx = `seed ${SEED} (rerun with VERIFY_PROPERTY_SEED=${SEED})`
  const r0 = verifyHistory(dirs)
  assert.ok(r0.valid, `${ctx}: the unmutated history must be VALID: ${formatReport(r0)}`)
  // blobs as one file each (the layout before packs, still read), so that mutations act on single blobs
  for (const d of dirs) unpackToFiles(d)
  assert.ok(verifyHistory(dirs).valid, `${ctx}: unpacked`)
  // entries as one file each (the layout before history segments, still read), so that mutations act on single entries
  for (const d of dirs) { assert.ok(segmentFiles(histDir(d)).length > 0, `${ctx}: a writer writes segments`); explode(histDir(d)) }
  assert.ok(verifyHistory(dirs).valid, `${ctx}: exploded`)
  assert.is(entryFiles(dirs).length, 20, ctx) // 18 checkpoints, the handoff and the resumed one archived twice
  assert.is(r0.checkpoints, 18, ctx)
  // the original states, one per checkpoint, each checked against its signed state root
  const original = new Map<string, string>()
  for (const [file, m] of model(dirs)) {
    assert.is(m.unknown, null, `${ctx}: ${file}`)
    for (const s of m.states) {
      const had = original.get(m.cid!)
      assert.ok(had === undefined || had === s, `${ctx}: two copies of ${m.cid} describe different states`)
      original.set(m.cid!, s)
    }
    const e = decodeEntry(fs.readFileSync(file), file)
    if (e.base) {
      const digests = e.pages.map(([i, c]): [number, Uint8Array] => [i, createHash('sha256').update(fs.readFileSync(path.join(path.dirname(file), '..', '..', 'blobs', c!))).digest()])
      assert.equal(stateRoot({ pages: e.pageCount, digests, globals: e.globals, fuel: e.parsed.fuel, budget: e.parsed.budget }), e.parsed.state, `${ctx}: model of ${file}`)
    }
  }
  const kinds = new Set(entryFiles(dirs).map((f) => { const e = decodeEntry(fs.readFileSync(f), f); return e.parsed.prev === null ? 'genesis' : e.parsed.status === 'handoff' ? (e.base ? 'handoff base' : 'handoff') : e.base ? 'resumed base' : 'ordinary' }))
  assert.equal([...kinds].sort(), ['genesis', 'handoff', 'handoff base', 'ordinary', 'resumed base'], ctx)

  const undo = new Undo()
  const entries = () => entryFiles(dirs)
  const pageBlobs = () => blobFiles(dirs).filter((f) => fs.statSync(f).size === PAGE_SIZE)
  /** Re-encodes `file` after `f` (an entry an earlier step of a combined mutation broke is left as it is). */
  const edit = (file: string, f: (e: HistoryEntry) => HistoryEntry) => {
    let e: HistoryEntry
    try { e = decodeEntry(fs.readFileSync(file), file) } catch { return }
    undo.put(file, encodeEntry(f(e)))
  }
  const newPage = (dir: string, from: string | null): string => {
    const body = from !== null && fs.existsSync(from) ? Buffer.from(fs.readFileSync(from)) : Buffer.alloc(PAGE_SIZE)
    body[int(PAGE_SIZE)] ^= 1 + int(255)
    const cid = cidOf(body); undo.put(path.join(dir, 'blobs', cid), body)
    return cid
  }
  const dataDirOf = (file: string) => path.join(path.dirname(file), '..', '..')
  const blobOf = (file: string, cid: string) => path.join(dataDirOf(file), 'blobs', cid)
  /** Every page and global of every entry rewritten (issue 7 §5), the genesis base flag cleared or kept. */
  const rewriteAll = (clearGenesisBase: boolean) => {
    for (const f of entries()) {
      edit(f, (e) => ({
        ...e,
        base: e.parsed.prev === null && clearGenesisBase ? false : e.base,
        pages: e.pages.map(([i, c]) => [i, c === null ? null : newPage(dataDirOf(f), blobOf(f, c))]),
        globals: e.globals.map((g) => ({ ...g, bytes: Uint8Array.from(g.bytes, (b) => b ^ 0x80) })),
      }))
    }
  }
  const mutations: [string, () => string][] = [
    ['flip an entry byte', () => { const f = pick(entries()); const b = fs.readFileSync(f); const i = int(b.length); b[i] ^= 1 << int(8); undo.put(f, b); return `${path.basename(f)} byte ${i}` }],
    ['flip a blob byte', () => { const f = pick(blobFiles(dirs)); const b = fs.readFileSync(f); if (b.length === 0) return 'empty blob'; const i = int(b.length); b[i] ^= 1 << int(8); undo.put(f, b); return `${path.basename(f)} byte ${i}` }],
    ['flip base', () => { const f = pick(entries()); edit(f, (e) => ({ ...e, base: !e.base })); return path.basename(f) }],
    ['clear the genesis base flag', () => {
      const f = entries().find((x) => path.basename(x).startsWith('000000000000-'))
      if (f === undefined) return 'no genesis entry (deleted by an earlier step)'
      edit(f, (e) => ({ ...e, base: false })); return path.basename(f)
    }],
    ['rewrite a page row to a new blob', () => {
      const f = pick(entries()); let what = ''
      edit(f, (e) => {
        const rows = e.pages.filter((r) => r[1] !== null)
        if (rows.length === 0) { what = 'no page row'; return e }
        const [i, c] = pick(rows)
        what = `page ${i}`
        return { ...e, pages: e.pages.map(([j, d]) => [j, j === i ? newPage(dataDirOf(f), blobOf(f, c!)) : d]) }
      })
      return `${path.basename(f)} ${what}`
    }],
    ['point a page row at another existing page blob', () => {
      const f = pick(entries()); const other = path.basename(pick(pageBlobs())); let what = ''
      edit(f, (e) => {
        if (e.pages.length === 0) { what = 'no rows'; return e }
        const [i] = pick(e.pages); what = `page ${i} → ${other}`
        return { ...e, pages: e.pages.map(([j, d]) => [j, j === i ? other : d]) }
      })
      return `${path.basename(f)} ${what}`
    }],
    ['add a page row', () => {
      const f = pick(entries()); let what = ''
      edit(f, (e) => {
        const free = Array.from({ length: e.pageCount }, (_, i) => i).filter((i) => !e.pages.some((r) => r[0] === i))
        if (free.length === 0) { what = 'no free index'; return e }
        const i = pick(free); const c = rnd() < 0.5 && !e.base ? null : path.basename(pick(pageBlobs())); what = `page ${i} = ${c}`
        return { ...e, pages: [...e.pages, [i, c] as [number, string | null]].sort((a, b) => a[0] - b[0]) }
      })
      return `${path.basename(f)} ${what}`
    }],
    ['drop a page row', () => {
      const f = pick(entries()); let what = ''
      edit(f, (e) => { if (e.pages.length === 0) { what = 'no rows'; return e } const k = int(e.pages.length); what = `row ${k} (page ${e.pages[k][0]})`; return { ...e, pages: e.pages.filter((_, j) => j !== k) } })
      return `${path.basename(f)} ${what}`
    }],
    ['duplicate a page row', () => {
      const f = pick(entries()); let what = ''
      edit(f, (e) => { if (e.pages.length === 0) { what = 'no rows'; return e } const k = int(e.pages.length); what = `row ${k}`; const p = [...e.pages]; p.splice(k, 0, e.pages[k]); return { ...e, pages: p } })
      return `${path.basename(f)} ${what}`
    }],
    ['rewrite a global', () => { const f = pick(entries()); let what = ''; edit(f, (e) => { const k = int(e.globals.length); what = `global ${e.globals[k].index}`; return { ...e, globals: e.globals.map((g, j) => j === k ? { ...g, bytes: Uint8Array.from(g.bytes, (b, x) => x === 0 ? b ^ (1 + int(255)) : b) } : g) } }); return `${path.basename(f)} ${what}` }],
    ['change the page count', () => { const f = pick(entries()); const d = rnd() < 0.5 ? 1 : -1; edit(f, (e) => ({ ...e, pageCount: Math.max(0, e.pageCount + d) })); return `${path.basename(f)} ${d}` }],
    ['swap two blobs', () => { const [x, y] = [pick(blobFiles(dirs)), pick(blobFiles(dirs))]; const bx = fs.readFileSync(x); const by = fs.readFileSync(y); undo.put(x, by); undo.put(y, bx); return `${path.basename(x)} ↔ ${path.basename(y)}` }],
    ['delete a blob', () => { const f = pick(blobFiles(dirs)); undo.del(f); return path.basename(f) }],
    ['delete an entry', () => { const f = pick(entries()); undo.del(f); return path.basename(f) }],
    ['replace an entry by another copy of any entry', () => { const [x, y] = [pick(entries()), pick(entries())]; undo.put(x, fs.readFileSync(y)); return `${path.basename(x)} := ${path.basename(y)}` }],
    ['copy an entry into another directory', () => { const f = pick(entries()); const d = pick(dirs); const to = path.join(histDir(d), path.basename(f)); undo.put(to, fs.readFileSync(f)); return `${path.basename(f)} → ${d}` }],
    ['rewrite every page and global, genesis base cleared', () => { rewriteAll(true); return 'all entries' }],
    ['rewrite every page and global', () => { rewriteAll(false); return 'all entries' }],
  ]

  let altered = 0; let valid = 0
  const seen = new Map<string, number>()
  for (let k = 0; k < MUTATIONS; k++) {
    const steps = rnd() < 0.15 ? 2 + int(2) : 1
    const done: string[] = []
    for (let s = 0; s < steps; s++) { const [name, run] = pick(mutations); done.push(`${name}: ${run()}`); seen.set(name, (seen.get(name) ?? 0) + 1) }
    const r = verifyHistory(dirs)
    const changed: string[] = []
    for (const [file, m] of model(dirs)) {
      if (m.unknown !== null) { changed.push(`${path.basename(file)} ${m.unknown}`); continue }
      const want = original.get(m.cid!)
      if (want === undefined) { changed.push(`${path.basename(file)} has a header that is not in the original history`); continue }
      if (m.states.some((s) => s !== want)) changed.push(`${path.basename(file)} describes other memory or globals`)
    }
    if (changed.length > 0) altered++
    if (r.valid) valid++
    assert.ok(!r.valid || changed.length === 0, `${ctx}, mutation ${k}: [${done.join('; ')}] is VALID yet ${changed.join(', ')}\n${formatReport(r)}`)
    undo.undo()
  }
  const rb = verifyHistory(dirs)
  assert.ok(rb.valid, `${ctx}: restored history must be VALID again: ${formatReport(rb)}`)
  // not vacuous: most mutations change the state, every kind ran, and a few were harmless
  assert.ok(altered > MUTATIONS / 2, `${ctx}: only ${altered} of ${MUTATIONS} mutations changed the described state`)
  assert.is(seen.size, mutations.length, `${ctx}: every kind of mutation ran`)
  assert.ok(valid > 0, `${ctx}: some state-preserving mutation (e.g. a copied entry) stays VALID`)
})

test.run()
