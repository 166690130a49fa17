/**
 * nvmeof serve against the Linux kernel target, as a process: controllers attached through the config file and the
 * API, namespaces read, block I/O, an ANA change and a namespace added in the guest seen on the event stream, replay
 * with Last-Event-ID, /metrics through promtool, a persistent discovery controller attaching and detaching what its
 * log lists, detach, reload with SIGHUP, stop with SIGTERM.
 */
import { Buffer } from 'node:buffer';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel } from './env.js';
import { missingClients } from '../../test/helpers/clients.js';
import { waitFor } from '../../test/helpers/wait.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

interface Frame {
  id: number | undefined;
  event: string;
  data: Json;
}

function request(sock: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Json; raw: Buffer }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const req = http.request({ socketPath: sock, method, path, headers: { ...headers, ...(payload ? { 'content-length': payload.length } : {}) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(parts);
        let json: Json;
        try {
          json = raw.length && res.headers['content-type'] === 'application/json' ? JSON.parse(raw.toString()) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, json, raw });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Poll the daemon until `cond` (which asks it something) holds; throws after 30 s naming `what`. */
async function waitForAnswer(cond: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after 30000 ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An open event stream collecting frames. */
function stream(sock: string, lastEventId?: number): { frames: Frame[]; close: () => void; opened: Promise<void> } {
  const frames: Frame[] = [];
  let buf = '';
  let req: http.ClientRequest;
  const opened = new Promise<void>((resolve, reject) => {
    req = http.get({ socketPath: sock, path: '/v1/events', headers: lastEventId === undefined ? {} : { 'last-event-id': String(lastEventId) } }, (res) => {
      resolve();
      res.on('data', (c: Buffer) => {
        buf += c.toString();
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const f: Frame = { id: undefined, event: 'message', data: undefined };
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) f.id = Number(line.slice(4));
            else if (line.startsWith('event: ')) f.event = line.slice(7);
            else if (line.startsWith('data: ')) f.data = JSON.parse(line.slice(6));
          }
          if (f.data !== undefined) frames.push(f);
        }
      });
    });
    req.on('error', reject);
  });
  return { frames, close: () => req.destroy(), opened };
}

