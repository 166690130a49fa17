/**
 * The fuzzing engine, run in a worker thread (one per target): a coverage-guided mutation loop. Coverage is V8's
 * precise block coverage (node:inspector, Profiler.takePreciseCoverage) over the library's own source files; an
 * input is kept in the corpus when it runs a block no kept input ran. Reading coverage costs milliseconds, so mutants
 * run in batches and coverage is read once per batch; a batch that ran something new is bisected to find the inputs
 * responsible.
 *
 * Before every execution the input is copied into shared memory and a counter is bumped, so the main thread can
 * tell a hang (the counter stops) and save the input that caused it, and an out-of-memory end of the worker.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { Session } from 'node:inspector';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { allocationLimit, findTarget, FuzzFinding } from './targets.js';

export interface EngineData {
  target: string;
  /** Stop after this many milliseconds of fuzzing (0: only run the corpus). */
  durationMs: number;
  /** Directories of seed inputs (read only). */
  corpusDirs: string[];
  /** Where new interesting inputs are written (null: nowhere). */
  outDir: string | null;
  /** Largest input generated. */
  maxLen: number;
  seed: number;
  /** Shared memory: Int32 [0] execution counter, [1] current input length, then the input bytes. */
  shared: SharedArrayBuffer;
}

/** Messages to the main thread. */
export type EngineMessage =
  | { type: 'stats'; execs: number; corpus: number; features: number; seeds: number }
  | { type: 'finding'; kind: 'crash'; message: string; stack: string; input: Uint8Array; execs: number; corpus: number; features: number; seeds: number }
  | { type: 'done'; execs: number; corpus: number; features: number; seeds: number; corpusFiles: string[] };

const data = workerData as EngineData;
const target = findTarget(data.target);
const counter = new Int32Array(data.shared, 0, 2);
const inputView = new Uint8Array(data.shared, 8);

// ---------------------------------------------------------------------------------------------------------------
// Allocation guard: a single Buffer larger than allocationLimit(input length) is a finding.

let allocLimit = Infinity;
for (const name of ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const) {
  const orig = Buffer[name] as (size: number, ...rest: unknown[]) => Buffer;
  (Buffer as unknown as Record<string, unknown>)[name] = function (this: unknown, size: number, ...rest: unknown[]): Buffer {
    if (typeof size === 'number' && size > allocLimit) throw new FuzzFinding(`Buffer.${name}(${size}) for an input of ${counter[1]} bytes`);
    return orig.call(this, size, ...rest);
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Coverage

interface CoverageRange { startOffset: number; endOffset: number; count: number }
interface CoverageResult { result: Array<{ scriptId: string; url: string; functions: Array<{ ranges: CoverageRange[] }> }> }

const session = new Session();
session.connect();
function post<T>(method: string, params?: object): T {
  let out: T | undefined;
  let error: Error | null = null;
  session.post(method, params ?? {}, (err, res) => {
    error = err;
    out = res as T;
  });
  if (error) throw error;
  return out as T;
}
post('Profiler.enable');
post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });

const seen = new Set<string>();
/** Every block range ever reported, per function (`url:start`): V8 reports a block only where its count differs. */
const blocks = new Map<string, Array<[number, number]>>();

/**
 * Read (and reset) the coverage since the last call; returns how many blocks ran that no kept input ran before.
 * V8 reports a nested range only when its count differs from the enclosing one, so a block that ran as often as
 * its function is absent: its count is that of the innermost reported range around it. A feature is a block that
 * ran (not its count: counts of a batch are sums over its inputs).
 */
