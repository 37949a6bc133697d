/**
 * The test driver (test/run.ts) itself: a file that hangs is killed with its whole process group
 * at its timeout and reported failed with its output; a file that exits leaving a child behind has
 * it killed and is reported failed; SIGTERM of the driver kills the running files' groups.
 */
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cleanup, ROOT, tempDir } from './helpers.ts'

const RUN = join(ROOT, 'test', 'run.ts')
const HANG = join(ROOT, 'test', 'fixtures', 'hang.ts')

/** True while `pid` is a live (not zombie) process. */
function alive (pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch {
    try { process.kill(pid, 0); return !existsSync('/proc/self') } catch { return false }
  }
}

async function until (pred: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now()
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

interface Driver { code: number | null; signal: string | null; out: string; seconds: number }

/** Runs `node test/run.ts <file>` with `env`; `onStart` gets the child once spawned. */
function driver (env: Record<string, string>, onStart?: (pid: number) => void): Promise<Driver> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now()
    const child = spawn(process.execPath, [RUN, HANG], { env: { ...process.env, TEST_JOBS: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { out += d })
    const guard = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`driver did not end in 120 s:\n${out}`)) }, 120_000)
    child.on('close', (code, signal) => { clearTimeout(guard); resolve({ code, signal, out, seconds: (Date.now() - t0) / 1000 }) })
    onStart?.(child.pid!)
  })
}

const pidOf = (file: string) => Number(readFileSync(file, 'utf8'))
let leftover = 0
test.after.each(() => {
  if (leftover !== 0 && alive(leftover)) process.kill(leftover, 'SIGKILL')
  leftover = 0
  cleanup()
})

test('a hanging file is killed with its grandchild at its timeout and reported failed', async () => {
  const pidFile = join(tempDir(), 'pid')
  const r = await driver({ TEST_TIMEOUT: '3', FIXTURE_PID_FILE: pidFile, FIXTURE_MODE: 'hang' })
  leftover = pidOf(pidFile)
  assert.is(r.code, 1, r.out)
  assert.match(r.out, /FAIL test\/fixtures\/hang\.ts: 0 passed, 1 failed/)
  assert.match(r.out, /timed out after 3 s: killed its process group/)
  assert.match(r.out, /fixture: grandchild \d+ started/, 'the output so far is shown')
  assert.match(r.out, /0 passed, 1 failed\n$/)
  assert.ok(r.seconds < 60, `reported after ${r.seconds} s`)
  await until(() => !alive(leftover), 10_000, `grandchild ${leftover} to be gone`)
})

test('a file that exits leaving a child running is reported failed and the child killed', async () => {
  const pidFile = join(tempDir(), 'pid')
  const r = await driver({ TEST_TIMEOUT: '60', FIXTURE_PID_FILE: pidFile, FIXTURE_MODE: 'orphan' })
  leftover = pidOf(pidFile)
  assert.is(r.code, 1, r.out)
  assert.match(r.out, /left processes running after it exited: killed its process group/)
  await until(() => !alive(leftover), 10_000, `grandchild ${leftover} to be gone`)
})

test('SIGTERM of the driver kills the running file and its grandchild', async () => {
  const pidFile = join(tempDir(), 'pid')
  let driverPid = 0
  const p = driver({ TEST_TIMEOUT: '600', FIXTURE_PID_FILE: pidFile, FIXTURE_MODE: 'hang' }, (pid) => { driverPid = pid })
  await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8') !== '', 60_000, 'the fixture to start its grandchild')
  leftover = pidOf(pidFile)
  assert.ok(alive(leftover), 'the grandchild runs before the SIGTERM')
  process.kill(driverPid, 'SIGTERM')
  const r = await p
  assert.is(r.code, 143, r.out)
  assert.match(r.out, /SIGTERM: killed 1 running test file/)
  await until(() => !alive(leftover), 10_000, `grandchild ${leftover} to be gone`)
})

test('a bad TEST_TIMEOUT is refused', async () => {
  const r = await driver({ TEST_TIMEOUT: 'soon', FIXTURE_PID_FILE: '/nonexistent/x' })
  assert.is(r.code, 2)
  assert.match(r.out, /TEST_TIMEOUT=soon is not a positive number/)
})

test.run()
