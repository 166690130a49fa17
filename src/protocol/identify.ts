/**
 * Identify data structures (NVMe Base Specification 2.x, Identify command, CNS 00h-03h):
 * Identify Controller, Identify Namespace (NVM command set), Active Namespace ID list and
 * Namespace Identification Descriptor list. Each structure has a parser (wire bytes -> value)
 * and an encoder (value -> wire bytes, for the embedded target) that use the same offsets.
 *
 * All multi-byte fields are little-endian; 64-bit and 128-bit fields are `bigint`.
 * Field names keep the spec's abbreviations.
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError, ProtocolError } from '../errors.js';
import { IDENTIFY_DATA_SIZE } from './constants.js';
import { decodeFields, encodeFields, structTooShort, type FieldSpec } from './struct.js';


/** Identify Controller CNTRLTYPE values. */
export const ControllerType = {
  /** Not reported (controllers older than NVMe 1.4). */
  NotReported: 0,
  Io: 1,
  Discovery: 2,
  Admin: 3,
} as const;

/** Namespace Identifier Type (NIDT) values of the Namespace Identification Descriptor list. */
export const NsIdType = { Eui64: 1, Nguid: 2, Uuid: 3, Csi: 4 } as const;


function bit(v: number, n: number): boolean {
  return ((v >>> n) & 1) === 1;
}

function requireLength(buf: Buffer, need: number, what: string): void {
  if (!Buffer.isBuffer(buf)) throw new InvalidArgumentError(`${what}: expected a Buffer`);
  if (buf.length < need) throw structTooShort(what, need, buf.length);
}

// ---------------------------------------------------------------------------------------------
// Identify Controller (CNS 01h)
// ---------------------------------------------------------------------------------------------

/** Power State Descriptor (32 bytes each, Identify Controller bytes 2048..3071). */
export interface PowerStateDescriptor {
  /** Maximum Power (units per `mxps`). */
  mp: number;
  /** Max Power Scale: false = 0.01 W units, true = 0.0001 W units. */
  mxps: boolean;
  /** Non-Operational State. */
  nops: boolean;
  /** Entry Latency, microseconds. */
  enlat: number;
  /** Exit Latency, microseconds. */
  exlat: number;
  /** Relative Read Throughput (bits 4:0). */
  rrt: number;
  /** Relative Read Latency (bits 4:0). */
  rrl: number;
  /** Relative Write Throughput (bits 4:0). */
  rwt: number;
  /** Relative Write Latency (bits 4:0). */
  rwl: number;
  /** Idle Power. */
  idlp: number;
  /** Idle Power Scale (2 bits). */
  ips: number;
  /** Active Power. */
  actp: number;
  /** Active Power Workload (3 bits). */
  apw: number;
  /** Active Power Scale (2 bits). */
  aps: number;
  /** Emergency Power Fail Recovery Time. */
  epfrt: number;
  /** Forced Quiescence Vault Time. */
  fqvt: number;
  /** Emergency Power Fail Vault Time. */
  epfvt: number;
  /** EPFRT scale (4 bits). */
  epfrts: number;
  /** FQVT scale (4 bits). */
  fqvts: number;
  /** EPFVT scale (4 bits). */
  epfvts: number;
}

