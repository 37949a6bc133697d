/**
 * The thread of p2p/hasher.ts: answers each request `{ id, buf, ranges }` (`buf` a
 * SharedArrayBuffer, `ranges` `[offset, length]` pairs in it) with `{ id, digests }`: the SHA-256
 * of each range, 32 bytes each, in order, in one buffer (transferred); `{ id, error }` when one
 * cannot be hashed.
 */
import { hash } from 'node:crypto'
import { parentPort } from 'node:worker_threads'

interface Request { id: number; buf: SharedArrayBuffer; ranges: [number, number][] }

if (parentPort === null) throw new Error('p2p/hash-thread.ts must run in a worker thread')
const port = parentPort
port.on('message', (m: Request) => {
  try {
    const out = new Uint8Array(32 * m.ranges.length)
    m.ranges.forEach(([off, len], k) => out.set(hash('sha256', new Uint8Array(m.buf, off, len), 'buffer'), 32 * k))
    port.postMessage({ id: m.id, digests: out }, [out.buffer])
  } catch (e) {
    port.postMessage({ id: m.id, error: (e as Error).message })
  }
})
