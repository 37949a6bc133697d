/**
 * Builds an existing AssemblyScript agent (agents-as/agents/<name>.ts, unchanged) as a component of
 * world igor:agent/agent (wit/agent.wit): the source is compiled against the component SDK
 * (agents-as/component/igor.ts, in place of agents-as/sdk/igor.ts) with an entry file that exports
 * its `agent_tick` as `tick`, its `agent_init` (or nothing) as `init`, and `cabi_realloc`; then the
 * WIT is embedded (`wasm-tools component embed`) and the component made (`wasm-tools component new`),
 * both through jco's wasm-tools build (`@bytecodealliance/jco-transpile/wasm-tools`).
 *
 * Usage: node scripts/componentize-as.ts <name> [<out dir>]   (default out dir agents-as/build)
 * Writes `<out>/<name>.component.wasm` and `<out>/<name>.component.manifest.json` (the agent's own
 * manifest). Exit 1 with one line on any failure.
 */
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { componentEmbed, componentNew } from '@bytecodealliance/jco-transpile/wasm-tools'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const [name, outArg] = process.argv.slice(2)
if (name === undefined || !/^[a-z][a-z0-9-]*$/.test(name)) {
  console.error('usage: node scripts/componentize-as.ts <agent name> [<out dir>]')
  process.exit(1)
}
const out = outArg ?? join(root, 'agents-as/build')
const src = join(root, 'agents-as/agents', `${name}.ts`)
const tmp = mkdtempSync(join(tmpdir(), 'igord-componentize-'))
try {
  const text = readFileSync(src, 'utf8')
  mkdirSync(join(tmp, 'agents')); mkdirSync(join(tmp, 'sdk'))
  writeFileSync(join(tmp, 'agents', `${name}.ts`), text)
  copyFileSync(join(root, 'agents-as/component/igor.ts'), join(tmp, 'sdk/igor.ts'))
  const hasInit = /export\s+function\s+agent_init\s*\(/.test(text)
  writeFileSync(join(tmp, 'entry.ts'), [
    `export { agent_tick as tick } from "./agents/${name}";`,
    hasInit ? `export { agent_init as init } from "./agents/${name}";` : 'export function init(): void {}',
    'export { cabi_realloc } from "./sdk/igor";',
    '',
  ].join('\n'))
  const core = join(tmp, 'core.wasm')
  // No exportStart: the module's start function initialises its statics at instantiation (also on
  // resume, before the checkpoint's memory is copied in). `abort=` turns aborts into `unreachable`
  // (a component imports only what its world lists).
  execFileSync(join(root, 'node_modules/.bin/asc'), [join(tmp, 'entry.ts'), '--optimizeLevel', '3', '--runtime', 'incremental', '--use', 'abort=', '-o', core], { stdio: ['ignore', 'inherit', 'inherit'] })
  const embedded = await componentEmbed({ binary: readFileSync(core), witSource: readFileSync(join(root, 'wit/agent.wit'), 'utf8'), world: 'agent', stringEncoding: 'utf8' })
  const component = await componentNew(embedded, [])
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, `${name}.component.wasm`), component)
  copyFileSync(join(root, 'agents-as/agents', `${name}.manifest.json`), join(out, `${name}.component.manifest.json`))
  console.log(`${join(out, `${name}.component.wasm`)}: ${component.length} bytes (core module ${readFileSync(core).length} bytes)`)
} catch (e) {
  console.error(`componentize-as ${name}: ${(e as Error).message.split('\n')[0]}`)
  process.exitCode = 1
} finally {
  rmSync(tmp, { recursive: true, force: true })
}
