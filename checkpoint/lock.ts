/**
 * One writer per agent and per node data directory (issue 7 §4, docs/FORMAT.md "Locks",
 * docs/RATIONALE.md "Writer locks").
 *
 * A lock is a file created atomically and exclusively: the holder's record is written to a private
 * temp file, fsynced, then hard-linked to the lock path (`link` fails with EEXIST when the lock
 * exists — O_EXCL semantics with the content already complete, so nobody ever reads a half-written
 * lock). The record is one JSON line `{pid, start, cmd, since, host, nonce}`: process ID, the
 * process's start time from `/proc/<pid>/stat` (field 22, clock ticks since boot; null where there
 * is no /proc), the command line, ISO time of acquisition, host name and a random nonce.
 *
 * A lock is stale when its host is this host and its process is gone: `kill(pid, 0)` fails with
 * ESRCH, or the pid now belongs to a process that started at another time (a reused pid). A stale
 * lock is taken over: renamed aside, re-read to make sure it is still the stale record (not a lock
 * another process took over a moment ago, which is then put back), removed, and the link retried.
 * A lock of another host (a data directory on a shared file system) is never judged stale.
 *
 * Locks are released on {@link Lock.release} and, for every lock still held, when the process
 * exits (the `exit` event: normal end, `process.exit`, uncaught error). kill -9 leaves the file,
 * which the next writer finds stale.
 *
 * Two kinds, both in `<dir>/locks/` (checkpoint/layout.ts): `<name>.lock`, held by the process
 * writing agent `<name>` (`igord run`, `igord resume`, or a node for each agent it hosts), and
 * `.node.lock`, held by `igord node` for its whole data directory. A process takes its own lock
 * first and then looks at the other kind ({@link lockAgent}, {@link lockNode}); so of two processes
 * racing, at least one sees the other and refuses.
 */
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { EXIT, IgordError, StorageError } from './errors.ts'
import { agentLockPath, checkAgentName, FILE_MODE, locksDir, makePrivateDir, nodeLockPath } from './layout.ts'

/** The record in a lock file. `start` is the holder's start time in clock ticks since boot (null when unknown). */
export interface LockHolder { pid: number; start: string | null; cmd: string; since: string; host: string; nonce: string }

/** Another live process holds a lock (exit code {@link EXIT}.LOCKED, 10). */
export class LockedError extends IgordError {
  /** the holder's record (null when the lock file could not be parsed) */
  readonly holder: LockHolder | null
  constructor (message: string, holder: LockHolder | null) {
    super(message, EXIT.LOCKED, 'LOCKED')
    this.holder = holder
  }
}

/** Locks this process holds: lock path → nonce. */
const held = new Map<string, string>()
let exitHook = false

/**
 * The start time of process `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), or
 * null when it cannot be read (no such process, no /proc).
 */
export function processStart (pid: number): string | null {
  let stat: string
  try { stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8') } catch { return null }
  // comm (field 2) is in parentheses and may hold spaces or ')': fields 3… follow the last ')'
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const v = rest[22 - 3]
  return v !== undefined && /^\d+$/.test(v) ? v : null
}

const MY_START = processStart(process.pid)

/** This process's record for a new lock. */
function myRecord (): LockHolder {
  const cmd = ['igord', ...process.argv.slice(2)].join(' ')
  return { pid: process.pid, start: MY_START, cmd: cmd.length > 200 ? cmd.slice(0, 197) + '...' : cmd, since: new Date().toISOString(), host: os.hostname(), nonce: randomBytes(8).toString('hex') }
}

/** Parses a lock record; null when it is not one. */
export function parseHolder (text: string): LockHolder | null {
  try {
    const o = JSON.parse(text) as Record<string, unknown>
    if (typeof o !== 'object' || o === null || !Number.isSafeInteger(o.pid) || (o.pid as number) <= 0) return null
    return {
      pid: o.pid as number,
      start: typeof o.start === 'string' ? o.start : null,
      cmd: typeof o.cmd === 'string' ? o.cmd : '?',
      since: typeof o.since === 'string' ? o.since : '?',
      host: typeof o.host === 'string' ? o.host : '?',
      nonce: typeof o.nonce === 'string' ? o.nonce : '',
    }
  } catch { return null }
}

/**
 * True when `h` may still hold its lock: it is this process's own lock, or it belongs to another
 * host (cannot be checked), or its pid is alive and (when both are known) started at the recorded time.
 */
export function holderAlive (h: LockHolder): boolean {
  if (h.host !== os.hostname()) return true
  if (h.pid === process.pid && h.start === MY_START) return [...held.values()].includes(h.nonce)
  try { process.kill(h.pid, 0) } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false
    // EPERM: alive, owned by another user
  }
  const now = processStart(h.pid)
  if (h.start !== null && now !== null && now !== h.start) return false // the pid was reused
  return true
}

