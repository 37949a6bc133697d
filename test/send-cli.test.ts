/**
 * `igord send` / `igord fund` routing and wording (cmd/inbox.ts), through the real CLI:
 * - `fund --dir` for a stopped agent names the live file to resume by its real path;
 * - `fund --dir` while `igord run` holds the agent says that process applies it (a drop file);
 * - `send <dir>/x.ckpt` goes through the node serving that directory (numbered at once, read by
 *   the agent), not into a drop file the node would only see after a restart.
 */
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, igordSpawn, tempDir } from './helpers.ts'
import { startNode, stopNode, until } from './node-helpers.ts'

test.after(cleanup)

test('fund --dir of a stopped agent names its live file to resume', () => {
  const dir = tempDir()
  const born = igord(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '1', '--interval', '10ms'])
  assert.is(born.code, 0, born.stderr)
  const r = igord(['fund', 'heartbeat', '1', '--dir', dir])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stdout, /^funded heartbeat: \+1\.000000 units, budget /)
  assert.ok(r.stdout.includes(`resume it with 'igord resume ${join(dir, 'heartbeat.ckpt')}'`), r.stdout)
  assert.equal(readdirSync(join(dir, 'inbox', 'heartbeat')).filter((n) => /^\d{12}\.cbor$/.test(n)).length, 1) // spooled, numbered
})

test('fund --dir while igord run holds the agent: that process applies it', async () => {
  const dir = tempDir()
  const run = igordSpawn(['run', agentWasm('echo'), '--dir', dir])
  try {
    await run.waitFor(() => existsSync(join(dir, 'echo.ckpt')), 60_000)
    const r = igord(['fund', 'echo', '1', '--dir', dir])
    assert.is(r.code, 0, r.stderr)
    assert.ok(r.stdout.includes('(the process running it applies it at its next tick)'), r.stdout)
    assert.not.ok(r.stdout.includes('resume it with'), r.stdout)
    const drops = () => readdirSync(join(dir, 'inbox', 'echo')).filter((n) => n.startsWith('in-'))
    await until(() => drops().length === 0, 30_000, 'the running process to take the drop file')
  } finally {
    run.child.kill('SIGINT')
    const end = await run.done(60_000)
    assert.is(end.code, 0, end.stderr)
  }
  const v = igord(['verify', dir])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /top-ups: 1 \(\+1 units from 12D3KooW/)
})

test('send <dir>/x.ckpt goes through the node serving that directory', async () => {
  const n = await startNode()
  try {
    const run = igord(['run', agentWasm('echo'), '--node', n.dir])
    assert.is(run.code, 0, run.stderr)
    const r = igord(['send', join(n.dir, 'echo.ckpt'), 'via the file'])
    assert.is(r.code, 0, r.stderr)
    assert.match(r.stdout, /^sent to echo: message #1 \(12 bytes\)$/m)
    await n.live.waitFor((out) => out.includes('[echo] echo #1 from ') && out.includes(': via the file (1 so far)'), 30_000)
    assert.equal(readdirSync(join(n.dir, 'inbox', 'echo')).filter((f) => f.startsWith('in-')), [])
  } finally {
    const end = await stopNode(n)
    assert.is(end.code, 0, end.stderr)
  }
})

test.run()
