// watcher — polls a URL once a second and logs when its value changes.
// It learns the URL from its first inbox message (`igord send watcher http://127.0.0.1:8080/price`),
// then: GET it, wait for the outcome (a KIND_HTTP inbox message), compare, sleep 1 s, repeat.
// Never more than one request is pending. A 200 body's value is the raw token after `"value":`
// when there is one, else the whole body (trimmed, cut at 200 characters).
//   watcher: first value 42
//   watcher: http://127.0.0.1:8080/price changed: 42 -> 43
//   watcher: http://127.0.0.1:8080/price error E_HTTP_CONNECT
// Capabilities: http (allow 127.0.0.1), inbox, timer, clock, log.
import {
  clockNow, httpErrorName, httpGet, log, nextMessage, sleepUntil, waitForMessage, Message,
  E_BAD_REQUEST, E_NOT_ALLOWED, E_TOO_LONG, IDLE, KIND_HTTP, KIND_MESSAGE, KIND_TIMER,
} from "../sdk/igor";

/** Time between the outcome of one poll and the next request, ns. */
const PERIOD_NS: i64 = 1_000_000_000;

class Watch {
  /** The URL polled; "" until the first message names one. */
  url: string = "";
  /** Id of the request waiting for its outcome; 0 = none. */
  pending: i32 = 0;
  /** When the next poll is due, ns since the Unix epoch (0 = at once). */
  nextNs: i64 = 0;
  /** A timer message arrived: the poll is due whatever the clock says. */
  woken: bool = false;
  /** The last value seen, and whether there is one. */
  last: string = "";
  seen: bool = false;
}

const w = new Watch();

/** The value in a response body: the raw token after `"value":`, else the trimmed body. */
function extractValue(body: string): string {
  const key = "\"value\":";
  const i = body.indexOf(key);
  if (i < 0) {
    const t = body.trim();
    return t.length > 200 ? t.substring(0, 200) + "…" : t;
  }
  let j = i + key.length;
  while (j < body.length && (body.charCodeAt(j) == 32 || body.charCodeAt(j) == 9)) j++;
  let k = j;
  if (k < body.length && body.charCodeAt(k) == 34) { // a string: up to its closing quote
    k++;
    while (k < body.length && body.charCodeAt(k) != 34) k++;
    return body.substring(j, k + 1);
  }
  while (k < body.length) {
    const c = body.charCodeAt(k);
    if (c == 44 || c == 125 || c == 93 || c == 32 || c == 9 || c == 10 || c == 13) break; // , } ] space
    k++;
  }
  return body.substring(j, k);
}

/** Handles the outcome of the pending request. */
function outcome(m: Message): void {
  if (m.status == 200) {
    const v = extractValue(m.text());
    if (!w.seen) {
      log("watcher: first value " + v);
      w.seen = true;
    } else if (v != w.last) {
      log("watcher: " + w.url + " changed: " + w.last + " -> " + v);
    }
    w.last = v;
  } else if (m.status < 0) {
    log("watcher: " + w.url + " error " + httpErrorName(m.status));
  } else {
    log("watcher: " + w.url + " status " + m.status.toString());
  }
}

export function agent_tick(): i32 {
  let m = nextMessage();
  while (m != null) {
    if (m.kind == KIND_MESSAGE) {
      if (w.url == "") {
        const url = m.text().trim();
        if (url.length > 0) {
          w.url = url;
          w.nextNs = 0;
          log("watcher: watching " + url);
        }
      } else {
        log("watcher: already watching " + w.url + ", message #" + m.seq.toString() + " ignored");
      }
    } else if (m.kind == KIND_HTTP) {
      if (w.pending != 0 && m.req == <u32>w.pending) {
        w.pending = 0;
        outcome(m);
        w.nextNs = clockNow() + PERIOD_NS;
      } else {
        log("watcher: outcome of unknown request " + m.req.toString() + " ignored");
      }
    } else if (m.kind == KIND_TIMER) {
      w.woken = true;
    }
    m = nextMessage();
  }

  if (w.url == "" || w.pending != 0) { // nothing to poll yet, or the outcome is still to come
    waitForMessage();
    return IDLE;
  }
  const now = clockNow();
  if (w.woken || now >= w.nextNs) {
    w.woken = false;
    const id = httpGet(w.url);
    if (id > 0) {
      w.pending = id;
      waitForMessage();
      return IDLE;
    }
    log("watcher: " + w.url + " error " + httpErrorName(id));
    if (id == E_NOT_ALLOWED || id == E_BAD_REQUEST || id == E_TOO_LONG) { // it will never work
      log("watcher: send another URL");
      w.url = "";
      waitForMessage();
      return IDLE;
    }
    w.nextNs = now + PERIOD_NS;
  }
  sleepUntil(w.nextNs);
  return IDLE;
}
