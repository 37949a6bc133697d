/**
 * The node's web console (`igord node --http …`, then open `/`): three static files — `console/
 * index.html`, `console/console.css`, `console/console.js` (one ES module, no framework, no build
 * step) — read once from the package and served from memory by the HTTP API (p2p/http-api.ts)
 * under a strict Content-Security-Policy (hono/secure-headers: no inline script or style, no
 * framing, connections to this origin only). The page itself talks to the JSON API and the SSE log
 * stream like any other client (docs/PROTOCOL.md "HTTP API", README "Web console").
 */
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Hono } from 'hono'
import { secureHeaders } from 'hono/secure-headers'

/** URL path of each console file → file name in the console directory and its media type. */
export const CONSOLE_FILES: Readonly<Record<string, { file: string; type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
}

/** True for a request that fetches a console file: these need no token (they hold no data), so that a browser can open the page and then ask for the token. */
export function isConsoleRequest (method: string, path: string): boolean {
  return (method === 'GET' || method === 'HEAD') && Object.hasOwn(CONSOLE_FILES, path)
}

/**
 * The directory of the console files: `console/` at the package root, found from this module both
 * in the sources (`p2p/console.ts`) and in the built package (`dist/p2p/console.js`); null when
 * neither holds `index.html`.
 */
export function consoleDir (): string | null {
  for (const rel of ['../console/', '../../console/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url))
    if (fs.existsSync(dir + 'index.html')) return dir
  }
  return null
}

/** One console file in memory: bytes, media type, and a strong ETag (SHA-256 of the bytes, 16 hex digits). */
interface Asset { body: Uint8Array; type: string; etag: string }

/**
 * The console's Hono routes ({@link CONSOLE_FILES}), files read once from `dir` (default
 * {@link consoleDir}). Each answer carries the CSP and the other hono/secure-headers defaults,
 * `Cache-Control: no-cache` and an ETag (a matching `If-None-Match` gets 304). Without the files
 * (a package built without `console/`), `/` answers 404 `{error, code: "not_found"}`.
 * @throws Error naming the file when a console file in `dir` cannot be read
 */
export function consoleRoutes (dir: string | null = consoleDir()): Hono {
  const assets = new Map<string, Asset>()
  if (dir !== null) {
    for (const [route, { file, type }] of Object.entries(CONSOLE_FILES)) {
      const body = fs.readFileSync(dir + file)
      assets.set(route, { body, type, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"` })
    }
  }
  const app = new Hono()
  const headers = secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'none'"], scriptSrc: ["'self'"], styleSrc: ["'self'"], imgSrc: ["'self'", 'data:'], connectSrc: ["'self'"],
      baseUri: ["'none'"], formAction: ["'none'"], frameAncestors: ["'none'"],
    },
    referrerPolicy: 'no-referrer',
    xFrameOptions: 'DENY',
    strictTransportSecurity: false, // plain HTTP: a browser ignores it there anyway
    crossOriginEmbedderPolicy: 'require-corp',
  })
  for (const route of Object.keys(CONSOLE_FILES)) {
    app.get(route, headers, (c) => {
      const a = assets.get(route)
      if (a === undefined) return c.json({ error: 'this igord package has no console files (console/index.html)', code: 'NOT_FOUND' }, 404)
      c.header('ETag', a.etag)
      c.header('Cache-Control', 'no-cache')
      if (c.req.header('if-none-match') === a.etag) return c.body(null, 304)
      return c.body(a.body as Uint8Array<ArrayBuffer>, 200, { 'content-type': a.type })
    })
  }
  return app
}
