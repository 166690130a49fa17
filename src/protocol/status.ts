/**
 * NVMe completion status decoding: the spec's name for every status code and a description a
 * storage engineer can act on.
 *
 * Sources: NVM Express Base Specification 2.x ("Generic Command Status Values", "Command Specific
 * Status Values", "Media and Data Integrity Errors", "Path Related Status"), the NVM Command Set
 * Specification (command specific values 80h-BFh for NVM/Zoned I/O commands) and the Fabrics
 * command status values (Connect, Disconnect, Discovery, Authentication).
 *
 * Command specific values 00h-7Fh have one meaning across the admin command set. Values 80h-BFh
 * depend on the command: 80h is "Connect Incompatible Format" for Connect but "Conflicting
 * Attributes" for NVM Dataset Management/Read/Write. Pass a StatusContext to resolve them.
 */
import { NvmeStatusError, type NvmeStatusInfo } from '../errors.js';
import { AdminOpcode, FABRICS_OPCODE, FabricsType, opcodeName } from './constants.js';
import { statusSc, statusSct, StatusField, type Cqe } from './cqe.js';

/** What the status belongs to; needed to resolve command specific codes 80h..BFh. */
export interface StatusContext {
  /** Opcode of the command that failed. */
  opcode?: number;
  /** FCTYPE, for Fabrics commands (opcode 7Fh). */
  fctype?: number;
  /** True for admin queue commands, false for I/O queue commands. */
  admin?: boolean;
}

interface Entry {
  name: string;
  description: string;
}

type Table = ReadonlyMap<number, Entry>;

function table(entries: Array<[number, string, string]>): Table {
  return new Map(entries.map(([sc, name, description]) => [sc, { name, description }]));
}

// --- SCT 0: Generic Command Status --------------------------------------------------------------

