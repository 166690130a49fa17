/**
 * Persistent reservations of the embedded target (NVM Command Set, "Reservations"): Register, Acquire,
 * Release and Report, the access rules I/O commands are checked against, and the notifications other
 * hosts receive. Reservations belong to a namespace and are held per host (host identifier), so every
 * controller of a host shares its registration. Persist Through Power Loss is not supported.
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import { GenericStatus, NvmOpcode, StatusCodeType } from '../protocol/constants.js';
import { ReservationNotificationType } from '../protocol/logpages.js';
import {
  decodeReservationAcquire,
  decodeReservationRegister,
  decodeReservationRelease,
  decodeReservationReport,
  encodeReservationStatus,
} from '../protocol/reservations.js';
import { dw, fail, ok, okData, type Cmd, type CommandResult } from './command.js';
import type { TargetController } from './controller.js';
import type { TargetNamespace } from './subsystem.js';

const Sct = StatusCodeType;

/** RTYPE values. */
const WriteExclusive = 1;
const ExclusiveAccess = 2;
const WriteExclusiveRegistrantsOnly = 3;
const ExclusiveAccessRegistrantsOnly = 4;
const WriteExclusiveAllRegistrants = 5;
const ExclusiveAccessAllRegistrants = 6;

/** Identify Namespace RESCAP: every reservation type and Ignore Existing Key (no Persist Through Power Loss). */
export const RESCAP = 0xfe;

/** One registered host. */
export interface Registrant {
  /** Host identifier (UUID form). */
  hostid: string;
  /** Host identifier, 16 bytes. */
  hostidBytes: Buffer;
  key: bigint;
  /** Controller that registered (reported while it lives). */
  cntlid: number;
}

/** Reservation state of one namespace. */
export class ReservationState {
  /** Generation: counts registrations, preemptions and clears. */
  gen = 0;
  /** RTYPE held (0: none). */
  rtype = 0;
  /** Host holding the reservation (types 1..4). */
  holder: string | undefined;
  readonly registrants = new Map<string, Registrant>();

  /** Whether `hostid` holds the reservation (every registrant does for the all-registrants types). */
  holds(hostid: string): boolean {
    if (this.rtype === 0) return false;
    if (this.rtype === WriteExclusiveAllRegistrants || this.rtype === ExclusiveAccessAllRegistrants) return this.registrants.has(hostid);
    return this.holder === hostid;
  }

  private bump(): void {
    this.gen = (this.gen + 1) >>> 0;
  }

  private clearReservation(): void {
    this.rtype = 0;
    this.holder = undefined;
  }

  /** @internal */
  register(r: Registrant): void {
    this.registrants.set(r.hostid, r);
    this.bump();
  }

  /** @internal Remove registrants; returns their host IDs. The reservation goes with its holder. */
  unregister(hostids: Iterable<string>): string[] {
    const gone: string[] = [];
    for (const h of hostids) {
      if (!this.registrants.delete(h)) continue;
      gone.push(h);
      if (this.holder === h) this.clearReservation();
    }
    if ((this.rtype === WriteExclusiveAllRegistrants || this.rtype === ExclusiveAccessAllRegistrants) && this.registrants.size === 0) this.clearReservation();
    if (gone.length > 0) this.bump();
    return gone;
  }

  /** @internal */
  take(hostid: string, rtype: number): void {
    this.rtype = rtype;
    this.holder = hostid;
  }

  /** @internal Release (no generation change). */
  release(): void {
    this.clearReservation();
  }

  /** @internal Clear: every registration and the reservation. */
  clear(): string[] {
    const all = [...this.registrants.keys()];
    this.registrants.clear();
    this.clearReservation();
    this.bump();
    return all;
  }
}

/** Whether an I/O command conflicts with the namespace's reservation for this host. */
export function reservationConflict(ns: TargetNamespace, hostid: string, opcode: number): boolean {
  const s = ns.reservation;
  if (s.rtype === 0 || s.holds(hostid)) return false;
  const write = opcode !== NvmOpcode.Read && opcode !== NvmOpcode.Compare && opcode !== NvmOpcode.Verify;
  const registered = s.registrants.has(hostid);
  switch (s.rtype) {
    case WriteExclusive: return write;
    case ExclusiveAccess: return true;
    case WriteExclusiveRegistrantsOnly:
    case WriteExclusiveAllRegistrants: return write && !registered;
    case ExclusiveAccessRegistrantsOnly:
    case ExclusiveAccessAllRegistrants: return !registered;
    default: return false;
  }
}

const conflict = (): CommandResult => fail(Sct.Generic, GenericStatus.ReservationConflict);
const invalidField = (): CommandResult => fail(Sct.Generic, GenericStatus.InvalidField);

/** Sends notifications to the controllers of the given hosts (every controller of the subsystem). */
export type ReservationNotifier = (hostids: readonly string[], rnlpt: number, nsid: number) => void;

