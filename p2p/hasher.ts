/**
 * SHA-256 of byte ranges of SharedArrayBuffers in a helper thread (p2p/hash-thread.ts), so that a
 * migration target hashes received pages beside the thread that carries the stream instead of on
 * it, and commits fresh shared memory ahead of the copies into it (docs/RATIONALE.md "Offer →
 * pending: …"). One thread per process, started on first use,
 * never keeping the process alive, ended after {@link IDLE_MS} without a request.
 */
import { Worker } from 'node:worker_threads'

/** How long the idle thread is kept for the next request, ms. */
const IDLE_MS = 30_000

interface Waiting { resolve (d: Uint8Array[]): void; reject (e: Error): void }
interface Thread { worker: Worker; waiting: Map<number, Waiting>; timer: NodeJS.Timeout | null }
let thread: Thread | null = null
let nextId = 1

/** The helper thread, started when there is none, its idle timer stopped (a request is coming). */
function take (): Thread {
  const t = thread ??= start()
  if (t.timer !== null) { clearTimeout(t.timer); t.timer = null }
  return t
}

/** Ends `t` after {@link IDLE_MS} unless a request comes first (it waits for none now). */
function idleLater (t: Thread): void {
  if (t.waiting.size !== 0 || thread !== t) return
  t.timer = setTimeout(() => { if (thread === t && t.waiting.size === 0) { thread = null; void t.worker.terminate() } }, IDLE_MS)
  t.timer.unref()
}

function start (): Thread {
  const url = new URL(import.meta.url.endsWith('.ts') ? './hash-thread.ts' : './hash-thread.js', import.meta.url)
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type')) // as runtime/code-cache.ts
  const t: Thread = { worker: new Worker(url, { execArgv }), waiting: new Map(), timer: null }
  t.worker.unref()
  const fail = (e: Error) => {
    if (thread === t) thread = null
    for (const w of t.waiting.values()) w.reject(e)
    t.waiting.clear()
  }
  t.worker.on('message', (m: { id: number; digests?: Uint8Array; error?: string }) => {
    const w = t.waiting.get(m.id)
    if (w === undefined) return
    t.waiting.delete(m.id)
    if (m.digests !== undefined) w.resolve(Array.from({ length: m.digests.length / 32 }, (_, k) => m.digests!.subarray(32 * k, 32 * k + 32)))
    else w.reject(new Error(`hash thread: ${m.error ?? 'no answer'}`))
    if (t.waiting.size === 0) t.worker.unref()
    idleLater(t)
  })
  t.worker.on('error', (e) => fail(new Error(`hash thread: ${e.message}`)))
  t.worker.on('exit', () => fail(new Error('hash thread: it exited')))
  return t
}

/**
 * The SHA-256 digests (32 bytes each, in order) of `views`, each a view of a SharedArrayBuffer,
 * computed in the helper thread; the views must not change until it answers.
 * @throws Error `hash thread: …` when the thread fails (the caller may hash here instead)
 */
export function hashShared (views: Uint8Array[]): Promise<Uint8Array[]> {
  if (views.length === 0) return Promise.resolve([])
  const buf = views[0].buffer
  if (!(buf instanceof SharedArrayBuffer) || views.some((v) => v.buffer !== buf)) return Promise.reject(new Error('hash thread: the views must share one SharedArrayBuffer'))
  const t = take()
  const id = nextId++
  t.worker.ref() // while an answer is awaited
  return new Promise((resolve, reject) => {
    t.waiting.set(id, { resolve, reject })
    t.worker.postMessage({ id, buf, ranges: views.map((v) => [v.byteOffset, v.length]) })
  })
}

/**
 * Has the helper thread commit the memory of `buf` (a fresh SharedArrayBuffer that this thread is
 * about to fill) ahead of this thread's writes: the page faults of first touch are then taken
 * there, not on the thread that copies received bytes in. It compare-exchanges 0 for 0 on one word
 * of each 4 KiB page (one write fault per page), so it never changes a byte, whatever this thread
 * wrote meanwhile. Never throws.
 */
export function touchShared (buf: SharedArrayBuffer): void {
  try {
    const t = take()
    t.worker.postMessage({ id: 0, buf, ranges: [], touch: true })
    idleLater(t)
  } catch { /* only slower */ }
}
