/**
 * One running agent: an instrumented module instance plus its committed state, fuel and budget.
 *
 * The life cycle follows DESIGN §4–§7: `birth` runs `_initialize` and `agent_init` once in the
 * agent's life; `restore` instantiates the same module and copies a checkpoint's memory and globals
 * back instead. `tick` calls `agent_tick` under a fuel limit and is atomic: a trap (out of fuel, out
 * of bounds, `unreachable`, a host error) rolls memory and globals back to their state before the
 * tick, while the fuel it burned is still charged. `checkpointState` hands the writer what it needs.
 */
import { ModuleError } from '../checkpoint/errors.ts'
import { encodeTopUp, FUND_EVENT, MAX_TOPUPS_PER_TICK } from '../checkpoint/fund.ts'
import type { TopUp } from '../checkpoint/fund.ts'
import type { Identity } from '../checkpoint/identity.ts'
import { sign } from '../checkpoint/identity.ts'
import { GLOBAL_SIZES, PAGE_SIZE } from '../checkpoint/state.ts'
import type { GlobalValue } from '../checkpoint/state.ts'
import type { Snapshot } from '../checkpoint/writer.ts'
import { cloneIo, emptyIo, encodeMessage, MAX_SEEN, outboundId } from '../checkpoint/io.ts'
import type { HttpRequestRecord, IoState, Message, OutboundMessage } from '../checkpoint/io.ts'
import { EventLog } from '../hostcalls/eventlog.ts'
import { checkRequest, E_NOT_ALLOWED, E_TOO_MANY } from '../hostcalls/http.ts'
import { E_TOO_LONG } from '../hostcalls/igor.ts'
import { checkImports, igorImports } from '../hostcalls/igor.ts'
import { checkComponentImports, componentImports } from '../hostcalls/component.ts'
import type { HostContext } from '../hostcalls/igor.ts'
import type { Manifest } from '../hostcalls/manifest.ts'
import { WasiExit, wasiHost } from '../hostcalls/wasi.ts'
import type { InputSource } from './inputs.ts'
import { loadInstrumented } from './code-cache.ts'
import type { CodeCache, InstrumentedGlobal } from './code-cache.ts'
import { DIRTY_EXPORT, FUEL_GLOBAL, fuelUsed } from './fuel.ts'
import { checkAbiExports, scanModule } from './module-facts.ts'
import { coreImports, instantiateComponent, isComponent, loadComponent, wasi2Host } from './component.ts'
import { checkWasi2Imports } from '../hostcalls/wasi2.ts'
import type { ComponentCode, ComponentGlobal, ComponentInstance } from './component.ts'
import { PageImage } from './memory.ts'

/** Tick return codes of the guest ABI (DESIGN §4). */
export const TICK = { IDLE: 0, MORE: 1, FINISHED: 2 } as const

/** A component's `tick-result` enum case (wit/agent.wit) → the core ABI's tick code. */
const TICK_RESULTS: Readonly<Record<string, number>> = { idle: TICK.IDLE, more: TICK.MORE, finished: TICK.FINISHED }

/** What one tick did. */
export interface TickResult {
  /** The tick number just run (the agent's tick count after it). */
  tick: number
  /** `agent_tick`'s return value (0, 1 or 2), or null when the tick failed. */
  result: number | null
  /** Why the tick failed (trap message), or null. */
  trap: string | null
  /** Fuel burned by this tick. */
  fuel: bigint
  /** Microcents charged for it (after clamping at the remaining budget). */
  cost: bigint
  /** Pages of memory that changed (0 after a rollback). */
  changedPages: number
  /**
   * Set when the agent called WASI `proc_exit(code)` (unsigned): the tick's state is committed,
   * `result` is 2 (finished) and the runner retires the agent with reason `proc_exit(<code>)`.
   */
  exitCode?: number
}

/** Everything needed to create an agent, new or restored. */
export interface AgentSpec {
  /** The original (uninstrumented) module bytes. */
  wasm: Uint8Array
  /** The parsed manifest (its `raw` bytes travel in checkpoints). */
  manifest: Manifest
  identity: Identity
  /** Remaining budget, microcents. */
  budget: bigint
  /** Host price, microcents per million fuel. */
  price: bigint
  /** Clock and random source. */
  inputs: InputSource
  /** Receives each line the agent logs. */
  emit (line: string): void
  /** Where wasm file names in errors come from. */
  file?: string
  /**
   * The on-disk cache of instrumented code to use (runtime/code-cache.ts; the host's is
   * `<dir>/cache/code`, checkpoint/layout.ts `codeCacheDir`). Absent: this thread's memory cache only.
   */
  codeCache?: CodeCache
  /**
   * Answers `agent_sign` instead of signing with `identity.seed` (Ed25519, 64-byte result). Replay
   * has no secret key: it serves the recorded signature and checks it against the DID (runtime/replay.ts).
   */
  signer? (msg: Uint8Array): Uint8Array
  /**
   * The event log to record into (default: a new one). Replay passes its own, so that its input
   * source knows which recorded event the hostcall being answered is about to record.
   */
  log?: EventLog
  /** The I/O state to start from (a checkpoint's `io`; default empty). */
  io?: IoState
  /**
   * Serves `inbox_next` instead of the agent's own inbox: replay passes the messages its log
   * recorded (runtime/replay.ts). `peek` returns the message at the current point, or null.
   */
  inbox?: { peek (): Message | null; take (): void }
  /**
   * Whether `message_send` finds the outbox full (E_TOO_MANY) — a fact of the host (acks arrive
   * between ticks without being recorded), so replay reads it from the log (runtime/replay.ts).
   * Default: the outbox holds the manifest's `max_outbox_messages` (at most 64, checkpoint/io.ts `MAX_OUTBOX`).
   */
  outboxFull? (): boolean
}

