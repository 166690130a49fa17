/**
 * The state of an embedded target: ports, subsystems, controllers, connections, referrals and the
 * discovery log. NvmeTarget is the public face of it.
 */
import type { AuthenticationOutcome, TargetDhchap } from './auth.js';
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { InvalidArgumentError, InvalidStateError } from '../errors.js';
import { LogPageId } from '../protocol/constants.js';
import { AddressFamily, DiscoverySubtype, TransportType, encodeDiscoveryLog, type DiscoveryLogEntryFields } from '../protocol/logpages.js';
import { DISCOVERY_NQN, nqnProblem } from '../protocol/nqn.js';
import { MIN_MAXH2CDATA } from '../protocol/pdu.js';
import { TargetConnection } from './connection.js';
import { TargetController, type ControllerOwner } from './controller.js';
import { AsyncEventConfig, AsyncEventType, NoticeEvent } from '../protocol/async-events.js';
import { FaultInjector, type CommandInfo } from './faults.js';
import { TargetSubsystem, type PortRef, type SubsystemOwner } from './subsystem.js';
import { anaStateValue, type AnaStateInput, type ListenOptions, type NvmeTargetOptions, type ReferralOptions, type SubsystemOptions } from './types.js';

/** Options with every default filled in. */
export type ResolvedOptions = Required<NvmeTargetOptions>;

/** Largest transfer accepted when MDTS is 0 (no limit reported). */
const UNLIMITED_TRANSFER = 64 * 1024 * 1024;

function int(name: string, v: unknown, min: number, max: number, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new InvalidArgumentError(`${name} must be an integer ${min}..${max}, got ${String(v)}`);
  return v;
}

