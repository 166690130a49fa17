/**
 * Discovery against the embedded target: GENCTR-consistent log reads (retry, paging), referral walks with loop
 * protection, depth bound, duplicates and unreachable referrals, and the persistent discovery watcher.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../src/errors.js';
import { connect } from '../src/host/controller.js';
import { discover, readDiscoveryLog, watchDiscovery, discoveryEntryKey, type DiscoveryWatchEvent, type DiscoveryWatcher } from '../src/host/discovery.js';
import { DISCOVERY_NQN } from '../src/protocol/nqn.js';
import { NvmeTarget, type TargetController, type TargetPort } from '../src/target/index.js';
import { HOSTNQN } from './helpers/target-env.js';
import { waitFor, closedPort } from './helpers/wait.js';

const S1 = 'nqn.2024-01.io.nvmeof.test:s1';
const S2 = 'nqn.2024-01.io.nvmeof.test:s2';
const S3 = 'nqn.2024-01.io.nvmeof.test:s3';

const targets: NvmeTarget[] = [];
const watchers: DiscoveryWatcher[] = [];
afterEach(async () => {
  for (const w of watchers.splice(0)) await w.close();
  for (const t of targets.splice(0)) await t.close();
});

function target(): NvmeTarget {
  const t = new NvmeTarget();
  targets.push(t);
  return t;
}

/** Two targets: A (ports a1, a2; S1) refers a1 -> a2, a1 -> unreachable, a2 -> a1 (loop), a2 -> B; B (port b1; S2). */
async function topology() {
  const a = target();
  const a1 = await a.listen({ host: '127.0.0.1' });
  const a2 = await a.listen({ host: '127.0.0.1' });
  a.addSubsystem({ nqn: S1 }).addNamespace({ blocks: 64 });
  const b = target();
  const b1 = await b.listen({ host: '127.0.0.1' });
  b.addSubsystem({ nqn: S2 }).addNamespace({ blocks: 64 });
  const dead = await closedPort();
  a.addReferral({ traddr: '127.0.0.1', trsvcid: a2.port, port: a1, portid: a2.portid });
  a.addReferral({ traddr: '127.0.0.1', trsvcid: dead, port: a1, portid: 99 });
  a.addReferral({ traddr: '127.0.0.1', trsvcid: a1.port, port: a2, portid: a1.portid });
  a.addReferral({ traddr: '127.0.0.1', trsvcid: b1.port, port: a2, portid: 7 });
  return { a, a1, a2, b, b1, dead };
}

const summary = (e: { subtype: string; subnqn: string; trsvcid: string }) => `${e.subtype}:${e.subnqn.replace(/^nqn.*:/, '')}@${e.trsvcid}`;

