/**
 * Asymmetric Namespace Access (ANA) state of one controller.
 *
 * The ANA log page (LID 0Ch) lists the controller's ANA groups, the state of each group as seen through this
 * controller, and (unless Return Groups Only is asked for) the namespaces in each group. {@link AnaTracker} keeps the
 * last log read, answers "what is the state of namespace N", and works out what changed between two reads. The log is
 * read at bring-up (when CMIC reports ANA), again on every ANA Change event, and when an I/O completes with an ANA
 * path status (SCT 3: 01h persistent loss, 02h inaccessible, 03h transition).
 */
import { Buffer } from 'node:buffer';
import { debuglog } from 'node:util';
import { LogPageId, NSID_ALL } from '../protocol/constants.js';
import { ANA_GROUP_DESC_SIZE, ANA_LOG_HEADER_SIZE, parseAnaLog, type AnaLog } from '../protocol/logpages.js';
import { anaStateFromPathStatus, anaStateName, type AnaStateName } from '../protocol/ana.js';

export { anaStateUsable, anaStateFromPathStatus, type AnaStateName } from '../protocol/ana.js';
import { protocolError } from '../protocol/pdu.js';

const debug = debuglog('nvmeof');

/** The name of an ANA state value; a reserved value is named 'inaccessible' (the protocol layer's `anaStateName`). */
export const toAnaStateName = anaStateName;

/** One namespace whose ANA state (or group) changed between two reads of the log. */
export interface AnaNamespaceChange {
  nsid: number;
  /** ANA group the namespace is in now. */
  group: number;
  /** State now. */
  state: AnaStateName;
  /** State before (undefined when the namespace was not in the previous log). */
  previous: AnaStateName | undefined;
}

/** One ANA group whose state changed between two reads of the log. */
export interface AnaGroupChange {
  group: number;
  state: AnaStateName;
  previous: AnaStateName | undefined;
}

/** What {@link AnaTracker.apply} found. */
export interface AnaDiff {
  changed: AnaNamespaceChange[];
  groups: AnaGroupChange[];
}

/** Why the ANA log was read: bring-up, an ANA Change event, an I/O path status, or a caller's request. */
export type AnaRefreshReason = 'initial' | 'aen' | 'status' | 'manual';

/** Reads `length` bytes of a log page at `offset`. */
export type LogReader = (o: { lid: number; length: number; offset: number; lsp: number; nsid: number; rae: boolean }) => Promise<Buffer>;

/** Largest ANA log the host reads (a sanity bound on NANAGRPID x descriptor + MNAN x 4 from Identify). */
const ANA_LOG_MAX = 16 * 1024 * 1024;

/**
 * Bytes needed by the ANA log in `buf` as far as it can tell: header + every descriptor + its NSIDs. When the buffer
 * is too short to see every descriptor, the result is larger than the buffer and reading more is needed.
 */
export function anaLogBytesNeeded(buf: Buffer, rgo: boolean): number {
  if (buf.length < ANA_LOG_HEADER_SIZE) return ANA_LOG_HEADER_SIZE;
  const ngrps = buf.readUInt16LE(8);
  let off = ANA_LOG_HEADER_SIZE;
  for (let g = 0; g < ngrps; g++) {
    if (off + ANA_GROUP_DESC_SIZE > buf.length) return off + (ngrps - g) * ANA_GROUP_DESC_SIZE;
    const nnsids = rgo ? 0 : buf.readUInt32LE(off + 4);
    off += ANA_GROUP_DESC_SIZE + nnsids * 4;
  }
  return off;
}

/**
 * Read and parse the ANA log. The first read is sized from Identify (NANAGRPID descriptors and MNAN, else NN, NSIDs),
 * limited to `maxTransfer` bytes; when the log turns out longer, the rest is read with the Log Page Offset. Every read
 * has RAE cleared, so a pending ANA Change event is acknowledged.
 */
