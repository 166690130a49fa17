/**
 * One timer for the Keep Alive of every controller in the process. Each controller asks for a Keep Alive every
 * KATO/2 (as Linux does); the scheduler may send one up to a fifth of that interval early, so controllers whose
 * deadlines are close are served by the same timer wake-up, and their Keep Alives go out (and come back) together.
 * A thousand idle controllers then cost a few wake-ups per interval instead of two per controller.
 */

/** A controller's keep-alive as the scheduler sees it. */
export interface KeepAliveClient {
  /** Send one Keep Alive (the client skips it when one is still in flight). */
  send(): void;
}

interface Entry {
  client: KeepAliveClient;
  interval: number;
  /** Send no later than this (ms, Date.now() clock). */
  due: number;
}

const entries = new Map<KeepAliveClient, Entry>();
let timer: NodeJS.Timeout | undefined;
let timerAt = Infinity;

/** How early, in ms, a Keep Alive due after `interval` ms may go. */
function slack(interval: number): number {
  return Math.floor(interval / 5);
}

function run(): void {
  timer = undefined;
  timerAt = Infinity;
  const now = Date.now();
  for (const e of entries.values()) {
    if (e.due - slack(e.interval) <= now) {
      e.due = now + e.interval;
      e.client.send();
    }
  }
  arm();
}

/** Set the timer for the earliest entry's latest moment (unref'd: keep-alives never keep the process alive). */
function arm(): void {
  let at = Infinity;
  for (const e of entries.values()) if (e.due < at) at = e.due;
  if (at === Infinity || at >= timerAt) return;
  if (timer) clearTimeout(timer);
  timerAt = at;
  timer = setTimeout(run, Math.max(0, at - Date.now()));
  timer.unref();
}

/** Send `client`'s Keep Alive every `interval` ms (or a little earlier, batched with others) until `stop`. */
export function startKeepAlive(client: KeepAliveClient, interval: number): void {
  entries.set(client, { client, interval, due: Date.now() + interval });
  arm();
}

/** Stop `client`'s Keep Alives. */
export function stopKeepAlive(client: KeepAliveClient): void {
  if (!entries.delete(client)) return;
  if (entries.size === 0 && timer) {
    clearTimeout(timer);
    timer = undefined;
    timerAt = Infinity;
  }
}

/** Controllers whose Keep Alives are scheduled (tests). */
export function keepAliveClients(): number {
  return entries.size;
}
