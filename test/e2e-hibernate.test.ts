/**
 * Hibernation end to end: a node with a low threshold (`--hibernate-after 200ms`) drops idle agents
 * — shown as hibernated by `igord ps` — and wakes them on their timer (sleeper), their interval
 * (a heartbeat at 2 s) and a message (echo), each continuing from its state (echo's count goes on,
 * the heartbeat's ticks follow one another); an agent ticking more often than the threshold is never
 * dropped; every history then replays VALID (`verify --replay`).
 */
// test-timeout: 600
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { controlRequest } from '../p2p/control.ts'
import { agentWasm, cleanup, igord } from './helpers.ts'
import { startNode, stopNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const running: NodeProc[] = []
test.after.each(async () => { for (const n of running.splice(0)) if (n.live.child.exitCode === null) { n.live.child.kill('SIGKILL'); await n.live.done() } })
test.after(cleanup)

interface Info { name: string; tick: number; status: string; hibernated: boolean }
const psOf = async (dir: string): Promise<Map<string, Info>> => new Map(((await controlRequest(dir, { op: 'ps' })).agents as Info[]).map((a) => [a.name, a]))

/** Polls `ps` until `pred` holds (bounded by node-helpers `until`'s floor). */
async function untilPs (dir: string, pred: (ps: Map<string, Info>) => boolean, what: string): Promise<Map<string, Info>> {
  let last = new Map<string, Info>()
  const t0 = Date.now()
  for (;;) {
    last = await psOf(dir)
    if (pred(last)) return last
    if (Date.now() - t0 > 120_000) throw new Error(`timed out after 120 s waiting for ${what}; ps: ${JSON.stringify([...last.values()])}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

test('idle agents are hibernated, shown by ps, woken by timer, interval and message, and go on with the same state', async () => {
  const n = await startNode({ args: ['--hibernate-after', '200ms', '--checkpoint-every', '1s'] })
  running.push(n)
  const run = (wasm: string, name: string, intervalMs: number) => controlRequest(n.dir, { op: 'run', wasm: agentWasm(wasm), name, budget: '100000000', intervalMs })
  await run('echo', 'echo', 20)
  await run('sleeper', 'sleeper', 20)
  await run('heartbeat', 'slow', 2000)
  await run('heartbeat', 'fast', 50)
  // everything idle longer than 200 ms is dropped; `fast` ticks every 50 ms and never is
  let ps = await untilPs(n.dir, (p) => ['echo', 'sleeper', 'slow'].every((k) => p.get(k)?.hibernated === true), 'echo, sleeper and slow hibernated')
  assert.is(ps.get('echo')!.status, 'running')
  const human = igord(['ps', '--node', n.dir])
  assert.is(human.code, 0, human.stderr)
  assert.match(human.stdout, /^echo\s+running \(hibernated\)\s+1\s/m)
  for (let i = 0; i < 10; i++) {
    assert.is((await psOf(n.dir)).get('fast')!.hibernated, false, 'an agent whose next tick always comes sooner than the threshold stays resident')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  // a message wakes echo, which counts on from its restored heap; it is dropped again after each
  for (let k = 1; k <= 3; k++) {
    const s = igord(['send', 'echo', `hello ${k}`, '--node', n.dir])
    assert.is(s.code, 0, s.stderr)
    await n.live.waitFor((out) => new RegExp(`^\\[echo\\] echo #${k} from 12D3KooW\\w+: hello ${k} \\(${k} so far\\)$`, 'm').test(out))
    ps = await untilPs(n.dir, (p) => p.get('echo')!.hibernated && p.get('echo')!.tick === k + 1, `echo hibernated again at tick ${k + 1}`)
  }
  // the sleeper's timer and the slow heartbeat's interval wake them, again and again
  await n.live.waitFor((out) => (out.match(/^\[sleeper\] woke by timer /gm) ?? []).length >= 3)
  await until(() => loggedOf(n.live.stdout(), 'slow').length >= 4, 60_000, 'four ticks of slow')
  const slow = loggedOf(n.live.stdout(), 'slow')
  assert.equal(slow, slow.map((_, i) => i + 1), 'the slow heartbeat counts its ticks on after every wake')
  const end = await stopNode(n)
  assert.is(end.code, 0, end.stderr)
  for (const name of ['echo', 'sleeper', 'slow', 'fast']) {
    const r = igord(['verify', '--replay', join(n.dir, 'history', name)])
    assert.is(r.code, 0, `${name}: ${r.stdout}${r.stderr}`)
    assert.match(r.stdout, /^VALID: replayed \d+ ticks/)
  }
})

/** The tick numbers heartbeat `name` logged (`[name] tick N, age …`). */
function loggedOf (stdout: string, name: string): number[] {
  return [...stdout.matchAll(new RegExp(`^\\[${name}\\] tick (\\d+),`, 'gm'))].map((m) => Number(m[1]))
}

test.run()
