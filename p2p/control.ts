/**
 * Local control of a running node (docs/PROTOCOL.md "Control socket"): a Unix socket
 * `<data>/control.sock`, mode 0600 so only the owner of the data directory can use it. One request
 * per connection: the client writes one JSON object on one line; the node answers with zero or more
 * `{"progress": {...}}` lines and then one final line `{"ok": true, ...}` or
 * `{"ok": false, "error": "<one line>", "exit": <exit code>}`, and closes the connection.
 *
 * Requests: `{"op":"ps"}`, `{"op":"run","wasm":<abs path>,"manifest"?:<abs path>,"name"?,"budget":"<microcents>","intervalMs"?}`,
 * `{"op":"stop","name"}`, `{"op":"migrate","name","to":[<multiaddr>…]}`, `{"op":"peers"}`,
 * `{"op":"whereis","did","timeoutMs"?}`.
 *
 * The server is here; the client ({@link controlRequest}) is p2p/control-client.ts, re-exported.
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import { EXIT, IgordError } from '../checkpoint/errors.ts'
import { controlSocketPath } from '../checkpoint/layout.ts'
import { quarantined } from './authority.ts'
import { controlPath, jsonSafe } from './control-client.ts'
import { NetworkError, RequestError } from './errors.ts'
import type { IgordNode } from './node.ts'
import { signTopUp } from '../checkpoint/fund.ts'
import { messageIdFrom, newMessageId, nowNs } from '../runtime/mailbox.ts'

/** File name of the control socket inside the data directory (checkpoint/layout.ts). */
export const CONTROL_SOCKET = path.basename(controlSocketPath('.'))

/** Longest request line accepted, bytes. */
const MAX_REQUEST = 2 * 1024 * 1024 // a message of up to 1 MiB, base64

/** How long `whereis` looks for an agent's host when the request does not say, ms. */
export const WHEREIS_TIMEOUT_MS = 10_000

export { controlPath, controlRequest } from './control-client.ts'

/**
 * Serves the control socket of `node` at `<node.dir>/control.sock` (replacing a stale socket file).
 * @returns a function that closes the server and removes the socket
 * @throws NetworkError when another node already serves this directory
 */
