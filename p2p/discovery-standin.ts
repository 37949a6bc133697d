/**
 * A stand-in for the node's DID discovery (issue 9 seam, `p2p/discovery.ts` of the dht helper):
 * `findHost` asks every connected peer, over `/igor/whereis/1.0.0`, whether it hosts the DID, in
 * rounds until one says yes or the timeout passes. No announcements: a node answers from the agents
 * it hosts. Kept in its own file so that it can be dropped when the kad-dht discovery lands (then
 * p2p/node.ts imports `Discovery` and the real implementation from p2p/discovery.ts instead).
 *
 * `/igor/whereis/1.0.0`: one stream per query; asker → node `where {did}`, node → asker
 * `here {hosts: bool}`; CBOR frames (p2p/wire.ts), at most {@link MAX_SMALL_FRAME} bytes.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Multiaddr } from '@multiformats/multiaddr'
import { openChannel } from './migrate.ts'
import type { Timeouts } from './migrate.ts'
import type { Peer } from './peer.ts'
import { Channel, MAX_SMALL_FRAME, PeerSlots, textOf } from './wire.ts'

/** Where an agent lives: its host's peer ID and dialable multiaddrs (with /p2p/). */
export interface HostInfo { peer: string; addrs: string[] }
/** A known peer, as `igord peers` lists it. */
export interface PeerInfo { peer: string; addrs: string[]; price?: string; capabilities?: string[]; source: 'bootstrap' | 'dht' | 'mdns' | 'connected' }
/** How a node finds where an agent lives (the issue-9 seam; the real one is p2p/discovery.ts). */
export interface Discovery {
  /** This node now hosts `did` (birth, restore, arrival): announce it. */
  announce (did: string): Promise<void>
  /** This node no longer hosts `did` (handoff): stop announcing it. */
  withdraw (did: string): Promise<void>
  /** The host of `did`, or null when none is found within `timeoutMs`. */
  findHost (did: string, timeoutMs: number): Promise<HostInfo | null>
  /** Peers this node knows. */
  peers (): Promise<PeerInfo[]>
}

/** Protocol ID of the stand-in's query. */
export const WHEREIS_PROTOCOL = '/igor/whereis/1.0.0'

/** Pause between two rounds of questions, ms. */
const ROUND_MS = 250

/** {@link Discovery} by asking the connected peers (see the module doc). */
export class ConnectedPeersDiscovery implements Discovery {
  readonly #peer: Peer
  readonly #hosts: (did: string) => boolean
  readonly #t: Timeouts
  readonly #gate = new PeerSlots(4, 64, 'whereis queries')

  /** @param hosts whether this node hosts `did` now (what it answers) */
  constructor (peer: Peer, hosts: (did: string) => boolean, t: Timeouts) {
    this.#peer = peer
    this.#hosts = hosts
    this.#t = t
  }

  /** Answers `/igor/whereis/1.0.0` on this node. */
  async install (): Promise<void> {
    await this.#peer.handle(WHEREIS_PROTOCOL, (stream, conn) => { void this.#answer(new Channel(stream, conn.remotePeer.toString(), MAX_SMALL_FRAME + 16)) }, { maxInboundStreams: 64 })
  }

  async #answer (ch: Channel): Promise<void> {
    if (this.#gate.enter(ch.peer) !== null) { ch.abort(); return }
    try {
      const f = await ch.recv('where', this.#t.stepMs, ['where'], MAX_SMALL_FRAME)
      await ch.send({ t: 'here', hosts: this.#hosts(textOf(f, 'did', 'where', 256)) }, 'here', this.#t.stepMs)
      await ch.close()
    } catch { ch.abort() } finally { this.#gate.leave(ch.peer) }
  }

  async announce (_did: string): Promise<void> {}
  async withdraw (_did: string): Promise<void> {}

  /** Dialable addresses of the connected peers, by peer ID. */
  #connected (): Map<string, Multiaddr> {
    const out = new Map<string, Multiaddr>()
    for (const c of this.#peer.getConnections()) {
      const id = c.remotePeer.toString()
      if (!out.has(id)) out.set(id, c.remoteAddr.toString().includes('/p2p/') ? c.remoteAddr : c.remoteAddr.encapsulate(`/p2p/${id}`))
    }
    return out
  }

  async findHost (did: string, timeoutMs: number): Promise<HostInfo | null> {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      const asked = [...this.#connected()].map(async ([id, addr]): Promise<HostInfo | null> => {
        let ch: Channel | null = null
        try {
          ch = await openChannel(this.#peer, addr, WHEREIS_PROTOCOL, this.#t, MAX_SMALL_FRAME + 16)
          await ch.send({ t: 'where', did }, 'where', this.#t.stepMs)
          const a = await ch.recv('here', this.#t.stepMs, ['here'], MAX_SMALL_FRAME)
          await ch.close()
          return a.hosts === true ? { peer: id, addrs: [addr.toString()] } : null
        } catch { ch?.abort(); return null }
      })
      const found = (await Promise.all(asked)).find((h) => h !== null)
      if (found !== undefined && found !== null) return found
      if (performance.now() + ROUND_MS >= deadline) return null
      await sleep(ROUND_MS)
    }
  }

  async peers (): Promise<PeerInfo[]> {
    return [...this.#connected()].map(([peer, addr]) => ({ peer, addrs: [addr.toString()], source: 'connected' as const }))
  }
}
