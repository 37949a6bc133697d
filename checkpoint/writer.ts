/**
 * Writes one agent's checkpoints into a data directory (DESIGN §7, docs/FORMAT.md):
 *
 * - `<dir>/<name>.ckpt` — the live checkpoint (mode 0600: it holds the secret key);
 * - `<dir>/history/<name>/<tick:012>-<header cid>.cbor` — one signed entry per checkpoint, never a key;
 * - `<dir>/blobs/<cid>` — page bodies, wasm, manifest and event-log segments, by content.
 *
 * Each write costs O(changed pages) in the archive: only changed pages are stored, and the history
 * entry lists only the page-table changes since the previous entry (`base: false`). The first
 * entry a writer instance writes is a base entry (the full page table), so every directory's history
 * can be verified on its own after a resume elsewhere.
 *
 * Crash safety (docs/FORMAT.md "Write order"): blobs first (then one fsync of the blob directory),
 * then the live file, then the history entry, each atomic. A kill at any instant leaves the old or
 * the new live file, a history whose every entry has its blobs, and no history entry past the live
 * file: so a copy of the live file alone, resumed anywhere, continues the history and never forks it.
 * A kill between the live file and its entry leaves the live checkpoint one step ahead of the
 * history; {@link CheckpointWriter.ensureArchived}, called on every resume (and by a node on start),
 * archives it. Entries written past the live file by older versions (which wrote the entry first)
 * are still set aside there.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { asMap, bytesField, decodeFile, describe, encodeFile, numberField } from './cbor.ts'
import { CheckpointError, StorageError } from './errors.ts'
import { cidOf, cidOfDigest, isCid, sha256 } from './hash.ts'
import { decodeHeader, encodeHeader, FORMAT_VERSION, headerCid, signHeader, type CheckpointHeader, type Status } from './header.ts'
import type { Identity } from './identity.ts'
import { decodeGlobals, encodeDelta, encodeLive, type LiveCheckpoint } from './live.ts'
import { blobsDir, checkAgentName, entryFileName, historyDir, livePath, makePrivateDir, tickOfEntryName } from './layout.ts'
import { BlobStore, atomicWrite, testHooks, writeAll } from './store.ts'
import { MAX_PAGES, PAGE_SIZE, stateRoot, type GlobalValue } from './state.ts'

/**
 * The agent's state handed to {@link CheckpointWriter.write} by the runtime.
 * `pages` are `[index, 64 KiB]` for every non-zero page, ascending; `digests` the SHA-256 of each of
 * those pages (same indices, same order); `changed` the page indices changed since the previous
 * write of this writer (null = all); `globals` ascending by index.
 */
export interface Snapshot {
  pageCount: number; pages: [number, Uint8Array][]; digests: [number, Uint8Array][]
  changed: number[] | null /* page indices changed since the previous write; null = all */
  globals: GlobalValue[]
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
  /** path of the history entry written */
  entryFile: string
  /** blobs + history entry, ms */
  archiveMs: number
  /** live file, ms */
  liveMs: number
  /** the live file was rewritten whole (first write of this writer, or a compaction); else a delta record was appended */
  liveCompacted: boolean
  /** size of the live file after the write, bytes */
  liveBytes: number
}

/**
 * The live file is rewritten whole (compacted) when appending would leave more dead bytes (bytes
 * beyond the size of a whole copy) than this many times the size of a whole copy.
 */
export const COMPACT_RATIO = 1

/**
 * A checkpoint that changes at most this many pages stores them as 4 KiB chunks, zstd-compressed
 * (docs/FORMAT.md "Blob store"); one that changes more stores whole pages uncompressed.
 */
export const FINE_GRAIN_PAGES = 16

/** A decoded history entry (see docs/FORMAT.md). `pages` rows are `[index, cid | null]` ascending. */
export interface HistoryEntry {
  headerBytes: Uint8Array; sig: Uint8Array; parsed: CheckpointHeader; base: boolean
  pageCount: number; pages: [number, string | null][]; globals: GlobalValue[]
}

const ENTRY_FIELDS = ['sig', 'base', 'pages', 'header', 'globals', 'pageCount'] as const

export { entryFileName } from './layout.ts'

