#!/usr/bin/env node
/**
 * The `igord` command line: parsing, printing and exit codes only; the work is done by
 * `runtime/` and `checkpoint/`. Exit codes are {@link EXIT} and listed in `igord --help`.
 *
 * Startup: this module and the cmd/ modules it registers import only what parsing and `--help`
 * need; each command's action imports the modules doing its work when it runs, so `inspect`,
 * `verify`, `ps`, `send` and `logs` never load binaryen (runtime/instrument.ts) or libp2p
 * (docs/RATIONALE.md "CLI startup").
 */
import { writeFileSync } from 'node:fs'
import { basename, resolve } from 'node:path'
import { Command, CommanderError, Option } from 'commander'
import { EXIT, IgordError, ModuleError, StorageError } from '../checkpoint/errors.ts'
import { checkAgentName, nameOfLive } from '../checkpoint/layout.ts'
import { lockAgent } from '../checkpoint/lock.ts'
import type { Lock } from '../checkpoint/lock.ts'
import type { GcReport } from '../checkpoint/gc.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { DEFAULT_MAX_MEMORY_BYTES, DEFAULT_NODE_CAPS } from '../hostcalls/manifest.ts'
import type { TickResult } from '../runtime/agent.ts'
import { DEFAULT_STOP_GRACE_MS, DEFAULT_TICK_TIMEOUT_MS } from '../runtime/defaults.ts'
import type { Agent } from '../lib/agent.ts'
import { formatBudget, parseBudget, parseCount, parseDuration, parseLimit, parseTickTimeout, UsageError } from './units.ts'
import { addInboxCommands } from './inbox.ts'
import { addNodeCommands, runOnNode } from './node.ts'
import { addLogsCommand } from './logs.ts'
import { addDiscoveryCommands } from './discovery.ts'
import { addInitCommand } from './init.ts'
import { enableCompileCache } from './cache.ts'

enableCompileCache() // for the modules the command imports when it runs (cmd/cache.ts)
// libuv's thread pool (shared by every thread of the process) runs the tick threads' group-commit
// fdatasyncs side by side (checkpoint/group-commit.ts); its default of 4 would queue them. Read
// when the pool is first used, which nothing imported above has done; set it to override.
process.env.UV_THREADPOOL_SIZE ??= '16'

const EXIT_HELP = `
Exit codes:
  0  success, or a clean stop on SIGINT/SIGTERM (a final checkpoint was written)
  1  internal error (a bug)
  2  bad command-line arguments
  3  bad checkpoint file: corrupt, truncated, unknown version, bad signature, finished agent
  4  bad wasm module: invalid, rejected feature, import not granted by the manifest, birth failed
  5  bad manifest: malformed, unknown capability, bad limit
  6  verify: the history is INVALID (faults or forks), or --replay diverged
  7  the agent stopped without finishing: paused after repeated failures, or budget exhausted
  8  a file or directory could not be read or written
  9  a peer could not be reached or refused
 10  another igord process writes that agent or serves that data directory (the line names it)
 11  a message or top-up was refused: no such agent, inbox full, message too large`

/**
 * A closed stdout or stderr (`igord --help | head`, a reader that went away) ends the CLI quietly,
 * like any Unix filter, instead of an unhandled EPIPE stack trace: further writes to the closed
 * stream are dropped; a running agent or node is stopped as on SIGTERM (final checkpoint, exit 0);
 * otherwise the process exits at once with the exit code already decided (0 when none yet).
 */
function quietOnClosedOutput (): void {
  let closing = false
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') throw e
      stream.write = (() => true) as typeof stream.write
      if (closing) return
      closing = true
      if (process.listenerCount('SIGTERM') > 0) process.emit('SIGTERM', 'SIGTERM')
      else process.exit(typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK)
    })
  }
}
quietOnClosedOutput()

function note (line: string): void {
  process.stderr.write(`igord: ${line}\n`)
}

/** Options shared by `run` and `resume`. */
interface LoopFlags { interval: string; ticks?: string; checkpointEvery: string; idleCheckpointEvery: string; tickTimeout: string; quiet?: boolean; keepEvery?: string; keepLast: string; gcEvery: string }

/** Loop flags, read and checked before anything is born or resumed. */
interface LoopSettings { intervalMs: number; checkpointEveryMs: number; idleCheckpointEveryMs: number; maxTicks?: number; price: bigint; tickTimeoutMs: number; gc?: { keepEvery: number; keepLast: number; everyMs: number } }

