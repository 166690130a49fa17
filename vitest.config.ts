import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['integration/kernel/**/*.test.ts'],
          globalSetup: ['integration/kernel/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 300_000,
          // One guest serves every kernel test file; run them one after another.
          fileParallelism: false,
        },
      },
      {
        test: {
          // The smoke set on Debian 12's Linux 6.1, the oldest kernel target supported (the 'kernel' project boots
          // Linux 7.x and runs every kernel test); see integration/kernel/global-setup.ts.
          name: 'kernel-6.1',
          include: [
            'integration/kernel/core.test.ts',
            'integration/kernel/discovery.test.ts',
            'integration/kernel/events.test.ts',
            'integration/kernel/multipath.test.ts',
          ],
          globalSetup: ['integration/kernel/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'spdk',
          include: ['integration/spdk/**/*.test.ts'],
          globalSetup: ['integration/spdk/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // One nvmf_tgt serves every SPDK test file; run them one after another.
          fileParallelism: false,
        },
      },
    ],
  },
});
