/**
 * Test-side access to the kernel target started by global-setup.ts: `kernelTargetFromInject()` for the target's
 * coordinates plus a control-channel client, and `describeKernel()`, a describe block named after the kernel it runs
 * on, skipped (with its tests listed as skipped) when the target is unavailable outside CI.
 *
 * Two vitest projects use this: 'kernel' (Linux 7.x from trixie-backports, the whole suite) and 'kernel-6.1'
 * (Debian 12's Linux 6.1, the smoke set). Tests outside the smoke set are declared with `itFull`, which registers
 * them only where the whole suite runs.
 *
 * Topology (guest/nvmet-setup.sh): nvmet port 1 (guest 4420: open, restricted, multipath; refers to port 2),
 * port 2 (4421: multipath), port 3 (8009: discovery only, refers to ports 1 and 2). Tests that follow discovery
 * log entries need `discoveryReachable` (TAP mode, inside in-netns.sh's namespace): call
 * `target.skipUnlessReachable(ctx)` first.
 */
import { Buffer } from 'node:buffer';
import { describe, inject, it } from 'vitest';
import type { TestContext, TestFunction } from 'vitest';
import { guestExecWithConsole, readConsole, virtioNetState } from './qemu-target.js';
import type { ExecOptions, ExecResult, KernelTarget, TargetPorts } from './qemu-target.js';

export type { AnaGroupInfo, AnaStateName, TargetPort, TargetPorts } from './qemu-target.js';

/** 'full': the project runs every kernel test; 'smoke': only the smoke set (tests not declared with `itFull`). */
export type KernelSuite = 'full' | 'smoke';

/** Serialisable description of the target, provided by global-setup.ts under the key 'kernelTarget'. */
export type KernelTargetInfo =
  | ({ available: true; suite: KernelSuite } & Omit<KernelTarget, 'exec' | 'stop' | 'died' | 'consoleLog'> & {
      /** Path of the guest's serial console log. */
      consoleLog: string;
    })
  | { available: false; reason: string; suite: KernelSuite };

/** DH-HMAC-CHAP settings of one host on the kernel target (nvmet configfs `hosts/<hostnqn>/dhchap_*`). */
export interface DhchapHostConfig {
  /** The host's secret, `DHHC-1:<hh>:<base64>:` (configfs `dhchap_key`); '' clears it. */
  key?: string;
  /** The controller's secret for bidirectional authentication (`dhchap_ctrl_key`); '' clears it. */
  ctrlKey?: string;
  /** Hash function (`dhchap_hash`): 'hmac(sha256)', 'hmac(sha384)' or 'hmac(sha512)'. */
  hash?: 'hmac(sha256)' | 'hmac(sha384)' | 'hmac(sha512)';
  /** DH group (`dhchap_dhgroup`): 'null' (no DH exchange) or an RFC 7919 group. */
  dhgroup?: 'null' | 'ffdhe2048' | 'ffdhe3072' | 'ffdhe4096' | 'ffdhe6144' | 'ffdhe8192';
}

declare module 'vitest' {
  export interface ProvidedContext {
    kernelTarget: KernelTargetInfo;
  }
}

