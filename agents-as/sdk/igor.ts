// igord agent SDK for AssemblyScript (ABI v1, see docs/ABI.md).
//
// Typed wrappers over the `igor` host functions. An agent imports what it needs:
//
//   import { clockNow, log, IDLE } from "../sdk/igor";
//   export function agent_tick(): i32 { log("now " + clockNow().toString()); return IDLE; }
//
// Only the host functions an agent actually calls end up as imports of its wasm, and each needs its
// capability in the agent's manifest (clock, rand, log, wallet, identity, migrate, inbox, timer,
// http) or the module is refused at load time. Build with `--exportStart _initialize` (agents-as/asconfig.json does).

// ---- tick results (the i32 that agent_tick returns) ----

/** Nothing more to do now: the next tick comes after the interval. */
export const IDLE: i32 = 0;
/** More work waiting: the next tick comes at once. */
export const MORE: i32 = 1;
/** The agent is done: igord writes a final checkpoint and retires it. */
export const FINISHED: i32 = 2;

// ---- result codes of the host functions ----

/** rand_bytes: the request was longer than 64 MiB. */
export const E_TOO_LONG: i32 = -2;
/** rand_bytes / agent_did / agent_sign: a buffer is outside linear memory. */
export const E_BOUNDS: i32 = -4;

// ---- raw imports (module "igor"; names and signatures match Igor's) ----

// @ts-ignore: decorator
@external("igor", "clock_now")
declare function clock_now(): i64;
// @ts-ignore: decorator
@external("igor", "rand_bytes")
declare function rand_bytes(ptr: usize, len: i32): i32;
// @ts-ignore: decorator
@external("igor", "log_emit")
declare function log_emit(ptr: usize, len: i32): void;
// @ts-ignore: decorator
@external("igor", "wallet_balance")
declare function wallet_balance(): i64;
// @ts-ignore: decorator
@external("igor", "agent_did")
declare function agent_did(ptr: usize, cap: i32): i32;
// @ts-ignore: decorator
@external("igor", "agent_sign")
declare function agent_sign(msg_ptr: usize, msg_len: i32, sig_ptr: usize): i32;
// @ts-ignore: decorator
@external("igor", "migrate_request")
declare function migrate_request(ptr: usize, len: i32): i32;
// @ts-ignore: decorator
@external("igor", "inbox_next")
declare function inbox_next(ptr: usize, cap: i32): i32;
// @ts-ignore: decorator
@external("igor", "sleep_until")
declare function sleep_until(at_ns: i64): i32;
// @ts-ignore: decorator
@external("igor", "message_send")
declare function message_send(did: usize, didLen: i32, body: usize, bodyLen: i32): i32;
@external("igor", "http_request")
declare function http_request(
  method_ptr: usize, method_len: i32, url_ptr: usize, url_len: i32,
  headers_ptr: usize, headers_len: i32, body_ptr: usize, body_len: i32): i32;

// ---- clock ----

/** Current time, nanoseconds since the Unix epoch (capability clock). Recorded for replay. */
export function clockNow(): i64 {
  return clock_now();
}

/** Current time, whole milliseconds since the Unix epoch (capability clock). */
export function clockMillis(): i64 {
  return clock_now() / 1_000_000;
}

// ---- rand ----

/** Fills `buf` with random bytes (capability rand). Returns 0, or E_TOO_LONG / E_BOUNDS. */
export function randBytes(buf: Uint8Array): i32 {
  return rand_bytes(buf.dataStart, buf.byteLength);
}

/** A random u32 (capability rand). */
export function randU32(): u32 {
  const b = new Uint8Array(4);
  rand_bytes(b.dataStart, 4);
  return load<u32>(b.dataStart);
}

/** A random u64 (capability rand). */
export function randU64(): u64 {
  const b = new Uint8Array(8);
  rand_bytes(b.dataStart, 8);
  return load<u64>(b.dataStart);
}

// ---- log ----

/** Writes one line to the agent's log (capability log), UTF-8 encoded; lines over 1 MiB are dropped. */
export function log(s: string): void {
  const buf = String.UTF8.encode(s);
  log_emit(changetype<usize>(buf), buf.byteLength);
}

// ---- wallet ----

/** The agent's remaining budget, microcents (1 unit = 1,000,000) (capability wallet). */
export function walletBalance(): i64 {
  return wallet_balance();
}

// ---- identity ----

/** The agent's own DID, `did:key:z6Mk…` (capability identity). */
export function agentDid(): string {
  let cap: i32 = 64;
  let buf = new ArrayBuffer(cap);
  let n = agent_did(changetype<usize>(buf), cap);
  if (n < 0 && n != E_BOUNDS) {
    cap = -n;
    buf = new ArrayBuffer(cap);
    n = agent_did(changetype<usize>(buf), cap);
  }
  if (n < 0) return "";
  return String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>n);
}

