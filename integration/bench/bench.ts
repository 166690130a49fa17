/**
 * `npm run bench`: the library's block I/O speed as ratios against spdk_nvme_perf on the same target in the same run,
 * and the cost of holding many idle controllers. A thin wrapper: the measuring engine is the CLI's `nvmeof perf`
 * (run from dist/, so build first), started as its own process and pinned to one core, exactly as a user runs it.
 *
 *   npm run build && NVMEOF_SPDK_DIR=/path/to/spdk npm run bench
 *   npm run bench -- --seconds 4 --rounds 2 --only randread --json
 *
 * Target: with NVMEOF_SPDK_DIR, an SPDK nvmf_tgt on core 1 (malloc bdev) and spdk_nvme_perf on core 0 beside
 * `nvmeof perf` on core 0, workload by workload, best of --rounds; the table prints each ratio (ours / SPDK's),
 * once as `nvmeof perf` runs by default and once with --busy-poll (polling, as spdk_nvme_perf itself does).
 * Without it, the embedded target in a separate process on core 1 (no ratio: there is no yardstick). With
 * NVMEOF_PYCLIENT_DIR (a checkout of truenas/truenas_pynvmeof_client) the pure-Python client's 4 KiB QD1 read is
 * measured too. `--scale N` (default 1000, 0 to skip) holds N controllers (admin queue + one I/O queue each,
 * keep-alive on) in a plain Node process on core 0 (the script built first, no tsx loader) against the embedded
 * target on core 1 and reports RSS and the CPU spent idle over two minutes, with each 10 s window.
 *
 * With SPDK, '128 KiB sequential read QD8, TLS' runs through a second subsystem on a TLS listener (a SHA-256 PSK;
 * ours with --tls-key, spdk_nvme_perf with -S ssl --psk-path), to show what TLS costs beside the plain row.
 *
 * A measuring tool: it never passes or fails on time. docs/performance.md records what it printed.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { startSpdkTarget, type SpdkTarget } from '../../src/spdk/index.js';
import { formatTlsKey } from '../../src/protocol/tls-psk.js';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const cli = join(repo, 'dist/cli/main.js');
const NQN = 'nqn.2016-06.io.nvmeof:bench';
const TLS_NQN = 'nqn.2016-06.io.nvmeof:bench-tls';
const TLS_HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:5c3f0a56-0d8e-4f27-9a3c-8f3d2b7e6a10';

/** The TLS subsystem's listener and key (SPDK only). */
interface TlsBench {
  port: number;
  key: string;
  keyFile: string;
}

interface Workload {
  name: string;
  rw: 'randread' | 'randwrite' | 'read' | 'write';
  qd: number;
  size: number;
  digest: boolean;
  /** Through the TLS listener (SPDK only). */
  tls?: boolean;
  /** The issue's goal for ours / spdk_nvme_perf. */
  goal?: number;
}

const WORKLOADS: Workload[] = [
  { name: '4 KiB random read QD1', rw: 'randread', qd: 1, size: 4096, digest: false, goal: 0.7 },
  { name: '4 KiB random read QD32', rw: 'randread', qd: 32, size: 4096, digest: false, goal: 0.6 },
  { name: '4 KiB random write QD32', rw: 'randwrite', qd: 32, size: 4096, digest: false, goal: 0.6 },
  { name: '128 KiB sequential read QD8', rw: 'read', qd: 8, size: 131072, digest: false, goal: 0.8 },
  { name: '128 KiB sequential write QD8', rw: 'write', qd: 8, size: 131072, digest: false, goal: 0.8 },
  { name: '4 KiB random read QD32, digests', rw: 'randread', qd: 32, size: 4096, digest: true, goal: 0.5 },
  { name: '128 KiB read QD8, digests', rw: 'read', qd: 8, size: 131072, digest: true, goal: 0.6 },
  { name: '128 KiB sequential read QD8, TLS', rw: 'read', qd: 8, size: 131072, digest: false, tls: true },
];

