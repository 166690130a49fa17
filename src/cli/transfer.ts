/**
 * read and write: block transfers between a namespace and a file (or stdin/stdout), streamed in 1 MiB pieces with a
 * few pieces in flight, so that transfers of any size use bounded memory.
 */
import { Buffer } from 'node:buffer';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { InvalidArgumentError, type Namespace } from '../index.js';
import { TARGET_OPTIONS, UsageError, namespaceOption, type OptionSpecs, type Values } from './args.js';
import { withController, type Command } from './context.js';
import { Progress, formatBytes, formatMs, hexDump, mbPerSec, writeAll } from './output.js';

/** Bytes per piece of a transfer (the namespace splits each piece further at MDTS). */
export const CHUNK_BYTES = 1024 * 1024;
/** Pieces in flight. */
const DEPTH = 8;
/** Largest read whose data goes into the JSON output (-o json without --data). */
const JSON_DATA_LIMIT = 1024 * 1024;

const TRANSFER_OPTIONS: OptionSpecs = {
  ...namespaceOption('1'),
  'start-block': { type: 'string', arg: 'LBA', help: 'first logical block', def: '0' },
  'block-count': { type: 'string', short: 'c', arg: 'N', help: 'number of blocks (1-based, unlike nvme-cli\'s 0-based NLB)' },
  'data-size': { type: 'string', short: 'z', arg: 'BYTES', help: 'bytes to transfer instead of --block-count (a multiple of the block size; k/m/g suffixes)' },
};

interface Plan {
  nsid: number;
  slba: bigint;
  /** Blocks asked for with --block-count / --data-size (undefined: as much as the input holds). */
  blocks: number | undefined;
  path: string | undefined;
}

function plan(v: Values): Plan {
  const nsid = v.int('namespace-id', 1, 0xfffffffe, 1);
  const slba = v.u64('start-block', 0n);
  const count = v.int('block-count', 1, Number.MAX_SAFE_INTEGER);
  const size = v.size('data-size', 1, Number.MAX_SAFE_INTEGER);
  if (count !== undefined && size !== undefined) throw new UsageError('give --block-count or --data-size, not both', v.command);
  const path = v.str('data');
  return { nsid, slba, blocks: count ?? (size === undefined ? undefined : -size), path: path === '-' ? undefined : path };
}

/** Resolve --data-size (kept negative by plan()) against the block size. */
function blocksFor(v: Values, p: Plan, bs: number): number | undefined {
  if (p.blocks === undefined || p.blocks > 0) return p.blocks;
  const bytes = -p.blocks;
  if (bytes % bs !== 0) throw new UsageError(`--data-size ${bytes} is not a multiple of the ${bs}-byte block size of namespace ${p.nsid}`, v.command);
  return bytes / bs;
}

function checkRange(ns: Namespace, slba: bigint, blocks: number): void {
  if (slba + BigInt(blocks) > ns.blocks) {
    throw new InvalidArgumentError(`${blocks} blocks at LBA ${slba} go past the end of namespace ${ns.nsid} (${ns.blocks} blocks of ${ns.blockSize} B)`);
  }
}

interface Summary {
  nsid: number;
  startBlock: bigint;
  blocks: number;
  blockSize: number;
  bytes: number;
  ms: number;
  file: string | null;
}

function summaryJson(s: Summary, extra: Record<string, unknown> = {}): unknown {
  return {
    nsid: s.nsid,
    startBlock: s.startBlock,
    blocks: s.blocks,
    blockSize: s.blockSize,
    bytes: s.bytes,
    seconds: Number((s.ms / 1000).toFixed(6)),
    mbPerSec: Number(mbPerSec(s.bytes, s.ms).toFixed(3)),
    file: s.file,
    ...extra,
  };
}

function summaryLine(verb: 'read' | 'wrote', s: Summary): string {
  const dir = verb === 'read' ? `from namespace ${s.nsid} at LBA ${s.startBlock}${s.file ? ` to ${s.file}` : ''}` : `${s.file ? `from ${s.file} ` : ''}to namespace ${s.nsid} at LBA ${s.startBlock}`;
  return `${verb} ${s.blocks} block${s.blocks === 1 ? '' : 's'} (${formatBytes(s.bytes)}) ${dir} in ${formatMs(s.ms)} (${mbPerSec(s.bytes, s.ms).toFixed(1)} MB/s)\n`;
}

