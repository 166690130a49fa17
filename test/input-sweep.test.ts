/**
 * Caller-input sweep: every public function and method of the package root, fed bad arguments (wrong types, NaN,
 * negative, non-integer, too large, null), must reject with NVMEOF_ERR_INVALID_ARGUMENT naming the value, before
 * anything is sent. The embedded target counts the commands and connections it receives; the host's
 * nvmeof:command:start channel counts what was put on the wire.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import diagnostics from 'node:diagnostics_channel';
import {
  connect,
  discover,
  readDiscoveryLog,
  watchDiscovery,
  openMultipath,
  resolveHostIdentity,
  protocol,
  ErrorCode,
  NvmeofError,
  type Controller,
  type Namespace,
  type MultipathNamespace,
} from '../src/index.js';
import { TargetEnv, SUBNQN, HOSTNQN } from './helpers/target-env.js';

const env = new TargetEnv();
let ctrl: Controller;
let ns: Namespace;
let mp: MultipathNamespace;
let targetCommands = 0;
let targetConnections = 0;
let wireCommands = 0;
const onStart = (m: unknown): void => {
  if ((m as { name?: string }).name !== 'Keep Alive') wireCommands++;
};

beforeAll(async () => {
  await env.start({ ns: { blocks: 8192 } });
  ctrl = await env.connect({ kato: 0 });
  ns = await ctrl.namespace(1);
  mp = await openMultipath({ nsid: 1, paths: [{ host: '127.0.0.1', port: env.port.port }], subnqn: SUBNQN, hostnqn: HOSTNQN, kato: 0, ioQueues: 1 });
  env.target.on('command', (info: { opcode?: number; qid?: number }) => {
    if (!(info.qid === 0 && info.opcode === 0x18)) targetCommands++;
  });
  env.target.on('connection', () => targetConnections++);
  diagnostics.subscribe('nvmeof:command:start', onStart);
});

afterAll(async () => {
  diagnostics.unsubscribe('nvmeof:command:start', onStart);
  await mp?.close().catch(() => undefined);
  await env.cleanup();
});

type Call = () => unknown;
/** [what is called, the call, a word the error message must contain (the parameter or option named; `a|b`: either)]. */
type Case = [label: string, call: Call, names: string];

const notSignal = {} as AbortSignal;
const NUMBERS_BAD = [-1, 1.5, NaN, Infinity, '1', null] as const;

