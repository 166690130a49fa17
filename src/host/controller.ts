/**
 * Controller: one NVMe-oF association (admin queue + I/O queues) to one subsystem.
 *
 * Bring-up follows the spec and what Linux does: admin queue Connect, Property Get CAP/VS, CC.EN = 1 and wait for
 * CSTS.RDY (bounded by CAP.TO), Identify Controller, Set Features Number of Queues, then one Connect per I/O queue
 * carrying the CNTLID the admin Connect returned. Keep Alive runs on the admin queue at half of KATO.
 */
import { Buffer, constants as bufferConstants } from 'node:buffer';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomInt } from 'node:crypto';
import { debuglog } from 'node:util';
import {
  AuthError,
  ConnectionClosedError,
  ControllerError,
  InvalidArgumentError,
  InvalidStateError,
  KeepAliveError,
  NvmeStatusError,
  TimeoutError,
} from '../errors.js';
import * as cmds from '../protocol/commands.js';
import type { NvmeCommand } from '../protocol/commands.js';
import { decodeCap, decodeCsts, decodeVs, encodeCc, type Cap } from '../protocol/properties.js';
import { statusError } from '../protocol/status.js';
import { cqeOk, statusSc, statusSct, type Cqe } from '../protocol/cqe.js';
import { SqeOffset } from '../protocol/sqe.js';
import { FABRICS_OPCODE, FabricsType, Property, StatusCodeType } from '../protocol/constants.js';
import { DISCOVERY_NQN, validateNqn } from '../protocol/nqn.js';
import { ControllerType, parseIdentifyController, parseIdentifyNamespace, parseNamespaceList, parseNsIdDescriptors, mdtsBytes, type IdentifyController, type OncsFlags } from '../protocol/identify.js';
import type { AnaLog } from '../protocol/logpages.js';
import { MAX_QUEUE_DEPTH, QueuePair, type Completion, type SubmitOptions } from '../transport/queue-pair.js';
import { abortError, checkBoolean, checkInteger, checkOptions, checkSignal, MAX_TIMER_MS, withTimeout } from '../util.js';
import { resolveHostIdentity, type HostIdentity } from './identity.js';
import { authenticate, parseDhchapOptions, type AuthenticationInfo, type DhchapCredentials, type DhchapOptions } from './auth.js';
import { Namespace } from './namespace.js';
import { tlsCredentials, type TlsInfo, type TlsOptions } from './tls.js';
import type { TlsPskCredentials } from '../protocol/tls-psk.js';
import { AnaTracker, readAnaLog, type AnaDiff, type AnaRefreshReason } from './ana.js';
import { anaStateFromPathStatus, type AnaStateName } from '../protocol/ana.js';
import { AsyncEventEngine, type AsyncEventStatus } from './aer.js';
import { startKeepAlive, stopKeepAlive } from './keep-alive.js';
import {
  EventHub,
  type ControllerEvent,
  type ControllerEventMap,
  CONTROLLER_EVENT_TYPES,
  type ControllerEventIterator,
  type ControllerEventType,
  type EventIteratorOptions,
} from './events.js';

const debug = debuglog('nvmeof');

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** Target address (IPv4, IPv6 or host name). */
  host: string;
  /** Target TCP port. Default 4420. */
  port?: number;
  /** Subsystem NQN. */
  subnqn: string;
  /** Host NQN; default /etc/nvme/hostnqn, else a per-process UUID NQN. */
  hostnqn?: string;
  /** Host ID (UUID); default /etc/nvme/hostid, else derived from the host NQN. */
  hostid?: string;
  /** Keep Alive Timeout in ms (0 disables keep-alive). Default 5000, as Linux. */
  kato?: number;
  /** Number of I/O queues to create. Default min(4, CPUs). 0 creates an admin-only controller. */
  ioQueues?: number;
  /** Commands in flight per I/O queue. Default 128. */
  queueSize?: number;
  /** Commands in flight on the admin queue. Default 32. */
  adminQueueSize?: number;
  /** Ask for header digests (CRC32C of every PDU header). Default false. */
  headerDigest?: boolean;
  /** Ask for data digests (CRC32C of every PDU's data). Default false. */
  dataDigest?: boolean;
  /** Timeout in ms for establishing each queue (TCP + ICReq + Connect). Default 10000. */
  connectTimeout?: number;
  /** Default per-command timeout in ms (0 = none). Default 30000. */
  commandTimeout?: number;
  /**
   * Largest data transfer per command in bytes; larger requests are split. Default 1 MiB, further limited by the
   * controller's MDTS. Also bounds the C2HData PDU size the host accepts.
   */
  maxTransferSize?: number;
  /**
   * Asynchronous events: enable them with Set Features (Asynchronous Event Configuration) and keep AER commands
   * outstanding, delivering typed events through `on()` / `events()`. Default true.
   */
  events?: boolean;
  /**
   * DH-HMAC-CHAP in-band authentication: the host secret (and the controller secret for bidirectional
   * authentication), and the hashes and DH groups to offer. Used on every queue whose Connect response asks for
   * authentication (AUTHREQ.ATR); a controller that does not ask is not authenticated.
   */
  dhchap?: DhchapOptions;
  /**
   * TLS 1.3 with a pre-shared key: every queue runs a TLS handshake right after TCP connect, before ICReq, and all
   * PDUs travel inside it. Failures are NVMEOF_ERR_TLS.
   */
  tls?: TlsOptions;
  /**
   * Poll for completions: while I/O commands are outstanding the event loop polls its sockets instead of sleeping
   * until the kernel wakes it, as Linux's polled queues and SPDK do. Cuts the latency of each command at low queue
   * depth (on the development machine 4 KiB reads at QD1 ran about twice as fast), and keeps a core busy while I/O is
   * in flight. The admin queue is never polled. Default false.
   */
  busyPoll?: boolean;
  signal?: AbortSignal;
}

