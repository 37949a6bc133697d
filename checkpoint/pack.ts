/**
 * Pack files: the archive's blobs appended to one file per writer instead of one file per blob
 * (docs/FORMAT.md "Blob store"). A pack is `<dir>/blobs/<agent>+<16 hex>.pack`:
 *
 * ```
 * pack  = magic frame*            magic = "igordpk" 0x01 (8 bytes)
 * frame = kind (1 byte) ‖ length of the payload (4 bytes, big-endian) ‖ SHA-256 of the blob (32) ‖ payload
 * kind 1: payload = the blob; kind 2: payload = the blob compressed with zstd;
 * kind 3: a 65536-byte blob (a page) stored as 16 chunks of 4 KiB: payload = the 16 chunks'
 *         SHA-256 digests, 32 zero bytes for an all-zero chunk; each other chunk is a blob of its own
 * ```
 *
 * A pack is only ever appended to, by the one writer that created it (a new writer instance, e.g.
 * after a resume, starts a new pack), and made durable by one `fdatasync` per batch (one per
 * checkpoint). Readers rebuild the index (CID → offset, length) by walking the frame headers; a frame
 * that runs past the end of the file or has another kind (a torn tail after a crash, zeros after a
 * power cut) ends the walk, so torn tails are ignored. Readers never trust a payload: every blob
 * read from a pack is hashed against its CID by the caller that needs it (verify, replay,
 * migration) — a frame's digest is only where to look.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { constants as zlibConstants, createZstdCompress, createZstdDecompress, zstdCompressSync, zstdDecompressSync } from 'node:zlib'
import { StorageError } from './errors.ts'
import { cidOfDigest, digestOfCid } from './hash.ts'
import { RecentMap } from './recent.ts'

/** First 8 bytes of every pack: ASCII `igordpk` then the pack format version 1. */
export const PACK_MAGIC = Uint8Array.of(0x69, 0x67, 0x6f, 0x72, 0x64, 0x70, 0x6b, 0x01)
/** Frame kind of a blob stored as it is. */
export const FRAME_BLOB = 0x01
/** Frame kind of a blob stored zstd-compressed. */
export const FRAME_ZSTD = 0x02
/** Frame kind of a 64 KiB blob stored as the digests of its 16 chunks of 4 KiB. */
export const FRAME_CHUNKED = 0x03
/** Chunk size of {@link FRAME_CHUNKED} frames, bytes. */
export const CHUNK_SIZE = 4096
/** Blob size of {@link FRAME_CHUNKED} frames (a wasm page), bytes. */
export const CHUNKED_SIZE = 65536
/** The largest blob a {@link FRAME_ZSTD} frame may expand to, bytes (a frame that claims more is corrupt). */
export const MAX_ZSTD_OUTPUT = 256 * 1024 * 1024
/** Bytes of a frame header: kind, length, digest. */
export const FRAME_HEADER = 1 + 4 + 32
/** File name suffix of packs. */
export const PACK_SUFFIX = '.pack'

/** True when `name` (a file name in a blob directory) is a pack (`<agent>+<16 hex>.pack`). */
export function isPackName (name: string): boolean { return /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\+[0-9a-f]{16}\.pack$/.test(name) }

/** True when pack file name `name` was written by a writer of agent `agent`. */
export function packOfAgent (name: string, agent: string): boolean { return name.startsWith(`${agent}+`) && isPackName(name) }

/** A new pack file name for agent `agent`: `<agent>+<16 random hex>.pack`. */
export function newPackName (agent: string): string { return `${agent}+${randomBytes(8).toString('hex')}${PACK_SUFFIX}` }

/** The header of one blob frame: `kind ‖ len ‖ digest`. */
export function frameHeader (len: number, digest: Uint8Array, kind = FRAME_BLOB): Uint8Array {
  const h = Buffer.allocUnsafe(FRAME_HEADER)
  h[0] = kind
  h.writeUInt32BE(len, 1)
  h.set(digest, 5)
  return h
}

/** Where one blob lies in a pack: byte offset of its payload, the payload's length, the frame kind. */
export interface PackSlot { pack: PackIndex; off: number; len: number; kind: number }

/**
 * The index of one pack file, built by walking its frame headers and extended by {@link PackIndex.scan}
 * as the file grows (another process or thread may be appending to it).
 */
