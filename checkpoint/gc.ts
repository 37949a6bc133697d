/**
 * Retention (issue 10, docs/FORMAT.md "GC record", docs/RATIONALE.md "Retention: igord gc"):
 * drops the page blobs of checkpoints nobody needs to restore any more, keeping every history
 * entry and every event log, I/O state, code and manifest, so `verify` still proves the whole chain.
 *
 * What is kept, for one agent's history (its unforked segments in tick order, each starting with a
 * base entry — a history with a gap, where the agent lived elsewhere, is several; gc refuses a fork):
 * the pages (every page of the rebuilt page table, and the 4 KiB chunks of chunked pages) of
 * - every checkpoint at chain position `k` with `k % keepEvery === 0` (position from the chain's first
 *   entry, the genesis: positions never change because entries are never deleted);
 * - the last `keepLast` checkpoints (at least 1: the newest, which a running writer continues from);
 * - the first checkpoint of every segment, every handoff and the first checkpoint of every epoch;
 * - the checkpoint the live `.ckpt` holds and the one a pending arrival (`migrate/<name>.pending.ckpt`)
 *   holds, when in the history (a resume tells its writer those blobs are stored);
 * and no checkpoint the GC record already lists as pruned (its pages may be gone).
 *
 * How (crash-safe at every step, kill -9 included): the agent's packs (`<agent>+<hex>.pack`, all but
 * `excludePacks`) are merged into one new pack holding only the kept frames — written under a temp
 * name, fsynced, renamed into place, directory fsynced — then the GC record (`history/<name>/gc.json`,
 * the union of every pruned checkpoint's header CID) is written atomically, and only then are the old
 * packs unlinked and the loose page files (old layouts) no kept checkpoint and no other agent's history
 * names. A crash before the record leaves the old packs (a duplicate pack is harmless); after it, verify
 * skips the page bytes of checkpoints it lists, whether or not they are gone yet.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { randomBytes } from 'node:crypto'
import { IgordError, StorageError, EXIT } from './errors.ts'
import { cidOfDigest, isCid } from './hash.ts'
import { headerCid } from './header.ts'
import { blobsDir, gcRecordPath, historyDir, historyRoot, isAgentName, livePath, recordPaths } from './layout.ts'
import { CHUNKED_SIZE, CHUNK_SIZE, FRAME_CHUNKED, PACK_MAGIC, PackIndex, packOfAgent, newPackName, type PackSlot } from './pack.ts'
import { peekLive } from './peek.ts'
import { atomicWrite, fsyncDir, writeAll } from './store.ts'
import { decodeEntry, readEntries, type HistoryEntry } from './entries.ts'
import { entryWhere, type StoredEntry } from './segment.ts'

/** A history gc cannot work on (forked, gapped, unreadable entry): exit 6, like an INVALID verify. */
export class GcError extends IgordError {
  constructor (message: string) { super(message, EXIT.INVALID) }
}

/** What to keep and how much to do (see the module doc). */
export interface GcOptions {
  /** keep the pages of every checkpoint at chain position k with k % keepEvery === 0; 0: only the others below */
  keepEvery: number
  /** keep the pages of the newest `keepLast` checkpoints (at least 1 is always kept) */
  keepLast: number
  /** compute and report only; write and delete nothing */
  dryRun?: boolean
  /** pack file names (not paths) never rewritten nor deleted: a running writer's own pack */
  excludePacks?: ReadonlySet<string>
  /** merge at most this many packs per pass (oldest first by mtime; default all): bounded work */
  maxPacks?: number
  /** now, ISO text, for the record (tests) */
  time?: string
}

/**
 * What one gc pass did (or would do, `dryRun`). Bytes are apparent file sizes: `bytesBefore` /
 * `bytesAfter` the agent's packs plus the loose page files gc may delete; `blobsBytesBefore/After`
 * the whole `blobs/` folder.
 */
export interface GcReport {
  agent: string; did: string | null; dryRun: boolean
  checkpoints: number; kept: number; pruned: number; newlyPruned: number
  packsBefore: number; packsAfter: number; framesDropped: number; looseDeleted: number
  bytesBefore: number; bytesAfter: number; blobsBytesBefore: number; blobsBytesAfter: number
  record: string | null
}

/** The GC record `history/<name>/gc.json` (docs/FORMAT.md "GC record"). */
export interface GcRecord {
  v: 1
  /** the agent's DID (the history's) */
  agent: string
  /** header CIDs of the checkpoints whose pages gc may have deleted, sorted */
  pruned: string[]
  /** one line per pass that pruned something: ISO time, options, how many it added */
  runs: { time: string; keepEvery: number; keepLast: number; added: number }[]
}

