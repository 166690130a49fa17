/**
 * A hostile controller (a mutating proxy in front of the embedded target, fixed seed): across many sessions no read
 * may resolve with wrong bytes, no promise may stay pending, every error is typed, and no caller buffer is written
 * after its read rejected. integration/hostile/run.ts runs the same sessions longer, with any seed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/host/controller.js';
import { startHostileProxy, type HostileProxy } from './helpers/hostile-proxy.js';
import { BLOCK, BLOCKS, expected, hostileSession, newTally } from './helpers/hostile-session.js';
import { HOSTNQN, SUBNQN, TargetEnv } from './helpers/target-env.js';

const SEED = 20261203;
const SESSIONS = 600;
const PARALLEL = 16;

describe('hostile controller', () => {
  const env = new TargetEnv();
  let proxy: HostileProxy;

  beforeAll(async () => {
    // Reads longer than 4 blocks come in several C2HData PDUs, so lies about the middle of a transfer are possible.
    await env.start({ target: { maxC2HData: 2048 }, ns: { blocks: BLOCKS, blockSize: BLOCK } });
    const ctrl = await connect({ host: '127.0.0.1', port: env.port.port, subnqn: SUBNQN, hostnqn: HOSTNQN, ioQueues: 1 });
    await (await ctrl.namespace(1)).write(0, expected(0, BLOCKS));
    await ctrl.close();
    proxy = await startHostileProxy({ targetPort: env.port.port, seed: SEED, rate: 0.08, delayMs: 250 });
  });
  afterAll(async () => {
    await proxy?.close();
    await env.cleanup();
  });

  it(`${SESSIONS} sessions: 0 wrong reads, 0 pending, 0 untyped errors, 0 late writes`, async () => {
    const t = newTally();
    let next = 0;
    const worker = async () => {
      while (next < SESSIONS) {
        const i = next++;
        await hostileSession(t, { port: proxy.port, subnqn: SUBNQN, hostnqn: HOSTNQN, seed: SEED + i, commandTimeout: 150, deadline: 4000, lingerMs: 300 });
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    const summary = { ...t, errorsByCode: Object.fromEntries(t.errorsByCode), applied: Object.fromEntries(proxy.applied) };
    expect({ wrong: t.wrong, pending: t.pending, untyped: t.untyped, lateWrites: t.lateWrites, examples: t.examples }, JSON.stringify(summary)).toEqual({
      wrong: 0,
      pending: 0,
      untyped: 0,
      lateWrites: 0,
      examples: [],
    });
    // The run must have exercised both outcomes: reads that came back right and lies that were caught.
    expect(t.sessions).toBe(SESSIONS);
    expect(t.resolved).toBeGreaterThan(t.reads / 4);
    expect(t.errorsByCode.get('NVMEOF_ERR_PROTOCOL') ?? 0).toBeGreaterThan(10);
    expect(t.errorsByCode.get('NVMEOF_ERR_TIMEOUT') ?? 0).toBeGreaterThan(0);
    for (const m of ['truncate', 'drop-data', 'drop-resp', 'duplicate', 'delay', 'early-success', 'flip', 'cut'] as const) {
      expect(proxy.applied.get(m) ?? 0, m).toBeGreaterThan(0);
    }
  }, 120_000);
});
