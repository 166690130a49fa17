/**
 * Host-side reservations with a scripted owner (no target): argument checks before sending, capability refusals,
 * report sizing and fallback, the notification mask, and reading the Reservation Notification log.
 */
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { Namespace, type NamespaceOwner } from '../src/host/namespace.js';
import { readReservationNotifications } from '../src/host/reservations.js';
import type { NvmeCommand } from '../src/protocol/commands.js';
import { makeStatus } from '../src/protocol/cqe.js';
import { encodeIdentifyNamespace, parseIdentifyNamespace, type OncsFlags } from '../src/protocol/identify.js';
import { encodeReservationStatus } from '../src/protocol/reservations.js';
import { decodeSqe } from '../src/protocol/sqe.js';
import { decodeStatus } from '../src/protocol/status.js';
import { ErrorCode, InvalidArgumentError, NvmeStatusError, UnsupportedError } from '../src/errors.js';
import type { Completion } from '../src/transport/queue-pair.js';

const ALL_ONCS = { reservations: true, compare: true, dsm: true, writeZeroes: true, verify: true } as OncsFlags;

interface Sent {
  queue: 'io' | 'admin';
  cmd: NvmeCommand;
  cdw10: number;
  cdw11: number;
  opcode: number;
  nsid: number;
}

/** A NamespaceOwner that records commands and answers with `reply` (default: success, zero data). */
class FakeOwner implements NamespaceOwner {
  readonly maxTransferBytes = 1 << 20;
  oncs: OncsFlags | undefined = ALL_ONCS;
  readonly sent: Sent[] = [];
  reply: (s: Sent) => Buffer | Error | undefined = () => undefined;

  private answer(queue: 'io' | 'admin', cmd: NvmeCommand): Promise<Completion> {
    const d = decodeSqe(cmd.sqe);
    const s: Sent = { queue, cmd, cdw10: d.cdw10, cdw11: d.cdw11, opcode: d.opcode, nsid: d.nsid };
    this.sent.push(s);
    const r = this.reply(s);
    if (r instanceof Error) return Promise.reject(r);
    const cqe = { dw0: 0, dw1: 0, sqhd: 0, sqid: 0, cid: 0, status: 0 };
    if (cmd.readLength === undefined) return Promise.resolve({ cqe, received: 0 });
    const data = Buffer.alloc(cmd.readLength);
    if (r) r.copy(data, 0, 0, Math.min(r.length, data.length));
    return Promise.resolve({ cqe, data, received: data.length });
  }

  ioCommand(cmd: NvmeCommand): Promise<Completion> {
    return this.answer('io', cmd);
  }

  adminCommand(cmd: NvmeCommand): Promise<Completion> {
    return this.answer('admin', cmd);
  }
}

function namespace(owner: NamespaceOwner, rescap = 0xff): Namespace {
  const id = parseIdentifyNamespace(encodeIdentifyNamespace({ nsze: 1024n, ncap: 1024n, nuse: 1024n, rescap, lbaf: [{ ms: 0, lbads: 9, rp: 0 }] }));
  return new Namespace(owner, 1, id, []);
}

function status(sct: number, sc: number): NvmeStatusError {
  return new NvmeStatusError(decodeStatus(makeStatus(sct, sc), { admin: false }), { command: 'Reservation Report' });
}

const HOST_A = Buffer.from('6c2f7a0e3b1d4c8e9f001a2b3c4d5e6f', 'hex');
const HOST_B = Buffer.from('0f1e2d3c4b5a49688776a5b4c3d2e1f0', 'hex');

