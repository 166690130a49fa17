/**
 * nvmeof serve against the embedded target, over real HTTP: every endpoint, bad requests, the token, unknown ids, the
 * management queue bound, a client that goes away, SSE live delivery, replay and gap, and /metrics through promtool.
 */
import { Buffer } from 'node:buffer';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { NvmeTarget, type TargetPort, type TargetSubsystem } from '../src/target/index.js';
import { ServeDaemon, type DaemonOptions } from '../src/serve/daemon.js';
import { ApiServer, parseListen } from '../src/serve/http.js';
import { parseConfig } from '../src/serve/validate.js';
import { missingClients } from './helpers/clients.js';
import { waitFor } from './helpers/wait.js';

/** Parsed JSON answers, checked by the assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const SUBNQN = 'nqn.2024-01.io.nvmeof.test:serve';
const SUBNQN2 = 'nqn.2024-01.io.nvmeof.test:serve2';
const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:7d1c9a52-3f0e-4b8d-a6c1-2e9f0b3d4c5a';
const HOSTNQN2 = 'nqn.2014-08.org.nvmexpress:uuid:1a2b3c4d-5e6f-4a0b-8c1d-2e3f4a5b6c7d';
const TOKEN = 'test-token-0123456789abcdef';

interface Env {
  target: NvmeTarget;
  port: TargetPort;
  port2: TargetPort;
  subsys: TargetSubsystem;
  daemon: ServeDaemon;
  api: ApiServer;
  base: string;
  dir: string;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(o: DaemonOptions = {}): Promise<Env> {
  const target = new NvmeTarget();
  cleanups.push(() => target.close());
  const port = await target.listen({ host: '127.0.0.1', port: 0, ana: { 1: 'optimized' } });
  const port2 = await target.listen({ host: '127.0.0.1', port: 0, ana: { 1: 'non-optimized' } });
  const subsys = target.addSubsystem({ nqn: SUBNQN, ana: true });
  subsys.addNamespace({ blocks: 8192 });
  const daemon = new ServeDaemon(o);
  const api = new ApiServer(daemon, { token: TOKEN });
  cleanups.push(async () => {
    await api.drain(1000);
    await daemon.close();
  });
  const where = await api.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const dir = mkdtempSync(join(tmpdir(), 'nvmeof-serve-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return { target, port, port2, subsys, daemon, api, base: `http://${where.slice(4)}`, dir };
}

const auth = { authorization: `Bearer ${TOKEN}` };

async function call(env: Env, method: string, path: string, body?: unknown, headers: Record<string, string> = auth): Promise<{ status: number; json: Json; text: string }> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
  const r = await fetch(env.base + path, init);
  const text = await r.text();
  let json: Json;
  try {
    json = text.length ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: r.status, json, text };
}

function ctrlBody(env: Env, extra: Record<string, unknown> = {}) {
  return { traddr: '127.0.0.1', trsvcid: env.port.port, subnqn: SUBNQN, hostnqn: HOSTNQN, ioQueues: 2, reconnectDelay: 50, ...extra };
}

async function attach(env: Env, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await call(env, 'POST', '/v1/controllers', ctrlBody(env, extra));
  expect(r.status).toBe(201);
  expect(r.json.state).toBe('live');
  return r.json.id as string;
}

/** Read an SSE stream until `until` holds for the frames parsed so far; returns them. */
async function sse(env: Env, headers: Record<string, string>, until: (frames: SseFrame[]) => boolean, path = '/v1/events'): Promise<SseFrame[]> {
  const ac = new AbortController();
  const r = await fetch(env.base + path, { headers: { ...auth, ...headers }, signal: ac.signal });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toBe('text/event-stream');
  const frames: SseFrame[] = [];
  let buf = '';
  const dec = new TextDecoder();
  const reader = r.body!.getReader();
  try {
    while (!until(frames)) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const f: SseFrame = { id: undefined, event: 'message', data: undefined };
        for (const line of block.split('\n')) {
          if (line.startsWith('id: ')) f.id = Number(line.slice(4));
          else if (line.startsWith('event: ')) f.event = line.slice(7);
          else if (line.startsWith('data: ')) f.data = JSON.parse(line.slice(6));
        }
        if (f.data !== undefined) frames.push(f);
      }
    }
  } finally {
    ac.abort();
  }
  return frames;
}

interface SseFrame {
  id: number | undefined;
  event: string;
  data: Json;
}

