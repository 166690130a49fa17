import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import {
  crc32,
  deriveRetainedPsk,
  deriveTlsCredentials,
  deriveTlsPsk,
  formatTlsKey,
  hkdfLabel,
  parseTlsKey,
  tlsPskDigest,
  tlsPskIdentity,
} from '../src/protocol/tls-psk.js';
import { ErrorCode } from '../src/errors.js';

// libnvme test/psk.c: the configured PSK 55 12 DB B6 … 5B 03 and its interchange forms (HH 00 / 01 for the 32-byte
// key, 02 for the 48-byte key that repeats bytes 16..31).
const KEY32 = Buffer.from('5512DBB6737D0106F65975B773DFB011FFC344BCF442E2DD6D8BC4870B5D5B03', 'hex');
const KEY48 = Buffer.from('5512DBB6737D0106F65975B773DFB011FFC344BCF442E2DD6D8BC4870B5D5B03FFC344BCF442E2DD6D8BC4870B5D5B03', 'hex');
const K00 = 'NVMeTLSkey-1:00:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:';
const K01 = 'NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:';
const K02 = 'NVMeTLSkey-1:02:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwP/w0S89ELi3W2LxIcLXVsDn8kXZQ==:';

// The NQNs of the NVMe TCP specification's example (also used by SPDK's TLS tests).
const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6';
const SUBNQN = 'nqn.2014-08.org.nvmexpress:uuid:36ebf5a9-1df9-47b3-a6d0-e9ba32e428a2';

// Expected values below were computed with OpenSSL's own HKDF and HMAC (`openssl kdf … HKDF`, `openssl dgst -mac
// HMAC`) from the info bytes the NVMe TCP specification and libnvme's derive_retained_key()/derive_tls_key() (and
// their _compat variants) lay out, not with the code under test.
const KAT = {
  sha256: {
    retained: 'f0af1bc718d4f23bdd7c1683a3d79bd953ea789d106a0f5207bb574bbe5446ce',
    retainedCompat: 'c8304c516f121bc4cd37c9d434635c70ed18c8809004448c3d7ff17b8265ac5e',
    tlsV0: '8e981666c96a88ef69f6e6a0460ff77ba9039e3d38cbdeee264c4de09d75d246',
    tlsV0Compat: 'be4ef89f73206dc2b64f95a33f73318a0064758aa0dab40f38f269c336b359c5',
    digest: 'E7SfPmB1H5RQCPDO/jPElNLoNkv7agzvJauAf6yCO9E=',
    tlsV1: '5a21fd02f19a9eaec7b166edabff907304b7625b7927d7398f9d654dff4087f7',
  },
  sha384: {
    retained: 'e42f24faf45337718cfd5068c928d40d4d22b7a915a47bc50280933f9530c5d64980ecfefb890b0b59016a3781c6b93e',
    retainedCompat: '09f7fc62e97110b0e54749daac3c7a7923623bb7c9ad5f4dcb3ba5a5f541dd80c95f42eb3240601b3db14121761b5f34',
    tlsV0: '051e9924174204ffcd2c29216827b8714da37a8734e483aff6ba9d821371a91f4c1536cf74514848c7a19d478a627af1',
    tlsV0Compat: '1d893f1708d9ae897cf9c6a525a037f4e9bebfdd8b49e50ddd5f236bb2cd432fb626ce7e585a79c17ac3581a051fa7f6',
    digest: 'VBVoKmkv4uYslaZD4DgAzhaFB3IRHvt+41ckH4rG0i3lgYK4XjkIjIED+k5sCf9u',
    tlsV1: 'c93e6ca8ea4b0ec73d66f852fb33c6ba40543dc5bae088408968ffcca01e1eb763d32c3325aaa76747ec1fef8f85d4d9',
  },
};

