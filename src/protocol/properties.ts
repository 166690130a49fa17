/**
 * Controller properties (registers) CAP, VS, CC and CSTS: decode and encode.
 * Bit positions follow the Base spec, "Controller Registers" / "Controller Properties".
 */
import { InvalidArgumentError } from '../errors.js';

/** Controller Capabilities (CAP, offset 00h, 8 bytes). */
export interface Cap {
  /** Maximum Queue Entries Supported, 0's based (bits 15:0). */
  mqes: number;
  /** Contiguous Queues Required (bit 16). */
  cqr: boolean;
  /** Arbitration Mechanism Supported (bits 18:17): bit 0 weighted round robin, bit 1 vendor specific. */
  ams: number;
  /** Timeout in 500 ms units (bits 31:24): worst case time to wait for CSTS.RDY to change. */
  to: number;
  /** Doorbell Stride (bits 35:32). */
  dstrd: number;
  /** NVM Subsystem Reset Supported (bit 36). */
  nssrs: boolean;
  /** Command Sets Supported (bits 44:37): bit 0 NVM command set, bit 6 one or more I/O command sets, bit 7 no I/O command set. */
  css: number;
  /** Boot Partition Support (bit 45). */
  bps: boolean;
  /** Memory Page Size Minimum (bits 51:48): 2^(12 + mpsmin) bytes. */
  mpsmin: number;
  /** Memory Page Size Maximum (bits 55:52): 2^(12 + mpsmax) bytes. */
  mpsmax: number;
  /** Persistent Memory Region Supported (bit 56). */
  pmrs: boolean;
  /** Controller Memory Buffer Supported (bit 57). */
  cmbs: boolean;
  /** Controller Ready Modes Supported (bits 60:59): bit 0 ready with media, bit 1 ready independent of media. */
  crms: number;
  /** Controller Power Scope (bits 47:46). */
  cps?: number;
  /** NVM Subsystem Shutdown Supported (bit 58). */
  nsss?: boolean;
  /** NVM Subsystem Shutdown Enhancements Supported (bit 61). */
  nsses?: boolean;
}

function bits(v: bigint, shift: number, width: number): number {
  return Number((v >> BigInt(shift)) & ((1n << BigInt(width)) - 1n));
}

/** Decode CAP. */
export function decodeCap(v: bigint): Cap {
  if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) throw new InvalidArgumentError('CAP must be a 64-bit bigint');
  return {
    mqes: bits(v, 0, 16),
    cqr: bits(v, 16, 1) === 1,
    ams: bits(v, 17, 2),
    to: bits(v, 24, 8),
    dstrd: bits(v, 32, 4),
    nssrs: bits(v, 36, 1) === 1,
    css: bits(v, 37, 8),
    bps: bits(v, 45, 1) === 1,
    cps: bits(v, 46, 2),
    mpsmin: bits(v, 48, 4),
    mpsmax: bits(v, 52, 4),
    pmrs: bits(v, 56, 1) === 1,
    cmbs: bits(v, 57, 1) === 1,
    nsss: bits(v, 58, 1) === 1,
    crms: bits(v, 59, 2),
    nsses: bits(v, 61, 1) === 1,
  };
}

function field(name: string, v: unknown, width: number): bigint {
  const max = 2 ** width - 1;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new InvalidArgumentError(`${name} must be an integer in 0..${max}, got ${String(v)}`);
  }
  return BigInt(v);
}

const flag = (b: boolean | undefined): bigint => (b ? 1n : 0n);

/** Encode CAP (for the embedded target). */
export function encodeCap(c: Cap): bigint {
  return (
    field('mqes', c.mqes, 16) |
    (flag(c.cqr) << 16n) |
    (field('ams', c.ams, 2) << 17n) |
    (field('to', c.to, 8) << 24n) |
    (field('dstrd', c.dstrd, 4) << 32n) |
    (flag(c.nssrs) << 36n) |
    (field('css', c.css, 8) << 37n) |
    (flag(c.bps) << 45n) |
    (field('cps', c.cps ?? 0, 2) << 46n) |
    (field('mpsmin', c.mpsmin, 4) << 48n) |
    (field('mpsmax', c.mpsmax, 4) << 52n) |
    (flag(c.pmrs) << 56n) |
    (flag(c.cmbs) << 57n) |
    (flag(c.nsss) << 58n) |
    (field('crms', c.crms, 2) << 59n) |
    (flag(c.nsses) << 61n)
  );
}

/** Version (VS, offset 08h). */
export interface Vs {
  major: number;
  minor: number;
  tertiary: number;
}

function checkU32(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < -0x80000000 || v > 0xffffffff) {
    throw new InvalidArgumentError(`${name} must be a 32-bit integer, got ${String(v)}`);
  }
  return v >>> 0;
}

/** Decode VS: major bits 31:16, minor 15:8, tertiary 7:0. */
export function decodeVs(v: number): Vs {
  const x = checkU32('VS', v);
  return { major: x >>> 16, minor: (x >>> 8) & 0xff, tertiary: x & 0xff };
}