export class PackIndex {
  /** Path of the pack. */
  readonly file: string
  /** Offset up to which the pack has been walked (the end of its last complete frame). */
  scanned = 0
  /** False when the file does not start with {@link PACK_MAGIC} (it is then ignored). */
  valid = true

  constructor (file: string) { this.file = file }

  /**
   * Walks the frames appended since the last scan and calls `add` for each complete blob frame.
   * Stops at the end of the file, at a frame that runs past it, or at an unknown kind.
   * @throws nothing: an unreadable pack adds nothing.
   */
  scan (add: (cid: string, slot: PackSlot) => void): void {
    if (!this.valid) return
    let fd: number
    try { fd = fs.openSync(this.file, 'r') } catch { return }
    try {
      const size = fs.fstatSync(fd).size
      const h = Buffer.allocUnsafe(PACK_MAGIC.length)
      if (this.scanned === 0) {
        if (size < PACK_MAGIC.length) return
        if (fs.readSync(fd, h, 0, PACK_MAGIC.length, 0) !== PACK_MAGIC.length || Buffer.compare(h.subarray(0, PACK_MAGIC.length), PACK_MAGIC) !== 0) { this.valid = false; return }
        this.scanned = PACK_MAGIC.length
      }
      // frame headers are parsed out of blocks read in turn (one read per block, not per frame;
      // after a frame of 32 KiB or more, the next header is read alone: a walk over whole pages
      // reads 37 bytes a page, not 64 KiB)
      let p = this.scanned
      const block = scanBlock()
      let bStart = 0; let bLen = 0 // block holds the file's bytes [bStart, bStart + bLen)
      let big = false // the last frame was large: read the next header alone, not a block of payload
      while (p + FRAME_HEADER <= size) {
        if (p < bStart || p + FRAME_HEADER > bStart + bLen) {
          bStart = p; bLen = fs.readSync(fd, block, 0, Math.min(big ? FRAME_HEADER : block.length, size - p), p)
          if (bLen < FRAME_HEADER) break
        }
        const o = p - bStart
        const kind = block[o]
        if (kind !== FRAME_BLOB && kind !== FRAME_ZSTD && kind !== FRAME_CHUNKED) break
        const len = block.readUInt32BE(o + 1)
        if (p + FRAME_HEADER + len > size) break
        add(cidOfDigest(block.subarray(o + 5, o + 37)), { pack: this, off: p + FRAME_HEADER, len, kind })
        p += FRAME_HEADER + len
        big = len >= block.length / 2
      }
      this.scanned = p
    } catch { /* a read error ends the walk */ } finally { fs.closeSync(fd) }
  }
}

let scanBuffer: Buffer | null = null
/** The buffer {@link PackIndex.scan} reads frame headers into, 64 KiB, allocated once. */
function scanBlock (): Buffer { return (scanBuffer ??= Buffer.allocUnsafe(65536)) }

/**
 * What the reads of one run (one verify, checkpoint/store.ts `ReadRun`) share: the packs found still
 * linked (as a set of paths: see {@link readSlot}) and one read-ahead window, 256 KiB of one pack
 * read in one `pread`, from which later frames of that pack are served without a syscall (a verify
 * walks a history in tick order, which is the order its frames were appended in). The window holds
 * only bytes below the pack's walked end at the time it was read ({@link PackIndex.scanned}: whole
 * frames, never changed afterwards in an append-only pack), so a frame appended since is read from
 * the file; a pack rewritten under a run is trusted no more and no less than the descriptor kept
 * for it.
 */
export class PackRun extends Set<string> {
  file = ''
  start = 0
  len = 0
  buf: Buffer | null = null
}

/**
 * An uninitialised buffer of `n` bytes; from 1 KiB up with an ArrayBuffer of its own rather than a
 * slice of Node's shared pool, so that a 4 KiB chunk kept in a cache (checkpoint/store.ts
 * `hashPackedIn`) pins only itself.
 */
function ownBuffer (n: number): Buffer { return n >= 1024 ? Buffer.allocUnsafeSlow(n) : Buffer.allocUnsafe(n) }

/** Bytes of a {@link PackRun}'s read-ahead window. */
const WINDOW = 256 * 1024

