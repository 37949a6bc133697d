/**
 * The node's HTTP API (`igord node --http [host:]port`, docs/PROTOCOL.md "HTTP API"): a face of the
 * node like the control socket (p2p/control.ts), served with Hono (`hono`, `@hono/node-server`).
 * JSON under `/api`, an agent's log as Server-Sent Events, Prometheus metrics at `/metrics`
 * (`prom-client`). Actions go through the control socket's {@link controlOp}, so both faces check
 * and act alike.
 *
 * Routes (`:id` is an agent's name or DID):
 * - `GET /api/agents` → `{peer, addrs, agents: AgentView[]}`; `GET /api/agents/:id` → {@link AgentDetail}
 * - `GET /api/agents/:id/logs` → `text/event-stream`, one event per log item (runtime/logs.ts
 *   `LogItem` as JSON), `id: <tick>:<n>` (the n-th item of that tick, counting every item, shown or
 *   not); `Last-Event-ID` (or `?from=<tick>`) resumes; `?verbose=1` also sends noise items
 * - `GET /api/agents/:id/history[?limit=N]` → {@link HistoryView}
 * - `POST /api/agents` `{wasm, manifest?, name?, budget, intervalMs?}` → 201 AgentView
 * - `POST /api/agents/:id/stop` `{}`, `/migrate` `{peer}` (a multiaddr or an array of them),
 *   `/send` `{message}` (UTF-8) or `{body64}`, `/fund` `{units}`
 * - `POST /api/session` `{}` (with the bearer header) → sets the session cookie that the log stream
 *   also takes (a browser's EventSource cannot send a header); `{token: false}` on a node without one
 * - `GET /metrics` → Prometheus text format 0.0.4
 * - `GET /`, `/console/console.js`, `/console/console.css`: the web console (p2p/console.ts), no token needed
 *
 * Errors: a 4xx/5xx JSON body `{error: "<one line>", code: "<stable code>"}` ({@link ERROR_CODES}).
 * POST bodies must be `Content-Type: application/json` (so that a web page cannot post a form
 * here: that needs a CORS preflight, which is never granted) and at most `maxBodyBytes`.
 */
import { timingSafeEqual, createHash, createHmac } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import type { ServerType } from '@hono/node-server'
import { Hono } from 'hono'
import type { Context } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { getCookie, setCookie } from 'hono/cookie'
import { streamSSE } from 'hono/streaming'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { EXIT, IgordError } from '../checkpoint/errors.ts'
import { headerCid } from '../checkpoint/header.ts'
import { blobsDir, historyDir, isAgentName, livePath, migrationsLogPath } from '../checkpoint/layout.ts'
import { decodeEntry, newestFirst, type HistoryEntry } from '../checkpoint/entries.ts'
import { entryWhere } from '../checkpoint/segment.ts'
import { AgentLog, isNoise, itemJson } from '../runtime/logs.ts'
import type { LogItem } from '../runtime/logs.ts'
import { jsonSafe } from './control-client.ts'
import { consoleRoutes, isConsoleRequest } from './console.ts'
import { controlOp } from './control.ts'
import type { AgentInfo, IgordNode } from './node.ts'
import type { MigrateResult } from './migrate.ts'

/** Bounds of the HTTP API. */
export interface HttpApiLimits {
  /** largest request body, bytes (a 1 MiB message as base64 fits) */
  maxBodyBytes: number
  /** log streams open at once on the node; one more is refused (503, `too_many_streams`) */
  maxStreams: number
  /** events sent on one log stream before the node closes it (the client reconnects with `Last-Event-ID`) */
  maxEventsPerStream: number
  /** how often a log stream looks for new checkpoints, ms */
  pollMs: number
  /** checkpoints listed by `/history` at most (the newest), and its default */
  maxHistory: number; defaultHistory: number
  /** agents whose metrics are kept after they left the node (migrated away) at most */
  maxDepartedAgents: number
}

/** Default {@link HttpApiLimits}. */
export const DEFAULT_HTTP_LIMITS: HttpApiLimits = {
  maxBodyBytes: 2 * 1024 * 1024,
  maxStreams: 32,
  maxEventsPerStream: 10_000,
  pollMs: 250,
  maxHistory: 10_000,
  defaultHistory: 1000,
  maxDepartedAgents: 256,
}

