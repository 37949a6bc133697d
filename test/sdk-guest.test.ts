/**
 * The guest side of the inbox, timer and http host functions (docs/ABI.md "inbox", "timer"): the
 * AssemblyScript SDK (`agents-as/sdk/igor.ts`), the C header (`agents-c/include/igor.h`) and the
 * example agents echo, watcher (AS and C) and poster, run against a small mock of the `igor`
 * module written from the ABI text — not igord's host, so the layout and signatures are checked
 * against the contract itself. Needs `make agents`.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const ROOT = join(import.meta.dirname, '..')
const T0 = 1_700_000_000_000_000_000n

/** One inbox entry as the host holds it (spec8 "Message"; fund never reaches the agent). */
interface Msg { kind: 1 | 2 | 3; status?: number; req?: number; from: string; headers?: string; body?: string | Uint8Array }

/** An http_request call as the agent made it. */
interface Req { method: string; url: string; headers: string; body: string }

/** The capability that grants each igor import (docs/ABI.md "Capabilities and what they grant"). */
const GRANT: Record<string, string> = {
  clock_now: 'clock', rand_bytes: 'rand', log_emit: 'log', wallet_balance: 'wallet', agent_did: 'identity',
  agent_sign: 'identity', migrate_request: 'migrate', inbox_next: 'inbox', sleep_until: 'timer', http_request: 'http',
}

/** The wasm signature of each new import, as `(params) -> results`. */
const SIGNATURE: Record<string, string> = {
  inbox_next: '(i32,i32)->(i32)',
  sleep_until: '(i64)->(i32)',
  http_request: '(i32,i32,i32,i32,i32,i32,i32,i32)->(i32)',
  clock_now: '()->(i64)',
  log_emit: '(i32,i32)->()',
}

function wasmFile (lang: 'as' | 'c', name: string): string {
  const file = join(ROOT, `agents-${lang}`, 'build', `${name}.wasm`)
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`make agents\` first`)
  return file
}

/**
 * The signatures of a module's function imports, read from its type and import sections
 * (name → `(params)->(results)`), so a wrong C or AS declaration is caught here.
 */
function importSignatures (wasm: Uint8Array): Map<string, string> {
  let p = 8
  const u = (): number => { let r = 0; let s = 0; let b: number; do { b = wasm[p++]; r |= (b & 0x7f) << s; s += 7 } while (b & 0x80); return r >>> 0 }
  const vt: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64' }
  const types: string[] = []
  const out = new Map<string, string>()
  while (p < wasm.length) {
    const id = wasm[p++]; const size = u(); const end = p + size
    if (id === 1) {
      for (let n = u(); n > 0; n--) {
        p++ // 0x60
        const params = Array.from({ length: u() }, () => vt[wasm[p++]])
        const results = Array.from({ length: u() }, () => vt[wasm[p++]])
        types.push(`(${params.join(',')})->(${results.join(',')})`)
      }
    } else if (id === 2) {
      const str = (): string => { const l = u(); const s = Buffer.from(wasm.subarray(p, p + l)).toString('utf8'); p += l; return s }
      for (let n = u(); n > 0; n--) {
        const mod = str(); const name = str(); const kind = wasm[p++]
        if (kind !== 0) throw new Error(`${mod}.${name}: not a function import`)
        out.set(`${mod}.${name}`, types[u()])
      }
    }
    p = end
  }
  return out
}

/** A mock `igor` host holding an inbox, the sleep asked for and the requests issued. */
class MockHost {
  inbox: Msg[] = []
  seq = 0
  now = T0
  lines: string[] = []
  requests: Req[] = []
  /** The `sleep_until` argument of the last tick (null: none called). */
  sleep: bigint | null = null
  /** Result of the next http_request calls (a negative code), or null to issue them. */
  refuse: number | null = null
  /** inbox_next calls answered with −needed (the message did not fit). */
  peeks = 0
  consumed: Msg[] = []
  memory: WebAssembly.Memory | null = null
  exports: Record<string, () => number> = {}