/** What a kernel test gets: the target's coordinates and a way to run commands in the guest. */
export type KernelTargetEnv = Omit<Extract<KernelTargetInfo, { available: true }>, 'available'> & {
  /** 'Linux <release>': how test titles and messages name the kernel. */
  label: string;
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
  /**
   * Creates subsystem `nqn` (no namespace, on no port; `nvmet-ctl subsys-add`). `allowAnyHost` defaults to true;
   * with false only the hosts given to {@link allowHost} may connect.
   */
  addSubsystem(nqn: string, opts?: { allowAnyHost?: boolean }): Promise<void>;
  /** Removes subsystem `nqn`: unlinked from every port, its namespaces and allowed-host links removed. */
  removeSubsystem(nqn: string): Promise<void>;
  /** Lets `hostnqn` connect to subsystem `subnqn` (creating the host entry when missing). */
  allowHost(subnqn: string, hostnqn: string): Promise<void>;
  /** Takes `hostnqn` off the allowed hosts of `subnqn`. */
  disallowHost(subnqn: string, hostnqn: string): Promise<void>;
  /**
   * Sets the DH-HMAC-CHAP attributes of host `hostnqn` (creating its entry when missing); fields left out keep their
   * values. Secrets never appear in the command's error messages. Needs a kernel with in-band authentication
   * (7.x; Linux 6.1 nvmet has none and this rejects).
   */
  setHostAuth(hostnqn: string, config: DhchapHostConfig): Promise<void>;
  /** Removes host entry `hostnqn` (from every subsystem's allowed hosts first). */
  removeHost(hostnqn: string): Promise<void>;
  /**
   * Adds nvmet port `portid` on guest TCP port `trsvcid` that requires TLS 1.3 (`addr_tsas` tls1.3, handshakes by
   * tlshd in the guest); link a subsystem to it (`nvmetCtl('link', portid, nqn)`) to make it listen. Linux 7.x guests
   * only. Reachable from the tests in TAP mode (no port forward exists for it in user mode).
   */
  addTlsPort(portid: number, trsvcid: number): Promise<void>;
  /** Removes port `portid` (its subsystem links and referrals first). */
  removePort(portid: number): Promise<void>;
  /**
   * Puts a TLS PSK into the guest kernel's .nvme keyring under `identity` (e.g. "NVMe0R01 <hostnqn> <subnqn>"), where
   * tlshd finds it for the handshake. The key never appears in error messages.
   */
  addPsk(identity: string, psk: Uint8Array): Promise<void>;
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

/** nvmet-ctl wrapper for commands whose arguments hold secrets: errors name the command, never its arguments. */
function makeSecretCtl(exec: KernelTargetEnv['exec']): (sub: string, ...args: string[]) => Promise<string> {
  return async (sub, ...args) => {
    const r = await exec(['nvmet-ctl', sub, ...args.map(shq)].join(' '), { secret: true });
    if (r.code !== 0) throw new Error(`nvmet-ctl ${sub} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
    return r.stdout.trim();
  };
}

/** The subsystem, host and authentication helpers of {@link KernelTargetEnv}, over `nvmet-ctl`. */
function makeConfigHelpers(
  exec: KernelTargetEnv['exec'],
  ctl: KernelTargetEnv['nvmetCtl'],
): Pick<
  KernelTargetEnv,
  'addSubsystem' | 'removeSubsystem' | 'allowHost' | 'disallowHost' | 'setHostAuth' | 'removeHost' | 'addTlsPort' | 'removePort' | 'addPsk'
> {
  const secretCtl = makeSecretCtl(exec);
  return {
    addSubsystem: async (nqn, opts = {}) => {
      await ctl('subsys-add', nqn, opts.allowAnyHost === false ? 0 : 1);
    },
    removeSubsystem: async (nqn) => {
      await ctl('subsys-del', nqn);
    },
    allowHost: async (subnqn, hostnqn) => {
      await ctl('allow-host', subnqn, hostnqn);
    },
    disallowHost: async (subnqn, hostnqn) => {
      await ctl('disallow-host', subnqn, hostnqn);
    },
    setHostAuth: async (hostnqn, config) => {
      const args: string[] = [];
      if (config.key !== undefined) args.push(`key=${config.key}`);
      if (config.ctrlKey !== undefined) args.push(`ctrl_key=${config.ctrlKey}`);
      if (config.hash !== undefined) args.push(`hash=${config.hash}`);
      if (config.dhgroup !== undefined) args.push(`dhgroup=${config.dhgroup}`);
      await secretCtl('host-auth', hostnqn, ...args);
    },
    removeHost: async (hostnqn) => {
      await ctl('host-del', hostnqn);
    },
    addTlsPort: async (portid, trsvcid) => {
      await ctl('tls-port-add', portid, trsvcid);
    },
    removePort: async (portid) => {
      await ctl('port-del', portid);
    },
    addPsk: async (identity, psk) => {
      await secretCtl('psk-add', identity, Buffer.from(psk).toString('hex'));
    },
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
  const exec: KernelTargetEnv['exec'] = (cmd, opts) => guestExecWithConsole(rest.host, rest.ctlPort, rest.consoleLog, cmd, opts, () => virtioNetState(rest.qmpSocket));
  const nvmetCtl = makeNvmetCtl(exec);
  return {
    ...rest,
    label: `Linux ${rest.kernelVersion}`,
    exec,
    readConsole: () => readConsole({ consoleLog: () => rest.consoleLog }),
    nvmetCtl,
    skipUnlessReachable: makeSkipUnlessReachable(rest),
    ...makeConfigHelpers(exec, nvmetCtl),
  };
}

/** The suite of the running project ('full' when the target description is missing). */
function currentSuite(): KernelSuite {
  try {
    return inject('kernelTarget').suite;
  } catch {
    return 'full';
  }
}

/**
 * `it` for a kernel test outside the smoke set: registered only in the project that runs the whole suite
 * ('kernel'); the smoke project ('kernel-6.1') does not declare it at all.
 */
export function itFull(name: string, fn: TestFunction, timeout?: number): void {
  if (currentSuite() === 'full') it(name, fn, timeout);
}

/** Stand-in passed to skipped suites, so their bodies can read fields while being collected. */
const unavailablePort = (portid: number): TargetPorts['nvme1'] => ({ portid, guestPort: 0, host: '127.0.0.1', port: 0 });
const UNAVAILABLE: KernelTargetEnv = {
  suite: 'full',
  kernel: 'backports',
  label: 'kernel unavailable',
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
  qmpSocket: '',
  bootMs: 0,
  exec: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  readConsole: () => '',
  nvmetCtl: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  skipUnlessReachable: (ctx) => ctx.skip('kernel nvmet target unavailable'),
  addSubsystem: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  removeSubsystem: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  allowHost: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  disallowHost: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  setHostAuth: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  removeHost: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  addTlsPort: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  removePort: () => Promise.reject(new Error('kernel nvmet target unavailable')),
  addPsk: () => Promise.reject(new Error('kernel nvmet target unavailable')),
};

/**
 * `describe` for tests against the kernel target: `fn` receives the target, and the block's title ends with the
 * kernel it runs on ("... [Linux 7.3.4+deb13-amd64]"). When the target is unavailable the suite is skipped (its
 * tests are reported as skipped; `fn` still runs for collection, with a stand-in target).
 */
export function describeKernel(name: string, fn: (target: KernelTargetEnv) => void): void {
  const target = kernelTargetFromInject();
  if (target) describe(`${name} [${target.label}]`, () => fn(target));
  else describe.skip(`${name} [kernel unavailable]`, () => fn(UNAVAILABLE));
}
