/**
 * An agent's state as igord hashes it (DESIGN §7): linear memory cut into 64 KiB pages, the exported
 * mutable globals, total fuel and remaining budget, summarised by one 32-byte state root.
 *
 * State root = SHA-256 of the canonical CBOR (RFC 8949 §4.2.1) of
 * `{pages: n, digests: [[index, sha256(page)]…], globals: [[index, type, bytes]…], fuel, budget}`,
 * digests in ascending page index (all-zero pages omitted), globals in ascending index. The bytes
 * are written here by hand (fixed shape, no intermediate objects) because the root is computed on
 * every checkpoint and for every archived checkpoint verified; test/state.test.ts checks they equal
 * `encode()` of the same object.
 */
import { createHash } from 'node:crypto'
import { CheckpointError } from './errors.ts'
import { putHead } from './cbor.ts'

/** WebAssembly page size, bytes (WebAssembly spec §2.5.6). Checkpoint pages are wasm pages. */
export const PAGE_SIZE = 65536

/** Most pages a 32-bit linear memory can have (4 GiB / 64 KiB). */
export const MAX_PAGES = 65536

/** Value types a wasm global can have, with their byte sizes. */
export const GLOBAL_SIZES: Readonly<Record<GlobalValue['type'], number>> = { i32: 4, i64: 8, f32: 4, f64: 8, v128: 16 }

/**
 * One mutable global's value: its index in the instrumented module's global index space, its wasm
 * value type and its raw little-endian bytes (4, 8, 4, 8 or 16), so float NaN payloads survive.
 */
export interface GlobalValue { index: number; type: 'i32' | 'i64' | 'f32' | 'f64' | 'v128'; bytes: Uint8Array }

/** The inputs of {@link stateRoot}: page count, page digests, globals, fuel (units) and budget (microcents). */
export interface StateSummary {
  /** memory size in pages of {@link PAGE_SIZE} bytes */
  pages: number
  /** `[page index, SHA-256 of the page]` for every non-zero page */
  digests: [number, Uint8Array][]
  globals: GlobalValue[]
  /** total fuel burned in the agent's life, units */
  fuel: bigint
  /** remaining budget, microcents */
  budget: bigint
}

const TWO64N = 1n << 64n

function sortedByIndex<T> (xs: T[], key: (x: T) => number, label: string): T[] {
  for (let i = 1; i < xs.length; i++) {
    if (key(xs[i]) <= key(xs[i - 1])) {
      const s = [...xs].sort((a, b) => key(a) - key(b))
      for (let j = 1; j < s.length; j++) if (key(s[j]) === key(s[j - 1])) throw new CheckpointError(`state: ${label} ${key(s[j])} appears twice`)
      return s
    }
  }
  return xs
}

/**
 * Checks one global's shape.
 * @throws CheckpointError `<what>: global <i>: …` for a bad index, unknown type or wrong byte length.
 */
export function checkGlobal (g: GlobalValue, what: string): void {
  if (!Number.isSafeInteger(g.index) || g.index < 0 || g.index > 0xffffffff) throw new CheckpointError(`${what}: global index ${g.index} is not a u32`)
  const size = GLOBAL_SIZES[g.type]
  if (size === undefined || !Object.hasOwn(GLOBAL_SIZES, g.type)) throw new CheckpointError(`${what}: global ${g.index} has unknown type ${JSON.stringify(g.type)}`)
  if (!(g.bytes instanceof Uint8Array) || g.bytes.length !== size) throw new CheckpointError(`${what}: global ${g.index} (${g.type}) must be ${size} bytes, got ${g.bytes?.length}`)
}

/** Reusable output buffer; grown as needed. */
let buf = new Uint8Array(4096)

function ensure (need: number): void {
  if (buf.length < need) buf = new Uint8Array(Math.max(need, buf.length * 2))
}

function head (p: number, major: number, n: number): number {
  if (n >= 0x100000000) throw new CheckpointError(`state: integer ${n} too large`)
  return putHead(buf, p, major, n)
}

function headBig (p: number, n: bigint, label: string): number {
  if (n < 0n || n >= TWO64N) throw new CheckpointError(`state: ${label} ${n} is not an unsigned 64-bit integer`)
  if (n < 0x100000000n) return head(p, 0, Number(n))
  buf[p] = 27
  const hi = Number(n >> 32n); const lo = Number(n & 0xffffffffn)
  buf[p + 1] = hi >>> 24; buf[p + 2] = (hi >>> 16) & 255; buf[p + 3] = (hi >>> 8) & 255; buf[p + 4] = hi & 255
  buf[p + 5] = lo >>> 24; buf[p + 6] = (lo >>> 16) & 255; buf[p + 7] = (lo >>> 8) & 255; buf[p + 8] = lo & 255
  return p + 9
}

