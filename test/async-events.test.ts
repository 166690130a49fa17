/**
 * Asynchronous Event Request completion DW0 (NVMe Base, "Asynchronous Event Request command", Completion Queue Entry
 * Dword 0): bits 2:0 Asynchronous Event Type, 15:8 Asynchronous Event Information, 23:16 Log Page Identifier. The
 * vectors are written from that layout by hand, not produced by the encoder.
 */
import { describe, expect, it } from 'vitest';
import { AsyncEventType, NoticeEvent, decodeAsyncEvent, encodeAsyncEvent } from '../src/protocol/async-events.js';

describe('AER completion DW0', () => {
  it.each([
    // ANA change notice: type 2, information 03h, log page 0Ch -> 0x000c0302
    [0x000c0302, { type: 2, info: 0x03, lid: 0x0c, name: 'Asymmetric Namespace Access Change' }],
    // Discovery log page change: type 2, information F0h, log page 70h -> 0x0070f002
    [0x0070f002, { type: 2, info: 0xf0, lid: 0x70, name: 'Discovery Log Page Change' }],
    // Namespace attribute changed: type 2, information 00h, log page 04h -> 0x00040002
    [0x00040002, { type: 2, info: 0x00, lid: 0x04, name: 'Namespace Attribute Changed' }],
    // Reservation log page available: type 6, information 00h, log page 80h -> 0x00800006
    [0x00800006, { type: 6, info: 0x00, lid: 0x80, name: 'Reservation Log Page Available' }],
  ])('0x%s decodes and encodes back', (dw0, ev) => {
    expect(decodeAsyncEvent(dw0)).toEqual(ev);
    expect(encodeAsyncEvent(ev)).toBe(dw0);
  });

  it('ignores reserved bits on decode and masks fields on encode', () => {
    expect(decodeAsyncEvent(0xff0c03fa)).toMatchObject({ type: AsyncEventType.Notice, info: NoticeEvent.AnaChange, lid: 0x0c });
    expect(encodeAsyncEvent({ type: 0xa, info: 0x1f0, lid: 0x170 })).toBe(0x0070f002);
  });
});
