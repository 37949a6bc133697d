/**
 * The live file written by CheckpointWriter (docs/FORMAT.md "Live checkpoint"): the first write of
 * a writer rewrites it whole, later ones append a delta record of the changed pages (one fdatasync),
 * a compaction rewrites it whole once the dead bytes exceed COMPACT_RATIO × a whole copy; a torn or
 * zeroed tail falls back to the last complete checkpoint, a complete record that is damaged is an
 * error; readLive and peekLive agree; a copy of the file resumes elsewhere and its history verifies.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { createHash } from 'node:crypto'
import { CheckpointError } from '../checkpoint/errors.ts'
import { formatReport, verifyHistory } from '../checkpoint/history.ts'
import { generateIdentity, type Identity } from '../checkpoint/identity.ts'
import { decode } from '../checkpoint/cbor.ts'
import { decodeLive, liveItems, liveSteps, readLive } from '../checkpoint/live.ts'
import { peekLive } from '../checkpoint/peek.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { FakeAgent } from './fake-agent.ts'
import { writeCheckpoint } from '../runtime/runner.ts'
import { resumeAgent, startAgent } from '../runtime/session.ts'
import { wat } from './wat.ts'
import { CheckpointWriter, COMPACT_MIN_BYTES, COMPACT_RATIO, SPARE_MIN_BYTES, type Snapshot } from '../checkpoint/writer.ts'
import { testHooks } from '../checkpoint/store.ts'
import { PageImage } from '../runtime/memory.ts'
import { randomBytes } from 'node:crypto'
import { explode } from './hist.ts'

let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-live-append-')) })
test.after.each(() => { fs.rmSync(dir, { recursive: true, force: true }) })


const newFake = (id: Identity) => new FakeAgent(id, { pageCount: 16, logOf: (t) => Buffer.from(`log ${t}`) })

/** The memory of a decoded live checkpoint as `index:sha256` strings. */
const memory = (c: { pages: [number, Uint8Array][] }) => c.pages.map(([i, p]) => `${i}:${createHash('sha256').update(p).digest('hex').slice(0, 16)}`)
const fakeMemory = (f: FakeAgent) => memory({ pages: [...f.pages].sort((a, b) => a[0] - b[0]) })

test('later writes append a delta record of the changed pages; readLive and peekLive read the newest checkpoint', () => {
  const f = newFake(generateIdentity())
  for (let i = 0; i < 8; i++) f.poke(i, 1, i + 1)
  const w = new CheckpointWriter(dir, 'a')
  f.write(w)
  assert.ok(w.lastStats!.liveCompacted, 'the first write of a writer is whole')
  const live = path.join(dir, 'a.ckpt')
  const whole = fs.statSync(live).size
  const ino = fs.statSync(live).ino
  f.poke(3, 100, 7); f.zero(5)
  const r = f.write(w)
  assert.not.ok(w.lastStats!.liveCompacted)
  const grown = fs.statSync(live).size - whole
  assert.ok(grown > PAGE_SIZE && grown < PAGE_SIZE + 2000, `one page and a small record appended (${grown} bytes)`)
  assert.is(fs.statSync(live).ino, ino, 'appended in place')
  const c = readLive(live)
  assert.is(c.parsed.tick, 1)
  assert.equal(memory(c), fakeMemory(f))
  assert.is(Buffer.compare(peekLive(live).header, r.headerBytes), 0)
  assert.equal(liveItems(fs.readFileSync(live), live).length, 2)
  // nothing stays open between checkpoints (a node holds a writer per agent)
  if (fs.existsSync('/proc/self/fd')) {
    const open = fs.readdirSync('/proc/self/fd').map((fd) => { try { return fs.readlinkSync(`/proc/self/fd/${fd}`) } catch { return '' } })
    assert.not.ok(open.some((p) => p.startsWith(dir)), `descriptors left open: ${open.filter((p) => p.startsWith(dir)).join(', ')}`)
  }
  // the history entry lists the same change
  assert.ok(verifyHistory([dir]).valid)
})

