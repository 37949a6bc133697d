/**
 * Reading only the header, signature and event-log segment of a live checkpoint `<name>.ckpt`
 * (docs/FORMAT.md "Live checkpoint"), without reading its memory pages or wasm into memory: the
 * map's items are walked with positioned reads and every byte or text string that is not wanted
 * is skipped by its length. `igord logs --follow` looks at the live file of a running agent every
 * time it changes; reading (and state-root hashing) a whole 1 GiB file each second would not do.
 *
 * With delta records (docs/FORMAT.md "Delta records") the header, signature and segment are those
 * of the last complete record: each record is walked the same way, and one cut short by the end of
 * the file (or starting with a zero byte) ends the walk.
 *
 * What is checked: the file tag, the map shape, `v`, the header's fields, the signature against
 * `header.agent`, and `cid(log) = header.log`. The pages, wasm, manifest and secret key are NOT
 * checked (use `readLive` for that): what this returns is authentic (signed), not a proof that the
 * rest of the file is intact.
 */
import * as fs from 'node:fs'
import { CheckpointError, StorageError } from './errors.ts'
import { cidOf } from './hash.ts'
import { decodeHeader, FORMAT_VERSION, verifyHeader, type CheckpointHeader } from './header.ts'
import { DELTA_VERSIONS } from './live.ts'

/** The signed header of a live checkpoint and the event-log segment it carries. */
export interface LivePeek {
  /** The signed header bytes as stored (their CID is the checkpoint's CID). */
  header: Uint8Array
  /** The decoded header. */
  parsed: CheckpointHeader
  /** The 64-byte Ed25519 signature over the header. */
  sig: Uint8Array
  /** The embedded segment (CID = `parsed.log`), or null when the header's `log` is null. */
  log: Uint8Array | null
}

/** Bytes read per positioned read. */
const CHUNK = 64 * 1024
/** The largest byte string read into memory (header, sig, log); a bigger one is a fault. */
const MAX_READ = 64 * 1024 * 1024

/** A forward-only reader over a file descriptor with a small buffer; skips by moving the offset. */
class Cursor {
  readonly #fd: number
  readonly #file: string
  readonly size: number
  readonly #buf = Buffer.allocUnsafe(CHUNK)
  #bufStart = 0
  #bufLen = 0
  pos = 0