function loopSettings (flags: LoopFlags & { price: string }): LoopSettings {
  return {
    intervalMs: parseDuration(flags.interval, '--interval'),
    checkpointEveryMs: parseDuration(flags.checkpointEvery, '--checkpoint-every'),
    idleCheckpointEveryMs: parseDuration(flags.idleCheckpointEvery, '--idle-checkpoint-every'),
    ...(flags.ticks === undefined ? {} : { maxTicks: parseCount(flags.ticks, '--ticks') }),
    price: BigInt(parseCount(flags.price, '--price')),
    tickTimeoutMs: parseTickTimeout(flags.tickTimeout, '--tick-timeout'),
    ...(flags.keepEvery === undefined ? {} : { gc: { keepEvery: parseCount(flags.keepEvery, '--keep-every'), keepLast: parseCount(flags.keepLast, '--keep-last'), everyMs: Math.max(1, parseDuration(flags.gcEvery, '--gc-every')) } }),
  }
}

/** Runs the agent's loop in its worker thread until it stops or a signal stops it (without waiting for a tick in progress). */
async function drive (agent: Agent, loop: LoopSettings): Promise<number> {
  let signals = 0
  const onSignal = (sig: string) => {
    if (++signals > 1) process.exit(130)
    note(`${sig}: finishing the tick and writing a final checkpoint (a tick still running after ${DEFAULT_STOP_GRACE_MS} ms is ended and rolled back)`)
    void agent.stop() // stops the loop: after its tick, or by ending the tick after the stop grace
  }
  const onInt = () => onSignal('SIGINT')
  const onTerm = () => onSignal('SIGTERM')
  process.on('SIGINT', onInt)
  process.on('SIGTERM', onTerm)
  // retention (--keep-every): igord gc in the agent's worker, between its ticks (runtime/pool.ts `gc`)
  let gcBusy = false
  let gcTimer: NodeJS.Timeout | null = loop.gc === undefined ? null : setInterval(() => {
    if (gcBusy) return
    gcBusy = true
    agent.gc({ keepEvery: loop.gc!.keepEvery, keepLast: loop.gc!.keepLast, maxPacks: 32 }).then(
      (r) => { if (r.newlyPruned > 0 || r.packsBefore > 1) note(`gc: ${r.agent}: pages of ${r.newlyPruned} more checkpoints pruned (${r.pruned} of ${r.checkpoints}); blobs/ ${r.blobsBytesBefore} → ${r.blobsBytesAfter} bytes`) },
      (e: Error) => { if (gcTimer !== null) note(`gc: ${e.message}`) },
    ).finally(() => { gcBusy = false })
  }, loop.gc.everyMs)
  gcTimer?.unref()
  const onTick = (r: TickResult) => {
    if (r.trap !== null) note(`tick ${r.tick} failed and was rolled back: ${r.trap} (fuel ${r.fuel})`)
  }
  try {
    const { price: _p, tickTimeoutMs: _t, gc: _g, ...opts } = loop
    const end = await agent.run({ ...opts, onTick }) // also takes `igord send --dir` drops (lib/agent.ts)
    const s = agent.status
    note(`stopped at tick ${s.tick} (${end.status}${end.reason ? `: ${end.reason}` : ''}); fuel ${s.fuel}, budget ${formatBudget(s.budget)}; checkpoint ${agent.ckptPath}`)
    return end.status === 'paused' || end.status === 'exhausted' ? EXIT.STOPPED : EXIT.OK
  } finally {
    if (gcTimer !== null) { clearInterval(gcTimer); gcTimer = null }
    process.off('SIGINT', onInt)
    process.off('SIGTERM', onTerm)
  }
}

function emitter (name: string, quiet: boolean | undefined): (line: string) => void {
  return quiet ? () => {} : (line) => { process.stdout.write(`[${name}] ${line}\n`) }
}

const program = new Command()
program
  .name('igord')
  .description('Run WebAssembly programs as portable agents: metered fuel, signed whole-memory checkpoints bound to did:key, verifiable history.')
  .version('0.1.0')
  .addHelpText('after', EXIT_HELP)
  .showHelpAfterError('(run igord --help for usage)')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) })

