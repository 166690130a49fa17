/**
 * Reservations (NVM Command Set spec and Base spec, "Reservations"): command builders, the Reservation
 * Status data structure (standard and extended) with its encoder, decoders of the commands for the
 * embedded target, and the Reservation Notification Mask feature.
 *
 * Command layouts (all little-endian):
 * ```
 *  Reservation Register (0Dh)  CDW10: RREGA bits 2:0, IEKEY bit 3, CPTPL bits 31:30
 *                              data (16 bytes): CRKEY @0, NRKEY @8
 *  Reservation Report   (0Eh)  CDW10: NUMD (0's based dwords); CDW11: EDS bit 0
 *  Reservation Acquire  (11h)  CDW10: RACQA bits 2:0, IEKEY bit 3, RTYPE bits 15:8
 *                              data (16 bytes): CRKEY @0, PRKEY @8
 *  Reservation Release  (15h)  CDW10: RRELA bits 2:0, IEKEY bit 3, RTYPE bits 15:8
 *                              data (8 bytes): CRKEY @0
 * ```
 *
 * Reservation Status data structure: GEN @0 (u32), RTYPE @4, REGCTL @5 (u16), PTPLS @9, then
 * Registered Controller entries from byte 24 (24 bytes each: CNTLID @0, RCSTS @2, HOSTID @8
 * (64-bit), RKEY @16). The extended structure has a 64-byte header and 64-byte entries (CNTLID @0,
 * RCSTS @2, RKEY @8, HOSTID @16 (128-bit)). RCSTS bit 0: the controller holds the reservation.
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError, ProtocolError } from '../errors.js';
import type { NvmeCommand } from './commands.js';
import { FeatureId, NvmOpcode, AdminOpcode } from './constants.js';
import { checkInt, describeValue, encodeSqe } from './sqe.js';

// ---------------------------------------------------------------------------------------------
// Names and values

/** The six reservation types (RTYPE 1..6), by name. */
export type ReservationType =
  | 'write-exclusive'
  | 'exclusive-access'
  | 'write-exclusive-registrants-only'
  | 'exclusive-access-registrants-only'
  | 'write-exclusive-all-registrants'
  | 'exclusive-access-all-registrants';

/** RTYPE values of the reservation types. */
export const ReservationTypeValue: Readonly<Record<ReservationType, number>> = {
  'write-exclusive': 1,
  'exclusive-access': 2,
  'write-exclusive-registrants-only': 3,
  'exclusive-access-registrants-only': 4,
  'write-exclusive-all-registrants': 5,
  'exclusive-access-all-registrants': 6,
};

const TYPE_NAMES: readonly ReservationType[] = [
  'write-exclusive',
  'exclusive-access',
  'write-exclusive-registrants-only',
  'exclusive-access-registrants-only',
  'write-exclusive-all-registrants',
  'exclusive-access-all-registrants',
];

/** Every reservation type name, in RTYPE order. */
export const RESERVATION_TYPES: readonly ReservationType[] = TYPE_NAMES;

/** The name of an RTYPE value; null for 0 (no reservation) and for values the spec does not define. */
export function reservationTypeName(rtype: number): ReservationType | null {
  return TYPE_NAMES[rtype - 1] ?? null;
}

/** The RTYPE value of a reservation type name (or of a value 1..6); throws InvalidArgumentError otherwise. */
export function reservationTypeValue(type: ReservationType | number, name = 'type'): number {
  if (typeof type === 'number' && Number.isInteger(type) && type >= 1 && type <= 6) return type;
  if (typeof type === 'string' && Object.hasOwn(ReservationTypeValue, type)) return ReservationTypeValue[type];
  throw new InvalidArgumentError(`${name} must be one of ${TYPE_NAMES.join(', ')} (or RTYPE 1..6), got ${describeValue(type)}`);
}

/** Reservation Register Action (RREGA). */
export const ReservationRegisterAction = { register: 0, unregister: 1, replace: 2 } as const;
/** Reservation Acquire Action (RACQA). */
export const ReservationAcquireAction = { acquire: 0, preempt: 1, 'preempt-and-abort': 2 } as const;
/** Reservation Release Action (RRELA). */
export const ReservationReleaseAction = { release: 0, clear: 1 } as const;
/** Change Persist Through Power Loss State (CPTPL, Reservation Register CDW10 bits 31:30). */
export const Cptpl = { noChange: 0, clear: 2, set: 3 } as const;

