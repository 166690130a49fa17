/**
 * Writes the starting seeds of fuzz/corpus/<target>/ from the library's encoders: well-formed PDU streams in both
 * roles with and without digests, Identify data, log pages and discovery logs. Run once when a target is added
 * (`node --import tsx fuzz/seed.ts`); `npm run fuzz -- --merge` then keeps the corpus minimized.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodePdu, type Pdu } from '../src/protocol/pdu.js';
import { encodeIdentifyController, encodeIdentifyNamespace, encodeNamespaceList, encodeNsIdDescriptors } from '../src/protocol/identify.js';
import {
  encodeAnaLog,
  encodeChangedNsList,
  encodeDiscoveryLog,
  encodeErrorLog,
  encodeReservationNotificationLog,
  encodeSmartLog,
} from '../src/protocol/logpages.js';
import { encodeReservationStatus, reservationRegister } from '../src/protocol/reservations.js';
import { connect as connectCommand, read as readCommand } from '../src/protocol/commands.js';
import { encodeCqe } from '../src/protocol/cqe.js';
import { encodeRequest, encodeOptionRequest } from '../src/nbd/protocol.js';
import { authReceive, authSend, encodeChallenge, encodeFailure, encodeNegotiate, encodeReply, encodeSuccess1, encodeSuccess2 } from '../src/protocol/auth.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Targets to write seeds for (all when none is named): `node --import tsx fuzz/seed.ts tls serve-http`. */
const only = process.argv.slice(2);

function write(target: string, bytes: Buffer): void {
  if (only.length > 0 && !only.includes(target)) return;
  const dir = join(here, 'corpus', target);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, createHash('sha1').update(bytes).digest('hex').slice(0, 16)), bytes);
}

const pdu = (p: Pdu, hdgst: boolean, ddgst: boolean): Buffer => Buffer.concat(encodePdu(p, { hdgst, ddgst }));
const data = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + 1) & 0xff));

// PDU streams: byte 0 = reader options (bit 0 controller role, 1 hdgst, 2 ddgst, 3 placement, 4 IC sequencing), byte 1 = chunking.
for (const [hd, dd] of [[false, false], [true, true], [true, false]] as const) {
  const flags = (hd ? 2 : 0) | (dd ? 4 : 0);
  const host = Buffer.concat([
    pdu({ type: 0x07, cccid: 2, datao: 0, last: true, success: false, data: data(40) }, hd, dd),
    pdu({ type: 0x05, cqe: data(16) }, hd, dd),
    pdu({ type: 0x09, cccid: 3, ttag: 1, r2to: 0, r2tl: 8192 }, hd, dd),
    pdu({ type: 0x07, cccid: 4, datao: 0, last: true, success: true, data: data(12) }, hd, dd),
  ]);
  write('pdu-reader', Buffer.concat([Buffer.from([flags, 1]), host]));
  write('pdu-reader', Buffer.concat([Buffer.from([flags | 8, 2]), host]));
  const ctrl = Buffer.concat([
    pdu({ type: 0x04, sqe: data(64), data: null }, hd, dd),
    pdu({ type: 0x04, sqe: data(64), data: data(20) }, hd, dd),
    pdu({ type: 0x06, cccid: 4, ttag: 1, datao: 0, last: true, data: data(32) }, hd, dd),
  ]);
  write('pdu-reader', Buffer.concat([Buffer.from([flags | 1, 3]), ctrl]));
  write('pdu-reader', Buffer.concat([Buffer.from([flags | 1 | 8, 0]), ctrl]));
}
const icresp = pdu({ type: 0x01, pfv: 0, cpda: 0, hdgst: true, ddgst: true, maxh2cdata: 0x20000 }, false, false);
write('pdu-reader', Buffer.concat([Buffer.from([0x10, 1]), icresp, pdu({ type: 0x05, cqe: data(16) }, true, false)]));
const icreq = pdu({ type: 0x00, pfv: 0, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }, false, false);
write('pdu-reader', Buffer.concat([Buffer.from([0x11, 2]), icreq, pdu({ type: 0x04, sqe: data(64), data: null }, false, false)]));
write('pdu-reader', Buffer.concat([Buffer.from([0, 1]), pdu({ type: 0x03, fes: 1, fei: 4, data: data(24) }, false, false)]));
write('pdu-reader', Buffer.concat([Buffer.from([1, 1]), pdu({ type: 0x02, fes: 2, fei: 0, data: data(8) }, false, false)]));

