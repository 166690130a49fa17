/**
 * Request bodies of the daemon's API (and the items of its config file, which have the same fields): checked field by
 * field into library options before anything connects. Unknown fields are refused, so a typo never goes unnoticed.
 * Secret-bearing fields (`dhchap`, `tls`) are never echoed in messages.
 */
import { InvalidArgumentError, parseDhchapOptions, parseTlsKey, type ConnectOptions, type DhchapOptions, type PolicyName, type TlsOptions } from '../index.js';
import { DISCOVERY_NQN, validateNqn } from '../protocol/index.js';

type Json = Record<string, unknown>;

/** Connect options a body may carry (library names), with their kinds. */
const CONNECT_FIELDS: Record<string, 'int' | 'bool' | 'string'> = {
  hostnqn: 'string',
  hostid: 'string',
  kato: 'int',
  ioQueues: 'int',
  queueSize: 'int',
  adminQueueSize: 'int',
  headerDigest: 'bool',
  dataDigest: 'bool',
  connectTimeout: 'int',
  commandTimeout: 'int',
  maxTransferSize: 'int',
};

/** Reconnect timers of a controller (Linux reconnect_delay, ctrl_loss_tmo, fast_io_fail_tmo; in ms). */
const TIMER_FIELDS = ['reconnectDelay', 'ctrlLossTimeout', 'fastIoFailTimeout'] as const;

/** Secured-fabric fields: passed to the library after checking; their secrets are never echoed. */
const SECURE_FIELDS = ['dhchap', 'tls'] as const;

/** A controller to hold: where, which subsystem, how to connect, how to reconnect. */
export interface ControllerSpec {
  traddr: string;
  trsvcid: string;
  subnqn: string;
  connect: Omit<ConnectOptions, 'host' | 'port' | 'subnqn' | 'signal'>;
  reconnectDelay?: number;
  ctrlLossTimeout?: number;
  fastIoFailTimeout?: number;
}

/** Which discovery log entries a discovery controller attaches (nvme-stas style: every named field must match). */
export interface EntryFilter {
  subnqn?: string;
  traddr?: string;
  trsvcid?: string;
  transport?: string;
}

/** A persistent discovery controller. */
export interface DiscoverySpec {
  traddr: string;
  trsvcid: string;
  subnqn: string;
  hostnqn?: string;
  hostid?: string;
  kato?: number;
  reconnectDelay?: number;
  connectTimeout?: number;
  commandTimeout?: number;
  headerDigest?: boolean;
  dataDigest?: boolean;
  /** DH-HMAC-CHAP and TLS of the discovery controller itself. */
  dhchap?: DhchapOptions;
  tls?: TlsOptions;
  /** Attach the NVM subsystems the log lists, detach those that disappear. */
  connect: boolean;
  include: EntryFilter[];
  exclude: EntryFilter[];
  /** Options of the controllers attached from the log (connect options and timers). */
  controller: Omit<ControllerSpec, 'traddr' | 'trsvcid' | 'subnqn'>;
}

/** A multipath namespace over the subsystem's paths. */
export interface MultipathSpec {
  subnqn: string;
  nsid: number;
  paths: { traddr: string; trsvcid: string }[];
  policy: PolicyName;
  connect: Omit<ConnectOptions, 'host' | 'port' | 'subnqn' | 'signal'>;
  reconnectDelay?: number;
  ctrlLossTimeout?: number;
  fastIoFailTimeout?: number;
  maxRetries?: number;
  anaPollInterval?: number;
}

function bad(where: string, msg: string): never {
  throw new InvalidArgumentError(`${where}${msg}`);
}

function object(v: unknown, where: string): Json {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(where, 'must be a JSON object');
  return v as Json;
}

function checkKeys(o: Json, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) bad(where, `unknown field ${JSON.stringify(k)} (fields: ${allowed.join(', ')})`);
  }
}