/**
 * The `code`s of the HTTP layer's own refusals, with their HTTP status. The node's errors answer
 * with their own stable `IgordError.code` (checkpoint/errors.ts: `BAD_REQUEST`, `CHECKPOINT`,
 * `NETWORK`, `LOCKED`, …), the same code the control socket sends, and the status of their exit
 * code in {@link STATUS_OF_EXIT}.
 */
export const ERROR_CODES: Readonly<Record<string, number>> = {
  BAD_JSON: 400, BAD_FIELD: 400, UNAUTHORIZED: 401, NOT_FOUND: 404, NO_SUCH_AGENT: 404,
  BODY_TOO_LARGE: 413, UNSUPPORTED_MEDIA_TYPE: 415, BAD_HOST: 421, TOO_MANY_STREAMS: 503, INTERNAL: 500,
}

/** HTTP status of a node error by its exit code (checkpoint/errors.ts EXIT); 500 for any other. */
export const STATUS_OF_EXIT: Readonly<Record<number, number>> = {
  [EXIT.USAGE]: 400, [EXIT.CHECKPOINT]: 422, [EXIT.MODULE]: 422, [EXIT.MANIFEST]: 422, [EXIT.INVALID]: 422,
  [EXIT.STOPPED]: 409, [EXIT.IO]: 500, [EXIT.NETWORK]: 502, [EXIT.LOCKED]: 409, [EXIT.REFUSED]: 409,
}

/** An error answered as `{error, code}` with the status of `code` in {@link ERROR_CODES}. */
export class HttpError extends Error {
  readonly code: string
  constructor (code: string, message: string) { super(message); this.code = code }
}

/** Where `--http` listens: host (IPv6 without brackets) and TCP port (0: any free port). */
export interface HttpListen { host: string; port: number }

/**
 * Reads `--http`: `PORT` (then host 127.0.0.1), `HOST:PORT`, or `[IPV6]:PORT`.
 * @throws IgordError (exit 2) naming `--http` and the value
 */
export function parseHttpListen (value: string): HttpListen {
  const bad = (why: string) => new IgordError(`--http: ${JSON.stringify(value)}: ${why} (give PORT, HOST:PORT or [IPV6]:PORT)`, EXIT.USAGE)
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]:|([^:[\]\s]+):)?(\d{1,5})$/.exec(value.trim())
  if (m === null) throw bad('not an address')
  const port = Number(m[3])
  if (port > 65535) throw bad('port out of range')
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port }
}

/** True for a loopback host: `localhost`, 127.0.0.0/8, `::1` (also as `::ffff:127.x.y.z`). */
export function isLoopbackHost (host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '')
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4)
}

/**
 * The access rule of `--http`: a loopback address may go without a token; any other address needs
 * one (`--http-token` or `IGORD_HTTP_TOKEN`), checked before anything is bound. With a token, every
 * request must carry `Authorization: Bearer <token>`, whatever the address — except the console's
 * files (p2p/console.ts) and the log stream with the session cookie of `POST /api/session`.
 * @returns whether requests need the token
 * @throws IgordError (exit 2) for a non-loopback host without a token, or a token shorter than 16 characters
 */
export function checkHttpAccess (host: string, token: string | undefined): boolean {
  if (token !== undefined && token.length < 16) throw new IgordError('--http-token: use at least 16 characters (e.g. openssl rand -hex 16)', EXIT.USAGE)
  if (token === undefined && !isLoopbackHost(host)) throw new IgordError(`--http ${host}: an address other than loopback needs --http-token <token> or IGORD_HTTP_TOKEN (every request then carries Authorization: Bearer <token>)`, EXIT.USAGE)
  return token !== undefined
}

/** One agent as `/api/agents` lists it: `ps`'s fields and the host (this node's peer ID). */
export interface AgentView extends AgentInfo { host: string }

/**
 * One agent in detail: {@link AgentView}, the tick of its last checkpoint, its consecutive failed
 * ticks, and the checkpoints written since it was loaded here (count, ms, bytes).
 */
export interface AgentDetail extends AgentView {
  lastCheckpointTick: number; failures: number
  checkpoints: { count: number; ms: number; bytes: number }
}

/**
 * One checkpoint in `/history`: tick, CID, epoch, host (peer ID), status, fuel and budget
 * (decimal strings: fuel units, microcents), time (ISO), prev (CID or null), and target (handoff)
 * or reason when the header has one.
 */