export async function readAnaLog(
  read: LogReader,
  id: { nanagrpid: number; mnan: number; nn: number },
  maxTransfer: number,
  opts: { rgo?: boolean } = {},
): Promise<AnaLog> {
  const rgo = !!opts.rgo;
  const groups = Math.max(1, Math.min(id.nanagrpid, 0xffff));
  const nsids = rgo ? 0 : Math.max(1, id.mnan || id.nn);
  const sized = Math.min(ANA_LOG_MAX, ANA_LOG_HEADER_SIZE + groups * ANA_GROUP_DESC_SIZE + nsids * 4);
  const chunk = Math.max(4096, maxTransfer - (maxTransfer % 4));
  const lsp = rgo ? 1 : 0;
  let buf = await read({ lid: LogPageId.Ana, length: roundUp4(Math.min(sized, chunk)), offset: 0, lsp, nsid: NSID_ALL, rae: false });
  // Targets may list more than Identify promised; follow the descriptors instead of trusting the estimate.
  for (let guard = 0; guard < 64; guard++) {
    const need = anaLogBytesNeeded(buf, rgo);
    if (need <= buf.length) break;
    if (need > ANA_LOG_MAX) throw protocolError.malformed(`ANA log needs ${need} bytes, more than the ${ANA_LOG_MAX}-byte bound`);
    const length = roundUp4(Math.min(need - buf.length, chunk));
    const more = await read({ lid: LogPageId.Ana, length, offset: buf.length, lsp, nsid: NSID_ALL, rae: false });
    buf = Buffer.concat([buf, more]);
  }
  return parseAnaLog(buf, { rgo });
}

function roundUp4(n: number): number {
  return (n + 3) & ~3;
}

/**
 * The ANA state of one controller as last read from its ANA log, with provisional per-group overrides learned from
 * I/O path statuses until the next read.
 */
export class AnaTracker {
  /** The last log read in full or with RGO (undefined before the first read). */
  log: AnaLog | undefined;
  /** ANA Transition Time from Identify Controller, seconds. */
  readonly anatt: number;

  private readonly groupState = new Map<number, AnaStateName>();
  private readonly nsGroup = new Map<number, number>();
  private readonly overrides = new Map<number, AnaStateName>();
  private readonly reader: (rgo: boolean) => Promise<AnaLog>;
  private readonly onRefresh: (log: AnaLog, diff: AnaDiff, reason: AnaRefreshReason) => void;
  private inflight: Promise<AnaLog> | undefined;
  private pending: { rgo: boolean; reason: AnaRefreshReason; promise: Promise<AnaLog> } | undefined;

  constructor(
    reader: (rgo: boolean) => Promise<AnaLog>,
    anatt: number,
    onRefresh: (log: AnaLog, diff: AnaDiff, reason: AnaRefreshReason) => void = () => undefined,
  ) {
    this.reader = reader;
    this.anatt = anatt;
    this.onRefresh = onRefresh;
  }

  /** ANA state of `nsid`: a provisional state from an I/O status if one was seen since the last read, else the log's. */
  stateOf(nsid: number): AnaStateName | undefined {
    const g = this.nsGroup.get(nsid);
    if (g === undefined) return undefined;
    return this.overrides.get(g) ?? this.groupState.get(g);
  }

  /** ANA group of `nsid` from the last full log (undefined when it was not listed). */
  groupOf(nsid: number): number | undefined {
    return this.nsGroup.get(nsid);
  }

  /** State of ANA group `group`. */
  stateOfGroup(group: number): AnaStateName | undefined {
    return this.overrides.get(group) ?? this.groupState.get(group);
  }

  /** Every namespace listed in the last full log with its group and state. */
  namespaces(): { nsid: number; group: number; state: AnaStateName | undefined }[] {
    return [...this.nsGroup].sort((a, b) => a[0] - b[0]).map(([nsid, group]) => ({ nsid, group, state: this.stateOfGroup(group) }));
  }

