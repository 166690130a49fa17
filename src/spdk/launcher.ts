/**
 * Starts an SPDK nvmf_tgt for a test harness: without hugepages, without PCI access, without trace shared memory
 * or CPU core lock files, with its RPC socket in a private temporary directory; waits until the RPC server answers
 * and the framework is initialised; stops it with SIGTERM (then SIGKILL) and removes everything it created.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants, existsSync } from 'node:fs';
import { access, mkdtemp, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { debuglog } from 'node:util';
import { ConnectionFailedError, InvalidArgumentError, InvalidStateError, TimeoutError } from '../errors.js';
import { SpdkClient, type SpdkVersion } from './client.js';
import { applyTopology, removeTopology, type AppliedTopology, type SpdkTopology } from './topology.js';

const debug = debuglog('nvmeof');

/** Options of {@link startSpdkTarget}. */
export interface StartSpdkTargetOptions {
  /** An SPDK source tree that has been built; nvmf_tgt is `<spdkDir>/build/bin/nvmf_tgt`. */
  spdkDir?: string;
  /** Path of the nvmf_tgt binary (instead of `spdkDir`). */
  nvmfTgtPath?: string;
  /** RPC Unix socket path. Default: `spdk.sock` in a new private temporary directory. */
  rpcSocket?: string;
  /** Cores to run on, as SPDK's `-m` takes it (e.g. '0x1', '[0,1]'). Default '0x1'. */
  cpuMask?: string;
  /** Memory for DPDK in MiB (`-s`), allocated without hugepages. Default 1024. */
  memMiB?: number;
  /** More nvmf_tgt arguments, e.g. ['--interrupt-mode'] or ['-L', 'nvmf_tcp']. */
  extraArgs?: string[];
  /** Milliseconds to wait for the RPC server and framework initialisation. Default 60000. */
  startTimeoutMs?: number;
  /** Environment of the process. Default: this process's. */
  env?: NodeJS.ProcessEnv;
  /** Called with every line the target writes to stdout or stderr. */
  onOutput?: (line: string) => void;
}

/** How a target process ended. */
export interface SpdkExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running nvmf_tgt. */
export interface SpdkTarget {
  readonly pid: number;
  /** RPC socket path. */
  readonly rpcSocket: string;
  /** The nvmf_tgt binary that runs. */
  readonly binary: string;
  /** The command line arguments it was started with. */
  readonly args: readonly string[];
  /** A connected RPC client (closed by `stop()`). */
  readonly client: SpdkClient;
  /** `spdk_get_version` of the running target. */
  readonly version: SpdkVersion;
  /** Resolves when the process has exited. */
  readonly exited: Promise<SpdkExit>;
  /** True while the process runs. */
  alive(): boolean;
  /** The target's recent output (stdout and stderr, last 256 KiB). */
  output(): string;
  /** Builds a topology through the RPC client (see applyTopology). */
  applyTopology(t: SpdkTopology): Promise<AppliedTopology>;
  /** Removes a topology built by applyTopology (see removeTopology). */
  removeTopology(t: SpdkTopology): Promise<void>;
  /**
   * Stops the target: SIGTERM, then SIGKILL after `timeoutMs` (default 10000); removes the RPC socket, its lock file
   * and the private temporary directory. Idempotent.
   */
  stop(opts?: { timeoutMs?: number }): Promise<void>;
}

const OUTPUT_LIMIT = 256 * 1024;

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where DPDK may put its runtime directory (`<base>/dpdk`): /var/run for root, else $XDG_RUNTIME_DIR or /tmp. */
function dpdkRuntimeParents(env: NodeJS.ProcessEnv): string[] {
  const bases = process.getuid?.() === 0 ? ['/var/run'] : [env.XDG_RUNTIME_DIR ?? '/tmp'];
  return bases.map((b) => join(b, 'dpdk'));
}

/** Resolves the nvmf_tgt binary from options; throws InvalidArgumentError when it is missing. */
export async function resolveNvmfTgt(opts: Pick<StartSpdkTargetOptions, 'spdkDir' | 'nvmfTgtPath'>): Promise<string> {
  if (opts.nvmfTgtPath !== undefined) {
    if (!(await isExecutable(opts.nvmfTgtPath))) throw new InvalidArgumentError(`nvmf_tgt not found or not executable: ${opts.nvmfTgtPath}`);
    return opts.nvmfTgtPath;
  }
  if (opts.spdkDir === undefined) throw new InvalidArgumentError('give spdkDir (an SPDK build) or nvmfTgtPath');
  const candidates = [join(opts.spdkDir, 'build', 'bin', 'nvmf_tgt'), join(opts.spdkDir, 'bin', 'nvmf_tgt'), join(opts.spdkDir, 'nvmf_tgt')];
  for (const c of candidates) if (await isExecutable(c)) return c;
  throw new InvalidArgumentError(`no nvmf_tgt in ${opts.spdkDir} (looked for ${candidates.join(', ')}); build SPDK first (see docs/spdk.md)`);
}

