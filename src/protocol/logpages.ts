/**
 * Log pages (NVMe Base Specification 2.x, Get Log Page; NVMe over Fabrics for the Discovery log):
 * Error Information (01h), SMART / Health Information (02h), Changed Namespace List (04h),
 * Asymmetric Namespace Access (0Ch), Discovery (70h) and Reservation Notification (80h).
 * Each has a parser that bounds every count from the wire against the buffer, and an encoder
 * (for the embedded target) writing the same offsets.
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError, ProtocolError } from '../errors.js';
import { anaStateName, type AnaStateName } from './ana.js';
import { decodeFields, encodeFields, structTooShort, type FieldSpec } from './struct.js';

function requireLength(buf: Buffer, need: number, what: string): void {
  if (!Buffer.isBuffer(buf)) throw new InvalidArgumentError(`${what}: expected a Buffer`);
  if (buf.length < need) throw structTooShort(what, need, buf.length);
}

function bit(v: number, n: number): boolean {
  return ((v >>> n) & 1) === 1;
}

function checkInt(v: unknown, max: number, label: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new InvalidArgumentError(`${label} must be an integer in 0..${max}, got ${String(v)}`);
  }
  return v;
}

function toU64(v: bigint | number, label: string): bigint {
  const b = typeof v === 'bigint' ? v : Number.isSafeInteger(v) ? BigInt(v) : -1n;
  if (b < 0n || b > 0xffff_ffff_ffff_ffffn) throw new InvalidArgumentError(`${label} must be an unsigned 64-bit value, got ${String(v)}`);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Error Information log (LID 01h)
// ---------------------------------------------------------------------------------------------

/** Size of one Error Information log entry. */
export const ERROR_LOG_ENTRY_SIZE = 64;

/** The raw fields of one Error Information log entry. */
export interface ErrorLogEntryFields {
  /** Error Count: unique, incrementing; 0 marks an invalid (empty) entry. */ errorCount: bigint;
  /** Submission Queue ID (0xFFFF: not tied to a queue). */ sqid: number;
  /** Command ID (0xFFFF: not tied to a command). */ cid: number;
  /** Status Field as the 16-bit CQE status word: bit 0 phase tag, bits 15:1 status (same layout as Cqe.status). */ status: number;
  /** Parameter Error Location: bits 7:0 byte, bits 10:8 bit (0xFFFF: not applicable). */ parameterErrorLocation: number;
  /** First LBA that experienced the error. */ lba: bigint;
  /** Namespace ID. */ nsid: number;
  /** Vendor Specific Information Available (log page ID, 0 = none). */ vsia: number;
  /** Transport Type. */ trtype: number;
  /** Command Set Indicator. */ csi: number;
  /** Opcode of the failed command. */ opcode: number;
  /** Command Specific Information. */ cs: bigint;
  /** Transport Type Specific Information. */ ttsi: number;
  /** Log Page Version. */ lpver: number;
}

/** A parsed Error Information log entry with the status decoded. */
export interface ErrorLogEntry extends ErrorLogEntryFields {
  /** Status Code Type (status bits 11:9). */ sct: number;
  /** Status Code (status bits 8:1). */ sc: number;
  /** Command Retry Delay (status bits 13:12). */ crd: number;
  /** More (status bit 14). */ more: boolean;
  /** Do Not Retry (status bit 15). */ dnr: boolean;
  /** Byte of the command where the error parameter is, or null when not applicable. */ pelByte: number | null;
  /** Bit within that byte, or null when not applicable. */ pelBit: number | null;
}

const ERROR_LOG_FIELDS: readonly FieldSpec[] = [
  ['errorCount', 0, 'u64'], ['sqid', 8, 'u16'], ['cid', 10, 'u16'], ['status', 12, 'u16'],
  ['parameterErrorLocation', 14, 'u16'], ['lba', 16, 'u64'], ['nsid', 24, 'u32'], ['vsia', 28, 'u8'],
  ['trtype', 29, 'u8'], ['csi', 30, 'u8'], ['opcode', 31, 'u8'], ['cs', 32, 'u64'], ['ttsi', 40, 'u16'],
  ['lpver', 63, 'u8'],
];