/** A Reservation Register action by name. */
export type ReservationRegisterActionName = keyof typeof ReservationRegisterAction;
/** A Reservation Acquire action by name. */
export type ReservationAcquireActionName = keyof typeof ReservationAcquireAction;
/** A Reservation Release action by name. */
export type ReservationReleaseActionName = keyof typeof ReservationReleaseAction;

const IEKEY = 1 << 3;

/** Size of the Reservation Status header (standard data structure). */
export const RESERVATION_STATUS_HEADER_SIZE = 24;
/** Size of the Reservation Status header (extended data structure). */
export const RESERVATION_STATUS_EXT_HEADER_SIZE = 64;
/** Size of a Registered Controller data structure (64-bit host identifier). */
export const REGISTERED_CONTROLLER_SIZE = 24;
/** Size of a Registered Controller extended data structure (128-bit host identifier). */
export const REGISTERED_CONTROLLER_EXT_SIZE = 64;

// ---------------------------------------------------------------------------------------------
// Argument helpers

const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** A reservation key: a bigint in 0..2^64-1. */
export function checkReservationKey(name: string, v: unknown): bigint {
  if (typeof v !== 'bigint') {
    const hint = typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? ` (write ${v}n)` : '';
    throw new InvalidArgumentError(`${name} must be a bigint in 0..2^64-1, got ${describeValue(v)}${hint}`);
  }
  if (v < 0n || v > U64_MAX) throw new InvalidArgumentError(`${name} must be in 0..2^64-1, got ${v}n`);
  return v;
}

function optsArg<T>(fn: string, o: T): T {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError(`${fn}: an options object is required`);
  return o;
}

