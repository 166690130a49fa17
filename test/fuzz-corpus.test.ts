/**
 * Every input of the fuzzing corpus (fuzz/corpus/<target>/) runs through its target without a finding: the corpus
 * doubles as a regression suite for the parsers, and a saved finding added to it stays fixed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { targets } from '../fuzz/targets.js';
import { sessionEvents } from '../fuzz/tls.js';

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

describe('tls target: the session server', () => {
  const step = (op: number, d: number[] | Buffer = []): Buffer => Buffer.concat([Buffer.of(op, d.length >> 8, d.length & 0xff), Buffer.from(d)]);
  for (const [flags, what] of [[0, 'SHA-256, X25519'], [3, 'SHA-384, secp256r1']] as const) {
    it(`${what}: takes the client through the handshake, data, a KeyUpdate and close_notify`, () => {
      const input = Buffer.concat([
        Buffer.of(0, flags),
        step(1),
        step(2, [22, 8, 0, 0, 2, 0, 0]),
        step(3),
        step(2, Buffer.concat([Buffer.of(23), Buffer.from('one')])),
        step(4, [1]),
        step(5, Buffer.concat([Buffer.of(23, 1), Buffer.from('two')])),
        step(7, [1, 0]),
      ]);
      expect(sessionEvents(input)).toEqual(['send', 'connected', `data ${Buffer.from('one').toString('hex')}`, 'send', `data ${Buffer.from('two').toString('hex')}`, 'end']);
    });
  }
});
