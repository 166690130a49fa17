/**
 * Commands that read controller state: discover, list-subsys, list, id-ctrl, id-ns, ana-log, get-log, get-feature.
 */
import { Buffer } from 'node:buffer';
import { UnsupportedError, connect, type Controller, discover, type DiscoveryEntry, type DiscoveryResult } from '../index.js';
import * as cmds from '../protocol/index.js';
import { FeatureId, NSID_ALL, featureName, logPageName, type IdentifyController, type IdentifyNamespace, type PowerStateDescriptor, type AnaLog } from '../protocol/index.js';
import {
  DISCOVERY_OPTIONS,
  TARGET_OPTIONS,
  UsageError,
  addressesOf,
  checkTransport,
  connectFlags,
  discoveryFlags,
  namespaceOption,
  portOf,
  type Address,
  type OptionSpecs,
  type Values,
} from './args.js';
import { ExitCode, closeQuietly, connecting, exitCodeOf, withController, type Command, type Ctx } from './context.js';
import { discoveryEntryJson as entryJson } from '../serve/entry-json.js';
import { errorJson, formatBytes, formatFields, formatTable, hex, hexDump, toJson, writeAll } from './output.js';

// ---------------------------------------------------------------------------------------------
// discover

/** The JSON shape of a discovery log entry (nvme-cli's names for TREQ and the TCP security type). */
export function discoveryEntryJson(e: DiscoveryEntry): Record<string, unknown> {
  return entryJson(e, 'cli');
}

const SUBTYPE_LABEL: Record<DiscoveryEntry['subtype'], string> = { nvm: 'nvm', referral: 'referral', 'current-discovery': 'discovery', unknown: 'unknown' };

/** The discovery entries as an aligned table. */
export function discoveryTable(entries: readonly DiscoveryEntry[]): string {
  return formatTable(
    ['TYPE', { header: 'PORTID', align: 'right' }, 'TRADDR', 'TRSVCID', 'SUBNQN', 'TREQ', 'SECTYPE'],
    entries.map((e) => [SUBTYPE_LABEL[e.subtype], String(e.portid), e.traddr, e.trsvcid, e.subnqn, e.treq.secureChannel, e.tcpSecurity ?? '-']),
  );
}

function discoverJson(r: DiscoveryResult): unknown {
  return {
    genctr: r.genctr,
    visited: r.visited.map((c) => ({ traddr: c.traddr, trsvcid: c.trsvcid, subnqn: c.subnqn, depth: c.depth, genctr: c.genctr, numrec: c.numrec })),
    entries: r.entries.map(discoveryEntryJson),
    referrals: r.referrals.map(discoveryEntryJson),
    errors: r.errors.map((e) => ({ traddr: e.traddr, trsvcid: e.trsvcid, subnqn: e.subnqn, depth: e.depth, error: errorJson(e.error) })),
  };
}

export const discoverCommand: Command = {
  name: 'discover',
  summary: 'read the discovery log of a discovery controller',
  usage: 'discover -a ADDR [-s PORT] [--follow-referrals] [options]',
  description:
    'Connects to a discovery controller, reads its discovery log (GENCTR-consistent) and lists the NVM subsystem and ' +
    'discovery entries. With --follow-referrals the referrals are walked too (loops and duplicates are skipped).',
  options: {
    'follow-referrals': { type: 'boolean', help: 'read the discovery controllers that referrals point to' },
    'max-depth': { type: 'string', arg: 'N', help: 'how many referrals deep to follow', def: '8' },
  },
  connection: DISCOVERY_OPTIONS,
  examples: ['nvmeof discover -a 192.0.2.10', 'nvmeof discover -a 192.0.2.10 -s 8009 --follow-referrals -o json'],
  async run(ctx, v) {
    const flags = discoveryFlags(v);
    const addr = addressesOf(v, portOf(v, 8009))[0];
    if (!addr) v.required('traddr', 'the discovery controller address');
    const depth = v.int('max-depth', 0, 64);
    const follow = v.flag('follow-referrals') ? (depth === undefined ? true : { maxDepth: depth }) : false;
    const r = await connecting(discover({ ...flags, host: addr!.host, port: addr!.port, followReferrals: follow, signal: ctx.signal }));
    if (ctx.format === 'json') {
      ctx.json(discoverJson(r));
      return;
    }
    for (const c of r.visited) {
      ctx.out(`Discovery log of ${c.traddr}:${c.trsvcid}${c.depth > 0 ? ` (referral, depth ${c.depth})` : ''}: ${c.numrec} record${c.numrec === 1 ? '' : 's'}, generation ${c.genctr}\n`);
    }
    ctx.out(r.entries.length === 0 ? 'No subsystems.\n' : discoveryTable(r.entries));
    if (r.referrals.length > 0) {
      ctx.out('\nReferrals:\n');
      ctx.out(discoveryTable(r.referrals));
    }
    for (const e of r.errors) ctx.err(`warning: referral ${e.traddr}:${e.trsvcid} could not be read: ${e.error.message}\n`);
  },
};