/** Saved state to restore into (from a live checkpoint). */
export interface RestoreState {
  tick: number
  /** Lifetime fuel. */
  fuel: bigint
  pageCount: number
  /** `[index, 65536 bytes]` for every non-zero page, strictly ascending, below `pageCount` (else {@link Agent.restore} throws). */
  pages: [number, Uint8Array][]
  /** SHA-256 of each page in `pages`, when already known (saves re-hashing). */
  digests?: [number, Uint8Array][]
  globals: GlobalValue[]
  /**
   * True when nothing writes `pages` after the restore (a decoded file, received or cloned pages —
   * not views of another agent's memory): the agent's image may then keep them instead of a copy
   * (runtime/memory.ts `PageImage.load`). Default false: copied.
   */
  borrow?: boolean
  /**
   * Called with the pages' digests (`[index, SHA-256]` in the order of `pages`) once the pages are
   * in the instance, before the globals are set and before anything of the agent runs but its
   * start function: a resume checks them against the signed state root here (its pages were hashed
   * while being copied). Whatever it throws, {@link Agent.restore} throws.
   */
  check? (digests: [number, Uint8Array][]): void
}

/**
 * Where a hibernating agent's state comes back from (runtime/agent.ts {@link Agent.hibernate}): the
 * memory size in pages, the non-zero pages with their digests when known, the globals — a
 * checkpoint of exactly the state the agent hibernated in (checked on wake).
 */
export type HibernatedState = Pick<RestoreState, 'pageCount' | 'pages' | 'digests' | 'globals'>

/**
 * A v128 global seen through the instrumenter's accessor exports (JS cannot read or write a v128
 * `WebAssembly.Global`): `get` returns its low and high i64 halves, `set` takes them.
 */
interface V128Global { get (): [bigint, bigint]; set (lo: bigint, hi: bigint): void }

/** A snapshotted global of the instance: a `WebAssembly.Global`, or a v128 one through accessors. */
type GlobalSlot = WebAssembly.Global | V128Global

function slotOf (ex: WebAssembly.Exports, g: InstrumentedGlobal): GlobalSlot {
  if (g.type !== 'v128') return ex[g.exportName] as WebAssembly.Global
  if (g.accessors === undefined) throw new ModuleError(`global ${g.index} (v128) has no accessors: instrumentation cache from an older igord`)
  return { get: ex[g.accessors.get] as V128Global['get'], set: ex[g.accessors.set] as V128Global['set'] }
}

/** Scratch of {@link readGlobal}: the value's bytes before they are known to differ. */
const GLOBAL_SCRATCH = new Uint8Array(16)
const GLOBAL_VIEW = new DataView(GLOBAL_SCRATCH.buffer)

/**
 * The little-endian bytes of a global's value (4, 8 or 16 bytes by `type`). Returns `prev` itself
 * when it holds the same bytes (committed globals are never changed in place, so an unchanged
 * global costs no allocation a tick).
 */
function readGlobal (g: GlobalSlot, type: InstrumentedGlobal['type'], prev?: Uint8Array): Uint8Array {
  const dv = GLOBAL_VIEW
  switch (type) {
    case 'i32': dv.setInt32(0, (g as WebAssembly.Global).value as number, true); break
    case 'i64': dv.setBigInt64(0, (g as WebAssembly.Global).value as bigint, true); break
    case 'f32': dv.setFloat32(0, (g as WebAssembly.Global).value as number, true); break
    case 'f64': dv.setFloat64(0, (g as WebAssembly.Global).value as number, true); break
    case 'v128': { const [lo, hi] = (g as V128Global).get(); dv.setBigInt64(0, lo, true); dv.setBigInt64(8, hi, true); break }
    default: throw new ModuleError(`global of type ${type} cannot be snapshotted from the host`)
  }
  const size = GLOBAL_SIZES[type]
  if (prev !== undefined && prev.length === size) {
    let same = true
    for (let k = 0; k < size; k++) if (prev[k] !== GLOBAL_SCRATCH[k]) { same = false; break }
    if (same) return prev
  }
  return GLOBAL_SCRATCH.slice(0, size)
}

