/**
 * Argument parsing of the CLI: option specs (node:util parseArgs plus help text), typed accessors that turn bad
 * values into usage errors, and the connection flags shared by every command that connects.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { InvalidArgumentError, type ConnectOptions, MAX_QUEUE_DEPTH, parseDhchapOptions, type DhchapOptions } from '../index.js';
import { DISCOVERY_NQN, formatUuid, uuidHostNqn } from '../protocol/index.js';

/** Bad command line: unknown command or option, missing or invalid value. Exit code 2. */
export class UsageError extends InvalidArgumentError {
  /** The command whose usage was wrong (for the "see nvmeof help X" hint). */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

/** One option of a command: what parseArgs needs plus help text. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** Placeholder shown in help, e.g. ADDR. */
  arg?: string;
  help: string;
  /** Default shown in help. */
  def?: string;
}

export type OptionSpecs = Record<string, OptionSpec>;

type RawValue = string | boolean | (string | boolean)[] | undefined;

/** Parsed option values of one command with typed, validating accessors. */
export class Values {
  constructor(
    readonly command: string,
    private readonly raw: Record<string, RawValue>,
    readonly positionals: string[],
  ) {}

  /** True when the option was given. */
  has(name: string): boolean {
    return this.raw[name] !== undefined;
  }

  str(name: string): string | undefined {
    const v = this.raw[name];
    if (Array.isArray(v)) return v.length === 0 ? undefined : String(v[v.length - 1]);
    return typeof v === 'string' ? v : undefined;
  }

  strs(name: string): string[] {
    const v = this.raw[name];
    if (v === undefined) return [];
    return (Array.isArray(v) ? v : [v]).map(String);
  }

  flag(name: string): boolean {
    const v = this.raw[name];
    return Array.isArray(v) ? v.length > 0 : v === true;
  }

  required(name: string, what = ''): string {
    const v = this.str(name);
    if (v === undefined || v === '') throw new UsageError(`--${name}${what ? ` (${what})` : ''} is required`, this.command);
    return v;
  }

  /** An integer option (decimal or 0x hex) in [min, max]; `def` when absent. */
  int(name: string, min: number, max: number): number | undefined;
  int(name: string, min: number, max: number, def: number): number;
  int(name: string, min: number, max: number, def?: number): number | undefined {
    const s = this.str(name);
    if (s === undefined) return def;
    return parseInteger(`--${name}`, s, min, max, this.command);
  }

  /** A byte count with an optional binary suffix (k, m, g); `def` when absent. */
  size(name: string, min: number, max: number, def?: number): number | undefined {
    const s = this.str(name);
    if (s === undefined) return def;
    return parseSize(`--${name}`, s, min, max, this.command);
  }

  /** A 64-bit unsigned value (decimal or 0x hex) as a bigint; `def` when absent. */
  u64(name: string): bigint | undefined;
  u64(name: string, def: bigint): bigint;
  u64(name: string, def?: bigint): bigint | undefined {
    const s = this.str(name);
    if (s === undefined) return def;
    return parseU64(`--${name}`, s, this.command);
  }

