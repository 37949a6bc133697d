/**
 * One fsync per checkpoint is safe (issue 10, docs/FORMAT.md "Writing and crash safety"): between
 * two whole writes of the live file, pack frames and history entries are written without a sync,
 * and the live file's delta records cover them. A power cut is simulated with test/powercut.ts
 * (node:fs wrapped: data written since the last fsync, and names since the last directory fsync,
 * are dropped — or, at random, kept, torn or zeroed), at seeded random points of resumes and
 * checkpoints (compactions and the recovery itself included); then the live file must read,
 * no history entry may lie past it, and after the recovery (ensureArchived) the history is VALID
 * and reaches the live checkpoint, also merged with a copy of the `.ckpt` resumed elsewhere.
 * A kill -9 (the process stops at a call, every written byte stays) and a power cut at every
 * mutating call of a compaction: the file reads as the last complete checkpoint and, resumed,
 * verifies VALID. The seed is printed in every failure; set CRASH_SEED to reproduce one.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { formatReport, verifyHistory } from '../checkpoint/history.ts'
import { generateIdentity, identityFromSeed, type Identity } from '../checkpoint/identity.ts'
import { headerCid } from '../checkpoint/header.ts'
import { readLive } from '../checkpoint/live.ts'
import { PAGE_SIZE, type GlobalValue } from '../checkpoint/state.ts'
import { sha256 } from '../checkpoint/hash.ts'
import { CheckpointWriter, SYNC_EVERY, type Snapshot, type WriteArgs } from '../checkpoint/writer.ts'
import { GroupCommit } from '../checkpoint/group-commit.ts'
import { FRAME_CHUNKED, PackIndex, type PackSlot } from '../checkpoint/pack.ts'
import { StorageError } from '../checkpoint/errors.ts'
import { runLoop } from '../runtime/runner.ts'
import { resumeAgent, startAgent } from '../runtime/session.ts'
import type { HostSettings } from '../runtime/session.ts'
import { agentWasm, cleanup, tempDir } from './helpers.ts'
import { PowerCut, PowerCutCrash } from './powercut.ts'
import { prng } from './prng.ts'
import { entriesIn } from './hist.ts'

// test-timeout: 600
test.after(cleanup)

const SEED = Number(process.env.CRASH_SEED ?? (Date.now() % 1e6))
const WASM = fs.readFileSync(agentWasm('ledger'))
const MANIFEST = fs.readFileSync(agentWasm('ledger').replace(/\.wasm$/, '.manifest.json'))
const settings = (dir: string): HostSettings => ({ dir, price: 1000n, emit: () => {} })
/** what a power cut may take: the checkpoint's own files (the mailbox's spool keeps its own rules) */
const checkpointFile = (root: string) => (p: string) => { const r = path.relative(root, p); return r.endsWith('.ckpt') || r.startsWith('history' + path.sep) || r.startsWith('blobs' + path.sep) }

/** The ticks of the entries of `dir`'s history of `name` (intact frames of its segments; a torn tail holds none). */
function entryTicks (dir: string, name: string): number[] {
  return entriesIn(path.join(dir, 'history', name)).map((e) => e.tick)
}

/** After a cut: the live file reads, and no history entry lies past it (no fork for a copied .ckpt). */
function checkAfterCut (dir: string, name: string, what: string): number {
  let live: ReturnType<typeof readLive>
  try { live = readLive(path.join(dir, `${name}.ckpt`)) } catch (e) { throw new Error(`${what}: the live file does not read: ${(e as Error).message}`) }
  const newest = Math.max(-1, ...entryTicks(dir, name))
  assert.ok(newest <= live.parsed.tick, `${what}: a history entry (tick ${newest}) is past the live file (tick ${live.parsed.tick})`)
  return live.parsed.tick
}

