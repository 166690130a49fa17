/**
 * One TCP connection of the embedded target = one queue: ICReq/ICResp, command capsules,
 * in-capsule data or R2T/H2CData for host data, C2HData for controller data, responses, digests,
 * fault injection on the answers, and fatal errors with a C2HTermReq.
 *
 * Every byte leaves through {@link TargetConnection.flush}, which writes one corked batch per tick
 * (or, under a `tiny-writes` fault, small pieces one event loop turn apart).
 */
import type { QueueAuth } from './auth.js';
import { Buffer } from 'node:buffer';
import type * as net from 'node:net';
import { ProtocolError } from '../errors.js';
import { encodePdu, PduField, PduFlag, PduType, TermReqFes, protocolError, type CapsuleCmdPdu, type H2CDataPdu, type Pdu } from '../protocol/pdu.js';
import { type DataPduHeader } from '../protocol/reader.js';
import { encodeCqe, StatusField } from '../protocol/cqe.js';
import { PduStream } from '../transport/pdu-stream.js';
import { decodeSqe } from '../protocol/sqe.js';
import { ADMIN_IN_CAPSULE_BYTES, AdminOpcode, FABRICS_OPCODE, FabricsType, GenericStatus, SglSubtype, StatusCodeType, opcodeName, FabricsStatus } from '../protocol/constants.js';
import { handleAdmin } from './admin.js';
import { DEFERRED, fail, type Cmd, type CommandResult, type HandlerResult } from './command.js';
import type { TargetController } from './controller.js';
import type { TargetCore, TargetPort } from './core.js';
import type { ActiveFault, CommandInfo, ConnectionFacts } from './faults.js';
import { handleFabrics } from './fabrics.js';
import { handleIo, ioPrecheck } from './io.js';
import type { ReservationNotifier } from './reservations.js';
import type { CommandKind } from './types.js';

const Sct = StatusCodeType;
const EMPTY = Buffer.alloc(0);
/** In-capsule data accepted on the admin queue (NVMe/TCP: 8 KiB). */

/** Connection states. */
export type TargetConnectionState = 'ic' | 'ready' | 'closed';

/** One accepted NVMe/TCP connection (one queue). Inspect through NvmeTarget.connections(). */

export class TargetConnection {
  readonly id: number;
  readonly port: TargetPort;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Local address the host connected to. */
  readonly localAddress: string;
  /** Negotiated header digest. */
  hdgst = false;
  /** Negotiated data digest. */
  ddgst = false;
  /** Host PDU data alignment from ICReq (0's based dwords). */
  hpda = 0;
  /** Queue ID once connected, else -1. */
  qid = -1;
  /** Submission queue size (0's based) from Connect. */
  sqsize = 0;
  /** The controller once the queue is connected. */
  controller: TargetController | undefined;
  /** @internal DH-HMAC-CHAP state when the host must authenticate on this queue. */
  auth: QueueAuth | undefined;
  /** Why the connection closed. */
  closeReason: string | undefined;

  private _state: TargetConnectionState = 'ic';
  private readonly core: TargetCore;
  private readonly socket: net.Socket;
  private readonly stream: PduStream;
  private sqhd = 0;
  /** Commands received and not answered (including dropped ones). */
  private readonly pending = new Map<number, Cmd>();
  /** Commands waiting for host data, by transfer tag. */
  private readonly r2ts = new Map<number, Cmd>();
  private nextTtag = 0;
  /** Bytes waiting to be written in small pieces (tiny-writes fault). */
  private tinyQueue: Buffer[] = [];
  private tinyOffset = 0;
  private tinyImmediate: NodeJS.Immediate | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly notifyReservation: ReservationNotifier = (hostids, rnlpt, nsid) => {
    const subsys = this.controller?.subsystem;
    if (subsys !== undefined) this.core.reservationNotify(subsys, hostids, rnlpt, nsid);
  };

