/**
 * Unit tests of cmd/units.ts: durations, budgets (exact microcents), counts, and their errors.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { EXIT } from '../checkpoint/errors.ts'
import { formatBudget, MICROCENTS_PER_UNIT, parseBudget, parseCount, parseDuration, parseLimit, UsageError } from '../cmd/units.ts'

/** Asserts that `f` throws a UsageError (exit 2) whose message names `option` and `value`. */
function usage (f: () => unknown, option: string, value: string): void {
  assert.throws(f, (e: unknown) => e instanceof UsageError && e.exitCode === EXIT.USAGE && e.message.includes(option) && e.message.includes(value) && !e.message.includes('\n'))
}

test('parseDuration reads ms, s, m, h, sub-ms units and bare milliseconds', () => {
  assert.is(parseDuration('10ms', '--interval'), 10)
  assert.is(parseDuration('1s', '--interval'), 1000)
  assert.is(parseDuration('1.5s', '--interval'), 1500)
  assert.is(parseDuration('2m', '--interval'), 120_000)
  assert.is(parseDuration('1h', '--interval'), 3_600_000)
  assert.is(parseDuration('250', '--interval'), 250)
  assert.is(parseDuration('0', '--interval'), 0)
  assert.is(parseDuration('500us', '--interval'), 0.5)
  assert.is(parseDuration(' 3 s ', '--interval'), 3000)
})

test('parseDuration rejects what is not a non-negative duration, naming the option', () => {
  for (const v of ['soon', '-1s', '', '1d', 's', '1.s', '1e3', '10 ms later']) usage(() => parseDuration(v, '--interval'), '--interval', v)
})

test('parseBudget returns exact microcents', () => {
  assert.is(MICROCENTS_PER_UNIT, 1_000_000n)
  assert.is(parseBudget('1', '--budget'), 1_000_000n)
  assert.is(parseBudget('0.25', '--budget'), 250_000n)
  assert.is(parseBudget('10.000001', '--budget'), 10_000_001n)
  assert.is(parseBudget('0', '--budget'), 0n)
  assert.is(parseBudget('0.1', '--budget'), 100_000n)
  // beyond 2^53 microcents, still exact
  assert.is(parseBudget('123456789012.345678', '--budget'), 123_456_789_012_345_678n)
})

test('parseBudget rejects more than six decimals, negatives and junk, naming the option', () => {
  for (const v of ['1.2345678', '-1', '', '1.', '.5', 'ten', '1e6', '1,5']) usage(() => parseBudget(v, '--budget'), '--budget', v)
})

test('formatBudget prints units with six decimals and round-trips parseBudget', () => {
  assert.is(formatBudget(0n), '0.000000')
  assert.is(formatBudget(1n), '0.000001')
  assert.is(formatBudget(1_500_000n), '1.500000')
  assert.is(formatBudget(10_000_001n), '10.000001')
  for (const v of [0n, 7n, 999_999n, 1_000_000n, 123_456_789_012_345_678n]) assert.is(parseBudget(formatBudget(v), 'x'), v)
})

test('parseCount reads non-negative safe integers and rejects the rest', () => {
  assert.is(parseCount('0', '--max-ticks'), 0)
  assert.is(parseCount('42', '--max-ticks'), 42)
  assert.is(parseCount('9007199254740991', '--max-ticks'), Number.MAX_SAFE_INTEGER)
  for (const v of ['-1', '1.5', 'abc', '', '1e3', '9007199254740993']) usage(() => parseCount(v, '--max-ticks'), '--max-ticks', v)
})


test('parseLimit reads positive integers, exponent form and binary byte units; anything else names the option', () => {
  assert.is(parseLimit('100000000', '--max-fuel-per-tick'), 100_000_000)
  assert.is(parseLimit('1e8', '--max-fuel-per-tick'), 100_000_000)
  assert.is(parseLimit('9007199254740991', '--max-fuel-per-tick'), 2 ** 53 - 1)
  assert.is(parseLimit('64KiB', '--max-memory'), 65536)
  assert.is(parseLimit('1 GiB', '--max-memory'), 2 ** 30)
  for (const bad of ['0', '-1', '1.5', '1e400', '9007199254740993', '2^53', 'lots', '4GB', '']) usage(() => parseLimit(bad, '--max-memory'), '--max-memory', bad)
})

test.run()
