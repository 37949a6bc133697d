/**
 * End to end through the real CLI: an agent runs on "machine A", is stopped with SIGINT, only its
 * `.ckpt` is copied to "machine B", and it resumes there with the same DID, its tick count
 * continuing without a gap or a repeat, and — for the ledger agent — exactly the heap an
 * uninterrupted control run has.
 */
import { copyFileSync, cpSync, existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, igordSpawn, inspectJson, loggedTicks, tempDir } from './helpers.ts'

test.after(cleanup)

test('run → SIGINT → copy the .ckpt alone → resume: same DID, ticks continue without gap or repeat', async () => {
  const a = tempDir(); const b = tempDir()
  const runA = igordSpawn(['run', agentWasm('heartbeat'), '--dir', a, '--interval', '20ms'])
  await runA.waitFor((out) => loggedTicks(out).length >= 5)
  runA.child.kill('SIGINT')
  const endA = await runA.done()
  assert.is(endA.code, 0, endA.stderr)
  const ckptA = join(a, 'heartbeat.ckpt')
  assert.is(statSync(ckptA).mode & 0o777, 0o600, 'the live checkpoint holds a secret key: mode 0600')
  const infoA = inspectJson(ckptA)
  const ticksA = loggedTicks(endA.stdout)
  assert.equal(ticksA, Array.from({ length: ticksA.length }, (_, i) => i + 1))
  assert.is(infoA.tick, ticksA.at(-1), 'the final checkpoint holds the last tick run')

  copyFileSync(ckptA, join(b, 'heartbeat.ckpt'))
  assert.equal(readdirSync(b), ['heartbeat.ckpt'])
  const runB = igordSpawn(['resume', join(b, 'heartbeat.ckpt'), '--interval', '20ms'])
  await runB.waitFor((out) => loggedTicks(out).length >= 4)
  runB.child.kill('SIGTERM')
  const endB = await runB.done()
  assert.is(endB.code, 0, endB.stderr)
  const ticksB = loggedTicks(endB.stdout)
  assert.is(ticksB[0], (ticksA.at(-1) as number) + 1, 'resume continues with the next tick')
  assert.equal(ticksB, Array.from({ length: ticksB.length }, (_, i) => ticksB[0] + i))
  const infoB = inspectJson(join(b, 'heartbeat.ckpt'))
  assert.is(infoB.did, infoA.did, 'same identity on both machines')
  assert.ok(String(infoA.did).startsWith('did:key:z6Mk'))
  assert.ok(infoB.host !== infoA.host, 'each machine signs as its own host')

  // Both histories merged verify as one life.
  const merged = tempDir()
  for (const d of [a, b]) for (const sub of ['history', 'blobs']) cpSync(join(d, sub), join(merged, sub), { recursive: true })
  const v = igord(['verify', merged])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID/)
  const vj = JSON.parse(igord(['verify', a, b, '--json']).stdout)
  assert.is(vj.valid, true)
  assert.equal(vj.ticks, [0, ticksB.at(-1)])
})

test('ledger: heap after stop, copy and resume equals an uninterrupted control run (same state root)', () => {
  const control = tempDir(); const a = tempDir(); const b = tempDir()
  const seed = ['--sim-seed', 'ledger-e2e', '--interval', '0ms', '-q']
  const c = igord(['run', agentWasm('ledger'), '--dir', control, '--ticks', '30', ...seed])
  assert.is(c.code, 0, c.stderr)
  const r1 = igord(['run', agentWasm('ledger'), '--dir', a, '--ticks', '11', ...seed])
  assert.is(r1.code, 0, r1.stderr)
  copyFileSync(join(a, 'ledger.ckpt'), join(b, 'ledger.ckpt'))
  const r2 = igord(['resume', join(b, 'ledger.ckpt'), '--ticks', '19', ...seed])
  assert.is(r2.code, 0, r2.stderr)
  const want = inspectJson(join(control, 'ledger.ckpt'))
  const got = inspectJson(join(b, 'ledger.ckpt'))
  assert.is(got.tick, 30)
  assert.is(want.tick, 30)
  assert.ok(Number(want.nonZeroPages) >= 1)
  assert.is(got.stateRoot, want.stateRoot, 'state roots (memory, globals, fuel, budget) are equal')
  assert.is(got.fuel, want.fuel)
  assert.is(got.budget, want.budget)
  assert.ok(got.did !== want.did, 'two different agents, so the equality is not an accident of identity')
})

test('resume refuses a finished agent with exit 3 and leaves its checkpoint in place', () => {
  const d = tempDir()
  const r = igord(['run', agentWasm('finisher'), '--dir', d, '--interval', '0ms'])
  assert.is(r.code, 0, r.stderr)
  const info = inspectJson(join(d, 'finisher.ckpt'))
  assert.is(info.status, 'finished')
  const again = igord(['resume', join(d, 'finisher.ckpt')])
  assert.is(again.code, 3)
  assert.match(again.stderr, /finished/)
  assert.ok(existsSync(join(d, 'finisher.ckpt')))
})

test('run refuses to overwrite an existing agent', () => {
  const d = tempDir()
  assert.is(igord(['run', agentWasm('heartbeat'), '--dir', d, '--ticks', '1', '--interval', '0ms', '-q']).code, 0)
  const r = igord(['run', agentWasm('heartbeat'), '--dir', d, '--ticks', '1', '--interval', '0ms', '-q'])
  assert.is(r.code, 8)
  assert.match(r.stderr, /already exists/)
})

test.run()
