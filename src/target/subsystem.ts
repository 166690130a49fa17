/**
 * NVM subsystems and RAM-backed namespaces of the embedded target.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import { AnaState } from '../protocol/ana.js';
import { parseUuid } from '../protocol/nqn.js';
import { RamStore } from './store.js';
import { ReservationState } from './reservations.js';
import { anaStateValue, type AnaStateInput, type NamespaceOptions, type SubsystemOptions } from './types.js';
import type { TargetController } from './controller.js';
import { parseTargetDhchap, type TargetDhchap, type TargetDhchapOptions } from './auth.js';

/** A port given as its port ID or as an object carrying one (a TargetPort). */
export type PortRef = number | { readonly portid: number };

/** What a subsystem needs from its target (implementation detail, not exported from nvmeof/target). */
export interface SubsystemOwner {
  readonly maxNamespaces: number;
  readonly anaGroupMax: number;
  /** Controllers of a subsystem. */
  controllersOf(subsys: TargetSubsystem): TargetController[];
  /** The port ID of a port reference (throws when unknown). */
  portidOf(port: PortRef): number;
  /** Port-level ANA state of a group (undefined when the port does not set one). */
  portAnaState(portid: number, group: number): number | undefined;
  /** The discovery log changed. */
  discoveryChanged(): void;
  /** ANA states of `subsys` changed as seen through `portid` (undefined: every port). */
  anaChanged(subsys: TargetSubsystem, portid: number | undefined): void;
  /** A namespace was added, removed or changed. */
  namespaceChanged(subsys: TargetSubsystem, nsid: number): void;
}

function derived(label: string, length: number): Buffer {
  return createHash('sha256').update(label).digest().subarray(0, length);
}

function idBytes(name: string, v: Buffer | string | undefined, length: number, fallback: () => Buffer): Buffer {
  if (v === undefined) return fallback();
  let b: Buffer;
  if (typeof v === 'string') {
    if (length === 16 && v.includes('-')) b = parseUuid(v);
    else if (/^[0-9a-f]*$/i.test(v) && v.length === length * 2) b = Buffer.from(v, 'hex');
    else throw new InvalidArgumentError(`${name} must be ${length} bytes or ${length * 2} hex digits, got ${JSON.stringify(v)}`);
  } else if (v instanceof Uint8Array && v.length === length) {
    b = Buffer.from(v);
  } else {
    throw new InvalidArgumentError(`${name} must be ${length} bytes or ${length * 2} hex digits`);
  }
  return b;
}

/** A namespace of a target subsystem, backed by RAM. */
export class TargetNamespace {
  readonly subsystem: TargetSubsystem;
  readonly nsid: number;
  /** Logical block size in bytes. */
  readonly blockSize: number;
  /** Size in logical blocks. */
  readonly blocks: number;
  readonly nguid: Buffer;
  readonly uuid: Buffer;
  readonly eui64: Buffer | undefined;
  /** ANA group ID. */
  readonly anaGroup: number;
  /** Writes fail with "Namespace is Write Protected". */
  readOnly: boolean;
  /** When false, I/O fails with "Namespace Not Ready" (retryable). */
  ready = true;
  /** @internal */
  readonly store: RamStore;
  /** Persistent reservation state (registrants, holder, type, generation). */
  readonly reservation = new ReservationState();

