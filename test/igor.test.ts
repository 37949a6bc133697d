import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import { generateKeyPairSync, sign as edSign, verify as edVerify } from 'node:crypto'
import { EXIT, ModuleError } from '../checkpoint/errors.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { DEFAULT_TICK_LIMITS, EventLog, TickLimitTrap } from '../hostcalls/eventlog.ts'
import type { TickLimits } from '../hostcalls/eventlog.ts'
import { Agent } from '../runtime/agent.ts'
import { simulatedInputs } from '../runtime/inputs.ts'
import { checkImports, E_BAD_TARGET, E_BOUNDS, E_TOO_LONG, functionImportTypes, HostTrap, igorImports, IMPORT_SIGNATURES } from '../hostcalls/igor.ts'
import type { HostContext } from '../hostcalls/igor.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import type { Manifest } from '../hostcalls/manifest.ts'

const DID = 'did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp'
const NOW = 1_700_000_000_123_456_789n

/** Assembles WAT text (WebAssembly text format) to bytes with binaryen. */
function watBytes (text: string): Uint8Array<ArrayBuffer> {
  const m = binaryen.parseText(text)
  try {
    return m.emitBinary() as Uint8Array<ArrayBuffer>
  } finally {
    m.dispose()
  }
}

/** Assembles and compiles a module from WAT text. */
function wat (text: string): WebAssembly.Module {
  return new WebAssembly.Module(watBytes(text))
}

const manifest = (caps: string[]): Manifest => parseManifest(new TextEncoder().encode(JSON.stringify({ capabilities: caps })), 'test.manifest.json')

/** A module importing every igor hostcall plus env.abort/env.seed, re-exporting each as `call_<name>`. */
const ALL = wat(`(module
  (import "igor" "clock_now" (func $clock_now (result i64)))
  (import "igor" "rand_bytes" (func $rand_bytes (param i32 i32) (result i32)))
  (import "igor" "log_emit" (func $log_emit (param i32 i32)))
  (import "igor" "wallet_balance" (func $wallet_balance (result i64)))
  (import "igor" "agent_did" (func $agent_did (param i32 i32) (result i32)))
  (import "igor" "agent_sign" (func $agent_sign (param i32 i32 i32) (result i32)))
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (import "env" "seed" (func $seed (result f64)))
  (memory (export "memory") 1 10)
  (func (export "call_clock_now") (result i64) (call $clock_now))
  (func (export "call_rand_bytes") (param i32 i32) (result i32) (call $rand_bytes (local.get 0) (local.get 1)))
  (func (export "call_log_emit") (param i32 i32) (call $log_emit (local.get 0) (local.get 1)))
  (func (export "call_wallet_balance") (result i64) (call $wallet_balance))
  (func (export "call_agent_did") (param i32 i32) (result i32) (call $agent_did (local.get 0) (local.get 1)))
  (func (export "call_agent_sign") (param i32 i32 i32) (result i32) (call $agent_sign (local.get 0) (local.get 1) (local.get 2)))
  (func (export "call_abort") (param i32 i32 i32 i32) (call $abort (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "call_seed") (result f64) (call $seed))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
)`)

interface Harness {
  ex: Record<string, (...a: number[]) => any>
  mem: () => Uint8Array
  log: EventLog
  lines: string[]
  migrations: (string | null)[]
  ctx: HostContext
}

function instantiate (caps: string[], module = ALL, over: Partial<HostContext> = {}): Harness {
  const log = over.log ?? new EventLog()
  if (log.openTick === null) log.beginTick(1)
  const lines: string[] = []
  const migrations: (string | null)[] = []
  const { privateKey } = generateKeyPairSync('ed25519')
  let memory: WebAssembly.Memory | undefined
  const ctx: HostContext = {
    memory: () => memory!,
    did: DID,
    sign: (m) => new Uint8Array(edSign(null, m, privateKey)),
    budget: () => 123_456_789n,
    now: () => NOW,
    randomFill: (b) => { for (let i = 0; i < b.length; i++) b[i] = (i * 7 + 3) & 255 },
    log,
    emit: (l) => { lines.push(l) },
    requestMigration: (t) => { migrations.push(t) },
    ...over,
  }
  const inst = new WebAssembly.Instance(module, igorImports(manifest(caps), ctx))
  memory = inst.exports.memory as WebAssembly.Memory
  return { ex: inst.exports as any, mem: () => new Uint8Array(memory!.buffer), log, lines, migrations, ctx }
}