  /** One of a fixed set of words; `def` when absent. */
  choice<T extends string>(name: string, choices: readonly T[], def: T): T {
    const s = this.str(name);
    if (s === undefined) return def;
    if (!(choices as readonly string[]).includes(s)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got "${s}"`, this.command);
    return s as T;
  }
}

/** Parse `args` against `specs` (strict: unknown options and stray positionals are usage errors). */
export function parseCommandArgs(command: string, args: string[], specs: OptionSpecs, positionals = false): Values {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, s] of Object.entries(specs)) {
    options[name] = { type: s.type, ...(s.short ? { short: s.short } : {}), ...(s.multiple ? { multiple: true } : {}) };
  }
  try {
    const r = parseArgs({ args, options, strict: true, allowPositionals: positionals });
    return new Values(command, r.values as Record<string, RawValue>, r.positionals);
  } catch (err) {
    const e = err as Error & { code?: string };
    if (typeof e.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS')) throw new UsageError(cleanParseMessage(e.message), command);
    throw err;
  }
}

function cleanParseMessage(m: string): string {
  // parseArgs adds a hint about '--' and positionals that does not apply here; keep the first sentence, except for
  // an ambiguous value (such as -1), where the hint (write --flag=-1) is the point.
  if (m.includes('ambiguous')) return m.replace(/\.$/, '');
  const first = m.split('. ')[0] ?? m;
  return first.replace(/\.$/, '');
}

const INT_RE = /^(?:0x[0-9a-f]+|\d+)$/i;

/** An integer written in decimal or 0x hex, within [min, max]. */
export function parseInteger(name: string, s: string, min: number, max: number, command?: string): number {
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max)) throw new RangeError(`parseInteger(${name}): bounds must be integers`);
  const t = s.trim();
  const v = INT_RE.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new UsageError(`${name} must be an integer ${min}..${max > 0xffff ? `0x${max.toString(16)}` : max} (decimal or 0x hex), got "${s}"`, command);
  }
  return v;
}

/** A 64-bit unsigned integer written in decimal or 0x hex. */
export function parseU64(name: string, s: string, command?: string): bigint {
  const t = s.trim();
  if (!INT_RE.test(t)) throw new UsageError(`${name} must be a 64-bit unsigned integer (decimal or 0x hex), got "${s}"`, command);
  const v = BigInt(t);
  if (v > 0xffff_ffff_ffff_ffffn) throw new UsageError(`${name} must fit in 64 bits, got "${s}"`, command);
  return v;
}

const SIZE_RE = /^(\d+)\s*(k|kb|kib|m|mb|mib|g|gb|gib)?$/i;

/** A byte count: a number with an optional binary suffix (4k = 4096, 1m = 1048576, 1g). */
export function parseSize(name: string, s: string, min: number, max: number, command?: string): number {
  const m = SIZE_RE.exec(s.trim());
  let v = NaN;
  if (m) {
    const unit = (m[2] ?? '').toLowerCase()[0];
    v = Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1);
  } else if (INT_RE.test(s.trim())) {
    v = Number(s.trim());
  }
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new UsageError(`${name} must be a size ${min}..${max} bytes (suffixes k, m, g), got "${s}"`, command);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Shared option sets

/** -h/--help and -o/--output-format, on every command. */
export const COMMON_OPTIONS: OptionSpecs = {
  'output-format': { type: 'string', short: 'o', arg: 'FMT', help: 'output format: normal or json', def: 'normal' },
  help: { type: 'boolean', short: 'h', help: 'show help for this command' },
};

/** DH-HMAC-CHAP keys, as nvme-cli names them; on every connecting command. */
const DHCHAP_OPTIONS: OptionSpecs = {
  'dhchap-secret': { type: 'string', short: 'S', arg: 'KEY', help: 'DH-HMAC-CHAP host secret (DHHC-1:HH:...:), or file:PATH to read it from a file' },
  'dhchap-ctrl-secret': { type: 'string', short: 'C', arg: 'KEY', help: 'DH-HMAC-CHAP controller secret for bidirectional authentication, or file:PATH' },
};

/** Where to connect and as whom; on every command that connects to a subsystem. */
export const TARGET_OPTIONS: OptionSpecs = {
  transport: { type: 'string', short: 't', arg: 'TYPE', help: 'transport type (only tcp)', def: 'tcp' },
  traddr: { type: 'string', short: 'a', arg: 'ADDR', help: 'target address (IPv4, IPv6 or host name)' },
  trsvcid: { type: 'string', short: 's', arg: 'PORT', help: 'target TCP port', def: '4420' },
  nqn: { type: 'string', short: 'n', arg: 'NQN', help: 'subsystem NQN' },
  hostnqn: { type: 'string', short: 'q', arg: 'NQN', help: 'host NQN (default /etc/nvme/hostnqn, else one derived from /etc/machine-id)' },
  hostid: { type: 'string', short: 'I', arg: 'UUID', help: 'host ID (default /etc/nvme/hostid, else derived from the host NQN)' },
  'keep-alive-tmo': { type: 'string', short: 'k', arg: 'SEC', help: 'keep-alive timeout in seconds (0 disables)', def: '5' },
  'hdr-digest': { type: 'boolean', short: 'g', help: 'enable the header digest (CRC32C)' },
  'data-digest': { type: 'boolean', short: 'G', help: 'enable the data digest (CRC32C)' },
  'nr-io-queues': { type: 'string', arg: 'N', help: 'number of I/O queues', def: 'min(4, CPUs) for I/O commands, 0 for admin-only ones' },
  'queue-size': { type: 'string', short: 'Q', arg: 'N', help: 'commands in flight per I/O queue', def: '128' },
  timeout: { type: 'string', arg: 'MS', help: 'per-command timeout in milliseconds', def: '30000' },
  'busy-poll': { type: 'boolean', help: 'poll for I/O completions instead of sleeping: lower latency at low queue depth, a busy core while I/O is in flight' },
  ...DHCHAP_OPTIONS,
  ...tlsOptions(),
};

/** TLS 1.3 with a pre-shared key, as nvme-cli names the flags (plus --tls-key-file). */
function tlsOptions(): OptionSpecs {
  return {
    tls: { type: 'boolean', help: 'run every queue over TLS 1.3 with a PSK (needs --tls-key or --tls-key-file)' },
    'tls-key': { type: 'string', arg: 'KEY', help: 'configured PSK NVMeTLSkey-1:HH:<base64>: (implies --tls)' },
    'tls-key-file': { type: 'string', arg: 'FILE', help: 'read the configured PSK from FILE (implies --tls)' },
    'tls-identity': { type: 'string', arg: '0|1', help: 'PSK identity format: 0 "NVMe0R0H host subsys" or 1 with the PSK digest', def: '0' },
  };
}

/** `tls` connect options from --tls, --tls-key / --tls-key-file and --tls-identity. Never echoes the key. */
export function tlsFlags(v: Values): Pick<ConnectOptions, 'tls'> {
  const inline = v.str('tls-key');
  const file = v.str('tls-key-file');
  const identity = v.str('tls-identity');
  if (inline !== undefined && file !== undefined) throw new UsageError('give either --tls-key or --tls-key-file, not both', v.command);
  if (inline === undefined && file === undefined) {
    if (v.flag('tls')) throw new UsageError('--tls needs the PSK: --tls-key KEY or --tls-key-file FILE', v.command);
    if (identity !== undefined) throw new UsageError('--tls-identity needs --tls-key or --tls-key-file', v.command);
    return {};
  }
  let key = inline;
  if (file !== undefined) {
    try {
      key = readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw new UsageError(`cannot read --tls-key-file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, v.command);
    }
  }
  if (identity !== undefined && identity !== '0' && identity !== '1') throw new UsageError(`--tls-identity must be 0 or 1, got "${identity}"`, v.command);
  return { tls: { key: key!, identity: identity === '1' ? 'v1' : 'v0' } };
}

