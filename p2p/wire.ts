/**
 * Framing of igord's libp2p protocols (docs/PROTOCOL.md): each frame is one canonical CBOR map
 * (checkpoint/cbor.ts) carried as one unsigned-varint length-prefixed message (the encoding of
 * `lpStream` from @libp2p/utils). Every frame has a text field `t` naming its type. Every read and
 * write has a timeout, and every read a length limit checked on the length prefix, before the
 * frame's body is waited for: a frame claiming more than the limit of its step is refused at once.
 * A timeout, a reset stream, an oversized or malformed frame is a {@link NetworkError} naming the
 * peer and the protocol step.
 */
import type { Stream } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import type { ByteStream } from '@libp2p/utils'
import { decode, encode } from '../checkpoint/cbor.ts'
import { NetworkError } from './errors.ts'

/** Largest frame, bytes: a 64 MiB wasm module (the largest single blob) plus room for the map. */
export const MAX_FRAME = 64 * 1024 * 1024 + 64 * 1024

/**
 * Largest `offer` frame a target reads, bytes (16 MiB): two page tables of 65,536 rows (the offered
 * checkpoint's and its replay base's, ~65 bytes a row) plus header, manifest and globals.
 */
export const MAX_OFFER_FRAME = 16 * 1024 * 1024

/** Largest frame of a small step (`handoff`, `status`, `pending`, `started`, `refuse`, `info`), bytes: 64 KiB. */
export const MAX_SMALL_FRAME = 64 * 1024

/** Longest length prefix accepted, bytes: 8 varint bytes encode up to 2^56 − 1. */
const MAX_PREFIX = 8

/** A decoded frame: a CBOR map with a text `t`. */
export type Frame = Record<string, unknown> & { t: string }

/** A frame-level channel over one libp2p stream, for one peer. */
export class Channel {
  /** The remote peer ID (for messages). */
  readonly peer: string
  readonly stream: Stream
  readonly #bytes: ByteStream<Stream>
  /** Bytes of frames sent and received on this channel (length prefixes excluded). */
  sent = 0
  received = 0

  /**
   * @param stream a libp2p stream; bytes the peer sends ahead of our reads are buffered up to
   *   {@link MAX_FRAME} + 16 bytes, beyond which the stream is reset
   * @param peer the remote peer ID (for messages)
   * @param maxBuffer bytes buffered ahead of our reads before the stream is reset (default
   *   {@link MAX_FRAME} + 16; a protocol whose frames are all smaller passes its own bound)
   */
  constructor (stream: Stream, peer: string, maxBuffer = MAX_FRAME + 16) {
    this.stream = stream
    this.peer = peer
    this.#bytes = byteStream(stream, { maxBufferSize: maxBuffer })
  }

  /**
   * Sends one frame (encoded here) within `timeoutMs`.
   * @throws NetworkError `<step>: cannot send to <peer>: …`
   */
  async send (frame: Frame, step: string, timeoutMs: number): Promise<void> {
    await this.sendRaw(encode(frame), step, timeoutMs)
  }

  /** Sends already-encoded frame bytes (see {@link Channel.send}). */
  async sendRaw (bytes: Uint8Array, step: string, timeoutMs: number): Promise<void> {
    try {
      const signal = AbortSignal.timeout(timeoutMs)
      const prefix = varint(bytes.length)
      if (bytes.length <= MAX_SMALL_FRAME) {
        // one write (one muxer frame, one encrypted chunk) for a small frame and its prefix
        const one = new Uint8Array(prefix.length + bytes.length)
        one.set(prefix, 0)
        one.set(bytes, prefix.length)
        await this.#bytes.write(one, { signal })
      } else {
        await this.#bytes.write(prefix, { signal })
        await this.#bytes.write(bytes, { signal })
      }
      this.sent += bytes.length
    } catch (e) {
      throw new NetworkError(`${step}: cannot send to ${this.peer}: ${why(e, timeoutMs)}`)
    }
  }

