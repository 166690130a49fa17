import { describe, expect, it } from 'vitest';
import { decodeConnectInvalidParameter, decodeStatus, describeConnectFailure, statusError } from '../src/protocol/status.js';
import { NvmeStatusError } from '../src/errors.js';

/** Raw status field by hand: SC in bits 8:1, SCT 11:9, CRD 13:12, More 14, DNR 15. */
const st = (sct: number, sc: number, extra = 0): number => (sc << 1) | (sct << 9) | extra;
const DNR = 0x8000;
const MORE = 0x4000;

const CONNECT = { opcode: 0x7f, fctype: 0x01 };
const DISCONNECT = { opcode: 0x7f, fctype: 0x08 };
const IO = (opcode: number) => ({ opcode, admin: false });
const ADMIN = (opcode: number) => ({ opcode, admin: true });

describe('decodeStatus: bit fields', () => {
  it('splits SCT/SC/CRD/More/DNR and ignores the phase tag', () => {
    const s = decodeStatus(st(0, 0x02) | DNR | MORE | (2 << 12) | 1);
    expect(s).toMatchObject({ sct: 0, sc: 2, crd: 2, more: true, dnr: true, name: 'Invalid Field in Command' });
    expect(s.description).toMatch(/Do Not Retry/);
    expect(s.description).toMatch(/CRDT2/);
    expect(s.description).toMatch(/Error Information log/);
  });

  it('success', () => {
    expect(decodeStatus(0)).toMatchObject({ sct: 0, sc: 0, crd: 0, more: false, dnr: false, name: 'Successful Completion' });
    expect(decodeStatus(1).name).toBe('Successful Completion');
  });
});

describe('decodeStatus: generic (SCT 0)', () => {
  it.each([
    [0x01, 'Invalid Command Opcode'],
    [0x04, 'Data Transfer Error'],
    [0x06, 'Internal Error'],
    [0x07, 'Command Abort Requested'],
    [0x0b, 'Invalid Namespace or Format'],
    [0x0c, 'Command Sequence Error'],
    [0x16, 'SGL Offset Invalid'],
    [0x19, 'Keep Alive Timer Expired'],
    [0x1b, 'Command Aborted due to Preempt and Abort'],
    [0x21, 'Command Interrupted'],
    [0x22, 'Transient Transport Error'],
    [0x2a, 'Invalid Placement Handle List'],
    [0x80, 'LBA Out of Range'],
    [0x81, 'Capacity Exceeded'],
    [0x82, 'Namespace Not Ready'],
    [0x83, 'Reservation Conflict'],
    [0x84, 'Format In Progress'],
  ])('SC 0x%s is %s', (sc, name) => {
    const s = decodeStatus(st(0, sc));
    expect(s.name).toBe(name);
    expect(s.description.length).toBeGreaterThan(20);
  });

  it('has a name for every generic code 00h..2Ah except reserved 17h, and 80h..89h', () => {
    for (let sc = 0; sc <= 0x2a; sc++) {
      const name = decodeStatus(st(0, sc)).name;
      if (sc === 0x17) expect(name).toMatch(/^Unknown status/);
      else expect(name).not.toMatch(/^Unknown/);
    }
    for (let sc = 0x80; sc <= 0x89; sc++) expect(decodeStatus(st(0, sc)).name).not.toMatch(/^Unknown/);
  });

  it('reservation conflict tells the engineer what to check', () => {
    expect(decodeStatus(st(0, 0x83), IO(0x01)).description).toMatch(/Reservation Report/);
  });

  it('unknown codes', () => {
    expect(decodeStatus(st(0, 0x7e)).name).toBe('Unknown status (SCT 0x00, SC 0x7e)');
    expect(decodeStatus(st(5, 0x01)).name).toBe('Unknown status (SCT 0x05, SC 0x01)');
    expect(decodeStatus(st(7, 0x12)).name).toMatch(/^Vendor Specific/);
  });
});

