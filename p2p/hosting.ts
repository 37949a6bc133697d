/**
 * The agents a node hosts (DESIGN §9, docs/INTERNALS.md "p2p/"): each one's loop in the node's tick
 * pool (start, pause, the end of a loop: stopped, exhausted, finished, failed, or the agent asking
 * to move), birth (`run`), `stop`, the status `igord ps` shows, the writer lock of each, and the
 * restore of every running agent at start (after interrupted arrivals are completed or resolved).
 * Hibernation is the pool's (runtime/pool.ts); the loop passes it the node's setting. Carved out of
 * p2p/node.ts (docs/RATIONALE.md "Splitting p2p/node.ts"); gets what it needs of its node injected
 * ({@link HostingNode}), never the node.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { StorageError } from '../checkpoint/errors.ts'
import { headerCid } from '../checkpoint/header.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import { readLive } from '../checkpoint/live.ts'
import { liveNames } from '../checkpoint/layout.ts'
import { lockAgent } from '../checkpoint/lock.ts'
import type { Lock } from '../checkpoint/lock.ts'
import { CheckpointWriter } from '../checkpoint/writer.ts'
import type { NodeCaps } from '../hostcalls/manifest.ts'
import { checkWithinCaps, parseManifest } from '../hostcalls/manifest.ts'
import type { AgentHandle, TickPool, WorkerSettings } from '../runtime/pool.ts'
import { DEFAULT_HIBERNATE_AFTER_MS } from '../runtime/pool.ts'
import type { LoopEnd } from '../runtime/runner.ts'
import { livePath } from '../runtime/session.ts'
import * as authority from './authority.ts'
import { RequestError } from './errors.ts'
import { QUIET_MS } from './source.ts'
import type { Moved } from './source.ts'
import { stoppedMarker } from './target.ts'

/** One hosted agent as `igord ps` shows it. fuel and budget are decimal strings (fuel units, microcents). */
export interface AgentInfo {
  name: string; did: string; tick: number; fuel: string; budget: string
  /** running, migrating, stopped, paused, exhausted, finished or failed */
  status: string
  epoch: number
  intervalMs: number
  /** true while the agent is hibernated: not resident, restored from its live checkpoint on its next tick */
  hibernated: boolean
}

/** A `run` request: birth a new agent on this node. `budget` in microcents, `intervalMs` ms. */
export interface RunRequest { wasm: string; manifest?: string; name?: string; budget: bigint; intervalMs?: number }

/**
 * One hosted agent: its name, worker handle, tick interval (ms), state (running, migrating, handoff,
 * stopped, paused, exhausted, finished or failed), the abort controller and promise of its loop.
 */
export interface Hosted {
  name: string
  /** the agent, held by a tick worker thread */
  session: AgentHandle
  intervalMs: number
  state: string
  controller: AbortController | null
  loop: Promise<void> | null
  /** the migration in progress (source side): its id and the offered checkpoint's CID */
  migration: { id: string; offer: string } | null
  /** agent-initiated migration requests are ignored until this time (ms since epoch) after a failure */
  quietUntil: number
}

/**
 * What hosting needs of its node: data directory, the capabilities and manifest caps it grants,
 * the default tick interval (ms), checkpoint spacing and hibernation setting (p2p/node.ts
 * `NodeOptions`), whether it is shutting down, notes; its tick pool (birth, resume) with the
 * worker settings and an agent's log-line emitter; `announce(did)` in discovery (never throws);
 * whether a name is taken by an arrival (`arriving`) and the completion of interrupted arrivals at
 * start (`recoverPending`, p2p/target.ts); `remember(m)` of an agent handed off from here (found on
 * restore), and `selfMigrate(h, target)` when an agent's loop ends asking to move (p2p/source.ts).
 */
export interface HostingNode {
  dir: string
  capabilities: ReadonlySet<string>
  caps: NodeCaps
  intervalMs: number
  checkpointEveryMs?: number
  idleCheckpointEveryMs?: number
  hibernateAfterMs?: number | null
  closing (): boolean
  note (line: string): void
  pool: Pick<TickPool, 'birth' | 'resume'>
  settings (): WorkerSettings
  emitter (name: string): (line: string) => void
  announce (did: string): Promise<unknown>
  arriving (name: string): boolean
  recoverPending (name: string): Promise<void>
  remember (m: Moved): void
  selfMigrate (h: Hosted, target: string | null): Promise<void>
}

/** The hosted agents of a node. */
export class Hosting {
  readonly #n: HostingNode
  /** the agents hosted here, by name */
  readonly agents = new Map<string, Hosted>()
  /** names of agents being born (`run`) */
  readonly #birthing = new Set<string>()
  /** one writer lock per agent hosted here (checkpoint/lock.ts) */
  readonly #locks = new Map<string, Lock>()

