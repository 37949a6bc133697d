/**
 * Agent-initiated migration end to end through the real CLI: `igord node` processes on 127.0.0.1
 * with different `--price`, the `nomad` agent (capabilities clock, log, migrate) moving itself to
 * the cheapest peer that grants its capabilities, and a generated agent calling `migrate_request`
 * with an explicit multiaddr (reachable, then unreachable).
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import binaryen from 'binaryen'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, loggedTicks, tempDir } from './helpers.ts'
import { ps, startNode, stopNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const running: NodeProc[] = []
test.after.each(async () => { for (const n of running.splice(0)) if (n.live.child.exitCode === null) { n.live.child.kill('SIGKILL'); await n.live.done() } })
test.after(cleanup)

async function node (args: string[] = []): Promise<NodeProc> { const n = await startNode({ args }); running.push(n); return n }
const tickOf = (n: NodeProc, name: string) => ps(n.dir).find((a) => a.name === name)?.tick ?? -1

/**
 * Writes `<dir>/mover.wasm` (+ manifest: log, migrate): each tick increments a counter at address 0
 * and logs `tick N`; at tick `at` it calls `migrate_request` with `target`.
 */
function writeMover (dir: string, target: string, at: number): string {
  const text = (s: string) => [...Buffer.from(s)].map((b) => '\\' + b.toString(16).padStart(2, '0')).join('')
  const wat = `(module
    (import "igor" "log_emit" (func $log (param i32 i32)))
    (import "igor" "migrate_request" (func $mig (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 64) "${text(target)}")
    (data (i32.const 16) "tick ")
    (func (export "agent_tick") (result i32) (local $n i32) (local $p i32) (local $d i32)
      (local.set $n (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (i32.store (i32.const 0) (local.get $n))
      ;; decimal digits of n written backwards ending at 40, then "tick " copied before them
      (local.set $p (i32.const 40)) (local.set $d (local.get $n))
      (loop $l
        (local.set $p (i32.sub (local.get $p) (i32.const 1)))
        (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $d) (i32.const 10))))
        (local.set $d (i32.div_u (local.get $d) (i32.const 10)))
        (br_if $l (local.get $d)))
      (memory.copy (i32.sub (local.get $p) (i32.const 5)) (i32.const 16) (i32.const 5))
      (call $log (i32.sub (local.get $p) (i32.const 5)) (i32.sub (i32.const 45) (local.get $p)))
      (if (i32.eq (local.get $n) (i32.const ${at})) (then (drop (call $mig (i32.const 64) (i32.const ${Buffer.byteLength(target)})))))
      (i32.const 0)))`
  const m = binaryen.parseText(wat)
  m.setFeatures(binaryen.Features.MVP | binaryen.Features.BulkMemory)
  const wasm = join(dir, 'mover.wasm')
  writeFileSync(wasm, m.emitBinary())
  m.dispose()
  writeFileSync(join(dir, 'mover.manifest.json'), JSON.stringify({ capabilities: { log: { version: 1 }, migrate: { version: 1 } } }))
  return wasm
}

