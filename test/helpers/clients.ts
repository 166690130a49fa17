/**
 * Running the real clients Debian ships from tests: the NBD clients (qemu-utils, libnbd-bin, python3-libnbd), GnuTLS's
 * key tools and promtool. Outside CI a missing client skips the tests that need it, with a message saying which package
 * to install; under CI (where .ci/run installs them through integration/kernel/prepare.sh) a missing client fails.
 */
import { execFile, execFileSync } from 'node:child_process';

/** Client programs and the Debian package of each. */
export const CLIENTS = {
  nbdinfo: 'libnbd-bin',
  nbdcopy: 'libnbd-bin',
  nbdsh: 'python3-libnbd',
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  certtool: 'gnutls-bin',
  psktool: 'gnutls-bin',
  promtool: 'prometheus',
} as const;

export type Client = keyof typeof CLIENTS;

/** nbdsh is a Python program: run it with the system interpreter, where python3-libnbd installs the module. */
const ENV = { ...process.env, PATH: `/usr/bin:/bin:${process.env.PATH ?? ''}` };

function present(bin: Client): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { env: ENV, stdio: 'ignore' });
    if (bin === 'nbdsh') execFileSync('/usr/bin/python3', ['-c', 'import nbd'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Which of `bins` are missing. Under CI a missing client throws (CI installs them); elsewhere the caller skips and the
 * returned message says what to install.
 */
export function missingClients(...bins: Client[]): string | undefined {
  const missing = bins.filter((b) => !present(b));
  if (missing.length === 0) return undefined;
  const msg = `tests need ${missing.join(', ')} (apt-get install ${[...new Set(missing.map((b) => CLIENTS[b]))].join(' ')})`;
  if (process.env.CI) throw new Error(`${msg}: missing under CI`);
  console.warn(`skipping: ${msg}`);
  return msg;
}

/** Run a client; resolves with stdout, rejects with stderr in the message. */
export function run(bin: Client | string, args: string[], opts: { input?: string; timeout?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(bin, args, { env: ENV, timeout: opts.timeout ?? 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${bin} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}
