/**
 * A discovery log entry as JSON, for both `nvmeof discover`/`monitor` (src/cli) and `nvmeof serve`: one shape, with the
 * names of the two security fields as the only difference (each is documented: docs/cli.md, docs/serve.md).
 */
import type { DiscoveryEntry } from '../index.js';

/**
 * How the entry's TREQ secure channel requirement and TSAS security type are named: `cli` uses nvme-cli's names
 * (`treq`, `sectype`), `serve` the library's (`secureChannel`, `tcpSecurity`).
 */
export type EntryFieldNames = 'cli' | 'serve';

const NAMES: Record<EntryFieldNames, { treq: string; sectype: string }> = {
  cli: { treq: 'treq', sectype: 'sectype' },
  serve: { treq: 'secureChannel', sectype: 'tcpSecurity' },
};

/** The fields of an entry a reader can act on (the raw record and buffers stay out). */
export function discoveryEntryJson(e: DiscoveryEntry, names: EntryFieldNames): Record<string, unknown> {
  const n = NAMES[names];
  return {
    subtype: e.subtype,
    transport: e.transport,
    addressFamily: e.addressFamily,
    traddr: e.traddr,
    trsvcid: e.trsvcid,
    subnqn: e.subnqn,
    portid: e.portid,
    cntlid: e.cntlid,
    asqsz: e.asqsz,
    [n.treq]: e.treq.secureChannel,
    [n.sectype]: e.tcpSecurity,
    eflags: { duplicateReturnedInfo: e.eflags.duplicateReturnedInfo, explicitPersistentConnection: e.eflags.explicitPersistentConnection, noCdcConnectivity: e.eflags.noCdcConnectivity },
    source: { traddr: e.source.traddr, trsvcid: e.source.trsvcid, subnqn: e.source.subnqn, depth: e.source.depth },
  };
}
