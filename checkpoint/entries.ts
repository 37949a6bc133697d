/**
 * History entries (docs/FORMAT.md "History"): their bytes (canonical CBOR, RFC 8949, tag 55799),
 * and reading them from a history directory, whatever files hold them — segments
 * (checkpoint/segment.ts) or, in histories written before segments, one `.cbor` file per entry.
 */
import * as fs from 'node:fs'
import { asMap, bytesField, decodeFile, describe, encodeFile, numberField, putBytes, putHead, putText } from './cbor.ts'
import { CheckpointError, StorageError } from './errors.ts'
import { isCid } from './hash.ts'
import { decodeHeader, type CheckpointHeader } from './header.ts'
import { decodeGlobals } from './live.ts'
import { historyFiles, SEGMENT_EXT } from './layout.ts'
import { FRAME_HEAD_BYTES, FRAME_MAGIC, frameEntry, MAX_ENTRY_BYTES, readHistoryFile, type StoredEntry } from './segment.ts'
import { MAX_PAGES, type GlobalValue } from './state.ts'

/** A decoded history entry (see docs/FORMAT.md). `pages` rows are `[index, cid | null]` ascending. */
export interface HistoryEntry {
  headerBytes: Uint8Array; sig: Uint8Array; parsed: CheckpointHeader; base: boolean
  pageCount: number; pages: [number, string | null][]; globals: GlobalValue[]
}

const ENTRY_FIELDS = ['sig', 'base', 'pages', 'header', 'globals', 'pageCount'] as const

/** Appends CBOR heads and items of a history entry to one buffer (see {@link encodeEntry}). */
class EntryBytes {
  readonly b: Buffer
  p = 0
  constructor (size: number) { this.b = Buffer.allocUnsafe(size) }
  head (major: number, n: number): void { this.p = putHead(this.b, this.p, major, n) }
  text (s: string): void { this.p = putText(this.b, this.p, s) }
  bytes (x: Uint8Array): void { this.p = putBytes(this.b, this.p, x) }
}

const u32 = (n: unknown): boolean => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n < 0x100000000

/**
 * Bytes of a history entry: tag 55799 + canonical CBOR `{sig, base, pages, header, globals, pageCount}`.
 * Framed by hand (one buffer, no intermediate objects: one entry per checkpoint) when every
 * number is below 2^32, byte strings are Uint8Arrays and rows hold strings or null — always, for
 * what the writer makes; anything else goes through the generic canonical encoder. Same bytes
 * either way (test/writer.test.ts).
 */
