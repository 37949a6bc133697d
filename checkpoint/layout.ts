/**
 * The data-directory layout and the agent-name rule (docs/FORMAT.md "Data directory"): the one
 * module that knows where each file of a data directory lives. Every other module asks it for paths.
 *
 * ```
 * <dir>/                      0700
 *   host.key                  0600  the host's Ed25519 seed
 *   <name>.ckpt               0600  live checkpoint of agent <name> (holds its secret key)
 *   history/<name>/           0700  one signed entry per checkpoint, appended to segments named after
 *                                   their first entry: <tick:012>-<header cid>-<tag>.hist (0600,
 *                                   checkpoint/segment.ts); histories before segments: one
 *                                   <tick:012>-<header cid>.cbor file per entry
 *     gc.json                 0600  the GC record: checkpoints whose pages igord gc pruned (checkpoint/gc.ts)
 *   blobs/<cid>               0600  page bodies, wasm, manifests, event-log segments (dir 0700)
 *   locks/<name>.lock         0600  the process writing agent <name> (checkpoint/lock.ts)
 *   locks/.node.lock          0600  the node serving this directory
 *   migrate/                  0700  authority records (p2p/authority.ts), all 0600
 *     <name>.pending.ckpt, <name>.pending.cbor, <name>.handoff.cbor, <name>.stopped
 *     quarantine/<file>-<time>  records that could not be read, moved aside (never deleted)
 *   migrations.log            0600  one JSON line per migration outcome
 *   control.sock              0600  a node's control socket
 *   cache/code/               0700  instrumented modules (runtime/code-cache.ts), a bounded cache:
 *     <code cid>-<limit pages>-<recipe>.code  0600  safe to delete at any time
 * ```
 *
 * Agent names ({@link checkAgentName}): 1–128 letters, digits, `.`, `_` or `-`, not starting with
 * `.` or `-` — a plain file name that cannot hide (dotfiles are temp files and set-aside entries) or
 * be read as an option, and that cannot collide with `locks/.node.lock`.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { EXIT, IgordError } from './errors.ts'

/** An agent name that breaks the rule of {@link checkAgentName} (exit 2, a usage error; code `BAD_NAME`). */
export class NameError extends IgordError {
  constructor (message: string) { super(message, EXIT.USAGE, 'BAD_NAME') }
}

/** The agent-name rule as a regular expression: 1–128 of `[A-Za-z0-9._-]`, not starting with `.` or `-`. */
export const AGENT_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/

/** The agent-name rule in words, as error messages state it. */
export const AGENT_NAME_RULE = "1-128 letters, digits, '.', '_' or '-', not starting with '.' or '-'"

/** Mode of every directory igord creates that holds agent state. */
export const DIR_MODE = 0o700
/** Mode of every file igord writes that holds agent state. */
export const FILE_MODE = 0o600

/** True when `name` (any value) is a string obeying the agent-name rule. */
export function isAgentName (name: unknown): name is string {
  return typeof name === 'string' && AGENT_NAME_RE.test(name)
}

/**
 * Checks an agent name against the rule (see the module doc) before anything is born or written.
 * @param what names the source in the error, e.g. `--name` or `offer`.
 * @returns `name`
 * @throws NameError `<what>: agent name "<name>" must be <rule>` (exit 2)
 */
export function checkAgentName (name: string, what = 'agent name'): string {
  if (!isAgentName(name)) throw new NameError(`${what}: agent name ${JSON.stringify(name)} must be ${AGENT_NAME_RULE}`)
  return name
}

/** `<dir>/<name>.ckpt`, the live checkpoint (absolute when `dir` is). */
export function livePath (dir: string, name: string): string { return path.join(dir, `${name}.ckpt`) }

/**
 * The agent name of a live checkpoint path: its file name without `.ckpt`
 * (`a/b/x.ckpt` → `x`; a name without the suffix is returned whole).
 */
export function nameOfLive (file: string): string { return path.basename(file).replace(/\.ckpt$/, '') }