describe('nvmeof serve: controllers', () => {
  it('health, attach, list, get, namespaces, block I/O, subsystems, reconnect, delete', async () => {
    const env = await setup();
    expect((await call(env, 'GET', '/v1/health')).json).toEqual({ status: 'ok', controllers: 0, paths: { live: 0, total: 0 }, uptimeSeconds: expect.any(Number) });
    const id = await attach(env);
    const one = (await call(env, 'GET', `/v1/controllers/${id}`)).json;
    expect(one).toMatchObject({ id, state: 'live', traddr: '127.0.0.1', trsvcid: String(env.port.port), subnqn: SUBNQN, hostnqn: HOSTNQN, errors: 0, reconnects: 0 });
    expect(one.cntlid).toBe(env.target.controllers(SUBNQN)[0]!.cntlid);
    expect(one.anaGroups).toEqual([{ group: 1, state: 'optimized', nsids: [1] }]);
    expect((await call(env, 'GET', '/v1/controllers')).json.map((c: Json) => c.id)).toEqual([id]);
    expect((await call(env, 'GET', '/v1/health')).json).toMatchObject({ status: 'ok', controllers: 1, paths: { live: 1, total: 1 } });

    const nss = (await call(env, 'GET', `/v1/controllers/${id}/namespaces`)).json;
    expect(nss).toEqual([expect.objectContaining({ nsid: 1, blockSize: 512, blocks: 8192, anaState: 'optimized', anaGroup: 1 })]);
    expect(nss[0].nguid).toMatch(/^[0-9a-f]{32}$/);

    // Block I/O: PUT then GET the same bytes, and the target holds them.
    const data = randomBytes(4096);
    const put = await fetch(`${env.base}/v1/controllers/${id}/namespaces/1/blocks?lba=16`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: data });
    expect(put.status).toBe(204);
    const get = await fetch(`${env.base}/v1/controllers/${id}/namespaces/1/blocks?lba=16&count=8`, { headers: auth });
    expect(get.status).toBe(200);
    expect(get.headers.get('content-type')).toBe('application/octet-stream');
    expect(Buffer.from(await get.arrayBuffer()).equals(data)).toBe(true);
    const other = await fetch(`${env.base}/v1/controllers/${id}/namespaces/1/blocks?lba=0x10&count=1`, { headers: auth });
    expect(Buffer.from(await other.arrayBuffer()).equals(data.subarray(0, 512))).toBe(true);

    // A second path to the same subsystem: /v1/subsystems shows the namespace through both, the optimized one current.
    const id2 = await attach(env, { trsvcid: String(env.port2.port), hostnqn: HOSTNQN2 });
    const subs = (await call(env, 'GET', '/v1/subsystems')).json;
    expect(subs).toHaveLength(1);
    expect(subs[0].subnqn).toBe(SUBNQN);
    expect(subs[0].namespaces).toEqual([
      {
        nsid: 1,
        paths: [
          { controller: id, traddr: '127.0.0.1', trsvcid: String(env.port.port), state: 'live', anaState: 'optimized', current: true },
          { controller: id2, traddr: '127.0.0.1', trsvcid: String(env.port2.port), state: 'live', anaState: 'non-optimized', current: false },
        ],
      },
    ]);

    // Reconnect: the controller is torn down and comes back with a new association.
    const before = env.target.controllers(SUBNQN).length;
    const rc = await call(env, 'POST', `/v1/controllers/${id}/reconnect`);
    expect(rc.status).toBe(202);
    await waitFor(() => env.daemon.controller(id).state === 'live' && env.daemon.controller(id).health().reconnects === 1, 5000, 'reconnected');
    expect(env.target.controllers(SUBNQN)).toHaveLength(before);
    expect((await call(env, 'GET', `/v1/controllers/${id}`)).json).toMatchObject({ state: 'live', reconnects: 1 });

    // Delete: 204, then 404; the target sees the association go.
    expect((await call(env, 'DELETE', `/v1/controllers/${id2}`)).status).toBe(204);
    expect((await call(env, 'GET', `/v1/controllers/${id2}`)).status).toBe(404);
    await waitFor(() => env.target.controllers(SUBNQN).length === 1, 5000, 'association closed');
  });

  it('a controller that cannot connect is not kept, and the error says why', async () => {
    const env = await setup();
    const wrongNqn = await call(env, 'POST', '/v1/controllers', ctrlBody(env, { subnqn: 'nqn.2024-01.io.nvmeof.test:nothing' }));
    expect(wrongNqn.status).toBe(502);
    expect(wrongNqn.json.error.code).toBe('NVMEOF_ERR_STATUS');
    expect(wrongNqn.json.error.message).toMatch(/nothing/);
    expect((await call(env, 'GET', '/v1/controllers')).json).toEqual([]);
  });

  it('bad requests get 400 with a library code, unknown ids 404, wrong methods 405; no stack traces', async () => {
    const env = await setup();
    const id = await attach(env);
    const cases: [string, string, unknown, number, string, RegExp][] = [
      ['POST', '/v1/controllers', '{"traddr":', 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /not valid JSON/],
      ['POST', '/v1/controllers', [1], 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /JSON object/],
      ['POST', '/v1/controllers', { subnqn: SUBNQN }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /traddr is required/],
      ['POST', '/v1/controllers', { ...ctrlBody(env), kato: 'x' }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /kato must be an integer/],
      ['POST', '/v1/controllers', { ...ctrlBody(env), trsvcid: 70000 }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /trsvcid/],
      ['POST', '/v1/controllers', { ...ctrlBody(env), colour: 'red' }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /unknown field "colour"/],
      ['POST', '/v1/controllers', { ...ctrlBody(env), subnqn: `nqn.2024-01.io.x:${'y'.repeat(300)}` }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /subnqn/],
      ['POST', '/v1/controllers', { ...ctrlBody(env), dhchap: 'DHHC-1:00:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0:' }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /dhchap/],
      ['POST', '/v1/controllers', { ...ctrlBody(env), dhchap: { secret: 'DHHC-1:01:bm90LWEta2V5:' } }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /dhchap/],
      ['POST', '/v1/controllers', { ...ctrlBody(env), tls: { key: 'NVMeTLSkey-1:01:x:' } }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /tls.key/],
      ['POST', '/v1/controllers', { ...ctrlBody(env), tls: { key: 'NVMeTLSkey-1:01:x:', colour: 1 } }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /tls: unknown field/],
      ['POST', '/v1/discovery', { traddr: '127.0.0.1', include: [{}] }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /at least one/],
      ['POST', '/v1/multipath', { subnqn: SUBNQN, nsid: 1, paths: [] }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /paths/],
      ['POST', '/v1/multipath', { subnqn: SUBNQN, nsid: 1, paths: [{ traddr: '127.0.0.1' }], policy: 'random' }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /policy/],
      ['GET', `/v1/controllers/${id}/namespaces/1/blocks?count=1`, undefined, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /lba/],
      ['GET', `/v1/controllers/${id}/namespaces/1/blocks?lba=0`, undefined, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /count/],
      ['GET', `/v1/controllers/${id}/namespaces/1/blocks?lba=-1&count=1`, undefined, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /lba/],
      ['GET', `/v1/controllers/${id}/namespaces/1/blocks?lba=8190&count=4`, undefined, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /past the end/],
      ['GET', `/v1/controllers/${id}/namespaces/1/blocks?lba=0&count=4096`, undefined, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /limit of one request/],
      ['GET', `/v1/controllers/${id}/namespaces/0/blocks?lba=0&count=1`, undefined, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /nsid/],
      ['PUT', `/v1/controllers/${id}/namespaces/1/blocks?lba=0`, 'abc', 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /multiple of the 512-byte block size/],
      ['PUT', `/v1/controllers/${id}/namespaces/1/blocks?lba=0&count=2`, 'x'.repeat(512), 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /count 2/],
      ['POST', `/v1/controllers/${id}/namespaces/1/reservations/register`, { action: 'register', newKey: -1 }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /newKey/],
      ['POST', `/v1/controllers/${id}/namespaces/1/reservations/acquire`, { action: 'acquire', type: 'nope', key: 1 }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /type/],
      ['POST', `/v1/controllers/${id}/reconnect`, { now: true }, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /unknown field/],
      ['GET', '/v1/events', undefined, 400, 'NVMEOF_ERR_INVALID_ARGUMENT', /Last-Event-ID/],
      ['GET', '/v1/controllers/c99', undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /c99/],
      ['DELETE', '/v1/controllers/c99', undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /c99/],
      ['POST', '/v1/controllers/c99/reconnect', undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /c99/],
      ['GET', '/v1/controllers/c99/namespaces', undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /c99/],
      ['GET', '/v1/controllers/c99/namespaces/1/blocks?lba=0&count=1', undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /c99/],
      ['GET', `/v1/controllers/${id}/namespaces/7/blocks?lba=0&count=1`, undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /namespace 7/],
      ['GET', `/v1/controllers/${id}/namespaces/7/reservations`, undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /namespace 7/],
      ['GET', '/v1/discovery/d9', undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /d9/],
      ['DELETE', '/v1/discovery/d9', undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /d9/],
      ['GET', '/v1/multipath/m9', undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /m9/],
      ['DELETE', '/v1/multipath/m9', undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /m9/],
      ['GET', '/v2/nothing', undefined, 404, 'NVMEOF_ERR_NOT_FOUND', /no endpoint/],
      ['PATCH', '/v1/controllers', {}, 405, 'NVMEOF_ERR_INVALID_ARGUMENT', /PATCH is not allowed/],
    ];
    for (const [method, path, body, status, code, msg] of cases) {
      const headers: Record<string, string> = path === '/v1/events' ? { ...auth, 'last-event-id': 'abc' } : auth;
      const r = await call(env, method, path, body, headers);
      expect({ method, path, status: r.status, code: r.json?.error?.code }).toEqual({ method, path, status, code });
      expect(r.json.error.message).toMatch(msg);
      expect(Object.keys(r.json)).toEqual(['error']);
      expect(r.text).not.toMatch(/\n\s+at |\.ts:\d+/);
      // A secret sent in a body never comes back.
      expect(r.text).not.toContain('c2VjcmV0');
    }
    // Errors are counted by code on /metrics.
    const metrics = (await call(env, 'GET', '/metrics')).text;
    expect(metrics).toMatch(/^nvmeof_api_errors_total\{code="NVMEOF_ERR_NOT_FOUND"\} 1[0-9]$/m);
    // The controller is still fine after all that.
    expect((await call(env, 'GET', `/v1/controllers/${id}`)).json.state).toBe('live');
  });

  it('request targets a client can send: bad percent-encoding is a 400, never a 500; no host in the path; 405 lists the methods', async () => {
    const env = await setup();
    const logged: string[] = [];
    const log = env.daemon.log.bind(env.daemon);
    env.daemon.log = (m: string) => {
      logged.push(m);
      log(m);
    };
    const url = new URL(env.base);
    const raw = (method: string, path: string) =>
      new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Json }>((resolve, reject) => {
        const req = http.request({ host: url.hostname, port: url.port, method, path, headers: auth }, (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : undefined }));
        });
        req.on('error', reject);
        req.end();
      });
    const cases: [string, string, number, RegExp | null][] = [
      // decodeURIComponent threw a URIError here: a 500 internal error and a log line.
      ['GET', '/v1/controllers/%E0%A4%A', 400, /malformed percent-encoding: "%E0%A4%A"/],
      ['GET', '/v1/controllers/c%zz/namespaces', 400, /malformed percent-encoding/],
      ['DELETE', '/v1/discovery/%', 400, /malformed percent-encoding/],
      ['GET', '/v1/controllers/%63%39%39', 404, /c99/],
      // A target starting with // was read as a URL with a host: this one reached /v1/health.
      ['GET', '//elsewhere/v1/health', 404, /no endpoint \/\/elsewhere\/v1\/health/],
      ['GET', `http://${url.host}/v1/health`, 200, null],
      ['GET', '/v1/controllers/', 404, /no endpoint/],
      ['GET', '/v1/health/', 404, /no endpoint/],
      ['GET', '/v1/../v1/health', 404, /no endpoint/],
      ['OPTIONS', '*', 400, /must be a path/],
    ];
    for (const [method, path, status, message] of cases) {
      const r = await raw(method, path);
      expect({ path, status: r.status }).toEqual({ path, status });
      if (message) expect(r.body.error.message).toMatch(message);
    }
    const head = await raw('HEAD', '/v1/health');
    expect(head.status).toBe(405);
    expect(head.headers.allow).toBe('GET');
    expect((await raw('PUT', '/v1/controllers/c1')).headers.allow).toBe('GET, DELETE');
    expect(logged.filter((m) => /internal error/.test(m))).toEqual([]);
    expect((await call(env, 'GET', '/metrics')).text).not.toMatch(/NVMEOF_ERR_INTERNAL/);
  });

  it('TCP needs the bearer token: 401 without it or with a wrong one; a TCP listener is refused without a token', async () => {
    const env = await setup();
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: `Basic ${TOKEN}` }]) {
      for (const path of ['/v1/health', '/metrics', '/v1/events', '/v1/controllers']) {
        const r = await call(env, 'GET', path, undefined, headers);
        expect(r.status).toBe(401);
        expect(r.json.error.code).toBe('NVMEOF_ERR_UNAUTHORIZED');
        expect(r.text).not.toContain(TOKEN);
      }
    }
    expect((await call(env, 'POST', '/v1/controllers', ctrlBody(env), {})).status).toBe(401);
    expect(env.daemon.controllers.size).toBe(0);
    expect((await call(env, 'GET', '/v1/health')).status).toBe(200);
    const open = new ApiServer(env.daemon);
    await expect(open.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 })).rejects.toThrow(/token/);
  });

  it('a Unix socket is created with mode 0600 and needs no token', async () => {
    const env = await setup();
    const path = join(env.dir, 'api.sock');
    const api = new ApiServer(env.daemon);
    cleanups.push(() => api.drain(100));
    expect(await api.listen(parseListen(`unix:${path}`))).toBe(`unix:${path}`);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ socketPath: path, path: '/v1/health' }, (res) => {
          let s = '';
          res.on('data', (c) => (s += c));
          res.on('end', () => resolve(s));
        })
        .on('error', reject);
    });
    expect(JSON.parse(body).status).toBe('ok');
    // A second daemon cannot take over a socket that is in use.
    await expect(new ApiServer(env.daemon).listen({ kind: 'unix', path })).rejects.toThrow(/another process listens/);
  });

  it('management operations on one controller queue in order; a full queue answers 429; I/O does not queue', async () => {
    const env = await setup({ queueLimit: 2 });
    const id = await attach(env);
    const data = randomBytes(512);
    expect((await fetch(`${env.base}/v1/controllers/${id}/namespaces/1/blocks?lba=3`, { method: 'PUT', headers: auth, body: data })).status).toBe(204);
    // Hold Reservation Report (a queued operation) at the target: it stays first in the queue.
    const hold = env.target.inject({ action: 'drop', match: { kind: 'io', opcode: 0x0e } });
    const first = call(env, 'GET', `/v1/controllers/${id}/namespaces/1/reservations`);
    await waitFor(() => hold.hits >= 1, 5000, 'report held');
    const second = call(env, 'POST', `/v1/controllers/${id}/reconnect`);
    await waitFor(() => env.daemon.controller(id).queue.pending === 2, 5000, 'second queued');
    const third = await call(env, 'POST', `/v1/controllers/${id}/reconnect`);
    expect(third.status).toBe(429);
    expect(third.json.error.code).toBe('NVMEOF_ERR_BUSY');
    // Block I/O does not wait behind the queue.
    const read = await fetch(`${env.base}/v1/controllers/${id}/namespaces/1/blocks?lba=3&count=1`, { headers: auth });
    expect(read.status).toBe(200);
    expect(Buffer.from(await read.arrayBuffer()).equals(data)).toBe(true);
    // The reconnect queued behind the held command has not run: still the first association.
    expect(env.daemon.controller(id).health().reconnects).toBe(0);
    hold.remove();
    // The dropped command never completes; tearing the association down fails it, and then the reconnect runs.
    env.daemon.controller(id).path.reset('test');
    const r1 = await first;
    expect(r1.status).toBe(502);
    expect(r1.json.error.code).toBe('NVMEOF_ERR_CONNECTION_CLOSED');
    const r2 = await second;
    expect(r2.status).toBe(202);
    await waitFor(() => env.daemon.controller(id).state === 'live', 5000, 'live again');
  });

  it('a client that goes away cancels its I/O (AbortSignal through the library)', async () => {
    const env = await setup();
    const id = await attach(env);
    const drop = env.target.inject({ action: 'drop', match: { kind: 'io', opcode: 0x02 } });
    const ac = new AbortController();
    const pending = fetch(`${env.base}/v1/controllers/${id}/namespaces/1/blocks?lba=0&count=1`, { headers: auth, signal: ac.signal }).catch((e: Error) => e);
    await waitFor(() => drop.hits === 1, 5000, 'read held');
    ac.abort();
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(() => env.daemon.errorsByCode.get('NVMEOF_ERR_ABORTED') === 1, 5000, 'read aborted in the daemon');
    drop.remove();
  });
});