interface Measure {
  iops: number;
  mibps: number;
  avgUs: number;
}

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '2' },
    only: { type: 'string' },
    scale: { type: 'string', default: '1000' },
    json: { type: 'boolean', default: false },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const scaleCount = Number(values.scale);
const log = (s: string) => process.stderr.write(s + '\n');

if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);

/** `nvmeof perf` pinned to core 0; its JSON summary. */
async function ours(port: number, w: Workload, tls: TlsBench | undefined, busyPoll: boolean): Promise<Measure> {
  const args = [
    '-c', '0', process.execPath, cli, 'perf', '-a', '127.0.0.1', '-s', String(tls ? tls.port : port), '-n', tls ? TLS_NQN : NQN,
    ...(tls ? ['-q', TLS_HOSTNQN, '--tls-key-file', tls.keyFile] : []),
    '--rw', w.rw.includes('write') ? 'write' : 'read', '--pattern', w.rw.startsWith('rand') ? 'rand' : 'seq',
    '--queue-depth', String(w.qd), '--block-size', String(w.size), '--time', String(seconds), '--nr-io-queues', '1',
    '-o', 'json', ...(w.digest ? ['--hdr-digest', '--data-digest'] : []), ...(busyPoll ? ['--busy-poll'] : []),
  ];
  const { stdout } = await run('taskset', args, { maxBuffer: 1 << 20 });
  const j = JSON.parse(stdout) as { total: { iops: number; mbPerSec: number; latencyUs: { avg: number } } };
  return { iops: j.total.iops, mibps: (j.total.mbPerSec * 1e6) / 1048576, avgUs: j.total.latencyUs.avg };
}

/** spdk_nvme_perf pinned to core 0; its "Total" line. */
async function spdkPerf(spdkDir: string, port: number, w: Workload, tls?: TlsBench): Promise<Measure> {
  const bin = join(spdkDir, 'build/bin/spdk_nvme_perf');
  const args = [
    '-c', '0x1', '-q', String(w.qd), '-o', String(w.size), '-w', w.rw, '-t', String(seconds),
    '-r', tls ? `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${tls.port} subnqn:${TLS_NQN} hostnqn:${TLS_HOSTNQN}` : `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}`,
    '--no-huge', '-s', '1024', ...(w.digest ? ['-H', '-I'] : []), ...(tls ? ['-S', 'ssl', '--psk-path', tls.keyFile] : []),
  ];
  const { stdout } = await run(bin, args, { maxBuffer: 1 << 22 });
  const total = stdout.split('\n').find((l) => /^\s*Total\s*:/.test(l));
  if (!total) throw new Error(`spdk_nvme_perf printed no Total line:\n${stdout.slice(-2000)}`);
  const [iops, mibps, avgUs] = total.split(':')[1]!.trim().split(/\s+/).map(Number) as [number, number, number];
  return { iops, mibps, avgUs };
}

/** The pure-Python client: 4 KiB random reads at QD1 (it is synchronous) for `seconds`. */
async function pyclient(dir: string, port: number): Promise<Measure> {
  const script = `
import os, random, sys, time
sys.path.insert(0, os.path.join(${JSON.stringify(dir)}, 'src'))
from nvmeof_client import NVMeoFClient
c = NVMeoFClient('127.0.0.1', ${JSON.stringify(NQN)}, port=${port})
c.connect()
c.read_data(1, 0, 8)
n = 0
lat = 0.0
end = time.time() + ${seconds}
while time.time() < end:
    lba = random.randrange(0, 65536) * 8
    t0 = time.perf_counter()
    c.read_data(1, lba, 8)
    lat += time.perf_counter() - t0
    n += 1
c.disconnect()
print(n / ${seconds}, n * 4096 / ${seconds} / 1048576, lat / n * 1e6)
`;
  const { stdout } = await run('taskset', ['-c', '0', 'python3', '-c', script], { maxBuffer: 1 << 20 });
  const [iops, mibps, avgUs] = stdout.trim().split(/\s+/).map(Number) as [number, number, number];
  return { iops, mibps, avgUs };
}

