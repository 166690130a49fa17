/**
 * SPDK JSON-RPC client, topology builder and launcher against a fake JSON-RPC server on a temporary Unix socket (and
 * on TCP): responses in pieces and together, many calls in flight, batches, errors, timeouts, aborts, close.
 */
import { Buffer } from 'node:buffer';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, NvmeofError } from '../src/errors.js';
import {
  JsonValueStream,
  SpdkClient,
  SpdkRpcClient,
  SpdkRpcError,
  SPDK_DISCOVERY_NQN,
  applyTopology,
  removeTopology,
  resolveNvmfTgt,
  startSpdkTarget,
  type SpdkTopology,
} from '../src/spdk/index.js';

interface Req {
  jsonrpc?: string;
  method: string;
  params?: unknown;
  id?: unknown;
}

type Handler = (req: Req, sock: net.Socket) => unknown;

/**
 * Splits `text` into complete JSON values by trying JSON.parse on every prefix ending in '}' or ']' (slow, but
 * independent of the splitter under test). Returns the values and the unconsumed rest.
 */
function naiveSplit(text: string): [unknown[], string] {
  const out: unknown[] = [];
  let rest = text;
  outer: for (;;) {
    rest = rest.replace(/^\s+/, '');
    for (let i = 0; i < rest.length; i++) {
      const c = rest[i];
      if (c !== '}' && c !== ']') continue;
      try {
        out.push(JSON.parse(rest.slice(0, i + 1)));
        rest = rest.slice(i + 1);
        continue outer;
      } catch {
        /* not yet a complete value */
      }
    }
    return [out, rest];
  }
}

/** A fake SPDK RPC server. `handler` returns a response object to send, or undefined to stay silent. */
class FakeServer {
  readonly server: net.Server;
  readonly requests: Req[] = [];
  readonly sockets = new Set<net.Socket>();
  handler: Handler;

  constructor(handler: Handler) {
    this.handler = handler;
    this.server = net.createServer((sock) => {
      this.sockets.add(sock);
      sock.on('close', () => this.sockets.delete(sock));
      sock.on('error', () => undefined);
      let buf = '';
      sock.on('data', (d) => {
        buf += d.toString('utf8');
        const [values, rest] = naiveSplit(buf);
        buf = rest;
        for (const v of values) {
          const batch = Array.isArray(v) ? (v as Req[]) : [v as Req];
          const answers: unknown[] = [];
          for (const r of batch) {
            this.requests.push(r);
            const a = this.handler(r, sock);
            if (a !== undefined) answers.push(a);
          }
          if (Array.isArray(v)) {
            if (answers.length) sock.write(JSON.stringify(answers));
          } else for (const a of answers) sock.write(JSON.stringify(a));
        }
      });
    });
  }

  listenUnix(path: string): Promise<void> {
    return new Promise((resolve) => this.server.listen(path, resolve));
  }

  listenTcp(): Promise<number> {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as net.AddressInfo).port)));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const ok = (req: Req, result: unknown): object => ({ jsonrpc: '2.0', id: req.id, result });
const err = (req: Req, code: number, message: string): object => ({ jsonrpc: '2.0', id: req.id, error: { code, message } });

