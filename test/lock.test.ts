/**
 * Unit tests of checkpoint/lock.ts: exclusive lock files naming their holder, stale detection
 * (dead pid, reused pid, unreadable record), take-over, release, and the agent/node lock pair.
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { EXIT } from '../checkpoint/errors.ts'
import { agentLockPath, nodeLockPath } from '../checkpoint/layout.ts'
import { acquireLock, assertNotWritten, holderAlive, liveHolder, LockedError, lockAgent, lockNode, processStart } from '../checkpoint/lock.ts'

let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-lock-')) })
test.after.each(() => { fs.rmSync(dir, { recursive: true, force: true }) })

/** The pid of a process that has exited. */
function deadPid (): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  return Number(r.stdout)
}

const record = (o: Record<string, unknown>) => JSON.stringify({ pid: process.pid, start: processStart(process.pid), cmd: 'igord test', since: '2026-01-01T00:00:00.000Z', host: os.hostname(), nonce: 'n', ...o })

test('a lock file names its holder and is private; a second taker is refused naming it (exit 10)', () => {
  const f = path.join(dir, 'locks', 'x.lock')
  const l = acquireLock(f, 'thing x')
  const st = fs.statSync(f)
  assert.is(st.mode & 0o777, 0o600)
  assert.is(fs.statSync(path.dirname(f)).mode & 0o777, 0o700)
  const h = JSON.parse(fs.readFileSync(f, 'utf8'))
  assert.is(h.pid, process.pid)
  assert.is(h.start, processStart(process.pid))
  assert.match(h.since, /^\d{4}-/)
  assert.throws(() => acquireLock(f, 'thing x'), (e: unknown) => e instanceof LockedError && e.exitCode === EXIT.LOCKED &&
    new RegExp(`^thing x is locked by pid ${process.pid} \\(igord[^)]*\\) since \\d{4}-.* \\(${f.replace(/[.]/g, '\\.')}\\)$`).test(e.message))
  l.release()
  assert.not.ok(fs.existsSync(f))
  l.release() // idempotent
  const l2 = acquireLock(f, 'thing x')
  assert.is(l2.tookOver, null)
  l2.release()
  assert.equal(fs.readdirSync(path.dirname(f)), [], 'no temp files left')
})

test('stale locks are taken over: dead pid, reused pid (other start time), unreadable record', () => {
  const f = path.join(dir, 'x.lock')
  for (const [what, content] of [
    ['dead pid', record({ pid: deadPid(), start: null })],
    ['reused pid', record({ start: '1' })],
    ['unreadable', '{"pid":'],
  ] as const) {
    fs.writeFileSync(f, content)
    const l = acquireLock(f, 'x')
    assert.ok(what === 'unreadable' ? l.tookOver === null : l.tookOver !== null, what)
    assert.is(JSON.parse(fs.readFileSync(f, 'utf8')).nonce, l.holder.nonce, what)
    l.release()
  }
  assert.equal(fs.readdirSync(dir), [])
})

test('a live lock of another process or another host is never stale; release leaves another holder\'s lock alone', () => {
  const f = path.join(dir, 'x.lock')
  fs.writeFileSync(f, record({ pid: 1, start: processStart(1) })) // init: alive
  assert.throws(() => acquireLock(f, 'x'), /locked by pid 1 /)
  fs.writeFileSync(f, record({ pid: deadPid(), host: 'elsewhere.example' }))
  assert.throws(() => acquireLock(f, 'x'), /on host elsewhere\.example/)
  assert.ok(holderAlive({ pid: 1, start: null, cmd: '', since: '', host: os.hostname(), nonce: '' }))
  fs.unlinkSync(f)
  const l = acquireLock(f, 'x')
  fs.writeFileSync(f, record({ pid: 1, start: null, nonce: 'other' })) // someone else's now
  l.release()
  assert.ok(fs.existsSync(f), 'release removed another holder\'s lock')
})

test('agent and node locks exclude each other in both orders; the node itself may hold agent locks', () => {
  const a = lockAgent(dir, 'ag')
  assert.ok(fs.existsSync(agentLockPath(dir, 'ag')))
  // a node whose directory has a live agent writer refuses (here: the writer is this process, so fake another pid)
  fs.writeFileSync(agentLockPath(dir, 'other'), record({ pid: 1, start: processStart(1), cmd: 'igord resume other.ckpt' }))
  assert.throws(() => lockNode(dir), (e: unknown) => e instanceof LockedError && /agent 'other' .* locked by pid 1 \(igord resume other\.ckpt\)/.test(e.message))
  assert.not.ok(fs.existsSync(nodeLockPath(dir)), 'a refused node leaves no lock')
  fs.unlinkSync(agentLockPath(dir, 'other'))
  a.release()
  const n = lockNode(dir)
  const mine = lockAgent(dir, 'ag') // the node's own per-agent lock
  assert.throws(() => lockAgent(dir, 'ag'), (e: unknown) => e instanceof LockedError) // hosting it twice
  mine.release()
  // another process's node lock refuses an agent writer
  n.release()
  fs.writeFileSync(nodeLockPath(dir), record({ pid: 1, start: processStart(1), cmd: 'igord node --data d' }))
  assert.throws(() => lockAgent(dir, 'ag'), (e: unknown) => e instanceof LockedError && /served by an igord node, pid 1 \(igord node --data d\)/.test(e.message))
  assert.not.ok(fs.existsSync(agentLockPath(dir, 'ag')), 'the refused agent lock was released')
  assert.throws(() => assertNotWritten(dir, 'ag', 'x.ckpt'), /x\.ckpt is being written by pid 1 /)
  fs.unlinkSync(nodeLockPath(dir))
  assertNotWritten(dir, 'ag', 'x.ckpt')
  assert.is(liveHolder(nodeLockPath(dir)), null)
})

test('bad agent names never reach the file system', () => {
  assert.throws(() => lockAgent(dir, '../x'), (e: unknown) => (e as { exitCode: number }).exitCode === EXIT.USAGE)
  assert.throws(() => lockAgent(dir, '.node'), /must be 1-128 letters/)
  assert.equal(fs.readdirSync(dir), [])
})

test.run()