/** Security of an association (`ctrl.security`). */
export interface ControllerSecurity {
  /** Set when the admin queue was authenticated with DH-HMAC-CHAP (by the last transaction on it). */
  authentication?: AuthenticationInfo;
  /** Set when the queues run over TLS: what the admin queue's handshake negotiated. */
  tls?: TlsInfo;
}

/** TLS identity and PSK per controller, kept out of the object so that printing a controller shows no key. */
const tlsSecrets = new WeakMap<Controller, TlsPskCredentials>();

/** Options for {@link Controller.readLog}. */
export interface ReadLogOptions {
  /** Log Page Identifier. */
  lid: number;
  /** Bytes to read: a positive multiple of 4. Reads larger than one transfer are split with the Log Page Offset. */
  length: number;
  /** Log Page Offset in bytes (multiple of 4) where the read starts. Default 0. */
  offset?: number;
  /** Namespace ID. Default 0. */
  nsid?: number;
  /** Log Specific Parameter (e.g. 1 = Return Groups Only for the ANA log). */
  lsp?: number;
  /** Log Specific Identifier. */
  lsi?: number;
  /**
   * Retain Asynchronous Event. Default false: reading the log acknowledges the event that named it, so the controller
   * can report the next one. Split reads retain it on every piece but the last.
   */
  rae?: boolean;
  /** Per-command timeout in ms. */
  timeout?: number;
  signal?: AbortSignal;
}

/** Most AERs a controller keeps outstanding (AERL + 1 permitting). */
const MAX_AERS = 4;

const DEFAULT_MAX_TRANSFER = 1024 * 1024;

/** Lifecycle of a controller. */
export type ControllerState = 'connecting' | 'live' | 'closing' | 'closed';

/** The transitions a controller may make; every state change goes through `transition()`, which holds to this. */
const TRANSITIONS: Readonly<Record<ControllerState, readonly ControllerState[]>> = {
  connecting: ['live', 'closed'],
  live: ['closing', 'closed'],
  closing: ['closed'],
  closed: [],
};

/**
 * What a controller learned at bring-up: its identity and limits. Built while it connects and frozen when it goes
 * live; never changes after.
 */
export interface ControllerInfo {
  /** Controller ID returned by the admin Connect. */
  readonly cntlid: number;
  /** Decoded CAP property. */
  readonly cap: Cap;
  /** Decoded VS property. */
  readonly version: { readonly major: number; readonly minor: number; readonly tertiary: number };
  /** Parsed Identify Controller data. */
  readonly identity: IdentifyController;
  /** Largest data transfer per command in bytes: the smaller of `maxTransferSize` and the controller's MDTS. */
  readonly maxTransferBytes: number;
  /** Commands in flight per I/O queue (the depth each queue was created with; 0 without I/O queues). */
  readonly ioQueueDepth: number;
}

/** Called once when the controller closes (`err` undefined) or fails. @inline */
type CloseListener = (err: Error | undefined) => void;

/** A connected NVMe-oF controller. Create with {@link connect}. */
export class Controller {
  readonly host: string;
  readonly port: number;
  readonly subnqn: string;
  readonly hostnqn: string;
  readonly hostid: string;
  /** Keep Alive Timeout in ms as negotiated (0 = disabled). */
  readonly kato: number;
  /** Identity and limits, filled in during bring-up and frozen when the controller goes live. */
  private _info: { -readonly [K in keyof ControllerInfo]?: ControllerInfo[K] } = {};

  private readonly opts: ConnectOptions;
  private admin!: QueuePair;
  private ioqs: QueuePair[] = [];
  private _state: ControllerState = 'connecting';
  private kaInFlight = false;
  private failure: Error | undefined;
  private destroying = false;
  private readonly closeListeners: CloseListener[] = [];
  private rr = 0;
  private readonly hub = new EventHub(() => this.cntlid);
  private aen: AsyncEventEngine | undefined;
  private ana: AnaTracker | undefined;
  /** Aborted when the controller closes: ends waits that must not outlive it. */
  private readonly lifetime = new AbortController();
  /** Parsed DH-HMAC-CHAP keys (never printed), kept out of `opts`. */
  private readonly credentials: DhchapCredentials | undefined;
  private authInfo: AuthenticationInfo | undefined;
  /** Next DH-HMAC-CHAP transaction identifier. */
  private nextTid = randomInt(0, 0x10000);
  private reauthInFlight: Promise<AuthenticationInfo> | undefined;

  private constructor(opts: ConnectOptions, id: HostIdentity, credentials: DhchapCredentials | undefined) {
    const { dhchap: _dhchap, ...rest } = opts;
    this.opts = rest;
    this.credentials = credentials;
    this.host = opts.host;
    this.port = opts.port ?? 4420;
    this.subnqn = opts.subnqn;
    this.hostnqn = id.hostnqn;
    this.hostid = id.hostid;
    this.kato = opts.kato ?? 5000;
  }

