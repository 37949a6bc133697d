/**
 * Agent-to-agent messages between nodes, `/igor/msg/1.1.0` (docs/PROTOCOL.md "/igor/msg/1.1.0"):
 * the host of a sending agent hands signed messages (checkpoint/envelope.ts) to the host of their
 * recipient, which checks each and takes it into the recipient's inbox.
 *
 * CBOR frames (p2p/wire.ts): sender → host `msg {from, to, id, body, sig}`; host → sender
 * `ok {duplicate}` or `refuse {reason, code, retry}`, one answer per `msg`, in order. A stream
 * carries several messages: the sender writes ahead of the answers, within a window of
 * {@link MSG_WINDOW_FRAMES} frames and {@link MSG_WINDOW_BYTES} bytes, and ends the stream (closes
 * its side) once every message is answered; `/igor/msg/1.0.0` is the same with one message a
 * stream, still answered. The host refuses a message whose signature does not verify against
 * `from` (`retry` false, E_MSG_REFUSED) and one whose sender DID is not hosted by the peer that sent
 * it (as the host's discovery sees it; `retry` true: its view may be stale while the sender moves).
 * Once it refused a message with `retry`, the host refuses every later one of that stream with
 * `retry` too, unseen: none overtakes a message its sender will send again.
 * Delivery goes through the recipient's inbox, which drops a message whose id it has seen: a
 * sender that retries after a lost answer gets `duplicate`.
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
import { encode } from '../checkpoint/cbor.ts'
import { bytesOf, Channel, MAX_SMALL_FRAME, PeerSlots, textOf } from './wire.ts'
import type { Frame } from './wire.ts'

/** Protocol ID of agent-to-agent messages: several messages a stream, written ahead of their answers. */
export const MSG_PROTOCOL = '/igor/msg/1.1.0'

/** Protocol ID of the first version (one message a stream), still answered. */
export const MSG_PROTOCOL_V1 = '/igor/msg/1.0.0'

/** `msg` frames a sender writes ahead of their answers on one stream. */
export const MSG_WINDOW_FRAMES = 32

/**
 * Bytes of `msg` frames (length prefixes included) a sender writes ahead of their answers on one
 * stream: one frame of the largest size, or several smaller ones (a frame larger than what is left
 * waits until every earlier one is answered).
 */
export const MSG_WINDOW_BYTES = MAX_MSG_FRAME + 16

/**
 * How long a sender keeps a stream open once every message on it is answered, for the next ones
 * (a reply is often on its way within a tick or two), ms. Well under the host's wait for a frame.
 */
export const MSG_LINGER_MS = 500

