/**
 * The daemon's HTTP API on node:http: routing, bearer-token check for TCP listeners, JSON bodies checked before use,
 * errors as `{ error: { code, message } }` with the library's codes (never a stack trace or a secret), Server-Sent
 * Events with replay, and the Prometheus exposition. A client that disconnects mid-request aborts its work.
 */
import { Buffer } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { ErrorCode, InvalidArgumentError, NvmeofError, isNvmeofError, type ReservationType } from '../index.js';
import type { ServeDaemon } from './daemon.js';
import { renderMetrics } from './metrics.js';
import type { ServeEvent } from './queue.js';
import { parseControllerSpec, parseDiscoverySpec, parseMultipathSpec } from './validate.js';

/** Largest JSON body accepted. */
const MAX_JSON_BODY = 1024 * 1024;
/** Bytes an SSE client may have unsent before it is cut off (it reconnects and replays from Last-Event-ID). */
const SSE_MAX_BUFFERED = 4 * 1024 * 1024;
/** A comment line this often keeps idle SSE connections open through proxies. */
const SSE_HEARTBEAT_MS = 15_000;

/** Where to listen: a Unix socket path, or TCP host and port. */
export type ListenSpec = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** Parse `unix:PATH`, `tcp:HOST:PORT`, `tcp:[V6]:PORT` or `tcp:PORT` (loopback). */
export function parseListen(s: string): ListenSpec {
  if (s.startsWith('unix:')) {
    const path = s.slice(5);
    if (path.length === 0) throw new InvalidArgumentError(`--listen ${s}: the socket path is missing`);
    return { kind: 'unix', path };
  }
  if (s.startsWith('tcp:')) {
    const rest = s.slice(4);
    let host = '127.0.0.1';
    let port: string = rest;
    const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(rest);
    if (v6) {
      host = v6[1]!;
      port = v6[2]!;
    } else if (rest.includes(':')) {
      const i = rest.lastIndexOf(':');
      host = rest.slice(0, i);
      port = rest.slice(i + 1);
    }
    const n = /^\d{1,5}$/.test(port) ? Number(port) : NaN;
    if (!Number.isInteger(n) || n > 65535 || host.length === 0) throw new InvalidArgumentError(`--listen ${s}: expected tcp:HOST:PORT or tcp:PORT (port 0..65535)`);
    return { kind: 'tcp', host, port: n };
  }
  throw new InvalidArgumentError(`--listen ${s}: expected unix:PATH or tcp:HOST:PORT`);
}

function httpStatus(code: string): number {
  switch (code) {
    case ErrorCode.INVALID_ARGUMENT:
    case ErrorCode.UNSUPPORTED:
      return 400;
    case ErrorCode.UNAUTHORIZED:
      return 401;
    case ErrorCode.NOT_FOUND:
      return 404;
    case ErrorCode.INVALID_STATE:
      return 409;
    case ErrorCode.BUSY:
      return 429;
    case ErrorCode.ABORTED:
      return 499;
    case ErrorCode.NO_PATH:
      return 503;
    case ErrorCode.TIMEOUT:
      return 504;
    case ErrorCode.INTERNAL:
      return 500;
    default:
      // The fabric or the controller failed the operation (NVMe status, connection, protocol...).
      return 502;
  }
}

class HttpError extends NvmeofError {
  constructor(
    readonly status: number,
    code: (typeof ErrorCode)[keyof typeof ErrorCode],
    message: string,
  ) {
    super(code, message);
  }
}

/** Options of {@link ApiServer}. */
export interface ApiOptions {
  /** Bearer token required on TCP listeners (read from --token-file). */
  token?: string;
}

interface Route {
  method: string;
  pattern: RegExp;
  handler: (ctx: RequestCtx, m: string[]) => Promise<void> | void;
}

interface RequestCtx {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  signal: AbortSignal;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = status === 204 ? '' : JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  res.writeHead(status, status === 204 ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw new HttpError(413, ErrorCode.INVALID_ARGUMENT, `the body (${declared} bytes) exceeds the limit of ${limit} bytes`);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) throw new HttpError(413, ErrorCode.INVALID_ARGUMENT, `the body exceeds the limit of ${limit} bytes`);
    parts.push(chunk);
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
}

