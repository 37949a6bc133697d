/**
 * The committed image of an agent's linear memory and the dirty set since the last checkpoint.
 *
 * The committed copy is one buffer per agent (a slab of `pageCount × 64 KiB`, all-zero pages
 * included as zeros): one allocation, compared with and copied from the live memory with offsets
 * (no per-page views), and freed as a unit when the agent hibernates. After every successful tick
 * the live memory is compared with it: only the 4 KiB chunks the instance's dirty map marks (the
 * instrumenter's write barrier, runtime/fuel.ts `DIRTY_EXPORT`, plus host writes reported with
 * {@link PageImage.wrote}) and the chunk after each, or — the first commit after {@link PageImage.track},
 * after a load, or with no map — the whole memory in runs of {@link RUN_PAGES} pages
 * (`Buffer#compare`, i.e. memcmp), drilling down to pages only in runs that differ. Changed chunks
 * are copied in and their pages marked dirty, together with which of their chunks changed. A
 * failed tick is rolled back by copying the committed chunks back the same way. Checkpoints hash
 * only the pages dirtied since the last one (DESIGN §7) and, for a checkpoint of few pages, only
 * their changed chunks (the archive's storage grain, checkpoint/store.ts `putEx` `chunkDigests`).
 *
 * A restore ({@link PageImage.load} into a fresh memory) of pages nothing writes afterwards borrows
 * them instead of copying them into the slab when that pins little else (see {@link borrows}): the slab is then
 * allocated zeroed, which the kernel leaves unmapped until written, and a borrowed page is copied
 * into it only when something first compares with or writes its committed copy. A restored 64 MiB
 * agent so costs one copy of its memory (into the instance), not two.
 */
import { hash } from 'node:crypto'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { CHUNK_SIZE } from '../checkpoint/pack.ts'
import { FINE_GRAIN_PAGES } from '../checkpoint/writer.ts'

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE)
const ZERO_CHUNK = ZERO_PAGE.subarray(0, CHUNK_SIZE)
const EMPTY = Buffer.alloc(0)
/** Pages compared in one call before drilling down (1 MiB). */
const RUN_PAGES = 16
/** 4 KiB chunks per page, and the size of a page's chunk digest list (32 bytes each). */
const CHUNKS = PAGE_SIZE / CHUNK_SIZE
const CHUNK_LIST = 32 * CHUNKS
const ZERO_LIST = new Uint8Array(CHUNK_LIST)
const ALL_CHUNKS = (1 << CHUNKS) - 1
/** Slab growth step cap, pages (64 MiB): growth doubles the slab up to this much at a time. */
const GROW_STEP_PAGES = 1024

/**
 * Whether {@link PageImage.load} borrows `pages` (`[index, 64 KiB bytes]`) rather than copying
 * them: when the buffers they are views of hold at most twice their bytes, so that keeping them
 * alive costs no more than the copy would (a decoded live file's pages, a migration's received
 * pages), and not when small pages sit in a much larger buffer (a small agent's pages in a live
 * file that also holds its code), which borrowing would keep whole.
 */
export function borrows (pages: readonly [number, Uint8Array][]): boolean {
  if (pages.length === 0) return false
  const held = new Set<ArrayBufferLike>()
  let bytes = 0
  for (const [, p] of pages) { held.add(p.buffer); bytes += p.length }
  let total = 0
  for (const b of held) total += b.byteLength
  return total <= 2 * bytes
}

/**
 * Zeroes the marks among the first `n` bytes of a dirty map, run by run (`indexOf`, memchr): the
 * map's untouched pages are never written, so a map costs resident memory only where marks were.
 */
function clearMarks (map: Buffer, n: number): void {
  const v = map.length > n ? map.subarray(0, n) : map // memchr never runs past the walked range
  for (let k = v.indexOf(1); k >= 0;) {
    const end = v.indexOf(0, k)
    const e = end < 0 ? n : end
    v.fill(0, k, e)
    k = e >= n ? -1 : v.indexOf(1, e)
  }
}

