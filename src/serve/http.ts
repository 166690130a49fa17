/**
 * The daemon's HTTP API on node:http: routing, bearer-token check for TCP listeners, JSON bodies checked before use,
 * errors as `{ error: { code, message } }` with the library's codes (never a stack trace or a secret), Server-Sent
 * Events with replay, and the Prometheus exposition. A client that disconnects mid-request aborts its work.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { ErrorCode, InvalidArgumentError, NvmeofError, isNvmeofError } from '../index.js';
import type { ServeDaemon } from './daemon.js';
import { renderMetrics } from './metrics.js';
import type { ServeEvent } from './queue.js';
import {
  bearerMatches,
  checkDeclaredLength,
  errorStatus,
  HttpError,
  MAX_JSON_BODY,
  parseJsonBody,
  requestInput,
  routeRequest,
  type RouteInput,
  type RouteName,
} from './routes.js';
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

/** Options of {@link ApiServer}. */
export interface ApiOptions {
  /** Bearer token required on TCP listeners (read from --token-file). */
  token?: string;
}

interface RequestCtx {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  signal: AbortSignal;
}

/** One handler per endpoint of the route table, given the request's checked input. */
type Handlers = { [N in RouteName]: (ctx: RequestCtx, input: RouteInput<N>) => Promise<void> | void };

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = status === 204 ? '' : JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  res.writeHead(status, status === 204 ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  checkDeclaredLength(req.headers['content-length'], limit);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) throw new HttpError(413, ErrorCode.INVALID_ARGUMENT, `the body exceeds the limit of ${limit} bytes`);
    parts.push(chunk);
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
}

function sseFrame(ev: ServeEvent): string {
  return `id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify({ id: ev.id, type: ev.type, time: ev.time, ...ev.data })}\n\n`;
}

