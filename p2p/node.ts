/**
 * `igord node`: a long-running peer that hosts many agents at once and moves them to and from
 * other nodes over libp2p (DESIGN §9, docs/PROTOCOL.md, docs/INTERNALS.md "p2p/").
 *
 * Each agent is one `runLoop` (runtime/runner.ts) on its own tick schedule, run in a worker thread
 * of the node's {@link TickPool} (runtime/pool.ts), never on the thread that serves libp2p, the
 * control socket and signals; a tick that runs longer than the tick timeout is ended, rolled back
 * and counted as a failure. The data directory has the layout of `igord run --dir` (`<name>.ckpt`,
 * `history/`, `blobs/`, `host.key`) plus `migrate/` (authority records, p2p/authority.ts),
 * `migrations.log` and the control socket. On start the node restores every agent whose live
 * checkpoint is `running`, completes or resolves interrupted arrivals, and only then answers the
 * migration and status protocols; on shutdown every agent writes a final checkpoint.
 */
import { formatGc } from '../checkpoint/gc.ts'
import type { GcReport } from '../checkpoint/gc.ts'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Multiaddr } from '@multiformats/multiaddr'
import { blobsDir, makePrivateDir } from '../checkpoint/layout.ts'
import { lockNode } from '../checkpoint/lock.ts'
import type { Lock } from '../checkpoint/lock.ts'
import { BlobStore } from '../checkpoint/store.ts'
import type { NodeCaps } from '../hostcalls/manifest.ts'
import { DEFAULT_NODE_CAPS } from '../hostcalls/manifest.ts'
import { loadHostIdentity } from '../runtime/host.ts'
import type { HostIdentity } from '../runtime/host.ts'
import type { WorkerSettings } from '../runtime/pool.ts'
import { TickPool } from '../runtime/pool.ts'
import { DeliveryRefused } from '../runtime/mailbox.ts'
import type { Incoming } from '../runtime/mailbox.ts'
import { answerInbox, DEFAULT_FORWARD_RETRY, forwardMessage, INBOX_PROTOCOL, INBOX_STREAM_BUFFER, StreamGate } from './inbox.ts'
import type { ForwardRetry, InboxStreamLimits } from './inbox.ts'
import { DEFAULT_TIMEOUTS, MIGRATE_PROTOCOL, STATUS_PROTOCOL } from './migrate.ts'
import type { MigrateResult, Progress, TargetLimits, Timeouts } from './migrate.ts'
import { KadDiscovery } from './discovery.ts'
import { INFO_PROTOCOL, Market, queryInfo } from './market.ts'
import { Faults } from './faults.ts'
import { Target } from './target.ts'
import { Source } from './source.ts'
import { Router } from './routing.ts'
import { Hosting } from './hosting.ts'
import type { AgentInfo, Hosted, RunRequest } from './hosting.ts'
import type { Moved } from './source.ts'
import type { NodeFaults } from './faults.ts'
import type { Discovery, DiscoveryLimits, Whereabouts } from './discovery.ts'
import type { DhtLimits } from './dht-store.ts'
import type { MdnsFactory } from './mdns.ts'
import { dialableAddrs, parseMultiaddr, startPeer } from './peer.ts'
import type { Peer } from './peer.ts'
import { Channel } from './wire.ts'
import { RequestError } from './errors.ts'
import { MSG_PROTOCOL, MSG_PROTOCOL_V1, MSG_STREAM_BUFFER } from './msg.ts'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'

/** Most hosted agents one retention pass of a node collects ({@link NodeOptions.gc}). */
export const GC_AGENTS_PER_PASS = 8
/** Most packs of one agent one retention pass merges (the rest wait for the next pass). */
export const GC_PACKS_PER_AGENT = 32

export { KNOWN_CAPABILITIES } from './defaults.ts'
export { INFO_PROTOCOL, queryInfo } from './market.ts'
export type { NodeInfo } from './market.ts'
export type { NodeFaults } from './faults.ts'
export { QUIET_MS } from './source.ts'
export type { AgentInfo, RunRequest } from './hosting.ts'
export { HOST_CACHE_TTL_MS, MAX_HOST_CACHE, MAX_LANES, SENDER_CHECK_MS, SENDER_CHECK_TTL_MS } from './routing.ts'

