/**
 * The host side of capability `http` (docs/ABI.md "http — `http_request`"): the checks that decide
 * whether `http_request` issues a request or refuses it, and the function that performs an issued
 * request later, outside any tick, and turns whatever happens into one outcome (an HTTP response or
 * a negative outcome code) for the agent's inbox.
 *
 * Self-contained: no runtime imports. Requests go out through Node's built-in `fetch` (undici,
 * WHATWG Fetch) with `redirect: 'manual'`; redirects are followed here, each hop checked against
 * the manifest's allow-list.
 */
import type { HttpPolicy } from './manifest.ts'

/** `http_request`: a part is over its limit (URL + headers + body over `max_request_bytes`). Same value as `E_TOO_LONG` in igor.ts. */
const E_TOO_LONG = -2
/** `http_request`: the URL's host (and port) is not in the manifest's `http.allow`; nothing issued. */
export const E_NOT_ALLOWED = -5
/**
 * `http_request`: the request is malformed: a method other than GET/HEAD/POST/PUT/PATCH/DELETE/
 * OPTIONS, a URL that is not absolute http(s) or has userinfo or bytes outside printable ASCII, a
 * malformed header line, a header the host sets itself ({@link HOST_SET_HEADERS}, `proxy-*`), or a
 * body on GET/HEAD; nothing issued.
 */
export const E_BAD_REQUEST = -6
/** `http_request`: `max_pending` requests are already issued and without an outcome; nothing issued (the caller's check). */
export const E_TOO_MANY = -7
/** Outcome: no complete response within `timeout_ms` (the whole exchange: every hop and the body). */
export const E_HTTP_TIMEOUT = -10
/** Outcome: the connection failed (refused, DNS, reset, TLS) or broke before the response was complete. */
export const E_HTTP_CONNECT = -11
/** Outcome: the response (headers text plus body) is over `max_response_bytes`, or its headers over 64 KiB; the rest was not read. */
export const E_HTTP_TOO_LARGE = -12
/** Outcome (GET/HEAD only): a redirect to a host not in the allow-list, more than 5 hops, or a bad `Location`. */
export const E_HTTP_REDIRECT = -13
/**
 * Outcome (POST/PUT/PATCH/DELETE only): the request may or may not have reached the server; the
 * host died or lost it between sending it and recording its outcome. Produced by the caller that
 * recovers the journal, never by {@link performRequest}.
 */
export const E_HTTP_IN_DOUBT = -14

/** Methods `http_request` accepts (upper case; the agent's method is compared case-insensitively). */
export const HTTP_METHODS: readonly string[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']
/** Headers the host sets itself (or that fetch cannot send): an agent header with one of these names is E_BAD_REQUEST, as is any `proxy-*`. */
export const HOST_SET_HEADERS: readonly string[] = [
  'host', 'content-length', 'connection', 'transfer-encoding', 'idempotency-key', 'upgrade', 'te',
  'trailer', 'keep-alive', 'expect',
]
/** Most redirect hops followed for GET/HEAD; one more is E_HTTP_REDIRECT. */
export const MAX_REDIRECTS = 5
/** Largest response headers text (`name: value\r\n` lines, UTF-8), bytes (64 KiB); more is E_HTTP_TOO_LARGE. */
export const MAX_RESPONSE_HEADER_BYTES = 64 * 1024
/** Longest `Idempotency-Key` value the host may pass, bytes (a did:key, a tick and an id fit easily). */
export const MAX_KEY_BYTES = 1024

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])
/** Headers not carried to another origin by a redirect (WHATWG Fetch drops `authorization` too). */
const CROSS_ORIGIN_DROPPED = new Set(['authorization', 'cookie'])
const utf8 = new TextEncoder()
/** Decodes bytes already checked to be ASCII (windows-1252, the `ascii` label, is the identity on 0x00–0x7F). */
const ascii = new TextDecoder('ascii')
const EMPTY = new Uint8Array(0)

/** Is `method` (upper case) safe — GET, HEAD or OPTIONS — so that sending it twice is harmless (RFC 9110 §9.2.1)? */
export function isSafeMethod (method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS'
}

