/**
 * Fuzz target for the TLS 1.3 client (src/transport/tls13): the whole client state machine (`TlsClientCore`) against
 * a server whose flight is written by the input, the record layer and handshake reassembly as stream parsers, and
 * each server message parser on its own.
 *
 * The session mode is the one that reaches past the handshake: random bytes never decrypt, so the input is a list of
 * steps for a server that holds the real keys (`FuzzServer`): send raw bytes, a valid ServerHello, a record sealed
 * under the server's current key with any content type, content and padding, the correct Finished, a KeyUpdate.
 * Every byte the client reads after the ServerHello is then protected as a real server would protect it.
 */
import { Buffer } from 'node:buffer';
import { createECDH, createHash, createPrivateKey, createPublicKey, createCipheriv, diffieHellman, type Hash } from 'node:crypto';
import { NvmeofError } from '../src/errors.js';
import type { TlsPskHash } from '../src/protocol/tls-psk.js';
import {
  acceptEncryptedExtensions,
  acceptServerHello,
  p256Share,
  TlsClientCore,
  x25519Share,
  type KeyShare,
  type TlsClientEvent,
} from '../src/transport/tls13/client.js';
import * as ks from '../src/transport/tls13/key-schedule.js';
import * as wire from '../src/transport/tls13/wire.js';
import { chunkSizes, FuzzFinding, typed } from './common.js';

const IDENTITY = 'NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:h nqn.2014-08.org.nvmexpress:uuid:s';
const PSK: Record<TlsPskHash, Buffer> = { sha256: Buffer.alloc(32, 0x5a), sha384: Buffer.alloc(48, 0x5a) };

// ---------------------------------------------------------------------------------------------------------------
// A server holding the real keys

/** The server's fixed X25519 key pair of RFC 8448's traces. */
const SERVER_X25519 = {
  d: Buffer.from('b1580eeadf6dd589b8ef4f2d5652578cc810e9980191ec8d058308cea216a21e', 'hex'),
  x: Buffer.from('c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f', 'hex'),
};
const serverX25519Private = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: SERVER_X25519.d.toString('base64url'), x: SERVER_X25519.x.toString('base64url') }, format: 'jwk' });
const serverP256 = createECDH('prime256v1');
serverP256.setPrivateKey(Buffer.alloc(32, 0x11));

class SealKeys {
  private seq = 0;
  private readonly key: Buffer;
  private readonly iv: Buffer;
  constructor(
    private readonly suite: ks.CipherSuite,
    readonly secret: Buffer,
  ) {
    ({ key: this.key, iv: this.iv } = ks.trafficKeys(suite, secret));
  }
  seal(inner: Buffer): Buffer {
    const n = Buffer.from(this.iv);
    const s = Buffer.alloc(8);
    s.writeBigUInt64BE(BigInt(this.seq++));
    for (let i = 0; i < 8; i++) n[4 + i]! ^= s[i]!;
    const header = Buffer.of(23, 3, 3, 0, 0);
    header.writeUInt16BE((inner.length + 16) & 0xffff, 3);
    const c = createCipheriv(this.suite.aead, this.key, n);
    c.setAAD(header);
    return Buffer.concat([header, c.update(inner), c.final(), c.getAuthTag()]);
  }
}

/** The server of one session: reads the client's ClientHello, then writes what the steps ask for. */
class FuzzServer {
  private readonly transcript: Hash;
  private readonly suite: ks.CipherSuite;
  private clientShare: Buffer | undefined;
  private clientGroups: number[] = [];
  private hs: Buffer | undefined;
  private serverHs: Buffer | undefined;
  private keys: SealKeys | undefined;
  private app = false;

  constructor(
    hash: TlsPskHash,
    clientHelloRecord: Buffer,
    private readonly p256: boolean,
  ) {
    this.suite = ks.suiteForHash(hash);
    this.transcript = createHash(hash);
    const ch = clientHelloRecord.subarray(5);
    this.transcript.update(ch);
    const c = new wire.Cursor(ch.subarray(4), 'ClientHello');
    c.bytes(2 + 32);
    c.vec8();
    c.vec16();
    c.vec8();
    const exts = new wire.Cursor(c.vec16(), 'ClientHello extensions');
    while (!exts.done) {
      const t = exts.u16();
      const body = exts.vec16();
      if (t !== 51) continue;
      const shares = new wire.Cursor(body, 'key_share');
      const list = new wire.Cursor(shares.vec16(), 'client_shares');
      while (!list.done) {
        const g = list.u16();
        const key = list.vec16();
        this.clientGroups.push(g);
        if ((g === 0x1d && !p256) || (g === 0x17 && p256)) this.clientShare = key;
      }
    }
  }

