/**
 * Streaming NVMe/TCP PDU reader: socket chunks in, validated PDUs out.
 *
 * Buffering: with `placeData`, a data PDU's payload is copied from each chunk straight into the
 * buffer the callback names (direct data placement); only its header is held. Any other PDU that
 * lies within one chunk is decoded in place (its SQE/CQE/data are subarrays of that chunk); one that
 * spans chunks is held as copies of the parts that arrived (never PLEN bytes reserved up front) and
 * joined once when complete. At most one partial PDU is held.
 *
 * Validation: the 8-byte common header is checked before anything is buffered for the rest of
 * the PDU, in the order the fields appear (PDU-Type, FLAGS, HLEN, PDO, PLEN), so a failure carries
 * the FES/FEI a TermReq must report (FES 1 with FEI = byte offset of the offending field). Then the
 * header digest, then the PDU-specific fields.
 */

import { Buffer } from 'node:buffer';
import { DigestError, InvalidArgumentError, ProtocolError } from '../errors.js';
import { crc32c } from './crc32c.js';
import {
  CH_LENGTH,
  DIGEST_LENGTH,
  DigestOption,
  MIN_MAXH2CDATA,
  PDU_HLEN,
  PduFlag,
  PduType,
  TERM_REQ_MAX_PLEN,
  TermReqFes,
} from './pdu.js';
import type { C2HDataPdu, H2CDataPdu, Pdu } from './pdu.js';

const EMPTY = Buffer.alloc(0);

/**
 * The header of a data PDU (C2HData in the host role, H2CData in the controller role), validated and its header
 * digest checked, offered to {@link PduReaderOptions.placeData} before a byte of its payload is read.
 */
export interface DataPduHeader {
  type: typeof PduType.C2HData | typeof PduType.H2CData;
  /** Command capsule CID. */
  cccid: number;
  /** Transfer tag (H2CData only; 0 for C2HData). */
  ttag: number;
  /** Data offset in the command's transfer. */
  datao: number;
  /** Payload length (DATAL, equal to what PLEN and PDO leave). */
  datal: number;
  last: boolean;
  /** C2HData SUCCESS flag. */
  success: boolean;
}

/** Options for a PduReader. */
export interface PduReaderOptions {
  /**
   * 'host' accepts controller-to-host PDUs (ICResp, C2HTermReq, CapsuleResp, C2HData, R2T);
   * 'controller' accepts host-to-controller PDUs (ICReq, H2CTermReq, CapsuleCmd, H2CData).
   * Any other PDU-Type is a ProtocolError with FES 1 (invalid header field), FEI 0.
   */
  role: 'host' | 'controller';
  /** Expect header digests (after IC negotiation). */
  hdgst?: boolean;
  /** Expect data digests (after IC negotiation). */
  ddgst?: boolean;
  /**
   * Largest data payload accepted in one data PDU (default 1 MiB). Above it: ProtocolError, FES 5
   * (Data Transfer Limit Exceeded) in the controller role; FES 1, FEI 4 (PLEN) in the host role,
   * because FES 5 in an H2CTermReq means "R2T Limit Exceeded".
   */
  maxDataLength?: number;
  /** Controller role: largest in-capsule data in a CapsuleCmd (default 8192); above it FES 5. */
  maxInCapsuleData?: number;
  /**
   * Enforce the connection's PDU sequence: the first PDU must be this role's IC PDU (ICResp for
   * the host, ICReq for the controller) or a TermReq, and a second IC PDU is a PDU sequence error
   * (FES 2). Default false: IC PDUs are returned whenever they arrive and the caller checks.
   */
  expectIc?: boolean;
  /**
   * Direct data placement. Called for every data PDU of this role once its header is complete and valid (header
   * digest included), before any payload byte is read. Return the buffer the payload goes to (exactly `datal`
   * bytes: usually a view of the command's destination at DATAO), or null to read and discard the payload (data
   * for a command nobody waits for any more). Throw a ProtocolError to refuse the PDU (unknown CID, offset out of
   * range): the reader fails with it before placing anything. The payload is then copied from each socket chunk
   * straight into that buffer as it arrives and the data digest is computed over it incrementally; the PDU is
   * delivered with `data` = that buffer (empty when discarded) and `placed: true`.
   * Without this option data PDUs are delivered with their payload as views of the chunk (or one assembled copy).
   */
  placeData?: (header: DataPduHeader) => Buffer | null;
}

