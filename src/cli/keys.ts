/**
 * Key tools, as nvme-cli names them: gen-dhchap-key (a DH-HMAC-CHAP secret in the DHHC-1 format), gen-tls-key (a TLS
 * PSK in the NVMeTLSkey-1 interchange format) and check-tls-key (what a target's keyring holds for a host and a
 * subsystem: the PSK identity and the derived TLS PSK).
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { DhchapKey, deriveTlsCredentials, formatTlsKey, parseTlsKey, resolveHostIdentity } from '../index.js';
import { transformKey, validateNqn } from '../protocol/index.js';
import { UsageError, type Values } from './args.js';
import type { Command } from './context.js';

/** `--secret HEX` of exactly `bytes` bytes, or random bytes. */
function secretBytes(v: Values, bytes: number): Buffer {
  const hex = v.str('secret');
  if (hex === undefined) return randomBytes(bytes);
  if (!/^([0-9a-fA-F]{2})+$/.test(hex) || hex.length !== bytes * 2) {
    throw new UsageError(`--secret must be ${bytes} bytes in hex (${bytes * 2} hex digits), got ${hex.length} characters`, v.command);
  }
  return Buffer.from(hex, 'hex');
}

const HMAC_KEY_LENGTH: Record<number, number> = { 1: 32, 2: 48, 3: 64 };

export const genDhchapKeyCommand: Command = {
  name: 'gen-dhchap-key',
  summary: 'generate a DH-HMAC-CHAP secret (DHHC-1 format) for --dhchap-secret and the targets',
  usage: 'gen-dhchap-key [--key-length 32|48|64] [--hmac 0-3] [--nqn NQN] [--secret HEX]',
  description:
    'Prints a DH-HMAC-CHAP secret as `DHHC-1:HH:<base64 of the key and its CRC-32>:`, the form --dhchap-secret, ' +
    "Linux nvmet's dhchap_key and SPDK's keyring take. --hmac 0 (default) prints the secret as it is; --hmac 1, 2 or 3 " +
    '(SHA-256, SHA-384, SHA-512; the key length follows the hash) prints the secret transformed with HMAC over the NQN ' +
    'and "NVMe-over-Fabrics", as nvme-cli does, and records the hash in HH. --nqn defaults to this host\'s NQN ' +
    '(/etc/nvme/hostnqn, or the generated per-host one). --secret gives the secret in hex instead of random bytes.',
  options: {
    'key-length': { type: 'string', arg: 'N', help: 'secret length in bytes: 32, 48 or 64', def: '32, or the hash length with --hmac' },
    hmac: { type: 'string', arg: 'H', help: '0 none, 1 SHA-256, 2 SHA-384, 3 SHA-512', def: '0' },
    nqn: { type: 'string', arg: 'NQN', help: 'the NQN the transform uses (--hmac 1-3)', def: "this host's NQN" },
    secret: { type: 'string', arg: 'HEX', help: 'the secret in hex instead of random bytes' },
  },
  examples: ['nvmeof gen-dhchap-key', 'nvmeof gen-dhchap-key --hmac 2 --nqn nqn.2014-08.org.nvmexpress:uuid:6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f'],
  async run(ctx, v) {
    const hmac = v.int('hmac', 0, 3, 0) as 0 | 1 | 2 | 3;
    const given = v.int('key-length', 32, 64);
    if (given !== undefined && given !== 32 && given !== 48 && given !== 64) throw new UsageError(`--key-length must be 32, 48 or 64, got ${given}`, v.command);
    const length = hmac > 0 ? HMAC_KEY_LENGTH[hmac]! : (given ?? 32);
    if (given !== undefined && given !== length) throw new UsageError(`--key-length ${given} does not fit --hmac ${hmac} (its keys are ${length} bytes)`, v.command);
    const nqn = v.str('nqn') ?? resolveHostIdentity().hostnqn;
    try {
      validateNqn(nqn, { name: 'nqn', strict: false });
    } catch (err) {
      throw new UsageError(`--nqn: ${(err as Error).message}`, v.command);
    }
    const raw = secretBytes(v, length);
    const key = transformKey(new DhchapKey(raw, hmac), nqn);
    const text = new DhchapKey(key, hmac).format();
    raw.fill(0);
    key.fill(0);
    if (ctx.format === 'json') return void ctx.json({ key: text, hmac, keyLength: length, nqn });
    ctx.out(`${text}\n`);
  },
};

