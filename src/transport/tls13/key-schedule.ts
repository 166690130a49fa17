/**
 * The TLS 1.3 key schedule (RFC 8446 section 7) for an external PSK with (EC)DHE: HKDF-Extract/Expand-Label,
 * Derive-Secret, the PSK binder, Finished, traffic keys and KeyUpdate. Pure functions over node:crypto.
 */
import { Buffer } from 'node:buffer';
import { createHash, createHmac } from 'node:crypto';
import { hkdfLabel, type TlsPskHash } from '../../protocol/tls-psk.js';

/** A cipher suite this client speaks. */
export interface CipherSuite {
  /** IANA value: 0x1301 TLS_AES_128_GCM_SHA256, 0x1302 TLS_AES_256_GCM_SHA384. */
  id: number;
  name: 'TLS_AES_128_GCM_SHA256' | 'TLS_AES_256_GCM_SHA384';
  hash: TlsPskHash;
  hashLen: number;
  /** node:crypto cipher name. */
  aead: 'aes-128-gcm' | 'aes-256-gcm';
  keyLen: number;
}

export const TLS_AES_128_GCM_SHA256: CipherSuite = { id: 0x1301, name: 'TLS_AES_128_GCM_SHA256', hash: 'sha256', hashLen: 32, aead: 'aes-128-gcm', keyLen: 16 };
export const TLS_AES_256_GCM_SHA384: CipherSuite = { id: 0x1302, name: 'TLS_AES_256_GCM_SHA384', hash: 'sha384', hashLen: 48, aead: 'aes-256-gcm', keyLen: 32 };

/** The suite an NVMe PSK of this hash is used with (a PSK is bound to its hash, RFC 8446 4.2.11). */
export function suiteForHash(hash: TlsPskHash): CipherSuite {
  return hash === 'sha256' ? TLS_AES_128_GCM_SHA256 : TLS_AES_256_GCM_SHA384;
}

export function hash(h: TlsPskHash, ...parts: Uint8Array[]): Buffer {
  const c = createHash(h);
  for (const p of parts) c.update(p);
  return c.digest();
}

export function hmac(h: TlsPskHash, key: Uint8Array, data: Uint8Array): Buffer {
  return createHmac(h, key).update(data).digest();
}

/** HKDF-Extract(salt, IKM) = HMAC(salt, IKM); an empty salt or IKM stands for HashLen zero bytes. */
export function hkdfExtract(h: TlsPskHash, salt: Uint8Array | undefined, ikm: Uint8Array | undefined): Buffer {
  const len = h === 'sha256' ? 32 : 48;
  return hmac(h, salt && salt.length ? salt : Buffer.alloc(len), ikm && ikm.length ? ikm : Buffer.alloc(len));
}

/** HKDF-Expand (RFC 5869 2.3). */
export function hkdfExpand(h: TlsPskHash, prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  const out: Buffer[] = [];
  let t: Buffer = Buffer.alloc(0);
  let total = 0;
  for (let i = 1; total < length; i++) {
    t = createHmac(h, prk).update(t).update(info).update(Buffer.of(i)).digest();
    out.push(t);
    total += t.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

export function hkdfExpandLabel(h: TlsPskHash, secret: Uint8Array, label: string, context: Uint8Array, length: number): Buffer {
  return hkdfExpand(h, secret, hkdfLabel(length, label, context), length);
}

/** Derive-Secret(Secret, Label, Messages) with the transcript hash already computed. */
export function deriveSecret(h: TlsPskHash, secret: Uint8Array, label: string, transcriptHash: Uint8Array): Buffer {
  return hkdfExpandLabel(h, secret, label, transcriptHash, transcriptHash.length);
}

export function emptyHash(h: TlsPskHash): Buffer {
  return hash(h);
}

/** finished_key = HKDF-Expand-Label(BaseKey, "finished", "", Hash.length); verify_data = HMAC(finished_key, hash). */
export function finishedKey(h: TlsPskHash, baseKey: Uint8Array): Buffer {
  return hkdfExpandLabel(h, baseKey, 'finished', Buffer.alloc(0), h === 'sha256' ? 32 : 48);
}

export function verifyData(h: TlsPskHash, baseKey: Uint8Array, transcriptHash: Uint8Array): Buffer {
  return hmac(h, finishedKey(h, baseKey), transcriptHash);
}

/** Early Secret = HKDF-Extract(0, PSK). */
export function earlySecret(h: TlsPskHash, psk: Uint8Array): Buffer {
  return hkdfExtract(h, undefined, psk);
}

/** binder_key: "ext binder" for an external PSK, "res binder" for a resumption PSK. */
export function binderKey(h: TlsPskHash, early: Uint8Array, kind: 'ext' | 'res' = 'ext'): Buffer {
  return deriveSecret(h, early, `${kind} binder`, emptyHash(h));
}

/** Handshake Secret = HKDF-Extract(Derive-Secret(early, "derived", ""), (EC)DHE). */
export function handshakeSecret(h: TlsPskHash, early: Uint8Array, shared: Uint8Array): Buffer {
  return hkdfExtract(h, deriveSecret(h, early, 'derived', emptyHash(h)), shared);
}

/** Master Secret = HKDF-Extract(Derive-Secret(handshake, "derived", ""), 0). */
export function masterSecret(h: TlsPskHash, hs: Uint8Array): Buffer {
  return hkdfExtract(h, deriveSecret(h, hs, 'derived', emptyHash(h)), undefined);
}

/** Record protection key and IV of a traffic secret (RFC 8446 7.3). */
export function trafficKeys(suite: CipherSuite, secret: Uint8Array): { key: Buffer; iv: Buffer } {
  return {
    key: hkdfExpandLabel(suite.hash, secret, 'key', Buffer.alloc(0), suite.keyLen),
    iv: hkdfExpandLabel(suite.hash, secret, 'iv', Buffer.alloc(0), 12),
  };
}

/** application_traffic_secret_N+1 (RFC 8446 7.2). */
export function nextTrafficSecret(h: TlsPskHash, secret: Uint8Array): Buffer {
  return hkdfExpandLabel(h, secret, 'traffic upd', Buffer.alloc(0), h === 'sha256' ? 32 : 48);
}
