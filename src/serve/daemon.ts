/**
 * The daemon's core: the registry of what it holds (controllers, persistent discovery controllers, multipath
 * namespaces), each with an id and a bounded management queue; the event ring; the counters behind /metrics.
 *
 * A controller is held through a multipath `Path`, which gives it the states the API reports (connecting, live,
 * reconnecting, failed; 'deleting' while it is being removed) and Linux-style reconnects. Management operations on
 * one object run one at a time through its queue; block I/O does not queue and runs in parallel.
 */
import { Buffer } from 'node:buffer';
import {
  connect,
  ErrorCode,
  InvalidArgumentError,
  InvalidStateError,
  Namespace as NamespaceClass,
  NvmeofError,
  Path,
  openMultipath,
  watchDiscovery,
  type Controller,
  type ControllerEvent,
  type DiscoveryEntry,
  type DiscoveryWatcher,
  type MultipathNamespace,
  type Namespace,
  type NamespaceOwner,
  type NsIdDescriptor,
  type PathHealth,
  type PathState,
  type ReservationAcquireParams,
  type ReservationRegisterParams,
  type ReservationReleaseParams,
  type ReservationReport,
} from '../index.js';
import { discoveryEntryJson } from './entry-json.js';
import { EventRing, SerialQueue } from './queue.js';
import type { ControllerSpec, DiscoverySpec, EntryFilter, MultipathSpec, ServeConfig } from './validate.js';

/** Options of the daemon core. */
export interface DaemonOptions {
  /** Management operations queued per object (the running one included) before 429. Default 16. */
  queueLimit?: number;
  /** Events kept for replay. Default 1024. */
  eventRing?: number;
  /** Largest block I/O transfer of one request, bytes. Default 1 MiB. */
  maxIoBytes?: number;
  /** Where the daemon logs (one line each; never secrets). Default: nowhere. */
  log?: (line: string) => void;
}

/** States the API reports for a controller. */
export type ManagedState = PathState | 'deleting';

/** Where a held object came from. */
export type Origin = 'api' | 'config' | `discovery:${string}`;

/** Latency histogram buckets, seconds. */
export const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** I/O counters of one namespace through one controller and one operation. */
export interface IoStats {
  requests: number;
  bytes: number;
  /** Cumulative counts per bucket (same order as LATENCY_BUCKETS), plus the total sum of seconds. */
  buckets: number[];
  sum: number;
}

function notFound(what: string): NvmeofError {
  return new NvmeofError(ErrorCode.NOT_FOUND, what);
}

/** Entry fields a client can act on (the raw record and buffers stay out), with the library's field names. */
export function entryJson(e: DiscoveryEntry): Record<string, unknown> {
  return discoveryEntryJson(e, 'serve');
}

/** A controller the daemon holds. */
export class ManagedController {
  readonly path: Path;
  deleting = false;
  /** The controller of the current (or last) connection. */
  ctrl: Controller | undefined;
  /** Active namespace IDs, read at each connect and kept up to date by namespace notices. */
  nsids: number[] = [];
  readonly queue: SerialQueue;
  readonly io = new Map<string, IoStats>();
  readonly aens = new Map<string, number>();
  private handles = new Map<number, Promise<Namespace>>();
  private unsubscribe: (() => void) | undefined;

  constructor(
    readonly id: string,
    readonly spec: ControllerSpec,
    readonly origin: Origin,
    private readonly daemon: ServeDaemon,
  ) {
    this.queue = new SerialQueue(daemon.queueLimit, `controller ${id}`);
    this.path = new Path({
      ...spec.connect,
      host: spec.traddr,
      port: Number(spec.trsvcid),
      subnqn: spec.subnqn,
      reconnectDelay: spec.reconnectDelay,
      ctrlLossTimeout: spec.ctrlLossTimeout,
      fastIoFailTimeout: spec.fastIoFailTimeout,
      connect: async (o) => {
        const c = await connect(o);
        try {
          const nsids = c.isDiscovery ? [] : await c.activeNamespaceIds();
          this.adopt(c, nsids);
        } catch (err) {
          c.destroy(err as Error);
          throw err;
        }
        return c;
      },
    });
    this.path.onChange((c) => {
      if (c.kind !== 'state') return;
      daemon.emit('controller-state', { ...this.where(), state: c.to, previous: c.from ?? null, reason: c.reason ?? null });
    });
  }

  get state(): ManagedState {
    return this.deleting ? 'deleting' : this.path.state;
  }

