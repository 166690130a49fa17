/**
 * Output helpers of the CLI: the writer abstraction, aligned tables, JSON with bigints as strings, hex dumps, byte
 * and duration formatting, and a progress line for terminals.
 */
import { Buffer } from 'node:buffer';

/** Where the CLI writes: process.stdout / process.stderr, or a collector in tests. */
export interface CliWriter {
  write(chunk: string | Uint8Array): boolean;
  /** True when the writer is a terminal (progress bars, hex dumps instead of raw bytes). */
  isTTY?: boolean;
  /** Terminal width, when known. */
  columns?: number;
  /** Used to wait for 'drain' when write() returns false. */
  once?(event: 'drain', listener: () => void): unknown;
}

/** Write a chunk and wait for 'drain' when the writer asks for it. */
export async function writeAll(w: CliWriter, chunk: string | Uint8Array): Promise<void> {
  if (w.write(chunk) || typeof w.once !== 'function') return;
  await new Promise<void>((resolve) => w.once!('drain', resolve));
}

/** Column of a {@link formatTable} table. */
export interface Column {
  header: string;
  /** Default 'left'. */
  align?: 'left' | 'right';
}

/**
 * An aligned text table: a header row (unless `headers` is false), then one row per entry, columns separated by two
 * spaces. The last column is not padded (no trailing spaces). Cells may not contain newlines.
 */
export function formatTable(columns: readonly (Column | string)[], rows: readonly (readonly string[])[], opts: { headers?: boolean } = {}): string {
  const cols = columns.map((c) => (typeof c === 'string' ? { header: c } : c));
  const headers = opts.headers !== false;
  const widths = cols.map((c, i) => Math.max(headers ? c.header.length : 0, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cols
      .map((c, i) => {
        const cell = cells[i] ?? '';
        const last = i === cols.length - 1;
        if (c.align === 'right') return cell.padStart(widths[i]!);
        return last ? cell : cell.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  return [...(headers ? [line(cols.map((c) => c.header))] : []), ...rows.map(line)].join('\n') + '\n';
}

/** "name : value" lines with the names padded to one width (as nvme-cli prints identify data). */
export function formatFields(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...fields.map(([k]) => k.length));
  return fields.map(([k, v]) => `${k.padEnd(width)} : ${v}`).join('\n') + '\n';
}

/**
 * A JSON-friendly copy of a value: bigints become decimal strings, Buffers and Uint8Arrays lower-case hex strings,
 * Errors `{ code, message }`, undefined object members are dropped, and the keys listed in `omit` are left out at
 * every depth.
 */
export function toJson(value: unknown, omit: ReadonlySet<string> = new Set()): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
  if (value instanceof Error) return errorJson(value);
  if (Array.isArray(value)) return value.map((v) => toJson(v, omit));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined || typeof v === 'function' || omit.has(k)) continue;
    out[k] = toJson(v, omit);
  }
  return out;
}

/** `{ code, message }` of an error (code null when it has none). */
export function errorJson(err: Error): { code: string | null; message: string } {
  const code = (err as { code?: unknown }).code;
  return { code: typeof code === 'string' ? code : null, message: err.message };
}

/** Pretty JSON (two-space indent) of {@link toJson}(value), with a final newline. */
export function jsonText(value: unknown, compact = false): string {
  return JSON.stringify(toJson(value), null, compact ? undefined : 2) + '\n';
}

/** `hexdump -C` style lines: offset, 16 bytes in hex, printable ASCII. */
export function hexDump(data: Uint8Array, baseOffset = 0): string {
  const lines: string[] = [];
  for (let off = 0; off < data.length; off += 16) {
    const row = data.subarray(off, Math.min(off + 16, data.length));
    let hex = '';
    let text = '';
    for (let i = 0; i < 16; i++) {
      if (i === 8) hex += ' ';
      if (i < row.length) {
        const b = row[i]!;
        hex += b.toString(16).padStart(2, '0') + ' ';
        text += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
      } else {
        hex += '   ';
      }
    }
    lines.push(`${(baseOffset + off).toString(16).padStart(8, '0')}  ${hex} |${text}|`);
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}

/** 0x-prefixed hex, zero-padded to `digits`. */
export function hex(v: number | bigint, digits = 0): string {
  const n = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
  return `0x${n.toString(16).padStart(digits, '0')}`;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** Bytes in binary units: "512 B", "64.00 MiB". */
export function formatBytes(bytes: number | bigint): string {
  let v = typeof bytes === 'bigint' ? Number(bytes) : bytes;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(2)} ${UNITS[u]}`;
}

/** Milliseconds as "850 ms" or "2.35 s". */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** Megabytes (10^6 bytes) per second over `ms` milliseconds. */
export function mbPerSec(bytes: number, ms: number): number {
  return ms <= 0 ? 0 : bytes / 1e6 / (ms / 1000);
}

/** Local wall-clock time with milliseconds, "HH:MM:SS.mmm". */
export function clock(t: number): string {
  const d = new Date(t);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/**
 * A one-line progress display on a terminal writer (stderr). Nothing is drawn unless the writer is a TTY and the
 * operation has run for `delayMs` (short transfers stay quiet); redraws are throttled. `done()` erases the line.
 */
export class Progress {
  private readonly start: number;
  private lastDraw = 0;
  private drawn = false;
  private readonly enabled: boolean;

  constructor(
    private readonly w: CliWriter,
    /** Total bytes, when known (a bar and a percentage are shown). */
    private readonly total: number | undefined,
    private readonly label: string,
    private readonly delayMs = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.enabled = w.isTTY === true;
    this.start = now();
  }

  /** Report `done` bytes so far. */
  update(done: number): void {
    if (!this.enabled) return;
    const t = this.now();
    if (t - this.start < this.delayMs || t - this.lastDraw < 100) return;
    this.lastDraw = t;
    const rate = mbPerSec(done, t - this.start);
    let text: string;
    if (this.total !== undefined && this.total > 0) {
      const frac = Math.min(1, done / this.total);
      const width = 30;
      const full = Math.round(frac * width);
      text = `${this.label} [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${formatBytes(done)} / ${formatBytes(this.total)}  ${rate.toFixed(1)} MB/s`;
    } else {
      text = `${this.label} ${formatBytes(done)}  ${rate.toFixed(1)} MB/s`;
    }
    this.w.write(`\r${text}\x1b[K`);
    this.drawn = true;
  }

  /** Draw a free-form status line (perf's live counters), with the same TTY and delay rules. */
  status(text: string): void {
    if (!this.enabled) return;
    const t = this.now();
    if (t - this.start < this.delayMs) return;
    this.lastDraw = t;
    this.w.write(`\r${text}\x1b[K`);
    this.drawn = true;
  }

  /** Erase the progress line if one was drawn. */
  done(): void {
    if (this.drawn) this.w.write('\r\x1b[K');
    this.drawn = false;
  }
}
