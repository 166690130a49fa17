/**
 * Test-side access to the kernel target started by global-setup.ts: `kernelTargetFromInject()` for the target's
 * coordinates plus a control-channel client, and `describeKernel()`, a describe block that is skipped (with its
 * tests listed as skipped) when the target is unavailable outside CI.
 *
 * Topology (guest/nvmet-setup.sh): nvmet port 1 (guest 4420: open, restricted, multipath; refers to port 2),
 * port 2 (4421: multipath), port 3 (8009: discovery only, refers to ports 1 and 2). Tests that follow discovery
 * log entries need `discoveryReachable` (TAP mode, inside in-netns.sh's namespace): call
 * `target.skipUnlessReachable(ctx)` first.
 */
import { describe, inject } from 'vitest';
import type { TestContext } from 'vitest';
import { guestExec, readConsole } from './qemu-target.js';
import type { ExecOptions, ExecResult, KernelTarget, TargetPorts } from './qemu-target.js';

export type { AnaGroupInfo, AnaStateName, TargetPort, TargetPorts } from './qemu-target.js';

/** Serialisable description of the target, provided by global-setup.ts under the key 'kernelTarget'. */
export type KernelTargetInfo =
  | ({ available: true } & Omit<KernelTarget, 'exec' | 'stop' | 'consoleLog'> & {
      /** Path of the guest's serial console log. */
      consoleLog: string;
    })
  | { available: false; reason: string };

declare module 'vitest' {
  export interface ProvidedContext {
    kernelTarget: KernelTargetInfo;
  }
}

/** What a kernel test gets: the target's coordinates and a way to run commands in the guest. */
export type KernelTargetEnv = Omit<Extract<KernelTargetInfo, { available: true }>, 'available'> & {
  /** Runs `cmd` with the guest's /bin/sh (stdin /dev/null). */
  exec(cmd: string, opts?: ExecOptions): Promise<ExecResult>;
  /** The guest console log so far (kernel messages such as nvmet's "creating nvm controller"). */
  readConsole(): string;
  /**
   * Runs `nvmet-ctl <args...>` in the guest (arguments are shell-quoted) and resolves with its result line
   * ("ok ..."); rejects with the command's error message when it exits non-zero.
   */
  nvmetCtl(...args: Array<string | number>): Promise<string>;
  /** Skips the running test (with the reason) unless discovery log addresses are reachable (TAP mode). */
  skipUnlessReachable(ctx: Pick<TestContext, 'skip'>): void;
};

/** Quotes `s` for a POSIX shell. */
function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function makeNvmetCtl(exec: KernelTargetEnv['exec']): KernelTargetEnv['nvmetCtl'] {
  return async (...args) => {
    const cmd = ['nvmet-ctl', ...args.map((a) => shq(String(a)))].join(' ');
    const r = await exec(cmd);
    if (r.code !== 0) {
      throw new Error(`${cmd} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
    }
    return r.stdout.trim();
  };
}

function makeSkipUnlessReachable(info: { discoveryReachable: boolean; userNetReason: string }): KernelTargetEnv['skipUnlessReachable'] {
  return (ctx) => {
    if (!info.discoveryReachable) {
      ctx.skip(`discovery log addresses are not reachable on user-mode networking (${info.userNetReason}); run through integration/kernel/in-netns.sh as root`);
    }
  };
}

/**
 * The kernel target provided by the global setup, or null when it is unavailable (the global setup has already
 * printed why, once).
 */
export function kernelTargetFromInject(): KernelTargetEnv | null {
  let info: KernelTargetInfo | undefined;
  try {
    info = inject('kernelTarget');
  } catch {
    info = undefined;
  }
  if (!info || !info.available) return null;
  const { available: _available, ...rest } = info;
  const exec: KernelTargetEnv['exec'] = (cmd, opts) => guestExec(rest.host, rest.ctlPort, cmd, opts);
  return {
    ...rest,
    exec,
    readConsole: () => readConsole({ consoleLog: () => rest.consoleLog }),
    nvmetCtl: makeNvmetCtl(exec),
    skipUnlessReachable: makeSkipUnlessReachable(rest),
  };
}

/** Stand-in passed to skipped suites, so their bodies can read fields while being collected. */
const unavailablePort = (portid: number): TargetPorts['nvme1'] => ({ portid, guestPort: 0, host: '127.0.0.1', port: 0 });
const UNAVAILABLE: KernelTargetEnv = {
  host: '127.0.0.1',
  port: 0,
  ctlPort: 0,
  network: 'user',
  userNetReason: 'kernel nvmet target unavailable',
  netns: null,
  discoveryReachable: false,
  ports: { nvme1: unavailablePort(1), nvme2: unavailablePort(2), discovery: unavailablePort(3) },
  openNqn: '',
  restrictedNqn: '',
  allowedHostNqn: '',
  discoveryNqn: '',
  multipathNqn: '',
  anaGroups: [],
  guestAddr: '',
  kernelVersion: '',
  consoleLog: '',
  bootMs: 0,
  exec: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  readConsole: () => '',
  nvmetCtl: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  skipUnlessReachable: (ctx) => ctx.skip('kernel nvmet target unavailable'),
};

/**
 * `describe` for tests against the kernel target: `fn` receives the target. When the target is unavailable the
 * suite is skipped (its tests are reported as skipped; `fn` still runs for collection, with a stand-in target).
 */
export function describeKernel(name: string, fn: (target: KernelTargetEnv) => void): void {
  const target = kernelTargetFromInject();
  if (target) describe(name, () => fn(target));
  else describe.skip(name, () => fn(UNAVAILABLE));
}
