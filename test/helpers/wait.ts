/** Waiting helpers shared by the unit and integration tests. */
import * as net from 'node:net';
import { once } from 'node:events';

/**
 * Poll `cond` until it holds; throw after `ms` naming `what` (and `detail()`, when given, to show the state seen).
 * Bounds are for a loaded machine, not performance checks.
 */
export async function waitFor(cond: () => boolean, ms = 5000, what = 'condition', detail?: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${detail ? `: ${detail()}` : ''}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A loopback TCP port nothing listens on (bound once, then released). */
export async function closedPort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
