/**
 * History segments: the files that hold an agent's history entries (docs/FORMAT.md "History").
 *
 * A writer appends every entry it writes to one segment file `<dir>/history/<name>/<tick:012>-<header
 * cid>-<tag>.hist`, named after the segment's first entry and a random tag (checkpoint/layout.ts
 * `segmentFileName`), and starts a new one past
 * {@link SEGMENT_MAX_BYTES}. Layout: the 8-byte magic {@link SEGMENT_MAGIC}, then frames:
 *
 * | bytes | |
 * |---|---|
 * | 4 | {@link FRAME_MAGIC} `"HENT"` |
 * | 4 | entry length n, unsigned big-endian, 1 ≤ n ≤ {@link MAX_ENTRY_BYTES} |
 * | 4 | CRC-32 (ISO-HDLC, as zlib; RFC 1952) of the 4 length bytes followed by the entry, big-endian |
 * | n | the entry: exactly the bytes an entry file `<tick:012>-<cid>.cbor` holds (CBOR, tag 55799) |
 *
 * Frames are appended without a sync (the live file's records cover them until the writer's next
 * sync point), so after a kill or a power cut a segment may end in a **torn tail**: bytes from
 * which no intact frame follows and that look like what a crash leaves — a frame cut short (its
 * head, or a length running past the end of the file) or a file ending in zero bytes (pages a
 * power cut did not write). Readers skip it and a resume cuts it off. Other bytes that are not an
 * intact frame are **damaged** (bit rot, or an interrupted write whose pages reached the disk out
 * of order): readers find the next frame by its magic and report the bytes in between, or up to
 * the end of the file (a damaged tail, which a resume cuts only when the live file proves it was
 * never synced: checkpoint/writer.ts). Histories written before segments hold one entry per
 * `<tick:012>-<cid>.cbor` file; both are read (layout.ts `historyFiles`, {@link readHistoryFile}).
 */
import * as fs from 'node:fs'
import * as zlib from 'node:zlib'
import { CheckpointError, StorageError } from './errors.ts'
import { SEGMENT_EXT } from './layout.ts'

/** A segment file's first 8 bytes: `"IGORDHS"` and the segment version, 1. */
export const SEGMENT_MAGIC = Uint8Array.from([0x49, 0x47, 0x4f, 0x52, 0x44, 0x48, 0x53, 0x01])
/** The 4 bytes starting every frame: `"HENT"`. */
export const FRAME_MAGIC = Uint8Array.from([0x48, 0x45, 0x4e, 0x54])
/** Bytes of a frame's head: magic, length, CRC-32. */
export const FRAME_HEAD_BYTES = 12
/** Largest entry a frame may hold, bytes (a base entry of 65,536 pages is ~4.5 MiB; the rest is globals). */
export const MAX_ENTRY_BYTES = 64 * 1024 * 1024
/** A writer starts a new segment once its current one reaches this size, bytes (~10,000 heartbeat checkpoints: a few files per agent). */
export const SEGMENT_MAX_BYTES = 4 * 1024 * 1024

/** The 12-byte head of the frame holding `entry` (see the module doc). @throws CheckpointError for an empty entry or one over {@link MAX_ENTRY_BYTES}. */
export function frameHead (entry: Uint8Array): Uint8Array {
  if (entry.length === 0 || entry.length > MAX_ENTRY_BYTES) throw new CheckpointError(`history entry of ${entry.length} bytes cannot be framed (1 to ${MAX_ENTRY_BYTES})`)
  const h = new Uint8Array(FRAME_HEAD_BYTES)
  const v = new DataView(h.buffer)
  h.set(FRAME_MAGIC, 0)
  v.setUint32(4, entry.length)
  v.setUint32(8, zlib.crc32(entry, zlib.crc32(h.subarray(4, 8))))
  return h
}

/** One entry read from a history file: its bytes (a view into the file's), and where it is: `at` its frame's offset in a segment, null for an entry file. */
export interface StoredEntry {
  file: string
  at: number | null
  bytes: Uint8Array
}

