import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { QueuePair, type Completion } from '../src/transport/queue-pair.js';
import * as cmds from '../src/protocol/commands.js';
import { authReceive } from '../src/protocol/auth.js';
import { PduType, type C2HDataPdu, type CapsuleCmdPdu, type H2CDataPdu, type TermReqPdu } from '../src/protocol/pdu.js';
import { makeStatus } from '../src/protocol/cqe.js';
import { readSgl } from '../src/protocol/sgl.js';
import { ScriptedPeer, cmdInfo } from './helpers/scripted-peer.js';
import { ErrorCode, NvmeStatusError, type NvmeofError } from '../src/errors.js';
import { waitFor } from './helpers/wait.js';

let peer: ScriptedPeer;
let qp: QueuePair | undefined;

async function open(opts: Partial<Parameters<typeof QueuePair.open>[0]> = {}, peerOpts: ConstructorParameters<typeof ScriptedPeer>[0] = {}) {
  peer = new ScriptedPeer(peerOpts);
  const port = await peer.listen();
  qp = await QueuePair.open({ host: '127.0.0.1', port, qid: 1, depth: 4, inCapsuleBytes: 8192, ...opts });
  const conn = await peer.connection();
  return { qp, conn };
}

beforeEach(() => {
  qp = undefined;
});
afterEach(async () => {
  qp?.destroy();
  await peer?.close();
});

const NO_DIGESTS = { hdgst: false, ddgst: false };
const readCmd = (blocks: number) => cmds.read({ nsid: 1, slba: 0n, nlb: blocks, blockSize: 512 });

