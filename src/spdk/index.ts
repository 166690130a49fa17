/**
 * nvmeof/spdk: manage SPDK NVMe-oF targets from test harnesses. A JSON-RPC 2.0 client (Unix socket or TCP) with
 * typed methods for bdevs, transports, subsystems, namespaces, listeners, hosts and ANA states; an nvmf_tgt launcher
 * that runs without hugepages; and a declarative topology builder.
 *
 * ```ts
 * import { startSpdkTarget } from 'nvmeof/spdk';
 * const tgt = await startSpdkTarget({ spdkDir: '/opt/spdk' });
 * await tgt.applyTopology({
 *   transports: [{ trtype: 'TCP' }],
 *   bdevs: [{ type: 'malloc', name: 'm0', sizeMiB: 64, blockSize: 512 }],
 *   subsystems: [{ nqn: 'nqn.2016-06.io.spdk:cnode1', namespaces: [{ bdev: 'm0' }], listeners: [{ traddr: '127.0.0.1', trsvcid: 4420 }] }],
 * });
 * // ... connect with nvmeof ...
 * await tgt.stop();
 * ```
 *
 * @module nvmeof/spdk
 */
export {
  SpdkRpcClient,
  SpdkRpcError,
  SPDK_DEFAULT_RPC_SOCKET,
  JsonRpcErrorCode,
  type SpdkRpcClientOptions,
  type SpdkCallOptions,
  type SpdkBatchCall,
  type SpdkRpcParams,
} from './rpc-client.js';
export * from './client.js';
export {
  applyTopology,
  removeTopology,
  validateTopology,
  listenAddress,
  type SpdkTopology,
  type TopologyTransport,
  type TopologyBdev,
  type TopologySubsystem,
  type TopologyNamespace,
  type TopologyListener,
  type TopologyHost,
  type AppliedTopology,
} from './topology.js';
export { startSpdkTarget, resolveNvmfTgt, type StartSpdkTargetOptions, type SpdkTarget, type SpdkExit } from './launcher.js';
export { JsonValueStream, JsonStreamError } from './json-stream.js';