  /** @internal */
  constructor(core: TargetCore, port: TargetPort, socket: net.Socket, id: number) {
    this.core = core;
    this.port = port;
    this.socket = socket;
    this.id = id;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = socket.localAddress ?? port.host;
    const o = core.options;
    this.stream = new PduStream({
      socket,
      reader: {
        role: 'controller',
        expectIc: true,
        maxDataLength: o.maxh2cdata,
        maxInCapsuleData: Math.max(ADMIN_IN_CAPSULE_BYTES, o.inCapsuleDataSize),
        placeData: (h) => this.placeH2CData(h),
      },
      onPdu: (pdu) => this.onPdu(pdu),
      onFatal: (err) => this.onFatal(err),
      shapeWrite: (batch) => this.shapeWrite(batch),
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      if (this._state !== 'closed') this.stream.receive(chunk);
    });
    socket.on('error', (err) => this.finalize(`socket error: ${err.message}`));
    socket.on('close', () => this.finalize(this.closeReason ?? 'closed by the host'));
  }

  /** Connection state. */
  get state(): TargetConnectionState {
    return this._state;
  }

  private isClosed(): boolean {
    return this._state === 'closed';
  }

  /** Commands received and not yet answered. */
  get outstanding(): number {
    return this.pending.size;
  }

  /** @internal Facts for fault matching. */
  facts(): ConnectionFacts {
    const c = this.controller;
    return { qid: this.qid, portid: this.port.portid, cntlid: c?.cntlid, subnqn: c?.subnqn, hostnqn: c?.hostnqn, connectionId: this.id };
  }

  /** @internal Bind the queue to its controller (successful Connect). */
  attach(ctrl: TargetController, qid: number, sqsize: number): void {
    this.controller = ctrl;
    this.qid = qid;
    this.sqsize = sqsize;
    ctrl.queues.set(qid, this);
    this.core.queueConnected(this, ctrl);
  }

  /** Close the connection now (no TermReq). Idempotent. */
  destroy(reason = 'destroyed by the target'): void {
    if (this._state === 'closed') return;
    this.closeReason = reason;
    this.socket.destroy();
    this.finalize(reason);
  }

  // ------------------------------------------------------------------------------------------
  // Receive path

  private onPdu(pdu: Pdu): void {
    switch (pdu.type) {
      case PduType.ICReq: {
        const allow = this.core.options.allowDigests;
        this.hdgst = pdu.hdgst && allow;
        this.ddgst = pdu.ddgst && allow;
        this.hpda = pdu.hpda;
        const o = this.core.options;
        this.stream.sendPdu({ type: PduType.ICResp, pfv: 0, cpda: o.cpda, hdgst: this.hdgst, ddgst: this.ddgst, maxh2cdata: o.maxh2cdata });
        this.stream.negotiated(this.hdgst, this.ddgst, this.hpda > 0 ? (this.hpda + 1) * 4 : 0);
        this._state = 'ready';
        return;
      }
      case PduType.H2CTermReq:
        this.core.protocolError(this, { direction: 'received', fes: pdu.fes, fei: pdu.fei, message: `host sent H2CTermReq FES ${pdu.fes} FEI ${pdu.fei}` });
        this.destroy(`host terminated the connection (H2CTermReq FES ${pdu.fes}, FEI ${pdu.fei})`);
        return;
      case PduType.CapsuleCmd:
        this.onCommand(pdu);
        return;
      case PduType.H2CData:
        this.onH2CData(pdu);
        return;
      default:
        throw protocolError.invalidField(`unexpected PDU type 0x${pdu.type.toString(16)}`, PduField.TYPE);
    }
  }

