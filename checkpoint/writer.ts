/**
 * Writes one agent's checkpoints into a data directory (DESIGN §7, docs/FORMAT.md):
 *
 * - `<dir>/<name>.ckpt` — the live checkpoint (mode 0600: it holds the secret key);
 * - `<dir>/history/<name>/<tick:012>-<header cid>-<tag>.hist` — history segments: one signed entry
 *   per checkpoint, never a key, appended to the writer's segment (checkpoint/segment.ts);
 * - `<dir>/blobs/<cid>` — page bodies, wasm, manifest and event-log segments, by content.
 *
 * Each write costs O(changed pages) in the archive: only changed pages are stored, and the history
 * entry lists only the page-table changes since the previous entry (`base: false`). The first
 * entry a writer instance writes is a base entry (the full page table), so every directory's history
 * can be verified on its own after a resume elsewhere.
 *
 * Crash safety (docs/FORMAT.md "Writing and crash safety"): blobs, then the live file, then the
 * history entry. Only the live file is synced per checkpoint (its delta record's fdatasync): pack
 * frames and entries are written without a sync and made durable at a sync point
 * ({@link CheckpointWriter.sync}) before each whole write of the live file, after a checkpoint
 * whose status is not `running`, and on close — so the records since the file's last whole write
 * cover every checkpoint a power cut may take from the archive. A kill at any instant leaves the
 * old or the new live file, a history whose every entry has its blobs, and no history entry past
 * the live file; a power cut may also take entries and blobs of checkpoints the records hold (never
 * an entry past the live file: it is written after its record is durable). So a copy of the live
 * file alone, resumed anywhere, continues the history and never forks it.
 * {@link CheckpointWriter.ensureArchived}, called on every resume (and by a node on start),
 * re-archives from the live file every checkpoint missing or damaged in the history (and the live
 * checkpoint a kill left one step ahead of it). Entries written past the live file by older
 * versions (which wrote the entry first) are still set aside there.
 */
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { CheckpointError, StorageError } from './errors.ts'
import { decodeEntry, encodeEntry, type HistoryEntry } from './entries.ts'
import { cidOf, cidOfDigest, sameDigest, sha256 } from './hash.ts'
import { decodeHeader, encodeHeader, FORMAT_VERSION, headerCid, signHeader, type CheckpointHeader, type Status } from './header.ts'
import type { Identity } from './identity.ts'
import { decodeGlobals, encodeDelta, encodeLive, liveSteps, type DeltaRow, type LiveCheckpoint, type LiveStep } from './live.ts'
import { CHUNK_SIZE } from './pack.ts'
import { blobsDir, checkAgentName, historyDir, historyFiles, historyName, livePath, makePrivateDir, SEGMENT_EXT, segmentFileName } from './layout.ts'
import { frameHead, readHistoryFile, SEGMENT_MAGIC, SEGMENT_MAX_BYTES } from './segment.ts'
import { BlobStore, fsyncDir, tempPath, testHooks, writeAll } from './store.ts'
import { MAX_PAGES, PAGE_SIZE, StateRootCache, type GlobalValue } from './state.ts'

/**
 * The agent's state handed to {@link CheckpointWriter.write} by the runtime.
 * `pages` are `[index, 64 KiB]` for every non-zero page, ascending; `digests` the SHA-256 of each of
 * those pages (same indices, same order; a digest array is not modified once handed over: a changed
 * page comes with a new one, so the writer re-encodes only those rows of the state root); `changed`
 * the page indices changed since the previous write of this writer (null = all); `globals` ascending by index.
 */
export interface Snapshot {
  pageCount: number; pages: [number, Uint8Array][]; digests: [number, Uint8Array][]
  changed: number[] | null /* page indices changed since the previous write; null = all */
  globals: GlobalValue[]
  /**
   * For some changed pages, by index: the SHA-256 of each of its 16 chunks of 4 KiB (512 bytes, 32
   * zero bytes for an all-zero chunk), so that storing the page in chunks hashes nothing more
   * (runtime/memory.ts hashes only the chunks that changed). Trusted like `digests`.
   */
  chunkDigests?: Map<number, Uint8Array>
  /**
   * For some changed pages that were non-zero in the snapshot of the previous write, by index: bit
   * k set when 4 KiB chunk k may differ from that snapshot's page (never clear for one that
   * differs). Lets the live file's delta record hold only those chunks of a page whose earlier
   * chunk digests the writer does not know (runtime/memory.ts knows from its compares). Same
   * contract as `changed`.
   */
  chunkMasks?: Map<number, number>
}

/**
 * Arguments of {@link CheckpointWriter.write}: fuel in units, budget in microcents, `price` in
 * microcents per million fuel (the price that charged the ticks since `prev`), ticks/epochs as
 * numbers, `time` Unix ms for the header (default `Date.now()`; the runtime passes its input
 * clock so that simulation runs write reproducible bytes).
 */
export interface WriteArgs {
  identity: Identity; wasm: Uint8Array; manifest: Uint8Array; snapshot: Snapshot
  tick: number; epoch: number; prev: string | null; fuel: bigint; budget: bigint; price: bigint; host: string
  time?: number; status: Status; target?: string; reason?: string; log: Uint8Array | null
  /** The I/O state's canonical CBOR (checkpoint/io.ts), stored as a blob and named by the header's `io`; null/absent when empty. */
  io?: Uint8Array | null
}

/**
 * A checkpoint as {@link CheckpointWriter.write} wrote it: the parsed header, its signed bytes (the
 * canonical CBOR the signature covers), the Ed25519 signature (64 bytes, RFC 8032), the header's
 * CID (the next checkpoint's `prev`), and the event-log segment and I/O state it names (null when
 * none) — everything a caller needs to hand the checkpoint on (a migration offer, the control
 * socket) without reading it back from disk.
 */
export interface WrittenCheckpoint {
  header: CheckpointHeader
  headerBytes: Uint8Array
  sig: Uint8Array
  cid: string
  log: Uint8Array | null
  io: Uint8Array | null
}

/** What one {@link CheckpointWriter.write} did: counts and wall time (ms) of the archive and live parts. */
export interface WriteStats {
  /** the history entry was a base entry (full page table) */
  base: boolean
  /** new blob files written (pages, wasm, manifest, log) */
  blobsWritten: number
  /** of which page bodies */
  pageBlobsWritten: number
  /** page-table rows in the history entry */
  entryPages: number
  /** the history segment the entry was appended to */
  entryFile: string
  /** the offset of the entry's frame in {@link WriteStats.entryFile} */
  entryAt: number
  /** bytes the entry added to the segment (its frame) */
  entryBytes: number
  /**
   * blobs written to the pack (and, before a whole write of the live file, the sync point: the
   * queued frames appended and, in {@link CheckpointWriter.write}, its syncs of the pack, history
   * entries and folders), header signed, history entry written (and a sync point after it, when one came), ms
   */
  archiveMs: number
  /**
   * live file, ms: the delta record and its fdatasync, or the whole write (the new file written,
   * synced, renamed into place, its folder synced); after {@link CheckpointWriter.end} of a group
   * commit also the sync point's syncs, which ran together with the file's
   */
  liveMs: number
  /** the live file was rewritten whole (first write of this writer, or a compaction); else a delta record was appended */
  liveCompacted: boolean
  /** size of the live file after the write, bytes */
  liveBytes: number
}

/**
 * One descriptor a pending checkpoint needs made durable: `fd` (held open by the writer until
 * {@link CheckpointWriter.end}) of `file`, synced with `fdatasync` when `data`, else `fsync`; `dir`:
 * a directory, whose fsync some file systems refuse (EINVAL, EISDIR, EPERM: then nothing to do).
 */
export interface SyncJob { readonly fd: number; readonly file: string; readonly data: boolean; readonly dir: boolean }

