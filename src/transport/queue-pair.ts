/**
 * One NVMe/TCP queue pair = one TCP connection.
 *
 * Responsibilities: ICReq/ICResp negotiation, a CID table with a free list and per-slot generation counter,
 * pipelining up to the queue depth with a FIFO for the rest, in-capsule data or R2T-driven H2CData for writes,
 * C2HData assembly for reads, digests, per-command timeouts and AbortSignals, fatal-error teardown with an
 * H2CTermReq, and failing every pending command with a typed error when the queue goes away.
 *
 * The PDU loop (reading, the corked outbox, TermReq on fatal errors) is a PduStream, shared with the embedded target.
 */
import { Buffer } from 'node:buffer';
import * as net from 'node:net';
import { debuglog } from 'node:util';
import diagnostics from 'node:diagnostics_channel';
import {
  AbortedError,
  ConnectionClosedError,
  ConnectionFailedError,
  DigestError,
  InvalidArgumentError,
  InvalidStateError,
  TerminatedError,
  TimeoutError,
  TlsError,
} from '../errors.js';
import { PduField, PduType, protocolError, type Pdu } from '../protocol/pdu.js';
import { type DataPduHeader } from '../protocol/reader.js';
import { PduStream } from './pdu-stream.js';
import { tlsConnect, TlsSocket, type TlsClientOptions, type TlsSessionInfo } from './tls13/client.js';
import { setCid } from '../protocol/sqe.js';
import { writeDataSgl } from '../protocol/sgl.js';
import { decodeCqe, cqeOk, type Cqe } from '../protocol/cqe.js';
import { statusError } from '../protocol/status.js';
import { ADMIN_IN_CAPSULE_BYTES, FABRICS_OPCODE } from '../protocol/constants.js';
import { abortError, withTimeout } from '../util.js';
import { pollBegin, pollEnd } from './poller.js';
import type { NvmeCommand } from '../protocol/commands.js';

const debug = debuglog('nvmeof');
const chStart = diagnostics.channel('nvmeof:command:start');
const chEnd = diagnostics.channel('nvmeof:command:end');

export { ADMIN_IN_CAPSULE_BYTES };

/** Longest timeout, in ms, a command or a connect may be given (the longest delay Node's timers honour). */
export const MAX_TIMEOUT_MS = 0x7fffffff;

/** Most commands one queue pair keeps in flight (its CID table: slot bits plus generation bits in 16 bits). */
export const MAX_QUEUE_DEPTH = 4096;

/** Lifecycle of a queue pair. */
export type QueuePairState = 'connecting' | 'ready' | 'closing' | 'closed';

/** Options of `QueuePair.open()`. */
export interface QueuePairOptions {
  /** Target address. */
  host: string;
  /** Target TCP port. */
  port: number;
  /** Queue ID: 0 for the admin queue. Used in errors and tracing. */
  qid: number;
  /** Maximum commands in flight on this queue; more wait in a FIFO. */
  depth: number;
  /** Request header digests. */
  headerDigest?: boolean;
  /** Request data digests. */
  dataDigest?: boolean;
  /** Milliseconds for TCP connect + ICReq/ICResp. Default 10000. */
  connectTimeout?: number;
  /** Default per-command timeout in ms (0 = none). Default 30000. */
  commandTimeout?: number;
  /** Largest data payload accepted in one C2HData PDU. Default 4 MiB. */
  maxC2HData?: number;
  /** Bytes of in-capsule data the controller accepts on this queue. Default 8192 (admin queue value). */
  inCapsuleBytes?: number;
  signal?: AbortSignal;
  /** Use this connected socket instead of opening one (tests). */
  socket?: net.Socket;
  /**
   * Run a TLS 1.3 handshake with this PSK on the new connection before ICReq; ICReq and every PDU then travel inside
   * TLS (NVMe/TCP secure channel). Failures are TlsError (NVMEOF_ERR_TLS).
   */
  tls?: Pick<TlsClientOptions, 'identity' | 'psk' | 'hash'>;
  /**
   * Keep the event loop polling while commands on this queue are outstanding instead of sleeping until the socket
   * wakes it (see poller.ts): lower latency at low queue depth, a busy core while I/O is in flight. Default false.
   */
  busyPoll?: boolean;
  /**
   * Called with each completion whose status is not success, before its promise settles (the controller notes ANA
   * path statuses through it without wrapping every command's promise).
   */
  onStatusError?: (cmd: NvmeCommand, cqe: Cqe) => void;
}

/** Per-command options of `submit()`, `adminCommand()` and `ioCommand()`. */
export interface SubmitOptions {
  /** Override the queue's default timeout, ms; 0 disables. */
  timeout?: number;
  signal?: AbortSignal;
  /** Caller-owned buffer receiving C2H data (zero-copy reads). Must be at least `cmd.readLength` bytes. */
  readInto?: Buffer;
  /** Resolve with the CQE even when its status is an error (default: reject with NvmeStatusError). */
  allowStatusError?: boolean;
}

