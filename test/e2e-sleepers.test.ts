/**
 * Sleeping costs nothing: 200 echo agents on one node, each asleep until its next message
 * (`sleep_until(0)`), leave the node process (all its threads) with next to no CPU time over a
 * quiet 5 s window — no polling, no timers per agent — and a message to one of them still wakes it
 * at once. CPU time is read from /proc/<pid>/stat (utime + stime of the whole process), which the
 * load of the machine does not inflate. Linux only (it fails without /proc rather than skip).
 */
// test-timeout: 600
import { existsSync, readFileSync } from 'node:fs'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { controlRequest } from '../p2p/control.ts'
import { agentWasm, cleanup, igord } from './helpers.ts'
import { startNode, stopNode } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const AGENTS = 200
/** CPU seconds the idle node may use in the 5 s window (generous: a few timers of libp2p and the runtime). */
const MAX_IDLE_CPU_S = 0.3
/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
const USER_HZ = 100

const running: NodeProc[] = []
test.after.each(async () => { for (const n of running.splice(0)) if (n.live.child.exitCode === null) { n.live.child.kill('SIGKILL'); await n.live.done() } })
test.after(cleanup)

/** utime + stime of process `pid` (all its threads), seconds. */
function cpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ') // fields from 3 (state) on
  return (Number(f[11]) + Number(f[12])) / USER_HZ // fields 14 utime, 15 stime
}

const nameOf = (k: number): string => `echo-${String(k).padStart(3, '0')}`

test('200 agents asleep until a message use (almost) no CPU; a message still wakes one', async () => {
  assert.ok(existsSync('/proc/self/stat'), 'this test reads CPU time from /proc (Linux, as CI)')
  const n = await startNode({ args: ['--checkpoint-every', '1s'] })
  running.push(n)
  const pid = n.live.child.pid!
  for (let k = 0; k < AGENTS; k++) {
    await controlRequest(n.dir, { op: 'run', wasm: agentWasm('echo'), name: nameOf(k), budget: '1000000', intervalMs: 20 })
  }
  // every agent has run its first tick (and is asleep: echo always waits for a message)
  const deadline = Date.now() + 120_000
  for (let asleep = 0; asleep < AGENTS;) {
    if (Date.now() > deadline) assert.unreachable(`only ${asleep} of ${AGENTS} agents born and asleep after 120 s`)
    const agents = (await controlRequest(n.dir, { op: 'ps' })).agents as { tick: number; status: string }[]
    asleep = agents.filter((a) => a.tick >= 1 && a.status === 'running').length
    if (asleep < AGENTS) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  await new Promise((resolve) => setTimeout(resolve, 1500)) // let the last checkpoints and the ps requests settle
  const c0 = cpuSeconds(pid)
  await new Promise((resolve) => setTimeout(resolve, 5000))
  const used = cpuSeconds(pid) - c0
  console.log(`  node CPU over 5 s with ${AGENTS} sleeping agents: ${used.toFixed(2)} s`)
  assert.ok(used < MAX_IDLE_CPU_S, `the idle node used ${used.toFixed(2)} s of CPU in 5 s`)
  // the ticks did not move while they slept
  const ps = (await controlRequest(n.dir, { op: 'ps' })).agents as { name: string; tick: number }[]
  assert.ok(ps.every((a) => a.tick === 1), `ticks moved: ${ps.filter((a) => a.tick !== 1).map((a) => `${a.name}@${a.tick}`).join(' ')}`)
  // a message to one of them wakes it
  const s = igord(['send', nameOf(137), 'wake up', '--node', n.dir])
  assert.is(s.code, 0, s.stderr)
  assert.is(s.stdout, `sent to ${nameOf(137)}: message #1 (7 bytes)\n`)
  await n.live.waitFor((out) => new RegExp(`^\\[${nameOf(137)}\\] echo #1 from 12D3KooW\\w+: wake up \\(1 so far\\)$`, 'm').test(out))
  const after = (await controlRequest(n.dir, { op: 'ps' })).agents as { name: string; tick: number }[]
  assert.is(after.find((a) => a.name === nameOf(137))!.tick, 2)
  assert.ok(after.filter((a) => a.name !== nameOf(137)).every((a) => a.tick === 1), 'only the agent written to woke')
  const end = await stopNode(n)
  assert.is(end.code, 0, end.stderr)
})

test.run()
