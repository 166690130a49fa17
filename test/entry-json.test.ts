/**
 * One JSON shape for a discovery log entry in the CLI and the daemon: the same fields and values, with nvme-cli's
 * `treq`/`sectype` in the CLI and `secureChannel`/`tcpSecurity` in `nvmeof serve` (docs/cli.md, docs/serve.md).
 */
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { discoveryEntryJson as cliEntry } from '../src/cli/admin.js';
import { entryJson as serveEntry } from '../src/serve/daemon.js';
import { toDiscoveryEntry } from '../src/host/discovery.js';
import { parseDiscoveryLog } from '../src/protocol/logpages.js';

describe('discovery entry JSON', () => {
  // One 1024-byte entry written out by hand (NVMe Base 2.0 figure "Discovery Log Page Entry"): TCP, IPv4, NVM
  // subsystem, TREQ secure channel required, port 2, CNTLID FFFFh, ASQSZ 32, EFLAGS explicit persistent connection.
  const page = Buffer.alloc(1024 + 1024);
  page.writeBigUInt64LE(5n, 0); // GENCTR
  page.writeBigUInt64LE(1n, 8); // NUMREC
  const e = page.subarray(1024);
  e[0] = 3; // TRTYPE TCP
  e[1] = 1; // ADRFAM IPv4
  e[2] = 2; // SUBTYPE NVM subsystem
  e[3] = 1; // TREQ: secure channel required
  e.writeUInt16LE(2, 4); // PORTID
  e.writeUInt16LE(0xffff, 6); // CNTLID
  e.writeUInt16LE(32, 8); // ASQSZ
  e.writeUInt16LE(0x0002, 10); // EFLAGS: explicit persistent connection support
  e.write('4420', 32, 'latin1'); // TRSVCID
  e.write('nqn.2024-01.io.example:disk', 256, 'latin1'); // SUBNQN
  e.write('192.0.2.10', 512, 'latin1'); // TRADDR
  e[768] = 2; // TSAS SECTYPE 2: TLS 1.3
  const entry = toDiscoveryEntry(parseDiscoveryLog(page).entries[0]!, { traddr: '192.0.2.1', trsvcid: '8009', subnqn: 'nqn.2014-08.org.nvmexpress.discovery', depth: 0 });

  it('the CLI names TREQ and the security type as nvme-cli does, the daemon as the library does; nothing else differs', () => {
    const cli = cliEntry(entry);
    const serve = serveEntry(entry);
    expect(cli).toEqual({
      subtype: 'nvm',
      transport: 'tcp',
      addressFamily: 'ipv4',
      traddr: '192.0.2.10',
      trsvcid: '4420',
      subnqn: 'nqn.2024-01.io.example:disk',
      portid: 2,
      cntlid: 0xffff,
      asqsz: 32,
      treq: 'required',
      sectype: 'tls1.3',
      eflags: { duplicateReturnedInfo: false, explicitPersistentConnection: true, noCdcConnectivity: false },
      source: { traddr: '192.0.2.1', trsvcid: '8009', subnqn: 'nqn.2014-08.org.nvmexpress.discovery', depth: 0 },
    });
    const { treq, sectype, ...rest } = cli;
    expect(serve).toEqual({ ...rest, secureChannel: treq, tcpSecurity: sectype });
    expect(Object.keys(serve)).toEqual(Object.keys(cli).map((k) => (k === 'treq' ? 'secureChannel' : k === 'sectype' ? 'tcpSecurity' : k)));
  });
});
