/**
 * CLI startup (docs/RATIONALE.md "CLI startup"): the commands that only read files or ask a node
 * (`--version`, `--help`, `inspect`, `verify`, `ps`, `send`, `logs`) load neither binaryen nor
 * libp2p, the commands that need them still do, and Node's compile cache goes under the user's
 * cache directory (cmd/cache.ts, bin/igord), never into the working directory. No timing here:
 * the speed is bench/startup.ts.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { COMPILE_CACHE_SUBDIR, compileCacheDir } from '../cmd/cache.ts'
import { agentWasm, cleanup, IGORD, igord, ROOT, tempDir } from './helpers.ts'

test.after(cleanup)

const PRELOAD = join(ROOT, 'test', 'fixtures', 'loaded-modules.ts')

/** Runs `node cmd/igord.ts <args>` with the module recorder; its exit code and the packages it loaded. */
function loaded (args: string[], expectCode: number): Set<string> {
  const file = join(tempDir('igord-loaded-'), 'modules.txt')
  const r = spawnSync(process.execPath, ['--import', PRELOAD, IGORD, ...args], { encoding: 'utf8', timeout: 120_000, killSignal: 'SIGKILL', env: { ...process.env, LOADED_MODULES_FILE: file } })
  assert.is(r.status, expectCode, `igord ${args.join(' ')}: ${r.stderr}`)
  const pkgs = new Set<string>()
  for (const url of readFileSync(file, 'utf8').split('\n')) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
    if (m !== null) pkgs.add(m[1])
  }
  return pkgs
}

const heavy = (pkgs: Set<string>): string[] => [...pkgs].filter((p) => p === 'binaryen' || p === 'libp2p' || p.startsWith('@libp2p/') || p.startsWith('@chainsafe/'))

test('compileCacheDir: the OS cache directory, never a relative path', () => {
  const sub = COMPILE_CACHE_SUBDIR
  assert.is(compileCacheDir({ XDG_CACHE_HOME: '/x/cache' }, 'linux', '/home/u'), join('/x/cache', sub))
  assert.is(compileCacheDir({}, 'linux', '/home/u'), join('/home/u/.cache', sub))
  assert.is(compileCacheDir({ XDG_CACHE_HOME: 'rel' }, 'linux', '/home/u'), join('/home/u/.cache', sub), 'a relative XDG_CACHE_HOME is ignored (XDG spec)')
  assert.is(compileCacheDir({ XDG_CACHE_HOME: '/x/cache' }, 'darwin', '/Users/u'), join('/Users/u/Library/Caches', sub))
  assert.is(compileCacheDir({ LOCALAPPDATA: '/c/Users/u/AppData/Local' }, 'win32', '/c/Users/u'), join('/c/Users/u/AppData/Local', sub))
  assert.is(compileCacheDir({}, 'linux', null), null)
  assert.is(compileCacheDir({}, 'linux', 'relative/home'), null)
  assert.is(compileCacheDir({}, 'win32', '/c/Users/u'), null)
})

test('inspect, verify, ps, send, logs, --version and --help load neither binaryen nor libp2p (--version and --help not even cbor-x); run, verify --replay and instrument load binaryen', () => {
  const dir = tempDir('igord-startup-')
  const r = igord(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '2', '--interval', '10ms', '--quiet'])
  assert.is(r.code, 0, r.stderr)
  const ckpt = join(dir, 'heartbeat.ckpt')
  const none = join(dir, 'no-node')
  const light: [string[], number][] = [
    [['--version'], 0], [['--help'], 0], [['inspect', ckpt], 0], [['inspect', ckpt, '--json'], 0],
    [['verify', dir], 0], [['verify', dir, '--json'], 0], [['ps', '--node', none], 9], [['stop', 'x', '--node', none], 9],
    [['send', 'heartbeat', 'hi', '--node', none], 9], [['logs', 'heartbeat', '--dir', dir], 0], [['peers', '--node', none], 9],
  ]
  for (const [args, code] of light) assert.equal(heavy(loaded(args, code)), [], `igord ${args.join(' ')}`)
  for (const args of [['--version'], ['--help']]) assert.not.ok(loaded(args, 0).has('cbor-x'), `igord ${args.join(' ')} loads cbor-x only when it decodes or encodes`)
  for (const [args, code] of [[['verify', '--replay', dir], 0], [['instrument', agentWasm('heartbeat'), '-o', join(dir, 'out.wasm')], 0]] as [string[], number][]) {
    assert.ok(loaded(args, code).has('binaryen'), `igord ${args.join(' ')} loads binaryen`)
  }
})

/** Files (recursively) under `dir`. */
function files (dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name) : []
}

test('the compile cache goes under $XDG_CACHE_HOME/igord/compile-cache (bin/igord and cmd/igord.ts), nothing into the working directory; NODE_DISABLE_COMPILE_CACHE turns it off', () => {
  const base = tempDir('igord-cache-')
  const cwd = join(base, 'cwd')
  mkdirSync(cwd)
  const env = (xdg: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: join(base, xdg), ...extra }
    delete e.NODE_COMPILE_CACHE
    if (extra.NODE_DISABLE_COMPILE_CACHE === undefined) delete e.NODE_DISABLE_COMPILE_CACHE
    return e
  }
  const run = (argv: string[], e: NodeJS.ProcessEnv) => {
    const r = spawnSync(argv[0], argv.slice(1), { cwd, env: e, encoding: 'utf8', timeout: 120_000, killSignal: 'SIGKILL' })
    assert.is(r.status, 0, r.stderr)
    assert.is(r.stdout, '0.1.0\n')
  }
  run([join(ROOT, 'bin', 'igord'), '--version'], env('xdg1'))
  assert.ok(files(join(base, 'xdg1', COMPILE_CACHE_SUBDIR)).length > 0, 'bin/igord filled the cache')
  run([process.execPath, IGORD, '--version'], env('xdg2'))
  assert.ok(existsSync(join(base, 'xdg2', COMPILE_CACHE_SUBDIR)), 'cmd/igord.ts enabled the same cache directory')
  run([join(ROOT, 'bin', 'igord'), '--version'], env('xdg3', { NODE_DISABLE_COMPILE_CACHE: '1' }))
  run([process.execPath, IGORD, '--version'], env('xdg3', { NODE_DISABLE_COMPILE_CACHE: '1' }))
  assert.not.ok(existsSync(join(base, 'xdg3')), 'no cache with NODE_DISABLE_COMPILE_CACHE')
  assert.equal(readdirSync(cwd), [], 'nothing written into the working directory')
})

test.run()
