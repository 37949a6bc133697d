/**
 * Tests of runtime/features.ts (the feature gate, DESIGN §5.4) and of what it lets through: every
 * refusal is one line naming the feature and where (segment, item, export, function); what it
 * accepts runs with the same results as the original; non-module inputs (empty, text, a component,
 * another magic) are named as such; the ABI exports' signatures are checked at load; and a mutable
 * v128 global is snapshotted, restored, rolled back and replayed like any other global.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { ModuleError } from '../checkpoint/errors.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { formatReport, verifyHistory } from '../checkpoint/history.ts'
import { readLive } from '../checkpoint/live.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { Agent } from '../runtime/agent.ts'
import { checkHeader, MAX_NESTING_DEPTH, scanModule, thrownMessage } from '../runtime/features.ts'
import { simulatedInputs } from '../runtime/inputs.ts'
import { clearInstrumentCache, FUEL_GLOBAL, instrument } from '../runtime/instrument.ts'
import { formatReplay, replayHistory } from '../runtime/replay.ts'
import { runLoop } from '../runtime/runner.ts'
import { resumeAgent, startAgent } from '../runtime/session.ts'
import type { HostSettings } from '../runtime/session.ts'
import { expectedV, v128Agent } from './v128-agent.ts'

const F = binaryen.Features
const BASE = F.MutableGlobals | F.SignExt | F.NontrappingFPToInt | F.BulkMemory | F.BulkMemoryOpt | F.Multivalue | F.SIMD128

/** Assembles WAT with binaryen (igord's allowed features). */
function wat (text: string): Uint8Array {
  const m = binaryen.parseText(text)
  try {
    m.setFeatures(BASE)
    assert.ok(m.validate(), 'test module must validate')
    return m.emitBinary()
  } finally { m.dispose() }
}

// --- hand-written binaries (WebAssembly spec §5) ---------------------------------------------
const leb = (n: number): number[] => { const o: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n !== 0) b |= 0x80; o.push(b) } while (n !== 0); return o }
const section = (id: number, body: number[]): number[] => [id, ...leb(body.length), ...body]
const name = (s: string): number[] => [...leb(s.length), ...new TextEncoder().encode(s)]
const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]
const END = 0x0b

/**
 * Type 0 `() -> i32`; function 0 returns 7, function 1 `f` returns `call_indirect` of table slot 0;
 * a funcref table of 2; memory 1; an immutable i32 global 0 = 1; `agent_tick` is `f`. The element
 * and data sections are the caller's.
 */
function tableModule (o: { elem?: number[]; data?: number[]; globalInit?: number[]; custom?: number[] } = {}): Uint8Array {
  return Uint8Array.from([...HEADER,
    ...section(1, [1, 0x60, 0, 1, 0x7f]),
    ...section(3, [2, 0, 0]),
    ...section(4, [1, 0x70, 0, 2]),
    ...section(5, [1, 0, 1]),
    ...section(6, [1, 0x7f, 0, ...(o.globalInit ?? [0x41, 1]), END]),
    ...section(7, [2, ...name('agent_tick'), 0, 1, ...name('f'), 0, 1]),
    ...(o.elem === undefined ? [] : section(9, o.elem)),
    ...(o.data === undefined ? [] : section(12, [o.data[0]])),
    ...section(10, [2, 4, 0, 0x41, 7, END, 7, 0, 0x41, 0, 0x11, 0, 0, END]),
    ...(o.data === undefined ? [] : section(11, o.data)),
    ...(o.custom ?? []),
  ])
}

/** Instruments with the file name `gate.wasm`; returns the ModuleError's message or null. */
function refusal (bin: Uint8Array): string | null {
  try {
    instrument(bin, { memoryLimitPages: 4, file: 'gate.wasm' })
    return null
  } catch (e) {
    assert.instance(e, ModuleError)
    return (e as Error).message
  }
}