const GENERIC: Table = table([
  [0x00, 'Successful Completion', 'The command completed without error.'],
  [0x01, 'Invalid Command Opcode',
    'The controller does not implement this command (the opcode is reserved or unsupported). Check which commands the controller supports (Identify Controller OACS/ONCS, the Commands Supported and Effects log) before sending it.'],
  [0x02, 'Invalid Field in Command',
    'A field of the command holds a value the controller does not support or treats as reserved (for example an unsupported feature, log page option, CNS value or flag). Compare the command parameters with what Identify Controller reports.'],
  [0x03, 'Command ID Conflict',
    'The command identifier is already used by another outstanding command on this queue; this points to a bug in host-side CID allocation.'],
  [0x04, 'Data Transfer Error',
    'Moving the data or metadata of the command between host and controller failed. Retry; if it persists, check the transport (digest errors, network drops) and the target log.'],
  [0x05, 'Commands Aborted due to Power Loss Notification',
    'The controller aborted the command because it was notified of an imminent power loss. Retry once the controller is back.'],
  [0x06, 'Internal Error',
    'The controller hit an internal error while processing the command (on Linux nvmet typically a memory allocation or backing device failure). Retry; if it persists, check the target\'s kernel or application log.'],
  [0x07, 'Command Abort Requested', 'The command was aborted in response to an Abort command that named it.'],
  [0x08, 'Command Aborted due to SQ Deletion', 'The command was aborted because its submission queue was deleted.'],
  [0x09, 'Command Aborted due to Failed Fused Command', 'The command was aborted because the other command of its fused pair failed.'],
  [0x0a, 'Command Aborted due to Missing Fused Command',
    'The command was aborted because the adjacent submission queue entry did not hold the matching fused command.'],
  [0x0b, 'Invalid Namespace or Format',
    'The namespace ID is not an active namespace of this controller, or the namespace format is invalid for the command. Check the NSID against the Active Namespace ID list: the namespace may have been removed, disabled or detached from this controller.'],
  [0x0c, 'Command Sequence Error',
    'The command broke a required command sequence, for example a second Connect on a queue that is already connected, or a command before the queue was connected or the controller enabled.'],
  [0x0d, 'Invalid SGL Segment Descriptor', 'An SGL Segment or SGL Last Segment descriptor in the command is invalid.'],
  [0x0e, 'Invalid Number of SGL Descriptors',
    'The SGL has a Segment or Last Segment descriptor somewhere other than the last descriptor of a segment, or more descriptors than the controller accepts (see MSDBD).'],
  [0x0f, 'Data SGL Length Invalid',
    'The data length described by the SGL does not match what the command transfers (too short, or longer than the controller accepts). Check the transfer size against the block count, block size and MDTS.'],
  [0x10, 'Metadata SGL Length Invalid', 'The metadata length described by the SGL is too short or longer than the controller accepts.'],
  [0x11, 'SGL Descriptor Type Invalid', 'The controller does not support the SGL descriptor type (or subtype) that the command used.'],
  [0x12, 'Invalid Use of Controller Memory Buffer', 'The command used the Controller Memory Buffer in a way the controller does not support.'],
  [0x13, 'PRP Offset Invalid', 'The offset field of a PRP entry is invalid.'],
  [0x14, 'Atomic Write Unit Exceeded', 'The write is longer than the atomic write unit the controller guarantees for this namespace.'],
  [0x15, 'Operation Denied',
    'The controller refused the command for lack of access rights (a security, lockdown or access-control rule forbids it).'],
  [0x16, 'SGL Offset Invalid',
    'The offset in an SGL descriptor is invalid. For NVMe/TCP this usually means in-capsule data was described at an offset or with a length the controller does not accept: check IOCCSZ and ICDOFF from Identify Controller.'],
  [0x18, 'Host Identifier Inconsistent Format',
    'The host identifier format does not match: this host used both 64-bit and 128-bit host identifiers on different controllers, or a Reservation Report asked for the standard data structure (64-bit host identifiers) while the host uses a 128-bit host identifier, as every NVMe over Fabrics host does. Use one 128-bit host ID everywhere and ask for the extended report (EDS).'],
  [0x19, 'Keep Alive Timer Expired',
    'The controller\'s keep-alive timer expired (neither a command nor Keep Alive arrived within KATO), so it tore down the association. Reconnect, and send Keep Alive well within the KATO.'],
  [0x1a, 'Keep Alive Timeout Invalid', 'The controller does not accept the Keep Alive Timeout (KATO) value that was requested.'],
  [0x1b, 'Command Aborted due to Preempt and Abort',
    'The command was aborted because another host preempted this host\'s registration or reservation with Reservation Acquire (preempt and abort). Its registration was probably removed: check with Reservation Report and register again before retrying.'],
  [0x1c, 'Sanitize Failed', 'The last sanitize operation failed and no recovery action has completed since; the media cannot be used until a sanitize succeeds.'],
  [0x1d, 'Sanitize In Progress', 'The command is not allowed while a sanitize operation is running. Wait for the sanitize to finish.'],
  [0x1e, 'SGL Data Block Granularity Invalid', 'The address alignment or length granularity of an SGL Data Block descriptor is invalid for this controller.'],
  [0x1f, 'Command Not Supported for Queue in CMB',
    'The controller does not support this command on a submission or completion queue placed in the Controller Memory Buffer.'],
  [0x20, 'Namespace is Write Protected', 'The namespace is write protected, so the controller refused a command that would modify it.'],
  [0x21, 'Command Interrupted', 'The controller interrupted the command and could not complete it. This status is meant to be retried.'],
  [0x22, 'Transient Transport Error',
    'A transient transport error was detected; retrying on the same controller is likely to succeed. After about four failures treat it as persistent and use another path.'],
  [0x23, 'Command Prohibited by Command and Feature Lockdown', 'Command and Feature Lockdown prohibits this command on this controller.'],
  [0x24, 'Admin Command Media Not Ready', 'The admin command needs media that is not ready yet. Retry after the delay indicated by CRD.'],
  [0x25, 'Invalid Key Tag', 'The KEYTAG field of the command does not name a valid key.'],
  [0x26, 'Host Dispersed Namespace Support Not Enabled',
    'The command is not allowed until the host enables dispersed namespace support (HDISNS) in the Host Behavior Support feature.'],
  [0x27, 'Host Identifier Not Initialized', 'The command needs a host identifier, and none has been set for this controller.'],
  [0x28, 'Incorrect Key', 'The key associated with the command\'s KEYTAG is incorrect.'],
  [0x29, 'FDP Disabled', 'The command needs Flexible Data Placement, which is disabled.'],
  [0x2a, 'Invalid Placement Handle List', 'The placement handle list of the command is invalid (bad or restricted reclaim unit handle, or too many entries).'],
  [0x80, 'LBA Out of Range',
    'The command addresses a logical block beyond the end of the namespace. Check SLBA + NLB against the namespace size (NSZE); the namespace may have been resized.'],
  [0x81, 'Capacity Exceeded',
    'The command would exceed the capacity of the namespace (for example a thin-provisioned pool is full). Free space on the target or grow the backing storage.'],
  [0x82, 'Namespace Not Ready',
    'The namespace cannot be accessed right now for a reason other than an ANA state (for example it is being formatted, or its backing device is missing). Retry after a delay unless DNR is set.'],
  [0x83, 'Reservation Conflict',
    'The command conflicts with the reservation state of the namespace: another host holds a reservation whose type excludes this access (for example a write while another host holds Write Exclusive), or, for a reservation command, this host is not registered, its current key does not match, or the reservation is held by another host. Read the reservation status (Reservation Report) and register, acquire or preempt as needed.'],
  [0x84, 'Format In Progress', 'A Format NVM command is running on the namespace. Retry when the format has finished.'],
  [0x85, 'Invalid Value Size', 'The value size of the Key Value command is not valid.'],
  [0x86, 'Invalid Key Size', 'The key size of the Key Value command is not valid.'],
  [0x87, 'KV Key Does Not Exist', 'The Key Value command requires an existing key and the key does not exist.'],
  [0x88, 'Unrecovered Error', 'An unrecovered error occurred while reading the Key Value pair from the media.'],
  [0x89, 'KV Key Exists', 'The Key Value command requires that the key does not exist, and it exists.'],
]);

