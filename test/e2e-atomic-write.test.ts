/**
 * The live checkpoint survives a kill in the middle of any write to it, checked deterministically
 * (not by a random kill that may or may not land mid-write): a real `igord resume` is SIGKILLed in
 * the middle of each of its writes to the live file in turn (test/fixtures/kill-mid-write.ts). Its
 * first write rewrites the file whole (a compaction: temp file, rename), later ones append a delta
 * record (docs/FORMAT.md "Live checkpoint"). After every kill the live file must still be a valid
 * checkpoint — the old one byte for byte until the first compaction completes, else the last
 * complete record (a torn record is ignored) —, the directory must verify VALID and the file resume.
 * A compaction must replace the file by a rename (a new inode), never rewrite it in place.
 */
import { spawnSync } from 'node:child_process'
import { cpSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import binaryen from 'binaryen'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readLive } from '../checkpoint/live.ts'
import { cleanup, igord, IGORD, ROOT, tempDir } from './helpers.ts'

test.after(cleanup)

const PRELOAD = join(ROOT, 'test', 'fixtures', 'kill-mid-write.ts')

/**
 * `churn`: an agent that rewrites 20 whole pages (1.25 MiB) with fresh bytes every tick, so each
 * delta record is big enough that the live file is compacted again after one append (the dead
 * bytes would pass the size of a whole copy; checkpoint/writer.ts COMPACT_RATIO, COMPACT_MIN_BYTES)
 * — a heartbeat's small records would not reach a compaction within a few ticks.
 */
function writeChurn (dir: string): string {
  const wat = `(module (memory (export "memory") 24 24) (global $t (mut i32) (i32.const 0))
    (func (export "agent_tick") (result i32) (local $a i32)
      (global.set $t (i32.add (global.get $t) (i32.const 1)))
      (loop $l
        (i32.store (local.get $a) (i32.mul (i32.add (local.get $a) (global.get $t)) (i32.const -1640531535)))
        (local.set $a (i32.add (local.get $a) (i32.const 4)))
        (br_if $l (i32.lt_u (local.get $a) (i32.const ${20 * 65536}))))
      (i32.const 0)))`
  const m = binaryen.parseText(wat)
  const wasm = join(dir, 'churn.wasm')
  writeFileSync(wasm, m.emitBinary())
  m.dispose()
  writeFileSync(join(dir, 'churn.manifest.json'), JSON.stringify({ capabilities: {} }))
  return wasm
}

/** A churn agent stopped after 2 ticks in a fresh data directory. */
function born (): { dir: string; ckpt: string } {
  const dir = tempDir()
  const r = igord(['run', writeChurn(tempDir()), '--dir', dir, '--ticks', '2', '--interval', '0ms', '-q'])
  assert.is(r.code, 0, r.stderr)
  return { dir, ckpt: join(dir, 'churn.ckpt') }
}

/** `igord resume` of `ckpt` for 3 ticks, SIGKILLed mid-way through its `nth` write to the live file (0: never). */
function resumeKilledAt (ckpt: string, nth: number) {
  return spawnSync(process.execPath, ['--import', PRELOAD, IGORD, 'resume', ckpt, '--ticks', '3', '--interval', '0ms', '--checkpoint-every', '0ms', '-q'], {
    encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL', env: { ...process.env, KILL_WRITE_MATCH: 'churn.ckpt', KILL_WRITE_NTH: String(nth) },
  })
}

test('a kill in the middle of any write of the live file (compaction or append) leaves a valid live file that verifies and resumes', () => {
  const { dir, ckpt } = born()
  const original = readFileSync(ckpt)
  let kills = 0
  const compactions: number[] = []; const appends: number[] = []
  for (let nth = 1; nth <= 50; nth++) {
    const copy = tempDir()
    cpSync(dir, copy, { recursive: true })
    const live = join(copy, 'churn.ckpt')
    const r = resumeKilledAt(live, nth)
    if (r.signal !== 'SIGKILL') {
      assert.is(r.status, 0, `resume without a kill at write ${nth}: ${r.stderr}`)
      break
    }
    kills++
    assert.match(r.stderr, new RegExp(`kill-mid-write: write ${nth} to \\S*churn\\.ckpt`))
    const target = /kill-mid-write: write \d+ to (\S+)/.exec(r.stderr)![1]
    if (nth > 1) (target.includes('.tmp-') ? compactions : appends).push(nth) // later compactions are by the dead-bytes ratio
    let c
    try { c = readLive(live) } catch (e) { assert.unreachable(`killed mid-way through live-file write ${nth}: the live file is damaged: ${(e as Error).message}`) }
    if (nth === 1) assert.ok(readFileSync(live).equals(original), 'killed during the first write: the old live file is byte-identical')
    assert.ok(c!.parsed.tick >= 2, `tick ${c!.parsed.tick}`)
    // the history never runs past the live file, and verifies
    const v = igord(['verify', copy])
    assert.is(v.code, 0, `verify after the kill at write ${nth}: ${v.stdout}`)
    // what the kill left resumes (a half-written temp file or record is never taken for a checkpoint)
    const again = igord(['resume', live, '--ticks', '1', '--interval', '0ms', '-q'])
    assert.is(again.code, 0, `resume after the kill at write ${nth}: ${again.stderr}`)
    assert.is(readLive(live).parsed.tick, c!.parsed.tick + 1, `resumed from the last complete checkpoint (tick ${c!.parsed.tick})`)
    assert.is(igord(['verify', copy]).code, 0, `verify after the resume that followed the kill at write ${nth}`)
  }
  assert.ok(kills >= 3, `the first compaction and later writes were interrupted (${kills} kills)`)
  assert.ok(compactions.length >= 1 && appends.length >= 1, `kills landed in appends (writes ${appends.join(', ')}) and in a later compaction (writes ${compactions.join(', ')})`)
})

test('the first checkpoint of a resume compacts: the live file is replaced by a rename (new inode), never rewritten in place', () => {
  const { ckpt } = born()
  const before = statSync(ckpt).ino
  const bytes = readFileSync(ckpt)
  const r = igord(['resume', ckpt, '--ticks', '1', '--interval', '0ms', '-q'])
  assert.is(r.code, 0, r.stderr)
  assert.not.ok(readFileSync(ckpt).equals(bytes), 'the live file changed')
  assert.is.not(statSync(ckpt).ino, before, 'the live file is a new file (renamed into place), not the old one rewritten')
})

test.run()
