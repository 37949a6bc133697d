/**
 * Agent messages of a node (issue 9, DESIGN §9, docs/PROTOCOL.md `/igor/msg/1.1.0`): routing the
 * signed messages agents hosted here send — into a local inbox, or to the recipient's host over
 * p2p/msg.ts `MsgStream`, in per-(sender, recipient) lanes with a cache of recipients' hosts — and
 * taking in those other nodes send (sender check, delivery, group commit). Carved out of
 * p2p/node.ts (docs/RATIONALE.md "Splitting p2p/node.ts"); gets what it needs of its node injected
 * ({@link RouterNode}), never the node.
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import { IgordError } from '../checkpoint/errors.ts'
import { checkEnvelope, E_MSG_FULL, E_MSG_REFUSED, E_MSG_UNKNOWN } from '../checkpoint/envelope.ts'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import { nowNs, RETRY_FOR_MS } from '../runtime/mailbox.ts'
import type { Incoming } from '../runtime/mailbox.ts'
import type { AgentHandle, DeliverManyResult } from '../runtime/pool.ts'
import type { HostInfo } from './discovery.ts'
import type { Timeouts } from './migrate.ts'
import { answerMsg, DEFAULT_MSG_STREAM_LIMITS, MsgStream } from './msg.ts'
import { parseMultiaddr } from './peer.ts'
import type { Peer } from './peer.ts'
import type { Moved } from './source.ts'
import { PeerSlots } from './wire.ts'
import type { Channel } from './wire.ts'

/**
 * How long a recipient's host found by discovery is reused for its next messages, ms; dropped at
 * once when a message there is refused or fails (the recipient may have moved on).
 */
export const HOST_CACHE_TTL_MS = 30_000

/** Recipients whose host is remembered at most ({@link HOST_CACHE_TTL_MS}); the cache is emptied when full. */
export const MAX_HOST_CACHE = 4096

/** Lanes (sender, recipient) of agent messages kept at most: idle ones are dropped when full ({@link Router.route}). */
export const MAX_LANES = 4096

/**
 * The messages of one sender to one recipient being routed ({@link Router.route}): `tail`
 * settles once the last one is placed; `pending` counts those not settled; `blocked` is when
 * (Date.now() ms) one came back `retry` (0: none since the mailbox last sent its oldest).
 */
interface Lane { tail: Promise<void>; pending: number; blocked: number }

/** How long a receiving node trusts that a peer hosts a sender DID once discovery said so, ms. */
export const SENDER_CHECK_TTL_MS = 10_000

/** How long one sender-host check may look, ms. */
export const SENDER_CHECK_MS = 3000

