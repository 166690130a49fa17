import net from 'node:net';
import { expect, it } from 'vitest';
import { connect, type Controller } from '../../src/index.js';
import * as cmds from '../../src/protocol/commands.js';
import {
  anaLogSize,
  discoveryLogSize,
  parseAnaLog,
  parseDiscoveryLog,
  parseDiscoveryLogHeader,
  type DiscoveryLog,
} from '../../src/protocol/logpages.js';
import { describeKernel } from './env.js';
import type { KernelTargetEnv, TargetPort } from './env.js';

/** Sends `bytes` to host:port and collects `want` bytes of reply (or whatever arrived when the peer closed). */
function exchange(host: string, port: number, bytes: Buffer, want: number, timeoutMs = 15_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const sock = net.connect({ host, port }, () => sock.write(bytes));
    const done = (err: Error | null): void => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, n));
    };
    const timer = setTimeout(() => done(new Error(`no ${want}-byte reply within ${timeoutMs} ms (got ${n})`)), timeoutMs);
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= want) done(null);
    });
    sock.on('error', done);
    sock.on('close', () => done(null));
  });
}

const ICREQ = ((): Buffer => {
  const b = Buffer.alloc(128);
  b[0] = 0x00; // PDU-type ICReq
  b[2] = 128; // HLEN
  b.writeUInt32LE(128, 4); // PLEN
  return b;
})();

/** True when host:port answers an ICReq with an ICResp. */
async function answersIcReq(host: string, port: number): Promise<boolean> {
  const resp = await exchange(host, port, ICREQ, 128, 5000).catch(() => Buffer.alloc(0));
  return resp.length >= 128 && resp[0] === 0x01;
}

/** Reads the whole discovery log through the discovery controller at host:port (header first, then NUMREC entries). */
async function discoveryLog(host: string, port: number, hostnqn?: string): Promise<DiscoveryLog> {
  const ctrl = await connect({ host, port, subnqn: 'nqn.2014-08.org.nvmexpress.discovery', hostnqn, ioQueues: 0 });
  try {
    const head = await ctrl.adminCommand(cmds.getLogPage({ lid: 0x70, length: 1024 }));
    const { numrec } = parseDiscoveryLogHeader(head.data!);
    const full = await ctrl.adminCommand(cmds.getLogPage({ lid: 0x70, length: discoveryLogSize(numrec) }));
    const log = parseDiscoveryLog(full.data!);
    expect(log.complete).toBe(true);
    return log;
  } finally {
    await ctrl.close();
  }
}

/** Discovery log entries as 'subtype portid traddr:trsvcid subnqn' lines. */
function entryLines(log: DiscoveryLog): string[] {
  return log.entries.map((e) => `${e.subtypeName} ${e.portid} ${e.traddr}:${e.trsvcid} ${e.subnqn}`);
}

/** ANA group states (by group ID) of a controller, from the ANA log page. */
async function anaStates(ctrl: Controller): Promise<Record<number, string>> {
  const c = await ctrl.adminCommand(cmds.getLogPage({ lid: 0x0c, length: anaLogSize(ctrl.identity.nanagrpid, 16) }));
  const log = parseAnaLog(c.data!);
  return Object.fromEntries(log.groups.map((g) => [g.anagrpid, g.stateName]));
}

async function cfsList(target: KernelTargetEnv, dir: string): Promise<string[]> {
  const r = await target.exec(`ls /sys/kernel/config/nvmet/${dir}`);
  expect(r.code).toBe(0);
  return r.stdout.split('\n').filter((l) => l !== '');
}

