/**
 * Unit tests of runtime/agent.ts: birth, ticks (results, atomic rollback on traps, fuel limit,
 * budget), determinism of fuel, restore from a checkpoint state, and module rejection.
 *
 * The test agent is WAT text assembled with binaryen. Its tick reads the tick number from the
 * simulated clock (`simulatedInputs`: SIM_EPOCH_NS + tick × 1 s), looks up a "mode" for that tick in
 * a script stored in a data segment at address 256, and before acting on it always mutates state:
 * mem[0] += 1 (i32), global $g += 1 (i32), global $h += 3 (i64), mem[4] = $g, mem[8] = memory.size,
 * mem[16] = $h, mem[24] = tick, page 1: mem[65536] = tick, mem[65540] = mem[0]. A rolled-back tick
 * must therefore leave no trace that the next successful tick could observe.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import { ModuleError } from '../checkpoint/errors.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import type { Identity } from '../checkpoint/identity.ts'
import { PAGE_SIZE, stateRoot } from '../checkpoint/state.ts'
import type { Snapshot } from '../checkpoint/writer.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import type { Manifest } from '../hostcalls/manifest.ts'
import { Agent } from '../runtime/agent.ts'
import type { AgentSpec, TickResult } from '../runtime/agent.ts'
import { simulatedInputs } from '../runtime/inputs.ts'

/** Tick modes of the scripted agent (index into its br_table). */
const M = { IDLE: 0, MORE: 1, FINISH: 2, UNREACHABLE: 3, OOB: 4, LOOP: 5, BAD: 6, GROW_TRAP: 7, GROW: 8 } as const

const FUEL_LIMIT = 200_000

function watBytes (text: string): Uint8Array {
  const m = binaryen.parseText(text)
  try { return m.emitBinary() } finally { m.dispose() }
}

/** The scripted agent; `script[t]` is the mode of tick t (missing ticks are IDLE). */
function scripted (script: number[], initLoops = 0): Uint8Array {
  const data = script.map((b) => '\\' + b.toString(16).padStart(2, '0')).join('')
  return watBytes(`(module
  (import "igor" "clock_now" (func $now (result i64)))
  (memory (export "memory") 2 8)
  (global $g (mut i32) (i32.const 0))
  (global $h (mut i64) (i64.const 0))
  (data (i32.const 256) "${data}")
  (func (export "_initialize") (i32.store8 (i32.const 32) (i32.const 1)))
  (func (export "agent_init")
    (local $i i32)
    (i32.store8 (i32.const 33) (i32.add (i32.load8_u (i32.const 32)) (i32.const 1)))
    (i32.store8 (i32.const 34) (i32.add (i32.load8_u (i32.const 34)) (i32.const 1)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const ${initLoops})))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))
  (func (export "agent_tick") (result i32)
    (local $t i32)
    (local.set $t (i32.wrap_i64 (i64.div_u (i64.sub (call $now) (i64.const 1700000000000000000)) (i64.const 1000000000))))
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (global.set $h (i64.add (global.get $h) (i64.const 3)))
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (i32.store (i32.const 4) (global.get $g))
    (i32.store (i32.const 8) (memory.size))
    (i64.store (i32.const 16) (global.get $h))
    (i32.store (i32.const 24) (local.get $t))
    (i32.store (i32.const 65536) (local.get $t))
    (i32.store (i32.const 65540) (i32.load (i32.const 0)))
    (block $grow_ok
     (block $grow_trap
      (block $bad
       (block $loop
        (block $oob
         (block $unr
          (block $r2
           (block $r1
            (block $r0
             (br_table $r0 $r1 $r2 $unr $oob $loop $bad $grow_trap $grow_ok $r0
               (i32.load8_u (i32.add (i32.const 256) (local.get $t)))))
            (return (i32.const 0)))
           (return (i32.const 1)))
          (return (i32.const 2)))
         (unreachable))
        (drop (i32.load (i32.const -4)))
        (return (i32.const 0)))
       (loop $spin (br $spin))
       (unreachable))
      (return (i32.const 7)))
     (drop (memory.grow (i32.const 1)))
     (i32.store8 (i32.mul (i32.sub (memory.size) (i32.const 1)) (i32.const 65536)) (i32.const 0xaa))
     (unreachable))
    (drop (memory.grow (i32.const 1)))
    (i32.const 0)))`)
}

