/**
 * A loopback TCP proxy between the host library and a target that frames the controller-to-host byte stream into
 * NVMe/TCP PDUs (common header: PDU-Type at byte 0, FLAGS at byte 1, PLEN little-endian at bytes 4..7) and records
 * every C2HData PDU's CCCID (bytes 8..9), DATAO (12..15), DATAL (16..19) and flags (LAST_PDU 0x04, SUCCESS 0x08).
 * It shows what the host received on the wire, independently of the host's own code.
 */
import net from 'node:net';

/** PDU types (NVMe/TCP transport spec). */
export const PDU_C2H_DATA = 0x07;
export const PDU_CAPSULE_RESP = 0x05;

/** One C2HData PDU as seen on the wire. */
export interface C2HRecord {
  /** Index of the proxied connection (0 = first accepted, usually the admin queue). */
  conn: number;
  cccid: number;
  datao: number;
  datal: number;
  last: boolean;
  success: boolean;
}

export interface PduProxy {
  /** Port the proxy listens on (127.0.0.1). */
  port: number;
  /** C2HData PDUs seen so far, in order. */
  c2h: C2HRecord[];
  /** PDUs seen from the controller, counted by PDU type. */
  countsByType: Map<number, number>;
  /** Forget what was recorded. */
  reset(): void;
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 forwarding to `targetPort` on 127.0.0.1. */
export async function startPduProxy(targetPort: number): Promise<PduProxy> {
  const c2h: C2HRecord[] = [];
  const countsByType = new Map<number, number>();
  const sockets = new Set<net.Socket>();
  let nextConn = 0;

  const server = net.createServer((client) => {
    const conn = nextConn++;
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream);
    // Framing state: header bytes collected so far, and payload bytes of the current PDU still to skip.
    let head = Buffer.alloc(0);
    let skip = 0;
    const onHeader = (h: Buffer): void => {
      const type = h[0] as number;
      countsByType.set(type, (countsByType.get(type) ?? 0) + 1);
      if (type === PDU_C2H_DATA && h.length >= 24) {
        const flags = h[1] as number;
        c2h.push({
          conn,
          cccid: h.readUInt16LE(8),
          datao: h.readUInt32LE(12),
          datal: h.readUInt32LE(16),
          last: (flags & 0x04) !== 0,
          success: (flags & 0x08) !== 0,
        });
      }
    };
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk);
      let off = 0;
      while (off < chunk.length) {
        if (skip > 0) {
          const n = Math.min(skip, chunk.length - off);
          skip -= n;
          off += n;
          continue;
        }
        const want = head.length < 8 ? 8 : Math.min(head.readUInt32LE(4), 24);
        const n = Math.min(want - head.length, chunk.length - off);
        head = Buffer.concat([head, chunk.subarray(off, off + n)]);
        off += n;
        if (head.length < 8) continue;
        const plen = head.readUInt32LE(4);
        if (plen < 8) {
          closeBoth();
          return;
        }
        if (head.length < Math.min(plen, 24)) continue;
        onHeader(head);
        skip = plen - head.length;
        head = Buffer.alloc(0);
      }
    });
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    c2h,
    countsByType,
    reset: () => {
      c2h.length = 0;
      countsByType.clear();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
