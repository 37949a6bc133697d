/**
 * p2p/http-api.ts against real servers on 127.0.0.1 (never another address) in front of in-process
 * nodes: every endpoint, the access rule (a non-loopback `--http` without a token refuses to start,
 * exit 2, before binding anything; with a token every request needs it), bad input answered 4xx with
 * a one-line `{error, code}`, the SSE log resuming exactly after `Last-Event-ID`, the stream bounds,
 * and `/metrics` parsed by a Prometheus text-format parser.
 */
import { existsSync } from 'node:fs'
import * as http from 'node:http'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { IgordError } from '../checkpoint/errors.ts'
import { checkHttpAccess, isLoopbackHost, parseHttpListen, serveHttp, units } from '../p2p/http-api.ts'
import type { HttpApi } from '../p2p/http-api.ts'
import { IgordNode } from '../p2p/node.ts'
import { agentWasm, cleanup, igord, tempDir } from './helpers.ts'
import { nodeTracker, startNode as startNodeChild, stopNode, until } from './node-helpers.ts'

interface Family { name: string; type: string; metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string }[] }
const parseProm = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[]

const TOKEN = 'test-token-0123456789abcdef'
const exitOf = (f: () => unknown): number | null => { try { f(); return null } catch (e) { return e instanceof IgordError ? e.exitCode : -1 } }

const startNode = (note: string[] = []) => IgordNode.start({
  dir: tempDir('igord-http-'), listen: ['/ip4/127.0.0.1/tcp/0'], capabilities: ['clock', 'log', 'inbox', 'timer', 'rand', 'wallet', 'identity'],
  price: 1000n, intervalMs: 20, checkpointEveryMs: 20, note: (l) => note.push(l), emit: () => {},
})

let a: IgordNode | null = null
let b: IgordNode | null = null
let api: HttpApi | null = null
let tokenApi: HttpApi | null = null

const children = nodeTracker()

test.after(async () => {
  await children.killAll()
  await api?.close(); await tokenApi?.close()
  await a?.shutdown(); await b?.shutdown()
  cleanup()
})

/** A request to `api`: method, path, JSON body (sent as application/json unless `type` says otherwise). */
async function call (method: string, p: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
  const init: RequestInit = { method, headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers }, signal: AbortSignal.timeout(120_000) }
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body)
  const r = await fetch(api!.url + p, init).catch((e: Error) => { throw new Error(`${method} ${p}: ${e.message}: ${String((e.cause as Error)?.message ?? e.cause)}`) })
  const text = await r.text()
  let json: Record<string, unknown> = {}
  try { json = JSON.parse(text) as Record<string, unknown> } catch { /* not JSON */ }
  return { status: r.status, json, text }
}

/** Asserts a 4xx answer `{error, code}` with a one-line reason and the given code. */
function refused (r: { status: number; json: Record<string, unknown> }, status: number, code: string, what: string): void {
  assert.is(r.status, status, `${what}: status (${JSON.stringify(r.json)})`)
  assert.equal(Object.keys(r.json).sort(), ['code', 'error'], `${what}: body has error and code`)
  assert.is(r.json.code, code, `${what}: code`)
  assert.type(r.json.error, 'string')
  assert.ok((r.json.error as string).length > 0 && !(r.json.error as string).includes('\n'), `${what}: one line`)
}

/** SSE events (id, data) of GET `p` until `max` events, the end of the stream, or `ms`; `status` the HTTP status. */
async function events (p: string, max: number, headers: Record<string, string> = {}, ms = 60_000): Promise<{ status: number; events: { id: string; data: Record<string, unknown> }[]; ended: boolean }> {
  const ctl = new AbortController()
  const timer = setTimeout(() => ctl.abort(), ms)
  const out: { id: string; data: Record<string, unknown> }[] = []
  let ended = false
  try {
    const r = await fetch(api!.url + p, { headers, signal: ctl.signal })
    if (r.status !== 200 || r.body === null) return { status: r.status, events: out, ended: true }
    const reader = r.body.getReader()
    const dec = new TextDecoder()
    let buf = ''
    try {
      while (out.length < max) {
        const { done, value } = await reader.read()
        if (done) { ended = true; break }
        buf += dec.decode(value, { stream: true })
        for (let k = buf.indexOf('\n\n'); k >= 0 && out.length < max; k = buf.indexOf('\n\n')) {
          const block = buf.slice(0, k); buf = buf.slice(k + 2)
          let id = ''; let data = ''
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) id = line.slice(4)
            else if (line.startsWith('data: ')) data += line.slice(6)
          }
          if (data !== '') out.push({ id, data: JSON.parse(data) as Record<string, unknown> })
        }
      }
    } catch (e) { if (!ctl.signal.aborted) throw e }
    ctl.abort()
    return { status: 200, events: out, ended }
  } finally { clearTimeout(timer) }
}

