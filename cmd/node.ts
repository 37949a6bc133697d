/**
 * The node commands of the `igord` CLI: `node`, `ps`, `stop`, `migrate`, and `run --node`.
 * Parsing and printing only: the node is p2p/node.ts, the control socket p2p/control.ts, each
 * imported when a command uses it (libp2p and the runtime only by `igord node`).
 */
import type { Command } from 'commander'
import { EXIT } from '../checkpoint/errors.ts'
import { DEFAULT_LISTEN, KNOWN_CAPABILITIES } from '../p2p/defaults.ts'
import type { MdnsFactory } from '../p2p/mdns.ts'
import type { AgentInfo, NodeFaults } from '../p2p/node.ts'
import { DEFAULT_NODE_CAPS, INBOX_LIMITS } from '../hostcalls/manifest.ts'
import type { NodeCaps } from '../hostcalls/manifest.ts'
import { DEFAULT_HIBERNATE_AFTER_MS, DEFAULT_TICK_TIMEOUT_MS } from '../runtime/defaults.ts'
import { controlRequest } from '../p2p/control-client.ts'
import { formatBudget, parseCount, parseDuration, parseLimit, parseTickTimeout, UsageError } from './units.ts'

/**
 * Hooks injected into `igord node` by a test-only entry point (test/igord-faulty.ts) before it runs
 * the CLI; empty in the shipped CLI, which reads no fault setting from anywhere. `mdns`: the
 * service `--mdns` uses instead of `@libp2p/mdns` (a stub that sends no multicast).
 */
export const injected: { faults?: NodeFaults; mdns?: MdnsFactory } = {}

function note (line: string): void { process.stderr.write(`igord: ${line}\n`) }
const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v]

/** `igord run <wasm> --node <dir>`: asks the node to birth the agent; prints its name and DID. */
export async function runOnNode (dir: string, r: { wasm: string; manifest: string; name: string; budget: bigint; intervalMs: number; json: boolean }): Promise<void> {
  const a = await controlRequest(dir, { op: 'run', wasm: r.wasm, manifest: r.manifest, name: r.name, budget: String(r.budget), intervalMs: r.intervalMs })
  const agent = a.agent as AgentInfo
  if (r.json) process.stdout.write(JSON.stringify(agent, null, 2) + '\n')
  else process.stdout.write(`${agent.name} ${agent.did} running on the node in ${dir}\n`)
}

function tickThreads (v: string): number {
  const n = parseCount(v, '--tick-threads')
  if (n < 1 || n > 256) throw new UsageError(`--tick-threads: must be 1 to 256, got ${n}`)
  return n
}

function mib (n: number): string { return (n / 1048576).toFixed(1) }

/** The `--max-*` options of `igord node`: the highest limits an agent's manifest may ask for here. */
interface CapFlags { maxFuelPerTick?: string; maxMemory?: string; maxFailures?: string; maxEventsPerTick?: string; maxLogBytesPerTick?: string; maxRandomBytesPerTick?: string; maxEventBytesPerTick?: string; maxInboxMessages?: string; maxMessageBytes?: string }

/** Reads the `--max-*` options over {@link DEFAULT_NODE_CAPS}. @throws UsageError naming the option */
function nodeCaps (o: CapFlags): NodeCaps {
  const d = DEFAULT_NODE_CAPS
  const get = (v: string | undefined, option: string, dflt: number): number => v === undefined ? dflt : parseLimit(v, option)
  return {
    maxFuelPerTick: o.maxFuelPerTick === undefined ? d.maxFuelPerTick : BigInt(parseLimit(o.maxFuelPerTick, '--max-fuel-per-tick')),
    maxMemoryBytes: get(o.maxMemory, '--max-memory', d.maxMemoryBytes),
    maxFailures: get(o.maxFailures, '--max-failures', d.maxFailures),
    tickLimits: {
      events: get(o.maxEventsPerTick, '--max-events-per-tick', d.tickLimits.events),
      logBytes: get(o.maxLogBytesPerTick, '--max-log-bytes-per-tick', d.tickLimits.logBytes),
      randomBytes: get(o.maxRandomBytesPerTick, '--max-random-bytes-per-tick', d.tickLimits.randomBytes),
      eventBytes: get(o.maxEventBytesPerTick, '--max-event-bytes-per-tick', d.tickLimits.eventBytes),
    },
    ...(o.maxInboxMessages === undefined ? {} : { maxInboxMessages: parseLimit(o.maxInboxMessages, '--max-inbox-messages') }),
    ...(o.maxMessageBytes === undefined ? {} : { maxMessageBytes: parseLimit(o.maxMessageBytes, '--max-message-bytes') }),
  }
}

