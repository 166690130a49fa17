/**
 * A scripted TLS 1.3 PSK server for unit tests of the client: it parses the ClientHello (checking the binder), builds
 * the server's flight from the RFC 8446 key schedule, and seals and opens records with node:crypto directly (not with
 * the client's record layer). Knobs change single fields so tests can see each refusal.
 */
import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
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
} from '../../src/transport/tls13/key-schedule.js';
import type { TlsPskHash } from '../../src/protocol/tls-psk.js';

/** A socket stand-in: what the client writes is collected; the test emits 'data' itself. */
export class FakeSocket extends EventEmitter {
  written: Buffer[] = [];
  destroyed = false;
  ended = false;
  /** As net.Socket's: false once ended or destroyed. */
  get writable(): boolean {
    return !this.destroyed && !this.ended;
  }
  write(b: Buffer): boolean {
    this.written.push(Buffer.from(b));
    return true;
  }
  cork(): void {}
  uncork(): void {}
  end(): this {
    this.ended = true;
    return this;
  }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      queueMicrotask(() => this.emit('close'));
    }
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  isPaused(): boolean {
    return false;
  }
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  /** Everything written so far, as one buffer, and forget it. */
  take(): Buffer {
    const b = Buffer.concat(this.written);
    this.written = [];
    return b;
  }
  asSocket(): net.Socket {
    return this as unknown as net.Socket;
  }
}

class Keys {
  seq = 0;
  readonly key: Buffer;
  readonly iv: Buffer;
  constructor(
    readonly suite: CipherSuite,
    readonly secret: Buffer,
  ) {
    ({ key: this.key, iv: this.iv } = trafficKeys(suite, secret));
  }
  private nonce(): Buffer {
    const n = Buffer.from(this.iv);
    const s = Buffer.alloc(8);
    s.writeBigUInt64BE(BigInt(this.seq++));
    for (let i = 0; i < 8; i++) n[4 + i]! ^= s[i]!;
    return n;
  }
  seal(type: number, content: Buffer): Buffer {
    const inner = Buffer.concat([content, Buffer.of(type)]);
    const header = Buffer.of(23, 3, 3, 0, 0);
    header.writeUInt16BE(inner.length + 16, 3);
    const c = createCipheriv(this.suite.aead, this.key, this.nonce());
    c.setAAD(header);
    return Buffer.concat([header, c.update(inner), c.final(), c.getAuthTag()]);
  }
  open(record: Buffer): { type: number; content: Buffer } {
    const d = createDecipheriv(this.suite.aead, this.key, this.nonce());
    d.setAAD(record.subarray(0, 5));
    d.setAuthTag(record.subarray(record.length - 16));
    const plain = Buffer.concat([d.update(record.subarray(5, record.length - 16)), d.final()]);
    let end = plain.length - 1;
    while (plain[end] === 0) end--;
    return { type: plain[end]!, content: plain.subarray(0, end) };
  }
}

/** Split a byte stream into TLS records. */
export function records(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < b.length; ) {
    const len = b.readUInt16BE(off + 3);
    out.push(b.subarray(off, off + 5 + len));
    off += 5 + len;
  }
  return out;
}

function u24(n: number): Buffer {
  return Buffer.of(n >>> 16, (n >>> 8) & 0xff, n & 0xff);
}
function vec16(b: Buffer): Buffer {
  const l = Buffer.alloc(2);
  l.writeUInt16BE(b.length);
  return Buffer.concat([l, b]);
}
function ext(type: number, body: Buffer): Buffer {
  const t = Buffer.alloc(2);
  t.writeUInt16BE(type);
  return Buffer.concat([t, vec16(body)]);
}

export interface PeerKnobs {
  /** Cipher suite id in the ServerHello (default the PSK's). */
  suiteId?: number;
  /** supported_versions value; null leaves the extension out. */
  version?: number | null;
  /** Leave out pre_shared_key. */
  noPsk?: boolean;
  /** Send the HelloRetryRequest random. */
  hrr?: boolean;
  /** Flip a bit of the server Finished. */
  badFinished?: boolean;
  /** The key share value sent in the ServerHello instead of the server's own. */
  keyShare?: Buffer;
  /** The EncryptedExtensions message (default: no extensions). */
  encryptedExtensions?: Buffer;
  /** Cut the Finished's verify_data to this many bytes. */
  finishedLength?: number;
  /** Handshake bytes sent after the Finished in the same record. */
  afterFinished?: Buffer;
}

/** The server side of one handshake. */
export class ScriptedTlsServer {
  readonly suite: CipherSuite;
  identity = '';
  private transcript = createHash('sha256');
  clientHs!: Keys;
  serverHs!: Keys;
  clientAp!: Keys;
  serverAp!: Keys;
  expectedClientFinished!: Buffer;

  constructor(
    private readonly psk: Buffer,
    hash: TlsPskHash,
    private readonly knobs: PeerKnobs = {},
  ) {
    this.suite = suiteForHash(hash);
    this.transcript = createHash(hash);
  }

