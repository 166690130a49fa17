/**
 * serve: the host daemon. Holds controllers, discovery controllers and multipath namespaces for many clients behind a
 * JSON HTTP API with Server-Sent Events and Prometheus metrics. It does not daemonize (a service manager runs it);
 * SIGHUP reloads the config file, SIGTERM (or Ctrl-C) drains and exits.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { ApiServer, parseListen, type ListenSpec } from '../serve/http.js';
import { ServeDaemon } from '../serve/daemon.js';
import { parseConfig, type ServeConfig } from '../serve/validate.js';
import { UsageError, type OptionSpecs } from './args.js';
import { ExitCode, type Command } from './context.js';

const SERVE_OPTIONS: OptionSpecs = {
  config: { type: 'string', short: 'c', arg: 'FILE', help: 'JSON file of controllers, discovery controllers and multipath namespaces to hold (re-read on SIGHUP)' },
  listen: {
    type: 'string',
    short: 'l',
    multiple: true,
    arg: 'unix:PATH|tcp:HOST:PORT',
    help: 'where to serve the API (repeatable); tcp:PORT binds to loopback; TCP needs --token-file',
    def: 'unix:$RUNTIME_DIRECTORY/nvmeof.sock, else $XDG_RUNTIME_DIR, else /run (root) or the temporary directory',
  },
  'token-file': { type: 'string', arg: 'FILE', help: 'file holding the bearer token TCP clients must send (Authorization: Bearer TOKEN)' },
  'max-io': { type: 'string', arg: 'BYTES', help: 'largest block I/O transfer of one request (suffixes k, m)', def: '1m' },
  'queue-limit': { type: 'string', arg: 'N', help: 'management operations queued per object before 429', def: '16' },
  'event-ring': { type: 'string', arg: 'N', help: 'events kept for replay with Last-Event-ID', def: '1024' },
};

/** The default Unix socket: the service's runtime directory, the user's, else /run (root) or the temporary directory. */
export function defaultSocketPath(): string {
  const dir = process.env.RUNTIME_DIRECTORY?.split(':')[0] || process.env.XDG_RUNTIME_DIR || (process.getuid?.() === 0 ? '/run' : tmpdir());
  return join(dir, 'nvmeof.sock');
}

function readToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--token-file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`, 'serve');
  }
  const token = text.trim();
  if (token.length < 16 || /\s/.test(token)) throw new UsageError(`--token-file ${file}: the token must be at least 16 characters without spaces`, 'serve');
  return token;
}

function loadConfig(file: string): ServeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--config ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`, 'serve');
  }
  return parseConfig(text);
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'run the host daemon: a JSON HTTP API, live events and Prometheus metrics over held connections',
  usage: 'serve [--config FILE] [--listen unix:PATH | tcp:HOST:PORT]... [--token-file FILE]',
  description:
    'Holds NVMe/TCP controllers, persistent discovery controllers and multipath namespaces for many clients, and ' +
    'serves them over HTTP: /v1/health, /v1/controllers (CRUD, reconnect, namespaces, block I/O, reservations), ' +
    '/v1/subsystems, /v1/discovery, /v1/multipath, /v1/events (Server-Sent Events) and /metrics (Prometheus). It ' +
    'listens on a Unix socket (mode 0600) unless told otherwise; a TCP listener requires a bearer token from ' +
    '--token-file. It prints where it listens once ready and runs in the foreground. SIGHUP re-reads --config and ' +
    'applies only the difference (a config that does not load changes nothing); SIGTERM or Ctrl-C finishes the ' +
    'requests in flight, closes every controller and exits. See docs/serve.md.',
  options: SERVE_OPTIONS,
  formats: ['normal'],
  examples: [
    'nvmeof serve --config /etc/nvmeof/serve.json',
    'nvmeof serve --listen unix:/run/nvmeof.sock --listen tcp:127.0.0.1:8080 --token-file /etc/nvmeof/token',
    'curl --unix-socket /run/nvmeof.sock http://localhost/v1/health',
  ],
  async run(ctx, v) {
    const listens: ListenSpec[] = [];
    for (const s of v.strs('listen')) {
      try {
        listens.push(parseListen(s));
      } catch (err) {
        throw new UsageError((err as Error).message, 'serve');
      }
    }
    if (listens.length === 0) listens.push({ kind: 'unix', path: defaultSocketPath() });
    const tokenFile = v.str('token-file');
    const token = tokenFile === undefined ? undefined : readToken(tokenFile);
    if (listens.some((l) => l.kind === 'tcp') && token === undefined) throw new UsageError('a TCP listener needs --token-file', 'serve');
    const configFile = v.str('config');
    const config = configFile === undefined ? undefined : loadConfig(configFile);

    const log = (line: string) => ctx.err(`${new Date().toISOString()} ${line}\n`);
    const daemon = new ServeDaemon({
      maxIoBytes: v.size('max-io', 4096, 64 * 1024 * 1024, 1024 * 1024),
      queueLimit: v.int('queue-limit', 1, 100_000, 16),
      eventRing: v.int('event-ring', 1, 1_000_000, 1024),
      log,
    });
    const api = new ApiServer(daemon, { token });
    const stop = new AbortController();
    const onStop = (why: string) => () => {
      if (stop.signal.aborted) return;
      log(`${why}: draining`);
      stop.abort();
    };
    const onTerm = onStop('SIGTERM');
    // The executable turns SIGTERM into the interrupt signal too (reason 'terminated'); name it for the log.
    const onInt = () => onStop((ctx.signal.reason as Error | undefined)?.message === 'terminated' ? 'SIGTERM' : 'interrupted')();
    let reloading: Promise<void> = Promise.resolve();
    const onHup = () => {
      if (configFile === undefined) {
        log('SIGHUP: no --config to re-read');
        return;
      }
      reloading = reloading.then(async () => {
        let next: ServeConfig;
        try {
          next = loadConfig(configFile);
        } catch (err) {
          log(`SIGHUP: config not reloaded, nothing changed: ${(err as Error).message}`);
          return;
        }
        const diff = await daemon.applyConfig(next);
        log(`SIGHUP: config reloaded: added ${diff.added.join(',') || '-'}; removed ${diff.removed.join(',') || '-'}; kept ${diff.kept.join(',') || '-'}`);
      });
    };
    process.on('SIGTERM', onTerm);
    process.on('SIGHUP', onHup);
    if (ctx.signal.aborted) onInt();
    ctx.signal.addEventListener('abort', onInt, { once: true });
    try {
      for (const l of listens) ctx.out(`nvmeof serve: listening on ${await api.listen(l)}\n`);
      if (config) {
        const diff = await daemon.applyConfig(config);
        if (diff.added.length > 0) log(`config: holding ${diff.added.join(',')}`);
      }
      ctx.out('nvmeof serve: ready\n');
      await new Promise<void>((resolve) => {
        if (stop.signal.aborted) resolve();
        else stop.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      await reloading;
      await api.drain();
      await daemon.close();
      log('stopped');
      return ExitCode.OK;
    } finally {
      process.off('SIGTERM', onTerm);
      process.off('SIGHUP', onHup);
      ctx.signal.removeEventListener('abort', onInt);
      await api.drain(0).catch(() => undefined);
    }
  },
};
