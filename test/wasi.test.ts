/**
 * Unit tests of hostcalls/wasi.ts — igord's own wasi_snapshot_preview1 subset — with WAT modules
 * assembled by binaryen: every function present when `wasi` is granted (and none otherwise), the
 * implemented ones (fd_write lines and iovecs, clocks, random, args/environ, fdstat, stdin, exit),
 * the errno every other function answers, bounds checks, what is recorded in the event log; and
 * how runtime/agent.ts and runtime/runner.ts retire an agent that calls proc_exit.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { ModuleError } from '../checkpoint/errors.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { readLive } from '../checkpoint/live.ts'
import { CheckpointWriter } from '../checkpoint/writer.ts'
import { DEFAULT_TICK_LIMITS, EventLog, TickLimitTrap } from '../hostcalls/eventlog.ts'
import type { TickLimits } from '../hostcalls/eventlog.ts'
import { checkImports } from '../hostcalls/igor.ts'
import type { HostContext } from '../hostcalls/igor.ts'
import { CAPABILITIES, capabilityFor, grantedImports, parseManifest } from '../hostcalls/manifest.ts'
import type { Manifest } from '../hostcalls/manifest.ts'
import { ERRNO, MAX_IOVS, MAX_LINE_BYTES, WASI_FUNCTIONS, WASI_MODULE, WASI_SIGNATURES, WasiExit, wasiHost, wasiImports } from '../hostcalls/wasi.ts'
import { Agent } from '../runtime/agent.ts'
import { peerIdFromPublicKey } from '../runtime/host.ts'
import { simulatedInputs } from '../runtime/inputs.ts'
import { runLoop, writeCheckpoint } from '../runtime/runner.ts'
import type { Lineage } from '../runtime/runner.ts'
import { blobBytes } from './blobs.ts'

const NOW = 1_700_000_000_123_456_789n

/** The 46 functions of wasi_snapshot_preview1 (wasi_snapshot_preview1.witx), written out independently. */
const PREVIEW1 = `args_get args_sizes_get environ_get environ_sizes_get clock_res_get clock_time_get fd_advise
  fd_allocate fd_close fd_datasync fd_fdstat_get fd_fdstat_set_flags fd_fdstat_set_rights fd_filestat_get
  fd_filestat_set_size fd_filestat_set_times fd_pread fd_prestat_get fd_prestat_dir_name fd_pwrite fd_read
  fd_readdir fd_renumber fd_seek fd_sync fd_tell fd_write path_create_directory path_filestat_get
  path_filestat_set_times path_link path_open path_readlink path_remove_directory path_rename path_symlink
  path_unlink_file poll_oneoff proc_exit proc_raise sched_yield random_get sock_accept sock_recv sock_send
  sock_shutdown`.split(/\s+/)

function watBytes (text: string): Uint8Array<ArrayBuffer> {
  const m = binaryen.parseText(text)
  try { return m.emitBinary() as Uint8Array<ArrayBuffer> } finally { m.dispose() }
}

/** `(i32, i64) -> i32` → `(param i32 i64) (result i32)`. */
function watSig (sig: string): string {
  const [params, result] = sig.split(' -> ')
  const p = params.slice(1, -1).split(', ').filter(Boolean)
  return `${p.length ? `(param ${p.join(' ')})` : ''} ${result === '()' ? '' : `(result ${result})`}`
}

/** A module importing every preview1 function and exporting `call_<name>` for each, plus `grow`. */
const ALL_WAT = `(module
  ${WASI_FUNCTIONS.map((n) => `(import "${WASI_MODULE}" "${n}" (func $${n} ${watSig(WASI_SIGNATURES[`${WASI_MODULE}.${n}`])}))`).join('\n  ')}
  (memory (export "memory") 1 20)
  ${WASI_FUNCTIONS.map((n) => {
    const sig = WASI_SIGNATURES[`${WASI_MODULE}.${n}`]
    const arity = sig.split(' -> ')[0].slice(1, -1).split(', ').filter(Boolean).length
    return `(func (export "call_${n}") ${watSig(sig)} (call $${n} ${Array.from({ length: arity }, (_, i) => `(local.get ${i})`).join(' ')}))`
  }).join('\n  ')}
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`
const ALL_BYTES = watBytes(ALL_WAT)
const ALL = new WebAssembly.Module(ALL_BYTES)

const manifest = (caps: string[]): Manifest => parseManifest(new TextEncoder().encode(JSON.stringify({ capabilities: caps })), 'test.manifest.json')