describe('PSK interchange format', () => {
  it('CRC-32 gives the check value 0xCBF43926 for "123456789"', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
  });

  it('imports libnvme test/psk.c keys (00, 01, 02)', () => {
    expect(parseTlsKey(K00)).toEqual({ hmac: 0, hash: 'sha256', key: KEY32 });
    expect(parseTlsKey(K01)).toEqual({ hmac: 1, hash: 'sha256', key: KEY32 });
    expect(parseTlsKey(K02)).toEqual({ hmac: 2, hash: 'sha384', key: KEY48 });
  });

  it('exports them to the same strings', () => {
    expect(formatTlsKey(KEY32, 0)).toBe(K00);
    expect(formatTlsKey(KEY32, 1)).toBe(K01);
    expect(formatTlsKey(KEY48, 2)).toBe(K02);
  });

  it('refuses a bad CRC, a wrong length for HH, other prefixes, and never echoes the key', () => {
    // Last base64 group changed: the CRC no longer matches.
    const badCrc = 'NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrA:';
    const cases = [badCrc, K02.replace(':02:', ':01:'), K01.replace(':01:', ':02:'), K01.replace(':01:', ':03:'), 'DHHC-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:', 'NVMeTLSkey-1:01:AAAA:'];
    for (const c of cases) {
      let err: unknown;
      try {
        parseTlsKey(c);
      } catch (e) {
        err = e;
      }
      expect(err, c).toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
      expect((err as Error).message).not.toContain('VRLbtnN9');
    }
    expect(() => parseTlsKey(badCrc)).toThrow(/CRC-32/);
  });
});

describe('HkdfLabel', () => {
  it('lays out uint16 length, length-prefixed "tls13 "+label and context (RFC 8446 7.1)', () => {
    expect(hkdfLabel(32, 'key', Buffer.alloc(0)).toString('hex')).toBe('0020' + '09' + Buffer.from('tls13 key').toString('hex') + '00');
    expect(hkdfLabel(0x30, 'HostNQN', Buffer.from('h')).toString('hex')).toBe('0030' + '0d' + Buffer.from('tls13 HostNQN').toString('hex') + '01' + '68');
  });
});

describe('retained PSK, identity and TLS PSK', () => {
  for (const [hash, key, text] of [
    ['sha256', KEY32, K01],
    ['sha384', KEY48, K02],
  ] as const) {
    const kat = KAT[hash];
    const hh = hash === 'sha256' ? '01' : '02';
    it(`${hash}: retained PSK (HostNQN) in both derivations`, () => {
      const k = parseTlsKey(text);
      expect(k.key).toEqual(key);
      expect(deriveRetainedPsk(k, HOSTNQN).toString('hex')).toBe(kat.retained);
      expect(deriveRetainedPsk(k, HOSTNQN, 'libnvme-compat').toString('hex')).toBe(kat.retainedCompat);
    });

    it(`${hash}: v0 identity and TLS PSK`, () => {
      const id = tlsPskIdentity('v0', hash, HOSTNQN, SUBNQN);
      expect(id).toBe(`NVMe0R${hh} ${HOSTNQN} ${SUBNQN}`);
      expect(deriveTlsPsk(Buffer.from(kat.retained, 'hex'), hash, id).toString('hex')).toBe(kat.tlsV0);
      expect(deriveTlsCredentials({ key: parseTlsKey(text), hostnqn: HOSTNQN, subnqn: SUBNQN })).toEqual({ identity: id, psk: Buffer.from(kat.tlsV0, 'hex'), hash });
      expect(deriveTlsCredentials({ key: parseTlsKey(text), hostnqn: HOSTNQN, subnqn: SUBNQN, derivation: 'libnvme-compat' }).psk.toString('hex')).toBe(kat.tlsV0Compat);
    });

    it(`${hash}: v1 identity with the PSK digest and its TLS PSK`, () => {
      expect(tlsPskDigest(Buffer.from(kat.retained, 'hex'), hash, HOSTNQN, SUBNQN)).toBe(kat.digest);
      const c = deriveTlsCredentials({ key: parseTlsKey(text), hostnqn: HOSTNQN, subnqn: SUBNQN, identity: 'v1' });
      expect(c.identity).toBe(`NVMe1R${hh} ${HOSTNQN} ${SUBNQN} ${kat.digest}`);
      expect(c.psk.toString('hex')).toBe(kat.tlsV1);
    });
  }

  it('HH 00 uses the configured key as the retained PSK (SPDK identity format for SHA-256)', () => {
    const k = parseTlsKey(K00);
    expect(deriveRetainedPsk(k, HOSTNQN)).toEqual(KEY32);
    // SPDK's unit test (test/unit/lib/nvmf/tcp.c) expects this identity string.
    expect(tlsPskIdentity('v0', 'sha256', 'nqn.2016-06.io.spdk:host1', 'nqn.2016-06.io.spdk:cnode1')).toBe('NVMe0R01 nqn.2016-06.io.spdk:host1 nqn.2016-06.io.spdk:cnode1');
  });
});
