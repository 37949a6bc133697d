/**
 * manifest.schema.json (shipped as `igord/manifest.schema.json`) against hostcalls/manifest.ts
 * `parseManifest`, with a real draft 2020-12 validator (ajv): the committed file is the one
 * scripts/manifest-schema.ts generates, every shipped manifest passes both, hand-picked manifests
 * are refused or accepted by both, and so are seeded random ones (outside the value relations the
 * schema documents as not expressible).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { ManifestError } from '../checkpoint/errors.ts'
import { CAPABILITIES, parseManifest } from '../hostcalls/manifest.ts'
import { manifestSchemaText } from '../scripts/manifest-schema.ts'
import { ROOT } from './helpers.ts'
import { prng } from './prng.ts'

const SCHEMA_FILE = join(ROOT, 'manifest.schema.json')
const schema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as Record<string, unknown>
const ajv = new Ajv2020({ strict: true, strictRequired: false, strictTypes: false, allErrors: true }) // unknown keywords are errors; ajv's lints on `required`/types inside the if/then rules are off
const validate = ajv.compile(schema)

const bySchema = (doc: unknown): boolean => validate(doc) === true
function byParser (doc: unknown): boolean {
  try {
    parseManifest(new TextEncoder().encode(JSON.stringify(doc)), 'm.json')
    return true
  } catch (e) {
    if (!(e instanceof ManifestError)) throw e
    return false
  }
}
function agree (doc: unknown, expected: boolean): void {
  const s = bySchema(doc)
  const p = byParser(doc)
  assert.is(p, expected, `parseManifest on ${JSON.stringify(doc)}`)
  assert.is(s, expected, `schema on ${JSON.stringify(doc)}: ${ajv.errorsText(validate.errors)}`)
}

test('manifest.schema.json is what scripts/manifest-schema.ts generates (run it after changing hostcalls/manifest.ts)', () => {
  assert.is(readFileSync(SCHEMA_FILE, 'utf8'), manifestSchemaText())
  assert.is(schema.$schema, 'https://json-schema.org/draft/2020-12/schema')
})

test('every shipped manifest (agents-as/agents, agents-c/agents) passes the schema and parseManifest', () => {
  let n = 0
  for (const d of ['agents-as/agents', 'agents-c/agents']) {
    for (const f of readdirSync(join(ROOT, d)).filter((x) => x.endsWith('.manifest.json'))) {
      const doc = JSON.parse(readFileSync(join(ROOT, d, f), 'utf8')) as unknown
      assert.ok(bySchema(doc), `${d}/${f}: ${ajv.errorsText(validate.errors)}`)
      assert.ok(byParser(doc), `${d}/${f}`)
      n++
    }
  }
  assert.ok(n >= 20, `${n} manifests`)
})

test('manifests parseManifest refuses, the schema refuses', () => {
  const refused: unknown[] = [
    [], 'x', null, { extra: 1 },
    { capabilities: ['clock', 'clock'] }, { capabilities: ['nope'] }, { capabilities: 'clock' },
    { capabilities: { clock: { version: 0 } } }, { capabilities: { clock: { version: 1.5 } } },
    { capabilities: { clock: { options: [] } } }, { capabilities: { clock: { other: 1 } } }, { capabilities: { clock: 1 } },
    { resource_limits: { max_memory_bytes: 1000 } }, { resource_limits: { max_memory_bytes: 0 } },
    { resource_limits: { max_memory_bytes: 4 * 1024 * 1024 * 1024 + 65536 } },
    { resource_limits: { max_fuel_per_tick: 0 } }, { resource_limits: { max_fuel_per_tick: 2 ** 53 } },
    { resource_limits: { max_fuel_per_tick: '5' } }, { resource_limits: { max_consecutive_failures: -1 } },
    { resource_limits: { max_events_per_tick: 0 } }, { resource_limits: { max_inbox_messages: 65537 } },
    { resource_limits: { max_outbox_messages: 65 } }, { resource_limits: { max_message_bytes: 0 } },
    { resource_limits: { max_cpu_millis: -1 } }, { resource_limits: { unknown: 1 } }, { resource_limits: [] },
    { migration_policy: { enabled: 'yes' } }, { migration_policy: { max_price_per_second: -1 } },
    { migration_policy: { preferred_regions: [1] } }, { migration_policy: { other: true } },
    { capabilities: ['http'] }, { http: { allow: ['a.example'] } },
    { capabilities: ['http'], http: { allow: [] } }, { capabilities: ['http'], http: {} },
    { capabilities: ['http'], http: { allow: ['a b'] } }, { capabilities: ['http'], http: { allow: ['h:0'] } },
    { capabilities: ['http'], http: { allow: ['h:65536'] } }, { capabilities: ['http'], http: { allow: ['h:123456'] } },
    { capabilities: ['http'], http: { allow: ['http://h'] } }, { capabilities: ['http'], http: { allow: ['h'], timeout_ms: 120_001 } },
    { capabilities: ['http'], http: { allow: ['h'], max_pending: 65 } }, { capabilities: ['http'], http: { allow: ['h'], other: 1 } },
    { capabilities: ['http'], http: { allow: ['h'], max_response_bytes: 3 << 20 } },
  ]
  for (const doc of refused) agree(doc, false)
})

test('manifests parseManifest accepts, the schema accepts', () => {
  const accepted: unknown[] = [
    {}, { capabilities: [] }, { capabilities: {} }, { capabilities: Object.keys(CAPABILITIES).filter((c) => c !== 'http') },
    { capabilities: { clock: {}, log: { version: 3, options: { level: 'x' } } } },
    { resource_limits: { max_memory_bytes: 65536, max_fuel_per_tick: 2 ** 53 - 1, max_consecutive_failures: 1 } },
    { resource_limits: { max_memory_bytes: 4 * 1024 * 1024 * 1024, max_cpu_millis: 0, max_storage_bytes: 0 } },
    { resource_limits: { max_inbox_messages: 65536, max_outbox_messages: 64, max_message_bytes: 1 << 20 } },
    { migration_policy: { enabled: false, max_price_per_second: 0, preferred_regions: ['eu'] } },
    { capabilities: ['http'], http: { allow: ['h', 'api.example.com:443', '[::1]:8080', '127.0.0.1', 'h:08080'] } },
    { capabilities: { http: { version: 1 } }, http: { allow: ['h'], timeout_ms: 120_000, max_pending: 64, max_request_bytes: 1 << 20, max_response_bytes: 2 << 20 } },
    { capabilities: ['http'], http: { allow: ['h'], max_response_bytes: 8 << 20 }, resource_limits: { max_event_bytes_per_tick: 16 << 20 } },
  ]
  for (const doc of accepted) agree(doc, true)
})

test('seeded random manifests: the schema and parseManifest agree on every one', () => {
  const rnd = prng(11)
  const pick = <T> (xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]
  const numbers = [-1, 0, 1, 1.5, 64, 65, 1000, 65536, 65537, 1 << 20, (1 << 20) + 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, '1', null, true]
  const limitFields = ['max_memory_bytes', 'max_fuel_per_tick', 'max_consecutive_failures', 'max_events_per_tick', 'max_log_bytes_per_tick', 'max_random_bytes_per_tick', 'max_inbox_messages', 'max_message_bytes', 'max_outbox_messages', 'max_cpu_millis', 'max_storage_bytes', 'bogus']
  const caps = [...Object.keys(CAPABILITIES).filter((c) => c !== 'inbox'), 'nope'] // inbox: its max_message_bytes relation is not in the schema
  let accepted = 0
  const N = 1500
  for (let i = 0; i < N; i++) {
    const doc: Record<string, unknown> = {}
    if (rnd() < 0.8) {
      const names = Array.from({ length: Math.floor(rnd() * 4) }, () => pick(caps))
      doc.capabilities = rnd() < 0.5 ? names : Object.fromEntries(names.map((n) => [n, rnd() < 0.8 ? { version: pick([1, 2, 0, 1.5]) } : pick([{}, 1, { options: {} }, { options: 1 }])]))
    }
    if (rnd() < 0.7) doc.resource_limits = Object.fromEntries(Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => [pick(limitFields), pick(numbers)]))
    if (rnd() < 0.3) doc.migration_policy = pick([{ enabled: true }, { enabled: 1 }, { max_price_per_second: pick(numbers) }, { preferred_regions: pick([[], ['x'], [1]]) }])
    if (rnd() < 0.4) doc.http = pick([{ allow: ['h'] }, { allow: [] }, { allow: [pick(['h:1', 'h:0', '[::1]', 'a/b', 'x.y:65535'])], timeout_ms: pick(numbers) }, { allow: ['h'], max_pending: pick(numbers) }])
    const p = byParser(doc)
    assert.is(bySchema(doc), p, `${JSON.stringify(doc)}: parser ${p ? 'accepts' : 'refuses'}; schema: ${ajv.errorsText(validate.errors)}`)
    if (p) accepted++
  }
  assert.ok(accepted > N / 10 && accepted < N * 0.9, `a mix of accepted and refused: ${accepted} of ${N}`)
})

test.run()