/**
 * Bytes of a history entry: tag 55799 + canonical CBOR `{sig, base, pages, header, globals, pageCount}`.
 */
export function encodeEntry (e: Omit<HistoryEntry, 'parsed'>): Uint8Array {
  return encodeFile({
    header: e.headerBytes,
    sig: e.sig,
    base: e.base,
    pageCount: e.pageCount,
    pages: e.pages,
    globals: e.globals.map((g) => [g.index, g.type, g.bytes]),
  })
}

/**
 * Decodes a history entry and checks its shape and its header's fields (not the signature).
 * @throws CheckpointError `<file>: …` naming the field at fault.
 */
export function decodeEntry (bytes: Uint8Array, file: string): HistoryEntry {
  const m = asMap(decodeFile(bytes, file), file, 'history entry', ENTRY_FIELDS)
  const headerBytes = bytesField(m, 'header', file)
  const sig = bytesField(m, 'sig', file, 64)
  if (typeof m.base !== 'boolean') throw new CheckpointError(`${file}: field "base" must be true or false, got ${describe(m.base)}`)
  const base = m.base
  const pageCount = numberField(m, 'pageCount', file, MAX_PAGES)
  if (!Array.isArray(m.pages)) throw new CheckpointError(`${file}: field "pages" must be an array, got ${describe(m.pages)}`)
  const pages: [number, string | null][] = new Array(m.pages.length)
  let last = -1
  for (let k = 0; k < m.pages.length; k++) {
    const e = m.pages[k]
    if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'number') throw new CheckpointError(`${file}: field "pages" entries must be [index, cid or null]`)
    const i = e[0]; const c = e[1]
    if (i <= last || i >= MAX_PAGES) throw new CheckpointError(`${file}: page ${i} out of order or out of range in the page table`)
    if (c === null) {
      if (base) throw new CheckpointError(`${file}: base entry lists page ${i} as null`)
    } else {
      if (!isCid(c)) throw new CheckpointError(`${file}: page ${i} has no valid CID in the page table`)
      if (i >= pageCount) throw new CheckpointError(`${file}: page ${i} is outside memory of ${pageCount} pages`)
    }
    last = i
    pages[k] = [i, c]
  }
  const globals = decodeGlobals(m.globals, file)
  const parsed = decodeHeader(headerBytes, file)
  return { headerBytes, sig, parsed, base, pageCount, pages, globals }
}

