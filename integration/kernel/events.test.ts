/**
 * Asynchronous events and ANA against the Linux kernel target: the host enables events and keeps AERs outstanding;
 * changing an ANA group's state in the guest (nvmet-ctl ana) produces an ANA change event within a few seconds and
 * the namespace's ANA state follows; I/O meeting ANA Transition waits and succeeds once the state settles; adding a
 * namespace in the guest (nvmet-ctl ns-add) produces a namespace-changed event listing it.
 */
import { Buffer } from 'node:buffer';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AsyncEventConfig, connect, NvmeStatusError, type Controller, type ControllerEvent, type Namespace } from '../../src/index.js';
import { describeKernel, itFull } from './env.js';
import { waitFor } from '../../test/helpers/wait.js';

describeKernel('kernel nvmet: asynchronous events and ANA', (target) => {
  const port = target.ports.nvme1;
  const NSID = 1;
  const group = target.anaGroups.find((g) => g.nsids.includes(NSID))!;
  const restore: (() => Promise<unknown>)[] = [];
  let mp: Controller;
  let open: Controller;
  let ns: Namespace;
  const mpEvents: ControllerEvent[] = [];
  const openEvents: ControllerEvent[] = [];

  beforeAll(async () => {
    mp = await connect({ host: port.host, port: port.port, subnqn: target.multipathNqn, ioQueues: 1, queueSize: 16, connectTimeout: 30_000 });
    mp.on('*', (e) => mpEvents.push(e));
    ns = await mp.namespace(NSID);
    open = await connect({ host: port.host, port: port.port, subnqn: target.openNqn, ioQueues: 1, queueSize: 16, connectTimeout: 30_000 });
    open.on('*', (e) => openEvents.push(e));
  });

  afterAll(async () => {
    for (const r of restore.splice(0).reverse()) await r().catch(() => {});
    const started = Date.now();
    await mp?.close();
    await open?.close();
    // AERs are outstanding on both controllers; closing must not wait for them.
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  itFull('enables the events nvmet supports and keeps AERL + 1 AERs outstanding', () => {
    const id = mp.identity;
    expect(id.decoded.cmic.anaReporting).toBe(true);
    expect(id.decoded.oaes).toMatchObject({ namespaceAttribute: true, ana: true });
    const st = mp.asyncEvents!;
    expect(st.config! & AsyncEventConfig.NamespaceAttribute).toBeTruthy();
    expect(st.config! & AsyncEventConfig.AnaChange).toBeTruthy();
    expect(st.limit).toBe(Math.min(id.aerl + 1, 4));
    expect(st.outstanding).toBe(st.limit);
    expect(st.failed).toBe(0);
    // ANA state as read at bring-up.
    expect(ns.anaGroup).toBe(group.grpid);
    expect(ns.anaState).toBe(group.initialState.nvme1);
    expect(mp.anaState(NSID)).toBe(group.initialState.nvme1);
  });

  it("changing an ANA group's state in the guest produces an ANA change event and the namespace state follows", async () => {
    restore.push(() => target.nvmetCtl('ana', port.portid, group.grpid, group.initialState.nvme1));
    const from = mpEvents.length;
    const sawState = (state: string) => () =>
      mpEvents.slice(from).some((e) => e.type === 'ana-change' && e.changed.some((c) => c.nsid === NSID && c.state === state));
    const t0 = Date.now();
    await target.nvmetCtl('ana', port.portid, group.grpid, 'inaccessible');
    await waitFor(sawState('inaccessible'), 15_000, 'an ANA change event (inaccessible)', () => JSON.stringify(mpEvents.map((e) => e.type)));
    const ev = mpEvents.slice(from).find((e) => e.type === 'ana-change')!;
    expect(ev).toMatchObject({ type: 'ana-change', reason: 'aen', cntlid: mp.cntlid });
    if (ev.type === 'ana-change') {
      expect(ev.changed).toContainEqual({ nsid: NSID, group: group.grpid, state: 'inaccessible', previous: group.initialState.nvme1 });
      expect(ev.log.groups.find((g) => g.anagrpid === group.grpid)?.stateName).toBe('inaccessible');
    }
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(ns.anaState).toBe('inaccessible');
    const err = await ns.read(0, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NvmeStatusError);
    expect(err).toMatchObject({ sct: 3, sc: 2 });

    // Back to optimized: the next event arrives too (the log was read with RAE cleared).
    const from2 = mpEvents.length;
    await target.nvmetCtl('ana', port.portid, group.grpid, group.initialState.nvme1);
    await waitFor(
      () => mpEvents.slice(from2).some((e) => e.type === 'ana-change' && e.changed.some((c) => c.nsid === NSID && c.state === group.initialState.nvme1)),
      15_000,
      'an ANA change event (restored)',
    );
    expect(ns.anaState).toBe(group.initialState.nvme1);
    expect(mp.asyncEvents).toMatchObject({ failed: 0 });
    expect(mp.asyncEvents!.outstanding).toBe(mp.asyncEvents!.limit);
  });

  itFull('I/O that meets ANA Transition waits and completes once the group settles', async () => {
    restore.push(() => target.nvmetCtl('ana', port.portid, group.grpid, group.initialState.nvme1));
    const data = Buffer.alloc(4096, 0x5a);
    await ns.write(8, data);
    const from = mpEvents.length;
    await target.nvmetCtl('ana', port.portid, group.grpid, 'change');
    await waitFor(() => ns.anaState === 'change', 15_000, "ANA state 'change'");
    const started = Date.now();
    const read = ns.read(8, 8);
    await new Promise((r) => setTimeout(r, 1000));
    await target.nvmetCtl('ana', port.portid, group.grpid, group.initialState.nvme1);
    const back = await read;
    expect(back.equals(data)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(Date.now() - started).toBeLessThan(mp.anaTransitionTimeout + 5000);
    await waitFor(() => ns.anaState === group.initialState.nvme1, 15_000, 'ANA state restored');
    expect(mpEvents.slice(from).filter((e) => e.type === 'ana-change').length).toBeGreaterThanOrEqual(2);
  });

  itFull('adding a namespace in the guest produces a namespace-changed event listing it; removing it too', async () => {
    const NEW = 9;
    expect(await open.activeNamespaceIds()).not.toContain(NEW);
    restore.push(() => target.nvmetCtl('ns-del', target.openNqn, NEW));
    const from = openEvents.length;
    await target.nvmetCtl('ns-add', target.openNqn, NEW, '8M');
    await waitFor(() => openEvents.slice(from).some((e) => e.type === 'namespace-changed'), 15_000, 'a namespace-changed event');
    const added = openEvents.slice(from).find((e) => e.type === 'namespace-changed')!;
    expect(added).toMatchObject({ type: 'namespace-changed', overflow: false, added: [NEW], removed: [] });
    if (added.type === 'namespace-changed') expect(added.nsids).toContain(NEW);
    const ns9 = await open.namespace(NEW);
    expect(ns9.sizeBytes).toBe(8n * 1024n * 1024n);

    const from2 = openEvents.length;
    await target.nvmetCtl('ns-del', target.openNqn, NEW);
    await waitFor(() => openEvents.slice(from2).some((e) => e.type === 'namespace-changed'), 15_000, 'a namespace-changed event after removal');
    const removed = openEvents.slice(from2).find((e) => e.type === 'namespace-changed')!;
    expect(removed).toMatchObject({ added: [], removed: [NEW] });
    expect(await open.activeNamespaceIds()).toEqual([1, 2]);
  });
});
