/**
 * Test-only power-cut simulator (never imported by the shipped CLI): wraps node:fs (the checkpoint
 * modules import it as a namespace, so `syncBuiltinESMExports` reaches them) to learn what a power
 * cut would keep of the files under one root, and to stop the "machine" at a chosen call.
 *
 * Model (POSIX, pessimistic where it matters): a file's data is durable as of its last
 * `fsync`/`fdatasync`; a name (creation, rename, unlink) is durable as of the last fsync of its
 * directory; data written since is lost at a cut ({@link PowerCut.cut} `drop`), or — `random` —
 * each file independently keeps it, loses it, keeps a prefix of it (a torn append) or has it
 * zeroed (a tail a power cut left as zeros). Directories themselves are assumed durable.
 * Data belongs to a file, not to a number: an inode number that a file system frees (a replaced
 * live file's `.<name>.ckpt.old`, a consumed spool file) and gives to a file created later names a
 * new file that has synced nothing (ext4 reuses numbers at once, so which file gets which number
 * depends on what else the machine does). A cut replaces a name's bytes with a new file rather than
 * writing through the name, so that another name of the same inode (a hard link) keeps its own
 * outcome.
 *
 * {@link PowerCut.crashAt}: the n-th mutating call (open for writing, write, writev, fsync,
 * fdatasync (also the asynchronous ones), rename, link, unlink (also the asynchronous one, which
 * is made at once: a name goes when the process removes it, not when the pool gets to it), ftruncate) throws {@link PowerCutCrash} instead of running, and so
 * does every mutating call after it (the machine is off): what the process does next cannot reach
 * the disk.
 */
import * as path from 'node:path'
import type * as FS from 'node:fs'
import { createRequire, syncBuiltinESMExports } from 'node:module'

const fsc = createRequire(import.meta.url)('node:fs') as typeof import('node:fs')
const real = {
  openSync: fsc.openSync, closeSync: fsc.closeSync, writeSync: fsc.writeSync, writevSync: fsc.writevSync,
  fsyncSync: fsc.fsyncSync, fdatasyncSync: fsc.fdatasyncSync, fdatasync: fsc.fdatasync, fsync: fsc.fsync, renameSync: fsc.renameSync, unlinkSync: fsc.unlinkSync,
  ftruncateSync: fsc.ftruncateSync, writeFileSync: fsc.writeFileSync, linkSync: fsc.linkSync, unlink: fsc.unlink,
}

/** Thrown by the wrapped fs at and after the crash point. */
export class PowerCutCrash extends Error {}

function filesUnder (root: string): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    for (const e of fsc.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p); else if (e.isFile()) out.push(p)
    }
  }
  walk(root)
  return out
}

const writeFlag = (flags: unknown): boolean => typeof flags === 'string' ? /[wa+]/.test(flags) : typeof flags === 'number' ? (flags & 3) !== 0 : false

/** See the module doc. One at a time per process: {@link PowerCut.install} / {@link PowerCut.uninstall}. */
export class PowerCut {
  readonly root: string
  /** path → the bytes a cut leaves there (no key: the name would be gone) */
  readonly #durable = new Map<string, Buffer>()
  /** path → the file (generation, see {@link PowerCut.#gen}) its durable name points to */
  readonly #durableFile = new Map<string, number>()
  /** file (generation) → its bytes as of its last sync */
  readonly #synced = new Map<number, Buffer>()
  /**
   * inode number → the file (a generation number) it holds now: a file system reuses the number of
   * a freed inode for the next file it creates (ext4 at once), and that new file has synced nothing
   */
  readonly #gen = new Map<number, number>()
  #gens = 0
  readonly #fds = new Map<number, string>()
  /** mutating calls seen since install */
  calls = 0
  /** the call number that crashes (Infinity: never) */
  crashAt = Infinity
  /** true once the crash point was reached */
  crashed = false
  /** fsync/fdatasync calls seen */
  syncs = 0

  /** Tracks `root` (everything under it now counts as durable). */
  constructor (root: string) {
    this.root = path.resolve(root)
    for (const f of filesUnder(this.root)) {
      let b: Buffer; let ino: number
      try { b = fsc.readFileSync(f); ino = fsc.statSync(f).ino } catch { continue } // removed since it was listed
      const g = this.#genOf(ino)
      this.#durable.set(f, b); this.#durableFile.set(f, g); this.#synced.set(g, b)
    }
  }

