/**
 * perf: a small load generator. Queue-depth workers issue one I/O at a time each (random or sequential LBAs, reads,
 * writes or a mix) for a fixed time; latencies go into a log-linear histogram; the result is IOPS, MB/s and latency
 * percentiles.
 */
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';
import { TARGET_OPTIONS, UsageError, namespaceOption, type Values } from './args.js';
import { withController, type Command } from './context.js';
import { Progress, formatTable, mbPerSec } from './output.js';

/**
 * Latency histogram with about 1.6% resolution: values in 100 ns ticks; ticks below 128 have one bucket each, every
 * power of two above that is split into 64 buckets.
 */
export class LatencyHistogram {
  private readonly counts = new Float64Array(128 + 25 * 64);
  count = 0;
  private sumMs = 0;
  private minMs = Infinity;
  private maxMs = 0;

  /** Record one latency in milliseconds. */
  record(ms: number): void {
    const t = Math.min(0x7fffffff, Math.max(0, Math.round(ms * 1e4)));
    this.counts[LatencyHistogram.index(t)]!++;
    this.count++;
    this.sumMs += ms;
    if (ms < this.minMs) this.minMs = ms;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  private static index(t: number): number {
    if (t < 128) return t;
    const e = 31 - Math.clz32(t);
    return 128 + (e - 7) * 64 + ((t >>> (e - 6)) & 63);
  }

  /** Middle of bucket `i`, in ticks. */
  private static value(i: number): number {
    if (i < 128) return i;
    const e = 7 + Math.floor((i - 128) / 64);
    const width = 2 ** (e - 6);
    return (64 + ((i - 128) % 64)) * width + width / 2;
  }

  /** The latency (ms) below which `p` percent of the samples fall; 0 without samples. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    if (p >= 100) return this.maxMs;
    const target = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= target) return Math.min(this.maxMs, Math.max(this.minMs, LatencyHistogram.value(i) / 1e4));
    }
    return this.maxMs;
  }

  get minimum(): number {
    return this.count === 0 ? 0 : this.minMs;
  }
  get maximum(): number {
    return this.maxMs;
  }
  get mean(): number {
    return this.count === 0 ? 0 : this.sumMs / this.count;
  }

  /** Add another histogram's samples. */
  merge(o: LatencyHistogram): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += o.counts[i]!;
    this.count += o.count;
    this.sumMs += o.sumMs;
    this.minMs = Math.min(this.minMs, o.minMs);
    this.maxMs = Math.max(this.maxMs, o.maxMs);
  }
}

/** Statistics of one operation type (latencies in microseconds). */
export interface OpStats {
  ios: number;
  iops: number;
  mbPerSec: number;
  latencyUs: { min: number; avg: number; p50: number; p99: number; p999: number; max: number };
}

function stats(h: LatencyHistogram, blockSize: number, ms: number): OpStats {
  const us = (x: number) => Number((x * 1000).toFixed(1));
  return {
    ios: h.count,
    iops: ms > 0 ? Number((h.count / (ms / 1000)).toFixed(1)) : 0,
    mbPerSec: Number(mbPerSec(h.count * blockSize, ms).toFixed(2)),
    latencyUs: { min: us(h.minimum), avg: us(h.mean), p50: us(h.percentile(50)), p99: us(h.percentile(99)), p999: us(h.percentile(99.9)), max: us(h.maximum) },
  };
}

function parseSeconds(v: Values): number {
  const s = v.str('time');
  if (s === undefined) return 10;
  const n = Number(s);
  if (!/^\d+(\.\d+)?$/.test(s.trim()) || !(n >= 0.1 && n <= 86_400)) throw new UsageError(`--time must be a number of seconds 0.1..86400, got "${s}"`, v.command);
  return n;
}