/** Bytes an inbound message stream buffers ahead of the host's read: the sender's window, and the frame being read. */
export const MSG_STREAM_BUFFER = 2 * MSG_WINDOW_BYTES

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
  /**
   * Takes checked messages into the inboxes of their recipients hosted here, in order, as
   * {@link deliver} would one by one, with one durable write for several where it can (group
   * commit); one outcome each, and after the first `retry` outcome the rest `retry` without being
   * tried. Absent: {@link deliver} one by one.
   */
  deliverMany? (envs: Envelope[]): Promise<SendOutcome[]>
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
 * Host side of `/igor/msg/1.1.0` (and `/igor/msg/1.0.0`) on one inbound stream from `ch.peer`:
 * answers each `msg` frame in order until the sender ends the stream. Never throws: a failure is
 * answered with a `refuse` frame when the stream still works. A frame that cannot be read as a
 * message is refused for good and ends the stream (its framing may be lost); a message refused with
 * `retry` makes every later one of the stream refused with `retry`. Frames that arrive while
 * earlier ones are being taken (at most {@link MSG_WINDOW_FRAMES}, the sender's window) are taken
 * together next (`hooks.deliverMany`: one durable write for them).
 */
export async function answerMsg (ch: Channel, hooks: MsgHooks, stepMs: number, gate: PeerSlots): Promise<void> {
  const admitted = gate.enter(ch.peer)
  if (admitted !== null) { await refuse(ch, admitted, E_MSG_REFUSED, true, stepMs); return }
  // frames read ahead of the answers, and how reading ended: the stream's end (null) or a bad frame
  const frames: Envelope[] = []
  let ended = undefined as Error | null | undefined
  let stop = false
  let wakeAnswers = null as (() => void) | null
  let wakeReader = null as (() => void) | null
  const reader = (async () => {
    try {
      for (;;) {
        while (frames.length >= MSG_WINDOW_FRAMES && !stop) await new Promise<void>((resolve) => { wakeReader = resolve })
        if (stop) return
        // no timeout of its own: the answering side ends an idle stream (below)
        const f = await ch.recvOrEnd('msg', 2 ** 31 - 1, ['msg'], MAX_MSG_FRAME)
        if (f === null) { ended = null; break }
        frames.push(decodeEnvelopeFrame(f))
        wakeAnswers?.()
      }
    } catch (e) { ended = e as Error }
    wakeAnswers?.()
  })()
  try {
    let held: string | null = null // why an earlier message of this stream was refused with retry
    for (;;) {
      if (frames.length === 0) {
        if (ended !== undefined) break
        // the sender has `stepMs` to send its next frame (or end the stream) once all are answered
        const more = await new Promise<boolean>((resolve) => {
          const t = setTimeout(() => { wakeAnswers = null; resolve(false) }, stepMs)
          wakeAnswers = () => { clearTimeout(t); wakeAnswers = null; resolve(true) }
        })
        if (!more) { ch.abort(); return }
        continue
      }
      const batch = frames.splice(0)
      wakeReader?.()
      wakeReader = null
      const outs: (SendOutcome | null)[] = held !== null ? batch.map(() => null) : await takeAll(batch, ch.peer, hooks)
      for (const o of outs) {
        const out: SendOutcome = o ?? { ok: false, retry: true, code: E_MSG_REFUSED, reason: `an earlier message on this stream was not taken (${held!.slice(0, 200)})` }
        if (out.ok) await ch.send({ t: 'ok', duplicate: out.duplicate }, 'ok', stepMs)
        else {
          if (out.retry && held === null) held = out.reason
          await ch.send({ t: 'refuse', reason: out.reason.slice(0, 1000), code: out.code, retry: out.retry }, 'refuse', stepMs)
        }
      }
    }
    if (ended !== null && ended !== undefined) { await refuse(ch, ended.message, E_MSG_REFUSED, false, stepMs); return }
    await ch.close()
  } catch { ch.abort() } finally {
    gate.leave(ch.peer)
    stop = true
    wakeReader?.()
    await reader
  }
}

/**
 * Checks messages (signature, sender's host) in order and takes those that pass into their
 * recipients' inboxes together; one outcome each, null for those not tried after one came back
 * `retry` (a sender that is not seen at `peer`, a recipient that cannot take it now).
 */
async function takeAll (envs: Envelope[], peer: string, hooks: MsgHooks): Promise<(SendOutcome | null)[]> {
  const out: (SendOutcome | null)[] = envs.map(() => null)
  const passed: number[] = []
  for (let i = 0; i < envs.length; i++) {
    const bad = checkEnvelope(envs[i])
    if (bad !== null) { out[i] = { ok: false, retry: false, code: E_MSG_REFUSED, reason: `forged or malformed message: ${bad}` }; continue }
    const notHost = await hooks.senderCheck(envs[i].from, peer)
    if (notHost !== null) { out[i] = { ok: false, retry: true, code: E_MSG_REFUSED, reason: notHost }; break }
    passed.push(i)
  }
  if (passed.length === 0) return out
  const taken = passed.length > 1 && hooks.deliverMany !== undefined
    ? await hooks.deliverMany(passed.map((i) => envs[i]))
    : await (async () => {
      const r: SendOutcome[] = []
      for (const i of passed) { const o = await hooks.deliver(envs[i]); r.push(o); if (!o.ok && o.retry) break }
      return r
    })()
  passed.forEach((i, k) => { if (k < taken.length) out[i] = taken[k] })
  return out
}

async function refuse (ch: Channel, reason: string, code: number, retry: boolean, ms: number): Promise<void> {
  try { await ch.send({ t: 'refuse', reason: reason.slice(0, 1000), code, retry }, 'refuse', ms); await ch.close() } catch { ch.abort() }
}

/**
 * Sends `env` alone to the node `to` (peer ID) at each of `addrs` (multiaddrs with /p2p/) until one
 * answers (one stream, one message; {@link MsgStream} sends several). Never throws: an unreachable
 * host is a `retry` outcome.
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
      return outcomeOf(a, to)
    } catch (e) {
      ch?.abort()
      last = (e as Error).message.split('\n')[0]
    }
  }
  return { ok: false, retry: true, code: E_MSG_UNKNOWN, reason: last }
}

/** The outcome of a `ok` / `refuse` answer frame from host `to`. */
function outcomeOf (a: Frame, to: string): SendOutcome {
  if (a.t === 'ok') return { ok: true, duplicate: a.duplicate === true }
  const code = typeof a.code === 'number' && Number.isInteger(a.code) && a.code < 0 ? a.code : E_MSG_REFUSED
  return { ok: false, retry: a.retry === true, code, reason: `${to} refused it: ${textOf(a, 'reason', 'refuse')}` }
}

interface Queued { env: Envelope; bytes: Uint8Array; resolve (o: SendOutcome): void }

/**
 * Sender side of one `/igor/msg/1.1.0` stream to host `to`: messages pushed are written in push
 * order, ahead of their answers within the window ({@link MSG_WINDOW_FRAMES},
 * {@link MSG_WINDOW_BYTES}), and each push settles with its own answer. The stream opens at the
 * first push (each of `addrs` tried in turn) and ends once every message pushed is answered and
 * none came for {@link MSG_LINGER_MS}; a push after that ({@link done} true) needs a new
 * MsgStream. After an answer with `retry` (the stream then ends: the host refuses the rest of it),
 * or when the stream fails, every message not answered yet settles with `retry` too: none
 * overtakes a message its sender will send again. Never throws.
 */
export class MsgStream {
  /** The host's peer ID. */
  readonly to: string
  readonly #peer: Peer
  readonly #addrs: Multiaddr[]
  readonly #t: Timeouts
  readonly #queue: Queued[] = []
  readonly #sent: Queued[] = []
  #sentBytes = 0
  #running = false
  /** set while the stream lingers with nothing to send: a push wakes it */
  #wake: (() => void) | null = null
  /** set once the stream ended (or failed): pushes go to a new MsgStream */
  done = false

  /** @param addrs multiaddrs of `to` with /p2p/ */
  constructor (peer: Peer, to: string, addrs: Multiaddr[], t: Timeouts) {
    this.#peer = peer
    this.to = to
    this.#addrs = addrs
    this.#t = t
  }

  /**
   * Sends `env` after every message pushed before it.
   * @returns its answer, or `retry` when it was not taken (the stream failed, an earlier one was refused with `retry`)
   * @throws Error when the stream is {@link done} (a caller error)
   */
  push (env: Envelope): Promise<SendOutcome> {
    if (this.done) throw new Error('MsgStream.push: the stream has ended')
    return new Promise<SendOutcome>((resolve) => {
      this.#queue.push({ env, bytes: encode(envelopeFrame(env)), resolve })
      if (this.#wake !== null) this.#wake()
      else if (!this.#running) { this.#running = true; void this.#run() }
    })
  }

  #fits (q: Queued): boolean {
    return this.#sent.length === 0 || (this.#sent.length < MSG_WINDOW_FRAMES && this.#sentBytes + q.bytes.length + 8 <= MSG_WINDOW_BYTES)
  }

  #failAll (reason: string, code = E_MSG_UNKNOWN): void {
    for (const q of this.#sent.splice(0)) q.resolve({ ok: false, retry: true, code, reason })
    for (const q of this.#queue.splice(0)) q.resolve({ ok: false, retry: true, code, reason })
    this.#sentBytes = 0
  }

  async #open (): Promise<Channel> {
    let last = `no address of ${this.to} is known`
    for (const addr of this.#addrs) {
      try { return await openChannel(this.#peer, addr, MSG_PROTOCOL, this.#t, MAX_SMALL_FRAME + 16) } catch (e) { last = (e as Error).message.split('\n')[0] }
    }
    throw new Error(last)
  }

  /** Waits {@link MSG_LINGER_MS} for a push: true when one came; false when none did (then {@link done} is set). */
  #linger (): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => { this.#wake = null; this.done = true; resolve(false) }, MSG_LINGER_MS)
      t.unref()
      this.#wake = () => { clearTimeout(t); this.#wake = null; resolve(true) }
    })
  }

  async #run (): Promise<void> {
    let ch: Channel
    try { ch = await this.#open() } catch (e) {
      this.done = true
      this.#failAll((e as Error).message)
      return
    }
    try {
      for (;;) {
        while (this.#queue.length > 0 && this.#fits(this.#queue[0])) {
          const q = this.#queue.shift()!
          this.#sent.push(q)
          this.#sentBytes += q.bytes.length + 8
          await ch.sendRaw(q.bytes, 'msg', this.#t.stepMs)
        }
        if (this.#sent.length === 0) {
          // every message answered, none waiting: linger for the next ones, then end
          if (this.#queue.length > 0 || (!this.done && await this.#linger())) continue
          break
        }
        const out = outcomeOf(await ch.recv('msg', 2 * this.#t.stepMs, ['ok', 'refuse'], MAX_SMALL_FRAME), this.to)
        const q = this.#sent.shift()!
        this.#sentBytes -= q.bytes.length + 8
        q.resolve(out)
        if (!out.ok && out.retry) {
          // the host refuses the rest of the stream: what is written is answered so, what is not is
          // not sent, and what comes next goes on a new stream
          this.done = true
          for (const w of this.#queue.splice(0)) w.resolve({ ok: false, retry: true, code: out.code, reason: `not sent: an earlier message was not taken (${out.reason.slice(0, 200)})` })
        }
      }
      await ch.close()
    } catch (e) {
      this.done = true
      ch.abort()
      this.#failAll((e as Error).message.split('\n')[0])
    }
  }
}
