/**
 * Path: one controller connection to one subsystem through one address (host, port).
 *
 * A path has explicit states changed only by {@link Path.transition}:
 *
 * ```
 *   connecting --> live --> reconnecting --> connecting --> live ...
 *        |           |           |               |
 *        +-----------+-----------+---------------+--> failed --> (reconnect()) connecting
 *   every state --> deleted (close)
 * ```
 *
 * It owns reconnection with the Linux semantics: after a connection loss, keep-alive failure or reset, it reconnects
 * in the background every `reconnectDelay` ms (reconnect_delay); when no connection has been re-established
 * `ctrlLossTimeout` ms after the loss it gives up and becomes `failed` (ctrl_loss_tmo; -1 = never); after
 * `fastIoFailTimeout` ms (fast_io_fail_tmo; -1 = never, the default) I/O stops waiting for this path. Every
 * reconnect uses the same host NQN and host ID.
 *
 * The path also follows the ANA state of namespaces through its controller, which is the one reader of the ANA log
 * (its tracker reads it at bring-up, on ANA Change events and after ANA path statuses): the path takes the
 * controller's log on every connect, applies the log each 'ana-change' event carries, and after a failed command
 * takes the provisional state the controller derived from its ANA status.
 */
import { debuglog } from 'node:util';
import { connect as connectController } from '../host/controller.js';
import type { ConnectOptions } from '../host/controller.js';
import { resolveHostIdentity } from '../host/identity.js';
import { ControllerError, InvalidArgumentError, InvalidStateError, NvmeStatusError, ConnectionClosedError } from '../errors.js';
import type { NvmeCommand } from '../protocol/commands.js';
import type { IdentifyController, IdentifyNamespace, OncsFlags } from '../protocol/identify.js';
import type { AnaLog } from '../protocol/logpages.js';
import type { AnaStateName } from '../protocol/ana.js';
import type { Completion, SubmitOptions } from '../transport/queue-pair.js';
import { classifyIoError, type PathErrorKind } from './classify.js';
import { EventChannel, type BoundedEventIterator, type EventIteratorOptions } from '../event-channel.js';

const debug = debuglog('nvmeof');

/** States of a path. */
export type PathState = 'connecting' | 'live' | 'reconnecting' | 'failed' | 'deleted';

const TRANSITIONS: Readonly<Record<PathState, readonly PathState[]>> = {
  connecting: ['live', 'reconnecting', 'failed', 'deleted'],
  live: ['reconnecting', 'failed', 'deleted'],
  reconnecting: ['connecting', 'failed', 'deleted'],
  failed: ['connecting', 'deleted'],
  deleted: [],
};

/** What a path needs of a namespace handle (a {@link Namespace} provides it). */
export interface PathNamespace {
  readonly nsid: number;
  readonly identity: IdentifyNamespace;
  readonly blockSize: number;
  readonly blocks: bigint;
  readonly nguid: string | undefined;
  readonly eui64: string | undefined;
  readonly uuid: string | undefined;
}

/** An ANA change event as the controller reports it (only the fields a path uses). */
export interface PathAnaEvent {
  log?: AnaLog;
}

