/**
 * The HTTP API's request handling before anything is done: routing a method and request target to an endpoint with
 * its path parameters, and turning the query, headers and body into the endpoint's checked input. Pure and
 * synchronous (no node:http, no daemon), so the server and the fuzzer run the same code; every refusal is an
 * `HttpError` (an NvmeofError with its HTTP status), 4xx for anything a client can send.
 */
import { Buffer } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';
import { ErrorCode, InvalidArgumentError, NvmeofError, type ReservationType } from '../index.js';
import { parseControllerSpec, parseDiscoverySpec, parseMultipathSpec, type ControllerSpec, type DiscoverySpec, type MultipathSpec } from './validate.js';

/** An error answered with its own HTTP status (the rest map from their code, see {@link httpStatus}). */
export class HttpError extends NvmeofError {
  constructor(
    readonly status: number,
    code: (typeof ErrorCode)[keyof typeof ErrorCode],
    message: string,
    /** For 405: the methods the path allows. */
    readonly allow?: string[],
  ) {
    super(code, message);
  }
}

/** The HTTP status of an error code. */
export function httpStatus(code: string): number {
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

/** The status an error is answered with. */
export function errorStatus(err: NvmeofError): number {
  return err instanceof HttpError ? err.status : httpStatus(err.code);
}

/** Largest JSON body accepted. */
export const MAX_JSON_BODY = 1024 * 1024;

/** A value quoted in an error, cut short. */
function quote(s: string): string {
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 120)}…` : s);
}

// ---------------------------------------------------------------------------------------------------------------
// Request target

/** A request target split into its path segments (percent-decoded) and its query. */
export interface RequestTarget {
  /** The path as sent (still percent-encoded), for messages. */
  path: string;
  /** Raw segments after the leading slash. */
  raw: string[];
  /** Decoded segments. */
  segments: string[];
  query: URLSearchParams;
}

/**
 * Split a request target (origin form `/path?query`, or absolute form `http://host/path?query`). Dot segments are
 * not resolved (no endpoint has one). Malformed percent-encoding in the path is a 400.
 */
export function parseTarget(target: string): RequestTarget {
  let t = target;
  const abs = /^https?:\/\/[^/?#]*/i.exec(t);
  if (abs) t = t.slice(abs[0].length) || '/';
  if (!t.startsWith('/')) throw new HttpError(400, ErrorCode.INVALID_ARGUMENT, `the request target must be a path, got ${quote(target)}`);
  const hash = t.indexOf('#');
  if (hash >= 0) t = t.slice(0, hash);
  const q = t.indexOf('?');
  const path = q >= 0 ? t.slice(0, q) : t;
  const query = new URLSearchParams(q >= 0 ? t.slice(q + 1) : '');
  const raw = path.slice(1).split('/');
  const segments = raw.map((s) => {
    if (!s.includes('%')) return s;
    try {
      return decodeURIComponent(s);
    } catch {
      throw new HttpError(400, ErrorCode.INVALID_ARGUMENT, `the path has malformed percent-encoding: ${quote(s)}`);
    }
  });
  return { path, raw, segments, query };
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs

/** What a handler gets besides its checked input. */
export interface InputSource {
  /** Path parameters, decoded, in order. */
  params: string[];
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body (routes with a JSON body), else undefined. */
  body: unknown;
}

const U64_RE = /^(?:0x[0-9a-f]{1,16}|\d{1,20})$/i;

/** A 64-bit value from JSON or a query: a safe integer, or a decimal / 0x hex string. */
export function u64(v: unknown, name: string): bigint | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && U64_RE.test(v)) {
    const b = BigInt(v);
    if (b <= 0xffff_ffff_ffff_ffffn) return b;
  }
  throw new InvalidArgumentError(`${name} must be a 64-bit unsigned integer (a number, or a decimal or 0x hex string), got ${JSON.stringify(v)}`);
}

function lbaParam(query: URLSearchParams): bigint {
  const s = query.get('lba');
  if (s === null) throw new InvalidArgumentError('the lba query parameter is required');
  return u64(s, 'lba')!;
}

