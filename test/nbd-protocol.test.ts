/**
 * NBD codecs against byte vectors written out by hand from the NBD project's doc/proto.md (every field big-endian).
 */
import { describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import * as nbd from '../src/nbd/protocol.js';
import { ErrorCode, NbdProtocolError } from '../src/errors.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('nbd handshake codecs', () => {
  it('greeting: NBDMAGIC, IHAVEOPT, handshake flags FIXED_NEWSTYLE|NO_ZEROES', () => {
    // 'NBDMAGIC' = 4e 42 44 4d 41 47 49 43; 'IHAVEOPT' = 49 48 41 56 45 4f 50 54; flags 0x0003.
    expect(nbd.encodeGreeting(nbd.HandshakeFlag.FIXED_NEWSTYLE | nbd.HandshakeFlag.NO_ZEROES)).toEqual(
      hex('4e42444d41474943 49484156454f5054 0003'),
    );
  });

  it('option request header: IHAVEOPT, option, length', () => {
    // NBD_OPT_GO (7) with 10 bytes of data.
    expect(nbd.decodeOptionHeader(hex('49484156454f5054 00000007 0000000a'))).toEqual({ option: 7, length: 10 });
    const err = (() => {
      try {
        nbd.decodeOptionHeader(hex('49484156454f5055 00000007 0000000a'));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(NbdProtocolError);
    expect((err as NbdProtocolError).code).toBe(ErrorCode.NBD_PROTOCOL);
    expect(nbd.encodeOptionRequest(nbd.NbdOpt.LIST)).toEqual(hex('49484156454f5054 00000003 00000000'));
  });

  it('option reply: reply magic 0x3e889045565a9, option, type, length, data', () => {
    // ACK to NBD_OPT_STRUCTURED_REPLY (8).
    expect(nbd.encodeOptionReply(8, nbd.NbdRep.ACK)).toEqual(hex('0003e889045565a9 00000008 00000001 00000000'));
    // NBD_REP_ERR_UNSUP (2^31 + 1) to option 99 with the message "no".
    expect(nbd.encodeOptionError(99, nbd.NbdRep.ERR_UNSUP, 'no')).toEqual(hex('0003e889045565a9 00000063 80000001 00000002 6e6f'));
    expect(nbd.NbdRep.ERR_TLS_REQD).toBe(2 ** 31 + 5);
    expect(nbd.NbdRep.ERR_POLICY).toBe(2 ** 31 + 2);
    expect(nbd.NbdRep.ERR_UNKNOWN).toBe(2 ** 31 + 6);
  });

  it('NBD_REP_SERVER: 32-bit name length, name, description', () => {
    expect(nbd.encodeRepServer('ab', 'xyz')).toEqual(hex('00000002 6162 78797a'));
  });

  it('info replies: EXPORT, NAME, DESCRIPTION, BLOCK_SIZE', () => {
    // NBD_INFO_EXPORT (0): u64 size 1 MiB, u16 flags HAS_FLAGS|SEND_FLUSH|SEND_FUA = 0x000d.
    expect(nbd.encodeInfoExport(1048576n, 0x0d)).toEqual(hex('0000 0000000000100000 000d'));
    expect(nbd.encodeInfoString(nbd.NbdInfo.NAME, 'x')).toEqual(hex('0001 78'));
    expect(nbd.encodeInfoString(nbd.NbdInfo.DESCRIPTION, 'd')).toEqual(hex('0002 64'));
    // NBD_INFO_BLOCK_SIZE (3): min 512, preferred 4096, max 32 MiB.
    expect(nbd.encodeInfoBlockSize(512, 4096, 33554432)).toEqual(hex('0003 00000200 00001000 02000000'));
  });

  it('NBD_OPT_EXPORT_NAME reply: size, flags, 124 zeroes unless NO_ZEROES', () => {
    expect(nbd.encodeExportNameReply(4096n, 0x0003, true)).toEqual(hex('0000000000001000 0003'));
    const full = nbd.encodeExportNameReply(4096n, 0x0003, false);
    expect(full.length).toBe(8 + 2 + 124);
    expect(full.subarray(10).every((b) => b === 0)).toBe(true);
  });

  it('INFO/GO data: u32 name length, name, u16 count, u16 requests', () => {
    expect(nbd.decodeInfoRequest(hex('00000003 646973 0002 0003 0002'))).toEqual({ name: 'dis', requests: [3, 2] });
    expect(nbd.decodeInfoRequest(hex('00000000 0000'))).toEqual({ name: '', requests: [] });
    // Name length past the data; count promising more than is there; bytes left over.
    expect(() => nbd.decodeInfoRequest(hex('00000009 646973 0000'))).toThrow(NbdProtocolError);
    expect(() => nbd.decodeInfoRequest(hex('00000000 0002 0003'))).toThrow(NbdProtocolError);
    expect(() => nbd.decodeInfoRequest(hex('00000000 0000 ff'))).toThrow(NbdProtocolError);
  });

  it('meta context data: export name, u32 query count, each u32 length + string; reply: u32 id + name', () => {
    // export "", 1 query "base:" (62 61 73 65 3a).
    expect(nbd.decodeMetaContextRequest(hex('00000000 00000001 00000005 626173653a'))).toEqual({ name: '', queries: ['base:'] });
    expect(() => nbd.decodeMetaContextRequest(hex('00000000 00000002 00000005 626173653a'))).toThrow(NbdProtocolError);
    expect(nbd.encodeMetaContext(1, 'base:allocation')).toEqual(Buffer.concat([hex('00000001'), Buffer.from('base:allocation')]));
  });
});

describe('nbd transmission codecs', () => {
  it('a request header shorter than 28 bytes is an NbdProtocolError, not a RangeError (found by fuzzing)', () => {
    const full = nbd.encodeRequest({ flags: 0, type: nbd.NbdCmd.READ, handle: 1n, offset: 0n, length: 512 });
    for (const n of [0, 3, 4, 27]) expect(() => nbd.decodeRequestHeader(full.subarray(0, n), 4096)).toThrow(NbdProtocolError);
    expect(nbd.decodeRequestHeader(full, 4096)).toMatchObject({ type: nbd.NbdCmd.READ, handle: 1n, length: 512 });
  });

  it('simple reply: magic 0x67446698, error, handle', () => {
    expect(nbd.encodeSimpleReply(0x0102030405060708n, 22)).toEqual(hex('67446698 00000016 0102030405060708'));
  });

  it('structured chunks: NONE, OFFSET_DATA, ERROR, BLOCK_STATUS', () => {
    // magic 0x668e33ef, flags u16 (DONE=1), type u16, handle u64, length u32.
    expect(nbd.encodeChunkNone(5n)).toEqual(hex('668e33ef 0001 0000 0000000000000005 00000000'));
    // OFFSET_DATA (1), DONE, offset 0x200, 4 data bytes follow: length = 8 + 4.
    expect(nbd.encodeChunkOffsetDataHeader(6n, 1, 512n, 4)).toEqual(hex('668e33ef 0001 0001 0000000000000006 0000000c 0000000000000200'));
    // ERROR (2^15 + 1 = 0x8001): u32 error EIO (5), u16 message length 2, "io".
    expect(nbd.encodeChunkError(7n, 5, 'io')).toEqual(hex('668e33ef 0001 8001 0000000000000007 00000008 00000005 0002 696f'));
    // BLOCK_STATUS (5): u32 context id, then (u32 length, u32 flags) descriptors.
    expect(nbd.encodeChunkBlockStatus(8n, 1, 1, [{ length: 65536, flags: 0 }])).toEqual(
      hex('668e33ef 0001 0005 0000000000000008 0000000c 00000001 00010000 00000000'),
    );
  });

  it('error message longer than 4096 bytes is cut on a character boundary', () => {
    const b = nbd.encodeChunkError(1n, 5, 'é'.repeat(3000));
    const len = b.readUInt16BE(24);
    expect(len).toBeLessThanOrEqual(4096);
    expect(len % 2).toBe(0);
  });

  // NBD_CMD_WRITE (1) with FUA (flag 1), handle 0x11, offset 0x1000, length 4, then 4 bytes of data; then
  // NBD_CMD_FLUSH (3) with handle 0x12; then NBD_CMD_READ (0) handle 0x13 offset 0 length 0x200.
  const stream = hex(
    '25609513 0001 0001 0000000000000011 0000000000001000 00000004 deadbeef' +
      '25609513 0000 0003 0000000000000012 0000000000000000 00000000' +
      '25609513 0000 0000 0000000000000013 0000000000000000 00000200',
  );
  const expected = [
    { flags: 1, type: 1, handle: 0x11n, offset: 0x1000n, length: 4, data: hex('deadbeef') },
    { flags: 0, type: 3, handle: 0x12n, offset: 0n, length: 0, data: undefined },
    { flags: 0, type: 0, handle: 0x13n, offset: 0n, length: 0x200, data: undefined },
  ];

  it('request parser: whole stream at once', () => {
    const p = new nbd.RequestParser(1 << 20);
    expect(p.push(stream)).toEqual(expected);
    expect(p.idle).toBe(true);
  });

  it('request parser: split at every offset, and byte by byte', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const p = new nbd.RequestParser(1 << 20);
      const got = [...p.push(stream.subarray(0, cut)), ...p.push(stream.subarray(cut))];
      expect(got, `cut at ${cut}`).toEqual(expected);
      expect(p.idle).toBe(true);
    }
    for (let a = 1; a < stream.length; a += 7) {
      for (let b = a; b < stream.length; b += 11) {
        const p = new nbd.RequestParser(1 << 20);
        const got = [...p.push(stream.subarray(0, a)), ...p.push(stream.subarray(a, b)), ...p.push(stream.subarray(b))];
        expect(got, `cuts at ${a}, ${b}`).toEqual(expected);
      }
    }
    const p = new nbd.RequestParser(1 << 20);
    const got: nbd.NbdRequestWithData[] = [];
    for (const byte of stream) got.push(...p.push(Buffer.from([byte])));
    expect(got).toEqual(expected);
  });

  it('request parser: a partial request leaves the parser not idle', () => {
    const p = new nbd.RequestParser(1 << 20);
    expect(p.push(stream.subarray(0, 30))).toEqual([]);
    expect(p.idle).toBe(false);
    expect(p.buffered).toBe(2);
  });

  it('request parser: the requests before a malformed one in the same chunk are returned, then the parser fails', () => {
    const bad = hex('25609514 0000 0000 0000000000000001 0000000000000000 00000200');
    for (let cut = 0; cut <= stream.length; cut++) {
      // However TCP splits it, the well-formed requests come out and the bad one fails the parser.
      const p = new nbd.RequestParser(1 << 20);
      const got = [...p.push(stream.subarray(0, cut))];
      const rest = Buffer.concat([stream.subarray(cut), bad]);
      try {
        got.push(...p.push(rest));
      } catch (err) {
        // Nothing complete came before the bad request in this chunk: then push throws at once.
        expect(cut).toBe(stream.length);
        expect(err).toBe(p.error);
      }
      expect(got, `cut at ${cut}`).toEqual(expected);
      expect(p.error?.code).toBe('NVMEOF_ERR_NBD_PROTOCOL');
      expect(() => p.push(Buffer.alloc(0))).toThrow(/magic 0x25609514/);
    }
  });

  it('request parser: bad magic and oversize write throw NbdProtocolError, and the parser stays failed', () => {
    const p = new nbd.RequestParser(1 << 20);
    expect(() => p.push(hex('25609514 0000 0000 0000000000000001 0000000000000000 00000200'))).toThrow(/magic 0x25609514/);
    expect(() => p.push(stream)).toThrow(NbdProtocolError);
    const q = new nbd.RequestParser(4096);
    // WRITE of 4097 bytes.
    expect(() => q.push(hex('25609513 0000 0001 0000000000000001 0000000000000000 00001001'))).toThrow(/4097 bytes/);
    // A READ of the same length is not a payload: allowed by the parser (the server answers EINVAL/EOVERFLOW).
    const r = new nbd.RequestParser(4096);
    expect(r.push(hex('25609513 0000 0000 0000000000000001 0000000000000000 00001001'))).toHaveLength(1);
  });

  it('encodeRequest writes the 28-byte layout', () => {
    expect(nbd.encodeRequest({ flags: 4, type: 7, handle: 9n, offset: 0x10n, length: 0x20 })).toEqual(
      hex('25609513 0004 0007 0000000000000009 0000000000000010 00000020'),
    );
  });

  it('constants as proto.md numbers them', () => {
    expect(nbd.TransmissionFlag).toMatchObject({ HAS_FLAGS: 0x1, READ_ONLY: 0x2, SEND_FLUSH: 0x4, SEND_FUA: 0x8, SEND_TRIM: 0x20, SEND_WRITE_ZEROES: 0x40, SEND_DF: 0x80, CAN_MULTI_CONN: 0x100, SEND_CACHE: 0x400, SEND_FAST_ZERO: 0x800 });
    expect(nbd.NbdOpt).toMatchObject({ EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 });
    expect(nbd.NbdErrno).toMatchObject({ EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95 });
  });
});
