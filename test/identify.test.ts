import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { InvalidArgumentError, ProtocolError } from '../src/errors.js';
import { IDENTIFY_DATA_SIZE } from '../src/protocol/constants.js';
import {
  encodeIdentifyController,
  encodeIdentifyNamespace,
  encodeNamespaceList,
  encodeNsIdDescriptors,
  flbasIndex,
  maxInCapsuleDataBytes,
  maxTransferBytes,
  mdtsBytes,
  parseIdentifyController,
  parseIdentifyNamespace,
  parseNamespaceList,
  parseNsIdDescriptors,
  type IdentifyControllerFields,
} from '../src/protocol/identify.js';

// Expected bytes are written here by hand at the offsets of the NVMe Base Specification 2.x
// (Identify Controller / Identify Namespace / CNS 02h / CNS 03h), never by the encoders under test.

function putAscii(b: Buffer, off: number, size: number, s: string, pad = 0x20): void {
  b.fill(pad, off, off + size);
  b.write(s, off, 'latin1');
}

const SUBNQN = 'nqn.2014-08.org.nvmexpress:uuid:8a3b6f4e-1c2d-4e5f-9a0b-112233445566';

function controllerVector(): Buffer {
  const b = Buffer.alloc(4096);
  b.writeUInt16LE(0x1b36, 0); // VID
  b.writeUInt16LE(0x1af4, 2); // SSVID
  putAscii(b, 4, 20, 'SN0123456789'); // SN
  putAscii(b, 24, 40, 'Linux'); // MN
  putAscii(b, 64, 8, '6.1.0-9'); // FR
  b[72] = 6; // RAB
  b[73] = 0x3c; b[74] = 0x2b; b[75] = 0x1a; // IEEE OUI, little-endian
  b[76] = 0x0b; // CMIC: multi-port, multi-controller, ANA reporting
  b[77] = 5; // MDTS
  b.writeUInt16LE(0x1234, 78); // CNTLID
  b.writeUInt32LE(0x00010400, 80); // VER 1.4.0
  b.writeUInt32LE(1000, 84); // RTD3R
  b.writeUInt32LE(2000, 88); // RTD3E
  b.writeUInt32LE(0x80000900, 92); // OAES: NS attribute (8), ANA change (11), discovery log change (31)
  b.writeUInt32LE(0x00008001, 96); // CTRATT: 128-bit host ID, extended LBA formats
  b.writeUInt16LE(0x0003, 100); // RRLS
  b.writeUInt32LE(777, 104); // NSSL
  b[111] = 1; // CNTRLTYPE: I/O controller
  for (let i = 0; i < 16; i++) b[112 + i] = 0xf0 + i; // FGUID
  b.writeUInt16LE(5, 128); b.writeUInt16LE(10, 130); b.writeUInt16LE(20, 132); // CRDT1..3
  b.writeUInt16LE(0x0008, 256); // OACS: namespace management
  b[258] = 3; // ACL
  b[259] = 3; // AERL
  b[260] = 0x03; // FRMW
  b[261] = 0x27; // LPA: smart per ns, cmd effects, extended data, supported log pages
  b[262] = 127; // ELPE
  b[263] = 1; // NPSS: two power states
  b.writeUInt16LE(343, 266); // WCTEMP
  b.writeUInt16LE(373, 268); // CCTEMP
  b.writeBigUInt64LE(0xffffffffffffffffn, 280); b.writeBigUInt64LE(1n, 288); // TNVMCAP = 2^65 - 1
  b.writeBigUInt64LE(4096n, 296); // UNVMCAP
  b.writeUInt16LE(10, 320); // KAS
  b[342] = 10; // ANATT
  b[343] = 0x5f; // ANACAP: all states + ANAGRPID does not change
  b.writeUInt32LE(128, 344); // ANAGRPMAX
  b.writeUInt32LE(64, 348); // NANAGRPID
  b.writeUInt16LE(1, 386); // CQT
  b[512] = 0x66; // SQES
  b[513] = 0x44; // CQES
  b.writeUInt16LE(128, 514); // MAXCMD
  b.writeUInt32LE(1024, 516); // NN
  b.writeUInt16LE(0x003d, 520); // ONCS: compare, DSM, write zeroes, save, reservations
  b.writeUInt16LE(0x0001, 522); // FUSES: compare and write
  b[524] = 0x01; // FNA
  b[525] = 0x07; // VWC: present, flush behaviour 3
  b.writeUInt16LE(7, 526); // AWUN
  b.writeUInt16LE(3, 528); // AWUPF
  b.writeUInt16LE(1, 532); // ACWU
  b.writeUInt32LE(0x00100005, 536); // SGLS: supported, keyed, offset
  b.writeUInt32LE(1024, 540); // MNAN
  putAscii(b, 768, 256, SUBNQN, 0); // SUBNQN, NUL padded
  b.writeUInt32LE(260, 1792); // IOCCSZ (16-byte units)
  b.writeUInt32LE(1, 1796); // IORCSZ
  b.writeUInt16LE(0, 1800); // ICDOFF
  b[1802] = 0x00; // FCATT: dynamic model
  b[1803] = 1; // MSDBD
  b.writeUInt16LE(1, 1804); // OFCS: Disconnect
  b[1806] = 0; // DCTYPE
  // PSD0 at 2048
  b.writeUInt16LE(2500, 2048);
  b.writeUInt32LE(5, 2052);
  b.writeUInt32LE(10, 2056);
  // PSD1 at 2080
  b.writeUInt16LE(800, 2080);
  b[2083] = 0x02; // NOPS
  b.writeUInt32LE(100, 2084);
  b.writeUInt32LE(200, 2088);
  b[2092] = 1; b[2093] = 1; b[2094] = 1; b[2095] = 1; // RRT RRL RWT RWL
  b.writeUInt16LE(50, 2096); // IDLP
  b[2098] = 0x80; // IPS = 2
  b.writeUInt16LE(300, 2100); // ACTP
  b[2102] = 0x42; // APW = 2, APS = 1
  b[3072] = 0xab; b[4095] = 0xcd; // vendor specific
  return b;
}

