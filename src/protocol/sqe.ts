/**
 * Submission Queue Entry (64-byte command) codec.
 *
 * Layout (Base spec, "Common Command Format"), all little-endian:
 * ```
 *  byte 0      opcode
 *  byte 1      FUSE (bits 1:0), PSDT (bits 7:6)
 *  bytes 2-3   CID
 *  bytes 4-7   NSID            (Fabrics commands: byte 4 = FCTYPE)
 *  bytes 8-11  CDW2
 *  bytes 12-15 CDW3
 *  bytes 16-23 MPTR
 *  bytes 24-39 DPTR            (an SGL descriptor for fabrics)
 *  bytes 40-63 CDW10 .. CDW15
 * ```
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import { SQE_SIZE } from './constants.js';
import { readSgl, type SglDescriptor } from './sgl.js';

/** Fields of a submission queue entry. Every field but `opcode` defaults to 0, except `psdt`. */
export interface SqeFields {
  opcode: number;
  /** Fused operation (0 normal, 1 first, 2 second). */
  fuse?: number;
  /** PRP or SGL for Data Transfer; default 1 (SGL, metadata buffer), which NVMe over Fabrics requires. */
  psdt?: number;
  cid?: number;
  nsid?: number;
  cdw2?: number;
  cdw3?: number;
  mptr?: bigint;
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
  cdw13?: number;
  cdw14?: number;
  cdw15?: number;
}

/** A decoded submission queue entry. */
export type DecodedSqe = Required<Omit<SqeFields, 'cid'>> & { cid: number; dptr: SglDescriptor };

/** Byte offsets of SQE fields. */
export const SqeOffset = {
  OPCODE: 0,
  FLAGS: 1,
  CID: 2,
  NSID: 4,
  FCTYPE: 4,
  CDW2: 8,
  CDW3: 12,
  MPTR: 16,
  DPTR: 24,
  CDW10: 40,
  CDW11: 44,
  CDW12: 48,
  CDW13: 52,
  CDW14: 56,
  CDW15: 60,
} as const;

// ---------------------------------------------------------------------------------------------
// Argument checks shared by the protocol encoders (kept here so every codec reports alike).

/** Implementation detail of the codecs: throw unless `v` is an integer in [min, max]; returns it. */
export function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidArgumentError(`${name} must be an integer in ${min}..${max}, got ${describeValue(v)}`);
  }
  return v;
}

/**
 * @internal A 32-bit dword. Accepts 0..2^32-1 and also negative int32 values (the result of JS
 * bitwise operators), which are reinterpreted as unsigned.
 */
export function checkDword(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < -0x80000000 || v > 0xffffffff) {
    throw new InvalidArgumentError(`${name} must be a 32-bit integer, got ${describeValue(v)}`);
  }
  return v >>> 0;
}

/** Implementation detail of the codecs: a bigint in 0..2^64-1 (or a non-negative safe integer number). */
export function checkU64(name: string, v: unknown): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > 0xffffffffffffffffn) {
      throw new InvalidArgumentError(`${name} must be in 0..2^64-1, got ${v}`);
    }
    return v;
  }
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw new InvalidArgumentError(`${name} must be a non-negative safe integer or a bigint below 2^64, got ${describeValue(v)}`);
}

