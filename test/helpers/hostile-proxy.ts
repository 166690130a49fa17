/**
 * A hostile controller: a loopback TCP proxy in front of a well-behaved target that frames the controller-to-host
 * byte stream into NVMe/TCP PDUs (its own framing from the spec's common header, not the library's reader) and,
 * driven by a seeded PRNG, lies in ways a correct host must catch: short data with a successful completion, data
 * PDUs dropped, duplicated, delayed past the command's timeout or flagged SUCCESS early, completions dropped,
 * bytes flipped (payload bytes only when data digests protect them), and connections cut mid-PDU. Digests are
 * recomputed after a deliberate lie (a controller that lies consistently), never after a flip.
 *
 * Used by test/hostile-proxy.test.ts (a fixed seed, in the unit suite) and integration/hostile/run.ts (longer runs).
 */
import * as net from 'node:net';
import { refCrc32c } from './crc32c-ref.js';

const CH = 8;
const TYPE_ICRESP = 0x01;
const TYPE_CAPSULE_RESP = 0x05;
const TYPE_C2H_DATA = 0x07;
const FLAG_HDGSTF = 0x01;
const FLAG_DDGSTF = 0x02;
const FLAG_LAST = 0x04;
const FLAG_SUCCESS = 0x08;

/** Mulberry32: a small seeded PRNG, so a failing session can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Mutation = 'truncate' | 'drop-data' | 'drop-resp' | 'duplicate' | 'delay' | 'early-success' | 'flip' | 'cut';

export interface HostileProxyOptions {
  targetPort: number;
  /** Seed of the PRNG (each accepted connection derives its own from it and its index). */
  seed: number;
  /** Probability that a PDU after ICResp is mutated. */
  rate: number;
  /** Milliseconds a delayed PDU is held (longer than the host's command timeout). */
  delayMs: number;
}

export interface HostileProxy {
  port: number;
  /** Mutations applied, by kind. */
  applied: Map<Mutation, number>;
  close(): Promise<void>;
}

const MUTATIONS: Mutation[] = ['truncate', 'drop-data', 'drop-resp', 'duplicate', 'delay', 'early-success', 'flip', 'cut'];

