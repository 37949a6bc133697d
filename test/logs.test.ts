/**
 * `igord logs` (runtime/logs.ts, cmd/logs.ts, checkpoint/peek.ts): the formats of every event kind
 * (the issue-8 kinds from hand-built CBOR, since the runtime does not record them yet), and the real
 * CLI on histories the real `igord run` writes under --sim-seed: text and JSON, --from, the live
 * file when the history lacks its last checkpoint, forks, a corrupt segment, unknown agents, and
 * --follow next to a running agent (stopped by SIGTERM) and after a finishing one (stops by itself).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { encode } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import { readLive } from '../checkpoint/live.ts'
import { peekLive } from '../checkpoint/peek.ts'
import { decodeEntry } from '../checkpoint/writer.ts'
import type { TickRecord } from '../hostcalls/eventlog.ts'
import { formatBudget } from '../cmd/units.ts'
import { describeEvent, escapeLine, formatEvent, formatItem, formatTick, itemJson, quote, tickItems } from '../runtime/logs.ts'
import type { BudgetTrack, LogItem } from '../runtime/logs.ts'
import { forge } from './forge.ts'
import { agentWasm, cleanup, igord, igordSpawn, tempDir } from './helpers.ts'
import { blobBytes, dropBlob, flipBlobByte } from './blobs.ts'
import { entriesIn, explode, type TestEntry } from './hist.ts'

test.after.each(cleanup)

const PEER = '12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdwxyz'
const PEER_SHORT = '12D3KooWAbCdEfGh…wxyz'
const DID = 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'
const ID = new Uint8Array(16).fill(0xab)
const T = 1_764_410_400_000_000_000n // 2025-11-29T10:00:00.000Z
const opts = { budget: (mc: bigint) => `${formatBudget(mc)} units` }
const text = (s: string) => new TextEncoder().encode(s)

function message (fields: Record<string, unknown>): Uint8Array {
  return encode({ id: ID, seq: 3, kind: 'message', from: PEER, time: T, body: text('hi'), ...fields })
}

test('formatEvent: an inbox message, an HTTP outcome (status and error), a timer, a peek', () => {
  assert.is(formatEvent(13, ['inbox', message({})], opts), `tick 13  inbox    #3 message from ${PEER_SHORT} 2 bytes "hi"`)
  assert.is(formatEvent(13, ['inbox', message({})], { ...opts, full: true }), `tick 13  inbox    #3 message from ${PEER} 2 bytes "hi"`)
  const http = message({ seq: 4, kind: 'http', from: 'http', req: 1, status: 200, headers: 'content-type: text/plain\r\n', body: text('x'.repeat(1234)) })
  assert.is(formatEvent(15, ['inbox', http], opts), `tick 15  inbox    #4 http #1 ← 200 (1234 bytes "${'x'.repeat(80)}"…)`)
  const timeout = message({ seq: 5, kind: 'http', from: 'http', req: 2, status: -10, headers: '', body: new Uint8Array(0) })
  assert.is(formatEvent(15, ['inbox', timeout], opts), 'tick 15  inbox    #5 http #2 ← E_HTTP_TIMEOUT')
  const timer = message({ seq: 6, kind: 'timer', from: 'timer', body: new Uint8Array(0), at: T })
  assert.is(formatEvent(16, ['inbox', timer], opts), 'tick 16  inbox    #6 timer (asked for 2025-11-29T10:00:00.000Z)')
  assert.is(formatEvent(16, ['inbox_peek', message({ seq: 7, body: new Uint8Array(100_000) })], opts),
    `tick 16  inbox    #7 message from ${PEER_SHORT} 100000 bytes "${'\\u0000'.repeat(80)}"… (did not fit the agent's buffer: left in the inbox)`)
  // an empty inbox poll is noise: shown only when verbose
  assert.is(formatEvent(17, ['inbox', 0n], opts), null)
  assert.is(formatEvent(17, ['inbox', 0n], { ...opts, verbose: true }), 'tick 17  inbox    empty')
})

test('formatEvent: binary bodies are a size, text bodies a quoted preview with controls escaped', () => {
  const bin = message({ body: Uint8Array.of(0xff, 0xfe, 0x00, 0x01) })
  assert.is(formatEvent(1, ['inbox', bin], opts), `tick 1  inbox    #3 message from ${PEER_SHORT} 4 bytes`)
  const ctl = message({ body: text('a\nb\u001b[31mc"\u202e') })
  assert.is(formatEvent(1, ['inbox', ctl], opts), `tick 1  inbox    #3 message from ${PEER_SHORT} 13 bytes "a\\nb\\u001b[31mc\\"\\u202e"`)
  assert.is(quote('é'.repeat(81)), `"${'é'.repeat(80)}"…`)
  assert.is(quote('é'.repeat(80)), `"${'é'.repeat(80)}"`)
  assert.is(escapeLine('ok\ttab\r\nnext\u0007'), 'ok\ttab\\r\\nnext\\u0007')
  assert.is(formatEvent(2, ['log_emit', 'line one\nline two\u001b[2J'], opts), 'tick 2  log      line one\\nline two\\u001b[2J')
})

test('formatEvent: http_request records and refusals, sleeps, migrate, exit, stdout, unknown events', () => {
  const req = encode({ id: 1, tick: 13, method: 'POST', url: 'http://127.0.0.1:8080/x', headers: 'Content-Type: text/plain\r\n', body: text('hello world!'), key: `${DID}/13/1` })
  assert.is(formatEvent(13, ['http_request', req], opts), 'tick 13  http →   #1 POST http://127.0.0.1:8080/x (12 bytes) key did:key:z6MkhaXg…2doK/13/1')
  assert.is(formatEvent(13, ['http_request', -5n], opts), 'tick 13  http →   refused: E_NOT_ALLOWED (-5)')
  assert.is(formatEvent(13, ['http_request', -99n], opts), 'tick 13  http →   refused: error (-99)')
  assert.is(formatEvent(17, ['sleep_until', 1_795_946_400_000_000_000n], opts), 'tick 17  sleep    until 2026-11-29T10:00:00.000Z')
  assert.is(formatEvent(17, ['sleep_until', 0n], opts), 'tick 17  sleep    until next message')
  assert.is(formatEvent(3, ['migrate_request', PEER], opts), `tick 3  migrate  asks to move to ${PEER}`)
  assert.is(formatEvent(3, ['wasi.proc_exit', 3n], opts), 'tick 3  exit     proc_exit(3)')
  assert.is(formatEvent(3, ['wasi.stdout', 'out'], opts), 'tick 3  stdout   out')
  assert.is(formatEvent(3, ['wasi.stderr', 'err'], opts), 'tick 3  stderr   err')
  assert.is(formatEvent(9, ['net_frob', new Uint8Array(12)], opts), 'tick 9  event    net_frob 12 bytes')
  assert.is(formatEvent(9, ['net_count', 7n], opts), 'tick 9  event    net_count 7')
  assert.is(formatEvent(9, ['net_name', 'abc'], opts), 'tick 9  event    net_name 3 bytes "abc"')
  // a known kind with an undecodable payload says so instead of failing
  assert.match(formatEvent(9, ['inbox', Uint8Array.of(0xff)], opts)!, /^tick 9  inbox    \(inbox: cannot decode: message: /)
  assert.match(formatEvent(9, ['http_request', text('not cbor')], opts)!, /^tick 9  http →   \(http_request: cannot decode: request record: /)
})

test('formatEvent: inputs are noise unless verbose', () => {
  const noisy: [string, Uint8Array | bigint | string][] = [['clock_now', T], ['rand_bytes', new Uint8Array(40).fill(1)], ['env.seed', new Uint8Array(8)], ['wallet_balance', 1_500_000n], ['agent_did', DID], ['agent_sign', new Uint8Array(64).fill(2)], ['wasi.clock_time_get', 5n], ['wasi.random_get', Uint8Array.of(9)]]
  for (const e of noisy) assert.is(formatEvent(1, e as never, opts), null, e[0])
  const v = { ...opts, verbose: true }
  assert.is(formatEvent(1, ['clock_now', T], v), 'tick 1  clock    2025-11-29T10:00:00.000Z (1764410400000000000 ns)')
  assert.is(formatEvent(1, ['rand_bytes', new Uint8Array(40).fill(1)], v), `tick 1  rand     40 bytes ${'01'.repeat(32)}…`)
  assert.is(formatEvent(1, ['wallet_balance', 1_500_000n], v), 'tick 1  wallet   1.500000 units')
  assert.is(formatEvent(1, ['agent_did', DID], v), `tick 1  did      ${DID}`)
  assert.is(formatEvent(1, ['wasi.random_get', Uint8Array.of(9)], v), 'tick 1  random   1 bytes 09')
})

test('formatTick: fund first with the budget after it, traps, finishing; the budget is tracked as the runtime charges', () => {
  const fund = message({ seq: 1, kind: 'fund', body: new Uint8Array(0), amount: 5_000_000n, sig: new Uint8Array(64) })
  const rec: TickRecord = { tick: 16, events: [['fund', fund], ['clock_now', T], ['log_emit', 'thanks']], fuel: 2_500_000n, result: 0, trap: null }
  const track: BudgetTrack = { budget: 1_000_000n, price: 1000n }
  assert.equal(formatTick(rec, opts, track), [
    `tick 16  fund     +5.000000 units from ${PEER_SHORT} (#1)  budget 6.000000 units`,
    'tick 16  log      thanks',
  ])
  assert.is(track.budget, 6_000_000n - 2500n) // ceil(2,500,000 × 1000 / 10^6)
  assert.equal(formatTick(rec, { ...opts, verbose: true }), [
    `tick 16  fund     +5.000000 units from ${PEER_SHORT} (#1)`,
    'tick 16  clock    2025-11-29T10:00:00.000Z (1764410400000000000 ns)',
    'tick 16  log      thanks',
    'tick 16  end      idle  fuel 2500000',
  ])
  // charging stops at 0
  const poor: BudgetTrack = { budget: 10n, price: 1000n }
  formatTick(rec, opts, poor)
  assert.is(poor.budget, 5_000_010n - 2500n)
  assert.equal(formatTick({ tick: 18, events: [], fuel: 1_000_000_001n, result: null, trap: 'out of fuel (limit 1000000000 per tick)' }, opts),
    ['tick 18  trap     out of fuel (limit 1000000000 per tick)  (fuel 1000000001; the tick was rolled back)'])
  assert.equal(formatTick({ tick: 30, events: [], fuel: 7n, result: 2, trap: null }, opts), ['tick 30  end      finished  fuel 7'])
  assert.equal(formatTick({ tick: 31, events: [], fuel: 7n, result: 1, trap: null }, opts), [])
})

test('JSON form: one object per line, bodies as text or base64, 64-bit values as strings', () => {
  const j = (it: LogItem) => JSON.parse(itemJson(it)) as Record<string, unknown>
  assert.equal(j(describeEvent(12, ['log_emit', 'hello world'])), { tick: 12, kind: 'log', text: 'hello world' })
  assert.equal(j(describeEvent(13, ['inbox', message({})])), {
    tick: 13, kind: 'inbox', message: { seq: 3, kind: 'message', from: PEER, time: T.toString(), id: 'ab'.repeat(16), bytes: 2, body: 'hi' },
  })
  const bin = j(describeEvent(13, ['inbox', message({ body: Uint8Array.of(0xff, 0) })])).message as Record<string, unknown>
  assert.is(bin.body_b64, '/wA=')
  assert.is(bin.body, undefined)
  const http = j(describeEvent(15, ['inbox', message({ kind: 'http', req: 2, status: -14, headers: '', body: new Uint8Array(0) })])).message as Record<string, unknown>
  assert.equal([http.req, http.status, http.status_name, http.headers], [2, -14, 'E_HTTP_IN_DOUBT', ''])
  assert.equal(j(describeEvent(13, ['http_request', -7n])), { tick: 13, kind: 'http_request', error: -7, error_name: 'E_TOO_MANY' })
  assert.equal(j(describeEvent(17, ['sleep_until', 0n])), { tick: 17, kind: 'sleep', at: null, until: null })
  assert.equal(j(describeEvent(1, ['clock_now', T])), { tick: 1, kind: 'clock', ns: T.toString(), time: '2025-11-29T10:00:00.000Z' })
  const items = tickItems({ tick: 4, events: [], fuel: 99n, result: null, trap: 'unreachable' })
  assert.equal(items.map((it) => j(it)), [{ tick: 4, kind: 'trap', trap: 'unreachable', fuel: '99' }])
  assert.is(formatItem({ tick: 5, kind: 'done', status: 'handoff', target: PEER }), `tick 5  done     handed off to ${PEER}: its log continues on that host`)
})

// ---- the real CLI --------------------------------------------------------------------------------

/** `igord run` that must exit 0. */
function ok (args: string[]): void {
  const r = igord([...args, '--interval', '0ms', '-q'])
  assert.is(r.code, 0, `igord ${args.join(' ')} failed: ${r.stderr}`)
}

