/**
 * In-memory stand-ins for multipath unit tests: a "fabric" holding one namespace's blocks and per-address behaviour
 * (reachable or not, ANA state, injected command faults), and fake controllers that decode Read/Write/Flush SQEs from
 * the bytes the library builds. Each fake controller follows ANA with the library's own AnaTracker, as a real
 * Controller does, and counts its ANA log reads: a path must never read the log itself.
 */
import { Buffer } from 'node:buffer';
import { ConnectionClosedError, ConnectionFailedError, NvmeStatusError, TimeoutError } from '../../src/errors.js';
import type { ConnectOptions } from '../../src/host/controller.js';
import type { NvmeCommand } from '../../src/protocol/commands.js';
import { encodeIdentifyController, encodeIdentifyNamespace, parseIdentifyController, parseIdentifyNamespace, type IdentifyController, type IdentifyNamespace } from '../../src/protocol/identify.js';
import { encodeAnaLog, parseAnaLog, type AnaLog } from '../../src/protocol/logpages.js';
import { AnaTracker } from '../../src/host/ana.js';
import type { AnaStateName } from '../../src/protocol/ana.js';
import type { Completion, SubmitOptions } from '../../src/transport/queue-pair.js';
import type { PathAnaEvent, PathController, PathNamespace } from '../../src/multipath/path.js';

export const SUBNQN = 'nqn.2024-01.io.nvmeof.test:mpath';
export const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555';

const ANA_VALUE: Record<string, number> = { optimized: 1, 'non-optimized': 2, inaccessible: 3, 'persistent-loss': 4, change: 15 };
const ANA_SC: Record<string, number> = { 'persistent-loss': 0x01, inaccessible: 0x02, change: 0x03 };

/** An NVMe status error as the transport would produce it. */
export function statusErr(sct: number, sc: number, dnr = false): NvmeStatusError {
  return new NvmeStatusError({ sct, sc, crd: 0, more: false, dnr, name: `SCT ${sct} SC ${sc}`, description: 'test status' });
}

/** What a fault hook returns: an error to fail the command with, 'hang' (never answer), or undefined (run it). */
export type FaultResult = Error | 'hang' | undefined;

/** Per-address behaviour. */
export interface AddressBehaviour {
  reachable: boolean;
  ana: AnaStateName;
  /** NGUID this address reports (a different one simulates another namespace). */
  nguid?: string;
  /** Subsystem NQN reported in Identify Controller. */
  subnqn?: string;
  /** Milliseconds a connect takes. */
  connectDelay?: number;
}

export class FakeFabric {
  readonly blockSize = 512;
  readonly nsze = 4096n;
  readonly nsid = 1;
  nguid = '0123456789abcdef0123456789abcdef';
  readonly store = new Map<bigint, Buffer>();
  readonly addresses = new Map<string, AddressBehaviour>();
  readonly connects: ConnectOptions[] = [];
  readonly controllers: FakeController[] = [];
  /** Called for every I/O command before it runs. */
  fault: ((cmd: NvmeCommand, ctrl: FakeController) => FaultResult) | undefined;
  anaReporting = true;
  emitEvents = true;
  private nextCntlid = 1;

  address(id: string): AddressBehaviour {
    let b = this.addresses.get(id);
    if (!b) {
      b = { reachable: true, ana: 'optimized' };
      this.addresses.set(id, b);
    }
    return b;
  }

  /** The `connectController` function for openMultipath / `connect` for Path. */
  connect = async (o: ConnectOptions): Promise<PathController> => {
    this.connects.push(o);
    const id = `${o.host}:${o.port ?? 4420}`;
    const b = this.address(id);
    if (b.connectDelay) await new Promise((r) => setTimeout(r, b.connectDelay));
    if (o.signal?.aborted) throw new ConnectionClosedError('aborted');
    if (!b.reachable) throw new ConnectionFailedError(`cannot connect to ${id}: ECONNREFUSED`);
    const c = new FakeController(this, o, this.nextCntlid++);
    await c.bringUp();
    this.controllers.push(c);
    return c;
  };

  /** Live controllers for an address. */
  live(id: string): FakeController[] {
    return this.controllers.filter((c) => c.id === id && !c.closed);
  }

