/**
 * PduReader tests: streaming (every split offset, byte at a time, random chunkings), zero-copy and
 * copy-once buffering, every header validation error with its FES/FEI, and the poisoned state.
 * Wire bytes are written by hand at the spec's offsets.
 */
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DigestError, InvalidArgumentError, ProtocolError } from '../src/errors.js';
import { PduType, type Pdu } from '../src/protocol/pdu.js';
import { PduReader } from '../src/protocol/reader.js';
import type { PduReaderOptions } from '../src/protocol/reader.js';
import { refCrc32c } from './helpers/crc32c-ref.js';

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

interface Build {
  type: number;
  flags?: number;
  hlen: number;
  pdo?: number;
  plen?: number;
  /** PSH fields: [offset, size (1|2|4), value]. */
  fields?: [number, 1 | 2 | 4, number][];
  /** Raw bytes for the PSH from byte 8 (SQE / CQE). */
  psh?: Buffer;
  hd?: boolean;
  data?: Buffer;
  dd?: boolean;
  /** Data offset when there is data (default hlen + hd). */
  dataAt?: number;
  /** Corrupt the header or data digest. */
  badHdgst?: boolean;
  badDdgst?: boolean;
}

/** Build a PDU byte by byte from spec offsets. PLEN and PDO default to the correct values. */
function build(p: Build): Buffer {
  const hdEnd = p.hlen + (p.hd ? 4 : 0);
  const dataAt = p.data ? (p.dataAt ?? hdEnd) : hdEnd;
  const len = p.data ? dataAt + p.data.length + (p.dd ? 4 : 0) : hdEnd;
  const b = Buffer.alloc(Math.max(len, 8 + (p.psh?.length ?? 0)));
  b[0] = p.type;
  b[1] = p.flags ?? ((p.hd ? 1 : 0) | (p.dd ? 2 : 0));
  b[2] = p.hlen;
  b[3] = p.pdo ?? (p.data ? dataAt : 0);
  b.writeUInt32LE(p.plen ?? len, 4);
  if (p.psh) p.psh.copy(b, 8);
  for (const [off, size, v] of p.fields ?? []) {
    if (size === 1) b[off] = v;
    else if (size === 2) b.writeUInt16LE(v, off);
    else b.writeUInt32LE(v, off);
  }
  if (p.hd) b.writeUInt32LE((refCrc32c(b.subarray(0, p.hlen)) ^ (p.badHdgst ? 1 : 0)) >>> 0, p.hlen);
  if (p.data) {
    p.data.copy(b, dataAt);
    if (p.dd) b.writeUInt32LE((refCrc32c(p.data) ^ (p.badDdgst ? 0x100 : 0)) >>> 0, dataAt + p.data.length);
  }
  return b;
}

const cqe = (seed: number): Buffer => pattern(16, seed);
const sqe = (seed: number): Buffer => pattern(64, seed);

function capsuleResp(seed: number, hd = false): Buffer {
  return build({ type: 5, hlen: 24, psh: cqe(seed), hd });
}
function r2t(cccid: number, hd = false): Buffer {
  return build({ type: 9, hlen: 24, hd, fields: [[8, 2, cccid], [10, 2, 5], [12, 4, 0], [16, 4, 8192]] });
}
function c2hData(cccid: number, data: Buffer, o: { hd?: boolean; dd?: boolean; dataAt?: number; flags?: number; badDdgst?: boolean } = {}): Buffer {
  const hd = o.hd ?? false;
  const dd = o.dd ?? false;
  const flags = o.flags ?? (0x04 | (hd ? 1 : 0) | (dd ? 2 : 0));
  return build({ type: 7, hlen: 24, flags, hd, dd, data, dataAt: o.dataAt, badDdgst: o.badDdgst, fields: [[8, 2, cccid], [12, 4, 0], [16, 4, data.length]] });
}
function icResp(o: { pfv?: number; cpda?: number; maxh2cdata?: number } = {}): Buffer {
  return build({ type: 1, hlen: 128, fields: [[8, 2, o.pfv ?? 0], [10, 1, o.cpda ?? 0], [11, 1, 0], [12, 4, o.maxh2cdata ?? 131072]] });
}
function icReq(o: { pfv?: number; hpda?: number } = {}): Buffer {
  return build({ type: 0, hlen: 128, fields: [[8, 2, o.pfv ?? 0], [10, 1, o.hpda ?? 0], [11, 1, 3], [12, 4, 0]] });
}
function capsuleCmd(seed: number, data: Buffer | null, o: { hd?: boolean; dd?: boolean; dataAt?: number } = {}): Buffer {
  return build({ type: 4, hlen: 72, psh: sqe(seed), hd: o.hd, dd: data ? o.dd : false, data: data ?? undefined, dataAt: o.dataAt });
}
function h2cData(cccid: number, data: Buffer, o: { hd?: boolean; dd?: boolean; last?: boolean } = {}): Buffer {
  const flags = (o.last === false ? 0 : 0x04) | (o.hd ? 1 : 0) | (o.dd ? 2 : 0);
  return build({ type: 6, hlen: 24, flags, hd: o.hd, dd: o.dd, data, fields: [[8, 2, cccid], [10, 2, 1], [12, 4, 0], [16, 4, data.length]] });
}
function termReq(type: 2 | 3, fes: number, fei: number, data: Buffer): Buffer {
  return build({ type, hlen: 24, plen: 24 + data.length, fields: [[8, 2, fes], [10, 4, fei]], data });
}

