/**
 * nvmeof's NBD server in front of SPDK nvmf_tgt: a qemu-img round trip through an export of a malloc bdev, and a
 * multipath export whose active path SPDK makes ANA inaccessible in the middle of an nbdcopy run, which the client
 * never sees.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, openMultipath, serveNbd, type Controller } from '../../src/index.js';
import { listenAddress, type SpdkTopology } from '../../src/spdk/index.js';
import { missingClients, run } from '../../test/helpers/clients.js';
import { waitFor } from '../../test/helpers/wait.js';
import { describeSpdk, useSpdkTopology } from './env.js';

describeSpdk('SPDK nvmf_tgt: NBD export', (env) => {
  const tag = randomBytes(3).toString('hex');
  let nqn = '';
  let p1 = 0;
  let p2 = 0;
  const handle = useSpdkTopology(env, async (): Promise<SpdkTopology> => {
    nqn = env.uniqueNqn('nbd');
    [p1, p2] = [await env.freePort(), await env.freePort()];
    return {
      bdevs: [{ type: 'malloc', name: `nbd_m_${tag}`, sizeMiB: 64, blockSize: 512 }],
      subsystems: [
        {
          nqn,
          anaReporting: true,
          namespaces: [{ bdev: `nbd_m_${tag}`, nsid: 1, anaGroup: 1 }],
          listeners: [
            { traddr: env.host, trsvcid: p1, anaState: 'optimized' },
            { traddr: env.host, trsvcid: p2, anaState: 'non_optimized' },
          ],
        },
      ],
    };
  });
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nvmeof-nbd-spdk-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('qemu-img convert round trip and nbdinfo through an export of one controller', async (ctx) => {
    if (missingClients('qemu-img', 'nbdinfo')) ctx.skip();
    let ctrl: Controller | undefined;
    const server = await (async () => {
      ctrl = await connect({ host: env.host, port: p1, subnqn: nqn, ioQueues: 2 });
      return serveNbd({ listen: { port: 0 }, exports: [{ name: 'm', namespace: await ctrl.namespace(1) }] });
    })();
    try {
      const uri = `nbd://127.0.0.1:${(server.address as { port: number }).port}/m`;
      const e = (JSON.parse(await run('nbdinfo', ['--json', uri])) as { exports: Record<string, unknown>[] }).exports[0]!;
      expect(e).toMatchObject({ 'export-size': 64 * 1024 * 1024, block_size_minimum: 512, can_multi_conn: true });
      const src = randomBytes(64 * 1024 * 1024);
      writeFileSync(join(dir, 'in.raw'), src);
      await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', join(dir, 'in.raw'), uri]);
      await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, join(dir, 'out.raw')]);
      expect(readFileSync(join(dir, 'out.raw')).equals(src)).toBe(true);
    } finally {
      await server.close();
      await ctrl?.close();
    }
  });

  it('a multipath export rides through its active path going ANA inaccessible mid-copy', async (ctx) => {
    if (missingClients('nbdcopy')) ctx.skip();
    const m = await openMultipath({ subnqn: nqn, nsid: 1, policy: 'failover', ioQueues: 2, paths: [{ host: env.host, port: p1 }, { host: env.host, port: p2 }] });
    const server = await serveNbd({ listen: { port: 0 }, exports: [{ name: 'mp', namespace: m }] });
    try {
      const uri = `nbd://127.0.0.1:${(server.address as { port: number }).port}/mp`;
      const src = randomBytes(64 * 1024 * 1024);
      writeFileSync(join(dir, 'mp-in.raw'), src);
      const [a, b] = m.paths;
      const before = a!.health().completed;
      const copy = run('nbdcopy', ['--connections=1', '--requests=2', '--request-size=65536', join(dir, 'mp-in.raw'), uri]);
      let copied = false;
      void copy.then(() => (copied = true), () => (copied = true));
      await waitFor(() => a!.health().completed > before + 50 || copied, 30_000, 'writes through path 1');
      expect(copied).toBe(false);
      await handle.client.nvmfSubsystemListenerSetAnaState({ nqn, listen_address: listenAddress({ traddr: env.host, trsvcid: p1 }), ana_state: 'inaccessible' });
      await copy;
      expect(b!.health().completed).toBeGreaterThan(0);
      await run('nbdcopy', [uri, join(dir, 'mp-out.raw')]);
      expect(readFileSync(join(dir, 'mp-out.raw')).equals(src)).toBe(true);
    } finally {
      await server.close();
      await m.close();
      await handle.client.nvmfSubsystemListenerSetAnaState({ nqn, listen_address: listenAddress({ traddr: env.host, trsvcid: p1 }), ana_state: 'optimized' }).catch(() => {});
    }
  });
});