// Identify: byte 0 picks the parser (bit 7: pad to 4096 bytes).
const sel = (b: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([b]), body]);
write('identify', sel(0, encodeIdentifyController({ vid: 0x1b36, sn: 'SN1', mn: 'model', fr: '1.0', mdts: 5, cntlid: 1, ver: 0x10400, npss: 2, subnqn: 'nqn.2014-08.org.example:sub', cmic: 0x8, anacap: 0x47, nanagrpid: 4, oncs: 0x3f })));
write('identify', sel(1, encodeIdentifyNamespace({ nsze: 1000n, ncap: 1000n, nuse: 10n, flbas: 1, nmic: 1, rescap: 0xff, anagrpid: 1, lbaf: [{ ms: 0, lbads: 9, rp: 0 }, { ms: 8, lbads: 12, rp: 1 }] })));
write('identify', sel(2, encodeNamespaceList([1, 2, 7, 100])));
write('identify', sel(3, encodeNsIdDescriptors([{ nidt: 1, value: data(8) }, { nidt: 2, value: data(16) }, { nidt: 3, value: data(16) }, { nidt: 4, value: data(1) }])));

// Log pages: byte 0 picks the parser (bit 7: pad).
write('logpages', sel(0x40, encodeErrorLog([{ errorCount: 3n, sqid: 1, cid: 2, status: 0x4005, parameterErrorLocation: 0x0104, lba: 9n, nsid: 1 }, { errorCount: 0n }])));
write('logpages', sel(1, encodeSmartLog({ criticalWarning: 0x3, temperature: 300, tempSensors: [300, 310] })));
write('logpages', sel(2, encodeAnaLog({ chgcnt: 5n, groups: [{ anagrpid: 1, chgcnt: 1n, state: 1, nsids: [1, 2] }, { anagrpid: 2, chgcnt: 2n, state: 4, nsids: [3] }] })));
write('logpages', sel(3, encodeAnaLog({ chgcnt: 5n, groups: [{ anagrpid: 1, chgcnt: 1n, state: 2 }, { anagrpid: 2, chgcnt: 2n, state: 3 }] }, { rgo: true })));
write('logpages', sel(4, encodeChangedNsList([4, 5, 6])));
write('logpages', sel(5, encodeReservationNotificationLog({ lpc: 2n, rnlpt: 1, nalp: 0, nsid: 1 })));
write('logpages', sel(6, encodeReservationStatus({ gen: 1, rtype: 1, ptpls: false, registrants: [{ cntlid: 1, rcsts: 1, hostid: data(8), rkey: 5n }] }, false)));
write('logpages', sel(7, encodeReservationStatus({ gen: 1, rtype: 2, ptpls: true, registrants: [{ cntlid: 1, rcsts: 0, hostid: data(16), rkey: 5n }] }, true)));

// Discovery: byte 0 bit 0 clear = whole log; set = header + one entry at offset byte0 >> 1.
const entry = { trtype: 3, adrfam: 1, subtype: 2, treq: 2, portid: 1, cntlid: 0xffff, asqsz: 32, trsvcid: '4420', subnqn: 'nqn.2014-08.org.example:sub', traddr: '127.0.0.1', tsas: Buffer.alloc(256) };
const log = encodeDiscoveryLog({ genctr: 7n, entries: [entry, { ...entry, subtype: 1, trsvcid: '8009', subnqn: 'nqn.2014-08.org.nvmexpress.discovery' }] });
write('discovery', sel(0, log));
write('discovery', sel(0, Buffer.concat([log.subarray(0, 1024 + 1024)]))); // NUMREC 2, one entry present
write('discovery', sel(1, log.subarray(1024)));

