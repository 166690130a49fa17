/**
 * The embedded target driven by the host library: bring-up, identify, block I/O across every data path
 * (in-capsule, R2T, multi-R2T, multi-PDU C2H, SUCCESS flag, digests, CPDA), status errors and keep-alive.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Buffer } from 'node:buffer';
import * as cmds from '../src/protocol/commands.js';
import { encodeSqe } from '../src/protocol/sqe.js';
import { decodeCap, decodeCsts } from '../src/protocol/properties.js';
import { parseErrorLog, parseSmartLog } from '../src/protocol/logpages.js';
import { FeatureId, LogPageId, Property } from '../src/protocol/constants.js';
import { QueuePair } from '../src/transport/queue-pair.js';
import { ErrorCode, NvmeStatusError, type NvmeofError } from '../src/errors.js';
import type { NvmeTargetOptions, CommandInfo } from '../src/target/index.js';
import { TargetEnv, SUBNQN, HOSTNQN, HOSTNQN2, sleep } from './helpers/target-env.js';
import { waitFor } from './helpers/wait.js';

const env = new TargetEnv();
afterEach(() => env.cleanup());

async function statusOf(p: Promise<unknown>): Promise<NvmeStatusError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(NvmeStatusError);
  return err as NvmeStatusError;
}

describe('target: bring-up and identify', () => {
  it('reports real Identify Controller values, properties and features', async () => {
    await env.start({ target: { mdts: 5, kas: 2 } });
    const ctrl = await env.connect({ kato: 2000 });
    const id = ctrl.identity;
    expect(id.cntlid).toBe(ctrl.cntlid);
    expect(id.cntrltype).toBe(1);
    expect(id.subnqn).toBe(SUBNQN);
    expect(id.sn).toBe(env.subsys.serial);
    expect(id.mn).toBe('nvmeof target');
    expect(id.mdts).toBe(5);
    expect(ctrl.maxTransferBytes).toBe(128 * 1024);
    expect(id.ioccsz).toBe((8192 + 64) / 16);
    expect(id.iorcsz).toBe(1);
    expect(id.kas).toBe(2);
    expect(id.aerl).toBe(3);
    expect(id.nn).toBe(1024);
    expect(id.decoded.oncs).toMatchObject({ compare: true, dsm: true, writeZeroes: true, verify: true, reservations: true });
    expect(id.decoded.oaes.namespaceAttribute).toBe(true);
    expect(id.decoded.oaes.ana).toBe(false);
    expect(id.decoded.cmic.anaReporting).toBe(false);
    expect(id.decoded.sgls).toMatchObject({ supported: true, offset: true, transportDataBlock: true });
    expect(id.decoded.ctratt.hostId128).toBe(true);
    expect(id.decoded.ctratt.tbkas).toBe(false);
    expect(id.version).toEqual({ major: 2, minor: 0, tertiary: 0 });
    expect(ctrl.version).toEqual({ major: 2, minor: 0, tertiary: 0 });
    expect(ctrl.cap.mqes).toBe(127);
    expect(ctrl.cap.css & 1).toBe(1);
    const csts = decodeCsts(Number(await ctrl.propertyGet(Property.CSTS, 4)));
    expect(csts.rdy).toBe(true);
    // Features.
    const nq = await ctrl.adminCommand(cmds.getFeatures({ fid: FeatureId.NumberOfQueues }));
    expect(cmds.parseNumberOfQueues(nq.cqe.dw0)).toEqual({ nsqa: 2, ncqa: 2 });
    const kato = await ctrl.adminCommand(cmds.getFeatures({ fid: FeatureId.KeepAliveTimer }));
    expect(kato.cqe.dw0).toBe(2000);
    await ctrl.adminCommand(cmds.setFeatures({ fid: FeatureId.Arbitration, cdw11: 0x0302 }));
    expect((await ctrl.adminCommand(cmds.getFeatures({ fid: FeatureId.Arbitration }))).cqe.dw0).toBe(0x0302);
    const hostId = await ctrl.adminCommand(cmds.getFeatures({ fid: FeatureId.HostIdentifier, cdw11: 1, readLength: 16 }));
    expect(hostId.data!.toString('hex')).toBe(ctrl.hostid.replace(/-/g, ''));
    const saved = await statusOf(ctrl.adminCommand(cmds.setFeatures({ fid: FeatureId.Arbitration, save: true })));
    expect([saved.sct, saved.sc]).toEqual([1, 0x0d]);
    // The target's view of the controller.
    const tc = env.target.controllers()[0]!;
    expect(tc.cntlid).toBe(ctrl.cntlid);
    expect(tc.hostid).toBe(ctrl.hostid);
    expect(tc.queues.size).toBe(3);
    expect(tc.kato).toBe(2000);
    expect(tc.effectiveKato).toBe(2000);
  });

  it('reports MAXCMD within 16 bits when MQES is 0xffff', async () => {
    await env.start({ target: { mqes: 0xffff } });
    const ctrl = await env.connect({ ioQueues: 1, queueSize: 64 });
    expect(ctrl.cap.mqes).toBe(0xffff);
    expect(ctrl.identity.maxcmd).toBe(0xffff);
  });

  it('refuses a log read larger than one Buffer can hold, before sending', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const err = await ctrl.readLog({ lid: LogPageId.SmartHealth, length: 2 ** 33 }).then(() => undefined, (e: unknown) => e);
    expect((err as NvmeofError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(ctrl.state).toBe('live');
  });

  it('lists namespaces and their identifiers', async () => {
    await env.start({ ns: { nsid: 3, blocks: 1000, blockSize: 4096, nguid: '00112233445566778899aabbccddeeff', uuid: 'd3b1c7a0-5f43-4e2b-8a61-7c9e0d2f4b15', eui64: '0011223344556677' } });
    env.subsys.addNamespace({ nsid: 1, blocks: 64 });
    const ctrl = await env.connect();
    expect(await ctrl.activeNamespaceIds()).toEqual([1, 3]);
    const ns = await ctrl.namespace(3);
    expect(ns.blockSize).toBe(4096);
    expect(ns.blocks).toBe(1000n);
    expect(ns.nguid).toBe('00112233445566778899aabbccddeeff');
    expect(ns.uuid).toBe('d3b1c7a0-5f43-4e2b-8a61-7c9e0d2f4b15');
    expect(ns.eui64).toBe('0011223344556677');
    expect(ns.identity.decoded.nmic.shared).toBe(true);
    expect(ns.identity.decoded.dlfeat.readBehavior).toBe(1);
    const ns1 = await ctrl.namespace(1);
    expect(ns1.blockSize).toBe(512);
    expect(ns1.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(ns1.nguid).toBe(env.subsys.namespace(1)!.nguid.toString('hex'));
    // An inactive NSID identifies as zeroes; the host refuses it.
    await expect(ctrl.namespace(2)).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    const descs = await statusOf(ctrl.adminCommand(cmds.namespaceIdDescriptors(2)));
    expect(descs.sc).toBe(0x0b);
  });

  it('explains a wrong subsystem NQN and a host that is not allowed', async () => {
    await env.start({ subsystem: { allowedHosts: [HOSTNQN2] } });
    const wrong = 'nqn.2024-01.io.nvmeof.test:missing';
    const e1 = await statusOf(env.connect({ subnqn: wrong }));
    expect([e1.sct, e1.sc]).toEqual([1, 0x82]);
    expect(e1.dw0).toBe((1 << 16) | 256);
    expect(e1.message).toContain(wrong);
    expect(e1.message).toContain('does not exist');
    const e2 = await statusOf(env.connect());
    expect([e2.sct, e2.sc]).toEqual([1, 0x84]);
    expect(e2.message).toContain(HOSTNQN);
    expect(e2.message).toContain(SUBNQN);
    const ok = await env.connect({ hostnqn: HOSTNQN2 });
    expect(ok.state).toBe('live');
    // A subsystem that is not linked to the port is "not found" there.
    const other = env.target.addSubsystem({ nqn: 'nqn.2024-01.io.nvmeof.test:elsewhere', ports: [] });
    const e3 = await statusOf(env.connect({ subnqn: other.nqn }));
    expect(e3.message).toContain(other.nqn);
    env.target.linkSubsystem(env.port, other.nqn);
    other.addNamespace({ blocks: 8 });
    const c3 = await env.connect({ subnqn: other.nqn, ioQueues: 1 });
    expect(await c3.activeNamespaceIds()).toEqual([1]);
  });

  it('rejects I/O queue connects with a wrong CNTLID or queue ID', async () => {
    await env.start({ target: { maxIoQueues: 2 } });
    const ctrl = await env.connect({ ioQueues: 2 });
    const qp = await QueuePair.open({ host: '127.0.0.1', port: env.port.port, qid: 3, depth: 4 });
    try {
      const bad = await qp.submit(cmds.connect({ qid: 1, sqsize: 8, hostid: ctrl.hostid, cntlid: ctrl.cntlid + 7, subnqn: SUBNQN, hostnqn: HOSTNQN }), { allowStatusError: true });
      expect((bad.cqe.status >> 1) & 0x7ff).toBe((1 << 8) | 0x82);
      expect(bad.cqe.dw0).toBe((1 << 16) | 16);
      const busy = await qp.submit(cmds.connect({ qid: 3, sqsize: 8, hostid: ctrl.hostid, cntlid: ctrl.cntlid, subnqn: SUBNQN, hostnqn: HOSTNQN }), { allowStatusError: true });
      expect(busy.cqe.dw0).toBe(42);
      const size = await qp.submit(cmds.connect({ qid: 0, sqsize: 1000, hostid: ctrl.hostid, subnqn: SUBNQN, hostnqn: HOSTNQN }), { allowStatusError: true });
      expect(size.cqe.dw0).toBe(44);
    } finally {
      qp.destroy();
    }
  });
});

const sizesInBlocks = [1, 8, 16, 17, 128, 2048];

const configs: Array<[string, NvmeTargetOptions, { headerDigest?: boolean; dataDigest?: boolean }]> = [
  ['defaults', {}, {}],
  ['header and data digests', {}, { headerDigest: true, dataDigest: true }],
  ['CPDA 3 with digests', { cpda: 3 }, { headerDigest: true, dataDigest: true }],
  ['small MAXH2CDATA, max C2H data and R2T length', { maxh2cdata: 4096, maxC2HData: 4096, maxR2TLength: 12288 }, { dataDigest: true }],
  ['C2HData SUCCESS flag, no in-capsule data', { c2hSuccess: true, inCapsuleDataSize: 0 }, {}],
];

describe('target: block I/O data paths', () => {
  it.each(configs)('writes and reads back 1 block .. 1 MiB (%s)', async (_name, topts, hopts) => {
    await env.start({ target: topts, ns: { blocks: 4096 } });
    const ctrl = await env.connect(hopts);
    const ns = await ctrl.namespace(1);
    let lba = 0;
    for (const n of sizesInBlocks) {
      const data = randomBytes(n * 512);
      await ns.write(lba, data);
      expect(Buffer.compare(await ns.read(lba, n), data)).toBe(0);
      expect(Buffer.compare(env.ns.readBlocks(lba, n), data)).toBe(0);
      lba += n;
    }
    // 1 MiB spanning what was written.
    const all = await ns.read(0, 2048);
    const back = env.ns.readBlocks(0, 2048);
    expect(Buffer.compare(all, back)).toBe(0);
  });

  it('runs 4 queues x 32 commands in flight of random verified I/O', async () => {
    const blocks = 8192;
    await env.start({ ns: { blocks } });
    const ctrl = await env.connect({ ioQueues: 4, queueSize: 32, events: false });
    expect(ctrl.ioQueueCount).toBe(4);
    const ns = await ctrl.namespace(1);
    const shadow = Buffer.alloc(blocks * 512);
    const perQid = new Map<number, number>();
    let maxOutstanding = 0;
    env.target.on('command', (c: CommandInfo) => {
      perQid.set(c.qid, (perQid.get(c.qid) ?? 0) + 1);
      maxOutstanding = Math.max(maxOutstanding, env.target.connections().reduce((sum, conn) => sum + (conn.qid > 0 ? conn.outstanding : 0), 0));
    });
    const slots = 128;
    const slotBlocks = blocks / slots;
    for (let round = 0; round < 2; round++) {
      const ops: Promise<unknown>[] = [];
      for (let s = 0; s < slots; s++) {
        const n = 1 + Math.floor(Math.random() * slotBlocks);
        const lba = s * slotBlocks + Math.floor(Math.random() * (slotBlocks - n + 1));
        const data = Buffer.alloc(n * 512, (round * 131 + s * 7 + n) & 0xff);
        data.writeUInt32LE(lba, 0);
        data.copy(shadow, lba * 512);
        ops.push(ns.write(lba, data));
      }
      await Promise.all(ops);
      const got = await Promise.all(Array.from({ length: slots }, (_, s) => ns.read(s * slotBlocks, slotBlocks)));
      got.forEach((b, s) => expect(Buffer.compare(b, shadow.subarray(s * slotBlocks * 512, (s + 1) * slotBlocks * 512))).toBe(0));
    }
    // Every queue carried I/O, and commands were in flight at once.
    for (let q = 1; q <= 4; q++) expect(perQid.get(q) ?? 0).toBeGreaterThan(30);
    expect(maxOutstanding).toBeGreaterThan(32);
  });

  it('supports flush, write zeroes, deallocate, compare and verify', async () => {
    await env.start({ ns: { blocks: 256 } });
    const ctrl = await env.connect();
    const ns = await ctrl.namespace(1);
    const data = Buffer.alloc(64 * 512, 0x5a);
    await ns.write(0, data);
    await ns.flush();
    expect(await ns.compare(0, data.subarray(0, 8 * 512))).toBe(true);
    expect(await ns.compare(0, Buffer.alloc(8 * 512, 0x11))).toBe(false);
    await ns.verify(0, 64);
    await ns.writeZeroes(4, 4);
    expect((await ns.read(4, 4)).every((b) => b === 0)).toBe(true);
    expect((await ns.read(8, 1))[0]).toBe(0x5a);
    await ns.deallocate([{ lba: 16, blocks: 8 }, { lba: 40, blocks: 2 }]);
    const after = await ns.read(0, 64);
    for (let b = 0; b < 64; b++) {
      const zero = (b >= 4 && b < 8) || (b >= 16 && b < 24) || (b >= 40 && b < 42);
      expect(after[b * 512]).toBe(zero ? 0 : 0x5a);
    }
  });

  it('fails I/O with the right statuses', async () => {
    await env.start({ ns: { blocks: 100 } });
    const ro = env.subsys.addNamespace({ nsid: 2, blocks: 10, readOnly: true });
    const ctrl = await env.connect();
    const ns = await ctrl.namespace(1);
    // The host checks the range before sending; a raw command reaches the target.
    let seen = 0;
    env.target.on('command', (c: CommandInfo) => {
      if (c.kind === 'io') seen++;
    });
    await expect(ns.read(99, 2)).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    expect(seen).toBe(0);
    const oor = await statusOf(ctrl.ioCommand(cmds.read({ nsid: 1, slba: 99, nlb: 2, blockSize: 512 })));
    expect([oor.sct, oor.sc, oor.dnr]).toEqual([0, 0x80, true]);
    expect(oor.statusName).toBe('LBA Out of Range');
    expect(seen).toBe(1);
    const oorw = await statusOf(ctrl.ioCommand(cmds.write({ nsid: 1, slba: 100, data: Buffer.alloc(16 * 512), blockSize: 512 })));
    expect(oorw.sc).toBe(0x80);
    const badNs = await statusOf(ctrl.ioCommand(cmds.read({ nsid: 9, slba: 0, nlb: 1, blockSize: 512 })));
    expect([badNs.sct, badNs.sc]).toEqual([0, 0x0b]);
    const badOp = await statusOf(ctrl.ioCommand({ sqe: encodeSqe({ opcode: 0x7e, nsid: 1 }), name: 'vendor 7e', kind: 'io' }));
    expect([badOp.sct, badOp.sc]).toEqual([0, 0x01]);
    const wp = await statusOf(ctrl.ioCommand(cmds.write({ nsid: 2, slba: 0, data: Buffer.alloc(512), blockSize: 512 })));
    expect(wp.sc).toBe(0x20);
    expect(ro.readBlocks(0, 1).every((b) => b === 0)).toBe(true);
    const len = await statusOf(ctrl.ioCommand({ ...cmds.read({ nsid: 1, slba: 0, nlb: 2, blockSize: 512 }), readLength: 512 }));
    expect(len.sc).toBe(0x0f);
    env.ns.ready = false;
    const notReady = await statusOf(ns.read(0, 1));
    expect([notReady.sc, notReady.dnr]).toEqual([0x82, false]);
    env.ns.ready = true;
    env.subsys.removeNamespace(1);
    const gone = await statusOf(ns.read(0, 1));
    expect(gone.sc).toBe(0x0b);
    // The Error Information log recorded them, newest first.
    const log = parseErrorLog((await ctrl.adminCommand(cmds.getLogPage({ lid: LogPageId.ErrorInformation, length: 4096 }))).data!);
    expect(log.length).toBeGreaterThanOrEqual(7);
    expect(log[0]!.sc).toBe(0x0b);
    expect(log[0]!.errorCount).toBeGreaterThan(log[1]!.errorCount);
    const smart = parseSmartLog((await ctrl.adminCommand(cmds.getLogPage({ lid: LogPageId.SmartHealth, length: 512 }))).data!);
    expect(smart.availSpare).toBe(100);
  });
});

describe('target: keep-alive and shutdown', () => {
  it("stays connected past KATO with the host's keep-alive", async () => {
    await env.start();
    let keepAlives = 0;
    env.target.on('command', (c: CommandInfo) => {
      if (c.opcode === 0x18 && c.qid === 0) keepAlives++;
    });
    const ctrl = await env.connect({ kato: 400 });
    const t0 = Date.now();
    // Three keep-alives at KATO/2 take the connection past KATO.
    await waitFor(() => keepAlives >= 3 && Date.now() - t0 > 400, 5000, 'three keep-alives past KATO');
    expect(ctrl.state).toBe('live');
    expect(env.target.controllers()).toHaveLength(1);
    expect(keepAlives).toBeGreaterThanOrEqual(3);
    const ns = await ctrl.namespace(1);
    await ns.read(0, 1);
  });

  async function stalledKeepAlive(): Promise<Error | undefined> {
    await env.start({ target: { enforceKeepAlive: false } });
    env.target.inject({ match: { opcode: 0x18, qid: 0 }, action: 'drop' });
    const ctrl = await env.connect({ kato: 300 });
    const err = await new Promise<Error | undefined>((r) => ctrl.onClose(r));
    expect(ctrl.state).toBe('closed');
    return err;
  }

  it('fails the host controller when keep-alive responses stall', async () => {
    const err = await stalledKeepAlive();
    expect(err?.message).toMatch(/keep-alive/);
  });

  // Controller.destroy(err) must keep its own error: the queues it closes report back and must not replace it.
  it('fails the host controller with NVMEOF_ERR_KEEP_ALIVE when keep-alive responses stall', async () => {
    const err = await stalledKeepAlive();
    expect((err as NvmeofError).code).toBe(ErrorCode.KEEP_ALIVE);
  });

  it('tears down a controller whose host sends no Keep Alive within KATO', async () => {
    await env.start();
    const timeouts: number[] = [];
    env.target.on('keep-alive-timeout', (e) => timeouts.push(e.controller.cntlid));
    const qp = await QueuePair.open({ host: '127.0.0.1', port: env.port.port, qid: 0, depth: 4 });
    const c = await qp.submit(cmds.connect({ qid: 0, sqsize: 8, kato: 300, hostid: '6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f', subnqn: SUBNQN, hostnqn: HOSTNQN }));
    const started = Date.now();
    await qp.closed;
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1500);
    expect(timeouts).toEqual([c.cqe.dw0]);
    expect(env.target.controllers()).toHaveLength(0);
  });

  it('holds a KATO longer than the longest Node timer without re-arming in a loop', async () => {
    await env.start();
    const overflows: string[] = [];
    const onWarning = (w: Error) => {
      if (w.name === 'TimeoutOverflowWarning') overflows.push(w.message);
    };
    process.on('warning', onWarning);
    try {
      const ctrl = await env.connect({ kato: 0xffffffff });
      await sleep(100);
      expect(ctrl.state).toBe('live');
      expect(env.target.controllers()).toHaveLength(1);
      // Let queued warnings be delivered before judging.
      await new Promise((r) => setImmediate(r));
      expect(overflows).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('counts any command as keep-alive traffic with TBKAS', async () => {
    await env.start({ target: { trafficBasedKeepAlive: true } });
    const qp = await QueuePair.open({ host: '127.0.0.1', port: env.port.port, qid: 0, depth: 4 });
    try {
      await qp.submit(cmds.connect({ qid: 0, sqsize: 8, kato: 300, hostid: '6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f', subnqn: SUBNQN, hostnqn: HOSTNQN }));
      for (let i = 0; i < 6; i++) {
        await sleep(100);
        await qp.submit(cmds.propertyGet({ offset: Property.CSTS, size: 4 }));
      }
      expect(qp.state).toBe('ready');
      const started = Date.now();
      await qp.closed;
      expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    } finally {
      qp.destroy();
    }
  });

  it('sees CC.SHN when the host closes gracefully', async () => {
    await env.start();
    const shutdowns: number[] = [];
    env.target.on('shutdown', (e) => shutdowns.push(e.shn));
    const ctrl = await env.connect();
    await ctrl.close();
    expect(shutdowns).toEqual([1]);
    await waitFor(() => env.target.connections().length === 0, 5000, 'the target to see both connections close');
    expect(env.target.controllers()).toHaveLength(0);
  });

  it('honours CSTS.RDY delays and reports CAP.TO', async () => {
    await env.start({ target: { readyDelayMs: 120, capTimeout: 2 } });
    const t0 = Date.now();
    const ctrl = await env.connect({ ioQueues: 1 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    expect(decodeCap(await ctrl.propertyGet(Property.CAP, 8)).to).toBe(2);
  });
});
