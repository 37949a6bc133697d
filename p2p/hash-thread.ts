/**
 * The thread of p2p/hasher.ts: answers each request `{ id, buf, ranges }` (`buf` a
 * SharedArrayBuffer, `ranges` `[offset, length]` pairs in it) with `{ id, digests }`: the SHA-256
 * of each range, 32 bytes each, in order, in one buffer (transferred); `{ id, error }` when one
 * cannot be hashed. `{ buf, touch: true }`: commits `buf`'s memory (one compare-exchange of 0 for 0 per 4 KiB),
 * no answer.
 */
import { hash } from 'node:crypto'
import { parentPort } from 'node:worker_threads'

interface Request { id: number; buf: SharedArrayBuffer; ranges: [number, number][]; touch?: boolean }

/**
 * Commits the memory of `words` with one write fault per 4 KiB and no byte changed, whatever
 * another thread wrote meanwhile: a compare-exchange of 0 for 0 on one word of each 4 KiB is a
 * single locked write access (x86 `lock cmpxchg`), so the kernel maps a fresh zeroed page at once.
 * `Atomics.add(w, i, 0)` is a load and then a compare-exchange in V8: the load maps the shared zero
 * page, and the write then faults again to replace it, flushing the TLBs of every core the process
 * runs on (an inter-processor interrupt; measured in docs/RATIONALE.md "Fresh memory: one fault
 * per page, not two").
 */
function touch (words: Int32Array): void {
  for (let i = 0; i < words.length; i += 1024) Atomics.compareExchange(words, i, 0, 0)
}

if (parentPort === null) throw new Error('p2p/hash-thread.ts must run in a worker thread')
const port = parentPort
port.on('message', (m: Request) => {
  if (m.touch === true) { // commit the memory ahead of the thread that will write it (see touch below)
    touch(new Int32Array(m.buf, 0, Math.floor(m.buf.byteLength / 4)))
    return
  }
  try {
    const out = new Uint8Array(32 * m.ranges.length)
    m.ranges.forEach(([off, len], k) => out.set(hash('sha256', new Uint8Array(m.buf, off, len), 'buffer'), 32 * k))
    port.postMessage({ id: m.id, digests: out }, [out.buffer])
  } catch (e) {
    port.postMessage({ id: m.id, error: (e as Error).message })
  }
})
