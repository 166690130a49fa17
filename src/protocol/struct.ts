/**
 * Table-driven codec for fixed-offset data structures (Identify data, log pages): each structure is a list of
 * [name, offset, kind, size] fields decoded into and encoded from plain objects.
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError, ProtocolError } from '../errors.js';

// ---------------------------------------------------------------------------------------------

/**
 * Kind of a fixed-offset field. `ascii`: space-padded ASCII string (SN, MN, FR);
 * `strz`: NUL-padded UTF-8 string (NQNs, transport addresses); `bytes`: raw bytes.
 */
export type FieldKind = 'u8' | 'u16' | 'u24' | 'u32' | 'u64' | 'u128' | 'ascii' | 'strz' | 'bytes';

/** One field: name, byte offset, kind and (for strings/bytes) the size in bytes. */
export type FieldSpec = readonly [name: string, offset: number, kind: FieldKind, size?: number];

const INT_BITS: Partial<Record<FieldKind, number>> = { u8: 8, u16: 16, u24: 24, u32: 32, u64: 64, u128: 128 };

/** ProtocolError for a structure that is shorter than it must be. */
export function structTooShort(what: string, need: number, got: number): ProtocolError {
  return new ProtocolError(`${what} is too short: ${got} bytes, at least ${need} required`, 0, 0);
}

/** Decode a string field: cut at the first NUL, then trim surrounding spaces. */
export function readFixedString(buf: Buffer, off: number, size: number, encoding: 'latin1' | 'utf8'): string {
  const field = buf.subarray(off, off + size);
  const nul = field.indexOf(0);
  return field.toString(encoding, 0, nul === -1 ? field.length : nul).trim();
}

/** Read a little-endian unsigned 128-bit value. */
export function readU128(buf: Buffer, off: number): bigint {
  return (buf.readBigUInt64LE(off + 8) << 64n) | buf.readBigUInt64LE(off);
}

/** Write a little-endian unsigned 128-bit value. */
export function writeU128(buf: Buffer, off: number, v: bigint): void {
  buf.writeBigUInt64LE(v & 0xffff_ffff_ffff_ffffn, off);
  buf.writeBigUInt64LE(v >> 64n, off + 8);
}

/** Decode every field of `specs` from `buf` at `base` into `out`. */
export function decodeFields(buf: Buffer, base: number, specs: readonly FieldSpec[], out: Record<string, unknown>): void {
  for (const [name, offset, kind, size = 0] of specs) {
    const off = base + offset;
    switch (kind) {
      case 'u8': out[name] = buf.readUInt8(off); break;
      case 'u16': out[name] = buf.readUInt16LE(off); break;
      case 'u24': out[name] = buf.readUIntLE(off, 3); break;
      case 'u32': out[name] = buf.readUInt32LE(off); break;
      case 'u64': out[name] = buf.readBigUInt64LE(off); break;
      case 'u128': out[name] = readU128(buf, off); break;
      case 'ascii': out[name] = readFixedString(buf, off, size, 'latin1'); break;
      case 'strz': out[name] = readFixedString(buf, off, size, 'utf8'); break;
      case 'bytes': out[name] = buf.subarray(off, off + size); break;
    }
  }
}

/**
 * Encode the fields of `specs` present in `values` into `buf` at `base`. Absent
 * (undefined) fields are left as they are (zero in a fresh buffer). Throws InvalidArgumentError
 * naming `what.field` for a value that does not fit.
 */
export function encodeFields(
  buf: Buffer, base: number, specs: readonly FieldSpec[], values: object, what: string,
): void {
  const record = values as Readonly<Record<string, unknown>>;
  for (const [name, offset, kind, size = 0] of specs) {
    const v = record[name];
    if (v === undefined) continue;
    const off = base + offset;
    const label = `${what}.${name}`;
    const bits = INT_BITS[kind];
    if (bits !== undefined) {
      if (bits <= 32) {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 2 ** bits - 1) {
          throw new InvalidArgumentError(`${label} must be an integer in 0..${2 ** bits - 1}, got ${String(v)}`);
        }
        if (bits === 8) buf.writeUInt8(v, off);
        else if (bits === 16) buf.writeUInt16LE(v, off);
        else if (bits === 24) buf.writeUIntLE(v, off, 3);
        else buf.writeUInt32LE(v, off);
      } else {
        let b: bigint;
        if (typeof v === 'bigint') b = v;
        else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
        else throw new InvalidArgumentError(`${label} must be a bigint (or safe integer), got ${String(v)}`);
        if (b < 0n || b >= 1n << BigInt(bits)) {
          throw new InvalidArgumentError(`${label} does not fit in ${bits} bits: ${b}`);
        }
        if (bits === 64) buf.writeBigUInt64LE(b, off);
        else writeU128(buf, off, b);
      }
      continue;
    }
    if (kind === 'bytes') {
      if (!(v instanceof Uint8Array) || v.length !== size) {
        throw new InvalidArgumentError(`${label} must be a Buffer of exactly ${size} bytes`);
      }
      buf.set(v, off);
      continue;
    }
    if (typeof v !== 'string') throw new InvalidArgumentError(`${label} must be a string`);
    if (kind === 'ascii') {
      if (!/^[\x20-\x7e]*$/.test(v)) throw new InvalidArgumentError(`${label} must be printable ASCII`);
      if (v.length > size) throw new InvalidArgumentError(`${label} is longer than ${size} characters`);
      buf.fill(0x20, off, off + size);
      buf.write(v, off, 'latin1');
    } else {
      const bytes = Buffer.from(v, 'utf8');
      if (bytes.includes(0)) throw new InvalidArgumentError(`${label} must not contain NUL`);
      if (bytes.length >= size) {
        throw new InvalidArgumentError(`${label} is ${bytes.length} bytes of UTF-8; at most ${size - 1} fit`);
      }
      buf.fill(0, off, off + size);
      bytes.copy(buf, off);
    }
  }
}
