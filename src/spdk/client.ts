/**
 * Typed SPDK RPC methods for test harnesses. Method names are the camelCase of SPDK's RPC names
 * (`nvmf_create_subsystem` is `nvmfCreateSubsystem`); parameter and result fields keep SPDK's own snake_case names,
 * so SPDK's JSON-RPC documentation applies as written. Anything not covered here: `call(method, params)`.
 *
 * Numbers in results are JavaScript numbers, exact up to 2^53.
 */
import { SpdkRpcClient, type SpdkCallOptions } from './rpc-client.js';

/** NQN of SPDK's (and every target's) well-known discovery subsystem. */
export const SPDK_DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';

/** ANA states SPDK accepts for a listener. */
export type SpdkAnaState = 'optimized' | 'non_optimized' | 'inaccessible';

/** `spdk_get_version` result. */
export interface SpdkVersion {
  /** e.g. "SPDK v26.05". */
  version: string;
  fields: { major: number; minor: number; patch: number; suffix: string; commit?: string };
}

/** A listen address (SPDK's rpc_nvmf_listen_address object). */
export interface NvmfListenAddress {
  /** "TCP" (case-insensitive for SPDK). */
  trtype: string;
  /** "IPv4" (default) or "IPv6". */
  adrfam?: string;
  traddr: string;
  /** Port, as a string. */
  trsvcid?: string;
}

/** One block device as `bdev_get_bdevs` reports it (fields vary by bdev type). */
export interface SpdkBdev {
  name: string;
  aliases: string[];
  product_name: string;
  block_size: number;
  num_blocks: number;
  uuid?: string;
  md_size?: number;
  md_interleave?: boolean;
  dif_type?: number;
  claimed?: boolean;
  supported_io_types?: Record<string, boolean>;
  driver_specific?: Record<string, unknown>;
  [field: string]: unknown;
}

/** `bdev_get_bdevs` parameters. */
export interface BdevGetBdevsParams {
  /** Only this bdev (an error if it does not exist). */
  name?: string;
  /** With `name`: wait this many ms for the bdev to appear. */
  timeout?: number;
}

/** `bdev_get_iostat` parameters. */
export interface BdevGetIostatParams {
  /** Only these bdevs. */
  names?: string[];
  per_channel?: boolean;
  reset_mode?: 'all' | 'maxmin' | 'error' | 'none';
}

/** Per-bdev I/O counters of `bdev_get_iostat`. */
export interface SpdkBdevIostat {
  name: string;
  bytes_read: number;
  num_read_ops: number;
  bytes_written: number;
  num_write_ops: number;
  bytes_unmapped: number;
  num_unmap_ops: number;
  read_latency_ticks: number;
  write_latency_ticks: number;
  unmap_latency_ticks: number;
  [field: string]: unknown;
}

/** Result of `bdev_get_iostat`: the tick rate and one entry per bdev. */
export interface BdevIostatResult {
  tick_rate: number;
  ticks?: number;
  bdevs: SpdkBdevIostat[];
}

/** `bdev_malloc_create` parameters (a RAM bdev). */
export interface BdevMallocCreateParams {
  /** Default: SPDK picks "MallocN". */
  name?: string;
  /** Data block size in bytes, a multiple of 512. */
  block_size: number;
  num_blocks: number;
  uuid?: string;
  optimal_io_boundary?: number;
  /** Metadata bytes per block: 0, 8, 16, 32, 64 or 128. */
  md_size?: number;
  /** Metadata interleaved with the data (extended LBA) rather than separate. */
  md_interleave?: boolean;
  /** Protection information type 0..3 (needs md_size). */
  dif_type?: number;
  dif_is_head_of_md?: boolean;
  physical_block_size?: number;
  dif_pi_format?: number;
  numa_id?: number;
}

/** `bdev_null_create` parameters (a bdev that discards writes and reads zeroes). */
export interface BdevNullCreateParams {
  name: string;
  block_size: number;
  num_blocks: number;
  uuid?: string;
  physical_block_size?: number;
  md_size?: number;
  dif_type?: number;
  dif_pi_format?: number;
  dif_is_head_of_md?: boolean;
  preferred_write_granularity?: number;
  preferred_write_alignment?: number;
  optimal_write_size?: number;
  preferred_unmap_granularity?: number;
  preferred_unmap_alignment?: number;
}

/** `bdev_aio_create` parameters (a bdev over a file or block device). */
export interface BdevAioCreateParams {
  name: string;
  /** Path of a file or block device. */
  filename: string;
  block_size?: number;
  readonly?: boolean;
  fallocate?: boolean;
  uuid?: string;
  nowait?: boolean;
}

