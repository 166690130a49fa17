/**
 * The tests' one reference CRC32C: bit at a time over the reflected Castagnoli polynomial 0x82F63B78, as the
 * NVMe/TCP spec defines the digest, independent of the table-driven and native code under test.
 * Passing a previous result as `crc` continues it.
 */
export function refCrc32c(b: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}
