/**
 * `igord init <dir> [--lang as|c] [--name N]`: writes a new agent project into an empty (or new)
 * directory — a small counter agent using the SDK of the installed package (`igord/sdk/as`, or the
 * C header in `node_modules/igord/agents-c/include`), its manifest, its build config, and a
 * package.json whose scripts `build`, `start` and `test` (a few ticks, a resume, `igord verify
 * --replay`) use only the installed `igord` (docs/RATIONALE.md "igord init").
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import type { Command } from 'commander'
import { StorageError } from '../checkpoint/errors.ts'
import { checkAgentName } from '../checkpoint/layout.ts'
import { UsageError } from './units.ts'

/** Languages `igord init` writes a project in: AssemblyScript or C (clang, wasm32-wasi). */
export const INIT_LANGS = ['as', 'c'] as const
export type InitLang = typeof INIT_LANGS[number]

/** The igord package.json this module ships in (found upward from here: cmd/ in the repo, dist/cmd/ when packed). */
function ownPackage (): { version: string; devDependencies?: Record<string, string> } {
  let d = import.meta.dirname
  for (let i = 0; i < 4; i++) {
    const f = join(d, 'package.json')
    if (existsSync(f)) {
      const p = JSON.parse(readFileSync(f, 'utf8')) as { name?: string; version: string; devDependencies?: Record<string, string> }
      if (p.name === 'igord') return p
    }
    d = dirname(d)
  }
  throw new Error('igord init: cannot find igord\'s own package.json')
}

/** An npm package name for agent `name`: lower case, other characters than [a-z0-9._-] as '-'. */
function npmName (name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9._-]/g, '-').replace(/^[._]+/, '') || 'agent'
}

const MANIFEST = JSON.stringify({
  capabilities: { clock: { version: 1 }, log: { version: 1 } },
  resource_limits: { max_memory_bytes: 16 * 1024 * 1024, max_fuel_per_tick: 100_000_000 },
}, null, 2) + '\n'

function asSource (name: string): string {
  return `// ${name} — a counter: it counts its ticks and logs its age. Everything it keeps between ticks
// lives in its memory (module-level variables, heap objects), which igord checkpoints: after a
// resume or a migration it counts on from where it was. Capabilities: clock, log (${name}.manifest.json).
// The SDK is igord's (node_modules/igord/agents-as/sdk/igor.ts); the contract is igord's docs/ABI.md.
import { clockNow, log, IDLE } from "igord/sdk/as";

let ticks: i64 = 0;
let bornNs: i64 = 0;

/** Runs once, at birth (never on resume). */
export function agent_init(): void {
  bornNs = clockNow();
  log("${name} born");
}

/** One tick: 0 (IDLE) = wait for the next, 1 (MORE) = tick again at once, 2 (FINISHED) = done. */
export function agent_tick(): i32 {
  ticks++;
  const ageMs = (clockNow() - bornNs) / 1_000_000;
  log("tick " + ticks.toString() + ", age " + ageMs.toString() + " ms");
  return IDLE;
}
`
}

function cSource (name: string): string {
  return `/*
 * ${name} — a counter: it counts its ticks and logs its age. Everything it keeps between ticks
 * lives in its memory (statics, malloc'd memory), which igord checkpoints: after a resume or a
 * migration it counts on from where it was. Capabilities: clock, log (${name}.manifest.json).
 * The SDK is igord's igor.h (node_modules/igord/agents-c/include); the contract is docs/ABI.md.
 */
#include "igor.h"

static int64_t ticks;
static int64_t born_ns;
static char buf[256];
static igor_line line = { buf, sizeof buf, 0 };

/** Runs once, at birth (never on resume). */
IGOR_EXPORT("agent_init") void agent_init(void) {
  born_ns = igor_clock_now();
  igor_log("${name} born");
}

/** One tick: IGOR_IDLE = wait for the next, IGOR_MORE = tick again at once, IGOR_FINISHED = done. */
IGOR_EXPORT("agent_tick") int agent_tick(void) {
  ticks++;
  igor_line_puts(&line, "tick ");
  igor_line_i64(&line, ticks);
  igor_line_puts(&line, ", age ");
  igor_line_i64(&line, (igor_clock_now() - born_ns) / 1000000);
  igor_line_puts(&line, " ms");
  igor_line_emit(&line);
  return IGOR_IDLE;
}
`
}

/** The C build: Debian's clang + lld + wasi-libc (apt install clang lld wasi-libc libclang-rt-14-dev-wasm32), as igord's own C agents. */
function makefile (name: string): string {
  return `# Builds build/${name}.wasm, a WASI reactor, with clang (wasm32-wasi) and igord's C SDK.
CLANG ?= clang
IGORD_SDK ?= node_modules/igord/agents-c/include
CFLAGS := --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -I$(IGORD_SDK) -Wl,--strip-all \\
  $(if $(wildcard /usr/share/wasi-sysroot),--sysroot=/usr/share/wasi-sysroot)

build/${name}.wasm: src/${name}.c $(IGORD_SDK)/igor.h
\t@mkdir -p build
\t$(CLANG) $(CFLAGS) $< -o $@

.PHONY: clean
clean:
\trm -rf build
`
}

const ASCONFIG = JSON.stringify({
  targets: {
    release: { optimizeLevel: 3, shrinkLevel: 0, converge: false, noAssert: false, runtime: 'incremental', exportStart: '_initialize', sourceMap: false, debug: false },
  },
  options: {},
}, null, 2) + '\n'

