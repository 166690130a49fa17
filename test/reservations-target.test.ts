/**
 * Persistent reservations and host identities against the embedded target: several host identities in one
 * process, the conflict rules, preempt, preempt-and-abort, release, clear, reports and notification events.
 * integration/spdk/reservations.test.ts runs the same flows against SPDK, which is the reference.
 */
import { Buffer } from 'node:buffer';
import { afterEach, describe, expect, it } from 'vitest';
import type { Controller } from '../src/host/controller.js';
import type { Namespace } from '../src/host/namespace.js';
import { resolveHostIdentity } from '../src/host/identity.js';
import type { ConnectEvent } from '../src/target/index.js';
import { TargetEnv, HOSTNQN, HOSTNQN2 } from './helpers/target-env.js';
import { KEY_A, KEY_B, hex, statusOf, expectConflict, recorder } from './helpers/reservations.js';

const env = new TargetEnv();
afterEach(() => env.cleanup());


interface Hosts {
  a: Controller;
  b: Controller;
  nsA: Namespace;
  nsB: Namespace;
}

async function twoHosts(): Promise<Hosts> {
  await env.start({ ns: { blocks: 4096 } });
  const a = await env.connect({ hostnqn: HOSTNQN });
  const b = await env.connect({ hostnqn: HOSTNQN2 });
  return { a, b, nsA: await a.namespace(1), nsB: await b.namespace(1) };
}

async function registerBoth(h: Hosts): Promise<void> {
  await h.nsA.reservationRegister({ action: 'register', newKey: KEY_A });
  await h.nsB.reservationRegister({ action: 'register', newKey: KEY_B });
}

const block = (ns: Namespace, fill: number) => Buffer.alloc(ns.blockSize, fill);

describe('host identity', () => {
  it('one host NQN + host ID pair on the admin queue, every I/O queue and every reconnect', async () => {
    await env.start();
    const connects: ConnectEvent[] = [];
    env.target.on('connect', (ev) => connects.push(ev));
    const first = await env.connect({ hostnqn: HOSTNQN, ioQueues: 3 });
    const id = { hostnqn: first.hostnqn, hostid: first.hostid };
    await first.close();
    const again = await env.connect({ hostnqn: HOSTNQN, ioQueues: 3 });
    expect({ hostnqn: again.hostnqn, hostid: again.hostid }).toEqual(id);
    expect(connects.map((c) => c.qid).sort()).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
    for (const c of connects) expect({ hostnqn: c.hostnqn, hostid: c.hostid }).toEqual(id);
    // Resolution is deterministic: the same options always give the same pair.
    expect(resolveHostIdentity({ hostnqn: HOSTNQN })).toEqual(id);
    expect(resolveHostIdentity({ hostnqn: 'nqn.2024-01.io.nvmeof.test:host-x', configDir: null })).toEqual(resolveHostIdentity({ hostnqn: 'nqn.2024-01.io.nvmeof.test:host-x', configDir: null }));
  });

  it('the default identity is one host for the whole process', async () => {
    await env.start();
    const a = await env.connect({ hostnqn: undefined });
    const b = await env.connect({ hostnqn: undefined });
    expect([b.hostnqn, b.hostid]).toEqual([a.hostnqn, a.hostid]);
  });

  it('several identities side by side are separate hosts (and separate registrants)', async () => {
    const h = await twoHosts();
    expect(h.a.hostid).not.toBe(h.b.hostid);
    expect(h.a.hostnqn).not.toBe(h.b.hostnqn);
    const tc = env.target.controllers();
    expect(tc.map((c) => [c.hostnqn, c.hostid]).sort()).toEqual([[h.a.hostnqn, h.a.hostid], [h.b.hostnqn, h.b.hostid]].sort());
    await registerBoth(h);
    const report = await h.nsA.reservationReport();
    expect(report.extended).toBe(true);
    expect(report.registrants).toHaveLength(2);
    const byHost = new Map(report.registrants.map((r) => [r.hostId, r]));
    expect(byHost.get(hex(h.a.hostid))).toMatchObject({ cntlid: h.a.cntlid, key: KEY_A, holdsReservation: false });
    expect(byHost.get(hex(h.b.hostid))).toMatchObject({ cntlid: h.b.cntlid, key: KEY_B, holdsReservation: false });
    expect(report.type).toBeNull();
    expect(report.holder).toBeUndefined();
  });
});

