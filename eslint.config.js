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
        patterns: [{ group: ['../transport/*', '../host/*', '../multipath/*', '../target/*', '../spdk/*', '../cli/*', '../nbd/*', '../serve/*', '../util.js', '../event-channel.js'], message: 'src/protocol must not depend on upper layers.' }],
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
  // Layer boundaries: protocol -> transport -> host -> multipath -> cli (and the servers built on the library: nbd,
  // serve); target and spdk stand beside the host side. util.ts and errors.ts are for every layer above protocol.
  ...layers({
    'src/transport/**/*.ts': ['host', 'multipath', 'cli', 'target', 'spdk', 'nbd', 'serve'],
    'src/host/**/*.ts': ['multipath', 'cli', 'target', 'spdk', 'nbd', 'serve'],
    'src/multipath/**/*.ts': ['cli', 'target', 'spdk', 'nbd', 'serve'],
    // The embedded target is built on the protocol layer (and the role-neutral transport), never on the host side.
    'src/target/**/*.ts': ['host', 'multipath', 'cli', 'spdk', 'nbd', 'serve'],
    'src/nbd/**/*.ts': ['cli', 'target', 'spdk', 'serve'],
    'src/spdk/**/*.ts': ['protocol', 'transport', 'host', 'multipath', 'cli', 'target', 'nbd', 'serve'],
    'src/util.ts': ['protocol', 'transport', 'host', 'multipath', 'cli', 'target', 'spdk', 'nbd', 'serve'],
    'src/event-channel.ts': ['protocol', 'transport', 'host', 'multipath', 'cli', 'target', 'spdk', 'nbd', 'serve'],
    'src/errors.ts': ['protocol', 'transport', 'host', 'multipath', 'cli', 'target', 'spdk', 'nbd', 'serve'],
  }),
  {
    // The CLI is a user of the library: it imports only the package's public entry points (nvmeof, nvmeof/protocol,
    // nvmeof/target, nvmeof/transport, nvmeof/spdk), so what it needs is what users get.
    // The daemon (src/serve) is a user of the library in the same way.
    files: ['src/cli/**/*.ts', 'src/serve/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{
          group: [
            '../host/*', '../multipath/*', '../errors.js', '../util.js', '../event-channel.js',
            '../protocol/*', '!../protocol/index.js', '../target/*', '!../target/index.js',
            '../transport/*', '!../transport/index.js', '../spdk/*', '!../spdk/index.js',
          ],
          message: 'src/cli and src/serve use only the public entry points (../index.js, ../protocol/index.js, ../target/index.js, ../transport/index.js, ../spdk/index.js).',
        }],
      }],
    },
  },
);

/** One no-restricted-imports rule per layer, naming the layers it must not import. */
function layers(map) {
  return Object.entries(map).map(([files, forbidden]) => {
    const fromTop = files === 'src/util.ts' || files === 'src/errors.ts' || files === 'src/event-channel.ts';
    const group = forbidden.flatMap((d) => (fromTop ? [`./${d}/*`, `./${d}`] : [`../${d}/*`, `../${d}`]));
    return {
      files: [files],
      rules: {
        'no-restricted-imports': ['error', { patterns: [{ group, message: `${files.split('/')[1]} must not depend on ${forbidden.join(', ')} (layer boundary).` }] }],
      },
    };
  });
}
