/**
 * Unit tests of component agents (runtime/component.ts, hostcalls/component.ts, the component
 * path of runtime/agent.ts): preamble detection, the import check against the manifest, the typed
 * host functions' refusals and events, the transpile cache by CID (memory and disk), ticks of a
 * scripted WAT component (results, rollback of a trap through a fresh instance, out of fuel summed
 * over core instances, an invalid tick-result), restore = same state root, and jco's resource
 * handle tables watched for handles held across calls.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import binaryen from 'binaryen'
import { componentEmbed, componentNew } from '@bytecodealliance/jco-transpile/wasm-tools'
import { ModuleError } from '../checkpoint/errors.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { stateRoot } from '../checkpoint/state.ts'
import { EventLog } from '../hostcalls/eventlog.ts'
import { checkComponentImports, componentImports, parseImportName } from '../hostcalls/component.ts'
import type { HostContext } from '../hostcalls/igor.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import type { Manifest } from '../hostcalls/manifest.ts'
import { Agent } from '../runtime/agent.ts'
import type { AgentSpec } from '../runtime/agent.ts'
import { clearComponentCache, componentCacheStats, CORE_GLOBAL_STRIDE, instantiateComponent, isComponent, liveHandles, loadComponent } from '../runtime/component.ts'
import { simulatedInputs } from '../runtime/inputs.ts'
import { rewrite } from '../runtime/instrument.ts'

const WIT = readFileSync(new URL('../wit/agent.wit', import.meta.url), 'utf8')
const dirs: string[] = []
test.after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

function wat (text: string): Uint8Array {
  const m = binaryen.parseText(text)
  try { return m.emitBinary() } finally { m.dispose() }
}

function manifest (caps: string[], fuel = 200_000): Manifest {
  return parseManifest(new TextEncoder().encode(JSON.stringify({ capabilities: caps, resource_limits: { max_fuel_per_tick: fuel } })), 'test.manifest.json')
}

/** Tick modes of the scripted component, by tick (missing: idle). */
const M = { IDLE: 0, MORE: 1, FINISH: 2, UNREACHABLE: 3, LOOP: 4, BAD: 5 } as const

/**
 * A component of world igor:agent/agent from WAT: tick t (from the simulated clock) first bumps
 * mem[0] and global $g, then acts on `script[t]`.
 */
async function scripted (script: number[]): Promise<Uint8Array> {
  const data = script.map((b) => '\\' + b.toString(16).padStart(2, '0')).join('')
  const core = wat(`(module
  (import "igor:agent/clock@1.0.0" "now" (func $now (result i64)))
  (memory (export "memory") 1 4)
  (global $g (mut i32) (i32.const 0))
  (data (i32.const 256) "${data}")
  (func (export "init") (i32.store (i32.const 40) (i32.const 7)))
  (func (export "tick") (result i32)
    (local $t i32)
    (local.set $t (i32.wrap_i64 (i64.div_u (i64.sub (call $now) (i64.const 1700000000000000000)) (i64.const 1000000000))))
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (i32.store (i32.const 4) (global.get $g))
    (block $bad (block $loop (block $unr (block $r2 (block $r1 (block $r0
      (br_table $r0 $r1 $r2 $unr $loop $bad $r0 (i32.load8_u (i32.add (i32.const 256) (local.get $t)))))
      (return (i32.const 0))) (return (i32.const 1))) (return (i32.const 2))) (unreachable))
      (loop $l (br $l)))
    (i32.const 9)))`)
  const embedded = await componentEmbed({ binary: core, witSource: WIT, world: 'agent', stringEncoding: 'utf8' })
  return componentNew(embedded, [])
}

function spec (wasm: Uint8Array, m = manifest(['clock'])): AgentSpec {
  return { wasm, manifest: m, identity: generateIdentity(), budget: 10n ** 12n, price: 1000n, inputs: simulatedInputs('component-test'), emit: () => {}, file: 'scripted.wasm' }
}

function root (a: Agent): string {
  const s = a.checkpointState()
  return Buffer.from(stateRoot({ fuel: a.fuel, budget: a.budget, pages: s.pageCount, digests: s.digests, globals: s.globals })).toString('hex')
}