/** Expect a ProtocolError with the given FES/FEI (and not a DigestError unless fes 3). */
function expectProtocolError(fn: () => unknown, fes: number, fei: number): ProtocolError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ProtocolError);
  const e = caught as ProtocolError;
  expect({ fes: e.fes, fei: e.fei, message: e.message }).toEqual({ fes, fei, message: e.message });
  expect(e.code).toBe('NVMEOF_ERR_PROTOCOL');
  return e;
}

function feed(opts: PduReaderOptions, chunks: Buffer[]): Pdu[] {
  const r = new PduReader(opts);
  const out: Pdu[] = [];
  for (const c of chunks) out.push(...r.push(c));
  expect(r.buffered).toBe(0);
  return out;
}

/** PDUs with their Buffer fields as hex strings: cheap to compare deeply. */
function norm(pdus: Pdu[]): Record<string, unknown>[] {
  return pdus.map((p) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Buffer.isBuffer(v) ? `hex:${v.toString('hex')}` : v])));
}

// A host-bound stream mixing every host-side PDU type, with and without data and padding.
function hostStream(hd: boolean, dd: boolean): Buffer {
  return Buffer.concat([
    capsuleResp(1, hd),
    c2hData(1, pattern(300, 3), { hd, dd }),
    r2t(2, hd),
    c2hData(3, pattern(5, 4), { hd, dd, dataAt: 32 }), // padded as for HPDA 3 (16-byte alignment)
    termReq(3, 1, 4, pattern(24, 7)),
    capsuleResp(9, hd),
    c2hData(4, pattern(64, 5), { hd, dd, flags: 0x0c | (hd ? 1 : 0) | (dd ? 2 : 0) }),
  ]);
}

function controllerStream(hd: boolean, dd: boolean): Buffer {
  return Buffer.concat([
    capsuleCmd(1, null, { hd }),
    capsuleCmd(2, pattern(200, 1), { hd, dd }),
    h2cData(7, pattern(333, 2), { hd, dd, last: false }),
    h2cData(7, pattern(17, 3), { hd, dd }),
    termReq(2, 2, 0, pattern(72, 1)),
    capsuleCmd(3, pattern(8, 9), { hd, dd, dataAt: 80 }), // padded as for CPDA 3
  ]);
}

const streams: [string, PduReaderOptions, Buffer, number][] = [
  ['host, no digests', { role: 'host' }, hostStream(false, false), 7],
  ['host, both digests', { role: 'host', hdgst: true, ddgst: true }, hostStream(true, true), 7],
  ['host, header digest only', { role: 'host', hdgst: true }, hostStream(true, false), 7],
  ['controller, no digests', { role: 'controller' }, controllerStream(false, false), 6],
  ['controller, both digests', { role: 'controller', hdgst: true, ddgst: true }, controllerStream(true, true), 6],
];

describe('PduReader streaming', () => {
  for (const [name, opts, wire, count] of streams) {
    describe(name, () => {
      const whole = norm(feed(opts, [wire]));

      it('decodes the whole stream in one chunk', () => {
        expect(whole).toHaveLength(count);
        for (const p of whole) if ('dataDigestError' in p) expect(p['dataDigestError']).toBe(false);
      });

      it('gives identical PDUs when split in two at every offset', () => {
        for (let i = 0; i <= wire.length; i++) {
          expect(norm(feed(opts, [wire.subarray(0, i), wire.subarray(i)]))).toEqual(whole);
        }
      });

      it('gives identical PDUs when fed one byte at a time', () => {
        const chunks: Buffer[] = [];
        for (let i = 0; i < wire.length; i++) chunks.push(wire.subarray(i, i + 1));
        expect(norm(feed(opts, chunks))).toEqual(whole);
      });

      it('gives identical PDUs for random chunkings (copied chunks)', () => {
        fc.assert(
          fc.property(fc.array(fc.integer({ min: 0, max: wire.length }), { maxLength: 40 }), (cuts) => {
            const points = [...new Set(cuts)].sort((a, b) => a - b);
            const chunks: Buffer[] = [];
            let prev = 0;
            for (const p of [...points, wire.length]) {
              chunks.push(Buffer.from(wire.subarray(prev, p))); // fresh memory, like a socket
              prev = p;
            }
            expect(norm(feed(opts, chunks))).toEqual(whole);
          }),
        );
      });
    });
  }

  it('returns nothing for an empty chunk and tracks buffered bytes', () => {
    const r = new PduReader({ role: 'host' });
    const pdu = capsuleResp(1);
    expect(r.push(Buffer.alloc(0))).toEqual([]);
    expect(r.push(pdu.subarray(0, 3))).toEqual([]);
    expect(r.buffered).toBe(3);
    expect(r.push(pdu.subarray(3, 20))).toEqual([]);
    expect(r.buffered).toBe(20);
    expect(r.push(pdu.subarray(20))).toHaveLength(1);
    expect(r.buffered).toBe(0);
  });
});