  /** The labels every event and metric of this controller carries. */
  where(): { controller: string; subnqn: string; traddr: string; trsvcid: string } {
    return { controller: this.id, subnqn: this.spec.subnqn, traddr: this.spec.traddr, trsvcid: this.spec.trsvcid };
  }

  private adopt(c: Controller, nsids: number[]): void {
    this.unsubscribe?.();
    this.ctrl = c;
    this.nsids = nsids;
    this.handles = new Map();
    this.unsubscribe = c.on('*', (ev) => this.onEvent(c, ev));
  }

  private onEvent(c: Controller, ev: ControllerEvent): void {
    if (ev.type === 'overflow' || c !== this.ctrl) return;
    this.aens.set(ev.type, (this.aens.get(ev.type) ?? 0) + 1);
    const base = { ...this.where(), cntlid: ev.cntlid };
    switch (ev.type) {
      case 'ana-change':
        this.daemon.emit('ana-change', { ...base, reason: ev.reason, groups: ev.groups, changed: ev.changed, chgcnt: String(ev.log.chgcnt) });
        return;
      case 'namespace-changed': {
        const gone = new Set(ev.removed);
        this.nsids = [...this.nsids.filter((n) => !gone.has(n)), ...ev.added.filter((n) => !this.nsids.includes(n))].sort((a, b) => a - b);
        for (const n of [...ev.nsids, ...ev.added, ...ev.removed]) this.handles.delete(n);
        if (ev.overflow) this.handles.clear();
        this.daemon.emit('namespace-changed', { ...base, nsids: ev.nsids, added: ev.added, removed: ev.removed, overflow: ev.overflow });
        return;
      }
      case 'discovery-change':
        this.daemon.emit('discovery-change', { ...base });
        return;
      case 'reservation':
        this.daemon.emit('reservation', { ...base, nsid: ev.nsid, notification: ev.notification, logPageCount: String(ev.logPageCount) });
        return;
      case 'error':
        this.daemon.emit('error-status', { ...base, info: ev.info, name: ev.name, entries: ev.entries.length });
        return;
      case 'smart':
        this.daemon.emit('smart', { ...base, info: ev.info, name: ev.name, criticalWarning: ev.log?.criticalWarning ?? null });
        return;
      case 'firmware-activation':
        this.daemon.emit('firmware-activation', { ...base });
        return;
      case 'other':
        this.daemon.emit('async-event', { ...base, aenType: ev.aenType, info: ev.info, lid: ev.lid, name: ev.name });
        return;
    }
  }

  /** The live controller, or an InvalidStateError (HTTP 409) saying what state it is in. */
  live(): Controller {
    const c = this.path.controller as Controller | undefined;
    if (this.state !== 'live' || !c) throw new InvalidStateError(`controller ${this.id} is ${this.state}`);
    return c;
  }

  /** A handle on an active namespace (identified once per connection). */
  namespace(nsid: number): Promise<Namespace> {
    const c = this.live();
    if (!this.nsids.includes(nsid)) return Promise.reject(notFound(`controller ${this.id} has no active namespace ${nsid}`));
    let h = this.handles.get(nsid);
    if (!h) {
      h = c.namespace(nsid).then((plain) => this.throughPath(c, plain));
      this.handles.set(nsid, h);
      h.catch(() => {
        if (this.handles.get(nsid) === h) this.handles.delete(nsid);
      });
    }
    return h;
  }

  /**
   * The same namespace with its commands sent through the path, so that the path counts them (completed, errors by
   * kind) and resets itself on errors that call for it, as for multipath I/O.
   */
  private throughPath(c: Controller, plain: Namespace): Namespace {
    const path = this.path;
    const owner: NamespaceOwner = {
      get maxTransferBytes() {
        return c.maxTransferBytes;
      },
      get oncs() {
        return c.oncs;
      },
      ioCommand: (cmd, o) => path.submit(cmd, o),
      adminCommand: (cmd, o) => c.adminCommand(cmd, o),
      anaState: (n) => c.anaState(n),
      anaGroup: (n) => c.anaGroup(n),
      get anaTransitionTimeout() {
        return c.anaTransitionTimeout;
      },
      waitForAnaChange: (n, ms, signal) => c.waitForAnaChange(n, ms, signal),
    };
    const hex = (s: string | undefined) => (s === undefined ? undefined : Buffer.from(s.replace(/-/g, ''), 'hex'));
    const descriptors: NsIdDescriptor[] = [];
    const add = (type: 'nguid' | 'eui64' | 'uuid', nidt: number, v: Buffer | undefined) => {
      if (v) descriptors.push({ type, nidt, value: v });
    };
    add('eui64', 1, hex(plain.eui64));
    add('nguid', 2, hex(plain.nguid));
    add('uuid', 3, hex(plain.uuid));
    return new NamespaceClass(owner, plain.nsid, plain.identity, descriptors);
  }

