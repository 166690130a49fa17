/**
 * The TLS 1.3 PSK client against real TLS servers on loopback: OpenSSL's s_server (both suites) and GnuTLS's
 * gnutls-serv (SHA-256; GnuTLS 3.7 has no SHA-384 external PSKs). Data goes both ways through each server's echo
 * (s_server -rev reverses each line; gnutls-serv --echo returns it), with a KeyUpdate every few records.
 */
import { Buffer } from 'node:buffer';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../src/errors.js';
import { tlsConnect, type TlsSocket } from '../src/transport/tls13/client.js';
import { closedPort, waitFor } from './helpers/wait.js';

const has = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0 || spawnSync(cmd, ['version'], { stdio: 'ignore' }).status === 0;
const HAVE_OPENSSL = has('openssl');
const HAVE_GNUTLS = has('gnutls-serv');
// Under CI a missing server fails the suite instead of skipping it.
const needOpenssl = HAVE_OPENSSL || process.env.CI ? describe : describe.skip;
const needGnutls = HAVE_GNUTLS || process.env.CI ? describe : describe.skip;

const dir = mkdtempSync(join(tmpdir(), 'nvmeof-tls-'));
const servers: ChildProcessWithoutNullStreams[] = [];
afterAll(() => {
  for (const s of servers) s.kill();
  rmSync(dir, { recursive: true, force: true });
});

async function startServer(cmd: string, args: string[], ready: RegExp): Promise<{ proc: ChildProcessWithoutNullStreams; output: () => string }> {
  const proc = spawn(cmd, args);
  servers.push(proc);
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => ready.test(out) || proc.exitCode !== null, 10_000, `${cmd} to listen`, () => out);
  if (proc.exitCode !== null) throw new Error(`${cmd} exited: ${out}`);
  return { proc, output: () => out };
}

async function dial(port: number): Promise<net.Socket> {
  const raw = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    raw.once('connect', resolve);
    raw.once('error', reject);
  });
  return raw;
}

/** Send lines, collect `expectLines` lines of reply, then close with close_notify. */
async function exchange(s: TlsSocket, lines: string[]): Promise<string[]> {
  let got = '';
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.split('\n').length > lines.length) resolve();
    });
    s.once('error', reject);
  });
  for (const l of lines) s.write(`${l}\n`);
  await done;
  s.end();
  await new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));
  return got.split('\n').slice(0, lines.length);
}

// Forty lines of up to 3 KiB (s_server -rev reverses lines of its 16 KiB buffer): forty records. A KeyUpdate every 16
// records: s_server -rev stalls about a second on each, and GnuTLS refuses a burst of them as too many handshake packets.
const LINES = Array.from({ length: 40 }, (_, i) => `${i} ${'abcdefghij'.repeat(1 + ((i * 37) % 300))}`);
const reversed = (l: string): string => [...l].reverse().join('');

/** An OpenSSL session file whose resumption PSK is a SHA-384 key: s_server only takes a SHA-384 PSK that way. */
async function sha384Session(): Promise<{ file: string; psk: Buffer }> {
  const key = join(dir, 'k.pem');
  const cert = join(dir, 'c.pem');
  const sess = join(dir, 'sess.pem');
  expect(spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=t', '-days', '1']).status).toBe(0);
  const port = await closedPort();
  await startServer('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', cert, '-key', key, '-tls1_3', '-ciphersuites', 'TLS_AES_256_GCM_SHA384', '-naccept', '1'], /ACCEPT/);
  const client = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-ciphersuites', 'TLS_AES_256_GCM_SHA384', '-sess_out', sess]);
  let text = '';
  client.stdout.on('data', (d: Buffer) => (text += d.toString()));
  // The session (with its ticket) is written once the post-handshake NewSessionTicket has been read.
  await waitFor(() => /Verify return code/.test(text) && spawnSync('openssl', ['sess_id', '-in', sess, '-noout']).status === 0, 10_000, 's_client session');
  client.stdin.end();
  const info = spawnSync('openssl', ['sess_id', '-in', sess, '-text', '-noout']).stdout.toString();
  const m = /Resumption PSK: ([0-9A-F]+)/.exec(info);
  expect(m, info).not.toBeNull();
  expect(info).toContain('TLS_AES_256_GCM_SHA384');
  return { file: sess, psk: Buffer.from(m![1]!, 'hex') };
}