/** A request as the agent gave it: method, URL and headers as text or their bytes, and the body. */
export interface RequestParts {
  method: string | Uint8Array
  url: string | Uint8Array
  /** `Name: value\r\n` lines (the last CRLF optional; empty for none). */
  headers: string | Uint8Array
  body: Uint8Array
}

/** A request that passed {@link checkRequest}. */
export interface CheckedRequest {
  /** Upper case, one of {@link HTTP_METHODS}. */
  method: string
  /** The URL as the WHATWG URL parser serializes it (`href`). */
  url: string
  /** The headers text exactly as the agent gave it (for the request record). */
  headers: string
  /** The headers parsed, names lower-cased, in the agent's order. */
  headerList: [string, string][]
  body: Uint8Array
}

/** {@link checkRequest}'s answer: the request, or the code `http_request` returns and why. */
export type RequestCheck =
  | { ok: true; request: CheckedRequest }
  | { ok: false; code: number; reason: string }

/** One outcome of a request: what the agent's inbox message of kind `http` carries. */
export interface HttpOutcome {
  /** HTTP status 100–599, or a negative outcome code (E_HTTP_*, or a {@link checkRequest} code). */
  status: number
  /** Response headers as `name: value\r\n` lines, names lower case; empty for an outcome code. */
  headers: string
  /** Response body (decoded if the server sent it gzip/deflate/br-encoded); empty for an outcome code. */
  body: Uint8Array
}

/** An outcome with no response: `status` = `code`, no headers, no body. */
export function errorOutcome (code: number): HttpOutcome {
  return { status: code, headers: '', body: EMPTY }
}

/**
 * Is a request of these lengths over the policy's `max_request_bytes` (URL + headers + body)? The
 * first check of `http_request`, usable before the parts are read from memory.
 * @param urlLen, headersLen, bodyLen byte lengths
 */
export function requestTooLong (policy: HttpPolicy, urlLen: number, headersLen: number, bodyLen: number): boolean {
  return urlLen + headersLen + bodyLen > policy.maxRequestBytes
}

/**
 * Checks a request the agent asks for, in this order: size (E_TOO_LONG when URL + headers + body
 * bytes are over `max_request_bytes`), method, URL syntax (E_BAD_REQUEST), allow-list
 * (E_NOT_ALLOWED), header lines and a body on GET/HEAD (E_BAD_REQUEST). Pure: no I/O.
 * The pending-request limit (E_TOO_MANY) is the caller's check.
 * @returns the normalized request, or the refusal's code and a one-line reason
 */
export function checkRequest (policy: HttpPolicy, parts: RequestParts): RequestCheck {
  const no = (code: number, reason: string): RequestCheck => ({ ok: false, code, reason })
  const urlLen = byteLength(parts.url)
  const headersLen = byteLength(parts.headers)
  if (requestTooLong(policy, urlLen, headersLen, parts.body.length)) {
    return no(E_TOO_LONG, `request is ${urlLen + headersLen + parts.body.length} bytes (URL + headers + body), over max_request_bytes ${policy.maxRequestBytes}`)
  }
  const methodText = asciiText(parts.method, 16)
  const method = methodText?.toUpperCase()
  if (method === undefined || !HTTP_METHODS.includes(method)) return no(E_BAD_REQUEST, `method is not one of ${HTTP_METHODS.join(', ')}`)
  const urlText = asciiText(parts.url, Infinity)
  if (urlText === null || !/^[\x21-\x7e]+$/.test(urlText)) return no(E_BAD_REQUEST, 'URL is not printable ASCII without spaces')
  const url = parseHttpUrl(urlText)
  if (typeof url === 'string') return no(E_BAD_REQUEST, `URL ${url}`)
  if (!hostAllowed(policy, url)) return no(E_NOT_ALLOWED, `host ${url.host} is not in http.allow`)
  const headers = asciiText(parts.headers, Infinity)
  const headerList = headers === null ? null : parseHeaderLines(headers)
  if (headers === null || headerList === null) return no(E_BAD_REQUEST, 'headers are not "Name: value\\r\\n" lines of printable ASCII')
  for (const [name] of headerList) {
    if (HOST_SET_HEADERS.includes(name) || name.startsWith('proxy-')) return no(E_BAD_REQUEST, `header ${name} is set by the host`)
  }
  if ((method === 'GET' || method === 'HEAD') && parts.body.length > 0) return no(E_BAD_REQUEST, `a ${method} request has no body`)
  return { ok: true, request: { method, url: url.href, headers, headerList, body: parts.body } }
}

