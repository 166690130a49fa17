/**
 * RAM backing for a target namespace: a sparse array of fixed-size chunks allocated on first write.
 * Unwritten (or deallocated) ranges read as zeroes, so a large namespace costs memory only for the
 * ranges that were written.
 */
import { Buffer } from 'node:buffer';

/** Chunk size: 1 MiB. */
const CHUNK_SHIFT = 20;
const CHUNK = 1 << CHUNK_SHIFT;

/** A byte-addressed sparse RAM store of a fixed size. */
export class RamStore {
  /** Size in bytes. */
  readonly size: number;
  private readonly chunks = new Map<number, Buffer>();

  constructor(size: number, preallocate = false) {
    this.size = size;
    if (preallocate) for (let i = 0; i * CHUNK < size; i++) this.chunk(i);
  }

  /** Bytes of RAM currently allocated. */
  get allocatedBytes(): number {
    let n = 0;
    for (const c of this.chunks.values()) n += c.length;
    return n;
  }

  private chunk(index: number): Buffer {
    let c = this.chunks.get(index);
    if (c === undefined) {
      c = Buffer.alloc(Math.min(CHUNK, this.size - index * CHUNK));
      this.chunks.set(index, c);
    }
    return c;
  }

  /** Copy `length` bytes at `offset` into `out` (at `outOffset`). */
  readInto(offset: number, length: number, out: Buffer, outOffset = 0): void {
    let pos = offset;
    let o = outOffset;
    const end = offset + length;
    while (pos < end) {
      const index = Math.floor(pos / CHUNK);
      const within = pos - index * CHUNK;
      const n = Math.min(CHUNK - within, end - pos);
      const c = this.chunks.get(index);
      if (c === undefined) out.fill(0, o, o + n);
      else c.copy(out, o, within, within + n);
      pos += n;
      o += n;
    }
  }

  /** A new buffer holding `length` bytes at `offset`. */
  read(offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    this.readInto(offset, length, out);
    return out;
  }

  /** Write `src` at `offset`. */
  write(offset: number, src: Uint8Array): void {
    let pos = offset;
    let s = 0;
    const end = offset + src.length;
    while (pos < end) {
      const index = Math.floor(pos / CHUNK);
      const within = pos - index * CHUNK;
      const n = Math.min(CHUNK - within, end - pos);
      this.chunk(index).set(src.subarray(s, s + n), within);
      pos += n;
      s += n;
    }
  }

  /** Zero `length` bytes at `offset`; whole chunks are released. */
  zero(offset: number, length: number): void {
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const index = Math.floor(pos / CHUNK);
      const within = pos - index * CHUNK;
      const c = this.chunks.get(index);
      const n = Math.min(CHUNK - within, end - pos);
      if (c !== undefined) {
        if (within === 0 && n >= c.length) this.chunks.delete(index);
        else c.fill(0, within, within + n);
      }
      pos += n;
    }
  }

  /** True when the `data.length` bytes at `offset` equal `data`. */
  equals(offset: number, data: Uint8Array): boolean {
    let pos = offset;
    let s = 0;
    const end = offset + data.length;
    while (pos < end) {
      const index = Math.floor(pos / CHUNK);
      const within = pos - index * CHUNK;
      const n = Math.min(CHUNK - within, end - pos);
      const c = this.chunks.get(index);
      const part = data.subarray(s, s + n);
      if (c === undefined) {
        for (let i = 0; i < part.length; i++) if (part[i] !== 0) return false;
      } else if (Buffer.compare(c.subarray(within, within + n), part) !== 0) {
        return false;
      }
      pos += n;
      s += n;
    }
    return true;
  }

  /** Release all memory (the store then reads as zeroes). */
  clear(): void {
    this.chunks.clear();
  }
}
