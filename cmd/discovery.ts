/**
 * `igord peers` and `igord whereis`: the peers a running node knows (with their price and
 * capabilities) and the node that hosts an agent, found by its DID through the DHT
 * (p2p/discovery.ts, docs/PROTOCOL.md "Discovery"), asked through the node's control socket.
 * Parsing and printing only.
 */
import type { Command } from 'commander'
import type { PeerInfo } from '../p2p/discovery.ts'
import { controlRequest } from '../p2p/control-client.ts'
import { parseDuration, UsageError } from './units.ts'

/** Registers `peers` and `whereis` on `program`. */
export function addDiscoveryCommands (program: Command, exitHelp: string): void {
  program.command('peers')
    .description('list the peers a running node knows (bootstrap, found through the DHT, connected) with their price and capabilities')
    .requiredOption('--node <dir>', 'the node\'s data directory')
    .option('--json', 'print as JSON')
    .addHelpText('after', exitHelp)
    .action(async (o: { node: string; json?: boolean }) => {
      const r = await controlRequest(o.node, { op: 'peers' })
      if (o.json) { process.stdout.write(JSON.stringify(r, null, 2) + '\n'); return }
      const peers = r.peers as PeerInfo[]
      const rows = [['PEER', 'SOURCE', 'PRICE(µ¢/Mfuel)', 'CAPABILITIES', 'ADDRS'],
        ...peers.map((p) => [p.peer, p.source, p.price ?? '-', p.capabilities?.join(',') ?? '-', p.addrs.join(' ')])]
      const w = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)))
      for (const row of rows) process.stdout.write(row.map((c, i) => i === row.length - 1 ? c : c.padEnd(w[i])).join('  ') + '\n')
    })

  program.command('whereis')
    .description('find which peer hosts an agent, by its DID (exit 11 when no host is found in time)')
    .argument('<did>', 'the agent\'s DID (did:key:…)')
    .requiredOption('--node <dir>', 'data directory of the running node to ask')
    .option('--timeout <duration>', 'how long to look', '10s')
    .option('--json', 'print as JSON')
    .addHelpText('after', exitHelp)
    .action(async (did: string, o: { node: string; timeout: string; json?: boolean }) => {
      if (!did.startsWith('did:')) throw new UsageError(`<did>: ${JSON.stringify(did)} is not a DID (did:key:…)`)
      const timeoutMs = Math.ceil(parseDuration(o.timeout, '--timeout'))
      if (timeoutMs <= 0 || timeoutMs > 120_000) throw new UsageError('--timeout: from 1ms to 120s')
      const r = await controlRequest(o.node, { op: 'whereis', did, timeoutMs })
      if (o.json) { process.stdout.write(JSON.stringify(r, null, 2) + '\n'); return }
      process.stdout.write(`${did} is on ${String(r.peer)}\n`)
      for (const a of r.addrs as string[]) process.stdout.write(`  ${a}\n`)
    })
}
