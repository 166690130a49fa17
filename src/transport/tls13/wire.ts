/**
 * TLS 1.3 wire codecs for the client (RFC 8446): the record layer's framing, handshake message reassembly, and the
 * parsers of every message a server sends (ServerHello, EncryptedExtensions, Finished, NewSessionTicket, KeyUpdate,
 * alerts). Pure and synchronous: bytes in, values out. Bad bytes throw `TlsAbort` (a `TlsError`,
 * `NVMEOF_ERR_TLS`) carrying the alert this side answers with; nothing else is thrown. The client
 * (client.ts) reads the wire only through these functions, and the fuzzer drives them directly.
 */
import { Buffer } from 'node:buffer';
import { TlsError } from '../../errors.js';

/** Record content types (RFC 8446 5.1). */
export const ContentType = { ChangeCipherSpec: 20, Alert: 21, Handshake: 22, ApplicationData: 23 } as const;
/** Handshake message types (RFC 8446 4). */
export const HandshakeType = {
  ClientHello: 1,
  ServerHello: 2,
  NewSessionTicket: 4,
  EndOfEarlyData: 5,
  EncryptedExtensions: 8,
  Certificate: 11,
  CertificateRequest: 13,
  CertificateVerify: 15,
  Finished: 20,
  KeyUpdate: 24,
  MessageHash: 254,
} as const;
/** Extension types (RFC 8446 4.2). */
export const Ext = {
  ServerName: 0,
  SupportedGroups: 10,
  SignatureAlgorithms: 13,
  EarlyData: 42,
  PreSharedKey: 41,
  SupportedVersions: 43,
  Cookie: 44,
  PskKeyExchangeModes: 45,
  CertificateAuthorities: 47,
  OidFilters: 48,
  PostHandshakeAuth: 49,
  SignatureAlgorithmsCert: 50,
  KeyShare: 51,
} as const;
/** Alert descriptions (RFC 8446 6). */
export const Alert = {
  CloseNotify: 0,
  UnexpectedMessage: 10,
  BadRecordMac: 20,
  RecordOverflow: 22,
  HandshakeFailure: 40,
  IllegalParameter: 47,
  DecodeError: 50,
  DecryptError: 51,
  ProtocolVersion: 70,
  InternalError: 80,
  UserCanceled: 90,
  MissingExtension: 109,
  UnsupportedExtension: 110,
} as const;

export const TLS13 = 0x0304;
export const TLS12 = 0x0303;
/** Largest TLSPlaintext.fragment (and TLSInnerPlaintext content): 2^14 bytes. */
export const MAX_PLAINTEXT = 1 << 14;
/** Largest TLSCiphertext.encrypted_record: 2^14 + 256 bytes. */
export const MAX_CIPHERTEXT = MAX_PLAINTEXT + 256;
/** Largest handshake message the client takes (a NewSessionTicket's ticket may be up to 64 KiB). */
export const MAX_HANDSHAKE = 0x10000 + 512;
/** The random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 4.1.3). */
export const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');

/** Alert descriptions by value, for messages (RFC 8446 6). */
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

export function alertName(d: number): string {
  return AlertDescription[d] ?? `alert ${d}`;
}

/**
 * A failure this side detected in what the peer sent: a `TlsError` whose `sends` is the alert description this side
 * answers with (RFC 8446 6.2). `alert` (the peer's alert) stays undefined.
 */
export class TlsAbort extends TlsError {
  constructor(
    readonly sends: number,
    message: string,
  ) {
    super(message);
  }
}

const hex4 = (n: number): string => `0x${n.toString(16).padStart(4, '0')}`;