/** An Ed25519 signature (64 bytes, RFC 8032) of `msg` by the agent's own key (capability identity). */
export function agentSign(msg: Uint8Array): Uint8Array {
  const sig = new Uint8Array(64);
  const r = agent_sign(msg.dataStart, msg.byteLength, sig.dataStart);
  assert(r == 0, "agent_sign failed");
  return sig;
}

/** Signs a string's UTF-8 bytes (capability identity). */
export function agentSignString(s: string): Uint8Array {
  return agentSign(Uint8Array.wrap(String.UTF8.encode(s)));
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  const digits = "0123456789abcdef";
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    out += digits.charAt(b >> 4) + digits.charAt(b & 15);
  }
  return out;
}

// ---- migrate ----

/** `migrateTo`: the target is not a multiaddr. */
export const E_BAD_TARGET: i32 = -3;

/**
 * Asks the node to move this agent, after the current tick, to the peer at `multiaddr`
 * (e.g. "/ip4/10.0.0.2/tcp/4001/p2p/12D3KooW…"). Capability: migrate.
 * Returns 0 when the request is recorded, E_BAD_TARGET, E_TOO_LONG or E_BOUNDS otherwise.
 * The agent keeps its DID, tick count and heap; it learns where it runs from its next ticks.
 */
export function migrateTo(multiaddr: string): i32 {
  const bytes = String.UTF8.encode(multiaddr);
  return migrate_request(changetype<usize>(bytes), bytes.byteLength);
}

/** Asks the node to move this agent, after this tick, to the cheapest known peer that grants its capabilities. */
export function migrateToCheapest(): i32 {
  return migrate_request(0, 0);
}

// ---- inbox ----

/** Message.kind: a message someone sent the agent (`igord send`, another agent). */
export const KIND_MESSAGE: i32 = 1;
/** Message.kind: the outcome of an `httpRequest` (Message.req names it). */
export const KIND_HTTP: i32 = 2;
/** Message.kind: the wake-up a `sleepUntil` / `sleepFor` asked for. */
export const KIND_TIMER: i32 = 3;
/**
 * Message.kind: a message this agent sent (`sendTo`) came back undelivered: `req` is the number
 * `sendTo` returned, `status` the reason code (E_MSG_*), `from` the recipient's DID, the body the
 * reason as text.
 */
export const KIND_BOUNCE: i32 = 4;

/**
 * Message.kind: the outbox has room again. After `sendTo` returned E_TOO_MANY, the first message
 * of this agent's that its recipient's host takes wakes it with this (`req` = that message's
 * number, `from` its recipient's DID, the body empty); a message that comes back wakes it with its
 * KIND_BOUNCE instead. See waitForRoom.
 */
export const KIND_ROOM: i32 = 5;

/** Size of the layout's fixed part, bytes (docs/ABI.md "inbox"). */
const MESSAGE_HEAD: i32 = 40;

/** One inbox message, copied out of the host's layout (docs/ABI.md "inbox — inbox_next"). */
export class Message {
  /** KIND_MESSAGE, KIND_HTTP, KIND_TIMER, KIND_BOUNCE or KIND_ROOM. */
  kind: i32 = 0;
  /** KIND_HTTP: the HTTP status (100–599) or a negative outcome code (E_HTTP_*); else 0. */
  status: i32 = 0;
  /** KIND_HTTP: the request id `httpRequest` returned; KIND_BOUNCE, KIND_ROOM: the message number `sendTo` returned; else 0. */
  req: u32 = 0;
  /** Position in this agent's inbox: ≥ 1, strictly increasing over the agent's life. */
  seq: u64 = 0;
  /** When the host enqueued it, ns since the Unix epoch (host clock). */
  time: u64 = 0;
  /** The sender: a peer ID `12D3KooW…`, a `did:key:…`, `http` or `timer`. */
  from: string = "";
  /** KIND_HTTP: the response headers, `name: value\r\n` lines, names lower-case; else "". */
  headers: string = "";
  /** The message bytes / the HTTP response body; empty for a timer. */
  body: Uint8Array = new Uint8Array(0);

  /** The body decoded as UTF-8 (malformed sequences become U+FFFD). */
  text(): string {
    return String.UTF8.decodeUnsafe(this.body.dataStart, <usize>this.body.byteLength);
  }
}

/** Reused by nextMessage; grows to the largest message seen (it lives in memory like any state). */
let inboxBuf: ArrayBuffer | null = null;