function str(o: Json, k: string, where: string, required: true): string;
function str(o: Json, k: string, where: string, required?: boolean): string | undefined;
function str(o: Json, k: string, where: string, required = false): string | undefined {
  const v = o[k];
  if (v === undefined) {
    if (required) bad(where, `${k} is required`);
    return undefined;
  }
  if (typeof v !== 'string' || v.length === 0) bad(where, `${k} must be a non-empty string`);
  return v;
}

function int(o: Json, k: string, where: string, min: number, max: number): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(where, `${k} must be an integer ${min}..${max}, got ${JSON.stringify(v)}`);
  return v;
}

function bool(o: Json, k: string, where: string): boolean | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') bad(where, `${k} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** A TCP port given as a number or a string of digits. */
function port(o: Json, k: string, where: string, def: number): string {
  const v = o[k];
  if (v === undefined) return String(def);
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 65535) bad(where, `${k} must be a TCP port 1..65535, got ${JSON.stringify(v)}`);
  return String(n);
}

function nqn(v: string, name: string, where: string): string {
  try {
    validateNqn(v, { name, strict: false });
  } catch (err) {
    bad(where, (err as Error).message);
  }
  return v;
}

/** `tls` as the library takes it (`{ key, identity?, derivation? }`), checked here so a bad key is a 400 (never echoed). */
function tls(o: Json, where: string): TlsOptions | undefined {
  const v = o.tls;
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(where, 'tls must be an object { key, identity?, derivation? }');
  const t = v as Record<string, unknown>;
  for (const k of Object.keys(t)) if (k !== 'key' && k !== 'identity' && k !== 'derivation') bad(where, `tls: unknown field ${JSON.stringify(k)}`);
  if (typeof t.key !== 'string') bad(where, 'tls.key must be an NVMeTLSkey-1 interchange key string');
  try {
    parseTlsKey(t.key);
  } catch (err) {
    bad(where, (err as Error).message);
  }
  if (t.identity !== undefined && t.identity !== 'v0' && t.identity !== 'v1') bad(where, "tls.identity must be 'v0' or 'v1'");
  if (t.derivation !== undefined && t.derivation !== 'rfc8446' && t.derivation !== 'libnvme-compat') bad(where, "tls.derivation must be 'rfc8446' or 'libnvme-compat'");
  return t as unknown as TlsOptions;
}

/** `dhchap` as the library takes it, checked here so a bad key is a 400 before any connection (never echoed). */
function dhchap(o: Json, where: string): DhchapOptions | undefined {
  if (o.dhchap === undefined) return undefined;
  try {
    parseDhchapOptions(o.dhchap as DhchapOptions);
  } catch (err) {
    bad(where, (err as Error).message);
  }
  return o.dhchap as DhchapOptions;
}

function connectOptions(o: Json, where: string): ControllerSpec['connect'] {
  const out: Record<string, unknown> = {};
  const auth = dhchap(o, where);
  if (auth !== undefined) out.dhchap = auth;
  const channel = tls(o, where);
  if (channel !== undefined) out.tls = channel;
  for (const [k, kind] of Object.entries(CONNECT_FIELDS)) {
    if (o[k] === undefined) continue;
    if (kind === 'string') out[k] = str(o, k, where);
    else if (kind === 'bool') out[k] = bool(o, k, where);
    else out[k] = int(o, k, where, 0, 0xffffffff);
  }
  if (typeof out.hostnqn === 'string') nqn(out.hostnqn, 'hostnqn', where);
  return out as ControllerSpec['connect'];
}

function timers(o: Json, where: string): Pick<ControllerSpec, 'reconnectDelay' | 'ctrlLossTimeout' | 'fastIoFailTimeout'> {
  const out: Pick<ControllerSpec, 'reconnectDelay' | 'ctrlLossTimeout' | 'fastIoFailTimeout'> = {};
  const rd = int(o, 'reconnectDelay', where, 0, 0x7fffffff);
  if (rd !== undefined) out.reconnectDelay = rd;
  const cl = int(o, 'ctrlLossTimeout', where, -1, 0x7fffffff);
  if (cl !== undefined) out.ctrlLossTimeout = cl;
  const ff = int(o, 'fastIoFailTimeout', where, -1, 0x7fffffff);
  if (ff !== undefined) out.fastIoFailTimeout = ff;
  return out;
}

