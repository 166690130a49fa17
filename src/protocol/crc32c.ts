/**
 * CRC32C (Castagnoli), the checksum used for NVMe/TCP header and data digests.
 *
 * `crc32c()` uses the optional native package `@node-rs/crc32` (SSE4.2 / ARMv8 CRC instructions) for inputs long
 * enough that the call into native code pays off, when that package is installed and gives the right answer for a
 * known vector; otherwise, and for short inputs such as PDU headers, the pure TypeScript code below.
 * `setCrc32cImplementation('js')` forces the pure code (for comparisons).
 *
 * Table-driven, slicing-by-16: sixteen 256-entry tables let the main loop fold 16 input bytes per
 * iteration. On little-endian hosts the main loop reads the input as 32-bit words through an
 * Int32Array view (no copy); otherwise, and for short inputs, it reads bytes.
 */

import { Buffer } from 'node:buffer';
import { createRequire } from 'node:module';

/** Reflected Castagnoli polynomial. */
const POLY = 0x82f63b78;

function makeTables(): Int32Array[] {
  const t: Int32Array[] = [];
  for (let k = 0; k < 16; k++) t.push(new Int32Array(256));
  const t0 = t[0]!;
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let j = 0; j < 8; j++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[n] = c;
  }
  for (let k = 1; k < 16; k++) {
    const prev = t[k - 1]!;
    const cur = t[k]!;
    for (let n = 0; n < 256; n++) {
      const v = prev[n]!;
      cur[n] = (v >>> 8) ^ t0[v & 0xff]!;
    }
  }
  return t;
}

const TABLES = makeTables();
const T0 = TABLES[0]!, T1 = TABLES[1]!, T2 = TABLES[2]!, T3 = TABLES[3]!;
const T4 = TABLES[4]!, T5 = TABLES[5]!, T6 = TABLES[6]!, T7 = TABLES[7]!;
const T8 = TABLES[8]!, T9 = TABLES[9]!, T10 = TABLES[10]!, T11 = TABLES[11]!;
const T12 = TABLES[12]!, T13 = TABLES[13]!, T14 = TABLES[14]!, T15 = TABLES[15]!;

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Below this length the word-view setup costs more than it saves. */
const WORD_PATH_MIN = 64;

/** Byte-reading slicing-by-16 over b[start, end). `c` is the raw (un-inverted) register. */
function crcBytes(b: Uint8Array, start: number, end: number, c: number): number {
  let i = start;
  const blockEnd = start + ((end - start) & ~15);
  for (; i < blockEnd; i += 16) {
    const a = c ^ (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
    c =
      T15[a & 0xff]! ^ T14[(a >>> 8) & 0xff]! ^ T13[(a >>> 16) & 0xff]! ^ T12[a >>> 24]! ^
      T11[b[i + 4]!]! ^ T10[b[i + 5]!]! ^ T9[b[i + 6]!]! ^ T8[b[i + 7]!]! ^
      T7[b[i + 8]!]! ^ T6[b[i + 9]!]! ^ T5[b[i + 10]!]! ^ T4[b[i + 11]!]! ^
      T3[b[i + 12]!]! ^ T2[b[i + 13]!]! ^ T1[b[i + 14]!]! ^ T0[b[i + 15]!]!;
  }
  for (; i < end; i++) c = T0[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

/**
 * The CRC32C of `data`, always computed by the pure TypeScript code.
 *
 * Returns the finished value (already inverted), as an unsigned 32-bit number. Passing a previous
 * result as `crc` continues it: `crc32c(b, crc32c(a)) === crc32c(concat(a, b))`.
 * On the NVMe/TCP wire a digest is this value stored as a little-endian u32.
 */
export function crc32cJs(data: Uint8Array, crc = 0): number {
  let c = ~crc;
  const n = data.length;
  if (n < WORD_PATH_MIN || !LITTLE_ENDIAN) return ~crcBytes(data, 0, n, c) >>> 0;

  // Bring the read position to a 4-byte boundary of the underlying ArrayBuffer, then fold
  // 16-byte blocks read as four little-endian words.
  const off = data.byteOffset;
  const pre = (4 - (off & 3)) & 3;
  c = crcBytes(data, 0, pre, c);
  const blocks = (n - pre) >>> 4;
  const words = new Int32Array(data.buffer, off + pre, blocks * 4);
  const wEnd = blocks * 4;
  for (let j = 0; j < wEnd; j += 4) {
    const a = c ^ words[j]!;
    const d = words[j + 1]!;
    const e = words[j + 2]!;
    const f = words[j + 3]!;
    c =
      T15[a & 0xff]! ^ T14[(a >>> 8) & 0xff]! ^ T13[(a >>> 16) & 0xff]! ^ T12[a >>> 24]! ^
      T11[d & 0xff]! ^ T10[(d >>> 8) & 0xff]! ^ T9[(d >>> 16) & 0xff]! ^ T8[d >>> 24]! ^
      T7[e & 0xff]! ^ T6[(e >>> 8) & 0xff]! ^ T5[(e >>> 16) & 0xff]! ^ T4[e >>> 24]! ^
      T3[f & 0xff]! ^ T2[(f >>> 8) & 0xff]! ^ T1[(f >>> 16) & 0xff]! ^ T0[f >>> 24]!;
  }
  c = crcBytes(data, pre + blocks * 16, n, c);
  return ~c >>> 0;
}

type NativeCrc = (input: Buffer, initialState?: number) => number;

/** Inputs shorter than this go to the pure code: the call into native code costs more than it saves. */
export const CRC32C_NATIVE_MIN_LENGTH = 128;

function loadNative(): NativeCrc | null {
  try {
    const req = createRequire(import.meta.url);
    const mod = req('@node-rs/crc32') as { crc32c?: NativeCrc };
    const fn = mod.crc32c;
    if (typeof fn !== 'function') return null;
    // Trust it only when it agrees with the spec's check value and continues a running CRC as we do.
    const check = Buffer.from('123456789');
    if (fn(check) !== 0xe3069283 || fn(check.subarray(4), fn(check.subarray(0, 4))) !== 0xe3069283) return null;
    return fn;
  } catch {
    return null;
  }
}

const native = loadNative();

const nativeCrc32c = (data: Uint8Array, crc = 0): number => {
  if (data.length < CRC32C_NATIVE_MIN_LENGTH) return crc32cJs(data, crc);
  const b = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return native!(b, crc) >>> 0;
};

let impl: (data: Uint8Array, crc?: number) => number = native ? nativeCrc32c : crc32cJs;

/** Which implementation `crc32c()` uses for long inputs: 'native' (@node-rs/crc32) or 'js'. */
export function crc32cImplementation(): 'native' | 'js' {
  return impl === crc32cJs ? 'js' : 'native';
}

/**
 * Choose the implementation `crc32c()` uses for long inputs: 'native' (only when @node-rs/crc32 loaded and passed
 * its check) or 'js'. Returns the implementation now in use.
 */
export function setCrc32cImplementation(which: 'native' | 'js'): 'native' | 'js' {
  impl = which === 'native' && native ? nativeCrc32c : crc32cJs;
  return crc32cImplementation();
}

/**
 * Compute the CRC32C of `data`.
 *
 * Returns the finished value (already inverted), as an unsigned 32-bit number. Passing a previous
 * result as `crc` continues it: `crc32c(b, crc32c(a)) === crc32c(concat(a, b))`.
 * On the NVMe/TCP wire a digest is this value stored as a little-endian u32.
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  return impl(data, crc);
}
