/**
 * The SPDK management client against a real nvmf_tgt: every typed method exists under its name, a declarative
 * topology is built and reported back as described, SPDK's errors arrive as SpdkRpcError, hosts and namespaces are
 * changed at run time with the host library seeing the effect, and removeTopology leaves nothing behind.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, ErrorCode, NvmeStatusError } from '../../src/index.js';
import { SpdkClient, SpdkRpcError, applyTopology, removeTopology, type SpdkTopology } from '../../src/spdk/index.js';
import { describeSpdk } from './env.js';

/** RPC names behind SpdkClient's typed methods. */
const TYPED_METHODS = [
  'spdk_get_version', 'rpc_get_methods', 'framework_wait_init', 'bdev_get_bdevs', 'bdev_get_iostat', 'bdev_malloc_create',
  'bdev_malloc_delete', 'bdev_null_create', 'bdev_null_delete', 'bdev_aio_create', 'bdev_aio_delete', 'nvmf_create_transport',
  'nvmf_get_transports', 'nvmf_create_subsystem', 'nvmf_delete_subsystem', 'nvmf_get_subsystems', 'nvmf_subsystem_add_listener',
  'nvmf_subsystem_remove_listener', 'nvmf_subsystem_listener_set_ana_state', 'nvmf_subsystem_get_listeners',
  'nvmf_subsystem_get_controllers', 'nvmf_subsystem_add_ns', 'nvmf_subsystem_remove_ns', 'nvmf_subsystem_add_host',
  'nvmf_subsystem_remove_host', 'nvmf_subsystem_allow_any_host', 'nvmf_get_stats', 'keyring_file_add_key', 'keyring_file_remove_key',
];

const camel = (s: string): string => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

