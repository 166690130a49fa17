import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as r from '../src/protocol/reservations.js';
import { decodeSqe } from '../src/protocol/sqe.js';
import { InvalidArgumentError, ProtocolError } from '../src/errors.js';

/** A 64-byte SQE built by hand: opcode at byte 0, flags byte 1 = 0x40 (PSDT 01b), then the given bytes. */
function handSqe(opcode: number, bytes: Record<number, number> = {}): Buffer {
  const b = Buffer.alloc(64);
  b[0] = opcode;
  b[1] = 0x40;
  for (const [off, v] of Object.entries(bytes)) b[Number(off)] = v;
  return b;
}

/** Little-endian bytes of a 64-bit value, written out by hand in the tests below. */
const KEY_A = 0x1122334455667788n; // LE: 88 77 66 55 44 33 22 11
const KEY_A_LE = [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11];
const KEY_B = 0xfedcba9876543210n; // LE: 10 32 54 76 98 ba dc fe
const KEY_B_LE = [0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe];

describe('reservation types', () => {
  it('names the six RTYPE values as the spec numbers them', () => {
    expect(r.reservationTypeName(0)).toBeNull();
    expect(r.reservationTypeName(1)).toBe('write-exclusive');
    expect(r.reservationTypeName(2)).toBe('exclusive-access');
    expect(r.reservationTypeName(3)).toBe('write-exclusive-registrants-only');
    expect(r.reservationTypeName(4)).toBe('exclusive-access-registrants-only');
    expect(r.reservationTypeName(5)).toBe('write-exclusive-all-registrants');
    expect(r.reservationTypeName(6)).toBe('exclusive-access-all-registrants');
    expect(r.reservationTypeName(7)).toBeNull();
    for (const t of r.RESERVATION_TYPES) expect(r.reservationTypeName(r.reservationTypeValue(t))).toBe(t);
  });

  it('rejects unknown type names and values', () => {
    expect(() => r.reservationTypeValue('write-exclusive-ish' as r.ReservationType)).toThrow(InvalidArgumentError);
    expect(() => r.reservationTypeValue(0)).toThrow(/type must be one of/);
    expect(() => r.reservationTypeValue(7)).toThrow(InvalidArgumentError);
    expect(() => r.reservationTypeValue('toString' as r.ReservationType)).toThrow(InvalidArgumentError);
  });
});

describe('Reservation Register (0Dh)', () => {
  it('register: RREGA 000b, CRKEY @0 and NRKEY @8 of the 16-byte data', () => {
    const c = r.reservationRegister({ nsid: 1, action: 'register', nrkey: KEY_A });
    expect(c.sqe).toEqual(handSqe(0x0d, { 4: 1 }));
    expect(c.data).toEqual(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, ...KEY_A_LE]));
    expect(c.kind).toBe('io');
    expect(c.readLength).toBeUndefined();
  });

  it('unregister with IEKEY: CDW10 = 001b | bit 3 = 0x09', () => {
    const c = r.reservationRegister({ nsid: 0x01020304, action: 'unregister', crkey: KEY_B, iekey: true });
    expect(c.sqe).toEqual(handSqe(0x0d, { 4: 0x04, 5: 0x03, 6: 0x02, 7: 0x01, 40: 0x09 }));
    expect(c.data).toEqual(Buffer.from([...KEY_B_LE, 0, 0, 0, 0, 0, 0, 0, 0]));
  });

  it('replace with CPTPL: 11b sets PTPL (CDW10 bits 31:30 -> byte 43 = 0xC0), 10b clears it (0x80)', () => {
    const set = r.reservationRegister({ nsid: 2, action: 'replace', crkey: KEY_A, nrkey: KEY_B, ptpl: true });
    expect(set.sqe).toEqual(handSqe(0x0d, { 4: 2, 40: 0x02, 43: 0xc0 }));
    expect(set.data).toEqual(Buffer.from([...KEY_A_LE, ...KEY_B_LE]));
    const clear = r.reservationRegister({ nsid: 2, action: 'replace', crkey: KEY_A, nrkey: KEY_B, ptpl: false });
    expect(clear.sqe).toEqual(handSqe(0x0d, { 4: 2, 40: 0x02, 43: 0x80 }));
  });

  it('checks its arguments before building anything', () => {
    expect(() => r.reservationRegister({ nsid: 0, action: 'register', nrkey: 1n })).toThrow(/nsid/);
    expect(() => r.reservationRegister({ nsid: 0xffffffff, action: 'register', nrkey: 1n })).toThrow(/nsid/);
    expect(() => r.reservationRegister({ nsid: 1, action: 'enrol' as 'register', nrkey: 1n })).toThrow(/action must be one of register, unregister, replace/);
    expect(() => r.reservationRegister({ nsid: 1, action: 'register', nrkey: 1 as unknown as bigint })).toThrow(/write 1n/);
    expect(() => r.reservationRegister({ nsid: 1, action: 'register', nrkey: 1n << 64n })).toThrow(/0..2\^64-1/);
    expect(() => r.reservationRegister({ nsid: 1, action: 'register', nrkey: -1n })).toThrow(InvalidArgumentError);
    expect(() => r.reservationRegister({ nsid: 1, action: 'register', nrkey: 1n, ptpl: 'yes' as unknown as boolean })).toThrow(/ptpl/);
    expect(() => r.reservationRegister(null as unknown as r.ReservationRegisterOptions)).toThrow(InvalidArgumentError);
  });

  it('accepts the full key range', () => {
    const c = r.reservationRegister({ nsid: 1, action: 'register', nrkey: 0xffff_ffff_ffff_ffffn });
    expect(c.data).toEqual(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
  });
});