test('nomad moves itself after tick 10 to the cheapest peer that grants its capabilities; DID kept, ticks without gap, VALID', async () => {
  // D is the cheapest but does not grant "migrate"; C is the cheapest that grants everything
  const [b, c, d] = await Promise.all([node(['--price', '2000']), node(['--price', '1000']), node(['--price', '100', '--capabilities', 'clock,log'])])
  const a = await node(['--price', '3000', '--bootstrap', b.addr, '--bootstrap', c.addr, '--bootstrap', d.addr])
  const r = igord(['run', agentWasm('nomad'), '--node', a.dir, '--interval', '20ms'])
  assert.is(r.code, 0, r.stderr)
  const did = /(did:key:\S+)/.exec(r.stdout)![1]
  await until(() => ps(c.dir).some((x) => x.name === 'nomad' && x.status === 'running' && x.tick > 12), 30_000, 'nomad to run on C')
  const there = ps(c.dir).find((x) => x.name === 'nomad')!
  assert.is(there.did, did, 'the same identity')
  assert.is(there.epoch, 1)
  assert.not.ok(ps(a.dir).some((x) => x.name === 'nomad'), 'A no longer hosts it')
  for (const n of [b, d]) assert.equal(ps(n.dir), [])
  // at tick 20 it asks again; no known peer is cheaper than C, so it stays
  await until(() => tickOf(c, 'nomad') > 22, 30_000, 'nomad to pass tick 20 on C')
  assert.is(ps(c.dir).find((x) => x.name === 'nomad')!.status, 'running')
  const ends = await Promise.all([a, b, c, d].map(stopNode))
  for (const e of ends) assert.is(e.code, 0, e.stderr)
  assert.match(ends[0].stderr, /nomad asked to move to the cheapest known peer/)
  assert.match(ends[2].stderr, /no known peer cheaper than this node/)
  const onA = loggedTicks(ends[0].stdout); const onC = loggedTicks(ends[2].stdout)
  assert.equal(onA, Array.from({ length: 10 }, (_, i) => i + 1), 'ticks 1–10 on A')
  assert.equal(onC, Array.from({ length: onC.length }, (_, i) => i + 11), 'C continues at tick 11 without gap')
  const v = igord(['verify', a.dir, c.dir, '--json'])
  const rep = JSON.parse(v.stdout)
  assert.is(v.code, 0, v.stdout)
  assert.equal(rep.epochs, [0, 1])
  assert.equal(rep.handoffs.map((h: { to: string }) => h.to), [c.peer])
})

test('migrate_request to an explicit multiaddr moves the agent there; ticks continue without gap', async () => {
  const [a, b] = await Promise.all([node(), node()])
  const wasm = writeMover(tempDir(), b.addr, 4)
  const r = igord(['run', wasm, '--node', a.dir, '--interval', '20ms'])
  assert.is(r.code, 0, r.stderr)
  await until(() => tickOf(b, 'mover') > 8, 30_000, 'mover to tick on B')
  assert.is(ps(b.dir)[0].epoch, 1)
  assert.not.ok(ps(a.dir).some((x) => x.name === 'mover'))
  const [endA, endB] = await Promise.all([a, b].map(stopNode))
  assert.equal(loggedTicks(endA.stdout), [1, 2, 3, 4])
  const onB = loggedTicks(endB.stdout)
  assert.equal(onB, Array.from({ length: onB.length }, (_, i) => i + 5))
  const v = igord(['verify', a.dir, b.dir, '--json'])
  assert.is(v.code, 0, v.stdout)
  assert.equal(JSON.parse(v.stdout).handoffs.map((h: { to: string }) => h.to), [b.peer])
})

test('migrate_request to an unreachable peer: the agent keeps running on its node', async () => {
  const b = await node()
  const a = await node()
  const wasm = writeMover(tempDir(), `/ip4/127.0.0.1/tcp/1/p2p/${b.peer}`, 3)
  const r = igord(['run', wasm, '--node', a.dir, '--interval', '20ms'])
  assert.is(r.code, 0, r.stderr)
  await until(() => /mover: its migration request failed: .*dial \/ip4\/127\.0\.0\.1\/tcp\/1/.test(a.live.stderr()), 30_000, 'the request to fail')
  const t = tickOf(a, 'mover')
  await until(() => tickOf(a, 'mover') > t + 3, 20_000, 'mover to keep ticking on A')
  assert.is(ps(a.dir)[0].status, 'running')
  assert.equal(ps(b.dir), [])
  const endA = await stopNode(a)
  const ticks = loggedTicks(endA.stdout)
  assert.equal(ticks, Array.from({ length: ticks.length }, (_, i) => i + 1), 'no tick lost or repeated')
  const v = igord(['verify', a.dir, '--json'])
  assert.is(v.code, 0, v.stdout)
  assert.equal(JSON.parse(v.stdout).handoffs, [])
})

test.run()