describe('parseIdentifyController', () => {
  it('reads every field at its spec offset', () => {
    const c = parseIdentifyController(controllerVector());
    expect(c.vid).toBe(0x1b36);
    expect(c.ssvid).toBe(0x1af4);
    expect(c.sn).toBe('SN0123456789');
    expect(c.mn).toBe('Linux');
    expect(c.fr).toBe('6.1.0-9');
    expect(c.rab).toBe(6);
    expect(c.ieee).toBe(0x1a2b3c);
    expect(c.cmic).toBe(0x0b);
    expect(c.decoded.cmic).toEqual({ multiPort: true, multiController: true, sriov: false, anaReporting: true });
    expect(c.mdts).toBe(5);
    expect(c.cntlid).toBe(0x1234);
    expect(c.ver).toBe(0x00010400);
    expect(c.version).toEqual({ major: 1, minor: 4, tertiary: 0 });
    expect(c.rtd3r).toBe(1000);
    expect(c.rtd3e).toBe(2000);
    expect(c.oaes).toBe(0x80000900);
    expect(c.decoded.oaes.namespaceAttribute).toBe(true);
    expect(c.decoded.oaes.ana).toBe(true);
    expect(c.decoded.oaes.discoveryLogChange).toBe(true);
    expect(c.decoded.oaes.firmwareActivation).toBe(false);
    expect(c.decoded.ctratt.hostId128).toBe(true);
    expect(c.decoded.ctratt.extendedLbaFormats).toBe(true);
    expect(c.decoded.ctratt.tbkas).toBe(false);
    expect(c.rrls).toBe(3);
    expect(c.nssl).toBe(777);
    expect(c.cntrltype).toBe(1);
    expect(c.fguid.toString('hex')).toBe('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff');
    expect([c.crdt1, c.crdt2, c.crdt3]).toEqual([5, 10, 20]);
    expect(c.oacs).toBe(8);
    expect(c.decoded.oacs.namespaceManagement).toBe(true);
    expect(c.acl).toBe(3);
    expect(c.aerl).toBe(3);
    expect(c.frmw).toBe(3);
    expect(c.lpa).toBe(0x27);
    expect(c.decoded.lpa).toEqual({
      smartPerNamespace: true, commandEffects: true, extendedData: true, telemetry: false,
      persistentEvent: false, supportedLogPages: true, telemetryDa4: false,
    });
    expect(c.elpe).toBe(127);
    expect(c.npss).toBe(1);
    expect(c.wctemp).toBe(343);
    expect(c.cctemp).toBe(373);
    expect(c.tnvmcap).toBe((1n << 65n) - 1n);
    expect(c.unvmcap).toBe(4096n);
    expect(c.kas).toBe(10);
    expect(c.anatt).toBe(10);
    expect(c.anacap).toBe(0x5f);
    expect(c.decoded.anacap).toEqual({
      optimized: true, nonOptimized: true, inaccessible: true, persistentLoss: true, change: true,
      grpidNotChanged: true, grpidMgmt: false,
    });
    expect(c.anagrpmax).toBe(128);
    expect(c.nanagrpid).toBe(64);
    expect(c.cqt).toBe(1);
    expect(c.sqes).toBe(0x66);
    expect(c.cqes).toBe(0x44);
    expect(c.maxcmd).toBe(128);
    expect(c.nn).toBe(1024);
    expect(c.oncs).toBe(0x3d);
    expect(c.decoded.oncs).toEqual({
      compare: true, writeUncorrectable: false, dsm: true, writeZeroes: true, save: true, reservations: true,
      timestamp: false, verify: false, copy: false, copySingleAtomicity: false, allFastCopy: false, maxwzd: false,
      nszs: false,
    });
    expect(c.decoded.fuses.compareAndWrite).toBe(true);
    expect(c.fna).toBe(1);
    expect(c.decoded.vwc).toEqual({ present: true, flushBehavior: 3 });
    expect(c.awun).toBe(7);
    expect(c.awupf).toBe(3);
    expect(c.acwu).toBe(1);
    expect(c.sgls).toBe(0x00100005);
    expect(c.decoded.sgls).toMatchObject({ support: 1, supported: true, keyed: true, offset: true, bitBucket: false, transportDataBlock: false });
    expect(c.mnan).toBe(1024);
    expect(c.subnqn).toBe(SUBNQN);
    expect(c.ioccsz).toBe(260);
    expect(c.iorcsz).toBe(1);
    expect(c.icdoff).toBe(0);
    expect(c.fcatt).toBe(0);
    expect(c.decoded.fcatt.staticController).toBe(false);
    expect(c.msdbd).toBe(1);
    expect(c.ofcs).toBe(1);
    expect(c.decoded.ofcs.disconnect).toBe(true);
    expect(c.dctype).toBe(0);
    expect(c.psd).toHaveLength(2);
    expect(c.psd[0]).toMatchObject({ mp: 2500, mxps: false, nops: false, enlat: 5, exlat: 10 });
    expect(c.psd[1]).toMatchObject({
      mp: 800, nops: true, enlat: 100, exlat: 200, rrt: 1, rrl: 1, rwt: 1, rwl: 1, idlp: 50, ips: 2, actp: 300, apw: 2, aps: 1,
    });
    expect(c.vs).toHaveLength(1024);
    expect(c.vs[0]).toBe(0xab);
    expect(c.vs[1023]).toBe(0xcd);
    expect(c.raw).toHaveLength(4096);
  });

  it('keeps a private copy of the bytes', () => {
    const v = controllerVector();
    const c = parseIdentifyController(v);
    v.fill(0);
    expect(c.fguid[0]).toBe(0xf0);
    expect(c.raw[0]).toBe(0x36);
  });

  it('trims NUL padding and leading spaces in ASCII fields', () => {
    const v = controllerVector();
    v.fill(0, 64, 72);
    v.write('1.0', 64, 'latin1');
    putAscii(v, 4, 20, '   right-justified');
    const c = parseIdentifyController(v);
    expect(c.fr).toBe('1.0');
    expect(c.sn).toBe('right-justified');
  });

  it('reads the ANA fields at 342/343/344/348 (not one byte later)', () => {
    const v = Buffer.alloc(4096);
    v[342] = 0x11; v[343] = 0x22;
    v.writeUInt32LE(0x33333333, 344);
    v.writeUInt32LE(0x44444444, 348);
    const c = parseIdentifyController(v);
    expect([c.anatt, c.anacap, c.anagrpmax, c.nanagrpid]).toEqual([0x11, 0x22, 0x33333333, 0x44444444]);
  });

  it('returns npss + 1 power states, at most 32', () => {
    const v = Buffer.alloc(4096);
    v[263] = 255;
    expect(parseIdentifyController(v).psd).toHaveLength(32);
    v[263] = 0;
    expect(parseIdentifyController(v).psd).toHaveLength(1);
  });

  it('rejects a short buffer with a ProtocolError', () => {
    expect(() => parseIdentifyController(Buffer.alloc(4095))).toThrow(ProtocolError);
    expect(() => parseIdentifyController(Buffer.alloc(100))).toThrow(/Identify Controller data is too short: 100 bytes, at least 4096/);
  });
});

