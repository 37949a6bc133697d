// igord web console: one ES module, no framework, no build step (served by p2p/console.ts).
// It reads the node's HTTP API (docs/PROTOCOL.md "HTTP API"): the agents table polls
// GET /api/agents; an agent page (#/agents/<name>) polls the agent and its history, streams its
// log with EventSource (which resumes by Last-Event-ID after a reconnect), and posts the actions.
// Every value from the node goes into the page as text (textContent), never as HTML.

const POLL_MS = 1000 // the agents table and an agent's summary
const HISTORY_MS = 2500 // an agent's history (charts, timeline)
const HISTORY_LIMIT = 300 // checkpoints read per history poll
const LOG_TAIL_TICKS = 20 // the log starts this many ticks before the agent's current tick
const LOG_MAX_LINES = 500 // older log lines are dropped from the page
const REQUEST_MS = 15000 // a read
const ACTION_MS = 180000 // an action: a migration on a loaded machine can take a while
const TOKEN_KEY = 'igord.token'

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id))

/** An answer of the API that is not 2xx: its one-line `error`, `code` and HTTP status. */
class ApiError extends Error {
  constructor (message, code, status) { super(message); this.code = code; this.status = status }
}

let token = sessionStorage.getItem(TOKEN_KEY)
let sessionReady = false // the log-stream cookie is set (or the node has no token)
let nodePeer = null

/** Calls the API: JSON in and out, the bearer token when one is known. @throws ApiError */
async function api (path, method = 'GET', body = undefined) {
  const headers = {}
  if (token) headers.authorization = `Bearer ${token}`
  if (method !== 'GET') headers['content-type'] = 'application/json'
  let r
  try {
    r = await fetch(path, { method, headers, body: method === 'GET' ? undefined : JSON.stringify(body ?? {}), signal: AbortSignal.timeout(method === 'GET' ? REQUEST_MS : ACTION_MS), cache: 'no-store' })
  } catch (e) {
    throw new ApiError(`cannot reach the node: ${e.message}`, 'network', 0)
  }
  const text = await r.text()
  let j = null
  try { j = JSON.parse(text) } catch { /* not JSON */ }
  if (r.status === 401) { askToken(j?.error); throw new ApiError(j?.error ?? 'this node needs a token', 'UNAUTHORIZED', 401) }
  if (!r.ok) throw new ApiError(j?.error ?? `HTTP ${r.status}`, j?.code ?? 'HTTP', r.status)
  return j
}

/** Sets the cookie that lets EventSource (which cannot send a header) open the log stream. */
async function ensureSession () {
  if (sessionReady) return
  await api('/api/session', 'POST', {})
  sessionReady = true
}

// ---- formatting ------------------------------------------------------------------------------

/** Microcents (decimal string) as units with up to 6 decimals: "1500000" → "1.5". */
function fmtUnits (s) {
  try {
    const b = BigInt(s); const neg = b < 0n; const a = neg ? -b : b
    const frac = (a % 1000000n).toString().padStart(6, '0').replace(/0+$/, '')
    return `${neg ? '-' : ''}${(a / 1000000n).toLocaleString('en-US')}${frac ? '.' + frac : ''}`
  } catch { return String(s) }
}
function fmtInt (s) { try { return BigInt(s).toLocaleString('en-US') } catch { return String(s) } }
function shortPeer (p) { return typeof p === 'string' && p.length > 20 ? `${p.slice(0, 8)}…${p.slice(-6)}` : String(p) }
function statusText (a) { return a.hibernated ? `${a.status} (hibernated)` : a.status }
function statusClass (a) { return `status status-${a.hibernated ? 'hibernated' : a.status}` }

