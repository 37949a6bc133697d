/**
 * Helpers for the node end-to-end tests: start `igord node` children on 127.0.0.1 with temp data
 * directories, read their dialable address, query them through the real CLI.
 */
import { igord, igordSpawn, tempDir } from './helpers.ts'
import type { Live } from './helpers.ts'

/** A running node child, its data directory and dialable address. */
export interface NodeProc { live: Live; dir: string; addr: string; peer: string }

/** Starts `igord node --data <dir>` (a new temp dir unless given) and waits for its address. */
export async function startNode (opts: { dir?: string; args?: string[]; env?: Record<string, string> } = {}): Promise<NodeProc> {
  const dir = opts.dir ?? tempDir('igord-node-')
  const live = igordSpawn(['node', '--data', dir, '--interval', '20ms', ...(opts.args ?? [])], opts.env)
  await live.waitFor((out) => /^listening \S+/m.test(out), 30_000)
  const addr = /^listening (\S+)/m.exec(live.stdout())![1]
  return { live, dir, addr, peer: addr.split('/p2p/')[1] }
}

/** `igord ps --node <dir> --json`'s agents. */
export function ps (dir: string): { name: string; did: string; tick: number; status: string; epoch: number; budget: string; fuel: string }[] {
  const r = igord(['ps', '--node', dir, '--json'])
  if (r.code !== 0) throw new Error(`ps failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout).agents
}

/** Stops a node with SIGINT and returns its exit. */
export async function stopNode (n: NodeProc): Promise<{ code: number | null; stdout: string; stderr: string }> {
  n.live.child.kill('SIGINT')
  return await n.live.done(30_000)
}

/** Polls `pred` every 50 ms until it holds (rejects after `timeoutMs`). */
export async function until (pred: () => boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const t0 = Date.now()
  for (;;) {
    try { if (pred()) return } catch { /* not yet */ }
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