/** A data directory where heartbeat lived `ticks` ticks under --sim-seed (one checkpoint per tick). */
function heartbeat (ticks: number, seed = 'logs'): string {
  const dir = tempDir()
  ok(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', String(ticks), '--sim-seed', seed])
  return dir
}

/** The history entry of `name`'s checkpoint at `tick` in `dir` (in a segment or an entry file). */
function entryAt (dir: string, name: string, tick: number): TestEntry {
  const t = entriesIn(path.join(dir, 'history', name)).filter((e) => e.tick === tick)
  assert.is(t.length, 1, `one entry at tick ${tick}`)
  return t[0]
}

/**
 * The entry file of `name`'s checkpoint at `tick` in `dir`, after rewriting the history as one file
 * per entry ({@link explode}: the layout before segments, which readers still read), for tests that
 * delete or corrupt one entry.
 */
function entryFileAt (dir: string, name: string, tick: number): string {
  const f = explode(path.join(dir, 'history', name)).filter((n) => path.basename(n).startsWith(String(tick).padStart(12, '0') + '-'))
  assert.is(f.length, 1, `one entry file at tick ${tick}`)
  return f[0]
}

const logLines = (out: string): string[] => out.split('\n').filter((l) => /^tick \d+ +log /.test(l))
/** heartbeat's one line per tick (`tick N  log      tick N, age …`; not its milestone lines). */
const beatLines = (out: string): string[] => out.split('\n').filter((l) => /^tick \d+ +log {6}(heartbeat born|tick \d+, age)/.test(l))

test('igord logs: the whole life as text (name + --dir, the history dir, the data dir, the .ckpt give the same)', () => {
  const dir = heartbeat(6)
  const r = igord(['logs', 'heartbeat', '--dir', dir])
  assert.is(r.code, 0, r.stderr)
  assert.is(r.stderr, '')
  const lines = r.stdout.trimEnd().split('\n')
  assert.equal(logLines(r.stdout), ['tick 0  log      heartbeat born', ...[1, 2, 3, 4, 5, 6].map((t) => `tick ${t}  log      tick ${t}, age ${t} s`)])
  assert.match(lines[1], /^tick 0  checkpoint running  budget 0\.\d{6} units  fuel \d+  epoch 0 host 12D3KooW\w{8}…\w{4}  agent did:key:z6Mk\w+$/)
  assert.match(lines[lines.length - 1], /^tick 6  checkpoint running  budget 0\.\d{6} units  fuel \d+$/)
  assert.is(lines.length, 14)
  // the last checkpoint line's budget is the live file's: the budget is the header's
  const live = readLive(path.join(dir, 'heartbeat.ckpt')).parsed
  assert.ok(lines[lines.length - 1].includes(`budget ${formatBudget(live.budget)} units  fuel ${live.fuel}`))
  for (const other of [[path.join(dir, 'history', 'heartbeat')], [dir], [path.join(dir, 'heartbeat.ckpt')], ['heartbeat', '--node', dir]]) {
    const o = igord(['logs', ...other])
    assert.is(o.code, 0, o.stderr)
    assert.is(o.stdout, r.stdout, other.join(' '))
  }
  // --verbose adds the clock readings, each tick's end and whole IDs
  const v = igord(['logs', 'heartbeat', '--dir', dir, '--verbose'])
  assert.is(v.code, 0, v.stderr)
  assert.match(v.stdout, /^tick 3  clock    2023-11-14T22:13:23\.000Z \(\d+ ns\)$/m)
  assert.match(v.stdout, /^tick 3  end      idle  fuel \d+$/m)
  assert.match(v.stdout, /^tick 0  end      birth  fuel \d+$/m)
  assert.match(v.stdout, /host 12D3KooW\w{44}/)
})

test('igord logs --json and --from', () => {
  const dir = heartbeat(6)
  const r = igord(['logs', 'heartbeat', '--dir', dir, '--json'])
  assert.is(r.code, 0, r.stderr)
  const items = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  assert.equal(items.filter((i) => i.kind === 'log').map((i) => [i.tick, i.text]), [[0, 'heartbeat born'], ...[1, 2, 3, 4, 5, 6].map((t) => [t, `tick ${t}, age ${t} s`])])
  const cps = items.filter((i) => i.kind === 'checkpoint')
  assert.equal(cps.map((c) => c.tick), [0, 1, 2, 3, 4, 5, 6])
  assert.equal(new Set(items.map((i) => i.kind)), new Set(['log', 'checkpoint']))
  assert.equal(Object.keys(cps[0]).sort(), ['agent', 'budget', 'changed', 'cid', 'epoch', 'fuel', 'host', 'kind', 'price', 'status', 'tick', 'time'])
  assert.is(cps[6].cid, entryAt(dir, 'heartbeat', 6).cid)
  assert.is(typeof cps[6].fuel, 'string')

  const from = igord(['logs', 'heartbeat', '--dir', dir, '--from', '4'])
  assert.is(from.code, 0, from.stderr)
  const lines = from.stdout.trimEnd().split('\n')
  assert.is(lines[0], 'tick 4  log      tick 4, age 4 s')
  // the first checkpoint shown names its epoch and host
  assert.match(lines[1], /^tick 4  checkpoint running  budget \S+ units  fuel \d+  epoch 0 host /)
  assert.equal(logLines(from.stdout).length, 3)
  const jf = igord(['logs', 'heartbeat', '--dir', dir, '--from', '5', '--json']).stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { tick: number })
  assert.ok(jf.length === 4 && jf.every((i) => i.tick >= 5), JSON.stringify(jf))
  assert.is(igord(['logs', 'heartbeat', '--dir', dir, '--from', '99']).stdout, '')
  const bad = igord(['logs', 'heartbeat', '--dir', dir, '--from', '-1'])
  assert.is(bad.code, 2)
})

