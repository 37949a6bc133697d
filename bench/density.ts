/**
 * Density (issue 10): how many agents one node holds. A real `igord node` child process hosts N
 * heartbeat agents (agents-as/build/heartbeat.wasm) ticking at 1 Hz, each started over the control
 * socket (as `igord run x.wasm --node D`); over a window of {@link WINDOW_MS} the bench reads the
 * node's CPU time (utime + stime of all its threads, /proc/<pid>/stat), its RSS (VmRSS,
 * /proc/<pid>/status, sampled every second: the mean and the peak) and the growth of its data
 * directory (every file under it, bytes) per agent-tick (ticks counted with `ps`).
 *
 * Every node runs `--tick-threads 2` (the same on any machine). Floors, measured in the same run:
 * the same node with 2 agents (libp2p, both tick threads up with their modules loaded: the fixed
 * cost), plus in this process the CPU of a bare heartbeat tick (`agent_tick`, no checkpoint) and of
 * a tick with its checkpoint (`writeCheckpoint`: the storage share of an agent-tick). The CPU floor
 * of N agents is the 2-agent node plus N bare ticks a second.
 * Targets: 1,000 agents at 1 Hz in ≤ 0.25 of one core and ≤ 1 GiB RSS. The node's CPU is also
 * split by kernel share (stime: system calls, fsync above all), and group commit is measured
 * directly (fdatasync of 64 files one after the other against all at once on libuv's pool: CPU and
 * wall time per sync, {@link groupSync}).
 *
 * Hibernation (runtime/agent.ts `hibernate`): the CPU of hibernating and waking a heartbeat from its
 * live file in this process, and the RSS of `IGORD_DENSITY_IDLE` (default 200) idle agents of 1 MiB of
 * memory each (bench/resume.ts `bigMemoryAgent(16)`, a tick every 5 min) hibernated after the
 * default 10 s, beside the same node with `--hibernate-after off`.
 *
 * `IGORD_DENSITY` (comma-separated agent counts, default `100,1000`), `IGORD_DENSITY_IDLE` (0: no
 * idle rows), `IGORD_DENSITY_WINDOW_MS` (default 20 s), `IGORD_DENSITY_SETTLE_MS` and `IGORD_DENSITY_STEADY_MS`
 * change what runs. The idle-policy node is measured twice: its first window after the births, and its
 * steady state ({@link STEADY_AFTER_MS}), where the target is judged. Linux only (reads /proc); elsewhere the area prints nothing.
 */
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { closeSync, existsSync, fdatasync, fdatasyncSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { controlRequest } from '../p2p/control.ts'
import { writeCheckpoint } from '../runtime/runner.ts'
import { startAgent } from '../runtime/session.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { readLive } from '../checkpoint/live.ts'
import { Agent } from '../runtime/agent.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { liveInputs } from '../runtime/inputs.ts'
import { bigMemoryAgent } from './resume.ts'
import type { BenchRow } from './row.ts'

const ROOT = join(import.meta.dirname, '..')
const IGORD = join(ROOT, 'cmd', 'igord.ts')
const WASM = join(ROOT, 'agents-as', 'build', 'heartbeat.wasm')
const MANIFEST = join(ROOT, 'agents-as', 'build', 'heartbeat.manifest.json')
/** Measurement window, ms. */
const WINDOW_MS = Number(process.env.IGORD_DENSITY_WINDOW_MS ?? 20_000)
/**
 * Wait between the last birth and the window, ms (`IGORD_DENSITY_SETTLE_MS`, default 3 s). A node
 * with no peer retries each new DID's DHT announcement with backoff for about a minute
 * (p2p/discovery.ts `provideAttempts`): a window right after 1,000 births counts that too.
 */
const SETTLE_MS = Number(process.env.IGORD_DENSITY_SETTLE_MS ?? 3000)
/**
 * When the idle-policy node's steady window starts, ms after the births (`IGORD_DENSITY_STEADY_MS`,
 * default 120 s). Measured over 20 s windows of one node from 3 s after 1,000 births (stop 21): 0.257,
 * 0.241, 0.217, 0.235, 0.248, 0.222, 0.215, 0.204, 0.211 cores, V8's helper threads (optimizing
 * compiles, scavenges) going from 0.055 to 0.02–0.03 of a core.
 */
const STEADY_AFTER_MS = Number(process.env.IGORD_DENSITY_STEADY_MS ?? 120_000)
/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ). */
const USER_HZ = 100
/** Births sent to the node at once. */
const CONCURRENT_BIRTHS = 8

