/**
 * Builds (and tears down) an NVMe-oF target configuration on an SPDK nvmf_tgt from a small declarative
 * description: transports, bdevs, subsystems with their hosts, namespaces, listeners and ANA states, and discovery
 * listeners. The whole description is validated before the first RPC is sent.
 */
import { isIPv6 } from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import {
  SPDK_DISCOVERY_NQN,
  type NvmfCreateTransportParams,
  type NvmfListenAddress,
  type NvmfNamespaceParams,
  type SpdkAnaState,
  type SpdkClient,
} from './client.js';
import { SpdkRpcError } from './rpc-client.js';

/** A transport: `{ trtype: 'TCP' }` plus any `nvmf_create_transport` option. */
export type TopologyTransport = NvmfCreateTransportParams;

/** A RAM (malloc), null or AIO (file-backed) bdev. */
export interface TopologyBdev {
  type: 'malloc' | 'null' | 'aio';
  name: string;
  /** Data block size in bytes (a multiple of 512). Default 512 (AIO: detected from the file). */
  blockSize?: number;
  /** Size in blocks (malloc, null): give this or `sizeMiB`. */
  blocks?: number;
  /** Size in MiB (malloc, null). */
  sizeMiB?: number;
  /** AIO: path of the backing file or block device. */
  filename?: string;
  /** Metadata bytes per block (malloc, null). */
  mdSize?: number;
  /** Metadata interleaved with data (malloc). */
  mdInterleave?: boolean;
  /** Protection information type 0..3 (needs mdSize). */
  difType?: number;
  uuid?: string;
}

/** A namespace of a subsystem. */
export interface TopologyNamespace {
  /** Name of a bdev (from `bdevs` or already present). */
  bdev: string;
  /** Default: lowest free NSID. */
  nsid?: number;
  /** ANA group ID; default the NSID. */
  anaGroup?: number;
  uuid?: string;
  nguid?: string;
  eui64?: string;
  /** File that keeps persistent reservations across target restarts. */
  ptplFile?: string;
}

/** A listener (transport address) of a subsystem or of the discovery subsystem. */
export interface TopologyListener {
  /** Address to listen on, e.g. '127.0.0.1'. */
  traddr: string;
  trsvcid: string | number;
  /** Default 'TCP'. */
  trtype?: string;
  /** Default from `traddr`: 'IPv6' for IPv6 literals, else 'IPv4'. */
  adrfam?: 'IPv4' | 'IPv6';
  /** Initial ANA state of every ANA group on this listener (subsystems with ANA reporting). */
  anaState?: SpdkAnaState;
  /** ANA state per ANA group ID, applied after the listener exists. */
  anaGroupStates?: Record<number, SpdkAnaState>;
  secureChannel?: boolean;
}

/** A host allowed to connect: its NQN, or its NQN with key names. */
export type TopologyHost = string | { nqn: string; psk?: string; dhchapKey?: string; dhchapCtrlrKey?: string };

/** A subsystem. */
export interface TopologySubsystem {
  nqn: string;
  serial?: string;
  model?: string;
  /** Default: true when `hosts` is empty or absent, false otherwise. */
  allowAnyHost?: boolean;
  hosts?: TopologyHost[];
  /** Enable ANA reporting (per-listener ANA states, ANA log page). */
  anaReporting?: boolean;
  /** Default 32 (SPDK's). ANA group IDs must not exceed it. */
  maxNamespaces?: number;
  namespaces?: TopologyNamespace[];
  listeners?: TopologyListener[];
}

/** What to build. */
export interface SpdkTopology {
  /**
   * Transports to create. A transport of the same trtype that already exists is reused when the options given
   * match what it reports; otherwise applyTopology fails.
   */
  transports?: TopologyTransport[];
  bdevs?: TopologyBdev[];
  subsystems?: TopologySubsystem[];
  /** Listeners of the discovery subsystem (nqn.2014-08.org.nvmexpress.discovery). */
  discoveryListeners?: TopologyListener[];
}

/** What was built: the NSIDs SPDK assigned. */
export interface AppliedTopology {
  bdevs: string[];
  subsystems: Array<{ nqn: string; namespaces: Array<{ bdev: string; nsid: number }> }>;
}

const ANA_STATES: readonly string[] = ['optimized', 'non_optimized', 'inaccessible'];

