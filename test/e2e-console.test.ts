/**
 * The web console (console/, p2p/console.ts) in real headless Chromium (Debian's `chromium`,
 * driven by playwright-core; `make test` installs it when missing) against real `igord node
 * --http` children on 127.0.0.1: the table lists a running agent; its page streams new log lines
 * while open (a tick that happened after the page showed the log appears in it, in order, each
 * tick once); an action's API error shows as one line; migrating from the page moves the agent to a
 * second node, whose console (with a token: the page asks for it, and the log stream opens with the
 * session cookie) shows it at epoch 1 with the handoff in its timeline, as does the first node's; send
 * (refused: no inbox), fund and stop from the page. Screenshots are
 * saved in a temp dir (printed); `CONSOLE_SCREENSHOT=<file>` also copies the agent page there
 * (how docs/console.png is made).
 */
// test-timeout: 600
import { copyFileSync, existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, MIN_WAIT_MS } from './helpers.ts'
import { nodeTracker, ps, startNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

/** Where the browser is: Debian's chromium (the Makefile's `chromium` target installs it). */
const CHROMIUM = process.env.IGORD_CHROMIUM ?? '/usr/bin/chromium'
const TOKEN = 'console-test-token-0123456789'
/** Bound of every wait on the page, ms (a loaded 2-core machine is slow; nothing here measures speed). */
const WAIT_MS = Math.max(60_000, MIN_WAIT_MS)

const nodes = nodeTracker()
let browser: Browser | null = null
test.after.each(async () => { await browser?.close().catch(() => {}); browser = null; await nodes.killAll() })
test.after(cleanup)

/** Starts `igord node --http 127.0.0.1:0` (plus `args`) and returns it with its HTTP URL (its `http <url>` stdout line). */
async function httpNode (args: string[] = []): Promise<NodeProc & { url: string }> {
  const n = nodes.track(await startNode({ args: ['--http', '127.0.0.1:0', ...args] }))
  await n.live.waitFor((out) => /^http http:\/\/127\.0\.0\.1:\d+$/m.test(out), WAIT_MS)
  return { ...n, url: /^http (\S+)$/m.exec(n.live.stdout())![1] }
}

/** A new page that fails the test on a script error or a CSP violation (both reach the console as errors; an API's 4xx/5xx answer, which the page shows, does not). */
async function newPage (b: Browser, problems: string[]): Promise<Page> {
  const page = await b.newPage({ viewport: { width: 1100, height: 900 } })
  page.setDefaultTimeout(WAIT_MS)
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  page.on('console', (m) => { if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of \d{3}\b/.test(m.text())) problems.push(`console error: ${m.text()}`) })
  return page
}

/** The ticks of heartbeat's per-tick lines (`tick N  log  tick N, age S s`) shown in the page's log, in page order. */
async function logTicks (page: Page): Promise<number[]> {
  const lines = await page.locator('#log li').allTextContents()
  return lines.map((l) => /^tick (\d+)\s+log\s+tick \d+, age/.exec(l)).filter((m) => m !== null).map((m) => Number(m![1]))
}

/** Asserts that the page's log events came in stream order, each once: their ids `<tick>:<n>` strictly increase. */
async function assertEventOrder (page: Page): Promise<void> {
  const ids = (await page.locator('#log li[data-id]').evaluateAll((es) => es.map((e) => e.getAttribute('data-id') ?? ''))).filter((x) => /^\d+:\d+$/.test(x))
  assert.ok(ids.length > 0, 'events with ids')
  for (let i = 1; i < ids.length; i++) {
    const [t0, n0] = ids[i - 1].split(':').map(Number); const [t1, n1] = ids[i].split(':').map(Number)
    assert.ok(t1 > t0 || (t1 === t0 && n1 > n0), `event ${ids[i]} after ${ids[i - 1]}`)
  }
}

