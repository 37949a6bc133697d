/**
 * Unit tests of checkpoint/layout.ts: the agent-name rule (one definition, exit 2) and the
 * data-directory paths every module takes from it — checked against what the writer, the
 * authority records, the locks and the host key actually create.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { EXIT } from '../checkpoint/errors.ts'
import * as layout from '../checkpoint/layout.ts'
import { lockAgent, lockNode } from '../checkpoint/lock.ts'
import { CheckpointWriter } from '../checkpoint/writer.ts'
import * as authority from '../p2p/authority.ts'
import { loadHostIdentity } from '../runtime/host.ts'

let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-layout-')) })
test.after.each(() => { fs.rmSync(dir, { recursive: true, force: true }) })

test('the name rule: 1-128 of [A-Za-z0-9._-], not starting with . or -', () => {
  for (const ok of ['a', 'A9', '_x', 'ledger.v2', 'a-b_c.d', '9', 'x'.repeat(128), 'node', 'history', 'x.ckpt']) {
    assert.ok(layout.isAgentName(ok), ok)
    assert.is(layout.checkAgentName(ok), ok)
  }
  for (const bad of ['', '.foo', '.', '..', '-x', 'a/b', '../a', 'a b', 'é', 'a\0', 'x'.repeat(129), '.node']) {
    assert.not.ok(layout.isAgentName(bad), JSON.stringify(bad))
    assert.throws(() => layout.checkAgentName(bad, '--name'), (e: unknown) =>
      e instanceof layout.NameError && e.exitCode === EXIT.USAGE && e.message === `--name: agent name ${JSON.stringify(bad)} must be ${layout.AGENT_NAME_RULE}`)
  }
  assert.not.ok(layout.isAgentName(42))
  assert.is(layout.AGENT_NAME_RE.source, '^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$')
})

test('no agent name can collide with the node lock or hide as a dotfile', () => {
  assert.not.ok(layout.isAgentName(path.basename(layout.nodeLockPath(dir)).replace(/\.lock$/, '')))
  assert.ok(path.basename(layout.nodeLockPath(dir)).startsWith('.'))
})

test('the writer refuses a bad name with exit 2 before creating anything', () => {
  assert.throws(() => new CheckpointWriter(dir, '.foo'), (e: unknown) => e instanceof layout.NameError)
  assert.equal(fs.readdirSync(dir), [])
})

test('the paths are the ones the modules create', () => {
  const w = new CheckpointWriter(dir, 'a')
  assert.is(w.livePath, layout.livePath(dir, 'a'))
  assert.is(w.historyDir, layout.historyDir(dir, 'a'))
  assert.is(w.blobs.dir, layout.blobsDir(dir))
  assert.is(layout.historyDir(dir, 'a'), path.join(layout.historyRoot(dir), 'a'))
  loadHostIdentity(dir)
  assert.ok(fs.existsSync(layout.hostKeyPath(dir)))
  const l = lockAgent(dir, 'a')
  assert.is(l.file, layout.agentLockPath(dir, 'a'))
  assert.is(path.dirname(l.file), layout.locksDir(dir))
  l.release()
  const n = lockNode(dir)
  assert.is(n.file, layout.nodeLockPath(dir))
  n.release()
  const r = authority.recordPaths(dir, 'a')
  const lr = layout.recordPaths(dir, 'a')
  assert.equal([r.pending, r.pendingCkpt, r.handoff], [lr.pending, lr.pendingCkpt, lr.handoff])
  assert.is(path.dirname(r.pending), layout.migrateRoot(dir))
  assert.ok(lr.pending.endsWith(layout.PENDING_SUFFIX))
  assert.is(layout.quarantineDir(dir), path.join(layout.migrateRoot(dir), 'quarantine'))
  authority.recordOutcome(dir, { outcome: 'test' })
  assert.ok(fs.existsSync(layout.migrationsLogPath(dir)))
})

test('entry file names, live names and the name of a .ckpt path', () => {
  const n = layout.entryFileName(42, 'bafkreiabc')
  assert.is(n, '000000000042-bafkreiabc.cbor')
  assert.is(layout.historyName(n)?.tick, 42)
  for (const bad of ['.orphan-000000000042-x.cbor', '42-x.cbor', '000000000042-x.cbor.tmp', '.000000000042-x.cbor.tmp-1-ab']) assert.is(layout.historyName(bad), null, bad)
  // history segments: named after their first entry and the writer's random tag
  assert.is(layout.segmentFileName(42, 'bafkreiabc', '0a1b2c3d'), '000000000042-bafkreiabc-0a1b2c3d.hist')
  assert.throws(() => layout.segmentFileName(42, 'bafkreiabc', 'xyz'), /not 8 hex digits/)
  assert.equal(layout.historyName('000000000042-bafkreiabc-0a1b2c3d.hist'), { kind: 'segment', tick: 42, cid: 'bafkreiabc', tag: '0a1b2c3d' })
  assert.equal(layout.historyName(n), { kind: 'entry', tick: 42, cid: 'bafkreiabc', tag: '' })
  for (const bad of ['.000000000042-x.hist', '42-x.hist', '000000000042-x.hist.tmp']) assert.is(layout.historyName(bad), null, bad)
  for (const f of ['a.ckpt', 'b.ckpt', '.a.ckpt.tmp-1-ff', '.hidden.ckpt', 'notes.txt', '-x.ckpt']) fs.writeFileSync(path.join(dir, f), '')
  assert.equal(layout.liveNames(dir), ['a', 'b'])
  assert.equal(layout.liveNames(path.join(dir, 'missing')), [])
  assert.is(layout.nameOfLive('/x/y/ledger.ckpt'), 'ledger')
  assert.is(layout.nameOfLive('ledger'), 'ledger')
})

test('makePrivateDir creates missing parents 0700 and leaves an existing folder alone', () => {
  const d = path.join(dir, 'p', 'q')
  layout.makePrivateDir(d)
  assert.is(fs.statSync(path.join(dir, 'p')).mode & 0o777, 0o700)
  assert.is(fs.statSync(d).mode & 0o777, 0o700)
  fs.chmodSync(d, 0o750)
  layout.makePrivateDir(d)
  assert.is(fs.statSync(d).mode & 0o777, 0o750)
})

test.run()
