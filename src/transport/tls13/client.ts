/**
 * A TLS 1.3 client for an external pre-shared key (RFC 8446; NVMe/TCP's secure channel): psk_dhe_ke with X25519 or
 * secp256r1, TLS_AES_128_GCM_SHA256 or TLS_AES_256_GCM_SHA384 (the one the PSK's hash allows), no certificates.
 *
 * `tlsConnect()` runs the handshake on a connected TCP socket and resolves with a `TlsSocket`, a Duplex that carries
 * application data in AEAD-protected records and that a QueuePair runs on as it runs on a plain socket. node:tls is
 * not used: it cannot offer an external PSK with a SHA-384 handshake, and its SHA-256 PSK support depends on the
 * cipher list; one implementation serves both suites the same way.
 *
 * Every failure is a TlsError (NVMEOF_ERR_TLS) naming the reason: the alert the target sent, a Finished that does
 * not verify (wrong key), a cipher suite, version or key share the client did not offer. Keys never appear in
 * messages.
 */
import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, createECDH, createHash, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, timingSafeEqual, type Hash, type KeyObject } from 'node:crypto';
import type * as net from 'node:net';
import { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { TlsError } from '../../errors.js';
import type { TlsPskHash } from '../../protocol/tls-psk.js';
import { abortError } from '../../util.js';
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

const debug = debuglog('nvmeof:tls');

/** Record content types (RFC 8446 5.1). */
const ContentType = { ChangeCipherSpec: 20, Alert: 21, Handshake: 22, ApplicationData: 23 } as const;
/** Handshake message types (RFC 8446 4). */
const HandshakeType = {
  ClientHello: 1,
  ServerHello: 2,
  NewSessionTicket: 4,
  EncryptedExtensions: 8,
  Certificate: 11,
  CertificateRequest: 13,
  Finished: 20,
  KeyUpdate: 24,
} as const;
const Ext = { SupportedGroups: 10, SignatureAlgorithms: 13, PreSharedKey: 41, SupportedVersions: 43, PskKeyExchangeModes: 45, KeyShare: 51 } as const;
const Group = { secp256r1: 0x0017, x25519: 0x001d } as const;
const TLS13 = 0x0304;
const MAX_PLAINTEXT = 1 << 14;
const MAX_CIPHERTEXT = MAX_PLAINTEXT + 256;
const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');
/** Records sent under one key before the client rotates it with KeyUpdate (well inside AES-GCM's limits). */
const DEFAULT_KEY_UPDATE_AFTER = 1 << 23;

/** Alert descriptions (RFC 8446 6). */
export const AlertDescription: Record<number, string> = {
  0: 'close_notify',
  10: 'unexpected_message',
  20: 'bad_record_mac',
  22: 'record_overflow',
  40: 'handshake_failure',
  42: 'bad_certificate',
  47: 'illegal_parameter',
  48: 'unknown_ca',
  50: 'decode_error',
  51: 'decrypt_error',
  70: 'protocol_version',
  71: 'insufficient_security',
  80: 'internal_error',
  86: 'inappropriate_fallback',
  90: 'user_canceled',
  109: 'missing_extension',
  110: 'unsupported_extension',
  112: 'unrecognized_name',
  115: 'unknown_psk_identity',
  116: 'certificate_required',
  120: 'no_application_protocol',
};

function alertName(d: number): string {
  return AlertDescription[d] ?? `alert ${d}`;
}

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

/** A bounds-checked reader; running past the end is a decode_error. */
class Cursor {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    private readonly what: string,
  ) {}
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new TlsAbort(50, `${this.what} is truncated`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  vec8(): Buffer {
    return this.bytes(this.u8());
  }
  vec16(): Buffer {
    return this.bytes(this.u16());
  }
  get done(): boolean {
    return this.pos === this.buf.length;
  }
}

/** A failure this side detected: the alert it sends and the reason. */
class TlsAbort extends Error {
  constructor(
    readonly alert: number,
    message: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Key exchange

interface KeyShare {
  group: 'x25519' | 'secp256r1';
  id: number;
  pub: Buffer;
  compute(peer: Buffer): Buffer;
}

function x25519Share(): KeyShare {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const jwk = publicKey.export({ format: 'jwk' });
  return {
    group: 'x25519',
    id: Group.x25519,
    pub: Buffer.from(jwk.x!, 'base64url'),
    compute(peer: Buffer): Buffer {
      if (peer.length !== 32) throw new TlsAbort(47, 'the target sent an X25519 key share that is not 32 bytes');
      let pk: KeyObject;
      try {
        pk = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: peer.toString('base64url') }, format: 'jwk' });
      } catch {
        throw new TlsAbort(47, 'the target sent an invalid X25519 key share');
      }
      const shared = diffieHellman({ privateKey, publicKey: pk });
      if (shared.every((b) => b === 0)) throw new TlsAbort(47, 'the X25519 shared secret is all zeros');
      return shared;
    },
  };
}

