/**
 * The tick loop of one agent (DESIGN §6): ticks every `intervalMs` (at once after a tick that
 * returned 1), charges fuel to the budget, pauses after repeated failures or when the budget is
 * exhausted, retires the agent when it returns 2, and writes a signed checkpoint after ticks —
 * at most once per `checkpointEveryMs` while the agent keeps asking for more work, and always
 * when it stops (including on abort: SIGINT/SIGTERM).
 */
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises'
import type { Identity } from '../checkpoint/identity.ts'
import type { CheckpointHeader, Status } from '../checkpoint/header.ts'
import type { CheckpointWriter, WriteArgs, WrittenCheckpoint } from '../checkpoint/writer.ts'
import { groupCommit, type GroupCommit } from '../checkpoint/group-commit.ts'
import { encodeIo, isEmptyIo } from '../checkpoint/io.ts'
import { TICK } from './agent.ts'
import type { Agent, TickResult } from './agent.ts'
import type { Mailbox } from './mailbox.ts'

/** Where the loop's checkpoints go and how they are linked. */
export interface Lineage {
  writer: CheckpointWriter
  identity: Identity
  /** Original wasm and manifest bytes, carried by every live checkpoint. */
  wasm: Uint8Array
  manifest: Uint8Array
  /** Peer ID of this host. */
  host: string
  /** Authority epoch (DESIGN §9). */
  epoch: number
  /** CID of the last checkpoint's header bytes; null before genesis. */
  prev: string | null
  /** Tick of the last checkpoint written; -1 before genesis. */
  lastTick: number
}

/** Options of {@link runLoop}. */
export interface LoopOptions {
  /** Pause between an idle tick (0) and the next, ms. */
  intervalMs: number
  /** Stop (status `running`) after this many ticks in this session; unlimited when undefined. */
  maxTicks?: number
  /** While the agent returns 1, checkpoint at most this often, ms (default 1000). */
  checkpointEveryMs?: number
  /**
   * While the agent is idle (its tick returned 0), checkpoint at most this often, ms; 0 (default):
   * after every idle tick. A tick with an effect (an HTTP request, a message) is checkpointed at
   * once whatever this says, and so is the last tick before a wait that ends past this deadline
   * or may hibernate the agent. What it trades: a crash (kill -9, power cut) loses up to this much
   * of an idle agent's ticks; they never happened — the restarted agent runs them again from its
   * last checkpoint, reading the same inbox messages (docs/RATIONALE.md "Idle checkpoints").
   */
  idleCheckpointEveryMs?: number
  /** Aborting ends the loop after the current tick with a final checkpoint. */
  signal?: AbortSignal
  /** Called after every tick. */
  onTick? (r: TickResult): void
  /** Called after every checkpoint written. */
  onCheckpoint? (header: CheckpointHeader, cid: string): void
  /**
   * When true (a node that can migrate agents), a tick in which the agent called
   * `migrate_request` ends the loop, after that tick's checkpoint, with {@link LoopEnd.migrate}.
   * Otherwise such requests are only recorded in the event log and the agent keeps running here.
   */
  acceptMigration?: boolean
  /**
   * The agent's inbox, timer and HTTP requests (runtime/mailbox.ts). With it, an idle agent waits
   * for its next message, its `sleep_until` time or the interval, whichever comes first; requests
   * go out after the checkpoint of the tick that issued them (which is written at once). Without
   * it (replay-like uses) the loop sleeps `intervalMs` after an idle tick.
   */
  mailbox?: Mailbox
  /** With a mailbox: also take drop files (`igord send --dir`) this often, ms (`igord run`). */
  pollDropsMs?: number
  /**
   * With a mailbox: an agent that has waited `afterMs` for its next tick (its timer, a message or
   * the interval) is hibernated by `hibernate()` — called only when its last tick is checkpointed;
   * the next tick wakes it. Never armed for a wait that ends sooner by itself (an interval or a
   * `sleep_until` time within `afterMs`), so an agent ticking that often stays resident.
   */
  hibernate?: { afterMs: number; hibernate (): void }
  /**
   * How checkpoints are made durable: through this group commit (default: the thread's,
   * checkpoint/group-commit.ts `groupCommit`), their live records' fdatasyncs shared with other
   * agents' checkpoints of the thread; null: each synced on the thread before the loop goes on.
   */
  commit?: GroupCommit | null
}

/** How a loop ended. */
export interface LoopEnd {
  status: Status
  reason?: string
  /** Ticks run in this session. */
  ticks: number
  /** Set when the loop ended because the agent asked to move (see {@link LoopOptions.acceptMigration}). */
  migrate?: { target: string | null }
}

/**
 * The header's `time` (Unix ms), read from the agent's input clock rather than `Date.now()`: real
 * time in live runs, simulated time under `--sim-seed`, so a simulated life writes the same bytes in
 * every run and after every resume. Falls back to `Date.now()` if the source's clock is out of range.
 */
