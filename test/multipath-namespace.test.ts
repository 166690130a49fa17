import { Buffer } from 'node:buffer';
import { afterEach, describe, expect, it } from 'vitest';
import { openMultipath, type MultipathNamespace, type MultipathOptions, type PathStateEvent } from '../src/multipath/index.js';
import { PathMismatchError } from '../src/multipath/path.js';
import { AbortedError, InvalidArgumentError, NoPathError, NvmeStatusError } from '../src/errors.js';
import { FakeFabric, HOSTNQN, SUBNQN, statusErr, waitFor } from './helpers/multipath-fakes.js';

const A = '10.0.0.1:4420';
const B = '10.0.0.2:4420';
const opened: MultipathNamespace[] = [];

async function open(fabric: FakeFabric, o: Partial<MultipathOptions> = {}): Promise<MultipathNamespace> {
  const m = await openMultipath({
    subnqn: SUBNQN,
    nsid: 1,
    hostnqn: HOSTNQN,
    paths: [{ host: '10.0.0.1' }, { host: '10.0.0.2' }],
    reconnectDelay: 20,
    connectController: fabric.connect,
    ...o,
  });
  opened.push(m);
  return m;
}

/** Block `lba` filled with a pattern naming the LBA and a generation. */
function block(lba: number, gen: number): Buffer {
  const b = Buffer.alloc(512);
  for (let i = 0; i < 512; i += 8) {
    b.writeUInt32LE(lba, i);
    b.writeUInt32LE(gen, i + 4);
  }
  return b;
}

/** Fire `count` sequential writes, one block each, at distinct LBAs; returns what was written. */
async function writeMany(m: MultipathNamespace, count: number, gen: number, between?: (i: number) => void | Promise<void>): Promise<Map<number, Buffer>> {
  const written = new Map<number, Buffer>();
  for (let i = 0; i < count; i++) {
    await between?.(i);
    const data = block(i, gen);
    await m.write(i, data);
    written.set(i, data);
  }
  return written;
}

async function expectReadsBack(m: MultipathNamespace, written: Map<number, Buffer>): Promise<void> {
  for (const [lba, data] of written) expect((await m.read(lba, 1)).equals(data), `LBA ${lba}`).toBe(true);
}

afterEach(async () => {
  for (const m of opened.splice(0)) await m.close();
});

