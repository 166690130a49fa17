import { describe, expect, it } from 'vitest';
import { classifyIoError } from '../src/multipath/classify.js';
import {
  AbortedError,
  ConnectionClosedError,
  DigestError,
  InvalidArgumentError,
  InvalidStateError,
  KeepAliveError,
  ProtocolError,
  TerminatedError,
  TimeoutError,
  UnsupportedError,
} from '../src/errors.js';
import { decodeStatus } from '../src/protocol/status.js';
import { NvmeStatusError } from '../src/errors.js';

/** A status error built from a raw CQE status word: SC in bits 1..8, SCT 9..11, DNR 15. */
function status(sct: number, sc: number, dnr = false): NvmeStatusError {
  const word = (sc << 1) | (sct << 9) | (dnr ? 0x8000 : 0);
  return new NvmeStatusError(decodeStatus(word, { opcode: 0x01 }), { opcode: 0x01, command: 'Write', qid: 1 });
}

describe('classifyIoError', () => {
  it('fails over on ANA statuses and reports the ANA state they mean', () => {
    expect(classifyIoError(status(3, 0x01))).toEqual({ retry: true, kind: 'ana', anaState: 'persistent-loss', resetPath: false });
    expect(classifyIoError(status(3, 0x02))).toEqual({ retry: true, kind: 'ana', anaState: 'inaccessible', resetPath: false });
    expect(classifyIoError(status(3, 0x03))).toEqual({ retry: true, kind: 'ana', anaState: 'change', resetPath: false });
  });

  it('fails over on the other path related statuses', () => {
    for (const sc of [0x00, 0x60, 0x70, 0x71]) {
      expect(classifyIoError(status(3, sc))).toMatchObject({ retry: true, kind: 'path-status' });
    }
  });

  it('never retries a status with DNR, even a path related one', () => {
    expect(classifyIoError(status(3, 0x02, true))).toMatchObject({ retry: false, kind: 'command' });
    expect(classifyIoError(status(0, 0x22, true))).toMatchObject({ retry: false });
  });

  it('returns generic and media errors to the caller', () => {
    expect(classifyIoError(status(0, 0x80))).toMatchObject({ retry: false, kind: 'command' }); // LBA Out of Range
    expect(classifyIoError(status(0, 0x02))).toMatchObject({ retry: false }); // Invalid Field in Command
    expect(classifyIoError(status(2, 0x81))).toMatchObject({ retry: false }); // Unrecovered Read Error
    expect(classifyIoError(status(1, 0x80))).toMatchObject({ retry: false }); // command specific
  });

  it('retries a Transient Transport Error without DNR', () => {
    expect(classifyIoError(status(0, 0x22))).toMatchObject({ retry: true, kind: 'transport' });
  });

  it('fails over on connection loss, keep-alive failure and broken transports', () => {
    expect(classifyIoError(new ConnectionClosedError('gone'))).toMatchObject({ retry: true, kind: 'connection', resetPath: false });
    expect(classifyIoError(new InvalidStateError('controller is closing'))).toMatchObject({ retry: true, kind: 'connection' });
    expect(classifyIoError(new KeepAliveError('ka'))).toMatchObject({ retry: true, kind: 'keep-alive' });
    expect(classifyIoError(new ProtocolError('bad pdu', 1, 0))).toMatchObject({ retry: true, kind: 'transport' });
    expect(classifyIoError(new DigestError('data', 1, 2))).toMatchObject({ retry: true, kind: 'transport' });
    expect(classifyIoError(new TerminatedError('c2h term', 1, 0))).toMatchObject({ retry: true, kind: 'transport' });
  });

  it('fails over on a timeout and resets the path it happened on', () => {
    expect(classifyIoError(new TimeoutError('t'))).toEqual({ retry: true, kind: 'timeout', resetPath: true });
  });

  it('returns caller errors (abort, bad argument, unsupported, foreign errors) as they are', () => {
    for (const e of [new AbortedError(), new InvalidArgumentError('x'), new UnsupportedError('y'), new Error('z'), 'string']) {
      expect(classifyIoError(e)).toMatchObject({ retry: false, kind: 'command' });
    }
  });
});
