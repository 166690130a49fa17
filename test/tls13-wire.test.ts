/**
 * The TLS 1.3 client's wire codecs (src/transport/tls13/wire.ts): messages from RFC 8448's traces with their fields
 * written out by hand from the RFC, the record reader and handshake reassembly split at every offset, and each refusal
 * with the alert the client answers with.
 */
import { Buffer } from 'node:buffer';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { ErrorCode, TlsError } from '../src/errors.js';
import { acceptEncryptedExtensions, acceptServerHello, x25519Share } from '../src/transport/tls13/client.js';
import { TLS_AES_128_GCM_SHA256 } from '../src/transport/tls13/key-schedule.js';
import * as wire from '../src/transport/tls13/wire.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// RFC 8448 section 3 (simple 1-RTT handshake) and section 4 (resumed 0-RTT handshake, with a PSK).
const SH_1RTT = hex(`020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e2692800130100002e00330024001d0020c982
  8876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304`);
const SH_PSK = hex(`0200005c03033ccfd2dec890222763472ae8136777c9d7358777bb66e91ea5122495f559ea2d00130100003400290002000000330024001d
  0020121761ee42c333e1b9e77b60dd57c2053cd94512ab47f115e86eff50942cea31002b00020304`);
const EE_1RTT = hex('080000240022000a00140012001d00170018001901000101010201030104001c0002400100000000');
const FINISHED_1RTT = hex('140000209b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718');
const NST = hex(`040000c90000001efad6aac502000000b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf1b0070ad3c4988
  83c9367c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827db279cce145077d454a3664d4e6da4d29e
  e03725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228bda40dda721470f9fbf297b5aea617646fac5c03272e970727c6
  21a79141ef5f7de6505e5bfbc388e93343694093934ae4d3570008002a000400000400`);

/** The alert `fn` refuses with (a wire.TlsAbort, so NVMEOF_ERR_TLS). */
function refusal(fn: () => unknown): { sends: number; message: string } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TlsError);
    expect(err).toBeInstanceOf(wire.TlsAbort);
    expect((err as TlsError).code).toBe(ErrorCode.TLS);
    return { sends: (err as wire.TlsAbort).sends, message: (err as Error).message };
  }
  throw new Error('expected a refusal');
}

const record = (type: number, body: Buffer, version = 0x0303): Buffer => Buffer.concat([Buffer.of(type, version >> 8, version & 0xff, body.length >> 8, body.length & 0xff), body]);

