/**
 * The node's libp2p stack (DESIGN §3, §9): TCP, Noise, Yamux, identify, ping and a Kademlia DHT
 * (`@libp2p/kad-dht` on igord's own protocol ID, p2p/dht.ts `dhtService`, in a bounded store of
 * its own, p2p/dht-store.ts), and mDNS discovery when asked for (p2p/mdns.ts), with the data
 * directory's persistent host key (`host.key`, runtime/host.ts) as the libp2p identity, so the
 * peer ID the node announces is the `host` every checkpoint it writes names.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { Libp2p, PeerDiscovery } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { KadDHT } from '@libp2p/kad-dht'
import { DHT_DATASTORE_PREFIX, dhtService } from './dht.ts'
import { BoundedDhtStore } from './dht-store.ts'
import type { DhtLimits } from './dht-store.ts'
import type { MdnsFactory } from './mdns.ts'
import { RequestError, NetworkError } from './errors.ts'

export { DEFAULT_LISTEN } from './defaults.ts'

/** The libp2p node type igord runs (identify, ping and DHT services; mDNS discovery when enabled). */
export type Peer = Libp2p<{ identify: ReturnType<ReturnType<typeof identify>>; ping: ReturnType<ReturnType<typeof ping>>; dht: KadDHT; mdns?: PeerDiscovery }>

/** Options of {@link startPeer}. */
export interface PeerOptions {
  /** bounds of what other peers can make the DHT hold (p2p/dht-store.ts `DEFAULT_DHT_LIMITS` for the rest) */
  dhtLimits?: Partial<DhtLimits>
  /** notes (one line each): the DHT store's refusals */
  note?: (line: string) => void
  /** the mDNS discovery service (p2p/mdns.ts `mdnsService`); absent (the default): no mDNS */
  mdns?: MdnsFactory
}

/** The DHT store of each peer started by {@link startPeer}. */
const stores = new WeakMap<Peer, BoundedDhtStore>()

/** The bounded store of `peer`'s DHT (p2p/dht-store.ts): its counts, for status and tests. @throws Error for a peer not made by {@link startPeer} */
export function dhtStoreOf (peer: Peer): BoundedDhtStore {
  const s = stores.get(peer)
  if (s === undefined) throw new Error('dhtStoreOf: not a peer started by startPeer')
  return s
}

/**
 * Parses a multiaddr given on the command line or in a request.
 * @throws RequestError (exit 2) `<what>: "<text>" is not a multiaddr (…)`
 */
export function parseMultiaddr (text: string, what: string): Multiaddr {
  try {
    if (!text.startsWith('/')) throw new Error('must start with /')
    return multiaddr(text)
  } catch (e) {
    throw new RequestError(`${what}: ${JSON.stringify(text)} is not a multiaddr (${(e as Error).message.split('\n')[0]})`)
  }
}

/**
 * Creates and starts a libp2p node whose identity is the Ed25519 host key `seed` (32 bytes), listening
 * on `listen` (multiaddr strings), with its DHT in a {@link BoundedDhtStore} and, with `opts.mdns`,
 * mDNS discovery (started with the node: it multicasts on the LAN).
 * @throws NetworkError when an address cannot be listened on
 */
export async function startPeer (seed: Uint8Array, listen: string[], opts: PeerOptions = {}): Promise<Peer> {
  const privateKey = await generateKeyPairFromSeed('Ed25519', seed)
  const store = new BoundedDhtStore(peerIdFromPrivateKey(privateKey).toString(), DHT_DATASTORE_PREFIX, opts.dhtLimits, opts.note)
  try {
    const peer = await createLibp2p({
      privateKey,
      addresses: { listen },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), ping: ping(), dht: dhtService(store), ...(opts.mdns === undefined ? {} : { mdns: opts.mdns }) },
    }) as unknown as Peer
    stores.set(peer, store)
    return peer
  } catch (e) {
    throw new NetworkError(`cannot listen on ${listen.join(', ')}: ${(e as Error).message.split('\n')[0]}`)
  }
}

/** The node's dialable addresses, each ending in `/p2p/<peer id>`. */
export function dialableAddrs (peer: Peer): string[] {
  return peer.getMultiaddrs().map((a) => a.toString())
}
