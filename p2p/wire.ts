/**
 * Framing of igord's libp2p protocols (docs/PROTOCOL.md): each frame is one canonical CBOR map
 * (checkpoint/cbor.ts) carried as one unsigned-varint length-prefixed message (`lpStream` from
 * @libp2p/utils, with its 4 MiB default limits raised to {@link MAX_FRAME}). Every frame has a text
 * field `t` naming its type. Every read and write has a timeout; a timeout, a reset stream or a
 * malformed frame is a {@link NetworkError} naming the peer and the protocol step.
 */
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import type { LengthPrefixedStream } from '@libp2p/utils'
import { decode, encode } from '../checkpoint/cbor.ts'
import { NetworkError } from './errors.ts'

/** Largest frame, bytes: a 64 MiB wasm module (the largest single blob) plus room for the map. */
export const MAX_FRAME = 64 * 1024 * 1024 + 64 * 1024

/** A decoded frame: a CBOR map with a text `t`. */
export type Frame = Record<string, unknown> & { t: string }

/** A frame-level channel over one libp2p stream, for one peer. */
export class Channel {
  /** The remote peer ID (for messages). */
  readonly peer: string
  readonly stream: Stream
  readonly #lp: LengthPrefixedStream<Stream>
  /** Bytes of frames sent and received on this channel (length prefixes excluded). */
  sent = 0
  received = 0

  constructor (stream: Stream, peer: string) {
    this.stream = stream
    this.peer = peer
    this.#lp = lpStream(stream, { maxDataLength: MAX_FRAME, maxBufferSize: MAX_FRAME })
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
      await this.#lp.write(bytes, { signal: AbortSignal.timeout(timeoutMs) })
      this.sent += bytes.length
    } catch (e) {
      throw new NetworkError(`${step}: cannot send to ${this.peer}: ${why(e, timeoutMs)}`)
    }
  }

  /**
   * Reads one frame within `timeoutMs`; when `expect` is given, a frame of another type is an error
   * (an `error` frame's `reason` is reported as the peer's words).
   * @throws NetworkError `<step>: …` on timeout, end of stream, malformed CBOR or an unexpected frame
   */
  async recv (step: string, timeoutMs: number, expect?: string[]): Promise<Frame> {
    let bytes: Uint8Array
    try {
      bytes = (await this.#lp.read({ signal: AbortSignal.timeout(timeoutMs) })).subarray()
    } catch (e) {
      throw new NetworkError(`${step}: no answer from ${this.peer}: ${why(e, timeoutMs)}`)
    }
    this.received += bytes.length
    return decodeFrame(bytes, step, this.peer, expect)
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