describe('QueuePair', () => {
  it('negotiates digests and alignment from ICResp', async () => {
    const { qp } = await open({ headerDigest: true, dataDigest: true }, { hdgst: true, ddgst: false, cpda: 3, maxh2cdata: 65536 });
    expect(qp.hdgst).toBe(true);
    expect(qp.ddgst).toBe(false);
    expect(qp.cpda).toBe(3);
    expect(qp.maxh2cdata).toBe(65536);
  });

  it('fails connect with a timeout when no ICResp arrives', async () => {
    peer = new ScriptedPeer({ silent: true });
    const port = await peer.listen();
    await expect(QueuePair.open({ host: '127.0.0.1', port, qid: 0, depth: 2, connectTimeout: 200 })).rejects.toMatchObject({ code: ErrorCode.TIMEOUT });
  });

  it('fails connect with CONNECTION_FAILED when nothing listens', async () => {
    peer = new ScriptedPeer();
    const port = await peer.listen();
    await peer.close();
    await expect(QueuePair.open({ host: '127.0.0.1', port, qid: 0, depth: 2 })).rejects.toMatchObject({ code: ErrorCode.CONNECTION_FAILED });
  });

  it('pipelines up to the depth and queues the rest in order', async () => {
    // The queue pair writes to a socket the test holds, so what it wrote can be counted on the host side.
    peer = new ScriptedPeer();
    const port = await peer.listen();
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const pair = await QueuePair.open({ host: '127.0.0.1', port, qid: 1, depth: 4, inCapsuleBytes: 8192, socket });
    qp = pair;
    const conn = await peer.connection();
    const icreq = socket.bytesWritten;
    const results = Array.from({ length: 10 }, () => pair.submit(cmds.keepAlive()));
    const first = await conn.commands(4);
    // Nothing beyond the depth is on the wire: no completion was sent yet, so the one flush that brought these four is
    // everything the queue pair wrote since the ICReq (four 72-byte command capsules).
    expect(socket.bytesWritten - icreq).toBe(4 * 72);
    expect(qp.outstanding).toBe(4);
    expect(qp.queued).toBe(6);
    const cids = first.map((c) => cmdInfo(c).cid);
    expect(new Set(cids).size).toBe(4);
    // Complete out of order.
    for (const cid of [...cids].reverse()) conn.respond(cid);
    const rest = await conn.commands(4);
    for (const c of rest) conn.respond(cmdInfo(c).cid);
    const last = await conn.commands(2);
    for (const c of last) conn.respond(cmdInfo(c).cid);
    const done = await Promise.all(results);
    expect(done).toHaveLength(10);
    expect(qp.outstanding).toBe(0);
  });

  it('assembles C2HData by offset and completes on SUCCESS without a CapsuleResp', async () => {
    const { qp, conn } = await open();
    const p = qp.submit(readCmd(8));
    const [c] = await conn.commands(1);
    const { cid } = cmdInfo(c!);
    expect(readSgl(c!.sqe)).toMatchObject({ kind: 'transport-data-block', length: 4096 });
    const payload = randomBytes(4096);
    conn.send({ type: PduType.C2HData, cccid: cid, datao: 0, last: false, success: false, data: payload.subarray(0, 1000) });
    conn.send({ type: PduType.C2HData, cccid: cid, datao: 1000, last: false, success: false, data: payload.subarray(1000, 3000) });
    conn.send({ type: PduType.C2HData, cccid: cid, datao: 3000, last: true, success: true, data: payload.subarray(3000) });
    const res = await p;
    expect(res.received).toBe(4096);
    expect(Buffer.compare(res.data!, payload)).toBe(0);
  });

  it('reads into a caller buffer without copying it elsewhere', async () => {
    const { qp, conn } = await open();
    const target = Buffer.alloc(8192, 0xee);
    const view = target.subarray(4096);
    const p = qp.submit(readCmd(8), { readInto: view });
    const [c] = await conn.commands(1);
    const payload = randomBytes(4096);
    conn.send({ type: PduType.C2HData, cccid: cmdInfo(c!).cid, datao: 0, last: true, success: false, data: payload });
    conn.respond(cmdInfo(c!).cid);
    const res = await p;
    expect(res.data!.buffer).toBe(target.buffer);
    expect(Buffer.compare(target.subarray(4096), payload)).toBe(0);
    expect(target[0]).toBe(0xee);
  });

  it('sends small writes in-capsule', async () => {
    const { qp, conn } = await open({ inCapsuleBytes: 8192 });
    const data = randomBytes(4096);
    const p = qp.submit(cmds.write({ nsid: 1, slba: 0n, data, blockSize: 512 }));
    const [c] = await conn.commands(1);
    expect(readSgl(c!.sqe)).toMatchObject({ kind: 'data-block', length: 4096 });
    expect(Buffer.compare(c!.data!, data)).toBe(0);
    conn.respond(cmdInfo(c!).cid);
    await p;
  });

  it('sends large writes by R2T, split at MAXH2CDATA, honouring each R2T', async () => {
    const { qp, conn } = await open({ inCapsuleBytes: 0, dataDigest: true, headerDigest: true }, { maxh2cdata: 4096, hdgst: true, ddgst: true });
    const data = randomBytes(20480);
    const p = qp.submit(cmds.write({ nsid: 1, slba: 0n, data, blockSize: 512 }));
    const [c] = await conn.commands(1);
    expect(c!.data).toBeNull();
    const { cid } = cmdInfo(c!);
    const got = Buffer.alloc(data.length);
    // Two R2Ts: 0..12288 and 12288..20480.
    conn.send({ type: PduType.R2T, cccid: cid, ttag: 7, r2to: 0, r2tl: 12288 });
    const first: H2CDataPdu[] = [];
    for (let i = 0; i < 3; i++) first.push(await conn.next<H2CDataPdu>((x) => x.type === PduType.H2CData));
    expect(first.map((d) => [d.datao, d.data.length, d.last, d.ttag])).toEqual([
      [0, 4096, false, 7],
      [4096, 4096, false, 7],
      [8192, 4096, true, 7],
    ]);
    conn.send({ type: PduType.R2T, cccid: cid, ttag: 8, r2to: 12288, r2tl: 8192 });
    const second: H2CDataPdu[] = [];
    for (let i = 0; i < 2; i++) second.push(await conn.next<H2CDataPdu>((x) => x.type === PduType.H2CData));
    for (const d of [...first, ...second]) {
      expect(d.dataDigestError).toBeFalsy();
      d.data.copy(got, d.datao);
    }
    expect(second.at(-1)!.last).toBe(true);
    expect(Buffer.compare(got, data)).toBe(0);
    conn.respond(cid);
    await p;
  });

  it('rejects an error status with NvmeStatusError naming the status', async () => {
    const { qp, conn } = await open();
    const p = qp.submit(readCmd(1));
    const [c] = await conn.commands(1);
    conn.respond(cmdInfo(c!).cid, makeStatus(0, 0x80, { dnr: true }));
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NvmeStatusError);
    expect(err).toMatchObject({ code: ErrorCode.STATUS, sct: 0, sc: 0x80, dnr: true, qid: 1 });
    expect((err as Error).message).toMatch(/LBA Out of Range/i);
  });

  it('a second ICResp is a PDU sequence error (FES 2) with an H2CTermReq, not a state error', async () => {
    const { qp, conn } = await open();
    const pending = qp.submit(cmds.keepAlive()).catch((e: unknown) => e);
    await conn.commands(1);
    conn.send({ type: PduType.ICResp, pfv: 0, cpda: 0, hdgst: false, ddgst: false, maxh2cdata: 65536 });
    const term = await conn.next<TermReqPdu>((p) => p.type === PduType.H2CTermReq);
    expect(term.fes).toBe(2);
    expect(await pending).toMatchObject({ code: ErrorCode.PROTOCOL });
    expect(qp.state).toBe('closed');
  });

  it('terminates the queue with an H2CTermReq on a CQE for an unknown CID and fails everything pending', async () => {
    const { qp, conn } = await open();
    const a = qp.submit(cmds.keepAlive()).catch((e: unknown) => e);
    const b = qp.submit(readCmd(1)).catch((e: unknown) => e);
    await conn.commands(2);
    conn.respond(0x7777);
    const term = await conn.next<TermReqPdu>((p) => p.type === PduType.H2CTermReq);
    expect(term.fes).toBe(1);
    expect(term.fei).toBe(20);
    expect(await a).toMatchObject({ code: ErrorCode.PROTOCOL });
    expect(await b).toMatchObject({ code: ErrorCode.PROTOCOL });
    expect(qp.state).toBe('closed');
    await expect(qp.submit(cmds.keepAlive())).rejects.toMatchObject({ code: ErrorCode.PROTOCOL });
  });

  it('treats C2HData beyond the transfer as fatal (data transfer out of range)', async () => {
    const { qp, conn } = await open();
    const p = qp.submit(readCmd(1)).catch((e: unknown) => e);
    const [c] = await conn.commands(1);
    conn.send({ type: PduType.C2HData, cccid: cmdInfo(c!).cid, datao: 0, last: true, success: false, data: Buffer.alloc(1024) });
    const term = await conn.next<TermReqPdu>((x) => x.type === PduType.H2CTermReq);
    expect(term.fes).toBe(4);
    expect(await p).toMatchObject({ code: ErrorCode.PROTOCOL });
  });

  it('an allocation-length command (Authentication Receive) may be filled in part: data is exactly what was sent', async () => {
    for (const via of ['capsule', 'c2h-success'] as const) {
      const { qp, conn } = await open();
      const p = qp.submit(authReceive(4096));
      const [c] = await conn.commands(1);
      const { cid } = cmdInfo(c!);
      const msg = randomBytes(320);
      conn.send({ type: PduType.C2HData, cccid: cid, datao: 0, last: true, success: via === 'c2h-success', data: msg });
      if (via === 'capsule') conn.respond(cid);
      const done = await p;
      expect(done.received).toBe(320);
      expect(done.data).toEqual(msg);
      expect(qp.state).toBe('ready');
      qp.destroy();
      await peer.close();
    }
  });

  it('a C2HData without data (PLEN 24, DATAL 0) is read once: the short read fails, the queue does not spin', async () => {
    const { qp, conn } = await open();
    const p = qp.submit(readCmd(1)).catch((e: unknown) => e);
    const [c] = await conn.commands(1);
    const { cid } = cmdInfo(c!);
    // Written byte by byte from the spec layout: CH (type 7, LAST_PDU, HLEN 24, PDO 0, PLEN 24), CCCID, DATAO 0, DATAL 0.
    const empty = Buffer.alloc(24);
    empty.set([0x07, 0x04, 24, 0]);
    empty.writeUInt32LE(24, 4);
    empty.writeUInt16LE(cid, 8);
    conn.sendRaw(empty);
    conn.respond(cid);
    const term = await conn.next<TermReqPdu>((x) => x.type === PduType.H2CTermReq);
    expect(term.fes).toBe(2);
    expect(await p).toMatchObject({ code: ErrorCode.PROTOCOL });
    expect(qp.state).toBe('closed');
  });

  it('a successful completion with fewer bytes than asked is a protocol error: TermReq, queue down, never zeros', async () => {
    for (const via of ['capsule', 'c2h-success'] as const) {
      const { qp, conn } = await open();
      const target = Buffer.alloc(4096, 0xee);
      const p = qp.submit(readCmd(8), { readInto: target }).catch((e: unknown) => e);
      const other = qp.submit(cmds.keepAlive()).catch((e: unknown) => e);
      const [c] = await conn.commands(2);
      const { cid } = cmdInfo(c!);
      if (via === 'capsule') {
        conn.send({ type: PduType.C2HData, cccid: cid, datao: 0, last: true, success: false, data: Buffer.alloc(512, 1) });
        conn.respond(cid);
      } else {
        conn.send({ type: PduType.C2HData, cccid: cid, datao: 0, last: true, success: true, data: Buffer.alloc(512, 1) });
      }
      const term = await conn.next<TermReqPdu>((x) => x.type === PduType.H2CTermReq);
      expect(term.fes).toBe(2); // PDU Sequence Error: the completion came before the data
      const err = await p;
      expect(err).toMatchObject({ code: ErrorCode.PROTOCOL });
      expect((err as Error).message).toMatch(/after sending 512 of 4096 bytes/);
      expect(await other).toMatchObject({ code: ErrorCode.PROTOCOL });
      expect(qp.state).toBe('closed');
      expect(target.subarray(512).every((b) => b === 0xee)).toBe(true); // nothing invented
      qp.destroy();
      await peer.close();
    }
  });

  it('never writes late data into the buffer of a command that timed out or was aborted', async () => {
    const { qp, conn } = await open({ depth: 2 });
    const buf = Buffer.alloc(4096, 0xee);
    const ac = new AbortController();
    const timedOut = qp.submit(readCmd(8), { readInto: buf.subarray(0, 2048 * 2), timeout: 100 });
    const buf2 = Buffer.alloc(512, 0xdd);
    const aborted = qp.submit(readCmd(1), { readInto: buf2, signal: ac.signal });
    const [c1, c2] = await conn.commands(2);
    await expect(timedOut).rejects.toMatchObject({ code: ErrorCode.TIMEOUT });
    ac.abort();
    await expect(aborted).rejects.toMatchObject({ code: ErrorCode.ABORTED });
    // The controller answers both late, in full, successfully: the bytes are read and dropped.
    conn.send({ type: PduType.C2HData, cccid: cmdInfo(c1!).cid, datao: 0, last: false, success: false, data: Buffer.alloc(1000, 1) });
    conn.send({ type: PduType.C2HData, cccid: cmdInfo(c1!).cid, datao: 1000, last: true, success: true, data: Buffer.alloc(3096, 2) });
    conn.send({ type: PduType.C2HData, cccid: cmdInfo(c2!).cid, datao: 0, last: true, success: false, data: Buffer.alloc(512, 3) });
    conn.respond(cmdInfo(c2!).cid);
    // Both slots free again, the queue healthy, the caller's buffers untouched.
    const q = qp.submit(cmds.keepAlive());
    const [k] = await conn.commands(1);
    conn.respond(cmdInfo(k!).cid);
    await q;
    expect(qp.state).toBe('ready');
    expect(buf.every((b) => b === 0xee)).toBe(true);
    expect(buf2.every((b) => b === 0xdd)).toBe(true);
    expect(qp.outstanding).toBe(0);
  });

  it('stops placing a data PDU the moment its command is aborted, even in the middle of its payload', async () => {
    const { qp, conn } = await open({ depth: 2 });
    const buf = Buffer.alloc(4096, 0xee);
    const ac = new AbortController();
    const p = qp.submit(readCmd(8), { readInto: buf, signal: ac.signal });
    const [c] = await conn.commands(1);
    const { cid } = cmdInfo(c!);
    const { encodePdu } = await import('../src/protocol/pdu.js');
    const pdu = Buffer.concat(encodePdu({ type: PduType.C2HData, cccid: cid, datao: 0, last: true, success: true, data: Buffer.alloc(4096, 7) }, NO_DIGESTS));
    // The header and the first 1000 payload bytes arrive and are placed; then the caller gives up.
    conn.sendRaw(pdu.subarray(0, 24 + 1000));
    await waitFor(() => buf[999] === 7, 5000, 'the first part of the payload placed');
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: ErrorCode.ABORTED });
    const snapshot = Buffer.from(buf);
    expect(snapshot[1000]).toBe(0xee);
    // The rest of the PDU arrives after the rejection: it is read and dropped, never written into the caller's buffer.
    conn.sendRaw(pdu.subarray(24 + 1000));
    const q = qp.submit(cmds.keepAlive());
    const [k] = await conn.commands(1);
    conn.respond(cmdInfo(k!).cid);
    await q;
    expect(qp.state).toBe('ready');
    expect(buf.equals(snapshot)).toBe(true);
    expect(qp.outstanding).toBe(0);
  });

  it('data after the completion of its command is a protocol error, even within one chunk', async () => {
    const { qp, conn } = await open();
    const p = qp.submit(readCmd(1));
    const [c] = await conn.commands(1);
    const { cid } = cmdInfo(c!);
    const { encodePdu } = await import('../src/protocol/pdu.js');
    const { encodeCqe } = await import('../src/protocol/cqe.js');
    const chunk = Buffer.concat([
      ...encodePdu({ type: PduType.C2HData, cccid: cid, datao: 0, last: true, success: false, data: Buffer.alloc(512, 1) }, NO_DIGESTS),
      ...encodePdu({ type: PduType.CapsuleResp, cqe: encodeCqe({ dw0: 0, dw1: 0, cid, status: 0, sqhd: 0, sqid: 1 }) }, NO_DIGESTS),
      ...encodePdu({ type: PduType.C2HData, cccid: cid, datao: 0, last: true, success: false, data: Buffer.alloc(512, 9) }, NO_DIGESTS),
    ]);
    conn.sendRaw(chunk);
    const res = await p; // resolved before the stray PDU was read
    expect(res.data!.every((b) => b === 1)).toBe(true);
    const term = await conn.next<TermReqPdu>((x) => x.type === PduType.H2CTermReq);
    expect(term.fes).toBe(1);
    expect(term.fei).toBe(8); // CCCID: no such command
    expect(res.data!.every((b) => b === 1)).toBe(true); // the stray bytes went nowhere
  });

  it('never issues CID 0xFFFF', async () => {
    const { qp, conn } = await open({ depth: 2 });
    // Slot 1's generation is one step before the one that would make CID 0xFFFF (2-deep queue: 1 slot bit).
    (qp as unknown as { gens: Uint16Array }).gens[1] = 0x7ffe;
    const seen: number[] = [];
    for (let round = 0; round < 3; round++) {
      const a = qp.submit(cmds.keepAlive());
      const b = qp.submit(cmds.keepAlive());
      const cs = await conn.commands(2);
      for (const c of cs) {
        seen.push(cmdInfo(c).cid);
        conn.respond(cmdInfo(c).cid);
      }
      await Promise.all([a, b]);
    }
    expect(seen).not.toContain(0xffff);
    expect(seen.filter((cid) => (cid & 1) === 1)).toEqual([0x0001, 0x0003, 0x0005]); // 0x7fff skipped, wrapped to 0
  });

  it('publishes nvmeof:command:end once for every command that went on the wire, with its outcome', async () => {
    const diagnostics = await import('node:diagnostics_channel');
    const ends: { cid: number; outcome: string; status?: number; error?: Error; name: string }[] = [];
    const sub = (m: unknown) => ends.push(m as (typeof ends)[number]);
    diagnostics.subscribe('nvmeof:command:end', sub);
    try {
      const { qp, conn } = await open({ depth: 8 });
      const ok = qp.submit(cmds.keepAlive());
      const bad = qp.submit(readCmd(1)).catch(() => undefined);
      const slow = qp.submit(cmds.keepAlive(), { timeout: 100 }).catch(() => undefined);
      const ac = new AbortController();
      const aborted = qp.submit(cmds.keepAlive(), { signal: ac.signal }).catch(() => undefined);
      const torn = qp.submit(cmds.keepAlive()).catch(() => undefined);
      const cs = await conn.commands(5);
      const cid = (i: number) => cmdInfo(cs[i]!).cid;
      conn.respond(cid(0));
      conn.respond(cid(1), makeStatus(0, 0x80));
      await ok;
      await bad;
      await slow;
      ac.abort();
      await aborted;
      qp.destroy();
      await torn;
      const byCid = new Map(ends.map((e) => [e.cid, e]));
      expect(ends).toHaveLength(5);
      expect(byCid.get(cid(0))).toMatchObject({ outcome: 'success', status: 0, name: 'Keep Alive' });
      expect(byCid.get(cid(1))).toMatchObject({ outcome: 'status', name: 'Read' });
      expect(byCid.get(cid(1))!.error).toBeInstanceOf(NvmeStatusError);
      expect(byCid.get(cid(2))!.outcome).toBe('timeout');
      expect(byCid.get(cid(3))!.outcome).toBe('aborted');
      expect(byCid.get(cid(4))).toMatchObject({ outcome: 'error', error: { code: ErrorCode.CONNECTION_CLOSED } });
    } finally {
      diagnostics.unsubscribe('nvmeof:command:end', sub);
    }
  });

  it('reports a C2HTermReq as TERMINATED', async () => {
    const { qp, conn } = await open();
    const p = qp.submit(cmds.keepAlive());
    await conn.commands(1);
    conn.send({ type: PduType.C2HTermReq, fes: 2, fei: 0, data: Buffer.alloc(0) });
    await expect(p).rejects.toMatchObject({ code: ErrorCode.TERMINATED, fes: 2 });
  });

  it('fails a command with a data digest error without killing the queue', async () => {
    const { qp, conn } = await open({ dataDigest: true }, { ddgst: true });
    const p = qp.submit(readCmd(1));
    const [c] = await conn.commands(1);
    const { cid } = cmdInfo(c!);
    // Build a C2HData with a wrong data digest by corrupting the encoded digest bytes.
    const { encodePdu } = await import('../src/protocol/pdu.js');
    const bufs = encodePdu({ type: PduType.C2HData, cccid: cid, datao: 0, last: true, success: false, data: Buffer.alloc(512, 1) }, { hdgst: false, ddgst: true });
    const bad = Buffer.concat(bufs);
    bad[bad.length - 1]! ^= 0xff;
    conn.sendRaw(bad);
    conn.respond(cid);
    await expect(p).rejects.toMatchObject({ code: ErrorCode.DIGEST });
    const q = qp.submit(cmds.keepAlive());
    const [k] = await conn.commands(1);
    conn.respond(cmdInfo(k!).cid);
    await q;
    expect(qp.state).toBe('ready');
  });

  it('times out a command, keeps its CID reserved, and discards the late completion', async () => {
    const { qp, conn } = await open({ depth: 1 });
    const p = qp.submit(cmds.keepAlive(), { timeout: 150 });
    const [c] = await conn.commands(1);
    await expect(p).rejects.toMatchObject({ code: ErrorCode.TIMEOUT });
    const q = qp.submit(cmds.keepAlive());
    // Only a completion frees a slot, and none was sent: the new command waits.
    expect(qp.queued).toBe(1); // slot still reserved by the timed-out command
    conn.respond(cmdInfo(c!).cid); // late completion: discarded, frees the slot
    const [d] = await conn.commands(1);
    expect(cmdInfo(d!).cid).not.toBe(cmdInfo(c!).cid); // generation bits changed
    conn.respond(cmdInfo(d!).cid);
    await q;
    expect(qp.state).toBe('ready');
  });

  it('close() does not wait for a timed-out command the controller never answers', async () => {
    const { qp, conn } = await open({ depth: 2 });
    const lost = qp.submit(cmds.keepAlive(), { timeout: 100 }).catch((e: unknown) => e);
    const answered = qp.submit(cmds.keepAlive());
    const [, second] = await conn.commands(2);
    expect(await lost).toMatchObject({ code: ErrorCode.TIMEOUT });
    const closing = qp.close();
    conn.respond(cmdInfo(second!).cid); // the live command still drains
    await answered;
    await closing; // resolves although the first command's slot is still reserved
    expect(qp.state).toBe('closed');
  });

  it('aborts a queued command through AbortSignal without sending it', async () => {
    const { qp, conn } = await open({ depth: 1 });
    const first = qp.submit(cmds.keepAlive());
    const ac = new AbortController();
    const second = qp.submit(cmds.keepAlive(), { signal: ac.signal });
    ac.abort(new Error('changed my mind'));
    await expect(second).rejects.toMatchObject({ code: ErrorCode.ABORTED });
    const [c] = await conn.commands(1);
    conn.respond(cmdInfo(c!).cid);
    await first;
    // The aborted command would have gone out when the slot freed, before a command submitted now: the next capsule
    // on the wire is this one.
    const third = qp.submit(cmds.getFeatures({ fid: 0x07 }));
    const [next] = await conn.commands(1);
    expect(cmdInfo(next!).opcode).toBe(0x0a);
    conn.respond(cmdInfo(next!).cid);
    await third;
    expect(conn.received.filter((p) => p.type === PduType.CapsuleCmd)).toHaveLength(0);
  });

  it('rejects an already-aborted signal before sending', async () => {
    const { qp } = await open();
    await expect(qp.submit(cmds.keepAlive(), { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: ErrorCode.ABORTED });
    expect(qp.outstanding).toBe(0);
  });

  it('fails pending commands with CONNECTION_CLOSED when the peer goes away', async () => {
    const { qp, conn } = await open();
    const p = qp.submit(readCmd(1));
    await conn.commands(1);
    conn.socket.destroy();
    await expect(p).rejects.toMatchObject({ code: ErrorCode.CONNECTION_CLOSED });
    await qp.closed;
    expect(qp.state).toBe('closed');
  });

  it('close() drains in-flight commands, then closes; destroy() fails the rest; both idempotent', async () => {
    const { qp, conn } = await open();
    const p = qp.submit(cmds.keepAlive());
    const [c] = await conn.commands(1);
    const closing = qp.close();
    await expect(qp.submit(cmds.keepAlive())).rejects.toMatchObject({ code: ErrorCode.INVALID_STATE });
    conn.respond(cmdInfo(c!).cid);
    await p;
    await closing;
    await qp.close();
    qp.destroy();
    expect(qp.state).toBe('closed');
  });

  it('validates arguments before sending', async () => {
    const { qp } = await open();
    await expect(qp.submit({ sqe: Buffer.alloc(10), name: 'bad' })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(qp.submit(readCmd(8), { readInto: Buffer.alloc(10) })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
  });

  it('submitWith: the same command path with callbacks, exactly one called; refusals at once, before anything is sent', async () => {
    const { qp, conn } = await open({ commandTimeout: 100 });
    const calls: string[] = [];
    // Refused before anything is sent: reject is called at once.
    qp.submitWith({ sqe: Buffer.alloc(10), name: 'bad' }, undefined, () => calls.push('resolved'), (e) => calls.push(`rejected ${(e as NvmeofError).code}`));
    expect(calls).toEqual([`rejected ${ErrorCode.INVALID_ARGUMENT}`]);
    // Answered: resolve with the completion.
    const ok = new Promise<Completion>((resolve, reject) => qp.submitWith(cmds.keepAlive(), undefined, resolve, reject));
    const [c] = await conn.commands(1);
    conn.respond(cmdInfo(c!).cid);
    expect((await ok).cqe.cid).toBe(cmdInfo(c!).cid);
    // Not answered: reject with TIMEOUT (the queue's default timeout applies as for submit()).
    const lost = new Promise<Completion>((resolve, reject) => qp.submitWith(cmds.keepAlive(), undefined, resolve, reject));
    await conn.commands(1);
    await expect(lost).rejects.toMatchObject({ code: ErrorCode.TIMEOUT });
  });

  it('keeps many commands in flight across split socket writes', async () => {
    const { qp, conn } = await open({ depth: 32 });
    const n = 200;
    const ps = Array.from({ length: n }, () => qp.submit(readCmd(1)));
    let done = 0;
    while (done < n) {
      const [c] = await conn.commands(1);
      const { cid } = cmdInfo(c!);
      const bufs = (await import('../src/protocol/pdu.js')).encodePdu(
        { type: PduType.C2HData, cccid: cid, datao: 0, last: true, success: true, data: Buffer.alloc(512, cid & 0xff) },
        { hdgst: false, ddgst: false },
      );
      // Deliver one byte at a time for some commands, to exercise reassembly.
      const all = Buffer.concat(bufs);
      if (done % 17 === 0) for (const byte of all) conn.sendRaw(Buffer.from([byte]));
      else conn.sendRaw(all);
      done++;
    }
    const res = await Promise.all(ps);
    expect(res).toHaveLength(n);
    for (const r of res) expect(r.received).toBe(512);
  });
});

// Make TS happy about unused type-only imports in some configurations.
export type _Unused = C2HDataPdu | CapsuleCmdPdu;
