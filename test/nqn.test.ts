import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  DISCOVERY_NQN,
  formatUuid,
  isValidNqn,
  parseUuid,
  readNqnField,
  uuidFromNqn,
  uuidHostNqn,
  validateNqn,
  writeNqnField,
} from '../src/protocol/nqn.js';
import { InvalidArgumentError } from '../src/errors.js';

describe('validateNqn (strict)', () => {
  it.each([
    DISCOVERY_NQN,
    'nqn.2014-08.org.nvmexpress:uuid:0b6e3c46-6f1e-4b7b-9f7c-2b0f1c0e6d11',
    'nqn.2016-06.io.spdk:cnode1',
    'nqn.2014-08.com.example:nvme:nvm-subsystem-sn-d78432',
    'nqn.2024-12.io.example-storage.lab:disk/1',
  ])('accepts %s', (nqn) => {
    expect(() => validateNqn(nqn)).not.toThrow();
    expect(isValidNqn(nqn)).toBe(true);
  });

  it.each([
    ['', /empty/],
    ['testnqn', /nqn\.yyyy-mm/],
    ['nqn.14-08.org.example:x', /nqn\.yyyy-mm/],
    ['nqn.2014-13.org.example:x', /month/],
    ['nqn.2014-08.:x', /nqn\.yyyy-mm/],
    ['nqn.2014-08.org.example:', /nqn\.yyyy-mm/],
    ['nqn.2014-08.org.nvmexpress:uuid:not-a-uuid', /UUID/],
    ['nqn.2014-08.org.example:a\u0000b', /control/],
    [`nqn.2014-08.org.example:${'a'.repeat(200)}`, /223/],
  ])('rejects %j', (nqn, msg) => {
    expect(() => validateNqn(nqn)).toThrow(InvalidArgumentError);
    expect(() => validateNqn(nqn)).toThrow(msg);
  });

  it('counts UTF-8 bytes, not characters', () => {
    const prefix = 'nqn.2014-08.org.example:';
    const ok = prefix + 'é'.repeat((223 - prefix.length) >> 1); // 2 bytes each
    expect(Buffer.byteLength(ok)).toBeLessThanOrEqual(223);
    expect(isValidNqn(ok)).toBe(true);
    expect(isValidNqn(ok + 'éé')).toBe(false);
  });

  it('names the argument in the message', () => {
    expect(() => validateNqn('bad', { name: 'subnqn' })).toThrow(/^subnqn/);
  });
});

describe('validateNqn (lenient)', () => {
  it('accepts any short printable name, as Linux nvmet does', () => {
    expect(() => validateNqn('testnqn', { strict: false })).not.toThrow();
    expect(() => validateNqn('blktests-subsystem-1', { strict: false })).not.toThrow();
    expect(() => validateNqn('', { strict: false })).toThrow(/empty/);
    expect(() => validateNqn('x'.repeat(224), { strict: false })).toThrow(/223/);
    expect(() => validateNqn('a\nb', { strict: false })).toThrow(/control/);
  });
});

describe('UUIDs', () => {
  const uuid = '0b6e3c46-6f1e-4b7b-9f7c-2b0f1c0e6d11';
  const bytes = [0x0b, 0x6e, 0x3c, 0x46, 0x6f, 0x1e, 0x4b, 0x7b, 0x9f, 0x7c, 0x2b, 0x0f, 0x1c, 0x0e, 0x6d, 0x11];

  it('parseUuid gives the bytes in written order', () => {
    expect(parseUuid(uuid)).toEqual(Buffer.from(bytes));
    expect(parseUuid(uuid.toUpperCase())).toEqual(Buffer.from(bytes));
    expect(() => parseUuid('0b6e3c466f1e4b7b9f7c2b0f1c0e6d11')).toThrow(InvalidArgumentError);
    expect(() => parseUuid('0b6e3c46-6f1e-4b7b-9f7c-2b0f1c0e6d1')).toThrow(InvalidArgumentError);
  });

  it('formatUuid is lower-case 8-4-4-4-12', () => {
    expect(formatUuid(Buffer.from(bytes))).toBe(uuid);
    expect(() => formatUuid(Buffer.alloc(15))).toThrow(InvalidArgumentError);
  });

  it('round trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        expect(parseUuid(formatUuid(b))).toEqual(Buffer.from(b));
      }),
    );
  });

  it('uuidHostNqn / uuidFromNqn', () => {
    expect(uuidHostNqn(uuid.toUpperCase())).toBe(`nqn.2014-08.org.nvmexpress:uuid:${uuid}`);
    expect(uuidFromNqn(`nqn.2014-08.org.nvmexpress:uuid:${uuid}`)).toBe(uuid);
    expect(uuidFromNqn('nqn.2016-06.io.spdk:host1')).toBeUndefined();
    expect(() => uuidHostNqn('nope')).toThrow(InvalidArgumentError);
  });
});

describe('NQN fields', () => {
  it('writes NUL-padded and reads back', () => {
    const b = Buffer.alloc(300, 0xee);
    writeNqnField(b, 10, DISCOVERY_NQN);
    expect(b.subarray(10, 10 + DISCOVERY_NQN.length).toString()).toBe(DISCOVERY_NQN);
    expect(b.subarray(10 + DISCOVERY_NQN.length, 266).every((x) => x === 0)).toBe(true);
    expect(b[266]).toBe(0xee);
    expect(readNqnField(b, 10)).toBe(DISCOVERY_NQN);
  });
});
