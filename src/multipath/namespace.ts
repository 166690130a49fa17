/**
 * MultipathNamespace: one namespace reached through several paths (controllers) of one subsystem.
 *
 * Block I/O has the same API and argument checks as {@link Namespace} (an inner Namespace does the checks and the
 * MDTS splitting, and hands every command to {@link MultipathNamespace.ioCommand}). Each command goes to the path the
 * selection policy picks among the usable paths (live, ANA optimized or non-optimized). A command that fails with a
 * path error (see classify.ts) is sent again, whole, on another path unless its status carries DNR; other errors go
 * back to the caller. When no path is usable, commands wait (queue_if_no_path) until a path becomes usable, or fail
 * with NoPathError once no path can come back (every path failed, deleted, in ANA persistent loss, or past its
 * fastIoFailTimeout).
 */
import { Buffer } from 'node:buffer';
import { setTimeout as sleep } from 'node:timers/promises';
import { debuglog } from 'node:util';
import { InvalidArgumentError, NoPathError } from '../errors.js';
import type { ConnectOptions } from '../host/controller.js';
import { resolveHostIdentity } from '../host/identity.js';
import { Namespace, type IoOptions, type LbaRange, type WriteOptions } from '../host/namespace.js';
import { EventChannel, type BoundedEventIterator, type EventIteratorOptions } from '../event-channel.js';
import type { ReservationAcquireParams, ReservationRegisterParams, ReservationReleaseParams, ReservationReport, ReservationReportParams } from '../host/reservations.js';
import type { NvmeCommand } from '../protocol/commands.js';
import type { IdentifyController, IdentifyNamespace, NsIdDescriptor, OncsFlags } from '../protocol/identify.js';
import type { AnaStateName } from '../protocol/ana.js';
import { validateNqn } from '../protocol/nqn.js';
import type { Completion, SubmitOptions } from '../transport/queue-pair.js';
import { classifyIoError } from './classify.js';
import { Path, PathMismatchError, pathId, validatePathTimers, type PathChange, type PathController, type PathHealth, type PathNamespace, type PathState } from './path.js';
import { abortError, checkSignal, raceAbort } from '../util.js';
import { createSelector, type PathCandidate, type PathSelector, type PolicyName } from './policy.js';

const debug = debuglog('nvmeof');

/** One address of the subsystem. */
export interface PathAddress {
  host: string;
  /** Default 4420. */
  port?: number;
}

/** Options of {@link openMultipath}. Connect options (kato, ioQueues, digests, timeouts...) apply to every path. */
export interface MultipathOptions extends Omit<ConnectOptions, 'host' | 'port'> {
  /** Namespace ID. */
  nsid: number;
  /** The subsystem's addresses, one path each. */
  paths: PathAddress[];
  /** Path selection policy. Default 'failover'. */
  policy?: PolicyName | PathSelector;
  /** Milliseconds between reconnect attempts of a lost path (Linux reconnect_delay, which defaults to 10 s). Default 2000. */
  reconnectDelay?: number;
  /** Milliseconds after a loss before a path is given up (-1 = never, 0 = no reconnect). Default 600000 (ctrl_loss_tmo). */
  ctrlLossTimeout?: number;
  /** Milliseconds after a loss before I/O stops waiting for that path (-1 = never). Default -1 (fast_io_fail_tmo off). */
  fastIoFailTimeout?: number;
  /** Path-error retries of one command before its last error is returned. Default 32. */
  maxRetries?: number;
  /** While I/O waits with live paths in an unusable ANA state, re-read their ANA log this often (ms; 0 = never). Default 1000. */
  anaPollInterval?: number;
  /** How each path opens its controller (wrapping or tests). Default {@link connect}. */
  connectController?: (opts: ConnectOptions) => Promise<PathController>;
}

