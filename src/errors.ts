/**
 * One error hierarchy for the whole library. Every error has a stable `code` string that callers can
 * match on (`err.code === 'NVMEOF_ERR_STATUS'`); messages are for people and may change.
 *
 * This module has no Node.js dependencies so that every layer, including the pure protocol layer,
 * can use it.
 */

/** Every stable error code the library produces. See docs/errors.md. */
export const ErrorCode = {
  /** The controller completed a command with a non-zero NVMe status. */
  STATUS: 'NVMEOF_ERR_STATUS',
  /** The peer broke the NVMe/TCP protocol (malformed PDU, bad digest, unknown CID...). */
  PROTOCOL: 'NVMEOF_ERR_PROTOCOL',
  /** A header or data digest did not match. */
  DIGEST: 'NVMEOF_ERR_DIGEST',
  /** The peer sent a C2HTermReq / H2CTermReq. */
  TERMINATED: 'NVMEOF_ERR_TERMINATED',
  /** A command, connect, or state wait did not finish in time. */
  TIMEOUT: 'NVMEOF_ERR_TIMEOUT',
  /** The connection closed (or was destroyed) while the operation was pending. */
  CONNECTION_CLOSED: 'NVMEOF_ERR_CONNECTION_CLOSED',
  /** Could not establish the TCP connection. */
  CONNECTION_FAILED: 'NVMEOF_ERR_CONNECTION_FAILED',
  /** The caller passed an invalid argument; nothing was sent. */
  INVALID_ARGUMENT: 'NVMEOF_ERR_INVALID_ARGUMENT',
  /** The operation was aborted through an AbortSignal. */
  ABORTED: 'NVMEOF_ERR_ABORTED',
  /** The keep-alive exchange failed; the controller is considered dead. */
  KEEP_ALIVE: 'NVMEOF_ERR_KEEP_ALIVE',
  /** The controller is in a state that does not allow the operation (closed, not ready, fatal status). */
  INVALID_STATE: 'NVMEOF_ERR_INVALID_STATE',
  /** The controller reported something the library cannot work with (e.g. CSTS.CFS, unsupported version). */
  CONTROLLER: 'NVMEOF_ERR_CONTROLLER',
  /** No usable path is left (multipath). */
  NO_PATH: 'NVMEOF_ERR_NO_PATH',
  /** The controller does not support the requested command or feature (e.g. ONCS lacks Compare); nothing was sent. */
  UNSUPPORTED: 'NVMEOF_ERR_UNSUPPORTED',
  /** An SPDK JSON-RPC call returned an error object (see `SpdkRpcError` in nvmeof/spdk). */
  SPDK_RPC: 'NVMEOF_ERR_SPDK_RPC',
  /** An NBD client broke the NBD protocol (bad magic, oversize or malformed request or option). */
  NBD_PROTOCOL: 'NVMEOF_ERR_NBD_PROTOCOL',
  /** DH-HMAC-CHAP in-band authentication failed (either side, with the reason in words; see `AuthError`). */
  AUTH: 'NVMEOF_ERR_AUTH',
  /** `nvmeof serve`: no managed object (controller, discovery controller, multipath namespace) has that id. */
  NOT_FOUND: 'NVMEOF_ERR_NOT_FOUND',
  /** `nvmeof serve`: the object's management queue is full; try again later (HTTP 429). */
  BUSY: 'NVMEOF_ERR_BUSY',
  /** `nvmeof serve`: the request carried no valid bearer token (HTTP 401). */
  UNAUTHORIZED: 'NVMEOF_ERR_UNAUTHORIZED',
  /** `nvmeof serve`: an unexpected failure inside the daemon (HTTP 500); the daemon logs it. */
  INTERNAL: 'NVMEOF_ERR_INTERNAL',
  /** The TLS 1.3 handshake or record layer failed (wrong key, alert, cipher or version not acceptable; see `TlsError`). */
  TLS: 'NVMEOF_ERR_TLS',
} as const;

/** One of the {@link ErrorCode} strings. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Options of the error constructors. */
export interface NvmeofErrorOptions {
  /** The underlying error (`err.cause`). */
  cause?: unknown;
}

