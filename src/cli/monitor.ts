/**
 * monitor: keep connections to a subsystem's paths and/or discovery controllers and print what happens (path state,
 * ANA state, asynchronous events, discovery log changes) until interrupted.
 */
import { connect, type ConnectOptions, type Controller, watchDiscovery, type DiscoveryEntry, type DiscoveryWatcher, type DiscoveryWatchEvent, type ControllerEvent, Path, pathId, type PathChange } from '../index.js';
import {
  RECONNECT_OPTIONS,
  TARGET_OPTIONS,
  UsageError,
  addressesOf,
  checkTransport,
  connectFlags,
  discoveryFlags,
  secondsFlag,
  splitAddress,
  type OptionSpecs,
} from './args.js';
import { ExitCode, connecting, type Command, type Ctx } from './context.js';
import { discoveryEntryJson } from './admin.js';
import { clock, errorJson, toJson } from './output.js';

/** A record printed by monitor (one JSON object per line with -o json). */
export type MonitorRecord =
  | { type: 'path'; time: string; source: string; subnqn: string; state: string; previous: string | null; cntlid: number | null; reason: string | null }
  | { type: 'ana'; time: string; source: string; nsid: number; group: number | null; state: string | null; previous: string | null; reason: string | null }
  | { type: 'event'; time: string; source: string; cntlid: number; event: string; summary: string; detail: unknown }
  | {
      type: 'discovery';
      time: string;
      source: string;
      change: 'entry' | 'added' | 'removed' | 'disconnected' | 'reconnected' | 'error';
      entry: unknown;
      error: { code: string | null; message: string } | null;
      summary: string;
    };

const MONITOR_OPTIONS: OptionSpecs = {
  ...TARGET_OPTIONS,
  traddr: { ...TARGET_OPTIONS.traddr!, multiple: true, help: 'address of a path of the subsystem ("host:port" allowed)' },
  trsvcid: { ...TARGET_OPTIONS.trsvcid!, multiple: true, help: 'TCP port (one for all addresses, or one per address)', def: '4420' },
  nqn: { ...TARGET_OPTIONS.nqn!, help: 'subsystem NQN (required with -a)' },
  discovery: { type: 'string', short: 'D', multiple: true, arg: 'ADDR[:PORT]', help: 'also watch this discovery controller (port default 8009)' },
  ...RECONNECT_OPTIONS,
};

function entryText(e: DiscoveryEntry): string {
  return `${e.subtype} ${e.subnqn} at ${e.traddr}:${e.trsvcid} (port ${e.portid})`;
}

/** One line of text for a controller event, and its JSON detail. */
export function describeEvent(ev: ControllerEvent): { summary: string; detail: unknown } {
  switch (ev.type) {
    case 'ana-change': {
      const groups = ev.groups.map((g) => `group ${g.group} ${g.previous ?? '?'} -> ${g.state}`);
      const nss = ev.changed.map((c) => `nsid ${c.nsid} ${c.previous ?? '?'} -> ${c.state}`);
      const what = [...groups, ...nss].join(', ') || 'no state changed';
      return { summary: `ANA change (${ev.reason}): ${what}`, detail: { reason: ev.reason, groups: ev.groups, changed: ev.changed, chgcnt: ev.log.chgcnt } };
    }
    case 'namespace-changed':
      return {
        summary: `namespace attribute changed: nsids ${ev.overflow ? 'overflow (rescan)' : ev.nsids.join(',') || '-'}; added ${ev.added.join(',') || '-'}; removed ${ev.removed.join(',') || '-'}`,
        detail: { nsids: ev.nsids, overflow: ev.overflow, added: ev.added, removed: ev.removed },
      };
    case 'discovery-change':
      return { summary: 'discovery log page changed', detail: {} };
    case 'error':
      return { summary: `error status: ${ev.name} (${ev.entries.length} error log entries)`, detail: { info: ev.info, name: ev.name, entries: toJson(ev.entries) } };
    case 'smart':
      return { summary: `SMART / health: ${ev.name}${ev.log ? `, critical warning ${ev.log.criticalWarning}` : ''}`, detail: { info: ev.info, name: ev.name, log: toJson(ev.log) } };
    case 'firmware-activation':
      return { summary: 'firmware activation starting', detail: {} };
    case 'reservation':
      return { summary: `reservation notification for nsid ${ev.nsid}: ${ev.notification}`, detail: { nsid: ev.nsid, notification: ev.notification, logPageCount: ev.logPageCount } };
    case 'overflow':
      return { summary: `${ev.dropped} events dropped (slow consumer)`, detail: { dropped: ev.dropped } };
    case 'other':
      return { summary: `${ev.name} (type ${ev.aenType}, info ${ev.info}, log page ${ev.lid})`, detail: { aenType: ev.aenType, info: ev.info, lid: ev.lid, name: ev.name } };
  }
}