describe('decodeStatus: command specific (SCT 1) resolved by command', () => {
  it('SC 0x80 depends on the command', () => {
    expect(decodeStatus(st(1, 0x80), CONNECT).name).toBe('Connect Incompatible Format');
    expect(decodeStatus(st(1, 0x80), IO(0x09)).name).toBe('Conflicting Attributes'); // Dataset Management
    expect(decodeStatus(st(1, 0x80), IO(0x01)).name).toBe('Conflicting Attributes'); // Write
    const ambiguous = decodeStatus(st(1, 0x80));
    expect(ambiguous.name).toBe('Command Specific Status 0x80');
    expect(ambiguous.description).toMatch(/Connect Incompatible Format/);
    expect(ambiguous.description).toMatch(/Conflicting Attributes/);
  });

  it('admin command specific codes 00h..7Fh', () => {
    expect(decodeStatus(st(1, 0x00), ADMIN(0x01)).name).toBe('Completion Queue Invalid');
    expect(decodeStatus(st(1, 0x01), ADMIN(0x05)).name).toBe('Invalid Queue Identifier');
    expect(decodeStatus(st(1, 0x02)).name).toBe('Invalid Queue Size');
    expect(decodeStatus(st(1, 0x03), ADMIN(0x08)).name).toBe('Abort Command Limit Exceeded');
    expect(decodeStatus(st(1, 0x05), ADMIN(0x0c)).name).toBe('Asynchronous Event Request Limit Exceeded');
    expect(decodeStatus(st(1, 0x09), ADMIN(0x02)).name).toBe('Invalid Log Page');
    expect(decodeStatus(st(1, 0x0d), ADMIN(0x09)).name).toBe('Feature Identifier Not Saveable');
    expect(decodeStatus(st(1, 0x24)).name).toBe('ANA Group Identifier Invalid');
    expect(decodeStatus(st(1, 0x04)).name).toMatch(/^Unknown/); // reserved
  });

  it('NVM I/O codes 80h..BFh', () => {
    expect(decodeStatus(st(1, 0x81), IO(0x02)).name).toBe('Invalid Protection Information');
    expect(decodeStatus(st(1, 0x82), IO(0x08)).name).toBe('Attempted Write to Read Only Range');
    expect(decodeStatus(st(1, 0xb9), IO(0x01)).name).toBe('Zone Is Full');
    expect(decodeStatus(st(1, 0x84), IO(0x01)).name).toMatch(/^Unknown/);
  });

  it('Fabrics codes', () => {
    expect(decodeStatus(st(1, 0x81), CONNECT).name).toBe('Connect Controller Busy');
    expect(decodeStatus(st(1, 0x82), CONNECT).name).toBe('Connect Invalid Parameters');
    expect(decodeStatus(st(1, 0x83), CONNECT).name).toBe('Connect Restart Discovery');
    expect(decodeStatus(st(1, 0x84), CONNECT).name).toBe('Connect Invalid Host');
    expect(decodeStatus(st(1, 0x85), DISCONNECT).name).toBe('Invalid Queue Type');
    expect(decodeStatus(st(1, 0x90), ADMIN(0x02)).name).toBe('Discover Restart');
    expect(decodeStatus(st(1, 0x91), IO(0x02)).name).toBe('Authentication Required');
    expect(decodeStatus(st(1, 0x91), ADMIN(0x06)).name).toBe('Authentication Required');
    expect(decodeStatus(st(1, 0x85), ADMIN(0x06)).name).toMatch(/^Unknown/);
  });
});

describe('decodeStatus: media (SCT 2) and path (SCT 3)', () => {
  it.each([
    [0x80, 'Write Fault'],
    [0x81, 'Unrecovered Read Error'],
    [0x82, 'End-to-end Guard Check Error'],
    [0x83, 'End-to-end Application Tag Check Error'],
    [0x84, 'End-to-end Reference Tag Check Error'],
    [0x85, 'Compare Failure'],
    [0x86, 'Access Denied'],
    [0x87, 'Deallocated or Unwritten Logical Block'],
    [0x88, 'End-to-end Storage Tag Check Error'],
  ])('media SC 0x%s is %s', (sc, name) => {
    expect(decodeStatus(st(2, sc)).name).toBe(name);
  });

  it.each([
    [0x00, 'Internal Path Error'],
    [0x01, 'Asymmetric Access Persistent Loss'],
    [0x02, 'Asymmetric Access Inaccessible'],
    [0x03, 'Asymmetric Access Transition'],
    [0x60, 'Controller Pathing Error'],
    [0x70, 'Host Pathing Error'],
    [0x71, 'Command Aborted By Host'],
  ])('path SC 0x%s is %s', (sc, name) => {
    expect(decodeStatus(st(3, sc)).name).toBe(name);
  });

  it('ANA inaccessible suggests another path', () => {
    expect(decodeStatus(st(3, 0x02)).description).toMatch(/path/);
  });
});

