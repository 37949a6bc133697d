/**
 * Authority records on disk (DESIGN §9): what a node must remember across a crash so that an agent
 * never has two live instances and is never lost during a migration.
 *
 * Target side, in `<data>/migrate/`:
 * - `<name>.pending.ckpt` + `<name>.pending.cbor` — an accepted agent waiting for the source's
 *   handoff (the live checkpoint, mode 0600, and `{v, id, from, addrs, offer, agent, tick}`);
 *   written (atomically, fsynced) before the target answers `pending`.
 * - `<name>.handoff.cbor` — `{header, sig}` of the signed handoff checkpoint that made this node the
 *   agent's host; written before the pending live file is moved to `<data>/<name>.ckpt`. On restart
 *   it tells the node that the agent's next checkpoint follows the handoff, in epoch + 1.
 *
 * Source side: the handoff checkpoint itself, in the agent's history (`status: handoff`,
 * `prev` = the offered checkpoint, `target` = the target). {@link findHandoff} looks it up to answer
 * status queries and to keep a restarted source from running an agent it already handed off.
 *
 * Both sides append one JSON line per migration outcome to `<data>/migrations.log`.
 *
 * Nothing here deletes what may be the only copy of an agent (issue 7 §6). Only a definite "no
 * record" (ENOENT) reads as none; a record that exists but cannot be read or decoded (EIO, EACCES,
 * a directory in its place, corrupt bytes, a bad signature) is moved aside with everything that
 * goes with it to `migrate/quarantine/<name>-<time>/` ({@link quarantine}), reported (a note line
 * and `migrations.log`; `igord ps` lists the quarantine) and then reads as none; when it cannot be
 * moved either, the read throws and the caller leaves everything where it is.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { asMap, decodeFile, encodeFile } from '../checkpoint/cbor.ts'
import { StorageError } from '../checkpoint/errors.ts'
import { historyDir, historyName, makePrivateDir, migrateRoot, migrationsLogPath, PENDING_SUFFIX, quarantineDir, recordPaths as layoutRecordPaths } from '../checkpoint/layout.ts'
import { decodeHeader, verifyHeader } from '../checkpoint/header.ts'
import type { CheckpointHeader } from '../checkpoint/header.ts'
import { atomicWrite, fsyncDir } from '../checkpoint/store.ts'
import { decodeEntry } from '../checkpoint/entries.ts'
import { entryWhere, scanSegment } from '../checkpoint/segment.ts'

/** A pending arrival: what the target stored before answering `pending`. */
export interface PendingRecord {
  /** migration id (32 hex chars) */
  id: string
  /** source peer ID */
  from: string
  /** source multiaddrs (to ask it after a crash) */
  addrs: string[]
  /** CID of the offered checkpoint header */
  offer: string
  /** the agent's DID */
  agent: string
  /** the offered checkpoint's tick and epoch */
  tick: number
  epoch: number
}

/** A signed handoff checkpoint header: bytes as signed, signature, decoded form. */
export interface SignedHeader { header: Uint8Array; sig: Uint8Array; parsed: CheckpointHeader }

/**
 * How records are read: replaceable by tests to simulate EIO or EACCES (tests run as root, so
 * `chmod 000` does not deny them anything). `readFile(path)` returns the bytes or throws an errno error.
 */
export const authorityIo: { readFile: (p: string) => Uint8Array } = { readFile: (p) => fs.readFileSync(p) }

/** `<data>/migrate` (mode 0700), created on demand. @throws StorageError */
export function migrateDir (dir: string): string {
  const d = migrateRoot(dir)
  try { makePrivateDir(d) } catch (e) { throw new StorageError(`${d}: cannot create directory: ${(e as Error).message}`) }
  return d
}

/** Paths of one agent's records in `<data>/migrate/` (created on demand; checkpoint/layout.ts). @throws StorageError */
export function recordPaths (dir: string, name: string): { pendingCkpt: string; pending: string; handoff: string } {
  migrateDir(dir)
  const p = layoutRecordPaths(dir, name)
  return { pendingCkpt: p.pendingCkpt, pending: p.pending, handoff: p.handoff }
}

/** A record that exists but cannot be read or decoded (not ENOENT). */
class Unreadable extends Error {}

/** Reads a record's bytes: null for a definite "no such file" (ENOENT); throws {@link Unreadable} for any other failure. */
function readRecord (p: string): Uint8Array | null {
  try { return authorityIo.readFile(p) } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return null
    throw new Unreadable(`${p}: cannot read: ${code ?? (e as Error).message}`)
  }
}