// Capsule contents: byte 0 picks the decoder.
const connectCmd = connectCommand({ qid: 0, sqsize: 32, kato: 120000, hostid: '6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f', subnqn: 'nqn.2014-08.org.example:sub', hostnqn: 'nqn.2014-08.org.nvmexpress:uuid:6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f' });
write('capsule', sel(0, connectCmd.sqe));
write('capsule', sel(0, readCommand({ nsid: 1, slba: 8n, nlb: 4, blockSize: 512 }).sqe));
write('capsule', sel(1, Buffer.from(connectCmd.data!)));
const reg = reservationRegister({ nsid: 1, action: 'register', nrkey: 5n });
write('capsule', sel(2, Buffer.concat([reg.sqe.subarray(40, 44), Buffer.from(reg.data!)])));
write('capsule', sel(3, Buffer.concat([encodeCqe({ dw0: 1, dw1: 0, sqhd: 3, sqid: 1, cid: 9, status: 0x4005 }), Buffer.from([0x01, 0x00])])));
write('capsule', sel(0xc3, Buffer.concat([encodeCqe({ dw0: 0x10001, dw1: 0, sqhd: 1, sqid: 0, cid: 1, status: (1 << 9) | (0x82 << 1) }), Buffer.from([0x7f, 0x01])])));
write('capsule', sel(4, Buffer.from([0x05, 0x40, 0, 0, 0x02, 0x01, 0, 0])));
write('capsule', sel(5, Buffer.from([0x02, 0x00, 0x0c, 0x00])));
write('capsule', sel(6, Buffer.from([0xff, 0x07, 0x01, 0x3c, 0x20, 0x00, 0x00, 0x00, 0x00, 0x04, 0x01, 0x00])));

// NBD: byte 0 picks (0: request stream, byte 1 chunking; 1: option/request header; 2: INFO/GO and meta context data; 3: export name).
const nbdReq = (type: number, handle: bigint, offset: bigint, length: number): Buffer => encodeRequest({ flags: 0, type, handle, offset, length });
write('nbd', Buffer.concat([Buffer.from([0, 1]), nbdReq(0, 1n, 0n, 4096), nbdReq(1, 2n, 512n, 16), data(16), nbdReq(3, 3n, 0n, 0), nbdReq(2, 4n, 0n, 0)]));
write('nbd', Buffer.concat([Buffer.from([0, 3]), nbdReq(6, 5n, 4096n, 8192), nbdReq(7, 6n, 0n, 65536), nbdReq(4, 7n, 0n, 512)]));
write('nbd', Buffer.concat([Buffer.from([1, 0]), encodeOptionRequest(7, Buffer.concat([Buffer.from([0, 0, 0, 4]), Buffer.from('disk'), Buffer.from([0, 1, 0, 3])]))]));
write('nbd', Buffer.concat([Buffer.from([2, 0]), Buffer.from([0, 0, 0, 4]), Buffer.from('disk'), Buffer.from([0, 2, 0, 3, 0, 1])]));
write('nbd', Buffer.concat([Buffer.from([2, 0]), Buffer.from([0, 0, 0, 4]), Buffer.from('disk'), Buffer.from([0, 0, 0, 1, 0, 0, 0, 15]), Buffer.from('base:allocation')]));
write('nbd', Buffer.concat([Buffer.from([3, 0]), Buffer.from('disk')]));