test('igord logs shows the issue-8 kinds recorded in a real history (forged into its segment)', () => {
  const dir = heartbeat(4)
  const fund = message({ seq: 1, kind: 'fund', body: new Uint8Array(0), amount: 5_000_000n, sig: new Uint8Array(64) })
  const req = encode({ id: 1, tick: 3, method: 'GET', url: 'http://127.0.0.1:8080/', headers: '', body: new Uint8Array(0), key: `${DID}/3/1` })
  forge(dir, 'heartbeat', 3, (recs) => {
    recs[0].events.unshift(['fund', fund])
    recs[0].events.push(['inbox', message({ seq: 2 })], ['inbox', 0n], ['http_request', req], ['sleep_until', 0n])
  })
  fs.unlinkSync(path.join(dir, 'heartbeat.ckpt')) // forge re-signs the history, not the live file
  const r = igord(['logs', 'heartbeat', '--dir', dir, '--from', '3'])
  assert.is(r.code, 0, r.stderr)
  const before = entryAt(dir, 'heartbeat', 2).e.parsed.budget
  assert.equal(r.stdout.trimEnd().split('\n').slice(0, 5), [
    `tick 3  fund     +5.000000 units from ${PEER_SHORT} (#1)  budget ${formatBudget(before + 5_000_000n)} units`,
    'tick 3  log      tick 3, age 3 s',
    `tick 3  inbox    #2 message from ${PEER_SHORT} 2 bytes "hi"`,
    'tick 3  http →   #1 GET http://127.0.0.1:8080/ (0 bytes) key did:key:z6MkhaXg…2doK/3/1',
    'tick 3  sleep    until next message',
  ])
})