describe('openMultipath', () => {
  it('opens every path, exposes the namespace and does block I/O', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    expect(m.paths.map((p) => p.state)).toEqual(['live', 'live']);
    expect(m.blockSize).toBe(512);
    expect(m.blocks).toBe(4096n);
    expect(m.nguid).toBe(fabric.nguid);
    const data = Buffer.concat([block(7, 1), block(8, 1)]);
    await m.write(7, data);
    expect((await m.read(7, 2)).equals(data)).toBe(true);
    const into = Buffer.alloc(1024);
    await m.readInto(7, into);
    expect(into.equals(data)).toBe(true);
    await m.flush();
    // Same host identity on every path.
    expect(new Set(fabric.connects.map((c) => `${c.hostnqn}/${c.hostid}`)).size).toBe(1);
  });

  it('checks arguments as Namespace does, before sending anything', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    const before = fabric.controllers.reduce((n, c) => n + c.ioCount, 0);
    await expect(m.write(0, Buffer.alloc(100))).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(m.read(4096, 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(m.read(-1, 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(m.verify(0, 0)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(m.deallocate([])).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(fabric.controllers.reduce((n, c) => n + c.ioCount, 0)).toBe(before);
  });

  it('refuses paths that lead to another namespace', async () => {
    const fabric = new FakeFabric();
    fabric.address(B).nguid = 'ffffffffffffffffffffffffffffffff';
    const err = await open(fabric).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PathMismatchError);
    expect((err as Error).message).toMatch(/NGUID/);
    expect((err as PathMismatchError).code).toBe('NVMEOF_ERR_CONTROLLER');
    expect(fabric.controllers.every((c) => c.closed)).toBe(true);
  });

  it('refuses paths that lead to another subsystem', async () => {
    const fabric = new FakeFabric();
    fabric.address(B).subnqn = 'nqn.2024-01.io.nvmeof.test:elsewhere';
    await expect(open(fabric)).rejects.toThrow(/leads to subsystem nqn.2024-01.io.nvmeof.test:elsewhere/);
    expect(fabric.controllers.every((c) => c.closed)).toBe(true);
  });

  it('rejects with NoPathError when no path can be opened', async () => {
    const fabric = new FakeFabric();
    fabric.address(A).reachable = false;
    fabric.address(B).reachable = false;
    await expect(open(fabric)).rejects.toBeInstanceOf(NoPathError);
  });

  it('opens with one path down and brings it in when it comes up', async () => {
    const fabric = new FakeFabric();
    fabric.address(B).reachable = false;
    const m = await open(fabric);
    expect(m.paths[1]!.state).not.toBe('live');
    fabric.address(B).reachable = true;
    await waitFor(() => m.paths[1]!.state === 'live');
  });

  it('fails a reconnect that finds another namespace behind the path, and keeps the path out', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    fabric.address(B).nguid = 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee';
    fabric.kill(B, false);
    await waitFor(() => m.paths[1]!.state === 'failed');
    expect(m.paths[1]!.health().lastEvent?.message).toMatch(/no longer leads/);
    await m.write(0, block(0, 1));
  });

  it('validates its options', async () => {
    const fabric = new FakeFabric();
    await expect(open(fabric, { paths: [] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(open(fabric, { paths: [{ host: 'a' }, { host: 'a', port: 4420 }] })).rejects.toThrow(/repeats/);
    await expect(open(fabric, { nsid: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(open(fabric, { policy: 'random' as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(open(fabric, { ctrlLossTimeout: -5 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(open(fabric, { ioQueues: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(fabric.connects).toHaveLength(0);
  });
});

describe('failover', () => {
  it('moves I/O off a path that becomes ANA inaccessible, losing no write', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    const written = await writeMany(m, 60, 1, (i) => {
      if (i === 20) fabric.setAna(A, 'inaccessible', false); // found through the ANA status
    });
    await expectReadsBack(m, written);
    expect(m.paths[0]!.anaState(1)).toBe('inaccessible');
    const h = m.health();
    expect(h.paths[0]!.errors.ana).toBeGreaterThanOrEqual(1);
    expect(h.paths[1]!.completed).toBeGreaterThan(40);
  });

  it('moves I/O off a path whose connection drops, and uses it again when it returns', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric, { policy: 'round-robin' });
    const written = await writeMany(m, 80, 2, async (i) => {
      if (i === 10) fabric.kill(A);
      if (i === 50) fabric.address(A).reachable = true;
      if (i === 50) await waitFor(() => m.paths[0]!.state === 'live');
    });
    await expectReadsBack(m, written);
    expect(m.paths[0]!.health().reconnects).toBe(1);
  });

  it('keeps concurrent writes whole when both paths flap', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric, { policy: 'queue-depth' });
    const written = new Map<number, Buffer>();
    const ios: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      const data = Buffer.concat([block(i * 4, 3), block(i * 4 + 1, 3), block(i * 4 + 2, 3), block(i * 4 + 3, 3)]);
      ios.push(m.write(i * 4, data).then(() => void written.set(i * 4, data)));
      if (i === 50) fabric.kill(A, false);
      if (i === 100) fabric.kill(B, false);
      if (i === 150) fabric.setAna(B, 'inaccessible');
    }
    await Promise.all(ios);
    expect(written.size).toBe(200);
    for (const [lba, data] of written) expect((await m.read(lba, 4)).equals(data)).toBe(true);
  });

  it('uses optimized paths first and non-optimized ones when no path is optimized', async () => {
    const fabric = new FakeFabric();
    fabric.address(A).ana = 'non-optimized';
    const m = await open(fabric);
    await writeMany(m, 10, 1);
    const [ca, cb] = [fabric.live(A)[0]!, fabric.live(B)[0]!];
    expect(ca.ioCount).toBe(0);
    expect(cb.ioCount).toBe(10);
    fabric.setAna(B, 'inaccessible');
    await waitFor(() => m.paths[1]!.anaState(1) === 'inaccessible');
    await writeMany(m, 5, 2);
    expect(ca.ioCount).toBe(5);
  });

  it('spreads I/O over optimized paths with round-robin', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric, { policy: 'round-robin' });
    await writeMany(m, 10, 1);
    expect(fabric.live(A)[0]!.ioCount).toBe(5);
    expect(fabric.live(B)[0]!.ioCount).toBe(5);
  });

  it('returns media and generic errors to the caller without retrying', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric, { policy: 'round-robin' });
    fabric.fault = () => statusErr(2, 0x81);
    await expect(m.read(0, 1)).rejects.toMatchObject({ sct: 2, sc: 0x81 });
    fabric.fault = () => statusErr(0, 0x80);
    await expect(m.write(0, block(0, 1))).rejects.toMatchObject({ sct: 0, sc: 0x80 });
    expect(fabric.controllers.reduce((n, c) => n + c.ioCount, 0)).toBe(2);
  });

  it('does not retry a path status carrying DNR', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    fabric.fault = () => statusErr(3, 0x00, true);
    await expect(m.write(0, block(0, 1))).rejects.toBeInstanceOf(NvmeStatusError);
    expect(fabric.controllers.reduce((n, c) => n + c.ioCount, 0)).toBe(1);
  });

  it('retries a path status on the other path', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    fabric.fault = (_cmd, ctrl) => (ctrl.id === A ? statusErr(3, 0x70) : undefined);
    await m.write(0, block(0, 9));
    expect(fabric.read(0n)!.equals(block(0, 9))).toBe(true);
    expect(fabric.live(B)[0]!.ioCount).toBe(1);
  });

  it('gives up after maxRetries path errors with the last error', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric, { maxRetries: 3 });
    fabric.fault = () => statusErr(3, 0x00);
    await expect(m.write(0, block(0, 1))).rejects.toMatchObject({ sct: 3, sc: 0 });
    expect(fabric.controllers.reduce((n, c) => n + c.ioCount, 0)).toBe(4);
  });

  it('moves a timed-out command to the other path and resets the path it timed out on', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    fabric.fault = (_cmd, ctrl) => (ctrl.id === A ? 'hang' : undefined);
    await m.write(3, block(3, 4), { timeout: 50 });
    expect(fabric.read(3n)!.equals(block(3, 4))).toBe(true);
    expect(m.paths[0]!.health().errors.timeout).toBe(1);
    fabric.fault = undefined;
    await waitFor(() => m.paths[0]!.state === 'live' && m.paths[0]!.cntlid !== 1);
  });
});

describe('no usable path', () => {
  it('queues I/O while no path is usable and sends it when a path returns', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    fabric.kill(A);
    fabric.kill(B);
    const io = m.write(5, block(5, 5));
    await waitFor(() => m.health().waitingIo === 1);
    fabric.address(B).reachable = true;
    await io;
    expect(fabric.read(5n)!.equals(block(5, 5))).toBe(true);
  });

  it('queues I/O while every live path is ANA inaccessible, until the ANA state changes', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    fabric.setAna(A, 'inaccessible');
    fabric.setAna(B, 'change');
    await waitFor(() => m.health().usablePaths === 0);
    const io = m.write(6, block(6, 6));
    await waitFor(() => m.health().waitingIo === 1);
    fabric.setAna(B, 'optimized');
    await io;
    expect(fabric.read(6n)!.equals(block(6, 6))).toBe(true);
  });

  it('finds an ANA change by polling the ANA log while I/O waits, without events', async () => {
    const fabric = new FakeFabric();
    fabric.emitEvents = false;
    const m = await open(fabric, { anaPollInterval: 50 });
    fabric.setAna(A, 'inaccessible', false);
    fabric.setAna(B, 'inaccessible', false);
    const io = m.write(6, block(6, 7));
    await waitFor(() => m.health().waitingIo === 1);
    const reads = () => fabric.live(A).reduce((n, c) => n + c.anaReads, 0);
    const before = reads();
    // No event will come: the waiting I/O must make the paths poll the ANA log.
    await waitFor(() => reads() >= before + 2, 5000, 'two ANA log polls while I/O waits');
    expect(fabric.read(6n)).toBeUndefined();
    fabric.setAna(A, 'optimized', false);
    await io;
    expect(fabric.read(6n)!.equals(block(6, 7))).toBe(true);
    expect(m.health().waitingIo).toBe(0);
  });

  it('fails waiting I/O with NoPathError once fastIoFailTimeout expires on every path', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric, { fastIoFailTimeout: 150 });
    fabric.kill(A);
    fabric.kill(B);
    const t0 = Date.now();
    await expect(m.write(0, block(0, 1))).rejects.toBeInstanceOf(NoPathError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    expect(m.paths.every((p) => p.state === 'reconnecting' || p.state === 'connecting')).toBe(true);
  });

  it('fails waiting I/O with NoPathError once ctrlLossTimeout expires on every path', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric, { ctrlLossTimeout: 150 });
    fabric.kill(A);
    fabric.kill(B);
    await expect(m.read(0, 1)).rejects.toThrow(/no usable path/);
    expect(m.paths.map((p) => p.state)).toEqual(['failed', 'failed']);
    // Later I/O fails at once.
    await expect(m.read(0, 1)).rejects.toBeInstanceOf(NoPathError);
  });

  it('fails at once when every path is in ANA persistent loss', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    fabric.setAna(A, 'persistent-loss');
    fabric.setAna(B, 'persistent-loss');
    await waitFor(() => m.paths.every((p) => p.anaState(1) === 'persistent-loss'));
    await expect(m.read(0, 1)).rejects.toBeInstanceOf(NoPathError);
  });

  it('lets an AbortSignal end the wait', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    fabric.kill(A);
    fabric.kill(B);
    const ac = new AbortController();
    const io = m.read(0, 1, { signal: ac.signal });
    setTimeout(() => ac.abort(), 30);
    await expect(io).rejects.toBeInstanceOf(AbortedError);
    expect(m.health().waitingIo).toBe(0);
  });

  it('fails waiting I/O with NoPathError on close', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    fabric.kill(A);
    fabric.kill(B);
    const io = m.read(0, 1);
    await waitFor(() => m.health().waitingIo === 1);
    await m.close();
    await expect(io).rejects.toBeInstanceOf(NoPathError);
    expect(m.paths.map((p) => p.state)).toEqual(['deleted', 'deleted']);
    await expect(m.read(0, 1)).rejects.toBeInstanceOf(NoPathError);
  });
});