function intParam(query: URLSearchParams, name: string, required: boolean): number | undefined {
  const s = query.get(name);
  if (s === null) {
    if (required) throw new InvalidArgumentError(`the ${name} query parameter is required`);
    return undefined;
  }
  if (!/^\d{1,10}$/.test(s) || Number(s) < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${quote(s)}`);
  return Number(s);
}

function nsidOf(s: string): number {
  const n = /^\d{1,10}$/.test(s) ? Number(s) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 0xfffffffe) throw new InvalidArgumentError(`nsid must be 1..4294967294, got ${quote(s)}`);
  return n;
}

function object(v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidArgumentError('the body must be a JSON object');
  return v as Record<string, unknown>;
}

function onlyKeys(o: Record<string, unknown>, keys: string[]): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw new InvalidArgumentError(`unknown field ${quote(k)} (fields: ${keys.join(', ')})`);
}

function optBool(o: Record<string, unknown>, k: string): boolean | undefined {
  const v = o[k];
  if (v !== undefined && typeof v !== 'boolean') throw new InvalidArgumentError(`${k} must be true or false`);
  return v as boolean | undefined;
}

/** Reservation bodies: the library's option names; keys as numbers or decimal/hex strings. */
export function reservationParams(op: 'register' | 'acquire' | 'release', body: unknown): Record<string, unknown> {
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

/** The first value of a header. */
function header(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}

/** Last-Event-ID (header, or `?lastEventId=` for clients that cannot set headers). */
function lastEventId(src: InputSource): number | undefined {
  const raw = header(src.headers['last-event-id']) ?? src.query.get('lastEventId') ?? undefined;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,15}$/.test(raw)) throw new InvalidArgumentError(`Last-Event-ID must be an event id (a non-negative integer), got ${quote(raw)}`);
  return Number(raw);
}

/** The body a request must have: none (ignored), JSON, JSON or nothing, or raw bytes the handler reads. */
export type BodyKind = 'none' | 'json' | 'optional-json' | 'raw';

interface RouteDef<I> {
  method: string;
  path: string;
  body: BodyKind;
  input(src: InputSource): I;
}

const route = <I>(method: string, path: string, body: BodyKind, input: (src: InputSource) => I): RouteDef<I> => ({ method, path, body, input });
const none = (): Record<string, never> => ({});
const id = (src: InputSource) => ({ id: src.params[0]! });
const ns = (src: InputSource) => ({ id: src.params[0]!, nsid: nsidOf(src.params[1]!) });
const reservation = (op: 'register' | 'acquire' | 'release') => (src: InputSource) => ({ ...ns(src), params: reservationParams(op, src.body) });

/** Every endpoint of the API (docs/serve.md), with what its input is made of. */
export const ROUTES = {
  health: route('GET', '/v1/health', 'none', none),
  metrics: route('GET', '/metrics', 'none', none),
  events: route('GET', '/v1/events', 'none', (src) => ({ lastEventId: lastEventId(src) })),
  listControllers: route('GET', '/v1/controllers', 'none', none),
  createController: route('POST', '/v1/controllers', 'json', (src): ControllerSpec => parseControllerSpec(src.body)),
  getController: route('GET', '/v1/controllers/{id}', 'none', id),
  deleteController: route('DELETE', '/v1/controllers/{id}', 'none', id),
  reconnectController: route('POST', '/v1/controllers/{id}/reconnect', 'optional-json', (src) => {
    onlyKeys(object(src.body), []);
    return id(src);
  }),
  listNamespaces: route('GET', '/v1/controllers/{id}/namespaces', 'none', id),
  readBlocks: route('GET', '/v1/controllers/{id}/namespaces/{nsid}/blocks', 'none', (src) => ({ ...ns(src), lba: lbaParam(src.query), count: intParam(src.query, 'count', true)! })),
  writeBlocks: route('PUT', '/v1/controllers/{id}/namespaces/{nsid}/blocks', 'raw', (src) => ({ ...ns(src), lba: lbaParam(src.query), count: intParam(src.query, 'count', false) })),
  reservationRegister: route('POST', '/v1/controllers/{id}/namespaces/{nsid}/reservations/register', 'json', reservation('register')),
  reservationAcquire: route('POST', '/v1/controllers/{id}/namespaces/{nsid}/reservations/acquire', 'json', reservation('acquire')),
  reservationRelease: route('POST', '/v1/controllers/{id}/namespaces/{nsid}/reservations/release', 'json', reservation('release')),
  reservationReport: route('GET', '/v1/controllers/{id}/namespaces/{nsid}/reservations', 'none', (src) => {
    const ext = src.query.get('extended');
    if (ext !== null && ext !== 'true' && ext !== 'false') throw new InvalidArgumentError('extended must be true or false');
    return { ...ns(src), extended: ext === null ? undefined : ext === 'true' };
  }),
  subsystems: route('GET', '/v1/subsystems', 'none', none),
  listDiscovery: route('GET', '/v1/discovery', 'none', none),
  createDiscovery: route('POST', '/v1/discovery', 'json', (src): DiscoverySpec => parseDiscoverySpec(src.body)),
  getDiscovery: route('GET', '/v1/discovery/{id}', 'none', id),
  getDiscoveryLog: route('GET', '/v1/discovery/{id}/log', 'none', id),
  deleteDiscovery: route('DELETE', '/v1/discovery/{id}', 'none', id),
  listMultipath: route('GET', '/v1/multipath', 'none', none),
  createMultipath: route('POST', '/v1/multipath', 'json', (src): MultipathSpec => parseMultipathSpec(src.body)),
  getMultipath: route('GET', '/v1/multipath/{id}', 'none', id),
  deleteMultipath: route('DELETE', '/v1/multipath/{id}', 'none', id),
} as const;

export type RouteName = keyof typeof ROUTES;
/** The checked input of an endpoint. */
export type RouteInput<N extends RouteName> = ReturnType<(typeof ROUTES)[N]['input']>;

/** A request routed to an endpoint. */
export interface Routed {
  name: RouteName;
  body: BodyKind;
  params: string[];
  query: URLSearchParams;
  path: string;
}

const table = Object.entries(ROUTES).map(([name, r]) => ({ name: name as RouteName, method: r.method, body: r.body, parts: r.path.slice(1).split('/') }));

/**
 * Route a request: the endpoint for `method` and `target`, with its path parameters decoded. Unknown paths are a 404,
 * a known path with another method a 405 (with the methods it allows), a malformed target a 400.
 */
export function routeRequest(method: string, target: string): Routed {
  const t = parseTarget(target);
  const allow: string[] = [];
  for (const r of table) {
    if (r.parts.length !== t.raw.length) continue;
    const params: string[] = [];
    let ok = true;
    for (let i = 0; i < r.parts.length; i++) {
      const p = r.parts[i]!;
      if (p.startsWith('{')) {
        if (t.segments[i] === '') {
          ok = false;
          break;
        }
        params.push(t.segments[i]!);
      } else if (p !== t.raw[i]) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    if (r.method !== method) {
      if (!allow.includes(r.method)) allow.push(r.method);
      continue;
    }
    return { name: r.name, body: r.body, params, query: t.query, path: t.path };
  }
  if (allow.length > 0) throw new HttpError(405, ErrorCode.INVALID_ARGUMENT, `${method} is not allowed on ${t.path}`, allow);
  throw new HttpError(404, ErrorCode.NOT_FOUND, `no endpoint ${t.path}`);
}

/** The checked input of a routed request (its query, path parameters, headers and parsed JSON body). */
export function requestInput<N extends RouteName>(r: Routed & { name: N }, headers: InputSource['headers'], body: unknown): RouteInput<N> {
  const def = ROUTES[r.name] as RouteDef<RouteInput<N>>;
  return def.input({ params: r.params, query: r.query, headers, body });
}

/** A declared Content-Length over `limit` is refused before the body is read (413). */
export function checkDeclaredLength(h: string | string[] | undefined, limit: number): void {
  const declared = header(h);
  if (declared !== undefined && Number(declared) > limit) throw new HttpError(413, ErrorCode.INVALID_ARGUMENT, `the body (${Number(declared)} bytes) exceeds the limit of ${limit} bytes`);
}

/** A JSON body: required, or `{}` when empty and optional. */
export function parseJsonBody(b: Buffer, optional: boolean): unknown {
  if (b.length === 0) {
    if (optional) return {};
    throw new InvalidArgumentError('a JSON body is required');
  }
  try {
    return JSON.parse(b.toString('utf8')) as unknown;
  } catch {
    throw new InvalidArgumentError('the body is not valid JSON');
  }
}

/** Whether `authorization` carries the bearer token whose SHA-256 is `digest` (compared in constant time). */
export function bearerMatches(authorization: string | string[] | undefined, digest: Buffer): boolean {
  const h = header(authorization);
  const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
  if (!m) return false;
  return timingSafeEqual(createHash('sha256').update(m[1]!).digest(), digest);
}
