/**
 * NBD export throughput: `nbdcopy` reading the whole namespace through `nvmeof nbd`, beside the library's own 128 KiB
 * sequential read at QD8 on the same namespace, and beside `nbdcopy` reading a local file exported by qemu-nbd (for
 * scale). A measuring tool: it never passes or fails on time; docs/performance.md records what it printed.
 *
 *   node --import tsx integration/bench/nbd.ts [--rounds 3] [--json]
 *
 * Target: the embedded target in a process of its own (integration/bench/embedded-target.ts, 128 MiB namespace of
 * 512-byte blocks), or an existing one with --target HOST:PORT --nqn NQN. `nvmeof nbd` runs as its own process (as a
 * user runs it), exporting namespace 1 on a free loopback port.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { connect } from '../../src/index.js';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const BENCH_NQN = 'nqn.2016-06.io.nvmeof:bench';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    target: { type: 'string' },
    nqn: { type: 'string', default: BENCH_NQN },
    json: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const children: ChildProcess[] = [];
const cleanup = () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
};
process.on('exit', cleanup);

/** Start a process and wait for a line matching `re` on its stdout. */
function startUntil(cmd: string, args: string[], re: RegExp): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  const child = spawn(cmd, args, { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((res, rej) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = re.exec(out);
      if (m) res({ child, match: m });
    });
    child.once('exit', (code) => rej(new Error(`${cmd} ${args.join(' ')} exited ${code} before it was ready`)));
  });
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function best(fn: () => Promise<number>): Promise<number> {
  let top = 0;
  for (let i = 0; i < rounds; i++) top = Math.max(top, await fn());
  return top;
}

const MiB = 1024 * 1024;

async function main(): Promise<void> {
  let host = '127.0.0.1';
  let port: number;
  if (values.target) {
    const i = values.target.lastIndexOf(':');
    host = values.target.slice(0, i);
    port = Number(values.target.slice(i + 1));
  } else {
    const t = await startUntil(process.execPath, ['--import', 'tsx', join(here, 'embedded-target.ts')], /listening (\d+)/);
    port = Number(t.match[1]);
  }
  const nqn = values.nqn!;

  // 1. The library on its own: 128 KiB sequential reads, 8 in flight, over the whole namespace.
  const ctrl = await connect({ host, port, subnqn: nqn, ioQueues: 2 });
  const ns = await ctrl.namespace(1);
  const size = Number(ns.sizeBytes);
  const chunk = 128 * 1024;
  const library = await best(async () => {
    let next = 0;
    const secs = await timed(() =>
      Promise.all(
        Array.from({ length: 8 }, async () => {
          const buf = Buffer.allocUnsafe(chunk);
          for (let off = next; off + chunk <= size; off = next) {
            next += chunk;
            await ns.readInto(off / ns.blockSize, buf);
          }
        }),
      ),
    );
    return size / MiB / secs;
  });
  await ctrl.close();

  // 2. nbdcopy through `nvmeof nbd`, run as a process.
  const nbd = await startUntil(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'nbd', '-a', host, '-s', String(port), '-n', nqn, '--listen', 'tcp:127.0.0.1:0', '--export-name', 'bench'],
    /at (nbd:\/\/\S+)/,
  );
  const uri = nbd.match[1]!;
  const copy = (u: string, extra: string[]) => best(async () => size / MiB / (await timed(() => run('nbdcopy', [...extra, u, 'null:']))));
  const nbdQd8 = await copy(uri, ['--connections=1', '--requests=8', '--request-size=131072']);
  const nbdDefault = await copy(uri, []);
  nbd.child.kill('SIGTERM');

  // 3. qemu-nbd exporting a local file of the same size (page cache), for scale.
  const dir = mkdtempSync(join(tmpdir(), 'nvmeof-bench-nbd-'));
  let qemuQd8 = 0;
  let qemuDefault = 0;
  try {
    const file = join(dir, 'disk.raw');
    writeFileSync(file, randomBytes(size));
    const sock = join(dir, 'qemu-nbd.sock');
    const q = spawn('qemu-nbd', ['-f', 'raw', '-x', 'bench', '-k', sock, '-t', '--shared=8', file], { stdio: 'ignore' });
    children.push(q);
    const quri = `nbd+unix:///bench?socket=${sock}`;
    for (let i = 0; i < 100; i++) {
      try {
        await run('nbdinfo', ['--size', quri]);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    qemuQd8 = await copy(quri, ['--connections=1', '--requests=8', '--request-size=131072']);
    qemuDefault = await copy(quri, []);
    q.kill('SIGTERM');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const rows = [
    { what: 'library: 128 KiB sequential read, QD8', mibps: library },
    { what: 'nbdcopy via nvmeof nbd: 1 connection, 8 requests of 128 KiB', mibps: nbdQd8, ratio: nbdQd8 / library },
    { what: 'nbdcopy via nvmeof nbd: defaults (4 connections, 64 requests of 256 KiB)', mibps: nbdDefault, ratio: nbdDefault / library },
    { what: 'nbdcopy via qemu-nbd on a local file: 1 connection, 8 x 128 KiB', mibps: qemuQd8 },
    { what: 'nbdcopy via qemu-nbd on a local file: defaults', mibps: qemuDefault },
  ];
  if (values.json) process.stdout.write(JSON.stringify({ sizeBytes: size, rounds, rows }, null, 2) + '\n');
  else {
    process.stdout.write(`namespace ${size / MiB} MiB, best of ${rounds}\n`);
    for (const r of rows) process.stdout.write(`${r.what.padEnd(78)} ${r.mibps.toFixed(0).padStart(6)} MiB/s${r.ratio ? `  (${r.ratio.toFixed(2)}x library)` : ''}\n`);
  }
  cleanup();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    cleanup();
    process.exit(1);
  },
);
