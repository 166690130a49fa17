/**
 * Sessions of the library against a hostile controller (hostile-proxy.ts in front of the embedded target): each
 * connects, runs concurrent reads (some into caller buffers) and tallies what a storage engineer cares about:
 * reads resolved with wrong bytes, promises still pending, errors that are not typed, and writes into a caller's
 * buffer after its read rejected. All four must stay 0.
 */
import { Buffer } from 'node:buffer';
import { connect, type Controller } from '../../src/host/controller.js';
import { NvmeofError } from '../../src/errors.js';
import { prng } from './hostile-proxy.js';

export const BLOCK = 512;
export const BLOCKS = 256;

/** The namespace's content: every byte a function of its position (written once before the sessions). */
export function expected(lba: number, blocks: number): Buffer {
  const b = Buffer.alloc(blocks * BLOCK);
  for (let i = 0; i < b.length; i++) {
    const pos = lba * BLOCK + i;
    b[i] = (pos * 7 + (pos >>> 9) * 13 + 1) & 0xff;
  }
  return b;
}

export interface Tally {
  sessions: number;
  reads: number;
  resolved: number;
  /** Reads resolved with bytes other than the namespace's. */
  wrong: number;
  /** Operations still pending when the session's deadline passed. */
  pending: number;
  /** Rejections that are not NvmeofError. */
  untyped: number;
  /** Caller buffers changed after their read had rejected. */
  lateWrites: number;
  connectFailures: number;
  errorsByCode: Map<string, number>;
  examples: string[];
}

export function newTally(): Tally {
  return { sessions: 0, reads: 0, resolved: 0, wrong: 0, pending: 0, untyped: 0, lateWrites: 0, connectFailures: 0, errorsByCode: new Map(), examples: [] };
}

const PENDING = Symbol('pending');

function within<T>(p: Promise<T>, ms: number): Promise<T | typeof PENDING> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<typeof PENDING>((r) => (t = setTimeout(() => r(PENDING), ms)))]).finally(() => clearTimeout(t));
}

function noteError(t: Tally, err: unknown, where: string): void {
  if (!(err instanceof NvmeofError)) {
    t.untyped++;
    if (t.examples.length < 5) t.examples.push(`${where}: untyped ${String(err)}`);
    return;
  }
  t.errorsByCode.set(err.code, (t.errorsByCode.get(err.code) ?? 0) + 1);
}

export interface SessionOptions {
  port: number;
  subnqn: string;
  hostnqn: string;
  seed: number;
  /** Per-command timeout of the host (the proxy's delay is longer). */
  commandTimeout: number;
  /** How long any one operation may stay pending before it counts as never settling. */
  deadline: number;
  /** After a read timed out, keep the connection this long so delayed data can arrive (the proxy's delay). */
  lingerMs: number;
}

export async function hostileSession(t: Tally, o: SessionOptions): Promise<void> {
  const rnd = prng(o.seed);
  t.sessions++;
  let ctrl: Controller | undefined;
  const settledBuffers: { buf: Buffer; snapshot: Buffer; what: string }[] = [];
  try {
    const c = await within(
      connect({
        host: '127.0.0.1',
        port: o.port,
        subnqn: o.subnqn,
        hostnqn: o.hostnqn,
        ioQueues: 1,
        queueSize: 8,
        headerDigest: rnd() < 0.5,
        dataDigest: rnd() < 0.5,
        commandTimeout: o.commandTimeout,
        connectTimeout: o.deadline / 2,
        kato: 0,
        events: false,
      }),
      o.deadline,
    );
    if (c === PENDING) {
      t.pending++;
      t.examples.push(`seed ${o.seed}: connect never settled`);
      return;
    }
    ctrl = c;
    const ns = await ctrl.namespace(1);
    const ops: Promise<void>[] = [];
    const n = 4 + Math.floor(rnd() * 8);
    for (let i = 0; i < n; i++) {
      const blocks = 1 + Math.floor(rnd() * 16);
      const lba = Math.floor(rnd() * (BLOCKS - blocks));
      const into = rnd() < 0.5;
      const buf = into ? Buffer.alloc(blocks * BLOCK, 0xa5) : undefined;
      t.reads++;
      const p = (buf ? ns.readInto(lba, buf) : ns.read(lba, blocks)).then(
        (data) => {
          t.resolved++;
          if (!data.equals(expected(lba, blocks))) {
            t.wrong++;
            if (t.examples.length < 5) t.examples.push(`seed ${o.seed}: read ${lba}+${blocks} resolved with wrong bytes`);
          }
        },
        (err: unknown) => {
          noteError(t, err, `seed ${o.seed} read`);
          if (buf) settledBuffers.push({ buf, snapshot: Buffer.from(buf), what: `read ${lba}+${blocks}` });
        },
      );
      ops.push(
        within(p, o.deadline).then((r) => {
          if (r === PENDING) {
            t.pending++;
            if (t.examples.length < 5) t.examples.push(`seed ${o.seed}: read ${lba}+${blocks} never settled`);
          }
        }),
      );
    }
    await Promise.all(ops);
    if (settledBuffers.length > 0 && ctrl.state === 'live') await new Promise((r) => setTimeout(r, o.lingerMs));
  } catch (err) {
    if (!ctrl) t.connectFailures++;
    noteError(t, err, `seed ${o.seed} ${ctrl ? 'session' : 'connect'}`);
  } finally {
    if (ctrl) {
      const closed = await within(ctrl.close().catch(() => ctrl!.destroy()), o.deadline);
      if (closed === PENDING) {
        ctrl.destroy();
        t.pending++;
        if (t.examples.length < 5) t.examples.push(`seed ${o.seed}: close never settled`);
      }
    }
  }
  // Late data: whatever arrives for a rejected read after its rejection must not reach the caller's buffer.
  for (const s of settledBuffers) {
    if (!s.buf.equals(s.snapshot)) {
      t.lateWrites++;
      if (t.examples.length < 5) t.examples.push(`seed ${o.seed}: ${s.what} buffer written after its rejection`);
    }
  }
}