/** The embedded target in a process of its own, pinned to core 1. */
async function embeddedTarget(): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn('taskset', ['-c', '1', process.execPath, '--import', 'tsx', join(here, 'embedded-target.ts')], { stdio: ['ignore', 'pipe', 'inherit'], cwd: repo });
  const port = await new Promise<number>((res, rej) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /listening (\d+)/.exec(buf);
      if (m) res(Number(m[1]));
    });
    child.once('exit', (code) => rej(new Error(`embedded target exited with ${code}`)));
  });
  return { port, child };
}

async function main(): Promise<void> {
  const spdkDir = process.env.NVMEOF_SPDK_DIR;
  const pyDir = process.env.NVMEOF_PYCLIENT_DIR;
  let spdk: SpdkTarget | undefined;
  let embedded: { port: number; child: ChildProcess } | undefined;
  let port: number;
  let tls: TlsBench | undefined;
  const tlsDir = mkdtempSync(join(tmpdir(), 'nvmeof-bench-'));
  if (spdkDir) {
    spdk = await startSpdkTarget({ spdkDir, cpuMask: '0x2' });
    port = 4420 + Math.floor(Math.random() * 1000);
    tls = { port: port + 1, key: formatTlsKey(randomBytes(32), 1), keyFile: join(tlsDir, 'psk') };
    writeFileSync(tls.keyFile, tls.key, { mode: 0o600 });
    await spdk.client.keyringFileAddKey({ name: 'bench_psk', path: tls.keyFile });
    await spdk.applyTopology({
      transports: [{ trtype: 'TCP' }],
      bdevs: [
        { type: 'malloc', name: 'bench0', sizeMiB: 256, blockSize: 512 },
        { type: 'malloc', name: 'bench1', sizeMiB: 256, blockSize: 512 },
      ],
      subsystems: [
        { nqn: NQN, allowAnyHost: true, namespaces: [{ bdev: 'bench0' }], listeners: [{ traddr: '127.0.0.1', trsvcid: port }] },
        { nqn: TLS_NQN, hosts: [{ nqn: TLS_HOSTNQN, psk: 'bench_psk' }], namespaces: [{ bdev: 'bench1' }], listeners: [{ traddr: '127.0.0.1', trsvcid: tls.port, secureChannel: true }] },
      ],
    });
    log(`SPDK nvmf_tgt on core 1, listening on 127.0.0.1:${port} (TLS on ${tls.port})`);
  } else {
    embedded = await embeddedTarget();
    port = embedded.port;
    log(`NVMEOF_SPDK_DIR not set: the embedded target (another process, core 1) on 127.0.0.1:${port}; no spdk_nvme_perf ratio`);
  }
  const rows: Record<string, unknown>[] = [];
  try {
    for (const w of WORKLOADS) {
      if (values.only && !w.name.includes(values.only) && !w.rw.includes(values.only)) continue;
      if (w.tls && !tls) continue;
      let best: Measure | undefined;
      let bestPoll: Measure | undefined;
      let bestSpdk: Measure | undefined;
      const better = (m: Measure, than: Measure | undefined) => (!than || m.iops > than.iops ? m : than);
      const withPython = pyDir !== undefined && w.rw === 'randread' && w.qd === 1 && !w.digest && !w.tls;
      let bestPython: Measure | undefined;
      // Rounds interleave the hosts (the Python client too, on its row), so a slow spell of the machine is shared
      // rather than hitting one of them.
      for (let r = 0; r < rounds; r++) {
        if (spdkDir) bestSpdk = better(await spdkPerf(spdkDir, port, w, w.tls ? tls : undefined), bestSpdk);
        best = better(await ours(port, w, w.tls ? tls : undefined, false), best);
        bestPoll = better(await ours(port, w, w.tls ? tls : undefined, true), bestPoll);
        if (withPython) bestPython = better(await pyclient(pyDir, port), bestPython);
      }
      const ratio = (m: Measure) => (bestSpdk ? m.iops / bestSpdk.iops : undefined);
      const row: Record<string, unknown> = {
        workload: w.name,
        nvmeof: best,
        nvmeofBusyPoll: bestPoll,
        spdk_nvme_perf: bestSpdk,
        ratio: ratio(best!),
        ratioBusyPoll: ratio(bestPoll!),
        goal: w.goal,
      };
      if (bestPython) {
        row.python = bestPython;
        row.vsPython = best!.iops / bestPython.iops;
        row.vsPythonBusyPoll = bestPoll!.iops / bestPython.iops;
      }
      rows.push(row);
      const vs = (m: Measure) => (bestSpdk ? ` (${(m.iops / bestSpdk.iops).toFixed(2)}x)` : '');
      log(`${w.name}: ${best!.iops.toFixed(0)} IOPS${vs(best!)}, --busy-poll ${bestPoll!.iops.toFixed(0)}${vs(bestPoll!)}${bestSpdk ? `; spdk_nvme_perf ${bestSpdk.iops.toFixed(0)}` : ''}`);
    }
  } finally {
    await spdk?.stop();
    embedded?.child.kill();
    rmSync(tlsDir, { recursive: true, force: true });
  }
  let scale: unknown;
  if (scaleCount > 0) {
    // The measured process runs plain JavaScript, as a user's would: the script is built on its own first (the tsx
    // loader would add its own thread, heap and garbage collections to the process being measured).
    const out = mkdtempSync(join(tmpdir(), 'nvmeof-idle-'));
    try {
      const { build } = await import('tsup');
      await build({
        entry: { 'idle-controllers': join(here, 'idle-controllers.ts') },
        outDir: out,
        outExtension: () => ({ js: '.mjs' }),
        format: 'esm',
        platform: 'node',
        target: 'node20',
        config: false,
        silent: true,
        dts: false,
        splitting: false,
      });
      const script = join(out, 'idle-controllers.mjs');
      // Pinned as the other rows are: the measured process on core 0, the embedded target on core 1.
      const { stdout } = await run('taskset', ['-c', '0', process.execPath, '--expose-gc', script, '--count', String(scaleCount), '--repo', repo, '--target-cpu', '1'], {
        cwd: repo,
        maxBuffer: 1 << 20,
      });
      scale = JSON.parse(stdout);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }
  if (values.json) {
    process.stdout.write(JSON.stringify({ seconds, rounds, target: spdkDir ? 'spdk' : 'embedded', rows, scale }, null, 2) + '\n');
    return;
  }
  const f = (m: Measure | undefined, big: boolean) => (m ? (big ? `${(m.mibps / 1024).toFixed(2)} GiB/s` : `${(m.iops / 1000).toFixed(1)}K IOPS`) : '-');
  const head = ['workload', 'spdk_nvme_perf', 'nvmeof perf', 'ratio', 'nvmeof perf --busy-poll', 'ratio', 'goal', 'python client'];
  const table = rows.map((r) => {
    const big = String(r.workload).startsWith('128');
    return [
      String(r.workload),
      f(r.spdk_nvme_perf as Measure | undefined, big),
      f(r.nvmeof as Measure, big),
      r.ratio === undefined ? '-' : (r.ratio as number).toFixed(2),
      f(r.nvmeofBusyPoll as Measure, big),
      r.ratioBusyPoll === undefined ? '-' : (r.ratioBusyPoll as number).toFixed(2),
      r.goal === undefined ? '-' : `>= ${r.goal as number}`,
      r.python ? `${f(r.python as Measure, false)} (ours ${(r.vsPython as number).toFixed(2)}x, --busy-poll ${(r.vsPythonBusyPoll as number).toFixed(2)}x)` : '',
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  process.stdout.write([line(head), line(widths.map((w) => '-'.repeat(w))), ...table.map(line)].join('\n') + '\n');
  if (scale) process.stdout.write(`\nidle controllers: ${JSON.stringify(scale)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
