/**
 * The transpile thread of runtime/component.ts: loads jco (`@bytecodealliance/jco-transpile`, which
 * the main thread never loads), transpiles one component in instantiation mode and posts
 * `{ ok: true, glue, files: [name, bytes][], imports }` or `{ ok: false, message }` on
 * `workerData.port`, then sets `workerData.signal[0]` to 1 and notifies it (the requesting thread
 * waits in `Atomics.wait`). One request per thread.
 */
import { workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'

const { wasm, port, signal, options } = workerData as { wasm: Uint8Array; port: MessagePort; signal: Int32Array; options: Record<string, unknown> }

try {
  const jco = await import('@bytecodealliance/jco-transpile')
  const r = await jco.transpileBytes(wasm, { ...options, name: 'agent' })
  const files: [string, Uint8Array][] = []
  let glue: string | null = null
  for (const [name, bytes] of Object.entries(r.files)) {
    if (name === 'agent.js') glue = new TextDecoder().decode(bytes)
    else if (name.endsWith('.wasm')) files.push([name, bytes])
  }
  if (glue === null) throw new Error('jco produced no agent.js')
  port.postMessage({ ok: true, glue, files, imports: r.imports, exports: r.exports })
} catch (e) {
  port.postMessage({ ok: false, message: (e instanceof Error ? e.message : String(e)).split('\n')[0] })
} finally {
  port.close()
  Atomics.store(signal, 0, 1)
  Atomics.notify(signal, 0)
}
