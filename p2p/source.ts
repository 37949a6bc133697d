/**
 * The source side of a node's migrations (DESIGN §9, docs/PROTOCOL.md): moving a hosted agent out.
 * `migrate` (and an agent's own request, `selfMigrate`) stops its loop, offers its last checkpoint
 * with the replay base a target needs ({@link replayBase}) to each candidate in turn, commits the
 * handoff and records the outcome; `answerStatus` tells a target resolving a pending arrival what
 * became of it. The wire protocol itself is p2p/migrate.ts `sendAgent`. Carved out of p2p/node.ts
 * (docs/RATIONALE.md "Splitting p2p/node.ts"); gets what it needs of its node injected
 * ({@link SourceNode}), never the node.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Multiaddr } from '@multiformats/multiaddr'
import { IgordError } from '../checkpoint/errors.ts'
import { cidOf, cidOfDigest, digestOfCid } from '../checkpoint/hash.ts'
import { headerCid } from '../checkpoint/header.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import { isAgentName } from '../checkpoint/layout.ts'
import { InboxSpool } from '../checkpoint/spool.ts'
import { stateRoot } from '../checkpoint/state.ts'
import type { BlobStore } from '../checkpoint/store.ts'
import { decodeEntry, newestFirst, type HistoryEntry } from '../checkpoint/entries.ts'
import { entryWhere } from '../checkpoint/segment.ts'
import type { Manifest } from '../hostcalls/manifest.ts'
import type { AgentHandle } from '../runtime/pool.ts'
import * as authority from './authority.ts'
import { NetworkError, RefusedError, RequestError } from './errors.ts'
import type { Faults } from './faults.ts'
import { MIGRATE_PROTOCOL, openChannel, sendAgent } from './migrate.ts'
import type { MigrateResult, Progress, ReplayBase, Timeouts } from './migrate.ts'
import { parseMultiaddr } from './peer.ts'
import type { Peer } from './peer.ts'
import type { Channel } from './wire.ts'

/** After a failed agent-initiated migration, further requests of that agent are ignored this long, ms. */
export const QUIET_MS = 30_000

/** An agent handed off from this node: its name, DID, the peer it went to and that peer's addresses (multiaddrs with /p2p/). */
export interface Moved { name: string; did: string; peer: string; addrs: string[] }

/**
 * What the source side reads and sets of a hosted agent: its name and worker handle, its state
 * (`running`, `migrating`, `handoff`, …), the migration in progress (its id and the offered
 * checkpoint's CID) and until when (ms since epoch) its own migration requests are ignored.
 */
export interface SourceAgent {
  name: string
  session: AgentHandle
  state: string
  migration: { id: string; offer: string } | null
  quietUntil: number
}

/**
 * What the source side needs of its node: data directory, peer ID, libp2p peer, timeouts, price
 * (microcents per million fuel), dialable addresses, blob store, fault hooks, market (cheaper
 * peers), migration listeners (p2p/node.ts `IgordNode.migrationListeners`) and notes; the
 * migration in progress of a hosted agent by name; and what a handoff or a failure does to the
 * hosting: `pause(h)` stops its loop (final checkpoint), `startLoop(h)` runs it again here,
 * `remember(m)` records it as moved (to forward its messages), `drop(name)` unlists it,
 * `withdraw(did)` withdraws it from discovery (never throws), `unlock(name)` releases its writer lock.
 */
export interface SourceNode<H extends SourceAgent> {
  dir: string
  peerId: string
  peer: Peer
  timeouts: Timeouts
  price: bigint
  addrs (): string[]
  blobs: Pick<BlobStore, 'get'>
  faults: Pick<Faults, 'step' | 'beforeOffer'>
  market: { cheapestPeers (m: Manifest): Promise<Multiaddr[]> }
  listeners: ReadonlySet<(name: string, did: string, result: MigrateResult | null) => void>
  note (line: string): void
  migrationOf (name: string): { id: string; offer: string } | null | undefined
  pause (h: H): Promise<void>
  startLoop (h: H): void
  remember (m: Moved): void
  drop (name: string): void
  withdraw (did: string): Promise<unknown>
  unlock (name: string): void
}

/**
 * The replay base of `live` (its `prev` checkpoint P, DESIGN §8/§9), rebuilt from this node's
 * history of the agent: P's page table is `live`'s with the pages listed in `live`'s history entry
 * reverted to their CID as of P, found by walking the entries back from P (a page listed in no
 * entry back to a base entry was zero at P); when `live`'s entry is a base entry, P's whole table is
 * rebuilt back to the last base entry; P's I/O state blob comes from the blob store. Undefined for
 * a genesis checkpoint, a checkpoint without a log, or when P's history is not at hand, does not
 * reproduce P's state root, or P's I/O state blob is missing or corrupt. `historyDir` is the agent's
 * history directory (`<dir>/history/<name>`); `blobs` the node's blob store. Never throws.
 */
