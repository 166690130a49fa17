/**
 * Asynchronous events: the AER machinery of a controller and the typed events it delivers.
 *
 * The controller keeps a few Asynchronous Event Request commands outstanding on the admin queue (they have no
 * timeout). When one completes, its DW0 names the event (type bits 2:0, information bits 15:8, log page bits 23:16).
 * The spec masks that event type until the host reads the named log page with Retain Asynchronous Event cleared, so
 * every handler reads its log page with RAE = 0, and a new AER replaces the completed one. An AER that completes with
 * an error status (for example Asynchronous Event Request Limit Exceeded) is not replaced.
 *
 * Events reach users through {@link EventHub}: `on(type | '*', fn)` subscriptions (synchronous) and `events()` async
 * iterators, each with its own bounded queue that reports dropped events with an explicit 'overflow' event.
 */
import type { Buffer } from 'node:buffer';
import { debuglog } from 'node:util';
import { InvalidArgumentError, NvmeStatusError } from '../errors.js';
import * as cmds from '../protocol/commands.js';
import type { NvmeCommand } from '../protocol/commands.js';
import { FeatureId, GenericStatus, LogPageId, NSID_ALL, StatusCodeType } from '../protocol/constants.js';
import { cqeOk } from '../protocol/cqe.js';
import type { IdentifyController } from '../protocol/identify.js';
import {
  CHANGED_NS_LIST_SIZE,
  ERROR_LOG_ENTRY_SIZE,
  RESERVATION_NOTIFICATION_LOG_SIZE,
  SMART_LOG_SIZE,
  parseChangedNsList,
  parseErrorLog,
  parseSmartLog,
  type AnaLog,
  type ErrorLogEntry,
  type ReservationNotificationLog,
  type SmartLog,
} from '../protocol/logpages.js';
import { statusError } from '../protocol/status.js';
import { abortError, type Completion, type SubmitOptions } from '../transport/queue-pair.js';
import type { AnaGroupChange, AnaNamespaceChange } from './ana.js';
import { readReservationNotifications } from './reservations.js';

const debug = debuglog('nvmeof');

// ---------------------------------------------------------------------------------------------
// Spec values

/** Asynchronous Event Type (AER completion DW0 bits 2:0). */
export const AsyncEventType = {
  ErrorStatus: 0,
  SmartHealthStatus: 1,
  Notice: 2,
  Immediate: 3,
  OneShot: 4,
  IoCommandSpecific: 6,
  VendorSpecific: 7,
} as const;

/** Asynchronous Event Information for Notice events (DW0 bits 15:8 when the type is 2). */
export const NoticeEvent = {
  NamespaceAttributeChanged: 0x00,
  FirmwareActivationStarting: 0x01,
  TelemetryLogChanged: 0x02,
  AnaChange: 0x03,
  PredictableLatencyEventAggregateLogChange: 0x04,
  LbaStatusInformationAlert: 0x05,
  EnduranceGroupEventAggregateLogPageChange: 0x06,
  NormalNvmSubsystemShutdown: 0x07,
  DiscoveryLogPageChange: 0xf0,
} as const;

/** Bits of the Asynchronous Event Configuration feature (Set Features FID 0Bh, CDW11). */
export const AsyncEventConfig = {
  /** SMART / Health critical warnings: available spare, temperature, reliability, read-only, volatile memory backup. */
  SmartCriticalWarnings: 0x1f,
  NamespaceAttribute: 1 << 8,
  FirmwareActivation: 1 << 9,
  TelemetryLog: 1 << 10,
  AnaChange: 1 << 11,
  DiscoveryLogChange: 0x8000_0000,
} as const;

