/**
 * Command builders. Each builder checks its arguments (throwing InvalidArgumentError that names the
 * argument, before anything is sent) and returns an NvmeCommand: the 64-byte SQE plus the data to
 * send or the length of the data to receive. The transport fills in the CID (bytes 2-3) and DPTR
 * (bytes 24-39, the SGL descriptor).
 *
 * Field positions: Base spec 2.x (Identify, Get Log Page, Get/Set Features, Keep Alive, Asynchronous
 * Event Request, Abort, Fabrics commands) and the NVM Command Set spec (Read, Write, Compare,
 * Verify, Write Zeroes, Flush, Dataset Management). SLBA is CDW10 (low) / CDW11 (high); NLB is
 * 0's based in CDW12 bits 15:0; FUA is CDW12 bit 30.
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import {
  AdminOpcode,
  Cns,
  CNTLID_DYNAMIC,
  CONNECT_DATA_SIZE,
  ConnectAuthReq,
  FABRICS_OPCODE,
  FabricsType,
  FeatureId,
  IDENTIFY_DATA_SIZE,
  NvmOpcode,
  logPageName,
} from './constants.js';
import type { Cqe } from './cqe.js';
import { NQN_FIELD_SIZE, parseUuid, readNqnField, validateNqn, writeNqnField } from './nqn.js';
import { checkDword, checkInt, checkU64, describeValue, encodeNvmSqe, encodeSqe, SqeOffset, type SqeFields } from './sqe.js';

/** The unit of work handed to the transport. */
export interface NvmeCommand {
  /** 64-byte SQE. Bytes 2-3 (CID) and 24-39 (DPTR, an SGL descriptor) are filled in by the transport. */
  sqe: Buffer;
  /** Host-to-controller data (write-type commands), sent in-capsule or by R2T/H2CData. */
  data?: Uint8Array;
  /** Controller-to-host data length expected (read-type commands). */
  readLength?: number;
  /**
   * `readLength` is an allocation length (Authentication Receive's AL): the controller may send fewer bytes and
   * complete successfully. The completion's `data` then holds exactly the `received` bytes. Otherwise a successful
   * completion short of `readLength` is a protocol error.
   */
  allocationLength?: boolean;
  /** Name for errors and tracing, e.g. 'Read', 'Identify Controller', 'Connect'. */
  name: string;
  /**
   * Which command set the opcode belongs to: 'admin' (admin queue only), 'io' (I/O queues only) or
   * 'fabrics' (opcode 7Fh; Connect goes on any queue, Property Get/Set on the admin queue,
   * Disconnect on I/O queues). Used to decode command specific status codes.
   */
  kind?: 'admin' | 'io' | 'fabrics';
}

// ---------------------------------------------------------------------------------------------
// Argument helpers

const U32_MAX = 0xffffffff;
const TWO_64 = 1n << 64n;

function opts<T>(fn: string, o: T): T {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError(`${fn}: an options object is required`);
  return o;
}

