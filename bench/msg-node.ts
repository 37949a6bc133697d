/**
 * One igord node of bench/msg.ts in a worker thread of its own (its own event loop, and its own
 * tick worker, as a node in its own process has), driven by the bench's main thread with
 * structured-clone messages:
 * - `workerData`: `{ dir, bootstrap: string[] }` (data directory; multiaddrs with /p2p/);
 * - requests `{ re, t, … }`, each answered `{ re, ok: true, value }` or `{ re, ok: false, error }`:
 *   `run {wasm, name}` → AgentInfo; `find {did, ms, confirm}` → `{ ms, peer }` (`discovery.findHost`, timed);
 *   `raw {did, ms}` → ms of a raw kad-dht `findProviders` until its first provider; `rtt` installs
 *   the raw round-trip handler of {@link RAW_PROTOCOL}; `timings` → the durations (ms) of the
 *   node's `deliver` calls so far (agent messages into a hosted agent's inbox), and clears them;
 *   `stop` shuts the node down;
 * - events without `re`: `{ ev: 'log', at, name, line }` for each agent log line (`at`: ms since
 *   the Unix epoch, `performance.timeOrigin + performance.now()`), and `{ ev: 'ready', addrs, peer }`
 *   once the node runs.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { didKey } from '../p2p/dht.ts'
import { IgordNode } from '../p2p/node.ts'

/** Protocol of the raw round trip the bench uses as its floor (one request, an 8-byte answer). */
export const RAW_PROTOCOL = '/igord-bench/rtt/1.0.0'

/** Protocol of the raw pipelined exchange (300-byte requests, each answered with 8 bytes, one stream). */
export const RAW_PIPE_PROTOCOL = '/igord-bench/pipe/1.0.0'

/** Absolute time, ms since the Unix epoch, comparable across threads. */
export const now = (): number => performance.timeOrigin + performance.now()

async function main (): Promise<void> {
  const port = parentPort
  if (port === null) throw new Error('bench/msg-node.ts runs in a worker thread')
  const { dir, bootstrap } = workerData as { dir: string; bootstrap: string[] }
  const node = await IgordNode.start({
    dir, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, capabilities: ['clock', 'log', 'inbox', 'timer', 'message'], price: 1000n, intervalMs: 1000, tickThreads: 1,
    note: () => {}, emit: (name, line) => port.postMessage({ ev: 'log', at: now(), name, line }),
  })
  const delivered: number[] = []
  const deliver = node.deliver.bind(node)
  node.deliver = async (to, m, o) => { const t = performance.now(); try { return await deliver(to, m, o) } finally { if (m.kind === 'message') delivered.push(performance.now() - t) } }
  const handlers: Record<string, (m: Record<string, unknown>) => Promise<unknown>> = {
    run: async (m) => await node.run({ wasm: String(m.wasm), name: String(m.name), budget: 10n ** 13n }),
    find: async (m) => {
      const t = performance.now()
      const h = await node.discovery.findHost(String(m.did), Number(m.ms), { confirm: m.confirm !== false })
      return { ms: performance.now() - t, peer: h?.peer ?? null }
    },
    raw: async (m) => {
      const key = await didKey(String(m.did))
      const t = performance.now()
      const stop = new AbortController()
      const limit = setTimeout(() => stop.abort(), Number(m.ms))
      try {
        for await (const ev of node.peer.services.dht.findProviders(key, { signal: stop.signal })) {
          if (ev.name === 'PROVIDER' && ev.providers.length > 0) return performance.now() - t
        }
      } finally { clearTimeout(limit); stop.abort() }
      throw new Error('bench msg: raw findProviders found no provider')
    },
    rtt: async () => {
      await node.peer.handle(RAW_PROTOCOL, async (stream) => {
        for await (const _ of stream) { /* drain */ }
        stream.send(new Uint8Array(8)); await stream.close()
      })
      await node.peer.handle(RAW_PIPE_PROTOCOL, async (stream) => {
        // every 300 bytes read are answered with 8 bytes, as they arrive
        let have = 0
        for await (const c of stream) {
          have += c.byteLength
          const n = Math.floor(have / 300)
          have -= n * 300
          if (n > 0) stream.send(new Uint8Array(8 * n))
        }
        await stream.close()
      })
      return null
    },
    timings: async () => delivered.splice(0),
    stop: async () => { await node.shutdown(); return null },
  }
  port.on('message', (m: Record<string, unknown> & { re: number; t: string }) => {
    handlers[m.t](m).then((value) => port.postMessage({ re: m.re, ok: true, value }), (e: Error) => port.postMessage({ re: m.re, ok: false, error: e.message }))
  })
  port.postMessage({ ev: 'ready', addrs: node.addrs, peer: node.peerId })
}

// imported by bench/msg.ts for its constants: a node only in the bench's worker threads
if (parentPort !== null && (workerData as { dir?: string } | null)?.dir !== undefined) await main()
