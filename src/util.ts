/**
 * Small asynchronous helpers every layer above the pure protocol layer shares: the error an aborted signal stands for,
 * and racing a promise against a timeout and a signal. One definition, so every layer reports aborts alike.
 */
import { AbortedError, NvmeofError } from './errors.js';

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
