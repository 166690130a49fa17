import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as cmds from '../src/protocol/commands.js';
import { InvalidArgumentError } from '../src/errors.js';

/** A 64-byte SQE built by hand: opcode at byte 0, flags byte 1 = 0x40 (PSDT 01b), then the given bytes. */
function handSqe(opcode: number, bytes: Record<number, number> = {}): Buffer {
  const b = Buffer.alloc(64);
  b[0] = opcode;
  b[1] = 0x40;
  for (const [off, v] of Object.entries(bytes)) b[Number(off)] = v;
  return b;
}

const HOSTID = '0b6e3c46-6f1e-4b7b-9f7c-2b0f1c0e6d11';
const HOSTID_BYTES = [0x0b, 0x6e, 0x3c, 0x46, 0x6f, 0x1e, 0x4b, 0x7b, 0x9f, 0x7c, 0x2b, 0x0f, 0x1c, 0x0e, 0x6d, 0x11];
const HOSTNQN = `nqn.2014-08.org.nvmexpress:uuid:${HOSTID}`;
const SUBNQN = 'nqn.2016-06.io.spdk:cnode1';

function handConnectData(cntlid: number): Buffer {
  const d = Buffer.alloc(1024);
  d.set(HOSTID_BYTES, 0);
  d[16] = cntlid & 0xff;
  d[17] = cntlid >> 8;
  d.write(SUBNQN, 256, 'ascii');
  d.write(HOSTNQN, 512, 'ascii');
  return d;
}

describe('connect', () => {
  it('admin queue: FCTYPE 01h at byte 4, QID 0, SQSIZE 0\'s based, KATO at byte 48, CNTLID FFFFh in the data', () => {
    const c = cmds.connect({ qid: 0, sqsize: 32, kato: 120000, hostid: HOSTID, subnqn: SUBNQN, hostnqn: HOSTNQN });
    // recfmt @40 = 0, qid @42 = 0, sqsize @44 = 31, cattr @46 = 0, kato @48 = 120000 = 0x0001d4c0
    expect(c.sqe).toEqual(handSqe(0x7f, { 4: 0x01, 44: 31, 48: 0xc0, 49: 0xd4, 50: 0x01 }));
    expect(c.data).toEqual(handConnectData(0xffff));
    expect(c.readLength).toBeUndefined();
    expect(c.kind).toBe('fabrics');
    expect(c.name).toMatch(/Connect/);
  });

  it('I/O queue: QID, SQSIZE, the admin CNTLID in the data, KATO 0, CATTR', () => {
    const c = cmds.connect({
      qid: 3, sqsize: 128, kato: 120000, hostid: Buffer.from(HOSTID_BYTES), cntlid: 5, subnqn: SUBNQN, hostnqn: HOSTNQN, cattr: 0x04,
    });
    expect(c.sqe).toEqual(handSqe(0x7f, { 4: 0x01, 42: 3, 44: 127, 46: 0x04 }));
    expect(c.data).toEqual(handConnectData(5));
  });

  it('parseConnectData reads back the fields', () => {
    expect(cmds.parseConnectData(handConnectData(0x1234))).toEqual({
      hostid: Buffer.from(HOSTID_BYTES), cntlid: 0x1234, subnqn: SUBNQN, hostnqn: HOSTNQN,
    });
  });

  it('parseConnectResult: CNTLID in bits 15:0, AUTHREQ ATR bit 17, ASCR bit 18', () => {
    expect(cmds.parseConnectResult(0x0001)).toEqual({ cntlid: 1, authRequired: false, secureChannelRequired: false });
    expect(cmds.parseConnectResult((1 << 17) | 0xffef)).toEqual({ cntlid: 0xffef, authRequired: true, secureChannelRequired: false });
    expect(cmds.parseConnectResult(1 << 18).secureChannelRequired).toBe(true);
  });

  it('accepts subsystem names that are not spec-form NQNs (Linux nvmet allows them) unless strictNqn', () => {
    expect(() => cmds.connect({ qid: 0, sqsize: 32, hostid: HOSTID, subnqn: 'testnqn', hostnqn: HOSTNQN })).not.toThrow();
    expect(() => cmds.connect({ qid: 0, sqsize: 32, hostid: HOSTID, subnqn: 'testnqn', hostnqn: HOSTNQN, strictNqn: true })).toThrow(/subnqn/);
  });

  it('validates arguments, naming them', () => {
    const ok = { qid: 0, sqsize: 32, hostid: HOSTID, subnqn: SUBNQN, hostnqn: HOSTNQN };
    expect(() => cmds.connect({ ...ok, sqsize: 1 })).toThrow(/sqsize/);
    expect(() => cmds.connect({ ...ok, sqsize: 65537 })).toThrow(/sqsize/);
    expect(() => cmds.connect({ ...ok, qid: -1 })).toThrow(/qid/);
    expect(() => cmds.connect({ ...ok, qid: 1 })).toThrow(/cntlid is required/);
    expect(() => cmds.connect({ ...ok, qid: 1, cntlid: 0xffff })).toThrow(/cntlid/);
    expect(() => cmds.connect({ ...ok, kato: -5 })).toThrow(/kato/);
    expect(() => cmds.connect({ ...ok, hostid: 'not-a-uuid' })).toThrow(/hostid/);
    expect(() => cmds.connect({ ...ok, hostid: Buffer.alloc(15) })).toThrow(/hostid/);
    expect(() => cmds.connect({ ...ok, hostnqn: 'x'.repeat(224) })).toThrow(/hostnqn.*223/);
    expect(() => cmds.connect({ ...ok, subnqn: '' })).toThrow(/subnqn/);
    expect(() => cmds.connect({ ...ok, cattr: 256 })).toThrow(/cattr/);
    expect(() => cmds.connect(null as unknown as cmds.ConnectOptions)).toThrow(InvalidArgumentError);
  });
});