const ERROR_INFO_NAMES: Record<number, string> = {
  0: 'Write to Invalid Doorbell Register',
  1: 'Invalid Doorbell Write Value',
  2: 'Diagnostic Failure',
  3: 'Persistent Internal Error',
  4: 'Transient Internal Error',
  5: 'Firmware Image Load Error',
};
const SMART_INFO_NAMES: Record<number, string> = {
  0: 'NVM Subsystem Reliability',
  1: 'Temperature Threshold',
  2: 'Spare Below Threshold',
};
const NOTICE_INFO_NAMES: Record<number, string> = {
  0x00: 'Namespace Attribute Changed',
  0x01: 'Firmware Activation Starting',
  0x02: 'Telemetry Log Changed',
  0x03: 'Asymmetric Namespace Access Change',
  0x04: 'Predictable Latency Event Aggregate Log Change',
  0x05: 'LBA Status Information Alert',
  0x06: 'Endurance Group Event Aggregate Log Page Change',
  0x07: 'Normal NVM Subsystem Shutdown',
  0xf0: 'Discovery Log Page Change',
};
const IO_INFO_NAMES: Record<number, string> = {
  0: 'Reservation Log Page Available',
  1: 'Sanitize Operation Completed',
  2: 'Sanitize Operation Completed With Unexpected Deallocation',
};

/** An AER completion's DW0 decoded. */
export interface AsyncEventInfo {
  /** Asynchronous Event Type (bits 2:0). */
  type: number;
  /** Asynchronous Event Information (bits 15:8). */
  info: number;
  /** Log page the host reads to clear the event (bits 23:16). */
  lid: number;
  /** The spec's name for the event. */
  name: string;
}

/** Decode the DW0 of a successful Asynchronous Event Request completion. */
export function decodeAsyncEvent(dw0: number): AsyncEventInfo {
  const type = dw0 & 0x7;
  const info = (dw0 >>> 8) & 0xff;
  const lid = (dw0 >>> 16) & 0xff;
  return { type, info, lid, name: asyncEventName(type, info) };
}

/** The spec's name for an asynchronous event type and information value. */
export function asyncEventName(type: number, info: number): string {
  const hex = `0x${info.toString(16).padStart(2, '0')}`;
  switch (type) {
    case AsyncEventType.ErrorStatus: return ERROR_INFO_NAMES[info] ?? `Error status ${hex}`;
    case AsyncEventType.SmartHealthStatus: return SMART_INFO_NAMES[info] ?? `SMART / Health status ${hex}`;
    case AsyncEventType.Notice: return NOTICE_INFO_NAMES[info] ?? `Notice ${hex}`;
    case AsyncEventType.IoCommandSpecific: return IO_INFO_NAMES[info] ?? `I/O command specific status ${hex}`;
    case AsyncEventType.VendorSpecific: return `Vendor specific ${hex}`;
    default: return `Event type ${type}, information ${hex}`;
  }
}

/**
 * The Asynchronous Event Configuration to request from what Identify Controller reports: for a discovery controller
 * the Discovery Log Page Change notice; otherwise the SMART critical warnings and the notices OAES lists that the host
 * handles (namespace attribute, firmware activation, ANA change when CMIC reports ANA).
 */
export function asyncEventConfigFor(id: Pick<IdentifyController, 'decoded'>, discovery: boolean): { smart: number; notices: number } {
  const o = id.decoded.oaes;
  if (discovery) return { smart: 0, notices: o.discoveryLogChange ? AsyncEventConfig.DiscoveryLogChange : 0 };
  let notices = 0;
  if (o.namespaceAttribute) notices |= AsyncEventConfig.NamespaceAttribute;
  if (o.firmwareActivation) notices |= AsyncEventConfig.FirmwareActivation;
  if (o.ana && id.decoded.cmic.anaReporting) notices |= AsyncEventConfig.AnaChange;
  return { smart: AsyncEventConfig.SmartCriticalWarnings, notices: notices >>> 0 };
}

// ---------------------------------------------------------------------------------------------
// Event types

/** Fields every event carries. */
export interface ControllerEventBase {
  /** Date.now() when the event was delivered. */
  time: number;
  /** Controller ID of the controller that reported it. */
  cntlid: number;
}

/** ANA state changed (ANA Change notice, or an ANA log read after an ANA path status found a change). */
export interface AnaChangeEvent extends ControllerEventBase {
  type: 'ana-change';
  /** The ANA log as read. */
  log: AnaLog;
  /** Namespaces whose state or group changed since the previous read. */
  changed: AnaNamespaceChange[];
  /** Groups whose state changed since the previous read. */
  groups: AnaGroupChange[];
  /** 'aen' for an ANA Change notice, 'status' for a read caused by an I/O's ANA path status, 'manual' otherwise. */
  reason: 'aen' | 'status' | 'manual';
}

