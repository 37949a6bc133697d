import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { CheckpointError, EXIT, exitName, IgordError, ManifestError, ModuleError, StorageError } from '../checkpoint/errors.ts'
import { NameError } from '../checkpoint/layout.ts'
import { NetworkError, RefusedError } from '../p2p/errors.ts'
import { DeliveryRefused } from '../runtime/mailbox.ts'

test('each error class carries its documented exit code', () => {
  assert.is(new CheckpointError('x').exitCode, EXIT.CHECKPOINT)
  assert.is(new ModuleError('x').exitCode, EXIT.MODULE)
  assert.is(new ManifestError('x').exitCode, EXIT.MANIFEST)
  assert.is(new StorageError('x').exitCode, EXIT.IO)
  assert.ok(new ModuleError('x') instanceof IgordError)
  assert.is(new ManifestError('bad').name, 'ManifestError')
})

test('each error carries a stable machine-readable code: its exit code\'s name unless a subclass names a finer one', () => {
  assert.is(new CheckpointError('x').code, 'CHECKPOINT')
  assert.is(new StorageError('x').code, 'IO')
  assert.is(new IgordError('x', EXIT.REFUSED).code, 'REFUSED')
  assert.is(new IgordError('x', 99).code, 'INTERNAL')
  assert.is(new IgordError('x', EXIT.USAGE, 'BAD_NAME').code, 'BAD_NAME')
  assert.is(new NameError('x').code, 'BAD_NAME')
  assert.is(new RefusedError('peer', 'no').code, 'MIGRATION_REFUSED')
  assert.is(new RefusedError('peer', 'no').exitCode, EXIT.NETWORK)
  assert.is(new NetworkError('x').code, 'NETWORK')
  assert.is(new DeliveryRefused('x').code, 'DELIVERY_REFUSED')
  assert.is(exitName(EXIT.LOCKED), 'LOCKED')
})

test('exit codes are distinct', () => {
  const codes = Object.values(EXIT)
  assert.is(new Set(codes).size, codes.length)
})

test.run()