  /**
   * Take a freshly read log: replace the state, drop provisional overrides, and return what changed relative to the
   * previous log, plus provisional states the new log does not confirm. With `rgo` the namespace-to-group map is kept.
   */
  apply(log: AnaLog, rgo = false): AnaDiff {
    const prevGroups = new Map(this.groupState);
    const prevOverrides = new Map(this.overrides);
    const prevNs = new Map(this.nsGroup);
    this.log = log;
    this.overrides.clear();
    this.groupState.clear();
    for (const g of log.groups) this.groupState.set(g.anagrpid, anaStateName(g.state));
    if (!rgo) {
      this.nsGroup.clear();
      for (const g of log.groups) for (const nsid of g.nsids) this.nsGroup.set(nsid, g.anagrpid);
    }
    // A change is a state that differs from the previous log, or a provisional state (from an I/O status) that the log
    // does not confirm: the namespace goes back to the log's state, and `previous` is the provisional one.
    const before = (group: number | undefined, state: AnaStateName): { changed: boolean; previous: AnaStateName | undefined } => {
      if (group === undefined) return { changed: true, previous: undefined };
      const logged = prevGroups.get(group);
      const provisional = prevOverrides.get(group);
      if (provisional !== undefined && provisional !== state) return { changed: true, previous: provisional };
      return { changed: logged !== state, previous: logged };
    };
    const groups: AnaGroupChange[] = [];
    for (const [group, state] of this.groupState) {
      const b = before(prevGroups.has(group) || prevOverrides.has(group) ? group : undefined, state);
      if (b.changed) groups.push({ group, state, previous: b.previous });
    }
    const changed: AnaNamespaceChange[] = [];
    for (const [nsid, group] of this.nsGroup) {
      const state = this.groupState.get(group);
      if (state === undefined) continue;
      const pg = prevNs.get(nsid);
      const b = before(pg, state);
      if (pg !== group || b.changed) changed.push({ nsid, group, state, previous: b.previous });
    }
    changed.sort((a, b) => a.nsid - b.nsid);
    groups.sort((a, b) => a.group - b.group);
    return { changed, groups };
  }

  /**
   * An I/O on `nsid` completed with ANA path status `sc`: record the state it reveals for the namespace's group until
   * the next read, and start a refresh (not awaited; its failure is only logged).
   */
  noteStatus(nsid: number, sc: number): void {
    const state = anaStateFromPathStatus(sc);
    if (!state) return;
    const group = this.nsGroup.get(nsid);
    if (group !== undefined) this.overrides.set(group, state);
    this.refresh(group !== undefined, 'status').catch((err: Error) => debug('ANA log refresh failed: %s', err.message));
  }

  /**
   * Read the log again. Reads never overlap: a call made while one is in flight joins one follow-up read that starts
   * when it finishes (the state may have moved since the first read was sent). With `rgo` only group states are read
   * (the follow-up read is a full one if any joined call wanted the namespace lists). `reason` is handed to the
   * refresh callback ('aen' wins when calls are merged).
   */
  refresh(rgo = false, reason: AnaRefreshReason = 'manual'): Promise<AnaLog> {
    if (this.inflight || this.pending) {
      if (!this.pending) {
        const pending = { rgo, reason, promise: undefined as unknown as Promise<AnaLog> };
        pending.promise = this.inflight!.then(
          () => this.runPending(),
          () => this.runPending(),
        );
        this.pending = pending;
      } else {
        this.pending.rgo = this.pending.rgo && rgo;
        if (reason === 'aen') this.pending.reason = 'aen';
      }
      return this.pending.promise;
    }
    return this.start(rgo, reason);
  }

  private runPending(): Promise<AnaLog> {
    const p = this.pending!;
    this.pending = undefined;
    return this.start(p.rgo, p.reason);
  }

  private start(rgo: boolean, reason: AnaRefreshReason): Promise<AnaLog> {
    const p = (async () => {
      try {
        const log = await this.reader(rgo);
        const diff = this.apply(log, rgo);
        this.onRefresh(log, diff, reason);
        return log;
      } finally {
        this.inflight = undefined;
      }
    })();
    this.inflight = p;
    return p;
  }
}