// ---------------------------------------------------------------------------------------------
// Subsystem enumeration (list-subsys, list)

/** -a is repeatable for commands that take several paths. */
const MULTI_TARGET_OPTIONS: OptionSpecs = {
  ...TARGET_OPTIONS,
  traddr: { ...TARGET_OPTIONS.traddr!, multiple: true, help: 'address of a path ("host:port" allowed), or of a discovery controller when -n is not given' },
  trsvcid: { ...TARGET_OPTIONS.trsvcid!, multiple: true, help: 'TCP port (one for all addresses, or one per address)', def: '4420 with -n, else 8009' },
  nqn: { ...TARGET_OPTIONS.nqn!, help: 'subsystem NQN; without it, every subsystem the discovery controller at -a lists' },
};

/** Subsystem NQN -> addresses: from -n and -a, or from the discovery log of the controllers at -a. */
async function subsystemsOf(ctx: Ctx, v: Values): Promise<Map<string, Address[]>> {
  const nqn = v.str('nqn');
  const addrs = addressesOf(v, nqn ? 4420 : 8009);
  if (addrs.length === 0) v.required('traddr', nqn ? 'an address of the subsystem' : 'a discovery controller address');
  const out = new Map<string, Address[]>();
  if (nqn) {
    out.set(nqn, addrs);
    return out;
  }
  for (const a of addrs) {
    const r = await connecting(
      discover({
        host: a.host,
        port: a.port,
        ...discoveryFlags(v, { nqn: false }),
        signal: ctx.signal,
      }),
    );
    for (const e of r.entries) {
      if (e.subtype !== 'nvm' || e.transport !== 'tcp') continue;
      const port = Number(e.trsvcid);
      if (!Number.isInteger(port) || port < 1 || port > 65535) continue;
      const list = out.get(e.subnqn) ?? [];
      if (!list.some((x) => x.host === e.traddr && x.port === port)) list.push({ host: e.traddr, port });
      out.set(e.subnqn, list);
    }
  }
  return out;
}

function adminOnly(ctx: Ctx, v: Values, subnqn: string, a: Address) {
  return { ...connectFlags(v, { ioQueues: 0, events: false }, subnqn), host: a.host, port: a.port, signal: ctx.signal };
}

function anaGroupsOf(log: AnaLog | undefined): { group: number; state: string }[] {
  return (log?.groups ?? []).map((g) => ({ group: g.anagrpid, state: g.stateName }));
}

interface PathInfo {
  traddr: string;
  trsvcid: string;
  state: 'live' | 'unreachable';
  cntlid: number | null;
  anaGroups: { group: number; state: string }[];
  error: { code: string | null; message: string } | null;
}

