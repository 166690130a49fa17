/**
 * ANA state changed through SPDK's RPC (nvmf_subsystem_listener_set_ana_state) reaching the host: an 'ana-change'
 * event from the ANA Change notice, the controller's and namespaces' ANA state, I/O refused with the ANA
 * Inaccessible path status on one path while the other path serves it, and recovery.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, NvmeStatusError, type AnaChangeEvent, type Controller } from '../../src/index.js';
import { listenAddress, type SpdkAnaState, type SpdkTopology } from '../../src/spdk/index.js';
import { describeSpdk, useSpdkTopology } from './env.js';

describeSpdk('SPDK nvmf_tgt: ANA state through RPC', (env) => {
  const tag = randomBytes(3).toString('hex');
  let nqn = '';
  let p1 = 0;
  let p2 = 0;
  const handle = useSpdkTopology(env, async (): Promise<SpdkTopology> => {
    nqn = env.uniqueNqn('ana');
    [p1, p2] = [await env.freePort(), await env.freePort()];
    return {
      bdevs: [
        { type: 'malloc', name: `ana_m1_${tag}`, sizeMiB: 8, blockSize: 512 },
        { type: 'malloc', name: `ana_m2_${tag}`, sizeMiB: 8, blockSize: 4096 },
      ],
      subsystems: [
        {
          nqn,
          anaReporting: true,
          namespaces: [
            { bdev: `ana_m1_${tag}`, nsid: 1, anaGroup: 1 },
            { bdev: `ana_m2_${tag}`, nsid: 2, anaGroup: 2 },
          ],
          listeners: [
            { traddr: env.host, trsvcid: p1, anaState: 'optimized' },
            { traddr: env.host, trsvcid: p2, anaState: 'non_optimized' },
          ],
        },
      ],
    };
  });

  let c1: Controller;
  let c2: Controller;
  beforeAll(async () => {
    c1 = await connect({ host: env.host, port: p1, subnqn: nqn, ioQueues: 1 });
    c2 = await connect({ host: env.host, port: p2, subnqn: nqn, ioQueues: 1 });
  });
  afterAll(async () => {
    await c1?.close();
    await c2?.close();
  });

  const setState = (port: number, state: SpdkAnaState, anagrpid?: number): Promise<void> =>
    handle.client.nvmfSubsystemListenerSetAnaState({
      nqn,
      listen_address: listenAddress({ traddr: env.host, trsvcid: port }),
      ana_state: state,
      ...(anagrpid !== undefined ? { anagrpid } : {}),
    });

  /** The next 'ana-change' event of `c` that satisfies `pred`. */
  const nextAnaChange = (c: Controller, pred: (ev: AnaChangeEvent) => boolean = () => true): Promise<AnaChangeEvent> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`no ANA change event on cntlid ${c.cntlid} within 10 s`));
      }, 10_000);
      const off = c.on('ana-change', (ev) => {
        if (!pred(ev)) return;
        clearTimeout(timer);
        off();
        resolve(ev);
      });
    });

  it('reads the initial ANA state of each path', async () => {
    expect(c1.identity.cmic & 0x08).toBe(0x08);
    expect(c1.anaState(1)).toBe('optimized');
    expect(c1.anaState(2)).toBe('optimized');
    expect(c2.anaState(1)).toBe('non-optimized');
    expect(c2.anaState(2)).toBe('non-optimized');
    expect(c1.anaGroup(2)).toBe(2);
    expect((await c1.namespace(2)).anaState).toBe('optimized');
    expect((await c2.namespace(1)).anaState).toBe('non-optimized');
  });

  it('delivers an RPC state change of one group as an event and as namespace state', async () => {
    const quiet: AnaChangeEvent[] = [];
    const offQuiet = c2.on('ana-change', (ev) => quiet.push(ev));
    const event = nextAnaChange(c1);
    await setState(p1, 'inaccessible', 2);
    const ev = await event;
    expect(ev.reason).toBe('aen');
    expect(ev.cntlid).toBe(c1.cntlid);
    expect(ev.changed).toEqual([{ nsid: 2, group: 2, state: 'inaccessible', previous: 'optimized' }]);
    expect(ev.groups).toEqual([{ group: 2, state: 'inaccessible', previous: 'optimized' }]);
    expect(c1.anaState(2)).toBe('inaccessible');
    expect((await c1.namespace(2)).anaState).toBe('inaccessible');
    expect(c1.anaState(1)).toBe('optimized');

    const [l1] = (await handle.client.nvmfSubsystemGetListeners({ nqn })).filter((l) => l.address.trsvcid === String(p1));
    expect(l1?.ana_states?.find((s) => s.ana_group === 2)?.ana_state).toBe('inaccessible');

    // The other path was not touched.
    await new Promise((r) => setTimeout(r, 300));
    offQuiet();
    expect(quiet).toEqual([]);
    expect(c2.anaState(2)).toBe('non-optimized');
  });

  it('refuses I/O on the inaccessible path with the ANA path status while the other path serves it', async () => {
    const data = randomBytes(4096 * 4);
    await (await c2.namespace(2)).write(0n, data);
    const err = (await (await c1.namespace(2)).read(0n, 4).catch((e: unknown) => e)) as NvmeStatusError;
    expect(err).toBeInstanceOf(NvmeStatusError);
    expect(err.sct).toBe(3);
    expect(err.sc).toBe(0x02);
    expect(Buffer.compare(await (await c2.namespace(2)).read(0n, 4), data)).toBe(0);
    // Namespace 1 on the same path is unaffected.
    const d1 = randomBytes(512 * 8);
    await (await c1.namespace(1)).write(0n, d1);
    expect(Buffer.compare(await (await c1.namespace(1)).read(0n, 8), d1)).toBe(0);
  });

  it('changes every group of a listener at once, and recovers', async () => {
    let event = nextAnaChange(c2, (ev) => ev.changed.length === 2);
    await setState(p2, 'optimized');
    let ev = await event;
    expect(ev.changed.map((c) => [c.nsid, c.state, c.previous]).sort()).toEqual([
      [1, 'optimized', 'non-optimized'],
      [2, 'optimized', 'non-optimized'],
    ]);

    event = nextAnaChange(c1, (e) => e.changed.some((c) => c.nsid === 2));
    await setState(p1, 'non_optimized', 2);
    ev = await event;
    expect(ev.changed).toEqual([{ nsid: 2, group: 2, state: 'non-optimized', previous: 'inaccessible' }]);
    const data = randomBytes(4096);
    await (await c1.namespace(2)).write(8n, data);
    expect(Buffer.compare(await (await c1.namespace(2)).read(8n, 1), data)).toBe(0);
  });
});
