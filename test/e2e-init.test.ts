// test-timeout: 1200
/**
 * A new user's path, from the packed tarball only: `npm pack` → a TypeScript project that installs
 * it, type-checks `import { … } from 'igord'` against the shipped .d.ts and runs → its `igord init`
 * writes an AssemblyScript and a C agent project → each installs the tarball, builds (asc; clang),
 * and its `npm test` runs three ticks, resumes for three more and `igord verify --replay`s VALID;
 * a non-empty directory is refused. npm uses the local cache first (`--prefer-offline`) and every
 * step is bounded by a timeout.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import type { SpawnSyncReturns } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cleanup, ROOT, tempDir } from './helpers.ts'

test.after(cleanup)

const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}`, npm_config_update_notifier: 'false' }
const NPM_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error']
const work = tempDir('igord-init-')
let tarball = ''

/** Runs a command to completion (SIGKILL after `timeoutMs`) and asserts exit 0, showing its output otherwise. */
function sh (cmd: string, args: string[], cwd: string, timeoutMs: number): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' })
  assert.is(r.status, 0, `${cmd} ${args.join(' ')} in ${cwd}: exit ${r.status} ${r.signal ?? ''}\n${r.stdout}\n${r.stderr}`)
  return r
}

const npmInstall = (cwd: string, ...pkgs: string[]) => sh('npm', ['install', ...NPM_FLAGS, ...pkgs], cwd, 480_000)

test('npm pack', () => {
  execFileSync('npm', ['pack', '--pack-destination', work, '--loglevel=error'], { cwd: ROOT, env, stdio: 'pipe', timeout: 180_000 })
  const t = readdirSync(work).find((f) => f.endsWith('.tgz'))
  assert.ok(t !== undefined, 'npm pack produced a tarball')
  tarball = join(work, t)
})

const consumer = join(work, 'consumer')
const CONSUMER_TS = `import { birth, resume, verify, replay, inspect, instrument, IgordError, EXIT } from 'igord'
import type { Agent, LoopEnd, VerifyReport } from 'igord'

const [wasm, dir] = process.argv.slice(2)
const agent: Agent = await birth({ wasm, dir, simSeed: 'consumer' })
const end: LoopEnd = await agent.tick(2)
await agent.close()
const again = await resume(agent.ckptPath)
await again.tick(1)
await again.close()
const report: VerifyReport = await verify(dir)
const r = await replay(dir)
const view = await inspect(again.ckptPath)
const out = await instrument(wasm)
let code = ''
try { await inspect(dir + '/missing.ckpt') } catch (e) { if (e instanceof IgordError && e.exitCode === EXIT.IO) code = e.code }
console.log(JSON.stringify({ end: end.status, valid: report.valid, replayed: r.valid, tick: view.tick, did: view.did === agent.did, bytes: out.binary.length > 0, code }))
`

test('a TypeScript project installs the tarball and type-checks `import { … } from \'igord\'` against its .d.ts', () => {
  mkdirSync(consumer)
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }))
  npmInstall(consumer, tarball)
  writeFileSync(join(consumer, 'main.ts'), CONSUMER_TS)
  writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'es2024', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: true, // as `tsc --init` writes it: libp2p's own .d.ts need lib dom
      lib: ['es2024'], types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')],
    },
    files: ['main.ts'],
  }))
  sh(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], consumer, 180_000)
  // and a type error in the use of the API is caught
  writeFileSync(join(consumer, 'bad.ts'), "import { birth } from 'igord'\nawait birth({ wasm: 'x.wasm', dir: 1 })\n")
  const bad = spawnSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['--ignoreConfig', '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--target', 'es2024', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules', '@types'), 'bad.ts'], { cwd: consumer, env, encoding: 'utf8', timeout: 180_000 })
  assert.is.not(bad.status, 0)
  const errors = bad.stdout.trim().split('\n').filter((l) => /error TS/.test(l))
  assert.is(errors.length, 1, bad.stdout) // the types resolved (not \`any\`): only the bad field is refused
  assert.match(errors[0], /^bad\.ts\(2,\d+\): error TS2322: Type 'number' is not assignable to type 'string'/)
})

const asProject = join(work, 'as-agent')
const cProject = join(work, 'c-agent')

test('igord init writes an AssemblyScript project and refuses a non-empty directory (exit 2, one line)', () => {
  const igord = join(consumer, 'node_modules', '.bin', 'igord')
  const r = sh(igord, ['init', 'as-agent'], work, 60_000)
  assert.match(r.stdout, /created an AssemblyScript agent 'as-agent' in as-agent\//)
  for (const f of ['package.json', 'as-agent.manifest.json', 'asconfig.json', 'assembly/index.ts']) assert.ok(readFileSync(join(asProject, f), 'utf8').length > 0, f)
  assert.match(readFileSync(join(asProject, 'assembly/index.ts'), 'utf8'), /from "igord\/sdk\/as"/)
  const again = spawnSync(igord, ['init', 'as-agent'], { cwd: work, env, encoding: 'utf8', timeout: 60_000 })
  assert.is(again.status, 2)
  assert.is(again.stderr.trim().split('\n').length, 1, again.stderr)
  assert.match(again.stderr, /as-agent: directory is not empty/)
  const c = sh(igord, ['init', 'c-agent', '--lang', 'c', '--name', 'counter'], work, 60_000)
  assert.match(c.stdout, /created a C agent 'counter' in c-agent\//)
})

test('the AssemblyScript project: npm install of the tarball → build → npm test (run, resume, verify --replay VALID)', () => {
  npmInstall(asProject, tarball)
  sh('npm', ['run', 'build', '--silent'], asProject, 300_000)
  const t = sh('npm', ['test', '--silent'], asProject, 300_000)
  assert.match(t.stdout, /\[as-agent\] tick 3, age 3000 ms/)
  assert.match(t.stdout, /\[as-agent\] tick 6, age 6000 ms/)
  assert.match(t.stdout, /^VALID: replayed 7 ticks/m)
  assert.match(t.stderr, /resumed did:key:\S+ as 'as-agent' at tick 3/)
})

test('the TypeScript project runs against the packed library with the built agent', () => {
  const wasm = join(asProject, 'build', 'as-agent.wasm')
  writeFileSync(join(asProject, 'build', 'as-agent.manifest.json'), readFileSync(join(asProject, 'as-agent.manifest.json')))
  const r = sh(process.execPath, ['main.ts', wasm, join(work, 'consumer-data')], consumer, 180_000)
  assert.equal(JSON.parse(r.stdout.trim()), { end: 'running', valid: true, replayed: true, tick: 3, did: true, bytes: true, code: 'IO' })
})

test('the C project: npm install of the tarball → make (clang) → npm test (run, resume, verify --replay VALID)', () => {
  npmInstall(cProject, tarball)
  sh('npm', ['run', 'build', '--silent'], cProject, 300_000)
  const t = sh('npm', ['test', '--silent'], cProject, 300_000)
  assert.match(t.stdout, /\[counter\] tick 6, age 6000 ms/)
  assert.match(t.stdout, /^VALID: replayed 7 ticks/m)
})

test.run()