// DH-HMAC-CHAP: byte 0 picks (0: message, 1: SQE, 2: DHHC-1 secret text).
write('auth', sel(0, encodeNegotiate({ tid: 1, hashIds: [1, 2, 3], dhgroupIds: [0, 1, 2, 3, 4, 5] })));
write('auth', sel(0, encodeChallenge({ tid: 1, hashId: 1, dhgroupId: 1, seqnum: 7, challenge: data(32), dhv: data(256) })));
write('auth', sel(0, encodeReply({ tid: 1, response: data(32), challenge: data(32), seqnum: 9, dhv: data(256) })));
write('auth', sel(0, encodeSuccess1({ tid: 1, hl: 32, response: data(32) })));
write('auth', sel(0, encodeSuccess2({ tid: 1 })));
write('auth', sel(0, encodeFailure({ type: 'failure2', tid: 1, reason: 1, rc: 3 })));
write('auth', sel(1, authSend(encodeSuccess2({ tid: 1 })).sqe));
write('auth', sel(1, authReceive().sqe));
const secret = Buffer.concat([data(32), Buffer.from([0x11, 0x22, 0x33, 0x44])]);
write('auth', sel(2, Buffer.from(`DHHC-1:00:${secret.toString('base64')}:`)));
write('auth', sel(2, Buffer.from(`DHHC-1:01:${Buffer.concat([data(48), Buffer.alloc(4)]).toString('base64')}:`)));

// nvmeof serve: byte 0 picks (0 controller body, 1 discovery body, 2 multipath body, 3 config file, 4 --listen).
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
write('serve', sel(0, json({ traddr: '127.0.0.1', trsvcid: 4420, subnqn: 'nqn.2016-06.io.spdk:cnode1', hostnqn: 'nqn.2014-08.org.nvmexpress:uuid:6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f', kato: 5000, ioQueues: 2, headerDigest: true, reconnectDelay: 1000, ctrlLossTimeout: -1 })));
write('serve', sel(0, json({ traddr: '127.0.0.1', subnqn: 'nqn.2016-06.io.spdk:cnode1', dhchap: { secret: `DHHC-1:01:${Buffer.concat([data(32), Buffer.alloc(4)]).toString('base64')}:`, hashes: ['sha256'], dhgroups: ['null', 'ffdhe2048'] } })));
write('serve', sel(1, json({ traddr: '127.0.0.1', trsvcid: 8009, connect: true, include: [{ subnqn: 'nqn.2016-06.io.spdk:cnode1' }], exclude: [{ traddr: '10.0.0.1' }] })));
write('serve', sel(2, json({ subnqn: 'nqn.2016-06.io.spdk:cnode1', nsid: 1, policy: 'round-robin', paths: [{ traddr: '127.0.0.1', trsvcid: 4420 }, { traddr: '127.0.0.1', trsvcid: 4421 }] })));
write('serve', sel(3, json({ controllers: [{ traddr: '127.0.0.1', subnqn: 'nqn.2016-06.io.spdk:cnode1' }], discovery: [{ traddr: '127.0.0.1' }], multipath: [] })));
write('serve', sel(4, Buffer.from('tcp:127.0.0.1:8080')));
write('serve', sel(4, Buffer.from('unix:/run/nvmeof.sock')));

