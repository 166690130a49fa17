/**
 * Asymmetric Namespace Access: the one place that names ANA states and maps wire values and path statuses to them.
 * Every layer (the host's ANA tracker, multipath paths and policies, the CLI) uses these.
 */
import { PathStatus } from './constants.js';

/** ANA states (ANA Group Descriptor byte 16, bits 3:0). */
export const AnaState = {
  Optimized: 0x1,
  NonOptimized: 0x2,
  Inaccessible: 0x3,
  PersistentLoss: 0x4,
  Change: 0xf,
} as const;

/** ANA state of a namespace or group as a name. */
export type AnaStateName = 'optimized' | 'non-optimized' | 'inaccessible' | 'persistent-loss' | 'change';

/** True when the 4-bit ANA state value is one the spec defines. */
export function isDefinedAnaState(state: number): boolean {
  switch (state & 0x0f) {
    case AnaState.Optimized:
    case AnaState.NonOptimized:
    case AnaState.Inaccessible:
    case AnaState.PersistentLoss:
    case AnaState.Change:
      return true;
    default:
      return false;
  }
}

/**
 * The name of an ANA state value (bits 3:0). A value the spec reserves is named 'inaccessible': a path in a state the
 * host does not understand must not carry I/O. Use {@link isDefinedAnaState} to tell the two apart.
 */
export function anaStateName(state: number): AnaStateName {
  switch (state & 0x0f) {
    case AnaState.Optimized: return 'optimized';
    case AnaState.NonOptimized: return 'non-optimized';
    case AnaState.PersistentLoss: return 'persistent-loss';
    case AnaState.Change: return 'change';
    default: return 'inaccessible';
  }
}

/** True for the states in which a path serves I/O (optimized and non-optimized). */
export function anaStateUsable(state: AnaStateName | undefined): boolean {
  return state === 'optimized' || state === 'non-optimized';
}

/** The state an ANA path status (SCT 3) reveals about the namespace's group, or undefined for other path statuses. */
export function anaStateFromPathStatus(sc: number): 'persistent-loss' | 'inaccessible' | 'change' | undefined {
  switch (sc) {
    case PathStatus.AsymmetricAccessPersistentLoss: return 'persistent-loss';
    case PathStatus.AsymmetricAccessInaccessible: return 'inaccessible';
    case PathStatus.AsymmetricAccessTransition: return 'change';
    default: return undefined;
  }
}
