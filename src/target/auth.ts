/**
 * The controller side of DH-HMAC-CHAP for the embedded target: per-host keys (as Linux nvmet's
 * hosts/<nqn>/dhchap_key, dhchap_ctrl_key, dhchap_hash, dhchap_dhgroup) and one transaction state machine per queue,
 * driven by Authentication Send and Authentication Receive.
 */
import { Buffer } from 'node:buffer';
import { randomBytes, randomInt } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import {
  AUTH_SECP,
  AUTH_SPSP,
  AuthFailureReason,
  AuthMessageError,
  DHCHAP_GROUPS,
  DHCHAP_HASHES,
  DHCHAP_AUTH_ID,
  DhchapExchange,
  DhchapGroupId,
  DhchapHashId,
  augmentedChallenge,
  controllerResponse,
  encodeChallenge,
  encodeFailure,
  encodeSuccess1,
  groupById,
  groupValueLength,
  hashById,
  hashLength,
  hostResponse,
  parseAuthMessage,
  parseAuthSqe,
  parseDhchapKey,
  responsesEqual,
  transformKey,
  type DhchapGroup,
  type DhchapHash,
  type DhchapKey,
} from '../protocol/auth.js';
import { FabricsType, GenericStatus, StatusCodeType } from '../protocol/constants.js';
import { fail, ok, okData, type Cmd, type CommandResult } from './command.js';

/** DH-HMAC-CHAP settings of one host on a subsystem of the embedded target. */
export interface TargetDhchapOptions {
  /** The host's secret, DHHC-1:HH:<base64>: (Linux nvmet: hosts/<nqn>/dhchap_key). */
  secret: string;
  /** The controller's secret for bidirectional authentication (dhchap_ctrl_key). */
  ctrlSecret?: string;
  /** Hashes the controller accepts, in order of preference; the first one the host offers is chosen. Default all. */
  hashes?: DhchapHash[];
  /** DH groups the controller accepts, in order of preference. Default all, 'null' first. */
  dhgroups?: DhchapGroup[];
}

/** Parsed DH-HMAC-CHAP settings of one host (what `setHostDhchap()` keeps). */
export interface TargetDhchap {
  hostKey: DhchapKey;
  ctrlKey: DhchapKey | undefined;
  hashes: readonly DhchapHash[];
  dhgroups: readonly DhchapGroup[];
}

/** @internal Validate and parse a host's DH-HMAC-CHAP settings. */
export function parseTargetDhchap(o: unknown, name: string): TargetDhchap {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError(`${name} must be an object { secret, ctrlSecret?, hashes?, dhgroups? }`);
  const d = o as Partial<TargetDhchapOptions>;
  const list = <T extends string>(field: string, v: unknown, all: readonly T[]): readonly T[] => {
    if (v === undefined) return all;
    if (!Array.isArray(v) || v.length === 0) throw new InvalidArgumentError(`${name}.${field} must be a non-empty array of ${all.join(', ')}`);
    for (const x of v) if (!all.includes(x as T)) throw new InvalidArgumentError(`${name}.${field}: ${JSON.stringify(x)} is not one of ${all.join(', ')}`);
    return [...v] as T[];
  };
  return {
    hostKey: parseDhchapKey(d.secret, `${name}.secret`),
    ctrlKey: d.ctrlSecret === undefined ? undefined : parseDhchapKey(d.ctrlSecret, `${name}.ctrlSecret`),
    hashes: list('hashes', d.hashes, DHCHAP_HASHES),
    dhgroups: list('dhgroups', d.dhgroups, DHCHAP_GROUPS),
  };
}

/** Where a queue's transaction stands: the next message expected (send) or due (receive). */
type Step = 'negotiate' | 'challenge' | 'reply' | 'success1' | 'success2' | 'failure1' | 'idle';

/** Outcome of a finished transaction, for the target's 'authentication' event. */
export interface AuthenticationOutcome {
  ok: boolean;
  hash?: DhchapHash;
  dhgroup?: DhchapGroup;
  bidirectional?: boolean;
  /** Why it failed, in words. */
  reason?: string;
}