/** Zeroes the 64 KiB page at byte `at` of `live` unless it is zero already (an untouched page stays untouched). */
function clearPage (live: Buffer, at: number): void {
  if (!ZERO_PAGE.equals(live.subarray(at, at + PAGE_SIZE))) live.fill(0, at, at + PAGE_SIZE)
}

/** True when a 64 KiB page holds only zero bytes. */
export function isZeroPage (page: Uint8Array): boolean {
  return ZERO_PAGE.equals(page)
}

/** SHA-256 of one page, 32 bytes (the page digest of DESIGN §7). */
export function pageDigest (page: Uint8Array): Uint8Array {
  return hash('sha256', page, 'buffer')
}

/** `b` as a Buffer over the same bytes (no copy): `b` itself when it is one, else a view of its memory. */
export function asBuffer (b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)
}

/** Committed memory of one agent plus digests of the non-zero pages as of the last checkpoint. */
export class PageImage {
  /** Number of 64 KiB pages in the committed memory. */
  pageCount = 0
  /** Pages changed since the last checkpoint (indices). */
  readonly dirty = new Set<number>()
  /** Digests of the non-zero pages as of the last checkpoint, by index. */
  readonly digests = new Map<number, Uint8Array>()
  /** The committed memory: `pageCount` pages used, capacity `slab.length / 64 KiB`. */
  #slab: Buffer = EMPTY
  /** Cached 64 KiB views of the slab, by page (dropped when the slab is replaced). */
  #views: (Buffer | undefined)[] = []
  /**
   * Pages whose committed bytes are still the caller's (borrowed by {@link load}; zeros in the
   * slab until {@link #own} copies them in), by index; null when none are.
   */
  #borrowed: (Uint8Array | undefined)[] | null = null
  /**
   * Copies of the lists the last {@link takeCheckpoint} returned, for the slab and page count they
   * were made of (callers get copies of these); null after a load, reload or dropped image.
   */
  #out: { slab: Buffer; count: number; pages: [number, Uint8Array][]; digests: [number, Uint8Array][] } | null = null
  /** Per dirty page: bit k set when chunk k may differ from the page as of the last checkpoint. */
  readonly #masks = new Map<number, number>()
  /** Per non-zero page, when known: the digest list of its 16 chunks as of the last checkpoint. */
  readonly #chunkLists = new Map<number, Uint8Array>()
  /** The instance's dirty map (runtime/fuel.ts DIRTY_EXPORT), as a Buffer over memory 1; null: none. */
  #map: Buffer | null = null
  /**
   * True when every write to memory since the live memory last equalled the committed image is
   * marked in {@link #map}: set by a full compare or rollback that cleared the map, dropped by a new
   * map, a load, a reload, a dropped image or {@link distrust}.
   */
  #trusted = false

  /**
   * When true (environment `IGORD_CHECK_DIRTY=1`, inherited by worker threads and child processes;
   * tests set it), every commit and rollback guided by the dirty map is followed by a compare of the
   * whole memory, and a difference left behind throws `PageImage: the dirty map missed page <i>`.
   */
  static checkMarks = process.env.IGORD_CHECK_DIRTY === '1'

  /**
   * Uses `map` (the dirty map of the instance whose memory the next commits see, runtime/fuel.ts
   * DIRTY_EXPORT: one byte per 4 KiB chunk, 1 = written) to compare only written chunks, or null to
   * compare the whole memory at every commit. The next commit compares the whole memory either way
   * (the map cannot vouch for what happened before it was attached), then clears the map and trusts it.
   */
  track (map: Uint8Array | null): void {
    this.#map = map === null ? null : asBuffer(map)
    this.#trusted = false
  }

