/**
 * NVMe/TCP PDU types, flags and the PDU encoder.
 *
 * Every PDU starts with an 8-byte common header (CH): PDU-Type (byte 0), FLAGS (1), HLEN (2),
 * PDO (3) and PLEN (4..7, u32 LE). The PDU-specific header (PSH) follows up to HLEN; then an
 * optional header digest (HDGST, 4 bytes), pad bytes up to PDO, the data, and an optional data
 * digest (DDGST, 4 bytes). Digests are CRC32C values stored little-endian.
 */

import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import { crc32c } from './crc32c.js';
import { ProtocolError } from '../errors.js';

/** PDU-Type values (byte 0 of the common header). */
export const PduType = {
  ICReq: 0x00,
  ICResp: 0x01,
  H2CTermReq: 0x02,
  C2HTermReq: 0x03,
  CapsuleCmd: 0x04,
  CapsuleResp: 0x05,
  H2CData: 0x06,
  C2HData: 0x07,
  R2T: 0x09,
} as const;
/** A PDU-Type value of {@link PduType}. */
export type PduTypeValue = (typeof PduType)[keyof typeof PduType];

/** FLAGS bits (byte 1 of the common header). LAST_PDU and SUCCESS apply to data PDUs only. */
export const PduFlag = { HDGSTF: 0x01, DDGSTF: 0x02, LAST_PDU: 0x04, SUCCESS: 0x08 } as const;

/** Fatal Error Status values carried by H2CTermReq / C2HTermReq. 5 means "R2T Limit Exceeded" in an H2CTermReq. */
export const TermReqFes = {
  INVALID_HEADER_FIELD: 1,
  PDU_SEQUENCE_ERROR: 2,
  HEADER_DIGEST_ERROR: 3,
  DATA_TRANSFER_OUT_OF_RANGE: 4,
  DATA_TRANSFER_LIMIT_EXCEEDED: 5,
  UNSUPPORTED_PARAMETER: 6,
} as const;

/**
 * Byte offsets of PDU header fields: the FEI of a TermReq whose FES is Invalid PDU Header Field (1) or Unsupported
 * Parameter (6). For the other FES values the spec reserves FEI (0).
 */
export const PduField = {
  TYPE: 0,
  FLAGS: 1,
  HLEN: 2,
  PDO: 3,
  PLEN: 4,
  /** IC PDUs: PFV, HPDA/CPDA, DGST, MAXR2T/MAXH2CDATA. */
  IC_PFV: 8,
  IC_PDA: 10,
  IC_DGST: 11,
  IC_MAXDATA: 12,
  /** Data PDUs and R2T. */
  CCCID: 8,
  TTAG: 10,
  DATAO: 12,
  DATAL: 16,
  /** CapsuleResp: the CQE starts at 8; its CID at CQE byte 12. */
  CQE_CID: 8 + 12,
} as const;

/**
 * The transport's fatal errors, each with the FES the spec gives it and the FEI that FES carries (a field offset for
 * FES 1 and 6, reserved 0 for the rest), so no caller pairs them by hand. `malformed` is a bad data structure
 * (log page, Identify data) that is not a transport error: FES 0, no TermReq.
 */
export const protocolError = {
  invalidField: (message: string, fei: number): ProtocolError => new ProtocolError(message, TermReqFes.INVALID_HEADER_FIELD, fei),
  sequence: (message: string): ProtocolError => new ProtocolError(message, TermReqFes.PDU_SEQUENCE_ERROR, 0),
  outOfRange: (message: string): ProtocolError => new ProtocolError(message, TermReqFes.DATA_TRANSFER_OUT_OF_RANGE, 0),
  limitExceeded: (message: string): ProtocolError => new ProtocolError(message, TermReqFes.DATA_TRANSFER_LIMIT_EXCEEDED, 0),
  unsupported: (message: string, fei: number): ProtocolError => new ProtocolError(message, TermReqFes.UNSUPPORTED_PARAMETER, fei),
  malformed: (message: string): ProtocolError => new ProtocolError(message, 0, 0),
};

/** ICReq/ICResp DGST field bits (byte 11). */
export const DigestOption = { HDGST_ENABLE: 0x01, DDGST_ENABLE: 0x02 } as const;

