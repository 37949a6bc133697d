// poster — one POST per message, for the effect (exactly-once / in-doubt) tests.
// Each inbox message's body is a URL; poster counts the messages and POSTs `{"n":<count>}` there
// (Content-Type application/json, with the host's Idempotency-Key), then logs the outcome when it
// arrives as a KIND_HTTP message:
//   poster: POST http://127.0.0.1:8080/hook {"n":1} → request 1
//   poster: request 1 status 201
//   poster: request 2 error E_HTTP_IN_DOUBT
// Capabilities: http (allow 127.0.0.1), inbox, timer, log.
import {
  httpErrorName, httpPost, log, nextMessage, waitForMessage, IDLE, KIND_HTTP, KIND_MESSAGE,
} from "../sdk/igor";

class Posts {
  /** Messages received (each one asks for a POST). */
  count: i32 = 0;
  /** Outcomes received. */
  outcomes: i32 = 0;
}

const p = new Posts();

export function agent_tick(): i32 {
  let m = nextMessage();
  while (m != null) {
    if (m.kind == KIND_MESSAGE) {
      p.count++;
      const url = m.text().trim();
      const body = "{\"n\":" + p.count.toString() + "}";
      const id = httpPost(url, body);
      if (id > 0) log("poster: POST " + url + " " + body + " → request " + id.toString());
      else log("poster: POST " + url + " " + body + " refused: " + httpErrorName(id));
    } else if (m.kind == KIND_HTTP) {
      p.outcomes++;
      if (m.status < 0) log("poster: request " + m.req.toString() + " error " + httpErrorName(m.status));
      else log("poster: request " + m.req.toString() + " status " + m.status.toString());
    }
    m = nextMessage();
  }
  waitForMessage();
  return IDLE;
}
