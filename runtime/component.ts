/**
 * Component agents (docs/ABI.md "Components", docs/FORMAT.md "Component state"): a WebAssembly
 * component is transpiled by jco in instantiation mode — jco's JavaScript glue lifts and lowers the
 * canonical ABI, while igord compiles and instantiates every core module itself, each after the
 * same instrumentation as a core agent (runtime/instrument.ts: feature gate, fuel, exported
 * globals, memory cap), so fuel, snapshots and rollback see every core instance.
 *
 * jco (`@bytecodealliance/jco-transpile`, ~100 MB installed) is loaded only in a one-shot worker
 * thread (runtime/component-thread.ts) on a cache miss: a core agent, `igord --version` and a
 * component whose transpile is cached never load it. The transpile (glue and core modules) is
 * cached by the component's code CID in this thread's memory and in the host's code cache
 * directory (`<cid>-jco-<recipe>.code`); each core module's instrumentation is cached by its own
 * CID by runtime/code-cache.ts as any module's is.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads'
import { ModuleError } from '../checkpoint/errors.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { makePrivateDir } from '../checkpoint/layout.ts'
import { atomicWrite } from '../checkpoint/store.ts'
import { DEFAULT_CODE_CACHE_BYTES, evict, loadInstrumented } from './code-cache.ts'
import type { CodeCache, InstrumentedGlobal } from './code-cache.ts'
import { FUEL_GLOBAL } from './fuel.ts'
import { scanModule } from './module-facts.ts'
import type { HostContext } from '../hostcalls/igor.ts'
import { WASI2_FUNCTIONS, wasi2Host as makeWasi2Host } from '../hostcalls/wasi2.ts'
import type { Manifest } from '../hostcalls/manifest.ts'

/**
 * Globals of core module k of a component are numbered `k × CORE_GLOBAL_STRIDE + i` in snapshots
 * and state roots (i: the global's index in module k; V8 allows at most 1,000,000 globals).
 */
export const CORE_GLOBAL_STRIDE = 1 << 20

/** Version of this file's transpile + glue contract; part of the cache recipe. */
export const COMPONENT_VERSION = 'igord-component-1'

/** What jco is asked for: instantiation mode, synchronous, no inlined core modules, no WASI shim. */
export const JCO_OPTIONS: Readonly<Record<string, unknown>> = {
  instantiation: 'sync',
  asyncMode: 'sync',
  base64Cutoff: 0,
  emitTypescriptDeclarations: false,
  wasiShim: false,
  tlaCompat: false,
  minify: false,
  optimize: false,
}

/**
 * True when `bytes` start with the component-model preamble: `\0asm`, version 0x0d 0x00, layer
 * 0x01 0x00 (a core module has version 1, layer 0).
 */
export function isComponent (bytes: Uint8Array): boolean {
  return bytes.length >= 8 && bytes[0] === 0 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d &&
    bytes[6] === 0x01 && bytes[7] === 0x00 && !(bytes[4] === 1 && bytes[5] === 0)
}

/** A mutable global of one core module of a component: `index` as in {@link CORE_GLOBAL_STRIDE}. */
export interface ComponentGlobal extends InstrumentedGlobal {
  /** The core module it belongs to (its position in the component). */
  core: number
}

/** One core module of a component, instrumented and compiled. */
export interface ComponentCore {
  /** jco's file name for it (`agent.core.wasm`, `agent.core2.wasm`, …): its position in the component. */
  name: string
  /** CID of its original bytes. */
  cid: string
  module: WebAssembly.Module
  /** True when it defines (not imports) a memory. */
  definesMemory: boolean
}

/** What igord reads of one glue instance's own state: its resource handle tables (jco's `HANDLE_TABLES`). */
interface GlueHooks { handleTables?: number[][] }

/** The jco glue's entry point in instantiation mode, with igord's hooks object first. */
type GlueInstantiate = (hooks: GlueHooks, getCoreModule: (name: string) => WebAssembly.Module, imports: Record<string, unknown>, instantiateCore: (m: WebAssembly.Module, imports?: WebAssembly.Imports) => WebAssembly.Instance) => Record<string, unknown>