  constructor (fd: number, size: number, file: string) { this.#fd = fd; this.size = size; this.#file = file }

  fail (msg: string): never { throw new CheckpointError(`${this.#file}: ${msg}`) }

  need (n: number): void {
    if (n > this.size - this.pos) { this.truncated = true; this.fail(`truncated (need ${n} bytes at offset ${this.pos}, file has ${this.size})`) }
  }

  /** Set when a read ran past the end of the file. */
  truncated = false

  byte (): number {
    this.need(1)
    if (this.pos < this.#bufStart || this.pos >= this.#bufStart + this.#bufLen) {
      this.#bufStart = this.pos
      this.#bufLen = fs.readSync(this.#fd, this.#buf, 0, Math.min(CHUNK, this.size - this.pos), this.pos)
      if (this.#bufLen === 0) this.fail(`truncated at offset ${this.pos} (the file shrank while read)`)
    }
    return this.#buf[this.pos++ - this.#bufStart]
  }

  /** A CBOR item head: major type and argument (lengths and small integers; 8-byte arguments as numbers only when safe). */
  head (): { major: number; arg: number; info: number } {
    const at = this.pos
    const b = this.byte()
    const major = b >> 5; const info = b & 31
    if (info < 24) return { major, arg: info, info }
    if (info > 27) this.fail(`unsupported CBOR item at offset ${at} (indefinite length or reserved)`)
    const n = 1 << (info - 24)
    let v = 0
    for (let i = 0; i < n; i++) v = v * 256 + this.byte()
    if (!Number.isSafeInteger(v)) this.fail(`CBOR argument at offset ${at} is too large`)
    return { major, arg: v, info }
  }

  skip (n: number): void { this.need(n); this.pos += n }

  bytes (n: number): Uint8Array {
    this.need(n)
    if (n > MAX_READ) this.fail(`a field of ${n} bytes at offset ${this.pos} is too large to read`)
    const out = Buffer.allocUnsafe(n)
    let got = 0
    while (got < n) {
      const k = fs.readSync(this.#fd, out, got, n - got, this.pos + got)
      if (k === 0) this.fail(`truncated at offset ${this.pos + got} (the file shrank while read)`)
      got += k
    }
    this.pos += n
    return new Uint8Array(out.buffer, out.byteOffset, n)
  }

  text (n: number): string { return Buffer.from(this.bytes(n)).toString('utf8') }

  /** Skips one whole CBOR item (iteratively: nested arrays and maps add to a count of items left). */
  skipItem (): void {
    let left = 1
    while (left > 0) {
      left--
      const at = this.pos
      const { major, arg, info } = this.head()
      switch (major) {
        case 0: case 1: break
        case 2: case 3: this.skip(arg); break
        case 4: this.need(arg); left += arg; break
        case 5: this.need(2 * arg); left += 2 * arg; break
        case 6: this.fail(`unexpected CBOR tag at offset ${at}`); break
        default: if (info < 20 || info > 22) this.fail(`unexpected CBOR simple value or float at offset ${at}`)
      }
    }
  }
}

/**
 * Reads the header, signature and event-log segment of the live checkpoint at `file` (see the
 * module doc for what is and is not checked).
 * @throws StorageError when the file cannot be read; CheckpointError `<file>: …` when it is not a
 *   live checkpoint, is truncated, of another version, badly signed, or its segment does not match
 *   the header's `log` CID.
 */
export function peekLive (file: string): LivePeek {
  let fd: number
  try { fd = fs.openSync(file, 'r') } catch (e) {
    throw new StorageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  try {
    const c: Cursor = new Cursor(fd, fs.fstatSync(fd).size, file)
    if (c.size === 0) c.fail('empty file')
    if (c.size < 3 || c.byte() !== 0xd9 || c.byte() !== 0xd9 || c.byte() !== 0xf7) c.fail('not an igord file (does not start with the CBOR tag 55799 d9 d9 f7)')
    type Got = { v?: unknown; header?: Uint8Array; sig?: Uint8Array; log?: Uint8Array | null }
    /** One map item: its `v`, `header`, `sig` and `log`; everything else skipped. */
    const item = (label: string): Got => {
      const m = c.head()
      if (m.major !== 5) c.fail(`${label} is not a CBOR map`)
      const got: Got = {}
      for (let k = 0; k < m.arg; k++) {
        const kh = c.head()
        if (kh.major !== 3) c.fail(`${label} has a key that is not text`)
        const key = c.text(kh.arg)
        if (key === 'v') {
          const h = c.head()
          got.v = h.major === 0 ? h.arg : null
        } else if (key === 'header' || key === 'sig' || key === 'log') {
          const at = c.pos
          const h = c.head()
          if (key === 'log' && h.major === 7 && h.info === 22) { got.log = null; continue }
          if (h.major !== 2) c.fail(`field "${key}" at offset ${at} must be a byte string`)
          got[key] = c.bytes(h.arg)
        } else c.skipItem()
      }
      return got
    }
    let got = item('live checkpoint')
    if (got.v !== FORMAT_VERSION) {
      if (typeof got.v === 'number') c.fail(`unsupported checkpoint format version ${got.v} (this igord reads ${FORMAT_VERSION})`)
      c.fail('not a live checkpoint (no format version field "v")')
    }
    // delta records (docs/FORMAT.md "Live checkpoint"): the last complete one is the checkpoint; a
    // torn or zeroed tail is ignored
    while (c.pos < c.size) {
      const at = c.pos
      if (c.byte() === 0) break
      c.pos = at
      let d: Got
      try { d = item(`delta record at offset ${at}`) } catch (e) { if (c.truncated) break; throw e }
      if (typeof d.v !== 'number' || !DELTA_VERSIONS.includes(d.v)) c.fail(`delta record at offset ${at}: unsupported delta record version ${String(d.v)} (this igord reads ${DELTA_VERSIONS.join(' and ')})`)
      got = d
    }
    if (got.header === undefined) c.fail('field "header" is missing')
    if (got.sig === undefined || got.sig.length !== 64) c.fail('field "sig" must be 64 bytes')
    if (got.log === undefined) c.fail('field "log" is missing')
    const parsed = decodeHeader(got.header, file)
    if (!verifyHeader(got.header, got.sig, parsed.agent)) c.fail(`signature does not verify for ${parsed.agent} (header or signature altered)`)
    if ((got.log === null) !== (parsed.log === null) || (got.log !== null && cidOf(got.log) !== parsed.log)) c.fail(`the embedded event log does not match the header's log CID ${parsed.log}`)
    return { header: got.header, parsed, sig: got.sig, log: got.log }
  } finally { fs.closeSync(fd) }
}
