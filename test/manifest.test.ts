import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { EXIT, ManifestError } from '../checkpoint/errors.ts'
import {
  CAPABILITIES, DEFAULT_MAX_FAILURES, HTTP_LIMITS, INBOX_LIMITS, DEFAULT_MAX_FUEL_PER_TICK, DEFAULT_MAX_MEMORY_BYTES,
  DEFAULT_NODE_CAPS, DEFAULT_TICK_LIMITS, TICK_LIMIT_FIELDS,
  capabilityFor, checkWithinCaps, grantedImports, parseManifest,
} from '../hostcalls/manifest.ts'
import type { NodeCaps } from '../hostcalls/manifest.ts'

const bytes = (s: string) => new TextEncoder().encode(s)
const parse = (v: unknown) => parseManifest(bytes(typeof v === 'string' ? v : JSON.stringify(v)), 'agent.manifest.json')

/** Asserts parsing fails with a one-line ManifestError that names the file and every given fragment. */
function fails (v: unknown, ...fragments: string[]) {
  try {
    parse(v)
  } catch (e) {
    assert.instance(e, ManifestError)
    const msg = (e as ManifestError).message
    assert.is((e as ManifestError).exitCode, EXIT.MANIFEST)
    assert.ok(msg.startsWith('agent.manifest.json: '), msg)
    assert.not.ok(msg.includes('\n'), `one line: ${msg}`)
    for (const f of fragments) assert.ok(msg.includes(f), `"${msg}" should mention ${f}`)
    return
  }
  assert.unreachable(`should have failed: ${JSON.stringify(v)}`)
}

test('the Igor schema parses, with every field', () => {
  const m = parse({
    capabilities: { clock: { version: 1, options: {} }, log: { version: 2, options: { level: 'info' } } },
    resource_limits: { max_memory_bytes: 4194304, max_fuel_per_tick: 5000, max_consecutive_failures: 7 },
    migration_policy: { enabled: false, max_price_per_second: 1000 },
  })
  assert.equal([...m.capabilities.keys()].sort(), ['clock', 'log'])
  assert.equal(m.capabilities.get('log'), { version: 2, options: { level: 'info' } })
  assert.is(m.maxMemoryBytes, 4194304)
  assert.is(m.maxFuelPerTick, 5000n)
  assert.is(m.maxFailures, 7)
  assert.equal(m.migration, { enabled: false, maxPricePerSecond: 1000 })
})

test('{} grants nothing and takes the defaults; raw keeps the exact bytes', () => {
  const raw = bytes('{ }\n')
  const m = parseManifest(raw, 'm.json')
  assert.is(m.capabilities.size, 0)
  assert.is(m.maxMemoryBytes, DEFAULT_MAX_MEMORY_BYTES)
  assert.is(m.maxMemoryBytes, 64 * 1024 * 1024)
  assert.is(m.maxFuelPerTick, DEFAULT_MAX_FUEL_PER_TICK)
  assert.is(m.maxFuelPerTick, 1_000_000_000n)
  assert.is(m.maxFailures, DEFAULT_MAX_FAILURES)
  assert.is(m.maxFailures, 3)
  assert.equal(m.migration, { enabled: true, maxPricePerSecond: 0 })
  assert.is(m.raw, raw)
})

test('shorthand: capabilities as an array of names', () => {
  const m = parse({ capabilities: ['clock', 'rand', 'log'] })
  assert.equal([...m.capabilities.keys()], ['clock', 'rand', 'log'])
  assert.equal(m.capabilities.get('rand'), { version: 1, options: {} })
})

test('version defaults to 1; Igor-only limit fields are accepted', () => {
  const m = parse({
    capabilities: { log: {} },
    resource_limits: { max_memory_bytes: 67108864, max_cpu_millis: 100, max_storage_bytes: 0 },
    migration_policy: { enabled: true, preferred_regions: ['eu'] },
  })
  assert.is(m.capabilities.get('log')?.version, 1)
})

test('a UTF-8 byte order mark is accepted', () => {
  const m = parseManifest(new Uint8Array([0xef, 0xbb, 0xbf, ...bytes('{"capabilities":["log"]}')]), 'bom.json')
  assert.ok(m.capabilities.has('log'))
})

