import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { InvalidArgumentError, ProtocolError } from '../src/errors.js';
import { AnaState, anaStateName, isDefinedAnaState } from '../src/protocol/ana.js';
import {
  DiscoverySubtype,
  TransportType,
  anaLogSize,
  discoveryLogSize,
  encodeAnaLog,
  encodeChangedNsList,
  encodeDiscoveryLog,
  encodeDiscoveryLogEntry,
  encodeErrorLog,
  encodeReservationNotificationLog,
  encodeSmartLog,
  parseAnaLog,
  parseChangedNsList,
  parseDiscoveryLog,
  parseDiscoveryLogEntry,
  parseDiscoveryLogHeader,
  parseErrorLog,
  parseReservationNotificationLog,
  parseSmartLog,
} from '../src/protocol/logpages.js';

// Expected bytes are written here by hand at the offsets of the NVMe Base Specification 2.x and the
// NVMe over Fabrics specification (Discovery log), never by the encoders under test.

function putStr(b: Buffer, off: number, size: number, s: string, pad = 0): void {
  b.fill(pad, off, off + size);
  b.write(s, off, 'utf8');
}

const DISC_NQN = 'nqn.2014-08.org.nvmexpress.discovery';
const DISK_NQN = 'nqn.2024-01.io.example:disk1';

/** Header + 3 entries: the current discovery subsystem, an NVM subsystem and a referral. */
function discoveryVector(): Buffer {
  const b = Buffer.alloc(1024 + 3 * 1024);
  b.writeBigUInt64LE(7n, 0); // GENCTR
  b.writeBigUInt64LE(3n, 8); // NUMREC
  b.writeUInt16LE(0, 16); // RECFMT
  // Entry 0 at 1024: current discovery subsystem over TCP/IPv4
  let e = 1024;
  b[e] = 3; b[e + 1] = 1; b[e + 2] = 3; b[e + 3] = 0x02; // TRTYPE TCP, ADRFAM IPv4, SUBTYPE 3, TREQ not required
  b.writeUInt16LE(1, e + 4); // PORTID
  b.writeUInt16LE(0xffff, e + 6); // CNTLID
  b.writeUInt16LE(32, e + 8); // ASQSZ
  b.writeUInt16LE(0x0003, e + 10); // EFLAGS: DUPRETINFO | EPCSD
  putStr(b, e + 32, 32, '8009');
  putStr(b, e + 256, 256, DISC_NQN);
  putStr(b, e + 512, 256, '192.168.1.10');
  b[e + 768] = 0; // TSAS.SECTYPE none
  // Entry 1 at 2048: NVM subsystem, TLS 1.3
  e = 2048;
  b[e] = 3; b[e + 1] = 1; b[e + 2] = 2; b[e + 3] = 0x05; // TREQ required + SQ flow control disable
  b.writeUInt16LE(1, e + 4);
  b.writeUInt16LE(0xffff, e + 6);
  b.writeUInt16LE(128, e + 8);
  putStr(b, e + 32, 32, '4420');
  putStr(b, e + 256, 256, DISK_NQN);
  putStr(b, e + 512, 256, '192.168.1.10');
  b[e + 768] = 2; // SECTYPE TLS 1.3
  // Entry 2 at 3072: referral over IPv6, space padded strings
  e = 3072;
  b[e] = 3; b[e + 1] = 2; b[e + 2] = 1; b[e + 3] = 0;
  b.writeUInt16LE(2, e + 4);
  b.writeUInt16LE(0xffff, e + 6);
  b.writeUInt16LE(32, e + 8);
  b.writeUInt16LE(0x0004, e + 10); // EFLAGS: NCC
  putStr(b, e + 32, 32, '8009', 0x20);
  putStr(b, e + 256, 256, DISC_NQN);
  putStr(b, e + 512, 256, 'fd00::2', 0x20);
  return b;
}

