/**
 * Verifies an agent's whole archived life (DESIGN §7, §9; docs/FORMAT.md "What verify checks"):
 * every history entry decodes and is named after its content, every signature is valid for the one
 * DID they all share, every `prev` link exists and obeys the tick/fuel/budget/epoch/handoff rules,
 * no two entries share a `prev` (a fork), every `fund` event recorded in an event log is a top-up
 * signed by its funder for this agent and applied once, a budget rises only by the top-ups the
 * segment of that link records (checkpoint/fund.ts), and the state root of every entry recomputes from its
 * page table and blobs whose bytes match their CIDs. The page table is rebuilt along the chain (a
 * base entry lists it whole, a delta lists changes since its parent); the unsigned `base` flag only
 * says how to rebuild it, so an entry whose table cannot be rebuilt (a genesis that is not a base
 * entry, a delta whose parent's table is missing or did not verify) is a fault, never skipped.
 *
 * Several paths are merged — the union of their entries and blob stores — which is how the
 * histories of two machines an agent lived on are verified as one.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createHash } from 'node:crypto'
import { IgordError } from './errors.ts'
import { topUpsOfSegment, verifyTopUp, type RecordedTopUp } from './fund.ts'
import { cidOfDigest, digestOfCid } from './hash.ts'
import { headerCid, SIGNATURE_DOMAIN, verifyHeader, type CheckpointHeader } from './header.ts'
import { publicKeyFromDid } from './identity.ts'
import { Worker } from 'node:worker_threads'
import { PAGE_SIZE, stateRootOfTable } from './state.ts'
import { ChunkCache, hashPackedIn, ReadRun, readBlobIn, readPackedIn } from './store.ts'
import { decodeEntry, type HistoryEntry } from './entries.ts'
import { entryFileName, GC_RECORD, historyFiles, historyName, SEGMENT_EXT, segmentFileName } from './layout.ts'
import { entryWhere, readHistoryFile, SEGMENT_MAGIC, type StoredEntry } from './segment.ts'
import { readGcRecord } from './gc.ts'

/** One problem found by {@link verifyHistory}: the tick (null when unknown), the file, what is wrong. */
export interface Fault { tick: number | null; file: string; fault: string }

/** Two or more checkpoints continuing from the same `prev` (DESIGN §9): `tick` is prev's tick. */
export interface Fork { prev: string; tick: number; files: string[] }

/** A handoff checkpoint: at `tick`, in `epoch`, host `from` handed the agent to `to`. */
export interface Handoff { tick: number; epoch: number; from: string; to: string }

/** The valid top-ups of one funder recorded in a history: how many, microcents in all. */
export interface Funding { from: string; count: number; amount: bigint }

/**
 * Result of {@link verifyHistory}. `valid` is true when there is at least one checkpoint, no fault
 * and no fork. `ticks` is `[first, last]` (null when nothing decoded); `epochs` ascending; `hosts`
 * in order of first appearance; `faults` sorted by tick; `topUps` the valid top-ups recorded in the
 * event logs, per funder in order of first top-up.
 */
export interface VerifyReport {
  valid: boolean; did: string | null; checkpoints: number; ticks: [number, number] | null
  epochs: number[]; hosts: string[]; handoffs: Handoff[]; faults: Fault[]; forks: Fork[]
  topUps: Funding[]
  /**
   * Checkpoints whose page bytes were not checked because a GC record (`gcRecords`) lists them as
   * pruned by `igord gc`: their state roots are still checked against the page digests their entries
   * sign, but their pages may be gone, so their memory cannot be restored nor checked byte by byte.
   */
  pruned: number
  /** The GC records read (`history/<name>/gc.json`, docs/FORMAT.md "GC record"). */
  gcRecords: string[]
}

interface Node {
  cid: string
  h: CheckpointHeader
  reps: { file: string; e: HistoryEntry }[]
  children: Node[]
}

const byTick = (a: Node, b: Node) => a.h.tick - b.h.tick || (a.cid < b.cid ? -1 : 1)

function message (e: unknown, file: string): string {
  const m = e instanceof Error ? e.message : String(e)
  return m.startsWith(file + ': ') ? m.slice(file.length + 2) : m
}

/**
 * Verifies the histories found at `paths` merged together. Each path is a data directory (holding
 * `history/<name>/` for one agent and `blobs/`), its `history/` folder, a `history/<name>` directory
 * (blobs in `../../blobs`), one history file (a segment or an entry file), or a folder of such folders (see {@link findHistory}).
 * Never throws for bad data: every problem is a fault.
 * @returns the report (see {@link VerifyReport}); `formatReport` renders it.
 */
export function verifyHistory (paths: string[]): VerifyReport {
  return verifyInternal(paths).report
}

/** Where a set of paths keeps its history entries and blobs; problems reading the paths are faults. */
export interface HistorySources { files: string[]; blobDirs: string[]; faults: Fault[] }

/** How deep {@link findHistory} looks into folders of folders (a folder of data directories, of `history/` folders…). */
const FOLDER_DEPTH = 3

const isDir = (p: string): boolean => { try { return fs.statSync(p).isDirectory() } catch { return false } }
/** True when `d` holds at least one history file (a segment `<tick:012>-….hist` or an entry file `<tick:012>-….cbor`). */
const holdsEntries = (d: string): boolean => { try { return fs.readdirSync(d).some((n) => historyName(n) !== null) } catch { return false } }
const subdirs = (d: string): string[] => fs.readdirSync(d).filter((n) => !n.startsWith('.') && isDir(path.join(d, n))).sort()

