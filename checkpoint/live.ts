/**
 * The live checkpoint file `<name>.ckpt` (DESIGN §7, docs/FORMAT.md): one self-contained file that
 * is the whole agent — signed header, wasm, manifest, memory pages, globals, recent event log and
 * the agent's secret seed (so the file is written with mode 0600).
 *
 * Bytes: tag 55799 (`d9 d9 f7`) then a canonical CBOR map (keys in this canonical order)
 * `{v, key, log, sig, wasm, pages, header, globals, manifest, pageCount}` — the whole checkpoint —
 * then zero or more delta records `{v: 2|3, io?, log, sig, pages, header, globals, pageCount}`, one
 * per later checkpoint of the same writer, each with the pages changed since the one before — a
 * whole page, or (version 3) only its 4 KiB chunks that changed (issue 10). The file holds the checkpoint of its last complete record; a torn or zeroed tail is
 * ignored. {@link encodeLive} (the whole checkpoint) and {@link encodeDelta} frame the CBOR by hand
 * and return chunks for writev, so page bodies and the wasm are never copied; the bytes equal
 * `encodeFile()` / `encode()` of the same map.
 */
import * as fs from 'node:fs'
import { asMap, bytesField, checkWellFormed, decode, decodeFile, describe, numberField, putHead } from './cbor.ts'
import { CheckpointError, StorageError } from './errors.ts'
import { cidOf, sha256 } from './hash.ts'
import { decodeHeader, FORMAT_VERSION, verifyHeader, type CheckpointHeader } from './header.ts'
import { identityFromSeed } from './identity.ts'
import { checkGlobal, GLOBAL_SIZES, MAX_PAGES, PAGE_SIZE, stateRoot, type GlobalValue } from './state.ts'

/**
 * A live checkpoint, decoded. `header` holds the signed bytes as stored, `parsed` their decoded
 * form. `pages` are `[index, 64 KiB]` for every non-zero page in ascending index order; after
 * {@link decodeLive} they are views into the file's bytes. `seed` is the agent's 32-byte secret key.
 * `digests` (`[index, SHA-256]` per page) is filled by {@link decodeLive} (by {@link checkLiveState}
 * after a decode with `deferState`), ignored by {@link encodeLive}.
 */
export interface LiveCheckpoint {
  header: Uint8Array; sig: Uint8Array; parsed: CheckpointHeader
  wasm: Uint8Array; manifest: Uint8Array; pageCount: number; pages: [number, Uint8Array][]
  globals: GlobalValue[]; log: Uint8Array | null; seed: Uint8Array
  /** The I/O state's bytes (checkpoint/io.ts) whose CID is `header.io`; null when the header has none. */
  io: Uint8Array | null
  digests?: [number, Uint8Array][]
  /** How many delta records {@link decodeLive} folded after the whole checkpoint (0 or absent: none). */
  records?: number
  /**
   * True when decoded with `{ deferState: true }`: everything is checked but the pages against
   * the header's state root, and `digests` is absent until {@link checkLiveState} hashed them (the
   * caller hashes the pages while copying them where they go: runtime/session.ts `resumeAgent`).
   * Absent when the option was ignored (see {@link DecodeLiveOptions}): `digests` are then there.
   */
  unchecked?: boolean
}

/** Options of {@link decodeLive} and {@link readLive}. */
export interface DecodeLiveOptions {
  /**
   * Leave the pages' digests and the state root to {@link checkLiveState} (the result is marked
   * `unchecked`). Ignored for a file with delta records that ends with a zero byte, whose last
   * record a power cut may have zeroed from inside a page: only the state root tells (then the
   * checkpoint before it is the file's), so such a file is checked whole here.
   */
  deferState?: boolean
}

const LIVE_FIELDS = ['v', 'io', 'key', 'log', 'sig', 'wasm', 'pages', 'header', 'globals', 'manifest', 'pageCount'] as const
/** Byte strings at least this long are passed to writev by reference instead of copied. */
const BY_REFERENCE = 1024

