/**
 * Durable file writes and the content-addressed blob store (DESIGN §7).
 *
 * {@link atomicWrite} gives readers either the old file or the complete new one, never a mix, across
 * a process kill and (on file systems that honour fsync) a power cut: temp file in the same
 * directory → write → fsync → rename over the target → fsync the directory.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { StorageError } from './errors.ts'
import { cidOf, cidOfDigest, isCid, sameDigest, sha256 } from './hash.ts'
import { blobOfSlot, CHUNK_SIZE, CHUNKED_SIZE, compress, FRAME_BLOB, FRAME_CHUNKED, FRAME_HEADER, FRAME_ZSTD, matchesCid, PackIndex, PackRun, PackSet, PackWriter, readSlot, WRITER_RECENT, type PackSlot } from './pack.ts'
import { RecentMap } from './recent.ts'
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

/** Temp-name suffix unique to this thread (pid + random + counter: no random draw per write). */
const TMP_TAG = randomBytes(4).toString('hex')
let tmpSeq = 0

/**
 * Atomically replaces `file` with `data` (one buffer or chunks written with writev, not copied):
 * writes `<dir>/.<name>.tmp-<pid>-<random>-<n>` (random per thread, n a counter), fsyncs it, renames it over `file`, fsyncs the directory
 * (skipped when `syncDir` is false, for callers that fsync the directory once for a batch).
 * With `syncFile` false nothing is synced (neither the file nor the directory): the rename still
 * gives readers the old or the whole new file across a process kill, but a power cut may lose the
 * file or leave it torn or empty (history entries between sync points: docs/FORMAT.md "Writing and
 * crash safety"; the caller syncs them later with {@link fsyncFile} and {@link fsyncDir}).
 * The temp file is removed if anything fails, leaving the old `file` untouched.
 * @param mode permission bits for the new file; default 0o600 (everything igord writes holds agent
 *   state or keys: docs/FORMAT.md "Data directory"); a umask can only narrow it.
 * @throws StorageError `<path>: cannot <step>: <errno> …`.
 */
export function atomicWrite (file: string, data: Uint8Array | Uint8Array[], mode = FILE_MODE, syncDir = true, syncFile = true): void {
  const dir = path.dirname(file)
  const tmp = tempPath(file)
  let fd: number
  try { fd = fs.openSync(tmp, 'wx', mode) } catch (e) { throw ioError('create', tmp, e) }
  let ok = false
  try {
    try {
      writeAll(fd, Array.isArray(data) ? data : [data])
      if (syncFile) fs.fsyncSync(fd)
    } catch (e) { throw ioError('write', tmp, e) } finally { fs.closeSync(fd) }
    if (testHooks.beforeRename !== null) testHooks.beforeRename(tmp, file)
    try { fs.renameSync(tmp, file) } catch (e) { throw ioError('rename into place', file, e) }
    ok = true
  } finally {
    if (!ok) try { fs.unlinkSync(tmp) } catch { /* already gone */ }
  }
  if (syncDir && syncFile) fsyncDir(dir)
}