/** Implementation detail of the codecs: short printable form of a value for error messages. */
export function describeValue(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}...` : v);
  if (v === null) return 'null';
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object';
  return String(v);
}

/** Implementation detail of the codecs: `sqe` must be a buffer of at least 64 bytes (InvalidArgumentError naming `what`). */
export function checkSqeBuffer(sqe: Uint8Array, what: string): void {
  if (!(sqe instanceof Uint8Array) || sqe.length < SQE_SIZE) {
    throw new InvalidArgumentError(`${what}: an SQE must be a buffer of at least ${SQE_SIZE} bytes`);
  }
}

/** A checked 32-bit value, little-endian, at b[off..off+4) (inside a buffer known to be large enough). */
function put32(b: Buffer, off: number, v: number): void {
  b[off] = v;
  b[off + 1] = v >>> 8;
  b[off + 2] = v >>> 16;
  b[off + 3] = v >>> 24;
}

/** Encode a 64-byte SQE. DPTR (bytes 24..39) is left zero for the transport to fill. */
export function encodeSqe(f: SqeFields): Buffer {
  if (f === null || typeof f !== 'object') throw new InvalidArgumentError('encodeSqe: fields object required');
  // Every byte is written below (DPTR as zeros), so the pooled allocation needs no fill of its own.
  const b = Buffer.allocUnsafe(SQE_SIZE);
  const opcode = checkInt('opcode', f.opcode, 0, 0xff);
  const fuse = checkInt('fuse', f.fuse ?? 0, 0, 3);
  const psdt = checkInt('psdt', f.psdt ?? 1, 0, 3);
  b[SqeOffset.OPCODE] = opcode;
  b[SqeOffset.FLAGS] = (psdt << 6) | fuse;
  const cid = checkInt('cid', f.cid ?? 0, 0, 0xffff);
  b[SqeOffset.CID] = cid;
  b[SqeOffset.CID + 1] = cid >>> 8;
  put32(b, SqeOffset.NSID, checkDword('nsid', f.nsid ?? 0));
  put32(b, SqeOffset.CDW2, checkDword('cdw2', f.cdw2 ?? 0));
  put32(b, SqeOffset.CDW3, checkDword('cdw3', f.cdw3 ?? 0));
  if (f.mptr === undefined) {
    put32(b, SqeOffset.MPTR, 0);
    put32(b, SqeOffset.MPTR + 4, 0);
  } else b.writeBigUInt64LE(checkU64('mptr', f.mptr), SqeOffset.MPTR);
  for (let i = SqeOffset.DPTR; i < SqeOffset.DPTR + 16; i += 4) put32(b, i, 0);
  put32(b, SqeOffset.CDW10, checkDword('cdw10', f.cdw10 ?? 0));
  put32(b, SqeOffset.CDW11, checkDword('cdw11', f.cdw11 ?? 0));
  put32(b, SqeOffset.CDW12, checkDword('cdw12', f.cdw12 ?? 0));
  put32(b, SqeOffset.CDW13, checkDword('cdw13', f.cdw13 ?? 0));
  put32(b, SqeOffset.CDW14, checkDword('cdw14', f.cdw14 ?? 0));
  put32(b, SqeOffset.CDW15, checkDword('cdw15', f.cdw15 ?? 0));
  return b;
}

/**
 * @internal The SQE of an NVM command whose only fields are the opcode, NSID and CDW10-12 (Read, Write, Compare,
 * Verify, Write Zeroes), from values its builder has already checked: the same bytes as `encodeSqe` with those
 * fields (PSDT 01b, everything else zero), without the per-field checks.
 */
export function encodeNvmSqe(opcode: number, nsid: number, cdw10: number, cdw11: number, cdw12: number): Buffer {
  const b = Buffer.allocUnsafe(SQE_SIZE);
  for (let i = 0; i < SQE_SIZE; i += 4) put32(b, i, 0);
  b[SqeOffset.OPCODE] = opcode;
  b[SqeOffset.FLAGS] = 1 << 6;
  put32(b, SqeOffset.NSID, nsid);
  put32(b, SqeOffset.CDW10, cdw10);
  put32(b, SqeOffset.CDW11, cdw11);
  put32(b, SqeOffset.CDW12, cdw12);
  return b;
}

/** Decode a 64-byte SQE (bytes beyond 64 are ignored). */
export function decodeSqe(sqe: Buffer): DecodedSqe {
  checkSqeBuffer(sqe, 'decodeSqe');
  const flags = sqe[SqeOffset.FLAGS]!;
  return {
    opcode: sqe[SqeOffset.OPCODE]!,
    fuse: flags & 0x3,
    psdt: flags >> 6,
    cid: sqe.readUInt16LE(SqeOffset.CID),
    nsid: sqe.readUInt32LE(SqeOffset.NSID),
    cdw2: sqe.readUInt32LE(SqeOffset.CDW2),
    cdw3: sqe.readUInt32LE(SqeOffset.CDW3),
    mptr: sqe.readBigUInt64LE(SqeOffset.MPTR),
    dptr: readSgl(sqe),
    cdw10: sqe.readUInt32LE(SqeOffset.CDW10),
    cdw11: sqe.readUInt32LE(SqeOffset.CDW11),
    cdw12: sqe.readUInt32LE(SqeOffset.CDW12),
    cdw13: sqe.readUInt32LE(SqeOffset.CDW13),
    cdw14: sqe.readUInt32LE(SqeOffset.CDW14),
    cdw15: sqe.readUInt32LE(SqeOffset.CDW15),
  };
}

/** Write the command identifier (bytes 2..3). */
export function setCid(sqe: Buffer, cid: number): void {
  checkSqeBuffer(sqe, 'setCid');
  sqe.writeUInt16LE(checkInt('cid', cid, 0, 0xffff), SqeOffset.CID);
}

/** Read the command identifier (bytes 2..3). */
export function getCid(sqe: Buffer): number {
  checkSqeBuffer(sqe, 'getCid');
  return sqe.readUInt16LE(SqeOffset.CID);
}

/** Opcode (byte 0). */
export function getOpcode(sqe: Buffer): number {
  checkSqeBuffer(sqe, 'getOpcode');
  return sqe[SqeOffset.OPCODE]!;
}

/** FCTYPE (byte 4); meaningful only when the opcode is 7Fh (Fabrics). */
export function getFctype(sqe: Buffer): number {
  checkSqeBuffer(sqe, 'getFctype');
  return sqe[SqeOffset.FCTYPE]!;
}
