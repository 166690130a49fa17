/**
 * Discovery: read discovery log pages, walk referrals, and watch a persistent discovery controller.
 *
 * The discovery log is read with GENCTR consistency: the 1024-byte header first (for NUMREC), then header plus every
 * record in a read sized from NUMREC (split with the Log Page Offset when it exceeds one transfer), then the header
 * again; if GENCTR or NUMREC moved in between, the whole sequence is repeated (a bounded number of times). A read of a
 * fixed size would silently drop records.
 */
import { isIP } from 'node:net';
import { debuglog } from 'node:util';
import { ControllerError, InvalidArgumentError, InvalidStateError } from '../errors.js';
import { LogPageId } from '../protocol/constants.js';
import {
  AddressFamily,
  DISCOVERY_LOG_HEADER_SIZE,
  TransportType,
  discoveryLogSize,
  parseDiscoveryLog,
  parseDiscoveryLogHeader,
  type DiscoveryLogEntry,
} from '../protocol/logpages.js';
import { DISCOVERY_NQN, validateNqn } from '../protocol/nqn.js';
import { abortError, checkSignal, MAX_TIMER_MS } from '../util.js';
import { connect, type ConnectOptions, type Controller } from './controller.js';
import type { DhchapOptions } from './auth.js';
import type { TlsOptions } from './tls.js';
import { EventChannel, type BoundedEventIterator } from '../event-channel.js';
import type { DistributiveOmit } from './events.js';
import { protocolError } from '../protocol/pdu.js';

const debug = debuglog('nvmeof');

/** Default TCP port of discovery controllers. */
export const DISCOVERY_PORT = 8009;
/** Largest NUMREC the host reads (64 MiB of records). */
const MAX_RECORDS = 65536;

/** Transport type names (TRTYPE). */
export type TransportName = 'rdma' | 'fc' | 'tcp' | 'loop' | 'unknown';
/** Address family names (ADRFAM). */
export type AddressFamilyName = 'pci' | 'ipv4' | 'ipv6' | 'ib' | 'fc' | 'loop' | 'unknown';
/** NVMe/TCP security types (TSAS SECTYPE). */
export type TcpSecurityName = 'none' | 'tls1.2' | 'tls1.3' | 'reserved';

const TRTYPE_NAMES: Record<number, TransportName> = { [TransportType.Rdma]: 'rdma', [TransportType.Fc]: 'fc', [TransportType.Tcp]: 'tcp', [TransportType.Loop]: 'loop' };
const ADRFAM_NAMES: Record<number, AddressFamilyName> = {
  [AddressFamily.Pci]: 'pci', [AddressFamily.Ipv4]: 'ipv4', [AddressFamily.Ipv6]: 'ipv6', [AddressFamily.Ib]: 'ib',
  [AddressFamily.Fc]: 'fc', [AddressFamily.Loop]: 'loop',
};
const SECTYPE_NAMES: TcpSecurityName[] = ['none', 'tls1.2', 'tls1.3'];

/** Where a discovery controller is: the coordinates of a discovery log entry or of the starting point. */
export interface DiscoveryAddress {
  traddr: string;
  trsvcid: string;
  subnqn: string;
}

/** A discovery log entry in a friendly shape (the parsed raw entry is kept in `raw`). */
export interface DiscoveryEntry {
  /** Transport type name (TRTYPE). */ transport: TransportName;
  /** TRTYPE value. */ trtype: number;
  /** Address family name (ADRFAM). */ addressFamily: AddressFamilyName;
  /** ADRFAM value. */ adrfam: number;
  /** What the entry describes: an NVM subsystem, a referral to another discovery service, or the current discovery subsystem. */
  subtype: 'nvm' | 'referral' | 'current-discovery' | 'unknown';
  /** SUBTYPE value. */ subtypeValue: number;
  /** Transport requirements (TREQ). */
  treq: { secureChannel: 'not-specified' | 'required' | 'not-required' | 'reserved'; sqFlowControlDisable: boolean; value: number };
  /** Port ID. */ portid: number;
  /** Controller ID (0xFFFF: dynamic controller model). */ cntlid: number;
  /** Admin max SQ size. */ asqsz: number;
  /** Entry flags (EFLAGS): DUPRETINFO, EPCSD, NCC. */
  eflags: { duplicateReturnedInfo: boolean; explicitPersistentConnection: boolean; noCdcConnectivity: boolean; value: number };
  /** Transport service ID (the TCP port, as text). */ trsvcid: string;
  /** Subsystem NQN. */ subnqn: string;
  /** Transport address. */ traddr: string;
  /** TCP security type from TSAS (null for other transports). */ tcpSecurity: TcpSecurityName | null;
  /** The discovery controller that reported the entry and how many referrals away from the start it was. */
  source: DiscoveryAddress & { depth: number };
  /** The parsed entry as the protocol layer returns it. */
  raw: DiscoveryLogEntry;
}

