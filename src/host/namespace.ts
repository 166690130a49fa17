/**
 * Namespace: block I/O on one namespace of a controller.
 *
 * LBAs are accepted as bigint or safe-integer numbers. Every request is checked against the LBA size and the
 * namespace size before anything is sent, and requests larger than the controller's MDTS (or the 65536-block NLB
 * limit) are split into several commands that run concurrently across the I/O queues.
 */
import { Buffer, constants as bufferConstants } from 'node:buffer';
import { ControllerError, InvalidArgumentError, NvmeStatusError, UnsupportedError } from '../errors.js';
import { MediaStatus, PathStatus, StatusCodeType } from '../protocol/constants.js';
import type { AnaStateName } from './ana.js';
import * as cmds from '../protocol/commands.js';
import type { IdentifyController, IdentifyNamespace, NsIdDescriptor, OncsFlags } from '../protocol/identify.js';
import type { Completion, SubmitOptions } from '../transport/queue-pair.js';
import type { NvmeCommand } from '../protocol/commands.js';
import * as resv from './reservations.js';
import { checkBoolean, checkOptions } from '../util.js';

/** What the namespace needs from its controller (kept narrow so that multipath can provide it too). */
export interface NamespaceOwner {
  /** Largest data transfer per command in bytes. */
  readonly maxTransferBytes: number;
  /** Optional NVM commands the controller supports (Identify Controller ONCS); absent = assume supported. */
  readonly oncs?: OncsFlags;
  /** Identify Controller data of the controller behind the namespace (absent: the owner does not say). */
  readonly identity?: IdentifyController;
  ioCommand(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion>;
  /** Admin commands (used by reservations for the notification mask); absent for owners without an admin queue. */
  adminCommand?(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion>;
  /** ANA state of `nsid` as the owner knows it (absent: the owner does not track ANA). */
  anaState?(nsid: number): AnaStateName | undefined;
  /** ANA group of `nsid` as the owner knows it. */
  anaGroup?(nsid: number): number | undefined;
  /**
   * How long, in ms, I/O that completes with ANA Transition is retried through this owner (single-path behaviour);
   * 0 or absent: the error is returned at once (a multipath owner moves the I/O to another path instead).
   */
  readonly anaTransitionTimeout?: number;
  /** Resolve when the ANA state of `nsid` may have changed or after `ms`; used between ANA Transition retries. */
  waitForAnaChange?(nsid: number, ms: number, signal?: AbortSignal): Promise<void>;
}

/** Per-call options of namespace I/O. */
export interface IoOptions {
  /** Aborts the call (commands already sent keep their slots until the controller answers). */
  signal?: AbortSignal;
  /** Per-command timeout in ms. */
  timeout?: number;
}

/** Options of `write()`. */
export interface WriteOptions extends IoOptions {
  /** Force Unit Access. */
  fua?: boolean;
}

/** A range of logical blocks. */
export interface LbaRange {
  /** Starting LBA. */
  lba: bigint | number;
  /** Number of blocks. */
  blocks: number;
}

/** An LBA inside the library: a safe-integer number as the caller gave it, else a bigint. */
type Lba = bigint | number;

/** Largest NLB one command can carry (16-bit 0's based field). */
const MAX_NLB = 65536;

/** LBA data sizes the library accepts: from 512 bytes (the spec's minimum, LBADS 9) to 16 MiB (LBADS 24). */
const MIN_LBADS = 9;
const MAX_LBADS = 24;

/** The largest Buffer Node can allocate. */
const MAX_BUFFER_BYTES = bufferConstants.MAX_LENGTH;

/** Block I/O and reservations on one namespace of a controller. Create with `ctrl.namespace(nsid)`. */
export class Namespace {
  /** Namespace ID. */
  readonly nsid: number;
  /** Parsed Identify Namespace data. */
  readonly identity: IdentifyNamespace;
  /** Logical block size in bytes (data only, no metadata). */
  readonly blockSize: number;
  /** Namespace size in logical blocks (NSZE). */
  readonly blocks: bigint;
  /** Namespace capacity in bytes. */
  readonly sizeBytes: bigint;
  /** Namespace Globally Unique Identifier (hex), when reported. */
  readonly nguid: string | undefined;
  /** IEEE Extended Unique Identifier (hex), when reported. */
  readonly eui64: string | undefined;
  /** Namespace UUID, when reported. */
  readonly uuid: string | undefined;

  private readonly owner: NamespaceOwner;

  constructor(owner: NamespaceOwner, nsid: number, identity: IdentifyNamespace, descriptors: NsIdDescriptor[]) {
    const lbads = identity.currentLbaFormat.lbads;
    if (lbads < MIN_LBADS || lbads > MAX_LBADS) {
      throw new ControllerError(
        `namespace ${nsid} reports an LBA data size of 2^${lbads} bytes (LBADS ${lbads} in LBA format ${identity.lbafIndex}); ` +
          `usable sizes are ${2 ** MIN_LBADS} bytes to ${2 ** MAX_LBADS / 1048576} MiB`,
      );
    }
    this.owner = owner;
    this.nsid = nsid;
    this.identity = identity;
    this.blockSize = identity.blockSize;
    this.blocks = identity.nsze;
    this.sizeBytes = identity.nsze * BigInt(identity.blockSize);
    const find = (t: NsIdDescriptor['type']) => descriptors.find((d) => d.type === t)?.value;
    const nonZero = (b: Buffer | undefined) => (b && b.some((x) => x !== 0) ? b : undefined);
    const nguid = nonZero(find('nguid')) ?? nonZero(identity.nguid);
    const eui64 = nonZero(find('eui64')) ?? nonZero(identity.eui64);
    const uuid = nonZero(find('uuid'));
    this.nguid = nguid?.toString('hex');
    this.eui64 = eui64?.toString('hex');
    this.uuid = uuid ? formatUuidHex(uuid.toString('hex')) : undefined;
  }

  /** Identify Controller data of the controller the namespace is reached through, when its owner provides it. */
  get controllerIdentity(): IdentifyController | undefined {
    return this.owner.identity;
  }

  /** Optional NVM commands of that controller (Identify Controller ONCS); undefined when not known. */
  get oncs(): OncsFlags | undefined {
    return this.owner.oncs;
  }

  /** ANA group of the namespace: from the owner's last ANA log, else Identify Namespace ANAGRPID (0 = none). */
  get anaGroup(): number {
    return this.owner.anaGroup?.(this.nsid) ?? this.identity.anagrpid;
  }

  /** ANA state of the namespace through its owner (undefined when ANA is not reported or not known yet). */
  get anaState(): AnaStateName | undefined {
    return this.owner.anaState?.(this.nsid);
  }

  /**
   * Blocks per command after the owner's transfer limit (MDTS, maxTransferSize) and the 65536-block NLB limit. It
   * follows the owner's current limit: a multipath owner lowers it when a path with a smaller MDTS joins.
   */
  get maxBlocksPerCommand(): number {
    return Math.max(1, Math.min(MAX_NLB, Math.floor(this.owner.maxTransferBytes / this.blockSize)));
  }

  /**
   * Submit one command through the owner. When the owner asks for it (`anaTransitionTimeout`), a command that
   * completes with ANA Transition (and not DNR) is retried until that much time has passed.
   */
  private io(cmd: NvmeCommand, opts?: SubmitOptions): Promise<Completion> {
    const p = this.owner.ioCommand(cmd, opts);
    // Without ANA Transition retries the owner's promise itself: no extra promise and no extra microtask per command.
    return this.owner.anaTransitionTimeout ? p.catch((err: unknown) => this.retryAnaTransition(err, cmd, opts)) : p;
  }

  /** After `err`: retry a command that met ANA Transition while the owner's `anaTransitionTimeout` lasts, else rethrow. */
  private async retryAnaTransition(err: unknown, cmd: NvmeCommand, opts: SubmitOptions | undefined): Promise<Completion> {
    const limit = this.owner.anaTransitionTimeout;
    if (!limit) throw err;
    const deadline = Date.now() + limit;
    let delay = 50;
    while (isAnaTransition(err) && Date.now() < deadline) {
      const wait = Math.min(delay, deadline - Date.now());
      if (this.owner.waitForAnaChange) await this.owner.waitForAnaChange(this.nsid, wait, opts?.signal);
      else await new Promise((r) => setTimeout(r, wait).unref());
      delay = Math.min(delay * 2, 1000);
      try {
        return await this.owner.ioCommand(cmd, opts);
      } catch (e) {
        err = e;
      }
    }
    throw err;
  }

  /** Read `blocks` logical blocks starting at `lba`. */
  async read(lba: bigint | number, blocks: number, opts?: IoOptions): Promise<Buffer> {
    checkOptions('read options', opts);
    const slba = this.checkRange('read', lba, blocks);
    if (blocks * this.blockSize > MAX_BUFFER_BYTES) {
      throw new InvalidArgumentError(`read: ${blocks} blocks of ${this.blockSize} bytes do not fit in one Buffer (at most ${MAX_BUFFER_BYTES} bytes); read in pieces or use readInto`);
    }
    const out = Buffer.allocUnsafe(blocks * this.blockSize);
    await this.readIntoChecked(slba, blocks, out, opts);
    return out;
  }

  /** Read into a caller's buffer (its length, a multiple of the block size, says how many blocks). Zero-copy. */
  async readInto(lba: bigint | number, buf: Buffer, opts?: IoOptions): Promise<Buffer> {
    checkOptions('readInto options', opts);
    const blocks = this.blocksOf('readInto', buf, 'buf');
    const slba = this.checkRange('readInto', lba, blocks);
    await this.readIntoChecked(slba, blocks, buf, opts);
    return buf;
  }

  private readIntoChecked(slba: Lba, blocks: number, out: Buffer, opts?: IoOptions): Promise<unknown> {
    const bs = this.blockSize;
    const nsid = this.nsid;
    if (blocks <= this.maxBlocksPerCommand) {
      // One command (the common case): no splitting machinery, and the caller's buffer itself receives the data.
      return this.io(cmds.read({ nsid, slba, nlb: blocks, blockSize: bs }), opts === undefined ? { readInto: out } : { ...opts, readInto: out });
    }
    return this.forEachChunk(slba, blocks, (lba, n, off) =>
      this.io(cmds.read({ nsid, slba: lba, nlb: n, blockSize: bs }), { ...opts, readInto: out.subarray(off * bs, (off + n) * bs) }),
    );
  }

  /** Write `data` (a multiple of the block size) starting at `lba`. */
  async write(lba: bigint | number, data: Uint8Array, opts?: WriteOptions): Promise<void> {
    checkOptions('write options', opts);
    const blocks = this.blocksOf('write', data);
    const slba = this.checkRange('write', lba, blocks);
    const bs = this.blockSize;
    const nsid = this.nsid;
    if (blocks <= this.maxBlocksPerCommand) {
      await this.io(cmds.write({ nsid, slba, data, blockSize: bs, fua: opts?.fua }), opts);
      return;
    }
    await this.forEachChunk(slba, blocks, (l, n, off) =>
      this.io(cmds.write({ nsid, slba: l, data: data.subarray(off * bs, (off + n) * bs), blockSize: bs, fua: opts?.fua }), opts),
    );
  }

  /** Commit volatile write cache contents to media. */
  async flush(opts?: IoOptions): Promise<void> {
    checkOptions('flush options', opts);
    await this.io(cmds.flush(this.nsid), opts);
  }

  /** Write zeroes to `blocks` blocks at `lba`, optionally letting the controller deallocate them. */
  async writeZeroes(lba: bigint | number, blocks: number, opts?: IoOptions & { deallocate?: boolean; fua?: boolean }): Promise<void> {
    checkOptions('writeZeroes options', opts);
    checkBoolean('writeZeroes deallocate', opts?.deallocate);
    checkBoolean('writeZeroes fua', opts?.fua);
    this.requireOncs('writeZeroes', 'writeZeroes');
    const slba = this.checkRange('writeZeroes', lba, blocks);
    await this.forEachChunk(slba, blocks, (l, n) => this.io(cmds.writeZeroes({ nsid: this.nsid, slba: l, nlb: n, deac: opts?.deallocate, fua: opts?.fua }), opts), MAX_NLB);
  }

  /** Deallocate (trim) ranges with Dataset Management. */
  async deallocate(ranges: LbaRange[], opts?: IoOptions): Promise<void> {
    checkOptions('deallocate options', opts);
    if (!Array.isArray(ranges) || ranges.length === 0) throw new InvalidArgumentError('deallocate needs at least one range');
    this.requireOncs('deallocate', 'dsm');
    const entries: { slba: Lba; nlb: number }[] = [];
    for (const [i, r] of ranges.entries()) {
      if (r === null || typeof r !== 'object') throw new InvalidArgumentError(`deallocate: range ${i} must be an object { lba, blocks }, got ${r === null ? 'null' : typeof r}`);
      const slba = this.checkRange(`deallocate: range ${i}`, r.lba, r.blocks, 0xffffffff);
      entries.push({ slba, nlb: r.blocks });
    }
    for (let i = 0; i < entries.length; i += 256) {
      await this.io(cmds.datasetManagement({ nsid: this.nsid, ranges: entries.slice(i, i + 256), deallocate: true }), opts);
    }
  }

  /**
   * Compare `data` with the blocks at `lba`. Resolves true when they match, false on a Compare Failure status;
   * other errors reject.
   */
  async compare(lba: bigint | number, data: Uint8Array, opts?: IoOptions): Promise<boolean> {
    checkOptions('compare options', opts);
    this.requireOncs('compare', 'compare');
    const blocks = this.blocksOf('compare', data);
    const slba = this.checkRange('compare', lba, blocks);
    const bs = this.blockSize;
    try {
      await this.forEachChunk(slba, blocks, (l, n, off) =>
        this.io(cmds.compare({ nsid: this.nsid, slba: l, data: data.subarray(off * bs, (off + n) * bs), blockSize: bs }), opts),
      );
      return true;
    } catch (err) {
      if (err instanceof NvmeStatusError && err.sct === StatusCodeType.MediaAndDataIntegrity && err.sc === MediaStatus.CompareFailure) return false;
      throw err;
    }
  }

  /** Verify the integrity of `blocks` blocks at `lba` without transferring data. */
  async verify(lba: bigint | number, blocks: number, opts?: IoOptions): Promise<void> {
    checkOptions('verify options', opts);
    this.requireOncs('verify', 'verify');
    const slba = this.checkRange('verify', lba, blocks);
    await this.forEachChunk(slba, blocks, (l, n) => this.io(cmds.verify({ nsid: this.nsid, slba: l, nlb: n }), opts), MAX_NLB);
  }

  /** Register, unregister or replace this host's reservation key (Reservation Register). */
  reservationRegister(p: resv.ReservationRegisterParams, opts?: IoOptions): Promise<void> {
    return resv.reservationRegister(this.resv(), p, opts);
  }

  /** Acquire a reservation, or preempt (and abort) other registrants (Reservation Acquire). */
  reservationAcquire(p: resv.ReservationAcquireParams, opts?: IoOptions): Promise<void> {
    return resv.reservationAcquire(this.resv(), p, opts);
  }

  /** Release the reservation, or clear it and every registration (Reservation Release). */
  reservationRelease(p: resv.ReservationReleaseParams, opts?: IoOptions): Promise<void> {
    return resv.reservationRelease(this.resv(), p, opts);
  }

  /** Generation, reservation type, holder and every registrant with its host ID and key (Reservation Report). */
  reservationReport(p?: resv.ReservationReportParams, opts?: IoOptions): Promise<resv.ReservationReport> {
    return resv.reservationReport(this.resv(), p, opts);
  }

  private resvCtx: resv.ReservationNamespace | undefined;

  private resv(): resv.ReservationNamespace {
    const owner = this.owner;
    this.resvCtx ??= {
      nsid: this.nsid,
      identity: this.identity,
      get oncs() {
        return owner.oncs;
      },
      io: (cmd, o) => this.io(cmd, o),
      ...(owner.adminCommand ? { admin: (cmd: NvmeCommand, o?: SubmitOptions) => owner.adminCommand!(cmd, o) } : {}),
    };
    return this.resvCtx;
  }

  /** Reject, before sending, a command the controller says (in ONCS) it does not implement. */
  private requireOncs(op: string, flag: 'compare' | 'writeZeroes' | 'dsm' | 'verify'): void {
    const oncs = this.owner.oncs;
    if (oncs && !oncs[flag]) {
      throw new UnsupportedError(`${op}: the controller does not support this command (Identify Controller ONCS.${flag} is 0)`);
    }
  }

  private blocksOf(op: string, data: Uint8Array, name = 'data'): number {
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError(`${op}: ${name} must be a Buffer or Uint8Array`);
    if (data.length === 0 || data.length % this.blockSize !== 0) {
      throw new InvalidArgumentError(`${op}: ${name} length ${data.length} is not a positive multiple of the ${this.blockSize}-byte block size of namespace ${this.nsid}`);
    }
    return data.length / this.blockSize;
  }

  /**
   * Validate an LBA range against the namespace; returns the start LBA as given (a safe-integer number stays a
   * number, so the I/O path needs no BigInt arithmetic).
   */
  private checkRange(op: string, lba: bigint | number, blocks: number, maxBlocks = Number.MAX_SAFE_INTEGER): Lba {
    if (typeof lba !== 'bigint' && !(typeof lba === 'number' && Number.isSafeInteger(lba))) {
      throw new InvalidArgumentError(`${op}: lba must be a bigint or a safe integer, got ${String(lba)}`);
    }
    if (lba < 0) throw new InvalidArgumentError(`${op}: lba must not be negative, got ${lba}`);
    if (!Number.isSafeInteger(blocks) || blocks < 1 || blocks > maxBlocks) throw new InvalidArgumentError(`${op}: block count must be an integer 1..${maxBlocks}, got ${blocks}`);
    // Numbers compare exactly with the bigint size while the end is a safe integer; past that, compare as bigints.
    const pastEnd = typeof lba === 'number' && lba + blocks <= Number.MAX_SAFE_INTEGER ? lba + blocks > this.blocks : BigInt(lba) + BigInt(blocks) > this.blocks;
    if (pastEnd) {
      throw new InvalidArgumentError(`${op}: ${blocks} blocks at LBA ${lba} go past the end of namespace ${this.nsid} (${this.blocks} blocks)`);
    }
    return lba;
  }

  /** Split [slba, slba+blocks) into command-sized pieces and run them concurrently; rejects with the first error. */
  private async forEachChunk(
    slba: Lba,
    blocks: number,
    fn: (lba: Lba, n: number, offsetBlocks: number) => Promise<unknown>,
    perCommand = this.maxBlocksPerCommand,
  ): Promise<void> {
    if (blocks <= perCommand) {
      await fn(slba, blocks, 0);
      return;
    }
    const pieces: Promise<unknown>[] = [];
    for (let off = 0; off < blocks; off += perCommand) {
      const n = Math.min(perCommand, blocks - off);
      pieces.push(fn(typeof slba === 'number' ? slba + off : slba + BigInt(off), n, off));
    }
    const results = await Promise.allSettled(pieces);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }
}

function isAnaTransition(err: unknown): boolean {
  return err instanceof NvmeStatusError && err.sct === StatusCodeType.PathRelated && err.sc === PathStatus.AsymmetricAccessTransition && !err.dnr;
}

function formatUuidHex(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