describe('encodeIdentifyController', () => {
  it('reproduces the hand-written vector from its parsed fields', () => {
    const v = controllerVector();
    expect(encodeIdentifyController(parseIdentifyController(v)).equals(v)).toBe(true);
  });

  it('round-trips fields through parse', () => {
    const fields: Partial<IdentifyControllerFields> = {
      vid: 0xabcd, sn: 'abc', mn: 'nvmeof embedded', fr: '0.1', cntlid: 7, mdts: 0, ver: 0x00020000,
      subnqn: 'nqn.2024-01.io.example:target', ioccsz: 516, iorcsz: 1, kas: 1, nn: 32, sgls: 0x100001,
      maxdna: 123456789012345678901234567890n, megcap: 5n, cntrltype: 1, anagrpmax: 4, nanagrpid: 4,
      psd: [{ mp: 1, mxps: true, nops: false, enlat: 0, exlat: 0, rrt: 0, rrl: 0, rwt: 0, rwl: 0, idlp: 0, ips: 0, actp: 0, apw: 0, aps: 0, epfrt: 1, fqvt: 2, epfvt: 3, epfrts: 4, fqvts: 5, epfvts: 6 }],
    };
    const c = parseIdentifyController(encodeIdentifyController(fields));
    expect(c).toMatchObject({ ...fields, psd: fields.psd });
    expect(c.fguid.equals(Buffer.alloc(16))).toBe(true);
  });

  it('space-pads SN, MN and FR when absent', () => {
    const b = encodeIdentifyController({});
    expect(b.subarray(4, 72).every((x) => x === 0x20)).toBe(true);
    expect(b.subarray(768, 1024).every((x) => x === 0)).toBe(true);
  });

  it('rejects values that do not fit', () => {
    expect(() => encodeIdentifyController({ sn: 'x'.repeat(21) })).toThrow(InvalidArgumentError);
    expect(() => encodeIdentifyController({ mn: 'naïve' })).toThrow(/printable ASCII/);
    expect(() => encodeIdentifyController({ subnqn: 'n'.repeat(256) })).toThrow(InvalidArgumentError);
    expect(() => encodeIdentifyController({ cntlid: 0x10000 })).toThrow(/cntlid/);
    expect(() => encodeIdentifyController({ mdts: -1 })).toThrow(InvalidArgumentError);
    expect(() => encodeIdentifyController({ tnvmcap: 1n << 128n })).toThrow(/tnvmcap/);
    expect(() => encodeIdentifyController({ fguid: Buffer.alloc(15) })).toThrow(/fguid/);
    expect(() => encodeIdentifyController({ psd: new Array(33).fill({}) })).toThrow(/power states/);
  });
});