describe('nvmeof serve: reservations, discovery, multipath', () => {
  it('register, acquire, report, release through the API', async () => {
    const env = await setup();
    const id = await attach(env);
    const p = `/v1/controllers/${id}/namespaces/1/reservations`;
    expect((await call(env, 'POST', `${p}/register`, { action: 'register', newKey: '0x1122334455667788' })).status).toBe(204);
    expect((await call(env, 'POST', `${p}/acquire`, { action: 'acquire', type: 'write-exclusive', key: '0x1122334455667788' })).status).toBe(204);
    const rep = await call(env, 'GET', p);
    expect(rep.status).toBe(200);
    expect(rep.json).toMatchObject({ type: 'write-exclusive', extended: true, holder: { key: String(0x1122334455667788n), holdsReservation: true } });
    expect(rep.json.registrants).toHaveLength(1);
    // A conflict is the controller's answer: 502 with the NVMe status code.
    const conflict = await call(env, 'POST', `${p}/release`, { action: 'release', type: 'write-exclusive', key: '1' });
    expect(conflict.status).toBe(502);
    expect(conflict.json.error.code).toBe('NVMEOF_ERR_STATUS');
    expect((await call(env, 'POST', `${p}/release`, { action: 'release', type: 'write-exclusive', key: '0x1122334455667788' })).status).toBe(204);
    expect((await call(env, 'GET', p)).json).toMatchObject({ type: null, holder: null });
  });

  it('a persistent discovery controller with connect: true attaches what the log lists (filters applied) and detaches what disappears', async () => {
    const env = await setup();
    const r = await call(env, 'POST', '/v1/discovery', {
      traddr: '127.0.0.1',
      trsvcid: env.port.port,
      hostnqn: HOSTNQN,
      connect: true,
      reconnectDelay: 100,
      include: [{ trsvcid: env.port.port }],
      exclude: [{ subnqn: 'nqn.2024-01.io.nvmeof.test:excluded' }],
      controller: { ioQueues: 1, reconnectDelay: 50 },
    });
    expect(r.status).toBe(201);
    const did = r.json.id as string;
    expect(r.json.log.genctr).toMatch(/^\d+$/);
    // The subsystem on port 1 only (port 2 is filtered out by include).
    await waitFor(() => [...env.daemon.controllers.values()].filter((c) => c.state === 'live').length === 1, 5000, 'one attached');
    const ctrls = (await call(env, 'GET', '/v1/controllers')).json;
    expect(ctrls.map((c: Json) => [c.subnqn, c.trsvcid, c.origin])).toEqual([[SUBNQN, String(env.port.port), `discovery:${did}`]]);

    const frames = sse(env, { 'last-event-id': String(env.daemon.events.lastId) }, (f) => f.some((x) => x.event === 'discovery-change' && x.data.added.some((e: Json) => e.subnqn === SUBNQN2)));
    const genBefore = (await call(env, 'GET', `/v1/discovery/${did}`)).json.log.genctr;
    env.target.addSubsystem({ nqn: SUBNQN2 }).addNamespace({ blocks: 1024 });
    env.target.addSubsystem({ nqn: 'nqn.2024-01.io.nvmeof.test:excluded' }).addNamespace({ blocks: 1024 });
    const seen = await frames;
    expect(seen.find((x) => x.event === 'discovery-change')!.data).toMatchObject({ discovery: did, traddr: '127.0.0.1' });
    await waitFor(() => [...env.daemon.controllers.values()].some((c) => c.spec.subnqn === SUBNQN2 && c.state === 'live'), 5000, 'second attached');
    expect([...env.daemon.controllers.values()].some((c) => c.spec.subnqn.endsWith('excluded'))).toBe(false);
    const d = (await call(env, 'GET', `/v1/discovery/${did}`)).json;
    expect(BigInt(d.log.genctr)).toBeGreaterThan(BigInt(genBefore));
    expect(d.attached).toHaveLength(2);
    expect((await call(env, 'GET', `/v1/discovery/${did}/log`)).json.entries.some((e: Json) => e.subnqn === SUBNQN2)).toBe(true);

    env.target.removeSubsystem(SUBNQN2);
    await waitFor(() => ![...env.daemon.controllers.values()].some((c) => c.spec.subnqn === SUBNQN2), 5000, 'detached');
    expect((await call(env, 'DELETE', `/v1/discovery/${did}`)).status).toBe(204);
    expect(env.daemon.controllers.size).toBe(0);
    expect((await call(env, 'GET', `/v1/discovery/${did}`)).status).toBe(404);
  });

  it('multipath: open over two paths, health snapshot, path-state events, delete', async () => {
    const env = await setup();
    const r = await call(env, 'POST', '/v1/multipath', {
      subnqn: SUBNQN,
      nsid: 1,
      hostnqn: HOSTNQN,
      ioQueues: 1,
      policy: 'round-robin',
      reconnectDelay: 50,
      paths: [
        { traddr: '127.0.0.1', trsvcid: env.port.port },
        { traddr: '127.0.0.1', trsvcid: String(env.port2.port) },
      ],
    });
    expect(r.status).toBe(201);
    const mid = r.json.id as string;
    const h = (await call(env, 'GET', `/v1/multipath/${mid}`)).json;
    expect(h).toMatchObject({ subnqn: SUBNQN, nsid: 1, policy: 'round-robin', usablePaths: 2 });
    expect(h.paths.map((p: Json) => [p.state, p.anaState])).toEqual([
      ['live', 'optimized'],
      ['live', 'non-optimized'],
    ]);
    expect((await call(env, 'GET', '/v1/health')).json.paths).toEqual({ live: 2, total: 2 });
    const frames = sse(env, { 'last-event-id': String(env.daemon.events.lastId) }, (f) => f.some((x) => x.event === 'path-state' && x.data.anaState === 'inaccessible'));
    env.target.setAnaState(env.port2, 1, 'inaccessible');
    const ev = (await frames).find((x) => x.event === 'path-state')!;
    expect(ev.data).toMatchObject({ multipath: mid, subnqn: SUBNQN, nsid: 1, trsvcid: String(env.port2.port), previousAnaState: 'non-optimized', anaState: 'inaccessible', usable: false });
    expect((await call(env, 'GET', '/v1/subsystems')).json[0].namespaces[0].paths.map((p: Json) => p.anaState)).toEqual(['optimized', 'inaccessible']);
    expect((await call(env, 'DELETE', `/v1/multipath/${mid}`)).status).toBe(204);
    expect((await call(env, 'GET', `/v1/multipath/${mid}`)).status).toBe(404);
  });
});