// --- SCT 1: Command Specific Status, values 00h-7Fh (shared by the admin command set) -----------

const COMMAND_SPECIFIC: Table = table([
  [0x00, 'Completion Queue Invalid', 'Create I/O Submission Queue named a completion queue that does not exist.'],
  [0x01, 'Invalid Queue Identifier',
    'The queue identifier is invalid: already in use, or beyond the number of queues the controller supports (see Number of Queues).'],
  [0x02, 'Invalid Queue Size', 'The requested queue size is invalid (zero, or larger than CAP.MQES allows).'],
  [0x03, 'Abort Command Limit Exceeded',
    'Too many Abort commands are outstanding; the limit is Identify Controller ACL + 1. Wait for one to complete.'],
  [0x05, 'Asynchronous Event Request Limit Exceeded',
    'Too many Asynchronous Event Request commands are outstanding; the limit is Identify Controller AERL + 1.'],
  [0x06, 'Invalid Firmware Slot', 'The firmware slot is invalid or read-only.'],
  [0x07, 'Invalid Firmware Image', 'The firmware image given for activation is invalid and was not loaded.'],
  [0x08, 'Invalid Interrupt Vector', 'Create I/O Completion Queue named an invalid interrupt vector.'],
  [0x09, 'Invalid Log Page',
    'The controller does not support the requested log page, or the log page offset, length or options are invalid for it. Check the Supported Log Pages log or Identify Controller LPA.'],
  [0x0a, 'Invalid Format', 'The LBA format (or other format parameter) requested is not supported.'],
  [0x0b, 'Firmware Activation Requires Conventional Reset',
    'The firmware was committed, but activating it needs a conventional reset.'],
  [0x0c, 'Invalid Queue Deletion',
    'The I/O completion queue cannot be deleted (it does not exist, is the admin queue, or still has submission queues attached).'],
  [0x0d, 'Feature Identifier Not Saveable', 'The feature does not support saving its value (SV bit set on a feature that is not saveable).'],
  [0x0e, 'Feature Not Changeable', 'The feature cannot be changed on this controller.'],
  [0x0f, 'Feature Not Namespace Specific', 'The feature applies to the whole controller, but a specific namespace was given. Use NSID 0 or FFFFFFFFh.'],
  [0x10, 'Firmware Activation Requires NVM Subsystem Reset', 'The firmware was committed, but activating it needs an NVM subsystem reset.'],
  [0x11, 'Firmware Activation Requires Controller Level Reset', 'The firmware was committed, but activating it needs a controller level reset.'],
  [0x12, 'Firmware Activation Requires Maximum Time Violation',
    'Activating the image now would exceed the Maximum Time for Firmware Activation (MTFA).'],
  [0x13, 'Firmware Activation Prohibited', 'The controller refuses to activate this firmware image.'],
  [0x14, 'Overlapping Range', 'The downloaded firmware image (or the requested range) overlaps an existing range.'],
  [0x15, 'Namespace Insufficient Capacity', 'Creating the namespace needs more free capacity than the NVM subsystem has.'],
  [0x16, 'Namespace Identifier Unavailable', 'No namespace identifier is free: the maximum number of namespaces already exists.'],
  [0x18, 'Namespace Already Attached', 'The namespace is already attached to the controller.'],
  [0x19, 'Namespace Is Private', 'The namespace is private and already attached to another controller.'],
  [0x1a, 'Namespace Not Attached', 'The namespace is not attached to the controller, so it cannot be detached.'],
  [0x1b, 'Thin Provisioning Not Supported', 'The controller does not support thin provisioning.'],
  [0x1c, 'Controller List Invalid', 'The controller list contains an invalid controller identifier.'],
  [0x1d, 'Device Self-test In Progress', 'A device self-test is already running.'],
  [0x1e, 'Boot Partition Write Prohibited', 'The boot partition is locked against writes.'],
  [0x1f, 'Invalid Controller Identifier', 'The controller identifier is invalid.'],
  [0x20, 'Invalid Secondary Controller State', 'The action is invalid for the current state of the secondary or primary controller.'],
  [0x21, 'Invalid Number of Controller Resources', 'The number of flexible controller resources requested is invalid.'],
  [0x22, 'Invalid Resource Identifier', 'A resource identifier is invalid.'],
  [0x23, 'Sanitize Prohibited While Persistent Memory Region is Enabled', 'Disable the Persistent Memory Region before sanitizing.'],
  [0x24, 'ANA Group Identifier Invalid', 'The ANA group identifier (ANAGRPID) is not supported.'],
  [0x25, 'ANA Attach Failed', 'The namespace could not be attached because of an ANA condition.'],
  [0x26, 'Insufficient Capacity', 'The operation needs more free capacity than is available.'],
  [0x27, 'Namespace Attachment Limit Exceeded', 'Attaching the namespace would exceed the number of attachments allowed.'],
  [0x28, 'Prohibition of Command Execution Not Supported', 'The controller does not support prohibiting command execution.'],
  [0x29, 'I/O Command Set Not Supported', 'The I/O command set is not supported by the controller.'],
  [0x2a, 'I/O Command Set Not Enabled', 'The I/O command set is supported but not enabled (see the I/O Command Set Profile feature).'],
  [0x2b, 'I/O Command Set Combination Rejected', 'The requested combination of I/O command sets is not supported.'],
  [0x2c, 'Invalid I/O Command Set', 'The I/O command set is invalid.'],
  [0x2d, 'Identifier Unavailable', 'No identifier is available: the number of Endurance Groups or NVM Sets supported has been reached.'],
  [0x2f, 'Invalid Discovery Information', 'An extended discovery information entry does not apply to the selected entity type.'],
  [0x30, 'Zoning Data Structure Locked', 'The requested zoning data structure is locked on the centralized discovery controller.'],
  [0x31, 'Zoning Data Structure Not Found', 'The requested zoning data structure does not exist on the centralized discovery controller.'],
  [0x32, 'Insufficient Discovery Resources', 'The discovery controller has no room for more discovery information entries (possibly temporary).'],
  [0x33, 'Requested Function Disabled', 'The requested function (for example fabric zoning) is disabled on the discovery controller.'],
  [0x34, 'ZoneGroup Originator Invalid', 'The ZoneGroup originator NQN does not match the host NQN used to connect to the discovery controller.'],
  [0x37, 'Invalid Controller Data Queue', 'The controller data queue identifier is invalid for this controller.'],
  [0x38, 'Not Enough Resources', 'The controller does not have enough resources to process the command.'],
  [0x39, 'Controller Suspended', 'The operation is not allowed while the controller is suspended.'],
  [0x3a, 'Controller Not Suspended', 'The operation requires the controller to be suspended.'],
  [0x3b, 'Controller Data Queue Full', 'A controller data queue became full.'],
]);

