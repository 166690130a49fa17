/**
 * PduStream's outbox: small PDUs queued in one tick go out in one corked batch at the end of the tick; a burst that
 * reaches 64 KiB is written at once, in order, so the peer can start on it while the rest is queued. A PDU sent with
 * sendPduNow goes out at once when nothing is queued before it, else it joins the batch behind what is.
 */
import { describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { PduStream, type PduSocket } from '../src/transport/pdu-stream.js';
import { PduType } from '../src/protocol/pdu.js';

function fakeSocket(): PduSocket & { batches: Buffer[][]; current: Buffer[] | null } {
  const s = {
    batches: [] as Buffer[][],
    current: null as Buffer[] | null,
    destroyed: false,
    write(chunk: Uint8Array): boolean {
      (s.current ?? s.batches[s.batches.push([]) - 1]!).push(Buffer.from(chunk));
      return true;
    },
    cork(): void {
      s.current = [];
    },
    uncork(): void {
      if (s.current) s.batches.push(s.current);
      s.current = null;
    },
    end(): void {},
  };
  return s;
}

function stream(socket: PduSocket): PduStream {
  return new PduStream({ socket, reader: { role: 'host' }, onPdu: () => {}, onFatal: () => {} });
}

describe('PduStream outbox', () => {
  it('batches small PDUs until the end of the tick', async () => {
    const sock = fakeSocket();
    const s = stream(sock);
    for (let i = 0; i < 32; i++) s.send([Buffer.alloc(72, i)]);
    expect(sock.batches).toHaveLength(0);
    await new Promise((r) => process.nextTick(r));
    expect(sock.batches).toHaveLength(1);
    expect(sock.batches[0]!.map((b) => b[0])).toEqual(Array.from({ length: 32 }, (_, i) => i));
  });

  it('writes at once when 64 KiB are queued, keeping the order', async () => {
    const sock = fakeSocket();
    const s = stream(sock);
    const pdu = (i: number) => [Buffer.alloc(72, i), Buffer.alloc(4096, i)];
    for (let i = 0; i < 15; i++) s.send(pdu(i));
    expect(sock.batches).toHaveLength(0); // 15 x 4168 bytes: below 64 KiB
    s.send(pdu(15));
    expect(sock.batches).toHaveLength(1); // 16 x 4168 = 66,688 bytes: written now, not at the end of the tick
    for (let i = 16; i < 20; i++) s.send(pdu(i));
    expect(sock.batches).toHaveLength(1);
    await new Promise((r) => process.nextTick(r));
    expect(sock.batches.map((b) => b.length)).toEqual([32, 8]);
    expect(sock.batches.flat().filter((_, k) => k % 2 === 0).map((b) => b[0])).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('sendPduNow writes at once on an idle stream, else keeps the order behind queued PDUs', async () => {
    const sock = fakeSocket();
    const s = stream(sock);
    const sqe = (i: number) => Buffer.alloc(64, i);
    s.sendPduNow({ type: PduType.CapsuleCmd, sqe: sqe(1), data: null });
    // Written before the end of the tick, as one 72-byte CapsuleCmd: CH 04 00 48 00 48000000, then the SQE.
    expect(sock.batches).toHaveLength(1);
    expect(sock.batches[0]![0]!.subarray(0, 8)).toEqual(Buffer.from([0x04, 0x00, 0x48, 0x00, 0x48, 0x00, 0x00, 0x00]));
    expect(sock.batches[0]![0]!.subarray(8)).toEqual(sqe(1));
    // With in-capsule data: header and data in one corked write.
    s.sendPduNow({ type: PduType.CapsuleCmd, sqe: sqe(2), data: Buffer.alloc(512, 2) });
    expect(sock.batches).toHaveLength(2);
    expect(sock.batches[1]!.map((b) => b.length)).toEqual([72, 512]);
    // Something queued: the next one waits behind it, and both go in the end-of-tick batch, in order.
    s.send([Buffer.alloc(24, 3)]);
    s.sendPduNow({ type: PduType.CapsuleCmd, sqe: sqe(4), data: null });
    expect(sock.batches).toHaveLength(2);
    await new Promise((r) => process.nextTick(r));
    expect(sock.batches).toHaveLength(3);
    expect(sock.batches[2]!.map((b) => b.length)).toEqual([24, 72]);
    expect(sock.batches[2]![1]!.subarray(8)).toEqual(sqe(4));
    // Once the stream is ending, nothing is written at once (the final flush stays the last write before end()).
    s.endAfterWrites();
    s.sendPduNow({ type: PduType.CapsuleCmd, sqe: sqe(5), data: null });
    expect(sock.batches).toHaveLength(3);
  });

  it('reuses its outbox from flush to flush without mixing batches, and a write shaper keeps the batch it was given', async () => {
    const sock = fakeSocket();
    const s = stream(sock);
    const tick = () => new Promise((r) => process.nextTick(r));
    // Batches of 3, 100 (more than the outbox keeps), then 2 small PDUs: each written whole, in order, nothing twice.
    let next = 0;
    for (const n of [3, 100, 2]) {
      for (let i = 0; i < n; i++) s.send([Buffer.alloc(24, next++ & 0xff)]);
      await tick();
    }
    expect(sock.batches.map((b) => b.length)).toEqual([3, 100, 2]);
    expect(sock.batches.flat().map((b) => b[0])).toEqual(Array.from({ length: 105 }, (_, i) => i & 0xff));

    const shaped: Buffer[][] = [];
    const t = new PduStream({ socket: fakeSocket(), reader: { role: 'host' }, onPdu: () => {}, onFatal: () => {}, shapeWrite: (b) => (shaped.push(b), true) });
    t.send([Buffer.alloc(24, 1)], [Buffer.alloc(24, 2)]);
    await tick();
    t.send([Buffer.alloc(24, 3)]);
    await tick();
    // The first batch is still what it was when handed over, after the stream queued and flushed more.
    expect(shaped.map((b) => b.map((x) => x[0]))).toEqual([[1, 2], [3]]);

    // A PDU queued from inside a write (re-entrant) is neither lost nor written twice: it leaves in the next flush.
    const sock2 = fakeSocket();
    const u = stream(sock2);
    const write = sock2.write.bind(sock2);
    let reentered = false;
    sock2.write = (chunk) => {
      if (!reentered) {
        reentered = true;
        u.send([Buffer.alloc(24, 9)]);
      }
      return write(chunk);
    };
    u.send([Buffer.alloc(24, 7)], [Buffer.alloc(24, 8)]);
    await tick();
    await tick();
    expect(sock2.batches.map((b) => b.map((x) => x[0]))).toEqual([[7, 8], [9]]);
  });
});
