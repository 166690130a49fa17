/**
 * The Linux kernel NVMe/TCP target (nvmet-tcp) for integration tests: a Debian kernel booted under QEMU (TCG)
 * with a busybox initramfs that builds a fixed nvmet topology (see guest/nvmet-setup.sh) and serves a shell
 * control channel on guest port 5555 (with /bin/nvmet-ctl to change the topology at run time).
 *
 * Two network modes:
 * - TAP (when started inside the network namespace made by in-netns.sh, which sets NVMEOF_TAP etc.): QEMU uses the
 *   namespace's TAP device and the guest takes NVMEOF_GUEST_ADDR on its subnet. Tests connect to the guest address
 *   and its real ports, so every address in a discovery log (subsystem entries and referrals) is reachable.
 * - user (otherwise): QEMU user-mode networking forwards each guest port to an ephemeral port on 127.0.0.1.
 *   Discovery log entries then carry the guest's own address (10.0.2.15), which the host cannot reach.
 *
 * Two kernels (see {@link KernelKind}): the newest Linux of Debian trixie-backports (7.x: reservations,
 * DH-HMAC-CHAP) and Debian 12's own Linux 6.1, the oldest target the library supports. Each has its own TAP link
 * (link 1 and link 2 of in-netns.sh), so both guests can run at once.
 *
 * Node built-ins only. `prepare.sh` (run on every start; fast when the cache is current) installs the host
 * packages and builds the kernel + initramfs caches.
 */
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Subsystem that admits any host: ns 1 = 64 MiB brd RAM disk (512 B blocks), ns 2 = 16 MiB tmpfs file (4 KiB blocks). */
export const OPEN_NQN = 'nqn.2014-08.org.nvmexpress:nvmf-test-open';
/** Subsystem that admits only {@link ALLOWED_HOST_NQN}: ns 1 = 64 MiB brd RAM disk. */
export const RESTRICTED_NQN = 'nqn.2014-08.org.nvmexpress:nvmf-test-restricted';
/** The one host NQN allowed into {@link RESTRICTED_NQN}. */
export const ALLOWED_HOST_NQN = 'nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000001';
/** Well-known discovery subsystem NQN, served by the kernel on every port. */
export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';
/**
 * Subsystem that admits any host, exposed on nvmet ports 1 and 2: ns 1 = 16 MiB (512 B blocks) in ANA group 2,
 * ns 2 = 8 MiB (512 B blocks) in ANA group 3. See {@link MULTIPATH_ANA_GROUPS}.
 */
export const MULTIPATH_NQN = 'nqn.2014-08.org.nvmexpress:nvmf-test-multipath';
/**
 * Subsystem that admits no host, linked to the discovery port only so that nvmet listens there (nvmet listens on a
 * port only while a subsystem is linked to it). It never appears in a discovery log.
 */
export const ANCHOR_NQN = 'nqn.2014-08.org.nvmexpress:nvmf-test-discovery-anchor';
/** The guest's address on QEMU's user-mode network (what discovery log entries carry in user mode). */
export const USER_NET_GUEST_ADDR = '10.0.2.15';
/** Guest TCP port of nvmet port 1. */
export const GUEST_NVME_PORT = 4420;
/** Guest TCP port of nvmet port 2. */
export const GUEST_NVME_PORT_2 = 4421;
/** Guest TCP port of nvmet port 3, the discovery port. */
export const GUEST_DISCOVERY_PORT = 8009;
/** Guest TCP port of the shell control channel. */
export const GUEST_CONTROL_PORT = 5555;

/** ANA state names as nvmet's configfs spells them (`ports/N/ana_groups/G/ana_state`). */
export type AnaStateName = 'optimized' | 'non-optimized' | 'inaccessible' | 'persistent-loss' | 'change';

/** One ANA group of {@link MULTIPATH_NQN} and its state at boot on each I/O port. */
export interface AnaGroupInfo {
  /** ANA group ID (ANAGRPID). */
  grpid: number;
  /** Namespaces of the multipath subsystem in this group. */
  nsids: number[];
  /** State at boot as seen through nvmet port 1 (`nvme1`) and port 2 (`nvme2`). */
  initialState: { nvme1: AnaStateName; nvme2: AnaStateName };
}

/**
 * ANA groups of {@link MULTIPATH_NQN}. Group 1 (nvmet's default group, holding the open and restricted
 * subsystems' namespaces) is optimized on every port and is left alone, so ANA tests never disturb other tests.
 */
export const MULTIPATH_ANA_GROUPS: readonly AnaGroupInfo[] = [
  { grpid: 2, nsids: [1], initialState: { nvme1: 'optimized', nvme2: 'non-optimized' } },
  { grpid: 3, nsids: [2], initialState: { nvme1: 'non-optimized', nvme2: 'optimized' } },
];