const ALL_CAPS = ['clock', 'rand', 'log', 'wallet', 'identity']

test('clock_now returns ctx.now() as an i64 and records it', () => {
  const h = instantiate(ALL_CAPS)
  assert.is(h.ex.call_clock_now(), NOW)
  assert.equal(h.log.currentEvents, [['clock_now', NOW]])
})

test('rand_bytes fills guest memory, records the bytes, returns 0', () => {
  const h = instantiate(ALL_CAPS)
  assert.is(h.ex.call_rand_bytes(100, 5), 0)
  assert.equal([...h.mem().subarray(100, 106)], [3, 10, 17, 24, 31, 0])
  assert.equal(h.log.currentEvents, [['rand_bytes', Uint8Array.of(3, 10, 17, 24, 31)]])
})

test('rand_bytes: out of bounds → −4, over 64 MiB → −2, len 0 → 0; nothing recorded or written', () => {
  const h = instantiate(ALL_CAPS)
  assert.is(h.ex.call_rand_bytes(65536 - 4, 5), E_BOUNDS)
  assert.is(h.ex.call_rand_bytes(-1, 1), E_BOUNDS) // pointer 0xffffffff
  assert.is(h.ex.call_rand_bytes(0, 64 * 1024 * 1024 + 1), E_TOO_LONG)
  assert.is(h.ex.call_rand_bytes(0, -1), E_TOO_LONG) // len 0xffffffff
  assert.is(h.ex.call_rand_bytes(10, 0), 0)
  assert.is(h.ex.call_rand_bytes(65536 - 5, 5), 0) // exactly at the end is fine
  assert.is(h.log.currentEvents.length, 1)
})

test('bounds follow memory.grow (the buffer is re-read on every call)', () => {
  const h = instantiate(ALL_CAPS)
  assert.is(h.ex.call_rand_bytes(70000, 4), E_BOUNDS)
  assert.is(h.ex.grow(1), 1)
  assert.is(h.ex.call_rand_bytes(70000, 4), 0)
  assert.equal([...h.mem().subarray(70000, 70004)], [3, 10, 17, 24])
})

test('log_emit decodes UTF-8 (non-ASCII too), emits and records the line', () => {
  const h = instantiate(ALL_CAPS)
  const text = 'héllo → 世界 🎉'
  const b = new TextEncoder().encode(text)
  h.mem().set(b, 200)
  h.ex.call_log_emit(200, b.length)
  assert.equal(h.lines, [text])
  assert.equal(h.log.currentEvents, [['log_emit', text]])
})

test('log_emit: len 0 ignored, over 1 MiB dropped, out of bounds traps with the reason', () => {
  const h = instantiate(ALL_CAPS)
  h.ex.call_log_emit(0, 0)
  h.ex.grow(9) // 10 pages = 640 KiB; a 1 MiB + 1 line is dropped before any bounds check
  h.ex.call_log_emit(0, 1024 * 1024 + 1)
  assert.equal(h.lines, [])
  assert.throws(() => h.ex.call_log_emit(10 * 65536 - 2, 3), (e: unknown) => e instanceof HostTrap && /log_emit: out of bounds \(ptr 655358, len 3, memory 655360 bytes\)/.test((e as Error).message))
  assert.is(h.log.currentEvents.length, 0)
})

test('wallet_balance returns the budget in microcents and records it', () => {
  const h = instantiate(ALL_CAPS)
  assert.is(h.ex.call_wallet_balance(), 123_456_789n)
  assert.equal(h.log.currentEvents, [['wallet_balance', 123_456_789n]])
})

test('agent_did writes the DID and returns its length; a short buffer gets −(needed length)', () => {
  const h = instantiate(ALL_CAPS)
  assert.is(h.ex.call_agent_did(300, 10), -DID.length)
  assert.is(h.mem()[300], 0) // nothing written
  assert.is(h.ex.call_agent_did(300, 100), DID.length)
  assert.is(new TextDecoder().decode(h.mem().subarray(300, 300 + DID.length)), DID)
  assert.is(h.ex.call_agent_did(65536 - 10, 100), E_BOUNDS)
  assert.equal(h.log.currentEvents, [['agent_did', DID], ['agent_did', DID]])
})

