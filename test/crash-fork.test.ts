/**
 * kill -9 never makes a fork (issue 7 §4): whatever moment a writer dies at, copying its live
 * `.ckpt` alone to a fresh directory, resuming it there and merging both directories' histories
 * verifies VALID (and replays VALID).
 *
 * In-process: a crash is simulated by throwing from the store's `beforeRename` hook (called before
 * each rename into place and each append to a pack or the live file) or before an append to a
 * history segment (node:fs `writevSync` wrapped) — the process's files are then exactly as a kill at
 * that instant leaves them (each atomic write is either renamed into place or not; an unrenamed
 * temp file is a dotfile every reader ignores; an append is made or not, or — a kill in the middle
 * of it — made in part). Deterministic kills before each kind of write (first blob, live file,
 * history entry, and in the middle of the entry's append) plus seeded random kill points (any
 * rename or append of any write, including the archiving done by a resume). Through the real CLI:
 * `kill -9` at seeded random moments of `igord resume`. The seed is printed in every failure
 * message; set CRASH_SEED to reproduce one.
 */
import * as fs from 'node:fs'
import type * as FS from 'node:fs'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import * as path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { formatReport, verifyHistory } from '../checkpoint/history.ts'
import { readLive } from '../checkpoint/live.ts'
import { testHooks } from '../checkpoint/store.ts'
import { formatReplay, replayHistory } from '../runtime/replay.ts'
import { runLoop } from '../runtime/runner.ts'
import { resumeAgent, startAgent } from '../runtime/session.ts'
import type { HostSettings } from '../runtime/session.ts'
import { agentWasm, cleanup, igord, igordSpawn, tempDir } from './helpers.ts'
import { prng } from './prng.ts'
import { entriesIn, segmentFiles } from './hist.ts'
import { readHistoryFile } from '../checkpoint/segment.ts'

test.after(cleanup)
test.after.each(() => { testHooks.beforeRename = null })


const SEED = Number(process.env.CRASH_SEED ?? (Date.now() % 1e6))
const WASM = fs.readFileSync(agentWasm('ledger'))
const MANIFEST = fs.readFileSync(agentWasm('ledger').replace(/\.wasm$/, '.manifest.json'))

class Crash extends Error {}

const settings = (dir: string): HostSettings => ({ dir, price: 1000n, emit: () => {} })

/** Births `ledger` in a new directory and runs a few ticks; returns the directory. */
async function born (): Promise<string> {
  const dir = tempDir('igord-fork-')
  const s = startAgent(settings(dir), { name: 'ledger', wasm: WASM, wasmFile: 'ledger.wasm', manifest: MANIFEST, manifestFile: 'ledger.manifest.json', budget: 1_000_000n })
  await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: 3, checkpointEveryMs: 0 })
  return dir
}

const fsc = createRequire(import.meta.url)('node:fs') as typeof import('node:fs')

/**
 * Wraps node:fs (the checkpoint modules import it as a namespace: `syncBuiltinESMExports` reaches
 * them) so that `before(file)` runs before each `writevSync` to a descriptor opened on a history
 * segment (`*.hist`: the writer opens its segment for each append and appends the frame with writev).
 * `before` returns how many bytes of the append to write before it throws (null: all, no kill).
 * @returns the uninstall.
 */
function hookSegmentAppends (before: (file: string) => number | null): () => void {
  const real = { openSync: fsc.openSync, closeSync: fsc.closeSync, writevSync: fsc.writevSync }
  const fds = new Map<number, string>()
  fsc.openSync = function (p: FS.PathLike, flags?: FS.OpenMode, mode?: FS.Mode | null) {
    const fd = real.openSync(p, flags ?? 'r', mode)
    if (String(p).endsWith('.hist')) fds.set(fd, path.resolve(String(p)))
    return fd
  } as typeof fsc.openSync
  fsc.closeSync = function (fd: number) { fds.delete(fd); real.closeSync(fd) }
  fsc.writevSync = function (fd: number, bufs: readonly NodeJS.ArrayBufferView[], pos?: number) {
    const file = fds.get(fd)
    const keep = file === undefined ? null : before(file)
    if (keep === null) return real.writevSync(fd, bufs, pos)
    const all = Buffer.concat(bufs.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)))
    if (keep > 0) real.writevSync(fd, [all.subarray(0, Math.min(keep, all.length - 1))], pos)
    throw new Crash(`killed ${keep > 0 ? 'in the middle of' : 'before'} an append to ${file}`)
  } as typeof fsc.writevSync
  syncBuiltinESMExports()
  return () => { Object.assign(fsc, real); syncBuiltinESMExports() }
}