class Printer {
  private readonly width: number;
  constructor(
    private readonly ctx: Ctx,
    sources: string[],
  ) {
    this.width = Math.max(6, ...sources.map((s) => s.length));
  }

  print(r: MonitorRecord, text: string): void {
    if (this.ctx.format === 'json') this.ctx.jsonLine(r);
    else this.ctx.out(`${clock(Date.parse(r.time))}  ${r.source.padEnd(this.width)}  ${r.type.padEnd(9)}  ${text}\n`);
  }
}

const iso = (t: number) => new Date(t).toISOString();

export const monitorCommand: Command = {
  name: 'monitor',
  summary: 'watch paths, ANA state and events of a subsystem and/or a discovery controller until Ctrl-C',
  usage: 'monitor -a ADDR [-a ADDR...] -n NQN [--discovery ADDR[:PORT]...] [options]\n       nvmeof monitor --discovery ADDR[:PORT] [options]',
  description:
    'Keeps an admin connection to every path given with -a (reconnecting after a loss every --reconnect-delay seconds ' +
    'until --ctrl-loss-tmo) and to every discovery controller given with --discovery, and prints one line per ' +
    'happening: path state changes, the ANA state of each namespace through each path, asynchronous events (ANA ' +
    'change, namespace changes, errors, SMART, reservations) and discovery log changes. Runs until Ctrl-C (or ' +
    '--duration); with -o json it prints one JSON object per line.',
  options: {
    discovery: MONITOR_OPTIONS.discovery!,
    duration: { type: 'string', arg: 'SEC', help: 'stop after this many seconds (default: run until Ctrl-C)' },
    ...RECONNECT_OPTIONS,
  },
  connection: Object.fromEntries(Object.entries(MONITOR_OPTIONS).filter(([k]) => k !== 'discovery' && !(k in RECONNECT_OPTIONS))),
  examples: [
    'nvmeof monitor -a 192.0.2.10 -a 192.0.2.11 -n nqn.2024-01.com.example:disk1',
    'nvmeof monitor --discovery 192.0.2.10:8009 -o json | jq .',
  ],
  async run(ctx, v) {
    checkTransport(v);
    const nqn = v.str('nqn');
    const addrs = addressesOf(v, 4420);
    const discoveries = v.strs('discovery').map((d) => splitAddress(d, 8009, '--discovery', v.command));
    if (addrs.length === 0 && discoveries.length === 0) throw new UsageError('give the subsystem\'s paths (-a with -n) and/or --discovery ADDR', v.command);
    if (addrs.length > 0 && !nqn) v.required('nqn', 'the subsystem NQN of the paths given with -a');
    const durationMs = v.int('duration', 1, 31_536_000);
    const reconnectDelay = secondsFlag(v, 'reconnect-delay', 0);
    const ctrlLossTimeout = secondsFlag(v, 'ctrl-loss-tmo', -1);
    const base: Omit<ConnectOptions, 'host' | 'port'> | undefined = addrs.length > 0 ? connectFlags(v, { ioQueues: 0 }) : undefined;

    const printer = new Printer(ctx, [...addrs.map((a) => pathId(a.host, a.port)), ...discoveries.map((d) => pathId(d.host, d.port))]);
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    if (ctx.signal.aborted) stop.abort();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const timer = durationMs === undefined ? undefined : setTimeout(() => stop.abort(), durationMs * 1000);

    const paths: Path[] = [];
    const watchers: DiscoveryWatcher[] = [];
    let fatal: unknown;
    try {
      for (const a of addrs) {
        const source = pathId(a.host, a.port);
        const onEvent = (ctrl: Controller) => (ev: ControllerEvent) => {
          const { summary, detail } = describeEvent(ev);
          printer.print({ type: 'event', time: iso(ev.time), source, cntlid: ctrl.cntlid, event: ev.type, summary, detail: toJson(detail) }, `controller ${ctrl.cntlid}: ${summary}`);
        };
        const path = new Path({
          ...base!,
          host: a.host,
          port: a.port,
          ...(reconnectDelay === undefined ? {} : { reconnectDelay }),
          ...(ctrlLossTimeout === undefined ? {} : { ctrlLossTimeout }),
          connect: async (o) => {
            const ctrl = await connect(o);
            ctrl.on('*', onEvent(ctrl));
            return ctrl;
          },
        });
        path.onChange((c) => printChange(printer, source, path, c));
        paths.push(path);
      }
      ctx.err(
        `watching ${paths.length} path${paths.length === 1 ? '' : 's'}${nqn ? ` of ${nqn}` : ''}${discoveries.length ? `${paths.length ? ' and' : ''} ${discoveries.length} discovery controller${discoveries.length === 1 ? '' : 's'}` : ''}; Ctrl-C to stop\n`,
      );
      for (const p of paths) p.start().catch(() => {});
      for (const d of discoveries) {
        const source = pathId(d.host, d.port);
        const w = await connecting(
          watchDiscovery({
            host: d.host,
            port: d.port,
            ...discoveryFlags(v, { nqn: false }),
            ...(reconnectDelay === undefined ? {} : { reconnectDelay }),
            signal: stop.signal,
          }),
        );
        watchers.push(w);
        for (const e of w.log.entries) {
          printer.print({ type: 'discovery', time: iso(Date.now()), source, change: 'entry', entry: discoveryEntryJson(e), error: null, summary: entryText(e) }, entryText(e));
        }
        w.on('*', (ev) => printDiscovery(printer, source, ev));
      }
      await new Promise<void>((resolve) => {
        if (stop.signal.aborted) return resolve();
        stop.signal.addEventListener('abort', () => resolve(), { once: true });
        // Nothing left to watch: every path gave up and there is no discovery controller.
        const check = () => {
          if (watchers.length === 0 && paths.length > 0 && paths.every((p) => p.state === 'failed' || p.state === 'deleted')) resolve();
        };
        for (const p of paths) p.onChange(check);
      });
    } catch (err) {
      fatal = err;
    } finally {
      if (timer) clearTimeout(timer);
      ctx.signal.removeEventListener('abort', onAbort);
      await Promise.allSettled([...paths.map((p) => p.close()), ...watchers.map((w) => w.close())]);
    }
    if (fatal !== undefined) throw fatal;
    if (!stop.signal.aborted) {
      ctx.err(`nvmeof monitor: every path gave up (${paths.map((p) => p.id).join(', ')}); nothing left to watch\n`);
      return ExitCode.CONNECT;
    }
    return ExitCode.OK;
  },
};