/** A discovery log read consistently. */
export interface DiscoveryLogSnapshot {
  genctr: bigint;
  numrec: number;
  recfmt: number;
  /** Every record, referrals included, in log order. */
  entries: DiscoveryEntry[];
}

/** Turn a parsed discovery log entry into a {@link DiscoveryEntry}. */
export function toDiscoveryEntry(e: DiscoveryLogEntry, source: DiscoveryAddress & { depth: number }): DiscoveryEntry {
  return {
    transport: TRTYPE_NAMES[e.trtype] ?? 'unknown',
    trtype: e.trtype,
    addressFamily: ADRFAM_NAMES[e.adrfam] ?? 'unknown',
    adrfam: e.adrfam,
    subtype: e.subtypeName,
    subtypeValue: e.subtype,
    treq: { ...e.decoded.treq, value: e.treq },
    portid: e.portid,
    cntlid: e.cntlid,
    asqsz: e.asqsz,
    eflags: { ...e.decoded.eflags, value: e.eflags },
    trsvcid: e.trsvcid,
    subnqn: e.subnqn,
    traddr: e.traddr,
    tcpSecurity: e.tcpSectype === null ? null : (SECTYPE_NAMES[e.tcpSectype] ?? 'reserved'),
    source: { ...source },
    raw: e,
  };
}

/** Identity of an entry across logs: subtype, transport, address family, address, service ID and subsystem NQN. */
export function discoveryEntryKey(e: Pick<DiscoveryEntry, 'subtypeValue' | 'trtype' | 'adrfam' | 'traddr' | 'trsvcid' | 'subnqn'>): string {
  return `${e.subtypeValue}/${e.trtype}/${e.adrfam}/${e.traddr}/${e.trsvcid}/${e.subnqn}`;
}

function controllerKey(trtype: number, adrfam: number, traddr: string, trsvcid: string, subnqn: string): string {
  return `${trtype}/${adrfam}/${traddr.toLowerCase()}/${trsvcid}/${subnqn}`;
}

function adrfamOf(host: string): number {
  return isIP(host) === 6 ? AddressFamily.Ipv6 : AddressFamily.Ipv4;
}

/** Options for {@link readDiscoveryLog}. */
export interface ReadDiscoveryLogOptions {
  /** Re-reads when GENCTR moves during a read, before giving up. Default 10. */
  maxRetries?: number;
  signal?: AbortSignal;
  /** Per-command timeout in ms. */
  timeout?: number;
  /** Recorded in each entry's `source` (default: the controller's address). */
  source?: DiscoveryAddress & { depth: number };
}

/**
 * Read the discovery log of a connected discovery controller with GENCTR consistency. The last read of each attempt
 * has RAE cleared, so a pending Discovery Log Page Change event is acknowledged and the next change is reported.
 */
