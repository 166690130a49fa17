/**
 * The pieces of the daemon that hold no connection: the per-object management queue and the event ring that
 * Server-Sent Events replay from.
 */
import { AbortedError, ErrorCode, NvmeofError } from '../index.js';

/**
 * Management operations on one object run one at a time, in order. The queue is bounded: `limit` operations at most
 * (the running one included); one more is refused with NVMEOF_ERR_BUSY (HTTP 429). An operation whose signal
 * aborted while it waited is skipped.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private count = 0;

  constructor(
    private readonly limit: number,
    private readonly what: string,
  ) {}

  /** Operations queued or running. */
  get pending(): number {
    return this.count;
  }

  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.count >= this.limit) {
      return Promise.reject(new NvmeofError(ErrorCode.BUSY, `${this.what}: ${this.count} management operations are queued (limit ${this.limit}); try again later`));
    }
    this.count++;
    const p = this.tail.then(() => {
      if (signal?.aborted) throw new AbortedError(`${this.what}: the client went away before the operation started`);
      return fn();
    });
    this.tail = p.catch(() => undefined);
    return p.finally(() => {
      this.count--;
    });
  }
}

/** One event of the daemon's stream. */
export interface ServeEvent {
  /** Strictly increasing from 1 over the daemon's life. */
  id: number;
  type: string;
  /** Date.now() ms. */
  time: number;
  data: Record<string, unknown>;
}

/** What a client that last saw `lastId` gets: the events it missed, and whether some are gone from the ring. */
export interface Replay {
  /**
   * Ids that were missed and can no longer be replayed (inclusive range; empty when `to` < `from`), when any.
   * `restarted`: the client's id is ahead of every id this ring gave out, so it comes from an earlier run of the
   * daemon; everything held is replayed and ids start again from 1.
   */
  gap?: { from: number; to: number; restarted: boolean };
  events: ServeEvent[];
}

/** A bounded ring of the latest events, with listeners for live delivery. */
export class EventRing {
  private readonly buf: ServeEvent[] = [];
  private nextId = 1;
  private readonly listeners = new Set<(ev: ServeEvent) => void>();

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('event ring capacity must be a positive integer');
  }

  /** Id of the newest event (0 before the first). */
  get lastId(): number {
    return this.nextId - 1;
  }

  push(type: string, data: Record<string, unknown>): ServeEvent {
    const ev: ServeEvent = { id: this.nextId++, type, time: Date.now(), data };
    this.buf.push(ev);
    if (this.buf.length > this.capacity) this.buf.shift();
    for (const l of [...this.listeners]) l(ev);
    return ev;
  }

  /** The events after `lastId` still held, and the gap before them when the ring no longer holds them all. */
  since(lastId: number): Replay {
    const oldest = this.buf[0]?.id ?? this.nextId;
    if (lastId > this.lastId) return { gap: { from: 1, to: oldest - 1, restarted: true }, events: [...this.buf] };
    if (lastId === this.lastId) return { events: [] };
    const events = this.buf.filter((e) => e.id > lastId);
    if (lastId + 1 < oldest) return { gap: { from: lastId + 1, to: oldest - 1, restarted: false }, events };
    return { events };
  }

  subscribe(fn: (ev: ServeEvent) => void): () => void {
    this.listeners.add(fn);
    return () => {
      this.listeners.delete(fn);
    };
  }
}
