// heartbeat (JavaScript) — the AssemblyScript heartbeat (agents-as/agents/heartbeat.ts) written in
// plain JavaScript against the igor:agent WIT world (wit/agent.wit) and built into a component with
// `jco componentize` (ComponentizeJS, StarlingMonkey). It counts its ticks and knows its age; its
// state lives in the JS engine's heap, inside the component's linear memory, so a resumed
// heartbeat proves the engine's whole heap came back.
//
// Same log lines as the AS heartbeat, tick for tick; in addition it reads its inbox every tick and
// answers each message with a line carrying a random number (capabilities clock, rand, log, inbox).
import { now } from 'igor:agent/clock@1.0.0'
import { getBytes } from 'igor:agent/random@1.0.0'
import { emit } from 'igor:agent/log@1.0.0'
import { next } from 'igor:agent/inbox@1.0.0'

const heart = { ticks: 0n, birthNs: 0n, last: '', messages: 0 }
const text = new TextDecoder()

/** Runs once, at birth (never on resume). */
export function init () {
  heart.birthNs = now()
  heart.last = 'born'
  emit('heartbeat born')
}

/** One beat: logs the tick count and the age in seconds; a milestone every 10 ticks. */
export function tick () {
  heart.ticks++
  const ageS = (now() - heart.birthNs) / 1_000_000_000n
  const line = `tick ${heart.ticks}, age ${ageS} s`
  emit(line)
  if (heart.ticks % 10n === 0n) {
    emit(`milestone: ${heart.ticks} ticks (previous line: ${heart.last})`)
  }
  heart.last = line
  for (let m = next(); m !== undefined; m = next()) {
    heart.messages++
    const [lucky] = getBytes(1)
    emit(`message ${heart.messages} (seq ${m.seq}) from ${m.from}: ${text.decode(m.body)} (lucky ${lucky})`)
  }
  return 'idle'
}
