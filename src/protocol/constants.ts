/**
 * Numeric constants from the NVM Express Base Specification 2.x, the NVM Command Set Specification
 * and the NVMe over Fabrics / NVMe/TCP transport specifications. Names follow the spec.
 */

/** Opcode shared by every Fabrics command (Connect, Property Get/Set, Disconnect, Authentication). */
export const FABRICS_OPCODE = 0x7f;

/** Admin command opcodes (Base spec, "Opcodes for Admin Commands"). */
export const AdminOpcode = {
  DeleteIoSq: 0x00,
  CreateIoSq: 0x01,
  GetLogPage: 0x02,
  DeleteIoCq: 0x04,
  CreateIoCq: 0x05,
  Identify: 0x06,
  Abort: 0x08,
  SetFeatures: 0x09,
  GetFeatures: 0x0a,
  AsyncEventRequest: 0x0c,
  NamespaceManagement: 0x0d,
  FirmwareCommit: 0x10,
  FirmwareImageDownload: 0x11,
  DeviceSelfTest: 0x14,
  NamespaceAttachment: 0x15,
  KeepAlive: 0x18,
  DirectiveSend: 0x19,
  DirectiveReceive: 0x1a,
  VirtualizationManagement: 0x1c,
  NvmeMiSend: 0x1d,
  NvmeMiReceive: 0x1e,
  CapacityManagement: 0x20,
  Lockdown: 0x24,
  DoorbellBufferConfig: 0x7c,
  FabricsCommands: 0x7f,
  FormatNvm: 0x80,
  SecuritySend: 0x81,
  SecurityReceive: 0x82,
  Sanitize: 0x84,
  GetLbaStatus: 0x86,
} as const;

/** NVM Command Set I/O opcodes (NVM Command Set spec, "Opcodes for NVM Commands"). */
export const NvmOpcode = {
  Flush: 0x00,
  Write: 0x01,
  Read: 0x02,
  WriteUncorrectable: 0x04,
  Compare: 0x05,
  WriteZeroes: 0x08,
  DatasetManagement: 0x09,
  Verify: 0x0c,
  ReservationRegister: 0x0d,
  ReservationReport: 0x0e,
  ReservationAcquire: 0x11,
  ReservationRelease: 0x15,
  Copy: 0x19,
} as const;

/** Fabrics command types (FCTYPE, SQE byte 4 of a command with opcode 7Fh). */
export const FabricsType = {
  PropertySet: 0x00,
  Connect: 0x01,
  PropertyGet: 0x04,
  AuthSend: 0x05,
  AuthRecv: 0x06,
  Disconnect: 0x08,
} as const;

/** Controller or Namespace Structure (CNS) values for Identify (CDW10 bits 7:0). */
export const Cns = {
  Namespace: 0x00,
  Controller: 0x01,
  ActiveNamespaceList: 0x02,
  NamespaceIdDescriptors: 0x03,
  NvmSetList: 0x04,
  CsNamespace: 0x05,
  CsController: 0x06,
  CsActiveNamespaceList: 0x07,
  CsIndependentNamespace: 0x08,
  AllocatedNamespaceList: 0x10,
  AllocatedNamespace: 0x11,
  NamespaceAttachedControllerList: 0x12,
  ControllerList: 0x13,
  PrimaryControllerCapabilities: 0x14,
  SecondaryControllerList: 0x15,
  NamespaceGranularityList: 0x16,
  UuidList: 0x17,
  DomainList: 0x18,
  EnduranceGroupList: 0x19,
  CsAllocatedNamespaceList: 0x1a,
  CsAllocatedNamespace: 0x1b,
  IoCommandSet: 0x1c,
} as const;

/** Command Set Identifiers (CSI). */
export const Csi = {
  Nvm: 0x00,
  KeyValue: 0x01,
  Zoned: 0x02,
} as const;

/** Log page identifiers (LID) for Get Log Page. */
export const LogPageId = {
  SupportedLogPages: 0x00,
  ErrorInformation: 0x01,
  SmartHealth: 0x02,
  FirmwareSlot: 0x03,
  ChangedNamespaceList: 0x04,
  CommandsSupportedAndEffects: 0x05,
  DeviceSelfTest: 0x06,
  TelemetryHostInitiated: 0x07,
  TelemetryControllerInitiated: 0x08,
  EnduranceGroupInformation: 0x09,
  PredictableLatencyPerNvmSet: 0x0a,
  PredictableLatencyEventAggregate: 0x0b,
  Ana: 0x0c,
  PersistentEvent: 0x0d,
  LbaStatusInformation: 0x0e,
  EnduranceGroupEventAggregate: 0x0f,
  MediaUnitStatus: 0x10,
  SupportedCapacityConfiguration: 0x11,
  FeatureIdentifiersSupportedAndEffects: 0x12,
  NvmeMiCommandsSupportedAndEffects: 0x13,
  CommandAndFeatureLockdown: 0x14,
  BootPartition: 0x15,
  RotationalMediaInformation: 0x16,
  Discovery: 0x70,
  HostDiscovery: 0x71,
  AveDiscovery: 0x72,
  PullModelDdcRequest: 0x73,
  ReservationNotification: 0x80,
  SanitizeStatus: 0x81,
} as const;

