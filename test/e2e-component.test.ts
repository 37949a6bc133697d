// test-timeout: 600
/**
 * Component agents end to end through the real CLI (issue 12): existing AssemblyScript agents
 * (ledger, heartbeat) built unchanged as components of world igor:agent/agent
 * (scripts/componentize-as.ts) run, stop, travel as a `.ckpt` alone, resume elsewhere with the
 * state root, fuel and budget of an uninterrupted control run, replay VALID, and migrate between two
 * nodes on 127.0.0.1 — exactly as core agents do. Also: a component importing an interface its
 * manifest does not grant is refused at load, naming it.
 */
import { copyFileSync, cpSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, igordSpawn, inspectJson, loggedTicks, tempDir } from './helpers.ts'
import { ps, startNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const running: NodeProc[] = []
test.after.each(async () => { for (const n of running.splice(0)) if (n.live.child.exitCode === null) { n.live.child.kill('SIGKILL'); await n.live.done() } })
test.after(cleanup)

const LEDGER = agentWasm('ledger.component')
const HEART = agentWasm('heartbeat.component')

test('ledger component: interrupted at tick 11, .ckpt copied alone and resumed elsewhere = uninterrupted control (state root, fuel, budget); verify --replay VALID', () => {
  const control = tempDir(); const a = tempDir(); const b = tempDir()
  const seed = ['--sim-seed', 'component-e2e', '--interval', '0ms', '-q']
  const c = igord(['run', LEDGER, '--dir', control, '--ticks', '30', ...seed])
  assert.is(c.code, 0, c.stderr)
  const r1 = igord(['run', LEDGER, '--dir', a, '--ticks', '11', ...seed])
  assert.is(r1.code, 0, r1.stderr)
  copyFileSync(join(a, 'ledger.component.ckpt'), join(b, 'ledger.component.ckpt'))
  assert.equal(readdirSync(b), ['ledger.component.ckpt'])
  const r2 = igord(['resume', join(b, 'ledger.component.ckpt'), '--ticks', '19', ...seed])
  assert.is(r2.code, 0, r2.stderr)
  const want = inspectJson(join(control, 'ledger.component.ckpt'))
  const got = inspectJson(join(b, 'ledger.component.ckpt'))
  assert.is(got.tick, 30)
  assert.is(want.tick, 30)
  assert.ok(Number(want.nonZeroPages) >= 1)
  assert.ok(Number(want.fuel) > 0)
  assert.is(got.stateRoot, want.stateRoot, 'state roots (memory, every core instance\'s globals, fuel, budget) are equal')
  assert.is(got.fuel, want.fuel)
  assert.is(got.budget, want.budget)
  assert.ok(got.did !== want.did, 'two different agents: the equality is no accident of identity')

  const v = igord(['verify', '--replay', a, b])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID: replayed 31 ticks \(ticks 0–30\)/)
  const vc = igord(['verify', '--replay', control])
  assert.is(vc.code, 0, vc.stdout + vc.stderr)
})

test('heartbeat component: run → SIGINT → copy the .ckpt alone → resume: same DID, ticks continue without gap or repeat', async () => {
  const a = tempDir(); const b = tempDir()
  const runA = igordSpawn(['run', HEART, '--dir', a, '--interval', '20ms'])
  await runA.waitFor((out) => loggedTicks(out).length >= 5)
  runA.child.kill('SIGINT')
  const endA = await runA.done()
  assert.is(endA.code, 0, endA.stderr)
  const ticksA = loggedTicks(endA.stdout)
  assert.equal(ticksA, Array.from({ length: ticksA.length }, (_, i) => i + 1))
  copyFileSync(join(a, 'heartbeat.component.ckpt'), join(b, 'heartbeat.component.ckpt'))
  const runB = igordSpawn(['resume', join(b, 'heartbeat.component.ckpt'), '--interval', '20ms'])
  await runB.waitFor((out) => loggedTicks(out).length >= 3)
  runB.child.kill('SIGTERM')
  const endB = await runB.done()
  assert.is(endB.code, 0, endB.stderr)
  const ticksB = loggedTicks(endB.stdout)
  assert.is(ticksB[0], (ticksA.at(-1) as number) + 1, 'resume continues with the next tick')
  assert.equal(inspectJson(join(b, 'heartbeat.component.ckpt')).did, inspectJson(join(a, 'heartbeat.component.ckpt')).did)
  const merged = tempDir()
  for (const d of [a, b]) for (const sub of ['history', 'blobs']) cpSync(join(d, sub), join(merged, sub), { recursive: true })
  const v = igord(['verify', '--replay', merged])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID/)
})

test('a component importing an interface its manifest does not grant is refused at load (exit 4), naming it', () => {
  const d = tempDir()
  copyFileSync(LEDGER, join(d, 'l.wasm'))
  writeFileSync(join(d, 'l.manifest.json'), JSON.stringify({ capabilities: ['clock', 'log'] }))
  const r = igord(['run', join(d, 'l.wasm'), '--dir', join(d, 'data'), '--ticks', '1'])
  assert.is(r.code, 4, r.stdout + r.stderr)
  assert.match(r.stderr, /component imports not granted by the manifest: igor:agent\/random@1\.0\.0 needs capability "rand"/)
})

test('two nodes on 127.0.0.1: a component agent migrates A → B and keeps ticking; merged histories VALID', async () => {
  const [a, b] = await Promise.all([startNode({ args: [] }), startNode({ args: [] })])
  running.push(a, b)
  const r = igord(['run', HEART, '--node', a.dir, '--interval', '20ms'])
  assert.is(r.code, 0, r.stderr)
  const tickOf = (n: NodeProc) => ps(n.dir).find((x) => x.name === 'heartbeat.component')?.tick ?? -1
  await until(() => tickOf(a) >= 5, 90_000, 'ticks on A')
  const m = igord(['migrate', 'heartbeat.component', '--to', b.addr, '--node', a.dir, '--json'], 120_000)
  assert.is(m.code, 0, m.stderr)
  const mj = JSON.parse(m.stdout) as Record<string, unknown>
  assert.is(mj.epoch, 1)
  assert.is(mj.to, b.peer)
  await until(() => tickOf(b) > Number(mj.tick) + 3, 90_000, 'ticks on B')
  assert.ok(!ps(a.dir).some((x) => x.name === 'heartbeat.component' && x.status === 'running'), 'A no longer runs it')
  const v = igord(['verify', '--replay', a.dir, b.dir])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID/)
})

test.run()