  /** Count one block I/O request. */
  noteIo(nsid: number, op: 'read' | 'write', bytes: number, seconds: number): void {
    const key = `${nsid}/${op}`;
    let s = this.io.get(key);
    if (!s) {
      s = { requests: 0, bytes: 0, buckets: LATENCY_BUCKETS.map(() => 0), sum: 0 };
      this.io.set(key, s);
    }
    s.requests++;
    s.bytes += bytes;
    s.sum += seconds;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]!) s.buckets[i]!++;
  }

  health(): PathHealth {
    return this.path.health();
  }

  json(): Record<string, unknown> {
    const h = this.path.health();
    const c = this.state === 'live' ? this.ctrl : undefined;
    const log = c?.anaLog;
    return {
      id: this.id,
      state: this.state,
      origin: this.origin,
      traddr: this.spec.traddr,
      trsvcid: this.spec.trsvcid,
      subnqn: this.spec.subnqn,
      hostnqn: this.path.hostnqn,
      cntlid: h.cntlid,
      keepAliveRttMs: h.keepAliveRttMs,
      lastKeepAliveAt: h.lastKeepAliveAt,
      errors: h.errors.total,
      errorsByKind: h.errors,
      reconnects: h.reconnects,
      reconnectAttempts: h.reconnectAttempts,
      anaGroups: log ? log.groups.map((g) => ({ group: g.anagrpid, state: g.stateName, nsids: g.nsids })) : [],
      namespaces: this.nsids,
      since: h.since,
      connectedAt: h.connectedAt,
      lostAt: h.lostAt,
      nextReconnectAt: h.nextReconnectAt,
      lastEvent: h.lastEvent,
    };
  }

  async close(): Promise<void> {
    this.deleting = true;
    await this.path.close();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}

function matches(e: DiscoveryEntry, f: EntryFilter): boolean {
  return (
    (f.subnqn === undefined || f.subnqn === e.subnqn) &&
    (f.traddr === undefined || f.traddr === e.traddr) &&
    (f.trsvcid === undefined || f.trsvcid === e.trsvcid) &&
    (f.transport === undefined || f.transport.toLowerCase() === e.transport)
  );
}