describe('discovery log (LID 70h)', () => {
  it('parses a header and three entries of different subtypes', () => {
    const log = parseDiscoveryLog(discoveryVector());
    expect(log.genctr).toBe(7n);
    expect(log.numrec).toBe(3n);
    expect(log.recfmt).toBe(0);
    expect(log.complete).toBe(true);
    expect(log.entries).toHaveLength(3);
    const [cur, nvm, ref] = log.entries;
    expect(cur).toMatchObject({
      trtype: 3, adrfam: 1, subtype: 3, subtypeName: 'current-discovery', treq: 2, portid: 1, cntlid: 0xffff,
      asqsz: 32, eflags: 3, trsvcid: '8009', subnqn: DISC_NQN, traddr: '192.168.1.10', tcpSectype: 0,
    });
    expect(cur!.decoded).toEqual({
      treq: { secureChannel: 'not-required', sqFlowControlDisable: false },
      eflags: { duplicateReturnedInfo: true, explicitPersistentConnection: true, noCdcConnectivity: false },
    });
    expect(cur!.tsas).toHaveLength(256);
    expect(nvm).toMatchObject({ subtype: DiscoverySubtype.Nvm, subtypeName: 'nvm', asqsz: 128, trsvcid: '4420', subnqn: DISK_NQN, tcpSectype: 2 });
    expect(nvm!.decoded.treq).toEqual({ secureChannel: 'required', sqFlowControlDisable: true });
    expect(ref).toMatchObject({ adrfam: 2, subtype: 1, subtypeName: 'referral', portid: 2, trsvcid: '8009', traddr: 'fd00::2' });
    expect(ref!.decoded.eflags.noCdcConnectivity).toBe(true);
  });

  it('handles a buffer holding only the header', () => {
    const v = discoveryVector();
    const headerOnly = parseDiscoveryLog(v.subarray(0, 1024));
    expect(headerOnly).toMatchObject({ genctr: 7n, numrec: 3n, entries: [], complete: false });
    expect(parseDiscoveryLog(v.subarray(0, 18)).entries).toEqual([]);
    expect(parseDiscoveryLogHeader(v.subarray(0, 18))).toEqual({ genctr: 7n, numrec: 3n, recfmt: 0 });
    expect(() => parseDiscoveryLog(v.subarray(0, 17))).toThrow(ProtocolError);
  });

  it('limits entries by NUMREC', () => {
    const v = discoveryVector();
    v.writeBigUInt64LE(2n, 8);
    const log = parseDiscoveryLog(v);
    expect(log.entries).toHaveLength(2);
    expect(log.complete).toBe(true);
  });

  it('limits entries by the whole entries present in the buffer', () => {
    const v = discoveryVector();
    v.writeBigUInt64LE(5n, 8);
    const log = parseDiscoveryLog(Buffer.concat([v, Buffer.alloc(500)]));
    expect(log.entries).toHaveLength(3);
    expect(log.complete).toBe(false);
    const partial = parseDiscoveryLog(v.subarray(0, 1024 + 1024 + 1000));
    expect(partial.entries).toHaveLength(1);
  });

  it('does not trust a huge NUMREC', () => {
    const v = discoveryVector();
    v.writeBigUInt64LE(0xffffffffffffffffn, 8);
    const log = parseDiscoveryLog(v);
    expect(log.entries).toHaveLength(3);
    expect(log.complete).toBe(false);
    expect(() => discoveryLogSize(log.numrec)).toThrow(InvalidArgumentError);
  });

  it('computes the bytes needed for N records', () => {
    expect(discoveryLogSize(0)).toBe(1024);
    expect(discoveryLogSize(3)).toBe(4096);
    expect(discoveryLogSize(3n)).toBe(4096);
    expect(() => discoveryLogSize(-1)).toThrow(InvalidArgumentError);
    expect(() => discoveryLogSize(1.5)).toThrow(InvalidArgumentError);
  });

  it('parses an entry at an offset and rejects one past the end', () => {
    const v = discoveryVector();
    expect(parseDiscoveryLogEntry(v, 2048).subnqn).toBe(DISK_NQN);
    expect(() => parseDiscoveryLogEntry(v, 3073)).toThrow(ProtocolError);
    expect(() => parseDiscoveryLogEntry(v.subarray(0, 1000))).toThrow(ProtocolError);
  });

  it('reports no TCP security type for other transports', () => {
    const v = discoveryVector();
    v[1024] = TransportType.Rdma;
    expect(parseDiscoveryLog(v).entries[0]!.tcpSectype).toBeNull();
  });

  it('encodes entries at the same offsets', () => {
    const v = discoveryVector();
    const log = parseDiscoveryLog(v);
    const again = encodeDiscoveryLog({ genctr: log.genctr, recfmt: log.recfmt, entries: log.entries });
    // Entry 2 uses space padding in the vector; the encoder NUL-pads, so compare field by field.
    expect(again.subarray(0, 3072).equals(v.subarray(0, 3072))).toBe(true);
    expect(parseDiscoveryLog(again).entries[2]).toEqual(log.entries[2]);
  });

  it('round-trips random entries', () => {
    const str = (max: number) => fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789.:-'.split('')), maxLength: max });
    const entry = fc.record({
      trtype: fc.integer({ min: 0, max: 255 }), adrfam: fc.integer({ min: 0, max: 255 }),
      subtype: fc.integer({ min: 0, max: 255 }), treq: fc.integer({ min: 0, max: 255 }),
      portid: fc.integer({ min: 0, max: 0xffff }), cntlid: fc.integer({ min: 0, max: 0xffff }),
      asqsz: fc.integer({ min: 0, max: 0xffff }), eflags: fc.integer({ min: 0, max: 0xffff }),
      trsvcid: str(31), subnqn: str(223), traddr: str(255),
    });
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.array(entry, { maxLength: 4 }), (genctr, entries) => {
      const log = parseDiscoveryLog(encodeDiscoveryLog({ genctr, entries }));
      expect(log.genctr).toBe(genctr);
      expect(log.numrec).toBe(BigInt(entries.length));
      expect(log.entries).toHaveLength(entries.length);
      log.entries.forEach((e, i) => expect(e).toMatchObject(entries[i]!));
    }), { numRuns: 50 });
  });

  it('rejects encoder input that does not fit', () => {
    expect(() => encodeDiscoveryLogEntry({ trsvcid: 'x'.repeat(32) })).toThrow(InvalidArgumentError);
    expect(() => encodeDiscoveryLogEntry({ portid: 0x10000 })).toThrow(InvalidArgumentError);
    expect(() => encodeDiscoveryLogEntry({ tsas: Buffer.alloc(4) })).toThrow(InvalidArgumentError);
    expect(() => encodeDiscoveryLog({ genctr: -1, entries: [] })).toThrow(InvalidArgumentError);
  });
});

