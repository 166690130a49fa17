/**
 * In-band authentication (DH-HMAC-CHAP) on the Linux kernel target (Linux 7.x nvmet: `dhchap_*` attributes on its
 * host entries; the 'kernel' project only, 6.1 nvmet has no in-band authentication).
 *
 * The harness side: `target.setHostAuth(hostnqn, { key, ctrlKey, hash, dhgroup })` configures a host's secrets,
 * `target.addSubsystem` / `allowHost` restrict a subsystem to it. This file proves the configuration takes effect on
 * the target: a host that presents no keys is refused with Authentication Required. Tests of the host's own
 * DH-HMAC-CHAP build on the same calls.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, NvmeStatusError } from '../../src/index.js';
import { describeKernel } from './env.js';

const AUTH_NQN = 'nqn.2014-08.org.nvmexpress:nvmf-test-auth';

/** A DH-HMAC-CHAP secret in the NVMe representation: DHHC-1:<hh>:base64(secret || le32 crc32(secret)):. */
function dhchapSecret(secret: Buffer, transform: 0 | 1 | 2 | 3 = 0): string {
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(secret) >>> 0);
  return `DHHC-1:0${transform}:${Buffer.concat([secret, crc]).toString('base64')}:`;
}

describeKernel('kernel nvmet: DH-HMAC-CHAP', (target) => {
  const HOST = `nqn.2014-08.org.nvmexpress:uuid:${randomUUID()}`;
  const hostKey = dhchapSecret(randomBytes(32));
  const ctrlKey = dhchapSecret(randomBytes(32));

  beforeAll(async () => {
    await target.addSubsystem(AUTH_NQN, { allowAnyHost: false });
    await target.nvmetCtl('ns-add', AUTH_NQN, 1, '2M');
    await target.allowHost(AUTH_NQN, HOST);
    await target.setHostAuth(HOST, { key: hostKey, ctrlKey, hash: 'hmac(sha256)', dhgroup: 'ffdhe2048' });
    await target.nvmetCtl('link', 1, AUTH_NQN);
  });
  afterAll(async () => {
    await target.removeSubsystem(AUTH_NQN);
    await target.removeHost(HOST);
  });

  it('configures the host entry: keys set, hash and DH group as asked, and no secret in the result line', async () => {
    const cfs = `/sys/kernel/config/nvmet/hosts/${HOST}`;
    const r = await target.exec(`cat ${cfs}/dhchap_hash ${cfs}/dhchap_dhgroup; test -s ${cfs}/dhchap_key && test -s ${cfs}/dhchap_ctrl_key && echo keys-set`);
    expect(r.stdout.split('\n').filter(Boolean)).toEqual(['hmac(sha256)', 'ffdhe2048', 'keys-set']);
    const line = await target.nvmetCtl('host-auth', HOST, 'hash=hmac(sha256)');
    expect(line).toMatch(/^ok host-auth host=\S+ set=hash hash=hmac\(sha256\) dhgroup=ffdhe2048$/);
    expect(line).not.toContain(hostKey.slice(10, 30));
  });

  it('refuses a host that presents no keys with Authentication Required (SCT 1, SC 91h)', async () => {
    const err = await connect({ host: target.host, port: target.port, subnqn: AUTH_NQN, hostnqn: HOST }).then(
      async (c) => {
        await c.close();
        return null;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NvmeStatusError);
    const status = err as NvmeStatusError;
    // nvmet accepts the Connect (setting AUTHREQ.ATR in its result) and then refuses the admin queue's commands
    // until the queue is authenticated: a host without keys meets the refusal on queue 0.
    expect(status.qid).toBe(0);
    expect([status.sct, status.sc]).toEqual([1, 0x91]);
    expect(status.statusName).toBe('Authentication Required');
    // The error names no secret.
    expect(status.message).not.toContain(hostKey.slice(10, 30));
    expect(target.readConsole()).not.toContain(hostKey.slice(10, 30));
  });

  it('setHostAuth rejects a value nvmet refuses, naming the attribute and not the value', async () => {
    const notAKey = `not-a-dhchap-secret-${randomUUID()}`;
    const err = await target.setHostAuth(HOST, { key: notAKey }).then(() => null, (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/dhchap_key/);
    expect(err!.message).not.toContain(notAKey);
  });
});
