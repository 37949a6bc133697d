/**
 * hostcalls/http.ts: every refusal of `checkRequest`, the allow-list, the header-line format, and
 * `performRequest` against real node:http servers on 127.0.0.1 started here (GET, POST with the
 * Idempotency-Key, redirects inside and outside the allow-list, too many hops, timeout, oversized
 * responses, a closed port).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { E_TOO_LONG } from '../hostcalls/igor.ts'
import {
  checkRequest, E_BAD_REQUEST, E_HTTP_CONNECT, E_HTTP_IN_DOUBT, E_HTTP_REDIRECT, E_HTTP_TIMEOUT,
  E_HTTP_TOO_LARGE, E_NOT_ALLOWED, E_TOO_MANY, errorOutcome, HOST_SET_HEADERS, headersText,
  hostAllowed, isSafeMethod, MAX_REDIRECTS, parseHeaderLines, performRequest,
} from '../hostcalls/http.ts'
import type { RequestParts } from '../hostcalls/http.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import type { HttpPolicy } from '../hostcalls/manifest.ts'

const utf8 = new TextEncoder()
const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** A policy from a manifest's `http` section (so the parser is exercised too). */
function policy (http: Record<string, unknown>): HttpPolicy {
  const m = parseManifest(utf8.encode(JSON.stringify({ capabilities: ['http'], http })), 'm.json')
  return m.http!
}

interface Seen { method: string; url: string; headers: IncomingMessage['headers']; body: string }

/** A server on 127.0.0.1 (port 0) that records every request it gets and answers with `handle`. */
async function serve (handle: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ server: Server; port: number; seen: Seen[] }> {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body })
      handle(req, res, body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port, seen }
}

let a: Awaited<ReturnType<typeof serve>> // the allowed server
let b: Awaited<ReturnType<typeof serve>> // a server NOT in the allow-list: must never be contacted
let c: Awaited<ReturnType<typeof serve>> // another allowed server (another origin)
let closedPort = 0
let allowed: HttpPolicy

test.before(async () => {
  b = await serve((_req, res) => res.end('secret'))
  c = await serve((_req, res) => res.end('from c'))
  a = await serve((req, res, body) => {
    const u = new URL(req.url!, 'http://x')
    const p = u.pathname
    if (p === '/json') {
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Custom': 'Yes' })
      res.end(req.method === 'HEAD' ? undefined : '{"hello":"world"}')
    } else if (p === '/echo') {
      res.writeHead(201, { 'content-type': 'text/plain' })
      res.end(`${req.method} ${body}`)
    } else if (p === '/redirect-local') {
      res.writeHead(302, { location: '/json' }); res.end('moved')
    } else if (p === '/redirect-abs') {
      res.writeHead(307, { location: `http://127.0.0.1:${a.port}/json` }); res.end()
    } else if (p === '/redirect-out') {
      res.writeHead(302, { location: `http://127.0.0.1:${b.port}/secret` }); res.end()
    } else if (p === '/redirect-c') {
      res.writeHead(301, { location: `http://127.0.0.1:${c.port}/landing` }); res.end()
    } else if (p === '/redirect-ftp') {
      res.writeHead(302, { location: 'ftp://127.0.0.1/x' }); res.end()
    } else if (p === '/redirect-bad') {
      res.writeHead(302, { location: 'http://[::1/' }); res.end()
    } else if (p === '/redirect-userinfo') {
      res.writeHead(302, { location: `http://u:p@127.0.0.1:${a.port}/json` }); res.end()
    } else if (p === '/redirect-none') {
      res.writeHead(302); res.end('no location')
    } else if (p.startsWith('/chain/')) { // /chain/n redirects n times, then answers
      const n = Number(p.slice(7))
      if (n === 0) res.end('end of chain')
      else { res.writeHead(302, { location: `/chain/${n - 1}` }); res.end() }
    } else if (p === '/hang') {
      // never answers; the test's after hook closes the connection
    } else if (p === '/hang-body') {
      res.writeHead(200, { 'content-type': 'text/plain' }); res.write('partial') // never ends
    } else if (p === '/size') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      res.end(Buffer.alloc(Number(u.searchParams.get('n')), 0x61))
    } else if (p === '/stream') { // chunked, no content-length: 256 chunks of 4 KiB, stops when the client goes away
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      let i = 0
      const more = () => {
        if (res.destroyed || i++ >= 256) { res.end(); return }
        res.write(Buffer.alloc(4096, 0x62), () => setImmediate(more))
      }
      more()
    } else if (p === '/reset') {
      req.socket.destroy()
    } else {
      res.writeHead(404); res.end('not found')
    }
  })
  const tmp = createServer()
  await new Promise<void>((resolve) => tmp.listen(0, '127.0.0.1', resolve))
  closedPort = (tmp.address() as AddressInfo).port
  await new Promise<void>((resolve) => tmp.close(() => resolve()))
  allowed = policy({ allow: [`127.0.0.1:${a.port}`, `127.0.0.1:${c.port}`, `127.0.0.1:${closedPort}`], timeout_ms: 5000 })
})

