import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decode, encode } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import { EventLog, EVENTLOG_VERSION } from '../hostcalls/eventlog.ts'
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

test.run()