/**
 * What {@link scanSegment} found: the entries (frame offset, entry bytes), `damaged` byte ranges
 * `[from, to)` that are not frames but are followed by one, and `tail`, the offset of a torn tail
 * (no complete frame from there to the end; null when the file ends with a frame).
 */
export interface SegmentScan {
  entries: { at: number; bytes: Uint8Array }[]; damaged: [number, number][]; tail: number | null
  /** the file offset reading started at: `base` (0: the whole file), with `resync` the first intact frame (null when there is none) */
  start?: number | null
}

/**
 * The entry of the frame at byte `at` of `b` when a complete, intact frame starts there (magic,
 * length within bounds and within `b`, CRC-32), else null.
 */
export function frameEntry (b: Uint8Array, at: number): Uint8Array | null {
  return frameAt(b, new DataView(b.buffer, b.byteOffset, b.byteLength), at)
}

function frameAt (b: Uint8Array, v: DataView, at: number): Uint8Array | null {
  if (at + FRAME_HEAD_BYTES > b.length) return null
  for (let k = 0; k < 4; k++) if (b[at + k] !== FRAME_MAGIC[k]) return null
  const n = v.getUint32(at + 4)
  if (n === 0 || n > MAX_ENTRY_BYTES || at + FRAME_HEAD_BYTES + n > b.length) return null
  const entry = b.subarray(at + FRAME_HEAD_BYTES, at + FRAME_HEAD_BYTES + n)
  return zlib.crc32(entry, zlib.crc32(b.subarray(at + 4, at + 8))) === v.getUint32(at + 8) ? entry : null
}

/**
 * True when the bytes of `b` from `at` on (no intact frame among them) look like what a crash
 * leaves after the last intact frame: fewer bytes than a frame head, a frame head (or a prefix of
 * its magic) whose length runs past the end, or a last byte 0 (a power cut's unwritten pages read
 * as zeros; an entry ends with its `pageCount`, 0 only for an agent without memory).
 */
function tornAt (b: Uint8Array, v: DataView, at: number): boolean {
  if (b[b.length - 1] === 0) return true
  const rest = b.length - at
  for (let k = 0; k < Math.min(4, rest); k++) if (b[at + k] !== FRAME_MAGIC[k]) return false
  return rest < 8 || at + FRAME_HEAD_BYTES + v.getUint32(at + 4) > b.length
}

/**
 * Reads the frames of a segment's bytes `b` (see the module doc): from each position that is not an
 * intact frame, looks for the next one by its magic. With `base` > 0, `b` holds the file's bytes
 * from offset `base` (where a frame starts: the end of one read before), and offsets are the file's;
 * with `resync` too, `base` may be anywhere: the bytes before the first intact frame are not read.
 * @throws CheckpointError `<file>: not a history segment …` when `b` does not start with
 *   {@link SEGMENT_MAGIC} (or names another segment version) — unless `b` is shorter than it and a
 *   prefix of it or zeros (a file whose creation a crash cut short: all torn tail).
 */