/** Asserts a one-line ModuleError `gate.wasm: …` matching every pattern. */
function refused (bin: Uint8Array, ...patterns: RegExp[]): void {
  assert.ok(WebAssembly.validate(bin as Uint8Array<ArrayBuffer>), 'V8 accepts the test module: the refusal is the gate\'s')
  const msg = refusal(bin)
  assert.ok(msg !== null, 'refused')
  assert.match(msg!, /^gate\.wasm: /)
  assert.not.match(msg!, /\n|\[object Object\]|binaryen/)
  for (const p of patterns) assert.match(msg!, p)
}

type Exports = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any
/** Calls `fn` on a fresh instance; returns its result or `trap`. */
function call (bin: Uint8Array, fn: string): unknown {
  const ex = new WebAssembly.Instance(new WebAssembly.Module(bin as Uint8Array<ArrayBuffer>), {}).exports as Exports
  if (ex[FUEL_GLOBAL] !== undefined) ex[FUEL_GLOBAL].value = 10n ** 12n
  try { return ex[fn]() } catch (e) { return e instanceof WebAssembly.RuntimeError ? 'trap' : e }
}

/** Instruments `bin` (must be accepted) and checks `f` gives the original's result. */
function acceptedAndSame (bin: Uint8Array, expect: unknown): void {
  assert.ok(WebAssembly.validate(bin as Uint8Array<ArrayBuffer>))
  clearInstrumentCache()
  const out = instrument(bin, { memoryLimitPages: 4, file: 'gate.wasm' })
  assert.is(call(bin, 'f'), expect, 'original')
  assert.is(call(out.binary, 'f'), expect, 'instrumented')
}

// --- element segments: all eight kinds -------------------------------------------------------
const OFFSET0 = [0x41, 0, END]
const REF_FUNC0 = [0xd2, 0, END]
const REF_NULL = [0xd0, 0x70, END]

test('active element segments of functions (kinds 0, 2, 4, 6) are accepted and fill the table as in V8', () => {
  acceptedAndSame(tableModule({ elem: [1, 0, ...OFFSET0, 1, 0] }), 7)
  acceptedAndSame(tableModule({ elem: [1, 2, 0, ...OFFSET0, 0x00, 1, 0] }), 7)
  acceptedAndSame(tableModule({ elem: [1, 4, ...OFFSET0, 1, ...REF_FUNC0] }), 7)
  acceptedAndSame(tableModule({ elem: [1, 6, 0, ...OFFSET0, 0x70, 1, ...REF_FUNC0] }), 7)
  acceptedAndSame(tableModule({ elem: [1, 6, 0, ...OFFSET0, 0x63, 0x70, 1, ...REF_FUNC0] }), 7) // (ref null func) = funcref
  acceptedAndSame(tableModule({ elem: [1, 0, 0x41, 1, END, 1, 0] }), 'trap') // fills slot 1; slot 0 stays null
})

test('declarative element segments (kinds 3, 7) are accepted: they only declare functions for ref.func', () => {
  acceptedAndSame(tableModule({ elem: [1, 3, 0x00, 1, 0] }), 'trap')
  acceptedAndSame(tableModule({ elem: [1, 7, 0x70, 1, ...REF_FUNC0] }), 'trap')
  acceptedAndSame(tableModule({ elem: [2, 3, 0x00, 1, 0, 0, ...OFFSET0, 1, 0] }), 7)
  refused(tableModule({ elem: [1, 7, 0x6f, 1, 0xd0, 0x6f, END] }), /reference types \(element segment 0 has an element type other than funcref\)/)
})

