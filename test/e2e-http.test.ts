/**
 * HTTP effects end to end (docs/ABI.md "Effects: what igord guarantees per method"): the real
 * `igord` CLI runs agents-as watcher (GET) and poster (POST) against node:http servers on
 * 127.0.0.1 that this file starts and records. Each case stops igord and the server and then
 * checks `igord verify --replay` (no network: outcomes are inputs in the event log).
 *
 * The crash cases kill igord with SIGKILL at each step of an unsafe request, through the test-only
 * launcher test/igord-faulty.ts (`IGORD_FAULT=mailbox:<step>`, runtime/mailbox.ts
 * MAILBOX_FAULT_STEPS), or from here while the server holds the response, and resume with the
 * shipped CLI: the server sees each Idempotency-Key at most once and the agent's log says what
 * happened (the status, or E_HTTP_IN_DOUBT).
 */
// test-timeout: 900
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { AGENTS, agentWasm, cleanup, igord, IGORD_FAULTY, igordSpawn, tempDir } from './helpers.ts'
import type { Live, Run } from './helpers.ts'
import { nodeTracker, startNode, stopNode, until } from './node-helpers.ts'

/** One request a test server received. */
interface Hit { method: string; path: string; key: string; body: string }

/** A recording HTTP server on 127.0.0.1. */
interface Server { port: number; base: string; hits: Hit[]; close (): Promise<void> }

const servers = new Set<Server>()
const nodes = nodeTracker()
const running = new Set<Live>()

test.after.each(async () => {
  for (const l of running) { if (l.child.exitCode === null && l.child.signalCode === null) l.child.kill('SIGKILL'); await l.done() }
  running.clear()
  await nodes.killAll()
  for (const s of servers) await s.close()
})
test.after(cleanup)

/**
 * Starts a server that records every request (after reading its body) and then calls `answer`;
 * `answer` may leave the response open (a server that holds it).
 */
async function serve (answer: (hit: Hit, res: ServerResponse, req: IncomingMessage) => void): Promise<Server> {
  const hits: Hit[] = []
  const srv = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (d: string) => { body += d })
    req.on('end', () => {
      const hit = { method: req.method ?? '', path: req.url ?? '', key: String(req.headers['idempotency-key'] ?? ''), body }
      hits.push(hit)
      answer(hit, res, req)
    })
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as AddressInfo).port
  const s: Server = {
    port,
    base: `http://127.0.0.1:${port}`,
    hits,
    close: async () => {
      servers.delete(s)
      srv.closeAllConnections()
      await new Promise<void>((resolve) => srv.close(() => resolve()))
    },
  }
  servers.add(s)
  return s
}

/** A port on 127.0.0.1 where nothing listens (a server was there and is closed). */
async function deadPort (): Promise<number> {
  const s = await serve(() => {})
  await s.close()
  return s.port
}

/** `<agent>.manifest.json` with its `http` section changed, written into `dir`; returns its path. */
function manifestWith (dir: string, agent: string, http: Record<string, unknown>): string {
  const m = JSON.parse(readFileSync(join(AGENTS, `${agent}.manifest.json`), 'utf8'))
  m.http = { ...m.http, ...http }
  const file = join(dir, `${agent}.test.manifest.json`)
  writeFileSync(file, JSON.stringify(m))
  return file
}

/** Starts `igord run <agent>.wasm --dir d` (through the fault launcher with `fault`) and waits for its live checkpoint. */
async function run (agent: string, d: string, opts: { manifest?: string; fault?: string } = {}): Promise<Live> {
  const args = ['run', agentWasm(agent), '--dir', d, '--interval', '50ms', ...(opts.manifest === undefined ? [] : ['--manifest', opts.manifest])]
  const live = opts.fault === undefined ? igordSpawn(args) : igordSpawn(args, { IGORD_FAULT: opts.fault }, IGORD_FAULTY)
  running.add(live)
  await until(() => existsSync(join(d, `${agent}.ckpt`)) || live.child.exitCode !== null, 60_000, `${agent} born`)
  assert.ok(existsSync(join(d, `${agent}.ckpt`)), `${agent} was not born:\n${live.stderr()}`)
  return live
}

