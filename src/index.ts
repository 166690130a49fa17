/**
 * nvmeof: a pure-TypeScript NVMe over Fabrics (TCP) host library for Node.js.
 *
 * ```ts
 * import { connect } from 'nvmeof';
 * const ctrl = await connect({ host: '127.0.0.1', port: 4420, subnqn: 'nqn.2016-06.io.spdk:cnode1' });
 * const ns = await ctrl.namespace(1);
 * await ns.write(0n, Buffer.alloc(ns.blockSize, 0xab));
 * const data = await ns.read(0n, 1);
 * await ctrl.close();
 * ```
 *
 * @module nvmeof
 */
export * from './errors.js';
export { connect, Controller, type ConnectOptions, type ControllerState, type ControllerInfo } from './host/controller.js';
export { Namespace, type IoOptions, type WriteOptions, type LbaRange, type NamespaceOwner } from './host/namespace.js';
export { resolveHostIdentity, type HostIdentity, type HostIdentityOptions } from './host/identity.js';
export type { ReservationAcquireParams, ReservationCommandOptions, ReservationNamespace, ReservationNotification, ReservationNotificationName, ReservationRegisterParams, ReservationRegistrant, ReservationReleaseParams, ReservationReport, ReservationReportParams, ReservationType } from './host/reservations.js';
export { type ReadLogOptions } from './host/controller.js';
export { type ControllerSecurity } from './host/controller.js';
export { parseDhchapOptions, type DhchapOptions, type AuthenticationInfo, type DhchapCredentials } from './host/auth.js';
export { parseDhchapKey, DhchapKey, type DhchapHash, type DhchapGroup } from './protocol/auth.js';
export type { TlsOptions, TlsInfo } from './host/tls.js';
export { parseTlsKey, formatTlsKey, deriveTlsCredentials, type TlsInterchangeKey, type TlsPskCredentials, type TlsPskHash, type TlsIdentityVersion, type TlsPskDerivation } from './protocol/tls-psk.js';
export { AsyncEventType, AsyncEventConfig, NoticeEvent, decodeAsyncEvent, asyncEventName, type AsyncEventInfo } from './protocol/async-events.js';
export type { AsyncEventStatus } from './host/aer.js';
export type { BoundedEventIterator, EventIteratorOptions } from './event-channel.js';
export {
  type ControllerEvent,
  type ControllerEventType,
  type ControllerEventMap,
  type ControllerEventBase,
  type ControllerEventIterator,
  type AnaChangeEvent,
  type NamespaceChangedEvent,
  type DiscoveryChangeEvent,
  type ErrorStatusEvent,
  type SmartEvent,
  type FirmwareActivationEvent,
  type ReservationEvent,
  type OverflowEvent,
  type OtherEvent,
} from './host/events.js';
export {
  toAnaStateName,
  anaStateUsable,
  type AnaStateName,
  type AnaNamespaceChange,
  type AnaGroupChange,
} from './host/ana.js';
export {
  discover,
  readDiscoveryLog,
  watchDiscovery,
  DiscoveryWatcher,
  discoveryEntryKey,
  toDiscoveryEntry,
  DISCOVERY_PORT,
  type DiscoverOptions,
  type DiscoveryResult,
  type DiscoveryEntry,
  type DiscoveryAddress,
  type DiscoveryLogSnapshot,
  type DiscoveryWalkError,
  type VisitedDiscoveryController,
  type ReadDiscoveryLogOptions,
  type WatchDiscoveryOptions,
  type DiscoveryChangeReport,
  type DiscoveryWatchEvent,
  type TransportName,
  type AddressFamilyName,
  type TcpSecurityName,
} from './host/discovery.js';
export * from './multipath/index.js';
// The queue pair itself is in the `nvmeof/transport` subpath; these types appear in the root API's signatures.
export { MAX_QUEUE_DEPTH, MAX_TIMEOUT_MS, type SubmitOptions, type Completion } from './transport/queue-pair.js';
export * as protocol from './protocol/index.js';
export type { NvmeCommand } from './protocol/commands.js';
export type { Cqe } from './protocol/cqe.js';
export type { IdentifyController, IdentifyNamespace, NsIdDescriptor, LbaFormat, OncsFlags } from './protocol/identify.js';
// Types that public members return: importable from the root, not only through the `protocol` namespace.
export type { AnaLog, AnaGroupDescriptor, ErrorLogEntry, SmartLog, DiscoveryLogEntry, ReservationNotificationLog } from './protocol/logpages.js';
export type { Cap, Csts, Vs, Cc } from './protocol/properties.js';
export { serveNbd, NbdServer, NBD_MAX_PAYLOAD, type NbdServerOptions, type NbdExport, type NbdNamespace, type NbdListen, type NbdAddress, type NbdTlsOptions } from './nbd/server.js';
