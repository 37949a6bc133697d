import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { CheckpointError, EXIT, IgordError, ManifestError, ModuleError, StorageError } from '../checkpoint/errors.ts'

test('each error class carries its documented exit code', () => {
  assert.is(new CheckpointError('x').exitCode, EXIT.CHECKPOINT)
  assert.is(new ModuleError('x').exitCode, EXIT.MODULE)
  assert.is(new ManifestError('x').exitCode, EXIT.MANIFEST)
  assert.is(new StorageError('x').exitCode, EXIT.IO)
  assert.ok(new ModuleError('x') instanceof IgordError)
  assert.is(new ManifestError('bad').name, 'ManifestError')
})

test('exit codes are distinct', () => {
  const codes = Object.values(EXIT)
  assert.is(new Set(codes).size, codes.length)
})

test.run()
