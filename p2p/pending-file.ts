/**
 * A migration target's pending live checkpoint, written while the pages arrive (docs/RATIONALE.md
 * "Offer → pending: the pending file written during the transfer"). The file's bytes are exactly
 * `encodeLive` of the arriving checkpoint (docs/FORMAT.md "Live checkpoint"); what precedes the
 * pages there (the I/O state, key, log, signature and wasm) arrives only in `end`, but its length
 * is known as soon as the wasm is at hand and the offer announced the lengths of the log and the
 * I/O state (`logBytes`, `ioBytes`: docs/PROTOCOL.md). From then on each received page is written,
 * on the thread pool, at its final offset — with its entry's CBOR head, which depends only on its
 * index — and the written bytes are flushed (`fdatasync`) every {@link SYNC_EVERY} bytes, so that
 * the disk works during the transfer. {@link PendingFile.finish} then writes what is left (the
 * head, the tail, pages the target already held), checks the layout against the real encoding
 * (any difference: the whole file is rewritten from it) and syncs; the caller renames the file
 * into place (p2p/authority.ts `writePendingFile`). The file lives under the spool root
 * (`<data>/migrate/spool/<random>/pending.ckpt`, folder 0700, file 0600), which a restart clears:
 * nothing in it is trusted before the target verified the checkpoint (p2p/migrate.ts `assemble`).
 */
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { encodeLive } from '../checkpoint/live.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { NetworkError } from './errors.ts'

/** Written bytes after which the file is flushed (`fdatasync`) while the transfer goes on: 16 MiB. */
export const SYNC_EVERY = 16 * 1024 * 1024

const ZERO_PAGE = new Uint8Array(PAGE_SIZE)

/** What the layout of an offer's pending file depends on besides its pages. */
export interface PendingShape {
  header: Uint8Array; sig: Uint8Array; manifest: Uint8Array; pageCount: number
  /** the offered checkpoint's page table `[index, cid]`, ascending */
  pages: [number, string][]
  globals: LiveCheckpoint['globals']
  /** the wasm (its bytes at hand: received, or held by the target) */
  wasm: Uint8Array
  /** lengths of the event log and I/O state the `end` frame will carry (null: none) */
  logBytes: number | null; ioBytes: number | null
}

/** One offer's pending live checkpoint, written as its pages arrive. Single-threaded use. */
export class PendingFile {
  /** the folder (removed by {@link remove}) and the file in it */
  readonly dir: string
  readonly file: string
  readonly #shape: PendingShape
  /** the file's length, the offset of each page's bytes, and the CBOR bytes right before each page */
  readonly #total: number
  readonly #at: number[]
  readonly #gap: Uint8Array[]
  /** page table positions by CID (a CID can fill several pages) */
  readonly #byCid = new Map<string, number[]>()
  readonly #written: boolean[]
  #fd: number | null
  #writing: Promise<void> = Promise.resolve()
  #syncing: Promise<void> = Promise.resolve()
  #unsynced = 0
  #failed: string | null = null
  /** true once {@link finish} found the layout other than planned and wrote the file whole */
  rewrote = false

