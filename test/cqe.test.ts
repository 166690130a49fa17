import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { cqeOk, decodeCqe, encodeCqe, makeStatus, statusSc, statusSct } from '../src/protocol/cqe.js';
import { ProtocolError } from '../src/errors.js';

/** A CQE written field by field at the spec offsets: DW0 @0, DW1 @4, SQHD @8, SQID @10, CID @12, status @14. */
function handCqe(dw0: number, dw1: number, sqhd: number, sqid: number, cid: number, status: number): Buffer {
  const b = Buffer.alloc(16);
  b[0] = dw0 & 0xff; b[1] = (dw0 >>> 8) & 0xff; b[2] = (dw0 >>> 16) & 0xff; b[3] = dw0 >>> 24;
  b[4] = dw1 & 0xff; b[5] = (dw1 >>> 8) & 0xff; b[6] = (dw1 >>> 16) & 0xff; b[7] = dw1 >>> 24;
  b[8] = sqhd & 0xff; b[9] = sqhd >>> 8;
  b[10] = sqid & 0xff; b[11] = sqid >>> 8;
  b[12] = cid & 0xff; b[13] = cid >>> 8;
  b[14] = status & 0xff; b[15] = status >>> 8;
  return b;
}

describe('decodeCqe', () => {
  it('reads each field at its offset', () => {
    const b = handCqe(0x00010203, 0xa0b0c0d0, 0x0011, 0x0002, 0x7fee, 0x8309);
    expect(decodeCqe(b)).toEqual({ dw0: 0x00010203, dw1: 0xa0b0c0d0, sqhd: 0x11, sqid: 2, cid: 0x7fee, status: 0x8309 });
  });

  it('reads at an offset inside a larger buffer', () => {
    const b = Buffer.concat([Buffer.alloc(8, 0xaa), handCqe(1, 2, 3, 4, 5, 0), Buffer.alloc(3)]);
    expect(decodeCqe(b, 8)).toEqual({ dw0: 1, dw1: 2, sqhd: 3, sqid: 4, cid: 5, status: 0 });
  });

  it('throws ProtocolError when truncated', () => {
    expect(() => decodeCqe(Buffer.alloc(15))).toThrow(ProtocolError);
    expect(() => decodeCqe(Buffer.alloc(20), 5)).toThrow(ProtocolError);
  });
});

describe('encodeCqe', () => {
  it('writes the same bytes as the hand-built layout', () => {
    expect(encodeCqe({ dw0: 0xffffffff, dw1: 7, sqhd: 31, sqid: 0, cid: 65535, status: 0x0001 })).toEqual(
      handCqe(0xffffffff, 7, 31, 0, 65535, 0x0001),
    );
  });

  it('round-trips any 16 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const b = Buffer.from(bytes);
        expect(encodeCqe(decodeCqe(b))).toEqual(b);
      }),
    );
  });

  it('rejects out-of-range fields', () => {
    expect(() => encodeCqe({ dw0: 0, dw1: 0, sqhd: 0x10000, sqid: 0, cid: 0, status: 0 })).toThrow(/sqhd/);
  });
});

describe('status field helpers', () => {
  it('makeStatus builds bit 0 phase (0), SC 8:1, SCT 11:9, CRD 13:12, More 14, DNR 15', () => {
    // Connect Invalid Host with DNR, as Linux nvmet returns it: SCT 1, SC 0x84.
    expect(makeStatus(1, 0x84, { dnr: true })).toBe(0x8000 | (1 << 9) | (0x84 << 1));
    expect(makeStatus(1, 0x84, { dnr: true })).toBe(0x8308);
    expect(makeStatus(0, 0x02)).toBe(0x0004);
    expect(makeStatus(3, 0x02, { crd: 2, more: true })).toBe(0x0604 | 0x2000 | 0x4000);
    expect(makeStatus(7, 0xff, { crd: 3, more: true, dnr: true })).toBe(0xfffe);
    expect(() => makeStatus(8, 0)).toThrow(/sct/);
    expect(() => makeStatus(0, 256)).toThrow(/sc/);
    expect(() => makeStatus(0, 0, { crd: 4 })).toThrow(/crd/);
  });

  it('statusSc/statusSct extract the codes', () => {
    expect(statusSc(0x8309)).toBe(0x84);
    expect(statusSct(0x8309)).toBe(1);
  });

  it('cqeOk ignores the phase tag and the CRD/More/DNR bits only when SC and SCT are 0', () => {
    const base = { dw0: 0, dw1: 0, sqhd: 0, sqid: 0, cid: 0 };
    expect(cqeOk({ ...base, status: 0 })).toBe(true);
    expect(cqeOk({ ...base, status: 1 })).toBe(true); // phase tag set
    expect(cqeOk({ ...base, status: 0x0002 })).toBe(false); // SC 1
    expect(cqeOk({ ...base, status: 0x0200 })).toBe(false); // SCT 1, SC 0
  });
});
