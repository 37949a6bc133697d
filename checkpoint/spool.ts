/**
 * Durable per-agent files between checkpoints (docs/FORMAT.md "Data directory"):
 *
 * - the inbox spool `<dir>/inbox/<name>/<seq:012>.cbor`: every message the host took for the agent
 *   and numbered, written (fsynced, renamed into place, directory fsynced) before the sender is told
 *   it arrived. A checkpoint's I/O state then holds what the agent has not consumed; files up to
 *   its `last` seq are pruned after that checkpoint is durable. On resume, spool files past the
 *   checkpoint's `last` are taken back into the inbox, so a crash loses no message.
 * - drop files `<dir>/inbox/<name>/in-<id hex>.cbor`: messages left by `igord send --dir` while
 *   another process runs the agent; that process numbers them (then removes the drop file). Named by
 *   the message id, so sending the same id twice leaves one file.
 * - the effect journal `<dir>/effects/<name>/<request id>.sent`: written before an unsafe HTTP
 *   request leaves the host, so that after a crash igord knows it may have been sent (and reports it
 *   "in doubt" instead of sending it again).
 *
 * Nothing here deletes a message that is not also in a durable checkpoint.
 */
import fs from 'node:fs'
import path from 'node:path'
import { CheckpointError, StorageError } from './errors.ts'
import { decodeMessage, encodeMessage, idHex } from './io.ts'
import type { Message } from './io.ts'
import { dropFileName, effectsDir, inboxDir, makePrivateDir, seqOfSpoolName, spoolFileName } from './layout.ts'
import { atomicWrite, fsyncDir } from './store.ts'

