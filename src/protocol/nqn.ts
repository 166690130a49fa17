/**
 * NVMe Qualified Names (NQNs) and UUIDs.
 *
 * The Base spec ("NVMe Qualified Names") defines two forms, at most 223 bytes of UTF-8:
 * - `nqn.yyyy-mm.<reverse domain name>[:<string unique within the naming authority>]`,
 *   e.g. `nqn.2014-08.org.nvmexpress.discovery`, `nqn.2016-06.io.spdk:cnode1`;
 * - `nqn.2014-08.org.nvmexpress:uuid:<UUID>` (11111111-2222-3333-4444-555555555555 form).
 *
 * Real targets are laxer: Linux nvmet accepts any subsystem name (test setups often use names
 * such as `testnqn`). `validateNqn(..., { strict: false })` checks only what the wire needs.
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';

/** The well-known NQN of discovery controllers. */
export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';
/** Longest NQN in bytes (UTF-8), excluding the terminating NUL. */
export const NQN_MAX_BYTES = 223;
/** Size of an NQN field in Connect data, Identify Controller and discovery log entries. */
export const NQN_FIELD_SIZE = 256;
/** Prefix of the UUID-based NQN form. */
export const UUID_NQN_PREFIX = 'nqn.2014-08.org.nvmexpress:uuid:';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LABEL = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?';
const DOMAIN_FORM_RE = new RegExp(`^nqn\\.(\\d{4})-(\\d{2})\\.${LABEL}(?:\\.${LABEL})*(?::(.+))?$`, 'is');
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/** Options of {@link validateNqn}. */
export interface ValidateNqnOptions {
  /** Argument name used in error messages (default "nqn"). */
  name?: string;
  /**
   * true (default): require one of the spec's two forms. false: require only a non-empty string
   * of at most 223 UTF-8 bytes without control characters (what targets such as nvmet accept).
   */
  strict?: boolean;
}

/** Why `nqn` is not acceptable, or undefined when it is. */
export function nqnProblem(nqn: unknown, strict = true): string | undefined {
  if (typeof nqn !== 'string') return 'must be a string';
  if (nqn.length === 0) return 'must not be empty';
  const bytes = Buffer.byteLength(nqn, 'utf8');
  if (bytes > NQN_MAX_BYTES) return `is ${bytes} bytes long; an NQN is at most ${NQN_MAX_BYTES} bytes of UTF-8`;
  if (CONTROL_RE.test(nqn)) return 'must not contain control characters';
  if (!strict) return undefined;
  if (nqn.toLowerCase().startsWith(UUID_NQN_PREFIX)) {
    const uuid = nqn.slice(UUID_NQN_PREFIX.length);
    return UUID_RE.test(uuid) ? undefined : `has the UUID form but "${uuid}" is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)`;
  }
  const m = DOMAIN_FORM_RE.exec(nqn);
  if (!m) return `must look like "nqn.yyyy-mm.reverse.domain:name" or "${UUID_NQN_PREFIX}<uuid>"`;
  const month = Number(m[2]);
  if (month < 1 || month > 12) return `has an invalid month "${m[2]}" in its date code`;
  if (m[3] !== undefined && m[3].trim() === '') return 'has an empty name after ":"';
  return undefined;
}

/** True when `nqn` is a valid NQN (strict form unless `strict` is false). */
export function isValidNqn(nqn: string, strict = true): boolean {
  return nqnProblem(nqn, strict) === undefined;
}

/** Throw InvalidArgumentError unless `nqn` is a valid NQN. */
export function validateNqn(nqn: string, opts: ValidateNqnOptions = {}): void {
  const problem = nqnProblem(nqn, opts.strict ?? true);
  if (problem !== undefined) {
    const shown = typeof nqn === 'string' ? ` (${JSON.stringify(nqn.length > 80 ? `${nqn.slice(0, 80)}...` : nqn)})` : '';
    throw new InvalidArgumentError(`${opts.name ?? 'nqn'}${shown} ${problem}`);
  }
}

/** The UUID-based host NQN: 'nqn.2014-08.org.nvmexpress:uuid:' + uuid (lower-cased). */
export function uuidHostNqn(uuid: string): string {
  if (typeof uuid !== 'string' || !UUID_RE.test(uuid)) {
    throw new InvalidArgumentError(`uuid must look like xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, got ${JSON.stringify(uuid)}`);
  }
  return UUID_NQN_PREFIX + uuid.toLowerCase();
}

/** Parse a UUID string (8-4-4-4-12 hex digits) into its 16 bytes, in the order written. */
export function parseUuid(s: string): Buffer {
  if (typeof s !== 'string' || !UUID_RE.test(s)) {
    throw new InvalidArgumentError(`invalid UUID ${JSON.stringify(s)}: expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`);
  }
  return Buffer.from(s.replace(/-/g, ''), 'hex');
}

/** Format 16 bytes as a lower-case UUID string. */
export function formatUuid(b: Uint8Array): string {
  if (!(b instanceof Uint8Array) || b.length !== 16) throw new InvalidArgumentError('a UUID is exactly 16 bytes');
  const h = Buffer.from(b.buffer, b.byteOffset, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The UUID inside a UUID-form NQN, or undefined for other forms. */
export function uuidFromNqn(nqn: string): string | undefined {
  if (!nqn.toLowerCase().startsWith(UUID_NQN_PREFIX)) return undefined;
  const uuid = nqn.slice(UUID_NQN_PREFIX.length);
  return UUID_RE.test(uuid) ? uuid.toLowerCase() : undefined;
}

/** Write `nqn` as a NUL-padded field of `size` bytes at `offset` (the caller validates the NQN). */
export function writeNqnField(buf: Buffer, offset: number, nqn: string, size = NQN_FIELD_SIZE): void {
  const bytes = Buffer.from(nqn, 'utf8');
  if (bytes.length >= size) throw new InvalidArgumentError(`NQN of ${bytes.length} bytes does not fit a ${size}-byte field`);
  buf.fill(0, offset, offset + size);
  bytes.copy(buf, offset);
}

/** Read a NUL-terminated (or NUL/space padded) NQN field. */
export function readNqnField(buf: Buffer, offset: number, size = NQN_FIELD_SIZE): string {
  const field = buf.subarray(offset, offset + size);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? field.length : nul).toString('utf8').trimEnd();
}
