/**
 * Host identity: the host NQN and 128-bit host ID sent in every Connect.
 *
 * Resolution order, as nvme-cli does: explicit options, then /etc/nvme/hostnqn and /etc/nvme/hostid when present,
 * then one UUID-based identity generated once per process (so every controller of the process looks like one host).
 */
import { readFileSync } from 'node:fs';
import { createHash, randomUUID } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import { validateNqn, uuidHostNqn, parseUuid, formatUuid } from '../protocol/nqn.js';

/** The host NQN and host ID sent in every Connect. */
export interface HostIdentity {
  /** Host NQN. */
  hostnqn: string;
  /** Host identifier as a UUID string (16 bytes on the wire). */
  hostid: string;
}

/** Options of {@link resolveHostIdentity}. */
export interface HostIdentityOptions {
  /** Host NQN to use. */
  hostnqn?: string;
  /** Host ID (UUID) to use. */
  hostid?: string;
  /** Directory holding hostnqn/hostid files; default /etc/nvme. Pass null to skip reading files. */
  configDir?: string | null;
}

let processIdentity: HostIdentity | undefined;

function readTrimmed(path: string): string | undefined {
  try {
    const s = readFileSync(path, 'utf8').trim();
    return s.length > 0 ? s : undefined;
  } catch {
    return undefined;
  }
}

const UUID_NQN_PREFIX = 'nqn.2014-08.org.nvmexpress:uuid:';

/** Resolve and validate the host identity for a connection. */
export function resolveHostIdentity(opts: HostIdentityOptions = {}): HostIdentity {
  const dir = opts.configDir === undefined ? '/etc/nvme' : opts.configDir;
  let hostnqn = opts.hostnqn;
  let hostid = opts.hostid;
  if (hostnqn === undefined && dir !== null) hostnqn = readTrimmed(`${dir}/hostnqn`);
  if (hostid === undefined && dir !== null && opts.hostnqn === undefined) hostid = readTrimmed(`${dir}/hostid`);
  if (hostnqn === undefined) {
    if (hostid !== undefined) {
      hostnqn = uuidHostNqn(normaliseHostId(hostid));
    } else {
      processIdentity ??= (() => {
        const uuid = randomUUID();
        return { hostnqn: uuidHostNqn(uuid), hostid: uuid };
      })();
      return { ...processIdentity };
    }
  }
  validateNqn(hostnqn, { name: 'hostnqn', strict: false });
  if (hostid === undefined) {
    // A UUID-form host NQN carries its host ID; otherwise derive a stable one from the NQN.
    hostid = hostnqn.startsWith(UUID_NQN_PREFIX) ? hostnqn.slice(UUID_NQN_PREFIX.length) : stableUuidFrom(hostnqn);
  }
  return { hostnqn, hostid: normaliseHostId(hostid) };
}

function normaliseHostId(hostid: string): string {
  try {
    return formatUuid(parseUuid(hostid));
  } catch (err) {
    throw new InvalidArgumentError(`host ID must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got ${JSON.stringify(hostid)}`, { cause: err });
  }
}

/** A deterministic UUID (version 8 layout) derived from a string, so one NQN always maps to one host ID. */
function stableUuidFrom(s: string): string {
  const bytes = createHash('sha256').update(s).digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return formatUuid(bytes);
}
