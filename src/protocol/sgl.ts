/**
 * SGL descriptors in the DPTR field of an SQE (bytes 24..39).
 *
 * A descriptor is 16 bytes: bytes 0-7 address, bytes 8-11 length, bytes 12-14 reserved (or
 * type specific), byte 15 the SGL identifier = (type << 4) | subtype.
 *
 * NVMe/TCP uses two kinds:
 * - SGL Data Block, subtype 1 (offset), address = offset into the in-capsule data (ICDOFF, usually 0):
 *   the data travels inside the CapsuleCmd PDU.
 * - Transport SGL Data Block (type 5), subtype 0xA: the data moves in H2CData PDUs after R2T (writes)
 *   or in C2HData PDUs (reads). With length 0 it is also the "no data" descriptor.
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import { SglSubtype, SglType } from './constants.js';

/** A decoded SGL descriptor. */
export type SglDescriptor =
  | { kind: 'data-block'; address: bigint; length: number; subtype: number }
  | { kind: 'transport-data-block'; length: number; subtype: number }
  | { kind: 'other'; type: number; subtype: number; raw: Buffer };

/** Byte offset of DPTR in an SQE. */
export const DPTR_OFFSET = 24;
/** Size of an SGL descriptor. */
export const SGL_DESCRIPTOR_SIZE = 16;

function check(cond: boolean, message: string): void {
  if (!cond) throw new InvalidArgumentError(message);
}

// The checks below run for every command sent (writeDataSgl): they build their messages only on failure.
function checkSqe(sqe: Uint8Array, fn: string): void {
  if (!(sqe instanceof Uint8Array && sqe.length >= DPTR_OFFSET + SGL_DESCRIPTOR_SIZE)) throw new InvalidArgumentError(`${fn}: the SQE must be at least 40 bytes`);
}

function checkLength(length: unknown): number {
  if (typeof length === 'number' && Number.isInteger(length) && length >= 0 && length <= 0xffffffff) return length;
  throw new InvalidArgumentError(`SGL length must be an integer in 0..4294967295, got ${String(length)}`);
}

function checkNibble(name: string, v: unknown): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xf) return v;
  throw new InvalidArgumentError(`SGL ${name} must be an integer in 0..15, got ${String(v)}`);
}

/** Zero sqe[from..to): a few bytes, cheaper as a loop than a call into fill(). */
function zero(sqe: Buffer, from: number, to: number): void {
  for (let i = from; i < to; i++) sqe[i] = 0;
}

/** Write `d` into the DPTR field (SQE bytes 24..39). */
export function writeSgl(sqe: Buffer, d: SglDescriptor): void {
  checkSqe(sqe, 'writeSgl');
  const o = DPTR_OFFSET;
  switch (d.kind) {
    case 'data-block': {
      check(typeof d.address === 'bigint' && d.address >= 0n && d.address <= 0xffffffffffffffffn, 'SGL address must be a bigint in 0..2^64-1');
      put(sqe, SglType.DataBlock, checkLength(d.length), checkNibble('subtype', d.subtype));
      sqe.writeBigUInt64LE(d.address, o);
      return;
    }
    case 'transport-data-block':
      put(sqe, SglType.TransportDataBlock, checkLength(d.length), checkNibble('subtype', d.subtype));
      return;
    case 'other': {
      const type = checkNibble('type', d.type);
      const subtype = checkNibble('subtype', d.subtype);
      check(d.raw instanceof Uint8Array && d.raw.length === SGL_DESCRIPTOR_SIZE, 'SGL raw descriptor must be 16 bytes');
      sqe.set(d.raw, o);
      sqe[o + 15] = (type << 4) | subtype;
      return;
    }
    default:
      throw new InvalidArgumentError(`unknown SGL descriptor kind ${String((d as { kind?: unknown }).kind)}`);
  }
}

/** Read the DPTR field (SQE bytes 24..39) as an SGL descriptor. */
export function readSgl(sqe: Buffer): SglDescriptor {
  checkSqe(sqe, 'readSgl');
  const o = DPTR_OFFSET;
  const id = sqe[o + 15]!;
  const type = id >> 4;
  const subtype = id & 0xf;
  if (type === SglType.DataBlock) {
    return { kind: 'data-block', address: sqe.readBigUInt64LE(o), length: sqe.readUInt32LE(o + 8), subtype };
  }
  if (type === SglType.TransportDataBlock) {
    return { kind: 'transport-data-block', length: sqe.readUInt32LE(o + 8), subtype };
  }
  return { kind: 'other', type, subtype, raw: Buffer.from(sqe.subarray(o, o + SGL_DESCRIPTOR_SIZE)) };
}

/**
 * Descriptor for in-capsule data: SGL Data Block, subtype Offset, address = `icdoff` (the
 * controller's In Capsule Data Offset, 0 unless Identify Controller ICDOFF says otherwise).
 */
export function inCapsuleSgl(length: number, icdoff = 0): SglDescriptor {
  checkLength(length);
  check(Number.isInteger(icdoff) && icdoff >= 0 && icdoff <= 0xffff, `icdoff must be an integer in 0..65535, got ${String(icdoff)}`);
  return { kind: 'data-block', address: BigInt(icdoff), length, subtype: SglSubtype.Offset };
}

/**
 * Descriptor for data moved by R2T/H2CData (host-to-controller) or C2HData (controller-to-host):
 * Transport SGL Data Block, subtype 0xA. Use length 0 for commands without data.
 */
export function transportSgl(length: number): SglDescriptor {
  checkLength(length);
  return { kind: 'transport-data-block', length, subtype: SglSubtype.TransportA };
}

/** A descriptor with address 0: `type`, `length`, `subtype`, the reserved bytes zeroed. */
function put(sqe: Buffer, type: number, length: number, subtype: number): void {
  const o = DPTR_OFFSET;
  zero(sqe, o, o + 8);
  sqe.writeUInt32LE(length, o + 8);
  zero(sqe, o + 12, o + 15);
  sqe[o + 15] = (type << 4) | subtype;
}

/**
 * Write the descriptor of a command's data into its SQE without building a descriptor object (the I/O path):
 * in-capsule data (SGL Data Block, offset 0) or data moved by C2HData/R2T (Transport SGL Data Block, subtype 0xA;
 * length 0 for no data). The same bytes as `writeSgl(sqe, inCapsuleSgl(length))` / `writeSgl(sqe, transportSgl(length))`.
 */
export function writeDataSgl(sqe: Buffer, length: number, inCapsule: boolean): void {
  checkSqe(sqe, 'writeDataSgl');
  checkLength(length);
  if (inCapsule) put(sqe, SglType.DataBlock, length, SglSubtype.Offset);
  else put(sqe, SglType.TransportDataBlock, length, SglSubtype.TransportA);
}