/** Options of {@link IgordNode.start}. */
export interface NodeOptions {
  /** data directory */
  dir: string
  /** multiaddrs to listen on */
  listen: string[]
  /** multiaddrs (with /p2p/) of peers to connect to at start */
  bootstrap?: string[]
  /** capabilities this node grants to agents it hosts */
  capabilities: string[]
  /** price, microcents per million fuel */
  price: bigint
  /** tick interval of restored and arriving agents, ms (each `run` may set its own) */
  intervalMs: number
  /** checkpoint at most this often while an agent asks for more work, ms */
  checkpointEveryMs?: number
  /** checkpoint an idle agent at most this often, ms (runtime/runner.ts `idleCheckpointEveryMs`; default 0: every idle tick) */
  idleCheckpointEveryMs?: number
  /**
   * the highest limits an agent's manifest may ask for here (default `DEFAULT_NODE_CAPS`): a `run`
   * or a migration offer above them is refused with the field, the value asked and the cap
   */
  caps?: NodeCaps
  /** wall-clock limit of one tick, ms (default 10 s, runtime/pool.ts DEFAULT_TICK_TIMEOUT_MS) */
  tickTimeoutMs?: number
  /** worker threads that run the ticks (default max(2, available parallelism)) */
  tickThreads?: number
  /**
   * an agent idle this long (waiting for its timer, a message or its interval) is hibernated: its
   * instance and memory are dropped and restored from its live checkpoint on its next tick, ms
   * (default runtime/pool.ts DEFAULT_HIBERNATE_AFTER_MS; null: never)
   */
  hibernateAfterMs?: number | null
  /**
   * retention policy (`igord node --keep-every`): every `everyMs` ms a pass runs `igord gc`
   * (checkpoint/gc.ts) over at most {@link GC_AGENTS_PER_PASS} hosted agents, round robin, each in
   * its worker between ticks and merging at most {@link GC_PACKS_PER_AGENT} packs; absent: none
   */
  gc?: { keepEvery: number; keepLast: number; everyMs: number }
  timeouts?: Partial<Timeouts>
  /** bounds on inbound offers (p2p/migrate.ts `DEFAULT_TARGET_LIMITS` for the rest) */
  targetLimits?: Partial<TargetLimits>
  /** bounds on inbound `/igor/inbox/1.0.0` streams (p2p/inbox.ts `DEFAULT_INBOX_STREAM_LIMITS` for the rest) */
  inboxLimits?: Partial<InboxStreamLimits>
  /** retries of a message forwarded to an agent's new host (p2p/inbox.ts `DEFAULT_FORWARD_RETRY`) */
  forwardRetry?: ForwardRetry
  /**
   * how long the host of an agent's DID is looked for before a message to it bounces as unknown
   * (E_MSG_UNKNOWN), and before `igord send <did>` gives up, ms (default {@link MSG_LOOKUP_MS})
   */
  msgLookupMs?: number
  /** bounds of peer and agent discovery (p2p/discovery.ts `DEFAULT_DISCOVERY_LIMITS` for the rest) */
  discoveryLimits?: Partial<DiscoveryLimits>
  /** bounds of the provider records other peers can make this node hold (p2p/dht-store.ts `DEFAULT_DHT_LIMITS` for the rest) */
  dhtLimits?: Partial<DhtLimits>
  /** mDNS discovery (`igord node --mdns`: p2p/mdns.ts `mdnsService`); absent (the default): none */
  mdns?: MdnsFactory
  /** node notes (one line each, no newline) */
  note (line: string): void
  /** an agent's log line */
  emit (name: string, line: string): void
  /** true: `emit` drops every line (`igord node --quiet`), so the tick threads do not send them */
  quiet?: boolean
  /**
   * Fault injection, for tests only (test/faults.ts installs it; the shipped CLI never sets it):
   * `step` is called at each migration step with the stream's channel (it may kill the process,
   * or cut the stream and connection), `beforeOffer` after the source's loop stopped and before its
   * last checkpoint is read for the offer.
   */
  faults?: NodeFaults
}

