/**
 * Namespace input checks: values that passed validation and broke later (a RangeError from Buffer, a TypeError on a
 * null range, an absurd block size from the wire) now fail with typed errors before anything is sent.
 */
import { describe, expect, it } from 'vitest';
import { constants as bufferConstants } from 'node:buffer';
import { Namespace, type NamespaceOwner } from '../src/host/namespace.js';
import { encodeIdentifyNamespace, parseIdentifyNamespace } from '../src/protocol/identify.js';
import { ErrorCode, NvmeofError } from '../src/errors.js';
import type { NvmeCommand } from '../src/protocol/commands.js';

function owner(sent: NvmeCommand[]): NamespaceOwner {
  return {
    maxTransferBytes: 128 * 1024,
    ioCommand(cmd) {
      sent.push(cmd);
      return Promise.reject(new Error('no controller behind this owner'));
    },
  };
}

function identity(lbads: number, nsze: bigint) {
  return parseIdentifyNamespace(encodeIdentifyNamespace({ nsze, ncap: nsze, nuse: nsze, flbas: 0, lbaf: [{ ms: 0, lbads, rp: 0 }] }));
}

async function codeOf(fn: () => Promise<unknown> | unknown): Promise<string | undefined> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NvmeofError);
    return (err as NvmeofError).code;
  }
  return undefined;
}

describe('Namespace: caller and wire input', () => {
  it.each([0, 8, 25, 40, 255])('refuses an Identify Namespace with LBADS %i (ControllerError, not a later RangeError)', async (lbads) => {
    const err = await codeOf(() => new Namespace(owner([]), 1, identity(lbads, 1024n), []));
    expect(err).toBe(ErrorCode.CONTROLLER);
  });

  it.each([9, 12, 24])('accepts LBADS %i', (lbads) => {
    const ns = new Namespace(owner([]), 1, identity(lbads, 1024n), []);
    expect(ns.blockSize).toBe(2 ** lbads);
  });

  it('refuses a read larger than one Buffer can hold, before sending', async () => {
    const sent: NvmeCommand[] = [];
    const ns = new Namespace(owner(sent), 1, identity(12, 1n << 40n), []);
    const blocks = Math.floor(bufferConstants.MAX_LENGTH / 4096) + 1;
    expect(await codeOf(() => ns.read(0, blocks))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(() => ns.read(0, 2 ** 24))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(sent).toEqual([]);
  });

  it.each([[[null]], [[undefined]], [[1]], [['x']]])('refuses the deallocate ranges %j, before sending', async (ranges) => {
    const sent: NvmeCommand[] = [];
    const ns = new Namespace(owner(sent), 1, identity(9, 1024n), []);
    expect(await codeOf(() => ns.deallocate(ranges as never))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(sent).toEqual([]);
  });
});
