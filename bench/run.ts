/**
 * `make bench`: runs every benchmark module and prints each figure beside its floor measured in
 * the same run, the ratio and the DESIGN §11 target. `--json` prints one object of named figures
 * instead. `--only <area>` runs one module (fuel, checkpoint, resume, replay, migrate, msg, density, startup, component, jsagent).
 */
import type { BenchRow } from './row.ts'

const AREAS = ['fuel', 'checkpoint', 'resume', 'replay', 'migrate', 'msg', 'density', 'startup', 'component', 'jsagent'] as const
const args = process.argv.slice(2)
const json = args.includes('--json')
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined

const fmt = (n: number | undefined) => n === undefined ? '' : n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2) : n.toFixed(4)
const rows: (BenchRow & { area: string })[] = []
for (const area of AREAS) {
  if (only !== undefined && only !== area) continue
  const mod = await import(`./${area}.ts`) as { bench: () => Promise<BenchRow[]> }
  if (!json) console.log(`\n${area}`)
  for (const r of await mod.bench()) {
    rows.push({ area, ...r })
    if (!json) {
      const verdict = r.met === undefined ? '' : r.met ? 'met' : 'NOT met'
      console.log(`  ${r.name.padEnd(46)} ${fmt(r.value).padStart(10)} ${r.unit.padEnd(8)} floor ${fmt(r.floor).padStart(9)}  ratio ${fmt(r.ratio).padStart(6)}  ${r.target ?? ''} ${verdict}`)
    }
  }
}
if (json) {
  const out: Record<string, unknown> = {}
  for (const r of rows) out[`${r.area}: ${r.name}`] = { value: r.value, unit: r.unit, floor: r.floor, ratio: r.ratio, target: r.target, met: r.met }
  console.log(JSON.stringify(out, null, 2))
} else {
  const judged = rows.filter((r) => r.met !== undefined)
  console.log(`\ntargets met: ${judged.filter((r) => r.met).length} of ${judged.length}`)
}
