/**
 * The embedded target as a process of its own, for the benchmarks: one subsystem (nqn.2016-06.io.nvmeof:bench, any
 * host) with a 128 MiB namespace of 512-byte blocks on 127.0.0.1, a free port unless --port is given. Prints
 * "listening PORT" when ready; runs until killed.
 */
import { parseArgs } from 'node:util';
import { NvmeTarget } from '../../src/target/index.js';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, 'max-io-queues': { type: 'string', default: '64' } } });
const target = new NvmeTarget({ maxIoQueues: Number(values['max-io-queues']) });
const port = await target.listen({ host: '127.0.0.1', port: Number(values.port) });
target.addSubsystem({ nqn: 'nqn.2016-06.io.nvmeof:bench', allowAnyHost: true }).addNamespace({ blocks: 262144, blockSize: 512 });
process.stdout.write(`listening ${port.port}\n`);
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void target.close().then(() => process.exit(0)));