const CONNECT_KEYS = [...Object.keys(CONNECT_FIELDS), ...SECURE_FIELDS];

/** `POST /v1/controllers` body (and a config file's `controllers` item). */
export function parseControllerSpec(body: unknown, where = ''): ControllerSpec {
  const o = object(body, where);
  checkKeys(o, ['traddr', 'trsvcid', 'subnqn', 'transport', ...CONNECT_KEYS, ...TIMER_FIELDS], where);
  transport(o, where);
  return {
    traddr: str(o, 'traddr', where, true),
    trsvcid: port(o, 'trsvcid', where, 4420),
    subnqn: nqn(str(o, 'subnqn', where, true), 'subnqn', where),
    connect: connectOptions(o, where),
    ...timers(o, where),
  };
}

function transport(o: Json, where: string): void {
  const t = str(o, 'transport', where);
  if (t !== undefined && t.toLowerCase() !== 'tcp') bad(where, `transport ${JSON.stringify(t)} is not supported: nvmeof speaks NVMe/TCP only`);
}

function filters(o: Json, k: string, where: string): EntryFilter[] {
  const v = o[k];
  if (v === undefined) return [];
  if (!Array.isArray(v)) bad(where, `${k} must be an array of filters`);
  return v.map((f, i) => {
    const w = `${where}${k}[${i}]: `;
    const fo = object(f, w);
    checkKeys(fo, ['subnqn', 'traddr', 'trsvcid', 'transport'], w);
    if (Object.keys(fo).length === 0) bad(w, 'a filter needs at least one of subnqn, traddr, trsvcid, transport');
    const out: EntryFilter = {};
    for (const key of ['subnqn', 'traddr', 'transport'] as const) {
      const s = str(fo, key, w);
      if (s !== undefined) out[key] = s;
    }
    if (fo.trsvcid !== undefined) out.trsvcid = port(fo, 'trsvcid', w, 0);
    return out;
  });
}

/** `POST /v1/discovery` body (and a config file's `discovery` item). */
export function parseDiscoverySpec(body: unknown, where = ''): DiscoverySpec {
  const o = object(body, where);
  const own = ['hostnqn', 'hostid', 'kato', 'reconnectDelay', 'connectTimeout', 'commandTimeout', 'headerDigest', 'dataDigest'];
  checkKeys(o, ['traddr', 'trsvcid', 'subnqn', 'transport', ...own, 'connect', 'include', 'exclude', 'controller', ...SECURE_FIELDS], where);
  transport(o, where);
  const spec: DiscoverySpec = {
    traddr: str(o, 'traddr', where, true),
    trsvcid: port(o, 'trsvcid', where, 8009),
    subnqn: nqn(str(o, 'subnqn', where) ?? DISCOVERY_NQN, 'subnqn', where),
    connect: bool(o, 'connect', where) ?? false,
    include: filters(o, 'include', where),
    exclude: filters(o, 'exclude', where),
    controller: { connect: {} },
  };
  const hostnqn = str(o, 'hostnqn', where);
  if (hostnqn !== undefined) spec.hostnqn = nqn(hostnqn, 'hostnqn', where);
  const hostid = str(o, 'hostid', where);
  if (hostid !== undefined) spec.hostid = hostid;
  for (const k of ['kato', 'reconnectDelay', 'connectTimeout', 'commandTimeout'] as const) {
    const v = int(o, k, where, 0, 0x7fffffff);
    if (v !== undefined) spec[k] = v;
  }
  for (const k of ['headerDigest', 'dataDigest'] as const) {
    const v = bool(o, k, where);
    if (v !== undefined) spec[k] = v;
  }
  const auth = dhchap(o, where);
  if (auth !== undefined) spec.dhchap = auth;
  const channel = tls(o, where);
  if (channel !== undefined) spec.tls = channel;
  if (o.controller !== undefined) {
    const w = `${where}controller: `;
    const c = object(o.controller, w);
    checkKeys(c, [...CONNECT_KEYS, ...TIMER_FIELDS], w);
    spec.controller = { connect: connectOptions(c, w), ...timers(c, w) };
  }
  // The attached controllers are the same host as the discovery controller unless they say otherwise.
  if (spec.hostnqn !== undefined) spec.controller.connect.hostnqn ??= spec.hostnqn;
  if (spec.hostid !== undefined) spec.controller.connect.hostid ??= spec.hostid;
  return spec;
}