/** The block I/O surface, shared by Namespace and MultipathNamespace. */
function blockCases(who: string, n: () => Namespace | MultipathNamespace): Case[] {
  const cases: Case[] = [];
  const blk = (): Buffer => Buffer.alloc(n().blockSize);
  for (const v of [-1, 1.5, NaN, 'x', null, {}, 2n ** 64n, -1n, 8192, 8192n]) {
    cases.push([`${who}.read(lba ${String(v)})`, () => n().read(v as never, 1), 'lba']);
    cases.push([`${who}.write(lba ${String(v)})`, () => n().write(v as never, blk()), 'lba']);
  }
  for (const v of [0, ...NUMBERS_BAD, 2 ** 32, 9000]) {
    cases.push([`${who}.read(blocks ${String(v)})`, () => n().read(0, v as never), 'block']);
    cases.push([`${who}.writeZeroes(blocks ${String(v)})`, () => n().writeZeroes(0, v as never), 'block']);
    cases.push([`${who}.verify(blocks ${String(v)})`, () => n().verify(0, v as never), 'block']);
  }
  for (const v of [null, undefined, 'abc', [1, 2, 3], 42, Buffer.alloc(0), Buffer.alloc(100)]) {
    cases.push([`${who}.write(data ${show(v)})`, () => n().write(0, v as never), 'data']);
    cases.push([`${who}.compare(data ${show(v)})`, () => n().compare(0, v as never), 'data']);
    cases.push([`${who}.readInto(buf ${show(v)})`, () => n().readInto(0, v as never), 'buf']);
  }
  for (const v of [null, 'x', 5, [null], [undefined], ['x'], [{ lba: -1, blocks: 1 }], [{ lba: 0, blocks: 0 }], [{ lba: 0, blocks: NaN }], [{ lba: 1.5, blocks: 1 }], [{ lba: 0n, blocks: 2 ** 32 }], [{ lba: 0n, blocks: 1 }, { lba: 8191n, blocks: 2 }]]) {
    cases.push([`${who}.deallocate(${show(v)})`, () => n().deallocate(v as never), 'range']);
  }
  for (const v of [-1, 1.5, NaN, 'x', null, 2 ** 31, {}]) {
    cases.push([`${who}.flush({ timeout: ${String(v)} })`, () => n().flush({ timeout: v as never }), 'timeout']);
    cases.push([`${who}.read(.., { timeout: ${String(v)} })`, () => n().read(0, 1, { timeout: v as never }), 'timeout']);
  }
  for (const v of [notSignal, 'x', 1]) {
    cases.push([`${who}.flush({ signal: ${show(v)} })`, () => n().flush({ signal: v as never }), 'signal']);
    cases.push([`${who}.write(.., { signal: ${show(v)} })`, () => n().write(0, blk(), { signal: v as never }), 'signal']);
  }
  for (const v of ['x', 5, true]) cases.push([`${who}.flush(${show(v)})`, () => n().flush(v as never), 'options']);
  for (const v of ['yes', 1, null]) {
    cases.push([`${who}.write(.., { fua: ${show(v)} })`, () => n().write(0, blk(), { fua: v as never }), 'fua']);
    cases.push([`${who}.writeZeroes(.., { deallocate: ${show(v)} })`, () => n().writeZeroes(0, 1, { deallocate: v as never }), 'deallocate']);
  }
  // Reservations.
  for (const v of [null, 'x', 5]) cases.push([`${who}.reservationRegister(${show(v)})`, () => n().reservationRegister(v as never), 'reservationRegister']);
  cases.push([`${who}.reservationRegister(action nope)`, () => n().reservationRegister({ action: 'nope' as never, newKey: 1n }), 'action']);
  for (const v of [-1n, 2n ** 64n, 1.5, NaN, 'x', null]) {
    cases.push([`${who}.reservationRegister(newKey ${String(v)})`, () => n().reservationRegister({ action: 'register', newKey: v as never }), 'newKey']);
    cases.push([`${who}.reservationAcquire(key ${String(v)})`, () => n().reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: v as never }), 'key']);
    cases.push([`${who}.reservationRelease(key ${String(v)})`, () => n().reservationRelease({ action: 'clear', key: v as never }), 'key']);
  }
  cases.push([`${who}.reservationRegister(ignoreExistingKey 'yes')`, () => n().reservationRegister({ action: 'register', newKey: 1n, ignoreExistingKey: 'yes' as never }), 'ignoreExistingKey']);
  cases.push([`${who}.reservationAcquire(type nope)`, () => n().reservationAcquire({ action: 'acquire', type: 'nope' as never, key: 1n }), 'type']);
  cases.push([`${who}.reservationRelease(action nope)`, () => n().reservationRelease({ action: 'nope' as never, key: 1n }), 'action']);
  for (const v of ['x', 1, null]) cases.push([`${who}.reservationReport({ extended: ${show(v)} })`, () => n().reservationReport({ extended: v as never }), 'extended']);
  return cases;
}

function show(v: unknown): string {
  if (Buffer.isBuffer(v)) return `Buffer(${v.length})`;
  if (Array.isArray(v)) return v.length > 4 ? `array(${v.length})` : `[${v.map(show).join(', ')}]`;
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'bigint') return `${v}n`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${k}: ${show(x)}`).join(', ')}}`;
  return String(v);
}