describe('Reservation Acquire (11h)', () => {
  it('acquire Write Exclusive: RACQA 000b, RTYPE 1 at CDW10 bits 15:8 (byte 41)', () => {
    const c = r.reservationAcquire({ nsid: 1, action: 'acquire', type: 'write-exclusive', crkey: KEY_A });
    expect(c.sqe).toEqual(handSqe(0x11, { 4: 1, 41: 0x01 }));
    expect(c.data).toEqual(Buffer.from([...KEY_A_LE, 0, 0, 0, 0, 0, 0, 0, 0]));
  });

  it('preempt: RACQA 001b, PRKEY @8', () => {
    const c = r.reservationAcquire({ nsid: 1, action: 'preempt', type: 'exclusive-access', crkey: KEY_B, prkey: KEY_A });
    expect(c.sqe).toEqual(handSqe(0x11, { 4: 1, 40: 0x01, 41: 0x02 }));
    expect(c.data).toEqual(Buffer.from([...KEY_B_LE, ...KEY_A_LE]));
  });

  it('preempt and abort: RACQA 010b; IEKEY bit 3; RTYPE 6', () => {
    const c = r.reservationAcquire({ nsid: 7, action: 'preempt-and-abort', type: 'exclusive-access-all-registrants', crkey: 1n, prkey: 2n, iekey: true });
    expect(c.sqe).toEqual(handSqe(0x11, { 4: 7, 40: 0x0a, 41: 0x06 }));
    expect(c.data).toEqual(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]));
  });

  it('every type name maps to its RTYPE at byte 41', () => {
    const expected = [3, 4, 5];
    ['write-exclusive-registrants-only', 'exclusive-access-registrants-only', 'write-exclusive-all-registrants'].forEach((t, i) => {
      const c = r.reservationAcquire({ nsid: 1, action: 'acquire', type: t as r.ReservationType, crkey: 1n });
      expect(c.sqe[41]).toBe(expected[i]);
    });
  });

  it('rejects a missing key or a bad type', () => {
    expect(() => r.reservationAcquire({ nsid: 1, action: 'acquire', type: 'write-exclusive' } as unknown as r.ReservationAcquireOptions)).toThrow(/crkey must be a bigint/);
    expect(() => r.reservationAcquire({ nsid: 1, action: 'acquire', type: 'shared' as r.ReservationType, crkey: 1n })).toThrow(/type must be one of/);
    expect(() => r.reservationAcquire({ nsid: 1, action: 'grab' as 'acquire', type: 1, crkey: 1n })).toThrow(/action/);
  });
});

