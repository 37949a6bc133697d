// test-timeout: 600
/**
 * A hostile DHT peer against real `igord node` children on 127.0.0.1 (issue 9; p2p/dht-store.ts
 * with its default bounds): a libp2p peer of its own (test/evil-peer.ts) sends 1500 `ADD_PROVIDER`
 * messages for random keys and a `PUT_VALUE` to node 1. Node 1 keeps no more of its records than
 * the per-peer bound (1024) — counted from outside, by asking node 1 `GET_PROVIDERS` for every key
 * — refuses the rest and the value with lines in its log, and still works: an agent born on node 2
 * afterwards is found from node 1 by `igord whereis`.
 */
import { randomBytes } from 'node:crypto'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { DEFAULT_DHT_LIMITS } from '../p2p/dht-store.ts'
import type { Peer } from '../p2p/peer.ts'
import * as evil from './evil-peer.ts'
import { agentWasm, cleanup, igord } from './helpers.ts'
import { nodeTracker, startNode, stopNode, until } from './node-helpers.ts'

const { track, killAll } = nodeTracker()
let X: Peer | undefined
test.after(async () => {
  try { await X?.stop() } catch { /* stopped */ }
  await killAll()
  cleanup()
})

/** `igord whereis <did> --node <dir> --json`: the host's peer ID, or null when not found (exit 11). */
function whereis (dir: string, did: string): string | null {
  const r = igord(['whereis', did, '--node', dir, '--timeout', '5s', '--json'], 30_000)
  if (r.code === 11) return null
  if (r.code !== 0) throw new Error(`whereis failed (${r.code}): ${r.stderr}`)
  return (JSON.parse(r.stdout) as { peer: string }).peer
}

test('1500 ADD_PROVIDER from one peer: node 1 holds at most 1024 of them, says so, refuses PUT_VALUE, and still finds a real agent', async () => {
  const n1 = track(await startNode())
  const n2 = track(await startNode({ args: ['--bootstrap', n1.addr] }))
  X = await evil.startEvil()
  const me = X.peerId.toString()

  const keys = Array.from({ length: 1500 }, () => Uint8Array.from([0x12, 0x20, ...randomBytes(32)]))
  await evil.kadAddProviders(X, n1.addr, keys)
  assert.is(await evil.kadPutValue(X, n1.addr), false, 'PUT_VALUE: the node resets the stream')

  // what node 1 holds, asked from outside: the keys it names the evil peer as provider of
  let held = 0
  let next = 0
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < keys.length) { const k = keys[next++]; if ((await evil.kadProviders(X!, n1.addr, k)).includes(me)) held++ }
  }))
  assert.ok(held > 0, 'some records were stored')
  assert.ok(held <= DEFAULT_DHT_LIMITS.maxPerPeer, `node 1 holds ${held} records of one peer (bound ${DEFAULT_DHT_LIMITS.maxPerPeer})`)
  await until(() => n1.live.stderr().includes(`dht: refused a provider record from ${me}: `), 30_000, 'node 1 to log a refusal')
  assert.match(n1.live.stderr(), /dht: refused a value \(PUT_VALUE\): igord keeps no DHT values/)

  // honest records still work: an agent born on node 2 is found from node 1
  const r = igord(['run', agentWasm('heartbeat'), '--node', n2.dir, '--interval', '50ms'])
  assert.is(r.code, 0, r.stderr)
  const did = /(did:key:\S+)/.exec(r.stdout)![1]
  await until(() => whereis(n1.dir, did) === n2.peer, 60_000, 'whereis from node 1 to find the agent on node 2')

  const refusals = n1.live.stderr().split('\n').filter((l) => l.includes('dht: refused'))
  assert.ok(refusals.length <= 40, `refusals are noted rate limited (${refusals.length} lines)`)
  const ends = await Promise.all([n1, n2].map(stopNode))
  for (const e of ends) assert.is(e.code, 0, e.stderr)
})

test.run()