export interface CheckpointView {
  tick: number; cid: string; epoch: number; host: string; status: string; fuel: string; budget: string; time: string
  prev: string | null; target?: string; reason?: string
}

/**
 * `/history`: the newest `limit` checkpoints of the agent in this node's history (oldest first),
 * how many there are in all, the epochs and hosts they show (in order), the handoffs among them
 * (`from` → `to` at a tick and epoch), and this node's migration records of the agent
 * (`migrations.log` lines: role, outcome, time…).
 */
export interface HistoryView {
  name: string; did: string | null; total: number; checkpoints: CheckpointView[]
  epochs: number[]; hosts: string[]
  handoffs: { tick: number; epoch: number; from: string; to: string }[]
  migrations: Record<string, unknown>[]
}

/** Options of {@link serveHttp}. */
export interface HttpApiOptions extends HttpListen {
  /** when set, every request needs `Authorization: Bearer <token>` */
  token?: string
  limits?: Partial<HttpApiLimits>
}

/** A running HTTP API: its URL (`http://host:port`), port, and `close()` (ends open streams too). */
export interface HttpApi { url: string; port: number; close (): Promise<void> }

/**
 * Serves the HTTP API of `node` on `opts.host:opts.port` after {@link checkHttpAccess}.
 * @throws IgordError (exit 2) by the access rule; NetworkError-like IgordError (exit 9) when the
 *   address cannot be bound
 */
export async function serveHttp (node: IgordNode, opts: HttpApiOptions): Promise<HttpApi> {
  const needToken = checkHttpAccess(opts.host, opts.token)
  const closed = new AbortController()
  const app = buildApp(node, { ...DEFAULT_HTTP_LIMITS, ...opts.limits }, needToken ? opts.token! : null, closed.signal)
  let server: ServerType
  const port = await new Promise<number>((resolve, reject) => {
    server = serve({ fetch: app.fetch, hostname: opts.host, port: opts.port }, (info: AddressInfo) => resolve(info.port))
    server.once('error', (e: NodeJS.ErrnoException) => { closed.abort(); reject(new IgordError(`--http ${opts.host}:${opts.port}: cannot listen: ${e.code ?? e.message}`, EXIT.NETWORK)) })
  })
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  return {
    url: `http://${host}:${port}`,
    port,
    close: () => new Promise<void>((resolve) => {
      closed.abort()
      server.close(() => resolve())
      ;(server as { closeAllConnections?: () => void }).closeAllConnections?.()
    }),
  }
}

/** Name of the cookie that `POST /api/session` sets; only the log stream (`GET /api/agents/:id/logs`) accepts it instead of the bearer header. */
export const SESSION_COOKIE = 'igord_session'
/** Lifetime of the session cookie, seconds (12 h). */
export const SESSION_MAX_AGE_S = 12 * 3600
/** Paths of the log stream route, the one route that takes the session cookie. */
const LOG_ROUTE = /^\/api\/agents\/[^/]+\/logs$/

/**
 * The session cookie's value for `token`: HMAC-SHA256 keyed by the token over a fixed label,
 * base64url (43 characters). It is not the token (a leaked cookie opens log streams, not the
 * actions) and stays valid as long as the node keeps the token.
 */
export function sessionCookieValue (token: string): string {
  return createHmac('sha256', token).update('igord console log stream v1').digest('base64url')
}

/** Constant-time equality of two strings (through their SHA-256). */
function sameSecret (a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())
}

/** A JSON answer, bigints as decimal strings. */
function json (c: Context, body: unknown, status = 200): Response {
  return c.body(JSON.stringify(body, jsonSafe), status as 200, { 'content-type': 'application/json; charset=utf-8' })
}

function errorBody (code: string, message: string): { error: string; code: string } {
  return { error: message.split('\n')[0], code }
}