/** Registers `node`, `ps`, `stop` and `migrate` on `program`. */
export function addNodeCommands (program: Command, exitHelp: string): void {
  program.command('node')
    .description('run a long-lived peer that hosts agents and moves them to and from other nodes over libp2p')
    .option('--listen <multiaddr>', `address to listen on (repeatable; default ${DEFAULT_LISTEN})`, collect)
    .option('--data <dir>', 'data directory: host.key, agents (<name>.ckpt, history/, blobs/), control.sock', 'node-data')
    .option('--bootstrap <multiaddr>', 'peer to connect to at start (repeatable)', collect)
    .option('--capabilities <list>', `capabilities granted to hosted agents (default: ${KNOWN_CAPABILITIES.join(',')})`)
    .option('--price <microcents>', 'price in microcents per million fuel', '1000')
    .option('--interval <duration>', 'tick interval of restored and arriving agents', '1s')
    .option('--checkpoint-every <duration>', 'while an agent asks for more work, checkpoint at most this often', '1s')
    .option('--idle-checkpoint-every <duration>', 'checkpoint an idle agent at most this often (0: after every idle tick; a tick with an effect is always checkpointed at once; a crash loses at most this much of an idle agent\'s ticks, which then run again)', '0')
    .option('--max-fuel-per-tick <n>', `refuse agents whose manifest asks more fuel per tick (default ${DEFAULT_NODE_CAPS.maxFuelPerTick})`)
    .option('--max-memory <bytes>', `refuse agents whose manifest asks more memory (default ${DEFAULT_NODE_CAPS.maxMemoryBytes} = 1GiB)`)
    .option('--max-failures <n>', `refuse agents whose manifest allows more consecutive failed ticks (default ${DEFAULT_NODE_CAPS.maxFailures})`)
    .option('--max-events-per-tick <n>', `refuse agents whose manifest asks more events per tick (default ${DEFAULT_NODE_CAPS.tickLimits.events})`)
    .option('--max-log-bytes-per-tick <bytes>', `refuse agents whose manifest asks more log output per tick (default ${DEFAULT_NODE_CAPS.tickLimits.logBytes} = 1MiB)`)
    .option('--max-random-bytes-per-tick <bytes>', `refuse agents whose manifest asks more random bytes per tick (default ${DEFAULT_NODE_CAPS.tickLimits.randomBytes} = 1MiB)`)
    .option('--max-event-bytes-per-tick <bytes>', `refuse agents whose manifest asks more event bytes per tick (default ${DEFAULT_NODE_CAPS.tickLimits.eventBytes} = 4MiB)`)
    .option('--max-inbox-messages <n>', `refuse agents whose manifest lets more messages wait in their inbox (default ${INBOX_LIMITS.max_inbox_messages[1]}, the most a manifest may ask)`)
    .option('--max-message-bytes <bytes>', `refuse agents whose manifest takes larger messages (default ${INBOX_LIMITS.max_message_bytes[1]} = 1MiB, the most a manifest may ask)`)
    .option('--migrate-memory <bytes>', 'blobs of inbound migrations held in memory by all offers in progress together; an offer that does not fit is spooled to disk ("0": always spool)', '256MiB')
    .option('--tick-timeout <duration>', 'wall-clock limit of one tick: a longer tick is ended, rolled back and counted as a failure', `${DEFAULT_TICK_TIMEOUT_MS / 1000}s`)
    .option('--tick-threads <n>', 'worker threads that run the agents\' ticks (default: the number of CPUs, at least 2)')
    .option('--hibernate-after <duration>', 'hibernate an agent idle this long (drop its instance and memory until its next tick); "off": never', `${DEFAULT_HIBERNATE_AFTER_MS / 1000}s`)
    .option('--keep-every <n>', 'retention: every --gc-every, run igord gc over the hosted agents, keeping the pages of every n-th checkpoint (see igord gc --help); default: no gc')
    .option('--keep-last <k>', 'with --keep-every: keep the pages of the newest k checkpoints', '2')
    .option('--gc-every <duration>', 'with --keep-every: how often a bounded gc pass runs', '1m')
    .option('-q, --quiet', 'do not print the agents\' log lines')
    .option('--msg-lookup <duration>', 'how long the host of an agent\'s DID is looked for before a message to it comes back as unknown', '10s')
    .option('--mdns', 'also find igord nodes on the LAN by mDNS (multicast 224.0.0.251:5353; off by default)')
    .option('--http <[host:]port>', 'serve the HTTP API (agents, actions, SSE logs) and Prometheus /metrics on this address; a bare port listens on 127.0.0.1')
    .option('--http-token <token>', 'every HTTP request must carry Authorization: Bearer <token> (default: $IGORD_HTTP_TOKEN); required when --http is not a loopback address, else the node refuses to start (exit 2)')
    .addHelpText('after', exitHelp)
    .action(async (o: CapFlags & { http?: string; httpToken?: string; listen?: string[]; data: string; bootstrap?: string[]; capabilities?: string; price: string; interval: string; checkpointEvery: string; idleCheckpointEvery: string; tickTimeout: string; tickThreads?: string; quiet?: boolean; msgLookup: string; mdns?: boolean; hibernateAfter: string; keepEvery?: string; keepLast: string; gcEvery: string; migrateMemory: string }) => {
      const capabilities = o.capabilities === undefined ? [...KNOWN_CAPABILITIES] : o.capabilities.split(',').map((c) => c.trim()).filter((c) => c.length > 0)
      for (const c of capabilities) if (!(KNOWN_CAPABILITIES as readonly string[]).includes(c)) throw new UsageError(`--capabilities: unknown capability ${JSON.stringify(c)} (known: ${KNOWN_CAPABILITIES.join(', ')})`)
      const caps = nodeCaps(o)
      // the HTTP API's access rule is checked before anything starts (p2p/http-api.ts)
      const httpApi = o.http === undefined ? undefined : await import('../p2p/http-api.ts')
      const httpToken = o.httpToken ?? (process.env.IGORD_HTTP_TOKEN || undefined)
      const httpAt = httpApi === undefined ? undefined : httpApi.parseHttpListen(o.http!)
      if (httpApi !== undefined) httpApi.checkHttpAccess(httpAt!.host, httpToken)
      // SIGINT/SIGTERM are caught from here on, before the first await that loads or starts anything:
      // a signal while the node starts stops it cleanly once it is up (never the default kill)
      let signals = 0
      const stopping = new Promise<string>((resolve) => {
        const stop = (sig: string) => { if (++signals > 1) process.exit(130); resolve(sig) }
        process.on('SIGINT', () => stop('SIGINT'))
        process.on('SIGTERM', () => stop('SIGTERM'))
      })
      // loaded here so that the other commands do not pay for importing libp2p
      const { IgordNode } = await import('../p2p/node.ts')
      const { serveControl } = await import('../p2p/control.ts')
      // @libp2p/mdns is loaded only with --mdns
      const mdnsModule = o.mdns === true ? await import('../p2p/mdns.ts') : undefined
      const mdns = mdnsModule === undefined ? undefined : injected.mdns ?? await mdnsModule.mdnsService()
      const node = await IgordNode.start({
        dir: o.data,
        listen: o.listen ?? [DEFAULT_LISTEN],
        bootstrap: o.bootstrap ?? [],
        capabilities,
        price: BigInt(parseCount(o.price, '--price')),
        intervalMs: parseDuration(o.interval, '--interval'),
        checkpointEveryMs: parseDuration(o.checkpointEvery, '--checkpoint-every'),
        idleCheckpointEveryMs: parseDuration(o.idleCheckpointEvery, '--idle-checkpoint-every'),
        caps,
        tickTimeoutMs: parseTickTimeout(o.tickTimeout, '--tick-timeout'),
        msgLookupMs: parseDuration(o.msgLookup, '--msg-lookup'),
        hibernateAfterMs: o.hibernateAfter === 'off' ? null : parseDuration(o.hibernateAfter, '--hibernate-after'),
        targetLimits: { maxMemoryBytes: o.migrateMemory.trim() === '0' ? 0 : parseLimit(o.migrateMemory, '--migrate-memory') },
        ...(o.keepEvery === undefined ? {} : { gc: { keepEvery: parseCount(o.keepEvery, '--keep-every'), keepLast: parseCount(o.keepLast, '--keep-last'), everyMs: Math.max(1, parseDuration(o.gcEvery, '--gc-every')) } }),
        ...(o.tickThreads === undefined ? {} : { tickThreads: tickThreads(o.tickThreads) }),
        note,
        emit: o.quiet ? () => {} : (name, line) => { process.stdout.write(`[${name}] ${line}\n`) },
        quiet: o.quiet === true,
        ...(injected.faults === undefined ? {} : { faults: injected.faults }),
        ...(mdns === undefined ? {} : { mdns }),
      })
      let closeControl: () => Promise<void>
      try { closeControl = await serveControl(node) } catch (e) { await node.shutdown(); throw e }
      let http: { url: string; close: () => Promise<void> } | undefined
      try { http = httpApi === undefined ? undefined : await httpApi.serveHttp(node, { ...httpAt!, ...(httpToken === undefined ? {} : { token: httpToken }) }) } catch (e) { await closeControl(); await node.shutdown(); throw e }
      for (const a of node.addrs) process.stdout.write(`listening ${a}\n`)
      if (http !== undefined) process.stdout.write(`http ${http.url}\n`)
      note(`node ${node.peerId} up with ${node.agents.size} agent(s); control socket ${o.data}/control.sock`)
      if (mdnsModule !== undefined) note(`mdns: looking for igord nodes on the LAN (${mdnsModule.MDNS_SERVICE_TAG})`)
      const { quarantined } = await import('../p2p/authority.ts')
      for (const q of quarantined(o.data)) note(`quarantined (unreadable, set aside, not deleted): ${q}`)
      note(`${await stopping}: checkpointing every agent and stopping`)
      await http?.close()
      await closeControl()
      await node.shutdown()
      note('stopped')
      process.exitCode = EXIT.OK
    })

  program.command('ps')
    .description('list the agents of a running node')
    .requiredOption('--node <dir>', 'the node\'s data directory')
    .option('--json', 'print as JSON')
    .addHelpText('after', exitHelp)
    .action(async (o: { node: string; json?: boolean }) => {
      const r = await controlRequest(o.node, { op: 'ps' })
      const agents = r.agents as AgentInfo[]
      if (o.json) { process.stdout.write(JSON.stringify(r, null, 2) + '\n'); return }
      process.stdout.write(`node ${String(r.peer)}\n`)
      const rows = [['NAME', 'STATUS', 'TICK', 'EPOCH', 'FUEL', 'BUDGET', 'DID'],
        ...agents.map((a) => [a.name, a.hibernated ? `${a.status} (hibernated)` : a.status, String(a.tick), String(a.epoch), a.fuel, formatBudget(BigInt(a.budget)), a.did])]
      const w = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)))
      for (const row of rows) process.stdout.write(row.map((c, i) => i === row.length - 1 ? c : c.padEnd(w[i])).join('  ') + '\n')
      const q = (r.quarantined ?? []) as string[]
      if (q.length > 0) process.stdout.write(`quarantined (unreadable records set aside, not deleted): ${q.join(', ')}\n`)
    })

  program.command('stop')
    .description('stop an agent on a running node (final checkpoint; it is not restarted)')
    .argument('<agent>', 'agent name')
    .requiredOption('--node <dir>', 'the node\'s data directory')
    .option('--json', 'print as JSON')
    .addHelpText('after', exitHelp)
    .action(async (name: string, o: { node: string; json?: boolean }) => {
      const r = await controlRequest(o.node, { op: 'stop', name })
      const a = r.agent as AgentInfo
      process.stdout.write(o.json ? JSON.stringify(a, null, 2) + '\n' : `${a.name} stopped at tick ${a.tick}\n`)
    })

  program.command('migrate')
    .description('move a running agent from a node to another node (the first --to that accepts it)')
    .argument('<agent>', 'agent name')
    .requiredOption('--to <multiaddr>', 'target node address ending in /p2p/<peer id> (repeatable: candidates in order)', collect)
    .requiredOption('--node <dir>', 'the source node\'s data directory')
    .option('--json', 'print the result as JSON (including the bytes transferred)')
    .addHelpText('after', exitHelp)
    .action(async (name: string, o: { to: string[]; node: string; json?: boolean }) => {
      let shown = false
      const r = await controlRequest(o.node, { op: 'migrate', name, to: o.to }, (p) => {
        const total = Number(p.total)
        if (o.json || total < 4 * 1048576) return
        shown = true
        process.stderr.write(`\rigord: sent ${mib(Number(p.sent))} of ${mib(total)} MiB`)
      })
      if (shown) process.stderr.write('\n')
      const m = r.result as Record<string, unknown>
      if (o.json) process.stdout.write(JSON.stringify(m, null, 2) + '\n')
      else process.stdout.write(`${name} moved to ${String(m.to)} at tick ${String(m.tick)} (epoch ${String(m.epoch)}): ${String(m.pagesSent)} of ${String(m.pagesOffered)} pages sent, ${String(m.bytesSent)} bytes, ${Number(m.ms).toFixed(0)} ms, ${String(m.replayedTicks ?? 0)} tick(s) replayed by the target\n`)
    })
}