  /** Drop every connection of an address (and optionally make it unreachable). */
  kill(id: string, unreachable = true): void {
    if (unreachable) this.address(id).reachable = false;
    for (const c of this.live(id)) c.destroy(new ConnectionClosedError(`queue 1: connection closed by the controller (${id})`));
  }

  /** Change the ANA state of an address and tell its controllers (as an ANA change AEN would). */
  setAna(id: string, state: AnaStateName, notify = true): void {
    this.address(id).ana = state;
    if (notify && this.emitEvents) for (const c of this.live(id)) c.emitAna();
  }

  /** The ANA log page for an address, `length` bytes. */
  anaLog(id: string, length: number): Buffer {
    const state = ANA_VALUE[this.address(id).ana]!;
    const log = encodeAnaLog({ chgcnt: 1, groups: [{ anagrpid: 1, chgcnt: 1, state, nsids: [this.nsid] }] });
    const out = Buffer.alloc(length);
    log.copy(out, 0, 0, Math.min(length, log.length));
    return out;
  }

  /** Blocks written so far. */
  read(lba: bigint): Buffer | undefined {
    return this.store.get(lba);
  }
}

export class FakeController implements PathController {
  readonly host: string;
  readonly port: number;
  readonly subnqn: string;
  readonly cntlid: number;
  readonly identity: IdentifyController;
  readonly maxTransferBytes = 64 * 1024;
  readonly keepAliveRtt = 0.25;
  readonly lastKeepAliveAt = Date.now();
  readonly id: string;
  readonly opts: ConnectOptions;
  closed = false;
  ioCount = 0;
  /** ANA log reads made by this controller's tracker. */
  anaReads = 0;
  private readonly fabric: FakeFabric;
  private readonly closeListeners: ((err: Error | undefined) => void)[] = [];
  private readonly anaListeners = new Set<(ev: PathAnaEvent) => void>();
  private readonly hung: ((e: Error) => void)[] = [];
  private readonly tracker: AnaTracker | undefined;

  constructor(fabric: FakeFabric, o: ConnectOptions, cntlid: number) {
    this.fabric = fabric;
    this.opts = o;
    this.host = o.host;
    this.port = o.port ?? 4420;
    this.id = `${this.host}:${this.port}`;
    this.subnqn = o.subnqn;
    this.cntlid = cntlid;
    const b = fabric.address(this.id);
    this.identity = parseIdentifyController(
      encodeIdentifyController({ cntlid, subnqn: b.subnqn ?? o.subnqn, cmic: fabric.anaReporting ? 0x0b : 0x03, nn: 8, nanagrpid: 2, anagrpmax: 2, mnan: 8 }),
    );
    if (fabric.anaReporting) {
      this.tracker = new AnaTracker(
        async () => {
          this.anaReads++;
          // The log is read from the fabric a turn later, as a real Get Log Page answers after a round trip.
          await new Promise((r) => setImmediate(r));
          return parseAnaLog(fabric.anaLog(this.id, 4096));
        },
        10,
        // As Controller does: no event for the bring-up read, nor for a read that changed nothing (unless an AEN asked).
        (log, diff, reason) => {
          if (reason === 'initial' || (reason !== 'aen' && diff.changed.length === 0 && diff.groups.length === 0)) return;
          for (const l of [...this.anaListeners]) l({ log });
        },
      );
    }
  }

  /** Bring-up as Controller does it: the ANA log is read once before the controller is handed out. */
  async bringUp(): Promise<void> {
    await this.tracker?.refresh(false, 'initial');
  }

  anaState(nsid: number): AnaStateName | undefined {
    return this.tracker?.stateOf(nsid);
  }

  get anaLog(): AnaLog | undefined {
    return this.tracker?.log;
  }

  refreshAnaState(opts: { rgo?: boolean } = {}): Promise<AnaLog> {
    if (!this.tracker) return Promise.reject(statusErr(0, 0x02, true));
    return this.tracker.refresh(!!opts.rgo, 'manual');
  }

  get on(): PathController['on'] {
    if (!this.fabric.emitEvents) return undefined;
    return (_type, listener) => {
      this.anaListeners.add(listener);
      return () => this.anaListeners.delete(listener);
    };
  }

