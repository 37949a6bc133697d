/**
 * The node's libp2p stack (DESIGN §3, §9): TCP, Noise, Yamux, identify, ping and a Kademlia DHT
 * (`@libp2p/kad-dht` on igord's own protocol ID, p2p/discovery.ts `dhtService`), with the data
 * directory's persistent host key (`host.key`, runtime/host.ts) as the libp2p identity, so the
 * peer ID the node announces is the `host` every checkpoint it writes names.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { Libp2p } from '@libp2p/interface'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { KadDHT } from '@libp2p/kad-dht'
import { dhtService } from './dht.ts'
import { RequestError, NetworkError } from './errors.ts'

export { DEFAULT_LISTEN } from './defaults.ts'

/** The libp2p node type igord runs (identify, ping and DHT services). */
export type Peer = Libp2p<{ identify: ReturnType<ReturnType<typeof identify>>; ping: ReturnType<ReturnType<typeof ping>>; dht: KadDHT }>

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
 * on `listen` (multiaddr strings).
 * @throws NetworkError when an address cannot be listened on
 */
export async function startPeer (seed: Uint8Array, listen: string[]): Promise<Peer> {
  const privateKey = await generateKeyPairFromSeed('Ed25519', seed)
  try {
    return await createLibp2p({
      privateKey,
      addresses: { listen },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), ping: ping(), dht: dhtService() },
    }) as unknown as Peer
  } catch (e) {
    throw new NetworkError(`cannot listen on ${listen.join(', ')}: ${(e as Error).message.split('\n')[0]}`)
  }
}

/** The node's dialable addresses, each ending in `/p2p/<peer id>`. */
export function dialableAddrs (peer: Peer): string[] {
  return peer.getMultiaddrs().map((a) => a.toString())
}
