/**
 * A stand-in for `@libp2p/mdns` in tests (installed by test/igord-faulty.ts for
 * `IGORD_FAULT=mdns-stub:<multiaddr>`, or passed to `startPeer`): a libp2p peer-discovery service
 * that sends nothing on any network; once started it reports the one peer it was given (a
 * 127.0.0.1 multiaddr with /p2p/), as `@libp2p/mdns` reports a peer that answered on the LAN.
 */
import { peerDiscoverySymbol } from '@libp2p/interface'
import type { PeerDiscovery, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { MdnsFactory } from '../p2p/mdns.ts'

/** What a stub did: started (by libp2p), stopped, and peers reported. */
export interface StubLog { started: number; stopped: number; reported: number }

/** A stub mDNS service factory that reports `addr` (with /p2p/) 100 ms after it is started; `log` counts what it did. */
export function mdnsStub (addr: string, log: StubLog = { started: 0, stopped: 0, reported: 0 }): MdnsFactory {
  const ma = multiaddr(addr)
  const id = peerIdFromString(addr.split('/p2p/')[1])
  return () => new MdnsStub(id, ma.decapsulate('/p2p'), log) as unknown as PeerDiscovery
}

class MdnsStub extends EventTarget {
  readonly [peerDiscoverySymbol] = this
  readonly [Symbol.toStringTag] = 'mdns-stub'
  readonly #peer: { id: PeerId; multiaddrs: Multiaddr[] }
  readonly #log: StubLog
  #timer: ReturnType<typeof setTimeout> | undefined

  constructor (id: PeerId, addr: Multiaddr, log: StubLog) { super(); this.#peer = { id, multiaddrs: [addr] }; this.#log = log }

  start (): void {
    this.#log.started++
    this.#timer = setTimeout(() => { this.#log.reported++; this.dispatchEvent(new CustomEvent('peer', { detail: this.#peer })) }, 100)
  }

  stop (): void { this.#log.stopped++; clearTimeout(this.#timer) }
}
