/**
 * DH-HMAC-CHAP in-band authentication (NVMe Base 2.x, "DH-HMAC-CHAP protocol"; NVMe over Fabrics Authentication
 * Send/Receive): secret key format, key transformation, the seven messages, the command builders, the RFC 7919 groups
 * and the response computations. Bytes in, values out; the host transaction lives in host/auth.ts and the embedded
 * target's in target/auth.ts.
 *
 * Messages (all little-endian):
 *   AUTH_Negotiate  00 00 rsvd[2] T_ID[2] SC_C NAPD, then NAPD descriptors of 64 bytes:
 *                   AUTHID(01h) rsvd HALEN DHLEN IDLIST[60] (hash IDs from IDLIST[0], DH group IDs from IDLIST[30])
 *   Challenge       01 01 rsvd[2] T_ID[2] HL rsvd HASHID DHGID DHVLEN[2] SEQNUM[4] C1[HL] DHV[DHVLEN]
 *   Reply           01 02 rsvd[2] T_ID[2] HL rsvd CVALID rsvd DHVLEN[2] SEQNUM[4] R1[HL] C2[HL] DHV[DHVLEN]
 *   Success1        01 03 rsvd[2] T_ID[2] HL rsvd RVALID rsvd[7] R2[HL]
 *   Success2        01 04 rsvd[2] T_ID[2] rsvd[10]
 *   AUTH_Failure1/2 00 F1/F0 rsvd[2] T_ID[2] RC REXPL
 */
import { Buffer } from 'node:buffer';
import { createDiffieHellman, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AuthError, InvalidArgumentError, ProtocolError } from '../errors.js';
import { FABRICS_OPCODE, FabricsType } from './constants.js';
import type { NvmeCommand } from './commands.js';
import { checkSqeBuffer, encodeSqe, SqeOffset } from './sqe.js';
import { FFDHE2048_PRIME, FFDHE3072_PRIME, FFDHE4096_PRIME, FFDHE6144_PRIME, FFDHE8192_PRIME } from './ffdhe.js';

// ---------------------------------------------------------------------------------------------
// Identifiers

/** Hash functions of DH-HMAC-CHAP. */
export type DhchapHash = 'sha256' | 'sha384' | 'sha512';
/** Diffie-Hellman groups of DH-HMAC-CHAP ('null' = no DH exchange). */
export type DhchapGroup = 'null' | 'ffdhe2048' | 'ffdhe3072' | 'ffdhe4096' | 'ffdhe6144' | 'ffdhe8192';

/** Hash identifiers (Negotiate HASH ID list, Challenge HASHID) and the key transform hash HH. */
export const DhchapHashId: Readonly<Record<DhchapHash, number>> = { sha256: 1, sha384: 2, sha512: 3 };
/** DH group identifiers (Negotiate DH group ID list, Challenge DHGID). */
export const DhchapGroupId: Readonly<Record<DhchapGroup, number>> = { null: 0, ffdhe2048: 1, ffdhe3072: 2, ffdhe4096: 3, ffdhe6144: 4, ffdhe8192: 5 };

/** Every hash, in the order the host offers them by default. */
export const DHCHAP_HASHES: readonly DhchapHash[] = ['sha256', 'sha384', 'sha512'];
/** Every DH group, in the order the host offers them by default. */
export const DHCHAP_GROUPS: readonly DhchapGroup[] = ['null', 'ffdhe2048', 'ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192'];

const HASH_LENGTH: Readonly<Record<DhchapHash, number>> = { sha256: 32, sha384: 48, sha512: 64 };

/** Digest length in bytes of a hash. */
export function hashLength(hash: DhchapHash): number {
  return HASH_LENGTH[hash];
}

/** The hash of an identifier (1-3), or undefined. */
export function hashById(id: number): DhchapHash | undefined {
  return DHCHAP_HASHES.find((h) => DhchapHashId[h] === id);
}

