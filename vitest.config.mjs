import { defineConfig } from 'vitest/config'

// Real processes and ports: forks (not threads) so specs may chdir and signal, and no more
// workers than the two cores these machines have.
export default defineConfig({
  test: {
    include: ['__test__/**/*.spec.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