  readonly file: string

  constructor (file: string) {
    this.file = file
    const wasm = readFileSync(file)
    const mod = new WebAssembly.Module(wasm)
    const mem = (): WebAssembly.Memory => this.memory!
    const bytes = (ptr: number, len: number): Uint8Array => {
      ptr >>>= 0; len >>>= 0
      if (ptr + len > mem().buffer.byteLength) throw new Error(`out of bounds ${ptr}+${len}`)
      return new Uint8Array(mem().buffer, ptr, len)
    }
    const text = (ptr: number, len: number): string => Buffer.from(bytes(ptr, len)).toString('utf8')
    const igor = {
      clock_now: (): bigint => this.now,
      log_emit: (ptr: number, len: number): void => { this.lines.push(text(ptr, len)) },
      inbox_next: (ptr: number, cap: number): number => {
        const m = this.inbox[0]
        if (m === undefined) return 0
        const layout = this.layout(m)
        if (layout.length > cap >>> 0) { this.peeks++; return -layout.length }
        bytes(ptr, layout.length).set(layout)
        this.consumed.push(this.inbox.shift()!)
        return layout.length
      },
      sleep_until: (at: bigint): number => {
        if (at < 0n) return -3
        this.sleep = at
        return 0
      },
      http_request: (mp: number, ml: number, up: number, ul: number, hp: number, hl: number, bp: number, bl: number): number => {
        const r = { method: text(mp, ml), url: text(up, ul), headers: text(hp, hl), body: text(bp, bl) }
        if (this.refuse !== null) return this.refuse
        this.requests.push(r)
        return this.requests.length
      },
    }
    const env = { abort: (): never => { throw new Error('abort') } }
    const imports: WebAssembly.Imports = { igor }
    if (WebAssembly.Module.imports(mod).some((i) => i.module === 'env')) imports.env = env
    const inst = new WebAssembly.Instance(mod, imports)
    this.memory = inst.exports.memory as WebAssembly.Memory
    this.exports = inst.exports as Record<string, () => number>
    this.exports._initialize()
    if (typeof this.exports.agent_init === 'function') this.exports.agent_init()
  }

  /** The docs/ABI.md layout of `m`, assigning its time; seq is assigned at send. */
  layout (m: Msg & { seq?: number; time?: bigint }): Uint8Array {
    const enc = (s: string | Uint8Array | undefined): Uint8Array => typeof s === 'string' ? Buffer.from(s, 'utf8') : (s ?? new Uint8Array(0))
    const from = enc(m.from); const headers = enc(m.headers); const body = enc(m.body)
    const out = new Uint8Array(40 + from.length + headers.length + body.length)
    const v = new DataView(out.buffer)
    v.setUint32(0, m.kind, true)
    v.setInt32(4, m.status ?? 0, true)
    v.setUint32(8, m.req ?? 0, true)
    v.setUint32(12, from.length, true)
    v.setBigUint64(16, BigInt(m.seq!), true)
    v.setBigUint64(24, m.time!, true)
    v.setUint32(32, headers.length, true)
    v.setUint32(36, body.length, true)
    out.set(from, 40); out.set(headers, 40 + from.length); out.set(body, 40 + from.length + headers.length)
    return out
  }

  send (m: Msg): void { this.inbox.push({ ...m, seq: ++this.seq, time: this.now } as Msg) }
  outcome (req: number, status: number, body = '', headers = ''): void { this.send({ kind: 2, req, status, from: 'http', body, headers }) }
  timer (): void { this.send({ kind: 3, from: 'timer' }) }

  /** Runs one tick; returns the new log lines. */
  tick (): string[] {
    const before = this.lines.length
    this.sleep = null
    assert.is(this.exports.agent_tick(), 0, 'agent_tick returns IDLE')
    return this.lines.slice(before)
  }
}