export async function readDiscoveryLog(ctrl: Controller, opts: ReadDiscoveryLogOptions = {}): Promise<DiscoveryLogSnapshot> {
  if (ctrl === null || typeof ctrl !== 'object' || typeof (ctrl as { readLog?: unknown }).readLog !== 'function') {
    throw new InvalidArgumentError(`readDiscoveryLog needs a connected discovery controller, got ${ctrl === null ? 'null' : typeof ctrl}`);
  }
  if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('readDiscoveryLog options must be an object');
  checkSignal('signal', opts.signal);
  const maxRetries = opts.maxRetries ?? 10;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) throw new InvalidArgumentError(`maxRetries must be a non-negative integer, got ${String(maxRetries)}`);
  const source = opts.source ?? { traddr: ctrl.host, trsvcid: String(ctrl.port), subnqn: ctrl.subnqn, depth: 0 };
  const read = (length: number, rae: boolean) =>
    ctrl.readLog({ lid: LogPageId.Discovery, length, rae, signal: opts.signal, timeout: opts.timeout });
  for (let attempt = 0; attempt <= maxRetries; attempt++) {
    const first = parseDiscoveryLogHeader(await read(DISCOVERY_LOG_HEADER_SIZE, true));
    if (first.numrec > BigInt(MAX_RECORDS)) {
      throw protocolError.malformed(`discovery log of ${ctrl.host}:${ctrl.port} claims ${first.numrec} records (at most ${MAX_RECORDS} are read)`);
    }
    let entries: DiscoveryLogEntry[] = [];
    let consistent = true;
    if (first.numrec > 0n) {
      const log = parseDiscoveryLog(await read(discoveryLogSize(first.numrec), true));
      consistent = log.genctr === first.genctr && log.numrec === first.numrec && log.complete;
      entries = log.entries;
    }
    const last = parseDiscoveryLogHeader(await read(DISCOVERY_LOG_HEADER_SIZE, false));
    if (consistent && last.genctr === first.genctr && last.numrec === first.numrec) {
      return {
        genctr: first.genctr,
        numrec: Number(first.numrec),
        recfmt: first.recfmt,
        entries: entries.map((e) => toDiscoveryEntry(e, source)),
      };
    }
    debug('discovery log of %s:%d changed while reading (genctr %s -> %s), reading again', ctrl.host, ctrl.port, first.genctr, last.genctr);
  }
  throw new ControllerError(`discovery log of ${ctrl.host}:${ctrl.port} kept changing while being read (${maxRetries + 1} attempts)`);
}

/** Options for {@link discover}. */
export interface DiscoverOptions {
  /** Discovery controller address. */
  host: string;
  /** Discovery controller TCP port. Default 8009. */
  port?: number;
  hostnqn?: string;
  hostid?: string;
  /** Discovery subsystem NQN. Default the well-known discovery NQN. */
  subnqn?: string;
  /** Timeout in ms for each connection. */
  connectTimeout?: number;
  /** Per-command timeout in ms. */
  commandTimeout?: number;
  headerDigest?: boolean;
  dataDigest?: boolean;
  /** TLS 1.3 with a PSK on the connection to each discovery controller (see ConnectOptions.tls). */
  tls?: TlsOptions;
  /** Follow referral entries to other discovery controllers; `maxDepth` bounds the chain (default 8). Default false. */
  followReferrals?: boolean | { maxDepth?: number };
  /** Re-reads of a log whose GENCTR moved, per controller. Default 10. */
  maxRetries?: number;
  /** DH-HMAC-CHAP keys for discovery controllers that require authentication (see ConnectOptions.dhchap). */
  dhchap?: DhchapOptions;
  signal?: AbortSignal;
}

/** A discovery controller visited by {@link discover}. */
export interface VisitedDiscoveryController extends DiscoveryAddress {
  depth: number;
  genctr: bigint;
  numrec: number;
}

/** A referral that could not be read. */
export interface DiscoveryWalkError extends DiscoveryAddress {
  depth: number;
  error: Error;
}

/** Result of {@link discover}. */
export interface DiscoveryResult {
  /** Every non-referral entry (NVM subsystems and current discovery subsystem entries), each reported once. */
  entries: DiscoveryEntry[];
  /** Every referral entry, each reported once. */
  referrals: DiscoveryEntry[];
  /** GENCTR of the first discovery controller's log. */
  genctr: bigint;
  /** The discovery controllers read, in order. */
  visited: VisitedDiscoveryController[];
  /** Referrals that could not be read (the walk goes on without them). */
  errors: DiscoveryWalkError[];
}

function validateCommon(o: { host: string; port?: number; subnqn?: string }): void {
  if (!o || typeof o !== 'object') throw new InvalidArgumentError('discovery options must be an object');
  if (typeof o.host !== 'string' || o.host.length === 0) throw new InvalidArgumentError('host must be a non-empty string');
  if (o.port !== undefined && (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535)) throw new InvalidArgumentError(`port must be 1..65535, got ${o.port}`);
  if (o.subnqn !== undefined) validateNqn(o.subnqn, { name: 'subnqn', strict: false });
  checkSignal('signal', (o as { signal?: unknown }).signal);
}

