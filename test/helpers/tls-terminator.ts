/**
 * A TLS 1.3 PSK server in front of a plain NVMe/TCP port (node:tls, which serves an external PSK only with
 * TLS_AES_128_GCM_SHA256): lets unit tests run the host's TLS path against the embedded target. Real targets (SPDK)
 * are tested in integration/spdk/tls.test.ts; this one records what each connection negotiated.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';

export interface TlsTerminator {
  port: number;
  /** One entry per accepted TLS connection: the PSK identity the client offered and the negotiated protocol/cipher. */
  sessions: { identity: string; protocol: string | null; cipher: string }[];
  /** Identities offered that had no key. */
  refused: string[];
  close(): Promise<void>;
}

export async function startTlsTerminator(o: { backendPort: number; keys: Record<string, Buffer> }): Promise<TlsTerminator> {
  const sockets = new Set<net.Socket>();
  const t: TlsTerminator = { port: 0, sessions: [], refused: [], close: async () => {} };
  const identities = new WeakMap<object, string>();
  const server = tls.createServer(
    {
      minVersion: 'TLSv1.3',
      ciphers: 'TLS_AES_128_GCM_SHA256',
      pskCallback: (socket, identity) => {
        identities.set(socket, identity);
        const key = o.keys[identity];
        if (!key) t.refused.push(identity);
        return key ?? null;
      },
    },
    (clear) => {
      const back = net.connect({ host: '127.0.0.1', port: o.backendPort });
      sockets.add(back);
      back.on('close', () => sockets.delete(back));
      const c = clear.getCipher();
      t.sessions.push({ identity: identities.get(clear) ?? '', protocol: clear.getProtocol(), cipher: c.standardName ?? c.name });
      clear.pipe(back).pipe(clear);
      clear.on('error', () => back.destroy());
      back.on('error', () => clear.destroy());
      clear.on('close', () => back.destroy());
      back.on('close', () => clear.destroy());
    },
  );
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.port = (server.address() as net.AddressInfo).port;
  t.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return t;
}
