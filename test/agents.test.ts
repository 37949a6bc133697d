/**
 * The example AssemblyScript agents (agents-as/), built by `make agents`, run against the real
 * `igor` host module — without instrumentation (that is runtime/'s job, tested there).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPairSync, sign as edSign, verify as edVerify } from 'node:crypto'
import { ModuleError } from '../checkpoint/errors.ts'
import { EventLog } from '../hostcalls/eventlog.ts'
import { checkImports, igorImports } from '../hostcalls/igor.ts'
import type { HostContext } from '../hostcalls/igor.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import type { Manifest } from '../hostcalls/manifest.ts'

const BUILD = join(import.meta.dirname, '..', 'agents-as', 'build')
const AGENTS = ['heartbeat', 'ledger', 'loop', 'bomb', 'trap', 'badimport', 'finisher', 'identity']
const BIRTH_NS = 1_700_000_000_000_000_000n
const DID = 'did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp'

function load (name: string): { module: WebAssembly.Module; manifest: Manifest; file: string; wasm: Uint8Array } {
  const file = join(BUILD, `${name}.wasm`)
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`make agents\` first`)
  const wasm = readFileSync(file)
  return {
    wasm,
    module: new WebAssembly.Module(wasm),
    manifest: parseManifest(readFileSync(join(BUILD, `${name}.manifest.json`)), `${name}.manifest.json`),
    file,
  }
}

interface Running {
  tick (): number
  lines: string[]
  log: EventLog
  memory: () => WebAssembly.Memory
  exports: WebAssembly.Exports
}

/**
 * Instantiates a built agent with the igor imports and a deterministic context (the clock reads
 * BIRTH_NS + tick seconds; random bytes count up), runs `_initialize` and `agent_init` as tick 0.
 */
function birth (name: string, over: Partial<HostContext> = {}): Running {
  const { module, manifest, file } = load(name)
  checkImports(module, manifest, file)
  const log = new EventLog()
  const lines: string[] = []
  let memory: WebAssembly.Memory | undefined
  let counter = 0
  const ctx: HostContext = {
    memory: () => memory!,
    did: DID,
    sign: () => new Uint8Array(64),
    budget: () => 1_000_000n,
    now: () => BIRTH_NS + BigInt(log.openTick ?? 0) * 1_000_000_000n,
    randomFill: (b) => { for (let i = 0; i < b.length; i++) b[i] = (counter++ * 37) & 255 },
    log,
    emit: (l) => { lines.push(l) },
    requestMigration: () => {},
    ...over,
  }
  const instance = new WebAssembly.Instance(module, igorImports(manifest, ctx))
  memory = instance.exports.memory as WebAssembly.Memory
  const ex = instance.exports as Record<string, () => number>
  log.beginTick(0)
  ex._initialize()
  if (typeof ex.agent_init === 'function') ex.agent_init()
  log.endTick({ fuel: 0n, result: null, trap: null })
  let t = 0
  return {
    tick () {
      log.beginTick(++t)
      try {
        const r = ex.agent_tick()
        log.endTick({ fuel: 0n, result: r, trap: null })
        return r
      } catch (e) {
        log.endTick({ fuel: 0n, result: null, trap: (e as Error).message })
        throw e
      }
    },
    lines,
    log,
    memory: () => memory!,
    exports: instance.exports,
  }
}

test('every agent is built with its manifest, exports the ABI and (but badimport) passes the import and signature check', () => {
  for (const name of AGENTS) {
    const { module, manifest, file, wasm } = load(name)
    const exports = WebAssembly.Module.exports(module).map((e) => `${e.name}:${e.kind}`)
    for (const e of ['agent_tick:function', 'memory:memory', '_initialize:function']) assert.ok(exports.includes(e), `${name} exports ${e}`)
    if (name !== 'badimport') checkImports(module, manifest, file, wasm) // names and SDK signatures
  }
})

test('heartbeat: born once, logs tick N and its age, a milestone every 10 ticks', () => {
  const a = birth('heartbeat')
  assert.equal(a.lines, ['heartbeat born'])
  for (let i = 1; i <= 11; i++) assert.is(a.tick(), 0)
  assert.is(a.lines[1], 'tick 1, age 1 s')
  assert.is(a.lines[5], 'tick 5, age 5 s')
  assert.ok(a.lines.includes('milestone: 10 ticks (previous line: tick 9, age 9 s)'), a.lines.join(' | '))
  assert.is(a.lines.at(-1), 'tick 11, age 11 s')
  assert.is(a.lines.length, 1 + 11 + 1)
  // every clock reading is in the log: one at birth, one per tick
  const segment = EventLog.decodeSegment(a.log.takeSegment()!)
  assert.equal(segment[0].events[0], ['clock_now', BIRTH_NS])
  assert.equal(segment[3].events.map((e) => e[0]), ['clock_now', 'log_emit'])
})

test('ledger: entries grow with each tick, the heap grows, and equal inputs give an equal checksum', () => {
  const a = birth('ledger')
  const b = birth('ledger')
  for (let i = 0; i < 300; i++) { a.tick(); b.tick() }
  assert.is((a.exports.ledger_entries as () => number)(), 300)
  assert.match(a.lines.at(-1)!, /^ledger: entries 300, notes \d+, checksum [0-9a-f]+$/)
  assert.ok(a.memory().buffer.byteLength > 65536, `memory grew: ${a.memory().buffer.byteLength} bytes`)
  assert.is((a.exports.ledger_checksum as () => bigint)(), (b.exports.ledger_checksum as () => bigint)())
  assert.equal(a.lines, b.lines)
  const [rec] = a.log.ticksSince(0)
  assert.equal(rec.events.map((e) => e[0]), ['clock_now', 'rand_bytes', 'log_emit'])
})

