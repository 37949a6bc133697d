/**
 * Hostcall floods through the real CLI (docs/ABI.md "Per-tick limits"): hostile agents that call a
 * recording hostcall in an endless loop — igor `clock_now`, `rand_bytes`, `log_emit` (AssemblyScript)
 * and WASI `fd_write`, `random_get` (C) — used to grow the host's in-memory event log until V8
 * aborted the process (4.3 GB RSS, exit 134). Now each tick traps naming the limit it crossed, is
 * rolled back and counted as a failure; the agent pauses after 3 (exit 7); `verify --replay`
 * reproduces every trap; and the igord process's peak RSS stays under {@link RSS_BOUND_KIB}
 * (measured: about 190–210 MiB, the same as an idle agent's run, whose baseline is the Node and
 * binaryen runtime itself).
 *
 * Safety net, so that a lost bound fails the test instead of taking the machine down: each child
 * runs in its own process group with `--max-old-space-size=512` (a flood of JS objects ends in V8's
 * heap-limit abort, exit 134) and is SIGKILLed with its group as soon as its RSS passes 1 GiB (a
 * flood of ArrayBuffers, which the heap limit does not count); every group is killed after each test.
 */
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, IGORD, igord, inspectJson, ROOT, tempDir } from './helpers.ts'

test.after(cleanup)

/** Peak RSS the igord process may reach during a flood, KiB (512 MiB: an idle agent ticking in its worker thread peaks near 300 MiB; the unbounded flood passed 4 GiB). */
const RSS_BOUND_KIB = 512 * 1024
const TIME = '/usr/bin/time'
const cAgent = (name: string): string => join(ROOT, 'agents-c', 'build', `${name}.wasm`)

interface Measured { code: number | null; signal: string | null; stdout: string; stderr: string; peakKiB: number; runaway: boolean }

/** A flood child whose RSS passes this is killed at once (KiB, 1 GiB): a safety net for the test machine. */
const RUNAWAY_KIB = 1024 * 1024
/** Process groups of flood children still running (killed after each test, even on failure). */
const groups = new Set<number>()
test.after.each(() => { for (const g of groups) { try { process.kill(-g, 'SIGKILL') } catch { /* gone */ } } groups.clear() })

/** VmHWM and VmRSS (KiB) of a process, or null when it is gone. */
function memOf (pid: number): { hwm: number; rss: number } | null {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8')
    return { hwm: Number(/VmHWM:\s+(\d+) kB/.exec(st)?.[1] ?? 0), rss: Number(/VmRSS:\s+(\d+) kB/.exec(st)?.[1] ?? 0) }
  } catch { return null }
}

/**
 * Runs `igord <args>` to its end in its own process group and measures its peak RSS: GNU time's
 * maximum resident set size when /usr/bin/time exists, else the last VmHWM sampled from
 * /proc/<pid>/status (a high-water mark). The group is SIGKILLed after `timeoutMs`, or at once when
 * the igord process's RSS passes {@link RUNAWAY_KIB} (`runaway`: the bound is lost; V8's heap limit
 * alone would not stop a flood of ArrayBuffers).
 */
function measured (args: string[], timeoutMs = 120_000): Promise<Measured> {
  const d = tempDir('igord-flood-time-')
  const out = join(d, 'rss')
  const useTime = existsSync(TIME)
  const argv = [process.execPath, IGORD, ...args]
  const opts = { stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, NODE_OPTIONS: '--max-old-space-size=512' } }
  const child = useTime ? spawn(TIME, ['-f', '%M', '-o', out, ...argv], opts) : spawn(argv[0], argv.slice(1), opts)
  const group = child.pid!
  groups.add(group)
  const killGroup = () => { try { process.kill(-group, 'SIGKILL') } catch { /* gone */ } }
  let stdout = ''
  let stderr = ''
  let sampled = 0
  let runaway = false
  child.stdout.on('data', (b) => { stdout += b })
  child.stderr.on('data', (b) => { stderr += b })
  const poll = setInterval(() => {
    let pid = group
    if (useTime) {
      try { pid = Number(readFileSync(`/proc/${group}/task/${group}/children`, 'utf8').trim().split(' ')[0]) } catch { return }
      if (!(pid > 0)) return
    }
    const m = memOf(pid)
    if (m === null) return
    sampled = Math.max(sampled, m.hwm)
    if (m.rss > RUNAWAY_KIB) { runaway = true; killGroup() }
  }, 20)
  const timer = setTimeout(killGroup, timeoutMs)
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      clearInterval(poll)
      killGroup() // nothing of the group outlives the run
      groups.delete(group)
      let peakKiB = sampled
      if (useTime && existsSync(out)) {
        const text = readFileSync(out, 'utf8')
        const m = /(\d+)\s*$/.exec(text)
        if (m !== null) peakKiB = Number(m[1])
        // GNU time exits with the command's status; for a signal it prints "Command terminated by signal n".
        const sig = /terminated by signal (\d+)/.exec(text)
        if (sig !== null) { resolve({ code: 128 + Number(sig[1]), signal, stdout, stderr, peakKiB, runaway }); return }
      }
      resolve({ code, signal, stdout, stderr, peakKiB, runaway })
    })
  })
}