const loopOptions = (c: Command): Command => c
  .option('--interval <duration>', 'pause after an idle tick (e.g. 10ms, 1s)', '1s')
  .option('--ticks <n>', 'stop (with a checkpoint, exit 0) after this many ticks in this session')
  .option('--checkpoint-every <duration>', 'while the agent asks for more work, checkpoint at most this often', '1s')
  .option('--idle-checkpoint-every <duration>', 'checkpoint the idle agent at most this often (0: after every idle tick; a tick with an effect is always checkpointed at once; a crash loses at most this much of its idle ticks, which then run again)', '0')
  .option('--price <microcents>', 'host price in microcents per million fuel', '1000')
  .option('--sim-seed <seed>', 'simulation mode: clock and random bytes derived from this seed and the tick number')
  .option('--tick-timeout <duration>', 'wall-clock limit of one tick: a longer tick is ended, rolled back and counted as a failure', `${DEFAULT_TICK_TIMEOUT_MS / 1000}s`)
  .option('--keep-every <n>', 'retention: every --gc-every, run igord gc on this agent between ticks, keeping the pages of every n-th checkpoint (see igord gc --help); default: no gc')
  .option('--keep-last <k>', 'with --keep-every: keep the pages of the newest k checkpoints', '2')
  .option('--gc-every <duration>', 'with --keep-every: how often', '1m')
  .option('-q, --quiet', 'do not print the agent\'s log lines')

loopOptions(program.command('run')
  .description('birth a new agent from a wasm module and run it, checkpointing into --dir')
  .argument('<wasm>', 'the agent module (.wasm)')
  .option('--manifest <file>', 'capability manifest (default: <wasm without .wasm>.manifest.json)')
  .option('--budget <units>', 'budget in units (1 unit = 1,000,000 microcents)', '1')
  .option('--dir <dir>', 'data directory for checkpoints, history and blobs', 'checkpoints')
  .option('--name <name>', 'agent name (default: the wasm file name without .wasm)')
  .option('--node <dir>', 'start the agent on the igord node running on this data directory (see igord node)')
  .option('--json', 'with --node: print the new agent as JSON')
  .option('--max-fuel-per-tick <n>', `without --node: refuse a manifest asking more fuel per tick than this (default ${DEFAULT_NODE_CAPS.maxFuelPerTick}, the default node cap)`))
  .addHelpText('after', EXIT_HELP)
  .action(async (wasmPath: string, o: LoopFlags & { manifest?: string; budget: string; dir: string; name?: string; price: string; simSeed?: string; node?: string; json?: boolean; maxFuelPerTick?: string }) => {
    const manifestPath = o.manifest ?? wasmPath.replace(/\.wasm$/, '') + '.manifest.json'
    const name = checkAgentName(o.name ?? basename(wasmPath).replace(/\.wasm$/, ''), o.name === undefined ? `${wasmPath} (use --name)` : '--name')
    const loop = loopSettings(o)
    const budget = parseBudget(o.budget, '--budget')
    if (o.node !== undefined) {
      await runOnNode(o.node, { wasm: resolve(wasmPath), manifest: resolve(manifestPath), name, budget, intervalMs: loop.intervalMs, json: o.json === true })
      return
    }
    // A local run refuses (does not clamp) limits above the default node caps (docs/ABI.md).
    const caps = o.maxFuelPerTick === undefined ? DEFAULT_NODE_CAPS : { ...DEFAULT_NODE_CAPS, maxFuelPerTick: BigInt(parseLimit(o.maxFuelPerTick, '--max-fuel-per-tick')) }
    const { birth } = await import('../lib/agent.ts')
    const agent = await birth({
      wasm: wasmPath, manifest: manifestPath, name, budget, caps, dir: o.dir, price: loop.price, tickTimeoutMs: loop.tickTimeoutMs,
      ...(o.simSeed === undefined ? {} : { simSeed: o.simSeed }), onLog: emitter(name, o.quiet), onNote: note,
    })
    try {
      note(`born ${agent.did} as '${name}' on host ${agent.host}; checkpoints in ${resolve(o.dir)}`)
      process.exitCode = await drive(agent, loop)
    } finally { await agent.close() }
  })

