/**
 * vitest globalSetup of the 'spdk' project: when NVMEOF_SPDK_DIR names an SPDK build (see docs/spdk.md), starts one
 * nvmf_tgt (no hugepages, RPC on a private Unix socket, NVMe/TCP transport created) for all SPDK test files and
 * provides its coordinates as 'spdkTarget' (see env.ts). Without NVMEOF_SPDK_DIR the SPDK tests are skipped with one
 * line saying so; with it, a target that cannot start fails the run.
 *
 * Optional: NVMEOF_SPDK_MEM_MIB (default 1024), NVMEOF_SPDK_CPUMASK (default 0x1), NVMEOF_SPDK_LOG (a file that
 * receives the target's output when the run ends).
 */
import { writeFile } from 'node:fs/promises';
import type { TestProject } from 'vitest/node';
import { startSpdkTarget } from '../../src/spdk/index.js';
import { SPDK_TRANSPORT, type SpdkTargetInfo } from './env.js';

const SKIP_LINE = 'SPDK tests skipped: set NVMEOF_SPDK_DIR to an SPDK build (see docs/spdk.md)';

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const spdkDir = process.env.NVMEOF_SPDK_DIR;
  if (!spdkDir) {
    const info: SpdkTargetInfo = { available: false, reason: 'NVMEOF_SPDK_DIR is not set' };
    project.provide('spdkTarget', info);
    console.warn(SKIP_LINE);
    return undefined;
  }
  const started = Date.now();
  const tgt = await startSpdkTarget({
    spdkDir,
    memMiB: Number(process.env.NVMEOF_SPDK_MEM_MIB ?? 1024),
    cpuMask: process.env.NVMEOF_SPDK_CPUMASK ?? '0x1',
  });
  try {
    await tgt.client.nvmfCreateTransport(SPDK_TRANSPORT);
  } catch (e) {
    await tgt.stop();
    throw e;
  }
  const info: SpdkTargetInfo = {
    available: true,
    rpcSocket: tgt.rpcSocket,
    pid: tgt.pid,
    version: tgt.version.version,
    binary: tgt.binary,
    startMs: Date.now() - started,
  };
  project.provide('spdkTarget', info);
  console.warn(`SPDK target: ${tgt.version.version} (pid ${tgt.pid}, started in ${info.startMs} ms, RPC ${tgt.rpcSocket})`);
  return async () => {
    const log = process.env.NVMEOF_SPDK_LOG;
    const wasAlive = tgt.alive();
    await tgt.stop();
    if (log) await writeFile(log, tgt.output());
    if (!wasAlive) throw new Error(`nvmf_tgt died during the tests; its output:\n${tgt.output().split('\n').slice(-30).join('\n')}`);
  };
}