describe('Property Get / Set / Disconnect', () => {
  it('Property Get CAP: FCTYPE 04h, ATTRIB 1 (8 bytes) at 40, OFFSET at 44', () => {
    const c = cmds.propertyGet({ offset: 0x00, size: 8 });
    expect(c.sqe).toEqual(handSqe(0x7f, { 4: 0x04, 40: 1 }));
    expect(c.data).toBeUndefined();
  });

  it('Property Get CSTS: ATTRIB 0 (4 bytes), OFFSET 1Ch', () => {
    expect(cmds.propertyGet({ offset: 0x1c, size: 4 }).sqe).toEqual(handSqe(0x7f, { 4: 0x04, 44: 0x1c }));
  });

  it('Property Set CC: FCTYPE 00h, OFFSET 14h, VALUE at 48', () => {
    const c = cmds.propertySet({ offset: 0x14, size: 4, value: 0x00460001 });
    expect(c.sqe).toEqual(handSqe(0x7f, { 4: 0x00, 44: 0x14, 48: 0x01, 50: 0x46 }));
  });

  it('Property Set 8 bytes with a bigint value', () => {
    const c = cmds.propertySet({ offset: 0x28, size: 8, value: 0x0102030405060708n });
    expect(c.sqe).toEqual(handSqe(0x7f, { 40: 1, 44: 0x28, 48: 8, 49: 7, 50: 6, 51: 5, 52: 4, 53: 3, 54: 2, 55: 1 }));
  });

  it('propertyValue joins DW0 and DW1', () => {
    expect(cmds.propertyValue({ dw0: 0x0f0003ff, dw1: 0x00000820 })).toBe(0x0000_0820_0f00_03ffn);
    expect(cmds.propertyValue({ dw0: 0xffffffff, dw1: 0x1234 }, 4)).toBe(0xffffffffn);
  });

  it('validates size, alignment and value', () => {
    expect(() => cmds.propertyGet({ offset: 0, size: 2 as 4 })).toThrow(/size/);
    expect(() => cmds.propertyGet({ offset: 0x14, size: 8 })).toThrow(/aligned/);
    expect(() => cmds.propertySet({ offset: 0x14, size: 4, value: 2 ** 32 })).toThrow(/value/);
    expect(() => cmds.propertySet({ offset: 0x14, size: 4, value: 1n << 32n })).toThrow(/value/);
    expect(() => cmds.propertySet({ offset: 0x0, size: 8, value: -1n })).toThrow(/value/);
  });

  it('Disconnect: FCTYPE 08h, RECFMT at 40', () => {
    expect(cmds.disconnect().sqe).toEqual(handSqe(0x7f, { 4: 0x08 }));
  });
});