/**
 * Which kernel a target boots: 'backports' = the newest linux-image-amd64 of Debian trixie-backports (Linux 7.x,
 * cache `<cache>/backports`), 'debian' = Debian 12's linux-image-amd64 (Linux 6.1, cache `<cache>`).
 */
export type KernelKind = 'backports' | 'debian';

/** The cache directory of `kind` under the cache root that prepare.sh fills. */
export function kernelCacheDir(kind: KernelKind, cacheRoot: string = DEFAULT_CACHE_DIR): string {
  return kind === 'backports' ? path.join(cacheRoot, 'backports') : cacheRoot;
}

/** An nvmet port and how the tests reach it. */
export interface TargetPort {
  /** nvmet port ID: configfs `ports/<portid>`, `nvmet-ctl` port argument, PORTID in discovery log entries. */
  portid: number;
  /** TCP port nvmet listens on in the guest (TRSVCID in discovery log entries). */
  guestPort: number;
  /** Address the tests connect to: the guest address (TAP) or 127.0.0.1 (user mode). */
  host: string;
  /** TCP port the tests connect to: `guestPort` (TAP) or the forwarded loopback port (user mode). */
  port: number;
}

/** The target's nvmet ports. */
export interface TargetPorts {
  /** nvmet port 1, guest 4420: open, restricted and multipath subsystems; refers to port 2. */
  nvme1: TargetPort;
  /** nvmet port 2, guest 4421: multipath subsystem. */
  nvme2: TargetPort;
  /** nvmet port 3, guest 8009: discovery only; refers to ports 1 and 2. */
  discovery: TargetPort;
}

/** The TAP link prepared by in-netns.sh (or by a caller) for QEMU. */
export interface TapNetwork {
  /** TAP device name, in the current network namespace. */
  tap: string;
  /** Name of the network namespace, when known. */
  netns: string | null;
  /** Address of the TAP device (the test process's side of the link). */
  hostAddr: string;
  /** Address the guest takes on the link. */
  guestAddr: string;
  /** Prefix length of the link's subnet. */
  prefixLen: number;
}

/**
 * The TAP link described by in-netns.sh's environment, or null when its TAP variable is unset. Link 1: NVMEOF_TAP,
 * NVMEOF_TAP_HOST_ADDR, NVMEOF_GUEST_ADDR, NVMEOF_NET_PREFIXLEN; link 2: the same names with the suffix `_2`;
 * both: NVMEOF_NETNS.
 */
export function tapNetworkFromEnv(env: NodeJS.ProcessEnv = process.env, link: 1 | 2 = 1): TapNetwork | null {
  const sfx = link === 1 ? '' : `_${link}`;
  const tap = env[`NVMEOF_TAP${sfx}`];
  if (!tap) return null;
  const guestAddr = env[`NVMEOF_GUEST_ADDR${sfx}`];
  const hostAddr = env[`NVMEOF_TAP_HOST_ADDR${sfx}`];
  if (!guestAddr || !hostAddr || !net.isIPv4(guestAddr) || !net.isIPv4(hostAddr)) {
    throw new KernelTargetError(
      `NVMEOF_TAP${sfx}=${tap} needs IPv4 NVMEOF_GUEST_ADDR${sfx} and NVMEOF_TAP_HOST_ADDR${sfx} (got ${JSON.stringify(guestAddr)}, ${JSON.stringify(hostAddr)})`,
    );
  }
  const rawPrefix = env[`NVMEOF_NET_PREFIXLEN${sfx}`];
  const prefixLen = Number(rawPrefix ?? 24);
  if (!Number.isInteger(prefixLen) || prefixLen < 8 || prefixLen > 30) {
    throw new KernelTargetError(`NVMEOF_NET_PREFIXLEN${sfx} must be 8..30, got ${JSON.stringify(rawPrefix)}`);
  }
  return { tap, netns: env.NVMEOF_NETNS || null, hostAddr, guestAddr, prefixLen };
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
/** Default cache directory for the kernel image and initramfs. */
export const DEFAULT_CACHE_DIR = process.env.NVMEOF_KERNEL_CACHE ?? path.join(REPO, '.cache', 'kernel-target');

/** Result of a command run in the guest. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status of the command (as `$?` in the guest shell). */
  code: number;
}

/** Options for {@link guestExec}. */
export interface ExecOptions {
  /** Time limit for the whole exchange; default 60 s. */
  timeoutMs?: number;
  /** The command carries a secret (a key): error messages do not quote it. */
  secret?: boolean;
}