const DEFAULT_MAX_DATA = 1024 * 1024;
const DEFAULT_MAX_IN_CAPSULE = 8192;

/** Field offsets in the common header (FEI values for FES 1). */
const FEI_TYPE = 0;
const FEI_FLAGS = 1;
const FEI_HLEN = 2;
const FEI_PDO = 3;
const FEI_PLEN = 4;

const TYPE_NAMES: Record<number, string> = {
  [PduType.ICReq]: 'ICReq',
  [PduType.ICResp]: 'ICResp',
  [PduType.H2CTermReq]: 'H2CTermReq',
  [PduType.C2HTermReq]: 'C2HTermReq',
  [PduType.CapsuleCmd]: 'CapsuleCmd',
  [PduType.CapsuleResp]: 'CapsuleResp',
  [PduType.H2CData]: 'H2CData',
  [PduType.C2HData]: 'C2HData',
  [PduType.R2T]: 'R2T',
};

/** FLAGS bits each PDU type may carry (digest flags are further tied to negotiation). */
const VALID_FLAGS: Record<number, number> = {
  [PduType.ICReq]: 0,
  [PduType.ICResp]: 0,
  [PduType.H2CTermReq]: 0,
  [PduType.C2HTermReq]: 0,
  [PduType.CapsuleCmd]: PduFlag.HDGSTF | PduFlag.DDGSTF,
  [PduType.CapsuleResp]: PduFlag.HDGSTF,
  [PduType.H2CData]: PduFlag.HDGSTF | PduFlag.DDGSTF | PduFlag.LAST_PDU,
  [PduType.C2HData]: PduFlag.HDGSTF | PduFlag.DDGSTF | PduFlag.LAST_PDU | PduFlag.SUCCESS,
  [PduType.R2T]: PduFlag.HDGSTF,
};

/** Bit n set = PDU type n accepted in that role. */
const HOST_TYPES =
  (1 << PduType.ICResp) | (1 << PduType.C2HTermReq) | (1 << PduType.CapsuleResp) | (1 << PduType.C2HData) | (1 << PduType.R2T);
const CONTROLLER_TYPES = (1 << PduType.ICReq) | (1 << PduType.H2CTermReq) | (1 << PduType.CapsuleCmd) | (1 << PduType.H2CData);

function hex(n: number): string {
  return `0x${n.toString(16).padStart(2, '0')}`;
}

/** Result of common-header validation for the PDU being read. */
interface Ch {
  type: number;
  flags: number;
  hlen: number;
  pdo: number;
  plen: number;
  /** HDGST present. */
  hd: boolean;
  /** Offset of the data from the PDU start (0 = no data). */
  dataOff: number;
  /** Data length (excluding pad and digest). */
  dataLen: number;
  /** DDGST present. */
  dd: boolean;
}

/** Where the reader is within the PDU being read. */
const enum Stage {
  /** Between PDUs. */
  Idle,
  /** Collecting the 8-byte common header (split across chunks). */
  CommonHeader,
  /** A placed data PDU: collecting its header up to PDO. */
  DataHeader,
  /** A placed data PDU: streaming its payload into the destination. */
  Payload,
  /** A placed data PDU: collecting its data digest. */
  DataDigest,
  /** Any other PDU spanning chunks: collecting its bytes until PLEN. */
  Assemble,
}

/** Incremental PDU parser for one NVMe/TCP connection direction. */
export class PduReader {
  private readonly role: 'host' | 'controller';
  private readonly allowed: number;
  private readonly dataType: number;
  private hdgst: boolean;
  private ddgst: boolean;
  private maxData: number;
  private readonly maxInCapsule: number;
  private readonly expectIc: boolean;
  private readonly placeData: ((header: DataPduHeader) => Buffer | null) | undefined;
  private icSeen = false;

  /** Set once a push threw; every later push rethrows it. */
  private failure: Error | null = null;
  private failedHeader: Buffer | null = null;
  /** Where the PDU being checked starts (for errorHeader). */
  private cur: Buffer | null = null;
  private curOff = 0;