  /** Parse the ClientHello record, check its binder, and return the server's flight (ServerHello, {EE, Finished}). */
  respond(chRecord: Buffer): Buffer {
    const h = this.suite.hash;
    if (chRecord[0] !== 22) throw new Error('not a handshake record');
    const msg = chRecord.subarray(5);
    if (msg[0] !== 1) throw new Error('not a ClientHello');
    let p = 4 + 2 + 32;
    p += 1 + msg[p]!; // session id
    p += 2 + msg.readUInt16BE(p); // suites
    p += 1 + msg[p]!; // compression
    const extEnd = p + 2 + msg.readUInt16BE(p);
    p += 2;
    let clientX25519: Buffer | undefined;
    let binderAt = -1;
    while (p < extEnd) {
      const type = msg.readUInt16BE(p);
      const len = msg.readUInt16BE(p + 2);
      const body = msg.subarray(p + 4, p + 4 + len);
      if (type === 51) {
        for (let q = 2; q < body.length; ) {
          const g = body.readUInt16BE(q);
          const kl = body.readUInt16BE(q + 2);
          if (g === 0x1d) clientX25519 = body.subarray(q + 4, q + 4 + kl);
          q += 4 + kl;
        }
      } else if (type === 41) {
        const idsLen = body.readUInt16BE(0);
        const idLen = body.readUInt16BE(2);
        this.identity = body.subarray(4, 4 + idLen).toString();
        binderAt = p + 4 + 2 + idsLen;
      }
      p += 4 + len;
    }
    if (!clientX25519 || binderAt < 0) throw new Error('ClientHello lacks an X25519 share or a PSK');
    const early = earlySecret(h, this.psk);
    const binder = msg.subarray(binderAt + 3, binderAt + 3 + this.suite.hashLen);
    const want = verifyData(h, binderKey(h, early, 'ext'), createHash(h).update(msg.subarray(0, binderAt)).digest());
    if (!binder.equals(want)) throw new Error('binder does not verify');
    this.transcript.update(msg);

    // DER out of the generation itself: a JWK export of a fresh key can deadlock Node 20 in a worker (see x25519Share).
    const kp = generateKeyPairSync('x25519', { publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'der' } });
    const pub = Buffer.from(kp.publicKey.subarray(12));
    const shared = diffieHellman({ privateKey: createPrivateKey({ key: kp.privateKey, format: 'der', type: 'pkcs8' }), publicKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: clientX25519.toString('base64url') }, format: 'jwk' }) });
    const exts: Buffer[] = [];
    if (this.knobs.version !== null) exts.push(ext(43, Buffer.from([(this.knobs.version ?? 0x0304) >> 8, (this.knobs.version ?? 0x0304) & 0xff])));
    exts.push(ext(51, Buffer.concat([Buffer.of(0, 0x1d), vec16(this.knobs.keyShare ?? pub)])));
    if (!this.knobs.noPsk) exts.push(ext(41, Buffer.of(0, 0)));
    const random = this.knobs.hrr ? Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex') : Buffer.alloc(32, 7);
    const suite = this.knobs.suiteId ?? this.suite.id;
    const shBody = Buffer.concat([Buffer.of(3, 3), random, Buffer.of(0), Buffer.of(suite >> 8, suite & 0xff), Buffer.of(0), vec16(Buffer.concat(exts))]);
    const sh = Buffer.concat([Buffer.of(2), u24(shBody.length), shBody]);
    this.transcript.update(sh);
    const hs = handshakeSecret(h, early, shared);
    const th = this.transcript.copy().digest();
    const cHsSecret = deriveSecret(h, hs, 'c hs traffic', th);
    const sHsSecret = deriveSecret(h, hs, 's hs traffic', th);
    this.clientHs = new Keys(this.suite, cHsSecret);
    this.serverHs = new Keys(this.suite, sHsSecret);
    const ee = this.knobs.encryptedExtensions ?? Buffer.of(8, 0, 0, 2, 0, 0);
    this.transcript.update(ee);
    const fv = verifyData(h, sHsSecret, this.transcript.copy().digest());
    if (this.knobs.badFinished) fv[0]! ^= 1;
    const fvSent = fv.subarray(0, this.knobs.finishedLength ?? fv.length);
    const fin = Buffer.concat([Buffer.of(20), u24(fvSent.length), fvSent]);
    this.transcript.update(fin);
    const th2 = this.transcript.copy().digest();
    this.expectedClientFinished = verifyData(h, cHsSecret, th2);
    const master = masterSecret(h, hs);
    this.clientAp = new Keys(this.suite, deriveSecret(h, master, 'c ap traffic', th2));
    this.serverAp = new Keys(this.suite, deriveSecret(h, master, 's ap traffic', th2));
    const shRecord = Buffer.concat([Buffer.of(22, 3, 3), vec16(sh)]);
    return Buffer.concat([shRecord, this.serverHs.seal(22, Buffer.concat([ee, fin, this.knobs.afterFinished ?? Buffer.alloc(0)]))]);
  }

  /** Check the client's Finished record. */
  checkClientFinished(record: Buffer): boolean {
    const { type, content } = this.clientHs.open(record);
    return type === 22 && content[0] === 20 && content.subarray(4).equals(this.expectedClientFinished);
  }

  /** A KeyUpdate from the server (then the server's sending key moves on). */
  keyUpdate(requested: boolean): Buffer {
    const rec = this.serverAp.seal(22, Buffer.of(24, 0, 0, 1, requested ? 1 : 0));
    this.serverAp = new Keys(this.suite, nextTrafficSecret(this.suite.hash, this.serverAp.secret));
    return rec;
  }

  /** The client moved its sending key on. */
  clientKeyUpdated(): void {
    this.clientAp = new Keys(this.suite, nextTrafficSecret(this.suite.hash, this.clientAp.secret));
  }
}
