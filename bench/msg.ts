/**
 * Agent-to-agent message benchmarks (issue 9): five nodes on 127.0.0.1, nodes 1–4 bootstrapped
 * from node 0 only (the kad-dht discovery finds the rest). Node 0 runs on this thread (it hosts the
 * senders, and the bench times its router); nodes 1–4 each run in a worker thread of their own
 * (bench/msg-node.ts) with their own event loop and tick worker, as nodes in processes of their own
 * would: the figures are those of two nodes talking, not of five nodes sharing one event loop.
 * - floors: a raw libp2p stream round trip node 0 → node 1 (fresh stream on the warm connection,
 *   300 bytes out, 8 back: the shape of one message exchange), the raw pipelined rate (one
 *   stream, 300-byte requests each answered with 8 bytes as they arrive), and one durable spool
 *   write of a message (checkpoint/spool.ts: what every delivery costs before its `ok`);
 * - hand-off latency, p50 and p95: `ping` (agents-as) on node 0 sends N messages to `pong` on node
 *   1, one at a time (ping's window 1: it sends the next when the answer arrives), so that no
 *   message waits behind another. Timed on node 0 from its `route(env)` call — made right after the
 *   checkpoint of the tick that sent the message — until node 1's `ok`: the recipient's host (cached
 *   after the first lookup), the signed message over `/igor/msg/1.1.0`, its signature and sender
 *   checked, and the message spooled durably into pong's inbox (in pong's tick worker). Target
 *   ≤ 5 ms p50. Beside it: node 1's delivery into pong's inbox, and node 0's event-loop delay.
 * - agent to agent, p50 and p95: from ping's log line in the tick that sends message k+1 (the
 *   line of answer k, as node 0's main thread receives it) to pong's log line in the tick that reads
 *   it (as node 1's thread receives it): the rest of ping's tick, its checkpoint (fsyncs), the
 *   hand-off, pong's wake-up and tick.
 * - messages/s one way: a second sender `ping2` on node 0 with ping's default window (64 messages
 *   without an answer): N2 / (first `route` call → last `ok`) while pong answers every message the
 *   other way; floors: the raw pipelined rate, and the storage floor 1 / (2 spool writes) (each
 *   message and its answer are spooled once, on the same disk).
 * - DID lookup: `discovery.findHost(did)` of pong's DID from nodes 2–4, p50, as a message's router
 *   makes its first lookup (`confirm: false`: the DHT's answer as it is when it names one host);
 *   floor: the raw kad-dht `findProviders` of the same key until its first provider, on the same
 *   nodes. And the confirmed lookup (the provider asked `/igor/host/1.0.0`), floor: that raw
 *   lookup plus one raw stream round trip.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import { InboxSpool } from '../checkpoint/spool.ts'
import { IgordNode } from '../p2p/node.ts'
import type { AgentInfo } from '../p2p/node.ts'
import { newMessageId, nowNs } from '../runtime/mailbox.ts'
import { now, RAW_PIPE_PROTOCOL, RAW_PROTOCOL } from './msg-node.ts'
import type { BenchRow } from './row.ts'

/**
 * Messages ping sends one at a time (latency), and ping2 with its window (throughput; env
 * BENCH_MSG_N2), and how long ping2's exchange may take, ms (env BENCH_MSG_WAIT).
 */
const N = 200
const N2 = Number(process.env.BENCH_MSG_N2 ?? 500)
const LOOKUPS = 30

const pct = (xs: number[], p: number) => { const s = [...xs].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(s.length * p))] }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const AGENTS = join(import.meta.dirname, '..', 'agents-as', 'build')

/** A node of the bench in its own worker thread (bench/msg-node.ts). */
class Remote {
  readonly worker: Worker
  readonly ready: Promise<{ addrs: string[]; peer: string }>
  readonly #pending = new Map<number, { resolve (v: unknown): void; reject (e: Error): void }>()
  #re = 1
  constructor (dir: string, bootstrap: string[], onLog: (at: number, name: string, line: string) => void) {
    this.worker = new Worker(new URL('./msg-node.ts', import.meta.url), { workerData: { dir, bootstrap } })
    this.ready = new Promise((resolve, reject) => {
      this.worker.once('error', reject)
      this.worker.on('message', (m: { ev?: string; re?: number; ok?: boolean; value?: unknown; error?: string; at: number; name: string; line: string; addrs: string[]; peer: string }) => {
        if (m.ev === 'ready') resolve({ addrs: m.addrs, peer: m.peer })
        else if (m.ev === 'log') onLog(m.at, m.name, m.line)
        else if (m.re !== undefined) {
          const p = this.#pending.get(m.re)
          this.#pending.delete(m.re)
          if (m.ok === true) p?.resolve(m.value); else p?.reject(new Error(`bench msg node: ${m.error}`))
        }
      })
    })
  }