/** A running kernel target. */
export interface KernelTarget {
  /** Which kernel it runs. */
  kernel: KernelKind;
  /** Address of nvmet port 1 (= `ports.nvme1.host`): the guest address (TAP) or '127.0.0.1' (user mode). */
  host: string;
  /** TCP port of nvmet port 1 (= `ports.nvme1.port`): 4420 (TAP) or a forwarded loopback port (user mode). */
  port: number;
  /** TCP port of the control channel on `host`: 5555 (TAP) or a forwarded loopback port (user mode). */
  ctlPort: number;
  /** 'tap': on the TAP link of a test network namespace; 'user': QEMU user-mode networking. */
  network: 'tap' | 'user';
  /** Why the target runs on user-mode networking ('' in TAP mode). */
  userNetReason: string;
  /** Network namespace the target's TAP link lives in (TAP mode, when known), else null. */
  netns: string | null;
  /** The guest's own address: what discovery log entries and referrals carry. */
  guestAddr: string;
  /** True when every address in the discovery log is reachable from the test process (TAP mode). */
  discoveryReachable: boolean;
  /** nvmet ports: see {@link TargetPorts}. */
  ports: TargetPorts;
  openNqn: string;
  restrictedNqn: string;
  allowedHostNqn: string;
  discoveryNqn: string;
  /** {@link MULTIPATH_NQN}. */
  multipathNqn: string;
  /** {@link MULTIPATH_ANA_GROUPS}. */
  anaGroups: AnaGroupInfo[];
  /** Guest kernel release (`uname -r`). */
  kernelVersion: string;
  /** Milliseconds from spawning QEMU to ready. */
  bootMs: number;
  /** Runs `cmd` with the guest's /bin/sh (busybox ash), stdin /dev/null. */
  exec(cmd: string, opts?: ExecOptions): Promise<ExecResult>;
  /** Kills QEMU, waits for it to exit and removes the temporary files (kept when it had died). Idempotent. */
  stop(): Promise<void>;
  /**
   * Null while the guest is well (and after stop()); once QEMU has exited on its own or the guest's console shows a
   * kernel panic, BUG, Oops or hung task: what happened, with QEMU's stderr and the console tail.
   */
  died(): string | null;
  /** Path of the serial console log (kernel messages, nvmet's connect/disconnect lines). */
  consoleLog(): string;
  /** Path of QEMU's QMP socket (see {@link virtioNetState}). */
  qmpSocket: string;
}

/** Options for {@link startKernelTarget}. */
export interface StartKernelTargetOptions {
  /** Which kernel to boot; default 'backports'. */
  kernel?: KernelKind;
  /** Cache root that prepare.sh fills (the kernel's own cache is {@link kernelCacheDir} under it). */
  cacheDir?: string;
  /** Time limit from spawning QEMU to ready; default 120 s. */
  bootTimeoutMs?: number;
  /** Guest memory; default 512 MiB. */
  memoryMiB?: number;
  /**
   * 'user' for user-mode networking, or a TAP link; default: the link in-netns.sh describes in the environment
   * ({@link tapNetworkFromEnv}, link `tapLink`), else user-mode networking.
   */
  network?: 'user' | TapNetwork;
  /** Which TAP link of in-netns.sh to use by default; default 1 for 'backports', 2 for 'debian'. */
  tapLink?: 1 | 2;
}

/** Thrown when the target cannot be prepared or started. The message's first line says why. */
export class KernelTargetError extends Error {
  override name = 'KernelTargetError';
}

// ---------------------------------------------------------------------------------------------------------------
// Control channel client
// ---------------------------------------------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The guest closed the connection without a byte: nothing ran (its listener refused it); safe to retry. */
class NotServedError extends KernelTargetError {}

/** Concurrent control connections per endpoint from this process (the guest listener's backlog is small). */
const MAX_CONCURRENT_EXECS = 4;
const slots = new Map<string, { active: number; waiting: Array<() => void> }>();

async function withSlot<T>(key: string, fn: () => Promise<T>): Promise<T> {
  let s = slots.get(key);
  if (!s) slots.set(key, (s = { active: 0, waiting: [] }));
  const slot = s;
  if (slot.active >= MAX_CONCURRENT_EXECS) await new Promise<void>((resolve) => slot.waiting.push(resolve));
  slot.active++;
  try {
    return await fn();
  } finally {
    slot.active--;
    slot.waiting.shift()?.();
  }
}

/**
 * Runs `cmd` in the guest over the control channel at host:ctlPort. One TCP connection per call; calls may run
 * concurrently and from any process. The command text is passed verbatim (a quoted here-document) to a fresh
 * /bin/sh with stdin /dev/null; stdout and stderr are returned separately, byte-exact (decoded as UTF-8).
 * Rejects with {@link KernelTargetError} on timeout (the guest command may still be running then).
 */
