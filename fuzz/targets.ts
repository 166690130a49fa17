/**
 * Fuzz targets: each takes arbitrary bytes and feeds them to one parser. A target throws only for a finding: an
 * error that is not a typed NvmeofError, or a broken property (a stream parsed differently when cut differently,
 * an allocation out of proportion to the input). Typed errors are the parsers' correct answer to bad bytes.
 */
import { Buffer } from 'node:buffer';
import { NvmeofError } from '../src/errors.js';
import { PduReader, type PduReaderOptions } from '../src/protocol/reader.js';
import type { Pdu } from '../src/protocol/pdu.js';
import {
  parseIdentifyController,
  parseIdentifyNamespace,
  parseNamespaceList,
  parseNsIdDescriptors,
} from '../src/protocol/identify.js';
import {
  parseAnaLog,
  parseChangedNsList,
  parseDiscoveryLog,
  parseDiscoveryLogEntry,
  parseDiscoveryLogHeader,
  parseErrorLog,
  parseReservationNotificationLog,
  parseSmartLog,
} from '../src/protocol/logpages.js';
import { parseReservationStatus } from '../src/protocol/reservations.js';
import {
  decodeReservationAcquire,
  decodeReservationRegister,
  decodeReservationRelease,
  decodeReservationReport,
} from '../src/protocol/reservations.js';
import { decodeSqe } from '../src/protocol/sqe.js';
import { readSgl } from '../src/protocol/sgl.js';
import { decodeCqe } from '../src/protocol/cqe.js';
import { decodeStatus, statusError, decodeConnectInvalidParameter } from '../src/protocol/status.js';
import { parseConnectData, parseConnectResult } from '../src/protocol/commands.js';
import { decodeAsyncEvent } from '../src/protocol/async-events.js';
import { decodeCap, decodeCc, decodeCsts, decodeVs } from '../src/protocol/properties.js';
import { mdtsBytes } from '../src/protocol/identify.js';
import { toDiscoveryEntry, discoveryEntryKey } from '../src/host/discovery.js';
import { Namespace } from '../src/host/namespace.js';
import { parseAuthMessage, parseAuthSqe, parseDhchapKey } from '../src/protocol/auth.js';
import { RequestParser, decodeOptionHeader, decodeInfoRequest, decodeMetaContextRequest, decodeExportName, decodeRequestHeader } from '../src/nbd/protocol.js';
import { parseConfig, parseControllerSpec, parseDiscoverySpec, parseMultipathSpec } from '../src/serve/validate.js';
import { parseListen } from '../src/serve/http.js';
import { tlsTarget } from './tls.js';
import { chunkSizes, FuzzFinding, touch, typed } from './common.js';
import { httpTarget } from './http.js';

export { FuzzFinding };

export interface FuzzTarget {
  name: string;
  description: string;
  run(data: Buffer): void;
}

/**
 * Largest single allocation a parser may make for an input of `n` bytes: what arrived, a 4 KiB structure or a
 * few fixed buffers, never a length a header claims.
 */
export function allocationLimit(n: number): number {
  return 2 * n + 64 * 1024;
}

// ---------------------------------------------------------------------------------------------------------------
// PDU reader

function describePdu(p: Pdu): string {
  return JSON.stringify(p, (_k, x: unknown) => {
    if (typeof x === 'bigint') return x.toString();
    if (x !== null && typeof x === 'object' && (x as { type?: unknown }).type === 'Buffer') return Buffer.from((x as { data: number[] }).data).toString('hex');
    return x;
  });
}

function describeError(err: unknown): string {
  if (err instanceof NvmeofError) {
    const e = err as NvmeofError & { fes?: number; fei?: number };
    return `${e.name} ${e.code} fes=${String(e.fes)} fei=${String(e.fei)} ${e.message}`;
  }
  return `untyped ${String(err)}`;
}

interface ReaderRun {
  pdus: string[];
  error: string | null;
}