  /** An ANA Change AEN: the controller re-reads the log and tells its listeners. */
  emitAna(): void {
    this.tracker?.refresh(false, 'aen').catch(() => undefined);
  }

  onClose(fn: (err: Error | undefined) => void): void {
    if (this.closed) queueMicrotask(() => fn(undefined));
    else this.closeListeners.push(fn);
  }

  async close(): Promise<void> {
    this.finish(undefined);
  }

  destroy(err?: Error): void {
    this.finish(err ?? new ConnectionClosedError('destroyed'));
  }

  private finish(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    const e = err ?? new ConnectionClosedError('closed');
    for (const h of this.hung.splice(0)) h(e);
    for (const l of this.closeListeners.splice(0)) l(err);
  }

  async adminCommand(cmd: NvmeCommand, _opts?: SubmitOptions): Promise<Completion> {
    if (this.closed) throw new ConnectionClosedError('controller closed');
    const opcode = cmd.sqe[0]!;
    const lid = cmd.sqe.readUInt32LE(40) & 0xff;
    if (opcode === 0x02 && lid === 0x0c) throw new Error('the ANA log is read by the controller only, never through adminCommand by a path');
    throw statusErr(0, 0x01, true);
  }

  ioCommand(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion> {
    if (this.closed) return Promise.reject(new ConnectionClosedError('controller closed'));
    this.ioCount++;
    const f = this.fabric.fault?.(cmd, this);
    if (f === 'hang') {
      return new Promise<Completion>((_, reject) => {
        this.hung.push(reject);
        const t = opts?.timeout;
        if (t) setTimeout(() => reject(new TimeoutError(`queue 1: ${cmd.name} timed out`)), t).unref();
      });
    }
    if (f) return Promise.reject(f);
    const ana = this.fabric.address(this.id).ana;
    const sc = ANA_SC[ana];
    if (sc !== undefined) {
      // As Controller.ioCommand: an ANA path status is noted by the tracker (provisional state, background re-read).
      this.tracker?.noteStatus(cmd.sqe.readUInt32LE(4), sc);
      return Promise.reject(statusErr(3, sc));
    }
    const opcode = cmd.sqe[0]!;
    const slba = cmd.sqe.readBigUInt64LE(40);
    const nlb = cmd.sqe.readUInt16LE(48) + 1;
    const bs = this.fabric.blockSize;
    // Complete asynchronously, as a real queue would.
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        if (this.closed) {
          reject(new ConnectionClosedError('controller closed'));
          return;
        }
        if (opcode === 0x01) {
          const data = Buffer.from(cmd.data!);
          for (let i = 0; i < nlb; i++) this.fabric.store.set(slba + BigInt(i), Buffer.from(data.subarray(i * bs, (i + 1) * bs)));
          resolve({ cqe: cqe(), received: 0 });
        } else if (opcode === 0x02) {
          const out = opts?.readInto ?? Buffer.alloc(nlb * bs);
          for (let i = 0; i < nlb; i++) {
            const b = this.fabric.store.get(slba + BigInt(i));
            if (b) b.copy(out, i * bs);
            else out.fill(0, i * bs, (i + 1) * bs);
          }
          resolve({ cqe: cqe(), data: out.subarray(0, nlb * bs), received: nlb * bs });
        } else {
          resolve({ cqe: cqe(), received: 0 });
        }
      }),
    );
  }

  async namespace(nsid: number): Promise<PathNamespace> {
    if (this.closed) throw new ConnectionClosedError('controller closed');
    const identity: IdentifyNamespace = parseIdentifyNamespace(
      encodeIdentifyNamespace({ nsze: this.fabric.nsze, ncap: this.fabric.nsze, nuse: this.fabric.nsze, lbaf: [{ ms: 0, lbads: 9, rp: 0 }], anagrpid: 1 }),
    );
    const nguid = this.fabric.address(this.id).nguid ?? this.fabric.nguid;
    return { nsid, identity, blockSize: this.fabric.blockSize, blocks: this.fabric.nsze, nguid, eui64: undefined, uuid: undefined };
  }
}

function cqe() {
  return { dw0: 0, dw1: 0, sqhd: 0, sqid: 1, cid: 0, status: 0 };
}

/** Poll `cond` every 5 ms until it holds or `ms` passes. */
export async function waitFor(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