/** Starts nvmf_tgt and waits until it serves RPCs with its framework initialised. */
export async function startSpdkTarget(opts: StartSpdkTargetOptions): Promise<SpdkTarget> {
  const binary = await resolveNvmfTgt(opts);
  const memMiB = opts.memMiB ?? 1024;
  if (!Number.isInteger(memMiB) || memMiB < 64) throw new InvalidArgumentError(`memMiB must be an integer >= 64, got ${memMiB}`);
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  if (!Number.isFinite(startTimeoutMs) || startTimeoutMs <= 0) throw new InvalidArgumentError(`startTimeoutMs must be > 0, got ${startTimeoutMs}`);
  const cpuMask = opts.cpuMask ?? '0x1';

  let privateDir: string | undefined;
  let rpcSocket: string;
  if (opts.rpcSocket !== undefined) {
    rpcSocket = opts.rpcSocket;
    if (existsSync(rpcSocket)) {
      // Never talk to somebody else's target by mistake.
      const other = await SpdkClient.connect({ socketPath: rpcSocket, connectTimeoutMs: 1000 }).catch(() => undefined);
      if (other) {
        await other.close();
        throw new InvalidArgumentError(`an SPDK application already serves RPCs on ${rpcSocket}`);
      }
    }
  } else {
    privateDir = await mkdtemp(join(tmpdir(), 'nvmeof-spdk-'));
    rpcSocket = join(privateDir, 'spdk.sock');
  }

  // DPDK always creates an (empty, with --no-shconf) runtime directory <runtime>/dpdk/spdk_pid<pid>; remember which
  // parent directories existed so that stop() removes only what this target created.
  const dpdkParents = dpdkRuntimeParents(opts.env ?? process.env);
  const dpdkParentsExisting = new Set(dpdkParents.filter((d) => existsSync(d)));

  const args = [
    '-m', cpuMask,
    '--no-huge',
    '-s', String(memMiB),
    '-r', rpcSocket,
    '--no-pci',
    '--disable-cpumask-locks',
    '--num-trace-entries', '0',
    ...(opts.extraArgs ?? []),
  ];
  debug('spdk: starting %s %s', binary, args.join(' '));
  const child: ChildProcess = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });

  let out = '';
  let partial = '';
  const onChunk = (chunk: Buffer): void => {
    const text = chunk.toString('utf8');
    out += text;
    if (out.length > OUTPUT_LIMIT) out = out.slice(out.length - OUTPUT_LIMIT);
    if (opts.onOutput) {
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) opts.onOutput(l);
    }
  };
  child.stdout?.on('data', onChunk);
  child.stderr?.on('data', onChunk);

  let running = true;
  const exited = new Promise<SpdkExit>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false;
      resolve({ code, signal });
    });
    child.once('error', (err) => {
      running = false;
      out += `\n[spawn error: ${err.message}]\n`;
      resolve({ code: null, signal: null });
    });
  });
  // If this process exits without stop(), take the target down with it.
  const killOnExit = (): void => {
    if (running) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const cleanupFiles = async (): Promise<void> => {
    if (privateDir) await rm(privateDir, { recursive: true, force: true });
    else {
      await rm(rpcSocket, { force: true });
      await rm(`${rpcSocket}.lock`, { force: true });
    }
    if (child.pid !== undefined && !args.includes('-i') && !args.includes('--shm-id')) {
      for (const parent of dpdkParents) {
        await rm(join(parent, `spdk_pid${child.pid}`), { recursive: true, force: true });
        if (!dpdkParentsExisting.has(parent)) await rmdir(parent).catch(() => undefined);
      }
    }
  };

  const fail = async (message: string, timedOut = false): Promise<never> => {
    if (running) child.kill('SIGKILL');
    await exited;
    process.off('exit', killOnExit);
    await cleanupFiles();
    const tail = out.trim().split('\n').slice(-15).join('\n');
    const full = `${message}\nnvmf_tgt output (last lines):\n${tail}`;
    throw timedOut ? new TimeoutError(full) : new ConnectionFailedError(full);
  };

  const deadline = Date.now() + startTimeoutMs;
  let client: SpdkClient | undefined;
  while (!client) {
    if (!running) {
      const e = await exited;
      return fail(`nvmf_tgt exited during start-up (code ${e.code}, signal ${e.signal})`);
    }
    if (Date.now() > deadline) return fail(`nvmf_tgt did not serve RPCs on ${rpcSocket} within ${startTimeoutMs} ms`, true);
    if (existsSync(rpcSocket)) {
      client = await SpdkClient.connect({ socketPath: rpcSocket, connectTimeoutMs: 2000 }).catch(() => undefined);
    }
    if (!client) await sleep(50);
  }
  let version: SpdkVersion;
  try {
    const remaining = Math.max(1, deadline - Date.now());
    await client.frameworkWaitInit({ timeoutMs: remaining });
    version = await client.spdkGetVersion({ timeoutMs: Math.max(1000, deadline - Date.now()) });
  } catch (e) {
    client.destroy();
    if (e instanceof TimeoutError) return fail(`nvmf_tgt framework not initialised within ${startTimeoutMs} ms`, true);
    return fail(`nvmf_tgt start-up failed: ${(e as Error).message}`);
  }
  debug('spdk: %s running as pid %d, RPC %s', version.version, child.pid, rpcSocket);

  let stopping: Promise<void> | undefined;
  const rpc = client;
  const target: SpdkTarget = {
    pid: child.pid as number,
    rpcSocket,
    binary,
    args,
    client: rpc,
    version,
    exited,
    alive: () => running,
    output: () => out,
    applyTopology: (t) => {
      if (!running) return Promise.reject(new InvalidStateError('nvmf_tgt is not running'));
      return applyTopology(rpc, t);
    },
    removeTopology: (t) => {
      if (!running) return Promise.reject(new InvalidStateError('nvmf_tgt is not running'));
      return removeTopology(rpc, t);
    },
    stop: (stopOpts = {}) => {
      stopping ??= (async () => {
        const timeoutMs = stopOpts.timeoutMs ?? 10_000;
        await rpc.close().catch(() => undefined);
        if (running) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => {
            if (running) child.kill('SIGKILL');
          }, timeoutMs);
          await exited;
          clearTimeout(timer);
        }
        process.off('exit', killOnExit);
        await cleanupFiles();
        debug('spdk: pid %d stopped', child.pid);
      })();
      return stopping;
    },
  };
  return target;
}