export const listSubsysCommand: Command = {
  name: 'list-subsys',
  summary: 'show subsystems and the state of each path (controller) to them',
  usage: 'list-subsys -a ADDR [-a ADDR...] -n NQN [options]\n       nvmeof list-subsys -a DISCOVERY-ADDR [-s 8009] [options]',
  description:
    'Connects to every address of a subsystem (or of every subsystem a discovery controller lists) and shows, per ' +
    'subsystem, its model and serial number and, per path, the controller ID, whether it is reachable and the ANA ' +
    'state of each ANA group through it. Exits 0 when at least one path is live.',
  options: {},
  connection: MULTI_TARGET_OPTIONS,
  examples: ['nvmeof list-subsys -a 192.0.2.10 -a 192.0.2.11 -n nqn.2024-01.com.example:disk1', 'nvmeof list-subsys -a 192.0.2.10 -s 8009 -o json'],
  async run(ctx, v) {
    checkTransport(v);
    const subsystems = await subsystemsOf(ctx, v);
    const result: { nqn: string; model: string | null; serial: string | null; firmware: string | null; paths: PathInfo[] }[] = [];
    let firstError: unknown;
    let live = 0;
    for (const [nqn, addrs] of subsystems) {
      const entry = { nqn, model: null as string | null, serial: null as string | null, firmware: null as string | null, paths: [] as PathInfo[] };
      const attempts = await Promise.allSettled(addrs.map((a) => connecting(connect(adminOnly(ctx, v, nqn, a)))));
      for (const [i, r] of attempts.entries()) {
        const a = addrs[i]!;
        if (r.status === 'fulfilled') {
          const c = r.value;
          live++;
          entry.model ??= c.identity.mn;
          entry.serial ??= c.identity.sn;
          entry.firmware ??= c.identity.fr;
          entry.paths.push({ traddr: a.host, trsvcid: String(a.port), state: 'live', cntlid: c.cntlid, anaGroups: anaGroupsOf(c.anaLog), error: null });
        } else {
          firstError ??= r.reason;
          entry.paths.push({ traddr: a.host, trsvcid: String(a.port), state: 'unreachable', cntlid: null, anaGroups: [], error: errorJson(r.reason as Error) });
        }
      }
      await Promise.all(attempts.map((r) => (r.status === 'fulfilled' ? closeQuietly(r.value) : undefined)));
      result.push(entry);
    }
    if (ctx.format === 'json') ctx.json({ subsystems: result });
    else if (result.length === 0) ctx.out('No subsystems.\n');
    else {
      const rows: string[][] = [];
      for (const s of result) {
        s.paths.forEach((p, i) => {
          const ana = p.anaGroups.map((g) => `${g.group}:${g.state}`).join(' ');
          rows.push([
            i === 0 ? s.nqn : '',
            i === 0 ? (s.model ?? '-') : '',
            `${p.traddr.includes(':') ? `[${p.traddr}]` : p.traddr}:${p.trsvcid}`,
            p.cntlid === null ? '-' : String(p.cntlid),
            p.state,
            p.state === 'live' ? ana || '-' : (p.error?.message ?? ''),
          ]);
        });
      }
      ctx.out(formatTable(['SUBSYSTEM', 'MODEL', 'PATH', { header: 'CNTLID', align: 'right' }, 'STATE', 'ANA GROUPS'], rows));
    }
    // Every path failed: say why (the table shows each path's error) and exit with that error's code.
    if (live === 0 && firstError !== undefined) throw firstError;
    return ExitCode.OK;
  },
};

interface NamespaceRow {
  subnqn: string;
  nsid: number;
  traddr: string;
  trsvcid: string;
  cntlid: number;
  serial: string;
  model: string;
  firmware: string;
  blocks: bigint;
  blockSize: number;
  metadataSize: number;
  sizeBytes: bigint;
  nguid: string | null;
  eui64: string | null;
  uuid: string | null;
  anaGroup: number | null;
  anaState: string | null;
}

export const listCommand: Command = {
  name: 'list',
  summary: 'list the namespaces of a subsystem (or of every subsystem a discovery controller lists)',
  usage: 'list -a ADDR -n NQN [options]\n       nvmeof list -a DISCOVERY-ADDR [-s 8009] [options]',
  description:
    'Connects to each subsystem through the first address that answers and lists its active namespaces: size, LBA ' +
    'format, ANA group and state, identifiers, and the controller\'s serial number, model and firmware revision. ' +
    'Exits with the connection error\'s code when a subsystem cannot be reached at any address.',
  options: {},
  connection: MULTI_TARGET_OPTIONS,
  examples: ['nvmeof list -a 192.0.2.10 -n nqn.2024-01.com.example:disk1', 'nvmeof list -a 192.0.2.10 -s 8009 -o json'],
  async run(ctx, v) {
    checkTransport(v);
    const subsystems = await subsystemsOf(ctx, v);
    const rows: NamespaceRow[] = [];
    let firstError: unknown;
    for (const [nqn, addrs] of subsystems) {
      let ctrl: Controller | undefined;
      let lastErr: unknown;
      for (const a of addrs) {
        try {
          ctrl = await connecting(connect(adminOnly(ctx, v, nqn, a)));
          break;
        } catch (err) {
          lastErr = err;
        }
      }
      if (!ctrl) {
        firstError ??= lastErr;
        const code = (lastErr as { code?: unknown }).code;
        ctx.err(`nvmeof list: ${nqn}: no address answered: ${(lastErr as Error).message}${typeof code === 'string' ? ` [${code}]` : ''}\n`);
        continue;
      }
      try {
        for (const nsid of await ctrl.activeNamespaceIds()) {
          const ns = await ctrl.namespace(nsid);
          rows.push({
            subnqn: nqn,
            nsid,
            traddr: ctrl.host,
            trsvcid: String(ctrl.port),
            cntlid: ctrl.cntlid,
            serial: ctrl.identity.sn,
            model: ctrl.identity.mn,
            firmware: ctrl.identity.fr,
            blocks: ns.blocks,
            blockSize: ns.blockSize,
            metadataSize: ns.identity.metadataSize,
            sizeBytes: ns.sizeBytes,
            nguid: ns.nguid ?? null,
            eui64: ns.eui64 ?? null,
            uuid: ns.uuid ?? null,
            anaGroup: ctrl.identity.decoded.cmic.anaReporting ? ns.anaGroup : null,
            anaState: ns.anaState ?? null,
          });
        }
      } finally {
        await closeQuietly(ctrl);
      }
    }
    if (ctx.format === 'json') ctx.json({ namespaces: rows });
    else if (rows.length === 0) ctx.out('No namespaces.\n');
    else {
      ctx.out(
        formatTable(
          [{ header: 'NSID', align: 'right' }, { header: 'SIZE', align: 'right' }, 'FORMAT', 'ANA', 'SUBSYSTEM', 'PATH', 'SERIAL', 'MODEL', 'FW'],
          rows.map((r) => [
            String(r.nsid),
            formatBytes(r.sizeBytes),
            `${r.blockSize} B + ${r.metadataSize} B`,
            r.anaState === null ? '-' : `${r.anaGroup}:${r.anaState}`,
            r.subnqn,
            `${r.traddr}:${r.trsvcid}`,
            r.serial,
            r.model,
            r.firmware,
          ]),
        ),
      );
    }
    return firstError === undefined ? ExitCode.OK : exitCodeOf(firstError);
  },
};

