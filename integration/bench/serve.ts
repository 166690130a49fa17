/**
 * Load benchmark of `nvmeof serve`: 50 concurrent clients (each its own keep-alive connection) against the daemon,
 * reporting requests per second and latency percentiles of `GET /v1/controllers` and of 4 KiB block reads through
 * the API. The daemon and the target each run as their own process: by default the embedded target
 * (integration/bench/embedded-target.ts), or any target given with --traddr/--trsvcid/--subnqn.
 *
 *   node --import tsx integration/bench/serve.ts [--clients 50] [--seconds 10] [--listen unix|tcp] [--json]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '10' },
    listen: { type: 'string', default: 'unix' },
    traddr: { type: 'string' },
    trsvcid: { type: 'string', default: '4420' },
    subnqn: { type: 'string', default: 'nqn.2016-06.io.nvmeof:bench' },
    'io-queues': { type: 'string', default: '4' },
    json: { type: 'boolean', default: false },
  },
});
const CLIENTS = Number(values.clients);
const SECONDS = Number(values.seconds);
const TOKEN = 'bench-token-0123456789abcdef';
const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'nvmeof-serve-bench-'));

function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanup);

/** Start a process and resolve with the first stdout line matching `re`. */
function startProcess(args: string[], re: RegExp): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = re.exec(out);
      if (m) resolve({ child, match: m });
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code} before it was ready`)));
  });
}

interface Conn {
  agent: http.Agent;
  opts: http.RequestOptions;
}

function request(c: Conn, method: string, path: string, body?: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...c.opts, agent: c.agent, method, path, headers: { ...(c.opts.headers ?? {}), ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) } }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => resolve({ status: res.statusCode!, bytes }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

interface Result {
  requests: number;
  seconds: number;
  perSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  errors: number;
}

async function phase(conns: Conn[], path: () => string, expectBytes: number | undefined): Promise<Result> {
  const lat: number[] = [];
  let errors = 0;
  const end = performance.now() + SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    conns.map(async (c) => {
      while (performance.now() < end) {
        const s = performance.now();
        const r = await request(c, 'GET', path());
        lat.push(performance.now() - s);
        if (r.status !== 200 || (expectBytes !== undefined && r.bytes !== expectBytes)) errors++;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number) => Math.round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]! * 1000) / 1000;
  return { requests: lat.length, seconds: Math.round(secs * 100) / 100, perSecond: Math.round(lat.length / secs), latencyMs: { p50: q(0.5), p99: q(0.99), max: q(1) }, errors };
}

async function main(): Promise<void> {
  let traddr = values.traddr;
  let trsvcid = values.trsvcid!;
  if (traddr === undefined) {
    const t = await startProcess(['integration/bench/embedded-target.ts'], /listening (\d+)/);
    traddr = '127.0.0.1';
    trsvcid = t.match[1]!;
  }
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  const sock = join(dir, 'api.sock');
  const listen = values.listen === 'tcp' ? 'tcp:127.0.0.1:0' : `unix:${sock}`;
  const d = await startProcess(['src/cli/main.ts', 'serve', '--listen', listen, '--token-file', tokenFile], /listening on (unix:\S+|tcp:(\S+):(\d+))\n/);
  const base: http.RequestOptions = values.listen === 'tcp' ? { host: '127.0.0.1', port: Number(d.match[3]), headers: { authorization: `Bearer ${TOKEN}` } } : { socketPath: sock };
  const admin: Conn = { agent: new http.Agent({ keepAlive: true }), opts: base };
  const created = await request(admin, 'POST', '/v1/controllers', JSON.stringify({ traddr, trsvcid, subnqn: values.subnqn, ioQueues: Number(values['io-queues']) }));
  if (created.status !== 201) throw new Error(`attaching the controller failed with HTTP ${created.status}`);
  // Namespace 1: its size and block size.
  const nsInfo = await new Promise<{ blockSize: number; blocks: number }>((resolve, reject) => {
    http
      .get({ ...base, agent: admin.agent, path: '/v1/controllers/c1/namespaces' }, (res) => {
        let s = '';
        res.on('data', (c) => (s += c));
        res.on('end', () => resolve(JSON.parse(s)[0]));
      })
      .on('error', reject);
  });
  const perRead = 4096 / nsInfo.blockSize;
  const conns: Conn[] = Array.from({ length: CLIENTS }, () => ({ agent: new http.Agent({ keepAlive: true, maxSockets: 1 }), opts: base }));
  const list = await phase(conns, () => '/v1/controllers', undefined);
  const span = Math.floor(nsInfo.blocks / perRead);
  const reads = await phase(conns, () => `/v1/controllers/c1/namespaces/1/blocks?lba=${Math.floor(Math.random() * span) * perRead}&count=${perRead}`, 4096);
  const report = { clients: CLIENTS, seconds: SECONDS, listen: values.listen, target: values.traddr === undefined ? 'embedded' : `${traddr}:${trsvcid}`, listControllers: list, read4k: reads };
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    process.stdout.write(`nvmeof serve, ${CLIENTS} clients, ${SECONDS} s per phase, ${values.listen} listener, target ${report.target}\n`);
    process.stdout.write('phase                 requests      req/s   p50 ms   p99 ms   max ms  errors\n');
    for (const [name, r] of [['GET /v1/controllers', list], ['4 KiB block read', reads]] as const) {
      process.stdout.write(
        `${name.padEnd(20)}${String(r.requests).padStart(10)}${String(r.perSecond).padStart(11)}${r.latencyMs.p50.toFixed(2).padStart(9)}${r.latencyMs.p99.toFixed(2).padStart(9)}${r.latencyMs.max.toFixed(2).padStart(9)}${String(r.errors).padStart(8)}\n`,
      );
    }
  }
  for (const c of [admin, ...conns]) c.agent.destroy();
  d.child.kill('SIGTERM');
  await new Promise((r) => d.child.once('exit', r));
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`serve benchmark: ${err.message}\n`);
    process.exit(1);
  },
);