// --- SCT 1, 80h-BFh for NVM Command Set (and Zoned Namespace) I/O commands ----------------------

const NVM_IO_SPECIFIC: Table = table([
  [0x80, 'Conflicting Attributes', 'The attributes given in the command (for example Dataset Management attributes) conflict with each other.'],
  [0x81, 'Invalid Protection Information',
    'The protection information settings of the command (PRINFO) do not fit the namespace\'s protection information format.'],
  [0x82, 'Attempted Write to Read Only Range', 'The LBA range of the command contains read-only logical blocks.'],
  [0x83, 'Command Size Limit Exceeded',
    'The command exceeds a size limit of the controller (for example the Dataset Management range or size limits DMRL/DMRSL/DMSL).'],
  [0x85, 'Incompatible Namespace or Format', 'A source namespace and the destination namespace have incompatible formats.'],
  [0x86, 'Fast Copy Not Possible', 'Fast copy was required (FCO) and the controller could not use it.'],
  [0x87, 'Overlapping I/O Range', 'A source logical block range overlaps the destination range.'],
  [0x89, 'Insufficient Resources', 'A resource shortage prevented the controller from performing the copy.'],
  [0xb6, 'Invalid Zone Operation Request', 'The zone operation requested is invalid for the zone\'s state or attributes.'],
  [0xb7, 'ZRWA Resources Unavailable', 'No zone random write areas are available.'],
  [0xb8, 'Zone Boundary Error', 'The command addresses logical blocks in more than one zone.'],
  [0xb9, 'Zone Is Full', 'The zone is full; reset it before writing again.'],
  [0xba, 'Zone Is Read Only', 'The zone is read only.'],
  [0xbb, 'Zone Is Offline', 'The zone is offline.'],
  [0xbc, 'Zone Invalid Write', 'The write did not start at the zone\'s write pointer.'],
  [0xbd, 'Too Many Active Zones', 'The controller does not allow more active zones.'],
  [0xbe, 'Too Many Open Zones', 'The controller does not allow more open zones.'],
  [0xbf, 'Invalid Zone State Transition', 'The requested zone state transition is not valid.'],
]);