/** `igord resume <d>/<agent>.ckpt` in the background; resolves once it has resumed (its signal handlers are set). */
async function resume (agent: string, d: string): Promise<Live> {
  const live = igordSpawn(['resume', join(d, `${agent}.ckpt`), '--interval', '50ms'])
  running.add(live)
  await until(() => /^igord: resumed /m.test(live.stderr()) || live.child.exitCode !== null, 60_000, `${agent} resumed`)
  assert.match(live.stderr(), /^igord: resumed /m)
  return live
}

/** `igord <args>` without blocking this process (the servers here must keep answering). */
async function igordAsync (args: string[]): Promise<Run> {
  const live = igordSpawn(args)
  running.add(live)
  return await live.done(120_000)
}

/** `igord send <agent> <text> <where…>`; asserts it was taken. */
async function send (agent: string, text: string, where: string[]): Promise<void> {
  const r = await igordAsync(['send', agent, text, ...where])
  assert.is(r.code, 0, `send failed: ${r.stderr}`)
}

/** Stops a run with SIGINT (final checkpoint) and asserts a clean exit. */
async function stop (live: Live): Promise<Run> {
  live.child.kill('SIGINT')
  const r = await live.done(60_000)
  assert.is(r.code, 0, `igord did not stop cleanly (${r.code} ${r.signal}):\n${r.stderr}`)
  return r
}

/** Waits until a SIGKILLed (by a fault, or by us) run has exited. */
async function killed (live: Live): Promise<void> {
  const r = await live.done(120_000)
  assert.is(r.signal, 'SIGKILL', `expected a SIGKILL, got ${r.code} ${r.signal}:\n${r.stderr}`)
}

/** `igord verify --replay <d>` is VALID (run after the servers are closed: replay needs no network). */
function assertReplays (d: string): void {
  const v = igord(['verify', '--replay', d])
  assert.is(v.code, 0, `verify --replay:\n${v.stdout}\n${v.stderr}`)
  assert.match(v.stdout, /^VALID/m)
}

/** How many lines of `out` match `re`. */
function count (out: string, re: RegExp): number {
  return out.split('\n').filter((l) => re.test(l)).length
}

