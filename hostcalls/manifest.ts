/**
 * The capability manifest: which host functions an agent may import and the limits it runs under
 * (DESIGN §4, §6). JSON, compatible with Igor's `*.manifest.json` sidecar files, with one
 * shorthand: `"capabilities": ["clock", "log"]`.
 *
 * Deny by default: an agent gets exactly the host functions of the capabilities its manifest names,
 * nothing else (the import check is in `igor.ts`).
 */
import { ManifestError } from '../checkpoint/errors.ts'
import { MAX_OUTBOX } from '../checkpoint/io.ts'
import { DEFAULT_TICK_LIMITS, TICK_LIMIT_FIELDS } from './eventlog.ts'
import type { TickLimits } from './eventlog.ts'
import { WASI_FUNCTIONS } from './wasi.ts'

export { DEFAULT_TICK_LIMITS, TICK_LIMIT_FIELDS }
export type { TickLimits }

/**
 * The known capabilities and the imports each one grants, as capability → import module → function
 * names. `env.abort` is not listed: every agent gets it (AssemblyScript imports it).
 * `wasi` grants every `wasi_snapshot_preview1` function (igord's own subset, `wasi.ts`).
 * `migrate` grants `migrate_request`, by which an agent asks its node to move it (agent-initiated
 * migration). `http` grants `http_request` (and needs the manifest's `http` section), `inbox`
 * grants `inbox_next`, `timer` grants `sleep_until`, `message` grants `message_send` (docs/ABI.md). Later capabilities extend this
 * table the same way.
 */
export const CAPABILITIES: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>> = {
  clock: { igor: ['clock_now'] },
  rand: { igor: ['rand_bytes'], env: ['seed'] },
  log: { igor: ['log_emit'] },
  wallet: { igor: ['wallet_balance'] },
  identity: { igor: ['agent_did', 'agent_sign'] },
  wasi: { wasi_snapshot_preview1: WASI_FUNCTIONS },
  migrate: { igor: ['migrate_request'] },
  http: { igor: ['http_request'] },
  inbox: { igor: ['inbox_next'] },
  timer: { igor: ['sleep_until'] },
  message: { igor: ['message_send'] },
}

/** Imports every agent gets, whatever its manifest says, as `module.name`. */
export const ALWAYS_GRANTED: readonly string[] = ['env.abort']

/** Default `resource_limits.max_memory_bytes`: 64 MiB (1024 pages of 64 KiB). */
export const DEFAULT_MAX_MEMORY_BYTES = 64 * 1024 * 1024
/** Largest accepted `max_memory_bytes`: 4 GiB, the wasm32 address space (65536 pages). */
export const MAX_MEMORY_BYTES_LIMIT = 4 * 1024 * 1024 * 1024
/** Default `resource_limits.max_fuel_per_tick`, in fuel units: 1e9. */
export const DEFAULT_MAX_FUEL_PER_TICK = 1_000_000_000n
/** Default `resource_limits.max_consecutive_failures`: the agent pauses after this many failed ticks in a row. */
export const DEFAULT_MAX_FAILURES = 3
/** Largest manifest file accepted, in bytes (1 MiB); a manifest is a few hundred bytes. */
export const MAX_MANIFEST_BYTES = 1024 * 1024

/**
 * Defaults and maxima of the manifest's `http` section, as `field → [default, maximum]`; every
 * value must be an integer from 1 to its maximum. `timeout_ms`: milliseconds for the whole
 * exchange (10 s, at most 2 min); `max_response_bytes`: response headers text plus body (1 MiB, at
 * most 16 MiB); `max_request_bytes`: URL + headers + body of one request (64 KiB, at most 1 MiB);
 * `max_pending`: requests issued and without an outcome yet (8, at most 64).
 */
export const HTTP_LIMITS = {
  timeout_ms: [10_000, 120_000],
  max_response_bytes: [1 << 20, 16 << 20],
  max_request_bytes: [64 << 10, 1 << 20],
  max_pending: [8, 64],
} as const satisfies Record<string, readonly [number, number]>

/**
 * Defaults and maxima of the inbox limits in `resource_limits`, as `field → [default, maximum]`
 * (integers ≥ 1): `max_inbox_messages`, messages waiting in the inbox (256, at most 65536);
 * `max_message_bytes`, the body of one message sent to or by the agent (64 KiB, at most 1 MiB);
 * `max_outbox_messages`, messages the agent sent and not yet acknowledged (64, at most 64:
 * {@link MAX_OUTBOX}; `message_send` returns E_TOO_MANY beyond).
 */