/** `<dir>/history`, the folder of every agent's history. */
export function historyRoot (dir: string): string { return path.join(dir, 'history') }

/** `<dir>/history/<name>`, one agent's history entries. */
export function historyDir (dir: string, name: string): string { return path.join(dir, 'history', name) }

/** `<dir>/history/<name>/gc.json`: the GC record of agent `name` (checkpoint/gc.ts). */
export function gcRecordPath (dir: string, name: string): string { return path.join(dir, 'history', name, GC_RECORD) }

/** File name of the GC record inside a history directory. */
export const GC_RECORD = 'gc.json'

/** `<dir>/blobs`, the content-addressed blob store. */
export function blobsDir (dir: string): string { return path.join(dir, 'blobs') }

/** `<dir>/host.key`, the host's 32-byte Ed25519 seed. */
export function hostKeyPath (dir: string): string { return path.join(dir, 'host.key') }

/** `<dir>/locks`, the writer locks (checkpoint/lock.ts). */
export function locksDir (dir: string): string { return path.join(dir, 'locks') }

/** `<dir>/locks/<name>.lock`: held by the one process writing agent `name`. */
export function agentLockPath (dir: string, name: string): string { return path.join(dir, 'locks', `${name}.lock`) }

/** `<dir>/locks/.node.lock`: held by the node serving the directory (no agent name starts with `.`). */
export function nodeLockPath (dir: string): string { return path.join(dir, 'locks', '.node.lock') }

/** `<dir>/migrate`, the authority records of migrations (p2p/authority.ts). */
export function migrateRoot (dir: string): string { return path.join(dir, 'migrate') }

/** `<dir>/migrate/quarantine`: unreadable records moved aside, never deleted. */
export function quarantineDir (dir: string): string { return path.join(dir, 'migrate', 'quarantine') }

/** Paths of one agent's records in `<dir>/migrate/` (see the module doc). */
export function recordPaths (dir: string, name: string): { pendingCkpt: string; pending: string; handoff: string; stopped: string } {
  const d = migrateRoot(dir)
  return {
    pendingCkpt: path.join(d, `${name}.pending.ckpt`),
    pending: path.join(d, `${name}.pending.cbor`),
    handoff: path.join(d, `${name}.handoff.cbor`),
    stopped: path.join(d, `${name}.stopped`),
  }
}

/** Suffix of pending records in `<dir>/migrate/`. */
export const PENDING_SUFFIX = '.pending.cbor'

/** `<dir>/migrations.log`. */
export function migrationsLogPath (dir: string): string { return path.join(dir, 'migrations.log') }

/** `<dir>/inbox/<name>`: the agent's inbox spool (checkpoint/spool.ts), messages not yet in a checkpoint. */
export function inboxDir (dir: string, name: string): string { return path.join(dir, 'inbox', name) }

/** Spool file of message `seq`: `<seq padded to 12 digits>.cbor`. */
export function spoolFileName (seq: number): string { return `${String(seq).padStart(12, '0')}.cbor` }

/** The seq a spool file name carries, or null when it is not `<12 digits>.cbor`. */
export function seqOfSpoolName (n: string): number | null {
  const m = /^(\d{12})\.cbor$/.exec(n)
  return m === null ? null : Number(m[1])
}

/** A dropped message (written by `igord send --dir` while another process runs the agent): `in-<id hex>.cbor`. */
export function dropFileName (idHex: string): string { return `in-${idHex}.cbor` }

/** `<dir>/effects/<name>`: journal marks of unsafe HTTP requests sent (`<request id>.sent`). */
export function effectsDir (dir: string, name: string): string { return path.join(dir, 'effects', name) }

/** `<dir>/control.sock`, a node's control socket. */
export function controlSocketPath (dir: string): string { return path.join(dir, 'control.sock') }

