/**
 * Packaging: `npm pack` builds the JavaScript in dist/ and the tarball installs into an empty
 * prefix, where the `igord` bin answers `--help` with the exit codes. Uses only the npm registry
 * (through the local cache when warm) and no other network.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cleanup, ROOT, tempDir } from './helpers.ts'

test.after(cleanup)

test('the packed tarball installs globally into a temp prefix and `igord --help` runs from there', () => {
  const work = tempDir('igord-pack-')
  const npm = 'npm' // the machine's npm; the pinned Node runs the installed bin (first on PATH)
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}` }
  execFileSync(npm, ['pack', '--pack-destination', work, '--loglevel=error'], { cwd: ROOT, env, stdio: 'pipe', timeout: 120_000 })
  const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'))
  assert.ok(tarball !== undefined, 'npm pack produced a tarball')
  const prefix = join(work, 'prefix')
  execFileSync(npm, ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', join(work, tarball)], { env, stdio: 'pipe', timeout: 300_000 })
  const r = spawnSync(join(prefix, 'bin', 'igord'), ['--help'], { env, encoding: 'utf8', timeout: 30_000 })
  assert.is(r.status, 0, r.stderr)
  assert.match(r.stdout, /Usage: igord/)
  assert.match(r.stdout, /Exit codes:/)
  for (const cmd of ['run', 'resume', 'verify', 'inspect', 'instrument']) assert.match(r.stdout, new RegExp(`\\b${cmd}\\b`))
})

test.run()