/**
 * Is the URL's host in the policy's allow-list? Host names compare exactly in the URL parser's
 * form (lower case, punycode, IPv4 normalized, IPv6 in brackets); an entry without a port allows
 * any port, one with a port allows that port (the URL's, or 80 for http / 443 for https).
 * @returns false also for a URL that does not parse or is not http(s)
 */
export function hostAllowed (policy: HttpPolicy, url: string | URL): boolean {
  let u: URL
  try {
    u = typeof url === 'string' ? new URL(url) : url
  } catch {
    return false
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return false
  const port = u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port)
  return policy.allow.some((a) => a.host === u.hostname && (a.port === null || a.port === port))
}

/**
 * Parses `name: value\r\n` lines (RFC 9110 field syntax; the last CRLF optional; `''` is no
 * lines). A name is a token; a value is printable ASCII, space and tab, with the whitespace around
 * it dropped. Names are lower-cased.
 * @returns the `[name, value]` pairs in order, or null when a line is malformed
 */
export function parseHeaderLines (text: string): [string, string][] | null {
  if (text === '') return []
  const lines = (text.endsWith('\r\n') ? text.slice(0, -2) : text).split('\r\n')
  const out: [string, string][] = []
  for (const line of lines) {
    const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\x20-\x7e\t]*?)[ \t]*$/.exec(line)
    if (m === null) return null
    out.push([m[1].toLowerCase(), m[2]])
  }
  return out
}

/** Serializes header pairs as `name: value\r\n` lines, names lower-cased (the inverse of {@link parseHeaderLines}). */
export function headersText (pairs: Iterable<[string, string]>): string {
  let out = ''
  for (const [name, value] of pairs) out += `${name.toLowerCase()}: ${value}\r\n`
  return out
}

/**
 * Performs an issued request and returns its one outcome. The request is checked again first
 * ({@link checkRequest}: a request from a checkpoint written elsewhere is not trusted); a refused
 * one is not sent and its code is the outcome.
 *
 * Sends the agent's headers plus `Idempotency-Key: <key>` on every hop, and `Accept-Encoding:
 * identity` and `User-Agent: igord` unless the agent set them. GET and HEAD follow 301/302/303/
 * 307/308 with a `Location` (≤ {@link MAX_REDIRECTS} hops, each checked with {@link hostAllowed},
 * `authorization`/`cookie` dropped once the origin changes); other methods get the 3xx as is.
 * The whole exchange has `timeout_ms`. The body is read in chunks and the read stops as soon as
 * headers text plus body pass `max_response_bytes`.
 * @param key the Idempotency-Key value, `<did>/<tick>/<id>` (printable ASCII, ≤ 1024 bytes)
 * @param opts.signal aborts the exchange (host shutting down): the promise then rejects with the
 *   signal's reason and there is no outcome
 * @returns the HTTP response, or an outcome code: E_HTTP_TIMEOUT, E_HTTP_CONNECT,
 *   E_HTTP_TOO_LARGE, E_HTTP_REDIRECT (or E_TOO_LONG / E_NOT_ALLOWED / E_BAD_REQUEST for a
 *   request that fails the check). Never rejects for what the network or server does.
 * @throws TypeError when `key` is not printable ASCII of 1 … 1024 bytes (a host bug)
 */
