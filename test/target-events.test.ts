/**
 * Asynchronous events, ANA, changed namespaces, discovery and the target's run-time programming API.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import * as cmds from '../src/protocol/commands.js';
import { parseAnaLog, parseChangedNsList, parseReservationNotificationLog, parseDiscoveryLog, parseDiscoveryLogHeader, discoveryLogSize } from '../src/protocol/logpages.js';
import { LogPageId } from '../src/protocol/constants.js';
import { DISCOVERY_NQN } from '../src/protocol/nqn.js';
import { ErrorCode, NvmeStatusError } from '../src/errors.js';
import type { Completion } from '../src/transport/queue-pair.js';
import type { Controller } from '../src/host/controller.js';
import { NvmeTarget } from '../src/target/index.js';
import { TargetEnv, SUBNQN, HOSTNQN, HOSTNQN2, adminRoundTrip, settled } from './helpers/target-env.js';
import { waitFor } from './helpers/wait.js';

const env = new TargetEnv();
afterEach(() => env.cleanup());

/** Submit an Asynchronous Event Request that waits as long as it takes. */
function aer(ctrl: Controller): Promise<Completion> {
  const p = ctrl.adminCommand(cmds.asyncEventRequest(), { timeout: 0 });
  p.catch(() => undefined);
  return p;
}

function event(c: Completion): { type: number; info: number; lid: number } {
  const dw0 = c.cqe.dw0;
  return { type: dw0 & 7, info: (dw0 >>> 8) & 0xff, lid: (dw0 >>> 16) & 0xff };
}

async function anaLog(ctrl: Controller, o: { rae?: boolean; rgo?: boolean } = {}) {
  const c = await ctrl.adminCommand(cmds.getLogPage({ lid: LogPageId.Ana, length: 4096, rae: o.rae, lsp: o.rgo ? 1 : 0 }));
  return parseAnaLog(c.data!, { rgo: o.rgo });
}

async function discoveryLog(ctrl: Controller, rae = false) {
  const head = await ctrl.adminCommand(cmds.getLogPage({ lid: LogPageId.Discovery, length: 1024, rae: true }));
  const { numrec } = parseDiscoveryLogHeader(head.data!);
  const full = await ctrl.adminCommand(cmds.getLogPage({ lid: LogPageId.Discovery, length: discoveryLogSize(numrec), rae }));
  return parseDiscoveryLog(full.data!);
}

