import { Buffer } from 'node:buffer';
import { createPrivateKey, createPublicKey, diffieHellman } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  TLS_AES_128_GCM_SHA256,
  binderKey,
  deriveSecret,
  earlySecret,
  emptyHash,
  finishedKey,
  handshakeSecret,
  hkdfExpandLabel,
  masterSecret,
  nextTrafficSecret,
  trafficKeys,
  verifyData,
} from '../src/transport/tls13/key-schedule.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// RFC 8448 section 3 ("Simple 1-RTT Handshake"), values written out from the trace.
const S3 = {
  clientPriv: hex('49 af 42 ba 7f 79 94 85 2d 71 3e f2 78 4b cb ca a7 91 1d e2 6a dc 56 42 cb 63 45 40 e7 ea 50 05'),
  serverPub: hex('c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72 e1 56 d6 cc 25 3b 83 3d f1 dd 69 b1 b0 4e 75 1f 0f'),
  shared: hex('8b d4 05 4f b5 5b 9d 63 fd fb ac f9 f0 4b 9f 0d 35 e6 d6 3f 53 75 63 ef d4 62 72 90 0f 89 49 2d'),
  early: hex('33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a'),
  derived: hex('6f 26 15 a1 08 c7 02 c5 67 8f 54 fc 9d ba b6 97 16 c0 76 18 9c 48 25 0c eb ea c3 57 6c 36 11 ba'),
  handshake: hex('1d c8 26 e9 36 06 aa 6f dc 0a ad c1 2f 74 1b 01 04 6a a6 b9 9f 69 1e d2 21 a9 f0 ca 04 3f be ac'),
  chShHash: hex('86 0c 06 ed c0 78 58 ee 8e 78 f0 e7 42 8c 58 ed d6 b4 3f 2c a3 e6 e9 5f 02 ed 06 3c f0 e1 ca d8'),
  cHs: hex('b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21'),
  sHs: hex('b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38'),
  sFinishedKey: hex('00 8d 3b 66 f8 16 ea 55 9f 96 b5 37 e8 85 c3 1f c0 68 bf 49 2c 65 2f 01 f2 88 a1 d8 cd c1 9f c8'),
  master: hex('18 df 06 84 3d 13 a0 8b f2 a4 49 84 4c 5f 8a 47 80 01 bc 4d 4c 62 79 84 d5 a4 1d a8 d0 40 29 19'),
  cAp0: hex('9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5'),
};

// RFC 8448 section 4 ("Resumed 0-RTT Handshake"): a PSK, its binder and early traffic keys.
const S4 = {
  psk: hex('4e cd 0e b6 ec 3b 4d 87 f5 d6 02 8f 92 2c a4 c5 85 1a 27 7f d4 13 11 c9 e6 2d 2c 94 92 e1 c4 f3'),
  early: hex('9b 21 88 e9 b2 fc 6d 64 d7 1d c3 29 90 0e 20 bb 41 91 50 00 f6 78 aa 83 9c bb 79 7c b7 d8 33 2c'),
  binderKey: hex('69 fe 13 1a 3b ba d5 d6 3c 64 ee bc c3 0e 39 5b 9d 81 07 72 6a 13 d0 74 e3 89 db c8 a4 e4 72 56'),
  binderFinishedKey: hex('55 88 67 3e 72 cb 59 c8 7d 22 0c af fe 94 f2 de a9 a3 b1 60 9f 7d 50 e9 0a 48 22 7d b9 ed 7e aa'),
  truncatedChHash: hex('63 22 4b 2e 45 73 f2 d3 45 4c a8 4b 9d 00 9a 04 f6 be 9e 05 71 1a 83 96 47 3a ef a0 1e 92 4a 14'),
  binder: hex('3a dd 4f b2 d8 fd f8 22 a0 ca 3c f7 67 8e f5 e8 8d ae 99 01 41 c5 92 4d 57 bb 6f a3 1b 9e 5f 9d'),
  chHash: hex('08 ad 0f a0 5d 7c 72 33 b1 77 5b a2 ff 9f 4c 5b 8b 59 27 6b 7f 22 7f 13 a9 76 24 5f 5d 96 09 13'),
  cEarly: hex('3f bb e6 a6 0d eb 66 c3 0a 32 79 5a ba 0e ff 7e aa 10 10 55 86 e7 be 5c 09 67 8d 63 b6 ca ab 62'),
  cEarlyKey: hex('92 02 05 a5 b7 bf 21 15 e6 fc 5c 29 42 83 4f 54'),
  cEarlyIv: hex('6d 47 5f 09 93 c8 e5 64 61 0d b2 b9'),
};