// ---------------------------------------------------------------------------------------------
// id-ctrl, id-ns

const HEX_FIELDS = new Set([
  'vid', 'ssvid', 'ieee', 'cmic', 'ver', 'oaes', 'ctratt', 'rrls', 'bpcap', 'plsi', 'crcap', 'nvmsr', 'vwci', 'mec',
  'oacs', 'frmw', 'lpa', 'avscc', 'apsta', 'hctma', 'sanicap', 'anacap', 'oncs', 'fuses', 'fna', 'vwc', 'icsvscc',
  'nwpc', 'ocfs', 'sgls', 'fcatt', 'ofcs', 'dsto', 'kpioc', 'tmpthha', 'trattr',
  'nsfeat', 'flbas', 'mc', 'dpc', 'dps', 'nmic', 'rescap', 'fpi', 'dlfeat', 'nsattr', 'kpios',
]);

function flagNames(decoded: unknown): string {
  if (decoded === null || typeof decoded !== 'object') return '';
  const on = Object.entries(decoded as Record<string, unknown>).filter(([, b]) => b === true).map(([k]) => k);
  return on.length === 0 ? '' : `  [${on.join(' ')}]`;
}

/** "name : value" rows of an identify structure: bit fields in hex (with decoded flags when `human`), counts in decimal. */
function identifyRows(obj: object, skip: ReadonlySet<string>, decoded: Record<string, unknown>, human: boolean): [string, string][] {
  const rows: [string, string][] = [];
  for (const [k, val] of Object.entries(obj)) {
    if (skip.has(k)) continue;
    let s: string;
    if (val instanceof Uint8Array) s = Buffer.from(val).toString('hex');
    else if (typeof val === 'bigint') s = val.toString();
    else if (typeof val === 'number') s = HEX_FIELDS.has(k) ? hex(val) : String(val);
    else if (typeof val === 'string') s = val;
    else continue;
    if (human && k in decoded) s += flagNames(decoded[k]);
    rows.push([k, s]);
  }
  return rows;
}

function psdText(p: PowerStateDescriptor): string {
  const watts = (p.mp * (p.mxps ? 0.0001 : 0.01)).toFixed(4).replace(/\.?0+$/, '');
  return `mp:${watts}W ${p.nops ? 'non-' : ''}operational enlat:${p.enlat} exlat:${p.exlat} rrt:${p.rrt} rrl:${p.rrl} rwt:${p.rwt} rwl:${p.rwl}`;
}

const ID_CTRL_SKIP = new Set(['raw', 'vs', 'psd', 'decoded', 'version']);

/** The JSON shape of Identify Controller (every field; bigints and byte fields as strings). */
export function idCtrlJson(id: IdentifyController): unknown {
  return toJson(id, new Set(['raw', 'vs']));
}

async function writeBinary(ctx: Ctx, data: Uint8Array): Promise<void> {
  await writeAll(ctx.io.stdout, data);
}