describe('host reservations: arguments are checked before anything is sent', () => {
  const bad: Array<[string, (ns: Namespace) => Promise<unknown>, RegExp]> = [
    ['register without newKey', (ns) => ns.reservationRegister({ action: 'register' }), /newKey is required/],
    ['register with a number key', (ns) => ns.reservationRegister({ action: 'register', newKey: 5 as unknown as bigint }), /newKey must be a bigint.*write 5n/],
    ['register with a key above 2^64-1', (ns) => ns.reservationRegister({ action: 'register', newKey: 1n << 64n }), /0..2\^64-1/],
    ['register with a negative key', (ns) => ns.reservationRegister({ action: 'register', newKey: -1n }), /0..2\^64-1/],
    ['unknown register action', (ns) => ns.reservationRegister({ action: 'enrol' as 'register', newKey: 1n }), /action must be one of register/],
    ['unregister without currentKey', (ns) => ns.reservationRegister({ action: 'unregister' }), /currentKey is required/],
    ['replace without currentKey', (ns) => ns.reservationRegister({ action: 'replace', newKey: 2n }), /currentKey is required/],
    ['non-boolean ignoreExistingKey', (ns) => ns.reservationRegister({ action: 'register', newKey: 1n, ignoreExistingKey: 1 as unknown as boolean }), /ignoreExistingKey must be a boolean/],
    ['acquire with an unknown type', (ns) => ns.reservationAcquire({ action: 'acquire', type: 'shared' as 'write-exclusive', key: 1n }), /type must be one of write-exclusive/],
    ['acquire with a numeric type', (ns) => ns.reservationAcquire({ action: 'acquire', type: 1 as unknown as 'write-exclusive', key: 1n }), /type must be one of/],
    ['acquire without key', (ns) => ns.reservationAcquire({ action: 'acquire', type: 'write-exclusive' } as never), /key must be a bigint/],
    ['preempt without preemptKey', (ns) => ns.reservationAcquire({ action: 'preempt', type: 'write-exclusive', key: 1n }), /preemptKey .* is required/],
    ['unknown acquire action', (ns) => ns.reservationAcquire({ action: 'steal' as 'acquire', type: 'write-exclusive', key: 1n }), /action must be one of acquire/],
    ['release without type', (ns) => ns.reservationRelease({ action: 'release', key: 1n }), /type .* is required to release/],
    ['clear with a bad key', (ns) => ns.reservationRelease({ action: 'clear', key: '1' as unknown as bigint }), /key must be a bigint/],
    ['report with a non-boolean extended', (ns) => ns.reservationReport({ extended: 'yes' as unknown as boolean }), /extended must be a boolean/],
    ['missing options', (ns) => ns.reservationAcquire(undefined as never), /options object is required/],
  ];
  for (const [what, call, msg] of bad) {
    it(what, async () => {
      const owner = new FakeOwner();
      const err = await call(namespace(owner)).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toMatch(msg);
      expect(owner.sent).toEqual([]);
    });
  }
});

describe('host reservations: unsupported controllers and namespaces are refused before sending', () => {
  it('ONCS without reservations', async () => {
    const owner = new FakeOwner();
    owner.oncs = { ...ALL_ONCS, reservations: false };
    const err = await namespace(owner).reservationReport().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedError);
    expect((err as UnsupportedError).code).toBe(ErrorCode.UNSUPPORTED);
    expect((err as Error).message).toMatch(/ONCS\.reservations/);
    expect(owner.sent).toEqual([]);
  });

  it('RESCAP 0', async () => {
    const owner = new FakeOwner();
    const err = await namespace(owner, 0).reservationRegister({ action: 'register', newKey: 1n }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedError);
    expect((err as Error).message).toMatch(/RESCAP is 0/);
    expect(owner.sent).toEqual([]);
  });

  it('a type RESCAP does not list, and PTPL without RESCAP.PTPL', async () => {
    const owner = new FakeOwner();
    const ns = namespace(owner, 0x02); // write exclusive only
    await expect(ns.reservationAcquire({ action: 'acquire', type: 'exclusive-access', key: 1n })).rejects.toThrow(/does not support exclusive-access reservations/);
    await expect(ns.reservationRegister({ action: 'register', newKey: 1n, persistThroughPowerLoss: true })).rejects.toBeInstanceOf(UnsupportedError);
    expect(owner.sent).toEqual([]);
    await ns.reservationAcquire({ action: 'acquire', type: 'write-exclusive', key: 1n });
    expect(owner.sent.map((s) => s.opcode)).toEqual([0x09, 0x11]);
  });
});