test('console: lists an agent, streams its log, shows action errors, migrates it to a second node and shows the handoff, funds and stops it', async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM}: no Chromium here; \`make test\` installs Debian's chromium (make chromium), or set IGORD_CHROMIUM`)
  const shots = mkdtempSync(join(tmpdir(), 'igord-console-shots-')) // kept after the test: the screenshots
  // 300 ms ticks on both nodes (a node runs an arriving agent at its own --interval): readable logs, and
  // B's newest 300 checkpoints (what the page reads) still reach back to A's epoch during the test
  const a = await httpNode(['--interval', '300ms'])
  const b = await httpNode(['--interval', '300ms', '--http-token', TOKEN])
  const r = igord(['run', agentWasm('heartbeat'), '--node', a.dir, '--interval', '300ms'])
  assert.is(r.code, 0, r.stderr)
  await until(() => (ps(a.dir).find((x) => x.name === 'heartbeat')?.tick ?? 0) >= 2, WAIT_MS, 'heartbeat ticks on node A')

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: WAIT_MS })
  const problems: string[] = []
  const page = await newPage(browser, problems)
  let pb: Page | null = null
  try { await steps() } catch (e) {
    // what the pages showed when it failed, for the report
    for (const [p, n] of [[page, 'fail-a'], [pb, 'fail-b']] as const) await p?.screenshot({ path: join(shots, `${n}.png`), fullPage: true }).catch(() => {})
    throw new Error(`${(e as Error).message}\n(screenshots in ${shots}; page problems: ${problems.join('; ') || 'none'})`)
  }
  async function steps (): Promise<void> {

    // the agents table lists the running agent, with its status and host
    await page.goto(a.url + '/')
    const row = page.locator('tr[data-agent="heartbeat"]')
    await row.waitFor()
    assert.match(await row.locator('td').nth(0).textContent() ?? '', /^running/)
    assert.is(await row.locator('td').nth(5).textContent(), a.peer, 'host column is node A')
    assert.is(await page.locator('table caption').count(), 1, 'the table has a caption')
    assert.is(await page.locator('thead th[scope="col"]').count(), 7, 'column headers')
    await page.screenshot({ path: join(shots, 'agents.png') })

    // the agent page: keyboard-reachable link, then the log streams
    await row.getByRole('link', { name: 'heartbeat' }).focus()
    await page.keyboard.press('Enter')
    await page.waitForURL(/#\/agents\/heartbeat$/)
    await page.locator('#log li', { hasText: /^tick \d+\s+log\s+tick \d+, age/ }).first().waitFor()
    const before = await logTicks(page)
    assert.ok(before.length > 0, 'log lines shown when the page opened')
    const shown = before[before.length - 1]
    // a tick that happens after the page showed `shown`: the page cannot have had its line before
    const tickA = async () => (await (await fetch(`${a.url}/api/agents/heartbeat`)).json() as { tick: number }).tick
    let next = 0
    for (let t0 = Date.now(); next <= shown; next = await tickA()) {
      if (Date.now() - t0 > WAIT_MS) throw new Error(`node A did not tick past ${shown}`)
      await new Promise((res) => setTimeout(res, 50))
    }
    const t0 = Date.now()
    await page.locator('#log li', { hasText: new RegExp(`^tick ${next}\\s+log\\s+tick ${next}, age`) }).waitFor()
    console.log(`  tick ${next} ran after the page showed tick ${shown}; its line appeared ${Date.now() - t0} ms after the node reported it`)
    const ticks = await logTicks(page)
    assert.ok(ticks.indexOf(next) > ticks.indexOf(shown), 'the new line comes after the ones shown before')
    for (let i = 1; i < ticks.length; i++) assert.is(ticks[i], ticks[i - 1] + 1, `log ticks in order, each once (${ticks.join(',')})`)
    await assertEventOrder(page)
    assert.is(await page.locator('#log').getAttribute('role'), 'log', 'the log is an ARIA live log')
    assert.is(await page.locator('#log-state').textContent(), 'live')

    // an action that fails shows the API's one-line error
    await page.fill('#migrate-peer', '/ip4/127.0.0.1/tcp/1')
    await page.click('#migrate-form button')
    const out = page.locator('#migrate-form output')
    await page.waitForFunction(() => /\b(ok|error)\b/.test(document.querySelector('#migrate-form output')?.className ?? ''), null, { timeout: 3 * WAIT_MS })
    assert.is(await out.getAttribute('class'), 'result error', 'a migration to a bad address fails')
    const err = await out.textContent() ?? ''
    assert.match(err, /^Error: \S/)
    assert.not.match(err, /\n/)
    assert.ok(ps(a.dir).some((x) => x.name === 'heartbeat' && x.status === 'running'), 'still running on A after the failed migration')

    // migrating from the page moves it to B; A's page then shows the handoff in the timeline and the end of the log
    await page.fill('#migrate-peer', b.addr)
    await page.click('#migrate-form button')
    await page.waitForFunction(() => /\b(ok|error)\b/.test(document.querySelector('#migrate-form output')?.className ?? ''), null, { timeout: 3 * WAIT_MS })
    assert.is(await out.getAttribute('class'), 'result ok', `the migration from the page: ${await out.textContent()}`)
    assert.match(await out.textContent() ?? '', /^moved to .* at tick \d+ \(epoch 1\)$/)
    await until(() => ps(b.dir).some((x) => x.name === 'heartbeat' && x.status === 'running'), WAIT_MS, 'heartbeat running on B')
    assert.not.ok(ps(a.dir).some((x) => x.name === 'heartbeat'), 'heartbeat left A')
    const handoff = page.locator('#timeline li.handoff')
    await handoff.waitFor()
    assert.match(await handoff.textContent() ?? '', /^Handoff at tick \d+ — epoch 0 → 1, from /)
    assert.ok((await handoff.textContent())!.includes(b.peer.slice(-6)), 'the handoff names B')
    await page.locator('#log li.k-done').waitFor()
    assert.match(await page.locator('#log li.k-done').textContent() ?? '', /handed off to /)
    assert.is(await page.locator('#log-state').textContent(), 'ended')
    await page.locator('#f-status', { hasText: 'not on this node' }).waitFor()
    assert.ok(await page.locator('#stop-form button').isDisabled() && await page.locator('#migrate-peer').isDisabled(), 'actions are disabled for an agent that left')
    await page.locator('#agent-note', { hasText: `handed off to ${b.peer}` }).waitFor()
    await assertEventOrder(page)
    await page.screenshot({ path: join(shots, 'agent-a.png'), fullPage: true })

    // B has a token: its console asks for it once, then lists the agent at epoch 1 and streams its log (cookie)
    pb = await newPage(browser!, problems)
    await pb.goto(b.url + '/#/agents/heartbeat')
    await pb.locator('#auth').waitFor({ state: 'visible' })
    assert.ok(await pb.locator('#token').evaluate((e) => e === document.activeElement), 'the token field has focus')
    await pb.fill('#token', 'wrong-token-0123456789')
    await pb.keyboard.press('Enter')
    await pb.locator('#auth-error', { hasText: 'wrong token' }).waitFor()
    await pb.fill('#token', TOKEN)
    await pb.keyboard.press('Enter')
    await pb.locator('#f-epoch', { hasText: /^1$/ }).waitFor()
    await pb.locator('#log li', { hasText: /^tick \d+\s+log\s+tick \d+, age/ }).first().waitFor()
    const onB = await logTicks(pb)
    await pb.locator('#log li', { hasText: new RegExp(`^tick ${onB[onB.length - 1] + 1}\\s+log\\s+tick \\d+, age`) }).waitFor()
    await assertEventOrder(pb)
    await pb.locator('#timeline li.handoff').waitFor() // B's history holds the chain from A: both epochs, the handoff between
    assert.is(await pb.locator('#timeline li').count(), 3, 'epoch 0 on A, the handoff, epoch 1 on B')

    // the other actions, with the bearer header: send is refused (heartbeat has no inbox) with the node's one line, fund works
    const act = async (p: Page, form: string, input: [string, string] | null): Promise<{ cls: string; text: string }> => {
      if (input !== null) await p.fill(input[0], input[1])
      await p.click(`#${form} button`)
      await p.waitForFunction((f) => /\b(ok|error)\b/.test(document.querySelector(`#${f} output`)?.className ?? ''), form, { timeout: 3 * WAIT_MS })
      const o = p.locator(`#${form} output`)
      return { cls: await o.getAttribute('class') ?? '', text: await o.textContent() ?? '' }
    }
    const sent = await act(pb, 'send-form', ['#send-message', 'hello'])
    assert.is(sent.cls, 'result error', sent.text)
    assert.match(sent.text, /^Error: heartbeat does not read messages \(.*"inbox"\)$/)
    const funded = await act(pb, 'fund-form', ['#fund-units', '0.5'])
    assert.is(funded.cls, 'result ok', funded.text)
    assert.match(funded.text, /^funded; budget \d+(\.\d+)?$/)
    await pb.screenshot({ path: join(shots, 'agent-b.png'), fullPage: true })
    const stopped = await act(pb, 'stop-form', null)
    assert.is(stopped.cls, 'result ok', stopped.text)
    assert.match(stopped.text, /^stopped at tick \d+$/)
    await until(() => ps(b.dir).some((x) => x.name === 'heartbeat' && x.status === 'stopped'), WAIT_MS, 'heartbeat stopped on B')
    await pb.click('a[href="#/"]')
    await pb.locator('tr[data-agent="heartbeat"] td', { hasText: b.peer }).waitFor()
    await pb.locator('tr[data-agent="heartbeat"] td', { hasText: /^stopped$/ }).waitFor()

    assert.equal(problems, [], 'no script error or CSP violation')
    console.log(`  screenshots in ${shots}`)
    if (process.env.CONSOLE_SCREENSHOT) copyFileSync(join(shots, 'agent-b.png'), process.env.CONSOLE_SCREENSHOT)
  }
})

test.run()