/** `nvmf_create_transport` parameters (TCP-relevant ones first; RDMA/vfio-user ones pass through). */
export interface NvmfCreateTransportParams {
  trtype: string;
  tgt_name?: string;
  max_queue_depth?: number;
  max_io_qpairs_per_ctrlr?: number;
  in_capsule_data_size?: number;
  /** Largest I/O in bytes (the controller's MDTS follows from it). */
  max_io_size?: number;
  /** Buffer unit for data transfers in bytes. */
  io_unit_size?: number;
  max_aq_depth?: number;
  num_shared_buffers?: number;
  buf_cache_size?: number;
  iobuf_small_cache_size?: number;
  iobuf_large_cache_size?: number;
  zcopy?: boolean;
  /** TCP: false disables the C2HData SUCCESS optimisation (a CapsuleResp follows every read). */
  c2h_success?: boolean;
  /** Insert protection information on writes and strip it on reads for bdevs with DIF. */
  dif_insert_or_strip?: boolean;
  sock_priority?: number;
  abort_timeout_sec?: number;
  control_msg_num?: number;
  acceptor_poll_rate?: number;
  ack_timeout?: number;
  disable_command_passthru?: boolean;
  /** KATO granularity in 100 ms units. */
  kas?: number;
  /** Smallest Keep Alive Timeout in ms. */
  min_kato?: number;
  masked_oncs?: string[];
  masked_fuses?: string[];
  num_cqe?: number;
  max_srq_depth?: number;
  no_srq?: boolean;
  acceptor_backlog?: number;
  no_wr_batching?: boolean;
  data_wr_pool_size?: number;
}

/** One transport as `nvmf_get_transports` reports it. */
export interface NvmfTransportInfo {
  trtype: string;
  max_queue_depth: number;
  max_io_qpairs_per_ctrlr: number;
  in_capsule_data_size: number;
  max_io_size: number;
  io_unit_size?: number;
  max_aq_depth: number;
  dif_insert_or_strip: boolean;
  c2h_success?: boolean;
  [field: string]: unknown;
}

/** `nvmf_create_subsystem` parameters. */
export interface NvmfCreateSubsystemParams {
  nqn: string;
  tgt_name?: string;
  serial_number?: string;
  model_number?: string;
  /** Default 32. ANA group IDs range over 1..max_namespaces. */
  max_namespaces?: number;
  allow_any_host?: boolean;
  /** Report ANA (CMIC.ANA, ANA log page, per-listener ANA states). */
  ana_reporting?: boolean;
  min_cntlid?: number;
  max_cntlid?: number;
  dmrsl?: number;
  wzsl?: number;
  passthrough?: boolean;
  enable_nssr?: boolean;
}

/** One namespace of `nvmf_get_subsystems`. */
export interface NvmfSubsystemNamespace {
  nsid: number;
  bdev_name: string;
  name: string;
  nguid?: string;
  eui64?: string;
  uuid?: string;
  anagrpid?: number;
  [field: string]: unknown;
}

/** One subsystem of `nvmf_get_subsystems`. */
export interface NvmfSubsystemInfo {
  nqn: string;
  /** "Discovery", "Discovery current" or "NVMe". */
  subtype: string;
  listen_addresses: NvmfListenAddress[];
  allow_any_host: boolean;
  hosts: Array<{ nqn: string; [field: string]: unknown }>;
  serial_number?: string;
  model_number?: string;
  max_namespaces?: number;
  min_cntlid?: number;
  max_cntlid?: number;
  namespaces?: NvmfSubsystemNamespace[];
  [field: string]: unknown;
}

/** Names one listener of a subsystem (`nvmf_subsystem_remove_listener` and the base of other listener calls). */
export interface NvmfListenerParams {
  nqn: string;
  listen_address: NvmfListenAddress;
  tgt_name?: string;
}

/** `nvmf_subsystem_add_listener` parameters. */
export interface NvmfAddListenerParams extends NvmfListenerParams {
  secure_channel?: boolean;
  /** Initial ANA state of every ANA group on this listener. */
  ana_state?: SpdkAnaState;
  sock_impl?: string;
  numa_id?: number;
}

/** `nvmf_subsystem_listener_set_ana_state` parameters. */
export interface NvmfSetAnaStateParams extends NvmfListenerParams {
  ana_state: SpdkAnaState;
  /** Only this ANA group; default every group of the subsystem. */
  anagrpid?: number;
}

/** One listener of `nvmf_subsystem_get_listeners`. */
export interface NvmfListenerInfo {
  address: NvmfListenAddress;
  /** Present when the subsystem has ANA reporting: one entry per ANA group 1..max_namespaces. */
  ana_states?: Array<{ ana_group: number; ana_state: string }>;
  [field: string]: unknown;
}

/** One controller of `nvmf_subsystem_get_controllers`. */
export interface NvmfControllerInfo {
  cntlid: number;
  hostnqn: string;
  hostid: string;
  num_io_qpairs: number;
  [field: string]: unknown;
}

