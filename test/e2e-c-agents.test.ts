/**
 * End to end through the real CLI with the C agents of agents-c/ (WASI reactors built by
 * `make agents` with clang + wasi-libc): the hashmap agent's malloc-built table after stop, copy
 * of the .ckpt alone and resume equals an uninterrupted control run's (same state root); the probe
 * agent gets an errno for every file, directory and socket operation, sees no environment, leaves
 * the host's files untouched and retires itself with exit(0); `igord verify` (and `--replay`) finds
 * both lives VALID.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cleanup, IGORD, igord, inspectJson, ROOT, tempDir } from './helpers.ts'
import type { Run } from './helpers.ts'

test.after(cleanup)

/** Path of a built C agent's wasm. */
const cAgent = (name: string): string => join(ROOT, 'agents-c', 'build', `${name}.wasm`)

/** Runs igord to completion in `cwd` with extra environment variables. */
function igordIn (cwd: string, env: Record<string, string>, args: string[]): Run {
  const r = spawnSync(process.execPath, [IGORD, ...args], { cwd, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 })
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
}

test('the C agents are built and load as WASI reactors', () => {
  for (const name of ['hashmap', 'probe']) {
    assert.ok(existsSync(cAgent(name)), `${cAgent(name)} missing: run make agents`)
    assert.ok(existsSync(cAgent(name).replace(/\.wasm$/, '.manifest.json')))
    const exports = WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(cAgent(name))))
    assert.ok(exports.some((e) => e.name === '_initialize'), 'a reactor exports _initialize')
    assert.ok(exports.some((e) => e.name === 'agent_tick'))
  }
})

test('hashmap: the malloc-built table after stop, copy and resume equals an uninterrupted control run (same state root)', () => {
  const control = tempDir(); const a = tempDir(); const b = tempDir()
  const seed = ['--sim-seed', 'hashmap-e2e', '--interval', '0ms']
  const c = igord(['run', cAgent('hashmap'), '--dir', control, '--ticks', '30', ...seed])
  assert.is(c.code, 0, c.stderr)
  const r1 = igord(['run', cAgent('hashmap'), '--dir', a, '--ticks', '11', ...seed])
  assert.is(r1.code, 0, r1.stderr)
  copyFileSync(join(a, 'hashmap.ckpt'), join(b, 'hashmap.ckpt'))
  assert.equal(readdirSync(b), ['hashmap.ckpt'])
  const r2 = igord(['resume', join(b, 'hashmap.ckpt'), '--ticks', '19', ...seed])
  assert.is(r2.code, 0, r2.stderr)

  // The table really grows (printf → fd_write → the agent log), and the resumed run continues it.
  const summary = (out: string) => [...out.matchAll(/^\[hashmap\] hashmap: tick (\d+), entries (\d+), buckets (\d+).*checksum ([0-9a-f]{16})$/gm)]
    .map((m) => ({ tick: Number(m[1]), entries: Number(m[2]), buckets: Number(m[3]), checksum: m[4] }))
  const all = summary(c.stdout)
  assert.equal(all.map((s) => s.tick), Array.from({ length: 30 }, (_, i) => i + 1))
  assert.equal(all.map((s) => s.entries), Array.from({ length: 30 }, (_, i) => 28 * (i + 1)))
  assert.ok(all[29].buckets > all[0].buckets, 'the bucket array was reallocated as it grew')
  assert.match(c.stdout, /^\[hashmap\] hashmap: milestone, 10 ticks$/m)
  assert.equal([...summary(r1.stdout), ...summary(r2.stdout)], all, 'stop + resume prints exactly the control run\'s lines')

  const want = inspectJson(join(control, 'hashmap.ckpt'))
  const got = inspectJson(join(b, 'hashmap.ckpt'))
  assert.is(got.tick, 30)
  assert.is(want.tick, 30)
  assert.ok(Number(want.pageCount) > 2, 'the heap grew past its initial pages')
  assert.is(got.stateRoot, want.stateRoot, 'state roots (memory, globals, fuel, budget) are equal')
  assert.is(got.pageCount, want.pageCount)
  assert.is(got.fuel, want.fuel)
  assert.is(got.budget, want.budget)
  assert.ok(got.did !== want.did, 'two different agents, so the equality is not an accident of identity')

  const merged = tempDir()
  for (const d of [a, b]) for (const sub of ['history', 'blobs']) cpSync(join(d, sub), join(merged, sub), { recursive: true })
  for (const dir of [merged, control]) {
    const v = igord(['verify', dir])
    assert.is(v.code, 0, v.stdout + v.stderr)
    assert.match(v.stdout, /^VALID: \d+ checkpoints, ticks 0–30/)
  }
  // Replay feeds the recorded WASI clock and random values back and reproduces every tick.
  const rp = igord(['verify', a, b, '--replay'])
  assert.is(rp.code, 0, rp.stdout + rp.stderr)
  assert.match(rp.stdout, /^VALID: replayed 31 ticks/)
})

