// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const forbiddenInProtocol = [
  'net', 'node:net', 'tls', 'node:tls', 'timers', 'node:timers', 'timers/promises', 'node:timers/promises',
  'events', 'node:events', 'dgram', 'node:dgram', 'fs', 'node:fs', 'child_process', 'node:child_process',
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'docs/api/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // src/protocol is pure: bytes in, values out. No sockets, timers or event emitters.
    files: ['src/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: forbiddenInProtocol.map((name) => ({ name, message: 'src/protocol must stay pure (no I/O, timers or events).' })),
        patterns: [{ group: ['../transport/*', '../host/*', '../target/*', '../cli/*'], message: 'src/protocol must not depend on upper layers.' }],
      }],
      'no-restricted-globals': ['error',
        { name: 'setTimeout', message: 'src/protocol must stay pure.' },
        { name: 'setInterval', message: 'src/protocol must stay pure.' },
        { name: 'setImmediate', message: 'src/protocol must stay pure.' },
        { name: 'queueMicrotask', message: 'src/protocol must stay pure.' },
        { name: 'process', message: 'src/protocol must stay pure.' },
      ],
    },
  },
  {
    // The embedded target is built on the protocol layer, never on the host side.
    files: ['src/target/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['../host/*', '../multipath/*'], message: 'src/target must not use the host side.' }] }],
    },
  },
);
