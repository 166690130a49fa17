/**
 * The event channel every event source of the library uses (controllers, discovery watchers, multipath namespaces):
 * synchronous `on(type | '*', fn)` subscriptions and `events()` async iterators, each iterator with its own bounded
 * queue that reports dropped events with an explicit 'overflow' event in their place.
 */
import { InvalidArgumentError } from './errors.js';
import { abortError, checkOptions, checkSignal } from './util.js';

/**
 * Options of every `events()` iterator: `Controller`, `DiscoveryWatcher`, `MultipathNamespace`, `Path` and
 * `NvmeTarget`. `T` is the event types of the source (for example `EventIteratorOptions<ControllerEventType>`), so
 * `types` can only name events the source emits.
 *
 * @typeParam T - The `type` strings of the source's events.
 */
export interface EventIteratorOptions<T extends string = string> {
  /** Ends the iteration: a pending or later `next()` rejects with the abort reason. */
  signal?: AbortSignal;
  /** Events buffered for a slow consumer before newer ones are dropped (and counted). Default 1024. */
  highWaterMark?: number;
  /** Only these event types (overflow events are always delivered). Default all. */
  types?: readonly T[];
}

/** An async iterator over events with a bounded queue. */
export interface BoundedEventIterator<T> extends AsyncIterableIterator<T> {
  /** Events dropped so far because the queue was full. */
  readonly dropped: number;
  /** Events waiting in the queue. */
  readonly queued: number;
}

/** How an {@link EventChannel} completes the events it delivers. */
export interface EventChannelOptions<E extends { type: string }, I> {
  /** The event to deliver for what `emit()` was given (adds the fields every event carries, such as `time`). */
  stamp: (init: I) => E;
  /** The event that takes the place of `dropped` events an iterator's full queue discarded. */
  overflow: (dropped: number) => Extract<E, { type: 'overflow' }>;
}

/**
 * Subscriptions and iterators for one source of events `E` (emitted as `I` and completed by `stamp`): `on(type | '*')`
 * listeners run synchronously, each `iterate()` gets its own bounded queue with an overflow event, `close()` ends them.
 */
export class EventChannel<E extends { type: string }, I = E> {
  private readonly listeners = new Map<string, Set<(ev: E) => void>>();
  private readonly iterators = new Set<EventQueue<E>>();
  private closed = false;
  private readonly stamp: (init: I) => E;
  private readonly overflow: (dropped: number) => E;

  constructor(opts: EventChannelOptions<E, I>) {
    this.stamp = opts.stamp;
    this.overflow = opts.overflow;
  }

