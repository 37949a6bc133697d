/**
 * The committed image of an agent's linear memory, page by page, and the dirty set since the
 * last checkpoint.
 *
 * After every successful tick the live memory is compared with the committed copy page by page
 * (`Buffer.compare` runs at memory speed) and only changed pages are copied; a failed tick is rolled
 * back by copying the committed pages back. Checkpoints hash only the pages dirtied since the last
 * one (DESIGN §7).
 */
import { createHash } from 'node:crypto'
import { PAGE_SIZE } from '../checkpoint/state.ts'

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE)

/** True when a 64 KiB page holds only zero bytes. */
export function isZeroPage (page: Uint8Array): boolean {
  return ZERO_PAGE.equals(page)
}

/** SHA-256 of one page, 32 bytes (the page digest of DESIGN §7). */
export function pageDigest (page: Uint8Array): Uint8Array {
  return createHash('sha256').update(page).digest()
}

/** Committed pages of one memory plus digests of the non-zero ones as of the last checkpoint. */
export class PageImage {
  /** Number of 64 KiB pages in the committed memory. */
  pageCount = 0
  /** Committed copy of each page; `undefined` for pages that are all zero. */
  readonly pages: (Buffer | undefined)[] = []
  /** Pages changed since the last checkpoint (indices). */
  readonly dirty = new Set<number>()
  /** Digests of the non-zero pages as of the last checkpoint, by index. */
  readonly digests = new Map<number, Uint8Array>()
  /**
   * Pages held by reference to the caller's bytes since {@link load} (not copied; never written
   * through): the first {@link commit} that changes one replaces it with a copy.
   */
  readonly #borrowed = new Set<number>()

  /**
   * Compares `mem` (the live memory bytes) with the committed image, copies the changed pages in
   * and marks them dirty. `mem.length` must be a multiple of 64 KiB.
   * @returns the number of pages changed
   */
  commit (mem: Uint8Array): number {
    const count = mem.length / PAGE_SIZE
    let changed = 0
    for (let i = 0; i < count; i++) {
      const live = mem.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)
      const old = this.pages[i]
      if (old === undefined ? ZERO_PAGE.equals(live) : old.equals(live)) continue
      if (old !== undefined && !this.#borrowed.has(i)) old.set(live)
      else { this.pages[i] = Buffer.from(live); this.#borrowed.delete(i) }
      this.dirty.add(i)
      changed++
    }
    this.pageCount = count
    return changed
  }

  /**
   * Writes the committed pages back into `mem` where they differ (rollback of a failed tick whose
   * memory did not grow). `mem.length` must equal `pageCount × 64 KiB`.
   */
  rollback (mem: Uint8Array): void {
    for (let i = 0; i < this.pageCount; i++) {
      const live = mem.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)
      const old = this.pages[i] ?? ZERO_PAGE
      if (!old.equals(live)) live.set(old)
    }
  }

  /** Copies the committed pages into a freshly instantiated memory of at least `pageCount` pages. */
  restoreInto (mem: Uint8Array): void {
    for (let i = 0; i < this.pageCount; i++) {
      const p = this.pages[i]
      if (p !== undefined) mem.set(p, i * PAGE_SIZE)
      else mem.fill(0, i * PAGE_SIZE, (i + 1) * PAGE_SIZE)
    }
  }

  /**
   * Loads an image from a checkpoint's non-zero pages (`[index, 64 KiB bytes]`), with their
   * digests when the caller already has them (a decoded live checkpoint does), else computing them.
   * Nothing is dirty afterwards. The pages are held by reference, not copied (a restore of a
   * 64 MiB memory copies it once, into the instance): the caller must not change them afterwards;
   * the image never writes into them (the first change of a page replaces it with a copy).
   */
  load (pageCount: number, pages: [number, Uint8Array][], digests?: [number, Uint8Array][]): void {
    this.pages.length = 0
    this.#borrowed.clear()
    this.dirty.clear()
    this.digests.clear()
    this.pageCount = pageCount
    const known = new Map(digests ?? [])
    for (const [i, bytes] of pages) {
      this.pages[i] = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      this.#borrowed.add(i)
      this.digests.set(i, known.get(i) ?? pageDigest(bytes))
    }
  }

  /**
   * Drops the committed copies of the pages (a hibernating agent, runtime/agent.ts): the size and
   * the digests stay, so {@link reload} can check what comes back.
   * @throws Error when pages are dirty (their changes are in no checkpoint yet)
   */
  dropPages (): void {
    if (this.dirty.size > 0) throw new Error(`PageImage.dropPages: ${this.dirty.size} pages changed since the last checkpoint`)
    this.pages.length = 0
    this.#borrowed.clear()
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
    this.#borrowed.clear()
    for (const [i, bytes] of pages) this.pages[i] = Buffer.from(bytes)
  }

  /**
   * Re-hashes the dirty pages, clears the dirty set and returns what a checkpoint needs:
   * every non-zero page (committed copies, not to be modified until written), the sorted digests
   * and the indices that changed.
   */
  takeCheckpoint (): { pages: [number, Uint8Array][]; digests: [number, Uint8Array][]; changed: number[] } {
    const changed = [...this.dirty].sort((a, b) => a - b)
    for (const i of changed) {
      const p = this.pages[i]
      if (p === undefined || i >= this.pageCount || isZeroPage(p)) {
        this.pages[i] = undefined
        this.digests.delete(i)
      } else {
        this.digests.set(i, pageDigest(p))
      }
    }
    // Pages beyond pageCount cannot exist (memory never shrinks), but keep the image exact.
    for (const i of this.digests.keys()) if (i >= this.pageCount) this.digests.delete(i)
    this.dirty.clear()
    const pages: [number, Uint8Array][] = []
    const digests: [number, Uint8Array][] = []
    for (let i = 0; i < this.pageCount; i++) {
      const p = this.pages[i]
      const d = this.digests.get(i)
      if (p === undefined || d === undefined) continue
      pages.push([i, p])
      digests.push([i, d])
    }
    return { pages, digests, changed }
  }
}
