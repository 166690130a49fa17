/**
 * DH-HMAC-CHAP between the host library and the embedded target: every hash with the null and ffdhe2048 groups,
 * one and both directions, the larger groups, wrong keys on either side, hash/group not offered, a stalled
 * transaction, re-authentication, and every queue authenticated. Secrets never appear in errors or printed objects.
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { inspect } from 'node:util';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { AuthError, ErrorCode, NvmeStatusError } from '../src/errors.js';
import * as cmds from '../src/protocol/commands.js';
import { QueuePair } from '../src/transport/queue-pair.js';
import type { AuthenticationEvent } from '../src/target/index.js';
import type { DhchapGroup, DhchapHash } from '../src/protocol/auth.js';
import { NvmeTarget } from '../src/target/index.js';
import { discover, watchDiscovery } from '../src/host/discovery.js';
import { openMultipath } from '../src/multipath/index.js';
import { DISCOVERY_NQN } from '../src/protocol/nqn.js';
import { TargetEnv, SUBNQN, HOSTNQN } from './helpers/target-env.js';

const env = new TargetEnv();
afterEach(() => env.cleanup());

/** A DHHC-1 key built with node:zlib's CRC-32 (independent of the code under test). */
function makeKey(hh: number, length = 32): string {
  const secret = randomBytes(length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(zlibCrc32(secret) >>> 0);
  return `DHHC-1:0${hh}:${Buffer.concat([secret, crc]).toString('base64')}:`;
}

const HOST_KEY = makeKey(1);
const CTRL_KEY = makeKey(3, 64);
const OTHER_KEY = makeKey(1);

function secretsOf(...keys: string[]): string[] {
  return keys.flatMap((k) => {
    const b64 = k.split(':')[2]!;
    const raw = Buffer.from(b64, 'base64').subarray(0, -4);
    return [b64, b64.slice(0, 16), raw.toString('hex').slice(0, 16)];
  });
}

function expectNoSecret(text: string, ...keys: string[]): void {
  for (const s of secretsOf(...keys)) expect(text).not.toContain(s);
}

async function authEnv(dhchap: { ctrlSecret?: string; hashes?: DhchapHash[]; dhgroups?: DhchapGroup[] } = {}) {
  await env.start({ subsystem: { dhchap: { [HOSTNQN]: { secret: HOST_KEY, ...dhchap } } } });
  const events: AuthenticationEvent[] = [];
  env.target.on('authentication', (e) => events.push(e));
  return events;
}

async function failure(p: Promise<unknown>): Promise<AuthError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthError);
  expect((err as AuthError).code).toBe(ErrorCode.AUTH);
  return err as AuthError;
}

async function roundTrip(ctrl: Awaited<ReturnType<TargetEnv['connect']>>): Promise<void> {
  const ns = await ctrl.namespace(1);
  const data = randomBytes(ns.blockSize * 8);
  await ns.write(16n, data);
  expect((await ns.read(16n, 8)).equals(data)).toBe(true);
}