export async function guestExec(host: string, ctlPort: number, cmd: string, opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  return withSlot(`${host}:${ctlPort}`, async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await execOnce(host, ctlPort, cmd, Math.max(1, deadline - Date.now()), timeoutMs, opts);
      } catch (e) {
        if (!(e instanceof NotServedError) || attempt >= 20 || Date.now() + 100 >= deadline) throw e;
        await sleep(Math.min(50 * attempt, 500));
      }
    }
  });
}

/**
 * Extra virtio-net device options per guest kernel. Linux 6.1's NIC under QEMU 7.2 (TCG) sometimes stops sending
 * under load: the guest has queued packets in the transmit ring that QEMU never takes (its shadow of the available
 * index stands still: a lost notification), while the guest still runs and receives. Without event-index
 * notification suppression the two sides use the plain flag instead.
 */
const NIC_OPTIONS: Record<KernelKind, string> = { backports: '', debian: ',event_idx=off' };

/**
 * {@link guestExec}, for a guest whose console log is at `consolePath`: when the command times out (a guest that
 * stopped answering without a panic on its console: stuck, or starved of CPU), the error carries the console's tail.
 */
export async function guestExecWithConsole(
  host: string,
  ctlPort: number,
  consolePath: string,
  cmd: string,
  opts: ExecOptions = {},
  diagnose?: () => Promise<string>,
): Promise<ExecResult> {
  try {
    return await guestExec(host, ctlPort, cmd, opts);
  } catch (e) {
    if (!(e instanceof KernelTargetError) || !/ timed out after /.test(e.message)) throw e;
    const more = diagnose ? `\n${await diagnose().catch((err: Error) => `(diagnosis failed: ${err.message})`)}` : '';
    throw new KernelTargetError(`${e.message}\n--- console tail (${consolePath}) ---\n${tail(readTail(consolePath).trimEnd(), 40) || '(empty)'}${more}`);
  }
}

/**
 * Runs QMP commands on a QEMU monitor socket and returns each command's `return` (or its `error`), in order.
 * For diagnosis: a guest that stops answering shows, through `x-query-virtio-queue-status`, whether its NIC's
 * queues still move (descriptors the guest made available against those QEMU has used).
 */
export function qmpQuery(socketPath: string, commands: { execute: string; arguments?: Record<string, unknown> }[], timeoutMs = 5000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const out: unknown[] = [];
    let buf = '';
    let sent = -1; // -1: waiting for the greeting; 0: qmp_capabilities sent; n: commands[n - 1] sent
    const timer = setTimeout(() => done(new Error(`QMP at ${socketPath}: no answer in ${timeoutMs} ms`)), timeoutMs);
    const done = (err?: Error) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(out);
    };
    const next = () => {
      if (sent >= 0 && sent === commands.length) return done();
      const c = sent < 0 ? { execute: 'qmp_capabilities' } : commands[sent]!;
      sent++;
      sock.write(JSON.stringify(c) + '\n');
    };
    sock.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return done(new Error(`QMP at ${socketPath}: not JSON: ${line.slice(0, 200)}`));
        }
        if ('event' in msg) continue;
        if ('QMP' in msg) next();
        else if ('return' in msg || 'error' in msg) {
          if (sent > 0) out.push('return' in msg ? msg.return : { error: msg.error });
          next();
        }
      }
    });
    sock.on('error', (err) => done(new Error(`QMP at ${socketPath}: ${err.message}`)));
  });
}

/** The state of a guest's virtio NIC queues, read over QMP (see {@link qmpQuery}), as text for an error message. */
export async function virtioNetState(qmpPath: string): Promise<string> {
  const [devices] = (await qmpQuery(qmpPath, [{ execute: 'x-query-virtio' }])) as [{ path: string; name: string }[] | { error: unknown }];
  if (!Array.isArray(devices)) return `--- virtio (QMP) ---\n${JSON.stringify(devices)}`;
  const lines: string[] = [];
  const text = (r: unknown): string => (typeof r === 'string' ? r.trim() : JSON.stringify(r));
  for (const d of devices.filter((x) => x.name === 'virtio-net')) {
    const queues = (await qmpQuery(qmpPath, [0, 1].map((queue) => ({ execute: 'x-query-virtio-queue-status', arguments: { path: d.path, queue } })))) as Record<string, unknown>[];
    // The rings in guest memory as the guest sees them: flags and index of the available and the used ring.
    const rings = queues.flatMap((r, i) => ['vring-avail', 'vring-used'].filter((k) => typeof r[k] === 'number').map((k) => ({ i, k, addr: r[k] as number })));
    const mem = await qmpQuery(qmpPath, rings.map((g) => ({ execute: 'human-monitor-command', arguments: { 'command-line': `xp /2hx ${g.addr}` } })));
    queues.forEach((r, i) => {
      lines.push(`${d.name} ${i === 0 ? 'rx' : 'tx'} queue: ${text(r)}`);
      rings.forEach((g, j) => g.i === i && lines.push(`  ${g.k} (flags, idx): ${text(mem[j])}`));
    });
  }
  return `--- virtio NIC queues (QMP; avail ahead of used: QEMU has not taken what the guest queued) ---\n${lines.join('\n') || '(no virtio-net device)'}`;
}