needOpenssl('TLS 1.3 PSK client against openssl s_server', () => {
  it('TLS_AES_128_GCM_SHA256: handshake, data both ways over many records and KeyUpdates, close_notify', async () => {
    const psk = randomBytes(32);
    const identity = 'NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:host nqn.2014-08.org.nvmexpress:uuid:subsys';
    const port = await closedPort();
    const srv = await startServer(
      'openssl',
      ['s_server', '-accept', `127.0.0.1:${port}`, '-nocert', '-psk', psk.toString('hex'), '-psk_identity', identity, '-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256', '-rev', '-naccept', '1'],
      /ACCEPT/,
    );
    const s = await tlsConnect(await dial(port), { identity, psk, hash: 'sha256', keyUpdateAfterRecords: 16, peer: 'openssl' });
    expect(s.info).toEqual({ protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', identity, group: 'x25519' });
    expect(await exchange(s, LINES)).toEqual(LINES.map(reversed));
    expect(s.keyUpdatesSent).toBe(2);
    expect(srv.output()).toContain('Ciphersuite: TLS_AES_128_GCM_SHA256');
  });

  it('TLS_AES_256_GCM_SHA384 with a 48-byte PSK, secp256r1 key share', async () => {
    const { file, psk } = await sha384Session();
    const identity = 'NVMe0R02 nqn.2014-08.org.nvmexpress:uuid:host nqn.2014-08.org.nvmexpress:uuid:subsys';
    const port = await closedPort();
    const srv = await startServer(
      'openssl',
      ['s_server', '-accept', `127.0.0.1:${port}`, '-nocert', '-psk_session', file, '-psk_identity', identity, '-tls1_3', '-ciphersuites', 'TLS_AES_256_GCM_SHA384', '-rev', '-naccept', '1'],
      /ACCEPT/,
    );
    const s = await tlsConnect(await dial(port), { identity, psk, hash: 'sha384', groups: ['secp256r1'], keyUpdateAfterRecords: 16 });
    expect(s.info).toMatchObject({ cipher: 'TLS_AES_256_GCM_SHA384', group: 'secp256r1' });
    expect(await exchange(s, LINES)).toEqual(LINES.map(reversed));
    expect(s.keyUpdatesSent).toBe(2);
    expect(srv.output()).toContain('Ciphersuite: TLS_AES_256_GCM_SHA384');
  });

  it('a wrong key fails with NVMEOF_ERR_TLS naming the alert, and no key bytes', async () => {
    const psk = randomBytes(32);
    const wrong = randomBytes(32);
    const port = await closedPort();
    await startServer('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-nocert', '-psk', psk.toString('hex'), '-psk_identity', 'id0', '-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256', '-naccept', '1'], /ACCEPT/);
    const err = await tlsConnect(await dial(port), { identity: 'id0', psk: wrong, hash: 'sha256' }).catch((e: unknown) => e);
    // OpenSSL 3.0 answers a binder that does not verify with illegal_parameter.
    expect(err).toMatchObject({ code: ErrorCode.TLS, alert: 47 });
    expect((err as Error).message).toMatch(/illegal_parameter \(wrong key/);
    for (const k of [psk, wrong]) {
      expect((err as Error).message).not.toContain(k.toString('hex'));
      expect((err as Error).message).not.toContain(k.toString('base64'));
    }
  });

  it('a server that only speaks the other suite: cipher not acceptable', async () => {
    const psk = randomBytes(32);
    const port = await closedPort();
    await startServer('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-nocert', '-psk', psk.toString('hex'), '-psk_identity', 'id0', '-tls1_3', '-ciphersuites', 'TLS_AES_256_GCM_SHA384', '-naccept', '1'], /ACCEPT/);
    const err = await tlsConnect(await dial(port), { identity: 'id0', psk, hash: 'sha256' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
    expect((err as Error).message).toMatch(/handshake_failure/);
  });

  it('a TLS 1.2-only server: the handshake fails with NVMEOF_ERR_TLS', async () => {
    const psk = randomBytes(32);
    const port = await closedPort();
    await startServer('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-nocert', '-psk', psk.toString('hex'), '-psk_identity', 'id0', '-tls1_2', '-naccept', '1'], /ACCEPT/);
    const err = await tlsConnect(await dial(port), { identity: 'id0', psk, hash: 'sha256' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
    expect((err as Error).message).toMatch(/protocol_version|version not acceptable/);
  });
});

needGnutls('TLS 1.3 PSK client against gnutls-serv', () => {
  it('TLS_AES_128_GCM_SHA256 with ECDHE-PSK: echo over many records and KeyUpdates', async () => {
    const psk = randomBytes(32);
    // gnutls-serv's PSK file is "identity:key", so this identity has no colon.
    const identity = 'NVMe0R01 nqn.2014-08.org.example.host1 nqn.2014-08.org.example.subsys1';
    const file = join(dir, 'psk256.txt');
    writeFileSync(file, `${identity}:${psk.toString('hex')}\n`, { mode: 0o600 });
    const port = await closedPort();
    await startServer('gnutls-serv', ['-p', String(port), '--pskpasswd', file, '--echo', '--priority', 'NORMAL:-VERS-ALL:+VERS-TLS1.3:+ECDHE-PSK:+DHE-PSK:+PSK'], /listening on IPv4/);
    const s = await tlsConnect(await dial(port), { identity, psk, hash: 'sha256', keyUpdateAfterRecords: 16 });
    expect(s.info).toMatchObject({ cipher: 'TLS_AES_128_GCM_SHA256' });
    expect(await exchange(s, LINES)).toEqual(LINES);
    expect(s.keyUpdatesSent).toBe(2);
  });

  it('TLS_AES_256_GCM_SHA384: GnuTLS 3.7 has no SHA-384 external PSK and refuses; the client says why', async () => {
    const psk = randomBytes(48);
    const file = join(dir, 'psk384.txt');
    writeFileSync(file, `id1:${psk.toString('hex')}\n`, { mode: 0o600 });
    const port = await closedPort();
    await startServer('gnutls-serv', ['-p', String(port), '--pskpasswd', file, '--echo', '--priority', 'NORMAL:-VERS-ALL:+VERS-TLS1.3:+ECDHE-PSK:+PSK'], /listening on IPv4/);
    const err = await tlsConnect(await dial(port), { identity: 'id1', psk, hash: 'sha384' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
    expect((err as Error).message).toMatch(/the target sent alert/);
  });
});
