/**
 * Errors keep `instanceof` across duplicate copies of the package: a second copy (another install, or the CJS and
 * ESM builds side by side) has its own classes, and its errors must still match this copy's classes by name.
 */
import { describe, expect, it, vi } from 'vitest';
import * as errors from '../src/errors.js';

const { NvmeofError, NvmeStatusError, ProtocolError, DigestError, TimeoutError, InvalidArgumentError } = errors;

async function secondCopy(): Promise<typeof errors> {
  // A fresh module instance: after resetModules the loader evaluates the file again, with new classes.
  vi.resetModules();
  return (await import('../src/errors.js')) as typeof errors;
}

describe('errors across copies of the package', () => {
  it('a second copy has distinct classes', async () => {
    const other = await secondCopy();
    expect(other.NvmeofError).not.toBe(NvmeofError);
  });

  it('matches instanceof by class, in both directions', async () => {
    const other = await secondCopy();
    const theirs = new other.DigestError('data', 1, 2);
    expect(theirs).toBeInstanceOf(DigestError);
    expect(theirs).toBeInstanceOf(ProtocolError);
    expect(theirs).toBeInstanceOf(NvmeofError);
    expect(theirs).toBeInstanceOf(Error);
    expect(theirs instanceof TimeoutError).toBe(false);
    const ours = new InvalidArgumentError('bad');
    expect(ours).toBeInstanceOf(other.InvalidArgumentError);
    expect(ours).toBeInstanceOf(other.NvmeofError);
    expect(ours instanceof other.NvmeStatusError).toBe(false);
    expect(errors.isNvmeofError(theirs, errors.ErrorCode.DIGEST)).toBe(true);
  });

  it('does not match foreign errors or non-objects', () => {
    expect(new Error('x') instanceof NvmeofError).toBe(false);
    expect(Object.assign(new Error('x'), { code: 'NVMEOF_ERR_STATUS' }) instanceof NvmeStatusError).toBe(false);
    expect((null as unknown) instanceof NvmeofError).toBe(false);
    expect(('NvmeofError' as unknown) instanceof NvmeofError).toBe(false);
  });

  it('matches user subclasses', () => {
    class MyError extends InvalidArgumentError {}
    const e = new MyError('mine');
    expect(e).toBeInstanceOf(MyError);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(new InvalidArgumentError('x') instanceof MyError).toBe(false);
    expect(e.name).toBe('MyError');
    expect(e.code).toBe('NVMEOF_ERR_INVALID_ARGUMENT');
  });
});
