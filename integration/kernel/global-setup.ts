/**
 * vitest globalSetup of the 'kernel' project: boots one kernel NVMe/TCP target for all kernel test files and
 * provides its coordinates as 'kernelTarget' (see env.ts). If it cannot start, the run fails under CI; elsewhere
 * the kernel tests are skipped with one line saying why.
 *
 * Inside the network namespace of in-netns.sh (NVMEOF_TAP set) the guest sits on a TAP link and every discovery
 * log address is reachable; otherwise it uses user-mode networking and the tests that need reachability skip.
 * Under CI user-mode networking is an error (those tests must run there), unless NVMEOF_ALLOW_USER_NET=1.
 */
import type { TestProject } from 'vitest/node';
import { startKernelTarget, tapNetworkFromEnv } from './qemu-target.js';
import type { KernelTarget } from './qemu-target.js';
import type { KernelTargetInfo } from './env.js';

function isSet(value: string | undefined): boolean {
  return value !== undefined && value !== '' && value !== '0' && value.toLowerCase() !== 'false';
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const ci = isSet(process.env.CI);
  let target: KernelTarget;
  try {
    if (ci && !tapNetworkFromEnv() && !isSet(process.env.NVMEOF_ALLOW_USER_NET)) {
      const why = process.env.NVMEOF_NETNS_UNAVAILABLE ?? 'NVMEOF_TAP is unset';
      throw new Error(
        `kernel tests under CI must run in the test network namespace (${why}): ` +
          'run them through integration/kernel/in-netns.sh as root (npm test does), or set NVMEOF_ALLOW_USER_NET=1',
      );
    }
    target = await startKernelTarget();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (ci) throw e;
    const reason = message.split('\n')[0] ?? message;
    const info: KernelTargetInfo = { available: false, reason };
    project.provide('kernelTarget', info);
    console.warn(`kernel nvmet target unavailable: ${reason}; kernel tests skipped`);
    return undefined;
  }
  if (target.network === 'user') {
    console.warn(`kernel nvmet target on user-mode networking (${target.userNetReason}): tests that follow discovery log addresses skip`);
  } else {
    console.info(`kernel nvmet target (Linux ${target.kernelVersion}) at ${target.guestAddr} in ${target.netns ?? 'this network namespace'}, ready in ${target.bootMs} ms`);
  }
  // Everything but the functions crosses to the test workers; the console log goes as its path.
  const { exec: _exec, stop: _stop, consoleLog, ...data } = target;
  const info: KernelTargetInfo = { available: true, ...data, consoleLog: consoleLog() };

  project.provide('kernelTarget', info);
  return async () => {
    await target.stop();
  };
}