/**
 * `<dir>/cache/code`: instrumented modules by original code CID (runtime/code-cache.ts). Never the
 * only copy of anything (the original code is in `blobs/` and the live files), so any file in it
 * may be evicted or deleted at any time.
 */
export function codeCacheDir (dir: string): string { return path.join(dir, 'cache', 'code') }

/**
 * A code cache entry's file name: `<original code cid>-<memory limit pages>-<recipe>.code`, where
 * `recipe` names everything else the instrumented bytes depend on (runtime/code-cache.ts
 * `RECIPE`: 16 hex digits).
 */
export function codeCacheEntryName (cid: string, limitPages: number, recipe: string): string { return `${cid}-${limitPages}-${recipe}.code` }

/** History entry file name, one entry per file as histories before segments hold them (still read; see {@link historyName}): `<tick padded to 12 digits>-<header cid>.cbor`. */
export function entryFileName (tick: number, cid: string): string {
  return `${String(tick).padStart(12, '0')}-${cid}.cbor`
}

/** File name extension of a history segment. */
export const SEGMENT_EXT = '.hist'

const SEGMENT_RE = /^(\d{12})-(.+)-([0-9a-f]{8})\.hist$/
const ENTRY_RE = /^(\d{12})-(.+)\.cbor$/

/**
 * The file name of a segment whose first entry is checkpoint `cid` at `tick`, started by a writer
 * that drew the random `tag` (8 lowercase hex digits): `<tick:012>-<cid>-<tag>.hist`. Two writers
 * starting from the same checkpoint (one `.ckpt` resumed in two directories) write different
 * segments under different names, so data directories merged by copying their files lose none.
 * @throws Error for a tag that is not 8 lowercase hex digits.
 */
export function segmentFileName (tick: number, cid: string, tag: string): string {
  if (!/^[0-9a-f]{8}$/.test(tag)) throw new Error(`segment tag ${JSON.stringify(tag)} is not 8 hex digits`)
  return `${String(tick).padStart(12, '0')}-${cid}-${tag}${SEGMENT_EXT}`
}

/**
 * What a history file name says: `kind` segment (`<tick:012>-<cid>-<tag>.hist`) or entry
 * (`<tick:012>-<cid>.cbor`, one entry per file: histories written before segments), the tick and
 * header CID (as named: not checked) of its (first) entry, and a segment's tag ('' for an entry
 * file); null for any other name, dotfiles included.
 */
export function historyName (n: string): { kind: 'segment' | 'entry'; tick: number; cid: string; tag: string } | null {
  if (n.startsWith('.')) return null
  const s = SEGMENT_RE.exec(n)
  if (s !== null) return { kind: 'segment', tick: Number(s[1]), cid: s[2], tag: s[3] }
  const e = ENTRY_RE.exec(n)
  return e === null ? null : { kind: 'entry', tick: Number(e[1]), cid: e[2], tag: '' }
}

/**
 * The history files directly in `dir` (segments and entry files, see {@link historyName}; no
 * dotfiles, no `gc.json`), sorted by name: by the tick of their first entry.
 * @throws the raw errno error of `readdirSync` (ENOENT when there is no such directory).
 */
export function historyFiles (dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => historyName(f) !== null).sort().map((f) => path.join(dir, f))
}

/** Names of the agents with a live checkpoint (`<name>.ckpt` obeying the name rule) directly in `dir`, sorted; [] when unreadable. */
export function liveNames (dir: string): string[] {
  let files: string[]
  try { files = fs.readdirSync(dir) } catch { return [] }
  return files.filter((f) => f.endsWith('.ckpt')).map((f) => f.slice(0, -5)).filter(isAgentName).sort()
}

/**
 * Creates directory `d` (and missing parents) with mode 0700 — the parents too, as created by
 * `mkdir -p` with that mode. An existing directory is left as it is.
 * @throws StorageError-like errors are the caller's to wrap: this throws the raw errno error.
 */
export function makePrivateDir (d: string): void {
  fs.mkdirSync(d, { recursive: true, mode: DIR_MODE })
}