export const idCtrlCommand: Command = {
  name: 'id-ctrl',
  summary: 'show the Identify Controller data structure',
  usage: 'id-ctrl -a ADDR -n NQN [-H] [options]',
  description:
    'Connects (admin queue only) and prints the Identify Controller data: every field by its spec abbreviation, bit ' +
    'fields in hex (with -H, followed by the names of the bits that are set), power states, and the fabrics fields. ' +
    '-o binary writes the 4096 raw bytes.',
  options: {
    'human-readable': { type: 'boolean', short: 'H', help: 'name the bits set in each bit field' },
    'raw-binary': { type: 'boolean', short: 'b', help: 'write the raw 4096 bytes (same as -o binary)' },
  },
  connection: TARGET_OPTIONS,
  formats: ['normal', 'json', 'binary'],
  examples: ['nvmeof id-ctrl -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -H', 'nvmeof id-ctrl -a 192.0.2.10 -n nqn.2014-08.org.nvmexpress.discovery -s 8009 -o json'],
  async run(ctx, v) {
    const id = await withController(ctx, v, { ioQueues: 0, events: false }, async (c) => c.identity);
    if (ctx.format === 'binary' || v.flag('raw-binary')) return void (await writeBinary(ctx, id.raw));
    if (ctx.format === 'json') return void ctx.json(idCtrlJson(id));
    const rows = identifyRows(id, ID_CTRL_SKIP, id.decoded as unknown as Record<string, unknown>, v.flag('human-readable'));
    const verIndex = rows.findIndex(([k]) => k === 'ver');
    if (verIndex >= 0) rows[verIndex]![1] += `  (NVMe ${id.version.major}.${id.version.minor}${id.version.tertiary ? `.${id.version.tertiary}` : ''})`;
    id.psd.forEach((p, i) => rows.push([`ps ${String(i).padStart(4)}`, psdText(p)]));
    ctx.out(formatFields(rows));
  },
};

const ID_NS_SKIP = new Set(['raw', 'vs', 'lbaf', 'decoded', 'currentLbaFormat', 'lbafIndex', 'blockSize', 'metadataSize', 'metadataExtended']);

/** The JSON shape of Identify Namespace. */
export function idNsJson(nsid: number, identity: IdentifyNamespace, ids: { nguid?: string; eui64?: string; uuid?: string }, ana: { group: number | null; state: string | null }): unknown {
  return {
    nsid,
    blockSize: identity.blockSize,
    metadataSize: identity.metadataSize,
    blocks: identity.nsze,
    sizeBytes: identity.nsze * BigInt(identity.blockSize),
    nguid: ids.nguid ?? null,
    eui64: ids.eui64 ?? null,
    uuid: ids.uuid ?? null,
    anaGroup: ana.group,
    anaState: ana.state,
    identify: toJson(identity, new Set(['raw', 'vs'])),
  };
}

export const idNsCommand: Command = {
  name: 'id-ns',
  summary: 'show the Identify Namespace data structure of a namespace',
  usage: 'id-ns -a ADDR -n NQN [-N NSID] [-H] [options]',
  description:
    'Connects (admin queue only) and prints Identify Namespace for one namespace: sizes, features, LBA formats (the one ' +
    'in use is marked), ANA group, and the namespace identifiers (NGUID, EUI-64, UUID from the descriptor list). ' +
    '-o binary writes the 4096 raw bytes.',
  options: {
    ...namespaceOption('1'),
    'human-readable': { type: 'boolean', short: 'H', help: 'name the bits set in each bit field' },
    'raw-binary': { type: 'boolean', short: 'b', help: 'write the raw 4096 bytes (same as -o binary)' },
  },
  connection: TARGET_OPTIONS,
  formats: ['normal', 'json', 'binary'],
  examples: ['nvmeof id-ns -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -N 1', 'nvmeof id-ns -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -N 2 -o json'],
  async run(ctx, v) {
    const nsid = v.int('namespace-id', 1, 0xfffffffe, 1);
    const r = await withController(ctx, v, { ioQueues: 0, events: false }, async (c) => {
      const ns = await c.namespace(nsid);
      return { ns, anaReporting: c.identity.decoded.cmic.anaReporting };
    });
    const { ns } = r;
    const id = ns.identity;
    if (ctx.format === 'binary' || v.flag('raw-binary')) return void (await writeBinary(ctx, id.raw));
    const ana = { group: r.anaReporting ? ns.anaGroup : null, state: ns.anaState ?? null };
    if (ctx.format === 'json') {
      return void ctx.json(idNsJson(nsid, id, { ...(ns.nguid ? { nguid: ns.nguid } : {}), ...(ns.eui64 ? { eui64: ns.eui64 } : {}), ...(ns.uuid ? { uuid: ns.uuid } : {}) }, ana));
    }
    const rows = identifyRows(id, ID_NS_SKIP, id.decoded as unknown as Record<string, unknown>, v.flag('human-readable'));
    const at = rows.findIndex(([k]) => k === 'nguid');
    const ids: [string, string][] = [
      ['uuid', ns.uuid ?? '-'],
      ['ana state', ana.state ?? '-'],
    ];
    rows.splice(at < 0 ? rows.length : at + 2, 0, ...ids);
    id.lbaf.forEach((f, i) => rows.push([`lbaf ${String(i).padStart(2)}`, `ms:${f.ms} lbads:${f.lbads} (${f.dataSize} B) rp:${f.rp}${i === id.lbafIndex ? ' (in use)' : ''}`]));
    ctx.out(`Namespace ${nsid}: ${ns.blocks} blocks of ${ns.blockSize} B (${formatBytes(ns.sizeBytes)})\n`);
    ctx.out(formatFields(rows));
  },
};