/** A log item (runtime/logs.ts LogItem) as one text line, close to `igord logs`. */
function itemText (it) {
  const k = it.kind
  let t = ''
  if (typeof it.error === 'string' && it.hostcall) t = `(${it.hostcall}: cannot decode: ${it.error})`
  else if (k === 'log' || k === 'stdout' || k === 'stderr') t = String(it.text)
  else if (k === 'checkpoint') {
    t = `${it.status}${it.target ? ` → ${it.target}` : ''}${it.reason ? ` (${it.reason})` : ''}  budget ${fmtUnits(it.budget)}  fuel ${fmtInt(it.fuel)}`
    if (it.changed) t += `  epoch ${it.epoch} host ${shortPeer(it.host)}`
  } else if (k === 'done') t = it.status === 'handoff' ? `handed off to ${it.target}: its log continues on that host` : 'the agent finished: nothing more will follow'
  else if (k === 'inbox' || k === 'inbox_peek') {
    const m = it.message ?? {}
    t = `#${m.seq ?? '?'} ${m.kind ?? 'message'} from ${shortPeer(m.from)} ${m.bytes ?? '?'} bytes${m.body !== undefined ? ` ${JSON.stringify(m.body.slice(0, 80))}` : ''}`
  } else if (k === 'fund') t = `+${fmtUnits(it.message?.amount ?? '0')} from ${shortPeer(it.message?.from)}`
  else if (k === 'migrate') t = `asks to move to ${it.target}`
  else if (k === 'trap') t = `${it.trap}  (fuel ${it.fuel}; the tick was rolled back)`
  else if (k === 'end') t = `fuel ${it.fuel}`
  else if (k === 'gap') t = `earlier history is not here (the previous checkpoint ${it.missing} is missing)`
  else {
    const { tick: _t, kind: _k, ...rest } = it
    t = JSON.stringify(rest)
    if (t.length > 200) t = t.slice(0, 200) + '…'
  }
  return `tick ${it.tick}  ${String(k).padEnd(10)} ${t}`
}

// ---- small DOM helpers -----------------------------------------------------------------------

function el (tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v)
  for (const c of children) e.append(c)
  return e
}
const SVG = 'http://www.w3.org/2000/svg'
function svg (tag, attrs = {}, text = undefined) {
  const e = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  if (text !== undefined) e.textContent = text
  return e
}
function setText (e, t) { if (e.textContent !== t) e.textContent = t }

// ---- views -----------------------------------------------------------------------------------

/** The view the URL names: `#/` (agents) or `#/agents/<name>`. */
function routeOf () {
  const m = /^#\/agents\/([^/]+)$/.exec(location.hash)
  if (m) { try { return { view: 'agent', name: decodeURIComponent(m[1]) } } catch { /* bad escape */ } }
  return { view: 'list' }
}

let current = null // the running view: { stop() }

function show (id) {
  for (const v of ['auth', 'list', 'agent']) $(v).hidden = v !== id
}

function route () {
  current?.stop()
  current = null
  const r = routeOf()
  if (r.view === 'agent') current = agentView(r.name)
  else current = listView()
}

/** Shows the token form (after a 401) and stops the running view until a token is given. */
function askToken (why) {
  if (!$('auth').hidden) return
  current?.stop()
  current = null
  show('auth')
  $('auth-error').textContent = token ? (why ?? 'the node refused the token') : ''
  document.title = 'Token · igord console'
  $('token').focus()
}

$('auth-form').addEventListener('submit', async (ev) => {
  ev.preventDefault()
  const input = /** @type {HTMLInputElement} */ ($('token'))
  const value = input.value.trim()
  token = value
  sessionReady = false
  try {
    $('auth').hidden = true // askToken shows it again on a 401
    await ensureSession()
    sessionStorage.setItem(TOKEN_KEY, value)
    $('auth-error').textContent = ''
    input.value = ''
    route()
  } catch (e) {
    show('auth')
    $('auth-error').textContent = e.message
  }
})

/** Runs `fn` now and then every `ms` after it settles, until stopped; one call at a time. */
function every (ms, fn) {
  let timer = null; let stopped = false
  const run = async () => {
    try { await fn() } catch { /* fn shows its own errors */ }
    if (!stopped) timer = setTimeout(run, document.hidden ? ms * 4 : ms)
  }
  run()
  return () => { stopped = true; clearTimeout(timer) }
}

/** The agents table, refreshed every {@link POLL_MS}; rows are kept by name so that focus stays put. */
function listView () {
  show('list')
  document.title = 'Agents · igord console'
  const body = $('agents')
  const rows = new Map()
  const stop = every(POLL_MS, async () => {
    let r
    try { r = await api('/api/agents') } catch (e) { setText($('list-error'), e.message); return }
    setText($('list-error'), '')
    nodePeer = r.peer
    setText($('node'), `node ${r.peer}`)
    const seen = new Set()
    for (const a of r.agents.sort((x, y) => x.name.localeCompare(y.name))) {
      seen.add(a.name)
      let row = rows.get(a.name)
      if (row === undefined) {
        const link = el('a', { href: `#/agents/${encodeURIComponent(a.name)}` }, a.name)
        row = el('tr', { 'data-agent': a.name },
          el('th', { scope: 'row' }, link), el('td'), el('td', { class: 'num' }), el('td', { class: 'num' }),
          el('td', { class: 'num' }), el('td', { class: 'num' }), el('td', { class: 'host mono' }))
        rows.set(a.name, row)
      }
      const c = row.children
      setText(c[1], statusText(a)); c[1].className = statusClass(a)
      setText(c[2], String(a.tick)); setText(c[3], String(a.epoch))
      setText(c[4], fmtInt(a.fuel)); setText(c[5], fmtUnits(a.budget))
      setText(c[6], a.host); c[6].title = a.host
      body.append(row) // keeps the sorted order (moving a node keeps its focus)
    }
    for (const [name, row] of rows) if (!seen.has(name)) { row.remove(); rows.delete(name) }
    $('list-empty').hidden = r.agents.length > 0
    setText($('list-caption'), `${r.agents.length} agent${r.agents.length === 1 ? '' : 's'} hosted by this node, refreshed every second.`)
  })
  return { stop }
}