function bad(msg: string): never {
  throw new InvalidArgumentError(`SPDK topology: ${msg}`);
}

function isPosInt(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0;
}

function checkListener(l: TopologyListener, where: string, maxGroup: number | undefined): void {
  if (typeof l.traddr !== 'string' || l.traddr.length === 0) bad(`${where}: traddr is required`);
  const port = Number(l.trsvcid);
  if (!Number.isInteger(port) || port < 1 || port > 65535) bad(`${where}: trsvcid must be a port 1..65535, got ${String(l.trsvcid)}`);
  if (l.anaState !== undefined && !ANA_STATES.includes(l.anaState)) bad(`${where}: anaState must be one of ${ANA_STATES.join(', ')}`);
  for (const [g, s] of Object.entries(l.anaGroupStates ?? {})) {
    const gid = Number(g);
    if (!isPosInt(gid) || (maxGroup !== undefined && gid > maxGroup)) bad(`${where}: ANA group ${g} out of range 1..${maxGroup ?? 'max'}`);
    if (!ANA_STATES.includes(s)) bad(`${where}: ANA state of group ${g} must be one of ${ANA_STATES.join(', ')}`);
  }
}

/** Throws InvalidArgumentError for a description SPDK would reject or that is ambiguous. */
export function validateTopology(t: SpdkTopology): void {
  for (const [i, tr] of (t.transports ?? []).entries()) {
    if (typeof tr.trtype !== 'string' || tr.trtype.length === 0) bad(`transports[${i}]: trtype is required`);
  }
  const names = new Set<string>();
  for (const [i, b] of (t.bdevs ?? []).entries()) {
    const where = `bdevs[${i}] (${b.name})`;
    if (typeof b.name !== 'string' || b.name.length === 0) bad(`bdevs[${i}]: name is required`);
    if (names.has(b.name)) bad(`${where}: duplicate bdev name`);
    names.add(b.name);
    if (b.type !== 'malloc' && b.type !== 'null' && b.type !== 'aio') bad(`${where}: type must be malloc, null or aio`);
    if (b.blockSize !== undefined && !(isPosInt(b.blockSize) && b.blockSize % 512 === 0)) bad(`${where}: blockSize must be a multiple of 512`);
    if (b.type === 'aio') {
      if (typeof b.filename !== 'string' || b.filename.length === 0) bad(`${where}: aio bdevs need a filename`);
    } else {
      if ((b.blocks === undefined) === (b.sizeMiB === undefined)) bad(`${where}: give exactly one of blocks and sizeMiB`);
      if (b.blocks !== undefined && !isPosInt(b.blocks)) bad(`${where}: blocks must be a positive integer`);
      if (b.sizeMiB !== undefined) {
        const bytes = b.sizeMiB * 1024 * 1024;
        if (!(b.sizeMiB > 0) || !Number.isInteger(bytes / (b.blockSize ?? 512))) bad(`${where}: sizeMiB must be a positive whole number of blocks`);
      }
    }
  }
  const nqns = new Set<string>();
  for (const [i, s] of (t.subsystems ?? []).entries()) {
    const where = `subsystems[${i}] (${s.nqn})`;
    if (typeof s.nqn !== 'string' || !s.nqn.startsWith('nqn.')) bad(`subsystems[${i}]: nqn must start with "nqn."`);
    if (nqns.has(s.nqn)) bad(`${where}: duplicate subsystem NQN`);
    nqns.add(s.nqn);
    if (s.maxNamespaces !== undefined && !isPosInt(s.maxNamespaces)) bad(`${where}: maxNamespaces must be a positive integer`);
    const maxGroup = s.maxNamespaces ?? 32;
    const nsids = new Set<number>();
    for (const [j, ns] of (s.namespaces ?? []).entries()) {
      if (typeof ns.bdev !== 'string' || ns.bdev.length === 0) bad(`${where}: namespaces[${j}].bdev is required`);
      if (ns.nsid !== undefined) {
        if (!isPosInt(ns.nsid) || ns.nsid > maxGroup) bad(`${where}: namespaces[${j}].nsid must be 1..${maxGroup}`);
        if (nsids.has(ns.nsid)) bad(`${where}: duplicate nsid ${ns.nsid}`);
        nsids.add(ns.nsid);
      }
      if (ns.anaGroup !== undefined && (!isPosInt(ns.anaGroup) || ns.anaGroup > maxGroup)) {
        bad(`${where}: namespaces[${j}].anaGroup must be 1..${maxGroup}`);
      }
    }
    for (const [j, l] of (s.listeners ?? []).entries()) {
      checkListener(l, `${where} listeners[${j}]`, maxGroup);
      if ((l.anaState !== undefined || l.anaGroupStates !== undefined) && !s.anaReporting) {
        bad(`${where} listeners[${j}]: ANA states need anaReporting: true`);
      }
    }
    for (const h of s.hosts ?? []) {
      const nqn = typeof h === 'string' ? h : h.nqn;
      if (typeof nqn !== 'string' || !nqn.startsWith('nqn.')) bad(`${where}: host NQNs must start with "nqn."`);
    }
  }
  for (const [i, l] of (t.discoveryListeners ?? []).entries()) {
    checkListener(l, `discoveryListeners[${i}]`, undefined);
    if (l.anaState !== undefined || l.anaGroupStates !== undefined) bad(`discoveryListeners[${i}]: the discovery subsystem has no ANA states`);
  }
}