loopOptions(program.command('resume')
  .description('continue an agent from its live .ckpt file: same DID, tick count and heap')
  .argument('<ckpt>', 'live checkpoint file (.ckpt)')
  .option('--dir <dir>', 'data directory to continue in (default: the directory of the .ckpt)'))
  .addHelpText('after', EXIT_HELP)
  .action(async (file: string, o: LoopFlags & { dir?: string; price: string; simSeed?: string }) => {
    const name = checkAgentName(nameOfLive(file), file)
    const loop = loopSettings(o)
    const { resume } = await import('../lib/agent.ts')
    const agent = await resume(file, {
      ...(o.dir === undefined ? {} : { dir: o.dir }), price: loop.price, tickTimeoutMs: loop.tickTimeoutMs,
      ...(o.simSeed === undefined ? {} : { simSeed: o.simSeed }), onLog: emitter(name, o.quiet), onNote: note,
    })
    try {
      note(`resumed ${agent.did} as '${name}' at tick ${agent.status.tick} on host ${agent.host}`)
      process.exitCode = await drive(agent, loop)
    } finally { await agent.close() }
  })

program.command('verify')
  .description('verify whole histories: signatures, hash links, one DID, monotonic tick/fuel/budget, epochs, state roots, forks')
  .argument('<path...>', 'data directories, history/ folders, history/<agent> directories, entry files, or folders of these (merged)')
  .option('--json', 'print the report as JSON')
  .option('--replay', 're-execute the whole archived life from its event logs (no real clock, random source or network) and check every tick and checkpoint')
  .option('--from <tick>', 'with --replay: start from the newest checkpoint at or before this tick')
  .addHelpText('after', EXIT_HELP)
  .action(async (paths: string[], o: { json?: boolean; replay?: boolean; from?: string }) => {
    if (o.from !== undefined && !o.replay) throw new UsageError('--from needs --replay')
    const { formatReport } = await import('../checkpoint/history.ts')
    const { replay, verify } = await import('../lib/tools.ts')
    if (o.replay) {
      const { formatReplay } = await import('../runtime/replay.ts') // binaryen: only with --replay
      const r = await replay(paths, o.from === undefined ? {} : { from: parseCount(o.from, '--from') })
      process.stdout.write(o.json ? JSON.stringify(r, jsonReplacer, 2) + '\n' : formatReplay(r, formatReport) + '\n')
      process.exitCode = r.valid ? EXIT.OK : EXIT.INVALID
      return
    }
    const report = await verify(paths)
    process.stdout.write(o.json ? JSON.stringify(report, jsonReplacer, 2) + '\n' : formatReport(report) + '\n')
    process.exitCode = report.valid ? EXIT.OK : EXIT.INVALID
  })

/**
 * `igord gc` of an agent whose lock is held: asks the node serving `dir` (control op `gc`) to
 * collect it in its worker. Returns its reports, or null when no node serves `dir` or it does not
 * host `name` (another process writes it: the caller refuses, exit 10).
 * @throws the node's gc errors (GcError exit 6, StorageError exit 8)
 */
async function gcByNode (dir: string, name: string, opts: { keepEvery: number; keepLast: number }): Promise<GcReport[] | null> {
  const { controlRequest } = await import('../p2p/control-client.ts')
  let answer: Record<string, unknown>
  try { answer = await controlRequest(dir, { op: 'gc', name, ...opts }) } catch (e) {
    if (e instanceof IgordError && (e.exitCode === EXIT.NETWORK || e.code === 'BAD_REQUEST')) return null
    throw e
  }
  return answer.reports as GcReport[]
}

