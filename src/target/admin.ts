/**
 * Admin command handlers of the embedded target: Identify, Get Log Page, Get/Set Features,
 * Asynchronous Event Request, Keep Alive and Abort.
 */
import { Buffer } from 'node:buffer';
import {
  AdminOpcode,
  Cns,
  FeatureId,
  GenericStatus,
  IDENTIFY_DATA_SIZE,
  LogPageId,
  NSID_ALL,
  StatusCodeType,
  AdminCommandStatus,
} from '../protocol/constants.js';
import {
  ControllerType,
  NsIdType,
  encodeIdentifyController,
  encodeIdentifyNamespace,
  encodeNamespaceList,
  encodeNsIdDescriptors,
} from '../protocol/identify.js';
import { encodeAnaLog, encodeChangedNsList, encodeErrorLog, encodeSmartLog } from '../protocol/logpages.js';
import { dw, fail, ok, okData, status, type Cmd, type CommandResult, type HandlerResult } from './command.js';
import { AERL, ERROR_LOG_ENTRIES, type TargetController } from './controller.js';
import type { TargetCore } from './core.js';
import { RESCAP } from './reservations.js';

const Sct = StatusCodeType;
const invalidField = (): CommandResult => fail(Sct.Generic, GenericStatus.InvalidField);
const invalidNs = (): CommandResult => fail(Sct.Generic, GenericStatus.InvalidNamespaceOrFormat);
const invalidLogPage = (): CommandResult => fail(Sct.CommandSpecific, AdminCommandStatus.InvalidLogPage);
const notSaveable = (): CommandResult => fail(Sct.CommandSpecific, AdminCommandStatus.FeatureIdentifierNotSaveable);

/** Controller-to-host data of exactly the command's transfer length (zero padded or cut). */
function dataFor(cmd: Cmd, src: Buffer): CommandResult {
  if (cmd.length === src.length) return okData(src);
  const out = Buffer.alloc(cmd.length);
  src.copy(out, 0, 0, Math.min(src.length, cmd.length));
  return okData(out);
}

/** Handle an admin command (not Fabrics) for a connected controller. */
export function handleAdmin(cmd: Cmd, ctrl: TargetController, core: TargetCore): HandlerResult {
  const op = cmd.opcode;
  if (op === AdminOpcode.KeepAlive) {
    ctrl.touch();
    return ok();
  }
  if (!ctrl.ready) return fail(Sct.Generic, GenericStatus.CommandSequenceError);
  switch (op) {
    case AdminOpcode.Identify: return identify(cmd, ctrl, core);
    case AdminOpcode.GetLogPage: return getLogPage(cmd, ctrl, core);
    case AdminOpcode.SetFeatures: return setFeatures(cmd, ctrl, core);
    case AdminOpcode.GetFeatures: return getFeatures(cmd, ctrl, core);
    case AdminOpcode.AsyncEventRequest: return ctrl.addAer(cmd);
    case AdminOpcode.Abort: return ctrl.discovery ? fail(Sct.Generic, GenericStatus.InvalidOpcode) : abort(cmd, ctrl);
    default: return fail(Sct.Generic, GenericStatus.InvalidOpcode);
  }
}

// ---------------------------------------------------------------------------------------------
// Identify

