/**
 * Migration benchmarks (DESIGN §11), two in-process nodes on 127.0.0.1:
 * - a 2 MiB-state agent moved end to end (offer → started), ms, target ≤ 100 ms; floor: sending
 *   the same 2 MiB over a raw libp2p stream between the same nodes;
 * - a 64 MiB agent's transfer throughput (offer → pending), MiB/s, beside raw libp2p stream
 *   throughput measured in the same run (1 MiB chunks), target ≥ 50 %;
 * - downtime: from stopping the agent on the source to its first tick on the target, ms.
 */
import { rmSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IgordNode } from '../p2p/node.ts'
import { writeStateAgent } from '../test/state-agent.ts'
import type { BenchRow } from './row.ts'

const RAW = '/igord-bench/raw/1.0.0'

async function rawSend (from: IgordNode, to: IgordNode, bytes: number): Promise<number> {
  const payload = new Uint8Array(1024 * 1024).fill(5)
  const t0 = performance.now()
  const s = await from.peer.dialProtocol(to.peer.peerId, RAW)
  for (let off = 0; off < bytes; off += payload.length) if (!s.send(payload)) await s.onDrain()
  await s.close()
  for await (const _ of s) { /* the ack */ }
  return performance.now() - t0
}

/** Runs the migration benchmarks (about 20–40 s). */
export async function bench (): Promise<BenchRow[]> {
  const dirs: string[] = []
  const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'igord-bench-mig-')); dirs.push(d); return d }
  const mk = () => IgordNode.start({ dir: tmp(), listen: ['/ip4/127.0.0.1/tcp/0'], capabilities: ['clock', 'log'], price: 1000n, intervalMs: 2, note: () => {}, emit: () => {} })
  const [a, b] = await Promise.all([mk(), mk()])
  await b.peer.handle(RAW, async (stream) => {
    for await (const _ of stream) { /* consume */ }
    stream.send(new Uint8Array([1])); await stream.close()
  })
  const rows: BenchRow[] = []
  try {
    const src = tmp()
    // warm-up (JIT, connection): a small agent
    const small = writeStateAgent(src, 2)
    a.run({ wasm: small.wasm, manifest: small.manifest, name: 'warm', budget: 10n ** 12n, intervalMs: 2 })
    await a.migrate('warm', [b.addrs[0]])
    await rawSend(a, b, 2 * 1024 * 1024)

    const two = writeStateAgent(src, 32)
    a.run({ wasm: two.wasm, manifest: two.manifest, name: 'two', budget: 10n ** 12n, intervalMs: 2 })
    await new Promise((r) => setTimeout(r, 50))
    const t0 = performance.now()
    const r2 = await a.migrate('two', [b.addrs[0]])
    const tickAt = b.agents.get('two')!.session.agent.tick
    while (b.agents.get('two')!.session.agent.tick <= tickAt) await new Promise((r) => setImmediate(r))
    const downtime = performance.now() - t0
    const raw2 = await rawSend(a, b, 2 * 1024 * 1024)
    rows.push({ name: 'migrate 2 MiB agent end to end', value: r2.ms, unit: 'ms', floor: raw2, ratio: r2.ms / raw2, target: '≤ 100 ms', met: r2.ms <= 100 })
    rows.push({ name: 'downtime (stop on source → first tick on target), 2 MiB', value: downtime, unit: 'ms' })

    const big = writeStateAgent(src, 1024)
    a.run({ wasm: big.wasm, manifest: big.manifest, name: 'big', budget: 10n ** 12n, intervalMs: 2 })
    const rawMs = await rawSend(a, b, 64 * 1024 * 1024)
    const r64 = await a.migrate('big', [b.addrs[0]])
    const mib = r64.blobBytes / 1048576
    const value = mib / (r64.transferMs / 1000)
    const floor = 64 / (rawMs / 1000)
    rows.push({ name: 'migrate 64 MiB agent: transfer throughput', value, unit: 'MiB/s', floor, ratio: value / floor, target: '≥ 0.5 of raw libp2p', met: value / floor >= 0.5 })
    rows.push({ name: 'migrate 64 MiB agent end to end', value: r64.ms, unit: 'ms' })
  } finally {
    await a.shutdown(); await b.shutdown()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
  return rows
}