test('passive element segments (kinds 1, 5) are refused, naming the segment', () => {
  refused(tableModule({ elem: [1, 1, 0x00, 1, 0] }), /uses a passive element segment \(element segment 0; only table\.init/, /which igord does not allow$/)
  refused(tableModule({ elem: [2, 0, ...OFFSET0, 1, 0, 5, 0x70, 1, ...REF_FUNC0] }), /passive element segment \(element segment 1;/)
})

test('null elements are refused, naming segment and item', () => {
  refused(tableModule({ elem: [1, 4, ...OFFSET0, 2, ...REF_FUNC0, ...REF_NULL] }), /reference types \(a null element: item 1 of element segment 0 is ref\.null/)
  refused(tableModule({ elem: [1, 6, 0, ...OFFSET0, 0x70, 1, ...REF_NULL] }), /null element: item 0 of element segment 0/)
  refused(tableModule({ elem: [1, 4, ...OFFSET0, 1, 0xd0, 0x73, END] }), /null element: item 0 of element segment 0/) // ref.null nofunc
  refused(tableModule({ elem: [1, 6, 0, ...OFFSET0, 0x64, 0x70, 1, ...REF_FUNC0] }), /element segment 0 has an element type other than funcref/) // (ref func)
})

test('extended constant expressions and GC-style global reads are refused in data and element offsets and global initializers', () => {
  const add = [0x41, 8, 0x41, 8, 0x6a]
  refused(tableModule({ data: [1, 0, ...add, END, 1, 9] }), /uses extended constant expressions \(i32\.add\) in the offset of data segment 0, which igord does not allow$/)
  refused(tableModule({ data: [2, 1, 1, 9, 2, 0, ...add, END, 1, 9] }), /extended constant expressions \(i32\.add\) in the offset of data segment 1/)
  refused(tableModule({ elem: [1, 0, 0x41, 0, 0x41, 1, 0x6b, END, 1, 0] }), /extended constant expressions \(i32\.sub\) in the offset of element segment 0/)
  refused(tableModule({ globalInit: [0x41, 2, 0x41, 3, 0x6c] }), /extended constant expressions \(i32\.mul\) in the initializer of global 0/)
  refused(tableModule({ data: [1, 0, 0x23, 0, END, 1, 9] }), /GC-proposal constant expression \(global\.get of module-defined global 0;.*\) in the offset of data segment 0/)
  // An imported global may be read, as in the MVP.
  const imported = Uint8Array.from([...HEADER, ...section(2, [1, ...name('env'), ...name('base'), 3, 0x7f, 0]),
    ...section(5, [1, 0, 1]), ...section(11, [1, 0, 0x23, 0, END, 1, 9])])
  assert.is(refusal(imported), null)
})

test('data.drop in a module without memory is accepted and runs (binaryen keeps the passive segment)', () => {
  const bin = wat(`(module (data $d "abc")
    (func (export "f") (result i32) (data.drop $d) (i32.const 5))
    (func (export "agent_tick") (result i32) (i32.const 0)))`)
  assert.is(scanModule(bin).memories.length, 0, 'the test module has no memory')
  acceptedAndSame(bin, 5)
  const out = instrument(bin, { memoryLimitPages: 3, file: 'gate.wasm' })
  const facts = scanModule(out.binary)
  assert.equal(facts.memories, [{ flags: 1, initial: 0, maximum: 3 }, { flags: 1, initial: 16, maximum: 16 }], 'memory 0, then the dirty map')
  assert.ok(facts.exports.some((x) => x.name === 'memory' && x.kind === 2), 'the new memory is exported')
})

test('a malformed custom section that binaryen parses is dropped instead of failing the module', () => {
  for (const n of ['name', 'target_features', 'metadata.code.branch_hint', 'dylink.0']) {
    const bin = tableModule({ elem: [1, 0, ...OFFSET0, 1, 0], custom: section(0, [...name(n), 0xff, 0xff, 0xff]) })
    acceptedAndSame(bin, 7)
  }
})

test('every other rejected feature is one line without "[object Object]" (no binaryen exception leaks)', () => {
  const cases = [
    tableModule({ elem: [1, 5, 0x70, 1, ...REF_NULL] }),
    tableModule({ elem: [1, 4, ...OFFSET0, 1, ...REF_NULL], custom: section(0, [...name('name'), 0xff]) }),
  ]
  for (const bin of cases) refused(bin, /which igord does not allow$/)
})

test('thrownMessage renders anything binaryen.js throws as text, never "[object Object]"', () => {
  assert.is(thrownMessage(new TypeError('x is not a function\nstack')), 'x is not a function')
  assert.is(thrownMessage({ gC: 5565880, message: 'error in parsing wasm binary' }), 'error in parsing wasm binary') // a C++ exception
  assert.is(thrownMessage({ code: 3 }), '{"code":3}')
  const cyclic: Record<string, unknown> = {}; cyclic.self = cyclic
  assert.is(thrownMessage(cyclic), 'an exception of type Object without a message')
  assert.is(thrownMessage(Object.create(null)), 'an exception of type object without a message')
  assert.is(thrownMessage(5565880), 'a native exception (5565880)')
  assert.is(thrownMessage('abort'), 'abort')
})

/** `agent_tick` returning 0 from inside `depth` nested blocks. */
function nested (depth: number): Uint8Array {
  const body = [0, ...Array(depth).fill([0x02, 0x40]).flat(), ...Array(depth).fill(END), 0x41, 0, END]
  return Uint8Array.from([...HEADER, ...section(1, [1, 0x60, 0, 1, 0x7f]), ...section(3, [1, 0]),
    ...section(7, [2, ...name('agent_tick'), 0, 0, ...name('f'), 0, 0]),
    ...section(10, [1, ...leb(body.length), ...body])])
}

test('expression nesting is limited to MAX_NESTING_DEPTH, named with the function, the same on every thread', () => {
  assert.is(MAX_NESTING_DEPTH, 1000)
  acceptedAndSame(nested(MAX_NESTING_DEPTH - 10), 0)
  refused(nested(MAX_NESTING_DEPTH + 10), /^gate\.wasm: nests expressions more than 1000 deep in function 0, which igord does not allow$/)
  refused(nested(20_000), /nests expressions more than 1000 deep/)
})

// --- inputs that are not core modules --------------------------------------------------------
test('non-module inputs are named: empty, text, a component, another magic, another version, truncated', () => {
  const check = (bytes: Uint8Array | string, re: RegExp): void => {
    const b = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes
    assert.throws(() => checkHeader(b, 'in.wasm'), (e: Error) => e instanceof ModuleError && re.test(e.message) && !e.message.includes('\n'))
    assert.throws(() => instrument(b, { memoryLimitPages: 1, file: 'in.wasm' }), (e: Error) => e instanceof ModuleError && re.test(e.message))
  }
  check(new Uint8Array(0), /^in\.wasm: not a valid WebAssembly module \(the file is empty\)$/)
  check('(module (func))', /^in\.wasm: not a valid WebAssembly module \(it is WebAssembly text format; assemble it/)
  check('\uFEFF  ;; comment\n(module)', /WebAssembly text format/)
  check('(component)', /WebAssembly text format/)
  check(Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0x00]), /^in\.wasm: is a WebAssembly component \(component model, layer 1\), not a core module; igord runs core WebAssembly modules only/)
  check('{"capabilities": ["clock", "log"], "resource_limits": {"max_memory_bytes": 65536}}\n', /^in\.wasm: not a valid WebAssembly module \(it is a text file, starting "\{\\"capabilities\\": .{20,40}…"; a WebAssembly binary starts with 00 61 73 6d/)
  check(Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), /^in\.wasm: not a valid WebAssembly module \(it starts with bytes 7f 45 4c 46; a WebAssembly binary starts with 00 61 73 6d/)
  check(Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00]), /binary version 2; igord reads core modules of version 1/)
  check(Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01]), /truncated: 5 bytes, shorter than the 8-byte header/)
  checkHeader(Uint8Array.from(HEADER), 'ok.wasm') // a core header passes
})

