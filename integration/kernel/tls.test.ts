/**
 * NVMe/TCP with TLS on the Linux kernel target (Linux 7.x nvmet, the 'kernel' project only): a port with addr_tsas
 * tls1.3, the handshake served by tlshd (Debian ktls-utils) in the busybox guest, the PSK in the kernel's .nvme
 * keyring. The library's host has no TLS yet, so these tests use node:tls with an external PSK as the host side and
 * send an NVMe/TCP ICReq inside the TLS session (the target half alone); then the library's host (connect({ tls }),
 * its own TLS 1.3 client) brings up a controller over TLS on every queue with verified I/O, for a SHA-256 and a
 * SHA-384 key.
 *
 * node:tls offers an external PSK only with a SHA-256 suite named in `ciphers` (TLS_AES_128_GCM_SHA256); the
 * identity's hash indicator (01, SHA-256) matches it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, deriveTlsCredentials, ErrorCode, formatTlsKey, parseTlsKey, type Controller } from '../../src/index.js';
import { countEmptyRecords } from '../../test/helpers/tls-empty-records.js';
import { probeNvmeTcp } from './qemu-target.js';
import { describeKernel } from './env.js';

const TLS_PORTID = 4;
const TLS_TRSVCID = 4430;

/** An NVMe/TCP ICReq (PFV 0, no digests). */
function icreq(): Buffer {
  const b = Buffer.alloc(128);
  b[0] = 0x00;
  b[2] = 128;
  b.writeUInt32LE(128, 4);
  return b;
}

/** TLS 1.3 handshake with an external PSK, then ICReq; resolves with the protocol, cipher and the ICResp bytes. */
function tlsIcExchange(host: string, port: number, identity: string, psk: Buffer): Promise<{ protocol: string | null; cipher: string; icresp: Buffer }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = tls.connect({
      host,
      port,
      minVersion: 'TLSv1.3',
      ciphers: 'TLS_AES_128_GCM_SHA256',
      pskCallback: () => ({ identity, psk }),
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('no ICResp within 20 s'));
    }, 20_000);
    sock.on('secureConnect', () => sock.write(icreq()));
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      if (all.length >= 128) {
        clearTimeout(timer);
        const result = { protocol: sock.getProtocol(), cipher: sock.getCipher().name, icresp: all.subarray(0, 128) };
        sock.destroy();
        resolve(result);
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`connection closed after ${Buffer.concat(chunks).length} bytes`));
    });
  });
}

