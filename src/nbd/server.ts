/**
 * NBD server: exports namespaces (a {@link Namespace} through one controller, or a {@link MultipathNamespace}) to NBD
 * clients such as qemu-img, qemu, nbdcopy and nbdinfo.
 *
 * Fixed newstyle handshake (with NO_ZEROES), options GO / INFO / LIST / ABORT / EXPORT_NAME / STRUCTURED_REPLY /
 * LIST_META_CONTEXT / SET_META_CONTEXT (`base:allocation`) / STARTTLS; every other option gets NBD_REP_ERR_UNSUP.
 * In transmission, requests are pipelined: each runs as soon as it is read and its reply is sent when it completes,
 * so replies may come out of order. A client that breaks the protocol (bad magic, truncated or oversize request)
 * loses only its own connection; the server never throws on what a client sends.
 */
import { Buffer } from 'node:buffer';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { debuglog } from 'node:util';
import { InvalidArgumentError, NbdProtocolError, NvmeStatusError, NvmeofError, ErrorCode } from '../errors.js';
import { GenericStatus, MediaStatus, StatusCodeType } from '../protocol/constants.js';
import type { IdentifyController, IdentifyNamespace, OncsFlags } from '../protocol/identify.js';
import { writeBatch } from '../util.js';
import type { IoOptions, LbaRange, WriteOptions } from '../host/namespace.js';
import {
  ClientFlag,
  CmdFlag,
  HandshakeFlag,
  NbdCmd,
  NbdErrno,
  NbdInfo,
  NbdOpt,
  NbdRep,
  OPTION_HEADER_BYTES,
  ReplyFlag,
  RequestParser,
  TransmissionFlag,
  commandName,
  decodeExportName,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  encodeChunkBlockStatus,
  encodeChunkError,
  encodeChunkNone,
  encodeChunkOffsetDataHeader,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContext,
  encodeOptionError,
  encodeOptionReply,
  encodeRepServer,
  encodeSimpleReply,
  optionName,
  type NbdRequestWithData,
} from './protocol.js';

const debug = debuglog('nvmeof:nbd');

/** What the server needs of a namespace; {@link Namespace} and {@link MultipathNamespace} both provide it. */
export interface NbdNamespace {
  readonly nsid: number;
  readonly identity: IdentifyNamespace;
  readonly blockSize: number;
  readonly sizeBytes: bigint;
  readonly maxBlocksPerCommand: number;
  readonly controllerIdentity?: IdentifyController | undefined;
  readonly oncs?: OncsFlags | undefined;
  readInto(lba: bigint | number, buf: Buffer, opts?: IoOptions): Promise<Buffer>;
  write(lba: bigint | number, data: Uint8Array, opts?: WriteOptions): Promise<void>;
  flush(opts?: IoOptions): Promise<void>;
  writeZeroes(lba: bigint | number, blocks: number, opts?: IoOptions & { deallocate?: boolean; fua?: boolean }): Promise<void>;
  deallocate(ranges: LbaRange[], opts?: IoOptions): Promise<void>;
}

/** One export of an NBD server. */
export interface NbdExport {
  /** Export name clients ask for (the first export is also the default, reached with the empty name). */
  name: string;
  /** The namespace behind the export. */
  namespace: NbdNamespace;
  /** Refuse writes (and advertise NBD_FLAG_READ_ONLY). Default false (a write-protected namespace is read-only). */
  readOnly?: boolean;
  /** Description sent in NBD_INFO_DESCRIPTION and NBD_REP_SERVER. Default: model, serial, subsystem and nsid. */
  description?: string;
}

/** Where the server listens. */
export type NbdListen = { host?: string; port: number } | { path: string };

/** TLS of an NBD server (STARTTLS). */
export interface NbdTlsOptions {
  /** `require`: every option but STARTTLS and ABORT is refused until TLS is up; `on`: TLS offered, not required. */
  mode: 'require' | 'on';
  /** X.509: PEM certificate chain, key, and (optional) CA the server sends. */
  cert?: string | Buffer;
  key?: string | Buffer;
  ca?: string | Buffer;
  /** PSK: identity → key. */
  psk?: ReadonlyMap<string, Buffer>;
}