/**
 * A request on a connection of its own (`agent: false`): one with a chosen Host header (fetch does
 * not let a caller set it), or an oversized body (the server answers 413 without reading it all
 * and closes the connection, which a pooled client would then reuse).
 */
function rawRequest (url: string, opts: http.RequestOptions, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { ...opts, agent: false, timeout: 60_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end(body)
  })
}

test('the access rule: a bare port is loopback; a non-loopback address needs a token (exit 2)', () => {
  assert.equal(parseHttpListen('8080'), { host: '127.0.0.1', port: 8080 })
  assert.equal(parseHttpListen('0.0.0.0:80'), { host: '0.0.0.0', port: 80 })
  assert.equal(parseHttpListen('[::1]:9'), { host: '::1', port: 9 })
  for (const bad of ['', 'x', '1:2:3', '70000', 'host:', ':80']) assert.is(exitOf(() => parseHttpListen(bad)), 2, `--http ${JSON.stringify(bad)}`)
  for (const h of ['127.0.0.1', '127.9.8.7', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) assert.ok(isLoopbackHost(h), h)
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '127.0.0.1.example.com']) assert.not.ok(isLoopbackHost(h), h)
  assert.is(checkHttpAccess('127.0.0.1', undefined), false)
  assert.is(checkHttpAccess('127.0.0.1', TOKEN), true)
  assert.is(checkHttpAccess('0.0.0.0', TOKEN), true)
  assert.is(exitOf(() => checkHttpAccess('0.0.0.0', undefined)), 2)
  assert.is(exitOf(() => checkHttpAccess('::', undefined)), 2)
  assert.is(exitOf(() => checkHttpAccess('127.0.0.1', 'short')), 2)
  assert.is(units('10', 'budget'), 10_000_000n)
  assert.is(units(0.25, 'budget'), 250_000n)
  for (const bad of ['-1', '1.0000001', 'abc', null, '', '1e3']) assert.is(exitOf(() => units(bad, 'units')), -1, String(bad))
})

