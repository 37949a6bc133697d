/**
 * End to end through the real CLI with the JavaScript heartbeat (agents-js/agents/heartbeat.js,
 * a component made by `jco componentize`, StarlingMonkey inside): its log lines are the
 * AssemblyScript heartbeat's; interrupted at tick 5, its `.ckpt` copied alone into another
 * directory (a cold code cache: the component is transpiled and instrumented again there) and
 * resumed, it reaches the same state root, fuel and budget as an uninterrupted `--sim-seed` run;
 * the merged history and the control's replay VALID; a message in its inbox is answered with a
 * random number and still replays; on two nodes on 127.0.0.1 it migrates A → B and keeps ticking.
 *
 * Instrumenting the engine's 12.5 MB core module takes a minute or two on a loaded machine (once
 * per code CID and data directory, then cached), so this file runs long.
 */
// test-timeout: 1500
import { copyFileSync, cpSync, existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ROOT, cleanup, igord, inspectJson, tempDir } from './helpers.ts'
import { ps, startNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const running: NodeProc[] = []
test.after.each(async () => { for (const n of running.splice(0)) if (n.live.child.exitCode === null) { n.live.child.kill('SIGKILL'); await n.live.done() } })
test.after(cleanup)

const JS_HEARTBEAT = join(ROOT, 'agents-js', 'build', 'heartbeat.wasm')
/** Longest one igord run may take here, ms (a cold code cache instruments 12.5 MB of wasm). */
const RUN_MS = 600_000
const SEED = ['--sim-seed', 'js-e2e', '--interval', '0ms']

/** The `[heartbeat] …` lines of a run's output, without the prefix. */
const lines = (stdout: string): string[] => stdout.split('\n').filter((l) => l.startsWith('[heartbeat] ')).map((l) => l.slice(12))

const control = tempDir('igord-js-control-')

test('the JS heartbeat is a component (`make agents` built it) and logs the AS heartbeat\'s lines', () => {
  assert.ok(existsSync(JS_HEARTBEAT), `${JS_HEARTBEAT} is missing: run make agents`)
  const c = igord(['run', JS_HEARTBEAT, '--dir', control, '--ticks', '12', ...SEED], RUN_MS)
  assert.is(c.code, 0, c.stderr)
  const want = ['heartbeat born', ...Array.from({ length: 12 }, (_, i) => `tick ${i + 1}, age ${i + 1} s`)]
  want.splice(11, 0, 'milestone: 10 ticks (previous line: tick 9, age 9 s)')
  assert.equal(lines(c.stdout), want)
  const info = inspectJson(join(control, 'heartbeat.ckpt'))
  assert.is(info.tick, 12)
  assert.is(info.status, 'running')
})

test('interrupted at tick 5, .ckpt copied alone, resumed elsewhere: same state root, fuel and budget; replay VALID', () => {
  const a = tempDir('igord-js-a-'); const b = tempDir('igord-js-b-')
  // A is a host that instrumented this code before (the control's code cache); B has never seen it.
  cpSync(join(control, 'cache'), join(a, 'cache'), { recursive: true })
  const r1 = igord(['run', JS_HEARTBEAT, '--dir', a, '--ticks', '5', ...SEED], RUN_MS)
  assert.is(r1.code, 0, r1.stderr)
  assert.equal(lines(r1.stdout).at(-1), 'tick 5, age 5 s')
  copyFileSync(join(a, 'heartbeat.ckpt'), join(b, 'heartbeat.ckpt'))
  assert.equal(readdirSync(b), ['heartbeat.ckpt'])
  const r2 = igord(['resume', join(b, 'heartbeat.ckpt'), '--ticks', '7', ...SEED], RUN_MS)
  assert.is(r2.code, 0, r2.stderr)
  assert.equal(lines(r2.stdout)[0], 'tick 6, age 6 s', 'the heap came back: the count and the birth time go on')
  assert.ok(lines(r2.stdout).includes('milestone: 10 ticks (previous line: tick 9, age 9 s)'), 'the previous line survived the move')
  const want = inspectJson(join(control, 'heartbeat.ckpt'))
  const got = inspectJson(join(b, 'heartbeat.ckpt'))
  assert.is(got.tick, 12)
  assert.is(got.stateRoot, want.stateRoot, 'state roots (memory, globals of every core instance, fuel, budget) are equal')
  assert.is(got.fuel, want.fuel)
  assert.is(got.budget, want.budget)
  assert.ok(got.did !== want.did, 'two different agents, so the equality is not an accident of identity')
  assert.ok(Number(got.fuel) > 0)

  const v = igord(['verify', '--replay', a, b], RUN_MS)
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID: replayed 13 ticks \(ticks 0–12\), \d+ checkpoints checked, did:key:z6Mk\w+\n$/)
  const vc = igord(['verify', '--replay', control], RUN_MS)
  assert.is(vc.code, 0, vc.stdout + vc.stderr)
  assert.match(vc.stdout, /^VALID: replayed 13 ticks/)
})