/**
 * Reads a GC record; null when the file does not exist.
 * @throws GcError `<file>: not a GC record: …` when it exists but is malformed.
 */
export function readGcRecord (file: string): GcRecord | null {
  let text: string
  try { text = fs.readFileSync(file, 'utf8') } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new StorageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`)
  }
  let o: Partial<GcRecord>
  try { o = JSON.parse(text) as Partial<GcRecord> } catch (e) { throw new GcError(`${file}: not a GC record: ${(e as Error).message}`) }
  if (o === null || typeof o !== 'object' || o.v !== 1 || typeof o.agent !== 'string' || !Array.isArray(o.pruned) || !o.pruned.every(isCid) || !Array.isArray(o.runs)) {
    throw new GcError(`${file}: not a GC record (expected {"v":1,"agent","pruned":[header CIDs],"runs"})`)
  }
  return o as GcRecord
}

/** One checkpoint of the chain gc walks. */
interface Link { cid: string; entry: HistoryEntry; file: string }

/**
 * Decodes the entries of `hist` into its chain: one or more unforked segments, each starting with a
 * base entry (the genesis, or where the agent came back after living elsewhere), in tick order.
 * @throws GcError for an unreadable entry, a fork, or a segment starting with a delta entry
 */
function chainOf (hist: string): Link[] {
  let stored: StoredEntry[]
  try {
    const r = readEntries(hist)
    if (r.problems.length > 0) throw new GcError(`${r.problems[0]}: run igord verify; gc leaves a history it cannot read as it is`)
    stored = r.entries
  } catch (e) {
    if (e instanceof IgordError) throw e
    throw new StorageError(`${hist}: cannot list: ${(e as NodeJS.ErrnoException).code ?? e}`)
  }
  const byCid = new Map<string, Link>()
  for (const s of stored) {
    const file = entryWhere(s)
    let entry: HistoryEntry
    try { entry = decodeEntry(s.bytes, file) } catch (e) { throw new GcError(`${file}: cannot read the entry (${(e as Error).message}): run igord verify; gc leaves a history it cannot read as it is`) }
    const cid = headerCid(entry.headerBytes)
    const had = byCid.get(cid)
    if (had === undefined || (!had.entry.base && entry.base)) byCid.set(cid, { cid, entry, file })
  }
  const children = new Map<string, Link[]>()
  const roots: Link[] = []
  for (const l of byCid.values()) {
    const p = l.entry.parsed.prev
    if (p === null || !byCid.has(p)) { roots.push(l); continue }
    const c = children.get(p); if (c === undefined) children.set(p, [l]); else c.push(l)
  }
  if (roots.length === 0) throw new GcError(`${hist}: no history entries`)
  roots.sort((a, b) => a.entry.parsed.tick - b.entry.parsed.tick)
  const chain: Link[] = []
  for (const root of roots) {
    if (!root.entry.base) throw new GcError(`${root.file}: a delta entry whose previous checkpoint is not here: run igord verify; gc needs every segment to start with a base entry`)
    for (let l: Link | undefined = root; l !== undefined;) {
      chain.push(l)
      const c: Link[] = children.get(l.cid) ?? []
      if (c.length > 1) throw new GcError(`${hist}: the history forks after tick ${l.entry.parsed.tick}: run igord verify; gc refuses a forked history`)
      l = c[0]
    }
  }
  if (chain.length !== byCid.size) throw new GcError(`${hist}: the entries do not form one chain: run igord verify`)
  return chain
}

/** Header CID of the live checkpoint at `file`, or null when there is none or it cannot be read. */
function liveCid (file: string): string | null {
  if (!fs.existsSync(file)) return null
  try { return headerCid(peekLive(file).header) } catch { return null }
}

const sizeOf = (f: string): number => { try { return fs.statSync(f).size } catch { return 0 } }
const folderBytes = (d: string): number => { let n = 0; try { for (const f of fs.readdirSync(d)) n += sizeOf(path.join(d, f)) } catch { /* none */ } return n }

/** One frame found in a pack: where, its CID, kind and whole bytes (header and payload) offset. */
interface FrameRef { cid: string; slot: PackSlot }

/** Reads `len` bytes at `off` of `fd`. @throws StorageError */
function readAt (fd: number, off: number, len: number, file: string): Buffer {
  const b = Buffer.allocUnsafe(len)
  let n = 0
  while (n < len) {
    const r = fs.readSync(fd, b, n, len - n, off + n)
    if (r === 0) throw new StorageError(`${file}: cannot read: truncated at offset ${off + n}`)
    n += r
  }
  return b
}

/** Every CID other agents' histories in `dir` name (pages, code, manifests, logs, I/O states). */
function foreignCids (dir: string, name: string): Set<string> {
  const out = new Set<string>()
  let agents: string[] = []
  try { agents = fs.readdirSync(historyRoot(dir)) } catch { return out }
  for (const a of agents) {
    if (a === name) continue
    let stored: StoredEntry[]
    try {
      const r = readEntries(historyDir(dir, a))
      stored = r.entries
      if (r.problems.length > 0) out.add('*') // damaged bytes may have named anything: loose files are kept below by the caller's rule
    } catch { continue }
    for (const s of stored) {
      try {
        const e = decodeEntry(s.bytes, entryWhere(s))
        const p = e.parsed
        for (const c of [p.code, p.manifest, p.log, p.io]) if (typeof c === 'string') out.add(c)
        for (const [, c] of e.pages) if (c !== null) out.add(c)
      } catch { /* unreadable: its loose files are kept below by the caller's rule */ out.add('*') }
    }
  }
  return out
}

/**
 * Collects one agent's garbage in data directory `dir` (see the module doc). The caller holds the
 * agent's writer lock, or runs in the agent's own writer between checkpoints and passes its pack in
 * `excludePacks` (and forgets what its store knew afterwards: checkpoint/store.ts `forget`).
 * @returns what was (or, `dryRun`, would be) done
 * @throws GcError (exit 6) for a history that is not one readable chain; StorageError on I/O failure
 *   (nothing the kept checkpoints need has been deleted then)
 */
export function gcAgent (dir: string, name: string, opts: GcOptions): GcReport {
  const hist = historyDir(dir, name)
  const blobs = blobsDir(dir)
  const recordFile = gcRecordPath(dir, name)
  const chain = chainOf(hist)
  const did = chain[0].entry.parsed.agent
  const record = readGcRecord(recordFile)
  if (record !== null && record.agent !== did) throw new GcError(`${recordFile}: GC record of ${record.agent}, but the history is ${did}`)
  const prunedBefore = new Set(record?.pruned ?? [])
  const keepEvery = Math.max(0, Math.floor(opts.keepEvery))
  const keepLast = Math.max(1, Math.floor(opts.keepLast))

  // 1. which checkpoints keep their pages
  const pinned = new Set<string>()
  for (const f of [livePath(dir, name), recordPaths(dir, name).pendingCkpt]) { const c = liveCid(f); if (c !== null) pinned.add(c) }
  const keep: boolean[] = chain.map((l, k) => {
    const h = l.entry.parsed
    const prevLink = k > 0 ? chain[k - 1] : null
    const prev = prevLink === null ? null : { ...prevLink.entry.parsed, cid: prevLink.cid }
    return k === 0 || h.prev === null || (prev !== null && h.prev !== prev.cid) || (keepEvery > 0 && k % keepEvery === 0) || k >= chain.length - keepLast ||
      h.status === 'handoff' || (prev !== null && prev.epoch !== h.epoch) || pinned.has(l.cid)
  })

  // 2. the blobs they need, and every blob the history names (to know which loose files are pages)
  const kept = new Set<string>()
  const pages = new Set<string>()
  let table = new Map<number, string>()
  const newlyPruned: string[] = []
  for (let k = 0; k < chain.length; k++) {
    const e = chain[k].entry
    if (e.base) table = new Map()
    for (const [i, c] of e.pages) { if (c === null) table.delete(i); else { table.set(i, c); pages.add(c) } }
    for (const i of [...table.keys()]) if (i >= e.pageCount) table.delete(i)
    const p = e.parsed
    for (const c of [p.code, p.manifest, p.log, p.io]) if (typeof c === 'string') kept.add(c)
    if (keep[k] && !prunedBefore.has(chain[k].cid)) for (const c of table.values()) kept.add(c)
    else if (!prunedBefore.has(chain[k].cid)) newlyPruned.push(chain[k].cid)
  }

  // 3. the agent's packs and their frames
  const all = fs.existsSync(blobs) ? fs.readdirSync(blobs) : []
  const agentPacks = all.filter((n) => packOfAgent(n, name))
  let packs = agentPacks.filter((n) => !(opts.excludePacks?.has(n) ?? false))
  packs = packs.map((n) => ({ n, t: fs.statSync(path.join(blobs, n)).mtimeMs })).sort((a, b) => a.t - b.t || (a.n < b.n ? -1 : 1)).map((x) => x.n)
  if (opts.maxPacks !== undefined && packs.length > opts.maxPacks) packs = packs.slice(0, Math.max(1, opts.maxPacks))
  const frames: FrameRef[] = [] // of the packs this pass merges
  const others: FrameRef[] = [] // of the agent's other packs (a running writer's, those left for the next pass)
  for (const n of agentPacks) {
    const idx = new PackIndex(path.join(blobs, n))
    const into = packs.includes(n) ? frames : others
    idx.scan((cid, slot) => into.push({ cid, slot }))
  }
  // a page frame is dropped when the history names it as a page and no kept checkpoint needs it;
  // a chunk when it is a chunk of no kept page frame in any of the agent's packs (a chunked page
  // names chunks stored by earlier writers); anything else stays (e.g. the blobs of a checkpoint
  // whose entry a crash has not written yet, which the next resume archives)
  const chunksOf = new Map<string, string[]>()
  for (const f of [...frames, ...others]) {
    if (f.slot.kind !== FRAME_CHUNKED || f.slot.len !== 32 * (CHUNKED_SIZE / CHUNK_SIZE) || chunksOf.has(f.cid)) continue
    const fd = fs.openSync(f.slot.pack.file, 'r')
    try {
      const d = readAt(fd, f.slot.off, f.slot.len, f.slot.pack.file)
      const cs: string[] = []
      for (let j = 0; j < d.length; j += 32) { const x = d.subarray(j, j + 32); if (x.some((v) => v !== 0)) cs.push(cidOfDigest(x)) }
      chunksOf.set(f.cid, cs)
    } finally { fs.closeSync(fd) }
  }
  const keepPage = (cid: string): boolean => kept.has(cid) || !pages.has(cid)
  const chunkKeep = new Set<string>()
  const anyChunk = new Set<string>()
  for (const [page, cs] of chunksOf) for (const c of cs) { anyChunk.add(c); if (keepPage(page)) chunkKeep.add(c) }
  const keepFrame = (cid: string): boolean => anyChunk.has(cid) && !pages.has(cid) && !kept.has(cid) ? chunkKeep.has(cid) : keepPage(cid)
  const out: FrameRef[] = []
  const seen = new Set<string>()
  let dropped = 0
  for (const f of frames) {
    if (seen.has(f.cid)) continue
    seen.add(f.cid)
    if (keepFrame(f.cid)) out.push(f); else dropped++
  }
  dropped += frames.length - seen.size // duplicates

  // 4. loose page files no kept checkpoint and no other agent names
  const foreign = pages.size > 0 ? foreignCids(dir, name) : new Set<string>()
  const loose = foreign.has('*') ? [] : all.filter((n) => isCid(n) && pages.has(n) && !kept.has(n) && !foreign.has(n))

  const packBytes = packs.reduce((k, n) => k + sizeOf(path.join(blobs, n)), 0)
  const looseBytes = loose.reduce((k, n) => k + sizeOf(path.join(blobs, n)), 0)
  const blobsBytesBefore = folderBytes(blobs)
  const mergedBytes = out.reduce((k, f) => k + 37 + f.slot.len, PACK_MAGIC.length)
  const rewrite = packs.length > 1 || dropped > 0
  const report: GcReport = {
    agent: name, did, dryRun: opts.dryRun === true, checkpoints: chain.length,
    kept: chain.filter((l, k) => keep[k] && !prunedBefore.has(l.cid)).length,
    pruned: prunedBefore.size + newlyPruned.length, newlyPruned: newlyPruned.length,
    packsBefore: packs.length, packsAfter: rewrite ? (out.length > 0 ? 1 : 0) : packs.length,
    framesDropped: dropped, looseDeleted: loose.length,
    bytesBefore: packBytes + looseBytes, bytesAfter: rewrite ? (out.length > 0 ? mergedBytes : 0) : packBytes,
    blobsBytesBefore, blobsBytesAfter: blobsBytesBefore - packBytes - looseBytes + (rewrite ? (out.length > 0 ? mergedBytes : 0) : packBytes),
    record: newlyPruned.length > 0 || record !== null ? recordFile : null,
  }
  if (opts.dryRun === true) return report
  gcHooks.step?.('planned')

  // 5. new pack (temp name, fsync, rename, directory fsync)
  if (rewrite && out.length > 0) {
    const final = path.join(blobs, newPackName(name))
    const tmp = path.join(blobs, `.gc-${randomBytes(6).toString('hex')}.tmp`)
    const fd = fs.openSync(tmp, 'wx', 0o600)
    try {
      writeAll(fd, [PACK_MAGIC])
      const open = new Map<string, number>()
      try {
        let batch: Uint8Array[] = []; let size = 0
        for (const f of out) {
          let src = open.get(f.slot.pack.file)
          if (src === undefined) { src = fs.openSync(f.slot.pack.file, 'r'); open.set(f.slot.pack.file, src) }
          const b = readAt(src, f.slot.off - 37, 37 + f.slot.len, f.slot.pack.file)
          batch.push(b); size += b.length
          if (size >= 4 << 20) { writeAll(fd, batch); batch = []; size = 0 }
        }
        writeAll(fd, batch)
      } finally { for (const s of open.values()) fs.closeSync(s) }
      fs.fsyncSync(fd)
    } catch (e) {
      fs.closeSync(fd); try { fs.unlinkSync(tmp) } catch { /* gone */ }
      throw new StorageError(`${tmp}: cannot write the merged pack: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
    fs.closeSync(fd)
    gcHooks.step?.('pack-written')
    fs.renameSync(tmp, final)
    fsyncDir(blobs)
    gcHooks.step?.('pack-renamed')
  }

  // 6. the record, before anything is deleted
  if (newlyPruned.length > 0) {
    const next: GcRecord = {
      v: 1, agent: did, pruned: [...new Set([...prunedBefore, ...newlyPruned])].sort(),
      runs: [...(record?.runs ?? []), { time: opts.time ?? new Date().toISOString(), keepEvery, keepLast, added: newlyPruned.length }],
    }
    atomicWrite(recordFile, Buffer.from(JSON.stringify(next) + '\n'))
    gcHooks.step?.('record-written')
  }

  // 7. delete: old packs, then loose page files
  if (rewrite) {
    for (const n of packs) { try { fs.unlinkSync(path.join(blobs, n)) } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new StorageError(`${path.join(blobs, n)}: cannot delete: ${(e as NodeJS.ErrnoException).code}`) } gcHooks.step?.('pack-unlinked') }
  }
  for (const n of loose) { try { fs.unlinkSync(path.join(blobs, n)) } catch { /* gone */ } }
  if (rewrite || loose.length > 0) fsyncDir(blobs)
  report.blobsBytesAfter = folderBytes(blobs)
  return report
}