describe('PduReader buffering', () => {
  it('hands out zero-copy views when a PDU lies within one chunk', () => {
    const data = pattern(4000, 1);
    const chunk = Buffer.concat([capsuleResp(5, true), c2hData(1, data, { hd: true, dd: true, dataAt: 32 })]);
    const r = new PduReader({ role: 'host', hdgst: true, ddgst: true });
    const [resp, c2h] = r.push(chunk) as [Pdu & { cqe: Buffer }, Pdu & { data: Buffer }];
    expect(resp.cqe.buffer).toBe(chunk.buffer);
    expect(resp.cqe.byteOffset).toBe(chunk.byteOffset + 8);
    expect(c2h.data.buffer).toBe(chunk.buffer);
    expect(c2h.data.byteOffset).toBe(chunk.byteOffset + 28 + 32);
    expect(c2h.data.equals(data)).toBe(true);
  });

  it('copies a spanning PDU once into a PLEN-sized buffer', () => {
    const data = pattern(100_000, 2); // larger than the Buffer pool, so the assembly buffer is its own ArrayBuffer
    const wire = c2hData(1, data, { hd: true, dd: true });
    const r = new PduReader({ role: 'host', hdgst: true, ddgst: true });
    const chunks = [wire.subarray(0, 5), wire.subarray(5, 30000), wire.subarray(30000, 65536), wire.subarray(65536)].map((c) => Buffer.from(c));
    const out: Pdu[] = [];
    for (const c of chunks) out.push(...r.push(c));
    expect(out).toHaveLength(1);
    const pdu = out[0] as Pdu & { data: Buffer };
    expect(pdu.data.equals(data)).toBe(true);
    expect(pdu.data.buffer.byteLength).toBe(wire.length);
    expect(pdu.data.byteOffset).toBe(28);
    for (const c of chunks) expect(pdu.data.buffer).not.toBe(c.buffer);
  });

  it('decodes PDUs that follow a spanning PDU in the same chunk in place', () => {
    const first = capsuleResp(1);
    const second = c2hData(2, pattern(50, 1));
    const r = new PduReader({ role: 'host' });
    expect(r.push(first.subarray(0, 10))).toEqual([]);
    const chunk = Buffer.concat([first.subarray(10), second]);
    const out = r.push(chunk) as [Pdu, Pdu & { data: Buffer }];
    expect(out).toHaveLength(2);
    expect(out[1].data.buffer).toBe(chunk.buffer);
  });
});