/** SPDK's rpc_nvmf_namespace object. */
export interface NvmfNamespaceParams {
  bdev_name: string;
  /** Default: the lowest free NSID. */
  nsid?: number;
  /** 32 hex digits. */
  nguid?: string;
  /** 16 hex digits. */
  eui64?: string;
  uuid?: string;
  /** File that keeps persistent reservations across restarts. */
  ptpl_file?: string;
  /** ANA group; default the NSID. */
  anagrpid?: number;
  no_auto_visible?: boolean;
  hide_metadata?: boolean;
}

/** `nvmf_subsystem_add_host` parameters. */
export interface NvmfAddHostParams {
  nqn: string;
  /** Host NQN to allow. */
  host: string;
  tgt_name?: string;
  /** Keyring key name of a TLS PSK. */
  psk?: string;
  dhchap_key?: string;
  dhchap_ctrlr_key?: string;
}

/** `nvmf_get_stats` result. */
export interface NvmfStats {
  tick_rate: number;
  poll_groups: Array<{
    name: string;
    admin_qpairs: number;
    io_qpairs: number;
    current_admin_qpairs: number;
    current_io_qpairs: number;
    pending_bdev_io: number;
    transports: Array<{ trtype: string; [field: string]: unknown }>;
    [field: string]: unknown;
  }>;
  [field: string]: unknown;
}

/** SPDK RPC client with typed methods for the RPCs a test harness needs. */
export class SpdkClient extends SpdkRpcClient {
  /** `spdk_get_version`. */
  spdkGetVersion(opts?: SpdkCallOptions): Promise<SpdkVersion> {
    return this.call('spdk_get_version', undefined, opts);
  }

  /** `rpc_get_methods`: the RPC names the application knows (`current`: only those callable now). */
  rpcGetMethods(params: { current?: boolean; include_aliases?: boolean } = {}, opts?: SpdkCallOptions): Promise<string[]> {
    return this.call('rpc_get_methods', params, opts);
  }

  /** `framework_wait_init`: resolves once the application's subsystems are initialised. */
  async frameworkWaitInit(opts?: SpdkCallOptions): Promise<void> {
    await this.call('framework_wait_init', undefined, opts);
  }

  /** `bdev_get_bdevs`. */
  bdevGetBdevs(params: BdevGetBdevsParams = {}, opts?: SpdkCallOptions): Promise<SpdkBdev[]> {
    return this.call('bdev_get_bdevs', params, opts);
  }

  /** `bdev_get_iostat`. */
  bdevGetIostat(params: BdevGetIostatParams = {}, opts?: SpdkCallOptions): Promise<BdevIostatResult> {
    return this.call('bdev_get_iostat', params, opts);
  }

  /** `bdev_malloc_create`: a RAM bdev; resolves with its name. */
  bdevMallocCreate(params: BdevMallocCreateParams, opts?: SpdkCallOptions): Promise<string> {
    return this.call('bdev_malloc_create', params, opts);
  }

  /** `bdev_malloc_delete`. */
  async bdevMallocDelete(params: { name: string }, opts?: SpdkCallOptions): Promise<void> {
    await this.call('bdev_malloc_delete', params, opts);
  }

  /** `bdev_null_create`: a bdev that discards writes and reads zeroes; resolves with its name. */
  bdevNullCreate(params: BdevNullCreateParams, opts?: SpdkCallOptions): Promise<string> {
    return this.call('bdev_null_create', params, opts);
  }

  /** `bdev_null_delete`. */
  async bdevNullDelete(params: { name: string }, opts?: SpdkCallOptions): Promise<void> {
    await this.call('bdev_null_delete', params, opts);
  }

  /** `bdev_aio_create`: a bdev over a file or block device (Linux AIO); resolves with its name. */
  bdevAioCreate(params: BdevAioCreateParams, opts?: SpdkCallOptions): Promise<string> {
    return this.call('bdev_aio_create', params, opts);
  }

  /** `bdev_aio_delete`. */
  async bdevAioDelete(params: { name: string }, opts?: SpdkCallOptions): Promise<void> {
    await this.call('bdev_aio_delete', params, opts);
  }

  /** `nvmf_create_transport`. One transport per trtype per target. */
  async nvmfCreateTransport(params: NvmfCreateTransportParams, opts?: SpdkCallOptions): Promise<void> {
    await this.call('nvmf_create_transport', params, opts);
  }

  /** `nvmf_get_transports`. */
  nvmfGetTransports(params: { trtype?: string; tgt_name?: string } = {}, opts?: SpdkCallOptions): Promise<NvmfTransportInfo[]> {
    return this.call('nvmf_get_transports', params, opts);
  }