/** The controller's own methods. */
function controllerCases(): Case[] {
  const cases: Case[] = [];
  for (const v of [null, 'x', 5]) cases.push([`ctrl.readLog(${show(v)})`, () => ctrl.readLog(v as never), 'readLog']);
  for (const v of [-1, 256, 1.5, NaN, 'x', null]) cases.push([`ctrl.readLog(lid ${show(v)})`, () => ctrl.readLog({ lid: v as never, length: 512 }), 'lid']);
  for (const v of [0, 3, -4, 1.5, NaN, 'x', null, 2 ** 33]) cases.push([`ctrl.readLog(length ${show(v)})`, () => ctrl.readLog({ lid: 2, length: v as never }), 'length']);
  for (const v of [-4, 2, 1.5, NaN, 'x', 2 ** 64]) cases.push([`ctrl.readLog(offset ${show(v)})`, () => ctrl.readLog({ lid: 2, length: 512, offset: v as never }), 'offset']);
  for (const v of [-1, 1.5, NaN, 'x', 2 ** 32]) cases.push([`ctrl.readLog(nsid ${show(v)})`, () => ctrl.readLog({ lid: 2, length: 512, nsid: v as never }), 'nsid']);
  for (const v of [-1, 128, 1.5, 'x']) cases.push([`ctrl.readLog(lsp ${show(v)})`, () => ctrl.readLog({ lid: 2, length: 512, lsp: v as never }), 'lsp']);
  for (const v of [-1, 0x10000, 1.5, 'x']) cases.push([`ctrl.readLog(lsi ${show(v)})`, () => ctrl.readLog({ lid: 2, length: 512, lsi: v as never }), 'lsi']);
  for (const v of ['yes', 1]) cases.push([`ctrl.readLog(rae ${show(v)})`, () => ctrl.readLog({ lid: 2, length: 512, rae: v as never }), 'rae']);
  for (const v of [-1, 'x', NaN, 2 ** 31]) cases.push([`ctrl.readLog(timeout ${show(v)})`, () => ctrl.readLog({ lid: 2, length: 512, timeout: v as never }), 'timeout']);
  cases.push(['ctrl.readLog(signal {})', () => ctrl.readLog({ lid: 2, length: 512, signal: notSignal }), 'signal']);
  for (const v of [0, -1, 1.5, NaN, 'x', null, 2 ** 32, 0xffffffff]) cases.push([`ctrl.namespace(${show(v)})`, () => ctrl.namespace(v as never), 'nsid']);
  for (const v of [-4, 1.5, NaN, 'x', null, 2 ** 32]) cases.push([`ctrl.propertyGet(offset ${show(v)})`, () => ctrl.propertyGet(v as never, 4), 'offset']);
  for (const v of [2, 5, 'x', null]) cases.push([`ctrl.propertyGet(size ${show(v)})`, () => ctrl.propertyGet(0, v as never), 'size']);
  for (const v of [-1, 1.5, NaN, 'x', null, 2 ** 32]) cases.push([`ctrl.propertySet(value ${show(v)})`, () => ctrl.propertySet(0x14, 4, v as never), 'value']);
  for (const v of [null, 'x', {}, { sqe: 'x' }, { sqe: Buffer.alloc(10), name: 'x' }]) {
    cases.push([`ctrl.adminCommand(${show(v)})`, () => ctrl.adminCommand(v as never), 'command']);
    cases.push([`ctrl.ioCommand(${show(v)})`, () => ctrl.ioCommand(v as never), 'command']);
  }
  for (const v of [-1, 0, 1.5, 'x', 99]) cases.push([`ctrl.ioCommand(qid ${show(v)})`, () => ctrl.ioCommand(protocol.flush(1), { qid: v as never }), 'qid']);
  for (const v of [-1, 'x', NaN, 2 ** 31]) cases.push([`ctrl.adminCommand(timeout ${show(v)})`, () => ctrl.adminCommand(protocol.keepAlive(), { timeout: v as never }), 'timeout']);
  for (const v of [0, -1, 1.5, NaN, 'x']) cases.push([`ctrl.waitForAnaChange(nsid ${show(v)})`, () => ctrl.waitForAnaChange(v as never, 10), 'nsid']);
  for (const v of [-1, 1.5, NaN, 'x', 2 ** 31]) cases.push([`ctrl.waitForAnaChange(ms ${show(v)})`, () => ctrl.waitForAnaChange(1, v as never), 'ms']);
  cases.push(['ctrl.waitForAnaChange(signal {})', () => ctrl.waitForAnaChange(1, 10, notSignal), 'signal']);
  for (const v of ['x', 5]) cases.push([`ctrl.events(${show(v)})`, () => ctrl.events(v as never), 'options']);
  for (const v of [0, -1, 1.5, NaN, 'x']) cases.push([`ctrl.events({ highWaterMark: ${show(v)} })`, () => ctrl.events({ highWaterMark: v as never }), 'highWaterMark']);
  cases.push(['ctrl.events({ signal: {} })', () => ctrl.events({ signal: notSignal }), 'signal']);
  cases.push(["ctrl.on('nope')", () => ctrl.on('nope' as never, () => undefined), 'nope']);
  for (const v of [null, 'x', 5]) cases.push([`ctrl.on('ana-change', ${show(v)})`, () => ctrl.on('ana-change', v as never), 'listener']);
  for (const v of ['x', 1]) cases.push([`ctrl.refreshAnaState({ rgo: ${show(v)} })`, () => ctrl.refreshAnaState({ rgo: v as never }), 'rgo']);
  for (const v of [-1, 1.5, NaN, 'x']) cases.push([`readDiscoveryLog(maxRetries ${show(v)})`, () => readDiscoveryLog(ctrl, { maxRetries: v as never }), 'maxRetries']);
  cases.push(['readDiscoveryLog(null controller)', () => readDiscoveryLog(null as never), 'controller']);
  return cases;
}