function identify(cmd: Cmd, ctrl: TargetController, core: TargetCore): CommandResult {
  const cdw10 = dw(cmd.sqe, 40);
  const cns = cdw10 & 0xff;
  const csi = dw(cmd.sqe, 44) >>> 24;
  if (cmd.length !== IDENTIFY_DATA_SIZE) return fail(Sct.Generic, GenericStatus.SglDataLengthInvalid);
  if (cns === Cns.Controller) return okData(identifyController(ctrl, core));
  const subsys = ctrl.subsystem;
  if (subsys === undefined) return invalidField();
  const nsid = cmd.nsid;
  switch (cns) {
    case Cns.Namespace: {
      if (nsid === 0 || nsid === NSID_ALL || nsid > core.options.maxNamespaces) return invalidNs();
      const ns = subsys.namespace(nsid);
      // An inactive NSID in range reads as zeroes.
      if (ns === undefined) return okData(Buffer.alloc(IDENTIFY_DATA_SIZE));
      const blocks = BigInt(ns.blocks);
      return okData(encodeIdentifyNamespace({
        nsze: blocks,
        ncap: blocks,
        nuse: blocks,
        nsfeat: 0,
        flbas: 0,
        lbaf: [{ ms: 0, lbads: ns.blockSize === 4096 ? 12 : 9, rp: 0 }],
        nmic: 1,
        // Deallocated blocks read as zeroes; Write Zeroes may deallocate.
        dlfeat: 0x09,
        nvmcap: BigInt(ns.sizeBytes),
        anagrpid: subsys.ana ? ns.anaGroup : 0,
        rescap: RESCAP,
        nsattr: ns.readOnly ? 1 : 0,
        nguid: ns.nguid,
        ...(ns.eui64 === undefined ? {} : { eui64: ns.eui64 }),
      }));
    }
    case Cns.ActiveNamespaceList: {
      if (nsid >= 0xfffffffe) return invalidNs();
      const ids = subsys.namespaces().map((n) => n.nsid).filter((id) => id > nsid).slice(0, 1024);
      return okData(encodeNamespaceList(ids));
    }
    case Cns.NamespaceIdDescriptors: {
      const ns = subsys.namespace(nsid);
      if (ns === undefined) return invalidNs();
      const descs: { nidt: number; value: Uint8Array }[] = [];
      if (ns.eui64 !== undefined) descs.push({ nidt: NsIdType.Eui64, value: ns.eui64 });
      descs.push({ nidt: NsIdType.Nguid, value: ns.nguid }, { nidt: NsIdType.Uuid, value: ns.uuid }, { nidt: NsIdType.Csi, value: Buffer.from([0]) });
      return okData(encodeNsIdDescriptors(descs));
    }
    case Cns.CsController:
      // I/O Command Set specific Identify Controller for the NVM command set: nothing to report.
      return csi === 0 ? okData(Buffer.alloc(IDENTIFY_DATA_SIZE)) : invalidField();
    default:
      return invalidField();
  }
}

/** Identify Controller data for `ctrl`. */
export function identifyController(ctrl: TargetController, core: TargetCore): Buffer {
  const o = core.options;
  const subsys = ctrl.subsystem;
  const common = {
    sn: subsys?.serial ?? core.discoverySerial,
    mn: subsys?.model ?? 'nvmeof discovery',
    fr: o.firmware,
    rab: 6,
    mdts: o.mdts,
    cntlid: ctrl.cntlid,
    ver: ctrl.vs,
    oaes: ctrl.oaes >>> 0,
    ctratt: 1 | (o.trafficBasedKeepAlive ? 1 << 6 : 0),
    aerl: AERL,
    lpa: 0x04,
    elpe: ERROR_LOG_ENTRIES - 1,
    kas: o.kas,
    sqes: 0x66,
    cqes: 0x44,
    // MAXCMD is 16 bits: MQES 0xffff (65536 entries) cannot be expressed; report the largest value that fits.
    maxcmd: Math.min(o.mqes + 1, 0xffff),
    // SGLs supported, SGL offsets (in-capsule data), Transport SGL Data Block descriptors.
    sgls: (1 | (1 << 20) | (1 << 21)) >>> 0,
    subnqn: ctrl.subnqn,
    msdbd: 1,
    ofcs: 1,
  };
  if (subsys === undefined) return encodeIdentifyController({ ...common, cntrltype: ControllerType.Discovery });
  return encodeIdentifyController({
    ...common,
    cmic: 0x03 | (subsys.ana ? 0x08 : 0),
    cntrltype: ControllerType.Io,
    acl: 3,
    frmw: 0x03,
    wctemp: 343,
    cctemp: 358,
    ...(subsys.ana ? { anatt: o.anatt, anacap: 0x1f | 0x40, anagrpmax: o.anaGroupMax, nanagrpid: o.anaGroupMax } : {}),
    nn: o.maxNamespaces,
    mnan: o.maxNamespaces,
    // Compare, Dataset Management, Write Zeroes, Reservations, Verify.
    oncs: 0x01 | 0x04 | 0x08 | 0x20 | 0x80,
    ioccsz: (o.inCapsuleDataSize + 64) / 16,
    iorcsz: 1,
  });
}

// ---------------------------------------------------------------------------------------------
// Get Log Page

