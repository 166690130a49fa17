/**
 * STARTTLS on the NBD server with X.509 certificates (made with certtool) and with PSK (made with psktool), driven by
 * nbdinfo and qemu-img (GnuTLS clients) using the same credentials.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveNbd, type NbdServer, type NbdTlsOptions } from '../src/nbd/server.js';
import { readCredsDir, readPskFile } from '../src/cli/nbd.js';
import { main } from '../src/cli/cli.js';
import type { Namespace } from '../src/host/namespace.js';
import { TargetEnv, SUBNQN, HOSTNQN } from './helpers/target-env.js';
import { missingClients, run } from './helpers/clients.js';
import { waitFor } from './helpers/wait.js';

const env = new TargetEnv();
const servers: NbdServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  await env.cleanup();
});

const skip = missingClients('nbdinfo', 'qemu-img', 'certtool', 'psktool');
let dir = '';

beforeAll(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'nvmeof-nbd-tls-'));
  const creds = join(dir, 'server');
  mkdirSync(creds);
  writeFileSync(join(dir, 'ca.info'), 'cn = nvmeof test CA\nca\ncert_signing_key\nexpiration_days = 2\n');
  writeFileSync(join(dir, 'server.info'), 'organization = nvmeof test\ncn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n');
  await run('certtool', ['--generate-privkey', '--outfile', join(dir, 'ca-key.pem')]);
  await run('certtool', ['--generate-self-signed', '--load-privkey', join(dir, 'ca-key.pem'), '--template', join(dir, 'ca.info'), '--outfile', join(creds, 'ca-cert.pem')]);
  await run('certtool', ['--generate-privkey', '--outfile', join(creds, 'server-key.pem')]);
  await run('certtool', [
    '--generate-certificate', '--load-privkey', join(creds, 'server-key.pem'), '--load-ca-certificate', join(creds, 'ca-cert.pem'),
    '--load-ca-privkey', join(dir, 'ca-key.pem'), '--template', join(dir, 'server.info'), '--outfile', join(creds, 'server-cert.pem'),
  ]);
  // The client side: only the CA certificate (as qemu and libnbd look for it in their directory).
  mkdirSync(join(dir, 'client'));
  copyFileSync(join(creds, 'ca-cert.pem'), join(dir, 'client', 'ca-cert.pem'));
  mkdirSync(join(dir, 'psk'));
  await run('psktool', ['-u', 'alice', '-p', join(dir, 'psk', 'keys.psk')]);
  writeFileSync(join(dir, 'wrong.psk'), `alice:${randomBytes(32).toString('hex')}\n`);
}, 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function serve(tls: NbdTlsOptions): Promise<{ ns: Namespace; port: number }> {
  await env.start({ ns: { blocks: 16384 } });
  const ns = await (await env.connect()).namespace(1);
  const server = await serveNbd({ listen: { port: 0 }, exports: [{ name: 'disk', namespace: ns }], tls });
  servers.push(server);
  return { ns, port: (server.address as { port: number }).port };
}

const fails = (p: Promise<string>) => p.then((out) => `succeeded: ${out}`, (e: Error) => e.message);

describe.skipIf(!!skip)('nbd STARTTLS', () => {
  it('X.509, TLS required: nbdinfo and qemu-img with the CA get in; a plain client is refused', async () => {
    const { ns, port } = await serve({ mode: 'require', ...readCredsDir(join(dir, 'server')) });
    const info = JSON.parse(await run('nbdinfo', ['--json', `nbds://127.0.0.1:${port}/disk?tls-certificates=${join(dir, 'client')}`])) as { TLS: boolean; exports: { 'export-size': number }[] };
    expect(info.TLS).toBe(true);
    expect(info.exports[0]!['export-size']).toBe(16384 * 512);
    expect(await fails(run('nbdinfo', [`nbd://127.0.0.1:${port}/disk`]))).toMatch(/TLS|not supported|required/i);
    // qemu-img convert in and out over TLS, then compare.
    const src = randomBytes(8 * 1024 * 1024);
    writeFileSync(join(dir, 'in.raw'), src);
    const obj = `tls-creds-x509,id=tls0,dir=${join(dir, 'client')},endpoint=client`;
    const target = `driver=nbd,host=127.0.0.1,port=${port},export=disk,tls-creds=tls0,tls-hostname=localhost`;
    await run('qemu-img', ['convert', '-n', '--object', obj, '-f', 'raw', join(dir, 'in.raw'), '--target-image-opts', target]);
    expect((await ns.read(0, 16384)).equals(src)).toBe(true);
    await run('qemu-img', ['convert', '--object', obj, '--image-opts', target, '-O', 'raw', join(dir, 'out.raw')]);
    expect(readFileSync(join(dir, 'out.raw')).equals(src)).toBe(true);
  });

  it('PSK, TLS required: the right key gets in (nbdinfo, qemu-img), a wrong key does not', async () => {
    const { ns, port } = await serve({ mode: 'require', psk: readPskFile(join(dir, 'psk', 'keys.psk')) });
    await ns.write(0, Buffer.alloc(512, 0x44));
    const info = JSON.parse(await run('nbdinfo', ['--json', `nbds://alice@127.0.0.1:${port}/disk?tls-psk-file=${join(dir, 'psk', 'keys.psk')}`])) as { TLS: boolean };
    expect(info.TLS).toBe(true);
    expect(await fails(run('nbdinfo', [`nbds://alice@127.0.0.1:${port}/disk?tls-psk-file=${join(dir, 'wrong.psk')}`]))).toMatch(/gnutls|TLS|handshake/i);
    const out = await run('qemu-img', [
      'convert', '--object', `tls-creds-psk,id=tls0,dir=${join(dir, 'psk')},endpoint=client,username=alice`,
      '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},export=disk,tls-creds=tls0`, '-O', 'raw', join(dir, 'psk-out.raw'),
    ]);
    expect(out).toBe('');
    expect(readFileSync(join(dir, 'psk-out.raw')).subarray(0, 512).equals(Buffer.alloc(512, 0x44))).toBe(true);
  });

  it('TLS on (not required): plain and TLS clients both get in', async () => {
    const { port } = await serve({ mode: 'on', ...readCredsDir(join(dir, 'server')) });
    const plain = JSON.parse(await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/disk`])) as { TLS: boolean };
    expect(plain.TLS).toBe(false);
    const secure = JSON.parse(await run('nbdinfo', ['--json', `nbds://127.0.0.1:${port}/disk?tls-certificates=${join(dir, 'client')}`])) as { TLS: boolean };
    expect(secure.TLS).toBe(true);
  });

  it('nvmeof nbd --tls-creds requires TLS by default', async () => {
    await env.start({ ns: { blocks: 16384 } });
    let out = '';
    let err = '';
    const ac = new AbortController();
    const done = main(['nbd', '-a', '127.0.0.1', '-s', String(env.port.port), '-n', SUBNQN, '-q', HOSTNQN, '--listen', 'tcp:127.0.0.1:0', '--export-name', 'disk', '--tls-creds', join(dir, 'server')], {
      stdout: { write: (c) => ((out += String(c)), true) },
      stderr: { write: (c) => ((err += String(c)), true) },
      signal: ac.signal,
    });
    await waitFor(() => out.includes('\n') || err.length > 0, 10_000, 'listening', () => err);
    expect(out).toContain('(TLS require)');
    const port = /:(\d+)\/disk/.exec(out)![1]!;
    expect(await fails(run('nbdinfo', [`nbd://127.0.0.1:${port}/disk`]))).not.toMatch(/^succeeded/);
    const info = JSON.parse(await run('nbdinfo', ['--json', `nbds://127.0.0.1:${port}/disk?tls-certificates=${join(dir, 'client')}`])) as { TLS: boolean };
    expect(info.TLS).toBe(true);
    ac.abort();
    expect(await done).toBe(0);
  });
});