describe('host reservations: commands', () => {
  it('register enables the notifications once (FID 82h, mask 0, this NSID), then sends Register', async () => {
    const owner = new FakeOwner();
    const ns = namespace(owner);
    await ns.reservationRegister({ action: 'register', newKey: 0xabcn, persistThroughPowerLoss: false });
    await ns.reservationRegister({ action: 'replace', currentKey: 0xabcn, newKey: 0xdefn });
    await ns.reservationRegister({ action: 'unregister', currentKey: 0xdefn });
    expect(owner.sent.map((s) => [s.queue, s.opcode])).toEqual([['admin', 0x09], ['io', 0x0d], ['io', 0x0d], ['io', 0x0d]]);
    const mask = owner.sent[0]!;
    expect([mask.cdw10, mask.cdw11, mask.nsid]).toEqual([0x82, 0, 1]);
    expect(owner.sent[1]!.cdw10).toBe(0x80000000); // RREGA 0, CPTPL 10b
    expect(owner.sent[1]!.cmd.data).toEqual(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0xbc, 0x0a, 0, 0, 0, 0, 0, 0]));
    expect(owner.sent[2]!.cdw10).toBe(2);
    expect(owner.sent[3]!.cdw10).toBe(1);
  });

  it('a controller refusing the notification mask does not stop the registration', async () => {
    const owner = new FakeOwner();
    owner.reply = (s) => (s.queue === 'admin' ? status(0, 0x02) : undefined);
    await namespace(owner).reservationRegister({ action: 'register', newKey: 1n, ignoreExistingKey: true });
    expect(owner.sent.map((s) => s.opcode)).toEqual([0x09, 0x0d]);
    expect(owner.sent[1]!.cdw10).toBe(0x08);
  });

  it('acquire, preempt-and-abort and clear carry type, action and keys', async () => {
    const owner = new FakeOwner();
    const ns = namespace(owner);
    await ns.reservationAcquire({ action: 'acquire', type: 'write-exclusive-all-registrants', key: 7n });
    await ns.reservationAcquire({ action: 'preempt-and-abort', type: 'exclusive-access', key: 7n, preemptKey: 9n });
    await ns.reservationRelease({ action: 'release', type: 'exclusive-access', key: 7n });
    await ns.reservationRelease({ action: 'clear', key: 7n });
    // The first Acquire of the handle enables the notifications first (Set Features FID 82h).
    expect(owner.sent.map((s) => [s.opcode, s.cdw10])).toEqual([[0x09, 0x82], [0x11, 0x0500], [0x11, 0x0202], [0x15, 0x0200], [0x15, 0x01]]);
    expect(owner.sent[2]!.cmd.data).toEqual(Buffer.from([7, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]));
    expect(owner.sent[4]!.cmd.data).toEqual(Buffer.from([7, 0, 0, 0, 0, 0, 0, 0]));
  });

  it('report reads the header, then the size REGCTL asks for, and names everything', async () => {
    const owner = new FakeOwner();
    const full = encodeReservationStatus({
      gen: 4,
      rtype: 'write-exclusive',
      registrants: [
        { cntlid: 1, hostid: HOST_A, rkey: 0x1111n },
        { cntlid: 2, hostid: HOST_B, rkey: 0x2222n, holdsReservation: true },
      ],
    }, true);
    owner.reply = () => full;
    const report = await namespace(owner).reservationReport();
    expect(owner.sent.map((s) => [s.opcode, s.cmd.readLength, s.cdw10, s.cdw11])).toEqual([[0x0e, 64, 15, 1], [0x0e, 192, 47, 1]]);
    expect(report).toEqual({
      generation: 4,
      type: 'write-exclusive',
      rtype: 1,
      ptpls: false,
      extended: true,
      holder: { cntlid: 2, hostId: HOST_B.toString('hex'), key: 0x2222n, holdsReservation: true },
      registrants: [
        { cntlid: 1, hostId: HOST_A.toString('hex'), key: 0x1111n, holdsReservation: false },
        { cntlid: 2, hostId: HOST_B.toString('hex'), key: 0x2222n, holdsReservation: true },
      ],
    });
  });

  it('one read when nobody is registered; no holder when no reservation', async () => {
    const owner = new FakeOwner();
    const report = await namespace(owner).reservationReport({ extended: true });
    expect(owner.sent).toHaveLength(1);
    expect(report).toEqual({ generation: 0, type: null, rtype: 0, ptpls: false, extended: true, registrants: [] });
  });

  it('falls back to the standard report on Host Identifier Inconsistent Format', async () => {
    const owner = new FakeOwner();
    const std = encodeReservationStatus({ gen: 1, rtype: 0, registrants: [{ cntlid: 3, hostid: HOST_A.subarray(0, 8), rkey: 5n }] }, false);
    owner.reply = (s) => ((s.cdw11 & 1) === 1 ? status(0, 0x18) : std);
    const report = await namespace(owner).reservationReport();
    expect(owner.sent.map((s) => [s.cmd.readLength, s.cdw11])).toEqual([[64, 1], [24, 0], [48, 0]]);
    expect(report.extended).toBe(false);
    expect(report.registrants).toEqual([{ cntlid: 3, hostId: '6c2f7a0e3b1d4c8e', key: 5n, holdsReservation: false }]);
  });

  it('an explicit extended report does not fall back', async () => {
    const owner = new FakeOwner();
    owner.reply = () => status(0, 0x18);
    const err = await namespace(owner).reservationReport({ extended: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NvmeStatusError);
    expect((err as NvmeStatusError).statusName).toBe('Host Identifier Inconsistent Format');
    expect((err as Error).message).toMatch(/extended report/);
    expect(owner.sent).toHaveLength(1);
  });

  it('re-reads when registrants were added between the header and the full read', async () => {
    const owner = new FakeOwner();
    const reg = (n: number) => Array.from({ length: n }, (_, i) => ({ cntlid: i + 1, hostid: HOST_A, rkey: BigInt(i + 1) }));
    const answers = [1, 3, 3].map((n) => encodeReservationStatus({ gen: n, rtype: 0, registrants: reg(n) }, true));
    owner.reply = () => answers.shift();
    const report = await namespace(owner).reservationReport({ extended: true });
    expect(owner.sent.map((s) => s.cmd.readLength)).toEqual([64, 128, 256]);
    expect(report.registrants).toHaveLength(3);
  });
});