// --- SCT 1 for Fabrics commands -----------------------------------------------------------------

const CONNECT_SPECIFIC: Table = table([
  [0x80, 'Connect Incompatible Format',
    'The NVM subsystem does not support the Connect record format (RECFMT) the host sent.'],
  [0x81, 'Connect Controller Busy',
    'The controller is busy: the queue is already connected, the controller is associated with another host, or the target is out of resources. Retry later, or connect with the dynamic controller ID (FFFFh).'],
  [0x82, 'Connect Invalid Parameters',
    'The target rejected a Connect parameter; DW0 of the completion says which (IATTR/IPO): typically an unknown subsystem NQN, a host NQN the subsystem does not allow, an unknown controller ID, or an invalid queue ID or queue size.'],
  [0x83, 'Connect Restart Discovery',
    'The subsystem is not available through this port or address any more. Read the discovery log page again and connect using a current entry.'],
  [0x84, 'Connect Invalid Host',
    'The host is not allowed to connect to this subsystem or controller. Add the host NQN to the subsystem\'s allowed hosts on the target (or allow any host).'],
  [0x91, 'Authentication Required', 'The target requires NVMe in-band authentication (DH-HMAC-CHAP) before this queue can be used.'],
]);

const DISCONNECT_SPECIFIC: Table = table([
  [0x85, 'Invalid Queue Type', 'Disconnect was sent on a queue type that does not allow it (Disconnect is only valid on I/O queues).'],
  [0x91, 'Authentication Required', 'The target requires NVMe in-band authentication before this queue can be used.'],
]);

const FABRICS_ANY: Table = table([
  [0x80, 'Connect Incompatible Format', CONNECT_SPECIFIC.get(0x80)!.description],
  [0x81, 'Connect Controller Busy', CONNECT_SPECIFIC.get(0x81)!.description],
  [0x82, 'Connect Invalid Parameters', CONNECT_SPECIFIC.get(0x82)!.description],
  [0x83, 'Connect Restart Discovery', CONNECT_SPECIFIC.get(0x83)!.description],
  [0x84, 'Connect Invalid Host', CONNECT_SPECIFIC.get(0x84)!.description],
  [0x85, 'Invalid Queue Type', DISCONNECT_SPECIFIC.get(0x85)!.description],
  [0x90, 'Discover Restart',
    'The discovery log changed while it was being read, so the records read so far are stale. Read the log page again from offset 0.'],
  [0x91, 'Authentication Required',
    'The target requires NVMe in-band authentication (DH-HMAC-CHAP) and this queue has not been authenticated yet.'],
]);

/** 80h-BFh values that apply to admin commands regardless of command set (Fabrics-defined). */
const ADMIN_HIGH_SPECIFIC: Table = table([
  [0x90, 'Discover Restart', FABRICS_ANY.get(0x90)!.description],
  [0x91, 'Authentication Required', FABRICS_ANY.get(0x91)!.description],
]);