/** What MultipathNamespace has beyond block I/O. */
function multipathCases(): Case[] {
  const cases: Case[] = [];
  for (const v of [0, -1, 1.5, NaN, 'x']) cases.push([`mp.events({ highWaterMark: ${show(v)} })`, () => mp.events({ highWaterMark: v as never }), 'highWaterMark']);
  for (const v of [notSignal, 'x']) cases.push([`mp.events({ signal: ${show(v)} })`, () => mp.events({ signal: v as never }), 'signal']);
  for (const v of ['x', 5]) cases.push([`mp.events(${show(v)})`, () => mp.events(v as never), 'options']);
  cases.push(["mp.on('nope')", () => mp.on('nope' as never, () => undefined), 'nope']);
  for (const v of [null, 'x']) cases.push([`mp.on('path-state', ${show(v)})`, () => mp.on('path-state', v as never), 'listener']);
  for (const v of [null, 'x', {}, { sqe: Buffer.alloc(10), name: 'x' }]) cases.push([`mp.ioCommand(${show(v)})`, () => mp.ioCommand(v as never), 'command']);
  for (const v of [-1, 'x', NaN, 2 ** 31]) cases.push([`mp.ioCommand(timeout ${show(v)})`, () => mp.ioCommand(protocol.flush(1), { timeout: v as never }), 'timeout']);
  cases.push(['mp.ioCommand(signal {})', () => mp.ioCommand(protocol.flush(1), { signal: notSignal }), 'signal']);
  return cases;
}