describe('mdtsBytes / maxTransferBytes / maxInCapsuleDataBytes', () => {
  it('computes 2^(12+MPSMIN) * 2^MDTS', () => {
    expect(mdtsBytes(5, 0)).toBe(131072);
    expect(mdtsBytes(1, 0)).toBe(8192);
    expect(mdtsBytes(3, 4)).toBe(2 ** 19);
    expect(mdtsBytes(0, 0)).toBeNull();
    expect(maxTransferBytes(parseIdentifyController(controllerVector()), 0)).toBe(131072);
  });
  it('validates its arguments', () => {
    expect(() => mdtsBytes(256, 0)).toThrow(InvalidArgumentError);
    expect(() => mdtsBytes(1, 16)).toThrow(InvalidArgumentError);
    expect(() => mdtsBytes(1.5, 0)).toThrow(InvalidArgumentError);
  });
  it('derives in-capsule data size from IOCCSZ', () => {
    expect(maxInCapsuleDataBytes(260)).toBe(4096);
    expect(maxInCapsuleDataBytes(4)).toBe(0);
    expect(maxInCapsuleDataBytes(0)).toBe(0);
  });
});

function namespaceVector(): Buffer {
  const b = Buffer.alloc(4096);
  b.writeBigUInt64LE(0x200000n, 0); // NSZE
  b.writeBigUInt64LE(0x1f0000n, 8); // NCAP
  b.writeBigUInt64LE(0x1000n, 16); // NUSE
  b[24] = 0x11; // NSFEAT: thin provisioning, OPTPERF
  b[25] = 1; // NLBAF: two formats
  b[26] = 0x11; // FLBAS: format 1, extended metadata
  b[27] = 0x03; // MC
  b[28] = 0x1f; // DPC
  b[29] = 0x09; // DPS: type 1, PI first
  b[30] = 0x01; // NMIC: shared
  b[31] = 0xff; // RESCAP
  b[32] = 0x80; // FPI: supported, 0% remaining
  b[33] = 0x09; // DLFEAT: reads zeroes, write zeroes deallocates
  b.writeUInt16LE(7, 34); // NAWUN
  b.writeUInt16LE(3, 36); // NAWUPF
  b.writeUInt16LE(1, 38); // NACWU
  b.writeUInt16LE(63, 46); // NOIOB
  b.writeBigUInt64LE(1n << 30n, 48); // NVMCAP low
  b.writeUInt16LE(7, 64); // NPWG
  b.writeUInt16LE(7, 66); // NPWA
  b.writeUInt16LE(255, 68); // NPDG
  b.writeUInt16LE(255, 70); // NPDA
  b.writeUInt16LE(15, 72); // NOWS
  b.writeUInt16LE(128, 74); // MSSRL
  b.writeUInt32LE(0x10000, 76); // MCL
  b[80] = 7; // MSRC
  b.writeUInt32LE(2, 92); // ANAGRPID
  b[99] = 0x01; // NSATTR: write protected
  b.writeUInt16LE(3, 100); // NVMSETID
  b.writeUInt16LE(4, 102); // ENDGID
  for (let i = 0; i < 16; i++) b[104 + i] = 0x10 + i; // NGUID
  for (let i = 0; i < 8; i++) b[120 + i] = 0xe0 + i; // EUI64
  b.set([0x00, 0x00, 9, 2], 128); // LBAF0: MS 0, LBADS 9, RP 2
  b.set([0x08, 0x00, 12, 0], 132); // LBAF1: MS 8, LBADS 12, RP 0
  return b;
}

