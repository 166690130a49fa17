/**
 * The host side of DH-HMAC-CHAP: one authentication transaction on one queue (NVMe Base 2.x, "DH-HMAC-CHAP
 * protocol"), run after a Connect whose response sets AUTHREQ.ATR and by `Controller.reauthenticate()`.
 *
 *   host                                   controller
 *   Authentication Send AUTH_Negotiate   ->
 *   Authentication Receive               <- DH-HMAC-CHAP_Challenge (or AUTH_Failure1)
 *   Authentication Send Reply            ->
 *   Authentication Receive               <- DH-HMAC-CHAP_Success1 (or AUTH_Failure1)
 *   Authentication Send Success2         ->  (bidirectional only, after R2 checked; AUTH_Failure2 when it is wrong)
 *
 * Secrets stay in DhchapKey objects (which print as "[redacted ...]") and transformed keys in local buffers that are
 * zeroed after use; no message, log line or error carries them.
 */
import { Buffer } from 'node:buffer';
import { randomBytes, randomInt } from 'node:crypto';
import { debuglog } from 'node:util';
import { AuthError, ConnectionClosedError, InvalidArgumentError, NvmeStatusError, TerminatedError } from '../errors.js';
import {
  AuthFailureReason,
  AuthMessageError,
  DHCHAP_GROUPS,
  DHCHAP_HASHES,
  DhchapExchange,
  DhchapGroupId,
  DhchapHashId,
  augmentedChallenge,
  authFailureReasonText,
  authReceive,
  authSend,
  controllerResponse,
  encodeFailure,
  encodeNegotiate,
  encodeReply,
  encodeSuccess2,
  groupById,
  groupValueLength,
  hashById,
  hashLength,
  hostResponse,
  parseAuthMessage,
  parseDhchapKey,
  responsesEqual,
  transformKey,
  type AuthMessage,
  type DhchapGroup,
  type DhchapHash,
  type DhchapKey,
} from '../protocol/auth.js';
import type { NvmeCommand } from '../protocol/commands.js';
import type { Completion, SubmitOptions } from '../transport/queue-pair.js';

const debug = debuglog('nvmeof');

/** DH-HMAC-CHAP options of `connect()`, `discover()`, `watchDiscovery()` and multipath paths. */
export interface DhchapOptions {
  /** The host's secret, `DHHC-1:HH:<base64>:` as nvme gen-dhchap-key prints it (nvme-cli --dhchap-secret). */
  secret: string;
  /** The controller's secret (nvme-cli --dhchap-ctrl-secret): when given, the host also authenticates the controller. */
  ctrlSecret?: string;
  /** Hash functions the host offers, in order of preference. Default all: sha256, sha384, sha512. */
  hashes?: DhchapHash[];
  /** DH groups the host offers, in order of preference. Default all: null, ffdhe2048 .. ffdhe8192. */
  dhgroups?: DhchapGroup[];
}

/** What an authentication transaction settled on (`ctrl.security.authentication`). */
export interface AuthenticationInfo {
  hash: DhchapHash;
  dhgroup: DhchapGroup;
  /** The controller proved its key too (a controller secret was given). */
  bidirectional: boolean;
}

/** Parsed DH-HMAC-CHAP options: keys as DhchapKey objects that never print their secret. */
export interface DhchapCredentials {
  readonly hostKey: DhchapKey;
  readonly ctrlKey: DhchapKey | undefined;
  readonly hashes: readonly DhchapHash[];
  readonly dhgroups: readonly DhchapGroup[];
}

/** Validate and parse `dhchap` options (InvalidArgumentError names the field, never the key). */
export function parseDhchapOptions(o: unknown, name = 'dhchap'): DhchapCredentials {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError(`${name} must be an object { secret, ctrlSecret?, hashes?, dhgroups? }`);
  const d = o as Partial<DhchapOptions>;
  const hostKey = parseDhchapKey(d.secret, `${name}.secret`);
  const ctrlKey = d.ctrlSecret === undefined ? undefined : parseDhchapKey(d.ctrlSecret, `${name}.ctrlSecret`);
  const list = <T extends string>(field: string, v: unknown, all: readonly T[]): readonly T[] => {
    if (v === undefined) return all;
    if (!Array.isArray(v) || v.length === 0 || v.length > 30) throw new InvalidArgumentError(`${name}.${field} must be a non-empty array of ${all.join(', ')}`);
    for (const x of v) if (!all.includes(x as T)) throw new InvalidArgumentError(`${name}.${field}: ${JSON.stringify(x)} is not one of ${all.join(', ')}`);
    return [...new Set(v as T[])];
  };
  return { hostKey, ctrlKey, hashes: list('hashes', d.hashes, DHCHAP_HASHES), dhgroups: list('dhgroups', d.dhgroups, DHCHAP_GROUPS) };
}

