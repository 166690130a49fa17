import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c, crc32cImplementation, crc32cJs, setCrc32cImplementation } from '../src/protocol/crc32c.js';
import { refCrc32c } from './helpers/crc32c-ref.js';

describe('crc32c', () => {
  // RFC 3720 (iSCSI) appendix B.4 CRC examples; the RFC prints the CRC bytes as they appear on the
  // wire (little-endian), e.g. "aa 36 91 8a" for 32 bytes of zeros.
  it('matches the RFC 3720 B.4 vectors', () => {
    expect(crc32c(Buffer.alloc(32, 0))).toBe(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
    const asc = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) asc[i] = i;
    expect(crc32c(asc)).toBe(0x46dd794e);
    const desc = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) desc[i] = 31 - i;
    expect(crc32c(desc)).toBe(0x113fdb5c);
  });

  it('matches the RFC 3720 B.4 iSCSI Read command PDU vector', () => {
    const pdu = Buffer.from(
      [
        '01c00000', '00000000', '00000000', '00000000', '14000000', '00000400', '00000014', '00000018',
        '28000000', '00000000', '02000000', '00000000',
      ].join(''),
      'hex',
    );
    expect(pdu.length).toBe(48);
    expect(crc32c(pdu)).toBe(0xd9963a56);
  });

  it("gives the check value 0xE3069283 for '123456789'", () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
  });

  it('handles empty input and returns unsigned values', () => {
    expect(crc32c(Buffer.alloc(0))).toBe(0);
    expect(crc32c(Buffer.alloc(0), 0xdeadbeef)).toBe(0xdeadbeef);
    expect(crc32c(Buffer.alloc(32, 0))).toBeGreaterThan(0x7fffffff);
  });

  it('continues a previous result', () => {
    const data = Buffer.from('The quick brown fox jumps over the lazy dog, twice over for good measure.');
    for (let cut = 0; cut <= data.length; cut++) {
      expect(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut)))).toBe(crc32c(data));
    }
  });

  it('matches the bitwise reference on every length and alignment around the fast-path thresholds', () => {
    const base = Buffer.alloc(400);
    for (let i = 0; i < base.length; i++) base[i] = (i * 2654435761) >>> 24;
    for (let start = 0; start < 8; start++) {
      for (let len = 0; len <= 200; len++) {
        const view = base.subarray(start, start + len);
        expect(crc32c(view)).toBe(refCrc32c(view));
      }
    }
  });

  it('works on a Uint8Array view with an odd byteOffset into a large ArrayBuffer', () => {
    const ab = new ArrayBuffer(1 << 16);
    const all = new Uint8Array(ab);
    for (let i = 0; i < all.length; i++) all[i] = (i * 31 + 7) & 0xff;
    const view = new Uint8Array(ab, 3, 60001);
    expect(crc32c(view)).toBe(refCrc32c(view));
  });

  it('property: equals the reference and continuation equals concatenation', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), fc.nat(7), (a, b, shift) => {
        // Copy into a buffer at an arbitrary offset to vary alignment.
        const joined = new Uint8Array(shift + a.length + b.length);
        joined.set(a, shift);
        joined.set(b, shift + a.length);
        const whole = joined.subarray(shift);
        expect(crc32c(whole)).toBe(refCrc32c(whole));
        expect(crc32c(b, crc32c(a))).toBe(crc32c(whole));
        expect(crc32c(b, crc32c(a))).toBe(refCrc32c(b, refCrc32c(a)));
      }),
    );
  });
});

describe('crc32c implementations', () => {
  it('the native package (when installed) and the pure code agree at every length around the switch-over', () => {
    const data = Buffer.alloc(70000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 17) & 0xff;
    const lengths = [0, 1, 23, 24, 127, 128, 255, 256, 257, 4095, 4096, 65536, 70000];
    const results: Record<string, number[]> = {};
    for (const which of ['native', 'js'] as const) {
      setCrc32cImplementation(which);
      results[which] = lengths.flatMap((n) => [crc32c(data.subarray(0, n)), crc32c(data.subarray(n), crc32c(data.subarray(0, n)))]);
    }
    setCrc32cImplementation('native');
    const expected = lengths.flatMap((n) => [refCrc32c(data.subarray(0, n)), refCrc32c(data)]);
    expect(results.js).toEqual(expected);
    expect(results.native).toEqual(expected);
    expect(crc32cJs(data)).toBe(refCrc32c(data));
  });

  it('uses @node-rs/crc32 when it is installed, and the choice can be forced to the pure code', () => {
    // The dev install has the optional package: the accelerated path must be the one in use.
    expect(crc32cImplementation()).toBe('native');
    expect(setCrc32cImplementation('js')).toBe('js');
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(setCrc32cImplementation('native')).toBe('native');
  });
});