function boolArg(name: string, v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, got ${describeValue(v)}`);
  return v;
}

function actionArg<T extends Record<string, number>>(name: string, table: T, v: unknown): number {
  if (typeof v === 'string' && Object.hasOwn(table, v)) return table[v]!;
  throw new InvalidArgumentError(`${name} must be one of ${Object.keys(table).join(', ')}, got ${describeValue(v)}`);
}

function nsidArg(v: unknown): number {
  return checkInt('nsid', v, 1, 0xfffffffe);
}

function keyData(a: bigint, b?: bigint): Buffer {
  const data = Buffer.alloc(b === undefined ? 8 : 16);
  data.writeBigUInt64LE(a, 0);
  if (b !== undefined) data.writeBigUInt64LE(b, 8);
  return data;
}

function ioCmd(name: string, opcode: number, nsid: number, cdw10: number, cdw11: number, extra: { data?: Buffer; readLength?: number }): NvmeCommand {
  const c: NvmeCommand = { sqe: encodeSqe({ opcode, nsid, cdw10: cdw10 >>> 0, cdw11: cdw11 >>> 0 }), name, kind: 'io' };
  if (extra.data !== undefined) c.data = extra.data;
  if (extra.readLength !== undefined) c.readLength = extra.readLength;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Builders

/** Options for {@link reservationRegister}. */
export interface ReservationRegisterOptions {
  nsid: number;
  /** RREGA: register a new key, unregister, or replace the current key. */
  action: ReservationRegisterActionName;
  /** Current Reservation Key (CRKEY); ignored by the controller for 'register'. Default 0n. */
  crkey?: bigint;
  /** New Reservation Key (NRKEY); used by 'register' and 'replace'. Default 0n. */
  nrkey?: bigint;
  /** Ignore Existing Key (IEKEY, CDW10 bit 3): skip the CRKEY check. */
  iekey?: boolean;
  /** CPTPL: true sets Persist Through Power Loss (11b), false clears it (10b), undefined leaves it (00b). */
  ptpl?: boolean;
}

/** Reservation Register (NVM 0Dh). Data: CRKEY @0, NRKEY @8 (16 bytes). */
export function reservationRegister(o: ReservationRegisterOptions): NvmeCommand {
  optsArg('reservationRegister', o);
  const nsid = nsidArg(o.nsid);
  const rrega = actionArg('action', ReservationRegisterAction, o.action);
  const crkey = checkReservationKey('crkey', o.crkey ?? 0n);
  const nrkey = checkReservationKey('nrkey', o.nrkey ?? 0n);
  const iekey = boolArg('iekey', o.iekey);
  if (o.ptpl !== undefined && typeof o.ptpl !== 'boolean') throw new InvalidArgumentError(`ptpl must be a boolean, got ${describeValue(o.ptpl)}`);
  const cptpl = o.ptpl === undefined ? Cptpl.noChange : o.ptpl ? Cptpl.set : Cptpl.clear;
  const cdw10 = rrega | (iekey ? IEKEY : 0) | (cptpl << 30);
  return ioCmd(`Reservation Register (${o.action})`, NvmOpcode.ReservationRegister, nsid, cdw10, 0, { data: keyData(crkey, nrkey) });
}

/** Options for {@link reservationAcquire}. */
export interface ReservationAcquireOptions {
  nsid: number;
  /** RACQA: acquire, preempt, or preempt and abort. */
  action: ReservationAcquireActionName;
  /** Reservation type (RTYPE). */
  type: ReservationType | number;
  /** Current Reservation Key (CRKEY): this host's registered key. */
  crkey: bigint;
  /** Preempt Reservation Key (PRKEY): the key of the registrants to preempt. Default 0n. */
  prkey?: bigint;
  /** Ignore Existing Key (IEKEY, CDW10 bit 3). */
  iekey?: boolean;
}

/** Reservation Acquire (NVM 11h). Data: CRKEY @0, PRKEY @8 (16 bytes). */
export function reservationAcquire(o: ReservationAcquireOptions): NvmeCommand {
  optsArg('reservationAcquire', o);
  const nsid = nsidArg(o.nsid);
  const racqa = actionArg('action', ReservationAcquireAction, o.action);
  const rtype = reservationTypeValue(o.type);
  const crkey = checkReservationKey('crkey', o.crkey);
  const prkey = checkReservationKey('prkey', o.prkey ?? 0n);
  const iekey = boolArg('iekey', o.iekey);
  const cdw10 = racqa | (iekey ? IEKEY : 0) | (rtype << 8);
  return ioCmd(`Reservation Acquire (${o.action})`, NvmOpcode.ReservationAcquire, nsid, cdw10, 0, { data: keyData(crkey, prkey) });
}

/** Options for {@link reservationRelease}. */
export interface ReservationReleaseOptions {
  nsid: number;
  /** RRELA: release the reservation, or clear it and every registration. */
  action: ReservationReleaseActionName;
  /** Reservation type (RTYPE); must match the reservation held for 'release'. Default 0 (for 'clear'). */
  type?: ReservationType | number;
  /** Current Reservation Key (CRKEY). */
  crkey: bigint;
  /** Ignore Existing Key (IEKEY, CDW10 bit 3). */
  iekey?: boolean;
}

/** Reservation Release (NVM 15h). Data: CRKEY @0 (8 bytes). */
export function reservationRelease(o: ReservationReleaseOptions): NvmeCommand {
  optsArg('reservationRelease', o);
  const nsid = nsidArg(o.nsid);
  const rrela = actionArg('action', ReservationReleaseAction, o.action);
  const rtype = o.type === undefined ? 0 : reservationTypeValue(o.type);
  if (rrela === ReservationReleaseAction.release && rtype === 0) throw new InvalidArgumentError('type is required to release a reservation (it must match the reservation held)');
  const crkey = checkReservationKey('crkey', o.crkey);
  const iekey = boolArg('iekey', o.iekey);
  const cdw10 = rrela | (iekey ? IEKEY : 0) | (rtype << 8);
  return ioCmd(`Reservation Release (${o.action})`, NvmOpcode.ReservationRelease, nsid, cdw10, 0, { data: keyData(crkey) });
}

/** Options for {@link reservationReport}. */
export interface ReservationReportOptions {
  nsid: number;
  /** Bytes to read: a positive multiple of 4 (NUMD = length/4 - 1). */
  length: number;
  /** Extended Data Structure (EDS, CDW11 bit 0): 128-bit host identifiers and 64-byte entries. */
  extended?: boolean;
}

/** Reservation Report (NVM 0Eh): NUMD in CDW10, EDS in CDW11 bit 0. Returns `length` bytes. */
export function reservationReport(o: ReservationReportOptions): NvmeCommand {
  optsArg('reservationReport', o);
  const nsid = nsidArg(o.nsid);
  const length = checkInt('length', o.length, 4, 0xfffffffc);
  if (length % 4 !== 0) throw new InvalidArgumentError(`length must be a multiple of 4 bytes, got ${length}`);
  const eds = boolArg('extended', o.extended);
  return ioCmd(eds ? 'Reservation Report (extended)' : 'Reservation Report', NvmOpcode.ReservationReport, nsid, length / 4 - 1, eds ? 1 : 0, { readLength: length });
}

/** Size of a Reservation Status data structure with `regctl` entries. */
export function reservationStatusSize(regctl: number, extended: boolean): number {
  return extended
    ? RESERVATION_STATUS_EXT_HEADER_SIZE + regctl * REGISTERED_CONTROLLER_EXT_SIZE
    : RESERVATION_STATUS_HEADER_SIZE + regctl * REGISTERED_CONTROLLER_SIZE;
}

// ---------------------------------------------------------------------------------------------
// Reservation Notification Mask feature (FID 82h, per namespace)

/** Which reservation notifications are masked (true = not reported). CDW11 bits 1, 2, 3. */
export interface ReservationNotificationMask {
  /** REGPRE (bit 1): mask Registration Preempted notifications. */
  registrationPreempted: boolean;
  /** RESREL (bit 2): mask Reservation Released notifications. */
  reservationReleased: boolean;
  /** RESPRE (bit 3): mask Reservation Preempted notifications. */
  reservationPreempted: boolean;
}

/** CDW11 / DW0 value of a Reservation Notification Mask. */
export function encodeReservationNotificationMask(m: Partial<ReservationNotificationMask>): number {
  optsArg('encodeReservationNotificationMask', m);
  return (boolArg('registrationPreempted', m.registrationPreempted) ? 1 << 1 : 0)
    | (boolArg('reservationReleased', m.reservationReleased) ? 1 << 2 : 0)
    | (boolArg('reservationPreempted', m.reservationPreempted) ? 1 << 3 : 0);
}

/** Decode CDW11 of Set Features / DW0 of Get Features for the Reservation Notification Mask. */
export function parseReservationNotificationMask(v: number): ReservationNotificationMask {
  return { registrationPreempted: (v & 2) !== 0, reservationReleased: (v & 4) !== 0, reservationPreempted: (v & 8) !== 0 };
}

/**
 * Set Features - Reservation Notification Mask (FID 82h) for namespace `nsid` (FFFFFFFFh: every
 * namespace). Leaving every field false enables all three notifications.
 */
export function setReservationNotificationMask(nsid: number, mask: Partial<ReservationNotificationMask> = {}): NvmeCommand {
  const n = checkInt('nsid', nsid, 1, 0xffffffff);
  const cdw11 = encodeReservationNotificationMask(mask);
  return {
    sqe: encodeSqe({ opcode: AdminOpcode.SetFeatures, nsid: n, cdw10: FeatureId.ReservationNotificationMask, cdw11 }),
    name: 'Set Features (Reservation Notification Mask)',
    kind: 'admin',
  };
}

/** Get Features - Reservation Notification Mask (FID 82h) for namespace `nsid`; decode DW0 with {@link parseReservationNotificationMask}. */
export function getReservationNotificationMask(nsid: number): NvmeCommand {
  const n = checkInt('nsid', nsid, 1, 0xfffffffe);
  return {
    sqe: encodeSqe({ opcode: AdminOpcode.GetFeatures, nsid: n, cdw10: FeatureId.ReservationNotificationMask }),
    name: 'Get Features (Reservation Notification Mask)',
    kind: 'admin',
  };
}

// ---------------------------------------------------------------------------------------------
// Reservation Status data structure

/** One Registered Controller entry. */
export interface RegisteredController {
  /** Controller ID (FFFFh: the registrant is not associated with a controller, e.g. after a disconnect). */
  cntlid: number;
  /** Reservation Status byte (bit 0: holds the reservation). */
  rcsts: number;
  /** RCSTS bit 0: this controller's host holds the reservation. */
  holdsReservation: boolean;
  /** Host Identifier: 8 bytes (standard structure) or 16 bytes (extended), in wire order. */
  hostid: Buffer;
  /** Reservation Key. */
  rkey: bigint;
}

/** Parsed Reservation Status data structure. */
export interface ReservationStatus {
  /** Generation (GEN): counts Register, Acquire preempt and Release clear operations. */
  gen: number;
  /** Reservation Type (RTYPE); 0 when no reservation is held. */
  rtype: number;
  /** RTYPE by name; null when no reservation is held (or RTYPE is not defined by the spec). */
  type: ReservationType | null;
  /** Number of Registered Controllers (REGCTL), as reported (may exceed `registrants.length` if the buffer was short). */
  regctl: number;
  /** Persist Through Power Loss State (PTPLS). */
  ptpls: boolean;
  /** Whether this is the extended data structure (128-bit host identifiers). */
  extended: boolean;
  /** The entries that fit in the buffer. */
  registrants: RegisteredController[];
}

/**
 * Parse a Reservation Status data structure (`extended`: the EDS form). Only entries that fit
 * completely in `buf` are returned; compare `regctl` with `registrants.length` to detect a short read.
 */
export function parseReservationStatus(buf: Uint8Array, extended: boolean): ReservationStatus {
  const header = extended ? RESERVATION_STATUS_EXT_HEADER_SIZE : RESERVATION_STATUS_HEADER_SIZE;
  if (!(buf instanceof Uint8Array) || buf.length < header) {
    throw new ProtocolError(`Reservation Status data structure is too short: ${buf?.length ?? 0} bytes, at least ${header} required`, 0, 0);
  }
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const rtype = b[4]!;
  const regctl = b.readUInt16LE(5);
  const entrySize = extended ? REGISTERED_CONTROLLER_EXT_SIZE : REGISTERED_CONTROLLER_SIZE;
  const fit = Math.min(regctl, Math.floor((b.length - header) / entrySize));
  const registrants: RegisteredController[] = [];
  for (let i = 0; i < fit; i++) {
    const off = header + i * entrySize;
    const rcsts = b[off + 2]!;
    registrants.push({
      cntlid: b.readUInt16LE(off),
      rcsts,
      holdsReservation: (rcsts & 1) !== 0,
      hostid: Buffer.from(extended ? b.subarray(off + 16, off + 32) : b.subarray(off + 8, off + 16)),
      rkey: b.readBigUInt64LE(extended ? off + 8 : off + 16),
    });
  }
  return { gen: b.readUInt32LE(0), rtype, type: reservationTypeName(rtype), regctl, ptpls: (b[9]! & 1) !== 0, extended, registrants };
}

/** Input of {@link encodeReservationStatus}. */
export interface ReservationStatusInput {
  gen: number;
  /** RTYPE value or name; 0 / null when no reservation is held. */
  rtype: number | ReservationType | null;
  ptpls?: boolean;
  /** REGCTL; default the number of registrants. */
  regctl?: number;
  registrants: ReadonlyArray<{ cntlid: number; holdsReservation?: boolean; rcsts?: number; hostid: Uint8Array; rkey: bigint }>;
}

/**
 * Encode a Reservation Status data structure (for the embedded target). Host identifiers must be
 * 8 bytes for the standard structure and 16 bytes for the extended one. The result holds every
 * entry; a target truncates it to the length the host asked for.
 */
export function encodeReservationStatus(s: ReservationStatusInput, extended: boolean): Buffer {
  optsArg('encodeReservationStatus', s);
  if (!Array.isArray(s.registrants)) throw new InvalidArgumentError('registrants must be an array');
  const regctl = checkInt('regctl', s.regctl ?? s.registrants.length, 0, 0xffff);
  const header = extended ? RESERVATION_STATUS_EXT_HEADER_SIZE : RESERVATION_STATUS_HEADER_SIZE;
  const entrySize = extended ? REGISTERED_CONTROLLER_EXT_SIZE : REGISTERED_CONTROLLER_SIZE;
  const buf = Buffer.alloc(header + s.registrants.length * entrySize);
  buf.writeUInt32LE(checkInt('gen', s.gen, 0, 0xffffffff), 0);
  buf[4] = s.rtype === null || s.rtype === 0 ? 0 : reservationTypeValue(s.rtype, 'rtype');
  buf.writeUInt16LE(regctl, 5);
  buf[9] = boolArg('ptpls', s.ptpls) ? 1 : 0;
  s.registrants.forEach((r, i) => {
    const off = header + i * entrySize;
    buf.writeUInt16LE(checkInt(`registrants[${i}].cntlid`, r.cntlid, 0, 0xffff), off);
    const rcsts = r.rcsts === undefined ? (boolArg(`registrants[${i}].holdsReservation`, r.holdsReservation) ? 1 : 0) : checkInt(`registrants[${i}].rcsts`, r.rcsts, 0, 0xff);
    buf[off + 2] = rcsts;
    const idLen = extended ? 16 : 8;
    if (!(r.hostid instanceof Uint8Array) || r.hostid.length !== idLen) {
      throw new InvalidArgumentError(`registrants[${i}].hostid must be ${idLen} bytes for the ${extended ? 'extended' : 'standard'} data structure`);
    }
    const key = checkReservationKey(`registrants[${i}].rkey`, r.rkey);
    if (extended) {
      buf.writeBigUInt64LE(key, off + 8);
      buf.set(r.hostid, off + 16);
    } else {
      buf.set(r.hostid, off + 8);
      buf.writeBigUInt64LE(key, off + 16);
    }
  });
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Decoders of the commands (for the embedded target)

/** Fields of a Reservation Register command. */
export interface DecodedReservationRegister {
  /** RREGA value (0 register, 1 unregister, 2 replace; others reserved). */
  rrega: number;
  action: ReservationRegisterActionName | undefined;
  iekey: boolean;
  /** CPTPL value (0 no change, 2 clear, 3 set; 1 reserved). */
  cptpl: number;
  crkey: bigint;
  nrkey: bigint;
}

/** Fields of a Reservation Acquire command. */
export interface DecodedReservationAcquire {
  /** RACQA value (0 acquire, 1 preempt, 2 preempt and abort; others reserved). */
  racqa: number;
  action: ReservationAcquireActionName | undefined;
  iekey: boolean;
  rtype: number;
  crkey: bigint;
  prkey: bigint;
}

/** Fields of a Reservation Release command. */
export interface DecodedReservationRelease {
  /** RRELA value (0 release, 1 clear; others reserved). */
  rrela: number;
  action: ReservationReleaseActionName | undefined;
  iekey: boolean;
  rtype: number;
  crkey: bigint;
}

function nameOf<T extends string>(table: Record<T, number>, v: number): T | undefined {
  return (Object.keys(table) as T[]).find((k) => table[k] === v);
}

function needData(data: Uint8Array | null | undefined, n: number, what: string): Buffer {
  if (!(data instanceof Uint8Array) || data.length < n) {
    throw new InvalidArgumentError(`${what} data must be at least ${n} bytes, got ${data instanceof Uint8Array ? data.length : 0}`);
  }
  return Buffer.from(data.buffer, data.byteOffset, data.length);
}

/** Decode CDW10 and the 16-byte data of Reservation Register. Throws InvalidArgumentError when the data is short. */
export function decodeReservationRegister(cdw10: number, data: Uint8Array | null | undefined): DecodedReservationRegister {
  const d = needData(data, 16, 'Reservation Register');
  const rrega = cdw10 & 7;
  return { rrega, action: nameOf(ReservationRegisterAction, rrega), iekey: (cdw10 & IEKEY) !== 0, cptpl: cdw10 >>> 30, crkey: d.readBigUInt64LE(0), nrkey: d.readBigUInt64LE(8) };
}

/** Decode CDW10 and the 16-byte data of Reservation Acquire. */
export function decodeReservationAcquire(cdw10: number, data: Uint8Array | null | undefined): DecodedReservationAcquire {
  const d = needData(data, 16, 'Reservation Acquire');
  const racqa = cdw10 & 7;
  return { racqa, action: nameOf(ReservationAcquireAction, racqa), iekey: (cdw10 & IEKEY) !== 0, rtype: (cdw10 >>> 8) & 0xff, crkey: d.readBigUInt64LE(0), prkey: d.readBigUInt64LE(8) };
}

/** Decode CDW10 and the 8-byte data of Reservation Release. */
export function decodeReservationRelease(cdw10: number, data: Uint8Array | null | undefined): DecodedReservationRelease {
  const d = needData(data, 8, 'Reservation Release');
  const rrela = cdw10 & 7;
  return { rrela, action: nameOf(ReservationReleaseAction, rrela), iekey: (cdw10 & IEKEY) !== 0, rtype: (cdw10 >>> 8) & 0xff, crkey: d.readBigUInt64LE(0) };
}

/** Decode CDW10/CDW11 of Reservation Report: the byte length asked for and EDS. */
export function decodeReservationReport(cdw10: number, cdw11: number): { length: number; extended: boolean } {
  return { length: ((cdw10 >>> 0) + 1) * 4, extended: (cdw11 & 1) !== 0 };
}