describe('parseIdentifyNamespace', () => {
  it('reads every field at its spec offset', () => {
    const ns = parseIdentifyNamespace(namespaceVector());
    expect(ns.nsze).toBe(0x200000n);
    expect(ns.ncap).toBe(0x1f0000n);
    expect(ns.nuse).toBe(0x1000n);
    expect(ns.nsfeat).toBe(0x11);
    expect(ns.decoded.nsfeat).toEqual({ thinProvisioning: true, nsabp: false, dulbe: false, uidReuse: false, optPerf: true });
    expect(ns.nlbaf).toBe(1);
    expect(ns.flbas).toBe(0x11);
    expect(ns.decoded.mc).toEqual({ extended: true, separate: true });
    expect(ns.decoded.dpc).toEqual({ type1: true, type2: true, type3: true, piFirst: true, piLast: true });
    expect(ns.decoded.dps).toEqual({ piType: 1, piFirst: true });
    expect(ns.nmic).toBe(1);
    expect(ns.decoded.nmic).toEqual({ shared: true, dispersed: false });
    expect(ns.rescap).toBe(0xff);
    expect(Object.values(ns.decoded.rescap).every(Boolean)).toBe(true);
    expect(ns.decoded.fpi).toEqual({ supported: true, percentRemaining: 0 });
    expect(ns.decoded.dlfeat).toEqual({ readBehavior: 1, writeZeroesDeallocate: true, guardCrc: false });
    expect([ns.nawun, ns.nawupf, ns.nacwu, ns.noiob]).toEqual([7, 3, 1, 63]);
    expect(ns.nvmcap).toBe(1n << 30n);
    expect([ns.npwg, ns.npwa, ns.npdg, ns.npda, ns.nows]).toEqual([7, 7, 255, 255, 15]);
    expect([ns.mssrl, ns.mcl, ns.msrc]).toEqual([128, 0x10000, 7]);
    expect(ns.anagrpid).toBe(2);
    expect(ns.nsattr).toBe(1);
    expect(ns.decoded.nsattr.writeProtected).toBe(true);
    expect(ns.nvmsetid).toBe(3);
    expect(ns.endgid).toBe(4);
    expect(ns.nguid.toString('hex')).toBe('101112131415161718191a1b1c1d1e1f');
    expect(ns.eui64.toString('hex')).toBe('e0e1e2e3e4e5e6e7');
    expect(ns.lbaf).toEqual([
      { ms: 0, lbads: 9, rp: 2, dataSize: 512 },
      { ms: 8, lbads: 12, rp: 0, dataSize: 4096 },
    ]);
    expect(ns.lbafIndex).toBe(1);
    expect(ns.currentLbaFormat).toEqual({ ms: 8, lbads: 12, rp: 0, dataSize: 4096 });
    expect(ns.blockSize).toBe(4096);
    expect(ns.metadataSize).toBe(8);
    expect(ns.metadataExtended).toBe(true);
    expect(ns.vs).toHaveLength(3712);
  });

  it('uses FLBAS bits 6:5 as the high bits of the format index (more than 16 formats)', () => {
    const b = Buffer.alloc(4096);
    b.writeBigUInt64LE(100n, 0);
    b[25] = 17; // NLBAF: 18 formats
    b[82] = 2; // NULBAF: 2 more
    b[26] = 0x20 | 0x03; // FLBAS: index 0b01_0011 = 19
    for (let i = 0; i < 20; i++) b.set([0, 0, 9, 0], 128 + i * 4);
    b.set([16, 0, 12, 1], 128 + 19 * 4); // LBAF19
    const ns = parseIdentifyNamespace(b);
    expect(flbasIndex(0x23)).toBe(19);
    expect(ns.lbaf).toHaveLength(20);
    expect(ns.lbafIndex).toBe(19);
    expect(ns.blockSize).toBe(4096);
    expect(ns.metadataSize).toBe(16);
    expect(ns.metadataExtended).toBe(false);
    expect(ns.currentLbaFormat.rp).toBe(1);
  });

  it('caps the format count at 64', () => {
    const b = Buffer.alloc(4096);
    b[25] = 63;
    b[82] = 63;
    expect(parseIdentifyNamespace(b).lbaf).toHaveLength(64);
  });

  it('parses a zero-filled (inactive) namespace without failing', () => {
    const ns = parseIdentifyNamespace(Buffer.alloc(4096));
    expect(ns.ncap).toBe(0n);
    expect(ns.blockSize).toBe(0);
    expect(ns.lbaf).toHaveLength(1);
  });

  it('rejects a short buffer', () => {
    expect(() => parseIdentifyNamespace(Buffer.alloc(384))).toThrow(ProtocolError);
  });

  it('encodes the hand-written vector back to the same bytes', () => {
    const v = namespaceVector();
    expect(encodeIdentifyNamespace(parseIdentifyNamespace(v)).equals(v)).toBe(true);
  });

  it('round-trips and defaults NLBAF from the formats given', () => {
    const ns = parseIdentifyNamespace(encodeIdentifyNamespace({
      nsze: 2048n, ncap: 2048n, nuse: 2048n, flbas: 0, nmic: 1, anagrpid: 1,
      nguid: Buffer.alloc(16, 0x42), lbaf: [{ ms: 0, lbads: 9, rp: 0 }, { ms: 0, lbads: 12, rp: 0 }, { ms: 8, lbads: 12, rp: 3 }],
    }));
    expect(ns.nlbaf).toBe(2);
    expect(ns.lbaf.map((l) => l.dataSize)).toEqual([512, 4096, 4096]);
    expect(ns.blockSize).toBe(512);
    expect(ns.nguid.equals(Buffer.alloc(16, 0x42))).toBe(true);
    expect(() => encodeIdentifyNamespace({ lbaf: [{ ms: 0, lbads: 9, rp: 4 }] })).toThrow(InvalidArgumentError);
    expect(() => encodeIdentifyNamespace({ nsze: -1n })).toThrow(InvalidArgumentError);
    expect(() => encodeIdentifyNamespace({ lbaf: new Array(65).fill({ ms: 0, lbads: 9, rp: 0 }) })).toThrow(InvalidArgumentError);
  });
});

