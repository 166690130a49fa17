/**
 * Multipath against the embedded target: one ANA subsystem on two listeners (two paths), with ANA changes,
 * killed connections, a removed and re-created port, keep-alive loss and injected faults.
 */
import { Buffer } from 'node:buffer';
import { afterEach, describe, expect, it } from 'vitest';
import { NvmeTarget, type TargetNamespace, type TargetPort } from '../src/target/index.js';
import { openMultipath, type MultipathNamespace, type MultipathOptions, type PathStateEvent } from '../src/multipath/index.js';
import { NvmeStatusError } from '../src/errors.js';
import { waitFor } from './helpers/wait.js';

const SUBNQN = 'nqn.2024-01.io.nvmeof.test:mpath-target';
const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:2b0c6e4a-7d1f-4e8a-9c3b-5a6f7e8d9c0b';

interface Env {
  target: NvmeTarget;
  p1: TargetPort;
  p2: TargetPort;
  ns: TargetNamespace;
  m: MultipathNamespace;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(o: Partial<MultipathOptions> = {}): Promise<Env> {
  const target = new NvmeTarget();
  cleanups.push(() => target.close());
  const p1 = await target.listen({ host: '127.0.0.1', port: 0, ana: { 1: 'optimized' } });
  const p2 = await target.listen({ host: '127.0.0.1', port: 0, ana: { 1: 'non-optimized' } });
  const subsys = target.addSubsystem({ nqn: SUBNQN, ana: true });
  const ns = subsys.addNamespace({ blocks: 8192, anaGroup: 1 });
  const m = await openMultipath({
    subnqn: SUBNQN,
    nsid: ns.nsid,
    hostnqn: HOSTNQN,
    paths: [
      { host: '127.0.0.1', port: p1.port },
      { host: '127.0.0.1', port: p2.port },
    ],
    ioQueues: 2,
    reconnectDelay: 50,
    ...o,
  });
  cleanups.push(() => m.close());
  return { target, p1, p2, ns, m };
}

function block(lba: number, gen: number): Buffer {
  const b = Buffer.alloc(512);
  for (let i = 0; i < 512; i += 8) {
    b.writeUInt32LE(lba, i);
    b.writeUInt32LE(gen, i + 4);
  }
  return b;
}

/** LBAs the writers cycle through: RECORDS records of 2 blocks each. */
const RECORDS = 2000;

/**
 * Verified writers: `workers` loops writing 2-block records until stopped. Each worker owns every `workers`-th record
 * and wraps around with a new generation, so I/O keeps flowing for as long as a test waits for it, and no two writes
 * to one LBA are ever in flight together. The last write of each record that resolved is kept. Returns stop(), which
 * resolves with those records.
 */
function startWriters(m: MultipathNamespace, workers = 4) {
  const written = new Map<number, Buffer>();
  let stop = false;
  let writes = 0;
  let failure: unknown;
  const perWorker = Math.floor(RECORDS / workers);
  const loops = Array.from({ length: workers }, async (_, k) => {
    for (let i = 0; !stop; i++) {
      const lba = (k + (i % perWorker) * workers) * 2;
      const gen = 1 + Math.floor(i / perWorker);
      const data = Buffer.concat([block(lba, gen), block(lba + 1, gen)]);
      try {
        await m.write(lba, data);
        written.set(lba, data);
        writes++;
      } catch (err) {
        failure = err;
        return;
      }
    }
  });
  return {
    /** Writes that resolved so far. */
    count: () => writes,
    stop: async () => {
      stop = true;
      await Promise.all(loops);
      if (failure) throw failure;
      return written;
    },
  };
}

async function verifyAll(env: Env, written: Map<number, Buffer>): Promise<void> {
  for (const [lba, data] of written) {
    expect(env.ns.readBlocks(lba, 2).equals(data), `target LBA ${lba}`).toBe(true);
    expect((await env.m.read(lba, 2)).equals(data), `read back LBA ${lba}`).toBe(true);
  }
}

describe('multipath on the embedded target', () => {
  it('loses no write through ANA inaccessible, killed connections and a removed port, and takes the port back', async () => {
    const env = await setup({ policy: 'failover', kato: 2000 });
    const { target, m } = env;
    const events: PathStateEvent[] = [];
    m.on('path-state', (e) => events.push(e));
    const [a, b] = m.paths as [typeof m.paths[0], typeof m.paths[0]];
    expect(a.anaState(env.ns.nsid)).toBe('optimized');
    expect(b.anaState(env.ns.nsid)).toBe('non-optimized');

    const w = startWriters(m);
    await waitFor(() => w.count() > 50, 10_000, 'writes on the optimized path');
    expect(a.health().completed).toBeGreaterThan(0);
    expect(b.health().completed).toBe(0);

    // 1. The active path becomes inaccessible: I/O moves to the non-optimized path.
    target.setAnaState(env.p1, 1, 'inaccessible');
    await waitFor(() => a.anaState(env.ns.nsid) === 'inaccessible', 10_000, 'ANA inaccessible on path 1');
    const onB = b.health().completed;
    await waitFor(() => b.health().completed > onB + 50, 10_000, 'writes on path 2');

    // 2. Its connections are killed: it reconnects (still inaccessible) while I/O keeps flowing.
    const reconnects = a.health().reconnects;
    for (const c of target.connections()) if (c.port === env.p1) c.destroy('test kills path 1');
    await waitFor(() => a.health().reconnects > reconnects && a.state === 'live', 10_000, 'path 1 reconnect');
    expect(a.anaState(env.ns.nsid)).toBe('inaccessible');

    // 3. The port goes away entirely.
    const port1 = env.p1.port;
    await target.removePort(env.p1);
    await waitFor(() => a.state === 'reconnecting' || a.state === 'connecting', 10_000, 'path 1 down');
    const onB2 = b.health().completed;
    await waitFor(() => b.health().completed > onB2 + 50, 10_000, 'writes continue on path 2');

    // 4. The port comes back, optimized: the path is live again and failover returns to it.
    env.p1 = await target.listen({ host: '127.0.0.1', port: port1, ana: { 1: 'optimized' } });
    await waitFor(() => a.state === 'live' && a.anaState(env.ns.nsid) === 'optimized', 15_000, 'path 1 back');
    const onA = a.health().completed;
    await waitFor(() => a.health().completed > onA + 20, 10_000, 'writes back on path 1');

    const written = await w.stop();
    expect(written.size).toBeGreaterThan(200);
    await verifyAll(env, written);
    const mine = events.filter((e) => e.path === a.id).map((e) => `${e.state}/${e.anaState}`);
    expect(mine).toContain('live/inaccessible');
    expect(mine).toContain('reconnecting/inaccessible');
    expect(mine.at(-1)).toBe('live/optimized');
    expect(JSON.parse(JSON.stringify(m.health())).paths).toHaveLength(2);
  });

  it('re-sends a write whose connection closed before it was answered', async () => {
    const env = await setup({ policy: 'round-robin' });
    const rule = env.target.inject({ action: 'close', match: { opcode: 0x01, portid: env.p1.portid }, times: 1 });
    const written = new Map<number, Buffer>();
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const data = Buffer.concat([block(i * 2, 2), block(i * 2 + 1, 2)]);
        await env.m.write(i * 2, data);
        written.set(i * 2, data);
      }),
    );
    expect(rule.hits).toBe(1);
    expect(env.m.paths[0]!.health().errors.connection).toBeGreaterThanOrEqual(1);
    await verifyAll(env, written);
  });

  it('keeps I/O flowing when keep-alive fails on one path, which then reconnects', async () => {
    const env = await setup({ policy: 'round-robin', kato: 600 });
    const drop = env.target.inject({ action: 'drop', match: { opcode: 0x18, portid: env.p1.portid }, times: 1 });
    const w = startWriters(env.m, 2);
    const a = env.m.paths[0]!;
    // At least one: with a KATO this short a stalled event loop may cost another reconnect, and a counter can only grow.
    await waitFor(() => a.health().reconnects >= 1 && a.state === 'live', 15_000, 'reconnect after keep-alive loss');
    expect(drop.hits).toBe(1);
    const written = await w.stop();
    await verifyAll(env, written);
    // The reconnected controller measures its first keep-alive round trip within KATO/2.
    await waitFor(() => a.health().keepAliveRttMs !== null, 10_000, 'a keep-alive round trip on the new connection');
  });

  it('keeps reconnecting while the subsystem is unlinked from the port (Connect refused) and returns when relinked', async () => {
    const env = await setup({ policy: 'round-robin' });
    const a = env.m.paths[0]!;
    const w = startWriters(env.m, 2);
    env.target.unlinkSubsystem(env.p1, SUBNQN);
    await waitFor(() => a.health().reconnectAttempts >= 2, 10_000, 'failed reconnects');
    expect(a.state).not.toBe('live');
    expect(a.health().lastEvent?.type).toBe('connect-failed');
    env.target.linkSubsystem(env.p1, SUBNQN);
    await waitFor(() => a.state === 'live', 10_000, 'path 1 back');
    const done = a.health().completed;
    await waitFor(() => a.health().completed > done + 10, 10_000, 'I/O on path 1 again');
    await verifyAll(env, await w.stop());
  });

  it('returns a media error to the caller without trying the other path', async () => {
    const env = await setup();
    const rule = env.target.inject({ action: 'status', status: { sct: 2, sc: 0x81 }, match: { opcode: 0x02 }, times: 5 });
    await expect(env.m.read(0, 1)).rejects.toBeInstanceOf(NvmeStatusError);
    expect(rule.hits).toBe(1);
  });
});