describe('TLS 1.3 key schedule (RFC 8448)', () => {
  it('section 3: X25519 shared secret, early/handshake/master secrets, handshake traffic secrets, Finished key', () => {
    // RFC 7748 private keys as PKCS#8 DER (fixed 16-byte prefix for X25519).
    const priv = createPrivateKey({ key: Buffer.concat([hex('302e020100300506032b656e04220420'), S3.clientPriv]), format: 'der', type: 'pkcs8' });
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: S3.serverPub.toString('base64url') }, format: 'jwk' });
    expect(diffieHellman({ privateKey: priv, publicKey: pub })).toEqual(S3.shared);
    const early = earlySecret('sha256', Buffer.alloc(0));
    expect(early).toEqual(S3.early);
    expect(deriveSecret('sha256', early, 'derived', emptyHash('sha256'))).toEqual(S3.derived);
    const hs = handshakeSecret('sha256', early, S3.shared);
    expect(hs).toEqual(S3.handshake);
    expect(deriveSecret('sha256', hs, 'c hs traffic', S3.chShHash)).toEqual(S3.cHs);
    expect(deriveSecret('sha256', hs, 's hs traffic', S3.chShHash)).toEqual(S3.sHs);
    expect(finishedKey('sha256', S3.sHs)).toEqual(S3.sFinishedKey);
    expect(masterSecret('sha256', hs)).toEqual(S3.master);
  });

  it('section 4: PSK early secret, binder key, binder, early traffic key and IV', () => {
    const early = earlySecret('sha256', S4.psk);
    expect(early).toEqual(S4.early);
    // The trace resumes a session, so its binder key uses "res binder"; an external PSK uses "ext binder".
    const bk = binderKey('sha256', early, 'res');
    expect(bk).toEqual(S4.binderKey);
    expect(finishedKey('sha256', bk)).toEqual(S4.binderFinishedKey);
    expect(verifyData('sha256', bk, S4.truncatedChHash)).toEqual(S4.binder);
    expect(binderKey('sha256', early, 'ext')).not.toEqual(S4.binderKey);
    const ce = deriveSecret('sha256', early, 'c e traffic', S4.chHash);
    expect(ce).toEqual(S4.cEarly);
    expect(trafficKeys(TLS_AES_128_GCM_SHA256, ce)).toEqual({ key: S4.cEarlyKey, iv: S4.cEarlyIv });
  });

  it('KeyUpdate: the next secret is HKDF-Expand-Label(secret, "traffic upd", "", Hash.length)', () => {
    // Expected value computed with OpenSSL (`openssl kdf -kdfopt mode:EXPAND_ONLY -kdfopt digest:SHA256 -kdfopt
    // hexkey:<cAp0> -kdfopt hexinfo:0020 11 "tls13 traffic upd" 00 HKDF`), not with the code under test.
    expect(nextTrafficSecret('sha256', S3.cAp0).toString('hex')).toBe(EXPECTED_TRAFFIC_UPD);
  });

  it('SHA-384 labels have the 48-byte length prefix', () => {
    const s = Buffer.alloc(48, 1);
    expect(hkdfExpandLabel('sha384', s, 'finished', Buffer.alloc(0), 48)).toHaveLength(48);
    expect(finishedKey('sha384', s)).toEqual(hkdfExpandLabel('sha384', s, 'finished', Buffer.alloc(0), 48));
  });
});

const EXPECTED_TRAFFIC_UPD = 'fcdfcc72725aaee48bf64e4fd8b749cdbdbab39d90da0b26e2245ca6ea167207';