  private stage = Stage.Idle;
  /** Common header of the PDU in progress when it spans chunks; the header bytes of a placed data PDU. */
  private readonly chBuf = Buffer.alloc(CH_LENGTH);
  private hdrBuf: Buffer | null = null;
  /** Bytes of the PDU in progress held so far (Stage.CommonHeader / DataHeader / Assemble). */
  private held = 0;
  private ch: Ch | null = null;
  /** Stage.Assemble: copies of the parts received so far (grown with what arrives, never PLEN up front). */
  private parts: Buffer[] = [];
  /** Placed data PDU in progress. */
  private dest: Buffer | null = null;
  private destPos = 0;
  private dataCrc = 0;
  private readonly ddgstBuf = Buffer.alloc(DIGEST_LENGTH);
  private ddgstLen = 0;
  private placedPdu: Pdu | null = null;
  private payloadLen = 0;

  constructor(opts: PduReaderOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError(`PduReader options must be an object with a role, got ${opts === null ? 'null' : typeof opts}`);
    if (opts.role !== 'host' && opts.role !== 'controller') throw new InvalidArgumentError(`PduReader role must be 'host' or 'controller', got ${String(opts.role)}`);
    if (opts.placeData !== undefined && typeof opts.placeData !== 'function') throw new InvalidArgumentError('PduReader placeData must be a function');
    this.role = opts.role;
    this.allowed = opts.role === 'host' ? HOST_TYPES : CONTROLLER_TYPES;
    this.dataType = opts.role === 'host' ? PduType.C2HData : PduType.H2CData;
    this.hdgst = opts.hdgst ?? false;
    this.ddgst = opts.ddgst ?? false;
    this.maxData = checkLimit('maxDataLength', opts.maxDataLength ?? DEFAULT_MAX_DATA);
    this.maxInCapsule = checkLimit('maxInCapsuleData', opts.maxInCapsuleData ?? DEFAULT_MAX_IN_CAPSULE);
    this.expectIc = opts.expectIc ?? false;
    this.placeData = opts.placeData;
  }

  /**
   * Set the negotiated digests (after ICReq/ICResp). Applies to every PDU whose common header
   * has not been read yet.
   */
  setDigests(hdgst: boolean, ddgst: boolean): void {
    this.hdgst = hdgst;
    this.ddgst = ddgst;
  }

  /** Set the largest data payload accepted in one data PDU (e.g. MAXH2CDATA, or the largest read). */
  setMaxDataLength(n: number): void {
    this.maxData = checkLimit('maxDataLength', n);
  }

  /** CCCID of the data PDU whose payload is being placed right now (header read, payload not complete), else -1. */
  get placingCccid(): number {
    const p = this.placedPdu;
    return p !== null && this.dest !== null && (p.type === PduType.C2HData || p.type === PduType.H2CData) ? p.cccid : -1;
  }

  /** Bytes of the placed data PDU in progress still to arrive (its payload), 0 when none is in progress. */
  get payloadRemaining(): number {
    return this.stage === Stage.Payload ? this.payloadLen - this.destPos : 0;
  }

  /**
   * Stop placing the payload in progress (its command settled early): the rest of it is read and discarded, and its
   * data digest is not judged. The PDU is still delivered when it ends (its `data` the destination it was given).
   */
  discardPlacement(): void {
    this.dest = null;
  }

  /** Bytes currently held waiting for the rest of a PDU (placed payload bytes are not held: they are placed). */
  get buffered(): number {
    switch (this.stage) {
      case Stage.CommonHeader:
      case Stage.DataHeader:
      case Stage.Assemble:
        return this.held;
      case Stage.DataDigest:
        return this.ddgstLen;
      default:
        return 0;
    }
  }

  /** The error that failed this reader, or null. */
  get error(): Error | null {
    return this.failure;
  }

  /**
   * Feed a socket chunk of any size, `chunk[0, end)` (the whole chunk by default: a reused read buffer passes the
   * length of the read); `onPdu` is called for each PDU the chunk completes, in order, as it completes
   * (so a handler that changes state, such as freeing a command, is seen by the placement of the next PDU).
   * Throws ProtocolError (fes/fei for the TermReq to send) or DigestError (header digest, FES 3), after delivering
   * the PDUs the chunk completed before the offending one. An error thrown by `onPdu` fails the reader too.
   * A data digest mismatch is not thrown: the PDU comes with `dataDigestError: true`.
   * After a throw the reader is poisoned: every later feed or push throws the same error.
   */
  feed(chunk: Buffer, onPdu: (pdu: Pdu) => void, end: number = chunk.length): void {
    if (this.failure !== null) throw this.failure;
    if (!Buffer.isBuffer(chunk)) throw new InvalidArgumentError(`PduReader input must be a Buffer, got ${chunk === null ? 'null' : typeof chunk}`);
    if (!Number.isInteger(end) || end < 0 || end > chunk.length) throw new InvalidArgumentError(`PduReader input end must be an integer 0..${chunk.length}, got ${end}`);
    try {
      this.consume(chunk, onPdu, end);
      this.cur = null;
    } catch (err) {
      this.failure = err as Error;
      this.failedHeader = this.copyCurrentHeader();
      this.cur = null;
      this.reset();
      throw err;
    }
  }

