/**
 * Block I/O against SPDK's nvmf_tgt: verified writes and reads on 512-byte and 4096-byte namespaces, with and without
 * header and data digests; reads that SPDK answers with several C2HData PDUs (namespaces with protection information
 * that the transport strips, so each block is its own buffer segment), observed on the wire through a framing proxy;
 * many commands in flight on several queues.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, type Controller, type Namespace } from '../../src/index.js';
import type { SpdkTopology } from '../../src/spdk/index.js';
import { describeSpdk, useSpdkTopology } from './env.js';
import { startPduProxy, PDU_C2H_DATA, type C2HRecord, type PduProxy } from './pdu-proxy.js';

/** One read's data transfer as seen on the wire: its C2HData PDUs. */
interface Transfer {
  conn: number;
  cccid: number;
  pdus: C2HRecord[];
}

/** Groups C2HData records into per-command transfers (a transfer starts at DATAO 0 and ends with LAST_PDU). */
function transfers(records: readonly C2HRecord[]): Transfer[] {
  const open = new Map<string, Transfer>();
  const done: Transfer[] = [];
  for (const r of records) {
    const key = `${r.conn}/${r.cccid}`;
    let t = open.get(key);
    if (r.datao === 0 || !t) {
      expect(r.datao, `transfer of cccid ${r.cccid} must start at offset 0`).toBe(0);
      t = { conn: r.conn, cccid: r.cccid, pdus: [] };
      open.set(key, t);
    }
    t.pdus.push(r);
    if (r.last) {
      done.push(t);
      open.delete(key);
    }
  }
  expect(open.size, 'every transfer ends with LAST_PDU').toBe(0);
  return done;
}

