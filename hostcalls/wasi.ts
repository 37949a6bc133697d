/**
 * igord's own `wasi_snapshot_preview1` subset (DESIGN §4), granted by the `wasi` capability.
 *
 * Every preview1 function is present, so any wasi-libc program links, but only what a sandboxed,
 * checkpointable agent can have is implemented: `fd_write` to fds 1 and 2 goes to the agent's log,
 * `clock_time_get` and `random_get` answer from the recorded clock and random source, arguments and
 * environment are empty, `proc_exit` retires the agent, `sched_yield` succeeds. Everything touching
 * files or sockets answers an errno: there is no file system and no socket, ever, and there are no
 * preopened directories. `node:wasi` is not used (it would hand the agent the host's files).
 *
 * Source of names, signatures, errno values and struct layouts: WASI `wasi_snapshot_preview1`
 * (witx, as in wasi-libc's `wasi/api.h`). Pointers and lengths are i32 arguments read as unsigned;
 * every memory access is checked against the memory's current size and answers `EFAULT` (21)
 * without writing or recording anything when a buffer is outside it.
 *
 * Recorded in the event log (DESIGN §8), through the same `EventLog.record` as the `igor` module:
 * `wasi.clock_time_get` (int: the ns written), `wasi.random_get` (bytes), `wasi.stdout` /
 * `wasi.stderr` (text: one output line, output rather than input), `wasi.proc_exit` (int: the code).
 */
import type { HostContext } from './igor.ts'
import type { Manifest } from './manifest.ts'

/** The import module name of WASI preview 1. */
export const WASI_MODULE = 'wasi_snapshot_preview1'

/** The capability that grants every {@link WASI_MODULE} import. */
export const WASI_CAPABILITY = 'wasi'

/**
 * WASI errno values used by igord (`errno` enum of wasi_snapshot_preview1; u16 on the wire,
 * returned as the i32 result of every function but `proc_exit`).
 */
export const ERRNO = {
  SUCCESS: 0,
  BADF: 8,
  FAULT: 21,
  INVAL: 28,
  NOSYS: 52,
  SPIPE: 70,
  NOTCAPABLE: 76,
} as const

/**
 * Every `wasi_snapshot_preview1` function with its core wasm signature, as
 * `wasi_snapshot_preview1.<name>` → `(params) -> result` (the format of `IMPORT_SIGNATURES` in
 * `igor.ts`). Source: wasi_snapshot_preview1.witx lowered to core wasm types.
 */
export const WASI_SIGNATURES: Readonly<Record<string, string>> = Object.fromEntries(Object.entries({
  args_get: '(i32, i32) -> i32',
  args_sizes_get: '(i32, i32) -> i32',
  environ_get: '(i32, i32) -> i32',
  environ_sizes_get: '(i32, i32) -> i32',
  clock_res_get: '(i32, i32) -> i32',
  clock_time_get: '(i32, i64, i32) -> i32',
  fd_advise: '(i32, i64, i64, i32) -> i32',
  fd_allocate: '(i32, i64, i64) -> i32',
  fd_close: '(i32) -> i32',
  fd_datasync: '(i32) -> i32',
  fd_fdstat_get: '(i32, i32) -> i32',
  fd_fdstat_set_flags: '(i32, i32) -> i32',
  fd_fdstat_set_rights: '(i32, i64, i64) -> i32',
  fd_filestat_get: '(i32, i32) -> i32',
  fd_filestat_set_size: '(i32, i64) -> i32',
  fd_filestat_set_times: '(i32, i64, i64, i32) -> i32',
  fd_pread: '(i32, i32, i32, i64, i32) -> i32',
  fd_prestat_get: '(i32, i32) -> i32',
  fd_prestat_dir_name: '(i32, i32, i32) -> i32',
  fd_pwrite: '(i32, i32, i32, i64, i32) -> i32',
  fd_read: '(i32, i32, i32, i32) -> i32',
  fd_readdir: '(i32, i32, i32, i64, i32) -> i32',
  fd_renumber: '(i32, i32) -> i32',
  fd_seek: '(i32, i64, i32, i32) -> i32',
  fd_sync: '(i32) -> i32',
  fd_tell: '(i32, i32) -> i32',
  fd_write: '(i32, i32, i32, i32) -> i32',
  path_create_directory: '(i32, i32, i32) -> i32',
  path_filestat_get: '(i32, i32, i32, i32, i32) -> i32',
  path_filestat_set_times: '(i32, i32, i32, i32, i64, i64, i32) -> i32',
  path_link: '(i32, i32, i32, i32, i32, i32, i32) -> i32',
  path_open: '(i32, i32, i32, i32, i32, i64, i64, i32, i32) -> i32',
  path_readlink: '(i32, i32, i32, i32, i32, i32) -> i32',
  path_remove_directory: '(i32, i32, i32) -> i32',
  path_rename: '(i32, i32, i32, i32, i32, i32) -> i32',
  path_symlink: '(i32, i32, i32, i32, i32) -> i32',
  path_unlink_file: '(i32, i32, i32) -> i32',
  poll_oneoff: '(i32, i32, i32, i32) -> i32',
  proc_exit: '(i32) -> ()',
  proc_raise: '(i32) -> i32',
  sched_yield: '() -> i32',
  random_get: '(i32, i32) -> i32',
  sock_accept: '(i32, i32, i32) -> i32',
  sock_recv: '(i32, i32, i32, i32, i32, i32) -> i32',
  sock_send: '(i32, i32, i32, i32, i32) -> i32',
  sock_shutdown: '(i32, i32) -> i32',
}).map(([name, sig]) => [`${WASI_MODULE}.${name}`, sig]))