/** utime + stime of process `pid` (all its threads), s. */
export function cpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / USER_HZ
}

/** stime of process `pid` (all its threads: system calls such as fsync), s. */
export function sysSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[12]) / USER_HZ
}

/** Resident set size of process `pid`, bytes (VmRSS). */
export function rssBytes (pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) * 1024
}

/** Bytes of every regular file under `dir`. */
function treeBytes (dir: string): { size: number; allocated: number; files: number } {
  const n = { size: 0, allocated: 0, files: 0 }
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue
    try { const st = statSync(join(e.parentPath, e.name)); n.size += st.size; n.allocated += st.blocks * 512; n.files++ } catch { /* removed meanwhile */ }
  }
  return n
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface NodeChild { child: ChildProcessWithoutNullStreams; dir: string; out: () => string }

async function startNode (extra: string[]): Promise<NodeChild> {
  const dir = mkdtempSync(join(tmpdir(), 'igord-bench-density-'))
  // the environment bin/igord starts a node with (its malloc setting)
  const env = { ...process.env, MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? '131072' }
  const child = spawn(process.execPath, [IGORD, 'node', '--data', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--interval', '1s', '--tick-threads', '2', '--quiet', ...extra], { stdio: ['pipe', 'pipe', 'pipe'], env })
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { out += d })
  const t0 = Date.now()
  while (!/^listening /m.test(out)) {
    if (child.exitCode !== null) throw new Error(`bench/density.ts: igord node exited: ${out}`)
    if (Date.now() - t0 > 120_000) { child.kill('SIGKILL'); throw new Error('bench/density.ts: igord node did not start within 120 s') }
    await sleep(50)
  }
  return { child, dir, out: () => out }
}

/**
 * Data directories of the nodes this run stopped, deleted only at the end of {@link bench}. ext4
 * without a journal (this machine's disk) skips inodes deleted in the last minute or more when it
 * allocates a new one (fs/ext4/ialloc.c `recently_deleted`), scanning past each of them: deleting a
 * 1,000-agent node's ~100,000 history files right before the next node starts made every file that
 * node created cost ~10× more (perf: `find_inode_bit`), a cost of this bench's clean-up and not of
 * the node it measures.
 */
const stopped: string[] = []

async function stopNode (n: NodeChild): Promise<void> {
  if (n.child.exitCode === null) {
    const exited = new Promise((resolve) => n.child.once('exit', resolve))
    n.child.kill('SIGKILL')
    await exited
  }
  stopped.push(n.dir)
}

/** Total ticks of every agent of the node, and how many have ticked at least once. */
async function ticks (dir: string): Promise<{ total: number; started: number; hibernated: number }> {
  const agents = (await controlRequest(dir, { op: 'ps' })).agents as { tick: number; hibernated?: boolean }[]
  return { total: agents.reduce((s, a) => s + a.tick, 0), started: agents.filter((a) => a.tick >= 1).length, hibernated: agents.filter((a) => a.hibernated === true).length }
}

/**
 * One density measurement: CPU of the node process (cores), of which in the kernel, RSS (MiB), and
 * per agent-tick the bytes its files grew by (`diskPerTick`, file sizes), the disk blocks they took
 * (`allocatedPerTick`, bytes: `st_blocks` × 512) and the files it created (`filesPerTick`).
 */
export interface Density { agents: number; cores: number; sysCores: number; rssMeanMiB: number; rssPeakMiB: number; diskPerTick: number; allocatedPerTick: number; filesPerTick: number; ticks: number; birthS: number }

/**
 * Runs a node (`extra`: more `igord node` flags) with `count` agents (`agent`: wasm and manifest
 * paths, default the heartbeat) ticking every `intervalMs` and measures it over the window, which
 * starts {@link SETTLE_MS} after every agent has ticked (and, with `hibernated`, once every agent is
 * hibernated). With `steadyAfterMs`, the same node is measured again over a second window starting
 * that long after the births (`steady`): a node's first minute or two also pays V8's tiering of
 * code that runs once per checkpoint (optimizing compiles on its helper threads), which a node
 * holding its agents for days pays once.
 */
export async function measure (count: number, extra: string[] = [], intervalMs = 1000, hibernated = false, agent = { wasm: WASM, manifest: MANIFEST }, steadyAfterMs?: number): Promise<Density & { steady?: Density }> {
  const n = await startNode(extra)
  try {
    const t0 = performance.now()
    let next = 0
    const birth = async () => {
      for (let k = next++; k < count; k = next++) {
        await controlRequest(n.dir, { op: 'run', wasm: agent.wasm, manifest: agent.manifest, name: `hb-${k}`, budget: '100000000000', intervalMs })
      }
    }
    await Promise.all(Array.from({ length: CONCURRENT_BIRTHS }, birth))
    for (const deadline = Date.now() + 300_000; ;) {
      const t = await ticks(n.dir)
      if (t.started === count && (!hibernated || t.hibernated === count)) break
      if (Date.now() > deadline) throw new Error(`bench/density.ts: after 300 s, ${t.started} of ${count} agents ticked, ${t.hibernated} hibernated`)
      await sleep(500)
    }
    const born = performance.now()
    const birthS = (born - t0) / 1000
    await sleep(SETTLE_MS) // let births' checkpoints, the first ticks and the DIDs' DHT announcements settle
    const first = await windowOf(n, count, birthS)
    if (steadyAfterMs === undefined) return first
    await sleep(Math.max(0, born + steadyAfterMs - performance.now()))
    return { ...first, steady: await windowOf(n, count, birthS) }
  } finally {
    await stopNode(n)
  }
}

/** One measurement window ({@link WINDOW_MS}) of node `n` hosting `count` agents. */
async function windowOf (n: NodeChild, count: number, birthS: number): Promise<Density> {
  const pid = n.child.pid!
  const tk0 = (await ticks(n.dir)).total
  const d0 = treeBytes(n.dir)
  const c0 = cpuSeconds(pid)
  const s0 = sysSeconds(pid)
  const w0 = performance.now()
  const rss: number[] = []
  while (performance.now() - w0 < WINDOW_MS) { rss.push(rssBytes(pid)); await sleep(1000) }
  const c1 = cpuSeconds(pid)
  const s1 = sysSeconds(pid)
  const w1 = performance.now()
  const d1 = treeBytes(n.dir)
  const tk1 = (await ticks(n.dir)).total
  const dt = tk1 - tk0
  return {
    agents: count,
    cores: (c1 - c0) / ((w1 - w0) / 1000),
    sysCores: (s1 - s0) / ((w1 - w0) / 1000),
    rssMeanMiB: rss.reduce((s, x) => s + x, 0) / rss.length / 2 ** 20,
    rssPeakMiB: Math.max(...rss) / 2 ** 20,
    diskPerTick: dt > 0 ? (d1.size - d0.size) / dt : 0,
    allocatedPerTick: dt > 0 ? (d1.allocated - d0.allocated) / dt : 0,
    filesPerTick: dt > 0 ? (d1.files - d0.files) / dt : 0,
    ticks: dt,
    birthS,
  }
}

/** CPU seconds of one bare heartbeat tick in this process (no checkpoint, no hosting). */
function bareTickSeconds (): number {
  const manifest = parseManifest(readFileSync(MANIFEST), MANIFEST)
  const agent = Agent.birth({ wasm: readFileSync(WASM), manifest, identity: generateIdentity(), budget: 10n ** 15n, price: 1000n, inputs: liveInputs(), emit: () => {} })
  for (let i = 0; i < 200; i++) agent.runTick() // warm up
  const n = 5000
  const c0 = process.cpuUsage()
  for (let i = 0; i < n; i++) { agent.runTick(); if (i % 500 === 0) agent.log.takeSegment() }
  const c = process.cpuUsage(c0)
  return (c.user + c.system) / 1e6 / n
}

/** CPU seconds (user + system: the fsyncs) of one heartbeat tick and its checkpoint in this process. */
function checkpointedTickSeconds (): number {
  const dir = mkdtempSync(join(tmpdir(), 'igord-bench-density-ckpt-'))
  try {
    const s = startAgent({ dir, price: 1000n, emit: () => {} }, { name: 'hb', wasm: readFileSync(WASM), wasmFile: WASM, manifest: readFileSync(MANIFEST), manifestFile: MANIFEST, budget: 10n ** 15n })
    for (let i = 0; i < 20; i++) { s.agent.runTick(); writeCheckpoint(s.agent, s.lineage, 'running') }
    const n = 300
    const c0 = process.cpuUsage()
    for (let i = 0; i < n; i++) { s.agent.runTick(); writeCheckpoint(s.agent, s.lineage, 'running') }
    const c = process.cpuUsage(c0)
    return (c.user + c.system) / 1e6 / n
  } finally { rmSync(dir, { recursive: true, force: true }) }
}

/** CPU seconds of hibernating a heartbeat and waking it from its live checkpoint file, in this process. */
function wakeSeconds (): number {
  const dir = mkdtempSync(join(tmpdir(), 'igord-bench-density-wake-'))
  try {
    const s = startAgent({ dir, price: 1000n, emit: () => {} }, { name: 'hb', wasm: readFileSync(WASM), wasmFile: WASM, manifest: readFileSync(MANIFEST), manifestFile: MANIFEST, budget: 10n ** 15n })
    s.agent.runTick(); writeCheckpoint(s.agent, s.lineage, 'running')
    const load = () => { const l = readLive(s.ckptPath); return { pageCount: l.pageCount, pages: l.pages, globals: l.globals, ...(l.digests === undefined ? {} : { digests: l.digests }) } }
    for (let i = 0; i < 20; i++) { s.agent.hibernate(load); s.agent.wake() }
    const n = 300
    const c0 = process.cpuUsage()
    for (let i = 0; i < n; i++) { s.agent.hibernate(load); s.agent.wake() }
    const c = process.cpuUsage(c0)
    return (c.user + c.system) / 1e6 / n
  } finally { rmSync(dir, { recursive: true, force: true }) }
}

/**
 * Group commit, measured (issue 10): `files` files in one directory under the temp dir, each
 * appended 1 KiB and fdatasynced, `rounds` times: one after the other on this thread (what a tick
 * thread did before checkpoint/group-commit.ts: one agent's checkpoint after the other) against all
 * at once on libuv's thread pool (what its group commit does). CPU (user + system, µs) and wall
 * time (µs) per sync.
 */
async function groupSync (files = 64, rounds = 10): Promise<{ serialCpu: number; serialWall: number; groupCpu: number; groupWall: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'igord-bench-density-sync-'))
  const fds = Array.from({ length: files }, (_, i) => openSync(join(dir, `f${i}`), 'a'))
  const buf = Buffer.alloc(1024, 7)
  const time = async (f: () => Promise<void> | void): Promise<[number, number]> => {
    const c0 = process.cpuUsage(); const w0 = performance.now()
    for (let r = 0; r < rounds; r++) await f()
    const c = process.cpuUsage(c0)
    return [(c.user + c.system) / (rounds * files), (performance.now() - w0) * 1000 / (rounds * files)]
  }
  try {
    const serial = () => { for (const fd of fds) { writeSync(fd, buf); fdatasyncSync(fd) } }
    const group = () => Promise.all(fds.map((fd) => { writeSync(fd, buf); return new Promise<void>((resolve, reject) => fdatasync(fd, (e) => e === null ? resolve() : reject(e))) })).then(() => {})
    await time(serial); await time(group) // warm up
    const [serialCpu, serialWall] = await time(serial)
    const [groupCpu, groupWall] = await time(group)
    return { serialCpu, serialWall, groupCpu, groupWall }
  } finally {
    for (const fd of fds) closeSync(fd)
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Runs the density benchmark: a node with 2 agents (floor), then each count of `IGORD_DENSITY`. */
export async function bench (): Promise<BenchRow[]> {
  if (!existsSync('/proc/self/stat')) return []
  try { return await rows() } finally { for (const d of stopped.splice(0)) rmSync(d, { recursive: true, force: true }) }
}

/** The rows of {@link bench}. */
async function rows (): Promise<BenchRow[]> {
  const counts = (process.env.IGORD_DENSITY ?? '100,1000').split(',').filter((c) => c.trim() !== '').map(Number)
  const bare = bareTickSeconds()
  const saved = checkpointedTickSeconds()
  const base = await measure(2)
  const rows: BenchRow[] = [
    { name: 'node, 2 agents (tick threads up): CPU', value: base.cores, unit: 'cores' },
    { name: 'node, 2 agents (tick threads up): RSS', value: base.rssMeanMiB, unit: 'MiB' },
    { name: 'heartbeat tick, bare, in process', value: bare * 1e6, unit: 'µs CPU' },
    { name: 'heartbeat tick + checkpoint, in process', value: saved * 1e6, unit: 'µs CPU', floor: bare * 1e6, ratio: saved / bare },
    { name: 'checkpoint share of a checkpointed tick', value: 100 * (saved - bare) / saved, unit: '%' },
    { name: 'heartbeat hibernate + wake from live file', value: wakeSeconds() * 1e6, unit: 'µs CPU' },
  ]
  const g = await groupSync()
  rows.push(
    { name: 'fdatasync, 64 files one after the other: CPU per sync', value: g.serialCpu, unit: 'µs CPU' },
    { name: 'fdatasync, 64 files at once (libuv pool): CPU per sync', value: g.groupCpu, unit: 'µs CPU', floor: g.serialCpu, ratio: g.groupCpu / g.serialCpu },
    { name: 'fdatasync, 64 files one after the other: wall per sync', value: g.serialWall, unit: 'µs' },
    { name: 'fdatasync, 64 files at once (libuv pool): wall per sync', value: g.groupWall, unit: 'µs', floor: g.serialWall, ratio: g.groupWall / g.serialWall },
  )
  for (const count of counts) {
    const d = await measure(count)
    const floorCores = base.cores + count * bare // the 2-agent node plus N bare ticks a second
    const big = count >= 1000
    rows.push(
      // the CPU target counts only when the node kept up (≥ 90% of the ticks due); a saturated machine caps the CPU it can show
      { name: `${count} agents at 1 Hz: CPU`, value: d.cores, unit: 'cores', floor: floorCores, ratio: d.cores / floorCores, ...(big ? { target: '≤ 0.25 core (1,000 agents), all ticks run', met: d.cores <= 0.25 && d.ticks >= 0.9 * count * WINDOW_MS / 1000 } : {}) },
      { name: `${count} agents at 1 Hz: CPU per agent-tick`, value: d.ticks > 0 ? (d.cores - base.cores) * (WINDOW_MS / 1000) / d.ticks * 1e6 : 0, unit: 'µs CPU', floor: saved * 1e6, ratio: d.ticks > 0 ? (d.cores - base.cores) * (WINDOW_MS / 1000) / d.ticks / saved : 0 },
      { name: `${count} agents at 1 Hz: of which kernel (system calls)`, value: d.cores > 0 ? 100 * d.sysCores / d.cores : 0, unit: '%' },
      { name: `${count} agents at 1 Hz: RSS (peak)`, value: d.rssPeakMiB, unit: 'MiB', floor: base.rssMeanMiB, ratio: d.rssPeakMiB / base.rssMeanMiB, ...(big ? { target: '≤ 1 GiB (1,000 agents)', met: d.rssPeakMiB <= 1024 } : {}) },
      { name: `${count} agents at 1 Hz: RSS per agent`, value: (d.rssMeanMiB - base.rssMeanMiB) * 1024 / (count - 2), unit: 'KiB' },
      { name: `${count} agents at 1 Hz: disk per agent-tick`, value: d.diskPerTick / 1024, unit: 'KiB' },
      { name: `${count} agents at 1 Hz: disk blocks per agent-tick`, value: d.allocatedPerTick / 1024, unit: 'KiB' },
      { name: `${count} agents at 1 Hz: files created per agent-tick`, value: d.filesPerTick, unit: 'files' },
      { name: `${count} agents at 1 Hz: ticks/s (expected ${count})`, value: d.ticks / (WINDOW_MS / 1000), unit: 'ticks/s' },
      { name: `${count} agents: birth until all ticked`, value: d.birthS, unit: 's' },
    )
  }
  // the same heartbeats with the idle checkpoint policy (runtime/runner.ts idleCheckpointEveryMs):
  // a heartbeat has no effects, so it is checkpointed every 10 s instead of every tick
  const policyCount = Math.max(...counts)
  if (Number.isFinite(policyCount) && policyCount > 0) {
    // the target is the node's steady state; the first window after the births is shown beside it
    const early = await measure(policyCount, ['--idle-checkpoint-every', '10s'], 1000, false, undefined, STEADY_AFTER_MS)
    const d = early.steady!
    const floorCores = base.cores + policyCount * bare
    const ticksDue = policyCount * WINDOW_MS / 1000
    const steady = `from ${(STEADY_AFTER_MS / 1000).toFixed(0)} s after the births`
    rows.push(
      { name: `${policyCount} agents at 1 Hz, --idle-checkpoint-every 10s: CPU, first ${(WINDOW_MS / 1000).toFixed(0)} s after the births`, value: early.cores, unit: 'cores', floor: floorCores, ratio: early.cores / floorCores },
      { name: `${policyCount} agents at 1 Hz, --idle-checkpoint-every 10s: CPU, ${steady}`, value: d.cores, unit: 'cores', floor: floorCores, ratio: d.cores / floorCores, ...(policyCount >= 1000 ? { target: '≤ 0.25 core (1,000 agents), all ticks run', met: d.cores <= 0.25 && d.ticks >= 0.9 * ticksDue } : {}) },
      { name: `${policyCount} agents at 1 Hz, --idle-checkpoint-every 10s: CPU per agent-tick`, value: d.ticks > 0 ? (d.cores - base.cores) * (WINDOW_MS / 1000) / d.ticks * 1e6 : 0, unit: 'µs CPU', floor: bare * 1e6, ratio: d.ticks > 0 ? (d.cores - base.cores) * (WINDOW_MS / 1000) / d.ticks / bare : 0 },
      { name: `${policyCount} agents at 1 Hz, --idle-checkpoint-every 10s: RSS (peak)`, value: d.rssPeakMiB, unit: 'MiB', floor: base.rssMeanMiB, ratio: d.rssPeakMiB / base.rssMeanMiB },
      { name: `${policyCount} agents at 1 Hz, --idle-checkpoint-every 10s: disk per agent-tick`, value: d.diskPerTick / 1024, unit: 'KiB' },
      { name: `${policyCount} agents at 1 Hz, --idle-checkpoint-every 10s: disk blocks per agent-tick`, value: d.allocatedPerTick / 1024, unit: 'KiB' },
      { name: `${policyCount} agents at 1 Hz, --idle-checkpoint-every 10s: ticks/s (checkpointed, expected ${policyCount})`, value: d.ticks / (WINDOW_MS / 1000), unit: 'ticks/s' },
    )
  }
  // idle agents of 1 MiB of memory (a tick every 5 min): hibernated after the default 10 s, against
  // the same node with hibernation off
  const idle = Number(process.env.IGORD_DENSITY_IDLE ?? 200)
  if (idle > 0) {
    const dir = mkdtempSync(join(tmpdir(), 'igord-bench-density-mib-'))
    const big = { wasm: join(dir, 'mib.wasm'), manifest: join(dir, 'mib.manifest.json') }
    writeFileSync(big.wasm, bigMemoryAgent(16))
    writeFileSync(big.manifest, JSON.stringify({ capabilities: {}, resource_limits: { max_memory_bytes: 64 * 1024 * 1024, max_fuel_per_tick: 1_000_000_000 } }))
    let off: Density; let on: Density
    try {
      off = await measure(idle, ['--hibernate-after', 'off'], 300_000, false, big)
      on = await measure(idle, [], 300_000, true, big)
    } finally { rmSync(dir, { recursive: true, force: true }) }
    rows.push(
      { name: `${idle} idle 1 MiB agents, hibernated: RSS`, value: on.rssMeanMiB, unit: 'MiB', floor: base.rssMeanMiB, ratio: on.rssMeanMiB / base.rssMeanMiB },
      { name: `${idle} idle 1 MiB agents, resident: RSS`, value: off.rssMeanMiB, unit: 'MiB', floor: base.rssMeanMiB, ratio: off.rssMeanMiB / base.rssMeanMiB },
      { name: `${idle} idle 1 MiB agents, hibernated: RSS per agent`, value: (on.rssMeanMiB - base.rssMeanMiB) * 1024 / (idle - 2), unit: 'KiB' },
      { name: `${idle} idle 1 MiB agents, resident: RSS per agent`, value: (off.rssMeanMiB - base.rssMeanMiB) * 1024 / (idle - 2), unit: 'KiB' },
      { name: `${idle} idle 1 MiB agents, hibernated: CPU`, value: on.cores, unit: 'cores', floor: base.cores, ratio: on.cores / base.cores },
    )
  }
  return rows
}