/** Size of a header or data digest. */
export const DIGEST_LENGTH = 4;
/** Size of the common header. */
export const CH_LENGTH = 8;
/** Largest TermReq PLEN: 24-byte header plus up to 128 bytes of the offending PDU header. */
export const TERM_REQ_MAX_PLEN = 152;
/** Largest TermReq data (a copy of the offending PDU header). */
export const TERM_REQ_MAX_DATA = 128;
/** Smallest MAXH2CDATA a controller may report in ICResp. */
export const MIN_MAXH2CDATA = 4096;

/** Header lengths (HLEN) per PDU type. */
export const PDU_HLEN: Record<number, number> = {
  [PduType.ICReq]: 128,
  [PduType.ICResp]: 128,
  [PduType.H2CTermReq]: 24,
  [PduType.C2HTermReq]: 24,
  [PduType.CapsuleCmd]: 72,
  [PduType.CapsuleResp]: 24,
  [PduType.H2CData]: 24,
  [PduType.C2HData]: 24,
  [PduType.R2T]: 24,
};

/** Initialize Connection Request (host to controller). */
export interface ICReqPdu {
  type: 0x00;
  /** PDU format version; 0 is the only one defined. */
  pfv: number;
  /** Host PDU data alignment, dwords, 0's based (0..31). */
  hpda: number;
  hdgst: boolean;
  ddgst: boolean;
  /** Maximum outstanding R2Ts per command, 0's based. */
  maxr2t: number;
}
/** Initialize Connection Response (controller to host). */
export interface ICRespPdu {
  type: 0x01;
  pfv: number;
  /** Controller PDU data alignment, dwords, 0's based (0..31). */
  cpda: number;
  hdgst: boolean;
  ddgst: boolean;
  /** Largest H2CData payload the controller accepts, bytes. */
  maxh2cdata: number;
}
/** H2CTermReq (0x02) or C2HTermReq (0x03). */
export interface TermReqPdu {
  type: 0x02 | 0x03;
  /** Fatal Error Status (see TermReqFes). */
  fes: number;
  /** Fatal Error Information (field offset for FES 1 and 6). */
  fei: number;
  /** Copy of the offending PDU header, at most 128 bytes. */
  data: Buffer;
}
/** Command capsule (host to controller). */
export interface CapsuleCmdPdu {
  type: 0x04;
  /** 64-byte submission queue entry. */
  sqe: Buffer;
  /** In-capsule data, or null. */
  data: Buffer | null;
  /** Set by the reader when the data digest did not match. */
  dataDigestError?: boolean;
}
/** Response capsule (controller to host). */
export interface CapsuleRespPdu {
  type: 0x05;
  /** 16-byte completion queue entry. */
  cqe: Buffer;
}
/** Host-to-controller data. */
export interface H2CDataPdu {
  type: 0x06;
  cccid: number;
  ttag: number;
  datao: number;
  last: boolean;
  data: Buffer;
  dataDigestError?: boolean;
  /** Set by a reader with direct data placement: `data` is the placement buffer (empty when discarded). */
  placed?: boolean;
}
/** Controller-to-host data. */
export interface C2HDataPdu {
  type: 0x07;
  cccid: number;
  datao: number;
  last: boolean;
  /** The command completed successfully; no CapsuleResp follows. Requires `last`. */
  success: boolean;
  data: Buffer;
  dataDigestError?: boolean;
  /** Set by a reader with direct data placement: `data` is the placement buffer (empty when discarded). */
  placed?: boolean;
}
/** Ready to Transfer (controller to host). */
export interface R2TPdu {
  type: 0x09;
  cccid: number;
  ttag: number;
  r2to: number;
  r2tl: number;
}
/** Any decoded NVMe/TCP PDU; `type` tells which. */
export type Pdu = ICReqPdu | ICRespPdu | TermReqPdu | CapsuleCmdPdu | CapsuleRespPdu | H2CDataPdu | C2HDataPdu | R2TPdu;