  /** @internal */
  constructor(subsystem: TargetSubsystem, nsid: number, o: NamespaceOptions, anaGroupMax: number) {
    this.subsystem = subsystem;
    this.nsid = nsid;
    const bs = o.blockSize ?? 512;
    if (bs !== 512 && bs !== 4096) throw new InvalidArgumentError(`blockSize must be 512 or 4096, got ${String(bs)}`);
    this.blockSize = bs;
    let blocks: number;
    if (o.blocks !== undefined) {
      if (!Number.isSafeInteger(o.blocks) || o.blocks < 1) throw new InvalidArgumentError(`blocks must be a positive integer, got ${o.blocks}`);
      blocks = o.blocks;
    } else if (o.sizeBytes !== undefined) {
      if (!Number.isSafeInteger(o.sizeBytes) || o.sizeBytes < bs) throw new InvalidArgumentError(`sizeBytes must be an integer of at least one block (${bs}), got ${o.sizeBytes}`);
      blocks = Math.floor(o.sizeBytes / bs);
    } else {
      throw new InvalidArgumentError('a namespace needs blocks or sizeBytes');
    }
    if (!Number.isSafeInteger(blocks * bs)) throw new InvalidArgumentError(`namespace of ${blocks} blocks of ${bs} bytes is too large`);
    this.blocks = blocks;
    const group = o.anaGroup ?? 1;
    if (!Number.isInteger(group) || group < 1 || group > anaGroupMax) throw new InvalidArgumentError(`anaGroup must be 1..${anaGroupMax}, got ${group}`);
    this.anaGroup = group;
    const label = `${subsystem.nqn}\n${nsid}`;
    this.nguid = idBytes('nguid', o.nguid, 16, () => derived(`nguid\n${label}`, 16));
    this.uuid = idBytes('uuid', o.uuid, 16, () => {
      const u = Buffer.from(derived(`uuid\n${label}`, 16));
      u[6] = (u[6]! & 0x0f) | 0x80;
      u[8] = (u[8]! & 0x3f) | 0x80;
      return u;
    });
    this.eui64 = o.eui64 === undefined ? undefined : idBytes('eui64', o.eui64, 8, () => Buffer.alloc(8));
    this.readOnly = o.readOnly ?? false;
    this.store = new RamStore(blocks * bs, o.preallocate ?? false);
  }

  /** Size in bytes. */
  get sizeBytes(): number {
    return this.blocks * this.blockSize;
  }

  /** Bytes of RAM in use. */
  get allocatedBytes(): number {
    return this.store.allocatedBytes;
  }

  private range(lba: number | bigint, count: number): number {
    const l = typeof lba === 'bigint' ? Number(lba) : lba;
    if (!Number.isSafeInteger(l) || l < 0 || !Number.isSafeInteger(count) || count < 0 || l + count > this.blocks) {
      throw new InvalidArgumentError(`blocks ${String(lba)}..+${count} are outside namespace ${this.nsid} (${this.blocks} blocks)`);
    }
    return l * this.blockSize;
  }

  /** Read blocks directly (test helper; no commands involved). */
  readBlocks(lba: number | bigint, count: number): Buffer {
    return this.store.read(this.range(lba, count), count * this.blockSize);
  }

  /** Write blocks directly (test helper); `data` must be a multiple of the block size. */
  writeBlocks(lba: number | bigint, data: Uint8Array): void {
    if (data.length % this.blockSize !== 0) throw new InvalidArgumentError(`data length ${data.length} is not a multiple of ${this.blockSize}`);
    this.store.write(this.range(lba, data.length / this.blockSize), data);
  }
}

/** An NVM subsystem of the target. Create with NvmeTarget.addSubsystem(). */
export class TargetSubsystem {
  readonly nqn: string;
  readonly serial: string;
  readonly model: string;
  /** Reports Asymmetric Namespace Access. */
  readonly ana: boolean;
  private _allowAnyHost: boolean;
  private readonly allowed = new Set<string>();
  private readonly dhchap = new Map<string, TargetDhchap>();
  private readonly nsMap = new Map<number, TargetNamespace>();
  /** @internal Ports the subsystem is exported on. */
  ports: 'all' | Set<number>;
  /** @internal (portid << 32 | group) -> state overrides. */
  private readonly anaStates = new Map<string, number>();
  /** @internal ANA log change count. */
  anaChgcnt = 0n;
  /** @internal Per-group change counts. */
  readonly groupChgcnt = new Map<number, bigint>();
  /** @internal Next controller ID to try. */
  nextCntlid = 1;
  /** @internal SMART counters. */
  readonly stats = { dataUnitsRead: 0n, dataUnitsWritten: 0n, bytesRead: 0n, bytesWritten: 0n, hostReads: 0n, hostWrites: 0n };
  private readonly owner: SubsystemOwner;
  /** @internal Set once removed from the target. */
  removed = false;

