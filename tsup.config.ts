import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    'protocol/index': 'src/protocol/index.ts',
    'target/index': 'src/target/index.ts',
    'spdk/index': 'src/spdk/index.ts',
    'transport/index': 'src/transport/index.ts',
    // The nvmeof executable (package.json "bin"); src/cli/main.ts starts with a #! line, kept by the build, which
    // also marks the output executable.
    'cli/main': 'src/cli/main.ts',
    // `nvmeof perf --workers N` starts this file in each worker thread.
    'cli/perf-worker': 'src/cli/perf-worker.ts',
  },
  format: ['esm', 'cjs'],
  // Members marked @internal are implementation details: they stay out of the published declarations.
  dts: { compilerOptions: { stripInternal: true } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
  // Shared chunks: one copy of the error classes for every entry point, so instanceof works across them.
  splitting: true,
  // import.meta.url (the optional native CRC32C is loaded through createRequire) works in the CommonJS build too.
  shims: true,
});
