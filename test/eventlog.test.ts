import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decode, encode } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import { DEFAULT_TICK_LIMITS, EventLog, EVENTLOG_VERSION, HostTrap, payloadBytes, SEGMENT_FLUSH_BYTES, SEGMENT_FLUSH_EVENTS, TickLimitTrap } from '../hostcalls/eventlog.ts'
import type { TickRecord } from '../hostcalls/eventlog.ts'

test('a segment round-trips ticks with bigint, bytes and text payloads', () => {
  const log = new EventLog()
  log.beginTick(0)
  log.record('clock_now', 1_700_000_000_123_456_789n)
  log.endTick({ fuel: 1234n, result: null, trap: null })
  log.beginTick(1)
  log.record('rand_bytes', Uint8Array.of(1, 2, 3, 255))
  log.record('log_emit', 'héllo wörld ✓')
  log.record('wallet_balance', 5n)
  log.record('wallet_balance', -7)
  log.endTick({ fuel: 2n ** 40n, result: 1, trap: null })
  const seg = log.takeSegment()
  assert.ok(seg instanceof Uint8Array)
  const back = EventLog.decodeSegment(seg!)
  assert.equal(back, [
    { tick: 0, events: [['clock_now', 1_700_000_000_123_456_789n]], fuel: 1234n, result: null, trap: null },
    {
      tick: 1,
      events: [['rand_bytes', Uint8Array.of(1, 2, 3, 255)], ['log_emit', 'héllo wörld ✓'], ['wallet_balance', 5n], ['wallet_balance', -7n]],
      fuel: 2n ** 40n,
      result: 1,
      trap: null,
    },
  ] satisfies TickRecord[])
  // integers come back as bigint whatever their size; bytes as plain Uint8Array
  assert.is(typeof back[1].events[2][1], 'bigint')
  assert.is((back[1].events[0][1] as Uint8Array).constructor, Uint8Array)
})

test('the segment is canonical CBOR with the documented layout', () => {
  const log = new EventLog()
  log.beginTick(3)
  log.record('clock_now', 9n)
  log.endTick({ fuel: 10n, result: 0, trap: null })
  const seg = log.takeSegment()!
  const doc = decode(seg, 'seg') as Record<string, unknown>
  assert.equal(Object.keys(doc).sort(), ['ticks', 'v'])
  assert.is(doc.v, EVENTLOG_VERSION)
  const t = (doc.ticks as Record<string, unknown>[])[0]
  assert.equal(Object.keys(t).sort(), ['events', 'fuel', 'result', 'tick', 'trap'])
  // decoding and re-encoding reproduces the bytes (canonical)
  assert.equal(new Uint8Array(encode(decode(seg, 'seg'))), new Uint8Array(seg))
})

test('the hand-framed segment is byte for byte the generic canonical encoding, at every head size and sign', () => {
  const generic = (rs: TickRecord[]) => encode({ v: EVENTLOG_VERSION, ticks: rs.map((r) => ({ tick: r.tick, events: r.events, fuel: r.fuel, result: r.result, trap: r.trap })) })
  const ints = [0n, 1n, 23n, 24n, 255n, 256n, 65535n, 65536n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 64n - 1n, -1n, -24n, -25n, -256n, -257n, -(2n ** 32n), -(2n ** 32n) - 1n, -(2n ** 64n) + 1n]
  const texts = ['', 'a', 'x'.repeat(23), 'x'.repeat(24), 'y'.repeat(255), 'y'.repeat(256), 'z'.repeat(65536), 'héllo — 世界 🎉']
  const bytes = [new Uint8Array(0), new Uint8Array(23).fill(7), new Uint8Array(24), new Uint8Array(300).fill(1), Buffer.from('a buffer'), new Uint8Array(70000)]
  const records: TickRecord[] = []
  let k = 0
  for (const v of [...ints, ...texts, ...bytes]) {
    const tick = [0, 23, 24, 255, 256, 70000, 2 ** 32 + 5][k % 7]
    records.push({ tick, events: [['clock_now', v], [texts[k % texts.length] || 'h', 5n]], fuel: ints[k % 12], result: [null, 0, 1, 2, -1, 300][k % 6], trap: k % 3 === 0 ? null : texts[k % texts.length] })
    k++
  }
  records.push({ tick: 9, events: [], fuel: 0n, result: null, trap: 'out of fuel' })
  for (let n = 0; n <= records.length; n += 7) assert.equal(Buffer.compare(Buffer.from(EventLog.encodeSegment(records.slice(0, n))), Buffer.from(generic(records.slice(0, n)))), 0, `first ${n} records`)
  // what the log never records goes through the generic encoder: the same error as before
  assert.throws(() => EventLog.encodeSegment([{ tick: 1, events: [['x', 1.5 as unknown as bigint]], fuel: 0n, result: 0, trap: null }]), /only safe integers|cannot be encoded/)
  assert.throws(() => EventLog.encodeSegment([{ tick: 1, events: [['x', 2n ** 64n]], fuel: 0n, result: 0, trap: null }]), /64-bit/)
  const lone = [{ tick: 1, events: [['x', 'a\ud800b'] as [string, string]], fuel: 0n, result: 0, trap: null }]
  assert.equal(Buffer.compare(Buffer.from(EventLog.encodeSegment(lone)), Buffer.from(generic(lone))), 0, 'a lone surrogate: the generic encoder')
})

