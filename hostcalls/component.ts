/**
 * The `igor:agent@1.0.0` capability interfaces (wit/agent.wit, docs/ABI.md "Components") as host
 * functions for jco's instantiation-mode glue, and the load-time check of a component's imports
 * against its manifest.
 *
 * Each function is the typed twin of a core `igor.*` host function (hostcalls/igor.ts), through the
 * same typed half (`hostOps`) where there is one: the same checks and refusals, the same per-tick limits, the same event names and payloads, so replay,
 * `igord verify --replay` and migration treat a component agent like a core one. jco's glue lifts
 * and lowers the values (strings, lists, records, results) through the guest's memory and
 * `cabi_realloc`; a refusal is returned as `{ tag: 'err', val: <error-code> }`. A host trap is an
 * `Error` (HostTrap, TickLimitTrap): the glue rethrows Error instances, so it traps the tick.
 */
import { ModuleError } from '../checkpoint/errors.ts'
import { encodeMessage, MAX_DID_BYTES } from '../checkpoint/io.ts'
import type { HostContext } from './igor.ts'
import { E_TOO_LONG, hostOps, MAX_HTTP_PART_BYTES, MAX_LOG_BYTES, MAX_RAND_BYTES, MAX_TARGET_BYTES, SIGNATURE_BYTES } from './igor.ts'
import type { Manifest } from './manifest.ts'

/** The package every igor interface belongs to, and the major version igord serves. */
export const IGOR_PACKAGE = 'igor:agent'
/** WIT package version of wit/agent.wit. */
export const IGOR_WIT_VERSION = '1.0.0'

/**
 * Each capability interface of `igor:agent` and the manifest capability that grants it
 * (docs/ABI.md "Components"); `types` holds types only and is always granted.
 */
export const COMPONENT_INTERFACES: Readonly<Record<string, string | null>> = {
  types: null,
  clock: 'clock',
  random: 'rand',
  log: 'log',
  wallet: 'wallet',
  identity: 'identity',
  migrate: 'migrate',
  inbox: 'inbox',
  timer: 'timer',
  http: 'http',
  message: 'message',
}

/** WIT `error-code` case names by core result code. */
const ERROR_CODES: Readonly<Record<number, string>> = { [-2]: 'too-long', [-3]: 'bad-target', [-5]: 'not-allowed', [-6]: 'bad-request', [-7]: 'too-many' }

/** The WIT `error-code` case of a core result code; throws for a code the WIT has no case for (a host bug). */
function errorCase (code: number): { tag: 'err'; val: string } {
  const val = ERROR_CODES[code]
  if (val === undefined) throw new Error(`internal error: result code ${code} has no WIT error-code`)
  return { tag: 'err', val }
}

/** A WIT `result<T, error-code>` success. */
function ok<T> (val: T): { tag: 'ok'; val: T } { return { tag: 'ok', val } }

/**
 * The interface name and version of a component import, from its name as a core module of the
 * component imports it (`igor:agent/clock@1.0.0`) or as jco's glue keys it (`igor:agent/clock`).
 * Null for anything that is not `<namespace>:<package>/<interface>[@version]`.
 */
export function parseImportName (name: string): { pkg: string; iface: string; version: string | null } | null {
  const m = /^([a-z][a-z0-9-]*:[a-z][a-z0-9-]*)\/([a-z][a-z0-9-]*)(?:@([0-9A-Za-z.+-]+))?$/.exec(name)
  return m === null ? null : { pkg: m[1], iface: m[2], version: m[3] ?? null }
}

