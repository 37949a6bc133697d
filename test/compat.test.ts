/**
 * A data directory written by igord main (ed84cf3, before packs and the append-only live file:
 * one blob file per page, log and I/O state, a whole-file `.ckpt`) still verifies, replays and
 * resumes; the resumed checkpoints go to a pack beside the old blob files and the whole history
 * stays VALID. The fixture test/fixtures/main-ed84cf3-heartbeat.json.gz holds that directory's files
 * (`igord run heartbeat.wasm --ticks 4 --interval 0ms --sim-seed compat` on main), base64 in JSON.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { gunzipSync } from 'node:zlib'
import { formatReport, verifyHistory } from '../checkpoint/history.ts'
import { readLive } from '../checkpoint/live.ts'
import { formatReplay, replayHistory } from '../runtime/replay.ts'
import { packedBlobs } from './blobs.ts'
import { cleanup, igord, tempDir } from './helpers.ts'

test.after(cleanup)

/** Writes the fixture's files into a new temp data directory (folders 0700, files 0600). */
function mainDir (): string {
  const dir = tempDir('igord-compat-')
  const { files } = JSON.parse(gunzipSync(fs.readFileSync(path.join(import.meta.dirname, 'fixtures', 'main-ed84cf3-heartbeat.json.gz'))).toString()) as { files: Record<string, string> }
  for (const [rel, b64] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true, mode: 0o700 })
    fs.writeFileSync(path.join(dir, rel), Buffer.from(b64, 'base64'), { mode: 0o600 })
  }
  return dir
}

test('a history written by main verifies and replays as it is', () => {
  const dir = mainDir()
  assert.ok(fs.readdirSync(path.join(dir, 'blobs')).every((n) => n.startsWith('bafkrei')), 'one file per blob, no pack')
  const r = verifyHistory([dir])
  assert.ok(r.valid, formatReport(r))
  assert.equal([r.checkpoints, r.ticks], [5, [0, 4]])
  const rr = replayHistory([dir])
  assert.ok(rr.valid, formatReplay(rr, formatReport))
  assert.is(readLive(path.join(dir, 'heartbeat.ckpt')).parsed.tick, 4, 'its whole-file .ckpt reads')
})

test('a main directory resumed by this igord: new blobs in a pack beside the old files, the history VALID and replayable', () => {
  const dir = mainDir()
  const before = fs.readdirSync(path.join(dir, 'blobs')).sort()
  const r = igord(['resume', path.join(dir, 'heartbeat.ckpt'), '--ticks', '3', '--interval', '0ms', '--sim-seed', 'compat', '-q'])
  assert.is(r.code, 0, r.stderr)
  const after = fs.readdirSync(path.join(dir, 'blobs'))
  for (const n of before) assert.ok(after.includes(n), `old blob file ${n} kept`)
  assert.ok(after.some((n) => /^heartbeat\+[0-9a-f]{16}\.pack$/.test(n)), after.join(' '))
  assert.ok(packedBlobs(dir).length >= 3, 'the new logs and changed pages are packed')
  const v = verifyHistory([dir])
  assert.ok(v.valid, formatReport(v))
  assert.equal([v.checkpoints, v.ticks], [8, [0, 7]])
  const rr = replayHistory([dir])
  assert.ok(rr.valid, formatReplay(rr, formatReport))
  assert.is(igord(['verify', '--replay', dir]).code, 0)
})

test.run()