/** A component ready to instantiate: transpiled, every core module instrumented and compiled. */
export interface ComponentCode {
  /** CID of the component's bytes (the agent's code CID). */
  cid: string
  cores: ComponentCore[]
  /** The core module whose memory is the agent's memory (exactly one defines a memory). */
  memoryCore: number
  /** Every core module's mutable globals, in snapshot order (core, then index). */
  globals: ComponentGlobal[]
  /** The component's imports (`igor:agent/clock@1.0.0`, versioned when a core module names the version). */
  imports: string[]
  /** The component's exports as jco lists them (`[name, 'function' | 'instance']`). */
  exports: [string, string][]
  /** The glue's `instantiate` (all of its state lives inside each call), hooks first. */
  glue: GlueInstantiate
}

/** Transpile result as cached: glue source, core files, imports and exports. */
interface Transpiled { glue: string; files: [string, Uint8Array][]; imports: string[]; exports: [string, string][] }

function jcoVersion (): string {
  try {
    return String((createRequire(import.meta.url)('@bytecodealliance/jco-transpile/package.json') as { version: unknown }).version)
  } catch { return 'missing' }
}

let recipe: string | null = null
/** Hash of everything a transpile depends on besides the component's bytes (16 hex digits). */
export function componentRecipe (): string {
  recipe ??= createHash('sha256').update(JSON.stringify([COMPONENT_VERSION, jcoVersion(), JCO_OPTIONS])).digest('hex').slice(0, 16)
  return recipe
}

const memo = new Map<string, Transpiled>()
const compiled = new Map<string, ComponentCode>()
/** Counters of this thread (tests, benchmarks): transpiles run, and cache hits. */
export const componentCacheStats = { transpiles: 0, memoryHits: 0, diskHits: 0 }

/** Options of {@link loadComponent}. */
export interface ComponentLoadOptions {
  /** Memory cap in 64 KiB pages (the manifest's memory limit), applied to every core module. */
  memoryLimitPages: number
  /** Name used in error messages. */
  file?: string
  /** The on-disk code cache (transpile and each core module's instrumentation). */
  cache?: CodeCache
}

/**
 * The component `wasm` transpiled by jco (cached by CID) with every core module instrumented
 * (cached by its own CID) and compiled.
 * @throws ModuleError when jco cannot transpile it, a core module is refused by the instrumenter
 *   (named `<file> (core module agent.core2.wasm): …`), no or several core modules define a memory,
 *   or the component does not export `init` and `tick`
 */
export function loadComponent (wasm: Uint8Array, opts: ComponentLoadOptions): ComponentCode {
  const file = opts.file ?? 'component.wasm'
  const cid = cidOf(wasm)
  const key = `${cid}-${opts.memoryLimitPages}`
  const done = compiled.get(key)
  if (done !== undefined) { componentCacheStats.memoryHits++; return done }
  const t = transpiled(wasm, cid, file, opts.cache)
  const missing = ['init', 'tick'].filter((n) => !t.exports.some(([e, k]) => e === n && k === 'function'))
  if (missing.length > 0) throw new ModuleError(`${file}: a component agent must export the functions init and tick of world igor:agent/agent (it lacks ${missing.join(', ')}; exports: ${t.exports.map(([e]) => e).join(', ') || 'none'})`)
  const cores: ComponentCore[] = []
  const globals: ComponentGlobal[] = []
  t.files.forEach(([name, bytes], k) => {
    const facts = scanModule(bytes)
    const inst = loadInstrumented(bytes, { memoryLimitPages: opts.memoryLimitPages, file: `${file} (core module ${name})`, importedMemory: true, ...(opts.cache === undefined ? {} : { cache: opts.cache }) })
    cores.push({ name, cid: inst.cid, module: new WebAssembly.Module(inst.binary as Uint8Array<ArrayBuffer>), definesMemory: facts.memories.length > 0 })
    for (const g of inst.globals) globals.push({ ...g, index: k * CORE_GLOBAL_STRIDE + g.index, core: k })
  })
  const withMemory = cores.flatMap((c, k) => c.definesMemory ? [k] : [])
  if (withMemory.length !== 1) {
    throw new ModuleError(`${file}: ${withMemory.length} core modules define a memory (${withMemory.map((k) => cores[k].name).join(', ') || 'none'}); igord snapshots a component with exactly one`)
  }
  const code: ComponentCode = { cid, cores, memoryCore: withMemory[0], globals, imports: t.imports, exports: t.exports, glue: glueFunction(t.glue, file) }
  compiled.set(key, code)
  return code
}