export const INBOX_LIMITS = {
  max_inbox_messages: [256, 65_536],
  max_message_bytes: [64 << 10, 1 << 20],
  max_outbox_messages: [MAX_OUTBOX, MAX_OUTBOX],
} as const satisfies Record<string, readonly [number, number]>

/**
 * One entry of `http.allow`: a host, compared with a URL's hostname in the WHATWG URL parser's
 * form (lower case, punycode, IPv4 normalized, IPv6 in brackets: `[::1]`), and a port or null for
 * any port.
 */
export interface HttpAllow {
  host: string
  port: number | null
}

/** The manifest's `http` section, validated, with its defaults filled in (see {@link HTTP_LIMITS}). */
export interface HttpPolicy {
  /** Hosts the agent may send requests to (never empty). */
  allow: readonly HttpAllow[]
  /** Time for a whole exchange (every redirect hop and the body), ms. */
  timeoutMs: number
  /** Largest response, bytes: its headers text (`name: value\r\n` lines) plus its body. */
  maxResponseBytes: number
  /** Largest request, bytes: URL + headers text + body. */
  maxRequestBytes: number
  /** Most requests issued and without an outcome at once. */
  maxPending: number
}

/** One granted capability: its version (an integer ≥ 1) and its free-form options. */
export interface CapabilityGrant {
  version: number
  options: Record<string, unknown>
}

/** A parsed, validated manifest. Produced only by {@link parseManifest}. */
export interface Manifest {
  /** Granted capabilities by name (each a key of {@link CAPABILITIES}). */
  capabilities: Map<string, CapabilityGrant>
  /** Upper bound of the agent's linear memory, bytes, a multiple of 65536 (default 64 MiB). */
  maxMemoryBytes: number
  /** Fuel one tick may burn before it traps (default 1e9). */
  maxFuelPerTick: bigint
  /** Consecutive failed ticks after which the agent pauses (default 3). */
  maxFailures: number
  /**
   * What one tick may record (events, log bytes, random bytes, event bytes): the
   * `resource_limits.max_*_per_tick` fields, each defaulting to {@link DEFAULT_TICK_LIMITS}.
   */
  tickLimits: TickLimits
  /** Igor's `migration_policy`: may the agent move, and the highest price (microcents/s, 0 = any) a target may ask. */
  migration: { enabled: boolean; maxPricePerSecond: number }
  /** The `http` section (null when absent; present exactly when the `http` capability is granted). */
  http: HttpPolicy | null
  /**
   * Inbox limits (`resource_limits.max_inbox_messages`, `max_message_bytes`,
   * `max_outbox_messages`, see {@link INBOX_LIMITS}): messages waiting at most, the largest message
   * body, bytes, and messages sent and not yet acknowledged at most.
   */
  inbox: { maxMessages: number; maxMessageBytes: number; maxOutbox: number }
  /** The manifest's bytes exactly as read: the checkpoint binds their CID. */
  raw: Uint8Array
}