function manifest (extra: Record<string, unknown> = {}): Manifest {
  const doc = { capabilities: ['clock'], resource_limits: { max_memory_bytes: 8 * PAGE_SIZE, max_fuel_per_tick: FUEL_LIMIT, max_consecutive_failures: 3 }, ...extra }
  return parseManifest(new TextEncoder().encode(JSON.stringify(doc)), 'test.manifest.json')
}

function spec (wasm: Uint8Array, over: Partial<AgentSpec> = {}): AgentSpec {
  return { wasm, manifest: manifest(), identity: ID, budget: 1_000_000_000n, price: 1_000_000n, inputs: simulatedInputs('agent-test'), emit: () => {}, file: 'test.wasm', ...over }
}

const ID: Identity = generateIdentity()

/** Committed memory bytes of a snapshot, as one array of pageCount × 64 KiB. */
function memoryOf (s: Snapshot): Uint8Array {
  const out = new Uint8Array(s.pageCount * PAGE_SIZE)
  for (const [i, p] of s.pages) out.set(p, i * PAGE_SIZE)
  return out
}
const u32 = (mem: Uint8Array, at: number) => new DataView(mem.buffer, mem.byteOffset).getUint32(at, true)
const i64 = (mem: Uint8Array, at: number) => new DataView(mem.buffer, mem.byteOffset).getBigInt64(at, true)
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
/** A comparable digest of everything a checkpoint binds. */
function rootOf (a: Agent, s: Snapshot): string {
  return hex(stateRoot({ pages: s.pageCount, digests: s.digests, globals: s.globals, fuel: a.fuel, budget: a.budget }))
}
function globalI32 (s: Snapshot, k: number): number { return new DataView(s.globals[k].bytes.buffer, s.globals[k].bytes.byteOffset).getInt32(0, true) }
function globalI64 (s: Snapshot, k: number): bigint { return new DataView(s.globals[k].bytes.buffer, s.globals[k].bytes.byteOffset).getBigInt64(0, true) }

function tick (a: Agent): TickResult {
  const r = a.runTick()
  if (r === null) throw new Error('runTick returned null')
  return r
}

test('birth runs _initialize then agent_init exactly once and charges their fuel', () => {
  const a = Agent.birth(spec(scripted([], 500)))
  const s = a.checkpointState()
  const mem = memoryOf(s)
  assert.is(mem[32], 1, '_initialize ran')
  assert.is(mem[33], 2, 'agent_init ran after _initialize')
  assert.is(mem[34], 1, 'agent_init ran exactly once')
  assert.is(a.tick, 0)
  assert.ok(a.fuel >= 500n, `birth fuel ${a.fuel} covers agent_init's 500 loop iterations`)
  // price 1e6 microcents per million fuel: cost = fuel exactly
  assert.is(a.budget, 1_000_000_000n - a.fuel)
  const rec = a.log.pending[0]
  assert.is(rec.tick, 0)
  assert.is(rec.fuel, a.fuel)
  // more work in agent_init costs more fuel
  const b = Agent.birth(spec(scripted([], 1500)))
  assert.ok(b.fuel >= a.fuel + 1000n, `${b.fuel} vs ${a.fuel}`)
})

