/**
 * igord's own WASI 0.2 (preview 2) imports for component agents, granted by the `wasi` capability
 * like the preview 1 subset (hostcalls/wasi.ts), and built the same way: every value that enters
 * the agent comes from the agent's recorded clock and random source and is recorded in the event
 * log (DESIGN §8), so replay feeds it back; **no real clock, CSPRNG, file, socket or terminal
 * reaches an agent**. `@bytecodealliance/preview2-shim` is not used (it hands a component the
 * host's clock, files and network).
 *
 * Shape: {@link wasi2Host} returns the import object jco's instantiation-mode glue wants
 * (`instantiate(getCoreModule, imports)`): keys are unversioned interface names
 * (`'wasi:cli/stdout'`), functions are camelCase (`getStdout`), resources are classes in
 * PascalCase (`OutputStream`) whose methods are camelCase; a `result<T, E>` error is thrown as
 * `{ payload: E }` (jco's convention; anything else thrown traps). One interface implementation
 * serves every 0.2.x version (a component built by ComponentizeJS imports 0.2.10 and 0.2.12 side
 * by side). {@link checkWasi2Imports} is the load-time check: a component importing a WASI
 * function this file does not serve, a WASI version other than 0.2.x, or any WASI import without
 * the `wasi` capability is refused, naming the import.
 *
 * What is served (docs/ABI.md "WASI 0.2"):
 * - `wasi:clocks/wall-clock` `now` (recorded), `resolution` (1 µs); `wasi:clocks/monotonic-clock`
 *   `now` (recorded; the same ns as the wall clock), `resolution`, `subscribe-instant` /
 *   `subscribe-duration` (a pollable that is always ready: nothing waits inside a tick).
 * - `wasi:random/random`, `wasi:random/insecure`, `wasi:random/insecure-seed`: the agent's random
 *   source (CSPRNG, simulated or replayed), recorded as bytes.
 * - `wasi:cli/stdout`, `wasi:cli/stderr`: output streams whose bytes become log lines exactly as
 *   preview 1 `fd_write` to fds 1 and 2 (recorded as `wasi.stdout` / `wasi.stderr`, output);
 *   `wasi:cli/stdin`: an input stream that is closed (end of file). `wasi:cli/environment`: no
 *   variables, no arguments, no working directory. `wasi:cli/exit`: ends the agent like preview 1
 *   `proc_exit` ({@link WasiExit}, recorded as `wasi.proc_exit`). `wasi:cli/terminal-*`: not a
 *   terminal (`none`).
 * - `wasi:io/poll`, `wasi:io/streams`, `wasi:io/error`: as far as the above need: every pollable is
 *   ready, `poll` returns every index.
 * - `wasi:filesystem/preopens` `get-directories`: none; `wasi:filesystem/types`: present so a
 *   libc's adapter links, but no descriptor can exist, so every method answers `bad-descriptor`.
 * Not served (refused at load): sockets, HTTP, and any interface or function not listed in
 * {@link WASI2_FUNCTIONS}.
 *
 * Resources: the handles a component holds for these resources live in jco's glue, outside the
 * component's linear memory. Every resource here is stateless (a stream or a ready pollable), and
 * carries its {@link Wasi2Resource.kind}; {@link Wasi2Host.resource} makes a fresh one of a kind,
 * so a runtime that records which kind each handle held can rebuild the handle tables on resume.
 *
 * Sources: WASI 0.2 WIT (WebAssembly/WASI `wasip2` `wit/` packages `wasi:io`, `wasi:clocks`,
 * `wasi:random`, `wasi:cli`, `wasi:filesystem` @0.2.x); jco's JS naming and error conventions
 * (`jco transpile --instantiation`, generated glue `getErrorPayload`).
 */
import type { HostContext } from './igor.ts'
import type { Manifest } from './manifest.ts'
import { ModuleError } from '../checkpoint/errors.ts'
import { MAX_RANDOM_GET_BYTES, WASI_CAPABILITY, WasiExit, stdioLines } from './wasi.ts'

/** Clock resolution answered by both clocks, ns (1 µs, as preview 1 `clock_res_get`). */
export const WASI2_CLOCK_RESOLUTION_NS = 1000n
/** What `output-stream.check-write` permits per write, bytes (1 MiB: one full log line). */
export const WASI2_WRITE_BUDGET_BYTES = 1024 * 1024