describe('TLS 1.3 message parsers on RFC 8448 messages', () => {
  it('ServerHello of the resumed handshake: PSK identity 0, X25519 share, TLS 1.3', () => {
    expect(SH_PSK[0]).toBe(2);
    const sh = wire.parseServerHello(SH_PSK.subarray(4));
    expect(sh.legacyVersion).toBe(0x0303);
    expect(sh.random).toEqual(hex('3ccfd2dec890222763472ae8136777c9d7358777bb66e91ea5122495f559ea2d'));
    expect(sh.helloRetryRequest).toBe(false);
    expect(sh.sessionId.length).toBe(0);
    expect(sh.cipherSuite).toBe(0x1301);
    expect(sh.compression).toBe(0);
    expect([...sh.extensions.keys()]).toEqual([41, 51, 43]);
    expect(sh.selectedIdentity).toBe(0);
    expect(sh.keyShare).toEqual({ group: 0x001d, key: hex('121761ee42c333e1b9e77b60dd57c2053cd94512ab47f115e86eff50942cea31') });
    expect(sh.version).toBe(0x0304);
  });

  it('ServerHello of the 1-RTT handshake has no pre_shared_key: the client refuses it with handshake_failure', () => {
    const sh = wire.parseServerHello(SH_1RTT.subarray(4));
    expect(sh.selectedIdentity).toBeUndefined();
    expect(sh.keyShare!.key).toEqual(hex('c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f'));
    const r = refusal(() => acceptServerHello(sh, { suite: TLS_AES_128_GCM_SHA256, shares: [x25519Share()], identity: 'id' }));
    expect(r).toEqual({ sends: 40, message: 'the target did not accept the PSK identity "id"' });
  });

  it('EncryptedExtensions: supported_groups decoded; record_size_limit was not offered (unsupported_extension)', () => {
    const ee = wire.parseEncryptedExtensions(EE_1RTT.subarray(4));
    expect([...ee.extensions.keys()]).toEqual([10, 28, 0]);
    expect(ee.supportedGroups).toEqual([0x001d, 0x0017, 0x0018, 0x0019, 0x0100, 0x0101, 0x0102, 0x0103, 0x0104]);
    expect(ee.extensions.get(28)).toEqual(hex('4001'));
    expect(ee.extensions.get(0)!.length).toBe(0);
    expect(refusal(() => acceptEncryptedExtensions(ee)).sends).toBe(110);
    // supported_groups alone is what this client may get back.
    expect(() => acceptEncryptedExtensions(wire.parseEncryptedExtensions(hex('000a000a00060004001d0017')))).not.toThrow();
    // key_share does not belong in EncryptedExtensions at all.
    expect(refusal(() => acceptEncryptedExtensions(wire.parseEncryptedExtensions(hex('00060033000200 1d'.replace(' ', '')))))).toMatchObject({ sends: 47 });
  });

  it('Finished: verify_data of the hash length', () => {
    expect(wire.parseFinished(FINISHED_1RTT.subarray(4), 32)).toEqual(hex('9b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718'));
    expect(refusal(() => wire.parseFinished(FINISHED_1RTT.subarray(4), 48))).toEqual({ sends: 50, message: "the target's Finished has 32 bytes of verify_data (expected 48)" });
  });

  it('NewSessionTicket: lifetime, age_add, nonce, ticket and early_data', () => {
    const t = wire.parseNewSessionTicket(NST.subarray(4));
    expect(t.lifetime).toBe(30);
    expect(t.ageAdd).toBe(0xfad6aac5);
    expect(t.nonce).toEqual(hex('0000'));
    expect(t.ticket.length).toBe(0xb2);
    expect(t.ticket.subarray(0, 4)).toEqual(hex('2c035d82'));
    expect(t.maxEarlyDataSize).toBe(0x400);
    // An empty ticket, a truncated one, trailing bytes.
    expect(refusal(() => wire.parseNewSessionTicket(hex('0000001e00000000 00 0000 0000'.replace(/ /g, '')))).sends).toBe(50);
    expect(refusal(() => wire.parseNewSessionTicket(NST.subarray(4, NST.length - 1))).sends).toBe(50);
    expect(refusal(() => wire.parseNewSessionTicket(Buffer.concat([NST.subarray(4), Buffer.of(0)]))).message).toMatch(/trailing/);
  });

  it('KeyUpdate, alert and inner plaintext', () => {
    expect(wire.parseKeyUpdate(Buffer.of(0))).toEqual({ updateRequested: false });
    expect(wire.parseKeyUpdate(Buffer.of(1))).toEqual({ updateRequested: true });
    expect(refusal(() => wire.parseKeyUpdate(Buffer.of(2))).sends).toBe(47);
    expect(refusal(() => wire.parseKeyUpdate(Buffer.alloc(0))).sends).toBe(50);
    expect(refusal(() => wire.parseKeyUpdate(Buffer.of(0, 0))).sends).toBe(50);
    expect(wire.parseAlert(Buffer.of(2, 40))).toEqual({ level: 2, description: 40 });
    expect(refusal(() => wire.parseAlert(Buffer.of(2))).sends).toBe(50);
    expect(wire.parseInnerPlaintext(Buffer.of(0x61, 0x62, 23, 0, 0, 0))).toEqual({ type: 23, content: Buffer.from('ab') });
    expect(wire.parseInnerPlaintext(Buffer.of(22))).toEqual({ type: 22, content: Buffer.alloc(0) });
    expect(refusal(() => wire.parseInnerPlaintext(Buffer.alloc(5))).sends).toBe(10);
  });

  it('ServerHello refusals: truncation, trailing bytes, duplicate and malformed extensions', () => {
    const body = SH_PSK.subarray(4);
    for (let n = 0; n < body.length; n++) {
      // Every proper prefix is refused with decode_error (the 38-byte prefix is a TLS 1.2 ServerHello without extensions).
      if (n === 38) continue;
      expect(refusal(() => wire.parseServerHello(body.subarray(0, n))).sends, `prefix ${n}`).toBe(50);
    }
    expect(wire.parseServerHello(body.subarray(0, 38)).extensions.size).toBe(0);
    expect(refusal(() => wire.parseServerHello(Buffer.concat([body, Buffer.of(0)]))).message).toMatch(/trailing/);
    // supported_versions twice.
    const twice = Buffer.concat([body.subarray(0, 38), hex('000c 002b00020304 002b00020304'.replace(/ /g, ''))]);
    expect(refusal(() => wire.parseServerHello(twice))).toEqual({ sends: 47, message: 'the target sent extension 43 twice in its ServerHello' });
    // supported_versions with 3 bytes; pre_shared_key with 1; an empty key_share key.
    expect(refusal(() => wire.parseServerHello(Buffer.concat([body.subarray(0, 38), hex('0007002b0003030400')]))).message).toMatch(/supported_versions has 1 trailing/);
    expect(refusal(() => wire.parseServerHello(Buffer.concat([body.subarray(0, 38), hex('00050029000100')]))).message).toMatch(/pre_shared_key is truncated/);
    expect(refusal(() => wire.parseServerHello(Buffer.concat([body.subarray(0, 38), hex('00080033000400 1d0000'.replace(' ', ''))]))).message).toMatch(/empty key/);
    // A session id longer than 32 bytes.
    const longSid = Buffer.concat([body.subarray(0, 34), Buffer.of(33), Buffer.alloc(33), body.subarray(35)]);
    expect(refusal(() => wire.parseServerHello(longSid)).message).toMatch(/33-byte session id/);
  });
});