/**
 * Resumes `dir/ledger.ckpt` in `dir` and runs `ticks` ticks (a checkpoint after each) with `kill`
 * installed as the rename hook and before each append to a history segment (with `torn`, a kill
 * there first appends half the frame); returns true when the kill landed.
 */
async function runUntilKilled (dir: string, ticks: number, kill: (tmp: string, file: string) => boolean, torn = false): Promise<boolean> {
  // the writer reports a failed append as its own StorageError: whether the kill landed is known here
  let killed = false
  testHooks.beforeRename = (tmp, file) => { if (!killed && kill(tmp, file)) { killed = true; throw new Crash(`killed before renaming ${file}`) } }
  const unhook = hookSegmentAppends((file) => {
    if (killed || !kill(file, file)) return null
    killed = true
    return torn ? 40 : 0
  })
  try {
    const s = resumeAgent(settings(dir), path.join(dir, 'ledger.ckpt'))
    await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: ticks, checkpointEveryMs: 0 })
    assert.not.ok(killed, 'the process went on after the kill')
    return false
  } catch (e) {
    if (killed) return true
    throw e
  } finally { testHooks.beforeRename = null; unhook() }
}

/**
 * The check of the issue: copy `dir/ledger.ckpt` alone to a fresh directory, resume it there for a
 * few ticks, merge both histories: VALID (and, with `replay`, `verify --replay` VALID).
 */
async function copyResumeMerge (dir: string, what: string, replay: boolean): Promise<void> {
  const other = tempDir('igord-fork-copy-')
  fs.copyFileSync(path.join(dir, 'ledger.ckpt'), path.join(other, 'ledger.ckpt'))
  const s = resumeAgent(settings(other), path.join(other, 'ledger.ckpt'))
  await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: 3, checkpointEveryMs: 0 })
  const r = verifyHistory([dir, other])
  assert.ok(r.valid, `${what} (seed ${SEED}): merged histories not VALID:\n${formatReport(r)}`)
  if (replay) {
    const rr = replayHistory([dir, other])
    assert.ok(rr.valid, `${what} (seed ${SEED}): merged histories do not replay:\n${formatReplay(rr, formatReport)}`)
  }
  fs.rmSync(other, { recursive: true, force: true })
}

const isBlob = (f: string) => path.basename(path.dirname(f)) === 'blobs'
const isEntry = (f: string) => path.basename(path.dirname(path.dirname(f))) === 'history'
const isLive = (f: string) => f.endsWith('.ckpt')