const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'

test('the new agents import exactly what their manifests grant, with the ABI signatures; old agents import nothing new', () => {
  const cases: Array<['as' | 'c', string, string[]]> = [
    ['as', 'echo', ['inbox', 'log', 'timer']],
    ['c', 'echo', ['inbox', 'log', 'timer']],
    ['as', 'watcher', ['clock', 'http', 'inbox', 'log', 'timer']],
    ['c', 'watcher', ['clock', 'http', 'inbox', 'log', 'timer']],
    ['as', 'poster', ['http', 'inbox', 'log', 'timer']],
    ['as', 'heartbeat', ['clock', 'log']],
  ]
  for (const [lang, name, want] of cases) {
    const file = wasmFile(lang, name)
    const sigs = importSignatures(readFileSync(file))
    const caps = new Set<string>()
    for (const [imp, sig] of sigs) {
      if (imp === 'env.abort') continue
      assert.ok(imp.startsWith('igor.'), `${file}: unexpected import ${imp}`)
      const fn = imp.slice(5)
      caps.add(GRANT[fn])
      if (SIGNATURE[fn] !== undefined) assert.is(sig, SIGNATURE[fn], `${file}: ${imp} signature`)
    }
    assert.equal([...caps].sort(), want, `${file}: capabilities its imports need`)
    const manifest = JSON.parse(readFileSync(file.replace(/\.wasm$/, '.manifest.json'), 'utf8'))
    assert.equal(Object.keys(manifest.capabilities).sort(), want, `${file}: manifest grants exactly them`)
    if (want.includes('http')) assert.equal(manifest.http, { allow: ['127.0.0.1'] }, `${file}: http.allow`)
  }
})

