import { defineConfig } from 'vitest/config';

// Integration tests start real processes (replicas, nats-server, kube-apiserver), so they
// run one file at a time on the 2-core CI machine; pure unit tests are fast either way.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    reporters: ['default'],
  },
});
