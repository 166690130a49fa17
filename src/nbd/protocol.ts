/**
 * NBD wire format (the NBD project's doc/proto.md): handshake constants, option requests and replies, the 28-byte
 * transmission request and the simple and structured replies. Pure codecs: bytes in, values out, no sockets.
 *
 * Every number is big-endian ("network byte order") as the protocol says.
 */
import { Buffer } from 'node:buffer';
import { NbdProtocolError } from '../errors.js';

/** 'NBDMAGIC', the first 8 bytes the server sends. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': the newstyle magic, and the prefix of every option request. */
export const NBD_IHAVEOPT = 0x49484156454f5054n;
/** Magic of every option reply. */
export const NBD_OPT_REPLY_MAGIC = 0x3e889045565a9n;
/** Transmission request magic. */
export const NBD_REQUEST_MAGIC = 0x25609513;
/** Simple reply magic. */
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
/** Structured reply chunk magic. */
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server, 16 bits). */
export const HandshakeFlag = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;
/** Client flags (32 bits). */
export const ClientFlag = { C_FIXED_NEWSTYLE: 1 << 0, C_NO_ZEROES: 1 << 1 } as const;

/** Option types. */
export const NbdOpt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

/** Option reply types; errors have bit 31 set. */
export const NbdRep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

/** Information types of NBD_REP_INFO (and of the requests in NBD_OPT_INFO / NBD_OPT_GO). */
export const NbdInfo = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Transmission flags (16 bits). */
export const TransmissionFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Command flags (16 bits). */
export const CmdFlag = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4 } as const;

/** Command types. */
export const NbdCmd = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7, RESIZE: 8 } as const;

/** Structured reply chunk flags. */
export const ReplyFlag = { DONE: 1 << 0 } as const;

/** Structured reply chunk types. */
export const ReplyType = { NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, ERROR: 0x8001, ERROR_OFFSET: 0x8002 } as const;

/** Error values on the wire (the Linux errno numbers the protocol fixes). */
export const NbdErrno = { EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95, ESHUTDOWN: 108 } as const;

/** `base:allocation` status flags of a block status descriptor. */
export const AllocationFlag = { HOLE: 1 << 0, ZERO: 1 << 1 } as const;

/** Size of the server greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export const GREETING_BYTES = 18;
/** Size of an option request header: IHAVEOPT, option, length. */
export const OPTION_HEADER_BYTES = 16;
/** Size of a transmission request header. */
export const REQUEST_BYTES = 28;
/** Size of a simple reply. */
export const SIMPLE_REPLY_BYTES = 16;
/** Size of a structured reply chunk header. */
export const STRUCTURED_HEADER_BYTES = 20;
/** Largest string the protocol allows (export names, descriptions, error messages, context names). */
export const MAX_STRING_BYTES = 4096;

// ---- handshake -------------------------------------------------------------------------------------------------

