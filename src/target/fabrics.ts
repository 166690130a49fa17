/**
 * Fabrics command handlers of the embedded target: Connect, Property Get/Set and Disconnect.
 */
import { Buffer } from 'node:buffer';
import { CNTLID_DYNAMIC, CONNECT_DATA_SIZE, ConnectAuthReq, FabricsStatus, FabricsType, GenericStatus, StatusCodeType } from '../protocol/constants.js';
import { DISCOVERY_NQN, formatUuid, readNqnField } from '../protocol/nqn.js';
import { dw, fail, ok, status, type Cmd, type CommandResult } from './command.js';
import type { TargetCore } from './core.js';
import type { TargetSubsystem } from './subsystem.js';
import { QueueAuth } from './auth.js';

const Sct = StatusCodeType;

/** Connect Invalid Parameters with IATTR (1: in the Connect data) and IPO (byte offset). */
function invalidParameter(iattr: 0 | 1, ipo: number): CommandResult {
  return { status: status(Sct.CommandSpecific, FabricsStatus.ConnectInvalidParameters), dw0: ((iattr << 16) | ipo) >>> 0 };
}

/** Handle a Fabrics command (opcode 7Fh). */
export function handleFabrics(cmd: Cmd, core: TargetCore): CommandResult {
  const conn = cmd.conn;
  if (cmd.fctype === FabricsType.Connect) return connect(cmd, core);
  const ctrl = conn.controller;
  if (ctrl === undefined) return fail(Sct.Generic, GenericStatus.CommandSequenceError);
  if (cmd.fctype === FabricsType.AuthSend || cmd.fctype === FabricsType.AuthRecv) {
    // Authentication commands on a queue whose host has no DH-HMAC-CHAP key: Invalid Opcode, as nvmet without a key.
    if (conn.auth === undefined) return fail(Sct.Generic, GenericStatus.InvalidOpcode);
    return cmd.fctype === FabricsType.AuthSend ? conn.auth.send(cmd) : conn.auth.receive(cmd);
  }
  if (conn.auth !== undefined && !conn.auth.authenticated) return fail(Sct.CommandSpecific, FabricsStatus.AuthenticationRequired);
  switch (cmd.fctype) {
    case FabricsType.PropertyGet: {
      if (conn.qid !== 0) return fail(Sct.Generic, GenericStatus.InvalidOpcode);
      const size = (cmd.sqe[40]! & 0x7) === 1 ? 8 : 4;
      const v = ctrl.propertyGet(dw(cmd.sqe, 44), size);
      if (v === undefined) return fail(Sct.Generic, GenericStatus.InvalidField);
      return ok(Number(v & 0xffffffffn), Number(v >> 32n));
    }
    case FabricsType.PropertySet: {
      if (conn.qid !== 0) return fail(Sct.Generic, GenericStatus.InvalidOpcode);
      const size = (cmd.sqe[40]! & 0x7) === 1 ? 8 : 4;
      const value = cmd.sqe.readBigUInt64LE(48);
      return ctrl.propertySet(dw(cmd.sqe, 44), size, size === 4 ? value & 0xffffffffn : value) ? ok() : fail(Sct.Generic, GenericStatus.InvalidField);
    }
    case FabricsType.Disconnect:
      if (conn.qid === 0) return fail(Sct.CommandSpecific, FabricsStatus.InvalidQueueType);
      return { status: 0, closeAfter: true };
    default:
      return fail(Sct.Generic, GenericStatus.InvalidOpcode);
  }
}

function connect(cmd: Cmd, core: TargetCore): CommandResult {
  const conn = cmd.conn;
  const sqe = cmd.sqe;
  if (conn.controller !== undefined) return fail(Sct.CommandSpecific, FabricsStatus.ConnectControllerBusy);
  const data = cmd.data;
  if (data === null || data.length !== CONNECT_DATA_SIZE) return fail(Sct.Generic, GenericStatus.SglDataLengthInvalid);
  const recfmt = sqe.readUInt16LE(40);
  const qid = sqe.readUInt16LE(42);
  const sqsize = sqe.readUInt16LE(44);
  const kato = sqe.readUInt32LE(48);
  if (recfmt !== 0) return fail(Sct.CommandSpecific, FabricsStatus.ConnectIncompatibleFormat);
  const hostidBytes = Buffer.from(data.subarray(0, 16));
  const hostid = formatUuid(hostidBytes);
  const cntlid = data.readUInt16LE(16);
  const subnqn = readNqnField(data, 256);
  const hostnqn = readNqnField(data, 512);
  const port = conn.port;
  const discovery = subnqn === DISCOVERY_NQN;
  const subsys = discovery ? undefined : core.subsystemOnPort(subnqn, port.portid);
  if (!discovery && subsys === undefined) return invalidParameter(1, 256);
  if (subsys !== undefined && !subsys.isHostAllowed(hostnqn)) {
    return { status: status(Sct.CommandSpecific, FabricsStatus.ConnectInvalidHost), dw0: ((1 << 16) | 512) >>> 0 };
  }
  if (sqsize === 0 || sqsize > core.options.mqes) return invalidParameter(0, 44);
  if (qid === 0) {
    if (cntlid !== CNTLID_DYNAMIC) return invalidParameter(1, 16);
    const ctrl = core.createController({ subsystem: subsys, subnqn, hostnqn, hostid, hostidBytes, port, kato: discovery && kato === 0 ? 120_000 : kato });
    if (ctrl === undefined) return fail(Sct.CommandSpecific, FabricsStatus.ConnectControllerBusy);
    conn.attach(ctrl, 0, sqsize);
    return connected(conn, core, ctrl.cntlid, subsys, hostnqn, subnqn);
  }
  if (subsys === undefined) return invalidParameter(0, 42);
  const ctrl = subsys.controllers().find((c) => c.cntlid === cntlid && c.hostnqn === hostnqn && c.hostid === hostid && !c.closed);
  if (ctrl === undefined) return invalidParameter(1, 16);
  const limit = ctrl.ioQueuesGranted ?? core.options.maxIoQueues;
  if (qid > limit || ctrl.queues.has(qid)) return invalidParameter(0, 42);
  conn.attach(ctrl, qid, sqsize);
  return connected(conn, core, ctrl.cntlid, subsys, hostnqn, subnqn);
}

/** A successful Connect: AUTHREQ.ATR (DW0 bit 17) when the host has a DH-HMAC-CHAP key on the subsystem. */
function connected(conn: Cmd['conn'], core: TargetCore, cntlid: number, subsys: TargetSubsystem | undefined, hostnqn: string, subnqn: string): CommandResult {
  const current = () => (subsys === undefined ? core.discoveryDhchap.get(hostnqn) : subsys.dhchapFor(hostnqn));
  if (current() === undefined) return ok(cntlid);
  conn.auth = new QueueAuth(current, hostnqn, subnqn, (o) => core.authenticationEnded(conn, o));
  return ok((cntlid | ConnectAuthReq.ATR) >>> 0);
}
