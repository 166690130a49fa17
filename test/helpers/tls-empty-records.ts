/**
 * How many empty TLS records the host sent while `fn` ran (TlsSocket.sendEmptyRecord returning true, on every
 * connection of the process): the large-read tests against OpenSSL, SPDK and Linux kTLS use it to show that the
 * records really went out while the data stayed exact.
 */
import { vi } from 'vitest';
import { TlsSocket } from '../../src/transport/tls13/client.js';

export async function countEmptyRecords(fn: () => Promise<void>): Promise<number> {
  const spy = vi.spyOn(TlsSocket.prototype, 'sendEmptyRecord');
  try {
    await fn();
    return spy.mock.results.filter((r) => r.type === 'return' && r.value === true).length;
  } finally {
    spy.mockRestore();
  }
}
