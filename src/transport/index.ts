/**
 * `nvmeof/transport`: the NVMe/TCP queue pair itself, for tools that drive raw connections (one TCP connection = one
 * submission/completion queue pair: ICReq/ICResp, CIDs, data transfers, digests, timeouts). Most users want
 * `connect()` from the package root instead, which builds controllers out of queue pairs.
 */
export {
  QueuePair,
  fesName,
  MAX_QUEUE_DEPTH,
  MAX_TIMEOUT_MS,
  ADMIN_IN_CAPSULE_BYTES,
  type QueuePairOptions,
  type QueuePairState,
  type SubmitOptions,
  type Completion,
  type CommandOutcome,
  type CommandStartMessage,
  type CommandEndMessage,
} from './queue-pair.js';
export type { TlsClientOptions, TlsSessionInfo } from './tls13/client.js';
