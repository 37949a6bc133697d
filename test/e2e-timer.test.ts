/**
 * Timers end to end (docs/ABI.md "timer"): the sleeper agent (agents-as/agents/sleeper.ts) asks
 * `sleep_until(now + 2 s)` every tick under `igord run`. Checked on the agent's own recorded clock:
 * a timer never wakes it before the time it asked for, it wakes within a generous bound after, at
 * most twice in 5 s (no busy ticking), a message wakes it early, and resumed it sleeps on until its
 * timer (no extra tick at start). The life verifies with replay.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { AGENTS, cleanup, igord, igordSpawn, tempDir } from './helpers.ts'

test.after(cleanup)

const SLEEP_NS = 2_000_000_000n
/** Lateness accepted for a timer wake-up, ns: generous, for a loaded machine. */
const LATE_NS = 2_000_000_000n

interface Wake { kind: 'start' | 'timer' | 'message'; now: bigint; at?: bigint; text?: string; dueMs?: number }

/** The sleeper's log lines, parsed. */
function wakes (out: string): Wake[] {
  const w: Wake[] = []
  for (const line of out.split('\n')) {
    let m = /^\[sleeper\] woke with an empty inbox at (\d+)$/.exec(line)
    if (m !== null) { w.push({ kind: 'start', now: BigInt(m[1]) }); continue }
    m = /^\[sleeper\] woke by timer at (\d+) \(asked (\d+), late -?\d+ ms\)$/.exec(line)
    if (m !== null) { w.push({ kind: 'timer', now: BigInt(m[1]), at: BigInt(m[2]) }); continue }
    m = /^\[sleeper\] woke by message #\d+ at (\d+): (.*) \(timer due in (-?\d+) ms\)$/.exec(line)
    if (m !== null) w.push({ kind: 'message', now: BigInt(m[1]), text: m[2], dueMs: Number(m[3]) })
  }
  return w
}

test('sleeper: wakes every 2 s on its timer, never early, at most twice in 5 s; a message wakes it early; replay VALID', async () => {
  const dir = tempDir('igord-timer-')
  const p = igordSpawn(['run', join(AGENTS, 'sleeper.wasm'), '--dir', dir, '--interval', '20ms'])
  await p.waitFor((out) => wakes(out).some((w) => w.kind === 'start'))
  const t0 = wakes(p.stdout()).find((w) => w.kind === 'start')!.now
  // until a timer wake-up past t0 + 5 s (three, normally)
  await p.waitFor((out) => wakes(out).some((w) => w.kind === 'timer' && w.now > t0 + 5_000_000_000n), 30_000)
  const timers = wakes(p.stdout()).filter((w) => w.kind === 'timer')
  for (const w of timers) {
    assert.ok(w.now >= w.at!, `woke ${Number(w.at! - w.now) / 1e6} ms before the time it asked for`)
    assert.ok(w.now - w.at! < LATE_NS, `woke ${Number(w.now - w.at!) / 1e6} ms late`)
  }
  const all = wakes(p.stdout())
  for (let i = 1; i < all.length; i++) assert.ok(all[i].now - all[i - 1].now >= SLEEP_NS, `ticks ${Number(all[i].now - all[i - 1].now) / 1e6} ms apart`)
  const inFive = timers.filter((w) => w.now <= t0 + 5_000_000_000n).length
  assert.ok(inFive >= 1 && inFive <= 2, `${inFive} timer wake-ups in the 5 s after the first tick`)

  // a message wakes it before its timer is due (the drop file is taken within 250 ms)
  assert.ok(existsSync(join(dir, 'sleeper.ckpt')))
  const before = wakes(p.stdout()).length
  const s = igord(['send', 'sleeper', 'wake up', '--dir', dir])
  assert.is(s.code, 0, s.stderr)
  await p.waitFor((out) => wakes(out).some((w) => w.kind === 'message'), 30_000)
  const msg = wakes(p.stdout()).find((w) => w.kind === 'message')!
  assert.is(msg.text, 'wake up')
  assert.ok(msg.dueMs! > 0, `the message tick ran ${-msg.dueMs!} ms after the timer was due: it did not wake the agent early`)
  // and it goes on sleeping 2 s from there
  await p.waitFor((out) => wakes(out).slice(before).some((w) => w.kind === 'timer' && w.now > msg.now), 30_000)
  const next = wakes(p.stdout()).slice(before).find((w) => w.kind === 'timer' && w.now > msg.now)!
  assert.is(next.at, msg.now + SLEEP_NS)
  p.child.kill('SIGINT')
  const end = await p.done(60_000)
  assert.is(end.code, 0, end.stderr)
  // resumed, it sleeps on: its first tick is its timer's (not an extra tick at start)
  const last = wakes(end.stdout).at(-1)!
  const q = igordSpawn(['resume', join(dir, 'sleeper.ckpt'), '--interval', '20ms'])
  await q.waitFor((out) => wakes(out).length >= 1, 30_000)
  const first = wakes(q.stdout())[0]
  assert.is(first.kind, 'timer', q.stdout())
  assert.is(first.at, last.now + SLEEP_NS)
  assert.ok(first.now >= first.at!)
  q.child.kill('SIGINT')
  assert.is((await q.done(60_000)).code, 0)
  const v = igord(['verify', '--replay', dir])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID: replayed/)
})

test.run()