/**
 * Where {@link IgordNode.deliver} put a message: the agent's name and DID, the seq its inbox gave it
 * (0 with `duplicate`: the agent already had that id), its budget after it (microcents, decimal),
 * and `forwarded`: the peer ID of the node it was forwarded to, when the agent had left this one.
 */
export interface DeliverResult { name: string; did: string; seq: number; duplicate: boolean; budget: string; forwarded?: string }

/** How long a message for an agent being migrated waits for the migration's outcome, ms. */
export const DELIVER_WAIT_MS = 60_000

/** Default {@link NodeOptions.msgLookupMs}, ms. */
export const MSG_LOOKUP_MS = 10_000

/** A running node. */
export class IgordNode {
  readonly dir: string
  readonly peer: Peer
  readonly host: HostIdentity
  readonly peerId: string
  readonly capabilities: Set<string>
  readonly price: bigint
  readonly timeouts: Timeouts
  /** the agents hosted here, by name (the hosting's map, p2p/hosting.ts) */
  readonly agents: Map<string, Hosted>
  /** hosted agents: their loops, birth, stop, restore at start, writer locks (p2p/hosting.ts) */
  readonly #hosting: Hosting
  readonly #opts: NodeOptions
  readonly #blobs: BlobStore
  /** the worker threads that hold the agents and run their ticks */
  readonly #pool: TickPool
  #closing = false
  /** the node's lock on its data directory (checkpoint/lock.ts); the agents' writer locks are the hosting's */
  #dirLock: Lock | null = null
  /** agents handed off from here (by name and by DID), to forward messages for them */
  readonly #moved = new Map<string, Moved>()
  /** counts of inbound inbox streams (p2p/inbox.ts) */
  readonly #inboxGate: StreamGate
  /**
   * Where agents live and which peers exist (p2p/discovery.ts): agents hosted here are announced
   * in the DHT (birth, restore, arrival) and withdrawn at handoff.
   */
  readonly discovery: Discovery
  readonly #kad: KadDiscovery
  /** the price market: `/igor/info/1.0.0` answers and the choice of cheaper peers (p2p/market.ts) */
  readonly #market: Market
  /** test-only fault hooks, no-ops in production (p2p/faults.ts) */
  readonly #faults: Faults
  /** the target side: arrivals in progress and pending (p2p/target.ts) */
  readonly #target: Target
  /** agent messages: routing out, taking in (p2p/routing.ts) */
  readonly #router: Router
  /** the source side: agents migrating out (p2p/source.ts) */
  readonly #source: Source<Hosted>
  /** When the node started (Date.now() ms). */
  readonly startedAt = Date.now()
  /**
   * Told of the outcome of each migration of an agent away from this node (`migrate` and the
   * agent's own requests): the agent's name and DID, and the result, or null when it stayed here.
   * A listener must not throw (p2p/http-api.ts counts them for `/metrics`).
   */
  readonly migrationListeners = new Set<(name: string, did: string, result: MigrateResult | null) => void>()

