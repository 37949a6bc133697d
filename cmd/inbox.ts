/**
 * `igord send` and `igord fund`: put a message or a top-up into an agent's inbox (docs/ABI.md
 * "Inbox"), through a running node's control socket (`--node D`, or `--dir D` when a node serves
 * D) or straight into a data directory (runtime/offline.ts). Parsing and printing only; the modules
 * doing the work are imported when `send` or `fund` runs, not for every igord command.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { Command } from 'commander'
import { StorageError } from '../checkpoint/errors.ts'
import { checkAgentName, controlSocketPath, nameOfLive } from '../checkpoint/layout.ts'
import { INBOX_LIMITS } from '../hostcalls/manifest.ts'
import type { Incoming } from '../runtime/mailbox.ts'
import { controlRequest } from '../p2p/control-client.ts'
import { formatBudget, parseBudget, UsageError } from './units.ts'

/** Where `send`/`fund` deliver: a node's control socket, or a data directory with no node. */
type Target = { node: string; name: string } | { dir: string; name: string }

/**
 * Resolves `<agent>` with `--node`/`--dir`: an agent name (or DID, with a node), or a `.ckpt` path
 * (its directory and name).
 * @throws UsageError when neither or both options are given, or the name breaks the name rule
 */
function target (agent: string, o: { node?: string; dir?: string }): Target {
  if (o.node !== undefined && o.dir !== undefined) throw new UsageError('give --node or --dir, not both')
  if (agent.endsWith('.ckpt')) {
    if (o.node !== undefined) throw new UsageError('a .ckpt file names an agent in a data directory: leave out --node')
    const dir = o.dir ?? dirname(resolve(agent))
    const name = checkAgentName(nameOfLive(agent), agent)
    return existsSync(controlSocketPath(dir)) ? { node: dir, name } : { dir, name }
  }
  if (o.node !== undefined) return { node: o.node, name: agent }
  if (o.dir === undefined) throw new UsageError('say where the agent is: --node <dir> (a running node) or --dir <dir> (a data directory)')
  // a node serving that directory takes the message itself (it holds the agent's lock)
  if (existsSync(controlSocketPath(o.dir))) return { node: o.dir, name: agent }
  return { dir: o.dir, name: checkAgentName(agent) }
}

/** The largest message body any agent may take: the maximum of `max_message_bytes` (1 MiB). */
const MAX_BODY = INBOX_LIMITS.max_message_bytes[1]

/**
 * The message bytes: the text, or `@file`'s bytes.
 * @throws StorageError when the file cannot be read; DeliveryRefused (exit 11) for a body over
 *   {@link MAX_BODY}, which no agent takes (and which would not fit a control request)
 */