interface Harness {
  ex: Record<string, (...a: (number | bigint)[]) => any>
  mem: () => Uint8Array
  dv: () => DataView
  log: EventLog
  lines: string[]
  flush: () => void
  fills: number
}

function instantiate (over: Partial<HostContext> = {}, limits: Partial<TickLimits> = {}): Harness {
  const log = new EventLog({ ...DEFAULT_TICK_LIMITS, ...limits })
  log.beginTick(1)
  const lines: string[] = []
  let memory: WebAssembly.Memory | undefined
  const h = { fills: 0 } as Harness
  const ctx: HostContext = {
    memory: () => memory!,
    did: 'did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp',
    sign: () => new Uint8Array(64),
    budget: () => 1n,
    now: () => NOW,
    randomFill: (b) => { h.fills++; for (let i = 0; i < b.length; i++) b[i] = (i * 7 + 3) & 255 },
    log,
    emit: (l) => { lines.push(l) },
    requestMigration: () => {},
    ...over,
  } as HostContext
  const host = wasiHost(manifest(['wasi']), ctx)
  const inst = new WebAssembly.Instance(ALL, host.imports)
  memory = inst.exports.memory as WebAssembly.Memory
  return Object.assign(h, {
    ex: inst.exports as any,
    mem: () => new Uint8Array(memory!.buffer),
    dv: () => new DataView(memory!.buffer),
    log,
    lines,
    flush: host.flush,
  })
}

const utf8 = (s: string) => new TextEncoder().encode(s)
const digest = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

/** Writes iovecs (u32 buf, u32 len each) at `at`. */
function iovecs (h: Harness, at: number, parts: [number, number][]): void {
  parts.forEach(([buf, len], i) => { h.dv().setUint32(at + i * 8, buf, true); h.dv().setUint32(at + i * 8 + 4, len, true) })
}

test('the wasi capability grants exactly the 46 preview1 functions; none are provided without it', () => {
  assert.equal([...WASI_FUNCTIONS].sort(), [...PREVIEW1].sort())
  assert.is(PREVIEW1.length, 46)
  assert.equal([...CAPABILITIES.wasi.wasi_snapshot_preview1].sort(), [...PREVIEW1].sort())
  assert.is(capabilityFor(WASI_MODULE, 'fd_write'), 'wasi')
  const granted = grantedImports(manifest(['wasi']))
  for (const n of PREVIEW1) assert.ok(granted.has(`${WASI_MODULE}.${n}`), n)
  const ctx = {} as HostContext
  assert.equal(Object.keys(wasiImports(manifest(['wasi']), ctx)[WASI_MODULE]).sort(), [...PREVIEW1].sort())
  assert.equal(wasiImports(manifest(['clock', 'log', 'rand']), ctx), {})
})

test('checkImports: every preview1 import links with wasi; without it each names the capability; wrong signatures refused', () => {
  checkImports(ALL, manifest(['wasi']), 'all.wasm', ALL_BYTES)
  assert.throws(() => checkImports(ALL, manifest(['clock', 'rand', 'log']), 'all.wasm', ALL_BYTES), (e: unknown) =>
    e instanceof ModuleError && PREVIEW1.every((n) => (e as Error).message.includes(`${WASI_MODULE}.${n} needs capability "wasi"`)))
  const bad = watBytes(`(module (import "${WASI_MODULE}" "fd_write" (func (param i32) (result i32))) (memory 1))`)
  assert.throws(() => checkImports(new WebAssembly.Module(bad), manifest(['wasi']), 'bad.wasm', bad), (e: unknown) =>
    e instanceof ModuleError && (e as Error).message.includes(`${WASI_MODULE}.fd_write has type (i32) -> i32, expected (i32, i32, i32, i32) -> i32`))
})