/** What a transaction needs from its queue and controller. */
export interface AuthTransactionContext {
  /** Submit a command on the queue being authenticated. */
  submit: (cmd: NvmeCommand, opts?: SubmitOptions) => Promise<Completion>;
  qid: number;
  /** Transaction identifier, constant for the whole transaction. */
  tid: number;
  hostnqn: string;
  subnqn: string;
  credentials: DhchapCredentials;
  /** Per-command timeout, ms. */
  timeout?: number;
  signal?: AbortSignal;
}

/** A random non-zero 32-bit sequence number. */
function seqnum(): number {
  return randomInt(1, 0x100000000);
}

/**
 * Run one DH-HMAC-CHAP transaction. Resolves with the hash and group used; rejects with AuthError (which side failed
 * and why), or with the queue's own error when the connection fails.
 */
export async function authenticate(ctx: AuthTransactionContext): Promise<AuthenticationInfo> {
  const { qid, tid, credentials: cred } = ctx;
  const where = `queue ${qid} of ${ctx.subnqn}`;
  const submitOpts: SubmitOptions = { timeout: ctx.timeout, signal: ctx.signal };

  /**
   * The controller ended the connection in the middle of the transaction. Linux nvmet does so right after an
   * AUTH_Failure1 (a fatal controller error), and the close can overtake the message.
   */
  const closedDuring = (err: unknown, step: string): unknown =>
    err instanceof ConnectionClosedError || err instanceof TerminatedError
      ? new AuthError(`DH-HMAC-CHAP on ${where}: the controller closed the connection during ${step} (${err.message})`, 'controller', { qid, cause: err })
      : err;
  const send = async (message: Buffer, step: string): Promise<void> => {
    try {
      await ctx.submit(authSend(message), submitOpts);
    } catch (err) {
      if (err instanceof NvmeStatusError) {
        throw new AuthError(`DH-HMAC-CHAP on ${where}: the controller refused ${step}: ${err.statusName}`, 'controller', { qid, cause: err });
      }
      throw closedDuring(err, step);
    }
  };
  const receive = async (step: string): Promise<AuthMessage> => {
    let c: Completion;
    try {
      c = await ctx.submit(authReceive(), submitOpts);
    } catch (err) {
      if (err instanceof NvmeStatusError) {
        throw new AuthError(`DH-HMAC-CHAP on ${where}: Authentication Receive for ${step} failed: ${err.statusName}`, 'controller', { qid, cause: err });
      }
      throw closedDuring(err, `the wait for ${step}`);
    }
    try {
      // Only the bytes received: SPDK sends the message alone, Linux nvmet pads it to the allocation length.
      return parseAuthMessage(c.data!.subarray(0, c.received));
    } catch (err) {
      if (err instanceof AuthMessageError) await refuse(err.reason, `the controller sent a malformed ${step}: ${err.message}`);
      throw err;
    }
  };
  /** Send AUTH_Failure2 with `reason`, then fail with the host as the refusing side. */
  const refuse = async (reason: number, why: string): Promise<never> => {
    debug('DH-HMAC-CHAP %s: host refuses (%s)', where, why);
    try {
      await ctx.submit(authSend(encodeFailure({ type: 'failure2', tid, reason })), submitOpts);
    } catch (err) {
      debug('DH-HMAC-CHAP %s: AUTH_Failure2 not delivered: %s', where, (err as Error).message);
    }
    throw new AuthError(`DH-HMAC-CHAP on ${where}: the host refused the controller: ${why}`, 'host', { qid, reason });
  };
  const expect = async <T extends AuthMessage['type']>(msg: AuthMessage, type: T, step: string): Promise<Extract<AuthMessage, { type: T }>> => {
    if (msg.type === 'failure1') {
      const hint = msg.reason === AuthFailureReason.Failed ? ' (the host key does not match the one the controller holds for this host)' : '';
      throw new AuthError(`DH-HMAC-CHAP on ${where}: the controller failed the host (AUTH_Failure1 instead of ${step}): ${authFailureReasonText(msg.reason)}${hint}`, 'controller', {
        qid,
        reason: msg.reason,
      });
    }
    if (msg.type !== type) return refuse(AuthFailureReason.IncorrectMessage, `expected ${step}, got ${msg.type}`);
    if (msg.tid !== tid) return refuse(AuthFailureReason.IncorrectMessage, `${step} carries T_ID ${msg.tid}, the transaction is ${tid}`);
    return msg as Extract<AuthMessage, { type: T }>;
  };

  // 1. AUTH_Negotiate
  await send(
    encodeNegotiate({ tid, hashIds: cred.hashes.map((h) => DhchapHashId[h]), dhgroupIds: cred.dhgroups.map((g) => DhchapGroupId[g]) }),
    'AUTH_Negotiate',
  );

  // 2. Challenge
  const ch = await expect(await receive('DH-HMAC-CHAP_Challenge'), 'challenge', 'DH-HMAC-CHAP_Challenge');
  const hash = hashById(ch.hashId);
  if (hash === undefined || !cred.hashes.includes(hash)) {
    return refuse(AuthFailureReason.HashUnusable, `it chose hash ${hash ?? `ID ${ch.hashId}`}, which the host did not offer (offered: ${cred.hashes.join(', ')})`);
  }
  const dhgroup = groupById(ch.dhgroupId);
  if (dhgroup === undefined || !cred.dhgroups.includes(dhgroup)) {
    return refuse(AuthFailureReason.DhgroupUnusable, `it chose DH group ${dhgroup ?? `ID ${ch.dhgroupId}`}, which the host did not offer (offered: ${cred.dhgroups.join(', ')})`);
  }
  const hl = hashLength(hash);
  if (ch.challenge.length !== hl) return refuse(AuthFailureReason.IncorrectPayload, `the challenge is ${ch.challenge.length} bytes, ${hash} needs ${hl}`);
  if (ch.dhv.length !== groupValueLength(dhgroup)) {
    return refuse(AuthFailureReason.IncorrectPayload, `its DH value is ${ch.dhv.length} bytes, ${dhgroup} needs ${groupValueLength(dhgroup)}`);
  }

  let sessionKey: Buffer | undefined;
  let hostDhv: Buffer | undefined;
  if (dhgroup !== 'null') {
    const dh = new DhchapExchange(dhgroup);
    try {
      sessionKey = dh.sessionKey(ch.dhv);
    } catch (err) {
      return refuse(AuthFailureReason.IncorrectPayload, (err as Error).message);
    }
    hostDhv = dh.publicValue;
  }
  const augment = (c: Buffer) => (sessionKey ? augmentedChallenge(hash, sessionKey, c) : c);

  // 3. Reply
  const kh = transformKey(cred.hostKey, ctx.hostnqn);
  const r1 = hostResponse({ hash, key: kh, challenge: augment(ch.challenge), seqnum: ch.seqnum, tid, hostnqn: ctx.hostnqn, subnqn: ctx.subnqn });
  kh.fill(0);
  const bidirectional = cred.ctrlKey !== undefined;
  const c2 = bidirectional ? randomBytes(hl) : undefined;
  const s2 = bidirectional ? seqnum() : 0;
  await send(encodeReply({ tid, response: r1, challenge: c2, seqnum: s2, dhv: hostDhv }), 'DH-HMAC-CHAP_Reply');

  // 4. Success1
  const s1 = await expect(await receive('DH-HMAC-CHAP_Success1'), 'success1', 'DH-HMAC-CHAP_Success1');
  if (bidirectional) {
    if (s1.response === undefined) return refuse(AuthFailureReason.Failed, 'it did not answer the host challenge (Success1 without RVALID)');
    if (s1.hl !== hl) return refuse(AuthFailureReason.IncorrectPayload, `Success1 HL is ${s1.hl}, ${hash} needs ${hl}`);
    const kc = transformKey(cred.ctrlKey!, ctx.subnqn);
    const r2 = controllerResponse({ hash, key: kc, challenge: augment(c2!), seqnum: s2, tid, hostnqn: ctx.hostnqn, subnqn: ctx.subnqn });
    kc.fill(0);
    if (!responsesEqual(r2, s1.response)) return refuse(AuthFailureReason.Failed, 'the controller proved a different key than the controller secret the host holds');
    // 5. Success2
    await send(encodeSuccess2({ tid }), 'DH-HMAC-CHAP_Success2');
  }
  sessionKey?.fill(0);
  debug('DH-HMAC-CHAP %s: authenticated (%s, %s%s)', where, hash, dhgroup, bidirectional ? ', bidirectional' : '');
  return { hash, dhgroup, bidirectional };
}