describeKernel('kernel nvmet: NVMe/TCP with TLS (tlshd)', (target) => {
  const HOST = `nqn.2014-08.org.nvmexpress:uuid:${randomUUID()}`;
  const identity = `NVMe0R01 ${HOST} ${target.openNqn}`;
  const psk = randomBytes(32);

  beforeAll(async () => {
    await target.addTlsPort(TLS_PORTID, TLS_TRSVCID);
    await target.nvmetCtl('link', TLS_PORTID, target.openNqn);
    await target.addPsk(identity, psk);
  });
  afterAll(async () => {
    await target.removePort(TLS_PORTID);
  });

  it('the port requires TLS 1.3 in configfs', async () => {
    const r = await target.exec(`cat /sys/kernel/config/nvmet/ports/${TLS_PORTID}/addr_tsas /sys/kernel/config/nvmet/ports/${TLS_PORTID}/addr_treq`);
    expect(r.stdout.split('\n').filter(Boolean)).toEqual(['tls1.3', 'required']);
  });

  it('completes a TLS 1.3 PSK handshake through tlshd and answers an ICReq inside the session', async (ctx) => {
    target.skipUnlessReachable(ctx);
    const { protocol, cipher, icresp } = await tlsIcExchange(target.host, TLS_TRSVCID, identity, psk);
    expect(protocol).toBe('TLSv1.3');
    expect(cipher).toBe('TLS_AES_128_GCM_SHA256');
    expect([icresp[0], icresp[2], icresp.readUInt32LE(4)]).toEqual([0x01, 128, 128]);
    const log = await target.exec('cat /run/tlshd.log');
    expect(log.stdout).toMatch(/Handshake with .* was successful/);
  });

  it('refuses a handshake with the wrong PSK, and a plain ICReq without TLS', async (ctx) => {
    target.skipUnlessReachable(ctx);
    // Refused, not merely unanswered: the connection fails or closes before any ICResp, well within the time limits.
    const wrongKey = await tlsIcExchange(target.host, TLS_TRSVCID, identity, randomBytes(32)).then(() => null, (e: unknown) => e as Error);
    expect(wrongKey?.message).toBeDefined();
    expect(wrongKey?.message).not.toMatch(/no ICResp within/);
    const plain = await probeNvmeTcp(target.host, TLS_TRSVCID, 20_000).then(() => null, (e: unknown) => e as Error);
    expect(plain?.message).toBeDefined();
    expect(plain?.message).not.toMatch(/no ICResp from/);
  });

  it("the library's host: connect({ tls }) with a SHA-256 key, TLS 1.3 on every queue, verified I/O; a wrong key refused", async (ctx) => {
    target.skipUnlessReachable(ctx);
    const hostnqn = `nqn.2014-08.org.nvmexpress:uuid:${randomUUID()}`;
    const key = formatTlsKey(randomBytes(32), 1);
    // The guest's keyring holds what nvme-cli's key import puts there: the TLS PSK under the v0 identity.
    const c = deriveTlsCredentials({ key: parseTlsKey(key), hostnqn, subnqn: target.openNqn });
    await target.addPsk(c.identity, c.psk);
    let ctrl: Controller | undefined;
    try {
      ctrl = await connect({ host: target.host, port: TLS_TRSVCID, subnqn: target.openNqn, hostnqn, ioQueues: 2, tls: { key } });
      expect(ctrl.security).toEqual({ tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', identity: `NVMe0R01 ${hostnqn} ${target.openNqn}` } });
      const ns = await ctrl.namespace((await ctrl.activeNamespaceIds())[0]!);
      const data = randomBytes(64 * 1024);
      const lba = 4096n;
      await Promise.all([0, 1, 2, 3].map((i) => ns.write(lba + BigInt((i * 16384) / ns.blockSize), data.subarray(i * 16384, (i + 1) * 16384))));
      const back = await ns.read(lba, data.length / ns.blockSize);
      expect(Buffer.compare(back, data)).toBe(0);
      // Large reads: while a payload streams in, the host sends zero-length records (TlsSocket.sendEmptyRecord) so
      // its acknowledgements go out at once; the kernel's TLS layer takes them and the data stays exact.
      const big = randomBytes(1024 * 1024);
      const bigLba = 8192n;
      await ns.write(bigLba, big);
      const empties = await countEmptyRecords(async () => {
        for (let round = 0; round < 4; round++) {
          const parts = await Promise.all([0, 1, 2, 3].map((i) => ns.read(bigLba + BigInt((i * 262144) / ns.blockSize), 262144 / ns.blockSize)));
          expect(Buffer.compare(Buffer.concat(parts), big)).toBe(0);
        }
      });
      expect(empties).toBeGreaterThan(0);
    } finally {
      await ctrl?.close();
    }
    const wrong = await connect({ host: target.host, port: TLS_TRSVCID, subnqn: target.openNqn, hostnqn, ioQueues: 1, tls: { key: formatTlsKey(randomBytes(32), 1) } }).catch((e: unknown) => e);
    expect(wrong).toMatchObject({ code: ErrorCode.TLS });
  });

  it("a SHA-384 key: tlshd (ktls-utils 1.0.0) as the server refuses the SHA-384 ClientHello that SPDK and OpenSSL accept", async (ctx) => {
    target.skipUnlessReachable(ctx);
    const hostnqn = `nqn.2014-08.org.nvmexpress:uuid:${randomUUID()}`;
    const key = formatTlsKey(randomBytes(48), 2);
    const c = deriveTlsCredentials({ key: parseTlsKey(key), hostnqn, subnqn: target.openNqn });
    expect(c.identity.startsWith('NVMe0R02 ')).toBe(true);
    await target.addPsk(c.identity, c.psk);
    const err = await connect({ host: target.host, port: TLS_TRSVCID, subnqn: target.openNqn, hostnqn, ioQueues: 1, tls: { key } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
    // GnuTLS error -55 is GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER: its PSK credentials are SHA-256 ones.
    const log = await target.exec('cat /run/tlshd.log');
    expect(log.stdout).toMatch(/unhandled error -55/);
  });
});