export function replayBase (historyDir: string, live: LiveCheckpoint, blobs: Pick<BlobStore, 'get'>): ReplayBase | undefined {
  const p = live.parsed
  if (p.prev === null || p.log === null) return undefined
  try {
    // the history's entries newest first, decoded as far as the walk back needs
    const seen = new Map<string, HistoryEntry>()
    const walk = newestFirst(historyDir)
    const entryOf = (cid: string): HistoryEntry | undefined => {
      const had = seen.get(cid)
      if (had !== undefined) return had
      for (let n = walk.next(); n.done !== true; n = walk.next()) {
        const d = decodeEntry(n.value.bytes, entryWhere(n.value))
        const c = headerCid(d.headerBytes)
        if (!seen.has(c)) seen.set(c, d)
        if (c === cid) return d
      }
      return undefined
    }
    const last = entryOf(headerCid(live.header))
    const pEntry = entryOf(p.prev)
    if (last === undefined || pEntry === undefined) return undefined
    const need = last.base ? null : new Set(last.pages.map((r) => r[0]))
    const resolved = new Map<number, string | null>()
    for (let e = pEntry; ;) {
      for (const [i, c] of e.pages) if (!resolved.has(i) && (need === null || need.has(i))) resolved.set(i, c)
      if (e.base || (need !== null && resolved.size === need.size)) break
      const prev = e.parsed.prev === null ? undefined : entryOf(e.parsed.prev)
      if (prev === undefined) return undefined
      e = prev
    }
    const table = new Map<number, string>()
    if (need !== null) {
      for (const [i, d] of live.digests ?? []) table.set(i, cidOfDigest(d))
      if (live.digests === undefined) for (const [i, pg] of live.pages) table.set(i, cidOf(pg))
      for (const i of need) { const c = resolved.get(i); if (c === undefined || c === null) table.delete(i); else table.set(i, c) }
    } else for (const [i, c] of resolved) if (c !== null) table.set(i, c)
    const pages = [...table].filter(([i]) => i < pEntry.pageCount).sort((x, y) => x[0] - y[0])
    const P = pEntry.parsed
    const root = stateRoot({ pages: pEntry.pageCount, digests: pages.map(([i, c]) => [i, digestOfCid(c)]), globals: pEntry.globals, fuel: P.fuel, budget: P.budget })
    if (Buffer.compare(root, P.state) !== 0) return undefined
    // P's I/O state (its request counters) is part of the state replay starts from
    const io = P.io === undefined ? null : blobs.get(P.io)
    if (io !== null && cidOf(io) !== P.io) return undefined
    return { header: pEntry.headerBytes, sig: pEntry.sig, pageCount: pEntry.pageCount, pages, globals: pEntry.globals, blob: (c) => blobs.get(c), io }
  } catch { return undefined }
}