/**
 * Takes the oldest pending inbox message (capability inbox), or null when the inbox is empty.
 * The message is consumed: the host records it as this tick's input and will not deliver it again.
 * A message bigger than the reusable buffer is left in place by the host (`-needed`); the buffer
 * grows to `needed` bytes and the call is repeated.
 */
export function nextMessage(): Message | null {
  let buf = inboxBuf;
  if (buf == null) {
    buf = new ArrayBuffer(4096);
    inboxBuf = buf;
  }
  let n = inbox_next(changetype<usize>(buf), buf.byteLength);
  while (n < 0) {
    if (n > -MESSAGE_HEAD) throw new Error("inbox_next failed: " + n.toString());
    buf = new ArrayBuffer(-n);
    inboxBuf = buf;
    n = inbox_next(changetype<usize>(buf), buf.byteLength);
  }
  if (n == 0) return null;
  return parseMessage(changetype<usize>(buf), n);
}

/** Decodes the `len`-byte layout at `p` (little-endian; docs/ABI.md "inbox — inbox_next"). */
function parseMessage(p: usize, len: i32): Message {
  const m = new Message();
  m.kind = load<i32>(p);
  m.status = load<i32>(p, 4);
  m.req = load<u32>(p, 8);
  const fromLen = load<u32>(p, 12);
  m.seq = load<u64>(p, 16);
  m.time = load<u64>(p, 24);
  const headersLen = load<u32>(p, 32);
  const bodyLen = load<u32>(p, 36);
  const total = <u64>MESSAGE_HEAD + <u64>fromLen + <u64>headersLen + <u64>bodyLen;
  if (total > <u64>len) throw new Error("inbox_next: layout of " + total.toString() + " bytes in " + len.toString());
  let at = p + <usize>MESSAGE_HEAD;
  m.from = String.UTF8.decodeUnsafe(at, <usize>fromLen);
  at += <usize>fromLen;
  m.headers = String.UTF8.decodeUnsafe(at, <usize>headersLen);
  at += <usize>headersLen;
  const body = new Uint8Array(<i32>bodyLen);
  memory.copy(body.dataStart, at, <usize>bodyLen);
  m.body = body;
  return m;
}

// ---- timer ----

/**
 * If this tick then returns IDLE, the next tick runs at `ns` (ns since the Unix epoch; a
 * KIND_TIMER message wakes it) or at the first inbox message, whichever comes first (capability
 * timer). `ns` 0: only an inbox message wakes the agent. A later call in the same tick replaces an
 * earlier one. A negative `ns` is refused by the host (nothing changes).
 */
export function sleepUntil(ns: i64): void {
  sleep_until(ns);
}

/** Sleeps `ms` milliseconds from now, counted on the recorded clock (capabilities timer, clock). */
export function sleepFor(ms: i64): void {
  sleep_until(clock_now() + ms * 1_000_000);
}

/** Sleeps until the next inbox message, however long that takes (capability timer). */
export function waitForMessage(): void {
  sleep_until(0);
}

// ---- http ----

/** httpRequest: the URL's host (and port) is not in the manifest's `http.allow`. */
export const E_NOT_ALLOWED: i32 = -5;
/** httpRequest: bad method, URL not absolute http(s) or with userinfo, malformed or host-set header. */
export const E_BAD_REQUEST: i32 = -6;
/** httpRequest: `http.max_pending` requests are already waiting for their outcome. */
export const E_TOO_MANY: i32 = -7;
/** Message.status: no complete response within `http.timeout_ms`. */
export const E_HTTP_TIMEOUT: i32 = -10;
/** Message.status: connection refused, DNS, reset or TLS failure before a response. */
export const E_HTTP_CONNECT: i32 = -11;
/** Message.status: the response body was over `http.max_response_bytes`. */
export const E_HTTP_TOO_LARGE: i32 = -12;
/** Message.status: a redirect to a host not allowed, more than 5 hops, or a bad Location. */
export const E_HTTP_REDIRECT: i32 = -13;
/** Message.status: an unsafe request (POST, PUT, PATCH, DELETE) may or may not have reached the server. */
export const E_HTTP_IN_DOUBT: i32 = -14;

/**
 * Asks the host to perform an HTTP request (capability http; the URL's host must be in the
 * manifest's `http.allow`). `headers` are `Name: value\r\n` lines; `body` may be null.
 * Returns the request id (> 0) — the outcome arrives later as a KIND_HTTP message whose `req` is
 * that id — or E_TOO_LONG, E_BOUNDS, E_NOT_ALLOWED, E_BAD_REQUEST, E_TOO_MANY (nothing is sent).
 * The request leaves only after this tick's checkpoint; a tick that traps drops it.
 */
