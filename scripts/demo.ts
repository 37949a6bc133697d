/**
 * `make demo`: the portable-agent story end to end, with the real `igord` CLI as child processes
 * in temporary directories that stand for two machines.
 *
 *   1. machine A: `igord run heartbeat.wasm` — the agent is born (new did:key) and ticks;
 *   2. SIGINT: a final checkpoint, exit 0;
 *   3. only `heartbeat.ckpt` is copied to machine B;
 *   4. machine B: `igord resume heartbeat.ckpt` — same DID, the tick count continues;
 *   5. SIGINT again; both machines' histories are merged into one folder;
 *   6. `igord verify` → VALID over the whole life.
 */
import { spawn } from 'node:child_process'
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'

const root = join(import.meta.dirname, '..')
const igord = join(root, 'cmd', 'igord.ts')
const wasm = join(root, 'agents-as', 'build', 'heartbeat.wasm')
const work = mkdtempSync(join(tmpdir(), 'igord-demo-'))
const machineA = join(work, 'machine-a')
const machineB = join(work, 'machine-b')
const merged = join(work, 'merged')
const show = (p: string) => relative(work, p) || '.'

function banner (s: string): void { console.log(`\n── ${s}`) }

/** Runs igord, prefixes its output, and sends SIGINT once `stopAfter` agent log lines were seen. */
function igordRun (label: string, args: string[], stopAfter?: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    console.log(`$ igord ${args.map((a) => a.startsWith(work) ? show(a) : a).join(' ')}`)
    const child = spawn(process.execPath, [igord, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let lines = 0
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${label}: igord did not finish in 30 s`)) }, 30_000)
    const relay = (prefix: string) => (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        if (line === '') continue
        out += line + '\n'
        console.log(`${label} ${prefix} ${line.replaceAll(work + '/', '')}`)
        if (prefix === '│' && line.startsWith('[') && stopAfter !== undefined && ++lines === stopAfter) {
          console.log(`${label} ^C`)
          child.kill('SIGINT')
        }
      }
    }
    child.stdout.on('data', relay('│'))
    child.stderr.on('data', relay('┊'))
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out }) })
  })
}

async function main (): Promise<void> {
  mkdirSync(machineA); mkdirSync(machineB)
  try {
    banner('machine A: birth and a few ticks, then Ctrl+C')
    const a = await igordRun('A', ['run', wasm, '--dir', machineA, '--interval', '150ms'], 7)
    if (a.code !== 0) throw new Error(`igord run exited ${a.code}`)

    banner('copy one file, heartbeat.ckpt, to machine B (nothing else)')
    copyFileSync(join(machineA, 'heartbeat.ckpt'), join(machineB, 'heartbeat.ckpt'))
    console.log(`$ cp ${show(join(machineA, 'heartbeat.ckpt'))} ${show(machineB)}/`)
    await igordRun('B', ['inspect', join(machineB, 'heartbeat.ckpt')])

    banner('machine B: resume — same identity, the tick count continues')
    const b = await igordRun('B', ['resume', join(machineB, 'heartbeat.ckpt'), '--interval', '150ms'], 6)
    if (b.code !== 0) throw new Error(`igord resume exited ${b.code}`)

    banner('merge both machines\' histories and verify the whole life')
    for (const m of [machineA, machineB]) {
      for (const sub of ['history', 'blobs']) cpSync(join(m, sub), join(merged, sub), { recursive: true })
    }
    console.log(`$ cp -r ${show(machineA)}/{history,blobs} ${show(machineB)}/{history,blobs} ${show(merged)}/`)
    const v = await igordRun('V', ['verify', merged])
    if (v.code !== 0) throw new Error(`igord verify exited ${v.code}`)

    const didOf = (out: string) => /did:key:z[1-9A-Za-z]+/.exec(out)?.[0] ?? '?'
    const ticksOf = (out: string) => [...out.matchAll(/\] tick (\d+)/g)].map((m) => Number(m[1]))
    const ta = ticksOf(a.out); const tb = ticksOf(b.out)
    banner('summary')
    console.log(`DID on machine A: ${didOf(a.out)}`)
    console.log(`DID on machine B: ${didOf(b.out)}`)
    console.log(`ticks on A: ${Math.min(...ta)}–${Math.max(...ta)}; ticks on B: ${Math.min(...tb)}–${Math.max(...tb)}`)
    console.log(`history: ${v.out.split('\n')[0]}`)
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

await main()