/** Options of {@link serveNbd}. */
export interface NbdServerOptions {
  /** TCP host/port (port 0 picks a free one) or a Unix socket path. */
  listen: NbdListen;
  /** The exports; names must be unique. */
  exports: NbdExport[];
  /** STARTTLS; without it STARTTLS is answered NBD_REP_ERR_UNSUP. */
  tls?: NbdTlsOptions;
  /** Requests in flight per connection before the server stops reading from it. Default 64. */
  maxInFlight?: number;
}

/** Where a server listens. */
export type NbdAddress = { host: string; port: number } | { path: string };

/** Largest payload the server accepts or sends in one request (the maximum block size it advertises is at most this). */
export const NBD_MAX_PAYLOAD = 32 * 1024 * 1024;
/** Payload bytes (write data and read buffers) in flight per connection before the server stops reading from it. */
const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
/** Largest option data the server reads; longer options close the connection. */
const MAX_OPTION_BYTES = 64 * 1024;
/** Options one connection may send before the server gives up on it. */
const MAX_OPTIONS = 1024;
/** Context id of `base:allocation`. */
const BASE_ALLOCATION_ID = 1;
const BASE_ALLOCATION = 'base:allocation';
/** base:allocation flags of allocated data: neither HOLE nor ZERO. */
const ALLOCATED = 0;

/** An NBD server returned by {@link serveNbd}. */
export class NbdServer {
  private readonly conns = new Set<NbdConnection>();
  private closing: Promise<void> | undefined;

  /** Where the server listens (set once it listens). */
  address!: NbdAddress;
  /** @internal */
  unixPath: string | undefined;

  /** @internal Use {@link serveNbd}. */
  constructor(private readonly srv: net.Server) {}

  /** Open connections. */
  get connections(): number {
    return this.conns.size;
  }

  /** @internal */
  track(c: NbdConnection): void {
    if (this.closing) {
      c.destroy();
      return;
    }
    this.conns.add(c);
    c.onClosed(() => this.conns.delete(c));
  }

  /**
   * Stop listening, let every connection finish the requests it has in flight (no new ones are read), then close them.
   * Idempotent. The namespaces are the caller's to close.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.srv.close(() => resolve()));
      await Promise.all([...this.conns].map((c) => c.drain()));
      await stopped;
      if (this.unixPath) {
        try {
          unlinkSync(this.unixPath);
        } catch {
          /* already gone */
        }
      }
    })();
    return this.closing;
  }
}

/** Start an NBD server. Resolves once it listens. */
export async function serveNbd(opts: NbdServerOptions): Promise<NbdServer> {
  const exports = validate(opts);
  const maxInFlight = opts.maxInFlight ?? 64;
  const tlsCtx = opts.tls ? makeTls(opts.tls) : undefined;
  const srv = net.createServer({ noDelay: true });
  const server = new NbdServer(srv);
  srv.on('connection', (sock) => server.track(new NbdConnection(sock, exports, maxInFlight, tlsCtx)));
  const listen = opts.listen;
  let unixPath: string | undefined;
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    if ('path' in listen) {
      unixPath = listen.path;
      if (existsSync(listen.path) && lstatSync(listen.path).isSocket()) {
        // A stale socket left by a server that died: take it over only when nothing answers on it.
        const probe = net.connect(listen.path);
        probe.once('connect', () => {
          probe.destroy();
          reject(new InvalidArgumentError(`listen: something already listens on ${listen.path}`));
        });
        probe.once('error', () => {
          try {
            unlinkSync(listen.path);
          } catch {
            /* raced with another cleanup */
          }
          srv.listen(listen.path, () => resolve());
        });
      } else srv.listen(listen.path, () => resolve());
    } else srv.listen(listen.port, listen.host ?? '127.0.0.1', () => resolve());
  });
  srv.on('error', (err) => debug('server error: %s', err.message));
  const a = srv.address();
  server.address = typeof a === 'string' || a === null ? { path: unixPath! } : { host: a.address, port: a.port };
  server.unixPath = unixPath;
  return server;
}

interface ResolvedExport extends NbdExport {
  readOnly: boolean;
  description: string;
}