function execOnce(host: string, ctlPort: number, cmd: string, remainingMs: number, timeoutMs: number, opts: ExecOptions): Promise<ExecResult> {
  const token = randomBytes(8).toString('hex');
  const marker = `__NVMEOF_RESULT_${token}__`;
  const delim = `__NVMEOF_CMD_${token}__`;
  const body = cmd.endsWith('\n') ? cmd : `${cmd}\n`;
  const t = `/tmp/.ctl-${token}`;
  // The guest shell reads this script from the socket. The command goes to a file (so its syntax errors are its
  // own), runs with stdin /dev/null (so it cannot eat the script), and its output comes back length-prefixed.
  const script =
    `cat >${t}.sh <<'${delim}'\n${body}${delim}\n` +
    `/bin/sh ${t}.sh </dev/null >${t}.out 2>${t}.err\n` +
    `rc=$?\n` +
    `echo "${marker} $rc $(wc -c <${t}.out) $(wc -c <${t}.err)"\n` +
    `cat ${t}.out ${t}.err\n` +
    `rm -f ${t}.sh ${t}.out ${t}.err\n` +
    `exit 0\n`;
  const what = opts.secret
    ? 'guest exec (command not shown: it carries a secret)'
    : `guest exec ${JSON.stringify(cmd.length > 200 ? `${cmd.slice(0, 200)}...` : cmd)}`;

  return new Promise<ExecResult>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const sock = net.connect({ host, port: ctlPort });
    const finish = (err: Error | null, result?: ExecResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(result!);
    };
    const timer = setTimeout(
      () => finish(new KernelTargetError(`${what} timed out after ${timeoutMs} ms`)),
      remainingMs,
    );
    // The result once the header line and both payloads have arrived; null until then.
    const parse = (): ExecResult | null => {
      const buf = Buffer.concat(chunks, received);
      const at = buf.indexOf(marker);
      if (at < 0) return null;
      const eol = buf.indexOf(0x0a, at);
      if (eol < 0) return null;
      const header = buf.toString('latin1', at + marker.length, eol).trim();
      const m = /^(\d+) (\d+) (\d+)$/.exec(header.replace(/\s+/g, ' '));
      if (!m) throw new KernelTargetError(`${what}: malformed result header ${JSON.stringify(header)}`);
      const [code, outLen, errLen] = [Number(m[1]), Number(m[2]), Number(m[3])];
      const start = eol + 1;
      if (buf.length < start + outLen + errLen) return null;
      return {
        stdout: buf.toString('utf8', start, start + outLen),
        stderr: buf.toString('utf8', start + outLen, start + outLen + errLen),
        code,
      };
    };
    const check = (closed: boolean): void => {
      let result: ExecResult | null;
      try {
        result = parse();
      } catch (e) {
        finish(e as Error);
        return;
      }
      if (result) finish(null, result);
      else if (closed && received === 0) finish(new NotServedError(`${what}: control channel closed the connection unserved`));
      else if (closed) {
        const got = Buffer.concat(chunks, received).toString('utf8').slice(0, 500);
        finish(new KernelTargetError(`${what}: control channel closed before the result (got ${JSON.stringify(got)})`));
      }
    };
    sock.on('connect', () => sock.end(script));
    sock.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      check(false);
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (received === 0 && (e.code === 'ECONNRESET' || e.code === 'ECONNREFUSED' || e.code === 'EPIPE')) {
        finish(new NotServedError(`${what}: ${e.message}`));
      } else finish(new KernelTargetError(`${what}: ${e.message}`));
    });
    sock.on('close', () => check(true));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// NVMe/TCP liveness probe
// ---------------------------------------------------------------------------------------------------------------

/**
 * Sends an NVMe/TCP ICReq (PFV 0, no digests) to host:port and waits for an ICResp; resolves with the 128-byte
 * ICResp. Used to tell a listening nvmet port from QEMU's port forwarder (which accepts connections even when
 * nothing listens in the guest).
 */