function ascii (p: number, s: string): number {
  p = head(p, 3, s.length)
  for (let i = 0; i < s.length; i++) buf[p + i] = s.charCodeAt(i)
  return p + s.length
}

/**
 * The state root as used by the history verifier: `table[i]` is page i's digest or undefined for
 * an all-zero page (`table.length` ≤ `pages`). Same result as {@link stateRoot}.
 * @throws CheckpointError as {@link stateRoot}.
 */
export function stateRootOfTable (pages: number, table: readonly (Uint8Array | undefined)[], globals: GlobalValue[], fuel: bigint, budget: bigint): Uint8Array {
  let n = 0
  for (let i = 0; i < table.length; i++) if (table[i] !== undefined) n++
  const idx = new Array<number>(n); const ds = new Array<Uint8Array>(n)
  for (let i = 0, k = 0; i < table.length; i++) if (table[i] !== undefined) { idx[k] = i; ds[k++] = table[i]! }
  return rootOf(pages, idx, ds, globals, fuel, budget)
}

/**
 * State root (DESIGN §7): SHA-256 of canonical CBOR
 * `{pages, digests: [[i, d]…], globals: [[i, type, bytes]…], fuel, budget}`, 32 bytes.
 * Digests and globals are sorted by index here if they are not already.
 * @throws CheckpointError `state: …` for a page index ≥ pages, a digest that is not 32 bytes, a
 *   duplicate index, a malformed global, or fuel/budget outside u64.
 */
export function stateRoot (s: StateSummary): Uint8Array {
  const digests = sortedByIndex(s.digests, (d) => d[0], 'page')
  const idx = new Array<number>(digests.length); const ds = new Array<Uint8Array>(digests.length)
  for (let k = 0; k < digests.length; k++) { idx[k] = digests[k][0]; ds[k] = digests[k][1] }
  return rootOf(s.pages, idx, ds, s.globals, s.fuel, s.budget)
}

function rootOf (pages: number, idx: number[], ds: Uint8Array[], globals0: GlobalValue[], fuel: bigint, budget: bigint): Uint8Array {
  if (!Number.isSafeInteger(pages) || pages < 0 || pages > MAX_PAGES) throw new CheckpointError(`state: page count ${pages} out of range 0..${MAX_PAGES}`)
  const globals = sortedByIndex(globals0, (g) => g.index, 'global')
  ensure(64 + idx.length * 40 + globals.length * 32)
  let p = 0
  buf[p++] = 0xa5 // map(5), keys in canonical order: fuel, pages, budget, digests, globals
  p = ascii(p, 'fuel'); p = headBig(p, fuel, 'fuel')
  p = ascii(p, 'pages'); p = head(p, 0, pages)
  p = ascii(p, 'budget'); p = headBig(p, budget, 'budget')
  p = ascii(p, 'digests'); p = head(p, 4, idx.length)
  for (let k = 0; k < idx.length; k++) {
    const i = idx[k]; const d = ds[k]
    if (i >= pages || i < 0 || !Number.isInteger(i)) throw new CheckpointError(`state: page ${i} is outside memory of ${pages} pages`)
    if (d.length !== 32) throw new CheckpointError(`state: digest of page ${i} is ${d.length} bytes, expected 32`)
    buf[p++] = 0x82; p = head(p, 0, i); buf[p++] = 0x58; buf[p++] = 32
    buf.set(d, p); p += 32
  }
  p = ascii(p, 'globals'); p = head(p, 4, globals.length)
  for (const g of globals) {
    checkGlobal(g, 'state')
    buf[p++] = 0x83; p = head(p, 0, g.index); p = ascii(p, g.type)
    p = head(p, 2, g.bytes.length); buf.set(g.bytes, p); p += g.bytes.length
  }
  return createHash('sha256').update(buf.subarray(0, p)).digest()
}

/**
 * {@link stateRoot} for the successive checkpoints of one writer (checkpoint/writer.ts): keeps the
 * encoded `[index, digest]` rows of the last call and, when the page indices are the same in the
 * same order, rewrites only the rows whose digest is another array than last time — a checkpoint
 * that changes a few pages of a large memory re-encodes a few rows instead of one per page (1,024
 * for 64 MiB). Otherwise every row is encoded again. Same bytes, same result as {@link stateRoot}.
 * Digest arrays handed in must not be modified afterwards (a changed page gets a new digest array,
 * as runtime/memory.ts and every other caller of the writer do).
 */