/** A completed command. */
export interface Completion {
  /** The completion queue entry. */
  cqe: Cqe;
  /** C2H data (a view of `readInto` when given). Present for commands with readLength. */
  data?: Buffer;
  /** Bytes of C2H data actually received. */
  received: number;
}

interface Entry {
  cmd: NvmeCommand;
  cid: number;
  slot: number;
  opcode: number;
  fctype: number;
  sent: boolean;
  /** The promise has been settled (completion, timeout, abort); the slot stays busy until the wire finishes. */
  settled: boolean;
  resolve: (c: Completion) => void;
  reject: (e: Error) => void;
  /** performance.now() by which the command times out (0: never). */
  deadline: number;
  readBuf: Buffer | undefined;
  received: number;
  /** Bytes of write data the controller has asked for through R2Ts so far. */
  r2tRequested: number;
  error: Error | undefined;
  opts: SubmitOptions | undefined;
  onAbort: (() => void) | undefined;
  /** performance.now() when sent, when a command:end subscriber was present (else 0). */
  startedAt: number;
}

const C2H_SUCCESS_STATUS = 0;

/** How often overdue commands are looked for; a timeout fires within this much of its deadline. */
const SWEEP_INTERVAL_MS = 100;
/** Queue pairs with commands that have deadlines, swept by one process-wide timer. */
const sweepQueues = new Set<QueuePair>();
let sweepTimer: NodeJS.Timeout | undefined;

function sweepAll(): void {
  for (const qp of sweepQueues) if (!qp.sweep()) sweepQueues.delete(qp);
  if (sweepQueues.size === 0 && sweepTimer) {
    clearInterval(sweepTimer);
    sweepTimer = undefined;
  }
}

/** CID 0xFFFF is reserved by the spec ("no command" in the Error Information log); never issued. */
const RESERVED_CID = 0xffff;


/** How a command ended, in `nvmeof:command:end` messages. */
export type CommandOutcome = 'success' | 'status' | 'timeout' | 'aborted' | 'error';

/** Message of the `nvmeof:command:start` diagnostics channel: a command was put on the wire. */
export interface CommandStartMessage {
  qid: number;
  cid: number;
  /** Command name (e.g. 'Read', 'Identify'). */
  name: string;
  opcode: number;
}

/**
 * Message of the `nvmeof:command:end` diagnostics channel, published once for every command that was put on the
 * wire, when its promise settles: completion ('success', or 'status' with the NVMe status field), a failure of the
 * command itself ('error': data digest mismatch), 'timeout', 'aborted' (its AbortSignal), or 'error' when the queue
 * was torn down under it (`error` is the error the promise rejected with).
 */
export interface CommandEndMessage extends CommandStartMessage {
  outcome: CommandOutcome;
  /** The 16-bit status field of the CQE (bit 0 phase tag clear), when a completion ended the command. */
  status: number | undefined;
  error: Error | undefined;
  /** Milliseconds from sending to settling, when a subscriber was present at sending. */
  durationMs: number | undefined;
}

/** One NVMe/TCP connection carrying one submission/completion queue pair. */
export class QueuePair {
  readonly qid: number;
  readonly host: string;
  readonly port: number;
  /** Negotiated: header digest enabled. */
  hdgst = false;
  /** Negotiated: data digest enabled. */
  ddgst = false;
  /** Controller PDU data alignment (0's based dwords) from ICResp. */
  cpda = 0;
  /** Largest H2CData payload the controller accepts, from ICResp. */
  maxh2cdata = 0;
  /** In-capsule data capacity in bytes. */
  inCapsuleBytes: number;

  private _state: QueuePairState = 'connecting';
  private readonly socket: net.Socket | TlsSocket;
  /** What the TLS handshake negotiated, when the queue runs over TLS. */
  readonly tls: TlsSessionInfo | undefined;
  private readonly depth: number;
  private readonly slotBits: number;
  private readonly slots: (Entry | undefined)[];
  private readonly gens: Uint16Array;
  private readonly freeSlots: number[];
  private readonly waiting: Entry[] = [];
  private waitingHead = 0;
  private readonly stream: PduStream;
  private readonly defaultTimeout: number;
  /** In the process-wide sweep set (some command has a deadline). */
  private sweeping = false;
  private inflight = 0;
  private closeError: Error | undefined;
  private icResolve: ((p: Pdu) => void) | undefined;
  private icReject: ((e: Error) => void) | undefined;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  /** Commands whose promise is not settled yet (in flight or waiting). close() waits for these, not for timed-out
   *  or aborted commands that still hold a slot: the controller may never answer those. */
  private unsettled = 0;
  private drainWaiters: (() => void)[] = [];
  private readonly closeListeners: ((err: Error | undefined) => void)[] = [];
  private readonly busyPoll: boolean;
  private readonly onStatusError: ((cmd: NvmeCommand, cqe: Cqe) => void) | undefined;

