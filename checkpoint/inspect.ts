/**
 * `igord inspect`: what a live checkpoint holds, as a JSON-able object and as text. The file is
 * fully checked first (signature, CIDs, state root — see live.ts), so what is shown is authentic.
 */
import * as fs from 'node:fs'
import { StorageError } from './errors.ts'
import { decodeIo } from './io.ts'
import { readLive } from './live.ts'
import { PAGE_SIZE } from './state.ts'

/**
 * A live checkpoint summarised. 64-bit counters are decimal strings: `fuel` (units), `budget`
 * (microcents), `price` (microcents per million fuel). `stateRoot` is hex. `memoryBytes` = pageCount × 65536; `nonZeroPages` the pages
 * stored; `logBytes` the embedded event-log segment's size (0 when none); `fileBytes` the file size.
 * `inbox`: messages waiting (not consumed), HTTP requests without outcome, messages the agent sent
 * that no recipient's host acknowledged yet (`outbox`, sent again by whoever hosts it next), and the agent's sleep
 * (`null` default pace, `"message"` until the next message, else an ISO time), and `blocked`: a
 * `message_send` found the outbox full and the agent waits for room — from the I/O state.
 */
export interface InspectView {
  file: string; did: string; tick: number; epoch: number; status: string; reason: string | null; target: string | null
  fuel: string; budget: string; price: string; code: string; manifest: string; prev: string | null; stateRoot: string
  pageCount: number; nonZeroPages: number; memoryBytes: number; globals: number; host: string; time: string
  log: string | null; logBytes: number; fileBytes: number
  inbox: { waiting: number; requests: number; outbox: number; lastSeq: number; sleep: string | null; blocked: boolean }
}

/**
 * Reads, checks and summarises the live checkpoint at `path`.
 * @throws StorageError when unreadable; CheckpointError when corrupt, truncated, of an unknown
 *   version or badly signed.
 */
export function inspectLive (path: string): InspectView {
  const c = readLive(path)
  let fileBytes: number
  try { fileBytes = fs.statSync(path).size } catch (e) { throw new StorageError(`${path}: cannot stat: ${(e as NodeJS.ErrnoException).code ?? e}`) }
  const h = c.parsed
  const io = c.io === null ? null : decodeIo(c.io, `${path} (io)`)
  const sleep = io?.sleep ?? null
  return {
    file: path,
    did: h.agent,
    tick: h.tick,
    epoch: h.epoch,
    status: h.status,
    reason: h.reason ?? null,
    target: h.target ?? null,
    fuel: h.fuel.toString(),
    budget: h.budget.toString(),
    price: h.price.toString(),
    code: h.code,
    manifest: h.manifest,
    prev: h.prev,
    stateRoot: Buffer.from(h.state).toString('hex'),
    pageCount: c.pageCount,
    nonZeroPages: c.pages.length,
    memoryBytes: c.pageCount * PAGE_SIZE,
    globals: c.globals.length,
    host: h.host,
    time: new Date(h.time).toISOString(),
    log: h.log,
    logBytes: c.log?.length ?? 0,
    fileBytes,
    inbox: {
      waiting: io?.pending.length ?? 0,
      requests: io?.requests.length ?? 0,
      outbox: io?.outbox.length ?? 0,
      lastSeq: io?.last ?? 0,
      sleep: sleep === null ? null : sleep === 0n ? 'message' : new Date(Number(sleep / 1_000_000n)).toISOString(),
      blocked: io?.blocked ?? false,
    },
  }
}

function bytes (n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}

/** Human view of an {@link InspectView}: one `label  value` line per field. */
export function formatInspect (v: InspectView): string {
  const rows: [string, string][] = [
    ['file', `${v.file} (${bytes(v.fileBytes)})`],
    ['agent', v.did],
    ['status', v.status + (v.target ? ` → ${v.target}` : '') + (v.reason ? ` (${v.reason})` : '')],
    ['tick', String(v.tick)],
    ['epoch', String(v.epoch)],
    ['host', v.host],
    ['written', v.time],
    ['fuel', v.fuel],
    ['budget', `${v.budget} microcents`],
    ['price', `${v.price} microcents per million fuel`],
    ['memory', `${v.pageCount} pages (${bytes(v.memoryBytes)}), ${v.nonZeroPages} non-zero`],
    ['globals', String(v.globals)],
    ['event log', v.log === null ? 'none' : `${bytes(v.logBytes)} (${v.log})`],
    ['inbox', `${v.inbox.waiting} waiting, ${v.inbox.requests} HTTP request${v.inbox.requests === 1 ? '' : 's'} without outcome, ${v.inbox.outbox} in the outbox (sent, not yet acknowledged), last message #${v.inbox.lastSeq}${v.inbox.sleep === null ? '' : v.inbox.sleep === 'message' ? '; sleeping until a message' : `; sleeping until ${v.inbox.sleep}`}${v.inbox.blocked ? '; its outbox was full: waiting for room' : ''}`],
    ['code', v.code],
    ['manifest', v.manifest],
    ['state root', v.stateRoot],
    ['prev', v.prev ?? '(genesis)'],
  ]
  return rows.map(([k, x]) => `${k.padEnd(11)}${x}`).join('\n')
}
