/**
 * The price market of a node (DESIGN §9, docs/PROTOCOL.md `/igor/info/1.0.0`): what this node
 * asks and grants (answered to `/igor/info/1.0.0`), asking a peer the same ({@link queryInfo}), and
 * the choice of the peer an agent moves itself to when it asks for "the cheapest known peer"
 * ({@link cheapestPeers}). Carved out of p2p/node.ts (docs/RATIONALE.md "Splitting p2p/node.ts");
 * gets the few node facts it needs injected ({@link MarketHooks}), never the node.
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Manifest } from '../hostcalls/manifest.ts'
import type { PeerInfo } from './discovery.ts'
import { openChannel } from './migrate.ts'
import type { Timeouts } from './migrate.ts'
import { parseMultiaddr } from './peer.ts'
import type { Peer } from './peer.ts'
import type { Channel } from './wire.ts'

/** Protocol ID of the node information query (price, capabilities, addresses). */
export const INFO_PROTOCOL = '/igor/info/1.0.0'

/** A node's answer to `/igor/info/1.0.0`: price (microcents per million fuel), capabilities, dialable addresses. */
export interface NodeInfo { price: bigint; capabilities: string[]; addrs: string[]; agents: number }

/**
 * What the market needs of its node: its price (microcents per million fuel), the capabilities it
 * grants, its dialable addresses and number of hosted agents (read at each answer), the step
 * timeout (ms), and the peers it knows (p2p/discovery.ts `Discovery.peers`).
 */
export interface MarketHooks {
  price: bigint
  capabilities: ReadonlySet<string>
  addrs (): string[]
  agentCount (): number
  stepMs (): number
  peers (): Promise<PeerInfo[]>
}

/**
 * Dialable addresses of `peers` (as p2p/discovery.ts `peers` lists them: `--bootstrap`, found
 * through the DHT, connected) that grant every capability of `m` and ask a lower price than `price`
 * (microcents per million fuel), cheapest first (equal prices: in the order they were listed), one
 * address each. Peers without a known price, capabilities or address, or whose first address does
 * not parse, are skipped.
 * @throws SyntaxError when a listed price is not an integer
 */
export function cheapestOf (peers: PeerInfo[], m: Manifest, price: bigint): Multiaddr[] {
  const need = [...m.capabilities.keys()]
  const offers: { price: bigint; addr: Multiaddr }[] = []
  for (const p of peers) {
    if (p.price === undefined || p.capabilities === undefined || p.addrs.length === 0) continue
    const asked = BigInt(p.price)
    if (asked >= price || !need.every((c) => p.capabilities!.includes(c))) continue
    try { offers.push({ price: asked, addr: parseMultiaddr(p.addrs[0], 'peer') }) } catch { /* skipped */ }
  }
  offers.sort((a, b) => (a.price < b.price ? -1 : a.price > b.price ? 1 : 0))
  return offers.map((o) => o.addr)
}

/** The market part of a node: answers `/igor/info/1.0.0` and picks cheaper peers. */
export class Market {
  readonly #h: MarketHooks
  constructor (hooks: MarketHooks) { this.#h = hooks }

  /**
   * {@link cheapestOf} over the peers the node knows now. Peers that do not answer
   * `/igor/info/1.0.0` carry no price and are skipped.
   */
  async cheapestPeers (m: Manifest): Promise<Multiaddr[]> {
    return cheapestOf(await this.#h.peers(), m, this.#h.price)
  }

  /** Answers one `/igor/info/1.0.0` stream with this node's {@link NodeInfo}; never throws (a failed stream is aborted). */
  async answerInfo (ch: Channel): Promise<void> {
    try {
      await ch.send({ t: 'info', v: 1, price: this.#h.price, capabilities: [...this.#h.capabilities], addrs: this.#h.addrs(), agents: this.#h.agentCount() }, 'info', this.#h.stepMs())
      await ch.close()
    } catch { ch.abort() }
  }
}

/**
 * Asks a peer for its {@link NodeInfo}.
 * @throws NetworkError when it cannot be reached or answers malformed
 */
export async function queryInfo (peer: Peer, addr: Multiaddr, t: Timeouts): Promise<NodeInfo> {
  const ch = await openChannel(peer, addr, INFO_PROTOCOL, t)
  try {
    const f = await ch.recv('info', t.stepMs, ['info'])
    const price = typeof f.price === 'bigint' ? f.price : BigInt(Number(f.price))
    const list = (v: unknown) => Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
    return { price, capabilities: list(f.capabilities), addrs: list(f.addrs), agents: Number(f.agents) }
  } finally { await ch.close() }
}