function p256Share(): KeyShare {
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
    if (payload.length < 17) throw new TlsAbort(20, 'a protected record is shorter than its tag');
    const d = createDecipheriv(this.suite.aead, this.key, this.nonce());
    d.setAAD(header);
    d.setAuthTag(payload.subarray(payload.length - 16));
    let plain: Buffer;
    try {
      plain = Buffer.concat([d.update(payload.subarray(0, payload.length - 16)), d.final()]);
    } catch {
      throw new TlsAbort(20, 'a record from the target does not decrypt (bad_record_mac: wrong key or corrupted data)');
    }
    let end = plain.length - 1;
    while (end >= 0 && plain[end] === 0) end--;
    if (end < 0) throw new TlsAbort(10, 'a protected record from the target has no content type');
    if (end > MAX_PLAINTEXT) throw new TlsAbort(22, 'a record from the target exceeds 2^14 bytes');
    return { type: plain[end]!, content: plain.subarray(0, end) };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The connection

type State = 'wait_sh' | 'wait_ee' | 'wait_fin' | 'connected' | 'closed';

/**
 * A TLS 1.3 connection over a TCP socket, as a Duplex of application data. Created by `tlsConnect()`.
 */
export class TlsSocket extends Duplex {
  /** What the handshake negotiated; set once connected. */
  info: TlsSessionInfo | undefined;
  /** KeyUpdate messages sent (key rotations of this side) and received. */
  keyUpdatesSent = 0;
  keyUpdatesReceived = 0;
  private state: State = 'wait_sh';
  private readonly raw: net.Socket;
  private readonly suite: CipherSuite;
  private readonly opts: TlsClientOptions;
  private readonly shares: KeyShare[];
  private readonly early: Buffer;
  private transcript: Hash;
  private hs: Buffer | undefined;
  private clientHs: Buffer | undefined;
  private serverHs: Buffer | undefined;
  private readKeys: RecordKeys | undefined;
  private writeKeys: RecordKeys | undefined;
  private readonly keyUpdateAfter: number;
  /** Unparsed record bytes, as chunks. */
  private inChunks: Buffer[] = [];
  private inLen = 0;
  /** Handshake bytes not yet forming a whole message. */
  private hsBuf: Buffer = Buffer.alloc(0);
  private settle: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private failure: TlsError | undefined;

  constructor(raw: net.Socket, opts: TlsClientOptions) {
    super({ allowHalfOpen: false });
    this.raw = raw;
    this.opts = opts;
    this.suite = suiteForHash(opts.hash);
    if (opts.psk.length !== this.suite.hashLen) throw new TlsError(`a ${this.suite.hash} TLS PSK must be ${this.suite.hashLen} bytes`);
    this.keyUpdateAfter = opts.keyUpdateAfterRecords ?? DEFAULT_KEY_UPDATE_AFTER;
    const groups = opts.groups ?? ['x25519', 'secp256r1'];
    this.shares = groups.map((g) => (g === 'x25519' ? x25519Share() : p256Share()));
    this.early = earlySecret(this.suite.hash, opts.psk);
    this.transcript = createHash(this.suite.hash);
    raw.on('data', (chunk: Buffer) => this.onRaw(chunk));
    raw.on('error', (err) => this.fail(new TlsError(`TLS connection to ${this.peer}: socket error: ${err.message}`, { cause: err }), false));
    raw.on('close', () => {
      if (this.state !== 'connected' && this.state !== 'closed') this.fail(new TlsError(`TLS handshake with ${this.peer}: the target closed the connection`), false);
      else if (!this.destroyed) this.destroy();
    });
  }

  private get peer(): string {
    return this.opts.peer ?? 'the target';
  }

  /** Send the ClientHello; resolves once the handshake completes. */
  handshake(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
      const ch = buildClientHello({
        suite: this.suite,
        identity: this.opts.identity,
        binderKey: binderKey(this.suite.hash, this.early, 'ext'),
        shares: this.shares,
        random: randomBytes(32),
      });
      this.transcript.update(ch);
      this.writePlainRecord(ContentType.Handshake, ch);
    });
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
    if (this.state === 'connected' && this.writeKeys && !this.raw.destroyed) {
      this.raw.write(Buffer.concat(this.writeKeys.seal(ContentType.Alert, [Buffer.of(1, 0)], 2)));
      this.raw.end();
    }
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.state = 'closed';
    this.raw.destroy();
    cb(err);
  }

  private sendApplication(chunks: Buffer[], cb: (err?: Error | null) => void): void {
    if (this.state !== 'connected' || !this.writeKeys) {
      cb(this.failure ?? new TlsError('TLS connection is not established'));
      return;
    }
    const out: Buffer[] = [];
    let parts: Buffer[] = [];
    let len = 0;
    const flush = () => {
      if (len === 0) return;
      this.maybeRotateWriteKey(out);
      for (const b of this.writeKeys!.seal(ContentType.ApplicationData, parts, len)) out.push(b);
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
    this.raw.cork();
    let ok = true;
    for (const b of out) ok = this.raw.write(b);
    this.raw.uncork();
    if (ok) cb();
    else this.raw.once('drain', () => cb());
  }

  /** Our sending key is rotated (KeyUpdate, update_not_requested) after keyUpdateAfter records. */
  private maybeRotateWriteKey(out: Buffer[]): void {
    if (this.writeKeys!.sequence < this.keyUpdateAfter) return;
    const msg = Buffer.concat([u8(HandshakeType.KeyUpdate), u24(1), u8(0)]);
    for (const b of this.writeKeys!.seal(ContentType.Handshake, [msg], msg.length)) out.push(b);
    this.writeKeys = RecordKeys.from(this.suite, nextTrafficSecret(this.suite.hash, this.writeKeys!.secret));
    this.keyUpdatesSent++;
    debug('%s: sending key updated', this.peer);
  }

  // -- Records in ----------------------------------------------------------------------------------------------

  private onRaw(chunk: Buffer): void {
    if ((this.state as State) === 'closed') return;
    this.inChunks.push(chunk);
    this.inLen += chunk.length;
    try {
      for (;;) {
        if (this.inLen < 5) return;
        const head = this.peek(5);
        const len = head.readUInt16BE(3);
        if (len > MAX_CIPHERTEXT) throw new TlsAbort(22, `the target sent a ${len}-byte record (more than 2^14+256)`);
        if (this.inLen < 5 + len) return;
        const rec = this.takeBytes(5 + len);
        this.onRecord(rec.subarray(0, 5), rec.subarray(5));
        if ((this.state as State) === 'closed') return;
      }
    } catch (err) {
      if (err instanceof TlsAbort) this.abort(err);
      else this.fail(err instanceof TlsError ? err : new TlsError(`TLS connection to ${this.peer}: ${(err as Error).message}`, { cause: err }), true);
    }
  }

  private peek(n: number): Buffer {
    if (this.inChunks[0]!.length >= n) return this.inChunks[0]!.subarray(0, n);
    const all = Buffer.concat(this.inChunks);
    this.inChunks = [all];
    return all.subarray(0, n);
  }

  private takeBytes(n: number): Buffer {
    const first = this.inChunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.inChunks.shift();
      else this.inChunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.inChunks[0]!;
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this.inChunks.shift();
        else this.inChunks[0] = c.subarray(k);
      }
    }
    this.inLen -= n;
    return out;
  }

  private onRecord(header: Buffer, payload: Buffer): void {
    const outer = header[0]!;
    if (outer === ContentType.ChangeCipherSpec) {
      // Middlebox compatibility: one ChangeCipherSpec (0x01) may arrive before the first protected record.
      if (this.state === 'connected' || payload.length !== 1 || payload[0] !== 1) throw new TlsAbort(10, 'unexpected change_cipher_spec from the target');
      return;
    }
    let type = outer;
    let content = payload;
    if (this.readKeys) {
      if (outer !== ContentType.ApplicationData) {
        if (outer === ContentType.Alert && payload.length === 2) return this.onAlert(payload);
        throw new TlsAbort(10, `the target sent an unprotected record of type ${outer} after the handshake keys`);
      }
      ({ type, content } = this.readKeys.open(header, payload));
    } else if (outer !== ContentType.Handshake && outer !== ContentType.Alert) {
      throw new TlsAbort(10, `the target sent a record of type ${outer} before the ServerHello`);
    }
    switch (type) {
      case ContentType.Alert:
        return this.onAlert(content);
      case ContentType.Handshake:
        return this.onHandshakeBytes(content);
      case ContentType.ApplicationData:
        if (this.state !== 'connected') throw new TlsAbort(10, 'the target sent application data before the handshake finished');
        if (!this.push(content)) this.raw.pause();
        return;
      default:
        throw new TlsAbort(10, `the target sent a record of unknown type ${type}`);
    }
  }

  private onAlert(content: Buffer): void {
    if (content.length !== 2) throw new TlsAbort(50, 'the target sent a malformed alert');
    const desc = content[1]!;
    if (desc === 0) {
      // close_notify: no more data from the target.
      debug('%s: close_notify', this.peer);
      if (this.state === 'connected') {
        this.push(null);
        return;
      }
    }
    if (desc === 90 && this.state === 'connected') return; // user_canceled is followed by close_notify
    const phase = this.state === 'connected' ? 'TLS connection to' : 'TLS handshake with';
    this.fail(new TlsError(`${phase} ${this.peer} failed: the target sent alert ${alertName(desc)}${alertMeaning(desc, this.state === 'wait_sh')}`, { alert: desc }), false);
  }

  private onHandshakeBytes(content: Buffer): void {
    this.hsBuf = this.hsBuf.length ? Buffer.concat([this.hsBuf, content]) : content;
    while (this.hsBuf.length >= 4) {
      const len = (this.hsBuf[1]! << 16) | (this.hsBuf[2]! << 8) | this.hsBuf[3]!;
      if (len > 0x10000) throw new TlsAbort(50, `the target sent a ${len}-byte handshake message`);
      if (this.hsBuf.length < 4 + len) return;
      const msg = this.hsBuf.subarray(0, 4 + len);
      this.hsBuf = this.hsBuf.subarray(4 + len);
      this.onHandshake(msg[0]!, msg, msg.subarray(4));
      if ((this.state as State) === 'closed') return;
    }
  }

  private onHandshake(type: number, msg: Buffer, body: Buffer): void {
    switch (this.state) {
      case 'wait_sh':
        if (type !== HandshakeType.ServerHello) throw new TlsAbort(10, `expected ServerHello, the target sent handshake message ${type}`);
        this.onServerHello(msg, body);
        return;
      case 'wait_ee':
        if (type === HandshakeType.Certificate || type === HandshakeType.CertificateRequest) {
          throw new TlsAbort(10, 'the target asked for certificate authentication; only a PSK is offered');
        }
        if (type !== HandshakeType.EncryptedExtensions) throw new TlsAbort(10, `expected EncryptedExtensions, the target sent handshake message ${type}`);
        this.transcript.update(msg);
        this.state = 'wait_fin';
        return;
      case 'wait_fin':
        if (type !== HandshakeType.Finished) throw new TlsAbort(10, `expected Finished, the target sent handshake message ${type}`);
        this.onServerFinished(msg, body);
        return;
      case 'connected':
        if (type === HandshakeType.NewSessionTicket) return; // no resumption
        if (type === HandshakeType.KeyUpdate) {
          if (body.length !== 1 || body[0]! > 1) throw new TlsAbort(50, 'malformed KeyUpdate from the target');
          this.readKeys = RecordKeys.from(this.suite, nextTrafficSecret(this.suite.hash, this.readKeys!.secret));
          this.keyUpdatesReceived++;
          debug('%s: receiving key updated (update_requested=%d)', this.peer, body[0]);
          if (body[0] === 1) {
            const out: Buffer[] = [];
            const reply = Buffer.concat([u8(HandshakeType.KeyUpdate), u24(1), u8(0)]);
            for (const b of this.writeKeys!.seal(ContentType.Handshake, [reply], reply.length)) out.push(b);
            this.writeKeys = RecordKeys.from(this.suite, nextTrafficSecret(this.suite.hash, this.writeKeys!.secret));
            this.keyUpdatesSent++;
            this.raw.write(Buffer.concat(out));
          }
          return;
        }
        throw new TlsAbort(10, `unexpected handshake message ${type} after the handshake`);
      default:
        return;
    }
  }

  private onServerHello(msg: Buffer, body: Buffer): void {
    const c = new Cursor(body, 'ServerHello');
    c.u16(); // legacy_version
    const random = c.bytes(32);
    if (random.equals(HRR_RANDOM)) {
      throw new TlsAbort(40, `the target sent a HelloRetryRequest: it accepts none of the key share groups offered (${this.shares.map((s) => s.group).join(', ')})`);
    }
    const sid = c.vec8();
    if (sid.length !== 0) throw new TlsAbort(47, 'the target echoed a session id that was not sent');
    const suite = c.u16();
    if (suite !== this.suite.id) {
      throw new TlsAbort(47, `cipher not acceptable: the target chose 0x${suite.toString(16).padStart(4, '0')}, the PSK's hash allows only ${this.suite.name}`);
    }
    if (c.u8() !== 0) throw new TlsAbort(47, 'the target chose a compression method');
    const exts = new Cursor(c.vec16(), 'ServerHello extensions');
    if (!c.done) throw new TlsAbort(50, 'ServerHello has trailing bytes');
    let version: number | undefined;
    let share: { group: number; key: Buffer } | undefined;
    let selected: number | undefined;
    while (!exts.done) {
      const t = exts.u16();
      const e = new Cursor(exts.vec16(), `ServerHello extension ${t}`);
      if (t === Ext.SupportedVersions) version = e.u16();
      else if (t === Ext.KeyShare) share = { group: e.u16(), key: e.vec16() };
      else if (t === Ext.PreSharedKey) selected = e.u16();
      else throw new TlsAbort(110, `the target sent extension ${t} in its ServerHello`);
    }
    if (version !== TLS13) throw new TlsAbort(70, `version not acceptable: the target did not negotiate TLS 1.3${version ? ` (0x${version.toString(16)})` : ' (TLS 1.2 or older)'}`);
    if (selected === undefined) throw new TlsAbort(40, `the target did not accept the PSK identity ${JSON.stringify(this.opts.identity)}`);
    if (selected !== 0) throw new TlsAbort(47, `the target selected PSK identity ${selected}; one was offered`);
    if (!share) throw new TlsAbort(109, 'the target chose psk_ke without a key share; only psk_dhe_ke is offered');
    const mine = this.shares.find((s) => s.id === share.group);
    if (!mine) throw new TlsAbort(47, `the target chose key share group 0x${share.group.toString(16)}, which was not offered`);
    const shared = mine.compute(share.key);
    this.transcript.update(msg);
    const h = this.suite.hash;
    this.hs = handshakeSecret(h, this.early, shared);
    const th = this.transcript.copy().digest();
    this.clientHs = deriveSecret(h, this.hs, 'c hs traffic', th);
    this.serverHs = deriveSecret(h, this.hs, 's hs traffic', th);
    this.readKeys = RecordKeys.from(this.suite, this.serverHs);
    this.writeKeys = RecordKeys.from(this.suite, this.clientHs);
    this.info = { protocol: 'TLSv1.3', cipher: this.suite.name, identity: this.opts.identity, group: mine.group };
    this.state = 'wait_ee';
    if (this.hsBuf.length) throw new TlsAbort(10, 'the target sent handshake data after ServerHello in the same record');
  }

  private onServerFinished(msg: Buffer, body: Buffer): void {
    const h = this.suite.hash;
    const expected = verifyData(h, this.serverHs!, this.transcript.copy().digest());
    if (body.length !== expected.length || !timingSafeEqual(body, expected)) {
      throw new TlsAbort(51, "wrong key: the target's Finished does not verify with this PSK");
    }
    this.transcript.update(msg);
    const th = this.transcript.copy().digest();
    const master = masterSecret(h, this.hs!);
    const clientAp = deriveSecret(h, master, 'c ap traffic', th);
    const serverAp = deriveSecret(h, master, 's ap traffic', th);
    const fin = Buffer.concat([u8(HandshakeType.Finished), u24(this.suite.hashLen), verifyData(h, this.clientHs!, th)]);
    this.raw.write(Buffer.concat(this.writeKeys!.seal(ContentType.Handshake, [fin], fin.length)));
    this.readKeys = RecordKeys.from(this.suite, serverAp);
    this.writeKeys = RecordKeys.from(this.suite, clientAp);
    this.hs = this.clientHs = this.serverHs = undefined;
    this.state = 'connected';
    debug('%s: TLS 1.3 %s with PSK identity %s', this.peer, this.suite.name, this.opts.identity);
    const s = this.settle;
    this.settle = undefined;
    s?.resolve();
  }

  // -- Failure -------------------------------------------------------------------------------------------------

  private writePlainRecord(type: number, body: Buffer): void {
    const header = Buffer.of(type, 0x03, type === ContentType.Handshake ? 0x01 : 0x03, 0, 0);
    header.writeUInt16BE(body.length, 3);
    this.raw.write(Buffer.concat([header, body]));
  }

  /** A failure this side detected: send its alert, then fail. */
  private abort(a: TlsAbort): void {
    if (!this.raw.destroyed && this.state !== 'closed') {
      const alert = Buffer.of(2, a.alert);
      try {
        if (this.writeKeys) this.raw.write(Buffer.concat(this.writeKeys.seal(ContentType.Alert, [alert], 2)));
        else this.writePlainRecord(ContentType.Alert, alert);
      } catch {
        // the connection is going away anyway
      }
    }
    const phase = this.state === 'connected' ? 'TLS connection to' : 'TLS handshake with';
    this.fail(new TlsError(`${phase} ${this.peer} failed: ${a.message}`), true);
  }

  private fail(err: TlsError, endGracefully: boolean): void {
    if ((this.state as State) === 'closed') return;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    this.failure = err;
    debug('%s: %s', this.peer, err.message);
    if (endGracefully) this.raw.end();
    this.raw.destroy();
    const s = this.settle;
    this.settle = undefined;
    if (s) {
      s.reject(err);
      this.destroy();
    } else if (wasConnected) {
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