/** The names of every `wasi_snapshot_preview1` function (46), all granted by the `wasi` capability. */
export const WASI_FUNCTIONS: readonly string[] = Object.keys(WASI_SIGNATURES).map((k) => k.slice(WASI_MODULE.length + 1))

/** Largest `random_get` request, bytes (64 MiB, as `igor.rand_bytes`); larger answers `EINVAL`. */
export const MAX_RANDOM_GET_BYTES = 64 * 1024 * 1024
/** Longest output line, bytes (1 MiB, as `igor.log_emit`); a longer line is cut into 1 MiB pieces. */
export const MAX_LINE_BYTES = 1024 * 1024
/** Most iovecs one `fd_write` takes (POSIX `IOV_MAX`, 1024); more answers `EINVAL`. */
export const MAX_IOVS = 1024
/** `clock_res_get` answer for the realtime and monotonic clocks, ns (1 µs). */
export const CLOCK_RESOLUTION_NS = 1000n

/** `clockid`: wall-clock time. */
const CLOCK_REALTIME = 0
/** `clockid`: monotonic time. */
const CLOCK_MONOTONIC = 1
/** `filetype::character_device`. */
const FILETYPE_CHARACTER_DEVICE = 2
/** `rights::fd_read` and `rights::fd_write`. */
const RIGHTS_FD_READ = 1n << 1n
const RIGHTS_FD_WRITE = 1n << 6n

/**
 * Thrown by `proc_exit(code)`: the agent asked to end its life. The runtime commits the tick's
 * state (it is not a failure), records nothing more and retires the agent with status `finished`
 * and reason `proc_exit(<code>)`. `code` is the exit code read as unsigned 32-bit.
 */
export class WasiExit extends Error {
  readonly code: number
  constructor (code: number) {
    super(`proc_exit(${code})`)
    this.name = 'WasiExit'
    this.code = code
  }
}

/** The WASI functions of one agent instance and the flush of its partial output lines. */
export interface WasiHost {
  /** `{ wasi_snapshot_preview1: {…every function…} }` when the manifest grants `wasi`, else `{}`. */
  imports: WebAssembly.Imports
  /**
   * Emits (and records) any partial line still buffered for fds 1 and 2. The runtime calls it at
   * the end of every tick and of birth, so no output crosses a tick (or a checkpoint) boundary.
   */
  flush (): void
}

const utf8Lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true })