// --- SCT 2: Media and Data Integrity Errors -----------------------------------------------------

const MEDIA: Table = table([
  [0x80, 'Write Fault',
    'The write data could not be committed to the media (on Linux nvmet: the backing device or file returned a write error). Check the health of the target\'s storage.'],
  [0x81, 'Unrecovered Read Error',
    'The data could not be read back from the media (on Linux nvmet: the backing device returned a read error). The blocks may be lost; check the target\'s storage health.'],
  [0x82, 'End-to-end Guard Check Error', 'The protection information guard (CRC) of the data did not match: the data was corrupted on its way or on the media.'],
  [0x83, 'End-to-end Application Tag Check Error', 'The protection information application tag did not match the expected value.'],
  [0x84, 'End-to-end Reference Tag Check Error',
    'The protection information reference tag did not match the expected value (data at the wrong LBA, or a wrong initial reference tag).'],
  [0x85, 'Compare Failure', 'The Compare command found that the data on the media differs from the data sent.'],
  [0x86, 'Access Denied', 'Access to the namespace or LBA range is denied for lack of access rights.'],
  [0x87, 'Deallocated or Unwritten Logical Block',
    'The command read or verified a range containing deallocated or never-written blocks, and the namespace is set to report that as an error.'],
  [0x88, 'End-to-end Storage Tag Check Error', 'The protection information storage tag did not match the expected value.'],
]);

// --- SCT 3: Path Related Status -----------------------------------------------------------------

const PATH: Table = table([
  [0x00, 'Internal Path Error',
    'The command failed because of an internal error of the controller that is specific to this path. Retry on another path (controller) if one exists.'],
  [0x01, 'Asymmetric Access Persistent Loss',
    'The namespace is in the ANA Persistent Loss state on this controller: it will not become accessible through this path. Use another path.'],
  [0x02, 'Asymmetric Access Inaccessible',
    'The namespace is in the ANA Inaccessible state on this controller. Send I/O through a path whose ANA state is optimized or non-optimized, and re-read the ANA log page.'],
  [0x03, 'Asymmetric Access Transition',
    'The namespace is changing ANA state on this controller. Retry after a short delay (at most ANATT seconds), or use another path.'],
  [0x60, 'Controller Pathing Error', 'The controller detected a pathing error. Retry on another path.'],
  [0x70, 'Host Pathing Error', 'The host detected a pathing error (for example the connection to this controller failed). Retry on another path.'],
  [0x71, 'Command Aborted By Host', 'The host aborted the command (for example on timeout or while tearing down the connection).'],
]);

const hex = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;

function unknown(sct: number, sc: number): Entry {
  return {
    name: `Unknown status (SCT ${hex(sct)}, SC ${hex(sc)})`,
    description: 'The controller returned a status code this library does not know. Look it up in the NVMe specification or the target documentation.',
  };
}

/** Ambiguous 80h..BFh command specific code without enough context: list what it can mean. */
function ambiguousCommandSpecific(sc: number): Entry | undefined {
  const candidates: string[] = [];
  const fab = FABRICS_ANY.get(sc);
  if (fab) candidates.push(`for Fabrics commands "${fab.name}"`);
  const nvm = NVM_IO_SPECIFIC.get(sc);
  if (nvm) candidates.push(`for NVM I/O commands "${nvm.name}"`);
  if (candidates.length === 0) return undefined;
  if (candidates.length === 1) {
    const only = (fab ?? nvm)!;
    return only;
  }
  return {
    name: `Command Specific Status ${hex(sc)}`,
    description: `The meaning depends on the command: ${candidates.join('; ')}.`,
  };
}

