/**
 * The inbox across a migration and a crash, end to end through the real CLI (`igord node`
 * processes on 127.0.0.1, `igord send --id`, `igord migrate`, `igord verify --replay`), with the
 * echo agent (agents-as/build/echo.wasm: `echo #<seq> from <from>: <text> (<n> so far)`):
 * - messages sent in a loop while `igord migrate` moves echo from A to B are each delivered exactly
 *   once across A's and B's outputs, in order, the count going on at B; sends after the move are
 *   forwarded by A (`sent to echo: message #<seq> (forwarded to <B>)`); the merged histories
 *   replay VALID;
 * - a node killed with SIGKILL right after `igord send` returned and restarted delivers each
 *   message exactly once (the count after a further message proves none was lost or doubled).
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, igordSpawn } from './helpers.ts'
import type { Run } from './helpers.ts'
import { nodeTracker, startNode, stopNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const { track, killAll } = nodeTracker()
test.after.each(killAll)
test.after(cleanup)

/** `[text, n]` of every echo line in `out`. */
function echoed (out: string): [string, number][] {
  return [...out.matchAll(/^\[echo\] echo #\d+ from \S+: (.*) \((\d+) so far\)$/gm)].map((m) => [m[1], Number(m[2])])
}

/** Runs igord in the background (so that several run at once) and waits for it (at most 120 s). */
async function igordAsync (args: string[]): Promise<Run> {
  return await igordSpawn(args).done(120_000)
}

/**
 * `igord send echo <text> --node <dir> --id <id>` until it is taken (at most 10 tries, 200 ms
 * apart: a refusal such as "still migrating" is retried with the same id, which can never
 * deliver twice); returns the last run.
 */
async function send (n: NodeProc, text: string, id: string): Promise<Run> {
  let r: Run | null = null
  for (let k = 0; k < 10; k++) {
    r = await igordAsync(['send', 'echo', text, '--node', n.dir, '--id', id])
    if (r.code === 0) return r
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return r!
}

test('sends during `igord migrate`: each message delivered exactly once across A and B; sends to A after the move are forwarded; merged histories replay VALID', async () => {
  const a = track(await startNode())
  const b = track(await startNode())
  const r = igord(['run', agentWasm('echo'), '--node', a.dir])
  assert.is(r.code, 0, r.stderr)
  const sent: string[][] = [[], []]
  let migrating: Promise<Run> | null = null
  // two senders at once, each sending its messages one after the other; the migration starts after the third
  const sender = async (s: number) => {
    for (let k = 0; k < 8; k++) {
      if (s === 0 && k === 3) migrating = igordAsync(['migrate', 'echo', '--to', b.addr, '--node', a.dir, '--json'])
      const text = `s${s}m${k}`
      const x = await send(a, text, randomBytes(16).toString('hex'))
      assert.is(x.code, 0, `send ${text}: ${x.stderr}`)
      sent[s].push(text)
    }
  }
  await Promise.all([sender(0), sender(1)])
  const m = await migrating!
  assert.is(m.code, 0, m.stderr)
  assert.is(JSON.parse(m.stdout).to, b.peer)
  // after the move, A forwards
  for (let k = 0; k < 3; k++) {
    const text = `after${k}`
    const x = await send(a, text, randomBytes(16).toString('hex'))
    assert.is(x.code, 0, x.stderr)
    assert.match(x.stdout, new RegExp(`^sent to echo: message #${17 + k} \\(forwarded to ${b.peer}\\)$`, 'm'))
    sent[0].push(text)
  }
  const total = sent[0].length + sent[1].length
  await until(() => echoed(a.live.stdout()).length + echoed(b.live.stdout()).length >= total, 30_000, 'every message echoed')
  const endA = await stopNode(a)
  const endB = await stopNode(b)
  assert.is(endA.code, 0, endA.stderr)
  assert.is(endB.code, 0, endB.stderr)
  const all = [...echoed(endA.stdout), ...echoed(endB.stdout)]
  assert.equal(all.map(([, n]) => n), Array.from({ length: total }, (_, i) => i + 1), 'one delivery per message, the count going on at B')
  for (const s of [0, 1]) assert.equal(all.map(([t]) => t).filter((t) => sent[s].includes(t)), sent[s], `sender ${s}: each message once, in its order`)
  assert.ok(echoed(endB.stdout).length >= 3)
  const v = igord(['verify', a.dir, b.dir, '--replay'])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /VALID/)
})

test('kill -9 right after `igord send` returned, restart: each message delivered exactly once (never twice, never lost)', async () => {
  const a = track(await startNode())
  const r = igord(['run', agentWasm('echo'), '--node', a.dir])
  assert.is(r.code, 0, r.stderr)
  const outputs: string[] = []
  let node = a
  let spooled = 0
  for (let k = 1; k <= 3; k++) {
    const s = await send(node, `crash${k}`, randomBytes(16).toString('hex'))
    assert.is(s.code, 0, s.stderr)
    assert.match(s.stdout, new RegExp(`^sent to echo: message #${k} \\(\\d+ bytes\\)$`, 'm'))
    node.live.child.kill('SIGKILL') // the message is in the spool; maybe not yet in a checkpoint
    outputs.push((await node.live.done()).stdout)
    const spool = join(a.dir, 'inbox', 'echo')
    if (existsSync(spool) && readdirSync(spool).some((f) => /^\d+\.cbor$/.test(f))) spooled++
    node = track(await startNode({ dir: a.dir }))
    await until(() => echoed(node.live.stdout()).length > 0 || echoed(outputs.join('')).some(([t]) => t === `crash${k}`), 30_000, `crash${k} echoed`)
  }
  const last = await send(node, 'after', randomBytes(16).toString('hex'))
  assert.is(last.code, 0, last.stderr)
  await until(() => echoed(node.live.stdout()).some(([t]) => t === 'after'), 30_000, 'the last message echoed')
  const end = await stopNode(node)
  assert.is(end.code, 0, end.stderr)
  outputs.push(end.stdout)
  const seen = new Map<string, Set<number>>()
  for (const [t, n] of outputs.flatMap(echoed)) seen.set(t, (seen.get(t) ?? new Set()).add(n))
  // a tick re-run after the crash may print a line again, always with the same count: one delivery
  assert.equal([...seen.entries()].map(([t, ns]) => [t, [...ns]]), [['crash1', [1]], ['crash2', [2]], ['crash3', [3]], ['after', [4]]])
  const v = igord(['verify', a.dir, '--replay'])
  assert.is(v.code, 0, v.stdout + v.stderr)
  process.stdout.write(`  (${spooled} of 3 kills left the message only in the spool)\n`)
})

test.run()
