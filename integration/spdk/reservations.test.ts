/**
 * Persistent reservations against SPDK's nvmf_tgt, from two host identities in one process: registration, the
 * conflict rules of Write Exclusive and Exclusive Access, preempt, preempt-and-abort, release, clear, the reports,
 * and reservation notifications arriving as controller events.
 *
 * Every test uses its own namespace (its own malloc bdev), so reservation state never leaks between tests.
 */
import { randomUUID } from 'node:crypto';
import { Buffer } from 'node:buffer';
import { afterEach, expect, it } from 'vitest';
import { connect, type Controller } from '../../src/host/controller.js';
import type { Namespace } from '../../src/host/namespace.js';
import { describeSpdk, useSpdkTopology } from './env.js';
import { KEY_A, KEY_B, hex, statusOf, expectConflict, recorder } from '../../test/helpers/reservations.js';

const NAMESPACES = 10;

describeSpdk('reservations against SPDK', (env) => {
  const nqn = env.uniqueNqn('resv');
  const tag = nqn.slice(-8);
  let port = 0;
  useSpdkTopology(env, async () => {
    port = await env.freePort();
    const bdevs = Array.from({ length: NAMESPACES }, (_, i) => ({ type: 'malloc' as const, name: `resv-${tag}-${i + 1}`, blockSize: 512, sizeMiB: 4 }));
    return {
      bdevs,
      subsystems: [{
        nqn,
        namespaces: bdevs.map((b, i) => ({ bdev: b.name, nsid: i + 1 })),
        listeners: [{ traddr: env.host, trsvcid: port }],
      }],
    };
  });

  // Two host identities for the whole file; every test connects fresh controllers with them.
  const HOST_A = `nqn.2014-08.org.nvmexpress:uuid:${randomUUID()}`;
  const HOST_B = `nqn.2014-08.org.nvmexpress:uuid:${randomUUID()}`;
  const ctrls: Controller[] = [];
  afterEach(async () => {
    await Promise.allSettled(ctrls.splice(0).map((c) => c.close()));
  });

  async function host(hostnqn: string): Promise<Controller> {
    const c = await connect({ host: env.host, port, subnqn: nqn, hostnqn, ioQueues: 2 });
    ctrls.push(c);
    return c;
  }

  let nextNsid = 1;
  /** Both hosts connected and a namespace that no other test touches. */
  async function twoHosts() {
    const nsid = nextNsid++;
    if (nsid > NAMESPACES) throw new Error('out of namespaces: raise NAMESPACES');
    const a = await host(HOST_A);
    const b = await host(HOST_B);
    return { a, b, nsA: await a.namespace(nsid), nsB: await b.namespace(nsid), nsid };
  }

  async function registerBoth(nsA: Namespace, nsB: Namespace): Promise<void> {
    await nsA.reservationRegister({ action: 'register', newKey: KEY_A });
    await nsB.reservationRegister({ action: 'register', newKey: KEY_B });
  }

  const block = (ns: Namespace, fill: number) => Buffer.alloc(ns.blockSize, fill);

  it('SPDK reports reservation support', async () => {
    const { a, nsA } = await twoHosts();
    expect(a.oncs?.reservations).toBe(true);
    expect(nsA.identity.decoded.rescap).toMatchObject({
      writeExclusive: true, exclusiveAccess: true, writeExclusiveRegistrantsOnly: true, exclusiveAccessRegistrantsOnly: true,
      writeExclusiveAllRegistrants: true, exclusiveAccessAllRegistrants: true,
    });
  });

  it('two identities register; Write Exclusive: the other host reads but its write conflicts; reports list both', async () => {
    const { a, b, nsA, nsB, nsid } = await twoHosts();
    expect(a.hostid).not.toBe(b.hostid);
    await registerBoth(nsA, nsB);
    const before = await nsA.reservationReport({ extended: true });
    expect(before.type).toBeNull();
    expect(before.registrants.map((r) => [r.hostId, r.key, r.cntlid]).sort()).toEqual([
      [hex(a.hostid), KEY_A, a.cntlid],
      [hex(b.hostid), KEY_B, b.cntlid],
    ].sort());

    await nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: KEY_A });
    await nsA.write(0, block(nsA, 0xaa));
    await expectConflict(nsB.write(0, block(nsB, 0xbb)));
    expect(await nsB.read(0, 1)).toEqual(block(nsB, 0xaa));

    // Another controller of host A (same host NQN and host ID) is the holder too.
    const a2 = await host(HOST_A);
    expect([a2.hostnqn, a2.hostid]).toEqual([a.hostnqn, a.hostid]);
    const nsA2 = await a2.namespace(nsid);
    await nsA2.write(1, block(nsA2, 0xa2));

    const report = await nsB.reservationReport();
    expect(report.extended).toBe(true);
    expect(report.type).toBe('write-exclusive');
    expect(report.generation).toBe(before.generation);
    expect(report.holder).toMatchObject({ hostId: hex(a.hostid), key: KEY_A, holdsReservation: true });
    const byHost = new Map(report.registrants.map((r) => [r.hostId, r]));
    expect(byHost.get(hex(a.hostid))).toMatchObject({ key: KEY_A, holdsReservation: true });
    expect(byHost.get(hex(b.hostid))).toMatchObject({ key: KEY_B, holdsReservation: false, cntlid: b.cntlid });

    // The standard data structure carries 64-bit host IDs; an NVMe-oF host has a 128-bit one, so SPDK refuses it.
    const std = await statusOf(nsB.reservationReport({ extended: false }));
    expect(std.statusName).toBe('Host Identifier Inconsistent Format');
    expect(std.message).toMatch(/extended report/);

    await expectConflict(nsB.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: KEY_B }));
    await expectConflict(nsB.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: KEY_A }));
    await nsA.reservationRelease({ action: 'clear', key: KEY_A });
  });

  it('Exclusive Access: the other registrant can neither read nor write', async () => {
    const { nsA, nsB } = await twoHosts();
    await registerBoth(nsA, nsB);
    await nsA.reservationAcquire({ action: 'acquire', type: 'exclusive-access', key: KEY_A });
    await expectConflict(nsB.read(0, 1));
    await expectConflict(nsB.write(0, block(nsB, 1)));
    await nsA.read(0, 1);
    await nsA.reservationRelease({ action: 'clear', key: KEY_A });
  });

  it('register rules: same key again is fine, another key conflicts, replace and unregister check the key', async () => {
    const { nsA, nsB } = await twoHosts();
    await nsA.reservationRegister({ action: 'register', newKey: KEY_A });
    await nsA.reservationRegister({ action: 'register', newKey: KEY_A });
    await expectConflict(nsA.reservationRegister({ action: 'register', newKey: KEY_B }));
    await expectConflict(nsA.reservationRegister({ action: 'replace', currentKey: KEY_B, newKey: 5n }));
    await nsA.reservationRegister({ action: 'replace', currentKey: KEY_A, newKey: 5n });
    await nsA.reservationRegister({ action: 'replace', newKey: 6n, ignoreExistingKey: true });
    await expectConflict(nsA.reservationRegister({ action: 'unregister', currentKey: 5n }));
    const before = await nsA.reservationReport();
    expect(before.registrants.map((r) => r.key)).toEqual([6n]);
    await nsA.reservationRegister({ action: 'unregister', currentKey: 6n });
    const after = await nsA.reservationReport();
    expect(after.registrants).toEqual([]);
    expect(after.generation).toBeGreaterThan(before.generation);
    await expectConflict(nsB.reservationRegister({ action: 'unregister', currentKey: KEY_B }));
  });

  it('preempt: the preempted host loses its registration and gets a registration-preempted event', async () => {
    const { a, b, nsA, nsB, nsid } = await twoHosts();
    const eventsA = recorder(a);
    await registerBoth(nsA, nsB);
    await nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: KEY_A });
    const gen = (await nsB.reservationReport()).generation;
    await nsB.reservationAcquire({ action: 'preempt', type: 'exclusive-access', key: KEY_B, preemptKey: KEY_A });
    const ev = await eventsA.next((e) => e.notification === 'registration-preempted' && e.nsid === nsid);
    expect(ev).toMatchObject({ type: 'reservation', nsid, cntlid: a.cntlid });
    expect(ev.logPageCount).toBeGreaterThan(0n);
    const report = await nsB.reservationReport();
    expect(report.generation).toBeGreaterThan(gen);
    expect(report.type).toBe('exclusive-access');
    expect(report.registrants).toEqual([{ cntlid: b.cntlid, hostId: hex(b.hostid), key: KEY_B, holdsReservation: true }]);
    await expectConflict(nsA.read(0, 1));
    await expectConflict(nsA.reservationRelease({ action: 'release', type: 'exclusive-access', key: KEY_A }));
    await nsB.reservationRelease({ action: 'clear', key: KEY_B });
  });

  it('preempt-and-abort takes the reservation over the same way', async () => {
    const { a, b, nsA, nsB, nsid } = await twoHosts();
    const eventsA = recorder(a);
    await registerBoth(nsA, nsB);
    await nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive-registrants-only', key: KEY_A });
    await nsA.write(0, block(nsA, 7));
    await nsB.reservationAcquire({ action: 'preempt-and-abort', type: 'write-exclusive', key: KEY_B, preemptKey: KEY_A });
    await eventsA.next((e) => e.notification === 'registration-preempted' && e.nsid === nsid);
    const report = await nsA.reservationReport();
    expect(report.type).toBe('write-exclusive');
    expect(report.holder?.hostId).toBe(hex(b.hostid));
    expect(report.registrants).toHaveLength(1);
    await expectConflict(nsA.write(0, block(nsA, 9)));
    await nsB.write(0, block(nsB, 8));
    await nsB.reservationRelease({ action: 'clear', key: KEY_B });
  });

  it('release: the other registrant gets reservation-released (registrants-only type); the type must match', async () => {
    const { b, nsA, nsB, nsid } = await twoHosts();
    const eventsB = recorder(b);
    await registerBoth(nsA, nsB);
    await nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive-registrants-only', key: KEY_A });
    const wrongType = await statusOf(nsA.reservationRelease({ action: 'release', type: 'write-exclusive', key: KEY_A }));
    expect([wrongType.sct, wrongType.sc]).toEqual([0, 0x02]);
    await expectConflict(nsA.reservationRelease({ action: 'release', type: 'write-exclusive-registrants-only', key: KEY_B }));
    await nsA.reservationRelease({ action: 'release', type: 'write-exclusive-registrants-only', key: KEY_A });
    const ev = await eventsB.next((e) => e.notification === 'reservation-released' && e.nsid === nsid);
    expect(ev.cntlid).toBe(b.cntlid);
    const report = await nsA.reservationReport();
    expect(report.type).toBeNull();
    expect(report.holder).toBeUndefined();
    expect(report.registrants).toHaveLength(2);
    await nsA.reservationRelease({ action: 'clear', key: KEY_A });
  });

  it('clear: every registration goes and the other host gets reservation-preempted', async () => {
    const { a, nsA, nsB, nsid } = await twoHosts();
    const eventsA = recorder(a);
    await registerBoth(nsA, nsB);
    await nsA.reservationAcquire({ action: 'acquire', type: 'exclusive-access', key: KEY_A });
    const gen = (await nsB.reservationReport()).generation;
    await nsB.reservationRelease({ action: 'clear', key: KEY_B });
    const ev = await eventsA.next((e) => e.notification === 'reservation-preempted' && e.nsid === nsid);
    expect(ev.type).toBe('reservation');
    const report = await nsA.reservationReport();
    expect(report).toMatchObject({ type: null, registrants: [] });
    expect(report.generation).toBeGreaterThan(gen);
    await nsA.write(0, block(nsA, 4));
    await nsB.write(0, block(nsB, 5));
  });
});