/** Builds CBOR by appending small items into one scratch buffer and large byte strings by reference. */
class Framer {
  readonly chunks: Uint8Array[] = []
  readonly buf: Uint8Array
  p = 0
  start = 0
  constructor (size: number) { this.buf = new Uint8Array(size) }
  head (major: number, n: number): void {
    if (n >= 0x100000000) throw new CheckpointError(`live checkpoint: length ${n} too large`)
    this.p = putHead(this.buf, this.p, major, n)
  }
  raw (x: number): void { this.buf[this.p++] = x }
  text (s: string): void { this.head(3, s.length); for (let i = 0; i < s.length; i++) this.buf[this.p++] = s.charCodeAt(i) }
  bytes (x: Uint8Array): void {
    this.head(2, x.length)
    if (x.length >= BY_REFERENCE) {
      if (this.p > this.start) this.chunks.push(this.buf.subarray(this.start, this.p))
      this.start = this.p
      this.chunks.push(x)
    } else { this.buf.set(x, this.p); this.p += x.length }
  }
  /** One byte string whose body is `parts` concatenated, each part referenced (parts ≥ {@link BY_REFERENCE} bytes). */
  bytesOf (parts: Uint8Array[]): void {
    this.head(2, parts.reduce((n, x) => n + x.length, 0))
    if (this.p > this.start) this.chunks.push(this.buf.subarray(this.start, this.p))
    this.start = this.p
    for (const x of parts) this.chunks.push(x)
  }
  finish (): Uint8Array[] {
    if (this.p > this.start) this.chunks.push(this.buf.subarray(this.start, this.p))
    this.start = this.p
    return this.chunks
  }
}

/**
 * Encodes a live checkpoint for `writev`: the returned chunks, concatenated, are the file's bytes.
 * Page bodies, the wasm and other large byte strings are referenced, not copied.
 * Pages must be ascending, each {@link PAGE_SIZE} bytes and below `pageCount`; globals ascending.
 * @throws CheckpointError `live checkpoint: …` naming the page or global at fault.
 */
export function encodeLive (c: Omit<LiveCheckpoint, 'parsed' | 'io'> & { io?: Uint8Array | null }): Uint8Array[] {
  if (!Number.isSafeInteger(c.pageCount) || c.pageCount < 0 || c.pageCount > MAX_PAGES) throw new CheckpointError(`live checkpoint: pageCount ${c.pageCount} out of range 0..${MAX_PAGES}`)
  if (c.seed.length !== 32) throw new CheckpointError('live checkpoint: the secret seed must be 32 bytes')
  if (c.sig.length !== 64) throw new CheckpointError('live checkpoint: the signature must be 64 bytes')
  let last = -1
  for (const [i, page] of c.pages) {
    if (!Number.isInteger(i) || i <= last || i >= c.pageCount) throw new CheckpointError(`live checkpoint: page ${i} out of order or outside memory of ${c.pageCount} pages`)
    if (page.length !== PAGE_SIZE) throw new CheckpointError(`live checkpoint: page ${i} is ${page.length} bytes, expected ${PAGE_SIZE}`)
    last = i
  }
  last = -1
  for (const g of c.globals) {
    checkGlobal(g, 'live checkpoint')
    if (g.index <= last) throw new CheckpointError(`live checkpoint: global ${g.index} out of order`)
    last = g.index
  }
  const f = new Framer(256 + c.header.length + (c.log && c.log.length < BY_REFERENCE ? c.log.length : 0) + (c.io && c.io.length < BY_REFERENCE ? c.io.length : 0) +
    (c.wasm.length < BY_REFERENCE ? c.wasm.length : 0) + (c.manifest.length < BY_REFERENCE ? c.manifest.length : 0) +
    c.pages.length * 16 + c.globals.length * 40)
  f.raw(0xd9); f.raw(0xd9); f.raw(0xf7) // tag 55799
  const io = c.io ?? null
  f.raw(io === null ? 0xaa : 0xab) // map(10), or map(11) with the I/O state
  f.text('v'); f.head(0, FORMAT_VERSION)
  if (io !== null) { f.text('io'); f.bytes(io) }
  f.text('key'); f.bytes(c.seed)
  f.text('log'); if (c.log === null) f.raw(0xf6); else f.bytes(c.log)
  f.text('sig'); f.bytes(c.sig)
  f.text('wasm'); f.bytes(c.wasm)
  f.text('pages'); f.head(4, c.pages.length)
  for (const [i, page] of c.pages) { f.raw(0x82); f.head(0, i); f.bytes(page) }
  f.text('header'); f.bytes(c.header)
  f.text('globals'); f.head(4, c.globals.length)
  for (const g of c.globals) { f.raw(0x83); f.head(0, g.index); f.text(g.type); f.bytes(g.bytes) }
  f.text('manifest'); f.bytes(c.manifest)
  f.text('pageCount'); f.head(0, c.pageCount)
  return f.finish()
}

