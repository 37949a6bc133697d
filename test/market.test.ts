/**
 * p2p/market.ts: the choice of the peer an agent that asks for "the cheapest known peer" moves to
 * (`cheapestOf`), without a network: cheaper only, every capability granted, cheapest first with
 * ties in listed order, unusable peers skipped.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { parseManifest } from '../hostcalls/manifest.ts'
import { cheapestOf } from '../p2p/market.ts'
import type { PeerInfo } from '../p2p/discovery.ts'

const peerId = (n: number) => `12D3KooW${'A'.repeat(43)}${'ABCDEFGHJK'[n]}`
const addr = (n: number) => `/ip4/127.0.0.1/tcp/${4000 + n}/p2p/${peerId(n)}`
const info = (n: number, price: string | undefined, capabilities: string[] | undefined, addrs = [addr(n)]): PeerInfo =>
  ({ peer: peerId(n), addrs, source: 'dht', ...(price === undefined ? {} : { price }), ...(capabilities === undefined ? {} : { capabilities }) })
const manifest = (caps: string[]) => parseManifest(new TextEncoder().encode(JSON.stringify({ capabilities: caps })), 'test.manifest.json')

test('only peers cheaper than this node that grant every capability, cheapest first, ties in listed order', () => {
  const peers = [
    info(1, '50', ['log', 'clock']),
    info(2, '100', ['log', 'clock']), // not cheaper (equal)
    info(3, '20', ['log']), // lacks clock
    info(4, '30', ['clock', 'log', 'rand']),
    info(5, '50', ['log', 'clock']), // ties with 1: after it
    info(6, '10', ['log', 'clock'], []), // no address
    info(7, undefined, ['log', 'clock']), // no price known (did not answer /igor/info)
    info(8, '5', undefined), // no capabilities known
    info(9, '1', ['log', 'clock'], ['not a multiaddr']), // unparsable address: skipped
  ]
  const got = cheapestOf(peers, manifest(['log', 'clock']), 100n).map((a) => a.toString())
  assert.equal(got, [addr(4), addr(1), addr(5)])
})

test('an agent that needs nothing may go to any cheaper peer; none cheaper gives none', () => {
  const peers = [info(1, '7', []), info(2, '9', ['log'])]
  assert.equal(cheapestOf(peers, manifest([]), 8n).map((a) => a.toString()), [addr(1)])
  assert.equal(cheapestOf(peers, manifest([]), 7n), [])
  assert.equal(cheapestOf([], manifest(['log']), 1000n), [])
})

test.run()
