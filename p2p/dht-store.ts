/**
 * The bounded store of igord's kad-dht (docs/PROTOCOL.md "Discovery", "Provider records a node
 * keeps"): every other peer is treated as hostile, so what peers can make a node hold through
 * `ADD_PROVIDER` is bounded — per peer, per key, in total — and rate limited, and `PUT_VALUE` is
 * refused (igord keeps no DHT values).
 *
 * kad-dht 16 (`@libp2p/kad-dht` dist/src/providers.js, rpc/handlers/add-provider.js) stores one
 * datastore entry per provider record, `<prefix>/provider/<base32 multihash of the key>/<peer ID>`
 * → varint ms since epoch (when it was stored), and accepts an `ADD_PROVIDER` only for the peer that
 * sent it, so the peer ID in the entry is the sender's. This store is the datastore kad-dht is given
 * (p2p/dht.ts `dhtService`; libp2p's own peer store keeps its datastore): an in-memory
 * `MemoryDatastore` whose `put` applies the bounds below and throws when it refuses, which makes
 * kad-dht abort that `ADD_PROVIDER` stream before it merges the sender's addresses into the peer
 * store. Expired records are still dropped by kad-dht's re-provider (every
 * {@link REPROVIDE_INTERVAL_MS}), through `delete`, which frees their place.
 */
import type { AbortOptions } from '@libp2p/interface'
import { RateLimiter } from '@libp2p/utils'
import { MemoryDatastore } from 'datastore-core/memory'
import { Key } from 'interface-datastore'
import { NetworkError } from './errors.ts'

/** Bounds on what other peers can make a node's DHT hold (all counts of provider records unless said otherwise). */
export interface DhtLimits {
  /** records one peer may have stored here at once (beyond: refused) */
  maxPerPeer: number
  /** records of all other peers together (beyond: the oldest record of the peer holding the most is dropped, when it holds at least 2 more than the sender; else refused) */
  maxTotal: number
  /** providers kept per key (beyond: the key's oldest provider record is dropped) */
  maxPerKey: number
  /** `ADD_PROVIDER` records (new or refreshed) accepted from one peer per {@link rateWindowMs} (beyond: refused) */
  ratePerPeer: number
  /** `ADD_PROVIDER` records accepted from all other peers together per {@link rateWindowMs} */
  rateTotal: number
  /** the rate window, ms (a fixed window per peer, from its first record in it) */
  rateWindowMs: number
}

/**
 * Default {@link DhtLimits}: 1024 records per peer (a host announces one per agent it hosts),
 * 16,384 in total (about 3 MiB of keys), 64 providers per key (the hosts of one agent within a
 * record's hour), 256 records per peer and 2048 in total per 10 s.
 */
export const DEFAULT_DHT_LIMITS: DhtLimits = {
  maxPerPeer: 1024, maxTotal: 16_384, maxPerKey: 64, ratePerPeer: 256, rateTotal: 2048, rateWindowMs: 10_000,
}

/** Refusal notes: at most this many lines per {@link NOTE_WINDOW_MS}, one per peer; the rest are counted in the next line. */
export const MAX_NOTE_LINES = 8

/** Window of {@link MAX_NOTE_LINES}, ms. */
export const NOTE_WINDOW_MS = 10_000

/** How many records this store holds (for tests and status). */
export interface DhtStoreStats {
  /** provider records of other peers */
  records: number
  /** peers with at least one record here */
  peers: number
  /** records of this node's own (announcements; not bounded here: one per hosted agent) */
  own: number
  /** records of other peers accepted since start (new or refreshed) */
  accepted: number
  /** puts refused since start (all reasons) */
  refused: number
  /** of {@link refused}: over a rate limit */
  refusedRate: number
  /** records dropped to make room (per-key or total bound) since start */
  dropped: number
}

/** One provider record's place: its datastore key, the key's multihash (base32) and the provider peer. */
interface Entry { key: string; cid: string; peer: string }