  /** Validate options, then bring up the controller. */
  static async connect(opts: ConnectOptions): Promise<Controller> {
    validateConnectOptions(opts);
    const credentials = opts.dhchap === undefined ? undefined : parseDhchapOptions(opts.dhchap);
    if (opts.signal?.aborted) throw abortError(opts.signal);
    const id = resolveHostIdentity({ hostnqn: opts.hostnqn, hostid: opts.hostid });
    const tls = opts.tls === undefined ? undefined : tlsCredentials(opts.tls, id.hostnqn, opts.subnqn);
    const ctrl = new Controller({ ...opts, tls: undefined }, id, credentials);
    if (tls) tlsSecrets.set(ctrl, tls);
    try {
      await ctrl.bringUp();
    } catch (err) {
      ctrl.destroy(err as Error);
      throw err;
    }
    return ctrl;
  }

  /** Current lifecycle state. */
  get state(): ControllerState {
    return this._state;
  }

  /** The only place the state changes: refuses a transition the lifecycle does not have. */
  private transition(to: ControllerState, why?: string): void {
    const from = this._state;
    if (!TRANSITIONS[from].includes(to)) throw new InvalidStateError(`controller ${this.subnqn}: invalid transition ${from} -> ${to}`);
    this._state = to;
    debug('controller %d of %s: %s -> %s%s', this.cntlid, this.subnqn, from, to, why ? ` (${why})` : '');
  }

  /** Identity and limits learned at bring-up (a frozen record once the controller is live). */
  get info(): ControllerInfo {
    return this._info as ControllerInfo;
  }

  /** Controller ID returned by the admin Connect (0 until then). */
  get cntlid(): number {
    return this._info.cntlid ?? 0;
  }

  /** Decoded CAP property. */
  get cap(): Cap {
    return this._info.cap!;
  }

  /** Decoded VS property. */
  get version(): ControllerInfo['version'] {
    return this._info.version!;
  }

  /** Parsed Identify Controller data. */
  get identity(): IdentifyController {
    return this._info.identity!;
  }

  /** Largest data transfer per command in bytes: the smaller of `maxTransferSize` and the controller's MDTS. */
  get maxTransferBytes(): number {
    return this._info.maxTransferBytes ?? DEFAULT_MAX_TRANSFER;
  }

  /** Commands in flight per I/O queue (the depth each queue was created with). */
  get ioQueueDepth(): number {
    return this._info.ioQueueDepth ?? 0;
  }

  /** Optional NVM commands supported (Identify Controller ONCS), used to refuse unsupported commands before sending. */
  get oncs(): OncsFlags | undefined {
    return this.identity?.decoded.oncs;
  }

  /** Digests negotiated on the admin queue (I/O queues negotiate the same). */
  get digests(): { header: boolean; data: boolean } {
    return { header: !!this.admin?.hdgst, data: !!this.admin?.ddgst };
  }

  /** Number of I/O queues connected. */
  get ioQueueCount(): number {
    return this.ioqs.length;
  }

  /** Round-trip time in ms of the last successful Keep Alive (undefined until one completes, or with kato 0). */
  keepAliveRtt: number | undefined;
  /** When the last Keep Alive completed (Date.now() ms). */
  lastKeepAliveAt: number | undefined;

  /** Register a listener called once when the controller closes or fails. */
  onClose(fn: CloseListener): void {
    if (this._state === 'closed') queueMicrotask(() => fn(this.failure));
    else this.closeListeners.push(fn);
  }

  private qpOptions(qid: number, depth: number) {
    return {
      host: this.host,
      port: this.port,
      qid,
      depth,
      headerDigest: this.opts.headerDigest,
      dataDigest: this.opts.dataDigest,
      connectTimeout: this.opts.connectTimeout,
      commandTimeout: this.opts.commandTimeout,
      // A C2HData PDU never carries more than one command's transfer; allow headroom for admin reads (log pages).
      maxC2HData: Math.max(this.opts.maxTransferSize ?? DEFAULT_MAX_TRANSFER, DEFAULT_MAX_TRANSFER),
      signal: this.opts.signal,
      tls: tlsSecrets.get(this),
    };
  }

  private async connectQueue(qp: QueuePair, qid: number, sqsize: number, cntlid: number): Promise<number> {
    const cmd = cmds.connect({ qid, sqsize, kato: this.kato, hostid: this.hostid, cntlid, subnqn: this.subnqn, hostnqn: this.hostnqn });
    const timeout = this.opts.connectTimeout ?? 10_000;
    const c = await qp.submit(cmd, { timeout, signal: this.opts.signal, allowStatusError: true });
    if (!cqeOk(c.cqe)) {
      throw statusError(c.cqe, {
        opcode: FABRICS_OPCODE,
        fctype: FabricsType.Connect,
        admin: qid === 0,
        command: 'Connect',
        qid,
        connect: { hostnqn: this.hostnqn, subnqn: this.subnqn, qid },
      });
    }
    const result = cmds.parseConnectResult(c.cqe.dw0);
    if (result.secureChannelRequired) {
      throw new AuthError(`queue ${qid} of ${this.subnqn}: the controller requires authentication with a secure channel (AUTHREQ.ASCR), which is not supported`, 'controller', { qid });
    }
    if (result.authRequired) {
      const info = await this.authenticateQueue(qp, qid);
      if (qid === 0) this.authInfo = info;
    }
    return result.cntlid;
  }