export function encodeEntry (e: Omit<HistoryEntry, 'parsed'>): Uint8Array {
  let size = 64 + e.headerBytes.length + e.sig.length
  let plain = e.headerBytes instanceof Uint8Array && e.sig instanceof Uint8Array && typeof e.base === 'boolean' && u32(e.pageCount) && Array.isArray(e.pages) && Array.isArray(e.globals)
  for (let k = 0; plain && k < e.pages.length; k++) {
    const r = e.pages[k]
    if (!Array.isArray(r) || r.length !== 2 || !u32(r[0]) || (r[1] !== null && typeof r[1] !== 'string')) plain = false
    else size += 16 + (r[1] === null ? 0 : 3 * r[1].length)
  }
  for (let k = 0; plain && k < e.globals.length; k++) {
    const g = e.globals[k]
    if (!u32(g.index) || typeof g.type !== 'string' || !(g.bytes instanceof Uint8Array)) plain = false
    else size += 16 + 3 * g.type.length + g.bytes.length
  }
  if (plain) {
    const w = new EntryBytes(size)
    w.b[0] = 0xd9; w.b[1] = 0xd9; w.b[2] = 0xf7; w.b[3] = 0xa6; w.p = 4 // tag 55799, map(6): keys in canonical order
    w.text('sig'); w.bytes(e.sig)
    w.text('base'); w.b[w.p++] = e.base ? 0xf5 : 0xf4
    w.text('pages'); w.head(4, e.pages.length)
    for (const [i, c] of e.pages) { w.b[w.p++] = 0x82; w.head(0, i); if (c === null) w.b[w.p++] = 0xf6; else w.text(c) }
    w.text('header'); w.bytes(e.headerBytes)
    w.text('globals'); w.head(4, e.globals.length)
    for (const g of e.globals) { w.b[w.p++] = 0x83; w.head(0, g.index); w.text(g.type); w.bytes(g.bytes) }
    w.text('pageCount'); w.head(0, e.pageCount)
    return w.b.subarray(0, w.p)
  }
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

/**
 * The entries of history directory `dir`, newest first: its files by name from the last (the
 * tick of their first entry, descending), the frames of a segment from its last. Stops where the
 * caller stops iterating, so a caller after the newest checkpoints reads only the newest files.
 * A segment's damaged bytes and torn tail are skipped (verify reports them).
 * @throws the raw errno error when `dir` cannot be listed (ENOENT when it does not exist);
 *   StorageError `<file>: cannot read: …` when a file listed cannot be read (one deleted
 *   meanwhile is skipped).
 */
export function * newestFirst (dir: string): Generator<StoredEntry> {
  const files = historyFiles(dir)
  for (let f = files.length - 1; f >= 0; f--) {
    const r = readListed(files[f])
    if (r !== null) for (let k = r.entries.length - 1; k >= 0; k--) yield r.entries[k]
  }
}

/** {@link readHistoryFile} of a file a listing gave: null when it was deleted since. @throws StorageError when it exists and cannot be read. */
function readListed (file: string): ReturnType<typeof readHistoryFile> | null {
  try { return readHistoryFile(file) } catch (e) { if (!fs.existsSync(file)) return null; throw e }
}

/**
 * The bytes of the entry at `at` in history file `file` (`at` null: an entry file, all of it; else
 * the offset of a segment frame, as {@link StoredEntry} gives it).
 * @throws StorageError `<file>: cannot read: …`; CheckpointError `<file>@<at>: not an intact history frame` when no intact frame is there.
 */
export function readEntryAt (file: string, at: number | null): Uint8Array {
  if (at === null || !file.endsWith(SEGMENT_EXT)) {
    try { return fs.readFileSync(file) } catch (e) { throw new StorageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`) }
  }
  let fd: number
  try { fd = fs.openSync(file, 'r') } catch (e) { throw new StorageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`) }
  try {
    const head = Buffer.alloc(FRAME_HEAD_BYTES)
    const bad = () => new CheckpointError(`${file}@${at}: not an intact history frame`)
    if (fs.readSync(fd, head, 0, FRAME_HEAD_BYTES, at) !== FRAME_HEAD_BYTES || !FRAME_MAGIC.every((x, k) => head[k] === x)) throw bad()
    const n = head.readUInt32BE(4)
    if (n === 0 || n > MAX_ENTRY_BYTES) throw bad()
    const all = Buffer.alloc(FRAME_HEAD_BYTES + n)
    head.copy(all)
    if (fs.readSync(fd, all, FRAME_HEAD_BYTES, n, at + FRAME_HEAD_BYTES) !== n) throw bad()
    const entry = frameEntry(all, 0)
    if (entry === null) throw bad()
    return entry
  } catch (e) {
    if (e instanceof CheckpointError) throw e
    throw new StorageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`)
  } finally { fs.closeSync(fd) }
}

/**
 * Every entry of history directory `dir`, oldest file first (segments' frames in file order), and
 * what a reader should report about its files (see {@link readHistoryFile}: damaged segment bytes,
 * a file that is not a segment).
 * @throws the raw errno error when `dir` cannot be listed; StorageError `<file>: cannot read: …`
 *   when a file listed cannot be read (one deleted meanwhile is skipped).
 */
export function readEntries (dir: string): { entries: StoredEntry[]; problems: string[] } {
  const entries: StoredEntry[] = []
  const problems: string[] = []
  for (const file of historyFiles(dir)) {
    const r = readListed(file)
    if (r === null) continue
    for (const e of r.entries) entries.push(e) // (a spread of thousands of arguments could overflow the stack)
    problems.push(...r.problems)
  }
  return { entries, problems }
}