/**
 * Resolves the paths given to verify into history files and the blob directories that go with them
 * (absolute, deduplicated). Each path may be:
 *
 * - a history file: a segment or an entry file (blobs in `../../blobs`);
 * - a `history/<name>` directory, i.e. one holding history files (blobs in `../../blobs`);
 * - a `history/` folder holding one agent's `<name>/` directory (blobs in `../blobs`);
 * - a data directory holding `history/` with one agent (blobs in `blobs/`);
 * - a folder of any of these folders (e.g. several hosts' data directories), up to
 *   3 levels down; each is resolved as above and all are merged.
 *
 * Relative paths are taken from the current directory (`igord verify history/` inside a data
 * directory). A folder with no history in it adds nothing (verify reports "no history entries
 * found" when no path holds any). Never throws: an unreadable path, a data directory whose
 * `history/` is empty, or a data directory or `history/` folder holding several agents (name one)
 * is a fault.
 */
export function findHistory (paths: string[]): HistorySources {
  const faults: Fault[] = []
  const files: string[] = []
  const blobDirs: string[] = []
  const addBlobDir = (d: string) => { const r = path.resolve(d); if (!blobDirs.includes(r)) blobDirs.push(r) }
  /** An agent's `history/<name>` directory: its entries, blobs two levels up. */
  const agentDir = (d: string, blobs: string) => { for (const f of historyFiles(d)) files.push(f); addBlobDir(blobs) }
  /** A `history/` folder: exactly one agent directory (those holding entries; else any). */
  const historyFolder = (h: string, blobs: string, what: string, label: string): void => {
    const names = subdirs(h)
    const withEntries = names.filter((n) => holdsEntries(path.join(h, n)))
    const agents = withEntries.length > 0 ? withEntries : names
    if (agents.length === 0) { faults.push({ tick: null, file: label, fault: `no agent history in this ${what}` }); return }
    if (agents.length > 1) { faults.push({ tick: null, file: label, fault: `holds the histories of several agents (${agents.join(', ')}): name one, e.g. ${path.join(h, agents[0])}` }); return }
    agentDir(path.join(h, agents[0]), blobs)
  }
  /** Resolves directory `d`; returns false when nothing in it looks like a history. */
  const resolveDir = (d: string, depth: number): boolean => {
    if (holdsEntries(d)) { agentDir(d, path.join(d, '..', '..', 'blobs')); return true }
    const hist = path.join(d, 'history')
    if (isDir(hist)) { historyFolder(hist, path.join(d, 'blobs'), 'data directory', d); return true }
    const names = subdirs(d)
    if (names.some((n) => holdsEntries(path.join(d, n)))) { historyFolder(d, path.join(d, '..', 'blobs'), 'history folder', d); return true }
    if (depth >= FOLDER_DEPTH) return false
    let found = false
    for (const n of names) if (n !== 'blobs' && resolveDir(path.join(d, n), depth + 1)) found = true
    return found
  }
  for (const p of paths) {
    let st: fs.Stats
    try { st = fs.statSync(p) } catch (e) { faults.push({ tick: null, file: p, fault: `cannot read: ${(e as NodeJS.ErrnoException).code ?? e}` }); continue }
    try {
      if (st.isFile()) { files.push(p); addBlobDir(path.join(path.dirname(p), '..', '..', 'blobs')); continue }
      // a path with no history at all adds nothing (e.g. the data directory of a node that gave the
      // agent back); verify reports "no history entries found" only when no path holds any
      resolveDir(p, 0)
    } catch (e) { faults.push({ tick: null, file: p, fault: `cannot read: ${(e as NodeJS.ErrnoException).code ?? message(e, p)}` }) }
  }
  return { files, blobDirs, faults }
}

/**
 * One checkpoint of a verified chain: its header CID, an entry file holding it (a base entry when
 * there is one) and that entry, and every copy found (the same checkpoint is archived again, as a
 * base entry, in each directory it was resumed into).
 */
export interface ChainLink { cid: string; file: string; entry: HistoryEntry; copies: { file: string; entry: HistoryEntry }[] }

/**
 * A verified history as one linear chain. `links` run from the genesis (tick 0) to the newest
 * checkpoint and are empty unless `report.valid`; `blobDirs` are the blob stores of the paths.
 */
export interface VerifiedChain { report: VerifyReport; links: ChainLink[]; blobDirs: string[]; pruned: ReadonlySet<string> }

/**
 * Verifies like {@link verifyHistory} and, when the history is VALID (so it is one unforked chain
 * from genesis), also returns its checkpoints in order — what replay walks.
 * Never throws for bad data: an invalid history gives `links: []` and the report's faults.
 */
export function verifyChain (paths: string[]): VerifiedChain {
  const { report, nodes, blobDirs, pruned } = verifyInternal(paths)
  const links: ChainLink[] = []
  if (report.valid) {
    let n: Node | undefined = [...nodes.values()].find((x) => x.h.prev === null)
    while (n !== undefined) {
      const rep = n.reps.find((r) => r.e.base) ?? n.reps[0]
      links.push({ cid: n.cid, file: rep.file, entry: rep.e, copies: n.reps.map((r) => ({ file: r.file, entry: r.e })) })
      n = n.children[0]
    }
  }
  return { report, links, blobDirs, pruned }
}