/** Recovery, then: VALID, and the history reaches the live checkpoint. Returns the entries re-archived. */
function recoverAndVerify (dir: string, name: string, what: string, several = false): number {
  const live = readLive(path.join(dir, `${name}.ckpt`))
  const w = new CheckpointWriter(dir, name)
  const n = w.ensureArchived(live)
  const r = verifyHistory([several ? path.join(dir, 'history', name) : dir])
  assert.ok(r.valid, `${what}: not VALID after recovery:\n${formatReport(r)}`)
  assert.is(r.ticks?.[1], live.parsed.tick, `${what}: the history does not reach the live checkpoint`)
  return n
}

test(`power cuts at seeded random points of resumes and checkpoints of an agent (CRASH_SEED=${SEED})`, async () => {
  const rand = prng(SEED)
  const dir = tempDir('igord-cut-')
  const s0 = startAgent(settings(dir), { name: 'ledger', wasm: WASM, wasmFile: 'ledger.wasm', manifest: MANIFEST, manifestFile: 'ledger.manifest.json', budget: 10_000_000n })
  await runLoop(s0.agent, s0.lineage, { intervalMs: 0, maxTicks: 3, checkpointEveryMs: 0 })
  const ckpt = path.join(dir, 'ledger.ckpt')
  let perRound = 0
  let recovered = 0; let crashes = 0
  const rounds = 16
  for (let round = 0; round < rounds; round++) {
    const mode = round % 2 === 0 ? 'drop' : 'random'
    const pc = new PowerCut(dir)
    // round 0 runs to the end to learn how many mutating calls a round makes
    pc.crashAt = round === 0 ? Infinity : 1 + Math.floor(rand() * perRound * 1.1)
    const what = `round ${round} (${mode}, crash at call ${pc.crashAt}, seed ${SEED})`
    pc.install()
    let err: unknown = null
    try {
      const s = resumeAgent(settings(dir), ckpt)
      await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: 6, checkpointEveryMs: 0 })
      s.mailbox.close()
    } catch (e) { err = e } finally { pc.uninstall() }
    if (!pc.crashed && err !== null) throw err
    if (round === 0) perRound = pc.calls
    if (pc.crashed) crashes++
    const cutWhat = `${what}; the cut: ${pc.cut(mode, rand, checkpointFile(dir)).join(', ') || 'nothing'}`
    checkAfterCut(dir, 'ledger', cutWhat)
    // every other round, the next round's resume does the recovery (a cut may land in it)
    if (round % 4 < 2) recovered += recoverAndVerify(dir, 'ledger', cutWhat)
  }
  recovered += recoverAndVerify(dir, 'ledger', `after ${rounds} rounds (seed ${SEED})`)
  assert.ok(crashes >= rounds / 2, `only ${crashes} of ${rounds} cuts landed inside a round (seed ${SEED})`)
  assert.ok(recovered > 0, `no cut ever took a history entry (seed ${SEED}): the test did not test the recovery`)

  // a copy of the .ckpt alone, resumed elsewhere, continues the history: merged, VALID
  const other = tempDir('igord-cut-copy-')
  fs.copyFileSync(ckpt, path.join(other, 'ledger.ckpt'))
  const s = resumeAgent(settings(other), path.join(other, 'ledger.ckpt'))
  await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: 3, checkpointEveryMs: 0 })
  s.mailbox.close()
  const r = verifyHistory([dir, other])
  assert.ok(r.valid, `merged with a resumed copy (seed ${SEED}): ${formatReport(r)}`)
})