/** The raw fields of the Identify Controller data structure (what the encoder takes). */
export interface IdentifyControllerFields {
  /** PCI Vendor ID. */ vid: number;
  /** PCI Subsystem Vendor ID. */ ssvid: number;
  /** Serial Number (ASCII, trimmed). */ sn: string;
  /** Model Number (ASCII, trimmed). */ mn: string;
  /** Firmware Revision (ASCII, trimmed). */ fr: string;
  /** Recommended Arbitration Burst (power of two). */ rab: number;
  /** IEEE OUI (24 bits, bytes 73..75 little-endian). */ ieee: number;
  /** Controller Multi-Path I/O and Namespace Sharing Capabilities (see decoded.cmic). */ cmic: number;
  /** Maximum Data Transfer Size: power of two in units of CAP.MPSMIN pages; 0 = no limit. See {@link mdtsBytes}. */ mdts: number;
  /** Controller ID. */ cntlid: number;
  /** Version (same encoding as the VS property; see decoded version). */ ver: number;
  /** RTD3 Resume Latency, microseconds. */ rtd3r: number;
  /** RTD3 Entry Latency, microseconds. */ rtd3e: number;
  /** Optional Asynchronous Events Supported (see decoded.oaes). */ oaes: number;
  /** Controller Attributes (see decoded.ctratt). */ ctratt: number;
  /** Read Recovery Levels Supported. */ rrls: number;
  /** Boot Partition Capabilities. */ bpcap: number;
  /** NVM Subsystem Shutdown Latency, microseconds. */ nssl: number;
  /** Power Loss Signaling Information. */ plsi: number;
  /** Controller Type (see {@link ControllerType}). */ cntrltype: number;
  /** FRU Globally Unique Identifier (16 bytes). */ fguid: Buffer;
  /** Command Retry Delay Time 1, 100 ms units. */ crdt1: number;
  /** Command Retry Delay Time 2, 100 ms units. */ crdt2: number;
  /** Command Retry Delay Time 3, 100 ms units. */ crdt3: number;
  /** Controller Reachability Capabilities. */ crcap: number;
  /** NVM Subsystem Report. */ nvmsr: number;
  /** VPD Write Cycle Information. */ vwci: number;
  /** Management Endpoint Capabilities. */ mec: number;
  /** Optional Admin Command Support (see decoded.oacs). */ oacs: number;
  /** Abort Command Limit (0's based). */ acl: number;
  /** Asynchronous Event Request Limit (0's based). */ aerl: number;
  /** Firmware Updates. */ frmw: number;
  /** Log Page Attributes (see decoded.lpa). */ lpa: number;
  /** Error Log Page Entries (0's based). */ elpe: number;
  /** Number of Power States Support (0's based). */ npss: number;
  /** Admin Vendor Specific Command Configuration. */ avscc: number;
  /** Autonomous Power State Transition Attributes. */ apsta: number;
  /** Warning Composite Temperature Threshold, kelvin. */ wctemp: number;
  /** Critical Composite Temperature Threshold, kelvin. */ cctemp: number;
  /** Maximum Time for Firmware Activation, 100 ms units. */ mtfa: number;
  /** Host Memory Buffer Preferred Size, 4 KiB units. */ hmpre: number;
  /** Host Memory Buffer Minimum Size, 4 KiB units. */ hmmin: number;
  /** Total NVM Capacity, bytes. */ tnvmcap: bigint;
  /** Unallocated NVM Capacity, bytes. */ unvmcap: bigint;
  /** Replay Protected Memory Block Support. */ rpmbs: number;
  /** Extended Device Self-test Time, minutes. */ edstt: number;
  /** Device Self-test Options. */ dsto: number;
  /** Firmware Update Granularity, 4 KiB units. */ fwug: number;
  /** Keep Alive Support: granularity of the Keep Alive Timer in 100 ms units (0 = not supported). */ kas: number;
  /** Host Controlled Thermal Management Attributes. */ hctma: number;
  /** Minimum Thermal Management Temperature, kelvin. */ mntmt: number;
  /** Maximum Thermal Management Temperature, kelvin. */ mxtmt: number;
  /** Sanitize Capabilities. */ sanicap: number;
  /** Host Memory Buffer Minimum Descriptor Entry Size, 4 KiB units. */ hmminds: number;
  /** Host Memory Maximum Descriptors Entries. */ hmmaxd: number;
  /** NVM Set Identifier Maximum. */ nsetidmax: number;
  /** Endurance Group Identifier Maximum. */ endgidmax: number;
  /** ANA Transition Time, seconds (byte 342). */ anatt: number;
  /** Asymmetric Namespace Access Capabilities (byte 343, see decoded.anacap). */ anacap: number;
  /** ANA Group Identifier Maximum (bytes 344..347). */ anagrpmax: number;
  /** Number of ANA Group Identifiers (bytes 348..351). */ nanagrpid: number;
  /** Persistent Event Log Size, 64 KiB units. */ pels: number;
  /** Domain Identifier. */ domainid: number;
  /** Key Per I/O Capabilities. */ kpioc: number;
  /** Maximum Processing Time for Firmware Activation Without Reset, 100 ms units. */ mptfawr: number;
  /** Max Endurance Group Capacity, bytes. */ megcap: bigint;
  /** Temperature Threshold Hysteresis Attributes. */ tmpthha: number;
  /** Command Quiesce Time, milliseconds. */ cqt: number;
  /** Submission Queue Entry Size: bits 3:0 required, 7:4 maximum (powers of two). */ sqes: number;
  /** Completion Queue Entry Size: bits 3:0 required, 7:4 maximum (powers of two). */ cqes: number;
  /** Maximum Outstanding Commands. */ maxcmd: number;
  /** Number of Namespaces (largest valid NSID). */ nn: number;
  /** Optional NVM Command Support (see decoded.oncs). */ oncs: number;
  /** Fused Operation Support. */ fuses: number;
  /** Format NVM Attributes. */ fna: number;
  /** Volatile Write Cache (bit 0 present). */ vwc: number;
  /** Atomic Write Unit Normal (0's based, logical blocks). */ awun: number;
  /** Atomic Write Unit Power Fail (0's based, logical blocks). */ awupf: number;
  /** I/O Command Set Vendor Specific Command Configuration. */ icsvscc: number;
  /** Namespace Write Protection Capabilities. */ nwpc: number;
  /** Atomic Compare & Write Unit (0's based). */ acwu: number;
  /** Optional Copy Formats Supported. */ ocfs: number;
  /** SGL Support (see decoded.sgls). */ sgls: number;
  /** Maximum Number of Allowed Namespaces. */ mnan: number;
  /** Maximum Domain Namespace Attachments. */ maxdna: bigint;
  /** Maximum I/O Controller Namespace Attachments. */ maxcna: number;
  /** Optimal Aggregated Queue Depth. */ oaqd: number;
  /** Recommended Host-Initiated Refresh Interval, days. */ rhiri: number;
  /** Host-Initiated Refresh Time, minutes. */ hirt: number;
  /** Controller Maximum Memory Range Tracking Descriptors. */ cmmrtd: number;
  /** NVM Subsystem Maximum Memory Range Tracking Descriptors. */ nmmrtd: number;
  /** Minimum Memory Range Tracking Granularity. */ minmrtg: number;
  /** Maximum Memory Range Tracking Granularity. */ maxmrtg: number;
  /** Tracking Attributes. */ trattr: number;
  /** Maximum Controller User Data Migration Queues. */ mcudmq: number;
  /** Maximum NVM Subsystem User Data Migration Queues. */ mnsudmq: number;
  /** Maximum CDQ Memory Ranges. */ mcmr: number;
  /** NVM Subsystem Maximum CDQ Memory Ranges. */ nmcmr: number;
  /** Maximum Controller Data Queue PRP Count. */ mcdqpc: number;
  /** NVM Subsystem NQN (bytes 768..1023, NUL-padded UTF-8). */ subnqn: string;
  /** I/O Queue Command Capsule Supported Size, 16-byte units (fabrics). */ ioccsz: number;
  /** I/O Queue Response Capsule Supported Size, 16-byte units (fabrics). */ iorcsz: number;
  /** In Capsule Data Offset, 16-byte units (fabrics). */ icdoff: number;
  /** Fabrics Controller Attributes (bit 0: static controller model). */ fcatt: number;
  /** Maximum SGL Data Block Descriptors (0 = no limit). */ msdbd: number;
  /** Optional Fabric Commands Support (bit 0: Disconnect). */ ofcs: number;
  /** Discovery Controller Type (0 not reported, 1 direct, 2 central). */ dctype: number;
  /** Power State Descriptors 0..npss. */ psd: PowerStateDescriptor[];
  /** Vendor Specific bytes 3072..4095. */ vs: Buffer;
}

