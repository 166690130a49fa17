/**
 * Discovery against the Linux kernel target: the discovery port (8009) refers to nvmet ports 1 (4420) and 2 (4421);
 * following the referrals finds the subsystems of both ports. A persistent discovery controller on port 2 reports
 * the change when a subsystem is linked to or unlinked from that port in the guest.
 */
import { afterAll, expect, it } from 'vitest';
import { discover, readDiscoveryLog, watchDiscovery, connect, type DiscoveryChangeReport, type DiscoveryWatcher } from '../../src/index.js';
import { describeKernel, itFull } from './env.js';
import { waitFor } from '../../test/helpers/wait.js';

describeKernel('kernel nvmet: discovery', (target) => {
  const { discovery, nvme1, nvme2 } = target.ports;
  const restore: (() => Promise<unknown>)[] = [];

  afterAll(async () => {
    for (const r of restore.splice(0).reverse()) await r().catch(() => {});
  });

  it('reads the discovery port: its referrals to both nvmet ports, GENCTR-consistently', async () => {
    const res = await discover({ host: discovery.host, port: discovery.port, connectTimeout: 30_000 });
    expect(res.visited).toHaveLength(1);
    expect(res.errors).toEqual([]);
    const refs = res.referrals.map((r) => `${r.transport} ${r.addressFamily} ${r.traddr}:${r.trsvcid} portid=${r.portid} ${r.subnqn}`).sort();
    expect(refs).toEqual([
      `tcp ipv4 ${target.guestAddr}:${nvme1.guestPort} portid=${nvme1.portid} ${target.discoveryNqn}`,
      `tcp ipv4 ${target.guestAddr}:${nvme2.guestPort} portid=${nvme2.portid} ${target.discoveryNqn}`,
    ]);
    // The anchor subsystem admits no host, so the discovery port lists no NVM subsystem.
    expect(res.entries.filter((e) => e.subtype === 'nvm')).toEqual([]);
    expect(res.genctr).toBeGreaterThan(0n);
  });

  itFull('lists the subsystems of a port with NUMREC-sized reads', async () => {
    const ctrl = await connect({ host: nvme1.host, port: nvme1.port, subnqn: target.discoveryNqn, ioQueues: 0, kato: 0, events: false });
    try {
      const log = await readDiscoveryLog(ctrl);
      expect(log.numrec).toBe(log.entries.length);
      const nvm = log.entries.filter((e) => e.subtype === 'nvm').map((e) => `${e.subnqn}@${e.trsvcid}`).sort();
      expect(nvm).toEqual([`${target.multipathNqn}@${nvme1.guestPort}`, `${target.openNqn}@${nvme1.guestPort}`].sort());
      expect(log.entries.filter((e) => e.subtype === 'referral').map((e) => e.trsvcid)).toEqual([String(nvme2.guestPort)]);
      for (const e of log.entries) {
        expect(e).toMatchObject({ transport: 'tcp', addressFamily: 'ipv4' });
        if (e.subtype === 'nvm') expect(e).toMatchObject({ portid: nvme1.portid, cntlid: 0xffff, tcpSecurity: 'none' });
      }
    } finally {
      await ctrl.close();
    }
  });

  it('follows the referrals to the subsystems of every port, each entry once', async (ctx) => {
    target.skipUnlessReachable(ctx);
    const res = await discover({ host: discovery.host, port: discovery.port, followReferrals: true, connectTimeout: 30_000 });
    expect(res.errors).toEqual([]);
    expect(res.visited[0]).toMatchObject({ trsvcid: String(discovery.port), depth: 0 });
    expect(res.visited.slice(1).map((v) => `${v.traddr}:${v.trsvcid}/${v.depth}`).sort()).toEqual([
      `${target.guestAddr}:${nvme1.guestPort}/1`,
      `${target.guestAddr}:${nvme2.guestPort}/1`,
    ]);
    const nvm = res.entries.filter((e) => e.subtype === 'nvm').map((e) => `${e.subnqn}@${e.traddr}:${e.trsvcid}`).sort();
    expect(nvm).toEqual(
      [
        `${target.openNqn}@${target.guestAddr}:${nvme1.guestPort}`,
        `${target.multipathNqn}@${target.guestAddr}:${nvme1.guestPort}`,
        `${target.multipathNqn}@${target.guestAddr}:${nvme2.guestPort}`,
      ].sort(),
    );
    // Port 1 refers to port 2 as the discovery port does: reported once.
    expect(res.referrals.map((r) => r.trsvcid).sort()).toEqual([String(nvme1.guestPort), String(nvme2.guestPort)]);
    // What discovery found is connectable.
    const e = res.entries.find((x) => x.subnqn === target.multipathNqn && x.trsvcid === String(nvme2.guestPort))!;
    const ctrl = await connect({ host: e.traddr, port: Number(e.trsvcid), subnqn: e.subnqn, ioQueues: 1 });
    try {
      expect(await ctrl.activeNamespaceIds()).toEqual([1, 2]);
    } finally {
      await ctrl.close();
    }
  });

  itFull('a persistent discovery controller reports a subsystem linked to and unlinked from its port', async () => {
    let w: DiscoveryWatcher | undefined;
    try {
      w = await watchDiscovery({ host: nvme2.host, port: nvme2.port, kato: 10_000, connectTimeout: 30_000 });
      expect(w.controller?.identity.decoded.oaes.discoveryLogChange).toBe(true);
      const changes: DiscoveryChangeReport[] = [];
      w.on('change', (e) => {
        if (e.type === 'change') changes.push(e);
      });
      const before = w.log.entries.filter((e) => e.subtype === 'nvm').map((e) => e.subnqn);
      expect(before).toEqual([target.multipathNqn]);

      restore.push(() => target.nvmetCtl('unlink', nvme2.portid, target.openNqn));
      await target.nvmetCtl('link', nvme2.portid, target.openNqn);
      await waitFor(() => changes.length >= 1, 20_000, 'a discovery change after link');
      expect(changes[0]!.added.map((e) => `${e.subnqn}@${e.trsvcid}`)).toEqual([`${target.openNqn}@${nvme2.guestPort}`]);
      expect(changes[0]!.removed).toEqual([]);
      expect(changes[0]!.log.genctr).toBeGreaterThan(w.log.genctr - 1n);

      await target.nvmetCtl('unlink', nvme2.portid, target.openNqn);
      await waitFor(() => changes.length >= 2, 20_000, 'a discovery change after unlink');
      expect(changes[1]!.removed.map((e) => e.subnqn)).toEqual([target.openNqn]);
      expect(changes[1]!.added).toEqual([]);
      expect(w.log.entries.filter((e) => e.subtype === 'nvm').map((e) => e.subnqn)).toEqual([target.multipathNqn]);
      expect(w.controller?.asyncEvents).toMatchObject({ failed: 0 });
      expect(w.controller?.asyncEvents?.received).toBeGreaterThanOrEqual(2);
    } finally {
      await w?.close();
    }
    expect(w?.isClosed).toBe(true);
  });
});
