// The default logger: warnings and errors visible without setup, one line each, rate-limited per kind (fake clock).
import { RateLimiter, defaultLogger, hashId, kindOf, loggerFrom, silentLogger } from '../../lib/core/logger';

function fakeClock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function captured(clock = fakeClock(), intervalMs = 10_000) {
  const lines: string[] = [];
  const logger = defaultLogger((l) => void lines.push(l), new RateLimiter(intervalMs, clock.now));
  return { lines, logger, clock };
}

const noDebug = () => {
  const saved = process.env.DEBUG;
  beforeEach(() => void delete process.env.DEBUG);
  afterEach(() => void (saved === undefined ? delete process.env.DEBUG : (process.env.DEBUG = saved)));
};

describe('kindOf', () => {
  test('hashed ids and numbers are stripped, node ids stay', () => {
    const a = kindOf(`session ${hashId('a')}: node n1 down, relocated to n2 after 300 ms`);
    const b = kindOf(`session ${hashId('b')}: node n1 down, relocated to n2 after 1200 ms`);
    const c = kindOf(`session ${hashId('a')}: node n2 down, relocated to n3 after 300 ms`);
    expect(a).toBe(b);
    expect(a).not.toBe(c);
    expect(kindOf('memcached n1 (127.0.0.1:11211) refused')).toBe(kindOf('memcached n1 (127.0.0.1:11999) refused'));
  });
});

describe('RateLimiter', () => {
  test('one per kind per window; the next one after the window carries the count', () => {
    const clock = fakeClock();
    const r = new RateLimiter(10_000, clock.now);
    expect(r.take('a')).toEqual({ suppressed: 0 });
    expect(r.take('b')).toEqual({ suppressed: 0 });
    expect(r.take('a')).toBeNull();
    clock.advance(9_999);
    expect(r.take('a')).toBeNull();
    clock.advance(1);
    expect(r.take('a')).toEqual({ suppressed: 2 });
    expect(r.take('a')).toBeNull();
    clock.advance(10_000);
    expect(r.take('a')).toEqual({ suppressed: 1 });
    clock.advance(10_000);
    expect(r.take('a')).toEqual({ suppressed: 0 });
  });

  test('the table of kinds stays bounded', () => {
    const clock = fakeClock();
    const r = new RateLimiter(10_000, clock.now, 3);
    for (const k of ['a', 'b', 'c', 'd', 'e']) expect(r.take(k)).not.toBeNull();
    expect(r.take('c')).toBeNull();
    expect(r.take('e')).not.toBeNull(); // not kept: limited only once there is room
    clock.advance(10_000);
    for (const k of ['x', 'y', 'z']) expect(r.take(k)).not.toBeNull();
    expect(r.take('x')).toBeNull(); // expired kinds made room
  });
});

describe('defaultLogger', () => {
  noDebug();

  test('warn and error: one line each, prefixed; debug and info silent without DEBUG', () => {
    const { lines, logger } = captured();
    logger.debug('d');
    logger.info('i');
    logger.warn('memcached node n1 unavailable: connect ECONNREFUSED 127.0.0.1:11211');
    logger.error('backup task failed: boom', new Error('multi\nline'), { a: 1 });
    expect(lines).toEqual([
      'express-msm warn memcached node n1 unavailable: connect ECONNREFUSED 127.0.0.1:11211\n',
      'express-msm error backup task failed: boom multi line { a: 1 }\n',
    ]);
  });

  test('many lines of one kind: one per window, then the count of those suppressed', () => {
    const { lines, logger, clock } = captured();
    for (let i = 0; i < 50; i++)
      logger.warn(`session ${hashId(String(i))}: node n1 is down and no other node is available`);
    logger.warn('session 0123456789ab: node n2 is down and no other node is available');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain(hashId('0'));
    expect(lines[1]).toContain('node n2');
    clock.advance(10_000);
    logger.warn(`session ${hashId('x')}: node n1 is down and no other node is available`);
    expect(lines[2]).toMatch(/node n1 is down .*\(49 more like this suppressed\)\n$/);
  });

  test('warn and error are limited apart', () => {
    const { lines, logger } = captured();
    logger.warn('same');
    logger.error('same');
    logger.warn('same');
    expect(lines).toEqual(['express-msm warn same\n', 'express-msm error same\n']);
  });

  test('DEBUG=express-msm: every level, no rate limit', () => {
    process.env.DEBUG = 'express-msm';
    const { lines, logger } = captured();
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.warn('w');
    expect(lines).toEqual([
      'express-msm debug d\n',
      'express-msm info i\n',
      'express-msm warn w\n',
      'express-msm warn w\n',
    ]);
  });
});

describe('loggerFrom (the logger option)', () => {
  noDebug();

  test('false: silent; a custom logger: itself, unlimited', () => {
    expect(loggerFrom(false)).toBe(silentLogger);
    const mine = { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() };
    const l = loggerFrom(mine);
    for (let i = 0; i < 5; i++) l.warn('same');
    expect(mine.warn).toHaveBeenCalledTimes(5);
  });

  test('not given: the default, writing to stderr', () => {
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const l = loggerFrom(undefined);
      l.warn('visible');
      l.info('hidden');
      expect(spy.mock.calls.map((c) => String(c[0]))).toEqual(['express-msm warn visible\n']);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('the logger option is checked', () => {
  const { resolveConfig } = require('../../lib/express/config');
  const base = { memcachedNodes: 'n1:127.0.0.1:11211' };

  test('false, a logger, or nothing pass; anything else is a ConfigError naming what is missing', () => {
    expect(() => resolveConfig({ ...base, logger: false })).not.toThrow();
    expect(() => resolveConfig({ ...base, logger: console })).not.toThrow();
    expect(() => resolveConfig(base)).not.toThrow();
    expect(() => resolveConfig({ ...base, logger: { warn() {} } })).toThrow(
      /invalid logger .*missing debug, info, error/,
    );
    expect(() => resolveConfig({ ...base, logger: true })).toThrow(/invalid logger true/);
  });
});