/** A persistent discovery controller the daemon holds. */
export class ManagedDiscovery {
  watcher: DiscoveryWatcher | undefined;
  state: 'connecting' | 'live' | 'reconnecting' | 'failed' | 'deleting' = 'connecting';
  lastError: { code: string | null; message: string } | null = null;
  /** Controllers attached from the log: entry key -> controller id. */
  readonly attached = new Map<string, string>();
  readonly queue: SerialQueue;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly id: string,
    readonly spec: DiscoverySpec,
    readonly origin: Origin,
    private readonly daemon: ServeDaemon,
  ) {
    this.queue = new SerialQueue(daemon.queueLimit, `discovery controller ${id}`);
  }

  /** Connect and read the log; with `keepTrying` a failure is retried every reconnectDelay (config items). */
  async open(keepTrying: boolean, signal?: AbortSignal): Promise<void> {
    const s = this.spec;
    try {
      const w = await watchDiscovery({
        host: s.traddr,
        port: Number(s.trsvcid),
        subnqn: s.subnqn,
        hostnqn: s.hostnqn,
        hostid: s.hostid,
        kato: s.kato,
        reconnectDelay: s.reconnectDelay,
        connectTimeout: s.connectTimeout,
        commandTimeout: s.commandTimeout,
        headerDigest: s.headerDigest,
        dataDigest: s.dataDigest,
        dhchap: s.dhchap,
        tls: s.tls,
        signal,
      });
      if (this.closed) {
        await w.close();
        return;
      }
      this.watcher = w;
      this.state = 'live';
      this.lastError = null;
      w.on('change', (r) => {
        this.daemon.emit('discovery-change', {
          discovery: this.id,
          traddr: s.traddr,
          trsvcid: s.trsvcid,
          genctr: String(r.log.genctr),
          added: r.added.map(entryJson),
          removed: r.removed.map(entryJson),
        });
        if (s.connect) void this.queue.run(() => this.sync()).catch((err: Error) => this.daemon.log(`discovery ${this.id}: ${err.message}`));
      });
      w.on('disconnected', (ev) => {
        this.state = 'reconnecting';
        this.lastError = { code: (ev.error as { code?: string }).code ?? null, message: ev.error.message };
      });
      w.on('reconnected', () => {
        this.state = 'live';
      });
      if (s.connect) await this.sync();
    } catch (err) {
      const e = err as Error & { code?: string };
      this.lastError = { code: e.code ?? null, message: e.message };
      if (!keepTrying || this.closed) throw err;
      this.state = 'failed';
      this.daemon.log(`discovery ${this.id} (${s.traddr}:${s.trsvcid}): ${e.message}; trying again`);
      this.retry = setTimeout(() => {
        this.retry = undefined;
        void this.queue.run(() => this.open(true)).catch(() => undefined);
      }, s.reconnectDelay ?? 5000);
    }
  }

  /** Entries of the log this discovery controller attaches. */
  wanted(): Map<string, DiscoveryEntry> {
    const out = new Map<string, DiscoveryEntry>();
    const log = this.watcher?.log;
    if (!log) return out;
    for (const e of log.entries) {
      if (e.subtype !== 'nvm' || e.transport !== 'tcp') continue;
      if (this.spec.include.length > 0 && !this.spec.include.some((f) => matches(e, f))) continue;
      if (this.spec.exclude.some((f) => matches(e, f))) continue;
      out.set(`${e.traddr}/${e.trsvcid}/${e.subnqn}`, e);
    }
    return out;
  }

  /** Attach what the log lists and the filters let through; detach what is no longer listed. */
  async sync(): Promise<void> {
    if (this.closed) return;
    const want = this.wanted();
    for (const [key, cid] of [...this.attached]) {
      if (want.has(key) && this.daemon.controllers.has(cid)) continue;
      this.attached.delete(key);
      if (this.daemon.controllers.has(cid)) await this.daemon.deleteController(cid).catch((err: Error) => this.daemon.log(`discovery ${this.id}: detaching ${cid}: ${err.message}`));
    }
    for (const [key, e] of want) {
      if (this.attached.has(key)) continue;
      const spec: ControllerSpec = { ...this.spec.controller, connect: { ...this.spec.controller.connect }, traddr: e.traddr, trsvcid: e.trsvcid, subnqn: e.subnqn };
      const mc = this.daemon.addController(spec, `discovery:${this.id}`);
      this.attached.set(key, mc.id);
      void mc.path.start().catch(() => undefined);
    }
  }

  json(): Record<string, unknown> {
    const log = this.watcher?.log;
    return {
      id: this.id,
      state: this.state,
      origin: this.origin,
      traddr: this.spec.traddr,
      trsvcid: this.spec.trsvcid,
      subnqn: this.spec.subnqn,
      connect: this.spec.connect,
      include: this.spec.include,
      exclude: this.spec.exclude,
      lastError: this.lastError,
      attached: [...this.attached.values()],
      log: log ? { genctr: String(log.genctr), numrec: log.numrec, entries: log.entries.map(entryJson) } : null,
    };
  }

  /** Stop watching and detach the controllers attached from the log. */
  async close(): Promise<void> {
    this.closed = true;
    this.state = 'deleting';
    if (this.retry) clearTimeout(this.retry);
    await this.watcher?.close();
    for (const cid of this.attached.values()) {
      if (this.daemon.controllers.has(cid)) await this.daemon.deleteController(cid).catch(() => undefined);
    }
    this.attached.clear();
  }
}

