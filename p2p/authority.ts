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
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { asMap, decodeFile, encodeFile } from '../checkpoint/cbor.ts'
import { StorageError } from '../checkpoint/errors.ts'
import { decodeHeader, verifyHeader } from '../checkpoint/header.ts'
import type { CheckpointHeader } from '../checkpoint/header.ts'
import { atomicWrite, fsyncDir } from '../checkpoint/store.ts'
import { decodeEntry } from '../checkpoint/writer.ts'

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

/** `<data>/migrate`, created on demand. */
export function migrateDir (dir: string): string {
  const d = path.join(dir, 'migrate')
  try { fs.mkdirSync(d, { recursive: true, mode: 0o700 }) } catch (e) { throw new StorageError(`${d}: cannot create directory: ${(e as Error).message}`) }
  return d
}

/** Paths of one agent's records in `<data>/migrate/`. */
export function recordPaths (dir: string, name: string): { pendingCkpt: string; pending: string; handoff: string } {
  const d = migrateDir(dir)
  return { pendingCkpt: path.join(d, `${name}.pending.ckpt`), pending: path.join(d, `${name}.pending.cbor`), handoff: path.join(d, `${name}.handoff.cbor`) }
}

/**
 * Durably stores a pending arrival: the live checkpoint chunks (mode 0600), then the record.
 * @throws StorageError on I/O failure
 */
export function writePending (dir: string, name: string, live: Uint8Array[], rec: PendingRecord): void {
  const p = recordPaths(dir, name)
  atomicWrite(p.pendingCkpt, live, 0o600)
  atomicWrite(p.pending, encodeFile({ v: 1, ...rec }), 0o600)
}

/** Reads a pending record, or null when there is none or it is unreadable (then it is ignored). */
export function readPending (dir: string, name: string): PendingRecord | null {
  const p = recordPaths(dir, name)
  try {
    const m = asMap(decodeFile(fs.readFileSync(p.pending), p.pending), p.pending, 'pending record')
    return { id: String(m.id), from: String(m.from), addrs: (m.addrs as unknown[]).map(String), offer: String(m.offer), agent: String(m.agent), tick: Number(m.tick), epoch: Number(m.epoch) }
  } catch { return null }
}

/** Names with a pending record in `<data>/migrate/`. */
export function pendingNames (dir: string): string[] {
  let names: string[] = []
  try { names = fs.readdirSync(migrateDir(dir)) } catch { return [] }
  return names.filter((n) => n.endsWith('.pending.cbor')).map((n) => n.slice(0, -'.pending.cbor'.length))
}

/** Removes an agent's pending files (after an abort, or once installed). */
export function dropPending (dir: string, name: string): void {
  const p = recordPaths(dir, name)
  for (const f of [p.pendingCkpt, p.pending]) try { fs.unlinkSync(f) } catch { /* gone */ }
  try { fsyncDir(path.dirname(p.pending)) } catch { /* best effort */ }
}

/** Durably stores the handoff checkpoint that made this node the agent's host. @throws StorageError */
export function writeHandoffRecord (dir: string, name: string, h: { header: Uint8Array; sig: Uint8Array }): void {
  atomicWrite(recordPaths(dir, name).handoff, encodeFile({ v: 1, header: h.header, sig: h.sig }), 0o600)
}

/** The stored handoff record of `name`, or null (missing, unreadable or not validly signed). */
export function readHandoffRecord (dir: string, name: string): SignedHeader | null {
  const p = recordPaths(dir, name).handoff
  try {
    const m = asMap(decodeFile(fs.readFileSync(p), p), p, 'handoff record')
    const header = m.header as Uint8Array; const sig = m.sig as Uint8Array
    const parsed = decodeHeader(header, p)
    if (!verifyHeader(header, sig, parsed.agent)) return null
    return { header, sig, parsed }
  } catch { return null }
}

/** Removes a handoff record that is no longer needed. */
export function dropHandoffRecord (dir: string, name: string): void {
  try { fs.unlinkSync(recordPaths(dir, name).handoff) } catch { /* gone */ }
}

/**
 * Finds, in `<data>/history/<name>/`, the signed handoff checkpoint written at `tick` whose `prev` is
 * `prev` (the checkpoint that was offered): proof that the agent was handed off from here.
 * @returns it, or null when this node never committed that handoff
 */
export function findHandoff (dir: string, name: string, tick: number, prev: string): SignedHeader | null {
  const hist = path.join(dir, 'history', name)
  let names: string[]
  try { names = fs.readdirSync(hist) } catch { return null }
  const prefix = String(tick).padStart(12, '0') + '-'
  for (const n of names) {
    if (!n.startsWith(prefix) || !n.endsWith('.cbor')) continue
    try {
      const f = path.join(hist, n)
      const e = decodeEntry(fs.readFileSync(f), f)
      if (e.parsed.status === 'handoff' && e.parsed.prev === prev && verifyHeader(e.headerBytes, e.sig, e.parsed.agent)) {
        return { header: e.headerBytes, sig: e.sig, parsed: e.parsed }
      }
    } catch { /* not ours to judge here; verify reports it */ }
  }
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
  try { fs.appendFileSync(path.join(dir, 'migrations.log'), JSON.stringify({ time: new Date().toISOString(), ...o }) + '\n') } catch { /* best effort */ }
}