// --- ABI export signatures -------------------------------------------------------------------
const MANIFEST = parseManifest(new TextEncoder().encode(JSON.stringify({ capabilities: [] })), 'm.json')
const spec = (wasm: Uint8Array) => ({ wasm, manifest: MANIFEST, identity: generateIdentity(), budget: 10n ** 12n, price: 1000n, inputs: simulatedInputs('features'), emit: () => {}, file: 'gate.wasm' })

test('agent_tick, agent_init and _initialize with a wrong signature are refused at load, naming got and expected', () => {
  const cases: Array<[string, RegExp]> = [
    ['(func (export "agent_tick") (param i32) (result i32) (i32.const 0))', /^gate\.wasm: exports agent_tick with signature \(i32\) -> i32; the igor ABI needs agent_tick: \(\) -> i32$/],
    ['(func (export "agent_tick") (result i64) (i64.const 0))', /exports agent_tick with signature \(\) -> i64; the igor ABI needs agent_tick: \(\) -> i32$/],
    ['(func (export "agent_tick"))', /exports agent_tick with signature \(\) -> \(\); the igor ABI needs agent_tick: \(\) -> i32$/],
    ['(func (export "agent_tick") (result i32 i32) (i32.const 0) (i32.const 0))', /signature \(\) -> \(i32, i32\)/],
    ['(global (export "agent_tick") i32 (i32.const 0))', /^gate\.wasm: exports agent_tick as a global; the igor ABI needs agent_tick to be a function \(\) -> i32$/],
    ['(func (export "agent_tick") (result i32) (i32.const 0)) (func (export "agent_init") (result i32) (i32.const 1))', /exports agent_init with signature \(\) -> i32; the igor ABI needs agent_init: \(\) -> \(\)$/],
    ['(func (export "agent_tick") (result i32) (i32.const 0)) (func (export "_initialize") (param f64))', /exports _initialize with signature \(f64\) -> \(\); the igor ABI needs _initialize: \(\) -> \(\)$/],
  ]
  for (const [body, re] of cases) {
    const bin = wat(`(module (memory 1) ${body})`)
    assert.throws(() => instrument(bin, { memoryLimitPages: 4, file: 'gate.wasm' }), (e: Error) => e instanceof ModuleError && re.test(e.message), body)
    assert.throws(() => Agent.birth(spec(bin)), (e: Error) => e instanceof ModuleError && re.test(e.message), body)
  }
  // The right signatures load; a module without the ABI exports is still instrumentable (igord instrument).
  Agent.birth(spec(wat('(module (memory 1) (func (export "agent_tick") (result i32) (i32.const 0)) (func (export "agent_init")) (func (export "_initialize")))')))
  instrument(wat('(module (func (export "g") (param i32) (result i64) (i64.const 0)))'), { memoryLimitPages: 1 })
})

