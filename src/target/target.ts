/**
 * NvmeTarget: an in-process NVMe/TCP controller on node:net, for demos, fault injection and tests.
 *
 * ```ts
 * import { NvmeTarget } from 'nvmeof/target';
 * const target = new NvmeTarget();
 * const port = await target.listen({ host: '127.0.0.1', port: 0 });
 * const subsys = target.addSubsystem({ nqn: 'nqn.2024-01.io.example:disk' });
 * subsys.addNamespace({ blocks: 2048 });
 * // ... connect a host to 127.0.0.1:port.port ...
 * await target.close();
 * ```
 */
import { EventChannel, type BoundedEventIterator, type EventIteratorOptions } from '../event-channel.js';
import { InvalidArgumentError } from '../errors.js';
import { DISCOVERY_NQN } from '../protocol/nqn.js';
import { parseTargetDhchap, type TargetDhchapOptions } from './auth.js';
import type { TargetConnection } from './connection.js';
import type { TargetController } from './controller.js';
import { resolveOptions, TargetCore, type ResolvedOptions, type TargetEvent, type TargetEventMap, TARGET_EVENT_TYPES, type TargetPort, type TargetReferral } from './core.js';
import type { FaultHandle, FaultInjector, FaultRule } from './faults.js';
import type { PortRef, TargetSubsystem } from './subsystem.js';
import type { AnaStateInput, AsyncEvent, ListenOptions, NvmeTargetOptions, ReferralOptions, SubsystemOptions } from './types.js';

/** An embedded NVMe/TCP target. */
export class NvmeTarget {
  /** The discovery subsystem NQN every target serves. */
  static readonly DISCOVERY_NQN = DISCOVERY_NQN;
  /** Options in force (defaults filled in). */
  readonly options: Readonly<ResolvedOptions>;
  /** Fault injection rules (see {@link NvmeTarget.inject}). */
  readonly faults: FaultInjector;
  private readonly core: TargetCore;
  private readonly hub = new EventChannel<TargetEvent>({ stamp: (ev) => ev, overflow: (dropped) => ({ type: 'overflow', dropped }) });

  /**
   * Subscribe to one event type (see {@link TargetEvent}) or '*' for all; the listener runs synchronously when the
   * event happens. Returns a function that unsubscribes. The same idiom as the host's Controller.
   */
  on<K extends keyof TargetEventMap>(type: K, listener: (ev: TargetEventMap[K]) => void): () => void {
    if (!TARGET_EVENT_TYPES.has(type) && type !== '*') {
      throw new InvalidArgumentError(`on: unknown target event type ${JSON.stringify(type)} (one of ${[...TARGET_EVENT_TYPES].join(', ')} or '*')`);
    }
    return this.hub.on(type as TargetEvent['type'] | '*', listener as (ev: TargetEvent) => void);
  }

  /**
   * Async iterator over the events from now on, with its own bounded queue (`highWaterMark`, default 1024; an
   * `overflow` event stands for what a slow consumer let it drop) and an optional `types` filter. It ends when the
   * target closes, or with the abort reason when `signal` aborts.
   */
  events(opts?: EventIteratorOptions<TargetEvent['type']>): BoundedEventIterator<TargetEvent> {
    return this.hub.iterate(opts);
  }

  constructor(options: NvmeTargetOptions = {}) {
    const resolved = resolveOptions(options);
    const hub = this.hub;
    this.core = new TargetCore(resolved, { wants: (type) => hub.subscribers(type) > 0, emit: (ev) => hub.emit(ev) });
    this.options = resolved;
    this.faults = this.core.faults;
  }

  /**
   * Require DH-HMAC-CHAP from a host on the discovery subsystem (or stop requiring it with `undefined`), as
   * TargetSubsystem.setHostDhchap() does for an NVM subsystem.
   */
  setDiscoveryDhchap(hostnqn: string, o: TargetDhchapOptions | undefined): void {
    if (typeof hostnqn !== 'string' || hostnqn.length === 0) throw new InvalidArgumentError('hostnqn must be a non-empty string');
    if (o === undefined) this.core.discoveryDhchap.delete(hostnqn);
    else this.core.discoveryDhchap.set(hostnqn, parseTargetDhchap(o, 'dhchap'));
  }

