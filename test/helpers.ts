/**
 * Shared helpers for the end-to-end tests: run the real `igord` CLI as a child process on temp
 * directories, wait for its output, stop it with signals. Everything is bounded in time.
 */
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Repository root. */
export const ROOT = join(import.meta.dirname, '..')
/** The CLI entry point, run with the pinned Node (`process.execPath`). */
export const IGORD = join(ROOT, 'cmd', 'igord.ts')
/** Test-only CLI entry point with fault injection (`IGORD_FAULT`, test/faults.ts). */
export const IGORD_FAULTY = join(ROOT, 'test', 'igord-faulty.ts')
/** Built AssemblyScript agents (`make agents`). */
export const AGENTS = join(ROOT, 'agents-as', 'build')

/** Path of a built agent's wasm. */
export function agentWasm (name: string): string { return join(AGENTS, `${name}.wasm`) }

/** A fresh temp directory; `cleanup()` removes every directory made so far. */
const made: string[] = []
export function tempDir (prefix = 'igord-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix))
  made.push(d)
  return d
}
export function cleanup (): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true })
}

/**
 * Floor for every wait on a condition (`waitFor`, node-helpers `until`), ms: a test names the time
 * it expects, but on a loaded 2-core machine (make test beside other work) the wait goes on up to
 * this long before failing; a passing test never waits longer. `TEST_MIN_WAIT_MS` overrides it.
 */
export const MIN_WAIT_MS = Number(process.env.TEST_MIN_WAIT_MS ?? 90_000)

/** Result of a finished igord run. */
export interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs igord to completion (at most `timeoutMs`, default 120 s, then SIGKILL). */
export function igord (args: string[], timeoutMs = 120_000): Run {
  const r = spawnSync(process.execPath, [IGORD, ...args], { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' })
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
}

/** A running igord child with its output so far. */
export interface Live {
  child: ChildProcessWithoutNullStreams
  stdout: () => string
  stderr: () => string
  /** Resolves when `pred(stdout)` holds; rejects after `timeoutMs` (at least {@link MIN_WAIT_MS}). */
  waitFor (pred: (out: string) => boolean, timeoutMs?: number): Promise<void>
  /** Resolves with the run's result when the child exits (SIGKILL after `timeoutMs`). */
  done (timeoutMs?: number): Promise<Run>
}

/**
 * Every igord child started by this test file and not yet exited. The children do not keep the
 * file alive (they are unref'd: a test waits on them only through timers in `waitFor`/`done`),
 * and whatever is still running when the file exits — normally, on an uncaught exception or after
 * a failed test that never stopped its child — is SIGKILLed by the `exit` handler below.
 */
const children = new Set<ChildProcessWithoutNullStreams>()
process.on('exit', () => {
  for (const c of children) { try { c.kill('SIGKILL') } catch { /* gone */ } }
})

/** Starts igord in the background (`env` adds to the environment; `entry`: the CLI script, default {@link IGORD}). */
export function igordSpawn (args: string[], env?: Record<string, string>, entry = IGORD): Live {
  const child = spawn(process.execPath, [entry, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...(env === undefined ? {} : { env: { ...process.env, ...env } }) })
  children.add(child)
  child.on('exit', () => children.delete(child))
  child.unref()
  for (const s of [child.stdin, child.stdout, child.stderr] as unknown as { unref?: () => void }[]) s.unref?.()
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { err += d })
  const exited = new Promise<Run>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err }))
  })
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitFor (pred, timeoutMs = 30_000) {
      timeoutMs = Math.max(timeoutMs, MIN_WAIT_MS)
      return new Promise((resolve, reject) => {
        const start = Date.now()
        const poll = () => {
          if (pred(out)) return resolve()
          if (child.exitCode !== null || child.signalCode !== null) return reject(new Error(`igord exited before the expected output:\n${out}\n${err}`))
          if (Date.now() - start > timeoutMs) return reject(new Error(`timed out waiting for output:\n${out}\n${err}`))
          setTimeout(poll, 10)
        }
        poll()
      })
    },
    async done (timeoutMs = 30_000) {
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
      const r = await exited
      clearTimeout(timer)
      return r
    },
  }
}

/** The agent-reported tick numbers (`[name] tick N, …` lines) in igord's stdout. */
export function loggedTicks (stdout: string): number[] {
  return [...stdout.matchAll(/^\[[^\]]+\] tick (\d+)\b/gm)].map((m) => Number(m[1]))
}

/** `igord inspect --json` of a live checkpoint. */
export function inspectJson (ckpt: string): Record<string, unknown> {
  const r = igord(['inspect', ckpt, '--json'])
  if (r.code !== 0) throw new Error(`inspect failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout) as Record<string, unknown>
}