// --- mutable v128 globals --------------------------------------------------------------------
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

test('a mutable v128 global gets unmetered accessors that round-trip all 128 bits', () => {
  clearInstrumentCache()
  const out = instrument(v128Agent(), { memoryLimitPages: 1, file: 'v.wasm' })
  assert.equal(out.globals.map((g) => [g.index, g.type, g.accessors?.get, g.accessors?.set]),
    [[0, 'v128', '__igor_v128_get_0', '__igor_v128_set_0'], [1, 'i32', undefined, undefined]])
  const ex = new WebAssembly.Instance(new WebAssembly.Module(out.binary as Uint8Array<ArrayBuffer>), {}).exports as Exports
  assert.equal(ex.__igor_v128_get_0(), [0x0123456789abcdefn, -2n])
  ex[FUEL_GLOBAL].value = -5n // a counter below zero (after an out-of-fuel trap) must not stop them
  ex.__igor_v128_set_0(-1n, 0x7fffffffffffffffn)
  assert.equal(ex.__igor_v128_get_0(), [-1n, 0x7fffffffffffffffn])
  assert.is(ex[FUEL_GLOBAL].value, -5n, 'no fuel charged')
})

test('a v128 global is committed per tick and rolled back by a trapping tick', () => {
  const a = Agent.birth(spec(v128Agent(3)))
  for (let t = 1; t <= 2; t++) assert.is(a.runTick()!.result, 0)
  const before = a.checkpointState().globals
  assert.is(hex(before[0].bytes), hex(expectedV(2)))
  const r = a.runTick()!
  assert.match(r.trap!, /unreachable/)
  const after = a.checkpointState().globals
  assert.equal(after.map((g) => hex(g.bytes)), before.map((g) => hex(g.bytes)), 'the failed tick left no trace in the committed globals')
  // …nor in the live instance: its v128 was written back through the accessor.
  const live = (a as unknown as { globals: [{ get (): [bigint, bigint] }] }).globals[0].get()
  const bytes = new Uint8Array(16); new DataView(bytes.buffer).setBigInt64(0, live[0], true); new DataView(bytes.buffer).setBigInt64(8, live[1], true)
  assert.is(hex(bytes), hex(expectedV(2)))
})

