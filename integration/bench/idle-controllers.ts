/**
 * Scale: hold --count controllers (admin queue + one I/O queue each, keep-alive on at the default KATO) in this
 * process against the embedded target running in another process, then report this process's RSS and the CPU it
 * spends idle over --seconds. Prints one JSON object.
 *
 *   npm run build && node --expose-gc --import tsx integration/bench/idle-controllers.ts [--count 1000] [--seconds 20] [--kato 5000]
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type * as Library from '../../src/index.js';

type Controller = Library.Controller;
const here = dirname(fileURLToPath(import.meta.url));
// The built library, as a user's process runs it (npm run bench builds first); typed from the sources it is built from,
// so a type check needs no build.
const { connect } = (await import(pathToFileURL(join(here, '../../dist/index.js')).href)) as typeof Library;

const { values } = parseArgs({
  options: { count: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '20' }, kato: { type: 'string', default: '5000' } },
});
const count = Number(values.count);
const seconds = Number(values.seconds);

const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'embedded-target.ts'), '--max-io-queues', '4'], { stdio: ['ignore', 'pipe', 'inherit'] });
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
  // Let bring-up garbage go, then measure the idle steady state (keep-alives only).
  await new Promise((r) => setTimeout(r, 2000));
  globalThis.gc?.();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  const live = ctrls.filter((c) => c.state === 'live').length;
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
      seconds,
    }) + '\n',
  );
} finally {
  await Promise.all(ctrls.map((c) => c.close().catch(() => c.destroy())));
  child.kill();
}