/** A multipath namespace the daemon holds. */
export class ManagedMultipath {
  m: MultipathNamespace | undefined;
  state: 'connecting' | 'open' | 'failed' | 'deleting' = 'connecting';
  lastError: { code: string | null; message: string } | null = null;
  readonly queue: SerialQueue;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly id: string,
    readonly spec: MultipathSpec,
    readonly origin: Origin,
    private readonly daemon: ServeDaemon,
  ) {
    this.queue = new SerialQueue(daemon.queueLimit, `multipath namespace ${id}`);
  }

  async open(keepTrying: boolean, signal?: AbortSignal): Promise<void> {
    const s = this.spec;
    try {
      const m = await openMultipath({
        ...s.connect,
        subnqn: s.subnqn,
        nsid: s.nsid,
        paths: s.paths.map((p) => ({ host: p.traddr, port: Number(p.trsvcid) })),
        policy: s.policy,
        reconnectDelay: s.reconnectDelay,
        ctrlLossTimeout: s.ctrlLossTimeout,
        fastIoFailTimeout: s.fastIoFailTimeout,
        maxRetries: s.maxRetries,
        anaPollInterval: s.anaPollInterval,
        signal,
      });
      if (this.closed) {
        await m.close();
        return;
      }
      this.m = m;
      this.state = 'open';
      this.lastError = null;
      m.on('path-state', (ev) => {
        this.daemon.emit('path-state', {
          multipath: this.id,
          subnqn: s.subnqn,
          nsid: s.nsid,
          path: ev.path,
          traddr: ev.host,
          trsvcid: String(ev.port),
          cntlid: ev.cntlid,
          state: ev.state,
          previous: ev.previousState,
          anaState: ev.anaState,
          previousAnaState: ev.previousAnaState,
          usable: ev.usable,
          reason: ev.reason,
        });
      });
    } catch (err) {
      const e = err as Error & { code?: string };
      this.lastError = { code: e.code ?? null, message: e.message };
      if (!keepTrying || this.closed) throw err;
      this.state = 'failed';
      this.daemon.log(`multipath ${this.id} (${s.subnqn} nsid ${s.nsid}): ${e.message}; trying again`);
      this.retry = setTimeout(() => {
        this.retry = undefined;
        void this.queue.run(() => this.open(true)).catch(() => undefined);
      }, s.reconnectDelay ?? 5000);
    }
  }

  json(): Record<string, unknown> {
    return {
      id: this.id,
      state: this.state,
      origin: this.origin,
      subnqn: this.spec.subnqn,
      nsid: this.spec.nsid,
      policy: this.spec.policy,
      paths: this.spec.paths,
      lastError: this.lastError,
      health: this.m ? this.m.health() : null,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.state = 'deleting';
    if (this.retry) clearTimeout(this.retry);
    await this.m?.close();
  }
}

/** What a config reload changed. */
export interface ConfigDiff {
  added: string[];
  removed: string[];
  kept: string[];
}

type Kind = 'controllers' | 'discovery' | 'multipath';

