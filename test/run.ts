/**
 * Test driver for `make test`: runs every `test/*.test.ts` (or the files named on the command
 * line) as its own Node process with uvu, two at a time, and ends with the line
 * `N passed, N failed` that CI reads. Exit code 1 when any test or file failed.
 *
 * No file can hang the suite or outlive it:
 * - each file runs detached, as the leader of its own process group, so it and everything it
 *   started (igord children, their children) can be killed at once with `kill(-pgid, SIGKILL)`;
 * - a file that runs longer than its timeout is killed (whole group) and reported failed, with its
 *   output so far. The timeout is `TEST_TIMEOUT` seconds (default 300); a file that legitimately
 *   needs longer is listed in SLOW_FILES below or says so in its own text with a line
 *   `// test-timeout: <seconds>` (either is used when larger than the default), and
 *   `TEST_TIMEOUT_SCALE` (default 1) multiplies every timeout;
 * - a file whose main process has exited but whose group still has members (orphans it left) has
 *   them killed and is reported failed;
 * - a file whose uvu summary is printed but that does not exit within 30 s (a child it did not
 *   stop keeps it alive) is killed and reported failed;
 * - SIGINT/SIGTERM of this runner, or its exit, kills every running file's group first.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { basename, join, relative } from 'node:path'

const here = import.meta.dirname
const files = process.argv.length > 2
  ? process.argv.slice(2)
  : readdirSync(here).filter((f) => f.endsWith('.test.ts')).sort().map((f) => join(here, f))
const parallel = Number(process.env.TEST_JOBS ?? 2)

/** Default per-file timeout in seconds (`TEST_TIMEOUT`, default 300). */
const DEFAULT_TIMEOUT_S = positive(process.env.TEST_TIMEOUT, 'TEST_TIMEOUT', 300)
/** Multiplier applied to every per-file timeout (`TEST_TIMEOUT_SCALE`, default 1). */
const TIMEOUT_SCALE = positive(process.env.TEST_TIMEOUT_SCALE, 'TEST_TIMEOUT_SCALE', 1)
/** Grace period between uvu's summary and the file's exit before it is killed. */
const EXIT_GRACE_MS = 30_000

function positive (v: string | undefined, name: string, dflt: number): number {
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) { console.error(`run.ts: ${name}=${v} is not a positive number`); process.exit(2) }
  return n
}

/**
 * Seconds that the multi-process end-to-end files may legitimately need on a loaded 2-core machine
 * (several nodes, many igord runs each; measured beside two CPU hogs). A file can also say so
 * itself with a line `// test-timeout: <seconds>`.
 */
const SLOW_FILES: Record<string, number> = {
  'e2e-node.test.ts': 900,
  'e2e-node-self.test.ts': 900,
  'e2e-node-faults.test.ts': 900,
  'e2e-node-kill.test.ts': 900,
  'e2e-node-cut.test.ts': 900,
  'e2e-crash.test.ts': 900,
  'e2e-atomic-write.test.ts': 600,
}

/** The file's timeout in ms: the largest of the default, {@link SLOW_FILES} and its own `// test-timeout: N` line, scaled. */
function timeoutOf (file: string): number {
  let own = 0
  try { own = Number(/^\/\/ test-timeout: (\d+)\s*$/m.exec(readFileSync(file, 'utf8'))?.[1] ?? 0) } catch { /* spawn reports it */ }
  return Math.max(own, SLOW_FILES[basename(file)] ?? 0, DEFAULT_TIMEOUT_S) * TIMEOUT_SCALE * 1000
}

interface Result { file: string; passed: number; failed: number; skipped: number; code: number | null; out: string; seconds: number }

/** Process groups of the files running now (leader pid = pgid). */
const groups = new Set<number>()

/**
 * True while any process of group `pgid` is alive. On Linux /proc is read so that zombies (which
 * an init that does not reap would keep around) do not count; elsewhere `kill(-pgid, 0)`.
 */
function groupAlive (pgid: number): boolean {
  if (existsSync('/proc/self/stat')) {
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue
      let stat: string
      try { stat = readFileSync(`/proc/${pid}/stat`, 'utf8') } catch { continue }
      // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(f[2]) === pgid && f[0] !== 'Z' && f[0] !== 'X') return true
    }
    return false
  }
  try { process.kill(-pgid, 0); return true } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM' }
}
function killGroup (pgid: number): void {
  try { process.kill(-pgid, 'SIGKILL') } catch { /* already gone */ }
}