test('fd_write gathers iovecs, emits and records complete lines per fd, writes nwritten', () => {
  const h = instantiate()
  h.mem().set(utf8('hello, '), 1000)
  h.mem().set(utf8('world\nsecond'), 2000)
  h.mem().set(utf8(' line\n\nthird'), 3000)
  iovecs(h, 100, [[1000, 7], [2000, 12], [5000, 0], [3000, 12]])
  assert.is(h.ex.call_fd_write(1, 100, 4, 200), ERRNO.SUCCESS)
  assert.is(h.dv().getUint32(200, true), 31)
  assert.equal(h.lines, ['hello, world', 'second line', ''])
  // fd 2 has its own buffer; the partial 'third' on fd 1 waits for its newline.
  h.mem().set(utf8('oops\n'), 4000)
  iovecs(h, 300, [[4000, 5]])
  assert.is(h.ex.call_fd_write(2, 300, 1, 200), ERRNO.SUCCESS)
  assert.is(h.dv().getUint32(200, true), 5)
  h.mem().set(utf8(' part\nrest'), 4100)
  iovecs(h, 300, [[4100, 10]])
  assert.is(h.ex.call_fd_write(1, 300, 1, 200), ERRNO.SUCCESS)
  assert.equal(h.lines, ['hello, world', 'second line', '', 'oops', 'third part'])
  h.flush()
  h.flush() // nothing left the second time
  assert.equal(h.lines, ['hello, world', 'second line', '', 'oops', 'third part', 'rest'])
  assert.equal(h.log.currentEvents, [
    ['wasi.stdout', 'hello, world'], ['wasi.stdout', 'second line'], ['wasi.stdout', ''],
    ['wasi.stderr', 'oops'], ['wasi.stdout', 'third part'], ['wasi.stdout', 'rest'],
  ])
})

test('fd_write: zero iovecs write 0; malformed UTF-8 becomes U+FFFD; a line over 1 MiB is cut in 1 MiB pieces', () => {
  const h = instantiate({}, { logBytes: 4 * MAX_LINE_BYTES })
  h.dv().setUint32(200, 77, true)
  assert.is(h.ex.call_fd_write(1, 100, 0, 200), ERRNO.SUCCESS)
  assert.is(h.dv().getUint32(200, true), 0)
  h.mem().set([0x61, 0xff, 0x62, 0x0a], 1000)
  iovecs(h, 100, [[1000, 4]])
  assert.is(h.ex.call_fd_write(1, 100, 1, 200), ERRNO.SUCCESS)
  assert.equal(h.lines, ['a\ufffdb'])
  // 18 iovecs of the same 60000 'x' bytes: 1,080,000 bytes without a newline.
  h.mem().fill(0x78, 1000, 61000)
  iovecs(h, 100, Array.from({ length: 18 }, (): [number, number] => [1000, 60000]))
  assert.is(h.ex.call_fd_write(2, 100, 18, 200), ERRNO.SUCCESS)
  assert.is(h.dv().getUint32(200, true), 18 * 60000)
  assert.is(h.lines.length, 2)
  assert.is(h.lines[1].length, MAX_LINE_BYTES)
  h.flush()
  assert.is(h.lines[2].length, 18 * 60000 - MAX_LINE_BYTES)
})

test('fd_write: other fds → EBADF; iovec array, buffers or nwritten outside memory → EFAULT, nothing emitted or recorded', () => {
  const h = instantiate()
  h.mem().set(utf8('no\n'), 1000)
  iovecs(h, 100, [[1000, 3]])
  for (const fd of [0, 3, 4, -1]) assert.is(h.ex.call_fd_write(fd, 100, 1, 200), ERRNO.BADF, `fd ${fd}`)
  assert.is(h.ex.call_fd_write(1, 65536 - 4, 1, 200), ERRNO.FAULT) // the iovec itself crosses the end
  assert.is(h.ex.call_fd_write(1, 65536 - 8 * MAX_IOVS + 8, MAX_IOVS, 200), ERRNO.FAULT) // iovs_len × 8 past the end
  assert.is(h.ex.call_fd_write(1, 100, MAX_IOVS + 1, 200), ERRNO.INVAL) // more than IOV_MAX iovecs
  assert.is(h.ex.call_fd_write(1, 100, 0x2000_0000, 200), ERRNO.INVAL)
  assert.is(h.ex.call_fd_write(1, 100, 1, 65536 - 3), ERRNO.FAULT)
  assert.is(h.ex.call_fd_write(1, 100, 1, -1), ERRNO.FAULT)
  iovecs(h, 100, [[1000, 3], [65536 - 2, 3]]) // second buffer crosses the end: nothing at all is written
  assert.is(h.ex.call_fd_write(1, 100, 2, 200), ERRNO.FAULT)
  iovecs(h, 100, [[-1 >>> 0, 1]])
  assert.is(h.ex.call_fd_write(1, 100, 1, 200), ERRNO.FAULT)
  h.flush()
  assert.equal(h.lines, [])
  assert.equal(h.log.currentEvents, [])
  // Bounds follow memory.grow.
  iovecs(h, 100, [[70000, 3]])
  assert.is(h.ex.call_fd_write(1, 100, 1, 200), ERRNO.FAULT)
  h.ex.grow(1)
  h.mem().set(utf8('ok\n'), 70000)
  assert.is(h.ex.call_fd_write(1, 100, 1, 200), ERRNO.SUCCESS)
  assert.equal(h.lines, ['ok'])
})