/**
 * Reads a slot's payload (unverified) together with its frame header, which must still name blob
 * `cid` with the slot's length (else the pack changed under the index: a stale slot). The payload
 * is a buffer of its own (the caller may keep it).
 * @throws StorageError `<pack>: cannot read: …` when the pack cannot be read, is shorter than the
 *   slot, or the frame there is no longer `cid`'s.
 * @param run packs already found still linked during the caller's run (one verify): their cached
 *   descriptors are reused without another `fstat`; a pack checked or opened here is added. A
 *   {@link PackRun} also serves frames of up to 64 KiB from its read-ahead window.
 * @param keep false: the payload may be a view into the run's read-ahead window, valid only until
 *   the next read of the run (for a payload used at once, e.g. decompressed: no copy made).
 */
export function readSlot (slot: PackSlot, cid: string, run?: Set<string>, keep = true): Uint8Array {
  const fd = openPack(slot.pack.file, run)
  try {
    const total = FRAME_HEADER + slot.len
    const at = slot.off - FRAME_HEADER
    let b: Buffer
    let o = 0
    if (run instanceof PackRun && total <= WINDOW / 4) {
      if (run.file !== slot.pack.file || at < run.start || at + total > run.start + run.len) {
        const w = (run.buf ??= Buffer.allocUnsafe(WINDOW))
        run.file = ''
        const upTo = Math.min(WINDOW, slot.pack.scanned - at) // whole frames only (see PackRun)
        let n = 0
        while (n < upTo) {
          const r = fs.readSync(fd, w, n, upTo - n, at + n)
          if (r === 0) break
          n += r
        }
        run.file = slot.pack.file; run.start = at; run.len = n
      }
      if (at + total <= run.start + run.len) { b = run.buf!; o = at - run.start } else b = readAt(slot, fd, total)
    } else b = readAt(slot, fd, total)
    if (b[o] !== slot.kind || b.readUInt32BE(o + 1) !== slot.len || Buffer.compare(b.subarray(o + 5, o + FRAME_HEADER), digestOfCid(cid)) !== 0) throw new StorageError(`${slot.pack.file}: cannot read: the frame at offset ${at} is no longer blob ${cid} (the pack was rewritten)`)
    if (!(run instanceof PackRun && b === run.buf)) return b.subarray(FRAME_HEADER)
    if (!keep) return b.subarray(o + FRAME_HEADER, o + total)
    const payload = ownBuffer(slot.len)
    b.copy(payload, 0, o + FRAME_HEADER, o + total)
    return payload
  } catch (e) {
    closePack(slot.pack.file)
    if (run instanceof PackRun) run.file = ''
    if (e instanceof StorageError) throw e
    throw new StorageError(`${slot.pack.file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`)
  }
}

/** The frame of `slot` (`total` bytes, header included) read from `fd` into a new buffer. */
function readAt (slot: PackSlot, fd: number, total: number): Buffer {
  const b = Buffer.allocUnsafe(total)
  let n = 0
  while (n < total) {
    const r = fs.readSync(fd, b, n, total - n, slot.off - FRAME_HEADER + n)
    if (r === 0) throw new StorageError(`${slot.pack.file}: cannot read: blob at offset ${slot.off} is truncated`)
    n += r
  }
  return b
}

/** Packs kept open for reading (at most {@link OPEN_PACKS}, least recently used closed first). */
const openPacks = new Map<string, number>()
const OPEN_PACKS = 32

/**
 * A read descriptor of `file`, reused while the file is still linked (a pack removed or replaced
 * since it was opened is opened again, so nothing is read from a file no longer there).
 * @throws StorageError `<file>: cannot read: …`.
 */