test('isComponent: the component preamble (version 0x0d, layer 1), not a core module or garbage', async () => {
  const c = await scripted([])
  assert.ok(isComponent(c))
  assert.not.ok(isComponent(wat('(module)')))
  assert.not.ok(isComponent(new Uint8Array([0, 0x61, 0x73, 0x6d])))
  assert.not.ok(isComponent(new TextEncoder().encode('not wasm at all')))
})

test('checkComponentImports: each igor interface needs its capability; wasi needs wasi and a host; others refused, all named in one line', () => {
  assert.equal(parseImportName('igor:agent/clock@1.0.0'), { pkg: 'igor:agent', iface: 'clock', version: '1.0.0' })
  assert.is(parseImportName('env'), null)
  checkComponentImports(['igor:agent/clock@1.0.0', 'igor:agent/types@1.0.0', 'igor:agent/random'], manifest(['clock', 'rand']), 'x.wasm')
  try {
    checkComponentImports(['igor:agent/random@1.0.0', 'acme:db/query', 'igor:agent/nope@1.0.0', 'igor:agent/log@2.0.0', 'wasi:cli/stdout@0.2.3'], manifest(['clock', 'log']), 'x.wasm')
    assert.unreachable('should refuse')
  } catch (e) {
    assert.instance(e, ModuleError)
    assert.is((e as Error).message, 'x.wasm: component imports not granted by the manifest: igor:agent/random@1.0.0 needs capability "rand"; acme:db/query: no capability grants it; igor:agent/nope@1.0.0: igor:agent has no interface "nope"; igor:agent/log@2.0.0: igord serves igor:agent@1.0.0, not version 2.0.0; wasi:cli/stdout@0.2.3 needs capability "wasi"')
  }
  assert.throws(() => checkComponentImports(['wasi:cli/stdout@0.2.3'], manifest(['wasi']), 'x.wasm'), /wasi:cli\/stdout@0\.2\.3: igord's WASI 0\.2 host does not serve it/)
  checkComponentImports(['wasi:cli/stdout@0.2.3'], manifest(['wasi']), 'x.wasm', new Set(['wasi:cli/stdout']))
})

test('componentImports: typed refusals as WIT error-codes record nothing; values record the core events', () => {
  const log = new EventLog()
  log.beginTick(1)
  let slept: bigint | null = null
  const ctx: HostContext = {
    memory: () => { throw new Error('no memory access for components') },
    did: 'did:key:z6MkTest',
    sign: () => new Uint8Array(64),
    budget: () => 5n,
    now: () => 1_700_000_000_000_000_000n,
    randomFill: (b) => b.fill(9),
    log,
    emit: () => {},
    requestMigration: () => {},
    inboxPeek: () => null,
    sleep: (at) => { slept = at },
  }
  const imp = componentImports(manifest(['clock', 'rand', 'log', 'timer', 'migrate', 'inbox', 'wallet']), ctx)
  assert.equal(Object.keys(imp).sort(), ['igor:agent/clock', 'igor:agent/inbox', 'igor:agent/log', 'igor:agent/migrate', 'igor:agent/random', 'igor:agent/timer', 'igor:agent/types', 'igor:agent/wallet'])
  const f = (i: string, n: string) => imp[`igor:agent/${i}`][n] as (...a: unknown[]) => unknown
  assert.equal(f('random', 'getBytes')(64 * 1024 * 1024 + 1), { tag: 'err', val: 'too-long' })
  assert.equal(f('random', 'getBytes')(0), { tag: 'ok', val: new Uint8Array(0) })
  assert.equal(f('timer', 'sleepUntil')(-1n), { tag: 'err', val: 'bad-target' })
  assert.equal(f('migrate', 'request')('not a multiaddr'), { tag: 'err', val: 'bad-target' })
  assert.equal(f('migrate', 'request')('/'.padEnd(1025, 'x')), { tag: 'err', val: 'too-long' })
  assert.is(log.openTick, 1)
  const before = log.endTick({ fuel: 0n, result: 0, trap: null })
  assert.is(before.events.length, 0, 'refusals record nothing')
  log.beginTick(2)
  assert.is(f('clock', 'now')(), 1_700_000_000_000_000_000n)
  assert.equal(f('random', 'getBytes')(3), { tag: 'ok', val: new Uint8Array([9, 9, 9]) })
  f('log', 'emit')('hello')
  f('log', 'emit')('')
  assert.is(f('wallet', 'balance')(), 5n)
  assert.equal(f('timer', 'sleepUntil')(42n), { tag: 'ok', val: undefined })
  assert.is(slept, 42n)
  assert.is(f('inbox', 'next')(), undefined)
  assert.equal(f('migrate', 'request')(undefined), { tag: 'ok', val: undefined })
  const rec = log.endTick({ fuel: 0n, result: 0, trap: null })
  assert.equal(rec.events.map((e) => e[0]), ['clock_now', 'rand_bytes', 'log_emit', 'wallet_balance', 'sleep_until', 'inbox', 'migrate_request'])
})

test('a scripted component: results, trap rolled back through a fresh instance, out of fuel, invalid tick-result; restore gives the same state root', async () => {
  const wasm = await scripted([0, M.IDLE, M.MORE, M.UNREACHABLE, M.IDLE, M.LOOP, M.BAD, M.IDLE, M.IDLE, M.FINISH])
  const a = Agent.birth(spec(wasm))
  assert.ok(a.component !== null)
  assert.is(a.globalsInfo.length, 1)
  assert.ok(a.globalsInfo[0].index < CORE_GLOBAL_STRIDE, 'the memory module is core module 0 here')
  const r = [1, 2, 3, 4, 5, 6].map(() => a.runTick()!)
  assert.equal(r.map((x) => x.result), [0, 1, null, 0, null, null])
  assert.match(r[2].trap!, /unreachable/)
  assert.is(r[4].trap, 'out of fuel (limit 200000 per tick)')
  assert.is(r[4].fuel, 200_000n, 'out of fuel charges the whole limit')
  assert.match(r[5].trap!, /enum|discriminant|tick-result|invalid/i)
  const s = a.checkpointState()
  const mem = new Map(s.pages)
  const page0 = mem.get(0)!
  const dv = new DataView(page0.buffer, page0.byteOffset, 64)
  assert.is(dv.getInt32(0, true), 3, 'three ticks committed (1, 2, 4): failed ticks left no trace')
  assert.is(dv.getInt32(4, true), 3, 'global $g rolled back with memory')
  assert.is(dv.getInt32(40, true), 7, 'init ran at birth')
  const b = Agent.restore(spec(wasm), { tick: a.tick, fuel: a.fuel, pageCount: s.pageCount, pages: s.pages.map(([i, p]) => [i, p.slice()]), globals: s.globals })
  b.budget = a.budget
  assert.is(root(b), root(a), 'restored = original')
  const ra = a.runTick()!; const rb = b.runTick()!
  assert.equal([ra.result, rb.result, ra.fuel], [0, 0, rb.fuel])
  assert.is(root(b), root(a), 'and they tick alike')
  const snap = a.checkpointState()
  const kept = { pageCount: snap.pageCount, pages: snap.pages.map(([i, p]): [number, Uint8Array] => [i, p.slice()]), digests: snap.digests, globals: snap.globals }
  a.hibernate(() => kept)
  assert.ok(a.hibernated, 'instance and memory dropped')
  const rh = a.runTick()!
  assert.not.ok(a.hibernated, 'woken by the tick')
  assert.is(b.runTick()!.fuel, rh.fuel)
  assert.is(root(b), root(a), 'a hibernated component wakes into the same state')
  assert.is(a.runTick()!.result, 2)
})

test('transpile cached by code CID: in memory, then on disk (no second jco run), else transpiled again', async () => {
  const wasm = await scripted([0, 1])
  const dir = mkdtempSync(join(tmpdir(), 'igord-comp-cache-')); dirs.push(dir)
  clearComponentCache()
  const t0 = componentCacheStats.transpiles
  const one = loadComponent(wasm, { memoryLimitPages: 16, cache: { dir } })
  assert.is(componentCacheStats.transpiles, t0 + 1)
  assert.ok(readdirSync(dir).some((n) => n.startsWith(`${one.cid}-jco-`) && n.endsWith('.code')))
  const hits = componentCacheStats.memoryHits
  assert.is(loadComponent(wasm, { memoryLimitPages: 16, cache: { dir } }), one)
  assert.is(componentCacheStats.memoryHits, hits + 1)
  clearComponentCache()
  const disk = componentCacheStats.diskHits
  const two = loadComponent(wasm, { memoryLimitPages: 16, cache: { dir } })
  assert.is(componentCacheStats.diskHits, disk + 1)
  assert.is(componentCacheStats.transpiles, t0 + 1, 'no second transpile')
  assert.is(two.cid, one.cid)
  assert.equal(two.cores.map((c) => c.cid), one.cores.map((c) => c.cid))
})

test('jco resource handle tables: a handle held after a call is seen; liveHandles counts only live slots', async () => {
  const T = 1 << 30
  assert.is(liveHandles([[T, 0]]), 0)
  assert.is(liveHandles([[T, 0, 0, 5 | T, 0, 6]]), 2, 'an own and a borrow')
  assert.is(liveHandles([[1 | T, 0, T, 5 | T]]), 0, 'a freed slot')
  const witr = `package t:r@0.1.0;
interface h { resource thing { constructor(); get: func() -> u32; } make: func() -> thing; }
world w { import h; export init: func(); export tick: func() -> u32; }`
  const core = wat(`(module
  (import "t:r/h@0.1.0" "make" (func $make (result i32)))
  (import "t:r/h@0.1.0" "[method]thing.get" (func $get (param i32) (result i32)))
  (import "t:r/h@0.1.0" "[resource-drop]thing" (func $drop (param i32)))
  (memory (export "memory") 1)
  (global $h (mut i32) (i32.const 0))
  (func (export "init"))
  (func (export "tick") (result i32) (local $r i32)
    (if (i32.eqz (global.get $h)) (then (global.set $h (call $make))) (else (call $drop (global.get $h)) (global.set $h (i32.const 0)) (return (i32.const 0))))
    (call $get (global.get $h))))`)
  const comp = await componentNew(await componentEmbed({ binary: core, witSource: witr, world: 'w', stringEncoding: 'utf8' }), [])
  const code = loadComponent(comp, { memoryLimitPages: 16 })
  class Thing { get (): number { return 7 } }
  const inst = instantiateComponent(code, { 't:r/h': { Thing, make: () => new Thing() } })
  for (const g of inst.fuel) g.value = 1_000_000n
  assert.is(inst.handles(), 0)
  assert.is(inst.tick(), 7)
  assert.is(inst.handles(), 1, 'the guest keeps the handle in a global: it lives on in the glue')
  assert.is(inst.tick(), 0)
  assert.is(inst.handles(), 0, 'dropped')
})

test('instrumenter: a component core module may import its memory (not capped, not given one); a core agent may not', () => {
  const mod = wat(`(module (import "env" "memory" (memory 1)) (global $g (mut i32) (i32.const 0))
    (func (export "f") (result i32) (global.set $g (i32.add (global.get $g) (i32.const 1))) (i32.store (i32.const 0) (global.get $g)) (memory.grow (i32.const 1))))`)
  assert.throws(() => rewrite(mod, { memoryLimitPages: 4 }), /imports its memory \(env\.memory\); agents must define their own memory/)
  const r = rewrite(mod, { memoryLimitPages: 4, importedMemory: true })
  const m = new WebAssembly.Module(r.binary as Uint8Array<ArrayBuffer>)
  assert.equal(WebAssembly.Module.imports(m).map((i) => `${i.module}.${i.name}:${i.kind}`), ['env.memory:memory'])
  assert.equal(WebAssembly.Module.exports(m).filter((e) => e.kind === 'memory').map((e) => e.name), ['__igor_dirty'], 'no memory of its own but the dirty map (unused for components)')
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 2 })
  const inst = new WebAssembly.Instance(m, { env: { memory } })
  ;(inst.exports.__igor_fuel as WebAssembly.Global).value = 1_000_000n
  assert.is((inst.exports.f as () => number)(), 1)
  assert.is(new DataView(memory.buffer).getInt32(0, true), 1, 'writes the shared memory')
  assert.is(new Uint8Array((inst.exports.__igor_dirty as WebAssembly.Memory).buffer)[0], 1, 'the barrier marks the chunk in the map, memory 1')
  assert.is((inst.exports.f as () => number)(), -1, 'the defining side\'s maximum bounds growth')
  assert.ok((inst.exports.__igor_fuel as WebAssembly.Global).value < 1_000_000n, 'metered')
  const shared = wat('(module (import "env" "memory" (memory 1 2 shared)))')
  assert.throws(() => rewrite(shared, { memoryLimitPages: 4, importedMemory: true }), /threads/)
})

test.run()
