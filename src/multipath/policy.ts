/**
 * Path selection policies. A policy only chooses among the candidates it is given; what makes a path usable
 * (connection state, ANA state) is decided by the multipath namespace, which never offers an inaccessible,
 * persistent-loss, changing or not-live path. Policies still ignore any candidate whose ANA state is not
 * optimized or non-optimized, so a policy can never pick such a path.
 *
 * Policies are stateful (the current path, the rotation position) and belong to one multipath namespace.
 */
import { InvalidArgumentError } from '../errors.js';
import type { AnaStateName } from '../protocol/ana.js';

/** What a policy sees of a path. */
export interface PathCandidate {
  /** Stable identifier of the path ("host:port"). */
  readonly id: string;
  /** ANA state of the namespace through this path; undefined when the controller does not report ANA (treated as optimized). */
  readonly anaState: AnaStateName | undefined;
  /** Commands sent on this path and not yet finished. */
  readonly outstanding: number;
}

/** A path selection policy. */
export interface PathSelector {
  /** Policy name, for health snapshots. */
  readonly name: string;
  /**
   * Choose a path for the next command among `candidates` (in the configured path order), or undefined when none
   * is acceptable.
   */
  select<T extends PathCandidate>(candidates: readonly T[]): T | undefined;
}

/** Names of the built-in policies. */
export type PolicyName = 'failover' | 'round-robin' | 'queue-depth';

/** True for a path whose namespace is ANA optimized (or whose controller does not report ANA). */
export function isOptimized(c: PathCandidate): boolean {
  return c.anaState === 'optimized' || c.anaState === undefined;
}

/** True for a path whose namespace is ANA non-optimized. */
export function isNonOptimized(c: PathCandidate): boolean {
  return c.anaState === 'non-optimized';
}

/** The optimized candidates, or the non-optimized ones when no candidate is optimized. */
function preferred<T extends PathCandidate>(candidates: readonly T[]): T[] {
  const opt = candidates.filter(isOptimized);
  return opt.length > 0 ? opt : candidates.filter(isNonOptimized);
}

/**
 * Failover: one active path at a time. Prefers an optimized path, then a non-optimized one; keeps using the chosen
 * path until it stops being offered (it failed or became unusable). A non-optimized current path is given up as
 * soon as an optimized one is offered.
 */
export class FailoverSelector implements PathSelector {
  readonly name = 'failover';
  private current: string | undefined;

  select<T extends PathCandidate>(candidates: readonly T[]): T | undefined {
    const cur = this.current === undefined ? undefined : candidates.find((c) => c.id === this.current);
    if (cur && isOptimized(cur)) return cur;
    const opt = candidates.find(isOptimized);
    if (opt) {
      this.current = opt.id;
      return opt;
    }
    if (cur && isNonOptimized(cur)) return cur;
    const non = candidates.find(isNonOptimized);
    this.current = non?.id;
    return non;
  }
}

/** Round-robin over the optimized paths; over the non-optimized ones when no path is optimized. */
export class RoundRobinSelector implements PathSelector {
  readonly name = 'round-robin';
  private last: string | undefined;

  select<T extends PathCandidate>(candidates: readonly T[]): T | undefined {
    const pool = preferred(candidates);
    if (pool.length === 0) return undefined;
    const i = this.last === undefined ? -1 : pool.findIndex((c) => c.id === this.last);
    const pick = pool[(i + 1) % pool.length]!;
    this.last = pick.id;
    return pick;
  }
}

/**
 * Least queue depth: the path with the fewest outstanding commands among the optimized paths (among the
 * non-optimized ones when no path is optimized). Ties rotate.
 */
export class QueueDepthSelector implements PathSelector {
  readonly name = 'queue-depth';
  private last: string | undefined;

  select<T extends PathCandidate>(candidates: readonly T[]): T | undefined {
    const pool = preferred(candidates);
    const n = pool.length;
    if (n === 0) return undefined;
    const start = (this.last === undefined ? -1 : pool.findIndex((c) => c.id === this.last)) + 1;
    let best = pool[start % n]!;
    for (let k = 1; k < n && best.outstanding > 0; k++) {
      const c = pool[(start + k) % n]!;
      if (c.outstanding < best.outstanding) best = c;
    }
    this.last = best.id;
    return best;
  }
}

/** A new instance of a built-in policy, or `policy` itself when it already is a selector. */
export function createSelector(policy: PolicyName | PathSelector | undefined): PathSelector {
  if (policy === undefined || policy === 'failover') return new FailoverSelector();
  if (policy === 'round-robin') return new RoundRobinSelector();
  if (policy === 'queue-depth') return new QueueDepthSelector();
  if (policy && typeof policy === 'object' && typeof policy.select === 'function') return policy;
  throw new InvalidArgumentError(`policy must be 'failover', 'round-robin', 'queue-depth' or a PathSelector, got ${String(policy)}`);
}