  /**
   * Creates the file (empty) for an offer of this shape under `root`.
   * @throws NetworkError when the folder or file cannot be created, or the shape does not encode
   */
  constructor (root: string, shape: PendingShape) {
    this.#shape = shape
    const parts = encodeLive({
      header: shape.header, sig: shape.sig, wasm: shape.wasm, manifest: shape.manifest, pageCount: shape.pageCount,
      pages: shape.pages.map(([i]) => [i, ZERO_PAGE]), globals: shape.globals, seed: new Uint8Array(32),
      log: shape.logBytes === null ? null : new Uint8Array(shape.logBytes), io: shape.ioBytes === null ? null : new Uint8Array(shape.ioBytes),
    })
    this.#at = []; this.#gap = []
    let off = 0
    let prev: Uint8Array | null = null
    for (const p of parts) {
      if (p === ZERO_PAGE) { this.#at.push(off); this.#gap.push(prev === null || prev === ZERO_PAGE ? new Uint8Array(0) : prev.slice()) }
      off += p.length
      prev = p
    }
    this.#total = off
    this.#written = shape.pages.map(() => false)
    shape.pages.forEach(([, c], k) => { const ks = this.#byCid.get(c); if (ks === undefined) this.#byCid.set(c, [k]); else ks.push(k) })
    this.dir = path.join(root, randomBytes(8).toString('hex'))
    this.file = path.join(this.dir, 'pending.ckpt')
    try {
      fs.mkdirSync(root, { recursive: true, mode: 0o700 })
      fs.mkdirSync(this.dir, { mode: 0o700 })
      this.#fd = fs.openSync(this.file, 'wx+', 0o600)
    } catch (e) { throw new NetworkError(`pending file: cannot create ${this.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
  }

  /**
   * Writes received blobs `[cid, bytes]` (each checked against its CID) that are pages of the
   * offered checkpoint at their offsets (with their entries' heads), on the thread pool after the
   * writes queued before; other blobs (the wasm, pages of the replay base only) are ignored. The
   * bytes must not change until {@link finish}. A failed write is thrown by {@link finish}.
   */
  put (blobs: [string, Uint8Array][]): void {
    if (this.#fd === null || this.#failed !== null) return
    const runs: { at: number; parts: Uint8Array[]; end: number }[] = []
    for (const [c, b] of blobs) {
      for (const k of this.#byCid.get(c) ?? []) {
        if (this.#written[k] || b.length !== PAGE_SIZE) continue
        this.#written[k] = true
        // the entry's head is the gap before a page, except before the first (it holds the file's head, known at finish)
        const at = k === 0 ? this.#at[0] : this.#at[k] - this.#gap[k].length
        const parts = k === 0 ? [b] : [this.#gap[k], b]
        const last = runs[runs.length - 1]
        if (last !== undefined && last.end === at) { last.parts.push(...parts); last.end = this.#at[k] + PAGE_SIZE } else runs.push({ at, parts, end: this.#at[k] + PAGE_SIZE })
      }
    }
    for (const r of runs) this.#queue(r.parts, r.at)
  }

  #queue (parts: Uint8Array[], at: number): void {
    const fd = this.#fd!
    let n = 0
    for (const p of parts) n += p.length
    this.#writing = this.#writing.then(async () => {
      if (this.#failed !== null) return
      await writevAt(fd, parts, at)
      this.#unsynced += n
      if (this.#unsynced >= SYNC_EVERY) { // flush while the transfer goes on (one flush at a time)
        this.#unsynced = 0
        this.#syncing = this.#syncing.then(() => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => { if (e) reject(e); else resolve() })))
          .catch((e: NodeJS.ErrnoException) => { this.#failed ??= `pending file: cannot sync ${this.file}: ${e.code ?? e.message}` })
      }
    }).catch((e: NodeJS.ErrnoException) => { this.#failed ??= `pending file: cannot write ${this.file}: ${e.code ?? e.message}` })
  }

  /**
   * Completes the file as `encodeLive(live)` (the verified checkpoint whose pages were {@link put}):
   * writes the parts not yet written, rewrites the whole file when its layout differs from the one
   * planned (e.g. a log of another length than announced), syncs it and closes it. Returns the
   * file's path, for the caller to rename into place.
   * @throws NetworkError when a write or the sync failed
   */
  async finish (live: Omit<LiveCheckpoint, 'parsed' | 'io'> & { io?: Uint8Array | null }): Promise<string> {
    const fd = this.#fd
    if (fd === null) throw new NetworkError(`pending file: ${this.file} is closed`)
    const parts = encodeLive(live)
    const n = live.pages.length
    let same = n === this.#at.length
    const runs: { at: number; parts: Uint8Array[] }[] = []
    let off = 0
    let k = 0 // the next page, in file order
    for (let j = 0; j < parts.length; j++) {
      const p = parts[j]
      if (k < n && p === live.pages[k][1]) { // page k's bytes
        if (this.#at[k] !== off) same = false
        else if (!this.#written[k]) runs.push({ at: off, parts: [p] })
        k++
      } else if (k > 0 && k < n && j + 1 < parts.length && parts[j + 1] === live.pages[k][1] && this.#written[k]) {
        // the head of a written page's entry: written with it, as planned (or the layout is not the same)
        if (Buffer.compare(p, this.#gap[k]) !== 0) same = false
      } else runs.push({ at: off, parts: [p] })
      off += p.length
    }
    if (off !== this.#total || k !== n) same = false
    if (!same) { // rewrite it whole
      this.rewrote = true
      runs.length = 0
      runs.push({ at: 0, parts })
    }
    await this.#writing
    for (const r of runs) this.#queue(r.parts, r.at)
    await this.#writing
    await this.#syncing
    if (this.#failed !== null) throw new NetworkError(this.#failed)
    try {
      if (!same) fs.ftruncateSync(fd, off)
      await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => { if (e) reject(e); else resolve() }))
    } catch (e) { throw new NetworkError(`pending file: cannot sync ${this.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
    this.#fd = null
    try { fs.closeSync(fd) } catch { /* synced: nothing lost */ }
    return this.file
  }

  /**
   * Closes and deletes the folder (and the file, unless {@link finish} returned it and the caller
   * moved it away); never throws. Writes still queued are skipped; one in flight keeps the
   * descriptor until it ends. `later`: delete in the background.
   */
  remove (later = false): void {
    const fd = this.#fd
    this.#fd = null
    this.#failed ??= 'pending file: removed'
    if (!later) try { fs.rmSync(this.dir, { recursive: true, force: true }) } catch { /* best effort: a restart clears spools */ }
    void Promise.all([this.#writing, this.#syncing]).then(() => {
      if (fd !== null) try { fs.closeSync(fd) } catch { /* gone */ }
      if (later) fs.rm(this.dir, { recursive: true, force: true }, () => { /* best effort */ })
    })
  }
}

/** Writes every byte of `chunks` to `fd` from offset `at` (fs.writev on the thread pool, resuming after short writes). */
export async function writevAt (fd: number, chunks: Uint8Array[], at: number): Promise<void> {
  let i = 0
  let skip = 0 // bytes of chunks[i] already written
  while (i < chunks.length) {
    const batch = chunks.slice(i, i + 1024).map((c, k) => k === 0 ? c.subarray(skip) : c)
    let n = await new Promise<number>((resolve, reject) => fs.writev(fd, batch, at, (e, w) => { if (e) reject(e); else resolve(w) }))
    if (n === 0 && batch.some((c) => c.length > 0)) throw new Error('the write made no progress')
    at += n
    while (i < chunks.length && n >= chunks[i].length - skip) { n -= chunks[i].length - skip; i++; skip = 0 }
    skip += n
  }
}
