/**
 * A byte-level NBD client for tests: sends exactly the bytes a test writes and reads replies field by field, so tests
 * can do what no well-behaved client does (unknown options, options twice, bad magic, truncated requests).
 */
import * as net from 'node:net';
import { Buffer } from 'node:buffer';
import { once } from 'node:events';

export class RawNbd {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  closed = false;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.waiter?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    sock.on('error', () => {});
  }

  static async connect(port: number): Promise<RawNbd> {
    const sock = net.connect(port, '127.0.0.1');
    await once(sock, 'connect');
    return new RawNbd(sock);
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  /** Read exactly n bytes; rejects if the server closes first. */
  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`connection closed with ${this.buf.length} of ${n} bytes`);
      await new Promise<void>((r) => (this.waiter = r));
      this.waiter = undefined;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolve once the server has closed the connection. */
  async waitClosed(): Promise<void> {
    while (!this.closed) {
      await new Promise<void>((r) => (this.waiter = r));
      this.waiter = undefined;
    }
  }

  /** Read the greeting and send client flags (FIXED_NEWSTYLE | NO_ZEROES). */
  async handshake(clientFlags = 3): Promise<Buffer> {
    const g = await this.read(18);
    const f = Buffer.alloc(4);
    f.writeUInt32BE(clientFlags);
    this.write(f);
    return g;
  }

  /** Read one option reply: option, type, data. */
  async optionReply(): Promise<{ magic: bigint; option: number; type: number; data: Buffer }> {
    const h = await this.read(20);
    const len = h.readUInt32BE(16);
    return { magic: h.readBigUInt64BE(0), option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.read(len) };
  }

  destroy(): void {
    this.sock.destroy();
  }
}