describe('DH-HMAC-CHAP with the embedded target', () => {
  for (const hash of ['sha256', 'sha384', 'sha512'] as const) {
    for (const dhgroup of ['null', 'ffdhe2048'] as const) {
      for (const bidirectional of [false, true]) {
        it(`${hash}, ${dhgroup}, ${bidirectional ? 'bidirectional' : 'host only'}: every queue authenticates, I/O works`, async () => {
          const events = await authEnv({ ctrlSecret: CTRL_KEY, hashes: [hash], dhgroups: [dhgroup] });
          const ctrl = await env.connect({ dhchap: { secret: HOST_KEY, ...(bidirectional ? { ctrlSecret: CTRL_KEY } : {}) }, ioQueues: 2 });
          expect(ctrl.security).toEqual({ authentication: { hash, dhgroup, bidirectional } });
          expect(events.map((e) => [e.qid, e.ok, e.hash, e.dhgroup, e.bidirectional]).sort()).toEqual([
            [0, true, hash, dhgroup, bidirectional],
            [1, true, hash, dhgroup, bidirectional],
            [2, true, hash, dhgroup, bidirectional],
          ]);
          await roundTrip(ctrl);
          await ctrl.close();
        });
      }
    }
  }

  for (const dhgroup of ['ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192'] as const) {
    it(`${dhgroup}, sha512, bidirectional`, async () => {
      const events = await authEnv({ ctrlSecret: CTRL_KEY, hashes: ['sha512'], dhgroups: [dhgroup] });
      const ctrl = await env.connect({ dhchap: { secret: HOST_KEY, ctrlSecret: CTRL_KEY }, ioQueues: 1 });
      expect(ctrl.security.authentication).toEqual({ hash: 'sha512', dhgroup, bidirectional: true });
      expect(events.filter((e) => e.ok).length).toBe(2);
      await roundTrip(ctrl);
    });
  }

  it('keys without a transform hash (HH 00) and of 48 bytes work', async () => {
    const k0 = makeKey(0, 48);
    await env.start({ subsystem: { dhchap: { [HOSTNQN]: { secret: k0, ctrlSecret: k0, dhgroups: ['ffdhe2048'] } } } });
    const ctrl = await env.connect({ dhchap: { secret: k0, ctrlSecret: k0 }, ioQueues: 1 });
    expect(ctrl.security.authentication?.bidirectional).toBe(true);
  });

  it('the host offers its own preference order; the controller picks the first it accepts', async () => {
    await authEnv({ hashes: ['sha384', 'sha256'], dhgroups: ['ffdhe3072', 'null'] });
    const ctrl = await env.connect({ dhchap: { secret: HOST_KEY, hashes: ['sha256', 'sha512'], dhgroups: ['null'] }, ioQueues: 1 });
    expect(ctrl.security.authentication).toEqual({ hash: 'sha256', dhgroup: 'null', bidirectional: false });
  });

  it('a wrong host key: the controller fails the host with AUTH_Failure1, the error names that side', async () => {
    const events = await authEnv({ dhgroups: ['ffdhe2048'] });
    const err = await failure(env.connect({ dhchap: { secret: OTHER_KEY } }));
    expect(err.side).toBe('controller');
    expect(err.reason).toBe(1);
    expect(err.qid).toBe(0);
    expect(err.message).toMatch(/AUTH_Failure1.*authentication failed.*host key does not match/);
    expectNoSecret(`${err.message}\n${inspect(err)}\n${JSON.stringify(err)}`, OTHER_KEY, HOST_KEY);
    expect(events.map((e) => [e.qid, e.ok])).toEqual([[0, false]]);
    expect(events[0]!.reason).toMatch(/does not match the host key/);
  });

  it('a controller proving a different key: the host sends AUTH_Failure2 and refuses it', async () => {
    const events = await authEnv({ ctrlSecret: OTHER_KEY, dhgroups: ['ffdhe2048'] });
    const err = await failure(env.connect({ dhchap: { secret: HOST_KEY, ctrlSecret: CTRL_KEY } }));
    expect(err.side).toBe('host');
    expect(err.reason).toBe(1);
    expect(err.message).toMatch(/the controller proved a different key/);
    expectNoSecret(`${err.message}\n${inspect(err)}`, OTHER_KEY, HOST_KEY, CTRL_KEY);
    // The target saw the host's AUTH_Failure2.
    expect(events.map((e) => [e.qid, e.ok])).toEqual([[0, false]]);
    expect(events[0]!.reason).toMatch(/AUTH_Failure2/);
  });

  it('bidirectional asked but the controller has no controller key: refused by the controller', async () => {
    await authEnv({});
    const err = await failure(env.connect({ dhchap: { secret: HOST_KEY, ctrlSecret: CTRL_KEY } }));
    expect(err.side).toBe('controller');
  });

  it('hash or DH group not offered by the host: AUTH_Failure1 with the reason in words', async () => {
    await authEnv({ hashes: ['sha512'] });
    const h = await failure(env.connect({ dhchap: { secret: HOST_KEY, hashes: ['sha256', 'sha384'] } }));
    expect(h.reason).toBe(4);
    expect(h.message).toMatch(/hash function not usable/);
    env.subsys.setHostDhchap(HOSTNQN, { secret: HOST_KEY, dhgroups: ['ffdhe4096'] });
    const g = await failure(env.connect({ dhchap: { secret: HOST_KEY, dhgroups: ['null', 'ffdhe2048'] } }));
    expect(g.reason).toBe(5);
    expect(g.message).toMatch(/DH group not usable/);
  });

  it('a controller that requires authentication from a host without a secret', async () => {
    await authEnv({});
    const err = await failure(env.connect({}));
    expect(err.message).toMatch(/requires DH-HMAC-CHAP authentication \(AUTHREQ\.ATR\).*no dhchap secret/);
  });

  it('a host with a secret on a subsystem that does not ask for authentication connects unauthenticated', async () => {
    await env.start();
    const ctrl = await env.connect({ dhchap: { secret: HOST_KEY }, ioQueues: 1 });
    expect(ctrl.security).toEqual({});
    await roundTrip(ctrl);
  });

  it('until a queue is authenticated, other commands fail with Authentication Required (191h)', async () => {
    await authEnv({});
    const qp = await QueuePair.open({ host: '127.0.0.1', port: env.port.port, qid: 0, depth: 4 });
    try {
      const c = await qp.submit(cmds.connect({ qid: 0, sqsize: 8, kato: 0, hostid: '6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f', subnqn: SUBNQN, hostnqn: HOSTNQN }));
      expect(cmds.parseConnectResult(c.cqe.dw0).authRequired).toBe(true);
      for (const cmd of [cmds.propertyGet({ offset: 0, size: 8 }), cmds.identifyController()]) {
        const err = await qp.submit(cmd).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(NvmeStatusError);
        expect([(err as NvmeStatusError).sct, (err as NvmeStatusError).sc]).toEqual([1, 0x91]);
      }
    } finally {
      qp.destroy();
    }
  });

  it('a stalled transaction (the controller never answers Authentication Receive) fails in time, nothing left pending', async () => {
    await authEnv({});
    env.target.inject({ match: { fctype: 0x06 }, action: 'drop' });
    const err = await env.connect({ dhchap: { secret: HOST_KEY }, connectTimeout: 300 }).then(() => undefined, (e: unknown) => e);
    expect((err as { code?: string }).code).toBe(ErrorCode.TIMEOUT);
  });

  it('a controller that closes the connection instead of answering (as nvmet may after AUTH_Failure1): NVMEOF_ERR_AUTH', async () => {
    await authEnv({});
    env.target.inject({ match: { fctype: 0x06 }, action: 'close', skip: 1 });
    const err = await failure(env.connect({ dhchap: { secret: HOST_KEY } }));
    expect(err.side).toBe('controller');
    expect(err.message).toMatch(/closed the connection during the wait for DH-HMAC-CHAP_Success1/);
    expect((err.cause as { code?: string }).code).toBe(ErrorCode.CONNECTION_CLOSED);
  });

  it('reauthenticate() runs a new transaction on the live admin queue; with rotated target keys it fails', async () => {
    const events = await authEnv({ ctrlSecret: CTRL_KEY, dhgroups: ['ffdhe2048'] });
    const ctrl = await env.connect({ dhchap: { secret: HOST_KEY, ctrlSecret: CTRL_KEY }, ioQueues: 1 });
    expect(events.length).toBe(2);
    const info = await ctrl.reauthenticate();
    expect(info).toEqual({ hash: 'sha256', dhgroup: 'ffdhe2048', bidirectional: true });
    expect(events.length).toBe(3);
    expect(events[2]).toMatchObject({ qid: 0, ok: true });
    // Calls made while a transaction runs share it: one transaction, not interleaved ones.
    const [a, b] = await Promise.all([ctrl.reauthenticate(), ctrl.reauthenticate()]);
    expect(a).toEqual(b);
    expect(events.length).toBe(4);
    await roundTrip(ctrl);
    env.subsys.setHostDhchap(HOSTNQN, { secret: OTHER_KEY, ctrlSecret: CTRL_KEY });
    const err = await failure(ctrl.reauthenticate());
    expect(err.side).toBe('controller');
    expect(events[4]).toMatchObject({ qid: 0, ok: false });
  });

  it('reauthenticate() needs dhchap options', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 0 });
    await expect(ctrl.reauthenticate()).rejects.toMatchObject({ code: ErrorCode.INVALID_STATE });
  });

  it('bad dhchap options are refused before connecting, naming the field and never the key', async () => {
    await env.start();
    const broken = HOST_KEY.replace(/.:$/, (m) => (m[0] === 'A' ? 'B:' : 'A:'));
    for (const [dhchap, re] of [
      [{ secret: broken }, /dhchap\.secret: the key's CRC does not match/],
      [{ secret: HOST_KEY, ctrlSecret: 'DHHC-1:01:abc:' }, /dhchap\.ctrlSecret/],
      [{ secret: HOST_KEY, hashes: ['md5'] }, /dhchap\.hashes: "md5"/],
      [{ secret: HOST_KEY, dhgroups: [] }, /dhchap\.dhgroups/],
      ['DHHC-1', /dhchap must be an object/],
    ] as const) {
      let connections = 0;
      const off = env.target.on('connection', () => connections++);
      const err = await env.connect({ dhchap: dhchap as never }).then(() => undefined, (e: unknown) => e as Error);
      off();
      expect((err as { code?: string }).code).toBe(ErrorCode.INVALID_ARGUMENT);
      expect(err!.message).toMatch(re);
      expectNoSecret(err!.message, HOST_KEY);
      expect(connections).toBe(0);
    }
  });

  it('the controller object and the diagnostics channels never show the keys', async () => {
    const messages: unknown[] = [];
    const record = (m: unknown) => messages.push(m);
    diagnostics.subscribe('nvmeof:command:start', record);
    diagnostics.subscribe('nvmeof:command:end', record);
    try {
      await authEnv({ ctrlSecret: CTRL_KEY });
      const ctrl = await env.connect({ dhchap: { secret: HOST_KEY, ctrlSecret: CTRL_KEY }, ioQueues: 1 });
      await ctrl.reauthenticate();
      expectNoSecret(inspect(ctrl, { depth: 6, showHidden: true }), HOST_KEY, CTRL_KEY);
      expectNoSecret(JSON.stringify(ctrl.security), HOST_KEY, CTRL_KEY);
    } finally {
      diagnostics.unsubscribe('nvmeof:command:start', record);
      diagnostics.unsubscribe('nvmeof:command:end', record);
    }
    const names = messages.map((m) => (m as { name?: string }).name);
    expect(names).toContain('Authentication Send');
    expect(names).toContain('Authentication Receive');
    expectNoSecret(inspect(messages, { depth: 8, maxArrayLength: null }), HOST_KEY, CTRL_KEY);
  });
});