/** The DH group of an identifier (0-5), or undefined. */
export function groupById(id: number): DhchapGroup | undefined {
  return DHCHAP_GROUPS.find((g) => DhchapGroupId[g] === id);
}

/** AUTH-Type of a message: common messages (Negotiate, Failure1/2) or DH-HMAC-CHAP messages. */
export const AuthType = { Common: 0x00, Dhchap: 0x01 } as const;

/** AUTH-Id of a message. */
export const AuthMessageId = {
  Negotiate: 0x00,
  Challenge: 0x01,
  Reply: 0x02,
  Success1: 0x03,
  Success2: 0x04,
  Failure2: 0xf0,
  Failure1: 0xf1,
} as const;

/** AUTHID of a Negotiate protocol descriptor for DH-HMAC-CHAP. */
export const DHCHAP_AUTH_ID = 0x01;
/** Security Protocol of Authentication Send/Receive: NVMe-oF in-band authentication. */
export const AUTH_SECP = 0xe9;
/** SPSP0 and SPSP1 of Authentication Send/Receive for DH-HMAC-CHAP messages. */
export const AUTH_SPSP = 0x01;
/** Reason code of AUTH_Failure1/2: authentication failure. */
export const AUTH_FAILURE_RC = 0x01;

/** Reason code explanations of AUTH_Failure1/2. */
export const AuthFailureReason = {
  Failed: 0x01,
  ProtocolUnusable: 0x02,
  ConcatMismatch: 0x03,
  HashUnusable: 0x04,
  DhgroupUnusable: 0x05,
  IncorrectPayload: 0x06,
  IncorrectMessage: 0x07,
} as const;

const REASON_TEXT: ReadonlyMap<number, string> = new Map([
  [0x01, 'authentication failed (the response did not prove the expected key)'],
  [0x02, 'authentication protocol not usable'],
  [0x03, 'secure channel concatenation mismatch'],
  [0x04, 'hash function not usable'],
  [0x05, 'DH group not usable'],
  [0x06, 'incorrect payload'],
  [0x07, 'incorrect protocol message'],
]);