function writeGlobal (g: GlobalSlot, type: InstrumentedGlobal['type'], bytes: Uint8Array): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  switch (type) {
    case 'i32': (g as WebAssembly.Global).value = dv.getInt32(0, true); break
    case 'i64': (g as WebAssembly.Global).value = dv.getBigInt64(0, true); break
    case 'f32': (g as WebAssembly.Global).value = dv.getFloat32(0, true); break
    case 'f64': (g as WebAssembly.Global).value = dv.getFloat64(0, true); break
    case 'v128': (g as V128Global).set(dv.getBigInt64(0, true), dv.getBigInt64(8, true)); break
    default: throw new ModuleError(`global of type ${type} cannot be restored from the host`)
  }
}

/** A short, stable description of a trap or host error thrown out of wasm. */
export function trapMessage (e: unknown): string {
  if (e instanceof Error) return e.message.split('\n')[0]
  return String(e)
}

/** A loaded, instrumented agent with its committed state. */
export class Agent {
  readonly spec: AgentSpec
  /** The instrumented module (for a component: the core module holding its memory). */
  readonly module: WebAssembly.Module
  /** Set when the agent is a component (runtime/component.ts): its transpiled, instrumented code. */
  readonly component: ComponentCode | null = null
  readonly globalsInfo: InstrumentedGlobal[]
  /** CID of the original wasm. */
  readonly codeCid: string
  /** Per-tick records of every value entering the agent ({@link AgentSpec.log} or a new one). */
  readonly log: EventLog
  /** Ticks run in the agent's life (attempts, including failed ones). */
  tick = 0
  /** Lifetime fuel. */
  fuel = 0n
  /** Remaining budget, microcents. */
  budget: bigint
  /**
   * The agent's request, made during the last tick through `migrate_request`, to move to the peer
   * at `target` (a multiaddr) or, when `target` is null, to the cheapest peer that grants its
   * capabilities. Null when it made none; dropped when the tick failed.
   */
  migrationRequest: { target: string | null } | null = null
  /** Consecutive failed ticks. */
  failures = 0
  /**
   * The committed I/O state (checkpoint/io.ts): inbox messages not consumed, requests without
   * outcome, the last tick's sleep request. During a tick the hostcalls change a working copy,
   * which becomes this one when the tick commits and is dropped when it traps.
   */
  io: IoState
  /** Requests issued by the last tick (committed): the runner checkpoints, then performs them. */
  newRequests: HttpRequestRecord[] = []
  /** Messages sent by the last tick (committed): the runner checkpoints, then the mailbox sends them. */
  newMessages: OutboundMessage[] = []
  #tickIo: IoState | null = null
  #sleepAsked = false
  private instance!: WebAssembly.Instance
  /** A component agent's live instance (its core instances and the glue's exports). */
  private comp: ComponentInstance | null = null
  private memory!: WebAssembly.Memory
  private fuelGlobal!: WebAssembly.Global
  private globals: GlobalSlot[] = []
  /** Emits partial WASI output lines of the current instance (a no-op without `wasi`). */
  private flushOutput: () => void = () => {}
  private readonly image = new PageImage()
  private committedGlobals: Uint8Array[] = []
  /** Set while the agent hibernates: how to load its state back. */
  #asleep: { load (): HibernatedState } | null = null

  private constructor (spec: AgentSpec) {
    this.spec = spec
    this.log = spec.log ?? new EventLog()
    this.log.setLimits(spec.manifest.tickLimits) // per-tick bounds on what hostcalls record
    this.budget = spec.budget
    this.io = spec.io ?? emptyIo()
    const file = spec.file ?? 'agent.wasm'
    if (isComponent(spec.wasm)) {
      const code = loadComponent(spec.wasm, { memoryLimitPages: Math.floor(spec.manifest.maxMemoryBytes / PAGE_SIZE), file, ...(spec.codeCache === undefined ? {} : { cache: spec.codeCache }) })
      checkComponentImports(code.imports, spec.manifest, file, wasi2Host.served)
      checkWasi2Imports(coreImports(code), spec.manifest, file) // each WASI function, by name
      this.component = code
      this.codeCid = code.cid
      this.globalsInfo = code.globals
      this.module = code.cores[code.memoryCore].module
      return
    }
    const inst = loadInstrumented(spec.wasm, { memoryLimitPages: Math.floor(spec.manifest.maxMemoryBytes / PAGE_SIZE), file, ...(spec.codeCache === undefined ? {} : { cache: spec.codeCache }) })
    this.codeCid = inst.cid
    this.globalsInfo = inst.globals
    this.module = new WebAssembly.Module(inst.binary as Uint8Array<ArrayBuffer>)
    // Check imports against the manifest as the author wrote them: the instrumenter keeps the import
    // section as it is, so the compiled instrumented module lists the original's imports (checked
    // here against the bytes; else the original is compiled for it) and their types come from the original.
    const facts = scanModule(spec.wasm)
    const imports = WebAssembly.Module.imports(this.module)
    const same = imports.length === facts.imports.length && imports.every((x, i) => x.module === facts.imports[i].module && x.name === facts.imports[i].name)
    checkImports(same ? this.module : new WebAssembly.Module(spec.wasm as Uint8Array<ArrayBuffer>), spec.manifest, file, spec.wasm)
    const exports = WebAssembly.Module.exports(this.module)
    if (!exports.some((e) => e.name === 'agent_tick' && e.kind === 'function')) {
      throw new ModuleError(`${file}: does not export the function agent_tick required by the igor ABI`)
    }
    checkAbiExports(facts, file) // also when the instrumentation came from a cache
  }