/**
 * Version of a delta record with chunk rows (docs/FORMAT.md "Delta records"): `[index, mask,
 * chunks]` rows besides `[index, page or null]`. A record without chunk rows is written as
 * {@link DELTA_VERSION_PAGES}, which igord before chunk rows reads too.
 */
export const DELTA_VERSION = 3
/** Version of a delta record whose rows are all whole pages or null (the only version before chunk rows). */
export const DELTA_VERSION_PAGES = 2
/** The delta record versions this igord reads. */
export const DELTA_VERSIONS: readonly number[] = [DELTA_VERSION_PAGES, DELTA_VERSION]
/** Bytes of one chunk of a chunk row (4 KiB; 16 per page), the grain of checkpoint/pack.ts. */
export const ROW_CHUNK = 4096
const ROW_CHUNKS = PAGE_SIZE / ROW_CHUNK
const ALL_ROW_CHUNKS = (1 << ROW_CHUNKS) - 1

/**
 * A row of a delta record to write: `[index, 65536 bytes]` for a page that is new or changed,
 * `[index, null]` for a page that became zero, or `[index, 65536 bytes, mask]` for a changed page
 * of which only the 4 KiB chunks whose bits are set in `mask` (bit k: bytes k×4096…) differ from
 * the page the file held before (or from zeros for a page it did not hold): only those are written.
 */
export type DeltaRow = [number, Uint8Array | null] | [number, Uint8Array, number]

/**
 * One checkpoint appended to a live file as a delta record: the signed header and signature, the
 * event log, I/O state and globals of the checkpoint, its page count, and `pages` — the rows of the
 * page table that changed since the checkpoint before it in the file ({@link DeltaRow}; pages at
 * or beyond `pageCount` are dropped without a row being needed).
 */
export interface LiveDelta {
  header: Uint8Array; sig: Uint8Array; pageCount: number; pages: DeltaRow[]
  globals: GlobalValue[]; log: Uint8Array | null; io: Uint8Array | null
}

const DELTA_FIELDS = ['v', 'io', 'log', 'sig', 'pages', 'header', 'globals', 'pageCount'] as const

/**
 * Encodes a delta record for `writev` (no file tag: it follows the file's earlier items), canonical
 * CBOR `{v, io?, log, sig, pages, header, globals, pageCount}`: version {@link DELTA_VERSION} with
 * a chunk row `[index, mask, chunks]` for each row with a mask of fewer than all 16 chunks, else
 * {@link DELTA_VERSION_PAGES}. Page bodies and chunks are referenced, not copied.
 * @throws CheckpointError `live checkpoint: …` for rows out of order, outside memory, not 65536
 *   bytes or with a mask outside 1..0xffff.
 */
