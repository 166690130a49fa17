/** Shared pieces of the reservation tests (embedded target in test/, SPDK in integration/spdk). */
import { expect } from 'vitest';
import { NvmeStatusError, type Controller } from '../../src/index.js';
import type { ReservationEvent } from '../../src/host/events.js';

export const KEY_A = 0xa1a1_0000_0000_0001n;
export const KEY_B = 0xb2b2_0000_0000_0002n;
export const hex = (uuid: string) => uuid.replace(/-/g, '');

export async function statusOf(p: Promise<unknown>): Promise<NvmeStatusError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(NvmeStatusError);
  return err as NvmeStatusError;
}

export async function expectConflict(p: Promise<unknown>): Promise<void> {
  const err = await statusOf(p);
  expect([err.sct, err.sc]).toEqual([0, 0x83]);
  expect(err.statusName).toBe('Reservation Conflict');
}

/** Collect the reservation events of a controller; `next(pred)` resolves with the first matching one. */
export function recorder(ctrl: Controller) {
  const seen: ReservationEvent[] = [];
  const waiters: Array<{ pred: (e: ReservationEvent) => boolean; resolve: (e: ReservationEvent) => void }> = [];
  ctrl.on('reservation', (ev) => {
    seen.push(ev);
    for (const w of [...waiters]) {
      if (w.pred(ev)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(ev);
      }
    }
  });
  return {
    seen,
    next(pred: (e: ReservationEvent) => boolean, ms = 10_000): Promise<ReservationEvent> {
      const hit = seen.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no matching reservation event within ${ms} ms; saw ${JSON.stringify(seen.map((e) => e.notification))}`)), ms);
        waiters.push({ pred, resolve: (e) => (clearTimeout(t), resolve(e)) });
      });
    },
  };
}
