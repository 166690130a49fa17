/**
 * NVMe/TCP pre-shared keys for TLS 1.3 (NVMe TCP Transport, "Transport Layer Security"; TP 8011/8018): the PSK
 * interchange format, the retained PSK, the TLS PSK identity (v0 and v1) and the TLS PSK derived from them.
 *
 * Pure functions over bytes and strings: nothing here touches a socket. Errors name what is wrong, never key bytes.
 */
import { Buffer } from 'node:buffer';
import { createHmac, hkdfSync } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

/** Hash of a PSK and of the TLS cipher suite it is used with. */
export type TlsPskHash = 'sha256' | 'sha384';

/** How the retained PSK and the TLS PSK are derived. */
export type TlsPskDerivation = 'rfc8446' | 'libnvme-compat';

/** PSK identity format: v0 `NVMe0R0H <hostnqn> <subnqn>`, v1 adds the PSK digest. */
export type TlsIdentityVersion = 'v0' | 'v1';

/** A parsed `NVMeTLSkey-1:HH:…:` interchange key. */
export interface TlsInterchangeKey {
  /** The PSK hash HH: 0 = the configured PSK is used as the retained PSK, 1 = SHA-256, 2 = SHA-384. */
  hmac: 0 | 1 | 2;
  /** Hash of the cipher suite the key is used with (from HH, or from the key length when HH is 0). */
  hash: TlsPskHash;
  /** The configured PSK (32 or 48 bytes). */
  key: Buffer;
}

const HASH_LEN: Record<TlsPskHash, number> = { sha256: 32, sha384: 48 };
/** The hash specifier of an identity and of a v1 context: 01 SHA-256, 02 SHA-384. */
const HASH_ID: Record<TlsPskHash, string> = { sha256: '01', sha384: '02' };

/** CRC-32 (IEEE 802.3, reflected 0xEDB88320) as the interchange format appends it. */
let crcTable: Uint32Array | undefined;
export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const KEY_RE = /^NVMeTLSkey-1:(0[0-2]):([A-Za-z0-9+/]+={0,2}):$/;

/**
 * Parse `NVMeTLSkey-1:HH:base64(key || crc32le(key)):`. HH 01 needs a 32-byte key, 02 a 48-byte key, 00 either
 * (the key is then used untransformed). The CRC is checked.
 */
export function parseTlsKey(text: string): TlsInterchangeKey {
  if (typeof text !== 'string') throw new InvalidArgumentError('tls.key must be a string NVMeTLSkey-1:HH:<base64>:');
  const m = KEY_RE.exec(text.trim());
  if (!m) throw new InvalidArgumentError('tls.key is not in the PSK interchange format NVMeTLSkey-1:HH:<base64>: (HH 00, 01 or 02)');
  const hmac = Number(m[1]) as 0 | 1 | 2;
  const raw = Buffer.from(m[2]!, 'base64');
  if (raw.length !== 36 && raw.length !== 52) {
    throw new InvalidArgumentError(`tls.key holds ${raw.length - 4 > 0 ? raw.length - 4 : 0} key bytes; a PSK is 32 or 48 bytes`);
  }
  const key = raw.subarray(0, raw.length - 4);
  if (crc32(key) !== raw.readUInt32LE(raw.length - 4)) throw new InvalidArgumentError('tls.key fails its CRC-32 check (mistyped or truncated key)');
  const byLength: TlsPskHash = key.length === 32 ? 'sha256' : 'sha384';
  if (hmac === 1 && key.length !== 32) throw new InvalidArgumentError('tls.key with hash 01 (SHA-256) must hold 32 bytes');
  if (hmac === 2 && key.length !== 48) throw new InvalidArgumentError('tls.key with hash 02 (SHA-384) must hold 48 bytes');
  return { hmac, hash: hmac === 0 ? byLength : hmac === 1 ? 'sha256' : 'sha384', key: Buffer.from(key) };
}

/** Format a configured PSK as `NVMeTLSkey-1:HH:base64(key || crc32le):`. */
export function formatTlsKey(key: Uint8Array, hmac: 0 | 1 | 2): string {
  if (key.length !== 32 && key.length !== 48) throw new InvalidArgumentError('a TLS PSK is 32 or 48 bytes');
  if ((hmac === 1 && key.length !== 32) || (hmac === 2 && key.length !== 48)) throw new InvalidArgumentError(`hash ${hmac} does not match a ${key.length}-byte key`);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(key));
  return `NVMeTLSkey-1:0${hmac}:${Buffer.concat([key, crc]).toString('base64')}:`;
}

/** TLS 1.3 HkdfLabel (RFC 8446 section 7.1): uint16 length, opaque label<7..255> = "tls13 " + label, opaque context<0..255>. */
export function hkdfLabel(length: number, label: string, context: Uint8Array): Buffer {
  const l = Buffer.from(`tls13 ${label}`, 'latin1');
  if (l.length > 255 || context.length > 255) throw new InvalidArgumentError('HKDF label or context longer than 255 bytes');
  const out = Buffer.alloc(4 + l.length + context.length);
  out.writeUInt16BE(length, 0);
  out[2] = l.length;
  l.copy(out, 3);
  out[3 + l.length] = context.length;
  Buffer.from(context).copy(out, 4 + l.length);
  return out;
}