let dir: string;
let sockPath: string;
let fake: FakeServer | undefined;
let clients: SpdkRpcClient[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nvmeof-spdk-test-'));
  sockPath = join(dir, 'spdk.sock');
  clients = [];
});
afterEach(async () => {
  for (const c of clients) c.destroy();
  await fake?.close();
  fake = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function serve(handler: Handler): Promise<FakeServer> {
  fake = new FakeServer(handler);
  await fake.listenUnix(sockPath);
  return fake;
}

async function client(opts: { timeoutMs?: number } = {}): Promise<SpdkClient> {
  const c = await SpdkClient.connect({ socketPath: sockPath, ...opts });
  clients.push(c);
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('JsonValueStream', () => {
  it('splits back-to-back objects and arrays with or without separators', () => {
    const s = new JsonValueStream();
    const text = '{"a":1}{"b":[1,2,{"c":"}"}]}\n[{"d":"\\"]"}]\u0000 \r\n\t{"e":{}}';
    expect(s.push(Buffer.from(text))).toEqual([{ a: 1 }, { b: [1, 2, { c: '}' }] }, [{ d: '"]' }], { e: {} }]);
    expect(s.pending).toBe(false);
  });

  it('gives the same values for every split point, including inside strings, escapes and UTF-8 sequences', () => {
    const values = [{ id: 1, result: 'caf\u00e9 \ud83d\udcbe "quoted" \\ back\\slash {[' }, { id: 2, error: { code: -32602, message: 'Invalid parameters' } }, [{ id: 3, result: [] }]];
    const bytes = Buffer.from(values.map((v) => JSON.stringify(v)).join('\n'));
    for (let i = 0; i <= bytes.length; i++) {
      for (const j of [i, Math.min(bytes.length, i + 1), Math.min(bytes.length, i + 7)]) {
        const s = new JsonValueStream();
        const got = [...s.push(bytes.subarray(0, i)), ...s.push(bytes.subarray(i, j)), ...s.push(bytes.subarray(j))];
        expect(got).toEqual(values);
      }
    }
  });

  it('handles arbitrary JSON objects cut into arbitrary pieces (property)', () => {
    const obj = fc.dictionary(fc.string(), fc.jsonValue());
    fc.assert(
      fc.property(fc.array(obj, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 8 }), fc.constantFrom('', '\n', ' '), (objs, cuts, sep) => {
        const bytes = Buffer.from(objs.map((o) => JSON.stringify(o)).join(sep));
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const s = new JsonValueStream();
        const got: unknown[] = [];
        let prev = 0;
        for (const p of [...points, bytes.length]) {
          got.push(...s.push(bytes.subarray(prev, p)));
          prev = p;
        }
        expect(got).toEqual(objs.map((o) => JSON.parse(JSON.stringify(o)) as unknown));
        expect(s.pending).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it('rejects a top-level scalar, invalid JSON and values over the size limit', () => {
    expect(() => new JsonValueStream().push(Buffer.from('42'))).toThrow(/expected a JSON object or array/);
    expect(() => new JsonValueStream().push(Buffer.from('{"a":}'))).toThrow(SyntaxError);
    const small = new JsonValueStream(16);
    small.push(Buffer.from('{"a":"0123'));
    expect(() => small.push(Buffer.from('456789abcdef"}'))).toThrow(/larger than 16 bytes/);
  });
});

describe('SpdkRpcClient', () => {
  it('sends JSON-RPC 2.0 requests with numeric ids and resolves with the result', async () => {
    const srv = await serve((req) => ok(req, req.method === 'spdk_get_version' ? { version: 'SPDK v26.05', fields: { major: 26, minor: 5, patch: 0, suffix: '' } } : true));
    const c = await client();
    const v = await c.spdkGetVersion();
    expect(v.version).toBe('SPDK v26.05');
    expect(await c.call('bdev_malloc_delete', { name: 'm0' })).toBe(true);
    expect(srv.requests[0]).toEqual({ jsonrpc: '2.0', method: 'spdk_get_version', id: 1 });
    expect(srv.requests[1]).toEqual({ jsonrpc: '2.0', method: 'bdev_malloc_delete', params: { name: 'm0' }, id: 2 });
  });

  it('keeps many calls in flight and matches answers sent in reverse order in one chunk', async () => {
    const held: Req[] = [];
    await serve((req, sock) => {
      held.push(req);
      if (held.length === 200) sock.write(held.reverse().map((r) => JSON.stringify(ok(r, { echo: (r.params as { n: number }).n }))).join(''));
      return undefined;
    });
    const c = await client();
    const calls = Array.from({ length: 200 }, (_, n) => c.call<{ echo: number }>('echo', { n }));
    expect(c.inFlight).toBe(200);
    const results = await Promise.all(calls);
    expect(results.map((r) => r.echo)).toEqual(Array.from({ length: 200 }, (_, n) => n));
    expect(c.inFlight).toBe(0);
  });

  it('assembles a response written one byte at a time', async () => {
    const big = 'x'.repeat(300) + '\u00e9\ud83d\udcbe';
    await serve((req, sock) => {
      const bytes = Buffer.from(JSON.stringify(ok(req, { big })));
      void (async () => {
        for (let i = 0; i < bytes.length; i++) {
          sock.write(bytes.subarray(i, i + 1));
          if (i % 16 === 0) await sleep(1);
        }
      })();
      return undefined;
    });
    const c = await client();
    expect(await c.call('big')).toEqual({ big });
  });

  it('sends batches as one array and settles each call', async () => {
    const srv = await serve((req) => (req.method === 'bad' ? err(req, -32601, 'Method not found') : ok(req, req.method)));
    const c = await client();
    const res = await c.batch([{ method: 'a' }, { method: 'bad' }, { method: 'c', params: { x: 1 } }]);
    expect(res[0]).toEqual({ status: 'fulfilled', value: 'a' });
    expect(res[1]?.status).toBe('rejected');
    const e = (res[1] as PromiseRejectedResult).reason as SpdkRpcError;
    expect(e.rpcCode).toBe(-32601);
    expect(res[2]).toEqual({ status: 'fulfilled', value: 'c' });
    expect(srv.requests.map((r) => r.method)).toEqual(['a', 'bad', 'c']);
  });

  it('rejects with SpdkRpcError carrying the JSON-RPC code, message and method', async () => {
    await serve((req) => {
      if (req.method === 'nvmf_create_subsystem') return err(req, -32602, 'Invalid parameters');
      if (req.method === 'bdev_malloc_create') return err(req, -17, 'File exists');
      return err(req, -32601, 'Method not found');
    });
    const c = await client();
    const e1 = (await c.nvmfCreateSubsystem({ nqn: 'nqn.x' }).catch((e: unknown) => e)) as SpdkRpcError;
    expect(e1).toBeInstanceOf(SpdkRpcError);
    expect(e1).toBeInstanceOf(NvmeofError);
    expect(e1.code).toBe('NVMEOF_ERR_SPDK_RPC');
    expect(e1.code).toBe(ErrorCode.SPDK_RPC);
    expect(e1.rpcCode).toBe(-32602);
    expect(e1.rpcMessage).toBe('Invalid parameters');
    expect(e1.method).toBe('nvmf_create_subsystem');
    expect(e1.message).toContain('Invalid params');
    const e2 = (await c.bdevMallocCreate({ name: 'm0', block_size: 512, num_blocks: 8 }).catch((e: unknown) => e)) as SpdkRpcError;
    expect(e2.rpcCode).toBe(-17);
    expect(e2.message).toMatch(/File exists.*EEXIST/);
    const e3 = (await c.call('no_such_method').catch((e: unknown) => e)) as SpdkRpcError;
    expect(e3.rpcCode).toBe(-32601);
    // The connection stays usable after errors.
    expect(c.closed).toBe(false);
  });

  it('times out a call without harming the connection, and ignores the late answer', async () => {
    let late: Req | undefined;
    await serve((req, sock) => {
      if (req.method === 'slow') {
        late = req;
        return undefined;
      }
      if (req.method === 'release' && late) sock.write(JSON.stringify(ok(late, 'too late')));
      return ok(req, req.method);
    });
    const c = await client();
    const e = (await c.call('slow', undefined, { timeoutMs: 50 }).catch((x: unknown) => x)) as NvmeofError;
    expect(e.code).toBe(ErrorCode.TIMEOUT);
    expect(e.message).toMatch(/slow .*50 ms/);
    expect(await c.call('release')).toBe('release');
    expect(await c.call('after')).toBe('after');
    expect(c.inFlight).toBe(0);
  });

  it('applies the client default timeout', async () => {
    await serve(() => undefined);
    const c = await client({ timeoutMs: 30 });
    await expect(c.call('x')).rejects.toMatchObject({ code: ErrorCode.TIMEOUT });
  });

  it('rejects an aborted call with its signal', async () => {
    await serve(() => undefined);
    const c = await client();
    const ac = new AbortController();
    const p = c.call('x', undefined, { signal: ac.signal });
    ac.abort(new Error('enough'));
    await expect(p).rejects.toMatchObject({ code: ErrorCode.ABORTED });
    await expect(c.call('y', undefined, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: ErrorCode.ABORTED });
    expect(c.inFlight).toBe(0);
  });

  it('close() rejects pending calls, closes the socket, and later calls fail', async () => {
    const srv = await serve(() => undefined);
    const c = await client();
    const p1 = c.call('a').catch((e: unknown) => e);
    const p2 = c.call('b').catch((e: unknown) => e);
    await sleep(10);
    await c.close();
    expect(await p1).toMatchObject({ code: ErrorCode.CONNECTION_CLOSED });
    expect(await p2).toMatchObject({ code: ErrorCode.CONNECTION_CLOSED });
    expect(c.closed).toBe(true);
    await expect(c.call('c')).rejects.toMatchObject({ code: ErrorCode.CONNECTION_CLOSED });
    await c.close(); // idempotent
    await sleep(10);
    expect(srv.sockets.size).toBe(0);
  });

  it('rejects pending calls when the application closes the connection', async () => {
    await serve((req, sock) => {
      if (req.method === 'die') sock.destroy();
      return undefined;
    });
    const c = await client();
    const p = c.call('pending');
    void c.call('die').catch(() => undefined);
    await expect(p).rejects.toMatchObject({ code: ErrorCode.CONNECTION_CLOSED });
    expect(c.closed).toBe(true);
  });

  it('fails every pending call on a malformed response stream', async () => {
    await serve((_req, sock) => {
      sock.write('this is not json');
      return undefined;
    });
    const c = await client();
    const e = (await c.call('x').catch((x: unknown) => x)) as NvmeofError;
    expect(e.code).toBe(ErrorCode.CONNECTION_CLOSED);
    expect(e.message).toMatch(/malformed response/);
  });

  it('reports a parse error answered with a null id as the cause of the close', async () => {
    await serve((_req, sock) => {
      sock.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }));
      return undefined;
    });
    const c = await client();
    const e = (await c.call('x').catch((x: unknown) => x)) as NvmeofError;
    expect(e.code).toBe(ErrorCode.CONNECTION_CLOSED);
    expect((e.cause as SpdkRpcError).rpcCode).toBe(-32700);
  });

  it('fails to connect with NVMEOF_ERR_CONNECTION_FAILED when nothing listens', async () => {
    await expect(SpdkClient.connect({ socketPath: join(dir, 'nothing.sock') })).rejects.toMatchObject({ code: ErrorCode.CONNECTION_FAILED });
  });

  it('validates arguments before sending', async () => {
    const srv = await serve((req) => ok(req, true));
    const c = await client();
    await expect(c.call('')).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(c.call('x', 5 as unknown as object)).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(c.call('x', {}, { timeoutMs: -1 })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(SpdkClient.connect({ host: '127.0.0.1' })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    expect(srv.requests).toHaveLength(0);
  });

  it('works over TCP', async () => {
    fake = new FakeServer((req) => ok(req, 'tcp'));
    const port = await fake.listenTcp();
    const c = await SpdkClient.connect({ host: '127.0.0.1', port });
    clients.push(c);
    expect(await c.call('x')).toBe('tcp');
    expect(c.address).toBe(`127.0.0.1:${port}`);
  });
});

/** A fake nvmf_tgt RPC server that records calls and answers like SPDK does for the methods applyTopology uses. */
function fakeSpdk(): Handler {
  let nsid = 0;
  const transports: Array<Record<string, unknown>> = [];
  return (req) => {
    const p = (req.params ?? {}) as Record<string, unknown>;
    switch (req.method) {
      case 'nvmf_get_transports':
        return ok(req, transports);
      case 'nvmf_create_transport':
        transports.push({ ...p, max_io_size: p.max_io_size ?? 131072 });
        return ok(req, true);
      case 'bdev_malloc_create':
      case 'bdev_null_create':
        return ok(req, p.name);
      case 'nvmf_subsystem_add_ns':
        return ok(req, (p.namespace as { nsid?: number }).nsid ?? ++nsid);
      case 'nvmf_get_subsystems':
        return ok(req, [{ nqn: SPDK_DISCOVERY_NQN }, { nqn: 'nqn.2016-06.io.spdk:a' }]);
      case 'bdev_get_bdevs':
        return ok(req, [{ name: 'm512' }]);
      default:
        return ok(req, true);
    }
  };
}

const TOPOLOGY: SpdkTopology = {
  transports: [{ trtype: 'TCP', max_io_size: 131072 }],
  bdevs: [
    { type: 'malloc', name: 'm512', sizeMiB: 8, blockSize: 512 },
    { type: 'null', name: 'n4k', blocks: 256, blockSize: 4096 },
  ],
  subsystems: [
    {
      nqn: 'nqn.2016-06.io.spdk:a',
      serial: 'SN1',
      model: 'Model',
      hosts: ['nqn.2014-08.org.nvmexpress:uuid:1', { nqn: 'nqn.2014-08.org.nvmexpress:uuid:2', psk: 'key0' }],
      anaReporting: true,
      namespaces: [{ bdev: 'm512' }, { bdev: 'n4k', nsid: 5, anaGroup: 2 }],
      listeners: [{ traddr: '127.0.0.1', trsvcid: 4420, anaState: 'non_optimized', anaGroupStates: { 2: 'inaccessible' } }],
    },
  ],
  discoveryListeners: [{ traddr: '::1', trsvcid: '8009' }],
};

describe('applyTopology / removeTopology', () => {
  it('sends the RPCs in dependency order with SPDK parameter names', async () => {
    const srv = await serve(fakeSpdk());
    const c = await client();
    const applied = await applyTopology(c, TOPOLOGY);
    expect(applied).toEqual({
      bdevs: ['m512', 'n4k'],
      subsystems: [{ nqn: 'nqn.2016-06.io.spdk:a', namespaces: [{ bdev: 'm512', nsid: 1 }, { bdev: 'n4k', nsid: 5 }] }],
    });
    const calls = srv.requests.map((r) => [r.method, r.params ?? null]);
    const addr = { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: '4420' };
    expect(calls).toEqual([
      ['nvmf_get_transports', {}],
      ['nvmf_create_transport', { trtype: 'TCP', max_io_size: 131072 }],
      ['bdev_malloc_create', { name: 'm512', block_size: 512, num_blocks: 16384 }],
      ['bdev_null_create', { name: 'n4k', block_size: 4096, num_blocks: 256 }],
      ['nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:a', allow_any_host: false, serial_number: 'SN1', model_number: 'Model', ana_reporting: true }],
      ['nvmf_subsystem_add_host', { nqn: 'nqn.2016-06.io.spdk:a', host: 'nqn.2014-08.org.nvmexpress:uuid:1' }],
      ['nvmf_subsystem_add_host', { nqn: 'nqn.2016-06.io.spdk:a', host: 'nqn.2014-08.org.nvmexpress:uuid:2', psk: 'key0' }],
      ['nvmf_subsystem_add_ns', { nqn: 'nqn.2016-06.io.spdk:a', namespace: { bdev_name: 'm512' } }],
      ['nvmf_subsystem_add_ns', { nqn: 'nqn.2016-06.io.spdk:a', namespace: { bdev_name: 'n4k', nsid: 5, anagrpid: 2 } }],
      ['nvmf_subsystem_add_listener', { nqn: 'nqn.2016-06.io.spdk:a', listen_address: addr, ana_state: 'non_optimized' }],
      ['nvmf_subsystem_listener_set_ana_state', { nqn: 'nqn.2016-06.io.spdk:a', listen_address: addr, ana_state: 'inaccessible', anagrpid: 2 }],
      ['nvmf_subsystem_add_listener', { nqn: SPDK_DISCOVERY_NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv6', traddr: '::1', trsvcid: '8009' } }],
    ]);

    // A second application reuses the matching transport; a conflicting option is refused.
    srv.requests.length = 0;
    await applyTopology(c, { transports: [{ trtype: 'tcp', max_io_size: 131072 }] });
    expect(srv.requests.map((r) => r.method)).toEqual(['nvmf_get_transports']);
    await expect(applyTopology(c, { transports: [{ trtype: 'TCP', max_io_size: 8192 }] })).rejects.toThrow(/already exists with max_io_size=131072/);

    srv.requests.length = 0;
    await removeTopology(c, TOPOLOGY);
    expect(srv.requests.map((r) => [r.method, r.params ?? null])).toEqual([
      ['nvmf_get_subsystems', {}],
      ['nvmf_delete_subsystem', { nqn: 'nqn.2016-06.io.spdk:a' }],
      ['nvmf_subsystem_remove_listener', { nqn: SPDK_DISCOVERY_NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv6', traddr: '::1', trsvcid: '8009' } }],
      ['bdev_get_bdevs', {}],
      ['bdev_malloc_delete', { name: 'm512' }], // n4k is not reported by the fake, so it is skipped
    ]);
  });

  it('defaults allow_any_host to true without hosts', async () => {
    const srv = await serve(fakeSpdk());
    const c = await client();
    await applyTopology(c, { subsystems: [{ nqn: 'nqn.2016-06.io.spdk:open' }] });
    expect(srv.requests[0]?.params).toEqual({ nqn: 'nqn.2016-06.io.spdk:open', allow_any_host: true });
  });

  it.each<[string, SpdkTopology]>([
    ['missing size', { bdevs: [{ type: 'malloc', name: 'x' }] }],
    ['both sizes', { bdevs: [{ type: 'malloc', name: 'x', blocks: 8, sizeMiB: 1 }] }],
    ['bad block size', { bdevs: [{ type: 'null', name: 'x', blocks: 8, blockSize: 1000 }] }],
    ['duplicate bdev', { bdevs: [{ type: 'null', name: 'x', blocks: 8 }, { type: 'null', name: 'x', blocks: 8 }] }],
    ['aio without file', { bdevs: [{ type: 'aio', name: 'x' }] }],
    ['bad nqn', { subsystems: [{ nqn: 'cnode1' }] }],
    ['bad port', { subsystems: [{ nqn: 'nqn.a', listeners: [{ traddr: '127.0.0.1', trsvcid: 70000 }] }] }],
    ['ANA without reporting', { subsystems: [{ nqn: 'nqn.a', listeners: [{ traddr: '127.0.0.1', trsvcid: 4420, anaState: 'optimized' }] }] }],
    ['bad ANA state', { subsystems: [{ nqn: 'nqn.a', anaReporting: true, listeners: [{ traddr: '127.0.0.1', trsvcid: 1, anaState: 'down' as 'optimized' }] }] }],
    ['ANA group past max', { subsystems: [{ nqn: 'nqn.a', maxNamespaces: 4, namespaces: [{ bdev: 'x', anaGroup: 5 }] }] }],
    ['duplicate nsid', { subsystems: [{ nqn: 'nqn.a', namespaces: [{ bdev: 'x', nsid: 1 }, { bdev: 'y', nsid: 1 }] }] }],
  ])('refuses a bad description before any RPC: %s', async (_name, t) => {
    const srv = await serve(fakeSpdk());
    const c = await client();
    await expect(applyTopology(c, t)).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    expect(srv.requests).toHaveLength(0);
  });
});

/**
 * A stand-in nvmf_tgt: a Node script that parses `-r <socket>`, serves framework_wait_init and spdk_get_version on
 * it after a short delay, and exits on SIGTERM unless told to ignore it.
 */
const FAKE_TGT = `#!/usr/bin/env node
const net = require('node:net');
const args = process.argv.slice(2);
const sock = args[args.indexOf('-r') + 1];
if (args.includes('--crash')) { console.error('fake nvmf_tgt: crashing'); process.exit(3); }
if (args.includes('--ignore-term')) process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
else process.on('SIGTERM', () => process.exit(0));
console.log('fake nvmf_tgt args: ' + args.join(' '));
setTimeout(() => {
  net.createServer((s) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('}')) >= 0) {
        const req = JSON.parse(buf.slice(0, i + 1));
        buf = buf.slice(i + 1);
        const result = req.method === 'spdk_get_version' ? { version: 'SPDK v0.0-fake', fields: { major: 0, minor: 0, patch: 0, suffix: '-fake' } } : true;
        s.write(JSON.stringify({ jsonrpc: '2.0', id: req.id, result }) + '\\n');
      }
    });
  }).listen(sock);
}, 150);
setInterval(() => {}, 1000);
`;

describe('startSpdkTarget (with a stand-in nvmf_tgt)', () => {
  async function fakeTgt(): Promise<string> {
    const bin = join(dir, 'build', 'bin');
    await rm(bin, { recursive: true, force: true });
    const { mkdir } = await import('node:fs/promises');
    await mkdir(bin, { recursive: true });
    const path = join(bin, 'nvmf_tgt');
    await writeFile(path, FAKE_TGT);
    await chmod(path, 0o755);
    return path;
  }

  it('finds nvmf_tgt in an SPDK build directory or refuses clearly', async () => {
    await expect(resolveNvmfTgt({ spdkDir: dir })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(resolveNvmfTgt({})).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    const path = await fakeTgt();
    expect(await resolveNvmfTgt({ spdkDir: dir })).toBe(path);
    expect(await resolveNvmfTgt({ nvmfTgtPath: path })).toBe(path);
  });

  it('starts without hugepages, waits for the RPC server, stops and leaves nothing behind', async () => {
    await fakeTgt();
    const lines: string[] = [];
    const tgt = await startSpdkTarget({ spdkDir: dir, memMiB: 256, onOutput: (l) => lines.push(l) });
    try {
      expect(tgt.alive()).toBe(true);
      expect(tgt.version.version).toBe('SPDK v0.0-fake');
      expect(tgt.args).toEqual(expect.arrayContaining(['--no-huge', '-s', '256', '-m', '0x1', '--no-pci', '--disable-cpumask-locks', '-r', tgt.rpcSocket]));
      expect(existsSync(tgt.rpcSocket)).toBe(true);
      expect(await tgt.client.call('anything')).toBe(true);
      expect(tgt.output()).toContain('fake nvmf_tgt args:');
      expect(lines.some((l) => l.startsWith('fake nvmf_tgt args:'))).toBe(true);
    } finally {
      await tgt.stop();
    }
    expect(tgt.alive()).toBe(false);
    expect(await tgt.exited).toEqual({ code: 0, signal: null });
    expect(existsSync(tgt.rpcSocket)).toBe(false);
    expect(existsSync(join(tgt.rpcSocket, '..'))).toBe(false);
    await tgt.stop(); // idempotent
  });

  it('kills a target that ignores SIGTERM and removes a caller-chosen socket', async () => {
    await fakeTgt();
    const rpcSocket = join(dir, 'chosen.sock');
    const tgt = await startSpdkTarget({ spdkDir: dir, rpcSocket, extraArgs: ['--ignore-term'] });
    await tgt.stop({ timeoutMs: 200 });
    expect((await tgt.exited).signal).toBe('SIGKILL');
    expect(await readdir(dir)).not.toContain('chosen.sock');
  });

  it('reports a target that exits during start-up, with its output', async () => {
    await fakeTgt();
    const e = (await startSpdkTarget({ spdkDir: dir, extraArgs: ['--crash'] }).catch((x: unknown) => x)) as NvmeofError;
    expect(e.code).toBe(ErrorCode.CONNECTION_FAILED);
    expect(e.message).toMatch(/exited during start-up \(code 3/);
    expect(e.message).toContain('fake nvmf_tgt: crashing');
  });

  it('refuses a socket another application serves', async () => {
    await serve((req) => ok(req, true));
    await fakeTgt();
    await expect(startSpdkTarget({ spdkDir: dir, rpcSocket: sockPath })).rejects.toThrow(/already serves RPCs/);
  });
});