/** A small synthetic agent written by a CheckpointWriter directly, so that compactions come often and on cue. */
class Synth {
  readonly id: Identity = generateIdentity()
  readonly mem: Buffer[]
  tick = 0; prev: string | null = null; fuel = 0n
  readonly wasm: Buffer
  readonly globals: GlobalValue[] = [{ index: 0, type: 'i32', bytes: Uint8Array.of(1, 2, 3, 4) }]
  readonly pageCount: number
  constructor (seed: number, pages = 4) {
    const r = prng(seed)
    const bytes = (n: number) => { const b = Buffer.alloc(n); for (let i = 0; i < n; i += 4) b.writeUInt32LE(Math.floor(r() * 2 ** 32), i); return b }
    this.mem = Array.from({ length: pages }, () => bytes(PAGE_SIZE))
    this.wasm = bytes(3000)
    this.pageCount = pages + 2
  }
  /** the writer's arguments for a checkpoint of the current memory at the current tick */
  args (changed: number[] | null): WriteArgs {
    const snapshot: Snapshot = { pageCount: this.pageCount, pages: this.mem.map((p, i) => [i, p]), digests: this.mem.map((p, i) => [i, sha256(p)]), changed, globals: this.globals }
    return { identity: this.id, wasm: this.wasm, manifest: Buffer.from('{}'), snapshot, tick: this.tick, epoch: 0, prev: this.prev, fuel: this.fuel, budget: 1_000_000_000n, price: 1000n, host: 'test', time: 1_700_000_000_000 + this.tick, status: 'running', log: Buffer.from(`tick ${this.tick}`) }
  }
  /** after a checkpoint written: the next tick follows it */
  advance (cid: string): void { this.tick++; this.prev = cid; this.fuel += 1000n }
  write (w: CheckpointWriter, changed: number[] | null): boolean {
    this.advance(w.write(this.args(changed)).cid)
    return w.lastStats!.liveCompacted
  }
  /** changes one page in place; returns its index (the snapshot's `changed`) */
  touch (): number {
    const i = this.tick % this.mem.length
    this.mem[i].writeUInt32LE(this.tick, (this.tick * 4099) % (PAGE_SIZE - 4))
    return i
  }
  /** changes one page in place and writes a checkpoint; true when it rewrote the live file whole */
  step (w: CheckpointWriter): boolean {
    return this.write(w, [this.touch()])
  }
}

/**
 * Births a synthetic agent in a new directory under `pc` (installed here, crashing at
 * `crashAt`) and writes checkpoints until the first compaction (a whole rewrite after delta
 * records) has been written. Returns the directory, the mutating calls made before that
 * compaction began and after it ended, the tick it wrote, and whether the crash landed.
 */
function untilCompaction (seed: number, crashAt: number): { dir: string; pc: PowerCut; start: number; end: number; tick: number } {
  const dir = tempDir('igord-compact-')
  const pc = new PowerCut(dir)
  pc.crashAt = crashAt
  pc.install()
  let start = -1; let end = -1; let tick = -1
  try {
    const s = new Synth(seed)
    const w = new CheckpointWriter(dir, 'syn')
    s.write(w, null)
    for (let k = 0; k < 40 && end < 0; k++) {
      const c0 = pc.calls
      tick = s.tick
      if (s.step(w)) { start = c0; end = pc.calls }
    }
  } catch (e) { if (!pc.crashed) throw e } finally { pc.uninstall() }
  return { dir, pc, start, end, tick }
}

test('an ordinary checkpoint makes one fsync (the live record\'s); a stop leaves everything durable', () => {
  const dir = tempDir('igord-sync-')
  const s = new Synth(SEED)
  const w = new CheckpointWriter(dir, 'syn')
  s.write(w, null)
  const pc = new PowerCut(dir)
  pc.install()
  let compacted = false
  try {
    const n0 = pc.syncs
    compacted = s.step(w)
    assert.is(pc.syncs - n0, 1, 'syncs of a delta checkpoint')
  } finally { pc.uninstall() }
  assert.not.ok(compacted)
  // the entry and the pack frames of that checkpoint are not durable yet: a cut takes them
  const cut1 = pc.cut('drop')
  assert.ok(cut1.some((l) => l.startsWith('history')) && cut1.some((l) => l.startsWith('blobs')), `a cut after a delta checkpoint: ${cut1.join(', ')}`)
  recoverAndVerify(dir, 'syn', 'after a cut of a delta checkpoint')
  // a paused checkpoint ends with a sync point: a cut right after it takes nothing
  const live = readLive(path.join(dir, 'syn.ckpt'))
  const s2 = new Synth(SEED)
  Object.assign(s2, { id: identityFromSeed(live.seed), tick: live.parsed.tick + 1, prev: headerCid(live.header), fuel: live.parsed.fuel + 1000n })
  for (const [i, p] of live.pages) if (i < s2.mem.length) s2.mem[i] = Buffer.from(p)
  const w2 = new CheckpointWriter(dir, 'syn')
  w2.ensureArchived(live)
  s2.write(w2, null); s2.step(w2)
  const pc2 = new PowerCut(dir)
  pc2.install()
  try {
    s2.mem[1][7] ^= 1
    w2.write({ identity: s2.id, wasm: s2.wasm, manifest: Buffer.from('{}'), snapshot: { pageCount: 6, pages: s2.mem.map((p, i) => [i, p]), digests: s2.mem.map((p, i) => [i, sha256(p)]), changed: [1], globals: s2.globals }, tick: s2.tick, epoch: 0, prev: s2.prev, fuel: s2.fuel, budget: 1_000_000_000n, price: 1000n, host: 'test', status: 'paused', log: null })
  } finally { pc2.uninstall() }
  const cut2 = pc2.cut('drop', Math.random, checkpointFile(dir))
  assert.equal(cut2.filter((l) => !l.includes('.tmp-')), [], 'a cut right after a paused checkpoint')
  const v = verifyHistory([dir])
  assert.ok(v.valid, formatReport(v))
  assert.is(v.ticks?.[1], s2.tick)
})