/** Connection flags of discovery controllers (no I/O queues, no keep-alive). */
export const DISCOVERY_OPTIONS: OptionSpecs = {
  transport: TARGET_OPTIONS.transport!,
  traddr: { type: 'string', short: 'a', arg: 'ADDR', help: 'discovery controller address' },
  trsvcid: { type: 'string', short: 's', arg: 'PORT', help: 'discovery controller TCP port', def: '8009' },
  nqn: { type: 'string', short: 'n', arg: 'NQN', help: 'discovery subsystem NQN', def: DISCOVERY_NQN },
  hostnqn: TARGET_OPTIONS.hostnqn!,
  hostid: TARGET_OPTIONS.hostid!,
  'hdr-digest': TARGET_OPTIONS['hdr-digest']!,
  'data-digest': TARGET_OPTIONS['data-digest']!,
  timeout: TARGET_OPTIONS.timeout!,
  ...DHCHAP_OPTIONS,
  ...tlsOptions(),
};

/** Reconnect timers (monitor). */
export const RECONNECT_OPTIONS: OptionSpecs = {
  'ctrl-loss-tmo': { type: 'string', arg: 'SEC', help: 'give a lost path up after this many seconds (-1 = never)', def: '600' },
  'reconnect-delay': { type: 'string', arg: 'SEC', help: 'seconds between reconnect attempts of a lost path', def: '2' },
};

/** -N/--namespace-id. */
export function namespaceOption(def?: string, help = 'namespace ID'): OptionSpecs {
  return { 'namespace-id': { type: 'string', short: 'N', arg: 'NSID', help, ...(def === undefined ? {} : { def }) } };
}