  private onCommand(pdu: CapsuleCmdPdu): void {
    const sqe = Buffer.from(pdu.sqe);
    const d = decodeSqe(sqe);
    const { opcode, cid, nsid } = d;
    const fabrics = opcode === FABRICS_OPCODE;
    // Fabrics commands carry FCTYPE in byte 4 (where NSID would be); Connect carries the QID in CDW10 bits 31:16.
    const fctype = fabrics ? nsid & 0xff : -1;
    const qid = fabrics && fctype === FabricsType.Connect ? d.cdw10 >>> 16 : this.qid;
    const kind: CommandKind = fabrics ? 'fabrics' : this.qid > 0 ? 'io' : 'admin';
    const sgl = d.dptr;
    const length = sgl.kind === 'other' ? 0 : sgl.length;
    const ctrl = this.controller;
    const info: CommandInfo = {
      connectionId: this.id,
      portid: this.port.portid,
      qid,
      cid,
      opcode,
      fctype: fabrics ? fctype : undefined,
      nsid: fabrics ? 0 : nsid,
      kind,
      name: opcodeName(opcode, fabrics ? { fctype } : { admin: kind === 'admin' }),
      sqe,
      dataLength: length,
      cntlid: ctrl?.cntlid,
      subnqn: ctrl?.subnqn,
      hostnqn: ctrl?.hostnqn,
    };
    const cmd: Cmd = {
      conn: this,
      ctrl,
      qid: Math.max(qid, 0),
      cid,
      sqe,
      opcode,
      fctype,
      nsid: info.nsid,
      sgl,
      length,
      data: null,
      info,
      faults: [],
      done: false,
      h2c: undefined,
    };
    if (this.sqsize > 0) this.sqhd = (this.sqhd + 1) % (this.sqsize + 1);
    this.core.commandReceived(info);
    if (this.pending.has(cid)) {
      // The host reused a CID that is still outstanding: answer without disturbing the first command.
      cmd.done = true;
      this.stream.send(...this.encodeAnswer(cmd, fail(Sct.Generic, GenericStatus.CommandIdConflict), undefined));
      return;
    }
    this.pending.set(cid, cmd);
    if (ctrl !== undefined && this.core.options.trafficBasedKeepAlive) ctrl.touch();

    const faults = this.core.faults.take(info);
    if (faults.length > 0) {
      cmd.faults = faults;
      const injected = faults.find((f) => f.rule.action === 'status');
      if (injected !== undefined) {
        this.complete(cmd, { status: injected.statusField, dw0: injected.rule.dw0 ?? 0, dw1: injected.rule.dw1 ?? 0 });
        return;
      }
    }

    const hostToController = fabrics ? fctype === FabricsType.Connect || fctype === FabricsType.AuthSend : (opcode & 1) === 1;
    if (hostToController) {
      if (sgl.kind === 'data-block') {
        const data = pdu.data ?? EMPTY;
        const limit = this.qid > 0 ? this.core.options.inCapsuleDataSize : ADMIN_IN_CAPSULE_BYTES;
        if (sgl.subtype !== SglSubtype.Offset || sgl.address !== 0n) return this.complete(cmd, fail(Sct.Generic, GenericStatus.SglOffsetInvalid));
        if (sgl.length !== data.length || data.length > limit) return this.complete(cmd, fail(Sct.Generic, GenericStatus.SglDataLengthInvalid));
        if (pdu.dataDigestError) return this.complete(cmd, fail(Sct.Generic, GenericStatus.TransientTransportError, false));
        cmd.data = data;
        this.execute(cmd);
        return;
      }
      if (sgl.kind !== 'transport-data-block' || sgl.subtype !== SglSubtype.TransportA) {
        return this.complete(cmd, fail(Sct.Generic, GenericStatus.SglDescriptorTypeInvalid));
      }
      if (length === 0) {
        cmd.data = EMPTY;
        this.execute(cmd);
        return;
      }
      if (length > this.core.maxTransferBytes) return this.complete(cmd, fail(Sct.Generic, GenericStatus.InvalidField));
      if (ctrl !== undefined && !fabrics && this.qid > 0) {
        const early = ctrl.ready ? ioPrecheck(cmd, ctrl, this.core.maxTransferBytes) : fail(Sct.Generic, GenericStatus.CommandSequenceError);
        if (early !== undefined) return this.complete(cmd, early);
      }
      const ttag = this.allocTtag();
      cmd.h2c = { buf: Buffer.allocUnsafe(length), received: 0, r2tEnd: 0, ttag, digestError: false };
      this.r2ts.set(ttag, cmd);
      this.sendR2T(cmd);
      return;
    }
    if (length > 0 && (sgl.kind !== 'transport-data-block' || sgl.subtype !== SglSubtype.TransportA)) {
      return this.complete(cmd, fail(Sct.Generic, GenericStatus.SglDescriptorTypeInvalid));
    }
    if (length > this.core.maxTransferBytes) return this.complete(cmd, fail(Sct.Generic, GenericStatus.InvalidField));
    this.execute(cmd);
  }

  private allocTtag(): number {
    for (let i = 0; i < 0x10000; i++) {
      const t = this.nextTtag;
      this.nextTtag = (this.nextTtag + 1) & 0xffff;
      if (!this.r2ts.has(t)) return t;
    }
    throw protocolError.limitExceeded('no free transfer tag');
  }