describeKernel('kernel target harness', (target) => {
  const cfs = '/sys/kernel/config/nvmet';

  it('runs commands in the guest with stdout, stderr and exit status', async () => {
    const r = await target.exec('echo out; echo err >&2; exit 3');
    expect(r).toEqual({ stdout: 'out\n', stderr: 'err\n', code: 3 });
    expect(await target.exec('printf "no newline"')).toEqual({ stdout: 'no newline', stderr: '', code: 0 });
    // The command text reaches the shell verbatim: quotes, $, backslashes, here-document-looking lines.
    const tricky = `printf '%s\\n' "a'b" '$HOME' 'x\\y' 'EOF'`;
    expect((await target.exec(tricky)).stdout).toBe(`a'b\n$HOME\nx\\y\nEOF\n`);
    // A syntax error is the command's failure, not a hang.
    const bad = await target.exec('if (');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/syntax error/);
    // Commands cannot read the control stream.
    expect((await target.exec('cat; echo done')).stdout).toBe('done\n');
  });

  it('serves sequential and concurrent commands', async () => {
    for (let i = 0; i < 3; i++) expect((await target.exec(`echo ${i}`)).stdout).toBe(`${i}\n`);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => target.exec(`echo ${i}`)));
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 12 }, (_, i) => `${i}\n`));
  });

  it('times out a command that runs too long', async () => {
    // The error carries the tail of the guest's console (kernel messages), for a guest that stopped answering.
    // And, read from QEMU over QMP, the state of the guest's NIC queues: descriptors made available and used.
    const err = await target.exec('sleep 30', { timeoutMs: 1500 }).then(
      () => expect.fail('sleep 30 did not time out'),
      (e: Error) => e,
    );
    expect(err.message).toMatch(/timed out after 1500 ms\n--- console tail \(.*console\.log\) ---\n(?!\(empty\))\S/);
    expect(err.message).toMatch(/--- virtio NIC queues .*\nvirtio-net rx queue: \{.*"used-idx":\d+.*\}\n(?: {2}vring-.*\n)+virtio-net tx queue: \{.*"last-avail-idx":\d+.*\}\n {2}vring-avail \(flags, idx\): \S+: 0x[0-9a-f]{4} 0x[0-9a-f]{4}/);
  });

  it('has the nvmet topology in configfs', async () => {
    const { stdout, code } = await target.exec(
      [
        `cd ${cfs}`,
        `cat subsystems/${target.openNqn}/attr_allow_any_host subsystems/${target.restrictedNqn}/attr_allow_any_host`,
        `cat subsystems/${target.openNqn}/namespaces/1/enable subsystems/${target.openNqn}/namespaces/2/enable`,
        `cat subsystems/${target.restrictedNqn}/namespaces/1/enable`,
        `cat subsystems/${target.openNqn}/namespaces/1/device_path subsystems/${target.openNqn}/namespaces/2/device_path`,
        `ls subsystems/${target.restrictedNqn}/allowed_hosts`,
        'cat ports/1/addr_trtype ports/1/addr_adrfam ports/1/addr_traddr ports/1/addr_trsvcid',
        `cat subsystems/${target.multipathNqn}/namespaces/1/ana_grpid subsystems/${target.multipathNqn}/namespaces/2/ana_grpid`,
      ].join(' && '),
    );
    expect(code).toBe(0);
    expect(stdout.split('\n')).toEqual([
      '1',
      '0',
      '1',
      '1',
      '1',
      '/dev/ram0',
      '/srv/ns2.img',
      target.allowedHostNqn,
      'tcp',
      'ipv4',
      '0.0.0.0',
      '4420',
      '2',
      '3',
      '',
    ]);
    const anchor = 'nqn.2014-08.org.nvmexpress:nvmf-test-discovery-anchor';
    expect(await cfsList(target, 'subsystems')).toEqual([anchor, target.multipathNqn, target.openNqn, target.restrictedNqn]);
    expect(await cfsList(target, 'ports')).toEqual(['1', '2', '3']);
    expect(await cfsList(target, 'ports/1/subsystems')).toEqual([target.multipathNqn, target.openNqn, target.restrictedNqn]);
    expect(await cfsList(target, 'ports/2/subsystems')).toEqual([target.multipathNqn]);
    expect(await cfsList(target, 'ports/3/subsystems')).toEqual([anchor]);
    expect(await cfsList(target, 'ports/1/referrals')).toEqual(['port2']);
    expect(await cfsList(target, 'ports/3/referrals')).toEqual(['port1', 'port2']);
    for (const [key, p] of Object.entries(target.ports)) {
      const r = await target.exec(`cat ${cfs}/ports/${p.portid}/addr_trsvcid`);
      expect(r.stdout.trim(), key).toBe(String(p.guestPort));
    }
    for (const g of target.anaGroups) {
      for (const [key, state] of Object.entries(g.initialState)) {
        const portid = target.ports[key as 'nvme1' | 'nvme2'].portid;
        expect(await target.nvmetCtl('ana-get', portid, g.grpid)).toBe(`ok ana-get port=${portid} group=${g.grpid} state=${state}`);
      }
    }
    expect(target.readConsole()).toContain('NVMET-READY');
  });

  it('answers an NVMe/TCP ICReq with an ICResp on every port', async () => {
    const icreq = Buffer.alloc(128);
    icreq[0] = 0x00; // PDU-type ICReq
    icreq[1] = 0x00; // FLAGS
    icreq[2] = 128; // HLEN
    icreq[3] = 0; // PDO
    icreq.writeUInt32LE(128, 4); // PLEN
    icreq.writeUInt16LE(0, 8); // PFV 0
    icreq[10] = 0; // HPDA
    icreq[11] = 0; // DGST: no header or data digest
    icreq.writeUInt32LE(0, 12); // MAXR2T (0's based)
    expect(target.ports.nvme1).toEqual({ portid: 1, guestPort: 4420, host: target.host, port: target.port });
    for (const p of [target.ports.nvme1, target.ports.nvme2, target.ports.discovery]) {
      const resp = await exchange(p.host, p.port, icreq, 128);
      expect(resp.length).toBe(128);
      expect(resp[0]).toBe(0x01); // PDU-type ICResp
      expect(resp[2]).toBe(128); // HLEN
      expect(resp[3]).toBe(0); // PDO
      expect(resp.readUInt32LE(4)).toBe(128); // PLEN
      expect(resp.readUInt16LE(8)).toBe(0); // PFV
      expect(resp[11]).toBe(0); // DGST: nothing enabled, since nothing was asked for
      expect(resp.readUInt32LE(12)).toBeGreaterThanOrEqual(4096); // MAXH2CDATA
    }
  });

  it('exposes ns 1 with 512-byte and ns 2 with 4096-byte blocks (seen by the guest kernel host)', async () => {
    const connect = `transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=${target.openNqn}`;
    const r = await target.exec(
      [
        'modprobe nvme-tcp',
        `echo "${connect}" >/dev/nvme-fabrics`,
        'for i in $(seq 50); do [ -e /sys/block/nvme0n1 ] && [ -e /sys/block/nvme0n2 ] && break; sleep 0.1; done',
        // Block device names follow the order the namespaces were scanned in (asynchronous on 7.x): go by nsid.
        'for d in /sys/block/nvme0n*; do echo "$(cat $d/nsid) $(cat $d/queue/logical_block_size) $(cat $d/size)"; done | sort -n',
        'echo 1 >/sys/class/nvme/nvme0/delete_controller',
      ].join(' && '),
    );
    expect(r.stderr).toBe('');
    // size is in 512-byte sectors: 64 MiB and 16 MiB
    expect(r.stdout).toBe(`1 512 ${(64 << 20) / 512}\n2 4096 ${(16 << 20) / 512}\n`);
  });

  it('runs on the TAP link of the test network namespace, every port reachable at the guest address', async (ctx) => {
    target.skipUnlessReachable(ctx);
    expect(target.network).toBe('tap');
    expect(target.netns).toBeTruthy();
    expect(target.host).toBe(target.guestAddr);
    for (const p of [target.ports.nvme1, target.ports.nvme2, target.ports.discovery]) {
      expect(p.host).toBe(target.guestAddr);
      expect(p.port).toBe(p.guestPort);
      // A plain TCP connection to the address a discovery log entry would carry.
      await new Promise<void>((resolve, reject) => {
        const sock = net.connect({ host: p.host, port: p.port }, () => {
          sock.destroy();
          resolve();
        });
        sock.setTimeout(5000, () => sock.destroy(new Error(`connect to ${p.host}:${p.port} timed out`)));
        sock.on('error', reject);
      });
    }
  });

  it('serves the discovery topology: the discovery port refers to both I/O ports', async () => {
    const g = target.guestAddr;
    const disc = target.discoveryNqn;
    const { nvme1, nvme2, discovery } = target.ports;
    expect(entryLines(await discoveryLog(discovery.host, discovery.port)).sort()).toEqual(
      [`current-discovery 3 ${g}:8009 ${disc}`, `referral 1 ${g}:4420 ${disc}`, `referral 2 ${g}:4421 ${disc}`].sort(),
    );
    const port1 = [`current-discovery 1 ${g}:4420 ${disc}`, `nvm 1 ${g}:4420 ${target.openNqn}`, `nvm 1 ${g}:4420 ${target.multipathNqn}`, `referral 2 ${g}:4421 ${disc}`];
    expect(entryLines(await discoveryLog(nvme1.host, nvme1.port)).sort()).toEqual([...port1].sort());
    // The restricted subsystem is listed only for the host it admits.
    expect(entryLines(await discoveryLog(nvme1.host, nvme1.port, target.allowedHostNqn)).sort()).toEqual(
      [...port1, `nvm 1 ${g}:4420 ${target.restrictedNqn}`].sort(),
    );
    expect(entryLines(await discoveryLog(nvme2.host, nvme2.port)).sort()).toEqual(
      [`current-discovery 2 ${g}:4421 ${disc}`, `nvm 2 ${g}:4421 ${target.multipathNqn}`].sort(),
    );
  });

  it('follows the referrals of the discovery port to every subsystem entry, all reachable', async (ctx) => {
    target.skipUnlessReachable(ctx);
    const seen = new Set<string>();
    const found = new Set<string>();
    const queue = [`${target.ports.discovery.host}:${target.ports.discovery.port}`];
    while (queue.length > 0) {
      const at = queue.shift()!;
      if (seen.has(at)) continue;
      seen.add(at);
      const [host, port] = [at.slice(0, at.lastIndexOf(':')), Number(at.slice(at.lastIndexOf(':') + 1))];
      for (const e of (await discoveryLog(host, port)).entries) {
        if (e.subtypeName === 'referral') queue.push(`${e.traddr}:${e.trsvcid}`);
        if (e.subtypeName === 'nvm') {
          expect(await answersIcReq(e.traddr, Number(e.trsvcid)), `${e.traddr}:${e.trsvcid}`).toBe(true);
          found.add(`${e.subnqn}@${e.trsvcid}`);
        }
      }
    }
    expect([...seen].sort()).toEqual([`${target.guestAddr}:4420`, `${target.guestAddr}:4421`, `${target.guestAddr}:8009`]);
    expect([...found].sort()).toEqual(
      [`${target.openNqn}@4420`, `${target.multipathNqn}@4420`, `${target.multipathNqn}@4421`].sort(),
    );
  });

  it('serves the multipath subsystem on both I/O ports with its ANA groups', async () => {
    for (const key of ['nvme1', 'nvme2'] as const) {
      const p: TargetPort = target.ports[key];
      const ctrl = await connect({ host: p.host, port: p.port, subnqn: target.multipathNqn, ioQueues: 1 });
      try {
        expect(await ctrl.activeNamespaceIds()).toEqual([1, 2]);
        const ns1 = await ctrl.namespace(1);
        const ns2 = await ctrl.namespace(2);
        expect([ns1.blockSize, ns1.sizeBytes, ns1.identity.anagrpid]).toEqual([512, 16n << 20n, 2]);
        expect([ns2.blockSize, ns2.sizeBytes, ns2.identity.anagrpid]).toEqual([512, 8n << 20n, 3]);
        const states = await anaStates(ctrl);
        for (const g of target.anaGroups) expect(states[g.grpid], `${key} group ${g.grpid}`).toBe(g.initialState[key]);
      } finally {
        await ctrl.close();
      }
    }
  });

  it('nvmet-ctl ana changes configfs and the ANA state the host reads', async () => {
    const { nvme1, nvme2 } = target.ports;
    const c1 = await connect({ host: nvme1.host, port: nvme1.port, subnqn: target.multipathNqn, ioQueues: 1 });
    const c2 = await connect({ host: nvme2.host, port: nvme2.port, subnqn: target.multipathNqn, ioQueues: 1 });
    try {
      expect(await target.nvmetCtl('ana', 1, 2, 'inaccessible')).toBe('ok ana port=1 group=2 state=inaccessible');
      expect((await target.exec(`cat ${cfs}/ports/1/ana_groups/2/ana_state`)).stdout).toBe('inaccessible\n');
      expect((await anaStates(c1))[2]).toBe('inaccessible');
      expect((await anaStates(c2))[2]).toBe('non-optimized');
      expect(await target.nvmetCtl('ana', 2, 3, 'change')).toBe('ok ana port=2 group=3 state=change');
      expect((await anaStates(c2))[3]).toBe('change');
      await expect(target.nvmetCtl('ana', 1, 2, 'sideways')).rejects.toThrow(/unknown ANA state 'sideways'/);
      await expect(target.nvmetCtl('ana', 9, 2, 'optimized')).rejects.toThrow(/no port 9/);
    } finally {
      await target.nvmetCtl('ana', 1, 2, 'optimized');
      await target.nvmetCtl('ana', 2, 3, 'optimized');
      await Promise.all([c1.close(), c2.close()]);
    }
    expect(await target.nvmetCtl('ana-get', 1, 2)).toBe('ok ana-get port=1 group=2 state=optimized');
  });

  it('nvmet-ctl link and unlink change what a port serves; unlink drops the port\'s controllers', async () => {
    const { nvme2 } = target.ports;
    const listed = async (): Promise<boolean> =>
      (await discoveryLog(nvme2.host, nvme2.port)).entries.some((e) => e.subnqn === target.openNqn);
    expect(await listed()).toBe(false);
    expect(await target.nvmetCtl('link', 2, target.openNqn)).toBe(`ok link port=2 nqn=${target.openNqn}`);
    try {
      expect(await cfsList(target, 'ports/2/subsystems')).toEqual([target.multipathNqn, target.openNqn]);
      expect(await listed()).toBe(true);
      const ctrl = await connect({ host: nvme2.host, port: nvme2.port, subnqn: target.openNqn, ioQueues: 1 });
      const closed = new Promise<void>((resolve) => ctrl.onClose(() => resolve()));
      expect(await ctrl.activeNamespaceIds()).toEqual([1, 2]);
      expect(await target.nvmetCtl('unlink', 2, target.openNqn)).toBe(`ok unlink port=2 nqn=${target.openNqn}`);
      await closed;
      expect(ctrl.state).toBe('closed');
      expect(await listed()).toBe(false);
      await expect(connect({ host: nvme2.host, port: nvme2.port, subnqn: target.openNqn, ioQueues: 0 })).rejects.toThrow();
    } finally {
      await target.nvmetCtl('unlink', 2, target.openNqn);
    }
    expect(await cfsList(target, 'ports/2/subsystems')).toEqual([target.multipathNqn]);
  });

  it('nvmet-ctl port-down and port-up take a port\'s listener away and bring it back', async () => {
    const { nvme2 } = target.ports;
    const ctrl = await connect({ host: nvme2.host, port: nvme2.port, subnqn: target.multipathNqn, ioQueues: 1 });
    const closed = new Promise<void>((resolve) => ctrl.onClose(() => resolve()));
    try {
      expect(await target.nvmetCtl('port-down', 2)).toBe('ok port-down port=2 unlinked=1');
      await closed;
      expect(await answersIcReq(nvme2.host, nvme2.port)).toBe(false);
      expect(await answersIcReq(target.ports.nvme1.host, target.ports.nvme1.port)).toBe(true);
    } finally {
      expect(await target.nvmetCtl('port-up', 2)).toBe('ok port-up port=2 linked=1');
      await ctrl.close();
    }
    expect(await answersIcReq(nvme2.host, nvme2.port)).toBe(true);
    expect(await cfsList(target, 'ports/2/subsystems')).toEqual([target.multipathNqn]);
  });

  it('nvmet-ctl ns-add and ns-del add and remove a namespace', async () => {
    const { nvme1 } = target.ports;
    const ctrl = await connect({ host: nvme1.host, port: nvme1.port, subnqn: target.multipathNqn, ioQueues: 1 });
    try {
      const line = await target.nvmetCtl('ns-add', target.multipathNqn, 3, '4M', 2);
      expect(line).toMatch(new RegExp(`^ok ns-add nqn=${target.multipathNqn} nsid=3 size=4194304 grpid=2 device=/dev/loop\\d+ uuid=`));
      try {
        expect(await ctrl.activeNamespaceIds()).toEqual([1, 2, 3]);
        const ns3 = await ctrl.namespace(3);
        expect([ns3.blockSize, ns3.sizeBytes, ns3.identity.anagrpid]).toEqual([512, 4n << 20n, 2]);
        await expect(target.nvmetCtl('ns-add', target.multipathNqn, 3, '4M')).rejects.toThrow(/exists/);
        expect(await target.nvmetCtl('ns-disable', target.multipathNqn, 3)).toBe(`ok ns-disable nqn=${target.multipathNqn} nsid=3 enable=0`);
        expect(await ctrl.activeNamespaceIds()).toEqual([1, 2]);
        expect(await target.nvmetCtl('ns-enable', target.multipathNqn, 3)).toBe(`ok ns-enable nqn=${target.multipathNqn} nsid=3 enable=1`);
        expect(await ctrl.activeNamespaceIds()).toEqual([1, 2, 3]);
      } finally {
        expect(await target.nvmetCtl('ns-del', target.multipathNqn, 3)).toBe(`ok ns-del nqn=${target.multipathNqn} nsid=3`);
      }
      expect(await ctrl.activeNamespaceIds()).toEqual([1, 2]);
      expect((await target.exec('losetup -a | wc -l; ls /srv/ctl | wc -l')).stdout.split('\n').map((l) => l.trim())).toEqual(['2', '2', '']);
    } finally {
      await ctrl.close();
    }
  });

  it('nvmet-ctl subsys-add, allow-host, ns-resv and subsys-del build a restricted subsystem and take it away', async () => {
    const nqn = 'nqn.2014-08.org.nvmexpress:nvmf-test-harness-scratch';
    const hostnqn = 'nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000000c1';
    const { nvme1 } = target.ports;
    expect(await target.nvmetCtl('subsys-add', nqn, 0)).toBe(`ok subsys-add nqn=${nqn} allow_any=0`);
    try {
      await target.nvmetCtl('ns-add', nqn, 1, '1M');
      await target.nvmetCtl('link', 1, nqn);
      await expect(connect({ host: nvme1.host, port: nvme1.port, subnqn: nqn, hostnqn })).rejects.toThrow(/not allowed|Invalid Host/i);
      expect(await target.nvmetCtl('allow-host', nqn, hostnqn)).toBe(`ok allow-host nqn=${nqn} host=${hostnqn}`);
      const ctrl = await connect({ host: nvme1.host, port: nvme1.port, subnqn: nqn, hostnqn, ioQueues: 1 });
      try {
        expect((await ctrl.namespace(1)).identity.decoded.rescap.writeExclusive).toBe(false);
        expect(await target.nvmetCtl('ns-resv', nqn, 1, 1)).toBe(`ok ns-resv nqn=${nqn} nsid=1 resv_enable=1 enable=1`);
      } finally {
        await ctrl.close();
      }
      const again = await connect({ host: nvme1.host, port: nvme1.port, subnqn: nqn, hostnqn, ioQueues: 1 });
      try {
        // RESCAP of the namespace lists the reservation types once resv_enable is set.
        expect((await again.namespace(1)).identity.decoded.rescap.writeExclusive).toBe(true);
      } finally {
        await again.close();
      }
      expect(await target.nvmetCtl('disallow-host', nqn, hostnqn)).toBe(`ok disallow-host nqn=${nqn} host=${hostnqn}`);
      await expect(connect({ host: nvme1.host, port: nvme1.port, subnqn: nqn, hostnqn })).rejects.toThrow(/not allowed|Invalid Host/i);
    } finally {
      expect(await target.nvmetCtl('subsys-del', nqn)).toBe(`ok subsys-del nqn=${nqn}`);
      await target.nvmetCtl('host-del', hostnqn);
    }
    expect(await cfsList(target, 'subsystems')).not.toContain(nqn);
    expect(await cfsList(target, 'ports/1/subsystems')).not.toContain(nqn);
    await expect(target.nvmetCtl('subsys-del', nqn)).rejects.toThrow(/no subsystem/);
  });

  it('nvmet-ctl referral-add and referral-del change a port\'s discovery log', async () => {
    const { nvme2 } = target.ports;
    const referrals = async (): Promise<string[]> =>
      entryLines(await discoveryLog(nvme2.host, nvme2.port)).filter((l) => l.startsWith('referral '));
    expect(await referrals()).toEqual([]);
    expect(await target.nvmetCtl('referral-add', 2, 'back', 4420, target.guestAddr, 1)).toBe(
      `ok referral-add port=2 name=back traddr=${target.guestAddr} trsvcid=4420 portid=1`,
    );
    try {
      expect(await referrals()).toEqual([`referral 1 ${target.guestAddr}:4420 ${target.discoveryNqn}`]);
    } finally {
      expect(await target.nvmetCtl('referral-del', 2, 'back')).toBe('ok referral-del port=2 name=back');
    }
    expect(await referrals()).toEqual([]);
    await expect(target.nvmetCtl('referral-del', 2, 'back')).rejects.toThrow(/no referral 'back' on port 2/);
  });
});
