/**
 * The entry point of one tick worker thread (runtime/pool.ts): it holds several hosted agents
 * (each an in-process {@link Agent} with its checkpoint lineage, as runtime/session.ts makes them)
 * and runs their tick loops (`runLoop`, runtime/runner.ts) on its own event loop, so that no tick
 * ever runs on the thread that serves control requests, signals and libp2p.
 *
 * Protocol (structured-clone messages, see {@link WorkerRequest} / {@link WorkerMessage}): the main
 * thread sends requests carrying `re` (a request number) and `id` (the agent's number in the pool);
 * the worker answers each with `{ re, ok: true, value }` or `{ re, ok: false, error }` and pushes
 * events (`emit`: an agent's log line; `status`: tick/fuel/budget/failures/epoch; `tick`: a failed
 * tick) without `re`. A `run` request is answered when the loop ends.
 *
 * Watchdog: while an agent's guest code runs (a tick, or the start function, `_initialize` and
 * `agent_init` of a birth or restore), the worker stores in the shared `Int32Array` passed as
 * `workerData.busy` the agent's id (`busy[0]`), the number of the tick being run (`busy[2]`, the
 * agent's tick + 1) and its consecutive failures before it (`busy[3]`), and bumps `busy[1]` at
 * every start and end; the main thread terminates the worker when the same busy mark stays longer
 * than the tick timeout (worker.terminate() interrupts running wasm). Nothing but guest code runs
 * under the mark, so a terminated worker never leaves a half-written file.
 */
import { gcAgent } from '../checkpoint/gc.ts'
import * as path from 'node:path'
import { parentPort, workerData } from 'node:worker_threads'
import { IgordError } from '../checkpoint/errors.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { headerCid, decodeHeader } from '../checkpoint/header.ts'
import { identityFromSeed } from '../checkpoint/identity.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import { readLive } from '../checkpoint/live.ts'
import { stateRoot } from '../checkpoint/state.ts'
import { CheckpointWriter } from '../checkpoint/writer.ts'
import type { CheckpointHeader, Status } from '../checkpoint/header.ts'
import type { TickRecord } from '../hostcalls/eventlog.ts'
import { decodeIo, encodeIo, isEmptyIo } from '../checkpoint/io.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { Agent } from './agent.ts'
import { Mailbox } from './mailbox.ts'
import { reclaimSoon } from './reclaim.ts'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import type { Incoming } from './mailbox.ts'
import type { TickResult } from './agent.ts'
import { loadHostIdentity } from './host.ts'
import { liveInputs, simulatedInputs } from './inputs.ts'
import { loadInstrumented } from './code-cache.ts'
import { isComponent, loadComponent } from './component.ts'
import { preparedKey, replaySegment, Replayer } from './replay.ts'
import type { PreparedReplay, PrepareStart, ReplayStart } from './replay.ts'
import { runLoop, writeCheckpoint } from './runner.ts'
import type { LoopEnd, LoopOptions } from './runner.ts'
import type { Session } from './session.ts'
import { codeCacheOf, livePath, resumeAgent, startAgent } from './session.ts'

/**
 * Host settings of an agent in a worker: data directory, price (microcents per million fuel),
 * optional simulation seed; `quiet`: the host drops the agent's log lines and notes, so the worker
 * does not send them (a message to the main thread per line: ~10% of an idle heartbeat's tick).
 */
export interface WorkerSettings { dir: string; price: bigint; simSeed?: string; quiet?: boolean }

/**
 * Loop options that cross the thread boundary (see {@link LoopOptions}; ms). `hibernateAfterMs`:
 * an agent idle that long is hibernated (LoopOptions `hibernate`: its instance and memory dropped,
 * restored from its live checkpoint file on wake); absent: never.
 */
export interface WorkerLoopOptions { intervalMs: number; maxTicks?: number; checkpointEveryMs?: number; idleCheckpointEveryMs?: number; acceptMigration?: boolean; pollDropsMs?: number; hibernateAfterMs?: number }