  private sendR2T(cmd: Cmd): void {
    const h = cmd.h2c!;
    const remaining = h.buf.length - h.received;
    const max = this.core.options.maxR2TLength;
    const len = max > 0 ? Math.min(max, remaining) : remaining;
    h.r2tEnd = h.received + len;
    this.stream.sendPdu({ type: PduType.R2T, cccid: cmd.cid, ttag: h.ttag, r2to: h.received, r2tl: len });
  }

  /** The command an H2CData PDU's transfer tag names, checked against its CCCID. */
  private h2cCommand(ttag: number, cccid: number): Cmd {
    const cmd = this.r2ts.get(ttag);
    if (cmd === undefined) throw protocolError.invalidField(`H2CData for unknown transfer tag ${ttag}`, PduField.TTAG);
    if (cmd.cid !== cccid) throw protocolError.invalidField(`H2CData CCCID ${cccid} does not match transfer tag ${ttag} (command ${cmd.cid})`, PduField.CCCID);
    return cmd;
  }

  /**
   * Direct data placement (called by the reader once an H2CData header is valid, before its payload): the payload
   * goes straight into the command's data buffer at DATAO.
   */
  private placeH2CData(hdr: DataPduHeader): Buffer {
    const cmd = this.h2cCommand(hdr.ttag, hdr.cccid);
    const h = cmd.h2c!;
    if (hdr.datao !== h.received) {
      throw protocolError.outOfRange(`H2CData offset ${hdr.datao} for command ${cmd.cid}, expected ${h.received}`);
    }
    if (h.received + hdr.datal > h.r2tEnd) {
      throw protocolError.outOfRange(`H2CData ${hdr.datao}+${hdr.datal} for command ${cmd.cid} goes past the R2T end ${h.r2tEnd}`);
    }
    h.received += hdr.datal;
    return h.buf.subarray(hdr.datao, hdr.datao + hdr.datal);
  }

  private onH2CData(pdu: H2CDataPdu): void {
    const cmd = this.h2cCommand(pdu.ttag, pdu.cccid);
    const h = cmd.h2c!;
    if (pdu.dataDigestError) h.digestError = true;
    if (h.received < h.r2tEnd) {
      if (pdu.last) throw protocolError.sequence(`H2CData LAST_PDU for command ${cmd.cid} at ${h.received} of ${h.r2tEnd}`);
      return;
    }
    if (!pdu.last) throw protocolError.sequence(`H2CData completing the R2T of command ${cmd.cid} without LAST_PDU`);
    if (h.received < h.buf.length) {
      this.sendR2T(cmd);
      return;
    }
    this.r2ts.delete(h.ttag);
    cmd.h2c = undefined;
    if (h.digestError) {
      this.complete(cmd, fail(Sct.Generic, GenericStatus.TransientTransportError, false));
      return;
    }
    cmd.data = h.buf;
    this.execute(cmd);
  }

  private execute(cmd: Cmd): void {
    let res: HandlerResult;
    try {
      res = this.dispatch(cmd);
    } catch (err) {
      this.core.handlerError(this, err as Error);
      res = fail(Sct.Generic, GenericStatus.InternalError);
    }
    if (res !== DEFERRED) this.complete(cmd, res);
  }

  private dispatch(cmd: Cmd): HandlerResult {
    if (cmd.opcode === FABRICS_OPCODE) {
      const res = handleFabrics(cmd, this.core);
      cmd.ctrl = this.controller;
      return res;
    }
    const ctrl = this.controller;
    if (ctrl === undefined) return fail(Sct.Generic, GenericStatus.CommandSequenceError);
    // Until the queue is authenticated only Connect and Authentication Send/Receive run (status 191h).
    if (this.auth !== undefined && !this.auth.authenticated) return fail(Sct.CommandSpecific, FabricsStatus.AuthenticationRequired);
    if (this.qid === 0) return handleAdmin(cmd, ctrl, this.core);
    return handleIo(cmd, ctrl, this.core.maxTransferBytes, this.notifyReservation);
  }

  // ------------------------------------------------------------------------------------------
  // Answers

  /** @internal A command that Abort may cancel: an outstanding AER or a dropped command. */
  findAbortable(cid: number): Cmd | undefined {
    const cmd = this.pending.get(cid);
    if (cmd === undefined) return undefined;
    if (cmd.done || (this.qid === 0 && cmd.opcode === AdminOpcode.AsyncEventRequest)) return cmd;
    return undefined;
  }

