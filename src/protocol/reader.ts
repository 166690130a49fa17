/**
 * Streaming NVMe/TCP PDU reader: socket chunks in, validated PDUs out.
 *
 * Buffering: a PDU that lies within one chunk is decoded in place (its SQE/CQE/data are
 * subarrays of that chunk). A PDU that spans chunks is copied once, as its bytes arrive, into a
 * buffer of exactly PLEN bytes allocated after its common header has been validated; nothing is
 * ever concatenated per chunk. At most one partial PDU is held.
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
import type { Pdu } from './pdu.js';

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

/** Incremental PDU parser for one NVMe/TCP connection direction. */
export class PduReader {
  private readonly role: 'host' | 'controller';
  private readonly allowed: number;
  private hdgst: boolean;
  private ddgst: boolean;
  private maxData: number;
  private readonly maxInCapsule: number;
  private readonly expectIc: boolean;
  private icSeen = false;

  /** Set once a push threw; every later push rethrows it. */
  private failure: Error | null = null;
  private failedHeader: Buffer | null = null;
  /** Where the PDU being checked starts (for errorHeader). */
  private cur: Buffer | null = null;
  private curOff = 0;

  /** Common header bytes of a PDU whose CH is not complete yet (chLen < 8). */
  private readonly chBuf = Buffer.alloc(CH_LENGTH);
  private chLen = 0;
  /** A PDU spanning chunks: its validated header and the PLEN-byte buffer being filled. */
  private partial: Buffer | null = null;
  private partialCh: Ch | null = null;
  private partialLen = 0;

  constructor(opts: PduReaderOptions) {
    if (opts.role !== 'host' && opts.role !== 'controller') throw new InvalidArgumentError(`PduReader role must be 'host' or 'controller'`);
    this.role = opts.role;
    this.allowed = opts.role === 'host' ? HOST_TYPES : CONTROLLER_TYPES;
    this.hdgst = opts.hdgst ?? false;
    this.ddgst = opts.ddgst ?? false;
    this.maxData = checkLimit('maxDataLength', opts.maxDataLength ?? DEFAULT_MAX_DATA);
    this.maxInCapsule = checkLimit('maxInCapsuleData', opts.maxInCapsuleData ?? DEFAULT_MAX_IN_CAPSULE);
    this.expectIc = opts.expectIc ?? false;
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

  /** Bytes currently held waiting for the rest of a PDU. */
  get buffered(): number {
    return this.chLen + this.partialLen;
  }

  /**
   * Feed a socket chunk of any size. Returns the PDUs it completed (possibly none), in order.
   * Throws ProtocolError (fes/fei for the TermReq to send) or DigestError (header digest, FES 3).
   * A data digest mismatch is not thrown: the PDU comes back with `dataDigestError: true`.
   * After a throw the reader is poisoned: every later push throws the same error.
   */
  push(chunk: Buffer): Pdu[] {
    if (this.failure !== null) throw this.failure;
    try {
      const out = this.consume(chunk);
      this.cur = null;
      return out;
    } catch (err) {
      this.failure = err as Error;
      this.failedHeader = this.copyCurrentHeader();
      this.cur = null;
      this.partial = null;
      this.partialCh = null;
      this.partialLen = 0;
      this.chLen = 0;
      throw err;
    }
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

  private consume(chunk: Buffer): Pdu[] {
    const out: Pdu[] = [];
    const n = chunk.length;
    let off = 0;

    // Finish a PDU already in progress.
    if (this.partial !== null) {
      const buf = this.partial;
      const need = buf.length - this.partialLen;
      if (n < need) {
        chunk.copy(buf, this.partialLen, 0, n);
        this.partialLen += n;
        return out;
      }
      chunk.copy(buf, this.partialLen, 0, need);
      const ch = this.partialCh!;
      this.partial = null;
      this.partialCh = null;
      this.partialLen = 0;
      out.push(this.decode(buf, 0, ch));
      off = need;
    } else if (this.chLen > 0) {
      const take = Math.min(CH_LENGTH - this.chLen, n);
      chunk.copy(this.chBuf, this.chLen, 0, take);
      this.chLen += take;
      if (this.chLen < CH_LENGTH) return out;
      off = take;
      const ch = this.checkCh(this.chBuf, 0);
      const rest = ch.plen - CH_LENGTH;
      if (n - off < rest) {
        this.startPartial(ch, this.chBuf, 0, CH_LENGTH);
        this.chLen = 0;
        chunk.copy(this.partial!, CH_LENGTH, off, n);
        this.partialLen += n - off;
        return out;
      }
      // Rest of the PDU is in this chunk: assemble header and body once.
      const buf = Buffer.allocUnsafe(ch.plen);
      this.chBuf.copy(buf, 0, 0, CH_LENGTH);
      chunk.copy(buf, CH_LENGTH, off, off + rest);
      this.chLen = 0;
      out.push(this.decode(buf, 0, ch));
      off += rest;
    }

    // Whole PDUs inside this chunk are decoded in place.
    while (off < n) {
      const left = n - off;
      if (left < CH_LENGTH) {
        chunk.copy(this.chBuf, 0, off, n);
        this.chLen = left;
        break;
      }
      const ch = this.checkCh(chunk, off);
      if (left < ch.plen) {
        this.startPartial(ch, chunk, off, n);
        break;
      }
      out.push(this.decode(chunk, off, ch));
      off += ch.plen;
    }
    return out;
  }

  private startPartial(ch: Ch, src: Buffer, start: number, end: number): void {
    const buf = Buffer.allocUnsafe(ch.plen);
    src.copy(buf, 0, start, end);
    this.partial = buf;
    this.partialCh = ch;
    this.partialLen = end - start;
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
    if (ch.hd) {
      const expected = crc32c(b.subarray(off, off + hlen));
      const actual = b.readUInt32LE(off + hlen);
      if (expected !== actual) throw new DigestError('header', expected, actual);
    }
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