test('ticks returning 0, 1 and 2 are reported with their result and commit their state', () => {
  const a = Agent.birth(spec(scripted([0, M.IDLE, M.MORE, M.FINISH])))
  const rs = [tick(a), tick(a), tick(a)]
  assert.equal(rs.map((r) => r.result), [0, 1, 2])
  assert.equal(rs.map((r) => r.trap), [null, null, null])
  assert.equal(rs.map((r) => r.tick), [1, 2, 3])
  assert.ok(rs.every((r) => r.fuel > 0n))
  assert.ok(rs[0].changedPages >= 2, 'pages 0 and 1 changed on the first tick')
  assert.is(a.tick, 3)
  assert.is(a.failures, 0)
  const mem = memoryOf(a.checkpointState())
  assert.is(u32(mem, 0), 3)
  assert.is(u32(mem, 24), 3)
  assert.is(u32(mem, 65536), 3)
})

for (const [name, mode, pattern] of [
  ['unreachable', M.UNREACHABLE, /unreachable/],
  ['an out-of-bounds load', M.OOB, /out of bounds/],
] as const) {
  test(`a tick that traps with ${name} rolls memory and globals back; tick, fuel and budget still advance`, () => {
    const a = Agent.birth(spec(scripted([0, M.IDLE, M.IDLE, mode, M.IDLE])))
    tick(a); tick(a)
    const before = a.checkpointState()
    const memBefore = memoryOf(before).slice()
    const fuelBefore = a.fuel; const budgetBefore = a.budget
    const r = tick(a)
    assert.is(r.tick, 3)
    assert.is(r.result, null)
    assert.match(r.trap ?? '', pattern)
    assert.is(r.changedPages, 0)
    assert.ok(r.fuel > 0n)
    assert.is(a.tick, 3)
    assert.is(a.fuel, fuelBefore + r.fuel)
    assert.is(a.budget, budgetBefore - r.cost)
    assert.ok(r.cost > 0n)
    assert.is(a.failures, 1)
    assert.not.ok(a.dirty, 'nothing committed by the failed tick')
    assert.equal(memoryOf(a.checkpointState()), memBefore)
    // The next tick sees the pre-trap memory and globals: every counter advanced by exactly one.
    const r4 = tick(a)
    assert.is(r4.trap, null)
    const s = a.checkpointState()
    const mem = memoryOf(s)
    assert.is(u32(mem, 0), 3, 'mem[0] counted 3 committed ticks, not 4')
    assert.is(u32(mem, 4), 3, 'global $g was rolled back (the tick stored $g = 3)')
    assert.is(i64(mem, 16), 9n, 'global $h was rolled back (3 × 3)')
    assert.is(u32(mem, 65540), 3, 'page 1 was rolled back too')
    assert.is(u32(mem, 24), 4, 'the tick number still advanced')
    assert.is(globalI32(s, 0), 3)
    assert.is(globalI64(s, 1), 9n)
    assert.is(a.failures, 0)
  })
}

test('a trap after memory.grow rolls back to the old page count and state (fresh instance)', () => {
  const a = Agent.birth(spec(scripted([0, M.IDLE, M.GROW_TRAP, M.IDLE, M.GROW])))
  tick(a)
  assert.is(a.pageCount, 2)
  const r = tick(a)
  assert.match(r.trap ?? '', /unreachable/)
  assert.is(a.pageCount, 2)
  const r3 = tick(a)
  assert.is(r3.trap, null)
  const s = a.checkpointState()
  assert.is(s.pageCount, 2)
  const mem = memoryOf(s)
  assert.is(u32(mem, 8), 2, 'the next tick saw memory.size = 2 pages')
  assert.is(u32(mem, 0), 2, 'memory was restored into the fresh instance')
  assert.is(u32(mem, 4), 2, 'global $g was restored into the fresh instance')
  assert.is(i64(mem, 16), 6n, 'global $h was restored into the fresh instance')
  // a successful grow is committed
  const r4 = tick(a)
  assert.is(r4.trap, null)
  assert.is(a.pageCount, 3)
  assert.is(a.checkpointState().pageCount, 3)
})