function readStream(opts: PduReaderOptions, stream: Buffer, sizes: number[] | null): ReaderRun {
  // placeData: a destination of exactly DATAL bytes, taken from one scratch buffer (so placement allocates nothing).
  const scratch = Buffer.alloc(64 * 1024);
  const o: PduReaderOptions = { ...opts };
  if (opts.placeData !== undefined) o.placeData = (h) => (h.datal <= scratch.length && (h.cccid & 1) === 0 ? scratch.subarray(0, h.datal) : null);
  const r = new PduReader(o);
  const pdus: string[] = [];
  const onPdu = (p: Pdu): void => {
    pdus.push(describePdu(p)); // placed data lands in the scratch buffer and is described before the next PDU reuses it
    // A host would switch digests after the ICResp; do the same so the rest of the stream is read with them.
    if (p.type === 0x01 || p.type === 0x00) r.setDigests(p.hdgst, p.ddgst);
  };
  let fed = 0;
  try {
    for (const [i, n] of (sizes ?? [stream.length]).entries()) {
      const chunk = stream.subarray(fed, fed + n);
      fed += n;
      r.feed(chunk, onPdu);
      if (r.buffered > fed) throw new FuzzFinding(`reader holds ${r.buffered} bytes after ${fed} bytes were fed (chunk ${i})`);
    }
  } catch (err) {
    if (err instanceof NvmeofError) return { pdus, error: describeError(err) };
    throw err;
  }
  return { pdus, error: null };
}