  private constructor(opts: QueuePairOptions, socket: net.Socket | TlsSocket, relay: ReadRelay | undefined) {
    this.qid = opts.qid;
    this.host = opts.host;
    this.port = opts.port;
    this.depth = opts.depth;
    this.inCapsuleBytes = opts.inCapsuleBytes ?? ADMIN_IN_CAPSULE_BYTES;
    this.defaultTimeout = opts.commandTimeout ?? 30_000;
    this.busyPoll = opts.busyPoll === true;
    this.onStatusError = opts.onStatusError;
    let bits = 1;
    while (1 << bits < opts.depth) bits++;
    this.slotBits = bits;
    this.slots = new Array<Entry | undefined>(opts.depth).fill(undefined);
    this.gens = new Uint16Array(opts.depth);
    this.freeSlots = [];
    for (let i = opts.depth - 1; i >= 0; i--) this.freeSlots.push(i);
    this.socket = socket;
    this.tls = socket instanceof TlsSocket ? socket.info : undefined;
    this.stream = new PduStream({
      socket,
      reader: { role: 'host', maxDataLength: opts.maxC2HData ?? 4 * 1024 * 1024, placeData: (h) => this.placeC2HData(h) },
      onPdu: (pdu) => this.handlePdu(pdu),
      onFatal: (err) => {
        debug('qid %d fatal: %s', this.qid, err.message);
        this.destroy(err);
      },
    });
    this.closedPromise = new Promise((r) => (this.resolveClosed = r));
    socket.setNoDelay(true);
    if (relay) {
      relay.deliver = (chunk, end) => this.stream.receive(chunk, end);
      relay.large = () => this.stream.reader.payloadRemaining >= LARGE_READ_MIN;
    }
    else if (socket instanceof TlsSocket) {
      socket.on('data', (chunk: Buffer) => {
        this.stream.receive(chunk);
        // More of a data payload to come: acknowledge what arrived now (see TlsSocket.sendEmptyRecord).
        if (this.stream.reader.payloadRemaining > 0) socket.sendEmptyRecord();
      });
    } else socket.on('data', (chunk: Buffer) => this.stream.receive(chunk));
    socket.on('error', (err: Error) => this.destroy(err instanceof TlsError ? err : new ConnectionClosedError(`queue ${this.qid}: socket error: ${err.message}`, { cause: err })));
    socket.on('close', () => {
      if (this._state !== 'closed') this.destroy(new ConnectionClosedError(`queue ${this.qid}: connection closed by the controller`));
      this.resolveClosed();
    });
  }

  /** Open the TCP connection and negotiate ICReq/ICResp. */
  static async open(opts: QueuePairOptions): Promise<QueuePair> {
    if (!Number.isInteger(opts.depth) || opts.depth < 1 || opts.depth > MAX_QUEUE_DEPTH) {
      throw new InvalidArgumentError(`queue depth must be an integer 1..${MAX_QUEUE_DEPTH}, got ${opts.depth}`);
    }
    const timeoutMs = opts.connectTimeout ?? 10_000;
    opts.signal?.throwIfAborted?.();
    // A plain TCP connection the queue pair opens itself reads into the shared buffer; TLS needs the socket's data
    // events, and a socket handed in (tests) already has its reading set up.
    const relay: ReadRelay | undefined = opts.socket || opts.tls ? undefined : { deliver: undefined, large: undefined };
    const tcp = opts.socket ?? (await connectSocket(opts.host, opts.port, timeoutMs, opts.signal, relay));
    const socket = opts.tls ? await tlsConnect(tcp, { ...opts.tls, timeoutMs, signal: opts.signal, peer: `${opts.host}:${opts.port} (queue ${opts.qid})` }) : tcp;
    const qp = new QueuePair(opts, socket, relay);
    try {
      await qp.negotiate(opts, timeoutMs);
    } catch (err) {
      qp.destroy(err as Error);
      throw err;
    }
    return qp;
  }

  get state(): QueuePairState {
    return this._state;
  }

  /** Commands sent and not yet finished on the wire. */
  get outstanding(): number {
    return this.inflight;
  }

  /** Commands waiting for a free slot. */
  get queued(): number {
    return this.waiting.length - this.waitingHead;
  }

  /** Commands in flight plus waiting: a load measure for queue selection. */
  get load(): number {
    return this.inflight + this.waiting.length - this.waitingHead;
  }

  /** Resolves once the socket has closed. */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  /** Register a listener called once when the queue pair closes (with the error, if it failed). */
  onClose(fn: (err: Error | undefined) => void): void {
    if (this._state === 'closed') queueMicrotask(() => fn(this.closeError));
    else this.closeListeners.push(fn);
  }

