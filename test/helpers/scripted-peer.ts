/**
 * A scripted controller-side NVMe/TCP peer for transport tests: it answers ICReq and hands every other PDU to the
 * test, which decides what to send back (or to misbehave). Built on the protocol layer only.
 */
import * as net from 'node:net';
import { once } from 'node:events';
import { encodePdu, PduType, type Pdu, type CapsuleCmdPdu } from '../../src/protocol/pdu.js';
import { PduReader } from '../../src/protocol/reader.js';
import { encodeCqe } from '../../src/protocol/cqe.js';
import { decodeSqe } from '../../src/protocol/sqe.js';

export interface PeerOptions {
  hdgst?: boolean;
  ddgst?: boolean;
  cpda?: number;
  maxh2cdata?: number;
  /** Do not answer ICReq (for connect-timeout tests). */
  silent?: boolean;
}

export interface PeerConn {
  socket: net.Socket;
  /** Every PDU received after ICReq, in order. */
  received: Pdu[];
  /** Send a PDU (digests as negotiated; hpda alignment 0). */
  send(pdu: Pdu): void;
  /** Raw bytes. */
  sendRaw(b: Buffer): void;
  /** Complete a command with a CQE. */
  respond(cid: number, status?: number, dw0?: number, dw1?: number): void;
  /** Wait for the next PDU matching pred. */
  next<T extends Pdu = Pdu>(pred?: (p: Pdu) => boolean): Promise<T>;
  /** Wait for n command capsules. */
  commands(n: number): Promise<CapsuleCmdPdu[]>;
  hdgst: boolean;
  ddgst: boolean;
}

export class ScriptedPeer {
  readonly server: net.Server;
  port = 0;
  readonly conns: PeerConn[] = [];
  private waiters: ((c: PeerConn) => void)[] = [];

  constructor(private readonly opts: PeerOptions = {}) {
    this.server = net.createServer((s) => this.onConn(s));
  }

  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** The next accepted connection (after its ICReq was answered). */
  connection(): Promise<PeerConn> {
    const ready = this.conns.find((c) => !(c as { claimed?: boolean }).claimed);
    if (ready) {
      (ready as { claimed?: boolean }).claimed = true;
      return Promise.resolve(ready);
    }
    return new Promise((r) => this.waiters.push(r));
  }

  private onConn(socket: net.Socket): void {
    const reader = new PduReader({ role: 'controller', maxDataLength: 16 * 1024 * 1024, maxInCapsuleData: 1024 * 1024 });
    const pending: { pred: (p: Pdu) => boolean; resolve: (p: Pdu) => void }[] = [];
    const received: Pdu[] = [];
    const conn: PeerConn = {
      socket,
      received,
      hdgst: false,
      ddgst: false,
      send: (pdu) => {
        for (const b of encodePdu(pdu, { hdgst: conn.hdgst, ddgst: conn.ddgst })) socket.write(b);
      },
      sendRaw: (b) => socket.write(b),
      respond: (cid, status = 0, dw0 = 0, dw1 = 0) => {
        conn.send({ type: PduType.CapsuleResp, cqe: encodeCqe({ dw0, dw1, sqhd: 0, sqid: 0, cid, status }) });
      },
      next: <T extends Pdu>(pred: (p: Pdu) => boolean = () => true) =>
        new Promise<T>((resolve) => {
          for (let i = 0; i < received.length; i++) {
            if (pred(received[i]!)) {
              const p = received[i]!;
              received.splice(i, 1);
              resolve(p as T);
              return;
            }
          }
          pending.push({ pred, resolve: resolve as (p: Pdu) => void });
        }),
      commands: async (n) => {
        const out: CapsuleCmdPdu[] = [];
        for (let i = 0; i < n; i++) out.push(await conn.next<CapsuleCmdPdu>((p) => p.type === PduType.CapsuleCmd));
        return out;
      },
    };
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      let pdus: Pdu[];
      try {
        pdus = reader.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const pdu of pdus) {
        if (pdu.type === PduType.ICReq) {
          if (this.opts.silent) continue;
          conn.hdgst = pdu.hdgst && !!this.opts.hdgst;
          conn.ddgst = pdu.ddgst && !!this.opts.ddgst;
          const resp = encodePdu(
            { type: PduType.ICResp, pfv: 0, cpda: this.opts.cpda ?? 0, hdgst: conn.hdgst, ddgst: conn.ddgst, maxh2cdata: this.opts.maxh2cdata ?? 131072 },
            { hdgst: false, ddgst: false },
          );
          for (const b of resp) socket.write(b);
          reader.setDigests(conn.hdgst, conn.ddgst);
          this.conns.push(conn);
          const w = this.waiters.shift();
          if (w) {
            (conn as { claimed?: boolean }).claimed = true;
            w(conn);
          }
          continue;
        }
        const idx = pending.findIndex((p) => p.pred(pdu));
        if (idx >= 0) pending.splice(idx, 1)[0]!.resolve(pdu);
        else received.push(pdu);
      }
    });
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** CID and opcode of a received command capsule. */
export function cmdInfo(p: CapsuleCmdPdu): { cid: number; opcode: number; cdw10: number; nsid: number } {
  const d = decodeSqe(p.sqe);
  return { cid: d.cid, opcode: d.opcode, cdw10: d.cdw10, nsid: d.nsid };
}