test(`records up to a completed sync point (every ${SYNC_EVERY}th) survive a power cut; the recovery rewrites only what came after`, () => {
  const dir = tempDir('igord-syncevery-')
  const s = new Synth(SEED, 96) // a whole checkpoint of 96 pages: no compaction within the records below
  const w = new CheckpointWriter(dir, 'syn')
  s.write(w, null)
  const pc = new PowerCut(dir)
  pc.install()
  const extra = 5
  try {
    for (let k = 0; k < SYNC_EVERY + extra; k++) assert.not.ok(s.step(w), `record ${k + 1} compacted the file`)
  } finally { pc.uninstall() }
  pc.cut('drop')
  const ticks = new Set(entryTicks(dir, 'syn'))
  for (let t = 0; t <= SYNC_EVERY; t++) assert.ok(ticks.has(t), `the entry of tick ${t} (up to the sync point at record ${SYNC_EVERY}) did not survive`)
  for (let t = SYNC_EVERY + 1; t <= SYNC_EVERY + extra; t++) assert.not.ok(ticks.has(t), `the entry of tick ${t} (after the sync point) was synced`)
  const n = recoverAndVerify(dir, 'syn', 'after a cut past a sync point')
  assert.is(n, extra, 'entries the recovery wrote')
})

test('damage the recovery may not cut (a synced frame: bit rot) is left for verify to report, never cut', () => {
  const dir = tempDir('igord-rot-')
  const s = new Synth(SEED)
  const w = new CheckpointWriter(dir, 'syn')
  s.write(w, null)
  const original = Buffer.from(s.mem[0])
  s.mem[0][100] ^= 0xff; s.write(w, [0])
  s.mem[0][100] ^= 0xff; s.write(w, [0]) // record 2 names page 0 as the whole checkpoint had it: that (synced) frame
  const pack = fs.readdirSync(path.join(dir, 'blobs')).find((n) => n.endsWith('.pack'))!
  const packFile = path.join(dir, 'blobs', pack)
  const bytes = fs.readFileSync(packFile)
  const at = bytes.indexOf(original)
  assert.ok(at > 0, 'page 0 stored whole in the pack')
  bytes[at + 5000] ^= 1
  fs.writeFileSync(packFile, bytes)
  const w2 = new CheckpointWriter(dir, 'syn')
  w2.ensureArchived(readLive(path.join(dir, 'syn.ckpt')))
  assert.is(fs.statSync(packFile).size, bytes.length, 'the pack was cut')
  const r = verifyHistory([dir])
  assert.not.ok(r.valid)
  assert.ok(r.faults.some((f) => /corrupt/.test(f.fault)), formatReport(r))
})