describe('namespace list (CNS 02h)', () => {
  it('stops at the first zero', () => {
    const b = Buffer.alloc(4096);
    b.writeUInt32LE(1, 0);
    b.writeUInt32LE(2, 4);
    b.writeUInt32LE(5, 8);
    b.writeUInt32LE(9, 16); // after the terminator: ignored
    expect(parseNamespaceList(b)).toEqual([1, 2, 5]);
  });
  it('returns 1024 entries when the list is full', () => {
    const b = Buffer.alloc(4096);
    for (let i = 0; i < 1024; i++) b.writeUInt32LE(i + 1, i * 4);
    const list = parseNamespaceList(b);
    expect(list).toHaveLength(1024);
    expect(list[1023]).toBe(1024);
  });
  it('rejects a short buffer and bad input to the encoder', () => {
    expect(() => parseNamespaceList(Buffer.alloc(8))).toThrow(ProtocolError);
    expect(() => encodeNamespaceList([0])).toThrow(InvalidArgumentError);
    expect(() => encodeNamespaceList([0xffffffff])).toThrow(InvalidArgumentError);
    expect(() => encodeNamespaceList(new Array(1025).fill(1))).toThrow(InvalidArgumentError);
  });
  it('round-trips', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 0xfffffffe }), { maxLength: 1024 }), (nsids) => {
      expect(parseNamespaceList(encodeNamespaceList(nsids))).toEqual(nsids);
    }), { numRuns: 50 });
  });
});