describe('target ANA', () => {
  it('sends the ANA change AEN, masks it until the log is read with RAE cleared, and fails I/O by state', async () => {
    await env.start({ subsystem: { ana: true } });
    const ctrl = await env.connect({ ioQueues: 1, events: false });
    const id = ctrl.identity;
    expect(id.decoded.cmic).toMatchObject({ multiPort: true, anaReporting: true });
    expect(id.decoded.oaes.ana).toBe(true);
    expect(id.decoded.anacap).toMatchObject({ optimized: true, nonOptimized: true, inaccessible: true, persistentLoss: true, change: true });
    expect(id.anagrpmax).toBe(32);
    const ns = await ctrl.namespace(1);
    expect(ns.identity.anagrpid).toBe(1);
    const before = await anaLog(ctrl, { rae: true });
    expect(before.groups).toMatchObject([{ anagrpid: 1, stateName: 'optimized', nsids: [1] }]);

    const ev1 = aer(ctrl);
    env.subsys.setAnaState(env.port, 1, 'inaccessible');
    expect(event(await ev1)).toEqual({ type: 2, info: 3, lid: LogPageId.Ana });

    // Masked until the host reads the ANA log with RAE = 0.
    const ev2 = aer(ctrl);
    env.subsys.setAnaState(env.port, 1, 'change');
    await adminRoundTrip(ctrl);
    expect(await settled(ev2)).toBe('pending');
    const retained = await anaLog(ctrl, { rae: true });
    expect(retained.groups[0]).toMatchObject({ state: 0xf, stateName: 'change' });
    env.subsys.setAnaState(env.port, 1, 'persistent-loss');
    await adminRoundTrip(ctrl);
    expect(await settled(ev2)).toBe('pending');
    const read = await anaLog(ctrl);
    expect(read.chgcnt).toBeGreaterThan(before.chgcnt);
    expect(read.groups[0]!.stateName).toBe('persistent-loss');
    const rgo = await anaLog(ctrl, { rgo: true, rae: true });
    expect(rgo.groups).toMatchObject([{ anagrpid: 1, nnsids: 0, nsids: [] }]);
    env.subsys.setAnaState(env.port, 1, 'optimized');
    expect(event(await ev2)).toEqual({ type: 2, info: 3, lid: LogPageId.Ana });
    await ns.read(0, 1);

    // I/O through the port fails with the path status of the group's state.
    const raw = () => ctrl.ioCommand(cmds.read({ nsid: 1, slba: 0, nlb: 1, blockSize: 512 })).catch((e: unknown) => e as NvmeStatusError);
    const expected: Array<[Parameters<typeof env.subsys.setAnaState>[2], number]> = [['inaccessible', 2], ['persistent-loss', 1], ['change', 3]];
    for (const [state, sc] of expected) {
      env.subsys.setAnaState(env.port, 1, state);
      expect(await raw()).toMatchObject({ sct: 3, sc, dnr: false });
    }
    env.subsys.setAnaState(env.port, 1, 'non-optimized');
    await ctrl.ioCommand(cmds.read({ nsid: 1, slba: 0, nlb: 1, blockSize: 512 }));
  });

  it('keeps ANA states per port and notifies only the controllers on that port', async () => {
    await env.start({ subsystem: { ana: true } });
    env.subsys.addNamespace({ nsid: 2, blocks: 64, anaGroup: 2 });
    const port2 = await env.target.listen({ ana: { 1: 'non-optimized', 2: 'inaccessible' } });
    const c1 = await env.connect({ ioQueues: 1, events: false });
    const c2 = await env.connect({ ioQueues: 1, port: port2.port, events: false });
    expect((await anaLog(c1, { rae: true })).groups.map((g) => g.stateName)).toEqual(['optimized', 'optimized']);
    expect((await anaLog(c2, { rae: true })).groups.map((g) => [g.anagrpid, g.stateName, g.nsids])).toEqual([[1, 'non-optimized', [1]], [2, 'inaccessible', [2]]]);
    const ns2via1 = await c1.namespace(2);
    const ns2via2 = await c2.namespace(2);
    await ns2via1.read(0, 1);
    expect(await ns2via2.read(0, 1).catch((e: unknown) => e)).toMatchObject({ sct: 3, sc: 2 });
    const e1 = aer(c1);
    const e2 = aer(c2);
    env.target.setAnaState(port2, 2, 'optimized');
    expect(event(await e2).info).toBe(3);
    await adminRoundTrip(c1);
    expect(await settled(e1)).toBe('pending');
    await ns2via2.read(0, 1);
    expect(env.subsys.anaState(port2, 2)).toBe(1);
    expect(() => env.subsys.setAnaState(port2, 99, 'optimized')).toThrow(/ANA group/);
    expect(() => env.subsys.setAnaState(port2, 1, 'sideways' as never)).toThrow(/ANA state/);
  });
});

describe('target namespace changes and AERs', () => {
  it('reports added and removed namespaces through the AEN and the Changed Namespace List', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1, events: false });
    const ev = aer(ctrl);
    env.subsys.addNamespace({ nsid: 5, blocks: 16 });
    expect(event(await ev)).toEqual({ type: 2, info: 0, lid: LogPageId.ChangedNamespaceList });
    const changed = async (rae: boolean) => parseChangedNsList((await ctrl.adminCommand(cmds.getLogPage({ lid: LogPageId.ChangedNamespaceList, length: 4096, rae }))).data!).nsids;
    expect(await changed(true)).toEqual([5]);
    expect(await changed(true)).toEqual([5]);
    const ev2 = aer(ctrl);
    env.subsys.removeNamespace(1);
    await adminRoundTrip(ctrl);
    expect(await settled(ev2)).toBe('pending');
    expect(await changed(false)).toEqual([1, 5]);
    expect(await changed(false)).toEqual([]);
    env.subsys.addNamespace({ nsid: 7, blocks: 16 });
    expect(event(await ev2).lid).toBe(LogPageId.ChangedNamespaceList);
    expect(await ctrl.activeNamespaceIds()).toEqual([5, 7]);
  });

  it('limits outstanding AERs to AERL + 1, delivers arbitrary events, and aborts AERs at shutdown', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 0, events: false });
    const aers = Array.from({ length: 4 }, () => aer(ctrl));
    const fifth = await ctrl.adminCommand(cmds.asyncEventRequest()).catch((e: unknown) => e);
    expect(fifth).toMatchObject({ sct: 1, sc: 5 });
    expect(env.target.sendAsyncEvent({ type: 1, info: 0x01, lid: LogPageId.SmartHealth }, { subnqn: SUBNQN })).toBe(1);
    expect(event(await aers[0]!)).toEqual({ type: 1, info: 1, lid: 2 });
    expect(env.target.controllers()[0]!.outstandingAers).toBe(3);
    await ctrl.close();
    const rest = await Promise.allSettled(aers.slice(1));
    for (const r of rest) expect(r).toMatchObject({ status: 'rejected', reason: { code: ErrorCode.STATUS, sc: 0x08 } });
  });

  it('respects the Asynchronous Event Configuration', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 0, events: false });
    await ctrl.adminCommand(cmds.setFeatures({ fid: 0x0b, cdw11: 0 }));
    const ev = aer(ctrl);
    env.subsys.addNamespace({ nsid: 2, blocks: 8 });
    await adminRoundTrip(ctrl);
    expect(await settled(ev)).toBe('pending');
    await ctrl.adminCommand(cmds.setFeatures({ fid: 0x0b, cdw11: 1 << 8 }));
    expect((await ctrl.adminCommand(cmds.getFeatures({ fid: 0x0b }))).cqe.dw0).toBe(1 << 8);
    env.subsys.addNamespace({ nsid: 3, blocks: 8 });
    expect(event(await ev).info).toBe(0);
  });
});

