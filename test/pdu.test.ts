/**
 * PDU codec tests. Every expected byte vector is built here by writing fields at the offsets the
 * NVMe/TCP transport specification gives (common header: type 0, flags 1, hlen 2, pdo 3, plen 4..7),
 * never by the encoder under test. Digests use a bit-at-a-time CRC32C written in this file.
 */
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../src/errors.js';
import { dataOffset, encodePdu, PDU_HLEN, PduFlag, PduType, TermReqFes } from '../src/protocol/pdu.js';
import type { EncodeOptions, Pdu } from '../src/protocol/pdu.js';
import { PduReader } from '../src/protocol/reader.js';
import { refCrc32c } from './helpers/crc32c-ref.js';

/** Write the 8-byte common header. */
function ch(b: Buffer, type: number, flags: number, hlen: number, pdo: number, plen: number): void {
  b[0] = type;
  b[1] = flags;
  b[2] = hlen;
  b[3] = pdo;
  b.writeUInt32LE(plen, 4);
}

/** Write the header digest of b[0..hlen) at hlen. */
function hdgst(b: Buffer, hlen: number): void {
  b.writeUInt32LE(refCrc32c(b.subarray(0, hlen)), hlen);
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

function decodeAll(role: 'host' | 'controller', bytes: Buffer, hd = false, dd = false): Pdu[] {
  return new PduReader({ role, hdgst: hd, ddgst: dd }).push(bytes);
}

function decodeOne(role: 'host' | 'controller', bytes: Buffer, hd = false, dd = false): Pdu {
  const r = new PduReader({ role, hdgst: hd, ddgst: dd });
  const out = r.push(bytes);
  expect(out).toHaveLength(1);
  expect(r.buffered).toBe(0);
  return out[0]!;
}

function encodeJoined(pdu: Pdu, opts: EncodeOptions): Buffer {
  return Buffer.concat(encodePdu(pdu, opts));
}

const noDigests: EncodeOptions = { hdgst: false, ddgst: false };
const digests: EncodeOptions = { hdgst: true, ddgst: true };

describe('PDU constants', () => {
  it('has the spec values', () => {
    expect(PduType).toEqual({ ICReq: 0, ICResp: 1, H2CTermReq: 2, C2HTermReq: 3, CapsuleCmd: 4, CapsuleResp: 5, H2CData: 6, C2HData: 7, R2T: 9 });
    expect(PduFlag).toEqual({ HDGSTF: 1, DDGSTF: 2, LAST_PDU: 4, SUCCESS: 8 });
    expect(TermReqFes.DATA_TRANSFER_LIMIT_EXCEEDED).toBe(5);
    expect(PDU_HLEN).toEqual({ 0: 128, 1: 128, 2: 24, 3: 24, 4: 72, 5: 24, 6: 24, 7: 24, 9: 24 });
  });

  it('computes PDO as the smallest multiple of the alignment covering the header (+digest)', () => {
    expect(dataOffset(24, false, undefined)).toBe(24);
    expect(dataOffset(24, true, 0)).toBe(28);
    expect(dataOffset(24, true, 4)).toBe(28);
    expect(dataOffset(24, true, 16)).toBe(32); // CPDA/HPDA 3 -> (3+1)*4 = 16-byte alignment
    expect(dataOffset(24, false, 16)).toBe(32);
    expect(dataOffset(72, true, 16)).toBe(80);
    expect(dataOffset(72, false, 8)).toBe(72);
    expect(dataOffset(72, true, 128)).toBe(128); // PDA 31 -> 128 bytes
  });
});

describe('ICReq / ICResp', () => {
  const icreq = (): Buffer => {
    const b = Buffer.alloc(128);
    ch(b, 0x00, 0, 128, 0, 128);
    b.writeUInt16LE(0, 8); // PFV
    b[10] = 3; // HPDA
    b[11] = 0x03; // DGST: HDGST_ENABLE | DDGST_ENABLE
    b.writeUInt32LE(7, 12); // MAXR2T
    return b;
  };
  const icresp = (): Buffer => {
    const b = Buffer.alloc(128);
    ch(b, 0x01, 0, 128, 0, 128);
    b.writeUInt16LE(0, 8); // PFV
    b[10] = 2; // CPDA
    b[11] = 0x01; // DGST: HDGST only
    b.writeUInt32LE(0x20000, 12); // MAXH2CDATA
    return b;
  };

  it('decodes ICReq (controller side) and ICResp (host side)', () => {
    expect(decodeOne('controller', icreq())).toEqual({ type: 0, pfv: 0, hpda: 3, hdgst: true, ddgst: true, maxr2t: 7 });
    expect(decodeOne('host', icresp())).toEqual({ type: 1, pfv: 0, cpda: 2, hdgst: true, ddgst: false, maxh2cdata: 0x20000 });
  });

  it('encodes ICReq and ICResp without digests or padding whatever the options say', () => {
    const req: Pdu = { type: 0, pfv: 0, hpda: 3, hdgst: true, ddgst: true, maxr2t: 7 };
    const resp: Pdu = { type: 1, pfv: 0, cpda: 2, hdgst: true, ddgst: false, maxh2cdata: 0x20000 };
    for (const opts of [noDigests, digests, { hdgst: true, ddgst: true, dataAlignment: 16 }]) {
      const parts = encodePdu(req, opts);
      expect(parts).toHaveLength(1);
      expect(parts[0]).toEqual(icreq());
      expect(encodeJoined(resp, opts)).toEqual(icresp());
    }
  });

  it('rejects out-of-range IC fields', () => {
    expect(() => encodePdu({ type: 0, pfv: 0, hpda: 32, hdgst: false, ddgst: false, maxr2t: 0 }, noDigests)).toThrow(InvalidArgumentError);
    expect(() => encodePdu({ type: 1, pfv: 0x10000, cpda: 0, hdgst: false, ddgst: false, maxh2cdata: 4096 }, noDigests)).toThrow(InvalidArgumentError);
  });
});

describe('H2CTermReq / C2HTermReq', () => {
  const term = (type: number, fes: number, fei: number, data: Buffer): Buffer => {
    const b = Buffer.alloc(24 + data.length);
    ch(b, type, 0, 24, 0, 24 + data.length);
    b.writeUInt16LE(fes, 8);
    b.writeUInt32LE(fei, 10); // FEI is at byte 10 (not dword aligned)
    data.copy(b, 24);
    return b;
  };

  it('decodes and encodes an H2CTermReq carrying the offending header', () => {
    const offending = pattern(24, 1);
    const bytes = term(0x02, 1, 3, offending);
    expect(decodeOne('controller', bytes)).toEqual({ type: 2, fes: 1, fei: 3, data: offending });
    const parts = encodePdu({ type: 2, fes: 1, fei: 3, data: offending }, digests);
    expect(parts).toHaveLength(2);
    expect(parts[1]).toBe(offending); // data passed through, not copied
    expect(Buffer.concat(parts)).toEqual(bytes);
  });

  it('decodes and encodes a C2HTermReq, with and without data', () => {
    const bytes = term(0x03, 5, 0, Buffer.alloc(0));
    expect(decodeOne('host', bytes)).toEqual({ type: 3, fes: 5, fei: 0, data: Buffer.alloc(0) });
    expect(encodePdu({ type: 3, fes: 5, fei: 0, data: Buffer.alloc(0) }, digests)).toEqual([bytes]);
    const big = pattern(128, 9);
    const full = term(0x03, 2, 0xabcdef01, big);
    expect(full.length).toBe(152);
    expect(decodeOne('host', full)).toEqual({ type: 3, fes: 2, fei: 0xabcdef01, data: big });
    expect(encodeJoined({ type: 3, fes: 2, fei: 0xabcdef01, data: big }, noDigests)).toEqual(full);
  });

  it('returns a copy of the TermReq data, not a view of the chunk', () => {
    const bytes = term(0x03, 1, 4, pattern(8, 3));
    const pdu = decodeOne('host', bytes) as { data: Buffer };
    expect(pdu.data.buffer).not.toBe(bytes.buffer);
  });

  it('cuts TermReq data to 128 bytes so PLEN stays <= 152', () => {
    const long = pattern(152, 0);
    const out = encodeJoined({ type: 2, fes: 1, fei: 0, data: long }, noDigests);
    expect(out.length).toBe(152);
    expect(out.readUInt32LE(4)).toBe(152);
    expect(out.subarray(24)).toEqual(long.subarray(0, 128));
  });
});

describe('CapsuleCmd', () => {
  const sqe = pattern(64, 0x40);

  it('without data, no digests', () => {
    const b = Buffer.alloc(72);
    ch(b, 0x04, 0, 72, 0, 72);
    sqe.copy(b, 8); // SQE at bytes 8..71
    expect(decodeOne('controller', b)).toEqual({ type: 4, sqe, data: null, dataDigestError: false });
    const parts = encodePdu({ type: 4, sqe, data: null }, noDigests);
    expect(parts).toHaveLength(1);
    expect(parts[0]).toEqual(b);
    expect(encodeJoined({ type: 4, sqe, data: Buffer.alloc(0) }, noDigests)).toEqual(b);
  });

  it('without data, header digest only (no DDGSTF without data)', () => {
    const b = Buffer.alloc(76);
    ch(b, 0x04, 0x01, 72, 0, 76);
    sqe.copy(b, 8);
    hdgst(b, 72);
    expect(decodeOne('controller', b, true, true)).toEqual({ type: 4, sqe, data: null, dataDigestError: false });
    expect(encodeJoined({ type: 4, sqe, data: null }, digests)).toEqual(b);
  });

  it('with in-capsule data and both digests', () => {
    const data = pattern(16, 0x99);
    const b = Buffer.alloc(96);
    ch(b, 0x04, 0x03, 72, 76, 96); // PDO = 72 + 4, PLEN = 76 + 16 + 4
    sqe.copy(b, 8);
    hdgst(b, 72);
    data.copy(b, 76);
    b.writeUInt32LE(refCrc32c(data), 92);
    expect(decodeOne('controller', b, true, true)).toEqual({ type: 4, sqe, data, dataDigestError: false });
    const parts = encodePdu({ type: 4, sqe, data }, digests);
    expect(parts).toHaveLength(3);
    expect(parts[0]!.length).toBe(76);
    expect(parts[1]).toBe(data);
    expect(parts[2]!.length).toBe(4);
    expect(Buffer.concat(parts)).toEqual(b);
  });

  it('with in-capsule data padded to a 16-byte CPDA (CPDA 3)', () => {
    const data = pattern(10, 0x11);
    const b = Buffer.alloc(80 + 10);
    ch(b, 0x04, 0x01, 72, 80, 90); // header 72 + HDGST 4 = 76, rounded up to 80
    sqe.copy(b, 8);
    hdgst(b, 72);
    // bytes 76..79 are pad (zero)
    data.copy(b, 80);
    expect(decodeOne('controller', b, true, false)).toEqual({ type: 4, sqe, data, dataDigestError: false });
    const parts = encodePdu({ type: 4, sqe, data }, { hdgst: true, ddgst: false, dataAlignment: 16 });
    expect(parts[0]!.length).toBe(80);
    expect(Buffer.concat(parts)).toEqual(b);
  });

  it('rejects an SQE that is not 64 bytes', () => {
    expect(() => encodePdu({ type: 4, sqe: Buffer.alloc(63), data: null }, noDigests)).toThrow(InvalidArgumentError);
  });
});

describe('CapsuleResp', () => {
  const cqe = pattern(16, 0xc0);

  it('without header digest', () => {
    const b = Buffer.alloc(24);
    ch(b, 0x05, 0, 24, 0, 24);
    cqe.copy(b, 8); // CQE at bytes 8..23
    expect(decodeOne('host', b)).toEqual({ type: 5, cqe });
    expect(encodePdu({ type: 5, cqe }, noDigests)).toEqual([b]);
    // ddgst has no effect on a PDU without data
    expect(encodePdu({ type: 5, cqe }, { hdgst: false, ddgst: true })).toEqual([b]);
  });

  it('with header digest', () => {
    const b = Buffer.alloc(28);
    ch(b, 0x05, 0x01, 24, 0, 28);
    cqe.copy(b, 8);
    hdgst(b, 24);
    expect(decodeOne('host', b, true, true)).toEqual({ type: 5, cqe });
    expect(encodePdu({ type: 5, cqe }, digests)).toEqual([b]);
  });

  it('rejects a CQE that is not 16 bytes', () => {
    expect(() => encodePdu({ type: 5, cqe: Buffer.alloc(15) }, noDigests)).toThrow(InvalidArgumentError);
  });
});

describe('H2CData', () => {
  const data = pattern(40, 0x21);

  it('no digests, LAST_PDU', () => {
    const b = Buffer.alloc(24 + 40);
    ch(b, 0x06, 0x04, 24, 24, 64);
    b.writeUInt16LE(0x1234, 8); // CCCID
    b.writeUInt16LE(0x0042, 10); // TTAG
    b.writeUInt32LE(8192, 12); // DATAO
    b.writeUInt32LE(40, 16); // DATAL
    data.copy(b, 24);
    const pdu = { type: 6, cccid: 0x1234, ttag: 0x42, datao: 8192, last: true, data } as const;
    expect(decodeOne('controller', b)).toEqual({ ...pdu, dataDigestError: false });
    expect(encodeJoined(pdu, noDigests)).toEqual(b);
  });

  it('both digests, not last, padded to a 32-byte CPDA (CPDA 7)', () => {
    const b = Buffer.alloc(32 + 40 + 4);
    ch(b, 0x06, 0x03, 24, 32, 76);
    b.writeUInt16LE(7, 8);
    b.writeUInt16LE(0xffff, 10);
    b.writeUInt32LE(0, 12);
    b.writeUInt32LE(40, 16);
    hdgst(b, 24);
    data.copy(b, 32);
    b.writeUInt32LE(refCrc32c(data), 72);
    const pdu = { type: 6, cccid: 7, ttag: 0xffff, datao: 0, last: false, data } as const;
    expect(decodeOne('controller', b, true, true)).toEqual({ ...pdu, dataDigestError: false });
    const parts = encodePdu(pdu, { hdgst: true, ddgst: true, dataAlignment: 32 });
    expect(parts.map((p) => p.length)).toEqual([32, 40, 4]);
    expect(Buffer.concat(parts)).toEqual(b);
  });

  it('validates numeric fields', () => {
    expect(() => encodePdu({ type: 6, cccid: 0x10000, ttag: 0, datao: 0, last: true, data }, noDigests)).toThrow(InvalidArgumentError);
    expect(() => encodePdu({ type: 6, cccid: 0, ttag: -1, datao: 0, last: true, data }, noDigests)).toThrow(InvalidArgumentError);
    expect(() => encodePdu({ type: 6, cccid: 0, ttag: 0, datao: 1.5, last: true, data }, noDigests)).toThrow(InvalidArgumentError);
    expect(() => encodePdu({ type: 6, cccid: 0, ttag: 0, datao: 0, last: true, data }, { hdgst: false, ddgst: false, dataAlignment: 6 })).toThrow(
      InvalidArgumentError,
    );
  });
});

describe('C2HData', () => {
  const data = pattern(100, 0x55);

  it('no digests, LAST_PDU | SUCCESS', () => {
    const b = Buffer.alloc(24 + 100);
    ch(b, 0x07, 0x0c, 24, 24, 124);
    b.writeUInt16LE(0x0101, 8); // CCCID
    // bytes 10..11 reserved
    b.writeUInt32LE(4096, 12); // DATAO
    b.writeUInt32LE(100, 16); // DATAL
    data.copy(b, 24);
    const pdu = { type: 7, cccid: 0x0101, datao: 4096, last: true, success: true, data } as const;
    expect(decodeOne('host', b)).toEqual({ ...pdu, dataDigestError: false });
    expect(encodeJoined(pdu, noDigests)).toEqual(b);
  });

  it('both digests, padded to a 16-byte HPDA (HPDA 3): PDO 32', () => {
    const b = Buffer.alloc(32 + 100 + 4);
    ch(b, 0x07, 0x03, 24, 32, 136);
    b.writeUInt16LE(9, 8);
    b.writeUInt32LE(0, 12);
    b.writeUInt32LE(100, 16);
    hdgst(b, 24);
    data.copy(b, 32);
    b.writeUInt32LE(refCrc32c(data), 132);
    const pdu = { type: 7, cccid: 9, datao: 0, last: false, success: false, data } as const;
    expect(decodeOne('host', b, true, true)).toEqual({ ...pdu, dataDigestError: false });
    expect(encodeJoined(pdu, { hdgst: true, ddgst: true, dataAlignment: 16 })).toEqual(b);
  });

  it('data digest only, no padding without alignment', () => {
    const b = Buffer.alloc(24 + 100 + 4);
    ch(b, 0x07, 0x06, 24, 24, 128);
    b.writeUInt16LE(3, 8);
    b.writeUInt32LE(512, 12);
    b.writeUInt32LE(100, 16);
    data.copy(b, 24);
    b.writeUInt32LE(refCrc32c(data), 124);
    const pdu = { type: 7, cccid: 3, datao: 512, last: true, success: false, data } as const;
    expect(decodeOne('host', b, false, true)).toEqual({ ...pdu, dataDigestError: false });
    expect(encodeJoined(pdu, { hdgst: false, ddgst: true })).toEqual(b);
  });

  it('refuses to encode SUCCESS without LAST_PDU', () => {
    expect(() => encodePdu({ type: 7, cccid: 0, datao: 0, last: false, success: true, data }, noDigests)).toThrow(InvalidArgumentError);
  });
});

describe('R2T', () => {
  it('without and with header digest', () => {
    const b = Buffer.alloc(24);
    ch(b, 0x09, 0, 24, 0, 24);
    b.writeUInt16LE(0x0abc, 8); // CCCID
    b.writeUInt16LE(0x0003, 10); // TTAG
    b.writeUInt32LE(65536, 12); // R2TO
    b.writeUInt32LE(131072, 16); // R2TL
    const pdu = { type: 9, cccid: 0xabc, ttag: 3, r2to: 65536, r2tl: 131072 } as const;
    expect(decodeOne('host', b)).toEqual(pdu);
    expect(encodePdu(pdu, noDigests)).toEqual([b]);

    const h = Buffer.alloc(28);
    b.copy(h);
    h[1] = 0x01;
    h.writeUInt32LE(28, 4);
    hdgst(h, 24);
    expect(decodeOne('host', h, true, true)).toEqual(pdu);
    expect(encodePdu(pdu, digests)).toEqual([h]);
  });
});

describe('encodePdu allocation', () => {
  it('returns one header buffer, the data itself, and the digest', () => {
    const data = pattern(300, 1);
    const parts = encodePdu({ type: 7, cccid: 1, datao: 0, last: true, success: false, data }, { hdgst: true, ddgst: true, dataAlignment: 8 });
    expect(parts).toHaveLength(3);
    expect(parts[1]).toBe(data);
    // header and digest are views of a single allocation
    expect(parts[2]!.buffer).toBe(parts[0]!.buffer);
    expect(parts[2]!.byteOffset).toBe(parts[0]!.byteOffset + parts[0]!.length);
  });

  it('accepts a plain Uint8Array as data without copying it', () => {
    const u8 = new Uint8Array([1, 2, 3, 4, 5]);
    const parts = encodePdu({ type: 6, cccid: 1, ttag: 2, datao: 0, last: true, data: u8 as Buffer }, noDigests);
    expect(parts[1]!.buffer).toBe(u8.buffer);
    expect(Buffer.isBuffer(parts[1])).toBe(true);
  });
});

describe('round trip (property)', () => {
  const u16 = fc.integer({ min: 0, max: 0xffff });
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  const bytes = (min: number, max: number): fc.Arbitrary<Buffer> => fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a));

  const hostPdu: fc.Arbitrary<Pdu> = fc.oneof(
    fc.record({ type: fc.constant(5 as const), cqe: bytes(16, 16) }),
    fc.record({ type: fc.constant(9 as const), cccid: u16, ttag: u16, r2to: u32, r2tl: u32 }),
    fc
      .record({ type: fc.constant(7 as const), cccid: u16, datao: u32, last: fc.boolean(), success: fc.boolean(), data: bytes(1, 600) })
      .map((p) => ({ ...p, success: p.success && p.last })),
    fc.record({ type: fc.constant(3 as const), fes: fc.integer({ min: 1, max: 6 }), fei: u32, data: bytes(0, 128) }),
  );
  const controllerPdu: fc.Arbitrary<Pdu> = fc.oneof(
    fc.record({ type: fc.constant(4 as const), sqe: bytes(64, 64), data: fc.option(bytes(1, 600), { nil: null }) }),
    fc.record({ type: fc.constant(6 as const), cccid: u16, ttag: u16, datao: u32, last: fc.boolean(), data: bytes(1, 600) }),
    fc.record({ type: fc.constant(2 as const), fes: fc.integer({ min: 1, max: 6 }), fei: u32, data: bytes(0, 128) }),
  );
  const opts = fc.record({ hdgst: fc.boolean(), ddgst: fc.boolean(), dataAlignment: fc.constantFrom(0, 4, 8, 16, 32, 64, 128) });

  const withFlag = (p: Pdu): Pdu => (p.type === 4 || p.type === 6 || p.type === 7 ? { ...p, dataDigestError: false } : p);

  it('host-bound PDUs decode to what was encoded', () => {
    fc.assert(
      fc.property(fc.array(hostPdu, { minLength: 1, maxLength: 5 }), opts, (pdus, o) => {
        const wire = Buffer.concat(pdus.flatMap((p) => encodePdu(p, o)));
        expect(decodeAll('host', wire, o.hdgst, o.ddgst)).toEqual(pdus.map(withFlag));
      }),
    );
  });

  it('controller-bound PDUs decode to what was encoded', () => {
    fc.assert(
      fc.property(fc.array(controllerPdu, { minLength: 1, maxLength: 5 }), opts, (pdus, o) => {
        const wire = Buffer.concat(pdus.flatMap((p) => encodePdu(p, o)));
        expect(decodeAll('controller', wire, o.hdgst, o.ddgst)).toEqual(pdus.map(withFlag));
      }),
    );
  });
});
