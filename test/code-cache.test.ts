/**
 * Unit tests of runtime/code-cache.ts: instrumented code cached on disk by code CID (issue 10).
 * A hit gives the same bytes and the same fuel and state roots as instrumenting; a corrupt or
 * truncated entry is never trusted (noted, re-instrumented, replaced); the directory stays within
 * its bound, least recently used first; run, resume and replay use `<dir>/cache/code`; a process
 * whose code is cached never loads binaryen, and one that is not instruments in a helper thread.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { ModuleError } from '../checkpoint/errors.ts'
import { codeCacheDir } from '../checkpoint/layout.ts'
import { clearMemoryCache, codeCacheStats, evict, loadInstrumented, parseEntry, RECIPE } from '../runtime/code-cache.ts'
import { rewrite } from '../runtime/instrument.ts'
import { replayHistory } from '../runtime/replay.ts'
import { writeCheckpoint } from '../runtime/runner.ts'
import { resumeAgent, startAgent } from '../runtime/session.ts'

function watBytes (text: string): Uint8Array {
  const m = binaryen.parseText(text)
  try { return m.emitBinary() } finally { m.dispose() }
}

/** Burns a tick-dependent amount of fuel, keeps a counter in memory and a mutable global. */
const AGENT = watBytes(`(module
  (memory (export "memory") 1 2)
  (global $g (mut i64) (i64.const 7))
  (func (export "agent_tick") (result i32) (local $i i32)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (loop $l
      (global.set $g (i64.add (global.get $g) (i64.extend_i32_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.mul (i32.load (i32.const 0)) (i32.const 5)))))
    (i32.const 0)))`)
const MANIFEST = new TextEncoder().encode(JSON.stringify({ capabilities: {}, resource_limits: { max_memory_bytes: 2 * 65536 } }))
const LIMIT = 2

let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-code-cache-')); clearMemoryCache() })
test.after.each(() => { fs.rmSync(dir, { recursive: true, force: true }) })

/** `bytes` with the recipe in its header replaced (same length). */
function withRecipe (bytes: Uint8Array, recipe: string): Uint8Array {
  const out = Buffer.from(bytes)
  const at = out.indexOf(RECIPE, 8, 'latin1')
  out.write(recipe, at, 'latin1')
  return new Uint8Array(out)
}
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const entries = (d: string) => fs.existsSync(d) ? fs.readdirSync(d).filter((n) => n.endsWith('.code')).sort() : []

/** Runs AGENT for `ticks` ticks in data directory `d`; returns [tick, fuel, state root] after each. */
function run (d: string, ticks: number): Array<[number, string, string]> {
  const settings = { dir: d, price: 1000n, simSeed: 'code-cache', emit: () => {} }
  const s = startAgent(settings, { name: 'a', wasm: AGENT, wasmFile: 'a.wasm', manifest: MANIFEST, manifestFile: 'a.manifest.json', budget: 10n ** 12n })
  const out: Array<[number, string, string]> = []
  for (let i = 0; i < ticks; i++) {
    const r = s.agent.runTick()
    assert.ok(r !== null && r.trap === null, `tick ${i + 1}`)
    const { header } = writeCheckpoint(s.agent, s.lineage, 'running')
    out.push([header.tick, String(header.fuel), hex(header.state)])
  }
  return out
}

test('a cache hit gives the instrumented bytes of instrumenting, and the same fuel and state roots', () => {
  const a = path.join(dir, 'a'); const b = path.join(dir, 'b')
  const m0 = codeCacheStats.misses
  const cold = run(a, 5) // nothing cached: instrumented, then stored in a's cache
  assert.is(codeCacheStats.misses - m0, 1)
  const stored = entries(codeCacheDir(a))
  assert.equal(stored, [`${loadInstrumented(AGENT, { memoryLimitPages: LIMIT }).cid}-${LIMIT}-${RECIPE}.code`])
  fs.mkdirSync(codeCacheDir(b), { recursive: true })
  fs.copyFileSync(path.join(codeCacheDir(a), stored[0]), path.join(codeCacheDir(b), stored[0]))
  clearMemoryCache()
  const d0 = codeCacheStats.diskHits; const m1 = codeCacheStats.misses
  const warm = run(b, 5)
  assert.is(codeCacheStats.diskHits - d0, 1, 'b loaded the code from its disk cache')
  assert.is(codeCacheStats.misses - m1, 0)
  assert.equal(warm, cold)
  clearMemoryCache()
  const hit = loadInstrumented(AGENT, { memoryLimitPages: LIMIT, cache: { dir: codeCacheDir(b) } })
  const fresh = rewrite(AGENT, { memoryLimitPages: LIMIT })
  assert.equal(hex(hit.binary), hex(fresh.binary))
  assert.equal(hit.globals, fresh.globals)
})

