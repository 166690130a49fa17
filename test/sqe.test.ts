import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeSqe, encodeNvmSqe, encodeSqe, getCid, getFctype, getOpcode, setCid, type SqeFields } from '../src/protocol/sqe.js';
import { inCapsuleSgl, readSgl, transportSgl, writeDataSgl, writeSgl } from '../src/protocol/sgl.js';
import { InvalidArgumentError } from '../src/errors.js';

describe('encodeSqe', () => {
  it('places every field at its spec offset (little-endian)', () => {
    const sqe = encodeSqe({
      opcode: 0x02,
      fuse: 1,
      psdt: 1,
      cid: 0xbeef,
      nsid: 0x01020304,
      cdw2: 0x11111111,
      cdw3: 0x22222222,
      mptr: 0x0807060504030201n,
      cdw10: 0xa0a1a2a3,
      cdw11: 0xb0b1b2b3,
      cdw12: 0xc0c1c2c3,
      cdw13: 0xd0d1d2d3,
      cdw14: 0xe0e1e2e3,
      cdw15: 0xf0f1f2f3,
    });
    const want = Buffer.alloc(64);
    want[0] = 0x02; // opcode
    want[1] = 0x41; // PSDT 01b in bits 7:6, FUSE 01b in bits 1:0
    want[2] = 0xef; want[3] = 0xbe; // CID
    want[4] = 0x04; want[5] = 0x03; want[6] = 0x02; want[7] = 0x01; // NSID
    want.fill(0x11, 8, 12); // CDW2
    want.fill(0x22, 12, 16); // CDW3
    for (let i = 0; i < 8; i++) want[16 + i] = i + 1; // MPTR
    // bytes 24..39 DPTR stay zero
    const dwords = [[0xa3, 0xa2, 0xa1, 0xa0], [0xb3, 0xb2, 0xb1, 0xb0], [0xc3, 0xc2, 0xc1, 0xc0], [0xd3, 0xd2, 0xd1, 0xd0], [0xe3, 0xe2, 0xe1, 0xe0], [0xf3, 0xf2, 0xf1, 0xf0]];
    dwords.forEach((d, i) => want.set(d, 40 + i * 4));
    expect(sqe).toEqual(want);
  });

  it('defaults PSDT to 01b (SGL), which fabrics requires: flags byte 0x40', () => {
    const sqe = encodeSqe({ opcode: 0x18 });
    expect(sqe.length).toBe(64);
    expect(sqe[0]).toBe(0x18);
    expect(sqe[1]).toBe(0x40);
    expect(sqe.subarray(2).every((b) => b === 0)).toBe(true);
  });

  it('accepts negative int32 dwords (results of JS bit operations) as unsigned', () => {
    const sqe = encodeSqe({ opcode: 9, cdw10: 7 | (1 << 31) });
    expect(sqe.readUInt32LE(40)).toBe(0x80000007);
  });

  it('rejects out-of-range fields naming them', () => {
    expect(() => encodeSqe({ opcode: 256 })).toThrow(/opcode/);
    expect(() => encodeSqe({ opcode: 1, cid: 0x10000 })).toThrow(/cid/);
    expect(() => encodeSqe({ opcode: 1, fuse: 4 })).toThrow(/fuse/);
    expect(() => encodeSqe({ opcode: 1, cdw10: 2 ** 32 })).toThrow(/cdw10/);
    expect(() => encodeSqe({ opcode: 1, nsid: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => encodeSqe({ opcode: 1, mptr: -1n })).toThrow(/mptr/);
  });
});

describe('decodeSqe', () => {
  it('reads a hand-built SQE', () => {
    const b = Buffer.alloc(64);
    b[0] = 0x01;
    b[1] = 0x80 | 0x02; // PSDT 10b, FUSE 10b
    b.writeUInt16LE(0x1234, 2);
    b.writeUInt32LE(0xfffffffe, 4);
    b.writeUInt32LE(5, 8);
    b.writeUInt32LE(6, 12);
    b.writeBigUInt64LE(0xdeadbeefn, 16);
    // DPTR: SGL Data Block, subtype 1 (offset), address 0, length 4096
    b.writeUInt32LE(4096, 32);
    b[39] = 0x01;
    for (let i = 0; i < 6; i++) b.writeUInt32LE(100 + i, 40 + 4 * i);
    expect(decodeSqe(b)).toEqual({
      opcode: 1,
      fuse: 2,
      psdt: 2,
      cid: 0x1234,
      nsid: 0xfffffffe,
      cdw2: 5,
      cdw3: 6,
      mptr: 0xdeadbeefn,
      dptr: { kind: 'data-block', address: 0n, length: 4096, subtype: 1 },
      cdw10: 100,
      cdw11: 101,
      cdw12: 102,
      cdw13: 103,
      cdw14: 104,
      cdw15: 105,
    });
  });

  it('rejects short buffers', () => {
    expect(() => decodeSqe(Buffer.alloc(63))).toThrow(InvalidArgumentError);
  });
});

describe('CID, opcode and FCTYPE accessors', () => {
  it('setCid writes bytes 2..3 little-endian and leaves the rest alone', () => {
    const sqe = encodeSqe({ opcode: 0x7f, nsid: 0x01 });
    setCid(sqe, 0xabcd);
    expect(sqe[2]).toBe(0xcd);
    expect(sqe[3]).toBe(0xab);
    expect(getCid(sqe)).toBe(0xabcd);
    expect(getOpcode(sqe)).toBe(0x7f);
    expect(getFctype(sqe)).toBe(0x01);
    expect(() => setCid(sqe, 65536)).toThrow(/cid/);
  });
});

describe('SGL descriptors', () => {
  it('inCapsuleSgl: SGL Data Block (type 0), subtype 1 (offset), address 0 -> identifier 0x01', () => {
    const sqe = Buffer.alloc(64);
    writeSgl(sqe, inCapsuleSgl(1024));
    const want = Buffer.alloc(64);
    want.writeUInt32LE(1024, 32); // length @ DPTR+8
    want[39] = 0x01; // (0 << 4) | 1
    expect(sqe).toEqual(want);
  });

  it('inCapsuleSgl with ICDOFF puts the offset in the address field', () => {
    const sqe = Buffer.alloc(64);
    writeSgl(sqe, inCapsuleSgl(16, 32));
    expect(sqe.readBigUInt64LE(24)).toBe(32n);
    expect(readSgl(sqe)).toEqual({ kind: 'data-block', address: 32n, length: 16, subtype: 1 });
  });

  it('transportSgl: Transport SGL Data Block (type 5), subtype 0xA -> identifier 0x5A', () => {
    const sqe = Buffer.alloc(64, 0xff);
    writeSgl(sqe, transportSgl(131072));
    const want = Buffer.alloc(64, 0xff);
    want.fill(0, 24, 40);
    want.writeUInt32LE(131072, 32);
    want[39] = 0x5a;
    expect(sqe).toEqual(want);
    expect(readSgl(sqe)).toEqual({ kind: 'transport-data-block', length: 131072, subtype: 0xa });
  });

  it('keeps unknown descriptor types as raw bytes', () => {
    const sqe = Buffer.alloc(64);
    for (let i = 0; i < 15; i++) sqe[24 + i] = i + 1;
    sqe[39] = 0x40; // keyed data block
    const d = readSgl(sqe);
    expect(d.kind).toBe('other');
    if (d.kind !== 'other') return;
    expect(d.type).toBe(4);
    expect(d.subtype).toBe(0);
    const copy = Buffer.alloc(64);
    writeSgl(copy, d);
    expect(copy.subarray(24, 40)).toEqual(sqe.subarray(24, 40));
  });

  it('writeDataSgl (the I/O path) writes the same bytes over whatever DPTR held: identifiers 0x01 and 0x5A', () => {
    for (const [length, inCapsule, id] of [[4096, true, 0x01], [131072, false, 0x5a], [0, false, 0x5a]] as const) {
      const sqe = Buffer.alloc(64, 0xee);
      writeDataSgl(sqe, length, inCapsule);
      const want = Buffer.alloc(64, 0xee);
      want.fill(0, 24, 40); // address 0 (ICDOFF 0 for in-capsule data), reserved bytes 12..14 zero
      want.writeUInt32LE(length, 32);
      want[39] = id;
      expect(sqe).toEqual(want);
    }
  });

  it('validates lengths', () => {
    expect(() => transportSgl(-1)).toThrow(InvalidArgumentError);
    expect(() => inCapsuleSgl(2 ** 32)).toThrow(InvalidArgumentError);
    expect(() => writeDataSgl(Buffer.alloc(64), 2 ** 32, false)).toThrow(/SGL length must be an integer in 0..4294967295, got 4294967296/);
    expect(() => writeDataSgl(Buffer.alloc(32), 8, true)).toThrow(/writeDataSgl: the SQE must be at least 40 bytes/);
    expect(() => transportSgl(1.5)).toThrow(/got 1.5/);
    expect(() => inCapsuleSgl(8, 70000)).toThrow(/icdoff must be an integer in 0..65535, got 70000/);
  });
});

describe('property: encode/decode round trip', () => {
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  const fields = fc.record({
    opcode: fc.integer({ min: 0, max: 255 }),
    fuse: fc.integer({ min: 0, max: 3 }),
    psdt: fc.integer({ min: 0, max: 3 }),
    cid: fc.integer({ min: 0, max: 0xffff }),
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    mptr: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
  });

  it('decodeSqe(encodeSqe(f)) returns f with a zero DPTR', () => {
    fc.assert(
      fc.property(fields, (f: Required<SqeFields>) => {
        const d = decodeSqe(encodeSqe(f));
        expect(d).toEqual({ ...f, dptr: { kind: 'data-block', address: 0n, length: 0, subtype: 0 } });
      }),
    );
  });

  it('encodeSqe(decodeSqe(b)) reproduces any 64 bytes outside DPTR', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 64 }), (bytes) => {
        const b = Buffer.from(bytes);
        const d = decodeSqe(b);
        const again = encodeSqe(d);
        // bits 5:2 of byte 1 are reserved and not represented; encodeSqe leaves DPTR zero
        const want = Buffer.from(b);
        want[1] = want[1]! & 0xc3;
        want.fill(0, 24, 40);
        expect(again).toEqual(want);
      }),
    );
  });
});

describe('encodeNvmSqe', () => {
  it('writes the same 64 bytes as encodeSqe with the same fields, whatever the buffer pool held before', () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xff }), u32, u32, u32, u32, (opcode, nsid, cdw10, cdw11, cdw12) => {
        // Dirty the pool so that a missing zero would show.
        Buffer.allocUnsafe(64).fill(0xa5);
        const fast = encodeNvmSqe(opcode, nsid, cdw10, cdw11, cdw12);
        expect(fast).toEqual(encodeSqe({ opcode, nsid, cdw10, cdw11, cdw12 }));
      }),
    );
  });
});