/** The DID an `igord run` was born with. */
function didOf (live: Live): string {
  return /born (did:key:\S+)/.exec(live.stderr())![1]
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// ---------------------------------------------------------------------------------------------
// Outcomes

test('GET: watcher logs the first value and a change; verify --replay is VALID offline', async () => {
  let value = 42
  const srv = await serve((_h, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(`{"value":${value}}`) })
  const d = tempDir()
  const live = await run('watcher', d)
  await send('watcher', `${srv.base}/price`, ['--dir', d])
  await live.waitFor((o) => o.includes('watcher: first value 42'))
  value = 43
  await live.waitFor((o) => o.includes(`watcher: ${srv.base}/price changed: 42 -> 43`))
  await stop(live)
  await srv.close()
  assert.ok(srv.hits.every((h) => h.method === 'GET' && h.path === '/price' && h.key.startsWith(`${didOf(live)}/`)))
  assertReplays(d)
})

test('POST: the server sees exactly one POST with Idempotency-Key <did>/<tick>/<id>; poster logs the status', async () => {
  const srv = await serve((_h, res) => { res.writeHead(201); res.end('created') })
  const d = tempDir()
  const live = await run('poster', d)
  await send('poster', `${srv.base}/hook`, ['--dir', d])
  await live.waitFor((o) => o.includes('poster: request 1 status 201'))
  await stop(live)
  await srv.close()
  assert.is(srv.hits.length, 1, JSON.stringify(srv.hits))
  const h = srv.hits[0]
  assert.is(h.method, 'POST')
  assert.is(h.body, '{"n":1}')
  const m = /^(did:key:[^/]+)\/(\d+)\/(\d+)$/.exec(h.key)
  assert.ok(m !== null, `Idempotency-Key ${h.key}`)
  assert.is(m![1], didOf(live))
  assert.ok(Number(m![2]) >= 1)
  assert.is(m![3], '1')
  assertReplays(d)
})

/** Watcher against `url` with a manifest changed by `http`; waits for `error <code>` and returns the run's output. */
async function watcherError (url: string, http: Record<string, unknown>, code: string): Promise<{ d: string; out: string }> {
  const d = tempDir()
  const live = await run('watcher', d, { manifest: manifestWith(d, 'watcher', http) })
  await send('watcher', url, ['--dir', d])
  await live.waitFor((o) => o.includes(`watcher: ${url} error ${code}`))
  const r = await stop(live)
  assert.not.match(r.stdout, /first value/)
  return { d, out: r.stdout }
}

test('redirect to a host not in the allow-list: E_HTTP_REDIRECT, the other server saw nothing', async () => {
  const other = await serve((_h, res) => { res.writeHead(200); res.end('{"value":1}') })
  const srv = await serve((_h, res) => { res.writeHead(302, { location: `${other.base}/elsewhere` }); res.end() })
  const { d } = await watcherError(`${srv.base}/price`, { allow: [`127.0.0.1:${srv.port}`] }, 'E_HTTP_REDIRECT')
  await srv.close()
  await other.close()
  assert.ok(srv.hits.length >= 1)
  assert.is(other.hits.length, 0)
  assertReplays(d)
})

test('timeout: a server that never answers gives E_HTTP_TIMEOUT (timeout_ms from the manifest)', async () => {
  const srv = await serve(() => { /* never answers */ })
  const { d } = await watcherError(`${srv.base}/slow`, { timeout_ms: 300 }, 'E_HTTP_TIMEOUT')
  await srv.close()
  assert.ok(srv.hits.length >= 1)
  assertReplays(d)
})

test('oversized response: E_HTTP_TOO_LARGE (max_response_bytes from the manifest)', async () => {
  const srv = await serve((_h, res) => { res.writeHead(200); res.end('x'.repeat(8192)) })
  const { d } = await watcherError(`${srv.base}/big`, { max_response_bytes: 1024 }, 'E_HTTP_TOO_LARGE')
  await srv.close()
  assertReplays(d)
})

test('server down: E_HTTP_CONNECT', async () => {
  const port = await deadPort()
  const { d } = await watcherError(`http://127.0.0.1:${port}/price`, {}, 'E_HTTP_CONNECT')
  assertReplays(d)
})

test('GET on a node: igord send --node reaches the watcher, it logs the value; the node\'s history replays', async () => {
  const srv = await serve((_h, res) => { res.writeHead(200); res.end('{"value":7}') })
  const n = nodes.track(await startNode())
  const r = await igordAsync(['run', agentWasm('watcher'), '--node', n.dir])
  assert.is(r.code, 0, r.stderr)
  await send('watcher', `${srv.base}/v`, ['--node', n.dir])
  await n.live.waitFor((o) => o.includes('watcher: first value 7'))
  const end = await stopNode(n)
  assert.is(end.code, 0, end.stderr)
  await srv.close()
  assertReplays(n.dir)
})

// ---------------------------------------------------------------------------------------------
// kill -9 at each step of an unsafe request, then resume

/** Hits of the poster's request 1 (by its Idempotency-Key). */
function firstRequestHits (srv: Server): Hit[] {
  return srv.hits.filter((h) => h.key.endsWith('/1'))
}

test('kill -9 (a) after the checkpoint, before the journal mark: sent exactly once after resume', async () => {
  const srv = await serve((_h, res) => { res.writeHead(201); res.end() })
  const d = tempDir()
  const live = await run('poster', d, { fault: 'mailbox:before-mark' })
  await send('poster', `${srv.base}/hook`, ['--dir', d])
  await killed(live)
  assert.match(live.stderr(), /fault mailbox:before-mark: poster request #1/)
  assert.is(srv.hits.length, 0)
  const again = await resume('poster', d)
  await again.waitFor((o) => o.includes('poster: request 1 status 201'))
  const r = await stop(again)
  await srv.close()
  assert.is(firstRequestHits(srv).length, 1)
  assert.is(srv.hits.length, 1)
  assert.is(count(r.stdout, /poster: request 1 /), 1)
  assertReplays(d)
})

test('kill -9 (b) after the journal mark, before the request leaves: E_HTTP_IN_DOUBT, never sent; a resume that stops before its first tick keeps it', async () => {
  const srv = await serve((_h, res) => { res.writeHead(201); res.end() })
  const d = tempDir()
  const live = await run('poster', d, { fault: 'mailbox:after-mark' })
  await send('poster', `${srv.base}/hook`, ['--dir', d])
  await killed(live)
  assert.match(live.stderr(), /fault mailbox:after-mark: poster request #1/)
  assert.ok(existsSync(join(d, 'effects', 'poster', '1.sent')), 'the journal mark is durable')
  // A resume that runs no tick: the in-doubt outcome it recovered must survive it (a checkpoint
  // holds it, or the spool and journal are left as they were).
  const zero = await igordAsync(['resume', join(d, 'poster.ckpt'), '--ticks', '0'])
  assert.is(zero.code, 0, zero.stderr)
  const again = await resume('poster', d)
  await again.waitFor((o) => o.includes('poster: request 1 error E_HTTP_IN_DOUBT'))
  await sleep(500) // a resend would reach the server by now; none may
  const r = await stop(again)
  await srv.close()
  assert.is(srv.hits.length, 0, JSON.stringify(srv.hits))
  assert.is(count(r.stdout, /poster: request 1 /), 1)
  assertReplays(d)
})

test('kill -9 (c) after the server received it, before the outcome: E_HTTP_IN_DOUBT, never sent again', async () => {
  const srv = await serve(() => { /* holds the response until igord is killed */ })
  const d = tempDir()
  const live = await run('poster', d)
  await send('poster', `${srv.base}/hook`, ['--dir', d])
  await until(() => srv.hits.length > 0, 60_000, 'the POST to reach the server')
  live.child.kill('SIGKILL')
  await killed(live)
  const again = await resume('poster', d)
  await again.waitFor((o) => o.includes('poster: request 1 error E_HTTP_IN_DOUBT'))
  await sleep(500)
  const r = await stop(again)
  await srv.close()
  assert.is(srv.hits.length, 1, JSON.stringify(srv.hits))
  assert.is(count(r.stdout, /poster: request 1 /), 1)
  assertReplays(d)
})

test('kill -9 (d) after the outcome is spooled, before the next checkpoint: the outcome is delivered exactly once, not sent again', async () => {
  const srv = await serve((_h, res) => { res.writeHead(201); res.end() })
  const d = tempDir()
  const live = await run('poster', d, { fault: 'mailbox:after-outcome' })
  await send('poster', `${srv.base}/hook`, ['--dir', d])
  await killed(live)
  assert.match(live.stderr(), /fault mailbox:after-outcome: poster request #1 status 201/)
  assert.is(srv.hits.length, 1)
  const zero = await igordAsync(['resume', join(d, 'poster.ckpt'), '--ticks', '0'])
  assert.is(zero.code, 0, zero.stderr)
  const again = await resume('poster', d)
  await again.waitFor((o) => o.includes('poster: request 1 status 201'))
  await sleep(500)
  const r = await stop(again)
  await srv.close()
  assert.is(srv.hits.length, 1, JSON.stringify(srv.hits))
  assert.is(count(r.stdout + live.stdout(), /poster: request 1 /), 1)
  assertReplays(d)
})

test('kill -9 of a safe GET after the server received it: sent again after resume, exactly one outcome', async () => {
  let first = true
  const srv = await serve((_h, res) => {
    if (first) { first = false; return } // holds the first GET until igord is killed
    res.writeHead(200); res.end('{"value":5}')
  })
  const d = tempDir()
  const live = await run('watcher', d)
  await send('watcher', `${srv.base}/v`, ['--dir', d])
  await until(() => srv.hits.length > 0, 60_000, 'the GET to reach the server')
  live.child.kill('SIGKILL')
  await killed(live)
  const again = await resume('watcher', d)
  await again.waitFor((o) => o.includes('watcher: first value 5'))
  const r = await stop(again)
  await srv.close()
  assert.is(firstRequestHits(srv).length, 2, JSON.stringify(srv.hits)) // the same request (same key), sent twice
  assert.is(count(r.stdout, /first value/), 1)
  assert.not.match(r.stdout, /outcome of unknown request/)
  assertReplays(d)
})

test('kill -9 (b) of a node after the journal mark: the restarted node answers E_HTTP_IN_DOUBT, never sends it', async () => {
  const srv = await serve((_h, res) => { res.writeHead(201); res.end() })
  const n = nodes.track(await startNode({ fault: 'mailbox:after-mark' }))
  const r = await igordAsync(['run', agentWasm('poster'), '--node', n.dir])
  assert.is(r.code, 0, r.stderr)
  await send('poster', `${srv.base}/hook`, ['--node', n.dir])
  await killed(n.live)
  assert.match(n.live.stderr(), /fault mailbox:after-mark: poster request #1/)
  const m = nodes.track(await startNode({ dir: n.dir }))
  await m.live.waitFor((o) => o.includes('poster: request 1 error E_HTTP_IN_DOUBT'))
  await sleep(500)
  const end = await stopNode(m)
  assert.is(end.code, 0, end.stderr)
  await srv.close()
  assert.is(srv.hits.length, 0, JSON.stringify(srv.hits))
  assertReplays(n.dir)
})

test('resumed by another host (its own data directory): an unsafe request without outcome is in doubt even without a mark', async () => {
  const srv = await serve((_h, res) => { res.writeHead(201); res.end() })
  const d = tempDir()
  const live = await run('poster', d, { fault: 'mailbox:before-mark' })
  await send('poster', `${srv.base}/hook`, ['--dir', d])
  await killed(live)
  assert.not.ok(existsSync(join(d, 'effects', 'poster', '1.sent')))
  const d2 = tempDir()
  copyFileSync(join(d, 'poster.ckpt'), join(d2, 'poster.ckpt'))
  const again = await resume('poster', d2)
  await again.waitFor((o) => o.includes('poster: request 1 error E_HTTP_IN_DOUBT'))
  await sleep(500)
  await stop(again)
  await srv.close()
  assert.is(srv.hits.length, 0, JSON.stringify(srv.hits))
  assertReplays(d) // the first host's history; the second's starts at a checkpoint it did not write
})

// ---------------------------------------------------------------------------------------------
// A clean stop (SIGINT) while a request is in flight: the loop waits up to 1 s for it

test('SIGINT while a POST is in flight and its response comes during the wait: the outcome is recorded once, not sent again', async () => {
  let held: ServerResponse | null = null
  const srv = await serve((_h, res) => { held = res })
  const d = tempDir()
  const live = await run('poster', d)
  await send('poster', `${srv.base}/hook`, ['--dir', d])
  await until(() => held !== null, 60_000, 'the POST to reach the server')
  live.child.kill('SIGINT')
  held!.writeHead(201); held!.end() // answered while igord waits for requests in flight (≤ 1 s)
  const first = await live.done(60_000)
  assert.is(first.code, 0, first.stderr)
  const again = await resume('poster', d)
  await again.waitFor((o) => /poster: request 1 /.test(o + first.stdout))
  await sleep(500)
  const r = await stop(again)
  await srv.close()
  assert.is(srv.hits.length, 1)
  assert.is(count(first.stdout + r.stdout, /poster: request 1 /), 1)
  assert.is(count(first.stdout + r.stdout, /poster: request 1 status 201/), 1)
  assertReplays(d)
})

test('SIGINT while a POST is in flight and no response comes: igord stops after the wait; after resume E_HTTP_IN_DOUBT, never sent again', async () => {
  const srv = await serve(() => { /* never answers */ })
  const d = tempDir()
  const live = await run('poster', d)
  await send('poster', `${srv.base}/hook`, ['--dir', d])
  await until(() => srv.hits.length > 0, 60_000, 'the POST to reach the server')
  await stop(live)
  const again = await resume('poster', d)
  await again.waitFor((o) => o.includes('poster: request 1 error E_HTTP_IN_DOUBT'))
  await sleep(500)
  const r = await stop(again)
  await srv.close()
  assert.is(srv.hits.length, 1)
  assert.is(count(r.stdout, /poster: request 1 /), 1)
  assertReplays(d)
})

test('a failed migration while a POST is in flight: the loop goes on here and answers E_HTTP_IN_DOUBT, it does not send it again', async () => {
  const srv = await serve(() => { /* holds the response */ })
  const gone = nodes.track(await startNode())
  const goneAddr = gone.addr
  await stopNode(gone) // an address nobody answers at
  const n = nodes.track(await startNode())
  const r = await igordAsync(['run', agentWasm('poster'), '--node', n.dir])
  assert.is(r.code, 0, r.stderr)
  await send('poster', `${srv.base}/hook`, ['--node', n.dir])
  await until(() => srv.hits.length > 0, 60_000, 'the POST to reach the server')
  const m = await igordAsync(['migrate', 'poster', '--to', goneAddr, '--node', n.dir])
  assert.is.not(m.code, 0, 'the migration cannot succeed')
  await n.live.waitFor((o) => o.includes('poster: request 1 error E_HTTP_IN_DOUBT'))
  await sleep(500)
  const end = await stopNode(n)
  assert.is(end.code, 0, end.stderr)
  await srv.close()
  assert.is(srv.hits.length, 1, JSON.stringify(srv.hits))
  assert.is(count(end.stdout, /poster: request 1 /), 1)
  assertReplays(n.dir)
})

test.run()
