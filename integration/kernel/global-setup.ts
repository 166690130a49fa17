/**
 * vitest globalSetup of the 'kernel' project: boots one kernel NVMe/TCP target for all kernel test files and
 * provides its coordinates as 'kernelTarget' (see env.ts). If it cannot start, the run fails under CI; elsewhere
 * the kernel tests are skipped with one line saying why.
 */
import type { TestProject } from 'vitest/node';
import { GUEST_ADDR, startKernelTarget } from './qemu-target.js';
import type { KernelTarget } from './qemu-target.js';
import type { KernelTargetInfo } from './env.js';

function isCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  let target: KernelTarget;
  try {
    target = await startKernelTarget();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (isCi()) throw e;
    const reason = message.split('\n')[0] ?? message;
    const info: KernelTargetInfo = { available: false, reason };
    project.provide('kernelTarget', info);
    console.warn(`kernel nvmet target unavailable: ${reason}; kernel tests skipped`);
    return undefined;
  }
  const info: KernelTargetInfo = {
    available: true,
    host: target.host,
    port: target.port,
    ctlPort: target.ctlPort,
    openNqn: target.openNqn,
    restrictedNqn: target.restrictedNqn,
    allowedHostNqn: target.allowedHostNqn,
    discoveryNqn: target.discoveryNqn,
    guestAddr: GUEST_ADDR,
    kernelVersion: target.kernelVersion,
    consoleLog: target.consoleLog(),
    bootMs: target.bootMs,
  };
  project.provide('kernelTarget', info);
  return async () => {
    await target.stop();
  };
}