const TOP_FIELDS = ['capabilities', 'resource_limits', 'migration_policy', 'http']
// Igor's max_cpu_millis / max_storage_bytes / preferred_regions are accepted (and unused) so its manifests load.
const LIMIT_FIELDS = ['max_memory_bytes', 'max_fuel_per_tick', 'max_consecutive_failures', ...Object.values(TICK_LIMIT_FIELDS), ...Object.keys(INBOX_LIMITS), 'max_cpu_millis', 'max_storage_bytes']
const POLICY_FIELDS = ['enabled', 'max_price_per_second', 'preferred_regions']
const GRANT_FIELDS = ['version', 'options']
const HTTP_FIELDS = ['allow', ...Object.keys(HTTP_LIMITS)]

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function describe (v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`
  if (typeof v === 'object') return 'an object'
  return `${typeof v} ${String(v)}`
}

/**
 * Parses and validates a capability manifest.
 *
 * Schema (every field optional; `{}` grants nothing):
 * ```json
 * { "capabilities": { "clock": { "version": 1, "options": {} }, "log": { "version": 1 } },
 *   "resource_limits": { "max_memory_bytes": 67108864, "max_fuel_per_tick": 1000000000,
 *                        "max_consecutive_failures": 3, "max_events_per_tick": 10000,
 *                        "max_log_bytes_per_tick": 1048576, "max_random_bytes_per_tick": 1048576,
 *                        "max_event_bytes_per_tick": 4194304 },
 *   "migration_policy": { "enabled": true, "max_price_per_second": 0 },
 *   "http": { "allow": ["127.0.0.1:8080", "api.example.com"], "timeout_ms": 10000,
 *             "max_response_bytes": 1048576, "max_request_bytes": 65536, "max_pending": 8 } }
 * ```
 * `capabilities` may also be an array of names. A capability's `version` defaults to 1.
 * `resource_limits` also takes `max_inbox_messages`, `max_message_bytes` and `max_outbox_messages` ({@link INBOX_LIMITS}).
 * The `http` section is required with the `http` capability and refused without it.
 * @param bytes the manifest file's bytes (UTF-8 JSON)
 * @param file the name used in error messages
 * @returns the manifest, with `raw` = `bytes`
 * @throws ManifestError (one line naming `file` and the field) when the bytes are not UTF-8 JSON,
 *   not an object, have an unknown field or capability, a version that is not an integer ≥ 1,
 *   `max_memory_bytes` that is not a positive multiple of 65536 up to 4 GiB, or a fuel, failure or
 *   per-tick limit that is not a positive integer, an inbox or `http` limit outside 1 … its maximum,
 *   a bad `http.allow` entry, or an `http` section and `http` capability without each other. (Whether a host accepts the limits asked is
 *   {@link checkWithinCaps}'s question.)
 */
export function parseManifest (bytes: Uint8Array, file: string): Manifest {
  const fail = (msg: string): never => { throw new ManifestError(`${file}: ${msg}`) }
  if (bytes.length > MAX_MANIFEST_BYTES) fail(`manifest is ${bytes.length} bytes, more than the limit of ${MAX_MANIFEST_BYTES}`)
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes)
  } catch {
    return fail('manifest is not valid UTF-8')
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (e) {
    const at = jsonErrorAt(text)
    if (at === null) return fail(`not valid JSON: ${(e as Error).message.replace(/\s+/g, ' ').slice(0, 200)}`)
    const before = text.slice(0, at.pos)
    const line = before.split('\n').length
    const col = at.pos - before.lastIndexOf('\n')
    return fail(`not valid JSON at line ${line}, column ${col} (position ${at.pos}): ${at.problem}`)
  }
  if (!isObject(doc)) return fail(`manifest must be a JSON object, got ${describe(doc)}`)
  for (const k of Object.keys(doc)) {
    if (!TOP_FIELDS.includes(k)) fail(`unknown field ${JSON.stringify(k)} (known: ${TOP_FIELDS.join(', ')})`)
  }

  const capabilities = parseCapabilities(doc.capabilities, fail)

  let maxMemoryBytes = DEFAULT_MAX_MEMORY_BYTES
  let maxFuelPerTick = DEFAULT_MAX_FUEL_PER_TICK
  let maxFailures = DEFAULT_MAX_FAILURES
  const tickLimits: TickLimits = { ...DEFAULT_TICK_LIMITS }
  const inbox = { maxMessages: INBOX_LIMITS.max_inbox_messages[0] as number, maxMessageBytes: INBOX_LIMITS.max_message_bytes[0] as number, maxOutbox: INBOX_LIMITS.max_outbox_messages[0] as number }
  const limits = doc.resource_limits
  if (limits !== undefined) {
    if (!isObject(limits)) fail(`resource_limits must be an object, got ${describe(limits)}`)
    const l = limits as Record<string, unknown>
    for (const k of Object.keys(l)) {
      if (!LIMIT_FIELDS.includes(k)) fail(`unknown field resource_limits.${k} (known: ${LIMIT_FIELDS.join(', ')})`)
    }
    if (l.max_memory_bytes !== undefined) {
      const v = l.max_memory_bytes
      if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v % 65536 !== 0 || v > MAX_MEMORY_BYTES_LIMIT) {
        fail(`resource_limits.max_memory_bytes must be a positive multiple of 65536 (64 KiB pages) up to ${MAX_MEMORY_BYTES_LIMIT} (4 GiB), got ${describe(v)}`)
      }
      maxMemoryBytes = v as number
    }
    if (l.max_fuel_per_tick !== undefined) {
      const v = l.max_fuel_per_tick
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
        fail(`resource_limits.max_fuel_per_tick must be a positive integer up to 2^53-1, got ${describe(v)}`)
      }
      maxFuelPerTick = BigInt(v as number)
    }
    if (l.max_consecutive_failures !== undefined) {
      const v = l.max_consecutive_failures
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
        fail(`resource_limits.max_consecutive_failures must be a positive integer, got ${describe(v)}`)
      }
      maxFailures = v as number
    }
    for (const k of Object.keys(TICK_LIMIT_FIELDS) as (keyof TickLimits)[]) {
      const field = TICK_LIMIT_FIELDS[k]
      const v = l[field]
      if (v === undefined) continue
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
        fail(`resource_limits.${field} must be a positive integer, got ${describe(v)}`)
      }
      tickLimits[k] = v as number
    }
    inbox.maxMessages = boundedInt(l, 'max_inbox_messages', INBOX_LIMITS.max_inbox_messages, 'resource_limits.', fail)
    inbox.maxMessageBytes = boundedInt(l, 'max_message_bytes', INBOX_LIMITS.max_message_bytes, 'resource_limits.', fail)
    inbox.maxOutbox = boundedInt(l, 'max_outbox_messages', INBOX_LIMITS.max_outbox_messages, 'resource_limits.', fail)
    for (const k of ['max_cpu_millis', 'max_storage_bytes']) {
      const v = l[k]
      if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)) {
        fail(`resource_limits.${k} must be a non-negative integer, got ${describe(v)}`)
      }
    }
  }

  const migration = { enabled: true, maxPricePerSecond: 0 }
  const policy = doc.migration_policy
  if (policy !== undefined) {
    if (!isObject(policy)) fail(`migration_policy must be an object, got ${describe(policy)}`)
    const p = policy as Record<string, unknown>
    for (const k of Object.keys(p)) {
      if (!POLICY_FIELDS.includes(k)) fail(`unknown field migration_policy.${k} (known: ${POLICY_FIELDS.join(', ')})`)
    }
    if (p.enabled !== undefined) {
      if (typeof p.enabled !== 'boolean') fail(`migration_policy.enabled must be true or false, got ${describe(p.enabled)}`)
      migration.enabled = p.enabled as boolean
    }
    if (p.max_price_per_second !== undefined) {
      const v = p.max_price_per_second
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
        fail(`migration_policy.max_price_per_second must be a non-negative integer (microcents per second, 0 = any), got ${describe(v)}`)
      }
      migration.maxPricePerSecond = v as number
    }
    const r = p.preferred_regions
    if (r !== undefined && (!Array.isArray(r) || r.some((x) => typeof x !== 'string'))) {
      fail(`migration_policy.preferred_regions must be an array of strings, got ${describe(r)}`)
    }
  }

  const http = parseHttp(doc.http, capabilities.has('http'), fail)
  // An inbox message is recorded whole when the agent reads it, and once more if its first buffer
  // was too small (`inbox_peek`): both must fit one tick's events, or reading it would trap forever.
  const fits = Math.floor(tickLimits.eventBytes / 2)
  if (capabilities.has('inbox') && inbox.maxMessageBytes > fits) fail(`resource_limits.max_message_bytes ${inbox.maxMessageBytes} is over half of max_event_bytes_per_tick (${tickLimits.eventBytes}): a message must fit a tick's events twice`)
  if (http !== null && http.maxResponseBytes > fits) fail(`http.max_response_bytes ${http.maxResponseBytes} is over half of resource_limits.max_event_bytes_per_tick (${tickLimits.eventBytes}): a response must fit a tick's events twice`)

  return { capabilities, maxMemoryBytes, maxFuelPerTick, maxFailures, tickLimits, migration, http, inbox, raw: bytes }
}

