/**
 * End to end through the real CLI: `igord send` to an agent run by `igord run` (a drop file the
 * process takes in), hosted by a node (`--node`, and `--dir` of a directory a node serves), and
 * stopped (`--dir`: spooled, taken in when it is resumed, once and in order). Refusals exit 11 with
 * one line naming the reason: a full inbox, a message over `max_message_bytes` (or over the 1 MiB
 * any agent may take), no such agent; a bad `--id` is a usage error (exit 2); a repeated `--id` is
 * delivered once. Every history verifies VALID with `verify --replay` afterwards.
 */
// test-timeout: 600
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, AGENTS, cleanup, igord, igordSpawn, tempDir } from './helpers.ts'
import type { Run } from './helpers.ts'
import { startNode, stopNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const running: NodeProc[] = []
test.after.each(async () => { for (const n of running.splice(0)) if (n.live.child.exitCode === null) { n.live.child.kill('SIGKILL'); await n.live.done() } })
test.after(cleanup)

async function node (): Promise<NodeProc> { const n = await startNode(); running.push(n); return n }

/** The `[name] echo #seq from …: body (k so far)` lines in igord's output, as `#seq body`. */
function echoed (out: string, name = 'echo'): string[] {
  return [...out.matchAll(new RegExp(`^\\[${name}\\] echo #(\\d+) from 12D3KooW\\w+: (.*) \\(\\d+ so far\\)$`, 'gm'))].map((m) => `#${m[1]} ${m[2]}`)
}

/** Asserts a refusal: exit `code`, nothing on stdout, one stderr line `igord: <re>`. */
function refusedWith (r: Run, code: number, re: RegExp): void {
  assert.is(r.code, code, `exit ${r.code}: ${r.stdout}${r.stderr}`)
  assert.is(r.stdout, '')
  const lines = r.stderr.trimEnd().split('\n')
  assert.is(lines.length, 1, `one line: ${r.stderr}`)
  assert.match(lines[0], new RegExp(`^igord: ${re.source}`))
}

function verifyReplay (dir: string): void {
  const v = igord(['verify', '--replay', dir])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID: replayed \d+ ticks/)
}

/** A manifest like echo's (capabilities inbox, timer, log) with `limits` as resource_limits. */
function manifestWith (limits: Record<string, number>): string {
  const f = join(tempDir('igord-inbox-manifest-'), 'limited.manifest.json')
  writeFileSync(f, JSON.stringify({ capabilities: { inbox: { version: 1 }, timer: { version: 1 }, log: { version: 1 } }, resource_limits: limits }))
  return f
}

const ID = '00112233445566778899aabbccddeeff'

test('igord run: send --dir leaves a drop file the running process takes in; a repeated --id is delivered once', async () => {
  const dir = tempDir('igord-inbox-run-')
  const p = igordSpawn(['run', agentWasm('echo'), '--dir', dir, '--interval', '20ms'])
  await until(() => existsSync(join(dir, 'echo.ckpt')), 20_000, 'echo to be born')
  const a = igord(['send', 'echo', 'hello', '--dir', dir])
  assert.is(a.code, 0, a.stderr)
  assert.is(a.stdout, 'left for echo (5 bytes): the process running it takes it in\n')
  await p.waitFor((out) => echoed(out).length === 1)
  for (let k = 0; k < 2; k++) {
    const r = igord(['send', 'echo', 'once', '--dir', dir, '--id', ID])
    assert.is(r.code, 0, r.stderr)
    assert.match(r.stdout, new RegExp(`^(left for echo \\(4 bytes\\)|echo already has message ${ID}: not sent again)`))
  }
  const file = join(tempDir('igord-inbox-file-'), 'body.txt')
  writeFileSync(file, 'from a file')
  const j = igord(['send', 'echo', '@' + file, '--dir', dir, '--json'])
  assert.is(j.code, 0, j.stderr)
  const jr = JSON.parse(j.stdout) as Record<string, unknown>
  assert.equal([jr.agent, jr.dropped, jr.duplicate, jr.seq], ['echo', true, false, 0])
  assert.match(String(jr.id), /^[0-9a-f]{32}$/)
  await p.waitFor((out) => echoed(out).length === 3)
  await new Promise((resolve) => setTimeout(resolve, 600)) // a second drop of the same id would be taken within 250 ms
  p.child.kill('SIGINT')
  const end = await p.done(60_000)
  assert.is(end.code, 0, end.stderr)
  const lines = echoed(end.stdout)
  assert.equal(lines.slice(0, 2), ['#1 hello', '#2 once'])
  assert.is(lines.length, 3, lines.join('\n'))
  assert.is(lines[2], '#3 from a file')
  assert.not.ok(end.stderr.includes('drop file'), end.stderr)
  verifyReplay(dir)
})