test("an endless loop ends at the manifest's max_fuel_per_tick with 'out of fuel'", () => {
  const a = Agent.birth(spec(scripted([0, M.LOOP, M.IDLE])))
  const fuelBefore = a.fuel
  const r = tick(a)
  assert.match(r.trap ?? '', /out of fuel/)
  assert.is(r.fuel, BigInt(FUEL_LIMIT))
  assert.is(a.fuel, fuelBefore + BigInt(FUEL_LIMIT))
  assert.is(r.result, null)
  // the agent is still usable, with its state intact
  const r2 = tick(a)
  assert.is(r2.trap, null)
  assert.is(u32(memoryOf(a.checkpointState()), 0), 1)
})

test('a tick returning a value other than 0, 1, 2 fails and is rolled back', () => {
  const a = Agent.birth(spec(scripted([0, M.BAD, M.IDLE])))
  const r = tick(a)
  assert.is(r.result, null)
  assert.match(r.trap ?? '', /returned 7/)
  assert.is(a.failures, 1)
  tick(a)
  assert.is(u32(memoryOf(a.checkpointState()), 0), 1)
})

test('failures counts consecutive failed ticks and resets after a success', () => {
  const a = Agent.birth(spec(scripted([0, M.UNREACHABLE, M.OOB, M.BAD, M.IDLE, M.UNREACHABLE, M.MORE])))
  const counts: number[] = []
  for (let i = 0; i < 6; i++) { tick(a); counts.push(a.failures) }
  assert.equal(counts, [1, 2, 3, 0, 1, 0])
})

test('budget: cost = ceil(fuel × price / 1e6), clamped at the budget; runTick returns null at 0', () => {
  const w = scripted([0, M.IDLE, M.IDLE, M.IDLE, M.IDLE])
  // price 1: a tick of a few dozen fuel still costs 1 microcent (ceiling, not floor)
  const a = Agent.birth(spec(w, { price: 1n, budget: 1000n }))
  assert.is(a.budget, 999n, 'birth burned some fuel: 1 microcent')
  const r = tick(a)
  assert.ok(r.fuel < 1_000_000n)
  assert.is(r.cost, 1n)
  assert.is(a.budget, 998n)
  // price 3e6: 3 microcents per fuel
  const b = Agent.birth(spec(w, { price: 3_000_000n, budget: 1_000_000n }))
  const before = b.budget
  const rb = tick(b)
  assert.is(rb.cost, rb.fuel * 3n)
  assert.is(b.budget, before - rb.fuel * 3n)
  // price 1.5 per fuel with an odd fuel count rounds up
  const c = Agent.birth(spec(w, { price: 1_500_000n, budget: 1_000_000n }))
  const rc = tick(c)
  assert.is(rc.cost, (rc.fuel * 3n + 1n) / 2n)
  // clamp: 5 microcents left, a tick costs more
  const d = Agent.birth(spec(w, { price: 1_000_000n, budget: 1_000_000n }))
  d.budget = 5n
  const rd = tick(d)
  assert.ok(rd.fuel > 5n)
  assert.is(rd.cost, 5n)
  assert.is(d.budget, 0n)
  const fuel = d.fuel
  assert.is(d.runTick(), null)
  assert.is(d.tick, 1, 'no tick ran')
  assert.is(d.fuel, fuel)
})

test('fuel is identical across two agents running the same ticks with the same simulated inputs', () => {
  const w = scripted([0, M.IDLE, M.MORE, M.UNREACHABLE, M.GROW, M.BAD, M.LOOP, M.IDLE, M.GROW_TRAP, M.FINISH], 300)
  const run = () => {
    const a = Agent.birth(spec(w, { inputs: simulatedInputs('same-seed') }))
    const fuels = [a.fuel]
    for (let i = 0; i < 9; i++) fuels.push(tick(a).fuel)
    return { fuels, total: a.fuel, root: rootOf(a, a.checkpointState()) }
  }
  const x = run(); const y = run()
  assert.equal(x.fuels, y.fuels)
  assert.is(x.total, y.total)
  assert.is(x.root, y.root)
  assert.ok(new Set(x.fuels.map(String)).size > 2, 'the ticks burned different amounts')
})