test('code found in memory is also stored in a disk cache that lacks it', () => {
  loadInstrumented(AGENT, { memoryLimitPages: LIMIT })
  const m0 = codeCacheStats.misses; const h0 = codeCacheStats.memoryHits
  loadInstrumented(AGENT, { memoryLimitPages: LIMIT, cache: { dir: codeCacheDir(dir) } })
  assert.is(codeCacheStats.misses - m0, 0)
  assert.is(codeCacheStats.memoryHits - h0, 1)
  assert.is(entries(codeCacheDir(dir)).length, 1)
})

test('resume and verify --replay load the code from <dir>/cache/code', () => {
  run(dir, 3)
  clearMemoryCache()
  const d0 = codeCacheStats.diskHits; const m0 = codeCacheStats.misses
  const s = resumeAgent({ dir, price: 1000n, simSeed: 'code-cache', emit: () => {} }, path.join(dir, 'a.ckpt'))
  assert.ok(s.agent.runTick()?.trap === null)
  assert.is(codeCacheStats.diskHits - d0, 1)
  clearMemoryCache()
  const r = replayHistory([dir])
  assert.ok(r.valid, r.error ?? r.divergence?.message)
  assert.is(codeCacheStats.diskHits - d0, 2)
  assert.is(codeCacheStats.misses - m0, 0)
})

test('a corrupt, truncated or foreign entry is noted, never trusted, and replaced', () => {
  const cache = codeCacheDir(dir)
  const good = loadInstrumented(AGENT, { memoryLimitPages: LIMIT, cache: { dir: cache } })
  const file = path.join(cache, entries(cache)[0])
  const bytes = new Uint8Array(fs.readFileSync(file))
  const damages: Array<[string, Uint8Array, RegExp]> = [
    ['a flipped bit in the code', Uint8Array.from(bytes, (x, i) => i === bytes.length - 3 ? x ^ 0x10 : x), /corrupt/],
    ['truncated', bytes.subarray(0, bytes.length - 100), /truncated/],
    ['truncated inside the header', bytes.subarray(0, 20), /truncated/],
    ['empty', new Uint8Array(0), /bad magic/],
    ['another recipe', withRecipe(bytes, RECIPE === '0123456789abcdef' ? 'fedcba9876543210' : '0123456789abcdef'), /another instrumenter/],
  ]
  for (const [what, damaged, why] of damages) {
    fs.writeFileSync(file, damaged)
    clearMemoryCache()
    const notes: string[] = []
    const r0 = codeCacheStats.rejected; const m0 = codeCacheStats.misses
    const got = loadInstrumented(AGENT, { memoryLimitPages: LIMIT, cache: { dir: cache, note: (l) => notes.push(l) } })
    assert.is(codeCacheStats.rejected - r0, 1, what)
    assert.is(codeCacheStats.misses - m0, 1, what)
    assert.is(notes.length, 1, what)
    assert.match(notes[0], why, what)
    assert.ok(notes[0].includes(file), what)
    assert.equal(hex(got.binary), hex(good.binary), what)
    assert.equal(hex(new Uint8Array(fs.readFileSync(file))), hex(bytes), `${what}: replaced by a good entry`)
  }
  assert.equal(parseEntry(bytes, good.cid, LIMIT + 1), 'header names ' + good.cid + ` at ${LIMIT} pages, not this module`)
})

test('an entry for another module or limit is not used for this one', () => {
  const cache = codeCacheDir(dir)
  const a = loadInstrumented(AGENT, { memoryLimitPages: LIMIT, cache: { dir: cache } })
  // put the entry of LIMIT under the name of the entry of LIMIT - 1
  const name = entries(cache)[0]
  fs.copyFileSync(path.join(cache, name), path.join(cache, name.replace(`-${LIMIT}-`, `-${LIMIT - 1}-`)))
  clearMemoryCache()
  const notes: string[] = []
  const b = loadInstrumented(AGENT, { memoryLimitPages: LIMIT - 1, cache: { dir: cache, note: (l) => notes.push(l) } })
  assert.match(notes.join('\n'), /not this module/)
  assert.ok(hex(a.binary) !== hex(b.binary), 'another memory cap, other code')
})

