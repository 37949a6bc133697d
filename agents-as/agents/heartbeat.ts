// heartbeat — the simplest living agent: it counts its ticks and knows its age.
// Its state is a GC-heap object, so a resumed heartbeat proves the whole heap came back.
// Capabilities: clock, log.
import { clockNow, log, IDLE } from "../sdk/igor";

class Heart {
  ticks: i64 = 0;
  birthNs: i64 = 0;
  last: string = "";
}

const heart = new Heart();

/** Runs once, at birth (never on resume). */
export function agent_init(): void {
  heart.birthNs = clockNow();
  heart.last = "born";
  log("heartbeat born");
}

/** One beat: logs the tick count and the age in seconds; a milestone every 10 ticks. */
export function agent_tick(): i32 {
  heart.ticks++;
  const ageS = (clockNow() - heart.birthNs) / 1_000_000_000;
  const line = "tick " + heart.ticks.toString() + ", age " + ageS.toString() + " s";
  log(line);
  if (heart.ticks % 10 == 0) {
    log("milestone: " + heart.ticks.toString() + " ticks (previous line: " + heart.last + ")");
  }
  heart.last = line;
  return IDLE;
}