/** A bounds-checked big-endian reader; running past the end is a decode_error naming `what`. */
export class Cursor {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    private readonly what: string,
  ) {}
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new TlsAbort(Alert.DecodeError, `${this.what} is truncated`);
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
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
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
  /** Everything read: trailing bytes are a decode_error. */
  end(): void {
    if (!this.done) throw new TlsAbort(Alert.DecodeError, `${this.what} has ${this.buf.length - this.pos} trailing bytes`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Record layer

/** One record as it came off the wire (RFC 8446 5.1, 5.2). */
export interface TlsRecord {
  /** The outer content type (ApplicationData for every protected record). */
  type: number;
  /** legacy_record_version. */
  version: number;
  /** The 5-byte header (the AEAD's additional data). */
  header: Buffer;
  /** The fragment (plaintext) or encrypted_record (protected). */
  fragment: Buffer;
}

/** Check a record header: content type, version and length, before any of its body is buffered. */
export function checkRecordHeader(type: number, version: number, length: number): void {
  if (type < ContentType.ChangeCipherSpec || type > ContentType.ApplicationData) {
    throw new TlsAbort(Alert.UnexpectedMessage, `the target sent a record of unknown content type ${type}`);
  }
  // legacy_record_version is otherwise ignored (RFC 8446 5.1), but a major version other than 3 is not TLS at all.
  if (version >> 8 !== 3) throw new TlsAbort(Alert.ProtocolVersion, `the target sent a record of version ${hex4(version)}: not TLS`);
  if (type === ContentType.ApplicationData) {
    if (length > MAX_CIPHERTEXT) throw new TlsAbort(Alert.RecordOverflow, `the target sent a ${length}-byte record (more than 2^14+256)`);
  } else {
    if (length > MAX_PLAINTEXT) throw new TlsAbort(Alert.RecordOverflow, `the target sent a ${length}-byte ${type === ContentType.Handshake ? 'handshake' : type === ContentType.Alert ? 'alert' : 'change_cipher_spec'} record (more than 2^14)`);
    if (length === 0) throw new TlsAbort(Alert.UnexpectedMessage, `the target sent an empty ${type === ContentType.Handshake ? 'handshake' : type === ContentType.Alert ? 'alert' : 'change_cipher_spec'} record`);
  }
}

/**
 * Splits a byte stream into frames: a header of `headerSize` bytes, then as many body bytes as `bodyLength(header)`
 * says (it checks the header and throws for a bad one, before anything is held for the body). A frame inside one
 * chunk is delivered as a view of that chunk; one that spans chunks is joined once, when complete, so nothing is
 * allocated before a frame has arrived whole.
 */
class FrameReader {
  private parts: Buffer[] = [];
  private held = 0;
  /** The chunk being fed and how far into it frames were taken. */
  private current: Buffer | undefined;
  private pos = 0;

  constructor(
    private readonly headerSize: number,
    private readonly bodyLength: (header: Buffer) => number,
  ) {}

  /** Bytes received and not yet delivered in a frame (including the rest of the chunk being fed). */
  get buffered(): number {
    return this.held + (this.current ? this.current.length - this.pos : 0);
  }

  /**
   * Feed one chunk; `onFrame` runs for each frame it completes, in order, before the next header is read, and may
   * return false to stop reading (the rest is dropped). A bad header throws after the frames before it were delivered.
   */
  feed(chunk: Buffer, onFrame: (frame: Buffer) => boolean | void): void {
    const hs = this.headerSize;
    this.current = chunk;
    this.pos = 0;
    try {
      for (;;) {
        const avail = this.held + chunk.length - this.pos;
        if (avail < hs) break;
        const length = hs + this.bodyLength(this.held === 0 ? chunk.subarray(this.pos, this.pos + hs) : this.peekHeader(chunk));
        if (avail < length) break;
        let frame: Buffer;
        if (this.held === 0) {
          frame = chunk.subarray(this.pos, this.pos + length);
          this.pos += length;
        } else {
          frame = Buffer.allocUnsafe(length);
          let off = 0;
          for (const p of this.parts) {
            p.copy(frame, off);
            off += p.length;
          }
          const rest = length - off;
          chunk.copy(frame, off, this.pos, this.pos + rest);
          this.pos += rest;
          this.parts = [];
          this.held = 0;
        }
        if (onFrame(frame) === false) {
          this.pos = chunk.length;
          return;
        }
      }
      if (this.pos < chunk.length) {
        this.parts.push(chunk.subarray(this.pos));
        this.held += chunk.length - this.pos;
      }
    } finally {
      this.current = undefined;
      this.pos = 0;
    }
  }

  /** The header when the held parts and the chunk share it. */
  private peekHeader(chunk: Buffer): Buffer {
    const hs = this.headerSize;
    const h = Buffer.allocUnsafe(hs);
    let off = 0;
    for (const p of this.parts) {
      if (off === hs) break;
      const n = Math.min(p.length, hs - off);
      p.copy(h, off, 0, n);
      off += n;
    }
    if (off < hs) chunk.copy(h, off, this.pos, this.pos + hs - off);
    return h;
  }
}

/**
 * Splits a byte stream into TLS records. A header is checked as soon as its 5 bytes arrive, so a hostile length is
 * refused before anything is held for it; a record inside one chunk is a view of that chunk.
 */
export class RecordReader {
  private readonly frames = new FrameReader(5, (h) => {
    const length = h.readUInt16BE(3);
    checkRecordHeader(h[0]!, h.readUInt16BE(1), length);
    return length;
  });

  /** Bytes received and not yet delivered in a record (including the rest of the chunk being fed). */
  get buffered(): number {
    return this.frames.buffered;
  }

  /**
   * Feed one chunk; `onRecord` runs for each record it completes, in order, before the next header is read. It may
   * return false to stop reading (the rest is dropped). A bad header throws `TlsAbort` after the records before it
   * were delivered.
   */
  feed(chunk: Buffer, onRecord: (r: TlsRecord) => boolean | void): void {
    this.frames.feed(chunk, (f) => onRecord({ type: f[0]!, version: f.readUInt16BE(1), header: f.subarray(0, 5), fragment: f.subarray(5) }));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Handshake messages

/** One handshake message: its type, the whole message (for the transcript) and its body. */
export interface HandshakeMessage {
  type: number;
  /** Header and body, as the transcript hashes them. */
  raw: Buffer;
  body: Buffer;
}

/**
 * Reassembles handshake messages from the handshake content of records (RFC 8446 5.1: messages may be coalesced
 * into one record or fragmented across several). A message header is checked when its 4 bytes arrive; a message
 * held in pieces is joined once, when complete.
 */
export class HandshakeReader {
  private readonly frames = new FrameReader(4, (h) => {
    const length = (h[1]! << 16) | (h[2]! << 8) | h[3]!;
    if (length > MAX_HANDSHAKE) throw new TlsAbort(Alert.DecodeError, `the target sent a ${length}-byte handshake message`);
    return length;
  });

  /** Handshake bytes received and not yet delivered in a message (including the rest of the fragment being fed). */
  get buffered(): number {
    return this.frames.buffered;
  }

  /** Feed one record's handshake content; `onMessage` runs for each message it completes (false stops). */
  feed(fragment: Buffer, onMessage: (m: HandshakeMessage) => boolean | void): void {
    this.frames.feed(fragment, (raw) => onMessage({ type: raw[0]!, raw, body: raw.subarray(4) }));
  }
}

/** An extension block: type → body, each type at most once (RFC 8446 4.2). */
function parseExtensions(block: Buffer, where: string): Map<number, Buffer> {
  const c = new Cursor(block, `${where} extensions`);
  const out = new Map<number, Buffer>();
  while (!c.done) {
    const type = c.u16();
    const body = c.vec16();
    if (out.has(type)) throw new TlsAbort(Alert.IllegalParameter, `the target sent extension ${type} twice in its ${where}`);
    out.set(type, body);
  }
  return out;
}

/** A ServerHello (or HelloRetryRequest) as sent (RFC 8446 4.1.3). Extension bodies are decoded where known. */
export interface ServerHello {
  legacyVersion: number;
  random: Buffer;
  /** The random is the HelloRetryRequest value. */
  helloRetryRequest: boolean;
  sessionId: Buffer;
  cipherSuite: number;
  compression: number;
  /** Every extension by type. */
  extensions: Map<number, Buffer>;
  /** supported_versions: the selected version. */
  version: number | undefined;
  /** key_share: the server's share (a HelloRetryRequest names only the group, with an empty key). */
  keyShare: { group: number; key: Buffer } | undefined;
  /** pre_shared_key: the selected identity. */
  selectedIdentity: number | undefined;
}

export function parseServerHello(body: Buffer): ServerHello {
  const c = new Cursor(body, 'ServerHello');
  const legacyVersion = c.u16();
  const random = c.bytes(32);
  const sessionId = c.vec8();
  if (sessionId.length > 32) throw new TlsAbort(Alert.DecodeError, `ServerHello has a ${sessionId.length}-byte session id (at most 32)`);
  const cipherSuite = c.u16();
  const compression = c.u8();
  const hrr = random.equals(HRR_RANDOM);
  // A TLS 1.2 ServerHello may end here (no extensions at all).
  const extensions = c.done ? new Map<number, Buffer>() : parseExtensions(c.vec16(), 'ServerHello');
  c.end();
  let version: number | undefined;
  let keyShare: ServerHello['keyShare'];
  let selectedIdentity: number | undefined;
  const sv = extensions.get(Ext.SupportedVersions);
  if (sv !== undefined) {
    const e = new Cursor(sv, 'ServerHello supported_versions');
    version = e.u16();
    e.end();
  }
  const ks = extensions.get(Ext.KeyShare);
  if (ks !== undefined) {
    const e = new Cursor(ks, 'ServerHello key_share');
    const group = e.u16();
    if (hrr) {
      // A HelloRetryRequest names the group it wants; the client refuses it whatever else it carries.
      keyShare = { group, key: Buffer.alloc(0) };
    } else {
      const key = e.vec16();
      if (key.length === 0) throw new TlsAbort(Alert.DecodeError, 'ServerHello key_share has an empty key');
      e.end();
      keyShare = { group, key };
    }
  }
  const psk = extensions.get(Ext.PreSharedKey);
  if (psk !== undefined) {
    const e = new Cursor(psk, 'ServerHello pre_shared_key');
    selectedIdentity = e.u16();
    e.end();
  }
  return { legacyVersion, random, helloRetryRequest: hrr, sessionId, cipherSuite, compression, extensions, version, keyShare, selectedIdentity };
}

/** EncryptedExtensions (RFC 8446 4.3.1). */
export interface EncryptedExtensions {
  extensions: Map<number, Buffer>;
  /** supported_groups: the server's preference, when it sent one. */
  supportedGroups: number[] | undefined;
}

export function parseEncryptedExtensions(body: Buffer): EncryptedExtensions {
  const c = new Cursor(body, 'EncryptedExtensions');
  const extensions = parseExtensions(c.vec16(), 'EncryptedExtensions');
  c.end();
  let supportedGroups: number[] | undefined;
  const sg = extensions.get(Ext.SupportedGroups);
  if (sg !== undefined) {
    const e = new Cursor(sg, 'EncryptedExtensions supported_groups');
    const list = e.vec16();
    e.end();
    if (list.length === 0 || list.length % 2 !== 0) throw new TlsAbort(Alert.DecodeError, `EncryptedExtensions supported_groups has a ${list.length}-byte list`);
    supportedGroups = [];
    for (let i = 0; i < list.length; i += 2) supportedGroups.push(list.readUInt16BE(i));
  }
  return { extensions, supportedGroups };
}

/** Finished (RFC 8446 4.4.4): verify_data of exactly the hash length. */
export function parseFinished(body: Buffer, hashLen: number): Buffer {
  if (body.length !== hashLen) throw new TlsAbort(Alert.DecodeError, `the target's Finished has ${body.length} bytes of verify_data (expected ${hashLen})`);
  return body;
}

/** NewSessionTicket (RFC 8446 4.6.1). The client keeps no tickets, but a malformed one is still an error. */
export interface NewSessionTicket {
  lifetime: number;
  ageAdd: number;
  nonce: Buffer;
  ticket: Buffer;
  extensions: Map<number, Buffer>;
  /** early_data: max_early_data_size. */
  maxEarlyDataSize: number | undefined;
}

export function parseNewSessionTicket(body: Buffer): NewSessionTicket {
  const c = new Cursor(body, 'NewSessionTicket');
  const lifetime = c.u32();
  const ageAdd = c.u32();
  const nonce = c.vec8();
  const ticket = c.vec16();
  if (ticket.length === 0) throw new TlsAbort(Alert.DecodeError, 'NewSessionTicket has an empty ticket');
  const extensions = parseExtensions(c.vec16(), 'NewSessionTicket');
  c.end();
  let maxEarlyDataSize: number | undefined;
  const ed = extensions.get(Ext.EarlyData);
  if (ed !== undefined) {
    const e = new Cursor(ed, 'NewSessionTicket early_data');
    maxEarlyDataSize = e.u32();
    e.end();
  }
  return { lifetime, ageAdd, nonce, ticket, extensions, maxEarlyDataSize };
}

/** KeyUpdate (RFC 8446 4.6.3): whether the peer asks for an update of this side's key too. */
export function parseKeyUpdate(body: Buffer): { updateRequested: boolean } {
  if (body.length !== 1) throw new TlsAbort(Alert.DecodeError, `the target sent a ${body.length}-byte KeyUpdate (1 byte)`);
  const v = body[0]!;
  if (v > 1) throw new TlsAbort(Alert.IllegalParameter, `the target sent a KeyUpdate with request_update ${v} (0 or 1)`);
  return { updateRequested: v === 1 };
}

/** An alert (RFC 8446 6): level (ignored in TLS 1.3) and description. */
export function parseAlert(content: Buffer): { level: number; description: number } {
  if (content.length !== 2) throw new TlsAbort(Alert.DecodeError, `the target sent a ${content.length}-byte alert (2 bytes)`);
  return { level: content[0]!, description: content[1]! };
}

/**
 * TLSInnerPlaintext (RFC 8446 5.2): the content and its real type, after the zero padding. All zeros is an
 * unexpected_message.
 */
export function parseInnerPlaintext(plain: Buffer): { type: number; content: Buffer } {
  let end = plain.length - 1;
  while (end >= 0 && plain[end] === 0) end--;
  if (end < 0) throw new TlsAbort(Alert.UnexpectedMessage, 'a protected record from the target has no content type');
  if (end > MAX_PLAINTEXT) throw new TlsAbort(Alert.RecordOverflow, 'a record from the target exceeds 2^14 bytes');
  return { type: plain[end]!, content: plain.subarray(0, end) };
}
