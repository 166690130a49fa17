/**
 * Persistent reservation scenarios against a real target, from two host identities in one process: the access rules
 * of all six reservation types, registration, the conflict rules, preempt, preempt-and-abort, release, clear, the
 * standard and extended reports, and reservation notifications arriving as controller events with their log page.
 * integration/kernel/reservations.test.ts (nvmet) and integration/spdk/reservations.test.ts (SPDK) call
 * `reservationScenarios()` inside their describe block with what differs between the two targets; the embedded
 * target runs its own (test/reservations-target.test.ts).
 *
 * Every scenario uses its own namespace (1..RESERVATION_NAMESPACES), so reservation state never leaks between them.
 */
import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { afterEach, expect, it } from 'vitest';
import type { Controller } from '../src/host/controller.js';
import type { Namespace } from '../src/host/namespace.js';
import type { ReservationType } from '../src/index.js';
import { KEY_A, KEY_B, expectConflict, hex, recorder, statusOf } from '../test/helpers/reservations.js';

/** Namespaces the scenarios use (one each), numbered from 1. */
export const RESERVATION_NAMESPACES = 10;

/** What differs between targets, and how to reach one. */
export interface ReservationTarget {
  /** Name in test titles and messages. */
  name: string;
  /** Connect a controller for `hostnqn` to the subsystem that holds the namespaces. */
  connect(hostnqn: string): Promise<Controller>;
  /**
   * The controller ID a report gives a registrant. nvmet reports FFFFh for every registrant (NVME_CNTLID_DYNAMIC: it
   * uses the dynamic controller model, and a registration belongs to the host ID, not to one of its controllers);
   * SPDK reports the controller ID of the registrant's controller.
   */
  registrantCntlid(ctrl: Controller): number;
  /**
   * How a Release with a type that does not match the reservation held is refused: `invalid-field` as the NVMe Base
   * specification asks (SPDK), or `reservation-conflict` (nvmet's release path returns that for a type mismatch). The
   * reservation stays either way.
   */
  releaseWrongType: 'invalid-field' | 'reservation-conflict';
  /**
   * Which registrants a report marks as holding an All Registrants reservation: `every-registrant`, as the
   * specification has it (every registrant is a reservation holder; nvmet), or `acquirer` (SPDK keeps one holder per
   * namespace and sets RCSTS for that registrant alone, although access follows the All Registrants rules).
   */
  allRegistrantsHolders: 'every-registrant' | 'acquirer';
}

// The access rules of NVMe Base 2.0 table "Command Behavior in the Presence of a Reservation", for a host that is not
// the holder: 'ok' or 'conflict' for a read and a write, when that host is not registered and when it is.
const RULES: Array<[ReservationType, { unregistered: [string, string]; registrant: [string, string]; allHold: boolean }]> = [
  ['write-exclusive', { unregistered: ['ok', 'conflict'], registrant: ['ok', 'conflict'], allHold: false }],
  ['exclusive-access', { unregistered: ['conflict', 'conflict'], registrant: ['conflict', 'conflict'], allHold: false }],
  ['write-exclusive-registrants-only', { unregistered: ['ok', 'conflict'], registrant: ['ok', 'ok'], allHold: false }],
  ['exclusive-access-registrants-only', { unregistered: ['conflict', 'conflict'], registrant: ['ok', 'ok'], allHold: false }],
  ['write-exclusive-all-registrants', { unregistered: ['ok', 'conflict'], registrant: ['ok', 'ok'], allHold: true }],
  ['exclusive-access-all-registrants', { unregistered: ['conflict', 'conflict'], registrant: ['ok', 'ok'], allHold: true }],
];

