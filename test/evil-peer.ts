/**
 * A malicious migration peer for the tests (test/e2e-malicious-peer.test.ts): a real libp2p node
 * (p2p/peer.ts: TCP, Noise, Yamux, its own random host key) that speaks `/igor/migrate/1.0.0` to an
 * `igord node` the way an attacker could — garbage, oversized or never-ending frames, floods of
 * offers, forged offers and handoffs — and reads the target's answers. It owns agents of its own
 * (it holds their keys, as every host of an agent does), so it can sign anything for them. It
 * also speaks igord's DHT (`/igor/kad/1.0.0`) raw: floods of `ADD_PROVIDER`, `PUT_VALUE`
 * (test/dht-bound.test.ts, test/e2e-dht-hostile.test.ts).
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import { Libp2pRecord } from '@libp2p/record'
import { pbStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import * as Digest from 'multiformats/hashes/digest'
import { Message, MessageType } from '../node_modules/@libp2p/kad-dht/dist/src/message/dht.js'
import { encode } from '../checkpoint/cbor.ts'
import { cidOf, sha256 } from '../checkpoint/hash.ts'
import { cidOfDigest } from '../checkpoint/hash.ts'
import { decodeHeader, encodeHeader, headerCid, signHeader } from '../checkpoint/header.ts'
import type { CheckpointHeader } from '../checkpoint/header.ts'
import { identityFromSeed } from '../checkpoint/identity.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import { readLive } from '../checkpoint/live.ts'
import { KAD_PROTOCOL } from '../p2p/dht.ts'
import { DEFAULT_TIMEOUTS, MIGRATE_PROTOCOL } from '../p2p/migrate.ts'
import { startPeer } from '../p2p/peer.ts'
import type { Peer } from '../p2p/peer.ts'
import { Channel } from '../p2p/wire.ts'
import type { Frame } from '../p2p/wire.ts'
import { agentWasm, igord, tempDir } from './helpers.ts'

/** A signed header: bytes as signed and the signature. */
export interface Signed { header: Uint8Array; sig: Uint8Array }

/** Timeouts of the evil side: generous, the node under test decides when to give up. */
const T = { ...DEFAULT_TIMEOUTS, stepMs: 30_000, frameMs: 30_000, handoffMs: 30_000 }

/** Starts an evil libp2p peer on 127.0.0.1 with a random host key. Stop it with `peer.stop()`. */
export async function startEvil (): Promise<Peer> {
  return await startPeer(randomBytes(32), ['/ip4/127.0.0.1/tcp/0'])
}

/** Opens a migration stream from `evil` to the node at `addr` (a multiaddr with /p2p/); any number at once. */
export async function openMigrate (evil: Peer, addr: string): Promise<Channel> {
  const stream = await evil.dialProtocol(multiaddr(addr), MIGRATE_PROTOCOL, { signal: AbortSignal.timeout(T.dialMs * 4), maxOutboundStreams: 1024 })
  return new Channel(stream, addr.split('/p2p/')[1])
}

/**
 * A running agent of the evil peer's own: heartbeat born and run for `ticks` ticks by the real CLI
 * (`igord run --ticks`) in a temp data directory; returns its live checkpoint (status running).
 */
export function ownAgent (ticks = 3): LiveCheckpoint {
  const dir = tempDir('igord-evil-')
  const r = igord(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', String(ticks), '--interval', '1ms', '--quiet'])
  if (r.code !== 0) throw new Error(`igord run: ${r.stderr}`)
  return readLive(join(dir, 'heartbeat.ckpt'))
}

/** Re-signs `live` with header fields changed by `edit` (with the agent's own key): a new, validly signed checkpoint. */
export function resigned (live: LiveCheckpoint, edit: (h: CheckpointHeader) => void): LiveCheckpoint {
  const h = { ...live.parsed }
  edit(h)
  const header = encodeHeader(h)
  return { ...live, header, sig: signHeader(identityFromSeed(live.seed), header), parsed: decodeHeader(header, 'resigned') }
}

/** The `offer` frame of `live` under `name`, as p2p/migrate.ts `sendAgent` sends it (no replay base). */
export function offerFrame (live: LiveCheckpoint, name: string): Frame {
  const rows = live.pages.map(([i, p]) => [i, cidOfDigest(sha256(p))])
  return {
    t: 'offer', v: 1, id: randomBytes(16).toString('hex'), name, header: live.header, sig: live.sig, manifest: live.manifest,
    pageCount: live.pageCount, pages: rows, globals: live.globals.map((g) => [g.index, g.type, g.bytes]), from: [],
  }
}

/** The blobs of `live` by CID (the wasm and every page). */
export function blobsOf (live: LiveCheckpoint): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>([[live.parsed.code, live.wasm]])
  for (const [, p] of live.pages) m.set(cidOf(p), p)
  return m
}

/**
 * A handoff of `live` to `target` signed with the agent's key, as an honest source writes it
 * (status handoff, prev = CID of `live`, same tick, epoch and state); `edit` may change the header
 * before signing.
 */
export function handoffOf (live: LiveCheckpoint, target: string, edit?: (h: CheckpointHeader) => void): Signed {
  const h: CheckpointHeader = { ...live.parsed, status: 'handoff', target, prev: headerCid(live.header), log: null }
  edit?.(h)
  const header = encodeHeader(h)
  return { header, sig: signHeader(identityFromSeed(live.seed), header) }
}

