/**
 * One writer per agent and per node data directory, through the real CLI (issue 7 §4): a second
 * writer refuses with exit 10 and one line naming the holder (pid, command, since when); a lock
 * left by kill -9 is stale and taken over.
 */
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, igordSpawn, tempDir } from './helpers.ts'
import type { Live } from './helpers.ts'
import { nodeTracker, startNode, stopNode } from './node-helpers.ts'

const LOCKED = 10
const nodes = nodeTracker()
const children: Live[] = []
test.after.each(async () => {
  await nodes.killAll()
  for (const c of children.splice(0)) if (c.child.exitCode === null && c.child.signalCode === null) { c.child.kill('SIGKILL'); await c.done() }
})
test.after(cleanup)

/** Births `heartbeat` in a new directory (2 ticks) and returns its `.ckpt`. */
function born (): { dir: string; ckpt: string } {
  const dir = tempDir('igord-lock-')
  const r = igord(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '2', '--interval', '0ms', '-q'])
  assert.is(r.code, 0, r.stderr)
  return { dir, ckpt: join(dir, 'heartbeat.ckpt') }
}

async function resumeInBackground (ckpt: string, extra: string[] = []): Promise<Live> {
  const c = igordSpawn(['resume', ckpt, '--interval', '20ms', '-q', ...extra])
  children.push(c)
  await c.waitFor(() => /resumed/.test(c.stderr()), 30_000)
  return c
}

/** The refusal is one line `igord: … locked by pid <pid> (igord <cmd>) since <iso> …`. */
function assertRefused (r: { code: number | null; stderr: string }, pid: number, cmd: RegExp): void {
  assert.is(r.code, LOCKED, r.stderr)
  const lines = r.stderr.trim().split('\n')
  assert.is(lines.length, 1, r.stderr)
  assert.match(lines[0], new RegExp(`pid ${pid} \\(igord `))
  assert.match(lines[0], cmd)
  assert.match(lines[0], /since \d{4}-\d\d-\d\dT/)
}

test('two resumes of the same .ckpt: the second refuses (exit 10) naming the first; the lock goes with a clean stop', async () => {
  const { dir, ckpt } = born()
  const first = await resumeInBackground(ckpt)
  const second = igord(['resume', ckpt, '--ticks', '1', '-q'])
  assertRefused(second, first.child.pid!, /igord resume .*heartbeat\.ckpt/)
  // the same agent resumed into another directory would be a copy of a running agent: refused too
  const other = tempDir('igord-lock-other-')
  assertRefused(igord(['resume', ckpt, '--dir', other, '--ticks', '1', '-q']), first.child.pid!, /igord resume/)
  // and a new birth under the same name in that directory
  assertRefused(igord(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '1', '-q']), first.child.pid!, /igord resume/)
  first.child.kill('SIGTERM')
  const end = await first.done()
  assert.is(end.code, 0, end.stderr)
  assert.not.ok(fs.existsSync(join(dir, 'locks', 'heartbeat.lock')), 'the lock is released on a clean stop')
  const again = igord(['resume', ckpt, '--ticks', '1', '--interval', '0ms', '-q'])
  assert.is(again.code, 0, again.stderr)
  // without a running writer, a birth over an existing agent is still refused (exit 8), not a lock error
  const over = igord(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '1', '-q'])
  assert.is(over.code, 8, over.stderr)
  assert.match(over.stderr, /already exists/)
})

test('after kill -9 of the holder the lock is stale: the next resume takes it over and the history stays VALID', async () => {
  const { dir, ckpt } = born()
  const first = await resumeInBackground(ckpt)
  first.child.kill('SIGKILL')
  await first.done()
  const lock = join(dir, 'locks', 'heartbeat.lock')
  assert.ok(fs.existsSync(lock), 'kill -9 leaves the lock file')
  assert.is(JSON.parse(fs.readFileSync(lock, 'utf8')).pid, first.child.pid)
  const r = igord(['resume', ckpt, '--ticks', '2', '--interval', '0ms', '-q'])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stderr, new RegExp(`took over the stale lock .*pid ${first.child.pid} `))
  // a lock whose pid is alive but belongs to another process (started at another time) is stale too
  fs.mkdirSync(join(dir, 'locks'), { recursive: true })
  fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, start: '1', cmd: 'igord resume old', since: '2020-01-01T00:00:00.000Z', host: (await import('node:os')).hostname(), nonce: 'x' }))
  const reused = igord(['resume', ckpt, '--ticks', '1', '--interval', '0ms', '-q'])
  assert.is(reused.code, 0, reused.stderr)
  assert.match(reused.stderr, /took over the stale lock/)
})

test('a node and the agents of its data directory: resume of a hosted agent, run --dir and a second node are refused', async () => {
  const n = nodes.track(await startNode())
  const run = igord(['run', agentWasm('heartbeat'), '--node', n.dir, '--interval', '20ms'])
  assert.is(run.code, 0, run.stderr)
  const ckpt = join(n.dir, 'heartbeat.ckpt')
  assert.ok(fs.existsSync(join(n.dir, 'locks', 'heartbeat.lock')), 'the node holds a lock per hosted agent')
  const pid = n.live.child.pid!
  assertRefused(igord(['resume', ckpt, '--ticks', '1', '-q']), pid, /igord node --data/)
  assertRefused(igord(['run', agentWasm('loop'), '--dir', n.dir, '--ticks', '1', '-q']), pid, /igord node --data/)
  const second = igordSpawn(['node', '--data', n.dir, '--listen', '/ip4/127.0.0.1/tcp/0'])
  children.push(second)
  const end2 = await second.done(30_000)
  assertRefused(end2, pid, /igord node --data/)
  const stopped = await stopNode(n)
  assert.is(stopped.code, 0, stopped.stderr)
  assert.equal(fs.readdirSync(join(n.dir, 'locks')), [], 'every lock released on shutdown')
  // the agent is free now
  const r = igord(['resume', ckpt, '--ticks', '1', '--interval', '0ms', '-q'])
  assert.is(r.code, 0, r.stderr)
})

test('a node does not start on a directory where igord resume writes an agent', async () => {
  const { dir, ckpt } = born()
  const first = await resumeInBackground(ckpt)
  const node = igordSpawn(['node', '--data', dir, '--listen', '/ip4/127.0.0.1/tcp/0'])
  children.push(node)
  const end = await node.done(30_000)
  assertRefused(end, first.child.pid!, /igord resume/)
  assert.match(end.stderr, /agent 'heartbeat'/)
  first.child.kill('SIGTERM')
  assert.is((await first.done()).code, 0)
})

test.run()