test('igord node --http 0.0.0.0:<port> without a token exits 2 before it starts (nothing bound, no data directory made)', () => {
  const dir = join(tempDir('igord-http-cli-'), 'data')
  delete process.env.IGORD_HTTP_TOKEN // the child inherits the environment
  const r = igord(['node', '--data', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--http', '0.0.0.0:0'])
  assert.is(r.code, 2, r.stderr)
  assert.match(r.stderr, /needs --http-token/)
  assert.is(r.stderr.trim().split('\n').length, 1, 'one line')
  assert.not.ok(existsSync(dir), 'the node did not start')
})

test('igord node --http 127.0.0.1:0 with IGORD_HTTP_TOKEN: prints its URL, needs the token, stops cleanly on SIGINT', async () => {
  const n = children.track(await startNodeChild({ args: ['--listen', '/ip4/127.0.0.1/tcp/0', '--http', '127.0.0.1:0'], env: { IGORD_HTTP_TOKEN: TOKEN } }))
  await n.live.waitFor((out) => /^http \S+/m.test(out))
  const url = /^http (\S+)/m.exec(n.live.stdout())![1]
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
  const none = await fetch(url + '/api/agents', { signal: AbortSignal.timeout(60_000) })
  assert.is(none.status, 401)
  await none.body?.cancel()
  const ok = await fetch(url + '/api/agents', { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(60_000) })
  assert.is(ok.status, 200)
  assert.is(((await ok.json()) as { peer: string }).peer, n.peer)
  const end = await stopNode(n)
  assert.is(end.code, 0, end.stderr)
})

test('every endpoint, bad input, SSE resume, stream bounds, /metrics', async () => {
  ;[a, b] = await Promise.all([startNode(), startNode()])
  api = await serveHttp(a, { host: '127.0.0.1', port: 0, limits: { maxStreams: 2, maxEventsPerStream: 6, pollMs: 50 } })
  assert.match(api.url, /^http:\/\/127\.0\.0\.1:\d+$/)

  let r = await call('GET', '/api/agents')
  assert.is(r.status, 200)
  assert.is(r.json.peer, a.peerId)
  assert.equal(r.json.agents, [])

  // run
  r = await call('POST', '/api/agents', { wasm: agentWasm('heartbeat'), budget: '10', intervalMs: 20 })
  assert.is(r.status, 201, r.text)
  assert.is(r.json.name, 'heartbeat')
  assert.is(r.json.host, a.peerId)
  const did = r.json.did as string
  r = await call('POST', '/api/agents', { wasm: agentWasm('echo'), budget: 5, name: 'echo', intervalMs: 20 })
  assert.is(r.status, 201, r.text)

  // bad input: each a 4xx with a one-line reason and a stable code
  refused(await call('POST', '/api/agents', '{"wasm":'), 400, 'bad_json', 'not JSON')
  refused(await call('POST', '/api/agents', '[1]'), 400, 'bad_json', 'not an object')
  refused(await call('POST', '/api/agents', JSON.stringify({ wasm: agentWasm('heartbeat'), budget: '1' }), { 'content-type': 'text/plain' }), 415, 'unsupported_media_type', 'a form-like post')
  refused(await call('POST', '/api/agents', { budget: '1' }), 400, 'bad_field', 'no wasm')
  refused(await call('POST', '/api/agents', { wasm: 'agents/heartbeat.wasm', budget: '1' }), 400, 'bad_field', 'relative path')
  refused(await call('POST', '/api/agents', { wasm: '/nonexistent/x.wasm', budget: '1' }), 400, 'bad_field', 'missing file')
  refused(await call('POST', '/api/agents', { wasm: agentWasm('heartbeat'), budget: 'lots' }), 400, 'bad_field', 'bad budget')
  refused(await call('POST', '/api/agents', { wasm: agentWasm('heartbeat'), budget: '1', name: '../x' }), 400, 'bad_field', 'bad name')
  refused(await call('POST', '/api/agents', { wasm: agentWasm('heartbeat'), budget: '1', intervalMs: -1 }), 400, 'bad_field', 'bad interval')
  refused(await call('POST', '/api/agents', { wasm: agentWasm('heartbeat'), budget: '1' }), 400, 'bad_request', 'name taken')
  const big = await rawRequest(api.url + '/api/agents', { method: 'POST', headers: { 'content-type': 'application/json' } }, JSON.stringify({ wasm: agentWasm('heartbeat'), budget: '1', pad: 'x'.repeat(3 * 1024 * 1024) }))
  refused({ status: big.status, json: JSON.parse(big.body) as Record<string, unknown> }, 413, 'body_too_large', 'body over the bound')
  refused(await call('GET', '/api/agents/nobody'), 404, 'no_such_agent', 'unknown agent')
  refused(await call('POST', '/api/agents/nobody/stop', {}), 404, 'no_such_agent', 'stop unknown agent')
  refused(await call('GET', '/api/nothing'), 404, 'not_found', 'unknown route')
  refused(await call('POST', '/api/agents/echo/send', {}), 400, 'bad_field', 'send without a message')
  refused(await call('POST', '/api/agents/echo/send', { body64: '%%%' }), 400, 'bad_field', 'send bad base64')
  refused(await call('POST', '/api/agents/echo/fund', { units: '0' }), 400, 'bad_field', 'fund 0')
  refused(await call('POST', '/api/agents/echo/fund', { units: -3 }), 400, 'bad_field', 'fund negative')
  refused(await call('POST', '/api/agents/heartbeat/migrate', {}), 400, 'bad_field', 'migrate without peer')
  refused(await call('POST', '/api/agents/heartbeat/migrate', { peer: 'not-a-multiaddr' }), 400, 'bad_request', 'migrate to a bad address')
  refused(await call('GET', '/api/agents/heartbeat/history?limit=0'), 400, 'bad_field', 'history limit')
  refused(await call('GET', '/api/agents/heartbeat/logs?from=x'), 400, 'bad_field', 'logs from')
  refused(await call('GET', '/api/agents/heartbeat/logs', undefined, { 'last-event-id': 'garbage' }), 400, 'bad_field', 'bad Last-Event-ID')
  const host = await rawRequest(api.url + '/api/agents', { headers: { host: 'evil.example:80' } })
  assert.is(host.status, 421, 'a non-loopback Host name is refused (DNS rebinding)')
  assert.is(JSON.parse(host.body).code, 'bad_host')

  // detail, by name and by DID
  await until(() => (a!.agents.get('heartbeat')?.session.agent.tick ?? 0) >= 5, 60_000, 'heartbeat ticks')
  r = await call('GET', '/api/agents/heartbeat')
  assert.is(r.status, 200)
  assert.is(r.json.did, did)
  assert.ok((r.json.tick as number) >= 5)
  assert.ok(((r.json.checkpoints as { count: number }).count) >= 1, 'checkpoints counted')
  assert.ok(((r.json.checkpoints as { bytes: number }).bytes) > 0, 'checkpoint bytes counted')
  for (const k of ['name', 'did', 'status', 'tick', 'epoch', 'fuel', 'budget', 'host', 'hibernated', 'lastCheckpointTick']) assert.ok(k in r.json, k)
  r = await call('GET', `/api/agents/${encodeURIComponent(did)}`)
  assert.is(r.json.name, 'heartbeat')
  r = await call('GET', '/api/agents')
  assert.equal((r.json.agents as { name: string }[]).map((x) => x.name).sort(), ['echo', 'heartbeat'])

  // send and fund
  r = await call('POST', '/api/agents/echo/send', { message: 'hello over http' })
  assert.is(r.status, 200, r.text)
  assert.ok((r.json.seq as number) >= 1)
  const before = BigInt(a.list().find((x) => x.name === 'echo')!.budget)
  r = await call('POST', '/api/agents/echo/fund', { units: '2.5' })
  assert.is(r.status, 200, r.text)
  assert.ok(BigInt(r.json.budget as string) >= before + 2_500_000n - 1_000_000n, 'the budget rose by the top-up (less what the agent burned meanwhile)')

  // SSE: ids resume exactly after Last-Event-ID; the events-per-stream bound closes a stream
  const first = await events('/api/agents/heartbeat/logs', 100)
  assert.is(first.status, 200)
  assert.is(first.events.length, 6, 'the stream ends after maxEventsPerStream events')
  assert.ok(first.ended, 'the node closed it')
  assert.match(first.events[0].id, /^\d+:\d+$/)
  assert.is(first.events[0].data.tick, 0, 'from the birth on')
  assert.not.ok(first.events.some((e) => e.data.kind === 'gap'), 'no gap: the reader reads the live file before listing the history (runtime/logs.ts refresh)')
  const again = await events('/api/agents/heartbeat/logs', 3, { 'last-event-id': first.events[2].id })
  assert.equal(again.events.map((e) => e.id), first.events.slice(3, 6).map((e) => e.id), 'resumed with the next event')
  assert.equal(again.events.map((e) => e.data), first.events.slice(3, 6).map((e) => e.data))
  const ids = first.events.map((e) => e.id.split(':').map(Number))
  for (let k = 1; k < ids.length; k++) assert.ok(ids[k][0] > ids[k - 1][0] || (ids[k][0] === ids[k - 1][0] && ids[k][1] > ids[k - 1][1]), 'ids increase')
  const from = await events('/api/agents/heartbeat/logs?from=3', 1)
  assert.ok((from.events[0].data.tick as number) >= 3, '?from skips earlier ticks')
  // the streams-per-node bound: two open streams, a third refused
  const openStreams = async () => Number(parseProm((await call('GET', '/metrics')).text).find((f) => f.name === 'igord_http_log_streams')?.metrics[0].value)
  for (let k = 0; k < 600 && await openStreams() !== 0; k++) await new Promise((res) => setTimeout(res, 100)) // the streams above were closed by the client
  assert.is(await openStreams(), 0, 'closed streams are no longer counted')
  const c1 = new AbortController(); const c2 = new AbortController()
  try {
    const o1 = await fetch(api.url + '/api/agents/echo/logs?from=999999', { signal: c1.signal })
    const o2 = await fetch(api.url + '/api/agents/echo/logs?from=999999', { signal: c2.signal })
    assert.is(o1.status, 200); assert.is(o2.status, 200)
    assert.is(await openStreams(), 2)
    refused(await call('GET', '/api/agents/heartbeat/logs'), 503, 'too_many_streams', 'third stream')
  } finally { c1.abort(); c2.abort() }

  // history
  r = await call('GET', '/api/agents/heartbeat/history?limit=5')
  assert.is(r.status, 200)
  const cps = r.json.checkpoints as { tick: number; cid: string; epoch: number; host: string; status: string; fuel: string; budget: string; time: string }[]
  assert.is(cps.length, 5)
  assert.ok((r.json.total as number) >= 5)
  for (const cp of cps) {
    assert.is(cp.host, a.peerId); assert.is(cp.epoch, 0); assert.is(cp.status, 'running')
    assert.match(cp.cid, /^baf/); assert.match(cp.fuel, /^\d+$/); assert.match(cp.budget, /^\d+$/); assert.ok(!Number.isNaN(Date.parse(cp.time)))
  }
  for (let k = 1; k < cps.length; k++) assert.ok(cps[k].tick >= cps[k - 1].tick)

  // metrics parse, with the agents' and the node's series
  let fams = parseProm((await call('GET', '/metrics')).text)
  const fam = (n: string) => fams.find((f) => f.name === n)
  const sample = (n: string, agent?: string) => fam(n)?.metrics.find((m) => agent === undefined || m.labels?.agent === agent)
  for (const n of ['igord_agent_tick', 'igord_agent_fuel', 'igord_agent_budget_microcents', 'igord_agent_checkpoints_total', 'igord_agent_checkpoint_seconds_total', 'igord_agent_checkpoint_bytes_total']) {
    assert.ok(Number(sample(n, 'heartbeat')?.value) > 0, `${n} of heartbeat`)
  }
  assert.is(fam('igord_agent_checkpoints_total')?.type, 'COUNTER')
  assert.is(sample('igord_node_agents')?.value, '2')
  assert.is(sample('igord_node_agents_hibernated')?.value, '0')
  assert.ok(Number(sample('igord_node_uptime_seconds')?.value) > 0)
  assert.is(sample('igord_agent_tick', 'heartbeat')?.labels?.did, did)

  // migrate to b: the result, the handoff in the history, the migration metrics, the log's end
  r = await call('POST', '/api/agents/heartbeat/migrate', { peer: b.addrs[0] })
  assert.is(r.status, 200, r.text)
  assert.is(r.json.to, b.peerId)
  assert.ok(b.agents.has('heartbeat'))
  refused(await call('GET', '/api/agents/heartbeat'), 404, 'no_such_agent', 'the agent left')
  r = await call('GET', '/api/agents/heartbeat/history')
  const handoffs = r.json.handoffs as { from: string; to: string; epoch: number }[]
  assert.equal(handoffs.map((h) => [h.from, h.to, h.epoch]), [[a.peerId, b.peerId, 0]])
  assert.ok((r.json.migrations as { outcome: string }[]).some((m) => m.outcome === 'handoff'), 'migrations.log lines')
  fams = parseProm((await call('GET', '/metrics')).text)
  const mig = fam('igord_agent_migrations_total')?.metrics.find((m) => m.labels?.agent === 'heartbeat' && m.labels?.outcome === 'handoff')
  assert.is(mig?.value, '1')
  assert.ok(Number(sample('igord_agent_migration_bytes_total', 'heartbeat')?.value) > 0)
  assert.is(fam('igord_node_migration_seconds')?.metrics[0].count, '1')
  assert.is(sample('igord_node_agents')?.value, '1')
  const lastTick = (r.json.checkpoints as { tick: number }[]).at(-1)!.tick
  const tail = await events(`/api/agents/heartbeat/logs?from=${lastTick}`, 50)
  const done = tail.events.at(-1)!
  assert.is(done.data.kind, 'done')
  assert.is(done.data.status, 'handoff')
  assert.match(done.id, /^\d+:done$/)
  const after = await events('/api/agents/heartbeat/logs', 1, { 'last-event-id': done.id })
  assert.is(after.status, 204, 'after the end: 204, so EventSource stops reconnecting')

  // stop
  r = await call('POST', '/api/agents/echo/stop', {})
  assert.is(r.status, 200, r.text)
  assert.is(r.json.status, 'stopped')
})

test('with a token (bound to 127.0.0.1 only): every request needs Authorization: Bearer <token>', async () => {
  assert.ok(a !== null, 'the previous test started the node')
  tokenApi = await serveHttp(a!, { host: '127.0.0.1', port: 0, token: TOKEN })
  const get = (p: string, h: Record<string, string> = {}) => fetch(tokenApi!.url + p, { headers: h, signal: AbortSignal.timeout(60_000) })
  for (const p of ['/api/agents', '/metrics', '/api/agents/echo/logs']) {
    const none = await get(p)
    assert.is(none.status, 401, `${p} without a token`)
    assert.is(((await none.json()) as { code: string }).code, 'unauthorized')
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/)
    const wrong = await get(p, { authorization: `Bearer ${TOKEN}x` })
    assert.is(wrong.status, 401, `${p} with a wrong token`)
    await wrong.body?.cancel()
  }
  const post = await fetch(tokenApi!.url + '/api/agents/echo/stop', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  assert.is(post.status, 401, 'an action without a token')
  const ok = await get('/api/agents', { authorization: `Bearer ${TOKEN}` })
  assert.is(ok.status, 200)
  assert.is(((await ok.json()) as { peer: string }).peer, a!.peerId)
  const m = await get('/metrics', { authorization: `Bearer ${TOKEN}` })
  assert.is(m.status, 200)
  assert.ok(parseProm(await m.text()).some((f) => f.name === 'igord_node_agents'))
})

test.run()
