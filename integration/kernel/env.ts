/**
 * Test-side access to the kernel target started by global-setup.ts: `kernelTargetFromInject()` for the target's
 * coordinates plus a control-channel client, and `describeKernel()`, a describe block that is skipped (with its
 * tests listed as skipped) when the target is unavailable outside CI.
 */
import { describe, inject } from 'vitest';
import { guestExec, readConsole } from './qemu-target.js';
import type { ExecOptions, ExecResult } from './qemu-target.js';

/** Serialisable description of the target, provided by global-setup.ts under the key 'kernelTarget'. */
export type KernelTargetInfo =
  | {
      available: true;
      /** '127.0.0.1' */
      host: string;
      /** Host port of nvmet port 1 (guest 4420). */
      port: number;
      /** Host port of the control channel (guest 5555). */
      ctlPort: number;
      openNqn: string;
      restrictedNqn: string;
      allowedHostNqn: string;
      discoveryNqn: string;
      /** Guest address as the target sees itself (appears in discovery log entries). */
      guestAddr: string;
      kernelVersion: string;
      /** Path of the guest's serial console log. */
      consoleLog: string;
      bootMs: number;
    }
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
};

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
  return {
    ...rest,
    exec: (cmd, opts) => guestExec(rest.host, rest.ctlPort, cmd, opts),
    readConsole: () => readConsole({ consoleLog: () => rest.consoleLog }),
  };
}

/** Stand-in passed to skipped suites, so their bodies can read fields while being collected. */
const UNAVAILABLE: KernelTargetEnv = {
  host: '127.0.0.1',
  port: 0,
  ctlPort: 0,
  openNqn: '',
  restrictedNqn: '',
  allowedHostNqn: '',
  discoveryNqn: '',
  guestAddr: '',
  kernelVersion: '',
  consoleLog: '',
  bootMs: 0,
  exec: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  readConsole: () => '',
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