/** Options for encodePdu. */
export interface EncodeOptions {
  /** Append a header digest (only PDU types that carry one: CapsuleCmd/Resp, H2C/C2HData, R2T). */
  hdgst: boolean;
  /** Append a data digest when the PDU carries data (same types). */
  ddgst: boolean;
  /**
   * Receiver's PDU data alignment in bytes, i.e. (cpda or hpda + 1) * 4; 0/undefined = no padding.
   * PDO is the smallest multiple of it that is >= HLEN (+4 with a header digest); pad bytes are zero.
   */
  dataAlignment?: number;
}

/** Data offset for a PDU with header length `hlen` (+ digest) and the receiver's alignment. */
export function dataOffset(hlen: number, hdgst: boolean, alignment: number | undefined): number {
  const h = hdgst ? hlen + DIGEST_LENGTH : hlen;
  if (!alignment || alignment <= 1) return h;
  return Math.ceil(h / alignment) * alignment;
}

function u16(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new InvalidArgumentError(`${name} must be an integer in 0..65535, got ${v}`);
  return v;
}

function u32(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new InvalidArgumentError(`${name} must be an integer in 0..4294967295, got ${v}`);
  return v;
}

function u8(name: string, v: number, max = 0xff): number {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new InvalidArgumentError(`${name} must be an integer in 0..${max}, got ${v}`);
  return v;
}

