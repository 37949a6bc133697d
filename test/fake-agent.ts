/**
 * A stand-in for the runtime in checkpoint-writer tests (test/writer.test.ts,
 * test/live-append.test.ts): a page map (64 KiB pages), a dirty set and the counters a checkpoint
 * header carries, written through a real {@link CheckpointWriter}.
 */
import { createHash } from 'node:crypto'
import type { Identity } from '../checkpoint/identity.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import type { CheckpointWriter, Snapshot } from '../checkpoint/writer.ts'

/** A fake agent: `poke`/`zero` pages, then `write` a checkpoint of what changed. */
export class FakeAgent {
  pages = new Map<number, Buffer>()
  dirty = new Set<number>()
  tick = 0; fuel = 0n; budget = 1_000_000n
  prev: string | null = null
  readonly id: Identity
  /** Memory size in 64 KiB pages. */
  readonly pageCount: number
  /** The event log written with a checkpoint of `tick` when `write` is given none. */
  readonly logOf: (tick: number) => Uint8Array | null
  constructor (id: Identity, opts: { pageCount?: number; logOf?: (tick: number) => Uint8Array | null } = {}) {
    this.id = id
    this.pageCount = opts.pageCount ?? 4
    this.logOf = opts.logOf ?? (() => null)
  }
  /** Sets byte `at` of page `i` to `v`. */
  poke (i: number, at: number, v: number) {
    let p = this.pages.get(i)
    if (p === undefined) { p = Buffer.alloc(PAGE_SIZE); this.pages.set(i, p) }
    p[at] = v; this.dirty.add(i)
  }
  /** Makes page `i` all zero. */
  zero (i: number) { this.pages.delete(i); this.dirty.add(i) }
  /** The snapshot of the memory now (pages copied), and the dirty set cleared. */
  snapshot (): Snapshot {
    const pages = [...this.pages.entries()].sort((a, b) => a[0] - b[0]).map(([i, p]): [number, Uint8Array] => [i, Buffer.from(p)])
    const s: Snapshot = { pageCount: this.pageCount, pages, digests: pages.map(([i, p]) => [i, createHash('sha256').update(p).digest()]), changed: [...this.dirty], globals: [{ index: 0, type: 'i32', bytes: Uint8Array.of(this.tick & 255, 0, 0, 0) }] }
    this.dirty.clear()
    return s
  }
  /** Writes a checkpoint of the next tick through `w`; returns the writer's result. */
  write (w: CheckpointWriter, log: Uint8Array | null = this.logOf(this.tick)) {
    const r = w.write({ identity: this.id, wasm: Buffer.from('\0asmfake'), manifest: Buffer.from('{}'), snapshot: this.snapshot(), tick: this.tick, epoch: 0, prev: this.prev, fuel: this.fuel, budget: this.budget, price: 1000n, host: 'hostA', status: 'running', log })
    this.prev = r.cid; this.tick++; this.fuel += 100n; this.budget -= 1n
    return r
  }
}
