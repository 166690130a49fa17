/**
 * The host's DH-HMAC-CHAP transaction against a scripted controller (a fake queue): what the host sends (T_ID
 * constant, a Reply that always carries C2, S2 non-zero when bidirectional), and how it refuses a controller that
 * chooses what it did not offer, sends a malformed or unexpected message, or skips the controller's proof.
 */
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { authenticate, parseDhchapOptions, type DhchapOptions } from '../src/host/auth.js';
import * as auth from '../src/protocol/auth.js';
import type { NvmeCommand } from '../src/protocol/commands.js';
import type { Completion } from '../src/transport/queue-pair.js';
import { AuthError } from '../src/errors.js';

const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555';
const SUBNQN = 'nqn.2024-01.io.example:auth';
// python3-built keys (see auth-protocol.test.ts).
const KEY01 = 'DHHC-1:01:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:';
const KEY00 = 'DHHC-1:00:AwoRGB8mLTQ7QklQV15lbHN6gYiPlp2kq7K5wMfO1dzj6vH4/wYNFBsiKTA3PkVMRdxyRQ==:';

type Script = (sent: auth.AuthMessage[]) => Buffer;

/** A fake queue: records what the host sends, answers each Authentication Receive with the next scripted message. */
function fakeQueue(script: Script[], pad: boolean) {
  const sent: auth.AuthMessage[] = [];
  const raw: Buffer[] = [];
  let step = 0;
  const submit = async (cmd: NvmeCommand): Promise<Completion> => {
    const f = auth.parseAuthSqe(cmd.sqe);
    expect([cmd.sqe[0], f.secp, f.spsp0, f.spsp1]).toEqual([0x7f, 0xe9, 1, 1]);
    if (cmd.sqe[4] === 0x05) {
      expect(f.length).toBe(cmd.data!.length);
      raw.push(Buffer.from(cmd.data!));
      sent.push(auth.parseAuthMessage(cmd.data!));
      return { cqe: { dw0: 0, dw1: 0, sqhd: 0, sqid: 0, cid: 0, status: 0 } as Completion['cqe'], received: 0 };
    }
    expect(cmd.sqe[4]).toBe(0x06);
    const msg = script[step++]!(sent);
    // Linux pads the receive to AL (the rest of the buffer is not part of the message); SPDK sends the message alone.
    const data = pad ? Buffer.alloc(cmd.readLength!, 0xee) : Buffer.from(msg);
    msg.copy(data);
    return { cqe: { dw0: 0, dw1: 0, sqhd: 0, sqid: 0, cid: 0, status: 0 } as Completion['cqe'], data, received: data.length };
  };
  return { sent, raw, submit };
}

function run(script: Script[], dhchap: DhchapOptions, o: { pad?: boolean } = {}, tid = 0x4321) {
  const q = fakeQueue(script, o.pad ?? true);
  const p = authenticate({ submit: q.submit, qid: 3, tid, hostnqn: HOSTNQN, subnqn: SUBNQN, credentials: parseDhchapOptions(dhchap) });
  return { ...q, p };
}

const challenge = (o: Partial<Parameters<typeof auth.encodeChallenge>[0]> = {}): Script => (sent) =>
  auth.encodeChallenge({ tid: sent[0]!.tid, hashId: 1, dhgroupId: 0, seqnum: 77, challenge: Buffer.alloc(32, 0x11), ...o });

async function refused(p: Promise<unknown>): Promise<AuthError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(AuthError);
  return err as AuthError;
}

