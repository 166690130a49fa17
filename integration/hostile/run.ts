/**
 * The hostile-controller run, longer than the unit suite's: sessions of the library through a mutating proxy in
 * front of the embedded target (see test/helpers/hostile-proxy.ts), with any seed and rate.
 *
 *   node --import tsx integration/hostile/run.ts [--sessions 20000] [--seed N] [--rate 0.08] [--parallel 16]
 *
 * Prints the tally as JSON and exits 1 if any read resolved with wrong bytes, any operation never settled, any
 * error was untyped or any caller buffer was written after its read rejected.
 */
import { parseArgs } from 'node:util';
import { connect } from '../../src/host/controller.js';
import { startHostileProxy } from '../../test/helpers/hostile-proxy.js';
import { BLOCK, BLOCKS, expected, hostileSession, newTally } from '../../test/helpers/hostile-session.js';
import { HOSTNQN, SUBNQN, TargetEnv } from '../../test/helpers/target-env.js';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '20000' },
    seed: { type: 'string', default: String(Date.now() % 1e9) },
    rate: { type: 'string', default: '0.08' },
    parallel: { type: 'string', default: '16' },
  },
});
const sessions = Number(values.sessions);
const seed = Number(values.seed);
const rate = Number(values.rate);
const parallel = Number(values.parallel);

const env = new TargetEnv();
await env.start({ target: { maxC2HData: 2048 }, ns: { blocks: BLOCKS, blockSize: BLOCK } });
const setup = await connect({ host: '127.0.0.1', port: env.port.port, subnqn: SUBNQN, hostnqn: HOSTNQN, ioQueues: 1 });
await (await setup.namespace(1)).write(0, expected(0, BLOCKS));
await setup.close();
const proxy = await startHostileProxy({ targetPort: env.port.port, seed, rate, delayMs: 250 });

const t = newTally();
const started = Date.now();
let next = 0;
const worker = async () => {
  while (next < sessions) {
    const i = next++;
    await hostileSession(t, { port: proxy.port, subnqn: SUBNQN, hostnqn: HOSTNQN, seed: seed + i, commandTimeout: 150, deadline: 4000, lingerMs: 300 });
    if (i > 0 && i % 1000 === 0) process.stderr.write(`${i} sessions, ${t.wrong} wrong, ${t.pending} pending, ${t.untyped} untyped\n`);
  }
};
await Promise.all(Array.from({ length: parallel }, worker));
await proxy.close();
await env.cleanup();

const out = {
  seed,
  rate,
  seconds: Math.round((Date.now() - started) / 1000),
  ...t,
  errorsByCode: Object.fromEntries(t.errorsByCode),
  mutations: Object.fromEntries(proxy.applied),
};
console.log(JSON.stringify(out, null, 2));
process.exit(t.wrong + t.pending + t.untyped + t.lateWrites === 0 ? 0 : 1);