describe('nvmeof serve: events and metrics', () => {
  it('ANA changes and namespace additions arrive on the event stream with strictly increasing ids', async () => {
    const env = await setup();
    const id = await attach(env);
    const start = env.daemon.events.lastId;
    const frames = sse(env, {}, (f) => f.some((x) => x.event === 'ana-change') && f.some((x) => x.event === 'namespace-changed'));
    // The stream is open once the subscribe has happened; events from now on are live.
    await waitFor(() => (env.api as unknown as { sse: Set<unknown> }).sse.size === 1, 5000, 'stream open');
    env.target.setAnaState(env.port, 1, 'non-optimized');
    await waitFor(() => env.daemon.events.since(start).events.some((e) => e.type === 'ana-change'), 5000, 'ANA change');
    env.subsys.addNamespace({ nsid: 2, blocks: 2048 });
    const got = await frames;
    const ana = got.find((x) => x.event === 'ana-change')!;
    expect(ana.data).toMatchObject({ controller: id, subnqn: SUBNQN, traddr: '127.0.0.1', trsvcid: String(env.port.port), reason: 'aen' });
    expect(ana.data.changed).toEqual([expect.objectContaining({ nsid: 1, state: 'non-optimized', previous: 'optimized' })]);
    const nsc = got.find((x) => x.event === 'namespace-changed')!;
    expect(nsc.data).toMatchObject({ controller: id, added: [2], removed: [] });
    const ids = got.map((x) => x.id!);
    expect(ids[0]).toBeGreaterThan(start);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]!);
    // The new namespace is readable at once.
    await waitFor(() => env.daemon.controller(id).nsids.includes(2), 5000, 'nsid 2 known');
    expect((await call(env, 'GET', `/v1/controllers/${id}/namespaces`)).json.map((n: Json) => n.nsid)).toEqual([1, 2]);
  });

  it('Last-Event-ID replays what was missed; past the ring an explicit gap event comes first', async () => {
    const env = await setup({ eventRing: 4 });
    await attach(env);
    // controller-state connecting (1) and live (2), then ANA flips: more events than the ring holds.
    for (const s of ['non-optimized', 'optimized', 'non-optimized', 'optimized'] as const) {
      const n = env.daemon.events.lastId;
      env.target.setAnaState(env.port, 1, s);
      await waitFor(() => env.daemon.events.lastId > n, 5000, `ANA ${s} event`);
    }
    const last = env.daemon.events.lastId;
    expect(last).toBeGreaterThanOrEqual(6);
    // Missed only the newest two: replayed, no gap.
    const near = await sse(env, { 'last-event-id': String(last - 2) }, (f) => f.length >= 2);
    expect(near.map((f) => f.id)).toEqual([last - 1, last]);
    expect(near.some((f) => f.event === 'gap')).toBe(false);
    // From the start: ids 2..last-4 are gone; one gap event without an id, then the four the ring holds.
    const far = await sse(env, { 'last-event-id': '1' }, (f) => f.length >= 5);
    expect(far[0]).toEqual({ id: undefined, event: 'gap', data: expect.objectContaining({ from: 2, to: last - 4, missed: last - 5, restarted: false }) });
    expect(far.slice(1).map((f) => f.id)).toEqual([last - 3, last - 2, last - 1, last]);
    // An id from an earlier run of the daemon (ahead of every id given out): a restart gap, then everything held.
    const ahead = await sse(env, { 'last-event-id': String(last + 100) }, (f) => f.length >= 5);
    expect(ahead[0]).toEqual({ id: undefined, event: 'gap', data: expect.objectContaining({ from: 1, to: last - 4, restarted: true }) });
    expect(ahead.slice(1).map((f) => f.id)).toEqual([last - 3, last - 2, last - 1, last]);
    // The query parameter works like the header (for clients that cannot set headers).
    const q = await sse(env, {}, (f) => f.length >= 1, `/v1/events?lastEventId=${last - 1}`);
    expect(q.map((f) => f.id)).toEqual([last]);
  });

  it.skipIf(!!missingClients('promtool'))('/metrics passes promtool check metrics and carries the controller, path, ANA, I/O and event families', async () => {
    const env = await setup();
    const id = await attach(env, { kato: 400 });
    await fetch(`${env.base}/v1/controllers/${id}/namespaces/1/blocks?lba=0`, { method: 'PUT', headers: auth, body: Buffer.alloc(4096, 1) });
    await (await fetch(`${env.base}/v1/controllers/${id}/namespaces/1/blocks?lba=0&count=8`, { headers: auth })).arrayBuffer();
    await waitFor(() => env.daemon.controller(id).health().keepAliveRttMs !== null, 5000, 'keep-alive RTT');
    env.target.setAnaState(env.port, 1, 'inaccessible');
    await waitFor(() => env.daemon.controller(id).aens.get('ana-change') === 1, 5000, 'AEN counted');
    const r = await fetch(`${env.base}/metrics`, { headers: auth });
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await r.text();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect({ status: check.status, out: check.stdout + check.stderr }).toEqual({ status: 0, out: '' });
    const l = `id="${id}",subnqn="${SUBNQN}",traddr="127.0.0.1",trsvcid="${env.port.port}"`;
    expect(text).toContain(`nvmeof_controller_state{${l},state="live"} 1`);
    expect(text).toContain(`nvmeof_controller_state{${l},state="reconnecting"} 0`);
    expect(text).toContain(`nvmeof_subsystem_paths{subnqn="${SUBNQN}"} 1`);
    expect(text).toContain(`nvmeof_subsystem_live_paths{subnqn="${SUBNQN}"} 1`);
    expect(text).toContain(`nvmeof_ana_state{${l},nsid="1",state="inaccessible"} 1`);
    expect(text).toContain(`nvmeof_ana_state{${l},nsid="1",state="optimized"} 0`);
    expect(text).toMatch(new RegExp(`^nvmeof_keep_alive_rtt_seconds\\{${l.replace(/[.[\]]/g, '\\$&')}\\} \\d`, 'm'));
    expect(text).toContain(`nvmeof_io_requests_total{${l},nsid="1",op="read"} 1`);
    expect(text).toContain(`nvmeof_io_bytes_total{${l},nsid="1",op="write"} 4096`);
    expect(text).toContain(`nvmeof_io_request_duration_seconds_count{${l},nsid="1",op="read"} 1`);
    expect(text).toContain(`nvmeof_io_request_duration_seconds_bucket{${l},nsid="1",op="read",le="+Inf"} 1`);
    expect(text).toContain(`nvmeof_path_commands_completed_total{${l}} 2`);
    expect(text).toContain(`nvmeof_async_events_total{${l},type="ana-change"} 1`);
    expect(text).toContain(`nvmeof_reconnects_total{${l}} 0`);
  });
});