/** Feature identifiers (FID) for Get/Set Features. */
export const FeatureId = {
  Arbitration: 0x01,
  PowerManagement: 0x02,
  LbaRangeType: 0x03,
  TemperatureThreshold: 0x04,
  ErrorRecovery: 0x05,
  VolatileWriteCache: 0x06,
  NumberOfQueues: 0x07,
  InterruptCoalescing: 0x08,
  InterruptVectorConfiguration: 0x09,
  WriteAtomicityNormal: 0x0a,
  AsyncEventConfiguration: 0x0b,
  AutonomousPowerStateTransition: 0x0c,
  HostMemoryBuffer: 0x0d,
  Timestamp: 0x0e,
  KeepAliveTimer: 0x0f,
  HostControlledThermalManagement: 0x10,
  NonOperationalPowerStateConfig: 0x11,
  ReadRecoveryLevelConfig: 0x12,
  PredictableLatencyModeConfig: 0x13,
  PredictableLatencyModeWindow: 0x14,
  HostBehaviorSupport: 0x16,
  SanitizeConfig: 0x17,
  EnduranceGroupEventConfiguration: 0x18,
  IoCommandSetProfile: 0x19,
  SpinupControl: 0x1a,
  SoftwareProgressMarker: 0x80,
  HostIdentifier: 0x81,
  ReservationNotificationMask: 0x82,
  ReservationPersistence: 0x83,
  NamespaceWriteProtectionConfig: 0x84,
} as const;

/** Select (SEL) values for Get Features (CDW10 bits 10:8). */
export const FeatureSelect = {
  Current: 0,
  Default: 1,
  Saved: 2,
  SupportedCapabilities: 3,
} as const;

/** Controller property offsets (the register map, accessed with Property Get/Set over fabrics). */
export const Property = {
  CAP: 0x00,
  VS: 0x08,
  INTMS: 0x0c,
  INTMC: 0x10,
  CC: 0x14,
  CSTS: 0x1c,
  NSSR: 0x20,
  AQA: 0x24,
  ASQ: 0x28,
  ACQ: 0x30,
  NSSD: 0x64,
  CRTO: 0x68,
} as const;

/** Status Code Type (SCT) values, bits 11:9 of the CQE status field. */
export const StatusCodeType = {
  Generic: 0,
  CommandSpecific: 1,
  MediaAndDataIntegrity: 2,
  PathRelated: 3,
  VendorSpecific: 7,
} as const;

/** In-capsule data the admin queue accepts, bytes (NVMe/TCP: 8 KiB for admin and Fabrics commands). */
export const ADMIN_IN_CAPSULE_BYTES = 8192;

/** Generic Command Status values (SCT 0) that the library and the embedded target use by name. */
export const GenericStatus = {
  Success: 0x00,
  InvalidOpcode: 0x01,
  InvalidField: 0x02,
  CommandIdConflict: 0x03,
  DataTransferError: 0x04,
  PowerLossAbort: 0x05,
  InternalError: 0x06,
  AbortRequested: 0x07,
  SqDeletionAbort: 0x08,
  FusedFail: 0x09,
  FusedMissing: 0x0a,
  InvalidNamespaceOrFormat: 0x0b,
  CommandSequenceError: 0x0c,
  SglDataLengthInvalid: 0x0f,
  SglDescriptorTypeInvalid: 0x11,
  SglOffsetInvalid: 0x16,
  HostIdentifierInconsistent: 0x18,
  KeepAliveTimerExpired: 0x19,
  KeepAliveTimeoutInvalid: 0x1a,
  PreemptAndAbort: 0x1b,
  NamespaceWriteProtected: 0x20,
  CommandInterrupted: 0x21,
  TransientTransportError: 0x22,
  LbaOutOfRange: 0x80,
  CapacityExceeded: 0x81,
  NamespaceNotReady: 0x82,
  ReservationConflict: 0x83,
  FormatInProgress: 0x84,
} as const;

/** Command Specific status values (SCT 1) of admin commands that the library and the embedded target use by name. */
export const AdminCommandStatus = {
  /** Asynchronous Event Request: more outstanding than AERL + 1. */
  AsyncEventRequestLimitExceeded: 0x05,
  /** Get Log Page: the log page is not supported. */
  InvalidLogPage: 0x09,
  /** Set Features with SV: the feature cannot be saved. */
  FeatureIdentifierNotSaveable: 0x0d,
} as const;