test('agent_sign writes a 64-byte Ed25519 signature that verifies with the agent key', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const h = instantiate(ALL_CAPS, ALL, { sign: (m) => new Uint8Array(edSign(null, m, privateKey)) })
  const msg = new TextEncoder().encode('tick 42')
  h.mem().set(msg, 1000)
  assert.is(h.ex.call_agent_sign(1000, msg.length, 2000), 0)
  const sig = h.mem().slice(2000, 2064)
  assert.ok(edVerify(null, msg, publicKey, sig))
  assert.not.ok(edVerify(null, new TextEncoder().encode('tick 43'), publicKey, sig))
  assert.equal(h.log.currentEvents, [['agent_sign', sig]])
  assert.is(h.ex.call_agent_sign(65530, 10, 0), E_BOUNDS)
  assert.is(h.ex.call_agent_sign(0, 10, 65536 - 63), E_BOUNDS)
  assert.is(h.log.currentEvents.length, 1)
})

test('env.abort decodes AssemblyScript strings into the trap message', () => {
  const h = instantiate(ALL_CAPS)
  const putAsString = (ptr: number, s: string) => {
    const dv = new DataView(h.mem().buffer)
    dv.setUint32(ptr - 4, s.length * 2, true)
    for (let i = 0; i < s.length; i++) dv.setUint16(ptr + 2 * i, s.charCodeAt(i), true)
  }
  putAsString(404, 'index out of range ✗')
  putAsString(504, 'agents/x.ts')
  assert.throws(() => h.ex.call_abort(404, 504, 12, 7), (e: unknown) => e instanceof HostTrap && (e as Error).message === 'abort: index out of range ✗ at agents/x.ts:12:7')
  assert.throws(() => h.ex.call_abort(0, 0, 1, 2), /^abort: null at \?:1:2$/)
  assert.throws(() => h.ex.call_abort(70000, 2, 1, 2), /abort: <bad string pointer 70000> at <bad string pointer 2>:1:2/)
  const dv = new DataView(h.mem().buffer)
  dv.setUint32(64996, 1000, true) // claims 1000 bytes that run past the end of memory
  assert.throws(() => h.ex.call_abort(65000, 0, 1, 2), /<bad string pointer 65000>/)
})

test('env.seed (with rand) returns an exact integer from 8 recorded random bytes', () => {
  const h = instantiate(ALL_CAPS)
  const v = h.ex.call_seed()
  assert.ok(Number.isSafeInteger(v) && v >= 0)
  const [[name, bytes]] = h.log.currentEvents
  assert.is(name, 'env.seed')
  assert.equal(bytes, Uint8Array.of(3, 10, 17, 24, 31, 38, 45, 52))
  assert.is(BigInt(v), new DataView((bytes as Uint8Array).buffer).getBigUint64(0, true) >> 11n)
})

test('only granted capabilities are present in the import object', () => {
  const imports = igorImports(manifest(['clock']), instantiate(ALL_CAPS).ctx)
  assert.equal(Object.keys(imports.igor), ['clock_now'])
  assert.equal(Object.keys(imports.env), ['abort'])
  const all = igorImports(manifest(ALL_CAPS), instantiate(ALL_CAPS).ctx)
  assert.equal(Object.keys(all.igor).sort(), ['agent_did', 'agent_sign', 'clock_now', 'log_emit', 'rand_bytes', 'wallet_balance'])
  assert.equal(Object.keys(all.env).sort(), ['abort', 'seed'])
  // a module that imports an ungranted function does not link
  assert.throws(() => instantiate(['clock']), (e: unknown) => e instanceof WebAssembly.LinkError)
})

test('checkImports accepts a module whose imports are all granted', () => {
  checkImports(ALL, manifest(ALL_CAPS), 'all.wasm')
  checkImports(wat('(module (import "env" "abort" (func (param i32 i32 i32 i32))))'), manifest([]), 'abort-only.wasm')
})

