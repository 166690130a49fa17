import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { Path, PathMismatchError, type PathChange, type PathOptions } from '../src/multipath/path.js';
import { InvalidArgumentError, InvalidStateError, KeepAliveError, TimeoutError } from '../src/errors.js';
import * as cmds from '../src/protocol/commands.js';
import { FakeFabric, HOSTNQN, SUBNQN, statusErr, waitFor } from './helpers/multipath-fakes.js';

const A = '10.0.0.1:4420';
const paths: Path[] = [];

/** A path that gave up stays given up: failed, with no reconnect attempt scheduled or running. */
async function noLaterAttempt(p: Path, check: () => void): Promise<void> {
  await new Promise((r) => setImmediate(r));
  expect(p.state).toBe('failed');
  expect(p.health().nextReconnectAt).toBeNull();
  check();
}

function makePath(fabric: FakeFabric, o: Partial<PathOptions> = {}): Path {
  const p = new Path({ host: '10.0.0.1', port: 4420, subnqn: SUBNQN, hostnqn: HOSTNQN, reconnectDelay: 30, connect: fabric.connect, ...o });
  paths.push(p);
  return p;
}

function record(p: Path): PathChange[] {
  const out: PathChange[] = [];
  p.onChange((c) => out.push(c));
  return out;
}

afterEach(async () => {
  for (const p of paths.splice(0)) await p.close();
});