/** `obj[field]` as an integer from 1 to `max` (its default when absent), else a ManifestError naming `prefix + field`. */
function boundedInt (obj: Record<string, unknown>, field: string, [dflt, max]: readonly [number, number], prefix: string, fail: (m: string) => never): number {
  const v = obj[field]
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    fail(`${prefix}${field} must be an integer from 1 to ${max}, got ${describe(v)}`)
  }
  return v as number
}

/** Parses the `http` section; `granted` says whether the `http` capability is. */
function parseHttp (section: unknown, granted: boolean, fail: (m: string) => never): HttpPolicy | null {
  if (section === undefined) {
    if (granted) fail('capability "http" needs an "http" section with a non-empty allow list, e.g. "http": {"allow": ["api.example.com"]}')
    return null
  }
  if (!granted) fail('http: the "http" section needs capability "http" in capabilities')
  if (!isObject(section)) return fail(`http must be an object, got ${describe(section)}`)
  for (const k of Object.keys(section)) {
    if (!HTTP_FIELDS.includes(k)) fail(`unknown field http.${k} (known: ${HTTP_FIELDS.join(', ')})`)
  }
  const allow = section.allow
  if (allow === undefined) fail('http.allow is missing: capability "http" needs a non-empty array of "host" or "host:port" strings')
  if (!Array.isArray(allow) || allow.length === 0) {
    fail(`http.allow must be a non-empty array of "host" or "host:port" strings, got ${describe(allow)}`)
  }
  const entries = (allow as unknown[]).map((e, i) => parseAllowEntry(e, `http.allow[${i}]`, fail))
  return {
    allow: entries,
    timeoutMs: boundedInt(section, 'timeout_ms', HTTP_LIMITS.timeout_ms, 'http.', fail),
    maxResponseBytes: boundedInt(section, 'max_response_bytes', HTTP_LIMITS.max_response_bytes, 'http.', fail),
    maxRequestBytes: boundedInt(section, 'max_request_bytes', HTTP_LIMITS.max_request_bytes, 'http.', fail),
    maxPending: boundedInt(section, 'max_pending', HTTP_LIMITS.max_pending, 'http.', fail),
  }
}