/** CMIC decoded. */
export interface CmicFlags { multiPort: boolean; multiController: boolean; sriov: boolean; anaReporting: boolean }
/** OAES decoded (which asynchronous event notices the controller supports). */
export interface OaesFlags {
  namespaceAttribute: boolean; firmwareActivation: boolean; ana: boolean; predictableLatency: boolean;
  lbaStatus: boolean; enduranceGroup: boolean; normalSubsystemShutdown: boolean; temperatureThresholdHysteresis: boolean;
  reachabilityGroups: boolean; allocatedNamespaceAttribute: boolean; zoneDescriptor: boolean; discoveryLogChange: boolean;
}
/** CTRATT decoded. */
export interface CtrattFlags {
  hostId128: boolean; nopspm: boolean; nvmSets: boolean; readRecoveryLevels: boolean; enduranceGroups: boolean;
  predictableLatency: boolean; tbkas: boolean; namespaceGranularity: boolean; sqAssociations: boolean; uuidList: boolean;
  multiDomain: boolean; fixedCapacity: boolean; variableCapacity: boolean; deleteEnduranceGroups: boolean;
  deleteNvmSets: boolean; extendedLbaFormats: boolean; mdtsExcludesMetadata: boolean; hmbRestrict: boolean;
  rhii: boolean; fdps: boolean;
}
/** OACS decoded. */
export interface OacsFlags {
  securitySendReceive: boolean; formatNvm: boolean; firmware: boolean; namespaceManagement: boolean;
  deviceSelfTest: boolean; directives: boolean; nvmeMi: boolean; virtualization: boolean; doorbellBufferConfig: boolean;
  getLbaStatus: boolean; commandFeatureLockdown: boolean; hostManagedLiveMigration: boolean;
}
/** LPA decoded. */
export interface LpaFlags {
  smartPerNamespace: boolean; commandEffects: boolean; extendedData: boolean; telemetry: boolean;
  persistentEvent: boolean; supportedLogPages: boolean; telemetryDa4: boolean;
}
/** ANACAP decoded. */
export interface AnacapFlags {
  optimized: boolean; nonOptimized: boolean; inaccessible: boolean; persistentLoss: boolean; change: boolean;
  /** ANAGRPID does not change while the namespace is attached. */ grpidNotChanged: boolean;
  /** Non-zero ANAGRPID supported in Namespace Management. */ grpidMgmt: boolean;
}
/** ONCS decoded. */
export interface OncsFlags {
  compare: boolean; writeUncorrectable: boolean; dsm: boolean; writeZeroes: boolean; save: boolean;
  reservations: boolean; timestamp: boolean; verify: boolean; copy: boolean; copySingleAtomicity: boolean;
  allFastCopy: boolean; maxwzd: boolean; nszs: boolean;
}
/** SGLS decoded. */
export interface SglsFlags {
  /** Bits 1:0: 0 SGLs not supported, 1 supported, 2 supported with dword alignment. */
  support: number;
  /** SGLs supported at all (support != 0). */
  supported: boolean;
  keyed: boolean; bitBucket: boolean; mptrByteAligned: boolean; oversize: boolean; mptrSgl: boolean;
  /** Offset in SGL Data Block descriptors supported (needed for in-capsule data). */
  offset: boolean;
  transportDataBlock: boolean;
}

/** Bit fields of Identify Controller decoded into booleans. */
export interface IdentifyControllerDecoded {
  cmic: CmicFlags;
  oaes: OaesFlags;
  ctratt: CtrattFlags;
  oacs: OacsFlags;
  lpa: LpaFlags;
  anacap: AnacapFlags;
  oncs: OncsFlags;
  sgls: SglsFlags;
  fuses: { compareAndWrite: boolean };
  vwc: { present: boolean; flushBehavior: number };
  fcatt: { staticController: boolean };
  ofcs: { disconnect: boolean };
}

/** Parsed Identify Controller data structure. */
export interface IdentifyController extends IdentifyControllerFields {
  /** VER split into its parts. */
  version: { major: number; minor: number; tertiary: number };
  /** Bit fields decoded. */
  decoded: IdentifyControllerDecoded;
  /** A private copy of the 4096 bytes parsed. */
  raw: Buffer;
}

const ID_CTRL_FIELDS: readonly FieldSpec[] = [
  ['vid', 0, 'u16'], ['ssvid', 2, 'u16'], ['sn', 4, 'ascii', 20], ['mn', 24, 'ascii', 40], ['fr', 64, 'ascii', 8],
  ['rab', 72, 'u8'], ['ieee', 73, 'u24'], ['cmic', 76, 'u8'], ['mdts', 77, 'u8'], ['cntlid', 78, 'u16'],
  ['ver', 80, 'u32'], ['rtd3r', 84, 'u32'], ['rtd3e', 88, 'u32'], ['oaes', 92, 'u32'], ['ctratt', 96, 'u32'],
  ['rrls', 100, 'u16'], ['bpcap', 102, 'u8'], ['nssl', 104, 'u32'], ['plsi', 110, 'u8'], ['cntrltype', 111, 'u8'],
  ['fguid', 112, 'bytes', 16], ['crdt1', 128, 'u16'], ['crdt2', 130, 'u16'], ['crdt3', 132, 'u16'],
  ['crcap', 134, 'u8'], ['nvmsr', 253, 'u8'], ['vwci', 254, 'u8'], ['mec', 255, 'u8'],
  ['oacs', 256, 'u16'], ['acl', 258, 'u8'], ['aerl', 259, 'u8'], ['frmw', 260, 'u8'], ['lpa', 261, 'u8'],
  ['elpe', 262, 'u8'], ['npss', 263, 'u8'], ['avscc', 264, 'u8'], ['apsta', 265, 'u8'], ['wctemp', 266, 'u16'],
  ['cctemp', 268, 'u16'], ['mtfa', 270, 'u16'], ['hmpre', 272, 'u32'], ['hmmin', 276, 'u32'],
  ['tnvmcap', 280, 'u128'], ['unvmcap', 296, 'u128'], ['rpmbs', 312, 'u32'], ['edstt', 316, 'u16'],
  ['dsto', 318, 'u8'], ['fwug', 319, 'u8'], ['kas', 320, 'u16'], ['hctma', 322, 'u16'], ['mntmt', 324, 'u16'],
  ['mxtmt', 326, 'u16'], ['sanicap', 328, 'u32'], ['hmminds', 332, 'u32'], ['hmmaxd', 336, 'u16'],
  ['nsetidmax', 338, 'u16'], ['endgidmax', 340, 'u16'], ['anatt', 342, 'u8'], ['anacap', 343, 'u8'],
  ['anagrpmax', 344, 'u32'], ['nanagrpid', 348, 'u32'], ['pels', 352, 'u32'], ['domainid', 356, 'u16'],
  ['kpioc', 358, 'u8'], ['mptfawr', 360, 'u16'], ['megcap', 368, 'u128'], ['tmpthha', 384, 'u8'],
  ['cqt', 386, 'u16'],
  ['sqes', 512, 'u8'], ['cqes', 513, 'u8'], ['maxcmd', 514, 'u16'], ['nn', 516, 'u32'], ['oncs', 520, 'u16'],
  ['fuses', 522, 'u16'], ['fna', 524, 'u8'], ['vwc', 525, 'u8'], ['awun', 526, 'u16'], ['awupf', 528, 'u16'],
  ['icsvscc', 530, 'u8'], ['nwpc', 531, 'u8'], ['acwu', 532, 'u16'], ['ocfs', 534, 'u16'], ['sgls', 536, 'u32'],
  ['mnan', 540, 'u32'], ['maxdna', 544, 'u128'], ['maxcna', 560, 'u32'], ['oaqd', 564, 'u32'],
  ['rhiri', 568, 'u8'], ['hirt', 569, 'u8'], ['cmmrtd', 570, 'u16'], ['nmmrtd', 572, 'u16'],
  ['minmrtg', 574, 'u8'], ['maxmrtg', 575, 'u8'], ['trattr', 576, 'u8'], ['mcudmq', 578, 'u16'],
  ['mnsudmq', 580, 'u16'], ['mcmr', 582, 'u16'], ['nmcmr', 584, 'u16'], ['mcdqpc', 586, 'u16'],
  ['subnqn', 768, 'strz', 256],
  ['ioccsz', 1792, 'u32'], ['iorcsz', 1796, 'u32'], ['icdoff', 1800, 'u16'], ['fcatt', 1802, 'u8'],
  ['msdbd', 1803, 'u8'], ['ofcs', 1804, 'u16'], ['dctype', 1806, 'u8'],
  ['vs', 3072, 'bytes', 1024],
];