export const genTlsKeyCommand: Command = {
  name: 'gen-tls-key',
  summary: 'generate a TLS PSK in the NVMeTLSkey-1 interchange format for --tls-key and the targets',
  usage: 'gen-tls-key [--hmac 1|2] [--secret HEX]',
  description:
    'Prints a configured PSK as `NVMeTLSkey-1:HH:<base64 of the key and its CRC-32>:`, the form --tls-key, SPDK\'s ' +
    "keyring and nvme-cli take: --hmac 1 (default) a 32-byte key for SHA-256, --hmac 2 a 48-byte key for SHA-384. " +
    '--secret gives the key in hex instead of random bytes.',
  options: {
    hmac: { type: 'string', arg: 'H', help: '1 SHA-256 (32 bytes), 2 SHA-384 (48 bytes)', def: '1' },
    secret: { type: 'string', arg: 'HEX', help: 'the key in hex instead of random bytes' },
  },
  examples: ['nvmeof gen-tls-key', 'nvmeof gen-tls-key --hmac 2'],
  async run(ctx, v) {
    const hmac = v.int('hmac', 1, 2, 1) as 1 | 2;
    const key = secretBytes(v, hmac === 1 ? 32 : 48);
    const text = formatTlsKey(key, hmac);
    key.fill(0);
    if (ctx.format === 'json') return void ctx.json({ key: text, hmac });
    ctx.out(`${text}\n`);
  },
};

export const checkTlsKeyCommand: Command = {
  name: 'check-tls-key',
  summary: "check a TLS PSK and print the identity and TLS PSK a host offers a subsystem (what a target's keyring holds)",
  usage: 'check-tls-key --keydata KEY --hostnqn H --subsysnqn S [--identity 0|1] [--compat] [-o json]',
  description:
    'Checks an NVMeTLSkey-1 interchange key (format and CRC-32) and prints its hash, the PSK identity the host sends ' +
    'to the subsystem (v0 "NVMe0R0H <hostnqn> <subnqn>", or v1 with the PSK digest) and the derived TLS PSK in hex, ' +
    "as a target's keyring holds it. --compat derives as older libnvme did (HKDF info without the length bytes).",
  options: {
    keydata: { type: 'string', arg: 'KEY', help: 'the NVMeTLSkey-1 interchange key' },
    hostnqn: { type: 'string', arg: 'NQN', help: 'the host NQN' },
    subsysnqn: { type: 'string', arg: 'NQN', help: 'the subsystem NQN' },
    identity: { type: 'string', arg: 'V', help: 'identity version 0 or 1', def: '0' },
    compat: { type: 'boolean', help: 'derive as older libnvme did' },
  },
  examples: ['nvmeof check-tls-key --keydata NVMeTLSkey-1:01:... --hostnqn nqn.2014-08.org.nvmexpress:uuid:... --subsysnqn nqn.2016-06.io.spdk:cnode1'],
  async run(ctx, v) {
    const text = v.required('keydata', 'the interchange key');
    const hostnqn = v.required('hostnqn', 'the host NQN');
    const subnqn = v.required('subsysnqn', 'the subsystem NQN');
    const version = v.int('identity', 0, 1, 0);
    let creds;
    try {
      creds = deriveTlsCredentials({
        key: parseTlsKey(text),
        hostnqn,
        subnqn,
        identity: version === 1 ? 'v1' : 'v0',
        derivation: v.flag('compat') ? 'libnvme-compat' : 'rfc8446',
      });
    } catch (err) {
      throw new UsageError((err as Error).message, v.command);
    }
    const out = { hash: creds.hash, identity: creds.identity, psk: creds.psk.toString('hex') };
    creds.psk.fill(0);
    if (ctx.format === 'json') return void ctx.json(out);
    ctx.out(`hash      ${out.hash}\nidentity  ${out.identity}\nTLS PSK   ${out.psk}\n`);
  },
};