/** The server greeting of the newstyle handshake. */
export function encodeGreeting(flags: number): Buffer {
  const b = Buffer.alloc(GREETING_BYTES);
  b.writeBigUInt64BE(NBD_MAGIC, 0);
  b.writeBigUInt64BE(NBD_IHAVEOPT, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}

/** One option request header from the client. */
export interface OptionHeader {
  option: number;
  length: number;
}

/** Decode an option request header (16 bytes); a wrong magic throws {@link NbdProtocolError}. */
export function decodeOptionHeader(b: Buffer, off = 0): OptionHeader {
  if (b.length - off < OPTION_HEADER_BYTES) throw new NbdProtocolError(`option header needs ${OPTION_HEADER_BYTES} bytes, got ${b.length - off}`);
  const magic = b.readBigUInt64BE(off);
  if (magic !== NBD_IHAVEOPT) throw new NbdProtocolError(`option request magic 0x${magic.toString(16)} is not IHAVEOPT (0x${NBD_IHAVEOPT.toString(16)})`);
  return { option: b.readUInt32BE(off + 8), length: b.readUInt32BE(off + 12) };
}

/** An option request (client side; used by tests and tools). */
export function encodeOptionRequest(option: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(NBD_IHAVEOPT, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(data.length, 12);
  b.set(data, OPTION_HEADER_BYTES);
  return b;
}

/** An option reply. */
export function encodeOptionReply(option: number, type: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(NBD_OPT_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  b.set(data, 20);
  return b;
}

/** An error option reply carrying a message for people. */
export function encodeOptionError(option: number, type: number, message: string): Buffer {
  return encodeOptionReply(option, type, clampString(message));
}

/** NBD_REP_SERVER payload: name length, name, description. */
export function encodeRepServer(name: string, description = ''): Buffer {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.from(description, 'utf8');
  const b = Buffer.alloc(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  d.copy(b, 4 + n.length);
  return b;
}

/** NBD_INFO_EXPORT payload: type, size, transmission flags. */
export function encodeInfoExport(size: bigint, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(NbdInfo.EXPORT, 0);
  b.writeBigUInt64BE(size, 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

/** NBD_INFO_NAME or NBD_INFO_DESCRIPTION payload: type then the string. */
export function encodeInfoString(type: typeof NbdInfo.NAME | typeof NbdInfo.DESCRIPTION, s: string): Buffer {
  const v = clampString(s);
  const b = Buffer.alloc(2 + v.length);
  b.writeUInt16BE(type, 0);
  v.copy(b, 2);
  return b;
}

/** NBD_INFO_BLOCK_SIZE payload: minimum, preferred, maximum. */
export function encodeInfoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(NbdInfo.BLOCK_SIZE, 0);
  b.writeUInt32BE(min, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(max, 10);
  return b;
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zero bytes unless NO_ZEROES was agreed. */
export function encodeExportNameReply(size: bigint, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(size, 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

/** NBD_REP_META_CONTEXT payload: context id then its name. */
export function encodeMetaContext(id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(id, 0);
  n.copy(b, 4);
  return b;
}

/** The data of NBD_OPT_INFO / NBD_OPT_GO. */
export interface InfoRequest {
  name: string;
  requests: number[];
}

/** Decode NBD_OPT_INFO / NBD_OPT_GO data; a length that does not add up throws {@link NbdProtocolError}. */
export function decodeInfoRequest(data: Buffer): InfoRequest {
  const r = new Cursor(data, 'NBD_OPT_INFO/GO');
  const name = r.string(r.u32(), 'export name');
  const count = r.u16();
  const requests: number[] = [];
  for (let i = 0; i < count; i++) requests.push(r.u16());
  r.end();
  return { name, requests };
}

/** The data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. */
export interface MetaContextRequest {
  name: string;
  queries: string[];
}

/** Decode NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data. */
export function decodeMetaContextRequest(data: Buffer): MetaContextRequest {
  const r = new Cursor(data, 'meta context request');
  const name = r.string(r.u32(), 'export name');
  const count = r.u32();
  const queries: string[] = [];
  for (let i = 0; i < count; i++) queries.push(r.string(r.u32(), 'query'));
  r.end();
  return { name, queries };
}

/** Decode NBD_OPT_EXPORT_NAME data (the whole data is the name). */
export function decodeExportName(data: Buffer): string {
  if (data.length > MAX_STRING_BYTES) throw new NbdProtocolError(`export name of ${data.length} bytes is longer than ${MAX_STRING_BYTES}`);
  return data.toString('utf8');
}

// ---- transmission ----------------------------------------------------------------------------------------------

/** One transmission request (the header; a WRITE's payload follows it on the wire). */
export interface NbdRequest {
  flags: number;
  type: number;
  /** The client's handle (cookie), echoed in every reply. */
  handle: bigint;
  offset: bigint;
  length: number;
}

/** Encode a request header (client side; tests use it to drive the server). */
export function encodeRequest(r: NbdRequest): Buffer {
  const b = Buffer.alloc(REQUEST_BYTES);
  b.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeBigUInt64BE(r.handle, 8);
  b.writeBigUInt64BE(r.offset, 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

/** A request with its WRITE payload (empty for other commands). */
export interface NbdRequestWithData extends NbdRequest {
  data: Buffer | undefined;
}

/**
 * Incremental request parser for the transmission byte stream. Feed it socket chunks; it returns complete requests
 * (a WRITE with its payload) and keeps any partial one. Leftover bytes are kept by offset, not concatenated per
 * chunk. A bad magic or a WRITE payload above `maxPayload` throws {@link NbdProtocolError}; after a throw the stream
 * is unusable (the connection must close).
 */
export class RequestParser {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private header: NbdRequest | undefined;
  private failed: NbdProtocolError | undefined;

  constructor(private readonly maxPayload: number) {}

  /** Bytes held for a request not complete yet. */
  get buffered(): number {
    return this.pendingBytes;
  }

  /** True when no partial request is held (a clean place for the stream to end). */
  get idle(): boolean {
    return this.pendingBytes === 0 && this.header === undefined;
  }

  /** The protocol error that failed this parser (bad magic, oversize request), or undefined. */
  get error(): NbdProtocolError | undefined {
    return this.failed;
  }

  /**
   * Add bytes; returns the requests they complete, in order. A request that breaks the protocol fails the parser:
   * the requests completed before it in the same chunk are still returned (so what runs does not depend on how
   * TCP split the stream) and `error` is set; with none, the error is thrown. Every later push throws it.
   */
  push(chunk: Buffer): NbdRequestWithData[] {
    if (this.failed) throw this.failed;
    if (chunk.length) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    const out: NbdRequestWithData[] = [];
    try {
      while (true) {
        if (!this.header) {
          if (this.pendingBytes < REQUEST_BYTES) break;
          const h = this.take(REQUEST_BYTES);
          this.header = decodeRequestHeader(h, this.maxPayload);
        }
        const h = this.header;
        const need = h.type === NbdCmd.WRITE ? h.length : 0;
        if (this.pendingBytes < need) break;
        this.header = undefined;
        out.push({ ...h, data: need > 0 ? this.take(need) : h.type === NbdCmd.WRITE ? Buffer.alloc(0) : undefined });
      }
    } catch (err) {
      this.failed = err as NbdProtocolError;
      if (out.length === 0) throw err;
    }
    return out;
  }

  /** Take `n` bytes from the front of the pending chunks (a subarray when they lie in one chunk). */
  private take(n: number): Buffer {
    const first = this.pending[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.pending[0]!;
        const k = Math.min(c.length, n - filled);
        c.copy(out, filled, 0, k);
        filled += k;
        if (k === c.length) this.pending.shift();
        else this.pending[0] = c.subarray(k);
      }
    }
    this.pendingBytes -= n;
    return out;
  }
}

/** Decode and check one 28-byte request header. */
export function decodeRequestHeader(b: Buffer, maxPayload: number): NbdRequest {
  if (b.length < REQUEST_BYTES) throw new NbdProtocolError(`request header needs ${REQUEST_BYTES} bytes, got ${b.length}`);
  const magic = b.readUInt32BE(0);
  if (magic !== NBD_REQUEST_MAGIC) {
    throw new NbdProtocolError(`request magic 0x${magic.toString(16).padStart(8, '0')} is not NBD_REQUEST_MAGIC (0x${NBD_REQUEST_MAGIC.toString(16)})`);
  }
  const r: NbdRequest = { flags: b.readUInt16BE(4), type: b.readUInt16BE(6), handle: b.readBigUInt64BE(8), offset: b.readBigUInt64BE(16), length: b.readUInt32BE(24) };
  if (r.type === NbdCmd.WRITE && r.length > maxPayload) {
    throw new NbdProtocolError(`NBD_CMD_WRITE of ${r.length} bytes is larger than the ${maxPayload}-byte maximum payload`);
  }
  return r;
}

/** A simple reply (no data; a READ's data, when sent simple, follows it). */
export function encodeSimpleReply(handle: bigint, error: number): Buffer {
  const b = Buffer.alloc(SIMPLE_REPLY_BYTES);
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeBigUInt64BE(handle, 8);
  return b;
}

/** A structured reply chunk header. */
export function encodeChunkHeader(flags: number, type: number, handle: bigint, length: number): Buffer {
  const b = Buffer.alloc(STRUCTURED_HEADER_BYTES);
  b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(handle, 8);
  b.writeUInt32BE(length, 16);
  return b;
}

/** NBD_REPLY_TYPE_NONE with the DONE flag: the final chunk of a reply that carries nothing else. */
export function encodeChunkNone(handle: bigint): Buffer {
  return encodeChunkHeader(ReplyFlag.DONE, ReplyType.NONE, handle, 0);
}

/**
 * The header and offset of an NBD_REPLY_TYPE_OFFSET_DATA chunk for `dataLength` bytes (the data follows; it is not
 * copied here).
 */
export function encodeChunkOffsetDataHeader(handle: bigint, flags: number, offset: bigint, dataLength: number): Buffer {
  const b = Buffer.alloc(STRUCTURED_HEADER_BYTES + 8);
  encodeChunkHeader(flags, ReplyType.OFFSET_DATA, handle, 8 + dataLength).copy(b, 0);
  b.writeBigUInt64BE(offset, STRUCTURED_HEADER_BYTES);
  return b;
}

/** An NBD_REPLY_TYPE_ERROR chunk (with DONE) carrying an errno and a message for people. */
export function encodeChunkError(handle: bigint, error: number, message: string): Buffer {
  const m = clampString(message);
  const b = Buffer.alloc(STRUCTURED_HEADER_BYTES + 6 + m.length);
  encodeChunkHeader(ReplyFlag.DONE, ReplyType.ERROR, handle, 6 + m.length).copy(b, 0);
  b.writeUInt32BE(error, STRUCTURED_HEADER_BYTES);
  b.writeUInt16BE(m.length, STRUCTURED_HEADER_BYTES + 4);
  m.copy(b, STRUCTURED_HEADER_BYTES + 6);
  return b;
}

/** One block status descriptor. */
export interface BlockStatusExtent {
  length: number;
  flags: number;
}

/** An NBD_REPLY_TYPE_BLOCK_STATUS chunk for one meta context. */
export function encodeChunkBlockStatus(handle: bigint, flags: number, contextId: number, extents: readonly BlockStatusExtent[]): Buffer {
  const len = 4 + 8 * extents.length;
  const b = Buffer.alloc(STRUCTURED_HEADER_BYTES + len);
  encodeChunkHeader(flags, ReplyType.BLOCK_STATUS, handle, len).copy(b, 0);
  b.writeUInt32BE(contextId, STRUCTURED_HEADER_BYTES);
  extents.forEach((e, i) => {
    b.writeUInt32BE(e.length, STRUCTURED_HEADER_BYTES + 4 + 8 * i);
    b.writeUInt32BE(e.flags, STRUCTURED_HEADER_BYTES + 8 + 8 * i);
  });
  return b;
}

/** Names for logs and errors. */
export function optionName(option: number): string {
  const e = Object.entries(NbdOpt).find(([, v]) => v === option);
  return e ? `NBD_OPT_${e[0]}` : `option ${option}`;
}

/** Names for logs and errors. */
export function commandName(type: number): string {
  const e = Object.entries(NbdCmd).find(([, v]) => v === type);
  return e ? `NBD_CMD_${e[0]}` : `command ${type}`;
}

function clampString(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= MAX_STRING_BYTES) return b;
  // Cut on a character boundary.
  let end = MAX_STRING_BYTES;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

/** Bounds-checked reader of option data. */
class Cursor {
  private off = 0;
  constructor(
    private readonly b: Buffer,
    private readonly what: string,
  ) {}
  private need(n: number, field: string): void {
    if (this.b.length - this.off < n) throw new NbdProtocolError(`${this.what}: ${field} needs ${n} bytes at offset ${this.off}, only ${this.b.length - this.off} left`);
  }
  u16(): number {
    this.need(2, 'a 16-bit field');
    const v = this.b.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  u32(): number {
    this.need(4, 'a 32-bit field');
    const v = this.b.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  string(len: number, field: string): string {
    if (len > MAX_STRING_BYTES) throw new NbdProtocolError(`${this.what}: ${field} of ${len} bytes is longer than ${MAX_STRING_BYTES}`);
    this.need(len, field);
    const s = this.b.toString('utf8', this.off, this.off + len);
    this.off += len;
    return s;
  }
  end(): void {
    if (this.off !== this.b.length) throw new NbdProtocolError(`${this.what}: ${this.b.length - this.off} bytes left over after the last field`);
  }
}
