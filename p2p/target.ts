/**
 * The target side of a node's migrations (DESIGN §9, docs/PROTOCOL.md): arrivals. An offer is
 * checked and its name reserved ({@link Target.policy}), the assembled agent restored in a tick
 * worker and stored as pending ({@link Target.prepare}), and installed once the source's signed
 * handoff arrives ({@link Target.commitArrival}); an arrival interrupted by a crash or a cut stream
 * is completed or resolved by asking its source ({@link Target.recoverPending}, {@link Target.resolve}).
 * The wire protocol itself is p2p/migrate.ts `receiveAgent`. Carved out of p2p/node.ts
 * (docs/RATIONALE.md "Splitting p2p/node.ts"); gets what it needs of its node injected
 * ({@link TargetNode}), never the node.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { StorageError } from '../checkpoint/errors.ts'
import { decodeHeader } from '../checkpoint/header.ts'
import type { CheckpointHeader } from '../checkpoint/header.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import { encodeLive, readLive } from '../checkpoint/live.ts'
import { codeCacheDir, recordPaths } from '../checkpoint/layout.ts'
import type { NodeCaps } from '../hostcalls/manifest.ts'
import { checkWithinCaps } from '../hostcalls/manifest.ts'
import type { AgentHandle, TickPool, WorkerSettings } from '../runtime/pool.ts'
import { livePath } from '../runtime/session.ts'
import * as authority from './authority.ts'
import { NetworkError } from './errors.ts'
import { clearSpools, InboundGate, queryStatus, receiveAgent } from './migrate.ts'
import type { Offer, TargetHooks, TargetLimits, Timeouts } from './migrate.ts'
import { parseMultiaddr } from './peer.ts'
import type { Peer } from './peer.ts'
import type { Channel } from './wire.ts'

/** The file whose presence marks agent `name` as stopped (`igord stop`: not restarted), making `<dir>/migrate` first. */
export function stoppedMarker (dir: string, name: string): string { authority.migrateDir(dir); return recordPaths(dir, name).stopped }

/**
 * What the target side needs of its node: its data directory, peer ID and libp2p peer, timeouts,
 * the capabilities it grants and its manifest caps; whether it is shutting down; the DID of an
 * agent hosted here by name (undefined: none); its tick pool (restore, resume, replay) with the
 * worker settings and an agent's log-line emitter; its blob store; its fault hooks and notes.
 * `lock(name)` takes the agent's writer lock (throws LockedError, StorageError); `host(name,
 * session)` makes the agent hosted (listed, announced) without starting it, and `arrived(name,
 * did)` forgets it as moved from here and starts its loop.
 */
export interface TargetNode {
  dir: string
  peerId: string
  peer: Peer
  timeouts: Timeouts
  capabilities: ReadonlySet<string>
  caps: NodeCaps
  limits?: Partial<TargetLimits>
  closing (): boolean
  hostedDid (name: string): string | undefined
  pool: Pick<TickPool, 'adopt' | 'resume' | 'replay' | 'warmCode'>
  settings (): WorkerSettings
  emitter (name: string): (line: string) => void
  hasBlob (cid: string): boolean
  getBlob (cid: string): Uint8Array
  fault (step: string, ch: Channel): void
  note (line: string): void
  lock (name: string): void
  host (name: string, session: AgentHandle): void
  arrived (name: string, did: string): void
}

/** The target side of a node: arrivals in progress and pending, and their rules. */
export class Target {
  readonly #n: TargetNode
  /** names with an inbound migration in progress, and agents restored (prepared) for them */
  readonly #inbound = new Map<string, AgentHandle | null>()
  /** the verified live checkpoints of prepared arrivals (so that installing does not re-read and re-hash them) */
  readonly #prepared = new Map<string, LiveCheckpoint>()
  readonly #resolving = new Set<string>()
  /**
   * arrivals whose restore for hosting runs after `pending` ({@link restoreLater}), by name: the
   * restored agent, or null when that restore failed (the agent is then resumed from its pending
   * checkpoint at install)
   */
  readonly #restoring = new Map<string, Promise<AgentHandle | null>>()
  /** the offer that reserved each name in {@link #inbound} while its transfer runs */
  readonly #reserved = new Map<string, Offer>()
  /** counts of offers in progress and spool bytes (p2p/migrate.ts `InboundGate`) */
  readonly #gate: InboundGate