describe('PduReader digests', () => {
  it('reports a data digest mismatch on the PDU without throwing, and keeps going', () => {
    const r = new PduReader({ role: 'host', ddgst: true });
    const out = r.push(Buffer.concat([c2hData(1, pattern(40, 1), { dd: true, badDdgst: true }), capsuleResp(2)]));
    expect(out).toHaveLength(2);
    expect(out[0]).toMatchObject({ type: 7, cccid: 1, dataDigestError: true });
    expect(out[1]).toMatchObject({ type: 5 });
    const ctl = new PduReader({ role: 'controller', hdgst: true, ddgst: true });
    const bad = build({ type: 4, hlen: 72, psh: sqe(1), hd: true, dd: true, data: pattern(9, 9), badDdgst: true });
    expect(ctl.push(bad)[0]).toMatchObject({ type: 4, dataDigestError: true });
  });

  it('throws a DigestError (FES 3) for a header digest mismatch', () => {
    const r = new PduReader({ role: 'host', hdgst: true });
    const bad = build({ type: 5, hlen: 24, psh: cqe(1), hd: true, badHdgst: true });
    let caught: unknown;
    try {
      r.push(bad);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(DigestError);
    expect(caught).toBeInstanceOf(ProtocolError);
    expect((caught as DigestError).kind).toBe('header');
    expect((caught as DigestError).fes).toBe(3);
    expect((caught as DigestError).code).toBe('NVMEOF_ERR_DIGEST');
  });

  it('switches digests with setDigests between PDUs', () => {
    const r = new PduReader({ role: 'host' });
    expect(r.push(icResp())).toHaveLength(1);
    r.setDigests(true, true);
    const out = r.push(Buffer.concat([capsuleResp(1, true), c2hData(1, pattern(10, 1), { hd: true, dd: true })]));
    expect(out.map((p) => p.type)).toEqual([5, 7]);
  });
});

describe('PduReader header validation (FES/FEI)', () => {
  const host = (b: Buffer, o: Partial<PduReaderOptions> = {}) => () => new PduReader({ role: 'host', ...o }).feed(b, () => {});
  const ctl = (b: Buffer, o: Partial<PduReaderOptions> = {}) => () => new PduReader({ role: 'controller', ...o }).feed(b, () => {});

  it('PDU-Type: unknown types are FES 1, FEI 0', () => {
    for (const t of [0x08, 0x0a, 0x10, 0x7f, 0xff]) {
      expectProtocolError(host(build({ type: t, hlen: 24 })), 1, 0);
      expectProtocolError(ctl(build({ type: t, hlen: 24 })), 1, 0);
    }
  });

  it('PDU-Type: a type from the wrong direction is FES 1, FEI 0', () => {
    expectProtocolError(host(capsuleCmd(1, null)), 1, 0);
    expectProtocolError(host(h2cData(1, pattern(4, 1))), 1, 0);
    expectProtocolError(host(icReq()), 1, 0);
    expectProtocolError(host(termReq(2, 1, 0, Buffer.alloc(0))), 1, 0);
    expectProtocolError(ctl(capsuleResp(1)), 1, 0);
    expectProtocolError(ctl(r2t(1)), 1, 0);
    expectProtocolError(ctl(c2hData(1, pattern(4, 1))), 1, 0);
    expectProtocolError(ctl(icResp()), 1, 0);
    expectProtocolError(ctl(termReq(3, 1, 0, Buffer.alloc(0))), 1, 0);
  });

  it('FLAGS: bits not defined for the type are FES 1, FEI 1', () => {
    expectProtocolError(host(build({ type: 5, hlen: 24, flags: 0x04 })), 1, 1); // LAST_PDU on CapsuleResp
    expectProtocolError(host(build({ type: 9, hlen: 24, flags: 0x10 })), 1, 1);
    expectProtocolError(host(build({ type: 1, hlen: 128, flags: 0x01, fields: [[12, 4, 4096]] })), 1, 1); // ICResp has no digests
    expectProtocolError(host(build({ type: 3, hlen: 24, flags: 0x02 })), 1, 1);
    expectProtocolError(ctl(build({ type: 4, hlen: 72, flags: 0x04 })), 1, 1); // LAST_PDU on CapsuleCmd
    expectProtocolError(ctl(build({ type: 6, hlen: 24, flags: 0x08, data: pattern(4, 1), fields: [[16, 4, 4]] })), 1, 1); // SUCCESS on H2CData
  });

  it('FLAGS: HDGSTF/DDGSTF must match the negotiated digests (FEI 1)', () => {
    // HDGSTF set but header digests not negotiated
    expectProtocolError(host(build({ type: 5, hlen: 24, flags: 0x01, plen: 24 })), 1, 1);
    // HDGSTF clear while negotiated
    expectProtocolError(host(capsuleResp(1), { hdgst: true }), 1, 1);
    // DDGSTF clear on a data PDU while data digests negotiated
    expectProtocolError(host(c2hData(1, pattern(8, 1)), { ddgst: true }), 1, 1);
    // DDGSTF set but data digests not negotiated
    expectProtocolError(host(c2hData(1, pattern(8, 1), { dd: true })), 1, 1);
    // DDGSTF on a PDU without data
    expectProtocolError(host(build({ type: 5, hlen: 24, flags: 0x02 }), { ddgst: true }), 1, 1);
    expectProtocolError(ctl(build({ type: 4, hlen: 72, flags: 0x02 }), { ddgst: true }), 1, 1);
  });

  it('FLAGS: C2HData with SUCCESS but not LAST_PDU is FES 1, FEI 1', () => {
    expectProtocolError(host(c2hData(1, pattern(8, 1), { flags: 0x08 })), 1, 1);
  });

  it('HLEN: wrong header length is FES 1, FEI 2', () => {
    expectProtocolError(host(build({ type: 5, hlen: 28 })), 1, 2);
    expectProtocolError(host(build({ type: 7, hlen: 0, plen: 24 })), 1, 2);
    expectProtocolError(host(build({ type: 1, hlen: 24, plen: 128 })), 1, 2);
    expectProtocolError(ctl(build({ type: 4, hlen: 64 })), 1, 2);
    expectProtocolError(ctl(build({ type: 2, hlen: 8, plen: 24 })), 1, 2);
  });

  it('PDO: out of range or non-zero without data is FES 1, FEI 3', () => {
    const d = pattern(16, 1);
    // PDO inside the header
    expectProtocolError(host(build({ type: 7, hlen: 24, flags: 0x04, data: d, pdo: 8, fields: [[16, 4, 16]] })), 1, 3);
    // PDO inside the header digest
    expectProtocolError(host(build({ type: 7, hlen: 24, flags: 0x05, hd: true, data: d, pdo: 24, fields: [[16, 4, 16]] }), { hdgst: true }), 1, 3);
    // PDO beyond PLEN
    expectProtocolError(host(build({ type: 7, hlen: 24, flags: 0x04, pdo: 200, plen: 40, data: d, fields: [[16, 4, 16]] })), 1, 3);
    // PDO on PDUs that never carry data
    expectProtocolError(host(build({ type: 5, hlen: 24, pdo: 24 })), 1, 3);
    expectProtocolError(host(build({ type: 9, hlen: 24, pdo: 4 })), 1, 3);
    expectProtocolError(host(build({ type: 1, hlen: 128, pdo: 128, fields: [[12, 4, 4096]] })), 1, 3);
    // CapsuleCmd without data but a stray PDO
    expectProtocolError(ctl(build({ type: 4, hlen: 72, pdo: 16 })), 1, 3);
  });

  it('PLEN: wrong length for the type is FES 1, FEI 4', () => {
    expectProtocolError(host(build({ type: 5, hlen: 24, plen: 25 })), 1, 4);
    expectProtocolError(host(build({ type: 5, hlen: 24, plen: 28 })), 1, 4); // room for an HDGST not negotiated
    expectProtocolError(host(build({ type: 9, hlen: 24, plen: 23 })), 1, 4);
    expectProtocolError(host(build({ type: 1, hlen: 128, plen: 132 })), 1, 4);
    expectProtocolError(host(build({ type: 3, hlen: 24, plen: 153 })), 1, 4);
    expectProtocolError(host(build({ type: 3, hlen: 24, plen: 20 })), 1, 4);
    expectProtocolError(ctl(build({ type: 0, hlen: 128, plen: 127 })), 1, 4);
    expectProtocolError(ctl(build({ type: 4, hlen: 72, plen: 71 })), 1, 4);
    // Data digest negotiated, PLEN leaves no byte of data after PDO + DDGST
    expectProtocolError(host(build({ type: 7, hlen: 24, flags: 0x06, pdo: 24, plen: 28 }), { ddgst: true }), 1, 4);
  });

  it('checks fields in wire order: the lowest offending field is reported', () => {
    // bad flags + bad hlen + bad plen -> flags
    expectProtocolError(host(build({ type: 5, hlen: 28, flags: 0x10, plen: 99 })), 1, 1);
    // bad hlen + bad pdo + bad plen -> hlen
    expectProtocolError(host(build({ type: 5, hlen: 28, pdo: 4, plen: 99 })), 1, 2);
    // bad pdo + bad plen -> pdo
    expectProtocolError(host(build({ type: 9, hlen: 24, pdo: 4, plen: 99 })), 1, 3);
    // wrong direction beats everything
    expectProtocolError(host(build({ type: 4, hlen: 1, flags: 0xff, plen: 1 })), 1, 0);
  });

  it('rejects a huge PLEN from the 8-byte common header alone, before buffering', () => {
    const ch = Buffer.from([0x07, 0x04, 24, 24, 0xff, 0xff, 0xff, 0xff]);
    const r = new PduReader({ role: 'host' });
    expectProtocolError(() => r.push(ch), 1, 4); // host role: PLEN is the invalid field
    expect(r.buffered).toBeLessThanOrEqual(8);
    // also when the common header arrives in pieces
    const r2 = new PduReader({ role: 'host' });
    expect(r2.push(ch.subarray(0, 5))).toEqual([]);
    expectProtocolError(() => r2.push(ch.subarray(5)), 1, 4);
    // controller role: Data Transfer Limit Exceeded (FES 5)
    const h2c = Buffer.from([0x06, 0x04, 24, 24, 0xff, 0xff, 0xff, 0xff]);
    expectProtocolError(() => new PduReader({ role: 'controller' }).push(h2c), 5, 0);
  });

  it('enforces maxDataLength, setMaxDataLength and maxInCapsuleData', () => {
    const data = pattern(2000, 1);
    expectProtocolError(host(c2hData(1, data), { maxDataLength: 1999 }), 1, 4);
    expect(new PduReader({ role: 'host', maxDataLength: 2000 }).push(c2hData(1, data))).toHaveLength(1);
    const r = new PduReader({ role: 'controller', maxDataLength: 8192 });
    r.setMaxDataLength(1024);
    expectProtocolError(() => r.push(h2cData(1, data)), 5, 0);
    expectProtocolError(ctl(capsuleCmd(1, pattern(9000, 1))), 5, 0); // default in-capsule limit 8192
    expect(new PduReader({ role: 'controller', maxInCapsuleData: 16384 }).push(capsuleCmd(1, pattern(9000, 1)))).toHaveLength(1);
    // the limit is on the data, not on PLEN: header, pad and digests do not count
    expect(new PduReader({ role: 'host', hdgst: true, ddgst: true, maxDataLength: 2000 }).push(c2hData(1, data, { hd: true, dd: true, dataAt: 64 }))).toHaveLength(1);
  });

  it('DATAL must equal PLEN - PDO - DDGST: FES 1, FEI 16', () => {
    const d = pattern(20, 1);
    expectProtocolError(host(build({ type: 7, hlen: 24, flags: 0x04, data: d, fields: [[16, 4, 21]] })), 1, 16);
    expectProtocolError(host(build({ type: 7, hlen: 24, flags: 0x06, dd: true, data: d, fields: [[16, 4, 24]] }), { ddgst: true }), 1, 16);
    expectProtocolError(ctl(build({ type: 6, hlen: 24, flags: 0x04, data: d, fields: [[16, 4, 19]] })), 1, 16);
  });

  it('ICResp / ICReq fields', () => {
    expectProtocolError(host(icResp({ pfv: 1 })), 6, 8);
    expectProtocolError(host(icResp({ cpda: 32 })), 1, 10);
    expectProtocolError(host(icResp({ maxh2cdata: 4095 })), 1, 12);
    expectProtocolError(host(icResp({ maxh2cdata: 8194 })), 1, 12);
    expect(new PduReader({ role: 'host' }).push(icResp({ cpda: 31, maxh2cdata: 4096 }))).toHaveLength(1);
    expectProtocolError(ctl(icReq({ pfv: 2 })), 6, 8);
    expectProtocolError(ctl(icReq({ hpda: 32 })), 1, 10);
  });

  it('a TermReq ignores PDO (its data always follows the 24-byte header)', () => {
    const b = termReq(3, 1, 2, pattern(8, 1));
    b[3] = 24;
    expect(new PduReader({ role: 'host' }).push(b)).toEqual([{ type: 3, fes: 1, fei: 2, data: pattern(8, 1) }]);
  });

  it('expectIc: PDU sequence errors (FES 2) before and after initialization', () => {
    expectProtocolError(host(capsuleResp(1), { expectIc: true }), 2, 0);
    expectProtocolError(host(Buffer.concat([icResp(), icResp()]), { expectIc: true }), 2, 0);
    expectProtocolError(ctl(Buffer.concat([icReq(), icReq()]), { expectIc: true }), 2, 0);
    expect(new PduReader({ role: 'host', expectIc: true }).push(Buffer.concat([icResp(), capsuleResp(1)]))).toHaveLength(2);
    expect(new PduReader({ role: 'host', expectIc: true }).push(termReq(3, 2, 0, Buffer.alloc(0)))).toHaveLength(1);
    // without expectIc, IC PDUs are returned whenever they come
    expect(new PduReader({ role: 'host' }).push(Buffer.concat([capsuleResp(1), icResp()]))).toHaveLength(2);
  });
});

describe('PduReader poisoned state', () => {
  it('rethrows the same error on every later push', () => {
    const r = new PduReader({ role: 'host' });
    const good = capsuleResp(1);
    // one good PDU, then a bad one in the same chunk: the good PDU is returned, the reader is failed
    const got = r.push(Buffer.concat([good, build({ type: 5, hlen: 24, plen: 30 })]));
    expect(got).toHaveLength(1);
    expect(got[0]!.type).toBe(PduType.CapsuleResp);
    const first = r.error;
    expect(first).toBeInstanceOf(ProtocolError);
    for (let i = 0; i < 3; i++) {
      let again: unknown;
      try {
        r.push(good);
      } catch (e) {
        again = e;
      }
      expect(again).toBe(first);
    }
    let onEmpty: unknown;
    try {
      r.push(Buffer.alloc(0));
    } catch (e) {
      onEmpty = e;
    }
    expect(onEmpty).toBe(first);
  });

  it('keeps a copy of the offending header for the TermReq', () => {
    const r = new PduReader({ role: 'host' });
    expect(r.errorHeader).toBeNull();
    const bad = build({ type: 5, hlen: 24, psh: cqe(3), plen: 30 });
    const chunk = Buffer.concat([capsuleResp(1), bad]);
    const seen: Pdu[] = [];
    expect(() => r.feed(chunk, (p) => seen.push(p))).toThrow(ProtocolError);
    expect(seen.map((p) => p.type)).toEqual([PduType.CapsuleResp]); // delivered before the error
    expect(r.errorHeader).toEqual(bad.subarray(0, 24));
    chunk.fill(0); // a copy, not a view of the chunk
    expect(r.errorHeader).toEqual(bad.subarray(0, 24));

    // only the common header when the error is found before the rest arrives
    const r2 = new PduReader({ role: 'host' });
    const ch = Buffer.from([0x07, 0x04, 24, 24, 0xff, 0xff, 0xff, 0xff]);
    r2.push(ch.subarray(0, 2));
    expect(() => r2.push(ch.subarray(2))).toThrow(ProtocolError);
    expect(r2.errorHeader).toEqual(ch);

    // a header digest error reports the full header
    const r3 = new PduReader({ role: 'controller', hdgst: true });
    const badHd = build({ type: 4, hlen: 72, psh: sqe(1), hd: true, badHdgst: true });
    expect(() => r3.push(badHd)).toThrow(DigestError);
    expect(r3.errorHeader).toEqual(badHd.subarray(0, 72));
  });
});

describe('PduReader options', () => {
  it('rejects bad options', () => {
    expect(() => new PduReader({ role: 'peer' as 'host' })).toThrow(InvalidArgumentError);
    expect(() => new PduReader({ role: 'host', maxDataLength: 0 })).toThrow(InvalidArgumentError);
    expect(() => new PduReader({ role: 'host', maxInCapsuleData: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => new PduReader({ role: 'host' }).setMaxDataLength(-1)).toThrow(InvalidArgumentError);
  });
});

describe('PduReader direct data placement', () => {
  /** A host-bound stream: responses, data PDUs with padding, a TermReq; placement by CCCID into per-command buffers. */
  function placedStream(hd: boolean, dd: boolean): { stream: Buffer; payloads: Map<number, Buffer> } {
    const payloads = new Map<number, Buffer>([
      [1, pattern(300, 3)],
      [3, pattern(5, 4)],
      [4, pattern(4096, 5)],
    ]);
    const stream = Buffer.concat([
      capsuleResp(1, hd),
      c2hData(1, payloads.get(1)!, { hd, dd }),
      r2t(2, hd),
      c2hData(3, payloads.get(3)!, { hd, dd, dataAt: 32 }),
      capsuleResp(9, hd),
      c2hData(4, payloads.get(4)!, { hd, dd, flags: 0x0c | (hd ? 1 : 0) | (dd ? 2 : 0) }),
    ]);
    return { stream, payloads };
  }

  for (const [hd, dd] of [[false, false], [true, false], [false, true], [true, true]] as const) {
    it(`places payloads straight into their destinations at every split offset (hdgst ${hd}, ddgst ${dd})`, () => {
      const { stream, payloads } = placedStream(hd, dd);
      for (let cut = 0; cut <= stream.length; cut++) {
        const dests = new Map<number, Buffer>();
        const headers: number[] = [];
        const r = new PduReader({
          role: 'host',
          hdgst: hd,
          ddgst: dd,
          placeData: (h) => {
            // Called once per data PDU, before a byte of its payload is read.
            headers.push(h.cccid);
            expect(h.datal).toBe(payloads.get(h.cccid)!.length);
            const d = Buffer.alloc(h.datal, 0xee);
            dests.set(h.cccid, d);
            return d;
          },
        });
        const out: Pdu[] = [];
        r.feed(stream.subarray(0, cut), (p) => out.push(p));
        r.feed(stream.subarray(cut), (p) => out.push(p));
        expect(r.buffered).toBe(0);
        expect(headers).toEqual([1, 3, 4]);
        expect(out.map((p) => p.type)).toEqual([5, 7, 9, 7, 5, 7]);
        for (const [cid, want] of payloads) expect(dests.get(cid)!.equals(want)).toBe(true);
        for (const p of out) {
          if (p.type !== PduType.C2HData) continue;
          expect(p.placed).toBe(true);
          expect(p.data).toBe(dests.get(p.cccid)); // the destination itself, no intermediate copy
          expect(p.dataDigestError).toBeUndefined();
        }
        const last = out[5] as Extract<Pdu, { type: 7 }>;
        expect([last.last, last.success]).toEqual([true, true]);
      }
    });
  }

  it('reads only chunk[0, end) of a reused read buffer (the host reads every socket into one), at every split offset', () => {
    const { stream, payloads } = placedStream(true, true);
    const shared = Buffer.alloc(stream.length + 64);
    for (let cut = 0; cut <= stream.length; cut++) {
      const dests = new Map<number, Buffer>();
      const r = new PduReader({ role: 'host', hdgst: true, ddgst: true, placeData: (h) => dests.set(h.cccid, Buffer.alloc(h.datal)).get(h.cccid)! });
      const out: Pdu[] = [];
      for (const piece of [stream.subarray(0, cut), stream.subarray(cut)]) {
        shared.fill(0x07); // bytes past `end`: what an earlier, longer read left there (0x07 starts a C2HData header)
        piece.copy(shared, 0);
        r.feed(shared, (p) => out.push(p), piece.length);
      }
      expect(r.buffered).toBe(0);
      expect(out.map((p) => p.type)).toEqual([5, 7, 9, 7, 5, 7]);
      for (const [cid, want] of payloads) expect(dests.get(cid)!.equals(want)).toBe(true);
      for (const p of out) if (p.type === PduType.C2HData) expect(p.dataDigestError).toBeUndefined();
    }
    const r = new PduReader({ role: 'host' });
    for (const end of [-1, 1.5, 65]) expect(() => r.feed(Buffer.alloc(64), () => {}, end)).toThrow(InvalidArgumentError);
  });

  it('places byte by byte: one byte per chunk', () => {
    const data = pattern(777, 9);
    const pdu = c2hData(7, data, { hd: true, dd: true });
    const dest = Buffer.alloc(777);
    const r = new PduReader({ role: 'host', hdgst: true, ddgst: true, placeData: () => dest });
    const out: Pdu[] = [];
    for (let i = 0; i < pdu.length; i++) r.feed(pdu.subarray(i, i + 1), (p) => out.push(p));
    expect(out).toHaveLength(1);
    expect(dest.equals(data)).toBe(true);
    expect(r.buffered).toBe(0);
  });

  it('discards the payload when placeData returns null, and reads on', () => {
    const r = new PduReader({ role: 'host', ddgst: true, placeData: (h) => (h.cccid === 1 ? null : Buffer.alloc(h.datal)) });
    const out = r.push(Buffer.concat([c2hData(1, pattern(100, 1), { dd: true }), c2hData(2, pattern(10, 2), { dd: true }), capsuleResp(3)]));
    expect(out.map((p) => p.type)).toEqual([7, 7, 5]);
    const [a, b] = out as Extract<Pdu, { type: 7 }>[];
    expect([a!.placed, a!.data.length, a!.dataDigestError]).toEqual([true, 0, undefined]);
    expect(b!.data.equals(pattern(10, 2))).toBe(true);
  });

  it('discardPlacement stops placing mid-payload: the rest is read and dropped, the digest not judged', () => {
    const dest = Buffer.alloc(100, 0xee);
    const r = new PduReader({ role: 'host', ddgst: true, placeData: () => dest });
    const pdu = c2hData(4, pattern(100, 1), { dd: true, badDdgst: true });
    const out: Pdu[] = [];
    expect(r.placingCccid).toBe(-1);
    r.feed(pdu.subarray(0, 24 + 30), (p) => out.push(p));
    expect(r.placingCccid).toBe(4);
    expect(r.payloadRemaining).toBe(70);
    expect(dest.subarray(0, 30).equals(pattern(100, 1).subarray(0, 30))).toBe(true);
    r.discardPlacement();
    expect(r.placingCccid).toBe(-1);
    r.feed(Buffer.concat([pdu.subarray(24 + 30), capsuleResp(5)]), (p) => out.push(p));
    expect(dest.subarray(30).every((b) => b === 0xee)).toBe(true);
    expect(out.map((p) => p.type)).toEqual([7, 5]);
    expect(r.payloadRemaining).toBe(0);
    expect((out[0] as Extract<Pdu, { type: 7 }>).dataDigestError).toBeUndefined();
  });

  it('flags a data digest mismatch computed over the placed payload', () => {
    const dest = Buffer.alloc(64);
    const r = new PduReader({ role: 'host', ddgst: true, placeData: () => dest });
    const pdu = c2hData(1, pattern(64, 1), { dd: true, badDdgst: true });
    const out: Pdu[] = [];
    r.feed(pdu.subarray(0, 40), (p) => out.push(p));
    r.feed(pdu.subarray(40), (p) => out.push(p));
    expect((out[0] as Extract<Pdu, { type: 7 }>).dataDigestError).toBe(true);
  });

  it('checks the header digest before asking for a destination', () => {
    let asked = 0;
    const r = new PduReader({ role: 'host', hdgst: true, placeData: (h) => (asked++, Buffer.alloc(h.datal)) });
    const bad = build({ type: 7, hlen: 24, flags: 0x05, hd: true, badHdgst: true, data: pattern(32, 1), fields: [[8, 2, 1], [12, 4, 0], [16, 4, 32]] });
    expect(() => r.feed(bad, () => {})).toThrow(DigestError);
    expect(asked).toBe(0);
  });

  it('a refusal from placeData fails the reader before any payload byte is placed', () => {
    const dest = Buffer.alloc(16, 0xaa);
    let calls = 0;
    const r = new PduReader({
      role: 'host',
      placeData: (h) => {
        calls++;
        if (h.cccid === 2) throw new ProtocolError('C2HData for unknown command id 2', 1, 8);
        return dest;
      },
    });
    const second = c2hData(2, pattern(16, 2));
    const seen: Pdu[] = [];
    const err = expectProtocolError(() => r.feed(Buffer.concat([c2hData(1, pattern(16, 1)), second]), (p) => seen.push(p)), 1, 8);
    expect(seen).toHaveLength(1); // the first PDU was delivered before the refusal
    expect(calls).toBe(2);
    expect(dest.equals(pattern(16, 1))).toBe(true); // only the first PDU's bytes
    expect(r.errorHeader).toEqual(second.subarray(0, 24));
    expect(() => r.feed(Buffer.alloc(1), () => {})).toThrow(err);
  });

  it('H2CData in the controller role is placed with its transfer tag', () => {
    const dest = Buffer.alloc(50);
    const seen: number[] = [];
    const r = new PduReader({ role: 'controller', placeData: (h) => (seen.push(h.type, h.cccid, h.ttag, h.datao), dest) });
    const out = r.push(h2cData(6, pattern(50, 6)));
    expect(seen).toEqual([PduType.H2CData, 6, 1, 0]);
    expect(dest.equals(pattern(50, 6))).toBe(true);
    expect((out[0] as Extract<Pdu, { type: 6 }>).placed).toBe(true);
  });

  it('a data PDU without data is placed and delivered once, at every split (found by fuzzing)', () => {
    // C2HData with PLEN = HLEN = 24, PDO 0, DATAL 0 (LAST_PDU set), then a CapsuleResp; with a header digest too.
    for (const hd of [false, true]) {
      const empty = build({ type: 7, hlen: 24, flags: 0x04 | (hd ? 1 : 0), hd, fields: [[8, 2, 3], [12, 4, 0], [16, 4, 0]] });
      expect(empty.length).toBe(hd ? 28 : 24);
      const stream = Buffer.concat([empty, capsuleResp(5, hd)]);
      for (const cuts of [[], ...Array.from({ length: stream.length - 1 }, (_, i) => [i + 1])]) {
        const asked: number[] = [];
        const r = new PduReader({ role: 'host', hdgst: hd, placeData: (h) => (asked.push(h.cccid, h.datal), Buffer.alloc(h.datal)) });
        const got: Pdu[] = [];
        let at = 0;
        for (const c of [...cuts, stream.length]) {
          r.feed(stream.subarray(at, c), (p) => got.push(p));
          at = c;
        }
        expect(asked).toEqual([3, 0]);
        expect(got.map((p) => p.type)).toEqual([PduType.C2HData, PduType.CapsuleResp]);
        const d = got[0] as Extract<Pdu, { type: 7 }>;
        expect([d.cccid, d.data.length, d.placed, d.last]).toEqual([3, 0, true, true]);
        expect(r.buffered).toBe(0);
      }
    }
  });

  it('a large PDU header reserves nothing before its bytes arrive', () => {
    // 64 MiB of announced C2H data: with placement the reader holds only the header; without it, what arrived.
    const plen = 24 + 64 * 1024 * 1024;
    const header = build({ type: 7, hlen: 24, flags: 0x04, pdo: 24, plen, fields: [[8, 2, 1], [12, 4, 0], [16, 4, plen - 24]] }).subarray(0, 24);
    const before = process.memoryUsage().arrayBuffers;
    const readers = [
      new PduReader({ role: 'host', maxDataLength: 64 * 1024 * 1024, placeData: () => null }),
      new PduReader({ role: 'host', maxDataLength: 64 * 1024 * 1024 }),
    ];
    for (const r of readers) {
      r.push(header.subarray(0, 8));
      r.push(header.subarray(8));
      r.push(Buffer.alloc(1000));
    }
    expect(readers[0]!.buffered).toBe(0);
    expect(readers[1]!.buffered).toBe(1024);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 1024 * 1024);
  });

  it('rejects bad constructor options and non-Buffer input with NVMEOF_ERR_INVALID_ARGUMENT', () => {
    expect(() => new PduReader(undefined as unknown as PduReaderOptions)).toThrow(InvalidArgumentError);
    expect(() => new PduReader({ role: 'host', placeData: 1 as unknown as PduReaderOptions['placeData'] })).toThrow(InvalidArgumentError);
    const r = new PduReader({ role: 'host' });
    expect(() => r.push('abc' as unknown as Buffer)).toThrow(InvalidArgumentError);
    expect(() => r.push(new Uint8Array(8) as unknown as Buffer)).toThrow(InvalidArgumentError);
  });
});
