/**
 * Spec numbers are named once, in src/protocol: status codes, opcodes and TermReq FES/FEI pairs elsewhere go through
 * the protocol's names (GenericStatus, AdminOpcode, PduField, protocolError, ...). This test reads the sources and
 * fails on the bare forms, so a number restated by hand cannot come back unnoticed.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PduField, TermReqFes, protocolError } from '../src/protocol/pdu.js';

const SRC = join(__dirname, '..', 'src');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Bare spec numbers outside src/protocol, each with what to use instead. */
const RULES: { what: string; re: RegExp }[] = [
  { what: 'new ProtocolError(...): use protocolError.invalidField/sequence/outOfRange/... (FES with its FEI)', re: /new ProtocolError\(/ },
  { what: 'a status, opcode or log/feature id compared with a number: use the protocol constants', re: /\b(sct|sc|opcode|fctype|lid|fid|cns)\s*(===|!==)\s*(0x[0-9a-fA-F]+|\d+)\b/ },
  { what: 'a status code as a number: use GenericStatus, AdminCommandStatus, FabricsStatus, ...', re: /\bfail\(\s*(Sct|StatusCodeType)\.\w+\s*,\s*(0x[0-9a-fA-F]+|\d+)/ },
  { what: 'an opcode as a number: use AdminOpcode, NvmOpcode, FABRICS_OPCODE', re: /\bopcode:\s*0x[0-9a-fA-F]+/ },
  { what: 'an FEI as a number: use PduField', re: /\blookup\([^)]*,\s*\d+(\s*\+\s*\d+)?\)/ },
];

describe('spec numbers are named once, in src/protocol', () => {
  it('no bare status codes, opcodes or FES/FEI pairs outside src/protocol', () => {
    const found: string[] = [];
    for (const file of sources(SRC)) {
      const rel = relative(SRC, file);
      if (rel.startsWith('protocol')) continue;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (/^\s*(\/\/|\*)/.test(line)) return;
          for (const r of RULES) if (r.re.test(line)) found.push(`src/${rel}:${i + 1}: ${r.what}\n    ${line.trim()}`);
        });
    }
    expect(found, found.join('\n')).toEqual([]);
  });

  it('the rules catch what they are meant to catch', () => {
    const samples = [
      "throw new ProtocolError('x', TermReqFes.PDU_SEQUENCE_ERROR, 4);",
      'if (err.sct === 2 && err.sc === 0x85) return;',
      'return fail(Sct.Generic, 0x20);',
      "statusError(cqe, { opcode: 0x0c, admin: true });",
      "this.lookup(cid, 'completion', 8 + 12);",
    ];
    for (const [i, line] of samples.entries()) expect(RULES[i]!.re.test(line), line).toBe(true);
  });

  it('FEI carries a field offset only for FES 1 and 6, as the spec defines it', () => {
    expect(protocolError.invalidField('x', PduField.DATAO)).toMatchObject({ fes: TermReqFes.INVALID_HEADER_FIELD, fei: 12 });
    expect(protocolError.unsupported('x', PduField.IC_PFV)).toMatchObject({ fes: TermReqFes.UNSUPPORTED_PARAMETER, fei: 8 });
    expect(protocolError.sequence('x')).toMatchObject({ fes: 2, fei: 0 });
    expect(protocolError.outOfRange('x')).toMatchObject({ fes: 4, fei: 0 });
    expect(protocolError.limitExceeded('x')).toMatchObject({ fes: 5, fei: 0 });
    expect(protocolError.malformed('x')).toMatchObject({ fes: 0, fei: 0 });
    // Header field offsets from the NVMe/TCP PDU layouts: common header, then the PDU specific header.
    expect(PduField).toMatchObject({ TYPE: 0, FLAGS: 1, HLEN: 2, PDO: 3, PLEN: 4, CCCID: 8, TTAG: 10, DATAO: 12, DATAL: 16, CQE_CID: 20, IC_PFV: 8, IC_PDA: 10, IC_DGST: 11, IC_MAXDATA: 12 });
  });
});