function bool(name: string, v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, got ${describeValue(v)}`);
  return v;
}

/** A logical block address: a non-negative safe integer or a bigint below 2^64. */
export function toLba(name: string, v: unknown): bigint {
  return BigInt(lbaArg(name, v));
}

/** An LBA argument as given: a non-negative safe integer stays a number (no BigInt on the I/O path), else a bigint below 2^64. */
function lbaArg(name: string, v: unknown): bigint | number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  return toLbaBig(name, v);
}

function toLbaBig(name: string, v: unknown): bigint {
  if (typeof v === 'number' && !(Number.isSafeInteger(v) && v >= 0)) {
    throw new InvalidArgumentError(`${name} must be a non-negative safe integer or a bigint, got ${describeValue(v)}`);
  }
  return checkU64(name, v);
}

/** I/O namespace ID: 1..FFFFFFFEh (or FFFFFFFFh when `allowBroadcast`). */
function ioNsid(v: unknown, allowBroadcast = false): number {
  return checkInt('nsid', v, 1, allowBroadcast ? U32_MAX : U32_MAX - 1);
}

function nlbArg(v: unknown): number {
  return checkInt('nlb', v, 1, 65536);
}

function blockSizeArg(v: unknown): number {
  return checkInt('blockSize', v, 1, 0x7fffffff);
}

function dataArg(name: string, v: unknown): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new InvalidArgumentError(`${name} must be a Buffer or Uint8Array, got ${describeValue(v)}`);
  return v;
}

function checkRangeEnd(slba: bigint | number, nlb: number | bigint): void {
  // A safe-integer LBA plus any block count stays far below 2^64.
  if (typeof slba === 'bigint' && slba + BigInt(nlb) > TWO_64) {
    throw new InvalidArgumentError(`slba + nlb exceeds 2^64 (slba ${slba}, nlb ${nlb})`);
  }
}

function cmd(name: string, kind: NvmeCommand['kind'], fields: SqeFields | Buffer, extra: { data?: Uint8Array; readLength?: number } = {}): NvmeCommand {
  const c: NvmeCommand = { sqe: Buffer.isBuffer(fields) ? fields : encodeSqe(fields), name };
  if (kind !== undefined) c.kind = kind;
  if (extra.data !== undefined) c.data = extra.data;
  if (extra.readLength !== undefined) c.readLength = extra.readLength;
  return c;
}

/** Fabrics SQE: opcode 7Fh, FCTYPE at byte 4 (the NSID position, whose other bytes are reserved). */
function fabricsSqe(fctype: number): Buffer {
  const sqe = encodeSqe({ opcode: FABRICS_OPCODE });
  sqe[SqeOffset.FCTYPE] = fctype;
  return sqe;
}

// ---------------------------------------------------------------------------------------------
// Fabrics commands

/** Options for {@link connect}. */
export interface ConnectOptions {
  /** Queue ID: 0 for the admin queue, 1.. for I/O queues. */
  qid: number;
  /** Submission queue size as a number of entries (1's based, 2..65536); encoded 0's based in SQSIZE. */
  sqsize: number;
  /** Keep Alive Timeout in milliseconds (admin queue only; I/O queue Connects always send 0). */
  kato?: number;
  /** Host identifier: 16 bytes, or a UUID string. */
  hostid: Uint8Array | string;
  /** Controller ID: FFFFh (dynamic, the default) for the admin queue; the CNTLID the admin Connect returned for I/O queues. */
  cntlid?: number;
  /** Subsystem NQN. */
  subnqn: string;
  /** Host NQN. */
  hostnqn: string;
  /** Connect attributes (CATTR, byte 46): bits 1:0 priority class, bit 2 disable SQ flow control. */
  cattr?: number;
  /** Record format (RECFMT); 0 is the only format defined. */
  recfmt?: number;
  /** Require the spec's NQN forms (default false: accept any name a target may use, up to 223 bytes). */
  strictNqn?: boolean;
}

function hostidArg(v: unknown): Buffer {
  if (typeof v === 'string') {
    try {
      return parseUuid(v);
    } catch {
      throw new InvalidArgumentError(`hostid must be 16 bytes or a UUID string, got ${describeValue(v)}`);
    }
  }
  if (v instanceof Uint8Array && v.length === 16) return Buffer.from(v);
  throw new InvalidArgumentError(`hostid must be 16 bytes or a UUID string, got ${v instanceof Uint8Array ? `${v.length} bytes` : describeValue(v)}`);
}

/**
 * Connect (Fabrics, FCTYPE 01h). SQE: RECFMT @40, QID @42, SQSIZE @44 (0's based), CATTR @46,
 * KATO @48. Data (1024 bytes, in-capsule): HOSTID @0, CNTLID @16, SUBNQN @256, HOSTNQN @512.
 * On success DW0 of the completion holds the CNTLID (see {@link parseConnectResult}).
 */
export function connect(o: ConnectOptions): NvmeCommand {
  opts('connect', o);
  const qid = checkInt('qid', o.qid, 0, 0xfffe);
  const sqsize = checkInt('sqsize', o.sqsize, 2, 65536);
  const kato = checkInt('kato', o.kato ?? 0, 0, U32_MAX);
  const hostid = hostidArg(o.hostid);
  let cntlid: number;
  if (qid === 0) {
    cntlid = checkInt('cntlid', o.cntlid ?? CNTLID_DYNAMIC, 0, 0xffff);
  } else {
    if (o.cntlid === undefined) throw new InvalidArgumentError('cntlid is required for an I/O queue Connect (the CNTLID returned by the admin Connect)');
    cntlid = checkInt('cntlid', o.cntlid, 0, 0xffef);
  }
  const strict = bool('strictNqn', o.strictNqn);
  validateNqn(o.subnqn, { name: 'subnqn', strict });
  validateNqn(o.hostnqn, { name: 'hostnqn', strict });
  const cattr = checkInt('cattr', o.cattr ?? 0, 0, 0xff);
  const recfmt = checkInt('recfmt', o.recfmt ?? 0, 0, 0xffff);

  const sqe = fabricsSqe(FabricsType.Connect);
  sqe.writeUInt16LE(recfmt, 40);
  sqe.writeUInt16LE(qid, 42);
  sqe.writeUInt16LE(sqsize - 1, 44);
  sqe[46] = cattr;
  sqe.writeUInt32LE(qid === 0 ? kato : 0, 48);

  const data = Buffer.alloc(CONNECT_DATA_SIZE);
  hostid.copy(data, 0);
  data.writeUInt16LE(cntlid, 16);
  writeNqnField(data, 256, o.subnqn);
  writeNqnField(data, 512, o.hostnqn);
  return { sqe, data, name: qid === 0 ? 'Connect (admin queue)' : `Connect (I/O queue ${qid})`, kind: 'fabrics' };
}

/** Fields of Connect data (for the embedded target and tests). */
export interface ConnectData {
  hostid: Buffer;
  cntlid: number;
  subnqn: string;
  hostnqn: string;
}

/** Parse the 1024-byte Connect data. */
export function parseConnectData(buf: Buffer): ConnectData {
  if (!(buf instanceof Uint8Array) || buf.length < CONNECT_DATA_SIZE) {
    throw new InvalidArgumentError(`Connect data must be ${CONNECT_DATA_SIZE} bytes`);
  }
  return {
    hostid: Buffer.from(buf.subarray(0, 16)),
    cntlid: buf.readUInt16LE(16),
    subnqn: readNqnField(buf, 256, NQN_FIELD_SIZE),
    hostnqn: readNqnField(buf, 512, NQN_FIELD_SIZE),
  };
}

/** Decoded DW0 of a successful Connect completion. */
export interface ConnectResult {
  /** Controller ID (bits 15:0). */
  cntlid: number;
  /** AUTHREQ.ATR (bit 17): an authentication transaction is required before the queue is usable. */
  authRequired: boolean;
  /** AUTHREQ.ASCR (bit 18): authentication and a secure channel are required. */
  secureChannelRequired: boolean;
}

/** Decode DW0 of a successful Connect completion. */
export function parseConnectResult(dw0: number): ConnectResult {
  return {
    cntlid: dw0 & 0xffff,
    authRequired: (dw0 & ConnectAuthReq.ATR) !== 0,
    secureChannelRequired: (dw0 & ConnectAuthReq.ASCR) !== 0,
  };
}

function propertySizeArg(size: unknown): 4 | 8 {
  if (size !== 4 && size !== 8) throw new InvalidArgumentError(`size must be 4 or 8, got ${describeValue(size)}`);
  return size;
}

function propertyOffsetArg(offset: unknown, size: number): number {
  const o = checkInt('offset', offset, 0, U32_MAX);
  if (o % size !== 0) throw new InvalidArgumentError(`offset 0x${o.toString(16)} is not aligned to the property size ${size}`);
  return o;
}

/**
 * Property Get (Fabrics, FCTYPE 04h): ATTRIB @40 (0 = 4 bytes, 1 = 8 bytes), OFFSET @44.
 * The value comes back in DW0 (and DW1 for 8 bytes); see {@link propertyValue}.
 */
export function propertyGet(o: { offset: number; size: 4 | 8 }): NvmeCommand {
  opts('propertyGet', o);
  const size = propertySizeArg(o.size);
  const offset = propertyOffsetArg(o.offset, size);
  const sqe = fabricsSqe(FabricsType.PropertyGet);
  sqe[40] = size === 8 ? 1 : 0;
  sqe.writeUInt32LE(offset, 44);
  return { sqe, name: `Property Get (offset 0x${offset.toString(16)})`, kind: 'fabrics' };
}

/** Property Set (Fabrics, FCTYPE 00h): ATTRIB @40, OFFSET @44, VALUE @48 (8 bytes). */
export function propertySet(o: { offset: number; size: 4 | 8; value: bigint | number }): NvmeCommand {
  opts('propertySet', o);
  const size = propertySizeArg(o.size);
  const offset = propertyOffsetArg(o.offset, size);
  let value: bigint;
  if (size === 4) {
    if (typeof o.value === 'bigint') {
      if (o.value < 0n || o.value > 0xffffffffn) throw new InvalidArgumentError(`value must fit in 4 bytes (0..4294967295), got ${o.value}n`);
      value = o.value;
    } else {
      value = BigInt(checkInt('value', o.value, 0, U32_MAX));
    }
  } else {
    value = checkU64('value', o.value);
  }
  const sqe = fabricsSqe(FabricsType.PropertySet);
  sqe[40] = size === 8 ? 1 : 0;
  sqe.writeUInt32LE(offset, 44);
  sqe.writeBigUInt64LE(value, 48);
  return { sqe, name: `Property Set (offset 0x${offset.toString(16)})`, kind: 'fabrics' };
}

/** The value returned by Property Get: DW0 | DW1 << 32. */
export function propertyValue(cqe: Pick<Cqe, 'dw0' | 'dw1'>, size: 4 | 8 = 8): bigint {
  const lo = BigInt(cqe.dw0 >>> 0);
  return size === 4 ? lo : lo | (BigInt(cqe.dw1 >>> 0) << 32n);
}

/** Disconnect (Fabrics, FCTYPE 08h), sent on the I/O queue to be torn down: RECFMT @40. */
export function disconnect(o: { recfmt?: number } = {}): NvmeCommand {
  opts('disconnect', o);
  const recfmt = checkInt('recfmt', o.recfmt ?? 0, 0, 0xffff);
  const sqe = fabricsSqe(FabricsType.Disconnect);
  sqe.writeUInt16LE(recfmt, 40);
  return { sqe, name: 'Disconnect', kind: 'fabrics' };
}

// ---------------------------------------------------------------------------------------------
// Admin commands

/** Options for {@link identify}. */
export interface IdentifyOptions {
  /** Controller or Namespace Structure (CDW10 bits 7:0). */
  cns: number;
  nsid?: number;
  /** Controller Identifier (CDW10 bits 31:16). */
  cntid?: number;
  /** Command Set Identifier (CDW11 bits 31:24). */
  csi?: number;
  /** CNS Specific Identifier (CDW11 bits 15:0). */
  cnssid?: number;
  /** UUID Index (CDW14 bits 6:0). */
  uuidIndex?: number;
}

const identifyNames = new Map<number, string>([
  [Cns.Namespace, 'Identify Namespace'],
  [Cns.Controller, 'Identify Controller'],
  [Cns.ActiveNamespaceList, 'Identify Active Namespace List'],
  [Cns.NamespaceIdDescriptors, 'Identify Namespace ID Descriptors'],
  [Cns.CsNamespace, 'Identify I/O Command Set Specific Namespace'],
  [Cns.CsController, 'Identify I/O Command Set Specific Controller'],
  [Cns.CsIndependentNamespace, 'Identify I/O Command Set Independent Namespace'],
  [Cns.ControllerList, 'Identify Controller List'],
  [Cns.IoCommandSet, 'Identify I/O Command Set'],
]);

/** Identify (admin 06h). Returns 4096 bytes. */
export function identify(o: IdentifyOptions): NvmeCommand {
  opts('identify', o);
  const cns = checkInt('cns', o.cns, 0, 0xff);
  const nsid = checkInt('nsid', o.nsid ?? 0, 0, U32_MAX);
  const cntid = checkInt('cntid', o.cntid ?? 0, 0, 0xffff);
  const csi = checkInt('csi', o.csi ?? 0, 0, 0xff);
  const cnssid = checkInt('cnssid', o.cnssid ?? 0, 0, 0xffff);
  const uuidIndex = checkInt('uuidIndex', o.uuidIndex ?? 0, 0, 0x7f);
  const name = identifyNames.get(cns) ?? `Identify (CNS 0x${cns.toString(16).padStart(2, '0')})`;
  return cmd(
    name,
    'admin',
    { opcode: AdminOpcode.Identify, nsid, cdw10: cns | (cntid << 16), cdw11: cnssid | (csi << 24), cdw14: uuidIndex },
    { readLength: IDENTIFY_DATA_SIZE },
  );
}

/** Identify Controller (CNS 01h). */
export function identifyController(): NvmeCommand {
  return identify({ cns: Cns.Controller });
}

/** Identify Namespace (CNS 00h) for `nsid` (FFFFFFFFh: capabilities common to all namespaces). */
export function identifyNamespace(nsid: number): NvmeCommand {
  return identify({ cns: Cns.Namespace, nsid: checkInt('nsid', nsid, 1, U32_MAX) });
}

/** Active Namespace ID list (CNS 02h): up to 1024 active NSIDs greater than `startNsid`. */
export function activeNamespaceList(startNsid = 0): NvmeCommand {
  return identify({ cns: Cns.ActiveNamespaceList, nsid: checkInt('startNsid', startNsid, 0, U32_MAX - 2) });
}

/** Namespace Identification Descriptor list (CNS 03h) for `nsid`. */
export function namespaceIdDescriptors(nsid: number): NvmeCommand {
  return identify({ cns: Cns.NamespaceIdDescriptors, nsid: ioNsid(nsid) });
}

/** Options for {@link getLogPage}. */
export interface GetLogPageOptions {
  /** Log Page Identifier (CDW10 bits 7:0). */
  lid: number;
  /** Bytes to read: a positive multiple of 4 (NUMD = length/4 - 1, split into NUMDL/NUMDU). */
  length: number;
  nsid?: number;
  /** Log Specific Parameter (CDW10 bits 14:8). */
  lsp?: number;
  /** Log Specific Identifier (CDW11 bits 31:16). */
  lsi?: number;
  /** Retain Asynchronous Event (CDW10 bit 15): true keeps the event pending. */
  rae?: boolean;
  /** Log Page Offset (CDW12/CDW13): bytes, a multiple of 4; an index when `ot` is set. */
  offset?: bigint | number;
  /** Command Set Identifier (CDW14 bits 31:24). */
  csi?: number;
  /** Offset Type (CDW14 bit 23): the offset is an index into a list of entries. */
  ot?: boolean;
  /** UUID Index (CDW14 bits 6:0). */
  uuidIndex?: number;
}


/** Get Log Page (admin 02h). */
export function getLogPage(o: GetLogPageOptions): NvmeCommand {
  opts('getLogPage', o);
  const lid = checkInt('lid', o.lid, 0, 0xff);
  const length = checkInt('length', o.length, 4, 0xfffffffc);
  if (length % 4 !== 0) throw new InvalidArgumentError(`length must be a multiple of 4 bytes, got ${length}`);
  const nsid = checkInt('nsid', o.nsid ?? 0, 0, U32_MAX);
  const lsp = checkInt('lsp', o.lsp ?? 0, 0, 0x7f);
  const lsi = checkInt('lsi', o.lsi ?? 0, 0, 0xffff);
  const rae = bool('rae', o.rae);
  const ot = bool('ot', o.ot);
  const offset = checkU64('offset', o.offset ?? 0n);
  if (!ot && offset % 4n !== 0n) throw new InvalidArgumentError(`offset must be a multiple of 4 bytes, got ${offset}`);
  const csi = checkInt('csi', o.csi ?? 0, 0, 0xff);
  const uuidIndex = checkInt('uuidIndex', o.uuidIndex ?? 0, 0, 0x7f);
  const numd = length / 4 - 1;
  const name = `Get Log Page (${logPageName(lid)})`;
  return cmd(
    name,
    'admin',
    {
      opcode: AdminOpcode.GetLogPage,
      nsid,
      cdw10: lid | (lsp << 8) | ((rae ? 1 : 0) << 15) | ((numd & 0xffff) << 16),
      cdw11: Math.floor(numd / 0x10000) | (lsi << 16),
      cdw12: Number(offset & 0xffffffffn),
      cdw13: Number(offset >> 32n),
      cdw14: uuidIndex | ((ot ? 1 : 0) << 23) | (csi << 24),
    },
    { readLength: length },
  );
}

/** Options for {@link getFeatures}. */
export interface GetFeaturesOptions {
  /** Feature Identifier (CDW10 bits 7:0). */
  fid: number;
  /** Select (CDW10 bits 10:8): 0 current, 1 default, 2 saved, 3 supported capabilities. */
  sel?: number;
  nsid?: number;
  /** Feature specific CDW11. */
  cdw11?: number;
  /** UUID Index (CDW14 bits 6:0). */
  uuidIndex?: number;
  /** For features that return a data structure (e.g. Host Identifier, Timestamp): its size in bytes. */
  readLength?: number;
}

/** Get Features (admin 0Ah). The value comes back in DW0 (and the data buffer for some features). */
export function getFeatures(o: GetFeaturesOptions): NvmeCommand {
  opts('getFeatures', o);
  const fid = checkInt('fid', o.fid, 0, 0xff);
  const sel = checkInt('sel', o.sel ?? 0, 0, 7);
  const nsid = checkInt('nsid', o.nsid ?? 0, 0, U32_MAX);
  const cdw11 = checkDword('cdw11', o.cdw11 ?? 0);
  const uuidIndex = checkInt('uuidIndex', o.uuidIndex ?? 0, 0, 0x7f);
  const readLength = o.readLength === undefined ? undefined : checkInt('readLength', o.readLength, 1, U32_MAX);
  return cmd(
    `Get Features (FID 0x${fid.toString(16).padStart(2, '0')})`,
    'admin',
    { opcode: AdminOpcode.GetFeatures, nsid, cdw10: fid | (sel << 8), cdw11, cdw14: uuidIndex },
    readLength === undefined ? {} : { readLength },
  );
}

/** Options for {@link setFeatures}. */
export interface SetFeaturesOptions {
  /** Feature Identifier (CDW10 bits 7:0). */
  fid: number;
  cdw11?: number;
  cdw12?: number;
  cdw13?: number;
  /** CDW14 (bits 6:0 hold the UUID index). */
  cdw14?: number;
  cdw15?: number;
  /** Save (CDW10 bit 31): make the value persist across power cycles and resets. */
  save?: boolean;
  nsid?: number;
  /** Data structure for features that take one (e.g. Host Identifier, Timestamp). */
  data?: Uint8Array;
}

/** Set Features (admin 09h). */
export function setFeatures(o: SetFeaturesOptions): NvmeCommand {
  opts('setFeatures', o);
  const fid = checkInt('fid', o.fid, 0, 0xff);
  const save = bool('save', o.save);
  const nsid = checkInt('nsid', o.nsid ?? 0, 0, U32_MAX);
  const data = o.data === undefined ? undefined : dataArg('data', o.data);
  if (data !== undefined && data.length === 0) throw new InvalidArgumentError('data must not be empty');
  return cmd(
    fid === FeatureId.NumberOfQueues ? 'Set Features (Number of Queues)' : `Set Features (FID 0x${fid.toString(16).padStart(2, '0')})`,
    'admin',
    {
      opcode: AdminOpcode.SetFeatures,
      nsid,
      cdw10: fid | ((save ? 1 : 0) << 31),
      cdw11: checkDword('cdw11', o.cdw11 ?? 0),
      cdw12: checkDword('cdw12', o.cdw12 ?? 0),
      cdw13: checkDword('cdw13', o.cdw13 ?? 0),
      cdw14: checkDword('cdw14', o.cdw14 ?? 0),
      cdw15: checkDword('cdw15', o.cdw15 ?? 0),
    },
    data === undefined ? {} : { data },
  );
}

/**
 * Set Features - Number of Queues (FID 07h). `nsqr`/`ncqr` are counts of I/O submission/completion
 * queues (1's based, 1..65535), encoded 0's based in CDW11 bits 15:0 / 31:16. The completion's DW0
 * holds what was allocated; see {@link parseNumberOfQueues}.
 */
export function setNumberOfQueues(nsqr: number, ncqr: number): NvmeCommand {
  const sq = checkInt('nsqr', nsqr, 1, 65535);
  const cq = checkInt('ncqr', ncqr, 1, 65535);
  return setFeatures({ fid: FeatureId.NumberOfQueues, cdw11: ((sq - 1) | ((cq - 1) << 16)) >>> 0 });
}

/** Decode DW0 of Number of Queues: allocated I/O submission/completion queue counts (1's based). */
export function parseNumberOfQueues(dw0: number): { nsqa: number; ncqa: number } {
  return { nsqa: (dw0 & 0xffff) + 1, ncqa: (dw0 >>> 16) + 1 };
}

/** Keep Alive (admin 18h). */
export function keepAlive(): NvmeCommand {
  return cmd('Keep Alive', 'admin', { opcode: AdminOpcode.KeepAlive });
}

/** Asynchronous Event Request (admin 0Ch). Completes only when an event occurs. */
export function asyncEventRequest(): NvmeCommand {
  return cmd('Asynchronous Event Request', 'admin', { opcode: AdminOpcode.AsyncEventRequest });
}

/** Abort (admin 08h): SQID in CDW10 bits 15:0, CID in bits 31:16. */
export function abort(o: { sqid: number; cid: number }): NvmeCommand {
  opts('abort', o);
  const sqid = checkInt('sqid', o.sqid, 0, 0xffff);
  const cid = checkInt('cid', o.cid, 0, 0xffff);
  return cmd('Abort', 'admin', { opcode: AdminOpcode.Abort, cdw10: (sqid | (cid << 16)) >>> 0 });
}

// ---------------------------------------------------------------------------------------------
// NVM command set I/O commands

/** The SQE of a read/write-family command (SLBA in CDW10-11, NLB 0's based and flags in CDW12), from checked values. */
function rwSqe(opcode: number, nsid: number, slba: bigint | number, nlb: number, cdw12Flags: number): Buffer {
  const lo = typeof slba === 'number' ? slba >>> 0 : Number(slba & 0xffffffffn);
  const hi = typeof slba === 'number' ? Math.floor(slba / 0x100000000) : Number(slba >> 32n);
  return encodeNvmSqe(opcode, nsid, lo, hi, ((nlb - 1) | cdw12Flags) >>> 0);
}

const FUA = 1 << 30;
const DEAC = 1 << 25;

/** Options for {@link read}. */
export interface ReadOptions {
  nsid: number;
  /** Starting LBA. */
  slba: bigint | number;
  /** Number of logical blocks, 1's based (1..65536). */
  nlb: number;
  /** Logical block size in bytes (data + interleaved metadata for extended LBA formats). */
  blockSize: number;
  /** Force Unit Access. */
  fua?: boolean;
}

/** Read (NVM 02h). readLength = nlb * blockSize. */
export function read(o: ReadOptions): NvmeCommand {
  opts('read', o);
  const nsid = ioNsid(o.nsid);
  const slba = lbaArg('slba', o.slba);
  const nlb = nlbArg(o.nlb);
  const blockSize = blockSizeArg(o.blockSize);
  checkRangeEnd(slba, nlb);
  const readLength = nlb * blockSize;
  if (readLength > U32_MAX) throw new InvalidArgumentError(`nlb * blockSize (${readLength}) exceeds 4 GiB - 1`);
  const flags = bool('fua', o.fua) ? FUA : 0;
  return cmd('Read', 'io', rwSqe(NvmOpcode.Read, nsid, slba, nlb, flags), { readLength });
}

/** Options for {@link write}. */
export interface WriteOptions {
  nsid: number;
  slba: bigint | number;
  /** Data to write; its length must be a positive multiple of blockSize (at most 65536 blocks). */
  data: Uint8Array;
  blockSize: number;
  /** Force Unit Access. */
  fua?: boolean;
}

function blocksOf(data: Uint8Array, blockSize: number): number {
  if (data.length === 0 || data.length % blockSize !== 0) {
    throw new InvalidArgumentError(`data length (${data.length}) must be a positive multiple of blockSize (${blockSize})`);
  }
  const nlb = data.length / blockSize;
  if (nlb > 65536) throw new InvalidArgumentError(`data covers ${nlb} blocks; at most 65536 blocks fit one command`);
  return nlb;
}

/** Write (NVM 01h). */
export function write(o: WriteOptions): NvmeCommand {
  opts('write', o);
  const nsid = ioNsid(o.nsid);
  const slba = lbaArg('slba', o.slba);
  const data = dataArg('data', o.data);
  const blockSize = blockSizeArg(o.blockSize);
  const nlb = blocksOf(data, blockSize);
  checkRangeEnd(slba, nlb);
  const flags = bool('fua', o.fua) ? FUA : 0;
  return cmd('Write', 'io', rwSqe(NvmOpcode.Write, nsid, slba, nlb, flags), { data });
}

/** Compare (NVM 05h): compares `data` with the blocks on the media. */
export function compare(o: { nsid: number; slba: bigint | number; data: Uint8Array; blockSize: number; fua?: boolean }): NvmeCommand {
  opts('compare', o);
  const nsid = ioNsid(o.nsid);
  const slba = lbaArg('slba', o.slba);
  const data = dataArg('data', o.data);
  const blockSize = blockSizeArg(o.blockSize);
  const nlb = blocksOf(data, blockSize);
  checkRangeEnd(slba, nlb);
  const flags = bool('fua', o.fua) ? FUA : 0;
  return cmd('Compare', 'io', rwSqe(NvmOpcode.Compare, nsid, slba, nlb, flags), { data });
}

/** Verify (NVM 0Ch): checks that the blocks can be read, without transferring data. */
export function verify(o: { nsid: number; slba: bigint | number; nlb: number }): NvmeCommand {
  opts('verify', o);
  const nsid = ioNsid(o.nsid);
  const slba = lbaArg('slba', o.slba);
  const nlb = nlbArg(o.nlb);
  checkRangeEnd(slba, nlb);
  return cmd('Verify', 'io', rwSqe(NvmOpcode.Verify, nsid, slba, nlb, 0));
}

/** Flush (NVM 00h) for `nsid` (FFFFFFFFh: all namespaces, if the controller supports it). */
export function flush(nsid: number): NvmeCommand {
  return cmd('Flush', 'io', { opcode: NvmOpcode.Flush, nsid: ioNsid(nsid, true) });
}

/** Options for {@link writeZeroes}. */
export interface WriteZeroesOptions {
  nsid: number;
  slba: bigint | number;
  /** Number of logical blocks, 1's based (1..65536). */
  nlb: number;
  /** Deallocate (CDW12 bit 25): the controller may deallocate the blocks. */
  deac?: boolean;
  /** Force Unit Access (CDW12 bit 30). */
  fua?: boolean;
}

/** Write Zeroes (NVM 08h). */
export function writeZeroes(o: WriteZeroesOptions): NvmeCommand {
  opts('writeZeroes', o);
  const nsid = ioNsid(o.nsid);
  const slba = lbaArg('slba', o.slba);
  const nlb = nlbArg(o.nlb);
  checkRangeEnd(slba, nlb);
  const flags = (bool('deac', o.deac) ? DEAC : 0) | (bool('fua', o.fua) ? FUA : 0);
  return cmd('Write Zeroes', 'io', rwSqe(NvmOpcode.WriteZeroes, nsid, slba, nlb, flags));
}

/** One Dataset Management range. */
export interface DsmRange {
  slba: bigint | number;
  /** Length in logical blocks (1's based, 1..2^32-1). */
  nlb: number;
  /** Context attributes (bytes 0-3 of the range entry). */
  cattr?: number;
}

/** Options for {@link datasetManagement}. */
export interface DatasetManagementOptions {
  nsid: number;
  /** 1..256 ranges, each encoded as a 16-byte entry: CATTR @0, NLB @4, SLBA @8. */
  ranges: DsmRange[];
  /** Attribute - Deallocate (AD, CDW11 bit 2): trim/unmap the ranges. */
  deallocate?: boolean;
  /** Integral Dataset for Read (IDR, CDW11 bit 0). */
  idr?: boolean;
  /** Integral Dataset for Write (IDW, CDW11 bit 1). */
  idw?: boolean;
}

/** Dataset Management (NVM 09h). CDW10 bits 7:0 = number of ranges - 1. */
export function datasetManagement(o: DatasetManagementOptions): NvmeCommand {
  opts('datasetManagement', o);
  const nsid = ioNsid(o.nsid);
  if (!Array.isArray(o.ranges) || o.ranges.length < 1 || o.ranges.length > 256) {
    throw new InvalidArgumentError(`ranges must be an array of 1..256 ranges, got ${Array.isArray(o.ranges) ? `${o.ranges.length} ranges` : describeValue(o.ranges)}`);
  }
  const data = Buffer.alloc(16 * o.ranges.length);
  o.ranges.forEach((r, i) => {
    if (r === null || typeof r !== 'object') throw new InvalidArgumentError(`ranges[${i}] must be an object`);
    const slba = toLba(`ranges[${i}].slba`, r.slba);
    const nlb = checkInt(`ranges[${i}].nlb`, r.nlb, 1, U32_MAX);
    checkRangeEnd(slba, nlb);
    data.writeUInt32LE(checkDword(`ranges[${i}].cattr`, r.cattr ?? 0), i * 16);
    data.writeUInt32LE(nlb, i * 16 + 4);
    data.writeBigUInt64LE(slba, i * 16 + 8);
  });
  const attrs = (bool('idr', o.idr) ? 1 : 0) | (bool('idw', o.idw) ? 2 : 0) | (bool('deallocate', o.deallocate) ? 4 : 0);
  return cmd('Dataset Management', 'io', { opcode: NvmOpcode.DatasetManagement, nsid, cdw10: o.ranges.length - 1, cdw11: attrs }, { data });
}
