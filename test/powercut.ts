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
 *
 * {@link PowerCut.crashAt}: the n-th mutating call (open for writing, write, writev, fsync,
 * fdatasync (also the asynchronous ones), rename, unlink, ftruncate) throws {@link PowerCutCrash} instead of running, and so
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
  ftruncateSync: fsc.ftruncateSync, writeFileSync: fsc.writeFileSync,
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
  /** path → inode its durable name points to */
  readonly #durableIno = new Map<string, number>()
  /** inode → its bytes as of its last sync */
  readonly #synced = new Map<number, Buffer>()
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
      const b = fsc.readFileSync(f)
      const ino = fsc.statSync(f).ino
      this.#durable.set(f, b); this.#durableIno.set(f, ino); this.#synced.set(ino, b)
    }
  }

  #mine (p: string): boolean { return p === this.root || p.startsWith(this.root + path.sep) }

  #step (): void {
    if (this.crashed) throw new PowerCutCrash('power cut: the machine is off')
    this.calls++
    if (this.calls >= this.crashAt) { this.crashed = true; throw new PowerCutCrash(`power cut at mutating call ${this.calls}`) }
  }

  #snapshotDir (d: string): void {
    const now = new Map<string, number>()
    for (const e of fsc.readdirSync(d, { withFileTypes: true })) if (e.isFile()) { const p = path.join(d, e.name); now.set(p, fsc.statSync(p).ino) }
    for (const p of [...this.#durable.keys()]) if (path.dirname(p) === d && !now.has(p)) { this.#durable.delete(p); this.#durableIno.delete(p) }
    for (const [p, ino] of now) {
      const was = this.#durableIno.get(p)
      this.#durable.set(p, this.#synced.get(ino) ?? (was === ino ? this.#durable.get(p)! : Buffer.alloc(0)))
      this.#durableIno.set(p, ino)
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
    this.#synced.set(st.ino, b)
    if (this.#durableIno.get(p) === st.ino) this.#durable.set(p, b)
  }

  /** Wraps node:fs. */
  install (): void {
    const self = this
    fsc.openSync = function (p: FS.PathLike, flags?: FS.OpenMode, mode?: FS.Mode | null) {
      const abs = path.resolve(String(p))
      const mine = self.#mine(abs)
      if (mine && writeFlag(flags)) self.#step()
      const fd = real.openSync(p, flags ?? 'r', mode)
      if (mine) self.#fds.set(fd, abs)
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
      if (typeof p === 'number' ? self.#fds.has(p) : self.#mine(path.resolve(String(p)))) self.#step()
      return (real.writeFileSync as (...a: unknown[]) => void)(p, ...rest)
    } as typeof fsc.writeFileSync
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
      if (out === null) { try { fsc.unlinkSync(p) } catch { /* gone */ } how = dur === null && how === 'reverted' ? 'lost' : how } else fsc.writeFileSync(p, out)
      notes.push(`${path.relative(this.root, p)}: ${how}`)
    }
    return notes
  }
}
