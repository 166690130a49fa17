/**
 * The nvmeof CLI run in-process (main(argv, io)) against the embedded target: every command's human and JSON
 * output, exit codes, transfers through files and stdin/stdout, monitor, perf and the demo; plus the output helpers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { COMMANDS, main, type CliIo } from '../src/cli/cli.js';
import { parseInteger, parseSize, parseU64, splitAddress, UsageError } from '../src/cli/args.js';
import { formatFields, formatTable, hexDump, jsonText, Progress, toJson } from '../src/cli/output.js';
import { LatencyHistogram } from '../src/cli/perf.js';
import { parseDhchapKey } from '../src/protocol/auth.js';
import { rechunk } from '../src/cli/transfer.js';
import { NvmeTarget, type TargetPort, type TargetSubsystem } from '../src/target/index.js';
import { DISCOVERY_NQN } from '../src/protocol/nqn.js';
import { AbortedError } from '../src/errors.js';
import { waitFor, closedPort } from './helpers/wait.js';

const NQN = 'nqn.2024-01.io.nvmeof.test:cli';
const PLAIN = 'nqn.2024-01.io.nvmeof.test:cli-plain';
const OTHER_HOST = 'nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0';

let target: NvmeTarget;
let p1: TargetPort;
let p2: TargetPort;
let subsys: TargetSubsystem;
let dir: string;

beforeAll(async () => {
  target = new NvmeTarget();
  p1 = await target.listen({ host: '127.0.0.1', port: 0, ana: { 2: 'non-optimized' } });
  p2 = await target.listen({ host: '127.0.0.1', port: 0, ana: { 1: 'non-optimized' } });
  subsys = target.addSubsystem({ nqn: NQN, ana: true, model: 'cli test', serial: 'CLI0001' });
  subsys.addNamespace({ nsid: 1, blocks: 8192, blockSize: 512, anaGroup: 1 });
  subsys.addNamespace({ nsid: 2, blocks: 256, blockSize: 4096, anaGroup: 2 });
  target.addSubsystem({ nqn: PLAIN, ports: [p1] }).addNamespace({ nsid: 1, blocks: 64 });
  dir = await mkdtemp(join(tmpdir(), 'nvmeof-cli-'));
});

afterAll(async () => {
  await target.close();
  await rm(dir, { recursive: true, force: true });
});

/** Collects what the CLI writes. */
class Sink {
  readonly chunks: Buffer[] = [];
  constructor(readonly isTTY = false) {}
  write(c: string | Uint8Array): boolean {
    this.chunks.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c));
    return true;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
  get text(): string {
    return this.bytes.toString('utf8');
  }
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  bytes: Buffer;
}

async function run(args: string[], o: { stdin?: CliIo['stdin']; signal?: AbortSignal; tty?: boolean; out?: Sink; err?: Sink } = {}): Promise<Run> {
  const out = o.out ?? new Sink(o.tty);
  const err = o.err ?? new Sink(o.tty);
  const code = await main(args, { stdout: out, stderr: err, ...(o.stdin ? { stdin: o.stdin } : {}), ...(o.signal ? { signal: o.signal } : {}) });
  return { code, stdout: out.text, stderr: err.text, bytes: out.bytes };
}

const at = (port: TargetPort = p1) => ['-a', '127.0.0.1', '-s', String(port.port)];
const sub = (port: TargetPort = p1) => [...at(port), '-n', NQN];