function verifyInternal (paths: string[]): { report: VerifyReport; nodes: Map<string, Node>; blobDirs: string[]; pruned: Set<string> } {
  const { files, blobDirs, faults } = findHistory(paths)
  // GC records next to the entries: the checkpoints whose pages igord gc pruned, by header CID
  const pruned = new Set<string>()
  const gcRecords: string[] = []
  const recordAgents: [string, string][] = []
  for (const d of new Set(files.map((f) => path.resolve(path.dirname(f))))) {
    const file = path.join(d, GC_RECORD)
    try {
      const r = readGcRecord(file)
      if (r === null) continue
      gcRecords.push(file); recordAgents.push([file, r.agent])
      for (const c of r.pruned) pruned.add(c)
    } catch (e) { faults.push({ tick: null, file, fault: message(e, file) }) }
  }

  // 1. read the files: every entry's bytes, with the tick its file's name gives the file's first entry
  const stored: { s: StoredEntry; tickOfName: number | null; named: { tick: number; cid: string; tag: string } | null }[] = []
  const seenFiles = new Set<string>()
  for (const file of files) {
    const abs = path.resolve(file)
    if (seenFiles.has(abs)) continue
    seenFiles.add(abs)
    const named = historyName(path.basename(file))
    const tickOfName = named?.tick ?? null
    if (file.endsWith(SEGMENT_EXT)) {
      let r: ReturnType<typeof readHistoryFile>
      try { r = readHistoryFile(file) } catch (e) { faults.push({ tick: tickOfName, file, fault: message(e, file) }); continue }
      for (const p of r.problems) faults.push({ tick: null, file, fault: message(p, file) })
      // only the segment's first entry is the one its name gives
      r.entries.forEach((s, k) => { const first = k === 0 && s.at === SEGMENT_MAGIC.length; stored.push({ s, tickOfName: first ? tickOfName : null, named: first ? named : null }) })
    } else {
      let bytes: Uint8Array
      try { bytes = readEntryFile(file) } catch (e) { faults.push({ tick: tickOfName, file, fault: `cannot read: ${(e as NodeJS.ErrnoException).code ?? e}` }); continue }
      stored.push({ s: { file, at: null, bytes }, tickOfName, named: null })
    }
  }
  // 2. decode, name check, signature (checked as entries decode, on a second thread for large histories)
  const signatures = new SignatureCheck(stored.length)
  try {
    const decoded: Decoded[] = []
    for (const { s, tickOfName, named } of stored) {
      const file = entryWhere(s)
      let e: HistoryEntry
      try { e = decodeEntry(s.bytes, file) } catch (err) {
        if (!(err instanceof IgordError)) throw err
        faults.push({ tick: tickOfName, file, fault: message(err, file) }); continue
      }
      const cid = headerCid(e.headerBytes)
      const tick = e.parsed.tick
      if (s.at === null) {
        const expected = entryFileName(tick, cid)
        if (path.basename(file) !== expected) faults.push({ tick, file, fault: `file name does not match its content (expected ${expected})` })
      } else if (named !== null && (named.tick !== tick || named.cid !== cid)) {
        faults.push({ tick, file: s.file, fault: `segment name does not match its first entry (expected ${segmentFileName(tick, cid, named.tag)})` })
      }
      try { publicKeyFromDid(e.parsed.agent) } catch (err) { faults.push({ tick, file, fault: message(err, file) }); continue }
      decoded.push({ file, e, cid, tickOfName })
      signatures.add(decoded[decoded.length - 1])
    }
    // the second thread goes on with the signatures while the rest is analysed; if any fails, the
    // analysis is redone without the unauthentic entries
    signatures.flush()
    const blobOk = new Map<string, string | null>() // cid → null (ok) or what is wrong, shared by both runs
    const segs: SegmentCache = new Map() // event log cid → its top-ups, shared by both runs
    let result = analyze(decoded, blobOk, segs, blobDirs, pruned)
    const oks = signatures.finish()
    if (oks.some((ok) => !ok)) {
      decoded.forEach((d, k) => {
        // an unauthentic header's tick cannot be trusted: name the tick in the file name when there is one
        if (!oks[k]) faults.push({ tick: d.tickOfName ?? d.e.parsed.tick, file: d.file, fault: `signature does not verify for ${d.e.parsed.agent}` })
      })
      result = analyze(decoded.filter((_, k) => oks[k]), blobOk, segs, blobDirs, pruned)
    }
    const { nodes, forks, did } = result
    faults.push(...result.faults)
    for (const [file, agent] of recordAgents) if (did !== null && agent !== did) faults.push({ tick: null, file, fault: `GC record of ${agent}, but the history is ${did}` })
    // 4. summary
    const all = [...nodes.values()].sort(byTick)
    const epochs = [...new Set(all.map((n) => n.h.epoch))].sort((a, b) => a - b)
    const hosts: string[] = []
    for (const n of all) if (!hosts.includes(n.h.host)) hosts.push(n.h.host)
    const handoffs: Handoff[] = all.filter((n) => n.h.status === 'handoff').map((n) => ({ tick: n.h.tick, epoch: n.h.epoch, from: n.h.host, to: n.h.target ?? '' }))
    if (all.length === 0 && faults.length === 0) faults.push({ tick: null, file: paths.join(', '), fault: 'no history entries found (give a data directory, its history/ folder, history/<name>/, entry files, or folders of these)' })
    faults.sort((a, b) => (a.tick ?? -1) - (b.tick ?? -1) || (a.file < b.file ? -1 : a.file > b.file ? 1 : 0))
    forks.sort((a, b) => a.tick - b.tick)
    const report: VerifyReport = {
      valid: faults.length === 0 && forks.length === 0 && all.length > 0,
      did,
      checkpoints: all.length,
      ticks: all.length > 0 ? [all[0].h.tick, all[all.length - 1].h.tick] : null,
      epochs,
      hosts,
      handoffs,
      faults,
      forks,
      topUps: result.topUps,
      pruned: result.prunedChecked,
      gcRecords,
    }
    return { report, nodes, blobDirs, pruned }
  } finally { signatures.close() } // a worker is never left running, even when something throws
}

