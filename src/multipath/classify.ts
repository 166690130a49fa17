/**
 * Which I/O errors are path errors (move the command to another path and retry it) and which belong to the caller.
 *
 * As Linux (nvme_decide_disposition / nvme_is_path_error): a status with DNR set is never retried; path related
 * statuses (SCT 3) fail over; everything that means "this connection is gone or broken" fails over. Generic and
 * media errors (LBA out of range, invalid field, unrecovered read error...) go back to the caller.
 */
import { anaStateFromPathStatus } from '../protocol/ana.js';
import { ErrorCode, NvmeofError, NvmeStatusError } from '../errors.js';
import { GenericStatus, StatusCodeType } from '../protocol/constants.js';

/** Why an I/O error counts as a path error. */
export type PathErrorKind =
  /** SCT 3 other than the ANA codes: internal path error, controller or host pathing error... */
  | 'path-status'
  /** SCT 3 ANA Persistent Loss / Inaccessible / Transition. */
  | 'ana'
  /** The connection closed or the controller was destroyed. */
  | 'connection'
  /** The keep-alive exchange failed. */
  | 'keep-alive'
  /** The command was not answered in time (the path is reset, as Linux does). */
  | 'timeout'
  /** Broken transport: protocol error, digest mismatch, TermReq, Transient Transport Error status. */
  | 'transport';

/** The verdict on one I/O error. */
export interface IoErrorClass {
  /** Move the command to another path and send it again. */
  retry: boolean;
  /** What kind of path error it is; 'command' for errors returned to the caller. */
  kind: PathErrorKind | 'command';
  /** For ANA statuses: the ANA state the status reports for the namespace on this path. */
  anaState?: 'persistent-loss' | 'inaccessible' | 'change';
  /** The path must be torn down and reconnected (its controller is no longer trustworthy). */
  resetPath: boolean;
}

const COMMAND: IoErrorClass = { retry: false, kind: 'command', resetPath: false };

/** Classify an error from a command sent on one path. */
export function classifyIoError(err: unknown): IoErrorClass {
  if (err instanceof NvmeStatusError) {
    if (err.dnr) return COMMAND;
    if (err.sct === StatusCodeType.PathRelated) {
      const anaState = anaStateFromPathStatus(err.sc);
      if (anaState) return { retry: true, kind: 'ana', anaState, resetPath: false };
      return { retry: true, kind: 'path-status', resetPath: false };
    }
    if (err.sct === StatusCodeType.Generic && err.sc === GenericStatus.TransientTransportError) return { retry: true, kind: 'transport', resetPath: false };
    return COMMAND;
  }
  if (!(err instanceof NvmeofError)) return COMMAND;
  switch (err.code) {
    // INVALID_STATE: the controller went away between choosing the path and submitting (closing, closed).
    case ErrorCode.CONNECTION_CLOSED:
    case ErrorCode.CONNECTION_FAILED:
    case ErrorCode.INVALID_STATE:
      return { retry: true, kind: 'connection', resetPath: false };
    case ErrorCode.KEEP_ALIVE:
      return { retry: true, kind: 'keep-alive', resetPath: false };
    case ErrorCode.TIMEOUT:
      return { retry: true, kind: 'timeout', resetPath: true };
    case ErrorCode.PROTOCOL:
    case ErrorCode.DIGEST:
    case ErrorCode.TERMINATED:
      return { retry: true, kind: 'transport', resetPath: false };
    default:
      return COMMAND;
  }
}