/** A refused put: kad-dht logs it and aborts the sender's stream (exit code 9 if it ever reached the CLI). */
export class DhtRefusal extends NetworkError {
  constructor (message: string) { super(message); this.name = 'DhtRefusal' }
}

/**
 * kad-dht's datastore with bounds ({@link DhtLimits}) on the provider records of other peers.
 * Records of this node's own peer ID are never refused (kad-dht's `provide` writes them).
 */
export class BoundedDhtStore extends MemoryDatastore {
  readonly limits: DhtLimits
  readonly #self: string
  readonly #providerPrefix: string
  readonly #note: (line: string) => void
  /** each peer's records, oldest first (datastore key → entry) */
  readonly #byPeer = new Map<string, Map<string, Entry>>()
  /** each key's providers, oldest first (datastore key → entry) */
  readonly #byKey = new Map<string, Map<string, Entry>>()
  #total = 0
  /** datastore keys of this node's own records */
  readonly #own = new Set<string>()
  #accepted = 0
  #refused = 0
  #refusedRate = 0
  #dropped = 0
  readonly #rate: RateLimiter
  readonly #rateAll: RateLimiter
  #noteWindow = 0
  readonly #noted = new Set<string>()
  #suppressed = 0

  /**
   * @param self this node's peer ID (text)
   * @param datastorePrefix kad-dht's `datastorePrefix` (p2p/dht.ts `DHT_DATASTORE_PREFIX`)
   * @param limits bounds ({@link DEFAULT_DHT_LIMITS} for the rest)
   * @param note the node's notes (one line each): refusals, rate limited ({@link MAX_NOTE_LINES})
   */
  constructor (self: string, datastorePrefix: string, limits: Partial<DhtLimits> = {}, note: (line: string) => void = () => {}) {
    super()
    this.#self = self
    this.#providerPrefix = `${datastorePrefix}/provider/`
    this.limits = { ...DEFAULT_DHT_LIMITS, ...limits }
    this.#note = note
    const duration = this.limits.rateWindowMs / 1000
    this.#rate = new RateLimiter({ points: this.limits.ratePerPeer, duration, keyPrefix: '' })
    this.#rateAll = new RateLimiter({ points: this.limits.rateTotal, duration, keyPrefix: '' })
  }