function lookup(sct: number, sc: number, ctx: StatusContext): Entry {
  switch (sct) {
    case 0:
      return GENERIC.get(sc) ?? unknown(sct, sc);
    case 1: {
      if (sc < 0x80) return COMMAND_SPECIFIC.get(sc) ?? unknown(sct, sc);
      if (sc >= 0xc0) return vendor(sct, sc);
      if (ctx.opcode === FABRICS_OPCODE) {
        const t = ctx.fctype === FabricsType.Connect ? CONNECT_SPECIFIC : ctx.fctype === FabricsType.Disconnect ? DISCONNECT_SPECIFIC : FABRICS_ANY;
        return t.get(sc) ?? FABRICS_ANY.get(sc) ?? unknown(sct, sc);
      }
      if (sc === 0x91) return FABRICS_ANY.get(0x91)!;
      if (ctx.admin === true) {
        if (sc === 0x90 && ctx.opcode !== undefined && ctx.opcode !== AdminOpcode.GetLogPage) return unknown(sct, sc);
        return ADMIN_HIGH_SPECIFIC.get(sc) ?? unknown(sct, sc);
      }
      if (ctx.admin === false) return NVM_IO_SPECIFIC.get(sc) ?? unknown(sct, sc);
      return ambiguousCommandSpecific(sc) ?? unknown(sct, sc);
    }
    case 2:
      if (sc >= 0xc0) return vendor(sct, sc);
      return MEDIA.get(sc) ?? unknown(sct, sc);
    case 3:
      if (sc >= 0xc0) return vendor(sct, sc);
      return PATH.get(sc) ?? unknown(sct, sc);
    case 7:
      return vendor(sct, sc);
    default:
      return unknown(sct, sc);
  }
}

function vendor(sct: number, sc: number): Entry {
  return {
    name: `Vendor Specific status (SCT ${hex(sct)}, SC ${hex(sc)})`,
    description: 'The controller returned a vendor specific status code; see the vendor or target documentation.',
  };
}

/**
 * Decode the raw 16-bit status field into sct/sc/crd/more/dnr plus the spec's name and a
 * plain-words description. Covers every generic, command specific (resolved by opcode/fctype,
 * admin vs I/O), media and path related code.
 */
export function decodeStatus(status: number, ctx: StatusContext = {}): NvmeStatusInfo {
  const sc = statusSc(status);
  const sct = statusSct(status);
  const crd = (status >> StatusField.CRD_SHIFT) & StatusField.CRD_MASK;
  const more = (status & StatusField.MORE) !== 0;
  const dnr = (status & StatusField.DNR) !== 0;
  const e = lookup(sct, sc, ctx);
  let description = e.description;
  if (sct !== 0 || sc !== 0) {
    if (dnr) description += ' Do Not Retry is set: the same command is expected to fail again.';
    if (crd !== 0) description += ` The controller asks to wait the Command Retry Delay CRDT${crd} (Identify Controller) before retrying.`;
    if (more) description += ' More detail is in the Error Information log page (LID 01h).';
  }
  return { sct, sc, crd, more, dnr, name: e.name, description };
}

/** Context for statusError. */
export interface StatusErrorInput {
  opcode: number;
  fctype?: number;
  admin: boolean;
  /** Command name for the message (default: the spec's name of the opcode). */
  command?: string;
  qid?: number;
  /** For a failed Connect: names used to explain the failure in plain words. */
  connect?: { hostnqn: string; subnqn: string; qid: number };
  /** Override the message entirely. */
  message?: string;
}

/** Build the NvmeStatusError for a failed completion. */
export function statusError(cqe: Cqe, ctx: StatusErrorInput): NvmeStatusError {
  const sctx: StatusContext = { opcode: ctx.opcode, admin: ctx.admin };
  if (ctx.fctype !== undefined) sctx.fctype = ctx.fctype;
  const info = decodeStatus(cqe.status, sctx);
  const command = ctx.command ?? opcodeName(ctx.opcode, { admin: ctx.admin, ...(ctx.fctype === undefined ? {} : { fctype: ctx.fctype }) });
  let message = ctx.message;
  if (message === undefined && ctx.connect && ctx.opcode === FABRICS_OPCODE && ctx.fctype === FabricsType.Connect) {
    message = describeConnectFailure(cqe.status, cqe.dw0, ctx.connect);
  }
  return new NvmeStatusError(info, {
    opcode: ctx.opcode,
    command,
    ...(ctx.qid === undefined ? {} : { qid: ctx.qid }),
    cid: cqe.cid,
    dw0: cqe.dw0,
    dw1: cqe.dw1,
    ...(message === undefined ? {} : { message }),
  });
}

/** Connect command fields (SQE byte offsets) that IPO can point at when IATTR = 0. */
const CONNECT_SQE_FIELDS = new Map<number, string>([
  [0, 'the opcode'],
  [4, 'the command type (FCTYPE)'],
  [24, 'the data pointer (SGL)'],
  [40, 'the record format (RECFMT)'],
  [42, 'the queue ID (QID)'],
  [44, 'the queue size (SQSIZE)'],
  [46, 'the connect attributes (CATTR)'],
  [48, 'the keep-alive timeout (KATO)'],
]);

