/**
 * The helper thread of runtime/code-cache.ts: loads the instrumenter (runtime/instrument.ts and
 * binaryen) and answers each request `{ port, wasm, limit, file }` on `port` with
 * `{ ok: true, binary, globals }` or `{ ok: false, name, message, exitCode }` (the error thrown:
 * ModuleError, ManifestError, …), then sets `workerData.signal[0]` to 1 and notifies it, which
 * wakes the requesting thread blocked in `Atomics.wait` (one request at a time).
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { IgordError } from '../checkpoint/errors.ts'
import { rewrite } from './instrument.ts'
import { thrownMessage } from './module-facts.ts'

interface Request { port: MessagePort; wasm: Uint8Array; limit: number; file?: string; importedMemory?: boolean }

const signal = (workerData as { signal: Int32Array }).signal

if (parentPort === null) throw new Error('runtime/instrument-thread.ts must run in a worker thread')
parentPort.on('message', (m: Request) => {
  try {
    const r = rewrite(m.wasm, { memoryLimitPages: m.limit, ...(m.file === undefined ? {} : { file: m.file }), importedMemory: m.importedMemory === true })
    m.port.postMessage({ ok: true, binary: r.binary, globals: r.globals })
  } catch (e) {
    m.port.postMessage({ ok: false, name: e instanceof Error ? e.name : 'Error', message: thrownMessage(e), exitCode: e instanceof IgordError ? e.exitCode : null })
  } finally {
    m.port.close()
    Atomics.store(signal, 0, 1)
    Atomics.notify(signal, 0)
  }
})