describe('Path', () => {
  it('connects, reports live, and reconnects after reconnectDelay with the same host identity', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric, { reconnectDelay: 120 });
    const changes = record(p);
    await p.start();
    expect(p.state).toBe('live');
    expect(p.cntlid).toBe(1);
    fabric.kill(A, false);
    expect(p.state).toBe('reconnecting');
    const lostAt = Date.now();
    await waitFor(() => p.state === 'live', 3000, 'reconnect');
    expect(Date.now() - lostAt).toBeGreaterThanOrEqual(100);
    expect(p.cntlid).toBe(2);
    expect(fabric.connects).toHaveLength(2);
    for (const c of fabric.connects) {
      expect(c.hostnqn).toBe(HOSTNQN);
      expect(c.hostid).toBe(p.hostid);
    }
    expect(changes.filter((c) => c.kind === 'state').map((c) => c.to)).toEqual(['live', 'reconnecting', 'connecting', 'live']);
    const h = p.health();
    expect(h).toMatchObject({ state: 'live', reconnects: 1, reconnectAttempts: 1, lostAt: null, cntlid: 2 });
    expect(h.lastEvent?.type).toBe('reconnected');
  });

  it('keeps one generated host identity across reconnects when none is given', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric, { hostnqn: undefined, hostid: undefined });
    await p.start();
    fabric.kill(A, false);
    await waitFor(() => p.state === 'live' && fabric.connects.length === 2);
    expect(fabric.connects[1]!.hostnqn).toBe(fabric.connects[0]!.hostnqn);
    expect(fabric.connects[1]!.hostid).toBe(fabric.connects[0]!.hostid);
  });

  it('keeps trying while the address is unreachable and gives up after ctrlLossTimeout', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric, { reconnectDelay: 20, ctrlLossTimeout: 200 });
    await p.start();
    fabric.kill(A);
    await waitFor(() => p.state === 'failed', 3000, 'failed');
    const attempts = fabric.connects.length;
    expect(attempts).toBeGreaterThan(3);
    expect(p.health().lastEvent?.type).toBe('ctrl-loss');
    expect(p.mayRecover(1)).toBe(false);
    await noLaterAttempt(p, () => expect(fabric.connects.length).toBe(attempts));
    // A manual reconnect starts over.
    fabric.address(A).reachable = true;
    p.reconnect();
    await waitFor(() => p.state === 'live');
  });

  it('does not reconnect at all with ctrlLossTimeout 0', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric, { ctrlLossTimeout: 0 });
    await p.start();
    fabric.kill(A, false);
    expect(p.state).toBe('failed');
    await noLaterAttempt(p, () => expect(fabric.connects).toHaveLength(1));
  });

  it('reconnects forever with ctrlLossTimeout -1', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric, { reconnectDelay: 10, ctrlLossTimeout: -1 });
    await p.start();
    fabric.kill(A);
    await waitFor(() => fabric.connects.length > 10);
    expect(p.state === 'reconnecting' || p.state === 'connecting').toBe(true);
    expect(p.mayRecover(1)).toBe(true);
  });

  it('expires fast I/O fail after fastIoFailTimeout and clears it on reconnect', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric, { reconnectDelay: 20, fastIoFailTimeout: 100 });
    const changes = record(p);
    await p.start();
    fabric.kill(A);
    expect(p.mayRecover(1)).toBe(true);
    await waitFor(() => p.failFastExpired, 2000, 'fail-fast');
    expect(p.mayRecover(1)).toBe(false);
    expect(changes.some((c) => c.kind === 'fail-fast')).toBe(true);
    fabric.address(A).reachable = true;
    await waitFor(() => p.state === 'live');
    expect(p.failFastExpired).toBe(false);
    expect(p.mayRecover(1)).toBe(true);
  });

  it('records a keep-alive failure as such and reconnects', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric);
    await p.start();
    fabric.live(A)[0]!.destroy(new KeepAliveError('keep-alive to controller 1 failed: timed out'));
    expect(p.health().lastEvent?.type).toBe('keep-alive-failed');
    await waitFor(() => p.state === 'live');
  });

  it('resets the path when a command times out on it', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric);
    await p.start();
    fabric.fault = () => 'hang';
    const io = p.submit(cmds.read({ nsid: 1, slba: 0n, nlb: 1, blockSize: 512 }), { timeout: 50 });
    await expect(io).rejects.toBeInstanceOf(TimeoutError);
    expect(p.state).not.toBe('live');
    expect(p.health().errors.timeout).toBe(1);
    fabric.fault = undefined;
    await waitFor(() => p.state === 'live');
    expect(p.cntlid).toBe(2);
  });

  it('refuses a controller of another subsystem for good', async () => {
    const fabric = new FakeFabric();
    fabric.address(A).subnqn = 'nqn.2024-01.io.nvmeof.test:other';
    const p = makePath(fabric);
    await expect(p.start()).rejects.toBeInstanceOf(PathMismatchError);
    expect(p.state).toBe('failed');
    await noLaterAttempt(p, () => expect(fabric.connects).toHaveLength(1));
    expect(fabric.controllers[0]!.closed).toBe(true);
  });

  it('reads ANA state on connect, follows ANA events and ANA statuses', async () => {
    const fabric = new FakeFabric();
    fabric.address(A).ana = 'non-optimized';
    const p = makePath(fabric);
    const changes = record(p);
    await p.start();
    expect(p.anaState(1)).toBe('non-optimized');
    expect(p.anaGroup(1)).toBe(1);
    expect(p.usableFor(1)).toBe(true);
    fabric.setAna(A, 'optimized');
    await waitFor(() => p.anaState(1) === 'optimized');
    // An ANA status updates the state at once, without an event.
    fabric.setAna(A, 'inaccessible', false);
    await expect(p.submit(cmds.read({ nsid: 1, slba: 0n, nlb: 1, blockSize: 512 }))).rejects.toMatchObject({ sct: 3, sc: 2 });
    expect(p.anaState(1)).toBe('inaccessible');
    expect(p.usableFor(1)).toBe(false);
    expect(p.mayRecover(1)).toBe(true);
    fabric.setAna(A, 'persistent-loss');
    await waitFor(() => p.anaState(1) === 'persistent-loss');
    expect(p.mayRecover(1)).toBe(false);
    expect(changes.filter((c) => c.kind === 'ana').map((c) => c.anaState)).toEqual(['non-optimized', 'optimized', 'inaccessible', 'persistent-loss']);
  });

  it('has one ANA reader: an ANA path status costs one log read, by the controller, and the path follows its result', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric);
    await p.start();
    const ctrl = fabric.live(A)[0]!;
    expect(ctrl.anaReads).toBe(1); // bring-up
    expect(p.anaState(1)).toBe('optimized');
    // The status says inaccessible; by the time the controller re-reads, the log says optimized again.
    fabric.setAna(A, 'inaccessible', false);
    const io = p.submit(cmds.read({ nsid: 1, slba: 0n, nlb: 1, blockSize: 512 }));
    fabric.address(A).ana = 'optimized';
    await expect(io).rejects.toMatchObject({ sct: 3, sc: 2 });
    expect(p.anaState(1)).toBe('inaccessible');
    // The controller's re-read contradicts the provisional state: the path goes back to optimized.
    await waitFor(() => p.anaState(1) === 'optimized', 2000, 'the path to take the controller\'s log');
    expect(ctrl.anaReads).toBe(2);
    // A manual refresh also goes through the controller.
    await p.refreshAna();
    expect(ctrl.anaReads).toBe(3);
  });

  it('leaves ANA unknown (usable) when the controller does not report ANA', async () => {
    const fabric = new FakeFabric();
    fabric.anaReporting = false;
    const p = makePath(fabric);
    await p.start();
    expect(p.anaState(1)).toBeUndefined();
    expect(p.usableFor(1)).toBe(true);
  });

  it('guards its transitions and stays deleted after close', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric);
    await p.start();
    await p.close();
    expect(p.state).toBe('deleted');
    expect(fabric.controllers[0]!.closed).toBe(true);
    expect(() => (p as unknown as { transition(s: string): void }).transition('live')).toThrow(InvalidStateError);
    p.reconnect();
    expect(p.state).toBe('deleted');
    await expect(p.submit(cmds.flush(1))).rejects.toBeInstanceOf(InvalidStateError);
    await p.close();
  });

  it('stops an attempt in progress when closed', async () => {
    const fabric = new FakeFabric();
    fabric.address(A).connectDelay = 100;
    const p = makePath(fabric);
    const first = p.start();
    await p.close();
    await expect(first).rejects.toThrow();
    expect(p.state).toBe('deleted');
    await waitFor(() => fabric.controllers.every((c) => c.closed));
  });

  it('counts errors by kind and gives a JSON-friendly health snapshot', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric);
    await p.start();
    fabric.fault = () => statusErr(2, 0x81);
    await expect(p.submit(cmds.read({ nsid: 1, slba: 0n, nlb: 1, blockSize: 512 }))).rejects.toMatchObject({ sct: 2 });
    fabric.fault = () => statusErr(3, 0x00);
    await expect(p.submit(cmds.read({ nsid: 1, slba: 0n, nlb: 1, blockSize: 512 }))).rejects.toMatchObject({ sct: 3 });
    fabric.fault = undefined;
    await p.submit(cmds.flush(1));
    const h = p.health(1);
    expect(h.errors).toMatchObject({ total: 2, command: 1, 'path-status': 1 });
    expect(h.completed).toBe(1);
    expect(h.outstanding).toBe(0);
    expect(h.keepAliveRttMs).toBe(0.25);
    expect(h.anaState).toBe('optimized');
    expect(JSON.parse(JSON.stringify(h))).toEqual(h);
  });

  it('validates its options', () => {
    const fabric = new FakeFabric();
    expect(() => makePath(fabric, { reconnectDelay: -1 })).toThrow(InvalidArgumentError);
    expect(() => makePath(fabric, { ctrlLossTimeout: -2 })).toThrow(InvalidArgumentError);
    expect(() => makePath(fabric, { fastIoFailTimeout: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => makePath(fabric, { port: 70000 })).toThrow(InvalidArgumentError);
    expect(() => makePath(fabric, { host: '' })).toThrow(InvalidArgumentError);
  });
});