describe('cli: help, version and usage errors', () => {
  it('lists every command and the exit codes', async () => {
    const r = await run(['help']);
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toContain(`  ${c.name} `);
    expect(r.stdout).toMatch(/Exit codes:[\s\S]*0 +success[\s\S]*1 +the controller completed a command with an NVMe status error[\s\S]*2 +bad usage[\s\S]*3 +connection failure[\s\S]*4 +protocol error/);
    expect((await run([])).stdout).toBe(r.stdout);
  });

  it('shows per-command help with every option', async () => {
    for (const c of COMMANDS) {
      const r = await run([c.name, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout.startsWith(`Usage: nvmeof ${c.name}`)).toBe(true);
      for (const name of Object.keys({ ...c.options, ...c.connection })) expect(r.stdout).toContain(`--${name}`);
      expect(r.stdout).toContain('--output-format');
    }
    expect((await run(['help', 'read'])).stdout).toBe((await run(['read', '-h'])).stdout);
  });

  it('prints the version', async () => {
    const r = await run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^nvmeof \d+\.\d+\.\d+/);
  });

  it.each([
    [['frobnicate'], /unknown command "frobnicate"/],
    [['id-ctlr'], /did you mean "id-ctrl"/],
    [['help', 'nope'], /unknown command "nope"/],
    [['id-ctrl', '--bogus'], /--bogus/],
    [['id-ctrl', '-n', NQN], /--traddr .* is required/],
    [['id-ctrl', '-a', '127.0.0.1'], /--nqn .* is required/],
    [['id-ctrl', '-a', '127.0.0.1', '-n', NQN, '-o', 'xml'], /--output-format must be one of normal, json, binary/],
    [['discover', '-a', '127.0.0.1', '-o', 'binary'], /--output-format must be one of normal, json/],
    [['id-ctrl', '-a', '127.0.0.1', '-n', NQN, '-t', 'rdma'], /TCP only/],
    [['id-ctrl', '-a', '127.0.0.1', '-n', NQN, '-s', '70000'], /--trsvcid must be an integer 1..65535/],
    [['get-log', '-a', '127.0.0.1', '-n', NQN, '-l', '512'], /--log-id .* is required/],
    [['get-log', '-a', '127.0.0.1', '-n', NQN, '-i', '2', '-l', '6'], /multiple of 4/],
    [['read', '-a', '127.0.0.1', '-n', NQN], /--block-count or --data-size is required/],
    [['read', '-a', '127.0.0.1', '-n', NQN, '-c', '1', '-z', '512'], /not both/],
    [['resv-acquire', '-a', '127.0.0.1', '-n', NQN, '--crkey', '1'], /--rtype .* is required/],
    [['resv-acquire', '-a', '127.0.0.1', '-n', NQN, '--crkey', '1', '--rtype', '9'], /--rtype must be an integer 1..6/],
    [['resv-register', '-a', '127.0.0.1', '-n', NQN, '--nrkey', '0x1ffffffffffffffff'], /64 bits/],
    [['monitor'], /--discovery/],
    [['perf', '-a', '127.0.0.1', '-n', NQN, '--rw', 'trim'], /--rw must be one of read, write, randrw/],
    [['perf', '-a', '127.0.0.1', '-n', NQN, '--time', 'x'], /--time must be/],
    // Bounds derived from millisecond limits print as whole numbers, never as fractional hex.
    [['id-ctrl', '-a', '127.0.0.1', '-n', NQN, '--keep-alive-tmo', '99999999'], /--keep-alive-tmo must be an integer 0\.\.0x418937 \(/],
  ])('exits 2 for %j', async (args, message) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('nvmeof help');
  });

  it('exits 2 for invalid arguments the library refuses (bad NQN, past the end of the namespace)', async () => {
    const bad = await run(['id-ctrl', '-a', '127.0.0.1', '-s', String(p1.port), '-n', `nqn.2024-01.io.x:${'x'.repeat(300)}`]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('[NVMEOF_ERR_INVALID_ARGUMENT]');
    const past = await run(['read', ...sub(), '--start-block', '8190', '-c', '4', '-d', join(dir, 'never.bin')]);
    expect(past.code).toBe(2);
    expect(past.stderr).toMatch(/go past the end of namespace 1 \(8192 blocks/);
  });
});

describe('cli: connection failures and status errors', () => {
  it('exits 3 when the connection is refused', async () => {
    const port = await closedPort();
    for (const cmd of [['id-ctrl', '-n', NQN], ['discover'], ['list', '-n', NQN], ['list-subsys', '-n', NQN]]) {
      const r = await run([...cmd, '-a', '127.0.0.1', '-s', String(port)]);
      expect(r.code, cmd.join(' ')).toBe(3);
      expect(r.stderr).toContain('NVMEOF_ERR_CONNECTION_FAILED');
    }
  });

  it('exits 1 for an NVMe status error, with the status named on one line', async () => {
    const r = await run(['get-feature', ...sub(), '-f', '0x42']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^nvmeof get-feature: .*Invalid Field in Command.*\[NVMEOF_ERR_STATUS\]\n$/);
    // A Connect refused by the target (unknown subsystem) is a status error too.
    const c = await run(['id-ctrl', ...at(), '-n', 'nqn.2024-01.io.nvmeof.test:nope']);
    expect(c.code).toBe(1);
    expect(c.stderr).toContain('NVMEOF_ERR_STATUS');
  });

  it('exits 4 for other failures (ANA log of a controller without ANA)', async () => {
    const r = await run(['ana-log', ...at(), '-n', PLAIN]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('NVMEOF_ERR_UNSUPPORTED');
  });

  it('exits 130 when interrupted', async () => {
    const ac = new AbortController();
    ac.abort(new AbortedError('interrupted'));
    const r = await run(['id-ctrl', ...sub()], { signal: ac.signal });
    expect(r.code).toBe(130);
  });
});

describe('cli: discovery and listing', () => {
  it('discover: table and JSON', async () => {
    const r = await run(['discover', ...at()]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Discovery log of 127\.0\.0\.1:\d+: 4 records, generation \d+\n/);
    expect(r.stdout).toMatch(/TYPE +PORTID +TRADDR +TRSVCID +SUBNQN +TREQ +SECTYPE/);
    expect(r.stdout).toContain(`nvm             2  127.0.0.1  ${p2.port}`);
    const j = await run(['discover', ...at(), '-o', 'json']);
    const doc = JSON.parse(j.stdout);
    expect(typeof doc.genctr).toBe('string');
    expect(doc.visited).toEqual([{ traddr: '127.0.0.1', trsvcid: String(p1.port), subnqn: DISCOVERY_NQN, depth: 0, genctr: doc.genctr, numrec: 4 }]);
    expect(doc.entries).toHaveLength(4);
    expect(doc.entries.filter((e: { subtype: string }) => e.subtype === 'nvm').map((e: { subnqn: string; trsvcid: string }) => `${e.subnqn}@${e.trsvcid}`).sort()).toEqual(
      [`${NQN}@${p1.port}`, `${NQN}@${p2.port}`, `${PLAIN}@${p1.port}`].sort(),
    );
    expect(doc.entries[0]).toMatchObject({ transport: 'tcp', addressFamily: 'ipv4', treq: 'not-specified', sectype: 'none', source: { depth: 0 } });
    expect(doc.referrals).toEqual([]);
    expect(doc.errors).toEqual([]);
  });

  it('list-subsys: through discovery, and for one subsystem with two paths', async () => {
    const r = await run(['list-subsys', ...at()]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/SUBSYSTEM +MODEL +PATH +CNTLID +STATE +ANA GROUPS/);
    expect(r.stdout).toMatch(new RegExp(`${NQN} +cli test +127\\.0\\.0\\.1:${p1.port} +\\d+ +live +1:optimized 2:non-optimized`));
    expect(r.stdout).toMatch(new RegExp(`127\\.0\\.0\\.1:${p2.port} +\\d+ +live +1:non-optimized 2:optimized`));
    const dead = await closedPort();
    const j = await run(['list-subsys', '-a', `127.0.0.1:${p1.port}`, '-a', `127.0.0.1:${p2.port}`, '-a', `127.0.0.1:${dead}`, '-n', NQN, '-o', 'json']);
    expect(j.code).toBe(0);
    const doc = JSON.parse(j.stdout);
    expect(doc.subsystems).toHaveLength(1);
    const s = doc.subsystems[0];
    expect(s).toMatchObject({ nqn: NQN, model: 'cli test', serial: 'CLI0001', firmware: '1.0' });
    expect(s.paths.map((p: { state: string }) => p.state)).toEqual(['live', 'live', 'unreachable']);
    expect(s.paths[0].anaGroups).toEqual([{ group: 1, state: 'optimized' }, { group: 2, state: 'non-optimized' }]);
    expect(s.paths[2]).toMatchObject({ trsvcid: String(dead), cntlid: null, anaGroups: [], error: { code: 'NVMEOF_ERR_CONNECTION_FAILED' } });
  });

  it('list: namespaces of every subsystem, table and JSON', async () => {
    const r = await run(['list', ...at()]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/NSID +SIZE +FORMAT +ANA +SUBSYSTEM +PATH +SERIAL +MODEL +FW/);
    expect(r.stdout).toMatch(new RegExp(`1 +4\\.00 MiB +512 B \\+ 0 B +1:optimized +${NQN}`));
    expect(r.stdout).toMatch(new RegExp(`2 +1\\.00 MiB +4096 B \\+ 0 B +2:non-optimized +${NQN}`));
    const j = await run(['list', ...sub(p2), '-o', 'json']);
    const doc = JSON.parse(j.stdout);
    expect(doc.namespaces).toHaveLength(2);
    expect(doc.namespaces[0]).toMatchObject({ subnqn: NQN, nsid: 1, trsvcid: String(p2.port), blocks: '8192', blockSize: 512, sizeBytes: '4194304', anaGroup: 1, anaState: 'non-optimized', serial: 'CLI0001', model: 'cli test' });
    expect(doc.namespaces[0].nguid).toMatch(/^[0-9a-f]{32}$/);
    expect(doc.namespaces[0].uuid).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('cli: identify, logs and features', () => {
  it('id-ctrl: fields, decoded flags, JSON and raw bytes', async () => {
    const r = await run(['id-ctrl', ...sub(), '-H']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^vid +: 0x0$/m);
    expect(r.stdout).toMatch(/^sn +: CLI0001$/m);
    expect(r.stdout).toMatch(new RegExp(`^subnqn +: ${NQN}$`, 'm'));
    expect(r.stdout).toMatch(/^cmic +: 0xb {2}\[multiPort multiController anaReporting\]$/m);
    expect(r.stdout).toMatch(/^ver +: 0x20000 {2}\(NVMe 2\.0\)$/m);
    const j = JSON.parse((await run(['id-ctrl', ...sub(), '-o', 'json'])).stdout);
    expect(j).toMatchObject({ sn: 'CLI0001', mn: 'cli test', subnqn: NQN, mdts: 8, tnvmcap: '0', version: { major: 2, minor: 0 }, decoded: { cmic: { anaReporting: true } } });
    expect(j.raw).toBeUndefined();
    expect(j.fguid).toBe('0'.repeat(32));
    const b = await run(['id-ctrl', ...sub(), '-o', 'binary']);
    expect(b.bytes).toHaveLength(4096);
    expect(b.bytes.subarray(768, 768 + NQN.length).toString()).toBe(NQN);
    expect((await run(['id-ctrl', ...sub(), '-b'])).bytes).toHaveLength(4096);
    // The discovery controller identifies too.
    const d = await run(['id-ctrl', ...at(), '-n', DISCOVERY_NQN]);
    expect(d.stdout).toMatch(/^cntrltype +: 2$/m);
  });

  it('id-ns: fields, identifiers, LBA formats, JSON', async () => {
    const r = await run(['id-ns', ...sub(), '-N', '2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Namespace 2: 256 blocks of 4096 B \(1\.00 MiB\)$/m);
    expect(r.stdout).toMatch(/^nsze +: 256$/m);
    expect(r.stdout).toMatch(/^anagrpid +: 2$/m);
    expect(r.stdout).toMatch(/^uuid +: [0-9a-f-]{36}$/m);
    expect(r.stdout).toMatch(/^lbaf {2}0 +: ms:0 lbads:12 \(4096 B\) rp:0 \(in use\)$/m);
    const j = JSON.parse((await run(['id-ns', ...sub(), '-N', '1', '-o', 'json'])).stdout);
    expect(j).toMatchObject({ nsid: 1, blockSize: 512, blocks: '8192', sizeBytes: '4194304', anaGroup: 1, anaState: 'optimized', identify: { nsze: '8192', anagrpid: 1 } });
    expect((await run(['id-ns', ...sub(), '-o', 'binary'])).bytes).toHaveLength(4096);
    const missing = await run(['id-ns', ...sub(), '-N', '9']);
    expect(missing.code).toBe(2);
  });

  it('ana-log: groups and namespaces through each port', async () => {
    const r = await run(['ana-log', ...sub(p2)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^ANA log of ${NQN} through 127\\.0\\.0\\.1:${p2.port} \\(controller \\d+\\): change count \\d+, 2 groups$`, 'm'));
    expect(r.stdout).toMatch(/^ +1 +non-optimized +\d+ +1$/m);
    expect(r.stdout).toMatch(/^ +2 +optimized +\d+ +2$/m);
    const j = JSON.parse((await run(['ana-log', ...sub(), '-o', 'json'])).stdout);
    expect(j).toMatchObject({ subnqn: NQN, trsvcid: String(p1.port), ngrps: 2 });
    expect(typeof j.chgcnt).toBe('string');
    expect(j.groups.map((g: { anagrpid: number; state: string; nsids: number[] }) => [g.anagrpid, g.state, g.nsids])).toEqual([
      [1, 'optimized', [1]],
      [2, 'non-optimized', [2]],
    ]);
    const rgo = JSON.parse((await run(['ana-log', ...sub(), '--groups-only', '-o', 'json'])).stdout);
    expect(rgo.groups.every((g: { nsids: number[] }) => g.nsids.length === 0)).toBe(true);
  });

  it('get-log: hex dump, JSON, raw bytes', async () => {
    const r = await run(['get-log', ...sub(), '-i', '2', '-l', '512']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Log page 0x02 \(SMART \/ Health Information\), 512 bytes at offset 0, nsid 0xffffffff:\n00000000 {2}/);
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(1 + 32);
    const j = JSON.parse((await run(['get-log', ...sub(), '-i', '0xc', '-l', '64', '--rae', '-o', 'json'])).stdout);
    expect(j).toMatchObject({ logId: 12, name: 'Asymmetric Namespace Access', length: 64, rae: true, nsid: 0xffffffff });
    expect(j.data).toMatch(/^[0-9a-f]{128}$/);
    expect(Buffer.from(j.data, 'hex').readUInt16LE(8)).toBe(2); // NGRPS
    const b = await run(['get-log', ...at(), '-n', DISCOVERY_NQN, '-i', '0x70', '-l', '1024', '-b']);
    expect(b.bytes).toHaveLength(1024);
    expect(b.bytes.readBigUInt64LE(8)).toBe(4n); // NUMREC
  });

  it('get-feature: value, decoded fields, data', async () => {
    const r = await run(['get-feature', ...sub(), '-f', '7']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Feature 0x07 \(Number of Queues\), current value: 0x[0-9a-f]{8}$/m);
    expect(r.stdout).toMatch(/^ +nsqa : \d+$/m);
    const j = JSON.parse((await run(['get-feature', ...sub(), '-f', '0xf', '-k', '7', '-o', 'json'])).stdout);
    expect(j).toMatchObject({ fid: 15, name: 'Keep Alive Timer', sel: 0, selName: 'current', value: 7000, valueHex: '0x00001b58', decoded: { katoMs: 7000 }, data: null });
    const h = JSON.parse((await run(['get-feature', ...sub(), '-f', '0x81', '-o', 'json'])).stdout);
    expect(h.cdw11).toBe(1);
    expect(h.data).toMatch(/^[0-9a-f]{32}$/);
    const sup = JSON.parse((await run(['get-feature', ...sub(), '-f', '7', '--sel', 'supported', '-o', 'json'])).stdout);
    expect(sup.sel).toBe(3);
    expect(sup.decoded).toHaveProperty('saveable');
  });
});

describe('cli: read and write', () => {
  it('round trip through files, larger than one piece', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 512 * 7);
    const inFile = join(dir, 'in.bin');
    const outFile = join(dir, 'out.bin');
    await writeFile(inFile, data);
    const w = await run(['write', ...sub(), '--start-block', '100', '-d', inFile]);
    expect(w.code).toBe(0);
    expect(w.stdout).toMatch(new RegExp(`^wrote ${data.length / 512} blocks \\(3\\.00 MiB\\) from ${inFile} to namespace 1 at LBA 100 in `));
    const r = await run(['read', ...sub(p2), '--start-block', '100', '-c', String(data.length / 512), '-d', outFile, '-o', 'json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ nsid: 1, startBlock: '100', blocks: data.length / 512, blockSize: 512, bytes: data.length, file: outFile });
    expect((await readFile(outFile)).equals(data)).toBe(true);
    expect(subsys.namespace(1)!.readBlocks(100, data.length / 512).equals(data)).toBe(true);
  });

  it('write from stdin, read to stdout (raw, hex on a terminal, JSON)', async () => {
    const data = randomBytes(4096 * 3);
    const stdin = Readable.from([data.subarray(0, 1000), data.subarray(1000, 9000), data.subarray(9000)]);
    const w = await run(['write', ...sub(), '-N', '2', '--start-block', '5', '-o', 'json'], { stdin });
    expect(w.code).toBe(0);
    expect(JSON.parse(w.stdout)).toMatchObject({ nsid: 2, blocks: 3, blockSize: 4096, bytes: data.length, file: null });
    const raw = await run(['read', ...sub(), '-N', '2', '--start-block', '5', '-z', '12k']);
    expect(raw.code).toBe(0);
    expect(raw.bytes.equals(data)).toBe(true);
    const hex = await run(['read', ...sub(), '-N', '2', '--start-block', '5', '-c', '1'], { tty: true });
    expect(hex.stdout.split('\n')[0]).toBe(hexDump(data.subarray(0, 16)).trimEnd());
    const j = JSON.parse((await run(['read', ...sub(), '-N', '2', '--start-block', '5', '-c', '1', '-o', 'json'])).stdout);
    expect(j.data).toBe(data.subarray(0, 4096).toString('hex'));
  });

  it('write refuses partial blocks and short input', async () => {
    const odd = join(dir, 'odd.bin');
    await writeFile(odd, randomBytes(1000));
    const r = await run(['write', ...sub(), '-d', odd]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not a multiple of the 512-byte block size/);
    const part = await run(['write', ...sub(), '-d', odd, '-c', '1']);
    expect(part.code).toBe(0);
    expect(part.stdout).toMatch(/^wrote 1 block \(512 B\)/);
    const short = await run(['write', ...sub(), '-d', odd, '-c', '4']);
    expect(short.code).toBe(2);
    const tail = await run(['write', ...sub(), '--start-block', '50'], { stdin: Readable.from([randomBytes(1100)]) });
    expect(tail.code).toBe(2);
    expect(tail.stderr).toMatch(/2 blocks were written, the last 76 bytes were not/);
    const tty = Object.assign(Readable.from([]), { isTTY: true });
    expect((await run(['write', ...sub()], { stdin: tty })).code).toBe(2);
  });
});

describe('cli: reservations', () => {
  it('register, acquire, report, conflict, release, clear', async () => {
    const reg = await run(['resv-register', ...sub(), '-N', '2', '--nrkey', '0xabc']);
    expect(reg.code).toBe(0);
    expect(reg.stdout).toBe('resv-register: registered key 0xabc on namespace 2\n');
    const acq = await run(['resv-acquire', ...sub(), '-N', '2', '--crkey', '0xabc', '--rtype', '1', '-o', 'json']);
    expect(acq.code).toBe(0);
    expect(JSON.parse(acq.stdout)).toEqual({ nsid: 2, action: 'acquire', rtype: 1, type: 'write-exclusive', crkey: '2748', prkey: null, iekey: false });
    const rep = await run(['resv-report', ...sub(), '-N', '2']);
    expect(rep.stdout).toMatch(/^Namespace 2: generation 1, write-exclusive \(1\) held by controller \d+, persist through power loss: no$/m);
    expect(rep.stdout).toMatch(/CNTLID +HOST ID +KEY +HOLDER/);
    expect(rep.stdout).toMatch(/ [0-9a-f]{32} +0xabc +yes/);
    const j = JSON.parse((await run(['resv-report', ...sub(), '-N', '2', '-o', 'json'])).stdout);
    expect(j).toMatchObject({ nsid: 2, generation: 1, type: 'write-exclusive', rtype: 1, extended: true, holder: { key: '2748', holdsReservation: true } });
    expect(j.registrants).toHaveLength(1);
    // Another host: not registered, so its acquire conflicts.
    const other = await run(['resv-acquire', ...sub(), '-N', '2', '-q', OTHER_HOST, '--crkey', '1', '--rtype', 'write-exclusive']);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain('Reservation Conflict');
    // Another host registers and preempts.
    expect((await run(['resv-register', ...sub(), '-N', '2', '-q', OTHER_HOST, '--nrkey', '7'])).code).toBe(0);
    const pre = await run(['resv-acquire', ...sub(), '-N', '2', '-q', OTHER_HOST, '--crkey', '7', '--prkey', '0xabc', '--rtype', '1', '--racqa', 'preempt']);
    expect(pre.code).toBe(0);
    expect(pre.stdout).toContain('preempted and acquired a write-exclusive reservation');
    const rel = await run(['resv-release', ...sub(), '-N', '2', '-q', OTHER_HOST, '--crkey', '7', '--rtype', '1']);
    expect(rel.code).toBe(0);
    expect(rel.stdout).toBe('resv-release: released the write-exclusive reservation on namespace 2\n');
    expect((await run(['resv-release', ...sub(), '-N', '2', '-q', OTHER_HOST, '--crkey', '7', '--rrela', '1'])).code).toBe(0);
    expect((await run(['resv-report', ...sub(), '-N', '2'])).stdout).toMatch(/no reservation held[\s\S]*No registrants\./);
  });
});

describe('cli: monitor', () => {
  it('prints paths, ANA changes and events as JSON lines until interrupted', async () => {
    const out = new Sink();
    const ac = new AbortController();
    const done = run(['monitor', '-a', `127.0.0.1:${p1.port}`, '-a', `127.0.0.1:${p2.port}`, '-n', NQN, '--discovery', `127.0.0.1:${p1.port}`, '-o', 'json'], { out, signal: ac.signal });
    const records = () => out.text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    await waitFor(() => records().filter((r) => r.type === 'path' && r.state === 'live').length === 2 && records().some((r) => r.type === 'discovery'));
    target.setAnaState(p1, 1, 'inaccessible');
    await waitFor(() => records().some((r) => r.type === 'event' && r.event === 'ana-change'));
    await waitFor(() => records().some((r) => r.type === 'ana' && r.state === 'inaccessible'));
    subsys.addNamespace({ nsid: 3, blocks: 64 });
    await waitFor(() => records().some((r) => r.type === 'event' && r.event === 'namespace-changed'));
    ac.abort();
    const r = await done;
    target.setAnaState(p1, 1, 'optimized');
    subsys.removeNamespace(3);
    expect(r.code).toBe(0);
    const recs = records();
    for (const rec of recs) expect(typeof rec.time === 'string' && !Number.isNaN(Date.parse(rec.time as string))).toBe(true);
    expect(recs.find((x) => x.type === 'path')).toMatchObject({ subnqn: NQN, state: 'live', previous: 'connecting' });
    const ev = recs.find((x) => x.type === 'event' && x.event === 'ana-change')!;
    expect(ev).toMatchObject({ source: `127.0.0.1:${p1.port}`, detail: { reason: 'aen', groups: [{ group: 1, state: 'inaccessible', previous: 'optimized' }] } });
    expect(recs.find((x) => x.type === 'ana' && x.state === 'inaccessible')).toMatchObject({ source: `127.0.0.1:${p1.port}`, nsid: 1, group: 1, previous: 'optimized' });
    expect(recs.find((x) => x.type === 'event' && x.event === 'namespace-changed')).toMatchObject({ detail: { added: [3] } });
    expect(recs.filter((x) => x.type === 'discovery' && x.change === 'entry')).toHaveLength(4);
    expect(recs.some((x) => x.type === 'discovery' && x.change === 'added')).toBe(false);
  });

  it('prints aligned lines in normal mode and stops after --duration', async () => {
    const r = await run(['monitor', ...sub(), '--duration', '1']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`watching 1 path of ${NQN}`);
    expect(r.stdout).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}  127\\.0\\.0\\.1:${p1.port}  path       live \\(controller \\d+\\): connected$`, 'm'));
    expect(r.stdout).toMatch(/ ana +nsid 1 \(group 1\): unknown -> optimized$/m);
  });

  it('exits 3 when a discovery controller cannot be reached', async () => {
    const r = await run(['monitor', '--discovery', `127.0.0.1:${await closedPort()}`]);
    expect(r.code).toBe(3);
  });
});

describe('cli: perf', () => {
  it('prints a summary table', async () => {
    const r = await run(['perf', ...sub(), '--time', '0.3', '--queue-depth', '4', '--nr-io-queues', '2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^random read, 4096 B per I\/O, queue depth 4, 2 I\/O queues, namespace 1, \d+\.\d\d s\n/);
    expect(r.stdout).toMatch(/OP +IOS +IOPS +MB\/s +AVG us +P50 us +P99 us +P99\.9 us +MAX us/);
    expect(r.stdout).toMatch(/^read +\d+ +\d+ /m);
  });

  it('JSON for a mixed sequential run', async () => {
    const r = await run(['perf', ...sub(), '-N', '2', '--time', '0.3', '--rw', 'randrw', '--pattern', 'seq', '--block-size', '8k', '-o', 'json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ nsid: 2, rw: 'randrw', pattern: 'seq', rwmixread: 50, blockSize: 8192, queueDepth: 32, interrupted: false });
    for (const op of [j.read, j.write, j.total]) {
      expect(op.ios).toBeGreaterThan(0);
      expect(op.latencyUs.p50).toBeLessThanOrEqual(op.latencyUs.p99);
      expect(op.latencyUs.p99).toBeLessThanOrEqual(op.latencyUs.max);
    }
    expect(j.total.ios).toBe(j.read.ios + j.write.ios);
    const bad = await run(['perf', ...sub(), '-N', '2', '--block-size', '512', '--time', '0.1']);
    expect(bad.code).toBe(2);
  });
});

describe('cli: perf --workers', () => {
  it('runs the workload in worker threads, each with its own controller, and merges their latencies', async () => {
    const before = target.connections().length;
    const r = await run(['perf', ...sub(), '--time', '0.5', '--queue-depth', '2', '--nr-io-queues', '1', '--workers', '2', '-o', 'json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ workers: 2, queueDepth: 2, ioQueues: 2 });
    expect(j.read.ios).toBeGreaterThan(0);
    expect(j.total.ios).toBe(j.read.ios);
    await waitFor(() => target.connections().length === before); // every worker closed its controller
    const bad = await run(['perf', ...sub(), '--workers', '0']);
    expect(bad.code).toBe(2);
  });
});

describe('cli: demo', () => {
  it('walks through every step and exits 0', async () => {
    const r = await run(['demo']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const s of ['1. Target started', '2. Discovery log read', '3. Connected to', '4. Wrote 1.00 MiB', 'identical', '5. Opened namespace 1 through both ports', '6. ANA change', 'optimized -> inaccessible', 'Asymmetric Access Inaccessible', 'the data written in step 4', '7. DH-HMAC-CHAP', 'requires DH-HMAC-CHAP authentication', 'sha384, ffdhe2048, bidirectional; queues authenticated: 0, 1, 2', '8. Shut down']) {
      expect(r.stdout).toContain(s);
    }
  });

  it('prints one JSON object per step', async () => {
    const r = await run(['demo', '-o', 'json']);
    expect(r.code).toBe(0);
    const steps = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(steps.map((s) => s.name)).toEqual(['target', 'discovery', 'identify', 'write-read', 'multipath', 'ana-change', 'authentication', 'done']);
    expect(steps[6]).toMatchObject({ authentication: { hash: 'sha384', dhgroup: 'ffdhe2048', bidirectional: true }, queues: [0, 1, 2], verified: true });
    expect(steps[3].verified).toBe(true);
    expect(steps[5]).toMatchObject({ directRead: { ok: false, code: 'NVMEOF_ERR_STATUS', sct: 3, sc: 2 }, multipathRead: { verified: true } });
  });
});

describe('cli: output and argument helpers', () => {
  it('formats aligned tables', () => {
    expect(formatTable(['A', { header: 'N', align: 'right' }, 'LAST'], [['xx', '1', 'a'], ['y', '100', '']])).toBe('A     N  LAST\nxx    1  a\ny   100\n');
    expect(formatTable(['', ''], [['k', 'v']], { headers: false })).toBe('k  v\n');
    expect(formatFields([['a', '1'], ['long', '2']])).toBe('a    : 1\nlong : 2\n');
  });

  it('JSON: bigints as decimal strings, bytes as hex, errors as code and message', () => {
    const err = Object.assign(new Error('boom'), { code: 'NVMEOF_ERR_X' });
    expect(toJson({ a: 1n << 64n, b: Buffer.from([1, 0xab]), c: undefined, d: [2n], e: err })).toEqual({ a: '18446744073709551616', b: '01ab', d: ['2'], e: { code: 'NVMEOF_ERR_X', message: 'boom' } });
    expect(jsonText({ a: 1n }, true)).toBe('{"a":"1"}\n');
  });

  it('hex dumps', () => {
    expect(hexDump(Buffer.from('ABCDEFGHIJKLMNOPQ'), 0x10)).toBe(
      '00000010  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|\n00000020  51                                                |Q|\n',
    );
  });

  it('parses numbers, sizes, keys and addresses', () => {
    expect(parseInteger('--x', '0x1f', 0, 255)).toBe(31);
    expect(parseInteger('--x', '42', 0, 255)).toBe(42);
    expect(() => parseInteger('--x', '-1', 0, 255)).toThrow(UsageError);
    expect(() => parseInteger('--x', '1.5', 0, 255)).toThrow(/--x must be an integer 0..255/);
    expect(parseSize('--s', '4k', 1, 1e9)).toBe(4096);
    expect(parseSize('--s', '1MiB', 1, 1e9)).toBe(1048576);
    expect(parseSize('--s', '0x200', 1, 1e9)).toBe(512);
    expect(parseU64('--k', '0xffffffffffffffff')).toBe(0xffff_ffff_ffff_ffffn);
    expect(splitAddress('10.0.0.1:4421', 4420, '-a')).toEqual({ host: '10.0.0.1', port: 4421 });
    expect(splitAddress('10.0.0.1', 4420, '-a')).toEqual({ host: '10.0.0.1', port: 4420 });
    expect(splitAddress('fe80::1', 4420, '-a')).toEqual({ host: 'fe80::1', port: 4420 });
    expect(splitAddress('[fe80::1]:8009', 4420, '-a')).toEqual({ host: 'fe80::1', port: 8009 });
  });

  it('cuts a stream into fixed pieces up to a limit', async () => {
    const src = Readable.from([Buffer.alloc(3, 1), Buffer.alloc(10, 2), 'xy']);
    const pieces: Buffer[] = [];
    for await (const p of rechunk(src, 4)) pieces.push(Buffer.from(p));
    expect(pieces.map((p) => p.length)).toEqual([4, 4, 4, 3]);
    expect(Buffer.concat(pieces).toString('latin1').endsWith('xy')).toBe(true);
    const limited: number[] = [];
    for await (const p of rechunk(Readable.from([Buffer.alloc(100)]), 8, 20)) limited.push(p.length);
    expect(limited).toEqual([8, 8, 4]);
  });

  it('latency histogram percentiles within its resolution', () => {
    const h = new LatencyHistogram();
    for (let i = 1; i <= 1000; i++) h.record(i / 100); // 0.01 .. 10 ms
    expect(h.count).toBe(1000);
    expect(h.minimum).toBeCloseTo(0.01);
    expect(h.maximum).toBeCloseTo(10);
    expect(h.mean).toBeCloseTo(5.005, 3);
    expect(Math.abs(h.percentile(50) - 5) / 5).toBeLessThan(0.02);
    expect(Math.abs(h.percentile(99) - 9.9) / 9.9).toBeLessThan(0.02);
    expect(h.percentile(100)).toBeCloseTo(10);
    expect(new LatencyHistogram().percentile(50)).toBe(0);
  });

  it('draws progress only on a terminal and only for long operations', () => {
    let now = 0;
    const tty = new Sink(true);
    const p = new Progress(tty, 1000, 'read', 1000, () => now);
    p.update(100);
    expect(tty.text).toBe('');
    now = 1500;
    p.update(500);
    expect(tty.text).toBe(`\rread [${'#'.repeat(15)}${'.'.repeat(15)}]  50%  500 B / 1000 B  0.0 MB/s\x1b[K`);
    p.done();
    expect(tty.text.endsWith('\r\x1b[K')).toBe(true);
    const pipe = new Sink(false);
    const q = new Progress(pipe, 1000, 'read', 0, () => now);
    q.update(10);
    q.done();
    expect(pipe.text).toBe('');
  });
});

describe('cli: docs/cli.md', () => {
  it('documents every command and every option', async () => {
    const doc = await readFile(new URL('../docs/cli.md', import.meta.url), 'utf8');
    for (const c of COMMANDS) {
      const section = doc.split(/^## /m).find((s) => s.startsWith(`\`${c.name}\``));
      expect(section, `section for ${c.name}`).toBeDefined();
      for (const name of Object.keys(c.options)) expect(section, `${c.name} --${name}`).toContain(`--${name}`);
    }
    expect(doc).toMatch(/## Exit codes/);
  });
});

describe('cli: key tools', () => {
  // Expected keys computed independently (python3 hmac/hashlib/zlib/base64), not by the code under test.
  const NQN_H = 'nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6';
  const hexOf = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i)).toString('hex');

  it('gen-dhchap-key prints the secret as is (--hmac 0) or transformed over the NQN (--hmac 1-3)', async () => {
    const plain = await run(['gen-dhchap-key', '--secret', hexOf(32)]);
    expect(plain).toMatchObject({ code: 0, stdout: 'DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:\n' });
    const sha256 = await run(['gen-dhchap-key', '--hmac', '1', '--nqn', NQN_H, '--secret', hexOf(32)]);
    expect(sha256.stdout).toBe('DHHC-1:01:jWiK0NeSweQjGFEI9c4bjHV792NxG/KQG1mAfCQAiRlmCljm:\n');
    const sha384 = await run(['gen-dhchap-key', '--hmac', '2', '--nqn', NQN_H, '--secret', hexOf(48)]);
    expect(sha384.stdout).toBe('DHHC-1:02:IqZJ7OfqOcbH0Af+bm4QWrh1+LEEV/Fp7yjgZUKwF68+VcPR6Us+ZRxzSiFThNry7h7rwQ==:\n');
    // Random keys parse as keys, and a key length that does not fit the hash is refused.
    const random = await run(['gen-dhchap-key', '--key-length', '64', '-o', 'json']);
    expect(JSON.parse(random.stdout)).toMatchObject({ hmac: 0, keyLength: 64 });
    expect(parseDhchapKey(JSON.parse(random.stdout).key).transform).toBe(0);
    expect((await run(['gen-dhchap-key', '--hmac', '1', '--key-length', '48'])).code).toBe(2);
    expect((await run(['gen-dhchap-key', '--secret', 'abc'])).code).toBe(2);
  });

  it('gen-tls-key prints the interchange form libnvme prints; check-tls-key derives identity and TLS PSK', async () => {
    // libnvme test/psk.c's configured PSK and its 01 interchange form.
    const key = '5512DBB6737D0106F65975B773DFB011FFC344BCF442E2DD6D8BC4870B5D5B03';
    const gen = await run(['gen-tls-key', '--secret', key]);
    expect(gen).toMatchObject({ code: 0, stdout: 'NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:\n' });
    const subnqn = 'nqn.2014-08.org.nvmexpress:uuid:36ebf5a9-1df9-47b3-a6d0-e9ba32e428a2';
    const check = await run(['check-tls-key', '--keydata', gen.stdout.trim(), '--hostnqn', NQN_H, '--subsysnqn', subnqn, '-o', 'json']);
    expect(check.code).toBe(0);
    // The v0 TLS PSK of this key and these NQNs, computed with OpenSSL's HKDF (see test/tls-psk.test.ts).
    expect(JSON.parse(check.stdout)).toEqual({
      hash: 'sha256',
      identity: `NVMe0R01 ${NQN_H} ${subnqn}`,
      psk: '8e981666c96a88ef69f6e6a0460ff77ba9039e3d38cbdeee264c4de09d75d246',
    });
    const bad = await run(['check-tls-key', '--keydata', 'NVMeTLSkey-1:01:AAAA:', '--hostnqn', NQN_H, '--subsysnqn', subnqn]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).not.toContain('AAAA');
    expect((await run(['gen-tls-key', '--hmac', '3'])).code).toBe(2);
  });
});
