/**
 * Faults during a migration, end to end: a node started through the test-only launcher
 * test/igord-faulty.ts with IGORD_FAULT=<step> kills itself (SIGKILL) at that protocol step.
 * The shipped CLI ignores IGORD_FAULT (last test). Afterwards exactly one node runs the agent, no tick is lost or
 * repeated, the merged histories verify VALID (no fork), and a restarted node resolves an
 * interrupted migration by itself.
 */
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, loggedTicks, ROOT, tempDir } from './helpers.ts'
import { ps, startNode, stopNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const running: NodeProc[] = []
test.after.each(async () => { for (const n of running.splice(0)) if (n.live.child.exitCode === null && n.live.child.signalCode === null) { n.live.child.kill('SIGKILL'); await n.live.done() } })
test.after(cleanup)

async function node (opts: { dir?: string; fault?: string; sameAddrAs?: NodeProc } = {}): Promise<NodeProc> {
  const listen = opts.sameAddrAs === undefined ? [] : ['--listen', opts.sameAddrAs.addr.split('/p2p/')[0]]
  const n = await startNode({ args: listen, ...(opts.dir === undefined ? {} : { dir: opts.dir }), ...(opts.fault === undefined ? {} : { fault: opts.fault }) })
  running.push(n)
  return n
}
const tickOf = (n: NodeProc) => ps(n.dir).find((a) => a.name === 'heartbeat')?.tick ?? -1
const runs = (n: NodeProc) => ps(n.dir).some((a) => a.name === 'heartbeat' && a.status === 'running')

async function withAgent (fault?: string): Promise<NodeProc> {
  const a = await node(fault === undefined ? {} : { fault })
  const r = igord(['run', agentWasm('heartbeat'), '--node', a.dir, '--interval', '20ms'])
  assert.is(r.code, 0, r.stderr)
  await until(() => tickOf(a) >= 3)
  return a
}

function verifyMerged (...dirs: string[]): Record<string, unknown> {
  const v = igord(['verify', ...dirs, '--json'])
  const rep = JSON.parse(v.stdout)
  assert.is(v.code, 0, v.stdout)
  assert.equal(rep.forks, [])
  return rep
}

test('kill the target during the transfer: the agent keeps running on the source', async () => {
  const a = await withAgent()
  const b = await node({ fault: 'target-during-transfer' })
  const m = igord(['migrate', 'heartbeat', '--to', b.addr, '--node', a.dir])
  assert.is(m.code, 9, m.stderr)
  const endB = await b.live.done()
  assert.is(endB.signal, 'SIGKILL')
  const t = tickOf(a)
  await until(() => tickOf(a) > t + 2, 20_000, 'ticks on A')
  // the restarted target holds nothing
  const b2 = await node({ dir: b.dir })
  assert.equal(ps(b2.dir), [])
  const endA = await stopNode(a)
  assert.is(endA.code, 0, endA.stderr)
  const ticks = loggedTicks(endA.stdout)
  assert.equal(ticks, Array.from({ length: ticks.length }, (_, i) => i + 1))
  verifyMerged(a.dir)
})

test('kill the source after the target answered pending: the restarted source resumes, the target drops its copy', async () => {
  const a = await withAgent('source-after-pending')
  const b = await node()
  const m = igord(['migrate', 'heartbeat', '--to', b.addr, '--node', a.dir], 30_000)
  assert.is(m.code, 9, 'the control connection broke')
  // A was killed at the step; restart it with the fault gone
  await until(() => a.live.child.signalCode !== null || a.live.child.exitCode !== null, 60_000, 'A to die')
  assert.is(a.live.child.signalCode, 'SIGKILL', a.live.stderr())
  assert.ok(hasPending(b.dir), 'the target holds the agent as pending')
  assert.not.ok(runs(b), 'the target does not start without the handoff')
  const a2 = await node({ dir: a.dir, sameAddrAs: a })
  assert.ok(runs(a2), 'the restarted source runs the agent')
  await until(() => !hasPending(b.dir), 20_000, 'B to resolve its pending copy')
  assert.not.ok(runs(b))
  const t = tickOf(a2)
  await until(() => tickOf(a2) > t + 2)
  for (const n of [a2, b]) { const end = await stopNode(n); assert.is(end.code, 0, end.stderr) }
  verifyMerged(a.dir, b.dir)
})

test('kill the source right after it wrote the handoff: the target asks the restarted source and takes over', async () => {
  const a = await withAgent('source-after-handoff')
  const b = await node()
  const m = igord(['migrate', 'heartbeat', '--to', b.addr, '--node', a.dir], 30_000)
  assert.is(m.code, 9)
  await until(() => a.live.child.signalCode !== null || a.live.child.exitCode !== null, 60_000, 'A to die')
  assert.is(a.live.child.signalCode, 'SIGKILL', a.live.stderr())
  const a2 = await node({ dir: a.dir, sameAddrAs: a })
  assert.not.ok(runs(a2), 'the source never runs an agent it handed off')
  await until(() => runs(b), 20_000, 'B to take over')
  const t = tickOf(b)
  await until(() => tickOf(b) > t + 2)
  const endB = await stopNode(b); const endA2 = await stopNode(a2)
  assert.is(endB.code, 0, endB.stderr); assert.is(endA2.code, 0, endA2.stderr)
  const rep = verifyMerged(a.dir, b.dir)
  assert.equal(rep.epochs, [0, 1])
  assert.ok(loggedTicks(endB.stdout).length > 0)
})

test('the shipped bin/igord ignores IGORD_FAULT: a migration to it completes, the node lives on', async () => {
  // no shipped source reads the variable or kills its own process
  for (const d of ['cmd', 'p2p', 'runtime', 'checkpoint', 'hostcalls']) {
    for (const f of readdirSync(join(ROOT, d)).filter((x) => x.endsWith('.ts'))) {
      const src = readFileSync(join(ROOT, d, f), 'utf8')
      assert.not.ok(/IGORD_FAULT|process\.kill\(process\.pid/.test(src), `${d}/${f} mentions IGORD_FAULT or kills its own process`)
    }
  }
  const a = await withAgent()
  const dir = tempDir('igord-node-')
  const child = spawn(join(ROOT, 'bin', 'igord'), ['node', '--data', dir, '--interval', '20ms'], { env: { ...process.env, IGORD_FAULT: 'target-during-transfer' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''; let err = ''
  child.stdout.on('data', (d) => { out += d }); child.stderr.on('data', (d) => { err += d })
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  try {
    await until(() => /^listening \S+/m.test(out), 30_000, 'bin/igord node to listen')
    const addr = /^listening (\S+)/m.exec(out)![1]
    const m = igord(['migrate', 'heartbeat', '--to', addr, '--node', a.dir], 60_000)
    assert.is(m.code, 0, m.stderr)
    await until(() => ps(dir).some((x) => x.name === 'heartbeat' && x.status === 'running'), 20_000, 'the agent to run on the bin/igord node')
    assert.is(child.exitCode, null, 'the node is alive')
    assert.is(child.signalCode, null)
    assert.not.match(err, /IGORD_FAULT/)
    child.kill('SIGINT')
    assert.is(await closed, 0, err)
  } finally { if (child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await closed } }
})

/** True while the node in `dir` holds a pending (unresolved) arrival of heartbeat. */
function hasPending (dir: string): boolean { return existsSync(join(dir, 'migrate', 'heartbeat.pending.cbor')) }

test.run()