test('inbox and random: a message sent to the stopped JS heartbeat is answered with a lucky number, and replays', () => {
  const d = tempDir('igord-js-inbox-')
  cpSync(join(control, 'cache'), join(d, 'cache'), { recursive: true })
  assert.is(igord(['run', JS_HEARTBEAT, '--dir', d, '--ticks', '2', ...SEED], RUN_MS).code, 0)
  const s = igord(['send', 'heartbeat', 'hello from a test', '--dir', d])
  assert.is(s.code, 0, s.stderr)
  const r = igord(['resume', join(d, 'heartbeat.ckpt'), '--ticks', '2', ...SEED], RUN_MS)
  assert.is(r.code, 0, r.stderr)
  const got = lines(r.stdout)
  const m = got.map((l) => /^message 1 \(seq 1\) from (\S+): hello from a test \(lucky (\d+)\)$/.exec(l)).find((x) => x !== null)
  assert.ok(m, `no answer to the message in ${JSON.stringify(got)}`)
  assert.ok(Number(m![2]) >= 0 && Number(m![2]) <= 255)
  assert.equal(got.filter((l) => l.startsWith('message ')).length, 1, 'a consumed message is not read again')
  const v = igord(['verify', '--replay', d], RUN_MS)
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID: replayed 5 ticks/)
})

test('two nodes on 127.0.0.1: the JS heartbeat migrates A → B and keeps ticking; merged histories replay VALID', async () => {
  // Both hosts have instrumented this code before (the control's code cache): the migration
  // itself, not a first 12.5 MB instrumentation, is what is timed here.
  const dirs = [tempDir('igord-js-node-a-'), tempDir('igord-js-node-b-')]
  for (const d of dirs) cpSync(join(control, 'cache'), join(d, 'cache'), { recursive: true })
  const [a, b] = await Promise.all(dirs.map((dir) => startNode({ dir, args: [] })))
  running.push(a, b)
  const r = igord(['run', JS_HEARTBEAT, '--node', a.dir, '--interval', '20ms'], RUN_MS)
  assert.is(r.code, 0, r.stderr)
  const tickOf = (n: NodeProc) => ps(n.dir).find((x) => x.name === 'heartbeat')?.tick ?? -1
  await until(() => tickOf(a) >= 5, 300_000, 'ticks on A')
  const m = igord(['migrate', 'heartbeat', '--to', b.addr, '--node', a.dir, '--json'], RUN_MS)
  assert.is(m.code, 0, m.stdout + m.stderr)
  const mj = JSON.parse(m.stdout) as Record<string, unknown>
  assert.is(mj.epoch, 1)
  assert.is(mj.to, b.peer)
  await until(() => tickOf(b) > Number(mj.tick) + 3, 300_000, 'ticks on B')
  assert.ok(!ps(a.dir).some((x) => x.name === 'heartbeat' && x.status === 'running'), 'A no longer runs it')
  const v = igord(['verify', '--replay', a.dir, b.dir], RUN_MS)
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID/)
})

test.run()