test('clock_time_get: realtime and monotonic answer ctx.now() as u64 ns and record it; other clocks EINVAL; bad pointer EFAULT', () => {
  const h = instantiate()
  assert.is(h.ex.call_clock_time_get(0, 1n, 64), ERRNO.SUCCESS)
  assert.is(h.dv().getBigUint64(64, true), NOW)
  assert.is(h.ex.call_clock_time_get(1, 0n, 72), ERRNO.SUCCESS)
  assert.is(h.dv().getBigUint64(72, true), NOW)
  for (const id of [2, 3, 4, -1]) assert.is(h.ex.call_clock_time_get(id, 0n, 80), ERRNO.INVAL, `clock ${id}`)
  assert.is(h.ex.call_clock_time_get(0, 0n, 65536 - 7), ERRNO.FAULT)
  assert.is(h.ex.call_clock_time_get(0, 0n, -1), ERRNO.FAULT)
  assert.is(h.dv().getBigUint64(80, true), 0n)
  assert.equal(h.log.currentEvents, [['wasi.clock_time_get', NOW], ['wasi.clock_time_get', NOW]])
})

test('clock_res_get: 1000 ns for realtime and monotonic, EINVAL for other clocks, EFAULT out of bounds; not recorded', () => {
  const h = instantiate()
  assert.is(h.ex.call_clock_res_get(0, 64), ERRNO.SUCCESS)
  assert.is(h.dv().getBigUint64(64, true), 1000n)
  assert.is(h.ex.call_clock_res_get(1, 72), ERRNO.SUCCESS)
  assert.is(h.dv().getBigUint64(72, true), 1000n)
  assert.is(h.ex.call_clock_res_get(2, 80), ERRNO.INVAL)
  assert.is(h.ex.call_clock_res_get(0, 65536 - 4), ERRNO.FAULT)
  assert.equal(h.log.currentEvents, [])
})

test('random_get: ctx.randomFill bytes written and recorded; len 0 records nothing; EFAULT, EINVAL write nothing', () => {
  const h = instantiate()
  assert.is(h.ex.call_random_get(100, 5), ERRNO.SUCCESS)
  assert.equal([...h.mem().subarray(100, 106)], [3, 10, 17, 24, 31, 0])
  assert.is(h.ex.call_random_get(300, 0), ERRNO.SUCCESS)
  assert.is(h.ex.call_random_get(65536 - 4, 5), ERRNO.FAULT)
  assert.is(h.ex.call_random_get(-1, 1), ERRNO.FAULT)
  assert.is(h.ex.call_random_get(0, 64 * 1024 * 1024 + 1), ERRNO.INVAL)
  assert.is(h.ex.call_random_get(65536 - 5, 5), ERRNO.SUCCESS) // exactly at the end is fine
  assert.is(h.mem()[65536 - 6], 0)
  assert.is(h.fills, 2, 'the random source is asked only for calls that succeed')
  assert.equal(h.log.currentEvents, [['wasi.random_get', Uint8Array.of(3, 10, 17, 24, 31)], ['wasi.random_get', Uint8Array.of(3, 10, 17, 24, 31)]])
})

test('args and environ are empty: sizes 0 and 0, *_get succeed writing nothing; bad pointers EFAULT', () => {
  const h = instantiate()
  for (const fn of ['call_args_sizes_get', 'call_environ_sizes_get']) {
    h.mem().fill(0xff, 0, 16)
    assert.is(h.ex[fn](0, 8), ERRNO.SUCCESS)
    assert.is(h.dv().getUint32(0, true), 0)
    assert.is(h.dv().getUint32(8, true), 0)
    assert.is(h.ex[fn](65536 - 2, 8), ERRNO.FAULT)
    assert.is(h.ex[fn](0, -1), ERRNO.FAULT)
  }
  const before = digest(h.mem())
  assert.is(h.ex.call_args_get(0, 100), ERRNO.SUCCESS)
  assert.is(h.ex.call_environ_get(0, 100), ERRNO.SUCCESS)
  assert.is(digest(h.mem()), before)
  assert.equal(h.log.currentEvents, [])
})