/**
 * Parses one `http.allow` entry: `host`, `host:port`, `[v6]` or `[v6]:port`. The host is brought
 * to the form a URL's `hostname` has (WHATWG URL parser), so comparison is exact; the port is
 * 1 … 65535 in decimal.
 */
export function parseAllowEntry (entry: unknown, field: string, fail: (m: string) => never): HttpAllow {
  const bad = (why: string): never => fail(`${field} ${why}, got ${describe(entry)} (expected "host", "host:port" or "[v6addr]:port")`)
  if (typeof entry !== 'string') return bad('must be a string')
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/?#@[\]\\%]+)(?::([0-9]{1,5}))?$/.exec(entry)
  if (m === null) return bad('is not a host name or address with an optional port')
  let port: number | null = null
  if (m[2] !== undefined) {
    port = Number(m[2])
    if (port < 1 || port > 65535) bad('has a port outside 1 … 65535')
  }
  let host: string
  try {
    host = new URL(`http://${m[1]}/`).hostname
  } catch {
    return bad('is not a valid host')
  }
  if (host === '') bad('is not a valid host')
  return { host, port }
}

/**
 * A host's policy: the highest limits it lets an agent's manifest ask for. A node takes them from
 * its `--max-*` options (docs/PROTOCOL.md "Node caps"); a local `igord run` uses
 * {@link DEFAULT_NODE_CAPS}.
 */
export interface NodeCaps {
  /** Highest `max_fuel_per_tick`, fuel units. */
  maxFuelPerTick: bigint
  /** Highest `max_memory_bytes`, bytes. */
  maxMemoryBytes: number
  /** Highest `max_consecutive_failures`. */
  maxFailures: number
  /** Highest per-tick limits (`max_events_per_tick`, `max_log_bytes_per_tick`, …). */
  tickLimits: TickLimits
  /** Highest `max_inbox_messages` (messages waiting); absent: its maximum, 65536 ({@link INBOX_LIMITS}). */
  maxInboxMessages?: number
  /** Highest `max_message_bytes`, bytes; absent: its maximum, 1 MiB ({@link INBOX_LIMITS}). */
  maxMessageBytes?: number
}

/**
 * Default caps: fuel 10^10 per tick (10× the manifest default), memory 1 GiB, 100 consecutive
 * failures, and the per-tick limits at their defaults ({@link DEFAULT_TICK_LIMITS}: a manifest may
 * lower them; raising them needs a host that raises its caps).
 */