const POLICIES: readonly PolicyName[] = ['failover', 'round-robin', 'queue-depth'];

/** `POST /v1/multipath` body (and a config file's `multipath` item). */
export function parseMultipathSpec(body: unknown, where = ''): MultipathSpec {
  const o = object(body, where);
  checkKeys(o, ['subnqn', 'nsid', 'paths', 'policy', 'maxRetries', 'anaPollInterval', ...CONNECT_KEYS, ...TIMER_FIELDS], where);
  const nsid = int(o, 'nsid', where, 1, 0xfffffffe);
  if (nsid === undefined) bad(where, 'nsid is required');
  if (!Array.isArray(o.paths) || o.paths.length === 0) bad(where, 'paths must be a non-empty array of { traddr, trsvcid }');
  const paths = (o.paths as unknown[]).map((p, i) => {
    const w = `${where}paths[${i}]: `;
    const po = object(p, w);
    checkKeys(po, ['traddr', 'trsvcid'], w);
    return { traddr: str(po, 'traddr', w, true), trsvcid: port(po, 'trsvcid', w, 4420) };
  });
  const policy = (str(o, 'policy', where) ?? 'failover') as PolicyName;
  if (!POLICIES.includes(policy)) bad(where, `policy must be one of ${POLICIES.join(', ')}, got ${JSON.stringify(o.policy)}`);
  const spec: MultipathSpec = { subnqn: nqn(str(o, 'subnqn', where, true), 'subnqn', where), nsid, paths, policy, connect: connectOptions(o, where), ...timers(o, where) };
  const mr = int(o, 'maxRetries', where, 0, 10_000);
  if (mr !== undefined) spec.maxRetries = mr;
  const ap = int(o, 'anaPollInterval', where, 0, 3_600_000);
  if (ap !== undefined) spec.anaPollInterval = ap;
  return spec;
}

/** The daemon's config file: what to hold from the start. */
export interface ServeConfig {
  controllers: ControllerSpec[];
  discovery: DiscoverySpec[];
  multipath: MultipathSpec[];
  /** The raw items (canonical JSON), in the same order, for comparing one config with the next. */
  keys: { controllers: string[]; discovery: string[]; multipath: string[] };
}

/** JSON with object keys sorted: equal items give equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Json;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Parse and check a config file's text; throws InvalidArgumentError naming the item at fault. */
export function parseConfig(text: string): ServeConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`config is not valid JSON: ${(err as Error).message}`);
  }
  const o = object(raw, 'config: ');
  checkKeys(o, ['controllers', 'discovery', 'multipath'], 'config: ');
  const list = (k: string): unknown[] => {
    const v = o[k];
    if (v === undefined) return [];
    if (!Array.isArray(v)) bad('config: ', `${k} must be an array`);
    return v;
  };
  const c = list('controllers');
  const d = list('discovery');
  const m = list('multipath');
  const cfg: ServeConfig = {
    controllers: c.map((x, i) => parseControllerSpec(x, `config: controllers[${i}]: `)),
    discovery: d.map((x, i) => parseDiscoverySpec(x, `config: discovery[${i}]: `)),
    multipath: m.map((x, i) => parseMultipathSpec(x, `config: multipath[${i}]: `)),
    keys: { controllers: c.map(canonicalJson), discovery: d.map(canonicalJson), multipath: m.map(canonicalJson) },
  };
  for (const k of ['controllers', 'discovery', 'multipath'] as const) {
    const seen = new Set<string>();
    for (const [i, key] of cfg.keys[k].entries()) {
      if (seen.has(key)) bad('config: ', `${k}[${i}] repeats an earlier item`);
      seen.add(key);
    }
  }
  return cfg;
}