function ms (t0: number): number { return performance.now() - t0 }

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
  /** page table of the last entry written: index → page CID */
  #table: Map<number, string> | null = null
  #pageCount = 0
  /** the live file this writer last wrote whole (inode, device, size now), and its size when written whole */
  #liveFile: { ino: number; dev: number; size: number } | null = null
  #liveWhole = 0
  #code: { bytes: Uint8Array; length: number; cid: string } | null = null
  #manifest: { bytes: Uint8Array; length: number; cid: string } | null = null

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
   * @returns the header, its signed bytes and its CID (the next checkpoint's `prev`).
   * @throws CheckpointError for an inconsistent snapshot or header field; StorageError on I/O
   *   failure (the previous live checkpoint is then still intact).
   */
  write (a: WriteArgs): { header: CheckpointHeader; headerBytes: Uint8Array; cid: string } {
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
    const state = stateRoot({ pages: s.pageCount, digests: s.digests, globals: s.globals, fuel: a.fuel, budget: a.budget })

    // 1. blobs (renames made durable by one directory fsync below)
    let blobsWritten = 0; let pageBlobsWritten = 0
    const code = this.#cidOf('#code', a.wasm)
    const manifest = this.#cidOf('#manifest', a.manifest)
    let logCid: string | null = null
    if (a.log !== null) {
      const r = this.blobs.putEx(a.log, undefined, false, { compress: true })
      logCid = r.cid; if (r.written) blobsWritten++
    }
    let ioCid: string | undefined
    if (a.io != null) {
      const r = this.blobs.putEx(a.io, undefined, false, { compress: true })
      ioCid = r.cid; if (r.written) blobsWritten++
    }
    const base = this.#table === null
    const table = base ? new Map<number, string>() : this.#table!
    const rows: [number, string | null][] = []
    // a few changed pages are stored as 4 KiB chunks, compressed (history growth O(changed chunks));
    // many (a base entry, a full rewrite of memory) as they are (speed O(memory), no extra hashing)
    const fine = !base && s.changed !== null && s.changed.length <= FINE_GRAIN_PAGES
    const putPage = (k: number, cid?: string): string => {
      const r = this.blobs.putEx(s.pages[k][1], s.digests[k][1], false, { chunk: fine, compress: fine, loose: false, ...(cid === undefined ? {} : { cid }) })
      if (r.written) { blobsWritten++; pageBlobsWritten++ }
      return r.cid
    }
    if (base || s.changed === null) {
      const next = new Map<number, string>()
      for (let k = 0; k < s.pages.length; k++) {
        const i = s.pages[k][0]
        const cid = base ? putPage(k) : cidOfDigest(s.digests[k][1])
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
          if (table.get(i) !== cid) { putPage(k, cid); table.set(i, cid); rows.push([i, cid]) }
        } else if (table.has(i)) { table.delete(i); rows.push([i, null]) }
      }
      if (s.pageCount < this.#pageCount) for (const i of [...table.keys()]) if (i >= s.pageCount) { table.delete(i); rows.push([i, null]) }
      rows.sort((x, y) => x[0] - y[0])
    }
    try { this.blobs.sync() } catch (e) { this.#table = null; throw e }

    // 2. header, signature, history entry
    const header: CheckpointHeader = {
      v: FORMAT_VERSION, agent: a.identity.did, code, manifest, tick: a.tick, epoch: a.epoch, prev: a.prev,
      state, log: logCid, fuel: a.fuel, budget: a.budget, price: a.price, host: a.host, time: a.time ?? Date.now(), status: a.status,
      ...(a.target === undefined ? {} : { target: a.target }), ...(a.reason === undefined ? {} : { reason: a.reason }), ...(ioCid === undefined ? {} : { io: ioCid }),
    }
    const headerBytes = encodeHeader(header)
    const sig = signHeader(a.identity, headerBytes)
    const cid = headerCid(headerBytes)
    const entryFile = path.join(this.historyDir, entryFileName(a.tick, cid))
    const entry = encodeEntry({ headerBytes, sig, base, pageCount: s.pageCount, pages: rows, globals: s.globals })
    const t1 = performance.now()

    // 3. live file, then 4. the history entry. Until the entry is written the live file is one step
    // ahead of the history, which ensureArchived repairs on resume; the other order would let a copy
    // of the (older) live file resumed elsewhere fork the history at the orphaned entry.
    let compacted = false
    try {
      const delta = base ? null : encodeDelta({ header: headerBytes, sig, pageCount: s.pageCount, pages: rows.map(([i, c]): [number, Uint8Array | null] => [i, c === null ? null : s.pages[findPage(s.pages, i)][1]]), globals: s.globals, log: a.log, io: a.io ?? null })
      compacted = this.#writeLive(delta, () => encodeLive({ header: headerBytes, sig, wasm: a.wasm, manifest: a.manifest, pageCount: s.pageCount, pages: s.pages, globals: s.globals, log: a.log, seed: a.identity.seed, io: a.io ?? null }))
      const t2 = performance.now()
      atomicWrite(entryFile, entry)
      this.lastStats = { base, blobsWritten, pageBlobsWritten, entryPages: rows.length, entryFile, archiveMs: t1 - t0 + ms(t2), liveMs: t2 - t1, liveCompacted: compacted, liveBytes: this.#liveFile?.size ?? 0 }
    } catch (e) {
      this.#table = null // the in-memory table may no longer match the last entry on disk: next write is a base
      this.#closeLive() // and the live file is rewritten whole
      throw e
    }
    this.#pageCount = s.pageCount
    return { header, headerBytes, cid }
  }

  /**
   * Writes the live file: appends `delta` (one fdatasync) when this writer wrote the file it finds
   * there and the dead bytes stay within {@link COMPACT_RATIO} × the size of a whole copy; else
   * (the first write of this writer, a base entry, a file replaced or grown by someone else, or
   * too many dead bytes) writes the whole checkpoint from `whole()` atomically (compaction).
   * @returns true when the file was rewritten whole.
   * @throws StorageError on I/O failure.
   */
  #writeLive (delta: Uint8Array[] | null, whole: () => Uint8Array[]): boolean {
    if (delta !== null && this.#liveFile !== null) {
      const n = delta.reduce((k, c) => k + c.length, 0)
      if (this.#liveFile.size + n - this.#liveWhole <= COMPACT_RATIO * this.#liveWhole) {
        // opened for each append (no descriptor held between checkpoints), and only while it is
        // still the file this writer left
        let fd: number | null = null
        try { fd = fs.openSync(this.livePath, 'a') } catch { /* gone: rewrite */ }
        if (fd !== null) {
          try {
            const st = fs.fstatSync(fd)
            if (st.ino === this.#liveFile.ino && st.dev === this.#liveFile.dev && st.size === this.#liveFile.size) {
              if (testHooks.beforeRename !== null) testHooks.beforeRename(this.livePath, this.livePath)
              try {
                writeAll(fd, delta)
                fs.fdatasyncSync(fd)
              } catch (e) { throw new StorageError(`${this.livePath}: cannot append the checkpoint: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
              this.#liveFile.size += n
              return false
            }
          } finally { fs.closeSync(fd) }
        }
      }
    }
    this.#liveFile = null
    const chunks = whole()
    atomicWrite(this.livePath, chunks, 0o600)
    this.#liveWhole = chunks.reduce((k, c) => k + c.length, 0)
    try { const st = fs.statSync(this.livePath); this.#liveFile = { ino: st.ino, dev: st.dev, size: this.#liveWhole } } catch { /* appended to next time only if found */ }
    return true
  }

  #closeLive (): void { this.#liveFile = null }

  /** Drops what this writer holds between checkpoints (queued blobs); nothing stays open. */
  close (): void { this.#closeLive(); this.blobs.close() }

  /**
   * Makes sure the checkpoint being resumed is in this directory's history (a base entry plus its
   * blobs are written when it is missing, e.g. after copying the `.ckpt` to a new machine), and sets
   * aside (renames to `.orphan-<file>`, which verify ignores) a single history entry that a crash
   * left after it: the only entry past `live`'s tick, whose `prev` is `live`. Does not touch the
   * live file.
   * @throws StorageError on I/O failure.
   */
  ensureArchived (live: LiveCheckpoint): void {
    const cid = headerCid(live.header)
    const tick = live.parsed.tick
    const file = path.join(this.historyDir, entryFileName(tick, cid))
    let names: string[]
    try { names = fs.readdirSync(this.historyDir) } catch (e) { throw new StorageError(`${this.historyDir}: cannot list: ${(e as NodeJS.ErrnoException).code ?? e}`) }
    const later = names.filter((n) => (tickOfEntryName(n) ?? -1) > tick)
    if (later.length === 1) {
      const p = path.join(this.historyDir, later[0])
      try {
        const e = decodeEntry(fs.readFileSync(p), p)
        if (e.parsed.prev === cid) fs.renameSync(p, path.join(this.historyDir, `.orphan-${later[0]}`))
      } catch { /* unreadable: leave it for verify to report */ }
    }
    if (fs.existsSync(file)) {
      // archived: its blobs are durable, so this writer's puts can skip them
      const p = live.parsed
      const pages = live.digests !== undefined ? live.digests.map(([, d]) => cidOfDigest(d)) : live.pages.map(([, pg]) => cidOf(pg))
      this.blobs.noteKnown([p.code, p.manifest, ...(p.log === null ? [] : [p.log]), ...(p.io === undefined ? [] : [p.io]), ...pages])
      return
    }
    this.#cidOf('#code', live.wasm)
    this.#cidOf('#manifest', live.manifest)
    if (live.log !== null) this.blobs.putEx(live.log, undefined, false)
    if (live.io !== null) this.blobs.putEx(live.io, undefined, false)
    const rows: [number, string][] = []
    const digests = new Map(live.digests ?? [])
    for (const [i, page] of live.pages) {
      const d = digests.get(i) ?? sha256(page)
      rows.push([i, this.blobs.putEx(page, d, false).cid])
    }
    this.blobs.sync()
    atomicWrite(file, encodeEntry({ headerBytes: live.header, sig: live.sig, base: true, pageCount: live.pageCount, pages: rows, globals: live.globals }))
  }
}
