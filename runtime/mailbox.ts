/**
 * The host side of one running agent's I/O (docs/ABI.md "Inbox", "Effects"): it takes messages into
 * the agent's inbox durably, wakes the tick loop, fires the agent's timer, performs its HTTP
 * requests once the tick that asked for them is checkpointed, and turns every outcome into an inbox
 * message. One per hosted agent, living where the agent's tick loop runs (a worker thread, or the
 * `igord run` process); single-threaded like the loop, so messages only enter between ticks.
 *
 * Durability: a message is numbered (`io.last + 1`), written to the spool (checkpoint/spool.ts) and
 * only then handed to the agent and acknowledged. After each checkpoint, spool files it covers are
 * pruned and new requests go out. {@link Mailbox.recover} (on start or resume) takes spooled and
 * dropped messages back and settles requests a crash left without outcome: safe ones are sent
 * again, unsafe ones that may have left are answered E_HTTP_IN_DOUBT. The same rule holds when a
 * loop stops and starts again in one process: an unsafe request with a journal mark and no outcome
 * is never sent again. Spool files and marks are pruned only after a checkpoint that holds what
 * they record (never at a loop start: what `recover` took back is in no checkpoint yet).
 */
import { createHash, randomBytes } from 'node:crypto'
import { IgordError } from '../checkpoint/errors.ts'
import { EXIT } from '../checkpoint/errors.ts'
import { MESSAGE_ID_BYTES } from '../checkpoint/io.ts'
import type { HttpRequestRecord, IoState, Message, OutboundMessage } from '../checkpoint/io.ts'
import { E_MSG_UNKNOWN, E_MSG_UNREACHABLE, signEnvelope } from '../checkpoint/envelope.ts'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import { verifyTopUp } from '../checkpoint/fund.ts'
import type { TopUp } from '../checkpoint/fund.ts'
import { EffectJournal, InboxSpool } from '../checkpoint/spool.ts'
import { E_HTTP_IN_DOUBT, isSafeMethod, performRequest } from '../hostcalls/http.ts'
import type { Agent } from './agent.ts'

/**
 * A message was refused (exit 11): the inbox is full, the message too large, or no agent of that
 * name is here (code `DELIVERY_REFUSED`). The message says which, e.g. `inbox of echo is full (256 messages)`.
 */
export class DeliveryRefused extends IgordError {
  constructor (message: string) {
    super(message, EXIT.REFUSED, 'DELIVERY_REFUSED')
    this.name = 'DeliveryRefused'
  }
}

/** What the sender of a message gives: everything but the seq, which the host assigns. */
export type Incoming = Omit<Message, 'seq'>

/** A 16-byte message id derived from text (outcomes and timer wake-ups get ids derived from what they answer). */
export function derivedId (text: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(text).digest().subarray(0, MESSAGE_ID_BYTES))
}

/** A fresh random 16-byte message id. */
export function newMessageId (): Uint8Array {
  return new Uint8Array(randomBytes(MESSAGE_ID_BYTES))
}

/**
 * A message id from its 32 hex digits (`igord send --id`).
 * @throws DeliveryRefused (exit 11) naming the bad value
 */