test('not JSON: the error says so and gives the position', () => {
  fails('{"capabilities": [}', 'not valid JSON at line 1, column 19 (position 18)', 'expected a value')
  fails('{\n  "capabilities": {\n    "log": {"version": 1},\n  }\n}', 'line 4, column 3', 'property name')
  fails('{"capabilities": ["log"]} trailing', 'line 1, column 27', 'after the JSON value')
  fails('{"capabilities": ["log"', 'unexpected end of the file')
  fails('', 'not valid JSON', 'end of the file')
})

test('not UTF-8 is refused', () => {
  assert.throws(() => parseManifest(new Uint8Array([0x7b, 0xff, 0x7d]), 'x.json'), /x\.json: manifest is not valid UTF-8/)
})

test('not an object', () => {
  fails('[]', 'must be a JSON object', 'array')
  fails('42', 'must be a JSON object')
  fails('null', 'must be a JSON object')
})

test('unknown fields are named, at every level', () => {
  fails({ capabilites: {} }, 'unknown field "capabilites"', 'capabilities, resource_limits, migration_policy')
  fails({ resource_limits: { max_memory: 65536 } }, 'resource_limits.max_memory')
  fails({ migration_policy: { enable: true } }, 'migration_policy.enable')
  fails({ capabilities: { log: { versoin: 1 } } }, 'capabilities.log.versoin')
})

test('an unknown capability lists the known ones', () => {
  fails({ capabilities: { clock: {}, smtp: { version: 1 } } }, '"smtp"', 'unknown capability', Object.keys(CAPABILITIES).join(', '))
  fails({ capabilities: ['log', 'network'] }, 'capabilities[1]', '"network"', 'clock, rand, log, wallet, identity')
  fails({ capabilities: ['log', 'log'] }, 'capabilities[1]', 'twice')
  fails({ capabilities: [7] }, 'capabilities[0]', 'unknown capability')
  fails({ capabilities: 'log' }, 'capabilities must be an object or an array')
  fails({ capabilities: { toString: {} } }, 'unknown capability "toString"')
})

test('bad capability entries', () => {
  fails({ capabilities: { log: { version: 0 } } }, 'capabilities.log.version', 'integer ≥ 1', '0')
  fails({ capabilities: { log: { version: 1.5 } } }, 'capabilities.log.version')
  fails({ capabilities: { log: { version: '1' } } }, 'capabilities.log.version')
  fails({ capabilities: { log: true } }, 'capabilities.log must be an object')
  fails({ capabilities: { log: { options: [] } } }, 'capabilities.log.options must be an object')
})

test('max_memory_bytes: a positive multiple of 64 KiB up to 4 GiB', () => {
  assert.is(parse({ resource_limits: { max_memory_bytes: 65536 } }).maxMemoryBytes, 65536)
  assert.is(parse({ resource_limits: { max_memory_bytes: 4 * 2 ** 30 } }).maxMemoryBytes, 4 * 2 ** 30)
  for (const bad of [0, -65536, 1000, 65537, 4 * 2 ** 30 + 65536, '64MiB', null, 1.5]) {
    fails({ resource_limits: { max_memory_bytes: bad } }, 'resource_limits.max_memory_bytes', 'multiple of 65536')
  }
})

test('max_fuel_per_tick: a positive integer up to 2^53-1', () => {
  assert.is(parse({ resource_limits: { max_fuel_per_tick: 2 ** 53 - 1 } }).maxFuelPerTick, 2n ** 53n - 1n)
  for (const bad of [0, -1, 1.5, 2 ** 53, '1000', true]) {
    fails({ resource_limits: { max_fuel_per_tick: bad } }, 'resource_limits.max_fuel_per_tick', 'positive integer')
  }
})

test('max_consecutive_failures: a positive integer', () => {
  for (const bad of [0, -3, 2.5, '3']) {
    fails({ resource_limits: { max_consecutive_failures: bad } }, 'resource_limits.max_consecutive_failures', 'positive integer')
  }
})