  private constructor (opts: NodeOptions, host: HostIdentity, peer: Peer) {
    this.#opts = opts
    this.dir = opts.dir
    this.host = host
    this.peer = peer
    this.peerId = host.peerId
    this.capabilities = new Set(opts.capabilities)
    this.price = opts.price
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts }
    this.#blobs = new BlobStore(blobsDir(opts.dir))
    this.#pool = new TickPool({ note: opts.note, route: (_from, env, first) => this.route(env, first), ...(opts.tickTimeoutMs === undefined ? {} : { tickTimeoutMs: opts.tickTimeoutMs }), ...(opts.tickThreads === undefined ? {} : { size: opts.tickThreads }) })
    this.#inboxGate = new StreamGate(opts.inboxLimits)
    this.#kad = new KadDiscovery(peer, {
      where: (did) => this.#where(did),
      info: (a) => queryInfo(this.peer, a, this.timeouts),
      bootstrap: opts.bootstrap ?? [],
      note: opts.note,
    }, opts.discoveryLimits)
    this.discovery = this.#kad
    this.#faults = new Faults(opts.faults, peer, opts.note)
    this.#hosting = new Hosting({
      dir: this.dir,
      capabilities: this.capabilities,
      caps: opts.caps ?? DEFAULT_NODE_CAPS,
      intervalMs: opts.intervalMs,
      ...(opts.checkpointEveryMs === undefined ? {} : { checkpointEveryMs: opts.checkpointEveryMs }),
      ...(opts.idleCheckpointEveryMs === undefined ? {} : { idleCheckpointEveryMs: opts.idleCheckpointEveryMs }),
      ...(opts.hibernateAfterMs === undefined ? {} : { hibernateAfterMs: opts.hibernateAfterMs }),
      closing: () => this.#closing,
      note: opts.note,
      pool: this.#pool,
      settings: () => this.#settings(),
      emitter: (name) => this.#emitter(name),
      announce: (did) => this.discovery.announce(did),
      arriving: (name) => this.#target.has(name),
      recoverPending: (name) => this.#target.recoverPending(name),
      remember: (m) => this.#remember(m),
      selfMigrate: (h, target) => this.#source.selfMigrate(h, target),
    })
    this.agents = this.#hosting.agents
    this.#target = new Target({
      dir: this.dir,
      peerId: this.peerId,
      peer,
      timeouts: this.timeouts,
      capabilities: this.capabilities,
      caps: opts.caps ?? DEFAULT_NODE_CAPS,
      ...(opts.targetLimits === undefined ? {} : { limits: opts.targetLimits }),
      closing: () => this.#closing,
      hostedDid: (name) => this.agents.get(name)?.session.agent.spec.identity.did,
      pool: this.#pool,
      settings: () => this.#settings(),
      emitter: (name) => this.#emitter(name),
      hasBlob: (c) => this.#blobs.has(c),
      getBlob: (c) => this.#blobs.get(c),
      fault: (step, ch) => this.#faults.step(step, ch),
      note: opts.note,
      lock: (name) => this.#hosting.lock(name),
      host: (name, session) => { this.#hosting.host(name, session, this.#opts.intervalMs) },
      arrived: (name, did) => {
        for (const k of [name, did]) if (this.#moved.get(k)?.did === did) this.#moved.delete(k) // it is back here
        this.#hosting.startLoop(this.agents.get(name)!)
      },
    })
    this.#source = new Source<Hosted>({
      dir: this.dir,
      peerId: this.peerId,
      peer,
      timeouts: this.timeouts,
      price: this.price,
      addrs: () => this.addrs,
      blobs: this.#blobs,
      faults: this.#faults,
      market: { cheapestPeers: (m) => this.#market.cheapestPeers(m) },
      listeners: this.migrationListeners,
      note: opts.note,
      migrationOf: (name) => this.agents.get(name)?.migration,
      pause: (h) => this.#hosting.pause(h),
      startLoop: (h) => this.#hosting.startLoop(h),
      remember: (m) => this.#remember(m),
      drop: (name) => { this.agents.delete(name) },
      withdraw: (did) => this.discovery.withdraw(did),
      unlock: (name) => this.#hosting.unlock(name),
    })
    this.#router = new Router({
      peerId: this.peerId,
      peer,
      timeouts: this.timeouts,
      lookupMs: opts.msgLookupMs ?? MSG_LOOKUP_MS,
      findHost: (did, ms, o) => this.discovery.findHost(did, ms, o),
      find: (nameOrDid) => this.#hosting.find(nameOrDid),
      arriving: (nameOrDid) => this.#target.arriving(nameOrDid),
      moved: (nameOrDid) => this.#moved.get(nameOrDid),
      addrsOf: (m) => this.#addrsOf(m),
      deliver: (to, msg, o) => this.deliver(to, msg, o),
    })
    this.#market = new Market({
      price: this.price,
      capabilities: this.capabilities,
      addrs: () => this.addrs,
      agentCount: () => this.agents.size,
      stepMs: () => this.timeouts.stepMs,
      peers: () => this.discovery.peers(),
    })
  }

  /** Where `did` is as far as this node knows: hosted here (its epoch), handed off (to whom), or unknown. */
  #where (did: string): Whereabouts {
    for (const h of this.agents.values()) if (h.session.did === did) return { state: 'here', epoch: h.session.lineage.epoch }
    const m = this.#moved.get(did)
    if (m !== undefined && m.did === did) return { state: 'moved', peer: m.peer, addrs: this.#addrsOf(m).map((a) => a.toString()) }
    return { state: 'unknown' }
  }

  #gcTimer: NodeJS.Timeout | null = null
  #gcNext = 0
  #gcBusy = false

  /**
   * One retention pass (see {@link NodeOptions.gc}): bounded work, one agent at a time; a pass still
   * running when the next is due is not doubled. Notes what it pruned and any failure; never throws.
   */
  async #gcPass (): Promise<void> {
    const policy = this.#opts.gc
    if (policy === undefined || this.#gcBusy || this.#closing) return
    this.#gcBusy = true
    try {
      const hosted = [...this.agents.values()]
      for (let k = 0; k < Math.min(GC_AGENTS_PER_PASS, hosted.length) && !this.#closing; k++) {
        const h = hosted[(this.#gcNext++) % hosted.length]
        if (h.state === 'migrating' || h.migration !== null) continue
        try {
          const r = await h.session.gc({ keepEvery: policy.keepEvery, keepLast: policy.keepLast, maxPacks: GC_PACKS_PER_AGENT })
          if (r.newlyPruned > 0 || r.packsBefore > 1) this.#opts.note(`gc: ${formatGc(r)}`)
        } catch (e) { this.#opts.note(`gc: ${h.name}: ${(e as Error).message}`) }
      }
      this.#blobs.forget() // packs were rewritten under the node's own index
    } finally { this.#gcBusy = false }
  }

  /**
   * `igord gc` on a directory this node serves (control op `gc`): one retention pass over the
   * hosted agent `name` (or every hosted agent), each in its own worker between its ticks, as
   * {@link NodeOptions.gc} does but unbounded in packs. An agent in a migration is skipped.
   * @returns one report per agent collected (checkpoint/gc.ts `GcReport`), and the names skipped
   *   with why
   * @throws RequestError when `name` is given and not hosted here; the gc's own errors
   *   (GcError exit 6, StorageError exit 8) for a single named agent
   */
  async gcNow (name: string | undefined, opts: { keepEvery: number; keepLast: number; dryRun?: boolean }): Promise<{ reports: GcReport[]; skipped: { name: string; reason: string }[] }> {
    const hosted = name === undefined ? [...this.agents.values()] : [this.agents.get(name)]
    if (hosted[0] === undefined && name !== undefined) throw new RequestError(`gc: no agent named "${name}" is hosted by this node`)
    const reports: GcReport[] = []; const skipped: { name: string; reason: string }[] = []
    for (const h of hosted as Hosted[]) {
      if (h.state === 'migrating' || h.migration !== null) { skipped.push({ name: h.name, reason: 'migrating' }); continue }
      try { reports.push(await h.session.gc(opts)) } catch (e) {
        if (name !== undefined) throw e
        skipped.push({ name: h.name, reason: (e as Error).message })
      }
    }
    if (opts.dryRun !== true) this.#blobs.forget()
    return { reports, skipped }
  }

  /**
   * Starts a node: loads or creates `host.key`, starts libp2p, restores agents and interrupted
   * arrivals, then answers `/igor/migrate/1.0.0`, `/igor/migrate/status/1.0.0` and `/igor/info/1.0.0`.
   * @throws StorageError (data directory), NetworkError (cannot listen), RequestError (bad address)
   */
  static async start (opts: NodeOptions): Promise<IgordNode> {
    for (const a of [...opts.listen, ...(opts.bootstrap ?? [])]) parseMultiaddr(a, 'address')
    makePrivateDir(opts.dir)
    const dirLock = lockNode(opts.dir)
    let node: IgordNode
    try {
      const host = loadHostIdentity(opts.dir)
      node = new IgordNode(opts, host, await startPeer(host.key.seed, opts.listen, {
        note: opts.note,
        ...(opts.dhtLimits === undefined ? {} : { dhtLimits: opts.dhtLimits }),
        ...(opts.mdns === undefined ? {} : { mdns: opts.mdns }),
      }))
    } catch (e) { dirLock.release(); throw e }
    node.#dirLock = dirLock
    const peer = node.peer
    try {
      await node.#hosting.restore()
      if (opts.gc !== undefined) { node.#gcTimer = setInterval(() => { void node.#gcPass() }, opts.gc.everyMs); node.#gcTimer.unref() }
      node.#target.clearSpools() // left by a crash; never the only copy of anything
      // streams over the gate's limits are refused with a reason (receiveAgent), not reset by libp2p
      await peer.handle(MIGRATE_PROTOCOL, (stream, conn) => {
        node.#target.receive(new Channel(stream, conn.remotePeer.toString()))
      }, { maxInboundStreams: 128 })
      await peer.handle(STATUS_PROTOCOL, (stream, conn) => { void node.#source.answerStatus(new Channel(stream, conn.remotePeer.toString())) })
      await peer.handle(INFO_PROTOCOL, (stream, conn) => { void node.#market.answerInfo(new Channel(stream, conn.remotePeer.toString())) })
      // a message forwarded by the node an agent left: delivered here or refused, never forwarded again
      await peer.handle(INBOX_PROTOCOL, (stream, conn) => {
        void answerInbox(new Channel(stream, conn.remotePeer.toString(), INBOX_STREAM_BUFFER), {
          deliver: async (agent, msg) => { const r = await node.deliver(agent, msg, { forward: false }); return { seq: r.seq, duplicate: r.duplicate, budget: BigInt(r.budget) } },
        }, { stepMs: node.timeouts.stepMs, deliverMs: DELIVER_WAIT_MS + node.timeouts.stepMs }, node.#inboxGate)
      }, { maxInboundStreams: 128 })
      // a message an agent elsewhere sent to an agent here (p2p/msg.ts)
      await peer.handle([MSG_PROTOCOL, MSG_PROTOCOL_V1], (stream, conn) => {
        node.#router.answer(new Channel(stream, conn.remotePeer.toString(), MSG_STREAM_BUFFER))
      }, { maxInboundStreams: 128 })
      await node.#kad.start()
      for (const b of opts.bootstrap ?? []) {
        peer.dial(parseMultiaddr(b, '--bootstrap'), { signal: AbortSignal.timeout(node.timeouts.dialMs) })
          .then(() => opts.note(`connected to bootstrap peer ${b}`), (e: Error) => opts.note(`bootstrap ${b}: ${e.message.split('\n')[0]}`))
      }
    } catch (e) {
      await node.shutdown()
      throw e
    }
    return node
  }

  /** This node's dialable multiaddrs (`…/p2p/<peer id>`). */
  get addrs (): string[] { return dialableAddrs(this.peer) }

  #settings (): WorkerSettings {
    return { dir: this.dir, price: this.price, ...(this.#opts.quiet === true ? { quiet: true } : {}) }
  }

  #emitter (name: string): (line: string) => void {
    return (line) => this.#opts.emit(name, line)
  }

  // ── hosting: p2p/hosting.ts ──────────────────────────────────────────────

  /** Every agent hosted here. */
  list (): AgentInfo[] { return this.#hosting.list() }

  /**
   * Births a new agent on this node (as `igord run`) and starts its loop (p2p/hosting.ts).
   * @throws ModuleError, ManifestError, StorageError (as `igord run`); RequestError when the name is
   *   taken or a capability is not granted by this node
   */
  async run (req: RunRequest): Promise<AgentInfo> { return await this.#hosting.run(req) }

  /**
   * Stops an agent (final checkpoint); it stays on disk, listed as stopped, and is not restarted.
   * @throws RequestError when there is no such agent
   */
  async stopAgent (name: string): Promise<AgentInfo> { return await this.#hosting.stopAgent(name) }

  // ── inbox ───────────────────────────────────────────────────────────────

  /**
   * Takes a message for a hosted agent (by name or DID) into its inbox, durably, and wakes it
   * (runtime/mailbox.ts); a top-up (kind `fund`) for an exhausted agent starts its loop again. A
   * message for an agent being migrated (or arriving) waits for the outcome, at most
   * {@link DELIVER_WAIT_MS}: it is delivered here if the agent stays, and forwarded to its new host
   * (`/igor/inbox/1.0.0`, p2p/inbox.ts) if it left — as is a message for an agent handed off from
   * here before; that host answers with the seq (or refuses). With `forward: false` (a message
   * forwarded to this node) an agent that left is refused instead: a message is forwarded once.
   * @returns where it went: the agent's name, DID, the message's seq (0 and `duplicate` when the
   *   id was seen), and the peer it was forwarded to
   * @throws DeliveryRefused (exit 11): no such agent, inbox full, message too large, still
   *   migrating, the new host refused or could not be reached
   */
  async deliver (nameOrDid: string, msg: Incoming, opts: { forward?: boolean } = {}): Promise<DeliverResult> {
    let h = this.#hosting.find(nameOrDid)
    // until the handed-off agent leaves `agents` (after the handoff frame), it is still "migrating"
    const busy = (x: Hosted | undefined) => x === undefined ? this.#target.arriving(nameOrDid) : x.state === 'migrating' || x.state === 'handoff'
    for (let waited = 0; busy(h) && waited < DELIVER_WAIT_MS; waited += 50) {
      await sleep(50)
      h = this.#hosting.find(nameOrDid)
    }
    if (h === undefined) {
      const moved = this.#moved.get(nameOrDid)
      if (moved === undefined && opts.forward !== false && nameOrDid.startsWith('did:key:') && !this.#target.arriving(nameOrDid)) return await this.#deliverByDid(nameOrDid, msg)
      if (moved === undefined) throw new DeliveryRefused(this.#target.arriving(nameOrDid) ? `${nameOrDid} is still arriving after ${DELIVER_WAIT_MS / 1000} s; try again` : `no agent named ${nameOrDid} on this node`)
      if (opts.forward === false) throw new DeliveryRefused(`${nameOrDid} moved to ${moved.peer} and is no longer here (a forwarded message is not forwarded again)`)
      const f = await forwardMessage(this.peer, moved.peer, this.#addrsOf(moved), moved.did, msg, { ...this.timeouts, deliverMs: DELIVER_WAIT_MS + this.timeouts.stepMs }, this.#opts.forwardRetry ?? DEFAULT_FORWARD_RETRY)
      return { name: moved.name, did: moved.did, seq: f.seq, duplicate: f.duplicate, budget: String(f.budget), forwarded: f.to }
    }
    if (busy(h)) throw new DeliveryRefused(`${h.name} is still migrating after ${DELIVER_WAIT_MS / 1000} s; try again`)
    const r = await h.session.deliver(msg)
    if (msg.kind === 'fund' && !r.duplicate && h.state === 'exhausted') {
      this.#hosting.startLoop(h)
      this.#opts.note(`${h.name}: funded, running again`)
    }
    return { name: h.name, did: h.session.did, ...r, budget: String(h.session.agent.budget + (msg.kind === 'fund' && !r.duplicate ? msg.amount ?? 0n : 0n)) }
  }

  /**
   * A message for an agent not hosted here, by DID (`igord send did:key:…`): its host is looked up
   * (`discovery.findHost`, {@link NodeOptions.msgLookupMs}) and the message forwarded there over
   * `/igor/inbox/1.0.0` (whose host delivers it, never forwarding it again).
   * @throws DeliveryRefused when no host is found or it refuses
   */
  async #deliverByDid (did: string, msg: Incoming): Promise<DeliverResult> {
    const lookup = this.#opts.msgLookupMs ?? MSG_LOOKUP_MS
    const host = await this.discovery.findHost(did, lookup)
    if (host === null) throw new DeliveryRefused(`no agent ${did} on this node, and no host of it found within ${lookup / 1000} s`)
    const addrs = host.addrs.flatMap((a) => { try { return [parseMultiaddr(a, 'findHost')] } catch { return [] } })
    const f = await forwardMessage(this.peer, host.peer, addrs, did, msg, { ...this.timeouts, deliverMs: DELIVER_WAIT_MS + this.timeouts.stepMs }, this.#opts.forwardRetry ?? DEFAULT_FORWARD_RETRY)
    return { name: did, did, seq: f.seq, duplicate: f.duplicate, budget: String(f.budget), forwarded: f.to }
  }

  // ── agent messages (issue 9): p2p/routing.ts ──────────────────────────────

  /**
   * Routes a signed message an agent hosted here sent (runtime/mailbox.ts): p2p/routing.ts
   * `Router.route` (lanes in call order, streams to hosts, the host cache). Never throws.
   * @param first no earlier message of this sender to this recipient waits for an answer (default true)
   * @returns delivered (or a duplicate); refused for good (`retry` false); or not delivered now (`retry` true)
   */
  async route (env: Envelope, first = true): Promise<SendOutcome> {
    return await this.#router.route(env, first)
  }

  /**
   * The DID of a hosted agent (by name or DID).
   * @throws DeliveryRefused when there is none
   */
  didOf (nameOrDid: string): string {
    const h = this.#hosting.find(nameOrDid)
    if (h !== undefined) return h.session.did
    const moved = this.#moved.get(nameOrDid)
    if (moved !== undefined) return moved.did
    throw new DeliveryRefused(`no agent named ${nameOrDid} on this node`)
  }

  /**
   * Remembers an agent handed off from here (by name and DID), to forward its messages; messages to
   * it from agents here go to the node it moved to first (p2p/routing.ts `Router`), not to a host cached before.
   */
  #remember (m: Moved): void {
    this.#moved.set(m.name, m)
    this.#moved.set(m.did, m)
    this.#router.forgetHost(m.did)
  }

  /** Addresses to reach the host of a moved agent: the one its migration dialed, then those of open connections to it. */
  #addrsOf (m: Moved): Multiaddr[] {
    const out = new Map<string, Multiaddr>()
    for (const a of m.addrs) { try { out.set(a, parseMultiaddr(a, 'forward')) } catch { /* skipped */ } }
    for (const c of this.peer.getConnections()) {
      if (c.remotePeer.toString() !== m.peer) continue
      const a = c.remoteAddr.toString().includes('/p2p/') ? c.remoteAddr : c.remoteAddr.encapsulate(`/p2p/${m.peer}`)
      out.set(a.toString(), a)
    }
    return [...out.values()]
  }

  /**
   * Stops every agent, then libp2p. Each agent writes a final checkpoint after its tick, or, when
   * its tick does not end within the stop grace (runtime/pool.ts), keeps its last one: shutdown
   * never waits for a spinning tick. Never throws.
   */
  async shutdown (): Promise<void> {
    this.#closing = true
    if (this.#gcTimer !== null) clearInterval(this.#gcTimer)
    this.#kad.close()
    const pool = this.#pool.close() // stops every loop at once; from here on nothing is restored
    const paused = Promise.all([...this.agents.values()].map((h) => this.#hosting.pause(h).catch(() => {})))
    await pool
    await paused
    try { await this.peer.stop() } catch { /* already stopped */ }
    this.#hosting.releaseLocks()
    this.#dirLock?.release()
  }

  // ── source side ───────────────────────────────────────────────────────────

  /**
   * Moves a running agent to the first of `to` (multiaddrs with /p2p/) that accepts it, retrying
   * each with backoff; refusals move on to the next candidate. The agent keeps running here when
   * every candidate fails.
   * @throws RequestError (unknown agent, bad address, not running); RefusedError / NetworkError
   *   (exit 9) when no candidate took it
   */
  async migrate (name: string, to: string[], progress?: Progress): Promise<MigrateResult> {
    return await this.#source.migrate(this.#hosting.get(name), to, progress)
  }
}