/** One line naming a holder: `pid 123 (igord resume a.ckpt) since <iso>[ on host h]`. */
export function describeHolder (h: LockHolder): string {
  return `pid ${h.pid} (${h.cmd}) since ${h.since}${h.host === os.hostname() ? '' : ` on host ${h.host}`}`
}

function readRaw (file: string): string | null {
  try { return fs.readFileSync(file, 'utf8') } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new StorageError(`${file}: cannot read the lock: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
}

/**
 * The live holder of lock `file`, or null when there is no lock or it is stale.
 * @throws StorageError when the lock exists but cannot be read
 */
export function liveHolder (file: string): LockHolder | null {
  const raw = readRaw(file)
  if (raw === null) return null
  const h = parseHolder(raw)
  return h !== null && holderAlive(h) ? h : null
}

function errno (e: unknown): string | undefined { return (e as NodeJS.ErrnoException).code }

/** A lock this process holds. */
export class Lock {
  /** the lock file */
  readonly file: string
  /** this process's record in it */
  readonly holder: LockHolder
  /** the stale holder this lock was taken over from (its process was gone), if any */
  readonly tookOver: LockHolder | null
  #released = false

  constructor (file: string, holder: LockHolder, tookOver: LockHolder | null) {
    this.file = file
    this.holder = holder
    this.tookOver = tookOver
  }

  /** Removes the lock file if it is still this lock's (never another process's). Idempotent; never throws. */
  release (): void {
    if (this.#released) return
    this.#released = true
    releaseFile(this.file, this.holder.nonce)
  }
}

function releaseFile (file: string, nonce: string): void {
  if (held.get(file) !== nonce) return
  held.delete(file)
  try {
    const h = parseHolder(fs.readFileSync(file, 'utf8'))
    if (h !== null && h.nonce === nonce) fs.unlinkSync(file)
  } catch { /* gone */ }
}

/**
 * Takes lock `file` (see the module doc) or throws naming its live holder.
 * @param what the locked thing in the error, e.g. `agent 'a' in /data`.
 * @throws LockedError `<what> is locked by pid N (cmd) since T (<file>)` (exit 10);
 *   StorageError when the locks folder or file cannot be written or read.
 */
export function acquireLock (file: string, what: string): Lock {
  try { makePrivateDir(path.dirname(file)) } catch (e) { throw new StorageError(`${path.dirname(file)}: cannot create directory: ${errno(e) ?? (e as Error).message}`) }
  const me = myRecord()
  const tmp = `${file}.${process.pid}-${me.nonce}.tmp`
  try {
    const fd = fs.openSync(tmp, 'wx', FILE_MODE)
    try { fs.writeSync(fd, JSON.stringify(me) + '\n'); fs.fsyncSync(fd) } finally { fs.closeSync(fd) }
  } catch (e) { throw new StorageError(`${tmp}: cannot write the lock: ${errno(e) ?? (e as Error).message}`) }
  let tookOver: LockHolder | null = null
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        fs.linkSync(tmp, file)
        held.set(file, me.nonce)
        if (!exitHook) {
          exitHook = true
          process.on('exit', () => { for (const [f, n] of [...held]) releaseFile(f, n) })
        }
        return new Lock(file, me, tookOver)
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw new StorageError(`${file}: cannot create the lock: ${errno(e) ?? (e as Error).message}`)
      }
      const raw = readRaw(file)
      if (raw === null) continue // released meanwhile
      const h = parseHolder(raw)
      if (h !== null && holderAlive(h)) throw new LockedError(`${what} is locked by ${describeHolder(h)} (${file})`, h)
      // stale (process gone, pid reused, or an unreadable record): take it over
      const aside = `${file}.stale-${process.pid}-${me.nonce}`
      try { fs.renameSync(file, aside) } catch (e) {
        if (errno(e) === 'ENOENT') continue
        throw new StorageError(`${file}: cannot take over the stale lock: ${errno(e) ?? (e as Error).message}`)
      }
      const moved = readRaw(aside)
      if (moved === raw) {
        try { fs.unlinkSync(aside) } catch { /* gone */ }
        tookOver = h
        continue
      }
      // another process took the stale lock over between our read and our rename: give it back
      try { fs.linkSync(aside, file) } catch { /* a third process holds it now; ours is lost either way */ }
      try { fs.unlinkSync(aside) } catch { /* gone */ }
    }
    const h = liveHolder(file)
    throw new LockedError(`${what} is locked${h === null ? '' : ` by ${describeHolder(h)}`} (${file}; contended)`, h)
  } finally {
    try { fs.unlinkSync(tmp) } catch { /* gone */ }
  }
}

/**
 * Takes the writer lock of agent `name` in data directory `dir`, then makes sure no node serves
 * `dir` (unless this process is that node).
 * @throws NameError for a bad name; LockedError naming the agent's writer or the node (exit 10);
 *   StorageError
 */
export function lockAgent (dir: string, name: string): Lock {
  checkAgentName(name)
  const lock = acquireLock(agentLockPath(dir, name), `agent '${name}' in ${path.resolve(dir)}`)
  try {
    const node = liveHolder(nodeLockPath(dir))
    if (node !== null && !(node.pid === process.pid && [...held.values()].includes(node.nonce))) {
      throw new LockedError(`${path.resolve(dir)} is served by an igord node, ${describeHolder(node)}: use igord run --node / igord ps --node there (${nodeLockPath(dir)})`, node)
    }
  } catch (e) { lock.release(); throw e }
  return lock
}

/**
 * Takes the node lock of data directory `dir`, then makes sure no other process writes an agent
 * there.
 * @throws LockedError naming the other node or the agent's writer (exit 10); StorageError
 */
export function lockNode (dir: string): Lock {
  const lock = acquireLock(nodeLockPath(dir), `data directory ${path.resolve(dir)}`)
  try {
    let names: string[] = []
    try { names = fs.readdirSync(locksDir(dir)) } catch { /* none */ }
    for (const n of names) {
      if (n.startsWith('.') || !n.endsWith('.lock')) continue
      const h = liveHolder(path.join(locksDir(dir), n))
      if (h !== null && h.pid !== process.pid) {
        throw new LockedError(`agent '${n.slice(0, -5)}' in ${path.resolve(dir)} is locked by ${describeHolder(h)}: stop it before starting a node there (${path.join(locksDir(dir), n)})`, h)
      }
    }
  } catch (e) { lock.release(); throw e }
  return lock
}

/**
 * Throws when another process is writing agent `name` in `dir` (read-only check, no lock taken):
 * for `igord resume <dir>/<name>.ckpt --dir elsewhere`, which would copy a running agent.
 * @throws LockedError (exit 10); StorageError when the lock cannot be read
 */
export function assertNotWritten (dir: string, name: string, what: string): void {
  for (const file of [agentLockPath(dir, name), nodeLockPath(dir)]) {
    const h = liveHolder(file)
    if (h !== null && h.pid !== process.pid) throw new LockedError(`${what} is being written by ${describeHolder(h)}: stop it first (${file})`, h)
  }
}