  /** @internal */
  constructor(owner: SubsystemOwner, o: SubsystemOptions, ports: 'all' | Set<number>) {
    this.owner = owner;
    this.nqn = o.nqn;
    this.serial = o.serial ?? createHash('sha256').update(o.nqn).digest('hex').slice(0, 20);
    this.model = o.model ?? 'nvmeof target';
    if (this.serial.length > 20 || !/^[\x20-\x7e]*$/.test(this.serial)) throw new InvalidArgumentError('serial must be at most 20 printable ASCII characters');
    if (this.model.length > 40 || !/^[\x20-\x7e]*$/.test(this.model)) throw new InvalidArgumentError('model must be at most 40 printable ASCII characters');
    this.ana = o.ana ?? false;
    for (const h of o.allowedHosts ?? []) this.allowed.add(h);
    if (o.dhchap !== undefined) {
      if (o.dhchap === null || typeof o.dhchap !== 'object') throw new InvalidArgumentError('dhchap must be an object mapping host NQNs to { secret, ctrlSecret?, hashes?, dhgroups? }');
      for (const [h, cfg] of Object.entries(o.dhchap)) this.dhchap.set(h, parseTargetDhchap(cfg, `dhchap[${JSON.stringify(h)}]`));
    }
    this._allowAnyHost = o.allowAnyHost ?? o.allowedHosts === undefined;
    this.ports = ports;
  }

  /** Any host may connect. */
  get allowAnyHost(): boolean {
    return this._allowAnyHost;
  }

  set allowAnyHost(v: boolean) {
    if (v === this._allowAnyHost) return;
    this._allowAnyHost = v;
    this.owner.discoveryChanged();
  }

  /** Host NQNs explicitly allowed. */
  get allowedHosts(): string[] {
    return [...this.allowed];
  }

  /** Whether `hostnqn` may connect. */
  isHostAllowed(hostnqn: string): boolean {
    return this._allowAnyHost || this.allowed.has(hostnqn);
  }

  /** Allow a host (changes the discovery log of that host). */
  allowHost(hostnqn: string): void {
    if (this.allowed.has(hostnqn)) return;
    this.allowed.add(hostnqn);
    this.owner.discoveryChanged();
  }

  /**
   * Require DH-HMAC-CHAP from a host (as Linux nvmet's hosts/<nqn>/dhchap_key and dhchap_ctrl_key), or stop
   * requiring it (`undefined`). Applies to queues connected from now on; re-authentication uses the new keys.
   */
  setHostDhchap(hostnqn: string, o: TargetDhchapOptions | undefined): void {
    if (typeof hostnqn !== 'string' || hostnqn.length === 0) throw new InvalidArgumentError('hostnqn must be a non-empty string');
    if (o === undefined) this.dhchap.delete(hostnqn);
    else this.dhchap.set(hostnqn, parseTargetDhchap(o, 'dhchap'));
  }

  /** @internal The DH-HMAC-CHAP settings of a host, if it must authenticate. */
  dhchapFor(hostnqn: string): TargetDhchap | undefined {
    return this.dhchap.get(hostnqn);
  }

  /** Stop allowing a host (existing controllers stay connected, as on Linux). */
  disallowHost(hostnqn: string): void {
    if (!this.allowed.delete(hostnqn)) return;
    this.owner.discoveryChanged();
  }

  /** Namespaces in NSID order. */
  namespaces(): TargetNamespace[] {
    return [...this.nsMap.values()].sort((a, b) => a.nsid - b.nsid);
  }

  /** The namespace with this NSID, if any. */
  namespace(nsid: number): TargetNamespace | undefined {
    return this.nsMap.get(nsid);
  }