const PSD_OFFSET = 2048;
const PSD_SIZE = 32;
const PSD_COUNT = 32;

function parsePsd(buf: Buffer, off: number): PowerStateDescriptor {
  const flags = buf.readUInt8(off + 3);
  const apws = buf.readUInt8(off + 22);
  const ts = buf.readUInt8(off + 26);
  return {
    mp: buf.readUInt16LE(off), mxps: bit(flags, 0), nops: bit(flags, 1),
    enlat: buf.readUInt32LE(off + 4), exlat: buf.readUInt32LE(off + 8),
    rrt: buf.readUInt8(off + 12) & 0x1f, rrl: buf.readUInt8(off + 13) & 0x1f,
    rwt: buf.readUInt8(off + 14) & 0x1f, rwl: buf.readUInt8(off + 15) & 0x1f,
    idlp: buf.readUInt16LE(off + 16), ips: buf.readUInt8(off + 18) >> 6,
    actp: buf.readUInt16LE(off + 20), apw: apws & 0x7, aps: apws >> 6,
    epfrt: buf.readUInt8(off + 23), fqvt: buf.readUInt8(off + 24), epfvt: buf.readUInt8(off + 25),
    epfrts: ts & 0xf, fqvts: ts >> 4, epfvts: buf.readUInt8(off + 27) & 0xf,
  };
}

function encodePsd(buf: Buffer, off: number, p: Partial<PowerStateDescriptor>, label: string): void {
  const n = (v: number | undefined, max: number, name: string): number => {
    const x = v ?? 0;
    if (!Number.isInteger(x) || x < 0 || x > max) {
      throw new InvalidArgumentError(`${label}.${name} must be an integer in 0..${max}, got ${String(v)}`);
    }
    return x;
  };
  buf.writeUInt16LE(n(p.mp, 0xffff, 'mp'), off);
  buf.writeUInt8((p.mxps ? 1 : 0) | (p.nops ? 2 : 0), off + 3);
  buf.writeUInt32LE(n(p.enlat, 0xffffffff, 'enlat'), off + 4);
  buf.writeUInt32LE(n(p.exlat, 0xffffffff, 'exlat'), off + 8);
  buf.writeUInt8(n(p.rrt, 0x1f, 'rrt'), off + 12);
  buf.writeUInt8(n(p.rrl, 0x1f, 'rrl'), off + 13);
  buf.writeUInt8(n(p.rwt, 0x1f, 'rwt'), off + 14);
  buf.writeUInt8(n(p.rwl, 0x1f, 'rwl'), off + 15);
  buf.writeUInt16LE(n(p.idlp, 0xffff, 'idlp'), off + 16);
  buf.writeUInt8(n(p.ips, 3, 'ips') << 6, off + 18);
  buf.writeUInt16LE(n(p.actp, 0xffff, 'actp'), off + 20);
  buf.writeUInt8(n(p.apw, 7, 'apw') | (n(p.aps, 3, 'aps') << 6), off + 22);
  buf.writeUInt8(n(p.epfrt, 0xff, 'epfrt'), off + 23);
  buf.writeUInt8(n(p.fqvt, 0xff, 'fqvt'), off + 24);
  buf.writeUInt8(n(p.epfvt, 0xff, 'epfvt'), off + 25);
  buf.writeUInt8(n(p.epfrts, 0xf, 'epfrts') | (n(p.fqvts, 0xf, 'fqvts') << 4), off + 26);
  buf.writeUInt8(n(p.epfvts, 0xf, 'epfvts'), off + 27);
}

