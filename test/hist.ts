/**
 * Test helpers for history directories: a writer appends entries to segments
 * (checkpoint/segment.ts); histories written before segments hold one `.cbor` file per entry, which
 * every reader still reads. Tests that forge, delete, rename or corrupt single entries turn a
 * directory's segments into entry files first ({@link explode}), then work on files as before.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { decodeEntry, readEntries, type HistoryEntry } from '../checkpoint/entries.ts'
import { headerCid } from '../checkpoint/header.ts'
import { entryFileName, SEGMENT_EXT } from '../checkpoint/layout.ts'
import { entryWhere } from '../checkpoint/segment.ts'

/** One entry of a history directory, decoded: where it is (`file`, and `at` in a segment) and its tick and header CID. */
export interface TestEntry { file: string; at: number | null; where: string; bytes: Uint8Array; e: HistoryEntry; tick: number; cid: string }

/** Every entry of history directory `hist`, oldest file first, decoded. */
export function entriesIn (hist: string): TestEntry[] {
  return readEntries(hist).entries.map((s) => {
    const where = entryWhere(s)
    const e = decodeEntry(s.bytes, where)
    return { file: s.file, at: s.at, where, bytes: s.bytes, e, tick: e.parsed.tick, cid: headerCid(e.headerBytes) }
  })
}

/**
 * Rewrites history directory `hist` in the layout before segments: each entry of each segment
 * becomes its own file `<tick:012>-<cid>.cbor` (same bytes), and the segments are removed.
 * @returns the entry files, sorted.
 */
export function explode (hist: string): string[] {
  for (const t of entriesIn(hist)) if (t.at !== null) fs.writeFileSync(path.join(hist, entryFileName(t.tick, t.cid)), t.bytes, { mode: 0o600 })
  for (const n of fs.readdirSync(hist)) if (n.endsWith(SEGMENT_EXT)) fs.unlinkSync(path.join(hist, n))
  return entryFiles(hist)
}

/** The entry files (`<tick:012>-<cid>.cbor`, no dotfiles) of `hist`, sorted. */
export function entryFiles (hist: string): string[] {
  return fs.readdirSync(hist).filter((n) => n.endsWith('.cbor') && !n.startsWith('.')).sort().map((n) => path.join(hist, n))
}

/** The segments (`*.hist`) of `hist`, sorted. */
export function segmentFiles (hist: string): string[] {
  return fs.readdirSync(hist).filter((n) => n.endsWith(SEGMENT_EXT)).sort().map((n) => path.join(hist, n))
}