function validate(opts: NbdServerOptions): ResolvedExport[] {
  if (!opts || typeof opts !== 'object') throw new InvalidArgumentError('serveNbd: options object required');
  const l = opts.listen as unknown;
  if (!l || typeof l !== 'object') throw new InvalidArgumentError('serveNbd: listen must be { host, port } or { path }');
  if ('path' in l) {
    if (typeof (l as { path: unknown }).path !== 'string' || !(l as { path: string }).path) throw new InvalidArgumentError('serveNbd: listen.path must be a non-empty string');
  } else {
    const port = (l as { port?: unknown }).port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`serveNbd: listen.port must be an integer 0..65535, got ${String(port)}`);
  }
  if (!Array.isArray(opts.exports) || opts.exports.length === 0) throw new InvalidArgumentError('serveNbd: at least one export is required');
  const names = new Set<string>();
  const out: ResolvedExport[] = [];
  for (const [i, e] of opts.exports.entries()) {
    if (!e || typeof e !== 'object') throw new InvalidArgumentError(`serveNbd: export ${i} must be an object`);
    if (typeof e.name !== 'string' || Buffer.byteLength(e.name) > 4096) throw new InvalidArgumentError(`serveNbd: export ${i} needs a name of at most 4096 bytes`);
    if (names.has(e.name)) throw new InvalidArgumentError(`serveNbd: export name "${e.name}" is used twice`);
    names.add(e.name);
    const ns = e.namespace;
    if (!ns || typeof ns.readInto !== 'function' || typeof ns.blockSize !== 'number') throw new InvalidArgumentError(`serveNbd: export "${e.name}" needs a namespace (Namespace or MultipathNamespace)`);
    const writeProtected = ns.identity.decoded.nsattr.writeProtected;
    out.push({ ...e, readOnly: !!e.readOnly || writeProtected, description: e.description ?? describeNamespace(ns) });
  }
  if (opts.maxInFlight !== undefined && (!Number.isInteger(opts.maxInFlight) || opts.maxInFlight < 1 || opts.maxInFlight > 4096)) {
    throw new InvalidArgumentError(`serveNbd: maxInFlight must be an integer 1..4096, got ${opts.maxInFlight}`);
  }
  if (opts.tls) {
    const t = opts.tls;
    if (t.mode !== 'require' && t.mode !== 'on') throw new InvalidArgumentError(`serveNbd: tls.mode must be 'require' or 'on', got ${String(t.mode)}`);
    if (!t.psk && !(t.cert && t.key)) throw new InvalidArgumentError('serveNbd: tls needs cert and key, or psk');
  }
  return out;
}

/** Model, serial, subsystem and nsid, as far as they are known. */
function describeNamespace(ns: NbdNamespace): string {
  const c = ns.controllerIdentity;
  const parts = c ? [c.mn, `serial ${c.sn}`, c.subnqn] : [];
  parts.push(`nsid ${ns.nsid}`);
  return parts.filter(Boolean).join(', ');
}

interface TlsContext {
  mode: 'require' | 'on';
  options: tls.TlsOptions;
}

function makeTls(t: NbdTlsOptions): TlsContext {
  const options: tls.TlsOptions = {};
  if (t.cert && t.key) {
    options.cert = t.cert;
    options.key = t.key;
    if (t.ca) options.ca = t.ca;
  }
  if (t.psk) {
    const psk = t.psk;
    options.pskCallback = (_socket: tls.TLSSocket, identity: string) => psk.get(identity) ?? null;
    if (!(t.cert && t.key)) {
      // PSK only: PSK key exchange suites for TLS 1.2 and the TLS 1.3 suites (SHA-256, as PSK binders need).
      options.ciphers = 'PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:DHE-PSK-AES128-GCM-SHA256:DHE-PSK-AES256-GCM-SHA384:ECDHE-PSK-AES128-CBC-SHA256:PSK-AES128-CBC-SHA256';
    } else {
      options.ciphers = `${tls.DEFAULT_CIPHERS}:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:DHE-PSK-AES128-GCM-SHA256:DHE-PSK-AES256-GCM-SHA384`;
    }
  }
  return { mode: t.mode, options };
}

type Phase = 'greeting' | 'options' | 'tls' | 'transmission' | 'closing' | 'closed';

