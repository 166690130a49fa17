/**
 * Splits a byte stream into top-level JSON values. SPDK's JSON-RPC server writes response objects back to back on
 * the socket (usually, but not necessarily, separated by a newline), and a read may end anywhere, including inside a
 * string or a multi-byte UTF-8 sequence, or hold several values.
 *
 * The scanner only looks at the ASCII bytes `{ } [ ] " \` and whitespace; bytes of multi-byte UTF-8 sequences never
 * collide with those, so scanning bytes is safe. Scanner state survives between chunks, so each byte is looked at
 * once however a large value is split; the bytes of one value are joined only when the value is complete.
 */
import { Buffer } from 'node:buffer';
import { ErrorCode, NvmeofError } from '../errors.js';

/** The stream does not hold a sequence of JSON objects or arrays (code `NVMEOF_ERR_SPDK_RPC`). */
export class JsonStreamError extends NvmeofError {
  constructor(message: string) {
    super(ErrorCode.SPDK_RPC, message);
  }
}

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isSeparator(b: number): boolean {
  // JSON whitespace, plus NUL, which some JSON-RPC peers put between messages.
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09 || b === 0x00;
}

/** Incremental splitter of a stream of JSON objects/arrays. */
export class JsonValueStream {
  private readonly maxValueBytes: number;
  /** Pieces of the value being scanned (the first one starts at the value's first byte). */
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private depth = 0;
  private inString = false;
  private escape = false;

  /** @param maxValueBytes largest accepted value; a longer one is an error (bounds memory). Default 64 MiB. */
  constructor(maxValueBytes = 64 * 1024 * 1024) {
    this.maxValueBytes = maxValueBytes;
  }

  /** True when bytes of an unfinished value are buffered. */
  get pending(): boolean {
    return this.depth > 0;
  }

  /**
   * Feeds one chunk; returns the values it completed, in order. Throws JsonStreamError on a stream that is not a
   * sequence of JSON objects/arrays (after which the stream is unusable), or SyntaxError from JSON.parse.
   */
  push(chunk: Buffer): unknown[] {
    const out: unknown[] = [];
    let start = this.depth > 0 ? 0 : -1; // offset in `chunk` where the current value's bytes begin
    const n = chunk.length;
    for (let i = 0; i < n; i++) {
      const b = chunk[i] as number;
      if (this.depth === 0) {
        if (isSeparator(b)) continue;
        if (b !== LBRACE && b !== LBRACKET) {
          throw new JsonStreamError(
            `expected a JSON object or array, got byte 0x${b.toString(16).padStart(2, '0')} ('${String.fromCharCode(b)}')`,
          );
        }
        this.depth = 1;
        start = i;
        continue;
      }
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (b === BACKSLASH) this.escape = true;
        else if (b === QUOTE) this.inString = false;
        continue;
      }
      if (b === QUOTE) this.inString = true;
      else if (b === LBRACE || b === LBRACKET) this.depth++;
      else if (b === RBRACE || b === RBRACKET) {
        if (--this.depth === 0) {
          out.push(this.finish(chunk.subarray(start, i + 1)));
          start = -1;
        }
      }
    }
    if (this.depth > 0 && start >= 0) {
      const rest = chunk.subarray(start);
      this.partsBytes += rest.length;
      if (this.partsBytes > this.maxValueBytes) {
        throw new JsonStreamError(`JSON value larger than ${this.maxValueBytes} bytes`);
      }
      // Copy: the caller may reuse `chunk`.
      this.parts.push(Buffer.from(rest));
    }
    return out;
  }

  private finish(last: Buffer): unknown {
    let bytes: Buffer;
    if (this.parts.length === 0) bytes = last;
    else {
      if (this.partsBytes + last.length > this.maxValueBytes) {
        throw new JsonStreamError(`JSON value larger than ${this.maxValueBytes} bytes`);
      }
      this.parts.push(last);
      bytes = Buffer.concat(this.parts, this.partsBytes + last.length);
    }
    this.parts = [];
    this.partsBytes = 0;
    return JSON.parse(bytes.toString('utf8'));
  }
}