/** One agent: summary, actions, streaming log, charts and timeline. */
function agentView (name) {
  show('agent')
  document.title = `${name} · igord console`
  setText($('agent-h'), name)
  setText($('agent-note'), '')
  for (const f of ['status', 'tick', 'epoch', 'fuel', 'budget', 'host', 'did']) setText($(`f-${f}`), '…')
  for (const o of document.querySelectorAll('#agent output')) { o.textContent = ''; o.className = 'result' }
  $('log').replaceChildren()
  $('timeline').replaceChildren(); $('migrations').replaceChildren()
  $('chart-fuel').replaceChildren(); $('chart-budget').replaceChildren()
  const path = `/api/agents/${encodeURIComponent(name)}`
  let hosted = null // true / false once known
  let firstTick = null
  let movedTo = null // {to, tick} when this node's last checkpoint of the agent is a handoff
  let stopped = false

  const stopSummary = every(POLL_MS, async () => {
    let a
    try { a = await api(path) } catch (e) {
      if (e.code === 'NO_SUCH_AGENT') {
        hosted = false
        $('actions').disabled = true
        setText($('agent-note'), movedTo === null
          ? 'This agent is not running on this node (it left, or it never ran here); its history here is shown below.'
          : `This agent handed off to ${movedTo.to} at tick ${movedTo.tick}: it runs there now. Its history here is shown below.`)
        setText($('f-status'), 'not on this node'); $('f-status').className = ''
      } else setText($('agent-note'), e.message)
      return
    }
    hosted = true
    $('actions').disabled = false
    nodePeer = a.host
    setText($('node'), `node ${a.host}`)
    firstTick ??= a.tick
    setText($('agent-note'), '')
    setText($('f-status'), statusText(a)); $('f-status').className = statusClass(a)
    setText($('f-tick'), String(a.tick)); setText($('f-epoch'), String(a.epoch))
    setText($('f-fuel'), fmtInt(a.fuel)); setText($('f-budget'), fmtUnits(a.budget))
    setText($('f-host'), a.host); setText($('f-did'), a.did)
  })
  const stopHistory = every(HISTORY_MS, async () => {
    let h
    try { h = await api(`${path}/history?limit=${HISTORY_LIMIT}`) } catch (e) { if (e.code !== 'NO_SUCH_AGENT') setText($('timeline-note'), e.message); return }
    const last = h.checkpoints[h.checkpoints.length - 1]
    movedTo = last?.status === 'handoff' ? { to: last.target, tick: last.tick } : null
    renderCharts(h)
    renderTimeline(h)
  })

  // the log: EventSource resumes by Last-Event-ID itself; when the browser gives up (the node
  // refused or went away), it is reopened from the last event id after a pause
  let es = null; let lastId = null; let done = false; let retry = null
  const state = (t) => setText($('log-state'), t)
  const open = async () => {
    if (stopped || done) return
    try { await ensureSession() } catch (e) { state(`cannot open: ${e.message}`); retry = setTimeout(open, 5000); return }
    // wait (briefly) for the first summary to start near the current tick
    for (let i = 0; i < 20 && hosted === null && !stopped; i++) await new Promise((r) => setTimeout(r, 100))
    if (stopped) return
    const q = lastId !== null ? `lastEventId=${encodeURIComponent(lastId)}` : `from=${Math.max(0, (firstTick ?? 0) - LOG_TAIL_TICKS)}`
    es = new EventSource(`${path}/logs?${q}`)
    state('connecting')
    es.addEventListener('open', () => state('live'))
    es.addEventListener('message', (ev) => {
      lastId = ev.lastEventId || lastId
      let it
      try { it = JSON.parse(ev.data) } catch { return }
      appendLog(it, ev.lastEventId)
      if (it.kind === 'done') { done = true; es.close(); state('ended') }
    })
    es.addEventListener('error', (ev) => {
      if (ev.data) { // the node's own error event: {error, code}
        let m = ev.data
        try { m = JSON.parse(ev.data).error } catch { /* as sent */ }
        appendLog({ tick: '?', kind: 'error', text: m })
        return
      }
      if (es.readyState === EventSource.CLOSED) {
        state('disconnected; retrying')
        sessionReady = false // the cookie may have expired
        retry = setTimeout(open, 5000)
      } else state('reconnecting')
    })
  }
  open()

  const onAction = (ev) => actionSubmit(ev, path)
  const forms = [...document.querySelectorAll('#agent form[data-action]')]
  for (const f of forms) f.addEventListener('submit', onAction)

  return {
    stop () {
      stopped = true
      stopSummary(); stopHistory()
      es?.close(); clearTimeout(retry)
      for (const f of forms) f.removeEventListener('submit', onAction)
    },
  }
}

