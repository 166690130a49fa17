/**
 * Fault injection in the embedded target, observed through the host library: every fault must surface as the
 * documented error code, and nothing may be left pending.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Buffer } from 'node:buffer';
import * as net from 'node:net';
import { once } from 'node:events';
import * as cmds from '../src/protocol/commands.js';
import { encodePdu, PduType, type Pdu, type TermReqPdu } from '../src/protocol/pdu.js';
import { PduReader } from '../src/protocol/reader.js';
import { ErrorCode, NvmeStatusError, TerminatedError, type NvmeofError } from '../src/errors.js';
import type { CommandInfo, ProtocolErrorEvent } from '../src/target/index.js';
import { setCid } from '../src/protocol/sqe.js';
import { inCapsuleSgl, transportSgl, writeSgl } from '../src/protocol/sgl.js';
import { parseIdentifyController } from '../src/protocol/identify.js';
import { TargetEnv, SUBNQN, HOSTNQN } from './helpers/target-env.js';
import { waitFor } from './helpers/wait.js';

const env = new TargetEnv();
afterEach(() => env.cleanup());

const READ = 0x02;
const WRITE = 0x01;

function codeOf(e: unknown): string | undefined {
  return (e as NvmeofError | undefined)?.code;
}

async function rejection(p: Promise<unknown>): Promise<NvmeofError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(Error);
  return e as NvmeofError;
}

describe('target fault injection', () => {
  it('corrupted header digest: the host terminates the queue (H2CTermReq FES 3) and fails what is pending', async () => {
    await env.start();
    const errors: ProtocolErrorEvent[] = [];
    env.target.on('protocol-error', (e) => errors.push(e));
    const ctrl = await env.connect({ headerDigest: true, ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    env.target.inject({ match: { opcode: READ, kind: 'io' }, action: 'corrupt-hdgst', times: 1 });
    const results = await Promise.allSettled([ns.read(0, 1), ns.read(1, 1), ns.read(2, 1)]);
    const codes = results.map((r) => (r.status === 'rejected' ? codeOf(r.reason) : 'ok'));
    expect(codes[0]).toBe(ErrorCode.DIGEST);
    for (const c of codes) expect([ErrorCode.DIGEST, ErrorCode.PROTOCOL, ErrorCode.CONNECTION_CLOSED, 'ok']).toContain(c);
    await waitFor(() => errors.some((e) => e.direction === 'received' && e.fes === 3), 5000, 'the H2CTermReq at the target');
    expect(ctrl.state).toBe('closed');
  });

  it('corrupted data digest: that command fails with NVMEOF_ERR_DIGEST and the queue survives', async () => {
    await env.start();
    const ctrl = await env.connect({ dataDigest: true, ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    const data = randomBytes(4096);
    await ns.write(0, data);
    const h = env.target.inject({ match: { opcode: READ, kind: 'io' }, action: 'corrupt-ddgst', times: 1 });
    const e = await rejection(ns.read(0, 8));
    expect(e.code).toBe(ErrorCode.DIGEST);
    expect(h.hits).toBe(1);
    expect(h.active).toBe(false);
    for (let i = 0; i < 5; i++) expect(Buffer.compare(await ns.read(0, 8), data)).toBe(0);
    expect(ctrl.state).toBe('live');
  });

  it('C2HTermReq: pending commands fail with NVMEOF_ERR_TERMINATED', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    env.target.inject({ match: { opcode: READ }, action: 'terminate', fes: 2, times: 1 });
    const e = await rejection(ns.read(0, 1));
    expect(e.code).toBe(ErrorCode.TERMINATED);
    expect((e as TerminatedError).fes).toBe(2);
    expect(e.message).toMatch(/PDU Sequence Error/);
  });

  it('closing mid-PDU fails everything with NVMEOF_ERR_CONNECTION_CLOSED and leaves nothing pending', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 3 });
    const ns = await ctrl.namespace(1);
    env.target.inject({ match: { opcode: READ, qid: 2 }, action: 'close-mid-pdu', times: 1 });
    const ops = Array.from({ length: 30 }, (_, i) => ns.read(i, 4));
    // Every read settles (one left pending would hold this test until its timeout fails it).
    const results = await Promise.allSettled(ops);
    const rejected = results.filter((r) => r.status === 'rejected');
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected) expect(codeOf((r as PromiseRejectedResult).reason)).toBe(ErrorCode.CONNECTION_CLOSED);
    expect(ctrl.state).toBe('closed');
    await expect(ns.read(0, 1)).rejects.toBeInstanceOf(Error);
  });

  it('a CQE for an unknown CID is NVMEOF_ERR_PROTOCOL', async () => {
    await env.start();
    const errors: ProtocolErrorEvent[] = [];
    env.target.on('protocol-error', (e) => errors.push(e));
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    env.target.inject({ match: { opcode: WRITE }, action: 'unknown-cid', times: 1 });
    const e = await rejection(ns.write(0, Buffer.alloc(512)));
    expect(e.code).toBe(ErrorCode.PROTOCOL);
    expect(e.message).toMatch(/unknown command id/);
    await waitFor(() => errors.some((x) => x.direction === 'received' && x.fes === 1), 5000, 'the H2CTermReq at the target');
  });

  it('a dropped response times out (NVMEOF_ERR_TIMEOUT); Abort can still complete it', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    let victim: CommandInfo | undefined;
    env.target.inject({ match: { opcode: READ, when: (c) => ((victim = c), true) }, action: 'drop', times: 1 });
    const t0 = Date.now();
    const e = await rejection(ns.read(0, 1, { timeout: 200 }));
    expect(e.code).toBe(ErrorCode.TIMEOUT);
    expect(Date.now() - t0).toBeLessThan(1000);
    // The queue keeps working; the dropped command is still outstanding on the target.
    await ns.read(0, 1);
    const conn = env.target.connections().find((c) => c.qid === 1)!;
    expect(conn.outstanding).toBe(1);
    const ab = await ctrl.adminCommand(cmds.abort({ sqid: victim!.qid, cid: victim!.cid }));
    expect(ab.cqe.dw0 & 1).toBe(0);
    await waitFor(() => conn.outstanding === 0, 5000, 'the aborted command to leave the target');
    const again = await ctrl.adminCommand(cmds.abort({ sqid: 1, cid: victim!.cid }));
    expect(again.cqe.dw0 & 1).toBe(1);
    await ns.read(0, 1);
  });

  it('still works when every write is split into 1..7 byte pieces', async () => {
    await env.start();
    env.target.inject({ action: 'tiny-writes' });
    const ctrl = await env.connect({ ioQueues: 1, headerDigest: true, dataDigest: true, events: false });
    const ns = await ctrl.namespace(1);
    const data = randomBytes(4096);
    await ns.write(0, data);
    expect(Buffer.compare(await ns.read(0, 8), data)).toBe(0);
    await ctrl.close();
  });

  it('still works with delayed answers, which may complete out of order', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    await ns.write(0, Buffer.alloc(1024, 7));
    env.target.inject({ match: { opcode: READ, nsid: 1 }, action: 'delay', ms: 80, times: 1 });
    const order: string[] = [];
    const t0 = Date.now();
    const slow = ns.read(0, 1).then((b) => (order.push('slow'), b));
    const fast = ns.read(1, 1).then((b) => (order.push('fast'), b));
    const [a, b] = await Promise.all([slow, fast]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(70);
    expect(order).toEqual(['fast', 'slow']);
    expect(a[0]).toBe(7);
    expect(b[0]).toBe(7);
  });

  it('returns an injected status without executing the command, then recovers', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    const h = env.target.inject({ match: { opcode: WRITE }, action: 'status', status: { sct: 0, sc: 0x22 }, skip: 1, times: 1 });
    await ns.write(0, Buffer.alloc(512, 1));
    const e = await rejection(ns.write(1, Buffer.alloc(512, 2)));
    expect(e).toBeInstanceOf(NvmeStatusError);
    expect((e as NvmeStatusError).sc).toBe(0x22);
    expect(env.ns.readBlocks(1, 1)[0]).toBe(0);
    await ns.write(1, Buffer.alloc(512, 3));
    expect(env.ns.readBlocks(1, 1)[0]).toBe(3);
    expect(h.hits).toBe(1);
    h.remove();
    expect(env.target.faults.list()).toHaveLength(0);
  });

  it('closing instead of answering is NVMEOF_ERR_CONNECTION_CLOSED', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 1 });
    const ns = await ctrl.namespace(1);
    env.target.inject({ match: { kind: 'io' }, action: 'close', times: 1 });
    expect((await rejection(ns.read(0, 1))).code).toBe(ErrorCode.CONNECTION_CLOSED);
  });

  it('validates rules when they are added', async () => {
    await env.start();
    const bad = [
      { action: 'explode' },
      { action: 'delay' },
      { action: 'status' },
      { action: 'drop', times: 0 },
      { action: 'tiny-writes', chunk: { min: 0, max: 3 } },
    ];
    for (const rule of bad) expect(() => env.target.inject(rule as never)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(env.target.faults.list()).toHaveLength(0);
  });
});

describe('target protocol checks', () => {
  async function rawConnect(port: number): Promise<{ socket: net.Socket; next: () => Promise<Pdu>; closed: Promise<unknown> }> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    const reader = new PduReader({ role: 'host' });
    const queue: Pdu[] = [];
    const waiters: ((p: Pdu) => void)[] = [];
    socket.on('data', (chunk: Buffer) => {
      for (const p of reader.push(chunk)) {
        const w = waiters.shift();
        if (w) w(p);
        else queue.push(p);
      }
    });
    const closed = once(socket, 'close');
    const next = () => new Promise<Pdu>((r) => {
      const p = queue.shift();
      if (p) r(p);
      else waiters.push(r);
    });
    return { socket, next, closed };
  }

  it('answers a PDU of the wrong direction with a C2HTermReq and closes', async () => {
    await env.start();
    const errors: ProtocolErrorEvent[] = [];
    env.target.on('protocol-error', (e) => errors.push(e));
    const { socket, next, closed } = await rawConnect(env.port.port);
    for (const b of encodePdu({ type: PduType.ICReq, pfv: 0, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }, { hdgst: false, ddgst: false })) socket.write(b);
    expect((await next()).type).toBe(PduType.ICResp);
    for (const b of encodePdu({ type: PduType.R2T, cccid: 1, ttag: 0, r2to: 0, r2tl: 8 }, { hdgst: false, ddgst: false })) socket.write(b);
    const term = (await next()) as TermReqPdu;
    expect(term.type).toBe(PduType.C2HTermReq);
    expect([term.fes, term.fei]).toEqual([1, 0]);
    expect(term.data[0]).toBe(PduType.R2T);
    await closed;
    expect(errors).toMatchObject([{ direction: 'sent', fes: 1, fei: 0 }]);
  });

  it('aligns C2HData to the HPDA the host asked for', async () => {
    await env.start();
    const { socket, next } = await rawConnect(env.port.port);
    const plain = { hdgst: false, ddgst: false };
    for (const b of encodePdu({ type: PduType.ICReq, pfv: 0, hpda: 3, hdgst: false, ddgst: false, maxr2t: 0 }, plain)) socket.write(b);
    expect((await next()).type).toBe(PduType.ICResp);
    const send = (cmd: cmds.NvmeCommand, cid: number) => {
      setCid(cmd.sqe, cid);
      const data = cmd.data ? Buffer.from(cmd.data) : null;
      writeSgl(cmd.sqe, data ? inCapsuleSgl(data.length) : transportSgl(cmd.readLength ?? 0));
      for (const b of encodePdu({ type: PduType.CapsuleCmd, sqe: cmd.sqe, data }, plain)) socket.write(b);
    };
    send(cmds.connect({ qid: 0, sqsize: 8, hostid: '6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f', subnqn: SUBNQN, hostnqn: HOSTNQN }), 1);
    expect(await next()).toMatchObject({ type: PduType.CapsuleResp });
    send(cmds.propertySet({ offset: 0x14, size: 4, value: 0x460001 }), 2);
    expect(await next()).toMatchObject({ type: PduType.CapsuleResp });
    send(cmds.identifyController(), 3);
    const raw: Buffer[] = [];
    socket.prependListener('data', (d: Buffer) => raw.push(d));
    const data = (await next()) as Pdu & { type: 0x07; data: Buffer };
    expect(data.type).toBe(PduType.C2HData);
    expect(data.data.length).toBe(4096);
    const bytes = Buffer.concat(raw);
    expect(bytes[3]).toBe(32); // PDO: the 24-byte header rounded up to a multiple of (HPDA + 1) * 4 = 16
    expect(parseIdentifyController(data.data).subnqn).toBe(SUBNQN);
    socket.destroy();
  });

  it('answers in-capsule data with a bad data digest with Transient Transport Error', async () => {
    await env.start();
    const { socket, next } = await rawConnect(env.port.port);
    for (const b of encodePdu({ type: PduType.ICReq, pfv: 0, hpda: 0, hdgst: false, ddgst: true, maxr2t: 0 }, { hdgst: false, ddgst: false })) socket.write(b);
    expect(await next()).toMatchObject({ type: PduType.ICResp, ddgst: true });
    const cmd = cmds.connect({ qid: 0, sqsize: 8, hostid: '6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f', subnqn: SUBNQN, hostnqn: HOSTNQN });
    setCid(cmd.sqe, 9);
    writeSgl(cmd.sqe, inCapsuleSgl(1024));
    const pdu = encodePdu({ type: PduType.CapsuleCmd, sqe: cmd.sqe, data: Buffer.from(cmd.data!) }, { hdgst: false, ddgst: true });
    const dd = Buffer.from(pdu[2]!);
    dd[0] = dd[0]! ^ 1;
    socket.write(Buffer.concat([pdu[0]!, pdu[1]!, dd]));
    const resp = (await next()) as Pdu & { type: 0x05; cqe: Buffer };
    expect(resp.type).toBe(PduType.CapsuleResp);
    expect(resp.cqe.readUInt16LE(12)).toBe(9);
    expect((resp.cqe.readUInt16LE(14) >> 1) & 0xff).toBe(0x22);
    expect(env.target.controllers()).toHaveLength(0);
    socket.destroy();
  });

  it('rejects H2CData beyond MAXH2CDATA with FES 5 (Data Transfer Limit Exceeded)', async () => {
    await env.start({ target: { maxh2cdata: 4096 } });
    const { socket, next } = await rawConnect(env.port.port);
    for (const b of encodePdu({ type: PduType.ICReq, pfv: 0, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }, { hdgst: false, ddgst: false })) socket.write(b);
    const ic = await next();
    expect(ic).toMatchObject({ type: PduType.ICResp, maxh2cdata: 4096, cpda: 0 });
    for (const b of encodePdu({ type: PduType.H2CData, cccid: 1, ttag: 0, datao: 0, last: true, data: Buffer.alloc(8192) }, { hdgst: false, ddgst: false })) socket.write(b);
    const term = (await next()) as TermReqPdu;
    expect([term.type, term.fes]).toEqual([PduType.C2HTermReq, 5]);
    socket.destroy();
  });
});