function descriptorVector(): Buffer {
  const b = Buffer.alloc(4096);
  // EUI-64 at 0: NIDT 1, NIDL 8, 2 reserved bytes, value
  b[0] = 1; b[1] = 8;
  for (let i = 0; i < 8; i++) b[4 + i] = 0xa0 + i;
  // NGUID at 12: NIDT 2, NIDL 16
  b[12] = 2; b[13] = 16;
  for (let i = 0; i < 16; i++) b[16 + i] = 0xb0 + i;
  // UUID at 32: NIDT 3, NIDL 16
  b[32] = 3; b[33] = 16;
  Buffer.from('0f1e2d3c4b5a69788796a5b4c3d2e1f0', 'hex').copy(b, 36);
  // CSI at 52: NIDT 4, NIDL 1, value 0 (NVM command set)
  b[52] = 4; b[53] = 1; b[56] = 0;
  return b;
}

describe('namespace identification descriptors (CNS 03h)', () => {
  it('parses all four types', () => {
    const d = parseNsIdDescriptors(descriptorVector());
    expect(d.map((x) => [x.type, x.nidt, x.value.toString('hex')])).toEqual([
      ['eui64', 1, 'a0a1a2a3a4a5a6a7'],
      ['nguid', 2, 'b0b1b2b3b4b5b6b7b8b9babbbcbdbebf'],
      ['uuid', 3, '0f1e2d3c4b5a69788796a5b4c3d2e1f0'],
      ['csi', 4, '00'],
    ]);
  });
  it('keeps unknown types', () => {
    const b = Buffer.alloc(4096);
    b[0] = 9; b[1] = 2; b[4] = 0x12; b[5] = 0x34;
    b[6] = 4; b[7] = 1; b[10] = 2;
    expect(parseNsIdDescriptors(b)).toEqual([
      { type: 'unknown', nidt: 9, value: Buffer.from([0x12, 0x34]) },
      { type: 'csi', nidt: 4, value: Buffer.from([2]) },
    ]);
  });
  it('returns an empty list for zeroes', () => {
    expect(parseNsIdDescriptors(Buffer.alloc(4096))).toEqual([]);
  });
  it('rejects a known type with the wrong length', () => {
    const b = Buffer.alloc(4096);
    b[0] = 3; b[1] = 8; // UUID must be 16 bytes
    expect(() => parseNsIdDescriptors(b)).toThrow(ProtocolError);
  });
  it('rejects a descriptor running past the end', () => {
    const b = Buffer.alloc(4096);
    let off = 0;
    while (off + 4 + 255 <= 4096 - 20) { b[off] = 9; b[off + 1] = 255; off += 259; }
    b[off] = 9; b[off + 1] = 255; // does not fit
    expect(() => parseNsIdDescriptors(b)).toThrow(/runs past the end/);
  });
  it('rejects a short buffer', () => {
    expect(() => parseNsIdDescriptors(Buffer.alloc(64))).toThrow(ProtocolError);
  });
  it('encodes the vector back to the same bytes and validates lengths', () => {
    const v = descriptorVector();
    expect(encodeNsIdDescriptors(parseNsIdDescriptors(v)).equals(v)).toBe(true);
    expect(() => encodeNsIdDescriptors([{ nidt: 2, value: Buffer.alloc(8) }])).toThrow(InvalidArgumentError);
    expect(() => encodeNsIdDescriptors([{ nidt: 0, value: Buffer.alloc(8) }])).toThrow(InvalidArgumentError);
    expect(() => encodeNsIdDescriptors(new Array(20).fill({ nidt: 9, value: Buffer.alloc(255) }))).toThrow(/4096/);
  });
  it('never throws anything but ProtocolError on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 4096, maxLength: 4096 }), (bytes) => {
      try {
        parseNsIdDescriptors(Buffer.from(bytes));
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
      }
    }), { numRuns: 100 });
  });
});

it('IDENTIFY_DATA_SIZE is 4096', () => {
  expect(IDENTIFY_DATA_SIZE).toBe(4096);
});