/** True unless `p` certainly does not exist (ENOENT, or ENOTDIR: a parent is not a folder). */
function exists (p: string): boolean {
  try { fs.lstatSync(p); return true } catch (e) { const c = (e as NodeJS.ErrnoException).code; return c !== 'ENOENT' && c !== 'ENOTDIR' }
}

/**
 * Moves `files` (those that exist) into a new folder `<data>/migrate/quarantine/<name>-<time>/`
 * (mode 0700, names kept), writes `reason.txt` there, appends a `quarantined` line to
 * `migrations.log` and calls `note` with one line naming the folder. Never deletes anything.
 * @returns the quarantine folder
 * @throws StorageError when the folder cannot be made or a file cannot be moved (what was not
 *   moved stays where it was)
 */
export function quarantine (dir: string, name: string, files: string[], reason: string, note?: (line: string) => void): string {
  const q = path.join(quarantineDir(dir), `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}`)
  let folder = q
  for (let k = 1; k < 100 && exists(folder); k++) folder = `${q}.${k}`
  try { makePrivateDir(folder) } catch (e) { throw new StorageError(`${folder}: cannot create the quarantine folder: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
  for (const f of files) {
    if (!exists(f)) continue
    try { fs.renameSync(f, path.join(folder, path.basename(f))) } catch (e) { throw new StorageError(`${f}: cannot move into quarantine ${folder}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
  }
  try { fs.writeFileSync(path.join(folder, 'reason.txt'), reason + '\n', { mode: 0o600 }) } catch { /* the files are safe; the reason is also logged */ }
  try { fsyncDir(path.dirname(files[0] ?? folder)); fsyncDir(folder) } catch { /* best effort */ }
  recordOutcome(dir, { outcome: 'quarantined', name, folder, reason })
  note?.(`${name}: ${reason}; moved aside to ${folder} (not deleted: it may be the only copy of the agent)`)
  return folder
}

/** The folders in `<data>/migrate/quarantine/` (absolute paths, sorted): records set aside for an operator. */
export function quarantined (dir: string): string[] {
  try { return fs.readdirSync(quarantineDir(dir)).sort().map((n) => path.join(quarantineDir(dir), n)) } catch { return [] }
}

/**
 * Durably stores a pending arrival: the live checkpoint chunks (mode 0600), then the record, each
 * written and fsynced then renamed into place, with one fsync of the folder for both renames (a
 * record found without its checkpoint after a crash holds nothing and is dropped at start).
 * @throws StorageError on I/O failure
 */
export function writePending (dir: string, name: string, live: Uint8Array[], rec: PendingRecord): void {
  const p = recordPaths(dir, name)
  atomicWrite(p.pendingCkpt, live, 0o600, false)
  atomicWrite(p.pending, encodeFile({ v: 1, ...rec }), 0o600)
}

/**
 * As {@link writePending}, for a pending live checkpoint already written and synced as `file`
 * (p2p/pending-file.ts, on the same file system): renames it into place, then writes the record,
 * with one fsync of the folder for both renames.
 * @throws StorageError on I/O failure
 */
export function writePendingFile (dir: string, name: string, file: string, rec: PendingRecord): void {
  const p = recordPaths(dir, name)
  try { fs.renameSync(file, p.pendingCkpt) } catch (e) { throw new StorageError(`${p.pendingCkpt}: cannot move the received checkpoint into place: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
  atomicWrite(p.pending, encodeFile({ v: 1, ...rec }), 0o600)
}

function decodePending (bytes: Uint8Array, file: string): PendingRecord {
  const m = asMap(decodeFile(bytes, file), file, 'pending record')
  const str = (k: string) => { if (typeof m[k] !== 'string') throw new Unreadable(`${file}: field "${k}" must be a string`); return m[k] as string }
  const num = (k: string) => { const v = Number(m[k]); if (!Number.isSafeInteger(v) || v < 0) throw new Unreadable(`${file}: field "${k}" must be a count`); return v }
  if (!Array.isArray(m.addrs) || m.addrs.some((a) => typeof a !== 'string')) throw new Unreadable(`${file}: field "addrs" must be an array of strings`)
  return { id: str('id'), from: str('from'), addrs: m.addrs as string[], offer: str('offer'), agent: str('agent'), tick: num('tick'), epoch: num('epoch') }
}

/**
 * Reads the pending record of `name`. Null when there is none (ENOENT). A record that exists but
 * cannot be read or decoded is moved to quarantine together with the pending live checkpoint
 * (see {@link quarantine}; `note` receives the report line) and then reads as null.
 * @throws StorageError when it is unreadable and cannot be moved aside (nothing is then removed)
 */
export function readPending (dir: string, name: string, note?: (line: string) => void): PendingRecord | null {
  const p = recordPaths(dir, name)
  try {
    const bytes = readRecord(p.pending)
    if (bytes === null) return null
    return decodePending(bytes, p.pending)
  } catch (e) {
    quarantine(dir, name, [p.pending, p.pendingCkpt], `unreadable pending arrival: ${(e as Error).message}`, note)
    return null
  }
}

/** Names with a pending record in `<data>/migrate/` (those obeying the name rule). */
export function pendingNames (dir: string): string[] {
  let names: string[] = []
  try { names = fs.readdirSync(migrateDir(dir)) } catch { return [] }
  return names.filter((n) => n.endsWith(PENDING_SUFFIX)).map((n) => n.slice(0, -PENDING_SUFFIX.length))
}

/**
 * Moves aside (to quarantine, never deletes) a pending live checkpoint that has no pending record:
 * a crash between the two writes of {@link writePending}, before the target answered `pending`.
 * @returns the quarantine folder, or null when there is no such file
 * @throws StorageError when it cannot be moved
 */
export function setAsideOrphanPending (dir: string, name: string, note?: (line: string) => void): string | null {
  const p = recordPaths(dir, name)
  if (!exists(p.pendingCkpt) || exists(p.pending)) return null
  return quarantine(dir, name, [p.pendingCkpt], 'pending live checkpoint without its record', note)
}

/**
 * Removes an agent's pending files. Only for a pending copy that is certainly not the only one:
 * once installed (the live checkpoint was moved into place), or after its source answered that the
 * migration was aborted (the source still hosts the agent).
 */
export function dropPending (dir: string, name: string): void {
  const p = recordPaths(dir, name)
  for (const f of [p.pendingCkpt, p.pending]) try { fs.unlinkSync(f) } catch { /* gone */ }
  try { fsyncDir(path.dirname(p.pending)) } catch { /* best effort */ }
}

/** Durably stores the handoff checkpoint that made this node the agent's host. @throws StorageError */
export function writeHandoffRecord (dir: string, name: string, h: { header: Uint8Array; sig: Uint8Array }): void {
  atomicWrite(recordPaths(dir, name).handoff, encodeFile({ v: 1, header: h.header, sig: h.sig }), 0o600)
}

/**
 * The stored handoff record of `name`, or null when there is none (ENOENT). A record that cannot be
 * read, decoded or whose signature does not verify is moved to quarantine (see {@link quarantine})
 * and reads as null.
 * @throws StorageError when it is unreadable and cannot be moved aside
 */
export function readHandoffRecord (dir: string, name: string, note?: (line: string) => void): SignedHeader | null {
  const p = recordPaths(dir, name).handoff
  try {
    const bytes = readRecord(p)
    if (bytes === null) return null
    const m = asMap(decodeFile(bytes, p), p, 'handoff record')
    const header = m.header; const sig = m.sig
    if (!(header instanceof Uint8Array) || !(sig instanceof Uint8Array)) throw new Unreadable(`${p}: fields "header" and "sig" must be byte strings`)
    const parsed = decodeHeader(header, p)
    if (!verifyHeader(header, sig, parsed.agent)) throw new Unreadable(`${p}: the signature does not verify`)
    return { header, sig, parsed }
  } catch (e) {
    quarantine(dir, name, [p], `unreadable handoff record: ${(e as Error).message}`, note)
    return null
  }
}

/** Removes a handoff record that is no longer needed. */
export function dropHandoffRecord (dir: string, name: string): void {
  try { fs.unlinkSync(recordPaths(dir, name).handoff) } catch { /* gone */ }
}

/**
 * Finds, in `<data>/history/<name>/`, the signed handoff checkpoint written at `tick` whose `prev` is
 * `prev` (the checkpoint that was offered): proof that the agent was handed off from here.
 * @returns it, or null when this node certainly never committed that handoff (no history, or every
 *   entry at that tick read and none is that handoff)
 * @throws StorageError when the history or an entry at that tick cannot be read or decoded: then
 *   nobody may conclude "not handed off" (a target would drop what may be the only copy)
 */
export function findHandoff (dir: string, name: string, tick: number, prev: string): SignedHeader | null {
  const hist = historyDir(dir, name)
  let names: string[]
  try { names = fs.readdirSync(hist) } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new StorageError(`${hist}: cannot list: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  let unreadable: string | null = null
  for (const n of names) {
    // an entry file of that tick, or a segment whose first entry is not past it
    const h = historyName(n)
    if (h === null || (h.kind === 'entry' ? h.tick !== tick : h.tick > tick)) continue
    const f = path.join(hist, n)
    try {
      const bytes = readRecord(f)
      if (bytes === null) continue
      let entries: { at: number | null; bytes: Uint8Array }[] = [{ at: null, bytes }]
      if (h.kind === 'segment') {
        // a torn tail is a frame never synced (a handoff's entry is synced before it counts); damaged bytes may hide the entry
        const scan = scanSegment(bytes, f)
        if (scan.damaged.length > 0) unreadable = `${f}: bytes ${scan.damaged[0][0]}–${scan.damaged[0][1]} are damaged`
        entries = scan.entries
      }
      for (const x of entries) {
        const where = entryWhere({ file: f, at: x.at })
        let e
        try { e = decodeEntry(x.bytes, where) } catch (err) { unreadable = (err as Error).message; continue }
        if (e.parsed.tick === tick && e.parsed.status === 'handoff' && e.parsed.prev === prev && verifyHeader(e.headerBytes, e.sig, e.parsed.agent)) {
          return { header: e.headerBytes, sig: e.sig, parsed: e.parsed }
        }
      }
    } catch (e) { unreadable = (e as Error).message }
  }
  if (unreadable !== null) throw new StorageError(`cannot tell whether ${name} was handed off at tick ${tick}: ${unreadable}`)
  return null
}

/**
 * Checks that `h` is a valid handoff of the offered checkpoint `offer` (header bytes) to `me`:
 * signed by the agent, status handoff, target `me`, prev = CID(offer), same agent, epoch, tick,
 * state, fuel, budget, code and manifest.
 * @returns null when valid, else the reason
 */
export function checkHandoff (h: { header: Uint8Array; sig: Uint8Array }, offer: CheckpointHeader, offerCid: string, me: string): string | null {
  let p: CheckpointHeader
  try { p = decodeHeader(h.header, 'handoff') } catch (e) { return (e as Error).message }
  if (p.agent !== offer.agent) return `handoff is for ${p.agent}, not ${offer.agent}`
  if (!verifyHeader(h.header, h.sig, p.agent)) return 'handoff signature does not verify'
  if (p.status !== 'handoff') return `handoff checkpoint has status ${p.status}`
  if (p.target !== me) return `handoff names ${p.target}, not this node`
  if (p.prev !== offerCid) return `handoff does not follow the offered checkpoint ${offerCid}`
  if (p.epoch !== offer.epoch || p.tick !== offer.tick || p.fuel !== offer.fuel || p.budget !== offer.budget ||
    p.code !== offer.code || p.manifest !== offer.manifest || Buffer.compare(p.state, offer.state) !== 0) return 'handoff changes the offered state'
  return null
}

/** Appends one JSON line (with `time`, ISO) to `<data>/migrations.log`; never throws. */
export function recordOutcome (dir: string, o: Record<string, unknown>): void {
  try { fs.appendFileSync(migrationsLogPath(dir), JSON.stringify({ time: new Date().toISOString(), ...o }) + '\n', { mode: 0o600 }) } catch { /* best effort */ }
}


/**
 * Where agents handed off from this node went, from the source `handoff` lines of
 * `<data>/migrations.log`: agent name → the target's peer ID (`to`) and the multiaddr the
 * migration dialed (`addr`); the last line of a name wins. A node reads it at start to forward
 * messages for agents that left before (p2p/inbox.ts). Lines that do not parse, or have no `addr`
 * (written before it was recorded), are skipped; never throws (no log: an empty map).
 */
export function handoffTargets (dir: string): Map<string, { to: string; addr: string }> {
  const out = new Map<string, { to: string; addr: string }>()
  let text: string
  try { text = fs.readFileSync(migrationsLogPath(dir), 'utf8') } catch { return out }
  for (const line of text.split('\n')) {
    if (!line.includes('"handoff"')) continue
    try {
      const o = JSON.parse(line) as Record<string, unknown>
      if (o.role === 'source' && o.outcome === 'handoff' && typeof o.name === 'string' && typeof o.to === 'string' && typeof o.addr === 'string') out.set(o.name, { to: o.to, addr: o.addr })
    } catch { /* a torn line */ }
  }
  return out
}