describeSpdk('SPDK nvmf_tgt: block I/O, digests and C2HData splitting', (env) => {
  let nqn = '';
  let port = 0;
  const tag = randomBytes(3).toString('hex');
  const handle = useSpdkTopology(env, async (): Promise<SpdkTopology> => {
    nqn = env.uniqueNqn('io');
    port = await env.freePort();
    return {
      bdevs: [
        { type: 'malloc', name: `io_m512_${tag}`, sizeMiB: 64, blockSize: 512 },
        { type: 'malloc', name: `io_m4k_${tag}`, sizeMiB: 64, blockSize: 4096 },
        // Protection information type 1, interleaved 8-byte metadata: the transport strips it on reads.
        { type: 'malloc', name: `io_d512_${tag}`, sizeMiB: 8, blockSize: 512, mdSize: 8, mdInterleave: true, difType: 1 },
        { type: 'malloc', name: `io_d4k_${tag}`, sizeMiB: 16, blockSize: 4096, mdSize: 8, mdInterleave: true, difType: 1 },
      ],
      subsystems: [
        {
          nqn,
          serial: 'NVMEOFIO0001',
          namespaces: [
            { bdev: `io_m512_${tag}`, nsid: 1 },
            { bdev: `io_m4k_${tag}`, nsid: 2 },
            { bdev: `io_d512_${tag}`, nsid: 3 },
            { bdev: `io_d4k_${tag}`, nsid: 4 },
          ],
          listeners: [{ traddr: env.host, trsvcid: port }],
        },
      ],
    };
  });

  let ctrl: Controller;
  let proxy: PduProxy;
  beforeAll(async () => {
    ctrl = await connect({ host: env.host, port, subnqn: nqn, ioQueues: 4, queueSize: 32 });
    proxy = await startPduProxy(port);
  });
  afterAll(async () => {
    await ctrl?.close();
    await proxy?.close();
  });

  it('identifies the namespaces: 512 and 4096-byte blocks, protection information stripped', async () => {
    expect(handle.applied.subsystems[0]?.namespaces.map((n) => n.nsid)).toEqual([1, 2, 3, 4]);
    expect(ctrl.identity.subnqn).toBe(nqn);
    expect(ctrl.identity.sn).toBe('NVMEOFIO0001');
    // SPDK's default max_io_size (128 KiB) becomes MDTS; larger requests are split by the host.
    expect(ctrl.maxTransferBytes).toBe(128 * 1024);
    expect(await ctrl.activeNamespaceIds()).toEqual([1, 2, 3, 4]);
    const expected: Array<[number, number, bigint]> = [
      [1, 512, 131072n],
      [2, 4096, 16384n],
      [3, 512, 16384n],
      [4, 4096, 4096n],
    ];
    for (const [nsid, bs, blocks] of expected) {
      const ns = await ctrl.namespace(nsid);
      expect(ns.blockSize, `nsid ${nsid}`).toBe(bs);
      expect(ns.blocks, `nsid ${nsid}`).toBe(blocks);
      expect(ns.identity.lbaf[ns.identity.flbas & 0xf]?.ms ?? 0, `nsid ${nsid} metadata`).toBe(0);
    }
  });

  for (const digests of [false, true]) {
    it(`writes and reads back random data from 1 block to 1 MiB (digests ${digests ? 'on' : 'off'})`, async () => {
      const c = digests ? await connect({ host: env.host, port, subnqn: nqn, ioQueues: 2, headerDigest: true, dataDigest: true }) : ctrl;
      try {
        expect(c.digests).toEqual({ header: digests, data: digests });
        for (const nsid of [1, 2]) {
          const ns = await c.namespace(nsid);
          // 1 block, SPDK's 4 KiB in-capsule size, just above it (R2T), the 128 KiB MDTS, above MDTS, 1 MiB.
          const sizes = [ns.blockSize, 4096, 8192, 65536 + ns.blockSize, 131072, 131072 + 4096, 1024 * 1024];
          let lba = digests ? ns.blocks / 2n : 0n;
          for (const size of sizes) {
            const bytes = Math.ceil(size / ns.blockSize) * ns.blockSize;
            const data = randomBytes(bytes);
            await ns.write(lba, data);
            const back = await ns.read(lba, bytes / ns.blockSize);
            expect(Buffer.compare(back, data), `${bytes} bytes at LBA ${lba} on nsid ${nsid}`).toBe(0);
            lba += BigInt(bytes / ns.blockSize);
          }
        }
      } finally {
        if (c !== ctrl) await c.close();
      }
    });
  }

  for (const digests of [false, true]) {
    it(`receives reads split into several C2HData PDUs and reassembles them (digests ${digests ? 'on' : 'off'})`, async () => {
      const c = await connect({ host: '127.0.0.1', port: proxy.port, subnqn: nqn, ioQueues: 2, headerDigest: digests, dataDigest: digests });
      try {
        for (const nsid of [3, 4]) {
          const ns = await c.namespace(nsid);
          const bytes = 1024 * 1024; // eight 128 KiB commands
          const data = randomBytes(bytes);
          const lba = digests ? 64n : 0n;
          // Written without digests: SPDK v26.05 fails DIF insertion on H2C data that carries a data digest (it
          // includes the 4 digest bytes in the length it protects, logs "DIF generate failed" and quiesces the queue).
          await (await ctrl.namespace(nsid)).write(lba, data);
          proxy.reset();
          const back = await ns.read(lba, bytes / ns.blockSize);
          expect(Buffer.compare(back, data), `nsid ${nsid}`).toBe(0);
          const ts = transfers(proxy.c2h);
          expect(ts.length, `nsid ${nsid}: one transfer per read command`).toBe(8);
          for (const t of ts) {
            expect(t.pdus.length, `nsid ${nsid} cccid ${t.cccid}: C2HData PDUs`).toBeGreaterThan(1);
            let next = 0;
            for (const [i, p] of t.pdus.entries()) {
              expect(p.datao).toBe(next);
              next += p.datal;
              expect(p.last).toBe(i === t.pdus.length - 1);
              if (!p.last) expect(p.success).toBe(false);
            }
            expect(next).toBe(128 * 1024);
          }
          expect(proxy.countsByType.get(PDU_C2H_DATA)).toBe(ts.reduce((n, t) => n + t.pdus.length, 0));
        }
      } finally {
        await c.close();
      }
    });
  }

  it('reads plain namespaces through the proxy too (one transfer per command)', async () => {
    const c = await connect({ host: '127.0.0.1', port: proxy.port, subnqn: nqn, ioQueues: 1 });
    try {
      const ns = await c.namespace(2);
      const data = randomBytes(512 * 1024);
      await ns.write(1000n, data);
      proxy.reset();
      expect(Buffer.compare(await ns.read(1000n, data.length / 4096), data)).toBe(0);
      const ts = transfers(proxy.c2h);
      expect(ts).toHaveLength(4);
      for (const t of ts) expect(t.pdus.reduce((n, p) => n + p.datal, 0)).toBe(128 * 1024);
    } finally {
      await c.close();
    }
  });

  it('keeps 4 I/O queues x 32 commands in flight with verified writes and reads', async () => {
    const ns: Namespace = await ctrl.namespace(1);
    const workers = 128;
    const regionBlocks = 64; // 32 KiB per worker, well inside the namespace
    const base = 4096n;
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        const lba = base + BigInt(w * regionBlocks);
        for (let i = 0; i < 4; i++) {
          const data = randomBytes(regionBlocks * 512);
          await ns.write(lba, data);
          const back = await ns.read(lba, regionBlocks);
          expect(Buffer.compare(back, data), `worker ${w} round ${i}`).toBe(0);
        }
      }),
    );
  });
});
