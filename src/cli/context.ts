/**
 * What every CLI command gets: the I/O streams, the output format, the interrupt signal, and the helpers that
 * connect (tagging connection failures for the exit code) and always close what they opened.
 */
import { ErrorCode, connect, type ConnectOptions, type Controller } from '../index.js';
import type { OptionSpecs, Values } from './args.js';
import { addressesOf, connectFlags, portOf } from './args.js';
import { jsonText, type CliWriter } from './output.js';

/** The streams and environment the CLI runs with. */
export interface CliIo {
  stdout: CliWriter;
  stderr: CliWriter;
  /** Data for `write` when no --data file is given. */
  stdin?: AsyncIterable<Uint8Array | string> & { isTTY?: boolean };
  /** Aborting it stops the running command (Ctrl-C): monitor and perf end normally, anything else exits 130. */
  signal?: AbortSignal;
}

/** Output formats: `normal` (aligned text), `json`, and `binary` (raw bytes) where a command offers it. */
export type OutputFormat = 'normal' | 'json' | 'binary';

/** The context a command runs in. */
export interface Ctx {
  readonly io: CliIo;
  readonly format: OutputFormat;
  readonly signal: AbortSignal;
  /** Write text to stdout. */
  out(text: string): void;
  /** Write text to stderr. */
  err(text: string): void;
  /** Pretty JSON of a value (bigints as strings) to stdout. */
  json(value: unknown): void;
  /** One compact JSON object per line to stdout (streams: monitor, demo). */
  jsonLine(value: unknown): void;
}

/** A CLI command. */
export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Usage line(s) after "nvmeof". */
  usage: string;
  /** A paragraph or two for `nvmeof help <command>`. */
  description: string;
  /** The command's own options. */
  options: OptionSpecs;
  /** Connection options, listed separately in help. */
  connection?: OptionSpecs;
  /** Output formats the command offers. Default normal and json. */
  formats?: readonly OutputFormat[];
  /** Whether positional arguments are accepted. */
  positionals?: boolean;
  examples: string[];
  run(ctx: Ctx, v: Values): Promise<number | void>;
}

/** Exit codes a script can rely on. */
export const ExitCode = {
  OK: 0,
  /** The controller completed a command with an NVMe status error. */
  STATUS: 1,
  /** Bad usage: unknown command or option, missing or invalid value, invalid argument. */
  USAGE: 2,
  /** Could not connect: refused, unreachable, closed or timed out while connecting, no path, TLS handshake failed. */
  CONNECT: 3,
  /** A protocol error or anything else. */
  OTHER: 4,
  /** Interrupted (Ctrl-C) before the command finished. */
  INTERRUPTED: 130,
} as const;

const connectFailures = new WeakSet<object>();

/** Await a connection attempt; its failure is remembered as a connection failure (exit code 3). */
export async function connecting<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err !== null && typeof err === 'object') connectFailures.add(err);
    throw err;
  }
}

/** The exit code for an error. */
export function exitCodeOf(err: unknown): number {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case ErrorCode.STATUS:
      return ExitCode.STATUS;
    case ErrorCode.INVALID_ARGUMENT:
      return ExitCode.USAGE;
    case ErrorCode.ABORTED:
      return ExitCode.INTERRUPTED;
    case ErrorCode.CONNECTION_FAILED:
    case ErrorCode.NO_PATH:
    case ErrorCode.AUTH:
    case ErrorCode.TLS:
      return ExitCode.CONNECT;
    case ErrorCode.CONNECTION_CLOSED:
    case ErrorCode.TIMEOUT:
      return connectFailures.has(err as object) ? ExitCode.CONNECT : ExitCode.OTHER;
    default:
      return ExitCode.OTHER;
  }
}

/** Build the context of one command run. */
export function makeCtx(io: CliIo, format: OutputFormat, signal: AbortSignal): Ctx {
  return {
    io,
    format,
    signal,
    out: (t) => void io.stdout.write(t),
    err: (t) => void io.stderr.write(t),
    json: (v) => void io.stdout.write(jsonText(v)),
    jsonLine: (v) => void io.stdout.write(jsonText(v, true)),
  };
}

/** Close a controller; if the orderly shutdown fails, drop the connection. Never throws. */
export async function closeQuietly(ctrl: { close(): Promise<void>; destroy(err?: Error): void } | undefined): Promise<void> {
  if (!ctrl) return;
  try {
    await ctrl.close();
  } catch {
    ctrl.destroy();
  }
}

/** Connect options for the address in -a/-s and the connection flags. */
export function targetConnectOptions(ctx: Ctx, v: Values, defaults: { ioQueues?: number; events?: boolean } = {}): ConnectOptions {
  const flags = connectFlags(v, defaults);
  const addr = addressesOf(v, portOf(v, 4420))[0];
  const host = addr?.host ?? v.required('traddr', 'the target address');
  return { ...flags, host, port: addr?.port ?? 4420, signal: ctx.signal };
}

/** Connect to the subsystem named by the flags, run `fn`, and close the controller whatever happens. */
export async function withController<T>(
  ctx: Ctx,
  v: Values,
  defaults: { ioQueues?: number; events?: boolean },
  fn: (ctrl: Controller) => Promise<T>,
): Promise<T> {
  const ctrl = await connecting(connect(targetConnectOptions(ctx, v, defaults)));
  try {
    return await fn(ctrl);
  } finally {
    await closeQuietly(ctrl);
  }
}
