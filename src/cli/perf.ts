/**
 * perf: a small load generator. Queue-depth workers issue one I/O at a time each (random or sequential LBAs, reads,
 * writes or a mix) for a fixed time; latencies go into a log-linear histogram; the result is IOPS, MB/s and latency
 * percentiles.
 */
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { connect, type ConnectOptions, type Controller, type Namespace } from '../index.js';
import { TARGET_OPTIONS, UsageError, namespaceOption, type Values } from './args.js';
import { targetConnectOptions, withController, type Command } from './context.js';
import { Progress, formatTable, mbPerSec } from './output.js';

/**
 * Latency histogram with about 1.6% resolution: values in 100 ns ticks; ticks below 128 have one bucket each, every
 * power of two above that is split into 64 buckets.
 */
export class LatencyHistogram {
  private counts = new Float64Array(128 + 25 * 64);
  count = 0;
  private sumMs = 0;
  private minMs = Infinity;
  private maxMs = 0;

  /** A plain copy that survives structured cloning (worker threads). */
  toJSON(): HistogramData {
    return { counts: Array.from(this.counts), count: this.count, sumMs: this.sumMs, minMs: this.minMs, maxMs: this.maxMs };
  }

  static from(d: HistogramData): LatencyHistogram {
    const h = new LatencyHistogram();
    h.counts = Float64Array.from(d.counts);
    h.count = d.count;
    h.sumMs = d.sumMs;
    h.minMs = d.minMs;
    h.maxMs = d.maxMs;
    return h;
  }

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

/** A histogram's content as plain data. */
export interface HistogramData {
  counts: number[];
  count: number;
  sumMs: number;
  minMs: number;
  maxMs: number;
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

/** One perf workload on one namespace. */
export interface Workload {
  rw: 'read' | 'write' | 'randrw';
  pattern: 'rand' | 'seq';
  /** Percent reads with rw 'randrw'. */
  mix: number;
  queueDepth: number;
  blockSize: number;
  seconds: number;
  /** This worker's share of sequential LBAs: it starts at `seqStart` slots and strides by `seqStride`. */
  seqStart?: number;
  seqStride?: number;
}

/** Live counters of a running workload (read by the progress ticker). */
export interface Counters {
  read: number;
  write: number;
}

/**
 * The perf engine: keep `queueDepth` commands in flight on `ns` for `seconds` (or until `stop()` returns true),
 * recording each latency. Resolves with the read and write histograms; rejects with the first I/O error.
 */
export async function runWorkload(ns: Namespace, w: Workload, stop: () => boolean, live?: Counters): Promise<{ read: LatencyHistogram; write: LatencyHistogram; ms: number }> {
  const nlb = w.blockSize / ns.blockSize;
  const slots = Number(ns.blocks / BigInt(nlb));
  const hist = { read: new LatencyHistogram(), write: new LatencyHistogram() };
  const stride = w.seqStride ?? 1;
  let seq = w.seqStart ?? 0;
  let stopped = false;
  let failure: unknown;
  const started = performance.now();
  const deadline = started + w.seconds * 1000;
  const worker = async () => {
    const buf = Buffer.allocUnsafe(w.blockSize);
    if (w.rw !== 'read') randomFillSync(buf);
    // One clock read per I/O besides its start: the end of one I/O is the deadline check of the next.
    let now = performance.now();
    while (!stopped && !stop() && now < deadline) {
      let slot: number;
      if (w.pattern === 'rand') slot = Math.floor(Math.random() * slots);
      else {
        slot = seq % slots;
        seq += stride;
      }
      const lba = slot * nlb;
      const read = w.rw === 'read' || (w.rw === 'randrw' && Math.random() * 100 < w.mix);
      const t0 = now;
      try {
        if (read) await ns.readInto(lba, buf);
        else await ns.write(lba, buf);
      } catch (err) {
        failure ??= err;
        stopped = true;
        return;
      }
      now = performance.now();
      (read ? hist.read : hist.write).record(now - t0);
      if (live) {
        if (read) live.read++;
        else live.write++;
      }
    }
  };
  await Promise.all(Array.from({ length: w.queueDepth }, worker));
  if (failure !== undefined) throw failure;
  return { ...hist, ms: performance.now() - started };
}

/** What a perf worker thread is given. */
export interface PerfWorkerData {
  connect: Omit<ConnectOptions, 'signal'>;
  nsid: number;
  workload: Workload;
  /** Int32Array over a SharedArrayBuffer: [0] stop flag, [1] reads done, [2] writes done (this worker's slots). */
  shared: SharedArrayBuffer;
  index: number;
}

/** The body of a perf worker thread: its own controller, the same workload, histograms posted back. */
export async function perfWorkerMain(data: PerfWorkerData, post: (msg: unknown) => void): Promise<void> {
  const flags = new Int32Array(data.shared);
  const ctrl = await connect({ ...data.connect, events: false });
  try {
    const ns = await ctrl.namespace(data.nsid);
    const live = { read: 0, write: 0 };
    const ticker = setInterval(() => {
      Atomics.store(flags, 1 + data.index * 2, live.read);
      Atomics.store(flags, 2 + data.index * 2, live.write);
    }, 200);
    try {
      const r = await runWorkload(ns, data.workload, () => Atomics.load(flags, 0) !== 0, live);
      post({ ok: true, read: r.read.toJSON(), write: r.write.toJSON(), ms: r.ms, ioQueues: ctrl.ioQueueCount });
    } finally {
      clearInterval(ticker);
    }
  } finally {
    await ctrl.close().catch(() => ctrl.destroy());
  }
}

/** The worker thread's entry file: perf-worker.js beside this module in the build, perf-worker.ts from source. */
function workerEntry(): string {
  const base = fileURLToPath(import.meta.url);
  for (const name of ['perf-worker.js', 'perf-worker.cjs', 'perf-worker.ts']) {
    const f = base.replace(/[^/\\]+$/, name);
    if (existsSync(f)) return f;
  }
  // Bundled builds put the worker under cli/.
  for (const name of ['cli/perf-worker.js', 'cli/perf-worker.cjs']) {
    const f = base.replace(/[^/\\]+$/, name);
    if (existsSync(f)) return f;
  }
  throw new Error('perf worker entry not found beside ' + base);
}

interface WorkerResult {
  read: LatencyHistogram;
  write: LatencyHistogram;
  ms: number;
  ioQueues: number;
}

/** Run the workload in `n` worker threads, each with its own controller, and merge their histograms. */
async function runInWorkers(n: number, data: Omit<PerfWorkerData, 'index' | 'shared'>, shared: SharedArrayBuffer): Promise<WorkerResult> {
  const entry = workerEntry();
  const results = await Promise.all(
    Array.from({ length: n }, (_, index) => {
      const workload = data.workload.pattern === 'seq' ? { ...data.workload, seqStart: index, seqStride: n } : data.workload;
      const wd = { ...data, workload, shared, index } satisfies PerfWorkerData;
      // From source (.ts, run through tsx) the worker registers tsx's loader before importing the entry.
      const w = entry.endsWith('.ts')
        ? new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(pathToFileURL(entry).href)}); });`, { eval: true, workerData: wd })
        : new Worker(entry, { workerData: wd });
      return new Promise<WorkerResult>((resolve, reject) => {
        let done = false;
        w.once('message', (m: { ok: boolean; read?: HistogramData; write?: HistogramData; ms?: number; ioQueues?: number; error?: { message: string; code?: string } }) => {
          done = true;
          if (m.ok) resolve({ read: LatencyHistogram.from(m.read!), write: LatencyHistogram.from(m.write!), ms: m.ms!, ioQueues: m.ioQueues! });
          else reject(Object.assign(new Error(m.error?.message ?? 'perf worker failed'), { code: m.error?.code }));
        });
        w.once('error', (err) => reject(err));
        w.once('exit', (code) => {
          if (!done) reject(new Error(`perf worker ${index} exited with code ${code} before reporting`));
        });
      });
    }),
  );
  const read = new LatencyHistogram();
  const write = new LatencyHistogram();
  for (const r of results) {
    read.merge(r.read);
    write.merge(r.write);
  }
  return { read, write, ms: Math.max(...results.map((r) => r.ms)), ioQueues: results.reduce((a, r) => a + r.ioQueues, 0) };
}

export const perfCommand: Command = {
  name: 'perf',
  summary: 'measure IOPS, throughput and latency percentiles on a namespace',
  usage: 'perf -a ADDR -n NQN [-N NSID] [--rw read|write|randrw] [--pattern rand|seq] [--queue-depth N] [--block-size B] [--time SEC] [--workers N] [options]',
  description:
    'Keeps --queue-depth commands in flight against one namespace for --time seconds and prints, per operation, the ' +
    'I/Os completed, IOPS, MB/s (10^6 bytes) and latency (min, average, p50, p99, p99.9, max). --rw randrw mixes reads ' +
    'and writes (--rwmixread percent reads); --pattern chooses random or sequential LBAs (sequential wraps at the end). ' +
    'Writes destroy the data on the namespace. --workers N runs the workload in N worker threads, each with its own ' +
    'controller (--queue-depth each), for hosts with many cores; their latencies are merged. Live counters are shown ' +
    'on stderr when it is a terminal; Ctrl-C stops early and still prints the summary.',
  options: {
    ...namespaceOption('1'),
    rw: { type: 'string', arg: 'OP', help: 'read, write or randrw (mixed)', def: 'read' },
    pattern: { type: 'string', arg: 'P', help: 'rand or seq', def: 'rand' },
    rwmixread: { type: 'string', arg: 'PCT', help: 'percent of reads with --rw randrw', def: '50' },
    'queue-depth': { type: 'string', arg: 'N', help: 'commands in flight', def: '32' },
    'block-size': { type: 'string', arg: 'BYTES', help: 'bytes per I/O, a multiple of the LBA size (k/m suffixes)', def: '4k' },
    time: { type: 'string', arg: 'SEC', help: 'how long to run, seconds', def: '10' },
    workers: { type: 'string', arg: 'N', help: 'worker threads, each with its own controller and queue depth', def: '1' },
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
    const workers = v.int('workers', 1, 256, 1);
    const workload: Workload = { rw, pattern, mix, queueDepth: qd, blockSize, seconds };
    const checkedNamespace = async (ctrl: Controller): Promise<Namespace> => {
      const ns = await ctrl.namespace(nsid);
      if (blockSize % ns.blockSize !== 0) throw new UsageError(`--block-size ${blockSize} is not a multiple of the ${ns.blockSize}-byte LBA size of namespace ${nsid}`, v.command);
      if (ns.blocks / BigInt(blockSize / ns.blockSize) < 1n) throw new UsageError(`--block-size ${blockSize} is larger than namespace ${nsid}`, v.command);
      return ns;
    };
    let res: WorkerResult;
    if (workers === 1) {
      res = await withController(ctx, v, { events: false }, async (ctrl) => runLive(await checkedNamespace(ctrl), ctrl.ioQueueCount));
    } else {
      // Check the namespace once here; every worker then opens a controller of its own.
      await withController(ctx, v, { events: false, ioQueues: 1 }, checkedNamespace);
      res = await runThreads();
    }

    async function runLive(ns: Namespace, ioQueues: number): Promise<WorkerResult> {
      const live = { read: 0, write: 0 };
      return withProgress(() => live, async (stopped) => {
        const r = await runWorkload(ns, workload, stopped, live);
        return { ...r, ioQueues };
      });
    }

    async function runThreads(): Promise<WorkerResult> {
      const shared = new SharedArrayBuffer(4 * (1 + 2 * workers));
      const flags = new Int32Array(shared);
      const { signal: _signal, ...connectOpts } = targetConnectOptions(ctx, v, { events: false });
      const counters = () => {
        let read = 0;
        let write = 0;
        for (let i = 0; i < workers; i++) {
          read += Atomics.load(flags, 1 + i * 2);
          write += Atomics.load(flags, 2 + i * 2);
        }
        return { read, write };
      };
      return withProgress(counters, (stopped) => {
        const poll = setInterval(() => {
          if (stopped()) Atomics.store(flags, 0, 1);
        }, 50);
        return runInWorkers(workers, { connect: connectOpts, nsid, workload }, shared).finally(() => clearInterval(poll));
      });
    }

    async function withProgress(counters: () => Counters, body: (stopped: () => boolean) => Promise<WorkerResult>): Promise<WorkerResult> {
      let stopped = false;
      const stop = () => {
        stopped = true;
      };
      ctx.signal.addEventListener('abort', stop, { once: true });
      const progress = new Progress(ctx.io.stderr, undefined, 'perf', 0);
      const started = performance.now();
      let last = { t: started, r: 0, w: 0 };
      const ticker = setInterval(() => {
        const t = performance.now();
        const dt = (t - last.t) / 1000;
        const c = counters();
        const r = c.read - last.r;
        const w = c.write - last.w;
        last = { t, r: c.read, w: c.write };
        const part = (name: string, n: number) => `${name} ${Math.round(n / dt).toLocaleString('en-US')} IOPS ${mbPerSec(n * blockSize, dt * 1000).toFixed(1)} MB/s`;
        const parts = [rw !== 'write' ? part('read', r) : '', rw !== 'read' ? part('write', w) : ''].filter(Boolean);
        progress.status(`perf ${((t - started) / 1000).toFixed(0).padStart(4)}s / ${seconds}s  ${parts.join('  ')}`);
      }, 1000);
      try {
        return await body(() => stopped);
      } finally {
        clearInterval(ticker);
        progress.done();
        ctx.signal.removeEventListener('abort', stop);
      }
    }

    const ms = res.ms;
    const total = new LatencyHistogram();
    total.merge(res.read);
    total.merge(res.write);
    const result = {
      nsid,
      rw,
      pattern,
      ...(rw === 'randrw' ? { rwmixread: mix } : {}),
      blockSize,
      queueDepth: qd,
      workers,
      ioQueues: res.ioQueues,
      seconds: Number((ms / 1000).toFixed(3)),
      interrupted: ctx.signal.aborted,
      read: rw === 'write' ? null : stats(res.read, blockSize, ms),
      write: rw === 'read' ? null : stats(res.write, blockSize, ms),
      total: stats(total, blockSize, ms),
    };
    if (ctx.format === 'json') return void ctx.json(result);
    ctx.out(
      `${result.pattern === 'rand' ? 'random' : 'sequential'} ${result.rw === 'randrw' ? `read/write (${mix}% reads)` : result.rw}, ${blockSize} B per I/O, ` +
        `queue depth ${qd}${workers > 1 ? ` x ${workers} workers` : ''}, ${result.ioQueues} I/O queue${result.ioQueues === 1 ? '' : 's'}, namespace ${nsid}, ${result.seconds.toFixed(2)} s${result.interrupted ? ' (interrupted)' : ''}\n`,
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
