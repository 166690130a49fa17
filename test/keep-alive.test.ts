/**
 * The process-wide keep-alive scheduler: every client gets a Keep Alive at least every `interval` ms, never more than a
 * fifth of the interval early, and clients whose deadlines are close share one timer wake-up.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { keepAliveClients, startKeepAlive, stopKeepAlive, type KeepAliveClient } from '../src/host/keep-alive.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function client(log: number[]): KeepAliveClient {
  return { send: () => log.push(Date.now()) };
}

describe('keep-alive scheduler', () => {
  it('sends every interval, at most a fifth early, and stops', () => {
    const t0 = Date.now();
    const sent: number[] = [];
    const c = client(sent);
    startKeepAlive(c, 1000);
    vi.advanceTimersByTime(999);
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual([t0 + 1000]);
    vi.advanceTimersByTime(10_000);
    expect(sent).toHaveLength(11);
    for (let i = 1; i < sent.length; i++) expect(sent[i]! - sent[i - 1]!).toBe(1000);
    stopKeepAlive(c);
    expect(keepAliveClients()).toBe(0);
    vi.advanceTimersByTime(5000);
    expect(sent).toHaveLength(11);
  });

  it('serves clients whose deadlines fall within the slack in one wake-up, each still within its interval', () => {
    const logs: number[][] = [];
    const clients: KeepAliveClient[] = [];
    // 100 clients started 1 ms apart, interval 2500 ms: slack 500 ms covers them all.
    for (let i = 0; i < 100; i++) {
      const log: number[] = [];
      logs.push(log);
      const c = client(log);
      clients.push(c);
      startKeepAlive(c, 2500);
      vi.advanceTimersByTime(1);
    }
    const starts = logs.map((_, i) => i);
    vi.advanceTimersByTime(20_000);
    const moments = new Set(logs.flat());
    // Far fewer distinct send moments than sends: they were batched.
    expect(logs.flat().length).toBeGreaterThanOrEqual(100 * 8);
    expect(moments.size).toBeLessThanOrEqual(10);
    // No client ever waited longer than its interval, nor got one more than a fifth early.
    const t0 = Date.now() - 20_000 - 100;
    logs.forEach((log, i) => {
      let prev = t0 + starts[i]!;
      for (const t of log) {
        expect(t - prev).toBeLessThanOrEqual(2500);
        expect(t - prev).toBeGreaterThanOrEqual(2000);
        prev = t;
      }
    });
    for (const c of clients) stopKeepAlive(c);
    expect(keepAliveClients()).toBe(0);
  });
});
