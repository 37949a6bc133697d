/**
 * The client side of a node's control socket (docs/PROTOCOL.md "Control socket"; the server is
 * p2p/control.ts): one JSON request line per connection, progress lines, one final answer. A module
 * of its own, importing neither the node, the checkpoint writer nor the mailbox, so that `igord ps`,
 * `stop`, `send --node` and the other client commands start fast (docs/RATIONALE.md "CLI startup").
 */
import * as net from 'node:net'
import * as path from 'node:path'
import { EXIT, IgordError } from '../checkpoint/errors.ts'
import { controlSocketPath } from '../checkpoint/layout.ts'
import { NetworkError } from './errors.ts'

/** Path of a data directory's control socket (absolute). */
export function controlPath (dir: string): string { return path.resolve(controlSocketPath(dir)) }

/** `JSON.stringify` replacer of control lines: bigints are written as decimal strings. */
export function jsonSafe (_k: string, v: unknown): unknown { return typeof v === 'bigint' ? v.toString() : v }

/**
 * Sends one request to the node serving `dir` and returns its final answer (without `ok`);
 * `onProgress` receives each progress object.
 * @throws NetworkError (exit 9) when no node serves `dir`; the node's error, with its exit code,
 *   when the request failed
 */
export function controlRequest (dir: string, req: Record<string, unknown>, onProgress?: (p: Record<string, unknown>) => void): Promise<Record<string, unknown>> {
  const file = controlPath(dir)
  return new Promise((resolve, reject) => {
    const sock = net.connect(file)
    let buf = ''
    let done = false
    sock.setEncoding('utf8')
    sock.on('connect', () => sock.write(JSON.stringify(req, jsonSafe) + '\n'))
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (done) return
      done = true
      reject(new NetworkError(e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
        ? `no node is running on ${dir} (cannot connect to ${file}); start one with 'igord node --data ${dir}'`
        : `${file}: ${e.message}`))
    })
    sock.on('data', (d: string) => {
      buf += d
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl); buf = buf.slice(nl + 1)
        const m = JSON.parse(line) as Record<string, unknown>
        if (m.progress !== undefined) { onProgress?.(m.progress as Record<string, unknown>); continue }
        done = true
        sock.end()
        if (m.ok === true) { const { ok: _ok, ...rest } = m; resolve(rest) } else reject(new IgordError(String(m.error), Number(m.exit ?? EXIT.INTERNAL), typeof m.code === 'string' ? m.code : undefined))
      }
    })
    sock.on('close', () => { if (!done) { done = true; reject(new NetworkError(`${file}: the node closed the connection without an answer`)) } })
  })
}
