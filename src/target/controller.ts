/**
 * A controller of the embedded target: one association of a host with a subsystem (or with the
 * discovery subsystem), made by an admin queue Connect. Holds the controller properties, features,
 * asynchronous events, keep-alive timer and per-controller logs.
 */
import type { Buffer } from 'node:buffer';
import { CcShn, CstsShst, decodeCc, encodeCap, encodeCsts, encodeVs } from '../protocol/properties.js';
import { AdminCommandStatus, GenericStatus, LogPageId, NSID_ALL, Property, StatusCodeType } from '../protocol/constants.js';
import { encodeReservationNotificationLog, type ErrorLogEntryFields } from '../protocol/logpages.js';
import { DEFERRED, fail, ok, status, type Cmd, type HandlerResult } from './command.js';
import type { TargetConnection } from './connection.js';
import type { TargetSubsystem } from './subsystem.js';
import type { AsyncEvent } from './types.js';
import { AsyncEventConfig, AsyncEventType, NoticeEvent, encodeAsyncEvent } from '../protocol/async-events.js';
import type { ResolvedOptions, TargetPort } from './core.js';

/** The longest delay Node's setTimeout honours. */
const MAX_TIMER_MS = 0x7fffffff;

/** Error Information log entries kept (ELPE + 1). */
export const ERROR_LOG_ENTRIES = 64;
/** Asynchronous Event Request limit, 0's based (AERL). */
export const AERL = 3;
/** Changed Namespace List capacity before it overflows. */
const CHANGED_NS_MAX = 1024;

/** What a controller needs from its target (implementation detail, not exported from nvmeof/target). */
export interface ControllerOwner {
  readonly options: ResolvedOptions;
  controllerClosed(ctrl: TargetController, reason: string): void;
  controllerEvent(name: 'shutdown' | 'keep-alive-timeout' | 'property-set', ctrl: TargetController, extra: { shn?: number; offset?: number; value?: bigint }): void;
}

/** A controller (association) of the embedded target. Inspect through NvmeTarget.controllers(). */
export class TargetController {
  readonly cntlid: number;
  /** The NVM subsystem, or undefined for a discovery controller. */
  readonly subsystem: TargetSubsystem | undefined;
  readonly subnqn: string;
  readonly hostnqn: string;
  /** Host identifier (UUID form). */
  readonly hostid: string;
  /** The port the admin queue connected through. */
  readonly port: TargetPort;
  /** True for a discovery controller. */
  readonly discovery: boolean;
  /** Keep Alive Timeout in ms as requested by the host (0 = disabled). */
  kato: number;
  /** Controller Configuration property. */
  cc = 0;
  /** Controller Status property. */
  csts = 0;
  /** I/O queues granted by Set Features Number of Queues, or undefined before it. */
  ioQueuesGranted: number | undefined;
  /** Asynchronous Event Configuration (Set Features FID 0Bh). */
  aec: number;
  /** Connections by queue ID. */
  readonly queues = new Map<number, TargetConnection>();
  /** Simple stored feature values (FID -> CDW11). */
  readonly features = new Map<number, number>();
  /** Wall clock time of the admin Connect. */
  readonly createdAt = Date.now();
  /** Set once the controller is torn down. */
  closed = false;
  /** @internal */
  readonly hostidBytes: Buffer;

  private readonly owner: ControllerOwner;
  private readonly aers: Cmd[] = [];
  private readonly events: number[] = [];
  private readonly masked = new Set<number>();
  private readonly changedNs = new Set<number>();
  private changedOverflow = false;
  private readonly errorLog: Partial<ErrorLogEntryFields>[] = [];
  private errorCount = 0n;
  private readonly resvLog: { lpc: bigint; rnlpt: number; nsid: number }[] = [];
  private resvLpc = 0n;
  /** @internal Reservation Notification Mask (Set Features FID 82h) by NSID (FFFFFFFFh: every namespace). */
  readonly resvMasks = new Map<number, number>();
  private lastKeepAlive = Date.now();
  private kaTimer: NodeJS.Timeout | undefined;
  private readyTimer: NodeJS.Timeout | undefined;

