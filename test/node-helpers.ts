/**
 * Helpers for the node end-to-end tests: start `igord node` children on 127.0.0.1 with temp data
 * directories, read their dialable address, query them through the real CLI.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { agentWasm, igord, IGORD_FAULTY, igordSpawn, loggedTicks, MIN_WAIT_MS, tempDir } from './helpers.ts'
import type { Live } from './helpers.ts'

/** A running node child, its data directory and dialable address. */
export interface NodeProc { live: Live; dir: string; addr: string; peer: string }

/**
 * Starts `igord node --data <dir>` (a new temp dir unless given) and waits for its address. With
 * `fault`, the node runs through the test-only launcher test/igord-faulty.ts with `IGORD_FAULT`
 * set to it (test/faults.ts); the shipped CLI ignores `IGORD_FAULT`.
 */
export async function startNode (opts: { dir?: string; args?: string[]; env?: Record<string, string>; fault?: string } = {}): Promise<NodeProc> {
  const dir = opts.dir ?? tempDir('igord-node-')
  const env = opts.fault === undefined ? opts.env : { ...opts.env, IGORD_FAULT: opts.fault }
  const live = igordSpawn(['node', '--data', dir, '--interval', '20ms', ...(opts.args ?? [])], env, opts.fault === undefined ? undefined : IGORD_FAULTY)
  // A node that never says where it listens is killed here: the caller cannot track it.
  try { await live.waitFor((out) => /^listening \S+/m.test(out)) } catch (e) { live.child.kill('SIGKILL'); await live.done(); throw e }
  const addr = /^listening (\S+)/m.exec(live.stdout())![1]
  return { live, dir, addr, peer: addr.split('/p2p/')[1] }
}

