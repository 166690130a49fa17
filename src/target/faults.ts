/**
 * Fault injection for the embedded target: rules that match commands (or connections) and change
 * how the target answers them. Rules are composable: every active rule that matches a command
 * applies, in the order they were added.
 */
import type { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import { makeStatus } from '../protocol/cqe.js';
import type { CommandKind } from './types.js';

/**
 * What a rule does.
 * - `drop`: execute the command but never answer it.
 * - `delay`: execute it and answer after `ms` milliseconds.
 * - `status`: do not execute it; complete it with `status` (and `dw0`/`dw1`).
 * - `corrupt-hdgst`: flip the header digest of the first PDU of the answer (needs header digests).
 * - `corrupt-ddgst`: flip the data digest of the first C2HData PDU of the answer (needs data digests and read data).
 * - `terminate`: instead of answering, send a C2HTermReq (`fes`, `fei`) and close the connection.
 * - `close`: instead of answering, close the connection.
 * - `close-mid-pdu`: send the first half of the answer's first PDU header, then close the connection.
 * - `unknown-cid`: answer with a CQE whose CID is not outstanding on the queue.
 * - `tiny-writes`: connection level: every socket write of matching connections is split into pieces of
 *   `chunk.min`..`chunk.max` bytes (default 1..7), each written in its own event loop turn.
 */
export type FaultAction =
  | 'drop'
  | 'delay'
  | 'status'
  | 'corrupt-hdgst'
  | 'corrupt-ddgst'
  | 'terminate'
  | 'close'
  | 'close-mid-pdu'
  | 'unknown-cid'
  | 'tiny-writes';

const ACTIONS: ReadonlySet<string> = new Set<FaultAction>([
  'drop', 'delay', 'status', 'corrupt-hdgst', 'corrupt-ddgst', 'terminate', 'close', 'close-mid-pdu', 'unknown-cid', 'tiny-writes',
]);

/** What the target knows about a command when it arrives (also the payload of the 'command' event). */
export interface CommandInfo {
  /** Connection ID (see NvmeTarget.connections()). */
  connectionId: number;
  /** Port ID the connection arrived on. */
  portid: number;
  /** Queue ID of the connection; for a Connect, the queue it connects; -1 on a queue not yet connected. */
  qid: number;
  cid: number;
  opcode: number;
  /** FCTYPE for Fabrics commands (opcode 7Fh), else undefined. */
  fctype: number | undefined;
  nsid: number;
  kind: CommandKind;
  /** The spec's name of the command, e.g. 'Read', 'Identify', 'Connect'. */
  name: string;
  /** A copy of the 64-byte SQE. */
  sqe: Buffer;
  /** Data length described by the SGL. */
  dataLength: number;
  /** Controller ID, once the queue is connected. */
  cntlid: number | undefined;
  subnqn: string | undefined;
  hostnqn: string | undefined;
}

/** Which commands (or connections, for `tiny-writes`) a rule applies to; every given field must match. */
export interface FaultMatch {
  /** Only commands on this connection (see NvmeTarget.connections()). */
  connectionId?: number;
  opcode?: number;
  fctype?: number;
  qid?: number;
  kind?: CommandKind;
  cid?: number;
  nsid?: number;
  cntlid?: number;
  subnqn?: string;
  hostnqn?: string;
  portid?: number;
  /** Any further condition. Not consulted for `tiny-writes`. */
  when?: (cmd: CommandInfo) => boolean;
}

/** A status for the `status` action: the raw CQE status field, or its parts. */
export type FaultStatus = number | { sct: number; sc: number; dnr?: boolean; more?: boolean; crd?: number };

/** A fault rule. */
export interface FaultRule {
  action: FaultAction;
  match?: FaultMatch;
  /** How many matching commands the rule applies to before it retires. Default: unlimited. */
  times?: number;
  /** Let this many matching commands pass untouched first. Default 0. */
  skip?: number;
  /** Delay for `delay`, milliseconds. */
  ms?: number;
  /** Status for `status`. */
  status?: FaultStatus;
  dw0?: number;
  dw1?: number;
  /** Fatal Error Status / Information for `terminate`. Default FES 1 (invalid header field), FEI 0. */
  fes?: number;
  fei?: number;
  /** Piece sizes for `tiny-writes`. Default 1..7. */
  chunk?: { min: number; max: number };
}

/** A live rule; `remove()` retires it. */
export interface FaultHandle {
  readonly rule: Readonly<FaultRule>;
  /** Commands the rule has applied to so far. */
  readonly hits: number;
  /** False once removed or exhausted. */
  readonly active: boolean;
  remove(): void;
}

/** A rule with its counters (implementation detail of the target, not exported from nvmeof/target). */
export interface ActiveFault extends FaultHandle {
  readonly rule: Readonly<FaultRule>;
  /** The status field for `status`. */
  readonly statusField: number;
}

class Fault implements ActiveFault {
  hits = 0;
  active = true;
  skipped = 0;
  readonly statusField: number;
  constructor(
    readonly rule: Readonly<FaultRule>,
    private readonly owner: FaultInjector,
  ) {
    const s = rule.status;
    this.statusField = s === undefined ? 0 : typeof s === 'number' ? s & 0xfffe : makeStatus(s.sct, s.sc, { dnr: s.dnr, more: s.more, crd: s.crd });
  }
  remove(): void {
    this.owner.remove(this);
  }
}

/** Connection facts used to match `tiny-writes` rules. */
export interface ConnectionFacts {
  connectionId: number;
  qid: number;
  portid: number;
  cntlid: number | undefined;
  subnqn: string | undefined;
  hostnqn: string | undefined;
}

function checkRule(rule: FaultRule): void {
  if (rule === null || typeof rule !== 'object') throw new InvalidArgumentError('a fault rule must be an object');
  if (!ACTIONS.has(rule.action)) throw new InvalidArgumentError(`unknown fault action ${JSON.stringify(rule.action)}; expected one of ${[...ACTIONS].join(', ')}`);
  const nonNeg = (name: string, v: unknown, allowInfinity = false): void => {
    if (v === undefined) return;
    if (allowInfinity && v === Infinity) return;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new InvalidArgumentError(`fault ${name} must be a non-negative integer, got ${String(v)}`);
  };
  nonNeg('times', rule.times, true);
  nonNeg('skip', rule.skip);
  nonNeg('ms', rule.ms);
  if (rule.times === 0) throw new InvalidArgumentError('fault times must be at least 1');
  if (rule.action === 'delay' && rule.ms === undefined) throw new InvalidArgumentError("fault action 'delay' needs ms");
  if (rule.action === 'status' && rule.status === undefined) throw new InvalidArgumentError("fault action 'status' needs status");
  if (rule.chunk !== undefined) {
    const { min, max } = rule.chunk;
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max < min) {
      throw new InvalidArgumentError(`fault chunk must have integers 1 <= min <= max, got ${String(min)}..${String(max)}`);
    }
  }
  if (rule.match?.when !== undefined && typeof rule.match.when !== 'function') throw new InvalidArgumentError('fault match.when must be a function');
}