  /** @internal */
  constructor(
    owner: ControllerOwner,
    init: { cntlid: number; subsystem: TargetSubsystem | undefined; subnqn: string; hostnqn: string; hostid: string; hostidBytes: Buffer; port: TargetPort; kato: number },
  ) {
    this.owner = owner;
    this.cntlid = init.cntlid;
    this.subsystem = init.subsystem;
    this.subnqn = init.subnqn;
    this.hostnqn = init.hostnqn;
    this.hostid = init.hostid;
    this.hostidBytes = init.hostidBytes;
    this.port = init.port;
    this.discovery = init.subsystem === undefined;
    this.kato = init.kato;
    const defaults = owner.options.aenEnabledByDefault;
    this.aec = !defaults ? 0 : this.discovery ? AsyncEventConfig.DiscoveryLogChange >>> 0 : (AsyncEventConfig.NamespaceAttribute | (init.subsystem?.ana ? AsyncEventConfig.AnaChange : 0));
    this.startKeepAlive();
  }

  /** Events the controller supports (OAES bits). */
  get oaes(): number {
    if (this.discovery) return AsyncEventConfig.DiscoveryLogChange >>> 0;
    return AsyncEventConfig.NamespaceAttribute | (this.subsystem?.ana ? AsyncEventConfig.AnaChange : 0);
  }

  /** CSTS.RDY. */
  get ready(): boolean {
    return (this.csts & 1) === 1;
  }

  /** Asynchronous Event Requests outstanding. */
  get outstandingAers(): number {
    return this.aers.length;
  }

  // ----------------------------------------------------------------------------------------
  // Properties

  /** CAP as reported by Property Get. */
  get cap(): bigint {
    const o = this.owner.options;
    return encodeCap({
      mqes: o.mqes, cqr: true, ams: 0, to: o.capTimeout, dstrd: 0, nssrs: false, css: 1, bps: false,
      mpsmin: 0, mpsmax: 0, pmrs: false, cmbs: false, crms: 0,
    });
  }

  /** VS as reported by Property Get. */
  get vs(): number {
    const [major, minor] = this.owner.options.version.split('.').map(Number);
    return encodeVs({ major: major!, minor: minor!, tertiary: 0 });
  }

  /** @internal Property Get; undefined for an unsupported offset. */
  propertyGet(offset: number, size: 4 | 8): bigint | undefined {
    switch (offset) {
      case Property.CAP: return size === 8 ? this.cap : undefined;
      case Property.VS: return size === 4 ? BigInt(this.vs) : undefined;
      case Property.CC: return size === 4 ? BigInt(this.cc) : undefined;
      case Property.CSTS: return size === 4 ? BigInt(this.csts) : undefined;
      default: return undefined;
    }
  }

  /** @internal Property Set; false for an unsupported offset. */
  propertySet(offset: number, size: 4 | 8, value: bigint): boolean {
    if (offset !== Property.CC || size !== 4) return false;
    this.owner.controllerEvent('property-set', this, { offset, value });
    this.setCc(Number(value & 0xffffffffn));
    return true;
  }

  private setCc(v: number): void {
    const old = decodeCc(this.cc);
    const cc = decodeCc(v);
    this.cc = v;
    const delay = this.owner.options.readyDelayMs;
    if (cc.en && !old.en) {
      if (cc.iosqes !== 6 || cc.iocqes !== 4 || cc.mps !== 0 || cc.ams !== 0 || (cc.css !== 0 && cc.css !== 6 && cc.css !== 7)) {
        this.csts = encodeCsts({ rdy: false, cfs: true, shst: 0, nssro: false, pp: false, st: false });
        return;
      }
      this.later(delay, () => {
        this.csts |= 1;
      });
    } else if (!cc.en && old.en) {
      this.clearReadyTimer();
      this.abortAers();
      this.csts = 0;
    }
    if (cc.shn !== CcShn.None && old.shn === CcShn.None) {
      this.owner.controllerEvent('shutdown', this, { shn: cc.shn });
      this.abortAers();
      this.csts = (this.csts & ~0xc) | (CstsShst.Occurring << 2);
      this.later(delay, () => {
        this.csts = (this.csts & ~0xc) | (CstsShst.Complete << 2);
      });
    } else if (cc.shn === CcShn.None && old.shn !== CcShn.None) {
      this.csts &= ~0xc;
    }
  }

  private later(ms: number, fn: () => void): void {
    this.clearReadyTimer();
    if (ms <= 0) {
      fn();
      return;
    }
    this.readyTimer = setTimeout(() => {
      this.readyTimer = undefined;
      if (!this.closed) fn();
    }, ms);
    this.readyTimer.unref();
  }

