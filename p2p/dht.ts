/**
 * igord's Kademlia DHT (`@libp2p/kad-dht`, docs/PROTOCOL.md "Discovery"): its own protocol ID, so
 * igord nodes form a DHT of their own instead of joining the public IPFS one; server mode from the
 * start and every address kept (loopback and LAN included), so nodes on 127.0.0.1 or a LAN find
 * each other; provider records that live one hour; a store of its own that bounds what other peers
 * can make the node hold (p2p/dht-store.ts). And the key an agent is announced under.
 */
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import type { KadDHT, KadDHTComponents } from '@libp2p/kad-dht'
import type { BoundedDhtStore } from './dht-store.ts'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

/** Protocol ID of igord's DHT (the DHT's RPC messages are kad-dht's, unchanged). */
export const KAD_PROTOCOL = '/igor/kad/1.0.0'

/** How long a provider record stays valid on the peers that store it, ms (1 h); the host re-provides it before then. */
export const RECORD_VALIDITY_MS = 60 * 60 * 1000

/** The host re-provides a record when it is this close to expiring, ms (30 min). */
export const REPROVIDE_THRESHOLD_MS = 30 * 60 * 1000

/** How often the host checks which of its records need re-providing (and drops expired ones of others), ms (5 min). */
export const REPROVIDE_INTERVAL_MS = 5 * 60 * 1000

/** Peers kept per k-bucket (kad-dht's default, 20); the routing table holds at most 2^6 buckets of them. */
export const K_BUCKET_SIZE = 20

/** kad-dht's `datastorePrefix`: its provider records are `<prefix>/provider/<multihash>/<peer ID>` in its store. */
export const DHT_DATASTORE_PREFIX = '/igor-dht'

/** Bytes hashed for an agent's key are this prefix followed by the DID, UTF-8. */
export const DID_KEY_PREFIX = '/igor/agent/'

/**
 * The DHT key (a CID) an agent with `did` is announced under: CIDv1, codec raw (0x55), multihash
 * sha2-256 of the UTF-8 bytes of `/igor/agent/<did>` (docs/PROTOCOL.md "Discovery"). The DHT
 * itself keys the record by this CID's multihash bytes.
 */
export async function didKey (did: string): Promise<CID> {
  const digest = await sha256.digest(new TextEncoder().encode(DID_KEY_PREFIX + did))
  return CID.createV1(raw.code, digest)
}

/**
 * The kad-dht service of a node's libp2p stack (p2p/peer.ts), configured as described above, with
 * `store` (made with {@link DHT_DATASTORE_PREFIX}) as its datastore instead of libp2p's: kad-dht
 * keeps its provider records there, within the store's bounds; the rest of libp2p (the peer store)
 * keeps libp2p's datastore.
 */
export function dhtService (store: BoundedDhtStore): (components: KadDHTComponents) => KadDHT {
  const make = kadDHT({
    protocol: KAD_PROTOCOL,
    // a node on 127.0.0.1 or a LAN has no public address, so kad-dht would stay a client forever
    clientMode: false,
    // the default mapper drops private and loopback addresses, which are all a LAN or a test has
    peerInfoMapper: passthroughMapper,
    kBucketSize: K_BUCKET_SIZE,
    logPrefix: 'igord:kad-dht',
    datastorePrefix: DHT_DATASTORE_PREFIX,
    metricsPrefix: 'igord_kad_dht',
    // kad-dht 16 drops others' records older than `reprovide.validity` at each re-provide check
    // (its `providers` options, provideValidity and cleanupInterval, are not used by 16.4.5)
    reprovide: { validity: RECORD_VALIDITY_MS, threshold: REPROVIDE_THRESHOLD_MS, interval: REPROVIDE_INTERVAL_MS },
    // a first self-query soon after start, then kad-dht's default period
    initialQuerySelfInterval: 1000,
  })
  // libp2p's components object is a proxy itself; only `datastore` differs for kad-dht
  return (components) => make(new Proxy(components, { get: (target, prop, receiver) => prop === 'datastore' ? store : Reflect.get(target, prop, receiver) }))
}