function bool(name: string, v: unknown, def: boolean): boolean {
  if (v === undefined) return def;
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, got ${String(v)}`);
  return v;
}

/** Validate options and fill in defaults. */
export function resolveOptions(o: NvmeTargetOptions = {}): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('target options must be an object');
  const maxh2cdata = int('maxh2cdata', o.maxh2cdata, MIN_MAXH2CDATA, 0xfffffffc, 32 * 1024);
  if (maxh2cdata % 4 !== 0) throw new InvalidArgumentError(`maxh2cdata must be a multiple of 4, got ${maxh2cdata}`);
  const inCapsuleDataSize = int('inCapsuleDataSize', o.inCapsuleDataSize, 0, 1024 * 1024, 8192);
  if (inCapsuleDataSize % 16 !== 0) throw new InvalidArgumentError(`inCapsuleDataSize must be a multiple of 16, got ${inCapsuleDataSize}`);
  const version = o.version ?? '2.0';
  if (version !== '1.3' && version !== '1.4' && version !== '2.0') throw new InvalidArgumentError(`version must be '1.3', '1.4' or '2.0', got ${String(version)}`);
  const scope = o.discoveryScope ?? 'all';
  if (scope !== 'all' && scope !== 'port') throw new InvalidArgumentError(`discoveryScope must be 'all' or 'port', got ${String(scope)}`);
  const firmware = o.firmware ?? '1.0';
  if (typeof firmware !== 'string' || firmware.length > 8 || !/^[\x20-\x7e]*$/.test(firmware)) throw new InvalidArgumentError('firmware must be at most 8 printable ASCII characters');
  return {
    cpda: int('cpda', o.cpda, 0, 31, 0),
    maxh2cdata,
    maxC2HData: int('maxC2HData', o.maxC2HData, 1, 0x7fffffff, 128 * 1024),
    maxR2TLength: int('maxR2TLength', o.maxR2TLength, 0, 0x7fffffff, 0),
    inCapsuleDataSize,
    mdts: int('mdts', o.mdts, 0, 14, 8),
    c2hSuccess: bool('c2hSuccess', o.c2hSuccess, false),
    mqes: int('mqes', o.mqes, 1, 0xffff, 127),
    capTimeout: int('capTimeout', o.capTimeout, 0, 255, 1),
    maxIoQueues: int('maxIoQueues', o.maxIoQueues, 1, 0xfffe, 16),
    kas: int('kas', o.kas, 1, 0xffff, 1),
    trafficBasedKeepAlive: bool('trafficBasedKeepAlive', o.trafficBasedKeepAlive, false),
    enforceKeepAlive: bool('enforceKeepAlive', o.enforceKeepAlive, true),
    version,
    readyDelayMs: int('readyDelayMs', o.readyDelayMs, 0, 600_000, 0),
    maxNamespaces: int('maxNamespaces', o.maxNamespaces, 1, 0xfffffffe, 1024),
    anaGroupMax: int('anaGroupMax', o.anaGroupMax, 1, 0xfffffffe, 32),
    anatt: int('anatt', o.anatt, 0, 255, 10),
    firmware,
    discoveryScope: scope,
    allowDigests: bool('allowDigests', o.allowDigests, true),
    aenEnabledByDefault: bool('aenEnabledByDefault', o.aenEnabledByDefault, true),
  };
}

// ---------------------------------------------------------------------------------------------
// Events

/** A queue connected (successful Connect). */
export interface ConnectEvent {
  connectionId: number;
  portid: number;
  qid: number;
  cntlid: number;
  subnqn: string;
  hostnqn: string;
  hostid: string;
  controller: TargetController;
}

/** A connection closed. */
export interface DisconnectEvent {
  connectionId: number;
  portid: number;
  /** Queue ID, or -1 if the queue never connected. */
  qid: number;
  cntlid: number | undefined;
  subnqn: string | undefined;
  hostnqn: string | undefined;
  reason: string;
}

/** A fatal transport error: a TermReq the host sent, or one the target sent. */
export interface ProtocolErrorEvent {
  connectionId: number;
  portid: number;
  qid: number;
  /** 'received': the host sent an H2CTermReq; 'sent': the target found an error and terminated. */
  direction: 'received' | 'sent';
  fes: number;
  fei: number;
  message: string;
}

/** Payload of the target's 'authentication' event. */
export interface AuthenticationEvent extends AuthenticationOutcome {
  connectionId: number;
  qid: number;
  cntlid: number | undefined;
  subnqn: string | undefined;
  hostnqn: string | undefined;
}

/**
 * What NvmeTarget delivers to `on(type, listener)` and `events()`, told apart by `type`:
 * - `connection`: a TCP connection was accepted;
 * - `connect`: a queue connected (successful Connect); `disconnect`: a connection closed;
 * - `command`: a command capsule arrived (before it is processed);
 * - `controller`: a controller was created by an admin queue Connect; `controller-closed`: one was torn down;
 * - `shutdown`: the host wrote CC.SHN; `property-set`: the host set a property (CC);
 * - `keep-alive-timeout`: a controller's keep-alive timer expired (it is being torn down);
 * - `protocol-error`: a connection ended with a TermReq (either way); `handler-error`: a command handler threw
 *   (the command completed with Internal Error);
 * - `authentication`: a DH-HMAC-CHAP transaction on a queue ended, with its outcome (never a secret);
 * - `overflow`: an `events()` iterator dropped events its full queue could not hold.
 */
export type TargetEvent =
  | { type: 'connection'; connection: TargetConnection }
  | ({ type: 'connect' } & ConnectEvent)
  | ({ type: 'disconnect' } & DisconnectEvent)
  | ({ type: 'command' } & CommandInfo)
  | { type: 'controller'; controller: TargetController }
  | { type: 'controller-closed'; controller: TargetController; reason: string }
  | { type: 'shutdown'; controller: TargetController; shn: number }
  | { type: 'property-set'; controller: TargetController; offset: number; value: bigint }
  | { type: 'keep-alive-timeout'; controller: TargetController }
  | ({ type: 'protocol-error' } & ProtocolErrorEvent)
  | { type: 'handler-error'; error: Error }
  | ({ type: 'authentication' } & AuthenticationEvent)
  | { type: 'overflow'; dropped: number };

/** Each target event type with its event, plus '*' for all: what `NvmeTarget.on(type, listener)` hands a listener. */
export type TargetEventMap = { [K in TargetEvent['type']]: Extract<TargetEvent, { type: K }> } & { '*': TargetEvent };

/** Every target event type, for checking what callers pass to `on()`. */
export const TARGET_EVENT_TYPES: ReadonlySet<string> = new Set<TargetEvent['type']>([
  'connection', 'connect', 'disconnect', 'command', 'controller', 'controller-closed', 'shutdown', 'property-set',
  'keep-alive-timeout', 'protocol-error', 'handler-error', 'authentication', 'overflow',
]);

/** How the core hands events to its NvmeTarget: `wants` first, so hot paths build no event nobody listens to. */
interface Emitter {
  wants(type: TargetEvent['type']): boolean;
  emit(ev: TargetEvent): void;
}


// ---------------------------------------------------------------------------------------------
// Ports and referrals

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/** A listening port of the target. */
export class TargetPort {
  readonly portid: number;
  /** Address bound. */
  readonly host: string;
  /** TCP port bound (the real one when 0 was asked). */
  port = 0;
  /** @internal Port-level ANA group states. */
  readonly anaStates = new Map<number, number>();
  /** @internal */
  readonly connections = new Set<TargetConnection>();
  /** @internal */
  readonly server: net.Server;
  /** True once removed or the target closed. */
  closed = false;
  private readonly core: TargetCore;

  /** @internal */
  constructor(core: TargetCore, portid: number, host: string, server: net.Server) {
    this.core = core;
    this.portid = portid;
    this.host = host;
    this.server = server;
  }

  /** 'IPv4' or 'IPv6'. */
  get family(): 'IPv4' | 'IPv6' {
    return net.isIPv6(this.host) ? 'IPv6' : 'IPv4';
  }

  /** Set the port-level ANA state of a group (for every ANA subsystem on the port) and notify. */
  setAnaState(group: number, state: AnaStateInput): void {
    this.core.setPortAnaState(this, group, state);
  }

  /** Port-level ANA state of a group (subsystems may override it). */
  anaState(group: number): number {
    return this.anaStates.get(group) ?? 1;
  }

  /** Stop listening, close this port's connections and remove it from the discovery log. */
  close(): Promise<void> {
    return this.core.removePort(this);
  }
}

/** A discovery referral; `remove()` takes it out of the discovery log. */
export interface TargetReferral {
  readonly traddr: string;
  readonly trsvcid: string;
  readonly portid: number;
  readonly subnqn: string;
  /** Only this port lists it, or undefined for every port. */
  readonly onPort: number | undefined;
  remove(): void;
}

// ---------------------------------------------------------------------------------------------

/** The target's state and the logic that spans objects (implementation detail, not exported from nvmeof/target). */
export class TargetCore implements SubsystemOwner, ControllerOwner {
  readonly options: ResolvedOptions;
  readonly faults = new FaultInjector();
  readonly startedAt = Date.now();
  readonly maxTransferBytes: number;
  readonly discoverySerial: string;
  readonly ports = new Map<number, TargetPort>();
  readonly subsystems = new Map<string, TargetSubsystem>();
  readonly controllers = new Set<TargetController>();
  readonly connections = new Set<TargetConnection>();
  referrals: TargetReferral[] = [];
  genctr = 0n;
  closed = false;
  private readonly lingering = new Set<net.Socket>();
  private nextConnectionId = 1;
  private nextDiscoveryCntlid = 1;
  private readonly events: Emitter;

  constructor(options: ResolvedOptions, events: Emitter) {
    this.options = options;
    this.events = events;
    this.maxTransferBytes = options.mdts === 0 ? UNLIMITED_TRANSFER : Math.min(UNLIMITED_TRANSFER, 2 ** (12 + options.mdts));
    this.discoverySerial = createHash('sha256').update(`${DISCOVERY_NQN}\n${this.startedAt}`).digest('hex').slice(0, 20);
  }

  get maxNamespaces(): number {
    return this.options.maxNamespaces;
  }

  get anaGroupMax(): number {
    return this.options.anaGroupMax;
  }

  private checkOpen(): void {
    if (this.closed) throw new InvalidStateError('the target is closed');
  }

  // ------------------------------------------------------------------------------------------
  // Ports

  async listen(o: ListenOptions = {}): Promise<TargetPort> {
    this.checkOpen();
    if (o === null || typeof o !== 'object') throw new InvalidArgumentError('listen options must be an object');
    const host = o.host ?? '127.0.0.1';
    if (typeof host !== 'string') throw new InvalidArgumentError('host must be a string');
    const port = int('port', o.port, 0, 65535, 0);
    let portid = o.portid;
    if (portid === undefined) {
      portid = 1;
      while (this.ports.has(portid)) portid++;
    }
    int('portid', portid, 0, 0xfffe, 0);
    if (this.ports.has(portid)) throw new InvalidArgumentError(`port ID ${portid} is already in use`);
    const ana = new Map<number, number>();
    for (const [g, s] of Object.entries(o.ana ?? {})) {
      const group = Number(g);
      if (!Number.isInteger(group) || group < 1 || group > this.options.anaGroupMax) throw new InvalidArgumentError(`ANA group must be 1..${this.options.anaGroupMax}, got ${g}`);
      ana.set(group, anaStateValue(s));
    }
    const server = net.createServer();
    const tp = new TargetPort(this, portid, host, server);
    for (const [g, s] of ana) tp.anaStates.set(g, s);
    server.on('connection', (socket) => this.accept(tp, socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => undefined);
    tp.port = (server.address() as net.AddressInfo).port;
    if (this.closed) {
      server.close();
      throw new InvalidStateError('the target was closed while the port was opening');
    }
    this.ports.set(portid, tp);
    this.discoveryChanged();
    return tp;
  }

  private accept(tp: TargetPort, socket: net.Socket): void {
    if (this.closed || tp.closed) {
      socket.destroy();
      return;
    }
    socket.on('error', () => undefined);
    const conn = new TargetConnection(this, tp, socket, this.nextConnectionId++);
    this.connections.add(conn);
    tp.connections.add(conn);
    if (this.events.wants('connection')) this.events.emit({ type: 'connection', connection: conn });
  }

  portidOf(port: PortRef): number {
    const portid = typeof port === 'number' ? port : port?.portid;
    if (typeof portid !== 'number' || !this.ports.has(portid)) throw new InvalidArgumentError(`no port with port ID ${String(portid)}`);
    return portid;
  }

  portAnaState(portid: number, group: number): number | undefined {
    return this.ports.get(portid)?.anaStates.get(group);
  }

  async removePort(port: PortRef): Promise<void> {
    const portid = typeof port === 'number' ? port : port.portid;
    const tp = this.ports.get(portid);
    if (tp === undefined) return;
    tp.closed = true;
    this.ports.delete(portid);
    const closed = new Promise<void>((r) => tp.server.close(() => r()));
    for (const conn of [...tp.connections]) conn.destroy(`port ${portid} removed`);
    for (const s of this.subsystems.values()) if (s.ports !== 'all') s.ports.delete(portid);
    this.referrals = this.referrals.filter((r) => r.onPort !== portid);
    this.discoveryChanged();
    await closed;
  }

  setPortAnaState(port: PortRef, group: number, state: AnaStateInput): void {
    const portid = this.portidOf(port);
    if (!Number.isInteger(group) || group < 1 || group > this.options.anaGroupMax) throw new InvalidArgumentError(`ANA group must be 1..${this.options.anaGroupMax}, got ${group}`);
    this.ports.get(portid)!.anaStates.set(group, anaStateValue(state));
    for (const s of this.subsystems.values()) {
      if (!s.ana || !s.isOnPort(portid)) continue;
      s.bumpAna([group]);
      this.anaChanged(s, portid);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Subsystems

  addSubsystem(o: SubsystemOptions): TargetSubsystem {
    this.checkOpen();
    if (o === null || typeof o !== 'object') throw new InvalidArgumentError('addSubsystem needs an options object');
    const problem = nqnProblem(o.nqn, false);
    if (problem !== undefined) throw new InvalidArgumentError(`subsystem nqn ${problem}`);
    if (o.nqn === DISCOVERY_NQN) throw new InvalidArgumentError('the discovery subsystem exists already');
    if (this.subsystems.has(o.nqn)) throw new InvalidArgumentError(`subsystem ${o.nqn} already exists`);
    const ports = o.ports === undefined || o.ports === 'all' ? 'all' : new Set(o.ports.map((p) => this.portidOf(p)));
    const s = new TargetSubsystem(this, o, ports);
    this.subsystems.set(o.nqn, s);
    this.discoveryChanged();
    return s;
  }

  removeSubsystem(nqn: string): void {
    const s = this.subsystems.get(nqn);
    if (s === undefined) throw new InvalidArgumentError(`no subsystem ${nqn}`);
    this.subsystems.delete(nqn);
    s.removed = true;
    for (const c of this.controllersOf(s)) c.close(`subsystem ${nqn} removed`);
    this.discoveryChanged();
  }

  private subsystemArg(nqn: string | TargetSubsystem): TargetSubsystem {
    const s = typeof nqn === 'string' ? this.subsystems.get(nqn) : nqn;
    if (s === undefined || s.removed) throw new InvalidArgumentError(`no subsystem ${String(typeof nqn === 'string' ? nqn : nqn.nqn)}`);
    return s;
  }

  linkSubsystem(port: PortRef, nqn: string | TargetSubsystem): void {
    const portid = this.portidOf(port);
    const s = this.subsystemArg(nqn);
    if (s.ports === 'all' || s.ports.has(portid)) return;
    s.ports.add(portid);
    this.discoveryChanged();
  }

  unlinkSubsystem(port: PortRef, nqn: string | TargetSubsystem): void {
    const portid = this.portidOf(port);
    const s = this.subsystemArg(nqn);
    if (s.ports === 'all') s.ports = new Set([...this.ports.keys()].filter((p) => p !== portid));
    else if (!s.ports.delete(portid)) return;
    for (const c of this.controllersOf(s)) if (c.port.portid === portid) c.close(`subsystem ${s.nqn} unlinked from port ${portid}`);
    this.discoveryChanged();
  }

  subsystemOnPort(nqn: string, portid: number): TargetSubsystem | undefined {
    const s = this.subsystems.get(nqn);
    return s !== undefined && s.isOnPort(portid) ? s : undefined;
  }

  // ------------------------------------------------------------------------------------------
  // Referrals

  addReferral(o: ReferralOptions): TargetReferral {
    this.checkOpen();
    if (o === null || typeof o !== 'object') throw new InvalidArgumentError('addReferral needs an options object');
    if (typeof o.traddr !== 'string' || o.traddr.length === 0 || o.traddr.length > 255) throw new InvalidArgumentError('referral traddr must be a non-empty string');
    const trsvcid = String(o.trsvcid);
    if (trsvcid.length === 0 || trsvcid.length > 31) throw new InvalidArgumentError('referral trsvcid must be 1..31 characters');
    const onPort = o.port === undefined ? undefined : this.portidOf(o.port);
    const referral: TargetReferral = {
      traddr: o.traddr,
      trsvcid,
      portid: int('referral portid', o.portid, 0, 0xffff, 0),
      subnqn: o.subnqn ?? DISCOVERY_NQN,
      onPort,
      remove: () => this.removeReferral(referral),
    };
    this.referrals.push(referral);
    this.discoveryChanged();
    return referral;
  }

  removeReferral(r: TargetReferral): void {
    const i = this.referrals.indexOf(r);
    if (i < 0) return;
    this.referrals.splice(i, 1);
    this.discoveryChanged();
  }

  // ------------------------------------------------------------------------------------------
  // Controllers

  controllersOf(subsys: TargetSubsystem): TargetController[] {
    return [...this.controllers].filter((c) => c.subsystem === subsys);
  }

  createController(init: {
    subsystem: TargetSubsystem | undefined;
    subnqn: string;
    hostnqn: string;
    hostid: string;
    hostidBytes: Buffer;
    port: TargetPort;
    kato: number;
  }): TargetController | undefined {
    const used = new Set<number>();
    for (const c of this.controllers) if (c.subsystem === init.subsystem) used.add(c.cntlid);
    const start = init.subsystem?.nextCntlid ?? this.nextDiscoveryCntlid;
    let cntlid = start;
    while (used.has(cntlid)) {
      cntlid = cntlid >= 0xffef ? 1 : cntlid + 1;
      if (cntlid === start) return undefined;
    }
    const next = cntlid >= 0xffef ? 1 : cntlid + 1;
    if (init.subsystem !== undefined) init.subsystem.nextCntlid = next;
    else this.nextDiscoveryCntlid = next;
    const ctrl = new TargetController(this, { cntlid, ...init });
    this.controllers.add(ctrl);
    if (this.events.wants('controller')) this.events.emit({ type: 'controller', controller: ctrl });
    return ctrl;
  }

  controllerClosed(ctrl: TargetController, reason: string): void {
    if (!this.controllers.delete(ctrl)) return;
    if (this.events.wants('controller-closed')) this.events.emit({ type: 'controller-closed', controller: ctrl, reason });
  }

  controllerEvent(name: 'shutdown' | 'keep-alive-timeout' | 'property-set', ctrl: TargetController, extra: { shn?: number; offset?: number; value?: bigint }): void {
    if (!this.events.wants(name)) return;
    if (name === 'shutdown') this.events.emit({ type: 'shutdown', controller: ctrl, shn: extra.shn ?? 0 });
    else if (name === 'keep-alive-timeout') this.events.emit({ type: 'keep-alive-timeout', controller: ctrl });
    else this.events.emit({ type: 'property-set', controller: ctrl, offset: extra.offset ?? 0, value: extra.value ?? 0n });
  }

  // ------------------------------------------------------------------------------------------
  // Notifications

  discoveryChanged(): void {
    if (this.closed) return;
    this.genctr++;
    for (const c of this.controllers) {
      if (c.discovery) c.raiseEvent({ type: AsyncEventType.Notice, info: NoticeEvent.DiscoveryLogPageChange, lid: LogPageId.Discovery }, AsyncEventConfig.DiscoveryLogChange);
    }
  }

  anaChanged(subsys: TargetSubsystem, portid: number | undefined): void {
    for (const c of this.controllersOf(subsys)) {
      if (portid !== undefined && c.port.portid !== portid) continue;
      c.raiseEvent({ type: AsyncEventType.Notice, info: NoticeEvent.AnaChange, lid: LogPageId.Ana }, AsyncEventConfig.AnaChange);
    }
  }

  /** Queue a Reservation Notification log page for every controller of these hosts on `subsys`. */
  reservationNotify(subsys: TargetSubsystem, hostids: readonly string[], rnlpt: number, nsid: number): void {
    if (hostids.length === 0) return;
    const hosts = new Set(hostids);
    for (const c of this.controllersOf(subsys)) if (hosts.has(c.hostid)) c.reservationNotice(rnlpt, nsid);
  }

  namespaceChanged(subsys: TargetSubsystem, nsid: number): void {
    for (const c of this.controllersOf(subsys)) c.namespaceChanged(nsid);
  }

  // ------------------------------------------------------------------------------------------
  // Discovery log

  /** The discovery log as `ctrl` (its host and port) sees it. */
  discoveryLog(ctrl: TargetController, localAddress: string): Buffer {
    const addrOf = (p: TargetPort): string => (isWildcard(p.host) ? localAddress : p.host);
    const adrfam = (a: string): number => (net.isIPv6(a) ? AddressFamily.Ipv6 : AddressFamily.Ipv4);
    const entry = (p: TargetPort, subtype: number, subnqn: string, eflags = 0): Partial<DiscoveryLogEntryFields> => {
      const traddr = addrOf(p);
      return { trtype: TransportType.Tcp, adrfam: adrfam(traddr), subtype, treq: 0, portid: p.portid, cntlid: 0xffff, asqsz: 32, eflags, trsvcid: String(p.port), subnqn, traddr };
    };
    const cur = ctrl.port;
    // Current discovery subsystem: duplicate returned information, explicit persistent connections supported.
    const entries: Partial<DiscoveryLogEntryFields>[] = [entry(cur, DiscoverySubtype.CurrentDiscovery, DISCOVERY_NQN, 0x3)];
    const ports = [...this.ports.values()].sort((a, b) => a.portid - b.portid);
    for (const s of this.subsystems.values()) {
      if (!s.isHostAllowed(ctrl.hostnqn)) continue;
      for (const p of ports) {
        if (this.options.discoveryScope === 'port' && p !== cur) continue;
        if (s.isOnPort(p.portid)) entries.push(entry(p, DiscoverySubtype.Nvm, s.nqn));
      }
    }
    for (const r of this.referrals) {
      if (r.onPort !== undefined && r.onPort !== cur.portid) continue;
      entries.push({
        trtype: TransportType.Tcp, adrfam: adrfam(r.traddr), subtype: DiscoverySubtype.Referral, treq: 0, portid: r.portid,
        cntlid: 0xffff, asqsz: 32, eflags: 0, trsvcid: r.trsvcid, subnqn: r.subnqn, traddr: r.traddr,
      });
    }
    return encodeDiscoveryLog({ genctr: this.genctr, entries });
  }

  // ------------------------------------------------------------------------------------------
  // Connection callbacks

  queueConnected(conn: TargetConnection, ctrl: TargetController): void {
    if (!this.events.wants('connect')) return;
    this.events.emit({
      type: 'connect',
      connectionId: conn.id, portid: conn.port.portid, qid: conn.qid, cntlid: ctrl.cntlid, subnqn: ctrl.subnqn,
      hostnqn: ctrl.hostnqn, hostid: ctrl.hostid, controller: ctrl,
    });
  }

  commandReceived(info: CommandInfo): void {
    if (this.events.wants('command')) this.events.emit({ type: 'command', ...info });
  }

  protocolError(conn: TargetConnection, e: { direction: 'received' | 'sent'; fes: number; fei: number; message: string }): void {
    if (this.events.wants('protocol-error')) this.events.emit({ type: 'protocol-error', connectionId: conn.id, portid: conn.port.portid, qid: conn.qid, ...e });
  }

  /** A socket that is closing gracefully after its connection ended; close() destroys what is left. */
  linger(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.lingering.add(socket);
    socket.once('close', () => this.lingering.delete(socket));
  }

  /** DH-HMAC-CHAP settings per host NQN for the discovery subsystem. */
  readonly discoveryDhchap = new Map<string, TargetDhchap>();

  authenticationEnded(conn: TargetConnection, o: AuthenticationOutcome): void {
    if (!this.events.wants('authentication')) return;
    const c = conn.controller;
    this.events.emit({ type: 'authentication', connectionId: conn.id, qid: conn.qid, cntlid: c?.cntlid, subnqn: c?.subnqn, hostnqn: c?.hostnqn, ...o });
  }

  handlerError(_conn: TargetConnection, err: Error): void {
    if (this.events.wants('handler-error')) this.events.emit({ type: 'handler-error', error: err });
  }

  connectionClosed(conn: TargetConnection, reason: string): void {
    if (!this.connections.delete(conn)) return;
    conn.port.connections.delete(conn);
    const c = conn.controller;
    if (!this.events.wants('disconnect')) return;
    this.events.emit({
      type: 'disconnect',
      connectionId: conn.id, portid: conn.port.portid, qid: conn.qid, cntlid: c?.cntlid, subnqn: c?.subnqn, hostnqn: c?.hostnqn, reason,
    });
  }

  // ------------------------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const servers = [...this.ports.values()].map((p) => {
      p.closed = true;
      return new Promise<void>((r) => p.server.close(() => r()));
    });
    for (const conn of [...this.connections]) conn.destroy('target closed');
    for (const socket of this.lingering) socket.destroy();
    this.lingering.clear();
    for (const c of [...this.controllers]) c.close('target closed');
    this.ports.clear();
    await Promise.all(servers);
  }
}
