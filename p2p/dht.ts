/**
 * igord's Kademlia DHT (`@libp2p/kad-dht`, docs/PROTOCOL.md "Discovery"): its own protocol ID, so
 * igord nodes form a DHT of their own instead of joining the public IPFS one; server mode from the
 * start and every address kept (loopback and LAN included), so nodes on 127.0.0.1 or a LAN find
 * each other; provider records that live one hour. And the key an agent is announced under.
 */
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import type { KadDHT, KadDHTComponents } from '@libp2p/kad-dht'
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

/** The kad-dht service of a node's libp2p stack (p2p/peer.ts), configured as described above. */
export function dhtService (): (components: KadDHTComponents) => KadDHT {
  return kadDHT({
    protocol: KAD_PROTOCOL,
    // a node on 127.0.0.1 or a LAN has no public address, so kad-dht would stay a client forever
    clientMode: false,
    // the default mapper drops private and loopback addresses, which are all a LAN or a test has
    peerInfoMapper: passthroughMapper,
    kBucketSize: K_BUCKET_SIZE,
    logPrefix: 'igord:kad-dht',
    datastorePrefix: '/igor-dht',
    metricsPrefix: 'igord_kad_dht',
    providers: { provideValidity: RECORD_VALIDITY_MS / 1000, cleanupInterval: REPROVIDE_INTERVAL_MS / 1000 },
    reprovide: { validity: RECORD_VALIDITY_MS, threshold: REPROVIDE_THRESHOLD_MS, interval: REPROVIDE_INTERVAL_MS },
    // a first self-query soon after start, then kad-dht's default period
    initialQuerySelfInterval: 1000,
  })
}
