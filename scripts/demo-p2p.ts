/**
 * `make demo-p2p`: three igord nodes on 127.0.0.1 (B and C know only A: they find each other and
 * the agents through the DHT).
 * 1. An agent born on A migrates A → B → C → A while ticking.
 * 2. Two agents talk while one moves: ping on A sends numbered messages to pong's DID, one at a
 *    time; pong answers each while it moves A → B → C (messages follow it by its DID).
 * Then the three nodes stop and the merged histories verify VALID: heartbeat's with epochs 0–3,
 * ping's and pong's re-executed from their event logs (`verify --replay`).
 * Everything runs in a temp directory (the commands print paths relative to it), removed at the end.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const ROOT = join(import.meta.dirname, '..')
const IGORD = join(ROOT, 'cmd', 'igord.ts')
const work = mkdtempSync(join(tmpdir(), 'igord-demo-p2p-'))
const wasm = (name: string) => join(ROOT, 'agents-as', 'build', `${name}.wasm`)
/** A line as shown: paths relative to the repository or the demo's directory. */
const shown = (s: string) => s.replaceAll(`${ROOT}/`, '').replaceAll(`${work}/`, '')
/** Runs `igord <args>` in the demo's directory and prints its output; the nodes' lines keep flowing meanwhile. */
const cli = async (args: string[]): Promise<string> => {
  console.log(`$ igord ${shown(args.join(' '))}`)
  const child = spawn(process.execPath, [IGORD, ...args], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { err += d })
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  clearTimeout(timer)
  process.stdout.write(out.split('\n').filter(Boolean).map((l) => `  │ ${shown(l)}\n`).join(''))
  if (code !== 0) { process.stderr.write(err); throw new Error(`igord ${args[0]} failed (${code})`) }
  return out
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface DemoNode { label: string; dir: string; child: ReturnType<typeof spawn>; addr: string; out: () => string }

async function startNode (label: string, bootstrap: string[]): Promise<DemoNode> {
  const dir = `node-${label}`
  const child = spawn(process.execPath, [IGORD, 'node', '--data', dir, '--interval', '100ms', ...bootstrap.flatMap((b) => ['--bootstrap', b])], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d) => { out += d; for (const l of String(d).split('\n').filter((x) => x.startsWith('['))) console.log(`${label} │ ${l}`) })
  child.stderr!.on('data', (d) => { for (const l of String(d).split('\n').filter(Boolean)) console.log(`${label} ┊ ${shown(l)}`) })
  for (let i = 0; i < 1200 && !/^listening /m.test(out); i++) await sleep(50)
  const addr = /^listening (\S+)/m.exec(out)?.[1]
  if (addr === undefined) throw new Error(`node ${label} did not start`)
  console.log(`${label} ┊ listening ${addr}`)
  return { label, dir, child, addr, out: () => out }
}

/** Waits (at most `ms`) until `pred` holds. */
async function until (pred: () => boolean, ms: number, what: string): Promise<void> {
  for (const t0 = Date.now(); !pred(); await sleep(50)) if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`)
}

const nodes: DemoNode[] = []
try {
  nodes.push(await startNode('A', []))
  nodes.push(...await Promise.all(['B', 'C'].map((l) => startNode(l, [nodes[0].addr]))))
  const [a, b, c] = nodes

  console.log('\n── 1. an agent moves while it ticks: heartbeat A → B → C → A')
  await cli(['run', wasm('heartbeat'), '--node', a.dir, '--interval', '250ms'])
  await sleep(1000)
  for (const [from, to] of [[a, b], [b, c], [c, a]]) {
    console.log(`\n── ${from.label} → ${to.label}`)
    await cli(['migrate', 'heartbeat', '--to', to.addr, '--node', from.dir])
    await sleep(1000)
  }
  await cli(['ps', '--node', a.dir])
  await cli(['stop', 'heartbeat', '--node', a.dir])

  console.log('\n── 2. two agents talk while one moves: ping stays on A, pong moves A → B → C')
  await cli(['run', wasm('ping'), '--node', a.dir])
  const pong = /(did:key:\S+)/.exec(await cli(['run', wasm('pong'), '--node', a.dir]))![1]
  const N = 20
  const count = (who: string) => nodes.reduce((k, n) => k + (n.out().match(new RegExp(`^\\[${who}\\] ${who} got `, 'gm')) ?? []).length, 0)
  // 20 messages to pong's DID, one at a time (the next after the answer), at most one per 600 ms
  await cli(['send', 'ping', `${pong} ${N} 1 600`, '--node', a.dir])
  // pong moves after its 3rd message, and again after 4 more on B
  let seen = 3
  for (const [from, to] of [[a, b], [b, c]]) {
    await until(() => count('pong') >= seen, 30_000, `pong to get ${seen} messages`)
    console.log(`\n── pong ${from.label} → ${to.label} (ping keeps sending to its DID)`)
    await cli(['migrate', 'pong', '--to', to.addr, '--node', from.dir])
    seen = count('pong') + 4
  }
  await until(() => count('ping') >= N, 60_000, `ping to get ${N} answers`)
  await sleep(300)
} finally {
  for (const n of nodes) n.child.kill('SIGINT')
  await Promise.all(nodes.map((n) => n.child.exitCode !== null ? null : new Promise((r) => n.child.on('close', r))))
}
console.log('\n── merge the three nodes\' histories and verify each life')
await cli(['verify', ...nodes.map((n) => join(n.dir, 'history', 'heartbeat'))])
await cli(['verify', '--replay', join('node-A', 'history', 'ping')])
await cli(['verify', '--replay', ...nodes.map((n) => join(n.dir, 'history', 'pong'))])
rmSync(work, { recursive: true, force: true })