  private hostContext (): HostContext {
    return {
      memory: () => this.memory,
      wrote: (ptr, len) => this.image.wrote(ptr, len),
      did: this.spec.identity.did,
      sign: (msg) => this.spec.signer !== undefined ? this.spec.signer(msg) : sign(this.spec.identity, msg),
      budget: () => this.budget,
      now: () => this.spec.inputs.now(),
      randomFill: (buf) => this.spec.inputs.randomFill(buf),
      log: this.log,
      emit: (line) => this.spec.emit(line),
      requestMigration: (target) => { this.migrationRequest = { target } },
      inboxPeek: () => {
        if (this.spec.inbox !== undefined) return this.spec.inbox.peek()
        return this.#workIo().pending.find((m) => m.kind !== 'fund') ?? null
      },
      inboxTake: (m) => {
        const io = this.#workIo()
        if (m.kind === 'http' && io.open > 0) io.open--
        if (this.spec.inbox !== undefined) { this.spec.inbox.take(); return }
        const k = io.pending.indexOf(m)
        if (k < 0) return
        io.pending.splice(k, 1)
        io.seen.push(m.id)
        if (io.seen.length > MAX_SEEN) io.seen.splice(0, io.seen.length - MAX_SEEN)
      },
      sleep: (at) => { this.#workIo().sleep = at; this.#sleepAsked = true },
      httpRequest: (r) => {
        const policy = this.spec.manifest.http
        if (policy == null) return E_NOT_ALLOWED
        const checked = checkRequest(policy, r)
        if (!checked.ok) return checked.code
        const io = this.#workIo()
        if (io.open >= policy.maxPending) return E_TOO_MANY
        const id = io.nextReq++
        const tick = this.log.openTick ?? this.tick
        const rec: HttpRequestRecord = { id, tick, method: checked.request.method, url: checked.request.url, headers: checked.request.headers, body: checked.request.body, key: `${this.spec.identity.did}/${tick}/${id}` }
        io.requests.push(rec)
        io.open++
        return rec
      },
      messageSend: (m) => {
        if (m.body.length > this.spec.manifest.inbox.maxMessageBytes) return E_TOO_LONG
        const io = this.#workIo()
        if (this.spec.outboxFull !== undefined ? this.spec.outboxFull() : io.outbox.length >= this.spec.manifest.inbox.maxOutbox) {
          io.blocked = true // the next message to leave the outbox wakes the agent (docs/ABI.md "Messages")
          return E_TOO_MANY
        }
        const n = io.nextMsg++
        const rec: OutboundMessage = { n, tick: this.log.openTick ?? this.tick, to: m.to, id: outboundId(this.spec.identity.did, n), body: m.body }
        io.outbox.push(rec)
        return rec
      },
    }
  }

  /** The I/O state the running tick changes (a copy of the committed one, made on first use). */
  #workIo (): IoState {
    if (this.#tickIo === null) this.#tickIo = cloneIo(this.io)
    return this.#tickIo
  }

  private instantiate (): void {
    const ctx = this.hostContext()
    if (this.component !== null) {
      const code = this.component
      this.comp = null
      const wasi = this.spec.manifest.capabilities.has('wasi') ? wasi2Host.create(this.spec.manifest, ctx) : { imports: {}, flush: () => {} }
      const imports = { ...wasi.imports, ...componentImports(this.spec.manifest, ctx) }
      this.flushOutput = wasi.flush
      const c = instantiateComponent(code, imports, this.spec.file ?? 'agent.wasm')
      this.comp = c
      this.memory = c.memory
      // No dirty map for a component: jco's glue writes lowered values into memory from JavaScript
      // (no barrier sees them), and each core module marks its own map while several may share the
      // one memory. Every commit compares the whole memory.
      this.image.track(null)
      this.globals = (this.globalsInfo as ComponentGlobal[]).map((g) => slotOf(c.cores[g.core].exports, g))
      return
    }
    const wasi = wasiHost(this.spec.manifest, ctx) // {} unless the manifest grants `wasi`
    this.flushOutput = wasi.flush
    this.instance = new WebAssembly.Instance(this.module, { ...igorImports(this.spec.manifest, ctx), ...wasi.imports })
    const ex = this.instance.exports
    this.memory = ex.memory as WebAssembly.Memory
    // commits compare only the chunks the write barrier marked (the first one after this compares all)
    const map = ex[DIRTY_EXPORT]
    this.image.track(map instanceof WebAssembly.Memory ? new Uint8Array(map.buffer) : null)
    this.fuelGlobal = ex[FUEL_GLOBAL] as WebAssembly.Global
    this.globals = this.globalsInfo.map((g) => slotOf(ex, g))
  }

  /**
   * Calls an export under the per-tick fuel limit; returns its result or the trap, the WASI
   * `proc_exit` code if it exited (then `trap` is null), and fuel burned. Flushes partial WASI
   * output lines afterwards, so output never crosses a tick.
   */
  private metered (name: string): { result: unknown; trap: string | null; exit: number | null; fuel: bigint } {
    const limit = this.spec.manifest.maxFuelPerTick
    const comp = this.comp
    if (comp !== null) for (const g of comp.fuel) g.value = limit
    else this.fuelGlobal.value = limit
    let result: unknown = null
    let trap: string | null = null
    let exit: number | null = null
    try {
      if (comp !== null) result = name === 'tick' ? comp.tick() : comp.init()
      else result = (this.instance.exports[name] as () => unknown)()
    } catch (e) {
      if (e instanceof WasiExit) exit = e.code
      else trap = trapMessage(e)
    }
    try { this.flushOutput() } catch (e) { if (trap === null) { trap = trapMessage(e); exit = null } } // a per-tick limit
    if (comp !== null) {
      // jco keeps resource handle tables in its glue, outside every core instance: no snapshot can
      // carry a handle, so a call may not end holding one (docs/ABI.md "Components").
      const held = comp.handles()
      if (trap === null && held > 0) { trap = `${name} returned holding ${held} resource handle${held === 1 ? '' : 's'}; igord cannot carry resources across ticks (they live in jco's glue, outside the snapshot): drop every resource before returning`; exit = null }
      // Each core instance has its own counter, all set to the limit: the tick's fuel is their sum,
      // and a tick whose sum passes the limit fails as out of fuel (docs/ABI.md "Components").
      let fuel = 0n
      let out = false
      for (const g of comp.fuel) {
        const remaining = g.value as bigint
        if (remaining < 0n) out = true
        fuel += fuelUsed(limit, remaining)
      }
      if (fuel > limit) { fuel = limit; out = true }
      if (out && (trap !== null || exit === null)) { trap = `out of fuel (limit ${limit} per tick)`; exit = null }
      return { result, trap, exit, fuel }
    }
    const remaining = this.fuelGlobal.value as bigint
    if (trap !== null && remaining < 0n) trap = `out of fuel (limit ${limit} per tick)`
    return { result, trap, exit, fuel: fuelUsed(limit, remaining) }
  }

  private charge (fuel: bigint): bigint {
    const price = this.spec.price
    let cost = (fuel * price + 999_999n) / 1_000_000n
    if (cost > this.budget) cost = this.budget
    this.budget -= cost
    this.fuel += fuel
    return cost
  }

  private commit (): number {
    const changed = this.image.commit(new Uint8Array(this.memory.buffer))
    const prev = this.committedGlobals
    this.committedGlobals = this.globals.map((g, i) => readGlobal(g, this.globalsInfo[i].type, prev[i]))
    return changed
  }

  private rollback (): void {
    const live = new Uint8Array(this.memory.buffer)
    if (live.length !== this.image.pageCount * PAGE_SIZE || this.component !== null) {
      // The failed tick grew memory, which cannot shrink, or trapped a component (its glue marks
      // the instance poisoned and may hold state of the aborted call): start a fresh instance from the image.
      this.instantiate()
      this.loadImageIntoInstance()
    } else {
      this.image.rollback(live)
      this.globals.forEach((g, i) => writeGlobal(g, this.globalsInfo[i].type, this.committedGlobals[i]))
    }
  }

  /**
   * Grows the instance's memory to `pageCount` pages; returns its bytes.
   * @throws ModuleError when it cannot grow that far or starts larger
   */
  private fitMemory (pageCount: number): Uint8Array {
    const have = this.memory.buffer.byteLength / PAGE_SIZE
    if (pageCount > have) {
      if (this.memory.grow(pageCount - have) < 0) throw new ModuleError('cannot grow memory to the checkpoint size')
    }
    if (this.memory.buffer.byteLength / PAGE_SIZE !== pageCount) {
      throw new ModuleError(`checkpoint has ${pageCount} memory pages but the module starts with ${have}`)
    }
    return new Uint8Array(this.memory.buffer)
  }

  private loadImageIntoInstance (): void {
    this.image.restoreInto(this.fitMemory(this.image.pageCount))
    this.globals.forEach((g, i) => writeGlobal(g, this.globalsInfo[i].type, this.committedGlobals[i]))
  }

  /**
   * Creates a new agent: instantiates, runs `_initialize` and `agent_init` (each metered; their
   * fuel is charged to the life's first checkpoint) and commits the result as tick 0.
   * @throws ModuleError when the module is rejected or birth traps (in the start function run at
   *   instantiation, `_initialize` or `agent_init`)
   */
  static birth (spec: AgentSpec): Agent {
    const a = new Agent(spec)
    try {
      a.instantiate() // runs the module's start function, if any
    } catch (e) {
      if (e instanceof ModuleError) throw e
      throw new ModuleError(`${spec.file ?? 'agent.wasm'}: birth failed: start function: ${trapMessage(e)}`)
    }
    spec.inputs.beginTick(0)
    a.log.beginTick(0)
    const exports = a.comp === null ? a.instance.exports : { init: a.comp.init }
    let trap: string | null = null
    let fuel = 0n
    for (const name of a.comp === null ? ['_initialize', 'agent_init'] : ['init']) {
      if (typeof exports[name] !== 'function') continue
      const r = a.metered(name)
      fuel += r.fuel
      if (r.trap !== null) { trap = `${name}: ${r.trap}`; break }
      if (r.exit !== null) { trap = `${name}: proc_exit(${r.exit}) during birth`; break }
    }
    a.log.endTick({ fuel, result: null, trap })
    if (trap !== null) throw new ModuleError(`${spec.file ?? 'agent.wasm'}: birth failed: ${trap}`)
    a.charge(fuel)
    a.commit()
    return a
  }

  /**
   * Re-creates an agent from a checkpoint: instantiates the same module (no `_initialize`, no
   * `agent_init`), grows memory to the saved size, copies the pages and sets the globals. With
   * `prepared` (from {@link Agent.prepare} with this very `spec`), restores into that instance
   * instead of instantiating one; `spec.io` is read again (it may have been set since).
   * @throws ModuleError when the module is rejected or the state does not fit it; Error when
   *   `prepared` was made for another spec
   */
  static restore (spec: AgentSpec, state: RestoreState, prepared?: Agent): Agent {
    if (prepared !== undefined && prepared.spec !== spec) throw new Error('Agent.restore: the prepared agent was made for another spec')
    const a = prepared ?? new Agent(spec)
    if (state.globals.length !== a.globalsInfo.length) {
      throw new ModuleError(`checkpoint has ${state.globals.length} globals but the module has ${a.globalsInfo.length}`)
    }
    if (prepared === undefined) a.instantiate()
    else a.io = spec.io ?? emptyIo()
    a.tick = state.tick
    a.fuel = state.fuel
    a.committedGlobals = a.globalsInfo.map((info, i) => {
      const g = state.globals[i]
      if (g.index !== info.index || g.type !== info.type) {
        throw new ModuleError(`checkpoint global ${g.index} (${g.type}) does not match the module's global ${info.index} (${info.type})`)
      }
      return g.bytes
    })
    // one pass over the pages: hashed (unless known), copied into the image and into the instance
    const digests = a.image.load(state.pageCount, state.pages, state.digests, a.fitMemory(state.pageCount), state.borrow === true)
    state.check?.(digests)
    a.globals.forEach((g, i) => writeGlobal(g, a.globalsInfo[i].type, a.committedGlobals[i]))
    return a
  }

  /**
   * An agent ready for {@link Agent.restore} of a checkpoint of `pageCount` pages whose non-zero
   * pages are `pages` (indices): the module instantiated, its memory grown to `pageCount` pages and
   * the memory of those pages committed (a zero written per 4 KiB, so that the kernel maps them now
   * rather than during the restore's copy). A migration target prepares the replay of an arriving
   * agent this way while the pages are in transit (runtime/replay.ts `Replayer.prepare`). Nothing
   * of the agent runs but its start function, as in a restore. Null for a component (restored the
   * usual way).
   * @throws ModuleError as {@link Agent.restore}
   */
  static prepare (spec: AgentSpec, pageCount: number, pages: readonly number[]): Agent | null {
    const a = new Agent(spec)
    if (a.component !== null) return null
    a.instantiate()
    const mem = a.fitMemory(pageCount)
    for (const i of pages) {
      if (!Number.isInteger(i) || i < 0 || i >= pageCount) continue
      // a write, never a read first: a read would map the shared zero page and the write then
      // fault again to replace it; the restore's load writes every byte of these pages anyway
      for (let at = i * PAGE_SIZE, end = at + PAGE_SIZE; at < end; at += 4096) mem[at] = 0
    }
    return a
  }

  /**
   * True while the agent hibernates: its instance and memory are dropped (only the page digests,
   * globals, I/O state and counters stay in memory) until the next tick or checkpoint wakes it.
   */
  get hibernated (): boolean { return this.#asleep !== null }

  /**
   * Drops the instance, its memory and the committed page copies between ticks, keeping a small
   * descriptor (page digests, globals, I/O state, tick, fuel, budget); the next {@link runTick},
   * {@link checkpointState} or {@link wake} restores them from `load()` — a checkpoint of this very
   * state (the agent's live checkpoint), checked page by page against the kept digests. Waking is
   * the restore of a resume (instantiate, copy pages and globals), so fuel, state roots and replay
   * are the same as for an agent that never hibernated. A no-op when already hibernating.
   * @throws Error when a tick is open or memory changed since the last checkpoint
   */
  hibernate (load: () => HibernatedState): void {
    if (this.#asleep !== null) return
    if (this.log.openTick !== null) throw new Error('Agent.hibernate: a tick is open')
    this.image.dropPages()
    this.instance = undefined as unknown as WebAssembly.Instance
    this.comp = null
    this.memory = undefined as unknown as WebAssembly.Memory
    this.fuelGlobal = undefined as unknown as WebAssembly.Global
    this.globals = []
    this.flushOutput = () => {}
    this.#asleep = { load }
  }

  /**
   * Restores a hibernating agent (see {@link hibernate}); a no-op when it is resident. Runs the
   * module's start function, as a resume does.
   * @throws Error `cannot wake from its checkpoint: <what differs>` when `load()` fails or returns
   *   another state (the agent stays hibernated); ModuleError as {@link Agent.restore}
   */
  wake (): void {
    const asleep = this.#asleep
    if (asleep === null) return
    try {
      const s = asleep.load()
      if (s.globals.length !== this.committedGlobals.length || s.globals.some((g, i) => Buffer.compare(g.bytes, this.committedGlobals[i]) !== 0)) throw new Error('globals differ')
      this.image.reload(s.pageCount, s.pages, s.digests)
    } catch (e) {
      throw new Error(`${this.spec.file ?? 'agent.wasm'}: cannot wake from its checkpoint: ${(e as Error).message.split('\n')[0]}`)
    }
    this.instantiate()
    this.loadImageIntoInstance()
    this.#asleep = null
  }

  /** Current memory size in 64 KiB pages. */
  get pageCount (): number { return this.image.pageCount }

  /**
   * Runs one tick. `topUps` (checked by the caller: checkpoint/fund.ts `verifyTopUp`) are applied
   * first: each is recorded as the tick's next `fund` event (payload its canonical CBOR) and its
   * amount added to the budget, before the budget is looked at and `agent_tick` runs — so an
   * exhausted agent that is topped up runs. Returns `null` without running (and without applying
   * anything) when the budget is zero and there are no top-ups (the caller pauses the agent as
   * `exhausted`). A WASI `proc_exit` ends the tick like a return of 2 (state committed) and sets
   * `exitCode`.
   * @throws Error (nothing applied, no tick begun) for more than {@link MAX_TOPUPS_PER_TICK}
   *   top-ups or more than the tick's event limits hold, an amount of 0, or a budget that would
   *   pass 2^64 − 1 microcents: the caller passes fewer and keeps the rest for a later tick
   */
  runTick (topUps?: readonly Message[]): TickResult | null {
    this.wake()
    const fromInbox = topUps === undefined
    const funds: readonly Message[] = topUps ?? this.io.pending.filter((m) => m.kind === 'fund').slice(0, MAX_TOPUPS_PER_TICK)
    if (this.budget <= 0n && funds.length === 0) return null
    const payloads = funds.map((t) => encodeTopUp(t as TopUp))
    if (funds.length > 0) {
      const added = funds.reduce((s, t) => s + (t.amount ?? 0n), 0n)
      const bytes = payloads.reduce((s, p) => s + p.length, 0)
      const lim = this.log.limits
      if (funds.length > MAX_TOPUPS_PER_TICK || funds.length > lim.events || bytes > lim.eventBytes) {
        throw new Error(`Agent.runTick: ${funds.length} top-ups (${bytes} bytes) exceed what one tick takes (${Math.min(MAX_TOPUPS_PER_TICK, lim.events)} events, ${lim.eventBytes} bytes)`)
      }
      if (funds.some((t) => (t.amount ?? 0n) <= 0n)) throw new Error('Agent.runTick: a top-up of 0 microcents')
      if (this.budget + added >= 1n << 64n) throw new Error(`Agent.runTick: top-ups of ${added} microcents would raise the budget past 2^64 − 1`)
    }
    const tick = this.tick + 1
    this.spec.inputs.beginTick(tick)
    this.log.beginTick(tick)
    for (let k = 0; k < funds.length; k++) {
      this.log.record(FUND_EVENT, payloads[k])
      this.budget += funds[k].amount ?? 0n
    }
    this.migrationRequest = null
    this.newRequests = []
    this.newMessages = []
    this.#tickIo = null
    this.#sleepAsked = false
    if (fromInbox && funds.length > 0) this.#takeTopUps(funds)
    const r = this.metered(this.component === null ? 'agent_tick' : 'tick')
    let { trap } = r
    let result: number | null = null
    if (trap === null && r.exit !== null) result = TICK.FINISHED // WASI proc_exit: the agent is done
    else if (trap === null) {
      const v = this.component === null ? r.result : TICK_RESULTS[String(r.result)]
      if (v === TICK.IDLE || v === TICK.MORE || v === TICK.FINISHED) result = v
      else trap = `agent_tick returned ${String(v)} (expected 0, 1 or 2)`
    }
    let changedPages = 0
    if (trap === null) {
      changedPages = this.commit()
      if (this.#tickIo !== null) {
        const before = new Set(this.io.requests.map((q) => q.id))
        const sent = this.io.nextMsg
        this.io = this.#tickIo
        this.newRequests = this.io.requests.filter((q) => !before.has(q.id))
        this.newMessages = this.io.outbox.filter((o) => o.n >= sent)
      }
    } else {
      this.rollback()
      this.migrationRequest = null
    }
    // sleep_until applies to the tick that asked, when it returned idle; otherwise the default pace
    const sleep = trap === null && result === TICK.IDLE && this.#sleepAsked ? this.io.sleep : null
    if (this.io.sleep !== sleep) this.io = { ...this.io, sleep }
    this.#tickIo = null
    this.tick = tick
    const cost = this.charge(r.fuel)
    this.failures = trap === null ? 0 : this.failures + 1
    this.log.endTick({ fuel: r.fuel, result, trap })
    return { tick, result, trap, fuel: r.fuel, cost, changedPages, ...(r.exit === null ? {} : { exitCode: r.exit }) }
  }

  /** Removes applied top-ups from the inbox (they are the host's input: committed whatever the tick does). */
  #takeTopUps (funds: readonly Message[]): void {
    const taken = new Set(funds)
    this.io = { ...this.io, pending: this.io.pending.filter((m) => !taken.has(m)), seen: [...this.io.seen, ...funds.map((m) => m.id)].slice(-MAX_SEEN) }
  }

  /**
   * Takes a message into the inbox between ticks: the host has stored it durably with `seq`
   * (= `io.last + 1`). The caller checks limits and duplicates ({@link Agent.hasSeen}).
   * @throws Error when `seq` is not `io.last + 1` or a tick is open (a runtime bug)
   */
  accept (m: Message): void {
    if (this.log.openTick !== null) throw new Error('Agent.accept: a tick is open')
    if (m.seq !== this.io.last + 1) throw new Error(`Agent.accept: seq ${m.seq} does not follow ${this.io.last}`)
    this.io = { ...this.io, last: m.seq, pending: [...this.io.pending, m] }
  }

  /**
   * Takes the outcome of request `req` into the inbox (an `http` message with seq `io.last + 1`,
   * stored durably by the caller) and forgets the request.
   */
  acceptOutcome (m: Message): void {
    this.accept(m)
    this.io = { ...this.io, requests: this.io.requests.filter((q) => q.id !== m.req) }
  }

  /**
   * Takes a `bounce` (a message it sent came back undelivered, `req` its number) into the inbox
   * (seq `io.last + 1`, stored durably by the caller) and drops that message from the outbox.
   */
  acceptBounce (m: Message): void {
    this.accept(m)
    this.acknowledge(m.req ?? 0)
    if (this.io.blocked) this.io = { ...this.io, blocked: false } // the bounce is the wake-up
  }

  /**
   * Takes a `room` message (the outbox has room again: message `req` was delivered; seq
   * `io.last + 1`, stored durably by the caller) into the inbox and clears {@link IoState.blocked}.
   */
  acceptRoom (m: Message): void {
    this.accept(m)
    this.io = { ...this.io, blocked: false }
  }

  /**
   * Drops message number `n` from the outbox: its recipient's host took it (or it bounced). A host
   * change between ticks, written by the next checkpoint (not an input: the agent does not see it).
   */
  acknowledge (n: number): void {
    if (this.log.openTick !== null) throw new Error('Agent.acknowledge: a tick is open')
    if (!this.io.outbox.some((o) => o.n === n)) return
    this.io = { ...this.io, outbox: this.io.outbox.filter((o) => o.n !== n) }
  }

  /** True when a message with this id is in the inbox or among the last consumed ones. */
  hasSeen (id: Uint8Array): boolean {
    const same = (x: Uint8Array): boolean => Buffer.compare(x, id) === 0
    return this.io.pending.some((m) => same(m.id)) || this.io.seen.some(same)
  }

  /** The state as of the last committed tick, for the checkpoint writer; clears the dirty set. */
  checkpointState (): Snapshot {
    this.wake()
    const { pages, digests, changed, chunkDigests, chunkMasks } = this.image.takeCheckpoint()
    return {
      pageCount: this.image.pageCount,
      pages,
      digests,
      changed,
      chunkDigests,
      chunkMasks,
      globals: this.globalsInfo.map((g, i) => ({ index: g.index, type: g.type, bytes: this.committedGlobals[i] })),
    }
  }

  /** True when memory or globals changed since the last `checkpointState`. */
  get dirty (): boolean { return this.image.dirty.size > 0 }
}