/**
 * What the main thread mirrors of a hosted agent: `tick`, lifetime `fuel`, `budget` (microcents),
 * consecutive `failures`, authority `epoch`, `lastTick` (tick of the last checkpoint written), and
 * `hibernated` (its instance and memory are dropped until its next tick: runtime/agent.ts `hibernate`).
 */
export interface AgentStatus {
  tick: number; fuel: bigint; budget: bigint; failures: number; epoch: number; lastTick: number; hibernated: boolean
  /** totals of the checkpoints written since the agent was loaded in its worker (checkpoint/writer.ts `totals`: count, ms, bytes) */
  checkpoints?: { count: number; ms: number; bytes: number }
}

/**
 * Facts of a hosted agent, sent when it is created in a worker: its name, DID, this host's peer ID
 * (empty before an adopted arrival is installed), live file path, history directory (empty
 * before install), status and manifest bytes.
 */
export interface AgentFacts { name: string; did: string; host: string; ckptPath: string; historyDir: string; status: AgentStatus; manifest: Uint8Array }

/** A request from the main thread. `re` numbers the answer; `id` names the agent in the pool. */
export type WorkerRequest =
  | { t: 'birth'; re: number; id: number; settings: WorkerSettings; a: { name: string; wasm: Uint8Array; wasmFile: string; manifest: Uint8Array; manifestFile: string; budget: bigint } }
  | { t: 'resume'; re: number; id: number; settings: WorkerSettings; file: string; failures: number }
  | { t: 'adopt'; re: number; id: number; settings: WorkerSettings; name: string; live: LiveCheckpoint }
  | { t: 'install'; re: number; id: number; live: LiveCheckpoint }
  | { t: 'link'; re: number; id: number; header: Uint8Array; sig: Uint8Array }
  | { t: 'run'; re: number; id: number; opts: WorkerLoopOptions }
  | { t: 'stop'; id: number }
  | { t: 'checkpoint'; re: number; id: number; status: Status; extra: { reason?: string; target?: string } }
  | { t: 'last'; re: number; id: number }
  | { t: 'forge'; re: number; id: number }
  | { t: 'gc'; re: number; id: number; opts: { keepEvery: number; keepLast: number; maxPacks?: number; dryRun?: boolean } }
  | { t: 'drop'; re: number; id: number }
  | { t: 'replay'; re: number; id: number; start: ReplayStart; records: readonly TickRecord[]; next: CheckpointHeader }
  | { t: 'code'; re: number; id: number; wasm: Uint8Array; memoryLimitPages: number; dir: string; prepare?: { start: PrepareStart; pages: number[] } }
  | { t: 'deliver'; re: number; id: number; msg: Incoming }
  | { t: 'deliverMany'; re: number; id: number; msgs: Incoming[] }
  | { t: 'sent'; ref: number; outcome: SendOutcome }

/**
 * The outcome of one message of a `deliverMany` request: taken (`seq`, or `duplicate` with seq 0),
 * `refused` (DeliveryRefused: the reason), or `failed` (any other error: the reason; the messages
 * after it were not tried).
 */
export type DeliverManyResult = { seq: number; duplicate: boolean } | { refused: string } | { failed: string }

/** A message to the main thread: an answer (with `re`) or an event. */
export type WorkerMessage =
  | { re: number; ok: true; value: unknown }
  | { re: number; ok: false; error: { message: string; exitCode: number | null; code?: string; name: string; stack?: string } }
  | { ev: 'emit'; id: number; line: string }
  | { ev: 'status'; id: number; status: AgentStatus }
  | { ev: 'tick'; id: number; r: TickResult; status: AgentStatus }
  | { ev: 'send'; id: number; ref: number; env: Envelope; first: boolean }

interface Slot {
  /** the agent, always; its lineage only once it has one (an adopted arrival gets it at `install`) */
  agent: Agent
  session: Session | null
  controller: AbortController | null
  settings: WorkerSettings
  name: string
}

/** How long a replay prepared by a `code` request waits for its `replay`, ms (then its memory is dropped). */
const PREPARED_TTL_MS = 60_000