/** What a path needs of a controller; {@link Controller} provides it. */
export interface PathController {
  readonly host: string;
  readonly port: number;
  readonly subnqn: string;
  readonly cntlid: number;
  readonly identity: IdentifyController;
  readonly maxTransferBytes: number;
  readonly oncs?: OncsFlags;
  /** Round-trip time of the last Keep Alive, ms. */
  readonly keepAliveRtt?: number;
  /** When the last Keep Alive completed (Date.now() ms). */
  readonly lastKeepAliveAt?: number;
  onClose(fn: (err: Error | undefined) => void): void;
  close(): Promise<void>;
  destroy(err?: Error): void;
  adminCommand(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion>;
  ioCommand(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion>;
  namespace(nsid: number): Promise<PathNamespace>;
  /** Event subscription (controllers with asynchronous event support); only 'ana-change' is used. */
  on?(type: 'ana-change', listener: (event: PathAnaEvent) => void): () => void;
  /**
   * ANA state of `nsid` as the controller knows it: its last ANA log, or the provisional state an ANA path status
   * revealed since. The controller is the only reader of the ANA log; a path asks it.
   */
  anaState?(nsid: number): AnaStateName | undefined;
  /** The controller's last ANA log (undefined when ANA is not reported or not read yet). */
  readonly anaLog?: AnaLog | undefined;
  /** Re-read the ANA log through the controller's tracker (concurrent callers share reads). */
  refreshAnaState?(opts?: { rgo?: boolean }): Promise<AnaLog>;
}

/** Options of a {@link Path}: connect options plus the reconnect timers. */
export interface PathOptions extends Omit<ConnectOptions, 'signal'> {
  /** Milliseconds between reconnect attempts (Linux reconnect_delay, which defaults to 10 s). Default 2000. */
  reconnectDelay?: number;
  /** Milliseconds after a loss before giving up (state `failed`); -1 = never, 0 = do not reconnect. Default 600000. */
  ctrlLossTimeout?: number;
  /** Milliseconds after a loss before I/O stops waiting for this path; -1 = never (default). */
  fastIoFailTimeout?: number;
  /** How the path opens its controller. Default {@link connect}. */
  connect?: (opts: ConnectOptions) => Promise<PathController>;
  /**
   * Runs on every new connection before the path goes live (e.g. to identify and check a namespace). Throwing
   * {@link PathMismatchError} fails the path for good; any other error counts as a failed attempt.
   */
  prepare?: (ctrl: PathController, path: Path, info: { initial: boolean }) => Promise<void>;
}

/** DH-HMAC-CHAP options of each path, out of sight of inspect() and JSON. */
const pathSecrets = new WeakMap<object, NonNullable<ConnectOptions['dhchap']>>();
/** TLS options (the PSK) of each path, out of sight of inspect() and JSON. */
const pathTls = new WeakMap<object, NonNullable<ConnectOptions['tls']>>();

/** The path leads somewhere else than expected (another subsystem or another namespace). The path is not used. */
export class PathMismatchError extends ControllerError {}

const PATH_EVENT_TYPES: ReadonlySet<string> = new Set(['state', 'ana', 'fail-fast', 'overflow', '*']);

/** Something that happened on a path (the last one is kept for health reports). */
export interface PathEventRecord {
  /** e.g. 'connected', 'reconnected', 'connect-failed', 'connection-lost', 'keep-alive-failed', 'reset', 'ana-change', 'io-error', 'fast-io-fail', 'ctrl-loss', 'deleted'. */
  type: string;
  message: string;
  /** Date.now() ms. */
  time: number;
}

/** A change of a path's state, ANA state or fail-fast flag. */
export interface PathChange {
  path: Path;
  kind: 'state' | 'ana' | 'fail-fast';
  /** Previous state (kind 'state'). */
  from?: PathState;
  /** New state (kind 'state'). */
  to?: PathState;
  /** Namespace whose ANA state changed (kind 'ana'). */
  nsid?: number;
  previousAnaState?: AnaStateName | undefined;
  anaState?: AnaStateName | undefined;
  reason?: string;
  time: number;
}

/** What `Path.on()` and `Path.events()` deliver: a change with its kind as `type`, or an iterator's overflow. */
export type PathEvent = { [K in PathChange['kind']]: PathChange & { kind: K; type: K } }[PathChange['kind']] | { type: 'overflow'; dropped: number; time: number };

/** Each path event type with its event, plus '*': what `Path.on(type, listener)` hands a listener. */
export type PathEventMap = { [K in PathEvent['type']]: Extract<PathEvent, { type: K }> } & { '*': PathEvent };

/** Error counters of a path, by kind. */
export interface PathErrorCounts {
  /** Every failed command on this path. */
  total: number;
  /** Errors returned to the caller (not path errors). */
  command: number;
  'path-status': number;
  ana: number;
  connection: number;
  'keep-alive': number;
  timeout: number;
  transport: number;
}

/** JSON-friendly snapshot of one path. Timestamps are Date.now() milliseconds; absent values are null. */
export interface PathHealth {
  id: string;
  host: string;
  port: number;
  state: PathState;
  cntlid: number | null;
  /** ANA state of the namespace asked about (null: unknown or not reported). */
  anaState: AnaStateName | null;
  anaGroup: number | null;
  /** The path would be offered to the selection policy now. */
  usable: boolean;
  /** fastIoFailTimeout expired during the current outage. */
  failFastExpired: boolean;
  keepAliveRttMs: number | null;
  lastKeepAliveAt: number | null;
  outstanding: number;
  completed: number;
  errors: PathErrorCounts;
  /** Successful reconnects. */
  reconnects: number;
  /** Reconnect attempts (successful or not). */
  reconnectAttempts: number;
  lastEvent: PathEventRecord | null;
  /** When the current state was entered. */
  since: number;
  /** When the path last went live. */
  connectedAt: number | null;
  /** Start of the current outage (null while live). */
  lostAt: number | null;
  /** When the next reconnect attempt is due (null: none scheduled, e.g. live, connecting or given up). */
  nextReconnectAt: number | null;
}

const DEFAULT_RECONNECT_DELAY = 2000;
const DEFAULT_CTRL_LOSS_TIMEOUT = 600_000;

/** Validate reconnect timer options (shared with openMultipath). */
export function validatePathTimers(o: { reconnectDelay?: number; ctrlLossTimeout?: number; fastIoFailTimeout?: number }): void {
  const check = (name: string, v: number | undefined, min: number) => {
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > 0x7fffffff)) {
      throw new InvalidArgumentError(`${name} must be an integer ${min}..${0x7fffffff} (ms${min < 0 ? ', -1 = never' : ''}), got ${String(v)}`);
    }
  };
  check('reconnectDelay', o.reconnectDelay, 0);
  check('ctrlLossTimeout', o.ctrlLossTimeout, -1);
  check('fastIoFailTimeout', o.fastIoFailTimeout, -1);
}