export async function performRequest (
  policy: HttpPolicy,
  req: RequestParts & { key: string },
  opts: { signal?: AbortSignal } = {},
): Promise<HttpOutcome> {
  if (req.key.length > MAX_KEY_BYTES || !/^[\x21-\x7e]+$/.test(req.key)) throw new TypeError(`performRequest: bad Idempotency-Key ${JSON.stringify(req.key.slice(0, 80))}`)
  const check = checkRequest(policy, req)
  if (!check.ok) return errorOutcome(check.code)
  const { method, headerList, body } = check.request
  const caller = opts.signal
  caller?.throwIfAborted()
  const timeout = AbortSignal.timeout(policy.timeoutMs)
  const signal = caller === undefined ? timeout : AbortSignal.any([caller, timeout])
  /** The outcome of a failure (fetch rejected or the body read failed). */
  const failed = (): HttpOutcome => {
    if (caller?.aborted === true) throw caller.reason
    return errorOutcome(timeout.aborted ? E_HTTP_TIMEOUT : E_HTTP_CONNECT)
  }

  const first = new URL(check.request.url)
  let url = first
  let crossOrigin = false
  let hops = 0
  for (;;) {
    const headers = new Headers()
    for (const [name, value] of headerList) {
      if (!(crossOrigin && CROSS_ORIGIN_DROPPED.has(name))) headers.append(name, value)
    }
    if (!headers.has('accept-encoding')) headers.set('accept-encoding', 'identity')
    if (!headers.has('user-agent')) headers.set('user-agent', 'igord')
    headers.set('idempotency-key', req.key)
    let res: Response
    try {
      res = await fetch(url, {
        method,
        headers,
        body: method === 'GET' || method === 'HEAD' ? undefined : new Uint8Array(body), // a copy: an ArrayBuffer, not a view of wasm memory
        redirect: 'manual',
        signal,
      })
    } catch {
      return failed()
    }
    const location = res.headers.get('location')
    if ((method === 'GET' || method === 'HEAD') && REDIRECT_STATUSES.has(res.status) && location !== null) {
      discard(res)
      if (++hops > MAX_REDIRECTS) return errorOutcome(E_HTTP_REDIRECT)
      let next: URL
      try {
        next = new URL(location, url)
      } catch {
        return errorOutcome(E_HTTP_REDIRECT)
      }
      if (next.username !== '' || next.password !== '' || !hostAllowed(policy, next)) return errorOutcome(E_HTTP_REDIRECT)
      if (next.origin !== first.origin) crossOrigin = true
      url = next
      continue
    }
    return await readResponse(res, policy.maxResponseBytes, failed)
  }
}

/** Reads a final response within the byte cap (headers text + body). */
async function readResponse (res: Response, cap: number, failed: () => HttpOutcome): Promise<HttpOutcome> {
  const headers = headersText(res.headers)
  const headerBytes = utf8.encode(headers).length
  if (headerBytes > MAX_RESPONSE_HEADER_BYTES || headerBytes > cap) {
    discard(res)
    return errorOutcome(E_HTTP_TOO_LARGE)
  }
  const bodyCap = cap - headerBytes
  const declared = res.headers.get('content-length')
  if (declared !== null && !res.headers.has('content-encoding') && /^[0-9]+$/.test(declared) && Number(declared) > bodyCap) {
    discard(res)
    return errorOutcome(E_HTTP_TOO_LARGE)
  }
  if (res.body === null) return { status: res.status, headers, body: EMPTY }
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      total += value.length
      if (total > bodyCap) {
        reader.cancel().catch(() => {})
        return errorOutcome(E_HTTP_TOO_LARGE)
      }
      chunks.push(value)
    }
  } catch {
    return failed()
  }
  const body = new Uint8Array(total)
  let at = 0
  for (const c of chunks) { body.set(c, at); at += c.length }
  return { status: res.status, headers, body }
}

/** Drops a response's body without reading it (the connection is then closed, not reused). */
function discard (res: Response): void {
  res.body?.cancel().catch(() => {})
}

/** Parses an absolute http(s) URL without userinfo; a string says what is wrong. */
function parseHttpUrl (text: string): URL | string {
  let u: URL
  try {
    u = new URL(text)
  } catch {
    return 'is not an absolute URL'
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `scheme ${u.protocol} is not http: or https:`
  if (u.username !== '' || u.password !== '') return 'has userinfo (user:password@)'
  if (u.hostname === '') return 'has no host'
  return u
}

function byteLength (v: string | Uint8Array): number {
  return typeof v === 'string' ? utf8.encode(v).length : v.length
}

/** `v` as a string when it is ASCII (and at most `max` bytes long), else null. */
function asciiText (v: string | Uint8Array, max: number): string | null {
  if (v.length > max) return null
  if (typeof v === 'string') return /^[\x00-\x7f]*$/.test(v) ? v : null
  for (let i = 0; i < v.length; i++) if (v[i] > 0x7f) return null
  return ascii.decode(v)
}