/** ANA log with NSID lists: group 1 optimized {1, 2}, group 2 inaccessible {3}. */
function anaVector(): Buffer {
  const b = Buffer.alloc(16 + 32 + 8 + 32 + 4);
  b.writeBigUInt64LE(42n, 0); // CHGCNT
  b.writeUInt16LE(2, 8); // NGRPS
  b.writeUInt32LE(1, 16); // ANAGRPID
  b.writeUInt32LE(2, 20); // NNSID
  b.writeBigUInt64LE(5n, 24); // CHGCNT
  b[32] = 0x01; // ANA state optimized
  b.writeUInt32LE(1, 48);
  b.writeUInt32LE(2, 52);
  b.writeUInt32LE(2, 56); // second descriptor
  b.writeUInt32LE(1, 60);
  b.writeBigUInt64LE(6n, 64);
  b[72] = 0x03; // inaccessible
  b.writeUInt32LE(3, 88);
  return b;
}

/** ANA log read with RGO: descriptors only. */
function anaRgoVector(): Buffer {
  const b = Buffer.alloc(16 + 2 * 32);
  b.writeBigUInt64LE(43n, 0);
  b.writeUInt16LE(2, 8);
  b.writeUInt32LE(1, 16);
  b.writeBigUInt64LE(9n, 24);
  b[32] = 0x02; // non-optimized
  b.writeUInt32LE(2, 48);
  b.writeBigUInt64LE(10n, 56);
  b[64] = 0x0f; // change
  return b;
}

