/**
 * Public option and event types of the embedded target.
 */
import type { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import { AnaState } from '../protocol/ana.js';
import type { TargetDhchapOptions } from './auth.js';

/** An ANA state by name or by its value in the ANA log (1 optimized .. 4 persistent loss, 15 change). */
export type AnaStateInput = 'optimized' | 'non-optimized' | 'inaccessible' | 'persistent-loss' | 'change' | number;

/** The ANA state value for a name or value; throws InvalidArgumentError for anything else. */
export function anaStateValue(s: AnaStateInput): number {
  switch (s) {
    case 'optimized': return AnaState.Optimized;
    case 'non-optimized': return AnaState.NonOptimized;
    case 'inaccessible': return AnaState.Inaccessible;
    case 'persistent-loss': return AnaState.PersistentLoss;
    case 'change': return AnaState.Change;
    default:
      if (typeof s === 'number' && (s === 1 || s === 2 || s === 3 || s === 4 || s === 15)) return s;
      throw new InvalidArgumentError(`ANA state must be optimized, non-optimized, inaccessible, persistent-loss, change or 1..4/15, got ${String(s)}`);
  }
}

/** Options of {@link NvmeTarget}. Every field has a default. */
export interface NvmeTargetOptions {
  /** Controller PDU data alignment reported in ICResp (0's based dwords, 0..31). Default 0. */
  cpda?: number;
  /** Largest H2CData payload accepted (ICResp MAXH2CDATA), bytes, >= 4096 and a multiple of 4. Default 32 KiB. */
  maxh2cdata?: number;
  /** Largest payload of one C2HData PDU; reads are split at this size. Default 128 KiB. */
  maxC2HData?: number;
  /** Largest R2TL of one R2T; bigger writes get several R2Ts, one after the other. 0 = one R2T for the whole transfer (as Linux). Default 0. */
  maxR2TLength?: number;
  /** In-capsule data accepted on I/O queues, bytes (IOCCSZ = 4 + this / 16). Default 8192. */
  inCapsuleDataSize?: number;
  /** Identify Controller MDTS (power of two in 4 KiB pages; 0 = no limit, capped at 64 MiB internally). Default 8 (1 MiB). */
  mdts?: number;
  /** Send C2HData with the SUCCESS flag and no CapsuleResp for successful reads. Default false. */
  c2hSuccess?: boolean;
  /** CAP.MQES, 0's based largest queue size. Default 127. */
  mqes?: number;
  /** CAP.TO in 500 ms units. Default 1. */
  capTimeout?: number;
  /** Most I/O queues a controller may have (Set Features Number of Queues is capped at this). Default 16. */
  maxIoQueues?: number;
  /** Keep Alive Support granularity in 100 ms units (Identify KAS). Default 1. */
  kas?: number;
  /** Traffic Based Keep Alive (CTRATT.TBKAS): any command restarts the keep-alive timer. Default false. */
  trafficBasedKeepAlive?: boolean;
  /** Tear controllers down when no Keep Alive arrives within KATO. Default true. */
  enforceKeepAlive?: boolean;
  /** Identify/VS version reported. Default '2.0'. */
  version?: '1.3' | '1.4' | '2.0';
  /** Milliseconds between CC.EN = 1 and CSTS.RDY = 1 (and between CC.SHN and SHST complete). Default 0. */
  readyDelayMs?: number;
  /** Largest NSID (Identify NN and MNAN). Default 1024. */
  maxNamespaces?: number;
  /** ANAGRPMAX / NANAGRPID. Default 32. */
  anaGroupMax?: number;
  /** ANATT, seconds. Default 10. */
  anatt?: number;
  /** Firmware revision (Identify FR, at most 8 characters). Default '1.0'. */
  firmware?: string;
  /**
   * Which ports the discovery log lists for each subsystem: 'all' (every port the subsystem is
   * linked to, as SPDK) or 'port' (only the port the host asked through, as Linux). Default 'all'.
   */
  discoveryScope?: 'all' | 'port';
  /** Accept digests when the host asks for them (ICReq). Default true; false always answers without digests. */
  allowDigests?: boolean;
  /** AEN events enabled before the host configures them (Asynchronous Event Configuration). Default true, as Linux nvmet. */
  aenEnabledByDefault?: boolean;
}

/** Options of {@link NvmeTarget.listen}. */
export interface ListenOptions {
  /** Address to bind. Default '127.0.0.1'. */
  host?: string;
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Port ID used in discovery log entries; default the next free number from 1. */
  portid?: number;
  /** ANA group states of this port (group -> state) for every ANA subsystem; unlisted groups are optimized. */
  ana?: Record<number, AnaStateInput>;
}

/** Options of {@link NvmeTarget.addSubsystem}. */
export interface SubsystemOptions {
  nqn: string;
  /** Serial number (Identify SN, at most 20 characters). Default derived from the NQN. */
  serial?: string;
  /** Model number (Identify MN, at most 40 characters). Default 'nvmeof target'. */
  model?: string;
  /** Any host may connect. Default true (when allowedHosts is given, default false). */
  allowAnyHost?: boolean;
  /** Host NQNs allowed when allowAnyHost is false. */
  allowedHosts?: string[];
  /** Report Asymmetric Namespace Access (CMIC.ANA, ANA log, path status for I/O). Default false. */
  ana?: boolean;
  /**
   * DH-HMAC-CHAP per host NQN: hosts listed must authenticate on every queue (Connect answers AUTHREQ.ATR) with
   * `secret`, and can ask the controller to prove `ctrlSecret`. See TargetSubsystem.setHostDhchap().
   */
  dhchap?: Record<string, TargetDhchapOptions>;
  /** Ports the subsystem is exported on: 'all' (every port, now and later) or a list. Default 'all'. */
  ports?: 'all' | Array<number | { portid: number }>;
}

/** Options of {@link TargetSubsystem.addNamespace}. */
export interface NamespaceOptions {
  /** Namespace ID; default the lowest free one. */
  nsid?: number;
  /** Size in logical blocks (or give sizeBytes). */
  blocks?: number;
  /** Size in bytes, rounded down to whole blocks. */
  sizeBytes?: number;
  /** Logical block size. Default 512. */
  blockSize?: 512 | 4096;
  /** 16-byte NGUID (Buffer or 32 hex digits); default derived from subsystem NQN and NSID. */
  nguid?: Buffer | string;
  /** UUID (string or 16 bytes); default derived from subsystem NQN and NSID. */
  uuid?: Buffer | string;
  /** 8-byte EUI-64 (Buffer or 16 hex digits); default none. */
  eui64?: Buffer | string;
  /** ANA group. Default 1. */
  anaGroup?: number;
  /** Allocate all memory now instead of on first write. Default false. */
  preallocate?: boolean;
  /** Reject writes with "Namespace is Write Protected". Default false. */
  readOnly?: boolean;
  /** Send a Namespace Attribute Changed AEN to connected controllers. Default true. */
  notify?: boolean;
}

/** A discovery referral: an entry pointing at another discovery service. */
export interface ReferralOptions {
  /** Transport address. */
  traddr: string;
  /** Transport service ID (TCP port). */
  trsvcid: string | number;
  /** Port ID of the entry. Default 0. */
  portid?: number;
  /** Subsystem NQN of the entry. Default the discovery NQN. */
  subnqn?: string;
  /** Only list it in the discovery log of this port (default every port). */
  port?: number | { portid: number };
}

/** An asynchronous event as completed in an AER's DW0. */
export interface AsyncEvent {
  /** Asynchronous Event Type (bits 2:0): 0 error, 1 SMART/health, 2 notice, 6 I/O command set specific, 7 vendor. */
  type: number;
  /** Asynchronous Event Information (bits 15:8). */
  info: number;
  /** Log page to read (bits 23:16). */
  lid: number;
}

/** Command kinds used in events and fault matching. */
export type CommandKind = 'admin' | 'io' | 'fabrics';
