import net from 'node:net';
import { expect, it } from 'vitest';
import { describeKernel } from './env.js';

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
    await expect(target.exec('sleep 30', { timeoutMs: 1500 })).rejects.toThrow(/timed out/);
  });

  it('has the nvmet topology in configfs', async () => {
    const { stdout, code } = await target.exec(
      [
        `cd ${cfs}`,
        'ls subsystems',
        `cat subsystems/${target.openNqn}/attr_allow_any_host subsystems/${target.restrictedNqn}/attr_allow_any_host`,
        `cat subsystems/${target.openNqn}/namespaces/1/enable subsystems/${target.openNqn}/namespaces/2/enable`,
        `cat subsystems/${target.restrictedNqn}/namespaces/1/enable`,
        `cat subsystems/${target.openNqn}/namespaces/1/device_path subsystems/${target.openNqn}/namespaces/2/device_path`,
        `ls subsystems/${target.restrictedNqn}/allowed_hosts`,
        'cat ports/1/addr_trtype ports/1/addr_adrfam ports/1/addr_traddr ports/1/addr_trsvcid',
        'ls ports/1/subsystems',
      ].join(' && '),
    );
    expect(code).toBe(0);
    expect(stdout.split('\n')).toEqual([
      target.openNqn,
      target.restrictedNqn,
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
      target.openNqn,
      target.restrictedNqn,
      '',
    ]);
    expect(target.readConsole()).toContain('NVMET-READY');
  });

  it('answers an NVMe/TCP ICReq with an ICResp on the forwarded port', async () => {
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
    const resp = await exchange(target.host, target.port, icreq, 128);
    expect(resp.length).toBe(128);
    expect(resp[0]).toBe(0x01); // PDU-type ICResp
    expect(resp[2]).toBe(128); // HLEN
    expect(resp[3]).toBe(0); // PDO
    expect(resp.readUInt32LE(4)).toBe(128); // PLEN
    expect(resp.readUInt16LE(8)).toBe(0); // PFV
    expect(resp[11]).toBe(0); // DGST: nothing enabled, since nothing was asked for
    expect(resp.readUInt32LE(12)).toBeGreaterThanOrEqual(4096); // MAXH2CDATA
  });

  it('exposes ns 1 with 512-byte and ns 2 with 4096-byte blocks (seen by the guest kernel host)', async () => {
    const connect = `transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=${target.openNqn}`;
    const r = await target.exec(
      [
        'modprobe nvme-tcp',
        `echo "${connect}" >/dev/nvme-fabrics`,
        'for i in $(seq 50); do [ -e /sys/block/nvme0n2 ] && break; sleep 0.1; done',
        'for n in 1 2; do d=/sys/block/nvme0n$n; echo "$n $(cat $d/queue/logical_block_size) $(cat $d/size)"; done',
        'echo 1 >/sys/class/nvme/nvme0/delete_controller',
      ].join(' && '),
    );
    expect(r.stderr).toBe('');
    // size is in 512-byte sectors: 64 MiB and 16 MiB
    expect(r.stdout).toBe(`1 512 ${(64 << 20) / 512}\n2 4096 ${(16 << 20) / 512}\n`);
  });
});
