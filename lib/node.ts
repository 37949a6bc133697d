/**
 * The library's node: {@link startNode} starts an igord node in this process (p2p/node.ts
 * `IgordNode`, as `igord node` does) and returns a small handle whose methods are the stable
 * surface; libp2p is loaded on the first call.
 */
import type { AgentInfo, IgordNode, NodeOptions } from '../p2p/node.ts'
import type { MigrateResult } from '../p2p/migrate.ts'
import type { NodeCaps } from '../hostcalls/manifest.ts'

export type { AgentInfo } from '../p2p/node.ts'
export type { MigrateResult } from '../p2p/migrate.ts'

/** Options of {@link startNode}. */
export interface StartNodeOptions {
  /** Data directory: `host.key`, agents (`<name>.ckpt`, `history/`, `blobs/`), `control.sock` (created when missing). */
  dir: string
  /** Multiaddrs to listen on (default `['/ip4/127.0.0.1/tcp/0']`: loopback, a free port). */
  listen?: string[]
  /** Multiaddrs (with `/p2p/<peer id>`) of peers to connect to at start. */
  bootstrap?: string[]
  /** Capabilities granted to hosted agents (default: every known one). */
  capabilities?: string[]
  /** Price, microcents per million fuel (default 1000n). */
  price?: bigint
  /** Tick interval of restored and arriving agents, ms (default 1000). */
  intervalMs?: number
  /** While an agent asks for more work, checkpoint at most this often, ms (default 1000). */
  checkpointEveryMs?: number
  /** The highest limits an agent's manifest may ask for here (default: the default node caps). */
  caps?: NodeCaps
  /** Wall-clock limit of one tick, ms (default 10000). */
  tickTimeoutMs?: number
  /** Worker threads that run the ticks (default: the number of CPUs, at least 2). */
  tickThreads?: number
  /** Serve `<dir>/control.sock` so that `igord ps|stop|send|migrate --node <dir>` reach this node (default true). */
  control?: boolean
  /** Receives node notes, one line each (default: dropped). */
  onNote? (line: string): void
  /** Receives each agent's log lines (default: dropped). */
  onLog? (agent: string, line: string): void
}

/** A `run` request to a node: a new agent from a module file. `budget` in microcents (default 1,000,000n), `intervalMs` ms. */
export interface NodeRunRequest { wasm: string; manifest?: string; name?: string; budget?: bigint; intervalMs?: number }

/** A node started by {@link startNode}. */
export interface IgordNodeHandle {
  /** This node's libp2p peer ID (`12D3KooW…`). */
  readonly peerId: string
  /** Its dialable addresses, multiaddrs ending in `/p2p/<peer id>`. */
  readonly addrs: string[]
  /** Its data directory. */
  readonly dir: string
  /** The hosted agents as `igord ps` lists them (`fuel` and `budget` decimal strings: units, microcents). */
  list (): AgentInfo[]
  /**
   * Births an agent on this node and starts its loop (`igord run --node`).
   * @throws IgordError (code `BAD_REQUEST`) for a name in use, a capability this node does not offer
   *   or limits above its caps; StorageError (code `IO`), ManifestError, ModuleError for bad files
   */
  run (req: NodeRunRequest): Promise<AgentInfo>
  /** Stops an agent with a final checkpoint (`igord stop`). @throws IgordError (code `BAD_REQUEST`) for an unknown agent */
  stopAgent (name: string): Promise<AgentInfo>
  /** Moves an agent to the first target node that accepts it (`igord migrate`). @throws IgordError (codes `NETWORK`, `MIGRATION_REFUSED`, `BAD_REQUEST`) */
  migrate (name: string, to: string[]): Promise<MigrateResult>
  /** Checkpoints every agent, stops the control socket and libp2p. Idempotent. */
  close (): Promise<void>
}

/**
 * Starts an igord node in this process: loads or creates `<dir>/host.key`, starts libp2p, restores
 * the agents of `dir` and finishes interrupted migrations, and (by default) serves its control
 * socket — what `igord node` does.
 * @throws LockedError (code `LOCKED`) when another process serves `dir`; StorageError (code `IO`);
 *   IgordError (code `NETWORK`) when it cannot listen; IgordError (code `USAGE`) for an unknown capability
 * @example
 * ```ts
 * import { startNode } from 'igord'
 * const node = await startNode({ dir: 'node-data', onLog: (a, l) => console.log(`[${a}] ${l}`) })
 * await node.run({ wasm: 'build/counter.wasm', intervalMs: 500 })
 * console.log(node.peerId, node.list())
 * await node.close()
 * ```
 */
export async function startNode (opts: StartNodeOptions): Promise<IgordNodeHandle> {
  const { KNOWN_CAPABILITIES, DEFAULT_LISTEN } = await import('../p2p/defaults.ts')
  const { EXIT, IgordError } = await import('../checkpoint/errors.ts')
  const capabilities = opts.capabilities ?? [...KNOWN_CAPABILITIES]
  for (const c of capabilities) {
    if (!(KNOWN_CAPABILITIES as readonly string[]).includes(c)) throw new IgordError(`startNode: unknown capability ${JSON.stringify(c)} (known: ${KNOWN_CAPABILITIES.join(', ')})`, EXIT.USAGE)
  }
  const { IgordNode } = await import('../p2p/node.ts')
  const onLog = opts.onLog
  const options: NodeOptions = {
    dir: opts.dir,
    listen: opts.listen ?? [DEFAULT_LISTEN],
    bootstrap: opts.bootstrap ?? [],
    capabilities,
    price: opts.price ?? 1000n,
    intervalMs: opts.intervalMs ?? 1000,
    ...(opts.checkpointEveryMs === undefined ? {} : { checkpointEveryMs: opts.checkpointEveryMs }),
    ...(opts.caps === undefined ? {} : { caps: opts.caps }),
    ...(opts.tickTimeoutMs === undefined ? {} : { tickTimeoutMs: opts.tickTimeoutMs }),
    ...(opts.tickThreads === undefined ? {} : { tickThreads: opts.tickThreads }),
    note: opts.onNote ?? (() => {}),
    emit: onLog === undefined ? () => {} : (name, line) => onLog(name, line),
    quiet: onLog === undefined,
  }
  const node: IgordNode = await IgordNode.start(options)
  let closeControl = async (): Promise<void> => {}
  if (opts.control !== false) {
    const { serveControl } = await import('../p2p/control.ts')
    try { closeControl = await serveControl(node) } catch (e) { await node.shutdown(); throw e }
  }
  let closing: Promise<void> | null = null
  return {
    peerId: node.peerId,
    get addrs () { return node.addrs },
    dir: node.dir,
    list: () => node.list(),
    run: (req) => node.run({ ...req, budget: req.budget ?? 1_000_000n }),
    stopAgent: (name) => node.stopAgent(name),
    migrate: (name, to) => node.migrate(name, to),
    close: () => (closing ??= (async () => { await closeControl(); await node.shutdown() })()),
  }
}