function getLogPage(cmd: Cmd, ctrl: TargetController, core: TargetCore): CommandResult {
  const cdw10 = dw(cmd.sqe, 40);
  const cdw11 = dw(cmd.sqe, 44);
  const lid = cdw10 & 0xff;
  const lsp = (cdw10 >>> 8) & 0x7f;
  const rae = ((cdw10 >>> 15) & 1) === 1;
  const numd = (cdw11 & 0xffff) * 0x10000 + (cdw10 >>> 16) + 1;
  const length = numd * 4;
  const offset = dw(cmd.sqe, 48) + dw(cmd.sqe, 52) * 0x1_0000_0000;
  if (length !== cmd.length) return fail(Sct.Generic, GenericStatus.SglDataLengthInvalid);
  let log: Buffer;
  if (ctrl.discovery) {
    if (lid !== LogPageId.Discovery) return invalidLogPage();
    log = core.discoveryLog(ctrl, cmd.conn.localAddress);
    if (!rae) ctrl.unmask(LogPageId.Discovery);
  } else {
    const subsys = ctrl.subsystem!;
    switch (lid) {
      case LogPageId.ErrorInformation: {
        const entries = ctrl.errorEntries();
        log = Buffer.alloc(ERROR_LOG_ENTRIES * 64);
        encodeErrorLog(entries.length > 0 ? entries : [{}]).copy(log);
        break;
      }
      case LogPageId.SmartHealth: {
        const s = subsys.stats;
        const hours = BigInt(Math.floor((Date.now() - core.startedAt) / 3_600_000));
        log = encodeSmartLog({
          temperature: 313,
          availSpare: 100,
          spareThresh: 10,
          percentUsed: 0,
          dataUnitsRead: (s.bytesRead / 512n + 999n) / 1000n,
          dataUnitsWritten: (s.bytesWritten / 512n + 999n) / 1000n,
          hostReads: s.hostReads,
          hostWrites: s.hostWrites,
          powerCycles: 1n,
          powerOnHours: hours,
        });
        break;
      }
      case LogPageId.FirmwareSlot: {
        log = Buffer.alloc(512);
        log[0] = 1; // active firmware in slot 1
        log.write(core.options.firmware.padEnd(8, ' '), 8, 'latin1');
        break;
      }
      case LogPageId.ChangedNamespaceList:
        log = encodeChangedNsList(ctrl.takeChangedNamespaces(rae));
        break;
      case LogPageId.ReservationNotification:
        log = ctrl.takeReservationNotice(rae);
        break;
      case LogPageId.Ana: {
        if (!subsys.ana) return invalidLogPage();
        const portid = ctrl.port.portid;
        const rgo = (lsp & 1) === 1;
        const nss = subsys.namespaces();
        const groups = subsys.anaGroups(portid).map((g) => ({
          anagrpid: g,
          chgcnt: subsys.groupChgcnt.get(g) ?? 0n,
          state: subsys.anaState(portid, g),
          nsids: nss.filter((n) => n.anaGroup === g).map((n) => n.nsid),
        }));
        log = encodeAnaLog({ chgcnt: subsys.anaChgcnt, groups }, { rgo });
        if (!rae) ctrl.unmask(LogPageId.Ana);
        break;
      }
      default:
        return invalidLogPage();
    }
  }
  if (offset > log.length) return invalidField();
  return dataFor(cmd, log.subarray(offset));
}

// ---------------------------------------------------------------------------------------------
// Features

/** Features stored as plain values, with their defaults. */
const STORED_FEATURES = new Map<number, number>([
  [FeatureId.Arbitration, 0],
  [FeatureId.PowerManagement, 0],
  [FeatureId.TemperatureThreshold, 343],
  [FeatureId.ErrorRecovery, 0],
  [FeatureId.InterruptCoalescing, 0],
  [FeatureId.InterruptVectorConfiguration, 0],
  [FeatureId.WriteAtomicityNormal, 0],
]);

function queuesDw0(n: number): number {
  return (((n - 1) << 16) | (n - 1)) >>> 0;
}