test('finisher: idle for 4 ticks, finished on the 5th', () => {
  const a = birth('finisher')
  assert.equal([a.tick(), a.tick(), a.tick(), a.tick(), a.tick()], [0, 0, 0, 0, 2])
  assert.equal(a.lines, ['finisher: starting', 'finisher: 1/5', 'finisher: 2/5', 'finisher: 3/5', 'finisher: 4/5', 'finisher: 5/5'])
})

test('trap: logs a line then traps with unreachable; the record keeps both', () => {
  const a = birth('trap')
  assert.throws(() => a.tick(), /unreachable/)
  assert.equal(a.lines, ['trap: attempt 1, about to hit unreachable'])
  const [rec] = a.log.ticksSince(0)
  assert.equal(rec.events, [['log_emit', 'trap: attempt 1, about to hit unreachable']])
  assert.match(rec.trap!, /unreachable/)
})

test('bomb: grows memory by 16 pages a tick and keeps it', () => {
  const a = birth('bomb')
  a.tick(); a.tick(); a.tick()
  assert.is(a.lines[0], 'bomb: tick 1, memory 1 pages, grow(16) -> 1')
  assert.is(a.lines[2], 'bomb: tick 2, memory 17 pages, grow(16) -> 17')
  assert.ok(a.memory().buffer.byteLength >= 49 * 65536)
  assert.is(load('bomb').manifest.maxMemoryBytes, 4 * 1024 * 1024)
})

/**
 * Returns `wasm` with its memory's maximum set to `maxPages` (what the instrumenter does for the
 * manifest's max_memory_bytes), by rewriting the memory section (id 5): `01 00 <min>` becomes
 * `01 01 <min> <max>`. Handles only the single-byte LEB sizes AssemblyScript emits here.
 */
function capMemory (wasm: Uint8Array, maxPages: number): Uint8Array<ArrayBuffer> {
  const parts: Uint8Array[] = [wasm.subarray(0, 8)]
  for (let p = 8; p < wasm.length;) {
    const id = wasm[p]
    let size = 0; let shift = 0; let q = p + 1
    for (;;) { const x = wasm[q++]; size |= (x & 127) << shift; shift += 7; if ((x & 128) === 0) break }
    const body = wasm.subarray(q, q + size)
    if (id === 5) {
      assert.equal([...body], [1, 0, body[2]], 'one memory without a maximum')
      assert.ok(body[2] < 128 && maxPages < 128)
      parts.push(Uint8Array.of(5, 4, 1, 1, body[2], maxPages))
    } else parts.push(wasm.subarray(p, q + size))
    p = q + size
  }
  return new Uint8Array(Buffer.concat(parts))
}

test('bomb under its 4 MiB cap: memory.grow returns -1 at the cap, then allocation traps', () => {
  const { wasm, manifest } = load('bomb')
  const module = new WebAssembly.Module(capMemory(wasm, manifest.maxMemoryBytes / 65536))
  const lines: string[] = []
  const log = new EventLog()
  let memory: WebAssembly.Memory | undefined
  const ctx: HostContext = {
    memory: () => memory!, did: DID, sign: () => new Uint8Array(64), budget: () => 0n, now: () => 0n,
    randomFill: () => {}, log, emit: (l) => { lines.push(l) }, requestMigration: () => {},
  }
  const inst = new WebAssembly.Instance(module, igorImports(manifest, ctx))
  memory = inst.exports.memory as WebAssembly.Memory
  const ex = inst.exports as Record<string, () => number>
  log.beginTick(0); ex._initialize(); log.endTick({ fuel: 0n, result: null, trap: null })
  let trap: string | null = null
  for (let t = 1; t <= 20 && trap === null; t++) {
    log.beginTick(t)
    try { ex.agent_tick() } catch (e) { trap = (e as Error).message }
    log.endTick({ fuel: 0n, result: trap === null ? 0 : null, trap })
  }
  assert.ok(lines.includes('bomb: tick 4, memory 49 pages, grow(16) -> -1'), lines.join(' | '))
  assert.match(trap ?? '', /unreachable/)
  assert.ok(memory.buffer.byteLength <= 4 * 1024 * 1024)
})

test('badimport: refused before instantiation, naming igor.rand_bytes and capability "rand"', () => {
  const { module, manifest } = load('badimport')
  assert.throws(() => checkImports(module, manifest, 'badimport.wasm'), (e: unknown) =>
    e instanceof ModuleError && (e as Error).message === 'badimport.wasm: imports not granted by the manifest: igor.rand_bytes needs capability "rand"')
})

test('identity: logs its DID and signatures that verify with the agent key', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const a = birth('identity', { sign: (m) => new Uint8Array(edSign(null, m, privateKey)) })
  assert.equal(a.lines, [`identity: I am ${DID}`])
  a.tick(); a.tick()
  const m = /^identity: (\S+) signed "tick 2": ([0-9a-f]{128})$/.exec(a.lines[2])
  assert.ok(m, a.lines[2])
  assert.is(m![1], DID)
  assert.ok(edVerify(null, new TextEncoder().encode('tick 2'), publicKey, Buffer.from(m![2], 'hex')))
})

test('loop: links and exports agent_tick (not run: only fuel metering can end it)', () => {
  const { module, manifest } = load('loop')
  checkImports(module, manifest, 'loop.wasm')
  assert.is(manifest.maxFuelPerTick, 10_000_000n)
})

test.run()