test('a kill before each step of a checkpoint write (blobs, live file, history entry) never forks a copied .ckpt', async () => {
  const steps: [string, (f: string) => boolean, boolean][] = [
    ['before the first new blob', isBlob, false],
    ['after the blobs, before the live file', isLive, false],
    ['after the live file, before the history entry', isEntry, false],
    ['in the middle of the history entry\'s append (a torn frame)', isEntry, true],
  ]
  for (const [what, at, torn] of steps) {
    const dir = await born()
    // the kill lands in the second write of the session (the first may write no new blob)
    let writes = 0
    const killed = await runUntilKilled(dir, 4, (_tmp, f) => {
      if (isLive(f)) writes++
      return writes >= 2 && at(f)
    }, torn)
    assert.ok(killed, `${what}: the kill did not land`)
    const live = readLive(path.join(dir, 'ledger.ckpt'))
    const entries = entriesIn(path.join(dir, 'history', 'ledger'))
    assert.ok(entries.length > 0)
    const newest = Math.max(...entries.map((e) => e.tick))
    assert.ok(newest <= live.parsed.tick, `${what}: a history entry (tick ${newest}) is ahead of the live file (tick ${live.parsed.tick})`)
    const tails = () => segmentFiles(path.join(dir, 'history', 'ledger')).filter((f) => readHistoryFile(f).tail !== null)
    assert.is(tails().length, torn ? 1 : 0, `${what}: segments with a torn tail`)
    await copyResumeMerge(dir, what, true)
    // and the same directory resumes after the kill: its own history stays VALID
    assert.not.ok(await runUntilKilled(dir, 2, () => false))
    assert.equal(tails(), [], `${what}: the resume cut the torn tail`)
    const r = verifyHistory([dir])
    assert.ok(r.valid, `${what}: ${formatReport(r)}`)
    assert.is(r.ticks?.[1], readLive(path.join(dir, 'ledger.ckpt')).parsed.tick, `${what}: the history reaches the live checkpoint`)
  }
})

test(`seeded random kill points (any rename or append of any write or resume) never fork a copied .ckpt (CRASH_SEED=${SEED})`, async () => {
  const rand = prng(SEED)
  const dir = await born()
  let landed = 0
  const rounds = 10
  for (let round = 0; round < rounds; round++) {
    // every tick writes at least its live file and its history entry (two hooked calls), so a kill point
    // within 2 × ticks always lands; the test asserts that most rounds were really killed
    const ticks = 1 + Math.floor(rand() * 6)
    const killAt = 1 + Math.floor(rand() * 2 * ticks)
    let n = 0
    if (await runUntilKilled(dir, ticks, () => ++n === killAt)) landed++
    await copyResumeMerge(dir, `round ${round}, kill at rename ${killAt}`, round % 5 === 0)
  }
  assert.ok(landed >= rounds / 2, `seed ${SEED}: only ${landed} of ${rounds} kills landed`)
  const r = verifyHistory([dir])
  assert.ok(r.valid, `seed ${SEED}: ${formatReport(r)}`)
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test(`kill -9 of igord resume at seeded random moments, .ckpt copied alone and resumed elsewhere: merged VALID (CRASH_SEED=${SEED})`, async () => {
  const rand = prng(SEED ^ 0x5eed)
  const d = tempDir('igord-fork-e2e-')
  const ckpt = path.join(d, 'ledger.ckpt')
  const born = igord(['run', agentWasm('ledger'), '--dir', d, '--ticks', '2', '--interval', '0ms', '--checkpoint-every', '0ms', '-q'])
  assert.is(born.code, 0, born.stderr)
  for (let round = 0; round < 3; round++) {
    const child = igordSpawn(['resume', ckpt, '--interval', '0ms', '--checkpoint-every', '0ms', '-q'])
    try {
      await child.waitFor(() => /resumed/.test(child.stderr()), 30_000)
      const delay = Math.floor(rand() * 80)
      await sleep(delay)
    } finally { child.child.kill('SIGKILL') }
    const end = await child.done()
    assert.is(end.signal, 'SIGKILL', `round ${round} (seed ${SEED}): ${end.stderr}`)
    const other = tempDir('igord-fork-e2e-copy-')
    fs.copyFileSync(ckpt, path.join(other, 'ledger.ckpt'))
    const r = igord(['resume', path.join(other, 'ledger.ckpt'), '--ticks', '3', '--interval', '0ms', '-q'])
    assert.is(r.code, 0, `round ${round} (seed ${SEED}): ${r.stderr}`)
    const v = igord(['verify', d, other])
    assert.is(v.code, 0, `round ${round} (seed ${SEED}): merged histories:\n${v.stdout}${v.stderr}`)
  }
  const v = igord(['verify', d])
  assert.is(v.code, 0, `seed ${SEED}: ${v.stdout}`)
})

test.run()