/** Command Specific status values (SCT 1) for Fabrics commands. */
export const FabricsStatus = {
  ConnectIncompatibleFormat: 0x80,
  ConnectControllerBusy: 0x81,
  ConnectInvalidParameters: 0x82,
  ConnectRestartDiscovery: 0x83,
  ConnectInvalidHost: 0x84,
  InvalidQueueType: 0x85,
  DiscoverRestart: 0x90,
  AuthenticationRequired: 0x91,
} as const;

/** Media and Data Integrity Errors (SCT 2). */
export const MediaStatus = {
  WriteFault: 0x80,
  UnrecoveredReadError: 0x81,
  GuardCheckError: 0x82,
  ApplicationTagCheckError: 0x83,
  ReferenceTagCheckError: 0x84,
  CompareFailure: 0x85,
  AccessDenied: 0x86,
  DeallocatedOrUnwrittenBlock: 0x87,
  StorageTagCheckError: 0x88,
} as const;

/** Path Related Status values (SCT 3). */
export const PathStatus = {
  InternalPathError: 0x00,
  AsymmetricAccessPersistentLoss: 0x01,
  AsymmetricAccessInaccessible: 0x02,
  AsymmetricAccessTransition: 0x03,
  ControllerPathingError: 0x60,
  HostPathingError: 0x70,
  CommandAbortedByHost: 0x71,
} as const;

/** SGL descriptor types (upper nibble of the SGL identifier, byte 15 of a descriptor). */
export const SglType = {
  DataBlock: 0x0,
  BitBucket: 0x1,
  Segment: 0x2,
  LastSegment: 0x3,
  KeyedDataBlock: 0x4,
  TransportDataBlock: 0x5,
} as const;

/** SGL descriptor subtypes (lower nibble of the SGL identifier). */
export const SglSubtype = {
  Address: 0x0,
  Offset: 0x1,
  /** Transport specific; NVMe/TCP uses it with the Transport SGL Data Block for R2T/C2HData transfers. */
  TransportA: 0xa,
} as const;

/** Controller ID value asking the target to allocate any controller (dynamic controller model). */
export const CNTLID_DYNAMIC = 0xffff;
/** Controller ID value for "any static controller". */
export const CNTLID_STATIC_ANY = 0xfffe;
/** Broadcast namespace ID (all namespaces). */
export const NSID_ALL = 0xffffffff;
/** Size of an Identify data structure in bytes. */
export const IDENTIFY_DATA_SIZE = 4096;
/** Size of the Connect command data in bytes. */
export const CONNECT_DATA_SIZE = 1024;
/** Size of a submission queue entry in bytes. */
export const SQE_SIZE = 64;
/** Size of a completion queue entry in bytes. */
export const CQE_SIZE = 16;

/** Connect response DW0 bits (successful Connect): AUTHREQ.ATR and AUTHREQ.ASCR. */
export const ConnectAuthReq = {
  /** Authentication Transaction Required. */
  ATR: 1 << 17,
  /** Authentication and Secure Channel Required. */
  ASCR: 1 << 18,
} as const;

const adminOpcodeNames = new Map<number, string>([
  [0x00, 'Delete I/O Submission Queue'],
  [0x01, 'Create I/O Submission Queue'],
  [0x02, 'Get Log Page'],
  [0x04, 'Delete I/O Completion Queue'],
  [0x05, 'Create I/O Completion Queue'],
  [0x06, 'Identify'],
  [0x08, 'Abort'],
  [0x09, 'Set Features'],
  [0x0a, 'Get Features'],
  [0x0c, 'Asynchronous Event Request'],
  [0x0d, 'Namespace Management'],
  [0x10, 'Firmware Commit'],
  [0x11, 'Firmware Image Download'],
  [0x14, 'Device Self-test'],
  [0x15, 'Namespace Attachment'],
  [0x18, 'Keep Alive'],
  [0x19, 'Directive Send'],
  [0x1a, 'Directive Receive'],
  [0x1c, 'Virtualization Management'],
  [0x1d, 'NVMe-MI Send'],
  [0x1e, 'NVMe-MI Receive'],
  [0x20, 'Capacity Management'],
  [0x24, 'Lockdown'],
  [0x7c, 'Doorbell Buffer Config'],
  [0x80, 'Format NVM'],
  [0x81, 'Security Send'],
  [0x82, 'Security Receive'],
  [0x84, 'Sanitize'],
  [0x86, 'Get LBA Status'],
]);

