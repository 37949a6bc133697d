/**
 * Durable file writes and the content-addressed blob store (DESIGN §7).
 *
 * {@link atomicWrite} gives readers either the old file or the complete new one, never a mix, across
 * a process kill and (on file systems that honour fsync) a power cut: temp file in the same
 * directory → write → fsync → rename over the target → fsync the directory.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { randomBytes } from 'node:crypto'
import { StorageError } from './errors.ts'
import { cidOf, cidOfDigest, isCid } from './hash.ts'
import { FILE_MODE, makePrivateDir } from './layout.ts'

/** Most buffers handed to one writev call (Linux IOV_MAX). */
const IOV_MAX = 1024

function ioError (step: string, p: string, e: unknown): StorageError {
  const err = e as NodeJS.ErrnoException
  return new StorageError(`${p}: cannot ${step}: ${err.code ?? ''}${err.code ? ' ' : ''}${String(err.message ?? e).split('\n')[0].replace(/^[A-Z]+: /, '')}`)
}

/** Writes every byte of `chunks` to `fd` (writev in batches, resuming after short writes). */
export function writeAll (fd: number, chunks: Uint8Array[]): void {
  let i = 0
  let off = 0 // bytes of chunks[i] already written
  while (i < chunks.length) {
    const batch: Uint8Array[] = []
    for (let j = i; j < chunks.length && batch.length < IOV_MAX; j++) {
      const c = j === i && off > 0 ? chunks[j].subarray(off) : chunks[j]
      if (c.length > 0) batch.push(c)
    }
    if (batch.length === 0) return
    let n = fs.writevSync(fd, batch)
    while (i < chunks.length && n >= chunks[i].length - off) { n -= chunks[i].length - off; i++; off = 0 }
    off += n
  }
}

/** fsync a directory so a rename inside it is durable. Ignores file systems that refuse (EINVAL/EISDIR). */
export function fsyncDir (dir: string): void {
  let fd: number
  try { fd = fs.openSync(dir, 'r') } catch (e) { throw ioError('open directory', dir, e) }
  try { fs.fsyncSync(fd) } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw ioError('fsync directory', dir, e)
  } finally { fs.closeSync(fd) }
}

/**
 * Test hooks. `beforeRename` is called between writing the temp file and renaming it over the
 * target (`tmp` the temp path, `file` the target): throwing there simulates a crash at that point
 * (the temp file is then removed, as a restart's readers would ignore it anyway).
 */
export const testHooks: { beforeRename: ((tmp: string, file: string) => void) | null } = { beforeRename: null }

/**
 * Atomically replaces `file` with `data` (one buffer or chunks written with writev, not copied):
 * writes `<dir>/.<name>.tmp-<pid>-<random>`, fsyncs it, renames it over `file`, fsyncs the directory
 * (skipped when `syncDir` is false, for callers that fsync the directory once for a batch).
 * The temp file is removed if anything fails, leaving the old `file` untouched.
 * @param mode permission bits for the new file; default 0o600 (everything igord writes holds agent
 *   state or keys: docs/FORMAT.md "Data directory"); a umask can only narrow it.
 * @throws StorageError `<path>: cannot <step>: <errno> …`.
 */
export function atomicWrite (file: string, data: Uint8Array | Uint8Array[], mode = FILE_MODE, syncDir = true): void {
  const dir = path.dirname(file)
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  let fd: number
  try { fd = fs.openSync(tmp, 'wx', mode) } catch (e) { throw ioError('create', tmp, e) }
  let ok = false
  try {
    try {
      writeAll(fd, Array.isArray(data) ? data : [data])
      fs.fsyncSync(fd)
    } catch (e) { throw ioError('write', tmp, e) } finally { fs.closeSync(fd) }
    if (testHooks.beforeRename !== null) testHooks.beforeRename(tmp, file)
    try { fs.renameSync(tmp, file) } catch (e) { throw ioError('rename into place', file, e) }
    ok = true
  } finally {
    if (!ok) try { fs.unlinkSync(tmp) } catch { /* already gone */ }
  }
  if (syncDir) fsyncDir(dir)
}

/**
 * Content-addressed blob store: one file per blob in `dir`, named by its CID (CIDv1 raw sha2-256
 * base32). `put` writes atomically and skips blobs already present; `get` returns the bytes as
 * stored without checking them (history verification hashes every blob it uses).
 */
export class BlobStore {
  /** The directory holding the blobs. */
  readonly dir: string
  /** CIDs known to be present (written or seen by this instance). */
  readonly #known = new Set<string>()
  #dirty = false

  /**
   * @param dir created (with parents, mode 0700) when missing.
   * @throws StorageError when the directory cannot be created.
   */
  constructor (dir: string) {
    this.dir = dir
    try { makePrivateDir(dir) } catch (e) { throw ioError('create directory', dir, e) }
  }

  /** Path of the blob file for `cid`. */
  pathOf (cid: string): string {
    return path.join(this.dir, cid)
  }

  /**
   * Stores `bytes` unless a blob with the same CID exists; returns the CID. With `digest` (the
   * SHA-256 of `bytes`, already known to the caller) nothing is hashed. With `sync: false` the
   * directory is not fsynced; call {@link BlobStore.sync} once after a batch.
   * @returns the CID and whether a new file was written.
   * @throws StorageError on I/O failure.
   */
  putEx (bytes: Uint8Array, digest?: Uint8Array, sync = true): { cid: string; written: boolean } {
    const cid = digest !== undefined ? cidOfDigest(digest) : cidOf(bytes)
    if (this.#known.has(cid)) return { cid, written: false }
    const file = this.pathOf(cid)
    if (fs.existsSync(file)) { this.#known.add(cid); return { cid, written: false } }
    atomicWrite(file, bytes, FILE_MODE, false)
    this.#known.add(cid)
    if (sync) fsyncDir(this.dir); else this.#dirty = true
    return { cid, written: true }
  }

  /**
   * Stores `bytes` (atomically, durably) unless already present.
   * @returns the blob's CID.
   * @throws StorageError on I/O failure.
   */
  put (bytes: Uint8Array): string {
    return this.putEx(bytes).cid
  }

  /** Makes the renames of blobs put with `sync: false` durable (fsync of the directory). */
  sync (): void {
    if (this.#dirty) { fsyncDir(this.dir); this.#dirty = false }
  }

  /** True when the store holds a file named `cid`. */
  has (cid: string): boolean {
    return isCid(cid) && (this.#known.has(cid) || fs.existsSync(this.pathOf(cid)))
  }

  /**
   * The stored bytes of `cid`, unverified.
   * @throws StorageError `<path>: cannot read: ENOENT …` when missing or unreadable.
   */
  get (cid: string): Uint8Array {
    if (!isCid(cid)) throw new StorageError(`${this.dir}: ${JSON.stringify(cid)} is not a blob CID`)
    try { return fs.readFileSync(this.pathOf(cid)) } catch (e) { throw ioError('read', this.pathOf(cid), e) }
  }
}
