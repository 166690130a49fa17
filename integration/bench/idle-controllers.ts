/**
 * Scale: hold --count controllers (admin queue + one I/O queue each, keep-alive on at the default KATO) in this
 * process against the embedded target running in another process, then report this process's RSS and the CPU it
 * spends idle over --seconds. Prints one JSON object.
 *
 *   npm run build && node --expose-gc --import tsx integration/bench/idle-controllers.ts [--count 1000] [--seconds 120] [--kato 5000]
 *
 * `npm run bench` runs it as plain JavaScript, without the tsx loader (whose own thread and heap add about 50 MB to
 * the process and a few garbage collections of their own), as a user's process would run; `--repo` then says where
 * the built library and the embedded target are.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type * as Library from '../../src/index.js';

type Controller = Library.Controller;
const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '120' },
    kato: { type: 'string', default: '5000' },
    repo: { type: 'string', default: join(dirname(fileURLToPath(import.meta.url)), '../..') },
    // Pin the embedded target to this core (taskset), away from the measured process.
    'target-cpu': { type: 'string' },
  },
});
const repo = values.repo;
// The built library, as a user's process runs it (npm run bench builds first); typed from the sources it is built from,
// so a type check needs no build.
const { connect } = (await import(pathToFileURL(join(repo, 'dist/index.js')).href)) as typeof Library;
const count = Number(values.count);
const seconds = Number(values.seconds);

const targetArgv = [process.execPath, '--import', 'tsx', join(repo, 'integration/bench/embedded-target.ts'), '--max-io-queues', '4'];
const pin = values['target-cpu'];
const child = spawn(pin === undefined ? targetArgv[0]! : 'taskset', pin === undefined ? targetArgv.slice(1) : ['-c', pin, ...targetArgv], {
  stdio: ['ignore', 'pipe', 'inherit'],
  cwd: repo,
});
const port = await new Promise<number>((resolve, reject) => {
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const m = /listening (\d+)/.exec(buf);
    if (m) resolve(Number(m[1]));
  });
  child.once('exit', (code) => reject(new Error(`embedded target exited with ${code}`)));
});

const rssBefore = process.memoryUsage().rss;
const ctrls: Controller[] = [];
try {
  for (let i = 0; i < count; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, count - i) }, () =>
        connect({ host: '127.0.0.1', port, subnqn: 'nqn.2016-06.io.nvmeof:bench', ioQueues: 1, kato: Number(values.kato) }),
      ),
    );
    ctrls.push(...batch);
  }
  // Let the keep-alives settle into their shared wake-ups (two intervals), then measure the idle steady state
  // (keep-alives only) over a window long enough to include the garbage collector's periodic work: a major collection
  // and, when V8 sees the process idle, its memory reducer's few more. No collection is forced before the window (a
  // forced one would start the memory reducer inside it); RSS is read after one, at the end.
  await new Promise((r) => setTimeout(r, Math.max(2000, Number(values.kato))));
  // Also per 10 s window: the garbage collector's periodic work lands in some windows and not others.
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const windows: number[] = [];
  for (let left = seconds * 1000; left > 0; left -= 10_000) {
    const c = process.cpuUsage();
    const w = performance.now();
    await new Promise((r) => setTimeout(r, Math.min(10_000, left)));
    const d = process.cpuUsage(c);
    windows.push(Number((((d.user + d.system) / 1000 / (performance.now() - w)) * 100).toFixed(2)));
  }
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  const live = ctrls.filter((c) => c.state === 'live').length;
  globalThis.gc?.();
  const mem = process.memoryUsage();
  process.stdout.write(
    JSON.stringify({
      controllers: count,
      live,
      kato: Number(values.kato),
      rssMB: Math.round(mem.rss / 1048576),
      rssPerControllerKB: Math.round((mem.rss - rssBefore) / count / 1024),
      heapUsedMB: Math.round(mem.heapUsed / 1048576),
      idleCpuPercent: Number((((cpu.user + cpu.system) / 1000 / wall) * 100).toFixed(2)),
      idleCpuPercentPer10s: windows,
      seconds,
    }) + '\n',
  );
} finally {
  await Promise.all(ctrls.map((c) => c.close().catch(() => c.destroy())));
  child.kill();
}
