/**
 * Group commit of checkpoints across the agents of one thread (issue 10; docs/RATIONALE.md "Group
 * commit"): each checkpoint is written unsynced ({@link CheckpointWriter.begin}: blobs, signed
 * header, the live file's delta record), and the live files' `fdatasync`s of every checkpoint
 * begun while the thread was busy run together on libuv's thread pool once the thread has run what
 * was ready (`setImmediate`), instead of one after the other on the thread. ext4's journal commits
 * concurrent syncs together, and the thread ticks other agents while the disk works.
 *
 * Durability is the writer's, unchanged: a checkpoint's promise settles only after its record's
 * fdatasync returned and {@link CheckpointWriter.end} wrote its history entry, so a caller that
 * shows nothing of a tick before that (runtime/runner.ts: messages, HTTP requests, status, the next
 * tick) shows nothing a power cut could take. When any sync of a batch fails, every checkpoint of
 * the batch fails (StorageError; each writer then writes its next checkpoint whole, as after any
 * StorageError): a failed fdatasync says the disk lost something, and the batch's records share it.
 */
import * as fs from 'node:fs'
import { StorageError } from './errors.ts'
import type { CheckpointWriter, PendingCheckpoint, WriteArgs, WrittenCheckpoint } from './writer.ts'

interface Queued {
  writer: CheckpointWriter
  p: PendingCheckpoint
  resolve (w: WrittenCheckpoint): void
  reject (e: Error): void
}

/** Counts of a {@link GroupCommit} since it was made: batches flushed, checkpoints in them, syncs failed. */
export interface GroupCommitStats { batches: number; checkpoints: number; failed: number }

/** See the module doc. One per thread is enough ({@link groupCommit}); `sync` is replaceable for tests. */
export class GroupCommit {
  readonly #queue: Queued[] = []
  #scheduled = false
  readonly #sync: (fd: number, cb: (err: Error | null) => void) => void
  /** see {@link GroupCommitStats} */
  readonly stats: GroupCommitStats = { batches: 0, checkpoints: 0, failed: 0 }

  /** `sync` (default `fs.fdatasync` on libuv's pool) makes one descriptor's data durable and calls back once. */
  constructor (sync?: (fd: number, cb: (err: Error | null) => void) => void) {
    this.#sync = sync ?? ((fd, cb) => fs.fdatasync(fd, cb))
  }

  /** Checkpoints begun and not yet settled. */
  get pending (): number { return this.#queue.length }

  /**
   * Writes `a` with `writer` ({@link CheckpointWriter.begin}) now, and settles once its record is
   * durable and its history entry written ({@link CheckpointWriter.end}); a checkpoint that needs no
   * sync (a whole write of the live file, already durable) settles at once.
   * @returns the checkpoint written, as {@link CheckpointWriter.write}.
   * @throws (rejects) as `begin` and `end`; StorageError when any sync of its batch failed.
   */
  commit (writer: CheckpointWriter, a: WriteArgs): Promise<WrittenCheckpoint> {
    let p: PendingCheckpoint
    try { p = writer.begin(a) } catch (e) { return Promise.reject(e) }
    if (p.fd === null) {
      try { return Promise.resolve(writer.end(p, null)) } catch (e) { return Promise.reject(e) }
    }
    return new Promise<WrittenCheckpoint>((resolve, reject) => {
      this.#queue.push({ writer, p, resolve, reject })
      if (!this.#scheduled) { this.#scheduled = true; setImmediate(() => this.#flush()) }
    })
  }

  /** Syncs every queued descriptor at once, then ends each checkpoint (all failed when one sync failed). */
  #flush (): void {
    this.#scheduled = false
    const batch = this.#queue.splice(0)
    if (batch.length === 0) return
    this.stats.batches++
    this.stats.checkpoints += batch.length
    const errors: (Error | null)[] = new Array(batch.length).fill(null)
    let left = batch.length
    const settle = (): void => {
      const k = errors.findIndex((e) => e !== null)
      if (k >= 0) this.stats.failed++
      for (let i = 0; i < batch.length; i++) {
        const { writer, p, resolve, reject } = batch[i]
        const err = errors[i] ?? (k < 0 ? null : new StorageError(`${writer.livePath}: checkpoint (tick ${p.header.tick}) not made durable: the sync of ${batch[k].writer.livePath} in the same group commit failed: ${(errors[k] as NodeJS.ErrnoException).code ?? errors[k]!.message}`))
        try { resolve(writer.end(p, err)) } catch (e) { reject(e as Error) }
      }
    }
    for (let i = 0; i < batch.length; i++) {
      let called = false
      const done = (err: Error | null): void => {
        if (called) return
        called = true
        errors[i] = err
        if (--left === 0) settle()
      }
      try { this.#sync(batch[i].p.fd!, done) } catch (e) { done(e as Error) }
    }
  }
}

/** The group commit of this thread (a tick worker, or the main thread of `igord run`). */
export const groupCommit = new GroupCommit()