/** What the target answered at each step of a scripted migration (the frames it sent). */
export interface Answers { offer: Frame; pending?: Frame; started?: Frame }

/**
 * Scripts one migration of `live` as `name` over a new stream: offer, the blobs asked for, end
 * (with `key`, default the agent's seed), and when the target answers `pending`, the handoff made
 * by `handoff(targetPeerId)`. Returns the target's answers; stops at the first `refuse`.
 */
export async function migrateScripted (evil: Peer, addr: string, live: LiveCheckpoint, name: string, handoff: (target: string) => Signed, key?: Uint8Array): Promise<Answers> {
  const ch = await openMigrate(evil, addr)
  try {
    await ch.send(offerFrame(live, name), 'offer', T.stepMs)
    const offer = await ch.recv('offer', T.stepMs, ['accept', 'refuse'])
    if (offer.t === 'refuse') return { offer }
    const blobs = blobsOf(live)
    const want = (offer.want as string[]).map((c) => { const b = blobs.get(c); if (b === undefined) throw new Error(`asked for an unknown blob ${c}`); return b })
    if (want.length > 0) await ch.send({ t: 'blobs', b: want }, 'transfer', T.frameMs)
    await ch.send({ t: 'end', key: key ?? live.seed, log: live.log }, 'end', T.stepMs)
    const pending = await ch.recv('pending', T.stepMs, ['pending', 'refuse'])
    if (pending.t === 'refuse') return { offer, pending }
    const h = handoff(ch.peer)
    await ch.send({ t: 'handoff', header: h.header, sig: h.sig }, 'handoff', T.stepMs)
    const started = await ch.recv('started', T.stepMs, ['started', 'refuse'])
    return { offer, pending, started }
  } finally { ch.abort() }
}

/** Writes raw bytes (no framing) on the stream of `ch`. */
export function sendRawBytes (ch: Channel, bytes: Uint8Array): void { ch.stream.send(bytes) }

/** Unsigned-varint encoding of `n` (a length prefix). */
export function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80) }
  out.push(n)
  return Uint8Array.from(out)
}

/** Reads the target's next frame, expecting `refuse`; returns its reason. @throws when another frame or none comes */
export async function refusal (ch: Channel, ms = 60_000): Promise<string> {
  const f = await ch.recv('answer', ms, ['refuse'])
  return String(f.reason)
}

/** VmRSS and VmHWM (peak) of process `pid`, bytes, from /proc/<pid>/status. */
export function memoryOf (pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

/** A CBOR-encoded frame (for raw sending). */
export function frameBytes (f: Frame): Uint8Array { return encode(f) }

/**
 * Raw kad-dht RPCs of the evil peer on igord's DHT protocol (p2p/dht.ts `KAD_PROTOCOL`), encoded
 * with kad-dht's own protobuf codec (the package does not export it, so it is imported by path).
 */
type KadMessage = Message

async function kadRpc (evil: Peer, addr: string, msg: KadMessage, answer: boolean): Promise<KadMessage | null> {
  const stream = await evil.dialProtocol(multiaddr(addr), KAD_PROTOCOL, { signal: AbortSignal.timeout(T.dialMs * 4) })
  const pb = pbStream(stream).pb(Message)
  const signal = AbortSignal.timeout(30_000)
  try {
    await pb.write(msg, { signal })
    const res = answer ? await pb.read({ signal }) : null
    await stream.close({ signal })
    return res
  } catch (e) { stream.abort(e as Error); throw e }
}

/**
 * Sends one `ADD_PROVIDER` naming `evil` (its own addresses, as the receiver demands) for each key
 * (a CID's multihash bytes) to the node at `addr`, one stream each, 8 at a time. A record the node
 * refuses resets its stream, but maybe only after this side closed it: what the node kept is read
 * from the node.
 */
export async function kadAddProviders (evil: Peer, addr: string, keys: Uint8Array[]): Promise<void> {
  const me = { id: evil.peerId.toMultihash().bytes, multiaddrs: evil.getMultiaddrs().map((a) => a.bytes) }
  let next = 0
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < keys.length) {
      const key = keys[next++]
      try { await kadRpc(evil, addr, { type: MessageType.ADD_PROVIDER, key, providers: [me], closer: [] }, false) } catch { /* refused */ }
    }
  }))
}

/** Asks the node at `addr` for the providers it holds of `key` (`GET_PROVIDERS`): their peer IDs (text). */
export async function kadProviders (evil: Peer, addr: string, key: Uint8Array): Promise<string[]> {
  const res = await kadRpc(evil, addr, { type: MessageType.GET_PROVIDERS, key, providers: [], closer: [] }, true)
  return (res?.providers ?? []).map((p) => peerIdFromMultihash(Digest.decode(p.id)).toString())
}

/** Sends one `PUT_VALUE` of a valid `/pk/` record (evil's own public key) to the node at `addr`; true when the node answered, false when it reset the stream. */
export async function kadPutValue (evil: Peer, addr: string): Promise<boolean> {
  const key = new Uint8Array([...new TextEncoder().encode('/pk/'), ...evil.peerId.toMultihash().bytes])
  const record = new Libp2pRecord(key, publicKeyToProtobuf(evil.peerId.publicKey!), new Date()).serialize()
  try { await kadRpc(evil, addr, { type: MessageType.PUT_VALUE, key, record, providers: [], closer: [] }, true); return true } catch { return false }
}
