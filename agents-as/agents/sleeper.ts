// sleeper — sleeps 2 s between ticks and says what woke it.
// Each tick it reads its whole inbox and logs one line per message, then asks to sleep 2 s
// (sleepUntil(now + 2 s), i.e. sleepFor(2000)); a message wakes it early. All times are ns on the recorded clock.
//   sleeper: woke with an empty inbox at 1700000000000000000
//   sleeper: woke by timer at 1700000002000300000 (asked 1700000002000000000, late 0 ms)
//   sleeper: woke by message #3 at 1700000002500000000: hi (timer due in 1500 ms)
// Capabilities: inbox, timer, clock, log.
import { clockNow, log, nextMessage, sleepUntil, IDLE, KIND_MESSAGE, KIND_TIMER } from "../sdk/igor";

/** Sleep between ticks, ms. */
const SLEEP_MS: i64 = 2000;

class Plan {
  /** When the last sleepFor asked to be woken, ns (0: never asked). */
  at: i64 = 0;
}

const plan = new Plan();

/** Logs what is in the inbox (what woke this tick), then sleeps SLEEP_MS. */
export function agent_tick(): i32 {
  const now = clockNow();
  let any = false;
  let m = nextMessage();
  while (m != null) {
    any = true;
    if (m.kind == KIND_TIMER) {
      log("woke by timer at " + now.toString() + " (asked " + plan.at.toString()
        + ", late " + ((now - plan.at) / 1_000_000).toString() + " ms)");
    } else if (m.kind == KIND_MESSAGE) {
      log("woke by message #" + m.seq.toString() + " at " + now.toString() + ": " + m.text()
        + " (timer due in " + ((plan.at - now) / 1_000_000).toString() + " ms)");
    } else {
      log("woke by a message of kind " + m.kind.toString() + " at " + now.toString());
    }
    m = nextMessage();
  }
  if (!any) log("woke with an empty inbox at " + now.toString());
  plan.at = now + SLEEP_MS * 1_000_000;
  sleepUntil(plan.at); // sleepFor(SLEEP_MS), with the time it asks for kept in `plan`
  return IDLE;
}
