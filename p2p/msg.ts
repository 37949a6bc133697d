/**
 * Agent-to-agent messages between nodes, `/igor/msg/1.0.0` (docs/PROTOCOL.md "/igor/msg/1.0.0"):
 * the host of a sending agent hands a signed message (checkpoint/envelope.ts) to the host of its
 * recipient, which checks it and takes it into the recipient's inbox.
 *
 * One stream per message, CBOR frames (p2p/wire.ts): sender → host `msg {from, to, id, body, sig}`;
 * host → sender `ok {duplicate}` or `refuse {reason, code, retry}`. The host refuses a message whose
 * signature does not verify against `from` (`retry` false, E_MSG_REFUSED) and one whose sender DID
 * is not hosted by the peer that sent it (as the host's discovery sees it; `retry` true: its view
 * may be stale while the sender moves). Delivery goes through the recipient's inbox, which drops a
 * message whose id it has seen: a sender that retries after a lost answer gets `duplicate`.
 * Bounds: frame sizes checked on the length prefix, a timeout on every read and write, and a
 * per-peer and total count of streams being answered (p2p/wire.ts `PeerSlots`).
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import { checkEnvelope, E_MSG_REFUSED, E_MSG_UNKNOWN } from '../checkpoint/envelope.ts'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import { MAX_DID_BYTES, MESSAGE_ID_BYTES } from '../checkpoint/io.ts'
import { MAX_MSG_FRAME } from './inbox.ts'
import { openChannel } from './migrate.ts'
import type { Timeouts } from './migrate.ts'
import type { Peer } from './peer.ts'
import { bytesOf, Channel, MAX_SMALL_FRAME, PeerSlots, textOf } from './wire.ts'
import type { Frame } from './wire.ts'

/** Protocol ID of agent-to-agent messages. */
export const MSG_PROTOCOL = '/igor/msg/1.0.0'

/** Bytes an inbound message stream buffers ahead of the host's read (one `msg` frame and its prefix). */
export const MSG_STREAM_BUFFER = MAX_MSG_FRAME + 16

/** Streams being answered for one peer at once, and for all peers. */
export const DEFAULT_MSG_STREAM_LIMITS = { maxPerPeer: 16, maxTotal: 128 }

/** What the host node provides to {@link answerMsg}. */
export interface MsgHooks {
  /**
   * Whether `peer` hosts agent `did` now; null when it does, else why not (the message is then
   * refused with `retry`: a sender that moves may be seen at its old host for a while).
   */
  senderCheck (did: string, peer: string): Promise<string | null>
  /** Takes a checked message into the inbox of the agent `env.to` hosted here. */
  deliver (env: Envelope): Promise<SendOutcome>
}

/**
 * Decodes a `msg` frame into an envelope (fields checked for type and size, not the signature).
 * @throws NetworkError `msg: field "<name>" …`
 */
export function decodeEnvelopeFrame (f: Frame): Envelope {
  return {
    from: textOf(f, 'from', 'msg', MAX_DID_BYTES),
    to: textOf(f, 'to', 'msg', MAX_DID_BYTES),
    id: bytesOf(f, 'id', 'msg', MESSAGE_ID_BYTES),
    body: bytesOf(f, 'body', 'msg'),
    sig: bytesOf(f, 'sig', 'msg', 64),
  }
}

/** The `msg` frame of an envelope. */
export function envelopeFrame (e: Envelope): Frame {
  return { t: 'msg', from: e.from, to: e.to, id: e.id, body: e.body, sig: e.sig }
}

/**
 * Host side of `/igor/msg/1.0.0` on one inbound stream from `ch.peer`. Never throws: a failure is
 * answered with a `refuse` frame when the stream still works.
 */
export async function answerMsg (ch: Channel, hooks: MsgHooks, stepMs: number, gate: PeerSlots): Promise<void> {
  const admitted = gate.enter(ch.peer)
  if (admitted !== null) { await refuse(ch, admitted, E_MSG_REFUSED, true, stepMs); return }
  try {
    let env: Envelope
    try { env = decodeEnvelopeFrame(await ch.recv('msg', stepMs, ['msg'], MAX_MSG_FRAME)) } catch (e) {
      await refuse(ch, (e as Error).message, E_MSG_REFUSED, false, stepMs)
      return
    }
    const bad = checkEnvelope(env)
    if (bad !== null) { await refuse(ch, `forged or malformed message: ${bad}`, E_MSG_REFUSED, false, stepMs); return }
    const notHost = await hooks.senderCheck(env.from, ch.peer)
    if (notHost !== null) { await refuse(ch, notHost, E_MSG_REFUSED, true, stepMs); return }
    const out = await hooks.deliver(env)
    if (out.ok) await ch.send({ t: 'ok', duplicate: out.duplicate }, 'ok', stepMs)
    else await ch.send({ t: 'refuse', reason: out.reason.slice(0, 1000), code: out.code, retry: out.retry }, 'refuse', stepMs)
    await ch.close()
  } catch { ch.abort() } finally { gate.leave(ch.peer) }
}

async function refuse (ch: Channel, reason: string, code: number, retry: boolean, ms: number): Promise<void> {
  try { await ch.send({ t: 'refuse', reason: reason.slice(0, 1000), code, retry }, 'refuse', ms); await ch.close() } catch { ch.abort() }
}

/**
 * Sends `env` to the node `to` (peer ID) at each of `addrs` (multiaddrs with /p2p/) until one
 * answers. Never throws: an unreachable host is a `retry` outcome.
 */
export async function sendEnvelope (peer: Peer, to: string, addrs: Multiaddr[], env: Envelope, t: Timeouts): Promise<SendOutcome> {
  let last = `no address of ${to} is known`
  for (const addr of addrs) {
    let ch: Channel | null = null
    try {
      ch = await openChannel(peer, addr, MSG_PROTOCOL, t, MAX_SMALL_FRAME + 16)
      await ch.send(envelopeFrame(env), 'msg', t.stepMs)
      const a = await ch.recv('msg', 2 * t.stepMs, ['ok', 'refuse'], MAX_SMALL_FRAME)
      await ch.close()
      if (a.t === 'ok') return { ok: true, duplicate: a.duplicate === true }
      const code = typeof a.code === 'number' && Number.isInteger(a.code) && a.code < 0 ? a.code : E_MSG_REFUSED
      return { ok: false, retry: a.retry === true, code, reason: `${to} refused it: ${textOf(a, 'reason', 'refuse')}` }
    } catch (e) {
      ch?.abort()
      last = (e as Error).message.split('\n')[0]
    }
  }
  return { ok: false, retry: true, code: E_MSG_UNKNOWN, reason: last }
}
