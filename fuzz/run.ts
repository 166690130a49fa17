/**
 * Fuzzing runner.
 *
 *   npm run fuzz:ci                          every target for 11 s, seeded from fuzz/corpus (CI, every submission)
 *   npm run fuzz -- --minutes N              every target for N minutes (long run)
 *   npm run fuzz -- --target pdu-reader --seconds 60
 *   npm run fuzz -- --minutes 10 --merge     then minimize fuzz/corpus/<target> with what the run found
 *   npm run fuzz -- --target identify --replay FILE   run one saved input and print what it threw
 *
 * Each target runs in a worker thread; the main thread watches it for hangs (no execution finished within
 * --timeout ms, default 5000) and for running out of memory, and saves the input responsible under
 * .cache/fuzz/findings/<target>/. Exit status 1 when anything was found.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { EngineData, EngineMessage } from './engine.js';
import { findTarget, targets } from './targets.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const cache = join(root, '.cache', 'fuzz');

const { values } = parseArgs({
  options: {
    ci: { type: 'boolean', default: false },
    minutes: { type: 'string' },
    seconds: { type: 'string' },
    target: { type: 'string', multiple: true },
    merge: { type: 'boolean', default: false },
    replay: { type: 'string' },
    timeout: { type: 'string', default: '5000' },
    seed: { type: 'string' },
    'max-len': { type: 'string', default: '16384' },
  },
});

function positive(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${v}`);
  return n;
}

const selected = (values.target ?? targets.map((t) => t.name)).map((n) => findTarget(n).name);
const durationMs = values.minutes !== undefined ? positive('minutes', values.minutes, 1) * 60_000 : positive('seconds', values.seconds, values.ci ? 11 : 60) * 1000;
const hangMs = positive('timeout', values.timeout, 5000);
/** Workers that did not stop when terminated. */
let stuckWorkers = 0;
const maxLen = positive('max-len', values['max-len'], 16384);

interface Outcome {
  target: string;
  execs: number;
  corpus: number;
  features: number;
  seeds: number;
  ms: number;
  finding: string | null;
}

function saveFinding(target: string, kind: string, input: Uint8Array, report: string): string {
  const dir = join(cache, 'findings', target);
  mkdirSync(dir, { recursive: true });
  const name = `${kind}-${createHash('sha1').update(input).digest('hex').slice(0, 16)}`;
  writeFileSync(join(dir, name), input);
  writeFileSync(join(dir, `${name}.txt`), report);
  return join(dir, name);
}

function runEngine(target: string, opts: { durationMs: number; corpusDirs: string[]; outDir: string | null; seed: number }): Promise<Outcome> {
  const shared = new SharedArrayBuffer(8 + maxLen);
  const counter = new Int32Array(shared, 0, 2);
  const wd: EngineData = { target, durationMs: opts.durationMs, corpusDirs: opts.corpusDirs, outDir: opts.outDir, maxLen, seed: opts.seed, shared };
  const started = Date.now();
  const worker = new Worker(join(here, 'boot.mjs'), { workerData: wd, resourceLimits: { maxOldGenerationSizeMb: 1024 } });
  return new Promise((resolvePromise) => {
    let last = { execs: 0, corpus: 0, features: 0, seeds: 0 };
    let finding: string | null = null;
    let settled = false;
    const currentInput = (): Uint8Array => new Uint8Array(shared, 8, Math.min(Atomics.load(counter, 1), maxLen)).slice();
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearInterval(watch);
      resolvePromise({ target, ...last, ms: Date.now() - started, finding });
    };
    // Hang watch: the engine bumps counter[0] before every execution.
    let seenCount = -1;
    let seenAt = Date.now();
    let terminatedAt = 0;
    const watch = setInterval(() => {
      const c = Atomics.load(counter, 0);
      if (c !== seenCount) {
        seenCount = c;
        seenAt = Date.now();
        return;
      }
      if (c > 0 && Date.now() - seenAt > hangMs && terminatedAt === 0) {
        const input = currentInput();
        finding = `hang: no execution finished within ${hangMs} ms; input saved as ${saveFinding(target, 'hang', input, `hang after ${hangMs} ms\n`)}`;
        terminatedAt = Date.now();
        void worker.terminate();
      } else if (terminatedAt !== 0 && Date.now() - terminatedAt > 10_000) {
        // A worker that does not stop (stuck outside JavaScript) is left to the process exit; the run goes on.
        finding += ' (the worker did not stop when terminated)';
        stuckWorkers++;
        finish();
      }
    }, 250);
    worker.on('message', (m: EngineMessage) => {
      if (m.type === 'stats' || m.type === 'done') {
        last = { execs: m.execs, corpus: m.corpus, features: m.features, seeds: m.seeds };
        if (m.type === 'stats') process.stdout.write(`  ${target}: ${m.execs} execs, corpus ${m.corpus}, ${m.features} features\n`);
      } else {
        last = { execs: m.execs, corpus: m.corpus, features: m.features, seeds: m.seeds };
        const file = saveFinding(target, m.kind, m.input, `${m.stack}\n`);
        finding = `${m.message}\n${m.stack}\ninput saved as ${file}\nreplay: npm run fuzz -- --target ${target} --replay ${file}`;
      }
    });
    worker.on('error', (err: Error & { code?: string }) => {
      if (finding === null) {
        const input = currentInput();
        const kind = err.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'oom' : 'error';
        finding = `${kind}: ${err.message}; input saved as ${saveFinding(target, kind, input, `${err.stack ?? err.message}\n`)}`;
      }
    });
    worker.on('exit', finish);
  });
}

