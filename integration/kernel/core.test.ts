/**
 * The core initiator against the Linux kernel NVMe/TCP target (nvmet-tcp, booted under QEMU by global-setup.ts):
 * connect, identify, verified block I/O on every data path with and without digests, pipelining across queues,
 * status errors, connect failures, keep-alive and graceful close.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { connect, ErrorCode, NvmeStatusError, type Controller, type Namespace } from '../../src/index.js';
import { QueuePair } from '../../src/transport/index.js';
import * as cmds from '../../src/protocol/commands.js';
import { describeKernel, itFull } from './env.js';

describeKernel('kernel nvmet: core initiator', (target) => {
  let ctrl: Controller;
  let ns1: Namespace;
  let ns2: Namespace;

  beforeAll(async () => {
    ctrl = await connect({ host: target.host, port: target.port, subnqn: target.openNqn, ioQueues: 4, queueSize: 32 });
    ns1 = await ctrl.namespace(1);
    ns2 = await ctrl.namespace(2);
  });
  afterAll(async () => {
    await ctrl?.close();
  });

  it('connects and identifies the controller and its namespaces', async () => {
    expect(ctrl.state).toBe('live');
    expect(ctrl.cntlid).toBeGreaterThan(0);
    expect(ctrl.identity.subnqn).toBe(target.openNqn);
    expect(ctrl.identity.cntlid).toBe(ctrl.cntlid);
    expect(ctrl.identity.ioccsz).toBeGreaterThanOrEqual(4);
    expect(ctrl.identity.mn.length).toBeGreaterThan(0);
    expect(ctrl.version.major).toBeGreaterThanOrEqual(1);
    expect(ctrl.cap.mqes).toBeGreaterThan(0);
    expect(ctrl.ioQueueCount).toBe(4);
    expect(await ctrl.activeNamespaceIds()).toEqual([1, 2]);
    // ns 1: brd RAM disk, 512-byte blocks, 64 MiB; ns 2: file on tmpfs, 4096-byte blocks, 16 MiB.
    expect(ns1.blockSize).toBe(512);
    expect(ns1.sizeBytes).toBe(64n * 1024n * 1024n);
    expect(ns2.blockSize).toBe(4096);
    expect(ns2.sizeBytes).toBe(16n * 1024n * 1024n);
    expect(ns1.uuid ?? ns1.nguid).toBeTruthy();
  });

  for (const digests of [false, true]) {
    it(`writes and reads back random data from 1 block to 1 MiB (digests ${digests ? 'on' : 'off'})`, async () => {
      const c = digests
        ? await connect({ host: target.host, port: target.port, subnqn: target.openNqn, ioQueues: 2, headerDigest: true, dataDigest: true })
        : ctrl;
      try {
        expect(c.digests).toEqual({ header: digests, data: digests });
        for (const ns of digests ? [await c.namespace(1), await c.namespace(2)] : [ns1, ns2]) {
          // 1 block, in-capsule sized, just above the in-capsule limit (R2T), many PDUs, 1 MiB.
          const sizes = [ns.blockSize, 4096, 8192, 16384, 65536 + ns.blockSize, 131072, 1024 * 1024];
          let lba = digests ? ns.blocks / 2n : 0n;
          for (const size of sizes) {
            const bytes = Math.ceil(size / ns.blockSize) * ns.blockSize;
            const data = randomBytes(bytes);
            await ns.write(lba, data);
            const back = await ns.read(lba, bytes / ns.blockSize);
            expect(back.length).toBe(bytes);
            expect(Buffer.compare(back, data), `${bytes} bytes at LBA ${lba} on nsid ${ns.nsid}`).toBe(0);
            lba += BigInt(bytes / ns.blockSize);
          }
        }
      } finally {
        if (c !== ctrl) await c.close();
      }
    });
  }

  itFull('keeps 4 I/O queues x 32 commands in flight with verified random writes and reads', async () => {
    const workers = ctrl.ioQueueCount * 32;
    const regionBlocks = Number(ns1.blocks) / workers; // each worker owns a region: no overlapping writes
    let maxInFlight = 0;
    let inFlight = 0;
    let ops = 0;
    const track = async <T>(p: Promise<T>): Promise<T> => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        return await p;
      } finally {
        inFlight--;
      }
    };
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        for (let i = 0; i < 6; i++) {
          const blocks = 1 + Math.floor(Math.random() * 16);
          const lba = BigInt(w * regionBlocks + Math.floor(Math.random() * (regionBlocks - blocks)));
          const data = randomBytes(blocks * ns1.blockSize);
          await track(ns1.write(lba, data));
          const back = await track(ns1.read(lba, blocks));
          expect(Buffer.compare(back, data)).toBe(0);
          ops += 2;
        }
      }),
    );
    expect(ops).toBe(workers * 12);
    expect(maxInFlight).toBe(workers);
  });

  itFull('fails a read past the end of the namespace: before sending, and with the status the target reports', async () => {
    await expect(ns2.read(ns2.blocks - 1n, 2)).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    // The same request sent raw reaches the target. Linux 6.1 nvmet's file backend (ns 2) range-checks the transfer
    // and completes it with the generic status Capacity Exceeded (SC 81h, from -ENOSPC); its block-device backend
    // (ns 1) lets the block layer fail it, which comes back as Internal Error. SPDK and the embedded target answer
    // LBA Out of Range (80h).
    const err = await ctrl.ioCommand(cmds.read({ nsid: 2, slba: ns2.blocks - 1n, nlb: 2, blockSize: ns2.blockSize })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NvmeStatusError);
    expect(err).toMatchObject({ code: ErrorCode.STATUS, sct: 0, sc: 0x81, statusName: 'Capacity Exceeded', opcode: 0x02, qid: expect.any(Number) });
    expect((err as Error).message).toMatch(/^Read on queue \d+ failed: Capacity Exceeded/);
    // The controller is still fine afterwards.
    expect((await ns2.read(0n, 1)).length).toBe(4096);
  });

  itFull('supports flush, write zeroes and deallocate; refuses commands ONCS does not list before sending', async () => {
    const lba = 100000n;
    const data = randomBytes(8 * 512);
    await ns1.write(lba, data);
    await ns1.flush();
    // Linux 6.1 nvmet advertises Write Zeroes and Dataset Management, not Compare or Verify.
    expect(ctrl.oncs).toMatchObject({ writeZeroes: true, dsm: true, compare: false });
    await ns1.writeZeroes(lba, 4);
    const z = await ns1.read(lba, 8);
    expect(z.subarray(0, 2048).every((b) => b === 0)).toBe(true);
    expect(Buffer.compare(z.subarray(2048), data.subarray(2048))).toBe(0);
    await ns1.deallocate([{ lba, blocks: 8 }, { lba: lba + 64n, blocks: 8 }]);
    await expect(ns1.compare(lba, data)).rejects.toMatchObject({ code: ErrorCode.UNSUPPORTED });
    if (!ctrl.oncs!.verify) await expect(ns1.verify(lba, 8)).rejects.toMatchObject({ code: ErrorCode.UNSUPPORTED });
    // Sent raw anyway, the target answers Invalid Command Opcode, named as such.
    const err = await ctrl.ioCommand(cmds.compare({ nsid: 1, slba: lba, data, blockSize: 512 })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.STATUS, sct: 0, sc: 0x01, statusName: 'Invalid Command Opcode' });
  });

  itFull('rejects a wrong subsystem NQN with a message naming it', async () => {
    const subnqn = 'nqn.2014-08.org.nvmexpress:nvmf-test-does-not-exist';
    const err = await connect({ host: target.host, port: target.port, subnqn, ioQueues: 0 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.STATUS, sct: 1 });
    expect((err as Error).message).toContain(subnqn);
  });

  itFull('rejects a host that is not on the allowed list, naming host and subsystem, and admits the allowed one', async () => {
    const hostnqn = 'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555';
    const err = await connect({ host: target.host, port: target.port, subnqn: target.restrictedNqn, hostnqn, ioQueues: 0 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.STATUS, sct: 1, sc: 0x84 });
    expect((err as Error).message).toContain(hostnqn);
    expect((err as Error).message).toContain(target.restrictedNqn);
    expect((err as Error).message).toMatch(/not allowed/i);
    const ok = await connect({ host: target.host, port: target.port, subnqn: target.restrictedNqn, hostnqn: target.allowedHostNqn, ioQueues: 1 });
    try {
      expect(ok.hostnqn).toBe(target.allowedHostNqn);
      const ns = await ok.namespace(1);
      const data = randomBytes(512);
      await ns.write(0n, data);
      expect(Buffer.compare(await ns.read(0n, 1), data)).toBe(0);
    } finally {
      await ok.close();
    }
  });

  itFull('keeps an idle connection alive past KATO with keep-alive', async () => {
    const c = await connect({ host: target.host, port: target.port, subnqn: target.openNqn, ioQueues: 1, kato: 1000 });
    try {
      await new Promise((r) => setTimeout(r, 3500));
      expect(c.state).toBe('live');
      const ns = await c.namespace(1);
      expect((await ns.read(0n, 1)).length).toBe(512);
    } finally {
      await c.close();
    }
  });

  itFull('is dropped by the target past KATO when no keep-alive is sent (so the test above means something)', async () => {
    const qp = await QueuePair.open({ host: target.host, port: target.port, qid: 0, depth: 4 });
    const hostid = '22222222-3333-4444-8555-666666666666';
    await qp.submit(cmds.connect({ qid: 0, sqsize: 8, kato: 1000, hostid, subnqn: target.openNqn, hostnqn: `nqn.2014-08.org.nvmexpress:uuid:${hostid}` }));
    const t0 = Date.now();
    await Promise.race([qp.closed, new Promise((r) => setTimeout(r, 15000))]);
    expect(qp.state).toBe('closed');
    expect(Date.now() - t0).toBeLessThan(15000);
  });

  itFull('closes gracefully: drains I/O, shuts the controller down, and is idempotent', async () => {
    const c = await connect({ host: target.host, port: target.port, subnqn: target.openNqn, ioQueues: 2 });
    const ns = await c.namespace(2);
    const pending = Array.from({ length: 16 }, (_, i) => ns.write(BigInt(i), randomBytes(4096)));
    const closing = c.close();
    await Promise.all(pending); // in-flight writes complete during close
    await closing;
    expect(c.state).toBe('closed');
    await c.close();
    await expect(ns.read(0n, 1)).rejects.toMatchObject({ code: ErrorCode.INVALID_STATE });
  });
});