test('node: send --node and --dir (a directory a node serves) deliver at once; refusals exit 11 or 2 with one line', async () => {
  const n = await node()
  const r = igord(['run', agentWasm('echo'), '--node', n.dir])
  assert.is(r.code, 0, r.stderr)
  const s1 = igord(['send', 'echo', 'hi', '--node', n.dir])
  assert.is(s1.code, 0, s1.stderr)
  assert.is(s1.stdout, 'sent to echo: message #1 (2 bytes)\n')
  const s2 = igord(['send', 'echo', 'via dir', '--dir', n.dir, '--id', ID])
  assert.is(s2.stdout, 'sent to echo: message #2 (7 bytes)\n', s2.stderr)
  const s3 = igord(['send', 'echo', 'via dir', '--node', n.dir, '--id', ID.toUpperCase()])
  assert.is(s3.code, 0, s3.stderr)
  assert.is(s3.stdout, `echo already has message ${ID}: not sent again\n`)
  const big = join(tempDir('igord-inbox-big-'), 'big')
  writeFileSync(big, Buffer.alloc(65_537, 0x61))
  refusedWith(igord(['send', 'echo', '@' + big, '--node', n.dir]), 11, /message to echo is 65537 bytes, over its max_message_bytes 65536$/)
  writeFileSync(big, Buffer.alloc((1 << 20) + 1, 0x61)) // more than any agent takes (and than a control request holds)
  refusedWith(igord(['send', 'echo', '@' + big, '--node', n.dir]), 11, /message is 1048577 bytes, over the largest max_message_bytes an agent can have \(1048576\)$/)
  writeFileSync(big, Buffer.alloc(65_536, 0x62))
  const s4 = igord(['send', 'echo', '@' + big, '--node', n.dir, '--json'])
  assert.is(s4.code, 0, s4.stderr)
  assert.equal(JSON.parse(s4.stdout), { agent: 'echo', seq: 3, duplicate: false, dropped: false, id: JSON.parse(s4.stdout).id, bytes: 65_536 })
  refusedWith(igord(['send', 'nobody', 'x', '--node', n.dir]), 11, /no agent named nobody on this node$/)
  refusedWith(igord(['send', 'echo', 'x', '--node', n.dir, '--id', '12']), 2, /--id: message id must be 32 hex digits \(16 bytes\), got "12"$/)
  refusedWith(igord(['send', 'echo', 'x', '--node', n.dir, '--id', 'g'.repeat(32)]), 2, /--id: /)
  refusedWith(igord(['send', 'echo', 'x']), 2, /say where the agent is/)
  refusedWith(igord(['send', 'echo', 'x', '--node', n.dir, '--dir', n.dir]), 2, /give --node or --dir, not both$/)
  await n.live.waitFor((out) => echoed(out).length === 3)
  const end = await stopNode(n)
  assert.is(end.code, 0, end.stderr)
  assert.equal(echoed(end.stdout).map((l) => l.slice(0, 12)), ['#1 hi', '#2 via dir', '#3 ' + 'b'.repeat(9)])
  verifyReplay(n.dir)
})

test('inbox full: an agent that never reads its inbox (max_inbox_messages 2) refuses the third message, exit 11', async () => {
  const n = await node()
  const manifest = manifestWith({ max_inbox_messages: 2 })
  const r = igord(['run', join(AGENTS, 'deaf.wasm'), '--manifest', manifest, '--node', n.dir])
  assert.is(r.code, 0, r.stderr)
  await n.live.waitFor((out) => out.includes('[deaf] deaf tick 1\n'))
  for (const k of [1, 2]) assert.is(igord(['send', 'deaf', `m${k}`, '--node', n.dir]).stdout, `sent to deaf: message #${k} (2 bytes)\n`)
  refusedWith(igord(['send', 'deaf', 'm3', '--node', n.dir]), 11, /inbox of deaf is full \(2 messages waiting\)$/)
  // it woke for each message it took (and read none)
  await n.live.waitFor((out) => out.includes('[deaf] deaf tick 3\n'))
  const end = await stopNode(n)
  assert.is(end.code, 0, end.stderr)
  assert.not.ok(end.stdout.includes('deaf tick 4'), 'the refused message did not wake it')
  verifyReplay(n.dir)
  // stopped, the limit still holds (counted from its checkpoint's pending messages)
  refusedWith(igord(['send', 'deaf', 'm3', '--dir', n.dir]), 11, /inbox of deaf is full \(2 messages waiting\)$/)
})