/**
 * Registered symbol under which every nvmeof error records the names of its classes. `instanceof` checks it, so an
 * error thrown by one copy of the package (a second install in node_modules, or the CJS and ESM builds side by side)
 * is still an instance of the other copy's classes, as undici does for its errors.
 */
const kErrorClasses = Symbol.for('nvmeof.error.classes');

/** The class names from `ctor` up to and including NvmeofError. */
function classNames(ctor: unknown): readonly string[] {
  const names: string[] = [];
  for (let c = ctor as { name?: string } | null; c && c !== Error && c !== Function.prototype; c = Object.getPrototypeOf(c) as { name?: string } | null) {
    if (typeof c.name === 'string' && c.name) names.push(c.name);
  }
  return names;
}

/**
 * Base class of every error thrown by nvmeof. Match on {@link NvmeofError.code}; `instanceof` works across duplicate
 * copies of the package.
 */
export class NvmeofError extends Error {
  /** Stable error code to match on. */
  readonly code: ErrorCodeValue;
  declare readonly [kErrorClasses]: readonly string[];

  constructor(code: ErrorCodeValue, message: string, options?: NvmeofErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
    Object.defineProperty(this, kErrorClasses, { value: classNames(new.target), enumerable: false });
  }

  /** `x instanceof C` for C = NvmeofError or any subclass, by class name, across copies of the package. */
  static override [Symbol.hasInstance](x: unknown): boolean {
    if (typeof x !== 'object' || x === null) return false;
    const names = (x as { [kErrorClasses]?: unknown })[kErrorClasses];
    if (!Array.isArray(names)) return false;
    return names.includes((this as { name: string }).name);
  }
}

/** Decoded fields of an NVMe completion status word (bits 15:1 of CQE DW3 upper half). */
export interface NvmeStatusInfo {
  /** Status Code Type (0 generic, 1 command specific, 2 media/data integrity, 3 path related, 7 vendor). */
  sct: number;
  /** Status Code. */
  sc: number;
  /** Command Retry Delay index (0..3). */
  crd: number;
  /** More information available in the Error Information log. */
  more: boolean;
  /** Do Not Retry. */
  dnr: boolean;
  /** The spec's name for this status, e.g. "Invalid Field in Command". */
  name: string;
  /** A sentence a person can act on. */
  description: string;
}

/** What is known about the failed command when an {@link NvmeStatusError} is built. */
export interface StatusErrorContext {
  /** Opcode of the failed command. */
  opcode?: number;
  /** Human name of the failed command, e.g. "Read", "Connect". */
  command?: string;
  /** Queue ID the command ran on. */
  qid?: number;
  /** Command identifier. */
  cid?: number;
  /** Completion-specific DW0 (e.g. Connect IATTR/IPO). */
  dw0?: number;
  /** Completion-specific DW1. */
  dw1?: number;
  /** An overriding, more specific message (e.g. naming the host and subsystem NQNs). */
  message?: string;
}

/** The controller completed a command with a non-successful NVMe status. */
export class NvmeStatusError extends NvmeofError {
  /** Status Code Type (0 generic, 1 command specific, 2 media/data integrity, 3 path related). */
  readonly sct: number;
  /** Status Code. */
  readonly sc: number;
  /** Command Retry Delay index (0..3). */
  readonly crd: number;
  /** More information is in the Error Information log. */
  readonly more: boolean;
  /** Do Not Retry. */
  readonly dnr: boolean;
  /** The spec's name for the status. */
  readonly statusName: string;
  /** Opcode of the failed command, when known. */
  readonly opcode: number | undefined;
  /** Name of the failed command, e.g. "Read", when known. */
  readonly command: string | undefined;
  /** Queue ID the command ran on, when known. */
  readonly qid: number | undefined;
  /** Command identifier, when known. */
  readonly cid: number | undefined;
  /** Completion DW0 (command specific, e.g. Connect IATTR/IPO). */
  readonly dw0: number;
  /** Completion DW1. */
  readonly dw1: number;