async function readJson(req: http.IncomingMessage, optional = false): Promise<unknown> {
  const b = await readBody(req, MAX_JSON_BODY);
  if (b.length === 0) {
    if (optional) return {};
    throw new InvalidArgumentError('a JSON body is required');
  }
  try {
    return JSON.parse(b.toString('utf8'));
  } catch {
    throw new InvalidArgumentError('the body is not valid JSON');
  }
}

const U64_RE = /^(?:0x[0-9a-f]{1,16}|\d{1,20})$/i;

/** A 64-bit value from JSON: a safe integer, or a decimal / 0x hex string. */
function u64(v: unknown, name: string): bigint | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && U64_RE.test(v)) {
    const b = BigInt(v);
    if (b <= 0xffff_ffff_ffff_ffffn) return b;
  }
  throw new InvalidArgumentError(`${name} must be a 64-bit unsigned integer (a number, or a decimal or 0x hex string), got ${JSON.stringify(v)}`);
}

function lbaParam(url: URL): bigint {
  const s = url.searchParams.get('lba');
  if (s === null) throw new InvalidArgumentError('the lba query parameter is required');
  const v = u64(s, 'lba');
  return v!;
}

function intParam(url: URL, name: string, required: boolean): number | undefined {
  const s = url.searchParams.get(name);
  if (s === null) {
    if (required) throw new InvalidArgumentError(`the ${name} query parameter is required`);
    return undefined;
  }
  if (!/^\d{1,10}$/.test(s) || Number(s) < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${JSON.stringify(s)}`);
  return Number(s);
}

function nsidOf(s: string): number {
  const n = /^\d{1,10}$/.test(s) ? Number(s) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 0xfffffffe) throw new InvalidArgumentError(`nsid must be 1..4294967294, got ${JSON.stringify(s)}`);
  return n;
}

function object(v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidArgumentError('the body must be a JSON object');
  return v as Record<string, unknown>;
}

function onlyKeys(o: Record<string, unknown>, keys: string[]): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw new InvalidArgumentError(`unknown field ${JSON.stringify(k)} (fields: ${keys.join(', ')})`);
}

function optBool(o: Record<string, unknown>, k: string): boolean | undefined {
  const v = o[k];
  if (v !== undefined && typeof v !== 'boolean') throw new InvalidArgumentError(`${k} must be true or false`);
  return v as boolean | undefined;
}

/** Reservation bodies: the library's option names; keys as numbers or decimal/hex strings. */
function reservationParams(op: 'register' | 'acquire' | 'release', body: unknown): Record<string, unknown> {
  const o = object(body);
  const fields = {
    register: ['action', 'currentKey', 'newKey', 'ignoreExistingKey', 'persistThroughPowerLoss'],
    acquire: ['action', 'type', 'key', 'preemptKey'],
    release: ['action', 'type', 'key'],
  }[op];
  onlyKeys(o, fields);
  const out: Record<string, unknown> = {};
  if (typeof o.action !== 'string') throw new InvalidArgumentError('action is required (a string)');
  out.action = o.action;
  for (const k of ['currentKey', 'newKey', 'key', 'preemptKey']) {
    const v = u64(o[k], k);
    if (v !== undefined) out[k] = v;
  }
  if (o.type !== undefined) {
    if (typeof o.type !== 'string') throw new InvalidArgumentError('type must be a reservation type name');
    out.type = o.type as ReservationType;
  }
  for (const k of ['ignoreExistingKey', 'persistThroughPowerLoss']) {
    const v = optBool(o, k);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function sseFrame(ev: ServeEvent): string {
  return `id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify({ id: ev.id, type: ev.type, time: ev.time, ...ev.data })}\n\n`;
}

/** The HTTP face of a {@link ServeDaemon}: one request handler shared by every listener. */
export class ApiServer {
  private readonly routes: Route[] = [];
  private readonly servers: { server: http.Server; spec: ListenSpec; where: string }[] = [];
  private readonly tokenDigest: Buffer | undefined;
  private readonly sse = new Set<http.ServerResponse>();
  private inFlight = 0;
  private idle: (() => void) | undefined;

  constructor(
    readonly daemon: ServeDaemon,
    opts: ApiOptions = {},
  ) {
    this.tokenDigest = opts.token === undefined ? undefined : createHash('sha256').update(opts.token).digest();
    this.buildRoutes();
  }

  /** Where each listener listens (`unix:PATH`, `tcp:HOST:PORT` with the bound port). */
  get addresses(): string[] {
    return this.servers.map((s) => s.where);
  }

  private route(method: string, path: string, handler: Route['handler']): void {
    const pattern = new RegExp(`^${path.replace(/\{[a-z]+\}/g, '([^/]+)')}$`);
    this.routes.push({ method, pattern, handler });
  }

  private buildRoutes(): void {
    const d = this.daemon;
    this.route('GET', '/v1/health', ({ res }) => sendJson(res, 200, d.health()));
    this.route('GET', '/metrics', ({ res }) => {
      const text = renderMetrics(d);
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
    this.route('GET', '/v1/events', (ctx) => this.events(ctx));

    this.route('GET', '/v1/controllers', ({ res }) => sendJson(res, 200, [...d.controllers.values()].map((c) => c.json())));
    this.route('POST', '/v1/controllers', async ({ req, res, signal }) => {
      const spec = parseControllerSpec(await readJson(req));
      const mc = await d.createController(spec, signal);
      sendJson(res, 201, mc.json());
    });
    this.route('GET', '/v1/controllers/{id}', ({ res }, [id]) => sendJson(res, 200, d.controller(id!).json()));
    this.route('DELETE', '/v1/controllers/{id}', async ({ res }, [id]) => {
      const mc = d.controller(id!);
      await mc.queue.run(() => d.deleteController(id!));
      sendJson(res, 204, null);
    });
    this.route('POST', '/v1/controllers/{id}/reconnect', async ({ req, res, signal }, [id]) => {
      onlyKeys(object(await readJson(req, true)), []);
      const mc = d.controller(id!);
      await mc.queue.run(async () => d.reconnectController(id!), signal);
      sendJson(res, 202, mc.json());
    });
    this.route('GET', '/v1/controllers/{id}/namespaces', async ({ res, signal }, [id]) => sendJson(res, 200, await d.namespacesOf(id!, signal)));
    this.route('GET', '/v1/controllers/{id}/namespaces/{nsid}/blocks', async ({ url, res, signal }, [id, nsid]) => {
      const n = nsidOf(nsid!);
      d.controller(id!);
      const data = await d.readBlocks(id!, n, lbaParam(url), intParam(url, 'count', true)!, signal);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
      res.end(data);
    });
    this.route('PUT', '/v1/controllers/{id}/namespaces/{nsid}/blocks', async ({ req, url, res, signal }, [id, nsid]) => {
      const n = nsidOf(nsid!);
      const mc = d.controller(id!);
      const lba = lbaParam(url);
      const ns = await mc.namespace(n);
      const data = await readBody(req, d.maxIoBytes);
      const count = intParam(url, 'count', false);
      if (count !== undefined && count * ns.blockSize !== data.length) {
        throw new InvalidArgumentError(`count ${count} says ${count * ns.blockSize} bytes, the body has ${data.length}`);
      }
      await d.writeBlocks(id!, n, lba, data, signal);
      sendJson(res, 204, null);
    });
    for (const op of ['register', 'acquire', 'release'] as const) {
      this.route('POST', `/v1/controllers/{id}/namespaces/{nsid}/reservations/${op}`, async ({ req, res, signal }, [id, nsid]) => {
        const n = nsidOf(nsid!);
        d.controller(id!);
        const params = reservationParams(op, await readJson(req));
        await d.reservation(id!, n, op, params as never, signal);
        sendJson(res, 204, null);
      });
    }
    this.route('GET', '/v1/controllers/{id}/namespaces/{nsid}/reservations', async ({ url, res, signal }, [id, nsid]) => {
      const n = nsidOf(nsid!);
      d.controller(id!);
      const ext = url.searchParams.get('extended');
      if (ext !== null && ext !== 'true' && ext !== 'false') throw new InvalidArgumentError('extended must be true or false');
      const r = (await d.reservation(id!, n, 'report', ext === null ? {} : { extended: ext === 'true' }, signal))!;
      const reg = (x: NonNullable<typeof r.holder>) => ({ cntlid: x.cntlid, hostId: x.hostId, key: x.key.toString(), holdsReservation: x.holdsReservation });
      sendJson(res, 200, { generation: r.generation, type: r.type, rtype: r.rtype, ptpls: r.ptpls, extended: r.extended, holder: r.holder ? reg(r.holder) : null, registrants: r.registrants.map(reg) });
    });

    this.route('GET', '/v1/subsystems', ({ res }) => sendJson(res, 200, d.subsystems()));

    this.route('GET', '/v1/discovery', ({ res }) => sendJson(res, 200, [...d.discoveries.values()].map((x) => x.json())));
    this.route('POST', '/v1/discovery', async ({ req, res, signal }) => {
      const md = await d.createDiscovery(parseDiscoverySpec(await readJson(req)), 'api', signal);
      sendJson(res, 201, md.json());
    });
    this.route('GET', '/v1/discovery/{id}', ({ res }, [id]) => sendJson(res, 200, d.discovery(id!).json()));
    this.route('GET', '/v1/discovery/{id}/log', ({ res }, [id]) => sendJson(res, 200, d.discovery(id!).json().log));
    this.route('DELETE', '/v1/discovery/{id}', async ({ res }, [id]) => {
      const md = d.discovery(id!);
      await md.queue.run(() => d.deleteDiscovery(id!));
      sendJson(res, 204, null);
    });

    this.route('GET', '/v1/multipath', ({ res }) => sendJson(res, 200, [...d.multipaths.values()].map((x) => x.json())));
    this.route('POST', '/v1/multipath', async ({ req, res, signal }) => {
      const mm = await d.createMultipath(parseMultipathSpec(await readJson(req)), 'api', signal);
      sendJson(res, 201, mm.json());
    });
    this.route('GET', '/v1/multipath/{id}', ({ res }, [id]) => {
      const mm = d.multipath(id!);
      sendJson(res, 200, mm.m ? mm.m.health() : mm.json());
    });
    this.route('DELETE', '/v1/multipath/{id}', async ({ res }, [id]) => {
      const mm = d.multipath(id!);
      await mm.queue.run(() => d.deleteMultipath(id!));
      sendJson(res, 204, null);
    });
  }

  /** GET /v1/events: replay from Last-Event-ID (or ?lastEventId=), then live events. */
  private events({ req, res }: RequestCtx): void {
    const raw = req.headers['last-event-id'] ?? new URL(req.url ?? '/', 'http://x').searchParams.get('lastEventId') ?? undefined;
    let last: number | undefined;
    if (raw !== undefined && raw !== '') {
      const s = Array.isArray(raw) ? raw[0]! : raw;
      if (!/^\d{1,15}$/.test(s)) throw new InvalidArgumentError(`Last-Event-ID must be an event id (a non-negative integer), got ${JSON.stringify(s)}`);
      last = Number(s);
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': nvmeof serve events\nretry: 1000\n\n');
    this.sse.add(res);
    const send = (chunk: string) => {
      res.write(chunk);
      if (res.writableLength > SSE_MAX_BUFFERED) {
        // A client that does not read: cut it off; it reconnects with Last-Event-ID and replays (or learns of a gap).
        res.destroy();
      }
    };
    // Subscribe before replaying: nothing can fall between the two, and nothing is sent twice.
    let sentUpTo = last ?? this.daemon.events.lastId;
    const unsubscribe = this.daemon.events.subscribe((ev) => {
      if (ev.id <= sentUpTo) return;
      sentUpTo = ev.id;
      send(sseFrame(ev));
    });
    if (last !== undefined) {
      const r = this.daemon.events.since(last);
      if (r.gap) {
        // No id: the client's last seen id stays where it is, and every real event keeps a strictly increasing id.
        const missed = Math.max(0, r.gap.to - r.gap.from + 1);
        const message = r.gap.restarted
          ? `Last-Event-ID ${last} comes from an earlier run of the daemon: ids start again at 1${missed > 0 ? `, and events ${r.gap.from}..${r.gap.to} are no longer held` : ''}`
          : `events ${r.gap.from}..${r.gap.to} are no longer held (ring of ${this.daemon.events.capacity})`;
        const data = { from: r.gap.from, to: r.gap.to, missed, restarted: r.gap.restarted, message };
        send(`event: gap\ndata: ${JSON.stringify(data)}\n\n`);
      }
      for (const ev of r.events) send(sseFrame(ev));
      sentUpTo = r.events.at(-1)?.id ?? Math.min(last, this.daemon.events.lastId);
    }
    const beat = setInterval(() => send(': keep-alive\n\n'), SSE_HEARTBEAT_MS);
    beat.unref();
    res.on('close', () => {
      clearInterval(beat);
      unsubscribe();
      this.sse.delete(res);
    });
  }

  private authorized(req: http.IncomingMessage, tcp: boolean): boolean {
    if (!tcp) return true;
    if (!this.tokenDigest) return false;
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
    if (!m) return false;
    return timingSafeEqual(createHash('sha256').update(m[1]!).digest(), this.tokenDigest);
  }

  /** Handle one request (exposed for listeners created elsewhere). */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, tcp: boolean): Promise<void> {
    this.inFlight++;
    const ac = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) ac.abort(new NvmeofError(ErrorCode.ABORTED, 'the client went away'));
    });
    try {
      if (!this.authorized(req, tcp)) {
        res.setHeader('www-authenticate', 'Bearer');
        throw new HttpError(401, ErrorCode.UNAUTHORIZED, 'a valid bearer token is required (Authorization: Bearer TOKEN)');
      }
      const url = new URL(req.url ?? '/', 'http://localhost');
      const methodOk: Route[] = [];
      for (const r of this.routes) {
        const m = r.pattern.exec(url.pathname);
        if (!m) continue;
        if (r.method !== req.method) {
          methodOk.push(r);
          continue;
        }
        const args = m.slice(1).map((s) => decodeURIComponent(s));
        await r.handler({ req, res, url, signal: ac.signal }, args);
        return;
      }
      if (methodOk.length > 0) {
        res.setHeader('allow', [...new Set(methodOk.map((r) => r.method))].join(', '));
        throw new HttpError(405, ErrorCode.INVALID_ARGUMENT, `${req.method} is not allowed on ${url.pathname}`);
      }
      throw new HttpError(404, ErrorCode.NOT_FOUND, `no endpoint ${url.pathname}`);
    } catch (err) {
      this.fail(res, err);
    } finally {
      if (--this.inFlight === 0) this.idle?.();
    }
  }

  private fail(res: http.ServerResponse, err: unknown): void {
    let status: number;
    let code: string;
    let message: string;
    if (err instanceof HttpError) {
      status = err.status;
      code = err.code;
      message = err.message;
    } else if (isNvmeofError(err)) {
      code = err.code;
      status = httpStatus(code);
      message = err.message;
    } else {
      status = 500;
      code = ErrorCode.INTERNAL;
      message = 'internal error';
      this.daemon.log(`internal error: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.daemon.noteError(code);
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    sendJson(res, status, { error: { code, message } });
  }

  /** Start listening on `spec`; resolves with where. A Unix socket is created with mode 0600. */
  async listen(spec: ListenSpec): Promise<string> {
    const tcp = spec.kind === 'tcp';
    if (tcp && !this.tokenDigest) throw new InvalidArgumentError(`--listen tcp:${spec.host}:${spec.port} needs --token-file (a TCP listener requires a bearer token)`);
    const server = http.createServer((req, res) => void this.handle(req, res, tcp));
    server.keepAliveTimeout = 5000;
    if (spec.kind === 'unix') {
      await removeStaleSocket(spec.path);
      const old = process.umask(0o177);
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(spec.path, () => {
            server.off('error', reject);
            resolve();
          });
        });
      } finally {
        process.umask(old);
      }
      chmodSync(spec.path, 0o600);
      const where = `unix:${spec.path}`;
      this.servers.push({ server, spec, where });
      return where;
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(spec.port, spec.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address() as net.AddressInfo;
    const where = `tcp:${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    this.servers.push({ server, spec, where });
    return where;
  }

  /**
   * Stop accepting connections, end event streams, and wait (at most `ms`) for requests in flight; idle keep-alive
   * connections are closed.
   */
  async drain(ms = 10_000): Promise<void> {
    const closing = this.servers.map(
      ({ server, spec }) =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          if (spec.kind === 'unix') {
            // The socket file goes with the listener.
            try {
              unlinkSync(spec.path);
            } catch {
              /* already gone */
            }
          }
        }),
    );
    for (const res of [...this.sse]) res.end();
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        t.unref();
        this.idle = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    for (const { server } of this.servers) server.closeAllConnections();
    await Promise.all(closing);
    this.servers.length = 0;
  }
}

/** A socket file left by a daemon that died is removed; one that something still listens on is an error. */
async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (alive) throw new InvalidArgumentError(`--listen unix:${path}: another process listens on that socket`);
  unlinkSync(path);
}