export function probeNvmeTcp(host: string, port: number, timeoutMs = 10_000): Promise<Buffer> {
  const icreq = Buffer.alloc(128);
  icreq[0] = 0x00; // PDU type: ICReq
  icreq[2] = 128; // HLEN
  icreq.writeUInt32LE(128, 4); // PLEN
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const sock = net.connect({ host, port });
    const finish = (err: Error | null, resp?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(resp!);
    };
    const timer = setTimeout(() => finish(new KernelTargetError(`no ICResp from ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
    sock.on('connect', () => sock.write(icreq));
    sock.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < 128) return;
      const resp = Buffer.concat(chunks, received).subarray(0, 128);
      if (resp[0] !== 0x01 || resp.readUInt32LE(4) !== 128) {
        finish(new KernelTargetError(`unexpected reply to ICReq from ${host}:${port}: ${resp.subarray(0, 8).toString('hex')}`));
      } else finish(null, resp);
    });
    sock.on('error', (e) => finish(new KernelTargetError(`ICReq to ${host}:${port}: ${e.message}`)));
    sock.on('close', () => finish(new KernelTargetError(`${host}:${port} closed the connection after ${received} bytes of ICResp`)));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Prepare and start
// ---------------------------------------------------------------------------------------------------------------

/**
 * Runs prepare.sh (install missing packages, build or reuse the cache of `kernels`, default both). Resolves with its
 * log lines.
 */
export function prepareKernelTarget(cacheDir: string = DEFAULT_CACHE_DIR, kernels: KernelKind[] = ['debian', 'backports']): Promise<string> {
  const script = path.join(HERE, 'prepare.sh');
  const env = { ...process.env, NVMEOF_KERNELS: kernels.join(' ') };
  return new Promise((resolve, reject) => {
    execFile('bash', [script, cacheDir], { env, maxBuffer: 16 * 1024 * 1024, timeout: 600_000 }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`.trim();
      if (err) {
        const lines = out.split('\n').filter((l) => l.trim() !== '');
        const why = [...lines].reverse().find((l) => l.startsWith('prepare: error:'))?.slice('prepare: error: '.length)
          ?? lines.at(-1) ?? err.message.split('\n')[0];
        reject(new KernelTargetError(`prepare.sh failed: ${why}\n${tail(out, 40)}`));
      }
      else resolve(out);
    });
  });
}

/** Live QEMU processes of this Node process, killed on exit. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/** Picks a free TCP port on 127.0.0.1 (bind to port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port'))));
    });
  });
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}

function readTail(file: string, maxBytes = 64 * 1024): string {
  try {
    const size = statSync(file).size;
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    const fd = openSync(file, 'r');
    try {
      readSync(fd, buf, 0, len, size - len);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8');
  } catch {
    return '';
  }
}

function findExecutable(name: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = path.join(dir, name);
    if (dir && existsSync(p)) return p;
  }
  return null;
}

interface Booted {
  child: ChildProcess;
  exited: Promise<void>;
  /** Where the tests reach the guest's ports. */
  host: string;
  port: number;
  port2: number;
  discoveryPort: number;
  ctlPort: number;
}

/** Signals the host-forward failure QEMU reports when a chosen port was taken in the meantime. */
class PortRaceError extends Error {}

/** `n` distinct free loopback ports. */
async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < n) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  return ports;
}

/**
 * Boots the kernel target and waits until it serves NVMe/TCP: console marker NVMET-READY, a working control
 * channel, and an ICResp from each nvmet port. Throws {@link KernelTargetError} with the console tail when anything
 * fails or the boot time limit passes. The QEMU process dies with this Node process.
 */