export function scanSegment (b: Uint8Array, file: string, base = 0, resync = false): SegmentScan {
  const out: SegmentScan = { entries: [], damaged: [], tail: null }
  const m = base === 0 ? SEGMENT_MAGIC.length : 0
  for (let k = 0; k < Math.min(m, b.length); k++) {
    if (b[k] !== SEGMENT_MAGIC[k]) {
      if (k === m - 1 && b.subarray(0, m - 1).every((x, j) => x === SEGMENT_MAGIC[j])) throw new CheckpointError(`${file}: unsupported history segment version ${b[k]} (this igord reads ${SEGMENT_MAGIC[m - 1]})`)
      if (b.length < m && b.subarray(k).every((x) => x === 0)) { out.tail = 0; return out } // created, then zeroed by a power cut
      throw new CheckpointError(`${file}: not a history segment (no IGORDHS magic)`)
    }
  }
  if (b.length < m) { out.tail = 0; return out }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  /** The offset of the first intact frame after `at`, found by its magic; -1 when none. */
  const nextIntact = (at: number): number => {
    let next = buf.indexOf(FRAME_MAGIC, at + 1)
    while (next >= 0 && frameAt(b, v, next) === null) next = buf.indexOf(FRAME_MAGIC, next + 1)
    return next
  }
  let at = m
  if (resync && base > 0 && frameAt(b, v, 0) === null) {
    // `b` starts anywhere in the file: its first intact frame is where reading starts
    at = nextIntact(0)
    if (at < 0) return { entries: [], damaged: [], tail: null, start: null }
  }
  out.start = base + (resync ? at : 0)
  while (at < b.length) {
    const e = frameAt(b, v, at)
    if (e !== null) { out.entries.push({ at: base + at, bytes: e }); at += FRAME_HEAD_BYTES + e.length; continue }
    // not a frame: the next intact one, if any, ends the damage; none: a torn tail
    const next = nextIntact(at)
    if (next < 0) {
      if (tornAt(b, v, at)) out.tail = base + at; else out.damaged.push([base + at, base + b.length])
      break
    }
    out.damaged.push([base + at, base + next])
    at = next
  }
  return out
}

/**
 * Reads one history file: the entries of a segment (intact frames), or the whole of an entry file
 * as one entry. `problems` names what a reader should report: damaged bytes of a segment (also
 * given as ranges, `damaged`), and a file that is not a segment (a torn tail is not one: it is what a power cut leaves before the
 * agent's next resume cuts it, or a frame being appended). `end`: where the next frame of a
 * segment would start (its torn tail, else its size). With `from` > 0, only a segment's frames
 * from that offset are read (the `end` of an earlier read: how a follower reads what was appended).
 * With `last`, only a segment's last `last` bytes are read (when they are not all of it from
 * `from`), from the first intact frame in them on: `start` is where that is (0 or `from` when all
 * was read; null when those bytes hold no intact frame: read more).
 * @throws StorageError `<file>: cannot read: <code>` when the file cannot be read.
 */
export function readHistoryFile (file: string, from = 0, last?: number): { entries: StoredEntry[]; problems: string[]; damaged: [number, number][]; tail: number | null; end: number; start: number | null } {
  let bytes: Uint8Array
  let resync = false
  try {
    if (from === 0 && last === undefined) bytes = fs.readFileSync(file)
    else {
      const fd = fs.openSync(file, 'r')
      try {
        const size = fs.fstatSync(fd).size
        if (last !== undefined && size - last > from) { from = size - last; resync = true }
        bytes = Buffer.alloc(Math.max(0, size - from))
        let n = 0
        while (n < bytes.length) { const k = fs.readSync(fd, bytes, n, bytes.length - n, from + n); if (k === 0) break; n += k }
        bytes = bytes.subarray(0, n)
      } finally { fs.closeSync(fd) }
    }
  } catch (e) { throw new StorageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`) }
  if (!file.endsWith(SEGMENT_EXT)) return { entries: [{ file, at: null, bytes }], problems: [], damaged: [], tail: null, end: bytes.length, start: 0 }
  let s: SegmentScan
  try { s = scanSegment(bytes, file, from, resync) } catch (e) { return { entries: [], problems: [(e as Error).message], damaged: [], tail: null, end: from, start: null } }
  return {
    entries: s.entries.map(({ at, bytes }) => ({ file, at, bytes })),
    problems: s.damaged.map(([from, to]) => `${file}: bytes ${from}–${to} are damaged (not a history frame)`),
    damaged: s.damaged,
    tail: s.tail,
    end: s.tail ?? from + bytes.length,
    start: s.start ?? null,
  }
}

/** How an entry is named in messages: its file, and for a segment its frame's offset (`<file>@<offset>`). */
export function entryWhere (e: { file: string; at: number | null }): string {
  return e.at === null ? e.file : `${e.file}@${e.at}`
}
