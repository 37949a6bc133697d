/**
 * Group commit of checkpoints across the agents of one thread (issue 10; docs/RATIONALE.md "Group
 * commit across agents, built"): each checkpoint is written unsynced ({@link CheckpointWriter.begin}:
 * blobs, signed header, the live file's delta record — or a whole new live file under a temporary
 * name), and the syncs of every checkpoint begun while the thread was busy run together on libuv's
 * thread pool once the thread has run what was ready (`setImmediate`), instead of one after the
 * other on the thread: a delta record's one fdatasync; for a whole write, the sync point (pack,
 * history entries and folders written unsynced since the last one) and the new file, then the
 * rename into place and one fsync per folder for all the batch's whole writes in it. ext4's journal
 * commits concurrent syncs together, and the thread ticks other agents while the disk works.
 *
 * Durability is the writer's, unchanged: a checkpoint's promise settles only after every sync it
 * needed returned and {@link CheckpointWriter.end} wrote its history entry, so a caller that shows
 * nothing of a tick before that (runtime/runner.ts: messages, HTTP requests, status, the next tick)
 * shows nothing a power cut could take. When any step of a batch fails, every checkpoint of the
 * batch fails (StorageError; each writer then writes its next checkpoint whole, as after any
 * StorageError): a failed sync says the disk lost something, and the batch's checkpoints share it.
 */
import * as fs from 'node:fs'
import { StorageError } from './errors.ts'
import { jobError, type CheckpointWriter, type PendingCheckpoint, type SyncJob, type WriteArgs, type WrittenCheckpoint } from './writer.ts'

interface Queued {
  writer: CheckpointWriter
  p: PendingCheckpoint
  resolve (w: WrittenCheckpoint): void
  reject (e: Error): void
}

/** Counts of a {@link GroupCommit} since it was made: batches flushed, checkpoints in them, syncs run, batches failed. */
export interface GroupCommitStats { batches: number; checkpoints: number; syncs: number; failed: number }

/** Makes one descriptor durable (`job.data`: fdatasync, else fsync) and calls back once. */
export type SyncFn = (job: SyncJob, cb: (err: Error | null) => void) => void

const poolSync: SyncFn = (job, cb) => { if (job.data) fs.fdatasync(job.fd, cb); else fs.fsync(job.fd, cb) }

/** See the module doc. One per thread is enough ({@link groupCommit}); `sync` is replaceable for tests. */
export class GroupCommit {
  readonly #queue: Queued[] = []
  #scheduled = false
  readonly #sync: SyncFn
  /** see {@link GroupCommitStats} */
  readonly stats: GroupCommitStats = { batches: 0, checkpoints: 0, syncs: 0, failed: 0 }

  /** `sync` (default: `fs.fdatasync` / `fs.fsync` on libuv's pool) makes one descriptor durable. */
  constructor (sync: SyncFn = poolSync) { this.#sync = sync }

  /**
   * Writes `a` with `writer` ({@link CheckpointWriter.begin}) now, and settles once it is durable
   * and its history entry written ({@link CheckpointWriter.end}): its syncs (the live record's, or
   * for a whole write of the live file the sync point's and the new file's) run with those of every
   * checkpoint begun meanwhile; a whole write is then renamed into place and its folder fsynced
   * (once for all the batch's whole writes in one folder).
   * @returns the checkpoint written, as {@link CheckpointWriter.write}.
   * @throws (rejects) as `begin` and `end`; StorageError when any sync of its batch failed.
   */
  commit (writer: CheckpointWriter, a: WriteArgs): Promise<WrittenCheckpoint> {
    let p: PendingCheckpoint
    try { p = writer.begin(a) } catch (e) { return Promise.reject(e) }
    return new Promise<WrittenCheckpoint>((resolve, reject) => {
      this.#queue.push({ writer, p, resolve, reject })
      if (!this.#scheduled) { this.#scheduled = true; setImmediate(() => this.#flush()) }
    })
  }

  /** Runs `jobs` all at once; calls `done` with the first error and its job (null: all durable). */
  #all (jobs: SyncJob[], done: (err: Error | null, job: SyncJob | null) => void): void {
    let left = jobs.length
    let first: Error | null = null
    let firstJob: SyncJob | null = null
    if (left === 0) { done(null, null); return }
    this.stats.syncs += jobs.length
    for (const j of jobs) {
      let called = false
      const cb = (e: Error | null): void => {
        if (called) return
        called = true
        if (e !== null && first === null) { first = jobError(j, e); if (first !== null) firstJob = j }
        if (--left === 0) done(first, firstJob)
      }
      try { this.#sync(j, cb) } catch (e) { cb(e as Error) }
    }
  }

  /** Syncs every queued checkpoint's descriptors at once, renames whole writes into place, then ends each (all failed when one step failed). */
  #flush (): void {
    this.#scheduled = false
    const batch = this.#queue.splice(0)
    if (batch.length === 0) return
    this.stats.batches++
    this.stats.checkpoints += batch.length
    const settle = (err: Error | null, culprit: Queued | null): void => {
      if (err !== null) this.stats.failed++
      for (const q of batch) {
        const e = err === null ? null : q === culprit ? err : new StorageError(`${q.writer.livePath}: checkpoint (tick ${q.p.header.tick}) not made durable: a sync of the same group commit failed: ${err.message}`)
        try { q.resolve(q.writer.end(q.p, e)) } catch (x) { q.reject(x as Error) }
      }
    }
    const owner = new Map<number, Queued>()
    for (const q of batch) for (const j of q.p.syncs) owner.set(j.fd, q)
    this.#all(batch.flatMap((q) => q.p.syncs), (err, job) => {
      if (err !== null) { settle(err, job === null ? null : owner.get(job.fd) ?? null); return }
      // every sync returned: whole writes go into place, and each of their folders is fsynced once
      const dirs = new Map<string, SyncJob>()
      let at: Queued | null = null
      try {
        for (const q of batch) {
          if (q.p.rename === null) continue
          at = q
          q.writer.install(q.p)
          if (!dirs.has(q.p.rename.dir)) {
            let fd: number
            try { fd = fs.openSync(q.p.rename.dir, 'r') } catch (e) { throw new StorageError(`${q.p.rename.dir}: cannot open to sync: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
            dirs.set(q.p.rename.dir, { fd, file: q.p.rename.dir, data: false, dir: true })
          }
        }
      } catch (e) {
        for (const j of dirs.values()) fs.closeSync(j.fd)
        settle(e as Error, at)
        return
      }
      this.#all([...dirs.values()], (e) => {
        for (const j of dirs.values()) try { fs.closeSync(j.fd) } catch { /* closed */ }
        settle(e, null)
      })
    })
  }
}

/** The group commit of this thread (a tick worker, or the main thread of `igord run`). */
export const groupCommit = new GroupCommit()