/** A change of one path as seen by a multipath namespace. */
export interface PathStateEvent {
  type: 'path-state';
  /** "host:port". */
  path: string;
  host: string;
  port: number;
  cntlid: number | null;
  state: PathState;
  previousState: PathState;
  /** ANA state of this namespace through the path. */
  anaState: AnaStateName | null;
  previousAnaState: AnaStateName | null;
  /** The path can take I/O now. */
  usable: boolean;
  failFastExpired: boolean;
  reason: string | null;
  /** Date.now() ms. */
  time: number;
}

/** JSON-friendly health snapshot of a multipath namespace. */
export interface MultipathHealth {
  subnqn: string;
  nsid: number;
  policy: string;
  /** Date.now() ms. */
  time: number;
  /** Paths usable now. */
  usablePaths: number;
  /** Commands waiting for a usable path. */
  waitingIo: number;
  closed: boolean;
  paths: PathHealth[];
}

/** Stands for events an `events()` iterator dropped because its queue was full. */
export interface MultipathOverflowEvent {
  type: 'overflow';
  /** Events dropped. */
  dropped: number;
  /** Date.now() ms. */
  time: number;
}

/** Every event a multipath namespace delivers. */
export type MultipathEvent = PathStateEvent | MultipathOverflowEvent;

/** Identifying data of the namespace as one path sees it. */
interface NsInfo {
  identity: IdentifyNamespace;
  blockSize: number;
  blocks: bigint;
  nguid: string | undefined;
  eui64: string | undefined;
  uuid: string | undefined;
  maxTransferBytes: number;
  oncs: OncsFlags | undefined;
}

interface Waiter {
  wake: () => void;
  fail: (err: Error) => void;
}

const DEFAULT_MAX_RETRIES = 32;
const DEFAULT_ANA_POLL = 1000;

/** What a policy sees of a path for this namespace. */
class Candidate implements PathCandidate {
  constructor(
    readonly path: Path,
    private readonly nsid: number,
  ) {}
  get id(): string {
    return this.path.id;
  }
  get anaState(): AnaStateName | undefined {
    return this.path.anaState(this.nsid);
  }
  get outstanding(): number {
    return this.path.outstanding;
  }
}

/** A namespace reached through several paths. Create with {@link openMultipath}. */
export class MultipathNamespace {
  readonly subnqn: string;
  readonly nsid: number;
  /** Every path, in the order given. */
  readonly paths: readonly Path[];
  /** The selection policy. */
  readonly policy: PathSelector;
  /** Path-error retries of one command. */
  readonly maxRetries: number;

