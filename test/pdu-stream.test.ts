/**
 * PduStream's outbox: small PDUs queued in one tick go out in one corked batch at the end of the tick; a burst that
 * reaches 64 KiB is written at once, in order, so the peer can start on it while the rest is queued.
 */
import { describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { PduStream, type PduSocket } from '../src/transport/pdu-stream.js';

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
});