/**
 * A checkpoint between {@link CheckpointWriter.begin} and {@link CheckpointWriter.end}. `syncs`: the
 * descriptors to make durable (any order, all at once): for a delta record, the live file; for a
 * whole write of the live file, the sync point (pack, history entries and folders written unsynced
 * since the last one) and the new file, written under a temporary name. `rename`: for a whole write,
 * once every sync returned, `from` is renamed to `to` ({@link CheckpointWriter.install}) and folder
 * `dir` fsynced. `header`: the checkpoint's parsed header. The rest is the writer's own.
 */
export interface PendingCheckpoint {
  readonly syncs: readonly SyncJob[]
  readonly rename: { readonly from: string; readonly to: string; readonly dir: string } | null
  readonly header: CheckpointHeader
  /** @internal what {@link CheckpointWriter.end} needs */
  readonly done: {
    headerBytes: Uint8Array; sig: Uint8Array; cid: string; log: Uint8Array | null; io: Uint8Array | null; status: Status
    tick: number; entry: Uint8Array; base: boolean; blobsWritten: number; pageBlobsWritten: number; entryPages: number
    compacted: boolean; liveBefore: number; pageCount: number; t0: number; t1: number; packMs: number; wholeBytes: number
    /** the first this many of `syncs` are the sync point's (pack, entries, folders), the rest the live file's */
    syncPointJobs: number
    renamed: boolean
    /** the file the rename replaced was linked as {@link CheckpointWriter.#replaced} first (to unlink in end) */
    replaced?: boolean
  }
}