export function encodeDelta (d: LiveDelta): Uint8Array[] {
  if (!Number.isSafeInteger(d.pageCount) || d.pageCount < 0 || d.pageCount > MAX_PAGES) throw new CheckpointError(`live checkpoint: pageCount ${d.pageCount} out of range 0..${MAX_PAGES}`)
  if (d.sig.length !== 64) throw new CheckpointError('live checkpoint: the signature must be 64 bytes')
  let last = -1
  let chunked = false
  for (const [i, page, mask] of d.pages) {
    if (!Number.isInteger(i) || i <= last || i >= MAX_PAGES || (page !== null && i >= d.pageCount)) throw new CheckpointError(`live checkpoint: delta row ${i} out of order or outside memory of ${d.pageCount} pages`)
    if (page !== null && page.length !== PAGE_SIZE) throw new CheckpointError(`live checkpoint: page ${i} is ${page.length} bytes, expected ${PAGE_SIZE}`)
    if (mask !== undefined && (!Number.isInteger(mask) || mask < 1 || mask > ALL_ROW_CHUNKS)) throw new CheckpointError(`live checkpoint: page ${i} has chunk mask ${mask}, expected 1..${ALL_ROW_CHUNKS}`)
    if (mask !== undefined && mask !== ALL_ROW_CHUNKS) chunked = true
    last = i
  }
  const f = new Framer(256 + d.header.length + (d.log && d.log.length < BY_REFERENCE ? d.log.length : 0) + (d.io && d.io.length < BY_REFERENCE ? d.io.length : 0) + d.pages.length * 20 + d.globals.length * 40)
  f.raw(d.io === null ? 0xa7 : 0xa8) // map(7), or map(8) with the I/O state
  f.text('v'); f.head(0, chunked ? DELTA_VERSION : DELTA_VERSION_PAGES)
  if (d.io !== null) { f.text('io'); f.bytes(d.io) }
  f.text('log'); if (d.log === null) f.raw(0xf6); else f.bytes(d.log)
  f.text('sig'); f.bytes(d.sig)
  f.text('pages'); f.head(4, d.pages.length)
  for (const [i, page, mask] of d.pages) {
    if (page !== null && mask !== undefined && mask !== ALL_ROW_CHUNKS) {
      const parts: Uint8Array[] = []
      for (let k = 0; k < ROW_CHUNKS; k++) if ((mask & (1 << k)) !== 0) parts.push(page.subarray(k * ROW_CHUNK, (k + 1) * ROW_CHUNK))
      f.raw(0x83); f.head(0, i); f.head(0, mask); f.bytesOf(parts)
      continue
    }
    f.raw(0x82); f.head(0, i); if (page === null) f.raw(0xf6); else f.bytes(page)
  }
  f.text('header'); f.bytes(d.header)
  f.text('globals'); f.head(4, d.globals.length)
  for (const g of d.globals) { f.raw(0x83); f.head(0, g.index); f.text(g.type); f.bytes(g.bytes) }
  f.text('pageCount'); f.head(0, d.pageCount)
  return f.finish()
}

/** Number of bits set in a 16-bit chunk mask. */
function popcount16 (m: number): number {
  let n = 0
  for (; m !== 0; m &= m - 1) n++
  return n
}

/**
 * Checks the `pages` of a whole checkpoint — `[index, 65536 bytes]`, ascending, below `pageCount` —
 * and returns them as a page table (index → page, in that order).
 * @throws CheckpointError `<what>: …` naming the entry at fault.
 */
function wholePages (rows: unknown, pageCount: number, what: string): Map<number, Uint8Array> {
  if (!Array.isArray(rows)) throw new CheckpointError(`${what}: field "pages" must be an array, got ${describe(rows)}`)
  const table = new Map<number, Uint8Array>()
  let last = -1
  for (const e of rows as unknown[]) {
    if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'number' || !(e[1] instanceof Uint8Array)) throw new CheckpointError(`${what}: field "pages" entries must be [index, bytes]`)
    const [i, page] = e as [number, Uint8Array]
    if (i <= last) throw new CheckpointError(`${what}: page ${i} out of order (pages must be in ascending index order)`)
    if (i >= pageCount) throw new CheckpointError(`${what}: page ${i} is outside memory of ${pageCount} pages`)
    if (page.length !== PAGE_SIZE) throw new CheckpointError(`${what}: page ${i} is ${page.length} bytes, expected ${PAGE_SIZE}`)
    last = i
    table.set(i, page)
  }
  return table
}

/**
 * Checks the `pages` rows of a delta record of version `v` and applies them to `table` (index →
 * 64 KiB page): a page row sets, null deletes, a chunk row (version 3) sets a new page made of the
 * page the table held (zeros if none) with the row's chunks written over it. Then drops pages at or
 * beyond `pageCount`.
 * @returns the rows resolved to whole pages (`[index, 65536 bytes or null]`), in order.
 * @throws CheckpointError `<what>: …` naming the row at fault.
 */
