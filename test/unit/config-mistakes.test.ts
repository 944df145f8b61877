// Configuration mistakes that used to pass (or fail saying the wrong thing) throw a ConfigError at construction,
// naming the option, the value and what was meant. Each store here throws before it opens any connection.
import {
  ConfigError,
  DEFAULT_MAX_SESSION_BYTES,
  EncryptingTranscoder,
  JsonTranscoder,
  MemcachedStore,
  memcachedSession,
} from '../../lib';
import type { MemcachedStoreOptions } from '../../lib';
import { resolveConfig, resolveMiddlewareOptions, resolveNodes } from '../../lib/express/config';
import { ON_KEY, OPTIONS, STORE_OPTION_NAMES, checkOptionNames } from '../../lib/express/options';
import { thrown } from '../helpers/thrown';

const memcachedNodes = 'n1:127.0.0.1:11211,n2:127.0.0.1:11212';
const storeThrows = (options: object) => thrown(() => new MemcachedStore(options as MemcachedStoreOptions));

function expectConfigError(e: Error, message: RegExp): void {
  expect(e).toBeInstanceOf(ConfigError);
  expect(e.message).toMatch(message);
}

describe('one memcached under two node ids', () => {
  it.each([
    ['n1:127.0.0.1:11211,n2:127.0.0.1:11211', /"n1" and "n2" are the same memcached \(127\.0\.0\.1:11211\)/],
    ['n1:mc.local:11211 n2:h:2 n3:MC.local:11211', /"n1" and "n3" are the same memcached \(MC\.local:11211\)/],
    ['n1:[::1]:11211,n2:[::1]:11211', /"n1" and "n2" are the same memcached \(\[::1\]:11211\)/],
  ])('new MemcachedStore({ memcachedNodes: %j }) throws naming both ids and the address', (nodes, message) => {
    const e = storeThrows({ memcachedNodes: nodes });
    expectConfigError(e, message);
    expect(e.message).toContain(`invalid memcachedNodes ${JSON.stringify(nodes)}`);
  });

  it('also when one of the two is a failover node (the list setMemcachedNodes takes, too)', () => {
    const nodes = 'n1:127.0.0.1:11211,n2:127.0.0.1:11212,n3:127.0.0.1:11211';
    expectConfigError(storeThrows({ memcachedNodes: nodes, failoverNodes: 'n3' }), /"n1" and "n3" are the same/);
    expectConfigError(
      thrown(() => resolveNodes(nodes, 'n3')),
      /invalid memcachedNodes .*"n1" and "n3" are the same memcached/,
    );
  });

  it('the same host on other ports, or the same port on other hosts, is fine', () => {
    expect(resolveNodes('n1:127.0.0.1:11211,n2:127.0.0.1:11212,n3:127.0.0.2:11211', 'n3').nodes).toHaveLength(3);
  });
});

describe('seconds options given milliseconds', () => {
  it('defaultMaxInactiveInterval over a year: names the unit and suggests the value / 1000', () => {
    const e = storeThrows({ memcachedNodes, defaultMaxInactiveInterval: 86_400_000 });
    expectConfigError(
      e,
      /invalid defaultMaxInactiveInterval 86400000: is in seconds, and 86400000 seconds is over a year; milliseconds\? use 86400 \(86400000 \/ 1000\)/,
    );
  });

  it('defaultMaxInactiveInterval: a year is accepted, a second more is not', () => {
    expect(resolveConfig({ memcachedNodes, defaultMaxInactiveInterval: 365 * 86400 }).defaultMaxInactiveInterval).toBe(
      365 * 86400,
    );
    expectConfigError(
      thrown(() => resolveConfig({ memcachedNodes, defaultMaxInactiveInterval: 365 * 86400 + 1 })),
      /is in seconds, .* over a year; milliseconds\? use 31536 /,
    );
  });

  it('lockExpiration over 30 days: memcachedSession() throws naming the unit and suggesting the value / 1000', () => {
    const e = thrown(() =>
      memcachedSession({ memcachedNodes, lockExpiration: 3_600_000, session: { secret: 's' } } as never),
    );
    expectConfigError(
      e,
      /invalid lockExpiration 3600000: is in seconds, and 3600000 seconds is over 30 days; milliseconds\? use 3600 \(3600000 \/ 1000\)/,
    );
  });

  it('lockExpiration: 30 days is accepted; below 1 or fractional still says whole seconds', () => {
    const lockAt = (lockExpiration: number) => resolveMiddlewareOptions({ lockExpiration, session: { secret: 's' } });
    expect(lockAt(30 * 86400).locking.lockExpiration).toBe(30 * 86400);
    expectConfigError(
      thrown(() => lockAt(0)),
      /invalid lockExpiration 0: expected whole seconds, 1-2592000/,
    );
    expectConfigError(
      thrown(() => lockAt(1.5)),
      /invalid lockExpiration 1\.5: expected whole seconds/,
    );
  });
});

