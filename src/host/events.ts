/**
 * The typed events a controller delivers (ANA change, namespace changes, discovery log changes, error, SMART,
 * firmware, reservation and overflow events) and the controller's event hub. The spec values and DW0 decoding are in
 * protocol/async-events.ts, the generic channel in src/event-channel.ts, and the AER engine that produces these events in
 * aer.ts.
 */
import type { AnaLog, ErrorLogEntry, ReservationNotificationLog, SmartLog } from '../protocol/logpages.js';
import type { AnaGroupChange, AnaNamespaceChange } from './ana.js';
import { EventChannel, type BoundedEventIterator, type EventIteratorOptions } from '../event-channel.js';

export type { EventIteratorOptions };

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

/** Every controller event type, for checking what callers pass to `on()`. */
export const CONTROLLER_EVENT_TYPES: ReadonlySet<string> = new Set<ControllerEventType>([
  'ana-change',
  'namespace-changed',
  'discovery-change',
  'error',
  'smart',
  'firmware-activation',
  'reservation',
  'overflow',
  'other',
]);

/** Each event type with its event, plus '*' for every event: what `Controller.on(type, listener)` hands a listener. */
export type ControllerEventMap = { [K in ControllerEventType]: Extract<ControllerEvent, { type: K }> } & { '*': ControllerEvent };

/** `Omit` applied to each member of a union (so that the result is still a discriminated union). */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** An event without the fields the hub fills in. */
export type ControllerEventInit = DistributiveOmit<ControllerEvent, 'time' | 'cntlid'>;



/** The async iterator returned by `events()`. */
export type ControllerEventIterator = BoundedEventIterator<ControllerEvent>;

/** The {@link EventChannel} of one controller: events are stamped with the time and the controller's cntlid. */
export class EventHub extends EventChannel<ControllerEvent, ControllerEventInit> {
  constructor(cntlid: () => number) {
    super({
      stamp: (init) => ({ ...init, time: Date.now(), cntlid: cntlid() }) as ControllerEvent,
      overflow: (dropped) => ({ type: 'overflow', dropped, time: Date.now(), cntlid: cntlid() }),
    });
  }
}