test('the directory stays within its bound, least recently used entries evicted first', () => {
  const cache = codeCacheDir(dir)
  const size = (n: string) => fs.statSync(path.join(cache, n)).size
  loadInstrumented(AGENT, { memoryLimitPages: 2, cache: { dir: cache } })
  const one = size(entries(cache)[0])
  const max = Math.floor(one * 3.5) // room for three entries of about this size
  const name = (limit: number) => entries(cache).find((n) => n.includes(`-${limit}-`))
  const total = () => entries(cache).reduce((n, e) => n + size(e), 0)
  for (let limit = 3; limit <= 8; limit++) {
    // every entry older than the last one, and the entry of limit 2 the oldest but used just now
    let t = Date.now() / 1000 - 1000
    for (const e of entries(cache)) fs.utimesSync(path.join(cache, e), t, t++)
    if (name(2) !== undefined) { clearMemoryCache(); loadInstrumented(AGENT, { memoryLimitPages: 2, cache: { dir: cache, maxBytes: max } }) }
    loadInstrumented(AGENT, { memoryLimitPages: limit, cache: { dir: cache, maxBytes: max } })
    assert.ok(total() <= max, `after limit ${limit}: ${total()} bytes in ${entries(cache).length} entries, bound ${max}`)
    assert.ok(name(limit) !== undefined, `the newest entry (limit ${limit}) is kept`)
    assert.ok(name(2) !== undefined, 'the entry used just before is kept')
  }
  assert.is(entries(cache).length, 3)
  // an entry larger than the bound is not written at all
  clearMemoryCache()
  const notes: string[] = []
  loadInstrumented(AGENT, { memoryLimitPages: 9, cache: { dir: cache, maxBytes: 100, note: (l) => notes.push(l) } })
  assert.ok(name(9) === undefined)
  assert.match(notes.join('\n'), /above the cache bound/)
  // evict() alone: bound 0 empties the directory but for the entry kept; stale temp files go too
  fs.writeFileSync(path.join(cache, '.x.code.tmp-1-abcd'), 'x')
  fs.utimesSync(path.join(cache, '.x.code.tmp-1-abcd'), 1, 1)
  const keep = path.join(cache, name(8)!)
  assert.is(evict(cache, 0, keep), 2)
  assert.equal(fs.readdirSync(cache), [path.basename(keep)])
})

/** Runs `script` in a fresh Node process that records whether anything resolves `binaryen`; returns its last line, parsed. */
function child (script: string): Record<string, unknown> {
  const root = path.join(import.meta.dirname, '..')
  const head = `import { registerHooks } from 'node:module'
let binaryen = false
registerHooks({ resolve (s, c, next) { if (s === 'binaryen') binaryen = true; return next(s, c) } })
const root = ${JSON.stringify(root)}
const dir = ${JSON.stringify(dir)}
`
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', head + script], { encoding: 'utf8', timeout: 120_000, killSignal: 'SIGKILL' })
  return JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>
}

test('a process whose code is cached never loads binaryen; one whose code is not instruments in a helper thread', () => {
  const wasmFile = path.join(dir, 'a.wasm')
  fs.writeFileSync(wasmFile, AGENT)
  fs.writeFileSync(path.join(dir, 'bad.wasm'), Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 99]))
  fs.writeFileSync(path.join(dir, 'a.manifest.json'), MANIFEST)
  const born = child(`const fs = await import('node:fs')
const { startAgent } = await import(root + '/runtime/session.ts')
const { codeCacheStats } = await import(root + '/runtime/code-cache.ts')
const read = (f) => new Uint8Array(fs.readFileSync(dir + '/' + f))
const s = startAgent({ dir, price: 1000n, simSeed: 'x', emit: () => {} }, { name: 'a', wasm: read('a.wasm'), wasmFile: 'a.wasm', manifest: read('a.manifest.json'), manifestFile: 'a.manifest.json', budget: 10n ** 12n })
let error = null
try { startAgent({ dir, price: 1000n, emit: () => {} }, { name: 'bad', wasm: read('bad.wasm'), wasmFile: 'bad.wasm', manifest: read('a.manifest.json'), manifestFile: 'a.manifest.json', budget: 1n }) } catch (e) { error = { name: e.name, message: e.message } }
console.log(JSON.stringify({ binaryen, misses: codeCacheStats.misses, trap: s.agent.runTick().trap, error }))`)
  assert.equal(born.binaryen, false, 'the main thread never loaded binaryen (the helper thread did)')
  assert.is(born.misses, 2)
  assert.is(born.trap, null)
  const err = born.error as { name: string; message: string }
  assert.is(err.name, ModuleError.name)
  assert.match(err.message, /^bad\.wasm: not a valid WebAssembly module/)
  assert.equal(entries(codeCacheDir(dir)).length, 1)
  // the helper's bytes are the in-thread instrumenter's
  const stored = new Uint8Array(fs.readFileSync(path.join(codeCacheDir(dir), entries(codeCacheDir(dir))[0])))
  const parsed = parseEntry(stored, loadInstrumented(AGENT, { memoryLimitPages: LIMIT }).cid, LIMIT)
  assert.ok(typeof parsed !== 'string', String(parsed))
  assert.equal(hex(parsed.binary), hex(rewrite(AGENT, { memoryLimitPages: LIMIT }).binary))
  const resumed = child(`const { resumeAgent } = await import(root + '/runtime/session.ts')
const { codeCacheStats } = await import(root + '/runtime/code-cache.ts')
const s = resumeAgent({ dir, price: 1000n, simSeed: 'x', emit: () => {} }, dir + '/a.ckpt')
console.log(JSON.stringify({ binaryen, diskHits: codeCacheStats.diskHits, misses: codeCacheStats.misses, trap: s.agent.runTick().trap }))`)
  assert.equal(resumed, { binaryen: false, diskHits: 1, misses: 0, trap: null })
})

test.run()
