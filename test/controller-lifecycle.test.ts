/**
 * Controller lifecycle: one guarded transition table, identity and limits frozen at bring-up, typed event listeners.
 */
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import type { AnaChangeEvent, ControllerEvent, ControllerInfo } from '../src/index.js';
import { TargetEnv } from './helpers/target-env.js';

const env = new TargetEnv();
afterEach(() => env.cleanup());

describe('controller lifecycle', () => {
  it('freezes what bring-up learned into one record; the convenience getters read it', async () => {
    await env.start();
    const ctrl = await env.connect({ ioQueues: 2, queueSize: 16 });
    const info: ControllerInfo = ctrl.info;
    expect(Object.isFrozen(info)).toBe(true);
    expect(Object.isFrozen(info.cap)).toBe(true);
    expect(info.cntlid).toBe(ctrl.cntlid);
    expect(info.cntlid).toBeGreaterThan(0);
    expect(info.identity).toBe(ctrl.identity);
    expect(info.identity.subnqn).toBe(env.subsys.nqn);
    expect(info.ioQueueDepth).toBe(16);
    expect(ctrl.ioQueueDepth).toBe(16);
    expect(info.maxTransferBytes).toBe(ctrl.maxTransferBytes);
    expect(() => {
      (ctrl as unknown as { cntlid: number }).cntlid = 7;
    }).toThrow(TypeError);
    expect(() => {
      (info as { cntlid: number }).cntlid = 7;
    }).toThrow(TypeError);
    expect(ctrl.cntlid).toBe(info.cntlid);
  });

  it('goes connecting -> live -> closing -> closed, and stays closed', async () => {
    await env.start();
    const ctrl = await env.connect();
    expect(ctrl.state).toBe('live');
    const closing = ctrl.close();
    expect(ctrl.state).toBe('closing');
    await closing;
    expect(ctrl.state).toBe('closed');
    await ctrl.close(); // idempotent
    ctrl.destroy(); // no transition out of closed
    expect(ctrl.state).toBe('closed');
  });

  it('types each listener by its event type', async () => {
    await env.start();
    const ctrl = await env.connect();
    const off = ctrl.on('ana-change', (ev) => {
      expectTypeOf(ev).toEqualTypeOf<AnaChangeEvent>();
    });
    const offAll = ctrl.on('*', (ev) => {
      expectTypeOf(ev).toEqualTypeOf<ControllerEvent>();
    });
    // @ts-expect-error not an event type
    expect(() => ctrl.on('no-such-event', () => {})).toThrow(expect.objectContaining({ code: 'NVMEOF_ERR_INVALID_ARGUMENT' }));
    // @ts-expect-error not a function
    expect(() => ctrl.on('smart', 'x')).toThrow(/listener must be a function/);
    off();
    offAll();
  });
});