  /** Add a RAM-backed namespace and notify connected controllers (Namespace Attribute Changed). */
  addNamespace(o: NamespaceOptions): TargetNamespace {
    if (this.removed) throw new InvalidArgumentError(`subsystem ${this.nqn} was removed`);
    if (o === null || typeof o !== 'object') throw new InvalidArgumentError('addNamespace needs an options object');
    const max = this.owner.maxNamespaces;
    let nsid = o.nsid;
    if (nsid === undefined) {
      nsid = 1;
      while (this.nsMap.has(nsid)) nsid++;
    }
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > max) throw new InvalidArgumentError(`nsid must be 1..${max}, got ${nsid}`);
    if (this.nsMap.has(nsid)) throw new InvalidArgumentError(`namespace ${nsid} already exists in ${this.nqn}`);
    const ns = new TargetNamespace(this, nsid, o, this.owner.anaGroupMax);
    this.nsMap.set(nsid, ns);
    if (o.notify ?? true) this.owner.namespaceChanged(this, nsid);
    return ns;
  }

  /** Remove a namespace, release its memory and notify connected controllers. */
  removeNamespace(nsid: number, opts: { notify?: boolean } = {}): void {
    const ns = this.nsMap.get(nsid);
    if (ns === undefined) throw new InvalidArgumentError(`namespace ${nsid} does not exist in ${this.nqn}`);
    this.nsMap.delete(nsid);
    ns.store.clear();
    if (opts.notify ?? true) this.owner.namespaceChanged(this, nsid);
  }

  /** Tell connected controllers that a namespace changed (Namespace Attribute Changed AEN). */
  notifyNamespaceChanged(nsid: number): void {
    this.owner.namespaceChanged(this, nsid);
  }

  /**
   * Set the ANA state of `group` as seen through `port` for this subsystem, and send the ANA
   * Change AEN to its controllers on that port.
   */
  setAnaState(port: PortRef, group: number, state: AnaStateInput): void {
    if (!this.ana) throw new InvalidArgumentError(`subsystem ${this.nqn} was created without ana: true`);
    const portid = this.owner.portidOf(port);
    if (!Number.isInteger(group) || group < 1 || group > this.owner.anaGroupMax) {
      throw new InvalidArgumentError(`ANA group must be 1..${this.owner.anaGroupMax}, got ${group}`);
    }
    const v = anaStateValue(state);
    this.anaStates.set(`${portid}/${group}`, v);
    this.bumpAna([group]);
    this.owner.anaChanged(this, portid);
  }

  /** The ANA state of `group` through `port`: this subsystem's setting, else the port's, else optimized. */
  anaState(port: PortRef, group: number): number {
    const portid = this.owner.portidOf(port);
    return this.anaStates.get(`${portid}/${group}`) ?? this.owner.portAnaState(portid, group) ?? AnaState.Optimized;
  }

  /** @internal Count an ANA change of these groups. */
  bumpAna(groups: Iterable<number>): void {
    this.anaChgcnt++;
    for (const g of groups) this.groupChgcnt.set(g, (this.groupChgcnt.get(g) ?? 0n) + 1n);
  }

  /** @internal ANA groups to report through `portid`: 1, every group with a namespace, every group with a state set. */
  anaGroups(portid: number): number[] {
    const groups = new Set<number>([1]);
    for (const ns of this.nsMap.values()) groups.add(ns.anaGroup);
    for (const key of this.anaStates.keys()) {
      const [p, g] = key.split('/');
      if (Number(p) === portid) groups.add(Number(g));
    }
    return [...groups].sort((a, b) => a - b);
  }

  /** Whether the subsystem is exported on `port`. */
  isOnPort(port: PortRef): boolean {
    return this.ports === 'all' || this.ports.has(this.owner.portidOf(port));
  }

  /** Controllers currently associated with this subsystem. */
  controllers(): TargetController[] {
    return this.owner.controllersOf(this);
  }
}
