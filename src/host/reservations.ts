/**
 * Persistent reservations on a namespace: register, acquire, release and report, plus the Reservation
 * Notification log that backs reservation events.
 *
 * Every argument is checked before anything is sent (keys are u64 bigints, types are checked by name), and a
 * controller or namespace that does not support reservations (Identify Controller ONCS bit 5, Identify
 * Namespace RESCAP) is refused with NVMEOF_ERR_UNSUPPORTED.
 *
 * Reservations belong to a host, identified by its host identifier (the 128-bit host ID of every Connect): all
 * controllers a host connects to the same subsystem share its registration, and different host identities are
 * separate registrants.
 */
import type { Buffer } from 'node:buffer';
import { debuglog } from 'node:util';
import { InvalidArgumentError, NvmeStatusError, UnsupportedError } from '../errors.js';
import type { NvmeCommand } from '../protocol/commands.js';
import { GenericStatus, LogPageId, StatusCodeType } from '../protocol/constants.js';
import type { IdentifyNamespace, OncsFlags } from '../protocol/identify.js';
import { parseReservationNotificationLog, RESERVATION_NOTIFICATION_LOG_SIZE, type ReservationNotificationLog } from '../protocol/logpages.js';
import * as resv from '../protocol/reservations.js';
import { describeValue } from '../protocol/sqe.js';
import type { Completion, SubmitOptions } from '../transport/queue-pair.js';

const debug = debuglog('nvmeof');

export type { ReservationType } from '../protocol/reservations.js';
type ReservationType = resv.ReservationType;