  /** The ServerHello record (plaintext); the handshake keys follow from it. */
  serverHello(): Buffer {
    const group = this.p256 ? 0x17 : 0x1d;
    const pub = this.p256 ? serverP256.getPublicKey() : SERVER_X25519.x;
    const ext = (type: number, body: Buffer): Buffer => Buffer.concat([Buffer.of(type >> 8, type & 0xff, body.length >> 8, body.length & 0xff), body]);
    const exts = Buffer.concat([
      ext(43, Buffer.of(3, 4)),
      ext(51, Buffer.concat([Buffer.of(group >> 8, group & 0xff, pub.length >> 8, pub.length & 0xff), pub])),
      ext(41, Buffer.of(0, 0)),
    ]);
    const body = Buffer.concat([Buffer.of(3, 3), Buffer.alloc(32, 0x42), Buffer.of(0, this.suite.id >> 8, this.suite.id & 0xff, 0, exts.length >> 8, exts.length & 0xff), exts]);
    const sh = Buffer.concat([Buffer.of(2, 0, body.length >> 8, body.length & 0xff), body]);
    this.transcript.update(sh);
    if (this.clientShare !== undefined) {
      const shared = this.p256
        ? serverP256.computeSecret(this.clientShare)
        : diffieHellman({ privateKey: serverX25519Private, publicKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: this.clientShare.toString('base64url') }, format: 'jwk' }) });
      this.hs = ks.handshakeSecret(this.suite.hash, ks.earlySecret(this.suite.hash, PSK[this.suite.hash]), shared);
      this.serverHs = ks.deriveSecret(this.suite.hash, this.hs, 's hs traffic', this.transcript.copy().digest());
      this.keys = new SealKeys(this.suite, this.serverHs);
    }
    return Buffer.concat([Buffer.of(22, 3, 3, sh.length >> 8, sh.length & 0xff), sh]);
  }

  /** A record of `type` holding `content` (and `padding` zeros), sealed when the server has keys. */
  record(type: number, content: Buffer, padding = 0): Buffer {
    if (type === wire.ContentType.Handshake && !this.app) this.transcript.update(content);
    if (!this.keys) {
      const len = Math.min(content.length, 0xffff);
      return Buffer.concat([Buffer.of(type, 3, 3, len >> 8, len & 0xff), content.subarray(0, len)]);
    }
    return this.keys.seal(Buffer.concat([content, Buffer.of(type), Buffer.alloc(padding)]));
  }

  /** The Finished that verifies, then the application keys. */
  finished(): Buffer {
    if (!this.serverHs || !this.hs || this.app) return this.record(wire.ContentType.Handshake, Buffer.of(20, 0, 0, 0));
    const h = this.suite.hash;
    const vd = ks.verifyData(h, this.serverHs, this.transcript.copy().digest());
    const fin = Buffer.concat([Buffer.of(20, 0, 0, vd.length), vd]);
    const rec = this.record(wire.ContentType.Handshake, fin);
    const th = this.transcript.copy().digest();
    this.keys = new SealKeys(this.suite, ks.deriveSecret(h, ks.masterSecret(h, this.hs), 's ap traffic', th));
    this.app = true;
    return rec;
  }

  /** A KeyUpdate; the server's key moves on after it. */
  keyUpdate(requested: boolean): Buffer {
    const rec = this.record(wire.ContentType.Handshake, Buffer.of(24, 0, 0, 1, requested ? 1 : 0));
    if (this.keys && this.app) this.keys = new SealKeys(this.suite, ks.nextTrafficSecret(this.suite.hash, this.keys.secret));
    return rec;
  }
}

const MAX_STEPS = 48;

/** The server's bytes for the steps of `steps`, against a client that sent `clientHello`. */
function serverStream(steps: Buffer, hash: TlsPskHash, p256: boolean, clientHello: Buffer): Buffer {
  const server = new FuzzServer(hash, clientHello, p256);
  const out: Buffer[] = [];
  let i = 0;
  // At most MAX_STEPS steps: each may cost a key exchange, and an input must run in milliseconds, not seconds.
  for (let n = 0; i < steps.length && n < MAX_STEPS; n++) {
    const op = steps[i]!;
    const len = i + 2 < steps.length ? steps.readUInt16BE(i + 1) : 0;
    const data = steps.subarray(i + 3, i + 3 + len);
    i += 3 + len;
    switch (op % 8) {
      case 0: out.push(data); break;
      case 1: out.push(server.serverHello()); break;
      case 2: out.push(server.record(data[0] ?? 22, data.subarray(1))); break;
      case 3: out.push(server.finished()); break;
      case 4: out.push(server.keyUpdate((data[0] ?? 0) & 1 ? true : false)); break;
      case 5: out.push(server.record(data[0] ?? 23, data.subarray(2), (data[1] ?? 0) * 16)); break;
      case 6: out.push(Buffer.of(20, 3, 3, 0, 1, 1)); break;
      default: out.push(server.record(wire.ContentType.Alert, Buffer.of(data[0] ?? 1, data[1] ?? 0))); break;
    }
  }
  return Buffer.concat(out);
}