/** Opens `file` for a {@link SyncJob} (null when it is gone: set aside since, nothing to sync). @throws StorageError */
function openJob (file: string, data: boolean, dir: boolean): SyncJob | null {
  try { return { fd: fs.openSync(file, 'r'), file, data, dir } } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !dir) return null
    throw new StorageError(`${file}: cannot open to sync: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
}

/**
 * Runs one {@link SyncJob} on this thread.
 * @throws StorageError `<file>: cannot sync: …` (a directory's refusal is not an error).
 */
export function runJobSync (j: SyncJob): void {
  try { if (j.data) fs.fdatasyncSync(j.fd); else fs.fsyncSync(j.fd) } catch (e) { const err = jobError(j, e); if (err !== null) throw err }
}

/** The StorageError of a failed {@link SyncJob} (null: a directory whose file system refuses fsync). */
export function jobError (j: SyncJob, e: unknown): StorageError | null {
  const code = (e as NodeJS.ErrnoException).code
  if (j.dir && (code === 'EINVAL' || code === 'EISDIR' || code === 'EPERM')) return null
  return e instanceof StorageError ? e : new StorageError(`${j.file}: cannot sync: ${code ?? (e as Error).message}`)
}

/**
 * The live file is rewritten whole (compacted) when appending would leave more dead bytes (bytes
 * beyond the size of a whole copy) than this many times the size of a whole copy.
 */
export const COMPACT_RATIO = 1

/**
 * ...or than this many bytes (512 KiB), whichever is more: a small agent (a whole copy of a few
 * pages) would otherwise rewrite its file every second or third checkpoint, each whole write
 * costing a sync point (pack, every entry since, folders) and the new file's syncs (docs/RATIONALE.md
 * "Group commit").
 */
export const COMPACT_MIN_BYTES = 512 * 1024

/**
 * A live file whose whole copy is at least this many bytes (4 MiB) is rewritten whole, not
 * appended to, when a checkpoint's delta record would be at least half that size (most of memory
 * changed), and the file a whole write replaces is kept (`<dir>/.<name>.ckpt.old`, mode 0600) as
 * the spare the next whole write overwrites in place: a record that big is about the cost of a
 * whole write, and writing it into the spare reuses the spare's cached pages and disk blocks, where
 * an append allocates new ones (docs/RATIONALE.md "Big checkpoints rewrite a spare file").
 */
export const SPARE_MIN_BYTES = 4 * 1024 * 1024

/**
 * A checkpoint that changes at most this many pages stores them as 4 KiB chunks, zstd-compressed
 * (docs/FORMAT.md "Blob store"); one that changes more stores as chunks, uncompressed, the pages
 * of which only some chunks changed (the snapshot gives their chunk digests: runtime/memory.ts),
 * and the others as whole pages, uncompressed.
 */
export const FINE_GRAIN_PAGES = 16

/**
 * A sync point ({@link CheckpointWriter.sync}) also comes after every delta record whose position
 * in the live file (1 = the first after the whole checkpoint) is a multiple of this: an agent whose
 * records are small (few pages changed, a big memory) and compacts rarely then never owes more than
 * this many entry fsyncs at once, and a recovery reads back at most about this many records (a
 * sync-point record followed by another record was synced: the writer appends nothing after a
 * sync point that failed).
 */
export const SYNC_EVERY = 64

export { decodeEntry, encodeEntry, type HistoryEntry } from './entries.ts'
export { entryFileName } from './layout.ts'

function ms (t0: number): number { return performance.now() - t0 }

/** True when `held` (the signature an archived entry holds, if any) is `sig`. */
function sameSig (held: Uint8Array | undefined, sig: Uint8Array): boolean { return held !== undefined && Buffer.compare(held, sig) === 0 }

/** The chunk digest list of a zero page (32 zero bytes per chunk, as Snapshot `chunkDigests`). */
const ZERO_LIST = new Uint8Array(32 * 16)
/** A delta row mask naming all 16 chunks of a page (such a row is written as the whole page). */
const ALL_ROW_MASK = 0xffff

function findPage (pages: [number, Uint8Array][], i: number): number {
  let lo = 0; let hi = pages.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const v = pages[mid][0]
    if (v === i) return mid
    if (v < i) lo = mid + 1; else hi = mid - 1
  }
  return -1
}

/**
 * Writes checkpoints of one agent named `name` into data directory `dir` (see the module doc).
 * Not safe for two writers on the same dir and name at once.
 */
export class CheckpointWriter {
  /** the data directory */
  readonly dir: string
  /** the agent's name in this directory */
  readonly name: string
  /** `<dir>/<name>.ckpt` */
  readonly livePath: string
  /** `<dir>/history/<name>` */
  readonly historyDir: string
  /** `<dir>/blobs` */
  readonly blobs: BlobStore
  /** What the last {@link CheckpointWriter.write} did (null before the first). */
  lastStats: WriteStats | null = null
  /** The last checkpoint this writer wrote (null before the first and after a failed write). */
  last: WrittenCheckpoint | null = null
  /**
   * Totals of this writer's {@link CheckpointWriter.write}s (node metrics, p2p/http-api.ts):
   * checkpoints written, their wall time (ms) and bytes written to the live file and history
   * entries (blob files are not counted: they hold the same pages, compressed or deduplicated).
   */
  readonly totals = { count: 0, ms: 0, bytes: 0 }
  /** page table of the last entry written: index → page CID */
  #table: Map<number, string> | null = null
  /**
   * Page index → 4 KiB chunk digest list (as Snapshot `chunkDigests`) of the page the live file's
   * page table holds, for the pages whose list a snapshot gave; a changed page whose old and new
   * lists are both known goes into the next delta record as a chunk row (only its changed chunks).
   */
  readonly #liveLists = new Map<number, Uint8Array>()
  /**
   * Page index → the chunk digest list of the version of the page this writer last stored in
   * chunks, all of whose chunks are present in {@link CheckpointWriter.blobs} (while its `epoch` is
   * {@link CheckpointWriter.#storedEpoch}): the store's look-ups remember only recent CIDs, and a
   * checkpoint changing a few chunks of many pages would otherwise store their other chunks again.
   */
  readonly #storedLists = new Map<number, Uint8Array>()
  #storedEpoch = 0
  #pageCount = 0
  /** the live file this writer last wrote whole (inode, device, size now), and its size when written whole */
  #liveFile: { ino: number; dev: number; size: number } | null = null
  #liveWhole = 0
  #code: { bytes: Uint8Array; length: number; cid: string } | null = null
  /** files written without a sync that {@link CheckpointWriter.sync} makes durable: history segments (and entry files of older versions), earlier packs */
  readonly #unsynced = new Set<string>()
  /** the history folder gained or lost a file since the last sync point (a segment created, an empty one removed) */
  #historyDirty = false
  /**
   * The history segment this writer appends its entries to (size in bytes; opened for each append,
   * no descriptor held between checkpoints), or null before its first entry: created at the first,
   * or the newest segment of the directory taken over by {@link CheckpointWriter.ensureArchived};
   * a new one past {@link SEGMENT_MAX_BYTES}, or after an append failed (its tail may be torn).
   */
  #segment: { file: string; size: number } | null = null
  /** ms of the last write spent writing the pack (and, before a whole write, in the sync point): counted as archive */
  #packMs = 0
  /** delta records appended to the live file since this writer last wrote it whole */
  #records = 0
  #manifest: { bytes: Uint8Array; length: number; cid: string } | null = null
  /** the checkpoint between {@link CheckpointWriter.begin} and {@link CheckpointWriter.end} */
  #pending: PendingCheckpoint | null = null
  /** the state root's encoded page rows of the last write (only changed digests are encoded again) */
  readonly #roots = new StateRootCache()
  /** `<dir>/.<name>.ckpt.old`: the live file a whole write replaced, until unlinked off the thread ({@link CheckpointWriter.install}) */
  readonly #replaced: string
  /** {@link CheckpointWriter.#replaced} is this writer's spare: a replaced live file kept for the next whole write to overwrite ({@link SPARE_MIN_BYTES}) */
  #spare = false

  /**
   * Creates `dir`, `dir/history/<name>` and `dir/blobs` (mode 0700) when missing.
   * @throws NameError (exit 2) for a name that breaks the rule of checkpoint/layout.ts; StorageError on I/O failure.
   */
  constructor (dir: string, name: string) {
    checkAgentName(name)
    this.dir = dir
    this.name = name
    this.livePath = livePath(dir, name)
    this.historyDir = historyDir(dir, name)
    try { makePrivateDir(this.historyDir) } catch (e) { throw new StorageError(`${this.historyDir}: cannot create directory: ${(e as NodeJS.ErrnoException).code ?? e}`) }
    this.#replaced = path.join(dir, `.${name}.ckpt.old`)
    try { fs.unlinkSync(this.#replaced) } catch { /* none: a kill before an unlink leaves one */ }
    this.blobs = new BlobStore(blobsDir(dir), name)
  }

  #cidOf (slot: '#code' | '#manifest', bytes: Uint8Array): string {
    const c = slot === '#code' ? this.#code : this.#manifest
    if (c !== null && c.bytes === bytes && c.length === bytes.length) return c.cid
    const { cid } = this.blobs.putFile(bytes, false)
    const v = { bytes, length: bytes.length, cid }
    if (slot === '#code') this.#code = v; else this.#manifest = v
    return cid
  }

  /**
   * Writes one checkpoint: blobs, live file, history entry (in that order, each atomic; see the
   * module doc for why the live file comes before the entry).
   * `time` is `a.time` or now (Unix ms); `log` (an event-log segment) is stored as a blob and referenced by CID.
   * @returns the checkpoint written: header, signed bytes, signature, CID (the next checkpoint's
   *   `prev`), log and I/O state; also kept as {@link CheckpointWriter.last}.
   * @throws CheckpointError for an inconsistent snapshot or header field; StorageError on I/O
   *   failure (the previous live checkpoint is then still intact).
   */
  write (a: WriteArgs): WrittenCheckpoint {
    const p = this.begin(a)
    let err: unknown = null
    try {
      // the sync point's syncs (pack, entries, folders: the archive's durability) are timed as the
      // archive's (WriteStats.archiveMs), the new file's as the live file's
      const n = p.done.syncPointJobs
      const s0 = performance.now()
      for (let k = 0; k < n; k++) runJobSync(p.syncs[k])
      p.done.packMs += performance.now() - s0
      for (let k = n; k < p.syncs.length; k++) runJobSync(p.syncs[k])
      if (p.rename !== null) { this.install(p); fsyncDir(p.rename.dir) }
    } catch (e) { err = e }
    return this.end(p, err)
  }

  /**
   * Renames a pending whole write of the live file into place (see {@link PendingCheckpoint}
   * `rename`); call only once every sync of `p` returned. The caller then fsyncs `p.rename.dir`.
   * @throws StorageError `<live file>: cannot rename into place: …`.
   */
  install (p: PendingCheckpoint): void {
    if (p.rename === null || p.done.renamed) return
    if (testHooks.beforeRename !== null) testHooks.beforeRename(p.rename.from, p.rename.to)
    // the file being replaced keeps a second name until end(), which unlinks it off this thread:
    // a rename dropping its last link would free its pages and blocks here (tens of ms for a
    // 64 MiB agent's file)
    if (p.rename.to === this.livePath) {
      try { fs.linkSync(this.livePath, this.#replaced); p.done.replaced = true } catch { /* none, a leftover still there, or no hard links here: the rename frees it */ }
    }
    try { fs.renameSync(p.rename.from, p.rename.to) } catch (e) { throw new StorageError(`${p.rename.to}: cannot rename into place: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
    p.done.renamed = true
  }

  /** Unlinks {@link CheckpointWriter.#replaced} on libuv's pool (an error is ignored: a later writer removes a leftover). */
  #dropReplaced (): void { fs.unlink(this.#replaced, () => {}) }

  /**
   * The first half of {@link CheckpointWriter.write}, for a group commit (checkpoint/group-commit.ts):
   * everything but its syncs and what must follow them. Writes the checkpoint's blobs (pack,
   * unsynced), signs the header, and appends its delta record to the live file without a sync — or,
   * when the file is rewritten whole (first write, compaction), writes it whole under a temporary
   * name without a sync. Returns the pending checkpoint: what to sync, and for a whole write what
   * to rename then ({@link PendingCheckpoint}). Nothing of the
   * checkpoint may be shown to anyone (messages, HTTP, status, the next tick) before `end` returned:
   * until then the record may not be durable, and the history entry is not written.
   * Only one checkpoint of a writer may be pending at a time.
   * @throws CheckpointError as `write`; StorageError on I/O failure (nothing is pending then);
   *   Error when a checkpoint of this writer is pending already.
   */
  begin (a: WriteArgs): PendingCheckpoint {
    if (this.#pending !== null) throw new Error(`${this.livePath}: a checkpoint (tick ${this.#pending.header.tick}) is still being synced`)
    const t0 = performance.now()
    const s = a.snapshot
    if (!Number.isSafeInteger(s.pageCount) || s.pageCount < 0 || s.pageCount > MAX_PAGES) throw new CheckpointError(`checkpoint: pageCount ${s.pageCount} out of range`)
    if (s.pages.length !== s.digests.length) throw new CheckpointError(`checkpoint: ${s.pages.length} pages but ${s.digests.length} digests`)
    let last = -1
    for (let k = 0; k < s.pages.length; k++) {
      const i = s.pages[k][0]
      if (i <= last || i >= s.pageCount || s.digests[k][0] !== i) throw new CheckpointError(`checkpoint: page ${i} out of order, outside memory or without its digest`)
      if (s.pages[k][1].length !== PAGE_SIZE) throw new CheckpointError(`checkpoint: page ${i} is ${s.pages[k][1].length} bytes`)
      last = i
    }
    const state = this.#roots.root({ pages: s.pageCount, digests: s.digests, globals: s.globals, fuel: a.fuel, budget: a.budget })

    // 1. blobs (renames made durable by one directory fsync below)
    let blobsWritten = 0; let pageBlobsWritten = 0
    const code = this.#cidOf('#code', a.wasm)
    const manifest = this.#cidOf('#manifest', a.manifest)
    let logCid: string | null = null
    if (a.log !== null) {
      const r = this.blobs.putEx(a.log, undefined, false, { compress: true, loose: false })
      logCid = r.cid; if (r.written) blobsWritten++
    }
    let ioCid: string | undefined
    if (a.io != null) {
      const r = this.blobs.putEx(a.io, undefined, false, { compress: true, loose: false })
      ioCid = r.cid; if (r.written) blobsWritten++
    }
    const base = this.#table === null
    const table = base ? new Map<number, string>() : this.#table!
    const rows: [number, string | null][] = []
    const fresh = new Set<number>() // pages the live file's table did not hold (their chunks are compared with zeros)
    // a few changed pages are stored as 4 KiB chunks, compressed (history growth O(changed chunks));
    // of many, those whose chunk digests the snapshot gives (only some of their chunks changed:
    // runtime/memory.ts) as chunks, uncompressed, and the others (a base entry, a full rewrite of
    // memory) as they are (speed O(memory), no extra hashing)
    const fine = !base && s.changed !== null && s.changed.length <= FINE_GRAIN_PAGES
    if (this.#storedEpoch !== this.blobs.epoch) { this.#storedLists.clear(); this.#storedEpoch = this.blobs.epoch }
    const putPage = (k: number, cid?: string): string => {
      const i = s.pages[k][0]
      const cd = base || s.changed === null ? undefined : s.chunkDigests?.get(i)
      const chunk = fine || cd !== undefined
      const present = cd === undefined ? undefined : this.#storedLists.get(i)
      const r = this.blobs.putEx(s.pages[k][1], s.digests[k][1], false, { chunk, compress: fine, loose: false, ...(cd === undefined ? {} : { chunkDigests: cd }), ...(cid === undefined ? {} : { cid }), ...(present === undefined ? {} : { present }) })
      if (r.written) { blobsWritten++; pageBlobsWritten++ }
      // a page stored in chunks has all its chunks present: its next version's unchanged ones need no look-up
      if (r.written && cd !== undefined) this.#storedLists.set(i, cd); else this.#storedLists.delete(i)
      return r.cid
    }
    if (base || s.changed === null) {
      const next = new Map<number, string>()
      for (let k = 0; k < s.pages.length; k++) {
        const i = s.pages[k][0]
        const cid = base ? putPage(k) : cidOfDigest(s.digests[k][1])
        if (!base && !table.has(i)) fresh.add(i)
        if (!base && table.get(i) !== cid) putPage(k, cid)
        next.set(i, cid)
        if (base || table.get(i) !== cid) rows.push([i, cid])
      }
      if (!base) for (const i of table.keys()) if (!next.has(i)) rows.push([i, null])
      rows.sort((x, y) => x[0] - y[0])
      this.#table = next
    } else {
      const seen = new Set<number>()
      for (const i of s.changed) {
        if (seen.has(i)) continue
        seen.add(i)
        const k = findPage(s.pages, i)
        if (k >= 0) {
          const cid = cidOfDigest(s.digests[k][1])
          if (!table.has(i)) fresh.add(i)
          if (table.get(i) !== cid) { putPage(k, cid); table.set(i, cid); rows.push([i, cid]) }
        } else if (table.has(i)) { table.delete(i); rows.push([i, null]) }
      }
      if (s.pageCount < this.#pageCount) for (const i of [...table.keys()]) if (i >= s.pageCount) { table.delete(i); rows.push([i, null]) }
      rows.sort((x, y) => x[0] - y[0])
    }

    // 2. header, signature, history entry
    const header: CheckpointHeader = {
      v: FORMAT_VERSION, agent: a.identity.did, code, manifest, tick: a.tick, epoch: a.epoch, prev: a.prev,
      state, log: logCid, fuel: a.fuel, budget: a.budget, price: a.price, host: a.host, time: a.time ?? Date.now(), status: a.status,
      ...(a.target === undefined ? {} : { target: a.target }), ...(a.reason === undefined ? {} : { reason: a.reason }), ...(ioCid === undefined ? {} : { io: ioCid }),
    }
    const headerBytes = encodeHeader(header)
    const sig = signHeader(a.identity, headerBytes)
    const cid = headerCid(headerBytes)
    const entry = encodeEntry({ headerBytes, sig, base, pageCount: s.pageCount, pages: rows, globals: s.globals })
    const t1 = performance.now()

    // 3. live file, then 4. the history entry (docs/FORMAT.md "Writing and crash safety"). Only the
    // live file is synced: a delta record appended (its pack frames written just before, without a
    // sync) or, for a whole rewrite, everything written unsynced so far synced first. Until the
    // entry is written the live file is one step ahead of the history, which ensureArchived repairs
    // on resume; the other order would let a copy of the (older) live file resumed elsewhere fork
    // the history at the orphaned entry.
    const liveBefore = this.#liveFile?.size ?? 0
    this.#packMs = 0
    let live: { compacted: boolean; syncs: SyncJob[]; rename: PendingCheckpoint['rename']; wholeBytes: number; syncPointJobs: number }
    try {
      const delta = base ? null : encodeDelta({ header: headerBytes, sig, pageCount: s.pageCount, pages: rows.map(([i, c]) => this.#deltaRow(s, i, c, fresh.has(i))), globals: s.globals, log: a.log, io: a.io ?? null })
      live = this.#writeLive(delta, () => encodeLive({ header: headerBytes, sig, wasm: a.wasm, manifest: a.manifest, pageCount: s.pageCount, pages: s.pages, globals: s.globals, log: a.log, seed: a.identity.seed, io: a.io ?? null }))
      this.#keepLists(s, rows, base)
    } catch (e) { this.#failed(); throw e }
    const p: PendingCheckpoint = {
      syncs: live.syncs, rename: live.rename, header,
      done: { headerBytes, sig, cid, log: a.log, io: a.io ?? null, status: a.status, tick: a.tick, entry, base, blobsWritten, pageBlobsWritten, entryPages: rows.length, compacted: live.compacted, liveBefore, pageCount: s.pageCount, t0, t1, packMs: this.#packMs, wholeBytes: live.wholeBytes, syncPointJobs: live.syncPointJobs, renamed: false },
    }
    this.#pending = p
    return p
  }

  /**
   * The second half of {@link CheckpointWriter.write}: `err` is null when `p.fd` was fdatasynced
   * (or there was nothing to sync), else the failure of that sync. Closes the descriptor, then —
   * the record being durable — writes the history entry (unsynced) and, for a checkpoint whose
   * status is not `running` or every {@link SYNC_EVERY}th record, makes everything durable
   * ({@link CheckpointWriter.sync}). On any failure the writer forgets its page table and live file
   * (its next write is whole, as after any StorageError) and throws.
   * @returns the checkpoint written (also {@link CheckpointWriter.last}).
   * @throws StorageError `<live file>: cannot append the checkpoint: …` when `err` is set, or on I/O failure.
   */
  end (p: PendingCheckpoint, err: unknown): WrittenCheckpoint {
    if (this.#pending !== p) throw new Error(`${this.livePath}: checkpoint (tick ${p.header.tick}) is not the one pending`)
    this.#pending = null
    const d = p.done
    for (const j of p.syncs) try { fs.closeSync(j.fd) } catch { /* synced or failed: nothing left to lose */ }
    if (d.replaced === true) {
      // the replaced file is kept as the spare of the next whole write of a big live file
      if (err === null && d.renamed && d.wholeBytes >= SPARE_MIN_BYTES) this.#spare = true
      else this.#dropReplaced()
    }
    if (err === null && p.rename !== null && !d.renamed) err = new StorageError(`${this.livePath}: the whole live file was not renamed into place`)
    if (err !== null && p.rename !== null && !d.renamed) try { fs.unlinkSync(p.rename.from) } catch { /* gone */ }
    const { headerBytes, sig, cid, entry, base, blobsWritten, pageBlobsWritten, t0, t1, liveBefore } = d
    const compacted = d.compacted
    try {
      // a system call's error becomes a StorageError naming the live file; anything else (a test
      // hook's simulated crash) is thrown as it is
      if (err !== null) throw err instanceof StorageError || (err as NodeJS.ErrnoException).code === undefined ? err : new StorageError(`${this.livePath}: cannot ${compacted ? 'write' : 'append'} the checkpoint: ${(err as NodeJS.ErrnoException).code}`)
      if (compacted) {
        // the sync point and the new file are durable, and the file is in place
        this.#syncPointDone()
        this.#liveWhole = d.wholeBytes
        try { const st = fs.statSync(this.livePath); this.#liveFile = { ino: st.ino, dev: st.dev, size: this.#liveWhole } } catch { /* appended to next time only if found */ }
      }
      const t2 = performance.now()
      const at = this.#appendEntry(d.tick, cid, entry)
      // a stop, finish, handoff or exhaustion leaves everything durable; so does every
      // SYNC_EVERY-th record (it bounds what a sync point owes and what a recovery reads)
      if (!compacted) this.#records++; else this.#records = 0
      if (d.status !== 'running' || (this.#records > 0 && this.#records % SYNC_EVERY === 0)) this.sync()
      this.lastStats = { base, blobsWritten, pageBlobsWritten, entryPages: d.entryPages, entryFile: at.file, entryAt: at.at, entryBytes: at.bytes, archiveMs: t1 - t0 + d.packMs + ms(t2), liveMs: t2 - t1 - d.packMs, liveCompacted: compacted, liveBytes: this.#liveFile?.size ?? 0 }
      this.totals.count++
      this.totals.ms += performance.now() - t0
      this.totals.bytes += (compacted ? this.#liveWhole : (this.#liveFile?.size ?? liveBefore) - liveBefore) + at.bytes
    } catch (e) { this.#failed(); throw e }
    this.#pageCount = d.pageCount
    this.last = { header: p.header, headerBytes, sig, cid, log: d.log, io: d.io }
    return this.last
  }

  /**
   * The delta record row of page `i` (page CID `cid`, null: now zero): a chunk row with the chunks
   * whose digests differ from the page the file holds (from zeros for a `fresh` page: one the file
   * did not hold), when both digest lists are known (see {@link CheckpointWriter.#liveLists}); else
   * the whole page.
   */
  #deltaRow (s: Snapshot, i: number, cid: string | null, fresh: boolean): DeltaRow {
    if (cid === null) return [i, null]
    const page = s.pages[findPage(s.pages, i)][1]
    const now = s.chunkDigests?.get(i)
    const before = fresh ? ZERO_LIST : this.#liveLists.get(i)
    if (now === undefined || before === undefined || now.length !== before.length) {
      // the runtime's mask, when it has one: which chunks its compares found changed
      const m = fresh ? undefined : s.chunkMasks?.get(i)
      return m !== undefined && Number.isInteger(m) && m > 0 && m < ALL_ROW_MASK ? [i, page, m] : [i, page]
    }
    let mask = 0
    for (let k = 0; k * 32 < now.length; k++) if (!sameDigest(now, before, k * 32)) mask |= 1 << k
    return mask === 0 ? [i, page] : [i, page, mask]
  }

  /**
   * Brings {@link CheckpointWriter.#liveLists} up to the page table just written: `rows` are every
   * change of it (all of it for a base), pages dropped beyond the page count included.
   */
  #keepLists (s: Snapshot, rows: [number, string | null][], base: boolean): void {
    if (base) this.#liveLists.clear()
    for (const [i, cid] of rows) {
      const list = cid === null ? undefined : s.chunkDigests?.get(i)
      if (list === undefined) this.#liveLists.delete(i); else this.#liveLists.set(i, list)
    }
  }

  /** After a failed write: the next one is whole (page table and live file forgotten). */
  #failed (): void {
    this.#table = null // the in-memory table may no longer match the last entry on disk: next write is a base
    this.#liveLists.clear()
    this.#storedLists.clear()
    this.#closeLive() // and the live file is rewritten whole
    this.last = null
  }

  /**
   * Writes the live file: appends `delta` (the pack's new frames written first without a sync,
   * then the record and one fdatasync of the live file) when this writer wrote the file it finds
   * there and the dead bytes stay within {@link COMPACT_RATIO} × the size of a whole copy (or
   * {@link COMPACT_MIN_BYTES}); else
   * (the first write of this writer, a base entry, a file replaced or grown by someone else, or
   * too many dead bytes) makes everything written so far durable ({@link CheckpointWriter.sync}:
   * the records about to be dropped covered it) and writes the whole checkpoint from `whole()`
   * atomically (compaction).
   * @returns true when the file was rewritten whole.
   * @throws StorageError on I/O failure.
   */
  #writeLive (delta: Uint8Array[] | null, whole: () => Uint8Array[]): { compacted: boolean; syncs: SyncJob[]; rename: PendingCheckpoint['rename']; wholeBytes: number; syncPointJobs: number } {
    if (delta !== null && this.#liveFile !== null) {
      const n = delta.reduce((k, c) => k + c.length, 0)
      const big = this.#liveWhole >= SPARE_MIN_BYTES && 2 * n >= this.#liveWhole
      if (!big && this.#liveFile.size + n - this.#liveWhole <= Math.max(COMPACT_RATIO * this.#liveWhole, COMPACT_MIN_BYTES)) {
        // opened for each append (no descriptor held between checkpoints), and only while it is
        // still the file this writer left
        let fd: number | null = null
        try { fd = fs.openSync(this.livePath, 'a') } catch { /* gone: rewrite */ }
        if (fd !== null) {
          let held = false
          try {
            const st = fs.fstatSync(fd)
            if (st.ino === this.#liveFile.ino && st.dev === this.#liveFile.dev && st.size === this.#liveFile.size) {
              const f0 = performance.now()
              this.blobs.flush()
              this.#packMs = performance.now() - f0
              if (testHooks.beforeRename !== null) testHooks.beforeRename(this.livePath, this.livePath)
              try { writeAll(fd, delta) } catch (e) { throw new StorageError(`${this.livePath}: cannot append the checkpoint: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
              this.#liveFile.size += n
              held = true // fdatasynced, then closed, by the caller (end)
              return { compacted: false, syncs: [{ fd, file: this.livePath, data: true, dir: false }], rename: null, wholeBytes: 0, syncPointJobs: 0 }
            }
          } finally { if (!held) fs.closeSync(fd) }
        }
      }
    }
    this.#liveFile = null
    // the sync point (everything written unsynced: the records about to be dropped covered it) and
    // the new file, all synced at once before the rename (write: here; a group commit: on the pool)
    const s0 = performance.now()
    const syncs: SyncJob[] = []
    try {
      this.#syncPoint(syncs)
      this.#packMs = performance.now() - s0
      const syncPointJobs = syncs.length
      const chunks = whole()
      const wholeBytes = chunks.reduce((k, c) => k + c.length, 0)
      const tmp = tempPath(this.livePath)
      const fd = this.#openWhole(tmp)
      syncs.push({ fd, file: tmp, data: false, dir: false })
      try {
        writeAll(fd, chunks)
        if (fs.fstatSync(fd).size > wholeBytes) fs.ftruncateSync(fd, wholeBytes) // a longer spare's tail
      } catch (e) { try { fs.unlinkSync(tmp) } catch { /* gone */ } throw new StorageError(`${tmp}: cannot write: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
      return { compacted: true, syncs, rename: { from: tmp, to: this.livePath, dir: this.dir }, wholeBytes, syncPointJobs }
    } catch (e) {
      for (const j of syncs) try { fs.closeSync(j.fd) } catch { /* closed */ }
      throw e
    }
  }


  /**
   * Opens `tmp` for a whole write of the live file: the spare ({@link SPARE_MIN_BYTES}), renamed to
   * `tmp` and opened to be overwritten from its start (its pages and blocks reused), when this
   * writer kept one; else a new file (mode 0600).
   * @throws StorageError `<tmp>: cannot create: …`.
   */
  #openWhole (tmp: string): number {
    if (this.#spare) {
      this.#spare = false // taken: a failure below leaves none (end unlinks the temporary file)
      try { fs.renameSync(this.#replaced, tmp); return fs.openSync(tmp, 'r+') } catch { try { fs.unlinkSync(tmp) } catch { /* not renamed */ } }
    }
    try { return fs.openSync(tmp, 'wx', 0o600) } catch (e) { throw new StorageError(`${tmp}: cannot create: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
  }

  /**
   * Makes durable everything this writer (and, after {@link CheckpointWriter.ensureArchived}, the
   * writer before it) wrote without a sync: the pack (fdatasync), earlier packs of the agent that
   * may hold unsynced frames, history entries (fsync each) and the history folder. Called before
   * every whole rewrite of the live file, after a checkpoint whose status is not `running`, and by
   * {@link CheckpointWriter.close}; cheap when nothing is pending.
   * @throws StorageError on I/O failure.
   */
  sync (): void {
    const jobs: SyncJob[] = []
    try {
      this.#syncPoint(jobs)
      for (const j of jobs) runJobSync(j)
    } finally { for (const j of jobs) try { fs.closeSync(j.fd) } catch { /* closed */ } }
    this.#syncPointDone()
  }

  /**
   * Opens the descriptors of a sync point into `jobs` (the caller syncs and closes them, then
   * calls {@link CheckpointWriter.#syncPointDone}): the pack's queued blobs appended and the pack
   * (fdatasync), the blob folder when it gained a file, every file written unsynced since the last
   * sync point (history entries fsync, others fdatasync) and the history folder when entries are
   * among them. {@link CheckpointWriter.sync} runs them here; a whole write of the live file hands
   * them to its caller (a group commit runs them on libuv's pool).
   * @throws StorageError when one cannot be opened (a file gone since is skipped).
   */
  #syncPoint (jobs: SyncJob[]): void {
    const add = (file: string, data: boolean, dir = false): void => { const j = openJob(file, data, dir); if (j !== null) jobs.push(j) }
    const b = this.blobs.syncList()
    if (b.pack !== null) add(b.pack, true)
    if (b.dir !== null) add(b.dir, false, true)
    let entries = this.#historyDirty
    for (const f of this.#unsynced) {
      // an entry file (older versions) was created unsynced: it and its name need a sync; a
      // segment's appends need its data (fdatasync), its creation the folder's (#historyDirty)
      const isEntryFile = path.dirname(f) === this.historyDir && !f.endsWith(SEGMENT_EXT)
      add(f, !isEntryFile)
      if (isEntryFile) entries = true
    }
    if (entries) add(this.historyDir, false, true)
  }

  /** After the descriptors of a sync point returned from their syncs: nothing written is owed a sync. */
  #syncPointDone (): void { this.blobs.synced(); this.#unsynced.clear(); this.#historyDirty = false }

  /**
   * Appends history entry `entry` (of checkpoint `cid` at `tick`) to this writer's segment, first
   * creating one named after it (`<tick:012>-<cid>-<tag>.hist`, a random tag; the magic written first) when
   * there is none or the current one reached {@link SEGMENT_MAX_BYTES}. No sync: the live file's
   * records cover it until the next sync point.
   * @returns the segment, the frame's offset in it, and the bytes added.
   * @throws StorageError `<segment>: cannot create|append …` (the segment is then given up: the
   *   next entry starts a new one; a resume cuts a torn frame).
   */
  #appendEntry (tick: number, cid: string, entry: Uint8Array): { file: string; at: number; bytes: number } {
    const head = frameHead(entry)
    if (this.#segment !== null && this.#segment.size >= SEGMENT_MAX_BYTES) this.#segment = null
    let fd: number
    let s = this.#segment
    const fresh = s === null
    if (s === null) ({ s, fd } = this.#createSegment(tick, cid))
    else {
      try { fd = fs.openSync(s.file, 'a') } catch (e) {
        this.#segment = null
        throw new StorageError(`${s.file}: cannot open to append the history entry: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
      }
    }
    const before = s.size
    const at = before + (fresh ? SEGMENT_MAGIC.length : 0)
    try { writeAll(fd, fresh ? [SEGMENT_MAGIC, head, entry] : [head, entry]) } catch (e) {
      this.#segment = null // its tail may be torn: frames after it would read as damaged bytes
      throw new StorageError(`${s.file}: cannot append the history entry: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    } finally { fs.closeSync(fd) }
    s.size = at + head.length + entry.length
    this.#segment = s
    this.#unsynced.add(s.file)
    return { file: s.file, at, bytes: s.size - before }
  }

  /** Creates this writer's next segment (see {@link CheckpointWriter.#appendEntry}), the first free name, open for writing. @throws StorageError `<file>: cannot create: …`. */
  #createSegment (tick: number, cid: string): { s: { file: string; size: number }; fd: number } {
    for (let n = 0; ; n++) {
      const file = path.join(this.historyDir, segmentFileName(tick, cid, randomBytes(4).toString('hex')))
      try {
        const fd = fs.openSync(file, 'wx', 0o600)
        this.#historyDirty = true
        return { s: { file, size: 0 }, fd }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || n >= 9) throw new StorageError(`${file}: cannot create: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
      }
    }
  }

  #closeLive (): void { this.#liveFile = null }

  /**
   * Makes everything written durable ({@link CheckpointWriter.sync}) and drops what this writer
   * holds between checkpoints (queued blobs); nothing stays open.
   * @throws StorageError when the sync fails (the writer is closed all the same).
   */
  close (): void {
    try { this.sync() } finally {
      this.#closeLive(); this.blobs.close()
      if (this.#spare) { this.#spare = false; try { fs.unlinkSync(this.#replaced) } catch { /* gone */ } }
    }
  }

  /**
   * Makes sure the checkpoint being resumed, and every checkpoint its live file still holds as
   * delta records, is in this directory's history with its blobs (docs/FORMAT.md "Writing and crash
   * safety": between two whole writes of the live file, packs and history entries are written
   * without a sync, so a power cut may take them; the records hold everything they held). For the
   * live file `<dir>/<name>.ckpt` holding `live` (when `live` came from elsewhere, only `live`
   * itself), in file order: an entry that is missing, torn or not that checkpoint's is written
   * again (a base entry for the file's whole checkpoint, a delta from the checkpoint before it for
   * a record), and a record's blobs (its changed pages, log, I/O state) missing from the packs are
   * appended again; before that, a pack tail a power cut zeroed is cut
   * ({@link BlobStore.cutZeroedTails}: it may hold a blob of the checkpoint the cut interrupted). Entries and packs that already were there are synced before this writer's
   * first whole write replaces the records (this writer's first write always is one), so a kill or
   * power cut during or after the recovery finds the records still there. Also sets aside (renames to
   * `.orphan-<file>`, which verify ignores) a single history entry that an older version left
   * after the live checkpoint: the only entry past `live`'s tick, whose `prev` is `live`. Does not
   * touch the live file.
   * @returns how many checkpoints were re-archived (entries written).
   * @throws StorageError on I/O failure; CheckpointError when a record of the live file cannot be read.
   */
  ensureArchived (live: LiveCheckpoint): number {
    const cid = headerCid(live.header)
    const tick = live.parsed.tick
    let names: string[]
    try { names = fs.readdirSync(this.historyDir) } catch (e) { throw new StorageError(`${this.historyDir}: cannot list: ${(e as NodeJS.ErrnoException).code ?? e}`) }
    // (entry files only: those versions wrote no segments)
    const later = names.filter((n) => { const h = historyName(n); return h !== null && h.kind === 'entry' && h.tick > tick })
    if (later.length === 1) {
      const p = path.join(this.historyDir, later[0])
      try {
        const e = decodeEntry(fs.readFileSync(p), p)
        if (e.parsed.prev === cid) fs.renameSync(p, path.join(this.historyDir, `.orphan-${later[0]}`))
      } catch { /* unreadable: leave it for verify to report */ }
    }
    // a power cut's zeroed pack tails go first: a damaged frame of the checkpoint the cut
    // interrupted is held by no record, so the repairs below never see it, and a put would find it
    // (their new size is made durable by this writer's first sync point)
    for (const f of this.blobs.cutZeroedTails()) this.#unsynced.add(f)
    const steps = (live.records ?? 0) > 0 ? this.#stepsOf(live) : null
    if (steps === null) return this.#archiveWhole(live) ? 1 : 0
    return this.#recover(steps, live)
  }

  /**
   * The checkpoints of `<dir>/<name>.ckpt` when its last one is `live` (else null: `live` came from
   * elsewhere, and only it is archived here). Parsed from the bytes `live` was decoded from when its
   * byte arrays are views into them, as {@link readLive} leaves them and the file still has their
   * size; else the file is read again.
   */
  #stepsOf (live: LiveCheckpoint): LiveStep[] | null {
    let size: number
    try { size = fs.statSync(this.livePath).size } catch { return null }
    const last = (steps: LiveStep[]) => Buffer.compare(steps[steps.length - 1].header, live.header) === 0
    const buf = live.header.buffer
    if (buf instanceof ArrayBuffer && buf.byteLength === size && size > 3) {
      const b = new Uint8Array(buf)
      if (b[0] === 0xd9 && b[1] === 0xd9 && b[2] === 0xf7) {
        try { const steps = liveSteps(b, this.livePath); if (last(steps)) return steps } catch { /* not the whole file: read it */ }
      }
    }
    let bytes: Uint8Array
    try { bytes = fs.readFileSync(this.livePath) } catch { return null }
    const steps = liveSteps(bytes, this.livePath)
    return last(steps) ? steps : null
  }

  /**
   * The entries of this directory's history from tick `minTick` on (header CID → signature: the
   * CID is the header's hash, so an entry under the same CID holds the same header), read newest
   * first until an older one. On the way, for the recovery: every file read
   * is listed for this writer's first sync point (the writer before may have died before syncing
   * it); a segment's torn tail (checkpoint/segment.ts: what a kill or power cut leaves) is cut off,
   * or the segment removed when it holds no intact frame at all; a damaged tail (bytes up to the end
   * that are not a frame but do not look torn: bit rot, or a power cut that wrote the pages of a
   * frame out of order) is cut only when the last intact entry before it is a checkpoint in
   * `unsynced` — checkpoints after which nothing appended was synced yet, so the tail can only hold
   * entries the recovery writes again — and is otherwise left for verify to report; and when this
   * writer has no segment yet, the newest file, when it is an undamaged segment below
   * {@link SEGMENT_MAX_BYTES}, becomes the one it appends to (resumes and wakes do not each start a file).
   * @throws StorageError when the history folder cannot be listed or a cut fails.
   */
  #heldSince (minTick: number, unsynced: ReadonlySet<string>): Map<string, Uint8Array> {
    const held = new Map<string, Uint8Array>()
    let files: string[]
    try { files = historyFiles(this.historyDir) } catch (e) { throw new StorageError(`${this.historyDir}: cannot list: ${(e as NodeJS.ErrnoException).code ?? e}`) }
    for (let f = files.length - 1; f >= 0; f--) {
      const file = files[f]
      // the newest bytes first (a segment holds thousands of entries, a recovery needs its last few):
      // a window of the file's end, four times larger until it reaches an entry older than
      // `minTick` or the file's start
      let r: ReturnType<typeof readHistoryFile>
      try {
        for (let window = 64 * 1024; ; window *= 4) {
          r = readHistoryFile(file, 0, window)
          if (r.start === 0) break
          const first = r.entries[0]
          if (first !== undefined) {
            let e: HistoryEntry | null = null
            try { e = decodeEntry(first.bytes, file) } catch { /* read more */ }
            if (e !== null && e.parsed.tick < minTick) break
          }
        }
      } catch { continue } // unreadable: left for verify to report
      // entries are decoded from the last, as far as needed
      const decoded = new Map<number, HistoryEntry | null>()
      const entryAt = (k: number): HistoryEntry | null => {
        let e = decoded.get(k)
        if (e === undefined) { try { e = decodeEntry(r.entries[k].bytes, file) } catch { e = null } decoded.set(k, e) }
        return e
      }
      const notSegment = r.problems.length > r.damaged.length
      let cut = r.tail
      const damagedTail = r.damaged.at(-1)
      if (cut === null && damagedTail !== undefined && damagedTail[1] === r.end) {
        const last = r.entries.length > 0 ? entryAt(r.entries.length - 1) : null
        if (last !== null && unsynced.has(headerCid(last.headerBytes))) { cut = damagedTail[0]; r.damaged.pop() }
      }
      if (cut !== null && r.entries.length === 0) {
        try { fs.unlinkSync(file) } catch (e) { throw new StorageError(`${file}: cannot remove an empty history segment: ${(e as NodeJS.ErrnoException).code ?? e}`) }
        this.#historyDirty = true
        continue
      }
      if (cut !== null) {
        try { fs.truncateSync(file, cut) } catch (e) { throw new StorageError(`${file}: cannot cut its torn tail at byte ${cut}: ${(e as NodeJS.ErrnoException).code ?? e}`) }
      }
      this.#unsynced.add(file)
      if (f === files.length - 1 && file.endsWith(SEGMENT_EXT) && this.#segment === null && r.damaged.length === 0 && !notSegment && (cut ?? r.end) < SEGMENT_MAX_BYTES) {
        this.#segment = { file, size: cut ?? r.end }
      }
      let older = false
      for (let k = r.entries.length - 1; k >= 0 && !older; k--) {
        const e = entryAt(k)
        if (e === null) continue
        if (e.parsed.tick < minTick) older = true
        else held.set(headerCid(e.headerBytes), e.sig)
      }
      if (older) break
    }
    return held
  }

  /** Writes the history entry of checkpoint `cid` at `tick` (no sync: the live file's records cover it until {@link CheckpointWriter.sync}). */
  #writeEntry (tick: number, cid: string, e: Omit<HistoryEntry, 'parsed'>): void {
    this.blobs.flush() // its blobs reach the files before it does
    this.#appendEntry(tick, cid, encodeEntry(e))
  }

  /**
   * Appends the history entry of a checkpoint this writer did not write — the handoff that brought
   * the agent to this node (runtime/worker.ts): signed `headerBytes` and `sig`, the rest of the
   * entry from `rest()`, called only when needed — unless the history's newest entries hold it
   * already, and makes it durable ({@link CheckpointWriter.sync}).
   * @returns true when it was appended.
   * @throws StorageError on I/O failure; CheckpointError for header bytes that do not decode.
   */
  archiveEntry (headerBytes: Uint8Array, sig: Uint8Array, rest: () => Omit<HistoryEntry, 'parsed' | 'headerBytes' | 'sig'>): boolean {
    const h = decodeHeader(headerBytes, 'history entry')
    const cid = headerCid(headerBytes)
    if (sameSig(this.#heldSince(h.tick, new Set()).get(cid), sig)) return false
    this.#writeEntry(h.tick, cid, { headerBytes, sig, ...rest() })
    this.sync()
    return true
  }

  /** {@link CheckpointWriter.ensureArchived} for `live` alone: a base entry and its blobs when its entry is missing or torn. */
  #archiveWhole (live: LiveCheckpoint): boolean {
    const p = live.parsed
    const cid = headerCid(live.header)
    if (sameSig(this.#heldSince(p.tick, new Set()).get(cid), live.sig)) {
      // archived: its blobs are durable, so this writer's puts can skip them
      const pages = live.digests !== undefined ? live.digests.map(([, d]) => cidOfDigest(d)) : live.pages.map(([, pg]) => cidOf(pg))
      this.blobs.noteKnown([p.code, p.manifest, ...(p.log === null ? [] : [p.log]), ...(p.io === undefined ? [] : [p.io]), ...pages])
      return false
    }
    this.#cidOf('#code', live.wasm)
    this.#cidOf('#manifest', live.manifest)
    if (live.log !== null) this.blobs.putEx(live.log, undefined, false, { compress: true })
    if (live.io !== null) this.blobs.putEx(live.io, undefined, false, { compress: true })
    const rows: [number, string][] = []
    const digests = new Map(live.digests ?? [])
    for (const [i, page] of live.pages) {
      const d = digests.get(i) ?? sha256(page)
      rows.push([i, this.blobs.putEx(page, d, false).cid])
    }
    this.#writeEntry(p.tick, cid, { headerBytes: live.header, sig: live.sig, base: true, pageCount: live.pageCount, pages: rows, globals: live.globals })
    return true
  }

  /**
   * {@link CheckpointWriter.ensureArchived} for every checkpoint of a live file with delta records
   * that may have lost its entry or blobs: those after the file's last sync point known complete (a
   * record at which the writer syncs — every {@link SYNC_EVERY}th, or one whose status is not
   * `running` — followed by another record: the writer appends nothing after a sync point that
   * failed). Those up to it, and the whole checkpoint then, are durable and are not read again.
   */
  #recover (steps: LiveStep[], live: LiveCheckpoint): number {
    let written = 0
    const headers = steps.map((st, k) => decodeHeader(st.header, `${this.livePath}: checkpoint ${k}`))
    let synced = 0 // steps 0..synced-1 are durable (0: none known)
    for (let k = steps.length - 2; k >= 1; k--) if (k % SYNC_EVERY === 0 || headers[k].status !== 'running') { synced = k + 1; break }
    // digests of the file's last checkpoint serve for the whole checkpoint's pages no record changed
    const touched = new Set<number>()
    for (let k = 1; k < steps.length; k++) for (const [i] of steps[k].pages) touched.add(i)
    const finalDigests = new Map(live.digests ?? [])
    // what each step not known durable is owed: its entry (whether the history holds it) and its blobs
    interface Owed { tick: number; cid: string; held: boolean; blobs: { b: Uint8Array; d: Uint8Array; how: { chunk?: boolean; compress?: boolean } }[]; cids: Map<number, string> }
    const owed: Owed[] = []
    // the entries the history holds (the files read are synced at this writer's first sync point:
    // the writer before this one may not have synced them); what was appended after the last sync
    // point known complete, or (none) after the whole checkpoint's parent (everything before the
    // whole write was synced first), is unsynced
    const unsynced = new Set(steps.slice(Math.max(0, synced - 1)).map((st) => headerCid(st.header)))
    if (synced === 0 && headers[0].prev !== null) unsynced.add(headers[0].prev)
    const have = this.#heldSince(headers[synced].tick, unsynced)
    for (let k = synced; k < steps.length; k++) {
      const st = steps[k]
      const cid = headerCid(st.header)
      const held = sameSig(have.get(cid), st.sig)
      const blobs: Owed['blobs'] = []
      const cids = new Map<number, string>() // page index → CID
      // a whole checkpoint's blobs were synced before the file was written whole: put again (and
      // checked) only when its entry must be written again; a record's are always checked, since a
      // power cut keeps any subset of its entry and blobs
      if (!st.whole || !held) {
        const fine = !st.whole && st.pages.length <= FINE_GRAIN_PAGES
        for (const b of [st.log, st.io]) if (b !== null) blobs.push({ b, d: sha256(b), how: { compress: true } })
        for (const [i, page] of st.pages) {
          if (page === null) continue
          const d = (st.whole && !touched.has(i) ? finalDigests.get(i) : undefined) ?? sha256(page)
          blobs.push({ b: page, d, how: st.whole ? {} : { chunk: fine, compress: fine } })
          cids.set(i, cidOfDigest(d))
        }
      }
      owed.push({ tick: headers[k].tick, cid, held, blobs, cids })
    }
    // 1. cut damaged pack tails (a power cut's torn or zeroed frames behind intact headers), but only
    // where everything cut is put again in 2; all cuts come before any put, so a later cut cannot
    // drop a blob an earlier put found present
    let recoverable: Set<string> | null = null
    const mayCut = (): Set<string> => {
      if (recoverable !== null) return recoverable
      recoverable = new Set()
      for (const t of owed) {
        for (const { b, d, how } of t.blobs) {
          recoverable.add(cidOfDigest(d))
          if (how.chunk !== true || b.length !== PAGE_SIZE) continue
          for (let c = 0; c < PAGE_SIZE / CHUNK_SIZE; c++) {
            const chunk = b.subarray(c * CHUNK_SIZE, (c + 1) * CHUNK_SIZE)
            if (chunk.some((x) => x !== 0)) recoverable.add(cidOf(chunk))
          }
        }
      }
      return recoverable
    }
    for (const t of owed) for (const { b, d, how } of t.blobs) this.blobs.repair(cidOfDigest(d), b, how.chunk === true, mayCut)
    // 2. put what is missing, write the entries that are
    const table = new Set<number>() // non-zero pages of the step
    for (let k = 0; k < steps.length; k++) {
      const st = steps[k]
      const t = k >= synced ? owed[k - synced] : null
      if (t !== null) for (const { b, d, how } of t.blobs) this.blobs.putEx(b, d, false, how)
      if (st.whole) {
        table.clear()
        for (const [i] of st.pages) table.add(i)
        if (t === null || t.held) continue
        this.#cidOf('#code', live.wasm)
        this.#cidOf('#manifest', live.manifest)
        const rows: [number, string][] = [...t.cids].sort((x, y) => x[0] - y[0])
        this.#writeEntry(t.tick, t.cid, { headerBytes: st.header, sig: st.sig, base: true, pageCount: st.pageCount, pages: rows, globals: st.globals })
        written++
        continue
      }
      const rows: [number, string | null][] = []
      for (const [i, page] of st.pages) {
        if (page === null) { table.delete(i); rows.push([i, null]); continue }
        table.add(i); rows.push([i, t?.cids.get(i) ?? ''])
      }
      for (const i of [...table]) if (i >= st.pageCount) { table.delete(i); if (!rows.some(([r]) => r === i)) rows.push([i, null]) }
      if (t === null || t.held) continue
      rows.sort((x, y) => x[0] - y[0])
      this.#writeEntry(t.tick, t.cid, { headerBytes: st.header, sig: st.sig, base: false, pageCount: st.pageCount, pages: rows, globals: st.globals })
      written++
    }
    // every page of the live checkpoint is now durable or queued: this writer's first (base) write skips them
    const p = live.parsed
    if (live.digests !== undefined) this.blobs.noteKnown([p.code, p.manifest, ...live.digests.map(([, d]) => cidOfDigest(d))])
    this.blobs.flush()
    // packs of the writers before this one may hold frames they never synced
    for (const f of this.blobs.packFiles()) this.#unsynced.add(f)
    return written
  }
}
