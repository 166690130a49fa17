/**
 * A TLS 1.3 client for an external pre-shared key (RFC 8446; NVMe/TCP's secure channel): psk_dhe_ke with X25519 or
 * secp256r1, TLS_AES_128_GCM_SHA256 or TLS_AES_256_GCM_SHA384 (the one the PSK's hash allows), no certificates.
 *
 * `tlsConnect()` runs the handshake on a connected TCP socket and resolves with a `TlsSocket`, a Duplex that carries
 * application data in AEAD-protected records and that a QueuePair runs on as it runs on a plain socket. node:tls is
 * not used: it cannot offer an external PSK with a SHA-384 handshake, and its SHA-256 PSK support depends on the
 * cipher list; one implementation serves both suites the same way.
 *
 * The protocol is `TlsClientCore`, a synchronous state machine without I/O that reads the wire only through the codecs
 * of wire.ts; `TlsSocket` moves bytes between it and the socket. Every failure is a TlsError (NVMEOF_ERR_TLS) naming
 * the reason: the alert the target sent, a Finished that does not verify (wrong key), a cipher suite, version or key
 * share the client did not offer, bytes that do not parse. Keys never appear in messages.
 */
import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, createECDH, createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, timingSafeEqual, type Hash, type KeyObject } from 'node:crypto';
import type * as net from 'node:net';
import { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { TlsError } from '../../errors.js';
import type { TlsPskHash } from '../../protocol/tls-psk.js';
import { abortError, writeBatch } from '../../util.js';
import {
  binderKey,
  deriveSecret,
  earlySecret,
  handshakeSecret,
  masterSecret,
  nextTrafficSecret,
  suiteForHash,
  trafficKeys,
  verifyData,
  type CipherSuite,
} from './key-schedule.js';
import {
  Alert,
  AlertDescription,
  ContentType,
  Ext,
  HandshakeReader,
  HandshakeType,
  MAX_PLAINTEXT,
  RecordReader,
  TLS12,
  TLS13,
  TlsAbort,
  alertName,
  parseAlert,
  parseEncryptedExtensions,
  parseFinished,
  parseInnerPlaintext,
  parseKeyUpdate,
  parseNewSessionTicket,
  parseServerHello,
  type EncryptedExtensions,
  type HandshakeMessage,
  type ServerHello,
  type TlsRecord,
} from './wire.js';

const debug = debuglog('nvmeof:tls');

const Group = { secp256r1: 0x0017, x25519: 0x001d } as const;
/** Records sent under one key before the client rotates it with KeyUpdate (well inside AES-GCM's limits). */
const DEFAULT_KEY_UPDATE_AFTER = 1 << 23;

export { AlertDescription };

/**
 * What the target's alert most likely means for an NVMe host. Before the ServerHello the only thing a target can
 * object to is the offer itself: OpenSSL (and so SPDK) answers a binder that does not verify, that is a wrong key,
 * with illegal_parameter; others use decrypt_error; GnuTLS also answers an unknown identity with illegal_parameter.
 */
function alertMeaning(d: number, beforeServerHello: boolean): string {
  if (beforeServerHello && (d === 47 || d === 51 || d === 20)) return ' (wrong key or unknown PSK identity: the target could not verify the PSK binder)';
  switch (d) {
    case 51:
    case 20:
      return ' (wrong key: the target could not decrypt or verify this side)';
    case 115:
      return ' (the target has no PSK for this identity)';
    case 40:
      return ' (the target accepted neither the PSK identity nor the cipher suite)';
    case 70:
      return ' (TLS version not acceptable)';
    default:
      return '';
  }
}

/** Options of `tlsConnect()`. */
export interface TlsClientOptions {
  /** PSK identity sent in the ClientHello. */
  identity: string;
  /** The TLS PSK. */
  psk: Uint8Array;
  /** The PSK's hash; it selects the one cipher suite offered. */
  hash: TlsPskHash;
  /** Milliseconds for the handshake. Default 10000. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Where the socket goes, for messages. */
  peer?: string;
  /** Key share groups offered, in order of preference. Default both X25519 and secp256r1. */
  groups?: ('x25519' | 'secp256r1')[];
  /** Rotate the sending key with KeyUpdate after this many records. Default 2^23. */
  keyUpdateAfterRecords?: number;
}

/** What a handshake negotiated (`ctrl.security.tls`). */
export interface TlsSessionInfo {
  protocol: 'TLSv1.3';
  cipher: CipherSuite['name'];
  /** The PSK identity the target selected. */
  identity: string;
  /** The (EC)DHE group of the key exchange. */
  group: 'x25519' | 'secp256r1';
}

// ---------------------------------------------------------------------------------------------------------------
// Byte helpers

function u8(n: number): Buffer {
  return Buffer.of(n & 0xff);
}
function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function u24(n: number): Buffer {
  return Buffer.of((n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}
function vec8(b: Uint8Array): Buffer {
  return Buffer.concat([u8(b.length), b]);
}
function vec16(b: Uint8Array): Buffer {
  return Buffer.concat([u16(b.length), b]);
}
function ext(type: number, body: Uint8Array): Buffer {
  return Buffer.concat([u16(type), vec16(body)]);
}

// ---------------------------------------------------------------------------------------------------------------
// Key exchange

/** One (EC)DHE key share the client offers: its public value and the computation of the shared secret. */
export interface KeyShare {
  group: 'x25519' | 'secp256r1';
  id: number;
  pub: Buffer;
  compute(peer: Buffer): Buffer;
}

/** DER SubjectPublicKeyInfo of an X25519 key: this 12-byte prefix, then the 32-byte key (RFC 8410). */
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export function x25519Share(): KeyShare {
  // The pair comes out DER-encoded from the generation itself. Exporting a freshly generated KeyObject as JWK can
  // deadlock Node 20 in a worker thread: the export holds the key's lock while it allocates, and a collection that
  // runs then finalizes the generation job, which takes the same lock.
  const pair = generateKeyPairSync('x25519', { publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'der' } });
  const privateKey = createPrivateKey({ key: pair.privateKey, format: 'der', type: 'pkcs8' });
  const spki = pair.publicKey;
  if (spki.length !== 44 || !spki.subarray(0, 12).equals(X25519_SPKI_PREFIX)) throw new TlsError('unexpected X25519 public key encoding');
  return {
    group: 'x25519',
    id: Group.x25519,
    pub: Buffer.from(spki.subarray(12)),
    compute(peer: Buffer): Buffer {
      if (peer.length !== 32) throw new TlsAbort(47, 'the target sent an X25519 key share that is not 32 bytes');
      let pk: KeyObject;
      try {
        pk = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: peer.toString('base64url') }, format: 'jwk' });
      } catch {
        throw new TlsAbort(47, 'the target sent an invalid X25519 key share');
      }
      let shared: Buffer;
      try {
        shared = diffieHellman({ privateKey, publicKey: pk });
      } catch {
        // OpenSSL refuses a small-order point (its result would be all zeros).
        throw new TlsAbort(47, 'the target sent an X25519 key share of small order');
      }
      if (shared.every((b) => b === 0)) throw new TlsAbort(47, 'the X25519 shared secret is all zeros');
      return shared;
    },
  };
}