export const perfCommand: Command = {
  name: 'perf',
  summary: 'measure IOPS, throughput and latency percentiles on a namespace',
  usage: 'perf -a ADDR -n NQN [-N NSID] [--rw read|write|randrw] [--pattern rand|seq] [--queue-depth N] [--block-size B] [--time SEC] [options]',
  description:
    'Keeps --queue-depth commands in flight against one namespace for --time seconds and prints, per operation, the ' +
    'I/Os completed, IOPS, MB/s (10^6 bytes) and latency (min, average, p50, p99, p99.9, max). --rw randrw mixes reads ' +
    'and writes (--rwmixread percent reads); --pattern chooses random or sequential LBAs (sequential wraps at the end). ' +
    'Writes destroy the data on the namespace. Live counters are shown on stderr when it is a terminal; Ctrl-C stops ' +
    'early and still prints the summary.',
  options: {
    ...namespaceOption('1'),
    rw: { type: 'string', arg: 'OP', help: 'read, write or randrw (mixed)', def: 'read' },
    pattern: { type: 'string', arg: 'P', help: 'rand or seq', def: 'rand' },
    rwmixread: { type: 'string', arg: 'PCT', help: 'percent of reads with --rw randrw', def: '50' },
    'queue-depth': { type: 'string', arg: 'N', help: 'commands in flight', def: '32' },
    'block-size': { type: 'string', arg: 'BYTES', help: 'bytes per I/O, a multiple of the LBA size (k/m suffixes)', def: '4k' },
    time: { type: 'string', arg: 'SEC', help: 'how long to run, seconds', def: '10' },
  },
  connection: TARGET_OPTIONS,
  examples: [
    'nvmeof perf -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 --queue-depth 64 --time 30',
    'nvmeof perf -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 --rw randrw --rwmixread 70 --block-size 16k --nr-io-queues 8 -o json',
  ],
  async run(ctx, v) {
    const nsid = v.int('namespace-id', 1, 0xfffffffe, 1);
    const rw = v.choice('rw', ['read', 'write', 'randrw'] as const, 'read');
    const pattern = v.choice('pattern', ['rand', 'seq'] as const, 'rand');
    const mix = v.int('rwmixread', 0, 100, 50);
    const qd = v.int('queue-depth', 1, 65536, 32);
    const blockSize = v.size('block-size', 512, 64 * 1024 * 1024, 4096)!;
    const seconds = parseSeconds(v);
    const result = await withController(ctx, v, { events: false }, async (ctrl) => {
      const ns = await ctrl.namespace(nsid);
      if (blockSize % ns.blockSize !== 0) throw new UsageError(`--block-size ${blockSize} is not a multiple of the ${ns.blockSize}-byte LBA size of namespace ${nsid}`, v.command);
      const nlb = blockSize / ns.blockSize;
      const slots = Number(ns.blocks / BigInt(nlb));
      if (slots < 1) throw new UsageError(`--block-size ${blockSize} is larger than namespace ${nsid}`, v.command);
      const hist = { read: new LatencyHistogram(), write: new LatencyHistogram() };
      let seq = 0;
      let stopped = false;
      let failure: unknown;
      const started = performance.now();
      const deadline = started + seconds * 1000;
      const stop = () => {
        stopped = true;
      };
      ctx.signal.addEventListener('abort', stop, { once: true });
      const progress = new Progress(ctx.io.stderr, undefined, 'perf', 0);
      let last = { t: started, r: 0, w: 0 };
      const ticker = setInterval(() => {
        const t = performance.now();
        const dt = (t - last.t) / 1000;
        const r = hist.read.count - last.r;
        const w = hist.write.count - last.w;
        last = { t, r: hist.read.count, w: hist.write.count };
        const part = (name: string, n: number) => `${name} ${Math.round(n / dt).toLocaleString('en-US')} IOPS ${mbPerSec(n * blockSize, dt * 1000).toFixed(1)} MB/s`;
        const parts = [rw !== 'write' ? part('read', r) : '', rw !== 'read' ? part('write', w) : ''].filter(Boolean);
        progress.status(`perf ${((t - started) / 1000).toFixed(0).padStart(4)}s / ${seconds}s  ${parts.join('  ')}`);
      }, 1000);
      const worker = async () => {
        const buf = Buffer.allocUnsafe(blockSize);
        if (rw !== 'read') randomFillSync(buf);
        while (!stopped && performance.now() < deadline) {
          const slot = pattern === 'rand' ? Math.floor(Math.random() * slots) : seq++ % slots;
          const lba = BigInt(slot) * BigInt(nlb);
          const read = rw === 'read' || (rw === 'randrw' && Math.random() * 100 < mix);
          const t0 = performance.now();
          try {
            if (read) await ns.readInto(lba, buf);
            else await ns.write(lba, buf);
          } catch (err) {
            failure ??= err;
            stopped = true;
            return;
          }
          (read ? hist.read : hist.write).record(performance.now() - t0);
        }
      };
      try {
        await Promise.all(Array.from({ length: qd }, worker));
      } finally {
        clearInterval(ticker);
        progress.done();
        ctx.signal.removeEventListener('abort', stop);
      }
      if (failure !== undefined) throw failure;
      const ms = performance.now() - started;
      const total = new LatencyHistogram();
      total.merge(hist.read);
      total.merge(hist.write);
      return {
        nsid,
        rw,
        pattern,
        ...(rw === 'randrw' ? { rwmixread: mix } : {}),
        blockSize,
        queueDepth: qd,
        ioQueues: ctrl.ioQueueCount,
        seconds: Number((ms / 1000).toFixed(3)),
        interrupted: ctx.signal.aborted,
        read: rw === 'write' ? null : stats(hist.read, blockSize, ms),
        write: rw === 'read' ? null : stats(hist.write, blockSize, ms),
        total: stats(total, blockSize, ms),
      };
    });
    if (ctx.format === 'json') return void ctx.json(result);
    ctx.out(
      `${result.pattern === 'rand' ? 'random' : 'sequential'} ${result.rw === 'randrw' ? `read/write (${mix}% reads)` : result.rw}, ${blockSize} B per I/O, ` +
        `queue depth ${qd}, ${result.ioQueues} I/O queue${result.ioQueues === 1 ? '' : 's'}, namespace ${nsid}, ${result.seconds.toFixed(2)} s${result.interrupted ? ' (interrupted)' : ''}\n`,
    );
    const rows: string[][] = [];
    const row = (name: string, s: OpStats | null) => {
      if (!s) return;
      const l = s.latencyUs;
      rows.push([name, String(s.ios), s.iops.toFixed(0), s.mbPerSec.toFixed(1), l.avg.toFixed(1), l.p50.toFixed(1), l.p99.toFixed(1), l.p999.toFixed(1), l.max.toFixed(1)]);
    };
    row('read', result.read);
    row('write', result.write);
    if (result.read && result.write) row('total', result.total);
    const r = (header: string) => ({ header, align: 'right' as const });
    ctx.out(formatTable(['OP', r('IOS'), r('IOPS'), r('MB/s'), r('AVG us'), r('P50 us'), r('P99 us'), r('P99.9 us'), r('MAX us')], rows));
  },
};
