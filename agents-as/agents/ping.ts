// ping — sends numbered messages to another agent by its DID and logs the answers.
// Its first message (from a person) says whom, how many, and optionally how many may be on their
// way without an answer (default 64) and a pause between two messages in ms (default 0):
// `<did:key:…> <count> [<window> [<pause>]]`, e.g.
//   igord send ping "did:key:z6Mk… 20" --node D
//   igord send ping "did:key:z6Mk… 20 1 100" --node D   (one at a time, at most one every 100 ms)
// It then sends "ping 1" … "ping <count>" to that DID (sendTextTo; when its outbox is full — 64
// messages not acknowledged yet — it sleeps until there is room: waitForRoom, woken by a KIND_ROOM
// or KIND_BOUNCE message) and logs every answer and every message that came back undelivered:
//   ping got "pong 3" from did:key:z6Mk…
//   ping bounce #4 (-20): no host of did:key:… found within 10 s
// Capabilities: inbox, timer, clock (the pause), log, message.
import { clockNow, log, nextMessage, sendTextTo, sleepUntil, waitForMessage, waitForRoom, E_TOO_MANY, IDLE, KIND_BOUNCE, KIND_MESSAGE } from "../sdk/igor";

class State {
  to: string = "";
  count: i32 = 0;
  sent: i32 = 0;
  got: i32 = 0;
  bounced: i32 = 0;
  window: i32 = 64;
  /** ms between two messages (0: as fast as the window allows) */
  pause: i64 = 0;
  /** the next message is not sent before this time, ns */
  nextAt: i64 = 0;
}

const st = new State();

export function agent_tick(): i32 {
  let m = nextMessage();
  while (m != null) {
    if (m.kind == KIND_MESSAGE && m.from.startsWith("did:key:")) {
      st.got++;
      log("ping got \"" + m.text() + "\" from " + m.from + " (" + st.got.toString() + " so far)");
    } else if (m.kind == KIND_MESSAGE && st.to.length == 0) {
      const parts = m.text().split(" ");
      if (parts.length >= 2 && parts.length <= 4) {
        st.to = parts[0];
        st.count = I32.parseInt(parts[1]);
        if (parts.length >= 3 && I32.parseInt(parts[2]) > 0) st.window = I32.parseInt(parts[2]);
        if (parts.length == 4 && I64.parseInt(parts[3]) > 0) st.pause = I64.parseInt(parts[3]);
        log("ping will send " + st.count.toString() + " messages to " + st.to);
      } else log("ping: expected \"<did> <count> [<window> [<pause>]]\", got \"" + m.text() + "\"");
    } else if (m.kind == KIND_BOUNCE) {
      st.bounced++;
      log("ping bounce #" + m.req.toString() + " (" + m.status.toString() + "): " + m.text());
    }
    m = nextMessage();
  }
  while (st.to.length > 0 && st.sent < st.count && st.sent - st.got - st.bounced < st.window) {
    if (st.pause > 0) {
      const now = clockNow();
      if (now < st.nextAt) { sleepUntil(st.nextAt); return IDLE; } // an answer may wake it earlier
      st.nextAt = now + st.pause * 1_000_000;
    }
    const r = sendTextTo(st.to, "ping " + (st.sent + 1).toString());
    // the outbox is full: sleep until one of them left it (a KIND_ROOM or KIND_BOUNCE message, or
    // an answer, wakes it) rather than spinning tick after tick (each one costs fuel and a checkpoint)
    if (r == E_TOO_MANY) { waitForRoom(); return IDLE; }
    if (r < 0) { log("ping: sendTo failed: " + r.toString()); st.count = st.sent; break; }
    st.sent++;
  }
  waitForMessage();
  return IDLE;
}