describe('a transcoder class instead of an instance', () => {
  it('transcoder: JsonTranscoder says to pass an instance: new JsonTranscoder()', () => {
    const e = storeThrows({ memcachedNodes, transcoder: JsonTranscoder });
    expectConfigError(
      e,
      /invalid transcoder "\[class JsonTranscoder\]": is a class; pass an instance: new JsonTranscoder\(\)$/,
    );
  });

  it('a class whose constructor takes options shows them as "..."', () => {
    expectConfigError(
      storeThrows({ memcachedNodes, transcoder: EncryptingTranscoder }),
      /pass an instance: new EncryptingTranscoder\(\.\.\.\)$/,
    );
  });
});

describe('an empty entry in memcachedNodes', () => {
  it.each([
    ['n1:127.0.0.1:11211,n2:127.0.0.1:11212,', 3],
    ['n1:127.0.0.1:11211,,n2:127.0.0.1:11212', 2],
    ['n1:127.0.0.1:11211, ,n2:127.0.0.1:11212', 2],
    [',n1:127.0.0.1:11211', 1],
    ['127.0.0.1:11211,', 2],
  ])('%j says "empty entry" and which one', (nodes, entry) => {
    expectConfigError(
      storeThrows({ memcachedNodes: nodes }),
      new RegExp(`invalid memcachedNodes ".*": empty entry \\(entry ${entry}\\): a trailing or doubled comma\\?$`),
    );
  });

  it('commas with spaces around them, and spaces alone, still separate entries', () => {
    for (const nodes of ['n1:h:1, n2:h:2', 'n1:h:1 ,n2:h:2', ' n1:h:1   n2:h:2 ', 'n1:h:1,\n n2:h:2'])
      expect(resolveNodes(nodes, undefined).nodes.map((n) => n.id)).toEqual(['n1', 'n2']);
  });
});

describe('maxSessionBytes is a constructor option', () => {
  it('is in the options table, in bytes, defaulting to DEFAULT_MAX_SESSION_BYTES', () => {
    expect(OPTIONS.maxSessionBytes).toMatchObject({
      scope: 'store',
      unit: 'bytes',
      default: DEFAULT_MAX_SESSION_BYTES,
    });
    expect(resolveConfig({ memcachedNodes }).maxSessionBytes).toBe(DEFAULT_MAX_SESSION_BYTES);
    expect(resolveConfig({ memcachedNodes, maxSessionBytes: 100 }).maxSessionBytes).toBe(100);
  });

  it.each([0, -1, 1.5, '100', Number.POSITIVE_INFINITY])('maxSessionBytes: %p throws naming it', (value) => {
    expectConfigError(
      storeThrows({ memcachedNodes, maxSessionBytes: value }),
      /invalid maxSessionBytes .*: expected an integer >= 1/,
    );
  });
});

describe('the onKey test hook is no public option', () => {
  it('is not in the options table, nor among the valid names: passing it is an unknown option', () => {
    expect(Object.keys(OPTIONS)).not.toContain('onKey');
    expect(STORE_OPTION_NAMES).not.toContain('onKey');
    expectConfigError(
      thrown(() => checkOptionNames({ onKey: () => undefined }, 'store')),
      /unknown option "onKey"/,
    );
  });

  it('is not in the public option type (checked by tsc); tests pass it under a symbol the name check ignores', () => {
    // @ts-expect-error onKey is no option of MemcachedStoreOptions
    const o: MemcachedStoreOptions = { memcachedNodes, onKey: () => undefined };
    expectConfigError(storeThrows(o), /unknown option "onKey"/);
    expect(() => checkOptionNames({ memcachedNodes, [ON_KEY]: () => undefined }, 'store')).not.toThrow();
  });
});
