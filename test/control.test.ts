/**
 * p2p/control.ts: the node's control socket (`<data>/control.sock`, mode 0600, one JSON request per
 * connection, progress lines, a final answer with an exit code), served for a stand-in node (no
 * libp2p, no network) and queried with `controlRequest`.
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { IgordError } from '../checkpoint/errors.ts'
import { controlPath, controlRequest, serveControl } from '../p2p/control.ts'
import { NetworkError, RequestError } from '../p2p/errors.ts'
import type { IgordNode } from '../p2p/node.ts'

const tmp: string[] = []
const mkdir = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-control-')); tmp.push(d); return d }
test.after.each(() => { for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })

/** A stand-in node answering the control operations. */
function fakeNode (dir: string): IgordNode {
  return {
    dir, peerId: '12D3KooWfake', addrs: ['/ip4/127.0.0.1/tcp/1/p2p/12D3KooWfake'],
    list: () => [{ name: 'a', did: 'did:key:z', tick: 3, fuel: '10', budget: '5', status: 'running', epoch: 0, intervalMs: 20 }],
    run: (r: { budget: bigint; name?: string }) => ({ name: r.name ?? 'x', budget: String(r.budget) }),
    stopAgent: async (name: string) => { if (name !== 'a') throw new RequestError(`no agent named ${name} on this node`); return { name } },
    migrate: async (_name: string, to: string[], progress?: (s: number, t: number) => void) => {
      if (to[0] === 'down') throw new NetworkError('dial down: timed out after 5000 ms')
      progress?.(50, 100); progress?.(100, 100)
      return { to: to[0], fuel: 12n }
    },
  } as unknown as IgordNode
}

async function rejects (p: Promise<unknown>, re: RegExp, exit: number, code?: string): Promise<void> {
  try { await p } catch (e) {
    assert.instance(e, IgordError)
    assert.match((e as Error).message, re)
    assert.is((e as IgordError).exitCode, exit)
    if (code !== undefined) assert.is((e as IgordError).code, code)
    return
  }
  assert.unreachable('expected an error')
}

test('ps over a 0600 socket; closing removes the socket', async () => {
  const dir = mkdir()
  const close = await serveControl(fakeNode(dir))
  try {
    assert.is(fs.statSync(controlPath(dir)).mode & 0o777, 0o600)
    const r = await controlRequest(dir, { op: 'ps' })
    assert.is(r.peer, '12D3KooWfake')
    assert.is((r.agents as { tick: number }[])[0].tick, 3)
  } finally { await close() }
  assert.not.ok(fs.existsSync(controlPath(dir)))
})

test('run passes the budget as a bigint; migrate streams progress and 64-bit numbers come back as strings', async () => {
  const dir = mkdir()
  const close = await serveControl(fakeNode(dir))
  try {
    const run = await controlRequest(dir, { op: 'run', wasm: '/x.wasm', budget: '123456789012345678', name: 'n' })
    assert.equal(run.agent, { name: 'n', budget: '123456789012345678' })
    const seen: Record<string, unknown>[] = []
    const m = await controlRequest(dir, { op: 'migrate', name: 'a', to: ['/ip4/127.0.0.1/tcp/2/p2p/x'] }, (p) => seen.push(p))
    assert.equal(m.result, { to: '/ip4/127.0.0.1/tcp/2/p2p/x', fuel: '12' })
    assert.equal(seen.at(-1), { sent: 100, total: 100 })
  } finally { await close() }
})

test('errors carry their exit codes and stable codes: bad requests 2, node errors as thrown', async () => {
  const dir = mkdir()
  const close = await serveControl(fakeNode(dir))
  try {
    await rejects(controlRequest(dir, { op: 'dance' }), /control: unknown op "dance"/, 2)
    await rejects(controlRequest(dir, { op: 'run', wasm: '/x.wasm', budget: 'lots' }), /field "budget" must be an integer string/, 2)
    await rejects(controlRequest(dir, { op: 'migrate', name: 'a', to: 'x' }), /field "to" must be an array/, 2)
    await rejects(controlRequest(dir, { op: 'stop', name: 'b' }), /no agent named b on this node/, 2, 'BAD_REQUEST')
    await rejects(controlRequest(dir, { op: 'migrate', name: 'a', to: ['down'] }), /dial down: timed out/, 9, 'NETWORK')
    const raw = await new Promise<string>((resolve) => {
      const s = net.connect(controlPath(dir), () => s.write('not json\n'))
      let out = ''
      s.on('data', (d) => { out += d }); s.on('close', () => resolve(out))
    })
    assert.equal(JSON.parse(raw), { ok: false, error: 'control: the request is not JSON', exit: 2, code: 'BAD_REQUEST' })
  } finally { await close() }
})

test('no node on the directory is a network error (exit 9) naming it; a second node on it is refused; a stale socket is replaced', async () => {
  const dir = mkdir()
  await rejects(controlRequest(dir, { op: 'ps' }), /no node is running on .*start one with 'igord node --data/, 9)
  const close = await serveControl(fakeNode(dir))
  try {
    await rejects(serveControl(fakeNode(dir)), /another node is already running on this data directory/, 9)
  } finally { await close() }
  // a file left behind by a killed node: nothing answers on it
  fs.writeFileSync(controlPath(dir), '')
  const again = await serveControl(fakeNode(dir))
  try { assert.is((await controlRequest(dir, { op: 'ps' })).peer, '12D3KooWfake') } finally { await again() }
})

test.run()
