// ping — sends numbered messages to another agent by its DID and logs the answers.
// Its first message (from a person) says whom, how many and optionally how many may be on their
// way without an answer (default 64): `<did:key:…> <count> [<window>]`, e.g.
//   igord send ping "did:key:z6Mk… 20" --node D       (window 1: one at a time, each after the last answer)
// It then sends "ping 1" … "ping <count>" to that DID (sendTextTo; when 64 are not acknowledged
// yet, the rest waits for the next answer or bounce to wake it: a recipient that never answers
// gets only the first 64) and logs every answer and every message that came back undelivered:
//   ping got "pong 3" from did:key:z6Mk…
//   ping bounce #4 (-20): no host of did:key:… found within 10 s
// Capabilities: inbox, timer, log, message.
import { log, nextMessage, sendTextTo, waitForMessage, E_TOO_MANY, IDLE, KIND_BOUNCE, KIND_MESSAGE } from "../sdk/igor";

class State {
  to: string = "";
  count: i32 = 0;
  sent: i32 = 0;
  got: i32 = 0;
  bounced: i32 = 0;
  window: i32 = 64;
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
      if (parts.length == 2 || parts.length == 3) {
        st.to = parts[0];
        st.count = I32.parseInt(parts[1]);
        if (parts.length == 3 && I32.parseInt(parts[2]) > 0) st.window = I32.parseInt(parts[2]);
        log("ping will send " + st.count.toString() + " messages to " + st.to);
      } else log("ping: expected \"<did> <count> [<window>]\", got \"" + m.text() + "\"");
    } else if (m.kind == KIND_BOUNCE) {
      st.bounced++;
      log("ping bounce #" + m.req.toString() + " (" + m.status.toString() + "): " + m.text());
    }
    m = nextMessage();
  }
  while (st.to.length > 0 && st.sent < st.count && st.sent - st.got - st.bounced < st.window) {
    const r = sendTextTo(st.to, "ping " + (st.sent + 1).toString());
    // 64 not acknowledged yet: wait for the next answer (or bounce), which means one of them left
    // the outbox, rather than spinning tick after tick (each one costs fuel and a checkpoint)
    if (r == E_TOO_MANY) break;
    if (r < 0) { log("ping: sendTo failed: " + r.toString()); st.count = st.sent; break; }
    st.sent++;
  }
  waitForMessage();
  return IDLE;
}