describe('ANA log (LID 0Ch)', () => {
  it('parses group descriptors with NSID lists', () => {
    expect(parseAnaLog(anaVector())).toEqual({
      chgcnt: 42n,
      ngrps: 2,
      groups: [
        { anagrpid: 1, nnsids: 2, chgcnt: 5n, state: AnaState.Optimized, stateName: 'optimized', nsids: [1, 2] },
        { anagrpid: 2, nnsids: 1, chgcnt: 6n, state: AnaState.Inaccessible, stateName: 'inaccessible', nsids: [3] },
      ],
    });
  });

  it('parses a page read with RGO (no NSID lists)', () => {
    const expected = {
      chgcnt: 43n,
      ngrps: 2,
      groups: [
        { anagrpid: 1, nnsids: 0, chgcnt: 9n, state: 2, stateName: 'non-optimized', nsids: [] },
        { anagrpid: 2, nnsids: 0, chgcnt: 10n, state: 0xf, stateName: 'change', nsids: [] },
      ],
    };
    expect(parseAnaLog(anaRgoVector(), { rgo: true })).toEqual(expected);
    expect(parseAnaLog(anaRgoVector())).toEqual(expected);
  });

  it('ignores NNSID with RGO even when the controller fills it in', () => {
    const v = anaRgoVector();
    v.writeUInt32LE(1000, 20);
    const log = parseAnaLog(v, { rgo: true });
    expect(log.groups[0]!.nnsids).toBe(1000);
    expect(log.groups[0]!.nsids).toEqual([]);
    expect(log.groups[1]!.anagrpid).toBe(2);
    expect(() => parseAnaLog(v)).toThrow(ProtocolError);
  });

  it('masks the reserved upper bits of the state; a reserved state keeps its raw value and is named inaccessible', () => {
    const v = anaRgoVector();
    v[32] = 0x21;
    v[64] = 0x05;
    const log = parseAnaLog(v, { rgo: true });
    expect(log.groups[0]!.state).toBe(1);
    expect(log.groups[1]!.state).toBe(5);
    expect(isDefinedAnaState(log.groups[1]!.state)).toBe(false);
    // One judgement for every layer: a state the host does not understand must not carry I/O.
    expect(log.groups[1]!.stateName).toBe('inaccessible');
    expect(anaStateName(4)).toBe('persistent-loss');
  });

  it('bounds NGRPS and NNSID against the buffer', () => {
    const v = anaVector();
    v.writeUInt16LE(4, 8);
    expect(() => parseAnaLog(v)).toThrow(/claims 4 group descriptors/);
    const w = anaVector();
    w.writeUInt32LE(0xffffffff, 20);
    expect(() => parseAnaLog(w)).toThrow(/claims 4294967295 NSIDs/);
    const x = anaVector();
    x.writeUInt32LE(2, 60); // second group claims 2 NSIDs, only 1 present
    expect(() => parseAnaLog(x)).toThrow(ProtocolError);
    expect(() => parseAnaLog(anaVector().subarray(0, 15))).toThrow(ProtocolError);
    const rgo = anaRgoVector();
    expect(() => parseAnaLog(rgo.subarray(0, 70), { rgo: true })).toThrow(ProtocolError);
  });

  it('never throws anything but ProtocolError on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 300 }), fc.boolean(), (bytes, rgo) => {
      try {
        parseAnaLog(Buffer.from(bytes), { rgo });
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
      }
    }), { numRuns: 200 });
  });

  it('computes the log size and encodes the same layout', () => {
    expect(anaLogSize(2, 3)).toBe(92);
    expect(anaLogSize(2, 3, true)).toBe(80);
    const groups = [
      { anagrpid: 1, chgcnt: 5n, state: 1, nsids: [1, 2] },
      { anagrpid: 2, chgcnt: 6n, state: 3, nsids: [3] },
    ];
    expect(encodeAnaLog({ chgcnt: 42n, groups }).equals(anaVector())).toBe(true);
    const rgo = encodeAnaLog({ chgcnt: 43n, groups: [{ anagrpid: 1, chgcnt: 9n, state: 2, nsids: [7] }, { anagrpid: 2, chgcnt: 10n, state: 0xf }] }, { rgo: true });
    expect(rgo.equals(anaRgoVector())).toBe(true);
    expect(() => encodeAnaLog({ chgcnt: 0, groups: [{ anagrpid: 1, chgcnt: 0, state: 16 }] })).toThrow(InvalidArgumentError);
  });

  it('round-trips random logs', () => {
    const group = fc.record({
      anagrpid: fc.integer({ min: 1, max: 0xffffffff }),
      chgcnt: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      state: fc.constantFrom(1, 2, 3, 4, 0xf),
      nsids: fc.array(fc.integer({ min: 1, max: 0xfffffffe }), { maxLength: 8 }),
    });
    fc.assert(fc.property(fc.array(group, { maxLength: 6 }), fc.boolean(), (groups, rgo) => {
      const log = parseAnaLog(encodeAnaLog({ chgcnt: 1n, groups }, { rgo }), { rgo });
      expect(log.groups.map((g) => [g.anagrpid, g.chgcnt, g.state, g.nsids])).toEqual(
        groups.map((g) => [g.anagrpid, g.chgcnt, g.state, rgo ? [] : g.nsids]),
      );
    }), { numRuns: 50 });
  });
});

