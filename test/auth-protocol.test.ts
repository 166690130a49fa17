/**
 * DH-HMAC-CHAP codecs and computations. Expected values were computed independently (python3 hashlib/hmac/zlib/
 * base64 and pow() over the RFC 7919 prime as openssl prints it) or written out by hand from the message layouts of
 * the NVMe Base specification; none comes from the code under test.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import * as auth from '../src/protocol/auth.js';
import { InvalidArgumentError } from '../src/errors.js';

const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555';
const SUBNQN = 'nqn.2024-01.io.example:auth';
const range = (from: number, to: number) => Buffer.from(Array.from({ length: to - from }, (_, i) => from + i));
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// python3: 'DHHC-1:01:' + b64encode(bytes(range(32)) + zlib.crc32(bytes(range(32))).to_bytes(4, 'little')) + ':'
const KEY01 = 'DHHC-1:01:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:';
// python3: secret bytes((i*7+3) & 0xff for i in range(48)), HH 00
const KEY48 = 'DHHC-1:00:AwoRGB8mLTQ7QklQV15lbHN6gYiPlp2kq7K5wMfO1dzj6vH4/wYNFBsiKTA3PkVMRdxyRQ==:';

describe('DHHC-1 keys', () => {
  it('parses the transform hash, length and secret, checking the CRC', () => {
    const k = auth.parseDhchapKey(KEY01);
    expect(k.transform).toBe(1);
    expect(k.length).toBe(32);
    expect(k.secret()).toEqual(range(0, 32));
    const k48 = auth.parseDhchapKey(KEY48);
    expect(k48.transform).toBe(0);
    expect(k48.secret()).toEqual(Buffer.from(Array.from({ length: 48 }, (_, i) => (i * 7 + 3) & 0xff)));
    expect(k.format()).toBe(KEY01);
    // The trailing colon is optional, as Linux accepts it.
    expect(auth.parseDhchapKey(KEY01.slice(0, -1)).secret()).toEqual(range(0, 32));
  });

  it('CRC-32 is the zlib one (python3 zlib.crc32(bytes(range(32))) = 0x91267e8a)', () => {
    expect(auth.crc32(range(0, 32))).toBe(0x91267e8a);
    expect(auth.crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
  });

  it('refuses a bad CRC, a bad length, an unknown transform and garbage, never echoing the key', () => {
    const badCrc = 'DHHC-1:01:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaS:';
    const cases = [badCrc, 'DHHC-1:04:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:', 'DHHC-1:01:AAECAwQFBgcICQoL:', 'DHHC-2:01:AAAA:', 'secret', 42];
    for (const c of cases) {
      let err: unknown;
      try {
        auth.parseDhchapKey(c, 'dhchap.secret');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InvalidArgumentError);
      const msg = (err as Error).message;
      expect(msg).toMatch(/^dhchap\.secret/);
      if (typeof c === 'string' && c.length > 12) expect(msg).not.toContain(c.slice(10, 30));
    }
    expect(() => auth.parseDhchapKey(badCrc)).toThrow(/CRC does not match/);
  });

  it('a parsed key never shows its secret when printed, inspected or serialised', () => {
    const k = auth.parseDhchapKey(KEY01);
    const shown = [String(k), JSON.stringify({ k }), inspect(k), inspect({ k }, { showHidden: true, depth: 5 })].join('\n');
    expect(shown).toContain('redacted');
    expect(shown).not.toContain('AAECAwQF');
    expect(shown).not.toContain('000102030405');
    expect(Object.keys(k)).not.toContain('secret');
  });

  it('transforms a key: HMAC-H(secret, nqn || "NVMe-over-Fabrics"), or the secret for HH 00', () => {
    // python3: hmac.new(bytes(range(32)), (hostnqn + 'NVMe-over-Fabrics').encode(), hashlib.sha256)
    expect(auth.transformKey(auth.parseDhchapKey(KEY01), HOSTNQN).toString('hex')).toBe('6ce1e4ea31e8331a4fe5826bfde17a5cd386b8f0338748919e279ba6c55bf727');
    // python3: hmac.new(bytes(range(64, 128)), (subnqn + 'NVMe-over-Fabrics').encode(), hashlib.sha512)
    const k3 = new auth.DhchapKey(range(64, 128), 3);
    expect(auth.transformKey(k3, SUBNQN).toString('hex')).toBe(
      'a5268b3aa0a2c41bbde49c4cc1ecd17bad24956d90d1e5ee2324452d5307d1a1659b68dffd17c9ecacd33556147764a8c90e3d0cc8cdb7cf80fe59df393c69eb',
    );
    expect(auth.transformKey(auth.parseDhchapKey(KEY48), HOSTNQN)).toEqual(auth.parseDhchapKey(KEY48).secret());
  });
});

describe('responses', () => {
  const kh = hex('6ce1e4ea31e8331a4fe5826bfde17a5cd386b8f0338748919e279ba6c55bf727');
  it('R1 = HMAC(Kh, C1 || le32 S1 || le16 T_ID || 00 || "HostHost" || hostnqn || 00 || subnqn)', () => {
    const r1 = auth.hostResponse({ hash: 'sha256', key: kh, challenge: range(0xa0, 0xc0), seqnum: 0x01020304, tid: 0x0102, hostnqn: HOSTNQN, subnqn: SUBNQN });
    expect(r1.toString('hex')).toBe('d5db3e6615ce9b331ecdd2efdf2e9e012ddac73e57b58df5415f365218d43970');
  });

  it('R2 = HMAC(Kc, C2 || le32 S2 || le16 T_ID || 00 || "Controller" || subnqn || 00 || hostnqn)', () => {
    const kc = auth.transformKey(new auth.DhchapKey(range(64, 96), 1), SUBNQN);
    expect(kc.toString('hex')).toBe('25adca0f8e39294b54a4805e72b9a5c6be4dbfee40b2beac4e89d2ca06a5561a');
    const r2 = auth.controllerResponse({ hash: 'sha256', key: kc, challenge: range(0x40, 0x60), seqnum: 0xdeadbeef, tid: 0x0102, hostnqn: HOSTNQN, subnqn: SUBNQN });
    expect(r2.toString('hex')).toBe('20a5f8884cf3ac92364272fc6769959cf6e8e3af45a325b5c37c7bdf84074d73');
    expect(auth.responsesEqual(r2, Buffer.from(r2))).toBe(true);
    const other = Buffer.from(r2);
    other[31]! ^= 1;
    expect(auth.responsesEqual(r2, other)).toBe(false);
    expect(auth.responsesEqual(r2, r2.subarray(0, 16))).toBe(false);
  });

  it('ffdhe2048: public values, the session key and Ca = HMAC(H(g^xy), C) match pow() in python', () => {
    // python3: x = int.from_bytes(bytes(range(1, 65))), y = int.from_bytes(bytes(range(101, 165))), p from openssl
    const host = new auth.DhchapExchange('ffdhe2048', range(1, 65));
    const ctrl = new auth.DhchapExchange('ffdhe2048', range(101, 165));
    expect(host.publicValue.length).toBe(256);
    expect(createHash('sha256').update(host.publicValue).digest('hex')).toBe('1908b0773912e53f8b481d76c9723f551e22e7edcee9e562bf0cc763a9ce3958');
    const s1 = host.sessionKey(ctrl.publicValue);
    const s2 = ctrl.sessionKey(host.publicValue);
    expect(s1).toEqual(s2);
    expect(s1.length).toBe(256);
    expect(createHash('sha256').update(s1).digest('hex')).toBe('16afa060bf7bb1f461feefe325d206b4c5ac600e9463aee93584fc7c22f62c8b');
    expect(auth.augmentedChallenge('sha384', s1, range(0x10, 0x40)).toString('hex')).toBe(
      'd779d8ac8a114fd691d2b18dd6b54934cd433e199c7147bbdfa105fb68942a14f90d7418d4322c40604d1aa374cd795e',
    );
  });

  it('the RFC 7919 primes have the structure of RFC 7919 (leading and trailing 64 one-bits, e-derived middle)', () => {
    for (const g of ['ffdhe2048', 'ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192'] as const) {
      const p = auth.groupPrime(g);
      expect(p.length * 8).toBe(Number(g.slice(5)));
      expect(auth.groupValueLength(g)).toBe(p.length);
      expect(p.subarray(0, 8).toString('hex')).toBe('ffffffffffffffff');
      expect(p.subarray(-8).toString('hex')).toBe('ffffffffffffffff');
      // RFC 7919 Appendix A: every prime continues with the same digits of e.
      expect(p.subarray(8, 16).toString('hex')).toBe('adf85458a2bb4a9a');
    }
    expect(auth.groupValueLength('null')).toBe(0);
  });

  it('refuses peer DH values of the wrong length or outside 2..p-2', () => {
    const host = new auth.DhchapExchange('ffdhe2048');
    expect(() => host.sessionKey(Buffer.alloc(255, 1))).toThrow(/255 bytes/);
    const one = Buffer.alloc(256);
    one[255] = 1;
    expect(() => host.sessionKey(one)).toThrow(/2\.\.p-2/);
    const pMinus1 = auth.groupPrime('ffdhe2048');
    pMinus1[255] = 0xfe;
    expect(() => host.sessionKey(pMinus1)).toThrow(/2\.\.p-2/);
  });
});

describe('messages', () => {
  it('AUTH_Negotiate: 72 bytes, hash IDs at IDLIST[0], DH group IDs at IDLIST[30]', () => {
    const expected = Buffer.alloc(72);
    expected.set([0x00, 0x00, 0, 0, 0x34, 0x12, 0x00, 0x01], 0); // common, negotiate, T_ID 1234h, SC_C 0, NAPD 1
    expected.set([0x01, 0x00, 0x03, 0x06], 8); // AUTHID DH-HMAC-CHAP, HALEN 3, DHLEN 6
    expected.set([1, 2, 3], 12);
    expected.set([0, 1, 2, 3, 4, 5], 42);
    const b = auth.encodeNegotiate({ tid: 0x1234, hashIds: [1, 2, 3], dhgroupIds: [0, 1, 2, 3, 4, 5] });
    expect(b).toEqual(expected);
    expect(auth.parseAuthMessage(expected)).toEqual({ type: 'negotiate', tid: 0x1234, scC: 0, protocols: [{ authId: 1, hashIds: [1, 2, 3], dhgroupIds: [0, 1, 2, 3, 4, 5] }] });
  });

  it('Challenge: 16 + HL + DHVLEN, parsed from its own header out of a padded receive buffer', () => {
    const c1 = range(0xa0, 0xc0);
    const dhv = Buffer.alloc(256, 0x5a);
    const hand = Buffer.concat([Buffer.from([0x01, 0x01, 0, 0, 0x07, 0x00, 32, 0, 0x01, 0x01, 0x00, 0x01, 0x04, 0x03, 0x02, 0x01]), c1, dhv]);
    expect(auth.encodeChallenge({ tid: 7, hashId: 1, dhgroupId: 1, seqnum: 0x01020304, challenge: c1, dhv })).toEqual(hand);
    const padded = Buffer.concat([hand, Buffer.alloc(4096 - hand.length, 0xee)]);
    expect(auth.parseAuthMessage(padded)).toEqual({ type: 'challenge', tid: 7, hashId: 1, dhgroupId: 1, seqnum: 0x01020304, challenge: c1, dhv });
    expect(() => auth.parseAuthMessage(hand.subarray(0, hand.length - 1))).toThrow(/shorter/);
  });

  it('Reply: always 16 + 2*HL + DHVLEN, C2 zeros and CVALID 0 when not bidirectional', () => {
    const r1 = range(0, 48);
    const uni = auth.encodeReply({ tid: 0x0102, response: r1 });
    const hand = Buffer.concat([Buffer.from([0x01, 0x02, 0, 0, 0x02, 0x01, 48, 0, 0x00, 0, 0, 0, 0, 0, 0, 0]), r1, Buffer.alloc(48)]);
    expect(uni).toEqual(hand);
    expect(auth.parseAuthMessage(uni)).toEqual({ type: 'reply', tid: 0x0102, response: r1, challenge: undefined, seqnum: 0, dhv: Buffer.alloc(0) });
    const c2 = range(100, 148);
    const dhv = Buffer.alloc(384, 3);
    const bi = auth.encodeReply({ tid: 0x0102, response: r1, challenge: c2, seqnum: 0x11223344, dhv });
    const hand2 = Buffer.concat([Buffer.from([0x01, 0x02, 0, 0, 0x02, 0x01, 48, 0, 0x01, 0, 0x80, 0x01, 0x44, 0x33, 0x22, 0x11]), r1, c2, dhv]);
    expect(bi).toEqual(hand2);
    expect(auth.parseAuthMessage(bi)).toMatchObject({ type: 'reply', challenge: c2, seqnum: 0x11223344, dhv });
  });

  it('Success1 (RVALID, R2), Success2 and the Failure messages', () => {
    const r2 = range(1, 65);
    const s1 = auth.encodeSuccess1({ tid: 9, hl: 64, response: r2 });
    expect(s1).toEqual(Buffer.concat([Buffer.from([0x01, 0x03, 0, 0, 9, 0, 64, 0, 1, 0, 0, 0, 0, 0, 0, 0]), r2]));
    expect(auth.parseAuthMessage(s1)).toEqual({ type: 'success1', tid: 9, hl: 64, response: r2 });
    const s1u = auth.encodeSuccess1({ tid: 9, hl: 32 });
    expect(s1u).toEqual(Buffer.concat([Buffer.from([0x01, 0x03, 0, 0, 9, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Buffer.alloc(32)]));
    expect(auth.parseAuthMessage(s1u)).toEqual({ type: 'success1', tid: 9, hl: 32, response: undefined });
    expect(auth.encodeSuccess2({ tid: 9 })).toEqual(Buffer.from([0x01, 0x04, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    expect(auth.encodeFailure({ type: 'failure2', tid: 9, reason: 1 })).toEqual(Buffer.from([0x00, 0xf0, 0, 0, 9, 0, 0x01, 0x01]));
    expect(auth.encodeFailure({ type: 'failure1', tid: 9, reason: 4 })).toEqual(Buffer.from([0x00, 0xf1, 0, 0, 9, 0, 0x01, 0x04]));
    expect(auth.parseAuthMessage(Buffer.from([0x00, 0xf1, 0, 0, 9, 0, 0x01, 0x05, 0xee]))).toEqual({ type: 'failure1', tid: 9, rc: 1, reason: 5 });
  });

  it('refuses unknown types and IDs and impossible hash lengths with the reason to answer', () => {
    const bad = (b: number[]) => {
      try {
        auth.parseAuthMessage(Buffer.from([...b, ...Array(16).fill(0)]));
      } catch (e) {
        return (e as auth.AuthMessageError).reason;
      }
      return undefined;
    };
    expect(bad([0x02, 0x01])).toBe(auth.AuthFailureReason.IncorrectMessage);
    expect(bad([0x01, 0x09])).toBe(auth.AuthFailureReason.IncorrectMessage);
    expect(bad([0x01, 0x01, 0, 0, 0, 0, 33])).toBe(auth.AuthFailureReason.IncorrectPayload);
    expect(() => auth.parseAuthMessage(Buffer.alloc(7))).toThrow(/shorter/);
  });
});

describe('Authentication Send/Receive', () => {
  it('opcode 7Fh, FCTYPE 05h/06h, SPSP0 = SPSP1 = 01h, SECP E9h, TL/AL at CDW11', () => {
    const msg = Buffer.alloc(72, 1);
    const send = auth.authSend(msg);
    const s = Buffer.alloc(64);
    s[0] = 0x7f;
    s[1] = 0x40; // PSDT: SGL
    s[4] = 0x05;
    s.set([0x00, 0x01, 0x01, 0xe9, 72, 0, 0, 0], 40);
    expect(send.sqe).toEqual(s);
    expect(send.data).toBe(msg);
    expect(send.kind).toBe('fabrics');
    const recv = auth.authReceive();
    const r = Buffer.from(s);
    r[4] = 0x06;
    r.set([0x00, 0x10, 0, 0], 44);
    expect(recv.sqe).toEqual(r);
    expect(recv.readLength).toBe(4096);
    expect(recv.allocationLength).toBe(true);
    expect(auth.parseAuthSqe(r)).toEqual({ spsp0: 1, spsp1: 1, secp: 0xe9, length: 4096 });
    expect(() => auth.authSend(Buffer.alloc(0))).toThrow(InvalidArgumentError);
    expect(() => auth.authReceive(3)).toThrow(InvalidArgumentError);
  });

  it('parseAuthSqe refuses a buffer shorter than an SQE with NVMEOF_ERR_INVALID_ARGUMENT, not a RangeError (found by fuzzing)', () => {
    for (const n of [0, 8, 44, 47, 63]) expect(() => auth.parseAuthSqe(Buffer.alloc(n))).toThrow(InvalidArgumentError);
    expect(() => auth.parseAuthSqe('x' as unknown as Uint8Array)).toThrow(InvalidArgumentError);
  });
});