test('fd_fdstat_get: stdio is a character device without seek/tell rights; other fds EBADF; EFAULT out of bounds', () => {
  const h = instantiate()
  for (const fd of [0, 1, 2]) {
    h.mem().fill(0xee, 64, 64 + 24)
    assert.is(h.ex.call_fd_fdstat_get(fd, 64), ERRNO.SUCCESS)
    assert.is(h.mem()[64], 2, 'filetype character_device')
    assert.is(h.dv().getUint16(66, true), 0, 'no fdflags')
    assert.is(h.dv().getBigUint64(72, true), fd === 0 ? 2n : 64n, 'rights: fd_read for stdin, fd_write for stdout/stderr')
    assert.is(h.dv().getBigUint64(80, true), 0n)
  }
  assert.is(h.ex.call_fd_fdstat_get(3, 64), ERRNO.BADF)
  assert.is(h.ex.call_fd_fdstat_get(1, 65536 - 23), ERRNO.FAULT)
})

test('fd_read: stdin is empty (0 bytes, end of file); other fds EBADF; bad pointers EFAULT', () => {
  const h = instantiate()
  iovecs(h, 100, [[1000, 50]])
  h.dv().setUint32(200, 99, true)
  assert.is(h.ex.call_fd_read(0, 100, 1, 200), ERRNO.SUCCESS)
  assert.is(h.dv().getUint32(200, true), 0)
  for (const fd of [1, 2, 3, 9]) assert.is(h.ex.call_fd_read(fd, 100, 1, 200), ERRNO.BADF)
  assert.is(h.ex.call_fd_read(0, 100, 1, 65536 - 2), ERRNO.FAULT)
  assert.is(h.ex.call_fd_read(0, 65536 - 4, 1, 200), ERRNO.FAULT)
})

test('every file, directory and socket function answers an errno, writes nothing and records nothing', () => {
  const h = instantiate()
  h.mem().set(utf8('probe-target.txt'), 1000)
  const before = digest(h.mem())
  const { BADF, NOTCAPABLE, SPIPE, NOSYS, SUCCESS } = ERRNO
  const p = 2000 // a valid out-pointer
  // [function, args with fd 3 (no such fd), answer, args with fd 1 (stdio), answer]
  const cases: [string, (fd: number) => (number | bigint)[], number, number][] = [
    ['fd_advise', (fd) => [fd, 0n, 10n, 0], BADF, SPIPE],
    ['fd_allocate', (fd) => [fd, 0n, 10n], BADF, NOTCAPABLE],
    ['fd_close', (fd) => [fd], BADF, NOTCAPABLE],
    ['fd_datasync', (fd) => [fd], BADF, NOTCAPABLE],
    ['fd_fdstat_set_flags', (fd) => [fd, 1], BADF, NOTCAPABLE],
    ['fd_fdstat_set_rights', (fd) => [fd, 0n, 0n], BADF, NOTCAPABLE],
    ['fd_filestat_get', (fd) => [fd, p], BADF, NOTCAPABLE],
    ['fd_filestat_set_size', (fd) => [fd, 0n], BADF, NOTCAPABLE],
    ['fd_filestat_set_times', (fd) => [fd, 0n, 0n, 0], BADF, NOTCAPABLE],
    ['fd_pread', (fd) => [fd, 100, 1, 0n, p], BADF, SPIPE],
    ['fd_pwrite', (fd) => [fd, 100, 1, 0n, p], BADF, SPIPE],
    ['fd_readdir', (fd) => [fd, p, 64, 0n, p], BADF, NOTCAPABLE],
    ['fd_renumber', (fd) => [fd, 5], BADF, NOTCAPABLE],
    ['fd_seek', (fd) => [fd, 0n, 0, p], BADF, SPIPE],
    ['fd_sync', (fd) => [fd], BADF, NOTCAPABLE],
    ['fd_tell', (fd) => [fd, p], BADF, SPIPE],
    ['fd_prestat_get', (fd) => [fd, p], BADF, BADF],
    ['fd_prestat_dir_name', (fd) => [fd, p, 64], BADF, BADF],
    ['path_create_directory', (fd) => [fd, 1000, 16], BADF, NOTCAPABLE],
    ['path_filestat_get', (fd) => [fd, 0, 1000, 16, p], BADF, NOTCAPABLE],
    ['path_filestat_set_times', (fd) => [fd, 0, 1000, 16, 0n, 0n, 0], BADF, NOTCAPABLE],
    ['path_link', (fd) => [fd, 0, 1000, 16, fd, 1000, 5], BADF, NOTCAPABLE],
    ['path_open', (fd) => [fd, 0, 1000, 16, 9, -1n, -1n, 0, p], BADF, NOTCAPABLE],
    ['path_readlink', (fd) => [fd, 1000, 16, p, 64, p], BADF, NOTCAPABLE],
    ['path_remove_directory', (fd) => [fd, 1000, 16], BADF, NOTCAPABLE],
    ['path_rename', (fd) => [fd, 1000, 16, fd, 1000, 5], BADF, NOTCAPABLE],
    ['path_symlink', (fd) => [1000, 16, fd, 1000, 5], BADF, NOTCAPABLE],
    ['path_unlink_file', (fd) => [fd, 1000, 16], BADF, NOTCAPABLE],
    ['sock_accept', (fd) => [fd, 0, p], NOTCAPABLE, NOTCAPABLE],
    ['sock_recv', (fd) => [fd, 100, 1, 0, p, p + 8], NOTCAPABLE, NOTCAPABLE],
    ['sock_send', (fd) => [fd, 100, 1, 0, p], NOTCAPABLE, NOTCAPABLE],
    ['sock_shutdown', (fd) => [fd, 3], NOTCAPABLE, NOTCAPABLE],
    ['poll_oneoff', () => [100, p, 1, p + 64], NOSYS, NOSYS],
    ['proc_raise', () => [9], NOSYS, NOSYS],
    ['sched_yield', () => [], SUCCESS, SUCCESS],
  ]
  for (const [name, args, onFd3, onStdio] of cases) {
    assert.is(h.ex[`call_${name}`](...args(3)), onFd3, `${name} on fd 3`)
    assert.is(h.ex[`call_${name}`](...args(1)), onStdio, `${name} on fd 1`)
    assert.is(h.ex[`call_${name}`](...args(-1)), onFd3, `${name} on fd 0xffffffff`)
  }
  assert.is(h.ex.call_path_open(0, 0, 1000, 16, 0, 0n, 0n, 0, p), NOTCAPABLE, 'path_open relative to stdin')
  for (let fd = 0; fd < 10; fd++) assert.is(h.ex.call_fd_prestat_get(fd, p), BADF, 'no preopened directories')
  // Every preview1 function is covered by this test or by one above.
  const covered = new Set([...cases.map((c) => c[0]), 'fd_write', 'fd_read', 'fd_fdstat_get', 'clock_time_get', 'clock_res_get',
    'random_get', 'args_get', 'args_sizes_get', 'environ_get', 'environ_sizes_get', 'proc_exit'])
  assert.equal([...covered].sort(), [...PREVIEW1].sort())
  assert.is(digest(h.mem()), before, 'memory unchanged')
  assert.equal(h.log.currentEvents, [])
  assert.equal(h.lines, [])
})