/** The rpc_nvmf_listen_address object of a listener. */
export function listenAddress(l: Pick<TopologyListener, 'traddr' | 'trsvcid' | 'trtype' | 'adrfam'>): NvmfListenAddress {
  return {
    trtype: l.trtype ?? 'TCP',
    adrfam: l.adrfam ?? (isIPv6(l.traddr) ? 'IPv6' : 'IPv4'),
    traddr: l.traddr,
    trsvcid: String(l.trsvcid),
  };
}

async function ensureTransport(client: SpdkClient, tr: TopologyTransport): Promise<void> {
  const existing = (await client.nvmfGetTransports()).find((x) => x.trtype.toLowerCase() === tr.trtype.toLowerCase());
  if (!existing) {
    await client.nvmfCreateTransport(tr);
    return;
  }
  for (const [k, v] of Object.entries(tr)) {
    if (k === 'trtype' || k === 'tgt_name') continue;
    const have = (existing as Record<string, unknown>)[k];
    if (have !== undefined && have !== v) {
      bad(`transport ${tr.trtype} already exists with ${k}=${JSON.stringify(have)}, wanted ${JSON.stringify(v)}`);
    }
  }
}

async function createBdev(client: SpdkClient, b: TopologyBdev): Promise<string> {
  const blockSize = b.blockSize ?? 512;
  const numBlocks = b.blocks ?? ((b.sizeMiB ?? 0) * 1024 * 1024) / blockSize;
  const opt = <T extends object>(o: T): T =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
  switch (b.type) {
    case 'malloc':
      return client.bdevMallocCreate(
        opt({
          name: b.name,
          block_size: blockSize,
          num_blocks: numBlocks,
          md_size: b.mdSize,
          md_interleave: b.mdInterleave,
          dif_type: b.difType,
          uuid: b.uuid,
        }),
      );
    case 'null':
      return client.bdevNullCreate(
        opt({ name: b.name, block_size: blockSize, num_blocks: numBlocks, md_size: b.mdSize, dif_type: b.difType, uuid: b.uuid }),
      );
    case 'aio':
      return client.bdevAioCreate(opt({ name: b.name, filename: b.filename as string, block_size: b.blockSize, uuid: b.uuid }));
  }
}

/**
 * Creates what `t` describes, in dependency order: transports, bdevs, then each subsystem with its hosts,
 * namespaces and listeners (and their ANA states), then discovery listeners. Stops at the first failing RPC
 * (an SpdkRpcError naming the method); what was created before stays (see {@link removeTopology}).
 */
