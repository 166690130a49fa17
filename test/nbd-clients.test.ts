/**
 * serveNbd against real NBD clients (nbdinfo, qemu-img, qemu-io, nbdcopy, nbdsh) and a byte-level client, with the
 * embedded target behind the export.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveNbd, type NbdServer, type NbdExport } from '../src/nbd/server.js';
import * as nbd from '../src/nbd/protocol.js';
import { NvmeTarget } from '../src/target/index.js';
import { openMultipath } from '../src/multipath/index.js';
import { NvmOpcode } from '../src/protocol/constants.js';
import type { Namespace } from '../src/host/namespace.js';
import { TargetEnv, SUBNQN, HOSTNQN } from './helpers/target-env.js';
import { missingClients, run } from './helpers/clients.js';
import { RawNbd } from './helpers/nbd-raw.js';
import { waitFor } from './helpers/wait.js';

const env = new TargetEnv();
const servers: NbdServer[] = [];
const dirs: string[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const c of cleanups.splice(0).reverse()) await c();
  await env.cleanup();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const MiB = 1024 * 1024;

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'nvmeof-nbd-'));
  dirs.push(d);
  return d;
}

async function exportNs(o: { blocks?: number; blockSize?: 512 | 4096; exp?: Partial<NbdExport>; mdts?: number } = {}): Promise<{ ns: Namespace; server: NbdServer; uri: string; port: number }> {
  await env.start({ ns: { blocks: o.blocks ?? 32768, blockSize: o.blockSize ?? 512 }, ...(o.mdts ? { target: { mdts: o.mdts } } : {}) });
  const ctrl = await env.connect({ ioQueues: 2 });
  const ns = await ctrl.namespace(1);
  const server = await serveNbd({ listen: { port: 0 }, exports: [{ name: 'disk', namespace: ns, ...o.exp }] });
  servers.push(server);
  const port = (server.address as { port: number }).port;
  return { ns, server, uri: `nbd://127.0.0.1:${port}/disk`, port };
}

const skipClients = missingClients('nbdinfo', 'nbdcopy', 'nbdsh', 'qemu-img', 'qemu-io');

describe.skipIf(!!skipClients)('nbd export with real clients', () => {
  it('nbdinfo --json shows size, flags, block sizes and the description', async () => {
    const { uri } = await exportNs({ mdts: 5 });
    const info = JSON.parse(await run('nbdinfo', ['--json', uri])) as { protocol: string; structured: boolean; exports: Record<string, unknown>[] };
    expect(info.protocol).toBe('newstyle-fixed');
    expect(info.structured).toBe(true);
    const e = info.exports[0]!;
    expect(e).toMatchObject({
      'export-name': 'disk',
      'export-size': 32768 * 512,
      is_read_only: false,
      can_flush: true,
      can_fua: true,
      can_trim: true,
      can_zero: true,
      can_df: true,
      can_cache: true,
      can_multi_conn: true,
      block_size_minimum: 512,
      block_size_preferred: 4096,
      // MDTS 5 with a 4 KiB minimum page: 128 KiB.
      block_size_maximum: 128 * 1024,
      contexts: ['base:allocation'],
    });
    expect(e.description).toBe(`nvmeof target, serial ${env.subsys.serial}, ${SUBNQN}, nsid 1`);
  });

  it('a read-only export advertises READ_ONLY, no trim or zero, and refuses writes with EPERM', async () => {
    const { uri } = await exportNs({ exp: { readOnly: true, description: 'ro copy' } });
    const e = (JSON.parse(await run('nbdinfo', ['--json', uri])) as { exports: Record<string, unknown>[] }).exports[0]!;
    expect(e).toMatchObject({ is_read_only: true, can_trim: false, can_zero: false, description: 'ro copy' });
    const err = await run('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 0x11 0 4k']).then(
      (out) => out,
      (e: Error) => e.message,
    );
    expect(err).toMatch(/Operation not permitted|read-only|Permission denied/i);
  });

  it('a 4096-byte LBA namespace reports a 4096-byte minimum block size', async () => {
    const { uri } = await exportNs({ blocks: 2048, blockSize: 4096 });
    const e = (JSON.parse(await run('nbdinfo', ['--json', uri])) as { exports: Record<string, unknown>[] }).exports[0]!;
    expect(e).toMatchObject({ block_size_minimum: 4096, block_size_preferred: 4096, 'export-size': 2048 * 4096 });
  });

  it('qemu-img convert into and out of the export; qemu-img compare; the namespace holds the bytes', async () => {
    const { ns, uri } = await exportNs();
    const d = tmp();
    const src = randomBytes(16 * MiB);
    writeFileSync(join(d, 'in.raw'), src);
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', join(d, 'in.raw'), uri]);
    expect((await ns.read(0, 32768)).equals(src)).toBe(true);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, join(d, 'out.raw')]);
    expect(readFileSync(join(d, 'out.raw')).equals(src)).toBe(true);
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', join(d, 'in.raw'), uri]);
    expect(cmp).toMatch(/Images are identical/);
    // qcow2 out and back in, through the export.
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', uri, join(d, 'out.qcow2')]);
    await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', join(d, 'out.qcow2'), join(d, 'in.raw')]);
  });

  it('qemu-io patterns: write, read -P, write -z, write -f, discard, flush', async () => {
    const { ns, uri } = await exportNs();
    await ns.write(0, Buffer.alloc(1 * MiB, 0x77));
    const out = await run('qemu-io', [
      '-f', 'raw', uri,
      '-c', 'write -P 0xab 0 64k',
      '-c', 'read -P 0xab 0 64k',
      '-c', 'write -z 64k 64k',
      '-c', 'read -P 0 64k 64k',
      '-c', 'write -f -P 0xcd 128k 4k',
      '-c', 'read -P 0xcd 128k 4k',
      '-c', 'discard 256k 64k',
      '-c', 'flush',
      '-c', 'write -z -u 512k 64k',
      '-c', 'aio_write -P 0x21 600k 4k',
      '-c', 'aio_write -P 0x22 700k 4k',
      '-c', 'aio_flush',
    ]);
    expect(out).not.toMatch(/error|failed|Pattern verification failed/i);
    expect((await ns.read(0, 128)).equals(Buffer.alloc(64 * 1024, 0xab))).toBe(true);
    expect((await ns.read(128, 128)).equals(Buffer.alloc(64 * 1024))).toBe(true);
    expect((await ns.read(256, 8)).equals(Buffer.alloc(4096, 0xcd))).toBe(true);
    expect((await ns.read(1024, 128)).equals(Buffer.alloc(64 * 1024))).toBe(true);
    expect((await ns.read(1200, 8)).equals(Buffer.alloc(4096, 0x21))).toBe(true);
    expect((await ns.read(1400, 8)).equals(Buffer.alloc(4096, 0x22))).toBe(true);
    // Untouched bytes stay as they were.
    expect((await ns.read(264, 8)).equals(Buffer.alloc(4096, 0x77))).toBe(true);
  });

  it('nbdcopy with several connections, into and out of the export', async () => {
    const { ns, uri } = await exportNs({ blocks: 65536 });
    const d = tmp();
    const src = randomBytes(32 * MiB);
    writeFileSync(join(d, 'in.raw'), src);
    await run('nbdcopy', ['--connections=4', '--requests=16', '--request-size=262144', join(d, 'in.raw'), uri]);
    expect((await ns.read(0, 65536)).equals(src)).toBe(true);
    await run('nbdcopy', ['--connections=4', '--requests=16', uri, join(d, 'out.raw')]);
    expect(readFileSync(join(d, 'out.raw')).equals(src)).toBe(true);
  });

  it('nbdsh: LIST, INFO without GO, meta contexts, then GO, pread, block status and pwrite', async () => {
    const { ns, port } = await exportNs();
    await ns.write(8, Buffer.alloc(512, 0x5a));
    const script = `
h.set_opt_mode(True)
h.set_request_structured_replies(True)
h.connect_tcp("127.0.0.1", "${port}")
names = []
h.opt_list(lambda name, desc: names.append((name, desc)))
print("LIST", names)
h.set_export_name("disk")
h.opt_info()
print("INFO", h.get_size(), h.is_read_only(), h.get_block_size(nbd.SIZE_MINIMUM))
h.set_export_name("nope")
try:
    h.opt_info()
    print("UNKNOWN accepted")
except nbd.Error as e:
    print("UNKNOWN refused")
h.set_export_name("disk")
ctx = []
h.opt_list_meta_context(lambda c: ctx.append(c))
print("CTX", ctx)
h.add_meta_context("base:allocation")
h.opt_go()
print("GO", h.aio_is_ready(), h.get_structured_replies_negotiated(), h.can_meta_context("base:allocation"))
print("READ", h.pread(512, 4096).hex()[:8])
ext = []
h.block_status(65536, 0, lambda meta, off, entries, err: ext.append((meta, list(entries))))
print("BS", ext)
h.pwrite(b"\\x42" * 1024, 8192, nbd.CMD_FLAG_FUA)
h.set_strict_mode(0)
try:
    h.pread(512, 32768 * 512)
    print("PAST END read")
except nbd.Error as e:
    print("PAST END", e.errno, e.string)
print("STILL", h.pread(512, 0).hex()[:4])
h.shutdown()
`;
    const out = await run('nbdsh', ['-c', script]);
    expect(out).toContain("LIST [('disk', 'nvmeof target");
    expect(out).toContain(`INFO ${32768 * 512} False 512`);
    expect(out).toContain('UNKNOWN refused');
    expect(out).toContain("CTX ['base:allocation']");
    expect(out).toContain('GO True True True');
    expect(out).toContain('READ 5a5a5a5a');
    expect(out).toContain("BS [('base:allocation', [65536, 0])]");
    // With libnbd's own checks off the request reaches the server ("command failed"), which answers EINVAL.
    expect(out).toMatch(/PAST END EINVAL .*command failed: Invalid argument/);
    expect(out).toContain('STILL 0000');
    expect((await ns.read(16, 2)).equals(Buffer.alloc(1024, 0x42))).toBe(true);
  });

  it('byte level: unknown option gets ERR_UNSUP, structured replies twice ERR_INVALID, ABORT is acknowledged', async () => {
    const { port } = await exportNs();
    const c = await RawNbd.connect(port);
    const g = await c.handshake();
    expect(g.toString('hex')).toBe('4e42444d41474943' + '49484156454f5054' + '0003');
    c.write(nbd.encodeOptionRequest(0x4242));
    let r = await c.optionReply();
    expect(r).toMatchObject({ magic: 0x3e889045565a9n, option: 0x4242, type: 0x80000001 });
    expect(r.data.toString()).toMatch(/not supported/);
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.STRUCTURED_REPLY));
    expect((await c.optionReply()).type).toBe(1);
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.STRUCTURED_REPLY));
    r = await c.optionReply();
    expect(r.type).toBe(0x80000003);
    // SET_META_CONTEXT for an unknown export.
    const q = Buffer.from('00000004' + Buffer.from('nope').toString('hex') + '00000001' + '0000000f' + Buffer.from('base:allocation').toString('hex'), 'hex');
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.SET_META_CONTEXT, q));
    expect((await c.optionReply()).type).toBe(0x80000006);
    // STARTTLS on a server without TLS.
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.STARTTLS));
    expect((await c.optionReply()).type).toBe(0x80000001);
    // Malformed INFO data.
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.INFO, Buffer.from('000000ff', 'hex')));
    expect((await c.optionReply()).type).toBe(0x80000003);
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.ABORT));
    expect((await c.optionReply())).toMatchObject({ option: 2, type: 1 });
    await c.waitClosed();
  });

  it('byte level: EXPORT_NAME with NO_ZEROES, pipelined requests answered by handle, errors keep the connection', async () => {
    const { ns, port } = await exportNs();
    await ns.write(0, Buffer.alloc(4096, 0x31));
    const c = await RawNbd.connect(port);
    await c.handshake(3);
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.EXPORT_NAME, Buffer.from('disk')));
    const rep = await c.read(10);
    expect(rep.readBigUInt64BE(0)).toBe(32768n * 512n);
    expect(rep.readUInt16BE(8) & (nbd.TransmissionFlag.HAS_FLAGS | nbd.TransmissionFlag.SEND_FLUSH)).toBe(5);
    // Simple replies (no structured replies negotiated): a read, an unaligned read, a read past the end, one more read.
    c.write(Buffer.concat([
      nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.READ, handle: 1n, offset: 0n, length: 4096 }),
      nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.READ, handle: 2n, offset: 100n, length: 512 }),
      nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.READ, handle: 3n, offset: 32768n * 512n, length: 512 }),
      nbd.encodeRequest({ flags: 0, type: 99, handle: 4n, offset: 0n, length: 0 }),
      nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.READ, handle: 5n, offset: 512n, length: 512 }),
    ]));
    const got = new Map<bigint, { error: number; data?: Buffer }>();
    for (let i = 0; i < 5; i++) {
      const h = await c.read(16);
      expect(h.readUInt32BE(0)).toBe(0x67446698);
      const handle = h.readBigUInt64BE(8);
      const error = h.readUInt32BE(4);
      const len = error === 0 ? (handle === 1n ? 4096 : 512) : 0;
      got.set(handle, { error, data: len ? await c.read(len) : undefined });
    }
    expect(got.get(1n)!.data!.equals(Buffer.alloc(4096, 0x31))).toBe(true);
    expect(got.get(2n)!.error).toBe(22);
    expect(got.get(3n)!.error).toBe(22);
    expect(got.get(4n)!.error).toBe(22);
    expect(got.get(5n)!.data!.equals(Buffer.alloc(512, 0x31))).toBe(true);
    c.write(nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.DISC, handle: 6n, offset: 0n, length: 0 }));
    await c.waitClosed();
  });

  it('byte level: structured error chunk carries the errno and a message; out-of-range write gets ENOSPC', async () => {
    const { port } = await exportNs();
    const c = await RawNbd.connect(port);
    await c.handshake();
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.STRUCTURED_REPLY));
    expect((await c.optionReply()).type).toBe(1);
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.GO, Buffer.from('00000004' + Buffer.from('disk').toString('hex') + '0000', 'hex')));
    const types: number[] = [];
    for (;;) {
      const r = await c.optionReply();
      types.push(r.type === 3 ? 1000 + r.data.readUInt16BE(0) : r.type);
      if (r.type === 1) break;
    }
    expect(types).toEqual([1003, 1000, 1]);
    c.write(Buffer.concat([nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.WRITE, handle: 9n, offset: 32768n * 512n, length: 512 }), Buffer.alloc(512)]));
    const h = await c.read(20);
    expect(h.readUInt32BE(0)).toBe(0x668e33ef);
    expect(h.readUInt16BE(4)).toBe(1);
    expect(h.readUInt16BE(6)).toBe(0x8001);
    expect(h.readBigUInt64BE(8)).toBe(9n);
    const p = await c.read(h.readUInt32BE(16));
    expect(p.readUInt32BE(0)).toBe(28);
    expect(p.subarray(6, 6 + p.readUInt16BE(4)).toString()).toMatch(/past the end/);
    c.destroy();
  });

  it('bad magic or a truncated request closes only that connection; the server and other clients carry on', async () => {
    const { ns, uri, port, server } = await exportNs();
    await ns.write(0, Buffer.alloc(512, 0x66));
    const bad = await RawNbd.connect(port);
    await bad.handshake();
    bad.write(nbd.encodeOptionRequest(nbd.NbdOpt.EXPORT_NAME, Buffer.from('disk')));
    await bad.read(10);
    const req = nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.READ, handle: 1n, offset: 0n, length: 512 });
    req.writeUInt32BE(0x25609514, 0);
    bad.write(req);
    await bad.waitClosed();
    // Truncated: half a request, then the client goes away.
    const trunc = await RawNbd.connect(port);
    await trunc.handshake();
    trunc.write(nbd.encodeOptionRequest(nbd.NbdOpt.EXPORT_NAME, Buffer.from('disk')));
    await trunc.read(10);
    trunc.write(nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.WRITE, handle: 1n, offset: 0n, length: 4096 }).subarray(0, 20));
    trunc.sock.end();
    await trunc.waitClosed();
    // Garbage instead of an option, and an unknown export name.
    const junk = await RawNbd.connect(port);
    await junk.handshake();
    junk.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await junk.waitClosed();
    const unknown = await RawNbd.connect(port);
    await unknown.handshake();
    unknown.write(nbd.encodeOptionRequest(nbd.NbdOpt.EXPORT_NAME, Buffer.from('nope')));
    await unknown.waitClosed();
    await waitFor(() => server.connections === 0, 5000, 'bad connections closed');
    const out = await run('qemu-io', ['-f', 'raw', uri, '-c', 'read -P 0x66 0 512']);
    expect(out).toMatch(/read 512\/512/);
  });

  it('bounds what one connection holds: requests and payload bytes in flight', async () => {
    await env.start({ ns: { blocks: 262144 } });
    const real = await (await env.connect({ ioQueues: 2 })).namespace(1);
    let now = 0;
    let peak = 0;
    // The namespace as the server sees it, counting reads that run at once.
    const counted = Object.create(real) as Namespace;
    counted.readInto = async (lba, buf, o) => {
      peak = Math.max(peak, ++now);
      try {
        return await real.readInto(lba, buf, o);
      } finally {
        now--;
      }
    };
    const server = await serveNbd({ listen: { port: 0 }, maxInFlight: 3, exports: [{ name: 'disk', namespace: counted }] });
    servers.push(server);
    env.target.inject({ action: 'delay', ms: 20, match: { opcode: NvmOpcode.Read } });
    const c = await RawNbd.connect((server.address as { port: number }).port);
    await c.handshake();
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.EXPORT_NAME, Buffer.from('disk')));
    await c.read(10);
    // 12 reads of 4 KiB in one write: at most 3 run at once.
    c.write(Buffer.concat(Array.from({ length: 12 }, (_, i) => nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.READ, handle: BigInt(i), offset: BigInt(i * 4096), length: 4096 }))));
    const handles = new Set<bigint>();
    for (let i = 0; i < 12; i++) {
      const h = await c.read(16);
      expect(h.readUInt32BE(4)).toBe(0);
      handles.add(h.readBigUInt64BE(8));
      await c.read(4096);
    }
    expect(handles.size).toBe(12);
    expect(peak).toBe(3);
    // 30 reads of 4 MiB with a high request limit: the 64 MiB payload limit holds them to 16 at once.
    peak = 0;
    const big = await serveNbd({ listen: { port: 0 }, exports: [{ name: 'disk', namespace: counted }] });
    servers.push(big);
    const d = await RawNbd.connect((big.address as { port: number }).port);
    await d.handshake();
    d.write(nbd.encodeOptionRequest(nbd.NbdOpt.EXPORT_NAME, Buffer.from('disk')));
    await d.read(10);
    d.write(Buffer.concat(Array.from({ length: 30 }, (_, i) => nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.READ, handle: BigInt(i), offset: BigInt((i % 30) * 4 * MiB), length: 4 * MiB }))));
    for (let i = 0; i < 30; i++) {
      const h = await d.read(16);
      expect(h.readUInt32BE(4)).toBe(0);
      await d.read(4 * MiB);
    }
    expect(peak).toBeGreaterThan(1);
    expect(peak).toBeLessThanOrEqual(16);
    c.destroy();
    d.destroy();
  });

  it('close() finishes requests in flight and closes the connections', async () => {
    const { ns, port, server } = await exportNs();
    await ns.write(0, Buffer.alloc(4096, 0x12));
    const delay = env.target.inject({ action: 'delay', ms: 200, match: { opcode: NvmOpcode.Read }, times: 1 });
    const c = await RawNbd.connect(port);
    await c.handshake();
    c.write(nbd.encodeOptionRequest(nbd.NbdOpt.EXPORT_NAME, Buffer.from('disk')));
    await c.read(10);
    c.write(nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.READ, handle: 7n, offset: 0n, length: 4096 }));
    await waitFor(() => delay.hits === 1, 5000, 'the read reaches the target');
    const closing = server.close();
    const h = await c.read(16);
    expect(h.readUInt32BE(4)).toBe(0);
    expect((await c.read(4096)).equals(Buffer.alloc(4096, 0x12))).toBe(true);
    await c.waitClosed();
    await closing;
  });

  it('a multipath export keeps serving nbdcopy when its active path fails mid-copy', async () => {
    const target = new NvmeTarget();
    cleanups.push(() => target.close());
    const p1 = await target.listen({ host: '127.0.0.1', port: 0, ana: { 1: 'optimized' } });
    const p2 = await target.listen({ host: '127.0.0.1', port: 0, ana: { 1: 'non-optimized' } });
    const subsys = target.addSubsystem({ nqn: SUBNQN, ana: true });
    const tns = subsys.addNamespace({ blocks: 65536, anaGroup: 1 });
    const m = await openMultipath({
      subnqn: SUBNQN, nsid: tns.nsid, hostnqn: HOSTNQN, policy: 'failover', ioQueues: 2, reconnectDelay: 50,
      paths: [{ host: '127.0.0.1', port: p1.port }, { host: '127.0.0.1', port: p2.port }],
    });
    cleanups.push(() => m.close());
    const server = await serveNbd({ listen: { port: 0 }, exports: [{ name: 'mp', namespace: m }] });
    servers.push(server);
    const uri = `nbd://127.0.0.1:${(server.address as { port: number }).port}/mp`;
    // After 40 writes through path 1, its connection closes and its port goes away for good.
    let writes = 0;
    const rule = target.inject({
      action: 'close',
      times: 1,
      match: { portid: p1.portid, opcode: NvmOpcode.Write, when: () => ++writes === 40 },
    });
    const d = tmp();
    const src = randomBytes(32 * MiB);
    writeFileSync(join(d, 'in.raw'), src);
    const copy = run('nbdcopy', ['--connections=2', '--requests=8', '--request-size=65536', join(d, 'in.raw'), uri]);
    await waitFor(() => rule.hits === 1, 30_000, 'the fault on path 1');
    const removed = target.removePort(p1);
    await copy;
    await removed;
    const [a, b] = m.paths;
    expect(a!.usableFor(tns.nsid)).toBe(false);
    expect(b!.health().completed).toBeGreaterThan(0);
    await run('nbdcopy', [uri, join(d, 'out.raw')]);
    expect(readFileSync(join(d, 'out.raw')).equals(src)).toBe(true);
  });
});