describe('Reservation Notification log reading', () => {
  function page(lpc: bigint, rnlpt: number, nalp: number, nsid: number): Buffer {
    const b = Buffer.alloc(64);
    b.writeBigUInt64LE(lpc, 0);
    b[8] = rnlpt;
    b[9] = nalp;
    b.writeUInt32LE(nsid, 12);
    return b;
  }

  it('reads pages until an empty one and decodes each', async () => {
    const pages = [page(1n, 1, 2, 1), page(2n, 2, 1, 1), page(3n, 3, 0, 2), Buffer.alloc(64)];
    let reads = 0;
    const list = await readReservationNotifications(async () => {
      reads++;
      return pages.shift() ?? Buffer.alloc(64);
    });
    expect(reads).toBe(4);
    expect(list.map(({ log: _log, ...rest }) => rest)).toEqual([
      { type: 'reservation', nsid: 1, notification: 'registration-preempted', logPageCount: 1n },
      { type: 'reservation', nsid: 1, notification: 'reservation-released', logPageCount: 2n },
      { type: 'reservation', nsid: 2, notification: 'reservation-preempted', logPageCount: 3n },
    ]);
  });

  it('skips unknown types, stops at max and on a failed read', async () => {
    let n = 0;
    const skipped = await readReservationNotifications(async () => page(BigInt(++n), n === 1 ? 9 : 2, 0, 1), { max: 3 });
    expect(skipped.map((e) => e.logPageCount)).toEqual([2n, 3n]);
    const errors: Error[] = [];
    const failed = await readReservationNotifications(async () => {
      throw new Error('gone');
    }, { onError: (e) => errors.push(e) });
    expect(failed).toEqual([]);
    expect(errors.map((e) => e.message)).toEqual(['gone']);
  });
});