function applyRows (table: Map<number, Uint8Array>, rows: unknown, v: number, pageCount: number, what: string): [number, Uint8Array | null][] {
  if (!Array.isArray(rows)) throw new CheckpointError(`${what}: field "pages" must be an array, got ${describe(rows)}`)
  const out: [number, Uint8Array | null][] = []
  let prev = -1
  for (const e of rows as unknown[]) {
    const chunk = v >= DELTA_VERSION && Array.isArray(e) && e.length === 3
    if (!Array.isArray(e) || typeof e[0] !== 'number' || !(chunk
      ? typeof e[1] === 'number' && e[2] instanceof Uint8Array
      : e.length === 2 && (e[1] === null || e[1] instanceof Uint8Array))) throw new CheckpointError(`${what}: field "pages" entries must be [index, bytes or null]${v >= DELTA_VERSION ? ' or [index, mask, chunks]' : ''}`)
    const i = e[0]
    if (i <= prev || i >= MAX_PAGES) throw new CheckpointError(`${what}: page ${i} out of order or out of range`)
    prev = i
    if (!chunk && e[1] === null) { table.delete(i); out.push([i, null]); continue }
    if (i >= pageCount) throw new CheckpointError(`${what}: page ${i} is outside memory of ${pageCount} pages`)
    let page: Uint8Array
    if (chunk) {
      const mask = e[1] as number; const body = e[2] as Uint8Array
      if (!Number.isInteger(mask) || mask < 1 || mask > ALL_ROW_CHUNKS) throw new CheckpointError(`${what}: page ${i} has chunk mask ${mask}, expected 1..${ALL_ROW_CHUNKS}`)
      if (body.length !== popcount16(mask) * ROW_CHUNK) throw new CheckpointError(`${what}: page ${i} has ${body.length} bytes of chunks, expected ${popcount16(mask) * ROW_CHUNK} for mask ${mask}`)
      page = new Uint8Array(PAGE_SIZE)
      const before = table.get(i)
      if (before !== undefined) page.set(before)
      for (let k = 0, at = 0; k < ROW_CHUNKS; k++) {
        if ((mask & (1 << k)) === 0) continue
        page.set(body.subarray(at, at + ROW_CHUNK), k * ROW_CHUNK)
        at += ROW_CHUNK
      }
    } else {
      page = e[1] as Uint8Array
      if (page.length !== PAGE_SIZE) throw new CheckpointError(`${what}: page ${i} is ${page.length} bytes, expected ${PAGE_SIZE}`)
    }
    table.set(i, page)
    out.push([i, page])
  }
  for (const i of [...table.keys()]) if (i >= pageCount) table.delete(i)
  return out
}

/** Refuses a delta record version this igord does not read. */
function checkDeltaVersion (v: unknown, what: string): number {
  if (typeof v !== 'number' || !DELTA_VERSIONS.includes(v)) throw new CheckpointError(`${what}: unsupported delta record version ${describe(v)} (this igord reads ${DELTA_VERSIONS.join(' and ')})`)
  return v
}

/**
 * Offsets just past each complete item of a live file: the first (the whole checkpoint) and each
 * delta record after it. A record cut short (a torn tail after a kill mid-append), starting with a
 * zero byte (a tail a power cut left zeroed), or not well-formed while the file ends with a zero
 * byte (an append a power cut zeroed from somewhere inside it: no record ends with 0x00 but one of
 * a memory of 0 pages, which is well-formed) ends the list: it and what follows are ignored.
 * @throws CheckpointError for anything else that is not well-formed (as {@link decodeFile} would).
 */