function runFile (file: string): Promise<Result> {
  return new Promise((resolve) => {
    const t0 = Date.now()
    const limitMs = timeoutOf(file)
    const child: ChildProcess = spawn(process.execPath, [file], {
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    const pgid = child.pid
    if (pgid !== undefined) groups.add(pgid)
    let out = ''
    const problems: string[] = []
    child.stdout!.on('data', (d) => { out += d })
    child.stderr!.on('data', (d) => { out += d })
    let finished = false
    let exitCode: number | null = null
    const finish = () => {
      if (finished) return
      finished = true
      clearTimeout(timer); clearInterval(watch); clearTimeout(closeWait)
      if (pgid !== undefined) { killGroup(pgid); groups.delete(pgid) }
      child.stdout!.destroy(); child.stderr!.destroy()
      const num = (label: string) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(out)?.[1] ?? 0)
      const total = num('Total'); const passed = num('Passed'); const skipped = num('Skipped')
      let failed = total - passed - skipped
      if ((exitCode !== 0 || problems.length > 0) && failed === 0) failed = 1 // the file crashed, hung or left processes
      if (problems.length > 0) out += '\n' + problems.map((p) => `run.ts: ${p}`).join('\n') + '\n'
      resolve({ file, passed, failed, skipped, code: exitCode, out, seconds: (Date.now() - t0) / 1000 })
    }
    // The whole group is killed on timeout; 'close' follows once every holder of the pipes is dead.
    const timer = setTimeout(() => {
      problems.push(`timed out after ${limitMs / 1000} s: killed its process group`)
      if (pgid !== undefined) killGroup(pgid)
    }, limitMs)
    // uvu printed its summary but the process does not end: something it started keeps it alive.
    let summaryAt = 0
    const watch = setInterval(() => {
      if (summaryAt === 0 && /Duration:/.test(out)) summaryAt = Date.now()
      if (summaryAt !== 0 && Date.now() - summaryAt > EXIT_GRACE_MS && pgid !== undefined) {
        problems.push(`did not exit ${EXIT_GRACE_MS / 1000} s after its tests finished: killed its process group`)
        summaryAt = Infinity
        killGroup(pgid)
      }
    }, 1000)
    let closeWait: NodeJS.Timeout | undefined
    child.on('error', (e) => { problems.push(`could not start: ${e.message}`); exitCode = null; finish() })
    child.on('exit', (code, signal) => {
      exitCode = code ?? (signal === null ? null : -1)
      // Orphans left in the group (children the file did not stop) are killed and reported; a
      // child that is already dying gets 2 s.
      const t = Date.now()
      const check = () => {
        if (finished) return
        if (pgid !== undefined && groupAlive(pgid)) {
          if (Date.now() - t < 2_000) { setTimeout(check, 100); return }
          if (problems.length === 0) problems.push('left processes running after it exited: killed its process group')
          killGroup(pgid)
        }
        checked = true
        if (closed) finish()
        // An orphan outside the group may still hold the pipes: do not wait for it forever.
        else closeWait = setTimeout(finish, 5_000)
      }
      check()
    })
    let closed = false
    let checked = false
    child.on('close', () => { closed = true; if (checked) finish() })
  })
}

function killAll (): void { for (const g of groups) killGroup(g) }
process.on('exit', killAll)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    killAll()
    console.log(`run.ts: ${sig}: killed ${groups.size} running test file(s)`)
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1))
  })
}

const queue = [...files]
const results: Result[] = []
async function worker () {
  for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
    const r = await runFile(f)
    results.push(r)
    const name = relative(process.cwd(), r.file)
    console.log(`${r.failed === 0 ? 'ok  ' : 'FAIL'} ${name}: ${r.passed} passed, ${r.failed} failed${r.skipped ? `, ${r.skipped} skipped` : ''} (${r.seconds.toFixed(1)} s)`)
    if (r.failed !== 0) console.log(r.out.split('\n').map((l) => '    ' + l).join('\n'))
  }
}
await Promise.all(Array.from({ length: Math.max(1, parallel) }, worker))
const passed = results.reduce((a, r) => a + r.passed, 0)
const failed = results.reduce((a, r) => a + r.failed, 0)
const skipped = results.reduce((a, r) => a + r.skipped, 0)
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`)
process.exit(failed === 0 ? 0 : 1)
