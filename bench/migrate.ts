/**
 * Migration benchmarks (DESIGN §11), two in-process nodes on 127.0.0.1:
 * - raw libp2p stream throughput between the same two nodes, same run, with no agent ticking:
 *   `dialProtocol`, `send()` with `onDrain()` back-pressure, 1 MiB chunks, warm connection, the
 *   receiver consuming and acknowledging (the method of research/js-ecosystem-scripts/p2p-bench.mjs);
 * - a 2 MiB-state agent moved end to end (source stop → target started), ms, target ≤ 100 ms; floor:
 *   the same 2 MiB over the raw stream; with the time of each protocol step;
 * - downtime: from stopping the agent on the source to its first tick on the target, ms;
 * - a 64 MiB agent's transfer throughput (offer → pending: transfer, verification and the durable
 *   pending write), MiB/s, beside the raw stream throughput, target ≥ 50 %: three moves of three
 *   different 64 MiB agents (each a first visit: another module, other pages), each right after a
 *   raw 64 MiB run over the same connection; the row is the median move against the median raw
 *   run, judged by the median of the three pairs' ratios (each printed), so that one moment of a
 *   loaded machine does not decide it.
 * Moved agents are stopped on the target after each measurement so that nothing ticks in the
 * background of the next one.
 */
import { rmSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IgordNode } from '../p2p/node.ts'
import type { MigrateResult } from '../p2p/migrate.ts'
import { Worker } from 'node:worker_threads'
import type { BenchRow } from './row.ts'

const RAW = '/igord-bench/raw/1.0.0'
const CHUNK = 1024 * 1024

/** Sends `bytes` over a fresh raw stream from `from` to `to` and waits for the receiver's ack; ms. */
async function rawSend (from: IgordNode, to: IgordNode, bytes: number): Promise<number> {
  const payload = new Uint8Array(CHUNK).map((_, i) => i * 31)
  const t0 = performance.now()
  const s = await from.peer.dialProtocol(to.peer.getMultiaddrs()[0], RAW)
  for (let off = 0; off < bytes; off += CHUNK) if (!s.send(payload)) await s.onDrain()
  await s.close()
  let ack = 0
  for await (const c of s) ack += c.byteLength
  if (ack !== 8) throw new Error('raw stream: no ack')
  return performance.now() - t0
}

/**
 * Writes the state agents `[pages, fill]` (test/state-agent.ts `writeStateAgent`) into `dir` from a
 * worker thread, which then ends: the generator's binaryen never sits in the heap of this thread,
 * where both nodes run — a node's own main thread does not load it, and its size would tax every
 * collection of the measured streams. Returns the paths `writeStateAgent` gave, in order.
 */
