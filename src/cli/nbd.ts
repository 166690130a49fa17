/**
 * nbd: export a namespace as an NBD server (qemu-img, qemu, nbdcopy, nbdinfo reach it without a kernel initiator).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect, openMultipath, serveNbd, type Controller, type MultipathNamespace, type NbdListen, type NbdServer, type NbdTlsOptions } from '../index.js';
import { TARGET_OPTIONS, UsageError, addressesOf, connectFlags, namespaceOption, parseInteger, portOf, splitAddress, type OptionSpecs, type Values } from './args.js';
import { closeQuietly, connecting, type Command } from './context.js';

const NBD_OPTIONS: OptionSpecs = {
  listen: { type: 'string', arg: 'tcp:HOST:PORT|unix:PATH', help: 'where the NBD server listens (required)' },
  'export-name': { type: 'string', arg: 'NAME', help: 'export name clients ask for (the empty name reaches it too)', def: 'the subsystem NQN' },
  'read-only': { type: 'boolean', help: 'refuse writes, trims and zeroing (advertise NBD_FLAG_READ_ONLY)' },
  multipath: { type: 'string', arg: 'ADDR:PORT,...', help: 'more paths to the same subsystem: the export survives the loss of any path' },
  tls: { type: 'string', arg: 'MODE', help: 'require, on (offered, not required) or off', def: 'require with --tls-creds/--tls-psk, else off' },
  'tls-creds': { type: 'string', arg: 'DIR', help: 'X.509 credentials directory: server-cert.pem, server-key.pem, optional ca-cert.pem (as qemu-nbd)' },
  'tls-psk': { type: 'string', arg: 'FILE', help: 'PSK file in psktool format, one "identity:hexkey" per line' },
};

/** The NVMe side's connection flags; --tls is the NBD server's here (NVMe/TCP TLS follows from --tls-key/--tls-key-file). */
const { tls: _nvmeTls, ...NVME_TARGET_OPTIONS } = TARGET_OPTIONS;

/** Parse --listen: tcp:HOST:PORT, tcp:[V6]:PORT or unix:PATH. */
export function parseListen(s: string, command?: string): NbdListen {
  if (s.startsWith('unix:')) {
    const path = s.slice(5);
    if (!path) throw new UsageError('--listen unix: needs a socket path', command);
    return { path };
  }
  if (s.startsWith('tcp:')) {
    const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(s.slice(4));
    if (!m) throw new UsageError(`--listen ${s} needs a port (tcp:HOST:PORT, tcp:[V6]:PORT)`, command);
    const host = m[1] ?? m[2]!;
    // Port 0: a free port the system picks (printed once listening).
    return { host: host || '127.0.0.1', port: parseInteger('port in --listen', m[3]!, 0, 65535, command) };
  }
  throw new UsageError(`--listen must be tcp:HOST:PORT or unix:PATH, got "${s}"`, command);
}

/** Read a psktool file: "identity:hexkey" lines. The keys never appear in errors. */
export function readPskFile(file: string, command?: string): Map<string, Buffer> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--tls-psk ${file}: ${(err as NodeJS.ErrnoException).code ?? 'cannot read'}`, command);
  }
  const keys = new Map<string, Buffer>();
  text.split('\n').forEach((line, i) => {
    const l = line.trim();
    if (!l || l.startsWith('#')) return;
    const colon = l.lastIndexOf(':');
    const id = l.slice(0, colon);
    const hex = l.slice(colon + 1);
    if (colon <= 0 || !/^([0-9a-fA-F]{2})+$/.test(hex)) throw new UsageError(`--tls-psk ${file}: line ${i + 1} is not "identity:hexkey"`, command);
    keys.set(id, Buffer.from(hex, 'hex'));
  });
  if (keys.size === 0) throw new UsageError(`--tls-psk ${file}: no "identity:hexkey" line`, command);
  return keys;
}

/** Read the X.509 files of a qemu-nbd style credentials directory. */
export function readCredsDir(dir: string, command?: string): Pick<NbdTlsOptions, 'cert' | 'key' | 'ca'> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new UsageError(`--tls-creds ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'cannot read'}`, command);
  }
  for (const f of ['server-cert.pem', 'server-key.pem']) if (!names.includes(f)) throw new UsageError(`--tls-creds ${dir}: ${f} is missing`, command);
  return {
    cert: readFileSync(join(dir, 'server-cert.pem')),
    key: readFileSync(join(dir, 'server-key.pem')),
    ...(names.includes('ca-cert.pem') ? { ca: readFileSync(join(dir, 'ca-cert.pem')) } : {}),
  };
}

function tlsOptions(v: Values): NbdTlsOptions | undefined {
  const creds = v.str('tls-creds');
  const psk = v.str('tls-psk');
  const mode = v.choice<'require' | 'on' | 'off'>('tls', ['require', 'on', 'off'], creds || psk ? 'require' : 'off');
  if (mode === 'off') return undefined;
  if (!creds && !psk) throw new UsageError(`--tls ${mode} needs --tls-creds DIR or --tls-psk FILE`, v.command);
  return { mode, ...(creds ? readCredsDir(creds, v.command) : {}), ...(psk ? { psk: readPskFile(psk, v.command) } : {}) };
}

function where(server: NbdServer, name: string): string {
  const a = server.address;
  const enc = encodeURIComponent(name);
  if ('path' in a) return `nbd+unix:///${enc}?socket=${a.path}`;
  const host = a.host.includes(':') ? `[${a.host}]` : a.host;
  return `nbd://${host}:${a.port}/${enc}`;
}