/** The HTTP face of a {@link ServeDaemon}: one request handler shared by every listener. */
export class ApiServer {
  private readonly handlers: Handlers;
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
    this.handlers = this.buildHandlers();
  }

  /** Where each listener listens (`unix:PATH`, `tcp:HOST:PORT` with the bound port). */
  get addresses(): string[] {
    return this.servers.map((s) => s.where);
  }

  private buildHandlers(): Handlers {
    const d = this.daemon;
    const reservation =
      (op: 'register' | 'acquire' | 'release') =>
      async ({ res, signal }: RequestCtx, { id, nsid, params }: RouteInput<'reservationRegister'>) => {
        d.controller(id);
        await d.reservation(id, nsid, op, params as never, signal);
        sendJson(res, 204, null);
      };
    return {
      health: ({ res }) => sendJson(res, 200, d.health()),
      metrics: ({ res }) => {
        const text = renderMetrics(d);
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      },
      events: (ctx, { lastEventId }) => this.events(ctx, lastEventId),
      listControllers: ({ res }) => sendJson(res, 200, [...d.controllers.values()].map((c) => c.json())),
      createController: async ({ res, signal }, spec) => {
        const mc = await d.createController(spec, signal);
        sendJson(res, 201, mc.json());
      },
      getController: ({ res }, { id }) => sendJson(res, 200, d.controller(id).json()),
      deleteController: async ({ res }, { id }) => {
        const mc = d.controller(id);
        await mc.queue.run(() => d.deleteController(id));
        sendJson(res, 204, null);
      },
      reconnectController: async ({ res, signal }, { id }) => {
        const mc = d.controller(id);
        await mc.queue.run(async () => d.reconnectController(id), signal);
        sendJson(res, 202, mc.json());
      },
      listNamespaces: async ({ res, signal }, { id }) => sendJson(res, 200, await d.namespacesOf(id, signal)),
      readBlocks: async ({ res, signal }, { id, nsid, lba, count }) => {
        d.controller(id);
        const data = await d.readBlocks(id, nsid, lba, count, signal);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
        res.end(data);
      },
      writeBlocks: async ({ req, res, signal }, { id, nsid, lba, count }) => {
        const mc = d.controller(id);
        const ns = await mc.namespace(nsid);
        const data = await readBody(req, d.maxIoBytes);
        if (count !== undefined && count * ns.blockSize !== data.length) {
          throw new InvalidArgumentError(`count ${count} says ${count * ns.blockSize} bytes, the body has ${data.length}`);
        }
        await d.writeBlocks(id, nsid, lba, data, signal);
        sendJson(res, 204, null);
      },
      reservationRegister: reservation('register'),
      reservationAcquire: reservation('acquire'),
      reservationRelease: reservation('release'),
      reservationReport: async ({ res, signal }, { id, nsid, extended }) => {
        d.controller(id);
        const r = (await d.reservation(id, nsid, 'report', extended === undefined ? {} : { extended }, signal))!;
        const reg = (x: NonNullable<typeof r.holder>) => ({ cntlid: x.cntlid, hostId: x.hostId, key: x.key.toString(), holdsReservation: x.holdsReservation });
        sendJson(res, 200, { generation: r.generation, type: r.type, rtype: r.rtype, ptpls: r.ptpls, extended: r.extended, holder: r.holder ? reg(r.holder) : null, registrants: r.registrants.map(reg) });
      },
      subsystems: ({ res }) => sendJson(res, 200, d.subsystems()),
      listDiscovery: ({ res }) => sendJson(res, 200, [...d.discoveries.values()].map((x) => x.json())),
      createDiscovery: async ({ res, signal }, spec) => {
        const md = await d.createDiscovery(spec, 'api', signal);
        sendJson(res, 201, md.json());
      },
      getDiscovery: ({ res }, { id }) => sendJson(res, 200, d.discovery(id).json()),
      getDiscoveryLog: ({ res }, { id }) => sendJson(res, 200, d.discovery(id).json().log),
      deleteDiscovery: async ({ res }, { id }) => {
        const md = d.discovery(id);
        await md.queue.run(() => d.deleteDiscovery(id));
        sendJson(res, 204, null);
      },
      listMultipath: ({ res }) => sendJson(res, 200, [...d.multipaths.values()].map((x) => x.json())),
      createMultipath: async ({ res, signal }, spec) => {
        const mm = await d.createMultipath(spec, 'api', signal);
        sendJson(res, 201, mm.json());
      },
      getMultipath: ({ res }, { id }) => {
        const mm = d.multipath(id);
        sendJson(res, 200, mm.m ? mm.m.health() : mm.json());
      },
      deleteMultipath: async ({ res }, { id }) => {
        const mm = d.multipath(id);
        await mm.queue.run(() => d.deleteMultipath(id));
        sendJson(res, 204, null);
      },
    };
  }

  /** GET /v1/events: replay from Last-Event-ID (or ?lastEventId=), then live events. */
  private events({ res }: RequestCtx, last: number | undefined): void {
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
    return bearerMatches(req.headers.authorization, this.tokenDigest);
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
      const r = routeRequest(req.method ?? '', req.url ?? '/');
      const body = r.body === 'json' || r.body === 'optional-json' ? parseJsonBody(await readBody(req, MAX_JSON_BODY), r.body === 'optional-json') : undefined;
      const input = requestInput(r, req.headers, body);
      await (this.handlers[r.name] as (ctx: RequestCtx, input: unknown) => Promise<void> | void)({ req, res, signal: ac.signal }, input);
    } catch (err) {
      if (err instanceof HttpError && err.allow) res.setHeader('allow', err.allow.join(', '));
      this.fail(res, err);
    } finally {
      if (--this.inFlight === 0) this.idle?.();
    }
  }

  private fail(res: http.ServerResponse, err: unknown): void {
    let status: number;
    let code: string;
    let message: string;
    if (isNvmeofError(err)) {
      code = err.code;
      status = errorStatus(err);
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