export class StateRootCache {
  #rows = new Uint8Array(0)
  #len = 0
  #idx: number[] = []
  #refs: Uint8Array[] = []
  #offs: number[] = []

  /**
   * The state root of `s` (as {@link stateRoot}).
   * @throws CheckpointError as {@link stateRoot} (the cache is then dropped).
   */
  root (s: StateSummary): Uint8Array {
    try { return this.#root(s) } catch (e) { this.#idx = []; this.#refs = []; this.#offs = []; this.#len = 0; throw e }
  }

  #root (s: StateSummary): Uint8Array {
    const pages = s.pages
    if (!Number.isSafeInteger(pages) || pages < 0 || pages > MAX_PAGES) throw new CheckpointError(`state: page count ${pages} out of range 0..${MAX_PAGES}`)
    const digests = sortedByIndex(s.digests, (d) => d[0], 'page')
    const n = digests.length
    let same = n === this.#idx.length
    for (let k = 0; same && k < n; k++) if (digests[k][0] !== this.#idx[k]) same = false
    if (!same) this.#encodeRows(pages, digests)
    else {
      if (n > 0 && digests[n - 1][0] >= pages) throw new CheckpointError(`state: page ${digests[n - 1][0]} is outside memory of ${pages} pages`)
      const refs = this.#refs
      for (let k = 0; k < n; k++) {
        const d = digests[k][1]
        if (d === refs[k]) continue
        if (d.length !== 32) throw new CheckpointError(`state: digest of page ${digests[k][0]} is ${d.length} bytes, expected 32`)
        this.#rows.set(d, this.#offs[k])
        refs[k] = d
      }
    }
    const globals = sortedByIndex(s.globals, (g) => g.index, 'global')
    ensure(96 + globals.length * 32)
    let p = 0
    buf[p++] = 0xa5 // map(5), keys in canonical order: fuel, pages, budget, digests, globals
    p = ascii(p, 'fuel'); p = headBig(p, s.fuel, 'fuel')
    p = ascii(p, 'pages'); p = head(p, 0, pages)
    p = ascii(p, 'budget'); p = headBig(p, s.budget, 'budget')
    p = ascii(p, 'digests'); p = head(p, 4, n)
    const mid = p
    p = ascii(p, 'globals'); p = head(p, 4, globals.length)
    for (const g of globals) {
      checkGlobal(g, 'state')
      buf[p++] = 0x83; p = head(p, 0, g.index); p = ascii(p, g.type)
      p = head(p, 2, g.bytes.length); buf.set(g.bytes, p); p += g.bytes.length
    }
    return createHash('sha256').update(buf.subarray(0, mid)).update(this.#rows.subarray(0, this.#len)).update(buf.subarray(mid, p)).digest()
  }

  /** Encodes every row (checked as {@link stateRoot} checks them) into the kept buffer. */
  #encodeRows (pages: number, digests: [number, Uint8Array][]): void {
    const n = digests.length
    this.#idx = []; this.#refs = []; this.#offs = []; this.#len = 0
    ensure(n * 40)
    let p = 0
    const idx = new Array<number>(n); const refs = new Array<Uint8Array>(n); const offs = new Array<number>(n)
    for (let k = 0; k < n; k++) {
      const [i, d] = digests[k]
      if (i >= pages || i < 0 || !Number.isInteger(i)) throw new CheckpointError(`state: page ${i} is outside memory of ${pages} pages`)
      if (d.length !== 32) throw new CheckpointError(`state: digest of page ${i} is ${d.length} bytes, expected 32`)
      buf[p++] = 0x82; p = head(p, 0, i); buf[p++] = 0x58; buf[p++] = 32
      offs[k] = p; buf.set(d, p); p += 32
      idx[k] = i; refs[k] = d
    }
    if (this.#rows.length < p) this.#rows = new Uint8Array(Math.max(p, this.#rows.length * 2))
    this.#rows.set(buf.subarray(0, p))
    this.#len = p; this.#idx = idx; this.#refs = refs; this.#offs = offs
  }
}

const ZERO_PAGE = new Uint8Array(PAGE_SIZE)

/** True when a 64 KiB page is all zero bytes (such pages are omitted from checkpoints). */
export function isZeroPage (page: Uint8Array): boolean {
  return Buffer.compare(page, ZERO_PAGE) === 0
}