async function body (text: string): Promise<Uint8Array> {
  let b: Uint8Array
  if (!text.startsWith('@')) b = new Uint8Array(Buffer.from(text, 'utf8'))
  else {
    const file = text.slice(1)
    try { b = new Uint8Array(readFileSync(file)) } catch (e) { throw new StorageError(`${file}: cannot read the message: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
  }
  if (b.length > MAX_BODY) {
    const { DeliveryRefused } = await import('../runtime/mailbox.ts')
    throw new DeliveryRefused(`message is ${b.length} bytes, over the largest max_message_bytes an agent can have (${MAX_BODY})`)
  }
  return b
}

async function idOf (o: { id?: string }): Promise<Uint8Array> {
  const { messageIdFrom, newMessageId } = await import('../runtime/mailbox.ts')
  if (o.id === undefined) return newMessageId()
  try { return messageIdFrom(o.id) } catch (e) { throw new UsageError(`--id: ${(e as Error).message}`) }
}

/** What delivering into a data directory with no node uses: host key, live file, mailbox, top-up signing. */
async function offline () {
  const [host, off, mailbox, fund, live] = await Promise.all([import('../runtime/host.ts'), import('../runtime/offline.ts'), import('../runtime/mailbox.ts'), import('../checkpoint/fund.ts'), import('../checkpoint/live.ts')])
  return { loadHostIdentity: host.loadHostIdentity, deliverOffline: off.deliverOffline, nowNs: mailbox.nowNs, newMessageId: mailbox.newMessageId, signTopUp: fund.signTopUp, readLive: live.readLive }
}

/** Registers `send` and `fund` on `program`. */
export function addInboxCommands (program: Command, exitHelp: string): void {
  program.command('send')
    .description('put a message into an agent\'s inbox (durably) and wake it')
    .argument('<agent>', 'agent name (or DID, with --node), or its .ckpt file')
    .argument('<message>', 'the message text, or @file for a file\'s bytes')
    .option('--node <dir>', 'data directory of the running node that hosts the agent')
    .option('--dir <dir>', 'data directory holding the agent: stopped, run by `igord run`/`resume`, or served by a node')
    .option('--id <hex>', 'message id, 32 hex digits: sending the same id again is a no-op (default: random)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', exitHelp)
    .action(async (agent: string, message: string, o: { node?: string; dir?: string; id?: string; json?: boolean }) => {
      const t = target(agent, o)
      const bytes = await body(message)
      const id = await idOf(o)
      let r: { name: string; seq: number; duplicate: boolean; dropped?: boolean; forwarded?: string }
      if ('node' in t) {
        const a = await controlRequest(t.node, { op: 'send', agent: t.name, body64: Buffer.from(bytes).toString('base64'), id: Buffer.from(id).toString('hex') })
        r = { name: String(a.name), seq: Number(a.seq), duplicate: a.duplicate === true, ...(typeof a.forwarded === 'string' ? { forwarded: a.forwarded } : {}) }
      } else {
        const { loadHostIdentity, deliverOffline, nowNs } = await offline()
        const from = loadHostIdentity(t.dir).peerId
        const d = deliverOffline(t.dir, t.name, { id, kind: 'message', from, time: nowNs(), body: bytes })
        r = { name: t.name, ...d }
      }
      if (o.json) { process.stdout.write(JSON.stringify({ agent: r.name, seq: r.seq, duplicate: r.duplicate, dropped: r.dropped === true, id: Buffer.from(id).toString('hex'), bytes: bytes.length, ...(r.forwarded === undefined ? {} : { forwarded: r.forwarded }) }) + '\n'); return }
      const via = r.forwarded === undefined ? '' : ` (forwarded to ${r.forwarded})`
      if (r.duplicate) process.stdout.write(`${r.name} already has message ${Buffer.from(id).toString('hex')}: not sent again${via}\n`)
      else if (r.dropped === true) process.stdout.write(`left for ${r.name} (${bytes.length} bytes): the process running it takes it in\n`)
      else process.stdout.write(`sent to ${r.name}: message #${r.seq} ${r.forwarded === undefined ? `(${bytes.length} bytes)` : `(forwarded to ${r.forwarded})`}\n`)
    })

  program.command('fund')
    .description('add budget to an agent (a signed top-up recorded in its event log); an exhausted agent runs again')
    .argument('<agent>', 'agent name (or DID, with --node), or its .ckpt file')
    .argument('<units>', 'budget to add, in units (1 unit = 1,000,000 microcents), e.g. 5 or 0.25')
    .option('--node <dir>', 'data directory of the running node that hosts the agent')
    .option('--dir <dir>', 'data directory holding the agent: stopped, run by `igord run`/`resume`, or served by a node')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', exitHelp)
    .action(async (agent: string, units: string, o: { node?: string; dir?: string; json?: boolean }) => {
      const amount = parseBudget(units, '<units>')
      if (amount <= 0n) throw new UsageError(`<units>: must be more than 0, got ${units}`)
      const t = target(agent, o)
      let name: string; let budget: bigint; let duplicate: boolean; let when = ''; let forwarded: string | undefined
      if ('node' in t) {
        const a = await controlRequest(t.node, { op: 'fund', agent: t.name, amount: String(amount) })
        name = String(a.name); budget = BigInt(String(a.budget)); duplicate = a.duplicate === true
        if (typeof a.forwarded === 'string') { forwarded = a.forwarded; when = ` (forwarded to ${forwarded})` }
      } else {
        const { loadHostIdentity, deliverOffline, nowNs, newMessageId, signTopUp, readLive } = await offline()
        const host = loadHostIdentity(t.dir)
        const live = readLive(resolve(t.dir, `${t.name}.ckpt`))
        const m: Incoming = signTopUp(host, live.parsed.agent, amount, newMessageId(), nowNs())
        const d = deliverOffline(t.dir, t.name, m)
        name = t.name; budget = d.budget + amount; duplicate = d.duplicate
        when = d.dropped ? ' (the process running it applies it at its next tick)' : ` (applied at its next tick; resume it with 'igord resume ${join(t.dir, `${t.name}.ckpt`)}')`
      }
      if (o.json) { process.stdout.write(JSON.stringify({ agent: name, amount: String(amount), budget: String(budget), duplicate, ...(forwarded === undefined ? {} : { forwarded }) }) + '\n'); return }
      process.stdout.write(`funded ${name}: +${formatBudget(amount)} units, budget ${formatBudget(budget)} units${when}\n`)
    })
}