  /**
   * Reads one frame (length prefix and body) within `timeoutMs`; when `expect` is given, a frame of
   * another type is an error (an `error` frame's `reason` is reported as the peer's words).
   * @param maxBytes the largest frame accepted at this step, bytes (default {@link MAX_FRAME}); a
   *   longer one is refused on its length prefix, before its body is read
   * @throws NetworkError `<step>: …` on timeout, end of stream, a frame over `maxBytes`
   *   (`<step>: <peer> sent a frame of N bytes; the limit of this step is M bytes`), a malformed
   *   length prefix, malformed CBOR or an unexpected frame
   */
  async recv (step: string, timeoutMs: number, expect?: string[], maxBytes = MAX_FRAME): Promise<Frame> {
    return (await this.#recv(step, timeoutMs, expect, maxBytes, false))!
  }

  /**
   * As {@link Channel.recv}, but null when the peer ends the stream (closes its side) before the
   * first byte of a frame: the end of a stream that carries several frames.
   * @throws NetworkError as {@link Channel.recv} (an end inside a frame included)
   */
  async recvOrEnd (step: string, timeoutMs: number, expect?: string[], maxBytes = MAX_FRAME): Promise<Frame | null> {
    return await this.#recv(step, timeoutMs, expect, maxBytes, true)
  }

  async #recv (step: string, timeoutMs: number, expect: string[] | undefined, maxBytes: number, endOk: boolean): Promise<Frame | null> {
    let bytes: Uint8Array
    const signal = AbortSignal.timeout(timeoutMs)
    let length: number | null
    try {
      length = await this.#readPrefix(signal, endOk)
      if (length === null) return null
    } catch (e) {
      if (e instanceof NetworkError) throw new NetworkError(`${step}: ${e.message}`)
      throw new NetworkError(`${step}: no answer from ${this.peer}: ${why(e, timeoutMs)}`)
    }
    if (length > maxBytes) throw new NetworkError(`${step}: ${this.peer} sent a frame of ${length} bytes; the limit of this step is ${maxBytes} bytes`)
    try {
      bytes = length === 0 ? new Uint8Array(0) : (await this.#bytes.read({ bytes: length, signal })).subarray()
    } catch (e) {
      throw new NetworkError(`${step}: no answer from ${this.peer}: ${why(e, timeoutMs)}`)
    }
    this.received += bytes.length
    return decodeFrame(bytes, step, this.peer, expect)
  }

  /** Reads an unsigned-varint length prefix (at most {@link MAX_PREFIX} bytes). */
  async #readPrefix (signal: AbortSignal, endOk = false): Promise<number | null> {
    let n = 0
    for (let k = 0; k < MAX_PREFIX; k++) {
      let b: number
      try { b = (await this.#bytes.read({ bytes: 1, signal })).get(0) } catch (e) {
        // the end of the stream before a frame's first byte
        if (k === 0 && endOk && (e as Error).name === 'UnexpectedEOFError') return null
        throw e
      }
      n += (b & 0x7f) * 2 ** (7 * k)
      if ((b & 0x80) === 0) return n
    }
    throw new NetworkError(`${this.peer} sent a malformed length prefix (longer than ${MAX_PREFIX} bytes)`)
  }

  /** Closes our side gracefully, or aborts the stream when that fails; never throws. */
  async close (): Promise<void> {
    try { await this.stream.close({ signal: AbortSignal.timeout(2000) }) } catch { this.abort() }
  }

  /** Resets the stream; never throws. */
  abort (): void {
    try { this.stream.abort(new Error('igord: closing the stream')) } catch { /* already gone */ }
  }
}

/** Unsigned-varint encoding of a length (as `uint8-varint`, which lpStream uses). */
function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80) }
  out.push(n)
  return Uint8Array.from(out)
}