export async function startKernelTarget(opts: StartKernelTargetOptions = {}): Promise<KernelTarget> {
  const kind = opts.kernel ?? 'backports';
  const cacheRoot = opts.cacheDir ?? DEFAULT_CACHE_DIR;
  const cacheDir = kernelCacheDir(kind, cacheRoot);
  const bootTimeoutMs = opts.bootTimeoutMs ?? 120_000;
  const memoryMiB = opts.memoryMiB ?? 512;
  const tapNet = opts.network === 'user' ? null : (opts.network ?? tapNetworkFromEnv(process.env, opts.tapLink ?? (kind === 'backports' ? 1 : 2)));
  const userNetReason = tapNet
    ? ''
    : opts.network === 'user'
      ? 'user-mode networking requested'
      : process.env.NVMEOF_NETNS_UNAVAILABLE
        ? `no test network namespace: ${process.env.NVMEOF_NETNS_UNAVAILABLE}`
        : 'not started through integration/kernel/in-netns.sh (NVMEOF_TAP unset)';
  const guestAddr = tapNet ? tapNet.guestAddr : USER_NET_GUEST_ADDR;

  await prepareKernelTarget(cacheRoot, [kind]);
  const qemuBin = findExecutable('qemu-system-x86_64');
  if (!qemuBin) throw new KernelTargetError('qemu-system-x86_64 not found after prepare.sh');

  const tmp = mkdtempSync(path.join(tmpdir(), `nvmeof-kernel-${kind}-`));
  let kernelLabel: string = kind;
  try {
    kernelLabel = `Linux ${readFileSync(path.join(cacheDir, 'kernel-version'), 'utf8').trim()} (${kind})`;
  } catch {
    // prepare.sh succeeded, so the file is there; the kind alone still names the kernel
  }
  const consolePath = path.join(tmp, 'console.log');
  const qmpPath = path.join(tmp, 'qmp.sock');
  const stderrPath = path.join(tmp, 'qemu-stderr.log');
  const setpriv = findExecutable('setpriv');
  installExitHook();

  const boot = async (): Promise<Booted> => {
    let where: Omit<Booted, 'child' | 'exited'>;
    let netArgs: string[];
    let ipArgs: string;
    if (tapNet) {
      where = {
        host: tapNet.guestAddr,
        port: GUEST_NVME_PORT,
        port2: GUEST_NVME_PORT_2,
        discoveryPort: GUEST_DISCOVERY_PORT,
        ctlPort: GUEST_CONTROL_PORT,
      };
      netArgs = [
        '-netdev', `tap,id=n0,ifname=${tapNet.tap},script=no,downscript=no`,
        '-device', `virtio-net-pci,netdev=n0,mac=52:54:00:6e:76:${kind === 'backports' ? '02' : '03'}${NIC_OPTIONS[kind]}`,
      ];
      ipArgs = `guest_ip=${tapNet.guestAddr}/${tapNet.prefixLen} guest_gw=none`;
    } else {
      const [port, port2, discoveryPort, ctlPort] = (await freePorts(4)) as [number, number, number, number];
      where = { host: '127.0.0.1', port, port2, discoveryPort, ctlPort };
      const fwd = [
        [port, GUEST_NVME_PORT],
        [port2, GUEST_NVME_PORT_2],
        [discoveryPort, GUEST_DISCOVERY_PORT],
        [ctlPort, GUEST_CONTROL_PORT],
      ].map(([h, g]) => `hostfwd=tcp:127.0.0.1:${h}-:${g}`);
      netArgs = ['-netdev', `user,id=n0,${fwd.join(',')}`, '-device', `virtio-net-pci,netdev=n0${NIC_OPTIONS[kind]}`];
      ipArgs = `guest_ip=${USER_NET_GUEST_ADDR}/24 guest_gw=10.0.2.2`;
    }
    const args = [
      '-name', `nvmeof-kernel-target-${kind}`,
      '-accel', 'tcg', '-M', 'pc', '-cpu', 'max', '-smp', '1', '-m', String(memoryMiB),
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-kernel', path.join(cacheDir, 'vmlinuz'),
      '-initrd', path.join(cacheDir, 'initramfs.cpio'),
      '-append', `console=ttyS0 panic=-1 mitigations=off ${ipArgs}`,
      '-serial', `file:${consolePath}`,
      '-monitor', 'none',
      '-qmp', `unix:${qmpPath},server=on,wait=off`,
      ...netArgs,
    ];
    // setpriv --pdeathsig: the kernel kills QEMU if this process dies without running its exit hooks.
    const [cmd, argv] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', qemuBin, ...args]] : [qemuBin, args];
    const errFd = openSync(stderrPath, 'w');
    const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', errFd], detached: false });
    closeSync(errFd);
    live.add(child);
    child.unref();
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    void exited.then(() => live.delete(child));
    return { child, exited, ...where };
  };

  const started = Date.now();
  const deadline = started + bootTimeoutMs;
  let booted: Booted | null = null;
  const failure = (why: string): KernelTargetError => {
    const qemuErr = readTail(stderrPath, 4096).trim();
    const consoleTail = tail(readTail(consolePath).trimEnd(), 40);
    return new KernelTargetError(
      `${why} [kernel: ${kernelLabel}]\n` +
        (qemuErr ? `--- qemu stderr ---\n${qemuErr}\n` : '') +
        `--- console tail (${consolePath}) ---\n${consoleTail || '(empty)'}`,
    );
  };
  const kill = async (b: Booted): Promise<void> => {
    b.child.kill('SIGTERM');
    const t = setTimeout(() => b.child.kill('SIGKILL'), 5000);
    await b.exited;
    clearTimeout(t);
  };

  try {
    for (let attempt = 1; ; attempt++) {
      booted = await boot();
      try {
        await waitReady(booted);
        break;
      } catch (e) {
        await kill(booted);
        if (e instanceof PortRaceError && attempt < 3) continue;
        throw e;
      }
    }
  } catch (e) {
    // Keep the temporary directory: its console log is named in the error.
    if (e instanceof KernelTargetError) throw e;
    throw failure(`kernel target failed to start: ${(e as Error).message}`);
  }

  async function waitReady(b: Booted): Promise<void> {
    let qemuExited = false;
    void b.exited.then(() => (qemuExited = true));
    const checkAlive = (): void => {
      if (!qemuExited) return;
      const err = readTail(stderrPath, 4096);
      if (!tapNet && /host forwarding|hostfwd|Could not set up/i.test(err)) throw new PortRaceError(err.trim());
      const hint = tapNet && /tun|tap/i.test(err) ? ` (TAP device ${tapNet.tap}: is it in this network namespace and free?)` : '';
      throw failure(`QEMU exited during boot (code ${b.child.exitCode ?? b.child.signalCode})${hint}`);
    };
    const remaining = (): number => deadline - Date.now();
    const timedOut = (stage: string): KernelTargetError =>
      failure(`kernel target not ready after ${bootTimeoutMs} ms (${stage})`);

    // 1. Console marker.
    for (;;) {
      checkAlive();
      const text = readTail(consolePath, 16 * 1024);
      const failed = /NVMET-FAILED: ?(.*)/.exec(text);
      if (failed) throw failure(`guest setup failed: ${failed[1]}`);
      if (text.includes('NVMET-READY')) break;
      if (/Kernel panic/.test(text)) throw failure('guest kernel panic');
      if (remaining() <= 0) throw timedOut('waiting for NVMET-READY on the console');
      await sleep(100);
    }
    // 2. Control channel (busybox init starts the listener right after the setup script).
    let lastErr = '';
    for (;;) {
      checkAlive();
      try {
        const r = await guestExec(b.host, b.ctlPort, 'test -d /sys/kernel/config/nvmet/ports/1 && uname -r', {
          timeoutMs: Math.max(1000, Math.min(15_000, remaining())),
        });
        if (r.code === 0) break;
        lastErr = `exit ${r.code}: ${r.stderr.trim()}`;
      } catch (e) {
        lastErr = (e as Error).message;
      }
      if (remaining() <= 0) throw timedOut(`control channel at ${b.host}:${b.ctlPort}: ${lastErr}`);
      await sleep(200);
    }
    // 3. nvmet answers an ICReq on every port.
    for (const port of [b.port, b.port2, b.discoveryPort]) {
      for (;;) {
        checkAlive();
        try {
          await probeNvmeTcp(b.host, port, Math.max(1000, Math.min(15_000, remaining())));
          break;
        } catch (e) {
          lastErr = (e as Error).message;
        }
        if (remaining() <= 0) throw timedOut(`NVMe/TCP port: ${lastErr}`);
        await sleep(200);
      }
    }
  }

  const b = booted!;
  const bootMs = Date.now() - started;
  const kernelVersion = (await guestExec(b.host, b.ctlPort, 'uname -r')).stdout.trim();
  const port = (portid: number, guestPort: number, hostPort: number): TargetPort => ({ portid, guestPort, host: b.host, port: hostPort });
  let stopped: Promise<void> | null = null;
  const died = (): string | null => {
    if (stopped !== null) return null;
    if (b.child.exitCode !== null || b.child.signalCode !== null) {
      return failure(`QEMU exited while the tests ran (code ${b.child.exitCode ?? b.child.signalCode})`).message;
    }
    const oops = /Kernel panic|BUG: |Oops: |hung_task/.exec(readTail(consolePath, 256 * 1024));
    return oops ? failure(`the guest kernel logged '${oops[0].trim()}' while the tests ran`).message : null;
  };
  return {
    kernel: kind,
    host: b.host,
    port: b.port,
    ctlPort: b.ctlPort,
    network: tapNet ? 'tap' : 'user',
    userNetReason,
    netns: tapNet?.netns ?? null,
    guestAddr,
    discoveryReachable: tapNet !== null,
    ports: {
      nvme1: port(1, GUEST_NVME_PORT, b.port),
      nvme2: port(2, GUEST_NVME_PORT_2, b.port2),
      discovery: port(3, GUEST_DISCOVERY_PORT, b.discoveryPort),
    },
    openNqn: OPEN_NQN,
    restrictedNqn: RESTRICTED_NQN,
    allowedHostNqn: ALLOWED_HOST_NQN,
    discoveryNqn: DISCOVERY_NQN,
    multipathNqn: MULTIPATH_NQN,
    anaGroups: MULTIPATH_ANA_GROUPS.map((g) => ({ ...g, nsids: [...g.nsids], initialState: { ...g.initialState } })),
    kernelVersion,
    bootMs,
    exec: (cmd, o) => guestExecWithConsole(b.host, b.ctlPort, consolePath, cmd, o, () => virtioNetState(qmpPath)),
    consoleLog: () => consolePath,
    qmpSocket: qmpPath,
    died,
    stop: () => {
      stopped ??= (async () => {
        const death = died();
        await kill(b);
        // A guest that died keeps its console log for whoever reads the failure.
        if (death === null) rmSync(tmp, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

/** Reads the whole console log of a target (convenience for assertions on kernel messages). */
export function readConsole(target: Pick<KernelTarget, 'consoleLog'>): string {
  try {
    return readFileSync(target.consoleLog(), 'utf8');
  } catch {
    return '';
  }
}