describe('Reservation Release (15h)', () => {
  it('release: RRELA 000b, RTYPE at byte 41, 8 bytes of data holding CRKEY', () => {
    const c = r.reservationRelease({ nsid: 1, action: 'release', type: 'write-exclusive-registrants-only', crkey: KEY_A });
    expect(c.sqe).toEqual(handSqe(0x15, { 4: 1, 41: 0x03 }));
    expect(c.data).toEqual(Buffer.from(KEY_A_LE));
  });

  it('clear: RRELA 001b, type optional', () => {
    const c = r.reservationRelease({ nsid: 1, action: 'clear', crkey: KEY_B });
    expect(c.sqe).toEqual(handSqe(0x15, { 4: 1, 40: 0x01 }));
    expect(c.data).toEqual(Buffer.from(KEY_B_LE));
  });

  it('release needs the type', () => {
    expect(() => r.reservationRelease({ nsid: 1, action: 'release', crkey: 1n })).toThrow(/type is required/);
  });
});

describe('Reservation Report (0Eh)', () => {
  it('NUMD (0\'s based dwords) in CDW10, EDS in CDW11 bit 0', () => {
    const c = r.reservationReport({ nsid: 1, length: 64, extended: true });
    expect(c.sqe).toEqual(handSqe(0x0e, { 4: 1, 40: 15, 44: 1 }));
    expect(c.readLength).toBe(64);
    expect(c.data).toBeUndefined();
    const s = r.reservationReport({ nsid: 1, length: 4096 });
    expect(s.sqe).toEqual(handSqe(0x0e, { 4: 1, 40: 0xff, 41: 0x03 }));
  });

  it('length must be a positive multiple of 4', () => {
    expect(() => r.reservationReport({ nsid: 1, length: 0 })).toThrow(InvalidArgumentError);
    expect(() => r.reservationReport({ nsid: 1, length: 30 })).toThrow(/multiple of 4/);
  });

  it('decodeReservationReport undoes NUMD and EDS', () => {
    expect(r.decodeReservationReport(15, 1)).toEqual({ length: 64, extended: true });
    expect(r.decodeReservationReport(0xffffffff, 0)).toEqual({ length: 0x4_0000_0000, extended: false });
  });

  it('reservationStatusSize', () => {
    expect(r.reservationStatusSize(0, false)).toBe(24);
    expect(r.reservationStatusSize(2, false)).toBe(72);
    expect(r.reservationStatusSize(0, true)).toBe(64);
    expect(r.reservationStatusSize(2, true)).toBe(192);
  });
});

/** A Reservation Status data structure written by hand at the spec's offsets. */
function handStatus(extended: boolean): Buffer {
  const header = extended ? 64 : 24;
  const entry = extended ? 64 : 24;
  const b = Buffer.alloc(header + 2 * entry);
  b.writeUInt32LE(0x0a0b0c0d, 0); // GEN
  b[4] = 5; // RTYPE: write exclusive - all registrants
  b[5] = 2; // REGCTL low byte
  b[6] = 0; // REGCTL high byte
  b[9] = 1; // PTPLS
  // entry 0: cntlid 0x0102, holds the reservation
  let o = header;
  b[o] = 0x02; b[o + 1] = 0x01; b[o + 2] = 0x01;
  if (extended) {
    KEY_A_LE.forEach((v, i) => (b[o + 8 + i] = v));
    for (let i = 0; i < 16; i++) b[o + 16 + i] = 0xa0 + i;
  } else {
    for (let i = 0; i < 8; i++) b[o + 8 + i] = 0xa0 + i;
    KEY_A_LE.forEach((v, i) => (b[o + 16 + i] = v));
  }
  // entry 1: cntlid 0xffff (not associated), not holding
  o = header + entry;
  b[o] = 0xff; b[o + 1] = 0xff; b[o + 2] = 0x00;
  if (extended) {
    KEY_B_LE.forEach((v, i) => (b[o + 8 + i] = v));
    for (let i = 0; i < 16; i++) b[o + 16 + i] = 0xb0 + i;
  } else {
    for (let i = 0; i < 8; i++) b[o + 8 + i] = 0xb0 + i;
    KEY_B_LE.forEach((v, i) => (b[o + 16 + i] = v));
  }
  return b;
}

