/**
 * Private by default (issue 7 §7): every file holding agent state is 0600 and every folder 0700 —
 * live checkpoints, history segments, blobs, the host key, locks, migrate/ records (pending,
 * handoff, stopped, quarantine), migrations.log and the instrumentation cache — after a birth, a
 * resume, a migration between two nodes and the authority records a migration leaves.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { instrument } from '../runtime/instrument.ts'
import { runLoop } from '../runtime/runner.ts'
import { resumeAgent, startAgent } from '../runtime/session.ts'
import * as authority from '../p2p/authority.ts'
import { IgordNode } from '../p2p/node.ts'
import { agentWasm, cleanup, igord, tempDir } from './helpers.ts'

test.after(cleanup)

/** Every path under `root` (root included) whose mode is not 0700 (folders) or 0600 (files): `path mode`. */
function loose (root: string): string[] {
  const bad: string[] = []
  const walk = (p: string) => {
    const st = fs.lstatSync(p)
    const want = st.isDirectory() ? 0o700 : 0o600
    if ((st.mode & 0o777) !== want) bad.push(`${path.relative(root, p) || '.'} ${(st.mode & 0o777).toString(8)}`)
    if (st.isDirectory()) for (const n of fs.readdirSync(p)) walk(path.join(p, n))
  }
  walk(root)
  return bad
}

/** Every kind of file `walk` saw, to show the check covered them: relative paths with tick/CID/time parts blurred. */
function kinds (root: string): Set<string> {
  const out = new Set<string>()
  const walk = (p: string) => {
    out.add(path.relative(root, p).replace(/bafk\w+/g, 'CID').replace(/\d{12}-CID/g, 'TICK-CID').replace(/-[0-9a-f]{8}\.hist$/, '-TAG.hist').replace(/-\d{4}-\d\d-\d\dT[\d-]+Z/g, '-TIME'))
    if (fs.statSync(p).isDirectory()) for (const n of fs.readdirSync(p)) walk(path.join(p, n))
  }
  walk(root)
  return out
}

test('igord run + resume through the CLI: the data directory it creates is 0700 with 0600 files', () => {
  const dir = path.join(tempDir('igord-perms-'), 'data')
  assert.is(igord(['run', agentWasm('ledger'), '--dir', dir, '--ticks', '2', '--interval', '0ms', '-q']).code, 0)
  const r = igord(['resume', path.join(dir, 'ledger.ckpt'), '--ticks', '2', '--interval', '0ms', '-q'])
  assert.is(r.code, 0, r.stderr)
  assert.equal(loose(dir), [])
  const k = kinds(dir)
  for (const want of ['ledger.ckpt', 'host.key', 'blobs', 'blobs/CID', 'history/ledger/TICK-CID-TAG.hist', 'locks']) assert.ok(k.has(want), `${want} in ${[...k].join(' ')}`)
})

test('in process: birth, resume elsewhere, a migration between two nodes, pending/quarantine records, instrument cache', async () => {
  const root = tempDir('igord-perms-')
  const wasm = fs.readFileSync(agentWasm('ledger'))
  const manifest = fs.readFileSync(agentWasm('ledger').replace(/\.wasm$/, '.manifest.json'))
  // birth and a resume into a directory that does not exist yet
  const d1 = path.join(root, 'born', 'deeper')
  const s = startAgent({ dir: d1, price: 1000n, emit: () => {} }, { name: 'ledger', wasm, wasmFile: 'ledger.wasm', manifest, manifestFile: 'ledger.manifest.json', budget: 1_000_000n })
  await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: 2 })
  const d2 = path.join(root, 'resumed')
  const r = resumeAgent({ dir: d2, price: 1000n, emit: () => {} }, path.join(d1, 'ledger.ckpt'))
  await runLoop(r.agent, r.lineage, { intervalMs: 0, maxTicks: 2 })
  // two nodes, one migration
  const mk = (sub: string) => IgordNode.start({ dir: path.join(root, sub), listen: ['/ip4/127.0.0.1/tcp/0'], capabilities: ['clock', 'rand', 'log'], price: 1000n, intervalMs: 5, note: () => {}, emit: () => {} })
  const [a, b] = await Promise.all([mk('nodeA'), mk('nodeB')])
  try {
    await a.run({ wasm: agentWasm('ledger'), budget: 100_000_000n, intervalMs: 5 })
    await new Promise((res) => setTimeout(res, 50))
    const m = await a.migrate('ledger', [b.addrs[0]])
    assert.ok(m.confirmed)
    await b.stopAgent('ledger')
    // the records a migration can leave behind: a pending arrival, a handoff record, a quarantined one
    authority.writePending(b.dir, 'other', [new Uint8Array([1])], { id: '00'.repeat(16), from: 'p', addrs: [], offer: 'x', agent: 'did:key:z', tick: 1, epoch: 0 })
    authority.writePending(b.dir, 'bad', [new Uint8Array([2])], { id: '00'.repeat(16), from: 'p', addrs: [], offer: 'x', agent: 'did:key:z', tick: 1, epoch: 0 })
    fs.writeFileSync(authority.recordPaths(b.dir, 'bad').pending, 'corrupt', { mode: 0o600 })
    assert.is(authority.readPending(b.dir, 'bad'), null)
    const checkLive = (d: string) => assert.equal(loose(d), [], d) // while running: locks, control files
    checkLive(a.dir); checkLive(b.dir)
  } finally { await a.shutdown(); await b.shutdown() }
  const cache = path.join(root, 'cache', 'instrumented')
  instrument(wasm, { memoryLimitPages: 16, cacheDir: cache, file: 'ledger.wasm' })
  assert.equal(loose(root).filter((l) => !l.startsWith('. ') && !l.startsWith('cache ')), [])
  assert.equal(loose(cache), [])
  const kb = kinds(path.join(root, 'nodeB'))
  for (const want of ['migrate', 'migrate/other.pending.ckpt', 'migrate/other.pending.cbor', 'migrate/ledger.stopped', 'migrate/quarantine', 'migrate/quarantine/bad-TIME/bad.pending.cbor', 'migrate/quarantine/bad-TIME/reason.txt', 'migrations.log', 'history/ledger/TICK-CID-TAG.hist']) {
    assert.ok(kb.has(want), `${want} in ${[...kb].join(' ')}`)
  }
})

test.run()