/**
 * Parse an Error Information log (64-byte entries; a trailing partial entry is ignored).
 * Entries with Error Count 0 are empty and skipped unless `includeEmpty` is set.
 */
export function parseErrorLog(buf: Buffer, opts: { includeEmpty?: boolean } = {}): ErrorLogEntry[] {
  requireLength(buf, ERROR_LOG_ENTRY_SIZE, 'Error Information log');
  const out: ErrorLogEntry[] = [];
  const n = Math.floor(buf.length / ERROR_LOG_ENTRY_SIZE);
  for (let i = 0; i < n; i++) {
    const raw: Record<string, unknown> = {};
    decodeFields(buf, i * ERROR_LOG_ENTRY_SIZE, ERROR_LOG_FIELDS, raw);
    const f = raw as unknown as ErrorLogEntryFields;
    if (f.errorCount === 0n && !opts.includeEmpty) continue;
    const pel = f.parameterErrorLocation;
    out.push({
      ...f,
      sc: (f.status >> 1) & 0xff,
      sct: (f.status >> 9) & 0x7,
      crd: (f.status >> 12) & 0x3,
      more: bit(f.status, 14),
      dnr: bit(f.status, 15),
      pelByte: pel === 0xffff ? null : pel & 0xff,
      pelBit: pel === 0xffff ? null : (pel >> 8) & 0x7,
    });
  }
  return out;
}

