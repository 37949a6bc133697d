/**
 * mDNS discovery behind `igord node --mdns` (p2p/mdns.ts, issue 9). No test here sends multicast:
 * the real `@libp2p/mdns` service is only constructed, never started; the wiring is tested with a
 * stub service (test/mdns-stub.ts) that "finds" a node on 127.0.0.1. Covered: the option is in
 * `igord node --help` and off by default; `startPeer` has an `mdns` service only when given one
 * (libp2p starts and stops it with the node); `--mdns` on a real node makes the peer it reports a
 * connected peer listed by `igord peers` with source `mdns`; `@libp2p/mdns` loads with igord's
 * service tag, or `--mdns` says it cannot load it.
 */
import { randomBytes } from 'node:crypto'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RequestError } from '../p2p/errors.ts'
import { MDNS_PACKAGE, MDNS_SERVICE_TAG, mdnsService } from '../p2p/mdns.ts'
import { dialableAddrs, startPeer } from '../p2p/peer.ts'
import type { Peer } from '../p2p/peer.ts'
import { cleanup, igord } from './helpers.ts'
import { mdnsStub } from './mdns-stub.ts'
import type { StubLog } from './mdns-stub.ts'
import { nodeTracker, startNode, stopNode, until } from './node-helpers.ts'

const LOCAL = ['/ip4/127.0.0.1/tcp/0']
const { track, killAll } = nodeTracker()
const peers: Peer[] = []
test.after.each(killAll)
test.after(async () => { for (const p of peers) await p.stop(); cleanup() })

test('igord node --help lists --mdns, off by default', () => {
  const r = igord(['node', '--help'])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stdout.replace(/\s+/g, ' '), /--mdns also find igord nodes on the LAN by mDNS \(multicast 224\.0\.0\.251:5353; off by default\)/)
})

test('startPeer: no mdns service by default; a given one is a service that libp2p starts and stops with the node', async () => {
  const plain = await startPeer(randomBytes(32), LOCAL)
  peers.push(plain)
  assert.is(plain.services.mdns, undefined)
  const other = await startPeer(randomBytes(32), LOCAL)
  peers.push(other)
  const log: StubLog = { started: 0, stopped: 0, reported: 0 }
  const p = await startPeer(randomBytes(32), LOCAL, { mdns: mdnsStub(dialableAddrs(other)[0], log) })
  assert.ok(p.services.mdns !== undefined)
  assert.is(log.started, 1)
  // libp2p takes what a discovery service reports into its peer store
  await until(() => log.reported === 1, 10_000, 'the stub to report its peer')
  await until(() => p.peerStore.has(other.peerId) as unknown as boolean, 10_000, 'the reported peer in the peer store')
  assert.ok(await p.peerStore.has(other.peerId))
  await p.stop()
  assert.is(log.stopped, 1)
})

test('@libp2p/mdns: loaded with igord\'s service tag and not started, or --mdns says it cannot load it', async () => {
  let factory
  try { factory = await mdnsService() } catch (e) {
    assert.instance(e, RequestError)
    assert.match((e as Error).message, new RegExp(`^--mdns: cannot load ${MDNS_PACKAGE} \\(.*\\); install igord's dependencies \\(npm install\\) or run without --mdns$`))
    console.log(`  (${MDNS_PACKAGE} is not installed here: its loading is checked by the error it gives)`)
    return
  }
  // constructed only: start() would open the multicast socket
  const log = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false, newScope: () => log })
  const service = factory({ logger: { forComponent: () => log } as never, addressManager: {} }) as unknown as Record<string | symbol, unknown>
  assert.is(service[Symbol.toStringTag], '@libp2p/mdns')
  assert.is(service.serviceTag, MDNS_SERVICE_TAG)
  assert.is(service.mdns, undefined, 'not started')
})

test('igord node --mdns: the peer mDNS finds is connected and listed with source mdns; without --mdns no mDNS at all', async () => {
  const n1 = track(await startNode())
  const stub = `mdns-stub:${n1.addr}` // test/igord-faulty.ts: the stub stands in for @libp2p/mdns
  const [withMdns, without] = await Promise.all([startNode({ fault: stub, args: ['--mdns'] }), startNode({ fault: stub })].map(async (p) => track(await p)))
  const list = (dir: string) => {
    const r = igord(['peers', '--node', dir, '--json'], 30_000)
    if (r.code !== 0) throw new Error(`peers failed (${r.code}): ${r.stderr}`)
    return (JSON.parse(r.stdout) as { peers: { peer: string; source: string }[] }).peers
  }
  await until(() => list(withMdns.dir).some((p) => p.peer === n1.peer && p.source === 'mdns'), 60_000, 'the node with --mdns to list node 1 with source mdns')
  assert.equal(list(without.dir), [], 'without --mdns (and no bootstrap) the node knows no peer')
  const [e1, eWith, eWithout] = await Promise.all([n1, withMdns, without].map(stopNode))
  for (const e of [e1, eWith, eWithout]) assert.is(e.code, 0, e.stderr)
  assert.match(eWith.stderr, new RegExp(`mdns: looking for igord nodes on the LAN \\(${MDNS_SERVICE_TAG.replace(/\./g, '\\.')}\\)`))
  assert.match(eWith.stderr, new RegExp(`mdns: connected to ${n1.peer}`))
  assert.not.match(eWithout.stderr, /mdns/)
})

test.run()