test('a tick that traps keeps its events and the trap reason', () => {
  const log = new EventLog()
  log.beginTick(7)
  log.record('log_emit', 'about to fail')
  log.endTick({ fuel: 99n, result: null, trap: 'unreachable' })
  const [r] = EventLog.decodeSegment(log.takeSegment()!)
  assert.equal(r, { tick: 7, events: [['log_emit', 'about to fail']], fuel: 99n, result: null, trap: 'unreachable' })
})

test('takeSegment empties the log; null when there is nothing', () => {
  const log = new EventLog()
  assert.is(log.takeSegment(), null)
  log.beginTick(1)
  log.endTick({ fuel: 0n, result: 0, trap: null })
  assert.is(log.pending.length, 1)
  assert.ok(log.takeSegment() !== null)
  assert.is(log.pending.length, 0)
  assert.is(log.takeSegment(), null)
})

test('an open tick is not taken; it goes into the next segment', () => {
  const log = new EventLog()
  log.beginTick(1)
  log.endTick({ fuel: 1n, result: 0, trap: null })
  log.beginTick(2)
  log.record('clock_now', 5n)
  assert.equal(EventLog.decodeSegment(log.takeSegment()!).map((r) => r.tick), [1])
  assert.is(log.openTick, 2)
  assert.equal(log.currentEvents, [['clock_now', 5n]])
  log.endTick({ fuel: 1n, result: 0, trap: null })
  assert.equal(EventLog.decodeSegment(log.takeSegment()!).map((r) => r.tick), [2])
})

test('recorded bytes are copied: reusing the buffer does not change the record', () => {
  const log = new EventLog()
  const buf = Uint8Array.of(1, 2, 3)
  log.beginTick(1)
  log.record('rand_bytes', buf)
  buf.fill(0)
  log.endTick({ fuel: 0n, result: 0, trap: null })
  assert.equal(log.pending[0].events[0][1], Uint8Array.of(1, 2, 3))
})

test('ticksSince filters by tick number', () => {
  const log = new EventLog()
  for (const t of [1, 2, 3]) { log.beginTick(t); log.endTick({ fuel: 0n, result: 0, trap: null }) }
  assert.equal(log.ticksSince(1).map((r) => r.tick), [2, 3])
})

test('misuse is a clear error: record outside a tick, nested begin, end without begin, floats', () => {
  const log = new EventLog()
  assert.throws(() => log.record('clock_now', 1n), /outside a tick.*beginTick/)
  assert.throws(() => log.endTick({ fuel: 0n, result: 0, trap: null }), /no tick is open/)
  log.beginTick(1)
  assert.throws(() => log.beginTick(2), /tick 1 is still open/)
  assert.throws(() => log.record('x', 1.5), /not an integer/)
  assert.throws(() => new EventLog().beginTick(-1), /bad tick number/)
})