/** Encode VS. */
export function encodeVs(v: Vs): number {
  return ((Number(field('major', v.major, 16)) << 16) | (Number(field('minor', v.minor, 8)) << 8) | Number(field('tertiary', v.tertiary, 8))) >>> 0;
}

/** Controller Configuration (CC, offset 14h). */
export interface Cc {
  /** Enable (bit 0). */
  en: boolean;
  /** I/O Command Set Selected (bits 6:4): 0 NVM, 6 all supported I/O command sets, 7 admin only. */
  css: number;
  /** Memory Page Size (bits 10:7): 2^(12 + mps) bytes. */
  mps: number;
  /** Arbitration Mechanism Selected (bits 13:11). */
  ams: number;
  /** Shutdown Notification (bits 15:14): 0 none, 1 normal, 2 abrupt. */
  shn: number;
  /** I/O Submission Queue Entry Size (bits 19:16), log2 bytes (6 for 64-byte SQEs). */
  iosqes: number;
  /** I/O Completion Queue Entry Size (bits 23:20), log2 bytes (4 for 16-byte CQEs). */
  iocqes: number;
  /** Controller Ready Independent of Media Enable (bit 24). */
  crime?: boolean;
}

/** CC.CSS values. */
export const CcCss = { Nvm: 0, AllSupportedIoCommandSets: 6, AdminOnly: 7 } as const;
/** CC.SHN values. */
export const CcShn = { None: 0, Normal: 1, Abrupt: 2 } as const;

/** Encode CC. */
export function encodeCc(c: Cc): number {
  return (
    ((c.en ? 1 : 0) |
      (Number(field('css', c.css, 3)) << 4) |
      (Number(field('mps', c.mps, 4)) << 7) |
      (Number(field('ams', c.ams, 3)) << 11) |
      (Number(field('shn', c.shn, 2)) << 14) |
      (Number(field('iosqes', c.iosqes, 4)) << 16) |
      (Number(field('iocqes', c.iocqes, 4)) << 20) |
      ((c.crime ? 1 : 0) << 24)) >>>
    0
  );
}

/** Decode CC. */
export function decodeCc(v: number): Cc {
  const x = checkU32('CC', v);
  return {
    en: (x & 1) === 1,
    css: (x >>> 4) & 0x7,
    mps: (x >>> 7) & 0xf,
    ams: (x >>> 11) & 0x7,
    shn: (x >>> 14) & 0x3,
    iosqes: (x >>> 16) & 0xf,
    iocqes: (x >>> 20) & 0xf,
    crime: ((x >>> 24) & 1) === 1,
  };
}

/** Controller Status (CSTS, offset 1Ch). */
export interface Csts {
  /** Ready (bit 0). */
  rdy: boolean;
  /** Controller Fatal Status (bit 1). */
  cfs: boolean;
  /** Shutdown Status (bits 3:2): 0 normal operation, 1 shutdown processing occurring, 2 shutdown complete. */
  shst: number;
  /** NVM Subsystem Reset Occurred (bit 4). */
  nssro: boolean;
  /** Processing Paused (bit 5). */
  pp: boolean;
  /** Shutdown Type (bit 6): 1 when the shutdown reported by SHST is an NVM subsystem shutdown. */
  st: boolean;
}

/** CSTS.SHST values. */
export const CstsShst = { Normal: 0, Occurring: 1, Complete: 2 } as const;

/** Decode CSTS. */
export function decodeCsts(v: number): Csts {
  const x = checkU32('CSTS', v);
  return {
    rdy: (x & 1) === 1,
    cfs: ((x >>> 1) & 1) === 1,
    shst: (x >>> 2) & 0x3,
    nssro: ((x >>> 4) & 1) === 1,
    pp: ((x >>> 5) & 1) === 1,
    st: ((x >>> 6) & 1) === 1,
  };
}

/** Encode CSTS (for the embedded target). */
export function encodeCsts(c: Csts): number {
  return (
    ((c.rdy ? 1 : 0) |
      ((c.cfs ? 1 : 0) << 1) |
      (Number(field('shst', c.shst, 2)) << 2) |
      ((c.nssro ? 1 : 0) << 4) |
      ((c.pp ? 1 : 0) << 5) |
      ((c.st ? 1 : 0) << 6)) >>>
    0
  );
}

/** The value to write to NSSR to start an NVM subsystem reset ("NVMe" in ASCII). */
export const NSSR_RESET_VALUE = 0x4e564d65;

/** Size in bytes (4 or 8) of the property at `offset`: CAP, ASQ, ACQ, BPMBL and CMBMSC are 8 bytes, the others 4. */
export function propertySize(offset: number): 4 | 8 {
  return offset === 0x00 || offset === 0x28 || offset === 0x30 || offset === 0x48 || offset === 0x50 ? 8 : 4;
}
