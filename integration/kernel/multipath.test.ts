/**
 * Multipath against the Linux kernel target: the multipath subsystem on nvmet ports 1 and 2, namespace 1 in ANA
 * group 2 (optimized through port 1, non-optimized through port 2). With verified writes running, the active path
 * is made ANA inaccessible, then its port is taken down entirely; no write is lost and I/O keeps flowing on the
 * other path. Bringing the port back (and its ANA group back to optimized) brings the path back.
 */
import { Buffer } from 'node:buffer';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, openMultipath, type MultipathNamespace, type Path, type PathStateEvent } from '../../src/index.js';
import { describeKernel } from './env.js';
import { BLOCK, PER_WRITE, record as makeRecord } from './records.js';
import { waitFor } from '../../test/helpers/wait.js';

const NSID = 1;
/** Records of this test carry the tag 'mpat'. */
const record = (rec: number, gen: number) => makeRecord(rec, gen, 0x6d706174);

describeKernel('kernel nvmet: multipath', (target) => {
  let m: MultipathNamespace;
  let a: Path;
  let b: Path;
  const events: PathStateEvent[] = [];
  const restore: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    m = await openMultipath({
      subnqn: target.multipathNqn,
      nsid: NSID,
      paths: [
        { host: target.ports.nvme1.host, port: target.ports.nvme1.port },
        { host: target.ports.nvme2.host, port: target.ports.nvme2.port },
      ],
      policy: 'failover',
      ioQueues: 2,
      queueSize: 32,
      reconnectDelay: 1000,
      ctrlLossTimeout: -1,
      // Should both paths be lost (the guest gone), I/O fails after 30 s instead of waiting for a path for ever.
      fastIoFailTimeout: 30_000,
      commandTimeout: 60_000,
    });
    [a, b] = m.paths as [Path, Path];
    m.on('path-state', (e) => events.push(e));
  });

  afterAll(async () => {
    for (const r of restore.splice(0).reverse()) await r().catch(() => {});
    await m?.close();
  });

  it('opens both paths with the ANA states the target was set up with', () => {
    const group = target.anaGroups.find((g) => g.nsids.includes(NSID))!;
    expect(a.state).toBe('live');
    expect(b.state).toBe('live');
    expect(a.anaState(NSID)).toBe(group.initialState.nvme1);
    expect(b.anaState(NSID)).toBe(group.initialState.nvme2);
    expect(a.anaGroup(NSID)).toBe(group.grpid);
    expect(a.cntlid).not.toBe(b.cntlid);
    expect(m.blockSize).toBe(BLOCK);
    const h = m.health();
    expect(h.usablePaths).toBe(2);
    expect(h.paths.map((p) => p.state)).toEqual(['live', 'live']);
  });

  it('loses no write when the active path becomes inaccessible and its port goes away, and takes the path back', async () => {
    const group = target.anaGroups.find((g) => g.nsids.includes(NSID))!;
    const records = Number(m.blocks / BigInt(PER_WRITE));
    const written = new Map<number, Buffer>();
    let stop = false;
    let writeError: unknown;
    let gen = 1;
    // Two writers, each on its own records, so no two writes to one LBA are ever in flight together.
    const writers = [0, 1].map(async (w) => {
      let rec = w;
      while (!stop) {
        const data = record(rec, gen);
        try {
          await m.write(rec * PER_WRITE, data);
        } catch (err) {
          writeError = err;
          return;
        }
        written.set(rec, data);
        rec += 2;
        if (rec >= records) {
          rec = w;
          gen++;
        }
      }
    });
    const state = () => JSON.stringify(m.health().paths.map((p) => ({ id: p.id, state: p.state, ana: p.anaState, done: p.completed, last: p.lastEvent })));
    const flowing = async (p: Path, n: number, what: string) => {
      const from = p.health().completed;
      await waitFor(() => p.health().completed >= from + n || writeError !== undefined, 60_000, what, state);
      expect(writeError).toBeUndefined();
    };

    try {
      // Failover uses the optimized path.
      await flowing(a, 40, 'writes on the optimized path (port 1)');
      expect(b.health().completed).toBe(0);

      // 1. The active path becomes ANA inaccessible: I/O moves to port 2.
      restore.push(() => target.nvmetCtl('ana', target.ports.nvme1.portid, group.grpid, group.initialState.nvme1));
      await target.nvmetCtl('ana', target.ports.nvme1.portid, group.grpid, 'inaccessible');
      await waitFor(() => a.anaState(NSID) === 'inaccessible', 30_000, 'path 1 ANA inaccessible', state);
      await flowing(b, 40, 'writes on port 2 after path 1 became inaccessible');

      // 2. Port 1 goes away entirely (every subsystem unlinked, listener closed, controllers deleted).
      restore.push(() => target.nvmetCtl('port-up', target.ports.nvme1.portid));
      await target.nvmetCtl('port-down', target.ports.nvme1.portid);
      await waitFor(() => a.state !== 'live', 30_000, 'path 1 down', state);
      await flowing(b, 40, 'writes on port 2 while port 1 is down');
      // Reconnect attempts keep failing while the port is down.
      await waitFor(() => a.health().reconnectAttempts >= 2, 30_000, 'reconnect attempts on path 1', state);
      expect(a.state === 'reconnecting' || a.state === 'connecting').toBe(true);

      // 3. The port comes back: the path is live again (still inaccessible), I/O stays on port 2.
      await target.nvmetCtl('port-up', target.ports.nvme1.portid);
      await waitFor(() => a.state === 'live', 60_000, 'path 1 live again', state);
      expect(a.health().reconnects).toBe(1);
      expect(a.anaState(NSID)).toBe('inaccessible');
      await flowing(b, 20, 'writes on port 2 after path 1 returned');

      // 4. Its ANA group turns optimized again: failover goes back to it.
      await target.nvmetCtl('ana', target.ports.nvme1.portid, group.grpid, group.initialState.nvme1);
      await waitFor(() => a.anaState(NSID) === group.initialState.nvme1, 30_000, 'path 1 ANA restored', state);
      await flowing(a, 20, 'writes back on port 1');
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    expect(writeError).toBeUndefined();
    expect(written.size).toBeGreaterThan(100);

    // Every block written reads back with the data written, through the multipath namespace...
    for (const [rec, data] of written) {
      const back = await m.read(rec * PER_WRITE, PER_WRITE);
      if (!back.equals(data)) expect.fail(`record ${rec} (LBA ${rec * PER_WRITE}) does not read back as written`);
    }
    // ...and through an independent single-path controller on port 2.
    const ctrl = await connect({ host: target.ports.nvme2.host, port: target.ports.nvme2.port, subnqn: target.multipathNqn, ioQueues: 1 });
    try {
      const ns = await ctrl.namespace(NSID);
      for (const [rec, data] of written) {
        const back = await ns.read(rec * PER_WRITE, PER_WRITE);
        if (!back.equals(data)) expect.fail(`record ${rec} differs on an independent read through port 2`);
      }
    } finally {
      await ctrl.close();
    }

    const onA = events.filter((e) => e.path === a.id).map((e) => `${e.state}/${e.anaState ?? '-'}`);
    expect(onA).toContain('live/inaccessible');
    expect(onA.some((s) => s.startsWith('reconnecting/'))).toBe(true);
    expect(onA.at(-1)).toBe(`live/${group.initialState.nvme1}`);
    const h = m.health();
    expect(h.paths.every((p) => p.state === 'live' && p.usable)).toBe(true);
    expect(h.paths[1]!.errors.total).toBe(0);
  }, 600_000);
});