test.after(async () => {
  for (const s of [a, b, c]) {
    if (s === undefined) continue
    s.server.closeAllConnections()
    await new Promise<void>((resolve) => s.server.close(() => resolve()))
  }
})

const KEY = 'did:key:z6MkTest/7/1'
const get = (url: string, p = allowed, headers = '') => performRequest(p, { method: 'GET', url, headers, body: new Uint8Array(0), key: KEY })

// ---------------------------------------------------------------- performRequest

test('GET json: status, lower-case headers text, body; Idempotency-Key sent', async () => {
  const out = await get(`http://127.0.0.1:${a.port}/json`, allowed, 'Accept: application/json\r\nX-Trace: abc\r\n')
  assert.is(out.status, 200)
  assert.is(text(out.body), '{"hello":"world"}')
  const h = parseHeaderLines(out.headers)!
  assert.ok(h !== null, out.headers)
  assert.ok(out.headers.endsWith('\r\n'))
  assert.ok(h.some(([n, v]) => n === 'content-type' && v === 'application/json'), out.headers)
  assert.ok(h.some(([n, v]) => n === 'x-custom' && v === 'Yes'), out.headers)
  for (const [n] of h) assert.is(n, n.toLowerCase())
  const seen = a.seen.at(-1)!
  assert.is(seen.method, 'GET')
  assert.is(seen.headers['idempotency-key'], KEY)
  assert.is(seen.headers['x-trace'], 'abc')
  assert.is(seen.headers.accept, 'application/json')
  assert.is(seen.headers['accept-encoding'], 'identity')
  assert.is(seen.headers['user-agent'], 'igord')
})

test('HEAD: status and headers, empty body', async () => {
  const out = await performRequest(allowed, { method: 'head', url: `http://127.0.0.1:${a.port}/json`, headers: '', body: new Uint8Array(0), key: KEY })
  assert.is(out.status, 200)
  assert.is(out.body.length, 0)
  assert.ok(out.headers.includes('content-type: application/json\r\n'))
  assert.is(a.seen.at(-1)!.method, 'HEAD')
})

test('POST with a body: the server sees the body and the Idempotency-Key; 201 comes back', async () => {
  const before = a.seen.length
  const out = await performRequest(allowed, {
    method: 'POST', url: `http://127.0.0.1:${a.port}/echo`, headers: 'Content-Type: text/plain\r\n', body: utf8.encode('hello server'), key: KEY,
  })
  assert.is(out.status, 201)
  assert.is(text(out.body), 'POST hello server')
  assert.is(a.seen.length, before + 1)
  const seen = a.seen.at(-1)!
  assert.is(seen.body, 'hello server')
  assert.is(seen.headers['idempotency-key'], KEY)
  assert.is(seen.headers['content-type'], 'text/plain')
  assert.is(seen.headers['content-length'], '12')
})