function decodeControllerFlags(c: IdentifyControllerFields): IdentifyControllerDecoded {
  const { cmic, oaes, ctratt, oacs, lpa, anacap, oncs, sgls } = c;
  return {
    cmic: { multiPort: bit(cmic, 0), multiController: bit(cmic, 1), sriov: bit(cmic, 2), anaReporting: bit(cmic, 3) },
    oaes: {
      namespaceAttribute: bit(oaes, 8), firmwareActivation: bit(oaes, 9), ana: bit(oaes, 11),
      predictableLatency: bit(oaes, 12), lbaStatus: bit(oaes, 13), enduranceGroup: bit(oaes, 14),
      normalSubsystemShutdown: bit(oaes, 15), temperatureThresholdHysteresis: bit(oaes, 16),
      reachabilityGroups: bit(oaes, 17), allocatedNamespaceAttribute: bit(oaes, 19), zoneDescriptor: bit(oaes, 27),
      discoveryLogChange: bit(oaes, 31),
    },
    ctratt: {
      hostId128: bit(ctratt, 0), nopspm: bit(ctratt, 1), nvmSets: bit(ctratt, 2), readRecoveryLevels: bit(ctratt, 3),
      enduranceGroups: bit(ctratt, 4), predictableLatency: bit(ctratt, 5), tbkas: bit(ctratt, 6),
      namespaceGranularity: bit(ctratt, 7), sqAssociations: bit(ctratt, 8), uuidList: bit(ctratt, 9),
      multiDomain: bit(ctratt, 10), fixedCapacity: bit(ctratt, 11), variableCapacity: bit(ctratt, 12),
      deleteEnduranceGroups: bit(ctratt, 13), deleteNvmSets: bit(ctratt, 14), extendedLbaFormats: bit(ctratt, 15),
      mdtsExcludesMetadata: bit(ctratt, 16), hmbRestrict: bit(ctratt, 17), rhii: bit(ctratt, 18), fdps: bit(ctratt, 19),
    },
    oacs: {
      securitySendReceive: bit(oacs, 0), formatNvm: bit(oacs, 1), firmware: bit(oacs, 2),
      namespaceManagement: bit(oacs, 3), deviceSelfTest: bit(oacs, 4), directives: bit(oacs, 5), nvmeMi: bit(oacs, 6),
      virtualization: bit(oacs, 7), doorbellBufferConfig: bit(oacs, 8), getLbaStatus: bit(oacs, 9),
      commandFeatureLockdown: bit(oacs, 10), hostManagedLiveMigration: bit(oacs, 11),
    },
    lpa: {
      smartPerNamespace: bit(lpa, 0), commandEffects: bit(lpa, 1), extendedData: bit(lpa, 2), telemetry: bit(lpa, 3),
      persistentEvent: bit(lpa, 4), supportedLogPages: bit(lpa, 5), telemetryDa4: bit(lpa, 6),
    },
    anacap: {
      optimized: bit(anacap, 0), nonOptimized: bit(anacap, 1), inaccessible: bit(anacap, 2),
      persistentLoss: bit(anacap, 3), change: bit(anacap, 4), grpidNotChanged: bit(anacap, 6), grpidMgmt: bit(anacap, 7),
    },
    oncs: {
      compare: bit(oncs, 0), writeUncorrectable: bit(oncs, 1), dsm: bit(oncs, 2), writeZeroes: bit(oncs, 3),
      save: bit(oncs, 4), reservations: bit(oncs, 5), timestamp: bit(oncs, 6), verify: bit(oncs, 7), copy: bit(oncs, 8),
      copySingleAtomicity: bit(oncs, 9), allFastCopy: bit(oncs, 10), maxwzd: bit(oncs, 11), nszs: bit(oncs, 12),
    },
    sgls: {
      support: sgls & 0x3, supported: (sgls & 0x3) !== 0, keyed: bit(sgls, 2), bitBucket: bit(sgls, 16),
      mptrByteAligned: bit(sgls, 17), oversize: bit(sgls, 18), mptrSgl: bit(sgls, 19), offset: bit(sgls, 20),
      transportDataBlock: bit(sgls, 21),
    },
    fuses: { compareAndWrite: bit(c.fuses, 0) },
    vwc: { present: bit(c.vwc, 0), flushBehavior: (c.vwc >> 1) & 0x3 },
    fcatt: { staticController: bit(c.fcatt, 0) },
    ofcs: { disconnect: bit(c.ofcs, 0) },
  };
}

/**
 * Parse an Identify Controller data structure (CNS 01h). `buf` must hold at least 4096 bytes.
 * Only the first NPSS+1 power state descriptors are returned.
 */
export function parseIdentifyController(buf: Buffer): IdentifyController {
  requireLength(buf, IDENTIFY_DATA_SIZE, 'Identify Controller data');
  const raw = Buffer.from(buf.subarray(0, IDENTIFY_DATA_SIZE));
  const out: Record<string, unknown> = {};
  decodeFields(raw, 0, ID_CTRL_FIELDS, out);
  const fields = out as unknown as IdentifyControllerFields;
  const psd: PowerStateDescriptor[] = [];
  for (let i = 0; i <= fields.npss && i < PSD_COUNT; i++) psd.push(parsePsd(raw, PSD_OFFSET + i * PSD_SIZE));
  fields.psd = psd;
  const ver = fields.ver;
  return {
    ...fields,
    version: { major: ver >>> 16, minor: (ver >>> 8) & 0xff, tertiary: ver & 0xff },
    decoded: decodeControllerFlags(fields),
    raw,
  };
}

/**
 * Encode an Identify Controller data structure (4096 bytes). Absent fields are zero (strings:
 * spaces for SN/MN/FR, NULs for SUBNQN). Throws InvalidArgumentError for a value that does not fit.
 */
export function encodeIdentifyController(c: Partial<IdentifyControllerFields>): Buffer {
  const buf = Buffer.alloc(IDENTIFY_DATA_SIZE);
  buf.fill(0x20, 4, 72); // SN, MN, FR are space padded
  encodeFields(buf, 0, ID_CTRL_FIELDS, c, 'IdentifyController');
  if (c.psd !== undefined) {
    if (c.psd.length > PSD_COUNT) throw new InvalidArgumentError(`IdentifyController.psd: at most ${PSD_COUNT} power states`);
    c.psd.forEach((p, i) => encodePsd(buf, PSD_OFFSET + i * PSD_SIZE, p, `IdentifyController.psd[${i}]`));
  }
  return buf;
}

/**
 * Maximum data transfer size in bytes from MDTS: 2^(12 + CAP.MPSMIN) * 2^MDTS.
 * Returns null when MDTS is 0 (no limit reported).
 */