describe('reservations on the embedded target', () => {
  it('identify reports reservation support', async () => {
    const h = await twoHosts();
    expect(h.a.oncs?.reservations).toBe(true);
    expect(h.nsA.identity.decoded.rescap).toMatchObject({
      writeExclusive: true, exclusiveAccess: true, writeExclusiveRegistrantsOnly: true, exclusiveAccessRegistrantsOnly: true,
      writeExclusiveAllRegistrants: true, exclusiveAccessAllRegistrants: true,
    });
  });

  it('Write Exclusive: the holder writes, the other host reads but cannot write', async () => {
    const h = await twoHosts();
    await registerBoth(h);
    const gen0 = (await h.nsA.reservationReport()).generation;
    await h.nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: KEY_A });
    await h.nsA.write(0, block(h.nsA, 0xaa));
    await expectConflict(h.nsB.write(0, block(h.nsB, 0xbb)));
    expect(await h.nsB.read(0, 1)).toEqual(block(h.nsB, 0xaa));
    const report = await h.nsB.reservationReport();
    expect(report.type).toBe('write-exclusive');
    expect(report.holder).toMatchObject({ hostId: hex(h.a.hostid), key: KEY_A, holdsReservation: true, cntlid: h.a.cntlid });
    expect(report.generation).toBe(gen0);
    // Another controller of the holding host is the holder too.
    const a2 = await env.connect({ hostnqn: HOSTNQN });
    const nsA2 = await a2.namespace(1);
    await nsA2.write(1, block(nsA2, 0xa2));
    // Acquiring a held reservation, or with a wrong key, conflicts.
    await expectConflict(h.nsB.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: KEY_B }));
    await expectConflict(h.nsB.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: KEY_A }));
  });

  it('Exclusive Access: the other host can neither read nor write; unregistered hosts neither', async () => {
    const h = await twoHosts();
    await registerBoth(h);
    await h.nsA.reservationAcquire({ action: 'acquire', type: 'exclusive-access', key: KEY_A });
    await expectConflict(h.nsB.read(0, 1));
    await expectConflict(h.nsB.write(0, block(h.nsB, 1)));
    await h.nsA.read(0, 1);
  });

  it('Write Exclusive - Registrants Only: registrants write, a host that is not registered cannot', async () => {
    const h = await twoHosts();
    await h.nsA.reservationRegister({ action: 'register', newKey: KEY_A });
    await h.nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive-registrants-only', key: KEY_A });
    await expectConflict(h.nsB.write(0, block(h.nsB, 2)));
    await h.nsB.read(0, 1);
    await h.nsB.reservationRegister({ action: 'register', newKey: KEY_B });
    await h.nsB.write(0, block(h.nsB, 3));
  });

  it('register rules: same key again is fine, a different key conflicts, replace and unregister check the key', async () => {
    const h = await twoHosts();
    await h.nsA.reservationRegister({ action: 'register', newKey: KEY_A });
    await h.nsA.reservationRegister({ action: 'register', newKey: KEY_A });
    await expectConflict(h.nsA.reservationRegister({ action: 'register', newKey: KEY_B }));
    await expectConflict(h.nsA.reservationRegister({ action: 'replace', currentKey: KEY_B, newKey: 5n }));
    await h.nsA.reservationRegister({ action: 'replace', currentKey: KEY_A, newKey: 5n });
    await h.nsA.reservationRegister({ action: 'replace', newKey: 6n, ignoreExistingKey: true });
    await expectConflict(h.nsA.reservationRegister({ action: 'unregister', currentKey: 5n }));
    const before = await h.nsA.reservationReport();
    expect(before.registrants.map((r) => r.key)).toEqual([6n]);
    await h.nsA.reservationRegister({ action: 'unregister', currentKey: 6n });
    const after = await h.nsA.reservationReport();
    expect(after.registrants).toEqual([]);
    expect(after.generation).toBeGreaterThan(before.generation);
    await expectConflict(h.nsB.reservationRegister({ action: 'unregister', currentKey: KEY_B }));
  });

  it('preempt: the preempted host loses its registration and is told so', async () => {
    const h = await twoHosts();
    const eventsA = recorder(h.a);
    await registerBoth(h);
    await h.nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: KEY_A });
    const gen = (await h.nsB.reservationReport()).generation;
    await h.nsB.reservationAcquire({ action: 'preempt', type: 'exclusive-access', key: KEY_B, preemptKey: KEY_A });
    const ev = await eventsA.next((e) => e.notification === 'registration-preempted');
    expect(ev).toMatchObject({ type: 'reservation', nsid: 1, notification: 'registration-preempted', cntlid: h.a.cntlid });
    expect(ev.logPageCount).toBeGreaterThan(0n);
    const report = await h.nsB.reservationReport();
    expect(report.generation).toBeGreaterThan(gen);
    expect(report.type).toBe('exclusive-access');
    expect(report.registrants).toEqual([{ cntlid: h.b.cntlid, hostId: hex(h.b.hostid), key: KEY_B, holdsReservation: true }]);
    expect(report.holder?.hostId).toBe(hex(h.b.hostid));
    await expectConflict(h.nsA.read(0, 1));
    await expectConflict(h.nsA.reservationRelease({ action: 'release', type: 'exclusive-access', key: KEY_A }));
  });

  it('preempt-and-abort takes over the reservation the same way', async () => {
    const h = await twoHosts();
    const eventsA = recorder(h.a);
    await registerBoth(h);
    await h.nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive-registrants-only', key: KEY_A });
    await h.nsB.reservationAcquire({ action: 'preempt-and-abort', type: 'write-exclusive', key: KEY_B, preemptKey: KEY_A });
    await eventsA.next((e) => e.notification === 'registration-preempted');
    const report = await h.nsA.reservationReport();
    expect(report.type).toBe('write-exclusive');
    expect(report.holder?.hostId).toBe(hex(h.b.hostid));
    expect(report.registrants).toHaveLength(1);
    await expectConflict(h.nsA.write(0, block(h.nsA, 9)));
  });

  it('release: other registrants hear of it for registrants-only types; the type must match', async () => {
    const h = await twoHosts();
    const eventsB = recorder(h.b);
    await registerBoth(h);
    await h.nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive-registrants-only', key: KEY_A });
    const wrongType = await statusOf(h.nsA.reservationRelease({ action: 'release', type: 'write-exclusive', key: KEY_A }));
    expect([wrongType.sct, wrongType.sc]).toEqual([0, 0x02]);
    await expectConflict(h.nsA.reservationRelease({ action: 'release', type: 'write-exclusive-registrants-only', key: KEY_B }));
    await h.nsA.reservationRelease({ action: 'release', type: 'write-exclusive-registrants-only', key: KEY_A });
    const ev = await eventsB.next((e) => e.notification === 'reservation-released');
    expect(ev).toMatchObject({ nsid: 1, cntlid: h.b.cntlid });
    const report = await h.nsA.reservationReport();
    expect(report.type).toBeNull();
    expect(report.registrants).toHaveLength(2);
    // Releasing when not holding is not an error.
    await h.nsB.reservationRelease({ action: 'release', type: 'write-exclusive-registrants-only', key: KEY_B });
  });

  it('clear: every registration goes, the others hear reservation-preempted', async () => {
    const h = await twoHosts();
    const eventsA = recorder(h.a);
    await registerBoth(h);
    await h.nsA.reservationAcquire({ action: 'acquire', type: 'exclusive-access', key: KEY_A });
    const gen = (await h.nsB.reservationReport()).generation;
    await h.nsB.reservationRelease({ action: 'clear', key: KEY_B });
    const ev = await eventsA.next((e) => e.notification === 'reservation-preempted');
    expect(ev.nsid).toBe(1);
    const report = await h.nsA.reservationReport();
    expect(report).toMatchObject({ type: null, registrants: [] });
    expect(report.generation).toBeGreaterThan(gen);
    await h.nsA.write(0, block(h.nsA, 4));
    await h.nsB.write(0, block(h.nsB, 5));
  });

  it('the standard report is refused for 128-bit host IDs (as SPDK does); the default falls back only when needed', async () => {
    const h = await twoHosts();
    await registerBoth(h);
    const err = await statusOf(h.nsA.reservationReport({ extended: false }));
    expect(err.statusName).toBe('Host Identifier Inconsistent Format');
    const ext = await h.nsA.reservationReport({ extended: true });
    expect(ext.registrants.map((r) => r.hostId).sort()).toEqual([hex(h.a.hostid), hex(h.b.hostid)].sort());
    expect(ext.registrants.map((r) => r.key).sort()).toEqual([KEY_A, KEY_B].sort());
  });

  it('all-registrants reservations: every registrant holds it', async () => {
    const h = await twoHosts();
    await registerBoth(h);
    await h.nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive-all-registrants', key: KEY_A });
    await h.nsB.write(0, block(h.nsB, 6));
    const report = await h.nsB.reservationReport();
    expect(report.type).toBe('write-exclusive-all-registrants');
    expect(report.holder).toBeDefined();
  });
});