test('checkImports lists every offending import with the capability that would grant it', () => {
  try {
    checkImports(ALL, manifest(['log']), 'all.wasm')
    assert.unreachable('should throw')
  } catch (e) {
    assert.instance(e, ModuleError)
    assert.is((e as ModuleError).exitCode, EXIT.MODULE)
    const msg = (e as Error).message
    assert.not.ok(msg.includes('\n'))
    assert.ok(msg.startsWith('all.wasm: imports not granted by the manifest: '), msg)
    for (const part of [
      'igor.clock_now needs capability "clock"', 'igor.rand_bytes needs capability "rand"',
      'igor.wallet_balance needs capability "wallet"', 'igor.agent_did needs capability "identity"',
      'igor.agent_sign needs capability "identity"', 'env.seed needs capability "rand"',
    ]) assert.ok(msg.includes(part), `${msg} should include ${part}`)
    assert.not.ok(msg.includes('log_emit'))
    assert.not.ok(msg.includes('env.abort'))
  }
})

test('checkImports: unknown functions and non-function imports are refused by name', () => {
  const m = wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
    (import "igor" "smtp_send" (func))
    (import "env" "memory" (memory 1))
    (import "env" "g" (global i32))
    (import "env" "t" (table 1 funcref)))`)
  assert.throws(() => checkImports(m, manifest(ALL_CAPS), 'bad.wasm'), (e: unknown) => {
    const msg = (e as Error).message
    return e instanceof ModuleError &&
      msg.includes('wasi_snapshot_preview1.fd_write needs capability "wasi"') &&
      msg.includes('igor.smtp_send: no capability grants it') &&
      msg.includes('env.memory is an imported memory') &&
      msg.includes('env.g is an imported global') &&
      msg.includes('env.t is an imported table')
  })
})

test('checkImports with the bytes also checks each host function\'s signature', () => {
  const bytes = watBytes(`(module
    (import "igor" "clock_now" (func (result i32)))
    (import "igor" "log_emit" (func (param i64 i32)))
    (import "igor" "rand_bytes" (func (param i32 i32) (result i32)))
    (import "env" "abort" (func (param i32 i32 i32 i32))))`)
  const m = new WebAssembly.Module(bytes)
  const man = manifest(['clock', 'log', 'rand'])
  checkImports(m, man, 'sig.wasm') // without the bytes only names are checked
  assert.throws(() => checkImports(m, man, 'sig.wasm', bytes), (e: unknown) =>
    e instanceof ModuleError && (e as Error).message ===
      'sig.wasm: imports not granted by the manifest: igor.clock_now has type () -> i32, expected () -> i64; igor.log_emit has type (i64, i32) -> (), expected (i32, i32) -> ()')
})

test('functionImportTypes reads every function import signature; null for non-wasm', () => {
  const types = functionImportTypes(watBytes(`(module
    (import "env" "memory" (memory 1 2))
    (import "igor" "agent_sign" (func (param i32 i32 i32) (result i32)))
    (import "env" "g" (global (mut i32)))
    (import "env" "t" (table 1 funcref))
    (import "env" "seed" (func (result f64))))`))
  assert.equal(Object.fromEntries(types!), { 'igor.agent_sign': IMPORT_SIGNATURES['igor.agent_sign'], 'env.seed': '() -> f64' })
  assert.is(functionImportTypes(new Uint8Array([1, 2, 3])), null)
  assert.is(functionImportTypes(Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 2, 50)), null) // section runs past the end
  assert.equal(functionImportTypes(Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0))!.size, 0)
})

test('migrate_request: records the target or "cheapest", refuses non-multiaddrs, long and out-of-bounds input', () => {
  const mod = wat(`(module
    (import "igor" "migrate_request" (func $m (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc")
    (data (i32.const 100) "not a multiaddr")
    (func (export "req") (param i32 i32) (result i32) (call $m (local.get 0) (local.get 1))))`)
  assert.throws(() => instantiate(['log'], mod), 'not granted without the migrate capability')
  const h = instantiate(['migrate'], mod)
  assert.is(h.ex.req(16, 39), 0)
  assert.is(h.ex.req(0, 0), 0)
  assert.is(h.ex.req(100, 15), E_BAD_TARGET)
  assert.is(h.ex.req(0, 2000), E_TOO_LONG)
  assert.is(h.ex.req(65530, 100), E_BOUNDS)
  assert.equal(h.migrations, ['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc', null])
  assert.equal(h.log.currentEvents.map((e) => e[1]), ['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc', ''])
})

// ---- per-tick limits (docs/ABI.md "Per-tick limits") ----

/** A harness whose event log enforces `limits` (over the defaults), counting how often the clock and random source are asked. */
function limited (caps: string[], limits: Partial<TickLimits>, module = ALL): Harness & { asked: { now: number; random: number; sign: number } } {
  const asked = { now: 0, random: 0, sign: 0 }
  const { privateKey } = generateKeyPairSync('ed25519')
  const h = instantiate(caps, module, {
    log: new EventLog({ ...DEFAULT_TICK_LIMITS, ...limits }),
    now: () => { asked.now++; return NOW },
    randomFill: (b) => { asked.random++; b.fill(7) },
    sign: (m) => { asked.sign++; return new Uint8Array(edSign(null, m, privateKey)) },
  })
  return Object.assign(h, { asked })
}

/** Calls `f` until it throws; returns the calls that succeeded and the error. */
function flood (f: () => unknown, max = 1_000_000): { ok: number; error: unknown } {
  for (let ok = 0; ok < max; ok++) {
    try { f() } catch (error) { return { ok, error } }
  }
  return assert.unreachable('the flood never trapped') as never
}
const isTrap = (e: unknown, message: string) => e instanceof TickLimitTrap && e instanceof HostTrap && (e as Error).message === message

test('clock_now flood: 10,000 calls per tick by default; the 10,001st traps naming max_events_per_tick before the clock is read', () => {
  const h = limited(ALL_CAPS, {})
  const { ok, error } = flood(() => h.ex.call_clock_now())
  assert.is(ok, 10_000)
  assert.ok(isTrap(error, 'tick limit: 10001 events > max_events_per_tick 10000'), String(error))
  assert.is(h.asked.now, 10_000, 'the refused call did not read the clock (replay, which serves the log, traps at the same call)')
  assert.is(h.log.currentEvents.length, 10_000)
  assert.ok(isTrap((() => { try { h.ex.call_clock_now() } catch (e) { return e } })(), 'tick limit: 10001 events > max_events_per_tick 10000'), 'stays trapped')
})

test('rand_bytes flood: 1 MiB of randomness per tick by default; the request crossing it traps before any byte is drawn', () => {
  const h = limited(ALL_CAPS, {})
  h.ex.grow(1)
  const { ok, error } = flood(() => h.ex.call_rand_bytes(0, 65536))
  assert.is(ok, 16)
  assert.ok(isTrap(error, 'tick limit: 1114112 random bytes > max_random_bytes_per_tick 1048576'), String(error))
  assert.is(h.asked.random, 16)
  // One request larger than the limit (but under rand_bytes' own 64 MiB) traps at once, allocating nothing.
  const one = limited(ALL_CAPS, { randomBytes: 1000 })
  assert.ok(isTrap((() => { try { one.ex.call_rand_bytes(0, 1001) } catch (e) { return e } })(), 'tick limit: 1001 random bytes > max_random_bytes_per_tick 1000'))
  assert.is(one.asked.random, 0)
  assert.is(one.ex.call_rand_bytes(0, 1000), 0, 'exactly the limit is fine')
})

test('env.seed counts as randomness and an event', () => {
  const h = limited(ALL_CAPS, { randomBytes: 20 })
  h.ex.call_seed(); h.ex.call_seed()
  assert.ok(isTrap((() => { try { h.ex.call_seed() } catch (e) { return e } })(), 'tick limit: 24 random bytes > max_random_bytes_per_tick 20'))
  assert.is(h.asked.random, 2)
})

test('log_emit flood: 1 MiB of log output per tick by default; the line crossing it traps and is neither emitted nor recorded', () => {
  const h = limited(ALL_CAPS, {})
  h.mem().fill(0x61, 0, 1024)
  const { ok, error } = flood(() => h.ex.call_log_emit(0, 1024))
  assert.is(ok, 1024)
  assert.ok(isTrap(error, 'tick limit: 1049600 log bytes > max_log_bytes_per_tick 1048576'), String(error))
  assert.is(h.lines.length, 1024)
  assert.is(h.log.currentEvents.length, 1024)
  // Malformed UTF-8 counts as the text it becomes (U+FFFD is 3 bytes): 4 bytes 0xff → 12 log bytes.
  const bad = limited(ALL_CAPS, { logBytes: 11 })
  bad.mem().fill(0xff, 0, 4)
  assert.ok(isTrap((() => { try { bad.ex.call_log_emit(0, 4) } catch (e) { return e } })(), 'tick limit: 12 log bytes > max_log_bytes_per_tick 11'))
  assert.equal(bad.lines, [])
})

test('agent_sign counts its message toward max_event_bytes_per_tick and is refused before hashing it; wallet_balance, agent_did count as events', () => {
  const h = limited(ALL_CAPS, { eventBytes: 2000, events: 4 })
  h.ex.grow(1)
  assert.is(h.ex.call_agent_sign(0, 900, 70000), 0) // 964
  assert.ok(isTrap((() => { try { h.ex.call_agent_sign(0, 1000, 70000) } catch (e) { return e } })(), 'tick limit: 2028 event bytes > max_event_bytes_per_tick 2000'))
  assert.is(h.asked.sign, 1, 'the second message was not signed')
  h.ex.call_wallet_balance() // 2 events
  assert.ok(h.ex.call_agent_did(100, 100) > 0) // 3
  assert.is(h.ex.call_agent_sign(0, 10, 70000), 0) // 4
  assert.ok(isTrap((() => { try { h.ex.call_wallet_balance() } catch (e) { return e } })(), 'tick limit: 5 events > max_events_per_tick 4'))
})

test('migrate_request flood: each request is an event; the limit traps the tick', () => {
  const M = wat(`(module
    (import "igor" "migrate_request" (func $m (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "call_migrate_request") (param i32 i32) (result i32) (call $m (local.get 0) (local.get 1))))`)
  const h = limited(['migrate'], { events: 50 }, M)
  const { ok, error } = flood(() => h.ex.call_migrate_request(0, 0))
  assert.is(ok, 50)
  assert.ok(isTrap(error, 'tick limit: 51 events > max_events_per_tick 50'))
  assert.is(h.migrations.length, 50)
})

test('Agent: the manifest lowers the per-tick limits; a tick crossing one traps, is rolled back, counted as a failure, and recorded with the limit as its trap', () => {
  const wasm = watBytes(`(module
    (import "igor" "clock_now" (func $now (result i64)))
    (memory (export "memory") 1)
    (func (export "agent_tick") (result i32) (local $i i32)
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (loop $l
        (drop (call $now))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.load (i32.const 8)))))
      (i32.const 0))
    (func (export "agent_init") (i32.store (i32.const 8) (i32.const 5))))`)
  const doc = { capabilities: ['clock'], resource_limits: { max_events_per_tick: 5 } }
  const m = parseManifest(new TextEncoder().encode(JSON.stringify(doc)), 'flood.manifest.json')
  const agent = Agent.birth({ wasm, manifest: m, identity: generateIdentity(), budget: 1_000_000_000n, price: 1n, inputs: simulatedInputs('limits'), emit: () => {} })
  assert.equal(agent.log.limits, { ...DEFAULT_TICK_LIMITS, events: 5 })
  const ok = agent.runTick()!
  assert.equal([ok.trap, ok.result], [null, 0], '5 clock reads: at the limit, fine')
  // Make the agent read the clock 6 times per tick: it now crosses the limit every tick.
  const agent2 = Agent.birth({ wasm: watBytes(`(module
    (import "igor" "clock_now" (func $now (result i64)))
    (memory (export "memory") 1)
    (func (export "agent_tick") (result i32) (local $i i32)
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (loop $l (drop (call $now)) (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 6))))
      (i32.const 0)))`), manifest: m, identity: generateIdentity(), budget: 1_000_000_000n, price: 1n, inputs: simulatedInputs('limits'), emit: () => {} })
  for (let k = 1; k <= 2; k++) {
    const r = agent2.runTick()!
    assert.is(r.trap, 'tick limit: 6 events > max_events_per_tick 5')
    assert.is(r.result, null)
    assert.is(r.changedPages, 0, 'rolled back')
    assert.is(agent2.failures, k)
    assert.ok(r.fuel > 0n, 'the fuel burned is charged')
  }
  const recs = agent2.log.pending.filter((x) => x.tick > 0)
  assert.equal(recs.map((x) => [x.events.length, x.trap]), [[5, 'tick limit: 6 events > max_events_per_tick 5'], [5, 'tick limit: 6 events > max_events_per_tick 5']])
})

test.run()