function buildApp (node: IgordNode, limits: HttpApiLimits, token: string | null, closed: AbortSignal): Hono {
  const app = new Hono()
  let streams = 0
  const metrics = nodeMetrics(node, limits, () => streams, closed)

  app.onError((e, c) => {
    if (e instanceof HttpError) return json(c, errorBody(e.code, e.message), ERROR_CODES[e.code] ?? 400)
    if (e instanceof IgordError) return json(c, errorBody(e.code, e.message), STATUS_OF_EXIT[e.exitCode] ?? 500)
    return json(c, errorBody('INTERNAL', `internal error: ${e.message}`), 500)
  })
  app.notFound((c) => json(c, errorBody('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`), 404))

  // access: the token when there is one; else (loopback) only loopback Host names, against DNS rebinding.
  // With a token, the console's static files need none (they hold no data), and the log stream also
  // takes the session cookie of POST /api/session (EventSource cannot send a header; RATIONALE.md).
  const want = token === null ? null : createHash('sha256').update(token).digest()
  const cookie = token === null ? null : sessionCookieValue(token)
  app.use('*', async (c, next) => {
    if (want !== null) {
      if (!isConsoleRequest(c.req.method, c.req.path)) {
        const m = /^Bearer (\S+)$/.exec(c.req.header('authorization') ?? '')
        let got = m === null ? null : createHash('sha256').update(m[1]).digest()
        if (m === null && c.req.method === 'GET' && LOG_ROUTE.test(c.req.path)) {
          const v = getCookie(c, SESSION_COOKIE)
          if (v !== undefined && cookie !== null && sameSecret(v, cookie)) got = want
        }
        if (got === null || !timingSafeEqual(got, want)) {
          c.header('WWW-Authenticate', 'Bearer realm="igord"')
          return json(c, errorBody('UNAUTHORIZED', m === null ? 'this node needs Authorization: Bearer <token>' : 'wrong token'), 401)
        }
      }
    } else {
      const host = (c.req.header('host') ?? '').replace(/:\d+$/, '')
      if (!isLoopbackHost(host)) return json(c, errorBody('BAD_HOST', `Host ${JSON.stringify(host.slice(0, 80))} is not a loopback name (this node serves loopback clients only)`), 421)
    }
    await next()
  })
  app.use('/api/*', async (c, next) => {
    if (c.req.method === 'POST' && !/^application\/json\b/i.test(c.req.header('content-type') ?? '')) {
      return json(c, errorBody('UNSUPPORTED_MEDIA_TYPE', 'POST bodies must be Content-Type: application/json'), 415)
    }
    await next()
  })
  app.use('/api/*', bodyLimit({ maxSize: limits.maxBodyBytes, onError: (c) => json(c, errorBody('BODY_TOO_LARGE', `the request body is over ${limits.maxBodyBytes} bytes`), 413) }))

  /** The hosted agent `id` names (name or DID). @throws HttpError NO_SUCH_AGENT */
  const hosted = (id: string) => {
    const h = node.agents.get(id) ?? [...node.agents.values()].find((x) => x.session.did === id)
    if (h === undefined) throw new HttpError('NO_SUCH_AGENT', `no agent ${JSON.stringify(id.slice(0, 120))} on this node`)
    return h
  }
  const view = (a: AgentInfo): AgentView => ({ ...a, host: node.peerId })
  const body = async (c: Context): Promise<Record<string, unknown>> => {
    const text = await c.req.text()
    if (text.trim() === '') return {}
    let b: unknown
    try { b = JSON.parse(text) } catch (e) { throw new HttpError('BAD_JSON', `the body is not JSON: ${(e as Error).message}`) }
    if (b === null || typeof b !== 'object' || Array.isArray(b)) throw new HttpError('BAD_JSON', 'the body must be a JSON object')
    return b as Record<string, unknown>
  }
  const str = (b: Record<string, unknown>, k: string, optional = false): string | undefined => {
    const v = b[k]
    if (v === undefined && optional) return undefined
    if (typeof v !== 'string' || v.length === 0) throw new HttpError('BAD_FIELD', `field "${k}" must be a non-empty string`)
    return v
  }

  app.post('/api/session', async (c) => {
    await body(c)
    if (cookie === null) return json(c, { token: false })
    setCookie(c, SESSION_COOKIE, cookie, { path: '/api/agents', httpOnly: true, sameSite: 'Strict', maxAge: SESSION_MAX_AGE_S })
    return json(c, { token: true, cookie: SESSION_COOKIE, maxAge: SESSION_MAX_AGE_S })
  })

  app.route('/', consoleRoutes())

  app.get('/api/agents', (c) => json(c, { peer: node.peerId, addrs: node.addrs, agents: node.list().map(view) }))

  app.get('/api/agents/:id', (c) => {
    const h = hosted(c.req.param('id'))
    const info = node.list().find((a) => a.name === h.name)!
    const s = h.session.status
    const detail: AgentDetail = { ...view(info), lastCheckpointTick: s.lastTick, failures: s.failures, checkpoints: { ...(s.checkpoints ?? { count: 0, ms: 0, bytes: 0 }) } }
    return json(c, detail)
  })

  app.get('/api/agents/:id/history', (c) => {
    const name = agentName(node, c.req.param('id'))
    const q = c.req.query('limit')
    const limit = q === undefined ? limits.defaultHistory : Number(q)
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > limits.maxHistory) throw new HttpError('BAD_FIELD', `limit must be an integer from 1 to ${limits.maxHistory}`)
    return json(c, readHistory(node.dir, name, limit))
  })

  app.get('/api/agents/:id/logs', (c) => {
    const name = agentName(node, c.req.param('id'))
    const last = c.req.header('last-event-id') ?? c.req.query('lastEventId')
    let resume: { tick: number; n: number } | null = null
    if (last !== undefined && last !== '') {
      if (/^\d+:done$/.test(last)) return c.body(null, 204) // the log ended: EventSource stops reconnecting on 204
      const m = /^(\d{1,15}):(\d{1,9})$/.exec(last)
      if (m === null) throw new HttpError('BAD_FIELD', `Last-Event-ID ${JSON.stringify(last.slice(0, 40))} is not <tick>:<n>`)
      resume = { tick: Number(m[1]), n: Number(m[2]) }
    }
    const qf = c.req.query('from')
    if (qf !== undefined && !/^\d{1,15}$/.test(qf)) throw new HttpError('BAD_FIELD', 'from must be a tick (a non-negative integer)')
    const from = resume?.tick ?? (qf === undefined ? 0 : Number(qf))
    const verbose = /^(1|true|yes)$/i.test(c.req.query('verbose') ?? '')
    const log = new AgentLog({ dir: node.dir, name, history: historyDir(node.dir, name), blobs: blobsDir(node.dir), live: livePath(node.dir, name) })
    if (streams >= limits.maxStreams) throw new HttpError('TOO_MANY_STREAMS', `${limits.maxStreams} log streams are open on this node; try again later`)
    streams++
    return streamSSE(c, async (stream) => {
      try {
        let tick = -1; let n = -1; let sent = 0
        const emit = async (it: LogItem): Promise<boolean> => {
          if (it.tick === tick) n++
          else { tick = it.tick; n = 0 }
          if (resume !== null && (it.tick < resume.tick || (it.tick === resume.tick && n <= resume.n))) return true
          if (!verbose && isNoise(it)) return true
          await stream.writeSSE({ id: `${tick}:${n}`, data: itemJson(it) })
          return ++sent < limits.maxEventsPerStream
        }
        for (;;) {
          log.refresh()
          for (const it of log.items({ from, markFirst: false })) if (!await emit(it)) return // the client reconnects with Last-Event-ID
          const h = log.last
          if (h !== null && (h.status === 'finished' || h.status === 'handoff')) {
            await stream.writeSSE({ id: `${h.tick}:done`, data: itemJson({ tick: h.tick, kind: 'done', status: h.status, ...(h.target === undefined ? {} : { target: h.target }) }) })
            return
          }
          if (stream.aborted || closed.aborted) return
          await stream.sleep(limits.pollMs)
          if (stream.aborted || closed.aborted) return
        }
      } finally { streams-- }
    }, async (e, stream) => {
      await stream.writeSSE({ event: 'error', data: JSON.stringify(errorBody(e instanceof IgordError ? e.code : 'INTERNAL', e.message)) })
    })
  })

  app.post('/api/agents', async (c) => {
    const b = await body(c)
    const wasm = str(b, 'wasm')!
    const manifest = str(b, 'manifest', true)
    for (const [k, p] of [['wasm', wasm], ['manifest', manifest]] as const) {
      if (p === undefined) continue
      if (!path.isAbsolute(p)) throw new HttpError('BAD_FIELD', `field "${k}" must be an absolute path on the node`)
      if (!fs.existsSync(p)) throw new HttpError('BAD_FIELD', `field "${k}": ${p}: no such file on the node`)
    }
    const name = str(b, 'name', true)
    if (name !== undefined && !isAgentName(name)) throw new HttpError('BAD_FIELD', `field "name": ${JSON.stringify(String(name).slice(0, 80))} is not an agent name`)
    if (b.intervalMs !== undefined && (typeof b.intervalMs !== 'number' || !Number.isSafeInteger(b.intervalMs) || b.intervalMs < 0 || b.intervalMs > 86_400_000)) throw new HttpError('BAD_FIELD', 'field "intervalMs" must be an integer from 0 to 86400000 (ms)')
    const budget = units(b.budget, 'budget')
    const r = await controlOp(node, { op: 'run', wasm, budget: String(budget), ...(manifest === undefined ? {} : { manifest }), ...(name === undefined ? {} : { name }), ...(b.intervalMs === undefined ? {} : { intervalMs: b.intervalMs }) })
    return json(c, view(r.agent as AgentInfo), 201)
  })

  app.post('/api/agents/:id/stop', async (c) => {
    await body(c)
    const r = await controlOp(node, { op: 'stop', name: hosted(c.req.param('id')).name })
    return json(c, view(r.agent as AgentInfo))
  })

  app.post('/api/agents/:id/migrate', async (c) => {
    const b = await body(c)
    const to = typeof b.peer === 'string' ? [b.peer] : b.peer
    if (!Array.isArray(to) || to.length === 0 || to.length > 16 || to.some((x) => typeof x !== 'string' || x.length === 0 || x.length > 1024)) throw new HttpError('BAD_FIELD', 'field "peer" must be a multiaddr ending in /p2p/<peer id>, or an array of up to 16')
    const r = await controlOp(node, { op: 'migrate', name: hosted(c.req.param('id')).name, to })
    return json(c, r.result)
  })

  app.post('/api/agents/:id/send', async (c) => {
    const b = await body(c)
    if ((b.message === undefined) === (b.body64 === undefined)) throw new HttpError('BAD_FIELD', 'give field "message" (text) or "body64" (base64), one of them')
    let body64: string
    if (b.message !== undefined) {
      if (typeof b.message !== 'string') throw new HttpError('BAD_FIELD', 'field "message" must be a string')
      body64 = Buffer.from(b.message, 'utf8').toString('base64')
    } else {
      if (typeof b.body64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(b.body64)) throw new HttpError('BAD_FIELD', 'field "body64" must be base64')
      body64 = b.body64
    }
    const id = str(b, 'id', true)
    if (id !== undefined && !/^[0-9a-f]{32}$/.test(id)) throw new HttpError('BAD_FIELD', 'field "id" must be 32 lowercase hex digits')
    const r = await controlOp(node, { op: 'send', agent: hosted(c.req.param('id')).name, body64, ...(id === undefined ? {} : { id }) })
    return json(c, r)
  })

  app.post('/api/agents/:id/fund', async (c) => {
    const b = await body(c)
    const amount = units(b.units, 'units')
    if (amount === 0n) throw new HttpError('BAD_FIELD', 'field "units" must be more than 0')
    const r = await controlOp(node, { op: 'fund', agent: hosted(c.req.param('id')).name, amount: String(amount) })
    return json(c, r)
  })

  app.get('/metrics', async (c) => c.body(await metrics.metrics(), 200, { 'content-type': metrics.contentType }))
  return app
}

/**
 * Reads an amount of budget units (a number, or a decimal string with up to six decimals:
 * `"1"`, `"0.25"`) as microcents (1 unit = 1,000,000 microcents, as `igord run --budget`).
 * @throws HttpError bad_field naming `field`
 */
export function units (v: unknown, field: string): bigint {
  const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : v
  const m = typeof s === 'string' ? /^(\d{1,12})(?:\.(\d{1,6}))?$/.exec(s.trim()) : null
  if (m === null) throw new HttpError('BAD_FIELD', `field "${field}" must be budget units, e.g. "10" or "0.5" (at most 6 decimals)`)
  return BigInt(m[1]) * 1_000_000n + BigInt((m[2] ?? '').padEnd(6, '0'))
}

/** The agent name `id` (name or DID) stands for: a hosted agent, or one with a history in the node's directory. */
function agentName (node: IgordNode, id: string): string {
  const h = node.agents.get(id) ?? [...node.agents.values()].find((x) => x.session.did === id)
  if (h !== undefined) return h.name
  if (isAgentName(id) && (fs.existsSync(historyDir(node.dir, id)) || fs.existsSync(livePath(node.dir, id)))) return id
  throw new HttpError('NO_SUCH_AGENT', `no agent ${JSON.stringify(id.slice(0, 120))} on this node`)
}

/** Reads {@link HistoryView} of agent `name` from `<dir>/history/<name>` and `<dir>/migrations.log` (the newest `limit` entries). */
export function readHistory (dir: string, name: string, limit: number): HistoryView {
  const checkpoints: CheckpointView[] = []
  let did: string | null = null
  const entries: HistoryEntry[] = []
  let total = 0
  try {
    for (const s of newestFirst(historyDir(dir, name))) {
      total++
      if (entries.length >= limit) continue
      try { entries.push(decodeEntry(s.bytes, entryWhere(s))) } catch { /* unreadable: `igord verify` names it */ }
    }
  } catch { /* no history, or a file that cannot be read: what was read so far */ }
  for (const e of entries.reverse()) {
    const p = e.parsed
    did ??= p.agent
    checkpoints.push({
      tick: p.tick, cid: headerCid(e.headerBytes), epoch: p.epoch, host: p.host, status: p.status, fuel: String(p.fuel), budget: String(p.budget),
      time: new Date(p.time).toISOString(), prev: p.prev, ...(p.target === undefined ? {} : { target: p.target }), ...(p.reason === undefined ? {} : { reason: p.reason }),
    })
  }
  checkpoints.sort((a, b) => a.tick - b.tick || a.time.localeCompare(b.time))
  const epochs = [...new Set(checkpoints.map((x) => x.epoch))]
  const hosts = [...new Set(checkpoints.map((x) => x.host))]
  const handoffs = checkpoints.filter((x) => x.status === 'handoff' && x.target !== undefined).map((x) => ({ tick: x.tick, epoch: x.epoch, from: x.host, to: x.target! }))
  const migrations: Record<string, unknown>[] = []
  try {
    for (const line of fs.readFileSync(migrationsLogPath(dir), 'utf8').split('\n')) {
      if (line === '') continue
      try { const o = JSON.parse(line) as Record<string, unknown>; if (o.name === name || (did !== null && o.agent === did)) migrations.push(o) } catch { /* skipped */ }
    }
  } catch { /* no log */ }
  return { name, did, total, checkpoints, epochs, hosts, handoffs, migrations: migrations.slice(-limit) }
}

/** Totals that survive a reset of the counter they are read from (an agent reloaded in a new worker starts its writer's totals at 0). */
class Carried {
  #base = { count: 0, ms: 0, bytes: 0 }
  #last = { count: 0, ms: 0, bytes: 0 }
  read (now: { count: number; ms: number; bytes: number }): { count: number; ms: number; bytes: number } {
    if (now.count < this.#last.count) this.#base = { count: this.#base.count + this.#last.count, ms: this.#base.ms + this.#last.ms, bytes: this.#base.bytes + this.#last.bytes }
    this.#last = { ...now }
    return { count: this.#base.count + now.count, ms: this.#base.ms + now.ms, bytes: this.#base.bytes + now.bytes }
  }
}

/**
 * The node's Prometheus registry (prom-client): gauges and counters read from the node at each
 * scrape (`collect`), migration counters and histograms fed by {@link IgordNode.migrationListeners},
 * and (with `logStreams`) the number of open log streams; `signal` aborted: stops listening to the
 * node. Names and units: docs/PROTOCOL.md "HTTP API".
 */
export function nodeMetrics (node: IgordNode, limits: Pick<HttpApiLimits, 'maxDepartedAgents'> = DEFAULT_HTTP_LIMITS, logStreams?: () => number, signal?: AbortSignal): Registry {
  const registry = new Registry()
  const agentLabels = ['agent', 'did'] as const
  const carried = new Map<string, Carried>()
  const agents = () => [...node.agents.values()].map((h) => ({ h, labels: { agent: h.name, did: h.session.did } }))
  const gauge = (name: string, help: string, value: (h: (typeof node.agents extends Map<string, infer H> ? H : never)) => number) => new Gauge({
    name, help, labelNames: agentLabels, registers: [registry],
    collect () { this.reset(); for (const { h, labels } of agents()) this.set(labels, value(h)) },
  })
  gauge('igord_agent_tick', 'the agent\'s tick count', (h) => h.session.agent.tick)
  gauge('igord_agent_fuel', 'fuel the agent burned over its life (fuel units)', (h) => Number(h.session.agent.fuel))
  gauge('igord_agent_budget_microcents', 'the agent\'s remaining budget (microcents)', (h) => Number(h.session.agent.budget))
  gauge('igord_agent_epoch', 'the agent\'s authority epoch (migrations over its life)', (h) => h.session.lineage.epoch)
  gauge('igord_agent_hibernated', '1 while the agent is hibernated', (h) => h.session.status.hibernated ? 1 : 0)
  const ckpt = (name: string, help: string, pick: (t: { count: number; ms: number; bytes: number }) => number) => new Counter({
    name, help, labelNames: agentLabels, registers: [registry],
    collect () {
      this.reset()
      for (const { h, labels } of agents()) {
        let c = carried.get(h.name)
        if (c === undefined) { c = new Carried(); carried.set(h.name, c) }
        const v = pick(c.read(h.session.status.checkpoints ?? { count: 0, ms: 0, bytes: 0 }))
        if (v > 0) this.inc(labels, v)
      }
    },
  })
  ckpt('igord_agent_checkpoints_total', 'checkpoints the agent wrote on this node', (t) => t.count)
  ckpt('igord_agent_checkpoint_seconds_total', 'wall time of the agent\'s checkpoints on this node (seconds; divide by igord_agent_checkpoints_total for the mean)', (t) => t.ms / 1000)
  ckpt('igord_agent_checkpoint_bytes_total', 'bytes the agent\'s checkpoints wrote on this node (live file and history entries)', (t) => t.bytes)
  const migrations = new Counter({ name: 'igord_agent_migrations_total', help: 'migrations of the agent away from this node, by outcome (handoff, failed)', labelNames: [...agentLabels, 'outcome'], registers: [registry] })
  const migSeconds = new Counter({ name: 'igord_agent_migration_seconds_total', help: 'wall time of the agent\'s completed migrations away from this node (seconds)', labelNames: agentLabels, registers: [registry] })
  const migBytes = new Counter({ name: 'igord_agent_migration_bytes_total', help: 'bytes sent by the agent\'s completed migrations away from this node', labelNames: agentLabels, registers: [registry] })
  const nodeMigSeconds = new Histogram({ name: 'igord_node_migration_seconds', help: 'wall time of completed migrations away from this node (seconds)', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [registry] })
  const nodeMigBytes = new Histogram({ name: 'igord_node_migration_bytes', help: 'bytes sent by completed migrations away from this node', buckets: [4096, 65536, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30], registers: [registry] })
  const departed: { agent: string; did: string }[] = []
  const listener = (name: string, did: string, r: MigrateResult | null) => {
    const labels = { agent: name, did }
    migrations.inc({ ...labels, outcome: r === null ? 'failed' : 'handoff' })
    if (r === null) return
    migSeconds.inc(labels, r.ms / 1000)
    migBytes.inc(labels, r.bytesSent)
    nodeMigSeconds.observe(r.ms / 1000)
    nodeMigBytes.observe(r.bytesSent)
    departed.push(labels)
    carried.delete(name)
    while (departed.length > limits.maxDepartedAgents) {
      const gone = departed.shift()!
      if (node.agents.has(gone.agent)) continue
      migSeconds.remove(gone); migBytes.remove(gone)
      for (const outcome of ['handoff', 'failed']) migrations.remove({ ...gone, outcome })
    }
  }
  node.migrationListeners.add(listener)
  signal?.addEventListener('abort', () => node.migrationListeners.delete(listener), { once: true })
  new Gauge({ name: 'igord_node_agents', help: 'agents hosted by this node', registers: [registry], collect () { this.set(node.agents.size) } })
  new Gauge({ name: 'igord_node_agents_hibernated', help: 'agents of this node that are hibernated', registers: [registry], collect () { this.set([...node.agents.values()].filter((h) => h.session.status.hibernated).length) } })
  new Gauge({ name: 'igord_node_uptime_seconds', help: 'seconds since this node started', registers: [registry], collect () { this.set((Date.now() - node.startedAt) / 1000) } })
  if (logStreams !== undefined) new Gauge({ name: 'igord_http_log_streams', help: 'log streams (SSE) open on this node\'s HTTP API', registers: [registry], collect () { this.set(logStreams()) } })
  return registry
}