// ---------------------------------------------------------------------------------------------
// ana-log

/** The JSON shape of an ANA log page. */
export function anaLogJson(log: AnaLog): unknown {
  return {
    chgcnt: log.chgcnt,
    ngrps: log.ngrps,
    groups: log.groups.map((g) => ({ anagrpid: g.anagrpid, state: g.stateName, stateValue: g.state, chgcnt: g.chgcnt, nnsids: g.nnsids, nsids: g.nsids })),
  };
}

export const anaLogCommand: Command = {
  name: 'ana-log',
  summary: 'show the Asymmetric Namespace Access log: ANA groups, their state through this port, their namespaces',
  usage: 'ana-log -a ADDR -n NQN [--groups-only] [options]',
  description:
    'Connects (admin queue only) and reads the ANA log page (LID 0Ch) through the port at -a/-s: the change count and, ' +
    'for each ANA group, its state as seen through this controller and the namespaces in it.',
  options: {
    'groups-only': { type: 'boolean', help: 'Return Groups Only (LSP bit 0): group states without namespace lists' },
  },
  connection: TARGET_OPTIONS,
  examples: ['nvmeof ana-log -a 192.0.2.10 -n nqn.2024-01.com.example:disk1', 'nvmeof ana-log -a 192.0.2.11 -n nqn.2024-01.com.example:disk1 -o json'],
  async run(ctx, v) {
    const rgo = v.flag('groups-only');
    const { log, ctrl } = await withController(ctx, v, { ioQueues: 0, events: false }, async (c) => {
      if (!c.identity.decoded.cmic.anaReporting) throw new UnsupportedError(`controller ${c.cntlid} of ${c.subnqn} does not report ANA (Identify Controller CMIC bit 3 is 0)`);
      return { log: await c.refreshAnaState({ rgo }), ctrl: { cntlid: c.cntlid, subnqn: c.subnqn, host: c.host, port: c.port } };
    });
    if (ctx.format === 'json') return void ctx.json({ subnqn: ctrl.subnqn, traddr: ctrl.host, trsvcid: String(ctrl.port), cntlid: ctrl.cntlid, ...(anaLogJson(log) as object) });
    ctx.out(`ANA log of ${ctrl.subnqn} through ${ctrl.host}:${ctrl.port} (controller ${ctrl.cntlid}): change count ${log.chgcnt}, ${log.ngrps} group${log.ngrps === 1 ? '' : 's'}\n`);
    ctx.out(
      formatTable(
        [{ header: 'GROUP', align: 'right' }, 'STATE', { header: 'CHGCNT', align: 'right' }, 'NSIDS'],
        log.groups.map((g) => [String(g.anagrpid), g.stateName, String(g.chgcnt), rgo ? '-' : g.nsids.join(',') || '-']),
      ),
    );
  },
};

// ---------------------------------------------------------------------------------------------
// get-log


