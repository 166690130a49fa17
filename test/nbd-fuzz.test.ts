/**
 * Fuzzing the NBD server's parsers: whatever bytes a client sends, the request parser either yields requests or
 * throws NbdProtocolError, and a live server closes only the offending connection and keeps serving others.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import * as net from 'node:net';
import * as nbd from '../src/nbd/protocol.js';
import { serveNbd, type NbdServer } from '../src/nbd/server.js';
import { NbdProtocolError } from '../src/errors.js';
import { TargetEnv } from './helpers/target-env.js';
import { RawNbd } from './helpers/nbd-raw.js';

const validRequest = fc
  .record({
    flags: fc.integer({ min: 0, max: 0xffff }),
    type: fc.integer({ min: 0, max: 12 }),
    handle: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    offset: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    length: fc.integer({ min: 0, max: 2048 }),
  })
  .map((r) => Buffer.concat([nbd.encodeRequest(r), r.type === nbd.NbdCmd.WRITE ? Buffer.alloc(r.length, 1) : Buffer.alloc(0)]));

/** Streams mixing well-formed requests with random bytes and flipped bits. */
const stream = fc
  .array(fc.oneof(validRequest, fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a))), { maxLength: 12 })
  .chain((parts) => {
    const all = Buffer.concat(parts);
    return fc.record({ bytes: fc.constant(all), flip: fc.option(fc.nat({ max: Math.max(0, all.length * 8 - 1) })), cuts: fc.array(fc.nat({ max: all.length }), { maxLength: 6 }) });
  });

describe('nbd fuzz: request parser', () => {
  it('yields requests or throws NbdProtocolError, whatever the bytes and however they are split', () => {
    fc.assert(
      fc.property(stream, ({ bytes, flip, cuts }) => {
        const b = Buffer.from(bytes);
        if (flip !== null && b.length) b[flip >> 3]! ^= 1 << (flip & 7);
        const p = new nbd.RequestParser(1024);
        const points = [...new Set([0, ...cuts, b.length])].sort((x, y) => x - y);
        try {
          for (let i = 1; i < points.length; i++) {
            for (const r of p.push(b.subarray(points[i - 1], points[i]))) {
              expect(r.type === nbd.NbdCmd.WRITE ? r.data!.length : r.data).toBe(r.type === nbd.NbdCmd.WRITE ? r.length : undefined);
            }
          }
        } catch (err) {
          expect(err).toBeInstanceOf(NbdProtocolError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('option data decoders throw only NbdProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (a) => {
        const b = Buffer.from(a);
        for (const f of [nbd.decodeInfoRequest, nbd.decodeMetaContextRequest, nbd.decodeExportName]) {
          try {
            f(b);
          } catch (err) {
            expect(err).toBeInstanceOf(NbdProtocolError);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('nbd fuzz: live server', () => {
  const env = new TargetEnv();
  let server: NbdServer;
  let port = 0;
  beforeAll(async () => {
    await env.start({ ns: { blocks: 2048 } });
    const ns = await (await env.connect()).namespace(1);
    server = await serveNbd({ listen: { port: 0 }, exports: [{ name: 'disk', namespace: ns }] });
    port = (server.address as { port: number }).port;
  });
  afterAll(async () => {
    await server.close();
    await env.cleanup();
  });

  const prefix = fc.constantFrom(
    'none',
    'flags',
    'export-name',
    'structured-go',
  );

  it('survives random handshakes and request streams, then serves a well-behaved client', async () => {
    await fc.assert(
      fc.asyncProperty(prefix, stream, async (pre, { bytes }) => {
        const sock = net.connect(port, '127.0.0.1');
        sock.on('error', () => {});
        const closed = new Promise<void>((r) => sock.on('close', () => r()));
        const lead: Buffer[] = [];
        if (pre !== 'none') lead.push(Buffer.from('00000003', 'hex'));
        if (pre === 'export-name') lead.push(nbd.encodeOptionRequest(nbd.NbdOpt.EXPORT_NAME, Buffer.from('disk')));
        if (pre === 'structured-go') {
          lead.push(nbd.encodeOptionRequest(nbd.NbdOpt.STRUCTURED_REPLY));
          lead.push(nbd.encodeOptionRequest(nbd.NbdOpt.GO, Buffer.from('00000004' + Buffer.from('disk').toString('hex') + '0000', 'hex')));
        }
        sock.on('data', () => {});
        sock.end(Buffer.concat([...lead, bytes]));
        await closed;
      }),
      { numRuns: 60 },
    );
    // The server still answers, and every fuzzing connection is gone.
    const c = await RawNbd.connect(port);
    await c.handshake();
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.EXPORT_NAME, Buffer.from('disk')));
    expect((await c.read(10)).readBigUInt64BE(0)).toBe(2048n * 512n);
    c.write(nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.READ, handle: 1n, offset: 0n, length: 512 }));
    expect((await c.read(16)).readUInt32BE(4)).toBe(0);
    await c.read(512);
    c.destroy();
  });
});