/** A reason code explanation in words. */
export function authFailureReasonText(reason: number): string {
  return REASON_TEXT.get(reason) ?? `reason 0x${reason.toString(16).padStart(2, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Secret keys: DHHC-1:HH:base64(secret || crc32le(secret)):

const CRC32_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, the zlib one) used by the DHHC-1 key format. */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC32_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const REDACTED = '[redacted DH-HMAC-CHAP key]';
const inspectCustom = Symbol.for('nodejs.util.inspect.custom');
const keyBytes = new WeakMap<DhchapKey, Buffer>();

/**
 * A parsed DH-HMAC-CHAP secret. The secret bytes are not an enumerable property: the object prints, inspects and
 * serialises as "[redacted DH-HMAC-CHAP key]".
 */
export class DhchapKey {
  /** Transform hash HH: 0 none (the secret is used as is), 1-3 SHA-256/384/512. */
  readonly transform: 0 | 1 | 2 | 3;
  /** Secret length in bytes (32, 48 or 64). */
  readonly length: number;

  constructor(secret: Uint8Array, transform: 0 | 1 | 2 | 3) {
    if (!(secret instanceof Uint8Array) || (secret.length !== 32 && secret.length !== 48 && secret.length !== 64)) {
      throw new InvalidArgumentError('a DH-HMAC-CHAP secret must be 32, 48 or 64 bytes');
    }
    if (transform !== 0 && transform !== 1 && transform !== 2 && transform !== 3) throw new InvalidArgumentError('the key transform hash must be 0..3');
    this.transform = transform;
    this.length = secret.length;
    keyBytes.set(this, Buffer.from(secret));
  }

  /** @internal The secret bytes (a copy). */
  secret(): Buffer {
    return Buffer.from(keyBytes.get(this)!);
  }

  /** The key in its interchange form `DHHC-1:HH:base64(secret || crc32le):` (for writing key files). */
  format(): string {
    const s = keyBytes.get(this)!;
    const crc = Buffer.alloc(4);
    crc.writeUInt32LE(crc32(s));
    return `DHHC-1:${this.transform.toString().padStart(2, '0')}:${Buffer.concat([s, crc]).toString('base64')}:`;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspectCustom](): string {
    return REDACTED;
  }
}

/**
 * Parse a secret in the interchange format `DHHC-1:HH:<base64 of secret || CRC-32 little-endian>:` (nvme-cli
 * gen-dhchap-key, Linux nvmet's dhchap_key, SPDK's keyring). The CRC is checked; the secret is 32, 48 or 64 bytes.
 * `name` names the option in errors; errors never contain the key.
 */
export function parseDhchapKey(text: unknown, name = 'dhchap secret'): DhchapKey {
  if (typeof text !== 'string') throw new InvalidArgumentError(`${name} must be a string in the form DHHC-1:HH:<base64>:`);
  const m = /^DHHC-1:(\d\d):([A-Za-z0-9+/]+={0,2}):?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`${name} is not in the form DHHC-1:HH:<base64>: (as nvme gen-dhchap-key prints it)`);
  const hh = Number(m[1]);
  if (hh > 3) throw new InvalidArgumentError(`${name}: key transform hash ${m[1]} is not 00 (none), 01 (SHA-256), 02 (SHA-384) or 03 (SHA-512)`);
  const raw = Buffer.from(m[2]!, 'base64');
  if (raw.length !== 36 && raw.length !== 52 && raw.length !== 68) {
    throw new InvalidArgumentError(`${name}: the key holds ${raw.length} bytes; expected a 32, 48 or 64-byte secret followed by a 4-byte CRC`);
  }
  const secret = raw.subarray(0, raw.length - 4);
  const crc = raw.readUInt32LE(raw.length - 4);
  if (crc32(secret) !== crc) {
    raw.fill(0);
    throw new InvalidArgumentError(`${name}: the key's CRC does not match (the key is mistyped or truncated)`);
  }
  const key = new DhchapKey(secret, hh as 0 | 1 | 2 | 3);
  raw.fill(0);
  return key;
}

const TRANSFORM_HASH = ['', 'sha256', 'sha384', 'sha512'] as const;

/**
 * The transformed key: HMAC-H(secret, nqn || "NVMe-over-Fabrics") with the key's transform hash H, or the secret itself
 * when HH is 0. The host key is transformed with the host NQN, the controller key with the subsystem NQN.
 */