/** The registry and everything the API and /metrics report. */
/** What the daemon registers by id besides controllers: discovery controllers and multipath namespaces. */
interface Registered {
  readonly id: string;
  readonly queue: SerialQueue;
  open(keepTrying: boolean, signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/** The object registered under `id`, or NVMEOF_ERR_NOT_FOUND naming what was asked for. */
function registered<T>(map: Map<string, T>, id: string, what: string): T {
  const obj = map.get(id);
  if (!obj) throw notFound(`no ${what} ${JSON.stringify(id)}`);
  return obj;
}

/** Close the object registered under `id` and forget it, even when closing fails. */
async function closeRegistered<T extends Registered>(map: Map<string, T>, id: string, what: string): Promise<void> {
  const obj = registered(map, id, what);
  try {
    await obj.close();
  } finally {
    map.delete(id);
  }
}

export class ServeDaemon {
  readonly controllers = new Map<string, ManagedController>();
  readonly discoveries = new Map<string, ManagedDiscovery>();
  readonly multipaths = new Map<string, ManagedMultipath>();
  readonly events: EventRing;
  readonly queueLimit: number;
  readonly maxIoBytes: number;
  readonly startedAt = Date.now();
  /** Error answers by library code. */
  readonly errorsByCode = new Map<string, number>();
  /** Config items held: canonical item -> object id, per kind. */
  private readonly fromConfig: Record<Kind, Map<string, string>> = { controllers: new Map(), discovery: new Map(), multipath: new Map() };
  private seq = { c: 0, d: 0, m: 0 };
  private readonly logFn: (line: string) => void;
  draining = false;

  constructor(opts: DaemonOptions = {}) {
    this.queueLimit = opts.queueLimit ?? 16;
    this.maxIoBytes = opts.maxIoBytes ?? 1024 * 1024;
    this.events = new EventRing(opts.eventRing ?? 1024);
    this.logFn = opts.log ?? (() => undefined);
    if (!Number.isInteger(this.queueLimit) || this.queueLimit < 1) throw new InvalidArgumentError('queueLimit must be a positive integer');
  }

  log(line: string): void {
    this.logFn(line);
  }

  emit(type: string, data: Record<string, unknown>): void {
    this.events.push(type, data);
  }

  noteError(code: string): void {
    this.errorsByCode.set(code, (this.errorsByCode.get(code) ?? 0) + 1);
  }

  // --- controllers -------------------------------------------------------------------------------------------

  /** Register a controller (not yet connected: call `path.start()`). */
  addController(spec: ControllerSpec, origin: Origin): ManagedController {
    const mc = new ManagedController(`c${++this.seq.c}`, spec, origin, this);
    this.controllers.set(mc.id, mc);
    this.emit('controller-state', { ...mc.where(), state: 'connecting', previous: null, reason: `added (${origin})` });
    return mc;
  }

  /**
   * `POST /v1/controllers`: connect, and answer once the first attempt settles. A controller that could not be brought
   * up is removed again and the error returned; one from the config file keeps trying instead.
   */
  async createController(spec: ControllerSpec, signal?: AbortSignal): Promise<ManagedController> {
    const mc = this.addController(spec, 'api');
    const onAbort = () => void this.deleteController(mc.id).catch(() => undefined);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await mc.queue.run(() => mc.path.start(), signal);
    } catch (err) {
      if (this.controllers.get(mc.id) === mc) await this.deleteController(mc.id).catch(() => undefined);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    return mc;
  }

  controller(id: string): ManagedController {
    return registered(this.controllers, id, 'controller');
  }

  /** Close a controller gracefully and forget it. */
  async deleteController(id: string): Promise<void> {
    const mc = this.controller(id);
    if (mc.deleting) return;
    mc.deleting = true;
    this.emit('controller-state', { ...mc.where(), state: 'deleting', previous: mc.path.state, reason: 'delete' });
    try {
      await mc.close();
    } finally {
      this.controllers.delete(id);
    }
  }

  /** `POST /v1/controllers/{id}/reconnect`: a live controller is reset (torn down and reconnected); a lost one tries now. */
  reconnectController(id: string): ManagedController {
    const mc = this.controller(id);
    if (mc.deleting) throw new InvalidStateError(`controller ${id} is being deleted`);
    if (mc.path.state === 'live') mc.path.reset('reconnect asked through the API');
    else mc.path.reconnect();
    return mc;
  }

  async namespacesOf(id: string, signal?: AbortSignal): Promise<Record<string, unknown>[]> {
    const mc = this.controller(id);
    return mc.queue.run(async () => {
      const out: Record<string, unknown>[] = [];
      for (const nsid of mc.nsids) out.push(namespaceJson(await mc.namespace(nsid)));
      return out;
    }, signal);
  }

  // --- block I/O (not queued) ----------------------------------------------------------------------------------

  private ioSize(ns: Namespace, blocks: number): number {
    const bytes = blocks * ns.blockSize;
    if (bytes > this.maxIoBytes) {
      throw new InvalidArgumentError(`${blocks} blocks of ${ns.blockSize} bytes (${bytes} bytes) exceed the ${this.maxIoBytes}-byte limit of one request; split the transfer`);
    }
    return bytes;
  }

  async readBlocks(id: string, nsid: number, lba: bigint, count: number, signal?: AbortSignal): Promise<Buffer> {
    const mc = this.controller(id);
    const ns = await mc.namespace(nsid);
    if (!Number.isSafeInteger(count) || count < 1) throw new InvalidArgumentError(`count must be a positive integer, got ${count}`);
    const bytes = this.ioSize(ns, count);
    const t0 = performance.now();
    const data = await ns.read(lba, count, { signal });
    mc.noteIo(nsid, 'read', bytes, (performance.now() - t0) / 1000);
    return data;
  }

  async writeBlocks(id: string, nsid: number, lba: bigint, data: Buffer, signal?: AbortSignal): Promise<void> {
    const mc = this.controller(id);
    const ns = await mc.namespace(nsid);
    if (data.length === 0 || data.length % ns.blockSize !== 0) {
      throw new InvalidArgumentError(`the body (${data.length} bytes) must be a positive multiple of the ${ns.blockSize}-byte block size of namespace ${nsid}`);
    }
    this.ioSize(ns, data.length / ns.blockSize);
    const t0 = performance.now();
    await ns.write(lba, data, { signal });
    mc.noteIo(nsid, 'write', data.length, (performance.now() - t0) / 1000);
  }

  // --- reservations (queued: they change the controller's standing) ----------------------------------------------

  async reservation(
    id: string,
    nsid: number,
    op: 'register' | 'acquire' | 'release' | 'report',
    params: ReservationRegisterParams | ReservationAcquireParams | ReservationReleaseParams | { extended?: boolean },
    signal?: AbortSignal,
  ): Promise<ReservationReport | undefined> {
    const mc = this.controller(id);
    return mc.queue.run(async () => {
      const ns = await mc.namespace(nsid);
      switch (op) {
        case 'register':
          await ns.reservationRegister(params as ReservationRegisterParams, { signal });
          return undefined;
        case 'acquire':
          await ns.reservationAcquire(params as ReservationAcquireParams, { signal });
          return undefined;
        case 'release':
          await ns.reservationRelease(params as ReservationReleaseParams, { signal });
          return undefined;
        case 'report':
          return ns.reservationReport(params as { extended?: boolean }, { signal });
      }
    }, signal);
  }

  // --- discovery -----------------------------------------------------------------------------------------------

  async createDiscovery(spec: DiscoverySpec, origin: Origin = 'api', signal?: AbortSignal): Promise<ManagedDiscovery> {
    return this.openRegistered(this.discoveries, new ManagedDiscovery(`d${++this.seq.d}`, spec, origin, this), origin, signal);
  }

  discovery(id: string): ManagedDiscovery {
    return registered(this.discoveries, id, 'discovery controller');
  }

  async deleteDiscovery(id: string): Promise<void> {
    await closeRegistered(this.discoveries, id, 'discovery controller');
  }

  // --- multipath -----------------------------------------------------------------------------------------------

  async createMultipath(spec: MultipathSpec, origin: Origin = 'api', signal?: AbortSignal): Promise<ManagedMultipath> {
    return this.openRegistered(this.multipaths, new ManagedMultipath(`m${++this.seq.m}`, spec, origin, this), origin, signal);
  }

  multipath(id: string): ManagedMultipath {
    return registered(this.multipaths, id, 'multipath namespace');
  }

  async deleteMultipath(id: string): Promise<void> {
    await closeRegistered(this.multipaths, id, 'multipath namespace');
  }

  /**
   * Register a discovery controller or multipath namespace under its id and open it through its queue; when the
   * open fails it is removed and closed again (config items keep trying instead: `open(true)`).
   */
  private async openRegistered<T extends Registered>(map: Map<string, T>, obj: T, origin: Origin, signal?: AbortSignal): Promise<T> {
    map.set(obj.id, obj);
    try {
      await obj.queue.run(() => obj.open(origin !== 'api', signal), signal);
    } catch (err) {
      map.delete(obj.id);
      await obj.close().catch(() => undefined);
      throw err;
    }
    return obj;
  }


  // --- views ---------------------------------------------------------------------------------------------------

  /** Every path the daemon holds: its controllers and the paths of its multipath namespaces. */
  allPaths(): { id: string; subnqn: string; traddr: string; trsvcid: string; state: ManagedState; health: PathHealth; nsids: number[]; anaState: (nsid: number) => string | null }[] {
    const out: ReturnType<ServeDaemon['allPaths']> = [];
    for (const mc of this.controllers.values()) {
      out.push({
        id: mc.id,
        subnqn: mc.spec.subnqn,
        traddr: mc.spec.traddr,
        trsvcid: mc.spec.trsvcid,
        state: mc.state,
        health: mc.health(),
        nsids: mc.state === 'live' ? mc.nsids : [],
        anaState: (nsid) => mc.path.anaState(nsid) ?? null,
      });
    }
    for (const mm of this.multipaths.values()) {
      if (!mm.m) continue;
      for (const p of mm.m.paths) {
        out.push({
          id: `${mm.id}/${p.id}`,
          subnqn: mm.spec.subnqn,
          traddr: p.host,
          trsvcid: String(p.port),
          state: p.state,
          health: p.health(mm.spec.nsid),
          nsids: p.state === 'live' ? [mm.spec.nsid] : [],
          anaState: (nsid) => p.anaState(nsid) ?? null,
        });
      }
    }
    return out;
  }

  health(): Record<string, unknown> {
    const paths = this.allPaths();
    const live = paths.filter((p) => p.state === 'live').length;
    const status = this.draining ? 'draining' : paths.length === 0 || live === paths.length ? 'ok' : live === 0 ? 'down' : 'degraded';
    return {
      status,
      controllers: this.controllers.size,
      paths: { live, total: paths.length },
      uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000),
    };
  }

  /** Per subsystem: its namespaces, each with every path (controller, state, ANA state, current). */
  subsystems(): Record<string, unknown>[] {
    const bySubsys = new Map<string, ReturnType<ServeDaemon['allPaths']>>();
    for (const p of this.allPaths()) {
      const l = bySubsys.get(p.subnqn) ?? [];
      l.push(p);
      bySubsys.set(p.subnqn, l);
    }
    const out: Record<string, unknown>[] = [];
    for (const [subnqn, paths] of bySubsys) {
      const nsids = [...new Set(paths.flatMap((p) => p.nsids))].sort((a, b) => a - b);
      const namespaces = nsids.map((nsid) => {
        const through = paths.filter((p) => p.nsids.includes(nsid));
        const rows = through.map((p) => ({ controller: p.id, traddr: p.traddr, trsvcid: p.trsvcid, state: p.state, anaState: p.anaState(nsid), current: false }));
        // The path a failover policy would use: the first live optimized one, else the first live non-optimized one.
        const usable = (s: string | null, want: string) => s === want || (want === 'optimized' && s === null);
        const cur = rows.find((r) => r.state === 'live' && usable(r.anaState, 'optimized')) ?? rows.find((r) => r.state === 'live' && r.anaState === 'non-optimized');
        if (cur) cur.current = true;
        return { nsid, paths: rows };
      });
      out.push({
        subnqn,
        paths: paths.map((p) => ({ controller: p.id, traddr: p.traddr, trsvcid: p.trsvcid, state: p.state })),
        namespaces,
      });
    }
    return out;
  }

  // --- config --------------------------------------------------------------------------------------------------

  /**
   * Hold what `cfg` lists and nothing else from the previous config: items already held (same fields) are kept,
   * new ones are added (and keep trying until they connect), vanished ones are closed. Objects created through the
   * API are not touched.
   */
  async applyConfig(cfg: ServeConfig): Promise<ConfigDiff> {
    const diff: ConfigDiff = { added: [], removed: [], kept: [] };
    const kinds: Kind[] = ['multipath', 'discovery', 'controllers'];
    for (const kind of kinds) {
      const want = new Set(cfg.keys[kind]);
      for (const [key, id] of [...this.fromConfig[kind]]) {
        if (want.has(key)) continue;
        this.fromConfig[kind].delete(key);
        diff.removed.push(id);
        await this.deleteAny(kind, id).catch((err: Error) => this.log(`config: removing ${id}: ${err.message}`));
      }
    }
    const starts: Promise<unknown>[] = [];
    for (const [i, key] of cfg.keys.controllers.entries()) {
      const id = this.fromConfig.controllers.get(key);
      if (id !== undefined) {
        diff.kept.push(id);
        continue;
      }
      const mc = this.addController(cfg.controllers[i]!, 'config');
      this.fromConfig.controllers.set(key, mc.id);
      diff.added.push(mc.id);
      starts.push(
        mc.path.start().catch((err: Error) => this.log(`controller ${mc.id} (${mc.spec.traddr}:${mc.spec.trsvcid} ${mc.spec.subnqn}): ${err.message}; reconnecting`)),
      );
    }
    for (const [i, key] of cfg.keys.discovery.entries()) {
      const id = this.fromConfig.discovery.get(key);
      if (id !== undefined) {
        diff.kept.push(id);
        continue;
      }
      const md = new ManagedDiscovery(`d${++this.seq.d}`, cfg.discovery[i]!, 'config', this);
      this.discoveries.set(md.id, md);
      this.fromConfig.discovery.set(key, md.id);
      diff.added.push(md.id);
      starts.push(md.queue.run(() => md.open(true)).catch(() => undefined));
    }
    for (const [i, key] of cfg.keys.multipath.entries()) {
      const id = this.fromConfig.multipath.get(key);
      if (id !== undefined) {
        diff.kept.push(id);
        continue;
      }
      const mm = new ManagedMultipath(`m${++this.seq.m}`, cfg.multipath[i]!, 'config', this);
      this.multipaths.set(mm.id, mm);
      this.fromConfig.multipath.set(key, mm.id);
      diff.added.push(mm.id);
      starts.push(mm.queue.run(() => mm.open(true)).catch(() => undefined));
    }
    await Promise.all(starts);
    return diff;
  }

  private deleteAny(kind: Kind, id: string): Promise<void> {
    if (kind === 'controllers') return this.controllers.has(id) ? this.deleteController(id) : Promise.resolve();
    if (kind === 'discovery') return this.discoveries.has(id) ? this.deleteDiscovery(id) : Promise.resolve();
    return this.multipaths.has(id) ? this.deleteMultipath(id) : Promise.resolve();
  }

  /** Close everything gracefully: multipath namespaces, discovery controllers, then controllers. */
  async close(): Promise<void> {
    this.draining = true;
    await Promise.allSettled([...this.multipaths.keys()].map((id) => this.deleteMultipath(id)));
    await Promise.allSettled([...this.discoveries.keys()].map((id) => this.deleteDiscovery(id)));
    await Promise.allSettled([...this.controllers.keys()].map((id) => this.deleteController(id)));
  }
}

/** A number when it is safe, else its decimal text. */
export function bigJson(v: bigint): number | string {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

export function namespaceJson(ns: Namespace): Record<string, unknown> {
  return {
    nsid: ns.nsid,
    blockSize: ns.blockSize,
    blocks: bigJson(ns.blocks),
    sizeBytes: bigJson(ns.sizeBytes),
    anaState: ns.anaState ?? null,
    anaGroup: ns.anaGroup,
    nguid: ns.nguid ?? null,
    eui64: ns.eui64 ?? null,
    uuid: ns.uuid ?? null,
  };
}