const nvmOpcodeNames = new Map<number, string>([
  [0x00, 'Flush'],
  [0x01, 'Write'],
  [0x02, 'Read'],
  [0x04, 'Write Uncorrectable'],
  [0x05, 'Compare'],
  [0x08, 'Write Zeroes'],
  [0x09, 'Dataset Management'],
  [0x0c, 'Verify'],
  [0x0d, 'Reservation Register'],
  [0x0e, 'Reservation Report'],
  [0x11, 'Reservation Acquire'],
  [0x15, 'Reservation Release'],
  [0x19, 'Copy'],
]);

const fabricsTypeNames = new Map<number, string>([
  [0x00, 'Property Set'],
  [0x01, 'Connect'],
  [0x04, 'Property Get'],
  [0x05, 'Authentication Send'],
  [0x06, 'Authentication Receive'],
  [0x08, 'Disconnect'],
]);

const hex2 = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;

/**
 * The spec's name for a command, e.g. `opcodeName(0x02, { admin: false })` is "Read",
 * `opcodeName(0x7f, { fctype: 1 })` is "Connect". Unknown opcodes give "opcode 0xNN".
 */
export function opcodeName(opcode: number, ctx: { admin?: boolean; fctype?: number } = {}): string {
  if (opcode === FABRICS_OPCODE) {
    if (ctx.fctype === undefined) return 'Fabrics command';
    return fabricsTypeNames.get(ctx.fctype) ?? `Fabrics command (FCTYPE ${hex2(ctx.fctype)})`;
  }
  const name = ctx.admin === true ? adminOpcodeNames.get(opcode) : ctx.admin === false ? nvmOpcodeNames.get(opcode) : undefined;
  return name ?? `opcode ${hex2(opcode)}`;
}

const LOG_NAMES: Record<number, string> = {
  [LogPageId.SupportedLogPages]: 'Supported Log Pages',
  [LogPageId.ErrorInformation]: 'Error Information',
  [LogPageId.SmartHealth]: 'SMART / Health Information',
  [LogPageId.FirmwareSlot]: 'Firmware Slot Information',
  [LogPageId.ChangedNamespaceList]: 'Changed Namespace List',
  [LogPageId.CommandsSupportedAndEffects]: 'Commands Supported and Effects',
  [LogPageId.DeviceSelfTest]: 'Device Self-test',
  [LogPageId.Ana]: 'Asymmetric Namespace Access',
  [LogPageId.PersistentEvent]: 'Persistent Event',
  [LogPageId.Discovery]: 'Discovery',
  [LogPageId.ReservationNotification]: 'Reservation Notification',
  [LogPageId.SanitizeStatus]: 'Sanitize Status',
};

/** The spec's name of a log page (or "LID 0xNN"). */
export function logPageName(lid: number): string {
  return LOG_NAMES[lid] ?? `LID ${hex2(lid)}`;
}

const FEATURE_NAMES: Record<number, string> = {
  [FeatureId.Arbitration]: 'Arbitration',
  [FeatureId.PowerManagement]: 'Power Management',
  [FeatureId.LbaRangeType]: 'LBA Range Type',
  [FeatureId.TemperatureThreshold]: 'Temperature Threshold',
  [FeatureId.ErrorRecovery]: 'Error Recovery',
  [FeatureId.VolatileWriteCache]: 'Volatile Write Cache',
  [FeatureId.NumberOfQueues]: 'Number of Queues',
  [FeatureId.InterruptCoalescing]: 'Interrupt Coalescing',
  [FeatureId.InterruptVectorConfiguration]: 'Interrupt Vector Configuration',
  [FeatureId.WriteAtomicityNormal]: 'Write Atomicity Normal',
  [FeatureId.AsyncEventConfiguration]: 'Asynchronous Event Configuration',
  [FeatureId.AutonomousPowerStateTransition]: 'Autonomous Power State Transition',
  [FeatureId.HostMemoryBuffer]: 'Host Memory Buffer',
  [FeatureId.Timestamp]: 'Timestamp',
  [FeatureId.KeepAliveTimer]: 'Keep Alive Timer',
  [FeatureId.HostControlledThermalManagement]: 'Host Controlled Thermal Management',
  [FeatureId.NonOperationalPowerStateConfig]: 'Non-Operational Power State Config',
  [FeatureId.HostBehaviorSupport]: 'Host Behavior Support',
  [FeatureId.SoftwareProgressMarker]: 'Software Progress Marker',
  [FeatureId.HostIdentifier]: 'Host Identifier',
  [FeatureId.ReservationNotificationMask]: 'Reservation Notification Mask',
  [FeatureId.ReservationPersistence]: 'Reservation Persistence',
  [FeatureId.NamespaceWriteProtectionConfig]: 'Namespace Write Protection Config',
};

/** The spec's name of a feature (or "FID 0xNN"). */
export function featureName(fid: number): string {
  return FEATURE_NAMES[fid] ?? `FID ${hex2(fid)}`;
}