export const getLogCommand: Command = {
  name: 'get-log',
  summary: 'read any log page (Get Log Page) and print it as hex, JSON or raw bytes',
  usage: 'get-log -a ADDR -n NQN -i LID -l LEN [--lsp N] [--lpo OFFSET] [--rae] [options]',
  description:
    'Connects (admin queue only) and reads LEN bytes of log page LID. Reads larger than one transfer are split with the ' +
    'Log Page Offset. Without --rae the read acknowledges the asynchronous event that named the page. The output is ' +
    'a hex dump; -o json gives the bytes as a hex string, -o binary (or -b) the raw bytes.',
  options: {
    'log-id': { type: 'string', short: 'i', arg: 'LID', help: 'log page identifier (e.g. 2 SMART, 0xc ANA, 0x70 discovery)' },
    'log-len': { type: 'string', short: 'l', arg: 'LEN', help: 'bytes to read (a multiple of 4)' },
    lsp: { type: 'string', arg: 'N', help: 'log specific parameter', def: '0' },
    lsi: { type: 'string', arg: 'N', help: 'log specific identifier', def: '0' },
    lpo: { type: 'string', arg: 'OFFSET', help: 'log page offset in bytes (a multiple of 4)', def: '0' },
    rae: { type: 'boolean', help: 'retain asynchronous event (do not acknowledge it)' },
    ...namespaceOption('0xffffffff'),
    'raw-binary': { type: 'boolean', short: 'b', help: 'write the raw bytes (same as -o binary)' },
  },
  connection: TARGET_OPTIONS,
  formats: ['normal', 'json', 'binary'],
  examples: ['nvmeof get-log -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -i 2 -l 512', 'nvmeof get-log -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -i 0xc -l 4096 --rae -b > ana.bin'],
  async run(ctx, v) {
    const lid = parseRequiredInt(v, 'log-id', 0, 0xff, 'the log page identifier');
    const length = parseRequiredInt(v, 'log-len', 4, 0x7ffffffc, 'the number of bytes to read');
    if (length % 4 !== 0) throw new UsageError(`--log-len must be a multiple of 4, got ${length}`, v.command);
    const offset = v.int('lpo', 0, Number.MAX_SAFE_INTEGER, 0);
    if (offset % 4 !== 0) throw new UsageError(`--lpo must be a multiple of 4, got ${offset}`, v.command);
    const lsp = v.int('lsp', 0, 0x7f, 0);
    const lsi = v.int('lsi', 0, 0xffff, 0);
    const nsid = v.int('namespace-id', 0, 0xffffffff, NSID_ALL);
    const rae = v.flag('rae');
    const data = await withController(ctx, v, { ioQueues: 0, events: false }, (c) => c.readLog({ lid, length, offset, nsid, lsp, lsi, rae, signal: ctx.signal }));
    if (ctx.format === 'binary' || v.flag('raw-binary')) return void (await writeBinary(ctx, data));
    if (ctx.format === 'json') return void ctx.json({ logId: lid, name: logPageName(lid), nsid, lsp, lsi, offset, rae, length: data.length, data: data.toString('hex') });
    ctx.out(`Log page ${hex(lid, 2)} (${logPageName(lid)}), ${data.length} bytes at offset ${offset}, nsid ${hex(nsid)}:\n`);
    ctx.out(hexDump(data, offset));
  },
};

function parseRequiredInt(v: Values, name: string, min: number, max: number, what: string): number {
  v.required(name, what);
  return v.int(name, min, max)!;
}

// ---------------------------------------------------------------------------------------------
// get-feature


const SEL_NAMES = ['current', 'default', 'saved', 'supported'] as const;

/** Features whose Get Features returns a data structure, and its size. */
function featureDataLength(fid: number, cdw11: number): number | undefined {
  switch (fid) {
    case FeatureId.LbaRangeType: return 4096;
    case FeatureId.AutonomousPowerStateTransition: return 256;
    case FeatureId.HostMemoryBuffer: return 4096;
    case FeatureId.Timestamp: return 8;
    case FeatureId.HostIdentifier: return cdw11 & 1 ? 16 : 8;
    default: return undefined;
  }
}

const bit = (v: number, n: number) => ((v >>> n) & 1) === 1;

/** Named fields of a feature value, for the features the spec gives a simple layout. */
export function decodeFeature(fid: number, v: number, sel: number): Record<string, number | boolean> | undefined {
  if (sel === 3) return { saveable: bit(v, 0), namespaceSpecific: bit(v, 1), changeable: bit(v, 2) };
  switch (fid) {
    case FeatureId.Arbitration: return { ab: v & 7, lpw: (v >>> 8) & 0xff, mpw: (v >>> 16) & 0xff, hpw: (v >>> 24) & 0xff };
    case FeatureId.PowerManagement: return { ps: v & 0x1f, wh: (v >>> 5) & 7 };
    case FeatureId.TemperatureThreshold: return { tmpth: v & 0xffff, tmpsel: (v >>> 16) & 0xf, thsel: (v >>> 20) & 3 };
    case FeatureId.ErrorRecovery: return { tler: v & 0xffff, dulbe: bit(v, 16) };
    case FeatureId.VolatileWriteCache: return { wce: bit(v, 0) };
    case FeatureId.NumberOfQueues: return { nsqa: (v & 0xffff) + 1, ncqa: (v >>> 16) + 1 };
    case FeatureId.InterruptCoalescing: return { thr: v & 0xff, time: (v >>> 8) & 0xff };
    case FeatureId.WriteAtomicityNormal: return { dn: bit(v, 0) };
    case FeatureId.AsyncEventConfiguration:
      return { smart: v & 0xff, namespaceAttribute: bit(v, 8), firmwareActivation: bit(v, 9), telemetryLog: bit(v, 10), anaChange: bit(v, 11), discoveryLogChange: bit(v, 31) };
    case FeatureId.KeepAliveTimer: return { katoMs: v >>> 0 };
    case FeatureId.ReservationNotificationMask: return { regpre: bit(v, 1), resrel: bit(v, 2), respre: bit(v, 3) };
    case FeatureId.ReservationPersistence: return { ptpl: bit(v, 0) };
    default: return undefined;
  }
}