  constructor (node: TargetNode) {
    this.#n = node
    this.#gate = new InboundGate(node.limits)
  }

  /** The folder under which each offer's spool is made (`<dir>/migrate/spool`). */
  spoolRoot (): string { return path.join(authority.migrateDir(this.#n.dir), 'spool') }

  /** Removes the spools a crash left (never the only copy of anything). */
  clearSpools (): void { clearSpools(this.spoolRoot()) }

  /** Serves one inbound `/igor/migrate/1.0.0` stream (p2p/migrate.ts `receiveAgent`); never throws. */
  receive (ch: Channel): void {
    void receiveAgent(ch, this.hooks(), this.#n.timeouts, this.#gate)
  }

  /** True while `name` is taken by an arrival (an offer in progress, or a pending arrival). */
  has (name: string): boolean { return this.#inbound.has(name) }

  /** True while an agent (by name or DID) is arriving here: an offer in progress, or a pending arrival. */
  arriving (nameOrDid: string): boolean {
    for (const [name, prepared] of this.#inbound) {
      if (name === nameOrDid || this.#reserved.get(name)?.parsed.agent === nameOrDid) return true
      if ((prepared as AgentHandle | null | undefined)?.did === nameOrDid) return true
    }
    return false
  }

  /** The hooks p2p/migrate.ts `receiveAgent` calls. */
  hooks (): TargetHooks {
    const n = this.#n
    const codeCache = { dir: codeCacheDir(n.dir) } // arrivals share the node's code cache
    return {
      me: n.peerId,
      spoolRoot: this.spoolRoot(),
      policy: (o, from) => this.policy(o, from),
      hasBlob: (c) => n.hasBlob(c),
      getBlob: (c) => n.getBlob(c),
      prepare: (o, from, live, restore, file) => this.prepare(o, from, live, restore, file),
      restoreLater: (o, live) => this.restoreLater(o, live),
      discard: (o) => { authority.dropPending(n.dir, o.name); this.#prepared.delete(o.name); this.#restoring.delete(o.name) },
      install: async (o, h) => {
        const reason = authority.checkHandoff(h, o.parsed, o.cid, n.peerId)
        if (reason !== null) throw new NetworkError(`handoff: ${reason}`)
        const prepared = await this.#preparedAgent(o.name)
        await this.commitArrival(o.name, this.#prepared.get(o.name) ?? readLive(authority.recordPaths(n.dir, o.name).pendingCkpt), h, prepared)
      },
      unresolved: (o) => { void this.resolve(o.name) },
      failed: (o, from, reason) => this.failed(o, from, reason),
      fault: (step, ch) => n.fault(step, ch),
      warm: (wasm, o) => {
        // with a replay to come (a base, and a log to re-execute), its instance is made and its memory mapped meanwhile
        const b = o.base
        const prepare = b === undefined || o.parsed.log === null ? undefined : { start: { header: b.parsed, wasm, manifest: o.manifestBytes, pageCount: b.pageCount, codeCache }, pages: b.pages.map((r) => r[0]) }
        n.pool.warmCode(wasm, Math.floor(o.manifest.maxMemoryBytes / 65536), n.dir, prepare).catch(() => { /* reported by the replay or restore */ })
      },
      replay: (start, records, next) => n.pool.replay({ ...start, codeCache }, records, next),
    }
  }

  /**
   * A refused or failed offer (`o` null: before one was decoded): only the offer that reserved the
   * name releases it, and only while no pending record holds it; noted and logged to `migrations.log`.
   */
  failed (o: Offer | null, from: string, reason: string): void {
    // only the offer that reserved the name releases it (a refused rival offer must not)
    if (o !== null && this.#reserved.get(o.name) === o) {
      this.#reserved.delete(o.name)
      if (!fs.existsSync(authority.recordPaths(this.#n.dir, o.name).pending)) {
        void this.#inbound.get(o.name)?.close() // the prepared agent leaves its worker
        this.#inbound.delete(o.name)
        this.#restoring.delete(o.name) // a restore still running closes its agent when it ends
      }
    }
    this.#n.note(`inbound migration${o === null ? '' : ` of ${o.name}`} from ${from}: ${reason}`)
    authority.recordOutcome(this.#n.dir, { role: 'target', outcome: 'failed', from, name: o?.name, reason })
  }

  /**
   * Whether offer `o` from peer `from` may come here: null, and its name reserved until the
   * transfer ends, or the one-line reason to refuse (shutting down, migration forbidden, a
   * capability or cap not granted, memory over its own limit, the name taken here or by another
   * arrival, a stale epoch).
   */
  policy (o: Offer, from: string): string | null {
    const n = this.#n
    if (n.closing()) return 'this node is shutting down'
    if (!o.manifest.migration.enabled) return 'the agent\'s manifest forbids migration (migration_policy.enabled is false)'
    for (const c of o.manifest.capabilities.keys()) if (!n.capabilities.has(c)) return `capability ${JSON.stringify(c)} not offered by this node`
    const over = checkWithinCaps(o.manifest, n.caps)
    if (over !== null) return over
    if (o.pageCount * 65536 > o.manifest.maxMemoryBytes) return 'the agent\'s memory exceeds its own manifest limit'
    const here = n.hostedDid(o.name)
    if (here !== undefined) {
      return here === o.parsed.agent ? `${o.name} already runs on this node` : `an agent named ${o.name} already lives on this node`
    }
    if (this.#inbound.has(o.name) && this.#inbound.get(o.name) === undefined) return `a migration of ${o.name} is already in progress`
    let pending: authority.PendingRecord | null
    try { pending = authority.readPending(n.dir, o.name, n.note) } catch (e) { return `the pending record of ${o.name} here is unreadable: ${(e as Error).message}` }
    if (pending !== null && (pending.agent !== o.parsed.agent || (pending.offer !== o.cid && o.parsed.tick <= pending.tick))) {
      return `${o.name} is already pending here from another migration`
    }
    const file = livePath(n.dir, o.name)
    if (fs.existsSync(file)) {
      try {
        const old = readLive(file).parsed
        if (old.agent !== o.parsed.agent) return `an agent named ${o.name} already lives on this node`
        if (old.status !== 'handoff') return `${o.name} is already on this node (status ${old.status})`
        if (o.parsed.epoch <= old.epoch) return `stale offer: epoch ${o.parsed.epoch} is not after the epoch ${old.epoch} this node handed off`
      } catch { return `${o.name}.ckpt on this node is unreadable` }
    }
    void from
    this.#inbound.set(o.name, undefined as unknown as null) // reserved while the transfer runs
    this.#reserved.set(o.name, o)
    return null
  }

  /**
   * Stores the assembled agent durably as pending and, with `restore` (the default), restores it
   * in a tick worker meanwhile; without, {@link restoreLater} follows once its replay succeeded.
   * `file`: the pending live checkpoint already written and synced there (p2p/pending-file.ts),
   * renamed into place instead of written.
   * @throws Error "the agent cannot run here: …", StorageError (the pending record)
   */
  async prepare (o: Offer, from: string, live: LiveCheckpoint, restore = true, file?: string): Promise<void> {
    const n = this.#n
    const rec = { id: o.id, from, addrs: o.from, offer: o.cid, agent: o.parsed.agent, tick: o.parsed.tick, epoch: o.parsed.epoch }
    const store = () => { if (file !== undefined) authority.writePendingFile(n.dir, o.name, file, rec); else authority.writePending(n.dir, o.name, encodeLive(live), rec) }
    if (!restore) {
      store()
      this.#prepared.set(o.name, live)
      return
    }
    // restored in a tick worker while this thread writes the pending files
    const adopting = n.pool.adopt(n.settings(), o.name, live, n.emitter(o.name))
    adopting.catch(() => {}) // awaited below
    try {
      store()
    } catch (e) { void adopting.then((a) => a.close(), () => {}); throw e }
    let agent: AgentHandle
    try { agent = await adopting } catch (e) {
      authority.dropPending(n.dir, o.name)
      throw new Error(`the agent cannot run here: ${(e as Error).message.split('\n')[0]}`)
    }
    this.#inbound.set(o.name, agent)
    this.#prepared.set(o.name, live)
  }

  /**
   * Restores a pending arrival for hosting in a tick worker, in the background: called after
   * `pending` for an arrival whose replay re-executed its ticks here into exactly the offered state
   * (so the module instantiates and the state restores here: p2p/migrate.ts
   * `TargetHooks.restoreLater`), so that the source's commit and the handoff overlap it. Install
   * waits for it ({@link #preparedAgent}); when it fails, install resumes the agent from its pending
   * checkpoint instead (as after a restart). An arrival that ended meanwhile (failed, aborted,
   * discarded) has its restored agent closed. Never throws.
   */
  restoreLater (o: Offer, live: LiveCheckpoint): void {
    const n = this.#n
    const p: Promise<AgentHandle | null> = n.pool.adopt(n.settings(), o.name, live, n.emitter(o.name)).then((agent) => {
      if (this.#restoring.get(o.name) !== p) { void agent.close(); return null } // the arrival ended meanwhile
      this.#inbound.set(o.name, agent)
      return agent
    }, (e: Error) => {
      n.note(`${o.name}: restoring the arrival for hosting failed (${e.message.split('\n')[0]}); it will be resumed from its pending checkpoint`)
      return null
    })
    this.#restoring.set(o.name, p)
  }

  /**
   * The agent restored for hosting for arrival `name` (waiting for a {@link restoreLater} still
   * running), or null: none (install then resumes it from its pending checkpoint).
   */
  async #preparedAgent (name: string): Promise<AgentHandle | null> {
    const restoring = this.#restoring.get(name)
    if (restoring !== undefined) {
      await restoring
      this.#restoring.delete(name)
    }
    return this.#inbound.get(name) ?? null
  }

  /**
   * Makes this node the agent's host: stores the handoff record, moves the pending live checkpoint
   * into place, archives the arriving checkpoint and the handoff in this node's history, and starts
   * the agent (its next checkpoint follows the handoff, in epoch + 1).
   * @throws StorageError (records, live file), LockedError, or the pool's error restoring it
   */
  async commitArrival (name: string, live: LiveCheckpoint, h: { header: Uint8Array; sig: Uint8Array }, prepared: AgentHandle | null): Promise<void> {
    const n = this.#n
    const paths = authority.recordPaths(n.dir, name)
    authority.writeHandoffRecord(n.dir, name, h) // the target's commit point
    const file = livePath(n.dir, name)
    try { fs.renameSync(paths.pendingCkpt, file) } catch (e) { throw new StorageError(`${file}: cannot install the arriving agent: ${(e as Error).message}`) }
    authority.dropPending(n.dir, name)
    try { fs.unlinkSync(stoppedMarker(n.dir, name)) } catch { /* none */ }
    const p = decodeParsed(h.header)
    this.#prepared.delete(name)
    this.#reserved.delete(name)
    try { // the name stays in #inbound (a message for the agent waits) until it is hosted
      n.lock(name)
      let session: AgentHandle
      if (prepared !== null) {
        await prepared.install(live)
        session = prepared
      } else {
        session = await n.pool.resume(n.settings(), file, n.emitter(name))
      }
      // writes the handoff into this node's history and links the agent's next checkpoint to it (epoch + 1), in its worker
      await session.linkHandoff(h.header, h.sig)
      n.host(name, session)
    } finally { this.#inbound.delete(name) }
    n.arrived(name, p.agent) // it is back here
    authority.recordOutcome(n.dir, { role: 'target', outcome: 'arrived', name, agent: p.agent, from: p.host, tick: p.tick, epoch: p.epoch + 1 })
    n.note(`${name} (${p.agent}) arrived from ${p.host} at tick ${p.tick}, epoch ${p.epoch + 1}`)
  }

  /** On start: completes an arrival whose handoff record was written, or starts resolving it. Never throws. */
  async recoverPending (name: string): Promise<void> {
    const n = this.#n
    const paths = authority.recordPaths(n.dir, name)
    let rec: authority.PendingRecord | null; let handoff: authority.SignedHeader | null
    try {
      rec = authority.readPending(n.dir, name, n.note)
      handoff = authority.readHandoffRecord(n.dir, name, n.note)
    } catch (e) { n.note(`pending ${name}: ${(e as Error).message}; left in place`); return }
    if (rec !== null && handoff !== null && handoff.parsed.prev === rec.offer && fs.existsSync(paths.pendingCkpt)) {
      try { await this.commitArrival(name, readLive(paths.pendingCkpt), handoff, null) } catch (e) { n.note(`cannot complete the arrival of ${name}: ${(e as Error).message}`) }
      return
    }
    if (rec === null) { // never answered pending (or its record was quarantined): set the copy aside, never delete it
      try { authority.setAsideOrphanPending(n.dir, name, n.note) } catch (e) { n.note(`pending ${name}: ${(e as Error).message}; left in place`) }
      return
    }
    if (!fs.existsSync(paths.pendingCkpt)) { authority.dropPending(n.dir, name); return } // a record alone holds no agent state
    void this.resolve(name)
  }

  /**
   * Resolves a pending arrival by asking its source, with backoff, until it answers `handoff`
   * (install the agent) or `aborted` (drop it), or the node shuts down. Never starts the agent
   * without a signed handoff. Never throws.
   */
  async resolve (name: string): Promise<void> {
    const n = this.#n
    if (this.#resolving.has(name)) return
    this.#resolving.add(name)
    try {
      for (let k = 0; !n.closing(); k++) {
        let rec: authority.PendingRecord | null = null
        try { rec = authority.readPending(n.dir, name, n.note) } catch (e) { if (k === 0) n.note(`pending ${name}: ${(e as Error).message}; left in place`) }
        if (rec === null && !fs.existsSync(authority.recordPaths(n.dir, name).pending)) return
        if (rec === null) { await sleep(Math.min(5000, 200 * 2 ** Math.min(k, 5))); continue }
        this.#inbound.set(name, this.#inbound.get(name) ?? null)
        try {
          const addrs = rec.addrs.map((a) => parseMultiaddr(a, 'pending source'))
          const a = await queryStatus(n.peer, addrs, { name, agent: rec.agent, offer: rec.offer, id: rec.id, tick: rec.tick }, n.timeouts)
          if (a.state === 'handoff') {
            const live = readLive(authority.recordPaths(n.dir, name).pendingCkpt)
            const reason = authority.checkHandoff(a, live.parsed, rec.offer, n.peerId)
            if (reason !== null) throw new NetworkError(`status: ${reason}`)
            await this.commitArrival(name, live, a, await this.#preparedAgent(name))
            authority.recordOutcome(n.dir, { role: 'target', outcome: 'resolved-handoff', name, id: rec.id })
            return
          }
          if (a.state === 'aborted') {
            authority.dropPending(n.dir, name)
            void this.#inbound.get(name)?.close() // the prepared agent leaves its worker
            this.#inbound.delete(name)
            this.#prepared.delete(name)
            this.#restoring.delete(name) // a restore still running closes its agent when it ends
            authority.recordOutcome(n.dir, { role: 'target', outcome: 'resolved-aborted', name, id: rec.id })
            n.note(`the source of ${name} aborted that migration; dropped the pending copy`)
            return
          }
        } catch (e) {
          if (k === 0) n.note(`pending ${name}: cannot resolve yet: ${(e as Error).message}`)
        }
        await sleep(Math.min(5000, 200 * 2 ** Math.min(k, 5)))
      }
    } finally { this.#resolving.delete(name) }
  }
}

function decodeParsed (header: Uint8Array): CheckpointHeader {
  return decodeHeader(header, 'handoff checkpoint')
}
