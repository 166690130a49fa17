/**
 * NVM command set I/O handlers of the embedded target: Read, Write, Compare, Flush, Write Zeroes,
 * Dataset Management and Verify, with namespace, ANA, range and transfer length checks.
 */
import { Buffer } from 'node:buffer';
import { AnaState } from '../protocol/ana.js';
import { GenericStatus, MediaStatus, NSID_ALL, NvmOpcode, PathStatus, StatusCodeType } from '../protocol/constants.js';
import { dw, fail, ok, okData, type Cmd, type CommandResult } from './command.js';
import type { TargetController } from './controller.js';
import type { TargetNamespace } from './subsystem.js';
import { handleReservation, reservationConflict, type ReservationNotifier } from './reservations.js';

const Sct = StatusCodeType;

const KNOWN = new Set<number>([
  NvmOpcode.Flush, NvmOpcode.Write, NvmOpcode.Read, NvmOpcode.Compare, NvmOpcode.WriteZeroes, NvmOpcode.DatasetManagement, NvmOpcode.Verify,
  NvmOpcode.ReservationRegister, NvmOpcode.ReservationReport, NvmOpcode.ReservationAcquire, NvmOpcode.ReservationRelease,
]);

const RESERVATION_OPCODES = new Set<number>([
  NvmOpcode.ReservationRegister, NvmOpcode.ReservationReport, NvmOpcode.ReservationAcquire, NvmOpcode.ReservationRelease,
]);

/** The namespace of an I/O command, or the status explaining why it cannot be used through this controller. */
function namespaceFor(cmd: Cmd, ctrl: TargetController): TargetNamespace | CommandResult {
  const subsys = ctrl.subsystem!;
  const ns = subsys.namespace(cmd.nsid);
  if (ns === undefined) return fail(Sct.Generic, GenericStatus.InvalidNamespaceOrFormat);
  if (subsys.ana) {
    const state = subsys.anaState(ctrl.port, ns.anaGroup);
    if (state === AnaState.Inaccessible) return fail(Sct.PathRelated, PathStatus.AsymmetricAccessInaccessible, false);
    if (state === AnaState.PersistentLoss) return fail(Sct.PathRelated, PathStatus.AsymmetricAccessPersistentLoss, false);
    if (state === AnaState.Change) return fail(Sct.PathRelated, PathStatus.AsymmetricAccessTransition, false);
  }
  if (!ns.ready) return fail(Sct.Generic, GenericStatus.NamespaceNotReady, false);
  if (!RESERVATION_OPCODES.has(cmd.opcode) && reservationConflict(ns, ctrl.hostid, cmd.opcode)) {
    return fail(Sct.Generic, GenericStatus.ReservationConflict);
  }
  return ns;
}

interface Range {
  ns: TargetNamespace;
  /** Byte offset in the namespace. */
  offset: number;
  /** Byte length. */
  bytes: number;
}

/** Validate an LBA-range command (SLBA in CDW10/11, NLB in CDW12). */
function rangeFor(cmd: Cmd, ctrl: TargetController, maxTransfer: number, transfers: boolean): Range | CommandResult {
  const ns = namespaceFor(cmd, ctrl);
  if (isResult(ns)) return ns;
  const slba = dw(cmd.sqe, 40) + dw(cmd.sqe, 44) * 0x1_0000_0000;
  const nlb = (dw(cmd.sqe, 48) & 0xffff) + 1;
  if (slba + nlb > ns.blocks) return fail(Sct.Generic, GenericStatus.LbaOutOfRange);
  const bytes = nlb * ns.blockSize;
  if (transfers) {
    if (bytes > maxTransfer) return fail(Sct.Generic, GenericStatus.InvalidField);
    if (cmd.length !== bytes) return fail(Sct.Generic, GenericStatus.SglDataLengthInvalid);
  }
  return { ns, offset: slba * ns.blockSize, bytes };
}

function isResult(v: Range | TargetNamespace | CommandResult): v is CommandResult {
  return 'status' in v;
}

const writeProtected = (): CommandResult => fail(Sct.Generic, GenericStatus.NamespaceWriteProtected);

/**
 * Checks to run before asking the host for the data of a write-type command (R2T), so that a
 * command that will fail does not move its data first.
 */
