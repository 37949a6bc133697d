/**
 * Where agents live and which peers exist (issue 9; docs/PROTOCOL.md "Discovery"), through
 * libp2p's own machinery: a Kademlia DHT (p2p/dht.ts) whose provider records, keyed by a CID of the
 * agent's DID, name the node that hosts it; the peer store (bootstrap peers, peers the DHT found,
 * peers connected) for `igord peers`, with each peer's price and capabilities from
 * `/igor/info/1.0.0` (cached).
 *
 * A provider record cannot be taken back from the peers that store it: at handoff the old host
 * removes its own record and stops re-providing it, so the stored copies expire within
 * {@link RECORD_VALIDITY_MS}. Until then a lookup may find the old host too, so every provider found
 * is asked `/igor/host/1.0.0` whether it hosts the agent now; an old host answers `moved` with the
 * new host (it forwards messages there too, p2p/inbox.ts), which is then asked in turn.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Multiaddr } from '@multiformats/multiaddr'
import { multiaddr } from '@multiformats/multiaddr'
import { didKey } from './dht.ts'
import { NetworkError } from './errors.ts'
import type { Peer } from './peer.ts'
import { Channel, MAX_SMALL_FRAME } from './wire.ts'

export { RECORD_VALIDITY_MS } from './dht.ts'

/** Where an agent lives: its host's peer ID and dialable multiaddrs (with /p2p/). */
export interface HostInfo { peer: string; addrs: string[] }

/** A known peer, as `igord peers` lists it. price: microcents per million fuel, decimal. */
export interface PeerInfo { peer: string; addrs: string[]; price?: string; capabilities?: string[]; source: 'bootstrap' | 'dht' | 'mdns' | 'connected' }

/** How a node finds agents and peers (the seam of issue 9). */
export interface Discovery {
  /** This node now hosts `did` (birth, restore, arrival): announce it (kad-dht provider record keyed by the DID). */
  announce (did: string): Promise<void>
  /** This node no longer hosts `did` (handoff): stop announcing it. */
  withdraw (did: string): Promise<void>
  /**
   * The host of `did`, or null when none is found within `timeoutMs`. With `confirm` false, a DHT
   * answer that names one provider (with addresses) is taken as it is, without asking it; the
   * default asks every provider found whether it hosts the DID now.
   */
  findHost (did: string, timeoutMs: number, opts?: { confirm?: boolean }): Promise<HostInfo | null>
  /** Peers this node knows. */
  peers (): Promise<PeerInfo[]>
}

/** Protocol ID of the host query: "do you host this DID now?" */
export const HOST_PROTOCOL = '/igor/host/1.0.0'

/** What a node says about a DID: it hosts it (at `epoch`), it handed it off to `peer`, or neither. */
export type Whereabouts = { state: 'here'; epoch: number } | { state: 'moved'; peer: string; addrs: string[] } | { state: 'unknown' }

/** A node's price and capabilities (p2p/node.ts `queryInfo`); price in microcents per million fuel. */
export interface PeerPrice { price: bigint; capabilities: string[] }

/** Bounds of discovery (all ms unless said otherwise). */
export interface DiscoveryLimits {
  /** one `provide` of an announcement (finding the closest peers and storing the record on them) */
  provideMs: number
  /** attempts of an announcement that reached no peer (then kad-dht's re-provide takes over) */
  provideAttempts: number
  /** one host query (dial, question, answer) */
  askMs: number
  /** `moved` answers followed in one lookup */
  maxHops: number
  /** providers asked in one lookup */
  maxProviders: number
  /** peers `peers()` lists */
  maxPeers: number
  /** how long a peer's price and capabilities are reused */
  infoTtlMs: number
  /** peers whose price and capabilities are cached */
  infoCacheSize: number
  /** one info query */
  infoMs: number
  /** one lookup of this node's own key (which fills the routing table with the peers near it) */
  lookupMs: number
  /** longest pause between two such lookups (they start 1 s apart and double, and start over when a new peer connects) */
  lookupEveryMs: number
}

/** Default {@link DiscoveryLimits}. */
export const DEFAULT_DISCOVERY_LIMITS: DiscoveryLimits = {
  provideMs: 15_000, provideAttempts: 6, askMs: 3000, maxHops: 4, maxProviders: 20, maxPeers: 64, infoTtlMs: 30_000, infoCacheSize: 256, infoMs: 3000, lookupMs: 10_000, lookupEveryMs: 60_000,
}