describe('nvmeof serve: config', () => {
  it('checks every item before anything is applied, and applies only the difference', async () => {
    const env = await setup();
    expect(() => parseConfig('{')).toThrow(/not valid JSON/);
    expect(() => parseConfig('{"controllers":{}}')).toThrow(/controllers must be an array/);
    expect(() => parseConfig('{"controllers":[{"traddr":"a","subnqn":"nqn.2024-01.x:y"}],"discovery":[{"trsvcid":1}]}')).toThrow(/discovery\[0\]: traddr is required/);
    expect(() => parseConfig('{"hosts":[]}')).toThrow(/unknown field "hosts"/);
    const a = ctrlBody(env);
    const b = ctrlBody(env, { trsvcid: env.port2.port, hostnqn: HOSTNQN2 });
    const d1 = await env.daemon.applyConfig(parseConfig(JSON.stringify({ controllers: [a] })));
    expect(d1).toEqual({ added: ['c1'], removed: [], kept: [] });
    expect(env.daemon.controller('c1').state).toBe('live');
    const api = await attach(env, { hostnqn: HOSTNQN2 });
    // Same item (keys in another order) is kept; the new one added; API objects untouched.
    const reordered = Object.fromEntries(Object.entries(a).reverse());
    const d2 = await env.daemon.applyConfig(parseConfig(JSON.stringify({ controllers: [reordered, b] })));
    expect(d2).toEqual({ added: ['c3'], removed: [], kept: ['c1'] });
    const d3 = await env.daemon.applyConfig(parseConfig(JSON.stringify({ controllers: [b] })));
    expect(d3).toEqual({ added: [], removed: ['c1'], kept: ['c3'] });
    expect([...env.daemon.controllers.keys()].sort()).toEqual([api, 'c3'].sort());
  });
});