describe('Identify', () => {
  it('Identify Controller: opcode 06h, CNS 01h in CDW10, 4096 bytes back', () => {
    const c = cmds.identifyController();
    expect(c.sqe).toEqual(handSqe(0x06, { 40: 0x01 }));
    expect(c.readLength).toBe(4096);
    expect(c.name).toBe('Identify Controller');
    expect(c.kind).toBe('admin');
  });

  it('Identify Namespace: CNS 00h, NSID', () => {
    expect(cmds.identifyNamespace(1).sqe).toEqual(handSqe(0x06, { 4: 1 }));
    expect(cmds.identifyNamespace(0xffffffff).sqe).toEqual(handSqe(0x06, { 4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff }));
  });

  it('Active Namespace ID list: CNS 02h, NSID = start', () => {
    expect(cmds.activeNamespaceList().sqe).toEqual(handSqe(0x06, { 40: 0x02 }));
    expect(cmds.activeNamespaceList(0x1234).sqe).toEqual(handSqe(0x06, { 4: 0x34, 5: 0x12, 40: 0x02 }));
  });

  it('Namespace ID descriptors: CNS 03h', () => {
    expect(cmds.namespaceIdDescriptors(7).sqe).toEqual(handSqe(0x06, { 4: 7, 40: 0x03 }));
  });

  it('generic identify: CNTID CDW10 31:16, CNSSID CDW11 15:0, CSI CDW11 31:24, UUID index CDW14', () => {
    const c = cmds.identify({ cns: 0x06, nsid: 0, cntid: 0x1234, cnssid: 0xabcd, csi: 2, uuidIndex: 3 });
    expect(c.sqe).toEqual(handSqe(0x06, { 40: 0x06, 42: 0x34, 43: 0x12, 44: 0xcd, 45: 0xab, 47: 2, 56: 3 }));
  });

  it('validates', () => {
    expect(() => cmds.identifyNamespace(0)).toThrow(/nsid/);
    expect(() => cmds.identify({ cns: 256 })).toThrow(/cns/);
    expect(() => cmds.identify({ cns: 1, uuidIndex: 128 })).toThrow(/uuidIndex/);
    expect(() => cmds.namespaceIdDescriptors(0xffffffff)).toThrow(/nsid/);
  });
});

describe('Get Log Page', () => {
  it('NUMDL/NUMDU split, LSP bits 14:8, RAE bit 15, LSI, LPOL/LPOU', () => {
    const c = cmds.getLogPage({ lid: 0x0c, length: 0x40000 * 4, nsid: 0xffffffff, lsp: 1, rae: true, lsi: 0x0102, offset: 0x1_0000_0010n });
    // NUMD = 0x3ffff: NUMDL (CDW10 31:16) = ffff, NUMDU (CDW11 15:0) = 0003
    expect(c.sqe).toEqual(
      handSqe(0x02, {
        4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff,
        40: 0x0c, 41: 0x81, 42: 0xff, 43: 0xff,
        44: 0x03, 45: 0x00, 46: 0x02, 47: 0x01,
        48: 0x10, 52: 0x01,
      }),
    );
    expect(c.readLength).toBe(0x100000);
    expect(c.name).toBe('Get Log Page (Asymmetric Namespace Access)');
  });

  it('discovery log header: 1024 bytes -> NUMDL 255', () => {
    const c = cmds.getLogPage({ lid: 0x70, length: 1024 });
    expect(c.sqe).toEqual(handSqe(0x02, { 40: 0x70, 42: 0xff }));
  });

  it('LSP uses the 7-bit field of NVMe 2.x', () => {
    expect(cmds.getLogPage({ lid: 1, length: 4, lsp: 0x7f }).sqe[41]).toBe(0x7f);
  });

  it('offset type, CSI and UUID index in CDW14', () => {
    const c = cmds.getLogPage({ lid: 0x0d, length: 512, ot: true, offset: 3, csi: 2, uuidIndex: 1 });
    expect(c.sqe).toEqual(handSqe(0x02, { 40: 0x0d, 42: 127, 48: 3, 56: 1, 58: 0x80, 59: 2 }));
  });

  it('validates', () => {
    expect(() => cmds.getLogPage({ lid: 2, length: 0 })).toThrow(/length/);
    expect(() => cmds.getLogPage({ lid: 2, length: 510 })).toThrow(/multiple of 4/);
    expect(() => cmds.getLogPage({ lid: 2, length: 512, offset: 2 })).toThrow(/offset/);
    expect(() => cmds.getLogPage({ lid: 2, length: 512, lsp: 0x80 })).toThrow(/lsp/);
    expect(() => cmds.getLogPage({ lid: 2, length: 512, rae: 1 as unknown as boolean })).toThrow(/rae/);
  });

  it('property: NUMD round-trips through NUMDL/NUMDU', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0x3fffffff }), (dwords) => {
        const sqe = cmds.getLogPage({ lid: 2, length: dwords * 4 }).sqe;
        const numd = sqe.readUInt16LE(42) + sqe.readUInt16LE(44) * 0x10000;
        expect(numd).toBe(dwords - 1);
      }),
    );
  });
});

