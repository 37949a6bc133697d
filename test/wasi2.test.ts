/**
 * Unit tests of hostcalls/wasi2.ts — igord's WASI 0.2 imports for component agents: the load check
 * (served functions pass, anything else is refused naming the import, WASI needs the `wasi`
 * capability, only 0.2.x), the import object's shape against jco's naming (every served WIT
 * function is present under its camelCase name, resources are classes), what each interface
 * answers, what is recorded and that recorded values fed back give the same answers (replay), the
 * per-tick limits, and exit.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ModuleError } from '../checkpoint/errors.ts'
import { DEFAULT_TICK_LIMITS, EventLog, RANDOM_EVENTS, TickLimitTrap } from '../hostcalls/eventlog.ts'
import type { Event, TickLimits } from '../hostcalls/eventlog.ts'
import type { HostContext } from '../hostcalls/igor.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import type { Manifest } from '../hostcalls/manifest.ts'
import { WasiExit } from '../hostcalls/wasi.ts'
import { WASI2_EVENTS, WASI2_FUNCTIONS, checkWasi2Imports, wasi2Host, wasi2Interface } from '../hostcalls/wasi2.ts'
import type { Wasi2Host } from '../hostcalls/wasi2.ts'

const NOW = 1_700_000_000_123_456_789n
const manifest = (caps: string[]): Manifest => parseManifest(new TextEncoder().encode(JSON.stringify({ capabilities: caps })), 'test.manifest.json')

interface Harness { host: Wasi2Host; log: EventLog; lines: string[]; fills: number; imp: (iface: string) => Record<string, any> }

/** A wasi2 host over a fresh event log with tick 1 open; the clock reads NOW + k, random bytes are (i·7+3+fill) & 255. */
function harness (over: Partial<HostContext> = {}, limits: Partial<TickLimits> = {}, caps = ['wasi']): Harness {
  const log = new EventLog({ ...DEFAULT_TICK_LIMITS, ...limits })
  log.beginTick(1)
  const h = { log, lines: [] as string[], fills: 0 } as Harness
  let k = 0n
  const ctx = {
    memory: () => { throw new Error('wasi2 must not read memory') },
    did: 'did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp',
    sign: () => new Uint8Array(64),
    budget: () => 1n,
    now: () => NOW + k++,
    randomFill: (b: Uint8Array) => { const f = h.fills++; for (let i = 0; i < b.length; i++) b[i] = (i * 7 + 3 + f) & 255 },
    log,
    emit: (l: string) => { h.lines.push(l) },
    requestMigration: () => {},
    ...over,
  } as HostContext
  h.host = wasi2Host(manifest(caps), ctx)
  h.imp = (iface) => h.host.imports[iface] as Record<string, any>
  return h
}
const events = (h: Harness): Event[] => [...h.log.currentEvents]
const utf8 = (s: string) => new TextEncoder().encode(s)
/** What jco calls a WIT name in JS: `get-random-bytes` → `getRandomBytes`, `output-stream` → `OutputStream`. */
const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
const pascal = (s: string) => camel(s).replace(/^[a-z]/, (c) => c.toUpperCase())
const jcoResource = (r: string) => r === 'error' ? 'Error' : pascal(r)
/** Asserts `f` throws jco's result-error shape `{ payload }` with this payload. */
function throwsPayload (f: () => unknown, payload: unknown): void {
  try { f() } catch (e) {
    assert.ok(!(e instanceof Error), `threw an Error (a trap), not a result error: ${String(e)}`)
    assert.equal((e as { payload: unknown }).payload, payload)
    return
  }
  assert.unreachable('did not throw')
}

test('every served WIT function is in the import object under jco\'s name; resources are classes with their methods', () => {
  const h = harness()
  assert.equal(Object.keys(h.host.imports).sort(), Object.keys(WASI2_FUNCTIONS).sort())
  let n = 0
  for (const [iface, fns] of Object.entries(WASI2_FUNCTIONS)) {
    for (const name of fns) {
      n++
      const m = /^\[(method|resource-drop)\]([a-z-]+)(?:\.([a-z-]+))?$/.exec(name)
      if (m === null) {
        assert.type(h.imp(iface)[camel(name)], 'function', `${iface}.${name}`)
        continue
      }
      const cls = h.imp(iface)[jcoResource(m[2])]
      assert.type(cls, 'function', `${iface}: class for ${m[2]}`)
      if (m[1] === 'method') assert.type(cls.prototype[camel(m[3])], 'function', `${iface}.${name}`)
    }
  }
  assert.ok(n > 70, `${n} functions`)
})