/** Decoded Connect response DW0 for status Connect Invalid Parameters. */
export interface ConnectInvalidParameter {
  /** 0: the parameter is in the Connect SQE; 1: it is in the Connect data. */
  iattr: number;
  /** Byte offset of the invalid parameter in the SQE or data. */
  ipo: number;
}

/** Split Connect response DW0 into IATTR (byte 2 bit 0) and IPO (bytes 1:0). */
export function decodeConnectInvalidParameter(dw0: number): ConnectInvalidParameter {
  return { iattr: (dw0 >>> 16) & 1, ipo: dw0 & 0xffff };
}

/**
 * Plain-words message for a failed Connect, naming host and subsystem, using IATTR/IPO from DW0
 * for status Connect Invalid Parameters (SCT 1, SC 82h).
 *
 * Linux nvmet answers an unknown subsystem with 82h, IATTR 1, IPO 256 (SUBNQN), a host that is not
 * in allowed_hosts with 84h (Connect Invalid Host), IATTR 1, IPO 512 (HOSTNQN), an unknown
 * controller ID on an I/O queue connect with 82h pointing at CNTLID (16), and a bad queue ID or
 * size with 82h pointing at QID (42) or SQSIZE (44) in the SQE.
 */
export function describeConnectFailure(status: number, dw0: number, who: { hostnqn: string; subnqn: string; qid: number }): string {
  const sct = statusSct(status);
  const sc = statusSc(status);
  const queue = who.qid === 0 ? 'the admin queue' : `I/O queue ${who.qid}`;
  const short = `Connect of ${queue} failed: `;
  const prefix = `Connect of ${queue} to subsystem ${who.subnqn} as host ${who.hostnqn} failed: `;
  const notAllowed = `host ${who.hostnqn} is not allowed to connect to subsystem ${who.subnqn}; add the host NQN to the subsystem's allowed hosts on the target, or allow any host`;
  if (sct === 1) {
    switch (sc) {
      case 0x80:
        return `${prefix}the target does not support the Connect record format (RECFMT) this host sent (Connect Incompatible Format).`;
      case 0x81:
        return `${prefix}the controller is busy: the queue is already connected, the controller is associated with another host, or the target is out of resources (Connect Controller Busy). Retry later.`;
      case 0x82: {
        const { iattr, ipo } = decodeConnectInvalidParameter(dw0);
        if (iattr === 1 && ipo === 512) return `${short}${notAllowed} (Connect Invalid Parameters).`;
        if (iattr === 1 && ipo === 256) {
          return `${short}subsystem ${who.subnqn} does not exist on this target, or is not exported on this port (Connect Invalid Parameters).`;
        }
        return `${prefix}${describeInvalidParameter(iattr, ipo, who.qid)} (Connect Invalid Parameters).`;
      }
      case 0x83:
        return `${prefix}the subsystem is not available through this port any more; read the discovery log again and connect through a current entry (Connect Restart Discovery).`;
      case 0x84:
        return `${short}${notAllowed} (Connect Invalid Host).`;
      case 0x91:
        return `${prefix}the target requires in-band authentication (DH-HMAC-CHAP) for this host (Authentication Required).`;
      default:
        break;
    }
  }
  const info = decodeStatus(status, { opcode: FABRICS_OPCODE, fctype: FabricsType.Connect });
  return `${prefix}${info.name}: ${info.description}`;
}

function describeInvalidParameter(iattr: number, ipo: number, qid: number): string {
  if (iattr === 1) {
    if (ipo === 16) {
      return qid === 0
        ? 'the target rejected the controller ID (CNTLID) in the Connect data; the admin queue should ask for FFFFh (dynamic)'
        : 'the target has no controller with the controller ID (CNTLID) this I/O queue named for this host and subsystem; the controller may have been torn down (keep-alive expiry), reconnect the admin queue';
    }
    if (ipo < 16) return 'the target rejected the host identifier (HOSTID) in the Connect data';
    return `the target rejected the Connect data at byte offset ${ipo}`;
  }
  if (ipo === 42) return `queue ID ${qid} is not valid for this controller (more I/O queues than the controller granted?)`;
  if (ipo === 44) return 'the queue size (SQSIZE) is invalid: zero, or larger than the controller\'s CAP.MQES allows';
  const field = CONNECT_SQE_FIELDS.get(ipo);
  return field ? `the target rejected ${field} of the Connect command` : `the target rejected the Connect command at byte offset ${ipo}`;
}
