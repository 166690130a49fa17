/**
 * The AER engine of a controller. It keeps a few Asynchronous Event Request commands outstanding on the admin queue
 * (they have no timeout). When one completes, its DW0 names the event. The spec masks that event type until the host
 * reads the named log page with Retain Asynchronous Event cleared, so every handler reads its log page with RAE = 0,
 * and a new AER replaces the completed one. An AER that completes with an error status (for example Asynchronous
 * Event Request Limit Exceeded) is not replaced.
 */
import type { Buffer } from 'node:buffer';
import { debuglog } from 'node:util';
import { NvmeStatusError } from '../errors.js';
import * as cmds from '../protocol/commands.js';
import type { NvmeCommand } from '../protocol/commands.js';
import { AdminOpcode, FeatureId, GenericStatus, LogPageId, NSID_ALL, StatusCodeType } from '../protocol/constants.js';
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
} from '../protocol/logpages.js';
import { statusError } from '../protocol/status.js';
import { AER_NO_LOG_PAGE, AsyncEventType, NoticeEvent, asyncEventConfigFor, decodeAsyncEvent, type AsyncEventInfo } from '../protocol/async-events.js';
import type { Completion, SubmitOptions } from '../transport/queue-pair.js';
import { readReservationNotifications } from './reservations.js';
import type { ControllerEventInit } from './events.js';

const debug = debuglog('nvmeof');

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
      const err = statusError(c.cqe, { opcode: AdminOpcode.AsyncEventRequest, admin: true, command: 'Asynchronous Event Request', qid: 0 });
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
    if (ev.lid !== AER_NO_LOG_PAGE) await this.readQuietly(ev.lid, 512);
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
