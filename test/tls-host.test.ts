/**
 * connect({ tls }) end to end against the embedded target behind a TLS 1.3 PSK server (node:tls; SHA-256 only):
 * every queue handshakes before ICReq with the identity and PSK derived from the interchange key; v1 identities and
 * the libnvme-compat derivation; discovery over TLS; the CLI's --tls flags; failures as NVMEOF_ERR_TLS without keys.
 * SPDK (both suites) is in integration/spdk/tls.test.ts.
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/cli.js';
import { discover, ErrorCode } from '../src/index.js';
import { openMultipath } from '../src/multipath/index.js';
import { DISCOVERY_NQN } from '../src/protocol/nqn.js';
import { deriveTlsCredentials, formatTlsKey, parseTlsKey, type TlsIdentityVersion, type TlsPskDerivation } from '../src/protocol/tls-psk.js';
import { HOSTNQN, SUBNQN, TargetEnv } from './helpers/target-env.js';
import { startTlsTerminator, type TlsTerminator } from './helpers/tls-terminator.js';
import { countEmptyRecords } from './helpers/tls-empty-records.js';

const KEY = formatTlsKey(randomBytes(32), 1);
const OTHER_KEY = formatTlsKey(randomBytes(32), 1);
const keyBody = (k: string): string => k.split(':')[2]!;

function creds(o: { subnqn?: string; identity?: TlsIdentityVersion; derivation?: TlsPskDerivation; key?: string } = {}): Record<string, Buffer> {
  const c = deriveTlsCredentials({ key: parseTlsKey(o.key ?? KEY), hostnqn: HOSTNQN, subnqn: o.subnqn ?? SUBNQN, identity: o.identity, derivation: o.derivation });
  return { [c.identity]: c.psk };
}

const env = new TargetEnv();
let term: TlsTerminator | undefined;
let dir: string;

beforeAll(async () => {
  await env.start({ ns: { blocks: 8192 } });
  dir = await mkdtemp(join(tmpdir(), 'nvmeof-tls-'));
});
afterEach(async () => {
  await term?.close();
  term = undefined;
});
afterAll(async () => {
  await env.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function terminator(keys: Record<string, Buffer>): Promise<TlsTerminator> {
  term = await startTlsTerminator({ backendPort: env.port.port, keys });
  return term;
}

describe('connect({ tls })', () => {
  it('runs TLS 1.3 on the admin queue and every I/O queue, with verified I/O, and reports ctrl.security.tls', async () => {
    const t = await terminator(creds());
    const ctrl = await env.connect({ port: t.port, ioQueues: 3, tls: { key: KEY } });
    const identity = `NVMe0R01 ${HOSTNQN} ${SUBNQN}`;
    expect(ctrl.security).toEqual({ tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', identity } });
    expect(t.sessions).toEqual(Array.from({ length: 4 }, () => ({ identity, protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' })));
    const ns = await ctrl.namespace(1);
    const chunks = Array.from({ length: 24 }, (_, i) => randomBytes(512 * (1 + (i % 9)) * 8));
    let lba = 0n;
    const at = chunks.map((c) => {
      const l = lba;
      lba += BigInt(c.length / 512);
      return l;
    });
    await Promise.all(chunks.map((c, i) => ns.write(at[i]!, c)));
    const back = await Promise.all(chunks.map((c, i) => ns.read(at[i]!, c.length / 512)));
    back.forEach((b, i) => expect(Buffer.compare(b, chunks[i]!), `chunk ${i}`).toBe(0));
    // A 1 MiB read streams in over many chunks: the host sends empty records meanwhile (TlsSocket.sendEmptyRecord),
    // which OpenSSL takes, and the data stays exact.
    const big = randomBytes(1024 * 1024);
    await ns.write(lba, big);
    const empties = await countEmptyRecords(async () => {
      for (let round = 0; round < 3; round++) expect(Buffer.compare(await ns.read(lba, big.length / 512), big)).toBe(0);
    });
    expect(empties).toBeGreaterThan(0);
    // The key is nowhere in the controller's printed form.
    const printed = inspect(ctrl, { depth: 6, showHidden: true });
    expect(printed).not.toContain(keyBody(KEY));
    expect(printed).not.toContain('NVMeTLSkey');
    await ctrl.close();
  });

  it('offers a v1 identity (with the PSK digest) when asked', async () => {
    const keys = creds({ identity: 'v1' });
    const t = await terminator(keys);
    const ctrl = await env.connect({ port: t.port, ioQueues: 1, tls: { key: KEY, identity: 'v1' } });
    expect(ctrl.security.tls?.identity).toBe(Object.keys(keys)[0]);
    expect(ctrl.security.tls?.identity).toMatch(/^NVMe1R01 \S+ \S+ [A-Za-z0-9+/]{43}=$/);
    await ctrl.close();
  });

  it('derives the PSK as older libnvme did with derivation: libnvme-compat, and the two derivations differ', async () => {
    const t = await terminator(creds({ derivation: 'libnvme-compat' }));
    const ctrl = await env.connect({ port: t.port, ioQueues: 1, tls: { key: KEY, derivation: 'libnvme-compat' } });
    expect(ctrl.security.tls?.cipher).toBe('TLS_AES_128_GCM_SHA256');
    await ctrl.close();
    const err = await env.connect({ port: t.port, ioQueues: 1, tls: { key: KEY } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
  });

  it('a wrong key fails with NVMEOF_ERR_TLS, naming the alert and no key', async () => {
    const t = await terminator(creds());
    const err = await env.connect({ port: t.port, ioQueues: 1, tls: { key: OTHER_KEY } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
    expect((err as Error).message).toMatch(/alert \w+/);
    for (const k of [KEY, OTHER_KEY]) expect((err as Error).message).not.toContain(keyBody(k).slice(0, 12));
  });

  it('a plain NVMe/TCP listener fails the handshake with NVMEOF_ERR_TLS', async () => {
    const err = await env.connect({ ioQueues: 1, tls: { key: KEY }, connectTimeout: 5000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TLS });
  });

  it('refuses a malformed key before connecting, without echoing it', async () => {
    const t = await terminator(creds());
    const bad = KEY.replace(/.:$/, (m) => (m[0] === 'A' ? 'B:' : 'A:'));
    for (const tls of [{ key: bad }, { key: 'NVMeTLSkey-1:03:abcd:' }, { key: KEY, identity: 'v2' as TlsIdentityVersion }]) {
      const err = await env.connect({ port: t.port, tls }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
      expect((err as Error).message).not.toContain(keyBody(KEY).slice(0, 12));
    }
    expect(t.sessions).toHaveLength(0);
  });

  it('discover() reads the discovery log over TLS (identity with the discovery NQN)', async () => {
    const t = await terminator(creds({ subnqn: DISCOVERY_NQN }));
    const res = await discover({ host: '127.0.0.1', port: t.port, hostnqn: HOSTNQN, tls: { key: KEY } });
    expect(res.entries.map((e) => e.subnqn)).toContain(SUBNQN);
    expect(t.sessions[0]?.identity).toBe(`NVMe0R01 ${HOSTNQN} ${DISCOVERY_NQN}`);
  });
});

describe('multipath over TLS', () => {
  it('openMultipath({ tls }) runs both paths over TLS, with verified I/O', async () => {
    const t = await terminator(creds());
    const t2 = await startTlsTerminator({ backendPort: env.port.port, keys: creds() });
    try {
      const m = await openMultipath({
        subnqn: SUBNQN,
        nsid: 1,
        hostnqn: HOSTNQN,
        paths: [
          { host: '127.0.0.1', port: t.port },
          { host: '127.0.0.1', port: t2.port },
        ],
        ioQueues: 1,
        tls: { key: KEY },
      });
      try {
        const data = randomBytes(64 * 512);
        await m.write(100n, data);
        expect(Buffer.compare(await m.read(100n, 64), data)).toBe(0);
        expect(t.sessions.length).toBeGreaterThanOrEqual(2);
        expect(t2.sessions.length).toBeGreaterThanOrEqual(2);
        expect([...t.sessions, ...t2.sessions].every((x) => x.protocol === 'TLSv1.3' && x.identity === `NVMe0R01 ${HOSTNQN} ${SUBNQN}`)).toBe(true);
        // The key is nowhere in the printed multipath namespace (its paths and controllers included).
        expect(inspect(m, { depth: 8, showHidden: true })).not.toContain(keyBody(KEY));
      } finally {
        await m.close();
      }
    } finally {
      await t2.close();
    }
  });
});

describe('cli --tls', () => {
  async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await main(args, { stdout: { write: (c: string | Uint8Array) => ((stdout += c.toString()), true) }, stderr: { write: (c: string | Uint8Array) => ((stderr += c.toString()), true) } });
    return { code, stdout, stderr };
  }

  it('--tls-key and --tls-key-file connect over TLS; mistakes are usage errors; a wrong key exits 3', async () => {
    const t = await terminator(creds());
    const file = join(dir, 'psk');
    await writeFile(file, `${KEY}\n`, { mode: 0o600 });
    const base = ['id-ctrl', '-a', '127.0.0.1', '-s', String(t.port), '-n', SUBNQN, '-q', HOSTNQN, '-o', 'json'];
    const a = await run([...base, '--tls', '--tls-key', KEY]);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toMatchObject({ subnqn: SUBNQN });
    const b = await run([...base, '--tls-key-file', file]);
    expect(b.code, b.stderr).toBe(0);
    expect(t.sessions.length).toBeGreaterThanOrEqual(2);
    const noKey = await run([...base, '--tls']);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/--tls needs the PSK/);
    const both = await run([...base, '--tls-key', KEY, '--tls-key-file', file]);
    expect(both.code).toBe(2);
    const wrong = await run([...base, '--tls-key', OTHER_KEY]);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/TLS/);
    for (const r of [a, b, noKey, both, wrong]) {
      expect(r.stdout + r.stderr).not.toContain(keyBody(KEY));
      expect(r.stdout + r.stderr).not.toContain(keyBody(OTHER_KEY));
    }
  });
});
