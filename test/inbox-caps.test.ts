/**
 * A host's caps on the inbox limits (hostcalls/manifest.ts `checkWithinCaps`, `igord node
 * --max-inbox-messages / --max-message-bytes`): a manifest whose `max_inbox_messages` or
 * `max_message_bytes` (its defaults, 256 and 64 KiB, when left out) is above the cap is refused with
 * one line naming the field, the value asked and the cap; without caps set, any value a manifest
 * may ask is accepted.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { checkWithinCaps, DEFAULT_NODE_CAPS, INBOX_LIMITS, parseManifest } from '../hostcalls/manifest.ts'
import type { NodeCaps } from '../hostcalls/manifest.ts'

const parse = (o: unknown) => parseManifest(new TextEncoder().encode(JSON.stringify(o)), 'm.json')

test('checkWithinCaps: inbox limits against the host caps (defaults counted; no cap = the maxima)', () => {
  const most = parse({ resource_limits: { max_inbox_messages: INBOX_LIMITS.max_inbox_messages[1], max_message_bytes: INBOX_LIMITS.max_message_bytes[1] } })
  assert.is(checkWithinCaps(most, DEFAULT_NODE_CAPS), null, 'the default caps take any inbox limit a manifest may ask')
  const caps: NodeCaps = { ...DEFAULT_NODE_CAPS, maxInboxMessages: 300, maxMessageBytes: 65_536 }
  assert.is(checkWithinCaps(parse({}), caps), null, 'the defaults (256, 64 KiB) are within')
  assert.is(checkWithinCaps(parse({ resource_limits: { max_inbox_messages: 300, max_message_bytes: 65_536 } }), caps), null, 'exactly at the caps')
  assert.is(checkWithinCaps(parse({ resource_limits: { max_inbox_messages: 301 } }), caps), 'resource_limits.max_inbox_messages asks 301, above this host\'s cap of 300')
  assert.is(checkWithinCaps(parse({ resource_limits: { max_message_bytes: 65_537 } }), caps), 'resource_limits.max_message_bytes asks 65537, above this host\'s cap of 65536')
  const small: NodeCaps = { ...DEFAULT_NODE_CAPS, maxInboxMessages: 2, maxMessageBytes: 8 }
  assert.is(checkWithinCaps(parse({}), small), 'resource_limits.max_inbox_messages asks 256, above this host\'s cap of 2', 'a manifest without limits asks the defaults')
  assert.is(checkWithinCaps(parse({ resource_limits: { max_inbox_messages: 2 } }), small), 'resource_limits.max_message_bytes asks 65536, above this host\'s cap of 8')
  assert.is(checkWithinCaps(parse({ resource_limits: { max_inbox_messages: 1, max_message_bytes: 8 } }), small), null)
})

test.run()