describe('DH-HMAC-CHAP for discovery and multipath', () => {
  it('discover() and watchDiscovery() authenticate to a discovery controller that requires it', async () => {
    const events = await authEnv({});
    env.target.setDiscoveryDhchap(HOSTNQN, { secret: HOST_KEY, ctrlSecret: CTRL_KEY, dhgroups: ['ffdhe2048'] });
    const dhchap = { secret: HOST_KEY, ctrlSecret: CTRL_KEY };
    const res = await discover({ host: '127.0.0.1', port: env.port.port, hostnqn: HOSTNQN, dhchap });
    expect(res.entries.map((e) => e.subnqn)).toContain(SUBNQN);
    expect(events.filter((e) => e.subnqn === DISCOVERY_NQN && e.ok && e.bidirectional).length).toBe(1);
    const refused = await failure(discover({ host: '127.0.0.1', port: env.port.port, hostnqn: HOSTNQN }));
    expect(refused.message).toMatch(/no dhchap secret/);
    const w = await watchDiscovery({ host: '127.0.0.1', port: env.port.port, hostnqn: HOSTNQN, dhchap });
    try {
      expect(w.log.entries.map((e) => e.subnqn)).toContain(SUBNQN);
      expect(events.filter((e) => e.subnqn === DISCOVERY_NQN && e.ok).length).toBe(2);
      expectNoSecret(inspect(w, { depth: 8, showHidden: true }), HOST_KEY, CTRL_KEY);
    } finally {
      await w.close();
    }
  });

  it('multipath paths authenticate on every path and keep the keys out of health() and inspect()', async () => {
    const target = env.track(new NvmeTarget());
    const p1 = await target.listen({ host: '127.0.0.1', port: 0 });
    const p2 = await target.listen({ host: '127.0.0.1', port: 0 });
    const subsys = target.addSubsystem({ nqn: SUBNQN, dhchap: { [HOSTNQN]: { secret: HOST_KEY, ctrlSecret: CTRL_KEY, dhgroups: ['ffdhe2048'] } } });
    subsys.addNamespace({ blocks: 4096 });
    const events: AuthenticationEvent[] = [];
    target.on('authentication', (e) => events.push(e));
    const m = await openMultipath({
      subnqn: SUBNQN,
      nsid: 1,
      hostnqn: HOSTNQN,
      paths: [
        { host: '127.0.0.1', port: p1.port },
        { host: '127.0.0.1', port: p2.port },
      ],
      ioQueues: 1,
      dhchap: { secret: HOST_KEY, ctrlSecret: CTRL_KEY },
    });
    try {
      const data = randomBytes(4096);
      await m.write(0n, data);
      expect((await m.read(0n, 8)).equals(data)).toBe(true);
      // Two paths, an admin and an I/O queue each, all authenticated in both directions.
      expect(events.filter((e) => e.ok && e.bidirectional).length).toBe(4);
      expectNoSecret(JSON.stringify(m.health()) + inspect(m, { depth: 8, showHidden: true }), HOST_KEY, CTRL_KEY);
    } finally {
      await m.close();
    }
  });
});