  /**
   * Marks bytes [ptr, ptr + len) of memory as written by the host (a hostcall), so the next commit
   * compares them. `ptr + len` ≤ the memory size (the hostcall checked its bounds). A no-op when
   * no map is attached.
   */
  wrote (ptr: number, len: number): void {
    const map = this.#map
    if (map === null || len <= 0) return
    const first = Math.floor(ptr / CHUNK_SIZE)
    const last = Math.floor((ptr + len - 1) / CHUNK_SIZE)
    if (last >= map.length) { this.#trusted = false; return }
    map.fill(1, first, last + 1)
  }

  /** The next commit compares the whole memory (a write the map may not show, e.g. by the host). */
  distrust (): void { this.#trusted = false }

  /** True when the next commit will compare only the chunks the dirty map marks. */
  get tracking (): boolean { return this.#map !== null && this.#trusted }

  /**
   * Compares `mem` (the live memory bytes) with the committed image (the chunks the dirty map
   * marks, or all of it: see {@link track}), copies the changed chunks in and marks their pages
   * dirty. `mem.length` must be a multiple of 64 KiB and at least `pageCount` pages.
   * @returns the number of pages changed
   */
  commit (mem: Uint8Array): number {
    const count = mem.length / PAGE_SIZE
    if (count > this.#slab.length / PAGE_SIZE) this.#grow(count)
    const live = asBuffer(mem)
    if (this.#map !== null && this.#trusted) {
      const changed = this.#marked(live, count, true)
      this.pageCount = count
      return changed
    }
    this.#ownAll()
    const changed = this.#commitAll(live, count)
    this.#untracked(count)
    return changed
  }

  /** After a whole compare (live memory = image): clears the map, which is trusted from now on. */
  #untracked (count: number): void {
    this.pageCount = count
    if (this.#map === null) return
    clearMarks(this.#map, this.#map.length)
    this.#trusted = true
  }

  /**
   * Walks the chunks the dirty map marks among the first `count` pages, each with the chunk after
   * it (a store of up to 16 bytes marks only the chunk of its first byte), compares them with the
   * image and, per page that differs: on commit, copies the differing chunks into the image and
   * marks the page dirty; on rollback, copies the image's chunks back into `live`. Clears the map
   * over the walked range. With {@link checkMarks}, then compares the whole memory.
   * @returns the number of pages that differed
   */
  #marked (live: Buffer, count: number, commit: boolean): number {
    const map = this.#map!
    const slab = this.#slab
    const n = Math.min(count * CHUNKS, map.length)
    let changed = 0
    let page = -1; let want = 0
    const flush = (): void => {
      if (page < 0) return
      if (this.#borrowed?.[page] !== undefined) this.#own(page)
      const at = page * PAGE_SIZE
      let diff = 0
      for (let k = 0; k < CHUNKS; k++) {
        if ((want & (1 << k)) === 0) continue
        const c = at + k * CHUNK_SIZE
        if (slab.compare(live, c, c + CHUNK_SIZE, c, c + CHUNK_SIZE) === 0) continue
        diff |= 1 << k
        if (commit) live.copy(slab, c, c, c + CHUNK_SIZE)
        else slab.copy(live, c, c, c + CHUNK_SIZE)
      }
      if (diff !== 0) {
        changed++
        if (commit) {
          this.#masks.set(page, (this.#masks.get(page) ?? 0) | diff)
          this.dirty.add(page)
        }
      }
    }
    const want1 = (c: number): void => {
      const p = c >>> 4
      if (p !== page) { flush(); page = p; want = 0 }
      want |= 1 << (c & (CHUNKS - 1))
    }
    // the walk's memchr stops at the memory's end, not the map's (sized for the largest memory)
    const marks = map.length > n ? map.subarray(0, n) : map
    for (let k = marks.indexOf(1, 0); k >= 0; k = marks.indexOf(1, k + 1)) {
      want1(k)
      if (k + 1 < n) want1(k + 1)
    }
    flush()
    clearMarks(map, n)
    if (PageImage.checkMarks) {
      for (let i = 0; i < count; i++) {
        const at = i * PAGE_SIZE
        if (this.#view(i).compare(live, at, at + PAGE_SIZE) !== 0) throw new Error(`PageImage: the dirty map missed page ${i}`)
      }
    }
    return changed
  }

  /** {@link commit} without the map: compares the whole memory in runs. */
  #commitAll (live: Buffer, count: number): number {
    const slab = this.#slab
    let changed = 0
    for (let r = 0; r < count; r += RUN_PAGES) {
      const end = Math.min(count, r + RUN_PAGES)
      if (slab.compare(live, r * PAGE_SIZE, end * PAGE_SIZE, r * PAGE_SIZE, end * PAGE_SIZE) === 0) continue
      for (let i = r; i < end; i++) {
        const at = i * PAGE_SIZE
        if (slab.compare(live, at, at + PAGE_SIZE, at, at + PAGE_SIZE) === 0) continue
        let mask = 0
        for (let k = 0; k < CHUNKS; k++) {
          const c = at + k * CHUNK_SIZE
          if (slab.compare(live, c, c + CHUNK_SIZE, c, c + CHUNK_SIZE) !== 0) { mask |= 1 << k; live.copy(slab, c, c, c + CHUNK_SIZE) }
        }
        this.#masks.set(i, (this.#masks.get(i) ?? 0) | mask)
        this.dirty.add(i)
        changed++
      }
    }
    return changed
  }

  /** Copies borrowed page `i` into the slab: from now on the slab holds its committed bytes. */
  #own (i: number): void {
    const b = this.#borrowed!
    this.#slab.set(b[i]!, i * PAGE_SIZE)
    b[i] = undefined
    this.#views[i] = undefined
    this.#out = null // its lists may hold the borrowed view
  }

  /** Copies every borrowed page into the slab (before the whole memory is compared or rolled back). */
  #ownAll (): void {
    const b = this.#borrowed
    if (b === null) return
    for (let i = 0; i < b.length; i++) if (b[i] !== undefined) this.#own(i)
    this.#borrowed = null
  }

  /** Replaces the slab by one of at least `count` pages holding the committed pages (borrowed ones stay borrowed). */
  #grow (count: number): void {
    const have = this.#slab.length / PAGE_SIZE
    const next = Math.max(count, Math.min(2 * have, have + GROW_STEP_PAGES))
    const slab = Buffer.alloc(next * PAGE_SIZE)
    this.#slab.copy(slab, 0, 0, this.pageCount * PAGE_SIZE)
    this.#slab = slab
    this.#views = []
    this.#out = null
  }

  /** The committed page `i` (a view of the slab), or undefined when it is all zero, outside memory or dropped. */
  committed (i: number): Uint8Array | undefined {
    if (i < 0 || i >= this.pageCount || (i + 1) * PAGE_SIZE > this.#slab.length) return undefined // outside, or dropped
    const v = this.#view(i)
    return isZeroPage(v) ? undefined : v
  }

  #view (i: number): Buffer {
    let v = this.#views[i]
    if (v === undefined) {
      const b = this.#borrowed?.[i]
      v = b !== undefined ? asBuffer(b) : this.#slab.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)
      this.#views[i] = v
    }
    return v
  }

  /**
   * Writes the committed pages back into `mem` where they differ (rollback of a failed tick whose
   * memory did not grow). `mem.length` must equal `pageCount × 64 KiB`.
   */
  rollback (mem: Uint8Array): void {
    const live = asBuffer(mem)
    if (this.#map !== null && this.#trusted) { this.#marked(live, this.pageCount, false); return }
    this.#ownAll()
    for (let r = 0; r < this.pageCount; r += RUN_PAGES) {
      const end = Math.min(this.pageCount, r + RUN_PAGES)
      if (this.#slab.compare(live, r * PAGE_SIZE, end * PAGE_SIZE, r * PAGE_SIZE, end * PAGE_SIZE) === 0) continue
      for (let i = r; i < end; i++) {
        const at = i * PAGE_SIZE
        if (this.#slab.compare(live, at, at + PAGE_SIZE, at, at + PAGE_SIZE) !== 0) this.#slab.copy(live, at, at, at + PAGE_SIZE)
      }
    }
    this.#untracked(this.pageCount)
  }

  /**
   * Copies the committed pages into a freshly instantiated memory of at least `pageCount` pages.
   * A page committed as zero is cleared only when it is not zero already (its data segments wrote
   * it), so untouched pages of a fresh memory stay untouched (not made resident). When `mem` is
   * exactly `pageCount` pages it then equals the image, so the dirty map attached by
   * {@link track} is cleared and trusted from here (the first commit compares only marked chunks).
   */
  restoreInto (mem: Uint8Array): void {
    const live = asBuffer(mem)
    for (let i = 0; i < this.pageCount; i++) {
      const at = i * PAGE_SIZE
      if (this.digests.has(i) || this.dirty.has(i)) live.set(this.#view(i), at) // non-zero as of the last checkpoint, or committed since
      else clearPage(live, at)
    }
    if (live.length === this.pageCount * PAGE_SIZE) this.#untracked(this.pageCount)
  }

  /**
   * A slab of exactly `pageCount` pages for `pages` (`[index, 64 KiB bytes]`), not filled in: zeroed
   * unless `pages` are strictly ascending and `pageCount` many (then every byte is about to be
   * written, and the slab is allocated without clearing it). With `borrow`, always zeroed (the
   * kernel leaves it unmapped until written) and ready to hold borrowed pages.
   */
  #alloc (pageCount: number, pages: [number, Uint8Array][], borrow = false): void {
    let whole = !borrow && pages.length === pageCount
    for (let k = 1; whole && k < pages.length; k++) if (pages[k][0] <= pages[k - 1][0]) whole = false
    this.#slab = pageCount === 0 ? EMPTY : whole ? Buffer.allocUnsafeSlow(pageCount * PAGE_SIZE) : Buffer.alloc(pageCount * PAGE_SIZE)
    this.#views = []
    this.#out = null
    this.#borrowed = borrow ? new Array<Uint8Array | undefined>(pageCount) : null
  }

  /** A slab of exactly `pageCount` pages holding `pages` (`[index, 64 KiB bytes]`). */
  #fill (pageCount: number, pages: [number, Uint8Array][]): void {
    this.#alloc(pageCount, pages)
    for (const [i, bytes] of pages) this.#slab.set(bytes, i * PAGE_SIZE)
  }

  /**
   * Loads an image from a checkpoint's non-zero pages (`[index, 64 KiB bytes]`), with their
   * digests when the caller already has them (a decoded live checkpoint does), else computing them.
   * Nothing is dirty afterwards. The pages are copied into the image's one slab and, with `into`
   * (a freshly instantiated memory of exactly `pageCount` pages; `pages` then strictly ascending
   * and below `pageCount`), into that memory in the same pass — each page hashed, copied into the
   * slab and into `into` while it is in cache — which then equals the image, as after
   * {@link restoreInto} (the dirty map is cleared and trusted). With `into` and `borrow` (the
   * caller's promise that nothing writes `pages` afterwards), when {@link borrows} says it pays,
   * the image keeps `pages` instead of copying them into the slab.
   * @returns the digests, `[index, SHA-256]` in the order of `pages`.
   * @throws Error with `into` when it is not `pageCount` pages or `pages` are out of order or range.
   */
  load (pageCount: number, pages: [number, Uint8Array][], digests?: [number, Uint8Array][], into?: Uint8Array, borrow = false): [number, Uint8Array][] {
    this.dirty.clear()
    this.digests.clear()
    this.#masks.clear()
    this.#chunkLists.clear()
    this.#trusted = false
    this.pageCount = pageCount
    const known = digests === undefined ? null : new Map(digests)
    const out = new Array<[number, Uint8Array]>(pages.length)
    if (into === undefined) {
      this.#fill(pageCount, pages)
      for (let k = 0; k < pages.length; k++) {
        const [i, bytes] = pages[k]
        const d = known?.get(i) ?? pageDigest(bytes)
        this.digests.set(i, d)
        out[k] = [i, d]
      }
      return out
    }
    const live = asBuffer(into)
    if (live.length !== pageCount * PAGE_SIZE) throw new Error(`PageImage.load: memory of ${live.length / PAGE_SIZE} pages, expected ${pageCount}`)
    borrow &&= borrows(pages)
    this.#alloc(pageCount, pages, borrow)
    const slab = this.#slab
    const held = this.#borrowed
    let next = 0 // pages below this one are in place in `live`
    for (let k = 0; k < pages.length; k++) {
      const [i, bytes] = pages[k]
      if (i < next || i >= pageCount || bytes.length !== PAGE_SIZE) throw new Error(`PageImage.load: page ${i} out of order or outside memory of ${pageCount} pages`)
      for (; next < i; next++) clearPage(live, next * PAGE_SIZE)
      const d = known?.get(i) ?? pageDigest(bytes)
      if (borrow) held![i] = bytes
      else slab.set(bytes, i * PAGE_SIZE)
      live.set(bytes, i * PAGE_SIZE)
      this.digests.set(i, d)
      out[k] = [i, d]
      next = i + 1
    }
    for (; next < pageCount; next++) clearPage(live, next * PAGE_SIZE)
    this.#untracked(pageCount)
    return out
  }

  /**
   * Drops the committed copy of memory (a hibernating agent, runtime/agent.ts): the size and
   * the digests stay, so {@link reload} can check what comes back.
   * @throws Error when pages are dirty (their changes are in no checkpoint yet)
   */
  dropPages (): void {
    if (this.dirty.size > 0) throw new Error(`PageImage.dropPages: ${this.dirty.size} pages changed since the last checkpoint`)
    this.#slab = EMPTY
    this.#views = []
    this.#out = null
    this.#borrowed = null
    this.#chunkLists.clear()
    this.#map = null
    this.#trusted = false
  }

  /**
   * Takes back the pages dropped by {@link dropPages} from a checkpoint of the same state: the
   * same size, the same non-zero pages with the same digests (`digests` when the caller has them,
   * as a decoded live checkpoint does, else computed).
   * @throws Error naming the size or the first page that differs (the image is left unchanged)
   */
  reload (pageCount: number, pages: [number, Uint8Array][], digests?: [number, Uint8Array][]): void {
    if (pageCount !== this.pageCount) throw new Error(`memory of ${pageCount} pages, expected ${this.pageCount}`)
    if (pages.length !== this.digests.size) throw new Error(`${pages.length} non-zero pages, expected ${this.digests.size}`)
    const known = new Map(digests ?? [])
    for (const [i, bytes] of pages) {
      const want = this.digests.get(i)
      if (want === undefined) throw new Error(`page ${i} is not zero, expected zero`)
      if (Buffer.compare(known.get(i) ?? pageDigest(bytes), want) !== 0) throw new Error(`page ${i} differs (SHA-256)`)
    }
    this.#fill(pageCount, pages)
    this.#trusted = false
  }

  /** Page `i`'s chunk digest list (zeros for zero chunks) from the last one and the chunks in `mask`. */
  #chunkList (i: number, page: Uint8Array, mask: number): Uint8Array {
    const prev = this.digests.has(i) ? this.#chunkLists.get(i) : ZERO_LIST
    if (prev === undefined) mask = ALL_CHUNKS
    const list = Buffer.alloc(CHUNK_LIST) // new each time: the writer may still hold the last one
    for (let k = 0; k < CHUNKS; k++) {
      if ((mask & (1 << k)) === 0) { list.set(prev!.subarray(k * 32, k * 32 + 32), k * 32); continue }
      const c = page.subarray(k * CHUNK_SIZE, (k + 1) * CHUNK_SIZE)
      if (!ZERO_CHUNK.equals(c)) list.set(hash('sha256', c, 'buffer'), k * 32)
    }
    return list
  }

  /**
   * Re-hashes the dirty pages, clears the dirty set and returns what a checkpoint needs:
   * every non-zero page (views of the committed memory, not to be modified until written), the
   * sorted digests, the indices that changed and, for each changed non-zero page — when few
   * changed (≤ checkpoint/writer.ts `FINE_GRAIN_PAGES`), else only those of which some chunks did
   * not change — its 4 KiB chunk digest list (512 bytes, 32 zero bytes for a zero chunk), hashing
   * only the chunks that changed (all 16 the first time: the list of the page as of the last
   * checkpoint unknown, e.g. after a load or a change of every chunk); and, for every changed page
   * that was non-zero at the last checkpoint and not all of whose chunks changed, the mask of its
   * chunks that may have changed since (bit k: chunk k; from the compares of the commits, so known
   * without hashing, however many pages changed).
   */
  takeCheckpoint (): { pages: [number, Uint8Array][]; digests: [number, Uint8Array][]; changed: number[]; chunkDigests: Map<number, Uint8Array>; chunkMasks: Map<number, number> } {
    const changed = [...this.dirty].sort((a, b) => a - b)
    const fine = changed.length <= FINE_GRAIN_PAGES
    const chunkDigests = new Map<number, Uint8Array>()
    const chunkMasks = new Map<number, number>()
    // the lists of the last checkpoint serve again (copied, changed rows replaced) while the same
    // pages are non-zero in the same slab: no list of every page rebuilt for a few changed ones
    const last = this.#out
    let same = last !== null && last.slab === this.#slab && last.count === this.pageCount
    for (const i of changed) {
      const mask = this.#masks.get(i) ?? ALL_CHUNKS
      const p = i < this.pageCount ? this.#view(i) : undefined
      const had = this.digests.has(i)
      if (p === undefined || isZeroPage(p)) {
        if (had) same = false
        this.digests.delete(i)
        this.#chunkLists.delete(i)
      } else {
        if (!had) same = false
        // of many changed pages, those all of whose chunks changed are stored whole (no list)
        if (fine || mask !== ALL_CHUNKS) {
          const list = this.#chunkList(i, p, mask)
          this.#chunkLists.set(i, list)
          chunkDigests.set(i, list)
        } else this.#chunkLists.delete(i)
        if (had && mask !== ALL_CHUNKS) chunkMasks.set(i, mask)
        this.digests.set(i, pageDigest(p))
      }
    }
    this.dirty.clear()
    this.#masks.clear()
    if (same) {
      const pages = last!.pages
      const digests = last!.digests.slice()
      for (const i of changed) {
        const d = this.digests.get(i)
        if (d === undefined) continue // zero before and after
        let lo = 0; let hi = pages.length - 1
        while (lo < hi) { const mid = (lo + hi) >> 1; if (pages[mid][0] < i) lo = mid + 1; else hi = mid }
        if (pages[lo]?.[0] !== i) { same = false; break }
        digests[lo] = [i, d]
      }
      if (same) {
        this.#out = { slab: this.#slab, count: this.pageCount, pages, digests }
        return { pages: pages.slice(), digests: digests.slice(), changed, chunkDigests, chunkMasks }
      }
    }
    // Pages beyond pageCount cannot exist (memory never shrinks), but keep the image exact.
    for (const i of this.digests.keys()) if (i >= this.pageCount) this.digests.delete(i)
    const pages: [number, Uint8Array][] = []
    const digests: [number, Uint8Array][] = []
    for (let i = 0; i < this.pageCount; i++) {
      const d = this.digests.get(i)
      if (d === undefined) continue
      pages.push([i, this.#view(i)])
      digests.push([i, d])
    }
    this.#out = { slab: this.#slab, count: this.pageCount, pages, digests }
    return { pages: pages.slice(), digests: digests.slice(), changed, chunkDigests, chunkMasks }
  }
}
