/**
 * Inbox forwarding `/igor/inbox/1.0.0` (docs/PROTOCOL.md "/igor/inbox/1.0.0", "Inbox during
 * migration"): a node that handed an agent off passes a message sent to it there on to the node it
 * went to, once (never a second hop), and returns that node's answer to the sender.
 *
 * One stream per message, CBOR frames (p2p/wire.ts): forwarder → host `msg {agent, m}`; host →
 * forwarder `ok {seq, duplicate, budget}` or `refuse {reason, exit}`. The host delivers through its
 * own inbox (runtime/mailbox.ts), which drops a message whose id the agent has already seen: a
 * forwarder that retries after a lost answer gets `duplicate`, never a second copy. Bounds: frame
 * sizes checked on the length prefix, a timeout on every read and write, and a per-peer and total
 * count of streams being answered ({@link StreamGate}).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Multiaddr } from '@multiformats/multiaddr'
import { EXIT, IgordError } from '../checkpoint/errors.ts'
import { decodeMessage, encodeMessage, MAX_FROM_BYTES } from '../checkpoint/io.ts'
import { INBOX_LIMITS } from '../hostcalls/manifest.ts'
import { DeliveryRefused } from '../runtime/mailbox.ts'
import type { Incoming } from '../runtime/mailbox.ts'
import { NetworkError } from './errors.ts'
import { openChannel } from './migrate.ts'
import type { Timeouts } from './migrate.ts'
import type { Peer } from './peer.ts'
import { bytesOf, Channel, MAX_SMALL_FRAME, PeerSlots, textOf } from './wire.ts'
import type { Frame } from './wire.ts'

/** Protocol ID of inbox forwarding. */
export const INBOX_PROTOCOL = '/igor/inbox/1.0.0'

/** Largest `msg` frame a host reads, bytes: the largest body any manifest allows (1 MiB) plus 64 KiB for the rest. */
export const MAX_MSG_FRAME = INBOX_LIMITS.max_message_bytes[1] + 64 * 1024

/** Bytes an inbound inbox stream buffers ahead of the host's read (one `msg` frame and its prefix); more resets it. */
export const INBOX_STREAM_BUFFER = MAX_MSG_FRAME + 16

/** Longest `agent` field (a name or a `did:key:…`), characters. */
export const MAX_AGENT_FIELD = 256

/** A host's bounds on inbound forwarding streams (answered one message each). */
export interface InboxStreamLimits {
  /** streams being answered for one peer at once */
  maxPerPeer: number
  /** streams being answered for all peers at once */
  maxTotal: number
}

/** Default {@link InboxStreamLimits}: 8 per peer, 64 in total. */
export const DEFAULT_INBOX_STREAM_LIMITS: InboxStreamLimits = { maxPerPeer: 8, maxTotal: 64 }

/**
 * Forwarding retries: `attempts` rounds over the target's known addresses, the k-th retry after
 * `backoffMs` × 2^(k−1) ms.
 */
export interface ForwardRetry { attempts: number; backoffMs: number }

/** Default {@link ForwardRetry}: 3 rounds, 250 ms then 500 ms apart. */
export const DEFAULT_FORWARD_RETRY: ForwardRetry = { attempts: 3, backoffMs: 250 }

/** Counts of inbound inbox streams per peer and in total (one per node; single-threaded). */
export class StreamGate extends PeerSlots {
  readonly limits: InboxStreamLimits

  constructor (limits: Partial<InboxStreamLimits> = {}) {
    const l = { ...DEFAULT_INBOX_STREAM_LIMITS, ...limits }
    super(l.maxPerPeer, l.maxTotal, 'inbox streams')
    this.limits = l
  }

  /** Streams being answered now. */
  get open (): number { return this.total }
}

/** What a host answers for a delivered message: its seq (0 for a duplicate) and the agent's budget after it (microcents). */
export interface Delivered { seq: number; duplicate: boolean; budget: bigint }

/** What the host node provides to {@link answerInbox}. */
export interface InboxHooks {
  /**
   * Delivers `msg` to the agent hosted here (name or DID), never forwarding it further; throws
   * (an IgordError: its message and exit code are the refusal) when it is not taken.
   */
  deliver (agent: string, msg: Incoming, fromPeer: string): Promise<Delivered>
}

/** Timeouts of the inbox protocol, ms: each frame (`stepMs`, of {@link Timeouts}), and the host's whole delivery (`deliverMs`). */
export interface InboxTimeouts { stepMs: number; deliverMs: number }

/**
 * Decodes and checks a `msg` frame from `peer`: `agent` text (≤ {@link MAX_AGENT_FIELD}), `m` the
 * canonical CBOR of a message with seq 0, of kind `message` (whose `from` must be `peer`: the node
 * that took it) or `fund` (signed by its funder; checked by the agent's mailbox).
 * @throws NetworkError `msg: …` naming the field
 */
export function decodeMsgFrame (f: Frame, peer: string): { agent: string; msg: Incoming } {
  const agent = textOf(f, 'agent', 'msg', MAX_AGENT_FIELD)
  if (agent.length === 0) throw new NetworkError('msg: field "agent" must not be empty')
  let m
  try { m = decodeMessage(bytesOf(f, 'm', 'msg'), 'msg: field "m"') } catch (e) { throw new NetworkError((e as Error).message) }
  if (m.seq !== 0) throw new NetworkError(`msg: field "m": seq must be 0 (the host numbers it), got ${m.seq}`)
  if (m.kind !== 'message' && m.kind !== 'fund') throw new NetworkError(`msg: field "m": kind ${m.kind} cannot be forwarded (only message and fund)`)
  if (m.kind === 'message' && m.from !== peer) throw new NetworkError(`msg: field "m": from must be the forwarding peer ${peer}, got ${m.from.slice(0, MAX_FROM_BYTES)}`)
  const { seq: _seq, ...msg } = m
  return { agent, msg }
}

