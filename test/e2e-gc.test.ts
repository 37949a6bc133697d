/**
 * End-to-end tests of `igord gc` through the real CLI: heartbeat lives 60 ticks, `gc --keep-every 10`
 * shrinks its blobs, verify and verify --replay stay VALID and the agent resumes; a running writer's
 * agent is refused (exit 10), one a node hosts is collected by that node (control op `gc`); and kill -9 of `igord gc` at seeded random moments (bounded rounds,
 * gc slowed between its durable steps by test/igord-faulty.ts `gc-slow`) never costs validity,
 * a resume, or anything the live `.ckpt` needs.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { agentWasm, cleanup, IGORD_FAULTY, igord, igordSpawn, tempDir } from './helpers.ts'
import { prng } from './prng.ts'
import { startNode, stopNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'
import { controlRequest } from '../p2p/control-client.ts'
import { readEntries } from '../checkpoint/entries.ts'

test.after.each(cleanup)

/** Checkpoints archived in `hist` so far (none when it does not exist yet). */
const countEntries = (hist: string) => { try { return readEntries(hist).entries.length } catch { return 0 } }
const blobBytes = (dir: string) => fs.readdirSync(path.join(dir, 'blobs')).reduce((k, n) => k + fs.statSync(path.join(dir, 'blobs', n)).size, 0)

function ok (args: string[]): string {
  const r = igord(args)
  assert.is(r.code, 0, `igord ${args.join(' ')}: ${r.stdout}${r.stderr}`)
  return r.stdout
}
const live = (args: string[]) => ok([...args, '--interval', '0ms', '-q'])

test('heartbeat 60 ticks, gc --keep-every 10: bytes shrink, verify and --replay VALID, resume works', () => {
  const dir = tempDir()
  live(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '60'])
  const before = blobBytes(dir)
  const dry = JSON.parse(ok(['gc', dir, '--keep-every', '10', '--dry-run', '--json'])) as { kept: number; pruned: number; blobsBytesAfter: number }
  assert.is(blobBytes(dir), before)
  const out = ok(['gc', dir, '--keep-every', '10'])
  assert.match(out, /^heartbeat: kept the pages of 7 of 61 checkpoints \(54 pruned, 54 now\)/)
  const after = blobBytes(dir)
  assert.ok(after < before / 2, `${before} → ${after} bytes`)
  assert.equal([dry.kept, dry.pruned, dry.blobsBytesAfter], [7, 54, after])
  const v = igord(['verify', dir])
  assert.is(v.code, 0, v.stdout)
  assert.match(v.stdout, /pruned by gc: the page bytes of 54 of 61 checkpoints were not checked/)
  const rp = igord(['verify', '--replay', dir])
  assert.is(rp.code, 0, rp.stdout)
  assert.match(rp.stdout, /^VALID: replayed 61 ticks \(ticks 0–60\)/)
  live(['resume', path.join(dir, 'heartbeat.ckpt'), '--ticks', '5'])
  const rp2 = igord(['verify', '--replay', dir])
  assert.is(rp2.code, 0, rp2.stdout)
  assert.match(rp2.stdout, /^VALID: replayed 66 ticks \(ticks 0–65\)/)
})

test('gc refuses an agent that a running igord writes (exit 10), and names it', async () => {
  const dir = tempDir()
  live(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '3'])
  const r = igordSpawn(['resume', path.join(dir, 'heartbeat.ckpt'), '--interval', '200ms'])
  try {
    await r.waitFor(() => countEntries(path.join(dir, 'history', 'heartbeat')) > 5)
    const g = igord(['gc', dir, '--keep-every', '2'])
    assert.is(g.code, 10, g.stdout + g.stderr)
    assert.match(g.stderr, /gc: heartbeat: refused, the agent is being written: .*pid \d+/)
    assert.not.ok(fs.existsSync(path.join(dir, 'history', 'heartbeat', 'gc.json')))
  } finally { r.child.kill('SIGKILL'); await r.done() }
})