/** `igord ps --node <dir> --json`'s agents. */
export function ps (dir: string): { name: string; did: string; tick: number; status: string; epoch: number; budget: string; fuel: string }[] {
  const r = igord(['ps', '--node', dir, '--json'])
  if (r.code !== 0) throw new Error(`ps failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout).agents
}

/** Stops a node with SIGINT and returns its exit. */
/**
 * The texts agent `name` logged in its committed history in data directory `dir`, in order
 * (`igord logs --json`). This, not a node's stdout, is what an agent did: a node killed with
 * SIGKILL loses the lines still on their way from its tick threads, although their ticks were
 * committed, and a tick re-run after a crash prints its lines again.
 */
export function committedLog (dir: string, name: string): string[] {
  const r = igord(['logs', name, '--dir', dir, '--json'])
  if (r.code !== 0) throw new Error(`igord logs ${name} --dir ${dir}: exit ${r.code}: ${r.stderr}`)
  return r.stdout.trimEnd().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { kind: string; text?: string })
    .filter((i) => i.kind === 'log').map((i) => i.text ?? '')
}

export async function stopNode (n: NodeProc): Promise<{ code: number | null; stdout: string; stderr: string }> {
  n.live.child.kill('SIGINT')
  return await n.live.done(60_000)
}

/**
 * Polls `pred` every 50 ms until it holds; rejects after `timeoutMs` (at least MIN_WAIT_MS). A predicate that throws
 * (e.g. `ps` before the node's control socket exists) counts as "not yet", but the last error is
 * named in the timeout message so that a predicate that can never succeed is visible.
 */
export async function until (pred: () => boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  timeoutMs = Math.max(timeoutMs, MIN_WAIT_MS)
  const t0 = Date.now()
  let last: unknown
  for (;;) {
    try { if (pred()) return; last = undefined } catch (e) { last = e }
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `; the check last threw: ${(last as Error).message ?? String(last)}`}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** True while the node in `dir` holds a pending (unresolved) arrival of `name`. */
export function hasPending (dir: string, name = 'heartbeat'): boolean { return existsSync(join(dir, 'migrate', `${name}.pending.cbor`)) }

/**
 * Node processes started by a test file: `track(n)` registers one, and `killAll()` (for
 * `test.after.each`) SIGKILLs and awaits every one still running, so no node outlives its test.
 */
export function nodeTracker (): { track: (n: NodeProc) => NodeProc; killAll: () => Promise<void> } {
  const running: NodeProc[] = []
  return {
    track: (n) => { running.push(n); return n },
    async killAll () {
      for (const n of running.splice(0)) {
        if (n.live.child.exitCode === null && n.live.child.signalCode === null) { n.live.child.kill('SIGKILL'); await n.live.done() }
      }
    },
  }
}

/**
 * One migration of heartbeat from a node `a` to a node `b` with a fault: `killed` names the node
 * that dies at `fault` (it is restarted on its data directory, the source on the same address) or
 * null when the fault only cuts the connection. Waits until the node `expect` runs the agent and
 * the other holds neither the agent running nor a pending copy, lets it tick, stops both, and checks
 * that every tick ran exactly once across all processes and that the merged histories verify VALID
 * with no fork. Returns the verify report.
 */
export async function faultScenario (o: { fault: string; on: 'source' | 'target'; killed: boolean; expect: 'source' | 'target'; track: (n: NodeProc) => NodeProc }): Promise<Record<string, unknown>> {
  const a = o.track(await startNode(o.on === 'source' ? { fault: o.fault } : {}))
  const r = igord(['run', agentWasm('heartbeat'), '--node', a.dir, '--interval', '20ms'])
  if (r.code !== 0) throw new Error(r.stderr)
  await until(() => tickOf(a) >= 3, 20_000, 'ticks on the source')
  const b = o.track(await startNode(o.on === 'target' ? { fault: o.fault } : {}))
  igord(['migrate', 'heartbeat', '--to', b.addr, '--node', a.dir], 40_000)
  const outputs: string[] = []
  let [src, dst] = [a, b]
  if (o.killed) {
    const dead = o.on === 'source' ? a : b
    await until(() => dead.live.child.signalCode !== null || dead.live.child.exitCode !== null, 60_000, 'the faulty node to die')
    if (dead.live.child.signalCode !== 'SIGKILL') throw new Error(`the faulty node ended with code ${dead.live.child.exitCode}, signal ${dead.live.child.signalCode}, not killed at ${o.fault}:\n${dead.live.stderr()}`)
    outputs.push(dead.live.stdout())
    const again = o.track(await startNode({ dir: dead.dir, ...(o.on === 'source' ? { args: ['--listen', a.addr.split('/p2p/')[0]] } : {}) }))
    if (o.on === 'source') src = again; else dst = again
  }
  const [winner, loser] = o.expect === 'source' ? [src, dst] : [dst, src]
  await until(() => runs(winner) && !runs(loser) && !hasPending(b.dir), 30_000, `the ${o.expect} to run the agent alone`)
  const t = tickOf(winner)
  await until(() => tickOf(winner) > t + 3, 20_000, 'ticks after the fault')
  if (runs(loser)) throw new Error('two live copies')
  for (const n of [src, dst]) {
    const end = await stopNode(n)
    if (end.code !== 0) throw new Error(`node ${n.dir} stopped with exit code ${end.code} (0 expected):\n${end.stderr}`)
    outputs.push(end.stdout)
  }
  const faulty = o.on === 'source' ? a : b
  if (!faulty.live.stderr().includes(`IGORD_FAULT=${o.fault}:`)) throw new Error(`the fault ${o.fault} was not reached`)
  const ticks = outputs.flatMap((out) => loggedTicks(out)).sort((x, y) => x - y)
  const want = Array.from({ length: ticks.length }, (_, i) => i + 1)
  if (JSON.stringify(ticks) !== JSON.stringify(want)) throw new Error(`ticks lost or repeated: ${ticks.join(',')}`)
  const v = igord(['verify', a.dir, b.dir, '--json'])
  if (v.code !== 0) throw new Error(`verify: ${v.stdout}`)
  const rep = JSON.parse(v.stdout) as Record<string, unknown>
  if ((rep.forks as unknown[]).length !== 0) throw new Error('fork')
  return rep
}

const tickOf = (n: NodeProc) => ps(n.dir).find((a) => a.name === 'heartbeat')?.tick ?? -1
const runs = (n: NodeProc) => ps(n.dir).some((a) => a.name === 'heartbeat' && a.status === 'running')