test('proc_exit flushes partial output, records the code (unsigned) and throws WasiExit', () => {
  const h = instantiate()
  h.mem().set(utf8('last words'), 1000)
  iovecs(h, 100, [[1000, 10]])
  assert.is(h.ex.call_fd_write(1, 100, 1, 200), ERRNO.SUCCESS)
  assert.throws(() => h.ex.call_proc_exit(7), (e: unknown) => e instanceof WasiExit && e.code === 7 && e.message === 'proc_exit(7)')
  assert.throws(() => h.ex.call_proc_exit(-1), (e: unknown) => e instanceof WasiExit && e.code === 0xffff_ffff)
  assert.equal(h.lines, ['last words'])
  assert.equal(h.log.currentEvents, [['wasi.stdout', 'last words'], ['wasi.proc_exit', 7n], ['wasi.proc_exit', 0xffff_ffffn]])
})

// ---- the runtime: output per tick, proc_exit retires the agent ----

/**
 * An agent with `wasi`: each tick adds 1 to mem[0] and prints "n" without a newline (the line is
 * ended at the tick's end); when the count reaches `exitAt` it also sets mem[4] = 0xabc and calls
 * proc_exit(`code`). `initExit` makes agent_init call proc_exit(0).
 */
function wasiAgent (exitAt: number, code: number, initExit = false): Uint8Array {
  return watBytes(`(module
    (import "${WASI_MODULE}" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "${WASI_MODULE}" "proc_exit" (func $proc_exit (param i32)))
    (memory (export "memory") 1 2)
    (func (export "agent_init") ${initExit ? '(call $proc_exit (i32.const 0))' : ''})
    (func (export "agent_tick") (result i32)
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      ;; "tick" then the count as one digit, from an iovec at 100 → 200
      (i32.store8 (i32.const 204) (i32.add (i32.const 48) (i32.load (i32.const 0))))
      (i32.store (i32.const 100) (i32.const 200))
      (i32.store (i32.const 104) (i32.const 5))
      (drop (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 120)))
      (if (i32.eq (i32.load (i32.const 0)) (i32.const ${exitAt}))
        (then (i32.store (i32.const 4) (i32.const 0xabc)) (call $proc_exit (i32.const ${code}))))
      (i32.const 0))
    (data (i32.const 200) "tick"))`)
}