export const DEFAULT_NODE_CAPS: Readonly<NodeCaps> = Object.freeze({
  maxFuelPerTick: 10_000_000_000n,
  maxMemoryBytes: 1024 * 1024 * 1024,
  maxFailures: 100,
  tickLimits: DEFAULT_TICK_LIMITS,
})

/**
 * Checks a manifest's limits (as they will run: fields the manifest leaves out count at their
 * defaults) against a host's caps.
 * @returns null when every limit is within its cap, else one line naming the first field above
 *   its cap, the value asked and the cap, e.g.
 *   `resource_limits.max_fuel_per_tick asks 9007199254740991, above this host's cap of 100000000`
 */
export function checkWithinCaps (manifest: Manifest, caps: NodeCaps): string | null {
  const over = (field: string, asked: bigint | number, cap: bigint | number): string =>
    `resource_limits.${field} asks ${asked}, above this host's cap of ${cap}`
  if (manifest.maxFuelPerTick > caps.maxFuelPerTick) return over('max_fuel_per_tick', manifest.maxFuelPerTick, caps.maxFuelPerTick)
  if (manifest.maxMemoryBytes > caps.maxMemoryBytes) return over('max_memory_bytes', manifest.maxMemoryBytes, caps.maxMemoryBytes)
  if (manifest.maxFailures > caps.maxFailures) return over('max_consecutive_failures', manifest.maxFailures, caps.maxFailures)
  for (const k of Object.keys(TICK_LIMIT_FIELDS) as (keyof TickLimits)[]) {
    if (manifest.tickLimits[k] > caps.tickLimits[k]) return over(TICK_LIMIT_FIELDS[k], manifest.tickLimits[k], caps.tickLimits[k])
  }
  const inbox = manifest.inbox ?? { maxMessages: INBOX_LIMITS.max_inbox_messages[0], maxMessageBytes: INBOX_LIMITS.max_message_bytes[0], maxOutbox: INBOX_LIMITS.max_outbox_messages[0] }
  const maxInbox = caps.maxInboxMessages ?? INBOX_LIMITS.max_inbox_messages[1]
  const maxBytes = caps.maxMessageBytes ?? INBOX_LIMITS.max_message_bytes[1]
  if (inbox.maxMessages > maxInbox) return over('max_inbox_messages', inbox.maxMessages, maxInbox)
  if (inbox.maxMessageBytes > maxBytes) return over('max_message_bytes', inbox.maxMessageBytes, maxBytes)
  return null
}

function checkName (name: unknown, field: string, fail: (m: string) => never): string {
  if (typeof name !== 'string' || !Object.hasOwn(CAPABILITIES, name)) {
    fail(`${field}: unknown capability ${typeof name === 'string' ? JSON.stringify(name) : describe(name)} (known: ${Object.keys(CAPABILITIES).join(', ')})`)
  }
  return name as string
}

function parseCapabilities (caps: unknown, fail: (m: string) => never): Map<string, CapabilityGrant> {
  const out = new Map<string, CapabilityGrant>()
  if (caps === undefined) return out
  if (Array.isArray(caps)) {
    caps.forEach((name, i) => {
      const n = checkName(name, `capabilities[${i}]`, fail)
      if (out.has(n)) fail(`capabilities[${i}]: capability ${JSON.stringify(n)} is listed twice`)
      out.set(n, { version: 1, options: {} })
    })
    return out
  }
  if (!isObject(caps)) return fail(`capabilities must be an object or an array of names, got ${describe(caps)}`)
  for (const [name, grant] of Object.entries(caps)) {
    const field = `capabilities.${name}`
    checkName(name, 'capabilities', fail)
    if (!isObject(grant)) fail(`${field} must be an object like {"version": 1}, got ${describe(grant)}`)
    const g = grant as Record<string, unknown>
    for (const k of Object.keys(g)) {
      if (!GRANT_FIELDS.includes(k)) fail(`unknown field ${field}.${k} (known: ${GRANT_FIELDS.join(', ')})`)
    }
    const version = g.version === undefined ? 1 : g.version
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
      fail(`${field}.version must be an integer ≥ 1, got ${describe(version)}`)
    }
    const options = g.options === undefined ? {} : g.options
    if (!isObject(options)) fail(`${field}.options must be an object, got ${describe(options)}`)
    out.set(name, { version: version as number, options: options as Record<string, unknown> })
  }
  return out
}

