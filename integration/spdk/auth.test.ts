/**
 * DH-HMAC-CHAP against SPDK's nvmf_tgt: keys registered with `keyring_file_add_key` (files of mode 0600 without a
 * trailing newline), a host added with `nvmf_subsystem_add_host --dhchap-key --dhchap-ctrlr-key`. Every hash with a
 * spread of DH groups, one and both directions, verified I/O on two I/O queues; a wrong host key (SPDK's
 * AUTH_Failure1), a controller proving another key (the host's AUTH_Failure2), no key, and re-authentication.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AuthError, connect, type Controller, type DhchapGroup, type DhchapHash, type DhchapOptions } from '../../src/index.js';
import type { SpdkTopology } from '../../src/spdk/index.js';
import { describeSpdk, useSpdkTopology } from './env.js';
import { verifiedIoOnEveryQueue } from '../../test/helpers/verified-io.js';

function dhchapSecret(secret: Buffer, transform: 0 | 1 | 2 | 3): string {
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(secret) >>> 0);
  return `DHHC-1:0${transform}:${Buffer.concat([secret, crc]).toString('base64')}:`;
}

describeSpdk('SPDK nvmf_tgt: DH-HMAC-CHAP', (env) => {
  const tag = randomBytes(3).toString('hex');
  const HOST = `nqn.2014-08.org.nvmexpress:uuid:${randomUUID()}`;
  const keys = {
    host: dhchapSecret(randomBytes(32), 1),
    ctrl: dhchapSecret(randomBytes(48), 2),
    other: dhchapSecret(randomBytes(32), 1),
  };
  const names = { host: `auth_host_${tag}`, ctrl: `auth_ctrl_${tag}` };
  let dir = '';
  let nqn = '';
  let port = 0;
  const open: Controller[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nvmeof-spdk-auth-'));
    const rpc = await env.rpc();
    try {
      for (const k of ['host', 'ctrl'] as const) {
        const path = join(dir, `${k}.key`);
        await writeFile(path, keys[k], { mode: 0o600 });
        await rpc.keyringFileAddKey({ name: names[k], path });
      }
    } finally {
      await rpc.close();
    }
  });
  // Registered before the topology, so it runs after the topology is removed (after-hooks run in reverse).
  afterAll(async () => {
    for (const c of open.splice(0)) c.destroy();
    const rpc = await env.rpc();
    try {
      for (const name of Object.values(names)) await rpc.keyringFileRemoveKey({ name }).catch(() => undefined);
    } finally {
      await rpc.close();
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  useSpdkTopology(env, async (): Promise<SpdkTopology> => {
    nqn = env.uniqueNqn('auth');
    port = await env.freePort();
    return {
      bdevs: [{ type: 'malloc', name: `auth_m_${tag}`, sizeMiB: 16, blockSize: 512 }],
      subsystems: [
        {
          nqn,
          hosts: [{ nqn: HOST, dhchapKey: names.host, dhchapCtrlrKey: names.ctrl }],
          namespaces: [{ bdev: `auth_m_${tag}`, nsid: 1 }],
          listeners: [{ traddr: env.host, trsvcid: port }],
        },
      ],
    };
  });

  const connectWith = async (dhchap: DhchapOptions | undefined, ioQueues = 2): Promise<Controller> => {
    const c = await connect({ host: env.host, port, subnqn: nqn, hostnqn: HOST, ioQueues, ...(dhchap ? { dhchap } : {}) });
    open.push(c);
    return c;
  };
  const failure = async (p: Promise<unknown>): Promise<AuthError> => {
    const err = await p.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    for (const k of Object.values(keys)) expect((err as Error).message).not.toContain(k.split(':')[2]!.slice(0, 16));
    return err as AuthError;
  };
  const verifiedIo = (ctrl: Controller): Promise<void> => verifiedIoOnEveryQueue(ctrl, 32);

  const combos: Array<[DhchapHash, DhchapGroup]> = [
    ['sha256', 'null'],
    ['sha256', 'ffdhe2048'],
    ['sha384', 'null'],
    ['sha384', 'ffdhe3072'],
    ['sha512', 'ffdhe2048'],
    ['sha512', 'ffdhe4096'],
    ['sha256', 'ffdhe6144'],
    ['sha512', 'ffdhe8192'],
  ];
  for (const [hash, dhgroup] of combos) {
    for (const bidirectional of [false, true]) {
      it(`${hash}, ${dhgroup}, ${bidirectional ? 'bidirectional' : 'host only'}: every queue authenticated, verified I/O`, async () => {
        const ctrl = await connectWith({ secret: keys.host, ...(bidirectional ? { ctrlSecret: keys.ctrl } : {}), hashes: [hash], dhgroups: [dhgroup] });
        expect(ctrl.security).toEqual({ authentication: { hash, dhgroup, bidirectional } });
        expect(ctrl.ioQueueCount).toBe(2);
        await verifiedIo(ctrl);
        await ctrl.close();
      });
    }
  }

  it('a wrong host key: SPDK fails the host (AUTH_Failure1), NVMEOF_ERR_AUTH from the controller side', async () => {
    const err = await failure(connectWith({ secret: keys.other }));
    expect(err.side).toBe('controller');
    expect(err.message).toMatch(/AUTH_Failure1/);
  });

  it('SPDK proving a different controller key: the host sends AUTH_Failure2 and refuses it', async () => {
    const err = await failure(connectWith({ secret: keys.host, ctrlSecret: keys.other }));
    expect(err.side).toBe('host');
    expect(err.message).toMatch(/the controller proved a different key/);
  });

  it('no key: refused, naming ATR', async () => {
    const err = await failure(connectWith(undefined));
    expect(err.message).toMatch(/AUTHREQ\.ATR/);
  });

  it('reauthenticate() on the live admin queue, then verified I/O', async () => {
    const ctrl = await connectWith({ secret: keys.host, ctrlSecret: keys.ctrl, hashes: ['sha384'], dhgroups: ['ffdhe2048'] });
    expect(await ctrl.reauthenticate()).toEqual({ hash: 'sha384', dhgroup: 'ffdhe2048', bidirectional: true });
    await ctrl.reauthenticate();
    await verifiedIo(ctrl);
    expect(ctrl.state).toBe('live');
    await ctrl.close();
  });
});