export function p256Share(): KeyShare {
  const ecdh = createECDH('prime256v1');
  const pub = ecdh.generateKeys();
  return {
    group: 'secp256r1',
    id: Group.secp256r1,
    pub,
    compute(peer: Buffer): Buffer {
      if (peer.length !== 65 || peer[0] !== 4) throw new TlsAbort(47, 'the target sent a secp256r1 key share that is not an uncompressed point');
      try {
        return ecdh.computeSecret(peer);
      } catch {
        throw new TlsAbort(47, 'the target sent an invalid secp256r1 key share');
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// ClientHello

/** Build the ClientHello handshake message with its PSK binder (RFC 8446 4.1.2, 4.2.11.2). */
export function buildClientHello(o: {
  suite: CipherSuite;
  identity: string;
  binderKey: Buffer;
  shares: { id: number; pub: Buffer }[];
  random: Buffer;
}): Buffer {
  const hashLen = o.suite.hashLen;
  const id = Buffer.from(o.identity, 'utf8');
  if (id.length === 0 || id.length > 0xffff) throw new TlsError('the PSK identity must be 1..65535 bytes');
  const identities = vec16(Buffer.concat([vec16(id), Buffer.alloc(4) /* obfuscated_ticket_age 0 for an external PSK */]));
  const bindersLen = 2 + 1 + hashLen;
  const exts = Buffer.concat([
    ext(Ext.SupportedVersions, vec8(u16(TLS13))),
    ext(Ext.SupportedGroups, vec16(Buffer.concat(o.shares.map((s) => u16(s.id))))),
    ext(Ext.KeyShare, vec16(Buffer.concat(o.shares.map((s) => Buffer.concat([u16(s.id), vec16(s.pub)]))))),
    // ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256: never used with a PSK, present for servers that insist.
    ext(Ext.SignatureAlgorithms, vec16(Buffer.of(0x04, 0x03, 0x08, 0x04, 0x04, 0x01))),
    ext(Ext.PskKeyExchangeModes, vec8(u8(1) /* psk_dhe_ke */)),
    // pre_shared_key is last; its binders are filled in below.
    Buffer.concat([u16(Ext.PreSharedKey), u16(identities.length + bindersLen), identities, Buffer.alloc(bindersLen)]),
  ]);
  const body = Buffer.concat([
    u16(0x0303),
    o.random,
    vec8(Buffer.alloc(0)), // legacy_session_id: empty (no middlebox compatibility mode)
    vec16(u16(o.suite.id)),
    vec8(u8(0)), // legacy_compression_methods: null
    vec16(exts),
  ]);
  const msg = Buffer.concat([u8(HandshakeType.ClientHello), u24(body.length), body]);
  const truncated = msg.subarray(0, msg.length - bindersLen);
  const binder = verifyData(o.suite.hash, o.binderKey, createHash(o.suite.hash).update(truncated).digest());
  const tail = Buffer.concat([u16(1 + hashLen), u8(hashLen), binder]);
  tail.copy(msg, msg.length - bindersLen);
  return msg;
}

// ---------------------------------------------------------------------------------------------------------------
// Accepting what the server chose

/** What the ClientHello offered, for checking the ServerHello against it. */
export interface ClientOffer {
  suite: CipherSuite;
  shares: KeyShare[];
  identity: string;
}

/**
 * Check a parsed ServerHello against the offer (one PSK identity, one suite, psk_dhe_ke, the offered groups) and
 * compute the (EC)DHE shared secret. Throws `TlsAbort` with the alert to send.
 */
export function acceptServerHello(sh: ServerHello, offer: ClientOffer): { share: KeyShare; shared: Buffer } {
  if (sh.helloRetryRequest) {
    throw new TlsAbort(Alert.HandshakeFailure, `the target sent a HelloRetryRequest: it accepts none of the key share groups offered (${offer.shares.map((s) => s.group).join(', ')})`);
  }
  if (sh.sessionId.length !== 0) throw new TlsAbort(Alert.IllegalParameter, 'the target echoed a session id that was not sent');
  if (sh.cipherSuite !== offer.suite.id) {
    throw new TlsAbort(Alert.IllegalParameter, `cipher not acceptable: the target chose 0x${sh.cipherSuite.toString(16).padStart(4, '0')}, the PSK's hash allows only ${offer.suite.name}`);
  }
  if (sh.compression !== 0) throw new TlsAbort(Alert.IllegalParameter, 'the target chose a compression method');
  for (const t of sh.extensions.keys()) {
    if (t !== Ext.SupportedVersions && t !== Ext.KeyShare && t !== Ext.PreSharedKey) throw new TlsAbort(Alert.UnsupportedExtension, `the target sent extension ${t} in its ServerHello`);
  }
  const version = sh.version;
  if (version !== TLS13) throw new TlsAbort(Alert.ProtocolVersion, `version not acceptable: the target did not negotiate TLS 1.3${version !== undefined ? ` (0x${version.toString(16)})` : ' (TLS 1.2 or older)'}`);
  if (sh.legacyVersion !== TLS12) throw new TlsAbort(Alert.IllegalParameter, `the target's ServerHello has legacy_version 0x${sh.legacyVersion.toString(16)} (0x0303 in TLS 1.3)`);
  if (sh.selectedIdentity === undefined) throw new TlsAbort(Alert.HandshakeFailure, `the target did not accept the PSK identity ${JSON.stringify(offer.identity)}`);
  if (sh.selectedIdentity !== 0) throw new TlsAbort(Alert.IllegalParameter, `the target selected PSK identity ${sh.selectedIdentity}; one was offered`);
  const ks = sh.keyShare;
  if (ks === undefined) throw new TlsAbort(Alert.MissingExtension, 'the target chose psk_ke without a key share; only psk_dhe_ke is offered');
  const share = offer.shares.find((s) => s.id === ks.group);
  if (share === undefined) throw new TlsAbort(Alert.IllegalParameter, `the target chose key share group 0x${ks.group.toString(16)}, which was not offered`);
  return { share, shared: share.compute(ks.key) };
}

/** Extensions a server may send in EncryptedExtensions only in answer to the client's (RFC 8446 4.2). */
const NOT_IN_ENCRYPTED_EXTENSIONS = new Set<number>([
  Ext.SignatureAlgorithms,
  Ext.PreSharedKey,
  Ext.SupportedVersions,
  Ext.Cookie,
  Ext.PskKeyExchangeModes,
  Ext.CertificateAuthorities,
  Ext.OidFilters,
  Ext.PostHandshakeAuth,
  Ext.SignatureAlgorithmsCert,
  Ext.KeyShare,
]);

/**
 * Check EncryptedExtensions against the offer: of what a server may send there, the client asked for supported_groups
 * only (RFC 8446 4.2: an extension the client did not send is an unsupported_extension; one that does not belong in
 * EncryptedExtensions an illegal_parameter).
 */
export function acceptEncryptedExtensions(ee: EncryptedExtensions): void {
  for (const t of ee.extensions.keys()) {
    if (t === Ext.SupportedGroups) continue;
    if (NOT_IN_ENCRYPTED_EXTENSIONS.has(t)) throw new TlsAbort(Alert.IllegalParameter, `the target sent extension ${t}, which does not belong in EncryptedExtensions`);
    throw new TlsAbort(Alert.UnsupportedExtension, `the target sent extension ${t} in EncryptedExtensions, which the client did not offer`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Record protection

class RecordKeys {
  private seq = 0;
  constructor(
    readonly suite: CipherSuite,
    readonly secret: Buffer,
    private readonly key: Buffer,
    private readonly iv: Buffer,
  ) {}
  static from(suite: CipherSuite, secret: Buffer): RecordKeys {
    const { key, iv } = trafficKeys(suite, secret);
    return new RecordKeys(suite, secret, key, iv);
  }
  get sequence(): number {
    return this.seq;
  }
  private nonce(): Buffer {
    const n = Buffer.from(this.iv);
    const hi = Math.floor(this.seq / 0x100000000);
    const lo = this.seq >>> 0;
    n.writeUInt32BE((n.readUInt32BE(4) ^ hi) >>> 0, 4);
    n.writeUInt32BE((n.readUInt32BE(8) ^ lo) >>> 0, 8);
    this.seq++;
    return n;
  }
  /** One TLSCiphertext record holding `parts` (at most 2^14 bytes in all) of content type `type`. */
  seal(type: number, parts: Buffer[], len: number): Buffer[] {
    const header = Buffer.of(ContentType.ApplicationData, 0x03, 0x03, 0, 0);
    header.writeUInt16BE(len + 1 + 16, 3);
    const c = createCipheriv(this.suite.aead, this.key, this.nonce());
    c.setAAD(header);
    const out: Buffer[] = [header];
    for (const p of parts) out.push(c.update(p));
    out.push(c.update(u8(type)), c.final(), c.getAuthTag());
    return out;
  }
  /** Decrypt one record's payload; returns the inner content type and content. */
  open(header: Buffer, payload: Buffer): { type: number; content: Buffer } {
    if (payload.length < 17) throw new TlsAbort(Alert.BadRecordMac, 'a protected record is shorter than its tag');
    const d = createDecipheriv(this.suite.aead, this.key, this.nonce());
    d.setAAD(header);
    d.setAuthTag(payload.subarray(payload.length - 16));
    let plain: Buffer;
    try {
      plain = Buffer.concat([d.update(payload.subarray(0, payload.length - 16)), d.final()]);
    } catch {
      throw new TlsAbort(Alert.BadRecordMac, 'a record from the target does not decrypt (bad_record_mac: wrong key or corrupted data)');
    }
    return parseInnerPlaintext(plain);
  }
}

function plainRecord(type: number, body: Buffer): Buffer {
  const header = Buffer.of(type, 0x03, type === ContentType.Handshake ? 0x01 : 0x03, 0, 0);
  header.writeUInt16BE(body.length, 3);
  return Buffer.concat([header, body]);
}

// ---------------------------------------------------------------------------------------------------------------
// The client's protocol state machine, without I/O

/** What `TlsClientCore.receive()` asks its owner to do, in order. */
export type TlsClientEvent =
  /** Write these bytes to the socket (the client's Finished, a KeyUpdate, an alert). */
  | { type: 'send'; data: Buffer[] }
  /** The handshake completed. */
  | { type: 'connected' }
  /** Application data from the target. */
  | { type: 'data'; data: Buffer }
  /** close_notify: the target sends no more data. */
  | { type: 'end' }
  /** The connection failed: by the target's alert (`graceful` false) or by this side's (its alert was sent first). */
  | { type: 'failed'; error: TlsError; graceful: boolean };

type State = 'start' | 'wait_sh' | 'wait_ee' | 'wait_fin' | 'connected' | 'closed';

/**
 * The TLS 1.3 PSK client as a synchronous state machine: `start()` gives the ClientHello record, `receive()` takes
 * whatever bytes the socket delivered and returns what to do, `sealApplication()` protects outgoing data. It never
 * touches a socket, a timer or a promise, so `TlsSocket` runs it on a TCP connection and the fuzzer runs it on bytes.
 * Failures in the target's bytes become a `failed` event (after the alert to send); nothing the target sends makes
 * `receive()` throw.
 */
export class TlsClientCore {
  /** What the handshake negotiated; set once the ServerHello is accepted. */
  info: TlsSessionInfo | undefined;
  /** KeyUpdate messages sent (key rotations of this side) and received. */
  keyUpdatesSent = 0;
  keyUpdatesReceived = 0;
  private state: State = 'start';
  private readonly suite: CipherSuite;
  private readonly opts: TlsClientOptions;
  private readonly shares: KeyShare[];
  private readonly early: Buffer;
  private readonly transcript: Hash;
  private hs: Buffer | undefined;
  private clientHs: Buffer | undefined;
  private serverHs: Buffer | undefined;
  private readKeys: RecordKeys | undefined;
  private writeKeys: RecordKeys | undefined;
  private readonly keyUpdateAfter: number;
  private readonly records = new RecordReader();
  private readonly handshakeMessages = new HandshakeReader();
  /** close_notify arrived: later records are ignored (RFC 8446 6.1). */
  private peerClosed = false;
  private events: TlsClientEvent[] = [];
  /** Why the connection failed, once it has. */
  failure: TlsError | undefined;

  constructor(opts: TlsClientOptions) {
    this.opts = opts;
    this.suite = suiteForHash(opts.hash);
    if (opts.psk.length !== this.suite.hashLen) throw new TlsError(`a ${this.suite.hash} TLS PSK must be ${this.suite.hashLen} bytes`);
    this.keyUpdateAfter = opts.keyUpdateAfterRecords ?? DEFAULT_KEY_UPDATE_AFTER;
    const groups = opts.groups ?? ['x25519', 'secp256r1'];
    this.shares = groups.map((g) => (g === 'x25519' ? x25519Share() : p256Share()));
    this.early = earlySecret(this.suite.hash, opts.psk);
    this.transcript = createHash(this.suite.hash);
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  private get peer(): string {
    return this.opts.peer ?? 'the target';
  }

  /** The ClientHello record to send first. */
  start(random: Buffer = randomBytes(32)): Buffer {
    if (this.state !== 'start') throw new TlsError('the TLS handshake was already started');
    const ch = buildClientHello({
      suite: this.suite,
      identity: this.opts.identity,
      binderKey: binderKey(this.suite.hash, this.early, 'ext'),
      shares: this.shares,
      random,
    });
    this.transcript.update(ch);
    this.state = 'wait_sh';
    return plainRecord(ContentType.Handshake, ch);
  }

  /**
   * Bytes from the target, cut anywhere. Returns what to do, in order; after a `failed` event the core is closed and
   * takes nothing more. Only a bug in this code can make it throw.
   */
  receive(chunk: Buffer): TlsClientEvent[] {
    if (this.state === 'closed' || this.state === 'start') return [];
    const events: TlsClientEvent[] = (this.events = []);
    try {
      this.records.feed(chunk, (r) => {
        this.onRecord(r);
        return this.state !== 'closed';
      });
    } catch (err) {
      if (err instanceof TlsAbort) this.abort(err.sends, err.message);
      else if (err instanceof TlsError) this.abort(Alert.InternalError, err.message);
      else throw err;
    } finally {
      this.events = [];
    }
    return events;
  }

  /** A zero-length application data record (RFC 8446 5.1 allows them): bytes on the wire that carry nothing. */
  sealEmpty(): Buffer[] {
    const out: Buffer[] = [];
    this.sealRecord(out, [], 0);
    return out;
  }

  /** Protect application data: records of up to 2^14 bytes, with a KeyUpdate first when the key is due. */
  sealApplication(chunks: Buffer[]): Buffer[] {
    const out: Buffer[] = [];
    let parts: Buffer[] = [];
    let len = 0;
    const flush = () => {
      if (len === 0) return;
      this.sealRecord(out, parts, len);
      parts = [];
      len = 0;
    };
    for (const c of chunks) {
      let off = 0;
      while (off < c.length) {
        const n = Math.min(MAX_PLAINTEXT - len, c.length - off);
        parts.push(off === 0 && n === c.length ? c : c.subarray(off, off + n));
        len += n;
        off += n;
        if (len === MAX_PLAINTEXT) flush();
      }
    }
    flush();
    return out;
  }

  /** One application data record of `parts` (`len` bytes in all, 0..2^14) onto `out`, after a KeyUpdate when due. */
  private sealRecord(out: Buffer[], parts: Buffer[], len: number): void {
    if (this.state !== 'connected' || !this.writeKeys) throw this.failure ?? new TlsError('TLS connection is not established');
    this.maybeRotateWriteKey(out);
    for (const b of this.writeKeys.seal(ContentType.ApplicationData, parts, len)) out.push(b);
  }

  /** The close_notify alert record (none unless connected). */
  closeNotify(): Buffer[] {
    if (this.state !== 'connected' || !this.writeKeys) return [];
    return this.writeKeys.seal(ContentType.Alert, [Buffer.of(1, Alert.CloseNotify)], 2);
  }

  /** Stop: nothing more is received or sent. */
  close(): void {
    this.state = 'closed';
  }

  /** Our sending key is rotated (KeyUpdate, update_not_requested) after keyUpdateAfter records. */
  private maybeRotateWriteKey(out: Buffer[]): void {
    if (this.writeKeys!.sequence < this.keyUpdateAfter) return;
    this.sendKeyUpdate(out);
  }

  private sendKeyUpdate(out: Buffer[]): void {
    const msg = Buffer.concat([u8(HandshakeType.KeyUpdate), u24(1), u8(0)]);
    for (const b of this.writeKeys!.seal(ContentType.Handshake, [msg], msg.length)) out.push(b);
    this.writeKeys = RecordKeys.from(this.suite, nextTrafficSecret(this.suite.hash, this.writeKeys!.secret));
    this.keyUpdatesSent++;
    debug('%s: sending key updated', this.peer);
  }

  // -- Records in ----------------------------------------------------------------------------------------------

  private onRecord(r: TlsRecord): void {
    if (this.peerClosed) return;
    const outer = r.type;
    if (outer === ContentType.ChangeCipherSpec) {
      // Middlebox compatibility: a ChangeCipherSpec (0x01) may arrive until the target's Finished (RFC 8446 5).
      if (this.state === 'connected' || r.fragment.length !== 1 || r.fragment[0] !== 1) throw new TlsAbort(Alert.UnexpectedMessage, 'unexpected change_cipher_spec from the target');
      return;
    }
    let type = outer;
    let content = r.fragment;
    if (this.readKeys) {
      if (outer !== ContentType.ApplicationData) {
        // A plaintext alert from a target that failed before it could protect one.
        if (outer !== ContentType.Alert || content.length !== 2) throw new TlsAbort(Alert.UnexpectedMessage, `the target sent an unprotected record of type ${outer} after the handshake keys`);
      } else {
        ({ type, content } = this.readKeys.open(r.header, r.fragment));
      }
    } else if (outer !== ContentType.Handshake && outer !== ContentType.Alert) {
      throw new TlsAbort(Alert.UnexpectedMessage, `the target sent a record of type ${outer} before the ServerHello`);
    }
    if (type !== ContentType.Handshake && this.handshakeMessages.buffered > 0) {
      throw new TlsAbort(Alert.UnexpectedMessage, `the target sent a record of type ${type} in the middle of a fragmented handshake message`);
    }
    switch (type) {
      case ContentType.Alert:
        return this.onAlert(content);
      case ContentType.Handshake:
        if (content.length === 0) throw new TlsAbort(Alert.UnexpectedMessage, 'the target sent an empty handshake record');
        this.handshakeMessages.feed(content, (m) => {
          this.onHandshake(m);
          return this.state !== 'closed';
        });
        return;
      case ContentType.ApplicationData:
        if (this.state !== 'connected') throw new TlsAbort(Alert.UnexpectedMessage, 'the target sent application data before the handshake finished');
        if (content.length > 0) this.events.push({ type: 'data', data: content });
        return;
      default:
        throw new TlsAbort(Alert.UnexpectedMessage, `the target sent a record of unknown type ${type}`);
    }
  }

  private onAlert(content: Buffer): void {
    const desc = parseAlert(content).description;
    if (desc === Alert.CloseNotify && this.state === 'connected') {
      // close_notify: no more data from the target.
      debug('%s: close_notify', this.peer);
      this.peerClosed = true;
      this.events.push({ type: 'end' });
      return;
    }
    if (desc === Alert.UserCanceled && this.state === 'connected') return; // user_canceled is followed by close_notify
    const phase = this.state === 'connected' ? 'TLS connection to' : 'TLS handshake with';
    this.fail(new TlsError(`${phase} ${this.peer} failed: the target sent alert ${alertName(desc)}${alertMeaning(desc, this.state === 'wait_sh')}`, { alert: desc }), false);
  }

  /** Handshake messages must not span a key change (RFC 8446 5.1): nothing may follow `what` in its record. */
  private alignedKeyChange(what: string): void {
    if (this.handshakeMessages.buffered > 0) throw new TlsAbort(Alert.UnexpectedMessage, `the target sent handshake data after ${what} in the same record`);
  }

  private onHandshake(m: HandshakeMessage): void {
    const { type, body } = m;
    switch (this.state) {
      case 'wait_sh':
        if (type !== HandshakeType.ServerHello) throw new TlsAbort(Alert.UnexpectedMessage, `expected ServerHello, the target sent handshake message ${type}`);
        this.onServerHello(m);
        return;
      case 'wait_ee':
        if (type === HandshakeType.Certificate || type === HandshakeType.CertificateRequest) {
          throw new TlsAbort(Alert.UnexpectedMessage, 'the target asked for certificate authentication; only a PSK is offered');
        }
        if (type !== HandshakeType.EncryptedExtensions) throw new TlsAbort(Alert.UnexpectedMessage, `expected EncryptedExtensions, the target sent handshake message ${type}`);
        acceptEncryptedExtensions(parseEncryptedExtensions(body));
        this.transcript.update(m.raw);
        this.state = 'wait_fin';
        return;
      case 'wait_fin':
        if (type !== HandshakeType.Finished) throw new TlsAbort(Alert.UnexpectedMessage, `expected Finished, the target sent handshake message ${type}`);
        this.onServerFinished(m);
        return;
      case 'connected':
        if (type === HandshakeType.NewSessionTicket) {
          parseNewSessionTicket(body); // checked, not kept: no resumption
          return;
        }
        if (type === HandshakeType.KeyUpdate) {
          const { updateRequested } = parseKeyUpdate(body);
          this.alignedKeyChange('a KeyUpdate');
          this.readKeys = RecordKeys.from(this.suite, nextTrafficSecret(this.suite.hash, this.readKeys!.secret));
          this.keyUpdatesReceived++;
          debug('%s: receiving key updated (update_requested=%d)', this.peer, updateRequested ? 1 : 0);
          if (updateRequested) {
            const out: Buffer[] = [];
            this.sendKeyUpdate(out);
            this.events.push({ type: 'send', data: out });
          }
          return;
        }
        throw new TlsAbort(Alert.UnexpectedMessage, `unexpected handshake message ${type} after the handshake`);
      default:
        return;
    }
  }

  private onServerHello(m: HandshakeMessage): void {
    const sh = parseServerHello(m.body);
    const { share, shared } = acceptServerHello(sh, { suite: this.suite, shares: this.shares, identity: this.opts.identity });
    this.alignedKeyChange('ServerHello');
    this.transcript.update(m.raw);
    const h = this.suite.hash;
    this.hs = handshakeSecret(h, this.early, shared);
    const th = this.transcript.copy().digest();
    this.clientHs = deriveSecret(h, this.hs, 'c hs traffic', th);
    this.serverHs = deriveSecret(h, this.hs, 's hs traffic', th);
    this.readKeys = RecordKeys.from(this.suite, this.serverHs);
    this.writeKeys = RecordKeys.from(this.suite, this.clientHs);
    this.info = { protocol: 'TLSv1.3', cipher: this.suite.name, identity: this.opts.identity, group: share.group };
    this.state = 'wait_ee';
  }

  private onServerFinished(m: HandshakeMessage): void {
    const h = this.suite.hash;
    const got = parseFinished(m.body, this.suite.hashLen);
    const expected = verifyData(h, this.serverHs!, this.transcript.copy().digest());
    if (!timingSafeEqual(got, expected)) throw new TlsAbort(Alert.DecryptError, "wrong key: the target's Finished does not verify with this PSK");
    this.alignedKeyChange('its Finished');
    this.transcript.update(m.raw);
    const th = this.transcript.copy().digest();
    const master = masterSecret(h, this.hs!);
    const clientAp = deriveSecret(h, master, 'c ap traffic', th);
    const serverAp = deriveSecret(h, master, 's ap traffic', th);
    const fin = Buffer.concat([u8(HandshakeType.Finished), u24(this.suite.hashLen), verifyData(h, this.clientHs!, th)]);
    this.events.push({ type: 'send', data: this.writeKeys!.seal(ContentType.Handshake, [fin], fin.length) });
    this.readKeys = RecordKeys.from(this.suite, serverAp);
    this.writeKeys = RecordKeys.from(this.suite, clientAp);
    this.hs = this.clientHs = this.serverHs = undefined;
    this.state = 'connected';
    debug('%s: TLS 1.3 %s with PSK identity %s', this.peer, this.suite.name, this.opts.identity);
    this.events.push({ type: 'connected' });
  }

  // -- Failure -------------------------------------------------------------------------------------------------

  /** A failure this side detected: send its alert, then fail. */
  private abort(alert: number, message: string): void {
    if (this.state === 'closed') return;
    const body = Buffer.of(2, alert);
    this.events.push({ type: 'send', data: this.writeKeys ? this.writeKeys.seal(ContentType.Alert, [body], 2) : [plainRecord(ContentType.Alert, body)] });
    const phase = this.state === 'connected' ? 'TLS connection to' : 'TLS handshake with';
    this.fail(new TlsError(`${phase} ${this.peer} failed: ${message}`), true);
  }

  private fail(err: TlsError, graceful: boolean): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.failure = err;
    debug('%s: %s', this.peer, err.message);
    this.events.push({ type: 'failed', error: err, graceful });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The connection

/** Zero-length records a TlsSocket sends in a row at most (OpenSSL's limit is 32). */
export const MAX_EMPTY_RUN = 16;

/**
 * A TLS 1.3 connection over a TCP socket, as a Duplex of application data. Created by `tlsConnect()`; the protocol is
 * a `TlsClientCore`, this class only moves bytes between it and the socket.
 */
export class TlsSocket extends Duplex {
  private readonly raw: net.Socket;
  private readonly core: TlsClientCore;
  private readonly opts: TlsClientOptions;
  private connected = false;
  /** Failed or destroyed: nothing more is read. */
  private shut = false;
  private settle: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private failure: TlsError | undefined;
  /** Zero-length records sent since the last application data, and whether one went out this tick. */
  private emptyRun = 0;
  private emptyThisTick = false;
  private readonly endEmptyTick = (): void => {
    this.emptyThisTick = false;
  };

  constructor(raw: net.Socket, opts: TlsClientOptions) {
    super({ allowHalfOpen: false });
    this.raw = raw;
    this.opts = opts;
    this.core = new TlsClientCore(opts);
    raw.on('data', (chunk: Buffer) => this.onRaw(chunk));
    raw.on('error', (err) => this.fail(new TlsError(`TLS connection to ${this.peer}: socket error: ${err.message}`, { cause: err }), false));
    raw.on('close', () => {
      if (!this.connected && !this.shut) this.fail(new TlsError(`TLS handshake with ${this.peer}: the target closed the connection`), false);
      else if (!this.destroyed) this.destroy();
    });
  }

  /** What the handshake negotiated; set once connected. */
  get info(): TlsSessionInfo | undefined {
    return this.connected ? this.core.info : undefined;
  }

  /** KeyUpdate messages sent (key rotations of this side). */
  get keyUpdatesSent(): number {
    return this.core.keyUpdatesSent;
  }

  /** KeyUpdate messages received. */
  get keyUpdatesReceived(): number {
    return this.core.keyUpdatesReceived;
  }

  private get peer(): string {
    return this.opts.peer ?? 'the target';
  }

  /** Send the ClientHello; resolves once the handshake completes. */
  handshake(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
      this.raw.write(this.core.start());
    });
  }

  /**
   * Send a zero-length application data record (RFC 8446 5.1 allows them): it carries nothing, but the TCP segment
   * it rides in carries this side's acknowledgement of what has arrived, now. A receiver's kernel otherwise delays
   * that acknowledgement (up to 40 ms on Linux) on a request/response connection, and a sender whose TLS layer keeps
   * only a small send buffer (SPDK's: 8 KiB) stops after every record or two until it comes: 128 KiB reads from SPDK
   * ran at 25 commands a second. The queue pair sends one while a data payload is still arriving.
   *
   * At most one per tick (the records of one socket read are delivered in one tick, so one per read), and at most
   * {@link MAX_EMPTY_RUN} in a row without application data between them (OpenSSL fails a connection after 32).
   * Returns whether a record was sent.
   */
  sendEmptyRecord(): boolean {
    if (this.emptyThisTick || this.emptyRun >= MAX_EMPTY_RUN || this.shut || !this.core.connected || !this.raw.writable) return false;
    this.emptyThisTick = true;
    this.emptyRun++;
    process.nextTick(this.endEmptyTick);
    this.writeRecords(this.core.sealEmpty());
    return true;
  }

  setNoDelay(noDelay = true): this {
    this.raw.setNoDelay(noDelay);
    return this;
  }

  // -- Duplex --------------------------------------------------------------------------------------------------

  override _read(): void {
    if (this.raw.isPaused()) this.raw.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.sendApplication([chunk], cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.sendApplication(
      chunks.map((c) => c.chunk),
      cb,
    );
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.core.connected && !this.raw.destroyed) {
      this.writeRecords(this.core.closeNotify());
      this.raw.end();
    }
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.shut = true;
    this.core.close();
    this.raw.destroy();
    cb(err);
  }

  private sendApplication(chunks: Buffer[], cb: (err?: Error | null) => void): void {
    if (!this.core.connected) {
      cb(this.failure ?? new TlsError('TLS connection is not established'));
      return;
    }
    const out = this.core.sealApplication(chunks);
    if (out.length > 0) this.emptyRun = 0;
    if (this.writeRecords(out)) cb();
    else this.raw.once('drain', () => cb());
  }

  /** Protected records onto the TCP socket as one batch; false when its send buffer is full. */
  private writeRecords(out: Buffer[]): boolean {
    return writeBatch(this.raw, out);
  }

  // -- Records in ----------------------------------------------------------------------------------------------

  private onRaw(chunk: Buffer): void {
    if (this.shut) return;
    let events: TlsClientEvent[];
    try {
      events = this.core.receive(chunk);
    } catch (err) {
      // A bug, not the target's bytes: the connection fails, the process does not.
      this.fail(new TlsError(`TLS connection to ${this.peer}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }), true);
      return;
    }
    for (const e of events) {
      switch (e.type) {
        case 'send':
          if (!this.raw.destroyed) this.writeRecords(e.data);
          break;
        case 'connected': {
          this.connected = true;
          const s = this.settle;
          this.settle = undefined;
          s?.resolve();
          break;
        }
        case 'data':
          if (!this.push(e.data)) this.raw.pause();
          break;
        case 'end':
          this.push(null);
          break;
        case 'failed':
          this.fail(e.error, e.graceful);
          break;
      }
    }
  }

  // -- Failure -------------------------------------------------------------------------------------------------

  private fail(err: TlsError, endGracefully: boolean): void {
    if (this.shut) return;
    this.shut = true;
    this.core.close();
    this.failure = err;
    if (endGracefully) this.raw.end();
    this.raw.destroy();
    const s = this.settle;
    this.settle = undefined;
    if (s) {
      s.reject(err);
      this.destroy();
    } else if (this.connected) {
      this.destroy(err);
    }
  }
}

/** Run a TLS 1.3 PSK handshake on a connected socket; resolves with the protected stream. */
export async function tlsConnect(raw: net.Socket, opts: TlsClientOptions): Promise<TlsSocket> {
  const s = new TlsSocket(raw, opts);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => {
        reject(new TlsError(`TLS handshake with ${opts.peer ?? 'the target'} timed out after ${timeoutMs} ms`));
        s.destroy();
      }, timeoutMs);
      if (opts.signal) {
        if (opts.signal.aborted) {
          reject(abortError(opts.signal));
          s.destroy();
          return;
        }
        onAbort = () => {
          reject(abortError(opts.signal!));
          s.destroy();
        };
        opts.signal.addEventListener('abort', onAbort, { once: true });
      }
      s.handshake().then(resolve, reject);
    });
  } finally {
    clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
  }
  return s;
}
