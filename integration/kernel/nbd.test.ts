/**
 * nvmeof nbd's server in front of the Linux kernel target: qemu-img convert into and out of an export of namespace 2
 * (a file on tmpfs with 4096-byte blocks), qemu-img compare, and what nbdinfo sees.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, serveNbd, type Controller, type Namespace, type NbdServer } from '../../src/index.js';
import { missingClients, run } from '../../test/helpers/clients.js';
import { describeKernel } from './env.js';

describeKernel('kernel nvmet: NBD export', (target) => {
  let ctrl: Controller;
  let ns: Namespace;
  let server: NbdServer;
  let uri = '';
  let dir = '';

  beforeAll(async () => {
    ctrl = await connect({ host: target.host, port: target.port, subnqn: target.openNqn, ioQueues: 2, queueSize: 32 });
    ns = await ctrl.namespace(2);
    server = await serveNbd({ listen: { port: 0 }, exports: [{ name: 'ns2', namespace: ns }] });
    uri = `nbd://127.0.0.1:${(server.address as { port: number }).port}/ns2`;
    dir = mkdtempSync(join(tmpdir(), 'nvmeof-nbd-kernel-'));
  });
  afterAll(async () => {
    await server?.close();
    await ctrl?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('nbdinfo sees the namespace: size, 4096-byte minimum block, the kernel model in the description', async (ctx) => {
    if (missingClients('nbdinfo')) ctx.skip();
    const e = (JSON.parse(await run('nbdinfo', ['--json', uri])) as { exports: Record<string, unknown>[] }).exports[0]!;
    expect(e['export-size']).toBe(Number(ns.sizeBytes));
    expect(e.block_size_minimum).toBe(4096);
    expect(e.is_read_only).toBe(false);
    expect(e.can_flush).toBe(true);
    expect(String(e.description)).toContain(`${target.openNqn}, nsid 2`);
    expect(String(e.description)).toContain(ctrl.identity.mn);
  });

  it('qemu-img convert round trip through the export, and qemu-img compare', async (ctx) => {
    if (missingClients('qemu-img')) ctx.skip();
    const src = randomBytes(Number(ns.sizeBytes));
    writeFileSync(join(dir, 'in.raw'), src);
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', join(dir, 'in.raw'), uri]);
    // What the kernel target holds, read without NBD in between.
    expect((await ns.read(0, Number(ns.blocks))).equals(src)).toBe(true);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, join(dir, 'out.raw')]);
    expect(readFileSync(join(dir, 'out.raw')).equals(src)).toBe(true);
    expect(await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', join(dir, 'in.raw'), uri])).toMatch(/Images are identical/);
  });
});
