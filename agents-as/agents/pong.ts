// pong — answers every message from another agent: "ping <k>" from did:key:A gets "pong <k>" sent
// back to did:key:A (sendTextTo), and logs what it got:
//   pong got "ping 3" from did:key:z6Mk… (3 so far)
// When its outbox is full (sendTextTo returns E_TOO_MANY) it keeps that answer, sleeps until the
// outbox has room (waitForRoom: a KIND_ROOM or KIND_BOUNCE message wakes it) and sends the kept
// answer first at its next tick, before it reads any further message, so answers keep their order.
// Capabilities: inbox, timer, log, message.
import { log, nextMessage, sendTextTo, waitForMessage, waitForRoom, E_TOO_MANY, IDLE, KIND_BOUNCE, KIND_MESSAGE, Message } from "../sdk/igor";

class State {
  got: i32 = 0;
  /** an answer that found the outbox full, sent first at the next tick */
  held: Message | null = null;
}

const st = new State();

function answer(m: Message): bool {
  const text = m.text();
  const r = sendTextTo(m.from, "pong" + (text.startsWith("ping") ? text.substring(4) : " " + text));
  if (r == E_TOO_MANY) return false;
  if (r < 0) log("pong: sendTo failed: " + r.toString());
  return true;
}

export function agent_tick(): i32 {
  const held = st.held;
  if (held != null) {
    if (!answer(held)) { waitForRoom(); return IDLE; }
    st.held = null;
  }
  let m = nextMessage();
  while (m != null) {
    if (m.kind == KIND_MESSAGE && m.from.startsWith("did:key:")) {
      st.got++;
      log("pong got \"" + m.text() + "\" from " + m.from + " (" + st.got.toString() + " so far)");
      if (!answer(m)) { st.held = m; waitForRoom(); return IDLE; }
    } else if (m.kind == KIND_BOUNCE) {
      log("pong bounce #" + m.req.toString() + " (" + m.status.toString() + "): " + m.text());
    }
    m = nextMessage();
  }
  waitForMessage();
  return IDLE;
}
