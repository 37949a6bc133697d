/**
 * Unit tests of runtime/inputs.ts: simulated inputs are a pure function of (seed, tick, read
 * order); live inputs read the wall clock and the CSPRNG.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { liveInputs, SIM_EPOCH_NS, simulatedInputs } from '../runtime/inputs.ts'
import type { InputSource } from '../runtime/inputs.ts'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

/** What one tick of `src` observes: three clock reads and random bytes of a few sizes. */
function observe (src: InputSource, tick: number): string[] {
  src.beginTick(tick)
  const out: string[] = []
  for (let i = 0; i < 3; i++) out.push(String(src.now()))
  for (const n of [1, 32, 33, 100]) {
    const b = new Uint8Array(n)
    src.randomFill(b)
    out.push(hex(b))
  }
  return out
}

test('simulatedInputs is deterministic per (seed, tick), whatever ran before', () => {
  const a = simulatedInputs('seed-1'); const b = simulatedInputs('seed-1')
  const seqA = [1, 2, 3, 4].map((t) => observe(a, t))
  // b sees the ticks in another order and with a re-run in between: same values per tick
  const seqB: string[][] = []
  seqB[3] = observe(b, 4); observe(b, 9); seqB[1] = observe(b, 2); seqB[0] = observe(b, 1); seqB[2] = observe(b, 3)
  assert.equal(seqB, seqA)
  // re-running a tick replays it
  assert.equal(observe(a, 2), seqA[1])
})

test('simulatedInputs differs across seeds and across ticks', () => {
  const a = observe(simulatedInputs('seed-1'), 5)
  const b = observe(simulatedInputs('seed-2'), 5)
  const c = observe(simulatedInputs('seed-1'), 6)
  for (let k = 3; k < a.length; k++) {
    assert.is.not(a[k], b[k], 'random bytes differ across seeds')
    assert.is.not(a[k], c[k], 'random bytes differ across ticks')
  }
  assert.is.not(a[0], c[0], 'the clock differs across ticks')
  // within a tick, successive fills are fresh bytes, not the same block again
  const s = simulatedInputs('seed-1'); s.beginTick(1)
  const x = new Uint8Array(32); const y = new Uint8Array(32)
  s.randomFill(x); s.randomFill(y)
  assert.is.not(hex(x), hex(y))
  const big = new Uint8Array(64); s.beginTick(1); s.randomFill(big)
  assert.is.not(hex(big.subarray(0, 32)), hex(big.subarray(32)))
  assert.ok(big.some((v) => v !== 0))
})

test('simulated clock: SIM_EPOCH_NS + tick × step, monotonic within a tick and across ticks', () => {
  const s = simulatedInputs('clock', 5_000n)
  s.beginTick(0)
  assert.is(s.now(), SIM_EPOCH_NS)
  s.beginTick(7)
  const reads = Array.from({ length: 10 }, () => s.now())
  assert.is(reads[0], SIM_EPOCH_NS + 7n * 5_000n)
  for (let i = 1; i < reads.length; i++) assert.ok(reads[i] > reads[i - 1], 'strictly increasing')
  s.beginTick(8)
  assert.ok(s.now() > reads[reads.length - 1])
  // default step is one second
  const d = simulatedInputs('clock'); d.beginTick(3)
  assert.is(d.now(), SIM_EPOCH_NS + 3_000_000_000n)
  assert.is(new Date(Number(SIM_EPOCH_NS / 1_000_000n)).toISOString(), '2023-11-14T22:13:20.000Z')
})

test('liveInputs returns the current Unix time in ns and fills random bytes', () => {
  const live = liveInputs()
  live.beginTick(1)
  const before = BigInt(Date.now()) * 1_000_000n
  const t1 = live.now()
  const t2 = live.now()
  const after = BigInt(Date.now()) * 1_000_000n
  const slack = 60_000_000_000n // a minute: only checks the unit and the epoch, not timing
  assert.ok(t1 >= before - slack && t1 <= after + slack, `${t1} is near ${before}`)
  assert.ok(t2 >= t1)
  const a = new Uint8Array(64); const b = new Uint8Array(64)
  live.randomFill(a); live.randomFill(b)
  assert.ok(a.some((v) => v !== 0))
  assert.is.not(hex(a), hex(b))
})

test.run()