/** Test hooks: `step(name)` is called after each durable step (a throw there simulates a crash). */
export const gcHooks: { step: ((name: string) => void) | null } = { step: null }

/** Names of the agents with a history in data directory `dir`, sorted. */
export function historyNames (dir: string): string[] {
  try { return fs.readdirSync(historyRoot(dir)).filter(isAgentName).sort() } catch { return [] }
}

/**
 * Resolves `igord gc`'s path: a data directory (every agent with a history there) or a
 * `history/<name>` directory (that agent; the data directory is two levels up).
 * @throws StorageError (exit 8) when the path is neither
 */
export function gcTargets (p: string): { dir: string; names: string[] } {
  const abs = path.resolve(p)
  if (fs.existsSync(path.join(abs, 'history'))) return { dir: abs, names: historyNames(abs) }
  const dir = path.dirname(path.dirname(abs))
  if (path.basename(path.dirname(abs)) === 'history' && isAgentName(path.basename(abs)) && fs.existsSync(abs)) return { dir, names: [path.basename(abs)] }
  throw new StorageError(`${p}: not a data directory (with history/) nor a history/<name> directory`)
}

/** One line of a {@link GcReport}: `heartbeat: kept pages of 7 of 61 checkpoints …`. */
export function formatGc (r: GcReport): string {
  const mb = (n: number) => n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`
  return `${r.agent}: ${r.dryRun ? 'would keep' : 'kept'} the pages of ${r.kept} of ${r.checkpoints} checkpoints (${r.pruned} pruned, ${r.newlyPruned} now); ` +
    `packs ${r.packsBefore} → ${r.packsAfter}, ${r.framesDropped} frames and ${r.looseDeleted} loose files dropped; ` +
    `${mb(r.bytesBefore)} → ${mb(r.bytesAfter)} (blobs/ ${mb(r.blobsBytesBefore)} → ${mb(r.blobsBytesAfter)})`
}