export const nbdCommand: Command = {
  name: 'nbd',
  summary: 'export a namespace as an NBD server (for qemu-img, qemu, nbdcopy, nbdinfo) until Ctrl-C',
  usage: 'nbd -a ADDR -s PORT -n NQN [-N NSID] --listen tcp:HOST:PORT|unix:PATH [--export-name NAME] [--read-only] [--multipath ADDR:PORT,...] [options]',
  description:
    'Connects to the namespace (through one controller, or through every path of --multipath with failover) and ' +
    'serves it over the NBD protocol (fixed newstyle, structured replies, base:allocation) until SIGINT or SIGTERM, ' +
    'then finishes the requests in flight and closes. Prints where it listens once ready (an nbd:// URI, JSON with ' +
    '-o json). Block sizes: minimum the LBA size, preferred 4096, maximum from MDTS. TLS (STARTTLS) with X.509 ' +
    'credentials (--tls-creds) or a PSK file (--tls-psk); with either, TLS is required unless --tls on.',
  options: NBD_OPTIONS,
  connection: { ...NVME_TARGET_OPTIONS, ...namespaceOption('1') },
  examples: [
    'nvmeof nbd -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 --listen tcp:127.0.0.1:10809 --export-name disk1',
    'qemu-img convert -p -O qcow2 nbd://127.0.0.1:10809/disk1 backup.qcow2',
    'nvmeof nbd -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 --multipath 192.0.2.11:4420 --listen unix:/run/disk1.sock',
  ],
  async run(ctx, v) {
    const listenArg = v.required('listen', 'where to listen (tcp:HOST:PORT or unix:PATH)');
    const listen = parseListen(listenArg, v.command);
    const nsid = v.int('namespace-id', 1, 0xfffffffe) ?? 1;
    const tls = tlsOptions(v);
    const flags = connectFlags(v, {});
    const name = v.str('export-name') ?? flags.subnqn;
    const first = addressesOf(v, portOf(v, 4420))[0];
    if (!first) throw new UsageError('--traddr is required (the target address)', v.command);
    const extra = (v.str('multipath') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => splitAddress(s, 4420, '--multipath', v.command));
    let ctrl: Controller | undefined;
    let mp: MultipathNamespace | undefined;
    let server: NbdServer | undefined;
    try {
      let namespace;
      if (extra.length) {
        mp = await connecting(openMultipath({ ...flags, nsid, paths: [first, ...extra], signal: ctx.signal }));
        namespace = mp;
      } else {
        ctrl = await connecting(connect({ ...flags, host: first.host, port: first.port, signal: ctx.signal }));
        namespace = await ctrl.namespace(nsid);
      }
      server = await serveNbd({ listen, exports: [{ name, namespace, readOnly: v.flag('read-only') }], ...(tls ? { tls } : {}) });
      const uri = where(server, name);
      if (ctx.format === 'json') ctx.jsonLine({ listening: server.address, export: name, uri, tls: tls?.mode ?? 'off', paths: 1 + extra.length });
      else ctx.out(`nbd: serving ${name} (nsid ${nsid}, ${namespace.sizeBytes} bytes) at ${uri}${tls ? ` (TLS ${tls.mode})` : ''}\n`);
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) return resolve();
        ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      ctx.err('nbd: stopping: finishing requests in flight\n');
    } finally {
      await server?.close();
      if (mp) await mp.close().catch(() => {});
      await closeQuietly(ctrl);
    }
    return 0;
  },
};