  private readonly candidates: Candidate[];
  private readonly anaPollInterval: number;
  private inner: Namespace | undefined;
  private reference: NsInfo | undefined;
  private readonly infos = new Map<Path, NsInfo>();
  private referenceReady!: Promise<void>;
  private resolveReference!: () => void;
  private rejectReference!: (err: Error) => void;
  private readonly waiters = new Set<Waiter>();
  private readonly hub = new EventChannel<MultipathEvent>({
    stamp: (ev) => ev,
    overflow: (dropped) => ({ type: 'overflow', dropped, time: Date.now() }),
  });
  private readonly unsubscribes: (() => void)[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  /** @internal Use {@link openMultipath}. */
  constructor(opts: MultipathOptions) {
    validateMultipathOptions(opts);
    this.subnqn = opts.subnqn;
    this.nsid = opts.nsid;
    this.policy = createSelector(opts.policy);
    this.maxRetries = opts.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.anaPollInterval = opts.anaPollInterval ?? DEFAULT_ANA_POLL;
    this.referenceReady = new Promise<void>((resolve, reject) => {
      this.resolveReference = resolve;
      this.rejectReference = reject;
    });
    this.referenceReady.catch(() => {});
    const {
      paths,
      nsid: _nsid,
      policy: _policy,
      maxRetries: _maxRetries,
      anaPollInterval: _anaPoll,
      connectController,
      signal: _signal,
      ...common
    } = opts;
    this.paths = paths.map(
      (a) =>
        new Path({
          ...common,
          host: a.host,
          port: a.port ?? 4420,
          connect: connectController,
          prepare: (ctrl, path, info) => this.preparePath(ctrl, path, info.initial),
        }),
    );
    this.candidates = this.paths.map((p) => new Candidate(p, this.nsid));
    for (const p of this.paths) this.unsubscribes.push(p.onChange((c) => this.onPathChange(c)));
  }

  // --- namespace data (from the first path that connected) ----------------------------------------------------

  private get ns(): Namespace {
    if (!this.inner) throw new NoPathError(`multipath namespace ${this.nsid} of ${this.subnqn} is not open`);
    return this.inner;
  }

  /** Parsed Identify Namespace data. */
  get identity(): IdentifyNamespace {
    return this.ns.identity;
  }
  /** Logical block size in bytes. */
  get blockSize(): number {
    return this.ns.blockSize;
  }
  /** Namespace size in logical blocks. */
  get blocks(): bigint {
    return this.ns.blocks;
  }
  /** Namespace capacity in bytes. */
  get sizeBytes(): bigint {
    return this.ns.sizeBytes;
  }
  get nguid(): string | undefined {
    return this.ns.nguid;
  }
  get eui64(): string | undefined {
    return this.ns.eui64;
  }
  get uuid(): string | undefined {
    return this.ns.uuid;
  }
  /** Identify Controller data of a live path's controller (undefined while no path is connected). */
  get controllerIdentity(): IdentifyController | undefined {
    return this.ns.controllerIdentity;
  }
  /** Optional NVM commands (ONCS) of the controller the namespace was first identified through. */
  get oncs(): OncsFlags | undefined {
    return this.ns.oncs;
  }
  /** Blocks per command after MDTS (smallest over the paths) and NLB limits. */
  get maxBlocksPerCommand(): number {
    return this.ns.maxBlocksPerCommand;
  }

  // --- block I/O (same API and checks as Namespace) -----------------------------------------------------------

  /** Read `blocks` logical blocks starting at `lba`. */
  read(lba: bigint | number, blocks: number, opts?: IoOptions): Promise<Buffer> {
    return this.ns.read(lba, blocks, opts);
  }
  /** Read into a caller's buffer (its length, a multiple of the block size, says how many blocks). */
  readInto(lba: bigint | number, buf: Buffer, opts?: IoOptions): Promise<Buffer> {
    return this.ns.readInto(lba, buf, opts);
  }
  /** Write `data` (a multiple of the block size) at `lba`. Resolves only once a path completed every block. */
  write(lba: bigint | number, data: Uint8Array, opts?: WriteOptions): Promise<void> {
    return this.ns.write(lba, data, opts);
  }
  /** Commit volatile write cache contents to media. */
  flush(opts?: IoOptions): Promise<void> {
    return this.ns.flush(opts);
  }
  /** Write zeroes to `blocks` blocks at `lba`. */
  writeZeroes(lba: bigint | number, blocks: number, opts?: IoOptions & { deallocate?: boolean; fua?: boolean }): Promise<void> {
    return this.ns.writeZeroes(lba, blocks, opts);
  }
  /** Deallocate (trim) ranges with Dataset Management. */
  deallocate(ranges: LbaRange[], opts?: IoOptions): Promise<void> {
    return this.ns.deallocate(ranges, opts);
  }
  /** Compare `data` with the blocks at `lba`: true when they match, false on Compare Failure. */
  compare(lba: bigint | number, data: Uint8Array, opts?: IoOptions): Promise<boolean> {
    return this.ns.compare(lba, data, opts);
  }
  /** Verify `blocks` blocks at `lba` without transferring data. */
  verify(lba: bigint | number, blocks: number, opts?: IoOptions): Promise<void> {
    return this.ns.verify(lba, blocks, opts);
  }

  /**
   * Send one raw I/O command through the paths: retried whole on another path after a path error (unless DNR),
   * waiting while no path is usable. `opts.timeout` applies to each attempt; `opts.signal` to the whole.
   */
  async ioCommand(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion> {
    const tried = new Set<Path>();
    let attempt = cmd;
    let retries = 0;
    let lastErr: Error | undefined;
    while (true) {
      if (this.closed) throw new NoPathError(`multipath namespace ${this.nsid} of ${this.subnqn} is closed`, { cause: lastErr });
      if (opts?.signal?.aborted) throw abortError(opts.signal);
      const usable = this.candidates.filter((c) => c.path.usableFor(this.nsid));
      if (usable.length === 0) {
        await this.waitForChange(opts?.signal, lastErr);
        tried.clear();
        continue;
      }
      const fresh = usable.filter((c) => !tried.has(c.path));
      if (fresh.length === 0) {
        // Every usable path already failed this command and nothing changed: back off before trying them again.
        await sleep(Math.min(10 * 2 ** Math.min(retries, 7), 1000), undefined, { signal: opts?.signal }).catch(() => {});
        tried.clear();
        continue;
      }
      const chosen = this.policy.select(fresh);
      if (!chosen || !fresh.includes(chosen)) {
        await this.waitForChange(opts?.signal, lastErr);
        tried.clear();
        continue;
      }
      const path = chosen.path;
      try {
        return await path.submit(attempt, opts);
      } catch (err) {
        const cls = classifyIoError(err);
        if (!cls.retry || opts?.signal?.aborted) throw err;
        lastErr = err as Error;
        if (++retries > this.maxRetries) throw err;
        debug('mpath nsid %d: %s on %s (%s), retrying on another path', this.nsid, cmd.name, path.id, lastErr.message);
        tried.add(path);
        // A fresh SQE for the next attempt: the previous one may still be referenced by the old queue.
        attempt = { ...cmd, sqe: Buffer.from(cmd.sqe) };
      }
    }
  }

  // --- health and events ----------------------------------------------------------------------------------------

  /** JSON-friendly snapshot of every path. */
  health(): MultipathHealth {
    const paths = this.paths.map((p) => p.health(this.nsid));
    return {
      subnqn: this.subnqn,
      nsid: this.nsid,
      policy: this.policy.name,
      time: Date.now(),
      usablePaths: paths.filter((p) => p.usable).length,
      waitingIo: this.waiters.size,
      closed: this.closed,
      paths,
    };
  }

  /**
   * Subscribe to path changes (state, ANA state of this namespace, fail-fast), or '*' for every event; returns an
   * unsubscribe function. Listeners run synchronously; one that throws does not stop the others (its error is
   * rethrown asynchronously, as with a controller's listeners).
   */
  on(type: 'path-state', listener: (ev: PathStateEvent) => void): () => void;
  on(type: '*', listener: (ev: MultipathEvent) => void): () => void;
  on(type: 'path-state' | '*', listener: (ev: never) => void): () => void {
    if (type !== 'path-state' && type !== '*') throw new InvalidArgumentError(`unknown event type ${String(type)}; expected 'path-state' or '*'`);
    return this.hub.on(type, listener as (ev: MultipathEvent) => void);
  }

  /**
   * Path changes as an async iterator with a bounded queue (dropped events are reported by an 'overflow' event); it
   * ends when the namespace closes.
   */
  events(opts: EventIteratorOptions<MultipathEvent['type']> = {}): BoundedEventIterator<MultipathEvent> {
    return this.hub.iterate(opts);
  }

  /** Register, unregister or replace this host's reservation key (Reservation Register), through any usable path. */
  reservationRegister(p: ReservationRegisterParams, opts?: IoOptions): Promise<void> {
    return this.ns.reservationRegister(p, opts);
  }

  /** Acquire a reservation, or preempt (and abort) other registrants (Reservation Acquire). */
  reservationAcquire(p: ReservationAcquireParams, opts?: IoOptions): Promise<void> {
    return this.ns.reservationAcquire(p, opts);
  }

  /** Release the reservation, or clear it and every registration (Reservation Release). */
  reservationRelease(p: ReservationReleaseParams, opts?: IoOptions): Promise<void> {
    return this.ns.reservationRelease(p, opts);
  }

  /** Generation, reservation type, holder and every registrant (Reservation Report). */
  reservationReport(p?: ReservationReportParams, opts?: IoOptions): Promise<ReservationReport> {
    return this.ns.reservationReport(p, opts);
  }

  /** Close every path; commands still waiting for a path fail with NoPathError. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.stopPoll();
      this.rejectReference(new NoPathError('multipath namespace closed'));
      const err = new NoPathError(`multipath namespace ${this.nsid} of ${this.subnqn} closed`);
      for (const w of [...this.waiters]) w.fail(err);
      this.waiters.clear();
      await Promise.allSettled(this.paths.map((p) => p.close()));
      for (const u of this.unsubscribes.splice(0)) u();
      this.hub.close();
    })();
    return this.closing;
  }

  // --- opening ---------------------------------------------------------------------------------------------------

  /** @internal First connection on every path, identity checks, reference namespace. */
  async open(signal?: AbortSignal): Promise<void> {
    const firsts = this.paths.map((p) => p.start());
    let settled: PromiseSettledResult<void>[];
    try {
      settled = await raceAbort(Promise.allSettled(firsts), signal);
    } catch (err) {
      await this.close();
      throw err;
    }
    const failures = settled.map((s, i) => ({ path: this.paths[i]!, err: s.status === 'rejected' ? (s.reason as Error) : undefined }));
    const fatal = failures.find((f) => f.err instanceof PathMismatchError || f.err instanceof InvalidArgumentError);
    if (fatal) {
      await this.close();
      throw fatal.err;
    }
    const live = this.paths.filter((p) => p.state === 'live' && this.infos.has(p));
    const first = live[0];
    if (!first) {
      await this.close();
      const detail = failures.map((f) => `${f.path.id}: ${f.err?.message ?? f.path.state}`).join('; ');
      throw new NoPathError(`no path to namespace ${this.nsid} of ${this.subnqn} could be opened (${detail})`, {
        cause: new AggregateError(failures.map((f) => f.err).filter((e) => e !== undefined)),
      });
    }
    const ref = this.infos.get(first)!;
    for (const p of live.slice(1)) {
      const problem = mismatch(ref, this.infos.get(p)!);
      if (problem) {
        await this.close();
        throw new PathMismatchError(`path ${p.id} does not lead to the same namespace ${this.nsid} as ${first.id}: ${problem}`);
      }
    }
    this.reference = ref;
    const infos = this.infos;
    const paths = this.paths;
    const owner = {
      // The smallest transfer limit of every path prepared so far, so a command fits whichever path it is sent on,
      // including paths that join later with a smaller MDTS.
      get maxTransferBytes(): number {
        let min = Infinity;
        for (const info of infos.values()) min = Math.min(min, info.maxTransferBytes);
        return min;
      },
      oncs: ref.oncs,
      // Identify Controller data of the first path with a live controller (the paths lead to one subsystem).
      get identity(): IdentifyController | undefined {
        for (const p of paths) if (p.controller) return p.controller.identity;
        return undefined;
      },
      ioCommand: (cmd: NvmeCommand, o?: SubmitOptions) => this.ioCommand(cmd, o),
    };
    this.inner = new Namespace(owner, this.nsid, ref.identity, descriptorsOf(ref));
    this.resolveReference();
  }

  private async preparePath(ctrl: PathController, path: Path, initial: boolean): Promise<void> {
    const ns = await ctrl.namespace(this.nsid);
    const info = nsInfo(ns, ctrl);
    if (!initial) {
      await this.referenceReady;
      const problem = mismatch(this.reference!, info);
      if (problem) throw new PathMismatchError(`path ${path.id} no longer leads to namespace ${this.nsid} it served before: ${problem}`);
    }
    this.infos.set(path, info);
  }

  // --- waiting for a path ----------------------------------------------------------------------------------------

  /** Resolve on the next path change; reject with NoPathError when no path can come back. */
  private waitForChange(signal: AbortSignal | undefined, lastErr: Error | undefined): Promise<void> {
    if (this.closed) return Promise.reject(new NoPathError(`multipath namespace ${this.nsid} of ${this.subnqn} is closed`, { cause: lastErr }));
    if (!this.paths.some((p) => p.mayRecover(this.nsid))) {
      return Promise.reject(new NoPathError(`no usable path to namespace ${this.nsid} of ${this.subnqn}: ${this.describePaths()}`, { cause: lastErr }));
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.waiters.delete(w);
        reject(abortError(signal!));
      };
      const done = () => {
        signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(w);
        if (this.waiters.size === 0) this.stopPoll();
      };
      const w: Waiter = {
        wake: () => {
          done();
          resolve();
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      this.waiters.add(w);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.startPoll();
    });
  }

  private onPathChange(c: PathChange): void {
    if (c.kind === 'ana' && c.nsid !== this.nsid) return;
    const p = c.path;
    const anaState = p.anaState(this.nsid) ?? null;
    const ev: PathStateEvent = {
      type: 'path-state',
      path: p.id,
      host: p.host,
      port: p.port,
      cntlid: p.cntlid ?? null,
      state: p.state,
      previousState: c.kind === 'state' ? c.from! : p.state,
      anaState,
      previousAnaState: c.kind === 'ana' ? (c.previousAnaState ?? null) : anaState,
      usable: p.usableFor(this.nsid),
      failFastExpired: p.failFastExpired,
      reason: c.reason ?? null,
      time: c.time,
    };
    this.hub.emit(ev);
    if (this.waiters.size > 0) {
      // Wake every waiting command: each picks a path again or finds none can come back.
      for (const w of [...this.waiters]) w.wake();
    }
  }

  private describePaths(): string {
    return this.paths
      .map((p) => `${p.id} ${p.state}${p.state === 'live' ? ` (ANA ${p.anaState(this.nsid) ?? 'not reported'})` : ''}${p.failFastExpired ? ' (fast I/O fail expired)' : ''}`)
      .join(', ');
  }

  /** While commands wait, re-read the ANA log of live paths whose ANA state keeps them unusable. */
  private startPoll(): void {
    if (this.pollTimer || this.anaPollInterval <= 0) return;
    this.pollTimer = setInterval(() => {
      for (const p of this.paths) {
        if (p.state === 'live' && !p.usableFor(this.nsid)) {
          p.refreshAna().catch((err: Error) => debug('mpath: ANA poll of %s failed: %s', p.id, err.message));
        }
      }
    }, this.anaPollInterval);
    this.pollTimer.unref();
  }

  private stopPoll(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }
}

function nsInfo(ns: PathNamespace, ctrl: PathController): NsInfo {
  return {
    identity: ns.identity,
    blockSize: ns.blockSize,
    blocks: ns.blocks,
    nguid: ns.nguid,
    eui64: ns.eui64,
    uuid: ns.uuid,
    maxTransferBytes: ctrl.maxTransferBytes,
    oncs: ctrl.oncs,
  };
}

/** Why `b` is not the namespace `a` is, or undefined when they match. */
function mismatch(a: NsInfo, b: NsInfo): string | undefined {
  let common = 0;
  for (const key of ['nguid', 'eui64', 'uuid'] as const) {
    const x = a[key];
    const y = b[key];
    if (x !== undefined && y !== undefined) {
      if (x !== y) return `${key.toUpperCase()} ${y} differs from ${x}`;
      common++;
    } else if (x !== y) {
      return `${key.toUpperCase()} is ${y === undefined ? 'missing' : y} on one path and ${x === undefined ? 'missing' : x} on the other`;
    }
  }
  if (common === 0) return 'the namespace reports no NGUID, EUI-64 or UUID, so the paths cannot be shown to reach the same namespace';
  if (a.blockSize !== b.blockSize) return `block size ${b.blockSize} differs from ${a.blockSize}`;
  if (a.blocks !== b.blocks) return `size ${b.blocks} blocks differs from ${a.blocks}`;
  return undefined;
}

function descriptorsOf(info: NsInfo): NsIdDescriptor[] {
  const out: NsIdDescriptor[] = [];
  if (info.eui64) out.push({ type: 'eui64', nidt: 1, value: Buffer.from(info.eui64, 'hex') });
  if (info.nguid) out.push({ type: 'nguid', nidt: 2, value: Buffer.from(info.nguid, 'hex') });
  if (info.uuid) out.push({ type: 'uuid', nidt: 3, value: Buffer.from(info.uuid.replace(/-/g, ''), 'hex') });
  return out;
}


function validateMultipathOptions(o: MultipathOptions): void {
  if (!o || typeof o !== 'object') throw new InvalidArgumentError('multipath options must be an object');
  if (typeof o.subnqn !== 'string') throw new InvalidArgumentError('subnqn must be a string');
  validateNqn(o.subnqn, { name: 'subnqn', strict: false });
  if (!Number.isInteger(o.nsid) || o.nsid < 1 || o.nsid > 0xfffffffe) throw new InvalidArgumentError(`nsid must be 1..0xFFFFFFFE, got ${String(o.nsid)}`);
  if (!Array.isArray(o.paths) || o.paths.length === 0) throw new InvalidArgumentError('paths must be a non-empty array of { host, port }');
  const seen = new Set<string>();
  for (const [i, a] of o.paths.entries()) {
    if (!a || typeof a !== 'object' || typeof a.host !== 'string' || a.host.length === 0) throw new InvalidArgumentError(`paths[${i}].host must be a non-empty string`);
    const port = a.port ?? 4420;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`paths[${i}].port must be 1..65535, got ${String(a.port)}`);
    const id = pathId(a.host, port);
    if (seen.has(id)) throw new InvalidArgumentError(`paths[${i}] repeats ${id}`);
    seen.add(id);
  }
  validatePathTimers(o);
  if (o.maxRetries !== undefined && (!Number.isInteger(o.maxRetries) || o.maxRetries < 0 || o.maxRetries > 10_000)) {
    throw new InvalidArgumentError(`maxRetries must be an integer 0..10000, got ${String(o.maxRetries)}`);
  }
  if (o.anaPollInterval !== undefined && (!Number.isInteger(o.anaPollInterval) || o.anaPollInterval < 0 || o.anaPollInterval > 3_600_000)) {
    throw new InvalidArgumentError(`anaPollInterval must be an integer 0..3600000 ms, got ${String(o.anaPollInterval)}`);
  }
  if (o.ioQueues !== undefined && o.ioQueues < 1) throw new InvalidArgumentError(`ioQueues must be at least 1 for a multipath namespace, got ${o.ioQueues}`);
  if (o.connectController !== undefined && typeof o.connectController !== 'function') throw new InvalidArgumentError('connectController must be a function');
  checkSignal('signal', o.signal);
  createSelector(o.policy);
}

/**
 * Open namespace `nsid` of `subnqn` through every address in `paths`: connects all paths in parallel (each with the
 * same host identity), checks that every path reaches the same subsystem and the same namespace (NGUID / EUI-64 /
 * UUID, block size, size), and resolves once at least one path is live. Paths that could not connect keep
 * reconnecting in the background. Rejects with PathMismatchError (code NVMEOF_ERR_CONTROLLER) when a path leads
 * elsewhere, and NoPathError when no path could be opened.
 */
export async function openMultipath(opts: MultipathOptions): Promise<MultipathNamespace> {
  validateMultipathOptions(opts);
  // One host identity for every path and every reconnect.
  const id = resolveHostIdentity({ hostnqn: opts.hostnqn, hostid: opts.hostid });
  const mpns = new MultipathNamespace({ ...opts, hostnqn: id.hostnqn, hostid: id.hostid });
  await mpns.open(opts.signal);
  return mpns;
}
