/**
 * Completion Queue Entry (16 bytes) codec.
 *
 * Layout (Base spec, "Common Completion Queue Entry Layout"), little-endian:
 * ```
 *  bytes 0-3    DW0 (command specific)
 *  bytes 4-7    DW1 (command specific)
 *  bytes 8-9    SQHD
 *  bytes 10-11  SQID
 *  bytes 12-13  CID
 *  bytes 14-15  status field: bit 0 phase tag, bits 8:1 SC, 11:9 SCT, 13:12 CRD, 14 More, 15 DNR
 * ```
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError, ProtocolError } from '../errors.js';
import { CQE_SIZE } from './constants.js';

/** A decoded completion queue entry. */
export interface Cqe {
  dw0: number;
  dw1: number;
  sqhd: number;
  sqid: number;
  cid: number;
  /** Raw 16-bit status field: bit 0 phase, 1..8 SC, 9..11 SCT, 12..13 CRD, 14 More, 15 DNR. */
  status: number;
}

/** Bit layout of the raw status field. */
export const StatusField = {
  PHASE: 0x0001,
  SC_SHIFT: 1,
  SC_MASK: 0xff,
  SCT_SHIFT: 9,
  SCT_MASK: 0x7,
  CRD_SHIFT: 12,
  CRD_MASK: 0x3,
  MORE: 0x4000,
  DNR: 0x8000,
} as const;

/** Decode the CQE at `offset` in `buf`. Throws ProtocolError when fewer than 16 bytes remain. */
export function decodeCqe(buf: Buffer, offset = 0): Cqe {
  if (!Number.isInteger(offset) || offset < 0 || buf.length - offset < CQE_SIZE) {
    throw new ProtocolError(`completion queue entry truncated: need ${CQE_SIZE} bytes at offset ${offset}, have ${Math.max(0, buf.length - offset)}`);
  }
  return {
    dw0: buf.readUInt32LE(offset),
    dw1: buf.readUInt32LE(offset + 4),
    sqhd: buf.readUInt16LE(offset + 8),
    sqid: buf.readUInt16LE(offset + 10),
    cid: buf.readUInt16LE(offset + 12),
    status: buf.readUInt16LE(offset + 14),
  };
}

function u(name: string, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new InvalidArgumentError(`${name} must be an integer in 0..${max}, got ${String(v)}`);
  }
  return v;
}

/** Encode a CQE (used by the embedded target and by tests). DW0/DW1 also accept negative int32 values. */
export function encodeCqe(c: Cqe): Buffer {
  const b = Buffer.alloc(CQE_SIZE);
  const dw = (name: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < -0x80000000 || v > 0xffffffff) {
      throw new InvalidArgumentError(`${name} must be a 32-bit integer, got ${String(v)}`);
    }
    return v >>> 0;
  };
  b.writeUInt32LE(dw('dw0', c.dw0), 0);
  b.writeUInt32LE(dw('dw1', c.dw1), 4);
  b.writeUInt16LE(u('sqhd', c.sqhd, 0xffff), 8);
  b.writeUInt16LE(u('sqid', c.sqid, 0xffff), 10);
  b.writeUInt16LE(u('cid', c.cid, 0xffff), 12);
  b.writeUInt16LE(u('status', c.status, 0xffff), 14);
  return b;
}

/** Status Code (bits 8:1 of the status field). */
export function statusSc(status: number): number {
  return (status >> StatusField.SC_SHIFT) & StatusField.SC_MASK;
}

/** Status Code Type (bits 11:9 of the status field). */
export function statusSct(status: number): number {
  return (status >> StatusField.SCT_SHIFT) & StatusField.SCT_MASK;
}

/** True when the completion reports success (SCT 0, SC 0). CRD/More/DNR/phase are ignored. */
export function cqeOk(c: Cqe): boolean {
  return statusSc(c.status) === 0 && statusSct(c.status) === 0;
}

/** Build a raw status field (phase 0) from its parts. */
export function makeStatus(sct: number, sc: number, opts: { dnr?: boolean; more?: boolean; crd?: number } = {}): number {
  u('sct', sct, 7);
  u('sc', sc, 0xff);
  const crd = u('crd', opts.crd ?? 0, 3);
  return (
    (sc << StatusField.SC_SHIFT) |
    (sct << StatusField.SCT_SHIFT) |
    (crd << StatusField.CRD_SHIFT) |
    (opts.more ? StatusField.MORE : 0) |
    (opts.dnr ? StatusField.DNR : 0)
  );
}
