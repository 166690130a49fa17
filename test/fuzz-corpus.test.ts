/**
 * Every input of the fuzzing corpus (fuzz/corpus/<target>/) runs through its target without a finding: the corpus
 * doubles as a regression suite for the parsers, and a saved finding added to it stays fixed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { targets } from '../fuzz/targets.js';

const corpus = join(import.meta.dirname, '..', 'fuzz', 'corpus');

describe('fuzz corpus', () => {
  for (const t of targets) {
    it(`${t.name}: every corpus input runs without an untyped error`, () => {
      const files = readdirSync(join(corpus, t.name));
      expect(files.length).toBeGreaterThan(0);
      for (const f of files) {
        const input = readFileSync(join(corpus, t.name, f));
        expect(() => t.run(input), `${t.name}/${f}`).not.toThrow();
      }
    });
  }
});