/** The "host:port" label of an address. */
export function pathId(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** One controller connection to a subsystem through one address, reconnecting on its own. */
export class Path {
  /** "host:port". */
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly subnqn: string;
  /** Host NQN used on every connect. */
  readonly hostnqn: string;
  /** Host ID used on every connect. */
  readonly hostid: string;
  readonly reconnectDelay: number;
  readonly ctrlLossTimeout: number;
  readonly fastIoFailTimeout: number;

  private _state: PathState = 'connecting';
  private since = Date.now();
  private ctrl: PathController | undefined;
  /** Controller being brought up by the current attempt. */
  private pending: PathController | undefined;
  private attemptAbort: AbortController | undefined;
  private firstAttempt: Promise<void> | undefined;
  private everLive = false;
  private readonly connectOpts: ConnectOptions;
  private readonly connectFn: (opts: ConnectOptions) => Promise<PathController>;
  private readonly prepare: PathOptions['prepare'];
  private readonly hub = new EventChannel<PathEvent, PathChange>({
    stamp: (c) => ({ ...c, type: c.kind }) as PathEvent,
    overflow: (dropped) => ({ type: 'overflow', dropped, time: Date.now() }),
  });
  private readonly ana = new Map<number, { state: AnaStateName; group: number }>();
  private unsubscribeEvents: (() => void) | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private lossTimer: NodeJS.Timeout | undefined;
  private fastFailTimer: NodeJS.Timeout | undefined;
  private _failFastExpired = false;
  private _outstanding = 0;
  private completed = 0;
  private reconnects = 0;
  private reconnectAttempts = 0;
  private connectedAt: number | undefined;
  private lostAt: number | undefined;
  private nextReconnectAt: number | undefined;
  private lastEvent: PathEventRecord | undefined;
  private lastCntlid: number | undefined;
  private readonly errors: PathErrorCounts = { total: 0, command: 0, 'path-status': 0, ana: 0, connection: 0, 'keep-alive': 0, timeout: 0, transport: 0 };

  constructor(opts: PathOptions) {
    if (!opts || typeof opts !== 'object') throw new InvalidArgumentError('path options must be an object');
    if (typeof opts.host !== 'string' || opts.host.length === 0) throw new InvalidArgumentError('path host must be a non-empty string');
    const port = opts.port ?? 4420;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`path port must be 1..65535, got ${String(opts.port)}`);
    validatePathTimers(opts);
    const id = resolveHostIdentity({ hostnqn: opts.hostnqn, hostid: opts.hostid });
    this.host = opts.host;
    this.port = port;
    this.id = pathId(opts.host, port);
    this.subnqn = opts.subnqn;
    this.hostnqn = id.hostnqn;
    this.hostid = id.hostid;
    this.reconnectDelay = opts.reconnectDelay ?? DEFAULT_RECONNECT_DELAY;
    this.ctrlLossTimeout = opts.ctrlLossTimeout ?? DEFAULT_CTRL_LOSS_TIMEOUT;
    this.fastIoFailTimeout = opts.fastIoFailTimeout ?? -1;
    const { reconnectDelay: _r, ctrlLossTimeout: _c, fastIoFailTimeout: _f, connect: _cf, prepare: _p, dhchap, tls, ...connectOpts } = opts;
    this.connectOpts = { ...connectOpts, port, hostnqn: this.hostnqn, hostid: this.hostid };
    // DH-HMAC-CHAP keys are kept outside the object so that printing a path never shows them.
    if (dhchap !== undefined) pathSecrets.set(this, dhchap);
    if (tls !== undefined) pathTls.set(this, tls);
    this.connectFn = opts.connect ?? connectController;
    this.prepare = opts.prepare;
  }

  get state(): PathState {
    return this._state;
  }

  /** The live controller, if any. */
  get controller(): PathController | undefined {
    return this._state === 'live' ? this.ctrl : undefined;
  }

  /** Controller ID of the current (or last) connection. */
  get cntlid(): number | undefined {
    return this.lastCntlid;
  }

  /** Commands sent on this path and not yet finished. */
  get outstanding(): number {
    return this._outstanding;
  }

  /** fastIoFailTimeout expired in the current outage: I/O no longer waits for this path. */
  get failFastExpired(): boolean {
    return this._failFastExpired;
  }

  /** Last known ANA state of `nsid` through this path (undefined: not reported). */
  anaState(nsid: number): AnaStateName | undefined {
    return this.ana.get(nsid)?.state;
  }

  /** ANA group of `nsid` through this path, from the last ANA log. */
  anaGroup(nsid: number): number | undefined {
    return this.ana.get(nsid)?.group;
  }

  /** Live, and `nsid` is ANA optimized or non-optimized here (or ANA is not reported). */
  usableFor(nsid: number): boolean {
    if (this._state !== 'live') return false;
    const s = this.anaState(nsid);
    return s === undefined || s === 'optimized' || s === 'non-optimized';
  }

  /**
   * The path may carry I/O for `nsid` now or later: live with an ANA state that can still change, or (re)connecting
   * before fastIoFailTimeout expired. I/O with no usable path waits while some path may recover.
   */
  mayRecover(nsid: number): boolean {
    if (this._state === 'live') return this.anaState(nsid) !== 'persistent-loss';
    if (this._state === 'connecting' || this._state === 'reconnecting') return !this._failFastExpired;
    return false;
  }

  /**
   * Subscribe to one kind of change ('state', 'ana', 'fail-fast') or '*' for all; the listener runs synchronously.
   * Returns a function that unsubscribes. The same idiom as Controller, DiscoveryWatcher and MultipathNamespace.
   */
  on<K extends keyof PathEventMap>(type: K, listener: (ev: PathEventMap[K]) => void): () => void {
    if (!PATH_EVENT_TYPES.has(type)) throw new InvalidArgumentError(`on: unknown path event type ${JSON.stringify(type)} (one of ${[...PATH_EVENT_TYPES].join(', ')})`);
    return this.hub.on(type as PathEvent['type'] | '*', listener as (ev: PathEvent) => void);
  }

  /**
   * Async iterator over the changes from now on, with its own bounded queue (`highWaterMark`, default 1024) and an
   * overflow event in place of what a slow consumer let it drop; ends when the path is deleted or `signal` aborts.
   */
  events(opts?: EventIteratorOptions<PathEvent['type']>): BoundedEventIterator<PathEvent> {
    return this.hub.iterate(opts);
  }

  /** Listen for every state, ANA and fail-fast change (as `on('*')` without overflow events); returns an unsubscribe function. */
  onChange(fn: (c: PathChange) => void): () => void {
    return this.hub.on('*', (ev) => {
      if (ev.type !== 'overflow') fn(ev);
    });
  }

  /**
   * Make the first connection attempt (once). Resolves when the path is live; rejects with the attempt's error, in
   * which case the path keeps reconnecting in the background unless it failed for good.
   */
  start(): Promise<void> {
    this.firstAttempt ??= this.attempt(true);
    return this.firstAttempt;
  }

  /** Reconnect now: from `failed` (starting a new outage), or cut short the wait while `reconnecting`. */
  reconnect(): void {
    if (this._state === 'failed') {
      // A new outage starts if this attempt fails.
      this.lostAt = undefined;
      this._failFastExpired = false;
      void this.attempt(false).catch(() => {});
    } else if (this._state === 'reconnecting') {
      this.clearReconnectTimer();
      void this.attempt(false).catch(() => {});
    }
  }

  /** Tear the current connection down and reconnect (as after a controller reset). */
  reset(reason: Error | string): void {
    const ctrl = this.ctrl;
    if (this._state !== 'live' || !ctrl) return;
    const err = typeof reason === 'string' ? new ConnectionClosedError(`path ${this.id} reset: ${reason}`) : reason;
    this.record('reset', typeof reason === 'string' ? reason : reason.message);
    ctrl.destroy(err);
  }

  /** Send an I/O command through this path's controller. */
  submit(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion> {
    const ctrl = this.ctrl;
    if (this._state !== 'live' || !ctrl) return Promise.reject(new InvalidStateError(`path ${this.id} is ${this._state}`));
    this._outstanding++;
    return ctrl.ioCommand(cmd, opts).then(
      (c) => {
        this._outstanding--;
        this.completed++;
        return c;
      },
      (err: unknown) => {
        this._outstanding--;
        this.noteIoError(err, cmd, ctrl);
        throw err;
      },
    );
  }

  /**
   * Re-read the ANA log now, through the controller's tracker (which shares concurrent reads), and apply it. A
   * controller that cannot read the log (a status error) leaves the state as it is.
   */
  async refreshAna(): Promise<void> {
    const ctrl = this.ctrl;
    if (this._state !== 'live' || !ctrl?.refreshAnaState || !ctrl.identity?.decoded?.cmic?.anaReporting) return;
    let log: AnaLog;
    try {
      log = await ctrl.refreshAnaState();
    } catch (err) {
      if (err instanceof NvmeStatusError) {
        debug('path %s: ANA log not readable: %s', this.id, err.message);
        return;
      }
      throw err;
    }
    if (this.ctrl === ctrl) this.applyAnaLog(log, 'ANA log');
  }

  /** Close the connection and stop reconnecting (state `deleted`). Idempotent. */
  async close(): Promise<void> {
    if (this._state === 'deleted') return;
    this.clearTimers();
    this.attemptAbort?.abort(new ConnectionClosedError(`path ${this.id} deleted`));
    const pending = this.pending;
    const ctrl = this.ctrl;
    this.pending = undefined;
    this.ctrl = undefined;
    this.unsubscribeEvents?.();
    this.unsubscribeEvents = undefined;
    this.record('deleted', 'path closed');
    this.transition('deleted', 'closed');
    this.hub.close();
    pending?.destroy(new ConnectionClosedError(`path ${this.id} deleted`));
    if (ctrl) {
      try {
        await ctrl.close();
      } catch (err) {
        debug('path %s: close: %s', this.id, (err as Error).message);
        ctrl.destroy(err as Error);
      }
    }
  }

  /** JSON-friendly snapshot; `nsid` selects the namespace whose ANA state is reported. */
  health(nsid?: number): PathHealth {
    const ana = nsid === undefined ? undefined : this.ana.get(nsid);
    const ctrl = this._state === 'live' ? this.ctrl : undefined;
    return {
      id: this.id,
      host: this.host,
      port: this.port,
      state: this._state,
      cntlid: this.lastCntlid ?? null,
      anaState: ana?.state ?? null,
      anaGroup: ana?.group ?? null,
      usable: nsid === undefined ? this._state === 'live' : this.usableFor(nsid),
      failFastExpired: this._failFastExpired,
      keepAliveRttMs: ctrl?.keepAliveRtt ?? null,
      lastKeepAliveAt: ctrl?.lastKeepAliveAt ?? null,
      outstanding: this._outstanding,
      completed: this.completed,
      errors: { ...this.errors },
      reconnects: this.reconnects,
      reconnectAttempts: this.reconnectAttempts,
      lastEvent: this.lastEvent ? { ...this.lastEvent } : null,
      since: this.since,
      connectedAt: this.connectedAt ?? null,
      lostAt: this.lostAt ?? null,
      nextReconnectAt: this.nextReconnectAt ?? null,
    };
  }

  // --- state machine -------------------------------------------------------------------------------------------

  /** The only place the state changes. Throws on a transition the state machine does not allow. */
  private transition(to: PathState, reason?: string): void {
    const from = this._state;
    if (!TRANSITIONS[from].includes(to)) throw new InvalidStateError(`path ${this.id}: invalid transition ${from} -> ${to}`);
    this._state = to;
    this.since = Date.now();
    debug('path %s: %s -> %s%s', this.id, from, to, reason ? ` (${reason})` : '');
    this.emit({ path: this, kind: 'state', from, to, reason, time: this.since });
  }

  private emit(c: PathChange): void {
    this.hub.emit(c);
  }

  private record(type: string, message: string): void {
    this.lastEvent = { type, message, time: Date.now() };
  }

  /** One connection attempt: connect, check, read ANA, go live. */
  private async attempt(initial: boolean): Promise<void> {
    if (this._state !== 'connecting') this.transition('connecting', initial ? 'connect' : 'reconnect');
    if (!initial) this.reconnectAttempts++;
    const ac = new AbortController();
    this.attemptAbort = ac;
    let ctrl: PathController | undefined;
    try {
      const dhchap = pathSecrets.get(this);
      const tls = pathTls.get(this);
      ctrl = await this.connectFn({ ...this.connectOpts, host: this.host, signal: ac.signal, ...(dhchap === undefined ? {} : { dhchap }), ...(tls === undefined ? {} : { tls }) });
      if (this._state !== 'connecting' || ac.signal.aborted) {
        ctrl.destroy(new ConnectionClosedError(`path ${this.id} is ${this._state}`));
        return;
      }
      this.pending = ctrl;
      const actual = ctrl.identity?.subnqn;
      if (actual && actual !== this.subnqn) {
        throw new PathMismatchError(`path ${this.id} leads to subsystem ${actual}, not ${this.subnqn}`);
      }
      if (this.prepare) await this.prepare(ctrl, this, { initial: initial && !this.everLive });
      this.takeAnaFrom(ctrl);
      if (this._state !== 'connecting' || this.pending !== ctrl) {
        ctrl.destroy(new ConnectionClosedError(`path ${this.id} is ${this._state}`));
        return;
      }
    } catch (err) {
      if (this.pending === ctrl) this.pending = undefined;
      ctrl?.destroy(err as Error);
      if (this.attemptAbort === ac) this.attemptAbort = undefined;
      if (this._state !== 'connecting') throw err;
      const e = err as Error;
      this.record('connect-failed', e.message);
      if (e instanceof PathMismatchError || (e instanceof InvalidArgumentError && initial && !this.everLive)) {
        // Another subsystem or namespace, or options that can never work: do not keep trying.
        this.clearTimers();
        this.transition('failed', e.message);
      } else {
        this.enterReconnecting(e.message);
      }
      throw err;
    }
    this.pending = undefined;
    if (this.attemptAbort === ac) this.attemptAbort = undefined;
    this.goLive(ctrl, initial);
  }

  private goLive(ctrl: PathController, initial: boolean): void {
    this.ctrl = ctrl;
    this.lastCntlid = ctrl.cntlid;
    this.clearTimers();
    const wasLost = this.lostAt !== undefined;
    this.lostAt = undefined;
    const wasFailFast = this._failFastExpired;
    this._failFastExpired = false;
    if (!initial || this.everLive) this.reconnects++;
    this.everLive = true;
    this.connectedAt = Date.now();
    this.record(this.reconnects > 0 ? 'reconnected' : 'connected', `controller ${ctrl.cntlid} live`);
    ctrl.onClose((err) => this.onLost(ctrl, err));
    if (typeof ctrl.on === 'function') {
      try {
        this.unsubscribeEvents = ctrl.on('ana-change', (ev) => this.onAnaEvent(ctrl, ev));
      } catch (err) {
        debug('path %s: cannot subscribe to ANA events: %s', this.id, (err as Error).message);
      }
    }
    this.transition('live', wasLost ? 'reconnected' : 'connected');
    if (wasFailFast) this.emit({ path: this, kind: 'fail-fast', reason: 'fast I/O fail cleared', time: Date.now() });
  }

  private onLost(ctrl: PathController, err: Error | undefined): void {
    if (this.ctrl !== ctrl) return;
    this.ctrl = undefined;
    this.unsubscribeEvents?.();
    this.unsubscribeEvents = undefined;
    if (this._state !== 'live') return;
    const code = (err as { code?: string } | undefined)?.code;
    const type = code === 'NVMEOF_ERR_KEEP_ALIVE' ? 'keep-alive-failed' : 'connection-lost';
    const message = err?.message ?? `controller ${ctrl.cntlid} closed`;
    this.record(type, message);
    this.enterReconnecting(message);
  }

  /** Start (or continue) an outage and schedule the next attempt. */
  private enterReconnecting(reason: string): void {
    if (this._state === 'deleted' || this._state === 'failed') return;
    if (!this.beginOutage()) return;
    this.transition('reconnecting', reason);
    this.clearReconnectTimer();
    this.nextReconnectAt = Date.now() + this.reconnectDelay;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.nextReconnectAt = undefined;
      if (this._state === 'reconnecting') void this.attempt(false).catch(() => {});
    }, this.reconnectDelay);
  }

  /** Arm the controller-loss and fast-fail timers at the start of an outage. False when the path gave up. */
  private beginOutage(): boolean {
    if (this.lostAt !== undefined) return true;
    this.lostAt = Date.now();
    if (this.ctrlLossTimeout === 0) {
      this.giveUp('ctrlLossTimeout is 0: not reconnecting');
      return false;
    }
    if (this.ctrlLossTimeout > 0) {
      this.lossTimer = setTimeout(() => this.giveUp(`no connection within ctrlLossTimeout (${this.ctrlLossTimeout} ms)`), this.ctrlLossTimeout);
      this.lossTimer.unref();
    }
    if (this.fastIoFailTimeout === 0) {
      this.expireFailFast();
    } else if (this.fastIoFailTimeout > 0) {
      this.fastFailTimer = setTimeout(() => this.expireFailFast(), this.fastIoFailTimeout);
      this.fastFailTimer.unref();
    }
    return true;
  }

  private expireFailFast(): void {
    this.fastFailTimer = undefined;
    if (this._failFastExpired || this._state === 'live' || this._state === 'deleted') return;
    this._failFastExpired = true;
    this.record('fast-io-fail', `fastIoFailTimeout (${this.fastIoFailTimeout} ms) expired: I/O no longer waits for this path`);
    this.emit({ path: this, kind: 'fail-fast', reason: 'fastIoFailTimeout expired', time: Date.now() });
  }

  private giveUp(reason: string): void {
    this.lossTimer = undefined;
    if (this._state === 'deleted' || this._state === 'failed') return;
    this.clearTimers();
    this.attemptAbort?.abort(new ConnectionClosedError(`path ${this.id}: ${reason}`));
    this.pending?.destroy(new ConnectionClosedError(`path ${this.id}: ${reason}`));
    this.pending = undefined;
    this.record('ctrl-loss', reason);
    this.transition('failed', reason);
  }

  private clearReconnectTimer(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.nextReconnectAt = undefined;
  }

  private clearTimers(): void {
    this.clearReconnectTimer();
    if (this.lossTimer) clearTimeout(this.lossTimer);
    if (this.fastFailTimer) clearTimeout(this.fastFailTimer);
    this.lossTimer = this.fastFailTimer = undefined;
  }

  // --- I/O errors and ANA --------------------------------------------------------------------------------------

  private noteIoError(err: unknown, cmd: NvmeCommand, ctrl: PathController): void {
    const cls = classifyIoError(err);
    this.errors.total++;
    this.errors[cls.kind]++;
    if (cls.kind === 'command') return;
    const message = err instanceof Error ? err.message : String(err);
    this.record('io-error', message);
    if (cls.anaState) {
      // The controller noted the status (a provisional state for the namespace's group) and re-reads its ANA log; the
      // result reaches this path as an 'ana-change' event when it differs from the provisional state.
      const nsid = cmd.sqe.readUInt32LE(4);
      const state = ctrl.anaState?.(nsid) ?? cls.anaState;
      this.setAna(nsid, state, this.ana.get(nsid)?.group ?? 0, 'ANA status from a command');
    }
    if (cls.resetPath && this.ctrl === ctrl) this.reset(err instanceof Error ? err : String(err));
  }

  /** Kinds of path errors counted so far (for tests and reports). */
  errorCount(kind: PathErrorKind | 'command' | 'total' = 'total'): number {
    return this.errors[kind];
  }

  private onAnaEvent(ctrl: PathController, ev: PathAnaEvent): void {
    if (this.ctrl !== ctrl) return;
    this.record('ana-change', 'ANA change event');
    if (ev?.log && Array.isArray(ev.log.groups)) this.applyAnaLog(ev.log, 'ANA change event');
    else this.takeAnaFrom(ctrl);
  }

  /** Take the controller's last ANA log (no ANA state when the controller does not report ANA). */
  private takeAnaFrom(ctrl: PathController): void {
    if (!ctrl.identity?.decoded?.cmic?.anaReporting) {
      this.ana.clear();
      return;
    }
    const log = ctrl.anaLog;
    if (log && (ctrl === this.ctrl || ctrl === this.pending)) this.applyAnaLog(log, 'ANA log');
  }

  private applyAnaLog(log: AnaLog, source: string): void {
    if (log.groups.length > 0 && log.groups.every((g) => g.nsids.length === 0)) {
      // Return Groups Only: states per group, no NSID lists. Update the namespaces whose group is known.
      const byGroup = new Map(log.groups.map((g) => [g.anagrpid, g.stateName] as const));
      for (const [nsid, cur] of [...this.ana]) {
        const state = byGroup.get(cur.group);
        if (state !== undefined) this.setAna(nsid, state, cur.group, source);
      }
      return;
    }
    const seen = new Set<number>();
    for (const g of log.groups) {
      for (const nsid of g.nsids) {
        seen.add(nsid);
        this.setAna(nsid, g.stateName, g.anagrpid, source);
      }
    }
    for (const nsid of [...this.ana.keys()]) {
      if (!seen.has(nsid)) {
        const prev = this.ana.get(nsid)?.state;
        this.ana.delete(nsid);
        this.emit({ path: this, kind: 'ana', nsid, previousAnaState: prev, anaState: undefined, reason: `${source}: namespace not listed`, time: Date.now() });
      }
    }
  }

  private setAna(nsid: number, state: AnaStateName, group: number, source: string): void {
    const prev = this.ana.get(nsid);
    this.ana.set(nsid, { state, group });
    if (prev?.state !== state) {
      debug('path %s: nsid %d ANA %s -> %s (%s)', this.id, nsid, prev?.state ?? 'unknown', state, source);
      this.emit({ path: this, kind: 'ana', nsid, previousAnaState: prev?.state, anaState: state, reason: source, time: Date.now() });
    }
  }
}
