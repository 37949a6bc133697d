/**
 * The real CLI with a closed stdout (`igord --help | head`, a reader that went away): it ends
 * quietly — no EPIPE stack trace, exit 0 — and a running agent or node stops as on SIGTERM, with
 * its final checkpoint written.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, IGORD, igord, tempDir } from './helpers.ts'
import type { Run } from './helpers.ts'

test.after(cleanup)

interface Closed { code: number | null; signal: string | null; stdout: string; stderr: string }

/**
 * Runs igord with a stdout pipe whose reading end is closed: at once (`afterLines` 0, before the
 * child has started, so its first write fails), or after that many lines were read.
 */
function withClosedStdout (args: string[], afterLines = 0, onClosed?: () => void): Promise<Closed> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [IGORD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stderr.on('data', (d) => { err += d })
    if (afterLines === 0) child.stdout.destroy()
    else {
      child.stdout.on('data', (d) => {
        out += d
        if (out.split('\n').length > afterLines && !child.stdout.destroyed) { child.stdout.destroy(); onClosed?.() }
      })
    }
    const guard = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`igord ${args.join(' ')} did not end in 60 s:\n${out}\n${err}`)) }, 60_000)
    child.on('close', (code, signal) => { clearTimeout(guard); resolve({ code, signal, stdout: out, stderr: err }) })
  })
}

const noTrace = (r: Closed) => {
  assert.not.match(r.stderr, /EPIPE|Error:|\n\s+at /, `no stack trace:\n${r.stderr}`)
}

test('igord --help with a closed stdout exits 0 without a stack trace', async () => {
  for (const args of [['--help'], ['ps', '--help'], ['--version']]) {
    const r = await withClosedStdout(args)
    noTrace(r)
    assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
    assert.is(r.signal, null)
  }
})

test('igord run with a closed stdout stops like SIGTERM and writes its final checkpoint', async () => {
  const dir = tempDir()
  const r = await withClosedStdout(['run', agentWasm('heartbeat'), '--dir', dir, '--interval', '10ms'], 2)
  noTrace(r)
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stderr, /stopped at tick \d+/)
  assert.ok(existsSync(join(dir, 'heartbeat.ckpt')))
})

test('igord node with a closed stdout stops cleanly at its next output', async () => {
  const dir = tempDir('igord-node-')
  let ran: Run | undefined
  // The node prints its agents' log lines: the first one after the close meets the EPIPE.
  const r = await withClosedStdout(['node', '--data', dir, '--interval', '20ms', '--listen', '/ip4/127.0.0.1/tcp/0'], 1, () => {
    setTimeout(() => { ran = igord(['run', agentWasm('heartbeat'), '--node', dir, '--interval', '20ms']) }, 0)
  })
  assert.is(ran?.code, 0, ran?.stderr)
  noTrace(r)
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stderr, /SIGTERM/)
})

test.run()