describe('TLS 1.3 record reader', () => {
  const stream = Buffer.concat([
    record(22, SH_PSK),
    record(20, Buffer.of(1)),
    record(23, Buffer.alloc(40, 0xa5)),
    record(23, Buffer.alloc(17, 0x5a)),
    record(21, Buffer.of(2, 40)),
  ]);
  const read = (chunks: Buffer[]): wire.TlsRecord[] => {
    const r = new wire.RecordReader();
    const out: wire.TlsRecord[] = [];
    for (const c of chunks) r.feed(c, (rec) => void out.push({ ...rec, header: Buffer.from(rec.header), fragment: Buffer.from(rec.fragment) }));
    expect(r.buffered).toBe(0);
    return out;
  };
  const whole = read([stream]);

  it('splits records: type, version, header and fragment', () => {
    expect(whole.map((r) => [r.type, r.version, r.fragment.length])).toEqual([
      [22, 0x0303, SH_PSK.length],
      [20, 0x0303, 1],
      [23, 0x0303, 40],
      [23, 0x0303, 17],
      [21, 0x0303, 2],
    ]);
    expect(whole[0]!.header).toEqual(Buffer.of(22, 3, 3, 0, SH_PSK.length));
    expect(whole[0]!.fragment).toEqual(SH_PSK);
  });

  it('gives the same records split at every offset, and one byte at a time', () => {
    for (let cut = 1; cut < stream.length; cut++) expect(read([stream.subarray(0, cut), stream.subarray(cut)]), `cut ${cut}`).toEqual(whole);
    expect(read([...stream].map((b) => Buffer.of(b)))).toEqual(whole);
  });

  it('holds only what arrived, and delivers a record inside one chunk as a view of it', () => {
    const r = new wire.RecordReader();
    const views: Buffer[] = [];
    r.feed(stream, (rec) => void views.push(rec.fragment));
    expect(views[0]!.buffer).toBe(stream.buffer);
    r.feed(Buffer.of(23, 3, 3, 0x40, 0), () => {});
    expect(r.buffered).toBe(5);
  });

  it('refuses a bad header when its 5 bytes arrive, after delivering the records before it', () => {
    const cases: [Buffer, number, RegExp][] = [
      [Buffer.of(24, 3, 3, 0, 1), 10, /unknown content type 24/],
      [Buffer.of(19, 3, 3, 0, 1), 10, /unknown content type 19/],
      [Buffer.of(22, 2, 0, 0, 1), 70, /version 0x0200: not TLS/],
      [Buffer.of(22, 3, 3, 0x40, 1), 22, /16385-byte handshake record/],
      [Buffer.of(21, 3, 3, 0, 0), 10, /empty alert record/],
      [Buffer.of(22, 3, 3, 0, 0), 10, /empty handshake record/],
      [Buffer.of(23, 3, 3, 0x41, 1), 22, /16641-byte record/],
    ];
    for (const [header, sends, message] of cases) {
      const r = new wire.RecordReader();
      const got: number[] = [];
      const err = refusal(() => r.feed(Buffer.concat([record(20, Buffer.of(1)), header]), (rec) => void got.push(rec.type)));
      expect(err.sends).toBe(sends);
      expect(err.message).toMatch(message);
      expect(got).toEqual([20]);
    }
    // The largest records are fine: 2^14 of plaintext, 2^14 + 256 protected; version 0x0301 too (it is ignored).
    expect(read([record(22, Buffer.alloc(1 << 14, 1))]).length).toBe(1);
    expect(read([record(23, Buffer.alloc((1 << 14) + 256, 1), 0x0301)]).length).toBe(1);
  });

  it('stops when the handler says so', () => {
    const r = new wire.RecordReader();
    const got: number[] = [];
    r.feed(stream, (rec) => {
      got.push(rec.type);
      return rec.type !== 20;
    });
    expect(got).toEqual([22, 20]);
  });
});