test('PUT, PATCH, DELETE, OPTIONS go out with their method', async () => {
  for (const method of ['PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
    const out = await performRequest(allowed, { method, url: `http://127.0.0.1:${a.port}/echo`, headers: '', body: utf8.encode('x'), key: KEY })
    assert.is(out.status, 201, method)
    assert.is(text(out.body), `${method} x`)
  }
})

test('redirects inside the allow-list are followed (relative and absolute Location, to another allowed origin)', async () => {
  let out = await get(`http://127.0.0.1:${a.port}/redirect-local`)
  assert.is(out.status, 200)
  assert.is(text(out.body), '{"hello":"world"}')
  out = await get(`http://127.0.0.1:${a.port}/redirect-abs`)
  assert.is(out.status, 200)
  assert.is(text(out.body), '{"hello":"world"}')
  // A hop to another origin keeps the Idempotency-Key and the agent's headers but drops authorization and cookie.
  out = await get(`http://127.0.0.1:${a.port}/redirect-c`, allowed, 'Authorization: Bearer t\r\nCookie: s=1\r\nX-Keep: 1\r\n')
  assert.is(out.status, 200)
  assert.is(text(out.body), 'from c')
  const hop = c.seen.at(-1)!
  assert.is(hop.url, '/landing')
  assert.is(hop.headers['idempotency-key'], KEY)
  assert.is(hop.headers['x-keep'], '1')
  assert.is(hop.headers.authorization, undefined)
  assert.is(hop.headers.cookie, undefined)
  assert.is(a.seen.at(-1)!.headers.authorization, 'Bearer t', 'the first hop had it')
})

test('a redirect to a host not in the allow-list is refused without contacting it', async () => {
  const out = await get(`http://127.0.0.1:${a.port}/redirect-out`)
  assert.equal(out, errorOutcome(E_HTTP_REDIRECT))
  assert.is(b.seen.length, 0, 'the non-allowed server saw nothing')
})

test('bad Location (unparsable, not http(s), with userinfo) is E_HTTP_REDIRECT; 3xx without Location comes back as is', async () => {
  for (const p of ['/redirect-ftp', '/redirect-bad', '/redirect-userinfo']) {
    assert.is((await get(`http://127.0.0.1:${a.port}${p}`)).status, E_HTTP_REDIRECT, p)
  }
  const out = await get(`http://127.0.0.1:${a.port}/redirect-none`)
  assert.is(out.status, 302)
  assert.is(text(out.body), 'no location')
})

test('at most 5 hops: /chain/5 arrives, /chain/6 is E_HTTP_REDIRECT after 6 requests', async () => {
  assert.is(MAX_REDIRECTS, 5)
  let out = await get(`http://127.0.0.1:${a.port}/chain/5`)
  assert.is(out.status, 200)
  assert.is(text(out.body), 'end of chain')
  const before = a.seen.length
  out = await get(`http://127.0.0.1:${a.port}/chain/6`)
  assert.is(out.status, E_HTTP_REDIRECT)
  assert.is(a.seen.length - before, 6, 'the first request and 5 hops; the 6th redirect is not followed')
})

test('POST is not redirected: the 3xx comes back to the agent as is', async () => {
  const before = a.seen.length
  const out = await performRequest(allowed, { method: 'POST', url: `http://127.0.0.1:${a.port}/redirect-local`, headers: '', body: utf8.encode('x'), key: KEY })
  assert.is(out.status, 302)
  assert.ok(out.headers.includes('location: /json\r\n'), out.headers)
  assert.is(a.seen.length - before, 1)
})

test('timeout: a server that never answers gives E_HTTP_TIMEOUT after timeout_ms', async () => {
  const p = policy({ allow: [`127.0.0.1:${a.port}`], timeout_ms: 300 })
  assert.is((await get(`http://127.0.0.1:${a.port}/hang`, p)).status, E_HTTP_TIMEOUT)
  assert.is((await get(`http://127.0.0.1:${a.port}/hang-body`, p)).status, E_HTTP_TIMEOUT, 'the body counts in the timeout')
})

test('oversized responses: E_HTTP_TOO_LARGE; the headers text counts in max_response_bytes', async () => {
  const p = policy({ allow: [`127.0.0.1:${a.port}`], max_response_bytes: 1000 })
  const ok = await get(`http://127.0.0.1:${a.port}/size?n=500`, p)
  assert.is(ok.status, 200)
  assert.is(ok.body.length, 500)
  const headerBytes = utf8.encode(ok.headers).length
  assert.ok(headerBytes > 10 && headerBytes + 500 <= 1000, `headers are ${headerBytes} bytes`)
  // Exactly at the cap passes; one byte more fails: the headers text is the same size for both (same digits in content-length).
  const atCap = 1000 - headerBytes
  assert.ok(String(atCap).length === 3, 'same header size')
  assert.is((await get(`http://127.0.0.1:${a.port}/size?n=${atCap}`, p)).status, 200)
  assert.is((await get(`http://127.0.0.1:${a.port}/size?n=${atCap + 1}`, p)).status, E_HTTP_TOO_LARGE)
  assert.is((await get(`http://127.0.0.1:${a.port}/size?n=2000`, p)).status, E_HTTP_TOO_LARGE)
  // Chunked, no content-length: the read stops at the cap.
  assert.is((await get(`http://127.0.0.1:${a.port}/stream`, p)).status, E_HTTP_TOO_LARGE)
  // A cap below the headers alone.
  const tiny = policy({ allow: [`127.0.0.1:${a.port}`], max_response_bytes: 20 })
  assert.is((await get(`http://127.0.0.1:${a.port}/size?n=0`, tiny)).status, E_HTTP_TOO_LARGE)
})

test('connection failures: a closed port and a reset are E_HTTP_CONNECT', async () => {
  assert.equal(await get(`http://127.0.0.1:${closedPort}/`), errorOutcome(E_HTTP_CONNECT))
  assert.is((await get(`http://127.0.0.1:${a.port}/reset`)).status, E_HTTP_CONNECT)
})

test('performRequest checks the request again: a URL outside the allow-list is never sent', async () => {
  const out = await get(`http://127.0.0.1:${b.port}/secret`)
  assert.equal(out, errorOutcome(E_NOT_ALLOWED))
  const bad = await performRequest(allowed, { method: 'GET', url: `http://127.0.0.1:${a.port}/json`, headers: 'Host: evil\r\n', body: new Uint8Array(0), key: KEY })
  assert.is(bad.status, E_BAD_REQUEST)
  assert.is(b.seen.length, 0)
})

test('the caller\'s signal: already aborted or aborted mid-exchange rejects with its reason (no outcome)', async () => {
  const reason = new Error('host stopping')
  let caught: unknown = null
  try { await performRequest(allowed, { method: 'GET', url: `http://127.0.0.1:${a.port}/json`, headers: '', body: new Uint8Array(0), key: KEY }, { signal: AbortSignal.abort(reason) }) } catch (e) { caught = e }
  assert.is(caught, reason)
  const ac = new AbortController()
  setTimeout(() => ac.abort(reason), 100)
  caught = null
  try { await performRequest(allowed, { method: 'GET', url: `http://127.0.0.1:${a.port}/hang`, headers: '', body: new Uint8Array(0), key: KEY }, { signal: ac.signal }) } catch (e) { caught = e }
  assert.is(caught, reason)
})

test('a bad Idempotency-Key is a host bug: TypeError', async () => {
  for (const key of ['', 'has space', 'x'.repeat(1025), 'é']) {
    let caught: unknown = null
    try { await performRequest(allowed, { method: 'GET', url: `http://127.0.0.1:${a.port}/json`, headers: '', body: new Uint8Array(0), key }) } catch (e) { caught = e }
    assert.instance(caught, TypeError, JSON.stringify(key))
  }
})

// ---------------------------------------------------------------- checkRequest

const P = (): HttpPolicy => policy({ allow: ['example.com:443', 'api.test', '127.0.0.1:8080', '[::1]:9000'], max_request_bytes: 200 })
const req = (over: Partial<RequestParts> = {}): RequestParts => ({ method: 'GET', url: 'https://example.com/x', headers: '', body: new Uint8Array(0), ...over })
const code = (r: ReturnType<typeof checkRequest>) => r.ok ? 0 : r.code

test('codes: the spec values', () => {
  assert.equal([E_NOT_ALLOWED, E_BAD_REQUEST, E_TOO_MANY, E_HTTP_TIMEOUT, E_HTTP_CONNECT, E_HTTP_TOO_LARGE, E_HTTP_REDIRECT, E_HTTP_IN_DOUBT], [-5, -6, -7, -10, -11, -12, -13, -14])
  assert.equal(errorOutcome(E_HTTP_IN_DOUBT), { status: -14, headers: '', body: new Uint8Array(0) })
})

test('checkRequest: a good request is normalized (method upper case, URL href, headers kept as given)', () => {
  const r = checkRequest(P(), req({ method: 'post', url: 'https://EXAMPLE.com/a/../b?q=1', headers: 'X-A:  1 \r\nx-b: two', body: utf8.encode('{}') }))
  assert.ok(r.ok)
  if (!r.ok) return
  assert.is(r.request.method, 'POST')
  assert.is(r.request.url, 'https://example.com/b?q=1')
  assert.is(r.request.headers, 'X-A:  1 \r\nx-b: two')
  assert.equal(r.request.headerList, [['x-a', '1'], ['x-b', 'two']])
  assert.is(text(r.request.body), '{}')
  // The same request as bytes.
  const rb = checkRequest(P(), { method: utf8.encode('POST'), url: utf8.encode('https://example.com/b'), headers: utf8.encode('X-A: 1\r\n'), body: utf8.encode('{}') })
  assert.ok(rb.ok)
})

test('checkRequest: E_TOO_LONG when URL + headers + body bytes are over max_request_bytes (checked first)', () => {
  const url = 'https://example.com/x' // 21 bytes
  const headers = 'X-A: 1\r\n' // 8 bytes
  assert.is(code(checkRequest(P(), req({ method: 'POST', url, headers, body: new Uint8Array(200 - 29) }))), 0, 'exactly at the limit')
  assert.is(code(checkRequest(P(), req({ method: 'POST', url, headers, body: new Uint8Array(200 - 28) }))), E_TOO_LONG)
  assert.is(E_TOO_LONG, -2)
  assert.is(code(checkRequest(P(), req({ url: `https://example.com/${'a'.repeat(200)}` }))), E_TOO_LONG)
  assert.is(code(checkRequest(P(), req({ headers: `X-A: ${'a'.repeat(200)}` }))), E_TOO_LONG)
  assert.is(code(checkRequest(P(), req({ method: 'BREW', body: new Uint8Array(300) }))), E_TOO_LONG, 'size before method')
  assert.is(code(checkRequest(P(), req({ url: `https://example.com/${'é'.repeat(95)}` }))), E_TOO_LONG, 'bytes, not characters')
})

test('checkRequest: E_BAD_REQUEST for a method outside the list', () => {
  for (const m of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'get', 'Delete']) {
    assert.is(code(checkRequest(P(), req({ method: m }))), 0, m)
  }
  for (const m of ['TRACE', 'CONNECT', 'BREW', '', 'GET ', 'G\u00e9T', 'GETGETGETGETGETGET', new Uint8Array([0x47, 0xc5, 0x54])]) {
    assert.is(code(checkRequest(P(), req({ method: m }))), E_BAD_REQUEST, String(m))
  }
})