  /**
   * Feed a socket chunk of any size. Returns the PDUs it completed (possibly none), in order.
   * On a protocol error the PDUs the chunk completed before the offending one are not lost: when there are any,
   * this push returns them and the reader is failed (see {@link error}); the next push throws the error. With
   * none, this push throws it (ProtocolError with fes/fei for the TermReq, or DigestError for a header digest).
   * A data digest mismatch is not thrown: the PDU comes back with `dataDigestError: true`.
   */
  push(chunk: Buffer): Pdu[] {
    const out: Pdu[] = [];
    try {
      this.feed(chunk, (p) => out.push(p));
    } catch (err) {
      if (out.length === 0) throw err;
    }
    return out;
  }

  /**
   * After a push threw: a copy of the offending PDU's header as far as it was received (HLEN
   * bytes when HLEN is plausible, else the 8-byte common header; at most 128 bytes), for the data
   * of the TermReq to send. Null before any error.
   */
  get errorHeader(): Buffer | null {
    return this.failedHeader;
  }

  private copyCurrentHeader(): Buffer | null {
    const b = this.cur;
    if (b === null) return null;
    const off = this.curOff;
    const hlen = b[off + 2] ?? 0;
    const want = hlen >= CH_LENGTH && hlen <= 128 ? hlen : CH_LENGTH;
    return Buffer.from(b.subarray(off, Math.min(off + want, b.length)));
  }

  private reset(): void {
    this.stage = Stage.Idle;
    this.held = 0;
    this.ch = null;
    this.parts = [];
    this.hdrBuf = null;
    this.dest = null;
    this.placedPdu = null;
  }

  /** A data PDU whose payload is placed through placeData rather than buffered. */
  private placeable(ch: Ch): boolean {
    return this.placeData !== undefined && ch.type === this.dataType;
  }

  /** Bytes of a placed data PDU read before its payload: up to PDO, or the whole PDU when it carries no data. */
  private placedHeaderLength(ch: Ch): number {
    return ch.dataLen > 0 ? ch.dataOff : ch.plen;
  }

