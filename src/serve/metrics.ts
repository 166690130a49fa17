/**
 * GET /metrics: the Prometheus text exposition format (version 0.0.4). Every family has HELP and TYPE lines, counters
 * end in _total, units are seconds and bytes, and label values are escaped as the format requires.
 */
import { LATENCY_BUCKETS, type ServeDaemon } from './daemon.js';

const CONTROLLER_STATES = ['connecting', 'live', 'reconnecting', 'failed', 'deleting'] as const;
const ANA_STATES = ['optimized', 'non-optimized', 'inaccessible', 'persistent-loss', 'change'] as const;
const ERROR_KINDS = ['command', 'path-status', 'ana', 'connection', 'keep-alive', 'timeout', 'transport'] as const;

type Labels = Record<string, string | number>;

function escape(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labels(l: Labels): string {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escape(String(v))}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'gauge' | 'counter' | 'histogram', help: string, samples: [Labels, number][] | (() => void)): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    if (typeof samples === 'function') samples();
    else for (const [l, v] of samples) this.sample(name, l, v);
  }

  sample(name: string, l: Labels, v: number): void {
    this.lines.push(`${name}${labels(l)} ${num(v)}`);
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

/** The daemon's metrics as Prometheus text. */
export function renderMetrics(d: ServeDaemon): string {
  const x = new Exposition();
  const paths = d.allPaths();
  const base = (p: (typeof paths)[number]) => ({ id: p.id, subnqn: p.subnqn, traddr: p.traddr, trsvcid: p.trsvcid });

  x.family('nvmeof_up', 'gauge', 'The daemon is running (1), or draining before exit (0).', [[{}, d.draining ? 0 : 1]]);
  x.family('nvmeof_uptime_seconds', 'gauge', 'Seconds since the daemon started.', [[{}, Math.floor((Date.now() - d.startedAt) / 1000)]]);
  x.family(
    'nvmeof_controller_state',
    'gauge',
    'Controller (path) state, one-hot: 1 for the current state, 0 for the others.',
    paths.flatMap((p) => CONTROLLER_STATES.map((s): [Labels, number] => [{ ...base(p), state: s }, p.state === s ? 1 : 0])),
  );
  const subsys = new Map<string, { total: number; live: number }>();
  for (const p of paths) {
    const s = subsys.get(p.subnqn) ?? { total: 0, live: 0 };
    s.total++;
    if (p.state === 'live') s.live++;
    subsys.set(p.subnqn, s);
  }
  x.family('nvmeof_subsystem_paths', 'gauge', 'Paths (controllers) held to the subsystem.', [...subsys].map(([subnqn, s]): [Labels, number] => [{ subnqn }, s.total]));
  x.family('nvmeof_subsystem_live_paths', 'gauge', 'Paths to the subsystem that are live.', [...subsys].map(([subnqn, s]): [Labels, number] => [{ subnqn }, s.live]));
  x.family(
    'nvmeof_ana_state',
    'gauge',
    'ANA state of a namespace through a path, one-hot (no samples while the path is down or the controller does not report ANA).',
    paths.flatMap((p) =>
      p.nsids.flatMap((nsid) => {
        const st = p.anaState(nsid);
        if (st === null) return [];
        return ANA_STATES.map((s): [Labels, number] => [{ ...base(p), nsid, state: s }, st === s ? 1 : 0]);
      }),
    ),
  );
  x.family(
    'nvmeof_keep_alive_rtt_seconds',
    'gauge',
    'Round-trip time of the last Keep Alive command.',
    paths.filter((p) => p.health.keepAliveRttMs !== null).map((p): [Labels, number] => [base(p), p.health.keepAliveRttMs! / 1000]),
  );
  x.family('nvmeof_path_commands_completed_total', 'counter', 'I/O commands completed on the path (multipath namespaces and API block I/O).', paths.map((p): [Labels, number] => [base(p), p.health.completed]));
  x.family('nvmeof_reconnects_total', 'counter', 'Successful reconnects of the path.', paths.map((p): [Labels, number] => [base(p), p.health.reconnects]));
  x.family('nvmeof_reconnect_attempts_total', 'counter', 'Reconnect attempts of the path, successful or not.', paths.map((p): [Labels, number] => [base(p), p.health.reconnectAttempts]));
  x.family(
    'nvmeof_path_errors_total',
    'counter',
    'Failed I/O commands on the path by kind (command: returned to the caller; the others are path errors).',
    paths.flatMap((p) => ERROR_KINDS.map((k): [Labels, number] => [{ ...base(p), kind: k }, p.health.errors[k]])),
  );

  const ctrls = [...d.controllers.values()];
  const where = (mc: (typeof ctrls)[number]) => ({ id: mc.id, subnqn: mc.spec.subnqn, traddr: mc.spec.traddr, trsvcid: mc.spec.trsvcid });
  const io = ctrls.flatMap((mc) => [...mc.io].map(([key, s]) => ({ l: { ...where(mc), nsid: Number(key.split('/')[0]), op: key.split('/')[1]! }, s })));
  x.family('nvmeof_io_requests_total', 'counter', 'Block I/O requests served through the API, per path, namespace and operation.', io.map((r): [Labels, number] => [r.l, r.s.requests]));
  x.family('nvmeof_io_bytes_total', 'counter', 'Bytes read or written through the API, per path, namespace and operation.', io.map((r): [Labels, number] => [r.l, r.s.bytes]));
  x.family('nvmeof_io_request_duration_seconds', 'histogram', 'Latency of block I/O requests through the API (from submission to completion of every command).', () => {
    for (const r of io) {
      LATENCY_BUCKETS.forEach((b, i) => x.sample('nvmeof_io_request_duration_seconds_bucket', { ...r.l, le: num(b) }, r.s.buckets[i]!));
      x.sample('nvmeof_io_request_duration_seconds_bucket', { ...r.l, le: '+Inf' }, r.s.requests);
      x.sample('nvmeof_io_request_duration_seconds_sum', r.l, r.s.sum);
      x.sample('nvmeof_io_request_duration_seconds_count', r.l, r.s.requests);
    }
  });
  x.family(
    'nvmeof_async_events_total',
    'counter',
    'Asynchronous events delivered by the controller, by type.',
    ctrls.flatMap((mc) => [...mc.aens].map(([type, n]): [Labels, number] => [{ ...where(mc), type }, n])),
  );
  x.family('nvmeof_api_errors_total', 'counter', 'Error answers of the API by library error code.', [...d.errorsByCode].map(([code, n]): [Labels, number] => [{ code }, n]));
  x.family('nvmeof_events_total', 'counter', 'Events published on /v1/events (the id of the newest one).', [[{}, d.events.lastId]]);
  return x.text();
}