describe("target events through the host's event API", () => {
  it('delivers ana-change, namespace-changed and discovery-change events', async () => {
    await env.start({ subsystem: { ana: true } });
    const ctrl = await env.connect({ ioQueues: 1 });
    const disc = await env.connect({ subnqn: DISCOVERY_NQN, ioQueues: 0 });
    expect(ctrl.anaState(1)).toBe('optimized');
    const next = <T>(c: typeof ctrl, type: 'ana-change' | 'namespace-changed' | 'discovery-change') =>
      new Promise<T>((resolve) => {
        const off = c.on(type, (ev) => {
          off();
          resolve(ev as T);
        });
      });
    const ana = next<{ changed: { nsid: number }[]; reason: string }>(ctrl, 'ana-change');
    env.subsys.setAnaState(env.port, 1, 'non-optimized');
    const a = await ana;
    expect(a.reason).toBe('aen');
    expect(a.changed.map((c) => c.nsid)).toEqual([1]);
    expect(ctrl.anaState(1)).toBe('non-optimized');
    // The host read the ANA log with RAE cleared, so the next change is reported too.
    const ana2 = next<{ changed: { nsid: number }[] }>(ctrl, 'ana-change');
    env.subsys.setAnaState(env.port, 1, 'optimized');
    await ana2;
    expect(ctrl.anaState(1)).toBe('optimized');

    const nsEv = next<{ nsids: number[]; added: number[]; removed: number[] }>(ctrl, 'namespace-changed');
    env.subsys.addNamespace({ nsid: 4, blocks: 8 });
    expect(await nsEv).toMatchObject({ nsids: [4], added: [4], removed: [] });
    const nsEv2 = next<{ removed: number[] }>(ctrl, 'namespace-changed');
    env.subsys.removeNamespace(4);
    expect((await nsEv2).removed).toEqual([4]);

    const dEv = next(disc, 'discovery-change');
    env.target.addReferral({ traddr: '192.0.2.1', trsvcid: 4420 });
    await dEv;
  });
});

describe('target reservation notifications', () => {
  it('queues Reservation Notification log pages, consumed by reads with RAE cleared, and honours the mask feature', async () => {
    await env.start();
    const a = await env.connect({ ioQueues: 1, events: false });
    const b = await env.connect({ ioQueues: 1, hostnqn: HOSTNQN2 });
    const nsA = await a.namespace(1);
    const nsB = await b.namespace(1);
    expect(nsA.identity.decoded.rescap.ignoreExistingKey).toBe(true);
    expect(nsA.identity.decoded.rescap.ptpl).toBe(false);
    const page = async (rae = false) =>
      parseReservationNotificationLog((await a.adminCommand(cmds.getLogPage({ lid: LogPageId.ReservationNotification, length: 64, rae }))).data!);
    const preempt = async () => {
      await nsA.reservationRegister({ action: 'register', newKey: 1n });
      await nsB.reservationAcquire({ action: 'preempt', type: 'write-exclusive', key: 2n, preemptKey: 1n });
    };
    const ev = aer(a);
    await nsB.reservationRegister({ action: 'register', newKey: 2n });
    await nsB.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: 2n });
    await preempt();
    expect(event(await ev)).toEqual({ type: 6, info: 0, lid: LogPageId.ReservationNotification });
    expect(await page(true)).toMatchObject({ lpc: 1n, rnlptName: 'registration-preempted', nalp: 0, nsid: 1 });
    expect(await page()).toMatchObject({ lpc: 1n, rnlptName: 'registration-preempted' });
    expect(await page()).toMatchObject({ lpc: 0n, rnlptName: 'empty' });
    // Registration preempted notifications masked for namespace 1: nothing is queued.
    await a.adminCommand(cmds.setFeatures({ fid: 0x82, nsid: 1, cdw11: 1 << 1 }));
    expect((await a.adminCommand(cmds.getFeatures({ fid: 0x82, nsid: 1 }))).cqe.dw0).toBe(2);
    await preempt();
    expect(await page()).toMatchObject({ lpc: 0n, rnlptName: 'empty' });
    // A writer that is not the holder conflicts; the target's state says who holds what.
    expect(await nsA.write(0, Buffer.alloc(512)).catch((e: unknown) => e)).toMatchObject({ sc: 0x83 });
    const state = env.ns.reservation;
    expect(state.rtype).toBe(1);
    expect(state.holds(b.hostid)).toBe(true);
    expect([...state.registrants.keys()]).toEqual([b.hostid]);
  });
});