function collect(record: boolean): number {
  const cov = post<CoverageResult>('Profiler.takePreciseCoverage');
  let fresh = 0;
  const mark = (key: string): void => {
    if (!seen.has(key)) {
      fresh++;
      if (record) seen.add(key);
    }
  };
  for (const script of cov.result) {
    if (!script.url.includes('/src/')) continue;
    for (const fn of script.functions) {
      const ranges = fn.ranges;
      const top = ranges[0];
      if (top === undefined || top.count === 0) continue;
      const fkey = `${script.url}:${top.startOffset}`;
      let known = blocks.get(fkey);
      if (known === undefined) blocks.set(fkey, (known = []));
      const reported = new Set<string>();
      for (const r of ranges) {
        const k = `${r.startOffset}:${r.endOffset}`;
        reported.add(k);
        if (!known.some(([s0, e0]) => s0 === r.startOffset && e0 === r.endOffset)) known.push([r.startOffset, r.endOffset]);
        if (r.count > 0) mark(`${fkey}:${k}`);
      }
      for (const [s0, e0] of known) {
        const k = `${s0}:${e0}`;
        if (reported.has(k)) continue;
        // Innermost reported range that contains this block.
        let count = top.count;
        let width = Infinity;
        for (const r of ranges) {
          if (r.startOffset <= s0 && r.endOffset >= e0 && r.endOffset - r.startOffset < width) {
            width = r.endOffset - r.startOffset;
            count = r.count;
          }
        }
        if (count > 0) mark(`${fkey}:${k}`);
      }
    }
  }
  return fresh;
}

// ---------------------------------------------------------------------------------------------------------------
// Execution

let execs = 0;

function exec(input: Buffer): void {
  inputView.set(input.subarray(0, inputView.length));
  Atomics.store(counter, 1, input.length);
  Atomics.add(counter, 0, 1);
  execs++;
  allocLimit = allocationLimit(input.length);
  try {
    target.run(input);
  } catch (err) {
    allocLimit = Infinity;
    const e = err instanceof Error ? err : new Error(String(err));
    const msg: EngineMessage = { type: 'finding', kind: 'crash', message: `${e.name}: ${e.message}`, stack: e.stack ?? '', input: new Uint8Array(input), ...stats() };
    parentPort!.postMessage(msg);
    process.exit(1);
  }
  allocLimit = Infinity;
}

// ---------------------------------------------------------------------------------------------------------------
// Mutation

let rng = (data.seed >>> 0) || 0x2545f491;
function rand(n: number): number {
  rng ^= rng << 13; rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5; rng >>>= 0;
  return n <= 1 ? 0 : rng % n;
}

const INTERESTING_8 = [0, 1, 2, 4, 8, 0x10, 0x18, 0x20, 0x40, 0x48, 0x7f, 0x80, 0x81, 0xfe, 0xff];
const INTERESTING_32 = [
  0, 1, 2, 3, 4, 7, 8, 9, 16, 18, 23, 24, 25, 28, 32, 64, 72, 76, 127, 128, 255, 256, 512, 1023, 1024, 1025, 4095, 4096,
  4097, 8192, 0x7fff, 0x8000, 0xffff, 0x10000, 0x100000, 0x4000000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
];

const corpus: Buffer[] = [];
let seedCount = 0;

function stats(): { execs: number; corpus: number; features: number; seeds: number } {
  return { execs, corpus: corpus.length, features: seen.size, seeds: seedCount };
}