/** The source side of a node: agents migrating out, and status answers to their targets. */
export class Source<H extends SourceAgent> {
  readonly #n: SourceNode<H>
  constructor (node: SourceNode<H>) { this.#n = node }

  /**
   * Moves a running agent to the first of `to` (multiaddrs with /p2p/) that accepts it, retrying
   * each with backoff; refusals move on to the next candidate. The agent keeps running here when
   * every candidate fails.
   * @throws RequestError (bad address, not running); RefusedError / NetworkError
   *   (exit 9) when no candidate took it
   */
  async migrate (h: H, to: string[], progress?: Progress): Promise<MigrateResult> {
    const n = this.#n
    const name = h.name
    const addrs = to.map((a) => parseMultiaddr(a, '--to'))
    if (addrs.length === 0) throw new RequestError('migrate: no target given')
    if (h.state !== 'running') throw new RequestError(`${name} is ${h.state}, not running`)
    h.state = 'migrating'
    const t0 = performance.now()
    await n.pause(h)
    await n.faults.beforeOffer(h.session)
    return await this.#migrateStopped(h, addrs, progress, t0)
  }

  async #migrateStopped (h: H, addrs: Multiaddr[], progress?: Progress, t0 = performance.now()): Promise<MigrateResult> {
    const n = this.#n
    const live = await h.session.lastCheckpoint()
    const base = replayBase(h.session.historyDir, live, n.blobs)
    const stopMs = performance.now() - t0
    const offer = headerCid(live.header)
    const id = randomBytes(16).toString('hex')
    h.migration = { id, offer }
    const errors: Error[] = []
    let committed = false
    const hooks = {
      commit: async (target: string) => {
        const handoff = await h.session.checkpoint('handoff', { target })
        committed = true
        h.state = 'handoff'
        return handoff
      },
      ...(progress === undefined ? {} : { progress }),
      fault: (step: string, ch: Channel) => n.faults.step(step, ch),
    }
    peers: for (const addr of addrs) {
      for (let attempt = 0; attempt < 2 && !committed; attempt++) {
        if (attempt > 0) await sleep(250 * 2 ** attempt)
        let ch: Channel | null = null
        try {
          const tDial = performance.now()
          ch = await openChannel(n.peer, addr, MIGRATE_PROTOCOL, n.timeouts)
          const dialMs = performance.now() - tDial
          const r = await sendAgent(ch, { id, name: h.name, live, addrs: n.addrs(), addr: addr.toString(), me: n.peerId, ...(base === undefined ? {} : { base }) }, hooks, n.timeouts)
          r.steps = { stop: stopMs, dial: dialMs, ...r.steps }
          r.ms = performance.now() - t0
          n.remember({ name: h.name, did: h.session.did, peer: r.to, addrs: [r.addr] })
          n.drop(h.name)
          void n.withdraw(h.session.did) // never throws; stored records expire, this node answers "moved"
          // everything its spool held is in the offered checkpoint; files left could only be stale
          try { new InboxSpool(n.dir, h.name).prune(Number.MAX_SAFE_INTEGER) } catch { /* best effort */ }
          n.unlock(h.name)
          void h.session.close()
          authority.recordOutcome(n.dir, { role: 'source', outcome: 'handoff', id, agent: r.agent, name: h.name, to: r.to, addr: r.addr, tick: r.tick, confirmed: r.confirmed })
          for (const l of n.listeners) l(h.name, h.session.did, r)
          n.note(`${h.name} handed off to ${r.to} at tick ${r.tick} (${r.pagesSent} of ${r.pagesOffered} pages sent, ${r.replayedTicks} ticks replayed by the target, ${r.ms.toFixed(0)} ms${r.confirmed ? '' : '; start not confirmed yet'})`)
          return r
        } catch (e) {
          ch?.abort()
          if (committed) throw e // cannot happen: sendAgent does not throw after the commit
          errors.push(e as Error)
          if (e instanceof RequestError) break peers // the agent cannot move now (p2p/endframe.ts planEnd): no peer would do
          if (e instanceof RefusedError || (e instanceof IgordError && !(e instanceof NetworkError))) break
        }
      }
    }
    h.migration = null
    const last = errors[errors.length - 1]
    for (const l of n.listeners) l(h.name, h.session.did, null)
    authority.recordOutcome(n.dir, { role: 'source', outcome: 'aborted', id, name: h.name, errors: errors.map((e) => e.message) })
    n.startLoop(h) // nothing was committed: the agent continues here
    n.note(`${h.name} stays here: ${last.message}`)
    if (errors.length > 1) {
      const msg = `${last.message}${errors.length > 1 ? ` (${errors.length} attempts; first: ${errors[0].message})` : ''}`
      throw last instanceof RefusedError ? new RefusedError(last.message.split(' ')[0], last.reason) : new NetworkError(msg)
    }
    throw last
  }

  /**
   * An agent's own migration request (its loop ended asking to move): to `target` (a multiaddr with
   * /p2p/), or null for the cheapest known peer (p2p/market.ts). On failure the agent runs on here
   * and its further requests are ignored for {@link QUIET_MS}. Never throws.
   */
  async selfMigrate (h: H, target: string | null): Promise<void> {
    const n = this.#n
    try {
      const addrs = target !== null ? [parseMultiaddr(target, 'migrate_request')] : await n.market.cheapestPeers(h.session.agent.spec.manifest)
      if (addrs.length === 0) throw new NetworkError(`no known peer cheaper than this node (${n.price} microcents per million fuel) grants the agent's capabilities`)
      n.note(`${h.name} asked to move to ${target ?? 'the cheapest known peer'}`)
      await this.#migrateStopped(h, addrs)
    } catch (e) {
      h.quietUntil = Date.now() + QUIET_MS
      if (h.state === 'migrating') n.startLoop(h)
      n.note(`${h.name}: its migration request failed: ${(e as Error).message}`)
    }
  }

  /**
   * Answers one `/igor/migrate/status/1.0.0` query (a target resolving a pending arrival): `handoff`
   * with the signed handoff when this node handed that offer to the asking peer, `pending` while that
   * migration is in progress here, else `aborted`. Never throws (a failed stream is aborted).
   */
  async answerStatus (ch: Channel): Promise<void> {
    const n = this.#n
    try {
      const q = await ch.recv('status', n.timeouts.stepMs, ['status'])
      const name = String(q.name); const offer = String(q.offer); const tick = Number(q.tick)
      let answer: Record<string, unknown> = { t: 'status', state: 'aborted' }
      const done = isAgentName(name) && Number.isSafeInteger(tick) ? authority.findHandoff(n.dir, name, tick, offer) : null
      if (done !== null && done.parsed.target === ch.peer) answer = { t: 'status', state: 'handoff', header: done.header, sig: done.sig }
      else if (n.migrationOf(name)?.offer === offer) answer = { t: 'status', state: 'pending' }
      await ch.send(answer as { t: string }, 'status', n.timeouts.stepMs)
      await ch.close()
    } catch { ch.abort() }
  }
}