/** What the node tells discovery. */
export interface DiscoveryHooks {
  /** Where `did` is as far as this node knows. */
  where (did: string): Whereabouts
  /** Asks a peer (at `addr`, with /p2p/) for its price and capabilities. */
  info (addr: Multiaddr): Promise<PeerPrice>
  /** Multiaddrs (with /p2p/) of the `--bootstrap` peers. */
  bootstrap: string[]
  /** node notes */
  note (line: string): void
}

function peerOf (a: string): string | undefined {
  try { return multiaddr(a).getComponents().find((c) => c.name === 'p2p')?.value } catch { return undefined }
}

function withPeer (a: Multiaddr, id: string): string {
  const s = a.toString()
  return s.includes('/p2p/') ? s : `${s}/p2p/${id}`
}

/** The first lookup of this node's own key after a new peer connects comes this much later, ms. */
const LOOKUP_FIRST_MS = 1000

/** Parked announcements (made while no peer was connected) sent at once when a peer connects. */
const PARKED_CONCURRENCY = 4

/** A peer that did not answer its info query is asked again after this long at the earliest, ms. */
const INFO_RETRY_MS = 5000

/** {@link Discovery} over the node's kad-dht service and peer store. */
export class KadDiscovery implements Discovery {
  readonly #peer: Peer
  readonly #hooks: DiscoveryHooks
  readonly #limits: DiscoveryLimits
  /** DIDs announced (hosted here), with the number of attempts made of their first announcement */
  readonly #announced = new Map<string, number>()
  /** peers reported by the DHT's peer discovery */
  readonly #viaDht = new Set<string>()
  /** peers found by mDNS (`--mdns`), each dialed once */
  readonly #viaMdns = new Set<string>()
  /** price and capabilities by peer ID, with when they were asked (ms since epoch) */
  readonly #info = new Map<string, { at: number; info: PeerPrice | null }>()
  readonly #timers = new Set<ReturnType<typeof setTimeout>>()
  /**
   * DIDs whose announcement waits for a peer: an attempt made while this node had no connection
   * reached nobody, so instead of retrying on a timer (1,000 agents born on a node with no peer
   * yet would each retry for a minute) they are announced again when a peer connects.
   */
  readonly #parked = new Set<string>()
  /** Announcements of parked DIDs running now (at most {@link PARKED_CONCURRENCY}). */
  #unparking = 0
  #closed = false
  /** peers ever connected (bounded): a new one restarts the lookups at {@link LOOKUP_FIRST_MS} */
  readonly #seen = new Set<string>()
  #lookupDelay = LOOKUP_FIRST_MS
  #lookupTimer: ReturnType<typeof setTimeout> | null = null
  #looking = false

