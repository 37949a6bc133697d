/**
 * kill -9 never makes a fork (issue 7 §4): whatever moment a writer dies at, copying its live
 * `.ckpt` alone to a fresh directory, resuming it there and merging both directories' histories
 * verifies VALID (and replays VALID).
 *
 * In-process: a crash is simulated by throwing from the store's `beforeRename` hook — the process's
 * files are then exactly as a kill at that instant leaves them (each atomic write is either renamed
 * into place or not; an unrenamed temp file is a dotfile every reader ignores). Deterministic kills
 * before each kind of rename (first blob, live file, history entry) plus seeded random kill points
 * (any rename of any write, including the archiving done by a resume). Through the real CLI:
 * `kill -9` at seeded random moments of `igord resume`. The seed is printed in every failure
 * message; set CRASH_SEED to reproduce one.
 */
import * as fs from 'node:fs'
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

/**
 * Resumes `dir/ledger.ckpt` in `dir` and runs `ticks` ticks (a checkpoint after each) with `kill`
 * installed as the rename hook; returns true when the kill landed.
 */
async function runUntilKilled (dir: string, ticks: number, kill: (tmp: string, file: string) => boolean): Promise<boolean> {
  testHooks.beforeRename = (tmp, file) => { if (kill(tmp, file)) throw new Crash(`killed before renaming ${file}`) }
  try {
    const s = resumeAgent(settings(dir), path.join(dir, 'ledger.ckpt'))
    await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: ticks, checkpointEveryMs: 0 })
    return false
  } catch (e) {
    if (e instanceof Crash) return true
    throw e
  } finally { testHooks.beforeRename = null }
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
  const steps: [string, (f: string) => boolean][] = [
    ['before the first new blob', isBlob],
    ['after the blobs, before the live file', isLive],
    ['after the live file, before the history entry', isEntry],
  ]
  for (const [what, at] of steps) {
    const dir = await born()
    // the kill lands in the second write of the session (the first may write no new blob)
    let writes = 0
    const killed = await runUntilKilled(dir, 4, (_tmp, f) => {
      if (isLive(f)) writes++
      return writes >= 2 && at(f)
    })
    assert.ok(killed, `${what}: the kill did not land`)
    const live = readLive(path.join(dir, 'ledger.ckpt'))
    const entries = fs.readdirSync(path.join(dir, 'history', 'ledger')).filter((n) => !n.startsWith('.'))
    const newest = Math.max(...entries.map((n) => Number(n.slice(0, 12))))
    assert.ok(newest <= live.parsed.tick, `${what}: a history entry (tick ${newest}) is ahead of the live file (tick ${live.parsed.tick})`)
    await copyResumeMerge(dir, what, true)
    // and the same directory resumes after the kill: its own history stays VALID
    assert.not.ok(await runUntilKilled(dir, 2, () => false))
    const r = verifyHistory([dir])
    assert.ok(r.valid, `${what}: ${formatReport(r)}`)
    assert.is(r.ticks?.[1], readLive(path.join(dir, 'ledger.ckpt')).parsed.tick, `${what}: the history reaches the live checkpoint`)
  }
})

test(`seeded random kill points (any rename of any write or resume) never fork a copied .ckpt (CRASH_SEED=${SEED})`, async () => {
  const rand = prng(SEED)
  const dir = await born()
  let landed = 0
  const rounds = 10
  for (let round = 0; round < rounds; round++) {
    // every tick writes at least its live file and its history entry (two renames), so a kill point
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
