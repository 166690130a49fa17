/**
 * Test-side access to the nvmf_tgt started by global-setup.ts: `spdkTargetFromInject()` for its coordinates and an
 * RPC client factory, `describeSpdk()`, a describe block that is skipped (its tests listed as skipped) when no SPDK
 * build was given, and `useSpdkTopology()`, which builds a topology before a file's tests and removes it after.
 *
 * The target has one NVMe/TCP transport (SPDK_TRANSPORT); every test file builds its own subsystems (use
 * `env.uniqueNqn()`) on its own ports (use `env.freePort()`), listening on 127.0.0.1 only.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, inject } from 'vitest';
import {
  SpdkClient,
  applyTopology,
  removeTopology,
  type AppliedTopology,
  type NvmfCreateTransportParams,
  type SpdkTopology,
} from '../../src/spdk/index.js';

/**
 * The NVMe/TCP transport the global setup creates. DIF insert/strip only affects bdevs with protection information
 * (those expose plain blocks to the host and make SPDK send several C2HData PDUs per read).
 */
export const SPDK_TRANSPORT: NvmfCreateTransportParams = { trtype: 'TCP', dif_insert_or_strip: true };

/** Serialisable description of the target, provided by global-setup.ts under the key 'spdkTarget'. */
export type SpdkTargetInfo =
  | {
      available: true;
      rpcSocket: string;
      pid: number;
      /** e.g. "SPDK v26.05". */
      version: string;
      /** Path of the nvmf_tgt binary. */
      binary: string;
      startMs: number;
    }
  | { available: false; reason: string };

declare module 'vitest' {
  export interface ProvidedContext {
    spdkTarget: SpdkTargetInfo;
  }
}

/** What an SPDK test gets. */
export type SpdkTestEnv = Omit<Extract<SpdkTargetInfo, { available: true }>, 'available'> & {
  /** Address every listener uses: '127.0.0.1'. */
  host: string;
  /** A new RPC connection to the target (close it when done). */
  rpc(): Promise<SpdkClient>;
  /** A TCP port on 127.0.0.1 that nothing listens on right now. */
  freePort(): Promise<number>;
  /** A subsystem NQN no other test uses: nqn.2016-06.io.nvmeof-test:<tag>-<random>. */
  uniqueNqn(tag: string): string;
};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function uniqueNqn(tag: string): string {
  return `nqn.2016-06.io.nvmeof-test:${tag}-${randomBytes(4).toString('hex')}`;
}

/** The SPDK target provided by the global setup, or null when there is none (the setup printed why, once). */
export function spdkTargetFromInject(): SpdkTestEnv | null {
  let info: SpdkTargetInfo | undefined;
  try {
    info = inject('spdkTarget');
  } catch {
    info = undefined;
  }
  if (!info || !info.available) return null;
  const { available: _available, ...rest } = info;
  return {
    ...rest,
    host: '127.0.0.1',
    rpc: () => SpdkClient.connect({ socketPath: rest.rpcSocket }),
    freePort,
    uniqueNqn,
  };
}

/** Stand-in passed to skipped suites, so their bodies can read fields while being collected. */
const UNAVAILABLE: SpdkTestEnv = {
  rpcSocket: '',
  pid: 0,
  version: '',
  binary: '',
  startMs: 0,
  host: '127.0.0.1',
  rpc: () => Promise.reject(new Error('SPDK target unavailable')),
  freePort,
  uniqueNqn,
};

/**
 * `describe` for tests against SPDK: `fn` receives the target. Without a target the suite is skipped (its tests are
 * reported as skipped; `fn` still runs for collection, with a stand-in target).
 */
export function describeSpdk(name: string, fn: (env: SpdkTestEnv) => void): void {
  const env = spdkTargetFromInject();
  if (env) describe(name, () => fn(env));
  else describe.skip(name, () => fn(UNAVAILABLE));
}

/** What useSpdkTopology() hands to the tests once beforeAll has run. */
export interface SpdkTopologyHandle {
  /** RPC connection kept open for the file's tests. */
  client: SpdkClient;
  topology: SpdkTopology;
  applied: AppliedTopology;
}

/**
 * Registers beforeAll/afterAll hooks that build `make()`'s topology (call inside a describeSpdk body) and remove it
 * afterwards. Read the handle's fields inside tests or later hooks.
 */
export function useSpdkTopology(env: SpdkTestEnv, make: () => SpdkTopology | Promise<SpdkTopology>): SpdkTopologyHandle {
  const handle = {} as SpdkTopologyHandle;
  beforeAll(async () => {
    handle.client = await env.rpc();
    handle.topology = await make();
    handle.applied = await applyWithCleanup(handle.client, handle.topology);
  });
  afterAll(async () => {
    if (!handle.client) return;
    try {
      if (handle.topology) await removeQuietly(handle.client, handle.topology);
    } finally {
      await handle.client.close();
    }
  });
  return handle;
}

async function applyWithCleanup(client: SpdkClient, t: SpdkTopology): Promise<AppliedTopology> {
  try {
    return await applyTopology(client, t);
  } catch (e) {
    await removeQuietly(client, t);
    throw e;
  }
}

async function removeQuietly(client: SpdkClient, t: SpdkTopology): Promise<void> {
  await removeTopology(client, t).catch((e: unknown) => console.warn(`SPDK topology clean-up: ${(e as Error).message}`));
}