/** Execute a reservation command (Register, Report, Acquire, Release) on `ns`. */
export function handleReservation(cmd: Cmd, ctrl: TargetController, ns: TargetNamespace, notify: ReservationNotifier): CommandResult {
  const s = ns.reservation;
  const me = ctrl.hostid;
  const cdw10 = dw(cmd.sqe, 40);
  try {
    switch (cmd.opcode) {
      case NvmOpcode.ReservationRegister: {
        const r = decodeReservationRegister(cdw10, cmd.data);
        if (r.action === undefined || (r.cptpl !== 0 && r.cptpl !== 2)) return invalidField();
        const reg = s.registrants.get(me);
        switch (r.action) {
          case 'register':
            if (r.nrkey === 0n) return invalidField();
            if (reg !== undefined) return reg.key === r.nrkey ? ok() : conflict();
            s.register({ hostid: me, hostidBytes: ctrl.hostidBytes, key: r.nrkey, cntlid: ctrl.cntlid });
            return ok();
          case 'unregister': {
            if (reg === undefined || (!r.iekey && reg.key !== r.crkey)) return conflict();
            const rtype = s.rtype;
            const held = s.holds(me) && rtype !== WriteExclusiveAllRegistrants && rtype !== ExclusiveAccessAllRegistrants;
            s.unregister([me]);
            if (held && (rtype === WriteExclusiveRegistrantsOnly || rtype === ExclusiveAccessRegistrantsOnly)) {
              notify([...s.registrants.keys()], ReservationNotificationType.ReservationReleased, ns.nsid);
            }
            return ok();
          }
          case 'replace':
            if (r.nrkey === 0n) return invalidField();
            if (reg !== undefined) {
              if (!r.iekey && reg.key !== r.crkey) return conflict();
              if (reg.key !== r.nrkey) s.register({ ...reg, key: r.nrkey, cntlid: ctrl.cntlid });
              return ok();
            }
            if (!r.iekey) return conflict();
            s.register({ hostid: me, hostidBytes: ctrl.hostidBytes, key: r.nrkey, cntlid: ctrl.cntlid });
            return ok();
        }
        return invalidField();
      }
      case NvmOpcode.ReservationAcquire: {
        const a = decodeReservationAcquire(cdw10, cmd.data);
        if (a.action === undefined) return invalidField();
        const reg = s.registrants.get(me);
        if (reg === undefined || (!a.iekey && reg.key !== a.crkey)) return conflict();
        if (a.rtype < 1 || a.rtype > 6) return invalidField();
        if (a.action === 'acquire') {
          if (s.rtype === 0) {
            s.take(me, a.rtype);
            return ok();
          }
          return s.holds(me) && s.rtype === a.rtype ? ok() : conflict();
        }
        // Preempt (and abort: nothing is in flight here, commands run to completion as they arrive).
        const others = (key: bigint) => [...s.registrants.values()].filter((x) => x.hostid !== me && x.key === key).map((x) => x.hostid);
        let removed: string[];
        if (s.rtype === WriteExclusiveAllRegistrants || s.rtype === ExclusiveAccessAllRegistrants) {
          if (a.prkey === 0n) {
            removed = s.unregister([...s.registrants.keys()].filter((h) => h !== me));
            s.take(me, a.rtype);
          } else {
            removed = s.unregister(others(a.prkey));
            if (removed.length === 0) return conflict();
          }
        } else if (s.rtype !== 0 && s.holder !== undefined && s.registrants.get(s.holder)?.key === a.prkey) {
          const before = s.gen;
          removed = s.unregister(others(a.prkey));
          s.take(me, a.rtype);
          if (s.gen === before) s.gen = (s.gen + 1) >>> 0;
        } else {
          if (a.prkey === 0n) return invalidField();
          removed = s.unregister(others(a.prkey));
          if (removed.length === 0) return conflict();
        }
        notify(removed, ReservationNotificationType.RegistrationPreempted, ns.nsid);
        return ok();
      }
      case NvmOpcode.ReservationRelease: {
        const r = decodeReservationRelease(cdw10, cmd.data);
        if (r.action === undefined) return invalidField();
        const reg = s.registrants.get(me);
        if (reg === undefined || (!r.iekey && reg.key !== r.crkey)) return conflict();
        if (r.action === 'clear') {
          const all = s.clear().filter((h) => h !== me);
          notify(all, ReservationNotificationType.ReservationPreempted, ns.nsid);
          return ok();
        }
        if (s.rtype === 0 || !s.holds(me)) return ok();
        if (s.rtype !== r.rtype) return invalidField();
        const rtype = s.rtype;
        s.release();
        if (rtype >= WriteExclusiveRegistrantsOnly) {
          notify([...s.registrants.keys()].filter((h) => h !== me), ReservationNotificationType.ReservationReleased, ns.nsid);
        }
        return ok();
      }
      case NvmOpcode.ReservationReport: {
        const { length, extended } = decodeReservationReport(cdw10, dw(cmd.sqe, 44));
        if (length !== cmd.length) return fail(Sct.Generic, GenericStatus.SglDataLengthInvalid);
        // Host identifiers over fabrics are 128-bit: only the extended data structure can carry them.
        if (!extended) return fail(Sct.Generic, GenericStatus.HostIdentifierInconsistent);
        const live = new Map<string, number>();
        for (const c of ns.subsystem.controllers()) if (!live.has(c.hostid)) live.set(c.hostid, c.cntlid);
        const registrants = [...s.registrants.values()].map((r) => ({
          cntlid: ns.subsystem.controllers().some((c) => c.cntlid === r.cntlid && c.hostid === r.hostid) ? r.cntlid : (live.get(r.hostid) ?? 0xffff),
          holdsReservation: s.holds(r.hostid),
          hostid: r.hostidBytes,
          rkey: r.key,
        }));
        const full = encodeReservationStatus({ gen: s.gen, rtype: s.rtype, registrants }, true);
        if (full.length === length) return okData(full);
        const out = Buffer.alloc(length);
        full.copy(out, 0, 0, Math.min(full.length, length));
        return okData(out);
      }
      default:
        return fail(Sct.Generic, GenericStatus.InvalidOpcode);
    }
  } catch (err) {
    if (err instanceof InvalidArgumentError) return fail(Sct.Generic, GenericStatus.SglDataLengthInvalid);
    throw err;
  }
}
