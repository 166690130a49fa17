import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createSelector, FailoverSelector, QueueDepthSelector, RoundRobinSelector, type PathCandidate } from '../src/multipath/policy.js';
import type { AnaStateName } from '../src/protocol/ana.js';
import { InvalidArgumentError } from '../src/errors.js';

function cand(id: string, anaState: AnaStateName | undefined = 'optimized', outstanding = 0): PathCandidate {
  return { id, anaState, outstanding };
}

const ids = (xs: (PathCandidate | undefined)[]) => xs.map((x) => x?.id);

describe('failover policy', () => {
  it('prefers the first optimized path and sticks to it', () => {
    const p = new FailoverSelector();
    const a = cand('a', 'non-optimized');
    const b = cand('b', 'optimized');
    const c = cand('c', 'optimized');
    expect(ids([p.select([a, b, c]), p.select([a, b, c]), p.select([a, b, c])])).toEqual(['b', 'b', 'b']);
  });

  it('stays on the new path after the current one fails and comes back', () => {
    const p = new FailoverSelector();
    const a = cand('a');
    const b = cand('b');
    expect(p.select([a, b])?.id).toBe('a');
    expect(p.select([b])?.id).toBe('b'); // a failed
    expect(p.select([a, b])?.id).toBe('b'); // a is back: sticky on b
  });

  it('uses a non-optimized path only when no path is optimized, and leaves it for an optimized one', () => {
    const p = new FailoverSelector();
    const a = cand('a', 'non-optimized');
    const b = cand('b', 'non-optimized');
    expect(p.select([a, b])?.id).toBe('a');
    expect(p.select([b, a])?.id).toBe('a'); // sticky among non-optimized
    expect(p.select([a, cand('b', 'optimized')])?.id).toBe('b');
  });

  it('treats a path without ANA reporting as optimized', () => {
    const p = new FailoverSelector();
    expect(p.select([cand('a', 'non-optimized'), cand('b', undefined)])?.id).toBe('b');
  });

  it('never picks an inaccessible, persistent-loss or changing path', () => {
    const p = new FailoverSelector();
    expect(p.select([cand('a', 'inaccessible'), cand('b', 'persistent-loss'), cand('c', 'change')])).toBeUndefined();
    expect(p.select([])).toBeUndefined();
  });
});

describe('round-robin policy', () => {
  it('rotates over the optimized paths only', () => {
    const p = new RoundRobinSelector();
    const cs = [cand('a'), cand('b', 'non-optimized'), cand('c'), cand('d')];
    const got = Array.from({ length: 6 }, () => p.select(cs)?.id);
    expect(got).toEqual(['a', 'c', 'd', 'a', 'c', 'd']);
  });

  it('falls back to non-optimized paths when no path is optimized', () => {
    const p = new RoundRobinSelector();
    const cs = [cand('a', 'non-optimized'), cand('b', 'inaccessible'), cand('c', 'non-optimized')];
    expect(Array.from({ length: 4 }, () => p.select(cs)?.id)).toEqual(['a', 'c', 'a', 'c']);
  });

  it('continues after the last path used when the set changes', () => {
    const p = new RoundRobinSelector();
    expect(p.select([cand('a'), cand('b'), cand('c')])?.id).toBe('a');
    expect(p.select([cand('a'), cand('b'), cand('c')])?.id).toBe('b');
    expect(p.select([cand('a'), cand('c')])?.id).toBe('a'); // b gone: start over
    expect(p.select([cand('a'), cand('b'), cand('c')])?.id).toBe('b');
  });
});

describe('queue-depth policy', () => {
  it('picks the optimized path with the fewest outstanding commands', () => {
    const p = new QueueDepthSelector();
    expect(p.select([cand('a', 'optimized', 5), cand('b', 'optimized', 2), cand('c', 'non-optimized', 0)])?.id).toBe('b');
  });

  it('falls back to the least loaded non-optimized path', () => {
    const p = new QueueDepthSelector();
    expect(p.select([cand('a', 'non-optimized', 3), cand('b', 'inaccessible', 0), cand('c', 'non-optimized', 1)])?.id).toBe('c');
  });

  it('rotates among equally loaded paths', () => {
    const p = new QueueDepthSelector();
    const cs = [cand('a'), cand('b'), cand('c')];
    expect(Array.from({ length: 4 }, () => p.select(cs)?.id)).toEqual(['a', 'b', 'c', 'a']);
  });

  it('always returns a minimum of the preferred class (property)', () => {
    const state = fc.constantFrom<AnaStateName | undefined>('optimized', 'non-optimized', 'inaccessible', 'persistent-loss', 'change', undefined);
    fc.assert(
      fc.property(fc.array(fc.tuple(state, fc.nat(50)), { maxLength: 8 }), fc.nat(5), (spec, rounds) => {
        const cs = spec.map(([s, n], i) => cand(`p${i}`, s, n));
        const p = new QueueDepthSelector();
        for (let r = 0; r <= rounds; r++) {
          const got = p.select(cs);
          const opt = cs.filter((c) => c.anaState === 'optimized' || c.anaState === undefined);
          const pool = opt.length > 0 ? opt : cs.filter((c) => c.anaState === 'non-optimized');
          if (pool.length === 0) {
            expect(got).toBeUndefined();
          } else {
            expect(pool).toContain(got);
            expect(got!.outstanding).toBe(Math.min(...pool.map((c) => c.outstanding)));
          }
        }
      }),
    );
  });
});

describe('createSelector', () => {
  it('makes the built-in policies by name and accepts a custom selector', () => {
    expect(createSelector(undefined).name).toBe('failover');
    expect(createSelector('failover')).toBeInstanceOf(FailoverSelector);
    expect(createSelector('round-robin')).toBeInstanceOf(RoundRobinSelector);
    expect(createSelector('queue-depth')).toBeInstanceOf(QueueDepthSelector);
    const custom = { name: 'last', select: <T extends PathCandidate>(c: readonly T[]) => c[c.length - 1] };
    expect(createSelector(custom)).toBe(custom);
    expect(() => createSelector('random' as never)).toThrow(InvalidArgumentError);
  });

  it('gives every namespace its own policy state', () => {
    expect(createSelector('round-robin')).not.toBe(createSelector('round-robin'));
  });
});
