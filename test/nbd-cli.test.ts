/**
 * `nvmeof nbd`: in-process (interrupted through the CLI's signal) and as a real process stopped with SIGTERM, with
 * real NBD clients reading and writing through it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main, type CliIo } from '../src/cli/cli.js';
import { parseListen, readPskFile } from '../src/cli/nbd.js';
import { TargetEnv, SUBNQN, HOSTNQN } from './helpers/target-env.js';
import { missingClients, run } from './helpers/clients.js';
import { waitFor } from './helpers/wait.js';
import { writeFileSync } from 'node:fs';

const env = new TargetEnv();
const dirs: string[] = [];
afterEach(async () => {
  await env.cleanup();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

class Sink {
  text = '';
  write(c: string | Uint8Array): boolean {
    this.text += typeof c === 'string' ? c : Buffer.from(c).toString();
    return true;
  }
}

function startCli(args: string[]): { stdout: Sink; stderr: Sink; stop: () => void; done: Promise<number> } {
  const stdout = new Sink();
  const stderr = new Sink();
  const ac = new AbortController();
  const io: CliIo = { stdout, stderr, signal: ac.signal };
  return { stdout, stderr, stop: () => ac.abort(new Error('interrupted')), done: main(args, io) };
}

describe('nbd cli: arguments', () => {
  it('parses --listen forms and rejects others', () => {
    expect(parseListen('tcp:127.0.0.1:10809')).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(parseListen('tcp:[::1]:10809')).toEqual({ host: '::1', port: 10809 });
    expect(parseListen('unix:/tmp/x.sock')).toEqual({ path: '/tmp/x.sock' });
    expect(() => parseListen('tcp:127.0.0.1')).toThrow(/needs a port/);
    expect(() => parseListen('10809')).toThrow(/tcp:HOST:PORT or unix:PATH/);
    expect(() => parseListen('unix:')).toThrow(/socket path/);
  });

  it('reads psktool files and never puts a key in an error', () => {
    const d = mkdtempSync(join(tmpdir(), 'nvmeof-nbd-cli-'));
    dirs.push(d);
    writeFileSync(join(d, 'keys.psk'), 'alice:00112233445566778899aabbccddeeff\n');
    expect(readPskFile(join(d, 'keys.psk')).get('alice')!.toString('hex')).toBe('00112233445566778899aabbccddeeff');
    writeFileSync(join(d, 'bad.psk'), 'alice:0011223344556677zz\n');
    let msg = '';
    try {
      readPskFile(join(d, 'bad.psk'));
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/line 1 is not "identity:hexkey"/);
    expect(msg).not.toContain('0011223344');
  });

  it('usage errors exit 2 before connecting', async () => {
    const a = startCli(['nbd', '-a', '127.0.0.1', '-n', SUBNQN]);
    expect(await a.done).toBe(2);
    expect(a.stderr.text).toMatch(/--listen/);
    const b = startCli(['nbd', '-a', '127.0.0.1', '-n', SUBNQN, '--listen', 'tcp:127.0.0.1:0', '--tls', 'on']);
    expect(await b.done).toBe(2);
    expect(b.stderr.text).toMatch(/--tls-creds DIR or --tls-psk FILE/);
  });
});

const skipClients = missingClients('nbdinfo', 'qemu-img', 'qemu-io');

describe.skipIf(!!skipClients)('nbd cli: serving', () => {
  it('serves over TCP until interrupted, then closes the controller and exits 0', async () => {
    await env.start({ ns: { blocks: 8192 } });
    const cli = startCli(['nbd', '-a', '127.0.0.1', '-s', String(env.port.port), '-n', SUBNQN, '-q', HOSTNQN, '--listen', 'tcp:127.0.0.1:0', '--export-name', 'vol', '-o', 'json']);
    await waitFor(() => cli.stdout.text.includes('\n') || cli.stderr.text.length > 0, 10_000, 'listening line', () => cli.stderr.text);
    const ready = JSON.parse(cli.stdout.text) as { uri: string; export: string; tls: string; paths: number };
    expect(ready).toMatchObject({ export: 'vol', tls: 'off', paths: 1 });
    expect(ready.uri).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/vol$/);
    await run('qemu-io', ['-f', 'raw', ready.uri, '-c', 'write -P 0x3c 4k 4k']);
    const info = JSON.parse(await run('nbdinfo', ['--json', ready.uri])) as { exports: { 'export-size': number }[] };
    expect(info.exports[0]!['export-size']).toBe(8192 * 512);
    expect(env.target.connections().length).toBeGreaterThan(0);
    cli.stop();
    expect(await cli.done).toBe(0);
    await waitFor(() => env.target.connections().length === 0, 5000, 'the controller closed');
    const ctrl = await env.connect();
    expect((await (await ctrl.namespace(1)).read(8, 8)).equals(Buffer.alloc(4096, 0x3c))).toBe(true);
  });

  it('serves a read-only export on a Unix socket', async () => {
    await env.start({ ns: { blocks: 8192 } });
    const d = mkdtempSync(join(tmpdir(), 'nvmeof-nbd-cli-'));
    dirs.push(d);
    const sock = join(d, 'nbd.sock');
    const cli = startCli(['nbd', '-a', `127.0.0.1:${env.port.port}`, '-n', SUBNQN, '-q', HOSTNQN, '--listen', `unix:${sock}`, '--read-only']);
    await waitFor(() => cli.stdout.text.includes('\n') || cli.stderr.text.length > 0, 10_000, 'listening line', () => cli.stderr.text);
    expect(cli.stdout.text).toContain(`at nbd+unix:///${encodeURIComponent(SUBNQN)}?socket=${sock}`);
    const info = JSON.parse(await run('nbdinfo', ['--json', `nbd+unix:///?socket=${sock}`])) as { exports: Record<string, unknown>[] };
    expect(info.exports[0]).toMatchObject({ is_read_only: true, 'export-size': 8192 * 512 });
    cli.stop();
    expect(await cli.done).toBe(0);
  });

  it('as a process: prints where it listens, and SIGTERM drains and exits 0', async () => {
    await env.start({ ns: { blocks: 8192 } });
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'nbd', '-a', '127.0.0.1', '-s', String(env.port.port), '-n', SUBNQN, '-q', HOSTNQN, '--listen', 'tcp:127.0.0.1:0'], {
      cwd: join(__dirname, '..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = once(child, 'exit');
    await waitFor(() => out.includes('\n') || child.exitCode !== null, 30_000, 'the process listening', () => err);
    const uri = /at (nbd:\/\/\S+)/.exec(out)![1]!;
    const r = await run('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 0x7e 0 64k', '-c', 'read -P 0x7e 0 64k']);
    expect(r).toMatch(/read 65536\/65536/);
    child.kill('SIGTERM');
    const [code] = await exited;
    expect(code).toBe(0);
    expect(err).toContain('finishing requests in flight');
  });
});