  constructor(status: NvmeStatusInfo, ctx: StatusErrorContext = {}) {
    const cmd = ctx.command ?? (ctx.opcode === undefined ? 'command' : `opcode 0x${ctx.opcode.toString(16).padStart(2, '0')}`);
    const where = ctx.qid === undefined ? '' : ` on queue ${ctx.qid}`;
    const hex = `SCT 0x${status.sct.toString(16)}, SC 0x${status.sc.toString(16).padStart(2, '0')}${status.dnr ? ', DNR' : ''}`;
    const msg = ctx.message ?? `${cmd}${where} failed: ${status.name} (${hex}): ${status.description}`;
    super(ErrorCode.STATUS, ctx.message ? `${msg} [${status.name}; ${hex}]` : msg);
    this.sct = status.sct;
    this.sc = status.sc;
    this.crd = status.crd;
    this.more = status.more;
    this.dnr = status.dnr;
    this.statusName = status.name;
    this.opcode = ctx.opcode;
    this.command = ctx.command;
    this.qid = ctx.qid;
    this.cid = ctx.cid;
    this.dw0 = ctx.dw0 ?? 0;
    this.dw1 = ctx.dw1 ?? 0;
  }
}

/** The peer broke the NVMe/TCP protocol. `fes`/`fei` are what a TermReq reports for it. */
export class ProtocolError extends NvmeofError {
  /** Fatal Error Status for a TermReq (1 invalid header field, 2 PDU sequence error, 3 header digest error, 4 data transfer out of range, 5 data transfer limit exceeded, 6 unsupported parameter). */
  readonly fes: number;
  /** Fatal Error Information: byte offset of the offending field for FES 1, else 0 or a value. */
  readonly fei: number;

  constructor(message: string, fes = 1, fei = 0, code: ErrorCodeValue = ErrorCode.PROTOCOL, options?: NvmeofErrorOptions) {
    super(code, message, options);
    this.fes = fes;
    this.fei = fei;
  }
}

/** A header digest or data digest did not match (`NVMEOF_ERR_DIGEST`). */
export class DigestError extends ProtocolError {
  /** Which digest failed. */
  readonly kind: 'header' | 'data';
  constructor(kind: 'header' | 'data', expected: number, actual: number) {
    super(
      `${kind} digest mismatch: expected 0x${expected.toString(16).padStart(8, '0')}, got 0x${actual.toString(16).padStart(8, '0')}`,
      kind === 'header' ? 3 : 0,
      0,
      ErrorCode.DIGEST,
    );
    this.kind = kind;
  }
}

/** The peer terminated the connection with a TermReq PDU (`NVMEOF_ERR_TERMINATED`). */
export class TerminatedError extends NvmeofError {
  /** Fatal Error Status the peer reported. */
  readonly fes: number;
  /** Fatal Error Information the peer reported. */
  readonly fei: number;
  constructor(message: string, fes: number, fei: number) {
    super(ErrorCode.TERMINATED, message);
    this.fes = fes;
    this.fei = fei;
  }
}

/** A command, a connect or a state wait did not finish in time (`NVMEOF_ERR_TIMEOUT`). */
export class TimeoutError extends NvmeofError {
  constructor(message: string, options?: NvmeofErrorOptions) {
    super(ErrorCode.TIMEOUT, message, options);
  }
}

/** The connection closed, or was destroyed, while the operation was pending (`NVMEOF_ERR_CONNECTION_CLOSED`). */
export class ConnectionClosedError extends NvmeofError {
  constructor(message = 'connection closed', options?: NvmeofErrorOptions) {
    super(ErrorCode.CONNECTION_CLOSED, message, options);
  }
}

/** The TCP connection could not be established (`NVMEOF_ERR_CONNECTION_FAILED`). */
export class ConnectionFailedError extends NvmeofError {
  constructor(message: string, options?: NvmeofErrorOptions) {
    super(ErrorCode.CONNECTION_FAILED, message, options);
  }
}

/** The caller passed an invalid argument; nothing was sent (`NVMEOF_ERR_INVALID_ARGUMENT`). The message names the value. */
export class InvalidArgumentError extends NvmeofError {
  constructor(message: string, options?: NvmeofErrorOptions) {
    super(ErrorCode.INVALID_ARGUMENT, message, options);
  }
}