  async ask<T> (t: string, args: Record<string, unknown> = {}): Promise<T> {
    const re = this.#re++
    return await new Promise<T>((resolve, reject) => {
      this.#pending.set(re, { resolve: resolve as (v: unknown) => void, reject })
      this.worker.postMessage({ re, t, ...args })
    })
  }

  async stop (): Promise<void> {
    try { await Promise.race([this.ask('stop'), sleep(10_000)]) } finally { await this.worker.terminate() }
  }
}

/** One raw round trip from `from` to `addr` on a fresh stream: 300 bytes out, 8 back; ms. */
async function rawRtt (from: IgordNode, addr: string): Promise<number> {
  const { multiaddr } = await import('@multiformats/multiaddr')
  const payload = new Uint8Array(300).map((_, i) => i)
  const t0 = performance.now()
  const s = await from.peer.dialProtocol(multiaddr(addr), RAW_PROTOCOL)
  s.send(payload)
  await s.close()
  let n = 0
  for await (const c of s) n += c.byteLength
  if (n !== 8) throw new Error('raw round trip: no answer')
  return performance.now() - t0
}

/** `n` 300-byte requests on one stream, each answered with 8 bytes; requests per second. */
async function rawPipe (from: IgordNode, addr: string, n: number): Promise<number> {
  const { multiaddr } = await import('@multiformats/multiaddr')
  const t0 = performance.now()
  const s = await from.peer.dialProtocol(multiaddr(addr), RAW_PIPE_PROTOCOL)
  for (let i = 0; i < n; i++) s.send(new Uint8Array(300).fill(i & 0xff))
  await s.close()
  let got = 0
  for await (const c of s) got += c.byteLength
  if (got !== 8 * n) throw new Error(`raw pipe: ${got} of ${8 * n} answer bytes`)
  return n / ((performance.now() - t0) / 1000)
}

/** Waits until `pred` holds, polling every 20 ms, at most `ms`. */
async function until (pred: () => boolean | Promise<boolean>, ms: number, what: string, state?: () => string): Promise<void> {
  const t0 = Date.now()
  while (!(await pred())) {
    if (Date.now() - t0 > ms) throw new Error(`bench msg: timed out waiting for ${what}${state === undefined ? '' : ` (${state()})`}`)
    await sleep(20)
  }
}