/** The namespace a reservation command applies to, and how to reach its controller. */
export interface ReservationNamespace {
  readonly nsid: number;
  readonly identity: IdentifyNamespace;
  /** Optional NVM commands the controller supports (Identify Controller ONCS); absent = assume supported. */
  readonly oncs?: OncsFlags;
  /** Submit an I/O command for this namespace. */
  io(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion>;
  /** Submit an admin command (Set Features Reservation Notification Mask); absent for owners without an admin queue. */
  admin?(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion>;
  /** Set once the Reservation Notification Mask was sent for this namespace. */
  notificationsEnabled?: boolean;
}

/** Per-command options. */
export interface ReservationCommandOptions {
  signal?: AbortSignal;
  /** Per-command timeout in ms. */
  timeout?: number;
}

/** Options of `ns.reservationRegister()`. */
export interface ReservationRegisterParams {
  /** 'register' a new key, 'unregister' this host, or 'replace' its key. */
  action: 'register' | 'unregister' | 'replace';
  /** This host's current key (required for 'unregister' and 'replace' unless `ignoreExistingKey`). */
  currentKey?: bigint;
  /** The key to register (required for 'register' and 'replace'). */
  newKey?: bigint;
  /** Skip the current key check (IEKEY). */
  ignoreExistingKey?: boolean;
  /** true: persist reservations through power loss; false: stop persisting; undefined: leave as is (CPTPL). */
  persistThroughPowerLoss?: boolean;
}

/** Options of `ns.reservationAcquire()`. */
export interface ReservationAcquireParams {
  /** 'acquire' the reservation, 'preempt' the holder or other registrants, or 'preempt-and-abort' (also aborts their commands). */
  action: 'acquire' | 'preempt' | 'preempt-and-abort';
  type: ReservationType;
  /** This host's registered key. */
  key: bigint;
  /** Key of the registrants to preempt (required for 'preempt' and 'preempt-and-abort'). */
  preemptKey?: bigint;
}

/** Options of `ns.reservationRelease()`. */
export interface ReservationReleaseParams {
  /** 'release' the reservation this host holds, or 'clear' the reservation and every registration. */
  action: 'release' | 'clear';
  /** Type of the reservation held (required for 'release'; must match it). */
  type?: ReservationType;
  /** This host's registered key. */
  key: bigint;
}

/** Options of `ns.reservationReport()`. */
export interface ReservationReportParams {
  /**
   * true: extended data structure (128-bit host IDs), false: standard (64-bit host IDs). Default: extended, falling
   * back to standard when the controller answers Host Identifier Inconsistent Format. NVMe over Fabrics hosts
   * always use 128-bit host IDs, so targets such as SPDK refuse the standard report.
   */
  extended?: boolean;
}

/** One registrant in a reservation report. */
export interface ReservationRegistrant {
  /** Controller ID (0xFFFF: the registrant has no controller associated now). */
  cntlid: number;
  /** Host identifier as lower-case hex in wire byte order: 32 digits (128-bit) or 16 digits (64-bit). */
  hostId: string;
  /** Reservation key. */
  key: bigint;
  /** This registrant holds the reservation. */
  holdsReservation: boolean;
}

/** The reservation status of a namespace. */
export interface ReservationReport {
  /** Generation counter (GEN). */
  generation: number;
  /** Reservation type held, or null when no reservation is held. */
  type: ReservationType | null;
  /** Raw RTYPE. */
  rtype: number;
  /** Persist Through Power Loss State. */
  ptpls: boolean;
  /** Whether the extended data structure (128-bit host IDs) was returned. */
  extended: boolean;
  /** The (first) registrant holding the reservation, if any. */
  holder?: ReservationRegistrant;
  /** Every registrant. */
  registrants: ReservationRegistrant[];
}

/** What a reservation notification says happened. */
export type ReservationNotificationName = 'registration-preempted' | 'reservation-released' | 'reservation-preempted';

/** A decoded Reservation Notification log page. */
export interface ReservationNotification {
  type: 'reservation';
  nsid: number;
  notification: ReservationNotificationName;
  /** Log Page Count of the entry (increments per notification; gaps mean lost entries). */
  logPageCount: bigint;
  /** The log page as read. */
  log: ReservationNotificationLog;
}

// ---------------------------------------------------------------------------------------------
// Capability and argument checks

const RESCAP_FLAG: Record<ReservationType, keyof IdentifyNamespace['decoded']['rescap']> = {
  'write-exclusive': 'writeExclusive',
  'exclusive-access': 'exclusiveAccess',
  'write-exclusive-registrants-only': 'writeExclusiveRegistrantsOnly',
  'exclusive-access-registrants-only': 'exclusiveAccessRegistrantsOnly',
  'write-exclusive-all-registrants': 'writeExclusiveAllRegistrants',
  'exclusive-access-all-registrants': 'exclusiveAccessAllRegistrants',
};

function params<T>(op: string, p: T): T {
  if (p === null || typeof p !== 'object') throw new InvalidArgumentError(`${op}: an options object is required`);
  return p;
}

function key(op: string, name: string, v: unknown): bigint {
  return resv.checkReservationKey(`${op}: ${name}`, v);
}

function typeArg(op: string, v: unknown): ReservationType {
  if (typeof v !== 'string' || !Object.hasOwn(resv.ReservationTypeValue, v)) {
    throw new InvalidArgumentError(`${op}: type must be one of ${resv.RESERVATION_TYPES.join(', ')}, got ${describeValue(v)}`);
  }
  return v as ReservationType;
}

function boolArg(op: string, name: string, v: unknown): boolean | undefined {
  if (v !== undefined && typeof v !== 'boolean') throw new InvalidArgumentError(`${op}: ${name} must be a boolean, got ${describeValue(v)}`);
  return v;
}

/** Refuse, before sending, reservation commands the controller or namespace does not support. */
function requireReservations(ns: ReservationNamespace, op: string, type?: ReservationType): void {
  const oncs = ns.oncs;
  if (oncs && !oncs.reservations) {
    throw new UnsupportedError(`${op}: the controller does not support reservations (Identify Controller ONCS.reservations is 0)`);
  }
  const rescap = ns.identity.rescap;
  if (rescap === 0) {
    throw new UnsupportedError(`${op}: namespace ${ns.nsid} does not support reservations (Identify Namespace RESCAP is 0)`);
  }
  if (type !== undefined && !ns.identity.decoded.rescap[RESCAP_FLAG[type]]) {
    throw new UnsupportedError(`${op}: namespace ${ns.nsid} does not support ${type} reservations (Identify Namespace RESCAP 0x${rescap.toString(16).padStart(2, '0')})`);
  }
}

function submitOpts(o: ReservationCommandOptions | undefined): SubmitOptions | undefined {
  if (o === undefined) return undefined;
  const s: SubmitOptions = {};
  if (o.signal !== undefined) s.signal = o.signal;
  if (o.timeout !== undefined) s.timeout = o.timeout;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Commands

/**
 * Enable the three reservation notifications for a namespace (Set Features Reservation Notification Mask, FID 82h,
 * every mask bit cleared). Sent once per namespace handle, before its first Register or Acquire; a controller that refuses
 * the feature is only logged (notifications are enabled by default on Linux and SPDK targets). Resolves true when
 * the controller accepted it.
 */
export async function enableReservationNotifications(ns: ReservationNamespace, opts?: ReservationCommandOptions): Promise<boolean> {
  if (ns.admin === undefined) return false;
  try {
    await ns.admin(resv.setReservationNotificationMask(ns.nsid, {}), submitOpts(opts));
    ns.notificationsEnabled = true;
    return true;
  } catch (err) {
    if (!(err instanceof NvmeStatusError)) throw err;
    debug('reservation notification mask for namespace %d refused: %s', ns.nsid, err.message);
    ns.notificationsEnabled = true;
    return false;
  }
}

/** Reservation Register: register, unregister or replace this host's key. */
export async function reservationRegister(ns: ReservationNamespace, p: ReservationRegisterParams, opts?: ReservationCommandOptions): Promise<void> {
  const op = 'reservationRegister';
  params(op, p);
  const action = p.action;
  if (action !== 'register' && action !== 'unregister' && action !== 'replace') {
    throw new InvalidArgumentError(`${op}: action must be one of register, unregister, replace, got ${describeValue(action)}`);
  }
  const iekey = boolArg(op, 'ignoreExistingKey', p.ignoreExistingKey) ?? false;
  const ptpl = boolArg(op, 'persistThroughPowerLoss', p.persistThroughPowerLoss);
  let crkey = 0n;
  let nrkey = 0n;
  if (action === 'register' || action === 'replace') {
    if (p.newKey === undefined) throw new InvalidArgumentError(`${op}: newKey is required to ${action}`);
    nrkey = key(op, 'newKey', p.newKey);
  } else if (p.newKey !== undefined) {
    key(op, 'newKey', p.newKey);
  }
  if (p.currentKey !== undefined) crkey = key(op, 'currentKey', p.currentKey);
  else if (action !== 'register' && !iekey) throw new InvalidArgumentError(`${op}: currentKey is required to ${action} (or set ignoreExistingKey)`);
  requireReservations(ns, op);
  if (ptpl === true && !ns.identity.decoded.rescap.ptpl) {
    throw new UnsupportedError(`${op}: namespace ${ns.nsid} cannot persist reservations through power loss (RESCAP.PTPL is 0)`);
  }
  const cmd = resv.reservationRegister({ nsid: ns.nsid, action, crkey, nrkey, iekey, ...(ptpl === undefined ? {} : { ptpl }) });
  if (action !== 'unregister' && !ns.notificationsEnabled) await enableReservationNotifications(ns, opts);
  await ns.io(cmd, submitOpts(opts));
}

/** Reservation Acquire: acquire a reservation, or preempt (and abort) other registrants. */
export async function reservationAcquire(ns: ReservationNamespace, p: ReservationAcquireParams, opts?: ReservationCommandOptions): Promise<void> {
  const op = 'reservationAcquire';
  params(op, p);
  const action = p.action;
  if (action !== 'acquire' && action !== 'preempt' && action !== 'preempt-and-abort') {
    throw new InvalidArgumentError(`${op}: action must be one of acquire, preempt, preempt-and-abort, got ${describeValue(action)}`);
  }
  const type = typeArg(op, p.type);
  const crkey = key(op, 'key', p.key);
  let prkey = 0n;
  if (action === 'acquire') {
    if (p.preemptKey !== undefined) key(op, 'preemptKey', p.preemptKey);
  } else {
    if (p.preemptKey === undefined) throw new InvalidArgumentError(`${op}: preemptKey (the key of the registrants to preempt) is required to ${action}`);
    prkey = key(op, 'preemptKey', p.preemptKey);
  }
  requireReservations(ns, op, type);
  if (!ns.notificationsEnabled) await enableReservationNotifications(ns, opts);
  await ns.io(resv.reservationAcquire({ nsid: ns.nsid, action, type, crkey, prkey }), submitOpts(opts));
}

/** Reservation Release: release the reservation, or clear it together with every registration. */
export async function reservationRelease(ns: ReservationNamespace, p: ReservationReleaseParams, opts?: ReservationCommandOptions): Promise<void> {
  const op = 'reservationRelease';
  params(op, p);
  const action = p.action;
  if (action !== 'release' && action !== 'clear') {
    throw new InvalidArgumentError(`${op}: action must be release or clear, got ${describeValue(action)}`);
  }
  let type: ReservationType | undefined;
  if (p.type !== undefined || action === 'release') {
    if (p.type === undefined) throw new InvalidArgumentError(`${op}: type (the type of the reservation held) is required to release`);
    type = typeArg(op, p.type);
  }
  const crkey = key(op, 'key', p.key);
  requireReservations(ns, op, action === 'release' ? type : undefined);
  await ns.io(resv.reservationRelease({ nsid: ns.nsid, action, crkey, ...(type === undefined ? {} : { type }) }), submitOpts(opts));
}

/** Generic status 18h, Host Identifier Inconsistent Format. */

function isHostIdInconsistent(err: unknown): boolean {
  return err instanceof NvmeStatusError && err.sct === StatusCodeType.Generic && err.sc === GenericStatus.HostIdentifierInconsistent;
}

async function readStatus(ns: ReservationNamespace, extended: boolean, opts?: ReservationCommandOptions): Promise<resv.ReservationStatus> {
  // Read the header first, then the whole structure as sized by REGCTL (again if registrants were added meanwhile).
  let length = resv.reservationStatusSize(0, extended);
  let last: resv.ReservationStatus | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const c = await ns.io(resv.reservationReport({ nsid: ns.nsid, length, extended }), submitOpts(opts));
    const data = c.data!.subarray(0, c.received);
    last = resv.parseReservationStatus(data, extended);
    if (last.registrants.length >= last.regctl) return last;
    const want = resv.reservationStatusSize(last.regctl, extended);
    // A controller that returns less than asked cannot be helped by asking again.
    if (want <= length) return last;
    length = want;
  }
  return last!;
}

function registrant(r: resv.RegisteredController): ReservationRegistrant {
  return { cntlid: r.cntlid, hostId: r.hostid.toString('hex'), key: r.rkey, holdsReservation: r.holdsReservation };
}

/** Reservation Report: the generation, reservation type, holder and every registrant of the namespace. */
export async function reservationReport(ns: ReservationNamespace, p: ReservationReportParams = {}, opts?: ReservationCommandOptions): Promise<ReservationReport> {
  const op = 'reservationReport';
  params(op, p);
  const extended = boolArg(op, 'extended', p.extended);
  requireReservations(ns, op);
  let status: resv.ReservationStatus;
  if (extended === undefined) {
    try {
      status = await readStatus(ns, true, opts);
    } catch (err) {
      if (!isHostIdInconsistent(err)) throw err;
      debug('extended reservation report refused with Host Identifier Inconsistent Format; asking for the standard one');
      status = await readStatus(ns, false, opts);
    }
  } else {
    status = await readStatus(ns, extended, opts);
  }
  const registrants = status.registrants.map(registrant);
  const report: ReservationReport = {
    generation: status.gen,
    type: status.type,
    rtype: status.rtype,
    ptpls: status.ptpls,
    extended: status.extended,
    registrants,
  };
  const holder = registrants.find((r) => r.holdsReservation);
  if (holder !== undefined) report.holder = holder;
  return report;
}

// ---------------------------------------------------------------------------------------------
// Notifications

/** Asynchronous event that announces a Reservation Notification log page: type 6 (I/O command specific), info 0, LID 80h. */
export const RESERVATION_LOG_AEN = { type: 6, info: 0, lid: LogPageId.ReservationNotification } as const;

/** True when an AER completion (type/info/lid) announces a Reservation Notification log page. */
export function isReservationLogAen(e: { type: number; info: number; lid: number }): boolean {
  return e.type === RESERVATION_LOG_AEN.type && e.info === RESERVATION_LOG_AEN.info && e.lid === RESERVATION_LOG_AEN.lid;
}

/**
 * Read and consume every pending Reservation Notification log page and decode them. `readPage` reads the 64-byte
 * page (LID 80h) with RAE cleared, so the controller re-arms the event. Pages are read until the controller returns
 * an empty one (at most `max`), since targets differ in how they fill NALP; a failed read ends the loop and is
 * reported through `onError`.
 */
export async function readReservationNotifications(
  readPage: () => Promise<Buffer>,
  opts: { max?: number; onError?: (err: Error) => void } = {},
): Promise<ReservationNotification[]> {
  const max = opts.max ?? 256;
  const out: ReservationNotification[] = [];
  for (let i = 0; i < max; i++) {
    let log: ReservationNotificationLog;
    try {
      const data = await readPage();
      if (data.length < RESERVATION_NOTIFICATION_LOG_SIZE) break;
      log = parseReservationNotificationLog(data.subarray(0, RESERVATION_NOTIFICATION_LOG_SIZE));
    } catch (err) {
      opts.onError?.(err as Error);
      break;
    }
    if (log.rnlpt === 0 || log.lpc === 0n) break;
    if (log.rnlptName === 'reserved' || log.rnlptName === 'empty') {
      debug('reservation notification log page with unknown type %d ignored', log.rnlpt);
      continue;
    }
    out.push({ type: 'reservation', nsid: log.nsid, notification: log.rnlptName, logPageCount: log.lpc, log });
  }
  return out;
}