  private consume(chunk: Buffer, emit: (pdu: Pdu) => void, n: number): void {
    let off = 0;
    while (off < n) {
      switch (this.stage) {
        case Stage.Idle: {
          const left = n - off;
          if (left < CH_LENGTH) {
            chunk.copy(this.chBuf, 0, off, n);
            this.held = left;
            this.stage = Stage.CommonHeader;
            return;
          }
          const ch = this.checkCh(chunk, off);
          if (this.placeable(ch)) {
            const hl = this.placedHeaderLength(ch);
            if (left >= hl) {
              off += hl;
              this.beginPayload(ch, chunk, off - hl, emit);
            } else {
              this.hdrBuf = Buffer.allocUnsafe(hl);
              chunk.copy(this.hdrBuf, 0, off, n);
              this.held = left;
              this.ch = ch;
              this.stage = Stage.DataHeader;
              return;
            }
          } else if (left >= ch.plen) {
            emit(this.decode(chunk, off, ch));
            off += ch.plen;
          } else {
            this.parts = [Buffer.from(chunk.subarray(off, n))];
            this.held = left;
            this.ch = ch;
            this.stage = Stage.Assemble;
            return;
          }
          break;
        }
        case Stage.CommonHeader: {
          const take = Math.min(CH_LENGTH - this.held, n - off);
          chunk.copy(this.chBuf, this.held, off, off + take);
          this.held += take;
          off += take;
          if (this.held < CH_LENGTH) return;
          const ch = this.checkCh(this.chBuf, 0);
          this.ch = ch;
          if (this.placeable(ch)) {
            this.hdrBuf = Buffer.allocUnsafe(this.placedHeaderLength(ch));
            this.chBuf.copy(this.hdrBuf, 0);
            this.stage = Stage.DataHeader;
            if (this.hdrBuf.length === CH_LENGTH) this.headerDone(emit);
          } else if (ch.plen === CH_LENGTH) {
            this.stage = Stage.Idle;
            this.held = 0;
            emit(this.decode(Buffer.from(this.chBuf), 0, ch));
          } else {
            this.parts = [Buffer.from(this.chBuf)];
            this.stage = Stage.Assemble;
          }
          break;
        }
        case Stage.DataHeader: {
          const hb = this.hdrBuf!;
          const take = Math.min(hb.length - this.held, n - off);
          chunk.copy(hb, this.held, off, off + take);
          this.held += take;
          off += take;
          if (this.held === hb.length) this.headerDone(emit);
          break;
        }
        case Stage.Payload: {
          const take = Math.min(this.payloadLen - this.destPos, n - off);
          if (this.dest !== null) {
            chunk.copy(this.dest, this.destPos, off, off + take);
            if (this.ch!.dd) this.dataCrc = crc32c(chunk.subarray(off, off + take), this.dataCrc);
          }
          this.destPos += take;
          off += take;
          if (this.destPos === this.payloadLen) {
            if (this.ch!.dd) {
              this.ddgstLen = 0;
              this.stage = Stage.DataDigest;
            } else this.finishPlaced(emit, false);
          }
          break;
        }
        case Stage.DataDigest: {
          const take = Math.min(DIGEST_LENGTH - this.ddgstLen, n - off);
          chunk.copy(this.ddgstBuf, this.ddgstLen, off, off + take);
          this.ddgstLen += take;
          off += take;
          if (this.ddgstLen === DIGEST_LENGTH) {
            this.finishPlaced(emit, this.dest !== null && this.ddgstBuf.readUInt32LE(0) !== this.dataCrc);
          }
          break;
        }
        case Stage.Assemble: {
          const ch = this.ch!;
          const take = Math.min(ch.plen - this.held, n - off);
          this.parts.push(Buffer.from(chunk.subarray(off, off + take)));
          this.held += take;
          off += take;
          if (this.held === ch.plen) {
            const buf = Buffer.concat(this.parts, ch.plen);
            this.parts = [];
            this.held = 0;
            this.ch = null;
            this.stage = Stage.Idle;
            emit(this.decode(buf, 0, ch));
          }
          break;
        }
      }
    }
  }

  /** The header of a placed data PDU is complete in hdrBuf. */
  private headerDone(emit: (pdu: Pdu) => void): void {
    const ch = this.ch!;
    const hb = this.hdrBuf!;
    this.hdrBuf = null;
    this.held = 0;
    this.beginPayload(ch, hb, 0, emit);
  }

  /**
   * b[off..off+PDO) holds the header (and padding) of a data PDU being placed: check its digest and fields, ask
   * for the destination, and move to the payload (a PDU without data is delivered at once).
   */
  private beginPayload(ch: Ch, b: Buffer, off: number, emit: (pdu: Pdu) => void): void {
    this.cur = b;
    this.curOff = off;
    this.checkHeaderDigest(b, off, ch);
    const header = this.dataHeader(b, off, ch);
    const dest = this.placeData!(header);
    if (dest !== null && (!Buffer.isBuffer(dest) || dest.length !== header.datal)) {
      throw new InvalidArgumentError(`placeData must return a Buffer of exactly ${header.datal} bytes or null`);
    }
    this.ch = ch;
    this.dest = dest;
    this.destPos = 0;
    this.dataCrc = 0;
    this.payloadLen = header.datal;
    const data = dest ?? EMPTY;
    this.placedPdu =
      header.type === PduType.C2HData
        ? { type: PduType.C2HData, cccid: header.cccid, datao: header.datao, last: header.last, success: header.success, data, placed: true }
        : { type: PduType.H2CData, cccid: header.cccid, ttag: header.ttag, datao: header.datao, last: header.last, data, placed: true };
    this.stage = Stage.Payload;
    if (header.datal === 0) this.finishPlaced(emit, false);
  }

  private finishPlaced(emit: (pdu: Pdu) => void, digestError: boolean): void {
    const pdu = this.placedPdu as C2HDataPdu | H2CDataPdu;
    if (digestError) pdu.dataDigestError = true;
    this.placedPdu = null;
    this.dest = null;
    this.ch = null;
    this.stage = Stage.Idle;
    emit(pdu);
  }