test('a pack tail a power cut zeroed inside a frame of the checkpoint it interrupted (no record holds it) is cut by the recovery, never reused', () => {
  const dir = tempDir('igord-zeroed-')
  const s = new Synth(SEED)
  const w = new CheckpointWriter(dir, 'syn')
  s.write(w, null)
  s.step(w) // a delta record, durable
  // the next checkpoint: its frames and its record appended, and the power fails before the record's fdatasync
  const pc = new PowerCut(dir)
  const mem = s.mem.map((p) => Buffer.from(p))
  const tick = s.tick
  const p = w.begin(s.args([s.touch()]))
  for (const j of p.syncs) fs.closeSync(j.fd)
  // the cut: the record and the unsynced entry lost, the pack's new frames kept but zeroed from inside the last one
  const pack = path.join(dir, 'blobs', fs.readdirSync(path.join(dir, 'blobs')).find((n) => n.endsWith('.pack'))!)
  const kept = fs.readFileSync(pack)
  pc.cut('drop')
  let last: PackSlot | null = null
  const index = new PackIndex(pack)
  fs.writeFileSync(pack, kept)
  index.scan((_c, slot) => { last = slot })
  const lastSlot = last as PackSlot | null
  assert.ok(lastSlot !== null && lastSlot.kind === FRAME_CHUNKED, 'the interrupted checkpoint\'s last frame is its page\'s chunk list')
  kept.fill(0, lastSlot.off + 100)
  fs.writeFileSync(pack, kept)
  const live = readLive(path.join(dir, 'syn.ckpt'))
  assert.is(live.parsed.tick, tick - 1, 'the live file after the cut')
  // resumed, the agent runs that tick again: the same page, whose damaged frame a put must not find
  const w2 = new CheckpointWriter(dir, 'syn')
  w2.ensureArchived(live)
  const s2 = new Synth(SEED)
  Object.assign(s2, { id: identityFromSeed(live.seed), tick, prev: headerCid(live.header), fuel: live.parsed.fuel + 1000n })
  mem.forEach((pg, i) => { s2.mem[i] = pg })
  s2.step(w2); s2.step(w2)
  w2.close()
  const v = verifyHistory([dir])
  assert.ok(v.valid, formatReport(v))
  assert.is(v.ticks?.[1], tick + 1)
  assert.ok(fs.statSync(pack).size <= lastSlot.off, 'the zeroed frame was not cut')
})

test(`kill -9 and power cut at every mutating call of a compaction: the file reads as the last complete checkpoint and resumes VALID (CRASH_SEED=${SEED})`, () => {
  const rand = prng(SEED + 1)
  const count = untilCompaction(SEED, Infinity)
  assert.ok(count.end > count.start + 3, `no compaction found (calls ${count.start}..${count.end})`)
  fs.rmSync(count.dir, { recursive: true, force: true })
  let atNew = 0; let runs = 0
  for (let k = count.start + 1; k <= count.end; k++) {
    for (const mode of ['kill', 'drop', 'random'] as const) {
      const what = `${mode} at call ${k - count.start} of the compaction's ${count.end - count.start} (seed ${SEED})`
      const r = untilCompaction(SEED, k)
      assert.ok(r.pc.crashed && r.tick === count.tick, `${what}: the crash did not land in the compaction`)
      const cutWhat = mode === 'kill' ? what : `${what}; the cut: ${r.pc.cut(mode, rand).join(', ') || 'nothing'}`
      const tick = checkAfterCut(r.dir, 'syn', cutWhat)
      assert.ok(tick === count.tick - 1 || tick === count.tick, `${cutWhat}: the live file is at tick ${tick}, expected ${count.tick - 1} or ${count.tick}`)
      if (tick === count.tick) atNew++
      recoverAndVerify(r.dir, 'syn', cutWhat)
      // and it goes on from there: a resumed writer's checkpoints follow it, VALID
      const live = readLive(path.join(r.dir, 'syn.ckpt'))
      const w = new CheckpointWriter(r.dir, 'syn')
      w.ensureArchived(live)
      const s = new Synth(SEED)
      Object.assign(s, { id: identityFromSeed(live.seed), tick: live.parsed.tick + 1, prev: headerCid(live.header), fuel: live.parsed.fuel + 1000n })
      for (const [i, p] of live.pages) if (i < s.mem.length) s.mem[i] = Buffer.from(p)
      s.write(w, null); s.step(w); s.step(w)
      w.close()
      const v = verifyHistory([r.dir])
      assert.ok(v.valid, `${cutWhat}: not VALID after resuming: ${formatReport(v)}`)
      fs.rmSync(r.dir, { recursive: true, force: true })
      runs++
    }
  }
  assert.ok(atNew > 0 && atNew < runs, `crash points before and after the compacted file landed: ${atNew} of ${runs} resumed at the new checkpoint`)
})