function connectOptions(o: DiscoverOptions | WatchDiscoveryOptions, at: { host: string; port: number; subnqn: string }, kato: number, events: boolean): ConnectOptions {
  return {
    host: at.host,
    port: at.port,
    subnqn: at.subnqn,
    hostnqn: o.hostnqn,
    hostid: o.hostid,
    kato,
    ioQueues: 0,
    adminQueueSize: 8,
    headerDigest: o.headerDigest,
    dataDigest: o.dataDigest,
    connectTimeout: o.connectTimeout,
    commandTimeout: o.commandTimeout,
    events,
    signal: o.signal,
    ...(o.tls === undefined ? {} : { tls: o.tls }),
    ...(o.dhchap === undefined ? {} : { dhchap: o.dhchap }),
  };
}

/** DH-HMAC-CHAP options of each discovery watcher, out of sight of inspect() and JSON. */
const watcherSecrets = new WeakMap<object, DhchapOptions>();
/** TLS options (the PSK) of each discovery watcher, out of sight of inspect() and JSON. */
const watcherTls = new WeakMap<object, TlsOptions>();

async function closeQuietly(ctrl: Controller): Promise<void> {
  try {
    await ctrl.close();
  } catch (err) {
    debug('closing discovery controller %s:%d: %s', ctrl.host, ctrl.port, (err as Error).message);
    ctrl.destroy();
  }
}

/**
 * Connect to a discovery controller, read its log (GENCTR-consistent), and optionally follow referrals breadth
 * first, with loop protection (a controller is read once per transport/family/address/service/NQN) and a depth bound.
 * Duplicate entries across controllers are reported once. A referral that cannot be reached is listed in `errors`;
 * the starting controller failing rejects. Each connection is one-shot: no I/O queues, no keep-alive, no events.
 */