// TLS 1.3 client: byte 0 picks (0-2 session steps, 3 record stream, 4 handshake reassembly, 5 ServerHello,
// 6 EncryptedExtensions / NewSessionTicket, 7 Finished / KeyUpdate / alert / inner plaintext); byte 1 the suite,
// groups and chunking. Messages from RFC 8448's traces (section 3, simple 1-RTT; section 4, resumed with a PSK).
// fuzz/corpus/tls also holds server flights captured from openssl s_server and gnutls-serv (mode 3).
const rfc8448 = {
  serverHello: '020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e2692800130100002e00330024001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304',
  encryptedExtensions: '080000240022000a00140012001d00170018001901000101010201030104001c0002400100000000',
  serverFinished: '140000209b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718',
  newSessionTicket:
    '040000c90000001efad6aac502000000b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf1b0070ad3c498883c9367c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827db279cce145077d454a3664d4e6da4d29ee03725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228bda40dda721470f9fbf297b5aea617646fac5c03272e970727c621a79141ef5f7de6505e5bfbc388e93343694093934ae4d3570008002a000400000400',
  pskServerHello: '0200005c03033ccfd2dec890222763472ae8136777c9d7358777bb66e91ea5122495f559ea2d00130100003400290002000000330024001d0020121761ee42c333e1b9e77b60dd57c2053cd94512ab47f115e86eff50942cea31002b00020304',
  pskEncryptedExtensions: '080000280026000a00140012001d00170018001901000101010201030104001c0002400100000000002a0000',
};
const h = (x: string): Buffer => Buffer.from(x, 'hex');
const body = (msg: string): Buffer => h(msg).subarray(4);
const record = (type: number, b: Buffer): Buffer => Buffer.concat([Buffer.from([type, 3, 3, b.length >> 8, b.length & 0xff]), b]);
/** A session step: op, 16-bit length, data. */
const step = (op: number, d: Buffer = Buffer.alloc(0)): Buffer => Buffer.concat([Buffer.from([op, d.length >> 8, d.length & 0xff]), d]);
const inner = (type: number, d: Buffer): Buffer => Buffer.concat([Buffer.from([type]), d]);
const ee = Buffer.from([8, 0, 0, 2, 0, 0]);
const eeGroups = Buffer.from([8, 0, 0, 12, 0, 10, 0, 10, 0, 6, 0, 4, 0, 0x1d, 0, 0x17]);
const full = (flags: number, extra: Buffer[] = []): Buffer =>
  Buffer.concat([
    Buffer.from([0, flags]),
    step(1),
    step(2, inner(22, ee)),
    step(3),
    step(2, inner(23, Buffer.from('ICResp'))),
    step(2, inner(22, h(rfc8448.newSessionTicket))),
    step(4, Buffer.from([1])),
    step(5, Buffer.concat([Buffer.from([23, 2]), Buffer.from('after KeyUpdate')])),
    ...extra,
    step(7, Buffer.from([1, 0])),
  ]);
write('tls', full(0));
write('tls', full(1 | 4));
write('tls', full(2 | 8));
write('tls', full(3 | 12, [step(2, inner(21, Buffer.from([2, 80])))]));
// The EncryptedExtensions with supported_groups, split across two records; a ChangeCipherSpec before the first.
write('tls', Buffer.concat([Buffer.from([1, 1]), step(6), step(1), step(2, inner(22, eeGroups.subarray(0, 5))), step(2, inner(22, eeGroups.subarray(5))), step(3), step(2, inner(23, Buffer.from('x')))]));
// RFC 8448's EncryptedExtensions (server_name and record_size_limit, which this client did not offer).
write('tls', Buffer.concat([Buffer.from([2, 0]), step(1), step(2, inner(22, h(rfc8448.encryptedExtensions))), step(3)]));
// A plaintext alert before the ServerHello; a HelloRetryRequest-like ServerHello written raw.
write('tls', Buffer.concat([Buffer.from([0, 0]), step(0, record(21, Buffer.from([2, 47])))]));
write('tls', Buffer.concat([Buffer.from([0, 0]), step(0, record(22, h(rfc8448.pskServerHello)))]));
// Record streams and handshake messages.
write('tls', Buffer.concat([Buffer.from([3, 1]), record(22, h(rfc8448.serverHello)), record(20, Buffer.from([1])), record(23, Buffer.alloc(40, 7)), record(21, Buffer.from([1, 0]))]));
write('tls', Buffer.concat([Buffer.from([4, 2]), h(rfc8448.encryptedExtensions), h(rfc8448.serverFinished), h(rfc8448.newSessionTicket), Buffer.from([24, 0, 0, 1, 1])]));
write('tls', Buffer.concat([Buffer.from([5, 0]), body(rfc8448.serverHello)]));
write('tls', Buffer.concat([Buffer.from([5, 0]), body(rfc8448.pskServerHello)]));
write('tls', Buffer.concat([Buffer.from([6, 0]), body(rfc8448.encryptedExtensions)]));
write('tls', Buffer.concat([Buffer.from([6, 0]), body(rfc8448.pskEncryptedExtensions)]));
write('tls', Buffer.concat([Buffer.from([6, 0]), body(rfc8448.newSessionTicket)]));
write('tls', Buffer.concat([Buffer.from([7, 0]), body(rfc8448.serverFinished)]));