  /** Open a listening port. Resolves with the port (its `host`, real `port` number and `portid`). */
  listen(options: ListenOptions = {}): Promise<TargetPort> {
    return this.core.listen(options);
  }

  /** Listening ports in port ID order. */
  ports(): TargetPort[] {
    return [...this.core.ports.values()].sort((a, b) => a.portid - b.portid);
  }

  /** The port with this port ID. */
  port(portid: number): TargetPort | undefined {
    return this.core.ports.get(portid);
  }

  /** Close a port: stop listening, drop its connections, update the discovery log. */
  removePort(port: PortRef): Promise<void> {
    return this.core.removePort(port);
  }

  /** Add an NVM subsystem (exported on every port unless `ports` says otherwise). */
  addSubsystem(options: SubsystemOptions): TargetSubsystem {
    return this.core.addSubsystem(options);
  }

  /** Remove a subsystem and tear down its controllers. */
  removeSubsystem(nqn: string): void {
    this.core.removeSubsystem(nqn);
  }

  /** The subsystem with this NQN. */
  subsystem(nqn: string): TargetSubsystem | undefined {
    return this.core.subsystems.get(nqn);
  }

  /** Every NVM subsystem. */
  subsystems(): TargetSubsystem[] {
    return [...this.core.subsystems.values()];
  }

  /** Export a subsystem on a port. */
  linkSubsystem(port: PortRef, nqn: string | TargetSubsystem): void {
    this.core.linkSubsystem(port, nqn);
  }

  /** Stop exporting a subsystem on a port; its controllers on that port are torn down. */
  unlinkSubsystem(port: PortRef, nqn: string | TargetSubsystem): void {
    this.core.unlinkSubsystem(port, nqn);
  }

  /** Set a port-level ANA group state for every ANA subsystem on the port, with the ANA Change AEN. */
  setAnaState(port: PortRef, group: number, state: AnaStateInput): void {
    this.core.setPortAnaState(port, group, state);
  }

  /** Add a discovery referral (GENCTR changes, discovery AEN). */
  addReferral(options: ReferralOptions): TargetReferral {
    return this.core.addReferral(options);
  }

  /** Remove a referral. */
  removeReferral(referral: TargetReferral): void {
    this.core.removeReferral(referral);
  }

  /** Current referrals. */
  referrals(): TargetReferral[] {
    return [...this.core.referrals];
  }

  /** Discovery log generation counter. */
  get genctr(): bigint {
    return this.core.genctr;
  }

  /** Live controllers (filter by subsystem NQN when given). */
  controllers(subnqn?: string): TargetController[] {
    const all = [...this.core.controllers];
    return subnqn === undefined ? all : all.filter((c) => c.subnqn === subnqn);
  }

  /** Open connections. */
  connections(): TargetConnection[] {
    return [...this.core.connections];
  }

  /** Add a fault rule; returns a handle whose `remove()` retires it. Shorthand for `faults.inject`. */
  inject(rule: FaultRule): FaultHandle {
    return this.faults.inject(rule);
  }

  /**
   * Complete an AER with an arbitrary event on every matching controller (no configuration or
   * mask checks). Returns the number of controllers it was queued on.
   */
  sendAsyncEvent(event: AsyncEvent, to: { subnqn?: string; cntlid?: number } = {}): number {
    if (event === null || typeof event !== 'object') throw new InvalidArgumentError('sendAsyncEvent needs an event object');
    let n = 0;
    for (const c of this.core.controllers) {
      if (to.subnqn !== undefined && c.subnqn !== to.subnqn) continue;
      if (to.cntlid !== undefined && c.cntlid !== to.cntlid) continue;
      c.sendAsyncEvent(event);
      n++;
    }
    return n;
  }

  /** Close every port and connection and release every timer. Idempotent. */
  async close(): Promise<void> {
    await this.core.close();
    // Iterators end after the events they hold; listeners are dropped.
    this.hub.close();
  }
}