/** Command builders of the protocol namespace (what a caller passes to adminCommand / ioCommand). */
function builderCases(): Case[] {
  const cases: Case[] = [];
  for (const v of [-1, 256, 1.5, NaN, 'x', null]) {
    cases.push([`protocol.getLogPage(lid ${show(v)})`, () => protocol.getLogPage({ lid: v as never, length: 512 }), 'lid']);
    cases.push([`protocol.identify(cns ${show(v)})`, () => protocol.identify({ cns: v as never }), 'cns']);
    cases.push([`protocol.getFeatures(fid ${show(v)})`, () => protocol.getFeatures({ fid: v as never }), 'fid']);
    cases.push([`protocol.setFeatures(fid ${show(v)})`, () => protocol.setFeatures({ fid: v as never, cdw11: 0 }), 'fid']);
  }
  for (const v of [-(2 ** 31) - 1, 1.5, NaN, 'x', 2 ** 32]) cases.push([`protocol.setFeatures(cdw11 ${show(v)})`, () => protocol.setFeatures({ fid: 7, cdw11: v as never }), 'cdw11']);
  for (const v of [0, 3, -4, NaN, 2 ** 35]) cases.push([`protocol.getLogPage(length ${show(v)})`, () => protocol.getLogPage({ lid: 2, length: v as never }), 'length']);
  return cases;
}

/** Options of the functions that open connections. */
function connectCases(): Case[] {
  const port = (): number => env.port.port;
  const base = (): { host: string; port: number; subnqn: string; hostnqn: string } => ({ host: '127.0.0.1', port: port(), subnqn: SUBNQN, hostnqn: HOSTNQN });
  const cases: Case[] = [];
  cases.push(['connect(null)', () => connect(null as never), 'options']);
  const bad: Array<[string, unknown[]]> = [
    ['host', [null, 5, '']],
    ['port', [-1, 0, 65536, 1.5, NaN, '4420', null]],
    ['subnqn', [5, null, '']],
    ['hostnqn', [5, null, 'x'.repeat(300)]],
    ['hostid', [5, 'xyz']],
    ['kato', [-1, 1.5, NaN, 'x', 2 ** 32]],
    ['ioQueues', [-1, 1.5, NaN, 'x', 65535]],
    ['queueSize', [0, -1, 1.5, NaN, 'x', 4097, 65535]],
    ['adminQueueSize', [0, 1.5, 4096, 'x']],
    ['connectTimeout', [0, -1, NaN, 'x', 2 ** 31]],
    ['commandTimeout', [-1, NaN, 'x', 2 ** 31]],
    ['maxTransferSize', [1, 1.5, 'x', 2 ** 40]],
    ['headerDigest', ['yes', 1]],
    ['dataDigest', ['yes', 1]],
    ['events', ['yes', 1]],
    ['signal', [notSignal, 'x']],
  ];
  for (const [name, values] of bad) {
    for (const v of values) cases.push([`connect({ ${name}: ${show(v)} })`, () => connect({ ...base(), [name]: v } as never), name === 'hostid' ? 'hostid|host ID' : name]);
  }
  const disc: Array<[string, unknown[]]> = [
    ['host', [null, 5]],
    ['port', [-1, 65536, 1.5, 'x']],
    ['connectTimeout', [0, -1, NaN]],
    ['commandTimeout', [-1, NaN]],
    ['signal', [notSignal]],
  ];
  for (const [name, values] of disc) {
    for (const v of values) {
      cases.push([`discover({ ${name}: ${show(v)} })`, () => discover({ host: '127.0.0.1', port: port(), hostnqn: HOSTNQN, [name]: v } as never), name]);
      cases.push([`watchDiscovery({ ${name}: ${show(v)} })`, () => watchDiscovery({ host: '127.0.0.1', port: port(), hostnqn: HOSTNQN, [name]: v } as never), name]);
    }
  }
  for (const v of [-1, 1.5, 'x']) cases.push([`discover({ followReferrals: { maxDepth: ${show(v)} } })`, () => discover({ host: '127.0.0.1', port: port(), followReferrals: { maxDepth: v as never } }), 'maxDepth']);
  for (const v of [-1, 1.5, NaN, 'x', 2 ** 32]) cases.push([`watchDiscovery({ kato: ${show(v)} })`, () => watchDiscovery({ host: '127.0.0.1', port: port(), kato: v as never }), 'kato']);
  for (const v of [-1, NaN, 'x', 2 ** 31]) cases.push([`watchDiscovery({ reconnectDelay: ${show(v)} })`, () => watchDiscovery({ host: '127.0.0.1', port: port(), reconnectDelay: v as never } as never), 'reconnectDelay']);
  const mpBase = (): object => ({ nsid: 1, paths: [{ host: '127.0.0.1', port: port() }], subnqn: SUBNQN, hostnqn: HOSTNQN });
  const mpBad: Array<[string, unknown[]]> = [
    ['nsid', [0, -1, 1.5, NaN, 'x', null, 2 ** 32]],
    ['paths', [null, [], 'x', [null], [{ host: null, port: 4420 }], [{ host: '127.0.0.1', port: -1 }]]],
    ['policy', ['nope', 5]],
    ['reconnectDelay', [-1, NaN, 'x', 2 ** 31]],
    ['ctrlLossTimeout', [-2, 1.5, 'x', 2 ** 31]],
    ['fastIoFailTimeout', [-2, 1.5, 'x', 2 ** 31]],
    ['maxRetries', [-1, 1.5, NaN, 'x']],
    ['anaPollInterval', [-1, 1.5, NaN, 'x', 2 ** 31]],
    ['queueSize', [0, 4097]],
    ['signal', [notSignal]],
  ];
  for (const [name, values] of mpBad) {
    for (const v of values) cases.push([`openMultipath({ ${name}: ${show(v)} })`, () => openMultipath({ ...mpBase(), [name]: v } as never), name]);
  }
  for (const v of [5, 'x'.repeat(300)]) cases.push([`resolveHostIdentity({ hostnqn: ${show(v)} })`, () => resolveHostIdentity({ hostnqn: v as never }), 'hostnqn']);
  for (const v of [5, 'xyz']) cases.push([`resolveHostIdentity({ hostid: ${show(v)} })`, () => resolveHostIdentity({ hostid: v as never }), 'hostid|host ID']);
  return cases;
}