describe('Get / Set Features', () => {
  it('Get Features: FID CDW10 7:0, SEL 10:8, CDW11', () => {
    const c = cmds.getFeatures({ fid: 0x0b, sel: 3, nsid: 1, cdw11: 0x55 });
    expect(c.sqe).toEqual(handSqe(0x0a, { 4: 1, 40: 0x0b, 41: 0x03, 44: 0x55 }));
    expect(c.readLength).toBeUndefined();
    expect(cmds.getFeatures({ fid: 0x81, readLength: 16 }).readLength).toBe(16);
  });

  it('Set Features: FID, SV bit 31, CDW11..15, data', () => {
    const data = Buffer.alloc(16, 0xab);
    const c = cmds.setFeatures({ fid: 0x81, save: true, cdw11: 1, cdw12: 2, cdw13: 3, cdw14: 4, cdw15: 5, data });
    expect(c.sqe).toEqual(handSqe(0x09, { 40: 0x81, 43: 0x80, 44: 1, 48: 2, 52: 3, 56: 4, 60: 5 }));
    expect(c.data).toBe(data);
  });

  it('Number of Queues: FID 07h, NSQR/NCQR 0\'s based in CDW11', () => {
    const c = cmds.setNumberOfQueues(8, 4);
    expect(c.sqe).toEqual(handSqe(0x09, { 40: 0x07, 44: 7, 46: 3 }));
    expect(cmds.parseNumberOfQueues(0x0003_0007)).toEqual({ nsqa: 8, ncqa: 4 });
    expect(() => cmds.setNumberOfQueues(0, 1)).toThrow(/nsqr/);
    expect(() => cmds.setNumberOfQueues(1, 65536)).toThrow(/ncqr/);
  });

  it('validates', () => {
    expect(() => cmds.getFeatures({ fid: 1, sel: 8 })).toThrow(/sel/);
    expect(() => cmds.setFeatures({ fid: 300 })).toThrow(/fid/);
  });
});

describe('Keep Alive, AER, Abort', () => {
  it('Keep Alive is opcode 18h and nothing else', () => {
    expect(cmds.keepAlive().sqe).toEqual(handSqe(0x18));
  });

  it('Asynchronous Event Request is opcode 0Ch', () => {
    expect(cmds.asyncEventRequest().sqe).toEqual(handSqe(0x0c));
  });

  it('Abort: SQID CDW10 15:0, CID 31:16', () => {
    expect(cmds.abort({ sqid: 2, cid: 0x1234 }).sqe).toEqual(handSqe(0x08, { 40: 2, 42: 0x34, 43: 0x12 }));
    expect(() => cmds.abort({ sqid: 2, cid: 70000 })).toThrow(/cid/);
  });
});