  /** Counts of what is held (see {@link DhtStoreStats}). */
  stats (): DhtStoreStats {
    return { records: this.#total, peers: this.#byPeer.size, own: this.#own.size, accepted: this.#accepted, refused: this.#refused, refusedRate: this.#refusedRate, dropped: this.#dropped }
  }

  /** Records peer `peer` (peer ID text) has stored here. */
  recordsOf (peer: string): number { return this.#byPeer.get(peer)?.size ?? 0 }

  /**
   * Stores a provider record within the bounds.
   * @throws DhtRefusal `dht: refused …` when the record is not a provider record (a `PUT_VALUE`),
   *   is malformed, or its peer is over its count or rate (the line is also noted, rate limited)
   */
  override put (key: Key, val: Uint8Array, options?: AbortOptions): Key | Promise<Key> {
    const k = key.toString()
    const e = this.#parse(k)
    if (e === null) throw this.#refuse(null, k.startsWith(this.#providerPrefix) ? 'a malformed provider key' : 'a value (PUT_VALUE): igord keeps no DHT values')
    if (e.peer === this.#self) {
      this.#own.add(k)
      return super.put(key, val, options)
    }
    if (!this.#consume(this.#rate, e.peer) || !this.#consume(this.#rateAll, '*')) {
      this.#refusedRate++
      throw this.#refuse(e.peer, `over the rate limit (${this.limits.ratePerPeer} records per peer, ${this.limits.rateTotal} in all, per ${this.limits.rateWindowMs / 1000} s)`)
    }
    const mine = this.#byPeer.get(e.peer)
    if (mine?.has(k) === true) { // a refresh: newest again
      this.#forget(e)
      this.#remember(e)
      this.#accepted++
      return super.put(key, val, options)
    }
    if ((mine?.size ?? 0) >= this.limits.maxPerPeer) throw this.#refuse(e.peer, `this peer holds ${this.limits.maxPerPeer} records here (the limit)`)
    const providers = this.#byKey.get(e.cid)
    if (providers !== undefined && providers.size >= this.limits.maxPerKey) this.#drop(providers.values().next().value as Entry)
    else if (this.#total >= this.limits.maxTotal) {
      const biggest = this.#biggest()
      if (biggest === undefined || biggest.size < (mine?.size ?? 0) + 2) throw this.#refuse(e.peer, `this node holds ${this.limits.maxTotal} records of other peers (the limit)`)
      this.#drop(biggest.values().next().value as Entry)
    }
    this.#remember(e)
    this.#accepted++
    return super.put(key, val, options)
  }

  /** Deletes an entry (kad-dht: expired records, `removeProvider`), freeing its place. */
  override delete (key: Key, options?: AbortOptions): void | Promise<void> {
    const k = key.toString()
    const e = this.#parse(k)
    if (e !== null) {
      if (e.peer === this.#self) this.#own.delete(k)
      else this.#forget(e)
    }
    return super.delete(key, options)
  }

  /** The entry of a provider key `<prefix>/provider/<multihash>/<peer>`, or null for any other key. */
  #parse (k: string): Entry | null {
    if (!k.startsWith(this.#providerPrefix)) return null
    const parts = k.slice(this.#providerPrefix.length).split('/')
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '' || parts[0].length > 256 || parts[1].length > 256) return null
    return { key: k, cid: parts[0], peer: parts[1] }
  }

  #consume (limiter: RateLimiter, id: string): boolean {
    try { limiter.consume(id); return true } catch { return false }
  }

  #remember (e: Entry): void {
    let p = this.#byPeer.get(e.peer)
    if (p === undefined) this.#byPeer.set(e.peer, p = new Map())
    p.set(e.key, e)
    let c = this.#byKey.get(e.cid)
    if (c === undefined) this.#byKey.set(e.cid, c = new Map())
    c.set(e.key, e)
    this.#total++
  }

  #forget (e: Entry): void {
    const p = this.#byPeer.get(e.peer)
    if (p?.delete(e.key) !== true) return
    if (p.size === 0) this.#byPeer.delete(e.peer)
    const c = this.#byKey.get(e.cid)
    c?.delete(e.key)
    if (c?.size === 0) this.#byKey.delete(e.cid)
    this.#total--
  }

  /** Drops a record of another peer to make room. */
  #drop (e: Entry): void {
    this.#forget(e)
    void super.delete(new Key(e.key))
    this.#dropped++
  }

  /** The records of the peer that holds the most here. */
  #biggest (): Map<string, Entry> | undefined {
    let best: Map<string, Entry> | undefined
    for (const p of this.#byPeer.values()) if (best === undefined || p.size > best.size) best = p
    return best
  }

  /**
   * Counts a refusal, notes it (at most one line per peer — `peer` null: a put that names none — and
   * {@link MAX_NOTE_LINES} per {@link NOTE_WINDOW_MS}) and returns the error to throw.
   */
  #refuse (peer: string | null, reason: string): DhtRefusal {
    this.#refused++
    const line = peer === null ? `dht: refused ${reason}` : `dht: refused a provider record from ${peer}: ${reason}`
    const who = peer ?? ''
    const now = Date.now()
    if (now - this.#noteWindow >= NOTE_WINDOW_MS) { this.#noteWindow = now; this.#noted.clear() }
    if (!this.#noted.has(who) && this.#noted.size < MAX_NOTE_LINES) {
      this.#noted.add(who)
      this.#note(this.#suppressed > 0 ? `${line} (and ${this.#suppressed} more refused since the last such note)` : line)
      this.#suppressed = 0
    } else this.#suppressed++
    return new DhtRefusal(line)
  }
}