/** Event-log names (hostcalls) of the WASI 0.2 inputs: the interface, a dot, the WIT function. */
export const WASI2_EVENTS = {
  wallClock: 'wasi:clocks/wall-clock.now',
  monotonicClock: 'wasi:clocks/monotonic-clock.now',
  randomBytes: 'wasi:random/random.get-random-bytes',
  randomU64: 'wasi:random/random.get-random-u64',
  insecureBytes: 'wasi:random/insecure.get-insecure-random-bytes',
  insecureU64: 'wasi:random/insecure.get-insecure-random-u64',
  insecureSeed: 'wasi:random/insecure-seed.insecure-seed',
} as const

/**
 * Every WASI 0.2 function igord serves, by unversioned interface, in WIT names as a component's
 * core modules import them (`[method]output-stream.write`, `[resource-drop]pollable`, `get-stdout`).
 */
export const WASI2_FUNCTIONS: Readonly<Record<string, readonly string[]>> = {
  'wasi:io/error': ['[method]error.to-debug-string', '[resource-drop]error'],
  'wasi:io/poll': ['[method]pollable.ready', '[method]pollable.block', '[resource-drop]pollable', 'poll'],
  'wasi:io/streams': [
    ...['read', 'blocking-read', 'skip', 'blocking-skip', 'subscribe'].map((m) => `[method]input-stream.${m}`),
    ...['check-write', 'write', 'blocking-write-and-flush', 'flush', 'blocking-flush', 'subscribe', 'write-zeroes',
      'blocking-write-zeroes-and-flush', 'splice', 'blocking-splice'].map((m) => `[method]output-stream.${m}`),
    '[resource-drop]input-stream', '[resource-drop]output-stream',
  ],
  'wasi:clocks/wall-clock': ['now', 'resolution'],
  'wasi:clocks/monotonic-clock': ['now', 'resolution', 'subscribe-instant', 'subscribe-duration'],
  'wasi:random/random': ['get-random-bytes', 'get-random-u64'],
  'wasi:random/insecure': ['get-insecure-random-bytes', 'get-insecure-random-u64'],
  'wasi:random/insecure-seed': ['insecure-seed'],
  'wasi:cli/environment': ['get-environment', 'get-arguments', 'initial-cwd'],
  'wasi:cli/exit': ['exit', 'exit-with-code'],
  'wasi:cli/stdin': ['get-stdin'],
  'wasi:cli/stdout': ['get-stdout'],
  'wasi:cli/stderr': ['get-stderr'],
  'wasi:cli/terminal-input': ['[resource-drop]terminal-input'],
  'wasi:cli/terminal-output': ['[resource-drop]terminal-output'],
  'wasi:cli/terminal-stdin': ['get-terminal-stdin'],
  'wasi:cli/terminal-stdout': ['get-terminal-stdout'],
  'wasi:cli/terminal-stderr': ['get-terminal-stderr'],
  'wasi:filesystem/preopens': ['get-directories'],
  'wasi:filesystem/types': [
    ...DESCRIPTOR_METHODS().map((m) => `[method]descriptor.${m}`), '[resource-drop]descriptor',
    '[method]directory-entry-stream.read-directory-entry', '[resource-drop]directory-entry-stream',
    'filesystem-error-code',
  ],
}

/** The methods of `wasi:filesystem/types` `descriptor` (0.2), WIT names. */
function DESCRIPTOR_METHODS (): string[] {
  return ['read-via-stream', 'write-via-stream', 'append-via-stream', 'advise', 'sync-data', 'get-flags', 'get-type',
    'set-size', 'set-times', 'read', 'write', 'read-directory', 'sync', 'create-directory-at', 'stat', 'stat-at',
    'set-times-at', 'link-at', 'open-at', 'readlink-at', 'remove-directory-at', 'rename-at', 'symlink-at',
    'unlink-file-at', 'is-same-object', 'metadata-hash', 'metadata-hash-at']
}