/**
 * Checks a component's imported interfaces against its manifest, before anything is instantiated.
 * An `igor:agent/<iface>` import needs the capability of {@link COMPONENT_INTERFACES} and a 1.x
 * version; `wasi:*` interfaces need capability `wasi` and a host that serves them (`wasiServed`);
 * anything else is refused.
 * @param imports the component's imports, versioned when known (`igor:agent/clock@1.0.0`)
 * @param wasiServed the `wasi:` interfaces (unversioned, `wasi:clocks/wall-clock`) igord serves
 * @throws ModuleError, one line naming every offending import, e.g. `x.wasm: component imports not
 *   granted by the manifest: igor:agent/random@1.0.0 needs capability "rand"; acme:db/query: no capability grants it`
 */
export function checkComponentImports (imports: readonly string[], manifest: Manifest, file: string, wasiServed: ReadonlySet<string> = new Set()): void {
  const problems: string[] = []
  for (const name of imports) {
    const p = parseImportName(name)
    if (p === null) { problems.push(`${name}: not an interface import (instance imports only)`); continue }
    if (p.pkg === IGOR_PACKAGE) {
      if (!(p.iface in COMPONENT_INTERFACES)) { problems.push(`${name}: igor:agent has no interface "${p.iface}"`); continue }
      if (p.version !== null && !p.version.startsWith('1.')) { problems.push(`${name}: igord serves igor:agent@${IGOR_WIT_VERSION}, not version ${p.version}`); continue }
      const cap = COMPONENT_INTERFACES[p.iface]
      if (cap !== null && !manifest.capabilities.has(cap)) problems.push(`${name} needs capability "${cap}"`)
      continue
    }
    if (p.pkg.startsWith('wasi:')) {
      if (!manifest.capabilities.has('wasi')) problems.push(`${name} needs capability "wasi"`)
      else if (!wasiServed.has(`${p.pkg}/${p.iface}`)) problems.push(`${name}: igord's WASI 0.2 host does not serve it`)
      continue
    }
    problems.push(`${name}: no capability grants it`)
  }
  if (problems.length > 0) throw new ModuleError(`${file}: component imports not granted by the manifest: ${problems.join('; ')}`)
}

/** One inbox message as WIT `inbox.message`. */
interface WitMessage { kind: string; status: number; req: number; seq: bigint; time: bigint; from: string; headers: string; body: Uint8Array }

/**
 * The host side of every `igor:agent` interface the manifest grants, keyed as jco's glue asks for
 * them (`igor:agent/clock` → `{ now }`, camel-cased function names). Each records exactly the
 * events of its core counterpart in hostcalls/igor.ts (see there and docs/ABI.md):
 * - clock `now() -> s64`: `clock_now`.
 * - random `getBytes(len) -> result<list<u8>, error-code>`: `len` 0 → empty, nothing recorded;
 *   over 64 MiB → `too-long`; else `rand_bytes` (the bytes).
 * - log `emit(line)`: empty or over 1 MiB (UTF-8) ignored; else `log_emit` (the text), emitted.
 * - wallet `balance() -> s64`: `wallet_balance`.
 * - identity `did() -> string`: `agent_did`; `sign(message) -> list<u8>`: `agent_sign` (64 bytes).
 * - migrate `request(target?)`: `too-long` over 1024 bytes, `bad-target` not a multiaddr (nothing
 *   recorded); else `migrate_request` (text, empty for none).
 * - inbox `next() -> option<message>`: `inbox` (the message's CBOR, or 0 when empty).
 * - timer `sleepUntil(at)`: negative → `bad-target`, nothing recorded; else `sleep_until`.
 * - http `request(method, url, headers, body) -> result<u32, error-code>`: `http_request`.
 * - message `send(to, body) -> result<u32, error-code>`: `message_send`.
 * @throws nothing itself; the functions throw TickLimitTrap (an Error) when a call would cross a
 *   per-tick limit, which traps the tick
 */