describe('Error Information log (LID 01h)', () => {
  function vector(): Buffer {
    const b = Buffer.alloc(3 * 64);
    b.writeBigUInt64LE(5n, 0); // Error Count
    b.writeUInt16LE(1, 8); // SQID
    b.writeUInt16LE(0x10, 10); // CID
    b.writeUInt16LE((0x02 << 1) | (1 << 15), 12); // Status: Invalid Field, DNR
    b.writeUInt16LE(0x0228, 14); // PEL: byte 40, bit 2
    b.writeBigUInt64LE(0x1000n, 16); // LBA
    b.writeUInt32LE(1, 24); // NSID
    b[28] = 0; // VSIA
    b[29] = 3; // TRTYPE TCP
    b[30] = 0; // CSI
    b[31] = 0x06; // opcode Identify
    b.writeBigUInt64LE(0x1234n, 32); // CS
    b.writeUInt16LE(7, 40); // TTSI
    b[63] = 1; // LPVER
    // entry 1 empty; entry 2: count 4, no parameter location
    b.writeBigUInt64LE(4n, 128);
    b.writeUInt16LE(0xffff, 128 + 8);
    b.writeUInt16LE(0xffff, 128 + 10);
    b.writeUInt16LE((0x3 << 9) | (0x02 << 1) | (1 << 14), 128 + 12); // SCT 3 (path), SC 2, More
    b.writeUInt16LE(0xffff, 128 + 14);
    return b;
  }

  it('parses entries and skips empty ones', () => {
    const entries = parseErrorLog(vector());
    expect(entries).toHaveLength(2);
    expect(entries[0]).toEqual({
      errorCount: 5n, sqid: 1, cid: 0x10, status: 0x8004, parameterErrorLocation: 0x0228, lba: 0x1000n, nsid: 1,
      vsia: 0, trtype: 3, csi: 0, opcode: 6, cs: 0x1234n, ttsi: 7, lpver: 1,
      sc: 2, sct: 0, crd: 0, more: false, dnr: true, pelByte: 40, pelBit: 2,
    });
    expect(entries[1]).toMatchObject({ errorCount: 4n, sqid: 0xffff, cid: 0xffff, sct: 3, sc: 2, more: true, dnr: false, pelByte: null, pelBit: null });
    expect(parseErrorLog(vector(), { includeEmpty: true })).toHaveLength(3);
  });

  it('ignores a trailing partial entry and rejects less than one entry', () => {
    expect(parseErrorLog(Buffer.concat([vector(), Buffer.alloc(10, 0xff)]))).toHaveLength(2);
    expect(() => parseErrorLog(Buffer.alloc(63))).toThrow(ProtocolError);
  });

  it('encodes the same layout', () => {
    const v = vector();
    expect(encodeErrorLog(parseErrorLog(v, { includeEmpty: true })).equals(v)).toBe(true);
  });
});