/** One client connection. */
class NbdConnection {
  private sock: net.Socket;
  private phase: Phase = 'greeting';
  private buf: Buffer = Buffer.alloc(0);
  private noZeroes = false;
  private structured = false;
  private tlsUp = false;
  private options = 0;
  /** Meta context chosen with SET_META_CONTEXT (only base:allocation exists). */
  private allocationContext = false;
  private exp: ResolvedExport | undefined;
  private flags = 0;
  private parser: RequestParser | undefined;
  private inFlight = 0;
  private inFlightBytes = 0;
  /** Requests read from the client and not started yet. */
  private readonly queued: NbdRequestWithData[] = [];
  private paused = false;
  private awaitingDrain = false;
  private readonly closedCallbacks: (() => void)[] = [];
  private drained: (() => void) | undefined;
  private readonly onData = (chunk: Buffer) => this.receive(chunk);

  constructor(
    sock: net.Socket,
    private readonly exports: ResolvedExport[],
    private readonly maxInFlight: number,
    private readonly tlsCtx: TlsContext | undefined,
  ) {
    this.sock = sock;
    sock.setNoDelay(true);
    sock.on('data', this.onData);
    sock.on('error', (err) => debug('connection error: %s', err.message));
    sock.on('close', () => this.closed());
    sock.write(encodeGreeting(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES));
  }

  onClosed(fn: () => void): void {
    if (this.phase === 'closed') fn();
    else this.closedCallbacks.push(fn);
  }

  destroy(): void {
    this.sock.destroy();
  }

