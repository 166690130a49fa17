/**
 * Block I/O benchmark: IOPS, MB/s and latency percentiles for
 *   - 4 KiB random read at queue depth 1 and 32
 *   - 128 KiB sequential read and write
 * against a target given on the command line / environment, or the QEMU kernel nvmet target by default.
 *
 *   npm run bench                                    # boots the QEMU kernel target
 *   npm run bench -- --host 127.0.0.1 --port 4420 --nqn nqn.2016-06.io.spdk:cnode1 [--nsid 1]
 *   NVMEOF_BENCH_HOST=... NVMEOF_BENCH_PORT=... NVMEOF_BENCH_NQN=... npm run bench
 *
 * Options: --seconds N (per workload, default 5), --queues N (default 2), --digest (header+data digests),
 * --json (machine-readable output). This is a measuring tool: it never passes or fails on time.
 */
import { parseArgs } from 'node:util';
import { randomFillSync } from 'node:crypto';
import { connect, type Namespace } from '../../src/index.js';

interface Result {
  workload: string;
  ops: number;
  seconds: number;
  iops: number;
  mbps: number;
  p50us: number;
  p99us: number;
  p999us: number;
  maxus: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length));
  return sorted[i]!;
}

async function run(
  name: string,
  ns: Namespace,
  opts: { depth: number; blockBytes: number; seconds: number; pattern: 'random' | 'sequential'; op: 'read' | 'write' },
): Promise<Result> {
  const blocksPerIo = opts.blockBytes / ns.blockSize;
  // Keep the working set inside the namespace and at most 256 MiB.
  const span = Number(ns.blocks < 524288n * 1024n ? ns.blocks : 524288n * 1024n);
  const slots = Math.max(1, Math.floor(Math.min(span, (256 * 1024 * 1024) / ns.blockSize) / blocksPerIo));
  const payload = Buffer.alloc(opts.blockBytes);
  randomFillSync(payload);
  const bufs = Array.from({ length: opts.depth }, () => Buffer.allocUnsafe(opts.blockBytes));
  const lat: number[] = [];
  let next = 0;
  let ops = 0;
  const deadline = performance.now() + opts.seconds * 1000;
  const start = performance.now();
  const worker = async (w: number) => {
    while (performance.now() < deadline) {
      const slot = opts.pattern === 'random' ? Math.floor(Math.random() * slots) : next++ % slots;
      const lba = BigInt(slot * blocksPerIo);
      const t0 = performance.now();
      if (opts.op === 'read') await ns.readInto(lba, bufs[w]!);
      else await ns.write(lba, payload);
      lat.push(performance.now() - t0);
      ops++;
    }
  };
  await Promise.all(Array.from({ length: opts.depth }, (_, w) => worker(w)));
  const seconds = (performance.now() - start) / 1000;
  const sorted = Float64Array.from(lat).sort();
  return {
    workload: name,
    ops,
    seconds,
    iops: ops / seconds,
    mbps: (ops * opts.blockBytes) / seconds / 1e6,
    p50us: percentile(sorted, 50) * 1000,
    p99us: percentile(sorted, 99) * 1000,
    p999us: percentile(sorted, 99.9) * 1000,
    maxus: (sorted[sorted.length - 1] ?? 0) * 1000,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      nqn: { type: 'string' },
      nsid: { type: 'string' },
      seconds: { type: 'string' },
      queues: { type: 'string' },
      digest: { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  let host = values.host ?? process.env.NVMEOF_BENCH_HOST;
  let port = Number(values.port ?? process.env.NVMEOF_BENCH_PORT ?? 4420);
  let nqn = values.nqn ?? process.env.NVMEOF_BENCH_NQN;
  const nsid = Number(values.nsid ?? process.env.NVMEOF_BENCH_NSID ?? 1);
  const seconds = Number(values.seconds ?? 5);
  let stop: (() => Promise<void>) | undefined;
  if (!host) {
    const { startKernelTarget } = await import('../kernel/qemu-target.js');
    process.stderr.write('no target given: booting the QEMU kernel nvmet target...\n');
    const t = await startKernelTarget();
    host = t.host;
    port = t.port;
    nqn = t.openNqn;
    stop = () => t.stop();
  }
  if (!nqn) throw new Error('--nqn (or NVMEOF_BENCH_NQN) is required with --host');
  try {
    const ctrl = await connect({
      host,
      port,
      subnqn: nqn,
      ioQueues: Number(values.queues ?? 2),
      queueSize: 64,
      headerDigest: !!values.digest,
      dataDigest: !!values.digest,
    });
    try {
      const ns = await ctrl.namespace(nsid);
      const results: Result[] = [];
      // Make sure the region we read has been written once (ramdisks read zeroes fast either way).
      results.push(await run('128KiB seq write QD8', ns, { depth: 8, blockBytes: 131072, seconds, pattern: 'sequential', op: 'write' }));
      results.push(await run('128KiB seq read QD8', ns, { depth: 8, blockBytes: 131072, seconds, pattern: 'sequential', op: 'read' }));
      results.push(await run('4KiB rand read QD1', ns, { depth: 1, blockBytes: 4096, seconds, pattern: 'random', op: 'read' }));
      results.push(await run('4KiB rand read QD32', ns, { depth: 32, blockBytes: 4096, seconds, pattern: 'random', op: 'read' }));
      if (values.json) {
        process.stdout.write(JSON.stringify({ target: { host, port, nqn, nsid }, digests: !!values.digest, results }, null, 2) + '\n');
      } else {
        process.stdout.write(`target ${host}:${port} ${nqn} nsid ${nsid} (block ${ns.blockSize} B), digests ${values.digest ? 'on' : 'off'}, ${ctrl.ioQueueCount} I/O queues\n`);
        const head = ['workload', 'IOPS', 'MB/s', 'p50 us', 'p99 us', 'p99.9 us', 'max us'];
        const rows = results.map((r) => [r.workload, r.iops.toFixed(0), r.mbps.toFixed(1), r.p50us.toFixed(0), r.p99us.toFixed(0), r.p999us.toFixed(0), r.maxus.toFixed(0)]);
        const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
        const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
        process.stdout.write(line(head) + '\n' + rows.map(line).join('\n') + '\n');
      }
    } finally {
      await ctrl.close();
    }
  } finally {
    await stop?.();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
