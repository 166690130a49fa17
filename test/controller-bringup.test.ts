import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../src/errors.js';
import { TargetEnv } from './helpers/target-env.js';
import { waitFor } from './helpers/wait.js';

const env = new TargetEnv();
afterEach(() => env.cleanup());

describe('Controller bring-up failures', () => {
  it('fails the bring-up when one I/O queue Connect is refused and leaves no connection open', async () => {
    await env.start();
    // Refuse the Connect of I/O queue 3 only: queues 1, 2 and 4 connect, then the bring-up fails with the refusal.
    env.target.inject({ action: 'status', match: { fctype: 0x01, qid: 3 }, status: { sct: 1, sc: 0x82 } });
    const err = await env.connect({ ioQueues: 4 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.STATUS, sct: 1, sc: 0x82 });
    // Every queue the failed bring-up opened is closed again.
    await waitFor(() => env.target.connections().length === 0, 5000, 'every connection closed');
  });

  it('reports a controller that never becomes ready within CAP.TO', async () => {
    await env.start({ target: { readyDelayMs: 5000, capTimeout: 1 } });
    const err = await env.connect().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TIMEOUT });
    expect((err as Error).message).toMatch(/CAP\.TO/);
  });
});