let slab = Buffer.allocUnsafe(1 << 20)
let slabUsed = 0

/**
 * The bytes of a history entry file (kept: decoded entries hold views into them), read into a
 * shared 1 MiB slab while they fit in what is left of it (one open, read and close a file: no
 * `fstat`, no allocation of its own), else with `readFileSync`.
 */
function readEntryFile (file: string): Uint8Array {
  if (slab.length - slabUsed < 64 * 1024) { slab = Buffer.allocUnsafe(1 << 20); slabUsed = 0 }
  const fd = fs.openSync(file, 'r')
  try {
    let n = 0
    for (;;) {
      const k = fs.readSync(fd, slab, slabUsed + n, slab.length - slabUsed - n, n)
      if (k === 0) break
      n += k
      if (slabUsed + n === slab.length) return fs.readFileSync(file) // too big for what is left
    }
    const b = slab.subarray(slabUsed, slabUsed + n)
    slabUsed += (n + 7) & ~7
    return b
  } finally { fs.closeSync(fd) }
}

const scratch = Buffer.allocUnsafe(1 << 20)

/**
 * The bytes of a file, read without fstat or allocation for files under 1 MiB: the result is then a
 * view of a shared buffer, valid until the next call.
 */
function readTransient (file: string): Uint8Array {
  const fd = fs.openSync(file, 'r')
  let n = 0
  try {
    for (;;) {
      const k = fs.readSync(fd, scratch, n, scratch.length - n, n)
      if (k === 0) return scratch.subarray(0, n)
      n += k
      if (n === scratch.length) break
    }
  } finally { fs.closeSync(fd) }
  return fs.readFileSync(file)
}

interface Decoded { file: string; e: HistoryEntry; cid: string; tickOfName: number | null }

/** Entries from which signatures are checked on a second thread (fewer are checked on the calling thread). */
const SIGNATURE_THREAD_MIN = 1000
/** Entries sent to the signature thread in one message. */
const SIGNATURE_BATCH = 256

/**
 * Verifies every entry's signature, starting while the entries are still being read: with at least
 * {@link SIGNATURE_THREAD_MIN} files, a worker thread is started at once and is sent the entries in
 * batches as they decode ({@link SignatureCheck.add}), so the second core works from the first
 * batch on instead of after every file was read; {@link SignatureCheck.finish} (called after the
 * rest of the analysis) checks what the worker has not claimed yet, from the last entry backwards,
 * and waits for what it is checking. Each entry is claimed once, by either thread, with an atomic
 * compare-and-swap on its flag: 0 unclaimed, 3 being checked, 1 valid, 2 not. A worker that cannot
 * start, fails, or leaves an entry claimed for longer than {@link SIGNATURE_STALL_MS} is not waited
 * for: the calling thread checks those entries itself (a signature checked twice gives the same answer).
 */
class SignatureCheck {
  readonly #list: Decoded[] = []
  readonly #flags: Int32Array
  #worker: Worker | null = null
  #sent = 0