/** The flood agents: name, wasm, the limit each tick crosses, the trap text. */
const FLOODS: { name: string; wasm: string; trap: string }[] = [
  { name: 'floodclock', wasm: agentWasm('floodclock'), trap: 'tick limit: 10001 events > max_events_per_tick 10000' },
  { name: 'floodrand', wasm: agentWasm('floodrand'), trap: 'tick limit: 1114112 random bytes > max_random_bytes_per_tick 1048576' },
  { name: 'floodlog', wasm: agentWasm('floodlog'), trap: 'tick limit: 1049600 log bytes > max_log_bytes_per_tick 1048576' },
  { name: 'floodwrite', wasm: cAgent('floodwrite'), trap: 'tick limit: 1049599 log bytes > max_log_bytes_per_tick 1048576' },
  { name: 'floodrandom', wasm: cAgent('floodrandom'), trap: 'tick limit: 1114112 random bytes > max_random_bytes_per_tick 1048576' },
]

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

for (const f of FLOODS) {
  test(`${f.name}: every tick traps naming the limit, rolled back; paused after 3 failures (exit 7); peak RSS under 512 MiB; verify --replay reproduces the traps`, async () => {
    assert.ok(existsSync(f.wasm), `${f.wasm} missing: run make agents`)
    const d = tempDir()
    const r = await measured(['run', f.wasm, '--dir', d, '--interval', '0ms', '-q'])
    assert.not.ok(r.runaway, `igord passed ${RUNAWAY_KIB} KiB of RSS and was killed: the flood is not bounded`)
    assert.is(r.code, 7, `exit ${r.code} (signal ${r.signal}), peak ${r.peakKiB} KiB:\n${r.stderr.slice(-2000)}`)
    const failed = r.stderr.split('\n').filter((l) => new RegExp(`^igord: tick \\d+ failed and was rolled back: ${escape(f.trap)} \\(fuel \\d+\\)$`).test(l))
    assert.is(failed.length, 3, r.stderr)
    assert.match(r.stderr, new RegExp(`paused: 3 consecutive failed ticks, last at tick 3: ${escape(f.trap)}`))
    assert.ok(r.peakKiB > 0 && r.peakKiB < RSS_BOUND_KIB, `peak RSS ${r.peakKiB} KiB, bound ${RSS_BOUND_KIB} KiB`)
    const info = inspectJson(join(d, `${f.name}.ckpt`))
    assert.is(info.status, 'paused')
    assert.is(info.tick, 3)
    assert.ok(String(info.reason).endsWith(f.trap), String(info.reason))
    const v = igord(['verify', '--replay', join(d, 'history', f.name)])
    assert.is(v.code, 0, v.stdout + v.stderr)
    assert.match(v.stdout, /VALID: replayed 4 ticks \(ticks 0–3\)/)
  })
}

test('a manifest lowers a limit: floodlog with max_log_bytes_per_tick 4096 prints 4 lines a tick and traps at the 5th', async () => {
  const d = tempDir()
  const wasm = join(d, 'quiet.wasm')
  copyFileSync(agentWasm('floodlog'), wasm)
  writeFileSync(join(d, 'quiet.manifest.json'), JSON.stringify({ capabilities: ['log'], resource_limits: { max_log_bytes_per_tick: 4096 } }))
  const r = await measured(['run', wasm, '--dir', join(d, 'data'), '--interval', '0ms'])
  assert.is(r.code, 7, r.stderr)
  const trap = 'tick limit: 5120 log bytes > max_log_bytes_per_tick 4096'
  assert.is(r.stderr.split('\n').filter((l) => l.includes(`rolled back: ${trap}`)).length, 3, r.stderr)
  const lines = r.stdout.split('\n').filter((l) => l.length > 0)
  assert.is(lines.length, 12, 'the refused 5th line of each tick is not printed')
  for (const l of lines) assert.is(l, `[quiet] ${'a'.repeat(1024)}`)
  assert.is(igord(['verify', '--replay', join(d, 'data', 'history', 'quiet')]).code, 0)
})

test.run()
