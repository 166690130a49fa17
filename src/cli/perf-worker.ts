/**
 * Entry of a `nvmeof perf --workers N` worker thread: runs the workload on a controller of its own and posts its
 * latency histograms to the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { perfWorkerMain, type PerfWorkerData } from './perf.js';

const port = parentPort!;
perfWorkerMain(workerData as PerfWorkerData, (m) => port.postMessage(m)).catch((err: unknown) => {
  const e = err as { message?: string; code?: string };
  port.postMessage({ ok: false, error: { message: e?.message ?? String(err), code: e?.code } });
});