  private clearReadyTimer(): void {
    if (this.readyTimer !== undefined) clearTimeout(this.readyTimer);
    this.readyTimer = undefined;
  }

  // ----------------------------------------------------------------------------------------
  // Keep alive

  /** Keep-alive timeout actually enforced, ms: KATO rounded up to the KAS granularity (0 = none). */
  get effectiveKato(): number {
    if (this.kato <= 0) return 0;
    const gran = Math.max(1, this.owner.options.kas) * 100;
    return Math.ceil(this.kato / gran) * gran;
  }

  /** @internal Restart the keep-alive timer (Keep Alive command, or any command with TBKAS). */
  touch(): void {
    this.lastKeepAlive = Date.now();
  }

  /** @internal (Re)start keep-alive enforcement after a KATO change. */
  startKeepAlive(): void {
    if (this.kaTimer !== undefined) clearTimeout(this.kaTimer);
    this.kaTimer = undefined;
    this.lastKeepAlive = Date.now();
    const kato = this.effectiveKato;
    if (kato > 0 && this.owner.options.enforceKeepAlive && !this.closed) this.armKeepAlive(kato);
  }

  private armKeepAlive(ms: number): void {
    // Node's timers take at most 2^31-1 ms (larger values fire after 1 ms): wait in steps, the callback re-arms.
    this.kaTimer = setTimeout(() => {
      this.kaTimer = undefined;
      if (this.closed) return;
      const kato = this.effectiveKato;
      if (kato <= 0) return;
      const left = this.lastKeepAlive + kato - Date.now();
      if (left > 0) {
        this.armKeepAlive(left);
        return;
      }
      this.owner.controllerEvent('keep-alive-timeout', this, {});
      this.csts |= 2;
      this.close(`keep-alive timeout (${kato} ms without Keep Alive)`);
    }, Math.min(ms, MAX_TIMER_MS));
    this.kaTimer.unref();
  }

  // ----------------------------------------------------------------------------------------
  // Asynchronous events

  /** @internal Asynchronous Event Request: queue it, or fail when AERL + 1 are outstanding. */
  addAer(cmd: Cmd): HandlerResult {
    if (this.aers.length > AERL) return fail(StatusCodeType.CommandSpecific, AdminCommandStatus.AsyncEventRequestLimitExceeded);
    this.aers.push(cmd);
    this.deliver();
    return DEFERRED;
  }

  /** @internal Remove an AER (Abort, or its connection closed). True when it was outstanding. */
  removeAer(cmd: Cmd): boolean {
    const i = this.aers.indexOf(cmd);
    if (i < 0) return false;
    this.aers.splice(i, 1);
    return true;
  }

  /** @internal The outstanding AER with this CID. */
  findAer(cid: number): Cmd | undefined {
    return this.aers.find((c) => c.cid === cid);
  }

  /**
   * Report an event the way the spec says: only when enabled in the Asynchronous Event
   * Configuration (`aecBit`) and not masked since the last time it was reported (the mask is
   * cleared when the host reads the log page with RAE cleared).
   * @internal
   */
  raiseEvent(ev: AsyncEvent, aecBit: number): boolean {
    if (this.closed || (aecBit !== 0 && ((this.aec & aecBit) >>> 0) === 0) || this.masked.has(ev.lid)) return false;
    this.masked.add(ev.lid);
    this.sendAsyncEvent(ev);
    return true;
  }

  /** Queue an event for the next (or an outstanding) AER, without checking configuration or masks. */
  sendAsyncEvent(ev: AsyncEvent): void {
    if (this.closed) return;
    this.events.push(encodeAsyncEvent(ev));
    this.deliver();
  }

  /** @internal Reading log `lid` with RAE cleared re-enables its event. */
  unmask(lid: number): void {
    this.masked.delete(lid);
  }

  /** Events raised and waiting for an AER. */
  get pendingEvents(): number {
    return this.events.length;
  }

  private deliver(): void {
    while (this.events.length > 0 && this.aers.length > 0) {
      const dw0 = this.events.shift()!;
      const aer = this.aers.shift()!;
      aer.conn.complete(aer, ok(dw0));
    }
  }

