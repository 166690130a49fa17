/**
 * The host's TLS options (`connect({ tls })`): the interchange key, the identity format and the derivation, turned
 * into the identity and TLS PSK offered on every queue of one association.
 */
import { InvalidArgumentError } from '../errors.js';
import { deriveTlsCredentials, parseTlsKey, type TlsIdentityVersion, type TlsPskCredentials, type TlsPskDerivation } from '../protocol/tls-psk.js';
import type { TlsSessionInfo } from '../transport/tls13/client.js';

/** TLS 1.3 with a pre-shared key on every queue (NVMe/TCP secure channel). */
export interface TlsOptions {
  /** The configured PSK in the interchange format `NVMeTLSkey-1:HH:<base64>:` (as `nvme gen-tls-key` prints it). */
  key: string;
  /** PSK identity format: 'v0' `NVMe0R0H <hostnqn> <subnqn>` (default; the only one SPDK accepts) or 'v1' with the PSK digest. */
  identity?: TlsIdentityVersion;
  /** 'rfc8446' (default), or 'libnvme-compat' for keyrings built by libnvme releases whose HKDF info lacked the lengths. */
  derivation?: TlsPskDerivation;
}

/** The TLS channel of an association (`ctrl.security.tls`). */
export interface TlsInfo {
  protocol: TlsSessionInfo['protocol'];
  cipher: TlsSessionInfo['cipher'];
  /** The PSK identity the target accepted. */
  identity: string;
}

/** Validate `tls` and derive what the host offers; errors never contain the key. */
export function tlsCredentials(tls: TlsOptions, hostnqn: string, subnqn: string): TlsPskCredentials {
  if (!tls || typeof tls !== 'object') throw new InvalidArgumentError('tls must be an object { key, identity?, derivation? }');
  if (tls.identity !== undefined && tls.identity !== 'v0' && tls.identity !== 'v1') throw new InvalidArgumentError(`tls.identity must be 'v0' or 'v1'`);
  if (tls.derivation !== undefined && tls.derivation !== 'rfc8446' && tls.derivation !== 'libnvme-compat') {
    throw new InvalidArgumentError(`tls.derivation must be 'rfc8446' or 'libnvme-compat'`);
  }
  const key = parseTlsKey(tls.key);
  return deriveTlsCredentials({ key, hostnqn, subnqn, identity: tls.identity, derivation: tls.derivation });
}
