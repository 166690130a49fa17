/**
 * Verified-write records for multipath tests against the kernel target (multipath.test.ts, soak.ts): a record is
 * PER_WRITE blocks whose every 16 bytes name the LBA, the generation, a tag and the offset, so a read-back tells a
 * lost write (an older generation) from a torn one (blocks of different generations).
 */
import { Buffer } from 'node:buffer';

export const BLOCK = 512;
/** Blocks per write (4 KiB). */
export const PER_WRITE = 8;

/** Record `rec`, generation `gen`, marked with `tag` (a 32-bit value naming the test). */
export function record(rec: number, gen: number, tag: number): Buffer {
  const b = Buffer.alloc(PER_WRITE * BLOCK);
  for (let i = 0; i < b.length; i += 16) {
    b.writeUInt32LE(rec * PER_WRITE + Math.floor(i / BLOCK), i);
    b.writeUInt32LE(gen, i + 4);
    b.writeUInt32LE(tag, i + 8);
    b.writeUInt32LE(i, i + 12);
  }
  return b;
}

/** The generation of each block of a read-back record. */
export function generations(data: Buffer): Set<number> {
  const gens = new Set<number>();
  for (let i = 0; i < data.length; i += BLOCK) gens.add(data.readUInt32LE(i + 4));
  return gens;
}