describe('target discovery', () => {
  it('lists the current discovery subsystem, every allowed (subsystem, port) pair and referrals; GENCTR and AEN follow changes', async () => {
    await env.start();
    const port2 = await env.target.listen({ portid: 9 });
    env.target.addSubsystem({ nqn: 'nqn.2024-01.io.nvmeof.test:private', allowedHosts: [HOSTNQN2] });
    const referral = env.target.addReferral({ traddr: '192.0.2.7', trsvcid: 8009, portid: 3 });
    const disc = await env.connect({ subnqn: DISCOVERY_NQN, ioQueues: 0, events: false });
    expect(disc.identity.cntrltype).toBe(2);
    expect(disc.identity.decoded.oaes.discoveryLogChange).toBe(true);
    expect(disc.identity.nn).toBe(0);

    const log1 = await discoveryLog(disc, true);
    expect(log1.complete).toBe(true);
    expect(log1.genctr).toBe(env.target.genctr);
    expect(log1.entries.map((e) => [e.subtypeName, e.subnqn, e.portid, e.trsvcid])).toEqual([
      ['current-discovery', DISCOVERY_NQN, env.port.portid, String(env.port.port)],
      ['nvm', SUBNQN, env.port.portid, String(env.port.port)],
      ['nvm', SUBNQN, 9, String(port2.port)],
      ['referral', DISCOVERY_NQN, 3, '8009'],
    ]);
    for (const e of log1.entries) expect(e).toMatchObject({ trtype: 3, adrfam: 1, cntlid: 0xffff });
    expect(log1.entries[0]!.traddr).toBe('127.0.0.1');
    expect(log1.entries[3]!.traddr).toBe('192.0.2.7');
    expect(log1.entries[0]!.decoded.eflags.explicitPersistentConnection).toBe(true);

    // A host allowed on the private subsystem sees it too.
    const disc2 = await env.connect({ subnqn: DISCOVERY_NQN, ioQueues: 0, hostnqn: HOSTNQN2, events: false });
    expect((await discoveryLog(disc2)).entries.filter((e) => e.subtypeName === 'nvm')).toHaveLength(4);

    const ev = aer(disc);
    env.target.addSubsystem({ nqn: 'nqn.2024-01.io.nvmeof.test:new', ports: [port2] });
    expect(event(await ev)).toEqual({ type: 2, info: 0xf0, lid: LogPageId.Discovery });
    const log2 = await discoveryLog(disc);
    expect(log2.genctr).toBeGreaterThan(log1.genctr);
    expect(log2.entries.filter((e) => e.subnqn.endsWith(':new')).map((e) => e.portid)).toEqual([9]);

    const ev2 = aer(disc);
    referral.remove();
    expect(event(await ev2).lid).toBe(LogPageId.Discovery);
    const log3 = await discoveryLog(disc);
    expect(log3.genctr).toBeGreaterThan(log2.genctr);
    expect(log3.entries.some((e) => e.subtypeName === 'referral')).toBe(false);

    // Removing a port drops its entries and its connections.
    const io2 = await env.connect({ port: port2.port, ioQueues: 1 });
    await port2.close();
    await waitFor(() => io2.state === 'closed', 5000, 'the controller on the removed port to close');
    const log4 = await discoveryLog(disc);
    expect(log4.entries.every((e) => e.portid !== 9)).toBe(true);
    expect(env.target.ports().map((p) => p.portid)).toEqual([env.port.portid]);
  });

  it("lists only the asking port's entries with discoveryScope 'port'", async () => {
    await env.start({ target: { discoveryScope: 'port' } });
    await env.target.listen();
    const disc = await env.connect({ subnqn: DISCOVERY_NQN, ioQueues: 0 });
    const log = await discoveryLog(disc);
    expect(log.entries.map((e) => [e.subtypeName, e.portid])).toEqual([['current-discovery', 1], ['nvm', 1]]);
  });
});