export function mdtsBytes(mdts: number, mpsmin: number): number | null {
  if (!Number.isInteger(mdts) || mdts < 0 || mdts > 255) throw new InvalidArgumentError(`mdts must be an integer in 0..255, got ${mdts}`);
  if (!Number.isInteger(mpsmin) || mpsmin < 0 || mpsmin > 15) throw new InvalidArgumentError(`mpsmin must be an integer in 0..15, got ${mpsmin}`);
  if (mdts === 0) return null;
  return 2 ** (12 + mpsmin + mdts);
}

/** {@link mdtsBytes} for a parsed Identify Controller; `mpsmin` is CAP.MPSMIN. null = no limit. */
export function maxTransferBytes(idctrl: Pick<IdentifyControllerFields, 'mdts'>, mpsmin: number): number | null {
  return mdtsBytes(idctrl.mdts, mpsmin);
}

/**
 * Largest in-capsule data an I/O command may carry: IOCCSZ * 16 bytes minus the 64-byte SQE
 * (0 when IOCCSZ is smaller than the SQE, e.g. unreported).
 */
export function maxInCapsuleDataBytes(ioccsz: number): number {
  return Math.max(0, ioccsz * 16 - 64);
}

// ---------------------------------------------------------------------------------------------
// Identify Namespace (CNS 00h, NVM command set)
// ---------------------------------------------------------------------------------------------

/** One LBA Format entry as written in the structure. */
export interface LbaFormatFields {
  /** Metadata Size, bytes per logical block. */
  ms: number;
  /** LBA Data Size as a power of two (9 = 512 bytes; 0 = format not available). */
  lbads: number;
  /** Relative Performance (bits 1:0: 0 best .. 3 degraded). */
  rp: number;
}

/** LBA Format with its data size in bytes. */
export interface LbaFormat extends LbaFormatFields {
  /** 2^lbads bytes, or 0 when lbads is 0. */
  dataSize: number;
}

/** The raw fields of the Identify Namespace data structure (what the encoder takes). */
export interface IdentifyNamespaceFields {
  /** Namespace Size, logical blocks. */ nsze: bigint;
  /** Namespace Capacity, logical blocks (0: inactive namespace). */ ncap: bigint;
  /** Namespace Utilization, logical blocks. */ nuse: bigint;
  /** Namespace Features. */ nsfeat: number;
  /** Number of LBA Formats (0's based). */ nlbaf: number;
  /** Formatted LBA Size: format index bits 3:0 and 6:5, bit 4 extended metadata. */ flbas: number;
  /** Metadata Capabilities. */ mc: number;
  /** End-to-end Data Protection Capabilities. */ dpc: number;
  /** End-to-end Data Protection Type Settings. */ dps: number;
  /** Namespace Multi-path I/O and Namespace Sharing Capabilities (byte 30). */ nmic: number;
  /** Reservation Capabilities (byte 31). */ rescap: number;
  /** Format Progress Indicator. */ fpi: number;
  /** Deallocate Logical Block Features. */ dlfeat: number;
  /** Namespace Atomic Write Unit Normal (0's based). */ nawun: number;
  /** Namespace Atomic Write Unit Power Fail (0's based). */ nawupf: number;
  /** Namespace Atomic Compare & Write Unit (0's based). */ nacwu: number;
  /** Namespace Atomic Boundary Size Normal. */ nabsn: number;
  /** Namespace Atomic Boundary Offset. */ nabo: number;
  /** Namespace Atomic Boundary Size Power Fail. */ nabspf: number;
  /** Namespace Optimal I/O Boundary, logical blocks. */ noiob: number;
  /** NVM Capacity, bytes. */ nvmcap: bigint;
  /** Namespace Preferred Write Granularity (0's based). */ npwg: number;
  /** Namespace Preferred Write Alignment (0's based). */ npwa: number;
  /** Namespace Preferred Deallocate Granularity (0's based). */ npdg: number;
  /** Namespace Preferred Deallocate Alignment (0's based). */ npda: number;
  /** Namespace Optimal Write Size (0's based). */ nows: number;
  /** Maximum Single Source Range Length. */ mssrl: number;
  /** Maximum Copy Length. */ mcl: number;
  /** Maximum Source Range Count (0's based). */ msrc: number;
  /** Key Per I/O Status. */ kpios: number;
  /** Number of Unique Capability LBA Formats (formats beyond NLBAF+1). */ nulbaf: number;
  /** Key Per I/O Data Access Alignment and Granularity. */ kpiodaag: number;
  /** ANA Group Identifier (bytes 92..95). */ anagrpid: number;
  /** Namespace Attributes (bit 0 write protected). */ nsattr: number;
  /** NVM Set Identifier. */ nvmsetid: number;
  /** Endurance Group Identifier. */ endgid: number;
  /** Namespace Globally Unique Identifier (16 bytes at 104). */ nguid: Buffer;
  /** IEEE Extended Unique Identifier (8 bytes at 120). */ eui64: Buffer;
  /** LBA Formats (4 bytes each from byte 128; up to 64). */ lbaf: LbaFormatFields[];
  /** Vendor Specific bytes 384..4095. */ vs: Buffer;
}

/** Bit fields of Identify Namespace decoded. */
export interface IdentifyNamespaceDecoded {
  nsfeat: { thinProvisioning: boolean; nsabp: boolean; dulbe: boolean; uidReuse: boolean; optPerf: boolean };
  mc: { extended: boolean; separate: boolean };
  dpc: { type1: boolean; type2: boolean; type3: boolean; piFirst: boolean; piLast: boolean };
  dps: { piType: number; piFirst: boolean };
  nmic: { shared: boolean; dispersed: boolean };
  rescap: {
    ptpl: boolean; writeExclusive: boolean; exclusiveAccess: boolean; writeExclusiveRegistrantsOnly: boolean;
    exclusiveAccessRegistrantsOnly: boolean; writeExclusiveAllRegistrants: boolean;
    exclusiveAccessAllRegistrants: boolean; ignoreExistingKey: boolean;
  };
  fpi: { supported: boolean; percentRemaining: number };
  /** readBehavior: 0 not reported, 1 deallocated blocks read as zeroes, 2 as all ones. */
  dlfeat: { readBehavior: number; writeZeroesDeallocate: boolean; guardCrc: boolean };
  nsattr: { writeProtected: boolean };
}