  /** Stop reading requests, finish those in flight, then close. */
  drain(): Promise<void> {
    if (this.phase === 'closed') return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.onClosed(resolve);
      if (this.phase !== 'transmission') {
        this.sock.destroy();
        return;
      }
      this.phase = 'closing';
      this.sock.pause();
      this.finishIfIdle();
    });
  }

  private closed(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    for (const fn of this.closedCallbacks.splice(0)) fn();
  }

  private finishIfIdle(): void {
    if (this.phase === 'closing' && this.inFlight === 0 && this.queued.length === 0) this.sock.end();
  }

  private fail(why: string): void {
    debug('closing connection: %s', why);
    this.sock.destroy();
  }

  private receive(chunk: Buffer): void {
    try {
      if (this.phase === 'transmission' || this.phase === 'closing') {
        if (this.phase === 'closing') return;
        const parser = this.parser!;
        this.requests(parser.push(chunk));
        // The requests before a malformed one run; then the connection closes.
        if (parser.error) this.fail(parser.error.message);
        return;
      }
      if (this.phase === 'closed' || this.phase === 'tls') return;
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      this.handshake();
    } catch (err) {
      this.fail(err instanceof Error ? err.message : String(err));
    }
  }

  // ---- handshake ---------------------------------------------------------------------------------------------

  private handshake(): void {
    while (this.phase === 'greeting' || this.phase === 'options') {
      if (this.phase === 'greeting') {
        if (this.buf.length < 4) return;
        const cflags = this.buf.readUInt32BE(0);
        this.buf = this.buf.subarray(4);
        if (cflags & ~(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES)) throw new NbdProtocolError(`unknown client flags 0x${cflags.toString(16)}`);
        this.noZeroes = (cflags & ClientFlag.C_NO_ZEROES) !== 0;
        this.phase = 'options';
        continue;
      }
      if (this.buf.length < OPTION_HEADER_BYTES) return;
      const h = decodeOptionHeader(this.buf);
      if (h.length > MAX_OPTION_BYTES) throw new NbdProtocolError(`${optionName(h.option)} carries ${h.length} bytes, more than the ${MAX_OPTION_BYTES} the server reads`);
      if (this.buf.length < OPTION_HEADER_BYTES + h.length) return;
      const data = this.buf.subarray(OPTION_HEADER_BYTES, OPTION_HEADER_BYTES + h.length);
      this.buf = this.buf.subarray(OPTION_HEADER_BYTES + h.length);
      if (++this.options > MAX_OPTIONS) throw new NbdProtocolError(`more than ${MAX_OPTIONS} options`);
      this.option(h.option, data);
    }
    if (this.phase === 'transmission') {
      const rest = this.buf;
      this.buf = Buffer.alloc(0);
      if (rest.length) this.requests(this.parser!.push(rest));
    }
  }

  private reply(option: number, type: number, data?: Uint8Array): void {
    this.sock.write(encodeOptionReply(option, type, data));
  }

  private refuse(option: number, type: number, message: string): void {
    debug('%s refused: %s', optionName(option), message);
    this.sock.write(encodeOptionError(option, type, message));
  }

  private option(opt: number, data: Buffer): void {
    debug('option %s (%d bytes)', optionName(opt), data.length);
    const tlsRequired = this.tlsCtx?.mode === 'require' && !this.tlsUp;
    if (tlsRequired && opt !== NbdOpt.STARTTLS && opt !== NbdOpt.ABORT) {
      if (opt === NbdOpt.EXPORT_NAME) throw new NbdProtocolError('NBD_OPT_EXPORT_NAME before STARTTLS on a server that requires TLS');
      this.refuse(opt, NbdRep.ERR_TLS_REQD, 'this server requires TLS: send NBD_OPT_STARTTLS first');
      return;
    }
    switch (opt) {
      case NbdOpt.EXPORT_NAME: {
        const exp = this.find(decodeExportName(data));
        if (!exp) throw new NbdProtocolError(`NBD_OPT_EXPORT_NAME for an unknown export "${data.toString('utf8')}"`);
        this.enter(exp);
        this.sock.write(encodeExportNameReply(exp.namespace.sizeBytes, this.flags, this.noZeroes));
        return;
      }
      case NbdOpt.ABORT:
        this.reply(opt, NbdRep.ACK);
        this.phase = 'closing';
        this.sock.end();
        return;
      case NbdOpt.LIST:
        if (data.length) return this.refuse(opt, NbdRep.ERR_INVALID, 'NBD_OPT_LIST takes no data');
        for (const e of this.exports) this.reply(opt, NbdRep.SERVER, encodeRepServer(e.name, e.description));
        this.reply(opt, NbdRep.ACK);
        return;
      case NbdOpt.INFO:
      case NbdOpt.GO: {
        let req;
        try {
          req = decodeInfoRequest(data);
        } catch (err) {
          return this.refuse(opt, NbdRep.ERR_INVALID, (err as Error).message);
        }
        const exp = this.find(req.name);
        if (!exp) return this.refuse(opt, NbdRep.ERR_UNKNOWN, `no export named "${req.name}"`);
        const ns = exp.namespace;
        if (req.requests.includes(NbdInfo.NAME)) this.reply(opt, NbdRep.INFO, encodeInfoString(NbdInfo.NAME, exp.name));
        if (req.requests.includes(NbdInfo.DESCRIPTION) && exp.description) this.reply(opt, NbdRep.INFO, encodeInfoString(NbdInfo.DESCRIPTION, exp.description));
        const bs = blockSizes(ns);
        this.reply(opt, NbdRep.INFO, encodeInfoBlockSize(bs.min, bs.preferred, bs.max));
        this.reply(opt, NbdRep.INFO, encodeInfoExport(ns.sizeBytes, this.transmissionFlags(exp)));
        this.reply(opt, NbdRep.ACK);
        if (opt === NbdOpt.GO) this.enter(exp);
        return;
      }
      case NbdOpt.STRUCTURED_REPLY:
        if (data.length) return this.refuse(opt, NbdRep.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        if (this.structured) return this.refuse(opt, NbdRep.ERR_INVALID, 'structured replies are already negotiated');
        this.structured = true;
        this.reply(opt, NbdRep.ACK);
        return;
      case NbdOpt.LIST_META_CONTEXT:
      case NbdOpt.SET_META_CONTEXT: {
        if (!this.structured) return this.refuse(opt, NbdRep.ERR_INVALID, 'meta contexts need structured replies (NBD_OPT_STRUCTURED_REPLY first)');
        let req;
        try {
          req = decodeMetaContextRequest(data);
        } catch (err) {
          return this.refuse(opt, NbdRep.ERR_INVALID, (err as Error).message);
        }
        if (!this.find(req.name)) return this.refuse(opt, NbdRep.ERR_UNKNOWN, `no export named "${req.name}"`);
        const set = opt === NbdOpt.SET_META_CONTEXT;
        // LIST with no query lists every context; SET with none selects none.
        const match = req.queries.some((q) => q === BASE_ALLOCATION || (!set && q === 'base:')) || (!set && req.queries.length === 0);
        if (set) this.allocationContext = match;
        if (match) this.reply(opt, NbdRep.META_CONTEXT, encodeMetaContext(set ? BASE_ALLOCATION_ID : 0, BASE_ALLOCATION));
        this.reply(opt, NbdRep.ACK);
        return;
      }
      case NbdOpt.STARTTLS:
        if (data.length) return this.refuse(opt, NbdRep.ERR_INVALID, 'NBD_OPT_STARTTLS takes no data');
        if (!this.tlsCtx) return this.refuse(opt, NbdRep.ERR_UNSUP, 'this server has no TLS credentials');
        if (this.tlsUp) return this.refuse(opt, NbdRep.ERR_INVALID, 'TLS is already up');
        if (this.buf.length) throw new NbdProtocolError('data after NBD_OPT_STARTTLS before the TLS handshake');
        this.reply(opt, NbdRep.ACK);
        this.startTls();
        return;
      default:
        this.refuse(opt, NbdRep.ERR_UNSUP, `${optionName(opt)} is not supported`);
    }
  }

  private find(name: string): ResolvedExport | undefined {
    return name === '' ? (this.exports.find((e) => e.name === '') ?? this.exports[0]) : this.exports.find((e) => e.name === name);
  }

  private startTls(): void {
    this.phase = 'tls';
    const raw = this.sock;
    raw.off('data', this.onData);
    const secure = new tls.TLSSocket(raw, { isServer: true, ...this.tlsCtx!.options });
    secure.on('error', (err) => {
      debug('TLS error: %s', err.message);
      raw.destroy();
    });
    secure.once('secure', () => {
      this.tlsUp = true;
      this.phase = 'options';
      debug('TLS up: %s %s', secure.getProtocol(), secure.getCipher()?.name);
    });
    secure.on('data', this.onData);
    this.sock = secure;
  }

  private enter(exp: ResolvedExport): void {
    this.exp = exp;
    this.flags = this.transmissionFlags(exp);
    this.parser = new RequestParser(NBD_MAX_PAYLOAD);
    this.phase = 'transmission';
    if (!this.structured) this.allocationContext = false;
    debug('transmission on "%s" flags 0x%s', exp.name, this.flags.toString(16));
  }

  private transmissionFlags(exp: ResolvedExport): number {
    const ns = exp.namespace;
    const oncs = ns.oncs;
    // FLUSH is always offered: without a volatile write cache it is answered at once (nothing to commit).
    let f = TransmissionFlag.HAS_FLAGS | TransmissionFlag.SEND_FLUSH | TransmissionFlag.SEND_FUA | TransmissionFlag.SEND_CACHE | TransmissionFlag.CAN_MULTI_CONN;
    if (this.structured) f |= TransmissionFlag.SEND_DF;
    if (exp.readOnly) f |= TransmissionFlag.READ_ONLY;
    else {
      if (!oncs || oncs.dsm) f |= TransmissionFlag.SEND_TRIM;
      if (!oncs || oncs.writeZeroes) {
        f |= TransmissionFlag.SEND_WRITE_ZEROES;
        if (fastZero(ns)) f |= TransmissionFlag.SEND_FAST_ZERO;
      }
    }
    return f;
  }

  // ---- transmission ------------------------------------------------------------------------------------------

  private requests(reqs: NbdRequestWithData[]): void {
    for (const r of reqs) this.queued.push(r);
    this.dispatch();
  }

  /**
   * Start queued requests in order while the connection is under its limits; stop reading from the socket while any
   * wait, so what a client can make the server hold is bounded (requests, payload bytes, unread reply bytes).
   */
  private dispatch(): void {
    while (this.queued.length > 0 && !this.atLimit()) {
      const r = this.queued.shift()!;
      if (r.type === NbdCmd.DISC) {
        debug('NBD_CMD_DISC');
        this.queued.length = 0;
        this.phase = 'closing';
        this.sock.pause();
        break;
      }
      const bytes = r.type === NbdCmd.READ || r.type === NbdCmd.WRITE ? r.length : 0;
      this.inFlight++;
      this.inFlightBytes += bytes;
      this.run(r).then(
        () => this.done(bytes),
        (err: unknown) => {
          debug('request failed unexpectedly: %s', err instanceof Error ? err.message : String(err));
          this.done(bytes);
        },
      );
    }
    if (this.phase === 'closing') {
      this.finishIfIdle();
      return;
    }
    if (this.queued.length > 0 || this.atLimit()) {
      if (!this.paused) {
        this.paused = true;
        this.sock.pause();
      }
      if (this.sock.writableLength >= MAX_IN_FLIGHT_BYTES && !this.awaitingDrain) {
        this.awaitingDrain = true;
        this.sock.once('drain', () => {
          this.awaitingDrain = false;
          this.dispatch();
        });
      }
    } else if (this.paused && this.phase === 'transmission') {
      this.paused = false;
      this.sock.resume();
    }
  }

  /**
   * Too much in flight, or too many reply bytes the client has not read yet (a client that sends reads and never
   * reads the replies must not grow the server's memory without bound). One request always runs when none is in
   * flight, whatever its size.
   */
  private atLimit(): boolean {
    if (this.inFlight === 0) return this.sock.writableLength >= MAX_IN_FLIGHT_BYTES;
    return this.inFlight >= this.maxInFlight || this.inFlightBytes >= MAX_IN_FLIGHT_BYTES || this.sock.writableLength >= MAX_IN_FLIGHT_BYTES;
  }

  private done(bytes: number): void {
    this.inFlight--;
    this.inFlightBytes -= bytes;
    this.dispatch();
  }

  /** Run one request and send its reply; never rejects for what the namespace or client did. */
  private async run(r: NbdRequestWithData): Promise<void> {
    const exp = this.exp!;
    const ns = exp.namespace;
    const bs = ns.blockSize;
    const size = ns.sizeBytes;
    const end = r.offset + BigInt(r.length);
    const name = commandName(r.type);
    const isWrite = r.type === NbdCmd.WRITE || r.type === NbdCmd.WRITE_ZEROES || r.type === NbdCmd.TRIM;
    const check = (): [number, string] | undefined => {
      switch (r.type) {
        case NbdCmd.READ:
        case NbdCmd.WRITE:
        case NbdCmd.TRIM:
        case NbdCmd.WRITE_ZEROES:
        case NbdCmd.CACHE:
        case NbdCmd.BLOCK_STATUS:
        case NbdCmd.FLUSH:
          break;
        default:
          return [NbdErrno.EINVAL, `${name} is not supported`];
      }
      if (isWrite && exp.readOnly) return [NbdErrno.EPERM, `${name} on the read-only export "${exp.name}"`];
      if (r.type === NbdCmd.FLUSH) return undefined;
      if (end > size) return [r.type === NbdCmd.WRITE || r.type === NbdCmd.WRITE_ZEROES ? NbdErrno.ENOSPC : NbdErrno.EINVAL, `${name} of ${r.length} bytes at offset ${r.offset} goes past the end of the export (${size} bytes)`];
      if (r.offset % BigInt(bs) !== 0n || r.length % bs !== 0) return [NbdErrno.EINVAL, `${name} of ${r.length} bytes at offset ${r.offset} is not aligned to the ${bs}-byte block size`];
      if (r.type === NbdCmd.READ && r.length > NBD_MAX_PAYLOAD) return [NbdErrno.EINVAL, `${name} of ${r.length} bytes is larger than the ${NBD_MAX_PAYLOAD}-byte maximum`];
      if (r.type === NbdCmd.BLOCK_STATUS && (!this.structured || !this.allocationContext)) return [NbdErrno.EINVAL, `${name} needs structured replies and the base:allocation meta context`];
      if (r.type === NbdCmd.BLOCK_STATUS && r.length === 0) return [NbdErrno.EINVAL, `${name} of length 0`];
      if (r.type === NbdCmd.WRITE_ZEROES && r.flags & CmdFlag.FAST_ZERO && (r.flags & CmdFlag.NO_HOLE || !fastZero(ns))) {
        return [NbdErrno.ENOTSUP, 'a fast zero cannot be guaranteed for this request'];
      }
      return undefined;
    };
    const bad = check();
    if (bad) return this.sendError(r, bad[0], bad[1]);
    const lba = r.offset / BigInt(bs);
    const blocks = r.length / bs;
    try {
      switch (r.type) {
        case NbdCmd.READ: {
          const data = Buffer.allocUnsafe(r.length);
          if (blocks > 0) await ns.readInto(lba, data);
          return this.sendData(r, data);
        }
        case NbdCmd.WRITE:
          if (blocks > 0) await ns.write(lba, r.data!, { fua: (r.flags & CmdFlag.FUA) !== 0 });
          break;
        case NbdCmd.FLUSH:
          if (ns.controllerIdentity?.decoded.vwc.present !== false) await ns.flush();
          break;
        case NbdCmd.TRIM:
          if (blocks > 0) await ns.deallocate([{ lba, blocks }]);
          if (r.flags & CmdFlag.FUA && ns.controllerIdentity?.decoded.vwc.present !== false) await ns.flush();
          break;
        case NbdCmd.WRITE_ZEROES:
          if (blocks > 0) await ns.writeZeroes(lba, blocks, { deallocate: (r.flags & CmdFlag.NO_HOLE) === 0, fua: (r.flags & CmdFlag.FUA) !== 0 });
          break;
        case NbdCmd.CACHE:
          break;
        case NbdCmd.BLOCK_STATUS:
          // NVMe cannot say which blocks are allocated: one extent, all allocated data.
          this.write([encodeChunkBlockStatus(r.handle, ReplyFlag.DONE, BASE_ALLOCATION_ID, [{ length: r.length, flags: ALLOCATED }])]);
          return;
      }
    } catch (err) {
      const [errno, message] = toErrno(err, r.type);
      return this.sendError(r, errno, `${name} at offset ${r.offset}: ${message}`);
    }
    this.write([this.structured ? encodeChunkNone(r.handle) : encodeSimpleReply(r.handle, 0)]);
  }

  private sendData(r: NbdRequestWithData, data: Buffer): void {
    if (this.structured) {
      if (data.length === 0) this.write([encodeChunkNone(r.handle)]);
      else this.write([encodeChunkOffsetDataHeader(r.handle, ReplyFlag.DONE, r.offset, data.length), data]);
    } else this.write([encodeSimpleReply(r.handle, 0), data]);
  }

  private sendError(r: NbdRequestWithData, errno: number, message: string): void {
    debug('%s handle %s: errno %d: %s', commandName(r.type), r.handle, errno, message);
    this.write([this.structured ? encodeChunkError(r.handle, errno, message) : encodeSimpleReply(r.handle, errno)]);
  }

  /** One reply's buffers, written together (JavaScript runs them back to back, so replies never interleave). */
  private write(bufs: Buffer[]): void {
    if (!this.sock.destroyed) writeBatch(this.sock, bufs);
  }
}