function why (e: unknown, timeoutMs: number): string {
  const err = e as Error
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return `timed out after ${timeoutMs} ms`
  if (err?.name === 'UnexpectedEOFError') return 'the stream ended (peer closed or crashed)'
  return (err?.message ?? String(e)).split('\n')[0]
}

/**
 * Decodes one received frame's bytes (canonical CBOR, a map with a text `t`); when `expect` is
 * given, a frame of another type is an error (an `error` frame's `reason` is reported as the
 * peer's words). Used by {@link Channel.recv}; `peer` names the sender in messages.
 * @throws NetworkError `<step>: malformed frame from <peer>: …` or `<step>: unexpected frame …`
 */
export function decodeFrame (bytes: Uint8Array, step: string, peer: string, expect?: string[]): Frame {
  let v: unknown
  try { v = decode(bytes, `${step} frame`) } catch (e) { throw new NetworkError(`${step}: malformed frame from ${peer}: ${(e as Error).message}`) }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array || typeof (v as Frame).t !== 'string') {
    throw new NetworkError(`${step}: malformed frame from ${peer}: not a map with a text "t"`)
  }
  const f = v as Frame
  if (expect !== undefined && !expect.includes(f.t)) {
    if (f.t === 'error') throw new NetworkError(`${step}: ${peer} says: ${String(f.reason)}`)
    throw new NetworkError(`${step}: unexpected frame "${f.t.slice(0, 40)}" from ${peer} (expected ${expect.join(' or ')})`)
  }
  return f
}

/** Reads a field of a frame that must be a byte string. @throws NetworkError naming the field */
export function bytesOf (f: Frame, key: string, step: string, length?: number): Uint8Array {
  const v = f[key]
  if (!(v instanceof Uint8Array) || (length !== undefined && v.length !== length)) throw new NetworkError(`${step}: field "${key}" must be ${length === undefined ? 'a byte string' : `${length} bytes`}`)
  return v
}

/** Reads a field of a frame that must be a text string (≤ `max` chars). @throws NetworkError naming the field */
export function textOf (f: Frame, key: string, step: string, max = 4096): string {
  const v = f[key]
  if (typeof v !== 'string' || v.length > max) throw new NetworkError(`${step}: field "${key}" must be a text string of at most ${max} characters`)
  return v
}

/**
 * Counts of concurrent inbound streams (offers, inbox messages) per peer and in total, against
 * their bounds; one per node and protocol, single-threaded. `what` names them in refusals, e.g.
 * `too many concurrent offers from this peer (limit 2)`.
 */
export class PeerSlots {
  readonly maxPerPeer: number
  readonly maxTotal: number
  readonly what: string
  readonly #perPeer = new Map<string, number>()
  #total = 0

  /** @param maxPerPeer streams one peer may hold open; @param maxTotal all peers together; @param what plural noun for refusals */
  constructor (maxPerPeer: number, maxTotal: number, what: string) {
    this.maxPerPeer = maxPerPeer
    this.maxTotal = maxTotal
    this.what = what
  }

  /** Streams admitted and not yet left. */
  get total (): number { return this.#total }

  /** Admits one more stream of `peer`: null (call {@link leave} later) or the refusal reason. */
  enter (peer: string): string | null {
    const n = this.#perPeer.get(peer) ?? 0
    if (n >= this.maxPerPeer) return `too many concurrent ${this.what} from this peer (limit ${this.maxPerPeer})`
    if (this.#total >= this.maxTotal) return `too many concurrent ${this.what} on this node (limit ${this.maxTotal})`
    this.#perPeer.set(peer, n + 1)
    this.#total++
    return null
  }

  /** Ends a stream admitted by {@link enter}. */
  leave (peer: string): void {
    const n = (this.#perPeer.get(peer) ?? 1) - 1
    if (n <= 0) this.#perPeer.delete(peer); else this.#perPeer.set(peer, n)
    this.#total = Math.max(0, this.#total - 1)
  }
}