// nvmeof serve HTTP requests: byte 0 bit 0 = TCP listener with a token; then "METHOD TARGET", header lines, an empty
// line and the body, as node:http hands them over.
const req = (flags: number, method: string, target: string, headers: string[], body = ''): Buffer =>
  Buffer.concat([Buffer.from([flags]), Buffer.from(`${method} ${target}\n${headers.map((x) => `${x}\n`).join('')}\n${body}`)]);
const bearer = 'authorization: Bearer fuzz-token-0123456789';
const ctrl = JSON.stringify({ traddr: '127.0.0.1', trsvcid: 4420, subnqn: 'nqn.2016-06.io.spdk:cnode1', hostnqn: 'nqn.2014-08.org.nvmexpress:uuid:6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f' });
write('serve-http', req(1, 'GET', '/v1/health', [bearer]));
write('serve-http', req(0, 'GET', '/metrics', []));
write('serve-http', req(0, 'GET', '/v1/events?lastEventId=12', ['last-event-id: 7']));
write('serve-http', req(1, 'POST', '/v1/controllers', [bearer, 'content-type: application/json', `content-length: ${ctrl.length}`], ctrl));
write('serve-http', req(0, 'GET', '/v1/controllers/c1', []));
write('serve-http', req(0, 'DELETE', '/v1/controllers/c%31', []));
write('serve-http', req(0, 'POST', '/v1/controllers/c1/reconnect', []));
write('serve-http', req(0, 'GET', '/v1/controllers/c1/namespaces', []));
write('serve-http', req(0, 'GET', '/v1/controllers/c1/namespaces/1/blocks?lba=0x10&count=8', []));
write('serve-http', req(0, 'PUT', '/v1/controllers/c1/namespaces/4294967294/blocks?lba=18446744073709551615&count=1', ['content-length: 512'], 'x'.repeat(512)));
write('serve-http', req(0, 'POST', '/v1/controllers/c1/namespaces/1/reservations/register', [], JSON.stringify({ action: 'register', newKey: '0x1234', ignoreExistingKey: true })));
write('serve-http', req(0, 'POST', '/v1/controllers/c1/namespaces/1/reservations/acquire', [], JSON.stringify({ action: 'acquire', type: 'write-exclusive', key: 5 })));
write('serve-http', req(0, 'POST', '/v1/controllers/c1/namespaces/1/reservations/release', [], JSON.stringify({ action: 'release', type: 'write-exclusive', key: '5' })));
write('serve-http', req(0, 'GET', '/v1/controllers/c1/namespaces/1/reservations?extended=true', []));
write('serve-http', req(0, 'GET', '/v1/subsystems', []));
write('serve-http', req(0, 'POST', '/v1/discovery', [], JSON.stringify({ traddr: '127.0.0.1', trsvcid: 8009, connect: true })));
write('serve-http', req(0, 'GET', '/v1/discovery/d1/log', []));
write('serve-http', req(0, 'POST', '/v1/multipath', [], JSON.stringify({ subnqn: 'nqn.2016-06.io.spdk:cnode1', nsid: 1, paths: [{ traddr: '127.0.0.1' }] })));
write('serve-http', req(0, 'GET', '/v1/multipath/m1', []));
write('serve-http', req(0, 'HEAD', '/v1/health', []));
write('serve-http', req(0, 'GET', 'http://localhost:8080/v1/controllers/%E0%A4%A', []));
write('serve-http', req(0, 'OPTIONS', '*', []));