const seq = (start: number, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => start + i));

describe('Reservation Status data structure', () => {
  it('parses the standard structure (64-bit host identifiers)', () => {
    const s = r.parseReservationStatus(handStatus(false), false);
    expect(s).toEqual({
      gen: 0x0a0b0c0d,
      rtype: 5,
      type: 'write-exclusive-all-registrants',
      regctl: 2,
      ptpls: true,
      extended: false,
      registrants: [
        { cntlid: 0x0102, rcsts: 1, holdsReservation: true, hostid: seq(0xa0, 8), rkey: KEY_A },
        { cntlid: 0xffff, rcsts: 0, holdsReservation: false, hostid: seq(0xb0, 8), rkey: KEY_B },
      ],
    });
  });

  it('parses the extended structure (64-byte header, RKEY @8, 128-bit HOSTID @16)', () => {
    const s = r.parseReservationStatus(handStatus(true), true);
    expect(s.registrants).toEqual([
      { cntlid: 0x0102, rcsts: 1, holdsReservation: true, hostid: seq(0xa0, 16), rkey: KEY_A },
      { cntlid: 0xffff, rcsts: 0, holdsReservation: false, hostid: seq(0xb0, 16), rkey: KEY_B },
    ]);
    expect(s.extended).toBe(true);
    expect(s.gen).toBe(0x0a0b0c0d);
  });

  it('returns only whole entries that fit, keeping REGCTL as reported', () => {
    const full = handStatus(true);
    const s = r.parseReservationStatus(full.subarray(0, 64 + 64 + 10), true);
    expect(s.regctl).toBe(2);
    expect(s.registrants).toHaveLength(1);
    const h = r.parseReservationStatus(full.subarray(0, 64), true);
    expect(h.registrants).toHaveLength(0);
  });

  it('ignores bytes after REGCTL entries and reports no reservation as null', () => {
    const b = Buffer.alloc(24 + 24 * 3);
    b[5] = 1;
    b[24] = 9;
    const s = r.parseReservationStatus(b, false);
    expect(s.type).toBeNull();
    expect(s.registrants).toHaveLength(1);
    expect(s.ptpls).toBe(false);
  });

  it('rejects a buffer shorter than the header', () => {
    expect(() => r.parseReservationStatus(Buffer.alloc(23), false)).toThrow(ProtocolError);
    expect(() => r.parseReservationStatus(Buffer.alloc(63), true)).toThrow(/at least 64/);
  });

  it('the encoder produces the hand-written bytes', () => {
    const input = (extended: boolean): r.ReservationStatusInput => ({
      gen: 0x0a0b0c0d,
      rtype: 'write-exclusive-all-registrants',
      ptpls: true,
      registrants: [
        { cntlid: 0x0102, holdsReservation: true, hostid: seq(0xa0, extended ? 16 : 8), rkey: KEY_A },
        { cntlid: 0xffff, hostid: seq(0xb0, extended ? 16 : 8), rkey: KEY_B },
      ],
    });
    expect(r.encodeReservationStatus(input(false), false)).toEqual(handStatus(false));
    expect(r.encodeReservationStatus(input(true), true)).toEqual(handStatus(true));
  });

  it('the encoder checks host identifier sizes and keys', () => {
    expect(() => r.encodeReservationStatus({ gen: 0, rtype: 0, registrants: [{ cntlid: 1, hostid: Buffer.alloc(16), rkey: 1n }] }, false)).toThrow(/8 bytes/);
    expect(() => r.encodeReservationStatus({ gen: 0, rtype: null, registrants: [{ cntlid: 1, hostid: Buffer.alloc(8), rkey: 1 as unknown as bigint }] }, false)).toThrow(/rkey/);
    expect(() => r.encodeReservationStatus({ gen: 0, rtype: 9, registrants: [] }, true)).toThrow(/rtype/);
  });

  it('round-trips arbitrary structures', () => {
    const reg = (extended: boolean) => fc.record({
      cntlid: fc.integer({ min: 0, max: 0xffff }),
      holdsReservation: fc.boolean(),
      hostid: fc.uint8Array({ minLength: extended ? 16 : 8, maxLength: extended ? 16 : 8 }).map((a) => Buffer.from(a)),
      rkey: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    });
    for (const extended of [false, true]) {
      fc.assert(fc.property(
        fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 6 }), fc.boolean(), fc.array(reg(extended), { maxLength: 8 }),
        (gen, rtype, ptpls, registrants) => {
          const buf = r.encodeReservationStatus({ gen, rtype, ptpls, registrants }, extended);
          const s = r.parseReservationStatus(buf, extended);
          expect(s.gen).toBe(gen);
          expect(s.rtype).toBe(rtype);
          expect(s.ptpls).toBe(ptpls);
          expect(s.registrants.map(({ cntlid, holdsReservation, hostid, rkey }) => ({ cntlid, holdsReservation, hostid, rkey }))).toEqual(registrants);
        },
      ));
    }
  });
});

