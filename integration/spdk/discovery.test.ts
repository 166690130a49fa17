/**
 * Discovery through SPDK's discovery listener: the log lists each subsystem listener the host may access (SPDK
 * filters by the allowed hosts list) and the current discovery subsystem; connecting to what discovery found works;
 * referrals added through RPC are followed; a persistent discovery connection reports listeners added and removed.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, expect, it } from 'vitest';
import { connect, discover, watchDiscovery, type DiscoveryChangeReport, type DiscoveryWatcher } from '../../src/index.js';
import { SPDK_DISCOVERY_NQN, listenAddress, type SpdkTopology } from '../../src/spdk/index.js';
import { describeSpdk, useSpdkTopology } from './env.js';

const HOST_A = 'nqn.2014-08.org.nvmexpress:uuid:0d15c0a0-0000-4000-8000-00000000000a';
const HOST_B = 'nqn.2014-08.org.nvmexpress:uuid:0d15c0b0-0000-4000-8000-00000000000b';
const idOf = (nqn: string): string => nqn.slice(nqn.indexOf('uuid:') + 5);

describeSpdk('SPDK nvmf_tgt: discovery', (env) => {
  const tag = randomBytes(3).toString('hex');
  let openNqn = '';
  let closedNqn = '';
  let p1 = 0;
  let p2 = 0;
  let disc = 0;
  let disc2 = 0;
  const handle = useSpdkTopology(env, async (): Promise<SpdkTopology> => {
    openNqn = env.uniqueNqn('disc-open');
    closedNqn = env.uniqueNqn('disc-closed');
    [p1, p2, disc, disc2] = [await env.freePort(), await env.freePort(), await env.freePort(), await env.freePort()];
    return {
      bdevs: [
        { type: 'malloc', name: `disc_m0_${tag}`, sizeMiB: 8, blockSize: 512 },
        { type: 'malloc', name: `disc_m1_${tag}`, sizeMiB: 8, blockSize: 4096 },
      ],
      subsystems: [
        { nqn: openNqn, namespaces: [{ bdev: `disc_m0_${tag}` }], listeners: [{ traddr: env.host, trsvcid: p1 }] },
        { nqn: closedNqn, hosts: [HOST_A], namespaces: [{ bdev: `disc_m1_${tag}` }], listeners: [{ traddr: env.host, trsvcid: p2 }] },
      ],
      discoveryListeners: [{ traddr: env.host, trsvcid: disc }],
    };
  });
  let watcher: DiscoveryWatcher | undefined;
  afterAll(async () => {
    await watcher?.close();
    await handle.client?.call('nvmf_discovery_remove_referral', { address: listenAddress({ traddr: env.host, trsvcid: disc2 }) }).catch(() => undefined);
    await handle.client
      ?.nvmfSubsystemRemoveListener({ nqn: SPDK_DISCOVERY_NQN, listen_address: listenAddress({ traddr: env.host, trsvcid: disc2 }) })
      .catch(() => undefined);
  });

  it('lists the subsystems a host may access, and the current discovery subsystem', async () => {
    const forA = await discover({ host: env.host, port: disc, hostnqn: HOST_A, hostid: idOf(HOST_A) });
    const nvm = (r: typeof forA): string[] =>
      r.entries.filter((e) => e.subtype === 'nvm' && (e.subnqn === openNqn || e.subnqn === closedNqn)).map((e) => `${e.subnqn}@${e.traddr}:${e.trsvcid}`);
    expect(nvm(forA).sort()).toEqual([`${openNqn}@127.0.0.1:${p1}`, `${closedNqn}@127.0.0.1:${p2}`].sort());
    const open = forA.entries.find((e) => e.subnqn === openNqn);
    expect(open).toMatchObject({ transport: 'tcp', addressFamily: 'ipv4', cntlid: 0xffff, tcpSecurity: 'none' });

    const current = forA.entries.find((e) => e.subtype === 'current-discovery' && e.trsvcid === String(disc));
    expect(current?.subnqn).toBe(SPDK_DISCOVERY_NQN);
    expect(current?.eflags.duplicateReturnedInfo).toBe(true);
    expect(current?.eflags.explicitPersistentConnection).toBe(true);

    // SPDK leaves subsystems a host may not connect to out of that host's log.
    const forB = await discover({ host: env.host, port: disc, hostnqn: HOST_B, hostid: idOf(HOST_B) });
    expect(nvm(forB)).toEqual([`${openNqn}@127.0.0.1:${p1}`]);
  });

  it('reads the discovery log with header and data digests', async () => {
    const r = await discover({ host: env.host, port: disc, hostnqn: HOST_A, headerDigest: true, dataDigest: true });
    expect(r.entries.some((e) => e.subnqn === closedNqn)).toBe(true);
  });

  it('connects to what discovery found', async () => {
    const r = await discover({ host: env.host, port: disc, hostnqn: HOST_A, hostid: idOf(HOST_A) });
    for (const nqn of [openNqn, closedNqn]) {
      const e = r.entries.find((x) => x.subnqn === nqn);
      expect(e, nqn).toBeDefined();
      const c = await connect({ host: e!.traddr, port: Number(e!.trsvcid), subnqn: e!.subnqn, hostnqn: HOST_A, hostid: idOf(HOST_A), ioQueues: 1 });
      try {
        const ns = await c.namespace(1);
        const data = randomBytes(ns.blockSize * 8);
        await ns.write(0n, data);
        expect(Buffer.compare(await ns.read(0n, 8), data)).toBe(0);
      } finally {
        await c.close();
      }
    }
  });

  it('follows a referral added through RPC', async () => {
    const rpc = handle.client;
    const addr2 = listenAddress({ traddr: env.host, trsvcid: disc2 });
    await rpc.nvmfSubsystemAddListener({ nqn: SPDK_DISCOVERY_NQN, listen_address: addr2 });
    await rpc.call('nvmf_discovery_add_referral', { address: addr2 });
    const r = await discover({ host: env.host, port: disc, hostnqn: HOST_A, followReferrals: true });
    expect(r.referrals.map((e) => `${e.traddr}:${e.trsvcid}`)).toContain(`127.0.0.1:${disc2}`);
    expect(r.visited.map((v) => Number(v.trsvcid))).toEqual([disc, disc2]);
    expect(r.errors).toEqual([]);
    // Both discovery listeners serve the same log: each subsystem entry is reported once.
    expect(r.entries.filter((e) => e.subnqn === openNqn)).toHaveLength(1);
    await rpc.call('nvmf_discovery_remove_referral', { address: addr2 });
    await rpc.nvmfSubsystemRemoveListener({ nqn: SPDK_DISCOVERY_NQN, listen_address: addr2 });
  });

  it('reports listeners added and removed to a persistent discovery connection', async () => {
    const rpc = handle.client;
    watcher = await watchDiscovery({ host: env.host, port: disc, hostnqn: HOST_A, hostid: idOf(HOST_A), reconnectDelay: 0 });
    expect(watcher.log.entries.some((e) => e.subnqn === openNqn)).toBe(true);
    const p3 = await env.freePort();
    const nextChange = (): Promise<DiscoveryChangeReport> =>
      new Promise((resolve) => {
        const off = watcher!.on('change', (ev) => {
          if (ev.type === 'change') {
            off();
            resolve(ev);
          }
        });
      });

    let change = nextChange();
    await rpc.nvmfSubsystemAddListener({ nqn: openNqn, listen_address: listenAddress({ traddr: env.host, trsvcid: p3 }) });
    let ev = await change;
    expect(ev.added.map((e) => `${e.subnqn}@${e.trsvcid}`)).toEqual([`${openNqn}@${p3}`]);
    expect(ev.removed).toEqual([]);

    change = nextChange();
    await rpc.nvmfSubsystemRemoveListener({ nqn: openNqn, listen_address: listenAddress({ traddr: env.host, trsvcid: p3 }) });
    ev = await change;
    expect(ev.removed.map((e) => `${e.subnqn}@${e.trsvcid}`)).toEqual([`${openNqn}@${p3}`]);
    expect(ev.added).toEqual([]);
  });
});