function describe(ev: TlsClientEvent): string {
  switch (ev.type) {
    case 'data': return `data ${ev.data.toString('hex')}`;
    case 'failed': return `failed ${ev.graceful} ${String(ev.error.alert)} ${ev.error.message}`;
    default: return ev.type;
  }
}

/** One client fed `stream` (as produced for its own ClientHello) whole or cut; the events it gave, checked. */
function runClient(hash: TlsPskHash, p256: boolean, steps: Buffer, chunking: number | null): string[] {
  const core = new TlsClientCore({ identity: IDENTITY, psk: PSK[hash], hash, groups: p256 ? ['x25519', 'secp256r1'] : ['x25519'], peer: 'fuzz', keyUpdateAfterRecords: 4 });
  const stream = serverStream(steps, hash, p256, core.start(Buffer.alloc(32, 0x24)));
  const events: string[] = [];
  let connected = false;
  let failed = false;
  let ended = false;
  let fed = 0;
  for (const n of chunking === null ? [stream.length] : chunkSizes(chunking, stream.length)) {
    for (const ev of core.receive(stream.subarray(fed, fed + n))) {
      if (failed) throw new FuzzFinding(`event ${ev.type} after the connection failed`);
      if (ev.type === 'data' && (!connected || ended)) throw new FuzzFinding(`application data ${connected ? 'after close_notify' : 'before the handshake finished'}`);
      if (ev.type === 'connected') connected = true;
      if (ev.type === 'end') ended = true;
      if (ev.type === 'failed') {
        failed = true;
        if (!(ev.error instanceof NvmeofError) || ev.error.code !== 'NVMEOF_ERR_TLS') throw new FuzzFinding('a failure that is not NVMEOF_ERR_TLS');
        if (ev.error.message.includes(PSK[hash].toString('hex'))) throw new FuzzFinding('the PSK appears in an error');
      }
      events.push(describe(ev));
    }
    fed += n;
  }
  // Application data both ways works once connected, and a KeyUpdate is due every 4 records.
  if (connected && !failed) {
    const recs = core.sealApplication([Buffer.alloc(40000, 1)]);
    if (recs.length === 0) throw new FuzzFinding('no records for application data');
  }
  return events;
}

/** The events of a session input (byte 0 a session mode), read whole: for tests of the seeds. */
export function sessionEvents(data: Buffer): string[] {
  const flags = data[1]!;
  return runClient((flags & 1) !== 0 ? 'sha384' : 'sha256', (flags & 2) !== 0, data.subarray(2), null);
}