test('limits, policy and their fields must have the right types', () => {
  fails({ resource_limits: [] }, 'resource_limits must be an object')
  fails({ migration_policy: 'yes' }, 'migration_policy must be an object')
  fails({ migration_policy: { enabled: 'yes' } }, 'migration_policy.enabled')
  fails({ migration_policy: { max_price_per_second: -1 } }, 'migration_policy.max_price_per_second')
  fails({ migration_policy: { preferred_regions: 'eu' } }, 'migration_policy.preferred_regions')
  fails({ resource_limits: { max_cpu_millis: -5 } }, 'resource_limits.max_cpu_millis')
})

test('a manifest over 1 MiB is refused before parsing', () => {
  const big = new Uint8Array(1024 * 1024 + 1).fill(0x20)
  assert.throws(() => parseManifest(big, 'big.json'), /big\.json: manifest is 1048577 bytes/)
})

test('grantedImports: exactly the imports of the granted capabilities, plus env.abort', () => {
  assert.equal([...grantedImports(parse({}))], ['env.abort'])
  const g = grantedImports(parse({ capabilities: ['rand', 'identity'] }))
  assert.equal([...g].sort(), ['env.abort', 'env.seed', 'igor.agent_did', 'igor.agent_sign', 'igor.rand_bytes'])
})

test('capabilityFor names the capability that grants an import', () => {
  assert.is(capabilityFor('igor', 'clock_now'), 'clock')
  assert.is(capabilityFor('env', 'seed'), 'rand')
  assert.is(capabilityFor('igor', 'agent_sign'), 'identity')
  assert.is(capabilityFor('igor', 'http_request'), 'http')
  assert.is(capabilityFor('igor', 'inbox_next'), 'inbox')
  assert.is(capabilityFor('igor', 'sleep_until'), 'timer')
  assert.is(capabilityFor('igor', 'smtp_send'), null)
  assert.is(capabilityFor('env', 'abort'), null)
})

test('per-tick limits: defaults 10,000 events, 1 MiB log, 1 MiB random, 4 MiB event bytes; each field sets one', () => {
  assert.equal(DEFAULT_TICK_LIMITS, { events: 10_000, logBytes: 1 << 20, randomBytes: 1 << 20, eventBytes: 4 << 20 })
  assert.equal(parse({}).tickLimits, DEFAULT_TICK_LIMITS)
  assert.equal(TICK_LIMIT_FIELDS, { events: 'max_events_per_tick', logBytes: 'max_log_bytes_per_tick', randomBytes: 'max_random_bytes_per_tick', eventBytes: 'max_event_bytes_per_tick' })
  const m = parse({ resource_limits: { max_events_per_tick: 5, max_log_bytes_per_tick: 100, max_random_bytes_per_tick: 32, max_event_bytes_per_tick: 1000 } })
  assert.equal(m.tickLimits, { events: 5, logBytes: 100, randomBytes: 32, eventBytes: 1000 })
  assert.equal(parse({ resource_limits: { max_log_bytes_per_tick: 7 } }).tickLimits, { ...DEFAULT_TICK_LIMITS, logBytes: 7 })
  // Above the default parses (a host with higher caps may run it); whether a host accepts it is checkWithinCaps's question.
  assert.is(parse({ resource_limits: { max_events_per_tick: 2 ** 53 - 1 } }).tickLimits.events, 2 ** 53 - 1)
  for (const field of Object.values(TICK_LIMIT_FIELDS)) {
    for (const bad of [0, -1, 1.5, 2 ** 53, '100', null]) fails({ resource_limits: { [field]: bad } }, `resource_limits.${field}`, 'positive integer')
  }
  fails({ resource_limits: { max_events: 5 } }, 'unknown field resource_limits.max_events', 'max_events_per_tick')
})

