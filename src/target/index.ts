/**
 * nvmeof/target: an embedded, in-process NVMe/TCP target for demos, fault injection and tests.
 * Built on the protocol layer only; real targets (Linux nvmet, SPDK) remain the reference.
 *
 * @module nvmeof/target
 */
export { NvmeTarget } from './target.js';
export {
  TargetPort,
  type TargetReferral,
  type TargetEvent,
  type TargetEventMap,
  type ConnectEvent,
  type DisconnectEvent,
  type ProtocolErrorEvent,
  type ResolvedOptions,
  type AuthenticationEvent,
} from './core.js';
export type { TargetDhchapOptions, AuthenticationOutcome } from './auth.js';
export { TargetSubsystem, TargetNamespace, type PortRef } from './subsystem.js';
export { TargetController } from './controller.js';
// Event values are the protocol's (one definition for host and target).
export { AsyncEventConfig, AsyncEventType, NoticeEvent } from '../protocol/async-events.js';
export { TargetConnection, type TargetConnectionState } from './connection.js';
export { ReservationState, RESCAP, type Registrant } from './reservations.js';
export { FaultInjector, type FaultAction, type FaultMatch, type FaultRule, type FaultHandle, type FaultStatus, type CommandInfo } from './faults.js';
export {
  anaStateValue,
  type AnaStateInput,
  type NvmeTargetOptions,
  type ListenOptions,
  type SubsystemOptions,
  type NamespaceOptions,
  type ReferralOptions,
  type AsyncEvent,
  type CommandKind,
} from './types.js';