/** Rejected because an AbortSignal fired; `cause` is the signal's reason. */
export class AbortedError extends NvmeofError {
  constructor(message = 'operation aborted', options?: NvmeofErrorOptions) {
    super(ErrorCode.ABORTED, message, options);
  }
}

/** The keep-alive exchange failed and the controller is considered dead (`NVMEOF_ERR_KEEP_ALIVE`). */
export class KeepAliveError extends NvmeofError {
  constructor(message: string, options?: NvmeofErrorOptions) {
    super(ErrorCode.KEEP_ALIVE, message, options);
  }
}

/** The object is in a state that does not allow the operation, e.g. closed (`NVMEOF_ERR_INVALID_STATE`). */
export class InvalidStateError extends NvmeofError {
  constructor(message: string, options?: NvmeofErrorOptions) {
    super(ErrorCode.INVALID_STATE, message, options);
  }
}

/** The controller reported something the library cannot work with, e.g. CSTS.CFS or an unusable block size (`NVMEOF_ERR_CONTROLLER`). */
export class ControllerError extends NvmeofError {
  constructor(message: string, options?: NvmeofErrorOptions) {
    super(ErrorCode.CONTROLLER, message, options);
  }
}

/** No usable path is left to a multipath namespace (`NVMEOF_ERR_NO_PATH`). */
export class NoPathError extends NvmeofError {
  constructor(message: string, options?: NvmeofErrorOptions) {
    super(ErrorCode.NO_PATH, message, options);
  }
}

/** The controller does not support the command or feature; nothing was sent (`NVMEOF_ERR_UNSUPPORTED`). */
export class UnsupportedError extends NvmeofError {
  constructor(message: string, options?: NvmeofErrorOptions) {
    super(ErrorCode.UNSUPPORTED, message, options);
  }
}

/** An NBD client broke the NBD protocol; the server closes only that connection (`NVMEOF_ERR_NBD_PROTOCOL`). */
export class NbdProtocolError extends NvmeofError {
  constructor(message: string, options?: NvmeofErrorOptions) {
    super(ErrorCode.NBD_PROTOCOL, message, options);
  }
}

/** Who ended a failed DH-HMAC-CHAP transaction: the controller (AUTH_Failure1) or the host (AUTH_Failure2 / refusal). */
export type AuthFailureSide = 'host' | 'controller';

/**
 * DH-HMAC-CHAP in-band authentication failed (`NVMEOF_ERR_AUTH`). The message says which side failed and why; it
 * never contains a secret.
 */
export class AuthError extends NvmeofError {
  /** 'controller' when the controller rejected the host (AUTH_Failure1), 'host' when the host refused the controller. */
  readonly side: AuthFailureSide;
  /** Reason code explanation of the AUTH_Failure message sent or received (1 failed .. 7 incorrect message), if any. */
  readonly reason: number | undefined;
  /** Queue the transaction ran on, when known. */
  readonly qid: number | undefined;
  constructor(message: string, side: AuthFailureSide, o: { reason?: number; qid?: number } & NvmeofErrorOptions = {}) {
    super(ErrorCode.AUTH, message, o);
    this.side = side;
    this.reason = o.reason;
    this.qid = o.qid;
  }
}

/**
 * The TLS channel of a queue failed (`NVMEOF_ERR_TLS`): the handshake (wrong key, an alert from the target, a cipher
 * suite or version the host does not accept) or the record layer afterwards. The message never contains key bytes.
 */
export class TlsError extends NvmeofError {
  /** The TLS alert description received from the peer (RFC 8446 6), if the peer sent one. */
  readonly alert: number | undefined;
  constructor(message: string, o: { alert?: number } & NvmeofErrorOptions = {}) {
    super(ErrorCode.TLS, message, o);
    this.alert = o.alert;
  }
}

/** True when `err` is an nvmeof error with the given code. */
export function isNvmeofError(err: unknown, code?: ErrorCodeValue): err is NvmeofError {
  return err instanceof NvmeofError && (code === undefined || err.code === code);
}