async function replay(file: string): Promise<number> {
  if (selected.length !== 1) throw new Error('--replay needs exactly one --target');
  const t = findTarget(selected[0]!);
  const input = readFileSync(file);
  try {
    t.run(input);
    console.log(`${t.name}: ${file} (${input.length} bytes) ran without a finding`);
    return 0;
  } catch (err) {
    console.log(`${t.name}: ${file} (${input.length} bytes):`);
    console.log(err);
    return 1;
  }
}

async function main(): Promise<number> {
  if (values.replay !== undefined) return replay(values.replay);
  const baseSeed = values.seed !== undefined ? Number(values.seed) >>> 0 : (Date.now() >>> 0);
  const outcomes: Outcome[] = [];
  console.log(`fuzzing ${selected.join(', ')} for ${durationMs / 1000} s each (seed ${baseSeed})`);
  for (const [i, name] of selected.entries()) {
    const repoCorpus = join(here, 'corpus', name);
    const outDir = join(cache, 'corpus', name);
    rmSync(outDir, { recursive: true, force: true });
    const o = await runEngine(name, { durationMs, corpusDirs: [repoCorpus], outDir, seed: baseSeed + i });
    outcomes.push(o);
    if (values.merge && o.finding === null) {
      // Minimize: the smallest inputs that together reach every feature of the old corpus and the new inputs.
      const merged = join(cache, 'merge', name);
      rmSync(merged, { recursive: true, force: true });
      const m = await runEngine(name, { durationMs: 0, corpusDirs: [repoCorpus, outDir], outDir: merged, seed: 1 });
      if (m.finding === null) {
        rmSync(repoCorpus, { recursive: true, force: true });
        mkdirSync(repoCorpus, { recursive: true });
        for (const f of readdirSync(merged)) writeFileSync(join(repoCorpus, f), readFileSync(join(merged, f)));
        console.log(`  ${name}: corpus minimized to ${m.corpus} inputs (${m.features} features)`);
      }
    }
  }
  console.log('\ntarget        seconds      execs   execs/s  seeds  corpus  features  result');
  for (const o of outcomes) {
    const s = o.ms / 1000;
    console.log(
      `${o.target.padEnd(13)} ${s.toFixed(1).padStart(7)} ${String(o.execs).padStart(10)} ${String(Math.round(o.execs / s)).padStart(9)} ` +
        `${String(o.seeds).padStart(6)} ${String(o.corpus).padStart(7)} ${String(o.features).padStart(9)}  ${o.finding === null ? 'ok' : 'FINDING'}`,
    );
  }
  const found = outcomes.filter((o) => o.finding !== null);
  for (const o of found) console.log(`\n${o.target}: ${o.finding}`);
  return found.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    if (stuckWorkers > 0) {
      // process.exit() would wait for the stuck thread for ever (a deadlock inside Node is the likely cause).
      console.log('a worker thread did not stop; ending the process with SIGKILL');
      process.kill(process.pid, 'SIGKILL');
    }
    process.exit(code);
  },
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(2);
  },
);