function printChange(printer: Printer, source: string, path: Path, c: PathChange): void {
  const time = iso(c.time);
  if (c.kind === 'ana') {
    const group = c.nsid === undefined ? undefined : path.anaGroup(c.nsid);
    printer.print(
      { type: 'ana', time, source, nsid: c.nsid ?? 0, group: group ?? null, state: c.anaState ?? null, previous: c.previousAnaState ?? null, reason: c.reason ?? null },
      `nsid ${c.nsid}${group === undefined ? '' : ` (group ${group})`}: ${c.previousAnaState ?? 'unknown'} -> ${c.anaState ?? 'not reported'}`,
    );
    return;
  }
  if (c.kind === 'fail-fast') {
    printer.print({ type: 'path', time, source, subnqn: path.subnqn, state: 'fail-fast', previous: null, cntlid: path.cntlid ?? null, reason: c.reason ?? null }, c.reason ?? 'fast I/O fail');
    return;
  }
  if (c.to === 'deleted') return;
  const cntlid = c.to === 'live' ? (path.cntlid ?? null) : null;
  printer.print(
    { type: 'path', time, source, subnqn: path.subnqn, state: c.to ?? '?', previous: c.from ?? null, cntlid, reason: c.reason ?? null },
    `${c.to}${cntlid === null ? '' : ` (controller ${cntlid})`}${c.reason ? `: ${c.reason}` : ''}`,
  );
}

function printDiscovery(printer: Printer, source: string, ev: DiscoveryWatchEvent): void {
  const time = iso(ev.time);
  switch (ev.type) {
    case 'change':
      for (const e of ev.removed) printer.print({ type: 'discovery', time, source, change: 'removed', entry: discoveryEntryJson(e), error: null, summary: entryText(e) }, `removed ${entryText(e)}`);
      for (const e of ev.added) printer.print({ type: 'discovery', time, source, change: 'added', entry: discoveryEntryJson(e), error: null, summary: entryText(e) }, `added ${entryText(e)}`);
      return;
    case 'disconnected':
      printer.print({ type: 'discovery', time, source, change: 'disconnected', entry: null, error: errorJson(ev.error), summary: ev.error.message }, `disconnected: ${ev.error.message}`);
      return;
    case 'reconnected':
      printer.print({ type: 'discovery', time, source, change: 'reconnected', entry: null, error: null, summary: 'reconnected' }, 'reconnected');
      return;
    case 'error':
      printer.print({ type: 'discovery', time, source, change: 'error', entry: null, error: errorJson(ev.error), summary: ev.error.message }, `error: ${ev.error.message}`);
      return;
    case 'overflow':
      printer.print({ type: 'discovery', time, source, change: 'error', entry: null, error: { code: null, message: `${ev.dropped} events dropped` }, summary: `${ev.dropped} events dropped` }, `${ev.dropped} events dropped`);
  }
}