describe('TLS 1.3 handshake reassembly', () => {
  const flight = Buffer.concat([EE_1RTT, FINISHED_1RTT, NST, Buffer.of(24, 0, 0, 1, 1)]);
  const read = (fragments: Buffer[]): wire.HandshakeMessage[] => {
    const h = new wire.HandshakeReader();
    const out: wire.HandshakeMessage[] = [];
    for (const f of fragments) h.feed(f, (m) => void out.push({ type: m.type, raw: Buffer.from(m.raw), body: Buffer.from(m.body) }));
    expect(h.buffered).toBe(0);
    return out;
  };
  const whole = read([flight]);

  it('cuts coalesced messages apart', () => {
    expect(whole.map((m) => [m.type, m.body.length])).toEqual([
      [8, 0x24],
      [20, 32],
      [4, 0xc9],
      [24, 1],
    ]);
    expect(whole[0]!.raw).toEqual(EE_1RTT);
  });

  it('gives the same messages fragmented at every offset, and one byte per record', () => {
    for (let cut = 1; cut < flight.length; cut++) expect(read([flight.subarray(0, cut), flight.subarray(cut)]), `cut ${cut}`).toEqual(whole);
    expect(read([...flight].map((b) => Buffer.of(b)))).toEqual(whole);
  });

  it('counts the bytes after a message in its fragment as buffered while the message is handled', () => {
    const h = new wire.HandshakeReader();
    const seen: number[] = [];
    h.feed(Buffer.concat([FINISHED_1RTT, NST.subarray(0, 10)]), () => void seen.push(h.buffered));
    expect(seen).toEqual([10]);
    expect(h.buffered).toBe(10);
  });

  it('refuses a message longer than the client takes when its header arrives', () => {
    const n = wire.MAX_HANDSHAKE + 1;
    const h = new wire.HandshakeReader();
    expect(refusal(() => h.feed(Buffer.of(4, n >> 16, (n >> 8) & 0xff, n & 0xff), () => {}))).toEqual({ sends: 50, message: `the target sent a ${n}-byte handshake message` });
  });
});

describe('X25519 key share', () => {
  // Found by the tls fuzz target: a worker hung for good (every thread waiting on a lock). Node 20 holds a fresh key's
  // lock while exporting it as JWK and allocating; a collection at that moment finalizes the key generation job, which
  // takes the same lock. In a worker with --gc-interval=50, 5 of 8 runs of 20,000 generate-and-export calls hung.
  // The share now takes its public key from the DER the generation returns and never exports a KeyObject.
  it('takes its public value without exporting a KeyObject, and agrees with the peer', () => {
    // RFC 7748 section 6.1's key pair, for the classes' prototypes.
    const alice = {
      d: hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
      x: hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'),
    };
    const priv = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: alice.d.toString('base64url'), x: alice.x.toString('base64url') }, format: 'jwk' });
    const pub = createPublicKey(priv);
    const spies = [vi.spyOn(Object.getPrototypeOf(pub) as { export(): unknown }, 'export'), vi.spyOn(Object.getPrototypeOf(priv) as { export(): unknown }, 'export')];
    try {
      const a = x25519Share();
      const b = x25519Share();
      expect(a.pub.length).toBe(32);
      expect(a.compute(b.pub)).toEqual(b.compute(a.pub));
      for (const s of spies) expect(s).not.toHaveBeenCalled();
    } finally {
      for (const s of spies) s.mockRestore();
    }
    // A share computes with RFC 7748's public key for Alice like any peer would.
    expect(x25519Share().compute(alice.x).length).toBe(32);
  });

  it('refuses small-order points with illegal_parameter (RFC 7748 section 6.1)', () => {
    const share = x25519Share();
    for (const p of ['0000000000000000000000000000000000000000000000000000000000000000', '0100000000000000000000000000000000000000000000000000000000000000', 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800']) {
      expect(refusal(() => share.compute(hex(p)))).toMatchObject({ sends: 47 });
    }
    expect(refusal(() => share.compute(Buffer.alloc(31))).message).toMatch(/not 32 bytes/);
  });
});