function headerTime (agent: Agent): number {
  const ms = agent.spec.inputs.now() / 1_000_000n
  return ms >= 0n && ms <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(ms) : Date.now()
}

/**
 * The writer's arguments for a checkpoint of the agent's committed state with `status` (`running`
 * becomes `exhausted` when the budget is zero), linked to `lineage.prev`. Takes the event log
 * recorded since the previous checkpoint as its segment; the header carries the agent's price
 * (`agent.spec.price`) and the input clock's time.
 */
function checkpointArgs (agent: Agent, lineage: Lineage, status: Status, extra: { reason?: string; target?: string }): WriteArgs {
  // A running agent with nothing left to spend is exhausted, whichever step spent the last microcent.
  if (status === 'running' && agent.budget === 0n) {
    status = 'exhausted'
    extra = { ...extra, reason: 'budget exhausted' }
  }
  return {
    identity: lineage.identity,
    wasm: lineage.wasm,
    manifest: lineage.manifest,
    snapshot: agent.checkpointState(),
    tick: agent.tick,
    epoch: lineage.epoch,
    prev: lineage.prev,
    fuel: agent.fuel,
    budget: agent.budget,
    price: agent.spec.price,
    host: lineage.host,
    time: headerTime(agent),
    status,
    ...extra,
    log: agent.log.takeSegment(),
    io: isEmptyIo(agent.io) ? null : encodeIo(agent.io),
  }
}

/**
 * Writes a checkpoint of the agent's committed state with `status` (`running` becomes `exhausted`
 * when the budget is zero), linked to `lineage.prev`, and advances the lineage. The event log recorded since the previous checkpoint becomes its segment;
 * the header carries the agent's price (`agent.spec.price`) and the input clock's time.
 * @throws StorageError when the files cannot be written (the previous checkpoint stays intact)
 */
export function writeCheckpoint (agent: Agent, lineage: Lineage, status: Status, extra: { reason?: string; target?: string } = {}): WrittenCheckpoint {
  const written = lineage.writer.write(checkpointArgs(agent, lineage, status, extra))
  lineage.prev = written.cid
  lineage.lastTick = agent.tick
  return written
}

/**
 * {@link writeCheckpoint} through a group commit (checkpoint/group-commit.ts): the checkpoint is
 * taken and written now, and the promise settles — the lineage advanced — once it is durable, its
 * live record's fdatasync shared with the other checkpoints of the thread begun meanwhile. The agent
 * must not tick, and nothing of its ticks may be shown, before it settles.
 * @throws (rejects) StorageError as {@link writeCheckpoint}, or when a sync of its batch failed
 */
export async function commitCheckpoint (agent: Agent, lineage: Lineage, status: Status, extra: { reason?: string; target?: string } = {}, group: GroupCommit = groupCommit): Promise<WrittenCheckpoint> {
  const tick = agent.tick
  const written = await group.commit(lineage.writer, checkpointArgs(agent, lineage, status, extra))
  lineage.prev = written.cid
  lineage.lastTick = tick
  return written
}

/**
 * Ms until an idle agent's next tick comes by itself: its `sleep_until` time (Infinity for
 * `sleep_until(0)`: only a message wakes it), or `intervalMs` when it did not ask to sleep.
 */
export function nextTickInMs (agent: Agent, intervalMs: number): number {
  const sleep = agent.io.sleep
  if (sleep === null) return intervalMs
  if (sleep === 0n) return Infinity
  const left = sleep - agent.spec.inputs.now()
  return left <= 0n ? 0 : Number(left / 1_000_000n)
}

/** How long a stopping loop waits for HTTP requests in flight before its final checkpoint, ms. */
export const SETTLE_MS = 1000

