/** Pieces every fuzz target shares: the finding error, the typed-error filter, and how inputs are walked and cut. */
import { NvmeofError } from '../src/errors.js';

/** A finding: what the fuzzer reports and saves. */
export class FuzzFinding extends Error {
  override name = 'FuzzFinding';
}

/** Run `fn`; a typed NvmeofError is the expected answer to bad bytes, anything else propagates. */
export function typed<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (err instanceof NvmeofError) return undefined;
    throw err;
  }
}

/** Walk a parsed value completely (getters, bigints, buffers), as a caller printing it would. */
export function touch(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x instanceof URLSearchParams ? x.toString() : x)) ?? '';
}

/** Deterministic chunk sizes from a seed (xorshift32): 1-byte, up to 8, up to 97 or up to 700-byte chunks (seed & 3). */
export function chunkSizes(seed: number, total: number): number[] {
  let s = (seed * 0x9e3779b1) >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s;
  };
  const mode = seed & 3;
  const out: number[] = [];
  let left = total;
  while (left > 0) {
    const n = mode === 0 ? 1 : mode === 1 ? 1 + (next() % 8) : mode === 2 ? 1 + (next() % 97) : 1 + (next() % 700);
    out.push(Math.min(n, left));
    left -= n;
  }
  return out;
}