describe('nvmeof serve: --listen', () => {
  it('parses unix:PATH, tcp:HOST:PORT, tcp:[V6]:PORT and tcp:PORT (loopback); refuses the rest', () => {
    expect(parseListen('unix:/run/x.sock')).toEqual({ kind: 'unix', path: '/run/x.sock' });
    expect(parseListen('tcp:8080')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 8080 });
    expect(parseListen('tcp:0.0.0.0:9720')).toEqual({ kind: 'tcp', host: '0.0.0.0', port: 9720 });
    expect(parseListen('tcp:[::1]:9720')).toEqual({ kind: 'tcp', host: '::1', port: 9720 });
    for (const bad of ['unix:', 'tcp:', 'tcp:host:99999', 'tcp:host:', 'udp:1', '/run/x.sock', 'tcp::80']) {
      expect(() => parseListen(bad), bad).toThrow(/--listen/);
    }
  });
});

describe('serve: DH-HMAC-CHAP', () => {
  it('attaches a controller to a subsystem that requires DH-HMAC-CHAP, with the key never echoed', async () => {
    const env = await setup();
    const secret = (() => {
      const key = randomBytes(32);
      const crc = Buffer.alloc(4);
      crc.writeUInt32LE(zlibCrc32(key) >>> 0);
      return `DHHC-1:01:${Buffer.concat([key, crc]).toString('base64')}:`;
    })();
    env.subsys.setHostDhchap(HOSTNQN, { secret });
    const without = await call(env, 'POST', '/v1/controllers', ctrlBody(env));
    expect(without.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(without.json)).not.toContain(secret);
    const r = await call(env, 'POST', '/v1/controllers', ctrlBody(env, { dhchap: { secret } }));
    expect(r.status).toBe(201);
    expect(r.json.state).toBe('live');
    const list = await call(env, 'GET', '/v1/controllers');
    expect(JSON.stringify(list.json)).not.toContain(secret.slice(10, 30));
    const blocks = await fetch(`${env.base}/v1/controllers/${r.json.id}/namespaces/1/blocks?lba=0&count=1`, { headers: auth });
    expect(blocks.status).toBe(200);
    expect((await blocks.arrayBuffer()).byteLength).toBe(512);
  });
});