/** Parsed Identify Namespace data structure. */
export interface IdentifyNamespace extends IdentifyNamespaceFields {
  /** The NLBAF + NULBAF + 1 supported LBA formats (at most 64). */
  lbaf: LbaFormat[];
  /** Index of the format in use (FLBAS bits 3:0 plus bits 6:5 as bits 5:4). */
  lbafIndex: number;
  /** The LBA format in use (read from the structure even if the index is beyond lbaf.length). */
  currentLbaFormat: LbaFormat;
  /** Logical block size in bytes (0 for an inactive, zero-filled namespace). */
  blockSize: number;
  /** Metadata bytes per logical block of the format in use. */
  metadataSize: number;
  /** FLBAS bit 4: metadata transferred at the end of each block (extended LBA). */
  metadataExtended: boolean;
  /** Bit fields decoded. */
  decoded: IdentifyNamespaceDecoded;
  /** A private copy of the 4096 bytes parsed. */
  raw: Buffer;
}

const ID_NS_FIELDS: readonly FieldSpec[] = [
  ['nsze', 0, 'u64'], ['ncap', 8, 'u64'], ['nuse', 16, 'u64'], ['nsfeat', 24, 'u8'], ['nlbaf', 25, 'u8'],
  ['flbas', 26, 'u8'], ['mc', 27, 'u8'], ['dpc', 28, 'u8'], ['dps', 29, 'u8'], ['nmic', 30, 'u8'],
  ['rescap', 31, 'u8'], ['fpi', 32, 'u8'], ['dlfeat', 33, 'u8'], ['nawun', 34, 'u16'], ['nawupf', 36, 'u16'],
  ['nacwu', 38, 'u16'], ['nabsn', 40, 'u16'], ['nabo', 42, 'u16'], ['nabspf', 44, 'u16'], ['noiob', 46, 'u16'],
  ['nvmcap', 48, 'u128'], ['npwg', 64, 'u16'], ['npwa', 66, 'u16'], ['npdg', 68, 'u16'], ['npda', 70, 'u16'],
  ['nows', 72, 'u16'], ['mssrl', 74, 'u16'], ['mcl', 76, 'u32'], ['msrc', 80, 'u8'], ['kpios', 81, 'u8'],
  ['nulbaf', 82, 'u8'], ['kpiodaag', 84, 'u32'], ['anagrpid', 92, 'u32'], ['nsattr', 99, 'u8'],
  ['nvmsetid', 100, 'u16'], ['endgid', 102, 'u16'], ['nguid', 104, 'bytes', 16], ['eui64', 120, 'bytes', 8],
  ['vs', 384, 'bytes', 3712],
];

const LBAF_OFFSET = 128;
const LBAF_MAX = 64;
const LBAF_FIELDS: readonly FieldSpec[] = [['ms', 0, 'u16'], ['lbads', 2, 'u8'], ['rp', 3, 'u8']];

function parseLbaf(buf: Buffer, index: number): LbaFormat {
  const off = LBAF_OFFSET + index * 4;
  const lbads = buf.readUInt8(off + 2);
  return { ms: buf.readUInt16LE(off), lbads, rp: buf.readUInt8(off + 3) & 0x3, dataSize: lbads === 0 ? 0 : 2 ** lbads };
}

/** Index of the LBA format in use from FLBAS (bits 3:0 low, bits 6:5 high). */
export function flbasIndex(flbas: number): number {
  return (flbas & 0xf) | (((flbas >> 5) & 0x3) << 4);
}

/** Parse an Identify Namespace data structure (CNS 00h). `buf` must hold at least 4096 bytes. */
export function parseIdentifyNamespace(buf: Buffer): IdentifyNamespace {
  requireLength(buf, IDENTIFY_DATA_SIZE, 'Identify Namespace data');
  const raw = Buffer.from(buf.subarray(0, IDENTIFY_DATA_SIZE));
  const out: Record<string, unknown> = {};
  decodeFields(raw, 0, ID_NS_FIELDS, out);
  const f = out as unknown as IdentifyNamespaceFields;
  const count = Math.min(f.nlbaf + f.nulbaf + 1, LBAF_MAX);
  const lbaf: LbaFormat[] = [];
  for (let i = 0; i < count; i++) lbaf.push(parseLbaf(raw, i));
  const lbafIndex = flbasIndex(f.flbas);
  const currentLbaFormat = parseLbaf(raw, lbafIndex);
  const { nsfeat, mc, dpc, dps, nmic, rescap, fpi, dlfeat, nsattr } = f;
  return {
    ...f,
    lbaf,
    lbafIndex,
    currentLbaFormat,
    blockSize: currentLbaFormat.dataSize,
    metadataSize: currentLbaFormat.ms,
    metadataExtended: bit(f.flbas, 4),
    decoded: {
      nsfeat: { thinProvisioning: bit(nsfeat, 0), nsabp: bit(nsfeat, 1), dulbe: bit(nsfeat, 2), uidReuse: bit(nsfeat, 3), optPerf: bit(nsfeat, 4) },
      mc: { extended: bit(mc, 0), separate: bit(mc, 1) },
      dpc: { type1: bit(dpc, 0), type2: bit(dpc, 1), type3: bit(dpc, 2), piFirst: bit(dpc, 3), piLast: bit(dpc, 4) },
      dps: { piType: dps & 0x7, piFirst: bit(dps, 3) },
      nmic: { shared: bit(nmic, 0), dispersed: bit(nmic, 1) },
      rescap: {
        ptpl: bit(rescap, 0), writeExclusive: bit(rescap, 1), exclusiveAccess: bit(rescap, 2),
        writeExclusiveRegistrantsOnly: bit(rescap, 3), exclusiveAccessRegistrantsOnly: bit(rescap, 4),
        writeExclusiveAllRegistrants: bit(rescap, 5), exclusiveAccessAllRegistrants: bit(rescap, 6),
        ignoreExistingKey: bit(rescap, 7),
      },
      fpi: { supported: bit(fpi, 7), percentRemaining: fpi & 0x7f },
      dlfeat: { readBehavior: dlfeat & 0x7, writeZeroesDeallocate: bit(dlfeat, 3), guardCrc: bit(dlfeat, 4) },
      nsattr: { writeProtected: bit(nsattr, 0) },
    },
    raw,
  };
}