  constructor (node: HostingNode) { this.#n = node }

  /**
   * On start: completes or resolves interrupted arrivals, then restores every agent whose live
   * checkpoint is `running` (not one handed off: it is remembered as moved) and starts its loop
   * (one marked stopped is listed, not started). Notes each agent it cannot restore; never throws.
   */
  async restore (): Promise<void> {
    for (const name of authority.pendingNames(this.#n.dir)) await this.#n.recoverPending(name)
    let sent: Map<string, { to: string; addr: string }> | null = null
    const moved = (name: string, did: string, peer: string | undefined) => {
      if (peer === undefined) return
      sent ??= authority.handoffTargets(this.#n.dir)
      const to = sent.get(name)
      this.#n.remember({ name, did, peer, addrs: to !== undefined && to.to === peer ? [to.addr] : [] })
    }
    for (const name of liveNames(this.#n.dir)) {
      if (this.agents.has(name)) continue
      const file = livePath(this.#n.dir, name)
      let live: LiveCheckpoint
      try { live = readLive(file) } catch (e) { this.#n.note(`not restoring ${name}: ${(e as Error).message}`); continue }
      const h = live.parsed
      const cid = headerCid(live.header)
      if (h.status !== 'running') {
        // a kill between its live file and its history entry leaves a stopped agent's last checkpoint
        // (e.g. a handoff, which findHandoff must find) only in the live file: archive it
        try { new CheckpointWriter(this.#n.dir, name).ensureArchived(live) } catch (e) { this.#n.note(`${name}: cannot archive its last checkpoint: ${(e as Error).message}`) }
        if (h.status === 'handoff') moved(name, h.agent, h.target)
        continue
      }
      let gone: authority.SignedHeader | null
      try { gone = authority.findHandoff(this.#n.dir, name, h.tick, cid) } catch (e) { this.#n.note(`not restoring ${name}: ${(e as Error).message}`); continue }
      if (gone !== null) { moved(name, h.agent, gone.parsed.target); this.#n.note(`${name} was handed off to ${gone.parsed.target} at tick ${h.tick}; not restoring it`); continue }
      try {
        this.lock(name)
        const session = await this.#n.pool.resume(this.#n.settings(), file, this.#n.emitter(name))
        const arrival = authority.readHandoffRecord(this.#n.dir, name, this.#n.note)
        if (arrival !== null && arrival.parsed.prev === cid) {
          await this.#continueAfterHandoff(session, arrival.header, arrival.sig)
        } else if (arrival !== null) authority.dropHandoffRecord(this.#n.dir, name)
        const stopped = fs.existsSync(stoppedMarker(this.#n.dir, name))
        const hosted = this.host(name, session, this.#n.intervalMs)
        if (stopped) hosted.state = 'stopped'
        else { this.startLoop(hosted); this.#n.note(`restored ${name} (${session.did}) at tick ${session.status.tick}, epoch ${session.status.epoch}`) }
      } catch (e) { this.unlock(name); this.#n.note(`not restoring ${name}: ${(e as Error).message}`) }
    }
  }

  /** Writes the handoff into this node's history and links the agent's next checkpoint to it (epoch + 1), in its worker. */
  async #continueAfterHandoff (session: AgentHandle, header: Uint8Array, sig: Uint8Array): Promise<void> {
    await session.linkHandoff(header, sig)
  }

  /** Lists `session` as hosted agent `name` (tick interval `intervalMs`, ms), announced in discovery, without starting it. */
  host (name: string, session: AgentHandle, intervalMs: number): Hosted {
    const h: Hosted = { name, session, intervalMs, state: 'running', controller: null, loop: null, migration: null, quietUntil: 0 }
    this.agents.set(name, h)
    void this.#n.announce(session.did) // bounded, never throws
    return h
  }

  /** Starts (or restarts) `h`'s loop in its tick worker; its end is handled when it comes (stopped, exhausted, finished, failed, or the agent asking to move). */
  startLoop (h: Hosted): void {
    const controller = new AbortController()
    h.controller = controller
    h.state = 'running'
    h.loop = h.session.run({
      intervalMs: h.intervalMs,
      signal: controller.signal,
      acceptMigration: true,
      ...(this.#n.checkpointEveryMs === undefined ? {} : { checkpointEveryMs: this.#n.checkpointEveryMs }),
      ...(this.#n.idleCheckpointEveryMs === undefined ? {} : { idleCheckpointEveryMs: this.#n.idleCheckpointEveryMs }),
      ...(this.#n.hibernateAfterMs === null ? {} : { hibernateAfterMs: this.#n.hibernateAfterMs ?? DEFAULT_HIBERNATE_AFTER_MS }),
      onTick: (r) => { if (r.trap !== null) this.#n.note(`${h.name}: tick ${r.tick} failed and was rolled back: ${r.trap}`) },
    }).then((end) => this.#loopEnded(h, end, controller), (e: Error) => {
      h.state = 'failed'
      this.#n.note(`${h.name}: stopped on an error: ${e.message}`)
    })
  }

  #loopEnded (h: Hosted, end: LoopEnd, controller: AbortController): void {
    if (controller.signal.aborted) return // stopped, migrating or shutting down: whoever aborted takes over
    if (end.migrate !== undefined && !this.#n.closing()) {
      if (Date.now() < h.quietUntil) {
        // a request soon after a failed one is ignored: the tick and its checkpoint stand, the agent goes on here
        this.#n.note(`${h.name}: ignoring its migration request at tick ${h.session.agent.tick} (the last one failed less than ${QUIET_MS / 1000} s ago)`)
        this.startLoop(h)
        return
      }
      h.state = 'migrating'
      void this.#n.selfMigrate(h, end.migrate.target)
      return
    }
    h.state = end.status
    this.#n.note(`${h.name}: ${end.status}${end.reason ? ` (${end.reason})` : ''} at tick ${h.session.agent.tick}`)
  }

  /** Aborts an agent's loop and waits for its final checkpoint. */
  async pause (h: Hosted): Promise<void> {
    h.controller?.abort()
    await h.loop
    h.controller = null
    h.loop = null
  }

  /** `h` as `igord ps` shows it. */
  info (h: Hosted): AgentInfo {
    const a = h.session.agent
    return { name: h.name, did: a.spec.identity.did, tick: a.tick, fuel: String(a.fuel), budget: String(a.budget), status: h.state, epoch: h.session.lineage.epoch, intervalMs: h.intervalMs, hibernated: h.session.status.hibernated }
  }

  /** Every agent hosted here. */
  list (): AgentInfo[] { return [...this.agents.values()].map((h) => this.info(h)) }

  /**
   * Births a new agent on this node (as `igord run`) and starts its loop.
   * @throws ModuleError, ManifestError, StorageError (as `igord run`); RequestError when the name is
   *   taken or a capability is not granted by this node
   */
  async run (req: RunRequest): Promise<AgentInfo> {
    const name = req.name ?? path.basename(req.wasm).replace(/\.wasm$/, '')
    if (this.agents.has(name) || this.#n.arriving(name) || this.#birthing.has(name)) throw new RequestError(`an agent named ${name} already lives on this node`)
    const manifestFile = req.manifest ?? req.wasm.replace(/\.wasm$/, '') + '.manifest.json'
    const wasm = readFile(req.wasm, 'the wasm module')
    const manifest = readFile(manifestFile, 'the manifest')
    const parsed = parseManifest(manifest, manifestFile)
    const missing = [...parsed.capabilities.keys()].filter((c) => !this.#n.capabilities.has(c))
    if (missing.length > 0) throw new RequestError(`capability ${JSON.stringify(missing[0])} not offered by this node`)
    const over = checkWithinCaps(parsed, this.#n.caps)
    if (over !== null) throw new RequestError(`${manifestFile}: ${over}`)
    this.lock(name)
    let session: AgentHandle
    this.#birthing.add(name)
    try { session = await this.#n.pool.birth(this.#n.settings(), { name, wasm, wasmFile: req.wasm, manifest, manifestFile, budget: req.budget }, this.#n.emitter(name)) } catch (e) { this.unlock(name); throw e } finally { this.#birthing.delete(name) }
    try { fs.unlinkSync(stoppedMarker(this.#n.dir, name)) } catch { /* none */ }
    const h = this.host(name, session, req.intervalMs ?? this.#n.intervalMs)
    this.startLoop(h)
    this.#n.note(`born ${session.did} as '${name}'`)
    return this.info(h)
  }

  /**
   * Stops an agent (final checkpoint); it stays on disk, listed as stopped, and is not restarted.
   * @throws RequestError when there is no such agent
   */
  async stopAgent (name: string): Promise<AgentInfo> {
    const h = this.get(name)
    if (h.state === 'migrating') throw new RequestError(`${name} is migrating`)
    fs.writeFileSync(stoppedMarker(this.#n.dir, name), '', { mode: 0o600 })
    await this.pause(h)
    h.state = 'stopped'
    return this.info(h)
  }

  /** A hosted agent by name or DID. */
  find (nameOrDid: string): Hosted | undefined {
    const h = this.agents.get(nameOrDid)
    if (h !== undefined) return h
    for (const x of this.agents.values()) if (x.session.did === nameOrDid) return x
    return undefined
  }

  /**
   * A hosted agent by name.
   * @throws RequestError when there is none
   */
  get (name: string): Hosted {
    const h = this.agents.get(name)
    if (h === undefined) throw new RequestError(`no agent named ${name} on this node`)
    return h
  }

  /** Takes the writer lock of agent `name` (kept until it leaves or the node stops). @throws LockedError, StorageError */
  lock (name: string): void {
    if (!this.#locks.has(name)) this.#locks.set(name, lockAgent(this.#n.dir, name))
  }

  /** Releases the writer lock of agent `name` (it left, or could not be restored). */
  unlock (name: string): void {
    this.#locks.get(name)?.release()
    this.#locks.delete(name)
  }

  /** Releases every agent's writer lock (the node is stopping). */
  releaseLocks (): void {
    for (const l of this.#locks.values()) l.release()
    this.#locks.clear()
  }
}

function readFile (p: string, what: string): Uint8Array {
  try { return fs.readFileSync(p) } catch (e) { throw new StorageError(`${p}: cannot read ${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
}