for (const lang of ['as', 'c'] as const) {
  test(`echo (${lang}): every pending message in one tick, a count that goes on, a big message after a retry, sleep_until(0)`, () => {
    const h = new MockHost(wasmFile(lang, 'echo'))
    assert.equal(h.tick(), [])
    assert.is(h.sleep, 0n, 'waits for a message')
    h.send({ kind: 1, from: PEER, body: 'hello' })
    h.send({ kind: 1, from: 'did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp', body: 'grüße ✓' })
    const big = 'x'.repeat(10_000)
    h.send({ kind: 1, from: PEER, body: big })
    assert.equal(h.tick(), [
      `echo #1 from ${PEER}: hello (1 so far)`,
      'echo #2 from did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp: grüße ✓ (2 so far)',
      `echo #3 from ${PEER}: ${big} (3 so far)`,
    ])
    assert.is(h.peeks, 1, 'the 10 kB message did not fit the first buffer and was retried')
    assert.is(h.inbox.length, 0)
    assert.is(h.sleep, 0n)
    h.send({ kind: 1, from: PEER, body: '' })
    assert.equal(h.tick(), [`echo #4 from ${PEER}:  (4 so far)`])
    h.send({ kind: 3, from: 'timer' })
    h.send({ kind: 1, from: PEER, body: 'again' })
    assert.equal(h.tick(), ['echo #5: ignoring a message of kind 3', `echo #6 from ${PEER}: again (5 so far)`])
  })

  test(`watcher (${lang}): URL from the first message, one GET at a time, first value, change, error, 1 s between polls`, () => {
    const h = new MockHost(wasmFile(lang, 'watcher'))
    const url = 'http://127.0.0.1:4567/price'
    assert.equal(h.tick(), [])
    assert.is(h.sleep, 0n, 'no URL yet: waits for a message')
    assert.is(h.requests.length, 0)
    h.send({ kind: 1, from: PEER, body: ` ${url}\n` })
    assert.equal(h.tick(), [`watcher: watching ${url}`])
    assert.equal(h.requests, [{ method: 'GET', url, headers: '', body: '' }])
    assert.is(h.sleep, 0n, 'waits for the outcome')
    h.send({ kind: 1, from: PEER, body: 'http://127.0.0.1:1/other' })
    assert.equal(h.tick(), [`watcher: already watching ${url}, message #2 ignored`])
    assert.is(h.requests.length, 1, 'never two requests pending')
    assert.is(h.sleep, 0n)

    h.now += 5_000_000n
    h.outcome(1, 200, '{"value": 42, "unit": "EUR"}', 'content-type: application/json\r\n')
    assert.equal(h.tick(), ['watcher: first value 42'])
    assert.is(h.sleep, h.now + 1_000_000_000n, 'polls again in 1 s')
    assert.is(h.requests.length, 1)

    h.now += 300_000_000n // a stray message before the poll is due: no request, same wake time
    h.send({ kind: 1, from: PEER, body: 'hi' })
    h.tick()
    assert.is(h.requests.length, 1)
    assert.is(h.sleep, h.now - 300_000_000n + 1_000_000_000n)

    h.now += 700_000_000n
    h.timer()
    assert.equal(h.tick(), [])
    assert.is(h.requests.length, 2)
    h.outcome(2, 200, '{"value":42}')
    assert.equal(h.tick(), [], 'unchanged: nothing logged')
    h.timer(); h.tick()
    h.outcome(3, 200, '{"value":43.5}')
    assert.equal(h.tick(), [`watcher: ${url} changed: 42 -> 43.5`])
    h.timer(); h.tick()
    h.outcome(4, -11)
    assert.equal(h.tick(), [`watcher: ${url} error E_HTTP_CONNECT`])
    h.timer(); h.tick()
    h.outcome(5, 503, 'busy')
    assert.equal(h.tick(), [`watcher: ${url} status 503`])
    h.timer(); h.tick()
    h.outcome(99, 200, '{"value":1}')
    assert.equal(h.tick(), ['watcher: outcome of unknown request 99 ignored'])
    h.outcome(6, 200, 'plain text  \n')
    assert.equal(h.tick(), [`watcher: ${url} changed: 43.5 -> plain text`])
    assert.equal(h.requests.map((r) => r.method + ' ' + r.url), Array(6).fill(`GET ${url}`))

    h.refuse = -5 // the host refuses the URL: the watcher gives it up and waits for another
    h.timer()
    assert.equal(h.tick(), [`watcher: ${url} error E_NOT_ALLOWED`, 'watcher: send another URL'])
    assert.is(h.sleep, 0n)
    h.refuse = null
    h.send({ kind: 1, from: PEER, body: 'http://127.0.0.1:4568/v' })
    assert.equal(h.tick(), ['watcher: watching http://127.0.0.1:4568/v'])
    assert.is(h.requests.at(-1)!.url, 'http://127.0.0.1:4568/v')
  })
}

test('poster: one POST per message with {"n":<count>} and a JSON content type; logs status, errors and in-doubt', () => {
  const h = new MockHost(wasmFile('as', 'poster'))
  const url = 'http://127.0.0.1:4567/hook'
  h.send({ kind: 1, from: PEER, body: url })
  assert.equal(h.tick(), [`poster: POST ${url} {"n":1} → request 1`])
  assert.equal(h.requests, [{ method: 'POST', url, headers: 'Content-Type: application/json\r\n', body: '{"n":1}' }])
  assert.is(h.sleep, 0n)
  h.send({ kind: 1, from: PEER, body: url })
  h.outcome(1, 201, 'created')
  assert.equal(h.tick(), [`poster: POST ${url} {"n":2} → request 2`, 'poster: request 1 status 201'])
  h.outcome(2, -14)
  assert.equal(h.tick(), ['poster: request 2 error E_HTTP_IN_DOUBT'])
  h.refuse = -7
  h.send({ kind: 1, from: PEER, body: url })
  assert.equal(h.tick(), [`poster: POST ${url} {"n":3} refused: E_TOO_MANY`])
})

test.run()