/** Check -t/--transport: only TCP. */
export function checkTransport(v: Values): void {
  const t = v.str('transport');
  if (t !== undefined && t.toLowerCase() !== 'tcp') throw new UsageError(`--transport ${t} is not supported: nvmeof speaks NVMe/TCP only`, v.command);
}

/** A TCP port from -s/--trsvcid (or `def`). */
export function portOf(v: Values, def: number): number {
  const s = v.str('trsvcid');
  return s === undefined ? def : parseInteger('--trsvcid', s, 1, 65535, v.command);
}

/** One address: "host", "host:port" or "[v6]:port". */
export interface Address {
  host: string;
  port: number;
}

/** Split "host:port" / "[v6]:port" (a bare IPv6 address has several colons and no port). */
export function splitAddress(s: string, defPort: number, name: string, command?: string): Address {
  let host = s;
  let port: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) {
    host = v6[1]!;
    port = v6[2];
  } else if ((s.match(/:/g) ?? []).length === 1) {
    const i = s.indexOf(':');
    host = s.slice(0, i);
    port = s.slice(i + 1);
  }
  if (host.length === 0) throw new UsageError(`${name} needs an address, got "${s}"`, command);
  return { host, port: port === undefined ? defPort : parseInteger(`port in ${name}`, port, 1, 65535, command) };
}

/**
 * Every address given with -a (repeatable), paired with -s: one -s applies to every -a, or give one -s per -a.
 * An address may carry its own port ("host:port").
 */
export function addressesOf(v: Values, defPort: number): Address[] {
  const addrs = v.strs('traddr');
  const ports = v.strs('trsvcid').map((p) => parseInteger('--trsvcid', p, 1, 65535, v.command));
  if (ports.length > 1 && ports.length !== addrs.length) {
    throw new UsageError(`give one --trsvcid for every --traddr, or a single one for all (${addrs.length} addresses, ${ports.length} ports)`, v.command);
  }
  return addrs.map((a, i) => splitAddress(a, ports.length === 0 ? defPort : (ports[ports.length === 1 ? 0 : i] ?? defPort), '--traddr', v.command));
}

/**
 * Host identity flags. Without -q/-I the library uses /etc/nvme/hostnqn and /etc/nvme/hostid; when neither file
 * exists, the CLI derives a host NQN from /etc/machine-id so that every run on one machine is the same host (a
 * reservation registered by one command belongs to the next one). Only without a machine ID does each run get a
 * new identity.
 */
export function hostOptions(v: Values): { hostnqn?: string; hostid?: string } {
  const o: { hostnqn?: string; hostid?: string } = {};
  const q = v.str('hostnqn');
  const i = v.str('hostid');
  if (q !== undefined) o.hostnqn = q;
  if (i !== undefined) o.hostid = i;
  if (q === undefined && i === undefined) {
    const derived = machineHostNqn();
    if (derived !== undefined) o.hostnqn = derived;
  }
  return o;
}

let machineNqn: string | null | undefined;

/** A host NQN derived from the machine ID, unless /etc/nvme holds an identity (undefined then, or without one). */
export function machineHostNqn(): string | undefined {
  if (machineNqn === undefined) {
    machineNqn = null;
    if (!existsSync('/etc/nvme/hostnqn') && !existsSync('/etc/nvme/hostid')) {
      for (const file of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
        let id: string;
        try {
          id = readFileSync(file, 'utf8').trim();
        } catch {
          continue;
        }
        if (id.length === 0) continue;
        const b = createHash('sha256').update(`nvmeof host\n${id}`).digest().subarray(0, 16);
        b[6] = (b[6]! & 0x0f) | 0x80;
        b[8] = (b[8]! & 0x3f) | 0x80;
        machineNqn = uuidHostNqn(formatUuid(b));
        break;
      }
    }
  }
  return machineNqn ?? undefined;
}