export async function applyTopology(client: SpdkClient, t: SpdkTopology): Promise<AppliedTopology> {
  validateTopology(t);
  const applied: AppliedTopology = { bdevs: [], subsystems: [] };
  for (const tr of t.transports ?? []) await ensureTransport(client, tr);
  for (const b of t.bdevs ?? []) applied.bdevs.push(await createBdev(client, b));
  for (const s of t.subsystems ?? []) {
    const hosts = s.hosts ?? [];
    await client.nvmfCreateSubsystem({
      nqn: s.nqn,
      allow_any_host: s.allowAnyHost ?? hosts.length === 0,
      ...(s.serial !== undefined ? { serial_number: s.serial } : {}),
      ...(s.model !== undefined ? { model_number: s.model } : {}),
      ...(s.anaReporting !== undefined ? { ana_reporting: s.anaReporting } : {}),
      ...(s.maxNamespaces !== undefined ? { max_namespaces: s.maxNamespaces } : {}),
    });
    for (const h of hosts) {
      if (typeof h === 'string') await client.nvmfSubsystemAddHost({ nqn: s.nqn, host: h });
      else {
        await client.nvmfSubsystemAddHost({
          nqn: s.nqn,
          host: h.nqn,
          ...(h.psk !== undefined ? { psk: h.psk } : {}),
          ...(h.dhchapKey !== undefined ? { dhchap_key: h.dhchapKey } : {}),
          ...(h.dhchapCtrlrKey !== undefined ? { dhchap_ctrlr_key: h.dhchapCtrlrKey } : {}),
        });
      }
    }
    const namespaces: Array<{ bdev: string; nsid: number }> = [];
    for (const ns of s.namespaces ?? []) {
      const p: NvmfNamespaceParams = { bdev_name: ns.bdev };
      if (ns.nsid !== undefined) p.nsid = ns.nsid;
      if (ns.anaGroup !== undefined) p.anagrpid = ns.anaGroup;
      if (ns.uuid !== undefined) p.uuid = ns.uuid;
      if (ns.nguid !== undefined) p.nguid = ns.nguid;
      if (ns.eui64 !== undefined) p.eui64 = ns.eui64;
      if (ns.ptplFile !== undefined) p.ptpl_file = ns.ptplFile;
      const nsid = await client.nvmfSubsystemAddNs({ nqn: s.nqn, namespace: p });
      namespaces.push({ bdev: ns.bdev, nsid });
    }
    for (const l of s.listeners ?? []) {
      const address = listenAddress(l);
      await client.nvmfSubsystemAddListener({
        nqn: s.nqn,
        listen_address: address,
        ...(l.anaState !== undefined ? { ana_state: l.anaState } : {}),
        ...(l.secureChannel !== undefined ? { secure_channel: l.secureChannel } : {}),
      });
      for (const [g, state] of Object.entries(l.anaGroupStates ?? {})) {
        await client.nvmfSubsystemListenerSetAnaState({ nqn: s.nqn, listen_address: address, ana_state: state, anagrpid: Number(g) });
      }
    }
    applied.subsystems.push({ nqn: s.nqn, namespaces });
  }
  for (const l of t.discoveryListeners ?? []) {
    await client.nvmfSubsystemAddListener({ nqn: SPDK_DISCOVERY_NQN, listen_address: listenAddress(l) });
  }
  return applied;
}

/**
 * Removes what `t` describes (subsystems, discovery listeners, bdevs; transports stay). Tries every step, skips
 * what does not exist, and rethrows the first other failure at the end.
 */
export async function removeTopology(client: SpdkClient, t: SpdkTopology): Promise<void> {
  let first: unknown;
  const attempt = async (fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      const missing = e instanceof SpdkRpcError && (e.rpcCode === -19 || e.rpcCode === -2 || /not found|does not exist|no such/i.test(e.rpcMessage));
      if (!missing && first === undefined) first = e;
    }
  };
  const present = new Set((await client.nvmfGetSubsystems()).map((s) => s.nqn));
  for (const s of t.subsystems ?? []) {
    if (present.has(s.nqn)) await attempt(() => client.nvmfDeleteSubsystem({ nqn: s.nqn }));
  }
  for (const l of t.discoveryListeners ?? []) {
    await attempt(() => client.nvmfSubsystemRemoveListener({ nqn: SPDK_DISCOVERY_NQN, listen_address: listenAddress(l) }));
  }
  const bdevs = new Set((await client.bdevGetBdevs()).map((b) => b.name));
  for (const b of t.bdevs ?? []) {
    if (!bdevs.has(b.name)) continue;
    if (b.type === 'malloc') await attempt(() => client.bdevMallocDelete({ name: b.name }));
    else if (b.type === 'null') await attempt(() => client.bdevNullDelete({ name: b.name }));
    else await attempt(() => client.bdevAioDelete({ name: b.name }));
  }
  if (first !== undefined) throw first;
}
