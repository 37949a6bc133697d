/**
 * Agent-to-agent message benchmarks (issue 9), five in-process nodes on 127.0.0.1, nodes 1–4
 * bootstrapped from node 0 only (the kad-dht discovery finds the rest):
 * - floor: a raw libp2p stream round trip between node 0 and node 1 (fresh stream on the warm
 *   connection, a 300-byte request, an 8-byte answer: the shape of one `/igor/msg/1.0.0` exchange);
 * - message hand-off latency, p50 and p95: `ping` (agents-as) on node 0 sends N messages to `pong`
 *   on node 1, which answers each. Measured on node 0 from its `route(env)` call — made by the
 *   sender's mailbox right after the checkpoint of the tick that sent the message (the worker hands
 *   the outbox to the main thread) — until node 1's `ok`: the recipient's host found by
 *   `discovery.findHost` (DHT provider lookup + `/igor/host/1.0.0` question), the signed message sent
 *   over `/igor/msg/1.0.0`, its signature and sender checked, and the message spooled durably into
 *   pong's inbox. Target ≤ 5 ms p50. The agents' tick pacing is not in it (a message wakes its
 *   recipient at once; the time a message waits in the outbox behind earlier ones is not counted).
 *   Beside it, to show where the time goes: node 0's `findHost` calls (one per message), node 1's
 *   delivery into pong's inbox, the raw round trip sampled every 50 ms during the exchange, and the
 *   (shared) main thread's event-loop delay then — all five nodes live in this one process.
 * - end to end, p50: from the same `route` call to pong's log line saying it read the message in
 *   a tick (the line reaches node 1's main thread; both nodes share one clock);
 * - messages/s one way: N / (first `route` call → last `ok`) on node 0 while pong answers every
 *   message the other way; a sender's messages to one recipient go one at a time (in order), so
 *   the floor is 1 / the raw round trip;
 * - DID lookup: `discovery.findHost(did)` of pong's DID from nodes 2–4, p50; floor: the raw kad-dht
 *   `findProviders` of the same key until its first provider, from the same nodes.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { join } from 'node:path'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import { didKey } from '../p2p/dht.ts'
import { IgordNode } from '../p2p/node.ts'
import { newMessageId, nowNs } from '../runtime/mailbox.ts'
import type { BenchRow } from './row.ts'

const RAW = '/igord-bench/rtt/1.0.0'
/** Messages ping sends in the measured run. */
const N = 200
const LOOKUPS = 30

const pct = (xs: number[], p: number) => { const s = [...xs].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(s.length * p))] }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const AGENTS = join(import.meta.dirname, '..', 'agents-as', 'build')

/** One raw round trip from `from` to `to` on a fresh stream: 300 bytes out, 8 back; ms. */
async function rawRtt (from: IgordNode, to: IgordNode): Promise<number> {
  const payload = new Uint8Array(300).map((_, i) => i)
  const t0 = performance.now()
  const s = await from.peer.dialProtocol(to.peer.getMultiaddrs()[0], RAW)
  s.send(payload)
  await s.close()
  let n = 0
  for await (const c of s) n += c.byteLength
  if (n !== 8) throw new Error('raw round trip: no answer')
  return performance.now() - t0
}