function mutate(src: Buffer): Buffer {
  let b = Buffer.from(src);
  const rounds = 1 + rand(4);
  for (let i = 0; i < rounds; i++) {
    const len = b.length;
    switch (rand(12)) {
      case 0: if (len) b[rand(len)]! ^= 1 << rand(8); break;
      case 1: if (len) b[rand(len)] = rand(256); break;
      case 2: if (len) b[rand(len)] = INTERESTING_8[rand(INTERESTING_8.length)]!; break;
      case 3: case 4: {
        if (len < 2) break;
        const width = rand(2) === 0 ? 2 : 4;
        if (len < width) break;
        const pick = rand(8) === 0 ? len - rand(Math.min(len, 32)) : INTERESTING_32[rand(INTERESTING_32.length)]!;
        const off = rand(len - width + 1);
        if (width === 2) b.writeUInt16LE(pick & 0xffff, off);
        else b.writeUInt32LE(pick >>> 0, off);
        break;
      }
      case 5: { // insert random bytes
        const n = 1 + rand(16);
        const at = rand(len + 1);
        const ins = Buffer.alloc(n);
        for (let k = 0; k < n; k++) ins[k] = rand(256);
        b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        break;
      }
      case 6: { // delete a range
        if (len < 2) break;
        const at = rand(len);
        const n = 1 + rand(Math.min(len - at, 64));
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
        break;
      }
      case 7: { // duplicate a range elsewhere
        if (len < 2) break;
        const from = rand(len);
        const n = 1 + rand(Math.min(len - from, 256));
        const at = rand(len + 1);
        b = Buffer.concat([b.subarray(0, at), Buffer.from(b.subarray(from, from + n)), b.subarray(at)]);
        break;
      }
      case 8: { // splice with another corpus input
        const other = corpus[rand(corpus.length)];
        if (!other || other.length === 0) break;
        const cut = rand(len + 1);
        const from = rand(other.length);
        b = Buffer.concat([b.subarray(0, cut), other.subarray(from)]);
        break;
      }
      case 9: if (len) b = b.subarray(0, rand(len)); break;
      case 10: { // overwrite a range with bytes from another input at the same offset
        const other = corpus[rand(corpus.length)];
        if (!other || !len) break;
        const at = rand(len);
        if (at >= other.length) break;
        other.copy(b, at, at, Math.min(other.length, at + 1 + rand(64)));
        break;
      }
      default: { // change the selector / option byte
        if (len) b[0] = rand(256);
        break;
      }
    }
  }
  return b.length > data.maxLen ? b.subarray(0, data.maxLen) : b;
}

// ---------------------------------------------------------------------------------------------------------------
// Main loop

function save(input: Buffer): string | null {
  if (data.outDir === null) return null;
  const name = createHash('sha1').update(input).digest('hex').slice(0, 16);
  writeFileSync(join(data.outDir, name), input);
  return name;
}

function readSeeds(): Buffer[] {
  const out: Buffer[] = [];
  for (const dir of data.corpusDirs) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names.sort()) out.push(readFileSync(join(dir, n)));
  }
  // Smallest first, so the corpus keeps the smallest input for each feature.
  return out.sort((a, b) => a.length - b.length);
}

// The time limit covers the seed replay too, so a run's length does not grow with the corpus.
const deadline = Date.now() + data.durationMs;
if (data.outDir !== null) mkdirSync(data.outDir, { recursive: true });
const seeds = readSeeds();
seedCount = seeds.length;

function keep(m: Buffer): void {
  corpus.push(m);
  const name = save(m);
  if (name !== null) kept.push(name);
}
const kept: string[] = [];
collect(true); // module loading
for (const s of seeds) {
  exec(s);
  if (collect(true) > 0) keep(s);
}
if (corpus.length === 0) corpus.push(Buffer.alloc(0));


let lastStats = Date.now();
const BATCH = 64;

/** The inputs of `batch` (which together ran something new) are replayed by halves to keep those responsible. */
function bisect(batch: Buffer[]): void {
  if (batch.length === 1) {
    exec(batch[0]!);
    if (collect(true) > 0) keep(batch[0]!);
    return;
  }
  const mid = batch.length >> 1;
  for (const half of [batch.slice(0, mid), batch.slice(mid)]) {
    for (const m of half) exec(m);
    if (collect(false) > 0) bisect(half);
  }
}

while (data.durationMs > 0 && Date.now() < deadline) {
  const batch: Buffer[] = [];
  for (let i = 0; i < BATCH; i++) {
    const m = mutate(corpus[rand(corpus.length)]!);
    batch.push(m);
    exec(m);
  }
  if (collect(false) > 0) bisect(batch);
  if (Date.now() - lastStats > 2000) {
    lastStats = Date.now();
    parentPort!.postMessage({ type: 'stats', ...stats() } satisfies EngineMessage);
  }
}
parentPort!.postMessage({ type: 'done', ...stats(), corpusFiles: kept } satisfies EngineMessage);
