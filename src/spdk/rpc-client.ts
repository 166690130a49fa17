/**
 * JSON-RPC 2.0 client for SPDK applications, over a Unix socket (SPDK's default /var/tmp/spdk.sock) or TCP.
 *
 * Many requests may be in flight on one connection: SPDK answers each when it completes, not necessarily in order,
 * and the client matches answers to calls by request id. Responses are parsed from the byte stream as they arrive
 * (see json-stream.ts), whether a read holds part of one response or several.
 */
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { debuglog } from 'node:util';
import {
  ConnectionClosedError,
  ConnectionFailedError,
  ErrorCode,
  InvalidArgumentError,
  NvmeofError,
  TimeoutError,
} from '../errors.js';
import { abortError } from '../util.js';
import { JsonValueStream } from './json-stream.js';

const debug = debuglog('nvmeof');

/** SPDK's default RPC listen address. */
export const SPDK_DEFAULT_RPC_SOCKET = '/var/tmp/spdk.sock';

/** JSON-RPC 2.0 error codes, plus SPDK's -1 for a method called in the wrong application state. */
export const JsonRpcErrorCode = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  INVALID_STATE: -1,
} as const;

const RPC_CODE_NAMES: Record<number, string> = {
  [-32700]: 'Parse error',
  [-32600]: 'Invalid request',
  [-32601]: 'Method not found',
  [-32602]: 'Invalid params',
  [-32603]: 'Internal error',
};

const ERRNO_NAMES: Map<number, string> = new Map(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name] as [number, string]),
);

function describeRpcCode(code: number): string {
  const name = RPC_CODE_NAMES[code];
  if (name) return `${code} ${name}`;
  // SPDK handlers usually answer with a negated errno (e.g. -17 for "File exists").
  const errno = code < 0 ? ERRNO_NAMES.get(-code) : undefined;
  return errno ? `${code} ${errno}` : String(code);
}

/** An SPDK JSON-RPC call was answered with an error object. `code` is 'NVMEOF_ERR_SPDK_RPC'. */
export class SpdkRpcError extends NvmeofError {
  /** The JSON-RPC error code: -32602 invalid params, -32601 method not found, or a negated errno such as -17. */
  readonly rpcCode: number;
  /** SPDK's message, e.g. "Invalid parameters" or "File exists". */
  readonly rpcMessage: string;
  /** The method that failed. */
  readonly method: string;
  /** The error object's `data` member, if any. */
  readonly data: unknown;

  constructor(method: string, rpcCode: number, rpcMessage: string, data?: unknown) {
    super(ErrorCode.SPDK_RPC, `SPDK RPC ${method} failed: ${rpcMessage} (code ${describeRpcCode(rpcCode)})`);
    this.rpcCode = rpcCode;
    this.rpcMessage = rpcMessage;
    this.method = method;
    this.data = data;
  }
}

/** Where an SPDK application listens for RPCs, and client defaults. */
export interface SpdkRpcClientOptions {
  /** Unix socket path. Default /var/tmp/spdk.sock unless `host` is given. */
  socketPath?: string;
  /** TCP host (SPDK started with `-r host:port`). */
  host?: string;
  /** TCP port; required with `host`. */
  port?: number;
  /** Milliseconds to establish the connection. Default 5000. */
  connectTimeoutMs?: number;
  /** Default per-call timeout in ms (0 = none). Default 60000. */
  timeoutMs?: number;
  /** Largest response accepted, in bytes. Default 64 MiB. */
  maxResponseBytes?: number;
  /** Aborts the connection attempt. */
  signal?: AbortSignal;
}

/** Per-call options. */
export interface SpdkCallOptions {
  /** Milliseconds to wait for the answer (0 = none). Default: the client's `timeoutMs`. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** One call of a {@link SpdkRpcClient.batch}. */
export interface SpdkBatchCall {
  method: string;
  params?: object;
}

/** JSON-RPC params: a by-name object (what SPDK uses) or a by-position array. */
export type SpdkRpcParams = object | readonly unknown[];

interface Pending {
  method: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

function validTimeout(ms: number | undefined, what: string): void {
  if (ms !== undefined && (!Number.isFinite(ms) || ms < 0)) throw new InvalidArgumentError(`${what} must be a number >= 0, got ${ms}`);
}


function describeAddress(opts: SpdkRpcClientOptions): string {
  return opts.host !== undefined ? `${opts.host}:${opts.port}` : (opts.socketPath ?? SPDK_DEFAULT_RPC_SOCKET);
}

/**
 * A JSON-RPC 2.0 connection to an SPDK application. Create with {@link SpdkRpcClient.connect} (or
 * `SpdkClient.connect` for the typed methods).
 */
export class SpdkRpcClient {
  /** The address connected to, for messages: the socket path or host:port. */
  readonly address: string;
  private readonly socket: net.Socket;
  private readonly stream: JsonValueStream;
  private readonly defaultTimeoutMs: number;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedWith: Error | undefined;
  private isClosed = false;
  /** An error the server sent without an id (it cannot be matched to a call); used as the close cause. */
  private orphanError: SpdkRpcError | undefined;
  private readonly closeWaiters: Array<() => void> = [];
  private socketClosed = false;