/** Cut a byte stream into `size`-byte Buffers (the last may be shorter), stopping after `limit` bytes. */
export async function* rechunk(src: AsyncIterable<Uint8Array | string>, size: number, limit = Infinity): AsyncGenerator<Buffer> {
  let buf = Buffer.allocUnsafe(size);
  let fill = 0;
  let total = 0;
  for await (const piece of src) {
    const bytes = typeof piece === 'string' ? Buffer.from(piece) : piece;
    let off = 0;
    while (off < bytes.length && total < limit) {
      const n = Math.min(size - fill, bytes.length - off, limit - total);
      buf.set(bytes.subarray(off, off + n), fill);
      fill += n;
      off += n;
      total += n;
      if (fill === size) {
        yield buf;
        buf = Buffer.allocUnsafe(size);
        fill = 0;
      }
    }
    if (total >= limit) break;
  }
  if (fill > 0) yield buf.subarray(0, fill);
}

const noop = () => {};

export const readCommand: Command = {
  name: 'read',
  summary: 'read blocks from a namespace into a file or stdout',
  usage: 'read -a ADDR -n NQN [-N NSID] [--start-block LBA] (-c BLOCKS | -z BYTES) [-d FILE] [options]',
  description:
    'Reads blocks and writes them to --data FILE, or to stdout when no file is given (a hex dump when stdout is a ' +
    'terminal). Large transfers are split into 1 MiB pieces, several in flight, and streamed: memory use does not ' +
    'grow with the size. A progress bar is drawn on stderr when it is a terminal and the transfer takes more than a ' +
    'second. With -o json a summary is printed (and, without --data, the data as hex, up to 1 MiB).',
  options: {
    ...TRANSFER_OPTIONS,
    data: { type: 'string', short: 'd', arg: 'FILE', help: 'file to write the data to (default stdout; - is stdout)' },
  },
  connection: TARGET_OPTIONS,
  examples: [
    'nvmeof read -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -N 1 --start-block 0 -c 2048 -d out.bin',
    'nvmeof read -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -c 8 | xxd | head',
  ],
  async run(ctx, v) {
    const p = plan(v);
    if (p.blocks === undefined) throw new UsageError('--block-count or --data-size is required', v.command);
    const toStdout = p.path === undefined;
    const json = ctx.format === 'json';
    const hexOut = toStdout && !json && ctx.io.stdout.isTTY === true;
    const collected: Buffer[] = [];
    const summary = await withController(ctx, v, { events: false }, async (ctrl) => {
      const ns = await ctrl.namespace(p.nsid);
      const bs = ns.blockSize;
      const blocks = blocksFor(v, p, bs)!;
      checkRange(ns, p.slba, blocks);
      const total = blocks * bs;
      if (json && toStdout && total > JSON_DATA_LIMIT) {
        throw new UsageError(`with -o json and no --data the data goes into the JSON output, which is limited to ${formatBytes(JSON_DATA_LIMIT)}; use --data FILE`, v.command);
      }
      const file = p.path === undefined ? undefined : await open(p.path, 'w');
      const started = performance.now();
      const progress = new Progress(ctx.io.stderr, total, 'read');
      try {
        const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / bs));
        const inflight: Promise<Buffer>[] = [];
        let next = 0;
        let done = 0;
        while (next < blocks || inflight.length > 0) {
          while (inflight.length < DEPTH && next < blocks) {
            const n = Math.min(perChunk, blocks - next);
            const piece = ns.read(p.slba + BigInt(next), n, { signal: ctx.signal });
            piece.catch(noop);
            inflight.push(piece);
            next += n;
          }
          const buf = await inflight.shift()!;
          if (file) await file.write(buf, 0, buf.length, done);
          else if (json) collected.push(buf);
          else if (hexOut) await writeAll(ctx.io.stdout, hexDump(buf, done));
          else await writeAll(ctx.io.stdout, buf);
          done += buf.length;
          progress.update(done);
        }
      } finally {
        progress.done();
        await file?.close();
      }
      return { nsid: p.nsid, startBlock: p.slba, blocks, blockSize: bs, bytes: total, ms: performance.now() - started, file: p.path ?? null };
    });
    if (json) ctx.json(summaryJson(summary, toStdout ? { data: Buffer.concat(collected).toString('hex') } : {}));
    else if (!toStdout) ctx.out(summaryLine('read', summary));
  },
};