  private async negotiate(opts: QueuePairOptions, timeoutMs: number): Promise<void> {
    const wantH = !!opts.headerDigest;
    const wantD = !!opts.dataDigest;
    const icresp = new Promise<Pdu>((resolve, reject) => {
      this.icResolve = resolve;
      this.icReject = reject;
    });
    this.stream.sendPdu({ type: PduType.ICReq, pfv: 0, hpda: 0, hdgst: wantH, ddgst: wantD, maxr2t: 0 });
    const pdu = await withTimeout(
      icresp,
      timeoutMs,
      () => new TimeoutError(`queue ${this.qid}: no ICResp from ${this.host}:${this.port} within ${timeoutMs} ms`),
      opts.signal,
    );
    if (pdu.type !== PduType.ICResp) throw protocolError.sequence(`queue ${this.qid}: expected ICResp, got PDU type 0x${pdu.type.toString(16)}`);
    if (pdu.pfv !== 0) throw protocolError.unsupported(`queue ${this.qid}: unsupported PDU format version ${pdu.pfv}`, PduField.IC_PFV);
    if ((pdu.hdgst && !wantH) || (pdu.ddgst && !wantD)) {
      throw protocolError.invalidField(`queue ${this.qid}: controller enabled a digest the host did not request`, PduField.IC_DGST);
    }
    if (pdu.cpda > 31) throw protocolError.invalidField(`queue ${this.qid}: CPDA ${pdu.cpda} out of range`, PduField.IC_PDA);
    this.hdgst = pdu.hdgst;
    this.ddgst = pdu.ddgst;
    this.cpda = pdu.cpda;
    this.maxh2cdata = pdu.maxh2cdata;
    this.stream.negotiated(this.hdgst, this.ddgst, this.cpda ? (this.cpda + 1) * 4 : 0);
    this.transition('ready');
    debug('qid %d connected to %s:%d hdgst=%s ddgst=%s cpda=%d maxh2cdata=%d', this.qid, this.host, this.port, this.hdgst, this.ddgst, this.cpda, this.maxh2cdata);
  }

  private transition(to: QueuePairState): void {
    const from = this._state;
    const ok =
      (from === 'connecting' && (to === 'ready' || to === 'closed')) ||
      (from === 'ready' && (to === 'closing' || to === 'closed')) ||
      (from === 'closing' && to === 'closed');
    if (!ok) throw new InvalidStateError(`queue ${this.qid}: invalid transition ${from} -> ${to}`);
    this._state = to;
  }