/** Wall time between two `status` events of an agent that keeps asking for more work (returning 1) without failing, ms. */
const STATUS_EVERY_MS = 100

function main (): void {
  const port = parentPort
  if (port === null) throw new Error('runtime/worker.ts must run in a worker thread')
  const busy = workerData.busy as Int32Array
  const slots = new Map<number, Slot>()
  const post = (m: WorkerMessage) => port.postMessage(m)

  /** Runs guest code of agent `id` under the watchdog's busy mark. */
  const guarded = <T>(id: number, f: () => T, agent?: { tick: number; failures: number }): T => {
    const outer = Atomics.exchange(busy, 0, id)
    if (agent !== undefined) { Atomics.store(busy, 2, agent.tick + 1); Atomics.store(busy, 3, agent.failures) }
    Atomics.add(busy, 1, 1)
    try { return f() } finally {
      Atomics.store(busy, 0, outer)
      Atomics.add(busy, 1, 1)
    }
  }
  const statusOf = (s: Slot): AgentStatus => ({
    tick: s.agent.tick, fuel: s.agent.fuel, budget: s.agent.budget, failures: s.agent.failures,
    epoch: s.session?.lineage.epoch ?? 0, lastTick: s.session?.lineage.lastTick ?? s.agent.tick,
    hibernated: s.agent.hibernated,
    ...(s.session === null ? {} : { checkpoints: { ...s.session.lineage.writer.totals } }),
  })
  // an agent's message goes to the main thread, which routes it (runtime/pool.ts `route`) and answers with `sent`
  let nextRef = 1
  const sending = new Map<number, (o: SendOutcome) => void>()
  const sendFor = (id: number) => (env: Envelope, first = true): Promise<SendOutcome> => new Promise((resolve) => {
    const ref = nextRef++
    sending.set(ref, resolve)
    post({ ev: 'send', id, ref, env, first })
  })
  const quiet = (_line: string): void => {}
  /** Where agent `id`'s log lines and notes go: to the main thread, unless its host drops them. */
  const lines = (id: number, s: WorkerSettings) => s.quiet === true ? quiet : (line: string) => post({ ev: 'emit', id, line })
  const settingsFor = (id: number, s: WorkerSettings) => ({
    dir: s.dir, price: s.price, ...(s.simSeed === undefined ? {} : { simSeed: s.simSeed }),
    emit: lines(id, s),
    send: sendFor(id),
  })
  // Guest code runs in two private methods of Agent: `instantiate` (the start function) and
  // `metered` (`_initialize`, `agent_init`, `agent_tick`). Both run under the busy mark of their
  // agent (of the agent being created, during a birth or restore), and nothing else does:
  // instrumenting and compiling, and writing checkpoints, are never cut by the watchdog.
  let creating = 0
  const ids = new WeakMap<object, number>()
  const proto = Agent.prototype as unknown as Record<'instantiate' | 'metered', (this: object, ...a: unknown[]) => unknown>
  for (const name of ['instantiate', 'metered'] as const) {
    const f = proto[name]
    if (typeof f !== 'function') throw new Error(`runtime/worker.ts: Agent.prototype.${name} is missing; the watchdog cannot guard guest code`)
    proto[name] = function (this: object, ...a: unknown[]) { return guarded(ids.get(this) ?? creating, () => f.apply(this, a), this as unknown as Agent) }
  }
  const creatingAs = <T>(id: number, f: () => T): T => {
    creating = id
    try { return f() } finally { creating = 0 }
  }
  // The one replay prepared here (a migration target's, while the offer's pages arrive): used by the
  // next `replay` request whose start it was made for, dropped by it, by the next prepare or after PREPARED_TTL_MS.
  let prepared: { r: PreparedReplay; timer: NodeJS.Timeout } | null = null
  const takePrepared = (start?: ReplayStart): PreparedReplay | null => {
    const p = prepared
    if (p === null || (start !== undefined && p.r.key !== preparedKey(start))) return null // another offer's: kept for its own replay
    prepared = null
    clearTimeout(p.timer)
    return p.r
  }
  /** Registers the agent's id, under which its guest code runs. */
  const watch = (id: number, agent: Agent): void => { ids.set(agent, id) }
  const facts = (s: Slot): AgentFacts => ({
    name: s.name, did: s.agent.spec.identity.did, host: s.session?.lineage.host ?? '', ckptPath: livePath(s.settings.dir, s.name), status: statusOf(s),
    manifest: s.agent.spec.manifest.raw,
    historyDir: s.session?.lineage.writer.historyDir ?? '',
  })
  const get = (id: number): Slot => {
    const s = slots.get(id)
    if (s === undefined) throw new Error(`worker: no agent #${id}`)
    return s
  }
  const session = (id: number): Session => {
    const s = get(id)
    if (s.session === null) throw new Error(`worker: agent #${id} (${s.name}) is not installed`)
    return s.session
  }

  const handlers: Record<string, (m: any) => unknown> = {
    birth: (m: Extract<WorkerRequest, { t: 'birth' }>) => {
      const sess = creatingAs(m.id, () => startAgent(settingsFor(m.id, m.settings), m.a))
      const s: Slot = { agent: sess.agent, session: sess, controller: null, settings: m.settings, name: sess.name }
      watch(m.id, sess.agent)
      slots.set(m.id, s)
      return facts(s)
    },
    resume: (m: Extract<WorkerRequest, { t: 'resume' }>) => {
      const sess = creatingAs(m.id, () => resumeAgent(settingsFor(m.id, m.settings), m.file))
      sess.agent.failures = m.failures
      const s: Slot = { agent: sess.agent, session: sess, controller: null, settings: m.settings, name: sess.name }
      watch(m.id, sess.agent)
      slots.set(m.id, s)
      return facts(s)
    },
    adopt: (m: Extract<WorkerRequest, { t: 'adopt' }>) => {
      const live = m.live
      const inputs = m.settings.simSeed === undefined ? liveInputs() : simulatedInputs(m.settings.simSeed)
      const agent = creatingAs(m.id, () => Agent.restore(
        { wasm: live.wasm, manifest: parseManifest(live.manifest, `${m.name} (manifest)`), identity: identityFromSeed(live.seed), budget: live.parsed.budget, price: m.settings.price, inputs, emit: lines(m.id, m.settings), file: `${m.name} (wasm)`, codeCache: codeCacheOf({ dir: m.settings.dir, emit: lines(m.id, m.settings) }), ...(live.io === null ? {} : { io: decodeIo(live.io, `${m.name} (io)`) }) },
        { tick: live.parsed.tick, fuel: live.parsed.fuel, pageCount: live.pageCount, pages: live.pages, ...(live.digests === undefined ? {} : { digests: live.digests }), globals: live.globals, borrow: true }, // pages cloned or shared by an arrival, never written
      ))
      watch(m.id, agent)
      const s: Slot = { agent, session: null, controller: null, settings: m.settings, name: m.name }
      slots.set(m.id, s)
      return facts(s)
    },
    install: (m: Extract<WorkerRequest, { t: 'install' }>) => {
      const s = get(m.id)
      const live = m.live
      const writer = new CheckpointWriter(s.settings.dir, s.name)
      writer.ensureArchived(live)
      const host = loadHostIdentity(s.settings.dir).peerId
      const mailbox = new Mailbox(s.agent, { dir: s.settings.dir, name: s.name, host, note: lines(m.id, s.settings), send: sendFor(m.id) })
      mailbox.recover(live.parsed.host, true) // the source answered what may have left it; what it holds never left
      s.session = {
        agent: s.agent, name: s.name, ckptPath: livePath(s.settings.dir, s.name), mailbox,
        lineage: { writer, identity: s.agent.spec.identity, wasm: live.wasm, manifest: live.manifest, host, epoch: live.parsed.epoch, prev: headerCid(live.header), lastTick: live.parsed.tick },
      }
      return facts(s)
    },
    link: (m: Extract<WorkerRequest, { t: 'link' }>) => {
      // The handoff that brought the agent here goes into this node's history; the next checkpoint follows it (epoch + 1).
      const sess = session(m.id)
      const hcid = headerCid(m.header)
      const p = decodeHeader(m.header, 'handoff checkpoint')
      sess.lineage.writer.archiveEntry(m.header, m.sig, () => {
        const snap = sess.agent.checkpointState()
        return { base: false, pageCount: snap.pageCount, pages: [], globals: snap.globals }
      })
      sess.lineage.prev = hcid
      sess.lineage.epoch = p.epoch + 1
      sess.lineage.lastTick = p.tick
      return statusOf(get(m.id))
    },
    run: async (m: Extract<WorkerRequest, { t: 'run' }>): Promise<LoopEnd> => {
      const s = get(m.id)
      const sess = session(m.id)
      if (s.controller !== null) throw new Error(`worker: agent #${m.id} (${s.name}) is already running`)
      const controller = new AbortController()
      s.controller = controller
      let lastStatus = 0
      let lastFailures = s.agent.failures
      const opts: LoopOptions = {
        ...m.opts,
        signal: controller.signal,
        onTick: (r) => {
          const now = performance.now()
          if (r.trap !== null || s.agent.failures !== lastFailures) {
            post({ ev: 'tick', id: m.id, r, status: statusOf(s) })
            lastStatus = now
          } else if (r.result === 1 && now - lastStatus >= STATUS_EVERY_MS) {
            // an agent asking for more work without checkpointing every tick; any other tick is
            // checkpointed before the loop goes on, and onCheckpoint tells its status once durable
            post({ ev: 'status', id: m.id, status: statusOf(s) })
            lastStatus = now
          }
          lastFailures = s.agent.failures
        },
        onCheckpoint: () => { post({ ev: 'status', id: m.id, status: statusOf(s) }); lastStatus = performance.now() },
      }
      if (m.opts.hibernateAfterMs !== undefined) {
        // woken from its live file, which holds the state it hibernated in (checked page by page on wake)
        const file = sess.ckptPath
        opts.hibernate = {
          afterMs: m.opts.hibernateAfterMs,
          hibernate: () => {
            sess.agent.hibernate(() => { const l = readLive(file); return { pageCount: l.pageCount, pages: l.pages, globals: l.globals, ...(l.digests === undefined ? {} : { digests: l.digests }) } })
            reclaimSoon() // the dropped instance and pages are freed at the next full GC
            post({ ev: 'status', id: m.id, status: statusOf(s) })
          },
        }
      }
      try { return await runLoop(sess.agent, sess.lineage, { ...opts, mailbox: sess.mailbox }) } finally {
        s.controller = null
        post({ ev: 'status', id: m.id, status: statusOf(s) })
      }
    },
    // a message for the agent's inbox (stored durably before the answer; DeliveryRefused when refused);
    // first what a group commit left unsynced, so that not even a duplicate is answered before that
    deliver: (m: Extract<WorkerRequest, { t: 'deliver' }>) => {
      const mb = session(m.id).mailbox
      mb.spool.flush()
      return mb.deliver(m.msg)
    },
    // messages for the agent's inbox, in order, with one fsync of the spool directory for all
    // (group commit): each answered taken, duplicate or refused (DeliveryRefused); the first other
    // failure (StorageError) ends the batch, the rest not tried. Nothing is answered before the
    // directory's fsync succeeded (else the whole request fails, and the next delivery tries it again).
    deliverMany: (m: Extract<WorkerRequest, { t: 'deliverMany' }>): DeliverManyResult[] => {
      const mb = session(m.id).mailbox
      mb.spool.flush()
      const out: DeliverManyResult[] = []
      mb.spool.deferDirSync = true
      try {
        for (const msg of m.msgs) {
          try { out.push({ ...mb.deliver(msg) }) } catch (e) {
            if (!(e instanceof IgordError) || e.name !== 'DeliveryRefused') { out.push({ failed: (e as Error).message.split('\n')[0] }); break }
            out.push({ refused: e.message })
          }
        }
      } finally { mb.spool.deferDirSync = false }
      mb.spool.flush()
      return out
    },
    // the main thread's answer to an `ev: 'send'` of an agent's mailbox
    sent: (m: Extract<WorkerRequest, { t: 'sent' }>) => { const r = sending.get(m.ref); sending.delete(m.ref); r?.(m.outcome) },
    stop: (m: Extract<WorkerRequest, { t: 'stop' }>) => { slots.get(m.id)?.controller?.abort() },
    checkpoint: (m: Extract<WorkerRequest, { t: 'checkpoint' }>) => {
      const sess = session(m.id)
      const w = writeCheckpoint(sess.agent, sess.lineage, m.status, m.extra)
      post({ ev: 'status', id: m.id, status: statusOf(get(m.id)) })
      return { header: w.headerBytes, sig: w.sig, cid: w.cid }
    },
    last: (m: Extract<WorkerRequest, { t: 'last' }>) => {
      const s = get(m.id)
      const sess = session(m.id)
      const live = lastCheckpoint(sess)
      const io = isEmptyIo(sess.agent.io) ? undefined : cidOf(encodeIo(sess.agent.io))
      const head = headerCid(live.header) === sess.lineage.prev
      if ((head && io === live.parsed.io) || s.controller !== null || live.parsed.status !== 'running' || sess.agent.tick !== sess.lineage.lastTick) return sharedPages(live)
      // A checkpoint at the same tick (no tick runs: same state, no log) when (1) messages were taken
      // in after the loop's final checkpoint (they reached this worker after the loop ended, e.g.
      // before the node saw an agent's migration request), so that the checkpoint offered to a
      // migration target holds its whole inbox; or (2) the agent has written no checkpoint here since
      // the handoff that brought it (its loop stopped before its first tick): its live file is the
      // source's checkpoint, while its lineage follows that handoff, and an offer must be the head.
      writeCheckpoint(sess.agent, sess.lineage, 'running')
      sess.mailbox.afterCheckpoint()
      post({ ev: 'status', id: m.id, status: statusOf(s) })
      return sharedPages(lastCheckpoint(sess))
    },
    forge: (m: Extract<WorkerRequest, { t: 'forge' }>) => {
      // test-only fault `forge-final`: corrupt one byte of memory, run a tick and checkpoint it
      const sess = session(m.id)
      sess.agent.wake()
      const bytes = new Uint8Array((sess.agent as unknown as { memory: WebAssembly.Memory }).memory.buffer)
      bytes[bytes.length - 1] ^= 0xff
      ;(sess.agent as unknown as { image: { distrust (): void } }).image.distrust() // a write the dirty map cannot see
      const tick = sess.agent.tick + 1
      sess.agent.runTick()
      writeCheckpoint(sess.agent, sess.lineage, 'running')
      post({ ev: 'status', id: m.id, status: statusOf(get(m.id)) })
      return tick
    },
    // retention in the agent's own thread, between its ticks and checkpoints (checkpoint/gc.ts): the
    // writer's pack is left alone, and its store forgets what it knew (gc may have dropped it)
    gc: (m: Extract<WorkerRequest, { t: 'gc' }>) => {
      const w = session(m.id).lineage.writer
      try { return gcAgent(w.dir, w.name, { ...m.opts, excludePacks: new Set([path.basename(w.blobs.packFile)]) }) } finally { w.blobs.forget() }
    },
    // a migration target's check of the ticks it receives (runtime/replay.ts); each replayed tick is watched under `m.id`
    replay: (m: Extract<WorkerRequest, { t: 'replay' }>) => creatingAs(m.id, () => replaySegment(m.start, m.records, m.next, takePrepared(m.start))),
    // a migration target instruments an arriving module while its pages are still in transit (runtime/code-cache.ts)
    code: (m: Extract<WorkerRequest, { t: 'code' }>) => {
      const opts = { memoryLimitPages: m.memoryLimitPages, cache: codeCacheOf({ dir: m.dir }) }
      if (isComponent(m.wasm)) loadComponent(m.wasm, opts) // transpile + every core module, cached
      else loadInstrumented(m.wasm, opts)
      if (m.prepare !== undefined) {
        takePrepared()
        let r: PreparedReplay | null = null
        try { r = creatingAs(m.id, () => Replayer.prepare(m.prepare!.start, m.prepare!.pages)) } catch { /* the replay restores the usual way, and reports what fails */ }
        if (r !== null) {
          const timer = setTimeout(() => { if (prepared?.r === r) prepared = null }, PREPARED_TTL_MS)
          timer.unref()
          prepared = { r, timer }
        }
      }
      return null
    },
    drop: (m: Extract<WorkerRequest, { t: 'drop' }>) => {
      slots.get(m.id)?.controller?.abort()
      slots.delete(m.id)
      return null
    },
  }

  port.on('message', (m: WorkerRequest) => {
    const h = handlers[m.t]
    const re = 're' in m ? m.re : null
    Promise.resolve().then(() => h(m)).then((value) => {
      if (re !== null) post({ re, ok: true, value })
    }, (e: unknown) => {
      const err = e instanceof Error ? e : new Error(String(e))
      if (re !== null) post({ re, ok: false, error: { message: err.message, exitCode: e instanceof IgordError ? e.exitCode : null, ...(e instanceof IgordError ? { code: e.code } : {}), name: err.name, ...(err.stack === undefined ? {} : { stack: err.stack }) } })
    })
  })
}