export function componentImports (manifest: Manifest, ctx: HostContext): Record<string, Record<string, (...args: never[]) => unknown>> {
  const has = (cap: string): boolean => manifest.capabilities.has(cap)
  const out: Record<string, Record<string, (...args: never[]) => unknown>> = {}
  const key = (iface: string): string => `${IGOR_PACKAGE}/${iface}`
  // a core result code as the WIT result: a value when ≥ 0, else its error-code
  const result = <T>(r: number, val: T): { tag: 'ok'; val: T } | { tag: 'err'; val: string } => r < 0 ? errorCase(r) : ok(val)
  out[key('types')] = {}
  if (has('clock')) {
    out[key('clock')] = {
      now: (): bigint => hostOps.recordI64(ctx, 'clock_now', () => ctx.now()),
    }
  }
  if (has('rand')) {
    out[key('random')] = {
      getBytes: (len: number) => {
        len >>>= 0
        if (len === 0) return ok(new Uint8Array(0))
        if (len > MAX_RAND_BYTES) return errorCase(E_TOO_LONG)
        return ok(hostOps.randomBytes(ctx, len))
      },
    }
  }
  if (has('log')) {
    out[key('log')] = {
      emit: (line: string): void => {
        const n = Buffer.byteLength(line, 'utf8')
        if (n === 0 || n > MAX_LOG_BYTES) return
        ctx.log.admit('log_emit', n)
        ctx.log.record('log_emit', line)
        ctx.emit(line)
      },
    }
  }
  if (has('wallet')) {
    out[key('wallet')] = {
      balance: (): bigint => hostOps.recordI64(ctx, 'wallet_balance', () => ctx.budget()),
    }
  }
  if (has('identity')) {
    out[key('identity')] = {
      did: (): string => {
        ctx.log.record('agent_did', ctx.did)
        return ctx.did
      },
      sign: (message: Uint8Array): Uint8Array => {
        ctx.log.admit('agent_sign', SIGNATURE_BYTES + message.length)
        return hostOps.sign(ctx, message.slice())
      },
    }
  }
  if (has('migrate')) {
    out[key('migrate')] = {
      request: (target: string | null | undefined) => {
        const t = target ?? ''
        if (Buffer.byteLength(t, 'utf8') > MAX_TARGET_BYTES) return errorCase(E_TOO_LONG)
        return result(hostOps.migrate(ctx, t), undefined)
      },
    }
  }
  if (has('inbox')) {
    out[key('inbox')] = {
      next: (): WitMessage | undefined => {
        const m = ctx.inboxPeek?.() ?? null
        if (m === null) {
          ctx.log.record('inbox', 0n)
          return undefined
        }
        ctx.log.record('inbox', encodeMessage(m))
        ctx.inboxTake?.(m)
        return { kind: m.kind, status: m.status ?? 0, req: m.req ?? 0, seq: BigInt(m.seq), time: m.time, from: m.from, headers: m.headers ?? '', body: m.body }
      },
    }
  }
  if (has('timer')) {
    out[key('timer')] = {
      sleepUntil: (at: bigint) => result(hostOps.sleepUntil(ctx, at), undefined),
    }
  }
  if (has('http')) {
    out[key('http')] = {
      request: (method: string, url: string, headers: string, body: Uint8Array) => {
        const sizes = [Buffer.byteLength(method), Buffer.byteLength(url), Buffer.byteLength(headers), body.length]
        if (sizes.some((l) => l > MAX_HTTP_PART_BYTES)) return errorCase(E_TOO_LONG)
        ctx.log.admit('http_request', sizes.reduce((n, l) => n + l, 0))
        const id = hostOps.httpRequest(ctx, { method, url, headers, body: body.slice() })
        return result(id, id)
      },
    }
  }
  if (has('message')) {
    out[key('message')] = {
      send: (to: string, body: Uint8Array) => {
        const dl = Buffer.byteLength(to)
        if (dl > MAX_DID_BYTES || body.length > MAX_HTTP_PART_BYTES) return errorCase(E_TOO_LONG)
        ctx.log.admit('message_send', dl + body.length)
        const n = hostOps.messageSend(ctx, to, body.slice())
        return result(n, n)
      },
    }
  }
  return out
}