export function liveItems (bytes: Uint8Array, file: string): number[] {
  const ends = [checkWellFormed(bytes, 3, file)]
  let p = ends[0]
  while (p < bytes.length && bytes[p] !== 0) {
    try { p = checkWellFormed(bytes, p, file) } catch (e) {
      if (e instanceof CheckpointError && (/: truncated \(/.test(e.message) || zeroTail(bytes))) break
      throw e
    }
    ends.push(p)
  }
  return ends
}

/** True when `bytes` end with a zero byte: what a power cut leaves of an append it zeroed (see {@link liveItems}). */
function zeroTail (bytes: Uint8Array): boolean { return bytes.length > 0 && bytes[bytes.length - 1] === 0 }

/**
 * Parses `[[index, type, bytes]…]` (ascending index) into globals.
 * @throws CheckpointError `<what>: field "globals" …`.
 */
export function decodeGlobals (v: unknown, what: string): GlobalValue[] {
  if (!Array.isArray(v)) throw new CheckpointError(`${what}: field "globals" must be an array, got ${describe(v)}`)
  const out: GlobalValue[] = []
  let last = -1
  for (const g of v) {
    if (!Array.isArray(g) || g.length !== 3 || typeof g[0] !== 'number' || typeof g[1] !== 'string' || !(g[2] instanceof Uint8Array)) throw new CheckpointError(`${what}: field "globals" entries must be [index, type, bytes]`)
    if (!Object.hasOwn(GLOBAL_SIZES, g[1])) throw new CheckpointError(`${what}: global ${g[0]} has unknown type ${JSON.stringify(g[1].slice(0, 20))}`)
    const gv: GlobalValue = { index: g[0], type: g[1] as GlobalValue['type'], bytes: g[2] }
    checkGlobal(gv, what)
    if (gv.index <= last) throw new CheckpointError(`${what}: global ${gv.index} out of order (globals must be in ascending index order)`)
    last = gv.index
    out.push(gv)
  }
  return out
}

/**
 * Decodes and fully checks a live checkpoint: the 55799 tag, CBOR well-formedness, version, every
 * field's type, page sizes and order, pageCount ≤ 65536, the header's fields, the signature against
 * `header.agent`, that the seed's DID is `header.agent`, `cid(wasm) = header.code`,
 * `cid(manifest) = header.manifest`, `cid(log) = header.log`, `cid(io) = header.io` (both absent or both present), and the state root recomputed from
 * the pages and globals (with the header's fuel and budget) equals `header.state`. With delta
 * records, these checks apply to the checkpoint of the last complete record (the page table folded
 * through every record); a record cut short or starting with a zero byte, and all after it, is
 * ignored (see {@link liveItems}); a complete record that does not check is an error, unless it is
 * the last one and the file ends with a zero byte (a power cut zeroed the append from inside it):
 * then the checkpoint before it is the file's.
 * Returned byte arrays are views into `bytes`. With `opts.deferState` (see {@link DecodeLiveOptions})
 * the pages are not hashed and the state root is left to {@link checkLiveState}.
 * @param file names the file in errors.
 * @throws CheckpointError `<file>: <what is wrong>` — e.g. `empty file`, `truncated (…)`,
 *   `not an igord file …`, `unsupported checkpoint format version N …`, `signature does not verify …`,
 *   `state root does not match …`.
 */
export function decodeLive (bytes: Uint8Array, file: string, opts: DecodeLiveOptions = {}): LiveCheckpoint {
  try { return decodeLiveItems(bytes, file, opts.deferState === true) } catch (e) {
    // a last delta record that a power cut zeroed from inside one of its byte strings is still
    // well-formed but does not check: with the file ending in zeros, it is a torn append, and the
    // checkpoint before it is the file's (it was never synced, so no history entry names it)
    if (!(e instanceof CheckpointError) || !zeroTail(bytes)) throw e
    let ends: number[] = []
    try { ends = liveItems(bytes, file) } catch { throw e }
    if (ends.length < 2) throw e
    try { return decodeLiveItems(bytes.subarray(0, ends[ends.length - 2]), file, false) } catch { throw e }
  }
}

/**
 * Checks the pages of a live checkpoint decoded with `{ deferState: true }` against its header's
 * state root, given their digests (`[index, SHA-256]` in the order of `live.pages`; hashed here
 * when absent), and fills `live.digests`. A no-op for a checkpoint already checked.
 * @throws CheckpointError `<file>: state root does not match the signed header …`, as {@link decodeLive}.
 */
export function checkLiveState (live: LiveCheckpoint, file: string, digests?: [number, Uint8Array][]): void {
  if (live.unchecked !== true) return
  const ds = digests ?? live.pages.map(([i, p]): [number, Uint8Array] => [i, sha256(p)])
  if (ds.length !== live.pages.length || ds.some(([i], k) => i !== live.pages[k][0])) throw new Error(`${file}: checkLiveState: the digests are not those of the pages`)
  const root = stateRoot({ pages: live.pageCount, digests: ds, globals: live.globals, fuel: live.parsed.fuel, budget: live.parsed.budget })
  if (Buffer.compare(root, live.parsed.state) !== 0) throw new CheckpointError(`${file}: state root does not match the signed header (memory pages or globals altered)`)
  live.digests = ds
  delete live.unchecked
}

/** {@link decodeLive} without its fallback for a zeroed last record; `defer`: see {@link DecodeLiveOptions}. */
function decodeLiveItems (bytes: Uint8Array, file: string, defer: boolean): LiveCheckpoint {
  // a file with delta records after its first item (a torn last record is ignored)
  let ends: number[] | null = null
  if (bytes.length > 3 && bytes[0] === 0xd9 && bytes[1] === 0xd9 && bytes[2] === 0xf7) {
    try { ends = liveItems(bytes, file) } catch { ends = null /* decodeFile below names the fault */ }
  }
  const first = ends !== null && ends.length > 0 ? bytes.subarray(0, ends[0]) : bytes
  const m = asMap(decodeFile(first, file), file, 'live checkpoint')
  if (m.v !== FORMAT_VERSION) {
    if (typeof m.v === 'number' || typeof m.v === 'bigint') throw new CheckpointError(`${file}: unsupported checkpoint format version ${m.v} (this igord reads ${FORMAT_VERSION})`)
    throw new CheckpointError(`${file}: not a live checkpoint (no format version field "v")`)
  }
  asMap(m, file, 'live checkpoint', LIVE_FIELDS)
  let header = bytesField(m, 'header', file)
  let sig = bytesField(m, 'sig', file, 64)
  const wasm = bytesField(m, 'wasm', file)
  const manifest = bytesField(m, 'manifest', file)
  const seed = bytesField(m, 'key', file, 32)
  let pageCount = numberField(m, 'pageCount', file, MAX_PAGES)
  let log = m.log === null ? null : bytesField(m, 'log', file)
  let io = m.io === undefined ? null : bytesField(m, 'io', file)
  const table = wholePages(m.pages, pageCount, file)
  let globals = decodeGlobals(m.globals, file)
  // delta records: each replaces the header, signature, log, I/O state, globals and page count, and
  // applies its page rows to the table of the checkpoint before it
  for (let k = 1; ends !== null && k < ends.length; k++) {
    const what = `${file}: delta record at offset ${ends[k - 1]}`
    const d = asMap(decode(bytes.subarray(ends[k - 1], ends[k]), what, ends[k - 1]), what, 'delta record')
    const v = checkDeltaVersion(d.v, what)
    asMap(d, what, 'delta record', DELTA_FIELDS)
    header = bytesField(d, 'header', what)
    sig = bytesField(d, 'sig', what, 64)
    pageCount = numberField(d, 'pageCount', what, MAX_PAGES)
    log = d.log === null ? null : bytesField(d, 'log', what)
    io = d.io === undefined ? null : bytesField(d, 'io', what)
    globals = decodeGlobals(d.globals, what)
    applyRows(table, d.pages, v, pageCount, what)
  }
  const pages: [number, Uint8Array][] = [...table].sort((x, y) => x[0] - y[0])
  const parsed = decodeHeader(header, file)
  if (!verifyHeader(header, sig, parsed.agent)) throw new CheckpointError(`${file}: signature does not verify for ${parsed.agent} (header or signature altered)`)
  if (identityFromSeed(seed).did !== parsed.agent) throw new CheckpointError(`${file}: the secret key does not belong to ${parsed.agent}`)
  if (cidOf(wasm) !== parsed.code) throw new CheckpointError(`${file}: the embedded wasm does not match the header's code CID ${parsed.code}`)
  if (cidOf(manifest) !== parsed.manifest) throw new CheckpointError(`${file}: the embedded manifest does not match the header's manifest CID ${parsed.manifest}`)
  if ((log === null) !== (parsed.log === null) || (log !== null && cidOf(log) !== parsed.log)) throw new CheckpointError(`${file}: the embedded event log does not match the header's log CID ${parsed.log}`)
  if ((io === null) !== (parsed.io === undefined) || (io !== null && cidOf(io) !== parsed.io)) throw new CheckpointError(`${file}: the embedded I/O state does not match the header's io CID ${parsed.io ?? '(none)'}`)
  // a zeroed last record is told by its state root alone (see decodeLive): checked here
  if (defer && !(zeroTail(bytes) && ends !== null && ends.length > 1)) return { header, sig, parsed, wasm, manifest, pageCount, pages, globals, log, seed, io, records: ends === null ? 0 : ends.length - 1, unchecked: true }
  const digests: [number, Uint8Array][] = pages.map(([i, p]) => [i, sha256(p)])
  const root = stateRoot({ pages: pageCount, digests, globals, fuel: parsed.fuel, budget: parsed.budget })
  if (Buffer.compare(root, parsed.state) !== 0) throw new CheckpointError(`${file}: state root does not match the signed header (memory pages or globals altered)`)
  return { header, sig, parsed, wasm, manifest, pageCount, pages, globals, log, seed, digests, io, records: ends === null ? 0 : ends.length - 1 }
}

/**
 * Reads and checks a live checkpoint file (see {@link decodeLive}; `opts` as there).
 * @throws StorageError when the file cannot be read; CheckpointError when it is not valid.
 */
export function readLive (path: string, opts: DecodeLiveOptions = {}): LiveCheckpoint {
  let bytes: Uint8Array
  try { bytes = fs.readFileSync(path) } catch (e) {
    throw new StorageError(`${path}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  return decodeLive(bytes, path, opts)
}

/**
 * One checkpoint held by a live file (see {@link liveSteps}): its signed header and signature,
 * page count, globals, event-log segment and I/O state, and its pages — every non-zero page
 * (`whole`: the file's whole checkpoint) or the rows of the page table changed since the step
 * before it (`[index, 65536 bytes or null]`: a delta record's rows, chunk rows resolved to whole
 * pages). Byte arrays are views into the file's bytes, but for pages resolved from chunk rows.
 */
export interface LiveStep {
  header: Uint8Array; sig: Uint8Array; pageCount: number; globals: GlobalValue[]
  log: Uint8Array | null; io: Uint8Array | null
  whole: boolean; pages: [number, Uint8Array | null][]
}

/**
 * Every checkpoint a live file holds, in file order: its whole checkpoint, then one per complete
 * delta record (a torn tail is ignored as by {@link decodeLive}). Used to re-archive checkpoints a
 * power cut took from the history (checkpoint/writer.ts `ensureArchived`). Checks the shape of
 * each item; signatures and state roots are left to whoever uses a step (history verify).
 * @throws CheckpointError `<file>: …` naming the item at fault, as {@link decodeLive}.
 */
export function liveSteps (bytes: Uint8Array, file: string): LiveStep[] {
  const ends = liveItems(bytes, file)
  const steps: LiveStep[] = []
  const table = new Map<number, Uint8Array>() // the page table so far: chunk rows apply to it
  for (let k = 0; k < ends.length; k++) {
    const start = k === 0 ? 0 : ends[k - 1]
    const what = k === 0 ? file : `${file}: delta record at offset ${start}`
    const m = k === 0
      ? asMap(decodeFile(bytes.subarray(0, ends[0]), file), file, 'live checkpoint', LIVE_FIELDS)
      : asMap(decode(bytes.subarray(start, ends[k]), what, start), what, 'delta record', DELTA_FIELDS)
    const pageCount = numberField(m, 'pageCount', what, MAX_PAGES)
    let pages: [number, Uint8Array | null][]
    if (k === 0) {
      for (const [i, page] of wholePages(m.pages, pageCount, what)) table.set(i, page)
      pages = [...table]
    } else pages = applyRows(table, m.pages, checkDeltaVersion(m.v, what), pageCount, what)
    steps.push({
      header: bytesField(m, 'header', what), sig: bytesField(m, 'sig', what, 64), pageCount,
      globals: decodeGlobals(m.globals, what), log: m.log === null ? null : bytesField(m, 'log', what), io: m.io === undefined ? null : bytesField(m, 'io', what),
      whole: k === 0, pages,
    })
  }
  return steps
}