test('checkWithinCaps: null within the caps (defaults included); else one line naming the field, the value asked and the cap', () => {
  const caps: NodeCaps = { maxFuelPerTick: 100_000_000n, maxMemoryBytes: 16 * 65536, maxFailures: 5, tickLimits: { events: 100, logBytes: 1000, randomBytes: 64, eventBytes: 5000 } }
  const within = { max_fuel_per_tick: 100_000_000, max_memory_bytes: 16 * 65536, max_consecutive_failures: 5, max_events_per_tick: 100, max_log_bytes_per_tick: 1000, max_random_bytes_per_tick: 64, max_event_bytes_per_tick: 5000 }
  assert.is(checkWithinCaps(parse({ resource_limits: within }), caps), null, 'exactly at every cap')
  assert.is(checkWithinCaps(parse({}), DEFAULT_NODE_CAPS), null, 'the defaults are within the default caps')
  const cases: [string, number, string][] = [
    ['max_fuel_per_tick', 2 ** 53 - 1, `resource_limits.max_fuel_per_tick asks ${2 ** 53 - 1}, above this host's cap of 100000000`],
    ['max_memory_bytes', 17 * 65536, `resource_limits.max_memory_bytes asks ${17 * 65536}, above this host's cap of ${16 * 65536}`],
    ['max_consecutive_failures', 6, 'resource_limits.max_consecutive_failures asks 6, above this host\'s cap of 5'],
    ['max_events_per_tick', 101, 'resource_limits.max_events_per_tick asks 101, above this host\'s cap of 100'],
    ['max_log_bytes_per_tick', 1001, 'resource_limits.max_log_bytes_per_tick asks 1001, above this host\'s cap of 1000'],
    ['max_random_bytes_per_tick', 65, 'resource_limits.max_random_bytes_per_tick asks 65, above this host\'s cap of 64'],
    ['max_event_bytes_per_tick', 5001, 'resource_limits.max_event_bytes_per_tick asks 5001, above this host\'s cap of 5000'],
  ]
  for (const [field, asked, reason] of cases) assert.is(checkWithinCaps(parse({ resource_limits: { ...within, [field]: asked } }), caps), reason)
  // Fields left out count at their defaults: the default 1e9 fuel is above a 1e8 cap.
  assert.is(checkWithinCaps(parse({}), caps), 'resource_limits.max_fuel_per_tick asks 1000000000, above this host\'s cap of 100000000')
  assert.equal(DEFAULT_NODE_CAPS, { maxFuelPerTick: 10_000_000_000n, maxMemoryBytes: 1 << 30, maxFailures: 100, tickLimits: DEFAULT_TICK_LIMITS })
})

test('capabilities http, inbox, timer grant http_request, inbox_next, sleep_until', () => {
  const m = parse({ capabilities: ['http', 'inbox', 'timer'], http: { allow: ['api.example.com'] } })
  assert.equal([...grantedImports(m)].sort(), ['env.abort', 'igor.http_request', 'igor.inbox_next', 'igor.sleep_until'])
  assert.is(parse({ capabilities: ['inbox', 'timer'] }).http, null)
})