  constructor (peer: Peer, hooks: DiscoveryHooks, limits: Partial<DiscoveryLimits> = {}) {
    this.#peer = peer
    this.#hooks = hooks
    this.#limits = { ...DEFAULT_DISCOVERY_LIMITS, ...limits }
    peer.addEventListener('peer:discovery', (e) => {
      if (this.#viaDht.size < this.#limits.maxPeers * 4) this.#viaDht.add(e.detail.id.toString())
    })
    // a peer found by mDNS is dialed (once; at most maxPeers × 4 of them), so the DHT learns of it
    peer.services.mdns?.addEventListener('peer', (e) => {
      const id = e.detail.id.toString()
      if (this.#closed || id === peer.peerId.toString() || this.#viaMdns.has(id) || this.#viaMdns.size >= this.#limits.maxPeers * 4) return
      this.#viaMdns.add(id)
      peer.peerStore.merge(e.detail.id, { multiaddrs: e.detail.multiaddrs })
        .then(async () => { await peer.dial(e.detail.id, { signal: AbortSignal.timeout(this.#limits.askMs) }) })
        .then(() => hooks.note(`mdns: connected to ${id}`), (err: Error) => hooks.note(`mdns: found ${id}, cannot connect: ${err.message.split('\n')[0]}`))
    })
    peer.addEventListener('peer:connect', (e) => {
      this.#unpark()
      const id = e.detail.toString()
      if (this.#seen.has(id) || this.#seen.size >= this.#limits.maxPeers * 4) return
      this.#seen.add(id)
      this.#lookupDelay = LOOKUP_FIRST_MS
      this.#scheduleLookup()
    })
  }

  /**
   * Looks up this node's own key in the DHT (kad-dht's self-query), so that peers that joined
   * through other peers are found soon: 1 s after a new peer connects, then at doubling intervals up
   * to {@link DiscoveryLimits.lookupEveryMs}; each lookup bounded by {@link DiscoveryLimits.lookupMs}.
   */
  #scheduleLookup (): void {
    if (this.#closed) return
    if (this.#lookupTimer !== null) clearTimeout(this.#lookupTimer)
    this.#lookupTimer = setTimeout(() => { this.#lookupTimer = null; void this.#lookup() }, this.#lookupDelay)
    this.#lookupTimer.unref()
  }

  async #lookup (): Promise<void> {
    if (this.#looking || this.#closed) return
    this.#looking = true
    try {
      for await (const _e of this.#peer.services.dht.getClosestPeers(this.#peer.peerId.toMultihash().bytes, { signal: AbortSignal.timeout(this.#limits.lookupMs) })) { /* the DHT fills its routing table and the peer store */ }
    } catch { /* timed out or no peer yet: the next lookup tries again */ } finally { this.#looking = false }
    this.#lookupDelay = Math.min(this.#lookupDelay * 2, this.#limits.lookupEveryMs)
    this.#scheduleLookup()
  }

  /** Answers `/igor/host/1.0.0` on this node. */
  async start (): Promise<void> {
    await this.#peer.handle(HOST_PROTOCOL, (stream, conn) => { void this.#answer(new Channel(stream, conn.remotePeer.toString(), MAX_SMALL_FRAME + 16)) }, { maxInboundStreams: 32 })
  }

  /** Stops retries (the libp2p node stops the DHT). */
  close (): void {
    this.#closed = true
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
    if (this.#lookupTimer !== null) clearTimeout(this.#lookupTimer)
  }

  async #answer (ch: Channel): Promise<void> {
    try {
      const q = await ch.recv('host', this.#limits.askMs, ['host'], MAX_SMALL_FRAME)
      const did = typeof q.did === 'string' && q.did.length <= 256 ? q.did : ''
      const w: Whereabouts = did === '' ? { state: 'unknown' } : this.#hooks.where(did)
      await ch.send(w.state === 'here' ? { t: 'host', state: 'here', epoch: w.epoch, addrs: this.#selfAddrs() } : { t: 'host', ...w }, 'host', this.#limits.askMs)
      await ch.close()
    } catch { ch.abort() }
  }

  #selfAddrs (): string[] { return this.#peer.getMultiaddrs().map((a) => a.toString()) }

  /**
   * Announces `did`: stores a provider record for its key on the closest peers of the DHT (and
   * here). Never throws; an announcement that reached no peer is tried again with backoff,
   * {@link DiscoveryLimits.provideAttempts} times, after which kad-dht's re-provide (every
   * {@link REPROVIDE_INTERVAL_MS}) keeps it alive — or, when this node had no connection at all,
   * once a peer connects (no timer per DID meanwhile).
   */
  async announce (did: string): Promise<void> {
    this.#announced.set(did, 0)
    this.#parked.delete(did)
    await this.#provide(did)
  }

  /** DIDs whose announcement waits for a peer to connect (see {@link KadDiscovery.#parked}). */
  get parked (): number { return this.#parked.size }

  /**
   * Announces the parked DIDs again, {@link PARKED_CONCURRENCY} at a time, as first announcements,
   * while this node has a connection (without one, each would park again at once: they wait for
   * the next `peer:connect` instead of looping).
   */
  #unpark (): void {
    while (this.#unparking < PARKED_CONCURRENCY && this.#parked.size > 0 && !this.#closed && this.#peer.getConnections().length > 0) {
      const did = this.#parked.values().next().value as string
      this.#parked.delete(did)
      if (!this.#announced.has(did)) continue
      this.#announced.set(did, 0)
      this.#unparking++
      void this.#provide(did).finally(() => { this.#unparking--; this.#unpark() })
    }
  }

  async #provide (did: string): Promise<void> {
    const attempt = this.#announced.get(did)
    if (attempt === undefined || this.#closed) return
    // with no connection the query would reach nobody (and wait out provideMs): wait for a peer
    if (this.#peer.getConnections().length === 0) { this.#parked.add(did); return }
    this.#announced.set(did, attempt + 1)
    let stored = 0
    try {
      const key = await didKey(did)
      for await (const e of this.#peer.services.dht.provide(key, { signal: AbortSignal.timeout(this.#limits.provideMs) })) {
        if (e.name === 'PEER_RESPONSE' && e.messageName === 'ADD_PROVIDER') stored++ // sent (ADD_PROVIDER has no answer)
      }
    } catch (e) {
      if (!this.#closed && attempt === 0 && this.#peer.getConnections().length > 0) this.#hooks.note(`announcing ${did}: ${(e as Error).message.split('\n')[0]}; trying again`)
    }
    if (stored > 0 || this.#closed || !this.#announced.has(did)) return
    if (this.#peer.getConnections().length === 0) { this.#parked.add(did); return } // reached nobody: wait for a peer
    if (attempt + 1 >= this.#limits.provideAttempts) return
    const t = setTimeout(() => { this.#timers.delete(t); void this.#provide(did) }, Math.min(30_000, 1000 * 2 ** attempt))
    t.unref()
    this.#timers.add(t)
  }

  /**
   * Stops announcing `did`: removes this node's own provider record and stops re-providing it.
   * Records already stored on other peers cannot be withdrawn; they expire within
   * {@link RECORD_VALIDITY_MS}, and this node answers `moved` for the DID meanwhile. Never throws.
   */
  async withdraw (did: string): Promise<void> {
    this.#announced.delete(did)
    try { await this.#peer.services.dht.cancelReprovide(await didKey(did)) } catch (e) { this.#hooks.note(`withdrawing ${did}: ${(e as Error).message.split('\n')[0]}`) }
  }

  /**
   * The host of `did`: this node when it hosts it; otherwise the providers of its key, each asked
   * whether it hosts the DID now (`moved` answers are followed, at most
   * {@link DiscoveryLimits.maxHops} in a row). The first answer `here` ends the lookup (when
   * several are in hand at once, during a handoff, the highest epoch wins). Null when no host
   * answers within `timeoutMs`.
   *
   * With `confirm: false` (a message's first lookup of its recipient, p2p/node.ts `route`), the
   * first answer of the DHT is taken as it is when it names exactly one provider other than this
   * node, with addresses, and this node has not handed the DID off: no question is asked. That
   * provider may be a host the agent left (its stored records live on for up to
   * {@link RECORD_VALIDITY_MS}); the caller then learns it from that host's refusal and looks up
   * again with the default, confirmed lookup.
   */
  async findHost (did: string, timeoutMs: number, opts: { confirm?: boolean } = {}): Promise<HostInfo | null> {
    const here = this.#hooks.where(did)
    if (here.state === 'here') return { peer: this.#peer.peerId.toString(), addrs: this.#selfAddrs() }
    const controller = new AbortController()
    const deadline = setTimeout(() => controller.abort(), timeoutMs)
    const asked = new Set<string>([this.#peer.peerId.toString()])
    const found: { epoch: number; host: HostInfo }[] = []
    const pending: Promise<void>[] = []
    const ask = (id: string, addrs: string[], hops: number): void => {
      if (asked.has(id) || asked.size > this.#limits.maxProviders + this.#limits.maxHops || controller.signal.aborted) return
      asked.add(id)
      pending.push(this.#ask(id, addrs, did, controller.signal).then((w) => {
        if (w === null) return
        if (w.state === 'here') { found.push({ epoch: w.epoch, host: { peer: id, addrs: w.addrs } }); controller.abort() }
        else if (w.state === 'moved' && hops < this.#limits.maxHops) ask(w.peer, w.addrs, hops + 1)
      }))
    }
    try {
      if (here.state === 'moved') ask(here.peer, here.addrs, 1)
      const key = await didKey(did)
      try {
        let firstAnswer = true
        for await (const e of this.#peer.services.dht.findProviders(key, { signal: controller.signal })) {
          if (e.name !== 'PROVIDER') continue
          if (firstAnswer && opts.confirm === false && here.state === 'unknown') {
            const others = e.providers.filter((p) => !p.id.equals(this.#peer.peerId))
            if (others.length === 1 && others[0].multiaddrs.length > 0 && others.length === e.providers.length) {
              const id = others[0].id.toString()
              controller.abort()
              return { peer: id, addrs: others[0].multiaddrs.map((a) => withPeer(a, id)) }
            }
          }
          firstAnswer = false
          for (const p of e.providers) ask(p.id.toString(), p.multiaddrs.map((a) => withPeer(a, p.id.toString())), 0)
        }
      } catch { /* aborted or the query failed: the answers so far count */ }
      // answers to questions already asked (each bounded by askMs), including hops they add
      for (let n = 0; n < pending.length; n++) await pending[n]
    } finally { clearTimeout(deadline) }
    found.sort((a, b) => b.epoch - a.epoch)
    return found[0]?.host ?? null
  }

  /** Asks peer `id` where `did` is; null when it cannot be reached or answers malformed. */
  async #ask (id: string, addrs: string[], did: string, stop: AbortSignal): Promise<(Whereabouts & { addrs: string[] }) | null> {
    let ch: Channel | null = null
    try {
      const pid = peerIdFromString(id)
      await this.#remember(pid, addrs)
      const signal = AbortSignal.any([AbortSignal.timeout(this.#limits.askMs), stop])
      const stream = await this.#peer.dialProtocol(pid, HOST_PROTOCOL, { signal })
      ch = new Channel(stream, id, MAX_SMALL_FRAME + 16)
      await ch.send({ t: 'host', did }, 'host', this.#limits.askMs)
      const a = await ch.recv('host', this.#limits.askMs, ['host'], MAX_SMALL_FRAME)
      await ch.close()
      const list = (v: unknown) => Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && peerOf(x) !== undefined).slice(0, 16) : []
      if (a.state === 'here') return { state: 'here', epoch: Number(a.epoch) || 0, addrs: list(a.addrs) }
      if (a.state === 'moved' && typeof a.peer === 'string') return { state: 'moved', peer: a.peer, addrs: list(a.addrs) }
      return { state: 'unknown', addrs: [] }
    } catch {
      ch?.abort()
      return null
    }
  }

  async #remember (id: PeerId, addrs: string[]): Promise<void> {
    const ms: Multiaddr[] = []
    for (const a of addrs) { try { ms.push(multiaddr(a.replace(/\/p2p\/[^/]+$/, ''))) } catch { /* skipped */ } }
    if (ms.length > 0) await this.#peer.peerStore.merge(id, { multiaddrs: ms })
  }

  /**
   * The peers this node knows (at most {@link DiscoveryLimits.maxPeers}): its `--bootstrap` peers,
   * those mDNS (`--mdns`) or the DHT found, and those connected, with the price and capabilities each answers to
   * `/igor/info/1.0.0` (cached {@link DiscoveryLimits.infoTtlMs}; absent when it does not answer).
   */
  async peers (): Promise<PeerInfo[]> {
    const me = this.#peer.peerId.toString()
    const out = new Map<string, PeerInfo>()
    const boot = new Map<string, string>()
    for (const b of this.#hooks.bootstrap) { const id = peerOf(b); if (id !== undefined && id !== me) boot.set(id, b) }
    const connected = new Set(this.#peer.getConnections().map((c) => c.remotePeer.toString()))
    const source = (id: string): PeerInfo['source'] => boot.has(id) ? 'bootstrap' : this.#viaMdns.has(id) ? 'mdns' : this.#viaDht.has(id) ? 'dht' : connected.has(id) ? 'connected' : 'dht'
    for (const [id, b] of boot) out.set(id, { peer: id, addrs: [b], source: 'bootstrap' })
    for (const c of this.#peer.getConnections()) {
      const id = c.remotePeer.toString()
      if (!out.has(id) && out.size < this.#limits.maxPeers) out.set(id, { peer: id, addrs: [], source: source(id) })
    }
    for (const p of await this.#peer.peerStore.all()) {
      const id = p.id.toString()
      if (id === me || out.size >= this.#limits.maxPeers && !out.has(id)) continue
      const addrs = p.addresses.map((a) => withPeer(a.multiaddr, id))
      const known = out.get(id)
      if (known !== undefined) known.addrs = [...new Set([...known.addrs, ...addrs])]
      else if (addrs.length > 0) out.set(id, { peer: id, addrs, source: source(id) })
    }
    for (const c of this.#peer.getConnections()) {
      const p = out.get(c.remotePeer.toString())
      if (p !== undefined && p.addrs.length === 0) p.addrs = [withPeer(c.remoteAddr, p.peer)]
    }
    const list = [...out.values()]
    await Promise.all(list.map(async (p) => {
      const info = await this.#priceOf(p)
      if (info !== null) { p.price = info.price.toString(); p.capabilities = info.capabilities }
    }))
    return list
  }

  /** A peer's price and capabilities, from the cache or asked (null when it does not answer). */
  async #priceOf (p: PeerInfo): Promise<PeerPrice | null> {
    const now = Date.now()
    const c = this.#info.get(p.peer)
    if (c !== undefined && now - c.at < (c.info === null ? Math.min(INFO_RETRY_MS, this.#limits.infoTtlMs) : this.#limits.infoTtlMs)) return c.info
    let info: PeerPrice | null = null
    for (const a of p.addrs) {
      try {
        info = await Promise.race([this.#hooks.info(multiaddr(a)), new Promise<never>((_resolve, reject) => {
          const t = setTimeout(() => reject(new NetworkError('info: timed out')), this.#limits.infoMs); t.unref()
        })])
        p.addrs = [a, ...p.addrs.filter((x) => x !== a)] // the address that answered first
        break
      } catch { /* next address */ }
    }
    this.#info.delete(p.peer)
    this.#info.set(p.peer, { at: now, info })
    while (this.#info.size > this.#limits.infoCacheSize) this.#info.delete(this.#info.keys().next().value as string)
    return info
  }
}