  /**
   * Submit a command. Resolves with the completion; rejects with NvmeStatusError on an error status (unless
   * `allowStatusError`), TimeoutError, AbortedError, or the error that closed the queue.
   */
  submit(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion> {
    const bad = this.refuse(cmd, opts);
    if (bad) return Promise.reject(bad);
    return new Promise<Completion>((resolve, reject) => this.enqueue(cmd, opts, resolve, reject));
  }

  /**
   * @internal `submit()` with callbacks instead of a promise, for the commands a controller sends on its own at
   * a steady pace (Keep Alive): no promise and no closure per command. Exactly one of the callbacks is called, at
   * once when the command is refused, else when it ends; both are called synchronously from the queue's own work
   * (a completion, the timeout sweep, teardown) and must neither throw nor act on the queue in that call.
   */
  submitWith(cmd: NvmeCommand, opts: SubmitOptions | undefined, resolve: (c: Completion) => void, reject: (e: Error) => void): void {
    const bad = this.refuse(cmd, opts);
    if (bad) reject(bad);
    else this.enqueue(cmd, opts, resolve, reject);
  }

  /** Why a command cannot be submitted, checked before anything is sent (undefined: it can). */
  private refuse(cmd: NvmeCommand, opts: SubmitOptions | undefined): Error | undefined {
    if (this._state !== 'ready') return this.closeError ?? new InvalidStateError(`queue ${this.qid} is ${this._state}`);
    if (cmd.sqe.length !== 64) return new InvalidArgumentError(`SQE must be 64 bytes, got ${cmd.sqe.length}`);
    const readLength = cmd.readLength ?? 0;
    if (readLength > 0 && cmd.data && cmd.data.length > 0) {
      return new InvalidArgumentError(`${cmd.name}: a command cannot both send and receive data`);
    }
    if (opts?.readInto && opts.readInto.length < readLength) {
      return new InvalidArgumentError(`${cmd.name}: readInto has ${opts.readInto.length} bytes, need ${readLength}`);
    }
    const signal = opts?.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      return new InvalidArgumentError(`${cmd.name}: signal must be an AbortSignal, got ${signal === null ? 'null' : typeof signal}`);
    }
    const timeout = this.timeoutOf(opts);
    if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 0 || timeout > MAX_TIMEOUT_MS) {
      return new InvalidArgumentError(`${cmd.name}: timeout must be an integer 0..${MAX_TIMEOUT_MS} ms (0 = none), got ${String(timeout)}`);
    }
    if (signal?.aborted) return abortError(signal);
    return undefined;
  }

  /** A command's timeout in ms (0: none): its own, else the queue's default. */
  private timeoutOf(opts: SubmitOptions | undefined): number {
    return opts?.timeout === undefined ? this.defaultTimeout : opts.timeout;
  }

  /** Take a checked command: dispatched at once when a slot is free, else queued behind the waiting ones. */
  private enqueue(cmd: NvmeCommand, opts: SubmitOptions | undefined, resolve: (c: Completion) => void, reject: (e: Error) => void): void {
    const signal = opts?.signal;
    const timeout = this.timeoutOf(opts);
    const entry: Entry = {
      cmd,
      cid: 0,
      slot: -1,
      opcode: cmd.sqe[0]!,
      fctype: cmd.sqe[0] === FABRICS_OPCODE ? cmd.sqe[4]! : -1,
      sent: false,
      settled: false,
      resolve,
      reject,
      deadline: timeout > 0 ? performance.now() + timeout : 0,
      readBuf: undefined,
      received: 0,
      r2tRequested: 0,
      error: undefined,
      opts,
      onAbort: undefined,
      startedAt: 0,
    };
    this.unsettled++;
    if (this.busyPoll) pollBegin();
    if (signal) {
      entry.onAbort = () => this.abortEntry(entry, abortError(signal));
      signal.addEventListener('abort', entry.onAbort, { once: true });
    }
    if (entry.deadline) this.ensureSweep();
    if (this.freeSlots.length > 0 && this.waitingHead === this.waiting.length) this.dispatch(entry);
    else this.waiting.push(entry);
  }

  /** Assign a CID and put the command on the wire. */
  private dispatch(e: Entry): void {
    const slot = this.freeSlots.pop()!;
    const genMask = (1 << (16 - this.slotBits)) - 1;
    let gen = (this.gens[slot]! + 1) & genMask;
    // CID 0xFFFF is reserved (the Error Information log's "no command"): skip the generation that would make it.
    if (((gen << this.slotBits) | slot) === RESERVED_CID) gen = (gen + 1) & genMask;
    this.gens[slot] = gen;
    e.slot = slot;
    e.cid = (gen << this.slotBits) | slot;
    e.startedAt = chEnd.hasSubscribers ? performance.now() : 0;
    this.slots[slot] = e;
    this.inflight++;
    const { sqe, data } = e.cmd;
    setCid(sqe, e.cid);
    const readLength = e.cmd.readLength ?? 0;
    let inCapsule: Buffer | null = null;
    if (data && data.length > 0) {
      if (data.length <= this.inCapsuleBytes) {
        writeDataSgl(sqe, data.length, true);
        inCapsule = toBuffer(data);
      } else {
        writeDataSgl(sqe, data.length, false);
      }
    } else if (readLength > 0) {
      writeDataSgl(sqe, readLength, false);
      e.readBuf = e.opts?.readInto ?? Buffer.allocUnsafe(readLength);
    } else {
      writeDataSgl(sqe, 0, false);
    }
    e.sent = true;
    if (chStart.hasSubscribers) chStart.publish({ qid: this.qid, cid: e.cid, name: e.cmd.name, opcode: e.opcode } satisfies CommandStartMessage);
    // The only command on the wire (queue depth 1, or the first of a burst): sent now; with others in flight it
    // joins the batch flushed at the end of the tick.
    if (this.inflight === 1) this.stream.sendPduNow({ type: PduType.CapsuleCmd, sqe, data: inCapsule });
    else this.stream.sendPdu({ type: PduType.CapsuleCmd, sqe, data: inCapsule });
  }

  private handlePdu(pdu: Pdu): void {
    switch (pdu.type) {
      case PduType.ICResp:
        if (!this.icResolve || this._state !== 'connecting') throw protocolError.sequence(`queue ${this.qid}: unexpected ICResp`);
        this.icResolve(pdu);
        this.icResolve = this.icReject = undefined;
        return;
      case PduType.C2HTermReq:
        this.destroy(new TerminatedError(`queue ${this.qid}: controller terminated the connection: ${fesName(pdu.fes)} (FES ${pdu.fes}, FEI 0x${pdu.fei.toString(16)})`, pdu.fes, pdu.fei));
        return;
      case PduType.CapsuleResp:
        this.onCapsuleResp(pdu.cqe);
        return;
      case PduType.C2HData:
        this.onC2HData(pdu.cccid, pdu.success, !!pdu.dataDigestError);
        return;
      case PduType.R2T:
        this.onR2T(pdu.cccid, pdu.ttag, pdu.r2to, pdu.r2tl);
        return;
      default:
        throw protocolError.invalidField(`queue ${this.qid}: unexpected PDU type 0x${pdu.type.toString(16)}`, PduField.TYPE);
    }
  }

  private lookup(cid: number, what: string, fei: number): Entry {
    if (this._state === 'connecting') throw protocolError.sequence(`queue ${this.qid}: ${what} before ICResp`);
    const slot = cid & ((1 << this.slotBits) - 1);
    const e = slot < this.depth ? this.slots[slot] : undefined;
    if (!e || e.cid !== cid) {
      throw protocolError.invalidField(`queue ${this.qid}: ${what} for unknown command id ${cid}`, fei);
    }
    return e;
  }

  private onCapsuleResp(cqeBuf: Buffer): void {
    const cqe = decodeCqe(cqeBuf);
    const e = this.lookup(cqe.cid, 'completion', PduField.CQE_CID);
    this.complete(e, cqe);
  }

  /**
   * Direct data placement (called by the reader once a C2HData header is valid, before its payload): check the
   * PDU against its command and return where its payload goes: a view of the command's buffer at DATAO. A command
   * that has already settled (timed out, aborted) gets nothing: its late data is read and discarded, never written
   * into a buffer the caller got back.
   */
  private placeC2HData(h: DataPduHeader): Buffer | null {
    const e = this.lookup(h.cccid, 'C2HData', PduField.CCCID);
    const buf = e.readBuf;
    if (!buf) throw protocolError.sequence(`queue ${this.qid}: C2HData for command ${h.cccid} (${e.cmd.name}) that reads no data`);
    const readLength = e.cmd.readLength ?? 0;
    if (h.datao !== e.received) {
      throw protocolError.outOfRange(`queue ${this.qid}: C2HData offset ${h.datao} for command ${h.cccid}, expected ${e.received}`);
    }
    if (h.datao + h.datal > readLength) {
      throw protocolError.outOfRange(`queue ${this.qid}: C2HData ${h.datao}+${h.datal} exceeds the ${readLength}-byte transfer of command ${h.cccid}`);
    }
    e.received += h.datal;
    if (e.settled) return null;
    return h.datao === 0 && h.datal === buf.length ? buf : buf.subarray(h.datao, h.datao + h.datal);
  }

  private onC2HData(cccid: number, success: boolean, digestError: boolean): void {
    const e = this.lookup(cccid, 'C2HData', PduField.CCCID);
    if (digestError && !e.error) e.error = new DigestError('data', 0, 0);
    if (success) this.complete(e, { dw0: 0, dw1: 0, sqhd: 0, sqid: this.qid, cid: cccid, status: C2H_SUCCESS_STATUS });
  }

  private onR2T(cccid: number, ttag: number, r2to: number, r2tl: number): void {
    const e = this.lookup(cccid, 'R2T', PduField.CCCID);
    const data = e.cmd.data;
    if (!data || data.length <= this.inCapsuleBytes) {
      throw protocolError.sequence(`queue ${this.qid}: R2T for command ${cccid} (${e.cmd.name}) that has no data to transfer`);
    }
    if (r2tl === 0 || r2to + r2tl > data.length) {
      throw protocolError.outOfRange(`queue ${this.qid}: R2T ${r2to}+${r2tl} outside the ${data.length}-byte transfer of command ${cccid}`);
    }
    if (r2to !== e.r2tRequested) {
      throw protocolError.outOfRange(`queue ${this.qid}: R2T offset ${r2to} for command ${cccid}, expected ${e.r2tRequested}`);
    }
    e.r2tRequested += r2tl;
    const src = toBuffer(data);
    const max = this.maxh2cdata > 0 ? this.maxh2cdata : r2tl;
    const end = r2to + r2tl;
    for (let off = r2to; off < end; off += max) {
      const len = Math.min(max, end - off);
      this.stream.sendPdu({ type: PduType.H2CData, cccid, ttag, datao: off, last: off + len === end, data: src.subarray(off, off + len) });
    }
  }

  /** The command is finished on the wire: free its slot and settle its promise if not already settled. */
  private complete(e: Entry, cqe: Cqe): void {
    const readLength = e.cmd.readLength ?? 0;
    if (e.received < readLength && cqeOk(cqe) && !e.cmd.allocationLength) {
      // NVMe has no short transfers: success with bytes missing is a broken controller (Linux fails it, EPROTO).
      // Only an allocation length (Authentication Receive) may be filled in part.
      throw protocolError.sequence(
        `queue ${this.qid}: controller completed ${e.cmd.name} (cid ${e.cid}) successfully after sending ${e.received} of ${readLength} bytes`,
      );
    }
    this.slots[e.slot] = undefined;
    this.freeSlots.push(e.slot);
    this.inflight--;
    if (!e.settled) {
      this.settle(e);
      const ok = cqeOk(cqe);
      if (!ok && this.onStatusError) this.onStatusError(e.cmd, cqe);
      if (!ok && !e.opts?.allowStatusError) {
        const err = statusError(cqe, { opcode: e.opcode, fctype: e.fctype >= 0 ? e.fctype : undefined, admin: this.qid === 0, command: e.cmd.name, qid: this.qid });
        if (chEnd.hasSubscribers) this.publishEnd(e, 'status', cqe.status, err);
        e.reject(err);
      } else if (ok && e.error) {
        if (chEnd.hasSubscribers) this.publishEnd(e, 'error', cqe.status, e.error);
        e.reject(e.error);
      } else {
        if (chEnd.hasSubscribers) this.publishEnd(e, ok ? 'success' : 'status', cqe.status, undefined);
        const buf = e.readBuf;
        const len = e.cmd.allocationLength ? e.received : readLength;
        e.resolve({ cqe, data: buf === undefined || buf.length === len ? buf : buf.subarray(0, len), received: e.received });
      }
    }
    this.pump();
  }

  private pump(): void {
    while (this.freeSlots.length > 0 && this.waitingHead < this.waiting.length && this._state !== 'closed') {
      const next = this.waiting[this.waitingHead]!;
      this.waiting[this.waitingHead++] = undefined as unknown as Entry;
      if (next.settled) continue;
      this.dispatch(next);
    }
    if (this.waitingHead > 1024 && this.waitingHead * 2 > this.waiting.length) {
      this.waiting.splice(0, this.waitingHead);
      this.waitingHead = 0;
    }
  }

  /** Mark a command settled; when none is left unsettled, release close()'s drain wait. */
  private settle(e: Entry): void {
    e.settled = true;
    this.detachAbort(e);
    if (this.busyPoll) pollEnd();
    if (--this.unsettled === 0 && this.drainWaiters.length > 0) {
      const ws = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of ws) queueMicrotask(w);
    }
  }

  private detachAbort(e: Entry): void {
    if (e.onAbort) {
      e.opts?.signal?.removeEventListener('abort', e.onAbort);
      e.onAbort = undefined;
    }
  }

  /**
   * Settle a command early (timeout or abort). A command not yet sent is simply dropped; a sent one keeps its CID
   * reserved until the controller finishes it, so a late completion is recognised and discarded.
   */
  private abortEntry(e: Entry, err: Error): void {
    if (e.settled) return;
    this.settle(e);
    // Its data PDU may be half placed: the rest goes nowhere, never into a buffer the caller has got back.
    if (e.sent && this.stream.reader.placingCccid === e.cid) this.stream.reader.discardPlacement();
    if (e.sent && chEnd.hasSubscribers) {
      this.publishEnd(e, err instanceof TimeoutError ? 'timeout' : err instanceof AbortedError ? 'aborted' : 'error', undefined, err);
    }
    e.reject(err);
    if (!e.sent) this.pump();
  }

  /** `nvmeof:command:end`: once per command that was put on the wire, when its promise settles. */
  private publishEnd(e: Entry, outcome: CommandOutcome, status: number | undefined, error: Error | undefined): void {
    const msg: CommandEndMessage = {
      qid: this.qid,
      cid: e.cid,
      name: e.cmd.name,
      opcode: e.opcode,
      outcome,
      status,
      error,
      durationMs: e.startedAt > 0 ? performance.now() - e.startedAt : undefined,
    };
    chEnd.publish(msg);
  }

  private ensureSweep(): void {
    if (this.sweeping) return;
    this.sweeping = true;
    sweepQueues.add(this);
    if (!sweepTimer) {
      // One timer for every queue pair of the process: thousands of idle controllers cost one wake-up per tick.
      sweepTimer = setInterval(sweepAll, SWEEP_INTERVAL_MS);
      sweepTimer.unref();
    }
  }

  /** @internal Time out overdue commands; returns whether any command still has a deadline (else it leaves the sweep). */
  sweep(): boolean {
    const now = performance.now();
    let pending = false;
    for (const e of this.slots) {
      if (!e || e.settled || !e.deadline) continue;
      if (e.deadline <= now) this.abortEntry(e, new TimeoutError(`queue ${this.qid}: ${e.cmd.name} (cid ${e.cid}) timed out`));
      else pending = true;
    }
    for (let i = this.waitingHead; i < this.waiting.length; i++) {
      const e = this.waiting[i]!;
      if (e.settled || !e.deadline) continue;
      if (e.deadline <= now) this.abortEntry(e, new TimeoutError(`queue ${this.qid}: ${e.cmd.name} timed out waiting for a free queue slot`));
      else pending = true;
    }
    if (!pending) this.sweeping = false;
    return pending;
  }

  /** Stop taking commands, wait until every command has finished, then close the connection. Idempotent. */
  async close(): Promise<void> {
    if (this._state === 'ready') {
      this.transition('closing');
      if (this.unsettled > 0) {
        await new Promise<void>((r) => this.drainWaiters.push(r));
      }
      if (this.state === 'closing') {
        this.finish(undefined);
        this.stream.endAfterWrites();
        const t = setTimeout(() => this.socket.destroy(), 2000);
        t.unref();
      }
    } else if (this._state === 'connecting') {
      this.destroy(new ConnectionClosedError(`queue ${this.qid}: closed while connecting`));
    }
    await this.closedPromise;
  }

  /** Fail every pending command now and close the socket. Idempotent. */
  destroy(err?: Error): void {
    if (this._state === 'closed') return;
    this.finish(err ?? new ConnectionClosedError(`queue ${this.qid}: destroyed`));
    this.socket.destroy();
  }

  private finish(err: Error | undefined): void {
    this._state = 'closed';
    this.closeError = err;
    // Nothing more is read: not even the rest of the chunk being handled (after a C2HTermReq, say).
    this.stream.stop();
    if (this.sweeping) {
      this.sweeping = false;
      sweepQueues.delete(this);
      if (sweepQueues.size === 0 && sweepTimer) {
        clearInterval(sweepTimer);
        sweepTimer = undefined;
      }
    }
    const failure = err ?? new ConnectionClosedError(`queue ${this.qid}: closed`);
    for (let i = 0; i < this.slots.length; i++) {
      const e = this.slots[i];
      if (e) {
        this.slots[i] = undefined;
        this.abortEntry(e, failure);
      }
    }
    for (let i = this.waitingHead; i < this.waiting.length; i++) this.abortEntry(this.waiting[i]!, failure);
    this.waiting.length = 0;
    this.waitingHead = 0;
    this.inflight = 0;
    const ws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of ws) w();
    if (this.icReject) this.icReject(failure);
    this.icResolve = this.icReject = undefined;
    const ls = this.closeListeners.splice(0);
    for (const l of ls) l(err);
  }
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

