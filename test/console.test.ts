/**
 * p2p/console.ts and the console's access rules in p2p/http-api.ts, in process on 127.0.0.1: the
 * three console files served from memory with a strict CSP and an ETag, no inline script or style
 * in the page, the files open without the token, `POST /api/session` setting the log-stream cookie
 * only for a bearer of the token, and that cookie opening the log stream and nothing else. The
 * page in a real browser: test/e2e-console.test.ts.
 */
import { readFileSync } from 'node:fs'
import * as http from 'node:http'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { consoleDir, consoleRoutes, isConsoleRequest } from '../p2p/console.ts'
import { serveHttp, SESSION_COOKIE, sessionCookieValue } from '../p2p/http-api.ts'
import type { HttpApi } from '../p2p/http-api.ts'
import { IgordNode } from '../p2p/node.ts'
import { cleanup, tempDir } from './helpers.ts'

const TOKEN = 'console-unit-token-0123456789'

let node: IgordNode | null = null
let open: HttpApi | null = null
let locked: HttpApi | null = null
test.after(async () => { await open?.close(); await locked?.close(); await node?.shutdown(); cleanup() })

test('start a node with an open and a token HTTP API', async () => {
  node = await IgordNode.start({
    dir: tempDir('igord-console-'), listen: ['/ip4/127.0.0.1/tcp/0'], capabilities: ['clock', 'log'],
    price: 1000n, intervalMs: 20, checkpointEveryMs: 20, note: () => {}, emit: () => {},
  })
  open = await serveHttp(node, { host: '127.0.0.1', port: 0 })
  locked = await serveHttp(node, { host: '127.0.0.1', port: 0, token: TOKEN })
})

const get = (api: HttpApi, p: string, headers: Record<string, string> = {}, method = 'GET') =>
  fetch(api.url + p, { method, headers, signal: AbortSignal.timeout(60_000) })

test('the console files: served with their types, a strict CSP, an ETag; 304 on a match', async () => {
  const dir = consoleDir()
  assert.ok(dir !== null, 'console/ found from p2p/console.ts')
  for (const [p, type, file] of [['/', 'text/html', 'index.html'], ['/console/console.js', 'text/javascript', 'console.js'], ['/console/console.css', 'text/css', 'console.css']]) {
    const r = await get(open!, p)
    assert.is(r.status, 200, p)
    assert.ok(r.headers.get('content-type')!.startsWith(type), `${p}: ${r.headers.get('content-type')}`)
    assert.is(await r.text(), readFileSync(dir + file, 'utf8'), `${p}: the file's bytes`)
    const csp = r.headers.get('content-security-policy') ?? ''
    for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "form-action 'none'"]) assert.ok(csp.includes(d), `${p}: CSP has ${d}: ${csp}`)
    assert.not.ok(csp.includes('unsafe'), `${p}: no unsafe-* in the CSP`)
    assert.is(r.headers.get('x-content-type-options'), 'nosniff')
    assert.is(r.headers.get('referrer-policy'), 'no-referrer')
    const etag = r.headers.get('etag')!
    assert.match(etag, /^"[0-9a-f]{16}"$/)
    const again = await get(open!, p, { 'if-none-match': etag })
    assert.is(again.status, 304, `${p}: 304 for its ETag`)
  }
  const head = await get(open!, '/', {}, 'HEAD')
  assert.is(head.status, 200, 'HEAD /')
})

test('the page has no inline script, no inline style, no remote resource; every input has a label', () => {
  const html = readFileSync(consoleDir() + 'index.html', 'utf8')
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)]
  assert.is(scripts.length, 1, 'one script')
  assert.match(scripts[0][1], /type="module" src="\/console\/console\.js"/)
  assert.is(scripts[0][2].trim(), '', 'no inline script')
  assert.not.match(html, /\sstyle=|<style\b|\son[a-z]+=/i, 'no inline style or handler attribute')
  assert.not.match(html, /(src|href)="(https?:)?\/\//i, 'no remote resource')
  for (const m of html.matchAll(/<input\b[^>]*\bid="([^"]+)"/g)) assert.match(html, new RegExp(`<label for="${m[1]}"`), `input #${m[1]} has a label`)
  for (const landmark of ['<header', '<main', 'role="log"', 'aria-live', '<caption', 'scope="col"']) assert.ok(html.includes(landmark), landmark)
})