describe('discover()', () => {
  it('reads one discovery controller: typed entries, referrals, genctr, with a one-shot connection', async () => {
    const { a, a1, a2, dead } = await topology();
    const made: TargetController[] = [];
    a.on('controller', (e) => made.push(e.controller));
    const katos: number[] = [];
    a.on('command', (c) => {
      if (c.opcode === 0x7f && c.fctype === 0x01) katos.push(c.sqe.readUInt32LE(48));
    });
    const res = await discover({ host: '127.0.0.1', port: a1.port, hostnqn: HOSTNQN });
    expect(res.entries.map(summary)).toEqual([
      `current-discovery:${DISCOVERY_NQN.replace(/^nqn.*:/, '')}@${a1.port}`,
      `nvm:s1@${a1.port}`,
      `nvm:s1@${a2.port}`,
    ]);
    expect(res.referrals.map((r) => r.trsvcid)).toEqual([String(a2.port), String(dead)]);
    expect(res.genctr).toBe(a.genctr);
    expect(res.visited).toEqual([{ traddr: '127.0.0.1', trsvcid: String(a1.port), subnqn: DISCOVERY_NQN, depth: 0, genctr: a.genctr, numrec: 5 }]);
    expect(res.errors).toEqual([]);
    const nvm = res.entries[1]!;
    expect(nvm).toMatchObject({
      transport: 'tcp', trtype: 3, addressFamily: 'ipv4', adrfam: 1, subtype: 'nvm', subtypeValue: 2, portid: a1.portid,
      cntlid: 0xffff, asqsz: 32, traddr: '127.0.0.1', subnqn: S1, tcpSecurity: 'none',
      treq: { secureChannel: 'not-specified', sqFlowControlDisable: false, value: 0 },
      eflags: { duplicateReturnedInfo: false, explicitPersistentConnection: false, value: 0 },
      source: { traddr: '127.0.0.1', trsvcid: String(a1.port), subnqn: DISCOVERY_NQN, depth: 0 },
    });
    expect(res.entries[0]!.eflags).toMatchObject({ duplicateReturnedInfo: true, explicitPersistentConnection: true, value: 3 });
    // One discovery controller, no keep-alive, no I/O queues, and it is gone afterwards.
    expect(made).toHaveLength(1);
    expect(made[0]!).toMatchObject({ discovery: true, ioQueuesGranted: undefined });
    expect(katos).toEqual([0]);
    await waitFor(() => a.controllers().length === 0);
  });

  it('follows referrals breadth first with loop protection, reports duplicates once and unreachable referrals as errors', async () => {
    const { a1, a2, b1, dead } = await topology();
    const res = await discover({ host: '127.0.0.1', port: a1.port, hostnqn: HOSTNQN, followReferrals: true, connectTimeout: 2000 });
    expect(res.visited.map((v) => [v.trsvcid, v.depth])).toEqual([[String(a1.port), 0], [String(a2.port), 1], [String(b1.port), 2]]);
    expect(res.entries.map(summary).sort()).toEqual(
      [`current-discovery:discovery@${a1.port}`, `current-discovery:discovery@${a2.port}`, `current-discovery:discovery@${b1.port}`,
        `nvm:s1@${a1.port}`, `nvm:s1@${a2.port}`, `nvm:s2@${b1.port}`].map((s) => s.replace('discovery@', `${DISCOVERY_NQN.replace(/^nqn.*:/, '')}@`)).sort(),
    );
    const keys = res.entries.map(discoveryEntryKey);
    expect(new Set(keys).size).toBe(keys.length);
    expect(res.referrals.map((r) => r.trsvcid).sort()).toEqual([a1.port, a2.port, b1.port, dead].map(String).sort());
    expect(res.errors).toHaveLength(1);
    expect(res.errors[0]).toMatchObject({ traddr: '127.0.0.1', trsvcid: String(dead), depth: 1 });
    expect(res.errors[0]!.error).toMatchObject({ code: ErrorCode.CONNECTION_FAILED });
    // The S2 entry came from two referrals away.
    expect(res.entries.find((e) => e.subnqn === S2)!.source).toMatchObject({ trsvcid: String(b1.port), depth: 2 });
  });

  it('bounds the walk with maxDepth', async () => {
    const { a1, a2 } = await topology();
    const res = await discover({ host: '127.0.0.1', port: a1.port, hostnqn: HOSTNQN, followReferrals: { maxDepth: 1 } });
    expect(res.visited.map((v) => v.trsvcid)).toEqual([String(a1.port), String(a2.port)]);
    expect(res.entries.some((e) => e.subnqn === S2)).toBe(false);
  });

  it('rejects when the first discovery controller cannot be reached, and checks its arguments first', async () => {
    const dead = await closedPort();
    await expect(discover({ host: '127.0.0.1', port: dead })).rejects.toMatchObject({ code: ErrorCode.CONNECTION_FAILED });
    await expect(discover({ host: '' })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(discover({ host: '127.0.0.1', port: 70000 })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(discover({ host: '127.0.0.1', followReferrals: { maxDepth: -1 } })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    const ac = new AbortController();
    ac.abort();
    await expect(discover({ host: '127.0.0.1', port: dead, signal: ac.signal })).rejects.toMatchObject({ code: ErrorCode.ABORTED });
  });
});

describe('readDiscoveryLog()', () => {
  it('re-reads when GENCTR moves between the header and the entries', async () => {
    const a = target();
    const p = await a.listen({ host: '127.0.0.1' });
    a.addSubsystem({ nqn: S1 });
    const reads: { length: number; rae: number }[] = [];
    let changed = false;
    a.on('command', (c) => {
      if (c.opcode !== 0x02 || c.subnqn !== DISCOVERY_NQN) return;
      const cdw10 = c.sqe.readUInt32LE(40);
      const length = ((cdw10 >>> 16) + 1) * 4;
      reads.push({ length, rae: (cdw10 >>> 15) & 1 });
      // The first full read: change the log under the host's feet (before the target answers it).
      if (!changed && length > 1024) {
        changed = true;
        a.addSubsystem({ nqn: S2 });
      }
    });
    const ctrl = await connect({ host: '127.0.0.1', port: p.port, subnqn: DISCOVERY_NQN, hostnqn: HOSTNQN, ioQueues: 0, kato: 0, events: false });
    try {
      const log = await readDiscoveryLog(ctrl);
      expect(log.entries.map((e) => e.subnqn)).toEqual([DISCOVERY_NQN, S1, S2]);
      expect(log.genctr).toBe(a.genctr);
      expect(log.numrec).toBe(3);
      // Attempt 1: header, header + 2 records, header; attempt 2: header, header + 3 records, header (RAE cleared last).
      expect(reads).toEqual([
        { length: 1024, rae: 1 }, { length: 3072, rae: 1 }, { length: 1024, rae: 0 },
        { length: 1024, rae: 1 }, { length: 4096, rae: 1 }, { length: 1024, rae: 0 },
      ]);
      await expect(readDiscoveryLog(ctrl, { maxRetries: -1 })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    } finally {
      await ctrl.close();
    }
  });

  it('gives up after maxRetries when the log keeps changing', async () => {
    const a = target();
    const p = await a.listen({ host: '127.0.0.1' });
    a.addSubsystem({ nqn: S1 });
    let n = 0;
    a.on('command', (c) => {
      if (c.opcode === 0x02 && c.subnqn === DISCOVERY_NQN && ((c.sqe.readUInt32LE(40) >>> 16) + 1) * 4 > 1024) {
        a.addSubsystem({ nqn: `nqn.2024-01.io.nvmeof.test:churn${n++}` });
      }
    });
    const ctrl = await connect({ host: '127.0.0.1', port: p.port, subnqn: DISCOVERY_NQN, hostnqn: HOSTNQN, ioQueues: 0, kato: 0, events: false });
    try {
      await expect(readDiscoveryLog(ctrl, { maxRetries: 2 })).rejects.toMatchObject({ code: ErrorCode.CONTROLLER });
      expect(n).toBe(3);
    } finally {
      await ctrl.close();
    }
  });

  it('splits a log larger than one transfer into reads at increasing offsets', async () => {
    const a = target();
    const p = await a.listen({ host: '127.0.0.1' });
    for (let i = 0; i < 9; i++) a.addSubsystem({ nqn: `nqn.2024-01.io.nvmeof.test:many${i}` });
    const offsets: { offset: number; length: number }[] = [];
    a.on('command', (c) => {
      if (c.opcode !== 0x02 || c.subnqn !== DISCOVERY_NQN) return;
      offsets.push({ offset: c.sqe.readUInt32LE(48), length: ((c.sqe.readUInt32LE(40) >>> 16) + 1) * 4 });
    });
    const ctrl = await connect({ host: '127.0.0.1', port: p.port, subnqn: DISCOVERY_NQN, hostnqn: HOSTNQN, ioQueues: 0, kato: 0, events: false, maxTransferSize: 4096 });
    try {
      const log = await readDiscoveryLog(ctrl);
      expect(log.numrec).toBe(10);
      expect(log.entries.map((e) => e.subnqn)).toEqual([DISCOVERY_NQN, ...Array.from({ length: 9 }, (_, i) => `nqn.2024-01.io.nvmeof.test:many${i}`)]);
      // 11 KiB in 4 KiB pieces between the two header reads.
      expect(offsets).toEqual([
        { offset: 0, length: 1024 },
        { offset: 0, length: 4096 }, { offset: 4096, length: 4096 }, { offset: 8192, length: 3072 },
        { offset: 0, length: 1024 },
      ]);
    } finally {
      await ctrl.close();
    }
  });
});

describe('watchDiscovery()', () => {
  async function watch(port: TargetPort, extra: { reconnectDelay?: number } = {}): Promise<DiscoveryWatcher> {
    const w = await watchDiscovery({ host: '127.0.0.1', port: port.port, hostnqn: HOSTNQN, kato: 2000, ...extra });
    watchers.push(w);
    return w;
  }

  it('reports entries added and removed as ports and subsystems are linked and unlinked, re-arming every time', async () => {
    const a = target();
    const p1 = await a.listen({ host: '127.0.0.1' });
    const s1 = a.addSubsystem({ nqn: S1, ports: [p1.portid] });
    const made: TargetController[] = [];
    a.on('controller', (e) => made.push(e.controller));
    const w = await watch(p1);
    expect(made[0]).toMatchObject({ discovery: true, kato: 2000 });
    expect(w.log.entries.map((e) => e.subnqn)).toEqual([DISCOVERY_NQN, S1]);
    expect(w.controller?.state).toBe('live');
    const it = w.events();

    a.addSubsystem({ nqn: S3, ports: [p1.portid] });
    const c1 = (await it.next()).value as Extract<DiscoveryWatchEvent, { type: 'change' }>;
    expect(c1.type).toBe('change');
    expect(c1.added.map((e) => e.subnqn)).toEqual([S3]);
    expect(c1.removed).toEqual([]);
    expect(c1.log.entries).toHaveLength(3);
    expect(c1.log.genctr).toBe(a.genctr);

    a.unlinkSubsystem(p1, s1);
    const c2 = (await it.next()).value as Extract<DiscoveryWatchEvent, { type: 'change' }>;
    expect(c2.removed.map((e) => e.subnqn)).toEqual([S1]);
    expect(c2.added).toEqual([]);

    a.linkSubsystem(p1, s1);
    const c3 = (await it.next()).value as Extract<DiscoveryWatchEvent, { type: 'change' }>;
    expect(c3.added.map((e) => e.subnqn)).toEqual([S1]);

    const ref = a.addReferral({ traddr: '127.0.0.1', trsvcid: 4420 });
    const c4 = (await it.next()).value as Extract<DiscoveryWatchEvent, { type: 'change' }>;
    expect(c4.added.map((e) => e.subtype)).toEqual(['referral']);
    ref.remove();
    expect(((await it.next()).value as Extract<DiscoveryWatchEvent, { type: 'change' }>).removed.map((e) => e.subtype)).toEqual(['referral']);
    expect(w.controller!.asyncEvents).toMatchObject({ received: 5, failed: 0 });

    await w.close();
    expect(await it.next()).toMatchObject({ done: true });
    expect(w.isClosed).toBe(true);
    await waitFor(() => a.controllers().length === 0);
  });

  it('refresh() reads on demand; on() subscriptions see changes too', async () => {
    const a = target();
    const p1 = await a.listen({ host: '127.0.0.1' });
    const w = await watch(p1);
    const seen: string[] = [];
    w.on('change', (e) => seen.push(e.type === 'change' ? e.added.map((x) => x.subnqn).join(',') : '?'));
    expect(await w.refresh()).toBeUndefined();
    a.addSubsystem({ nqn: S2 });
    await waitFor(() => seen.length === 1);
    expect(seen).toEqual([S2]);
  });

  it('reconnects after losing the connection and reports what changed meanwhile', async () => {
    const a = target();
    const p1 = await a.listen({ host: '127.0.0.1' });
    const w = await watch(p1, { reconnectDelay: 50 });
    const events: DiscoveryWatchEvent[] = [];
    w.on('*', (e) => events.push(e));
    // The target tears the discovery controller down, then the log changes while the host is away.
    a.controllers()[0]!.close('test');
    await waitFor(() => events.some((e) => e.type === 'disconnected'));
    a.addSubsystem({ nqn: S3 });
    await waitFor(() => events.some((e) => e.type === 'change'));
    expect(events.map((e) => e.type)).toEqual(['disconnected', 'reconnected', 'change']);
    expect((events[2] as Extract<DiscoveryWatchEvent, { type: 'change' }>).added.map((e) => e.subnqn)).toEqual([S3]);
    expect(w.controller?.state).toBe('live');
  });

  it('closes cleanly while reconnecting, and when its signal aborts', async () => {
    const a = target();
    const p1 = await a.listen({ host: '127.0.0.1' });
    const w = await watch(p1, { reconnectDelay: 60_000 });
    a.controllers()[0]!.close('test');
    await waitFor(() => w.controller === undefined);
    await w.close();
    await w.close();

    const ac = new AbortController();
    const w2 = await watchDiscovery({ host: '127.0.0.1', port: p1.port, hostnqn: HOSTNQN, signal: ac.signal });
    watchers.push(w2);
    const it = w2.events();
    ac.abort();
    expect(await it.next()).toMatchObject({ done: true });
    expect(w2.isClosed).toBe(true);
    const dead = await closedPort();
    await expect(watchDiscovery({ host: '127.0.0.1', port: dead })).rejects.toMatchObject({ code: ErrorCode.CONNECTION_FAILED });
    await expect(watchDiscovery({ host: '127.0.0.1', port: p1.port, signal: ac.signal })).rejects.toMatchObject({ code: ErrorCode.ABORTED });
  });
});