test('Agent.restore from checkpointState() continues exactly like the original', () => {
  const w = scripted([0, M.IDLE, M.MORE, M.UNREACHABLE, M.GROW, M.IDLE, M.OOB, M.MORE, M.GROW_TRAP, M.IDLE, M.FINISH])
  const a = Agent.birth(spec(w, { inputs: simulatedInputs('restore') }))
  for (let i = 0; i < 4; i++) tick(a)
  const snap = a.checkpointState()
  assert.is(snap.pageCount, 3)
  const state = {
    tick: a.tick,
    fuel: a.fuel,
    pageCount: snap.pageCount,
    pages: snap.pages.map(([i, p]): [number, Uint8Array] => [i, Uint8Array.from(p)]),
    globals: snap.globals.map((g) => ({ ...g, bytes: Uint8Array.from(g.bytes) })),
  }
  const b = Agent.restore(spec(w, { inputs: simulatedInputs('restore'), budget: a.budget }), state)
  assert.is(b.tick, a.tick)
  assert.is(b.fuel, a.fuel)
  assert.is(b.budget, a.budget)
  assert.is(b.pageCount, 3)
  assert.is(rootOf(b, b.checkpointState()), rootOf(a, snap))
  for (let i = 0; i < 6; i++) {
    const ra = tick(a); const rb = tick(b)
    assert.equal(rb, ra, `tick ${ra.tick}`)
  }
  const sa = a.checkpointState(); const sb = b.checkpointState()
  assert.equal(memoryOf(sb), memoryOf(sa))
  assert.equal(sb.digests.map(([i, d]) => [i, hex(d)]), sa.digests.map(([i, d]) => [i, hex(d)]))
  assert.equal(sb.globals, sa.globals)
  assert.is(rootOf(b, sb), rootOf(a, sa))
  assert.is(b.tick, 10)
  assert.is(b.fuel, a.fuel)
  assert.is(u32(memoryOf(sb), 0), 7, '7 of the 10 ticks succeeded')
})

test('a module without agent_tick is rejected with ModuleError', () => {
  const w = watBytes('(module (memory (export "memory") 1) (func (export "agent_init")))')
  assert.throws(() => Agent.birth(spec(w)), (e: unknown) => e instanceof ModuleError && /agent_tick/.test(e.message))
})

test('an import the manifest does not grant is rejected with ModuleError naming it', () => {
  const w = scripted([])
  const noClock = parseManifest(new TextEncoder().encode(JSON.stringify({ capabilities: ['log'] })), 'test.manifest.json')
  assert.throws(() => Agent.birth(spec(w, { manifest: noClock })), (e: unknown) => e instanceof ModuleError && /clock_now/.test(e.message))
})

test('a trap during birth is a ModuleError "birth failed"', () => {
  const w = watBytes(`(module (memory (export "memory") 1)
    (func (export "agent_init") (unreachable))
    (func (export "agent_tick") (result i32) (i32.const 0)))`)
  assert.throws(() => Agent.birth(spec(w)), (e: unknown) => e instanceof ModuleError && /birth failed/.test(e.message) && /agent_init/.test(e.message))
})

test('a trap in the wasm start function (run at instantiation) is a ModuleError "birth failed"', () => {
  const w = watBytes(`(module (memory (export "memory") 1)
    (func $start (i32.store (i32.const 0) (i32.div_u (i32.const 1) (i32.load (i32.const 0)))))
    (start $start)
    (func (export "agent_tick") (result i32) (i32.const 0)))`)
  assert.throws(() => Agent.birth(spec(w)), (e: unknown) => e instanceof ModuleError && /birth failed/.test(e.message) && /start function/.test(e.message) && /divi/.test(e.message))
})

test.run()