program.command('gc')
  .description('retention: drop the page blobs of old checkpoints (every history entry, event log, code and manifest is kept; verify still proves the whole chain) and merge each agent\'s packs into one')
  .argument('<path>', 'a data directory (every agent with a history there) or its history/<name> directory')
  .option('--keep-every <n>', 'keep the pages of every n-th checkpoint along the chain (position from genesis; 0: none but the ones below)', '10')
  .option('--keep-last <k>', 'keep the pages of the newest k checkpoints (at least 1)', '1')
  .option('--dry-run', 'say what would be dropped; change nothing')
  .option('--json', 'print one JSON report per agent')
  .addHelpText('after', `
Always kept too: the first checkpoint, every handoff and the first checkpoint of each epoch, the one
the live .ckpt holds. Pruned checkpoints are listed in history/<name>/gc.json; verify then checks
their state roots against the signed page digests only and says how many. An agent hosted by a node serving the directory is collected by that node, in the agent's worker
between its ticks (control op gc); one being written by another process (igord run/resume) is
refused (exit 10).
${EXIT_HELP}`)
  .action(async (p: string, o: { keepEvery: string; keepLast: string; dryRun?: boolean; json?: boolean }) => {
    const keepEvery = parseCount(o.keepEvery, '--keep-every')
    const keepLast = parseCount(o.keepLast, '--keep-last')
    const { formatGc, gcAgent, gcTargets } = await import('../checkpoint/gc.ts')
    const { dir, names } = gcTargets(p)
    if (names.length === 0) { note(`${p}: no agent history to collect`); return }
    let refused: IgordError | null = null
    let failed: IgordError | null = null
    for (const name of names) {
      let lock: Lock | null = null
      if (o.dryRun !== true) {
        try { lock = lockAgent(dir, name) } catch (e) {
          if (!(e instanceof IgordError) || e.exitCode !== EXIT.LOCKED) throw e
          // a node serving the directory collects its own agents, in their workers, between ticks
          const viaNode = await gcByNode(dir, name, { keepEvery, keepLast })
          if (viaNode !== null) {
            for (const r of viaNode) process.stdout.write(o.json ? JSON.stringify(r) + '\n' : formatGc(r) + '\n')
            continue
          }
          note(`gc: ${name}: refused, the agent is being written: ${e.message}`)
          refused = e; continue
        }
      }
      try {
        const r = gcAgent(dir, name, { keepEvery, keepLast, dryRun: o.dryRun === true })
        process.stdout.write(o.json ? JSON.stringify(r) + '\n' : formatGc(r) + '\n')
      } catch (e) {
        // one agent's unusable history (exit 6) or I/O failure (exit 8) does not stop the others
        if (!(e instanceof IgordError) || names.length === 1) throw e
        note(`gc: ${name}: ${e.message}`)
        failed = e
      } finally { lock?.release() }
    }
    if (failed !== null) process.exitCode = failed.exitCode
    else if (refused !== null) process.exitCode = EXIT.LOCKED
  })

program.command('inspect')
  .description('show what a live checkpoint holds')
  .argument('<ckpt>', 'live checkpoint file (.ckpt)')
  .option('--json', 'print as JSON')
  .addHelpText('after', EXIT_HELP)
  .action(async (file: string, o: { json?: boolean }) => {
    const { formatInspect } = await import('../checkpoint/inspect.ts')
    const { inspect } = await import('../lib/tools.ts')
    const view = await inspect(file)
    process.stdout.write(o.json ? JSON.stringify(view, jsonReplacer, 2) + '\n' : formatInspect(view) + '\n')
  })

program.command('instrument')
  .description('rewrite a module as igord runs it: fuel metering, exported globals, memory cap')
  .argument('<in>', 'input .wasm')
  .requiredOption('-o, --output <file>', 'output .wasm')
  .addOption(new Option('--memory-limit <bytes>', 'memory cap in bytes (multiple of 65536)').default(String(DEFAULT_MAX_MEMORY_BYTES)))
  .addHelpText('after', EXIT_HELP)
  .action(async (input: string, o: { output: string; memoryLimit: string }) => {
    const limit = parseCount(o.memoryLimit, '--memory-limit')
    if (limit === 0 || limit % PAGE_SIZE !== 0) throw new UsageError(`--memory-limit: ${limit} is not a positive multiple of 65536`)
    const { instrument } = await import('../lib/tools.ts')
    const out = await instrument(input, { memoryLimitBytes: limit })
    try {
      writeFileSync(o.output, out.binary)
    } catch (e) {
      throw new StorageError(`${o.output}: cannot write: ${(e as Error).message}`)
    }
    note(`${input} (${out.cid}) → ${o.output}: ${out.binary.length} bytes, ${out.globals.length} globals exported`)
  })

addNodeCommands(program, EXIT_HELP)
addInitCommand(program, EXIT_HELP)
addInboxCommands(program, EXIT_HELP)
addLogsCommand(program, EXIT_HELP)
addDiscoveryCommands(program, EXIT_HELP)

function jsonReplacer (_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex')
  return value
}

try {
  await program.parseAsync(process.argv)
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? EXIT.OK : EXIT.USAGE
  } else if (e instanceof IgordError) {
    note(e.message)
    process.exitCode = e.exitCode
  } else if (e instanceof WebAssembly.CompileError || e instanceof WebAssembly.LinkError) {
    note(new ModuleError(e.message).message)
    process.exitCode = EXIT.MODULE
  } else {
    note(`internal error: ${(e as Error).stack ?? String(e)}`)
    process.exitCode = EXIT.INTERNAL
  }
}
