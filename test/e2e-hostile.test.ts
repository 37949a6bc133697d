/**
 * Hostile agents through the real CLI: an endless loop ends at the fuel limit and rolls back, a
 * trapping agent pauses after repeated failures, a memory bomb cannot pass its manifest's cap,
 * and a small budget ends `exhausted` with the budget exactly zero.
 */
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { CheckpointHeader } from '../checkpoint/header.ts'
import { entriesIn } from './hist.ts'
import { agentWasm, cleanup, igord, inspectJson, tempDir } from './helpers.ts'

test.after(cleanup)

/** The archived headers of agent `name` in `dir`, in tick order. */
function headers (dir: string, name: string): CheckpointHeader[] {
  return entriesIn(join(dir, 'history', name)).map((t) => t.e.parsed).sort((a, b) => a.tick - b.tick)
}

test('endless loop: each tick ends at the fuel limit and rolls back; the agent pauses after 3 failures', () => {
  const d = tempDir()
  const r = igord(['run', agentWasm('loop'), '--dir', d, '--interval', '0ms'])
  assert.is(r.code, 7, r.stderr)
  const failed = r.stderr.split('\n').filter((l) => /tick \d+ failed and was rolled back: out of fuel/.test(l))
  assert.is(failed.length, 3, r.stderr)
  assert.match(r.stderr, /paused/)
  const hs = headers(d, 'loop')
  const last = hs.at(-1) as CheckpointHeader
  assert.is(last.status, 'paused')
  assert.match(String(last.reason), /out of fuel/)
  assert.is(last.tick, 3)
  // Each failed tick is charged exactly the per-tick limit (10,000,000 in loop.manifest.json).
  assert.is(last.fuel - hs[0].fuel, 3n * 10_000_000n)
  // Rolled back: the state is the genesis state apart from fuel and budget, so memory is unchanged.
  const info = inspectJson(join(d, 'loop.ckpt'))
  assert.is(info.status, 'paused')
  assert.is(igord(['verify', d]).code, 0)
})

test('trap every tick: rolled back, keeps being scheduled, pauses after 3 consecutive failures', () => {
  const d = tempDir()
  const r = igord(['run', agentWasm('trap'), '--dir', d, '--interval', '0ms'])
  assert.is(r.code, 7)
  // The agent's own counter is rolled back each time, so every attempt logs "attempt 1".
  const attempts = r.stdout.split('\n').filter((l) => l.includes('about to hit unreachable'))
  assert.is(attempts.length, 3)
  for (const l of attempts) assert.match(l, /attempt 1,/)
  assert.match(r.stderr, /unreachable/)
  assert.is(inspectJson(join(d, 'trap.ckpt')).status, 'paused')
})

test('memory bomb cannot grow past the manifest limit (4 MiB = 64 pages)', () => {
  const d = tempDir()
  const r = igord(['run', agentWasm('bomb'), '--dir', d, '--interval', '0ms', '--ticks', '20'])
  // Deterministic: memory stops at 64 pages, then the 256 KiB allocation traps every tick until
  // the agent is paused after 3 consecutive failures (exit 7), well within 20 ticks.
  assert.is(r.code, 7, r.stderr)
  assert.match(r.stderr, /paused: 3 consecutive failed ticks/)
  assert.is((r.stderr.match(/failed and was rolled back/g) ?? []).length, 3, r.stderr)
  const sizes = [...r.stdout.matchAll(/memory (\d+) pages/g)].map((m) => Number(m[1]))
  assert.ok(sizes.length > 0)
  assert.ok(Math.max(...sizes) <= 64, `max ${Math.max(...sizes)} pages`)
  assert.match(r.stdout, /grow\(16\) -> -1/)
  const info = inspectJson(join(d, 'bomb.ckpt'))
  assert.is(info.status, 'paused')
  assert.ok(Number(info.pageCount) <= 64)
  assert.is(igord(['verify', d]).code, 0)
})

test('a small budget ends exhausted with the budget exactly 0, never negative', () => {
  const d = tempDir()
  // price 1e6 microcents per million fuel = 1 microcent per fuel; 0.01 units = 10,000 microcents.
  const r = igord(['run', agentWasm('ledger'), '--dir', d, '--interval', '0ms', '--budget', '0.01', '--price', '1000000', '-q'])
  assert.is(r.code, 7, r.stderr)
  assert.match(r.stderr, /exhausted/)
  const hs = headers(d, 'ledger')
  const last = hs.at(-1) as CheckpointHeader
  assert.is(last.status, 'exhausted')
  assert.is(last.budget, 0n)
  for (let i = 1; i < hs.length; i++) assert.ok(hs[i].budget <= hs[i - 1].budget && hs[i].budget >= 0n)
  // Resuming an exhausted agent runs no tick and keeps the checkpoint as it is.
  const again = igord(['resume', join(d, 'ledger.ckpt'), '-q'])
  assert.is(again.code, 7)
  assert.is(headers(d, 'ledger').length, hs.length)
})

test.run()