test('a v128 agent checkpointed and resumed in a new instance elsewhere continues identically; verify and replay agree', async () => {
  const dirs: string[] = []
  const tmp = (): string => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-features-')); dirs.push(d); return d }
  const settings = (dir: string): HostSettings => ({ dir, price: 1000n, simSeed: 'v128', emit: () => {} })
  const manifest = new TextEncoder().encode(JSON.stringify({ capabilities: [] }))
  const loop = (ticks: number) => ({ intervalMs: 0, maxTicks: ticks, checkpointEveryMs: 0 })
  try {
    const wasm = v128Agent()
    const born = (dir: string) => startAgent(settings(dir), { name: 'v', wasm, wasmFile: 'v.wasm', manifest, manifestFile: 'v.manifest.json', budget: 10n ** 12n })
    // One uninterrupted life of 9 ticks, and one of 4 ticks resumed from a copy of its .ckpt elsewhere for 5 more.
    const whole = tmp(); const s1 = born(whole); await runLoop(s1.agent, s1.lineage, loop(9))
    const first = tmp(); const s2 = born(first); await runLoop(s2.agent, s2.lineage, loop(4))
    const live4 = readLive(s2.ckptPath)
    assert.equal(live4.globals.map((g) => [g.index, g.type, g.bytes.length]), [[0, 'v128', 16], [1, 'i32', 4]])
    assert.is(hex(live4.globals[0].bytes), hex(expectedV(4)), 'the checkpoint holds the v128 value after tick 4')
    const second = tmp()
    fs.copyFileSync(s2.ckptPath, path.join(second, 'v.ckpt'))
    const s3 = resumeAgent(settings(second), path.join(second, 'v.ckpt'))
    await runLoop(s3.agent, s3.lineage, loop(5))
    const a = readLive(s1.ckptPath); const b = readLive(s3.ckptPath)
    assert.is(a.parsed.tick, 9); assert.is(b.parsed.tick, 9)
    assert.is(hex(b.globals[0].bytes), hex(expectedV(9)))
    assert.equal(b.globals.map((g) => hex(g.bytes)), a.globals.map((g) => hex(g.bytes)), 'same globals as the uninterrupted life')
    assert.equal(b.pages.map(([i, p]) => [i, hex(p)]), a.pages.map(([i, p]) => [i, hex(p)]), 'same memory')
    assert.is(hex(b.pages[0][1].subarray(16, 32)), hex(expectedV(9)), 'the agent itself saw the restored value')
    assert.is(hex(b.parsed.state), hex(a.parsed.state), 'same state root')
    const v = verifyHistory([first, second])
    assert.ok(v.valid, formatReport(v))
    const r = replayHistory([first, second])
    assert.ok(r.valid, formatReplay(r, formatReport))
    assert.is(r.ticks, 10)
  } finally {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
  }
})

test.run()