test('igord logs reads the live file when the history lacks its last checkpoint, or holds none of it (a gap)', () => {
  const dir = heartbeat(5)
  const live = path.join(dir, 'heartbeat.ckpt')
  const full = igord(['logs', live]).stdout
  // a kill between writing the live file and the history entry: the entry is missing, and here even
  // the blob of its segment (only the live file has it then)
  const last = entryFileAt(dir, 'heartbeat', 5)
  const logCid = decodeEntry(fs.readFileSync(last), last).parsed.log!
  fs.unlinkSync(last)
  dropBlob(dir, logCid)
  const r = igord(['logs', live])
  assert.is(r.code, 0, r.stderr)
  assert.is(r.stdout, full)
  // without the live file, the history ends at tick 4
  fs.renameSync(live, path.join(dir, 'elsewhere.bak'))
  const h = igord(['logs', 'heartbeat', '--dir', dir])
  assert.match(h.stdout, /tick 4  checkpoint running[^\n]*\n$/)
  // the live file copied alone: only its own segment, after a gap line
  const alone = tempDir()
  fs.copyFileSync(path.join(dir, 'elsewhere.bak'), path.join(alone, 'heartbeat.ckpt'))
  const a = igord(['logs', path.join(alone, 'heartbeat.ckpt')])
  assert.is(a.code, 0, a.stderr)
  assert.match(a.stdout, /^tick 5  gap      earlier history is not here \(the previous checkpoint bafkrei\w+ is missing\)\ntick 5  log      tick 5, age 5 s\ntick 5  checkpoint running {2}budget \S+ units {2}fuel \d+ {2}epoch 0 host \S+\n$/)
})