/** Encode an Error Information log: one 64-byte entry per element. */
export function encodeErrorLog(entries: ReadonlyArray<Partial<ErrorLogEntryFields>>): Buffer {
  const buf = Buffer.alloc(Math.max(1, entries.length) * ERROR_LOG_ENTRY_SIZE);
  entries.forEach((e, i) => encodeFields(buf, i * ERROR_LOG_ENTRY_SIZE, ERROR_LOG_FIELDS, e, `ErrorLogEntry[${i}]`));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// SMART / Health Information log (LID 02h)
// ---------------------------------------------------------------------------------------------

/** Size of the SMART / Health Information log page. */
export const SMART_LOG_SIZE = 512;

/** The raw fields of the SMART / Health Information log. Temperatures are kelvin. */
export interface SmartLogFields {
  /** Critical Warning bits (see decoded criticalWarnings). */ criticalWarning: number;
  /** Composite Temperature, kelvin. */ temperature: number;
  /** Available Spare, percent. */ availSpare: number;
  /** Available Spare Threshold, percent. */ spareThresh: number;
  /** Percentage Used (may exceed 100). */ percentUsed: number;
  /** Endurance Group Critical Warning Summary. */ enduranceGroupCriticalWarning: number;
  /** Data Units Read, thousands of 512-byte units. */ dataUnitsRead: bigint;
  /** Data Units Written, thousands of 512-byte units. */ dataUnitsWritten: bigint;
  /** Host Read Commands. */ hostReads: bigint;
  /** Host Write Commands. */ hostWrites: bigint;
  /** Controller Busy Time, minutes. */ ctrlBusyTime: bigint;
  /** Power Cycles. */ powerCycles: bigint;
  /** Power On Hours. */ powerOnHours: bigint;
  /** Unsafe Shutdowns. */ unsafeShutdowns: bigint;
  /** Media and Data Integrity Errors. */ mediaErrors: bigint;
  /** Number of Error Information Log Entries over the controller's life. */ numErrLogEntries: bigint;
  /** Warning Composite Temperature Time, minutes. */ warningTempTime: number;
  /** Critical Composite Temperature Time, minutes. */ criticalCompTime: number;
  /** Temperature Sensors 1..8, kelvin (0 = sensor not implemented). */ tempSensors: number[];
  /** Thermal Management Temperature 1 Transition Count. */ thmTemp1TransCount: number;
  /** Thermal Management Temperature 2 Transition Count. */ thmTemp2TransCount: number;
  /** Total Time For Thermal Management Temperature 1, seconds. */ thmTemp1TotalTime: number;
  /** Total Time For Thermal Management Temperature 2, seconds. */ thmTemp2TotalTime: number;
}

/** Parsed SMART / Health Information log. */
export interface SmartLog extends SmartLogFields {
  /** Composite Temperature in degrees Celsius (kelvin - 273). */
  temperatureCelsius: number;
  /** Critical Warning bits decoded. */
  criticalWarnings: {
    /** Available spare below threshold. */ availableSpare: boolean;
    /** A temperature is outside its threshold. */ temperature: boolean;
    /** Reliability degraded by media or internal errors. */ reliabilityDegraded: boolean;
    /** Media placed in read-only mode. */ readOnly: boolean;
    /** Volatile memory backup device failed. */ volatileMemoryBackupFailed: boolean;
    /** Persistent Memory Region became read-only or unreliable. */ pmrReadOnly: boolean;
  };
}

const SMART_FIELDS: readonly FieldSpec[] = [
  ['criticalWarning', 0, 'u8'], ['temperature', 1, 'u16'], ['availSpare', 3, 'u8'], ['spareThresh', 4, 'u8'],
  ['percentUsed', 5, 'u8'], ['enduranceGroupCriticalWarning', 6, 'u8'], ['dataUnitsRead', 32, 'u128'],
  ['dataUnitsWritten', 48, 'u128'], ['hostReads', 64, 'u128'], ['hostWrites', 80, 'u128'],
  ['ctrlBusyTime', 96, 'u128'], ['powerCycles', 112, 'u128'], ['powerOnHours', 128, 'u128'],
  ['unsafeShutdowns', 144, 'u128'], ['mediaErrors', 160, 'u128'], ['numErrLogEntries', 176, 'u128'],
  ['warningTempTime', 192, 'u32'], ['criticalCompTime', 196, 'u32'], ['thmTemp1TransCount', 216, 'u32'],
  ['thmTemp2TransCount', 220, 'u32'], ['thmTemp1TotalTime', 224, 'u32'], ['thmTemp2TotalTime', 228, 'u32'],
];
const SMART_TEMP_SENSORS_OFFSET = 200;

/** Parse a SMART / Health Information log page (512 bytes). */
export function parseSmartLog(buf: Buffer): SmartLog {
  requireLength(buf, SMART_LOG_SIZE, 'SMART / Health Information log');
  const raw: Record<string, unknown> = {};
  decodeFields(buf, 0, SMART_FIELDS, raw);
  const f = raw as unknown as SmartLogFields;
  f.tempSensors = [];
  for (let i = 0; i < 8; i++) f.tempSensors.push(buf.readUInt16LE(SMART_TEMP_SENSORS_OFFSET + i * 2));
  const cw = f.criticalWarning;
  return {
    ...f,
    temperatureCelsius: f.temperature - 273,
    criticalWarnings: {
      availableSpare: bit(cw, 0), temperature: bit(cw, 1), reliabilityDegraded: bit(cw, 2), readOnly: bit(cw, 3),
      volatileMemoryBackupFailed: bit(cw, 4), pmrReadOnly: bit(cw, 5),
    },
  };
}

/** Encode a SMART / Health Information log page (512 bytes). */
export function encodeSmartLog(s: Partial<SmartLogFields>): Buffer {
  const buf = Buffer.alloc(SMART_LOG_SIZE);
  encodeFields(buf, 0, SMART_FIELDS, s, 'SmartLog');
  const sensors = s.tempSensors ?? [];
  if (sensors.length > 8) throw new InvalidArgumentError('SmartLog.tempSensors: at most 8 sensors');
  sensors.forEach((t, i) => buf.writeUInt16LE(checkInt(t, 0xffff, `SmartLog.tempSensors[${i}]`), SMART_TEMP_SENSORS_OFFSET + i * 2));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Changed Namespace List log (LID 04h)
// ---------------------------------------------------------------------------------------------

/** Size of the Changed Namespace List log page (1024 NSIDs). */
export const CHANGED_NS_LIST_SIZE = 4096;
const CHANGED_NS_MAX = 1024;

/** Parsed Changed Namespace List. */
export interface ChangedNsList {
  /** More than 1024 namespaces changed (first entry FFFFFFFFh): rescan all namespaces. */
  overflow: boolean;
  /** The changed NSIDs (empty when overflow). */
  nsids: number[];
}

/** Parse a Changed Namespace List log page: NSIDs up to the first 0 (at most 1024). */
export function parseChangedNsList(buf: Buffer): ChangedNsList {
  requireLength(buf, 4, 'Changed Namespace List log');
  const n = Math.min(CHANGED_NS_MAX, Math.floor(buf.length / 4));
  if (buf.readUInt32LE(0) === 0xffffffff) return { overflow: true, nsids: [] };
  const nsids: number[] = [];
  for (let i = 0; i < n; i++) {
    const nsid = buf.readUInt32LE(i * 4);
    if (nsid === 0) break;
    nsids.push(nsid);
  }
  return { overflow: false, nsids };
}

/** Encode a Changed Namespace List log page (4096 bytes); more than 1024 NSIDs encodes the overflow marker. */
export function encodeChangedNsList(nsids: readonly number[]): Buffer {
  const buf = Buffer.alloc(CHANGED_NS_LIST_SIZE);
  if (nsids.length > CHANGED_NS_MAX) {
    buf.writeUInt32LE(0xffffffff, 0);
    return buf;
  }
  nsids.forEach((nsid, i) => {
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > 0xfffffffe) {
      throw new InvalidArgumentError(`changed namespace list entry ${i} must be an NSID in 1..0xFFFFFFFE, got ${nsid}`);
    }
    buf.writeUInt32LE(nsid, i * 4);
  });
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Asymmetric Namespace Access log (LID 0Ch)
// ---------------------------------------------------------------------------------------------

/** ANA log header size. */
export const ANA_LOG_HEADER_SIZE = 16;
/** ANA Group Descriptor size, without its NSID list. */
export const ANA_GROUP_DESC_SIZE = 32;

/** One ANA Group Descriptor. */
export interface AnaGroupDescriptor {
  /** ANA Group ID. */ anagrpid: number;
  /** Number of NSID values as reported (0 with RGO). */ nnsids: number;
  /** Change Count of this group. */ chgcnt: bigint;
  /** ANA state (bits 3:0 of byte 16). */ state: number;
  /** Name of the state (a reserved value is named 'inaccessible'; `state` keeps the raw value). */ stateName: AnaStateName;
  /** NSIDs in this group (empty with RGO). */ nsids: number[];
}

/** Parsed ANA log page. */
export interface AnaLog {
  /** Change Count of the log page. */ chgcnt: bigint;
  /** Number of ANA Group Descriptors. */ ngrps: number;
  /** The descriptors. */ groups: AnaGroupDescriptor[];
}

/**
 * Parse an ANA log page. With `rgo` (the Get Log Page LSP bit 0, Return Groups Only) the
 * descriptors carry no NSID lists. NGRPS and every NNSID are checked against the buffer before
 * use: a page that claims more than it holds is a ProtocolError (read the page with a size from
 * {@link anaLogSize}).
 */
export function parseAnaLog(buf: Buffer, opts: { rgo?: boolean } = {}): AnaLog {
  requireLength(buf, ANA_LOG_HEADER_SIZE, 'ANA log');
  const chgcnt = buf.readBigUInt64LE(0);
  const ngrps = buf.readUInt16LE(8);
  const minimum = ANA_LOG_HEADER_SIZE + ngrps * ANA_GROUP_DESC_SIZE;
  if (minimum > buf.length) {
    throw new ProtocolError(`ANA log claims ${ngrps} group descriptors (at least ${minimum} bytes) but only ${buf.length} bytes were read`, 0, 0);
  }
  const groups: AnaGroupDescriptor[] = [];
  let off = ANA_LOG_HEADER_SIZE;
  for (let g = 0; g < ngrps; g++) {
    if (off + ANA_GROUP_DESC_SIZE > buf.length) {
      throw new ProtocolError(`ANA log group descriptor ${g} at byte ${off} runs past the end (${buf.length} bytes)`, 0, 0);
    }
    const anagrpid = buf.readUInt32LE(off);
    const nnsids = buf.readUInt32LE(off + 4);
    const gchgcnt = buf.readBigUInt64LE(off + 8);
    const state = buf.readUInt8(off + 16) & 0x0f;
    off += ANA_GROUP_DESC_SIZE;
    const nsids: number[] = [];
    if (!opts.rgo) {
      if (nnsids > (buf.length - off) / 4) {
        throw new ProtocolError(`ANA log group ${anagrpid} claims ${nnsids} NSIDs but only ${buf.length - off} bytes remain`, 0, 0);
      }
      for (let i = 0; i < nnsids; i++) nsids.push(buf.readUInt32LE(off + i * 4));
      off += nnsids * 4;
    }
    groups.push({ anagrpid, nnsids, chgcnt: gchgcnt, state, stateName: anaStateName(state), nsids });
  }
  return { chgcnt, ngrps, groups };
}

/**
 * Bytes an ANA log page can need: header + `groups` descriptors + 4 bytes per NSID (none with
 * RGO). For a full read use NANAGRPID and MNAN (or NN) from Identify Controller.
 */
export function anaLogSize(groups: number, nsids: number, rgo = false): number {
  checkInt(groups, 0xffff, 'groups');
  checkInt(nsids, 0xffffffff, 'nsids');
  return ANA_LOG_HEADER_SIZE + groups * ANA_GROUP_DESC_SIZE + (rgo ? 0 : nsids * 4);
}

/** Input for {@link encodeAnaLog}. */
export interface AnaLogInit {
  chgcnt: bigint | number;
  groups: ReadonlyArray<{ anagrpid: number; chgcnt: bigint | number; state: number; nsids?: readonly number[] }>;
}

/** Encode an ANA log page. With `rgo` the NSID lists are left out and NNSID is 0. */
export function encodeAnaLog(log: AnaLogInit, opts: { rgo?: boolean } = {}): Buffer {
  if (log.groups.length > 0xffff) throw new InvalidArgumentError('AnaLog.groups: at most 65535 groups');
  const nsidTotal = opts.rgo ? 0 : log.groups.reduce((n, g) => n + (g.nsids?.length ?? 0), 0);
  const buf = Buffer.alloc(anaLogSize(log.groups.length, nsidTotal, opts.rgo));
  buf.writeBigUInt64LE(toU64(log.chgcnt, 'AnaLog.chgcnt'), 0);
  buf.writeUInt16LE(log.groups.length, 8);
  let off = ANA_LOG_HEADER_SIZE;
  log.groups.forEach((g, i) => {
    const label = `AnaLog.groups[${i}]`;
    const nsids = opts.rgo ? [] : (g.nsids ?? []);
    buf.writeUInt32LE(checkInt(g.anagrpid, 0xffffffff, `${label}.anagrpid`), off);
    buf.writeUInt32LE(nsids.length, off + 4);
    buf.writeBigUInt64LE(toU64(g.chgcnt, `${label}.chgcnt`), off + 8);
    buf.writeUInt8(checkInt(g.state, 0xf, `${label}.state`), off + 16);
    off += ANA_GROUP_DESC_SIZE;
    nsids.forEach((nsid, j) => {
      buf.writeUInt32LE(checkInt(nsid, 0xffffffff, `${label}.nsids[${j}]`), off);
      off += 4;
    });
  });
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Discovery log (LID 70h, NVMe over Fabrics)
// ---------------------------------------------------------------------------------------------

/** Discovery log page header size. */
export const DISCOVERY_LOG_HEADER_SIZE = 1024;
/** Discovery log page entry size. */
export const DISCOVERY_LOG_ENTRY_SIZE = 1024;

/** Discovery log entry SUBTYPE values. */
export const DiscoverySubtype = { Referral: 1, Nvm: 2, CurrentDiscovery: 3 } as const;
/** Transport Type (TRTYPE) values. */
export const TransportType = { Rdma: 1, Fc: 2, Tcp: 3, Loop: 254 } as const;
/** Address Family (ADRFAM) values. */
export const AddressFamily = { Pci: 0, Ipv4: 1, Ipv6: 2, Ib: 3, Fc: 4, Loop: 254 } as const;
/** NVMe/TCP TSAS security type (SECTYPE) values. */
export const TcpSecurityType = { None: 0, Tls12: 1, Tls13: 2 } as const;

/** The raw fields of a Discovery log entry. */
export interface DiscoveryLogEntryFields {
  /** Transport Type (3 = TCP). */ trtype: number;
  /** Address Family (1 IPv4, 2 IPv6). */ adrfam: number;
  /** Subsystem Type (1 referral, 2 NVM subsystem, 3 current discovery subsystem). */ subtype: number;
  /** Transport Requirements. */ treq: number;
  /** Port ID. */ portid: number;
  /** Controller ID (0xFFFF: dynamic controller model). */ cntlid: number;
  /** Admin Max SQ Size. */ asqsz: number;
  /** Entry Flags. */ eflags: number;
  /** Transport Service Identifier (TCP port as text). */ trsvcid: string;
  /** Subsystem NQN. */ subnqn: string;
  /** Transport Address. */ traddr: string;
  /** Transport Specific Address Subtype (256 bytes). */ tsas: Buffer;
}

/** A parsed Discovery log entry. */
export interface DiscoveryLogEntry extends DiscoveryLogEntryFields {
  /** SUBTYPE as a name. */
  subtypeName: 'referral' | 'nvm' | 'current-discovery' | 'unknown';
  /** Bit fields decoded. */
  decoded: {
    /** TREQ bits 1:0 and bit 2. */
    treq: { secureChannel: 'not-specified' | 'required' | 'not-required' | 'reserved'; sqFlowControlDisable: boolean };
    /** EFLAGS: duplicate returned information, explicit persistent connection support, no CDC connectivity. */
    eflags: { duplicateReturnedInfo: boolean; explicitPersistentConnection: boolean; noCdcConnectivity: boolean };
  };
  /** TSAS SECTYPE for TCP entries (0 none, 1 TLS 1.2, 2 TLS 1.3); null for other transports. */
  tcpSectype: number | null;
}

/** Parsed Discovery log page. */
export interface DiscoveryLog {
  /** Generation Counter: changes whenever the log changes. */ genctr: bigint;
  /** Number of Records the controller holds. */ numrec: bigint;
  /** Record Format (0). */ recfmt: number;
  /** The entries present in the buffer (at most NUMREC). */ entries: DiscoveryLogEntry[];
  /** True when every one of the NUMREC entries was in the buffer. */ complete: boolean;
}

const DISC_ENTRY_FIELDS: readonly FieldSpec[] = [
  ['trtype', 0, 'u8'], ['adrfam', 1, 'u8'], ['subtype', 2, 'u8'], ['treq', 3, 'u8'], ['portid', 4, 'u16'],
  ['cntlid', 6, 'u16'], ['asqsz', 8, 'u16'], ['eflags', 10, 'u16'], ['trsvcid', 32, 'strz', 32],
  ['subnqn', 256, 'strz', 256], ['traddr', 512, 'strz', 256], ['tsas', 768, 'bytes', 256],
];

const SUBTYPE_NAMES: Record<number, DiscoveryLogEntry['subtypeName']> = { 1: 'referral', 2: 'nvm', 3: 'current-discovery' };
const SECURE_CHANNEL = ['not-specified', 'required', 'not-required', 'reserved'] as const;

/** Bytes needed to read a Discovery log page holding `numrec` records (header + entries). */
export function discoveryLogSize(numrec: number | bigint): number {
  const n = typeof numrec === 'bigint' ? numrec : Number.isSafeInteger(numrec) ? BigInt(numrec) : -1n;
  // Get Log Page can move at most 2^32 dwords.
  if (n < 0n || BigInt(DISCOVERY_LOG_HEADER_SIZE) + n * BigInt(DISCOVERY_LOG_ENTRY_SIZE) > 0x4_0000_0000n) {
    throw new InvalidArgumentError(`cannot read a discovery log of ${String(numrec)} records`);
  }
  return DISCOVERY_LOG_HEADER_SIZE + Number(n) * DISCOVERY_LOG_ENTRY_SIZE;
}

/** Parse the Discovery log header (GENCTR, NUMREC, RECFMT); needs the first 18 bytes. */
export function parseDiscoveryLogHeader(buf: Buffer): { genctr: bigint; numrec: bigint; recfmt: number } {
  requireLength(buf, 18, 'Discovery log header');
  return { genctr: buf.readBigUInt64LE(0), numrec: buf.readBigUInt64LE(8), recfmt: buf.readUInt16LE(16) };
}

/** Parse one 1024-byte Discovery log entry at `offset` in `buf`. Byte fields are copies. */
export function parseDiscoveryLogEntry(buf: Buffer, offset = 0): DiscoveryLogEntry {
  if (!Buffer.isBuffer(buf)) throw new InvalidArgumentError('Discovery log entry: expected a Buffer');
  if (offset < 0 || offset + DISCOVERY_LOG_ENTRY_SIZE > buf.length) {
    throw structTooShort(`Discovery log entry at byte ${offset}`, offset + DISCOVERY_LOG_ENTRY_SIZE, buf.length);
  }
  const entry = Buffer.from(buf.subarray(offset, offset + DISCOVERY_LOG_ENTRY_SIZE));
  const raw: Record<string, unknown> = {};
  decodeFields(entry, 0, DISC_ENTRY_FIELDS, raw);
  const f = raw as unknown as DiscoveryLogEntryFields;
  return {
    ...f,
    subtypeName: SUBTYPE_NAMES[f.subtype] ?? 'unknown',
    decoded: {
      treq: { secureChannel: SECURE_CHANNEL[f.treq & 0x3] ?? 'reserved', sqFlowControlDisable: bit(f.treq, 2) },
      eflags: {
        duplicateReturnedInfo: bit(f.eflags, 0), explicitPersistentConnection: bit(f.eflags, 1),
        noCdcConnectivity: bit(f.eflags, 2),
      },
    },
    tcpSectype: f.trtype === TransportType.Tcp ? f.tsas.readUInt8(0) : null,
  };
}

/**
 * Parse a Discovery log page. The buffer may hold only the header (or part of the entries): the
 * entries returned are limited by both NUMREC and the whole entries present; `complete` says
 * whether all NUMREC were there. Re-read with {@link discoveryLogSize}(numrec) when it is not.
 */
export function parseDiscoveryLog(buf: Buffer): DiscoveryLog {
  const header = parseDiscoveryLogHeader(buf);
  const present = buf.length >= DISCOVERY_LOG_HEADER_SIZE
    ? Math.floor((buf.length - DISCOVERY_LOG_HEADER_SIZE) / DISCOVERY_LOG_ENTRY_SIZE)
    : 0;
  const count = header.numrec < BigInt(present) ? Number(header.numrec) : present;
  const entries: DiscoveryLogEntry[] = [];
  for (let i = 0; i < count; i++) {
    entries.push(parseDiscoveryLogEntry(buf, DISCOVERY_LOG_HEADER_SIZE + i * DISCOVERY_LOG_ENTRY_SIZE));
  }
  return { ...header, entries, complete: BigInt(count) === header.numrec };
}

/** Encode one 1024-byte Discovery log entry. Strings are NUL-padded; tsas defaults to zeroes. */
export function encodeDiscoveryLogEntry(e: Partial<DiscoveryLogEntryFields>): Buffer {
  const buf = Buffer.alloc(DISCOVERY_LOG_ENTRY_SIZE);
  encodeFields(buf, 0, DISC_ENTRY_FIELDS, e, 'DiscoveryLogEntry');
  return buf;
}

/** Encode a Discovery log page: header plus entries; NUMREC defaults to the number of entries. */
export function encodeDiscoveryLog(log: {
  genctr: bigint | number;
  recfmt?: number;
  numrec?: bigint | number;
  entries: ReadonlyArray<Partial<DiscoveryLogEntryFields>>;
}): Buffer {
  const header = Buffer.alloc(DISCOVERY_LOG_HEADER_SIZE);
  header.writeBigUInt64LE(toU64(log.genctr, 'DiscoveryLog.genctr'), 0);
  header.writeBigUInt64LE(toU64(log.numrec ?? log.entries.length, 'DiscoveryLog.numrec'), 8);
  header.writeUInt16LE(checkInt(log.recfmt ?? 0, 0xffff, 'DiscoveryLog.recfmt'), 16);
  return Buffer.concat([header, ...log.entries.map((e) => encodeDiscoveryLogEntry(e))]);
}

// ---------------------------------------------------------------------------------------------
// Reservation Notification log (LID 80h)
// ---------------------------------------------------------------------------------------------

/** Size of the Reservation Notification log page. */
export const RESERVATION_NOTIFICATION_LOG_SIZE = 64;

/** Reservation Notification Log Page Type values. */
export const ReservationNotificationType = {
  Empty: 0,
  RegistrationPreempted: 1,
  ReservationReleased: 2,
  ReservationPreempted: 3,
} as const;

/** Raw fields of the Reservation Notification log. */
export interface ReservationNotificationLogFields {
  /** Log Page Count: incremented per new notification; 0 = none ever. */ lpc: bigint;
  /** Reservation Notification Log Page Type. */ rnlpt: number;
  /** Number of Available Log Pages still queued after this one (255 = 255 or more). */ nalp: number;
  /** Namespace ID the notification is about. */ nsid: number;
}

/** Parsed Reservation Notification log. */
export interface ReservationNotificationLog extends ReservationNotificationLogFields {
  /** RNLPT as a name. */
  rnlptName: 'empty' | 'registration-preempted' | 'reservation-released' | 'reservation-preempted' | 'reserved';
}

const RESV_FIELDS: readonly FieldSpec[] = [['lpc', 0, 'u64'], ['rnlpt', 8, 'u8'], ['nalp', 9, 'u8'], ['nsid', 12, 'u32']];
const RNLPT_NAMES = ['empty', 'registration-preempted', 'reservation-released', 'reservation-preempted'] as const;

/** Parse a Reservation Notification log page (64 bytes). */
export function parseReservationNotificationLog(buf: Buffer): ReservationNotificationLog {
  requireLength(buf, RESERVATION_NOTIFICATION_LOG_SIZE, 'Reservation Notification log');
  const raw: Record<string, unknown> = {};
  decodeFields(buf, 0, RESV_FIELDS, raw);
  const f = raw as unknown as ReservationNotificationLogFields;
  return { ...f, rnlptName: RNLPT_NAMES[f.rnlpt] ?? 'reserved' };
}

/** Encode a Reservation Notification log page (64 bytes). */
export function encodeReservationNotificationLog(r: Partial<ReservationNotificationLogFields>): Buffer {
  const buf = Buffer.alloc(RESERVATION_NOTIFICATION_LOG_SIZE);
  encodeFields(buf, 0, RESV_FIELDS, r, 'ReservationNotificationLog');
  return buf;
}
