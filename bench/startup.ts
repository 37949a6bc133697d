/**
 * CLI startup (issue 10: `igord --version`, `inspect`, `verify`, `ps` ≤ 300 ms): the wall time of
 * the real child process `bin/igord <args>` from spawn to exit, median of several runs, beside the
 * floor of `node -e 0` measured interleaved in the same run. bin/igord runs the TypeScript sources
 * with Node's compile cache (cmd/cache.ts), here in a temporary directory: one cold run fills it,
 * the figures are warm (what every run after the first costs); the cold `--version` is printed too.
 *
 * Fixtures: a heartbeat agent run for 3 ticks by `igord run` (its live `.ckpt` and a 4-entry
 * history) and, for `ps`, an `igord node` with no agents on a temporary data directory.
 */
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BenchRow } from './row.ts'

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)))
const IGORD = join(ROOT, 'bin', 'igord')
const HEARTBEAT = join(ROOT, 'agents-as', 'build', 'heartbeat.wasm')

/** Runs of each command (and of the floor); the median is reported. */
const RUNS = 9

/** The target of every row, ms. */
const TARGET_MS = 300

/** Runs `argv` to its end; wall ms from spawn to exit. @throws when it exits with a code other than `expect` */
function timed (argv: string[], env: NodeJS.ProcessEnv, expect = 0): number {
  const t = performance.now()
  const r = spawnSync(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 })
  const ms = performance.now() - t
  if (r.status !== expect) throw new Error(`bench startup: ${argv.slice(1).join(' ')} exited ${String(r.status ?? r.signal)}, expected ${expect}: ${String(r.stderr).trim().split('\n').pop() ?? ''}`)
  return ms
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

/** Starts `igord node` on `data` and resolves once it listens. @throws after 60 s or when it exits first */
function startNode (data: string, env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const child = spawn(IGORD, ['node', '--data', data, '--quiet'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  return new Promise((resolve, reject) => {
    let out = ''
    const fail = (why: string) => { clearTimeout(timer); child.kill('SIGKILL'); reject(new Error(`bench startup: igord node ${why}`)) }
    const timer = setTimeout(() => fail('did not listen within 60 s'), 60_000)
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (/^listening /m.test(out) && existsSync(join(data, 'control.sock'))) { clearTimeout(timer); resolve(child) }
    })
    child.stderr!.resume()
    child.on('exit', (code) => fail(`exited (${String(code)}) before listening`))
  })
}

/** Stops `child` (SIGTERM, then SIGKILL after 10 s) and waits for its exit. */
function stopNode (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000)
    child.removeAllListeners('exit')
    child.on('exit', () => { clearTimeout(kill); resolve() })
    child.kill('SIGTERM')
  })
}

/** Runs the startup benchmark; ms figures. */
export async function bench (): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'igord-bench-startup-'))
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_COMPILE_CACHE: join(dir, 'compile-cache') }
  delete env.NODE_DISABLE_COMPILE_CACHE
  let node: ChildProcess | null = null
  try {
    const floorArgv = [process.execPath, '-e', '0']
    const cold = timed([IGORD, '--version'], env) // fills the compile cache
    const agents = join(dir, 'agents')
    timed([IGORD, 'run', HEARTBEAT, '--dir', agents, '--ticks', '3', '--interval', '10ms', '--quiet'], env)
    node = await startNode(join(dir, 'node'), env)
    const commands: { name: string; argv: string[] }[] = [
      { name: 'igord --version', argv: [IGORD, '--version'] },
      { name: 'igord inspect <ckpt>', argv: [IGORD, 'inspect', join(agents, 'heartbeat.ckpt')] },
      { name: 'igord verify <history> (4 checkpoints)', argv: [IGORD, 'verify', agents] },
      { name: 'igord ps --node <dir> (running node)', argv: [IGORD, 'ps', '--node', join(dir, 'node')] },
    ]
    for (const c of commands) timed(c.argv, env) // the compile cache holds each command's modules
    const floor: number[] = []
    const runs = commands.map(() => [] as number[])
    for (let i = 0; i < RUNS; i++) {
      floor.push(timed(floorArgv, env))
      commands.forEach((c, j) => runs[j].push(timed(c.argv, env)))
    }
    const f = median(floor)
    const rows: BenchRow[] = commands.map((c, j) => {
      const value = median(runs[j])
      return { name: c.name, value, unit: 'ms', floor: f, ratio: value / f, target: `≤ ${TARGET_MS} ms`, met: value <= TARGET_MS }
    })
    rows.push({ name: 'igord --version, cold compile cache', value: cold, unit: 'ms', floor: f, ratio: cold / f })
    return rows
  } finally {
    if (node !== null) await stopNode(node)
    rmSync(dir, { recursive: true, force: true })
  }
}
