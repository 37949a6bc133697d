/**
 * Node defaults, in a module without libp2p imports so the CLI can show them without loading the
 * network stack.
 */

/** Default listen address: loopback, an ephemeral TCP port. */
export const DEFAULT_LISTEN = '/ip4/127.0.0.1/tcp/0'

/** Capabilities a node grants when `--capabilities` is not given. */
export const KNOWN_CAPABILITIES = ['clock', 'rand', 'log', 'wallet', 'identity', 'wasi', 'migrate', 'inbox', 'timer', 'http', 'message'] as const
