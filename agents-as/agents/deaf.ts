// deaf — wakes for every inbox message but never reads one, so its inbox only fills up.
// Each tick it logs `deaf tick N` and sleeps until the next message (sleep_until(0)). Used by the
// tests to fill an inbox to its `max_inbox_messages` (the sender is then refused, exit 11).
// Capabilities: timer, log.
import { log, waitForMessage, IDLE } from "../sdk/igor";

class Count {
  ticks: i64 = 0;
}

const count = new Count();

/** Logs the tick and waits for a message it will not read. */
export function agent_tick(): i32 {
  count.ticks++;
  log("deaf tick " + count.ticks.toString());
  waitForMessage();
  return IDLE;
}