  /**
   * @internal Answer a command: apply the fault rules for it, encode C2HData + CapsuleResp, and
   * send. `force` answers a command that was dropped before (Abort).
   */
  complete(cmd: Cmd, res: CommandResult, force = false): void {
    if (cmd.done && !force) return;
    cmd.done = true;
    if (res.status !== 0) cmd.ctrl?.recordError(cmd, res.status);
    if (this._state === 'closed') {
      this.pending.delete(cmd.cid);
      return;
    }
    const faults = cmd.faults;
    if (faults.length === 0) {
      this.pending.delete(cmd.cid);
      this.stream.send(...this.encodeAnswer(cmd, res, undefined));
      if (res.closeAfter) this.closeAfterFlush();
      return;
    }
    if (faults.some((f) => f.rule.action === 'drop')) {
      // Never answered; stays pending so that Abort can find it.
      return;
    }
    this.pending.delete(cmd.cid);
    let delay = 0;
    for (const f of faults) if (f.rule.action === 'delay') delay += f.rule.ms ?? 0;
    const act = (): void => this.answerWithFaults(cmd, res, faults);
    if (delay > 0) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        if (this._state !== 'closed') act();
      }, delay);
      this.timers.add(t);
    } else {
      act();
    }
  }

  private answerWithFaults(cmd: Cmd, res: CommandResult, faults: ActiveFault[]): void {
    const has = (a: string): ActiveFault | undefined => faults.find((f) => f.rule.action === a);
    const term = has('terminate');
    if (term !== undefined) {
      this.terminate(term.rule.fes ?? TermReqFes.INVALID_HEADER_FIELD, term.rule.fei ?? 0, `fault injection: C2HTermReq for ${cmd.info.name} (cid ${cmd.cid})`);
      return;
    }
    if (has('close') !== undefined) {
      this.stream.flush();
      this.destroy(`fault injection: closed instead of answering ${cmd.info.name} (cid ${cmd.cid})`);
      return;
    }
    let cid: number | undefined;
    if (has('unknown-cid') !== undefined) {
      cid = (cmd.cid + 0x8000) & 0xffff;
      while (this.pending.has(cid) || cid === cmd.cid) cid = (cid + 1) & 0xffff;
    }
    const pdus = this.encodeAnswer(cmd, res, cid);
    if (has('corrupt-hdgst') !== undefined) {
      const h = pdus[0]![0]!;
      if ((h[1]! & PduFlag.HDGSTF) !== 0) h[h[2]!] = h[h[2]!]! ^ 0xff;
    }
    if (has('corrupt-ddgst') !== undefined) {
      const p = pdus.find((x) => (x[0]![1]! & PduFlag.DDGSTF) !== 0);
      if (p !== undefined) {
        const dd = Buffer.from(p[p.length - 1]!);
        dd[0] = dd[0]! ^ 0xff;
        p[p.length - 1] = dd;
      }
    }
    if (has('close-mid-pdu') !== undefined) {
      const first = Buffer.concat(pdus[0]!);
      const cut = Math.max(1, Math.floor(Math.min(first.length, first[2]!) / 2));
      this.stream.send([first.subarray(0, cut)]);
      this.closeAfterFlush(`fault injection: closed in the middle of the answer to ${cmd.info.name} (cid ${cmd.cid})`);
      return;
    }
    this.stream.send(...pdus);
    if (res.closeAfter) this.closeAfterFlush();
  }

  /** Encode the answer: C2HData PDUs (split at maxC2HData) and the CapsuleResp, unless SUCCESS makes it unnecessary. */
  private encodeAnswer(cmd: Cmd, res: CommandResult, cidOverride: number | undefined): Buffer[][] {
    const out: Buffer[][] = [];
    const data = res.status === 0 ? res.data : undefined;
    const o = this.core.options;
    if (data !== undefined && data.length > 0) {
      // SUCCESS replaces the CapsuleResp, so it is used only when DW0/DW1 carry nothing.
      const success = o.c2hSuccess && cidOverride === undefined && !res.dw0 && !res.dw1;
      const max = o.maxC2HData;
      for (let off = 0; off < data.length; off += max) {
        const end = Math.min(off + max, data.length);
        const last = end === data.length;
        out.push(encodePdu({ type: PduType.C2HData, cccid: cmd.cid, datao: off, last, success: last && success, data: data.subarray(off, end) }, this.stream.encodeOpts));
      }
      if (success) return out;
    }
    const cqe = encodeCqe({ dw0: res.dw0 ?? 0, dw1: res.dw1 ?? 0, sqhd: this.sqhd, sqid: cmd.qid, cid: cidOverride ?? cmd.cid, status: res.status & ~StatusField.PHASE });
    out.push(encodePdu({ type: PduType.CapsuleResp, cqe }, this.stream.encodeOpts));
    return out;
  }

  /** Send a C2HTermReq and close. */
  terminate(fes: number, fei: number, reason: string, header: Buffer = EMPTY): void {
    if (this._state === 'closed') return;
    this.closeReason ??= reason;
    this.stream.terminate(fes, fei, header);
    this.finalize(reason, false);
  }

  /** A PDU could not be read or handled: the stream has sent the C2HTermReq where the spec calls for one. */
  private onFatal(err: Error): void {
    if (this._state === 'closed') return;
    const fes = err instanceof ProtocolError ? err.fes : 0;
    this.core.protocolError(this, { direction: 'sent', fes, fei: err instanceof ProtocolError ? err.fei : 0, message: err.message });
    if (fes >= TermReqFes.INVALID_HEADER_FIELD && fes <= TermReqFes.UNSUPPORTED_PARAMETER) this.finalize(`protocol error: ${err.message}`, false);
    else this.destroy(`protocol error: ${err.message}`);
  }

  // ------------------------------------------------------------------------------------------
  // Send path

  /** Stop reading; close gracefully once everything queued is written. */
  private closeAfterFlush(reason = 'closed after Disconnect'): void {
    this.closeReason ??= reason;
    this.finalize(reason, false);
    this.stream.endAfterWrites();
  }

  /** Fault injection: the tiny-writes fault takes the batch and writes it a few bytes at a time. */
  private shapeWrite(batch: Buffer[]): boolean {
    const tiny = this.core.faults.size > 0 ? this.core.faults.tinyWrites(this.facts()) : undefined;
    if (tiny === undefined && this.tinyQueue.length === 0) return false;
    this.tinyQueue.push(Buffer.concat(batch));
    if (this.tinyImmediate === undefined) this.pumpTiny(tiny ?? { min: 1, max: 7 });
    return true;
  }

  private pumpTiny(size: { min: number; max: number }): void {
    this.tinyImmediate = setImmediate(() => {
      this.tinyImmediate = undefined;
      if (this.socket.destroyed) return;
      const head = this.tinyQueue[0];
      if (head === undefined) {
        if (this.stream.ending) this.socket.end();
        return;
      }
      const n = size.min + Math.floor(Math.random() * (size.max - size.min + 1));
      const end = Math.min(head.length, this.tinyOffset + n);
      this.socket.write(head.subarray(this.tinyOffset, end));
      this.tinyOffset = end;
      if (end === head.length) {
        this.tinyQueue.shift();
        this.tinyOffset = 0;
      }
      this.pumpTiny(size);
    });
  }

  /** Detach from the controller and the target; `destroyed` false keeps the socket for a graceful end. */
  private finalize(reason: string, destroyed = true): void {
    if (this._state === 'closed') {
      if (destroyed) this.clearTimers();
      return;
    }
    this._state = 'closed';
    this.closeReason ??= reason;
    this.stream.stop();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (destroyed) this.clearTimers();
    this.r2ts.clear();
    const ctrl = this.controller;
    if (ctrl !== undefined) {
      for (const cmd of this.pending.values()) if (this.qid === 0) ctrl.removeAer(cmd);
      if (ctrl.queues.get(this.qid) === this) ctrl.queues.delete(this.qid);
      if (this.qid === 0) ctrl.close(`admin queue closed: ${this.closeReason}`);
    }
    this.pending.clear();
    this.core.connectionClosed(this, this.closeReason);
    if (!destroyed) {
      // Give the peer a moment to read what is queued, then make sure the socket is gone.
      const t = setTimeout(() => this.socket.destroy(), 1000);
      t.unref();
      this.core.linger(this.socket);
      this.socket.once('close', () => clearTimeout(t));
    }
  }

  private clearTimers(): void {
    if (this.tinyImmediate !== undefined) clearImmediate(this.tinyImmediate);
    this.tinyImmediate = undefined;
    this.tinyQueue = [];
  }
}