function birth (wasm: Uint8Array, lines: string[] = []) {
  const manifestBytes = utf8(JSON.stringify({ capabilities: ['wasi'], resource_limits: { max_fuel_per_tick: 1_000_000 } }))
  const m = parseManifest(manifestBytes, 'wasi.manifest.json')
  const identity = generateIdentity()
  const agent = Agent.birth({ wasm, manifest: m, identity, budget: 1_000_000_000n, price: 1000n, inputs: simulatedInputs('wasi'), emit: (l) => { lines.push(l) }, file: 'wasi.wasm' })
  return { agent, manifestBytes, identity }
}

const word = (agent: Agent, at: number): number => {
  const snap = agent.checkpointState()
  const page0 = snap.pages.find(([i]) => i === 0)?.[1]
  return page0 === undefined ? 0 : new DataView(page0.buffer, page0.byteOffset).getUint32(at, true)
}

test('Agent: a partial output line is ended at the end of its tick; proc_exit commits the tick and reports exitCode', () => {
  const lines: string[] = []
  const { agent } = birth(wasiAgent(2, 3), lines)
  const t1 = agent.runTick()!
  assert.equal([t1.result, t1.trap, t1.exitCode], [0, null, undefined])
  assert.equal(lines, ['tick1'])
  assert.equal(agent.log.pending.at(-1)!.events, [['wasi.stdout', 'tick1']])
  const t2 = agent.runTick()!
  assert.is(t2.result, 2, 'proc_exit counts as finished')
  assert.is(t2.trap, null, 'and not as a failure')
  assert.is(t2.exitCode, 3)
  assert.ok(t2.fuel > 0n)
  assert.is(agent.failures, 0)
  assert.equal(lines, ['tick1', 'tick2'])
  const rec = agent.log.pending.at(-1)!
  assert.equal([rec.tick, rec.result, rec.trap], [2, 2, null])
  assert.equal(rec.events, [['wasi.stdout', 'tick2'], ['wasi.proc_exit', 3n]])
  assert.is(word(agent, 0), 2, 'the exiting tick\'s memory writes are kept')
  assert.is(word(agent, 4), 0xabc)
})

test('Agent: proc_exit during birth is a load error', () => {
  assert.throws(() => birth(wasiAgent(9, 0, true)), (e: unknown) => e instanceof ModuleError && /birth failed: agent_init: proc_exit\(0\) during birth/.test((e as Error).message))
})