  /** The header fields of a data PDU at b[off..), DATAL checked against PLEN and PDO. */
  private dataHeader(b: Buffer, off: number, ch: Ch): DataPduHeader {
    const c2h = ch.type === PduType.C2HData;
    const datal = b.readUInt32LE(off + 16);
    this.checkDatal(c2h ? 'C2HData' : 'H2CData', datal, ch);
    return {
      type: c2h ? PduType.C2HData : PduType.H2CData,
      cccid: b.readUInt16LE(off + 8),
      ttag: c2h ? 0 : b.readUInt16LE(off + 10),
      datao: b.readUInt32LE(off + 12),
      datal,
      last: (ch.flags & PduFlag.LAST_PDU) !== 0,
      success: (ch.flags & PduFlag.SUCCESS) !== 0,
    };
  }

  private checkHeaderDigest(b: Buffer, off: number, ch: Ch): void {
    if (!ch.hd) return;
    const expected = crc32c(b.subarray(off, off + ch.hlen));
    const actual = b.readUInt32LE(off + ch.hlen);
    if (expected !== actual) throw new DigestError('header', expected, actual);
  }

  private fail(message: string, fes: number, fei: number): never {
    throw new ProtocolError(message, fes, fei);
  }

  /** Validate the common header at b[off..off+8) and work out the PDU's layout. */
  private checkCh(b: Buffer, off: number): Ch {
    this.cur = b;
    this.curOff = off;
    const type = b[off]!;
    const flags = b[off + 1]!;
    const hlen = b[off + 2]!;
    const pdo = b[off + 3]!;
    const plen = b.readUInt32LE(off + 4);

    // PDU-Type (byte 0).
    const name = TYPE_NAMES[type];
    if (name === undefined) this.fail(`unknown PDU type ${hex(type)}`, TermReqFes.INVALID_HEADER_FIELD, FEI_TYPE);
    if (((this.allowed >>> type) & 1) === 0) {
      this.fail(`${name} PDU is not valid in the ${this.role} direction`, TermReqFes.INVALID_HEADER_FIELD, FEI_TYPE);
    }
    const isIc = type === PduType.ICReq || type === PduType.ICResp;
    const isTerm = type === PduType.H2CTermReq || type === PduType.C2HTermReq;
    if (this.expectIc && !isTerm) {
      if (isIc && this.icSeen) this.fail(`unexpected second ${name} PDU`, TermReqFes.PDU_SEQUENCE_ERROR, 0);
      if (!isIc && !this.icSeen) this.fail(`${name} PDU received before connection initialization`, TermReqFes.PDU_SEQUENCE_ERROR, 0);
    }
    const withDigests = !isIc && !isTerm;
    const expectedHlen = PDU_HLEN[type]!;
    const hd = withDigests && this.hdgst;
    const hdrEnd = hd ? expectedHlen + DIGEST_LENGTH : expectedHlen;
    const mayHaveData = type === PduType.CapsuleCmd || type === PduType.H2CData || type === PduType.C2HData;
    const hasData = mayHaveData && plen > hdrEnd;
    const dd = hasData && this.ddgst;

    // FLAGS (byte 1).
    const valid = VALID_FLAGS[type]!;
    if ((flags & ~valid) !== 0) {
      this.fail(`${name} PDU has invalid FLAGS ${hex(flags)}`, TermReqFes.INVALID_HEADER_FIELD, FEI_FLAGS);
    }
    if (withDigests) {
      if (((flags & PduFlag.HDGSTF) !== 0) !== hd) {
        this.fail(
          `${name} PDU HDGSTF is ${hd ? 'clear' : 'set'} but header digests are ${hd ? 'enabled' : 'not enabled'}`,
          TermReqFes.INVALID_HEADER_FIELD,
          FEI_FLAGS,
        );
      }
      if (((flags & PduFlag.DDGSTF) !== 0) !== dd) {
        this.fail(
          dd
            ? `${name} PDU carries data but DDGSTF is clear while data digests are enabled`
            : `${name} PDU has DDGSTF set but ${hasData ? 'data digests are not enabled' : 'carries no data'}`,
          TermReqFes.INVALID_HEADER_FIELD,
          FEI_FLAGS,
        );
      }
    }
    if (type === PduType.C2HData && (flags & (PduFlag.SUCCESS | PduFlag.LAST_PDU)) === PduFlag.SUCCESS) {
      this.fail('C2HData PDU has SUCCESS set without LAST_PDU', TermReqFes.INVALID_HEADER_FIELD, FEI_FLAGS);
    }

    // HLEN (byte 2).
    if (hlen !== expectedHlen) {
      this.fail(`${name} PDU HLEN is ${hlen}, expected ${expectedHlen}`, TermReqFes.INVALID_HEADER_FIELD, FEI_HLEN);
    }

    // PDO (byte 3). TermReq data always follows its 24-byte header; its PDO is not used.
    let dataOff = 0;
    if (hasData) {
      if (pdo < hdrEnd || pdo > plen) {
        this.fail(`${name} PDU PDO ${pdo} is outside ${hdrEnd}..PLEN ${plen}`, TermReqFes.INVALID_HEADER_FIELD, FEI_PDO);
      }
      dataOff = pdo;
    } else if (!isTerm && pdo !== 0 && !(mayHaveData && pdo === hdrEnd)) {
      this.fail(`${name} PDU without data has PDO ${pdo}, expected 0`, TermReqFes.INVALID_HEADER_FIELD, FEI_PDO);
    }

    // PLEN (bytes 4..7).
    let dataLen = 0;
    if (isIc) {
      if (plen !== 128) this.fail(`${name} PDU PLEN is ${plen}, expected 128`, TermReqFes.INVALID_HEADER_FIELD, FEI_PLEN);
    } else if (isTerm) {
      if (plen < hlen || plen > TERM_REQ_MAX_PLEN) {
        this.fail(`${name} PDU PLEN ${plen} is outside ${hlen}..${TERM_REQ_MAX_PLEN}`, TermReqFes.INVALID_HEADER_FIELD, FEI_PLEN);
      }
    } else if (!mayHaveData) {
      if (plen !== hdrEnd) this.fail(`${name} PDU PLEN is ${plen}, expected ${hdrEnd}`, TermReqFes.INVALID_HEADER_FIELD, FEI_PLEN);
    } else if (plen < hdrEnd) {
      this.fail(`${name} PDU PLEN ${plen} is shorter than its header (${hdrEnd})`, TermReqFes.INVALID_HEADER_FIELD, FEI_PLEN);
    } else if (hasData) {
      dataLen = plen - pdo - (dd ? DIGEST_LENGTH : 0);
      if (dataLen <= 0) {
        this.fail(`${name} PDU PLEN ${plen} leaves no room for data after PDO ${pdo}`, TermReqFes.INVALID_HEADER_FIELD, FEI_PLEN);
      }
      const limit = type === PduType.CapsuleCmd ? this.maxInCapsule : this.maxData;
      if (dataLen > limit) {
        const what = type === PduType.CapsuleCmd ? 'in-capsule data' : 'data';
        const msg = `${name} PDU carries ${dataLen} bytes of ${what}, more than the ${limit} accepted (PLEN ${plen})`;
        if (this.role === 'controller') this.fail(msg, TermReqFes.DATA_TRANSFER_LIMIT_EXCEEDED, 0);
        this.fail(msg, TermReqFes.INVALID_HEADER_FIELD, FEI_PLEN);
      }
    }

    if (isIc) this.icSeen = true;
    return { type, flags, hlen, pdo, plen, hd, dataOff, dataLen, dd };
  }