/** `wasi:` import module names: `wasi:<package>/<interface>` with an optional `@<semver>`. */
const WASI_MODULE_RE = /^(wasi:[a-z][a-z0-9-]*\/[a-z][a-z0-9-]*)(?:@(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?)?$/

/**
 * The unversioned interface of a `wasi:` import module name, or null if `module` is not WASI.
 * `wasi:io/streams@0.2.12` → `wasi:io/streams`.
 * @throws ModuleError naming the module when it is a WASI interface of a version other than 0.2.x
 */
export function wasi2Interface (module: string, file: string): string | null {
  if (!module.startsWith('wasi:')) return null
  const m = WASI_MODULE_RE.exec(module)
  if (m === null) throw new ModuleError(`${file}: imports ${module}, which is not a WASI interface name igord knows`)
  if (m[2] !== undefined && (m[2] !== '0' || m[3] !== '2')) {
    throw new ModuleError(`${file}: imports ${module}; igord serves WASI 0.2.x only`)
  }
  return m[1]
}

/**
 * Load-time check of a component's WASI imports, as its core modules import them (module
 * `wasi:io/streams@0.2.12`, name `[method]output-stream.write`). Imports of other modules are
 * ignored (the igor world and the component's own instances are checked elsewhere).
 * @param imports the core modules' function imports, `{ module, name }`
 * @param manifest the agent's manifest: every WASI import needs the `wasi` capability
 * @param file the name used in error messages
 * @throws ModuleError naming the first import that is refused (not served, wrong version, or no
 *   `wasi` capability), e.g. `agent.wasm: imports wasi:sockets/tcp@0.2.12.[method]tcp-socket.connect,
 *   which igord's WASI 0.2 does not serve (no sockets, files or network reach an agent)`
 */
export function checkWasi2Imports (imports: Iterable<{ module: string; name: string }>, manifest: Manifest, file: string): void {
  for (const { module, name } of imports) {
    const iface = wasi2Interface(module, file)
    if (iface === null) continue
    const served = WASI2_FUNCTIONS[iface]
    if (served === undefined || !served.includes(name)) {
      throw new ModuleError(`${file}: imports ${module}.${name}, which igord's WASI 0.2 does not serve (no sockets, files or network reach an agent; docs/ABI.md "WASI 0.2")`)
    }
    if (!manifest.capabilities.has(WASI_CAPABILITY)) {
      throw new ModuleError(`${file}: imports ${module}.${name}, which needs capability ${WASI_CAPABILITY} (not granted by the manifest)`)
    }
  }
}

/** What a WASI 0.2 resource made by {@link wasi2Host} is; enough to make an equivalent one. */
export type Wasi2ResourceKind = 'stdin' | 'stdout' | 'stderr' | 'pollable' | 'error'

/** Every resource object {@link wasi2Host} hands out carries its kind. */
export interface Wasi2Resource { readonly kind: Wasi2ResourceKind }

/** The WASI 0.2 imports of one component agent instance. */
export interface Wasi2Host {
  /**
   * The import object for jco's instantiation-mode `instantiate(getCoreModule, imports)`: one
   * entry per interface of {@link WASI2_FUNCTIONS} (unversioned key) when the manifest grants
   * `wasi`, else `{}`. Merge it with the igor interfaces.
   */
  imports: Record<string, Record<string, unknown>>
  /**
   * Emits (and records) any partial stdout/stderr line. The runtime calls it at the end of every
   * tick and of birth, so no output crosses a tick (or a checkpoint) boundary.
   */
  flush (): void
  /** A fresh resource of `kind` (stateless, so equivalent to any earlier one of that kind). */
  resource (kind: Wasi2ResourceKind): Wasi2Resource
}

/** A `stream-error` or other `result` error, thrown the way jco's glue turns it into `err(payload)`. */
class ResultError {
  readonly payload: unknown
  constructor (payload: unknown) { this.payload = payload }
}
const CLOSED = (): ResultError => new ResultError({ tag: 'closed' })
const BAD_DESCRIPTOR = (): ResultError => new ResultError('bad-descriptor')

/** A list length or count from the guest (u64 as bigint, or a number), as a safe number. */
function count (n: bigint | number): number {
  const v = typeof n === 'bigint' ? n : BigInt(n)
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v)
}