  /** The file (generation) inode `ino` holds now. */
  #genOf (ino: number): number {
    let g = this.#gen.get(ino)
    if (g === undefined) { g = ++this.#gens; this.#gen.set(ino, g) }
    return g
  }

  /** A file was just created at `p` (absolute): its inode number, maybe a freed one reused, now names a new file. */
  #born (p: string): void {
    try { this.#gen.set(fsc.statSync(p).ino, ++this.#gens) } catch { /* gone already */ }
  }

  #mine (p: string): boolean { return p === this.root || p.startsWith(this.root + path.sep) }

  #step (): void {
    if (this.crashed) throw new PowerCutCrash('power cut: the machine is off')
    this.calls++
    if (this.calls >= this.crashAt) { this.crashed = true; throw new PowerCutCrash(`power cut at mutating call ${this.calls}`) }
  }

  #snapshotDir (d: string): void {
    const now = new Map<string, number>()
    for (const e of fsc.readdirSync(d, { withFileTypes: true })) if (e.isFile()) { const p = path.join(d, e.name); now.set(p, this.#genOf(fsc.statSync(p).ino)) }
    for (const p of [...this.#durable.keys()]) if (path.dirname(p) === d && !now.has(p)) { this.#durable.delete(p); this.#durableFile.delete(p) }
    for (const [p, g] of now) {
      const was = this.#durableFile.get(p)
      this.#durable.set(p, this.#synced.get(g) ?? (was === g ? this.#durable.get(p)! : Buffer.alloc(0)))
      this.#durableFile.set(p, g)
    }
  }

  #sync (fd: number, call: (fd: number) => void): void {
    const p = this.#fds.get(fd)
    if (p === undefined) { call(fd); return }
    this.#step()
    this.syncs++
    call(fd)
    this.#synced1(fd, p)
  }

  /** Records what a sync of `fd` (path `p`) made durable. */
  #synced1 (fd: number, p: string): void {
    const st = fsc.fstatSync(fd)
    if (st.isDirectory()) { this.#snapshotDir(p); return }
    const b = fsc.readFileSync(p)
    const g = this.#genOf(st.ino)
    this.#synced.set(g, b)
    // every durable name of this file (a hard link too) now holds these bytes
    for (const [q, gq] of this.#durableFile) if (gq === g) this.#durable.set(q, b)
  }

  /** Wraps node:fs. */
  install (): void {
    const self = this
    fsc.openSync = function (p: FS.PathLike, flags?: FS.OpenMode, mode?: FS.Mode | null) {
      const abs = path.resolve(String(p))
      const mine = self.#mine(abs)
      const creates = mine && writeFlag(flags) && !fsc.existsSync(abs)
      if (mine && writeFlag(flags)) self.#step()
      const fd = real.openSync(p, flags ?? 'r', mode)
      if (mine) self.#fds.set(fd, abs)
      if (creates) self.#born(abs)
      return fd
    } as typeof fsc.openSync
    fsc.closeSync = function (fd: number) { self.#fds.delete(fd); real.closeSync(fd) }
    fsc.writeSync = function (fd: number, ...rest: unknown[]) {
      if (self.#fds.has(fd)) self.#step()
      return (real.writeSync as (...a: unknown[]) => number)(fd, ...rest)
    } as typeof fsc.writeSync
    fsc.writevSync = function (fd: number, bufs: readonly NodeJS.ArrayBufferView[], pos?: number) {
      if (self.#fds.has(fd)) self.#step()
      return real.writevSync(fd, bufs, pos)
    } as typeof fsc.writevSync
    fsc.fsyncSync = (fd: number) => self.#sync(fd, real.fsyncSync)
    fsc.fdatasyncSync = (fd: number) => self.#sync(fd, real.fdatasyncSync)
    // the asynchronous ones (a group commit's, on libuv's pool): durable once they called back without error
    const later = (call: typeof real.fdatasync) => function (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) {
      const p = self.#fds.get(fd)
      if (p === undefined) { call(fd, cb); return }
      try { self.#step() } catch (e) { process.nextTick(cb, e as NodeJS.ErrnoException); return }
      self.syncs++
      call(fd, (err) => {
        if (err === null && !self.crashed) self.#synced1(fd, p)
        cb(err)
      })
    } as typeof fsc.fdatasync
    fsc.fdatasync = later(real.fdatasync)
    fsc.fsync = later(real.fsync) as typeof fsc.fsync
    fsc.renameSync = function (a: FS.PathLike, b: FS.PathLike) {
      if (self.#mine(path.resolve(String(b)))) self.#step()
      real.renameSync(a, b)
    }
    fsc.unlinkSync = function (a: FS.PathLike) {
      if (self.#mine(path.resolve(String(a)))) self.#step()
      real.unlinkSync(a)
    }
    fsc.ftruncateSync = function (fd: number, len?: number) {
      if (self.#fds.has(fd)) self.#step()
      real.ftruncateSync(fd, len)
    }
    fsc.writeFileSync = function (p: FS.PathOrFileDescriptor, ...rest: unknown[]) {
      const abs = typeof p === 'number' ? null : path.resolve(String(p))
      const creates = abs !== null && self.#mine(abs) && !fsc.existsSync(abs)
      if (abs === null ? self.#fds.has(p as number) : self.#mine(abs)) self.#step()
      ;(real.writeFileSync as (...a: unknown[]) => void)(p, ...rest)
      if (creates) self.#born(abs)
    } as typeof fsc.writeFileSync
    fsc.linkSync = function (a: FS.PathLike, b: FS.PathLike) {
      if (self.#mine(path.resolve(String(b)))) self.#step()
      real.linkSync(a, b)
    }
    // the asynchronous unlink (of a replaced live file, on libuv's pool) is made here and now: the
    // name is gone from the directory as of the call (durable at the next directory fsync), not at
    // whatever moment the pool gets to it, and never once the machine is off
    fsc.unlink = function (a: FS.PathLike, cb: FS.NoParamCallback) {
      if (!self.#mine(path.resolve(String(a)))) { real.unlink(a, cb); return }
      try { self.#step(); real.unlinkSync(a) } catch (e) { process.nextTick(cb, e as NodeJS.ErrnoException); return }
      process.nextTick(cb, null)
    } as typeof fsc.unlink
    syncBuiltinESMExports()
  }

  /** Restores node:fs. */
  uninstall (): void {
    Object.assign(fsc, real)
    syncBuiltinESMExports()
  }

  /**
   * Uninstalls, then turns the files under the root into what the cut leaves: `drop` keeps exactly
   * the durable state; `random` (with `rand` giving numbers in [0, 1)) lets each file whose current
   * bytes differ from its durable ones keep them, lose them, keep a random prefix of the new bytes
   * or have them zeroed (a file that was never durable may vanish or stay). With `only`, files for
   * which it is false keep their current bytes.
   * @returns a line per file changed, for failure messages.
   */
  cut (mode: 'drop' | 'random', rand: () => number = Math.random, only: (file: string) => boolean = () => true): string[] {
    this.uninstall()
    const notes: string[] = []
    const paths = new Set([...filesUnder(this.root), ...this.#durable.keys()])
    for (const p of [...paths].sort()) {
      if (!only(p)) continue
      let cur: Buffer | null = null
      try { cur = fsc.readFileSync(p) } catch { /* not there now */ }
      const dur = this.#durable.get(p) ?? null
      if (cur !== null && dur !== null && cur.equals(dur)) continue
      if (cur === null && dur === null) continue
      let out: Buffer | null = dur
      let how = 'reverted'
      if (mode === 'random' && cur !== null) {
        const r = rand()
        const base = dur ?? Buffer.alloc(0)
        const prefix = cur.length > base.length && cur.subarray(0, base.length).equals(base)
        if (r < 0.3) { out = cur; how = 'kept' } else if (r < 0.55 && prefix) {
          const n = base.length + Math.floor(rand() * (cur.length - base.length))
          out = cur.subarray(0, n); how = `torn at ${n} of ${cur.length}`
        } else if (r < 0.75 && prefix) {
          const n = base.length + Math.floor(rand() * (cur.length - base.length))
          out = Buffer.concat([cur.subarray(0, n), Buffer.alloc(cur.length - n)]); how = `zeroed from ${n} of ${cur.length}`
        }
      }
      // a name's bytes are replaced by a new file, never written through the name: another name of
      // the same inode (a hard link, as `.<name>.ckpt.old` of the live file) keeps its own outcome
      if (out === cur) { notes.push(`${path.relative(this.root, p)}: ${how}`); continue }
      let perm = 0o600
      try { perm = fsc.statSync(p).mode & 0o777 } catch { /* not there now */ }
      try { fsc.unlinkSync(p) } catch { /* gone */ }
      if (out === null) how = dur === null && how === 'reverted' ? 'lost' : how
      else fsc.writeFileSync(p, out, { mode: perm })
      notes.push(`${path.relative(this.root, p)}: ${how}`)
    }
    return notes
  }
}