describe('Connect failures', () => {
  const who = { hostnqn: 'nqn.2014-08.org.nvmexpress:uuid:0b6e3c46-6f1e-4b7b-9f7c-2b0f1c0e6d11', subnqn: 'nqn.2024-01.io.example:disk1', qid: 0 };

  it('decodes IATTR (byte 2 bit 0) and IPO (bytes 1:0) from DW0', () => {
    expect(decodeConnectInvalidParameter(0x00010200)).toEqual({ iattr: 1, ipo: 512 });
    expect(decodeConnectInvalidParameter(0x0000002c)).toEqual({ iattr: 0, ipo: 44 });
  });

  it('Linux nvmet, host not in allowed_hosts: SCT 1 SC 84h + DNR, DW0 = IATTR 1 / IPO 512', () => {
    const m = describeConnectFailure(st(1, 0x84, DNR), (1 << 16) | 512, who);
    expect(m).toContain(`host ${who.hostnqn} is not allowed to connect to subsystem ${who.subnqn}`);
    expect(m).toMatch(/allowed hosts/);
  });

  it('invalid parameters pointing at HOSTNQN (offset 512 of the data)', () => {
    const m = describeConnectFailure(st(1, 0x82, DNR), (1 << 16) | 512, who);
    expect(m).toContain(`host ${who.hostnqn} is not allowed to connect to subsystem ${who.subnqn}`);
  });

  it('invalid parameters pointing at SUBNQN (offset 256 of the data): unknown subsystem', () => {
    const m = describeConnectFailure(st(1, 0x82, DNR), (1 << 16) | 256, who);
    expect(m).toContain(`subsystem ${who.subnqn} does not exist on this target`);
  });

  it('invalid parameters pointing at CNTLID (16) on an I/O queue', () => {
    const m = describeConnectFailure(st(1, 0x82, DNR), (1 << 16) | 16, { ...who, qid: 3 });
    expect(m).toMatch(/I\/O queue 3/);
    expect(m).toMatch(/CNTLID/);
  });

  it('invalid parameters pointing at SQSIZE (44) and QID (42) in the SQE', () => {
    expect(describeConnectFailure(st(1, 0x82), 44, { ...who, qid: 1 })).toMatch(/SQSIZE.*MQES/);
    expect(describeConnectFailure(st(1, 0x82), 42, { ...who, qid: 9 })).toMatch(/queue ID 9/);
    expect(describeConnectFailure(st(1, 0x82), 48, who)).toMatch(/KATO/);
  });

  it('other Connect statuses', () => {
    expect(describeConnectFailure(st(1, 0x80, DNR), 0, who)).toMatch(/record format/);
    expect(describeConnectFailure(st(1, 0x81, DNR), 0, who)).toMatch(/busy/);
    expect(describeConnectFailure(st(1, 0x83), 0, who)).toMatch(/discovery log/);
    expect(describeConnectFailure(st(1, 0x91), 0, who)).toMatch(/authentication/);
    expect(describeConnectFailure(st(0, 0x06), 0, who)).toMatch(/Internal Error/);
  });
});

describe('statusError', () => {
  it('builds an NvmeStatusError with decoded fields and context', () => {
    const cqe = { dw0: 5, dw1: 6, sqhd: 0, sqid: 1, cid: 42, status: st(0, 0x80, DNR) };
    const e = statusError(cqe, { opcode: 0x02, admin: false, qid: 1 });
    expect(e).toBeInstanceOf(NvmeStatusError);
    expect(e.code).toBe('NVMEOF_ERR_STATUS');
    expect(e).toMatchObject({ sct: 0, sc: 0x80, dnr: true, statusName: 'LBA Out of Range', opcode: 2, command: 'Read', qid: 1, cid: 42, dw0: 5, dw1: 6 });
    expect(e.message).toMatch(/^Read on queue 1 failed: LBA Out of Range/);
  });

  it('uses the Connect description when given the NQNs', () => {
    const cqe = { dw0: (1 << 16) | 512, dw1: 0, sqhd: 0, sqid: 0, cid: 0, status: st(1, 0x84, DNR) };
    const e = statusError(cqe, {
      opcode: 0x7f,
      fctype: 1,
      admin: true,
      qid: 0,
      connect: { hostnqn: 'nqn.2014-08.io.example:host', subnqn: 'testnqn', qid: 0 },
    });
    expect(e.statusName).toBe('Connect Invalid Host');
    expect(e.message).toContain('host nqn.2014-08.io.example:host is not allowed to connect to subsystem testnqn');
    expect(e.command).toBe('Connect');
  });
});