/** Runs the message and lookup benchmarks (about 1 min). */
export async function bench (): Promise<BenchRow[]> {
  const dirs: string[] = []
  const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'igord-bench-msg-')); dirs.push(d); return d }
  const logs: { at: number; name: string; line: string }[] = []
  const onLog = (at: number, name: string, line: string) => logs.push({ at, name, line })
  let a: IgordNode | null = null
  const remotes: Remote[] = []
  const rows: BenchRow[] = []
  try {
    a = await IgordNode.start({
      dir: tmp(), listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], capabilities: ['clock', 'log', 'inbox', 'timer', 'message'], price: 1000n, intervalMs: 1000, tickThreads: 1,
      note: () => {}, emit: (name, line) => onLog(now(), name, line),
    })
    for (let i = 1; i < 5; i++) remotes.push(new Remote(tmp(), [a.addrs[0]], onLog))
    const info = await Promise.all(remotes.map((r) => r.ready))
    const b = remotes[0]
    const bAddr = info[0].addrs[0]
    await b.ask('rtt')

    const pong = await b.ask<AgentInfo>('run', { wasm: join(AGENTS, 'pong.wasm'), name: 'pong' })
    const ping = await a.run({ wasm: join(AGENTS, 'ping.wasm'), name: 'ping', budget: 10n ** 13n })
    const ping2 = await a.run({ wasm: join(AGENTS, 'ping.wasm'), name: 'ping2', budget: 10n ** 13n })
    // the DHT fills (every node bootstrapped from node 0) and the agents become findable everywhere
    for (const did of [pong.did, ping.did, ping2.did]) {
      await until(async () => (await a!.discovery.findHost(did, 2000)) !== null, 120_000, `${did} to be found from node 0`)
      for (const r of remotes) await until(async () => (await r.ask<{ peer: string | null }>('find', { did, ms: 2000 })).peer !== null, 120_000, `${did} to be found from every node`)
    }

    // warm-up: connection, JIT of both paths
    for (let i = 0; i < 50; i++) await rawRtt(a, bAddr)
    const rtt: number[] = []
    for (let i = 0; i < 200; i++) rtt.push(await rawRtt(a, bAddr))
    const rtt50 = pct(rtt, 0.5)
    rows.push({ name: 'raw libp2p stream round trip (300 B / 8 B), p50', value: rtt50, unit: 'ms' })
    rows.push({ name: 'raw libp2p stream round trip, p95', value: pct(rtt, 0.95), unit: 'ms' })
    await rawPipe(a, bAddr, 200)
    const pipes: number[] = []
    for (let i = 0; i < 5; i++) pipes.push(await rawPipe(a, bAddr, N2))
    const pipeFloor = pct(pipes, 0.5)
    rows.push({ name: `raw pipelined requests/s (one stream, ${N2} × 300 B / 8 B)`, value: pipeFloor, unit: 'req/s' })
    // the durable write every delivered message costs (checkpoint/spool.ts: write, fsync, rename, fsync the directory)
    const spool = new InboxSpool(tmp(), 'bench')
    const writes: number[] = []
    for (let i = 1; i <= 60; i++) {
      const t = performance.now()
      spool.put({ seq: i, id: newMessageId(), kind: 'message', from: ping.did, time: nowNs(), body: new Uint8Array(300) })
      writes.push(performance.now() - t)
    }
    const spool50 = pct(writes.slice(10), 0.5)
    rows.push({ name: 'durable spool write of one message (300 B), p50', value: spool50, unit: 'ms' })

    // the hand-offs node 0 makes, timed around its router
    type Routed = { start: number; end?: number; ok?: boolean; tries: number }
    const routed = new Map<string, Routed>()
    const route = a.route.bind(a)
    a.route = async (env: Envelope, first?: boolean): Promise<SendOutcome> => {
      const text = Buffer.from(env.body).toString()
      const key = `${env.from} ${text}`
      const e: Routed = { start: performance.now(), tries: (routed.get(key)?.tries ?? 0) + 1 }
      routed.set(key, e)
      const out = await route(env, first)
      e.end = performance.now(); e.ok = out.ok
      return out
    }
    await b.ask('timings') // cleared
    const lag = monitorEventLoopDelay({ resolution: 1 })
    lag.enable()
    const kick = (name: string, text: string) => a!.deliver(name, { id: newMessageId(), kind: 'message', from: a!.peerId, time: nowNs(), body: new Uint8Array(Buffer.from(text)) })
    const answers = (name: string) => logs.filter((l) => l.name === name && l.line.startsWith('ping got "pong ')).length
    await kick('ping', `${pong.did} ${N} 1`)
    await until(() => answers('ping') >= N, 120_000, `ping to get ${N} answers`)
    lag.disable()
    const deliverB = await b.ask<number[]>('timings')
    const sent = [...Array(N).keys()].map((i) => routed.get(`${ping.did} ping ${i + 1}`))
    if (sent.some((e) => e?.end === undefined || e.ok !== true || e.tries !== 1)) throw new Error('bench msg: a message of ping was not delivered on its first attempt')
    const hand = sent.slice(1).map((e) => e!.end! - e!.start) // the first one includes the lookup of pong's host
    const p50 = pct(hand, 0.5)
    rows.push({ name: 'message hand-off node 0 → node 1 (route → ok, one at a time), p50', value: p50, unit: 'ms', floor: rtt50, ratio: p50 / rtt50, target: '≤ 5 ms p50', met: p50 <= 5 })
    rows.push({ name: '  floor with the durable write: round trip + spool write', value: rtt50 + spool50, unit: 'ms', floor: rtt50 + spool50, ratio: p50 / (rtt50 + spool50) })
    rows.push({ name: 'message hand-off, p95', value: pct(hand, 0.95), unit: 'ms', floor: pct(rtt, 0.95), ratio: pct(hand, 0.95) / pct(rtt, 0.95) })
    rows.push({ name: '  of which delivery into pong\'s inbox on node 1, p50', value: pct(deliverB, 0.5), unit: 'ms' })
    rows.push({ name: 'node 0 main-thread event-loop delay then, p50', value: lag.percentile(50) / 1e6, unit: 'ms' })
    rows.push({ name: 'node 0 main-thread event-loop delay then, p99', value: lag.percentile(99) / 1e6, unit: 'ms' })
    // ping's line for answer k comes from the tick that sends message k + 1
    const line = (name: string, text: string) => logs.find((l) => l.name === name && l.line.startsWith(`${name} got "${text}"`))
    const e2e: number[] = []
    for (let k = 1; k < N; k++) {
      const s = line('ping', `pong ${k}`); const r = line('pong', `ping ${k + 1}`)
      if (s === undefined || r === undefined) throw new Error(`bench msg: no log line of ping's answer ${k} or pong's message ${k + 1}`)
      e2e.push(r.at - s.at)
    }
    const e50 = pct(e2e, 0.5)
    rows.push({ name: 'agent to agent (ping\'s tick sends: checkpoint, hand-off, pong\'s tick reads), p50', value: e50, unit: 'ms', floor: rtt50, ratio: e50 / rtt50 })
    rows.push({ name: 'agent to agent, p95', value: pct(e2e, 0.95), unit: 'ms' })

    await kick('ping2', `${pong.did} ${N2}`)
    await until(() => answers('ping2') >= N2, Number(process.env.BENCH_MSG_WAIT ?? 300_000), `ping2 to get ${N2} answers`, () => `${answers('ping2')} answers, ${[...routed.keys()].filter((k) => k.startsWith(ping2.did)).length} routed; pong read ${logs.filter((l) => l.name === 'pong').length}; last lines: ${logs.slice(-3).map((l) => `[${l.name}] ${l.line}`).join(' | ')}`)
    const sent2 = [...Array(N2).keys()].map((i) => routed.get(`${ping2.did} ping ${i + 1}`))
    if (sent2.some((e) => e?.end === undefined || e.ok !== true)) throw new Error('bench msg: a message of ping2 was not delivered')
    const retried = sent2.filter((e) => e!.tries !== 1).length
    const span = Math.max(...sent2.map((e) => e!.end!)) - sent2[0]!.start
    const perS = N2 / (span / 1000)
    rows.push({ name: `messages/s node 0 → node 1 (${N2}, window 64, answered)`, value: perS, unit: 'msg/s', floor: pipeFloor, ratio: pipeFloor / perS })
    // each message and its answer are written durably once (into pong's and ping2's inbox), on one disk
    const diskS = 1000 / (2 * spool50)
    rows.push({ name: '  storage floor: 1 / (2 spool writes), msg/s', value: diskS, unit: 'msg/s', floor: diskS, ratio: diskS / perS })
    if (retried > 0) rows.push({ name: '  of which sent again after a retry-able refusal', value: retried, unit: 'msgs' })

    // DID lookups from the nodes that neither host pong nor took part in the exchange: as a message's
    // router makes its first one (the DHT's answer as it is, when it names one host), and confirmed
    // (each provider asked whether it hosts the DID now: after a failure, and for `igord whereis`)
    const looks: number[] = []
    const confirmed: number[] = []
    const raws: number[] = []
    for (let i = 0; i < LOOKUPS; i++) {
      const n = remotes[1 + (i % 3)]
      for (const [confirm, into] of [[false, looks], [true, confirmed]] as const) {
        const h = await n.ask<{ ms: number; peer: string | null }>('find', { did: pong.did, ms: 10_000, confirm })
        if (h.peer !== info[0].peer) throw new Error(`bench msg: findHost from node ${2 + (i % 3)} found ${h.peer ?? 'nothing'}`)
        into.push(h.ms)
      }
      raws.push(await n.ask<number>('raw', { did: pong.did, ms: 10_000 }))
    }
    const l50 = pct(looks, 0.5)
    const r50 = pct(raws, 0.5)
    const c50 = pct(confirmed, 0.5)
    rows.push({ name: 'raw kad-dht findProviders (first provider), p50', value: r50, unit: 'ms' })
    rows.push({ name: 'DID lookup findHost (DHT answer as a router\'s first lookup), 5 nodes, p50', value: l50, unit: 'ms', floor: r50, ratio: l50 / r50 })
    rows.push({ name: 'DID lookup, p95', value: pct(looks, 0.95), unit: 'ms', floor: pct(raws, 0.95), ratio: pct(looks, 0.95) / pct(raws, 0.95) })
    rows.push({ name: 'DID lookup confirmed (the host asked), p50', value: c50, unit: 'ms', floor: r50 + rtt50, ratio: c50 / (r50 + rtt50) })
  } finally {
    await Promise.all(remotes.map((r) => r.stop().catch(() => {})))
    await a?.shutdown()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
  return rows
}