test('checkRequest: E_BAD_REQUEST for a URL that is not absolute http(s), has userinfo, or is not printable ASCII', () => {
  for (const url of [
    '/relative', 'example.com/x', 'ftp://example.com/', 'file:///etc/passwd', 'data:text/plain,hi', 'javascript:alert(1)',
    'https://user:pw@example.com/', 'https://user@example.com/', 'https://example.com/a b', ' https://example.com/',
    'https://example.com/\t', 'https://example.com/é', 'https://', 'http://[::1/', '',
  ]) {
    assert.is(code(checkRequest(P(), req({ url }))), E_BAD_REQUEST, url)
  }
  assert.is(code(checkRequest(P(), req({ url: new Uint8Array([...utf8.encode('https://example.com/'), 0xff]) }))), E_BAD_REQUEST)
})

test('checkRequest: E_NOT_ALLOWED for a host or port not in http.allow', () => {
  const ok = ['https://example.com/', 'https://Example.COM:443/', 'http://api.test/', 'https://api.test:8443/', 'http://127.0.0.1:8080/x', 'http://[::1]:9000/', 'http://[0:0::1]:9000/']
  for (const url of ok) assert.is(code(checkRequest(P(), req({ url }))), 0, url)
  const no = ['http://example.com/', 'https://example.com:8443/', 'https://sub.example.com/', 'https://example.com.evil/', 'http://127.0.0.1/', 'http://127.0.0.1:8081/', 'http://localhost:8080/', 'http://[::1]:9001/', 'http://127.0.0.2:8080/']
  for (const url of no) assert.is(code(checkRequest(P(), req({ url }))), E_NOT_ALLOWED, url)
})