test('with a token: the console files need none, the API does; a cookie alone opens nothing but the log stream', async () => {
  assert.is((await get(locked!, '/')).status, 200, 'GET / without the token')
  assert.is((await get(locked!, '/console/console.js')).status, 200)
  assert.is((await get(locked!, '/api/agents')).status, 401, 'the API still needs it')
  assert.is((await get(locked!, '/console/other.js')).status, 401, 'only the console files are open')
  assert.is((await get(locked!, '/', {}, 'POST')).status, 401, 'only GET/HEAD of them')

  const none = await fetch(locked!.url + '/api/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  assert.is(none.status, 401, 'POST /api/session without the token')
  assert.is(none.headers.get('set-cookie'), null)
  const s = await fetch(locked!.url + '/api/session', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: '{}' })
  assert.is(s.status, 200)
  const set = s.headers.get('set-cookie') ?? ''
  const value = sessionCookieValue(TOKEN)
  assert.ok(set.startsWith(`${SESSION_COOKIE}=${value};`), set)
  for (const attr of ['HttpOnly', 'SameSite=Strict', 'Path=/api/agents', 'Max-Age=43200']) assert.ok(set.includes(attr), `${attr} in ${set}`)
  assert.not.ok(value.includes(TOKEN), 'the cookie is not the token')
  assert.is(value, sessionCookieValue(TOKEN), 'the same for the same token')
  assert.is.not(value, sessionCookieValue(TOKEN + 'x'))

  const cookie = { cookie: `${SESSION_COOKIE}=${value}` }
  const logs = await get(locked!, '/api/agents/nobody/logs', cookie)
  assert.is(logs.status, 404, 'the cookie passes the log stream route (then: no such agent)')
  assert.is(((await logs.json()) as { code: string }).code, 'NO_SUCH_AGENT')
  assert.is((await get(locked!, '/api/agents/nobody/logs', { cookie: `${SESSION_COOKIE}=${sessionCookieValue(TOKEN + 'x')}` })).status, 401, 'a wrong cookie')
  assert.is((await get(locked!, '/api/agents', cookie)).status, 401, 'the cookie does not list agents')
  assert.is((await get(locked!, '/api/agents/nobody/history', cookie)).status, 401, 'nor read history')
  assert.is((await get(locked!, '/metrics', cookie)).status, 401, 'nor metrics')
  const stop = await fetch(locked!.url + '/api/agents/nobody/stop', { method: 'POST', headers: { 'content-type': 'application/json', ...cookie }, body: '{}' })
  assert.is(stop.status, 401, 'nor act')
})

/** GET `p` of `api` with a `Host` header (fetch cannot set it): the status. */
const withHost = (api: HttpApi, p: string, host: string) => new Promise<number>((resolve, reject) => {
  const req = http.request(api.url + p, { headers: { host }, timeout: 60_000 }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
  req.on('error', reject)
  req.on('timeout', () => req.destroy(new Error('timed out')))
  req.end()
})

test('without a token: POST /api/session says so and sets nothing; a non-loopback Host is refused for the console too', async () => {
  const s = await fetch(open!.url + '/api/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  assert.is(s.status, 200)
  assert.equal(await s.json(), { token: false })
  assert.is(s.headers.get('set-cookie'), null)
  assert.is(await withHost(open!, '/', 'evil.example'), 421)
})

test('with a token, the console opens under any Host name (a node reached by its name), the API still needs the token', async () => {
  assert.is(await withHost(locked!, '/', 'igord.example:8080'), 200)
  assert.is(await withHost(locked!, '/api/agents', 'igord.example:8080'), 401)
})

test('isConsoleRequest and a package without console files', async () => {
  assert.ok(isConsoleRequest('GET', '/'))
  assert.ok(isConsoleRequest('HEAD', '/console/console.css'))
  assert.not.ok(isConsoleRequest('POST', '/'))
  assert.not.ok(isConsoleRequest('GET', '/console/'))
  assert.not.ok(isConsoleRequest('GET', '/api/agents'))
  const r = await consoleRoutes(null).request('/')
  assert.is(r.status, 404)
  assert.match(((await r.json()) as { error: string }).error, /no console files/)
})

test.run()