/** The partial output line of one fd: a growable byte buffer (appends are amortized O(1) per byte). */
export class LineBuffer {
  #buf = new Uint8Array(0)
  #len = 0
  get length (): number { return this.#len }
  append (bytes: Uint8Array): void {
    if (bytes.length === 0) return
    const need = this.#len + bytes.length
    if (need > this.#buf.length) {
      const grown = new Uint8Array(Math.max(need, 2 * this.#buf.length, 256))
      grown.set(this.#buf.subarray(0, this.#len))
      this.#buf = grown
    }
    this.#buf.set(bytes, this.#len)
    this.#len = need
  }
  /** Everything buffered (a copy), leaving the buffer empty. */
  take (): Uint8Array {
    const out = this.#buf.slice(0, this.#len)
    this.#buf = new Uint8Array(0)
    this.#len = 0
    return out
  }
  /** The first `n` bytes (a copy), keeping the rest. */
  takeFirst (n: number): Uint8Array {
    const out = this.#buf.slice(0, n)
    this.#buf.copyWithin(0, n, this.#len)
    this.#len -= n
    return out
  }
}

/**
 * The output lines of fds 1 (stdout) and 2 (stderr) of one agent instance, shared by the
 * preview 1 subset and WASI 0.2 (hostcalls/wasi2.ts): `output(fd, chunk)` splits bytes into lines
 * at `\n` (a partial line waits; lines over {@link MAX_LINE_BYTES} are cut), decodes UTF-8
 * (malformed → U+FFFD), records each line as `wasi.stdout` / `wasi.stderr` and passes it to
 * `ctx.emit`; `flush()` emits both partial lines; `pending` holds them (fd 1 first), so a caller
 * can count their bytes against the tick's limits before it buffers more.
 * @param ctx the agent's host context (event log, log output)
 * @throws nothing itself; ctx's callbacks may throw (e.g. TickLimitTrap from `log.record`)
 */
export function stdioLines (ctx: HostContext): { pending: readonly LineBuffer[]; output (fd: 1 | 2, chunk: Uint8Array): void; flush (): void } {
  const pending = [new LineBuffer(), new LineBuffer()] // fd 1, fd 2
  const emitLine = (fd: number, bytes: Uint8Array): void => {
    for (let off = 0; off === 0 || off < bytes.length; off += MAX_LINE_BYTES) {
      const line = utf8Lossy.decode(bytes.subarray(off, off + MAX_LINE_BYTES))
      ctx.log.record(fd === 1 ? 'wasi.stdout' : 'wasi.stderr', line)
      ctx.emit(line)
    }
  }
  const output = (fd: 1 | 2, chunk: Uint8Array): void => {
    const buf = pending[fd - 1]
    let start = 0
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, nl)
      if (buf.length === 0) emitLine(fd, piece)
      else {
        buf.append(piece)
        emitLine(fd, buf.take())
      }
      start = nl + 1
    }
    buf.append(chunk.subarray(start))
    while (buf.length >= MAX_LINE_BYTES) emitLine(fd, buf.takeFirst(MAX_LINE_BYTES))
  }
  const flush = (): void => {
    // Take both partial lines first: if recording one crosses a per-tick limit, nothing is left
    // over for the next tick (whose replay would not have it).
    const rest = pending.map((b) => b.take())
    rest.forEach((bytes, i) => { if (bytes.length > 0) emitLine(i + 1, bytes) })
  }
  return { pending, output, flush }
}

/**
 * Builds igord's WASI subset for one agent instance. Answers, in short (docs/ABI.md "WASI subset"
 * has the full table):
 * - `fd_write(fd, iovs, iovs_len, nwritten)`: fds 1 and 2 gather the iovecs (8 bytes each: u32
 *   buf, u32 len), split them into lines at `\n` (per fd; a partial line waits for its end or the
 *   end of the tick; lines over 1 MiB are cut), decode UTF-8 (malformed → U+FFFD), record each
 *   line as `wasi.stdout`/`wasi.stderr` and pass it to `ctx.emit`; other fds `EBADF`.
 * - `fd_read`: fd 0 is an empty stdin (0 bytes, end of file); other fds `EBADF`.
 * - `fd_fdstat_get` on 0–2: a character device with `fd_read` (0) or `fd_write` (1, 2) rights and
 *   no seek/tell rights (so wasi-libc line-buffers stdout); other fds `EBADF`.
 * - `fd_prestat_get`: `EBADF` for every fd (no preopened directories).
 * - `clock_time_get(id, precision, ptr)`: realtime and monotonic → `ctx.now()` (ns, u64), recorded
 *   as `wasi.clock_time_get`; CPU-time clocks and unknown ids `EINVAL`. `clock_res_get`: 1000 ns.
 * - `random_get(buf, len)`: `ctx.randomFill`, recorded as `wasi.random_get`; len 0 records
 *   nothing; len > 64 MiB `EINVAL`.
 * - `args_sizes_get` / `environ_sizes_get`: 0 and 0; `args_get` / `environ_get`: nothing to write.
 * - `proc_exit(code)`: flushes output, records `wasi.proc_exit` (the code) and throws
 *   {@link WasiExit}. `sched_yield`: success.
 * - other `fd_*`: `EBADF` for fds other than 0–2; on 0–2 `ESPIPE` for seek-like calls, else
 *   `ENOTCAPABLE`. `path_*`: `EBADF` (fd ≥ 3) or `ENOTCAPABLE` (0–2). `sock_*`: `ENOTCAPABLE`.
 *   `poll_oneoff`, `proc_raise`: `ENOSYS`.
 * Per-tick limits (docs/ABI.md "Per-tick limits"): `clock_time_get` and `random_get` are checked
 * before the value is taken, `fd_write` checks the bytes it accepts plus any waiting partial line
 * when written (more than {@link MAX_IOVS} iovecs `EINVAL`); crossing a limit throws TickLimitTrap.
 * `flush` takes both partial lines before recording them, so a trap there leaves none behind.
 * @param manifest the agent's manifest: without the `wasi` capability the imports are empty
 * @param ctx the agent's host context (memory, clock, random, event log, log output)
 * @throws nothing itself; `proc_exit` throws WasiExit, and ctx's callbacks may throw
 */
export function wasiHost (manifest: Manifest, ctx: HostContext): WasiHost {
  const { pending, output, flush } = stdioLines(ctx)
  if (!manifest.capabilities.has(WASI_CAPABILITY)) return { imports: {}, flush }

  /** Is [ptr, ptr+len) inside memory? (ptr, len unsigned) */
  const inside = (ptr: number, len: number): boolean => ptr + len <= ctx.memory().buffer.byteLength
  const view = (): DataView => new DataView(ctx.memory().buffer)
  const isStdio = (fd: number): boolean => (fd >>> 0) <= 2
  /** Answer of an fd function that has no meaning here: EBADF unless the fd is stdio. */
  const onStdio = (onStdioErrno: number) => (fd: number): number => isStdio(fd) ? onStdioErrno : ERRNO.BADF
  const notCapable = onStdio(ERRNO.NOTCAPABLE)
  const spipe = onStdio(ERRNO.SPIPE)
  const always = (errno: number) => (): number => errno
  /** For args/environ: writes two zero u32s (count, buffer size). */
  const zeroSizes = (countPtr: number, sizePtr: number): number => {
    countPtr >>>= 0; sizePtr >>>= 0
    if (!inside(countPtr, 4) || !inside(sizePtr, 4)) return ERRNO.FAULT
    const dv = view()
    dv.setUint32(countPtr, 0, true)
    dv.setUint32(sizePtr, 0, true)
    ctx.wrote?.(countPtr, 4); ctx.wrote?.(sizePtr, 4)
    return ERRNO.SUCCESS
  }

  const fns: Record<string, (...args: never[]) => unknown> = {
    args_get: always(ERRNO.SUCCESS),
    args_sizes_get: zeroSizes,
    environ_get: always(ERRNO.SUCCESS),
    environ_sizes_get: zeroSizes,
    clock_res_get: (id: number, ptr: number): number => {
      ptr >>>= 0
      if (id !== CLOCK_REALTIME && id !== CLOCK_MONOTONIC) return ERRNO.INVAL
      if (!inside(ptr, 8)) return ERRNO.FAULT
      view().setBigUint64(ptr, CLOCK_RESOLUTION_NS, true)
      ctx.wrote?.(ptr, 8)
      return ERRNO.SUCCESS
    },
    clock_time_get: (id: number, _precision: bigint, ptr: number): number => {
      ptr >>>= 0
      if (id !== CLOCK_REALTIME && id !== CLOCK_MONOTONIC) return ERRNO.INVAL
      if (!inside(ptr, 8)) return ERRNO.FAULT
      ctx.log.admit('wasi.clock_time_get', 8)
      const t = BigInt.asUintN(64, ctx.now())
      ctx.log.record('wasi.clock_time_get', t)
      view().setBigUint64(ptr, t, true)
      ctx.wrote?.(ptr, 8)
      return ERRNO.SUCCESS
    },
    random_get: (ptr: number, len: number): number => {
      ptr >>>= 0; len >>>= 0
      if (len === 0) return ERRNO.SUCCESS
      if (len > MAX_RANDOM_GET_BYTES) return ERRNO.INVAL
      if (!inside(ptr, len)) return ERRNO.FAULT
      ctx.log.admit('wasi.random_get', len)
      const buf = new Uint8Array(len)
      ctx.randomFill(buf)
      ctx.log.record('wasi.random_get', buf)
      new Uint8Array(ctx.memory().buffer, ptr, len).set(buf)
      ctx.wrote?.(ptr, len)
      return ERRNO.SUCCESS
    },
    fd_write: (fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number => {
      fd >>>= 0; iovs >>>= 0; iovsLen >>>= 0; nwrittenPtr >>>= 0
      if (fd !== 1 && fd !== 2) return ERRNO.BADF
      if (iovsLen > MAX_IOVS) return ERRNO.INVAL
      if (!inside(iovs, iovsLen * 8) || !inside(nwrittenPtr, 4)) return ERRNO.FAULT
      const dv = view()
      const parts: [number, number][] = []
      let total = 0
      for (let i = 0; i < iovsLen; i++) {
        const buf = dv.getUint32(iovs + i * 8, true)
        const len = dv.getUint32(iovs + i * 8 + 4, true)
        if (!inside(buf, len)) return ERRNO.FAULT
        total += len
        if (len > 0) parts.push([buf, len])
      }
      if (total > 0xffff_ffff) return ERRNO.INVAL
      // Everything buffered or written will become output lines: check the tick's log bounds
      // before buffering anything (a write that would cross them traps and outputs nothing).
      if (total > 0) ctx.log.admit(fd === 1 ? 'wasi.stdout' : 'wasi.stderr', pending[0].length + pending[1].length + total)
      const mem = ctx.memory().buffer
      for (const [buf, len] of parts) output(fd as 1 | 2, new Uint8Array(mem, buf, len))
      view().setUint32(nwrittenPtr, total, true)
      ctx.wrote?.(nwrittenPtr, 4)
      return ERRNO.SUCCESS
    },
    fd_read: (fd: number, iovs: number, iovsLen: number, nreadPtr: number): number => {
      fd >>>= 0; iovs >>>= 0; iovsLen >>>= 0; nreadPtr >>>= 0
      if (fd !== 0) return ERRNO.BADF
      if (!inside(iovs, iovsLen * 8) || !inside(nreadPtr, 4)) return ERRNO.FAULT
      view().setUint32(nreadPtr, 0, true) // stdin is empty: end of file
      ctx.wrote?.(nreadPtr, 4)
      return ERRNO.SUCCESS
    },
    fd_fdstat_get: (fd: number, ptr: number): number => {
      fd >>>= 0; ptr >>>= 0
      if (!isStdio(fd)) return ERRNO.BADF
      if (!inside(ptr, 24)) return ERRNO.FAULT
      new Uint8Array(ctx.memory().buffer, ptr, 24).fill(0)
      ctx.wrote?.(ptr, 24)
      const dv = view()
      dv.setUint8(ptr, FILETYPE_CHARACTER_DEVICE) // fs_filetype; fs_flags (u16 at 2) stay 0
      dv.setBigUint64(ptr + 8, fd === 0 ? RIGHTS_FD_READ : RIGHTS_FD_WRITE, true) // fs_rights_base
      return ERRNO.SUCCESS // fs_rights_inheriting (u64 at 16) stays 0
    },
    fd_prestat_get: always(ERRNO.BADF),
    fd_prestat_dir_name: always(ERRNO.BADF),
    fd_advise: spipe,
    fd_allocate: notCapable,
    fd_close: notCapable,
    fd_datasync: notCapable,
    fd_fdstat_set_flags: notCapable,
    fd_fdstat_set_rights: notCapable,
    fd_filestat_get: notCapable,
    fd_filestat_set_size: notCapable,
    fd_filestat_set_times: notCapable,
    fd_pread: spipe,
    fd_pwrite: spipe,
    fd_readdir: notCapable,
    fd_renumber: notCapable,
    fd_seek: spipe,
    fd_sync: notCapable,
    fd_tell: spipe,
    path_create_directory: notCapable,
    path_filestat_get: notCapable,
    path_filestat_set_times: notCapable,
    path_link: notCapable,
    path_open: notCapable,
    path_readlink: notCapable,
    path_remove_directory: notCapable,
    path_rename: notCapable,
    path_symlink: (_old: number, _oldLen: number, fd: number): number => notCapable(fd),
    path_unlink_file: notCapable,
    poll_oneoff: always(ERRNO.NOSYS),
    proc_exit: (code: number): never => {
      code >>>= 0
      flush()
      ctx.log.record('wasi.proc_exit', code)
      throw new WasiExit(code)
    },
    proc_raise: always(ERRNO.NOSYS),
    sched_yield: always(ERRNO.SUCCESS),
    sock_accept: always(ERRNO.NOTCAPABLE),
    sock_recv: always(ERRNO.NOTCAPABLE),
    sock_send: always(ERRNO.NOTCAPABLE),
    sock_shutdown: always(ERRNO.NOTCAPABLE),
  }
  return { imports: { [WASI_MODULE]: fns as unknown as Record<string, WebAssembly.ImportValue> }, flush }
}

/**
 * The import object of igord's WASI subset alone: `{ wasi_snapshot_preview1: {…} }` when the
 * manifest grants `wasi`, else `{}`. Partial output lines are only emitted on a newline or at
 * `proc_exit`; use {@link wasiHost} to flush them at the end of a tick.
 */
export function wasiImports (manifest: Manifest, ctx: HostContext): WebAssembly.Imports {
  return wasiHost(manifest, ctx).imports
}