/** The outcome of a message its recipient's inbox refused for good (`reason` from DeliveryRefused): E_MSG_FULL for a full inbox, else E_MSG_REFUSED. */
function refusedForGood (reason: string): SendOutcome {
  return { ok: false, retry: false, code: / is full \(/.test(reason) ? E_MSG_FULL : E_MSG_REFUSED, reason }
}

/** What routing reads of a hosted agent: its name, state (`migrating`, `handoff`, …) and worker handle. */
export interface RouterAgent { name: string; state: string; session: Pick<AgentHandle, 'deliverMany'> }

/**
 * What routing needs of its node: peer ID, libp2p peer, timeouts, how long a recipient's host is
 * looked for (ms, p2p/node.ts `NodeOptions.msgLookupMs`) and the lookup itself (p2p/discovery.ts
 * `findHost`); a hosted agent by name or DID (`find`), whether one is arriving (`arriving`), an
 * agent handed off from here by name or DID (`moved`) and the addresses of its new host
 * (`addrsOf`); and the node's delivery into a local inbox (p2p/node.ts `IgordNode.deliver`, which
 * throws DeliveryRefused).
 */
export interface RouterNode {
  peerId: string
  peer: Peer
  timeouts: Timeouts
  lookupMs: number
  findHost (did: string, timeoutMs: number, opts?: { confirm?: boolean }): Promise<HostInfo | null>
  find (nameOrDid: string): RouterAgent | undefined
  arriving (nameOrDid: string): boolean
  moved (nameOrDid: string): Moved | undefined
  addrsOf (m: Moved): Multiaddr[]
  deliver (nameOrDid: string, msg: Incoming, opts: { forward?: boolean }): Promise<{ duplicate: boolean }>
}

/** The agent messages of a node: lanes, streams, the host cache and sender checks. */
export class Router {
  readonly #n: RouterNode
  /** counts of inbound agent-message streams (p2p/msg.ts) */
  readonly #msgGate = new PeerSlots(DEFAULT_MSG_STREAM_LIMITS.maxPerPeer, DEFAULT_MSG_STREAM_LIMITS.maxTotal, 'message streams')
  /**
   * recipient DIDs of agent messages this node sends to another node: DID → that node (found by
   * discovery, or delivered to), the addresses used, and until when (Date.now() ms) it is used
   * without a lookup ({@link HOST_CACHE_TTL_MS}; 0 after a failure there). One that took a message
   * (`delivered`) is kept past that as the last known host: a recipient whose host cannot be found
   * for a moment (it restarts) is tried there rather than bounced as unknown; one that never took a
   * message is not. An entry also makes the next lookup of that DID a confirmed one. At most {@link MAX_HOST_CACHE} entries (cleared when full).
   */
  readonly #hosts = new Map<string, { peer: string; addrs: Multiaddr[]; until: number; delivered: boolean }>()
  /** the lanes of agent messages being routed, by `<from> <to>` ({@link Router.route}) */
  readonly #lanes = new Map<string, Lane>()
  /** the current message stream of each lane to a host (p2p/msg.ts `MsgStream`), by `<peer ID> <from> <to>` */
  readonly #streams = new Map<string, MsgStream>()
  /** sender DIDs recently seen hosted by a peer: DID → peer and until when (Date.now() ms) */
  readonly #senders = new Map<string, { peer: string; until: number }>()

  constructor (node: RouterNode) { this.#n = node }

  /** Serves one inbound `/igor/msg/1.1.0` (or 1.0.0) stream (p2p/msg.ts `answerMsg`); never throws. */
  answer (ch: Channel): void {
    void answerMsg(ch, {
      senderCheck: (did, from) => this.senderCheck(did, from),
      deliver: (env) => this.deliverEnvelope(env),
      deliverMany: (envs) => this.deliverEnvelopes(envs),
    }, this.#n.timeouts.stepMs, this.#msgGate)
  }

  /** Forgets the cached host of recipient `did` (it was handed off from here: its new host is known). */
  forgetHost (did: string): void { this.#hosts.delete(did) }

  /**
   * Routes a signed message an agent hosted here sent (runtime/mailbox.ts): into the inbox of a
   * recipient hosted here, else to the node that hosts it (`/igor/msg/1.1.0`, p2p/msg.ts) — the node
   * it moved to from here, or the one discovery finds. Never throws.
   *
   * Messages of one sender to one recipient are placed in the order of the calls (a lane each), on
   * one stream to the recipient's host, written ahead of their answers (p2p/msg.ts `MsgStream`):
   * the mailbox hands over its whole outbox at once. Once a message of a lane comes back `retry`,
   * every later one fails `retry` unsent until the mailbox sends its oldest message to that
   * recipient again (`first`): none overtakes a message that will be sent again.
   * @param first no earlier message of this sender to this recipient waits for an answer (the mailbox
   *   knows; default true)
   * @returns delivered (or a duplicate); refused for good (`retry` false: the message bounces with
   *   the code); or not delivered now (`retry` true)
   */
  async route (env: Envelope, first = true): Promise<SendOutcome> {
    const bad = checkEnvelope(env)
    if (bad !== null) return { ok: false, retry: false, code: E_MSG_REFUSED, reason: bad }
    const key = `${env.from} ${env.to}`
    let lane = this.#lanes.get(key)
    if (lane === undefined) {
      if (this.#lanes.size >= MAX_LANES) this.#pruneLanes()
      lane = { tail: Promise.resolve(), pending: 0, blocked: 0 }
      this.#lanes.set(key, lane)
    }
    const l = lane
    l.pending++
    try {
      return await new Promise<SendOutcome>((resolve) => {
        l.tail = l.tail.then(() => new Promise<void>((placed) => {
          if (l.blocked !== 0 && !first) {
            placed()
            resolve({ ok: false, retry: true, code: E_MSG_UNKNOWN, reason: 'not sent: an earlier message to this recipient was not delivered yet' })
            return
          }
          l.blocked = 0
          const settle = (out: SendOutcome) => {
            placed()
            if (!out.ok && out.retry) l.blocked = Date.now()
            resolve(out)
          }
          this.#routeOne(env, l, placed).then(settle, (e: Error) => settle({ ok: false, retry: true, code: E_MSG_UNKNOWN, reason: e.message.split('\n')[0] }))
        }))
      })
    } finally {
      if (--l.pending === 0 && l.blocked === 0 && this.#lanes.get(key) === l) this.#lanes.delete(key)
    }
  }

  /** Drops lanes with nothing in them: unblocked ones, and blocked ones older than twice the mailbox's retry time. */
  #pruneLanes (): void {
    const stale = Date.now() - 2 * RETRY_FOR_MS
    for (const [k, l] of this.#lanes) if (l.pending === 0 && l.blocked < stale) this.#lanes.delete(k)
    if (this.#lanes.size >= MAX_LANES) for (const [k, l] of this.#lanes) if (l.pending === 0) this.#lanes.delete(k)
  }

  /**
   * Hands `env` to the current stream of its lane to host `peer` (a new one when there is none or it
   * ended). One stream per sender, recipient and host: a message the host holds (its recipient is
   * migrating) or refuses with `retry` delays no other agent's messages.
   */
  #sendTo (lane: Lane, peer: string, addrs: Multiaddr[], env: Envelope): Promise<SendOutcome> {
    const key = `${peer} ${env.from} ${env.to}`
    let s = this.#streams.get(key)
    if (s === undefined || s.done) {
      if (this.#streams.size >= MAX_LANES) for (const [k, x] of this.#streams) if (x.done) this.#streams.delete(k)
      s = new MsgStream(this.#n.peer, peer, addrs, this.#n.timeouts)
      this.#streams.set(key, s)
    }
    return s.push(env).then((out) => {
      if (!out.ok && out.retry) lane.blocked = Date.now()
      return out
    })
  }

  /** {@link route} of one message; calls `placed` once the message is queued on its stream (or settled). */
  async #routeOne (env: Envelope, lane: Lane, placed: () => void): Promise<SendOutcome> {
    if (this.#n.find(env.to) !== undefined || this.#n.arriving(env.to)) return await this.deliverEnvelope(env)
    // the node it moved to from here, unless a lookup has been made or is due since
    const moved = this.#hosts.has(env.to) ? undefined : this.#n.moved(env.to)
    if (moved !== undefined) {
      const sent = this.#sendTo(lane, moved.peer, this.#n.addrsOf(moved), env)
      placed()
      const out = await sent
      // not taken for a reason that may pass: the agent moved on from there (that node refuses with
      // `retry`), or that node cannot be reached. Not sent elsewhere now: later messages of the lane are
      // already on their way (refused `retry` behind this one), and a re-send now could land after
      // one of them found the new host. The mailbox sends this one again first, and that attempt
      // looks the agent up (findHost starts at that node and follows its `moved` answers).
      if (!out.ok && out.retry) {
        if (this.#hosts.size >= MAX_HOST_CACHE) this.#hosts.clear()
        this.#hosts.set(env.to, { peer: moved.peer, addrs: this.#n.addrsOf(moved), until: 0, delivered: false })
      }
      return out
    }
    const lookup = this.#n.lookupMs
    const known = this.#hosts.get(env.to) // the host of its last messages
    let to: { peer: string; addrs: Multiaddr[] }
    let lost = false // discovery found no host: `to` is the last known one (it may be restarting)
    if (known !== undefined && known.until > Date.now()) to = known
    else {
      // a recipient looked up for the first time: the DHT's answer as it is, when it names one host;
      // after a failure there, or once the cached host is old, a confirmed lookup
      const host = await this.#n.findHost(env.to, lookup, { confirm: known !== undefined })
      if (host === null) {
        if (known === undefined || !known.delivered) return { ok: false, retry: false, code: E_MSG_UNKNOWN, reason: `no host of ${env.to} found within ${lookup / 1000} s` }
        to = known
        lost = true
      } else {
        if (host.peer === this.#n.peerId) return { ok: false, retry: true, code: E_MSG_UNKNOWN, reason: `${env.to} is arriving here` }
        to = { peer: host.peer, addrs: host.addrs.flatMap((a) => { try { return [parseMultiaddr(a, 'findHost')] } catch { return [] } }) }
        // the next messages (placed before this one is answered) go there too, without a lookup
        if (this.#hosts.size >= MAX_HOST_CACHE && !this.#hosts.has(env.to)) this.#hosts.clear()
        this.#hosts.set(env.to, { peer: to.peer, addrs: to.addrs, until: Date.now() + HOST_CACHE_TTL_MS, delivered: known?.peer === to.peer && known.delivered })
      }
    }
    const sent = this.#sendTo(lane, to.peer, to.addrs, env)
    placed()
    const out = await sent
    const now = this.#hosts.get(env.to)
    if (out.ok) {
      if (this.#hosts.size >= MAX_HOST_CACHE && now === undefined) this.#hosts.clear()
      if (now === undefined || now.peer === to.peer) this.#hosts.set(env.to, { peer: to.peer, addrs: to.addrs, until: Date.now() + HOST_CACHE_TTL_MS, delivered: true })
    } else if (now !== undefined && now.peer === to.peer) {
      // the recipient may have moved on: look it up afresh next time, keeping this host as the last known (used when discovery finds none only if it took a message before)
      this.#hosts.set(env.to, { ...now, until: 0 })
    }
    if (lost && !out.ok) return { ...out, reason: `no host of ${env.to} found within ${lookup / 1000} s; its last known host ${to.peer}: ${out.reason}` }
    return out
  }

  /** Takes a checked agent message into the inbox of its recipient hosted here (never forwarded). */
  async deliverEnvelope (env: Envelope): Promise<SendOutcome> {
    try {
      const r = await this.#n.deliver(env.to, { id: env.id, kind: 'message', from: env.from, time: nowNs(), body: env.body }, { forward: false })
      return { ok: true, duplicate: r.duplicate }
    } catch (e) {
      const reason = (e as Error).message.split('\n')[0]
      if (this.#n.moved(env.to) !== undefined || / is still (arriving|migrating)/.test(reason)) return { ok: false, retry: true, code: E_MSG_UNKNOWN, reason }
      if (!(e instanceof IgordError) || e.name !== 'DeliveryRefused') return { ok: false, retry: true, code: E_MSG_REFUSED, reason }
      return refusedForGood(reason)
    }
  }

  /**
   * Takes checked agent messages into the inboxes of their recipients hosted here, in order (p2p/msg.ts
   * `MsgHooks.deliverMany`): a run of messages for one running agent in one request to its worker
   * with one fsync of its spool directory (group commit); anything else one by one as
   * {@link deliverEnvelope}. After the first `retry` outcome, the rest come back `retry` untried.
   */
  async deliverEnvelopes (envs: Envelope[]): Promise<SendOutcome[]> {
    const out: SendOutcome[] = []
    for (let i = 0; i < envs.length;) {
      let j = i + 1
      while (j < envs.length && envs[j].to === envs[i].to) j++
      const run = envs.slice(i, j)
      const h = this.#n.find(run[0].to)
      let outs: SendOutcome[] = []
      if (h !== undefined && run.length > 1 && h.state !== 'migrating' && h.state !== 'handoff') outs = await this.#deliverRun(h, run)
      else for (const e of run) { const o = await this.deliverEnvelope(e); outs.push(o); if (!o.ok && o.retry) break }
      out.push(...outs)
      const stopped = outs.find((o) => !o.ok && o.retry)
      if (stopped !== undefined || outs.length < run.length) {
        const why = stopped !== undefined && !stopped.ok ? stopped.reason : 'not taken'
        while (out.length < envs.length) out.push({ ok: false, retry: true, code: E_MSG_REFUSED, reason: `not tried: an earlier message was not taken (${why.slice(0, 200)})` })
        return out
      }
      i = j
    }
    return out
  }

  /** Messages for agent `h` in one worker request (runtime/pool.ts `deliverMany`); stops at the first that was not taken for a reason that may pass. */
  async #deliverRun (h: RouterAgent, run: Envelope[]): Promise<SendOutcome[]> {
    let rs: DeliverManyResult[]
    try {
      rs = await h.session.deliverMany(run.map((env) => ({ id: env.id, kind: 'message' as const, from: env.from, time: nowNs(), body: env.body })))
    } catch (e) { return [{ ok: false, retry: true, code: E_MSG_REFUSED, reason: (e as Error).message.split('\n')[0] }] }
    const out: SendOutcome[] = []
    for (const r of rs) {
      if ('seq' in r) out.push({ ok: true, duplicate: r.duplicate })
      else if ('refused' in r) out.push(refusedForGood(r.refused.split('\n')[0]))
      else { out.push({ ok: false, retry: true, code: E_MSG_REFUSED, reason: r.failed }); break }
    }
    return out
  }

  /**
   * Whether `peer` hosts the sender `did` (a forged sender is refused): as discovery sees it, the
   * answer kept {@link SENDER_CHECK_TTL_MS}. Null when it does, else the reason.
   */
  async senderCheck (did: string, peer: string): Promise<string | null> {
    const known = this.#senders.get(did)
    if (known !== undefined && known.peer === peer && known.until > Date.now()) return null
    const host = await this.#n.findHost(did, SENDER_CHECK_MS)
    if (host === null) return `the sender ${did} is not hosted by the sending peer ${peer} (no host of it found)`
    if (host.peer !== peer) return `the sender ${did} is hosted by ${host.peer}, not by the sending peer ${peer}`
    if (this.#senders.size >= 4096) this.#senders.clear()
    this.#senders.set(did, { peer, until: Date.now() + SENDER_CHECK_TTL_MS })
    return null
  }
}
