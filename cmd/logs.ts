/**
 * `igord logs <agent | dir | x.ckpt> [--node D | --dir D] [--follow] [--from <tick>] [--json]`:
 * prints an agent's life from its event log (runtime/logs.ts), one line per thing, so nobody needs
 * a CBOR decoder. Parsing and printing only; runtime/logs.ts is imported when `logs` runs.
 */
import type { Command } from 'commander'
import type { AgentLog, LogItem } from '../runtime/logs.ts'
import { formatBudget, parseCount, UsageError } from './units.ts'

/** How often `--follow` looks at the data directory, ms. */
export const FOLLOW_POLL_MS = 250

/** Lines written to stdout in one write, at most (then the event loop gets a turn: EPIPE, signals). */
const BATCH = 512

interface LogsFlags { dir?: string; node?: string; from?: string; follow?: boolean; json?: boolean; verbose?: boolean; all?: boolean }

/** Registers `logs` on `program`. */
export function addLogsCommand (program: Command, exitHelp: string): void {
  program.command('logs')
    .description('print an agent\'s life from its event log: log lines, inbox messages, HTTP requests, top-ups, sleeps, traps and checkpoints, one line each')
    .argument('<agent>', 'an agent name (in --dir/--node, default checkpoints), a history/<name> directory, a data directory holding one agent, or a live .ckpt file')
    .option('--dir <dir>', 'data directory holding the agent (default: checkpoints)')
    .option('--node <dir>', 'data directory of the node hosting the agent (read directly; the node goes on running)')
    .option('--from <tick>', 'start at this tick')
    .option('-f, --follow', `after the log so far, print new ticks as checkpoints appear (looking every ${FOLLOW_POLL_MS} ms) until SIGINT/SIGTERM or the agent finishes or is handed off`)
    .option('--json', 'one JSON object per line')
    .option('-v, --verbose', 'also show clock readings, random bytes, wallet balances, DIDs, signatures, empty inbox polls, each tick\'s result and fuel, and whole peer IDs')
    .option('--all', 'the same as --verbose')
    .addHelpText('after', exitHelp)
    .action(async (arg: string, o: LogsFlags) => {
      if (o.dir !== undefined && o.node !== undefined) throw new UsageError('give --dir or --node, not both')
      const from = o.from === undefined ? 0 : parseCount(o.from, '--from')
      const verbose = o.verbose === true || o.all === true
      const { formatItem, findLogSource, itemJson, AgentLog, isNoise } = await import('../runtime/logs.ts')
      const log = new AgentLog(findLogSource(arg, o.dir ?? o.node))
      log.refresh()
      if (log.empty && !o.follow) throw new UsageError(`${arg}: agent '${log.source.name}' has no checkpoint in ${log.source.dir} yet`)
      const line = o.json === true
        ? itemJson
        : (it: LogItem) => formatItem(it, { budget: (mc) => `${formatBudget(mc)} units`, full: verbose })
      let lines: string[] = []
      const flush = async (): Promise<void> => {
        if (lines.length === 0) return
        process.stdout.write(lines.join('\n') + '\n')
        lines = []
        await new Promise((resolve) => setImmediate(resolve))
      }
      const print = async (items: Iterable<LogItem>): Promise<void> => {
        try {
          for (const it of items) {
            if (!verbose && isNoise(it)) continue
            lines.push(line(it))
            if (lines.length >= BATCH) await flush()
          }
        } finally { await flush() } // what came before an error is printed
      }
      await print(log.items({ from }))
      if (o.follow !== true) return
      await follow(log, from, print)
    })
}

/** True when the agent's newest checkpoint so far ends its life here: finished, or handed to another host. */
function ended (log: AgentLog): boolean {
  const h = log.last
  return h !== null && (h.status === 'finished' || h.status === 'handoff')
}

/**
 * `--follow`: polls the history directory and the live file every {@link FOLLOW_POLL_MS} ms and
 * prints what is new, until SIGINT/SIGTERM (exit 0) or the agent's newest checkpoint is
 * `finished` or `handoff` (a last `done` line, exit 0).
 */
async function follow (log: AgentLog, from: number, print: (items: Iterable<LogItem>) => Promise<void>): Promise<void> {
  let stopping = false
  let wake: () => void = () => {}
  const stop = () => { stopping = true; wake() }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  try {
    while (!stopping && !ended(log)) {
      await new Promise<void>((resolve) => { const t = setTimeout(resolve, FOLLOW_POLL_MS); wake = () => { clearTimeout(t); resolve() } })
      if (stopping) break
      log.refresh()
      await print(log.items({ from }))
    }
    const h = log.last
    if (!stopping && h !== null && ended(log)) {
      await print([{ tick: h.tick, kind: 'done', status: h.status, ...(h.target === undefined ? {} : { target: h.target }) }])
    }
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
}
