/**
 * Busy polling (`busyPoll`): the process keeps polling exactly while polled I/O commands are outstanding, never for
 * the admin queue (its AERs stay outstanding for the controller's life), and stops when commands complete, time out,
 * or their queue is torn down, so nothing spins after the I/O is over.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { pollingCommands } from '../src/transport/poller.js';
import { ErrorCode, type NvmeofError } from '../src/errors.js';
import { InvalidArgumentError } from '../src/errors.js';
import { connect } from '../src/host/controller.js';
import { TargetEnv, SUBNQN } from './helpers/target-env.js';

const env = new TargetEnv();
afterEach(() => env.cleanup());

const READ = 0x02;

describe('busyPoll', () => {
  it('counts outstanding I/O while it is in flight, and nothing after; the admin queue (AERs outstanding) is not polled', async () => {
    await env.start();
    const ctrl = await env.connect({ busyPoll: true, ioQueues: 2 });
    expect(pollingCommands()).toBe(0);
    const ns = await ctrl.namespace(1);
    const data = randomBytes(8 * 512);
    const writes = Array.from({ length: 16 }, (_, i) => ns.write(i * 8, data));
    expect(pollingCommands()).toBe(16);
    await Promise.all(writes);
    expect(pollingCommands()).toBe(0);
    const reads = Array.from({ length: 16 }, (_, i) => ns.read(i * 8, 8));
    expect(pollingCommands()).toBe(16);
    for (const r of await Promise.all(reads)) expect(r.equals(data)).toBe(true);
    expect(pollingCommands()).toBe(0);
  });

  it('a command that times out stops being polled; so do commands failed by a torn-down queue', async () => {
    await env.start();
    const ctrl = await env.connect({ busyPoll: true, ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    env.target.inject({ match: { opcode: READ, kind: 'io' }, action: 'drop', times: 1 });
    const e = (await ns.read(0, 1, { timeout: 50 }).catch((x: unknown) => x)) as NvmeofError;
    expect(e.code).toBe(ErrorCode.TIMEOUT);
    expect(pollingCommands()).toBe(0);
    env.target.inject({ match: { opcode: READ, kind: 'io' }, action: 'drop' });
    const pending = [ns.read(1, 1), ns.read(2, 1)].map((p) => p.catch((x: unknown) => x as NvmeofError));
    expect(pollingCommands()).toBe(2);
    ctrl.destroy();
    for (const r of await Promise.all(pending)) expect(r).toBeInstanceOf(Error);
    expect(pollingCommands()).toBe(0);
  });

  it('is off by default and must be a boolean', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    const p = ns.read(0, 1);
    expect(pollingCommands()).toBe(0);
    await p;
    await expect(connect({ host: '127.0.0.1', port: env.port.port, subnqn: SUBNQN, busyPoll: 'yes' as unknown as boolean })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