/**
 * Host side of `/igor/inbox/1.0.0` on one inbound stream from `ch.peer`. Never throws: a failure is
 * answered with a `refuse` frame when the stream still works. A stream over the gate's bounds is
 * refused at once, before its frame is read.
 */
export async function answerInbox (ch: Channel, hooks: InboxHooks, t: InboxTimeouts, gate: StreamGate): Promise<void> {
  const admitted = gate.enter(ch.peer)
  if (admitted !== null) { await refuse(ch, admitted, EXIT.NETWORK, t.stepMs); return }
  try {
    let req: { agent: string; msg: Incoming }
    try { req = decodeMsgFrame(await ch.recv('msg', t.stepMs, ['msg'], MAX_MSG_FRAME), ch.peer) } catch (e) {
      await refuse(ch, (e as Error).message, EXIT.NETWORK, t.stepMs)
      return
    }
    let d: Delivered
    try {
      d = await withTimeout(hooks.deliver(req.agent, req.msg, ch.peer), t.deliverMs)
    } catch (e) {
      await refuse(ch, (e as Error).message.split('\n')[0], e instanceof IgordError ? e.exitCode : EXIT.INTERNAL, t.stepMs)
      return
    }
    await ch.send({ t: 'ok', seq: d.seq, duplicate: d.duplicate, budget: d.budget }, 'ok', t.stepMs)
    await ch.close()
  } catch { ch.abort() } finally { gate.leave(ch.peer) }
}

/** `p`, or a DeliveryRefused after `ms` (the delivery may still complete: the sender's retry with the same id is then a duplicate). */
async function withTimeout<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new DeliveryRefused(`the delivery did not finish within ${ms} ms; try again with the same message id`)), ms) })
  try { return await Promise.race([p, late]) } finally { clearTimeout(timer) }
}

async function refuse (ch: Channel, reason: string, exit: number, ms: number): Promise<void> {
  try { await ch.send({ t: 'refuse', reason: reason.slice(0, 1000), exit }, 'refuse', ms); await ch.close() } catch { ch.abort() }
}

/** Where a forwarded message went and what its new host answered. */
export interface Forwarded extends Delivered { to: string; addr: string }

/**
 * Forwards `msg` for `agent` (a name or DID) to `to` (its peer ID), dialing each of `addrs` (each
 * ending in `/p2p/<to>`), in up to `retry.attempts` rounds with backoff. The host's `refuse` ends
 * the attempts at once.
 * @throws DeliveryRefused (exit 11) when the host refuses (`<to> refused the forwarded message: <reason>`),
 *   or when no round reached it (`… could not be forwarded to <to> after N attempts: <last error>`);
 *   an IgordError with the host's exit code when it refused for another reason than the inbox (e.g.
 *   storage)
 */
export async function forwardMessage (peer: Peer, to: string, addrs: Multiaddr[], agent: string, msg: Incoming, t: Timeouts & { deliverMs: number }, retry: ForwardRetry = DEFAULT_FORWARD_RETRY): Promise<Forwarded> {
  const frame = { t: 'msg', agent, m: encodeMessage({ ...msg, seq: 0 }) }
  let last: Error = new NetworkError(`no address of ${to} is known`)
  for (let k = 0; k < retry.attempts; k++) {
    if (k > 0) await sleep(retry.backoffMs * 2 ** (k - 1))
    for (const addr of addrs) {
      let ch: Channel | null = null
      try {
        ch = await openChannel(peer, addr, INBOX_PROTOCOL, t, MAX_SMALL_FRAME + 16)
        await ch.send(frame, 'msg', t.stepMs)
        const a = await ch.recv('msg', t.deliverMs + t.stepMs, ['ok', 'refuse'], MAX_SMALL_FRAME)
        await ch.close()
        if (a.t === 'refuse') {
          const reason = textOf(a, 'reason', 'refuse')
          const exit = typeof a.exit === 'number' && Number.isInteger(a.exit) && a.exit > 0 && a.exit < 256 ? a.exit : EXIT.REFUSED
          const text = `${to} refused the forwarded message: ${reason}`
          throw exit === EXIT.REFUSED || exit === EXIT.NETWORK ? new DeliveryRefused(text) : new IgordError(text, exit)
        }
        const seq = a.seq; const budget = a.budget
        if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0 || typeof a.duplicate !== 'boolean') throw new NetworkError(`msg: malformed ok from ${to}`)
        return { seq, duplicate: a.duplicate, budget: typeof budget === 'bigint' ? budget : BigInt(typeof budget === 'number' && Number.isSafeInteger(budget) ? budget : 0), to, addr: addr.toString() }
      } catch (e) {
        ch?.abort()
        if (e instanceof IgordError && !(e instanceof NetworkError)) throw e
        last = e as Error
      }
    }
  }
  throw new DeliveryRefused(`the message for ${agent} could not be forwarded to ${to} after ${retry.attempts} attempts: ${last.message.split('\n')[0]}; sending it again with the same --id is safe`)
}
