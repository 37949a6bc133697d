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
import { Uint8ArrayList } from 'uint8arraylist'

/**
 * A received frame body as the stream's chunks, not joined: what `ByteStream.read` returns (a
 * `Uint8ArrayList` of the version @libp2p/utils bundles), by the few members used here.
 */
export interface Chunks extends Iterable<Uint8Array> {
  readonly byteLength: number
  /** the byte at `index` */
  get (index: number): number
  /** the bytes joined (a copy when they span chunks) */
  subarray (): Uint8Array
}

/** What `ByteStream.write` takes: a list of chunks sent as one write. @libp2p/utils bundles another version of `uint8arraylist` than the one igord imports; both mark their lists with the same `Symbol.for` and are read by it. */
type Sendable = Parameters<ByteStream<Stream>['write']>[0]
import { decode, encode } from '../checkpoint/cbor.ts'
import { asBuffer } from '../runtime/memory.ts'
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
   * Sends one frame given as its encoded bytes in `parts` (concatenated in order), without joining
   * them: the prefix and the parts go to the stream as one list, which the muxer cuts into its own
   * frames as for one buffer (see {@link Channel.send}; {@link blobsFrameParts}).
   */
  async sendParts (parts: Uint8Array[], step: string, timeoutMs: number): Promise<void> {
    let n = 0
    for (const p of parts) n += p.length
    try {
      await this.#bytes.write(new Uint8ArrayList(varint(n), ...parts) as unknown as Sendable, { signal: AbortSignal.timeout(timeoutMs) })
      this.sent += n
    } catch (e) {
      throw new NetworkError(`${step}: cannot send to ${this.peer}: ${why(e, timeoutMs)}`)
    }
  }

  /**
   * As {@link Channel.recv}, except that a `blobs` frame laid out as canonical CBOR encodes
   * `{b: [byte strings], t: "blobs"}` ({@link blobsLayout}) is not joined or decoded: it is returned
   * as the received chunks and the place of each blob in them, for the caller to copy each blob
   * once, where it is to stay ({@link copyOut}). Any other frame is decoded and checked against
   * `expect` as by {@link Channel.recv} (a `blobs` frame in another layout is not canonical CBOR and
   * fails there).
   * @throws NetworkError as {@link Channel.recv}
   */
  async recvBlobs (step: string, timeoutMs: number, expect: string[], maxBytes = MAX_FRAME): Promise<Frame | BlobsFrame> {
    const body = (await this.#body(step, timeoutMs, maxBytes, false))!
    const blobs = blobsLayout(body)
    if (blobs !== null) return { t: 'blobs', chunks: body, blobs }
    return decodeFrame(body.subarray(), step, this.peer, expect)
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
    const body = await this.#body(step, timeoutMs, maxBytes, endOk)
    if (body === null) return null
    return decodeFrame(body.subarray(), step, this.peer, expect)
  }

  /** Reads one frame's length prefix and body (the received chunks, not joined); null at the end of the stream when `endOk`. */
  async #body (step: string, timeoutMs: number, maxBytes: number, endOk: boolean): Promise<Chunks | null> {
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
    let body: Chunks
    try {
      body = length === 0 ? new Uint8ArrayList() : await this.#bytes.read({ bytes: length, signal })
    } catch (e) {
      throw new NetworkError(`${step}: no answer from ${this.peer}: ${why(e, timeoutMs)}`)
    }
    this.received += body.byteLength
    return body
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

/** A received `blobs` frame left in its chunks ({@link Channel.recvBlobs}): each blob's `[offset, length]` in `chunks`, in order. */
export interface BlobsFrame { t: 'blobs'; chunks: Chunks; blobs: [number, number][] }

const BLOBS_KEY = Uint8Array.of(0xa2, 0x61, 0x62) // map(2), "b"
const BLOBS_TAIL = Uint8Array.of(0x61, 0x74, 0x65, 0x62, 0x6c, 0x6f, 0x62, 0x73) // "t", "blobs"

/** The shortest CBOR head of major type `major` (0–7) with argument `n` (< 2^32), as canonical CBOR writes it. */
function head (major: number, n: number): number[] {
  const m = major << 5
  if (n < 24) return [m | n]
  if (n < 0x100) return [m | 24, n]
  if (n < 0x10000) return [m | 25, n >> 8, n & 0xff]
  return [m | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]
}

/**
 * The bytes of the frame `{t: "blobs", b: blobs}` in canonical CBOR — exactly `encode` of that map
 * (checkpoint/cbor.ts; test/wire.test.ts) — as a list of parts that holds the blobs themselves,
 * not copies: the CBOR heads between them are the only new bytes. Each blob is shorter than 2^32 bytes.
 */
export function blobsFrameParts (blobs: Uint8Array[]): Uint8Array[] {
  const parts: Uint8Array[] = []
  let pre = [...BLOBS_KEY, ...head(4, blobs.length)]
  for (const b of blobs) {
    parts.push(Uint8Array.from([...pre, ...head(2, b.length)]), b)
    pre = []
  }
  parts.push(Uint8Array.from([...pre, ...BLOBS_TAIL]))
  return parts
}

/**
 * Where the blobs are in a frame body laid out exactly as canonical CBOR encodes
 * `{b: [byte strings], t: "blobs"}` (shortest heads, nothing after; what {@link blobsFrameParts}
 * sends): each blob's `[offset, length]` in `body`, or null when the body is laid out otherwise
 * (another frame, or no canonical CBOR: decode it to learn which). A body this accepts decodes to the
 * same frame through `decode`; reads only the heads, never the blobs.
 */
export function blobsLayout (body: Chunks): [number, number][] | null {
  const n = body.byteLength
  let at = 0
  const byte = (): number => at < n ? body.get(at++) : -1
  /** the argument of a head of major type `major` at `at`, shortest form required; -1 when not one */
  const arg = (major: number): number => {
    const b = byte()
    if (b < 0 || b >> 5 !== major) return -1
    const ai = b & 31
    if (ai < 24) return ai
    const len = ai === 24 ? 1 : ai === 25 ? 2 : ai === 26 ? 4 : 0
    if (len === 0 || at + len > n) return -1
    let v = 0
    for (let k = 0; k < len; k++) v = v * 256 + byte()
    return v < (len === 1 ? 24 : 2 ** (8 * len / 2)) ? -1 : v // not the shortest form
  }
  for (const k of BLOBS_KEY) if (byte() !== k) return null
  const count = arg(4)
  if (count < 0) return null
  const out: [number, number][] = []
  for (let i = 0; i < count; i++) {
    const len = arg(2)
    if (len < 0 || at + len > n) return null
    out.push([at, len])
    at += len
  }
  for (const k of BLOBS_TAIL) if (byte() !== k) return null
  return at === n ? out : null
}

/**
 * Copies `dst.length` bytes of `chunks` from `offset` into `dst` (one copy, chunk by chunk). With
 * `Buffer#copy` (a plain memmove), not `TypedArray#set`: into a SharedArrayBuffer V8's `set` copies
 * with relaxed atomics, byte by byte when source and target are not equally aligned — as a page in
 * a stream's ~64 KiB chunks mostly is not — which measured 28–50 ms per 64 MiB here against 10–15.
 */
export function copyOut (chunks: Chunks, offset: number, dst: Uint8Array): void {
  let want = dst.length
  let o = 0
  let skip = offset
  for (const c of chunks) {
    if (want === 0) break
    if (skip >= c.length) { skip -= c.length; continue }
    const take = Math.min(c.length - skip, want)
    asBuffer(c).copy(dst, o, skip, skip + take)
    o += take; want -= take; skip = 0
  }
  if (want !== 0) throw new RangeError(`copyOut: ${want} bytes past the end of the frame`)
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