test('node caps: --max-inbox-messages / --max-message-bytes refuse a manifest asking more (one line), take one within', async () => {
  const n = await startNode({ args: ['--max-inbox-messages', '2', '--max-message-bytes', '8'] })
  running.push(n)
  refusedWith(igord(['run', join(AGENTS, 'deaf.wasm'), '--node', n.dir]), 2, /.*deaf\.manifest\.json: resource_limits\.max_inbox_messages asks 256, above this host's cap of 2$/)
  refusedWith(igord(['run', join(AGENTS, 'deaf.wasm'), '--manifest', manifestWith({ max_inbox_messages: 2, max_message_bytes: 9 }), '--node', n.dir]), 2, /.*resource_limits\.max_message_bytes asks 9, above this host's cap of 8$/)
  const ok = igord(['run', join(AGENTS, 'deaf.wasm'), '--manifest', manifestWith({ max_inbox_messages: 2, max_message_bytes: 8 }), '--node', n.dir])
  assert.is(ok.code, 0, ok.stderr)
  refusedWith(igord(['send', 'deaf', '123456789', '--node', n.dir]), 11, /message to deaf is 9 bytes, over its max_message_bytes 8$/)
  refusedWith(igord(['node', '--data', tempDir('igord-inbox-caps-'), '--max-inbox-messages', 'many']), 2, /--max-inbox-messages: expected a positive integer/)
  const end = await stopNode(n)
  assert.is(end.code, 0, end.stderr)
})

test('a stopped agent (--dir): messages are spooled, taken in when it is resumed, once and in order; limits hold offline', async () => {
  const dir = tempDir('igord-inbox-stopped-')
  const r0 = igord(['run', agentWasm('echo'), '--dir', dir, '--ticks', '1'])
  assert.is(r0.code, 0, r0.stderr)
  for (const [k, text] of [[1, 'first'], [2, 'second'], [3, 'third']] as const) {
    const s = igord(['send', 'echo', text, '--dir', dir, ...(k === 2 ? ['--id', ID] : [])])
    assert.is(s.code, 0, s.stderr)
    assert.is(s.stdout, `sent to echo: message #${k} (${text.length} bytes)\n`)
  }
  assert.is(igord(['send', 'echo', 'second', '--dir', dir, '--id', ID]).stdout, `echo already has message ${ID}: not sent again\n`)
  assert.is(igord(['send', join(dir, 'echo.ckpt'), 'fourth']).stdout, 'sent to echo: message #4 (6 bytes)\n', 'a .ckpt names the agent and its directory')
  const big = join(tempDir('igord-inbox-big-'), 'big')
  writeFileSync(big, Buffer.alloc(65_537))
  refusedWith(igord(['send', 'echo', '@' + big, '--dir', dir]), 11, /message to echo is 65537 bytes, over its max_message_bytes 65536$/)
  refusedWith(igord(['send', 'nobody', 'x', '--dir', dir]), 11, /no agent named nobody in .* \(no .*nobody\.ckpt\)$/)
  refusedWith(igord(['send', 'echo', 'x', '--dir', dir, '--id', 'xyz']), 2, /--id: message id must be 32 hex digits/)
  // resumed: all four, in order, once
  const p = igordSpawn(['resume', join(dir, 'echo.ckpt'), '--interval', '20ms'])
  await p.waitFor((out) => echoed(out).length >= 4)
  p.child.kill('SIGINT')
  const e1 = await p.done(60_000)
  assert.is(e1.code, 0, e1.stderr)
  assert.equal(echoed(e1.stdout), ['#1 first', '#2 second', '#3 third', '#4 fourth'])
  // resumed again: nothing is delivered twice; a message sent while it runs comes next
  const q = igordSpawn(['resume', join(dir, 'echo.ckpt'), '--interval', '20ms'])
  await until(() => q.stderr().includes('resumed') || q.stdout().length > 0 || q.child.exitCode !== null, 20_000, 'the resume to start')
  await new Promise((resolve) => setTimeout(resolve, 300))
  const s5 = igord(['send', 'echo', 'fifth', '--dir', dir])
  assert.is(s5.code, 0, s5.stderr)
  await q.waitFor((out) => echoed(out).length >= 1)
  q.child.kill('SIGINT')
  const e2 = await q.done(60_000)
  assert.is(e2.code, 0, e2.stderr)
  assert.equal(echoed(e2.stdout), ['#5 fifth'])
  // asleep until a message, it ran no tick at resume: one tick, the message's
  const tickOf = (err: string): number => Number(/stopped at tick (\d+)/.exec(err)![1])
  assert.is(tickOf(e2.stderr), tickOf(e1.stderr) + 1, e2.stderr)
  verifyReplay(dir)
  // limits hold against what is on disk: a deaf agent with room for 2
  const d2 = tempDir('igord-inbox-deaf-')
  assert.is(igord(['run', join(AGENTS, 'deaf.wasm'), '--manifest', manifestWith({ max_inbox_messages: 2, max_message_bytes: 8 }), '--dir', d2, '--ticks', '1']).code, 0)
  refusedWith(igord(['send', 'deaf', '123456789', '--dir', d2]), 11, /message to deaf is 9 bytes, over its max_message_bytes 8$/)
  for (const k of [1, 2]) assert.is(igord(['send', 'deaf', '12345678', '--dir', d2]).stdout, `sent to deaf: message #${k} (8 bytes)\n`)
  refusedWith(igord(['send', 'deaf', 'x', '--dir', d2]), 11, /inbox of deaf is full \(2 messages waiting\)$/)
  verifyReplay(d2)
})

test.run()