  /** `nvmf_create_subsystem`. */
  async nvmfCreateSubsystem(params: NvmfCreateSubsystemParams, opts?: SpdkCallOptions): Promise<void> {
    await this.call('nvmf_create_subsystem', params, opts);
  }

  /** `nvmf_delete_subsystem`. */
  async nvmfDeleteSubsystem(params: { nqn: string; tgt_name?: string }, opts?: SpdkCallOptions): Promise<void> {
    await this.call('nvmf_delete_subsystem', params, opts);
  }

  /** `nvmf_get_subsystems` (all, or the one named by `nqn`). */
  nvmfGetSubsystems(params: { nqn?: string; tgt_name?: string } = {}, opts?: SpdkCallOptions): Promise<NvmfSubsystemInfo[]> {
    return this.call('nvmf_get_subsystems', params, opts);
  }

  /** `nvmf_subsystem_add_listener`. Use {@link SPDK_DISCOVERY_NQN} as `nqn` for a discovery listener. */
  async nvmfSubsystemAddListener(params: NvmfAddListenerParams, opts?: SpdkCallOptions): Promise<void> {
    await this.call('nvmf_subsystem_add_listener', params, opts);
  }

  /** `nvmf_subsystem_remove_listener`. */
  async nvmfSubsystemRemoveListener(params: NvmfListenerParams, opts?: SpdkCallOptions): Promise<void> {
    await this.call('nvmf_subsystem_remove_listener', params, opts);
  }

  /** `nvmf_subsystem_listener_set_ana_state`: hosts connected through that listener get an ANA change event. */
  async nvmfSubsystemListenerSetAnaState(params: NvmfSetAnaStateParams, opts?: SpdkCallOptions): Promise<void> {
    await this.call('nvmf_subsystem_listener_set_ana_state', params, opts);
  }

  /** `nvmf_subsystem_get_listeners` (with per-group ANA states when the subsystem reports ANA). */
  nvmfSubsystemGetListeners(params: { nqn: string; tgt_name?: string }, opts?: SpdkCallOptions): Promise<NvmfListenerInfo[]> {
    return this.call('nvmf_subsystem_get_listeners', params, opts);
  }

  /** `nvmf_subsystem_get_controllers`: the controllers (host connections) of a subsystem. */
  nvmfSubsystemGetControllers(params: { nqn: string; tgt_name?: string }, opts?: SpdkCallOptions): Promise<NvmfControllerInfo[]> {
    return this.call('nvmf_subsystem_get_controllers', params, opts);
  }

  /** `nvmf_subsystem_add_ns`: resolves with the namespace's NSID. */
  nvmfSubsystemAddNs(params: { nqn: string; namespace: NvmfNamespaceParams; tgt_name?: string }, opts?: SpdkCallOptions): Promise<number> {
    return this.call('nvmf_subsystem_add_ns', params, opts);
  }

  /** `nvmf_subsystem_remove_ns`. */
  async nvmfSubsystemRemoveNs(params: { nqn: string; nsid: number; tgt_name?: string }, opts?: SpdkCallOptions): Promise<void> {
    await this.call('nvmf_subsystem_remove_ns', params, opts);
  }

  /** `nvmf_subsystem_add_host`: allow a host NQN. */
  async nvmfSubsystemAddHost(params: NvmfAddHostParams, opts?: SpdkCallOptions): Promise<void> {
    await this.call('nvmf_subsystem_add_host', params, opts);
  }

  /** `nvmf_subsystem_remove_host` (disconnects that host's controllers). */
  async nvmfSubsystemRemoveHost(
    params: { nqn: string; host: string; tgt_name?: string; timeout_ms?: number },
    opts?: SpdkCallOptions,
  ): Promise<void> {
    await this.call('nvmf_subsystem_remove_host', params, opts);
  }

  /** `nvmf_subsystem_allow_any_host`. */
  async nvmfSubsystemAllowAnyHost(params: { nqn: string; allow_any_host: boolean; tgt_name?: string }, opts?: SpdkCallOptions): Promise<void> {
    await this.call('nvmf_subsystem_allow_any_host', params, opts);
  }

  /** `nvmf_get_stats`: per poll group queue pair counts and transport statistics. */
  nvmfGetStats(params: { tgt_name?: string } = {}, opts?: SpdkCallOptions): Promise<NvmfStats> {
    return this.call('nvmf_get_stats', params, opts);
  }

  /** `keyring_file_add_key`: register a key file (mode 0600) under `name`, e.g. for a TLS PSK. */
  async keyringFileAddKey(params: { name: string; path: string }, opts?: SpdkCallOptions): Promise<void> {
    await this.call('keyring_file_add_key', params, opts);
  }

  /** `keyring_file_remove_key`. */
  async keyringFileRemoveKey(params: { name: string }, opts?: SpdkCallOptions): Promise<void> {
    await this.call('keyring_file_remove_key', params, opts);
  }
}