async function writeStateAgents (dir: string, agents: [number, number][]): Promise<{ wasm: string; manifest: string }[]> {
  const url = new URL('../test/state-agent.ts', import.meta.url).href
  const w = new Worker(`const { parentPort, workerData: d } = require('node:worker_threads'); import(d.url).then((m) => parentPort.postMessage(d.agents.map(([p, f]) => m.writeStateAgent(d.dir, p, f))))`, { eval: true, workerData: { url, dir, agents } })
  let paths: { wasm: string; manifest: string }[] | null = null
  w.once('message', (m: { wasm: string; manifest: string }[]) => { paths = m })
  const code = await new Promise<number>((resolve, reject) => { w.once('error', reject); w.once('exit', resolve) })
  if (code !== 0 || paths === null) throw new Error(`writing the state agents: the worker exited with ${code}`)
  return paths
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Runs the migration benchmarks (about 30–60 s). */
export async function bench (): Promise<BenchRow[]> {
  const dirs: string[] = []
  const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'igord-bench-mig-')); dirs.push(d); return d }
  const mk = () => IgordNode.start({ dir: tmp(), listen: ['/ip4/127.0.0.1/tcp/0'], capabilities: ['clock', 'log'], price: 1000n, intervalMs: 20, note: () => {}, emit: () => {} })
  const [a, b] = await Promise.all([mk(), mk()])
  await b.peer.handle(RAW, async (stream) => {
    let n = 0
    for await (const c of stream) n += c.byteLength
    const ack = new Uint8Array(8); new DataView(ack.buffer).setFloat64(0, n)
    stream.send(ack); await stream.close()
  })
  const rows: BenchRow[] = []
  const moveAndStop = async (name: string, from: IgordNode, to: IgordNode): Promise<{ r: MigrateResult; downtime: number }> => {
    const t0 = performance.now()
    const r = await from.migrate(name, [to.addrs[0]])
    const tickAt = r.tick
    while ((to.agents.get(name)?.session.agent.tick ?? 0) <= tickAt) await new Promise((res) => setImmediate(res))
    const downtime = performance.now() - t0
    await to.stopAgent(name)
    return { r, downtime }
  }
  try {
    const src = tmp()
    const [small, two, ...bigs] = await writeStateAgents(src, [[2, 7], [32, 7], [1024, 11], [1024, 12], [1024, 13]])
    // warm-up: the connection, the JIT of both paths (raw stream and a whole migration)
    for (let i = 0; i < 3; i++) await rawSend(a, b, 8 * CHUNK)
    await a.run({ wasm: small.wasm, manifest: small.manifest, name: 'warm', budget: 10n ** 12n, intervalMs: 20 })
    await sleep(50)
    await moveAndStop('warm', a, b)

    // raw stream throughput, nothing ticking
    const raw64: number[] = []
    for (let i = 0; i < 3; i++) raw64.push(await rawSend(a, b, 64 * CHUNK))
    const raw2: number[] = []
    for (let i = 0; i < 5; i++) raw2.push(await rawSend(a, b, 2 * CHUNK))
    const rawMiBs = 64 / (median(raw64) / 1000)
    rows.push({ name: 'raw libp2p stream, 64 MiB in 1 MiB chunks', value: rawMiBs, unit: 'MiB/s' })

    // 2 MiB agent, five runs (each a first visit: a new agent, nothing held by the target)
    const runs: { r: MigrateResult; downtime: number }[] = []
    for (let i = 0; i < 5; i++) {
      await a.run({ wasm: two.wasm, manifest: two.manifest, name: `two${i}`, budget: 10n ** 12n, intervalMs: 20 })
      await sleep(60)
      runs.push(await moveAndStop(`two${i}`, a, b))
    }
    const ms2 = median(runs.map((x) => x.r.ms))
    const floor2 = median(raw2)
    rows.push({ name: 'migrate 2 MiB agent end to end', value: ms2, unit: 'ms', floor: floor2, ratio: ms2 / floor2, target: '≤ 100 ms', met: ms2 <= 100 })
    rows.push({ name: 'downtime (stop on source → first tick on target), 2 MiB', value: median(runs.map((x) => x.downtime)), unit: 'ms' })
    const mid = runs.map((x) => x.r).sort((x, y) => x.ms - y.ms)[2]
    for (const [k, v] of Object.entries(mid.steps)) rows.push({ name: `  2 MiB step: ${k}`, value: v, unit: 'ms' })

    // 64 MiB agents: three pairs (raw 64 MiB, then a move of a 64 MiB agent the target never saw)
    const pairs: { raw: number; value: number; r: MigrateResult }[] = []
    for (let k = 0; k < 3; k++) {
      const big = bigs[k]
      await a.run({ wasm: big.wasm, manifest: big.manifest, name: `big${k}`, budget: 10n ** 12n, intervalMs: 20 })
      await sleep(100)
      const raw = 64 / (await rawSend(a, b, 64 * CHUNK) / 1000)
      const { r } = await moveAndStop(`big${k}`, a, b)
      pairs.push({ raw, value: (r.blobBytes / 1048576) / (r.transferMs / 1000), r })
    }
    const value = median(pairs.map((p) => p.value))
    const raw = median(pairs.map((p) => p.raw))
    const ratio = median(pairs.map((p) => p.value / p.raw))
    rows.push({ name: 'migrate 64 MiB agent: offer → pending throughput', value, unit: 'MiB/s', floor: raw, ratio: raw / value, target: '≥ 0.5 of raw libp2p', met: ratio >= 0.5 })
    pairs.forEach((p, k) => rows.push({ name: `  64 MiB move ${k + 1}: offer → pending / raw`, value: p.value / p.raw, unit: 'ratio', floor: p.raw }))
    const r64 = pairs.map((p) => p.r).sort((x, y) => x.transferMs - y.transferMs)[1]
    rows.push({ name: 'migrate 64 MiB agent end to end (median move)', value: r64.ms, unit: 'ms' })
    for (const [k, v] of Object.entries(r64.steps)) rows.push({ name: `  64 MiB step: ${k}`, value: v, unit: 'ms' })
  } finally {
    await a.shutdown(); await b.shutdown()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
  return rows
}