test('checkRequest: E_BAD_REQUEST for malformed header lines and headers the host sets', () => {
  for (const headers of ['', 'X-A: 1', 'X-A: 1\r\n', 'X-A:1\r\nX-B: 2\r\n', 'X-A:\r\n', 'X-A: a "quoted", value\t\r\n', 'Authorization: Bearer x']) {
    assert.is(code(checkRequest(P(), req({ headers }))), 0, JSON.stringify(headers))
  }
  for (const headers of ['no colon\r\n', 'X-A: 1\n', 'X-A: 1\nX-B: 2', ': v\r\n', 'X A: v\r\n', 'X-A: v\r\n\r\n', '\r\n', 'X-A: caf\u00e9\r\n', 'X-A: a\rb\r\n', 'X-A: \u0001\r\n', 'X(A): v']) {
    assert.is(code(checkRequest(P(), req({ headers }))), E_BAD_REQUEST, JSON.stringify(headers))
  }
  for (const name of [...HOST_SET_HEADERS, 'proxy-authorization', 'Proxy-Connection', 'HOST', 'Idempotency-Key']) {
    assert.is(code(checkRequest(P(), req({ headers: `${name}: x\r\n` }))), E_BAD_REQUEST, name)
  }
  assert.equal([...HOST_SET_HEADERS].sort(), ['connection', 'content-length', 'expect', 'host', 'idempotency-key', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade'])
})

test('checkRequest: E_BAD_REQUEST for a body on GET or HEAD', () => {
  assert.is(code(checkRequest(P(), req({ method: 'GET', body: utf8.encode('x') }))), E_BAD_REQUEST)
  assert.is(code(checkRequest(P(), req({ method: 'HEAD', body: utf8.encode('x') }))), E_BAD_REQUEST)
  assert.is(code(checkRequest(P(), req({ method: 'DELETE', body: utf8.encode('x') }))), 0)
  assert.is(code(checkRequest(P(), req({ method: 'OPTIONS', body: utf8.encode('x') }))), 0)
})

test('checkRequest: every refusal has a one-line reason', () => {
  const r = checkRequest(P(), req({ url: 'http://nope.test/' }))
  assert.ok(!r.ok && r.reason.includes('nope.test') && !r.reason.includes('\n'))
})

test('hostAllowed: unparsable or non-http URLs are never allowed; a host entry allows every port', () => {
  const p = P()
  assert.ok(hostAllowed(p, new URL('https://api.test:1/')))
  assert.not.ok(hostAllowed(p, 'not a url'))
  assert.not.ok(hostAllowed(p, 'ftp://api.test/'))
  assert.not.ok(hostAllowed(p, 'ws://api.test/'))
})

test('isSafeMethod: GET, HEAD, OPTIONS', () => {
  assert.equal(['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE'].map(isSafeMethod), [true, true, true, false, false, false, false])
})

test('parseHeaderLines / headersText: the name: value\\r\\n format', () => {
  assert.equal(parseHeaderLines(''), [])
  assert.equal(parseHeaderLines('A: 1\r\nb:2\r\nC:  three  \r\n'), [['a', '1'], ['b', '2'], ['c', 'three']])
  assert.equal(parseHeaderLines('Set-Cookie: a=1\r\nSet-Cookie: b=2'), [['set-cookie', 'a=1'], ['set-cookie', 'b=2']])
  assert.is(parseHeaderLines('A 1\r\n'), null)
  assert.is(headersText([['Content-Type', 'text/plain'], ['x-a', '1']]), 'content-type: text/plain\r\nx-a: 1\r\n')
  assert.is(headersText([]), '')
  const pairs: [string, string][] = [['a', '1'], ['b', 'x y']]
  assert.equal(parseHeaderLines(headersText(pairs)), pairs)
})

test.run()