test('decodeSegment refuses malformed segments with a CheckpointError naming the field', () => {
  const bad = (v: unknown, re: RegExp) => {
    try {
      EventLog.decodeSegment(encode(v), 'seg.cbor')
      assert.unreachable('should fail')
    } catch (e) {
      assert.instance(e, CheckpointError)
      assert.match((e as Error).message, /^seg\.cbor: /)
      assert.match((e as Error).message, re)
    }
  }
  const ok = { tick: 1, events: [], fuel: 0, result: 0, trap: null }
  bad([1], /not a CBOR map/)
  bad({ v: 2, ticks: [] }, /unknown event log version 2/)
  bad({ ticks: [] }, /no version field "v"/)
  bad({ v: { x: 1 }, ticks: [] }, /unknown event log version a map/)
  bad({ v: 1, ticks: [], tick: 'x' }, /unknown field "tick" \(a segment has only "v" and "ticks"\)/)
  bad({ v: 1, ticks: {} }, /ticks is not an array/)
  bad({ v: 1, ticks: [{ ...ok, tick: -1 }] }, /ticks\[0\]\.tick/)
  bad({ v: 1, ticks: [{ ...ok, fuel: 'x' }] }, /ticks\[0\]\.fuel/)
  bad({ v: 1, ticks: [{ ...ok, result: 2 ** 31 }] }, /ticks\[0\]\.result/)
  bad({ v: 1, ticks: [{ ...ok, trap: 5 }] }, /ticks\[0\]\.trap/)
  bad({ v: 1, ticks: [ok, { ...ok, events: [['clock_now']] }] }, /ticks\[1\]\.events\[0\]/)
  bad({ v: 1, ticks: [{ ...ok, events: [['x', true]] }] }, /payload/)
  bad({ v: 1, ticks: [{ ...ok, extra: 1 }] }, /unknown field extra/)
  assert.throws(() => EventLog.decodeSegment(Uint8Array.of(0xa1), 'seg.cbor'), (e: unknown) => e instanceof CheckpointError && /truncated/.test((e as Error).message))
})

/** Asserts that `f` throws a TickLimitTrap (a HostTrap) with exactly `message`. */
function trapsWith (f: () => unknown, message: string): void {
  assert.throws(f, (e: unknown) => e instanceof TickLimitTrap && e instanceof HostTrap && (e as Error).message === message)
}

test('per-tick limits: the event that would cross max_events_per_tick throws (nothing recorded); the next tick starts from zero', () => {
  const log = new EventLog({ ...DEFAULT_TICK_LIMITS, events: 3 })
  log.beginTick(1)
  for (let i = 0; i < 3; i++) log.record('clock_now', BigInt(i))
  trapsWith(() => log.record('clock_now', 3n), 'tick limit: 4 events > max_events_per_tick 3')
  trapsWith(() => log.admit('clock_now', 8), 'tick limit: 4 events > max_events_per_tick 3')
  trapsWith(() => log.record('clock_now', 3n), 'tick limit: 4 events > max_events_per_tick 3') // stays crossed
  assert.is(log.currentEvents.length, 3)
  assert.equal(log.usage, { events: 3, logBytes: 0, randomBytes: 0, eventBytes: 24 })
  const rec = log.endTick({ fuel: 9n, result: null, trap: 'tick limit: 4 events > max_events_per_tick 3' })
  assert.is(rec.events.length, 3)
  assert.equal(log.usage, { events: 0, logBytes: 0, randomBytes: 0, eventBytes: 0 })
  log.beginTick(2)
  for (let i = 0; i < 3; i++) log.record('clock_now', BigInt(i))
  assert.is(log.currentEvents.length, 3)
})

test('per-tick limits: log bytes count log_emit and WASI stdout/stderr (UTF-8 bytes); random bytes count rand_bytes, env.seed, WASI random_get', () => {
  const log = new EventLog({ events: 100, logBytes: 10, randomBytes: 16, eventBytes: 1000 })
  log.beginTick(1)
  log.record('log_emit', 'héllo') // 6 bytes
  log.record('wasi.stderr', 'abcd') // 10
  trapsWith(() => log.record('wasi.stdout', 'x'), 'tick limit: 11 log bytes > max_log_bytes_per_tick 10')
  log.record('agent_did', 'did:key:z6Mk') // not log output
  log.record('rand_bytes', new Uint8Array(8))
  log.record('env.seed', new Uint8Array(8))
  trapsWith(() => log.admit('wasi.random_get', 1), 'tick limit: 17 random bytes > max_random_bytes_per_tick 16')
  log.record('agent_sign', new Uint8Array(64)) // not randomness
  assert.equal(log.usage, { events: 6, logBytes: 10, randomBytes: 16, eventBytes: 6 + 4 + 12 + 8 + 8 + 64 })
})