describe('SMART / Health Information log (LID 02h)', () => {
  function vector(): Buffer {
    const b = Buffer.alloc(512);
    b[0] = 0x05; // critical warning: spare, reliability
    b.writeUInt16LE(320, 1); // composite temperature, K
    b[3] = 100; // available spare
    b[4] = 10; // threshold
    b[5] = 3; // percentage used
    b[6] = 0x01; // endurance group critical warning summary
    b.writeBigUInt64LE(0x0102030405060708n, 32); b.writeBigUInt64LE(1n, 40); // data units read (128-bit)
    b.writeBigUInt64LE(1000n, 48); // data units written
    b.writeBigUInt64LE(11n, 64); // host reads
    b.writeBigUInt64LE(12n, 80); // host writes
    b.writeBigUInt64LE(13n, 96); // controller busy time
    b.writeBigUInt64LE(14n, 112); // power cycles
    b.writeBigUInt64LE(15n, 128); // power on hours
    b.writeBigUInt64LE(16n, 144); // unsafe shutdowns
    b.writeBigUInt64LE(17n, 160); // media errors
    b.writeBigUInt64LE(18n, 176); // error log entries
    b.writeUInt32LE(19, 192); // warning temp time
    b.writeUInt32LE(20, 196); // critical temp time
    b.writeUInt16LE(310, 200); // sensor 1
    b.writeUInt16LE(305, 214); // sensor 8
    b.writeUInt32LE(21, 216);
    b.writeUInt32LE(22, 220);
    b.writeUInt32LE(23, 224);
    b.writeUInt32LE(24, 228);
    return b;
  }

  it('parses every field', () => {
    const s = parseSmartLog(vector());
    expect(s.criticalWarning).toBe(5);
    expect(s.criticalWarnings).toEqual({
      availableSpare: true, temperature: false, reliabilityDegraded: true, readOnly: false,
      volatileMemoryBackupFailed: false, pmrReadOnly: false,
    });
    expect(s.temperature).toBe(320);
    expect(s.temperatureCelsius).toBe(47);
    expect([s.availSpare, s.spareThresh, s.percentUsed, s.enduranceGroupCriticalWarning]).toEqual([100, 10, 3, 1]);
    expect(s.dataUnitsRead).toBe((1n << 64n) + 0x0102030405060708n);
    expect(s.dataUnitsWritten).toBe(1000n);
    expect([s.hostReads, s.hostWrites, s.ctrlBusyTime, s.powerCycles, s.powerOnHours, s.unsafeShutdowns, s.mediaErrors, s.numErrLogEntries])
      .toEqual([11n, 12n, 13n, 14n, 15n, 16n, 17n, 18n]);
    expect([s.warningTempTime, s.criticalCompTime]).toEqual([19, 20]);
    expect(s.tempSensors).toEqual([310, 0, 0, 0, 0, 0, 0, 305]);
    expect([s.thmTemp1TransCount, s.thmTemp2TransCount, s.thmTemp1TotalTime, s.thmTemp2TotalTime]).toEqual([21, 22, 23, 24]);
  });

  it('rejects a short page and encodes the same layout', () => {
    expect(() => parseSmartLog(Buffer.alloc(511))).toThrow(ProtocolError);
    const v = vector();
    expect(encodeSmartLog(parseSmartLog(v)).equals(v)).toBe(true);
    expect(() => encodeSmartLog({ tempSensors: new Array(9).fill(300) })).toThrow(InvalidArgumentError);
  });
});

describe('Changed Namespace List (LID 04h)', () => {
  it('reads NSIDs up to the first zero', () => {
    const b = Buffer.alloc(4096);
    b.writeUInt32LE(1, 0);
    b.writeUInt32LE(7, 4);
    expect(parseChangedNsList(b)).toEqual({ overflow: false, nsids: [1, 7] });
    expect(parseChangedNsList(Buffer.alloc(4096))).toEqual({ overflow: false, nsids: [] });
  });
  it('reports the overflow marker', () => {
    const b = Buffer.alloc(4096);
    b.writeUInt32LE(0xffffffff, 0);
    expect(parseChangedNsList(b)).toEqual({ overflow: true, nsids: [] });
  });
  it('reads at most 1024 entries and what the buffer holds', () => {
    const b = Buffer.alloc(4100, 0x01);
    expect(parseChangedNsList(b).nsids).toHaveLength(1024);
    expect(parseChangedNsList(b.subarray(0, 10)).nsids).toHaveLength(2);
    expect(() => parseChangedNsList(Buffer.alloc(3))).toThrow(ProtocolError);
  });
  it('encodes the list and the overflow marker', () => {
    expect(parseChangedNsList(encodeChangedNsList([3, 4, 9]))).toEqual({ overflow: false, nsids: [3, 4, 9] });
    const over = encodeChangedNsList(new Array(1025).fill(1));
    expect(over.readUInt32LE(0)).toBe(0xffffffff);
    expect(over.readUInt32LE(4)).toBe(0);
    expect(() => encodeChangedNsList([0])).toThrow(InvalidArgumentError);
  });
});

describe('Reservation Notification log (LID 80h)', () => {
  it('parses, names the type and encodes the same layout', () => {
    const b = Buffer.alloc(64);
    b.writeBigUInt64LE(3n, 0); // log page count
    b[8] = 2; // reservation released
    b[9] = 1; // available log pages
    b.writeUInt32LE(5, 12); // NSID
    const r = parseReservationNotificationLog(b);
    expect(r).toEqual({ lpc: 3n, rnlpt: 2, nalp: 1, nsid: 5, rnlptName: 'reservation-released' });
    expect(encodeReservationNotificationLog(r).equals(b)).toBe(true);
    b[8] = 9;
    expect(parseReservationNotificationLog(b).rnlptName).toBe('reserved');
    expect(parseReservationNotificationLog(Buffer.alloc(64)).rnlptName).toBe('empty');
    expect(() => parseReservationNotificationLog(Buffer.alloc(16))).toThrow(ProtocolError);
  });
});
