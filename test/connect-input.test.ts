/**
 * connect() input checks: values that used to pass validation and fail later (after a socket was opened, or with a
 * number the caller never passed, or with an uncaught TypeError from a timer) are refused up front with
 * NVMEOF_ERR_INVALID_ARGUMENT, and no connection is attempted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { connect, type ConnectOptions } from '../src/host/controller.js';
import { ErrorCode, NvmeofError } from '../src/errors.js';
import type { CommandInfo } from '../src/target/index.js';
import { TargetEnv } from './helpers/target-env.js';

let server: net.Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A TCP listener that counts the connections it receives (and holds them without answering). */
async function countingListener(): Promise<{ port: number; count: () => number }> {
  let n = 0;
  const sockets: net.Socket[] = [];
  server = net.createServer((s) => {
    n++;
    sockets.push(s);
  });
  server.on('close', () => sockets.forEach((s) => s.destroy()));
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, count: () => n };
}

const SUBNQN = 'nqn.2024-01.io.nvmeof.test:input';

describe('connect(): options refused before anything is sent', () => {
  it.each<[string, Record<string, unknown>, RegExp]>([
    ['queueSize above the queue pair depth', { queueSize: 4097 }, /queueSize must be an integer 1\.\.4096, got 4097/],
    ['queueSize at the spec maximum', { queueSize: 65535 }, /queueSize must be an integer 1\.\.4096/],
    ['a string headerDigest', { headerDigest: 'yes' }, /headerDigest must be a boolean, got yes/],
    ['a numeric dataDigest', { dataDigest: 1 }, /dataDigest must be a boolean, got 1/],
    ['a signal that is not an AbortSignal', { signal: 'x' }, /signal must be an AbortSignal, got string/],
    ['a plain object as signal', { signal: {} }, /signal must be an AbortSignal, got object/],
  ])('%s', async (_name, extra, message) => {
    const l = await countingListener();
    const err = await connect({ host: '127.0.0.1', port: l.port, subnqn: SUBNQN, ...(extra as Partial<ConnectOptions>) } as ConnectOptions).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NvmeofError);
    expect((err as NvmeofError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((err as Error).message).toMatch(message);
    await new Promise((r) => setTimeout(r, 20));
    expect(l.count()).toBe(0);
  });

  it('rejects an already aborted signal with NVMEOF_ERR_ABORTED, not a DOMException, and does not connect', async () => {
    const l = await countingListener();
    const err = await connect({ host: '127.0.0.1', port: l.port, subnqn: SUBNQN, signal: AbortSignal.abort() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NvmeofError);
    expect((err as NvmeofError).code).toBe(ErrorCode.ABORTED);
    await new Promise((r) => setTimeout(r, 20));
    expect(l.count()).toBe(0);
  });
});

describe('per-command options refused before anything is sent', () => {
  const env = new TargetEnv();
  afterEach(() => env.cleanup());

  it.each<[string, Record<string, unknown>, string]>([
    ['a negative timeout', { timeout: -1 }, 'timeout must be an integer'],
    ['a string timeout', { timeout: 'x' }, 'timeout must be an integer'],
    ['a null timeout', { timeout: null }, 'timeout must be an integer'],
    ['a fractional timeout', { timeout: 1.5 }, 'timeout must be an integer'],
    ['a timeout beyond the longest timer', { timeout: 2 ** 31 }, 'timeout must be an integer'],
    ['a plain object as signal', { signal: {} }, 'signal must be an AbortSignal'],
  ])('ns.read with %s rejects with NVMEOF_ERR_INVALID_ARGUMENT and close() still settles', async (_name, opts, message) => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    let reads = 0;
    env.target.on('command', (c: CommandInfo) => {
      if (c.opcode === 0x02 && c.qid > 0) reads++;
    });
    const err = await ns.read(0, 1, opts as never).then(() => undefined, (e: unknown) => e);
    expect((err as NvmeofError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((err as Error).message).toContain(message);
    expect(reads).toBe(0);
    await ctrl.close();
    expect(ctrl.state).toBe('closed');
  });
});