const readerTarget: FuzzTarget = {
  name: 'pdu-reader',
  description: 'PduReader: byte 0 picks role/digests/placement/IC sequencing, byte 1 the chunking; the stream is read whole and in chunks and must give the same PDUs and the same error',
  run(data) {
    if (data.length < 2) return;
    const f = data[0]!;
    const opts: PduReaderOptions = {
      role: (f & 1) !== 0 ? 'controller' : 'host',
      hdgst: (f & 2) !== 0,
      ddgst: (f & 4) !== 0,
      expectIc: (f & 16) !== 0,
      maxDataLength: (f & 32) !== 0 ? 64 * 1024 * 1024 : 4096,
    };
    if ((f & 8) !== 0) opts.placeData = () => null;
    const stream = data.subarray(2);
    const whole = readStream(opts, stream, null);
    const cut = readStream(opts, stream, chunkSizes(data[1]!, stream.length));
    // A placed PDU's data is described when delivered, so both runs compare the bytes that arrived.
    if (whole.error !== cut.error || whole.pdus.length !== cut.pdus.length || whole.pdus.some((p, i) => p !== cut.pdus[i])) {
      const i = whole.pdus.findIndex((p, j) => p !== cut.pdus[j]);
      throw new FuzzFinding(
        `chunking changed the result: whole ${whole.pdus.length} PDUs, error ${String(whole.error)}; ` +
          `chunked ${cut.pdus.length} PDUs, error ${String(cut.error)}; first difference at PDU ${i}`,
      );
    }
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Identify

/** Byte 0 picks the parser; bit 7 pads the rest to 4096 bytes (so mutations reach past the length check). */
function structInput(data: Buffer, size: number): Buffer {
  const body = data.subarray(1);
  if ((data[0]! & 0x80) === 0 || body.length >= size) return body;
  const b = Buffer.alloc(size);
  body.copy(b);
  return b;
}

const identifyTarget: FuzzTarget = {
  name: 'identify',
  description: 'Identify Controller, Identify Namespace, Namespace List and Namespace Identification Descriptor parsers (byte 0 picks)',
  run(data) {
    if (data.length < 1) return;
    const b = structInput(data, 4096);
    switch (data[0]! & 3) {
      case 0: {
        const c = typed(() => parseIdentifyController(b));
        touch(c);
        if (c !== undefined) {
          for (let mps = 0; mps < 16; mps++) {
            const n = mdtsBytes(c.mdts, mps);
            // A power of two (possibly far beyond any transfer: the host clamps it to its own limit).
            if (n !== null && !(Number.isFinite(n) && n >= 4096 && Math.log2(n) === 12 + mps + c.mdts)) throw new FuzzFinding(`mdtsBytes(${c.mdts}, ${mps}) = ${n}`);
          }
        }
        break;
      }
      case 1: {
        const ns = typed(() => parseIdentifyNamespace(b));
        if (ns !== undefined) {
          touch(ns);
          if (ns.blockSize !== ns.currentLbaFormat.dataSize) throw new FuzzFinding('blockSize is not the current LBA format size');
          // The host's view: a namespace handle refuses what it cannot do I/O with, and sizes its commands.
          const handle = typed(() => new Namespace({ maxTransferBytes: 128 * 1024, ioCommand: () => Promise.reject(new Error('not connected')) }, 1, ns, []));
          if (handle !== undefined) {
            if (!Number.isSafeInteger(handle.blockSize) || handle.blockSize < 512) throw new FuzzFinding(`namespace accepted a block size of ${handle.blockSize}`);
            if (!(handle.maxBlocksPerCommand >= 1)) throw new FuzzFinding(`maxBlocksPerCommand ${handle.maxBlocksPerCommand}`);
          }
        }
        break;
      }
      case 2: touch(typed(() => parseNamespaceList(b))); break;
      default: touch(typed(() => parseNsIdDescriptors(b))); break;
    }
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Log pages

const logPagesTarget: FuzzTarget = {
  name: 'logpages',
  description: 'Error Information, SMART, ANA (with and without RGO), Reservation Notification, Changed Namespace List and Reservation Report parsers (byte 0 picks)',
  run(data) {
    if (data.length < 1) return;
    const sel = data[0]! & 0x0f;
    const b = structInput(data, sel === 1 ? 512 : sel === 5 ? 64 : 4096);
    switch (sel % 8) {
      case 0: touch(typed(() => parseErrorLog(b, { includeEmpty: (data[0]! & 0x40) !== 0 }))); break;
      case 1: touch(typed(() => parseSmartLog(b))); break;
      case 2: case 3: touch(typed(() => parseAnaLog(b, { rgo: sel % 8 === 3 }))); break;
      case 4: touch(typed(() => parseChangedNsList(b))); break;
      case 5: touch(typed(() => parseReservationNotificationLog(b))); break;
      default: touch(typed(() => parseReservationStatus(b, sel % 8 === 7))); break;
    }
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Discovery log

const discoveryTarget: FuzzTarget = {
  name: 'discovery',
  description: 'Discovery log page parser (header, entries, partial pages) and the host view of its entries',
  run(data) {
    if (data.length < 1) return;
    const b = data.subarray(1);
    if ((data[0]! & 1) === 0) {
      const log = typed(() => parseDiscoveryLog(b));
      if (log === undefined) return;
      if (log.entries.length > b.length / 1024) throw new FuzzFinding(`${log.entries.length} entries from ${b.length} bytes`);
      for (const e of log.entries) {
        const entry = toDiscoveryEntry(e, { traddr: '127.0.0.1', trsvcid: '8009', subnqn: 'nqn.2014-08.org.nvmexpress.discovery', depth: 0 });
        touch({ ...entry, raw: undefined });
        discoveryEntryKey(entry);
      }
    } else {
      touch(typed(() => parseDiscoveryLogHeader(b)));
      touch(typed(() => parseDiscoveryLogEntry(b, data[0]! >> 1)));
    }
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Capsule contents: what the embedded target decodes from a host's command, what the host decodes from a completion

const capsuleTarget: FuzzTarget = {
  name: 'capsule',
  description: 'SQE and SGL decoding, Connect data, reservation command decoding (target side); CQE, status, Connect result, async event and property decoding (host side); byte 0 picks',
  run(data) {
    if (data.length < 1) return;
    const b = data.subarray(1);
    const dw = (i: number): number => (b.length >= i * 4 + 4 ? b.readUInt32LE(i * 4) : 0);
    switch (data[0]! % 8) {
      case 0: touch(typed(() => decodeSqe(b))); touch(typed(() => readSgl(b))); break;
      case 1: touch(typed(() => parseConnectData(b))); break;
      case 2: {
        const data2 = b.length > 4 ? b.subarray(4) : null;
        touch(typed(() => decodeReservationRegister(dw(0), data2)));
        touch(typed(() => decodeReservationAcquire(dw(0), data2)));
        touch(typed(() => decodeReservationRelease(dw(0), data2)));
        touch(typed(() => decodeReservationReport(dw(0), dw(1))));
        break;
      }
      case 3: {
        const cqe = typed(() => decodeCqe(b));
        touch(cqe);
        if (cqe !== undefined) {
          const admin = (data[0]! & 0x80) !== 0;
          const e = statusError(cqe, { opcode: b.length > 16 ? b[16]! : 0, admin, fctype: b.length > 17 && (data[0]! & 0x40) !== 0 ? b[17]! : undefined });
          if (!(e instanceof NvmeofError) || typeof e.message !== 'string') throw new FuzzFinding('statusError did not build an NvmeofError');
        }
        break;
      }
      case 4: touch(decodeStatus(dw(0) & 0xffff, { opcode: dw(1) & 0xff, admin: (dw(1) & 0x100) !== 0 })); touch(typed(() => decodeConnectInvalidParameter(dw(0)))); break;
      case 5: touch(typed(() => parseConnectResult(dw(0)))); touch(typed(() => decodeAsyncEvent(dw(0)))); break;
      default: {
        const cap = b.length >= 8 ? b.readBigUInt64LE(0) : 0n;
        touch(typed(() => decodeCap(cap)));
        touch(typed(() => decodeVs(dw(0))));
        touch(typed(() => decodeCc(dw(1))));
        touch(typed(() => decodeCsts(dw(0))));
        break;
      }
    }
  },
};

// ---------------------------------------------------------------------------------------------------------------
// NBD server: the request stream and the handshake option data a client sends

function nbdStream(stream: Buffer, sizes: number[] | null): { requests: string[]; error: string | null } {
  const p = new RequestParser(64 * 1024);
  const requests: string[] = [];
  let fed = 0;
  try {
    for (const n of sizes ?? [stream.length]) {
      const out = p.push(stream.subarray(fed, fed + n));
      fed += n;
      for (const r of out) requests.push(touch({ ...r, data: r.data?.toString('hex') }));
      if (p.buffered > fed) throw new FuzzFinding(`NBD parser holds ${p.buffered} bytes after ${fed} were fed`);
      if (p.error) return { requests, error: describeError(p.error) };
    }
  } catch (err) {
    if (err instanceof NvmeofError) return { requests, error: describeError(err) };
    throw err;
  }
  return { requests, error: null };
}

const nbdTarget: FuzzTarget = {
  name: 'nbd',
  description: 'NBD server parsing: the transmission request stream (whole against chunked, byte 1 picks the chunking) and the handshake option header, NBD_OPT_INFO/GO, meta context and export name data (byte 0 picks)',
  run(data) {
    if (data.length < 2) return;
    const b = data.subarray(2);
    switch (data[0]! % 4) {
      case 0: {
        const whole = nbdStream(b, null);
        const cut = nbdStream(b, chunkSizes(data[1]!, b.length));
        // The requests before a bad header come out however the stream is chunked (push() returns them and sets
        // error), so the whole and the chunked read agree exactly, error included.
        const same = whole.requests.join('\n') === cut.requests.join('\n');
        if (whole.error !== cut.error || !same) {
          throw new FuzzFinding(`chunking changed the NBD requests: whole ${whole.requests.length}, error ${String(whole.error)}; chunked ${cut.requests.length}, error ${String(cut.error)}`);
        }
        break;
      }
      case 1: touch(typed(() => decodeOptionHeader(b))); touch(typed(() => decodeRequestHeader(b, 64 * 1024))); break;
      case 2: touch(typed(() => decodeInfoRequest(b))); touch(typed(() => decodeMetaContextRequest(b))); break;
      default: touch(typed(() => decodeExportName(b))); break;
    }
  },
};

// ---------------------------------------------------------------------------------------------------------------
// DH-HMAC-CHAP: authentication messages from the peer, the Authentication Send/Receive SQE, secrets from options

/** parseDhchapKey's message for text that is not in the DHHC-1 form at all (the same for every such text). */
const notInTheForm = ((): string => {
  try {
    parseDhchapKey('');
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('parseDhchapKey accepted an empty secret');
})();

const authTarget: FuzzTarget = {
  name: 'auth',
  description: 'DH-HMAC-CHAP: authentication messages (either side), the Authentication Send/Receive SQE fields, and DHHC-1 secrets, whose errors must never contain the secret (byte 0 picks)',
  run(data) {
    if (data.length < 1) return;
    const b = data.subarray(1);
    switch (data[0]! % 3) {
      case 0: touch(typed(() => parseAuthMessage(b))); break;
      case 1: touch(typed(() => parseAuthSqe(b))); break;
      default: {
        const text = b.toString('latin1');
        try {
          parseDhchapKey(text);
        } catch (err) {
          if (!(err instanceof NvmeofError)) throw err;
          // The part after DHHC-1:HH: is the secret; no error may carry it (or the whole text). The message for
          // text that is not in the DHHC-1 form is one fixed sentence (it names the form, "DHHC-1:HH:<base64>:"),
          // so an input that happens to be a piece of that sentence is not a leak.
          const secret = /^DHHC-1:\d\d:([^:]*)/.exec(text.trim())?.[1] ?? text.trim();
          if (err.message !== notInTheForm && secret.length >= 8 && err.message.includes(secret)) {
            throw new FuzzFinding('a DH-HMAC-CHAP secret appears in an error message');
          }
        }
        break;
      }
    }
  },
};

/** Every target, by name. */
// ---------------------------------------------------------------------------------------------------------------
// nvmeof serve: what an HTTP client or a config file hands the daemon

/** Input bytes as the daemon would see them: JSON when they parse as JSON, else the text itself. */
function jsonish(b: Buffer): unknown {
  const text = b.toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

const serveTarget: FuzzTarget = {
  name: 'serve',
  description: "nvmeof serve request handling: controller, discovery and multipath bodies, the config file and --listen, whose errors must be typed and never echo a dhchap secret (byte 0 picks)",
  run(data) {
    if (data.length < 1) return;
    const b = data.subarray(1);
    const body = jsonish(b);
    const check = (fn: () => unknown, secretBearing = true) => {
      try {
        touch(fn());
      } catch (err) {
        if (!(err instanceof NvmeofError)) throw err;
        if (!secretBearing) return;
        const secret = (body as { dhchap?: { secret?: unknown } } | null)?.dhchap?.secret;
        if (typeof secret === 'string' && secret.length >= 8 && err.message.includes(secret)) {
          throw new FuzzFinding('a serve error message echoes the dhchap secret');
        }
      }
    };
    switch (data[0]! % 5) {
      case 0: check(() => parseControllerSpec(body)); break;
      case 1: check(() => parseDiscoverySpec(body)); break;
      case 2: check(() => parseMultipathSpec(body)); break;
      case 3: {
        const text = b.toString('utf8');
        const config = jsonish(b) as { controllers?: { dhchap?: { secret?: unknown } }[] } | null;
        const secret = Array.isArray(config?.controllers) ? config.controllers[0]?.dhchap?.secret : undefined;
        try {
          touch(parseConfig(text));
        } catch (err) {
          if (!(err instanceof NvmeofError)) throw err;
          if (typeof secret === 'string' && secret.length >= 8 && err.message.includes(secret)) throw new FuzzFinding('a serve config error echoes a dhchap secret');
        }
        break;
      }
      // --listen is not secret-bearing: its errors may quote what was given.
      default: check(() => parseListen(b.toString('utf8')), false); break;
    }
  },
};

export const targets: readonly FuzzTarget[] = [readerTarget, identifyTarget, logPagesTarget, discoveryTarget, capsuleTarget, nbdTarget, authTarget, serveTarget, tlsTarget, httpTarget];

export function findTarget(name: string): FuzzTarget {
  const t = targets.find((x) => x.name === name);
  if (t === undefined) throw new Error(`unknown fuzz target ${name} (targets: ${targets.map((x) => x.name).join(', ')})`);
  return t;
}
