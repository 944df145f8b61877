import * as fs from 'fs';
import * as path from 'path';
import {
  DEFAULTS,
  MIDDLEWARE_OPTION_NAMES,
  OPTIONS,
  STORE_OPTION_NAMES,
  checkOptionNames,
} from '../../lib/express/options';
import { resolveConfig, resolveMiddlewareOptions } from '../../lib/express/config';
import { END, START, renderOptionsTable, withOptionsTable } from '../../scripts/options-table';

describe('the options table', () => {
  it("README.md's options table is the one the table gives (npm run options-table rewrites it)", () => {
    const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
    const start = readme.indexOf(START);
    const end = readme.indexOf(END);
    expect(start).toBeGreaterThan(0);
    expect(readme.slice(start + START.length, end).trim()).toBe(renderOptionsTable());
    expect(withOptionsTable(readme)).toBe(readme);
  });

  it('renders a row per option, with its default and unit', () => {
    const rows = renderOptionsTable().split('\n');
    expect(rows).toHaveLength(2 + Object.keys(OPTIONS).length);
    expect(rows).toContain(
      '| `operationTimeout` | `operationTimeout` | `1000` ms | deadline of each memcached operation (not of the lock wait: `lockWaitTimeout`) |',
    );
    expect(rows.find((r) => r.includes('`localMaxBytes`'))).toMatch(/\| 256 MiB \|/);
    expect(rows.find((r) => r.includes('`lockExpiration`'))).toMatch(
      /^\| `lockExpiration` \| `lockExpiration` \(middleware\) \| `5` s \|/,
    );
  });

  it('every option has a scope, a one-line description and, for numbers, a unit', () => {
    for (const [name, spec] of Object.entries(OPTIONS) as Array<
      [string, { description: string; default?: unknown; unit?: string }]
    >) {
      expect(spec.description).not.toMatch(/\n/);
      if (typeof spec.default === 'number') expect([name, spec.unit]).toEqual([name, expect.any(String)]);
    }
    expect([...STORE_OPTION_NAMES, ...MIDDLEWARE_OPTION_NAMES].sort()).toEqual(Object.keys(OPTIONS).sort());
  });

  it('DEFAULTS keeps its keys and values', () => {
    expect(DEFAULTS).toEqual({
      sticky: false,
      autoDiscoveryIntervalMs: 60_000,
      operationTimeout: 1000,
      sessionBackupAsync: true,
      sessionBackupTimeout: 100,
      backupCount: 1,
      defaultMaxInactiveInterval: 1800,
      nodeAvailabilityCacheTTL: 1000,
      localMaxSessions: 100_000,
      localMaxBytes: 256 * 1024 * 1024,
      maxSessionBytes: 1024 * 1024 - 1024,
      lockExpiration: 5,
      lockWaitTimeout: 5000,
    });
  });

  it('the defaults are what resolution gives when nothing is given', () => {
    const cfg = resolveConfig({ memcachedNodes: 'n1:h:1,n2:h:2' });
    for (const [k, v] of Object.entries(DEFAULTS)) if (k in cfg) expect([k, (cfg as any)[k]]).toEqual([k, v]);
    const mw = resolveMiddlewareOptions({ session: { secret: 's' } });
    expect(mw.locking).toEqual({
      strategy: { kind: 'none' },
      lockExpiration: DEFAULTS.lockExpiration,
      lockWaitTimeout: DEFAULTS.lockWaitTimeout,
      lockTimeoutAction: 'reject',
      requestUriIgnorePattern: undefined,
    });
    expect(mw.session).toEqual({ secret: 's', resave: false, saveUninitialized: false });
  });

  it("an unknown name far from every option lists the valid ones, in the table's order", () => {
    expect(() => checkOptionNames({ hosts: 1 }, 'store')).toThrow(
      `express-msm: unknown option "hosts": valid options are ${
        'memcachedNodes, failoverNodes, sticky, route, operationTimeout, sessionBackupAsync, sessionBackupTimeout, backupCount, zones, storageKeyPrefix, '
        + 'defaultMaxInactiveInterval, username, password, transcoder, sessionAttributeFilter, nodeAvailabilityCacheTTL, '
        + 'localMaxSessions, localMaxBytes, maxSessionBytes, logger, indexBy, tls, autoDiscovery'
      }`,
    );
    expect(() => checkOptionNames({ hosts: 1 }, 'middleware')).toThrow(
      /autoDiscovery, lockingMode, lockExpiration, lockWaitTimeout, lockTimeoutAction, requestUriIgnorePattern, session$/,
    );
  });
});
