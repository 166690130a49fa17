/**
 * Asynchronous events as the spec defines them: event types, notice and status information values, the Asynchronous
 * Event Configuration bits, and the decoding and encoding of an Asynchronous Event Request completion's DW0 (type
 * bits 2:0, information bits 15:8, log page bits 23:16). Pure: used by the host's AER engine and the embedded target.
 */
import type { IdentifyController } from './identify.js';

/** Asynchronous Event Type (AER completion DW0 bits 2:0). */
export const AsyncEventType = {
  ErrorStatus: 0,
  SmartHealthStatus: 1,
  Notice: 2,
  Immediate: 3,
  OneShot: 4,
  IoCommandSpecific: 6,
  VendorSpecific: 7,
} as const;

/** Asynchronous Event Information for Notice events (DW0 bits 15:8 when the type is 2). */
export const NoticeEvent = {
  NamespaceAttributeChanged: 0x00,
  FirmwareActivationStarting: 0x01,
  TelemetryLogChanged: 0x02,
  AnaChange: 0x03,
  PredictableLatencyEventAggregateLogChange: 0x04,
  LbaStatusInformationAlert: 0x05,
  EnduranceGroupEventAggregateLogPageChange: 0x06,
  NormalNvmSubsystemShutdown: 0x07,
  DiscoveryLogPageChange: 0xf0,
} as const;

/** Bits of the Asynchronous Event Configuration feature (Set Features FID 0Bh, CDW11). */
export const AsyncEventConfig = {
  /** SMART / Health critical warnings: available spare, temperature, reliability, read-only, volatile memory backup. */
  SmartCriticalWarnings: 0x1f,
  NamespaceAttribute: 1 << 8,
  FirmwareActivation: 1 << 9,
  TelemetryLog: 1 << 10,
  AnaChange: 1 << 11,
  DiscoveryLogChange: 0x8000_0000,
} as const;

const ERROR_INFO_NAMES: Record<number, string> = {
  0: 'Write to Invalid Doorbell Register',
  1: 'Invalid Doorbell Write Value',
  2: 'Diagnostic Failure',
  3: 'Persistent Internal Error',
  4: 'Transient Internal Error',
  5: 'Firmware Image Load Error',
};
const SMART_INFO_NAMES: Record<number, string> = {
  0: 'NVM Subsystem Reliability',
  1: 'Temperature Threshold',
  2: 'Spare Below Threshold',
};
const NOTICE_INFO_NAMES: Record<number, string> = {
  0x00: 'Namespace Attribute Changed',
  0x01: 'Firmware Activation Starting',
  0x02: 'Telemetry Log Changed',
  0x03: 'Asymmetric Namespace Access Change',
  0x04: 'Predictable Latency Event Aggregate Log Change',
  0x05: 'LBA Status Information Alert',
  0x06: 'Endurance Group Event Aggregate Log Page Change',
  0x07: 'Normal NVM Subsystem Shutdown',
  0xf0: 'Discovery Log Page Change',
};
const IO_INFO_NAMES: Record<number, string> = {
  0: 'Reservation Log Page Available',
  1: 'Sanitize Operation Completed',
  2: 'Sanitize Operation Completed With Unexpected Deallocation',
};

/** The LID of an asynchronous event completion that names no log page to read. */
export const AER_NO_LOG_PAGE = 0;

/** An AER completion's DW0 decoded. */
export interface AsyncEventInfo {
  /** Asynchronous Event Type (bits 2:0). */
  type: number;
  /** Asynchronous Event Information (bits 15:8). */
  info: number;
  /** Log page the host reads to clear the event (bits 23:16). */
  lid: number;
  /** The spec's name for the event. */
  name: string;
}

/** Decode the DW0 of a successful Asynchronous Event Request completion. */
export function decodeAsyncEvent(dw0: number): AsyncEventInfo {
  const type = dw0 & 0x7;
  const info = (dw0 >>> 8) & 0xff;
  const lid = (dw0 >>> 16) & 0xff;
  return { type, info, lid, name: asyncEventName(type, info) };
}

/** The spec's name for an asynchronous event type and information value. */
export function asyncEventName(type: number, info: number): string {
  const hex = `0x${info.toString(16).padStart(2, '0')}`;
  switch (type) {
    case AsyncEventType.ErrorStatus: return ERROR_INFO_NAMES[info] ?? `Error status ${hex}`;
    case AsyncEventType.SmartHealthStatus: return SMART_INFO_NAMES[info] ?? `SMART / Health status ${hex}`;
    case AsyncEventType.Notice: return NOTICE_INFO_NAMES[info] ?? `Notice ${hex}`;
    case AsyncEventType.IoCommandSpecific: return IO_INFO_NAMES[info] ?? `I/O command specific status ${hex}`;
    case AsyncEventType.VendorSpecific: return `Vendor specific ${hex}`;
    default: return `Event type ${type}, information ${hex}`;
  }
}

/**
 * The Asynchronous Event Configuration to request from what Identify Controller reports: for a discovery controller
 * the Discovery Log Page Change notice; otherwise the SMART critical warnings and the notices OAES lists that the host
 * handles (namespace attribute, firmware activation, ANA change when CMIC reports ANA).
 */
export function asyncEventConfigFor(id: Pick<IdentifyController, 'decoded'>, discovery: boolean): { smart: number; notices: number } {
  const o = id.decoded.oaes;
  if (discovery) return { smart: 0, notices: o.discoveryLogChange ? AsyncEventConfig.DiscoveryLogChange : 0 };
  let notices = 0;
  if (o.namespaceAttribute) notices |= AsyncEventConfig.NamespaceAttribute;
  if (o.firmwareActivation) notices |= AsyncEventConfig.FirmwareActivation;
  if (o.ana && id.decoded.cmic.anaReporting) notices |= AsyncEventConfig.AnaChange;
  return { smart: AsyncEventConfig.SmartCriticalWarnings, notices: notices >>> 0 };
}

/** The DW0 of an Asynchronous Event Request completion for an event (the inverse of {@link decodeAsyncEvent}). */
export function encodeAsyncEvent(ev: { type: number; info: number; lid: number }): number {
  return ((ev.type & 0x7) | ((ev.info & 0xff) << 8) | ((ev.lid & 0xff) << 16)) >>> 0;
}
