/**
 * A map that remembers only recent keys: two generations of at most `max` entries each; when the
 * current one is full it becomes the old one (the previous old one is forgotten), and a key found
 * in the old one moves back to the current one. Memory stays ≤ 2 × `max` entries however long it
 * lives, and keys in use stay. For caches whose misses are only slower (a writer's "is this blob
 * already stored?", checkpoint/store.ts and checkpoint/pack.ts), never for facts.
 */
export class RecentMap<K, V> {
  readonly max: number
  #cur = new Map<K, V>()
  #old = new Map<K, V>()

  /** @param max entries per generation (≥ 1; Infinity: a plain map that never forgets). */
  constructor (max: number) { this.max = Math.max(1, max) }

  /** The value of `key`, or undefined when it is not (or no longer) remembered. */
  get (key: K): V | undefined {
    const v = this.#cur.get(key)
    if (v !== undefined || this.#old.size === 0) return v
    const o = this.#old.get(key)
    if (o !== undefined) { this.#old.delete(key); this.set(key, o) }
    return o
  }

  has (key: K): boolean { return this.get(key) !== undefined }

  /** Remembers `key` (replacing its value), as the most recent. */
  set (key: K, value: V): void {
    if (!this.#cur.has(key) && this.#cur.size >= this.max) { this.#old = this.#cur; this.#cur = new Map() }
    this.#cur.set(key, value)
  }

  /** Forgets everything. */
  clear (): void { this.#cur.clear(); this.#old.clear() }

  /** Entries remembered now (≤ 2 × max). */
  get size (): number { return this.#cur.size + this.#old.size }
}