export function httpRequest(method: string, url: string, headers: string = "", body: Uint8Array | null = null): i32 {
  const m = String.UTF8.encode(method);
  const u = String.UTF8.encode(url);
  const h = String.UTF8.encode(headers);
  let bp: usize = 0;
  let bl: i32 = 0;
  if (body != null) {
    bp = body.dataStart;
    bl = body.byteLength;
  }
  return http_request(changetype<usize>(m), m.byteLength, changetype<usize>(u), u.byteLength,
    changetype<usize>(h), h.byteLength, bp, bl);
}

/** A GET of `url` (capability http); returns the request id or an error code, as httpRequest. */
export function httpGet(url: string): i32 {
  return httpRequest("GET", url);
}

/** A POST of `body` (UTF-8) to `url` with that Content-Type (capability http); as httpRequest. */
export function httpPost(url: string, body: string, contentType: string = "application/json"): i32 {
  return httpRequest("POST", url, "Content-Type: " + contentType + "\r\n", Uint8Array.wrap(String.UTF8.encode(body)));
}

/** The name of a host result or HTTP outcome code (`E_NOT_ALLOWED`, `E_HTTP_TIMEOUT`, …); `E<code>` for others. */
export function httpErrorName(code: i32): string {
  switch (code) {
    case E_TOO_LONG: return "E_TOO_LONG";
    case E_BOUNDS: return "E_BOUNDS";
    case E_NOT_ALLOWED: return "E_NOT_ALLOWED";
    case E_BAD_REQUEST: return "E_BAD_REQUEST";
    case E_TOO_MANY: return "E_TOO_MANY";
    case E_HTTP_TIMEOUT: return "E_HTTP_TIMEOUT";
    case E_HTTP_CONNECT: return "E_HTTP_CONNECT";
    case E_HTTP_TOO_LARGE: return "E_HTTP_TOO_LARGE";
    case E_HTTP_REDIRECT: return "E_HTTP_REDIRECT";
    case E_HTTP_IN_DOUBT: return "E_HTTP_IN_DOUBT";
  }
  return "E" + code.toString();
}

// ---- messages (capability message) ----

// sendTo returns E_BAD_TARGET (above) when the recipient is not an Ed25519 did:key.
/** Message.status of a KIND_BOUNCE: no host of the recipient DID was found in time. */
export const E_MSG_UNKNOWN: i32 = -20;
/** Message.status of a KIND_BOUNCE: the recipient's inbox is full. */
export const E_MSG_FULL: i32 = -21;
/** Message.status of a KIND_BOUNCE: the recipient's host refused it (no inbox, too large, …). */
export const E_MSG_REFUSED: i32 = -22;
/** Message.status of a KIND_BOUNCE: its host was found but did not take it within the retry time. */
export const E_MSG_UNREACHABLE: i32 = -23;

/**
 * Sends `data` to the agent whose DID is `did` (`did:key:z…`), wherever it lives (capability
 * message). The host signs it with this agent's key and sends it after this tick's checkpoint,
 * again until the recipient's host takes it; the recipient reads it as a KIND_MESSAGE whose `from`
 * is this agent's DID (exactly once, whatever the retries). Returns the message number (> 0) —
 * a KIND_BOUNCE with that `req` comes back if it cannot be delivered — or E_TOO_LONG (a body over
 * this agent's `max_message_bytes`), E_BAD_TARGET (not a did:key), E_TOO_MANY (`max_outbox_messages`, default 64, not yet
 * acknowledged; see waitForRoom). A tick that traps sends nothing.
 */
export function sendTo(did: string, data: Uint8Array): i32 {
  const d = String.UTF8.encode(did);
  return message_send(changetype<usize>(d), d.byteLength, data.dataStart, data.byteLength);
}

/** sendTo with a UTF-8 text body. */
export function sendTextTo(did: string, text: string): i32 {
  return sendTo(did, Uint8Array.wrap(String.UTF8.encode(text)));
}

/**
 * After sendTo returned E_TOO_MANY: sleeps until the outbox has room (capability timer). Call it
 * and return IDLE; the next tick comes with a KIND_ROOM message when one of this agent's messages
 * was delivered, or with the KIND_BOUNCE of one that came back — or with any other inbox message,
 * so keep what could not be sent and try it first at the next tick. Returning MORE instead burns
 * a tick (fuel, a checkpoint) after another until the recipient's host answers.
 *
 *   if (sendTo(did, data) == E_TOO_MANY) { held = data; waitForRoom(); return IDLE; }
 */
export function waitForRoom(): void {
  sleep_until(0);
}
