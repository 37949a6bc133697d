/**
 * Gives a tick thread's memory back after agents hibernate (runtime/agent.ts `hibernate`): a
 * dropped instance's linear memory and its committed copy (runtime/memory.ts, one slab per agent)
 * are freed only when V8 collects them, and an idle worker rarely runs a full collection. So after
 * a hibernation {@link reclaimSoon} schedules one full GC of this thread's heap, once per burst:
 * {@link RECLAIM_DELAY_MS} after the first hibernation of the burst, and at most once per
 * {@link RECLAIM_GAP_MS}. A GC stops this thread's ticks for its duration (a few ms to tens of ms
 * for a worker holding hundreds of agents), which is why it is not run per hibernation.
 *
 * `gc` is not exposed by default: it is taken once from a fresh context with `--expose-gc` set for
 * that moment only (node:v8 `setFlagsFromString`, then unset, so other contexts do not get a `gc`
 * global). Where that fails, nothing is collected early (V8's own heuristics still run).
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Wait after the first hibernation of a burst before collecting, ms. */
export const RECLAIM_DELAY_MS = 1000
/** Least time between two collections, ms. */
export const RECLAIM_GAP_MS = 5000

let gcFn: (() => void) | null | undefined
let timer: NodeJS.Timeout | null = null
let last = -Infinity
let runs = 0

/** This thread's full-GC function, or null when it cannot be had. */
export function gcFunction (): (() => void) | null {
  if (gcFn !== undefined) return gcFn
  const own = (globalThis as { gc?: unknown }).gc
  if (typeof own === 'function') return (gcFn = own as () => void)
  gcFn = null
  try {
    setFlagsFromString('--expose-gc')
    try {
      const f: unknown = runInNewContext('typeof gc === "function" ? gc : null')
      if (typeof f === 'function') gcFn = f as () => void
    } finally { setFlagsFromString('--no-expose-gc') }
  } catch { gcFn = null }
  return gcFn
}

/**
 * Schedules one full GC of this thread (see the module doc); a no-op when one is already
 * scheduled. The timer does not keep the thread alive.
 */
export function reclaimSoon (): void {
  if (timer !== null) return
  const at = Math.max(performance.now() + RECLAIM_DELAY_MS, last + RECLAIM_GAP_MS)
  timer = setTimeout(() => {
    timer = null
    last = performance.now()
    const gc = gcFunction()
    if (gc !== null) { gc(); runs++ }
  }, at - performance.now())
  timer.unref()
}

/** Full collections run by {@link reclaimSoon} in this thread so far (for tests and `bench/`). */
export function reclaimRuns (): number { return runs }