/** `n` synthetic agents in one directory, each with a writer that has written its whole first checkpoint. */
function synths (dir: string, n: number, seed: number): { s: Synth; w: CheckpointWriter; name: string }[] {
  return Array.from({ length: n }, (_, k) => {
    const s = new Synth(seed + k)
    const w = new CheckpointWriter(dir, `syn${k}`)
    s.write(w, null)
    return { s, w, name: `syn${k}` }
  })
}

/** A group commit whose syncs wait until `release()` (then run the real fs.fdatasync / fs.fsync), recording each descriptor asked. */
function heldCommit (fail?: (k: number) => boolean): { gc: GroupCommit; fds: number[]; release (): void } {
  const held: (() => void)[] = []
  const fds: number[] = []
  const gc = new GroupCommit((job, cb) => {
    const k = fds.length
    fds.push(job.fd)
    held.push(() => {
      if (fail?.(k) === true) { const e = new Error('EIO: i/o error, fdatasync') as NodeJS.ErrnoException; e.code = 'EIO'; cb(e); return }
      if (job.data) fs.fdatasync(job.fd, cb); else fs.fsync(job.fd, cb)
    })
  })
  return { gc, fds, release: () => { for (const h of held.splice(0)) h() } }
}

const turns = async (n: number): Promise<void> => { for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r)) }

test('group commit: a batch syncs every agent\'s live record, and nothing of a checkpoint shows before its sync returned', async () => {
  const dir = tempDir('igord-group-')
  const agents = synths(dir, 5, SEED)
  const pc = new PowerCut(dir)
  pc.install()
  const { gc, fds, release } = heldCommit()
  const settled: boolean[] = agents.map(() => false)
  let all: Promise<unknown>
  try {
    const ticks = agents.map(({ s }) => s.tick)
    const proms = agents.map(({ s, w }, k) => gc.commit(w, s.args([s.touch()])).then((r) => { settled[k] = true; s.advance(r.cid); return r }))
    all = Promise.all(proms)
    await turns(5) // the batch was flushed (its syncs asked for), and is held
    assert.is(fds.length, agents.length, 'syncs asked for by one batch')
    // every descriptor of the batch, each its agent's live file
    const inodes = new Set(fds.map((fd) => fs.fstatSync(fd).ino))
    assert.equal(inodes, new Set(agents.map(({ w }) => fs.statSync(w.livePath).ino)), 'the batch\'s descriptors are the agents\' live files')
    // held: no checkpoint settled, no history entry written, the writer's last is the one before
    assert.equal(settled, agents.map(() => false), 'a checkpoint settled before its sync returned')
    agents.forEach(({ w, name }, k) => {
      assert.not.ok(entryTicks(dir, name).includes(ticks[k]), `${name}: its history entry was written before its record was durable`)
      assert.is(w.last?.header.tick, ticks[k] - 1, `${name}: writer.last moved before the sync`)
    })
    assert.throws(() => agents[0].w.begin(agents[0].s.args([0])), /still being synced/, 'a second checkpoint of a writer while one is pending')
    release()
    await all
  } finally { pc.uninstall() }
  assert.equal(settled, agents.map(() => true))
  assert.is(gc.stats.batches, 1)
  assert.is(gc.stats.checkpoints, agents.length)
  // what settled is durable: a power cut right now leaves every agent at the checkpoint it was told of
  pc.cut('drop')
  for (const { s, name } of agents) {
    const live = readLive(path.join(dir, `${name}.ckpt`))
    assert.is(live.parsed.tick, s.tick - 1, `${name}: a checkpoint settled by the group commit was lost at a power cut`)
    assert.is(headerCid(live.header), s.prev)
    recoverAndVerify(dir, name, `${name} after a cut past a group commit`, true)
  }
})