/** Minimum, preferred and maximum block sizes of an export. */
export function blockSizes(ns: NbdNamespace): { min: number; preferred: number; max: number } {
  const min = ns.blockSize;
  const preferred = Math.max(4096, min);
  const mdts = ns.maxBlocksPerCommand * ns.blockSize;
  const max = Math.max(preferred, Math.min(NBD_MAX_PAYLOAD, mdts));
  return { min, preferred, max };
}

/** Write Zeroes with DEAC is fast when the namespace says it deallocates (DLFEAT bit 3) and deallocated blocks read 0. */
function fastZero(ns: NbdNamespace): boolean {
  const d = ns.identity.decoded.dlfeat;
  return d.writeZeroesDeallocate && d.readBehavior === 1;
}

/** NVMe status (or library error) → NBD errno and a message for people. */
export function toErrno(err: unknown, type: number): [number, string] {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof NvmeStatusError) {
    if (err.sct === StatusCodeType.Generic) {
      switch (err.sc) {
        case GenericStatus.LbaOutOfRange:
        case GenericStatus.CapacityExceeded:
          return [type === NbdCmd.WRITE || type === NbdCmd.WRITE_ZEROES ? NbdErrno.ENOSPC : NbdErrno.EINVAL, message];
        case GenericStatus.ReservationConflict:
        case GenericStatus.NamespaceWriteProtected:
          return [NbdErrno.EPERM, message];
        case GenericStatus.InvalidField:
        case GenericStatus.InvalidOpcode:
          return [NbdErrno.EINVAL, message];
      }
      return [NbdErrno.EIO, message];
    }
    if (err.sct === StatusCodeType.MediaAndDataIntegrity && err.sc === MediaStatus.AccessDenied) return [NbdErrno.EPERM, message];
    return [NbdErrno.EIO, message];
  }
  if (err instanceof NvmeofError) {
    if (err.code === ErrorCode.INVALID_ARGUMENT) return [NbdErrno.EINVAL, message];
    if (err.code === ErrorCode.UNSUPPORTED) return [NbdErrno.ENOTSUP, message];
    if (err.code === ErrorCode.INVALID_STATE) return [NbdErrno.ESHUTDOWN, message];
  }
  return [NbdErrno.EIO, message];
}