test('probe: every file, directory and socket operation fails with an errno; no environment; host files untouched; exit(0) retires it', () => {
  const cwd = tempDir()
  const data = join(cwd, 'data')
  const absDir = '/tmp/igord-wasi-probe' // fixed in probe.c
  const madeAbsDir = !existsSync(absDir)
  mkdirSync(absDir, { recursive: true })
  const absFile = join(absDir, 'target.txt')
  const relFile = join(cwd, 'probe-target.txt')
  const hadAbsFile = existsSync(absFile)
  try {
    if (!hadAbsFile) writeFileSync(absFile, 'absolute target: must stay as it is\n')
    writeFileSync(relFile, 'relative target: must stay as it is\n')
    const before = [absFile, relFile].map((f) => ({ f, body: readFileSync(f, 'utf8'), mtime: statSync(f).mtimeMs, size: statSync(f).size }))
    const absListing = readdirSync(absDir).sort()

    const r = igordIn(cwd, { IGORD_PROBE_SECRET: 'hunter2-secret', HOME: '/root' }, ['run', cAgent('probe'), '--dir', data, '--interval', '0ms'])
    assert.is(r.code, 0, r.stderr)
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('[probe] ')).map((l) => l.slice(8))

    // One line per operation, each an error with an errno from wasi-libc or from igord's WASI.
    const ops = new Map<string, number>()
    for (const l of lines) {
      const m = /^probe: (\S+) (.+): (?:error (\d+) \(.+\)|ok.*)$/.exec(l)
      if (m === null) continue
      assert.ok(m[3] !== undefined, `operation succeeded: ${l}`)
      ops.set(`${m[1]} ${m[2]}`, Number(m[3]))
    }
    const ENOTCAPABLE = 76; const EBADF = 8; const ESPIPE = 70; const ENOSYS = 52
    const expected: [string, number][] = [
      ['open-abs-read /tmp/igord-wasi-probe/target.txt', ENOTCAPABLE],
      ['open-rel-read probe-target.txt', ENOTCAPABLE],
      ['open-up-read ../probe-target.txt', ENOTCAPABLE],
      ['open-abs-write /tmp/igord-wasi-probe/target.txt', ENOTCAPABLE],
      ['open-rel-write probe-target.txt', ENOTCAPABLE],
      ['open-abs-create /tmp/igord-wasi-probe/created.txt', ENOTCAPABLE],
      ['open-rel-create probe-created.txt', ENOTCAPABLE],
      ['open-passwd /etc/passwd', ENOTCAPABLE],
      ['fopen-abs-read /tmp/igord-wasi-probe/target.txt', ENOTCAPABLE],
      ['fopen-rel-append probe-target.txt', ENOTCAPABLE],
      ['unlink-abs /tmp/igord-wasi-probe/target.txt', ENOTCAPABLE],
      ['unlink-rel probe-target.txt', ENOTCAPABLE],
      ['rename-abs /tmp/igord-wasi-probe/target.txt', ENOTCAPABLE],
      ['mkdir-abs /tmp/igord-wasi-probe/newdir', ENOTCAPABLE],
      ['mkdir-rel probe-newdir', ENOTCAPABLE],
      ['stat-abs /tmp/igord-wasi-probe/target.txt', ENOTCAPABLE],
      ['stat-rel probe-target.txt', ENOTCAPABLE],
      ['truncate-abs /tmp/igord-wasi-probe/target.txt', ENOTCAPABLE],
      ['opendir /', ENOTCAPABLE],
      ['opendir .', ENOTCAPABLE],
      ['opendir /tmp', ENOTCAPABLE],
      ['opendir /tmp/igord-wasi-probe', ENOTCAPABLE],
      ['read-fd3 fd 3', EBADF],
      ['write-fd3 fd 3', EBADF],
      ['lseek-stdout fd 1', ESPIPE],
      ['fd_prestat_get fd 3', EBADF],
      ['path_open fd 3 probe-target.txt', EBADF],
      ['path_open fd 3 /tmp/igord-wasi-probe/target.txt', EBADF],
      ['path_open-create fd 3 probe-created.txt', EBADF],
      ['path_open fd 0 probe-target.txt', ENOTCAPABLE],
      ['path_unlink_file fd 3 probe-target.txt', EBADF],
      ['path_create_directory fd 3 probe-newdir', EBADF],
      ['path_filestat_get fd 3 probe-target.txt', EBADF],
      ['fd_read fd 3', EBADF],
      ['fd_write fd 3', EBADF],
      ['fd_readdir fd 3', EBADF],
      ['fd_close fd 3', EBADF],
      ['fd_seek fd 1', ESPIPE],
      ['sock_accept fd 3', ENOTCAPABLE],
      ['sock_recv fd 3', ENOTCAPABLE],
      ['sock_send fd 3', ENOTCAPABLE],
      ['sock_shutdown fd 3', ENOTCAPABLE],
      ['poll_oneoff 1 ms', ENOSYS],
    ]
    assert.equal([...ops.entries()], expected, 'each operation reported with its errno')
    assert.ok(lines.includes(`probe: done: ${expected.length} operations failed, 0 succeeded`), r.stdout)
    for (const name of ['HOME', 'PATH', 'USER', 'IGORD_PROBE_SECRET']) assert.ok(lines.includes(`probe: getenv ${name}: unset`), name)
    assert.ok(lines.includes('probe: environ: 0 entries'))
    assert.ok(lines.includes('probe: args_sizes_get: errno 0, 0 args, 0 bytes'))
    assert.ok(lines.includes('probe: environ_sizes_get: errno 0, 0 variables, 0 bytes'))
    assert.ok(lines.includes('probe: exiting with code 0'), 'stderr lines reach the log too')
    assert.not.match(r.stdout + r.stderr, /hunter2-secret/)

    // The host's files: same content, same mtime, nothing created, moved or listed.
    for (const b of before) {
      assert.is(readFileSync(b.f, 'utf8'), b.body, b.f)
      assert.is(statSync(b.f).mtimeMs, b.mtime, b.f)
      assert.is(statSync(b.f).size, b.size, b.f)
    }
    assert.equal(readdirSync(absDir).sort(), absListing)
    assert.equal(readdirSync(cwd).sort(), ['data', 'probe-target.txt'])

    // exit(0) → proc_exit(0): finished, and the life verifies.
    const info = inspectJson(join(data, 'probe.ckpt'))
    assert.is(info.status, 'finished')
    assert.is(info.reason, 'proc_exit(0)')
    assert.is(info.tick, 1)
    const v = igord(['verify', data])
    assert.is(v.code, 0, v.stdout + v.stderr)
    assert.match(v.stdout, /^VALID: 2 checkpoints, ticks 0–1/)
    const rp = igord(['verify', data, '--replay'])
    assert.is(rp.code, 0, rp.stdout + rp.stderr)
    assert.match(rp.stdout, /^VALID: replayed 2 ticks/)
    const again = igord(['resume', join(data, 'probe.ckpt')])
    assert.is(again.code, 3, 'a finished agent cannot be resumed')
  } finally {
    rmSync(relFile, { force: true })
    if (!hadAbsFile) rmSync(absFile, { force: true })
    if (madeAbsDir) rmSync(absDir, { recursive: true, force: true })
  }
})

test.run()