test('group commit: one failed sync fails every checkpoint of its batch; each writer then writes whole, and all recover VALID', async () => {
  const dir = tempDir('igord-group-fail-')
  const agents = synths(dir, 4, SEED + 100)
  const { gc, release } = heldCommit((k) => k === 2)
  const proms = agents.map(({ s, w }) => gc.commit(w, s.args([s.touch()])).then(() => null, (e: Error) => e))
  await turns(5)
  release()
  const errs = await Promise.all(proms)
  errs.forEach((e, k) => {
    assert.instance(e, StorageError, `${agents[k].name}: its checkpoint did not fail with the batch`)
    assert.match(e!.message, k === 2 ? /syn2\.ckpt: cannot sync: EIO/ : /not made durable: a sync of the same group commit failed: .*syn2\.ckpt: cannot sync: EIO/)
  })
  assert.is(gc.stats.failed, 1)
  for (const { s, w, name } of agents) {
    assert.is(w.last, null, `${name}: writer.last after a failed checkpoint`)
    assert.not.ok(entryTicks(dir, name).includes(s.tick), `${name}: an entry of a failed checkpoint`)
    // the failed checkpoint is retried (same tick, same prev): whole, since the writer forgot its file
    s.write(w, null)
    assert.ok(w.lastStats!.liveCompacted, `${name}: the write after a failed group commit was not whole`)
    w.close()
    recoverAndVerify(dir, name, `${name} after a failed group commit`, true)
  }
})

test('group commit in runLoop: the next tick, its checkpoint\'s callbacks and the lineage wait for the sync', async () => {
  const dir = tempDir('igord-group-loop-')
  const s = startAgent(settings(dir), { name: 'ledger', wasm: WASM, wasmFile: 'ledger.wasm', manifest: MANIFEST, manifestFile: 'ledger.manifest.json', budget: 1_000_000_000n })
  const { gc, fds, release } = heldCommit()
  const seen: string[] = []
  let loopDone = false
  const loop = runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: 8, checkpointEveryMs: 0, commit: gc, mailbox: s.mailbox, onTick: (r) => seen.push(`tick ${r.tick}`), onCheckpoint: (h) => seen.push(`checkpoint ${h.tick}`) }).finally(() => { loopDone = true })
  try {
  for (let round = 1; round <= 3; round++) {
    for (let i = 0; i < 2000 && gc.stats.batches < round; i++) await new Promise((r) => setTimeout(r, 5))
    assert.is(gc.stats.batches, round, `round ${round}: the checkpoint's syncs were not asked for`)
    assert.ok(fds.length >= round, `round ${round}: no sync asked`)
    const t = s.agent.tick
    await turns(5)
    assert.is(s.agent.tick, t, `round ${round}: a tick ran before the checkpoint of tick ${t} was durable`)
    assert.ok(s.lineage.lastTick < t, `round ${round}: the lineage moved to tick ${t} before its sync`)
    assert.not.ok(seen.includes(`checkpoint ${t}`), `round ${round}: onCheckpoint of tick ${t} before its sync`)
    // a whole write asks for its folder's fsync once its other syncs returned: release until it settled
    for (let i = 0; i < 2000 && s.lineage.lastTick < t; i++) { release(); await new Promise((r) => setTimeout(r, 5)) }
  }
    for (let i = 0; i < 2000 && !loopDone; i++) { await new Promise((r) => setTimeout(r, 5)); release() }
  } finally { if (!loopDone) { release(); for (let i = 0; i < 2000 && !loopDone; i++) { await new Promise((r) => setTimeout(r, 5)); release() } } }
  await loop
  s.mailbox.close()
  assert.ok(seen.includes('checkpoint 8'), seen.join(', '))
  assert.is(s.lineage.lastTick, 8)
  const r = verifyHistory([dir])
  assert.ok(r.valid, formatReport(r))
})

test.run()
