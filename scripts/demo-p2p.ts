/**
 * `make demo-p2p`: three igord nodes on 127.0.0.1; an agent born on A migrates A → B → C → A while
 * ticking, then the three nodes stop and the merged histories verify VALID with epochs 0–3.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const ROOT = join(import.meta.dirname, '..')
const IGORD = join(ROOT, 'cmd', 'igord.ts')
const work = mkdtempSync(join(tmpdir(), 'igord-demo-p2p-'))
const cli = (args: string[]) => {
  console.log(`$ igord ${args.join(' ')}`)
  const r = spawnSync(process.execPath, [IGORD, ...args], { encoding: 'utf8', timeout: 60_000 })
  process.stdout.write(r.stdout.split('\n').filter(Boolean).map((l) => `  │ ${l}\n`).join(''))
  if (r.status !== 0) { process.stderr.write(r.stderr); throw new Error(`igord ${args[0]} failed (${r.status})`) }
  return r.stdout
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const nodes = await Promise.all(['A', 'B', 'C'].map(async (label) => {
  const dir = join(work, `node-${label}`)
  const child = spawn(process.execPath, [IGORD, 'node', '--data', dir, '--interval', '100ms'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => { out += d; for (const l of String(d).split('\n').filter((x) => x.startsWith('['))) console.log(`${label} │ ${l}`) })
  child.stderr.on('data', (d) => { for (const l of String(d).split('\n').filter(Boolean)) console.log(`${label} ┊ ${l}`) })
  for (let i = 0; i < 600 && !/^listening /m.test(out); i++) await sleep(50)
  const addr = /^listening (\S+)/m.exec(out)![1]
  console.log(`${label} ┊ listening ${addr}`)
  return { label, dir, child, addr }
}))
try {
  const [a, b, c] = nodes
  cli(['run', join(ROOT, 'agents-as', 'build', 'heartbeat.wasm'), '--node', a.dir, '--interval', '100ms'])
  await sleep(700)
  for (const [from, to] of [[a, b], [b, c], [c, a]]) {
    console.log(`\n── ${from.label} → ${to.label}`)
    cli(['migrate', 'heartbeat', '--to', to.addr, '--node', from.dir])
    await sleep(700)
  }
  cli(['ps', '--node', a.dir])
} finally {
  for (const n of nodes) n.child.kill('SIGINT')
  await Promise.all(nodes.map((n) => new Promise((r) => n.child.on('close', r))))
}
console.log('\n── merge the three nodes\' histories and verify the whole life')
cli(['verify', ...nodes.map((n) => n.dir)])
rmSync(work, { recursive: true, force: true })
