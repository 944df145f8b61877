// Three tiers, one project each. `npm test` runs unit (pure functions, no memcached) and integration (the library
// against real memcached: the global setup starts three shared nodes for it); `npm run test:system` runs the whole
// product and its tools (the demo, Chromium, the packed tarball, the chaos and bench scripts), which start their own.
// Tests are transpiled only (isolatedModules): `npm run typecheck` type-checks them with the rest of the tree.
const transform = { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.jest.json' }] };
const project = (name, roots, extra = {}) => ({
  displayName: name,
  testEnvironment: 'node',
  roots: roots.map((r) => `<rootDir>/test/${r}`),
  testMatch: ['**/*.test.ts'],
  transform,
  ...extra,
});

module.exports = {
  projects: [
    project('unit', ['unit']),
    project('integration', ['integration'], {
      globalSetup: '<rootDir>/test/helpers/global-setup.ts',
      globalTeardown: '<rootDir>/test/helpers/global-teardown.ts',
    }),
    project('system', ['system', 'e2e']),
  ],
  testTimeout: 30000,
  // Integration tests kill and restart their own memcached processes; two workers keep the 2-core box responsive.
  maxWorkers: 2,
  // `npm run coverage`: V8's own counters (no instrumenting transform), lib/ only.
  collectCoverageFrom: ['<rootDir>/lib/**/*.ts'],
  coverageProvider: 'v8',
  coverageReporters: ['text-summary'],
};
