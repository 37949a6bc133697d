/**
 * Top-ups end to end (`igord fund`, docs/ABI.md "Inbox"): an agent that exhausted its budget on a
 * node runs again after `igord fund <agent> <units> --node D`; a stopped, exhausted `.ckpt` runs
 * again after `igord fund x.ckpt <units>` and `igord resume`. `igord verify` is VALID and lists the
 * funder (`top-ups: 1 (+1 units from 12D3KooW…)`); `verify --replay` is VALID. Refusals exit 11.
 */
// test-timeout: 600
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, tempDir } from './helpers.ts'
import { ps, startNode, stopNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const running: NodeProc[] = []
test.after.each(async () => { for (const n of running.splice(0)) if (n.live.child.exitCode === null) { n.live.child.kill('SIGKILL'); await n.live.done() } })
test.after(cleanup)

/** Runs `verify` (and `verify --replay`) on `dir`: VALID, with one top-up of 1 unit from `funder`. */
function verifyFunded (dir: string, funder: string): void {
  const v = igord(['verify', dir])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID: /)
  assert.match(v.stdout, new RegExp(`\n  top-ups: 1 \\(\\+1 units from ${funder}\\)\n`))
  const j = JSON.parse(igord(['verify', dir, '--json']).stdout) as { topUps: { from: string; count: number; amount: string }[] }
  assert.equal(j.topUps.map((t) => [t.from, t.count, String(t.amount)]), [[funder, 1, '1000000']])
  const r = igord(['verify', '--replay', dir])
  assert.is(r.code, 0, r.stdout + r.stderr)
  assert.match(r.stdout, /^VALID: replayed \d+ ticks/)
}

test('node: an agent exhausted by a tiny --budget runs again after igord fund --node', async () => {
  const n = await startNode()
  running.push(n)
  const r = igord(['run', agentWasm('heartbeat'), '--node', n.dir, '--budget', '0.0001', '--interval', '20ms'])
  assert.is(r.code, 0, r.stderr)
  await until(() => ps(n.dir).find((a) => a.name === 'heartbeat')?.status === 'exhausted', 30_000, 'heartbeat to exhaust its budget')
  const before = ps(n.dir).find((a) => a.name === 'heartbeat')!
  assert.is(before.budget, '0')
  const f = igord(['fund', 'heartbeat', '1', '--node', n.dir])
  assert.is(f.code, 0, f.stderr)
  assert.is(f.stdout, 'funded heartbeat: +1.000000 units, budget 1.000000 units\n')
  await until(() => { const a = ps(n.dir).find((x) => x.name === 'heartbeat')!; return a.status === 'running' && a.tick > before.tick + 3 }, 30_000, 'heartbeat to run again')
  const after = ps(n.dir).find((a) => a.name === 'heartbeat')!
  assert.ok(BigInt(after.budget) > 900_000n && BigInt(after.budget) < 1_000_000n, `budget ${after.budget}`)
  // refusals: no such agent (exit 11), bad units (exit 2)
  const nobody = igord(['fund', 'nobody', '1', '--node', n.dir])
  assert.is(nobody.code, 11, nobody.stderr)
  assert.match(nobody.stderr, /^igord: no agent named nobody on this node\n$/)
  for (const units of ['0', '-1', 'lots']) assert.is(igord(['fund', 'heartbeat', units, '--node', n.dir]).code, 2, units)
  const end = await stopNode(n)
  assert.is(end.code, 0, end.stderr)
  verifyFunded(n.dir, n.peer)
})

test('a stopped, exhausted .ckpt: igord fund x.ckpt then igord resume runs it; verify lists the funder', () => {
  const dir = tempDir('igord-fund-')
  const r = igord(['run', agentWasm('heartbeat'), '--dir', dir, '--budget', '0.0001', '--interval', '10ms'])
  assert.is(r.code, 7, r.stderr)
  assert.match(r.stderr, /stopped at tick (\d+) \(exhausted: budget exhausted\)/)
  const exhaustedAt = Number(/stopped at tick (\d+)/.exec(r.stderr)![1])
  const ckpt = join(dir, 'heartbeat.ckpt')
  const again = igord(['resume', ckpt, '--interval', '10ms'])
  assert.is(again.code, 7, 'still exhausted without a top-up')
  const f = igord(['fund', ckpt, '1'])
  assert.is(f.code, 0, f.stderr)
  assert.is(f.stdout, `funded heartbeat: +1.000000 units, budget 1.000000 units (applied at its next tick; resume it with 'igord resume ${ckpt}')\n`)
  const peer = igord(['inspect', ckpt, '--json'])
  assert.is(peer.code, 0, peer.stderr)
  const host = (JSON.parse(peer.stdout) as { host: string }).host // the funder: this data directory's host key
  const res = igord(['resume', ckpt, '--ticks', '3', '--interval', '10ms'])
  assert.is(res.code, 0, res.stderr)
  assert.match(res.stdout, new RegExp(`\\[heartbeat\\] tick ${exhaustedAt + 1},`))
  assert.match(res.stderr, new RegExp(`stopped at tick ${exhaustedAt + 3} \\(running\\)`))
  verifyFunded(dir, host)
})

test.run()