async function outcome(call: Call): Promise<unknown> {
  try {
    const r = call();
    if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).then === 'function') await r;
    return 'resolved';
  } catch (err) {
    return err;
  }
}

const tables: Array<[string, () => Case[]]> = [
  ['Namespace', () => blockCases('ns', () => ns)],
  ['MultipathNamespace', () => [...blockCases('mp', () => mp), ...multipathCases()]],
  ['Controller', controllerCases],
  ['protocol command builders', builderCases],
  ['connect, discovery and multipath options', connectCases],
];

describe('caller-input sweep: bad arguments reject with NVMEOF_ERR_INVALID_ARGUMENT, before anything is sent', () => {
  for (const [title, make] of tables) {
    it(title, async () => {
      const failures: string[] = [];
      const cases = make();
      for (const [label, call, name] of cases) {
        const wire = wireCommands;
        const conns = targetConnections;
        const err = await outcome(call);
        const problems: string[] = [];
        if (!(err instanceof NvmeofError)) problems.push(`got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
        else {
          if (err.code !== ErrorCode.INVALID_ARGUMENT) problems.push(`code ${err.code}: ${err.message}`);
          else if (!name.split('|').some((w) => err.message.toLowerCase().includes(w.toLowerCase()))) problems.push(`message does not name ${name}: ${err.message}`);
        }
        if (wireCommands !== wire) problems.push(`${wireCommands - wire} command(s) sent`);
        if (targetConnections !== conns) problems.push(`${targetConnections - conns} connection(s) opened`);
        if (problems.length > 0) failures.push(`${label}: ${problems.join('; ')}`);
      }
      expect(failures, `${failures.length} of ${cases.length} cases`).toEqual([]);
    });
  }

  it('the target received no command from any of the sweeps', async () => {
    // A round trip on each path: anything sent before it has reached the target by the time it completes.
    const before = targetCommands;
    await ns.flush();
    await mp.flush();
    expect(targetCommands - before).toBe(2);
    expect(before).toBe(0);
  });
});
