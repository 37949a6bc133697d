/**
 * Test driver for `make test`: runs every `test/*.test.ts` (or the files named on the command
 * line) as its own Node process with uvu, two at a time, and ends with the line
 * `N passed, N failed` that CI reads. Exit code 1 when any test or file failed.
 */
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join, relative } from 'node:path'

const here = import.meta.dirname
const files = process.argv.length > 2
  ? process.argv.slice(2)
  : readdirSync(here).filter((f) => f.endsWith('.test.ts')).sort().map((f) => join(here, f))
const parallel = Number(process.env.TEST_JOBS ?? 2)

interface Result { file: string; passed: number; failed: number; skipped: number; code: number | null; out: string }

function runFile (file: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file], { env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { out += d })
    child.on('close', (code) => {
      const num = (label: string) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(out)?.[1] ?? 0)
      const total = num('Total'); const passed = num('Passed'); const skipped = num('Skipped')
      let failed = total - passed - skipped
      if (code !== 0 && failed === 0) failed = 1 // the file crashed before or after its tests
      resolve({ file, passed, failed, skipped, code, out })
    })
  })
}

const queue = [...files]
const results: Result[] = []
async function worker () {
  for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
    const r = await runFile(f)
    results.push(r)
    const name = relative(process.cwd(), r.file)
    console.log(`${r.failed === 0 ? 'ok  ' : 'FAIL'} ${name}: ${r.passed} passed, ${r.failed} failed${r.skipped ? `, ${r.skipped} skipped` : ''}`)
    if (r.failed !== 0) console.log(r.out.split('\n').map((l) => '    ' + l).join('\n'))
  }
}
await Promise.all(Array.from({ length: Math.max(1, parallel) }, worker))
const passed = results.reduce((a, r) => a + r.passed, 0)
const failed = results.reduce((a, r) => a + r.failed, 0)
const skipped = results.reduce((a, r) => a + r.skipped, 0)
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`)
process.exit(failed === 0 ? 0 : 1)
