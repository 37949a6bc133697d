/**
 * Node caps end to end through the real CLI (docs/PROTOCOL.md "Node caps"): a node refuses to
 * host, by `run --node` or by migration, an agent whose manifest asks for more than its `--max-*`
 * options allow, with one line naming the field, the value asked and the cap; the source keeps
 * running the agent. A local `igord run` refuses a manifest above the default caps (exit 5).
 */
import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, tempDir } from './helpers.ts'
import { nodeTracker, ps, startNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const nodes = nodeTracker()
test.after.each(nodes.killAll)
test.after(cleanup)

const MAX = 2 ** 53 - 1

/** heartbeat's wasm as `<dir>/greedy.wasm` with a manifest asking `limits` (clock and log granted). */
function greedy (limits: Record<string, number>): string {
  const d = tempDir()
  const wasm = join(d, 'greedy.wasm')
  copyFileSync(agentWasm('heartbeat'), wasm)
  writeFileSync(join(d, 'greedy.manifest.json'), JSON.stringify({ capabilities: ['clock', 'log'], resource_limits: limits }))
  return wasm
}
const tickOf = (n: NodeProc) => ps(n.dir).find((a) => a.name === 'greedy')?.tick ?? -1

test('a node with --max-fuel-per-tick 1e8 refuses an agent asking 2^53-1 fuel per tick: run --node and migration both refused with the reason, exit 9 for migrate; the agent keeps running on the source', async () => {
  const [a, b] = await Promise.all([
    startNode({ args: ['--max-fuel-per-tick', String(MAX)] }).then(nodes.track),
    startNode({ args: ['--max-fuel-per-tick', '1e8'] }).then(nodes.track),
  ])
  const wasm = greedy({ max_fuel_per_tick: MAX })
  const reason = `resource_limits.max_fuel_per_tick asks ${MAX}, above this host's cap of 100000000`
  const direct = igord(['run', wasm, '--node', b.dir])
  assert.is(direct.code, 2, direct.stderr)
  assert.ok(direct.stderr.includes(reason), direct.stderr)
  assert.is(direct.stderr.trim().split('\n').length, 1, 'one line')
  const r = igord(['run', wasm, '--node', a.dir, '--interval', '20ms'])
  assert.is(r.code, 0, r.stderr)
  await until(() => tickOf(a) >= 2, 20_000, 'ticks on the source')
  const m = igord(['migrate', 'greedy', '--to', b.addr, '--node', a.dir], 60_000)
  assert.is(m.code, 9, m.stderr)
  assert.ok(m.stderr.includes(`refused the migration: ${reason}`), m.stderr)
  const t = tickOf(a)
  await until(() => tickOf(a) > t + 2, 20_000, 'ticks to continue on the source')
  assert.is(ps(a.dir).find((x) => x.name === 'greedy')?.status, 'running')
  assert.equal(ps(b.dir), [])
})

test('per-tick limits are capped too: a node with --max-events-per-tick 100 refuses the default 10000; one that allows it accepts a manifest lowering it', async () => {
  const a = nodes.track(await startNode({ args: ['--max-events-per-tick', '100'] }))
  const dflt = igord(['run', agentWasm('heartbeat'), '--node', a.dir])
  assert.is(dflt.code, 2, dflt.stderr)
  assert.ok(dflt.stderr.includes('resource_limits.max_events_per_tick asks 10000, above this host\'s cap of 100'), dflt.stderr)
  const low = igord(['run', greedy({ max_events_per_tick: 100 }), '--node', a.dir, '--interval', '20ms'])
  assert.is(low.code, 0, low.stderr)
  await until(() => tickOf(a) >= 2, 20_000, 'ticks under the lowered limit')
})

test('igord node: a bad --max-* value is a usage error naming the option (exit 2)', () => {
  for (const [opt, bad] of [['--max-fuel-per-tick', '-5'], ['--max-memory', 'lots'], ['--max-events-per-tick', '0'], ['--max-log-bytes-per-tick', '1e400']]) {
    const r = igord(['node', '--data', tempDir(), '--listen', '/ip4/127.0.0.1/tcp/0', opt, bad])
    assert.is(r.code, 2, `${opt} ${bad}: ${r.stderr}`)
    assert.ok(r.stderr.includes(opt) && r.stderr.includes(bad), r.stderr)
  }
})

test('a local igord run refuses (does not clamp) a manifest above the default caps, naming field, value and cap (exit 5); nothing is born', () => {
  const d = tempDir()
  for (const [limits, reason] of [
    [{ max_fuel_per_tick: MAX }, `resource_limits.max_fuel_per_tick asks ${MAX}, above this host's cap of 10000000000`],
    [{ max_memory_bytes: 2 * 1024 ** 3 }, 'resource_limits.max_memory_bytes asks 2147483648, above this host\'s cap of 1073741824'],
    [{ max_log_bytes_per_tick: 2 * 1024 * 1024 }, 'resource_limits.max_log_bytes_per_tick asks 2097152, above this host\'s cap of 1048576'],
  ] as const) {
    const r = igord(['run', greedy(limits), '--dir', d, '--ticks', '1'])
    assert.is(r.code, 5, r.stderr)
    assert.ok(r.stderr.includes(reason), r.stderr)
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr)
  }
  const ok = igord(['run', greedy({ max_fuel_per_tick: 10_000_000_000, max_log_bytes_per_tick: 4096 }), '--dir', d, '--ticks', '2', '--interval', '0ms'])
  assert.is(ok.code, 0, ok.stderr)
})

test.run()