  /** Subscribe to one event type, or '*' for all. Returns the unsubscribe function. */
  on(type: E['type'] | '*', fn: (ev: E) => void): () => void {
    if (typeof fn !== 'function') throw new InvalidArgumentError('listener must be a function');
    let set = this.listeners.get(type);
    if (!set) {
      set = new Set();
      this.listeners.set(type, set);
    }
    const entry = (ev: E): void => fn(ev);
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  /** Listeners plus iterators that would see an event of `type`. */
  subscribers(type: E['type']): number {
    let n = (this.listeners.get(type)?.size ?? 0) + (this.listeners.get('*')?.size ?? 0);
    for (const it of this.iterators) if (it.wants({ type } as E)) n++;
    return n;
  }

  /**
   * Deliver an event: listeners run synchronously (a throwing listener does not stop the others), iterators queue it.
   * Returns the event as delivered (also after close(), when nothing is delivered).
   */
  emit(init: I): E {
    const ev = this.stamp(init);
    if (this.closed) return ev;
    for (const key of [ev.type, '*']) {
      const set = this.listeners.get(key);
      if (!set) continue;
      for (const fn of [...set]) {
        try {
          fn(ev);
        } catch (err) {
          // Same outcome as a throwing EventEmitter listener, without breaking the event machinery.
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }
    for (const it of this.iterators) it.push(ev);
    return ev;
  }

  /** A new async iterator over the events delivered from now on. */
  iterate(opts: EventIteratorOptions<E['type']> = {}): BoundedEventIterator<E> {
    checkOptions('events options', opts);
    checkSignal('events signal', opts.signal);
    const hwm = opts.highWaterMark ?? 1024;
    if (!Number.isInteger(hwm) || hwm < 1) throw new InvalidArgumentError(`highWaterMark must be a positive integer, got ${String(hwm)}`);
    if (opts.types !== undefined && !Array.isArray(opts.types)) throw new InvalidArgumentError('types must be an array of event types');
    const types = opts.types ? new Set<string>(opts.types) : undefined;
    const q: EventQueue<E> = new EventQueue<E>(
      hwm,
      types ? (ev) => ev.type === 'overflow' || types.has(ev.type) : undefined,
      this.overflow,
      () => this.iterators.delete(q),
    );
    if (this.closed) q.end();
    else {
      this.iterators.add(q);
      if (opts.signal) q.bindSignal(opts.signal);
    }
    return q;
  }

  /** End every iterator (after the events they hold) and stop delivering. Listeners are dropped. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    for (const it of [...this.iterators]) it.end();
    this.iterators.clear();
  }
}


/**
 * One iterator's bounded queue. When it holds `hwm` events, newer ones are dropped and counted; an overflow event
 * (made by `makeOverflow`) takes their place in the stream. The iterator ends with `end()` (after the queued events),
 * `return()` (at once) or its AbortSignal (rejecting with the reason).
 */
export class EventQueue<T> implements BoundedEventIterator<T> {
  private buf: T[] = [];
  private head = 0;
  private pendingDrops = 0;
  private totalDropped = 0;
  private ended = false;
  private failure: Error | undefined;
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: Error) => void } | undefined;
  private signal: AbortSignal | undefined;
  private onAbort: (() => void) | undefined;
  private readonly hwm: number;
  private readonly filter: ((ev: T) => boolean) | undefined;
  private readonly makeOverflow: (dropped: number) => T;
  private readonly detach: () => void;

  constructor(hwm: number, filter: ((ev: T) => boolean) | undefined, makeOverflow: (dropped: number) => T, detach: () => void = () => undefined) {
    if (!Number.isInteger(hwm) || hwm < 1) throw new InvalidArgumentError(`highWaterMark must be a positive integer, got ${String(hwm)}`);
    this.hwm = hwm;
    this.filter = filter;
    this.makeOverflow = makeOverflow;
    this.detach = detach;
  }

  get dropped(): number {
    return this.totalDropped;
  }

  get queued(): number {
    return this.buf.length - this.head;
  }

  /** Whether `ev` would be queued (not ended, passes the filter). */
  wants(ev: T): boolean {
    return !this.ended && (!this.filter || this.filter(ev));
  }

  /** End the iteration when `signal` aborts. */
  bindSignal(signal: AbortSignal): void {
    if (signal.aborted) {
      this.abort(signal);
      return;
    }
    this.signal = signal;
    this.onAbort = () => this.abort(signal);
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  private abort(signal: AbortSignal): void {
    if (this.ended) return;
    const err = abortError(signal);
    this.finish();
    this.buf = [];
    this.head = 0;
    this.pendingDrops = 0;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(err);
    } else {
      this.failure = err;
    }
  }

  /** Offer an event. */
  push(ev: T): void {
    if (!this.wants(ev)) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: ev, done: false });
      return;
    }
    if (this.queued >= this.hwm) {
      this.pendingDrops++;
      this.totalDropped++;
      return;
    }
    // The overflow marker goes where the dropped events would have been; it may exceed the mark by one.
    if (this.pendingDrops > 0) this.buf.push(this.overflow());
    this.buf.push(ev);
  }

  private overflow(): T {
    const ev = this.makeOverflow(this.pendingDrops);
    this.pendingDrops = 0;
    return ev;
  }

  private take(): T | undefined {
    if (this.head < this.buf.length) {
      const ev = this.buf[this.head]!;
      this.buf[this.head++] = undefined as unknown as T;
      if (this.head === this.buf.length) {
        this.buf = [];
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.buf.length) {
        this.buf = this.buf.slice(this.head);
        this.head = 0;
      }
      return ev;
    }
    if (this.pendingDrops > 0) return this.overflow();
    return undefined;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.failure) {
      const err = this.failure;
      this.failure = undefined;
      return Promise.reject(err);
    }
    const ev = this.take();
    if (ev !== undefined) return Promise.resolve({ value: ev, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter) return Promise.reject(new InvalidArgumentError('next() called again before the previous call settled'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.finish();
    this.buf = [];
    this.head = 0;
    this.pendingDrops = 0;
    this.failure = undefined;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  /** The source closed: deliver what is queued, then report done. */
  end(): void {
    this.finish();
    if (this.waiter && this.queued === 0 && this.pendingDrops === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.signal && this.onAbort) this.signal.removeEventListener('abort', this.onAbort);
    this.signal = undefined;
    this.onAbort = undefined;
    this.detach();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