function ioError (step: string, p: string, e: unknown): StorageError {
  return new StorageError(`${p}: cannot ${step}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
}

function list (dir: string): string[] {
  try { return fs.readdirSync(dir) } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw ioError('list', dir, e)
  }
}

/** Largest spool or drop file read back, bytes (a message body is at most 1 MiB; HTTP bodies 16 MiB). */
const MAX_SPOOL_FILE = 20 * 1024 * 1024

function readMessage (file: string): Message {
  let bytes: Uint8Array
  try {
    if (fs.statSync(file).size > MAX_SPOOL_FILE) throw new CheckpointError(`${file}: larger than ${MAX_SPOOL_FILE} bytes; not an inbox message`)
    bytes = fs.readFileSync(file)
  } catch (e) {
    if (e instanceof CheckpointError) throw e
    throw ioError('read', file, e)
  }
  return decodeMessage(bytes, file)
}

/** One agent's inbox spool and drop files (see the module doc). */
export class InboxSpool {
  /** `<dir>/inbox/<name>`. */
  readonly dir: string
  /**
   * Group commit (runtime/worker.ts `deliverMany`): while true, {@link put} writes, fsyncs and
   * renames each file but leaves the directory's fsync to {@link flush}, which must succeed before
   * any message so written is acknowledged.
   */
  deferDirSync = false
  /** A file was renamed into place and the directory not fsynced since. */
  #unsynced = false
  /**
   * Every spool file with a seq ≤ this was removed by {@link prune} (-1: none yet). Seqs only grow
   * (the agent's mailbox numbers messages past its I/O state's `last`), so a prune up to no more
   * than this has nothing to remove and does not list the directory: an idle agent's checkpoint
   * costs no directory scan.
   */
  #prunedUpTo = -1

  /** @param dataDir the data directory; @param name the agent name (already checked by the caller). */
  constructor (dataDir: string, name: string) {
    this.dir = inboxDir(dataDir, name)
  }

  #ensureDir (): void {
    try { makePrivateDir(this.dir) } catch (e) { throw ioError('create directory', this.dir, e) }
  }

  /**
   * Stores a numbered message durably (mode 0600) as `<seq:012>.cbor`.
   * @throws StorageError on I/O failure (nothing is stored then); Error when `seq` < 1
   */
  put (m: Message): void {
    if (!Number.isSafeInteger(m.seq) || m.seq < 1) throw new Error(`InboxSpool.put: message without a seq (${m.seq})`)
    if (m.seq <= this.#prunedUpTo) this.#prunedUpTo = m.seq - 1
    this.#ensureDir()
    if (this.deferDirSync) this.#unsynced = true // set before: a failure after the rename leaves it unsynced too
    atomicWrite(path.join(this.dir, spoolFileName(m.seq)), encodeMessage(m), undefined, !this.deferDirSync)
    if (!this.deferDirSync) this.#unsynced = false // that fsync of the directory covered every earlier rename
  }

  /**
   * Fsyncs the directory when a {@link put} under {@link deferDirSync} left it unsynced: after it,
   * every message written is durable.
   * @throws StorageError when the fsync fails (the spool stays unsynced: call it again before acknowledging anything)
   */
  flush (): void {
    if (!this.#unsynced) return
    fsyncDir(this.dir)
    this.#unsynced = false
  }

  /**
   * The spooled messages with seq > `after`, ascending.
   * @throws CheckpointError naming a file that is not a valid message or whose seq differs from its
   *   name; StorageError when the directory cannot be read
   */
  list (after = 0): Message[] {
    const out: Message[] = []
    for (const n of list(this.dir).sort()) {
      const seq = seqOfSpoolName(n)
      if (seq === null || seq <= after) continue
      const file = path.join(this.dir, n)
      const m = readMessage(file)
      if (m.seq !== seq) throw new CheckpointError(`${file}: holds message seq ${m.seq}, not ${seq}`)
      out.push(m)
    }
    return out
  }

  /** The highest seq in the spool (0 when empty). */
  lastSeq (): number {
    let last = 0
    for (const n of list(this.dir)) { const s = seqOfSpoolName(n); if (s !== null && s > last) last = s }
    return last
  }

  /**
   * Removes spool files with seq ≤ `upto`: call only after a durable checkpoint whose I/O state's
   * `last` is ≥ `upto` (it holds every such message that was not consumed).
   * @throws StorageError on I/O failure
   */
  prune (upto: number): void {
    if (upto <= this.#prunedUpTo) return
    let removed = false
    for (const n of list(this.dir)) {
      const seq = seqOfSpoolName(n)
      if (seq === null || seq > upto) continue
      try { fs.unlinkSync(path.join(this.dir, n)) } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('remove', path.join(this.dir, n), e) }
      removed = true
    }
    if (removed) fsyncDir(this.dir)
    this.#prunedUpTo = upto
  }

  /**
   * Leaves a message (seq 0) for the process running the agent, as `in-<id hex>.cbor` (durable).
   * @throws StorageError on I/O failure
   */
  putDrop (m: Message): void {
    this.#ensureDir()
    atomicWrite(path.join(this.dir, dropFileName(idHex(m.id))), encodeMessage({ ...m, seq: 0 }))
  }

  /**
   * Dropped messages, oldest first (by time, then id), each with its file. A drop file that is not a
   * valid message is renamed to `.bad-<name>` (kept, never deleted) and skipped.
   * @throws StorageError when the directory cannot be read
   */
  drops (): { file: string; msg: Message }[] {
    const out: { file: string; msg: Message }[] = []
    for (const n of list(this.dir)) {
      if (!/^in-[0-9a-f]{32}\.cbor$/.test(n)) continue
      const file = path.join(this.dir, n)
      try { out.push({ file, msg: readMessage(file) }) } catch { this.setAside(file) }
    }
    return out.sort((a, b) => (a.msg.time < b.msg.time ? -1 : a.msg.time > b.msg.time ? 1 : Buffer.compare(a.msg.id, b.msg.id)))
  }

  /**
   * Renames a drop file that cannot be taken (not a valid message, or refused for good: a bad
   * top-up signature, a body over the agent's limit) to `.bad-<name>` in the same directory: kept
   * for the operator, never deleted, no longer offered by {@link drops}. Best effort.
   * @returns the new path, or null when it could not be renamed
   */
  setAside (file: string): string | null {
    const to = path.join(path.dirname(file), `.bad-${path.basename(file)}`)
    try { fs.renameSync(file, to); return to } catch { return null }
  }

  /** Removes a drop file once its message is numbered and spooled (or found to be a duplicate). */
  removeDrop (file: string): void {
    try { fs.unlinkSync(file) } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('remove', file, e) }
  }

  /** Messages waiting: spooled past `after` plus dropped (for the inbox limit of a stopped agent). */
  count (after: number): number {
    let k = 0
    for (const n of list(this.dir)) {
      const s = seqOfSpoolName(n)
      if ((s !== null && s > after) || /^in-[0-9a-f]{32}\.cbor$/.test(n)) k++
    }
    return k
  }
}

/** One agent's journal of unsafe HTTP requests that may have left the host (see the module doc). */
export class EffectJournal {
  /** `<dir>/effects/<name>`. */
  readonly dir: string

  /** @param dataDir the data directory; @param name the agent name. */
  constructor (dataDir: string, name: string) {
    this.dir = effectsDir(dataDir, name)
  }

  #file (id: number): string { return path.join(this.dir, `${id}.sent`) }
  /**
   * The ids of the marks in the journal, once {@link prune} has listed it (null before): only this
   * object writes marks for its agent while it runs it, so later prunes remove from this set
   * instead of listing the directory at every checkpoint.
   */
  #marks: Set<number> | null = null

  /**
   * Records, durably, that request `id` is about to be sent. Call before the first byte leaves.
   * @throws StorageError on I/O failure (then the request must not be sent)
   */
  markSent (id: number): void {
    try { makePrivateDir(this.dir) } catch (e) { throw ioError('create directory', this.dir, e) }
    atomicWrite(this.#file(id), new Uint8Array(0))
    this.#marks?.add(id)
  }

  /** True when request `id` may have been sent (its mark exists). */
  wasSent (id: number): boolean {
    return fs.existsSync(this.#file(id))
  }

  /**
   * Removes the marks of requests that are no longer pending in a durable checkpoint (their
   * outcome is recorded); `keep` is the set of request ids still pending.
   */
  prune (keep: ReadonlySet<number>): void {
    if (this.#marks === null) {
      this.#marks = new Set()
      for (const n of list(this.dir)) {
        const m = /^(\d+)\.sent$/.exec(n)
        if (m !== null) this.#marks.add(Number(m[1]))
      }
    }
    for (const id of this.#marks) {
      if (keep.has(id)) continue
      try { fs.unlinkSync(this.#file(id)) } catch { /* gone */ }
      this.#marks.delete(id)
    }
  }
}