function openPack (file: string, run?: Set<string>): number {
  const fd = openPacks.get(file)
  if (fd !== undefined) {
    if (run?.has(file) === true) return fd
    openPacks.delete(file)
    let linked = false
    try { linked = fs.fstatSync(fd).nlink > 0 } catch { /* closed */ }
    if (linked) { openPacks.set(file, fd); run?.add(file); return fd }
    try { fs.closeSync(fd) } catch { /* closed */ }
  }
  let nfd: number
  try { nfd = fs.openSync(file, 'r') } catch (e) { throw new StorageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`) }
  openPacks.set(file, nfd)
  run?.add(file)
  if (openPacks.size > OPEN_PACKS) { const [f, old] = openPacks.entries().next().value!; openPacks.delete(f); try { fs.closeSync(old) } catch { /* closed */ } }
  return nfd
}

function closePack (file: string): void {
  const fd = openPacks.get(file)
  if (fd !== undefined) { openPacks.delete(file); try { fs.closeSync(fd) } catch { /* closed */ } }
}

/**
 * An index over the packs of one blob directory (all of them, or only those of one agent), built
 * lazily and extended on a miss: new packs are listed and known packs re-walked from where their
 * last walk ended, at most once per `refreshMs` for {@link PackSet.find} with `fresh: false`.
 */
/**
 * Slots (and, in checkpoint/store.ts, known CIDs) a writer's store remembers per generation
 * (checkpoint/recent.ts): the CIDs of the last dozens of checkpoints. A node holds a writer per
 * agent, so this is per-agent resident memory (~100 bytes an entry, ≤ 4 × this a writer: ~25 KiB
 * at 64, where 256 cost ~100 MiB over 1,000 agents); a miss only stores a blob again.
 */
export const WRITER_RECENT = 64

export class PackSet {
  readonly dir: string
  readonly #filter: (name: string) => boolean
  readonly #packs = new Map<string, PackIndex>()
  readonly #slots: RecentMap<string, PackSlot>
  #lastRefresh = -Infinity

  /**
   * @param agent when given, only that agent's packs are indexed (a writer's own archive), and only
   *   the {@link WRITER_RECENT} × 2 most recently used slots are remembered: a writer looks blobs up
   *   to skip storing them again, and one living for days at 1 Hz would otherwise hold an entry for
   *   every blob it ever wrote (~1.7 KiB of heap a heartbeat tick, with BlobStore's own set).
   *   A forgotten blob is at worst stored again.
   * @param recent slots remembered (default: {@link WRITER_RECENT} with `agent`, else all)
   */
  constructor (dir: string, agent?: string, recent = agent === undefined ? Infinity : WRITER_RECENT) {
    this.dir = dir
    this.#filter = agent === undefined ? isPackName : (n) => packOfAgent(n, agent)
    this.#slots = new RecentMap(recent)
  }

  /** Lists the directory for new packs and walks every pack's new frames. */
  refresh (): void {
    this.#lastRefresh = performance.now()
    let names: string[]
    try { names = fs.readdirSync(this.dir) } catch { return }
    for (const n of names) {
      if (!n.endsWith(PACK_SUFFIX) || this.#packs.has(n) || !this.#filter(n)) continue
      this.#packs.set(n, new PackIndex(path.join(this.dir, n)))
    }
    const add = (cid: string, slot: PackSlot) => { if (!this.#slots.has(cid)) this.#slots.set(cid, slot) }
    for (const p of this.#packs.values()) p.scan(add)
  }

  /**
   * Where blob `cid` lies, or undefined. A miss refreshes the index first (always when `fresh`,
   * else at most once every `refreshMs` ms).
   */
  find (cid: string, fresh = true, refreshMs = 1000): PackSlot | undefined {
    let s = this.#slots.get(cid)
    if (s === undefined && (fresh || performance.now() - this.#lastRefresh >= refreshMs)) { this.refresh(); s = this.#slots.get(cid) }
    return s
  }

  /** Records a blob this process appended (so it is found without a walk). */
  note (cid: string, slot: PackSlot): void { if (!this.#slots.has(cid)) this.#slots.set(cid, slot) }

  /** Paths of the packs in scope now in the folder (listed afresh, not walked). */
  files (): string[] {
    let names: string[]
    try { names = fs.readdirSync(this.dir) } catch { return [] }
    return names.filter((n) => n.endsWith(PACK_SUFFIX) && this.#filter(n)).map((n) => path.join(this.dir, n))
  }

  /** Packs indexed so far. */
  get packCount (): number { return this.#packs.size }
}

/**
 * An append-only pack of its one writer. Frames are gathered by {@link PackWriter.add} and
 * written, then made durable with one `fdatasync`, by {@link PackWriter.flush} (which opens and
 * closes the file: no descriptor is held between checkpoints). The file is created
 * (mode 0600, its directory fsynced once) on the first flush that has frames.
 */
export class PackWriter {
  readonly file: string
  readonly index: PackIndex
  #created = false
  #chunks: Uint8Array[] = []
  #pending = new Map<string, Uint8Array>()
  #slots: [string, number, number, number][] = []
  #batchBytes = 0
  /** frames were appended by a flush without `fdatasync` */
  #unsynced = false

  constructor (dir: string, agent: string) {
    this.file = path.join(dir, newPackName(agent))
    this.index = new PackIndex(this.file)
  }

  /**
   * Queues blob `bytes` with SHA-256 `digest` (CID `cid`) for the next flush, as a frame of `kind`
   * with `payload` (default: the bytes themselves).
   */
  add (cid: string, bytes: Uint8Array, digest: Uint8Array, kind = FRAME_BLOB, payload = bytes): void {
    if (this.#pending.has(cid)) return
    this.#chunks.push(frameHeader(payload.length, digest, kind), payload)
    this.#slots.push([cid, this.#batchBytes + FRAME_HEADER, payload.length, kind])
    this.#batchBytes += FRAME_HEADER + payload.length
    this.#pending.set(cid, bytes)
  }

  /** The bytes of a blob queued and not yet flushed, or undefined. */
  pending (cid: string): Uint8Array | undefined { return this.#pending.get(cid) }

  /** True when frames wait for {@link PackWriter.flush}. */
  get dirty (): boolean { return this.#chunks.length > 0 }

  /**
   * Appends the queued frames (writev) and fdatasyncs the pack (unless `durable` is false: then
   * {@link PackWriter.sync} does it later); `noteSlot` learns where each landed.
   * On failure the pack is truncated back to its last flushed size (what a reader would ignore anyway).
   * @throws StorageError `<pack>: cannot write: …`.
   */
  flush (noteSlot: (cid: string, slot: PackSlot) => void, write: (fd: number, chunks: Uint8Array[]) => void, durable = true): void {
    if (this.#chunks.length === 0) { if (durable) this.sync(); return }
    // opened for each flush and closed after, so that writers of idle agents hold no descriptor
    let fd: number
    if (!this.#created) {
      try {
        fd = fs.openSync(this.file, 'wx', 0o600)
      } catch (e) { throw new StorageError(`${this.file}: cannot create: ${(e as NodeJS.ErrnoException).code ?? e}`) }
      try { write(fd, [PACK_MAGIC]) } catch (e) {
        fs.closeSync(fd); try { fs.unlinkSync(this.file) } catch { /* not created */ }
        throw new StorageError(`${this.file}: cannot create: ${(e as NodeJS.ErrnoException).code ?? e}`)
      }
      this.#created = true
      fsyncDirOf(this.file)
    } else {
      try { fd = fs.openSync(this.file, 'a') } catch (e) { throw new StorageError(`${this.file}: cannot write: ${(e as NodeJS.ErrnoException).code ?? e}`) }
    }
    let base = 0
    try {
      base = fs.fstatSync(fd).size
      write(fd, this.#chunks)
      if (durable) { fs.fdatasyncSync(fd); this.#unsynced = false } else this.#unsynced = true
    } catch (e) {
      try { if (base > 0) fs.ftruncateSync(fd, base) } catch { /* readers ignore a torn tail */ }
      this.#reset()
      throw new StorageError(`${this.file}: cannot write: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    } finally { fs.closeSync(fd) }
    for (const [cid, off, len, kind] of this.#slots) noteSlot(cid, { pack: this.index, off: base + off, len, kind })
    if (this.index.scanned === base) this.index.scanned = base + this.#batchBytes
    this.#reset()
  }

  #reset (): void { this.#chunks = []; this.#pending = new Map(); this.#slots = []; this.#batchBytes = 0 }

  /**
   * fdatasyncs the pack when a flush appended frames without it (else nothing).
   * @throws StorageError `<pack>: cannot sync: …`.
   */
  sync (): void {
    if (!this.#unsynced) return
    let fd: number
    try { fd = fs.openSync(this.file, 'r') } catch (e) { throw new StorageError(`${this.file}: cannot sync: ${(e as NodeJS.ErrnoException).code ?? e}`) }
    try { fs.fdatasyncSync(fd) } catch (e) { throw new StorageError(`${this.file}: cannot sync: ${(e as NodeJS.ErrnoException).code ?? e}`) } finally { fs.closeSync(fd) }
    this.#unsynced = false
  }

  /** True when a flush appended frames without a sync ({@link PackWriter.sync} would fdatasync). */
  get unsynced (): boolean { return this.#unsynced }

  /** Records that the caller fdatasynced the pack itself (a group commit's sync point). */
  markSynced (): void { this.#unsynced = false }

  /** Drops queued frames (nothing is held open between flushes). */
  close (): void { this.#reset() }
}

function fsyncDirOf (file: string): void {
  let fd: number
  try { fd = fs.openSync(path.dirname(file), 'r') } catch { return }
  try { fs.fsyncSync(fd) } catch { /* file systems that refuse directory fsync */ } finally { fs.closeSync(fd) }
}

/** SHA-256 of `b` compared with the digest inside `cid`. */
export function matchesCid (b: Uint8Array, cid: string): boolean {
  return Buffer.compare(createHash('sha256').update(b).digest(), digestOfCid(cid)) === 0
}

/**
 * The blob a slot holds: its payload for kind 1, the decompressed payload for kind 2 (the payload
 * as it is when it does not decompress: the caller's hash check then calls it corrupt), the 16
 * chunks found with `chunk` for kind 3 (null when a chunk is missing).
 * `run`: see {@link readSlot}.
 * @throws StorageError when the pack cannot be read (see {@link readSlot}).
 */
export function blobOfSlot (slot: PackSlot, cid: string, chunk: (cid: string) => Uint8Array | null, run?: Set<string>): Uint8Array | null {
  if (slot.kind === FRAME_ZSTD) {
    // decompressed at once: the payload need not outlive this call (a copy only when it is returned as it is)
    const view = readSlot(slot, cid, run, false)
    const out = decompressOne(view)
    return out === view ? Buffer.from(view) : out
  }
  const payload = readSlot(slot, cid, run)
  if (slot.kind === FRAME_BLOB) return payload
  if (payload.length !== 32 * (CHUNKED_SIZE / CHUNK_SIZE)) return payload
  const out = Buffer.alloc(CHUNKED_SIZE)
  for (let k = 0; k < CHUNKED_SIZE / CHUNK_SIZE; k++) {
    const d = payload.subarray(k * 32, k * 32 + 32)
    if (d.every((x) => x === 0)) continue
    const c = chunk(cidOfDigest(d))
    if (c === null) return null
    out.set(c.subarray(0, CHUNK_SIZE), k * CHUNK_SIZE)
  }
  return out
}

/** A kind-2 payload decompressed, or the payload itself when it does not decompress (see {@link blobOfSlot}). */
export function decompressOne (payload: Uint8Array): Uint8Array {
  const r = decompressReused(payload)
  if (r !== null) return r
  try { return zstdDecompressSync(payload, { maxOutputLength: MAX_ZSTD_OUTPUT }) } catch { return payload }
}

/** Largest frame content (bytes) decoded with the reused context; larger frames go the one-shot way. */
const REUSED_MAX_OUTPUT = CHUNKED_SIZE

/**
 * The Frame_Content_Size a zstd frame declares (RFC 8878 §3.1.1.1), when `f` is exactly one
 * well-formed frame: the magic number, a header with that size and no dictionary ID nor reserved
 * bit, then blocks (§3.1.1.2: 3-byte headers; raw and compressed blocks carry Block_Size bytes, RLE
 * one) up to the last, then the 4-byte checksum when the header announces one, ending exactly at
 * the end of `f`. Else -1 (a frame without a declared size, a torn or concatenated frame…). Only
 * the framing is checked here, not the blocks' contents.
 */
export function zstdContentSize (f: Uint8Array): number {
  if (f.length < 6 || f[0] !== 0x28 || f[1] !== 0xb5 || f[2] !== 0x2f || f[3] !== 0xfd) return -1
  const fhd = f[4]
  if ((fhd & 0x08) !== 0 || (fhd & 0x03) !== 0) return -1 // reserved bit; a dictionary ID
  const single = (fhd & 0x20) !== 0
  const flag = fhd >> 6
  let p = 5 + (single ? 0 : 1) // Window_Descriptor unless Single_Segment
  const size = flag === 0 ? (single ? 1 : 0) : flag === 1 ? 2 : flag === 2 ? 4 : 8
  if (size === 0 || p + size > f.length) return -1
  let fcs: number
  if (size === 1) fcs = f[p]
  else if (size === 2) fcs = (f[p] | (f[p + 1] << 8)) + 256
  else {
    fcs = (f[p] | (f[p + 1] << 8) | (f[p + 2] << 16)) + f[p + 3] * 0x1000000
    if (size === 8 && (f[p + 4] | f[p + 5] | f[p + 6] | f[p + 7]) !== 0) return -1 // ≥ 4 GiB: not here
  }
  p += size
  for (;;) {
    if (p + 3 > f.length) return -1
    const bh = f[p] | (f[p + 1] << 8) | (f[p + 2] << 16)
    const type = (bh >> 1) & 3
    if (type === 3) return -1
    p += 3 + (type === 1 ? 1 : bh >>> 3)
    if ((bh & 1) !== 0) break
  }
  if ((fhd & 0x04) !== 0) p += 4 // Content_Checksum
  return p === f.length ? fcs : -1
}

/** This thread's reused decompression context (see {@link decompressReused}); null: none works here. */
let dctx: { h: ZstdHandle; state: Uint32Array; stream: { destroyed: boolean; _handle?: unknown }; flush: number } | null | undefined
let dOut: Buffer | null = null

function decompressContext (): typeof dctx {
  if (dctx !== undefined && dctx !== null && (dctx.stream.destroyed || dctx.stream._handle == null)) dctx = undefined // an error closed it
  if (dctx !== undefined) return dctx
  dctx = null
  try {
    const s = createZstdDecompress() as unknown as { _handle?: ZstdHandle; _writeState?: Uint32Array; _finishFlushFlag?: number; destroyed: boolean; on (e: string, f: () => void): void }
    s.on('error', () => { /* a corrupt frame: seen through `destroyed`, the payload then goes the one-shot way */ })
    const h = s._handle; const state = s._writeState
    if (h === undefined || typeof h.writeSync !== 'function' || typeof h.reset !== 'function' || !(state instanceof Uint32Array) || state.length !== 2 || typeof s._finishFlushFlag !== 'number') return null
    dctx = { h, state, stream: s, flush: s._finishFlushFlag }
    dOut ??= Buffer.allocUnsafe(REUSED_MAX_OUTPUT + 1)
  } catch { dctx = null }
  return dctx
}

/**
 * One zstd frame decoded by this thread's reused decompression context, as {@link decompressOne}
 * would decode it, or null when this path does not decide (the caller then decodes it one-shot):
 * `zstdDecompressSync` builds a stream and a native context per call (~30 µs of fixed cost, more than
 * decoding a 4 KiB chunk; verify decodes one or more chunks per checkpoint). Only a frame whose
 * header declares its content size (≤ 64 KiB) and whose blocks end exactly at the payload's end
 * ({@link zstdContentSize}) is decoded here, so the context ends every call at a frame boundary,
 * ready for the next (no reset: resetting node's zstd context costs as much as a new one); the
 * result is kept only when the context took every input byte, reported no error and gave exactly
 * the declared size. Anything else — a truncated or concatenated frame, an unknown size, a block
 * that does not decode — returns null, so a damaged frame reads exactly as it does one-shot. A
 * context closed by an error is replaced on the next call.
 */
function decompressReused (payload: Uint8Array): Uint8Array | null {
  const want = zstdContentSize(payload)
  if (want < 0 || want > REUSED_MAX_OUTPUT) return null
  const ctx = decompressContext()
  if (ctx == null) return null
  const out = dOut!
  try {
    ctx.h.writeSync(ctx.flush, payload, 0, payload.length, out, 0, out.length)
  } catch { dctx = undefined; return null }
  if (ctx.stream.destroyed || ctx.stream._handle == null) { dctx = undefined; return null }
  const [availOut, availIn] = ctx.state
  const n = out.length - availOut
  if (availIn !== 0 || n !== want) { ctx.h.reset(); return null } // cannot happen for a whole frame; start clean
  const b = ownBuffer(n)
  out.copy(b, 0, 0, n)
  return b
}

const ZSTD_FAST = { params: { [zlibConstants.ZSTD_c_compressionLevel]: 1 } }

/** The native side of a `node:zlib` zstd stream, as Node 24's zlib.js drives it synchronously. */
interface ZstdHandle { writeSync (flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void; reset (): void }

/**
 * One zstd compression context of this thread, reused for every blob: `zstdCompressSync` builds a
 * stream object and a context per call (~40–60 µs of fixed cost, 3/4 of compressing a 4 KiB chunk),
 * which a heartbeat checkpoint pays ~6 times. Driven through the stream's native handle the way
 * zlib.js's own sync path does (`writeSync` with ZSTD_e_end, then the `[availOut, availIn]` write
 * state); a finished frame leaves the context ready for the next. Null (fall back to
 * `zstdCompressSync`) when this Node's stream does not look like that or fails a round trip.
 */
let reused: { h: ZstdHandle; state: Uint32Array; stream: unknown } | null | undefined

function reusedContext (): { h: ZstdHandle; state: Uint32Array; stream: unknown } | null {
  if (reused !== undefined) return reused
  reused = null
  try {
    const s = createZstdCompress(ZSTD_FAST) as unknown as { _handle?: ZstdHandle; _writeState?: Uint32Array }
    const h = s._handle; const state = s._writeState
    if (h === undefined || typeof h.writeSync !== 'function' || typeof h.reset !== 'function' || !(state instanceof Uint32Array) || state.length !== 2) return null
    const ctx = { h, state, stream: s } // the stream stays referenced with its handle
    const probe = Buffer.alloc(4096)
    for (let i = 0; i < probe.length; i += 3) probe[i] = i & 255
    const z = viaContext(ctx, probe)
    if (z === null || Buffer.compare(zstdDecompressSync(z), probe) !== 0) return null
    reused = ctx
  } catch { reused = null }
  return reused
}

/**
 * Room for any zstd frame of `n` bytes of input (ZSTD_COMPRESSBOUND of zstd.h, plus one byte so
 * that a frame that fits never leaves the output exactly full).
 */
function compressBound (n: number): number {
  return n + (n >>> 8) + (n < 128 * 1024 ? (128 * 1024 - n) >>> 11 : 0) + 1
}

/**
 * `b` compressed by `ctx` into a new buffer, or null when the frame is not smaller than `b`. The
 * output has room for the whole frame (see {@link compressBound}), so the context always finishes
 * its frame and is ready for the next: a frame cut short needs `reset()`, which re-initialises the
 * context and made an incompressible 4 KiB chunk cost twice what zstd's raw blocks do.
 */
function viaContext (ctx: { h: ZstdHandle; state: Uint32Array; stream: unknown }, b: Uint8Array): Uint8Array | null {
  const out = Buffer.allocUnsafe(compressBound(b.length))
  ctx.h.writeSync(zlibConstants.ZSTD_e_end, b, 0, b.length, out, 0, out.length)
  const [availOut, availIn] = ctx.state
  if (availIn !== 0 || availOut === 0) { ctx.h.reset(); return null } // cannot happen within the bound: drop the unfinished frame
  const z = out.subarray(0, out.length - availOut)
  // a zstd frame starts with its magic number (RFC 8878 §3.1.1); anything else: stop reusing
  if (z.length < 4 || z[0] !== 0x28 || z[1] !== 0xb5 || z[2] !== 0x2f || z[3] !== 0xfd) { reused = null; return null }
  return z.length < b.length ? z : null
}

/**
 * Blobs shorter than this (bytes) are stored as they are: a zstd call costs ~20 µs however small its
 * input, and a checkpoint's event-log segment is often a hundred bytes that compress to little.
 */
export const COMPRESS_MIN_BYTES = 512

/** `b` compressed with zstd (level 1), or null when that does not make it smaller or `b` is shorter than {@link COMPRESS_MIN_BYTES}. */
export function compress (b: Uint8Array): Uint8Array | null {
  if (b.length < COMPRESS_MIN_BYTES) return null
  const ctx = reusedContext()
  if (ctx !== null) {
    try { return viaContext(ctx, b) } catch { reused = null }
  }
  const z = zstdCompressSync(b, ZSTD_FAST)
  return z.length < b.length ? z : null
}