/**
 * The agent's last checkpoint as a live checkpoint, built from memory: the agent's committed state
 * (whose page digests are known) and what the writer kept of its last write (signed header,
 * signature, log, I/O state: `CheckpointWriter.last`), instead of re-reading and re-hashing the live
 * file; falls back to reading the live file when the last write is not this lineage's last
 * checkpoint or does not match the agent's state root.
 */
function lastCheckpoint (sess: Session): LiveCheckpoint {
  const { writer, identity, wasm, manifest, prev } = sess.lineage
  const w = writer.last
  if (w !== null && prev !== null && w.cid === prev && w.header.tick === sess.agent.tick) {
    const snap = sess.agent.checkpointState()
    const p = w.header
    const root = stateRoot({ pages: snap.pageCount, digests: snap.digests, globals: snap.globals, fuel: p.fuel, budget: p.budget })
    if (Buffer.compare(root, p.state) === 0) {
      return { header: w.headerBytes, sig: w.sig, parsed: p, wasm, manifest, pageCount: snap.pageCount, pages: snap.pages, globals: snap.globals, log: w.log, seed: identity.seed, digests: snap.digests, io: w.io }
    }
  }
  return readLive(sess.ckptPath)
}

/**
 * `live` with every page in shared memory, for the answer to `last` (a migration's offer): pages
 * already in a SharedArrayBuffer are kept, the others copied here into one new SharedArrayBuffer,
 * in page order. The answer then shares them with the main thread instead of cloning them — one
 * copy on this thread rather than a serialization and a second copy, and none of the main thread's
 * time nor of its heap's external-memory budget (a clone of a 64 MiB agent charged the main heap
 * 64 MiB of array buffers, which brought its next full collection into the move). The pages are
 * read only from here on: the agent's own image is not shared.
 */
function sharedPages (live: LiveCheckpoint): LiveCheckpoint {
  const own = live.pages.filter(([, p]) => !(p.buffer instanceof SharedArrayBuffer))
  if (own.length === 0) return live
  const all = Buffer.from(new SharedArrayBuffer(own.reduce((n, [, p]) => n + p.length, 0)))
  let at = 0
  const pages = live.pages.map(([i, p]): [number, Uint8Array] => {
    if (p.buffer instanceof SharedArrayBuffer) return [i, p]
    all.set(p, at)
    at += p.length
    return [i, all.subarray(at - p.length, at)]
  })
  return { ...live, pages }
}

// test-only (runtime/pool.ts `injected.workerFaults`, set by test/igord-faulty.ts); absent in the shipped CLI
const faults = workerData?.faults as { module: string; spec: string } | undefined
if (faults !== undefined) (await import(faults.module) as { installWorkerFaults (spec: string): void }).installWorkerFaults(faults.spec)
main()