/** Waits until `pred` holds, polling every 20 ms, at most `ms`. */
async function until (pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now()
  while (!(await pred())) {
    if (Date.now() - t0 > ms) throw new Error(`bench msg: timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** Runs the message and lookup benchmarks (about 1–3 min: most of it the 200 messages at today's rate). */
export async function bench (): Promise<BenchRow[]> {
  const dirs: string[] = []
  const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'igord-bench-msg-')); dirs.push(d); return d }
  const logs: { at: number; name: string; line: string }[] = []
  const mk = (bootstrap: string[]) => IgordNode.start({
    dir: tmp(), listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, capabilities: ['clock', 'log', 'inbox', 'timer', 'message'], price: 1000n, intervalMs: 1000, tickThreads: 1,
    note: () => {}, emit: (name, line) => logs.push({ at: performance.now(), name, line }),
  })
  const nodes: IgordNode[] = []
  const rows: BenchRow[] = []
  try {
    nodes.push(await mk([]))
    for (let i = 1; i < 5; i++) nodes.push(await mk([nodes[0].addrs[0]]))
    const [a, b] = nodes
    await b.peer.handle(RAW, async (stream) => {
      for await (const _ of stream) { /* drain */ }
      stream.send(new Uint8Array(8)); await stream.close()
    })

    const pong = await b.run({ wasm: join(AGENTS, 'pong.wasm'), name: 'pong', budget: 10n ** 13n })
    const ping = await a.run({ wasm: join(AGENTS, 'ping.wasm'), name: 'ping', budget: 10n ** 13n })
    // the DHT fills (every node bootstrapped from node 0) and both agents become findable everywhere
    for (const n of nodes) await until(async () => (await n.discovery.findHost(pong.did, 2000)) !== null && (await n.discovery.findHost(ping.did, 2000)) !== null, 60_000, 'both agents to be found from every node')

    // warm-up: connection, JIT of both paths
    for (let i = 0; i < 50; i++) await rawRtt(a, b)
    const rtt: number[] = []
    for (let i = 0; i < 200; i++) rtt.push(await rawRtt(a, b))
    const rtt50 = pct(rtt, 0.5)
    rows.push({ name: 'raw libp2p stream round trip (300 B / 8 B), p50', value: rtt50, unit: 'ms' })
    rows.push({ name: 'raw libp2p stream round trip, p95', value: pct(rtt, 0.95), unit: 'ms' })

    // the hand-offs node 0 makes for ping, timed around its router
    const routed = new Map<string, { start: number; end?: number; ok?: boolean; text: string; tries: number }>()
    const route = a.route.bind(a)
    a.route = async (env: Envelope): Promise<SendOutcome> => {
      const text = Buffer.from(env.body).toString()
      const e = { start: performance.now(), text, tries: (routed.get(text)?.tries ?? 0) + 1 } as { start: number; end?: number; ok?: boolean; text: string; tries: number }
      routed.set(text, e)
      const out = await route(env)
      e.end = performance.now(); e.ok = out.ok
      return out
    }
    // parts of the hand-off: node 0's lookups (one per message, plus a sender check of pong every
    // 10 s) and node 1's delivery into pong's inbox (spool write in pong's worker, and back)
    const findA: number[] = []
    const deliverB: number[] = []
    const find = a.discovery.findHost.bind(a.discovery)
    a.discovery.findHost = async (did, ms) => { const t = performance.now(); try { return await find(did, ms) } finally { findA.push(performance.now() - t) } }
    const deliver = b.deliver.bind(b)
    b.deliver = async (to, m, o) => { const t = performance.now(); try { return await deliver(to, m, o) } finally { deliverB.push(performance.now() - t) } }
    // the same raw round trip, every 50 ms while the exchange runs, and the main thread's event-loop delay
    const busyRtt: number[] = []
    let exchanging = true
    const sampler = (async () => { while (exchanging) { busyRtt.push(await rawRtt(a, b)); await sleep(50) } })()
    const lag = monitorEventLoopDelay({ resolution: 5 })
    lag.enable()
    const send = (text: string) => a.deliver('ping', { id: newMessageId(), kind: 'message', from: a.peerId, time: nowNs(), body: new Uint8Array(Buffer.from(text)) })
    const pongGot = (k: number) => logs.find((l) => l.name === 'pong' && l.line.includes(`"ping ${k}"`))
    const pingGot = () => logs.filter((l) => l.name === 'ping' && l.line.includes('ping got "pong ')).length
    await send(`${pong.did} ${N}`)
    await until(() => pingGot() >= N, 120_000, `ping to get ${N} answers`)

    exchanging = false
    lag.disable()
    await sampler
    const sent = [...Array(N).keys()].map((i) => routed.get(`ping ${i + 1}`))
    if (sent.some((e) => e?.end === undefined || e.ok !== true || e.tries !== 1)) throw new Error('bench msg: a message was not delivered on its first attempt')
    const hand = sent.map((e) => e!.end! - e!.start)
    const p50 = pct(hand, 0.5)
    rows.push({ name: 'message hand-off node 0 → node 1, p50', value: p50, unit: 'ms', floor: rtt50, ratio: p50 / rtt50, target: '≤ 5 ms p50', met: p50 <= 5 })
    rows.push({ name: 'message hand-off node 0 → node 1, p95', value: pct(hand, 0.95), unit: 'ms', floor: pct(rtt, 0.95), ratio: pct(hand, 0.95) / pct(rtt, 0.95) })
    rows.push({ name: '  of which findHost on node 0 (per message), p50', value: pct(findA, 0.5), unit: 'ms' })
    rows.push({ name: '  of which delivery into pong\'s inbox on node 1, p50', value: pct(deliverB, 0.5), unit: 'ms' })
    rows.push({ name: 'raw round trip during the exchange, p50', value: pct(busyRtt, 0.5), unit: 'ms' })
    rows.push({ name: 'main-thread event-loop delay during it, p50', value: lag.percentile(50) / 1e6, unit: 'ms' })
    rows.push({ name: 'main-thread event-loop delay during it, p99', value: lag.percentile(99) / 1e6, unit: 'ms' })
    const e2e = sent.map((e, i) => pongGot(i + 1)!.at - e!.start)
    rows.push({ name: 'message end to end (route → read in a tick), p50', value: pct(e2e, 0.5), unit: 'ms', floor: rtt50, ratio: pct(e2e, 0.5) / rtt50 })
    rows.push({ name: 'message end to end, p95', value: pct(e2e, 0.95), unit: 'ms' })
    const span = sent[N - 1]!.end! - sent[0]!.start
    const perS = N / (span / 1000)
    const floorS = 1000 / rtt50
    rows.push({ name: `messages/s node 0 → node 1 (${N}, answered)`, value: perS, unit: 'msg/s', floor: floorS, ratio: floorS / perS })

    // DID lookups from the nodes that neither host pong nor took part in the exchange
    const key = await didKey(pong.did)
    const looks: number[] = []
    const raws: number[] = []
    for (let i = 0; i < LOOKUPS; i++) {
      const n = nodes[2 + (i % 3)]
      let t0 = performance.now()
      const h = await n.discovery.findHost(pong.did, 10_000)
      looks.push(performance.now() - t0)
      if (h?.peer !== b.peerId) throw new Error(`bench msg: findHost from node ${2 + (i % 3)} found ${h?.peer ?? 'nothing'}`)
      t0 = performance.now()
      const stop = new AbortController()
      const limit = setTimeout(() => stop.abort(), 10_000)
      let found = false
      try {
        for await (const ev of n.peer.services.dht.findProviders(key, { signal: stop.signal })) {
          if (ev.name === 'PROVIDER' && ev.providers.length > 0) { found = true; break }
        }
      } finally { clearTimeout(limit) }
      if (!found) throw new Error('bench msg: raw findProviders found no provider')
      raws.push(performance.now() - t0)
    }
    const l50 = pct(looks, 0.5)
    const r50 = pct(raws, 0.5)
    rows.push({ name: 'raw kad-dht findProviders (first provider), p50', value: r50, unit: 'ms' })
    rows.push({ name: 'DID lookup discovery.findHost, 5 nodes, p50', value: l50, unit: 'ms', floor: r50, ratio: l50 / r50 })
    rows.push({ name: 'DID lookup, p95', value: pct(looks, 0.95), unit: 'ms', floor: pct(raws, 0.95), ratio: pct(looks, 0.95) / pct(raws, 0.95) })
  } finally {
    for (const n of nodes) await n.shutdown()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
  return rows
}
