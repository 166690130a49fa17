/**
 * Asynchronous events and ANA on the host side, against the embedded target: AER arming and re-arming, typed
 * events, namespace and ANA changes, the bounded iterator, ANA transition retries, and clean close.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { ErrorCode, NvmeStatusError } from '../src/errors.js';
import { EventHub, type ControllerEvent } from '../src/host/events.js';
import { EventQueue } from '../src/event-channel.js';
import { AsyncEventConfig, AsyncEventType, NoticeEvent, asyncEventConfigFor, decodeAsyncEvent } from '../src/protocol/async-events.js';
import { AnaTracker, anaLogBytesNeeded, toAnaStateName } from '../src/host/ana.js';
import { AERL } from '../src/target/controller.js';
import type { AnaLog } from '../src/protocol/logpages.js';
import { TargetEnv, adminRoundTrip, settled } from './helpers/target-env.js';
import { waitFor } from './helpers/wait.js';

const env = new TargetEnv();
afterEach(() => env.cleanup());

/** The next event of `type` from `ctrl.on`. */
function nextEvent<T extends ControllerEvent['type']>(ctrl: { on(t: '*', fn: (e: ControllerEvent) => void): () => void }, type: T, ms = 3000): Promise<Extract<ControllerEvent, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} event within ${ms} ms`));
    }, ms);
    const off = ctrl.on('*', (e) => {
      if (e.type !== type) return;
      clearTimeout(timer);
      off();
      resolve(e as Extract<ControllerEvent, { type: T }>);
    });
  });
}

describe('AER decoding and configuration', () => {
  it('decodes DW0 fields at bits 2:0, 15:8 and 23:16', () => {
    // Notice (2), ANA change (0x03), log page 0x0C.
    expect(decodeAsyncEvent(0x000c0302)).toEqual({ type: 2, info: 3, lid: 0x0c, name: 'Asymmetric Namespace Access Change' });
    // Notice, discovery log change (0xF0), log page 0x70; upper byte ignored.
    expect(decodeAsyncEvent(0xff70f002)).toMatchObject({ type: 2, info: 0xf0, lid: 0x70, name: 'Discovery Log Page Change' });
    expect(decodeAsyncEvent(0x00020101)).toMatchObject({ type: AsyncEventType.SmartHealthStatus, info: 1, lid: 2, name: 'Temperature Threshold' });
    expect(decodeAsyncEvent(0x00800006)).toMatchObject({ type: 6, info: 0, lid: 0x80, name: 'Reservation Log Page Available' });
    expect(decodeAsyncEvent(0x00000407)).toMatchObject({ type: 7, info: 4, lid: 0 });
  });

  it('asks for the notices OAES lists and the SMART critical warnings; only discovery changes on discovery controllers', () => {
    const oaes = { namespaceAttribute: true, firmwareActivation: false, ana: true, discoveryLogChange: true };
    const id = (anaReporting: boolean) => ({ decoded: { oaes, cmic: { anaReporting } } }) as never;
    expect(asyncEventConfigFor(id(true), false)).toEqual({ smart: 0x1f, notices: (1 << 8) | (1 << 11) });
    expect(asyncEventConfigFor(id(false), false)).toEqual({ smart: 0x1f, notices: 1 << 8 });
    expect(asyncEventConfigFor(id(true), true)).toEqual({ smart: 0, notices: 0x8000_0000 });
    expect(AsyncEventConfig.DiscoveryLogChange).toBe(2 ** 31);
    expect(NoticeEvent.AnaChange).toBe(3);
  });
});

describe('event hub and bounded iterator', () => {
  const ev = (n: number): ControllerEvent => ({ type: 'other', aenType: 7, info: n, lid: 0, name: '', time: 0, cntlid: 1 });

  it('drops past the high-water mark, counts the drops, and reports them in place', async () => {
    const hub = new EventHub(() => 7);
    const it = hub.iterate({ highWaterMark: 2 });
    for (let i = 0; i < 5; i++) hub.emit({ type: 'other', aenType: 7, info: i, lid: 0, name: '' });
    expect(it.queued).toBe(2);
    expect(it.dropped).toBe(3);
    const got: ControllerEvent[] = [];
    for (let i = 0; i < 3; i++) got.push((await it.next()).value as ControllerEvent);
    expect(got.map((e) => (e.type === 'other' ? `o${e.info}` : e.type === 'overflow' ? `x${e.dropped}` : '?'))).toEqual(['o0', 'o1', 'x3']);
    expect(got[2]).toMatchObject({ type: 'overflow', dropped: 3, cntlid: 7 });
    // After draining, events flow again; a later overflow sits between the events around it.
    hub.emit({ type: 'other', aenType: 7, info: 10, lid: 0, name: '' });
    hub.emit({ type: 'other', aenType: 7, info: 11, lid: 0, name: '' });
    hub.emit({ type: 'other', aenType: 7, info: 12, lid: 0, name: '' });
    expect((await it.next()).value).toMatchObject({ info: 10 });
    hub.emit({ type: 'other', aenType: 7, info: 13, lid: 0, name: '' });
    expect((await it.next()).value).toMatchObject({ info: 11 });
    expect((await it.next()).value).toMatchObject({ type: 'overflow', dropped: 1 });
    expect((await it.next()).value).toMatchObject({ info: 13 });
    expect(it.dropped).toBe(4);
    hub.close();
    expect(await it.next()).toEqual({ value: undefined, done: true });
  });

  it('ends iterators on close after the queued events, and on return(); abort rejects a pending next()', async () => {
    const hub = new EventHub(() => 1);
    const a = hub.iterate();
    const b = hub.iterate();
    const ac = new AbortController();
    const c = hub.iterate({ signal: ac.signal });
    hub.emit({ type: 'discovery-change' });
    const pendingC = (async () => {
      await c.next();
      return c.next();
    })();
    await b.return!();
    expect(await b.next()).toMatchObject({ done: true });
    ac.abort(new Error('stop'));
    await expect(pendingC).rejects.toMatchObject({ code: ErrorCode.ABORTED });
    expect(await c.next()).toMatchObject({ done: true });
    const waiting = hub.iterate().next();
    hub.close();
    expect(await a.next()).toMatchObject({ value: { type: 'discovery-change' }, done: false });
    expect(await a.next()).toMatchObject({ done: true });
    expect(await waiting).toMatchObject({ done: true });
    // An iterator created after close is already finished.
    expect(await hub.iterate().next()).toMatchObject({ done: true });
  });

  it('filters by type, keeps listeners apart, and survives a throwing listener', async () => {
    const hub = new EventHub(() => 1);
    const seen: string[] = [];
    const off = hub.on('discovery-change', (e) => seen.push(`d:${e.type}`));
    hub.on('*', (e) => seen.push(`*:${e.type}`));
    const errors: unknown[] = [];
    const onUncaught = (e: unknown) => errors.push(e);
    process.prependListener('uncaughtException', onUncaught);
    try {
      hub.on('*', () => {
        throw new Error('listener bug');
      });
      const it = hub.iterate({ types: ['discovery-change'] });
      hub.emit({ type: 'other', aenType: 7, info: 0, lid: 0, name: '' });
      hub.emit({ type: 'discovery-change' });
      off();
      hub.emit({ type: 'discovery-change' });
      expect(seen).toEqual(['*:other', 'd:discovery-change', '*:discovery-change', '*:discovery-change']);
      expect(it.queued).toBe(2);
      // Each throwing call is reported as an uncaught exception from a microtask.
      await waitFor(() => errors.length >= 3, 2000, 'the listener errors to be reported');
    } finally {
      process.removeListener('uncaughtException', onUncaught);
    }
    expect(errors).toHaveLength(3);
    expect(() => hub.iterate({ highWaterMark: 0 })).toThrow(/highWaterMark/);
    void ev;
  });

  it('EventQueue is generic', async () => {
    const q = new EventQueue<number>(1, (n) => n % 2 === 0, (d) => -d);
    q.push(1);
    q.push(2);
    q.push(4);
    q.push(6);
    expect((await q.next()).value).toBe(2);
    expect((await q.next()).value).toBe(-2);
  });
});

describe('ANA tracker', () => {
  const log = (chgcnt: number, groups: { g: number; s: number; ns: number[] }[]): AnaLog => ({
    chgcnt: BigInt(chgcnt),
    ngrps: groups.length,
    groups: groups.map(({ g, s, ns }) => ({ anagrpid: g, nnsids: ns.length, chgcnt: BigInt(chgcnt), state: s, stateName: 'optimized', nsids: ns })),
  });

  it('maps state values to names (reserved ones to inaccessible)', () => {
    expect([1, 2, 3, 4, 0xf, 0, 5, 0xe].map(toAnaStateName)).toEqual(['optimized', 'non-optimized', 'inaccessible', 'persistent-loss', 'change', 'inaccessible', 'inaccessible', 'inaccessible']);
  });

  it('diffs logs by namespace and group, keeps the namespace map with RGO, and clears overrides on a read', async () => {
    const reads: AnaLog[] = [log(1, [{ g: 1, s: 1, ns: [1, 2] }, { g: 2, s: 2, ns: [3] }])];
    const seen: { reason: string; changed: unknown[] }[] = [];
    const t = new AnaTracker(async () => reads.shift()!, 10, (_l, d, reason) => seen.push({ reason, changed: d.changed }));
    await t.refresh(false, 'initial');
    expect(t.stateOf(1)).toBe('optimized');
    expect(t.stateOf(3)).toBe('non-optimized');
    expect(t.groupOf(3)).toBe(2);
    expect(t.stateOf(9)).toBeUndefined();
    // An Inaccessible status for ns 3 marks its whole group until the next read.
    reads.push({ ...log(2, [{ g: 1, s: 1, ns: [] }, { g: 2, s: 3, ns: [] }]) });
    t.noteStatus(3, 0x02);
    expect(t.stateOf(3)).toBe('inaccessible');
    await waitFor(() => seen.length === 2);
    expect(seen[1]).toEqual({ reason: 'status', changed: [{ nsid: 3, group: 2, state: 'inaccessible', previous: 'non-optimized' }] });
    // RGO read kept the namespace-to-group map.
    expect(t.groupOf(1)).toBe(1);
    // Namespace 2 moves to group 2.
    reads.push(log(3, [{ g: 1, s: 1, ns: [1] }, { g: 2, s: 3, ns: [2, 3] }]));
    const d = t.apply(reads.shift()!);
    expect(d.changed).toEqual([{ nsid: 2, group: 2, state: 'inaccessible', previous: 'optimized' }]);
    expect(d.groups).toEqual([]);
  });

  it('reports a provisional state the next log contradicts as a change back, with the provisional state as previous', async () => {
    const reads: AnaLog[] = [log(1, [{ g: 1, s: 1, ns: [1] }])];
    const seen: { reason: string; changed: unknown[]; groups: unknown[] }[] = [];
    const t = new AnaTracker(async () => reads.shift()!, 10, (_l, d, reason) => seen.push({ reason, changed: d.changed, groups: d.groups }));
    await t.refresh(false, 'initial');
    reads.push(log(1, [{ g: 1, s: 1, ns: [1] }]));
    t.noteStatus(1, 0x03);
    expect(t.stateOf(1)).toBe('change');
    await waitFor(() => seen.length === 2);
    expect(t.stateOf(1)).toBe('optimized');
    expect(seen[1]).toEqual({
      reason: 'status',
      changed: [{ nsid: 1, group: 1, state: 'optimized', previous: 'change' }],
      groups: [{ group: 1, state: 'optimized', previous: 'change' }],
    });
  });

  it('never overlaps reads: calls during a read share one follow-up read', async () => {
    let active = 0;
    let maxActive = 0;
    let count = 0;
    // Each read stays open until the test lets it finish, so the calls below all come while the first one runs.
    const gates: (() => void)[] = [];
    const t = new AnaTracker(async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      count++;
      await new Promise<void>((r) => gates.push(r));
      active--;
      return log(count, [{ g: 1, s: 1, ns: [1] }]);
    }, 10);
    const p1 = t.refresh();
    const p2 = t.refresh(true);
    const p3 = t.refresh(false, 'aen');
    await waitFor(() => gates.length === 1, 2000, 'the first read');
    gates.shift()!();
    await waitFor(() => gates.length === 1, 2000, 'the follow-up read');
    gates.shift()!();
    await Promise.all([p1, p2, p3]);
    expect(count).toBe(2);
    expect(maxActive).toBe(1);
    expect((await p3).chgcnt).toBe(2n);
  });

  it('follows the descriptors to find how many bytes the log needs', () => {
    const buf = Buffer.alloc(16 + 32 + 8);
    buf.writeUInt16LE(2, 8);
    buf.writeUInt32LE(1, 16);
    buf.writeUInt32LE(2, 20);
    expect(anaLogBytesNeeded(buf, false)).toBe(16 + 32 + 8 + 32);
    expect(anaLogBytesNeeded(buf, true)).toBe(16 + 32 + 32);
    expect(anaLogBytesNeeded(Buffer.alloc(8), false)).toBe(16);
  });
});

describe('controller events against the embedded target', () => {
  it('configures events, keeps AERL + 1 (at most 4) AERs outstanding, and re-arms after each event', async () => {
    await env.start({ subsystem: { ana: true } });
    const ctrl = await env.connect({ ioQueues: 1 });
    const tc = env.target.controllers()[0]!;
    await waitFor(() => tc.outstandingAers === Math.min(AERL + 1, 4));
    expect(tc.aec & AsyncEventConfig.NamespaceAttribute).toBeTruthy();
    expect(tc.aec & AsyncEventConfig.AnaChange).toBeTruthy();
    expect(ctrl.asyncEvents).toMatchObject({ limit: Math.min(AERL + 1, 4), failed: 0 });
    for (let i = 0; i < 6; i++) {
      const got = nextEvent(ctrl, 'other');
      env.target.sendAsyncEvent({ type: 7, info: i, lid: 0 });
      expect(await got).toMatchObject({ type: 'other', aenType: 7, info: i, lid: 0, cntlid: ctrl.cntlid });
    }
    await waitFor(() => tc.outstandingAers === 4);
    expect(ctrl.asyncEvents).toMatchObject({ received: 6, outstanding: 4 });
  });

  it('does not arm AERs with events: false', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1, events: false });
    // AERs would be submitted at the end of bring-up, before this Keep Alive: the target has seen them by its answer.
    await adminRoundTrip(ctrl);
    expect(env.target.controllers()[0]!.outstandingAers).toBe(0);
    expect(ctrl.asyncEvents).toBeUndefined();
  });

  it('does not re-arm an AER that completes with an error status', async () => {
    await env.start();
    // Every AER after the first two fails with Asynchronous Event Request Limit Exceeded.
    env.target.inject({ action: 'status', match: { opcode: 0x0c }, skip: 2, status: { sct: 1, sc: 5, dnr: true } });
    const ctrl = await env.connect({ ioQueues: 1 });
    const tc = env.target.controllers()[0]!;
    await waitFor(() => ctrl.asyncEvents!.failed === 2);
    // A replacement would be submitted from the failed completion's handler, before this Keep Alive.
    await adminRoundTrip(ctrl);
    expect(tc.outstandingAers).toBe(2);
    expect(ctrl.asyncEvents).toMatchObject({ outstanding: 2, failed: 2 });
    expect(ctrl.asyncEvents!.lastError).toMatchObject({ sct: 1, sc: 5 });
    // Events still arrive through the two that were accepted; each is replaced and refused again, never looping.
    const got = nextEvent(ctrl, 'other');
    env.target.sendAsyncEvent({ type: 7, info: 1, lid: 0 });
    await got;
    await waitFor(() => ctrl.asyncEvents!.failed === 3, 2000, 'the replacement AER to be refused');
    await adminRoundTrip(ctrl);
    expect(ctrl.asyncEvents!.failed).toBe(3);
    expect(tc.outstandingAers).toBe(1);
  });

  it('reports namespaces added and removed with the Changed Namespace List', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const it = ctrl.events({ types: ['namespace-changed'] });
    env.subsys.addNamespace({ nsid: 5, blocks: 1024 });
    const added = (await it.next()).value;
    expect(added).toMatchObject({ type: 'namespace-changed', nsids: [5], overflow: false, added: [5], removed: [] });
    env.subsys.removeNamespace(5);
    expect((await it.next()).value).toMatchObject({ nsids: [5], added: [], removed: [5] });
    // The target only sends the next one because the log was read with RAE cleared.
    env.subsys.addNamespace({ nsid: 6, blocks: 1024 });
    expect((await it.next()).value).toMatchObject({ nsids: [6], added: [6] });
  });

  it('follows ANA state changes: event, controller and namespace state', async () => {
    await env.start({ subsystem: { ana: true } });
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    expect(ns.anaGroup).toBe(1);
    expect(ns.anaState).toBe('optimized');
    expect(ctrl.anaState(1)).toBe('optimized');
    expect(ctrl.anaLog?.groups[0]).toMatchObject({ anagrpid: 1, nsids: [1] });

    const ev = nextEvent(ctrl, 'ana-change');
    env.subsys.setAnaState(env.port, 1, 'non-optimized');
    expect(await ev).toMatchObject({ reason: 'aen', changed: [{ nsid: 1, group: 1, state: 'non-optimized', previous: 'optimized' }], groups: [{ group: 1, state: 'non-optimized' }] });
    expect(ns.anaState).toBe('non-optimized');

    const ev2 = nextEvent(ctrl, 'ana-change');
    env.subsys.setAnaState(env.port, 1, 'inaccessible');
    await ev2;
    expect(ctrl.anaState(1)).toBe('inaccessible');
    const err = await ns.read(0, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NvmeStatusError);
    expect(err).toMatchObject({ sct: 3, sc: 2 });

    const ev3 = nextEvent(ctrl, 'ana-change');
    env.subsys.setAnaState(env.port, 1, 'optimized');
    await ev3;
    await ns.write(0, Buffer.alloc(512, 7));
    expect((await ns.read(0, 1))[0]).toBe(7);
  });

  it('refreshes ANA state from I/O path statuses when events are off', async () => {
    await env.start({ subsystem: { ana: true } });
    const ctrl = await env.connect({ ioQueues: 1, events: false });
    const ns = await ctrl.namespace(1);
    const seen: ControllerEvent[] = [];
    ctrl.on('ana-change', (e) => seen.push(e));
    env.subsys.setAnaState(env.port, 1, 'persistent-loss');
    await expect(ns.read(0, 1)).rejects.toMatchObject({ sct: 3, sc: 1 });
    expect(ns.anaState).toBe('persistent-loss');
    await waitFor(() => seen.length === 1);
    expect(seen[0]).toMatchObject({ reason: 'status', changed: [{ nsid: 1, state: 'persistent-loss', previous: 'optimized' }] });
    // A manual refresh after the target moves on.
    env.subsys.setAnaState(env.port, 1, 'optimized');
    await ctrl.refreshAnaState();
    expect(ns.anaState).toBe('optimized');
    await ctrl.refreshAnaState({ rgo: true });
    expect(ctrl.anaGroup(1)).toBe(1);
  });

  it('retries single-path I/O that meets ANA Transition until the state settles', async () => {
    await env.start({ subsystem: { ana: true } });
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    expect(ctrl.anaTransitionTimeout).toBe(10_000);
    await ns.write(0, Buffer.alloc(512, 9));
    const changing = nextEvent(ctrl, 'ana-change');
    env.subsys.setAnaState(env.port, 1, 'change');
    await changing;
    const started = Date.now();
    // The read meets ANA Transition: it must be retried, not failed. Wait for the target to see it a second time.
    let reads = 0;
    env.target.on('command', (c) => {
      if (c.qid > 0 && c.opcode === 0x02) reads++;
    });
    const read = ns.read(0, 1);
    await waitFor(() => reads >= 2, 5000, 'the read to be retried');
    expect(await settled(read)).toBe('pending');
    env.subsys.setAnaState(env.port, 1, 'optimized');
    const data = await read;
    expect(data[0]).toBe(9);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('gives up on ANA Transition after ANATT', async () => {
    await env.start({ target: { anatt: 1 }, subsystem: { ana: true } });
    const ctrl = await env.connect({ ioQueues: 1, events: false });
    const ns = await ctrl.namespace(1);
    expect(ctrl.anaTransitionTimeout).toBe(1000);
    env.subsys.setAnaState(env.port, 1, 'change');
    const started = Date.now();
    await expect(ns.read(0, 1)).rejects.toMatchObject({ sct: 3, sc: 3 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(ns.anaState).toBe('change');
  });

  it('reads the named log page for error, SMART and reservation events', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const commands: { opcode: number; cdw10: number }[] = [];
    env.target.on('command', (c) => commands.push({ opcode: c.opcode, cdw10: c.sqe.readUInt32LE(40) }));
    const e1 = nextEvent(ctrl, 'error');
    env.target.sendAsyncEvent({ type: 0, info: 4, lid: 1 });
    expect(await e1).toMatchObject({ type: 'error', info: 4, name: 'Transient Internal Error' });
    const e2 = nextEvent(ctrl, 'smart');
    env.target.sendAsyncEvent({ type: 1, info: 1, lid: 2 });
    const smart = await e2;
    expect(smart).toMatchObject({ type: 'smart', info: 1, name: 'Temperature Threshold' });
    env.target.sendAsyncEvent({ type: 6, info: 0, lid: 0x80 });
    // No notification is queued, so the log reads empty and no 'reservation' event is emitted; the log is still read.
    await waitFor(() => commands.some((c) => c.opcode === 0x02 && (c.cdw10 & 0xff) === 0x80));
    const logs = commands.filter((c) => c.opcode === 0x02).map((c) => ({ lid: c.cdw10 & 0xff, rae: (c.cdw10 >>> 15) & 1 }));
    expect(logs).toEqual([{ lid: 1, rae: 0 }, { lid: 2, rae: 0 }, { lid: 0x80, rae: 0 }]);
  });

  it('close() ends iterators, settles everything, and leaves no AER behind', async () => {
    await env.start({ subsystem: { ana: true } });
    const ctrl = await env.connect({ ioQueues: 1 });
    const tc = env.target.controllers()[0]!;
    await waitFor(() => tc.outstandingAers === 4);
    const it = ctrl.events();
    const pending = it.next();
    const forAwait = (async () => {
      const got: string[] = [];
      for await (const e of ctrl.events()) got.push(e.type);
      return got;
    })();
    await ctrl.close();
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(await forAwait).toEqual([]);
    expect(ctrl.state).toBe('closed');
    expect(await ctrl.events().next()).toMatchObject({ done: true });
    await expect(ctrl.waitForAnaChange(1, 60_000)).resolves.toBeUndefined();
  });

  it('close() also works when the target does not complete AERs at shutdown', async () => {
    await env.start();
    // The target never answers AERs (not even when it shuts down): they stay outstanding on the host.
    env.target.inject({ action: 'drop', match: { opcode: 0x0c } });
    const ctrl = await env.connect({ ioQueues: 1 });
    await waitFor(() => ctrl.asyncEvents!.outstanding === 4);
    const started = Date.now();
    await ctrl.close();
    expect(Date.now() - started).toBeLessThan(3000);
    expect(ctrl.state).toBe('closed');
  });

  it('destroy() ends iterators', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const p = ctrl.events().next();
    ctrl.destroy(new Error('boom'));
    expect(await p).toMatchObject({ done: true });
  });
});