describeKernel('kernel nvmet: nvmeof serve', (target) => {
  const { nvme1, nvme2 } = target.ports;
  const group = target.anaGroups.find((g) => g.nsids.includes(1))!;
  const restore: (() => Promise<unknown>)[] = [];
  let dir: string;
  let sock: string;
  let cfg: string;
  let child: ChildProcess;
  let out = '';
  let err = '';
  let exit: Promise<unknown[]>;
  const openCtrl = { traddr: nvme1.host, trsvcid: nvme1.port, subnqn: target.openNqn, ioQueues: 1, connectTimeout: 30_000 };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nvmeof-serve-kernel-'));
    sock = join(dir, 'api.sock');
    cfg = join(dir, 'serve.json');
    writeFileSync(cfg, JSON.stringify({ controllers: [openCtrl] }));
    child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', cfg, '--listen', `unix:${sock}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    exit = once(child, 'exit');
    await waitFor(() => out.includes('nvmeof serve: ready'), 60_000, 'the daemon ready', () => err);
  });

  afterAll(async () => {
    for (const r of restore.splice(0).reverse()) await r().catch(() => {});
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('holds the config file controller; attaches another through the API; reads namespaces; block I/O', async () => {
    expect(out).toContain(`nvmeof serve: listening on unix:${sock}`);
    const list = await request(sock, 'GET', '/v1/controllers');
    expect(list.json).toEqual([expect.objectContaining({ id: 'c1', state: 'live', origin: 'config', subnqn: target.openNqn, trsvcid: String(nvme1.port) })]);
    const r = await request(sock, 'POST', '/v1/controllers', { traddr: nvme1.host, trsvcid: nvme1.port, subnqn: target.multipathNqn, ioQueues: 1, kato: 2000, connectTimeout: 30_000 });
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({ id: 'c2', state: 'live', subnqn: target.multipathNqn });
    expect(r.json.anaGroups).toContainEqual({ group: group.grpid, state: group.initialState.nvme1, nsids: [1] });
    const nss = await request(sock, 'GET', '/v1/controllers/c2/namespaces');
    expect(nss.json.map((n: Json) => [n.nsid, n.anaState, n.anaGroup])).toEqual([
      [1, group.initialState.nvme1, group.grpid],
      [2, target.anaGroups.find((g) => g.nsids.includes(2))!.initialState.nvme1, target.anaGroups.find((g) => g.nsids.includes(2))!.grpid],
    ]);
    expect(nss.json[0].blockSize).toBeGreaterThanOrEqual(512);
    expect(nss.json[0].blocks).toBeGreaterThan(0);

    const bs = (await request(sock, 'GET', '/v1/controllers/c1/namespaces')).json[0].blockSize as number;
    const data = randomBytes(bs * 8);
    expect((await request(sock, 'PUT', '/v1/controllers/c1/namespaces/1/blocks?lba=64', data, { 'content-type': 'application/octet-stream' })).status).toBe(204);
    const back = await request(sock, 'GET', '/v1/controllers/c1/namespaces/1/blocks?lba=64&count=8');
    expect(back.status).toBe(200);
    expect(back.raw.equals(data)).toBe(true);
    expect((await request(sock, 'GET', '/v1/health')).json).toMatchObject({ status: 'ok', controllers: 2, paths: { live: 2, total: 2 } });
  });

  it('an ANA change and a namespace added in the guest arrive on the event stream; Last-Event-ID replays them', async () => {
    const s = stream(sock);
    await s.opened;
    restore.push(() => target.nvmetCtl('ana', nvme1.portid, group.grpid, group.initialState.nvme1));
    await target.nvmetCtl('ana', nvme1.portid, group.grpid, 'inaccessible');
    await waitFor(() => s.frames.some((f) => f.event === 'ana-change' && f.data.controller === 'c2'), 20_000, 'ana-change on the stream', () => JSON.stringify(s.frames.map((f) => f.event)));
    // nvmet notifies every controller on the port; the one of the multipath subsystem reports the change.
    const ana = s.frames.find((f) => f.event === 'ana-change' && f.data.controller === 'c2')!;
    expect(ana.data).toMatchObject({ controller: 'c2', subnqn: target.multipathNqn, reason: 'aen' });
    expect(ana.data.changed).toContainEqual({ nsid: 1, group: group.grpid, state: 'inaccessible', previous: group.initialState.nvme1 });
    const sub = (await request(sock, 'GET', '/v1/subsystems')).json.find((x: Json) => x.subnqn === target.multipathNqn);
    expect(sub.namespaces.find((n: Json) => n.nsid === 1).paths).toEqual([expect.objectContaining({ controller: 'c2', anaState: 'inaccessible', current: false })]);
    await target.nvmetCtl('ana', nvme1.portid, group.grpid, group.initialState.nvme1);
    await waitFor(
      () => s.frames.some((f) => f.event === 'ana-change' && f.data.controller === 'c2' && f.data.changed.some((c: Json) => c.nsid === 1 && c.state === group.initialState.nvme1)),
      20_000,
      'ana-change back',
    );

    const NEW = 9;
    restore.push(() => target.nvmetCtl('ns-del', target.openNqn, NEW));
    await target.nvmetCtl('ns-add', target.openNqn, NEW, '8M');
    await waitFor(() => s.frames.some((f) => f.event === 'namespace-changed' && f.data.controller === 'c1'), 20_000, 'namespace-changed on the stream');
    expect(s.frames.find((f) => f.event === 'namespace-changed')!.data).toMatchObject({ controller: 'c1', subnqn: target.openNqn, added: [NEW], removed: [] });
    const nss = await request(sock, 'GET', '/v1/controllers/c1/namespaces');
    expect(nss.json.find((n: Json) => n.nsid === NEW)).toMatchObject({ nsid: NEW, sizeBytes: 8 * 1024 * 1024 });
    const ids = s.frames.map((f) => f.id!);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]!);
    s.close();

    // A client that saw nothing since just before the ANA change gets exactly what it missed, in order.
    const replay = stream(sock, ana.id! - 1);
    await waitFor(() => replay.frames.length >= ids.filter((i) => i >= ana.id!).length, 10_000, 'replay');
    expect(replay.frames.slice(0, ids.filter((i) => i >= ana.id!).length).map((f) => f.id)).toEqual(ids.filter((i) => i >= ana.id!));
    expect(replay.frames.some((f) => f.event === 'gap')).toBe(false);
    replay.close();
    await target.nvmetCtl('ns-del', target.openNqn, NEW);
  });

  it.skipIf(!!missingClients('promtool'))('/metrics passes promtool check metrics with the kernel controllers in it', async () => {
    // c2 runs keep-alive every KATO/2 (1 s): wait for its first round trip.
    await waitForAnswer(async () => (await request(sock, 'GET', '/v1/controllers/c2')).json.keepAliveRttMs !== null, 'a keep-alive round trip on c2');
    const m = await request(sock, 'GET', '/metrics');
    const text = m.raw.toString();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect({ status: check.status, out: check.stdout + check.stderr }).toEqual({ status: 0, out: '' });
    expect(text).toContain(`nvmeof_controller_state{id="c2",subnqn="${target.multipathNqn}",traddr="${nvme1.host}",trsvcid="${nvme1.port}",state="live"} 1`);
    expect(text).toContain(`nvmeof_ana_state{id="c2",subnqn="${target.multipathNqn}",traddr="${nvme1.host}",trsvcid="${nvme1.port}",nsid="1",state="${group.initialState.nvme1}"} 1`);
    expect(text).toMatch(/^nvmeof_async_events_total\{id="c2",.*type="ana-change"\} [2-9]/m);
    expect(text).toMatch(/^nvmeof_io_requests_total\{id="c1",.*op="read"\} 1$/m);
    expect(text).toMatch(/^nvmeof_keep_alive_rtt_seconds\{id="c2",.*\} \d/m);
  });

  it('a persistent discovery controller with connect: true attaches a subsystem linked in the guest and detaches it when unlinked', async (ctx) => {
    target.skipUnlessReachable(ctx);
    const r = await request(sock, 'POST', '/v1/discovery', {
      traddr: nvme2.host,
      trsvcid: nvme2.port,
      kato: 10_000,
      connectTimeout: 30_000,
      connect: true,
      include: [{ subnqn: target.openNqn }],
      controller: { ioQueues: 1 },
    });
    expect(r.status).toBe(201);
    const did = r.json.id as string;
    expect(r.json.attached).toEqual([]);
    restore.push(() => target.nvmetCtl('unlink', nvme2.portid, target.openNqn));
    await target.nvmetCtl('link', nvme2.portid, target.openNqn);
    let attached: Json;
    await waitForAnswer(async () => {
      const list = (await request(sock, 'GET', '/v1/controllers')).json as Json[];
      attached = list.find((c) => c.origin === `discovery:${did}`);
      return attached?.state === 'live';
    }, 'the linked subsystem attached');
    expect(attached).toMatchObject({ subnqn: target.openNqn, traddr: target.guestAddr, trsvcid: String(nvme2.guestPort), state: 'live' });
    const d = (await request(sock, 'GET', `/v1/discovery/${did}`)).json;
    expect(d.log.entries.filter((e: Json) => e.subtype === 'nvm').map((e: Json) => e.subnqn).sort()).toEqual([target.multipathNqn, target.openNqn].sort());
    await target.nvmetCtl('unlink', nvme2.portid, target.openNqn);
    await waitForAnswer(async () => !((await request(sock, 'GET', '/v1/controllers')).json as Json[]).some((c) => c.id === attached.id), 'the unlinked subsystem detached');
    expect(((await request(sock, 'GET', '/v1/controllers')).json as Json[]).map((c) => c.id)).not.toContain(attached.id);
    expect((await request(sock, 'DELETE', `/v1/discovery/${did}`)).status).toBe(204);
  });

  it('bad requests and unknown ids; detach; SIGHUP applies the difference; SIGTERM drains and exits', async () => {
    const bad = await request(sock, 'POST', '/v1/controllers', { traddr: nvme1.host, subnqn: target.openNqn, ioQueues: 'many' });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('NVMEOF_ERR_INVALID_ARGUMENT');
    expect((await request(sock, 'GET', '/v1/controllers/c42')).status).toBe(404);
    const refused = await request(sock, 'POST', '/v1/controllers', { traddr: nvme1.host, trsvcid: nvme1.port, subnqn: target.restrictedNqn, connectTimeout: 30_000 });
    expect(refused.status).toBe(502);
    expect(refused.json.error.message).toMatch(/not allowed|host/i);

    expect((await request(sock, 'DELETE', '/v1/controllers/c2')).status).toBe(204);
    expect((await request(sock, 'GET', '/v1/controllers/c2')).status).toBe(404);

    const mp2 = { traddr: nvme2.host, trsvcid: nvme2.port, subnqn: target.multipathNqn, ioQueues: 1, connectTimeout: 30_000 };
    writeFileSync(cfg, JSON.stringify({ controllers: [mp2] }));
    child.kill('SIGHUP');
    await waitFor(() => err.includes('config reloaded'), 60_000, 'reload', () => err);
    expect(err).toMatch(/config reloaded: added c\d+; removed c1; kept -/);
    const list = (await request(sock, 'GET', '/v1/controllers')).json as Json[];
    expect(list.map((c) => [c.origin, c.subnqn, c.trsvcid, c.state])).toEqual([['config', target.multipathNqn, String(nvme2.port), 'live']]);

    child.kill('SIGTERM');
    const [code, signal] = await exit;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(existsSync(sock)).toBe(false);
    expect(err).toMatch(/stopped/);
  });
});