  /** Use {@link SpdkRpcClient.connect}; this wraps an already connected socket. */
  constructor(socket: net.Socket, opts: SpdkRpcClientOptions = {}) {
    this.socket = socket;
    this.address = describeAddress(opts);
    this.defaultTimeoutMs = opts.timeoutMs ?? 60_000;
    this.stream = new JsonValueStream(opts.maxResponseBytes);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      this.destroy(new ConnectionClosedError(`SPDK RPC ${this.address}: socket error: ${err.message}`, { cause: err }));
    });
    socket.on('close', () => {
      this.socketClosed = true;
      this.destroy(
        new ConnectionClosedError(`SPDK RPC ${this.address}: connection closed by the application`, {
          cause: this.orphanError,
        }),
      );
      for (const w of this.closeWaiters.splice(0)) w();
    });
  }

  /** Connects to an SPDK application's RPC server. Rejects with ConnectionFailedError when nothing answers. */
  static async connect<C extends SpdkRpcClient>(
    this: new (socket: net.Socket, opts?: SpdkRpcClientOptions) => C,
    opts: SpdkRpcClientOptions = {},
  ): Promise<C> {
    validTimeout(opts.connectTimeoutMs, 'connectTimeoutMs');
    validTimeout(opts.timeoutMs, 'timeoutMs');
    if (opts.host !== undefined && opts.socketPath !== undefined) {
      throw new InvalidArgumentError('give either socketPath or host/port, not both');
    }
    if (opts.host !== undefined && (opts.port === undefined || !Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535)) {
      throw new InvalidArgumentError(`port must be an integer 1..65535 with host, got ${opts.port}`);
    }
    if (opts.maxResponseBytes !== undefined && !(Number.isInteger(opts.maxResponseBytes) && opts.maxResponseBytes > 0)) {
      throw new InvalidArgumentError(`maxResponseBytes must be a positive integer, got ${opts.maxResponseBytes}`);
    }
    const address = describeAddress(opts);
    const timeoutMs = opts.connectTimeoutMs ?? 5000;
    const signal = opts.signal;
    if (signal?.aborted) throw abortError(signal, 'SPDK RPC call');
    const socket =
      opts.host !== undefined
        ? net.createConnection({ host: opts.host, port: opts.port as number })
        : net.createConnection({ path: opts.socketPath ?? SPDK_DEFAULT_RPC_SOCKET });
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = (): void => {
        if (timer) clearTimeout(timer);
        socket.off('connect', onConnect);
        socket.off('error', onError);
        signal?.removeEventListener('abort', onAbort);
      };
      const onConnect = (): void => {
        cleanup();
        resolve();
      };
      const onError = (err: Error): void => {
        cleanup();
        socket.destroy();
        reject(new ConnectionFailedError(`cannot connect to SPDK RPC at ${address}: ${err.message}`, { cause: err }));
      };
      const onAbort = (): void => {
        cleanup();
        socket.destroy();
        reject(abortError(signal as AbortSignal, 'SPDK RPC call'));
      };
      socket.once('connect', onConnect);
      socket.once('error', onError);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          cleanup();
          socket.destroy();
          reject(new TimeoutError(`no connection to SPDK RPC at ${address} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
    return new this(socket, opts);
  }

  /** True once the client is closed or the connection is lost. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Calls currently waiting for an answer. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Calls `method` with `params` and resolves with the response's `result`. Rejects with SpdkRpcError when SPDK
   * answers with an error, TimeoutError, AbortedError, or ConnectionClosedError.
   */
  call<T = unknown>(method: string, params?: SpdkRpcParams, opts: SpdkCallOptions = {}): Promise<T> {
    try {
      const [req, promise] = this.prepare(method, params, opts);
      this.send(req);
      return promise as Promise<T>;
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  /**
   * Sends several calls as one JSON-RPC batch (one array). Resolves, when every call has settled, with one
   * settled result per call, in order: SPDK errors appear as rejected entries holding an SpdkRpcError.
   */
  async batch(calls: readonly SpdkBatchCall[], opts: SpdkCallOptions = {}): Promise<PromiseSettledResult<unknown>[]> {
    if (calls.length === 0) throw new InvalidArgumentError('a batch needs at least one call');
    const reqs: object[] = [];
    const promises: Promise<unknown>[] = [];
    for (const c of calls) {
      const [req, promise] = this.prepare(c.method, c.params, opts);
      reqs.push(req);
      promises.push(promise);
    }
    this.send(reqs);
    return Promise.allSettled(promises);
  }

  /**
   * Closes the connection: every call still waiting is rejected with ConnectionClosedError, then the socket is
   * ended. Resolves when the socket has closed. Idempotent.
   */
  async close(): Promise<void> {
    this.destroy(new ConnectionClosedError(`SPDK RPC ${this.address}: client closed`), false);
    if (this.socketClosed) return;
    await new Promise<void>((resolve) => {
      this.closeWaiters.push(resolve);
      // A peer that never answers the FIN must not keep close() waiting.
      const t = setTimeout(() => this.socket.destroy(), 2000);
      t.unref();
    });
  }

  /** Fails every pending call with `err` (default ConnectionClosedError) and destroys the socket. Idempotent. */
  destroy(err?: Error, hard = true): void {
    if (!this.isClosed) {
      this.isClosed = true;
      this.closedWith = err ?? new ConnectionClosedError(`SPDK RPC ${this.address}: client destroyed`);
      const pending = [...this.pending.values()];
      this.pending.clear();
      for (const p of pending) this.settle(p, this.closedWith);
    }
    if (hard) this.socket.destroy();
    else if (!this.socket.destroyed) this.socket.end();
  }

  private prepare(method: string, params: SpdkRpcParams | undefined, opts: SpdkCallOptions): [object, Promise<unknown>] {
    if (typeof method !== 'string' || method.length === 0) throw new InvalidArgumentError('method must be a non-empty string');
    if (params !== undefined && (params === null || typeof params !== 'object')) {
      throw new InvalidArgumentError(`params of ${method} must be an object or an array`);
    }
    validTimeout(opts.timeoutMs, 'timeoutMs');
    if (this.isClosed) {
      throw new ConnectionClosedError(`SPDK RPC ${this.address}: client is closed`, { cause: this.closedWith });
    }
    if (opts.signal?.aborted) throw abortError(opts.signal, 'SPDK RPC call');
    const id = this.nextId;
    this.nextId = this.nextId >= Number.MAX_SAFE_INTEGER ? 1 : this.nextId + 1;
    const req = params === undefined ? { jsonrpc: '2.0', method, id } : { jsonrpc: '2.0', method, params, id };
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const promise = new Promise<unknown>((resolve, reject) => {
      const p: Pending = { method, resolve, reject, timer: undefined, signal: opts.signal, onAbort: undefined };
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          if (this.pending.get(id) !== p) return;
          this.pending.delete(id);
          this.settle(p, new TimeoutError(`SPDK RPC ${method} (id ${id}) got no answer within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      if (opts.signal) {
        const signal = opts.signal;
        p.onAbort = () => {
          if (this.pending.get(id) !== p) return;
          this.pending.delete(id);
          this.settle(p, abortError(signal, 'SPDK RPC call'));
        };
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.pending.set(id, p);
    });
    return [req, promise];
  }

  private send(payload: object): void {
    const text = JSON.stringify(payload);
    debug('spdk rpc %s -> %s', this.address, text.length > 500 ? `${text.slice(0, 500)}...` : text);
    this.socket.write(text);
  }

  private settle(p: Pending, err: Error | undefined, result?: unknown): void {
    if (p.timer) clearTimeout(p.timer);
    if (p.signal && p.onAbort) p.signal.removeEventListener('abort', p.onAbort);
    if (err) p.reject(err);
    else p.resolve(result);
  }

  private onData(chunk: Buffer): void {
    if (this.isClosed) return;
    let values: unknown[];
    try {
      values = this.stream.push(chunk);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      this.destroy(new ConnectionClosedError(`SPDK RPC ${this.address}: malformed response stream: ${msg}`, { cause: e }));
      return;
    }
    for (const v of values) {
      if (Array.isArray(v)) for (const r of v) this.onResponse(r);
      else this.onResponse(v);
    }
  }

  private onResponse(r: unknown): void {
    if (r === null || typeof r !== 'object') {
      debug('spdk rpc %s: ignoring non-object response element', this.address);
      return;
    }
    const res = r as { id?: unknown; result?: unknown; error?: unknown };
    const id = typeof res.id === 'number' ? res.id : undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    const err = res.error;
    if (!p) {
      if (err !== undefined && err !== null && id === undefined) {
        // An answer to a request SPDK could not read (e.g. a parse error): it cannot be matched to a call.
        const e = err as { code?: unknown; message?: unknown; data?: unknown };
        this.orphanError = new SpdkRpcError('(unknown)', typeof e.code === 'number' ? e.code : 0, String(e.message ?? 'error'), e.data);
      }
      debug('spdk rpc %s: response for unknown or expired id %o', this.address, res.id);
      return;
    }
    this.pending.delete(id as number);
    if (err !== undefined && err !== null) {
      const e = err as { code?: unknown; message?: unknown; data?: unknown };
      const code = typeof e.code === 'number' ? e.code : 0;
      const message = typeof e.message === 'string' ? e.message : JSON.stringify(e.message ?? 'error');
      this.settle(p, new SpdkRpcError(p.method, code, message, e.data));
    } else {
      this.settle(p, undefined, res.result);
    }
  }
}