export async function discover(opts: DiscoverOptions): Promise<DiscoveryResult> {
  validateCommon(opts);
  const follow = opts.followReferrals;
  const maxDepth = follow === undefined || follow === false ? 0 : follow === true ? 8 : (follow.maxDepth ?? 8);
  if (!Number.isInteger(maxDepth) || maxDepth < 0) throw new InvalidArgumentError(`followReferrals.maxDepth must be a non-negative integer, got ${String(maxDepth)}`);
  const signal = opts.signal;
  const port = opts.port ?? DISCOVERY_PORT;
  const subnqn = opts.subnqn ?? DISCOVERY_NQN;

  const result: DiscoveryResult = { entries: [], referrals: [], genctr: 0n, visited: [], errors: [] };
  const seenEntries = new Set<string>();
  const seenControllers = new Set<string>();
  const queue: { host: string; port: number; subnqn: string; depth: number }[] = [{ host: opts.host, port, subnqn, depth: 0 }];
  seenControllers.add(controllerKey(TransportType.Tcp, adrfamOf(opts.host), opts.host, String(port), subnqn));

  while (queue.length > 0) {
    if (signal?.aborted) throw abortError(signal);
    const at = queue.shift()!;
    const addr: DiscoveryAddress = { traddr: at.host, trsvcid: String(at.port), subnqn: at.subnqn };
    let log: DiscoveryLogSnapshot;
    try {
      const ctrl = await connect(connectOptions(opts, at, 0, false));
      try {
        log = await readDiscoveryLog(ctrl, { maxRetries: opts.maxRetries, signal, timeout: opts.commandTimeout, source: { ...addr, depth: at.depth } });
      } finally {
        await closeQuietly(ctrl);
      }
    } catch (err) {
      if (at.depth === 0 || signal?.aborted) throw err;
      debug('referral %s:%d (%s) failed: %s', at.host, at.port, at.subnqn, (err as Error).message);
      result.errors.push({ ...addr, depth: at.depth, error: err as Error });
      continue;
    }
    if (at.depth === 0) result.genctr = log.genctr;
    result.visited.push({ ...addr, depth: at.depth, genctr: log.genctr, numrec: log.numrec });
    for (const e of log.entries) {
      const key = discoveryEntryKey(e);
      if (seenEntries.has(key)) continue;
      seenEntries.add(key);
      if (e.subtype !== 'referral') {
        result.entries.push(e);
        continue;
      }
      result.referrals.push(e);
      if (at.depth >= maxDepth) continue;
      if (e.trtype !== TransportType.Tcp || (e.adrfam !== AddressFamily.Ipv4 && e.adrfam !== AddressFamily.Ipv6)) continue;
      const refPort = Number(e.trsvcid);
      const refNqn = e.subnqn || DISCOVERY_NQN;
      if (!Number.isInteger(refPort) || refPort < 1 || refPort > 65535 || e.traddr.length === 0) {
        result.errors.push({ traddr: e.traddr, trsvcid: e.trsvcid, subnqn: refNqn, depth: at.depth + 1, error: protocolError.malformed(`referral has an unusable address ${e.traddr}:${e.trsvcid}`) });
        continue;
      }
      const ckey = controllerKey(e.trtype, e.adrfam, e.traddr, String(refPort), refNqn);
      if (seenControllers.has(ckey)) continue;
      seenControllers.add(ckey);
      queue.push({ host: e.traddr, port: refPort, subnqn: refNqn, depth: at.depth + 1 });
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Persistent discovery controller

/** Options for {@link watchDiscovery}. */
export interface WatchDiscoveryOptions {
  host: string;
  /** Default 8009. */
  port?: number;
  hostnqn?: string;
  hostid?: string;
  /** Default the well-known discovery NQN. */
  subnqn?: string;
  /** Keep Alive Timeout in ms for the persistent connection. Default 30000. */
  kato?: number;
  /** TLS 1.3 with a PSK (see ConnectOptions.tls). */
  tls?: TlsOptions;
  connectTimeout?: number;
  commandTimeout?: number;
  headerDigest?: boolean;
  dataDigest?: boolean;
  /** Re-reads of a log whose GENCTR moved. Default 10. */
  maxRetries?: number;
  /** DH-HMAC-CHAP keys for a discovery controller that requires authentication (see ConnectOptions.dhchap). */
  dhchap?: DhchapOptions;
  /**
   * After the connection is lost, try to connect again every this many ms until close() (0: give up, the watcher
   * closes). On reconnect the log is read again and differences are reported as a change. Default 5000.
   */
  reconnectDelay?: number;
  /** Aborting it closes the watcher. */
  signal?: AbortSignal;
}

/** The discovery log changed. */
export interface DiscoveryChangeReport {
  type: 'change';
  /** Entries present now that were not before. */
  added: DiscoveryEntry[];
  /** Entries present before that are not now. */
  removed: DiscoveryEntry[];
  /** The log as now read. */
  log: DiscoveryLogSnapshot;
  time: number;
}

/** Events of a {@link DiscoveryWatcher}. */
export type DiscoveryWatchEvent =
  | DiscoveryChangeReport
  | { type: 'disconnected'; error: Error; time: number }
  | { type: 'reconnected'; time: number }
  | { type: 'error'; error: Error; time: number }
  | { type: 'overflow'; dropped: number; time: number };

/** A discovery watcher event without the `time` the watcher fills in. */
type WatchEventInit = DistributiveOmit<DiscoveryWatchEvent, 'time'>;

/**
 * A persistent connection to a discovery controller: keep-alive, an AER armed for Discovery Log Page Change, the log
 * re-read (GENCTR-consistent) on every change, and `{ added, removed, log }` reported. Create with
 * {@link watchDiscovery}.
 */
export class DiscoveryWatcher {
  /** The discovery log as last read. */
  log!: DiscoveryLogSnapshot;
  private ctrl: Controller | undefined;
  private readonly opts: WatchDiscoveryOptions;
  private readonly at: { host: string; port: number; subnqn: string };
  private readonly hub = new EventChannel<DiscoveryWatchEvent, WatchEventInit>({
    stamp: (init) => ({ ...init, time: Date.now() }) as DiscoveryWatchEvent,
    overflow: (dropped) => ({ type: 'overflow', dropped, time: Date.now() }),
  });
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Log reads run one after the other through this chain. */
  private lock: Promise<unknown> = Promise.resolve();
  private rereadQueued = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private onAbort: (() => void) | undefined;
  /** Aborted by close(): cancels a connection attempt in progress. */
  private readonly lifetime = new AbortController();

  private constructor(opts: WatchDiscoveryOptions) {
    // DH-HMAC-CHAP keys are kept outside the object so that printing the watcher never shows them.
    const { dhchap, tls, ...rest } = opts;
    this.opts = rest;
    if (dhchap !== undefined) watcherSecrets.set(this, dhchap);
    if (tls !== undefined) watcherTls.set(this, tls);
    this.at = { host: opts.host, port: opts.port ?? DISCOVERY_PORT, subnqn: opts.subnqn ?? DISCOVERY_NQN };
  }

  /** Connect, read the log once, and start watching. */
  static async open(opts: WatchDiscoveryOptions): Promise<DiscoveryWatcher> {
    validateCommon(opts);
    if (opts.kato !== undefined && (!Number.isInteger(opts.kato) || opts.kato < 0)) throw new InvalidArgumentError(`kato must be a non-negative integer, got ${String(opts.kato)}`);
    if (opts.reconnectDelay !== undefined && (!Number.isInteger(opts.reconnectDelay) || opts.reconnectDelay < 0 || opts.reconnectDelay > MAX_TIMER_MS)) {
      throw new InvalidArgumentError(`reconnectDelay must be an integer 0..${MAX_TIMER_MS} ms, got ${String(opts.reconnectDelay)}`);
    }
    const signal = opts.signal;
    if (signal?.aborted) throw abortError(signal);
    const w = new DiscoveryWatcher(opts);
    if (signal) {
      w.onAbort = () => void w.close();
      signal.addEventListener('abort', w.onAbort, { once: true });
    }
    try {
      const ctrl = await w.connectOnce();
      if (w.closed) {
        await closeQuietly(ctrl);
        throw signal?.aborted ? abortError(signal) : new InvalidStateError('discovery watcher closed while opening');
      }
      // Subscribe before the first read so that no change can fall between the read and the subscription.
      w.attach(ctrl);
      await w.serial(async () => {
        w.log = await w.readLog(ctrl);
      });
    } catch (err) {
      await w.close();
      if (signal?.aborted) throw abortError(signal);
      throw err;
    }
    return w;
  }

  /** The connected discovery controller (undefined while reconnecting or after close). */
  get controller(): Controller | undefined {
    return this.ctrl;
  }

  /** True once close() was called (or the connection was lost and reconnecting is off). */
  get isClosed(): boolean {
    return this.closed;
  }

  private connectOnce(): Promise<Controller> {
    // Only the watcher's lifetime cancels a connection attempt; the caller's signal closes the watcher.
    const dhchap = watcherSecrets.get(this);
    const tls = watcherTls.get(this);
    return connect({ ...connectOptions({ ...this.opts, dhchap, tls }, this.at, this.opts.kato ?? 30_000, true), signal: this.lifetime.signal });
  }

  private readLog(ctrl: Controller): Promise<DiscoveryLogSnapshot> {
    return readDiscoveryLog(ctrl, {
      maxRetries: this.opts.maxRetries,
      timeout: this.opts.commandTimeout,
      source: { traddr: this.at.host, trsvcid: String(this.at.port), subnqn: this.at.subnqn, depth: 0 },
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.lock.then(fn, fn);
    this.lock = p.catch(() => undefined);
    return p;
  }

  private attach(ctrl: Controller): void {
    this.ctrl = ctrl;
    if (!ctrl.identity.decoded.oaes.discoveryLogChange) {
      debug('discovery controller %s:%d does not report Discovery Log Page Change notices', ctrl.host, ctrl.port);
    }
    this.unsubscribe = ctrl.on('discovery-change', () => this.reread());
    ctrl.onClose((err) => this.lost(ctrl, err));
  }

  /**
   * Subscribe to one event type, or '*' for all. The listener runs synchronously when the event is delivered (a
   * throwing listener does not stop the others). Returns a function that unsubscribes.
   */
  on(type: 'change', listener: (ev: DiscoveryChangeReport) => void): () => void;
  on(type: 'disconnected', listener: (ev: Extract<DiscoveryWatchEvent, { type: 'disconnected' }>) => void): () => void;
  on(type: 'reconnected', listener: (ev: Extract<DiscoveryWatchEvent, { type: 'reconnected' }>) => void): () => void;
  on(type: 'error', listener: (ev: Extract<DiscoveryWatchEvent, { type: 'error' }>) => void): () => void;
  on(type: 'overflow', listener: (ev: Extract<DiscoveryWatchEvent, { type: 'overflow' }>) => void): () => void;
  on(type: DiscoveryWatchEvent['type'] | '*', listener: (ev: DiscoveryWatchEvent) => void): () => void;
  on(type: DiscoveryWatchEvent['type'] | '*', listener: (ev: never) => void): () => void {
    return this.hub.on(type, listener as (ev: DiscoveryWatchEvent) => void);
  }

  /** Async iterator over events from now on (bounded queue with an overflow event; ends at close()). */
  events(opts: { signal?: AbortSignal; highWaterMark?: number } = {}): BoundedEventIterator<DiscoveryWatchEvent> {
    // Only these two options: the watcher's iterators take every event type.
    return this.hub.iterate({ signal: opts.signal, highWaterMark: opts.highWaterMark });
  }

  /**
   * Read the log now and report what changed: resolves with the change (also emitted), or undefined when nothing
   * did. Reads never overlap with the ones events cause.
   */
  refresh(): Promise<DiscoveryChangeReport | undefined> {
    return this.serial(async () => {
      if (this.closed) throw new InvalidStateError('discovery watcher is closed');
      const ctrl = this.ctrl;
      if (!ctrl) throw new InvalidStateError('discovery watcher is reconnecting');
      return this.update(await this.readLog(ctrl));
    });
  }

  private update(log: DiscoveryLogSnapshot): DiscoveryChangeReport | undefined {
    const before = new Map(this.log.entries.map((e) => [discoveryEntryKey(e), e]));
    const now = new Map(log.entries.map((e) => [discoveryEntryKey(e), e]));
    const added = [...now].filter(([k]) => !before.has(k)).map(([, e]) => e);
    const removed = [...before].filter(([k]) => !now.has(k)).map(([, e]) => e);
    const moved = log.genctr !== this.log.genctr;
    this.log = log;
    if (added.length === 0 && removed.length === 0 && !moved) return undefined;
    return this.hub.emit({ type: 'change', added, removed, log }) as DiscoveryChangeReport;
  }

  /** Re-read after a Discovery Log Page Change; events arriving while a re-read waits to start share it. */
  private reread(): void {
    if (this.closed || this.rereadQueued) return;
    this.rereadQueued = true;
    void this.serial(async () => {
      this.rereadQueued = false;
      const ctrl = this.ctrl;
      if (!ctrl || this.closed) return;
      try {
        this.update(await this.readLog(ctrl));
      } catch (err) {
        if (!this.closed && ctrl.state === 'live') this.hub.emit({ type: 'error', error: err as Error });
      }
    });
  }

  private lost(ctrl: Controller, err: Error | undefined): void {
    if (this.ctrl !== ctrl) return;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.ctrl = undefined;
    if (this.closed) return;
    const error = err ?? new InvalidStateError('discovery controller closed');
    this.hub.emit({ type: 'disconnected', error });
    const delay = this.opts.reconnectDelay ?? 5000;
    if (delay === 0) {
      void this.close();
      return;
    }
    this.scheduleReconnect(delay);
  }

  private scheduleReconnect(delay: number): void {
    if (this.closed) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.reconnect(delay);
    }, delay);
  }

  private async reconnect(delay: number): Promise<void> {
    if (this.closed) return;
    let ctrl: Controller;
    try {
      ctrl = await this.connectOnce();
    } catch (err) {
      debug('discovery reconnect to %s:%d failed: %s', this.at.host, this.at.port, (err as Error).message);
      this.scheduleReconnect(delay);
      return;
    }
    if (this.closed) {
      await closeQuietly(ctrl);
      return;
    }
    this.attach(ctrl);
    this.hub.emit({ type: 'reconnected' });
    // Whatever changed while disconnected is reported as one change.
    this.reread();
  }

  /** Stop watching: close the connection and end iterators. Idempotent; resolves when the connection is closed. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    this.hub.close();
    this.lifetime.abort();
    if (this.onAbort) this.opts.signal?.removeEventListener('abort', this.onAbort);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const ctrl = this.ctrl;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.ctrl = undefined;
    if (ctrl) await closeQuietly(ctrl);
  }
}

/** Open a {@link DiscoveryWatcher} on a discovery controller. */
export function watchDiscovery(opts: WatchDiscoveryOptions): Promise<DiscoveryWatcher> {
  return DiscoveryWatcher.open(opts);
}