/** @internal DH-HMAC-CHAP state of one queue. */
export class QueueAuth {
  /** The queue may run commands other than Connect and Authentication Send/Receive. */
  authenticated = false;
  private step: Step = 'negotiate';
  private tid = 0;
  private hash: DhchapHash = 'sha256';
  private dhgroup: DhchapGroup = 'null';
  private dh: DhchapExchange | undefined;
  private c1: Buffer | undefined;
  private s1 = 0;
  private r2: Buffer | undefined;
  private failure = 0;
  private failureText = '';

  private cfg: TargetDhchap;

  /** `current` gives the host's settings now: each Negotiate (re-authentication included) uses the latest keys. */
  constructor(
    private readonly current: () => TargetDhchap | undefined,
    private readonly hostnqn: string,
    private readonly subnqn: string,
    private readonly report: (o: AuthenticationOutcome) => void,
  ) {
    this.cfg = current()!;
  }

  private failWith(reason: number, text: string): void {
    this.step = 'failure1';
    this.failure = reason;
    this.failureText = text;
  }

  /** Authentication Send. */
  send(cmd: Cmd): CommandResult {
    const f = parseAuthSqe(cmd.sqe);
    if (f.secp !== AUTH_SECP || f.spsp0 !== AUTH_SPSP || f.spsp1 !== AUTH_SPSP) return fail(StatusCodeType.Generic, GenericStatus.InvalidField);
    const data = cmd.data;
    if (data === null || f.length === 0 || data.length !== f.length) return fail(StatusCodeType.Generic, GenericStatus.InvalidField);
    let msg;
    try {
      msg = parseAuthMessage(data);
    } catch (err) {
      if (!(err instanceof AuthMessageError)) throw err;
      this.failWith(err.reason, err.message);
      return ok();
    }
    if (msg.type === 'negotiate') {
      // A Negotiate starts a transaction at any point (re-authentication on a live queue included).
      this.tid = msg.tid;
      this.dh = undefined;
      this.cfg = this.current() ?? this.cfg;
      const proto = msg.protocols.find((p) => p.authId === DHCHAP_AUTH_ID);
      if (proto === undefined) return this.refused(AuthFailureReason.ProtocolUnusable, 'the host offered no DH-HMAC-CHAP descriptor');
      if (msg.scC !== 0) return this.refused(AuthFailureReason.ConcatMismatch, 'secure channel concatenation is not supported');
      const hash = this.cfg.hashes.find((h) => proto.hashIds.includes(DhchapHashId[h]));
      if (hash === undefined) {
        return this.refused(AuthFailureReason.HashUnusable, `no hash in common (host offered ${proto.hashIds.map((i) => hashById(i) ?? i).join(', ')})`);
      }
      const dhgroup = this.cfg.dhgroups.find((g) => proto.dhgroupIds.includes(DhchapGroupId[g]));
      if (dhgroup === undefined) {
        return this.refused(AuthFailureReason.DhgroupUnusable, `no DH group in common (host offered ${proto.dhgroupIds.map((i) => groupById(i) ?? i).join(', ')})`);
      }
      this.hash = hash;
      this.dhgroup = dhgroup;
      this.step = 'challenge';
      return ok();
    }
    if (msg.type === 'failure2') {
      this.step = 'negotiate';
      this.authenticated = false;
      this.report({ ok: false, reason: `the host sent AUTH_Failure2 (reason ${msg.reason})` });
      return ok();
    }
    if (msg.tid !== this.tid) {
      this.failWith(AuthFailureReason.IncorrectMessage, `T_ID ${msg.tid} is not the transaction's ${this.tid}`);
      return ok();
    }
    if (msg.type === 'reply' && this.step === 'reply') {
      const hl = hashLength(this.hash);
      if (msg.response.length !== hl || msg.dhv.length !== groupValueLength(this.dhgroup)) {
        this.failWith(AuthFailureReason.IncorrectPayload, 'the Reply does not match the negotiated hash and group');
        return ok();
      }
      let session: Buffer | undefined;
      if (this.dh !== undefined) {
        try {
          session = this.dh.sessionKey(msg.dhv);
        } catch (err) {
          this.failWith(AuthFailureReason.IncorrectPayload, (err as Error).message);
          return ok();
        }
      }
      const augment = (c: Buffer) => (session ? augmentedChallenge(this.hash, session, c) : c);
      const kh = transformKey(this.cfg.hostKey, this.hostnqn);
      const expected = hostResponse({ hash: this.hash, key: kh, challenge: augment(this.c1!), seqnum: this.s1, tid: this.tid, hostnqn: this.hostnqn, subnqn: this.subnqn });
      kh.fill(0);
      if (!responsesEqual(expected, msg.response)) {
        this.failWith(AuthFailureReason.Failed, 'the host response does not match the host key');
        return ok();
      }
      this.r2 = undefined;
      if (msg.challenge !== undefined) {
        if (this.cfg.ctrlKey === undefined) {
          this.failWith(AuthFailureReason.Failed, 'the host asked for bidirectional authentication but no controller key is set');
          return ok();
        }
        const kc = transformKey(this.cfg.ctrlKey, this.subnqn);
        this.r2 = controllerResponse({ hash: this.hash, key: kc, challenge: augment(msg.challenge), seqnum: msg.seqnum, tid: this.tid, hostnqn: this.hostnqn, subnqn: this.subnqn });
        kc.fill(0);
      }
      session?.fill(0);
      this.step = 'success1';
      return ok();
    }
    if (msg.type === 'success2' && this.step === 'success2') {
      this.succeed(true);
      return ok();
    }
    this.failWith(AuthFailureReason.IncorrectMessage, `unexpected ${msg.type} while waiting for ${this.step}`);
    return ok();
  }

