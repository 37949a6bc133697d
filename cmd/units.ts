/**
 * Parsers for command-line values: durations, budgets, counts. Each throws a UsageError naming
 * the option and the value it could not read.
 */
import { EXIT, IgordError } from '../checkpoint/errors.ts'

/** Bad command-line arguments (exit 2). */
export class UsageError extends IgordError {
  constructor (message: string) { super(message, EXIT.USAGE) }
}

const DURATION_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/**
 * Reads a duration such as `10ms`, `1s`, `1.5s`, `2m` or a bare number of milliseconds.
 * @returns milliseconds (≥ 0)
 * @throws UsageError naming `option`
 */
export function parseDuration (value: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h)?$/.exec(value.trim())
  if (m === null) throw new UsageError(`${option}: cannot read duration '${value}' (examples: 10ms, 1s, 2m)`)
  return Number(m[1]) * DURATION_MS[m[2] ?? 'ms']
}

/** Microcents in one budget unit. */
export const MICROCENTS_PER_UNIT = 1_000_000n

/**
 * Reads a budget in units with up to six decimals (`1`, `0.25`, `10.000001`) and returns it in
 * microcents (1 unit = 1,000,000 microcents), exactly, as a bigint.
 * @throws UsageError naming `option`
 */
export function parseBudget (value: string, option: string): bigint {
  const m = /^(\d+)(?:\.(\d{1,6}))?$/.exec(value.trim())
  if (m === null) throw new UsageError(`${option}: cannot read budget '${value}' (a non-negative amount with up to 6 decimals, e.g. 1.5)`)
  return BigInt(m[1]) * MICROCENTS_PER_UNIT + BigInt((m[2] ?? '').padEnd(6, '0'))
}

/** Formats microcents as units with six decimals (`1.500000`). */
export function formatBudget (microcents: bigint): string {
  const units = microcents / MICROCENTS_PER_UNIT
  const frac = (microcents % MICROCENTS_PER_UNIT).toString().padStart(6, '0')
  return `${units}.${frac}`
}

/**
 * Reads a non-negative integer (a count, a price in microcents per million fuel, bytes).
 * @throws UsageError naming `option`
 */
export function parseCount (value: string, option: string): number {
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) throw new UsageError(`${option}: expected a non-negative integer, got '${value}'`)
  return Number(value)
}

const BINARY_UNITS: Record<string, number> = { '': 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 }

/**
 * Reads a positive limit: an integer (`100000000`), an integer in exponent form (`1e8`) or, for
 * bytes, an integer with a binary unit (`64KiB`, `1MiB`, `4GiB`). The value must be a safe integer
 * (at most 2^53−1).
 * @returns the value (bytes when a unit is given)
 * @throws UsageError naming `option`
 */
export function parseLimit (value: string, option: string): number {
  const m = /^(\d+)(?:e(\d+))?\s*(KiB|MiB|GiB|TiB)?$/.exec(value.trim())
  const n = m === null ? NaN : Number(m[1]) * 10 ** Number(m[2] ?? 0) * BINARY_UNITS[m[3] ?? '']
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${option}: expected a positive integer up to 2^53-1 (e.g. 100000000, 1e8, 64MiB), got '${value}'`)
  return n
}

/**
 * Reads a tick's wall-clock limit (`--tick-timeout`): a duration (see {@link parseDuration}) of at
 * least 1 ms, returned in whole ms.
 * @throws UsageError naming `option`
 */
export function parseTickTimeout (value: string, option: string): number {
  const ms = Math.round(parseDuration(value, option))
  if (!Number.isSafeInteger(ms) || ms < 1) throw new UsageError(`${option}: must be at least 1ms, got '${value}'`)
  return ms
}
