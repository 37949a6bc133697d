/**
 * Test helper: forging an archived life the way a dishonest host could. Every host that runs an
 * agent holds its key (the live checkpoint carries it), so it can rewrite a recorded event-log
 * segment and re-sign the chain: plain verify then finds nothing wrong; only replay can.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { readArchivedBlob } from '../checkpoint/archive.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { encodeHeader, headerCid, signHeader } from '../checkpoint/header.ts'
import { identityFromSeed } from '../checkpoint/identity.ts'
import { readLive } from '../checkpoint/live.ts'
import { decodeEntry, encodeEntry, entryFileName } from '../checkpoint/writer.ts'
import { EventLog } from '../hostcalls/eventlog.ts'
import type { TickRecord } from '../hostcalls/eventlog.ts'
import { explode } from './hist.ts'

/**
 * A dishonest host with the agent's key (every host that runs an agent holds it): rewrites the
 * recorded segment of the checkpoint at `tick` with `edit`, stores it as a new blob and re-signs
 * that checkpoint and every later one, so that all CIDs, links and signatures are valid again.
 * The history is first rewritten as one file per entry ({@link explode}: the layout before history
 * segments, which every reader still reads), and stays so.
 * @throws when the history holds no checkpoint at `tick`.
 */
export function forge (dir: string, name: string, tick: number, edit: (records: TickRecord[]) => void): void {
  const id = identityFromSeed(readLive(path.join(dir, `${name}.ckpt`)).seed)
  const hist = path.join(dir, 'history', name)
  const files = explode(hist)
  let prev: string | null = null
  let found = false
  for (const file of files) {
    const e = decodeEntry(fs.readFileSync(file), file)
    const h = { ...e.parsed }
    if (h.tick < tick) continue
    if (h.tick === tick) {
      found = true
      const blobs = path.join(dir, 'blobs')
      const records = EventLog.decodeSegment(readArchivedBlob([blobs], h.log!, 'log'))
      edit(records)
      const bytes = EventLog.encodeSegment(records)
      h.log = cidOf(bytes)
      fs.writeFileSync(path.join(blobs, h.log), bytes)
    } else h.prev = prev
    const headerBytes = encodeHeader(h)
    prev = headerCid(headerBytes)
    fs.unlinkSync(file)
    fs.writeFileSync(path.join(hist, entryFileName(h.tick, prev)), encodeEntry({ ...e, headerBytes, sig: signHeader(id, headerBytes) }))
  }
  if (!found) throw new Error(`forge: no checkpoint at tick ${tick} in ${hist}`)
}