  /** Decode a complete PDU at b[off..off+plen), whose common header passed checkCh. */
  private decode(b: Buffer, off: number, ch: Ch): Pdu {
    this.cur = b;
    this.curOff = off;
    const { type, hlen } = ch;
    this.checkHeaderDigest(b, off, ch);
    let data: Buffer | null = null;
    let dataDigestError = false;
    if (ch.dataLen > 0) {
      const ds = off + ch.dataOff;
      const de = ds + ch.dataLen;
      data = b.subarray(ds, de);
      if (ch.dd) dataDigestError = crc32c(data) !== b.readUInt32LE(de);
    }

    switch (type) {
      case PduType.CapsuleResp:
        return { type: PduType.CapsuleResp, cqe: b.subarray(off + 8, off + 24) };
      case PduType.C2HData: {
        const datal = b.readUInt32LE(off + 16);
        this.checkDatal('C2HData', datal, ch);
        return {
          type: PduType.C2HData,
          cccid: b.readUInt16LE(off + 8),
          datao: b.readUInt32LE(off + 12),
          last: (ch.flags & PduFlag.LAST_PDU) !== 0,
          success: (ch.flags & PduFlag.SUCCESS) !== 0,
          data: data ?? b.subarray(off, off),
          dataDigestError,
        };
      }
      case PduType.R2T:
        return {
          type: PduType.R2T,
          cccid: b.readUInt16LE(off + 8),
          ttag: b.readUInt16LE(off + 10),
          r2to: b.readUInt32LE(off + 12),
          r2tl: b.readUInt32LE(off + 16),
        };
      case PduType.CapsuleCmd:
        return { type: PduType.CapsuleCmd, sqe: b.subarray(off + 8, off + 72), data, dataDigestError };
      case PduType.H2CData: {
        const datal = b.readUInt32LE(off + 16);
        this.checkDatal('H2CData', datal, ch);
        return {
          type: PduType.H2CData,
          cccid: b.readUInt16LE(off + 8),
          ttag: b.readUInt16LE(off + 10),
          datao: b.readUInt32LE(off + 12),
          last: (ch.flags & PduFlag.LAST_PDU) !== 0,
          data: data ?? b.subarray(off, off),
          dataDigestError,
        };
      }
      case PduType.H2CTermReq:
      case PduType.C2HTermReq:
        return {
          type,
          fes: b.readUInt16LE(off + 8),
          fei: b.readUInt32LE(off + 10),
          data: Buffer.from(b.subarray(off + hlen, off + ch.plen)),
        };
      case PduType.ICResp: {
        const pfv = b.readUInt16LE(off + 8);
        const cpda = b[off + 10]!;
        const dgst = b[off + 11]!;
        const maxh2cdata = b.readUInt32LE(off + 12);
        if (pfv !== 0) this.fail(`ICResp PFV ${pfv} is not supported (only 0)`, TermReqFes.UNSUPPORTED_PARAMETER, 8);
        if (cpda > 31) this.fail(`ICResp CPDA ${cpda} is out of range 0..31`, TermReqFes.INVALID_HEADER_FIELD, 10);
        if (maxh2cdata < MIN_MAXH2CDATA || maxh2cdata % 4 !== 0) {
          this.fail(`ICResp MAXH2CDATA ${maxh2cdata} must be a multiple of 4 and at least ${MIN_MAXH2CDATA}`, TermReqFes.INVALID_HEADER_FIELD, 12);
        }
        return {
          type: PduType.ICResp,
          pfv,
          cpda,
          hdgst: (dgst & DigestOption.HDGST_ENABLE) !== 0,
          ddgst: (dgst & DigestOption.DDGST_ENABLE) !== 0,
          maxh2cdata,
        };
      }
      case PduType.ICReq: {
        const pfv = b.readUInt16LE(off + 8);
        const hpda = b[off + 10]!;
        const dgst = b[off + 11]!;
        if (pfv !== 0) this.fail(`ICReq PFV ${pfv} is not supported (only 0)`, TermReqFes.UNSUPPORTED_PARAMETER, 8);
        if (hpda > 31) this.fail(`ICReq HPDA ${hpda} is out of range 0..31`, TermReqFes.INVALID_HEADER_FIELD, 10);
        return {
          type: PduType.ICReq,
          pfv,
          hpda,
          hdgst: (dgst & DigestOption.HDGST_ENABLE) !== 0,
          ddgst: (dgst & DigestOption.DDGST_ENABLE) !== 0,
          maxr2t: b.readUInt32LE(off + 12),
        };
      }
      default:
        // checkCh admits only the types above.
        throw new ProtocolError(`unknown PDU type ${hex(type)}`, TermReqFes.INVALID_HEADER_FIELD, FEI_TYPE);
    }
  }

  private checkDatal(name: string, datal: number, ch: Ch): void {
    if (datal !== ch.dataLen) {
      this.fail(
        `${name} PDU DATAL ${datal} does not match PLEN ${ch.plen} - PDO ${ch.pdo}${ch.dd ? ' - DDGST 4' : ''} = ${ch.dataLen}`,
        TermReqFes.INVALID_HEADER_FIELD,
        16,
      );
    }
  }
}

function checkLimit(name: string, n: number): number {
  if (!Number.isInteger(n) || n <= 0 || n > 0xffffffff) throw new InvalidArgumentError(`${name} must be a positive integer, got ${n}`);
  return n;
}