function sessionMode(flags: number, steps: Buffer): void {
  const hash: TlsPskHash = (flags & 1) !== 0 ? 'sha384' : 'sha256';
  const p256 = (flags & 2) !== 0;
  const whole = runClient(hash, p256, steps, null);
  const cut = runClient(hash, p256, steps, flags >> 2);
  // The data delivered may come in different pieces; its bytes, and every other event, must not.
  const norm = (evs: string[]): string[] => {
    const out: string[] = [];
    for (const e of evs) {
      const last = out.at(-1);
      if (e.startsWith('data ') && last?.startsWith('data ')) out[out.length - 1] = last + e.slice(5);
      else out.push(e);
    }
    return out;
  };
  const a = norm(whole).join('\n');
  const b = norm(cut).join('\n');
  if (a !== b) throw new FuzzFinding(`chunking changed what the client did:\nwhole:\n${a}\nchunked:\n${b}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Stream parsers and single messages

/** Every parser a server message goes through, by handshake type (`hashLen` for Finished). */
function parseMessage(m: wire.HandshakeMessage, hashLen: number): void {
  switch (m.type) {
    case 2: {
      const sh = typed(() => wire.parseServerHello(m.body));
      if (sh !== undefined) typed(() => acceptServerHello(sh, offer(hashLen)));
      break;
    }
    case 8: {
      const ee = typed(() => wire.parseEncryptedExtensions(m.body));
      if (ee !== undefined) typed(() => acceptEncryptedExtensions(ee));
      break;
    }
    case 20: typed(() => wire.parseFinished(m.body, hashLen)); break;
    case 4: typed(() => wire.parseNewSessionTicket(m.body)); break;
    case 24: typed(() => wire.parseKeyUpdate(m.body)); break;
    default: break;
  }
}

let shares: { x: KeyShare; p: KeyShare } | undefined;
function offer(hashLen: number) {
  shares ??= { x: x25519Share(), p: p256Share() };
  return { suite: ks.suiteForHash(hashLen === 48 ? 'sha384' : 'sha256'), shares: [shares.x, shares.p], identity: IDENTITY };
}

function readRecords(stream: Buffer, sizes: number[] | null): { records: wire.TlsRecord[]; error: string | null; held: number } {
  const r = new wire.RecordReader();
  const records: wire.TlsRecord[] = [];
  let fed = 0;
  try {
    for (const n of sizes ?? [stream.length]) {
      r.feed(stream.subarray(fed, fed + n), (rec) => {
        records.push({ ...rec, header: Buffer.from(rec.header), fragment: Buffer.from(rec.fragment) });
      });
      fed += n;
      if (r.buffered > fed) throw new FuzzFinding(`the record reader holds ${r.buffered} bytes after ${fed}`);
    }
  } catch (err) {
    if (err instanceof NvmeofError) return { records, error: `${err.message} ${String((err as { sends?: number }).sends)}`, held: r.buffered };
    throw err;
  }
  return { records, error: null, held: r.buffered };
}

function streamMode(flags: number, stream: Buffer): void {
  const whole = readRecords(stream, null);
  const cut = readRecords(stream, chunkSizes(flags, stream.length));
  const key = (x: { records: wire.TlsRecord[]; error: string | null }) => `${x.records.map((r) => `${r.type}.${r.version}.${r.fragment.toString('hex')}`).join('|')} ${String(x.error)}`;
  if (key(whole) !== key(cut)) throw new FuzzFinding(`chunking changed the records: ${whole.records.length} whole, ${cut.records.length} chunked; errors ${String(whole.error)} / ${String(cut.error)}`);
  // The handshake records' content, reassembled into messages as the client does, each message parsed.
  const hs = new wire.HandshakeReader();
  const hashLen = (flags & 0x80) !== 0 ? 48 : 32;
  for (const rec of whole.records) {
    try {
      if (rec.type === wire.ContentType.Handshake) hs.feed(rec.fragment, (m) => parseMessage(m, hashLen));
      else if (rec.type === wire.ContentType.Alert) wire.parseAlert(rec.fragment);
      else if (rec.type === wire.ContentType.ApplicationData) wire.parseInnerPlaintext(rec.fragment);
    } catch (err) {
      if (!(err instanceof NvmeofError)) throw err;
      return;
    }
  }
}

/** Handshake messages cut into arbitrary fragments give the same messages as one fragment. */
function reassemblyMode(flags: number, stream: Buffer): void {
  const run = (sizes: number[] | null): string => {
    const hs = new wire.HandshakeReader();
    const out: string[] = [];
    let fed = 0;
    try {
      for (const n of sizes ?? [stream.length]) {
        hs.feed(stream.subarray(fed, fed + n), (m) => {
          out.push(m.raw.toString('hex'));
          parseMessage(m, (flags & 0x80) !== 0 ? 48 : 32);
        });
        fed += n;
        if (hs.buffered > fed) throw new FuzzFinding('the handshake reader holds more than it was fed');
      }
    } catch (err) {
      if (!(err instanceof NvmeofError)) throw err;
      out.push(`error ${err.message}`);
    }
    return out.join('|');
  };
  const a = run(null);
  const b = run(chunkSizes(flags, stream.length).filter((n) => n > 0));
  if (a !== b) throw new FuzzFinding('fragmenting changed the handshake messages');
}

export const tlsTarget = {
  name: 'tls',
  description:
    'TLS 1.3 client: the whole client state machine against a server with the real keys whose steps the input writes (byte 1: suite, groups, chunking; whole against chunked), the record layer and handshake reassembly as streams, and ServerHello, EncryptedExtensions, Finished, NewSessionTicket, KeyUpdate and alert parsers (byte 0 picks)',
  run(data: Buffer): void {
    if (data.length < 2) return;
    const flags = data[1]!;
    const b = data.subarray(2);
    switch (data[0]! % 8) {
      case 0: case 1: case 2: sessionMode(flags, b); break;
      case 3: streamMode(flags, b); break;
      case 4: reassemblyMode(flags, b); break;
      case 5: {
        const sh = typed(() => wire.parseServerHello(b));
        if (sh !== undefined) typed(() => acceptServerHello(sh, offer((flags & 1) !== 0 ? 48 : 32)));
        break;
      }
      case 6: {
        const ee = typed(() => wire.parseEncryptedExtensions(b));
        if (ee !== undefined) typed(() => acceptEncryptedExtensions(ee));
        typed(() => wire.parseNewSessionTicket(b));
        break;
      }
      default:
        typed(() => wire.parseFinished(b, (flags & 1) !== 0 ? 48 : 32));
        typed(() => wire.parseKeyUpdate(b));
        typed(() => wire.parseAlert(b));
        typed(() => wire.parseInnerPlaintext(b));
        break;
    }
  },
};
