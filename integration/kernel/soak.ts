/**
 * Failover soak against the Linux kernel target (a script, not part of CI): verified writes run on a multipath
 * namespace over nvmet ports 1 and 2 while a loop makes faults one after another, each waited out before the next:
 *   - ana:   the active path's ANA group becomes inaccessible, then optimized again;
 *   - port:  the active path's port goes down (listener closed, controllers deleted), then comes back;
 *   - reset: the active path's controller is torn down and reconnected from the host side.
 * Then every record is read back and compared with the last write that completed. Prints the figures as JSON and
 * exits 1 on any lost or torn block.
 *
 *   NVMEOF_KERNEL_CACHE=... integration/kernel/in-netns.sh node --import tsx integration/kernel/soak.ts [--faults 100]
 */
import { Buffer } from 'node:buffer';
import { parseArgs } from 'node:util';
import { openMultipath, type Path } from '../../src/index.js';
import { waitFor } from '../../test/helpers/wait.js';
import { startKernelTarget } from './qemu-target.js';
import { PER_WRITE, generations, record as makeRecord } from './records.js';

const { values } = parseArgs({ options: { faults: { type: 'string', default: '100' }, records: { type: 'string', default: '512' } } });
const FAULTS = Number(values.faults);
const NSID = 1;
/** Records of the soak carry the tag 'soak'. */
const record = (rec: number, gen: number) => makeRecord(rec, gen, 0x6b616f73);

const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const target = await startKernelTarget();
log(`kernel ${target.kernelVersion} booted in ${target.bootMs} ms (${target.network} network)`);
/** nvmet-ctl in the guest (integration/kernel/guest/nvmet-ctl); throws with its output when it fails. */
async function nvmetCtl(...args: Array<string | number>): Promise<void> {
  const cmd = ['nvmet-ctl', ...args.map((a) => `'${String(a).replace(/'/g, "'\\''")}'`)].join(' ');
  const r = await target.exec(cmd);
  if (r.code !== 0) throw new Error(`${cmd} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
}
const group = target.anaGroups.find((g) => g.nsids.includes(NSID))!;
const m = await openMultipath({
  subnqn: target.multipathNqn,
  nsid: NSID,
  paths: [
    { host: target.ports.nvme1.host, port: target.ports.nvme1.port },
    { host: target.ports.nvme2.host, port: target.ports.nvme2.port },
  ],
  policy: 'failover',
  ioQueues: 2,
  queueSize: 32,
  reconnectDelay: 500,
  ctrlLossTimeout: -1,
  commandTimeout: 60_000,
});
const paths = m.paths as Path[];
const portOf = (p: Path) => (p === paths[0] ? target.ports.nvme1 : target.ports.nvme2);
const records = Math.min(Number(values.records), Number(m.blocks / BigInt(PER_WRITE)));
const written = new Map<number, Buffer>();
const inflight = new Map<number, Buffer[]>();
let stop = false;
let writes = 0;
let writeErrors = 0;
const errorsByCode: Record<string, number> = {};

// Four writers on disjoint records: no two writes to one LBA are ever in flight together.
const writers = [0, 1, 2, 3].map(async (w) => {
  let rec = w;
  let gen = 1;
  while (!stop) {
    const data = record(rec, gen);
    inflight.set(rec, [...(inflight.get(rec) ?? []), data]);
    try {
      await m.write(rec * PER_WRITE, data);
      written.set(rec, data);
      inflight.delete(rec);
      writes++;
    } catch (err) {
      // A failed write may or may not have reached the media: the block must then hold either version.
      writeErrors++;
      const code = (err as { code?: string }).code ?? 'untyped';
      errorsByCode[code] = (errorsByCode[code] ?? 0) + 1;
      await new Promise((r) => setTimeout(r, 100));
    }
    rec += 4;
    if (rec >= records) {
      rec = w;
      gen++;
    }
  }
});

const activePath = () => paths.find((p) => p.state === 'live' && p.anaState(NSID) === 'optimized') ?? paths.find((p) => p.state === 'live') ?? paths[0]!;
const progressed = async (what: string) => {
  const from = writes;
  await waitFor(() => writes >= from + 20, 120_000, what, () => JSON.stringify(m.health().paths.map((p) => [p.id, p.state, p.anaState])));
};
const counts = { ana: 0, port: 0, reset: 0 };
const started = Date.now();
try {
  await progressed('writes before the first fault');
  for (let i = 0; i < FAULTS; i++) {
    const kind = (['ana', 'port', 'reset'] as const)[i % 3]!;
    const p = activePath();
    const port = portOf(p);
    if (kind === 'ana') {
      await nvmetCtl('ana', port.portid, group.grpid, 'inaccessible');
      await waitFor(() => p.anaState(NSID) === 'inaccessible', 60_000, 'ANA inaccessible');
      await progressed('writes while a path is inaccessible');
      await nvmetCtl('ana', port.portid, group.grpid, p === paths[0] ? group.initialState.nvme1 : group.initialState.nvme2);
      await waitFor(() => p.anaState(NSID) !== 'inaccessible', 60_000, 'ANA restored');
    } else if (kind === 'port') {
      await nvmetCtl('port-down', port.portid);
      await waitFor(() => p.state !== 'live', 60_000, 'path down');
      await progressed('writes while a port is down');
      await nvmetCtl('port-up', port.portid);
      await waitFor(() => p.state === 'live', 120_000, 'path back');
    } else {
      const before = p.health().reconnects;
      p.reset('soak: controller reset');
      await waitFor(() => p.state === 'live' && p.health().reconnects > before, 120_000, 'controller reconnected');
    }
    counts[kind]++;
    await progressed('writes after the fault');
    if ((i + 1) % 10 === 0) log(`${i + 1} faults, ${writes} writes, ${writeErrors} write errors`);
  }
} finally {
  stop = true;
  await Promise.all(writers);
}

// Read every record back: it must hold the last completed write, or a write that failed (it may have landed).
let lost = 0;
let torn = 0;
for (let rec = 0; rec < records; rec++) {
  const got = await m.read(rec * PER_WRITE, PER_WRITE);
  const candidates = [written.get(rec), ...(inflight.get(rec) ?? [])].filter((b): b is Buffer => b !== undefined);
  if (candidates.length === 0) continue;
  if (candidates.some((c) => c.equals(got))) continue;
  // Torn: blocks of different generations; lost: a whole record older than the last completed write.
  if (generations(got).size > 1) torn++;
  else lost++;
}
await m.close();
await target.stop();
const out = {
  kernel: target.kernelVersion,
  faults: counts.ana + counts.port + counts.reset,
  byKind: counts,
  seconds: Math.round((Date.now() - started) / 1000),
  writes,
  writeErrors,
  errorsByCode,
  records,
  lost,
  torn,
};
console.log(JSON.stringify(out, null, 2));
process.exit(lost + torn === 0 ? 0 : 1);