  /** One DH-HMAC-CHAP transaction on a queue. */
  private authenticateQueue(qp: QueuePair, qid: number): Promise<AuthenticationInfo> {
    if (this.credentials === undefined) {
      return Promise.reject(
        new AuthError(`queue ${qid} of ${this.subnqn}: the controller requires DH-HMAC-CHAP authentication (AUTHREQ.ATR) for host ${this.hostnqn}, but no dhchap secret was given`, 'controller', { qid }),
      );
    }
    const tid = this.nextTid;
    this.nextTid = (this.nextTid + 1) & 0xffff;
    return authenticate({
      submit: (cmd, o) => qp.submit(cmd, o),
      qid,
      tid,
      hostnqn: this.hostnqn,
      subnqn: this.subnqn,
      credentials: this.credentials,
      timeout: this.opts.connectTimeout ?? 10_000,
      signal: this.opts.signal,
    });
  }

  /** How the association is secured: the DH-HMAC-CHAP hash, group and direction of the admin queue's last transaction, and the TLS channel. */
  get security(): ControllerSecurity {
    const t = this.admin?.tls;
    return {
      ...(this.authInfo === undefined ? {} : { authentication: { ...this.authInfo } }),
      ...(t ? { tls: { protocol: t.protocol, cipher: t.cipher, identity: t.identity } } : {}),
    };
  }

  /**
   * Run a new DH-HMAC-CHAP transaction on the live admin queue (after a key rotation on the target, for example).
   * Needs `dhchap` in the connect options. Rejects with AuthError when the transaction fails.
   */
  async reauthenticate(): Promise<AuthenticationInfo> {
    if (this._state !== 'live') throw this.failure ?? new InvalidStateError(`controller is ${this._state}`);
    if (this.credentials === undefined) throw new InvalidStateError('reauthenticate() needs the dhchap option at connect');
    // One transaction at a time on the admin queue: calls made while one runs share it.
    this.reauthInFlight ??= this.authenticateQueue(this.admin, 0).finally(() => {
      this.reauthInFlight = undefined;
    });
    const info = await this.reauthInFlight;
    this.authInfo = info;
    return { ...info };
  }