export function transformKey(key: DhchapKey, nqn: string): Buffer {
  const secret = key.secret();
  if (key.transform === 0) return secret;
  const out = createHmac(TRANSFORM_HASH[key.transform], secret).update(nqn, 'utf8').update('NVMe-over-Fabrics', 'latin1').digest();
  secret.fill(0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Responses

/** Ca = HMAC-H(H(g^xy), C): the challenge augmented with the DH session key. */
export function augmentedChallenge(hash: DhchapHash, sessionKey: Uint8Array, challenge: Uint8Array): Buffer {
  const hk = createHash(hash).update(sessionKey).digest();
  return createHmac(hash, hk).update(challenge).digest();
}

/** Inputs of {@link hostResponse} and {@link controllerResponse}. */
export interface ResponseInput {
  /** Negotiated hash. */
  hash: DhchapHash;
  /** Transformed key (Kh for the host response, Kc for the controller response). */
  key: Uint8Array;
  /** The challenge, already augmented when a DH group is in use. */
  challenge: Uint8Array;
  /** S1 (host response) or S2 (controller response). */
  seqnum: number;
  /** Transaction identifier. */
  tid: number;
  hostnqn: string;
  subnqn: string;
}

function response(o: ResponseInput, label: string, first: string, second: string): Buffer {
  const h = createHmac(o.hash, o.key);
  h.update(o.challenge);
  const n = Buffer.alloc(7);
  n.writeUInt32LE(o.seqnum >>> 0, 0);
  n.writeUInt16LE(o.tid & 0xffff, 4);
  n[6] = 0; // SC_C: no secure channel concatenation
  h.update(n);
  h.update(label, 'latin1');
  h.update(first, 'utf8');
  h.update(Buffer.alloc(1));
  h.update(second, 'utf8');
  return h.digest();
}

/** R1 = HMAC(Kh, C1a || le32 S1 || le16 T_ID || 00h || "HostHost" || hostnqn || 00h || subnqn). */
export function hostResponse(o: ResponseInput): Buffer {
  return response(o, 'HostHost', o.hostnqn, o.subnqn);
}

/** R2 = HMAC(Kc, C2a || le32 S2 || le16 T_ID || 00h || "Controller" || subnqn || 00h || hostnqn). */
export function controllerResponse(o: ResponseInput): Buffer {
  return response(o, 'Controller', o.subnqn, o.hostnqn);
}

/** Compare two responses in constant time (false when the lengths differ). */
export function responsesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---------------------------------------------------------------------------------------------
// Diffie-Hellman (RFC 7919 groups, generator 2)

const PRIMES: Readonly<Record<Exclude<DhchapGroup, 'null'>, string>> = {
  ffdhe2048: FFDHE2048_PRIME,
  ffdhe3072: FFDHE3072_PRIME,
  ffdhe4096: FFDHE4096_PRIME,
  ffdhe6144: FFDHE6144_PRIME,
  ffdhe8192: FFDHE8192_PRIME,
};

/** The prime of an RFC 7919 group, big-endian. */
export function groupPrime(group: Exclude<DhchapGroup, 'null'>): Buffer {
  return Buffer.from(PRIMES[group], 'hex');
}

/** Length in bytes of a group's public values (DHVLEN): the prime length; 0 for 'null'. */
export function groupValueLength(group: DhchapGroup): number {
  return group === 'null' ? 0 : PRIMES[group].length / 2;
}

/** Bytes of the private exponent: 512 bits, above twice the strength RFC 7919 gives even ffdhe8192 (200 bits). */
const PRIVATE_BYTES = 64;

function leftPad(b: Buffer, length: number): Buffer {
  if (b.length === length) return b;
  if (b.length > length) throw new AuthError(`a DH value of ${b.length} bytes exceeds the ${length}-byte group`, 'host');
  const out = Buffer.alloc(length);
  b.copy(out, length - b.length);
  return out;
}

/** One side's DH key pair in an RFC 7919 group. */
export class DhchapExchange {
  readonly group: Exclude<DhchapGroup, 'null'>;
  /** Our public value g^x mod p, left-padded to the prime length. */
  readonly publicValue: Buffer;
  private readonly dh: ReturnType<typeof createDiffieHellman>;
  private readonly prime: Buffer;

  /** `privateKey` is for known-answer tests; by default a random 512-bit exponent is used. */
  constructor(group: Exclude<DhchapGroup, 'null'>, privateKey?: Uint8Array) {
    this.group = group;
    this.prime = groupPrime(group);
    this.dh = createDiffieHellman(this.prime, 2);
    let x = privateKey === undefined ? randomBytes(PRIVATE_BYTES) : Buffer.from(privateKey);
    if (privateKey === undefined) x[0]! |= 0x80;
    this.dh.setPrivateKey(x);
    this.dh.generateKeys();
    x.fill(0);
    x = Buffer.alloc(0);
    this.publicValue = leftPad(this.dh.getPublicKey(), this.prime.length);
  }

  /**
   * The session key g^xy mod p (left-padded to the prime length) from the peer's public value. The peer value must be
   * exactly the prime length and lie in 2..p-2.
   */
  sessionKey(peer: Uint8Array): Buffer {
    if (peer.length !== this.prime.length) throw new AuthError(`the peer's DH value is ${peer.length} bytes, the ${this.group} group needs ${this.prime.length}`, 'host');
    const y = BigInt('0x' + (Buffer.from(peer).toString('hex') || '0'));
    const p = BigInt('0x' + this.prime.toString('hex'));
    if (y <= 1n || y >= p - 1n) throw new AuthError(`the peer's DH value is not in 2..p-2 of ${this.group}`, 'host');
    return leftPad(this.dh.computeSecret(peer), this.prime.length);
  }
}

// ---------------------------------------------------------------------------------------------
// Messages

/** AUTH_Negotiate. */
export interface NegotiateMessage {
  type: 'negotiate';
  tid: number;
  /** Secure channel concatenation (0: none). */
  scC: number;
  /** The DH-HMAC-CHAP protocol descriptors offered (normally one). */
  protocols: Array<{ authId: number; hashIds: number[]; dhgroupIds: number[] }>;
}

/** DH-HMAC-CHAP_Challenge. */
export interface ChallengeMessage {
  type: 'challenge';
  tid: number;
  hashId: number;
  dhgroupId: number;
  /** S1. */
  seqnum: number;
  /** C1 (HL bytes). */
  challenge: Buffer;
  /** Controller DH public value (empty for the null group). */
  dhv: Buffer;
}

/** DH-HMAC-CHAP_Reply. */
export interface ReplyMessage {
  type: 'reply';
  tid: number;
  /** R1 (HL bytes). */
  response: Buffer;
  /** C2 when CVALID is set (the host asks the controller to authenticate), else undefined. */
  challenge: Buffer | undefined;
  /** S2 (0 when not bidirectional). */
  seqnum: number;
  /** Host DH public value (empty for the null group). */
  dhv: Buffer;
}

/** DH-HMAC-CHAP_Success1. */
export interface Success1Message {
  type: 'success1';
  tid: number;
  /** HL: the hash length. */
  hl: number;
  /** R2 when RVALID is set, else undefined. */
  response: Buffer | undefined;
}

/** DH-HMAC-CHAP_Success2. */
export interface Success2Message {
  type: 'success2';
  tid: number;
}

/** AUTH_Failure1 (controller to host) or AUTH_Failure2 (host to controller). */
export interface FailureMessage {
  type: 'failure1' | 'failure2';
  tid: number;
  /** Reason code (01h: authentication failure). */
  rc: number;
  /** Reason code explanation ({@link AuthFailureReason}). */
  reason: number;
}

/** Any authentication message. */
export type AuthMessage = NegotiateMessage | ChallengeMessage | ReplyMessage | Success1Message | Success2Message | FailureMessage;

/** Size of one Negotiate protocol descriptor. */
const DESCRIPTOR_SIZE = 64;
/** Offset of the DH group IDs in a descriptor's IDLIST. */
const DH_IDLIST_OFFSET = 30;

function header(type: number, id: number, tid: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  b[0] = type;
  b[1] = id;
  b.writeUInt16LE(tid & 0xffff, 4);
  return b;
}

function checkTid(tid: unknown): number {
  if (!Number.isInteger(tid) || (tid as number) < 0 || (tid as number) > 0xffff) throw new InvalidArgumentError(`T_ID must be 0..65535, got ${String(tid)}`);
  return tid as number;
}

function checkHl(name: string, b: Uint8Array, hl?: number): void {
  if (b.length !== 32 && b.length !== 48 && b.length !== 64) throw new InvalidArgumentError(`${name} must be 32, 48 or 64 bytes, got ${b.length}`);
  if (hl !== undefined && b.length !== hl) throw new InvalidArgumentError(`${name} must be ${hl} bytes, got ${b.length}`);
}

/** AUTH_Negotiate with one DH-HMAC-CHAP descriptor: 72 bytes. */
export function encodeNegotiate(o: { tid: number; hashIds: readonly number[]; dhgroupIds: readonly number[]; scC?: number }): Buffer {
  const tid = checkTid(o.tid);
  if (o.hashIds.length < 1 || o.hashIds.length > 30) throw new InvalidArgumentError('AUTH_Negotiate needs 1..30 hash IDs');
  if (o.dhgroupIds.length < 1 || o.dhgroupIds.length > 30) throw new InvalidArgumentError('AUTH_Negotiate needs 1..30 DH group IDs');
  const b = header(AuthType.Common, AuthMessageId.Negotiate, tid, 8 + DESCRIPTOR_SIZE);
  b[6] = o.scC ?? 0;
  b[7] = 1;
  b[8] = DHCHAP_AUTH_ID;
  b[10] = o.hashIds.length;
  b[11] = o.dhgroupIds.length;
  o.hashIds.forEach((id, i) => (b[12 + i] = id));
  o.dhgroupIds.forEach((id, i) => (b[12 + DH_IDLIST_OFFSET + i] = id));
  return b;
}

/** DH-HMAC-CHAP_Challenge: 16 + HL + DHVLEN bytes. */
export function encodeChallenge(o: { tid: number; hashId: number; dhgroupId: number; seqnum: number; challenge: Uint8Array; dhv?: Uint8Array }): Buffer {
  const tid = checkTid(o.tid);
  checkHl('C1', o.challenge);
  const dhv = o.dhv ?? Buffer.alloc(0);
  const hl = o.challenge.length;
  const b = header(AuthType.Dhchap, AuthMessageId.Challenge, tid, 16 + hl + dhv.length);
  b[6] = hl;
  b[8] = o.hashId;
  b[9] = o.dhgroupId;
  b.writeUInt16LE(dhv.length, 10);
  b.writeUInt32LE(o.seqnum >>> 0, 12);
  b.set(o.challenge, 16);
  b.set(dhv, 16 + hl);
  return b;
}

/** DH-HMAC-CHAP_Reply: always 16 + 2·HL + DHVLEN bytes (C2 zeros, CVALID 0 when not bidirectional). */
export function encodeReply(o: { tid: number; response: Uint8Array; challenge?: Uint8Array; seqnum?: number; dhv?: Uint8Array }): Buffer {
  const tid = checkTid(o.tid);
  checkHl('R1', o.response);
  const hl = o.response.length;
  if (o.challenge !== undefined) checkHl('C2', o.challenge, hl);
  const dhv = o.dhv ?? Buffer.alloc(0);
  const b = header(AuthType.Dhchap, AuthMessageId.Reply, tid, 16 + 2 * hl + dhv.length);
  b[6] = hl;
  b[8] = o.challenge !== undefined ? 1 : 0;
  b.writeUInt16LE(dhv.length, 10);
  b.writeUInt32LE(o.challenge !== undefined ? (o.seqnum ?? 0) >>> 0 : 0, 12);
  b.set(o.response, 16);
  if (o.challenge !== undefined) b.set(o.challenge, 16 + hl);
  b.set(dhv, 16 + 2 * hl);
  return b;
}

/** DH-HMAC-CHAP_Success1: 16 + HL bytes; RVALID set when R2 is given. */
export function encodeSuccess1(o: { tid: number; hl: number; response?: Uint8Array }): Buffer {
  const tid = checkTid(o.tid);
  if (o.hl !== 32 && o.hl !== 48 && o.hl !== 64) throw new InvalidArgumentError(`HL must be 32, 48 or 64, got ${o.hl}`);
  if (o.response !== undefined) checkHl('R2', o.response, o.hl);
  const b = header(AuthType.Dhchap, AuthMessageId.Success1, tid, 16 + o.hl);
  b[6] = o.hl;
  if (o.response !== undefined) {
    b[8] = 1;
    b.set(o.response, 16);
  }
  return b;
}

/** DH-HMAC-CHAP_Success2: 16 bytes. */
export function encodeSuccess2(o: { tid: number }): Buffer {
  return header(AuthType.Dhchap, AuthMessageId.Success2, checkTid(o.tid), 16);
}

/** AUTH_Failure1 (controller to host) or AUTH_Failure2 (host to controller): 8 bytes. */
export function encodeFailure(o: { type: 'failure1' | 'failure2'; tid: number; reason: number; rc?: number }): Buffer {
  const b = header(AuthType.Common, o.type === 'failure1' ? AuthMessageId.Failure1 : AuthMessageId.Failure2, checkTid(o.tid), 8);
  b[6] = o.rc ?? AUTH_FAILURE_RC;
  b[7] = o.reason;
  return b;
}

/** A message that could not be parsed (`NVMEOF_ERR_PROTOCOL`); `reason` is the AUTH_Failure explanation to answer it with. */
export class AuthMessageError extends ProtocolError {
  readonly reason: number;
  constructor(message: string, reason: number) {
    super(message, 0, 0);
    this.reason = reason;
  }
}

function need(buf: Uint8Array, n: number, what: string): void {
  if (buf.length < n) throw new AuthMessageError(`${what} is ${buf.length} bytes, shorter than the ${n} its header describes`, AuthFailureReason.IncorrectPayload);
}

/**
 * Parse an authentication message from its own header. A buffer longer than the message (a padded receive, as
 * Linux nvmet sends) is accepted; the bytes after the message are ignored. Throws AuthMessageError.
 */
export function parseAuthMessage(data: Uint8Array): AuthMessage {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  need(buf, 8, 'authentication message');
  const type = buf[0]!;
  const id = buf[1]!;
  const tid = buf.readUInt16LE(4);
  if (type === AuthType.Common) {
    switch (id) {
      case AuthMessageId.Negotiate: {
        const napd = buf[7]!;
        need(buf, 8 + napd * DESCRIPTOR_SIZE, 'AUTH_Negotiate');
        if (napd === 0) throw new AuthMessageError('AUTH_Negotiate carries no protocol descriptor', AuthFailureReason.IncorrectPayload);
        const protocols: NegotiateMessage['protocols'] = [];
        for (let i = 0; i < napd; i++) {
          const d = 8 + i * DESCRIPTOR_SIZE;
          const halen = buf[d + 2]!;
          const dhlen = buf[d + 3]!;
          if (halen > 30 || dhlen > 30) throw new AuthMessageError('AUTH_Negotiate descriptor lists more than 30 IDs', AuthFailureReason.IncorrectPayload);
          protocols.push({
            authId: buf[d]!,
            hashIds: [...buf.subarray(d + 4, d + 4 + halen)],
            dhgroupIds: [...buf.subarray(d + 4 + DH_IDLIST_OFFSET, d + 4 + DH_IDLIST_OFFSET + dhlen)],
          });
        }
        return { type: 'negotiate', tid, scC: buf[6]!, protocols };
      }
      case AuthMessageId.Failure1:
      case AuthMessageId.Failure2:
        return { type: id === AuthMessageId.Failure1 ? 'failure1' : 'failure2', tid, rc: buf[6]!, reason: buf[7]! };
      default:
        throw new AuthMessageError(`unknown common authentication message 0x${id.toString(16)}`, AuthFailureReason.IncorrectMessage);
    }
  }
  if (type !== AuthType.Dhchap) throw new AuthMessageError(`unknown AUTH-Type 0x${type.toString(16)}`, AuthFailureReason.IncorrectMessage);
  need(buf, 16, 'DH-HMAC-CHAP message');
  const hl = buf[6]!;
  const checkLen = () => {
    if (hl !== 32 && hl !== 48 && hl !== 64) throw new AuthMessageError(`HL ${hl} is not a hash length (32, 48 or 64)`, AuthFailureReason.IncorrectPayload);
  };
  switch (id) {
    case AuthMessageId.Challenge: {
      checkLen();
      const dhvlen = buf.readUInt16LE(10);
      need(buf, 16 + hl + dhvlen, 'DH-HMAC-CHAP_Challenge');
      return {
        type: 'challenge',
        tid,
        hashId: buf[8]!,
        dhgroupId: buf[9]!,
        seqnum: buf.readUInt32LE(12),
        challenge: Buffer.from(buf.subarray(16, 16 + hl)),
        dhv: Buffer.from(buf.subarray(16 + hl, 16 + hl + dhvlen)),
      };
    }
    case AuthMessageId.Reply: {
      checkLen();
      const dhvlen = buf.readUInt16LE(10);
      need(buf, 16 + 2 * hl + dhvlen, 'DH-HMAC-CHAP_Reply');
      const cvalid = (buf[8]! & 1) !== 0;
      return {
        type: 'reply',
        tid,
        response: Buffer.from(buf.subarray(16, 16 + hl)),
        challenge: cvalid ? Buffer.from(buf.subarray(16 + hl, 16 + 2 * hl)) : undefined,
        seqnum: buf.readUInt32LE(12),
        dhv: Buffer.from(buf.subarray(16 + 2 * hl, 16 + 2 * hl + dhvlen)),
      };
    }
    case AuthMessageId.Success1: {
      checkLen();
      const rvalid = (buf[8]! & 1) !== 0;
      if (rvalid) need(buf, 16 + hl, 'DH-HMAC-CHAP_Success1');
      return { type: 'success1', tid, hl, response: rvalid ? Buffer.from(buf.subarray(16, 16 + hl)) : undefined };
    }
    case AuthMessageId.Success2:
      return { type: 'success2', tid };
    default:
      throw new AuthMessageError(`unknown DH-HMAC-CHAP message 0x${id.toString(16)}`, AuthFailureReason.IncorrectMessage);
  }
}

// ---------------------------------------------------------------------------------------------
// Commands

/** Size of the Authentication Receive buffer the host asks for (as Linux: 4096 bytes, above any Challenge). */
export const AUTH_RECEIVE_LENGTH = 4096;

function authSqe(fctype: number, length: number): Buffer {
  const sqe = encodeSqe({ opcode: FABRICS_OPCODE });
  sqe[SqeOffset.FCTYPE] = fctype;
  sqe[41] = AUTH_SPSP; // SPSP0
  sqe[42] = AUTH_SPSP; // SPSP1
  sqe[43] = AUTH_SECP; // SECP
  sqe.writeUInt32LE(length, 44); // TL (send) / AL (receive)
  return sqe;
}

/** Authentication Send (Fabrics, FCTYPE 05h): SPSP0 @41, SPSP1 @42, SECP @43, TL @44; the message goes as data. */
export function authSend(message: Uint8Array): NvmeCommand {
  if (!(message instanceof Uint8Array) || message.length === 0 || message.length > 0xffff) throw new InvalidArgumentError('Authentication Send needs a message of 1..65535 bytes');
  return { sqe: authSqe(FabricsType.AuthSend, message.length), data: message, name: 'Authentication Send', kind: 'fabrics' };
}

/** Authentication Receive (Fabrics, FCTYPE 06h): SPSP0 @41, SPSP1 @42, SECP @43, AL @44; the message comes as data. */
export function authReceive(length = AUTH_RECEIVE_LENGTH): NvmeCommand {
  if (!Number.isInteger(length) || length < 8 || length > 0xffff) throw new InvalidArgumentError(`Authentication Receive length must be 8..65535, got ${String(length)}`);
  // AL is an allocation length: SPDK sends just the message, Linux nvmet pads it to AL.
  return { sqe: authSqe(FabricsType.AuthRecv, length), readLength: length, allocationLength: true, name: 'Authentication Receive', kind: 'fabrics' };
}

/** Fields of an Authentication Send/Receive SQE (for the embedded target). */
export function parseAuthSqe(sqe: Uint8Array): { spsp0: number; spsp1: number; secp: number; length: number } {
  checkSqeBuffer(sqe, 'parseAuthSqe');
  const b = Buffer.from(sqe.buffer, sqe.byteOffset, sqe.byteLength);
  return { spsp0: b[41]!, spsp1: b[42]!, secp: b[43]!, length: b.readUInt32LE(44) };
}
