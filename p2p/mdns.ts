/**
 * mDNS peer discovery, off unless `igord node --mdns` (docs/PROTOCOL.md "Discovery"): `@libp2p/mdns`
 * (12.x, for libp2p 3), loaded only when asked for, answering and querying under igord's own
 * service tag so that a node finds igord nodes on its LAN and no other libp2p application.
 * Multicast (224.0.0.251, UDP 5353) starts with the node; where the network has none, the node
 * works as without it (bootstrap peers and the DHT).
 */
import type { ComponentLogger, PeerDiscovery, Startable } from '@libp2p/interface'
import { RequestError } from './errors.ts'

/** igord's DNS-SD service tag: PTR queries and answers name it (the libp2p default is `_p2p._udp.local`). */
export const MDNS_SERVICE_TAG = '_igord._udp.local'

/** How often a node queries the LAN, ms (10 s, @libp2p/mdns's default). */
export const MDNS_INTERVAL_MS = 10_000

/** The npm package loaded by {@link mdnsService}. */
export const MDNS_PACKAGE = '@libp2p/mdns'

/** The libp2p service factory of mDNS discovery (the `mdns` service of p2p/peer.ts). */
export type MdnsFactory = (components: { logger: ComponentLogger; addressManager: unknown }) => PeerDiscovery & Partial<Startable>

/** The part of `@libp2p/mdns` used here (declared so that type-checking does not need the package). */
interface MdnsModule { mdns (init: { serviceTag: string; interval: number }): MdnsFactory }

/**
 * Loads `@libp2p/mdns` and returns its service configured for igord ({@link MDNS_SERVICE_TAG},
 * {@link MDNS_INTERVAL_MS}); nothing is sent before the node starts it.
 * @throws RequestError (exit 2) `--mdns: cannot load @libp2p/mdns (…)` when it is not installed
 */
export async function mdnsService (): Promise<MdnsFactory> {
  let mod: MdnsModule
  try {
    mod = await import(MDNS_PACKAGE) as MdnsModule
  } catch (e) {
    throw new RequestError(`--mdns: cannot load ${MDNS_PACKAGE} (${(e as Error).message.split('\n')[0]}); install igord's dependencies (npm install) or run without --mdns`)
  }
  return mod.mdns({ serviceTag: MDNS_SERVICE_TAG, interval: MDNS_INTERVAL_MS })
}
