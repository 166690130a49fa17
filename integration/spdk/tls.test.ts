/**
 * NVMe/TCP over TLS 1.3 against SPDK's nvmf_tgt: a secure-channel listener (`nvmf_subsystem_add_listener
 * --secure-channel`), configured PSKs in the interchange format loaded with keyring_file_add_key (mode 0600 files, no
 * trailing newline) and bound to the host with `nvmf_subsystem_add_host --psk`. SPDK derives the retained and TLS PSKs
 * itself and accepts v0 identities; its OpenSSL picks the suite the key's hash allows. Verified I/O on several
 * queues for a SHA-256 and a SHA-384 key, refusals for a wrong key, a v1 identity, a plain connection and a key for
 * another host; spdk_nvme_perf (SPDK's own host, `-S ssl --psk-path`) reads through the same subsystem.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, ErrorCode, formatTlsKey, type Controller } from '../../src/index.js';
import type { SpdkTopology } from '../../src/spdk/index.js';
import { countEmptyRecords } from '../../test/helpers/tls-empty-records.js';
import { describeSpdk, useSpdkTopology } from './env.js';

describeSpdk('SPDK nvmf_tgt: NVMe/TCP over TLS 1.3 with PSKs', (env) => {
  const tag = randomBytes(3).toString('hex');
  const uuidNqn = (): string => `nqn.2014-08.org.nvmexpress:uuid:${randomBytes(16).toString('hex').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5')}`;
  const hostnqn = uuidNqn();
  const dir = mkdtempSync(join(tmpdir(), 'nvmeof-spdk-tls-'));
  const keys = {
    sha256: formatTlsKey(randomBytes(32), 1),
    sha384: formatTlsKey(randomBytes(48), 2),
    other: formatTlsKey(randomBytes(32), 1),
  };
  const keyNames = { sha256: `tls256_${tag}`, sha384: `tls384_${tag}` };
  const files = { sha256: join(dir, 'k256'), sha384: join(dir, 'k384') };
  const nqn = { sha256: env.uniqueNqn('tls256'), sha384: env.uniqueNqn('tls384') };
  let port = 0;

  const handle = useSpdkTopology(env, async (): Promise<SpdkTopology> => {
    port = await env.freePort();
    const rpc = await env.rpc();
    try {
      for (const k of ['sha256', 'sha384'] as const) {
        writeFileSync(files[k], keys[k], { mode: 0o600 });
        await rpc.keyringFileAddKey({ name: keyNames[k], path: files[k] });
      }
    } finally {
      await rpc.close();
    }
    return {
      bdevs: [
        { type: 'malloc', name: `tls_a_${tag}`, sizeMiB: 32, blockSize: 512 },
        { type: 'malloc', name: `tls_b_${tag}`, sizeMiB: 32, blockSize: 4096 },
      ],
      subsystems: (['sha256', 'sha384'] as const).map((k, i) => ({
        nqn: nqn[k],
        serial: `NVMEOFTLS000${i}`,
        hosts: [{ nqn: hostnqn, psk: keyNames[k] }],
        namespaces: [{ bdev: i === 0 ? `tls_a_${tag}` : `tls_b_${tag}`, nsid: 1 }],
        listeners: [{ traddr: env.host, trsvcid: port, secureChannel: true }],
      })),
    };
  });

  afterAll(async () => {
    const rpc = await env.rpc().catch(() => undefined);
    for (const name of Object.values(keyNames)) await rpc?.keyringFileRemoveKey({ name }).catch(() => undefined);
    await rpc?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeAll(() => {
    expect(handle.applied.subsystems).toHaveLength(2);
  });

  for (const [k, cipher, hh] of [
    ['sha256', 'TLS_AES_128_GCM_SHA256', '01'],
    ['sha384', 'TLS_AES_256_GCM_SHA384', '02'],
  ] as const) {
    it(`${k} key: ${cipher} on every queue, verified I/O on three I/O queues`, async () => {
      let ctrl: Controller | undefined;
      try {
        ctrl = await connect({ host: env.host, port, subnqn: nqn[k], hostnqn, ioQueues: 3, queueSize: 16, tls: { key: keys[k] } });
        expect(ctrl.security).toEqual({ tls: { protocol: 'TLSv1.3', cipher, identity: `NVMe0R${hh} ${hostnqn} ${nqn[k]}` } });
        const ns = await ctrl.namespace(1);
        // 64 writes of 4 KiB to 256 KiB in flight together over the three queues, then every range read back.
        const writes = Array.from({ length: 64 }, (_, i) => {
          const bytes = Math.max(ns.blockSize, ((i * 4096) % (256 * 1024)) + 4096);
          return { lba: BigInt(i) * BigInt((256 * 1024) / ns.blockSize), data: randomBytes(Math.ceil(bytes / ns.blockSize) * ns.blockSize) };
        });
        await Promise.all(writes.map((w) => ns.write(w.lba, w.data)));
        const back = await Promise.all(writes.map((w) => ns.read(w.lba, w.data.length / ns.blockSize)));
        for (const [i, w] of writes.entries()) expect(Buffer.compare(back[i]!, w.data), `write ${i}`).toBe(0);
        // One large read at a time (the case SPDK's 8 KiB TLS send buffer stalled): the host sends empty records while
        // each payload streams in, SPDK's OpenSSL takes them, and every read is exact.
        const empties = await countEmptyRecords(async () => {
          for (const [i, w] of writes.slice(-16).entries()) expect(Buffer.compare(await ns.read(w.lba, w.data.length / ns.blockSize), w.data), `read ${i}`).toBe(0);
        });
        expect(empties).toBeGreaterThan(0);
      } finally {
        await ctrl?.close();
      }
    });
  }

  it('a wrong key fails with NVMEOF_ERR_TLS (the target cannot verify the binder) and no key in the message', async () => {
    const err = await connect({ host: env.host, port, subnqn: nqn.sha256, hostnqn, ioQueues: 1, tls: { key: keys.other } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
    // SPDK's OpenSSL answers a binder that does not verify with illegal_parameter.
    expect((err as Error).message).toMatch(/alert illegal_parameter \(wrong key/);
    for (const key of Object.values(keys)) expect((err as Error).message).not.toContain(key.split(':')[2]!.slice(0, 16));
  });

  it('a SHA-384 key offered to the SHA-256 subsystem fails with NVMEOF_ERR_TLS', async () => {
    const err = await connect({ host: env.host, port, subnqn: nqn.sha256, hostnqn, ioQueues: 1, tls: { key: keys.sha384 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
  });

  it('a v1 identity is refused (SPDK accepts v0 identities only)', async () => {
    const err = await connect({ host: env.host, port, subnqn: nqn.sha256, hostnqn, ioQueues: 1, tls: { key: keys.sha256, identity: 'v1' } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
  });

  it('another host NQN with the right key is refused', async () => {
    const err = await connect({ host: env.host, port, subnqn: nqn.sha256, hostnqn: uuidNqn(), ioQueues: 1, tls: { key: keys.sha256 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
  });

  it('a plain connection to the secure-channel listener does not come up', async () => {
    const err = await connect({ host: env.host, port, subnqn: nqn.sha256, hostnqn, ioQueues: 1, connectTimeout: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as { code?: string }).code).toMatch(/^NVMEOF_ERR_/);
  });

  it('spdk_nvme_perf (-S ssl --psk-path) reads through the same SHA-256 and SHA-384 subsystems', () => {
    const perf = join(dirname(env.binary), 'spdk_nvme_perf');
    expect(existsSync(perf), perf).toBe(true);
    for (const k of ['sha256', 'sha384'] as const) {
      const r = spawnSync(
        perf,
        ['-q', '4', '-o', '4096', '-w', 'randread', '-t', '1', '-S', 'ssl', '--psk-path', files[k], '-r', `trtype:TCP adrfam:IPv4 traddr:${env.host} trsvcid:${port} subnqn:${nqn[k]} hostnqn:${hostnqn}`, '--no-huge', '-s', '256', '-i', String(process.pid % 1000)],
        { encoding: 'utf8', timeout: 60_000 },
      );
      expect(r.status, `${k}: ${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout, k).toMatch(/Total\s*:\s*[\d.]+\s+[\d.]+/);
    }
  });
});