describe('health monitor', () => {
  it('reports every path and emits path-state events', async () => {
    const fabric = new FakeFabric();
    const m = await open(fabric);
    const events: PathStateEvent[] = [];
    const off = m.on('path-state', (e) => events.push(e));
    fabric.kill(A);
    await waitFor(() => events.some((e) => e.state === 'connecting'));
    fabric.address(A).reachable = true;
    await waitFor(() => m.paths[0]!.state === 'live');
    fabric.setAna(B, 'non-optimized');
    await waitFor(() => events.some((e) => e.anaState === 'non-optimized'));
    off();
    const mine = events.filter((e) => e.path === A);
    expect(mine[0]).toMatchObject({ type: 'path-state', previousState: 'live', state: 'reconnecting', usable: false });
    expect(mine.at(-1)).toMatchObject({ state: 'live', usable: true, anaState: 'optimized' });
    expect(events.find((e) => e.path === B)).toMatchObject({ previousAnaState: 'optimized', anaState: 'non-optimized', state: 'live' });
    const h = m.health();
    expect(h).toMatchObject({ subnqn: SUBNQN, nsid: 1, policy: 'failover', usablePaths: 2, waitingIo: 0, closed: false });
    expect(h.paths[0]).toMatchObject({ id: A, state: 'live', reconnects: 1, anaState: 'optimized', usable: true });
    expect(h.paths[1]).toMatchObject({ id: B, anaState: 'non-optimized', anaGroup: 1 });
    expect(JSON.parse(JSON.stringify(h))).toEqual(h);
    expect(() => m.on('nope' as never, () => {})).toThrow(InvalidArgumentError);
  });
});
