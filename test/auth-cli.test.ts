/**
 * The CLI's DH-HMAC-CHAP flags (-S/--dhchap-secret, -C/--dhchap-ctrl-secret, keys from files) against the embedded
 * target: authenticated commands succeed, failures exit 3 with NVMEOF_ERR_AUTH, and no key reaches stdout or stderr
 * (human or `-o json`).
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/cli.js';
import { NvmeTarget, type AuthenticationEvent, type TargetPort } from '../src/target/index.js';

const NQN = 'nqn.2024-01.io.nvmeof.test:cli-auth';
const HOST = 'nqn.2014-08.org.nvmexpress:uuid:5d1b4c0e-8f2a-4b7c-9d3e-0a1b2c3d4e5f';

function makeKey(hh: number, length = 32): string {
  const secret = randomBytes(length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(zlibCrc32(secret) >>> 0);
  return `DHHC-1:0${hh}:${Buffer.concat([secret, crc]).toString('base64')}:`;
}

const HOST_KEY = makeKey(2, 48);
const CTRL_KEY = makeKey(1);
const WRONG_KEY = makeKey(2, 48);

let target: NvmeTarget;
let port: TargetPort;
let dir: string;
let keyFile: string;
const events: AuthenticationEvent[] = [];

beforeAll(async () => {
  target = new NvmeTarget();
  port = await target.listen({ host: '127.0.0.1', port: 0 });
  const subsys = target.addSubsystem({ nqn: NQN, dhchap: { [HOST]: { secret: HOST_KEY, ctrlSecret: CTRL_KEY, dhgroups: ['ffdhe3072'], hashes: ['sha384'] } } });
  subsys.addNamespace({ blocks: 1024 });
  target.setDiscoveryDhchap(HOST, { secret: HOST_KEY, ctrlSecret: CTRL_KEY });
  target.on('authentication', (e) => events.push(e));
  dir = await mkdtemp(join(tmpdir(), 'nvmeof-auth-cli-'));
  keyFile = join(dir, 'host.key');
  await writeFile(keyFile, HOST_KEY, { mode: 0o600 });
});

afterAll(async () => {
  await target.close();
  await rm(dir, { recursive: true, force: true });
});

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (to: Buffer[]) => ({ isTTY: false, write: (c: string | Uint8Array) => (to.push(Buffer.from(c)), true) });
  const code = await main(args, { stdout: sink(out), stderr: sink(err) });
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

function expectNoSecret(text: string): void {
  for (const k of [HOST_KEY, CTRL_KEY, WRONG_KEY]) {
    const b64 = k.split(':')[2]!;
    expect(text).not.toContain(b64.slice(0, 12));
    expect(text).not.toContain(Buffer.from(b64, 'base64').subarray(0, 8).toString('hex'));
  }
}

const at = ['-a', '127.0.0.1', '-s', () => String(port.port)] as const;
const args = (...rest: string[]) => [...at.map((a) => (typeof a === 'function' ? a() : a)), '-q', HOST, ...rest];

describe('cli: DH-HMAC-CHAP', () => {
  it('id-ctrl -o json with the host key from a file and the controller key inline: every queue authenticated, no key in the output', async () => {
    const before = events.length;
    const r = await run(['id-ctrl', ...args('-n', NQN, '--dhchap-secret', `file:${keyFile}`, '-C', CTRL_KEY, '-o', 'json')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ subnqn: NQN });
    expectNoSecret(r.stdout + r.stderr);
    expect(events.slice(before).every((e) => e.ok && e.hash === 'sha384' && e.dhgroup === 'ffdhe3072' && e.bidirectional)).toBe(true);
    expect(events.length).toBeGreaterThan(before);
  });

  it('read through an authenticated I/O queue', async () => {
    const r = await run(['read', ...args('-n', NQN, '-S', HOST_KEY, '-N', '1', '-c', '1', '-o', 'json', '--nr-io-queues', '1')]);
    expect(r.code).toBe(0);
    expect(events.some((e) => e.qid === 1 && e.ok)).toBe(true);
    expectNoSecret(r.stdout + r.stderr);
  });

  it('discover authenticates to the discovery controller', async () => {
    const r = await run(['discover', ...args('-S', `file:${keyFile}`, '-C', CTRL_KEY, '-o', 'json')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(NQN);
    expectNoSecret(r.stdout + r.stderr);
  });

  it('a wrong key exits 3 with NVMEOF_ERR_AUTH and the reason, never the key', async () => {
    const host = await run(['id-ctrl', ...args('-n', NQN, '-S', WRONG_KEY, '-o', 'json')]);
    expect(host.code).toBe(3);
    expect(host.stderr).toMatch(/AUTH_Failure1.*\[NVMEOF_ERR_AUTH\]/);
    const ctrl = await run(['id-ctrl', ...args('-n', NQN, '-S', HOST_KEY, '-C', WRONG_KEY)]);
    expect(ctrl.code).toBe(3);
    expect(ctrl.stderr).toMatch(/the controller proved a different key.*\[NVMEOF_ERR_AUTH\]/);
    const none = await run(['id-ctrl', ...args('-n', NQN)]);
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/no dhchap secret/);
    expectNoSecret(host.stdout + host.stderr + ctrl.stdout + ctrl.stderr);
  });

  it('malformed keys and unreadable key files are usage errors that do not echo the key', async () => {
    const broken = HOST_KEY.slice(0, 20) + HOST_KEY.slice(21);
    const r1 = await run(['id-ctrl', ...args('-n', NQN, '-S', broken)]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/--dhchap-secret/);
    expectNoSecret(r1.stderr);
    expect(r1.stderr).not.toContain(broken.slice(10, 30));
    const r2 = await run(['id-ctrl', ...args('-n', NQN, '-S', `file:${join(dir, 'missing.key')}`)]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/cannot read .*missing\.key: ENOENT/);
    const r3 = await run(['id-ctrl', ...args('-n', NQN, '-C', CTRL_KEY)]);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toMatch(/--dhchap-ctrl-secret needs --dhchap-secret/);
  });
});

describe('cli: DH-HMAC-CHAP with NODE_DEBUG=nvmeof', () => {
  it('the debug log of an authenticated run and of a failed one carries no key', async () => {
    const { spawn } = await import('node:child_process');
    const runChild = (extra: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'id-ctrl', ...args('-n', NQN, ...extra, '-o', 'json')], {
          env: { ...process.env, NODE_DEBUG: 'nvmeof' },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (out += c.toString()));
        child.on('close', (code) => resolve({ code, out }));
      });
    const ok = await runChild(['-S', HOST_KEY, '-C', CTRL_KEY]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/NVMEOF \d+: DH-HMAC-CHAP queue 0 of .*: authenticated \(sha384, ffdhe3072, bidirectional\)/);
    const bad = await runChild(['-S', HOST_KEY, '-C', WRONG_KEY]);
    expect(bad.code).toBe(3);
    expect(bad.out).toMatch(/host refuses \(the controller proved a different key/);
    expectNoSecret(ok.out + bad.out);
  });
});