/** A key from a flag: the key itself, or `file:PATH` naming a file that holds it (surrounding white space ignored). */
function keyFlag(v: Values, name: string): string | undefined {
  const s = v.str(name);
  if (s === undefined) return undefined;
  if (!s.startsWith('file:')) return s;
  const path = s.slice(5);
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new UsageError(`--${name}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, v.command);
  }
}

/** DH-HMAC-CHAP options from --dhchap-secret / --dhchap-ctrl-secret (checked here; errors never show a key). */
export function dhchapFlags(v: Values): DhchapOptions | undefined {
  const secret = keyFlag(v, 'dhchap-secret');
  const ctrlSecret = keyFlag(v, 'dhchap-ctrl-secret');
  if (secret === undefined) {
    if (ctrlSecret !== undefined) throw new UsageError('--dhchap-ctrl-secret needs --dhchap-secret too', v.command);
    return undefined;
  }
  const o: DhchapOptions = ctrlSecret === undefined ? { secret } : { secret, ctrlSecret };
  try {
    parseDhchapOptions(o, 'dhchap');
  } catch (err) {
    const msg = (err as Error).message.replace(/^dhchap\.secret/, '--dhchap-secret').replace(/^dhchap\.ctrlSecret/, '--dhchap-ctrl-secret');
    throw new UsageError(msg, v.command);
  }
  return o;
}

/** Connect options (without host and port) from the connection flags. */
export function connectFlags(v: Values, defaults: { ioQueues?: number; events?: boolean } = {}, subnqn?: string): Omit<ConnectOptions, 'host' | 'port'> {
  checkTransport(v);
  const o: Omit<ConnectOptions, 'host' | 'port'> = { subnqn: subnqn ?? v.required('nqn', 'the subsystem NQN'), ...hostOptions(v) };
  const kato = v.int('keep-alive-tmo', 0, Math.floor(0xffffffff / 1000));
  if (kato !== undefined) o.kato = kato * 1000;
  if (v.flag('hdr-digest')) o.headerDigest = true;
  if (v.flag('data-digest')) o.dataDigest = true;
  if (v.flag('busy-poll')) o.busyPoll = true;
  const ioq = v.int('nr-io-queues', 0, 65534) ?? defaults.ioQueues;
  if (ioq !== undefined) o.ioQueues = ioq;
  const qs = v.int('queue-size', 1, MAX_QUEUE_DEPTH);
  if (qs !== undefined) o.queueSize = qs;
  const timeout = v.int('timeout', 0, 3_600_000);
  if (timeout !== undefined) o.commandTimeout = timeout;
  if (defaults.events !== undefined) o.events = defaults.events;
  const dhchap = dhchapFlags(v);
  if (dhchap !== undefined) o.dhchap = dhchap;
  Object.assign(o, tlsFlags(v));
  return o;
}

/**
 * Options for a discovery controller from the connection flags: host identity, digests, command timeout, and the
 * subsystem NQN from -n unless `nqn: false` (where -n names the NVM subsystem to look for instead).
 */
export function discoveryFlags(v: Values, o: { nqn?: boolean } = {}): Pick<ConnectOptions, 'hostnqn' | 'hostid' | 'headerDigest' | 'dataDigest' | 'commandTimeout' | 'dhchap' | 'tls'> & { subnqn?: string } {
  checkTransport(v);
  const out: Pick<ConnectOptions, 'hostnqn' | 'hostid' | 'headerDigest' | 'dataDigest' | 'commandTimeout' | 'dhchap' | 'tls'> & { subnqn?: string } = { ...hostOptions(v), ...tlsFlags(v) };
  const dhchap = dhchapFlags(v);
  if (dhchap !== undefined) out.dhchap = dhchap;
  const nqn = v.str('nqn');
  if (o.nqn !== false && nqn !== undefined) out.subnqn = nqn;
  if (v.flag('hdr-digest')) out.headerDigest = true;
  if (v.flag('data-digest')) out.dataDigest = true;
  const timeout = v.int('timeout', 0, 3_600_000);
  if (timeout !== undefined) out.commandTimeout = timeout;
  return out;
}

/** A seconds flag converted to milliseconds (-1 kept as -1). */
export function secondsFlag(v: Values, name: string, min: number): number | undefined {
  const s = v.str(name);
  if (s === undefined) return undefined;
  if (s.trim() === '-1' && min < 0) return -1;
  return parseInteger(`--${name}`, s, Math.max(0, min), Math.floor(0x7fffffff / 1000), v.command) * 1000;
}