/**
 * Encode an Identify Namespace data structure (4096 bytes). NLBAF defaults to
 * `lbaf.length - 1 - nulbaf` when LBA formats are given.
 */
export function encodeIdentifyNamespace(ns: Partial<IdentifyNamespaceFields>): Buffer {
  const buf = Buffer.alloc(IDENTIFY_DATA_SIZE);
  const values: Partial<IdentifyNamespaceFields> = { ...ns };
  const lbaf = ns.lbaf ?? [];
  if (lbaf.length > LBAF_MAX) throw new InvalidArgumentError(`IdentifyNamespace.lbaf: at most ${LBAF_MAX} LBA formats`);
  if (values.nlbaf === undefined && lbaf.length > 0) values.nlbaf = Math.max(0, lbaf.length - 1 - (ns.nulbaf ?? 0));
  encodeFields(buf, 0, ID_NS_FIELDS, values, 'IdentifyNamespace');
  lbaf.forEach((l, i) => {
    if (l.rp > 3) throw new InvalidArgumentError(`IdentifyNamespace.lbaf[${i}].rp must be 0..3, got ${l.rp}`);
    encodeFields(buf, LBAF_OFFSET + i * 4, LBAF_FIELDS, { ms: l.ms, lbads: l.lbads, rp: l.rp }, `IdentifyNamespace.lbaf[${i}]`);
  });
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Active Namespace ID list (CNS 02h)
// ---------------------------------------------------------------------------------------------

const NS_LIST_MAX = 1024;

/** Parse a Namespace ID list (CNS 02h): up to 1024 NSIDs, ending at the first 0. */
export function parseNamespaceList(buf: Buffer): number[] {
  requireLength(buf, IDENTIFY_DATA_SIZE, 'Namespace ID list');
  const nsids: number[] = [];
  for (let i = 0; i < NS_LIST_MAX; i++) {
    const nsid = buf.readUInt32LE(i * 4);
    if (nsid === 0) break;
    nsids.push(nsid);
  }
  return nsids;
}

/** Encode a Namespace ID list (4096 bytes, zero-terminated when shorter than 1024 entries). */
export function encodeNamespaceList(nsids: readonly number[]): Buffer {
  if (nsids.length > NS_LIST_MAX) throw new InvalidArgumentError(`a namespace list holds at most ${NS_LIST_MAX} NSIDs, got ${nsids.length}`);
  const buf = Buffer.alloc(IDENTIFY_DATA_SIZE);
  nsids.forEach((nsid, i) => {
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > 0xfffffffe) {
      throw new InvalidArgumentError(`namespace list entry ${i} must be an NSID in 1..0xFFFFFFFE, got ${nsid}`);
    }
    buf.writeUInt32LE(nsid, i * 4);
  });
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Namespace Identification Descriptor list (CNS 03h)
// ---------------------------------------------------------------------------------------------

/** One Namespace Identification Descriptor. */
export interface NsIdDescriptor {
  /** Decoded NIDT. */
  type: 'eui64' | 'nguid' | 'uuid' | 'csi' | 'unknown';
  /** Namespace Identifier Type as on the wire. */
  nidt: number;
  /** The identifier (8 bytes EUI-64, 16 NGUID, 16 UUID, 1 CSI). */
  value: Buffer;
}

const NID_TYPES: Record<number, { type: NsIdDescriptor['type']; length: number }> = {
  1: { type: 'eui64', length: 8 },
  2: { type: 'nguid', length: 16 },
  3: { type: 'uuid', length: 16 },
  4: { type: 'csi', length: 1 },
};

/**
 * Parse a Namespace Identification Descriptor list (CNS 03h). The list ends at a descriptor with
 * NIDL 0 or at the end of the 4096 bytes. A descriptor running past the end, or a known type
 * with the wrong length, is a ProtocolError. Values are copies.
 */
export function parseNsIdDescriptors(buf: Buffer): NsIdDescriptor[] {
  requireLength(buf, IDENTIFY_DATA_SIZE, 'Namespace Identification Descriptor list');
  const out: NsIdDescriptor[] = [];
  let off = 0;
  while (off + 4 <= IDENTIFY_DATA_SIZE) {
    const nidt = buf.readUInt8(off);
    const nidl = buf.readUInt8(off + 1);
    if (nidl === 0) break;
    if (off + 4 + nidl > IDENTIFY_DATA_SIZE) {
      throw new ProtocolError(`namespace identification descriptor at byte ${off} (NIDL ${nidl}) runs past the end of the list`, 0, 0);
    }
    const known = NID_TYPES[nidt];
    if (known !== undefined && known.length !== nidl) {
      throw new ProtocolError(`namespace identification descriptor at byte ${off}: NIDT ${nidt} (${known.type}) must have NIDL ${known.length}, got ${nidl}`, 0, 0);
    }
    out.push({ type: known?.type ?? 'unknown', nidt, value: Buffer.from(buf.subarray(off + 4, off + 4 + nidl)) });
    off += 4 + nidl;
  }
  return out;
}

/** Encode a Namespace Identification Descriptor list (4096 bytes, zero-terminated). */
export function encodeNsIdDescriptors(descs: ReadonlyArray<{ nidt: number; value: Uint8Array }>): Buffer {
  const buf = Buffer.alloc(IDENTIFY_DATA_SIZE);
  let off = 0;
  descs.forEach((d, i) => {
    if (!Number.isInteger(d.nidt) || d.nidt < 1 || d.nidt > 255) throw new InvalidArgumentError(`descriptor ${i}: NIDT must be 1..255`);
    const known = NID_TYPES[d.nidt];
    if (known !== undefined && d.value.length !== known.length) {
      throw new InvalidArgumentError(`descriptor ${i}: a ${known.type} identifier is ${known.length} bytes, got ${d.value.length}`);
    }
    if (d.value.length < 1 || d.value.length > 255) throw new InvalidArgumentError(`descriptor ${i}: value must be 1..255 bytes`);
    if (off + 4 + d.value.length > IDENTIFY_DATA_SIZE) throw new InvalidArgumentError('descriptors do not fit in 4096 bytes');
    buf.writeUInt8(d.nidt, off);
    buf.writeUInt8(d.value.length, off + 1);
    buf.set(d.value, off + 4);
    off += 4 + d.value.length;
  });
  return buf;
}