describe('host DH-HMAC-CHAP transaction', () => {
  it('host-only: Negotiate offers the configured lists, the Reply carries R1 and a zero C2, T_ID constant', async () => {
    const { p, sent, raw } = run(
      [
        challenge(),
        (s) => {
          // The controller checks R1 the way the spec computes it.
          const r = s[1] as auth.ReplyMessage;
          const kh = auth.transformKey(auth.parseDhchapKey(KEY01), HOSTNQN);
          const expected = auth.hostResponse({ hash: 'sha256', key: kh, challenge: Buffer.alloc(32, 0x11), seqnum: 77, tid: 0x4321, hostnqn: HOSTNQN, subnqn: SUBNQN });
          expect(r.response).toEqual(expected);
          return auth.encodeSuccess1({ tid: 0x4321, hl: 32 });
        },
      ],
      { secret: KEY01, hashes: ['sha512', 'sha256'], dhgroups: ['ffdhe4096', 'null'] },
    );
    expect(await p).toEqual({ hash: 'sha256', dhgroup: 'null', bidirectional: false });
    expect(sent.map((m) => m.type)).toEqual(['negotiate', 'reply']);
    expect(sent.every((m) => m.tid === 0x4321)).toBe(true);
    expect((sent[0] as auth.NegotiateMessage).protocols).toEqual([{ authId: 1, hashIds: [3, 1], dhgroupIds: [3, 0] }]);
    const reply = raw[1]!;
    expect(reply.length).toBe(16 + 2 * 32);
    expect(reply[8]).toBe(0); // CVALID
    expect(reply.readUInt32LE(12)).toBe(0); // S2
    expect(reply.subarray(48, 80)).toEqual(Buffer.alloc(32)); // C2 zeros
  });

  it('bidirectional with ffdhe2048, messages received unpadded (as SPDK sends them): S2 non-zero, C2 random, R2 verified, Success2 sent', async () => {
    const ctrlDh = new auth.DhchapExchange('ffdhe2048');
    const { p, sent, raw } = run(
      [
        challenge({ hashId: 2, dhgroupId: 1, challenge: Buffer.alloc(48, 0x22), dhv: ctrlDh.publicValue }),
        (s) => {
          const r = s[1] as auth.ReplyMessage;
          const session = ctrlDh.sessionKey(r.dhv);
          const kc = auth.transformKey(auth.parseDhchapKey(KEY00), SUBNQN);
          const r2 = auth.controllerResponse({ hash: 'sha384', key: kc, challenge: auth.augmentedChallenge('sha384', session, r.challenge!), seqnum: r.seqnum, tid: r.tid, hostnqn: HOSTNQN, subnqn: SUBNQN });
          return auth.encodeSuccess1({ tid: r.tid, hl: 48, response: r2 });
        },
      ],
      { secret: KEY01, ctrlSecret: KEY00 },
      { pad: false },
    );
    expect(await p).toEqual({ hash: 'sha384', dhgroup: 'ffdhe2048', bidirectional: true });
    expect(sent.map((m) => m.type)).toEqual(['negotiate', 'reply', 'success2']);
    expect(sent.every((m) => m.tid === 0x4321)).toBe(true);
    const r = sent[1] as auth.ReplyMessage;
    expect(r.seqnum).not.toBe(0);
    expect(r.challenge!.equals(Buffer.alloc(48))).toBe(false);
    expect(r.dhv.length).toBe(256);
    expect(raw[1]!.length).toBe(16 + 2 * 48 + 256);
  });

  it('a controller proving a different key gets AUTH_Failure2 (reason 1) and NVMEOF_ERR_AUTH', async () => {
    const { p, sent } = run([challenge(), (s) => auth.encodeSuccess1({ tid: s[0]!.tid, hl: 32, response: Buffer.alloc(32, 9) })], { secret: KEY01, ctrlSecret: KEY00 });
    const err = await refused(p);
    expect([err.side, err.reason, err.qid]).toEqual(['host', 1, 3]);
    expect(err.message).toMatch(/the controller proved a different key/);
    expect(sent.at(-1)).toEqual({ type: 'failure2', tid: 0x4321, rc: 1, reason: 1 });
  });

  it('Success1 without the controller response when bidirectional is refused', async () => {
    const { p, sent } = run([challenge(), (s) => auth.encodeSuccess1({ tid: s[0]!.tid, hl: 32 })], { secret: KEY01, ctrlSecret: KEY00 });
    expect((await refused(p)).message).toMatch(/did not answer the host challenge/);
    expect(sent.at(-1)!.type).toBe('failure2');
  });

  it.each([
    ['a hash the host did not offer', challenge({ hashId: 3, challenge: Buffer.alloc(64) }), 4, /hash sha512, which the host did not offer/],
    ['a DH group the host did not offer', challenge({ dhgroupId: 2, dhv: Buffer.alloc(384, 1) }), 5, /DH group ffdhe3072, which the host did not offer/],
    ['another T_ID', challenge({ tid: 1 }), 7, /T_ID 1, the transaction is 17185/],
    ['a DH value of the wrong size', challenge({ dhgroupId: 1, dhv: Buffer.alloc(100, 1) }), 6, /DH value is 100 bytes, ffdhe2048 needs 256/],
    ['a DH value outside 2..p-2', challenge({ dhgroupId: 1, dhv: Buffer.alloc(256) }), 6, /not in 2\.\.p-2/],
    ['a challenge of the wrong length', challenge({ challenge: Buffer.alloc(48) }), 6, /challenge is 48 bytes, sha256 needs 32/],
    ['a malformed message', () => Buffer.from([1, 1, 0, 0, 0x21, 0x43, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0]), 6, /malformed.*HL 33/],
    ['a Success1 where the Challenge belongs', (s: auth.AuthMessage[]) => auth.encodeSuccess1({ tid: s[0]!.tid, hl: 32 }), 7, /expected DH-HMAC-CHAP_Challenge, got success1/],
  ] as const)('a Challenge with %s: AUTH_Failure2 with the reason, then NVMEOF_ERR_AUTH', async (_what, msg, reason, re) => {
    const { p, sent } = run([msg as Script], { secret: KEY01, hashes: ['sha256', 'sha384'], dhgroups: ['null', 'ffdhe2048'] });
    const err = await refused(p);
    expect([err.side, err.reason]).toEqual(['host', reason]);
    expect(err.message).toMatch(re);
    expect(sent.at(-1)).toEqual({ type: 'failure2', tid: 0x4321, rc: 1, reason });
  });

  it('AUTH_Failure1 from the controller: the controller side, its reason in words, nothing more sent', async () => {
    const { p, sent } = run([(s) => auth.encodeFailure({ type: 'failure1', tid: s[0]!.tid, reason: 5 })], { secret: KEY01 });
    const err = await refused(p);
    expect([err.side, err.reason]).toEqual(['controller', 5]);
    expect(err.message).toMatch(/AUTH_Failure1 instead of DH-HMAC-CHAP_Challenge\): DH group not usable/);
    expect(sent.map((m) => m.type)).toEqual(['negotiate']);
  });
});
