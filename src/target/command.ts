/**
 * @internal The command context handed to the target's command handlers, and their results.
 */
import type { Buffer } from 'node:buffer';
import { StatusField } from '../protocol/cqe.js';
import type { SglDescriptor } from '../protocol/sgl.js';
import type { TargetConnection } from './connection.js';
import type { TargetController } from './controller.js';
import type { ActiveFault, CommandInfo } from './faults.js';

/** What a handler returns: the completion (and C2H data for a successful read-type command). */
export interface CommandResult {
  /** Raw CQE status field (phase bit 0). */
  status: number;
  dw0?: number;
  dw1?: number;
  /** Controller-to-host data; must be exactly the command's transfer length. */
  data?: Buffer;
  /** Close the connection once the response is sent (Disconnect). */
  closeAfter?: boolean;
}

/** A handler's answer when it completes the command later (AER). */
export const DEFERRED = Symbol('deferred');
export type HandlerResult = CommandResult | typeof DEFERRED;

/** One command being processed. */
export interface Cmd {
  readonly conn: TargetConnection;
  /** The controller of the queue (set for the Connect command once it succeeds). */
  ctrl: TargetController | undefined;
  readonly qid: number;
  readonly cid: number;
  readonly sqe: Buffer;
  readonly opcode: number;
  /** FCTYPE, or -1 for non-Fabrics commands. */
  readonly fctype: number;
  readonly nsid: number;
  readonly sgl: SglDescriptor;
  /** Transfer length described by the SGL. */
  readonly length: number;
  /** Host-to-controller data, once received. */
  data: Buffer | null;
  readonly info: CommandInfo;
  /** Fault rules that apply to the answer. */
  faults: ActiveFault[];
  done: boolean;
  /** R2T state while host data is being collected. */
  h2c: { buf: Buffer; received: number; r2tEnd: number; ttag: number; digestError: boolean } | undefined;
}

// CQE status fields (phase bit 0 clear) built by hand for speed: SC << 1 | SCT << 9 | DNR << 15.
const DNR = StatusField.DNR;

/** Successful completion. */
export function ok(dw0 = 0, dw1 = 0): CommandResult {
  return { status: 0, dw0, dw1 };
}

/** Successful completion carrying C2H data. */
export function okData(data: Buffer, dw0 = 0): CommandResult {
  return { status: 0, dw0, data };
}

/** A status field from its parts. */
export function status(sct: number, sc: number, dnr = true): number {
  return (sc << 1) | (sct << 9) | (dnr ? DNR : 0);
}

/** A failed completion. */
export function fail(sct: number, sc: number, dnr = true, dw0 = 0): CommandResult {
  return { status: status(sct, sc, dnr), dw0 };
}

/** Read a little-endian dword of the SQE (CDW10 = byte 40, ...). */
export function dw(sqe: Buffer, offset: number): number {
  return sqe.readUInt32LE(offset);
}
