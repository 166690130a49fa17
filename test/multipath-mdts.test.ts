/**
 * A path that joins a multipath namespace later, with a smaller MDTS than the paths it was opened with, lowers the
 * per-command transfer size, so no command is ever larger than the path it is sent on accepts.
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { afterEach, expect, it } from 'vitest';
import { NvmeTarget, type CommandInfo } from '../src/target/index.js';
import { openMultipath } from '../src/multipath/index.js';
import { closedPort, waitFor } from './helpers/wait.js';

const SUBNQN = 'nqn.2024-01.io.nvmeof.test:mpath-mdts';
const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5';
const NGUID = Buffer.from('00112233445566778899aabbccddeeff', 'hex');

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A target serving the same namespace identity (two targets stand in for two controllers of one subsystem). */
async function target(mdts: number, port = 0) {
  const t = new NvmeTarget({ mdts });
  cleanups.push(() => t.close());
  const p = await t.listen({ host: '127.0.0.1', port });
  t.addSubsystem({ nqn: SUBNQN }).addNamespace({ nsid: 1, blocks: 8192, blockSize: 512, nguid: NGUID });
  return { t, p };
}

it('lowers the transfer size when a path with a smaller MDTS joins later', async () => {
  const big = await target(8); // 1 MiB per command
  // The second path's port has no listener yet: that path starts out unreachable.
  const port2 = await closedPort();

  const mp = await openMultipath({
    subnqn: SUBNQN,
    nsid: 1,
    hostnqn: HOSTNQN,
    policy: 'round-robin',
    reconnectDelay: 50,
    ioQueues: 1,
    paths: [
      { host: '127.0.0.1', port: big.p.port },
      { host: '127.0.0.1', port: port2 },
    ],
  });
  cleanups.push(() => mp.close());
  expect(mp.maxBlocksPerCommand).toBe(2048); // 1 MiB of 512-byte blocks

  const small = await target(2, port2); // 16 KiB per command
  // Bytes of every Write the small-MDTS target receives (NLB is CDW12 bits 15:0, 0's based).
  const seen: number[] = [];
  small.t.on('command', (c: CommandInfo) => {
    if (c.opcode === 0x01 && c.kind === 'io') seen.push(((c.sqe.readUInt32LE(48) & 0xffff) + 1) * 512);
  });
  await waitFor(() => mp.paths[1]!.state === 'live', 10_000, 'the second path to connect');
  expect(mp.maxBlocksPerCommand).toBe(32); // 16 KiB of 512-byte blocks

  // Large writes now split into commands the small-MDTS path accepts; round-robin sends some of them there.
  for (let i = 0; i < 4; i++) await mp.write(i * 256, randomBytes(128 * 1024));
  expect(seen.length).toBeGreaterThan(0);
  expect(Math.max(...seen)).toBeLessThanOrEqual(16 * 1024);
});