function setFeatures(cmd: Cmd, ctrl: TargetController, core: TargetCore): CommandResult {
  const cdw10 = dw(cmd.sqe, 40);
  const cdw11 = dw(cmd.sqe, 44);
  const fid = cdw10 & 0xff;
  const save = cdw10 >>> 31 === 1;
  if (ctrl.discovery && fid !== FeatureId.AsyncEventConfiguration && fid !== FeatureId.KeepAliveTimer) return invalidField();
  switch (fid) {
    case FeatureId.NumberOfQueues: {
      const nsqr = cdw11 & 0xffff;
      const ncqr = cdw11 >>> 16;
      if (nsqr === 0xffff || ncqr === 0xffff) return invalidField();
      if (save) return notSaveable();
      const max = core.options.maxIoQueues;
      const nsqa = Math.min(nsqr + 1, max);
      const ncqa = Math.min(ncqr + 1, max);
      ctrl.ioQueuesGranted = Math.min(nsqa, ncqa);
      return ok((((ncqa - 1) << 16) | (nsqa - 1)) >>> 0);
    }
    case FeatureId.AsyncEventConfiguration:
      if (save) return notSaveable();
      ctrl.aec = cdw11 >>> 0;
      return ok();
    case FeatureId.KeepAliveTimer:
      if (save) return notSaveable();
      ctrl.kato = cdw11;
      ctrl.startKeepAlive();
      return ok();
    case FeatureId.HostIdentifier:
      return fail(Sct.Generic, GenericStatus.CommandSequenceError);
    case FeatureId.ReservationNotificationMask: {
      if (save) return notSaveable();
      const nsid = cmd.nsid;
      if (nsid === NSID_ALL) {
        ctrl.resvMasks.clear();
        ctrl.resvMasks.set(NSID_ALL, cdw11 & 0xe);
        return ok();
      }
      if (ctrl.subsystem?.namespace(nsid) === undefined) return invalidNs();
      ctrl.resvMasks.set(nsid, cdw11 & 0xe);
      return ok();
    }
    case FeatureId.PowerManagement:
      // Only power state 0 exists (NPSS = 0).
      if ((cdw11 & 0x1f) !== 0) return invalidField();
      break;
    default:
      break;
  }
  if (!STORED_FEATURES.has(fid)) return invalidField();
  if (save) return notSaveable();
  ctrl.features.set(fid, cdw11);
  return ok();
}

function getFeatures(cmd: Cmd, ctrl: TargetController, core: TargetCore): CommandResult {
  const cdw10 = dw(cmd.sqe, 40);
  const cdw11 = dw(cmd.sqe, 44);
  const fid = cdw10 & 0xff;
  const sel = (cdw10 >>> 8) & 0x7;
  if (sel > 3) return invalidField();
  if (ctrl.discovery && fid !== FeatureId.AsyncEventConfiguration && fid !== FeatureId.KeepAliveTimer) return invalidField();
  const current = sel === 0;
  // SEL 3: capabilities; every supported feature is changeable (bit 2), none saveable or namespace specific.
  const capabilities = (changeable: boolean): CommandResult => ok(changeable ? 0x4 : 0);
  switch (fid) {
    case FeatureId.NumberOfQueues: {
      if (sel === 3) return capabilities(true);
      const n = current ? (ctrl.ioQueuesGranted ?? core.options.maxIoQueues) : core.options.maxIoQueues;
      return ok(queuesDw0(n));
    }
    case FeatureId.AsyncEventConfiguration:
      if (sel === 3) return capabilities(true);
      return ok(current ? ctrl.aec >>> 0 : 0);
    case FeatureId.KeepAliveTimer:
      if (sel === 3) return capabilities(true);
      return ok(current ? ctrl.kato : 0);
    case FeatureId.ReservationNotificationMask: {
      // Namespace specific (bit 1) and changeable (bit 2).
      if (sel === 3) return ok(0x6);
      const nsid = cmd.nsid;
      if (nsid === NSID_ALL || ctrl.subsystem?.namespace(nsid) === undefined) return invalidNs();
      return ok(current ? (ctrl.resvMasks.get(nsid) ?? ctrl.resvMasks.get(NSID_ALL) ?? 0) : 0);
    }
    case FeatureId.HostIdentifier: {
      if (sel === 3) return capabilities(false);
      // Only the 128-bit host identifier (EXHID) exists over fabrics.
      if ((cdw11 & 1) === 0) return invalidField();
      if (cmd.length < 16) return fail(Sct.Generic, GenericStatus.SglDataLengthInvalid);
      return dataFor(cmd, ctrl.hostidBytes);
    }
    default: {
      const def = STORED_FEATURES.get(fid);
      if (def === undefined) return invalidField();
      if (sel === 3) return capabilities(true);
      return ok(current ? (ctrl.features.get(fid) ?? def) : def);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Abort

function abort(cmd: Cmd, ctrl: TargetController): CommandResult {
  const cdw10 = dw(cmd.sqe, 40);
  const sqid = cdw10 & 0xffff;
  const cid = cdw10 >>> 16;
  const conn = ctrl.queues.get(sqid);
  const victim = conn?.findAbortable(cid);
  if (victim === undefined || victim === cmd) return ok(1);
  if (sqid === 0) ctrl.removeAer(victim);
  victim.faults = [];
  victim.conn.complete(victim, { status: status(Sct.Generic, GenericStatus.AbortRequested, false) }, true);
  return ok(0);
}