/** Empties this thread's memory caches of components (tests, benchmarks). */
export function clearComponentCache (): void { memo.clear(); compiled.clear() }

/**
 * The glue's `instantiate` as a function of its own: the ES module text minus its two `export`
 * keywords, evaluated with `new Function`. Every piece of the glue's state lives inside each call
 * of `instantiate` (checked: nothing but `instantiate` and `_util` at the top level), so one
 * function serves every instance. The glue's resource handle tables (`const HANDLE_TABLES = []`,
 * the only glue state that outlives a call of a component without async) are handed to the
 * caller's hooks object, so the runtime can see handles held across ticks.
 * @throws ModuleError when the glue has ES imports or other exports, or uses resources without the
 *   `HANDLE_TABLES` igord knows how to watch (another jco version)
 */
function glueFunction (src: string, file: string): GlueInstantiate {
  let body = src.replace(/^export function instantiate\(/m, 'function instantiate(').replace(/^export const _util = /m, 'const _util = ')
  if (/^\s*(import|export)\b/m.test(body)) throw new ModuleError(`${file}: jco's glue imports or exports more than instantiate (this igord expects instantiation mode without ES imports)`)
  const tables = /const HANDLE_TABLES\s*=\s*\[\];/
  if (tables.test(body)) body = body.replace(tables, 'const HANDLE_TABLES = []; __igor_state.current.handleTables = HANDLE_TABLES;')
  else if (/rscTableCreate(Own|Borrow)\(/.test(body)) throw new ModuleError(`${file}: the component uses resources, and this jco's glue keeps their handles where igord cannot see them; igord cannot snapshot it`)
  // eslint-disable-next-line no-new-func -- the glue is jco's generated code for this component
  const inner = new Function('__igor_state', `"use strict";\n${body}\nreturn instantiate`)
  const state: { current: GlueHooks } = { current: {} }
  const instantiate = inner(state) as (...args: unknown[]) => Record<string, unknown>
  return (hooks, ...args) => {
    state.current = hooks
    try { return instantiate(...args) } finally { state.current = {} }
  }
}

/** T_FLAG of jco's handle tables: set on a free slot's link and on an own handle's rep. */
const T_FLAG = 1 << 30

/**
 * Live handles in jco's handle tables: each table is `[free-list head, 0]` followed by one
 * `[scope, rep]` pair per handle; a slot is free when its first word has T_FLAG set.
 */
export function liveHandles (tables: readonly number[][] | undefined): number {
  let n = 0
  for (const t of tables ?? []) {
    if (t === undefined) continue
    for (let k = 1; 2 * k + 1 < t.length; k++) if ((t[2 * k] & T_FLAG) === 0 && t[2 * k + 1] !== 0) n++
  }
  return n
}

/** The transpile of `wasm`: memory, disk cache, or jco in a worker thread now. */
function transpiled (wasm: Uint8Array, cid: string, file: string, cache?: CodeCache): Transpiled {
  const hit = memo.get(cid)
  if (hit !== undefined) return hit
  const entry = cache === undefined ? null : path.join(cache.dir, `${cid}-jco-${componentRecipe()}.code`)
  if (entry !== null) {
    const got = readTranspiled(entry, cid, cache!)
    if (got !== null) { componentCacheStats.diskHits++; memo.set(cid, got); return got }
  }
  const t = transpileInWorker(wasm, file)
  componentCacheStats.transpiles++
  memo.set(cid, t)
  if (entry !== null) writeTranspiled(entry, cid, t, cache!)
  return t
}

const MAGIC = 'IGJ1'
interface Header { recipe: string; cid: string; imports: string[]; exports: [string, string][]; files: [string, number][]; glue: number; digest: string }

function writeTranspiled (file: string, cid: string, t: Transpiled, cache: CodeCache): void {
  const glue = Buffer.from(t.glue, 'utf8')
  const parts = [glue, ...t.files.map(([, b]) => b)]
  const digest = createHash('sha256')
  for (const p of parts) digest.update(p)
  const h: Header = { recipe: componentRecipe(), cid, imports: t.imports, exports: t.exports, files: t.files.map(([n, b]) => [n, b.length]), glue: glue.length, digest: digest.digest('hex') }
  const head = Buffer.from(JSON.stringify(h), 'utf8')
  const len = Buffer.alloc(4); len.writeUInt32LE(head.length)
  try {
    makePrivateDir(cache.dir)
    atomicWrite(file, [Buffer.from(MAGIC), len, head, ...parts])
  } catch (e) {
    cache.note?.(`code cache: cannot write ${file} (${(e as Error).message.split('\n')[0]}); going on without it`)
    return
  }
  evict(cache.dir, cache.maxBytes ?? DEFAULT_CODE_CACHE_BYTES, file)
}

function readTranspiled (file: string, cid: string, cache: CodeCache): Transpiled | null {
  let b: Buffer
  try { b = fs.readFileSync(file) } catch { return null }
  const bad = (why: string): null => {
    cache.note?.(`code cache: ${file}: ${why}; transpiling again and replacing it`)
    try { fs.rmSync(file, { force: true }) } catch { /* replaced anyway */ }
    return null
  }
  if (b.length < 8 || b.subarray(0, 4).toString('latin1') !== MAGIC) return bad('not a transpile entry (bad magic)')
  const hl = b.readUInt32LE(4)
  let h: Header
  try { h = JSON.parse(b.subarray(8, 8 + hl).toString('utf8')) as Header } catch { return bad('header is not JSON') }
  if (h.recipe !== componentRecipe() || h.cid !== cid) return bad('made for another recipe or component')
  let at = 8 + hl
  const body = b.subarray(at)
  if (createHash('sha256').update(body).digest('hex') !== h.digest) return bad('contents do not match their digest')
  const glue = b.subarray(at, at + h.glue).toString('utf8'); at += h.glue
  const files: [string, Uint8Array][] = []
  for (const [n, size] of h.files) { files.push([n, new Uint8Array(b.subarray(at, at + size))]); at += size }
  if (at !== b.length) return bad('truncated or too long')
  try { const now = new Date(); fs.utimesSync(file, now, now) } catch { /* recency is a hint */ }
  return { glue, files, imports: h.imports, exports: h.exports }
}

/** Longest a transpile may take before the waiting thread gives up, ms. */
const TRANSPILE_TIMEOUT_MS = 5 * 60_000

const BOOT = `const { workerData } = require('node:worker_threads')
import(workerData.url).catch((e) => { workerData.port.postMessage({ ok: false, message: 'cannot load jco: ' + String((e && e.message) || e) }); Atomics.store(workerData.signal, 0, 1); Atomics.notify(workerData.signal, 0) })`

/**
 * Transpiles in a one-shot worker thread (runtime/component-thread.ts, which loads jco) while this
 * thread blocks in `Atomics.wait` (as runtime/code-cache.ts does for binaryen), so callers stay
 * synchronous and jco never enters this thread.
 */
function transpileInWorker (wasm: Uint8Array, file: string): Transpiled {
  const url = new URL(import.meta.url.endsWith('.ts') ? './component-thread.ts' : './component-thread.js', import.meta.url)
  const signal = new Int32Array(new SharedArrayBuffer(4))
  const { port1, port2 } = new MessageChannel()
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'))
  const worker = new Worker(BOOT, { eval: true, workerData: { url: url.href, signal, port: port2, wasm, options: JCO_OPTIONS }, transferList: [port2], execArgv })
  worker.unref()
  try {
    const deadline = Date.now() + TRANSPILE_TIMEOUT_MS
    while (Atomics.load(signal, 0) === 0) {
      if (Date.now() > deadline) throw new ModuleError(`${file}: jco did not transpile the component within ${TRANSPILE_TIMEOUT_MS / 60_000} minutes`)
      Atomics.wait(signal, 0, 0, 1000)
    }
    const got = receiveMessageOnPort(port1)?.message as ({ ok: true } & Transpiled) | { ok: false; message: string } | undefined
    if (got === undefined) throw new ModuleError(`${file}: the transpile thread ended without an answer`)
    if (!got.ok) throw new ModuleError(`${file}: jco could not transpile the component (${got.message})`)
    return { glue: got.glue, files: got.files.map(([n, b]) => [n, new Uint8Array(b)]), imports: versioned(got.imports, got.files), exports: got.exports }
  } finally {
    port1.close()
    void worker.terminate()
  }
}

/**
 * jco lists imports without their versions (`igor:agent/clock`); the core modules import them
 * under their full names (`igor:agent/clock@1.0.0`): use those where one matches.
 */
function versioned (imports: string[], files: [string, Uint8Array][]): string[] {
  const full = new Set<string>()
  for (const [, b] of files) for (const i of scanModule(b).imports) if (i.module.includes(':')) full.add(i.module)
  return imports.map((name) => [...full].find((f) => f === name || f.startsWith(`${name}@`)) ?? name)
}

/** One live instance of a component: its core instances and the glue's exports. */
export interface ComponentInstance {
  /** Core instances by core module number. */
  cores: WebAssembly.Instance[]
  /** The agent's memory (of {@link ComponentCode.memoryCore}). */
  memory: WebAssembly.Memory
  /** Each core instance's fuel counter `__igor_fuel`. */
  fuel: WebAssembly.Global[]
  /** The world's exports, lifted by the glue. */
  init (): void
  tick (): unknown
  /** Resource handles the glue's tables hold now (0 for a component without resources). */
  handles (): number
}

/**
 * Instantiates `code`: the glue asks for each core module by name and igord hands it the
 * instrumented, compiled one; every core instance the glue makes goes through igord's
 * `instantiateCore`, so none escapes metering or the snapshot.
 * @param imports the host interfaces, keyed as the glue asks (`igor:agent/clock`)
 * @throws ModuleError when the glue compiles or instantiates a core module igord did not hand it,
 *   or lacks init/tick; whatever instantiation throws (a trap in a start function)
 */
export function instantiateComponent (code: ComponentCode, imports: Record<string, unknown>, file = 'component.wasm'): ComponentInstance {
  const byName = new Map(code.cores.map((c, k) => [c.name, k]))
  const byModule = new Map(code.cores.map((c, k) => [c.module, k]))
  const cores: WebAssembly.Instance[] = []
  const hooks: GlueHooks = {}
  const ex = code.glue(
    hooks,
    (name) => {
      const k = byName.get(name)
      if (k === undefined) throw new ModuleError(`${file}: the glue asks for a core module ${name} that jco did not produce`)
      return code.cores[k].module
    },
    imports,
    (m, imp) => {
      const k = byModule.get(m)
      if (k === undefined) throw new ModuleError(`${file}: the glue instantiates a core module igord did not instrument`)
      if (cores[k] !== undefined) throw new ModuleError(`${file}: the glue instantiates core module ${code.cores[k].name} twice; igord supports one instance per core module`)
      const inst = new WebAssembly.Instance(m, imp)
      cores[k] = inst
      return inst
    },
  )
  if (typeof ex.init !== 'function' || typeof ex.tick !== 'function') throw new ModuleError(`${file}: the component's glue has no init and tick`)
  const missing = code.cores.flatMap((c, k) => cores[k] === undefined ? [c.name] : [])
  if (missing.length > 0) throw new ModuleError(`${file}: the glue did not instantiate core module(s) ${missing.join(', ')}`)
  return {
    cores,
    memory: cores[code.memoryCore].exports.memory as WebAssembly.Memory,
    fuel: cores.map((c) => c.exports[FUEL_GLOBAL] as WebAssembly.Global),
    init: ex.init as () => void,
    tick: ex.tick as () => unknown,
    handles: () => liveHandles(hooks.handleTables),
  }
}

/**
 * igord's WASI 0.2 host (hostcalls/wasi2.ts: clocks, random, stdout/stderr, exit through the event
 * log) for components whose manifest grants `wasi`: the `wasi:` interfaces it serves (unversioned,
 * `wasi:cli/stdout`) and, per instance, its import object (keyed as the glue asks) and a `flush`
 * of partial output lines run after every metered call. Which functions of those interfaces it
 * serves is checked at load by hostcalls/wasi2.ts `checkWasi2Imports`.
 */
export const wasi2Host: {
  served: ReadonlySet<string>
  create (manifest: Manifest, ctx: HostContext): { imports: Record<string, unknown>; flush (): void }
} = { served: new Set(Object.keys(WASI2_FUNCTIONS)), create: (manifest, ctx) => makeWasi2Host(manifest, ctx) }

/**
 * The function imports of every core module of `code` (`{ module: 'wasi:io/streams@0.2.12',
 * name: '[method]output-stream.write' }`, …): what hostcalls/wasi2.ts `checkWasi2Imports` checks.
 */
export function coreImports (code: ComponentCode): { module: string; name: string }[] {
  return code.cores.flatMap((c) => WebAssembly.Module.imports(c.module).filter((i) => i.kind === 'function'))
}