/**
 * Builds igord's WASI 0.2 imports for one component agent instance (see the module doc for what
 * each interface answers). Inputs go through the same path as the preview 1 subset: `admit` the
 * event (per-tick limits, before the value is taken), take it from `ctx.now()` /
 * `ctx.randomFill()` (live, simulated, or replayed from the log), `record` it. Event names are in
 * {@link WASI2_EVENTS}: the clocks record the ns (int), the random functions the bytes (bstr; a
 * u64 is its 8 little-endian bytes, the seed 16). Output lines are recorded as `wasi.stdout` /
 * `wasi.stderr`, an exit as `wasi.proc_exit` (0 for `exit(ok)`, 1 for `exit(err)`, the code for
 * `exit-with-code`).
 * Traps (thrown Error): `get-random-bytes` / `get-insecure-random-bytes` over 64 MiB, a per-tick
 * limit crossed (TickLimitTrap). `exit` throws {@link WasiExit}.
 * @param manifest the agent's manifest: without the `wasi` capability the imports are empty
 * @param ctx the agent's host context (clock, random, event log, log output; memory is not used:
 *   the canonical ABI copies every list and string)
 * @throws nothing itself
 */
export function wasi2Host (manifest: Manifest, ctx: HostContext): Wasi2Host {
  const lines = stdioLines(ctx)

  class Pollable implements Wasi2Resource {
    readonly kind = 'pollable' as const
    /** Always ready: nothing waits inside a tick (time only moves between ticks). */
    ready (): boolean { return true }
    block (): void {}
  }
  class IoError implements Wasi2Resource {
    readonly kind = 'error' as const
    toDebugString (): string { return 'igord: no such operation' }
  }
  class InputStream implements Wasi2Resource {
    readonly kind: 'stdin' = 'stdin'
    read (_len: bigint): Uint8Array { throw CLOSED() }
    blockingRead (_len: bigint): Uint8Array { throw CLOSED() }
    skip (_len: bigint): bigint { throw CLOSED() }
    blockingSkip (_len: bigint): bigint { throw CLOSED() }
    subscribe (): Pollable { return new Pollable() }
  }
  class OutputStream implements Wasi2Resource {
    readonly kind: 'stdout' | 'stderr'
    constructor (kind: 'stdout' | 'stderr' = 'stdout') { this.kind = kind }
    #write (bytes: Uint8Array): void {
      if (bytes.length === 0) return
      const fd = this.kind === 'stdout' ? 1 : 2
      // Everything buffered becomes output lines: check the tick's bounds before buffering (as fd_write).
      ctx.log.admit(this.kind === 'stdout' ? 'wasi.stdout' : 'wasi.stderr', lines.pending[0].length + lines.pending[1].length + bytes.length)
      lines.output(fd, bytes)
    }
    checkWrite (): bigint { return BigInt(WASI2_WRITE_BUDGET_BYTES) }
    write (contents: Uint8Array): void { this.#write(contents) }
    blockingWriteAndFlush (contents: Uint8Array): void { this.#write(contents) }
    flush (): void {}
    blockingFlush (): void {}
    subscribe (): Pollable { return new Pollable() }
    writeZeroes (len: bigint): void { this.#zeroes(len) }
    blockingWriteZeroesAndFlush (len: bigint): void { this.#zeroes(len) }
    #zeroes (len: bigint): void {
      if (BigInt(len) > BigInt(WASI2_WRITE_BUDGET_BYTES)) throw new ResultError({ tag: 'last-operation-failed', val: new IoError() })
      this.#write(new Uint8Array(count(len)))
    }
    /** Splicing needs an input stream with data; the only one (stdin) is closed. */
    splice (_src: InputStream, _len: bigint): bigint { throw CLOSED() }
    blockingSplice (_src: InputStream, _len: bigint): bigint { throw CLOSED() }
  }
  class Descriptor {
    constructor () { throw new Error('wasi:filesystem/types: igord has no file system (no descriptor can exist)') }
  }
  for (const m of DESCRIPTOR_METHODS()) {
    const js = m.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
    Object.defineProperty(Descriptor.prototype, js, { value: () => { throw BAD_DESCRIPTOR() }, writable: true, configurable: true })
  }
  class DirectoryEntryStream {
    constructor () { throw new Error('wasi:filesystem/types: igord has no file system (no directory can be read)') }
    readDirectoryEntry (): never { throw BAD_DESCRIPTOR() }
  }
  class TerminalInput {}
  class TerminalOutput {}

  const resource = (kind: Wasi2ResourceKind): Wasi2Resource => {
    switch (kind) {
      case 'stdin': return new InputStream()
      case 'stdout': return new OutputStream('stdout')
      case 'stderr': return new OutputStream('stderr')
      case 'pollable': return new Pollable()
      case 'error': return new IoError()
    }
  }
  if (!manifest.capabilities.has(WASI_CAPABILITY)) return { imports: {}, flush: lines.flush, resource }

  /** Ns since the Unix epoch from the agent's clock, recorded under `event`. */
  const clock = (event: string): bigint => {
    ctx.log.admit(event, 8)
    const t = BigInt.asUintN(64, ctx.now())
    ctx.log.record(event, t)
    return t
  }
  /** `len` random bytes from the agent's source, recorded under `event` (len 0: nothing recorded). */
  const random = (event: string, len: number): Uint8Array => {
    if (len > MAX_RANDOM_GET_BYTES) throw new Error(`${event}: ${len} bytes asked, over the limit of ${MAX_RANDOM_GET_BYTES}`)
    const buf = new Uint8Array(len)
    if (len === 0) return buf
    ctx.log.admit(event, len)
    ctx.randomFill(buf)
    ctx.log.record(event, buf)
    return buf
  }
  const u64 = (b: Uint8Array, off = 0): bigint => new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true)
  const exit = (code: number): never => {
    lines.flush()
    ctx.log.record('wasi.proc_exit', code)
    throw new WasiExit(code)
  }

  const imports: Record<string, Record<string, unknown>> = {
    'wasi:io/error': { Error: IoError },
    'wasi:io/poll': {
      Pollable,
      poll: (list: readonly Pollable[]): Uint32Array => Uint32Array.from(list, (_, i) => i),
    },
    'wasi:io/streams': { InputStream, OutputStream },
    'wasi:clocks/wall-clock': {
      now: (): { seconds: bigint; nanoseconds: number } => {
        const t = clock(WASI2_EVENTS.wallClock)
        return { seconds: t / 1_000_000_000n, nanoseconds: Number(t % 1_000_000_000n) }
      },
      resolution: () => ({ seconds: 0n, nanoseconds: Number(WASI2_CLOCK_RESOLUTION_NS) }),
    },
    'wasi:clocks/monotonic-clock': {
      now: (): bigint => clock(WASI2_EVENTS.monotonicClock),
      resolution: (): bigint => WASI2_CLOCK_RESOLUTION_NS,
      subscribeInstant: (_when: bigint): Pollable => new Pollable(),
      subscribeDuration: (_d: bigint): Pollable => new Pollable(),
    },
    'wasi:random/random': {
      getRandomBytes: (len: bigint): Uint8Array => random(WASI2_EVENTS.randomBytes, count(len)),
      getRandomU64: (): bigint => u64(random(WASI2_EVENTS.randomU64, 8)),
    },
    'wasi:random/insecure': {
      getInsecureRandomBytes: (len: bigint): Uint8Array => random(WASI2_EVENTS.insecureBytes, count(len)),
      getInsecureRandomU64: (): bigint => u64(random(WASI2_EVENTS.insecureU64, 8)),
    },
    'wasi:random/insecure-seed': {
      insecureSeed: (): [bigint, bigint] => {
        const b = random(WASI2_EVENTS.insecureSeed, 16)
        return [u64(b, 0), u64(b, 8)]
      },
    },
    'wasi:cli/environment': {
      getEnvironment: (): [string, string][] => [],
      getArguments: (): string[] => [],
      initialCwd: (): string | undefined => undefined,
    },
    'wasi:cli/exit': {
      exit: (status: { tag: 'ok' | 'err' }): never => exit(status?.tag === 'ok' ? 0 : 1),
      exitWithCode: (code: number): never => exit(code & 0xff),
    },
    'wasi:cli/stdin': { getStdin: (): InputStream => new InputStream() },
    'wasi:cli/stdout': { getStdout: (): OutputStream => new OutputStream('stdout') },
    'wasi:cli/stderr': { getStderr: (): OutputStream => new OutputStream('stderr') },
    'wasi:cli/terminal-input': { TerminalInput },
    'wasi:cli/terminal-output': { TerminalOutput },
    'wasi:cli/terminal-stdin': { getTerminalStdin: (): undefined => undefined },
    'wasi:cli/terminal-stdout': { getTerminalStdout: (): undefined => undefined },
    'wasi:cli/terminal-stderr': { getTerminalStderr: (): undefined => undefined },
    'wasi:filesystem/preopens': { getDirectories: (): [] => [] },
    'wasi:filesystem/types': {
      Descriptor,
      DirectoryEntryStream,
      filesystemErrorCode: (_err: unknown): undefined => undefined,
    },
  }
  return { imports, flush: lines.flush, resource }
}