/** Adds one log line (`data-id`: its event id, `<tick>:<n>`) and drops the oldest beyond {@link LOG_MAX_LINES}; keeps the view at the bottom if it was there. */
function appendLog (it, id = '') {
  const log = $('log')
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4
  log.append(el('li', { class: `k-${String(it.kind).replace(/[^a-z_]/g, '')}`, 'data-id': id }, it.kind === 'error' ? `error  ${it.text}` : itemText(it)))
  while (log.childElementCount > LOG_MAX_LINES) log.firstElementChild.remove()
  if (atEnd) log.scrollTop = log.scrollHeight
}

/** Posts one action form (stop, migrate, send, fund) and shows the result or the API's one-line error next to it. */
async function actionSubmit (ev, path) {
  ev.preventDefault()
  const form = /** @type {HTMLFormElement} */ (ev.currentTarget)
  const action = form.dataset.action
  const out = form.querySelector('output')
  const button = form.querySelector('button')
  const input = form.querySelector('input')
  const value = input?.value.trim() ?? ''
  const body = action === 'migrate' ? { peer: value } : action === 'send' ? { message: input.value } : action === 'fund' ? { units: value } : {}
  button.disabled = true
  out.className = 'result'
  out.textContent = action === 'migrate' ? 'migrating…' : '…'
  try {
    const r = await api(`${path}/${action}`, 'POST', body)
    let t
    if (action === 'stop') t = `stopped at tick ${r.tick}`
    else if (action === 'migrate') t = `moved to ${shortPeer(r.to)} at tick ${r.tick} (epoch ${r.epoch})`
    else if (action === 'send') t = r.duplicate ? 'already delivered' : `delivered as #${r.seq}${r.forwarded ? ' (forwarded)' : ''}`
    else t = `funded; budget ${fmtUnits(r.budget)}`
    out.className = 'result ok'
    out.textContent = t
    if (input && action !== 'migrate') input.value = ''
  } catch (e) {
    out.className = 'result error'
    out.textContent = `Error: ${e.message}`
  } finally {
    button.disabled = false
  }
}

// ---- history: charts and timeline -------------------------------------------------------------