  private abortAers(): void {
    const aers = this.aers.splice(0);
    for (const aer of aers) aer.conn.complete(aer, { status: status(StatusCodeType.Generic, GenericStatus.SqDeletionAbort, false) });
  }

  // ----------------------------------------------------------------------------------------
  // Logs

  /** @internal A namespace changed: remember it and raise Namespace Attribute Changed. */
  namespaceChanged(nsid: number): void {
    if (this.discovery) return;
    if (!this.changedOverflow) {
      this.changedNs.add(nsid);
      if (this.changedNs.size > CHANGED_NS_MAX) {
        this.changedOverflow = true;
        this.changedNs.clear();
      }
    }
    this.raiseEvent({ type: AsyncEventType.Notice, info: NoticeEvent.NamespaceAttributeChanged, lid: LogPageId.ChangedNamespaceList }, AsyncEventConfig.NamespaceAttribute);
  }

  /** @internal The Changed Namespace List; cleared (and its event unmasked) unless `rae`. */
  takeChangedNamespaces(rae: boolean): number[] {
    const list = this.changedOverflow ? new Array<number>(CHANGED_NS_MAX + 1).fill(1) : [...this.changedNs].sort((a, b) => a - b);
    if (!rae) {
      this.changedNs.clear();
      this.changedOverflow = false;
      this.unmask(LogPageId.ChangedNamespaceList);
    }
    return list;
  }

  /** @internal Queue a Reservation Notification log page (unless masked for the namespace) and raise its event. */
  reservationNotice(rnlpt: number, nsid: number): void {
    if (this.discovery || this.closed) return;
    const mask = this.resvMasks.get(nsid) ?? this.resvMasks.get(NSID_ALL) ?? 0;
    if (((mask >>> rnlpt) & 1) === 1) return;
    this.resvLpc = this.resvLpc === 0xffff_ffff_ffff_ffffn ? 1n : this.resvLpc + 1n;
    this.resvLog.push({ lpc: this.resvLpc, rnlpt, nsid });
    // At most 255 pages wait; older ones are lost (the host sees a gap in the Log Page Count).
    if (this.resvLog.length > 255) this.resvLog.shift();
    this.raiseEvent({ type: AsyncEventType.IoCommandSpecific, info: 0, lid: LogPageId.ReservationNotification }, 0);
  }

  /** @internal The next Reservation Notification log page (64 bytes); consumed unless `rae`. */
  takeReservationNotice(rae: boolean): Buffer {
    const next = this.resvLog[0];
    const page = next === undefined
      ? encodeReservationNotificationLog({})
      : encodeReservationNotificationLog({ lpc: next.lpc, rnlpt: next.rnlpt, nalp: Math.min(255, this.resvLog.length - 1), nsid: next.nsid });
    if (!rae) {
      if (next !== undefined) this.resvLog.shift();
      this.unmask(LogPageId.ReservationNotification);
      if (this.resvLog.length > 0) this.raiseEvent({ type: AsyncEventType.IoCommandSpecific, info: 0, lid: LogPageId.ReservationNotification }, 0);
    }
    return page;
  }

  /** @internal Record a failed command in the Error Information log. */
  recordError(cmd: Cmd, st: number): void {
    this.errorCount++;
    this.errorLog.unshift({
      errorCount: this.errorCount,
      sqid: cmd.qid,
      cid: cmd.cid,
      status: st & 0xfffe,
      parameterErrorLocation: 0xffff,
      nsid: cmd.nsid,
      trtype: 3,
      opcode: cmd.opcode,
    });
    if (this.errorLog.length > ERROR_LOG_ENTRIES) this.errorLog.length = ERROR_LOG_ENTRIES;
  }

  /** @internal Error log entries, newest first. */
  errorEntries(): Partial<ErrorLogEntryFields>[] {
    return this.errorLog;
  }

  // ----------------------------------------------------------------------------------------

  /** Tear the controller down: close every connection of the association. Idempotent. */
  close(reason = 'closed by the target'): void {
    if (this.closed) return;
    this.closed = true;
    if (this.kaTimer !== undefined) clearTimeout(this.kaTimer);
    this.kaTimer = undefined;
    this.clearReadyTimer();
    this.aers.length = 0;
    for (const conn of [...this.queues.values()]) conn.destroy(reason);
    this.queues.clear();
    this.owner.controllerClosed(this, reason);
  }
}