test('per-tick limits: event bytes count every payload (integers as 8) plus inputBytes; admit checks without recording', () => {
  const log = new EventLog({ events: 100, logBytes: 1000, randomBytes: 1000, eventBytes: 200 })
  log.beginTick(1)
  log.admit('agent_sign', 200) // exactly at the limit: fine, and nothing counted
  assert.equal(log.usage.eventBytes, 0)
  log.record('agent_sign', new Uint8Array(64), 100) // 164
  log.record('wallet_balance', 5n) // 172
  trapsWith(() => log.admit('agent_sign', 64 + 1000), 'tick limit: 1236 event bytes > max_event_bytes_per_tick 200')
  trapsWith(() => log.record('migrate_request', 'x'.repeat(29)), 'tick limit: 201 event bytes > max_event_bytes_per_tick 200')
  log.record('migrate_request', 'x'.repeat(28)) // 200
  assert.is(log.currentEvents.length, 3)
  assert.is(payloadBytes('→'), 3)
  assert.is(payloadBytes(1), 8)
  assert.is(payloadBytes(Uint8Array.of(1, 2)), 2)
})

test('per-tick limits: checked in the order events, log, random, event bytes; admit between ticks counts nothing; bad limits refused', () => {
  const log = new EventLog({ events: 1, logBytes: 1, randomBytes: 1, eventBytes: 1 })
  log.admit('log_emit', 1e9) // no tick open
  log.beginTick(1)
  trapsWith(() => log.admit('log_emit', 5), 'tick limit: 5 log bytes > max_log_bytes_per_tick 1')
  trapsWith(() => log.admit('rand_bytes', 5), 'tick limit: 5 random bytes > max_random_bytes_per_tick 1')
  trapsWith(() => log.admit('clock_now', 8), 'tick limit: 8 event bytes > max_event_bytes_per_tick 1')
  log.record('rand_bytes', new Uint8Array(1))
  trapsWith(() => log.admit('log_emit', 5), 'tick limit: 2 events > max_events_per_tick 1')
  const e = (() => { try { log.admit('x', 0) } catch (err) { return err as TickLimitTrap } })()!
  assert.equal([e.field, e.reached, e.limit], ['max_events_per_tick', 2, 1])
  assert.throws(() => new EventLog({ ...DEFAULT_TICK_LIMITS, events: 0 }), /max_events_per_tick must be a positive integer/)
  assert.throws(() => log.setLimits({ ...DEFAULT_TICK_LIMITS, logBytes: 1.5 }), /max_log_bytes_per_tick must be a positive integer/)
  assert.equal(new EventLog().limits, DEFAULT_TICK_LIMITS)
})

test('pending records: counted across closed ticks until takeSegment; segmentFull at SEGMENT_FLUSH_EVENTS events or SEGMENT_FLUSH_BYTES bytes', () => {
  const log = new EventLog()
  let tick = 0
  const fill = (n: number, payload: Uint8Array | bigint) => {
    log.beginTick(++tick)
    for (let i = 0; i < n; i++) log.record('clock_now', payload)
    log.endTick({ fuel: 1n, result: 0, trap: null })
  }
  fill(10_000, 1n)
  assert.is(log.pendingEvents, 10_000)
  assert.is(log.pendingBytes, 80_000)
  assert.not.ok(log.segmentFull)
  for (let i = 1; i < SEGMENT_FLUSH_EVENTS / 10_000; i++) fill(10_000, 1n)
  assert.is(log.pendingEvents, SEGMENT_FLUSH_EVENTS)
  assert.ok(log.segmentFull)
  assert.ok(log.takeSegment() !== null)
  assert.equal([log.pendingEvents, log.pendingBytes, log.segmentFull], [0, 0, false])
  const big = new Uint8Array(1 << 20)
  for (let i = 0; i < SEGMENT_FLUSH_BYTES / (4 << 20); i++) fill(4, big)
  assert.is(log.pendingBytes, SEGMENT_FLUSH_BYTES)
  assert.ok(log.segmentFull)
})

test.run()