test('igord logs on a fork: the branch the live file continues, else the longest', () => {
  const dir = heartbeat(3)
  const other = tempDir()
  fs.cpSync(dir, other, { recursive: true })
  // dir goes on to tick 6; other goes on from the same tick 3 to tick 5 at another price
  fs.rmSync(path.join(dir, 'locks'), { recursive: true, force: true })
  ok(['resume', path.join(dir, 'heartbeat.ckpt'), '--ticks', '3', '--sim-seed', 'logs'])
  ok(['resume', path.join(other, 'heartbeat.ckpt'), '--ticks', '2', '--sim-seed', 'logs', '--price', '2000'])
  // both resumes appended to a segment of the same name (its first entry, tick 0): merge them as entry files
  for (const d of [dir, other]) explode(path.join(d, 'history', 'heartbeat'))
  for (const n of fs.readdirSync(path.join(other, 'history', 'heartbeat'))) fs.copyFileSync(path.join(other, 'history', 'heartbeat', n), path.join(dir, 'history', 'heartbeat', n))
  for (const n of fs.readdirSync(path.join(other, 'blobs'))) fs.copyFileSync(path.join(other, 'blobs', n), path.join(dir, 'blobs', n))
  assert.match(igord(['verify', dir]).stdout, /FORK after tick 3/)
  const longest = igord(['logs', 'heartbeat', '--dir', dir])
  assert.is(longest.code, 0, longest.stderr)
  assert.equal(logLines(longest.stdout).map((l) => Number(/^tick (\d+)/.exec(l)![1])), [0, 1, 2, 3, 4, 5, 6])
  fs.copyFileSync(path.join(other, 'heartbeat.ckpt'), path.join(dir, 'heartbeat.ckpt'))
  const branch = igord(['logs', 'heartbeat', '--dir', dir])
  assert.is(branch.code, 0, branch.stderr)
  const ticks = logLines(branch.stdout).map((l) => Number(/^tick (\d+)/.exec(l)![1]))
  assert.equal(ticks, [0, 1, 2, 3, 4, 5])
  const cp4 = (out: string) => out.split('\n').find((l) => l.startsWith('tick 4  checkpoint'))
  assert.ok(cp4(branch.stdout) !== cp4(longest.stdout), 'the other branch, charged at another price')
  // and the branch is what the live file's own chain holds
  assert.ok(branch.stdout.includes(`budget ${formatBudget(readLive(path.join(dir, 'heartbeat.ckpt')).parsed.budget)} units`))
})