export function messageIdFrom (hex: string): Uint8Array {
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new DeliveryRefused(`message id must be 32 hex digits (16 bytes), got ${JSON.stringify(hex.slice(0, 40))}`)
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

/** The host's wall clock, ns since the Unix epoch (when a message was taken). */
export function nowNs (): bigint {
  return BigInt(Date.now()) * 1_000_000n
}

/**
 * Test-only crash points of an unsafe HTTP request (test/e2e-http.test.ts kills igord there):
 * `before-mark` — its tick is checkpointed, its journal mark not yet written; `after-mark` — the
 * mark is durable, the request has not left; `after-outcome` — its outcome is spooled, no
 * checkpoint holds it yet.
 */
export const MAILBOX_FAULT_STEPS = ['before-mark', 'after-mark', 'after-outcome'] as const
/** One of {@link MAILBOX_FAULT_STEPS}. */
export type MailboxFaultStep = typeof MAILBOX_FAULT_STEPS[number]

/**
 * Test-only hook called at each {@link MailboxFaultStep} with the step and a short description
 * (`poster request #1`). Always null in the shipped CLI: only test/faults.ts sets it, in a worker
 * started by a pool whose `injected.workerFaults` the test launcher test/igord-faulty.ts set.
 */
export const mailboxHooks: { step: ((step: MailboxFaultStep, what: string) => void) | null } = { step: null }

/** Options of {@link Mailbox}. */
export interface MailboxOptions {
  /** Data directory. */
  dir: string
  /** Agent name. */
  name: string
  /** This host's peer ID (to tell whether an unsafe request may have been sent by another host). */
  host: string
  /** Receives one-line notes (an outcome recorded, a request in doubt). */
  note? (line: string): void
  /**
   * Delivers a signed agent message (`message_send`) to its recipient, wherever it lives (the node's
   * router, p2p/node.ts `route`), and says how it went. `first`: no earlier message to that
   * recipient waits for an answer (several may be on their way at once; the router keeps them in
   * the order of the calls). Absent (`igord run`): every message bounces with E_MSG_UNKNOWN, as no
   * network is there to find its recipient.
   */
  send? (env: Envelope, first: boolean): Promise<SendOutcome>
  /** How long a message whose recipient's host cannot be reached is retried before it bounces, ms (default {@link RETRY_FOR_MS}). */
  retryForMs?: number
}

/** How long an undelivered message is retried (its host found but unreachable, or busy) before it bounces with E_MSG_UNREACHABLE, ms. */
export const RETRY_FOR_MS = 60_000

/** Backoff between retries of one message: 250 ms doubling up to this, ms. */
export const MAX_RETRY_BACKOFF_MS = 4000

/** How a wait for the next tick ended. */
export type Wake = 'message' | 'timer' | 'interval' | 'abort'

/** The host side of one agent's inbox, timer and HTTP requests (see the module doc). */
export class Mailbox {
  readonly agent: Agent
  readonly spool: InboxSpool
  readonly journal: EffectJournal
  readonly opts: MailboxOptions
  /** Requests being performed now, by id. */
  readonly inFlight = new Map<number, Promise<void>>()
  /** Messages (by number) being sent now or waiting for a retry, with the time of their first attempt (performance.now(), ms) and the retry timer. */
  readonly #outgoing = new Map<number, { to: string; since: number; timer: NodeJS.Timeout | null }>()
  #wake: (() => void) | null = null
  /** Ends the current {@link Mailbox.wait} as aborted; null between waits. */
  #abortWait: (() => void) | null = null
  /** Signals whose abort already calls {@link Mailbox.#abortWait} (one listener per signal, not one per wait), with that listener: removed by {@link Mailbox.close}. */
  readonly #hooked = new Map<AbortSignal, () => void>()
  #arrived = false
  #closed = false
  #abort = new AbortController()
  #saved: IoState

  /** @param agent restored from (or born into) its last checkpoint: its I/O state is the one that checkpoint holds */
  constructor (agent: Agent, opts: MailboxOptions) {
    this.agent = agent
    this.opts = opts
    this.#saved = agent.io
    this.spool = new InboxSpool(opts.dir, opts.name)
    this.journal = new EffectJournal(opts.dir, opts.name)
  }

  /** The inbox limits from the agent's manifest (hostcalls/manifest.ts `INBOX_LIMITS` when it sets none). */
  get limits (): { maxMessages: number; maxMessageBytes: number } {
    return this.agent.spec.manifest.inbox
  }

  /**
   * Takes a message into the inbox: refuses it when the inbox is full (counting `message` and
   * `fund` entries; HTTP outcomes, timer wake-ups, bounces and `room` messages are never refused) or the body is over
   * `max_message_bytes`; answers a message whose id the agent has already seen as a duplicate
   * (not stored again); otherwise numbers it, writes it to the spool (durable), hands it to the agent
   * and wakes the tick loop.
   * @returns its seq, and whether it was a duplicate (then seq is 0)
   * @throws DeliveryRefused with the reason; StorageError when it cannot be stored (nothing taken)
   */
  deliver (m: Incoming): { seq: number; duplicate: boolean } {
    const a = this.agent
    if (a.hasSeen(m.id)) return { seq: 0, duplicate: true }
    if (m.kind === 'fund') {
      const bad = verifyTopUp(m as TopUp, a.spec.identity.did)
      if (bad !== null) throw new DeliveryRefused(`top-up for ${this.opts.name} refused: ${bad}`)
    }
    if (m.kind === 'message' && !a.spec.manifest.capabilities.has('inbox')) throw new DeliveryRefused(`${this.opts.name} does not read messages (its manifest does not grant capability "inbox")`)
    if (m.kind === 'message' || m.kind === 'fund') {
      const lim = this.limits
      if (m.body.length > lim.maxMessageBytes) throw new DeliveryRefused(`message to ${this.opts.name} is ${m.body.length} bytes, over its max_message_bytes ${lim.maxMessageBytes}`)
      if (this.#full()) throw new DeliveryRefused(`inbox of ${this.opts.name} is full (${lim.maxMessages} messages waiting)`)
    }
    const msg: Message = { ...m, seq: a.io.last + 1 }
    this.spool.put(msg)
    this.#accept(msg)
    this.#arrived = true
    this.#wake?.()
    return { seq: msg.seq, duplicate: false }
  }

  /**
   * Takes back what a checkpoint does not hold: spooled messages past its `io.last` (numbered
   * before a crash), then drop files (`igord send --dir`); then settles the requests still without
   * outcome — an unsafe one that may have been sent (a journal mark, or the checkpoint was written by
   * another host) gets an E_HTTP_IN_DOUBT outcome, the others are sent again by {@link sendPending}.
   * @param writtenBy the `host` of the checkpoint resumed from
   * @param arrival the checkpoint came by migration: its source stopped for good and answered every
   *   unsafe request that may have left it (E_HTTP_IN_DOUBT, {@link resolveInDoubt}) before its final
   *   checkpoint, so the requests it holds never left and are sent from here
   * @throws CheckpointError for a corrupt spool file; StorageError
   */
  recover (writtenBy: string, arrival = false): void {
    const a = this.agent
    for (const m of this.spool.list(a.io.last)) {
      if (m.seq !== a.io.last + 1) break // a gap cannot happen (seqs are written in order); stop at it
      this.#accept(m)
    }
    this.ingestDrops()
    for (const r of [...a.io.requests]) {
      if (isSafeMethod(r.method)) continue
      if (this.journal.wasSent(r.id) || (writtenBy !== this.opts.host && !arrival)) this.#outcome(r, { status: E_HTTP_IN_DOUBT, headers: '', body: new Uint8Array(0) })
    }
  }

  /**
   * At a loop's end, after {@link close}: answers every unsafe request that may have left (its
   * journal mark exists) and has no outcome with E_HTTP_IN_DOUBT, so that the final checkpoint
   * holds only requests that never left — which a migration target may then send.
   */
  resolveInDoubt (): void {
    for (const r of [...this.agent.io.requests]) {
      if (!isSafeMethod(r.method) && this.journal.wasSent(r.id)) this.#outcome(r, { status: E_HTTP_IN_DOUBT, headers: '', body: new Uint8Array(0) })
    }
  }

  /**
   * Numbers and spools messages left as drop files, oldest first. While the inbox is full the rest
   * stay for later, in order; a drop refused for another reason (a top-up whose signature does not
   * verify, a body over the agent's limit) would never be taken, so it is set aside as `.bad-…`
   * (kept, with a note) instead of holding up the ones behind it.
   * @returns how many were taken (duplicates included)
   */
  ingestDrops (): number {
    let k = 0
    for (const { file, msg } of this.spool.drops()) {
      try {
        this.deliver({ ...msg })
        this.spool.removeDrop(file)
        k++
      } catch (e) {
        if (!(e instanceof DeliveryRefused)) throw e
        if (this.#full()) break // keep the rest for later, in order
        const to = this.spool.setAside(file)
        this.opts.note?.(`${this.opts.name}: drop file ${file} refused: ${e.message}; ${to === null ? 'left in place' : `set aside as ${to}`}`)
      }
    }
    return k
  }

  /** Hands a stored message to the agent: an outcome also ends its request, a bounce its outbox entry; a bounce or `room` ends {@link IoState.blocked}. */
  #accept (m: Message): void {
    if (m.kind === 'http') this.agent.acceptOutcome(m)
    else if (m.kind === 'bounce') this.agent.acceptBounce(m)
    else if (m.kind === 'room') this.agent.acceptRoom(m)
    else this.agent.accept(m)
  }

  /** True when `message` and `fund` entries waiting fill the inbox to its `max_inbox_messages`. */
  #full (): boolean {
    return this.agent.io.pending.filter((p) => p.kind === 'message' || p.kind === 'fund').length >= this.limits.maxMessages
  }

  /**
   * Waits for the next tick: until a message arrives, or the agent's timer (`sleep_until`) is due
   * (then a `timer` message is delivered), or — when the agent did not ask to sleep — `intervalMs`
   * passes; or the signal aborts. `pollMs` also ingests drop files that often (`igord run`).
   */
  async wait (intervalMs: number, signal?: AbortSignal, pollMs?: number): Promise<Wake> {
    if (this.#arrived) { this.#arrived = false; return 'message' }
    const sleep = this.agent.io.sleep
    let delay: number | null = intervalMs
    if (sleep === 0n) delay = null
    else if (sleep !== null) {
      const now = this.agent.spec.inputs.now()
      // rounded up: the agent must not wake (and read its clock) before the time it asked for
      delay = sleep <= now ? 0 : Math.min(Number((sleep - now + 999_999n) / 1_000_000n), 2 ** 31 - 1)
    }
    const woke = await new Promise<Wake>((resolve) => {
      let timer: NodeJS.Timeout | undefined
      let pollTimer: NodeJS.Timeout | undefined
      const done = (w: Wake): void => {
        clearTimeout(timer); clearTimeout(pollTimer)
        this.#wake = null
        this.#abortWait = null
        resolve(w)
      }
      if (signal?.aborted === true) { done('abort'); return }
      if (signal !== undefined && !this.#hooked.has(signal)) {
        // a loop waits on the same signal at every idle tick: one listener for all its waits
        const onAbort = (): void => this.#abortWait?.()
        this.#hooked.set(signal, onAbort)
        signal.addEventListener('abort', onAbort, { once: true })
      }
      this.#abortWait = () => done('abort')
      this.#wake = () => done('message')
      if (delay !== null) {
        // Node may run a timer up to a millisecond before its delay on the monotonic clock (it
        // counts from the loop's cached time): re-arm for what is left until `due` has passed.
        const due = performance.now() + delay
        const arm = (ms: number): void => {
          timer = setTimeout(() => {
            const left = due - performance.now()
            if (left > 0) arm(Math.ceil(left))
            else done(sleep === null ? 'interval' : 'timer')
          }, ms)
        }
        arm(delay)
      }
      if (pollMs !== undefined) {
        const poll = (): void => {
          try { if (this.ingestDrops() > 0) return } catch (e) { this.opts.note?.(`${this.opts.name}: drop files: ${(e as Error).message}`) }
          pollTimer = setTimeout(poll, pollMs)
        }
        pollTimer = setTimeout(poll, pollMs)
      }
    })
    this.#arrived = false
    if (woke === 'timer' && sleep !== null && sleep > 0n) {
      this.deliver({ id: derivedId(`${this.agent.spec.identity.did}/timer/${sleep}`), kind: 'timer', from: 'timer', time: this.agent.spec.inputs.now(), body: new Uint8Array(0), at: sleep })
      this.#arrived = false
    }
    return woke
  }

  /**
   * The I/O state of the agent's last durable checkpoint (the one it was restored from, or the
   * last one reported by {@link afterCheckpoint}). `agent.io` differs from it (by identity) when
   * messages, outcomes or recovered spool entries were taken since: only the spool holds them then.
   */
  get saved (): IoState { return this.#saved }

  /**
   * Call after every durable checkpoint: `io` is the I/O state that checkpoint holds (default the
   * agent's current one; a group commit passes the one it wrote, since messages and outcomes may
   * have been taken while its sync was pending). Prunes the spool up to the checkpoint's `io.last`
   * and the journal to the requests it still holds, then starts every pending request not in flight.
   */
  afterCheckpoint (io: IoState = this.agent.io): void {
    this.#saved = io
    this.spool.prune(io.last)
    this.journal.prune(new Set(io.requests.map((r) => r.id)))
    this.sendPending()
  }

  /**
   * Sends every message of the outbox not being sent (unless closed): signed with the agent's key,
   * handed to {@link MailboxOptions.send}. Delivered (or a duplicate): it leaves the outbox (the next
   * checkpoint records that). Refused for good: it comes back as a `bounce` inbox message with the
   * reason. Otherwise retried with backoff, for {@link RETRY_FOR_MS} at most, then bounced.
   * A recipient gets an agent's messages in the order it sent them: they are handed over in outbox
   * order, all at once (the router keeps that order on the wire); when one comes back to be tried
   * again, the later ones to that recipient wait until it is delivered or bounced (each of them that
   * came back too is sent again after it, as new).
   */
  sendOutbox (): void {
    if (this.#closed) return
    const waiting = new Set<string>() // recipients with a message waiting for its retry
    for (const e of this.#outgoing.values()) if (e.timer !== null) waiting.add(e.to)
    const earlier = new Set<string>() // recipients with an earlier message still in the outbox
    const outbox = this.agent.io.outbox
    for (const o of outbox) {
      const first = !earlier.has(o.to)
      earlier.add(o.to)
      if (this.#outgoing.has(o.n) || waiting.has(o.to)) continue
      // a message that bounced at once (no network) ran this again and left the outbox meanwhile
      if (this.agent.io.outbox !== outbox && !this.agent.io.outbox.some((x) => x.n === o.n)) continue
      this.#transmit(o, performance.now(), 0, first)
    }
  }

  #transmit (o: OutboundMessage, since: number, attempt: number, first: boolean): void {
    const entry = { to: o.to, since, timer: null as NodeJS.Timeout | null }
    this.#outgoing.set(o.n, entry)
    const send = this.opts.send
    if (send === undefined) { this.#bounce(o, E_MSG_UNKNOWN, 'this host has no network to find the recipient (igord run routes no messages)'); return }
    let env: Envelope
    try { env = signEnvelope(this.agent.spec.identity, o) } catch (e) { this.#bounce(o, E_MSG_UNKNOWN, (e as Error).message); return }
    send(env, first).then((out) => {
      if (this.#closed || this.#outgoing.get(o.n) !== entry) return // stopped: the message stays in the outbox and is sent again
      if (!this.agent.io.outbox.some((x) => x.n === o.n)) { this.#outgoing.delete(o.n); return }
      if (out.ok) {
        this.#outgoing.delete(o.n)
        this.#acknowledged(o)
        this.sendOutbox() // the ones that waited behind it
        return
      }
      const retryFor = this.opts.retryForMs ?? RETRY_FOR_MS
      if (!out.retry) { this.#bounce(o, out.code, out.reason); return }
      if (this.agent.io.outbox.some((x) => x.to === o.to && x.n < o.n)) {
        // an earlier message to that recipient is on its way or waits: this one goes again after it
        this.#outgoing.delete(o.n)
        return
      }
      if (performance.now() - since >= retryFor) { this.#bounce(o, E_MSG_UNREACHABLE, `not delivered within ${Math.round(retryFor / 1000)} s: ${out.reason}`); return }
      entry.timer = setTimeout(() => {
        if (this.#closed || this.#outgoing.get(o.n) !== entry) return
        if (!this.agent.io.outbox.some((x) => x.n === o.n)) { this.#outgoing.delete(o.n); return }
        this.#transmit(o, since, attempt + 1, true)
        this.sendOutbox() // the later ones to that recipient, behind it
      }, Math.min(MAX_RETRY_BACKOFF_MS, 250 * 2 ** attempt))
    }, (e: unknown) => {
      this.#outgoing.delete(o.n)
      if (!this.#closed) this.opts.note?.(`${this.opts.name}: message #${o.n}: ${(e as Error).message}`)
    })
  }

  /**
   * Message `o` was taken by its recipient's host: it leaves the outbox, and when the agent is
   * {@link IoState.blocked} (a `message_send` found the outbox full), a `room` inbox message (id
   * derived from the message's; `req` its number, `from` its recipient) wakes it. The `room`
   * message is an input like any other (spooled, recorded when read), so replay needs no acks.
   */
  #acknowledged (o: OutboundMessage): void {
    this.agent.acknowledge(o.n)
    if (!this.agent.io.blocked) return
    try {
      this.deliver({ id: derivedId(`${this.agent.spec.identity.did}/room/${o.n}`), kind: 'room', from: o.to, time: this.agent.spec.inputs.now(), body: new Uint8Array(0), req: o.n })
    } catch (e) {
      this.opts.note?.(`${this.opts.name}: message #${o.n}: cannot record that the outbox has room: ${(e as Error).message}`)
    }
  }

  /** Message `o` came back undelivered: a `bounce` inbox message (id derived from the message's) takes it out of the outbox. */
  #bounce (o: OutboundMessage, code: number, reason: string): void {
    this.#outgoing.delete(o.n)
    try {
      this.deliver({ id: derivedId(`${this.agent.spec.identity.did}/bounce/${o.n}`), kind: 'bounce', from: o.to, time: this.agent.spec.inputs.now(), body: new Uint8Array(Buffer.from(reason.slice(0, 1000))), req: o.n, status: code })
      this.opts.note?.(`${this.opts.name}: message #${o.n} to ${o.to} came back: ${reason}`)
    } catch (e) {
      this.opts.note?.(`${this.opts.name}: message #${o.n}: cannot record that it bounced: ${(e as Error).message}`)
    }
    this.sendOutbox()
  }

  /**
   * Starts every pending request not in flight (unless closed): at the start of a loop, for the
   * requests the checkpoint it resumes holds without outcome. Prunes nothing: what {@link recover}
   * took back (spooled messages, E_HTTP_IN_DOUBT outcomes) is in no checkpoint yet, so its spool
   * files and journal marks must stay until one holds it.
   */
  sendPending (): void {
    if (this.#closed) return
    for (const r of this.agent.io.requests) if (!this.inFlight.has(r.id)) this.#perform(r)
    this.sendOutbox()
  }

  #perform (r: HttpRequestRecord): void {
    const policy = this.agent.spec.manifest.http
    if (policy == null) return
    if (!isSafeMethod(r.method)) {
      // marked and still without outcome: it left before (a loop that stopped with it in flight and
      // started again in this process, e.g. after a failed migration) and must not leave twice
      if (this.journal.wasSent(r.id)) { this.#outcome(r, { status: E_HTTP_IN_DOUBT, headers: '', body: new Uint8Array(0) }); return }
      mailboxHooks.step?.('before-mark', `${this.opts.name} request #${r.id}`)
      this.journal.markSent(r.id) // durable before the first byte leaves
      mailboxHooks.step?.('after-mark', `${this.opts.name} request #${r.id}`)
    }
    const p = performRequest(policy, r, { signal: this.#abort.signal }).then((out) => {
      this.inFlight.delete(r.id)
      if (this.#closed) return // stopped: the outcome is not recorded (safe: sent again; unsafe: in doubt)
      this.#outcome(r, out)
      mailboxHooks.step?.('after-outcome', `${this.opts.name} request #${r.id} status ${out.status}`)
    }, (e: unknown) => {
      this.inFlight.delete(r.id)
      if (!this.#closed) this.opts.note?.(`${this.opts.name}: request #${r.id}: ${(e as Error).message}`)
    })
    this.inFlight.set(r.id, p)
  }

  #outcome (r: HttpRequestRecord, out: { status: number; headers: string; body: Uint8Array }): void {
    if (!this.agent.io.requests.some((q) => q.id === r.id)) return // already answered
    try {
      this.deliver({ id: derivedId(r.key), kind: 'http', from: 'http', time: this.agent.spec.inputs.now(), body: out.body, req: r.id, status: out.status, headers: out.headers })
    } catch (e) {
      this.opts.note?.(`${this.opts.name}: request #${r.id}: cannot record its outcome: ${(e as Error).message}`)
    }
  }

  /** Waits (at most `ms`) for the requests in flight, e.g. before a migration's final checkpoint. */
  async settle (ms: number): Promise<void> {
    if (this.inFlight.size === 0) return
    let t: NodeJS.Timeout | undefined
    await Promise.race([Promise.allSettled([...this.inFlight.values()]), new Promise<void>((resolve) => { t = setTimeout(resolve, ms) })])
    clearTimeout(t)
  }

  /** Call before each tick: messages that arrived until now are the tick's to read, so they need not wake the loop again. */
  beforeTick (): void {
    this.#arrived = false
  }

  /** (Re)opens for a tick loop: requests may go out again (a loop closes its mailbox when it ends). */
  open (): void {
    if (!this.#closed) return
    this.#closed = false
    this.#abort = new AbortController()
  }

  /** Stops: no new request goes out, requests in flight are aborted and their outcomes not recorded. */
  close (): void {
    this.#closed = true
    this.#abort.abort()
    for (const e of this.#outgoing.values()) if (e.timer !== null) clearTimeout(e.timer)
    this.#outgoing.clear()
    this.#wake?.()
    for (const [signal, onAbort] of this.#hooked) signal.removeEventListener('abort', onAbort)
    this.#hooked.clear()
  }
}