test('runLoop: proc_exit retires the agent; the final checkpoint is finished with reason proc_exit(<code>)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-wasi-'))
  try {
    const wasm = wasiAgent(3, 5)
    const { agent, manifestBytes, identity } = birth(wasm)
    const lineage: Lineage = { writer: new CheckpointWriter(dir, 'w'), identity, wasm, manifest: manifestBytes, host: peerIdFromPublicKey(generateIdentity().publicKey), epoch: 0, prev: null, lastTick: -1 }
    writeCheckpoint(agent, lineage, 'running')
    const end = await runLoop(agent, lineage, { intervalMs: 0 })
    assert.equal(end, { status: 'finished', reason: 'proc_exit(5)', ticks: 3 })
    const live = readLive(path.join(dir, 'w.ckpt'))
    assert.is(live.parsed.status, 'finished')
    assert.is(live.parsed.reason, 'proc_exit(5)')
    assert.is(live.parsed.tick, 3)
    const segment = EventLog.decodeSegment(blobBytes(dir, live.parsed.log!))
    assert.equal(segment.at(-1)!.events.at(-1), ['wasi.proc_exit', 5n])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

// ---- per-tick limits (docs/ABI.md "Per-tick limits") ----

/** Calls `f` until it throws; returns the calls that succeeded and the error. */
function flood (f: () => unknown, max = 1_000_000): { ok: number; error: unknown } {
  for (let ok = 0; ok < max; ok++) {
    try { f() } catch (error) { return { ok, error } }
  }
  return assert.unreachable('the flood never trapped') as never
}
const isTrap = (e: unknown, message: string) => e instanceof TickLimitTrap && (e as Error).message === message
const thrown = (f: () => unknown): unknown => { try { f() } catch (e) { return e } return null }

test('fd_write flood: 1 KiB lines trap once the tick would pass 1 MiB of output, naming max_log_bytes_per_tick; the refused write outputs nothing', () => {
  const h = instantiate()
  h.mem().fill(0x77, 1000, 1000 + 1023)
  h.mem()[1000 + 1023] = 0x0a
  iovecs(h, 100, [[1000, 1024]])
  const { ok, error } = flood(() => h.ex.call_fd_write(1, 100, 1, 200))
  assert.is(ok, 1025)
  assert.ok(isTrap(error, 'tick limit: 1049599 log bytes > max_log_bytes_per_tick 1048576'), String(error))
  assert.is(h.lines.length, 1025)
  assert.is(h.log.usage.logBytes, 1025 * 1023)
})

test('fd_write: bytes waiting for their newline count toward the log limit when written; flush emits what was accepted', () => {
  const h = instantiate({}, { logBytes: 100 })
  h.mem().fill(0x61, 1000, 1100)
  iovecs(h, 100, [[1000, 60]])
  assert.is(h.ex.call_fd_write(1, 100, 1, 200), ERRNO.SUCCESS)
  iovecs(h, 100, [[1000, 41]])
  assert.ok(isTrap(thrown(() => h.ex.call_fd_write(2, 100, 1, 200)), 'tick limit: 101 log bytes > max_log_bytes_per_tick 100'))
  assert.equal(h.lines, [])
  h.flush()
  assert.equal(h.lines, ['a'.repeat(60)])
})

test('flush crossing a limit throws the trap and leaves no partial line of either fd for the next tick', () => {
  const h = instantiate({}, { events: 2 })
  h.mem().set(utf8('xa\nb\nc'), 1000)
  iovecs(h, 100, [[1000, 1]]) // "x" on stderr, no newline
  assert.is(h.ex.call_fd_write(2, 100, 1, 200), ERRNO.SUCCESS)
  iovecs(h, 100, [[1001, 5]]) // "a\nb\nc" on stdout: a and b recorded, c waits
  assert.is(h.ex.call_fd_write(1, 100, 1, 200), ERRNO.SUCCESS)
  assert.equal(h.lines, ['a', 'b'])
  assert.ok(isTrap(thrown(h.flush), 'tick limit: 3 events > max_events_per_tick 2'))
  h.log.endTick({ fuel: 0n, result: null, trap: 'x' })
  h.log.beginTick(2)
  h.flush()
  assert.equal(h.lines, ['a', 'b'])
  assert.equal(h.log.currentEvents, [])
})

test('random_get flood: 64 KiB requests trap at the 17th (1 MiB per tick), before any byte is drawn', () => {
  const h = instantiate()
  h.ex.grow(1)
  const { ok, error } = flood(() => h.ex.call_random_get(0, 65536))
  assert.is(ok, 16)
  assert.ok(isTrap(error, 'tick limit: 1114112 random bytes > max_random_bytes_per_tick 1048576'), String(error))
  assert.is(h.fills, 16)
})

test('clock_time_get flood: the 10,001st read traps naming max_events_per_tick, before the clock is read', () => {
  let reads = 0
  const h = instantiate({ now: () => { reads++; return NOW } })
  const { ok, error } = flood(() => h.ex.call_clock_time_get(0, 0n, 64))
  assert.is(ok, 10_000)
  assert.ok(isTrap(error, 'tick limit: 10001 events > max_events_per_tick 10000'), String(error))
  assert.is(reads, 10_000)
})

test('Agent: output still waiting at the end of a tick that crosses a limit traps the tick (rolled back, a failure), it does not escape', () => {
  const wasm = watBytes(`(module
    (import "${WASI_MODULE}" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "agent_tick") (result i32)
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (i32.store (i32.const 100) (i32.const 200))
      (i32.store (i32.const 104) (i32.const 3))
      (drop (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 120)))
      (i32.const 0))
    (data (i32.const 200) "a\\nb"))`)
  const m = parseManifest(utf8(JSON.stringify({ capabilities: ['wasi'], resource_limits: { max_events_per_tick: 1 } })), 'wasi.manifest.json')
  const lines: string[] = []
  const agent = Agent.birth({ wasm, manifest: m, identity: generateIdentity(), budget: 1_000_000_000n, price: 1000n, inputs: simulatedInputs('wasi'), emit: (l) => { lines.push(l) }, file: 'wasi.wasm' })
  const r = agent.runTick()!
  assert.equal([r.result, r.trap, r.changedPages], [null, 'tick limit: 2 events > max_events_per_tick 1', 0])
  assert.is(agent.failures, 1)
  assert.equal(lines, ['a'])
  assert.equal(agent.log.pending.at(-1)!.events, [['wasi.stdout', 'a']])
  assert.is(agent.runTick()!.trap, 'tick limit: 2 events > max_events_per_tick 1', 'the next tick starts clean and fails the same way')
  assert.equal(lines, ['a', 'a'])
})

test.run()