describe('Path events: the same idiom as controllers and multipath namespaces', () => {
  it('on(kind) listeners, an events() iterator that ends when the path is deleted, unknown kinds refused', async () => {
    const fabric = new FakeFabric();
    const p = makePath(fabric, { reconnectDelay: 20 });
    const states: string[] = [];
    const off = p.on('state', (ev) => {
      expectTypeOf(ev.type).toEqualTypeOf<'state'>();
      states.push(`${ev.from}->${ev.to}`);
    });
    const it = p.events();
    await p.start();
    fabric.kill(A);
    await waitFor(() => states.includes('reconnecting->connecting'));
    fabric.address(A).reachable = true;
    await waitFor(() => p.state === 'live' && states.filter((s) => s.endsWith('->live')).length === 2);
    off();
    await p.close();
    const seen: string[] = [];
    for await (const ev of it) if (ev.type === 'state') seen.push(`${ev.from}->${ev.to}`);
    // The iterator saw every transition, including the final one to 'deleted', then ended.
    expect(seen.slice(0, states.length)).toEqual(states);
    expect(seen.at(-1)).toBe('live->deleted');
    expect(states).not.toContain('live->deleted'); // unsubscribed before
    // @ts-expect-error not a path event type
    expect(() => p.on('nope', () => {})).toThrow(InvalidArgumentError);
  });
});
