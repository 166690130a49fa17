/**
 * `nvmeof serve` as a process: prints where it listens, holds what the config file lists, applies only the difference
 * on SIGHUP (and nothing from a config that does not load), drains and exits on SIGTERM; TCP with a token file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NvmeTarget } from '../src/target/index.js';
import { waitFor } from './helpers/wait.js';

/** Parsed JSON answers, checked by the assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const SUBNQN = 'nqn.2024-01.io.nvmeof.test:serve-cli';
const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7';
const HOSTNQN2 = 'nqn.2014-08.org.nvmexpress:uuid:9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Daemon {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<[number | null, NodeJS.Signals | null]>;
}

function start(args: string[]): Daemon {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exit = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, stdout: () => out, stderr: () => err, exit };
}

function get(sock: string, path: string): Promise<{ status: number; json: Json }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath: sock, path }, (res) => {
        let s = '';
        res.on('data', (c) => (s += c));
        res.on('end', () => resolve({ status: res.statusCode!, json: s ? JSON.parse(s) : undefined }));
      })
      .on('error', reject);
  });
}

async function setup() {
  const target = new NvmeTarget();
  cleanups.push(() => target.close());
  const port = await target.listen({ host: '127.0.0.1', port: 0 });
  target.addSubsystem({ nqn: SUBNQN }).addNamespace({ blocks: 2048 });
  const dir = mkdtempSync(join(tmpdir(), 'nvmeof-serve-cli-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return { target, port: port.port, dir };
}

describe('nvmeof serve (process)', () => {
  it('config at start, SIGHUP applies the difference, a bad config changes nothing, SIGTERM drains and exits', async () => {
    const { target, port, dir } = await setup();
    const cfg = join(dir, 'serve.json');
    const sock = join(dir, 'api.sock');
    const a = { traddr: '127.0.0.1', trsvcid: port, subnqn: SUBNQN, hostnqn: HOSTNQN, ioQueues: 1 };
    const b = { ...a, hostnqn: HOSTNQN2 };
    writeFileSync(cfg, JSON.stringify({ controllers: [a] }));
    const d = start(['--config', cfg, '--listen', `unix:${sock}`]);
    await waitFor(() => d.stdout().includes('ready'), 20_000, 'ready', d.stderr);
    expect(d.stdout()).toContain(`nvmeof serve: listening on unix:${sock}\n`);
    const first = await get(sock, '/v1/controllers');
    expect(first.json.map((c: Json) => [c.id, c.state, c.origin, c.hostnqn])).toEqual([['c1', 'live', 'config', HOSTNQN]]);

    writeFileSync(cfg, JSON.stringify({ controllers: [a, b] }));
    d.child.kill('SIGHUP');
    await waitFor(() => d.stderr().includes('config reloaded'), 10_000, 'reload', d.stderr);
    expect(d.stderr()).toMatch(/config reloaded: added c2; removed -; kept c1/);
    expect((await get(sock, '/v1/controllers')).json.map((c: Json) => [c.id, c.state])).toEqual([
      ['c1', 'live'],
      ['c2', 'live'],
    ]);
    expect(target.controllers(SUBNQN)).toHaveLength(2);

    writeFileSync(cfg, '{"controllers": [ {"traddr": "127.0.0.1" ');
    d.child.kill('SIGHUP');
    await waitFor(() => d.stderr().includes('config not reloaded'), 10_000, 'refused reload', d.stderr);
    expect(d.stderr()).toMatch(/config not reloaded, nothing changed: config is not valid JSON/);
    writeFileSync(cfg, JSON.stringify({ controllers: [a, { ...b, kato: 'soon' }] }));
    d.child.kill('SIGHUP');
    await waitFor(() => (d.stderr().match(/config not reloaded/g) ?? []).length === 2, 10_000, 'second refused reload', d.stderr);
    expect(d.stderr()).toMatch(/controllers\[1\]: kato must be an integer/);
    expect((await get(sock, '/v1/controllers')).json.map((c: Json) => c.id)).toEqual(['c1', 'c2']);

    writeFileSync(cfg, JSON.stringify({ controllers: [b] }));
    d.child.kill('SIGHUP');
    await waitFor(() => d.stderr().includes('removed c1'), 10_000, 'removal', d.stderr);
    expect((await get(sock, '/v1/controllers')).json.map((c: Json) => c.id)).toEqual(['c2']);
    await waitFor(() => target.controllers(SUBNQN).length === 1, 5000, 'c1 closed on the target');

    // A read in flight at SIGTERM is answered before the daemon stops (the target holds it for 300 ms).
    const delay = target.inject({ action: 'delay', ms: 300, match: { kind: 'io', opcode: 0x02 } });
    const inFlight = new Promise<{ status: number; bytes: number }>((resolve, reject) => {
      http
        .get({ socketPath: sock, path: '/v1/controllers/c2/namespaces/1/blocks?lba=0&count=2' }, (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => resolve({ status: res.statusCode!, bytes }));
        })
        .on('error', reject);
    });

    // An open event stream ends, the controllers are shut down, the socket goes, the process exits 0.
    let opened = false;
    const stream = new Promise<string>((resolve, reject) => {
      http
        .get({ socketPath: sock, path: '/v1/events' }, (res) => {
          opened = true;
          let s = '';
          res.on('data', (c) => (s += c));
          res.on('end', () => resolve(s));
        })
        .on('error', reject);
    });
    await waitFor(() => opened, 5000, 'event stream open');
    await waitFor(() => delay.hits === 1, 5000, 'read held at the target');
    d.child.kill('SIGTERM');
    expect(await inFlight).toEqual({ status: 200, bytes: 1024 });
    const [code, signal] = await d.exit;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(await stream).toContain(': nvmeof serve events');
    expect(existsSync(sock)).toBe(false);
    expect(d.stderr()).toMatch(/SIGTERM: draining[\s\S]*stopped/);
    await waitFor(() => target.controllers(SUBNQN).length === 0, 5000, 'every controller closed');
  });

  it('TCP with a token file: prints the bound address, 401 without the token; refuses TCP without one', async () => {
    const { dir } = await setup();
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'serve-cli-token-0123456789\n', { mode: 0o600 });
    const d = start(['--listen', 'tcp:127.0.0.1:0', '--token-file', tokenFile]);
    await waitFor(() => d.stdout().includes('ready'), 20_000, 'ready', d.stderr);
    const where = /listening on tcp:(127\.0\.0\.1:\d+)/.exec(d.stdout())![1]!;
    expect((await fetch(`http://${where}/v1/health`)).status).toBe(401);
    const ok = await fetch(`http://${where}/v1/health`, { headers: { authorization: 'Bearer serve-cli-token-0123456789' } });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { status: string }).status).toBe('ok');
    d.child.kill('SIGTERM');
    expect((await d.exit)[0]).toBe(0);

    const bad = start(['--listen', 'tcp:127.0.0.1:0']);
    expect((await bad.exit)[0]).toBe(2);
    expect(bad.stderr()).toMatch(/TCP listener needs --token-file/);
  });
});