test('kill -9 of igord gc at random moments: verify VALID, resume works, the live .ckpt keeps everything it needs', async () => {
  const seed = Number(process.env.TEST_SEED ?? 1011)
  const rand = prng(seed)
  const dir = tempDir()
  live(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '30'])
  const steps: number[] = [] // how many steps each killed gc reached
  for (let round = 0; round < 6; round++) {
    live(['resume', path.join(dir, 'heartbeat.ckpt'), '--ticks', '4']) // a new pack to merge each round
    const g = igordSpawn(['gc', dir, '--keep-every', String(2 + (round % 3))], { IGORD_FAULT: 'gc-slow:120' }, IGORD_FAULTY)
    // from the moment gc has planned (it then writes, renames, records and unlinks, 120 ms apart)
    await g.waitFor(() => g.stderr().includes('gc step planned')).catch(() => {}) // or it ended first
    const delay = Math.floor(rand() * 700)
    await new Promise((resolve) => setTimeout(resolve, delay))
    g.child.kill('SIGKILL')
    steps.push(g.stderr().split('\n').filter((l) => l.startsWith('igord-faulty: gc step')).length)
    const end = await g.done()
    const what = `seed ${seed}, round ${round}, kill after ${delay} ms (${end.signal ?? `exit ${end.code}`})`
    const v = igord(['verify', dir])
    assert.is(v.code, 0, `${what}: ${v.stdout}`)
    live(['resume', path.join(dir, 'heartbeat.ckpt'), '--ticks', '2'])
    const v2 = igord(['verify', dir])
    assert.is(v2.code, 0, `${what}, then resumed: ${v2.stdout}`)
  }
  assert.ok(steps.some((k) => k >= 2 && k < 6), `seed ${seed}: no kill landed between gc's durable steps (${steps.join(', ')})`)
  ok(['gc', dir, '--keep-every', '3'])
  const rp = igord(['verify', '--replay', dir])
  assert.is(rp.code, 0, `seed ${seed}: ${rp.stdout}`)
  assert.match(rp.stdout, /^VALID: replayed 67 ticks \(ticks 0–66\)/) // 30 ticks, then 6 rounds of 4 + 2
})

test('run/resume --keep-every: gc passes between ticks of the running agent; VALID, replays, resumes', () => {
  const dir = tempDir()
  const out = igord(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '60', '--interval', '15ms', '--keep-every', '5', '--gc-every', '200ms', '-q'])
  assert.is(out.code, 0, out.stderr)
  assert.match(out.stderr, /igord: gc: heartbeat: pages of \d+ more checkpoints pruned/)
  assert.ok(fs.existsSync(path.join(dir, 'history', 'heartbeat', 'gc.json')))
  const v = igord(['verify', '--replay', dir])
  assert.is(v.code, 0, v.stdout)
  live(['resume', path.join(dir, 'heartbeat.ckpt'), '--ticks', '3', '--keep-every', '5'])
  assert.is(igord(['verify', dir]).code, 0)
})

/**
 * A node started with `args`, hosting heartbeat at a 20 ms interval, handed to `body`; then the
 * node stops cleanly and its directory must verify VALID with pruned checkpoints, and replay.
 */
async function gcOnNode (args: string[], body: (n: NodeProc) => Promise<void>): Promise<void> {
  const n = await startNode({ args })
  let stopped = false
  try {
    await controlRequest(n.dir, { op: 'run', wasm: agentWasm('heartbeat'), name: 'heartbeat', budget: '100000000', intervalMs: 20 })
    await body(n)
    const out = await stopNode(n); stopped = true
    assert.is(out.code, 0, out.stderr)
    const v = igord(['verify', n.dir])
    assert.is(v.code, 0, v.stdout)
    assert.match(v.stdout, /pruned by gc: the page bytes of \d+ of \d+ checkpoints/)
    const rp = igord(['verify', '--replay', n.dir])
    assert.is(rp.code, 0, rp.stdout)
  } finally { if (!stopped) await stopNode(n) }
}

test('igord node --keep-every: bounded gc passes in the node while the agent runs; the history stays VALID and replays', async () => {
  await gcOnNode(['--keep-every', '5', '--keep-last', '2', '--gc-every', '300ms', '--hibernate-after', 'off'], async (n) => {
    await until(() => fs.existsSync(path.join(n.dir, 'history', 'heartbeat', 'gc.json')) && countEntries(path.join(n.dir, 'history', 'heartbeat')) > 40, 120_000, 'a gc record and 40 checkpoints')
    await until(() => /gc: heartbeat: kept the pages of/.test(n.live.stderr()), 60_000, 'a gc note')
  })
})

test('igord gc on a directory a node serves: the node collects its hosted agent between ticks (control op gc); an unknown name is refused', async () => {
  await gcOnNode(['--hibernate-after', 'off'], async (n) => {
    await until(() => countEntries(path.join(n.dir, 'history', 'heartbeat')) > 30, 120_000, '30 checkpoints')
    const g = igord(['gc', n.dir, '--keep-every', '4', '--json'])
    assert.is(g.code, 0, g.stdout + g.stderr)
    const r = JSON.parse(g.stdout.trim().split('\n')[0]) as { agent: string; pruned: number; checkpoints: number; dryRun: boolean }
    assert.is(r.agent, 'heartbeat')
    assert.is(r.dryRun, false)
    assert.ok(r.pruned > 0 && r.pruned < r.checkpoints, JSON.stringify(r))
    assert.ok(fs.existsSync(path.join(n.dir, 'history', 'heartbeat', 'gc.json')))
    const bad = controlRequest(n.dir, { op: 'gc', name: 'nobody' })
    await bad.then(() => assert.unreachable('gc of an unknown agent answered ok'), (e: Error & { code?: string }) => { assert.is(e.code, 'BAD_REQUEST'); assert.match(e.message, /no agent named "nobody"/) })
    await until(() => /tick \d+/.test(n.live.stdout()), 10_000, 'the agent still ticking')
  })
})

test.run()