describeSpdk('SPDK nvmf_tgt: management client and topology', (env) => {
  let rpc: SpdkClient;
  let topo: SpdkTopology;
  let port: number;
  let nqn: string;
  const hostA = `nqn.2014-08.org.nvmexpress:uuid:${'a1a1a1a1-0000-4000-8000-00000000000a'}`;
  const hostB = `nqn.2014-08.org.nvmexpress:uuid:${'b2b2b2b2-0000-4000-8000-00000000000b'}`;
  const tag = randomBytes(3).toString('hex');
  const m512 = `topo_m512_${tag}`;
  const n4k = `topo_n4k_${tag}`;

  beforeAll(async () => {
    rpc = await env.rpc();
    port = await env.freePort();
    nqn = env.uniqueNqn('topo');
    topo = {
      transports: [{ trtype: 'TCP' }],
      bdevs: [
        { type: 'malloc', name: m512, sizeMiB: 16, blockSize: 512 },
        { type: 'null', name: n4k, blocks: 2048, blockSize: 4096 },
      ],
      subsystems: [
        {
          nqn,
          serial: 'NVMEOFTEST0001',
          model: 'nvmeof topology test',
          hosts: [hostA],
          anaReporting: true,
          namespaces: [{ bdev: m512 }, { bdev: n4k, nsid: 7, anaGroup: 3 }],
          listeners: [{ traddr: env.host, trsvcid: port, anaState: 'non_optimized', anaGroupStates: { 3: 'inaccessible' } }],
        },
      ],
    };
  });
  afterAll(async () => {
    if (rpc) {
      await removeTopology(rpc, topo).catch(() => undefined);
      await rpc.close();
    }
  });

  it('talks to the running target and finds every typed method under its SPDK name', async () => {
    const v = await rpc.spdkGetVersion();
    expect(v.version).toMatch(/^SPDK v\d+\.\d+/);
    expect(v.version).toBe(env.version);
    expect(typeof v.fields.major).toBe('number');
    await rpc.frameworkWaitInit();
    const methods = await rpc.rpcGetMethods();
    for (const m of TYPED_METHODS) {
      expect(methods, m).toContain(m);
      expect(typeof (rpc as unknown as Record<string, unknown>)[camel(m)], camel(m)).toBe('function');
    }
    const transports = await rpc.nvmfGetTransports();
    expect(transports.find((t) => t.trtype === 'TCP')).toMatchObject({ dif_insert_or_strip: true });
  });

  it('builds the topology and reads it back', async () => {
    const applied = await applyTopology(rpc, topo);
    expect(applied).toEqual({ bdevs: [m512, n4k], subsystems: [{ nqn, namespaces: [{ bdev: m512, nsid: 1 }, { bdev: n4k, nsid: 7 }] }] });

    const [sub] = await rpc.nvmfGetSubsystems({ nqn });
    expect(sub).toMatchObject({
      nqn,
      subtype: 'NVMe',
      allow_any_host: false,
      serial_number: 'NVMEOFTEST0001',
      model_number: 'nvmeof topology test',
      hosts: [{ nqn: hostA }],
      listen_addresses: [{ trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) }],
    });
    expect(sub?.namespaces?.map((n) => [n.nsid, n.bdev_name, n.anagrpid])).toEqual([
      [1, m512, 1],
      [7, n4k, 3],
    ]);
    const [listener] = await rpc.nvmfSubsystemGetListeners({ nqn });
    const states = new Map(listener?.ana_states?.map((s) => [s.ana_group, s.ana_state]));
    expect(states.get(1)).toBe('non_optimized');
    expect(states.get(3)).toBe('inaccessible');

    const [b512] = await rpc.bdevGetBdevs({ name: m512 });
    expect(b512).toMatchObject({ name: m512, block_size: 512, num_blocks: 32768, product_name: 'Malloc disk' });
    const [b4k] = await rpc.bdevGetBdevs({ name: n4k });
    expect(b4k).toMatchObject({ name: n4k, block_size: 4096, num_blocks: 2048 });
  });

  it('answers bad calls with SpdkRpcError carrying SPDK code and message', async () => {
    const dup = (await rpc.nvmfCreateSubsystem({ nqn }).catch((e: unknown) => e)) as SpdkRpcError;
    expect(dup).toBeInstanceOf(SpdkRpcError);
    expect(dup.code).toBe(ErrorCode.SPDK_RPC);
    expect(dup.method).toBe('nvmf_create_subsystem');
    // SPDK answers a duplicate NQN with Internal error and names the subsystem.
    expect(dup.rpcCode).toBe(-32603);
    expect(dup.rpcMessage).toBe(`Unable to create subsystem ${nqn}`);
    expect(dup.message).toContain('-32603 Internal error');

    const unknown = (await rpc.call('nvmeof_no_such_method').catch((e: unknown) => e)) as SpdkRpcError;
    expect(unknown.rpcCode).toBe(-32601);
    const missing = (await rpc.call('nvmf_create_subsystem', { serial_number: 'no nqn' }).catch((e: unknown) => e)) as SpdkRpcError;
    expect(missing.rpcCode).toBe(-32602);
    expect(missing.rpcMessage).toBe('Invalid parameters');
    const noBdev = (await rpc.bdevGetBdevs({ name: 'nvmeof_no_such_bdev' }).catch((e: unknown) => e)) as SpdkRpcError;
    expect(noBdev).toBeInstanceOf(SpdkRpcError);
    // The connection stays usable.
    expect((await rpc.spdkGetVersion()).version).toBe(env.version);
  });

  it('keeps many calls in flight on one connection and in a batch', async () => {
    const many = await Promise.all(Array.from({ length: 64 }, () => rpc.bdevGetBdevs({ name: m512 })));
    expect(many.every((r) => r[0]?.name === m512)).toBe(true);
    const batch = await rpc.batch([{ method: 'spdk_get_version' }, { method: 'nvmeof_no_such_method' }, { method: 'bdev_get_bdevs', params: { name: n4k } }]);
    expect(batch[0]).toMatchObject({ status: 'fulfilled', value: { version: env.version } });
    expect(batch[1]).toMatchObject({ status: 'rejected', reason: { rpcCode: -32601 } });
    expect(batch[2]).toMatchObject({ status: 'fulfilled', value: [{ name: n4k }] });
  });

  it('enforces the allowed hosts list and changes it at run time', async () => {
    const hostid = (n: string): string => n.slice(n.indexOf('uuid:') + 5);
    const a = await connect({ host: env.host, port, subnqn: nqn, hostnqn: hostA, hostid: hostid(hostA), ioQueues: 1 });
    try {
      const ctrls = await rpc.nvmfSubsystemGetControllers({ nqn });
      expect(ctrls.map((c) => [c.cntlid, c.hostnqn])).toContainEqual([a.cntlid, hostA]);
      expect(ctrls.find((c) => c.cntlid === a.cntlid)?.hostid).toBe(hostid(hostA));
    } finally {
      await a.close();
    }

    const refused = (await connect({ host: env.host, port, subnqn: nqn, hostnqn: hostB, hostid: hostid(hostB), ioQueues: 0 }).catch((e: unknown) => e)) as NvmeStatusError;
    expect(refused).toBeInstanceOf(NvmeStatusError);
    expect(refused.sct).toBe(1);
    expect(refused.sc).toBe(0x84);

    await rpc.nvmfSubsystemAddHost({ nqn, host: hostB });
    const b = await connect({ host: env.host, port, subnqn: nqn, hostnqn: hostB, hostid: hostid(hostB), ioQueues: 0 });
    await b.close();
    await rpc.nvmfSubsystemRemoveHost({ nqn, host: hostB });
    await expect(connect({ host: env.host, port, subnqn: nqn, hostnqn: hostB, hostid: hostid(hostB), ioQueues: 0 })).rejects.toBeInstanceOf(NvmeStatusError);

    await rpc.nvmfSubsystemAllowAnyHost({ nqn, allow_any_host: true });
    const any = await connect({ host: env.host, port, subnqn: nqn, hostnqn: hostB, hostid: hostid(hostB), ioQueues: 0 });
    await any.close();
    await rpc.nvmfSubsystemAllowAnyHost({ nqn, allow_any_host: false });
  });

  it('counts I/O in bdev_get_iostat and nvmf_get_stats', async () => {
    await rpc.nvmfSubsystemListenerSetAnaState({ nqn, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: env.host, trsvcid: String(port) }, ana_state: 'optimized' });
    const before = (await rpc.bdevGetIostat({ names: [m512] })).bdevs[0];
    const c = await connect({ host: env.host, port, subnqn: nqn, hostnqn: hostA, ioQueues: 2 });
    try {
      const ns = await c.namespace(1);
      const data = randomBytes(64 * 1024);
      await ns.write(0n, data);
      expect(Buffer.compare(await ns.read(0n, 128), data)).toBe(0);
      const stats = await rpc.nvmfGetStats();
      expect(stats.poll_groups.length).toBeGreaterThan(0);
      expect(stats.poll_groups.reduce((n, g) => n + g.current_io_qpairs, 0)).toBeGreaterThanOrEqual(2);
    } finally {
      await c.close();
    }
    const after = (await rpc.bdevGetIostat({ names: [m512] })).bdevs[0];
    expect((after?.bytes_written ?? 0) - (before?.bytes_written ?? 0)).toBeGreaterThanOrEqual(64 * 1024);
    expect((after?.bytes_read ?? 0) - (before?.bytes_read ?? 0)).toBeGreaterThanOrEqual(64 * 1024);
  });

  it('adds and removes namespaces at run time', async () => {
    const extra = `topo_extra_${tag}`;
    await rpc.bdevMallocCreate({ name: extra, block_size: 4096, num_blocks: 256 });
    const nsid = await rpc.nvmfSubsystemAddNs({ nqn, namespace: { bdev_name: extra } });
    expect(nsid).toBe(2);
    const c = await connect({ host: env.host, port, subnqn: nqn, hostnqn: hostA, ioQueues: 1 });
    try {
      expect(await c.activeNamespaceIds()).toEqual([1, 2, 7]);
      const ns = await c.namespace(2);
      expect(ns.blockSize).toBe(4096);
      expect(ns.blocks).toBe(256n);
      await rpc.nvmfSubsystemRemoveNs({ nqn, nsid: 2 });
      expect(await c.activeNamespaceIds()).toEqual([1, 7]);
    } finally {
      await c.close();
      await rpc.bdevMallocDelete({ name: extra });
    }
  });

  it('serves a file through an AIO bdev', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nvmeof-spdk-aio-'));
    const file = join(dir, 'disk.img');
    const name = `topo_aio_${tag}`;
    const aioNqn = env.uniqueNqn('aio');
    const aioPort = await env.freePort();
    const t: SpdkTopology = {
      bdevs: [{ type: 'aio', name, filename: file, blockSize: 4096 }],
      subsystems: [{ nqn: aioNqn, namespaces: [{ bdev: name }], listeners: [{ traddr: env.host, trsvcid: aioPort }] }],
    };
    try {
      await writeFile(file, '');
      await truncate(file, 8 * 1024 * 1024);
      await applyTopology(rpc, t);
      const c = await connect({ host: env.host, port: aioPort, subnqn: aioNqn, ioQueues: 1 });
      try {
        const ns = await c.namespace(1);
        expect(ns.blockSize).toBe(4096);
        expect(ns.blocks).toBe(2048n);
        const data = randomBytes(256 * 1024);
        await ns.write(100n, data);
        expect(Buffer.compare(await ns.read(100n, 64), data)).toBe(0);
      } finally {
        await c.close();
      }
      await removeTopology(rpc, t);
      expect(await rpc.nvmfGetSubsystems().then((s) => s.some((x) => x.nqn === aioNqn))).toBe(false);
      expect(await rpc.bdevGetBdevs().then((b) => b.some((x) => x.name === name))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('removes the topology completely', async () => {
    await removeTopology(rpc, topo);
    expect((await rpc.nvmfGetSubsystems()).some((s) => s.nqn === nqn)).toBe(false);
    const names = (await rpc.bdevGetBdevs()).map((b) => b.name);
    expect(names).not.toContain(m512);
    expect(names).not.toContain(n4k);
    // Removing again is harmless.
    await removeTopology(rpc, topo);
  });
});