export async function serveControl (node: IgordNode): Promise<() => Promise<void>> {
  const file = controlPath(node.dir)
  if (fs.existsSync(file)) {
    const alive = await new Promise<boolean>((resolve) => {
      const s = net.connect(file, () => { s.destroy(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (alive) throw new NetworkError(`${file}: another node is already running on this data directory`)
    fs.unlinkSync(file)
  }
  const server = net.createServer((sock) => {
    let buf = ''
    sock.setEncoding('utf8')
    sock.on('error', () => {})
    sock.on('data', (d: string) => {
      buf += d
      if (buf.length > MAX_REQUEST) { sock.end(JSON.stringify({ ok: false, error: 'request too long', exit: EXIT.USAGE, code: 'BAD_REQUEST' }) + '\n'); return }
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      const line = buf.slice(0, nl)
      buf = ''
      sock.pause()
      const send = (o: unknown) => { if (!sock.destroyed) sock.write(JSON.stringify(o, jsonSafe) + '\n') }
      handleLine(node, line, send).then((r) => { send({ ok: true, ...r }); sock.end() }, (e: Error) => {
        const exit = e instanceof IgordError ? e.exitCode : EXIT.INTERNAL
        const code = e instanceof IgordError ? e.code : 'INTERNAL'
        send({ ok: false, error: e.message.split('\n')[0], exit, code }); sock.end()
      })
    })
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(file, () => resolve()) })
  fs.chmodSync(file, 0o600)
  return async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()))
    try { fs.unlinkSync(file) } catch { /* gone */ }
  }
}

async function handleLine (node: IgordNode, line: string, send: (o: unknown) => void): Promise<Record<string, unknown>> {
  let req: Record<string, unknown>
  try { req = JSON.parse(line) as Record<string, unknown> } catch { throw new RequestError('control: the request is not JSON') }
  if (req === null || typeof req !== 'object') throw new RequestError('control: the request must be a JSON object')
  return await controlOp(node, req, send)
}

/**
 * Carries out one control request (the ops of the module doc) on `node` — the control socket and
 * the HTTP API (p2p/http-api.ts) both call it, so both check and act alike. `send` receives
 * progress objects (`migrate`: `{sent, total}` bytes).
 * @returns the answer's fields (without `ok`)
 * @throws RequestError (exit 2) naming the bad field; the node's errors (DeliveryRefused exit 11,
 *   NetworkError/RefusedError exit 9, ModuleError, ManifestError, StorageError, LockedError)
 */
export async function controlOp (node: IgordNode, req: Record<string, unknown>, send: (o: unknown) => void = () => {}): Promise<Record<string, unknown>> {
  const str = (k: string): string => {
    if (typeof req[k] !== 'string' || (req[k] as string).length === 0) throw new RequestError(`control: field "${k}" must be a non-empty string`)
    return req[k] as string
  }
  switch (req.op) {
    case 'ps':
      return { peer: node.peerId, addrs: node.addrs, agents: node.list(), quarantined: quarantined(node.dir) }
    case 'run': {
      let budget: bigint
      try { budget = BigInt(str('budget')) } catch { throw new RequestError('control: field "budget" must be an integer string (microcents)') }
      const agent = await node.run({
        wasm: str('wasm'), budget,
        ...(req.manifest === undefined ? {} : { manifest: str('manifest') }),
        ...(req.name === undefined ? {} : { name: str('name') }),
        ...(typeof req.intervalMs === 'number' ? { intervalMs: req.intervalMs } : {}),
      })
      return { agent }
    }
    case 'stop':
      return { agent: await node.stopAgent(str('name')) }
    case 'migrate': {
      if (!Array.isArray(req.to) || req.to.some((x) => typeof x !== 'string')) throw new RequestError('control: field "to" must be an array of multiaddrs')
      let last = 0
      const result = await node.migrate(str('name'), req.to as string[], (sent, total) => {
        const now = performance.now()
        if (now - last >= 200 || sent === total) { last = now; send({ progress: { sent, total } }) }
      })
      return { result }
    }
    case 'send': {
      const body = Buffer.from(str('body64'), 'base64')
      const id = req.id === undefined ? newMessageId() : messageIdFrom(str('id'))
      return { ...await node.deliver(str('agent'), { id, kind: 'message', from: node.peerId, time: nowNs(), body }) }
    }
    case 'fund': {
      let amount: bigint
      try { amount = BigInt(str('amount')) } catch { throw new RequestError('control: field "amount" must be an integer string (microcents)') }
      if (amount <= 0n || amount >= 1n << 64n) throw new RequestError('control: field "amount" must be a positive 64-bit integer (microcents)')
      const agent = str('agent')
      const did = node.didOf(agent)
      const id = req.id === undefined ? newMessageId() : messageIdFrom(str('id'))
      return { ...await node.deliver(agent, signTopUp(node.host, did, amount, id, nowNs())) }
    }
    case 'gc': {
      const count = (k: string, dflt: number): number => {
        const v = req[k] ?? dflt
        if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new RequestError(`control: field "${k}" must be a non-negative integer`)
        return v
      }
      const opts = { keepEvery: count('keepEvery', 10), keepLast: count('keepLast', 1), dryRun: req.dryRun === true }
      return { ...await node.gcNow(req.name === undefined ? undefined : str('name'), opts) }
    }
    case 'peers':
      return { peer: node.peerId, peers: await node.discovery.peers() }
    case 'whereis': {
      const did = str('did')
      if (!did.startsWith('did:') || did.length > 256) throw new RequestError(`control: field "did": ${JSON.stringify(did.slice(0, 80))} is not a DID`)
      const ms = req.timeoutMs === undefined ? WHEREIS_TIMEOUT_MS : Number(req.timeoutMs)
      if (!Number.isSafeInteger(ms) || ms <= 0 || ms > 120_000) throw new RequestError('control: field "timeoutMs" must be an integer from 1 to 120000 (ms)')
      const host = await node.discovery.findHost(did, ms)
      if (host === null) throw new IgordError(`whereis: ${did} not found (no host answered within ${ms} ms)`, EXIT.REFUSED)
      return { did, ...host }
    }
    default:
      throw new RequestError(`control: unknown op ${JSON.stringify(req.op)} (ps, run, stop, migrate, send, fund, peers, whereis)`)
  }
}