  private refused(reason: number, text: string): CommandResult {
    this.failWith(reason, text);
    return ok();
  }

  private succeed(bidirectional: boolean): void {
    this.step = 'idle';
    this.authenticated = true;
    this.report({ ok: true, hash: this.hash, dhgroup: this.dhgroup, bidirectional });
  }

  /** Authentication Receive. */
  receive(cmd: Cmd): CommandResult {
    const f = parseAuthSqe(cmd.sqe);
    if (f.secp !== AUTH_SECP || f.spsp0 !== AUTH_SPSP || f.spsp1 !== AUTH_SPSP) return fail(StatusCodeType.Generic, GenericStatus.InvalidField);
    const al = f.length;
    if (al === 0 || cmd.length !== al) return fail(StatusCodeType.Generic, GenericStatus.InvalidField);
    let msg: Buffer;
    switch (this.step) {
      case 'challenge': {
        const hl = hashLength(this.hash);
        this.c1 = randomBytes(hl);
        this.s1 = randomInt(1, 0x100000000);
        this.dh = this.dhgroup === 'null' ? undefined : new DhchapExchange(this.dhgroup);
        msg = encodeChallenge({ tid: this.tid, hashId: DhchapHashId[this.hash], dhgroupId: DhchapGroupId[this.dhgroup], seqnum: this.s1, challenge: this.c1, dhv: this.dh?.publicValue });
        this.step = 'reply';
        break;
      }
      case 'success1':
        msg = encodeSuccess1({ tid: this.tid, hl: hashLength(this.hash), response: this.r2 });
        if (this.r2 !== undefined) this.step = 'success2';
        else this.succeed(false);
        break;
      case 'failure1':
        msg = encodeFailure({ type: 'failure1', tid: this.tid, reason: this.failure });
        this.step = 'negotiate';
        this.authenticated = false;
        this.report({ ok: false, reason: this.failureText });
        break;
      default:
        return fail(StatusCodeType.Generic, GenericStatus.CommandSequenceError);
    }
    if (msg.length > al) return fail(StatusCodeType.Generic, GenericStatus.InvalidField);
    // The whole AL is transferred, the message padded with zeroes (as Linux nvmet does).
    const out = Buffer.alloc(al);
    msg.copy(out);
    return okData(out);
  }
}

/** @internal True for Authentication Send/Receive. */
export function isAuthCommand(fctype: number): boolean {
  return fctype === FabricsType.AuthSend || fctype === FabricsType.AuthRecv;
}
