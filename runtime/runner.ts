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
import type { CheckpointWriter } from '../checkpoint/writer.ts'
import { TICK } from './agent.ts'
import type { Agent, TickResult } from './agent.ts'

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
  /** Aborting ends the loop after the current tick with a final checkpoint. */
  signal?: AbortSignal
  /** Called after every tick. */
  onTick? (r: TickResult): void
  /** Called after every checkpoint written. */
  onCheckpoint? (header: CheckpointHeader, cid: string): void
}

/** How a loop ended. */
export interface LoopEnd {
  status: Status
  reason?: string
  /** Ticks run in this session. */
  ticks: number
}

/**
 * Writes a checkpoint of the agent's committed state with `status` (`running` becomes `exhausted`
 * when the budget is zero), linked to `lineage.prev`, and advances the lineage. The event log recorded since the previous checkpoint becomes its segment.
 * @throws StorageError when the files cannot be written (the previous checkpoint stays intact)
 */
export function writeCheckpoint (agent: Agent, lineage: Lineage, status: Status, extra: { reason?: string; target?: string } = {}): { header: CheckpointHeader; cid: string } {
  // A running agent with nothing left to spend is exhausted, whichever step spent the last microcent.
  if (status === 'running' && agent.budget === 0n) {
    status = 'exhausted'
    extra = { ...extra, reason: 'budget exhausted' }
  }
  const { header, cid } = lineage.writer.write({
    identity: lineage.identity,
    wasm: lineage.wasm,
    manifest: lineage.manifest,
    snapshot: agent.checkpointState(),
    tick: agent.tick,
    epoch: lineage.epoch,
    prev: lineage.prev,
    fuel: agent.fuel,
    budget: agent.budget,
    host: lineage.host,
    status,
    ...extra,
    log: agent.log.takeSegment(),
  })
  lineage.prev = cid
  lineage.lastTick = agent.tick
  return { header, cid }
}

/** Runs the agent until it finishes, pauses, exhausts its budget, reaches `maxTicks` or is aborted. */
export async function runLoop (agent: Agent, lineage: Lineage, opts: LoopOptions): Promise<LoopEnd> {
  const every = opts.checkpointEveryMs ?? 1000
  const maxFailures = agent.spec.manifest.maxFailures
  let lastWrite = performance.now()
  let ticks = 0
  let status: Status = 'running'
  let reason: string | undefined
  const save = (s: Status, why?: string) => {
    const { header, cid } = writeCheckpoint(agent, lineage, s, why === undefined ? {} : { reason: why })
    lastWrite = performance.now()
    opts.onCheckpoint?.(header, cid)
  }
  for (;;) {
    if (opts.signal?.aborted) break
    if (opts.maxTicks !== undefined && ticks >= opts.maxTicks) break
    const r = agent.runTick()
    if (r === null) { status = 'exhausted'; reason = 'budget exhausted'; break }
    ticks++
    opts.onTick?.(r)
    if (r.trap !== null && agent.failures >= maxFailures) {
      status = 'paused'
      reason = `${agent.failures} consecutive failed ticks, last at tick ${r.tick}: ${r.trap}`
      break
    }
    if (r.result === TICK.FINISHED) { status = 'finished'; break }
    if (agent.budget === 0n) { status = 'exhausted'; reason = 'budget exhausted'; break }
    const more = r.result === TICK.MORE
    if (!more || performance.now() - lastWrite >= every) save('running')
    if (opts.signal?.aborted) break
    if (more) await yieldToEventLoop()
    else {
      try { await sleep(opts.intervalMs, undefined, { signal: opts.signal }) } catch { /* aborted */ }
    }
  }
  // A final checkpoint for ticks not yet saved, or to record why the agent stopped. Nothing is
  // written when no tick ran since the last checkpoint (ticks must strictly increase).
  if (agent.tick !== lineage.lastTick) save(status, reason)
  return { status, ...(reason === undefined ? {} : { reason }), ticks }
}