/** A temporary name beside `file` for writing it atomically (`.<name>.tmp-<pid>-<thread tag>-<n>`: unique to this thread). */
export function tempPath (file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${TMP_TAG}-${(tmpSeq++).toString(36)}`)
}

/**
 * fsync (`data` true: fdatasync) the file at `file`, written earlier without a sync. A file that is
 * gone (ENOENT: e.g. set aside since) is skipped.
 * @throws StorageError `<path>: cannot fsync: …`.
 */
export function fsyncFile (file: string, data = false): void {
  let fd: number
  try { fd = fs.openSync(file, 'r') } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
    throw ioError('open', file, e)
  }
  try { if (data) fs.fdatasyncSync(fd); else fs.fsyncSync(fd) } catch (e) { throw ioError('fsync', file, e) } finally { fs.closeSync(fd) }
}

/**
 * Content-addressed blob store of one blob directory (docs/FORMAT.md "Blob store"). It holds
 * loose files named by CID (CIDv1 raw sha2-256 base32: code and manifests, written with
 * {@link BlobStore.putFile}, and everything written by versions before packs) and pack files
 * (checkpoint/pack.ts): pages, event-log segments and I/O states, appended with
 * {@link BlobStore.putEx} and made durable by one `fdatasync` in {@link BlobStore.sync}.
 *
 * A store opened for an agent (`agent` given) appends to a pack of its own, created on the first
 * sync, and reads that agent's packs; one opened without reads every pack in the directory (a
 * node answering which blobs a migration target lacks) and writes to a pack named `shared+…`.
 * `get` returns bytes as stored without checking them (history verification, replay and migration
 * hash every blob they use).
 */
export class BlobStore {
  /** The directory holding the blobs. */
  readonly dir: string
  /** CIDs known to be present (written or seen by this instance). */
  readonly #known: { has (cid: string): boolean; add (cid: string): void; clear (): void }
  #packs: PackSet
  readonly #agent: string | undefined
  #writer: PackWriter
  #dirty = false
  /**
   * Changes whenever blobs this store wrote or found may have gone since (a failed flush forgot its
   * queued blobs, a pack was cut or rewritten under it): what a caller learned was present before
   * (`putEx` `how.present`) holds only while this stays the same.
   */
  epoch = 0

  /**
   * @param dir created (with parents, mode 0700) when missing.
   * @param agent the agent whose packs this store writes and reads; all packs when absent.
   * @throws StorageError when the directory cannot be created.
   */
  constructor (dir: string, agent?: string) {
    this.dir = dir
    try { makePrivateDir(dir) } catch (e) { throw ioError('create directory', dir, e) }
    this.#agent = agent
    this.#packs = new PackSet(dir, agent)
    // a writer's store remembers only recent CIDs (a miss is only slower: see PackSet); others all
    if (agent === undefined) this.#known = new Set<string>()
    else { const m = new RecentMap<string, true>(WRITER_RECENT); this.#known = { has: (c) => m.has(c), add: (c) => m.set(c, true), clear: () => m.clear() } }
    this.#writer = new PackWriter(dir, agent ?? 'shared')
  }

  /** Path of the loose blob file for `cid` (which may not exist: the blob may be in a pack). */
  pathOf (cid: string): string {
    return path.join(this.dir, cid)
  }

  /** Path of the pack this store appends to (it exists once a blob was synced). */
  get packFile (): string { return this.#writer.file }

  /**
   * Queues `bytes` for this store's pack unless the blob is present (written or seen by this
   * instance, a loose file, or in the packs in scope as they were when first looked at); returns the CID. With `digest` (the SHA-256 of `bytes`, already
   * known to the caller) nothing is hashed. Queued blobs are readable with {@link BlobStore.get} at
   * once and durable after {@link BlobStore.sync} (called here unless `sync` is false).
   * `how.compress`: store it zstd-compressed when that makes it smaller; `how.chunk` (a 64 KiB
   * page): store it as 16 chunks of 4 KiB, each chunk a blob of its own (compressed too when
   * `compress`, until the first of the page's new chunks that zstd cannot shrink: the page's later
   * new chunks are stored as they are), so a page with one changed chunk adds one chunk (docs/FORMAT.md "Blob store");
   * `how.chunkDigests` (512 bytes: the SHA-256 of each 4 KiB chunk, 32 zero bytes for an all-zero
   * chunk — the chunked frame's payload) saves hashing the chunks; the caller vouches for them, as
   * for `digest`. `how.loose: false` skips looking for a loose file of `bytes` (blobs igord only
   * ever packs: at worst an old loose copy is packed once more); `how.cid`: the CID of `digest`,
   * when the caller has it; `how.present` (with `chunkDigests`: a 512-byte chunk digest list whose
   * chunks are all present in this store since {@link BlobStore.epoch} last changed, e.g. the list
   * of the page's previous version stored in chunks): a chunk whose digest is the same at the same
   * position is taken as present without a look-up (a writer remembers only recent CIDs).
   * @returns the CID and whether the blob was queued.
   * @throws StorageError on I/O failure.
   */
  putEx (bytes: Uint8Array, digest?: Uint8Array, sync = true, how: { compress?: boolean; chunk?: boolean; loose?: boolean; chunkDigests?: Uint8Array; cid?: string; present?: Uint8Array } = {}): { cid: string; written: boolean } {
    const d = digest ?? sha256(bytes)
    const cid = how.cid ?? cidOfDigest(d)
    if (this.#present(cid, how.loose !== false)) return { cid, written: false }
    if (how.chunk === true && bytes.length === CHUNKED_SIZE) {
      const given = how.chunkDigests !== undefined && how.chunkDigests.length === 32 * (CHUNKED_SIZE / CHUNK_SIZE) ? how.chunkDigests : null
      const present = given !== null && how.present !== undefined && how.present.length === given.length ? how.present : null
      const digests = Buffer.alloc(32 * (CHUNKED_SIZE / CHUNK_SIZE))
      // the first new chunk that zstd cannot shrink ends the page's attempts: its other new chunks
      // are stored as they are (a page of random or already-compressed bytes would otherwise cost
      // 16 futile zstd calls, more than hashing it)
      let tryZ = how.compress === true
      for (let k = 0; k < CHUNKED_SIZE / CHUNK_SIZE; k++) {
        let cd: Uint8Array
        if (given !== null) {
          cd = given.subarray(k * 32, k * 32 + 32)
          if (isZero(cd)) continue
          if (present !== null && sameDigest(present, given, k * 32)) { digests.set(cd, k * 32); continue }
        } else {
          if (isZero(bytes.subarray(k * CHUNK_SIZE, (k + 1) * CHUNK_SIZE))) continue
          cd = sha256(bytes.subarray(k * CHUNK_SIZE, (k + 1) * CHUNK_SIZE))
        }
        digests.set(cd, k * 32)
        const c = bytes.subarray(k * CHUNK_SIZE, (k + 1) * CHUNK_SIZE)
        const ccid = cidOfDigest(cd)
        if (this.#present(ccid, false)) continue // chunks are only ever in packs: no loose-file lookup
        const z = tryZ ? compress(c) : null
        if (z === null) tryZ = false
        this.#writer.add(ccid, c, cd, z === null ? FRAME_BLOB : FRAME_ZSTD, z ?? c)
        this.#known.add(ccid)
      }
      this.#writer.add(cid, bytes, d, FRAME_CHUNKED, digests)
    } else {
      const z = how.compress === true ? compress(bytes) : null
      this.#writer.add(cid, bytes, d, z === null ? FRAME_BLOB : FRAME_ZSTD, z ?? bytes)
    }
    this.#known.add(cid)
    if (sync) this.sync()
    return { cid, written: true }
  }

  /**
   * Known to this instance, a loose file (unless `loose` is false), or a frame of the packs in scope
   * (walked once, on the first miss).
   */
  #present (cid: string, loose = true): boolean {
    if (this.#known.has(cid)) return true
    if ((loose && fs.existsSync(this.pathOf(cid))) || this.#packs.find(cid, false, Infinity) !== undefined) { this.#known.add(cid); return true }
    return false
  }

  /**
   * Stores `bytes` as a loose file `<dir>/<cid>` (atomically; the directory fsynced unless `sync`
   * is false) unless present. For blobs shared by many agents and checkpoints (code, manifests).
   * @returns the CID and whether a new file was written.
   * @throws StorageError on I/O failure.
   */
  putFile (bytes: Uint8Array, sync = true): { cid: string; written: boolean } {
    const cid = cidOf(bytes)
    const file = this.pathOf(cid)
    if (fs.existsSync(file)) { this.#known.add(cid); return { cid, written: false } }
    atomicWrite(file, bytes, FILE_MODE, false)
    this.#known.add(cid)
    if (sync) fsyncDir(this.dir); else this.#dirty = true
    return { cid, written: true }
  }

  /**
   * Stores `bytes` (durably) in the pack unless already present.
   * @returns the blob's CID.
   * @throws StorageError on I/O failure.
   */
  put (bytes: Uint8Array): string {
    return this.putEx(bytes).cid
  }

  /**
   * Makes everything put so far durable: appends the queued blobs to the pack, `fdatasync`s the
   * pack when it holds frames not yet synced (this call's or {@link BlobStore.flush}'s), and fsyncs
   * the directory when loose files were written with `sync: false`.
   * @throws StorageError on I/O failure (the queued blobs are then forgotten: put them again).
   */
  sync (): void {
    this.flush(true)
    if (this.#dirty) { fsyncDir(this.dir); this.#dirty = false }
  }

  /**
   * What {@link BlobStore.sync} would make durable, for a caller that syncs it itself (a group
   * commit's sync point, checkpoint/writer.ts `begin`): the queued blobs are appended first
   * (unsynced); then `pack` is the pack file to fdatasync (null: nothing unsynced) and `dir` the
   * blob directory to fsync (null: no loose file written unsynced). Call
   * {@link BlobStore.synced} once both are durable.
   * @throws StorageError as {@link BlobStore.flush}.
   */
  syncList (): { pack: string | null; dir: string | null } {
    this.flush()
    return { pack: this.#writer.unsynced ? this.#writer.file : null, dir: this.#dirty ? this.dir : null }
  }

  /** After the caller synced what {@link BlobStore.syncList} listed. */
  synced (): void { this.#writer.markSynced(); this.#dirty = false }

  /**
   * Appends the queued blobs to the pack (one `writev`) without a sync unless `durable`: readers
   * (this and other processes) see them at once; a power cut may lose them until the next
   * {@link BlobStore.sync} (the live file's delta records cover them meanwhile: docs/FORMAT.md
   * "Writing and crash safety").
   * @throws StorageError on I/O failure (the queued blobs are then forgotten: put them again).
   */
  flush (durable = false): void {
    if (this.#writer.dirty) {
      if (testHooks.beforeRename !== null) testHooks.beforeRename(this.#writer.file, this.#writer.file)
      try { this.#writer.flush((cid, slot) => this.#packs.note(cid, slot), writeAll, durable) } catch (e) { this.#dropKnown(); throw e }
    } else if (durable) this.#writer.sync()
  }

  /**
   * Checks blob `cid`, whose bytes the caller holds (`bytes`), as this store would read it from the
   * packs in scope. When the frame holding it (or, for a chunked page, one of its chunks) does not
   * read back as `bytes` — a tail that a power cut left torn or zeroed behind intact frame headers —
   * cuts that pack just before the damaged frame (ftruncate, no sync), so that the blob and everything
   * after it in that pack count as absent, and rebuilds the index; repeats while something is cut (a
   * cut chunk may leave a page frame in another pack without it). With `chunks` (a 64 KiB page a put
   * would store as chunks) and the page then absent, its chunks are checked the same way, since a
   * put reuses chunks it finds. Only for frames written after their pack's last sync, which the live
   * file's delta records cover (checkpoint/writer.ts `ensureArchived`; docs/FORMAT.md "Writing and
   * crash safety"): a pack is cut only when every complete frame from the damaged one to its end
   * names a blob in `mayCut()` (the blobs the caller is about to put again), so damage elsewhere
   * (bit rot in a synced pack) is left for verify to report, never cut. Costs one read of the blob
   * (its chunks) and a compare when it is intact; `mayCut` is called only when one is damaged.
   * @returns how many cuts were made (0: the blob is intact, absent, or damaged where it may not be cut).
   * @throws StorageError when a pack cannot be cut.
   */
  repair (cid: string, bytes: Uint8Array, chunks: boolean, mayCut: () => Set<string>): number {
    let cuts = 0
    while (cuts < 64 && this.#cutOnce(cid, bytes, mayCut)) cuts++
    if (chunks && bytes.length === CHUNKED_SIZE && this.#packs.find(cid, false, Infinity) === undefined) {
      for (let k = 0; k < CHUNKED_SIZE / CHUNK_SIZE; k++) {
        const c = bytes.subarray(k * CHUNK_SIZE, (k + 1) * CHUNK_SIZE)
        if (isZero(c)) continue
        const ccid = cidOf(c)
        while (cuts < 64 && this.#cutOnce(ccid, c, mayCut)) cuts++
      }
    }
    return cuts
  }

  /** One check and cut of {@link BlobStore.repair}: true when a pack was cut. */
  #cutOnce (cid: string, bytes: Uint8Array, mayCut: () => Set<string>): boolean {
    const slot = this.#packs.find(cid, false, Infinity)
    if (slot === undefined) return false
    const lookup = chunkIn(this.#packs)
    try {
      const b = blobOfSlot(slot, cid, lookup)
      if (b !== null && Buffer.compare(b, bytes) === 0) return false // intact: the fast path
    } catch { /* unreadable: find the frame below */ }
    const bad = this.#badFrame(slot, cid) ?? slot
    const at = bad.off - FRAME_HEADER
    // everything the cut drops must be the caller's to put again
    const tail = new PackIndex(bad.pack.file)
    tail.scanned = at
    const allowed = mayCut()
    let foreign = false
    tail.scan((c) => { if (!allowed.has(c)) foreign = true })
    if (foreign) return false
    this.#cut(bad.pack.file, at, 'damaged')
    return true
  }

  /**
   * Cuts `file` (a pack in scope) to `at` bytes (ftruncate, no sync) and forgets what this store and
   * this process's readers knew of the packs: the blobs cut count as absent.
   * @throws StorageError `cannot cut the <what> tail at <at> of <file>`.
   */
  #cut (file: string, at: number, what: string): void {
    let fd: number
    try { fd = fs.openSync(file, 'r+') } catch (e) { throw ioError('open', file, e) }
    try { fs.ftruncateSync(fd, at) } catch (e) { throw ioError(`cut the ${what} tail at ${at} of`, file, e) } finally { fs.closeSync(fd) }
    this.#packs = new PackSet(this.dir, this.#agent)
    this.#dropKnown()
    readers.delete(this.dir)
  }

  /** Forgets the CIDs known present, and changes {@link BlobStore.epoch}: what callers learned is void. */
  #dropKnown (): void {
    this.#known.clear()
    this.epoch++
  }

  /**
   * Cuts a power cut's zeroed tail off each pack in scope (docs/FORMAT.md "Writing and crash
   * safety", Recovery): a pack whose file ends with a `00` byte and whose last complete frame does
   * not read back as its blob (it does not decompress, a chunk it names is missing, or its bytes do
   * not hash to its CID) was zeroed from somewhere inside that frame on — bytes appended after the
   * pack's last sync — and is cut (ftruncate, no sync) just before that frame, so that the blob
   * counts as absent: the next put stores it again, instead of finding the damaged frame, and no
   * reader can pick the damaged frame over a good copy in another pack. Such a frame may be a blob
   * of the checkpoint a power cut interrupted (appended before its record's fdatasync returned),
   * which no record holds and {@link BlobStore.repair} never checks. A synced frame is damaged
   * only by bit rot, which does not leave a tail of zeros; only the last frame is looked at (zeros
   * from inside it on end the walk there). Costs a one-byte read per pack, and a read (and hash)
   * of its frame headers and last frame when that byte is 0.
   * A cut changes {@link BlobStore.epoch}.
   * @returns the packs cut (their new size not yet synced).
   * @throws StorageError when a pack cannot be cut.
   */
  cutZeroedTails (): string[] {
    const cut: string[] = []
    let chunks: PackSet | null = null // every frame of the agent's packs, for the chunks of a page stored chunked
    for (const file of this.#packs.files()) {
      for (let k = 0; k < 64 && endsWithZero(file); k++) {
        let last: { cid: string; slot: PackSlot } | null = null
        const index = new PackIndex(file)
        index.scan((cid, slot) => { last = { cid, slot } })
        if (last === null) break
        const { cid, slot } = last as { cid: string; slot: PackSlot }
        let intact = false
        try {
          chunks ??= new PackSet(this.dir, this.#agent, Infinity)
          const b = blobOfSlot(slot, cid, chunkIn(chunks))
          intact = b !== null && matchesCid(b, cid)
        } catch { /* unreadable: damaged */ }
        if (intact) break
        this.#cut(file, slot.off - FRAME_HEADER, 'zeroed')
        if (!cut.includes(file)) cut.push(file)
        chunks = null
      }
    }
    return cut
  }

  /** The slot to cut at when `slot` (blob `cid`) or one of its chunks is damaged, else null. */
  #badFrame (slot: PackSlot, cid: string): PackSlot | null {
    if (slot.kind === FRAME_CHUNKED) {
      let list: Uint8Array
      try { list = readSlot(slot, cid) } catch { return slot }
      if (list.length !== 32 * (CHUNKED_SIZE / CHUNK_SIZE)) return slot
      for (let k = 0; k < CHUNKED_SIZE / CHUNK_SIZE; k++) {
        const d = list.subarray(k * 32, k * 32 + 32)
        if (d.every((x) => x === 0)) continue
        const c = cidOfDigest(d)
        const cs = this.#packs.find(c, false, Infinity)
        if (cs === undefined || cs.kind === FRAME_CHUNKED) return slot
        const bad = this.#badFrame(cs, c)
        if (bad !== null) return bad.pack === slot.pack && bad.off > slot.off ? slot : bad
      }
    }
    let b: Uint8Array | null
    try { b = blobOfSlot(slot, cid, (c) => { const cs = this.#packs.find(c, false, Infinity); return cs === undefined ? null : blobOfSlot(cs, c, () => null) }) } catch { return slot }
    return b !== null && matchesCid(b, cid) ? null : slot
  }

  /** Pack files of this store's agent in the folder (all packs for a store opened without one), as paths. */
  packFiles (): string[] { return this.#packs.files() }

  /** Records that blobs `cids` are durably present (e.g. those of a checkpoint already archived), so puts skip them. */
  noteKnown (cids: Iterable<string>): void { for (const c of cids) this.#known.add(c) }

  /** True when the store holds blob `cid` (a loose file, a pack frame, or queued). */
  has (cid: string): boolean {
    if (!isCid(cid)) return false
    if (this.#known.has(cid) || fs.existsSync(this.pathOf(cid))) return true
    return this.#packs.find(cid, false) !== undefined
  }

  /**
   * The stored bytes of `cid`, unverified: queued, a loose file, or from a pack.
   * @throws StorageError `<path>: cannot read: ENOENT …` when missing or unreadable.
   */
  get (cid: string): Uint8Array {
    if (!isCid(cid)) throw new StorageError(`${this.dir}: ${JSON.stringify(cid)} is not a blob CID`)
    const q = this.#writer.pending(cid)
    if (q !== undefined) return q
    try { return fs.readFileSync(this.pathOf(cid)) } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('read', this.pathOf(cid), e)
      const b = fromPacks(this.#packs, cid, (c) => this.#writer.pending(c) ?? null)
      if (b === null) throw ioError('read', this.pathOf(cid), e)
      return b
    }
  }

  /**
   * Forgets which blobs are present (the CIDs known and the pack index), so that the next puts and
   * reads look again: called after `igord gc` (checkpoint/gc.ts) rewrote packs under this store.
   * Later blobs go to a new pack (when nothing is queued), so the next gc pass can merge the old one;
   * the old pack is fdatasynced first when it holds unsynced frames, since the writer's later sync
   * points only reach the new one (docs/FORMAT.md "Writing and crash safety").
   * @throws StorageError when the old pack cannot be synced (the store keeps writing to it then)
   */
  forget (): void {
    this.#dropKnown()
    this.#packs = new PackSet(this.dir, this.#agent)
    if (!this.#writer.dirty) {
      this.#writer.sync()
      this.#writer = new PackWriter(this.dir, this.#agent ?? 'shared')
    }
  }

  /** Closes this store's pack (a store is not used after). */
  close (): void { this.#writer.close() }
}

const readers = new Map<string, PackSet>()

/**
 * Blob `cid` from blob directory `dir` — a loose file `<dir>/<cid>` or a frame in any pack there —
 * unverified; null when absent. Pack indexes are kept per directory for the process and refreshed
 * on a miss. `loose: false` skips the loose file (the caller already looked). `chunks`: a cache of
 * the 4 KiB chunks of pages read so far, for a caller reading many versions of the same pages
 * (verify, replay): consecutive versions share most chunks.
 */
export function readBlobIn (dir: string, cid: string, loose = true, chunks?: ChunkCache): Uint8Array | null {
  const packed = readPackedIn(dir, cid, chunks)
  if (packed !== null) return packed
  if (loose) try { return fs.readFileSync(path.join(dir, cid)) } catch { /* not a loose file */ }
  for (let attempt = 0; attempt < 2; attempt++) {
    try { return fromPacks(packSetOf(dir), cid, undefined, chunks) } catch { readers.delete(dir) /* rewritten under the index: rebuild it once */ }
  }
  return null
}

/**
 * Blob `cid` when the index of `dir`'s packs already holds it (the index is built on the first
 * call for a directory and not refreshed here), else null: a lookup that costs no file-system call
 * for a blob that is not packed. `run`: see {@link ReadRun}.
 */
export function readPackedIn (dir: string, cid: string, chunks?: ChunkCache, run?: ReadRun): Uint8Array | null {
  const set = packSetOf(dir)
  if (set.find(cid, false, Infinity) === undefined) return null
  try { return fromPacks(set, cid, undefined, chunks, run?.packs) } catch { readers.delete(dir); return null }
}

/**
 * The SHA-256 (32 bytes) and length of blob `cid` as the packs of `dir` store it, when their index
 * already holds it (as {@link readPackedIn}: not refreshed for `cid` itself), else null. A page
 * stored as chunks (kind 3) is hashed chunk by chunk, never assembled, each chunk read (and
 * decompressed) once per run and kept in `run` for later versions of the same page: what verify
 * needs to check a page against its CID, one pass of SHA-256 over its 64 KiB. The digest is of
 * exactly the bytes {@link readBlobIn} would return (a chunk stored with another length is cut or
 * zero-padded to 4 KiB as there), so comparing it with the CID decides exactly as hashing those
 * bytes would. Also null when a chunk is absent or a pack cannot be read: the caller then reads the
 * blob with {@link readBlobIn}, which names the fault.
 */
export function hashPackedIn (dir: string, cid: string, run: ReadRun): { digest: Uint8Array; length: number } | null {
  const set = packSetOf(dir)
  const slot = set.find(cid, false, Infinity)
  if (slot === undefined) return null
  try {
    if (slot.kind !== FRAME_CHUNKED) {
      const b = blobOfSlot(slot, cid, () => null, run.packs)
      return b === null ? null : { digest: createHash('sha256').update(b).digest(), length: b.length }
    }
    const list = readSlot(slot, cid, run.packs) as Buffer
    if (list.length !== LIST_SIZE) return { digest: createHash('sha256').update(list).digest(), length: list.length }
    const h = createHash('sha256')
    for (let k = 0; k < LIST_SIZE; k += 32) {
      const d = list.subarray(k, k + 32)
      let c = run.chunks.get(d)
      if (c === undefined) {
        if (d.equals(ZERO_DIGEST)) c = ZERO_CHUNK
        else {
          const ccid = cidOfDigest(d)
          const s = set.find(ccid) // chunks are only ever written to packs
          const b = s === undefined || s.kind === FRAME_CHUNKED ? null : blobOfSlot(s, ccid, () => null, run.packs)
          if (b === null) return null
          // kept compact: a decompressed chunk is a view into a larger zlib buffer it would pin
          if (b.length === CHUNK_SIZE && b.buffer.byteLength <= 2 * CHUNK_SIZE) c = b
          else { c = new Uint8Array(CHUNK_SIZE); c.set(b.subarray(0, CHUNK_SIZE)) }
          run.chunks.put(d, c)
        }
      }
      h.update(c)
    }
    return { digest: h.digest(), length: CHUNKED_SIZE }
  } catch { readers.delete(dir); return null }
}

/** Bytes of a kind-3 payload: 16 chunk digests. */
const LIST_SIZE = 32 * (CHUNKED_SIZE / CHUNK_SIZE)
const ZERO_CHUNK = new Uint8Array(CHUNK_SIZE)
const ZERO_DIGEST = Buffer.alloc(32)

/**
 * What one reader's run (one verify) keeps between reads: the packs found still linked (their
 * descriptors are then reused without an `fstat` each read: see `readSlot`) with a read-ahead window
 * serving small frames without a syscall each (checkpoint/pack.ts `PackRun`), and the 4 KiB chunks
 * of chunked pages read by {@link hashPackedIn}, by their 32-byte digest (at most `maxChunks`,
 * default 16,384 = 64 MiB, forgotten all at once when full). Chunk bytes are kept as stored
 * (decompressed), not checked against their digest: every page built from them is hashed whole,
 * and a run is one pass, so the cache hides nothing a re-read of the pack would show.
 */
export class ReadRun {
  readonly packs = new PackRun()
  /** Chunks by digest: `get` the chunk stored under these 32 bytes, `put` one (the digest is copied). */
  readonly chunks: { get (digest: Buffer): Uint8Array | undefined; put (digest: Buffer, b: Uint8Array): void }
  constructor (maxChunks = 16_384) {
    // keyed by the digest's first 6 bytes as a number (no string made per lookup); a hit must
    // match all 32 bytes, so two digests sharing a prefix only displace each other
    const map = new Map<number, { d: Buffer; b: Uint8Array }>()
    this.chunks = {
      get: (d) => { const e = map.get(d.readUIntBE(0, 6)); return e !== undefined && e.d.equals(d) ? e.b : undefined },
      put: (d, b) => { if (map.size >= maxChunks) map.clear(); map.set(d.readUIntBE(0, 6), { d: Buffer.from(d), b }) },
    }
  }
}

function packSetOf (dir: string): PackSet {
  let set = readers.get(dir)
  if (set === undefined) {
    if (readers.size >= 64) readers.clear()
    set = new PackSet(dir)
    readers.set(dir, set)
  }
  return set
}

/**
 * Blob `cid` from the packs of `set` (chunks of a chunked page from `pending` or the packs), or
 * null when it or one of its chunks is absent.
 * @throws StorageError when a pack cannot be read or changed under the index.
 */
function fromPacks (set: PackSet, cid: string, pending: (cid: string) => Uint8Array | null = () => null, cache?: ChunkCache, run?: Set<string>): Uint8Array | null {
  const slot = set.find(cid)
  if (slot === undefined) return null
  return blobOfSlot(slot, cid, (c) => {
    const q = pending(c) ?? cache?.get(c)
    if (q !== null && q !== undefined) return q
    const s = set.find(c) // chunks are only ever written to packs
    const b = s === undefined || s.kind === FRAME_CHUNKED ? null : blobOfSlot(s, c, () => null, run)
    if (b !== null && cache !== undefined) cache.put(c, b)
    return b
  }, run)
}

/**
 * Chunks (4 KiB, by CID) read while assembling pages, for one reader's run (e.g. one verify):
 * at most `max` (default 16,384 = 64 MiB), forgotten all at once when full. Only chunks whose bytes
 * match their CID are kept, so a cached chunk is exactly what its CID names.
 */
export class ChunkCache {
  readonly #map = new Map<string, Uint8Array>()
  readonly #max: number
  constructor (max = 16_384) { this.#max = max }
  get (cid: string): Uint8Array | undefined { return this.#map.get(cid) }
  put (cid: string, b: Uint8Array): void {
    if (!matchesCid(b, cid)) return
    if (this.#map.size >= this.#max) this.#map.clear()
    this.#map.set(cid, b)
  }
}

/**
 * The chunk lookup {@link blobOfSlot} takes for a chunked page: chunk `c` as `set` holds it (walked
 * afresh on a miss), or null when absent or itself chunked.
 */
function chunkIn (set: PackSet): (c: string) => Uint8Array | null {
  return (c) => { const cs = set.find(c, false, Infinity); return cs === undefined || cs.kind === FRAME_CHUNKED ? null : blobOfSlot(cs, c, () => null) }
}

/** True when the last byte of `file` is 0 (false for an empty or unreadable file). */
function endsWithZero (file: string): boolean {
  let fd: number
  try { fd = fs.openSync(file, 'r') } catch { return false }
  try {
    const size = fs.fstatSync(fd).size
    if (size === 0) return false
    const b = Buffer.alloc(1)
    return fs.readSync(fd, b, 0, 1, size - 1) === 1 && b[0] === 0
  } catch { return false } finally { fs.closeSync(fd) }
}

function isZero (b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i += 8) if (b[i] !== 0 || b[i + 1] !== 0 || b[i + 2] !== 0 || b[i + 3] !== 0 || b[i + 4] !== 0 || b[i + 5] !== 0 || b[i + 6] !== 0 || b[i + 7] !== 0) return false
  return true
}