/** Namespace Attribute Changed notice, with the Changed Namespace List and the active namespace list compared. */
export interface NamespaceChangedEvent extends ControllerEventBase {
  type: 'namespace-changed';
  /** NSIDs of the Changed Namespace List (empty when it overflowed). */
  nsids: number[];
  /** More than 1024 namespaces changed: rescan everything. */
  overflow: boolean;
  /** NSIDs active now that were not before. */
  added: number[];
  /** NSIDs active before that are not now. */
  removed: number[];
}

/** Discovery Log Page Change notice (discovery controllers). Read the discovery log again to re-arm it. */
export interface DiscoveryChangeEvent extends ControllerEventBase {
  type: 'discovery-change';
}

/** Error status event, with the Error Information log entries read for it. */
export interface ErrorStatusEvent extends ControllerEventBase {
  type: 'error';
  info: number;
  name: string;
  /** Error Information log entries (newest first as the controller returns them; empty if the read failed). */
  entries: ErrorLogEntry[];
}

/** SMART / Health status event, with the SMART log read for it. */
export interface SmartEvent extends ControllerEventBase {
  type: 'smart';
  info: number;
  name: string;
  /** SMART / Health log (undefined if the read failed). */
  log: SmartLog | undefined;
}

/** Firmware Activation Starting notice. */
export interface FirmwareActivationEvent extends ControllerEventBase {
  type: 'firmware-activation';
}

/** Reservation Log Page Available: one event per Reservation Notification log page read for it. */
export interface ReservationEvent extends ControllerEventBase {
  type: 'reservation';
  /** Namespace the notification is about. */
  nsid: number;
  /** What happened to this host's registration or reservation. */
  notification: 'registration-preempted' | 'reservation-released' | 'reservation-preempted';
  /** Log Page Count of the notification (a gap means the controller dropped notifications). */
  logPageCount: bigint;
  /** The log page as read. */
  log: ReservationNotificationLog;
}

/** An iterator's queue was full: `dropped` events were discarded at this point of the stream. */
export interface OverflowEvent extends ControllerEventBase {
  type: 'overflow';
  dropped: number;
}

/** Any other asynchronous event (its log page was read with RAE cleared, best effort). */
export interface OtherEvent extends ControllerEventBase {
  type: 'other';
  aenType: number;
  info: number;
  lid: number;
  name: string;
}

/** Every event a controller delivers. */
export type ControllerEvent =
  | AnaChangeEvent
  | NamespaceChangedEvent
  | DiscoveryChangeEvent
  | ErrorStatusEvent
  | SmartEvent
  | FirmwareActivationEvent
  | ReservationEvent
  | OverflowEvent
  | OtherEvent;

/** The `type` of a controller event. */
export type ControllerEventType = ControllerEvent['type'];

/** `Omit` applied to each member of a union (so that the result is still a discriminated union). */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** An event without the fields the hub fills in. */
export type ControllerEventInit = DistributiveOmit<ControllerEvent, 'time' | 'cntlid'>;

/** Options of `events()` (controllers and discovery watchers). */
export interface EventIteratorOptions<T extends string = ControllerEventType> {
  /** Ends the iteration: a pending or later `next()` rejects with the abort reason. */
  signal?: AbortSignal;
  /** Events buffered for a slow consumer before newer ones are dropped (and counted). Default 1024. */
  highWaterMark?: number;
  /** Only these event types (overflow events are always delivered). Default all. */
  types?: readonly T[];
}

/** An async iterator over events with a bounded queue. */
export interface BoundedEventIterator<T> extends AsyncIterableIterator<T> {
  /** Events dropped so far because the queue was full. */
  readonly dropped: number;
  /** Events waiting in the queue. */
  readonly queued: number;
}

/** The async iterator returned by `events()`. */
export type ControllerEventIterator = BoundedEventIterator<ControllerEvent>;

// ---------------------------------------------------------------------------------------------
// Event hub

/** How an {@link EventChannel} completes the events it delivers. */
export interface EventChannelOptions<E extends { type: string }, I> {
  /** The event to deliver for what `emit()` was given (adds the fields every event carries, such as `time`). */
  stamp: (init: I) => E;
  /** The event that takes the place of `dropped` events an iterator's full queue discarded. */
  overflow: (dropped: number) => Extract<E, { type: 'overflow' }>;
}