describe('multipath namespace: reservations and events(), as on Namespace and Controller', () => {
  it('registers, acquires and reports a reservation through whichever path carries the command', async () => {
    const env = await setup({ policy: 'round-robin' });
    await env.m.reservationRegister({ action: 'register', newKey: 0xabcn });
    await env.m.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: 0xabcn });
    const report = await env.m.reservationReport({ extended: true });
    expect(report.type).toBe('write-exclusive');
    // One registered controller per path of this host, every one with the host's key.
    expect(report.registrants.length).toBeGreaterThanOrEqual(1);
    expect(report.registrants.every((r) => r.key === 0xabcn)).toBe(true);
    expect(report.registrants.some((r) => r.holdsReservation)).toBe(true);
    // The reservation belongs to the host (one host ID on every path), so writes go on through both paths.
    for (let i = 0; i < 4; i++) await env.m.write(i, block(i, 1));
    await env.m.reservationRelease({ action: 'release', type: 'write-exclusive', key: 0xabcn });
    expect((await env.m.reservationReport({ extended: true })).type).toBeNull();
  });

  it('delivers path changes to an events() iterator and to listeners, one throwing listener not stopping the others', async () => {
    const env = await setup();
    const it = env.m.events({ highWaterMark: 8 });
    const seen: PathStateEvent[] = [];
    const thrown: unknown[] = [];
    const onUncaught = (e: unknown) => thrown.push(e);
    process.prependListener('uncaughtException', onUncaught);
    try {
      const offBug = env.m.on('path-state', () => {
        throw new Error('listener bug');
      });
      env.m.on('path-state', (ev) => seen.push(ev));
      env.target.setAnaState(env.p1, 1, 'inaccessible');
      const first = await it.next();
      expect(first.done).toBe(false);
      expect(first.value).toMatchObject({ type: 'path-state', port: env.p1.port, anaState: 'inaccessible', usable: false });
      await waitFor(() => seen.length > 0 && thrown.length > 0);
      expect(seen[0]).toMatchObject({ port: env.p1.port, anaState: 'inaccessible' });
      expect((thrown[0] as Error).message).toBe('listener bug');
      offBug();
    } finally {
      process.removeListener('uncaughtException', onUncaught);
    }
    await env.m.close();
    // The iterator ends after the events queued before close (the paths' 'deleted' changes among them).
    const rest: string[] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value.type === 'path-state' ? r.value.state : r.value.type);
    expect(rest.length).toBeLessThanOrEqual(8);
    expect(rest).toContain('deleted');
  });
});
