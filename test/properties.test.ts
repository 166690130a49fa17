import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeCap, decodeCc, decodeCsts, decodeVs, encodeCap, encodeCc, encodeCsts, encodeVs, propertySize } from '../src/protocol/properties.js';

describe('CAP', () => {
  it('decodes the CAP of a Linux 6.1 nvmet controller', () => {
    // nvmet_init_cap(): CSS bit 37 (NVM) | bit 43 (I/O command sets) | TO 15 << 24 | MQES NVMET_QUEUE_SIZE - 1 = 1023
    const cap = (1n << 37n) | (1n << 43n) | (15n << 24n) | 1023n;
    expect(cap).toBe(0x0000_0820_0f00_03ffn);
    expect(decodeCap(cap)).toEqual({
      mqes: 1023,
      cqr: false,
      ams: 0,
      to: 15,
      dstrd: 0,
      nssrs: false,
      css: 0x41,
      bps: false,
      cps: 0,
      mpsmin: 0,
      mpsmax: 0,
      pmrs: false,
      cmbs: false,
      nsss: false,
      crms: 0,
      nsses: false,
    });
  });

  it('decodes every field at its bit position', () => {
    const cap =
      0x1234n | // MQES 15:0
      (1n << 16n) | // CQR
      (3n << 17n) | // AMS 18:17
      (0xa0n << 24n) | // TO 31:24
      (0x5n << 32n) | // DSTRD 35:32
      (1n << 36n) | // NSSRS
      (0x81n << 37n) | // CSS 44:37
      (1n << 45n) | // BPS
      (2n << 46n) | // CPS 47:46
      (0x3n << 48n) | // MPSMIN 51:48
      (0x9n << 52n) | // MPSMAX 55:52
      (1n << 56n) | // PMRS
      (1n << 57n) | // CMBS
      (1n << 58n) | // NSSS
      (3n << 59n) | // CRMS 60:59
      (1n << 61n); // NSSES
    expect(decodeCap(cap)).toEqual({
      mqes: 0x1234, cqr: true, ams: 3, to: 0xa0, dstrd: 5, nssrs: true, css: 0x81, bps: true, cps: 2,
      mpsmin: 3, mpsmax: 9, pmrs: true, cmbs: true, nsss: true, crms: 3, nsses: true,
    });
    expect(encodeCap(decodeCap(cap))).toBe(cap);
  });

  it('round trips every pattern of the defined bits (reserved 23:19 and 63:62 excluded)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (v) => {
        const masked = v & 0x3fff_ffff_ff07_ffffn;
        expect(encodeCap(decodeCap(masked))).toBe(masked);
      }),
    );
  });
});

describe('VS', () => {
  it('decodes 1.3.0 (nvmet default) and 2.0.1', () => {
    expect(decodeVs(0x00010300)).toEqual({ major: 1, minor: 3, tertiary: 0 });
    expect(decodeVs(0x00020001)).toEqual({ major: 2, minor: 0, tertiary: 1 });
    expect(encodeVs({ major: 1, minor: 4, tertiary: 0 })).toBe(0x00010400);
  });
});

describe('CC', () => {
  it('encodes what a host writes to enable the controller', () => {
    // EN=1, CSS=0 (NVM), MPS=0 (4 KiB), AMS=0, SHN=0, IOSQES=6 (64 bytes), IOCQES=4 (16 bytes)
    expect(encodeCc({ en: true, css: 0, mps: 0, ams: 0, shn: 0, iosqes: 6, iocqes: 4 })).toBe(0x00460001);
    // CSS=6 (all supported I/O command sets) as Linux sets it when CAP.CSS bit 6 is set
    expect(encodeCc({ en: true, css: 6, mps: 0, ams: 0, shn: 0, iosqes: 6, iocqes: 4 })).toBe(0x00460061);
    // normal shutdown notification
    expect(encodeCc({ en: true, css: 0, mps: 0, ams: 0, shn: 1, iosqes: 6, iocqes: 4 })).toBe(0x00464001);
  });

  it('decodes every field at its bit position', () => {
    const v = 1 | (5 << 4) | (0xa << 7) | (3 << 11) | (2 << 14) | (7 << 16) | (9 << 20) | (1 << 24);
    expect(decodeCc(v)).toEqual({ en: true, css: 5, mps: 0xa, ams: 3, shn: 2, iosqes: 7, iocqes: 9, crime: true });
    expect(encodeCc(decodeCc(v))).toBe(v);
  });

  it('rejects out-of-range fields', () => {
    expect(() => encodeCc({ en: true, css: 8, mps: 0, ams: 0, shn: 0, iosqes: 6, iocqes: 4 })).toThrow(/css/);
    expect(() => encodeCc({ en: true, css: 0, mps: 0, ams: 0, shn: 4, iosqes: 6, iocqes: 4 })).toThrow(/shn/);
  });
});

describe('CSTS', () => {
  it('decodes ready, fatal, shutdown states', () => {
    expect(decodeCsts(0x1)).toEqual({ rdy: true, cfs: false, shst: 0, nssro: false, pp: false, st: false });
    expect(decodeCsts(0x2)).toMatchObject({ rdy: false, cfs: true });
    expect(decodeCsts(0x9)).toMatchObject({ rdy: true, shst: 2 }); // shutdown complete
    expect(decodeCsts(0x4)).toMatchObject({ shst: 1 }); // shutdown occurring
    expect(decodeCsts(0x70)).toEqual({ rdy: false, cfs: false, shst: 0, nssro: true, pp: true, st: true });
    expect(encodeCsts({ rdy: true, cfs: false, shst: 2, nssro: false, pp: false, st: false })).toBe(0x9);
  });
});

describe('propertySize', () => {
  it('CAP, ASQ and ACQ are 8 bytes', () => {
    expect(propertySize(0x00)).toBe(8);
    expect(propertySize(0x28)).toBe(8);
    expect(propertySize(0x08)).toBe(4);
    expect(propertySize(0x14)).toBe(4);
    expect(propertySize(0x1c)).toBe(4);
  });
});
