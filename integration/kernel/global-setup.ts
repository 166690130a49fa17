/**
 * vitest globalSetup of the kernel projects: boots one kernel NVMe/TCP target for all test files of the project and
 * provides its coordinates as 'kernelTarget' (see env.ts). If it cannot start, the run fails under CI; elsewhere
 * the project's tests are skipped with one line saying why.
 *
 * The project's name picks the kernel (see KERNEL_PROJECTS): 'kernel' boots the newest Linux of Debian
 * trixie-backports (7.x) and runs the whole suite; 'kernel-6.1' boots Debian 12's Linux 6.1 and runs the smoke set.
 * Each uses its own TAP link, so both guests can run at once.
 *
 * Inside the network namespace of in-netns.sh (NVMEOF_TAP set) the guest sits on a TAP link and every discovery
 * log address is reachable; otherwise it uses user-mode networking and the tests that need reachability skip.
 * Under CI user-mode networking is an error (those tests must run there), unless NVMEOF_ALLOW_USER_NET=1.
 */
import type { TestProject } from 'vitest/node';
import { startKernelTarget, tapNetworkFromEnv } from './qemu-target.js';
import type { KernelKind, KernelTarget } from './qemu-target.js';
import type { KernelSuite, KernelTargetInfo } from './env.js';

/** vitest project name -> the kernel it boots, its TAP link (in-netns.sh) and which tests it runs. */
export const KERNEL_PROJECTS: Record<string, { kernel: KernelKind; link: 1 | 2; suite: KernelSuite }> = {
  kernel: { kernel: 'backports', link: 1, suite: 'full' },
  'kernel-6.1': { kernel: 'debian', link: 2, suite: 'smoke' },
};

function isSet(value: string | undefined): boolean {
  return value !== undefined && value !== '' && value !== '0' && value.toLowerCase() !== 'false';
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const ci = isSet(process.env.CI);
  const spec = KERNEL_PROJECTS[project.name];
  if (!spec) throw new Error(`integration/kernel/global-setup.ts: unknown kernel project '${project.name}'`);
  let target: KernelTarget;
  try {
    const tapNet = tapNetworkFromEnv(process.env, spec.link);
    if (ci && !tapNet && !isSet(process.env.NVMEOF_ALLOW_USER_NET)) {
      const why = process.env.NVMEOF_NETNS_UNAVAILABLE ?? `TAP link ${spec.link} (NVMEOF_TAP${spec.link === 1 ? '' : '_2'}) is unset`;
      throw new Error(
        `kernel tests under CI must run in the test network namespace (${why}): ` +
          'run them through integration/kernel/in-netns.sh as root (npm test does), or set NVMEOF_ALLOW_USER_NET=1',
      );
    }
    target = await startKernelTarget({ kernel: spec.kernel, tapLink: spec.link });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (ci) throw e;
    const reason = message.split('\n')[0] ?? message;
    const info: KernelTargetInfo = { available: false, reason, suite: spec.suite };
    project.provide('kernelTarget', info);
    console.warn(`[${project.name}] kernel nvmet target unavailable: ${reason}; kernel tests skipped`);
    return undefined;
  }
  if (target.network === 'user') {
    console.warn(`[${project.name}] kernel nvmet target (Linux ${target.kernelVersion}) on user-mode networking (${target.userNetReason}): tests that follow discovery log addresses skip`);
  } else {
    console.info(`[${project.name}] kernel nvmet target (Linux ${target.kernelVersion}) at ${target.guestAddr} in ${target.netns ?? 'this network namespace'}, ready in ${target.bootMs} ms`);
  }
  // Everything but the functions crosses to the test workers; the console log goes as its path.
  const { exec: _exec, stop: _stop, died: _died, consoleLog, ...data } = target;
  const info: KernelTargetInfo = { available: true, suite: spec.suite, ...data, consoleLog: consoleLog() };

  project.provide('kernelTarget', info);
  return async () => {
    // A guest that died during the run fails its tests with connection errors; this says why it died.
    const death = target.died();
    await target.stop();
    if (death !== null) console.error(`[${project.name}] ${death}`);
  };
}