  private async bringUp(): Promise<void> {
    const adminDepth = this.opts.adminQueueSize ?? 32;
    this.admin = await QueuePair.open(this.qpOptions(0, adminDepth));
    this.admin.onClose((err) => this.onQueueClosed(0, err));
    // The admin SQ holds one more entry than we keep in flight.
    const info = this._info;
    info.cntlid = await this.connectQueue(this.admin, 0, adminDepth + 1, 0xffff);
    debug('admin queue connected, cntlid %d', this.cntlid);

    info.cap = Object.freeze(decodeCap(await this.propertyGet(Property.CAP, 8)));
    info.version = Object.freeze(decodeVs(Number(await this.propertyGet(Property.VS, 4))));
    await this.enable();

    info.identity = parseIdentifyController((await this.adminCommand(cmds.identifyController())).data!);
    const mdts = mdtsBytes(info.identity.mdts, info.cap.mpsmin);
    const cap = this.opts.maxTransferSize ?? DEFAULT_MAX_TRANSFER;
    info.maxTransferBytes = mdts === null ? cap : Math.min(cap, mdts);
    info.ioQueueDepth = 0;

    const wanted = this.opts.ioQueues ?? Math.min(4, availableParallelism());
    if (wanted > 0) {
      const res = await this.adminCommand(cmds.setNumberOfQueues(wanted, wanted));
      const granted = Math.min((res.cqe.dw0 & 0xffff) + 1, (res.cqe.dw0 >>> 16) + 1);
      const count = Math.min(wanted, granted);
      const depth = Math.max(1, Math.min(this.opts.queueSize ?? 128, this.cap.mqes));
      info.ioQueueDepth = depth;
      const inCapsule = Math.max(0, this.identity.ioccsz * 16 - 64);
      const results = await Promise.allSettled(
        Array.from({ length: count }, async (_, i) => {
          const qid = i + 1;
          const qp = await QueuePair.open({ ...this.qpOptions(qid, depth), inCapsuleBytes: inCapsule, busyPoll: this.opts.busyPoll, onStatusError: this.onIoStatusError });
          try {
            await this.connectQueue(qp, qid, depth + 1, this.cntlid);
          } catch (err) {
            qp.destroy(err as Error);
            throw err;
          }
          return qp;
        }),
      );
      const qps = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        // Close the queues that did connect before failing the bring-up.
        for (const qp of qps) qp.destroy(failed.reason as Error);
        throw failed.reason;
      }
      this.ioqs = qps;
      for (const qp of qps) qp.onClose((err) => this.onQueueClosed(qp.qid, err));
    }
    const discovery = this.isDiscovery;
    if (!discovery && this.identity.decoded.cmic.anaReporting) {
      this.ana = this.makeAnaTracker();
      try {
        await this.ana.refresh(false, 'initial');
      } catch (err) {
        if (!(err instanceof NvmeStatusError)) throw err;
        debug('ANA log not readable at bring-up: %s', err.message);
      }
    }
    let aers = 0;
    if (this.opts.events !== false) {
      this.aen = this.makeEventEngine();
      await this.aen.configure(discovery);
      if (!discovery && this.identity.decoded.oaes.namespaceAttribute) await this.aen.loadNamespaces();
      aers = Math.min(this.identity.aerl + 1, MAX_AERS, Math.max(0, adminDepth - 1));
    }
    this._info = Object.freeze(info);
    this.transition('live');
    this.startKeepAlive();
    this.aen?.start(aers);
  }

  /** True for a discovery controller (well-known discovery NQN, or Identify CNTRLTYPE = discovery). */
  get isDiscovery(): boolean {
    return this.subnqn === DISCOVERY_NQN || this.identity?.cntrltype === ControllerType.Discovery;
  }

  private makeAnaTracker(): AnaTracker {
    const id = this.identity;
    return new AnaTracker(
      (rgo) => readAnaLog((o) => this.readLog(o), id, this.maxTransferBytes, { rgo }),
      id.anatt,
      (log, diff, reason) => this.anaRefreshed(log, diff, reason),
    );
  }

  private anaRefreshed(log: AnaLog, diff: AnaDiff, reason: AnaRefreshReason): void {
    if (reason === 'initial') return;
    if (reason !== 'aen' && diff.changed.length === 0 && diff.groups.length === 0) return;
    this.hub.emit({ type: 'ana-change', log, changed: diff.changed, groups: diff.groups, reason });
  }

  private makeEventEngine(): AsyncEventEngine {
    return new AsyncEventEngine(
      {
        live: () => this._state === 'live',
        admin: (cmd, opts) => this.adminCommand(cmd, opts),
        readLog: (o) => this.readLog(o),
        activeNamespaceIds: () => this.activeNamespaceIds(),
        anaChanged: async () => {
          this.ana ??= this.makeAnaTracker();
          await this.ana.refresh(false, 'aen');
        },
        emit: (ev) => this.hub.emit(ev),
      },
      this.identity,
    );
  }

  /**
   * Subscribe to asynchronous events of one type, or '*' for all. The listener runs synchronously when the event is
   * delivered. Returns a function that unsubscribes.
   */
  on<K extends keyof ControllerEventMap>(type: K, listener: (ev: ControllerEventMap[K]) => void): () => void {
    if (type !== '*' && !CONTROLLER_EVENT_TYPES.has(type)) {
      throw new InvalidArgumentError(`on: unknown event type ${JSON.stringify(type)} (one of ${[...CONTROLLER_EVENT_TYPES].join(', ')} or '*')`);
    }
    if (typeof listener !== 'function') throw new InvalidArgumentError(`on: listener must be a function, got ${typeof listener}`);
    return this.hub.on(type as ControllerEventType | '*', listener as (ev: ControllerEvent) => void);
  }

  /**
   * Async iterator over the events delivered from now on. Each iterator has its own bounded queue
   * (`highWaterMark`, default 1024): when a slow consumer lets it fill, newer events are dropped, counted, and
   * reported by an `{ type: 'overflow', dropped }` event in their place. The iteration ends when the controller
   * closes (after the queued events), and `signal` ends it with the abort reason.
   */
  events(opts?: EventIteratorOptions<ControllerEventType>): ControllerEventIterator {
    return this.hub.iterate(opts);
  }

  /** State of the asynchronous event machinery (undefined when events are disabled). */
  get asyncEvents(): AsyncEventStatus | undefined {
    return this.aen?.status();
  }

  /** ANA state of `nsid` from the last ANA log read (or an ANA path status seen since); undefined if unknown. */
  anaState(nsid: number): AnaStateName | undefined {
    return this.ana?.stateOf(nsid);
  }

  /** ANA group of `nsid` from the last ANA log read; undefined if unknown. */
  anaGroup(nsid: number): number | undefined {
    return this.ana?.groupOf(nsid);
  }

  /** The last ANA log read (undefined when the controller does not report ANA). */
  get anaLog(): AnaLog | undefined {
    return this.ana?.log;
  }

  /**
   * Read the ANA log again and update the ANA state (an 'ana-change' event is emitted if something changed).
   * With `rgo` only the group states are read (Return Groups Only).
   */
  async refreshAnaState(opts: { rgo?: boolean } = {}): Promise<AnaLog> {
    checkOptions('refreshAnaState options', opts);
    checkBoolean('rgo', opts.rgo);
    if (this._state !== 'live') throw this.failure ?? new InvalidStateError(`controller is ${this._state}`);
    this.ana ??= this.makeAnaTracker();
    return this.ana.refresh(!!opts.rgo, 'manual');
  }

  /**
   * How long single-path namespace I/O that meets ANA Transition is retried, ms: ANATT seconds (10 s if the
   * controller reports 0). 0 when the controller does not report ANA.
   */
  get anaTransitionTimeout(): number {
    if (!this.ana) return 0;
    return (this.identity.anatt || 10) * 1000;
  }

  /**
   * Resolve when the ANA state of `nsid` may have changed: an ANA change for it was seen, `ms` passed, or the
   * controller closed. Rejects with the abort reason if `signal` aborts first.
   */
  waitForAnaChange(nsid: number, ms: number, signal?: AbortSignal): Promise<void> {
    try {
      checkInteger('nsid', nsid, 1, 0xffffffff);
      checkInteger('ms', ms, 0, MAX_TIMER_MS);
      checkSignal('signal', signal);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      if (this.lifetime.signal.aborted) {
        resolve();
        return;
      }
      const cleanup = () => {
        clearTimeout(timer);
        off();
        this.lifetime.signal.removeEventListener('abort', done);
        signal?.removeEventListener('abort', onAbort);
      };
      const done = () => {
        cleanup();
        resolve();
      };
      const onAbort = () => {
        cleanup();
        reject(abortError(signal!));
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      const off = this.hub.on('ana-change', (ev) => {
        if (ev.type === 'ana-change' && ev.changed.some((c) => c.nsid === nsid)) done();
      });
      this.lifetime.signal.addEventListener('abort', done, { once: true });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Read a log page (Get Log Page). Reads larger than one transfer (MDTS) are split into several commands using the
   * Log Page Offset. RAE is cleared unless asked for, so the event that named the log is acknowledged.
   */
  async readLog(o: ReadLogOptions): Promise<Buffer> {
    if (!o || typeof o !== 'object') throw new InvalidArgumentError('readLog options must be an object');
    checkBoolean('readLog rae', o.rae);
    const { lid, length } = o;
    const base = o.offset ?? 0;
    if (!Number.isInteger(length) || length < 4 || length % 4 !== 0 || length > bufferConstants.MAX_LENGTH) {
      throw new InvalidArgumentError(`log length must be a positive multiple of 4 of at most ${bufferConstants.MAX_LENGTH} bytes, got ${String(length)}`);
    }
    if (!Number.isSafeInteger(base) || base < 0 || base % 4 !== 0) throw new InvalidArgumentError(`log offset must be a non-negative multiple of 4, got ${String(base)}`);
    const chunk = Math.max(4096, this.maxTransferBytes - (this.maxTransferBytes % 4));
    const submit: SubmitOptions = { timeout: o.timeout, signal: o.signal };
    const page = (off: number, len: number, rae: boolean, into?: Buffer) =>
      this.adminCommand(cmds.getLogPage({ lid, length: len, offset: base + off, nsid: o.nsid, lsp: o.lsp, lsi: o.lsi, rae }), into ? { ...submit, readInto: into } : submit);
    if (length <= chunk) return (await page(0, length, !!o.rae)).data!;
    const out = Buffer.alloc(length);
    for (let off = 0; off < length; off += chunk) {
      const len = Math.min(chunk, length - off);
      await page(off, len, off + len < length ? true : !!o.rae, out.subarray(off, off + len));
    }
    return out;
  }

  /** CC.EN = 1, then wait for CSTS.RDY within CAP.TO. */
  private async enable(): Promise<void> {
    const cc = encodeCc({ en: true, css: 0, mps: 0, ams: 0, shn: 0, iosqes: 6, iocqes: 4 });
    const csts0 = decodeCsts(Number(await this.propertyGet(Property.CSTS, 4)));
    if (csts0.rdy) throw new ControllerError(`controller ${this.cntlid} of ${this.subnqn} is already enabled (CSTS.RDY=1) on a new association`);
    await this.propertySet(Property.CC, 4, cc);
    const limitMs = Math.max(500, this.cap.to * 500);
    const deadline = Date.now() + limitMs;
    let delay = 5;
    while (true) {
      const csts = decodeCsts(Number(await this.propertyGet(Property.CSTS, 4)));
      if (csts.cfs) throw new ControllerError(`controller ${this.cntlid} of ${this.subnqn} reports a fatal status (CSTS.CFS) while enabling`);
      if (csts.rdy) return;
      if (Date.now() >= deadline) throw new TimeoutError(`controller ${this.cntlid} of ${this.subnqn} did not become ready within CAP.TO (${limitMs} ms)`);
      await sleep(delay, undefined, { signal: this.opts.signal });
      delay = Math.min(delay * 2, 100);
    }
  }

  /** Read a controller property (Fabrics Property Get). */
  async propertyGet(offset: number, size: 4 | 8): Promise<bigint> {
    const c = await this.adminCommand(cmds.propertyGet({ offset, size }));
    return size === 8 ? (BigInt(c.cqe.dw1 >>> 0) << 32n) | BigInt(c.cqe.dw0 >>> 0) : BigInt(c.cqe.dw0 >>> 0);
  }

  /** Write a controller property (Fabrics Property Set). */
  async propertySet(offset: number, size: 4 | 8, value: number | bigint): Promise<void> {
    await this.adminCommand(cmds.propertySet({ offset, size, value }));
  }

  private startKeepAlive(): void {
    if (this.kato <= 0) return;
    this.kaOptions.timeout = this.kato;
    startKeepAlive(this.keepAliveClient, Math.max(100, Math.floor(this.kato / 2)));
  }

  /**
   * What the process-wide keep-alive scheduler calls, every KATO/2 or a little earlier. A thousand idle controllers
   * send hundreds of these a second, so each costs as little as a command can: one Keep Alive command reused (one is
   * in flight at a time), callbacks bound once, no promise.
   */
  private readonly keepAliveClient = {
    send: (): void => {
      if (this.kaInFlight || this._state !== 'live') return;
      this.kaInFlight = true;
      this.kaSentAt = performance.now();
      this.admin.submitWith(this.kaCommand, this.kaOptions, this.kaDone, this.kaFailed);
    },
  };
  private readonly kaCommand = cmds.keepAlive();
  private readonly kaOptions: SubmitOptions = { timeout: 0 };
  private kaSentAt = 0;
  private readonly kaDone = (): void => {
    this.kaInFlight = false;
    this.keepAliveRtt = performance.now() - this.kaSentAt;
    this.lastKeepAliveAt = Date.now();
  };
  private readonly kaFailed = (err: Error): void => {
    this.kaInFlight = false;
    // Called from the queue's own work (the sweep, teardown): the controller is torn down after it.
    queueMicrotask(() => {
      if (this._state === 'live') this.destroy(new KeepAliveError(`keep-alive to controller ${this.cntlid} of ${this.subnqn} failed: ${err.message}`, { cause: err }));
    });
  };

  /** Submit a raw admin command. Status errors reject with NvmeStatusError. */
  adminCommand(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion> {
    if (!isCommand(cmd)) return Promise.reject(badCommand(cmd));
    if (this._state === 'closed' || !this.admin) return Promise.reject(this.failure ?? new InvalidStateError('controller is closed'));
    return this.admin.submit(cmd, opts);
  }

  /** Submit a raw I/O command on the least-loaded I/O queue (or the given one, 1-based qid). */
  ioCommand(cmd: NvmeCommand, opts?: SubmitOptions & { qid?: number }): Promise<Completion> {
    if (!isCommand(cmd)) return Promise.reject(badCommand(cmd));
    if (this._state !== 'live') {
      return Promise.reject(this.failure ?? new InvalidStateError(`controller is ${this._state}`));
    }
    if (this.ioqs.length === 0) return Promise.reject(new InvalidStateError('controller has no I/O queues'));
    let qp: QueuePair;
    if (opts?.qid !== undefined) {
      const q = Number.isInteger(opts.qid) ? this.ioqs[opts.qid - 1] : undefined;
      if (!q) return Promise.reject(new InvalidArgumentError(`qid ${String(opts.qid)} names no I/O queue; queues are 1..${this.ioqs.length}`));
      qp = q;
    } else {
      qp = this.pickQueue();
    }
    return qp.submit(cmd, opts);
  }

  /**
   * A completion of an I/O command with an error status (the queue pair calls this before it settles the command):
   * an ANA path status says the ANA state moved, so the tracker refreshes it in the background; the I/O is rejected
   * as it is.
   */
  private readonly onIoStatusError = (cmd: NvmeCommand, cqe: Cqe): void => {
    const sc = statusSc(cqe.status);
    if (this.ana && statusSct(cqe.status) === StatusCodeType.PathRelated && anaStateFromPathStatus(sc) !== undefined) {
      this.ana.noteStatus(cmd.sqe.readUInt32LE(SqeOffset.NSID), sc);
    }
  };

  private pickQueue(): QueuePair {
    const qs = this.ioqs;
    const n = qs.length;
    let best = qs[this.rr % n]!;
    let bestLoad = best.load;
    for (let i = 1; i < n && bestLoad > 0; i++) {
      const q = qs[(this.rr + i) % n]!;
      if (q.load < bestLoad) {
        best = q;
        bestLoad = q.load;
      }
    }
    this.rr = (this.rr + 1) % n;
    return best;
  }

  /** Active namespace IDs (Identify CNS 02h), following the list past 1024 entries. */
  async activeNamespaceIds(): Promise<number[]> {
    const out: number[] = [];
    let start = 0;
    while (true) {
      const c = await this.adminCommand(cmds.activeNamespaceList(start));
      const ids = parseNamespaceList(c.data!);
      out.push(...ids);
      if (ids.length < 1024) return out;
      start = ids[ids.length - 1]!;
      if (start >= 0xfffffffe) return out;
    }
  }

  /** Identify a namespace and return a handle for block I/O. */
  async namespace(nsid: number): Promise<Namespace> {
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > 0xfffffffe) throw new InvalidArgumentError(`nsid must be 1..0xFFFFFFFE, got ${nsid}`);
    const id = parseIdentifyNamespace((await this.adminCommand(cmds.identifyNamespace(nsid))).data!);
    if (id.nsze === 0n) throw new InvalidArgumentError(`namespace ${nsid} is not active on controller ${this.cntlid} of ${this.subnqn}`);
    let descriptors: ReturnType<typeof parseNsIdDescriptors> = [];
    try {
      descriptors = parseNsIdDescriptors((await this.adminCommand(cmds.namespaceIdDescriptors(nsid))).data!);
    } catch (err) {
      if (!(err instanceof NvmeStatusError)) throw err;
    }
    return new Namespace(this, nsid, id, descriptors);
  }

  /**
   * Graceful close: wait for in-flight commands, shut the controller down (CC.SHN = normal, wait CSTS.SHST =
   * complete), and close every connection. Idempotent.
   */
  async close(): Promise<void> {
    if (this._state === 'closed') return;
    if (this._state === 'closing') {
      await new Promise<void>((r) => this.onClose(() => r()));
      return;
    }
    this.transition('closing');
    this.stopKeepAlive();
    this.aen?.stop();
    let failure: Error | undefined;
    try {
      await Promise.all(this.ioqs.map((q) => q.close()));
      await this.shutdown();
      if (this.aen && this.aen.pending > 0) {
        // Outstanding AERs never complete on their own; the controller is shut down, so drop the connection.
        this.admin.destroy(new ConnectionClosedError(`controller ${this.cntlid} of ${this.subnqn} closed`));
        await this.admin.closed;
      } else {
        await this.admin.close();
      }
    } catch (err) {
      failure = err as Error;
      debug('close: %s', failure.message);
      for (const q of this.ioqs) q.destroy(failure);
      this.admin.destroy(failure);
    } finally {
      this.finish(undefined);
    }
    // The connections are gone either way; tell the caller when the orderly shutdown did not complete.
    if (failure) throw failure;
  }

  private async shutdown(): Promise<void> {
    const cc = encodeCc({ en: true, css: 0, mps: 0, ams: 0, shn: 1, iosqes: 6, iocqes: 4 });
    await this.admin.submit(cmds.propertySet({ offset: Property.CC, size: 4, value: cc }));
    const rtd3eMs = this.identity?.rtd3e ? Math.ceil(this.identity.rtd3e / 1000) : 0;
    const limitMs = Math.min(Math.max(rtd3eMs, 5000), 60_000);
    await withTimeout(
      (async () => {
        let delay = 5;
        while (true) {
          const c = await this.admin.submit(cmds.propertyGet({ offset: Property.CSTS, size: 4 }));
          if (decodeCsts(c.cqe.dw0).shst === 2) return;
          await sleep(delay);
          delay = Math.min(delay * 2, 100);
        }
      })(),
      limitMs,
      () => new TimeoutError(`controller ${this.cntlid} did not complete shutdown within ${limitMs} ms`),
    );
  }

  /** Fail everything now and close every connection. Idempotent. */
  destroy(err?: Error): void {
    if (this._state === 'closed' || this.destroying) return;
    // Queues closed below report back through onQueueClosed; the flag keeps them from replacing `err`.
    this.destroying = true;
    const e = err ?? new ConnectionClosedError('controller destroyed');
    this.failure = err;
    this.stopKeepAlive();
    this.aen?.stop();
    for (const q of this.ioqs) q.destroy(e);
    this.admin?.destroy(e);
    this.finish(err);
  }

  private stopKeepAlive(): void {
    stopKeepAlive(this.keepAliveClient);
  }

  private onQueueClosed(qid: number, err: Error | undefined): void {
    // A failed queue fails the whole controller with the queue's own error (its code tells why: protocol,
    // digest, terminated, connection closed).
    if (this._state === 'live' && err) {
      debug('queue %d failed: %s', qid, err.message);
      this.destroy(err);
    }
  }

  private finish(err: Error | undefined): void {
    if (this._state === 'closed') return;
    this.transition('closed', err?.message);
    this.failure = err;
    this.aen?.stop();
    this.lifetime.abort();
    this.hub.close();
    for (const l of this.closeListeners.splice(0)) l(err);
  }
}

function validateConnectOptions(o: ConnectOptions): void {
  if (!o || typeof o !== 'object') throw new InvalidArgumentError('connect options must be an object');
  if (typeof o.host !== 'string' || o.host.length === 0) throw new InvalidArgumentError('host must be a non-empty string');
  if (o.port !== undefined && (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535)) throw new InvalidArgumentError(`port must be 1..65535, got ${o.port}`);
  if (typeof o.subnqn !== 'string') throw new InvalidArgumentError('subnqn must be a string');
  validateNqn(o.subnqn, { name: 'subnqn', strict: false });
  const intRange = (name: string, v: number | undefined, min: number, max: number) => {
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new InvalidArgumentError(`${name} must be an integer ${min}..${max}, got ${v}`);
  };
  intRange('kato', o.kato, 0, 0xffffffff);
  intRange('ioQueues', o.ioQueues, 0, 65534);
  // The queue pair keeps at most MAX_QUEUE_DEPTH commands in flight; a larger queue would fail after the admin queue is up.
  intRange('queueSize', o.queueSize, 1, MAX_QUEUE_DEPTH);
  intRange('adminQueueSize', o.adminQueueSize, 1, 4095);
  intRange('connectTimeout', o.connectTimeout, 1, 3_600_000);
  intRange('commandTimeout', o.commandTimeout, 0, 3_600_000);
  intRange('maxTransferSize', o.maxTransferSize, 4096, 64 * 1024 * 1024);
  for (const name of ['events', 'headerDigest', 'dataDigest', 'busyPoll'] as const) {
    if (o[name] !== undefined && typeof o[name] !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, got ${String(o[name])}`);
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new InvalidArgumentError(`signal must be an AbortSignal, got ${typeof o.signal}`);
}

/** Connect to an NVMe-oF subsystem over TCP and bring the controller up. */
export function connect(opts: ConnectOptions): Promise<Controller> {
  return Controller.connect(opts);
}

/** A command as the builders make it: an object with a 64-byte SQE. */
function isCommand(cmd: unknown): cmd is NvmeCommand {
  return cmd !== null && typeof cmd === 'object' && Buffer.isBuffer((cmd as NvmeCommand).sqe) && (cmd as NvmeCommand).sqe.length === 64;
}

function badCommand(cmd: unknown): InvalidArgumentError {
  const sqe = cmd !== null && typeof cmd === 'object' ? (cmd as { sqe?: unknown }).sqe : undefined;
  const what = cmd === null || typeof cmd !== 'object' ? `got ${cmd === null ? 'null' : typeof cmd}` : Buffer.isBuffer(sqe) ? `its sqe has ${sqe.length} bytes` : 'it has no sqe Buffer';
  return new InvalidArgumentError(`command must be an object with a 64-byte sqe Buffer (from the protocol command builders), ${what}`);
}