const FES_NAMES: Record<number, string> = {
  1: 'Invalid PDU Header Field',
  2: 'PDU Sequence Error',
  3: 'Header Digest Error',
  4: 'Data Transfer Out of Range',
  5: 'Data Transfer Limit Exceeded',
  6: 'Unsupported Parameter',
};

/** The spec's name for a TermReq Fatal Error Status. */
export function fesName(fes: number): string {
  return FES_NAMES[fes] ?? `unknown fatal error status ${fes}`;
}

/**
 * Where the bytes of a socket that reads into the shared buffer go: the queue pair's PDU stream, once it exists
 * (nothing arrives before the queue pair sends ICReq).
 */
interface ReadRelay {
  /** The bytes of one read: `chunk[0, end)`. */
  deliver: ((chunk: Buffer, end: number) => void) | undefined;
  /** Whether the next read should be a large one (a large payload is arriving). */
  large: (() => boolean) | undefined;
}

/**
 * Every queue pair of the process reads its socket into this one buffer: the PDU reader copies what it keeps (payloads
 * into their commands' buffers, partial headers into its own) before the read callback returns, so the next read,
 * of any socket, may overwrite it. No allocation per socket read, and no memory held per idle connection.
 *
 * Reads take 64 KiB at a time, or the whole megabyte while a payload of at least 16 KiB is arriving. Measured against
 * SPDK: large reads drain a stream of 128 KiB C2HData PDUs in far fewer system calls (sequential 128 KiB reads at QD8
 * went from about 1.3-2.3 to 2.6-3.0 GB/s), while for small commands they hurt (4 KiB reads at QD32 fell from about
 * 180K to 100K IOPS: one large read hands over every completion at once, and host and controller then take turns).
 */
const READ_BUFFER = Buffer.allocUnsafeSlow(1024 * 1024);
const READ_SMALL = READ_BUFFER.subarray(0, 64 * 1024);
const LARGE_READ_MIN = 16 * 1024;

async function connectSocket(host: string, port: number, timeoutMs: number, signal?: AbortSignal, relay?: ReadRelay): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect(
      relay
        ? {
            host,
            port,
            onread: {
              // Both sizes are views of the same memory from offset 0, so a read's bytes are always READ_BUFFER[0, n).
              buffer: () => (relay.large?.() ? READ_BUFFER : READ_SMALL),
              callback: (n: number) => (relay.deliver?.(READ_BUFFER, n), true),
            },
          }
        : { host, port },
    );
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('connect', onConnect);
      socket.off('error', onError);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve(socket);
    };
    const onConnect = () => finish();
    const onError = (err: Error) => finish(new ConnectionFailedError(`cannot connect to ${host}:${port}: ${err.message}`, { cause: err }));
    const onAbort = () => finish(abortError(signal!));
    const timer = setTimeout(() => finish(new TimeoutError(`TCP connect to ${host}:${port} timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', onConnect);
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