function asBuffer(d: Uint8Array): Buffer {
  return Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

/** Allocate a zeroed header (+ optional trailing 4 bytes for the data digest) from the pool. */
function allocHeader(len: number): Buffer {
  return Buffer.allocUnsafe(len).fill(0);
}

function encodeIc(pdu: ICReqPdu | ICRespPdu): Buffer[] {
  const h = allocHeader(128);
  h[0] = pdu.type;
  h[2] = 128;
  h.writeUInt32LE(128, 4);
  h.writeUInt16LE(u16('pfv', pdu.pfv), 8);
  if (pdu.type === PduType.ICReq) {
    h[10] = u8('hpda', pdu.hpda, 31);
    h.writeUInt32LE(u32('maxr2t', pdu.maxr2t), 12);
  } else {
    h[10] = u8('cpda', pdu.cpda, 31);
    h.writeUInt32LE(u32('maxh2cdata', pdu.maxh2cdata), 12);
  }
  h[11] = (pdu.hdgst ? DigestOption.HDGST_ENABLE : 0) | (pdu.ddgst ? DigestOption.DDGST_ENABLE : 0);
  return [h];
}

function encodeTermReq(pdu: TermReqPdu): Buffer[] {
  // The spec bounds a TermReq at 152 bytes: only the first 128 bytes of the offending header are sent.
  const data = pdu.data.length > TERM_REQ_MAX_DATA ? pdu.data.subarray(0, TERM_REQ_MAX_DATA) : pdu.data;
  const h = allocHeader(24);
  h[0] = pdu.type;
  h[2] = 24;
  h.writeUInt32LE(24 + data.length, 4);
  h.writeUInt16LE(u16('fes', pdu.fes), 8);
  h.writeUInt32LE(u32('fei', pdu.fei), 10);
  return data.length > 0 ? [h, asBuffer(data)] : [h];
}

/**
 * Encode one PDU as a list of buffers to write in order: one header buffer (CH + PSH, header
 * digest and pad), then `data` as passed (no copy), then the 4-byte data digest. PLEN, PDO, DATAL
 * and the HDGSTF/DDGSTF/LAST_PDU/SUCCESS flags are computed here. ICReq, ICResp and TermReq never
 * carry digests; TermReq data longer than 128 bytes is cut to 128 (PLEN <= 152). Throws
 * InvalidArgumentError for out-of-range fields.
 */
export function encodePdu(pdu: Pdu, opts: EncodeOptions): Buffer[] {
  switch (pdu.type) {
    case PduType.ICReq:
    case PduType.ICResp:
      return encodeIc(pdu);
    case PduType.H2CTermReq:
    case PduType.C2HTermReq:
      return encodeTermReq(pdu);
    default:
      break;
  }

  const type = pdu.type;
  const hlen = PDU_HLEN[type];
  if (hlen === undefined) throw new InvalidArgumentError(`unknown PDU type ${String(type)}`);
  const hdgst = opts.hdgst;
  let data: Buffer | null = null;
  if (type === PduType.CapsuleCmd || type === PduType.H2CData || type === PduType.C2HData) {
    const d = pdu.data;
    if (d !== null && d.length > 0) data = asBuffer(d);
  }
  const ddgst = opts.ddgst && data !== null;
  const align = opts.dataAlignment;
  if (align !== undefined && align !== 0 && (!Number.isInteger(align) || align < 4 || align > 128 || align % 4 !== 0)) {
    throw new InvalidArgumentError(`dataAlignment must be 0 or a multiple of 4 in 4..128, got ${align}`);
  }

  const hdrEnd = hdgst ? hlen + DIGEST_LENGTH : hlen;
  let pdo = 0;
  let headerLen = hdrEnd;
  let plen = hdrEnd;
  if (data !== null) {
    pdo = dataOffset(hlen, hdgst, align);
    headerLen = pdo;
    plen = pdo + data.length + (ddgst ? DIGEST_LENGTH : 0);
    if (plen > 0xffffffff) throw new InvalidArgumentError(`PDU too large: PLEN ${plen}`);
  }

  // One allocation: header (+ pad) and, when needed, the 4-byte data digest right after it.
  const blockLen = ddgst ? headerLen + DIGEST_LENGTH : headerLen;
  let block: Buffer;
  if (type === PduType.CapsuleCmd || type === PduType.CapsuleResp) {
    // Every header byte is written below (common header, SQE/CQE, header digest); only the pad before PDO is zeroed.
    block = Buffer.allocUnsafe(blockLen);
    for (let i = hdrEnd; i < headerLen; i++) block[i] = 0;
  } else block = allocHeader(blockLen);
  const h = ddgst ? block.subarray(0, headerLen) : block;
  let flags = (hdgst ? PduFlag.HDGSTF : 0) | (ddgst ? PduFlag.DDGSTF : 0);

  switch (pdu.type) {
    case PduType.CapsuleCmd:
      if (pdu.sqe.length !== 64) throw new InvalidArgumentError(`CapsuleCmd SQE must be 64 bytes, got ${pdu.sqe.length}`);
      h.set(pdu.sqe, 8);
      break;
    case PduType.CapsuleResp:
      if (pdu.cqe.length !== 16) throw new InvalidArgumentError(`CapsuleResp CQE must be 16 bytes, got ${pdu.cqe.length}`);
      h.set(pdu.cqe, 8);
      break;
    case PduType.H2CData:
      if (pdu.last) flags |= PduFlag.LAST_PDU;
      h.writeUInt16LE(u16('cccid', pdu.cccid), 8);
      h.writeUInt16LE(u16('ttag', pdu.ttag), 10);
      h.writeUInt32LE(u32('datao', pdu.datao), 12);
      h.writeUInt32LE(data === null ? 0 : data.length, 16);
      break;
    case PduType.C2HData:
      if (pdu.success && !pdu.last) throw new InvalidArgumentError('C2HData with SUCCESS must also be the last PDU (LAST_PDU)');
      if (pdu.last) flags |= PduFlag.LAST_PDU;
      if (pdu.success) flags |= PduFlag.SUCCESS;
      h.writeUInt16LE(u16('cccid', pdu.cccid), 8);
      h.writeUInt32LE(u32('datao', pdu.datao), 12);
      h.writeUInt32LE(data === null ? 0 : data.length, 16);
      break;
    case PduType.R2T:
      h.writeUInt16LE(u16('cccid', pdu.cccid), 8);
      h.writeUInt16LE(u16('ttag', pdu.ttag), 10);
      h.writeUInt32LE(u32('r2to', pdu.r2to), 12);
      h.writeUInt32LE(u32('r2tl', pdu.r2tl), 16);
      break;
  }

  h[0] = type;
  h[1] = flags;
  h[2] = hlen;
  h[3] = pdo;
  h.writeUInt32LE(plen, 4);
  if (hdgst) h.writeUInt32LE(crc32c(h.subarray(0, hlen)), hlen);

  if (data === null) return [h];
  if (!ddgst) return [h, data];
  const dd = block.subarray(headerLen);
  dd.writeUInt32LE(crc32c(data), 0);
  return [h, data, dd];
}