  /** @param files how many entries may be added at most (the files to read). */
  constructor (files: number) {
    this.#flags = new Int32Array(new SharedArrayBuffer(4 * Math.max(1, files)))
    if (files < SIGNATURE_THREAD_MIN) return
    try {
      this.#worker = new Worker(VERIFY_WORKER, { eval: true, workerData: { flags: this.#flags } })
      this.#worker.on('error', () => { this.#worker = null })
      this.#worker.unref()
    } catch { this.#worker = null }
  }

  /** Adds the next decoded entry (its index in the results is the number added before it). */
  add (d: Decoded): void {
    this.#list.push(d)
    if (this.#list.length - this.#sent >= SIGNATURE_BATCH) this.flush()
  }

  /** Sends the entries added since the last batch to the worker (when there is one). */
  flush (): void {
    const from = this.#sent; const to = this.#list.length
    this.#sent = to
    if (this.#worker === null || to === from || to > this.#flags.length) return
    // one transferred buffer per batch: domain-separated messages, then 64-byte signatures, then public keys
    let bytes = 0
    for (let i = from; i < to; i++) bytes += SIGNATURE_DOMAIN.length + this.#list[i].e.headerBytes.length + 64 + 32
    const buf = new Uint8Array(bytes)
    const ends = new Int32Array(to - from)
    let o = 0
    for (let i = from; i < to; i++) {
      const e = this.#list[i].e
      buf.set(SIGNATURE_DOMAIN, o); o += SIGNATURE_DOMAIN.length
      buf.set(e.headerBytes, o); o += e.headerBytes.length
      ends[i - from] = o
      if (e.sig.length === 64) buf.set(e.sig, o) // else left zero: the worker sees a wrong length below
      o += 64
      buf.set(publicKeyFromDid(e.parsed.agent), o); o += 32
    }
    const lengths = Int32Array.from(this.#list.slice(from, to), (d) => d.e.sig.length)
    try { this.#worker.postMessage({ base: from, buf, ends, lengths }, [buf.buffer]) } catch { /* checked by finish */ }
  }

  /** Stops the worker, if any (idempotent; {@link SignatureCheck.finish} calls it). */
  close (): void {
    if (this.#worker !== null) { void this.#worker.terminate(); this.#worker = null }
  }

  /** Every added entry's result (true: the signature verifies for the entry's DID), in order. */
  finish (): boolean[] {
    this.flush()
    const n = this.#list.length
    const flags = this.#flags
    const one = (i: number) => verifyHeader(this.#list[i].e.headerBytes, this.#list[i].e.sig, this.#list[i].e.parsed.agent)
    const inFlags = Math.min(n, flags.length)
    for (let i = inFlags - 1; i >= 0; i--) if (Atomics.compareExchange(flags, i, 0, 3) === 0) Atomics.store(flags, i, one(i) ? 1 : 2)
    for (let i = 0; i < inFlags; i++) {
      const since = performance.now()
      while (Atomics.load(flags, i) === 3 && this.#worker !== null && performance.now() - since < SIGNATURE_STALL_MS) Atomics.wait(flags, i, 3, 20)
      if (Atomics.load(flags, i) === 3) Atomics.store(flags, i, one(i) ? 1 : 2) // the worker stalled or failed
    }
    this.close()
    return Array.from({ length: n }, (_, i) => i < inFlags ? flags[i] === 1 : one(i))
  }
}

/** How long {@link SignatureCheck.finish} waits for one entry the worker claimed before checking it itself, ms. */
const SIGNATURE_STALL_MS = 5000

/**
 * Worker body (CommonJS, evaluated): for each batch `{ base, buf, ends, lengths }` (see
 * `SignatureCheck.flush`) claims each entry's flag (0 → 3), verifies, stores 1 or 2 and notifies.
 */
const VERIFY_WORKER = `
const { workerData, parentPort } = require('node:worker_threads'); const crypto = require('node:crypto')
const { flags } = workerData; const keys = new Map()
const SPKI = Buffer.from('302a300506032b6570032100', 'hex')
parentPort.on('message', ({ base, buf, ends, lengths }) => {
  let start = 0
  for (let j = 0; j < ends.length; j++) {
    const end = ends[j]; const i = base + j
    const next = end + 64 + 32
    if (Atomics.compareExchange(flags, i, 0, 3) === 0) {
      const pub = buf.subarray(end + 64, next); const id = Buffer.from(pub).toString('base64'); let k = keys.get(id)
      if (k === undefined) { k = crypto.createPublicKey({ key: Buffer.concat([SPKI, pub]), format: 'der', type: 'spki' }); keys.set(id, k) }
      let ok = false; try { ok = lengths[j] === 64 && crypto.verify(null, buf.subarray(start, end), k, buf.subarray(end, end + 64)) } catch {}
      Atomics.store(flags, i, ok ? 1 : 2); Atomics.notify(flags, i)
    }
    start = next
  }
})
`

/**
 * A checkpoint's page table as rebuilt along a chain: index → SHA-256 digest of that page
 * (= the digest inside its blob CID); `undefined` for a page that is all zero. Length ≤ pageCount.
 */
export type PageTable = (Uint8Array | undefined)[]

/**
 * Applies one history entry's page rows to its parent's table (docs/FORMAT.md "History"): a base
 * entry starts from an empty table, a delta from `parent` (copied, or updated in place when
 * `inPlace`), rows set or clear pages, and the table is cut to the entry's `pageCount`.
 * `onPage(index, cid)` sees every page row that names a blob (e.g. to check the blob).
 * @param digestOf maps a page CID to its 32-byte digest (default: decode it; a cache helps)
 * @returns the table (null for a delta without a parent: its state cannot be rebuilt) and a fault
 *   when a page the table still holds lies beyond `pageCount`
 */
export function nextPageTable (e: HistoryEntry, parent: PageTable | null, inPlace: boolean, digestOf: (cid: string) => Uint8Array = digestOfCid, onPage?: (index: number, cid: string) => void): { table: PageTable | null; fault: string | null } {
  let t: PageTable | null
  if (e.base) t = []
  else if (parent === null) t = null
  else t = inPlace ? parent : parent.slice()
  for (const [i, c] of e.pages) {
    if (c === null) { if (t !== null) t[i] = undefined; continue }
    onPage?.(i, c)
    if (t !== null) t[i] = digestOf(c)
  }
  let fault: string | null = null
  if (t !== null && t.length > e.pageCount) {
    for (let i = e.pageCount; i < t.length; i++) if (t[i] !== undefined) { fault = `page ${i} is outside memory of ${e.pageCount} pages`; break }
    t.length = e.pageCount
  }
  return { table: t, fault }
}

/** Event log CID → the `fund` events of that segment, or why they cannot be read. */
type SegmentCache = Map<string, RecordedTopUp[] | string>

/** Links, forks, DID, state roots, blobs and top-ups of authentic entries. */
function analyze (decoded: Decoded[], blobOk: Map<string, string | null>, segs: SegmentCache, blobDirs: string[], pruned: ReadonlySet<string>): { nodes: Map<string, Node>; forks: Fork[]; faults: Fault[]; did: string | null; topUps: Funding[]; prunedChecked: number } {
  const faults: Fault[] = []
  const nodes = new Map<string, Node>()
  let did: string | null = null
  decoded = [...decoded]
  // the DID is the one of the earliest entry; any other is a fault
  decoded.sort((a, b) => a.e.parsed.tick - b.e.parsed.tick || (a.file < b.file ? -1 : 1))
  for (const { file, e, cid } of decoded) {
    if (did === null) did = e.parsed.agent
    if (e.parsed.agent !== did) { faults.push({ tick: e.parsed.tick, file, fault: `signed by another agent ${e.parsed.agent} (history is ${did})` }); continue }
    const n = nodes.get(cid)
    if (n !== undefined) n.reps.push({ file, e })
    else nodes.set(cid, { cid, h: e.parsed, reps: [{ file, e }], children: [] })
  }

  // 2. links and forks
  const roots: Node[] = []
  const geneses: Node[] = []
  let minTick = Infinity
  for (const n of nodes.values()) if (n.h.tick < minTick) minTick = n.h.tick
  for (const n of nodes.values()) {
    const h = n.h
    const file = n.reps[0].file
    if (h.prev === null) {
      if (h.tick !== 0) faults.push({ tick: h.tick, file, fault: `has no prev but is not tick 0 (a genesis checkpoint is tick 0)` })
      geneses.push(n); roots.push(n); continue
    }
    const p = nodes.get(h.prev)
    if (p === undefined) {
      faults.push({ tick: h.tick, file, fault: h.tick === minTick && n.reps.some((r) => r.e.base)
        ? `history starts at tick ${h.tick}: previous checkpoint ${h.prev} is not here (verify it together with the history it continues)`
        : `previous checkpoint ${h.prev} is missing (history broken before tick ${h.tick})` })
      roots.push(n); continue
    }
    p.children.push(n)
    const ph = p.h
    const link: string[] = []
    // A handoff records a change of authority, not a tick: it may repeat its prev's tick, but then
    // must carry exactly its state (docs/PROTOCOL.md). Every other link advances the tick.
    // A checkpoint with no event log (no tick ran) may also repeat its prev's tick: it records
    // host-side state only (messages taken into the inbox: the header's io), with the same state.
    const sameTick = h.tick === ph.tick && (h.status === 'handoff' || h.log === null)
    if (h.tick <= ph.tick && !sameTick) link.push(`tick ${h.tick} does not follow tick ${ph.tick}`)
    if (sameTick && (Buffer.compare(h.state, ph.state) !== 0 || h.fuel !== ph.fuel || h.budget !== ph.budget)) link.push(`${h.status === 'handoff' ? 'handoff' : 'checkpoint'} at tick ${h.tick} changes the state of the checkpoint it follows`)
    if (h.fuel < ph.fuel) link.push(`fuel decreased from ${ph.fuel} to ${h.fuel}`)
    // a budget increase is checked against the segment's top-ups once its blob is read (step 4)
    if (ph.status === 'handoff') {
      if (h.epoch !== ph.epoch + 1) link.push(`epoch ${h.epoch} after a handoff in epoch ${ph.epoch} (expected ${ph.epoch + 1})`)
      if (h.host !== ph.target) link.push(`host ${h.host} continues after a handoff to ${ph.target}`)
    } else if (h.epoch !== ph.epoch) link.push(`epoch changed from ${ph.epoch} to ${h.epoch} without a handoff`)
    if (ph.status === 'finished') link.push(`continues after the agent finished at tick ${ph.tick}`)
    if (h.code !== ph.code) link.push(`code changed from ${ph.code} to ${h.code}`)
    if (h.manifest !== ph.manifest) link.push(`manifest changed from ${ph.manifest} to ${h.manifest}`)
    for (const f of link) faults.push({ tick: h.tick, file, fault: f })
  }
  const forks: Fork[] = []
  for (const n of nodes.values()) {
    if (n.children.length > 1) {
      n.children.sort(byTick)
      forks.push({ prev: n.cid, tick: n.h.tick, files: n.children.map((c) => c.reps[0].file) })
    }
  }
  if (geneses.length > 1) {
    geneses.sort(byTick)
    forks.push({ prev: '', tick: 0, files: geneses.map((g) => g.reps[0].file) })
  }

  // 3. state roots along every chain; every referenced blob hashed once
  const reported = new Set<string>()
  const chunks = new ChunkCache() // consecutive versions of a page share most of their 4 KiB chunks
  const run = new ReadRun() // the same, for pages hashed in place; packs checked once
  const readBlob = (cid: string): Uint8Array | null => {
    for (const d of blobDirs) {
      const p = readPackedIn(d, cid, chunks, run) // already indexed: no lookup of a loose file
      if (p !== null) return p
      try { return readTransient(path.join(d, cid)) } catch { /* not a loose file */ }
      const b = readBlobIn(d, cid, false, chunks)
      if (b !== null) return b
    }
    return null
  }
  /** A page's digest and length: hashed in place when packed (chunks never assembled), else read. */
  const hashPage = (cid: string): { digest: Uint8Array; length: number } | null => {
    for (const d of blobDirs) {
      const h = hashPackedIn(d, cid, run)
      if (h !== null) return h
    }
    const b = readBlob(cid)
    return b === null ? null : { digest: createHash('sha256').update(b).digest(), length: b.length }
  }
  const checkBlob = (cid: string, label: string, isPage: boolean): string | null => {
    let r = blobOk.get(cid)
    if (r !== undefined) {
      if (r === null || reported.has(cid)) return null // reported once, at the first tick using it
      reported.add(cid); return r
    }
    reported.add(cid)
    const b = isPage ? null : readBlob(cid)
    const h = isPage ? hashPage(cid) : b === null ? null : { digest: createHash('sha256').update(b).digest(), length: b.length }
    if (h === null) r = `${label} blob ${cid} is missing`
    else if (isPage && h.length !== PAGE_SIZE) r = `${label} blob ${cid} is ${h.length} bytes, expected ${PAGE_SIZE}`
    else if (Buffer.compare(h.digest, digestOfCid(cid)) !== 0) r = `${label} blob ${cid} is corrupt (its bytes do not match its CID)`
    else {
      r = null
      if (label === 'event log' && b !== null) scanSegment(cid, b) // while its bytes are at hand
    }
    blobOk.set(cid, r)
    return r
  }
  /** Reads the top-ups of an event log blob that matched its CID (see `topUpsOfSegment`). */
  const scanSegment = (cid: string, b: Uint8Array): void => {
    try { segs.set(cid, topUpsOfSegment(b, `event log ${cid}`)) } catch (err) { segs.set(cid, message(err, '')) }
  }
  const digestCache = new Map<string, Uint8Array>()
  const digestOf = (cid: string): Uint8Array => {
    let d = digestCache.get(cid)
    if (d === undefined) { d = digestOfCid(cid); digestCache.set(cid, d) }
    return d
  }
  type Table = PageTable
  // A run of entries whose page table cannot be rebuilt (a delta whose parent's table is unknown,
  // or a genesis that is not a base entry): one fault at the first, naming every tick left unchecked.
  interface Unchecked { fault: Fault; cause: string; first: number; last: number }
  const runs: Unchecked[] = []
  // `covered`: every page blob of the parent's table was checked (at it or an ancestor). A checkpoint
  // the GC record lists skips its page blobs (they may be pruned) and so leaves its children
  // uncovered: the next checkpoint not listed checks every page of its table, not only its rows.
  const stack: { n: Node; parent: Table | null; parentRun: Unchecked | null; own: boolean; covered: boolean }[] = roots.sort(byTick).reverse().map((n) => ({ n, parent: null, parentRun: null, own: false, covered: true }))
  const visited = new Set<Node>()
  let prunedChecked = 0
  while (stack.length > 0) {
    const { n, parent, parentRun, own, covered } = stack.pop()!
    const isPruned = pruned.has(n.cid)
    if (isPruned) prunedChecked++
    if (visited.has(n)) continue
    visited.add(n)
    const h = n.h
    let table: Table | null = null // a table whose state root matched the signed header
    let run: Unchecked | null = null
    for (const rep of n.reps) {
      const { e, file } = rep
      const problems: string[] = []
      try {
      for (const [label, c] of [['code', h.code], ['manifest', h.manifest], ['event log', h.log], ['I/O state', h.io ?? null]] as const) {
        if (c !== null) { const r = checkBlob(c, label, false); if (r !== null) problems.push(r) }
      }
      // `base` is not signed: it only says how the table is rebuilt; the signed state root decides.
      // A genesis has no parent, so it must be a base entry.
      const next = nextPageTable(e, h.prev === null ? null : parent, own && n.reps.length === 1, digestOf, (i, c) => {
        if (isPruned) return
        const r = checkBlob(c, `page ${i}`, true)
        if (r !== null) problems.push(r)
      })
      if (!isPruned && !covered && !e.base && next.table !== null) {
        next.table.forEach((d, i) => {
          if (d === undefined) return
          const r = checkBlob(cidOfDigest(d), `page ${i}`, true)
          if (r !== null) problems.push(r)
        })
      }
      if (next.fault !== null) problems.push(next.fault)
      const t = next.table
      if (t === null) {
        if (run === null) {
          if (parentRun !== null && h.prev !== null) { run = parentRun; run.last = Math.max(run.last, h.tick) } else {
            const p = h.prev === null ? undefined : nodes.get(h.prev)
            const cause = h.prev === null
              ? 'genesis entry is not a base entry'
              : p === undefined
                ? 'delta entry whose previous checkpoint is missing'
                : `delta entry whose previous checkpoint (tick ${p.h.tick}) has no verified page table`
            run = { fault: { tick: h.tick, file, fault: cause }, cause, first: h.tick, last: h.tick }
            runs.push(run); faults.push(run.fault)
          }
        }
      } else {
        try {
          const root = stateRootOfTable(e.pageCount, t, e.globals, h.fuel, h.budget)
          if (Buffer.compare(root, h.state) !== 0) problems.push('state root does not match the page table, globals, fuel and budget')
          else if (table === null) table = t
        } catch (err) { problems.push(message(err, file)) }
      }
      } catch (err) { problems.push(`cannot check: ${message(err, file)}`) }
      for (const f of problems) faults.push({ tick: h.tick, file, fault: f })
    }
    const kids = n.children
    for (let k = kids.length - 1; k >= 0; k--) stack.push({ n: kids[k], parent: table, parentRun: table === null ? run : null, own: kids.length === 1, covered: !isPruned })
  }
  for (const r of runs) {
    const ticks = r.first === r.last ? `tick ${r.first} is` : `ticks ${r.first}–${r.last} are`
    r.fault.fault = `${r.cause}: its page table cannot be rebuilt, so the state root${r.first === r.last ? '' : 's'} of ${ticks} unchecked`
  }

  // 4. top-ups (docs/FORMAT.md "Top-ups"): every recorded `fund` event is signed by its funder for
  // this agent and applied once, and a budget increase is accepted only up to the top-ups
  // recorded in the segment of the checkpoint that shows it
  const funders = new Map<string, Funding>()
  const applied = new Map<string, number>() // top-up id (hex) → tick it was applied
  for (const n of [...nodes.values()].sort(byTick)) {
    const h = n.h
    const file = n.reps[0].file
    const p = h.prev === null ? undefined : nodes.get(h.prev)
    const rise = p !== undefined && h.budget > p.h.budget
    let recs: RecordedTopUp[] | string | undefined = []
    if (h.log !== null) {
      if (!segs.has(h.log) && blobOk.get(h.log) === null) { // not scanned in step 3 (first read under another label)
        const bytes = readBlob(h.log)
        if (bytes !== null) scanSegment(h.log, bytes)
      }
      recs = segs.get(h.log)
    }
    if (recs === undefined || typeof recs === 'string') {
      // a missing or corrupt blob is a fault of its own already
      if (rise) faults.push({ tick: h.tick, file, fault: `budget increased from ${p!.h.budget} to ${h.budget} but its event log cannot be read${typeof recs === 'string' ? ` (${recs})` : ''}` })
      continue
    }
    let total = 0n
    for (const r of recs) {
      let why = r.fault ?? verifyTopUp(r.topUp!, did!)
      if (why === null) {
        const key = Buffer.from(r.topUp!.id).toString('hex')
        const first = applied.get(key)
        if (first !== undefined) why = `top-up ${key} was already applied at tick ${first}`
        else applied.set(key, r.tick)
      }
      if (why !== null) { faults.push({ tick: r.tick, file, fault: `top-up at tick ${r.tick}: ${why}` }); continue }
      const t = r.topUp!
      total += t.amount
      const f = funders.get(t.from)
      if (f === undefined) funders.set(t.from, { from: t.from, count: 1, amount: t.amount })
      else { f.count++; f.amount += t.amount }
    }
    if (rise && h.budget > p!.h.budget + total) faults.push({ tick: h.tick, file, fault: `budget increased from ${p!.h.budget} to ${h.budget} but the event log records top-ups of only ${total}` })
  }

  return { nodes, forks, faults, did, topUps: [...funders.values()], prunedChecked }
}

/** Microcents as units (1 unit = 1,000,000 microcents) without trailing zeros: `5`, `0.25`. */
function units (microcents: bigint): string {
  const whole = microcents / 1_000_000n
  const frac = (microcents % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '')
  return frac === '' ? `${whole}` : `${whole}.${frac}`
}

/**
 * Human rendering of a {@link VerifyReport}. First line `VALID: <n> checkpoints, ticks a–b, <did>`
 * or `INVALID: <k> fault(s)` (faults plus forks), then one line per fault
 * (`tick 12: <fault> (<file>)`) and per fork (`FORK after tick 7: <file1> and <file2>`); a valid
 * report adds its epochs, hosts, handoffs and top-ups (`top-ups: 2 (+5 units from 12D3KooW…)`).
 */
export function formatReport (r: VerifyReport): string {
  const lines: string[] = []
  if (r.valid) {
    lines.push(`VALID: ${r.checkpoints} checkpoint${r.checkpoints === 1 ? '' : 's'}, ticks ${r.ticks![0]}–${r.ticks![1]}, ${r.did}`)
    lines.push(`  epochs: ${r.epochs.join(', ')}; hosts: ${r.hosts.join(', ')}`)
    for (const h of r.handoffs) lines.push(`  handoff at tick ${h.tick} (epoch ${h.epoch}): ${h.from} → ${h.to}`)
    if (r.topUps.length > 0) {
      const count = r.topUps.reduce((k, f) => k + f.count, 0)
      lines.push(`  top-ups: ${count} (${r.topUps.map((f) => `+${units(f.amount)} units from ${f.from}`).join(', ')})`)
    }
    if (r.pruned > 0) lines.push(`  pruned by gc: the page bytes of ${r.pruned} of ${r.checkpoints} checkpoints were not checked (their state roots only against the signed page digests); the unsigned GC record ${r.gcRecords.join(', ')} says igord gc removed them`)
    return lines.join('\n')
  }
  const k = r.faults.length + r.forks.length
  lines.push(`INVALID: ${k} fault${k === 1 ? '' : 's'}`)
  for (const f of r.faults) lines.push(`${f.tick === null ? '' : `tick ${f.tick}: `}${f.fault} (${f.file})`)
  for (const f of r.forks) {
    const files = f.files.length === 2 ? `${f.files[0]} and ${f.files[1]}` : f.files.join(', ')
    lines.push(f.prev === '' ? `FORK at genesis: ${files}` : `FORK after tick ${f.tick}: ${files}`)
  }
  return lines.join('\n')
}