describe('NVM I/O commands', () => {
  it('Read: SLBA split over CDW10/11, NLB 0\'s based, FUA bit 30 of CDW12', () => {
    const c = cmds.read({ nsid: 1, slba: 0x1_2345_6789n, nlb: 8, blockSize: 512, fua: true });
    expect(c.sqe).toEqual(handSqe(0x02, { 4: 1, 40: 0x89, 41: 0x67, 42: 0x45, 43: 0x23, 44: 0x01, 48: 0x07, 51: 0x40 }));
    expect(c.readLength).toBe(4096);
    expect(c.data).toBeUndefined();
    expect(c.kind).toBe('io');
  });

  it('Read accepts a number LBA', () => {
    expect(cmds.read({ nsid: 2, slba: 300, nlb: 1, blockSize: 4096 }).sqe).toEqual(handSqe(0x02, { 4: 2, 40: 0x2c, 41: 0x01 }));
  });

  it('Write: NLB from data length / blockSize, data passed through', () => {
    const data = Buffer.alloc(2 * 4096, 7);
    const c = cmds.write({ nsid: 1, slba: (1n << 40n) + 5n, data, blockSize: 4096 });
    expect(c.sqe).toEqual(handSqe(0x01, { 4: 1, 40: 5, 45: 0x01, 48: 0x01 }));
    expect(c.data).toBe(data);
    expect(c.readLength).toBeUndefined();
  });

  it('Write Zeroes: NLB 65536 -> FFFFh, DEAC bit 25, FUA bit 30', () => {
    const c = cmds.writeZeroes({ nsid: 1, slba: 0, nlb: 65536, deac: true, fua: true });
    expect(c.sqe).toEqual(handSqe(0x08, { 4: 1, 48: 0xff, 49: 0xff, 51: 0x42 }));
  });

  it('Flush, Verify, Compare', () => {
    expect(cmds.flush(0xffffffff).sqe).toEqual(handSqe(0x00, { 4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff }));
    expect(cmds.verify({ nsid: 3, slba: 16, nlb: 2 }).sqe).toEqual(handSqe(0x0c, { 4: 3, 40: 16, 48: 1 }));
    const data = Buffer.alloc(512);
    const c = cmds.compare({ nsid: 3, slba: 1, data, blockSize: 512 });
    expect(c.sqe).toEqual(handSqe(0x05, { 4: 3, 40: 1 }));
    expect(c.data).toBe(data);
  });

  it('Dataset Management: NR 0\'s based, AD bit 2, 16-byte ranges (CATTR @0, NLB @4, SLBA @8)', () => {
    const c = cmds.datasetManagement({
      nsid: 1,
      ranges: [{ slba: 100, nlb: 8, cattr: 0x01020304 }, { slba: 1n << 33n, nlb: 0x10000 }],
      deallocate: true,
    });
    expect(c.sqe).toEqual(handSqe(0x09, { 4: 1, 40: 1, 44: 0x04 }));
    const want = Buffer.alloc(32);
    want.set([0x04, 0x03, 0x02, 0x01, 0x08, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0], 0);
    want.set([0, 0, 0, 0, 0x00, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0x02, 0, 0, 0], 16);
    expect(c.data).toEqual(want);
    expect(cmds.datasetManagement({ nsid: 1, ranges: [{ slba: 0, nlb: 1 }], idr: true, idw: true }).sqe[44]).toBe(0x03);
  });

  it('validates LBAs, block counts, data sizes and namespaces', () => {
    expect(() => cmds.read({ nsid: 1, slba: -1, nlb: 1, blockSize: 512 })).toThrow(/slba/);
    expect(() => cmds.read({ nsid: 1, slba: 1.5, nlb: 1, blockSize: 512 })).toThrow(/slba/);
    expect(() => cmds.read({ nsid: 1, slba: 2 ** 53, nlb: 1, blockSize: 512 })).toThrow(/slba/);
    expect(() => cmds.read({ nsid: 1, slba: 1n << 64n, nlb: 1, blockSize: 512 })).toThrow(/slba/);
    expect(() => cmds.read({ nsid: 1, slba: (1n << 64n) - 1n, nlb: 2, blockSize: 512 })).toThrow(/2\^64/);
    expect(() => cmds.read({ nsid: 1, slba: 0, nlb: 0, blockSize: 512 })).toThrow(/nlb/);
    expect(() => cmds.read({ nsid: 1, slba: 0, nlb: 65537, blockSize: 512 })).toThrow(/nlb/);
    expect(() => cmds.read({ nsid: 0, slba: 0, nlb: 1, blockSize: 512 })).toThrow(/nsid/);
    expect(() => cmds.read({ nsid: 0xffffffff, slba: 0, nlb: 1, blockSize: 512 })).toThrow(/nsid/);
    expect(() => cmds.read({ nsid: 1, slba: 0, nlb: 1, blockSize: 0 })).toThrow(/blockSize/);
    expect(() => cmds.write({ nsid: 1, slba: 0, data: Buffer.alloc(1000), blockSize: 512 })).toThrow(/multiple of blockSize/);
    expect(() => cmds.write({ nsid: 1, slba: 0, data: Buffer.alloc(0), blockSize: 512 })).toThrow(/multiple of blockSize/);
    expect(() => cmds.write({ nsid: 1, slba: 0, data: Buffer.alloc(65537 * 512), blockSize: 512 })).toThrow(/65536/);
    expect(() => cmds.write({ nsid: 1, slba: 0, data: 'abc' as unknown as Buffer, blockSize: 512 })).toThrow(/data/);
    expect(() => cmds.writeZeroes({ nsid: 1, slba: 0, nlb: 1, deac: 'yes' as unknown as boolean })).toThrow(/deac/);
    expect(() => cmds.datasetManagement({ nsid: 1, ranges: [] })).toThrow(/ranges/);
    expect(() => cmds.datasetManagement({ nsid: 1, ranges: new Array(257).fill({ slba: 0, nlb: 1 }) })).toThrow(/ranges/);
    expect(() => cmds.datasetManagement({ nsid: 1, ranges: [{ slba: 0, nlb: 0 }] })).toThrow(/ranges\[0\]\.nlb/);
    expect(() => cmds.flush(0)).toThrow(/nsid/);
  });

  it('property: SLBA and NLB land in CDW10/11/12 for any valid LBA', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 65536n }), fc.integer({ min: 1, max: 65536 }), (slba, nlb) => {
        const sqe = cmds.read({ nsid: 1, slba, nlb, blockSize: 512 }).sqe;
        expect(sqe.readBigUInt64LE(40)).toBe(slba);
        expect(sqe.readUInt16LE(48)).toBe(nlb - 1);
      }),
    );
  });
});
