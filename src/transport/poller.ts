/**
 * Busy polling for queue pairs opened with `busyPoll`: while any of their commands is outstanding, the event loop is
 * kept from sleeping in the kernel (a pending immediate makes libuv poll its sockets with a zero timeout), so a
 * completion is picked up as soon as it is on the socket instead of after the wake-up of a sleeping thread.
 * The same trade Linux's polled I/O queues and SPDK make: much lower latency at low queue depth, a core kept busy
 * while I/O is in flight. Nothing spins when no polled command is outstanding.
 */

let outstanding = 0;
let scheduled = false;

function tick(): void {
  scheduled = false;
  if (outstanding > 0) {
    scheduled = true;
    setImmediate(tick);
  }
}

/** A polled command became outstanding. */
export function pollBegin(): void {
  outstanding++;
  if (!scheduled) {
    scheduled = true;
    setImmediate(tick);
  }
}

/** A polled command settled. */
export function pollEnd(): void {
  outstanding--;
}

/** Polled commands outstanding in this process (tests). */
export function pollingCommands(): number {
  return outstanding;
}