test('http section: allow entries, defaults and every limit', () => {
  const m = parse({ capabilities: ['http'], http: { allow: ['127.0.0.1:8080', 'API.Example.com', '[::1]:9000', '[0:0::1]', 'bücher.example', '127.1:80'] } })
  assert.equal(m.http, {
    allow: [
      { host: '127.0.0.1', port: 8080 }, { host: 'api.example.com', port: null }, { host: '[::1]', port: 9000 },
      { host: '[::1]', port: null }, { host: 'xn--bcher-kva.example', port: null }, { host: '127.0.0.1', port: 80 },
    ],
    timeoutMs: 10_000, maxResponseBytes: 1 << 20, maxRequestBytes: 64 << 10, maxPending: 8,
  })
  assert.equal(HTTP_LIMITS, { timeout_ms: [10_000, 120_000], max_response_bytes: [1 << 20, 16 << 20], max_request_bytes: [64 << 10, 1 << 20], max_pending: [8, 64] })
  const full = parse({ capabilities: ['http'], http: { allow: ['a.test'], timeout_ms: 120_000, max_response_bytes: 16 << 20, max_request_bytes: 1 << 20, max_pending: 64 }, resource_limits: { max_event_bytes_per_tick: 32 << 20 } })
  assert.equal(full.http, { allow: [{ host: 'a.test', port: null }], timeoutMs: 120_000, maxResponseBytes: 16 << 20, maxRequestBytes: 1 << 20, maxPending: 64 })
  assert.is(parse({ capabilities: ['http'], http: { allow: ['a.test'], timeout_ms: 1, max_pending: 1 } }).http?.timeoutMs, 1)
  // a response (and an inbox message) must fit a tick's events twice: it is recorded when read, and once more if peeked
  fails({ capabilities: ['http'], http: { allow: ['a.test'], max_response_bytes: 3 << 20 } }, 'http.max_response_bytes 3145728', 'over half of resource_limits.max_event_bytes_per_tick')
  fails({ capabilities: ['inbox'], resource_limits: { max_message_bytes: 1 << 20, max_event_bytes_per_tick: 1 << 20 } }, 'max_message_bytes 1048576', 'fit a tick\'s events twice')
  assert.is(parse({ capabilities: ['log'], resource_limits: { max_event_bytes_per_tick: 1024 } }).tickLimits.eventBytes, 1024) // no inbox: no such bound
  for (const [field, [, max]] of Object.entries(HTTP_LIMITS)) {
    for (const bad of [0, -1, 1.5, max + 1, '10', null]) {
      fails({ capabilities: ['http'], http: { allow: ['a.test'], [field]: bad } }, `http.${field}`, `from 1 to ${max}`)
    }
  }
})

test('http section and capability go together; allow must be a non-empty list of good entries', () => {
  fails({ capabilities: ['http'] }, 'capability "http" needs an "http" section', 'allow')
  fails({ capabilities: ['log'], http: { allow: ['a.test'] } }, 'http:', 'needs capability "http"')
  fails({ http: { allow: ['a.test'] } }, 'needs capability "http"')
  fails({ capabilities: ['http'], http: { allow: [] } }, 'http.allow must be a non-empty array')
  fails({ capabilities: ['http'], http: {} }, 'http.allow is missing', 'non-empty array')
  fails({ capabilities: ['http'], http: { allow: 'a.test' } }, 'http.allow must be a non-empty array')
  fails({ capabilities: ['http'], http: [] }, 'http must be an object')
  fails({ capabilities: ['http'], http: { allow: ['a.test'], timeout: 5 } }, 'unknown field http.timeout', 'timeout_ms')
  for (const bad of ['', 'http://a.test', 'a.test/', 'a.test:0', 'a.test:65536', 'a.test:', 'a.test:80:81', 'user@a.test', '::1', '[::1', '[zz]:80', 'a b', 'a.test:+80', 'a%2e.test', '[::1%lo]']) {
    fails({ capabilities: ['http'], http: { allow: ['ok.test', bad] } }, 'http.allow[1]', JSON.stringify(bad))
  }
  fails({ capabilities: ['http'], http: { allow: [7] } }, 'http.allow[0] must be a string')
})

test('inbox limits: defaults 256 messages, 64 KiB and an outbox of 64, maxima 65536, 1 MiB and 64', () => {
  assert.equal(parse({}).inbox, { maxMessages: 256, maxMessageBytes: 64 << 10, maxOutbox: 64 })
  assert.equal(INBOX_LIMITS, { max_inbox_messages: [256, 65_536], max_message_bytes: [64 << 10, 1 << 20], max_outbox_messages: [64, 64] })
  assert.equal(parse({ resource_limits: { max_inbox_messages: 65_536, max_message_bytes: 1 << 20 } }).inbox, { maxMessages: 65_536, maxMessageBytes: 1 << 20, maxOutbox: 64 })
  assert.equal(parse({ resource_limits: { max_inbox_messages: 1, max_outbox_messages: 1 } }).inbox, { maxMessages: 1, maxMessageBytes: 64 << 10, maxOutbox: 1 })
  for (const [field, [, max]] of Object.entries(INBOX_LIMITS)) {
    for (const bad of [0, -1, 2.5, max + 1, '5', null]) fails({ resource_limits: { [field]: bad } }, `resource_limits.${field}`, `from 1 to ${max}`)
  }
})

test.run()