export const getFeatureCommand: Command = {
  name: 'get-feature',
  summary: 'read a feature (Get Features): its value, decoded where the layout is simple, and any data',
  usage: 'get-feature -a ADDR -n NQN -f FID [--sel SEL] [--cdw11 V] [-N NSID] [options]',
  description:
    'Connects (admin queue only) and reads one feature. The value (completion DW0) is printed in hex and, for common ' +
    'features, split into its fields. Features that return a data structure (LBA Range Type, Timestamp, Host ' +
    'Identifier, ...) are read with the right length and shown as hex. For Host Identifier (0x81) CDW11 defaults to 1 ' +
    '(the 128-bit host ID fabrics use).',
  options: {
    'feature-id': { type: 'string', short: 'f', arg: 'FID', help: 'feature identifier (e.g. 7 Number of Queues, 0xf Keep Alive Timer)' },
    sel: { type: 'string', arg: 'SEL', help: 'select: 0/current, 1/default, 2/saved, 3/supported (capabilities)', def: '0' },
    cdw11: { type: 'string', arg: 'V', help: 'command dword 11 (feature specific)', def: '0' },
    'data-len': { type: 'string', short: 'l', arg: 'LEN', help: 'bytes of data to read (default: what the feature returns)' },
    ...namespaceOption('0'),
    'raw-binary': { type: 'boolean', short: 'b', help: 'write the data structure as raw bytes (same as -o binary)' },
  },
  connection: TARGET_OPTIONS,
  formats: ['normal', 'json', 'binary'],
  examples: ['nvmeof get-feature -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -f 7', 'nvmeof get-feature -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -f 0x81 -o json'],
  async run(ctx, v) {
    const fid = parseRequiredInt(v, 'feature-id', 0, 0xff, 'the feature identifier');
    const selText = v.str('sel');
    const selIndex = selText === undefined ? 0 : (SEL_NAMES as readonly string[]).indexOf(selText.toLowerCase());
    const sel = selIndex >= 0 ? selIndex : v.int('sel', 0, 3, 0);
    const cdw11 = v.int('cdw11', 0, 0xffffffff, fid === FeatureId.HostIdentifier ? 1 : 0);
    const nsid = v.int('namespace-id', 0, 0xffffffff, 0);
    const readLength = v.int('data-len', 1, 1024 * 1024) ?? (sel === 3 ? undefined : featureDataLength(fid, cdw11));
    const c = await withController(ctx, v, { ioQueues: 0, events: false }, (ctrl) =>
      ctrl.adminCommand(cmds.getFeatures({ fid, sel, nsid, cdw11, ...(readLength === undefined ? {} : { readLength }) }), { signal: ctx.signal }),
    );
    const value = c.cqe.dw0 >>> 0;
    const data = c.data?.subarray(0, c.received);
    if (ctx.format === 'binary' || v.flag('raw-binary')) return void (await writeBinary(ctx, data ?? Buffer.alloc(0)));
    const decoded = decodeFeature(fid, value, sel);
    if (ctx.format === 'json') {
      return void ctx.json({
        fid,
        name: featureName(fid),
        sel,
        selName: SEL_NAMES[sel] ?? String(sel),
        nsid,
        cdw11,
        value,
        valueHex: hex(value, 8),
        decoded: decoded ?? null,
        data: data ? data.toString('hex') : null,
      });
    }
    ctx.out(`Feature ${hex(fid, 2)} (${featureName(fid)}), ${SEL_NAMES[sel] ?? sel} value: ${hex(value, 8)}\n`);
    if (decoded) ctx.out(formatFields(Object.entries(decoded).map(([k, x]) => [`  ${k}`, String(x)] as [string, string])));
    if (data && data.length > 0) ctx.out(hexDump(data));
  },
};