test('igord logs: a corrupt segment is one line naming the blob (exit 3); unknown agents and directories exit 2', () => {
  const dir = heartbeat(4)
  const logCid = entryAt(dir, 'heartbeat', 3).e.parsed.log!
  const blob = path.join(dir, 'blobs', logCid)
  flipBlobByte(dir, logCid, blobBytes(dir, logCid).length - 2)
  const r = igord(['logs', 'heartbeat', '--dir', dir])
  assert.is(r.code, 3)
  assert.is(r.stderr, `igord: ${blob}: the event log of the checkpoint at tick 3 is corrupt (its bytes do not match its CID)\n`)
  assert.match(r.stdout, /tick 2  checkpoint/) // what came before was printed
  assert.is(igord(['logs', 'heartbeat', '--dir', dir, '--from', '4']).code, 0) // not read when skipped
  dropBlob(dir, logCid)
  const gone = igord(['logs', 'heartbeat', '--dir', dir])
  assert.is(gone.code, 3)
  assert.match(gone.stderr, new RegExp(`^igord: ${blob}: cannot read the event log of the checkpoint at tick 3: ENOENT\n$`))
  // a corrupt history entry
  const e = entryFileAt(dir, 'heartbeat', 1)
  fs.writeFileSync(e, fs.readFileSync(e).subarray(0, 50))
  const ce = igord(['logs', 'heartbeat', '--dir', dir])
  assert.is(ce.code, 3)
  assert.match(ce.stderr, new RegExp(`^igord: ${e}: truncated`))

  const u = igord(['logs', 'nobody', '--dir', dir])
  assert.is(u.code, 2)
  assert.is(u.stderr, `igord: nobody: no agent 'nobody' in ${dir} (agents there: heartbeat)\n`)
  const m = igord(['logs', 'heartbeat', '--dir', path.join(dir, 'missing')])
  assert.is(m.code, 2)
  assert.is(m.stderr, `igord: ${path.join(dir, 'missing')}: no such data directory\n`)
  assert.is(igord(['logs', path.join(dir, 'nope.ckpt')]).code, 2)
  assert.is(igord(['logs', 'bad/name', '--dir', dir]).code, 2)
  assert.is(igord(['logs', 'heartbeat', '--dir', dir, '--node', dir]).code, 2)
})