function matchesFacts(m: FaultMatch | undefined, qid: number, kind: CommandKind | undefined, f: ConnectionFacts): boolean {
  if (m === undefined) return true;
  if (m.connectionId !== undefined && m.connectionId !== f.connectionId) return false;
  if (m.qid !== undefined && m.qid !== qid) return false;
  if (m.kind !== undefined && m.kind !== kind) return false;
  if (m.portid !== undefined && m.portid !== f.portid) return false;
  if (m.cntlid !== undefined && m.cntlid !== f.cntlid) return false;
  if (m.subnqn !== undefined && m.subnqn !== f.subnqn) return false;
  if (m.hostnqn !== undefined && m.hostnqn !== f.hostnqn) return false;
  return true;
}

/** The set of active fault rules of a target. */
export class FaultInjector {
  private rules: Fault[] = [];

  /** Add a rule; returns a handle to remove it. */
  inject(rule: FaultRule): FaultHandle {
    checkRule(rule);
    const f = new Fault({ ...rule, ...(rule.match ? { match: { ...rule.match } } : {}) }, this);
    this.rules.push(f);
    return f;
  }

  /** Remove every rule. */
  clear(): void {
    for (const r of this.rules) r.active = false;
    this.rules = [];
  }

  /** Number of active rules. */
  get size(): number {
    return this.rules.length;
  }

  /** Active rules. */
  list(): FaultHandle[] {
    return [...this.rules];
  }

  /** @internal */
  remove(f: Fault): void {
    f.active = false;
    const i = this.rules.indexOf(f);
    if (i >= 0) this.rules.splice(i, 1);
  }

  /** @internal The command-level rules that apply to `cmd` (counting the hit). */
  take(cmd: CommandInfo): ActiveFault[] {
    if (this.rules.length === 0) return [];
    const out: ActiveFault[] = [];
    for (const r of [...this.rules]) {
      if (r.rule.action === 'tiny-writes') continue;
      const m = r.rule.match;
      if (m !== undefined) {
        if (m.opcode !== undefined && m.opcode !== cmd.opcode) continue;
        if (m.fctype !== undefined && m.fctype !== cmd.fctype) continue;
        if (m.cid !== undefined && m.cid !== cmd.cid) continue;
        if (m.nsid !== undefined && m.nsid !== cmd.nsid) continue;
        if (!matchesFacts(m, cmd.qid, cmd.kind, cmd)) continue;
        if (m.when !== undefined && !m.when(cmd)) continue;
      }
      if (r.skipped < (r.rule.skip ?? 0)) {
        r.skipped++;
        continue;
      }
      r.hits++;
      if (r.hits >= (r.rule.times ?? Infinity)) this.remove(r);
      out.push(r);
    }
    return out;
  }

  /** @internal Piece sizes when a `tiny-writes` rule applies to the connection. */
  tinyWrites(f: ConnectionFacts): { min: number; max: number } | undefined {
    for (const r of this.rules) {
      if (r.rule.action !== 'tiny-writes') continue;
      const kind: CommandKind | undefined = f.qid < 0 ? undefined : f.qid === 0 ? 'admin' : 'io';
      if (!matchesFacts(r.rule.match, f.qid, kind, f)) continue;
      return r.rule.chunk ?? { min: 1, max: 7 };
    }
    return undefined;
  }
}