test('without the wasi capability: no imports, and every WASI import is refused naming the capability', () => {
  const h = harness({}, {}, ['clock', 'log'])
  assert.equal(h.host.imports, {})
  assert.throws(() => checkWasi2Imports([{ module: 'wasi:cli/stdout@0.2.12', name: 'get-stdout' }], manifest(['clock', 'log']), 'a.wasm'),
    (e: unknown) => e instanceof ModuleError && /a\.wasm: imports wasi:cli\/stdout@0\.2\.12\.get-stdout, which needs capability wasi/.test((e as Error).message))
  // igor interfaces and the component's own instances are not this check's business
  checkWasi2Imports([{ module: 'igor:agent/clock@1.0.0', name: 'now' }, { module: '__main_module__', name: 'cabi_realloc' }], manifest(['clock']), 'a.wasm')
})

test('checkWasi2Imports: served functions of any 0.2.x pass; unserved functions, interfaces and versions are refused by name', () => {
  const m = manifest(['wasi'])
  checkWasi2Imports([
    { module: 'wasi:io/streams@0.2.10', name: '[method]output-stream.blocking-flush' },
    { module: 'wasi:io/streams@0.2.12', name: '[resource-drop]input-stream' },
    { module: 'wasi:filesystem/types@0.2.12', name: '[method]descriptor.open-at' },
    { module: 'wasi:filesystem/preopens@0.2.6', name: 'get-directories' },
    { module: 'wasi:random/random', name: 'get-random-u64' },
    { module: 'wasi:cli/exit@0.2.0-rc-2023-12-05', name: 'exit' },
  ], m, 'ok.wasm')
  const refused = (module: string, name: string, re: RegExp): void => {
    assert.throws(() => checkWasi2Imports([{ module: 'wasi:clocks/wall-clock@0.2.12', name: 'now' }, { module, name }], m, 'x.wasm'),
      (e: unknown) => e instanceof ModuleError && re.test((e as Error).message), `${module}.${name}`)
  }
  refused('wasi:sockets/tcp@0.2.12', '[method]tcp-socket.start-connect', /x\.wasm: imports wasi:sockets\/tcp@0\.2\.12\.\[method\]tcp-socket\.start-connect, which igord's WASI 0\.2 does not serve/)
  refused('wasi:http/outgoing-handler@0.2.10', 'handle', /imports wasi:http\/outgoing-handler@0\.2\.10\.handle, which igord's WASI 0\.2 does not serve/)
  refused('wasi:io/streams@0.2.12', '[method]output-stream.teleport', /output-stream\.teleport, which igord's WASI 0\.2 does not serve/)
  refused('wasi:clocks/wall-clock@0.3.0', 'now', /imports wasi:clocks\/wall-clock@0\.3\.0; igord serves WASI 0\.2\.x only/)
  refused('wasi:clocks/wall-clock@1.2.0', 'now', /serves WASI 0\.2\.x only/)
  refused('wasi:Bad Name', 'x', /imports wasi:Bad Name, which is not a WASI interface name igord knows/)
  assert.is(wasi2Interface('wasi:io/poll@0.2.12', 'f'), 'wasi:io/poll')
  assert.is(wasi2Interface('igor:agent/log@1.0.0', 'f'), null)
})

test('clocks: wall and monotonic read the agent clock, each read recorded; resolutions are constants, not recorded', () => {
  const h = harness()
  const wall = h.imp('wasi:clocks/wall-clock')
  const mono = h.imp('wasi:clocks/monotonic-clock')
  assert.equal(wall.now(), { seconds: NOW / 1_000_000_000n, nanoseconds: Number(NOW % 1_000_000_000n) })
  assert.is(mono.now(), NOW + 1n)
  assert.equal(wall.resolution(), { seconds: 0n, nanoseconds: 1000 })
  assert.is(mono.resolution(), 1000n)
  assert.equal(events(h), [[WASI2_EVENTS.wallClock, NOW], [WASI2_EVENTS.monotonicClock, NOW + 1n]])
  // a pollable of either subscription is ready at once: nothing waits inside a tick
  const p = mono.subscribeDuration(5_000_000_000n)
  assert.ok(p instanceof h.imp('wasi:io/poll').Pollable)
  assert.is(p.ready(), true)
  assert.is(p.block(), undefined)
  assert.ok(mono.subscribeInstant(NOW * 2n).ready())
  assert.equal([...h.imp('wasi:io/poll').poll([p, p, mono.subscribeInstant(0n)])], [0, 1, 2])
  assert.is(events(h).length, 2)
})

test('random: bytes and u64s from the agent source, recorded as bytes; len 0 records nothing; over 64 MiB traps; counted as randomness', () => {
  const h = harness()
  const r = h.imp('wasi:random/random')
  const b = r.getRandomBytes(5n)
  assert.equal([...b], [3, 10, 17, 24, 31])
  assert.equal([...r.getRandomBytes(0n)], [])
  const u = r.getRandomU64()
  const ev = events(h)
  assert.equal(ev.map((e) => e[0]), [WASI2_EVENTS.randomBytes, WASI2_EVENTS.randomU64])
  assert.equal(ev[1][1], Uint8Array.from({ length: 8 }, (_, i) => (i * 7 + 3 + 1) & 255))
  assert.is(u, new DataView((ev[1][1] as Uint8Array).buffer).getBigUint64(0, true))
  const [s0, s1] = h.imp('wasi:random/insecure-seed').insecureSeed()
  assert.ok(typeof s0 === 'bigint' && typeof s1 === 'bigint')
  assert.is((events(h)[2][1] as Uint8Array).length, 16)
  h.imp('wasi:random/insecure').getInsecureRandomBytes(3n)
  h.imp('wasi:random/insecure').getInsecureRandomU64()
  for (const e of events(h)) assert.ok(RANDOM_EVENTS.has(e[0]), `${e[0]} counts as randomness`)
  const before = events(h).length
  assert.throws(() => r.getRandomBytes(64n * 1024n * 1024n + 1n), /over the limit of 67108864/)
  assert.is(events(h).length, before)
  // the per-tick randomness limit applies, before anything is taken
  const lim = harness({}, { randomBytes: 16 })
  lim.imp('wasi:random/random').getRandomBytes(16n)
  assert.throws(() => lim.imp('wasi:random/random').getRandomU64(), (e: unknown) => e instanceof TickLimitTrap)
  assert.is(lim.fills, 1)
})

test('recorded values fed back (as replay does) give the same answers and the same events', () => {
  const live = harness()
  const run = (h: Harness): unknown[] => [
    h.imp('wasi:clocks/wall-clock').now(), h.imp('wasi:random/random').getRandomBytes(7n), h.imp('wasi:clocks/monotonic-clock').now(),
    h.imp('wasi:random/random').getRandomU64(), h.imp('wasi:random/insecure-seed').insecureSeed(),
  ]
  const a = run(live)
  const recorded = events(live)
  let i = 0
  const replay = harness({
    now: () => recorded[i++][1] as bigint,
    randomFill: (b: Uint8Array) => { b.set(recorded[i++][1] as Uint8Array) },
  })
  const b = run(replay)
  assert.equal(b, a)
  assert.equal(events(replay), recorded)
})

test('stdout and stderr: bytes become log lines like fd_write (split at \\n, partial lines at flush), recorded as output', () => {
  const h = harness()
  const out = h.imp('wasi:cli/stdout').getStdout()
  const err = h.imp('wasi:cli/stderr').getStderr()
  assert.ok(out instanceof h.imp('wasi:io/streams').OutputStream)
  assert.is(out.checkWrite(), 1024n * 1024n)
  out.write(utf8('hello\nwor'))
  err.blockingWriteAndFlush(utf8('oops\n'))
  out.blockingWriteAndFlush(utf8('ld'))
  out.blockingFlush()
  assert.equal(h.lines, ['hello', 'oops'])
  h.host.flush()
  assert.equal(h.lines, ['hello', 'oops', 'world'])
  assert.equal(events(h), [['wasi.stdout', 'hello'], ['wasi.stderr', 'oops'], ['wasi.stdout', 'world']])
  out.writeZeroes(2n)
  h.host.flush()
  assert.equal(h.lines.at(-1), '\0\0')
  throwsPayload(() => out.writeZeroes(2n ** 40n), { tag: 'last-operation-failed', val: new (h.imp('wasi:io/error').Error)() })
  assert.ok(out.subscribe().ready())
  // the per-tick log limit counts waiting partial lines before buffering more
  const lim = harness({}, { logBytes: 8 })
  const o = lim.imp('wasi:cli/stdout').getStdout()
  o.write(utf8('12345'))
  assert.throws(() => o.write(utf8('6789')), (e: unknown) => e instanceof TickLimitTrap)
})

test('stdin is closed; environment, arguments, cwd, terminals and preopens are empty; no descriptor can exist', () => {
  const h = harness()
  const stdin = h.imp('wasi:cli/stdin').getStdin()
  throwsPayload(() => stdin.read(10n), { tag: 'closed' })
  throwsPayload(() => stdin.blockingRead(10n), { tag: 'closed' })
  throwsPayload(() => stdin.skip(1n), { tag: 'closed' })
  throwsPayload(() => h.imp('wasi:cli/stdout').getStdout().splice(stdin, 4n), { tag: 'closed' })
  assert.ok(stdin.subscribe().ready())
  const env = h.imp('wasi:cli/environment')
  assert.equal(env.getEnvironment(), [])
  assert.equal(env.getArguments(), [])
  assert.is(env.initialCwd(), undefined)
  for (const t of ['stdin', 'stdout', 'stderr']) assert.is(h.imp(`wasi:cli/terminal-${t}`)[camel(`get-terminal-${t}`)](), undefined)
  assert.equal(h.imp('wasi:filesystem/preopens').getDirectories(), [])
  const fs = h.imp('wasi:filesystem/types')
  assert.throws(() => new fs.Descriptor(), /igord has no file system/)
  throwsPayload(() => fs.Descriptor.prototype.openAt.call({}, {}, 'x', {}, {}), 'bad-descriptor')
  throwsPayload(() => fs.Descriptor.prototype.stat.call({}), 'bad-descriptor')
  assert.is(fs.filesystemErrorCode({}), undefined)
  assert.equal(events(h), [])
})

test('exit flushes output, records wasi.proc_exit and throws WasiExit (ok 0, err 1, exit-with-code its code)', () => {
  for (const [call, code] of [[(e: any) => e.exit({ tag: 'ok' }), 0], [(e: any) => e.exit({ tag: 'err' }), 1], [(e: any) => e.exitWithCode(7), 7]] as const) {
    const h = harness()
    h.imp('wasi:cli/stdout').getStdout().write(utf8('bye'))
    assert.throws(() => call(h.imp('wasi:cli/exit')), (e: unknown) => e instanceof WasiExit && e.code === code)
    assert.equal(events(h), [['wasi.stdout', 'bye'], ['wasi.proc_exit', BigInt(code)]])
  }
})

test('resource(kind) makes stateless resources of the import object\'s classes (to rebuild handles on resume)', () => {
  const h = harness()
  const streams = h.imp('wasi:io/streams')
  assert.ok(h.host.resource('stdout') instanceof streams.OutputStream)
  assert.ok(h.host.resource('stderr') instanceof streams.OutputStream)
  assert.ok(h.host.resource('stdin') instanceof streams.InputStream)
  assert.ok(h.host.resource('pollable') instanceof h.imp('wasi:io/poll').Pollable)
  assert.ok(h.host.resource('error') instanceof h.imp('wasi:io/error').Error)
  for (const k of ['stdout', 'stderr', 'stdin', 'pollable', 'error'] as const) assert.is(h.host.resource(k).kind, k)
  assert.is(h.imp('wasi:cli/stderr').getStderr().kind, 'stderr')
  const again = h.host.resource('stderr') as any
  again.write(utf8('via a rebuilt handle\n'))
  assert.equal(events(h), [['wasi.stderr', 'via a rebuilt handle']])
})

test.run()