test(`compaction: the file is rewritten whole once its dead bytes exceed ${COMPACT_RATIO}× a whole copy (or ${COMPACT_MIN_BYTES} bytes)`, () => {
  const f = newFake(generateIdentity())
  for (let i = 0; i < 4; i++) f.poke(i, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  f.write(w)
  const live = path.join(dir, 'a.ckpt')
  const whole = fs.statSync(live).size
  const compacted: number[] = []
  const bound = whole + Math.max(COMPACT_RATIO * whole, COMPACT_MIN_BYTES) + PAGE_SIZE + 2000
  for (let k = 1; k <= 32; k++) {
    f.poke(k % 4, 2, k); f.write(w)
    if (w.lastStats!.liveCompacted) compacted.push(k)
    assert.ok(fs.statSync(live).size <= bound, `size ${fs.statSync(live).size} at write ${k}`)
    assert.equal(memory(readLive(live)), fakeMemory(f))
  }
  assert.ok(compacted.length >= 2, `compacted at ${compacted.join(', ')}`)
  assert.ok(verifyHistory([dir]).valid)
})

test('a compaction replaces the live file through a second name unlinked off the thread; a leftover is removed by the next writer', async () => {
  const f = newFake(generateIdentity())
  for (let i = 0; i < 4; i++) f.poke(i, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  f.write(w)
  const live = path.join(dir, 'a.ckpt')
  const old = path.join(dir, '.a.ckpt.old')
  const first = fs.statSync(live).ino
  let k = 0
  do { f.poke(k % 4, 3, ++k); f.write(w) } while (!w.lastStats!.liveCompacted && k < 64)
  assert.ok(w.lastStats!.liveCompacted, 'a compaction came')
  assert.is.not(fs.statSync(live).ino, first, 'a new file in place')
  assert.equal(memory(readLive(live)), fakeMemory(f))
  for (let i = 0; i < 200 && fs.existsSync(old); i++) await new Promise((resolve) => setTimeout(resolve, 5))
  assert.not.ok(fs.existsSync(old), 'the replaced file is unlinked')
  assert.ok(fs.readdirSync(dir).every((n) => !n.startsWith('.a.ckpt.')), 'nothing left beside the live file')
  // a kill between the link and the unlink leaves the old file under that name: the next writer removes it
  fs.writeFileSync(old, 'left by a kill')
  const w2 = new CheckpointWriter(dir, 'a')
  assert.not.ok(fs.existsSync(old))
  assert.equal(memory(readLive(live)), fakeMemory(f))
  w2.close()
})

test('a torn or zeroed last record (zeroed at its start or from inside it) falls back to the checkpoint before it; a complete damaged record is an error', () => {
  const f = newFake(generateIdentity())
  for (let i = 0; i < 6; i++) f.poke(i, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  f.write(w)
  f.poke(0, 5, 5); f.write(w)
  const before = fakeMemory(f)
  f.poke(1, 9, 9); f.write(w)
  const live = path.join(dir, 'a.ckpt')
  const bytes = fs.readFileSync(live)
  const ends = liveItems(bytes, live)
  assert.is(ends.length, 3)
  for (const cut of [ends[1] + 1, ends[1] + 100, bytes.length - 1]) {
    const torn = bytes.subarray(0, cut)
    const c = decodeLive(torn, live)
    assert.is(c.parsed.tick, 1, `cut at ${cut}`)
    assert.equal(memory(c), before)
    fs.writeFileSync(path.join(dir, 'torn.ckpt'), torn)
    assert.is(peekLive(path.join(dir, 'torn.ckpt')).parsed.tick, 1)
  }
  // a power cut that left the tail zeroed
  const zeroed = Buffer.concat([bytes.subarray(0, ends[2]), Buffer.alloc(5000)])
  assert.is(decodeLive(zeroed, live).parsed.tick, 2)
  // a power cut that zeroed the last append from inside it: bad CBOR from there on, or (zeros only
  // in its last bytes) a well-formed record that does not check; either way the file ends in 0x00
  for (const from of [ends[1] + 50, ends[1] + 2000, bytes.length - 1]) {
    const z = Buffer.concat([bytes.subarray(0, from), Buffer.alloc(bytes.length - from)])
    const c = decodeLive(z, live)
    assert.is(c.parsed.tick, 1, `zeroed from ${from}`)
    assert.equal(memory(c), before)
  }
  // a complete last record whose page was altered: refused, not silently skipped
  const bad = Buffer.from(bytes); bad[bytes.length - 3000] ^= 1
  assert.throws(() => decodeLive(bad, live), (e: unknown) => e instanceof CheckpointError && /state root does not match/.test((e as Error).message))
})

test('a copy of an appended live file resumes in another directory; the merged histories verify', () => {
  const f = newFake(generateIdentity())
  f.poke(0, 1, 1)
  const w = new CheckpointWriter(dir, 'a')
  for (let k = 0; k < 4; k++) { f.poke(k, 3, k); f.write(w) }
  const other = path.join(dir, 'other')
  fs.mkdirSync(other)
  fs.copyFileSync(path.join(dir, 'a.ckpt'), path.join(other, 'a.ckpt'))
  const c = readLive(path.join(other, 'a.ckpt'))
  const w2 = new CheckpointWriter(other, 'a')
  w2.ensureArchived(c)
  f.poke(2, 2, 2); f.write(w2)
  assert.ok(w2.lastStats!.liveCompacted)
  const r = verifyHistory([dir, other])
  assert.ok(r.valid, formatReport(r))
  assert.is(r.checkpoints, 5)
})

test('a page with a few changed 4 KiB chunks is appended as a chunk row (version 3): only those chunks; the file and its steps read back exactly', () => {
  // each tick stores into two chunks chosen by a counter across 8 pages (a new page now and then)
  const code = wat(`(module
    (memory (export "memory") 8)
    (global $n (mut i32) (i32.const 0))
    (func (export "agent_tick") (result i32)
      (global.set $n (i32.add (global.get $n) (i32.const 1)))
      (i32.store (i32.rem_u (i32.mul (global.get $n) (i32.const 40503)) (i32.const 524288)) (global.get $n))
      (i32.store (i32.mul (i32.rem_u (i32.mul (global.get $n) (i32.const 13)) (i32.const 128)) (i32.const 4096)) (global.get $n))
      (i32.const 0)))`)
  const manifest = Buffer.from(JSON.stringify({ capabilities: {} }))
  const s = startAgent({ dir, price: 1000n, emit: () => {} }, { name: 'c', wasm: code, wasmFile: 'c.wasm', manifest, manifestFile: 'c.json', budget: 10n ** 12n })
  let chunkRows = 0
  let before = fs.statSync(s.ckptPath).size
  for (let t = 0; t < 40; t++) {
    s.agent.runTick()
    writeCheckpoint(s.agent, s.lineage, 'running')
    const bytes = fs.readFileSync(s.ckptPath)
    const c = decodeLive(bytes, s.ckptPath) // the state root checks every page folded through the records
    assert.is(c.parsed.tick, t + 1)
    const ends = liveItems(bytes, s.ckptPath)
    const last = decode(bytes.subarray(ends[ends.length - 2], ends[ends.length - 1]), 'record', 0) as { v: number; pages: unknown[][] }
    if (ends.length > 1 && last.v === 3) {
      for (const row of last.pages) if (row.length === 3) { chunkRows++; assert.ok((row[2] as Uint8Array).length < PAGE_SIZE && (row[2] as Uint8Array).length % 4096 === 0) }
      assert.ok(bytes.length - before < PAGE_SIZE, `a chunk record is smaller than a page (${bytes.length - before} bytes)`)
    }
    before = bytes.length
    // every step resolves to whole pages: the last one's memory is the file's
    const steps = liveSteps(bytes, s.ckptPath)
    const table = new Map<number, Uint8Array>()
    for (const st of steps) {
      for (const [i, p] of st.pages) { if (p === null) table.delete(i); else { assert.is(p.length, PAGE_SIZE); table.set(i, p) } }
      for (const i of [...table.keys()]) if (i >= st.pageCount) table.delete(i)
    }
    assert.equal(memory({ pages: [...table].sort((a, b) => a[0] - b[0]) }), memory(c))
  }
  assert.ok(chunkRows >= 30, `most changed pages went as chunk rows (${chunkRows})`)
  s.lineage.writer.close()
  // the history entries the records stand for are rebuilt from the steps after they are lost
  const hist = path.join(dir, 'history', 'c')
  const entries = explode(hist) // one file per entry (the layout before segments), to lose the last three
  assert.is(entries.length, 41)
  for (const e of entries.slice(-3)) fs.rmSync(e)
  const r = resumeAgent({ dir, price: 1000n, emit: () => {} }, s.ckptPath)
  assert.is(r.live.parsed.tick, 40)
  r.lineage.writer.close()
  const v = verifyHistory([dir])
  assert.ok(v.valid, formatReport(v))
  assert.is(v.checkpoints, 41)
})

/** A memory of `pages` random pages committed into a PageImage, and a writer of its checkpoints (as runtime/agent.ts). */
function imageWriter (name: string, pages: number) {
  const id = generateIdentity()
  const mem = randomBytes(pages * PAGE_SIZE)
  const img = new PageImage()
  img.commit(mem)
  const w = new CheckpointWriter(dir, name)
  let tick = 0; let prev: string | null = null
  const write = (): void => {
    const t = img.takeCheckpoint()
    const snap: Snapshot = { pageCount: img.pageCount, pages: t.pages, digests: t.digests, changed: tick === 0 ? null : t.changed, chunkDigests: t.chunkDigests, chunkMasks: t.chunkMasks, globals: [] }
    prev = w.write({ identity: id, wasm: Buffer.from('\0asm\x01\0\0\0'), manifest: Buffer.from('{}'), snapshot: snap, tick: tick++, epoch: 0, prev, fuel: 0n, budget: 1n, price: 1n, host: 'h', status: 'running', log: null }).cid
  }
  const pagesOf = () => memory({ pages: Array.from({ length: pages }, (_, i) => [i, mem.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)] as [number, Uint8Array]) })
  return { mem, img, w, write, pagesOf, live: path.join(dir, `${name}.ckpt`) }
}

test('changed pages whose earlier chunk digests the writer does not know go as chunk rows of the chunks the runtime found changed, however many pages changed', () => {
  const m = imageWriter('m', 64)
  m.write()
  for (const n of [1, 40]) { // one page (chunk digests hashed), 40 pages (more than FINE_GRAIN_PAGES: masks alone)
    const before = fs.statSync(m.live).size
    for (let k = 0; k < n; k++) m.mem[((k * 3 + 1) % 64) * PAGE_SIZE + 5000 + n] ^= 0x5a // chunk 1 of each page
    assert.is(m.img.commit(m.mem), n)
    m.write()
    assert.not.ok(m.w.lastStats!.liveCompacted)
    const grown = fs.statSync(m.live).size - before
    assert.ok(grown < n * 4096 + 2000 + n * 16, `${n} page(s): only the changed chunks appended (${grown} bytes)`)
    assert.equal(memory(readLive(m.live)), m.pagesOf()) // the state root checks every page folded through the records
  }
  // the same 40 pages again: the archive stores their changed chunks and lists, not their other chunks
  const packs = () => fs.readdirSync(path.join(dir, 'blobs')).filter((n) => n.endsWith('.pack')).reduce((k, n) => k + fs.statSync(path.join(dir, 'blobs', n)).size, 0)
  const p0 = packs()
  for (let k = 0; k < 40; k++) m.mem[((k * 3 + 1) % 64) * PAGE_SIZE + 9000] ^= 0x5a // chunk 2
  m.img.commit(m.mem); m.write()
  const stored = packs() - p0
  assert.ok(stored < 40 * (4096 + 512 + 2 * 64) + 1000, `only the changed chunks archived (${stored} bytes)`)
  assert.equal(memory(readLive(m.live)), m.pagesOf())
  const r = verifyHistory([dir])
  assert.ok(r.valid, formatReport(r))
  m.w.close()
})

test(`a live file of ${SPARE_MIN_BYTES} bytes or more is rewritten whole when most of memory changed, into the file the last whole write replaced (overwritten, cut to size); a failure leaves the live file; close removes the spare`, () => {
  const m = imageWriter('s', SPARE_MIN_BYTES / PAGE_SIZE)
  const spare = path.join(dir, '.s.ckpt.old')
  const changeAll = () => { m.mem.set(randomBytes(m.mem.length)); m.img.commit(m.mem) }
  m.write()
  const first = fs.statSync(m.live).ino
  changeAll(); m.write()
  assert.ok(m.w.lastStats!.liveCompacted, 'a record of every page: written whole')
  assert.is(fs.statSync(spare).ino, first, 'the replaced file is kept as the spare')
  const second = fs.statSync(m.live).ino
  // two small records make the live file (the next spare) longer than a whole copy
  for (let k = 0; k < 2; k++) { m.mem[k * PAGE_SIZE] ^= 1; m.img.commit(m.mem); m.write(); assert.not.ok(m.w.lastStats!.liveCompacted) }
  changeAll(); m.write()
  assert.is(fs.statSync(m.live).ino, first, 'written into the spare')
  assert.is(fs.statSync(spare).ino, second)
  const whole = fs.statSync(m.live).size
  assert.equal(memory(readLive(m.live)), m.pagesOf())
  changeAll(); m.write()
  assert.is(fs.statSync(m.live).ino, second, 'written into the longer spare')
  assert.is(fs.statSync(m.live).size, whole, 'the spare cut to the size of the whole checkpoint')
  assert.equal(liveItems(fs.readFileSync(m.live), m.live).length, 1)
  assert.equal(memory(readLive(m.live)), m.pagesOf())
  // a crash before the rename: the live file holds the last checkpoint
  const kept = memory(readLive(m.live))
  changeAll()
  testHooks.beforeRename = (tmp, file) => { if (file === m.live && tmp !== file) throw new Error('simulated crash') }
  try { assert.throws(() => m.write(), /simulated crash/) } finally { testHooks.beforeRename = null }
  assert.equal(memory(readLive(m.live)), kept)
  assert.ok(fs.readdirSync(dir).every((n) => !n.includes('.tmp-')), 'no temporary file left')
  m.write()
  assert.equal(memory(readLive(m.live)), m.pagesOf())
  const r = verifyHistory([dir])
  assert.ok(r.valid, formatReport(r))
  m.w.close()
  assert.not.ok(fs.existsSync(spare), 'close removes the spare')
})

test.run()