export function ioPrecheck(cmd: Cmd, ctrl: TargetController, maxTransfer: number): CommandResult | undefined {
  switch (cmd.opcode) {
    case NvmOpcode.Write:
    case NvmOpcode.Compare: {
      const r = rangeFor(cmd, ctrl, maxTransfer, true);
      if (isResult(r)) return r;
      if (cmd.opcode === NvmOpcode.Write && r.ns.readOnly) return writeProtected();
      return undefined;
    }
    case NvmOpcode.DatasetManagement:
    case NvmOpcode.ReservationRegister:
    case NvmOpcode.ReservationAcquire:
    case NvmOpcode.ReservationRelease: {
      const ns = namespaceFor(cmd, ctrl);
      return isResult(ns) ? ns : undefined;
    }
    default:
      return KNOWN.has(cmd.opcode) ? undefined : fail(Sct.Generic, GenericStatus.InvalidOpcode);
  }
}

/** Execute an NVM I/O command. */
export function handleIo(cmd: Cmd, ctrl: TargetController, maxTransfer: number, notify: ReservationNotifier): CommandResult {
  if (!ctrl.ready) return fail(Sct.Generic, GenericStatus.CommandSequenceError);
  const stats = ctrl.subsystem!.stats;
  switch (cmd.opcode) {
    case NvmOpcode.Read: {
      const r = rangeFor(cmd, ctrl, maxTransfer, true);
      if (isResult(r)) return r;
      stats.hostReads++;
      stats.bytesRead += BigInt(r.bytes);
      return okData(r.ns.store.read(r.offset, r.bytes));
    }
    case NvmOpcode.Write: {
      const r = rangeFor(cmd, ctrl, maxTransfer, true);
      if (isResult(r)) return r;
      if (r.ns.readOnly) return writeProtected();
      r.ns.store.write(r.offset, cmd.data ?? Buffer.alloc(0));
      stats.hostWrites++;
      stats.bytesWritten += BigInt(r.bytes);
      return ok();
    }
    case NvmOpcode.Compare: {
      const r = rangeFor(cmd, ctrl, maxTransfer, true);
      if (isResult(r)) return r;
      stats.hostReads++;
      return r.ns.store.equals(r.offset, cmd.data ?? Buffer.alloc(0)) ? ok() : fail(Sct.MediaAndDataIntegrity, MediaStatus.CompareFailure);
    }
    case NvmOpcode.WriteZeroes: {
      const r = rangeFor(cmd, ctrl, maxTransfer, false);
      if (isResult(r)) return r;
      if (r.ns.readOnly) return writeProtected();
      r.ns.store.zero(r.offset, r.bytes);
      return ok();
    }
    case NvmOpcode.Verify: {
      const r = rangeFor(cmd, ctrl, maxTransfer, false);
      return isResult(r) ? r : ok();
    }
    case NvmOpcode.Flush: {
      if (cmd.nsid === NSID_ALL) return ok();
      const ns = namespaceFor(cmd, ctrl);
      return isResult(ns) ? ns : ok();
    }
    case NvmOpcode.DatasetManagement:
      return datasetManagement(cmd, ctrl);
    case NvmOpcode.ReservationRegister:
    case NvmOpcode.ReservationReport:
    case NvmOpcode.ReservationAcquire:
    case NvmOpcode.ReservationRelease: {
      const ns = namespaceFor(cmd, ctrl);
      return isResult(ns) ? ns : handleReservation(cmd, ctrl, ns, notify);
    }
    default:
      return fail(Sct.Generic, GenericStatus.InvalidOpcode);
  }
}

function datasetManagement(cmd: Cmd, ctrl: TargetController): CommandResult {
  const ns = namespaceFor(cmd, ctrl);
  if (isResult(ns)) return ns;
  const nr = (dw(cmd.sqe, 40) & 0xff) + 1;
  const deallocate = (dw(cmd.sqe, 44) & 0x4) !== 0;
  const data = cmd.data;
  if (data === null || data.length < nr * 16) return fail(Sct.Generic, GenericStatus.SglDataLengthInvalid);
  if (!deallocate) return ok();
  if (ns.readOnly) return writeProtected();
  const ranges: [number, number][] = [];
  for (let i = 0; i < nr; i++) {
    const nlb = data.readUInt32LE(i * 16 + 4);
    const slba = Number(data.readBigUInt64LE(i * 16 + 8));
    if (slba + nlb > ns.blocks) return fail(Sct.Generic, GenericStatus.LbaOutOfRange);
    ranges.push([slba, nlb]);
  }
  // Deallocated blocks read as zeroes (DLFEAT).
  for (const [slba, nlb] of ranges) ns.store.zero(slba * ns.blockSize, nlb * ns.blockSize);
  return ok();
}