/** Draws one series (x: tick, y: value) into `box` with its range written at the axes; handoff ticks as dashed lines. */
function drawChart (box, points, cls, fmt, what, handoffTicks) {
  const W = 320; const H = 120; const L = 8; const R = 8; const T = 14; const B = 16
  box.replaceChildren()
  if (points.length === 0) {
    box.append(svg('title', {}, `${what}: no checkpoints yet`), svg('text', { x: L, y: H / 2 }, 'no checkpoints yet'))
    return
  }
  const xs = points.map((p) => p[0]); const ys = points.map((p) => p[1])
  const x0 = Math.min(...xs); const x1 = Math.max(...xs); const y0 = Math.min(...ys); const y1 = Math.max(...ys)
  const sx = (x) => L + (x1 === x0 ? (W - L - R) / 2 : ((x - x0) / (x1 - x0)) * (W - L - R))
  const sy = (y) => T + (y1 === y0 ? (H - T - B) / 2 : (1 - (y - y0) / (y1 - y0)) * (H - T - B))
  const first = points[0]; const last = points[points.length - 1]
  box.append(svg('title', {}, `${what} from ${fmt(first[2])} at tick ${first[0]} to ${fmt(last[2])} at tick ${last[0]} (${points.length} checkpoints; range ${fmt(String(y0))}–${fmt(String(y1))})`))
  box.append(svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }))
  for (const t of handoffTicks) if (t >= x0 && t <= x1) box.append(svg('line', { class: 'handoff', x1: sx(t), y1: T, x2: sx(t), y2: H - B }))
  box.append(svg('polyline', { class: `line ${cls}`, points: points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ') }))
  box.append(svg('text', { x: L, y: 10 }, `max ${fmt(String(y1))}`))
  box.append(svg('text', { x: L, y: H - 4 }, `tick ${x0}`))
  box.append(svg('text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, `tick ${x1}`))
  box.append(svg('text', { x: W - R, y: 10, 'text-anchor': 'end' }, `min ${fmt(String(y0))}`))
}

function renderCharts (h) {
  const cps = h.checkpoints
  const handoffs = h.handoffs.map((x) => x.tick)
  drawChart($('chart-fuel'), cps.map((c) => [c.tick, Number(c.fuel), c.fuel]), 'fuel', fmtInt, 'Fuel burned', handoffs)
  drawChart($('chart-budget'), cps.map((c) => [c.tick, Number(c.budget), c.budget]), 'budget', fmtUnits, 'Budget (units)', handoffs)
}

/** The agent's life from its checkpoints: one entry per run of (epoch, host), one per handoff between them. */
function renderTimeline (h) {
  const items = []
  let seg = null
  for (const c of h.checkpoints) {
    if (seg === null || seg.epoch !== c.epoch || seg.host !== c.host) {
      seg = { epoch: c.epoch, host: c.host, from: c.tick, to: c.tick, n: 0, start: c.time, until: c.time }
      items.push(seg)
    }
    seg.to = c.tick; seg.n++; seg.until = c.time
    if (c.status === 'handoff') items.push({ handoff: true, tick: c.tick, epoch: c.epoch, from: c.host, to: c.target, time: c.time })
    else if (c.status !== 'running' && c.status !== 'migrating') items.push({ stop: true, tick: c.tick, status: c.status, reason: c.reason, time: c.time })
  }
  const lis = items.map((x) => {
    if (x.handoff) {
      return el('li', { class: 'handoff' }, el('strong', {}, `Handoff at tick ${x.tick}`), ` — epoch ${x.epoch} → ${x.epoch + 1}, from ${shortPeer(x.from)} to ${shortPeer(x.to)}`, el('span', { class: 'here' }, ` ${new Date(x.time).toLocaleTimeString()}`))
    }
    if (x.stop) return el('li', {}, el('strong', {}, `${x.status[0].toUpperCase()}${x.status.slice(1)} at tick ${x.tick}`), x.reason ? ` (${x.reason})` : '')
    const here = x.host === nodePeer ? ' (this node)' : ''
    return el('li', {}, el('strong', {}, `Epoch ${x.epoch}`), ` on ${shortPeer(x.host)}${here}: ${x.from === x.to ? `tick ${x.from}` : `ticks ${x.from}–${x.to}`}, ${x.n} checkpoint${x.n === 1 ? '' : 's'}`,
      el('span', { class: 'here' }, ` ${new Date(x.start).toLocaleTimeString()}–${new Date(x.until).toLocaleTimeString()}`))
  })
  if (lis.length === 0) lis.push(el('li', {}, 'no checkpoints on this node yet'))
  $('timeline').replaceChildren(...lis)
  setText($('timeline-note'), `From this node's history of the agent: ${h.checkpoints.length} of ${h.total} checkpoints, ${h.epochs.length} epoch${h.epochs.length === 1 ? '' : 's'}, ${h.hosts.length} host${h.hosts.length === 1 ? '' : 's'}, ${h.handoffs.length} handoff${h.handoffs.length === 1 ? '' : 's'}.`)
  const migs = h.migrations.slice(-20).map((m) => {
    const { time, name: _n, agent: _a, ...rest } = m
    const parts = Object.entries(rest).filter(([, v]) => typeof v !== 'object').map(([k, v]) => `${k} ${typeof v === 'string' && v.length > 40 ? shortPeer(v) : v}`)
    return el('li', {}, `${time ? new Date(time).toLocaleString() + ': ' : ''}${parts.join(', ')}`)
  })
  if (migs.length === 0) migs.push(el('li', { class: 'muted' }, 'none'))
  $('migrations').replaceChildren(...migs)
}

// ---- start -----------------------------------------------------------------------------------

window.addEventListener('hashchange', () => { route(); $('main').focus() })
// the skip link moves focus without touching the hash (the hash is the route)
document.querySelector('a.skip').addEventListener('click', (ev) => { ev.preventDefault(); $('main').focus() })
route()
