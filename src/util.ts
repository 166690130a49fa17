/**
 * Small helpers every layer above the pure protocol layer shares: the error an aborted signal stands for, racing a
 * promise against a timeout and a signal, and writing a list of buffers as one batch. One definition, so every layer
 * reports aborts alike and writes alike.
 */
import type { Buffer } from 'node:buffer';
import { AbortedError, InvalidArgumentError, NvmeofError } from './errors.js';

/**
 * The error an aborted `signal` stands for: its reason when that is already an nvmeof error, else an
 * `NVMEOF_ERR_ABORTED` error whose `cause` is the reason. `what` names the operation in the message.
 */
export function abortError(signal: AbortSignal, what = 'operation'): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof NvmeofError) return reason;
  return new AbortedError(reason instanceof Error ? `${what} aborted: ${reason.message}` : `${what} aborted`, { cause: reason });
}

/**
 * Race `p` against a timeout (`ms` > 0; the error comes from `onTimeout`) and an optional AbortSignal. The timer and
 * the abort listener are always removed. `ms` 0 means no timeout.
 */
export async function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error, signal?: AbortSignal): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        if (ms > 0) timer = setTimeout(() => reject(onTimeout()), ms);
        if (signal) {
          if (signal.aborted) reject(abortError(signal));
          onAbort = () => reject(abortError(signal));
          signal.addEventListener('abort', onAbort, { once: true });
        }
      }),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

/** Race `p` against an optional AbortSignal (no timeout). */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  return signal ? withTimeout(p, 0, () => abortError(signal), signal) : p;
}

/** Longest delay a Node.js timer takes (2^31 - 1 ms); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

function describeArg(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || v === undefined) return String(v);
  return typeof v;
}

/** `v` must be undefined or an AbortSignal (InvalidArgumentError naming `name` otherwise). */
export function checkSignal(name: string, v: unknown): AbortSignal | undefined {
  if (v !== undefined && !(v instanceof AbortSignal)) throw new InvalidArgumentError(`${name} must be an AbortSignal, got ${describeArg(v)}`);
  return v;
}

/** `v` must be undefined or a boolean (InvalidArgumentError naming `name` otherwise). */
export function checkBoolean(name: string, v: unknown): boolean | undefined {
  if (v !== undefined && typeof v !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, got ${describeArg(v)}`);
  return v;
}

/** `v` must be undefined or an object (InvalidArgumentError naming `name` otherwise). */
export function checkOptions(name: string, v: unknown): void {
  if (v !== undefined && (v === null || typeof v !== 'object')) throw new InvalidArgumentError(`${name} must be an object, got ${describeArg(v)}`);
}

/** `v` must be an integer in min..max (InvalidArgumentError naming `name` otherwise). */
export function checkInteger(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new InvalidArgumentError(`${name} must be an integer in ${min}..${max}, got ${describeArg(v)}`);
  return v;
}

/** A stream that can hold writes back and send them together: net.Socket, TlsSocket. */
export interface BatchWritable {
  write(chunk: Uint8Array): boolean;
  cork(): void;
  uncork(): void;
}

/**
 * Write `bufs[0, n)` as one batch: a single buffer as it is, several inside cork()/uncork() so they leave in one
 * system call. Returns what the last write returned (false: the stream's buffer is full, wait for 'drain').
 */
export function writeBatch(sock: BatchWritable, bufs: readonly Buffer[], n: number = bufs.length): boolean {
  if (n === 1) return sock.write(bufs[0]!);
  sock.cork();
  let ok = true;
  for (let i = 0; i < n; i++) ok = sock.write(bufs[i]!);
  sock.uncork();
  return ok;
}
