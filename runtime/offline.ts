/**
 * Delivering to an agent that no process hosts right now, or that `igord run` hosts in another
 * process: `igord send --dir` and `igord fund --dir` / `fund x.ckpt` (docs/ABI.md "Inbox").
 *
 * - Nobody holds the agent's writer lock (checkpoint/lock.ts): this process takes it, numbers the
 *   message after the live checkpoint's I/O state and the spool, and writes it to the spool (durable)
 *   — the next `resume` takes it in.
 * - Another process holds it (`igord run`/`resume`): the message is left as a drop file, which that
 *   process numbers within a quarter second (or the next resume does).
 *
 * Limits and duplicates are checked against what is on disk: the checkpoint's pending messages and
 * last consumed ids, plus the spool and drop files.
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { decodeIo, emptyIo } from '../checkpoint/io.ts'
import type { IoState } from '../checkpoint/io.ts'
import { livePath } from '../checkpoint/layout.ts'
import { LockedError, lockAgent } from '../checkpoint/lock.ts'
import { readLive } from '../checkpoint/live.ts'
import { InboxSpool } from '../checkpoint/spool.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { DeliveryRefused } from './mailbox.ts'
import type { Incoming } from './mailbox.ts'

/** What {@link deliverOffline} did: numbered `seq` into the spool, found a `duplicate`, or `dropped` it for a running process. */
export interface OfflineDelivery { seq: number; duplicate: boolean; dropped: boolean; did: string; budget: bigint }

/**
 * Stores a message for agent `name` of data directory `dir` (see the module doc).
 * @throws DeliveryRefused (exit 11) when there is no such agent, it has finished or was handed off,
 *   its inbox is full or the message is over its `max_message_bytes`; CheckpointError for a bad
 *   live file or spool file; StorageError
 */
export function deliverOffline (dir: string, name: string, m: Incoming): OfflineDelivery {
  const file = resolve(livePath(dir, name))
  if (!existsSync(file)) throw new DeliveryRefused(`no agent named ${name} in ${dir} (no ${file})`)
  let lock: ReturnType<typeof lockAgent> | null = null
  try { lock = lockAgent(dir, name) } catch (e) { if (!(e instanceof LockedError)) throw e }
  try {
    const live = readLive(file)
    const h = live.parsed
    if (h.status === 'finished' || h.status === 'handoff') throw new DeliveryRefused(`${name} ${h.status === 'finished' ? `finished at tick ${h.tick}` : `was handed off to ${h.target ?? 'another host'}`}; it takes no more messages`)
    const io: IoState = live.io === null ? emptyIo() : decodeIo(live.io, `${file} (io)`)
    const spool = new InboxSpool(dir, name)
    const spooled = spool.list(io.last)
    const same = (x: Uint8Array): boolean => Buffer.compare(x, m.id) === 0
    const base = { did: h.agent, budget: h.budget }
    if (io.pending.some((p) => same(p.id)) || io.seen.some(same) || spooled.some((p) => same(p.id))) return { seq: 0, duplicate: true, dropped: false, ...base }
    const manifest = parseManifest(live.manifest, `${file} (manifest)`)
    if (m.kind === 'message' && !manifest.capabilities.has('inbox')) throw new DeliveryRefused(`${name} does not read messages (its manifest does not grant capability "inbox")`)
    if (m.kind === 'message' || m.kind === 'fund') {
      const lim = manifest.inbox
      if (m.body.length > lim.maxMessageBytes) throw new DeliveryRefused(`message to ${name} is ${m.body.length} bytes, over its max_message_bytes ${lim.maxMessageBytes}`)
      const waiting = [...io.pending, ...spooled].filter((p) => p.kind === 'message' || p.kind === 'fund').length + (lock === null ? spool.drops().length : 0)
      if (waiting >= lim.maxMessages) throw new DeliveryRefused(`inbox of ${name} is full (${lim.maxMessages} messages waiting)`)
    }
    if (lock === null) {
      spool.putDrop({ ...m, seq: 0 })
      return { seq: 0, duplicate: false, dropped: true, ...base }
    }
    const seq = Math.max(io.last, spool.lastSeq()) + 1
    spool.put({ ...m, seq })
    return { seq, duplicate: false, dropped: false, ...base }
  } finally {
    lock?.release()
  }
}