export async function startHostileProxy(opts: HostileProxyOptions): Promise<HostileProxy> {
  const applied = new Map<Mutation, number>();
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let index = 0;
  const server = net.createServer((host) => {
    const rnd = prng((opts.seed * 7919 + index++) >>> 0);
    const ctrl = net.connect({ host: '127.0.0.1', port: opts.targetPort });
    sockets.add(host);
    sockets.add(ctrl);
    const kill = () => {
      host.destroy();
      ctrl.destroy();
    };
    host.on('close', () => sockets.delete(host));
    ctrl.on('close', () => sockets.delete(ctrl));
    host.on('error', kill);
    ctrl.on('error', kill);
    host.on('close', kill);
    ctrl.on('close', kill);
    host.pipe(ctrl);

    let pending: Buffer = Buffer.alloc(0);
    let hd = false;
    let dd = false;
    let ready = false;
    const note = (m: Mutation) => applied.set(m, (applied.get(m) ?? 0) + 1);
    const send = (b: Buffer) => {
      if (!host.destroyed) host.write(b);
    };
    ctrl.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= CH) {
        const plen = pending.readUInt32LE(4);
        if (plen < CH || plen > 64 * 1024 * 1024) {
          kill();
          return;
        }
        if (pending.length < plen) break;
        const pdu = Buffer.from(pending.subarray(0, plen));
        pending = pending.subarray(plen);
        const type = pdu[0]!;
        if (type === TYPE_ICRESP) {
          // Digests as the target granted them (byte 11 of the ICResp).
          hd = (pdu[11]! & 1) !== 0;
          dd = (pdu[11]! & 2) !== 0;
          ready = true;
          send(pdu);
          continue;
        }
        if (!ready || rnd() >= opts.rate) {
          send(pdu);
          continue;
        }
        const m = MUTATIONS[Math.floor(rnd() * MUTATIONS.length)]!;
        const out = mutate(pdu, m, rnd, hd, dd);
        if (out === 'unchanged') {
          send(pdu);
          continue;
        }
        note(m);
        if (out === 'cut') {
          send(pdu.subarray(0, 1 + Math.floor(rnd() * (pdu.length - 1))));
          kill();
          return;
        }
        if (out === 'delay') {
          const t = setTimeout(() => {
            timers.delete(t);
            send(pdu);
          }, opts.delayMs);
          timers.add(t);
          continue;
        }
        for (const b of out) send(b);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    applied,
    async close() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The PDUs to send instead of `pdu`, or a directive. */
function mutate(pdu: Buffer, m: Mutation, rnd: () => number, hd: boolean, dd: boolean): Buffer[] | 'unchanged' | 'cut' | 'delay' {
  const type = pdu[0]!;
  const hlen = pdu[2]!;
  const pdo = pdu[3]!;
  const isData = type === TYPE_C2H_DATA;
  switch (m) {
    case 'truncate': {
      // Fewer bytes than DATAL said, consistently re-framed: a controller that sends a short transfer.
      if (!isData) return 'unchanged';
      const datal = pdu.readUInt32LE(16);
      if (datal < 2) return 'unchanged';
      const keep = 1 + Math.floor(rnd() * (datal - 1));
      const data = pdu.subarray(pdo, pdo + keep);
      return [reframe(pdu, data, hd, dd)];
    }
    case 'drop-data':
      return isData ? [] : 'unchanged';
    case 'drop-resp':
      return type === TYPE_CAPSULE_RESP ? [] : 'unchanged';
    case 'duplicate':
      return [pdu, pdu];
    case 'delay':
      return 'delay';
    case 'early-success': {
      // SUCCESS (and LAST_PDU) on a data PDU that is not the last: the completion comes before all the data.
      if (!isData || (pdu[1]! & FLAG_LAST) !== 0) return 'unchanged';
      const data = pdu.subarray(pdo, pdo + pdu.readUInt32LE(16));
      const out = reframe(pdu, data, hd, dd);
      out[1] = out[1]! | FLAG_LAST | FLAG_SUCCESS;
      if (hd) out.writeUInt32LE(refCrc32c(out.subarray(0, hlen)), hlen);
      return [out];
    }
    case 'flip': {
      // A flipped bit: in the header (anywhere) or, only when a data digest guards it, in the payload.
      const headerEnd = hd ? hlen + 4 : hlen;
      const limit = isData && dd ? pdu.length : headerEnd;
      const at = Math.floor(rnd() * limit);
      const out = Buffer.from(pdu);
      out[at] = out[at]! ^ (1 << Math.floor(rnd() * 8));
      return [out];
    }
    case 'cut':
      return 'cut';
  }
}

/** A C2HData PDU like `pdu` carrying `data`, with PLEN, DATAL and digests recomputed. */
function reframe(pdu: Buffer, data: Buffer, hd: boolean, dd: boolean): Buffer {
  const hlen = pdu[2]!;
  const pdo = pdu[3]!;
  const plen = pdo + data.length + (dd ? 4 : 0);
  const out = Buffer.alloc(plen);
  pdu.copy(out, 0, 0, pdo);
  out.writeUInt32LE(plen, 4);
  out.writeUInt32LE(data.length, 16);
  out[1] = (out[1]! & ~(FLAG_HDGSTF | FLAG_DDGSTF)) | (hd ? FLAG_HDGSTF : 0) | (dd ? FLAG_DDGSTF : 0);
  if (hd) out.writeUInt32LE(refCrc32c(out.subarray(0, hlen)), hlen);
  data.copy(out, pdo);
  if (dd) out.writeUInt32LE(refCrc32c(data), pdo + data.length);
  return out;
}