function packageJson (name: string, lang: InitLang, own: ReturnType<typeof ownPackage>): string {
  const wasm = `build/${name}.wasm`
  const run = `igord run ${wasm} --manifest ${name}.manifest.json`
  const test = [
    'rm -rf .igord-test',
    `${run} --dir .igord-test --ticks 3 --interval 10ms --sim-seed test`,
    `igord resume .igord-test/${name}.ckpt --ticks 3 --interval 10ms --sim-seed test`,
    'igord verify --replay .igord-test',
  ].join(' && ')
  const p = {
    name: npmName(name),
    version: '0.1.0',
    private: true,
    description: `${name}: an igord agent`,
    type: 'module',
    scripts: {
      build: lang === 'as' ? `asc assembly/index.ts --config asconfig.json --target release -o ${wasm}` : 'make',
      start: `${run} --dir data --interval 1s`,
      test,
    },
    dependencies: { igord: `^${own.version}` },
    ...(lang === 'as' ? { devDependencies: { assemblyscript: own.devDependencies?.assemblyscript ?? '^0.28.0' } } : {}),
  }
  return JSON.stringify(p, null, 2) + '\n'
}

function readme (name: string, lang: InitLang): string {
  return `# ${name}

An igord agent (${lang === 'as' ? 'AssemblyScript' : 'C'}), written by \`igord init\`.

- \`${lang === 'as' ? 'assembly/index.ts' : `src/${name}.c`}\` — the agent: \`agent_init\` runs once at birth, \`agent_tick\` every tick.
- \`${name}.manifest.json\` — its capabilities and limits (schema: \`node_modules/igord/manifest.schema.json\`).
- \`npm run build\` — builds \`build/${name}.wasm\`${lang === 'c' ? ' (needs clang, lld and wasi-libc)' : ''}.
- \`npm start\` — births it and runs it in \`data/\`; Ctrl-C checkpoints it. \`npx igord resume data/${name}.ckpt\` continues it.
- \`npm test\` — three ticks, a resume, three more, then \`igord verify --replay\` re-executes the whole life.
`
}

/**
 * The files of a new project, as relative path → text.
 * @param name the agent's name (also the wasm and manifest file names)
 */
export function projectFiles (name: string, lang: InitLang): Record<string, string> {
  const own = ownPackage()
  const common = {
    'package.json': packageJson(name, lang, own),
    [`${name}.manifest.json`]: MANIFEST,
    'README.md': readme(name, lang),
    '.gitignore': 'node_modules/\nbuild/\ndata/\n.igord-test/\n',
  }
  return lang === 'as'
    ? { ...common, 'asconfig.json': ASCONFIG, 'assembly/index.ts': asSource(name) }
    : { ...common, Makefile: makefile(name), [`src/${name}.c`]: cSource(name) }
}

/**
 * Writes a new agent project into `dir` (created when missing).
 * @returns the files written, paths relative to `dir`
 * @throws UsageError (exit 2) when `dir` exists and is not an empty directory, or for a bad
 *   language or name; StorageError (exit 8) when a file cannot be written
 */
export function initProject (dir: string, opts: { lang?: string; name?: string } = {}): { name: string; lang: InitLang; files: string[] } {
  const lang = (opts.lang ?? 'as') as InitLang
  if (!INIT_LANGS.includes(lang)) throw new UsageError(`--lang: unknown language '${opts.lang}' (known: ${INIT_LANGS.join(', ')})`)
  const name = checkAgentName(opts.name ?? basename(resolve(dir)), opts.name === undefined ? `${dir} (use --name)` : '--name')
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new UsageError(`${dir}: exists and is not a directory; igord init writes into an empty or new directory`)
    if (readdirSync(dir).length > 0) throw new UsageError(`${dir}: directory is not empty; igord init writes into an empty or new directory`)
  }
  const files = projectFiles(name, lang)
  for (const [rel, text] of Object.entries(files)) {
    const file = join(dir, rel)
    try {
      mkdirSync(dirname(file), { recursive: true })
      writeFileSync(file, text, { flag: 'wx' })
    } catch (e) {
      throw new StorageError(`${file}: cannot write: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  return { name, lang, files: Object.keys(files) }
}

/** Registers `init` on `program`. */
export function addInitCommand (program: Command, exitHelp: string): void {
  program.command('init')
    .description('write a new agent project (source, manifest, build config, npm scripts build/start/test) into an empty or new directory')
    .argument('<dir>', 'the project directory (created when missing; must be empty)')
    .option('--lang <lang>', `the agent's language: ${INIT_LANGS.join(' or ')}`, 'as')
    .option('--name <name>', 'agent name (default: the directory name)')
    .addHelpText('after', exitHelp)
    .action((dir: string, o: { lang: string; name?: string }) => {
      const r = initProject(dir, o)
      const shown = dir.replace(/\/+$/, '') || '.'
      process.stdout.write(`created ${r.lang === 'as' ? 'an AssemblyScript' : 'a C'} agent '${r.name}' in ${shown}/:\n`)
      for (const f of r.files) process.stdout.write(`  ${f}\n`)
      process.stdout.write(`next:\n  cd ${shown}\n  npm install${r.lang === 'c' ? ' # and clang, lld, wasi-libc for the build' : ''}\n  npm run build && npm test\n  npm start\n`)
    })
}