/** The info of older libnvme's derivation: a little-endian length and the label and context without their lengths. */
function compatInfo(length: number, label: string, context: Uint8Array): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16LE(length);
  return Buffer.concat([len, Buffer.from(`tls13 ${label}`, 'latin1'), context]);
}

/** HKDF-Extract(0, ikm) then HKDF-Expand(prk, info, length): the NVMe derivations' two steps (RFC 5869). */
function hkdf(hash: TlsPskHash, ikm: Uint8Array, info: Uint8Array, length: number): Buffer {
  return Buffer.from(hkdfSync(hash, ikm, Buffer.alloc(0), info, length));
}

/**
 * Retained PSK = HKDF-Expand-Label(HKDF-Extract(0, configured), "HostNQN", hostnqn, Length(configured)) with the
 * key's hash; HH 00 uses the configured PSK as it is.
 */
export function deriveRetainedPsk(key: TlsInterchangeKey, hostnqn: string, derivation: TlsPskDerivation = 'rfc8446'): Buffer {
  if (key.hmac === 0) return Buffer.from(key.key);
  const ctx = Buffer.from(hostnqn, 'utf8');
  const info = derivation === 'rfc8446' ? hkdfLabel(key.key.length, 'HostNQN', ctx) : compatInfo(key.key.length, 'HostNQN', ctx);
  return hkdf(key.hash, key.key, info, key.key.length);
}

/** The v1 identity's PSK digest: base64(HMAC-hash(retained, hostnqn ‖ " " ‖ subnqn ‖ " " ‖ "NVMe-over-Fabrics")). */
export function tlsPskDigest(retained: Uint8Array, hash: TlsPskHash, hostnqn: string, subnqn: string): string {
  return createHmac(hash, retained).update(`${hostnqn} ${subnqn} NVMe-over-Fabrics`, 'utf8').digest('base64');
}

/** The TLS PSK identity: `NVMe0R0H <hostnqn> <subnqn>` (v0) or `NVMe1R0H <hostnqn> <subnqn> <digest>` (v1). */
export function tlsPskIdentity(version: TlsIdentityVersion, hash: TlsPskHash, hostnqn: string, subnqn: string, digest?: string): string {
  if (version === 'v0') return `NVMe0R${HASH_ID[hash]} ${hostnqn} ${subnqn}`;
  if (digest === undefined) throw new InvalidArgumentError('a v1 PSK identity needs the PSK digest');
  return `NVMe1R${HASH_ID[hash]} ${hostnqn} ${subnqn} ${digest}`;
}

/**
 * TLS PSK = HKDF-Expand-Label(HKDF-Extract(0, retained), "nvme-tls-psk", context, L), with the cipher suite's hash
 * and L its output length. The context is the identity (v0) or "HH <digest>" (v1).
 */
export function deriveTlsPsk(retained: Uint8Array, hash: TlsPskHash, context: string, derivation: TlsPskDerivation = 'rfc8446'): Buffer {
  const len = retained.length;
  const ctx = Buffer.from(context, 'utf8');
  const info = derivation === 'rfc8446' ? hkdfLabel(len, 'nvme-tls-psk', ctx) : compatInfo(len, 'nvme-tls-psk', ctx);
  return hkdf(hash, retained, info, len);
}

/** What a host offers in the TLS handshake for one subsystem. */
export interface TlsPskCredentials {
  /** PSK identity sent in the ClientHello. */
  identity: string;
  /** The TLS PSK (32 bytes for SHA-256, 48 for SHA-384). */
  psk: Buffer;
  /** Hash of the PSK and of the only cipher suite it can be used with. */
  hash: TlsPskHash;
}

/** Derive the identity and TLS PSK a host offers to `subnqn`, as libnvme (and SPDK, for v0) derive them. */
export function deriveTlsCredentials(o: {
  key: TlsInterchangeKey;
  hostnqn: string;
  subnqn: string;
  identity?: TlsIdentityVersion;
  derivation?: TlsPskDerivation;
}): TlsPskCredentials {
  const version = o.identity ?? 'v0';
  const derivation = o.derivation ?? 'rfc8446';
  const retained = deriveRetainedPsk(o.key, o.hostnqn, derivation);
  const hash = o.key.hash;
  if (retained.length !== HASH_LEN[hash]) throw new InvalidArgumentError('the PSK length does not match its hash');
  if (version === 'v0') {
    const identity = tlsPskIdentity('v0', hash, o.hostnqn, o.subnqn);
    return { identity, psk: deriveTlsPsk(retained, hash, identity, derivation), hash };
  }
  const digest = tlsPskDigest(retained, hash, o.hostnqn, o.subnqn);
  const identity = tlsPskIdentity('v1', hash, o.hostnqn, o.subnqn, digest);
  return { identity, psk: deriveTlsPsk(retained, hash, `${HASH_ID[hash]} ${digest}`, derivation), hash };
}