describe('command decoders (embedded target side)', () => {
  it('decode Register / Acquire / Release from hand-written CDW10 and data', () => {
    const reg = r.decodeReservationRegister(0xc000000a, Buffer.from([...KEY_A_LE, ...KEY_B_LE]));
    expect(reg).toEqual({ rrega: 2, action: 'replace', iekey: true, cptpl: 3, crkey: KEY_A, nrkey: KEY_B });
    const acq = r.decodeReservationAcquire(0x0401, Buffer.from([...KEY_B_LE, ...KEY_A_LE]));
    expect(acq).toEqual({ racqa: 1, action: 'preempt', iekey: false, rtype: 4, crkey: KEY_B, prkey: KEY_A });
    const rel = r.decodeReservationRelease(0x0609, Buffer.from(KEY_A_LE));
    expect(rel).toEqual({ rrela: 1, action: 'clear', iekey: true, rtype: 6, crkey: KEY_A });
    expect(r.decodeReservationRegister(0x7, Buffer.alloc(16)).action).toBeUndefined();
  });

  it('short data is an error', () => {
    expect(() => r.decodeReservationRegister(0, Buffer.alloc(8))).toThrow(/at least 16/);
    expect(() => r.decodeReservationAcquire(0, null)).toThrow(InvalidArgumentError);
    expect(() => r.decodeReservationRelease(0, Buffer.alloc(4))).toThrow(/at least 8/);
  });

  it('builders and decoders agree', () => {
    fc.assert(fc.property(
      fc.constantFrom<r.ReservationAcquireActionName>('acquire', 'preempt', 'preempt-and-abort'),
      fc.constantFrom(...r.RESERVATION_TYPES),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.boolean(),
      (action, type, crkey, prkey, iekey) => {
        const c = r.reservationAcquire({ nsid: 1, action, type, crkey, prkey, iekey });
        const d = r.decodeReservationAcquire(decodeSqe(c.sqe).cdw10, c.data!);
        expect(d).toEqual({ racqa: r.ReservationAcquireAction[action], action, iekey, rtype: r.ReservationTypeValue[type], crkey, prkey });
      },
    ));
  });
});

describe('Reservation Notification Mask (FID 82h)', () => {
  it('Set Features: opcode 09h, NSID, FID 82h in CDW10, mask bits 1..3 in CDW11', () => {
    const c = r.setReservationNotificationMask(3, { reservationReleased: true });
    expect(c.sqe).toEqual(handSqe(0x09, { 4: 3, 40: 0x82, 44: 0x04 }));
    expect(c.kind).toBe('admin');
    expect(r.setReservationNotificationMask(1).sqe).toEqual(handSqe(0x09, { 4: 1, 40: 0x82 }));
    const all = r.setReservationNotificationMask(0xffffffff, { registrationPreempted: true, reservationReleased: true, reservationPreempted: true });
    expect(all.sqe).toEqual(handSqe(0x09, { 4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff, 40: 0x82, 44: 0x0e }));
  });

  it('Get Features and DW0 decoding', () => {
    expect(r.getReservationNotificationMask(2).sqe).toEqual(handSqe(0x0a, { 4: 2, 40: 0x82 }));
    expect(r.parseReservationNotificationMask(0x0a)).toEqual({ registrationPreempted: true, reservationReleased: false, reservationPreempted: true });
  });
});
