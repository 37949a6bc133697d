// echo — logs every inbox message it receives and how many it has seen so far.
// It sleeps until the next message (sleep_until(0)), so it ticks only when someone writes to it:
//   igord send echo "hello" --node D   →   echo #1 from 12D3KooW…: hello (1 so far)
// The count lives on the GC heap, so after a resume (or a migration) it goes on from where it was.
// Capabilities: inbox, timer, log.
import { log, nextMessage, waitForMessage, IDLE, KIND_MESSAGE } from "../sdk/igor";

class Counter {
  messages: i64 = 0;
}

const counter = new Counter();

/** Reads every pending message, logs each with the running count, then waits for the next one. */
export function agent_tick(): i32 {
  let m = nextMessage();
  while (m != null) {
    if (m.kind == KIND_MESSAGE) {
      counter.messages++;
      log("echo #" + m.seq.toString() + " from " + m.from + ": " + m.text()
        + " (" + counter.messages.toString() + " so far)");
    } else {
      log("echo #" + m.seq.toString() + ": ignoring a message of kind " + m.kind.toString());
    }
    m = nextMessage();
  }
  waitForMessage();
  return IDLE;
}