test('peekLive reads the header, signature and segment of a live file as readLive does, and refuses a truncated one', () => {
  const dir = heartbeat(2)
  const file = path.join(dir, 'heartbeat.ckpt')
  const p = peekLive(file)
  const l = readLive(file)
  assert.equal([Buffer.from(p.header), Buffer.from(p.sig), Buffer.from(p.log!)], [Buffer.from(l.header), Buffer.from(l.sig), Buffer.from(l.log!)])
  assert.is(p.parsed.tick, 2)
  const cut = path.join(dir, 'cut.ckpt')
  fs.writeFileSync(cut, fs.readFileSync(file).subarray(0, 70_000))
  assert.throws(() => peekLive(cut), (e: unknown) => e instanceof CheckpointError && /^.*cut\.ckpt: truncated/.test((e as Error).message))
  const flipped = fs.readFileSync(file)
  flipped[flipped.length - 20] ^= 1 // inside the header or manifest: either the signature or nothing read
  fs.writeFileSync(cut, flipped)
  try { peekLive(cut) } catch (e) { assert.ok(e instanceof CheckpointError, String(e)) }
})

test('igord logs --follow prints new ticks as a running agent checkpoints, and stops on SIGTERM (exit 0)', async () => {
  const dir = tempDir()
  const run = igordSpawn(['run', agentWasm('heartbeat'), '--dir', dir, '--interval', '100ms', '--sim-seed', 'follow'])
  try {
    await run.waitFor((out) => /\[heartbeat\] tick 2,/.test(out))
    const logs = igordSpawn(['logs', 'heartbeat', '--dir', dir, '--follow'])
    try {
      await logs.waitFor((out) => /^tick 0  checkpoint/m.test(out))
      const first = Math.max(...beatLines(logs.stdout()).map((l) => Number(/^tick (\d+)/.exec(l)![1])))
      // ticks written after it started appear
      await logs.waitFor((out) => new RegExp(`^tick ${first + 3}  checkpoint`, 'm').test(out))
      logs.child.kill('SIGTERM')
      const r = await logs.done()
      assert.is(r.code, 0, r.stderr)
      const ticks = beatLines(r.stdout).map((l) => Number(/^tick (\d+)/.exec(l)![1]))
      assert.equal(ticks, ticks.map((_, k) => k), 'every tick once, in order')
      assert.ok(ticks.length >= first + 4)
    } finally { logs.child.kill('SIGKILL') }
    run.child.kill('SIGTERM')
    assert.is((await run.done()).code, 0)
  } finally { run.child.kill('SIGKILL') }
})

test('igord logs --follow ends by itself when the agent finishes, with a last line saying so', async () => {
  const dir = tempDir()
  const run = igordSpawn(['run', agentWasm('finisher'), '--dir', dir, '--interval', '150ms', '--sim-seed', 'follow'])
  try {
    await run.waitFor((out) => /finisher: starting/.test(out))
    const logs = igordSpawn(['logs', 'finisher', '--dir', dir, '--follow', '--json'])
    try {
      const r = await logs.done(120_000)
      assert.is(r.code, 0, r.stderr)
      const items = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
      assert.equal(items.filter((i) => i.kind === 'log').map((i) => i.text), ['finisher: starting', '1/5', '2/5', '3/5', '4/5', '5/5'].map((s, k) => k === 0 ? s : `finisher: ${s}`))
      assert.equal(items[items.length - 1], { tick: 5, kind: 'done', status: 'finished' })
      assert.equal(items[items.length - 2].status, 'finished')
    } finally { logs.child.kill('SIGKILL') }
    assert.is((await run.done()).code, 0)
  } finally { run.child.kill('SIGKILL') }
})

test.run()