/**
 * The imports a manifest grants, as a set of `module.name` strings (always including
 * {@link ALWAYS_GRANTED}).
 */
export function grantedImports (manifest: Manifest): Set<string> {
  const out = new Set(ALWAYS_GRANTED)
  for (const cap of manifest.capabilities.keys()) {
    for (const [mod, names] of Object.entries(CAPABILITIES[cap] ?? {})) {
      for (const n of names) out.add(`${mod}.${n}`)
    }
  }
  return out
}

/** The capability that grants the import `module.name`, or null when none does. */
export function capabilityFor (module: string, name: string): string | null {
  for (const [cap, mods] of Object.entries(CAPABILITIES)) {
    if (mods[module]?.includes(name)) return cap
  }
  return null
}

/**
 * Finds where a JSON text (RFC 8259) first goes wrong, for the error message (JSON.parse's own
 * message does not always give a position). Iterative, so nesting depth costs no stack.
 * @returns the character offset and what was expected there, or null if the text is valid
 */
function jsonErrorAt (text: string): { pos: number; problem: string } | null {
  const stack: string[] = [] // '{' or '['
  // what may come next: a value, a key (or '}' if first), ':', ',' or the container's end
  let expect: 'value' | 'value-or-]' | 'key' | 'key-or-}' | 'colon' | 'comma' = 'value'
  let i = 0
  const n = text.length
  const ws = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r'
  const found = () => i >= n ? 'the end of the file' : JSON.stringify(text[i])
  for (;;) {
    while (i < n && ws(text[i])) i++
    if (stack.length === 0 && expect === 'comma') {
      return i < n ? { pos: i, problem: `unexpected ${found()} after the JSON value` } : null
    }
    if (i >= n) return { pos: i, problem: `unexpected end of the file (expected ${expect === 'colon' ? "':'" : expect === 'comma' ? `',' or '${stack.at(-1) === '{' ? '}' : ']'}'` : expect.startsWith('key') ? 'a property name in double quotes' : 'a value'})` }
    const c = text[i]
    if (expect === 'colon') {
      if (c !== ':') return { pos: i, problem: `expected ':' after the property name, found ${found()}` }
      i++; expect = 'value'; continue
    }
    if (expect === 'comma') {
      const close = stack.at(-1) === '{' ? '}' : ']'
      if (c === close) { stack.pop(); i++; expect = 'comma'; continue }
      if (c !== ',') return { pos: i, problem: `expected ',' or '${close}', found ${found()}` }
      i++; expect = stack.at(-1) === '{' ? 'key' : 'value'; continue
    }
    if (expect === 'key' || expect === 'key-or-}') {
      if (c === '}' && expect === 'key-or-}') { stack.pop(); i++; expect = 'comma'; continue }
      if (c !== '"') return { pos: i, problem: `expected a property name in double quotes, found ${found()}` }
      const end = scanString(text, i)
      if (end < 0) return { pos: -end, problem: 'bad or unterminated string' }
      i = end; expect = 'colon'; continue
    }
    // a value
    if (c === ']' && expect === 'value-or-]') { stack.pop(); i++; expect = 'comma'; continue }
    if (c === '{') { stack.push('{'); i++; expect = 'key-or-}'; continue }
    if (c === '[') { stack.push('['); i++; expect = 'value-or-]'; continue }
    if (c === '"') {
      const end = scanString(text, i)
      if (end < 0) return { pos: -end, problem: 'bad or unterminated string' }
      i = end; expect = 'comma'; continue
    }
    const lit = /^(?:true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)/.exec(text.slice(i, i + 400))
    if (lit === null) return { pos: i, problem: `expected a value, found ${found()}` }
    i += lit[0].length; expect = 'comma'
  }
}

/** Scans a JSON string starting at the quote at `start`; returns the offset after it, or −(offset of the fault). */
function scanString (text: string, start: number): number {
  let i = start + 1
  while (i < text.length) {
    const c = text.charCodeAt(i)
    if (c === 0x22) return i + 1
    if (c < 0x20) return -i
    if (c === 0x5c) {
      const e = text[i + 1]
      if (e === 'u') {
        if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return -i
        i += 6
      } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2
      else return -i
    } else i++
  }
  return -text.length
}