describe('target run-time programming', () => {
  it('tears down controllers when their subsystem is unlinked or removed', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const reasons: string[] = [];
    env.target.on('controller-closed', (e) => reasons.push(e.reason));
    env.target.unlinkSubsystem(env.port, SUBNQN);
    const err = await new Promise<Error | undefined>((r) => ctrl.onClose(r));
    expect(err).toMatchObject({ code: ErrorCode.CONNECTION_CLOSED });
    expect(reasons[0]).toMatch(/unlinked/);
    await expect(env.connect()).rejects.toMatchObject({ sc: 0x82 });
    env.target.linkSubsystem(env.port, SUBNQN);
    const again = await env.connect({ ioQueues: 1 });
    env.target.removeSubsystem(SUBNQN);
    await new Promise((r) => again.onClose(r));
    expect(env.target.subsystems()).toHaveLength(0);
  });

  it('emits connect/disconnect events and leaves nothing running after close()', async () => {
    const before = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length;
    const target = env.track(new NvmeTarget());
    const port = await target.listen();
    target.addSubsystem({ nqn: SUBNQN }).addNamespace({ sizeBytes: 1 << 20 });
    const connects: number[] = [];
    const disconnects: number[] = [];
    target.on('connect', (e) => connects.push(e.qid));
    target.on('disconnect', (e) => disconnects.push(e.qid));
    const ctrl = await env.connect({ port: port.port, ioQueues: 2, hostnqn: HOSTNQN, kato: 1000 });
    expect(connects.sort()).toEqual([0, 1, 2]);
    expect(target.connections().map((c) => c.qid).sort()).toEqual([0, 1, 2]);
    await target.close();
    await new Promise((r) => ctrl.onClose(r));
    expect(disconnects.sort()).toEqual([0, 1, 2]);
    expect(target.connections()).toHaveLength(0);
    expect(target.controllers()).toHaveLength(0);
    await target.close();
    await expect(target.listen()).rejects.toMatchObject({ code: ErrorCode.INVALID_STATE });
    // Closed sockets release their handles a turn or two later.
    const active = () => process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
    await waitFor(() => active().length <= before, 5000, 'handles to be released', () => active().join(', '));
    expect(active().length).toBeLessThanOrEqual(before);
  });

  it('allocates namespaces lazily and exposes their contents', async () => {
    await env.start({ ns: { sizeBytes: 2 ** 40 } });
    expect(env.ns.blocks).toBe(2 ** 31);
    expect(env.ns.allocatedBytes).toBe(0);
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    const far = 2 ** 31 - 8;
    await ns.write(far, Buffer.alloc(4096, 0xee));
    expect(env.ns.allocatedBytes).toBeLessThanOrEqual(1 << 20);
    expect(env.ns.readBlocks(far, 1)[0]).toBe(0xee);
    env.ns.writeBlocks(0, Buffer.alloc(512, 0x42));
    expect((await ns.read(0, 1))[511]).toBe(0x42);
    await ns.deallocate([{ lba: far, blocks: 8 }]);
    expect((await ns.read(far, 8)).every((b) => b === 0)).toBe(true);
  });
});


describe('target: the event idiom of the host side', () => {
  it('on(type) returns an unsubscribe function, events() iterates typed events and ends when the target closes', async () => {
    const env2 = new TargetEnv();
    await env2.start();
    const names: string[] = [];
    const off = env2.target.on('command', (c) => names.push(c.name));
    const it = env2.target.events({ types: ['connect', 'controller-closed'] });
    const ctrl = await env2.connect({ ioQueues: 1 });
    off();
    const before = names.length;
    await (await ctrl.namespace(1)).read(0, 1);
    expect(names.length).toBe(before); // unsubscribed
    expect(names).toContain('Connect');
    await ctrl.close();
    await env2.cleanup(); // closes the target: the iterator ends after what it holds
    const seen: string[] = [];
    for await (const e of it) seen.push(e.type === 'connect' ? `connect q${e.qid}` : e.type);
    expect(seen).toEqual(['connect q0', 'connect q1', 'controller-closed']);
    expect(() => env2.target.on('no-such' as 'command', () => {})).toThrow(expect.objectContaining({ code: 'NVMEOF_ERR_INVALID_ARGUMENT' }));
  });
});
