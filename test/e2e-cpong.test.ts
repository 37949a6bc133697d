/**
 * The C SDK's igor_send_to end to end (issue 9): ping (AssemblyScript, agents-as/build/ping.wasm)
 * on node A sends numbered messages to cpong (C, agents-c/build/cpong.wasm, built by `make agents`)
 * on node B, found by its DID; cpong answers each with `pong <k>` to its sender. Every message
 * arrives exactly once and in order on both sides, `igord logs` shows cpong's sends, and both
 * histories replay VALID.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { agentWasm, cleanup, igord, ROOT } from './helpers.ts'
import { nodeTracker, ps, startNode, stopNode, until } from './node-helpers.ts'

const { track, killAll } = nodeTracker()
test.after.each(killAll)
test.after(cleanup)

/** `[text, n, from]` of every `<who> got "<text>" from <did> (<n> so far)` line of agent `who` in `out`. */
function got (out: string, who: 'ping' | 'cpong'): [string, number, string][] {
  return [...out.matchAll(new RegExp(`^\\[${who}\\] ${who} got "(.*)" from (\\S+) \\((\\d+) so far\\)$`, 'gm'))].map((m) => [m[1], Number(m[3]), m[2]])
}

test('ping (AS, node A) ↔ cpong (C, node B): each message once, in order; logs show the sends; both replay VALID', async () => {
  const a = track(await startNode())
  const b = track(await startNode({ args: ['--bootstrap', a.addr] }))
  assert.is(igord(['run', agentWasm('ping'), '--node', a.dir]).code, 0)
  const r = igord(['run', join(ROOT, 'agents-c', 'build', 'cpong.wasm'), '--node', b.dir])
  assert.is(r.code, 0, r.stderr)
  const cpongDid = ps(b.dir).find((x) => x.name === 'cpong')!.did
  const pingDid = ps(a.dir).find((x) => x.name === 'ping')!.did
  const N = 20
  const s = igord(['send', 'ping', `${cpongDid} ${N}`, '--node', a.dir])
  assert.is(s.code, 0, s.stderr)
  await until(() => got(a.live.stdout(), 'ping').length >= N, 60_000, `ping got ${N} answers`)
  const endA = await stopNode(a); const endB = await stopNode(b)
  for (const e of [endA, endB]) assert.is(e.code, 0, e.stderr)
  const want = (w: string) => Array.from({ length: N }, (_, i) => `${w} ${i + 1}`)
  const cpong = got(endB.stdout, 'cpong')
  assert.equal(cpong.map(([t]) => t), want('ping'), 'cpong got each ping once, in order')
  assert.equal(cpong.map(([, n]) => n), Array.from({ length: N }, (_, i) => i + 1))
  assert.ok(cpong.every(([, , from]) => from === pingDid), 'from is ping\'s DID, checked by B')
  const ping = got(endA.stdout, 'ping')
  assert.equal(ping.map(([t]) => t), want('pong'), 'ping got each answer once, in order')
  assert.ok(ping.every(([, , from]) => from === cpongDid))
  // what cpong asked to send is in its log, addressed to ping
  const logs = igord(['logs', 'cpong', '--dir', b.dir, '--verbose'])
  assert.is(logs.code, 0, logs.stderr)
  const sends = [...logs.stdout.matchAll(/^tick \d+ +send → +to (\S+) id [0-9a-f]{32} \d+ bytes "(.*)"$/gm)].map((m) => [m[1], m[2]])
  assert.equal(sends, want('pong').map((t) => [pingDid, t]))
  for (const dir of [a.dir, b.dir]) {
    const v = igord(['verify', dir, '--replay'])
    assert.is(v.code, 0, v.stdout + v.stderr)
    assert.match(v.stdout, /VALID/)
  }
})

test.run()
