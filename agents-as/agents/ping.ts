// ping — sends numbered messages to another agent by its DID and logs the answers.
// Its first message (from a person) says whom and how many: `<did:key:…> <count>`, e.g.
//   igord send ping "did:key:z6Mk… 20" --node D
// It then sends "ping 1" … "ping <count>" to that DID (sendTextTo; fewer per tick when 64 are
// not acknowledged yet) and logs every answer and every message that came back undelivered:
//   ping got "pong 3" from did:key:z6Mk…
//   ping bounce #4 (-20): no host of did:key:… found within 10 s
// Capabilities: inbox, timer, log, message.
import { log, nextMessage, sendTextTo, waitForMessage, E_TOO_MANY, IDLE, MORE, KIND_BOUNCE, KIND_MESSAGE } from "../sdk/igor";

class State {
  to: string = "";
  count: i32 = 0;
  sent: i32 = 0;
  got: i32 = 0;
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
      if (parts.length == 2) {
        st.to = parts[0];
        st.count = I32.parseInt(parts[1]);
        log("ping will send " + st.count.toString() + " messages to " + st.to);
      } else log("ping: expected \"<did> <count>\", got \"" + m.text() + "\"");
    } else if (m.kind == KIND_BOUNCE) {
      log("ping bounce #" + m.req.toString() + " (" + m.status.toString() + "): " + m.text());
    }
    m = nextMessage();
  }
  while (st.to.length > 0 && st.sent < st.count) {
    const r = sendTextTo(st.to, "ping " + (st.sent + 1).toString());
    if (r == E_TOO_MANY) return MORE; // try again next tick
    if (r < 0) { log("ping: sendTo failed: " + r.toString()); st.count = st.sent; break; }
    st.sent++;
  }
  waitForMessage();
  return IDLE;
}