export const writeCommand: Command = {
  name: 'write',
  summary: 'write blocks to a namespace from a file or stdin',
  usage: 'write -a ADDR -n NQN [-N NSID] [--start-block LBA] [-c BLOCKS | -z BYTES] [-d FILE] [options]',
  description:
    'Writes the contents of --data FILE (or stdin when no file is given) starting at --start-block. Without ' +
    '--block-count/--data-size the whole input is written; its size must be a multiple of the block size. With them, ' +
    'exactly that much is written and the input must hold at least that much. The input is streamed in 1 MiB pieces, ' +
    'several in flight. A progress bar is drawn on stderr when it is a terminal and the transfer takes more than a second.',
  options: {
    ...TRANSFER_OPTIONS,
    data: { type: 'string', short: 'd', arg: 'FILE', help: 'file to read the data from (default stdin; - is stdin)' },
    'force-unit-access': { type: 'boolean', help: 'set FUA: the data is on media when each command completes' },
  },
  connection: TARGET_OPTIONS,
  examples: [
    'nvmeof write -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -N 1 --start-block 0 -d image.bin',
    'head -c 1M /dev/urandom | nvmeof write -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -z 1m',
  ],
  async run(ctx, v) {
    const p = plan(v);
    let fileSize: number | undefined;
    if (p.path !== undefined) fileSize = (await stat(p.path)).size;
    else if (!ctx.io.stdin) throw new UsageError('no --data file given and no stdin to read from', v.command);
    else if (ctx.io.stdin.isTTY) throw new UsageError('no --data file given and stdin is a terminal; give --data FILE or pipe the data in', v.command);
    const fua = v.flag('force-unit-access');
    const summary = await withController(ctx, v, { events: false }, async (ctrl) => {
      const ns = await ctrl.namespace(p.nsid);
      const bs = ns.blockSize;
      const asked = blocksFor(v, p, bs);
      let limit: number | undefined;
      if (asked !== undefined) {
        limit = asked * bs;
        if (fileSize !== undefined && fileSize < limit) throw new UsageError(`${p.path} holds ${fileSize} bytes, less than the ${limit} asked for`, v.command);
      } else if (fileSize !== undefined) {
        if (fileSize === 0) throw new UsageError(`${p.path} is empty`, v.command);
        if (fileSize % bs !== 0) {
          throw new UsageError(`${p.path} holds ${fileSize} bytes, not a multiple of the ${bs}-byte block size of namespace ${p.nsid}; give --block-count to write part of it`, v.command);
        }
        limit = fileSize;
      }
      if (limit !== undefined) checkRange(ns, p.slba, limit / bs);
      const source: AsyncIterable<Uint8Array | string> = p.path !== undefined ? createReadStream(p.path, { highWaterMark: CHUNK_BYTES }) : ctx.io.stdin!;
      const chunkBytes = Math.max(bs, Math.floor(CHUNK_BYTES / bs) * bs);
      const started = performance.now();
      const progress = new Progress(ctx.io.stderr, limit, 'write');
      const inflight: Promise<void>[] = [];
      let queued = 0;
      let done = 0;
      try {
        for await (const chunk of rechunk(source, chunkBytes, limit)) {
          const rest = chunk.length % bs;
          if (rest !== 0) {
            // The input ends with a partial block: write the whole blocks before it, then refuse the rest.
            if (chunk.length > rest) await ns.write(p.slba + BigInt(queued / bs), chunk.subarray(0, chunk.length - rest), { fua, signal: ctx.signal });
            await Promise.all(inflight);
            queued += chunk.length - rest;
            throw new InvalidArgumentError(`the input ends with a partial block: ${queued / bs} blocks were written, the last ${rest} bytes were not (the input size must be a multiple of the ${bs}-byte block size)`);
          }
          const piece = ns.write(p.slba + BigInt(queued / bs), chunk, { fua, signal: ctx.signal }).then(() => {
            done += chunk.length;
            progress.update(done);
          });
          piece.catch(noop);
          inflight.push(piece);
          queued += chunk.length;
          if (inflight.length >= DEPTH) await inflight.shift();
        }
        await Promise.all(inflight);
      } finally {
        progress.done();
      }
      if (queued === 0) throw new UsageError('the input is empty', v.command);
      if (limit !== undefined && queued < limit) {
        throw new InvalidArgumentError(`the input ended after ${queued} bytes (${queued / bs} blocks written), ${limit} were asked for`);
      }
      return { nsid: p.nsid, startBlock: p.slba, blocks: queued / bs, blockSize: bs, bytes: queued, ms: performance.now() - started, file: p.path ?? null };
    });
    if (ctx.format === 'json') ctx.json(summaryJson(summary));
    else ctx.out(summaryLine('wrote', summary));
  },
};