/** Register the scenarios (call inside the target's describe block, after its setup hooks). */
export function reservationScenarios(target: ReservationTarget): void {
  // Two host identities for the whole file; every scenario connects fresh controllers with them.
  const HOST_A = `nqn.2014-08.org.nvmexpress:uuid:${randomUUID()}`;
  const HOST_B = `nqn.2014-08.org.nvmexpress:uuid:${randomUUID()}`;
  const ctrls: Controller[] = [];
  afterEach(async () => {
    await Promise.allSettled(ctrls.splice(0).map((c) => c.close()));
  });

  async function host(hostnqn: string): Promise<Controller> {
    const c = await target.connect(hostnqn);
    ctrls.push(c);
    return c;
  }

  let nextNsid = 1;
  /** Both hosts connected and a namespace that no other scenario touches. */
  async function twoHosts() {
    const nsid = nextNsid++;
    if (nsid > RESERVATION_NAMESPACES) throw new Error('out of namespaces: raise RESERVATION_NAMESPACES');
    const a = await host(HOST_A);
    const b = await host(HOST_B);
    return { a, b, nsA: await a.namespace(nsid), nsB: await b.namespace(nsid), nsid };
  }

  async function registerBoth(nsA: Namespace, nsB: Namespace): Promise<void> {
    await nsA.reservationRegister({ action: 'register', newKey: KEY_A });
    await nsB.reservationRegister({ action: 'register', newKey: KEY_B });
  }

  const block = (ns: Namespace, fill: number) => Buffer.alloc(ns.blockSize, fill);

  it(`${target.name} reports reservation support for the namespace`, async () => {
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
      [hex(a.hostid), KEY_A, target.registrantCntlid(a)],
      [hex(b.hostid), KEY_B, target.registrantCntlid(b)],
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
    expect(byHost.get(hex(b.hostid))).toMatchObject({ key: KEY_B, holdsReservation: false, cntlid: target.registrantCntlid(b) });

    // The standard data structure carries 64-bit host IDs; an NVMe-oF host has a 128-bit one.
    const std = await statusOf(nsB.reservationReport({ extended: false }));
    expect(std.statusName).toBe('Host Identifier Inconsistent Format');
    expect(std.message).toMatch(/extended report/);

    await expectConflict(nsB.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: KEY_B }));
    await expectConflict(nsB.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: KEY_A }));
    await nsA.reservationRelease({ action: 'clear', key: KEY_A });
  });

  it('all six types: the holder reads and writes; the other host as non-registrant and as registrant per the spec table', async () => {
    const { a, b, nsA, nsB } = await twoHosts();
    const outcome = async (p: Promise<unknown>): Promise<string> => {
      const err = await p.then(() => null, (e: unknown) => e);
      if (err === null) return 'ok';
      expect([(err as { sct?: number }).sct, (err as { sc?: number }).sc]).toEqual([0, 0x83]);
      return 'conflict';
    };
    const seen: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const [type, rule] of RULES) {
      await nsA.reservationRegister({ action: 'register', newKey: KEY_A });
      await nsA.reservationAcquire({ action: 'acquire', type, key: KEY_A });
      await nsA.write(0, block(nsA, 0x11));
      expect(await nsA.read(0, 1)).toEqual(block(nsA, 0x11));
      const unregistered = [await outcome(nsB.read(0, 1)), await outcome(nsB.write(0, block(nsB, 0x22)))];
      await nsB.reservationRegister({ action: 'register', newKey: KEY_B });
      const registrant = [await outcome(nsB.read(0, 1)), await outcome(nsB.write(0, block(nsB, 0x33)))];
      const report = await nsA.reservationReport();
      const holders = report.registrants.filter((r) => r.holdsReservation).map((r) => r.hostId).sort();
      seen[type] = { type: report.type, unregistered, registrant, holders };
      expected[type] = {
        type,
        unregistered: rule.unregistered,
        registrant: rule.registrant,
        holders: (rule.allHold && target.allRegistrantsHolders === 'every-registrant' ? [hex(a.hostid), hex(b.hostid)] : [hex(a.hostid)]).sort(),
      };
      await nsA.reservationRelease({ action: 'clear', key: KEY_A });
    }
    expect(seen).toEqual(expected);
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
    expect(ev.log).toMatchObject({ rnlptName: 'registration-preempted', nsid });
    const report = await nsB.reservationReport();
    expect(report.generation).toBeGreaterThan(gen);
    expect(report.type).toBe('exclusive-access');
    expect(report.registrants).toEqual([{ cntlid: target.registrantCntlid(b), hostId: hex(b.hostid), key: KEY_B, holdsReservation: true }]);
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

  it(`release: the other registrant gets reservation-released (registrants-only type); a wrong type is refused (${target.releaseWrongType})`, async () => {
    const { b, nsA, nsB, nsid } = await twoHosts();
    const eventsB = recorder(b);
    await registerBoth(nsA, nsB);
    await nsA.reservationAcquire({ action: 'acquire', type: 'write-exclusive-registrants-only', key: KEY_A });
    const wrongType = nsA.reservationRelease({ action: 'release', type: 'write-exclusive', key: KEY_A });
    if (target.releaseWrongType === 'reservation-conflict') {
      await expectConflict(wrongType);
    } else {
      const err = await statusOf(wrongType);
      expect([err.sct, err.sc]).toEqual([0, 0x02]);
    }
    expect((await nsA.reservationReport()).type).toBe('write-exclusive-registrants-only');
    await expectConflict(nsA.reservationRelease({ action: 'release', type: 'write-exclusive-registrants-only', key: KEY_B }));
    await nsA.reservationRelease({ action: 'release', type: 'write-exclusive-registrants-only', key: KEY_A });
    const ev = await eventsB.next((e) => e.notification === 'reservation-released' && e.nsid === nsid);
    expect(ev.cntlid).toBe(b.cntlid);
    expect(ev.log).toMatchObject({ rnlptName: 'reservation-released', nsid });
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
    expect(ev.log).toMatchObject({ rnlptName: 'reservation-preempted', nsid });
    const report = await nsA.reservationReport();
    expect(report).toMatchObject({ type: null, registrants: [] });
    expect(report.generation).toBeGreaterThan(gen);
    await nsA.write(0, block(nsA, 4));
    await nsB.write(0, block(nsB, 5));
  });
}