/** Runs the agent until it finishes, pauses, exhausts its budget, reaches `maxTicks` or is aborted. */
export async function runLoop (agent: Agent, lineage: Lineage, opts: LoopOptions): Promise<LoopEnd> {
  const every = opts.checkpointEveryMs ?? 1000
  const idleEvery = opts.idleCheckpointEveryMs ?? 0
  const maxFailures = agent.spec.manifest.maxFailures
  let lastWrite = performance.now()
  let ticks = 0
  let status: Status = 'running'
  let reason: string | undefined
  let migrate: LoopEnd['migrate']
  const mailbox = opts.mailbox
  // the I/O state is replaced, never changed in place, so identity tells a change; with a mailbox,
  // what it recovered (spooled messages, in-doubt outcomes) is not in the checkpoint yet
  let savedIo = mailbox?.saved ?? agent.io
  // the checkpoint is durable before anything of its ticks is shown: its messages and HTTP
  // requests leave, the status is told, and the next tick runs only once the commit settled
  const save = async (s: Status, why?: string): Promise<void> => {
    const io = agent.io // messages delivered while the commit is pending are not in it
    const extra = why === undefined ? {} : { reason: why }
    const { header, cid } = opts.commit === null ? writeCheckpoint(agent, lineage, s, extra) : await commitCheckpoint(agent, lineage, s, extra, opts.commit)
    savedIo = io
    lastWrite = performance.now()
    mailbox?.afterCheckpoint(io)
    opts.onCheckpoint?.(header, cid)
  }
  // an idle wait: the mailbox's, with the hibernation timer armed when the wait may outlast it
  const idleWait = async (m: Mailbox): Promise<void> => {
    const h = opts.hibernate
    let timer: NodeJS.Timeout | undefined
    if (h !== undefined && nextTickInMs(agent, opts.intervalMs) > h.afterMs) {
      timer = setTimeout(() => {
        try { if (agent.tick === lineage.lastTick && !agent.dirty) h.hibernate() } catch { /* it stays resident */ }
      }, h.afterMs)
    }
    try { await m.wait(opts.intervalMs, opts.signal, opts.pollDropsMs) } finally { clearTimeout(timer) }
  }
  // an idle tick is checkpointed unless the idle policy defers it: its next tick comes before the
  // deadline, and the wait cannot hibernate the agent (which needs its last tick checkpointed)
  const idleDue = (): boolean => {
    if (idleEvery <= 0) return true
    const wait = mailbox === undefined ? opts.intervalMs : nextTickInMs(agent, opts.intervalMs)
    if (opts.hibernate !== undefined && wait > opts.hibernate.afterMs) return true
    return performance.now() + wait - lastWrite >= idleEvery
  }
  mailbox?.open()
  mailbox?.sendPending() // requests a resumed checkpoint holds without outcome go out now (nothing pruned before a checkpoint)
  // An agent resumed (or restarted, or arrived) asleep — its last tick asked `sleep_until` — with
  // nothing in its inbox sleeps on: its next tick comes at its time or with a message, as if it
  // had never stopped (sleep_until(0): only a message wakes it).
  if (mailbox !== undefined && agent.io.sleep !== null && agent.io.pending.length === 0 && opts.maxTicks !== 0) {
    await idleWait(mailbox)
  }
  for (;;) {
    if (opts.signal?.aborted) break
    if (opts.maxTicks !== undefined && ticks >= opts.maxTicks) break
    mailbox?.beforeTick()
    const r = agent.runTick()
    if (r === null) { status = 'exhausted'; reason = 'budget exhausted'; break }
    ticks++
    opts.onTick?.(r)
    if (r.trap !== null && agent.failures >= maxFailures) {
      status = 'paused'
      reason = `${agent.failures} consecutive failed ticks, last at tick ${r.tick}: ${r.trap}`
      break
    }
    if (r.result === TICK.FINISHED) {
      status = 'finished'
      if (r.exitCode !== undefined) reason = `proc_exit(${r.exitCode})` // WASI exit
      break
    }
    if (agent.budget === 0n) { status = 'exhausted'; reason = 'budget exhausted'; break }
    if (agent.migrationRequest !== null && opts.acceptMigration === true) { migrate = agent.migrationRequest; break }
    const more = r.result === TICK.MORE
    // segmentFull bounds the records held; new requests and messages go out only once their tick is checkpointed
    if ((more ? performance.now() - lastWrite >= every : idleDue()) || agent.log.segmentFull || agent.newRequests.length > 0 || agent.newMessages.length > 0) await save('running')
    if (opts.signal?.aborted) break
    if (opts.maxTicks !== undefined && ticks >= opts.maxTicks) break // do not wait for a tick that will not run
    if (more) await yieldToEventLoop()
    else if (mailbox !== undefined) await idleWait(mailbox)
    else {
      try { await sleep(opts.intervalMs, undefined, { signal: opts.signal }) } catch { /* aborted */ }
    }
  }
  if (mailbox !== undefined) {
    // outcomes of requests about to complete go into the final checkpoint; the rest are aborted
    // (a safe request is sent again on resume, an unsafe one that may have left is "in doubt")
    await mailbox.settle(SETTLE_MS)
    mailbox.close()
    mailbox.resolveInDoubt() // the final checkpoint then holds only requests that never left
  }
  // A final checkpoint for ticks not yet saved, or to record why the agent stopped, or for messages
  // taken into its inbox since (a checkpoint at the same tick with the same state: docs/FORMAT.md).
  // Nothing is written when neither changed.
  if (agent.tick !== lineage.lastTick || agent.io !== savedIo) await save(status, reason)
  return { status, ...(reason === undefined ? {} : { reason }), ticks, ...(migrate === undefined ? {} : { migrate }) }
}