/**
 * Subscriptions and iterators for one source of events `E` (emitted as `I` and completed by `stamp`): `on(type | '*')`
 * listeners run synchronously, each `iterate()` gets its own bounded queue with an overflow event, `close()` ends them.
 */
export class EventChannel<E extends { type: string }, I = E> {
  private readonly listeners = new Map<string, Set<(ev: E) => void>>();
  private readonly iterators = new Set<EventQueue<E>>();
  private closed = false;
  private readonly stamp: (init: I) => E;
  private readonly overflow: (dropped: number) => E;

  constructor(opts: EventChannelOptions<E, I>) {
    this.stamp = opts.stamp;
    this.overflow = opts.overflow;
  }

  /** Subscribe to one event type, or '*' for all. Returns the unsubscribe function. */
  on(type: E['type'] | '*', fn: (ev: E) => void): () => void {
    if (typeof fn !== 'function') throw new InvalidArgumentError('listener must be a function');
    let set = this.listeners.get(type);
    if (!set) {
      set = new Set();
      this.listeners.set(type, set);
    }
    const entry = (ev: E): void => fn(ev);
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  /** Listeners plus iterators that would see an event of `type`. */
  subscribers(type: E['type']): number {
    let n = (this.listeners.get(type)?.size ?? 0) + (this.listeners.get('*')?.size ?? 0);
    for (const it of this.iterators) if (it.wants({ type } as E)) n++;
    return n;
  }

  /**
   * Deliver an event: listeners run synchronously (a throwing listener does not stop the others), iterators queue it.
   * Returns the event as delivered (also after close(), when nothing is delivered).
   */
  emit(init: I): E {
    const ev = this.stamp(init);
    if (this.closed) return ev;
    for (const key of [ev.type, '*']) {
      const set = this.listeners.get(key);
      if (!set) continue;
      for (const fn of [...set]) {
        try {
          fn(ev);
        } catch (err) {
          // Same outcome as a throwing EventEmitter listener, without breaking the event machinery.
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }
    for (const it of this.iterators) it.push(ev);
    return ev;
  }

  /** A new async iterator over the events delivered from now on. */
  iterate(opts: EventIteratorOptions<E['type']> = {}): BoundedEventIterator<E> {
    const hwm = opts.highWaterMark ?? 1024;
    if (!Number.isInteger(hwm) || hwm < 1) throw new InvalidArgumentError(`highWaterMark must be a positive integer, got ${String(hwm)}`);
    if (opts.types !== undefined && !Array.isArray(opts.types)) throw new InvalidArgumentError('types must be an array of event types');
    const types = opts.types ? new Set<string>(opts.types) : undefined;
    const q: EventQueue<E> = new EventQueue<E>(
      hwm,
      types ? (ev) => ev.type === 'overflow' || types.has(ev.type) : undefined,
      this.overflow,
      () => this.iterators.delete(q),
    );
    if (this.closed) q.end();
    else {
      this.iterators.add(q);
      if (opts.signal) q.bindSignal(opts.signal);
    }
    return q;
  }

  /** End every iterator (after the events they hold) and stop delivering. Listeners are dropped. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    for (const it of [...this.iterators]) it.end();
    this.iterators.clear();
  }
}

/** The {@link EventChannel} of one controller: events are stamped with the time and the controller's cntlid. */
export class EventHub extends EventChannel<ControllerEvent, ControllerEventInit> {
  constructor(cntlid: () => number) {
    super({
      stamp: (init) => ({ ...init, time: Date.now(), cntlid: cntlid() }) as ControllerEvent,
      overflow: (dropped) => ({ type: 'overflow', dropped, time: Date.now(), cntlid: cntlid() }),
    });
  }
}

/**
 * One iterator's bounded queue. When it holds `hwm` events, newer ones are dropped and counted; an overflow event
 * (made by `makeOverflow`) takes their place in the stream. The iterator ends with `end()` (after the queued events),
 * `return()` (at once) or its AbortSignal (rejecting with the reason).
 */
export class EventQueue<T> implements BoundedEventIterator<T> {
  private buf: T[] = [];
  private head = 0;
  private pendingDrops = 0;
  private totalDropped = 0;
  private ended = false;
  private failure: Error | undefined;
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: Error) => void } | undefined;
  private signal: AbortSignal | undefined;
  private onAbort: (() => void) | undefined;
  private readonly hwm: number;
  private readonly filter: ((ev: T) => boolean) | undefined;
  private readonly makeOverflow: (dropped: number) => T;
  private readonly detach: () => void;

  constructor(hwm: number, filter: ((ev: T) => boolean) | undefined, makeOverflow: (dropped: number) => T, detach: () => void = () => undefined) {
    if (!Number.isInteger(hwm) || hwm < 1) throw new InvalidArgumentError(`highWaterMark must be a positive integer, got ${String(hwm)}`);
    this.hwm = hwm;
    this.filter = filter;
    this.makeOverflow = makeOverflow;
    this.detach = detach;
  }

  get dropped(): number {
    return this.totalDropped;
  }

  get queued(): number {
    return this.buf.length - this.head;
  }

  /** Whether `ev` would be queued (not ended, passes the filter). */
  wants(ev: T): boolean {
    return !this.ended && (!this.filter || this.filter(ev));
  }

  /** End the iteration when `signal` aborts. */
  bindSignal(signal: AbortSignal): void {
    if (signal.aborted) {
      this.abort(signal);
      return;
    }
    this.signal = signal;
    this.onAbort = () => this.abort(signal);
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  private abort(signal: AbortSignal): void {
    if (this.ended) return;
    const err = abortError(signal);
    this.finish();
    this.buf = [];
    this.head = 0;
    this.pendingDrops = 0;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(err);
    } else {
      this.failure = err;
    }
  }

  /** Offer an event. */
  push(ev: T): void {
    if (!this.wants(ev)) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: ev, done: false });
      return;
    }
    if (this.queued >= this.hwm) {
      this.pendingDrops++;
      this.totalDropped++;
      return;
    }
    // The overflow marker goes where the dropped events would have been; it may exceed the mark by one.
    if (this.pendingDrops > 0) this.buf.push(this.overflow());
    this.buf.push(ev);
  }

  private overflow(): T {
    const ev = this.makeOverflow(this.pendingDrops);
    this.pendingDrops = 0;
    return ev;
  }

  private take(): T | undefined {
    if (this.head < this.buf.length) {
      const ev = this.buf[this.head]!;
      this.buf[this.head++] = undefined as unknown as T;
      if (this.head === this.buf.length) {
        this.buf = [];
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.buf.length) {
        this.buf = this.buf.slice(this.head);
        this.head = 0;
      }
      return ev;
    }
    if (this.pendingDrops > 0) return this.overflow();
    return undefined;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.failure) {
      const err = this.failure;
      this.failure = undefined;
      return Promise.reject(err);
    }
    const ev = this.take();
    if (ev !== undefined) return Promise.resolve({ value: ev, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter) return Promise.reject(new InvalidArgumentError('next() called again before the previous call settled'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.finish();
    this.buf = [];
    this.head = 0;
    this.pendingDrops = 0;
    this.failure = undefined;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  /** The source closed: deliver what is queued, then report done. */
  end(): void {
    this.finish();
    if (this.waiter && this.queued === 0 && this.pendingDrops === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.signal && this.onAbort) this.signal.removeEventListener('abort', this.onAbort);
    this.signal = undefined;
    this.onAbort = undefined;
    this.detach();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

// ---------------------------------------------------------------------------------------------
// AER engine

/** What the AER engine needs from its controller. */
export interface AenHost {
  /** True while the controller is live (AERs are only armed then). */
  live(): boolean;
  /** Submit an admin command. */
  admin(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion>;
  /** Read `length` bytes of log page `lid` (RAE cleared unless asked). */
  readLog(o: { lid: number; length: number; nsid?: number; rae?: boolean }): Promise<Buffer>;
  /** Active namespace IDs (Identify CNS 02h). */
  activeNamespaceIds(): Promise<number[]>;
  /** Read the ANA log after an ANA Change notice; emits the ana-change event itself. */
  anaChanged(): Promise<void>;
  /** Deliver an event. */
  emit(ev: ControllerEventInit): void;
}

/** State of a controller's asynchronous event handling, for monitoring. */
export interface AsyncEventStatus {
  /** Asynchronous Event Configuration value in effect (what Set Features accepted), or undefined if never set. */
  config: number | undefined;
  /** AER commands kept outstanding. */
  limit: number;
  /** AER commands outstanding now. */
  outstanding: number;
  /** Asynchronous events received. */
  received: number;
  /** AERs that completed with an error status (not replaced). */
  failed: number;
  /** The last such error. */
  lastError: NvmeStatusError | undefined;
}

/**
 * Keeps AERs outstanding for one controller, decodes their completions and handles each event in order (reading
 * the log page it names, then emitting the typed event).
 */
export class AsyncEventEngine {
  private readonly host: AenHost;
  private config: number | undefined;
  private limit = 0;
  private outstanding = 0;
  private received = 0;
  private failed = 0;
  private lastError: NvmeStatusError | undefined;
  private knownNamespaces: Set<number> | undefined;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly identity: IdentifyController;

  constructor(host: AenHost, identity: IdentifyController) {
    this.host = host;
    this.identity = identity;
  }

  /** Monitoring snapshot. */
  status(): AsyncEventStatus {
    return { config: this.config, limit: this.limit, outstanding: this.outstanding, received: this.received, failed: this.failed, lastError: this.lastError };
  }

  /** AERs outstanding now (their commands are still on the admin queue). */
  get pending(): number {
    return this.outstanding;
  }

  /**
   * Enable events with Set Features (Asynchronous Event Configuration). If the controller refuses the SMART critical
   * warning bits (Invalid Field), the notices alone are requested. Returns the value accepted (undefined if refused).
   */
  async configure(discovery: boolean): Promise<number | undefined> {
    const { smart, notices } = asyncEventConfigFor(this.identity, discovery);
    const tries = smart ? [(smart | notices) >>> 0, notices] : [notices];
    for (const value of tries) {
      if (value === 0) break;
      try {
        await this.host.admin(cmds.setFeatures({ fid: FeatureId.AsyncEventConfiguration, cdw11: value }));
        this.config = value;
        return value;
      } catch (err) {
        if (!(err instanceof NvmeStatusError)) throw err;
        debug('Set Features (Asynchronous Event Configuration) 0x%s refused: %s', value.toString(16), err.message);
      }
    }
    return undefined;
  }

  /** Remember the active namespace list, so that namespace-changed events can say what was added and removed. */
  async loadNamespaces(): Promise<void> {
    try {
      this.knownNamespaces = new Set(await this.host.activeNamespaceIds());
    } catch (err) {
      if (!(err instanceof NvmeStatusError)) throw err;
      debug('active namespace list not readable: %s', err.message);
    }
  }

  /** Keep `count` AERs outstanding from now on. */
  start(count: number): void {
    this.limit = count;
    for (let i = 0; i < count; i++) this.arm();
  }

  /** Stop replacing AERs and ignore completions from now on. */
  stop(): void {
    this.stopped = true;
  }

  private arm(): void {
    if (this.stopped || !this.host.live() || this.outstanding >= this.limit) return;
    this.outstanding++;
    this.host.admin(cmds.asyncEventRequest(), { timeout: 0, allowStatusError: true }).then(
      (c) => {
        this.outstanding--;
        this.onCompletion(c);
      },
      (err: Error) => {
        this.outstanding--;
        debug('AER ended: %s', err.message);
      },
    );
  }

  private onCompletion(c: Completion): void {
    if (this.stopped) return;
    if (!cqeOk(c.cqe)) {
      const err = statusError(c.cqe, { opcode: 0x0c, admin: true, command: 'Asynchronous Event Request', qid: 0 });
      this.failed++;
      this.lastError = err;
      // Limit Exceeded, aborts and every other error: do not replace it, or a refusing controller would loop.
      const aborted = err.sct === StatusCodeType.Generic && (err.sc === GenericStatus.AbortRequested || err.sc === GenericStatus.SqDeletionAbort);
      debug('AER completed with %s; %s', err.statusName, aborted ? 'controller is going away' : 'not re-armed');
      return;
    }
    const ev = decodeAsyncEvent(c.cqe.dw0);
    this.received++;
    debug('asynchronous event: %s (type %d, info 0x%s, log page 0x%s)', ev.name, ev.type, ev.info.toString(16), ev.lid.toString(16));
    this.arm();
    this.chain = this.chain.then(() => this.handle(ev)).catch((err: Error) => {
      debug('handling asynchronous event %s failed: %s', ev.name, err.message);
    });
  }

  /** Handle one event: read its log page (RAE cleared) and emit. */
  private async handle(ev: AsyncEventInfo): Promise<void> {
    if (this.stopped || !this.host.live()) return;
    const h = this.host;
    switch (ev.type) {
      case AsyncEventType.Notice:
        switch (ev.info) {
          case NoticeEvent.NamespaceAttributeChanged:
            return this.namespacesChanged();
          case NoticeEvent.AnaChange:
            return h.anaChanged();
          case NoticeEvent.DiscoveryLogPageChange:
            // The discovery module re-reads the log (which clears the event); a bare controller only reports it.
            h.emit({ type: 'discovery-change' });
            return;
          case NoticeEvent.FirmwareActivationStarting:
            await this.readQuietly(LogPageId.FirmwareSlot, 512);
            h.emit({ type: 'firmware-activation' });
            return;
        }
        break;
      case AsyncEventType.ErrorStatus: {
        const entries = Math.min(this.identity.elpe + 1, 256);
        const buf = await this.readQuietly(ev.lid || LogPageId.ErrorInformation, entries * ERROR_LOG_ENTRY_SIZE);
        h.emit({ type: 'error', info: ev.info, name: ev.name, entries: buf ? safe(() => parseErrorLog(buf), []) : [] });
        return;
      }
      case AsyncEventType.SmartHealthStatus: {
        const buf = await this.readQuietly(ev.lid || LogPageId.SmartHealth, SMART_LOG_SIZE, NSID_ALL);
        h.emit({ type: 'smart', info: ev.info, name: ev.name, log: buf ? safe(() => parseSmartLog(buf), undefined) : undefined });
        return;
      }
      case AsyncEventType.IoCommandSpecific:
        if (ev.info === 0) {
          // Read every pending notification (RAE cleared), one event per log page.
          const lid = ev.lid || LogPageId.ReservationNotification;
          const list = await readReservationNotifications(() => h.readLog({ lid, length: RESERVATION_NOTIFICATION_LOG_SIZE }), {
            onError: (err) => debug('reading the Reservation Notification log failed: %s', err.message),
          });
          for (const n of list) h.emit(n);
          return;
        }
        break;
    }
    if (ev.lid !== 0) await this.readQuietly(ev.lid, 512);
    h.emit({ type: 'other', aenType: ev.type, info: ev.info, lid: ev.lid, name: ev.name });
  }

  private async namespacesChanged(): Promise<void> {
    const buf = await this.host.readLog({ lid: LogPageId.ChangedNamespaceList, length: CHANGED_NS_LIST_SIZE, nsid: NSID_ALL });
    const list = parseChangedNsList(buf);
    let added: number[] = [];
    let removed: number[] = [];
    try {
      const now = new Set(await this.host.activeNamespaceIds());
      const before = this.knownNamespaces ?? new Set<number>();
      added = [...now].filter((n) => !before.has(n)).sort((a, b) => a - b);
      removed = [...before].filter((n) => !now.has(n)).sort((a, b) => a - b);
      this.knownNamespaces = now;
    } catch (err) {
      // Still report the Changed Namespace List; added/removed stay empty until the list can be read.
      if (!(err instanceof NvmeStatusError)) throw err;
      debug('active namespace list not readable: %s', err.message);
    }
    this.host.emit({ type: 'namespace-changed', nsids: list.nsids, overflow: list.overflow, added, removed });
  }

  /** Read a log page with RAE cleared; a failure is logged and yields undefined. */
  private async readQuietly(lid: number, length: number, nsid?: number): Promise<Buffer | undefined> {
    try {
      return await this.host.readLog({ lid, length, nsid });
    } catch (err) {
      debug('reading log page 0x%s for an event failed: %s', lid.toString(16), (err as Error).message);
      return undefined;
    }
  }
}

function safe<T, D>(fn: () => T, fallback: D): T | D {
  try {
    return fn();
  } catch {
    return fallback;
  }
}
