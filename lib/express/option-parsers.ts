// Checks and parsers of single option values: msm's syntaxes (storageKeyPrefix, route, lockingMode), numbers,
// regexes, TLS, autoDiscovery and express-session's options (the node list's syntax is memcached/node-list.ts's).
// Each throws a ConfigError naming the option; options.ts says which option uses which.
import { type ConnectionOptions, createSecureContext } from 'tls';
import type { SessionOptions } from 'express-session';
import { ConfigError } from '../core/errors';
import { parseHostPort } from '../memcached/node-list';

/** Routes, as node ids, separate parts of a session id, so they may not contain `-` or `.`. */
export const ROUTE_PATTERN = /^[A-Za-z0-9_]{1,32}$/;
/** ms between autoDiscovery polls, as ElastiCache's own clients. */
export const AUTO_DISCOVERY_INTERVAL_MS = 60_000;
/** Longest memcached relative TTL (larger values are read as absolute Unix times). */
export const MAX_RELATIVE_TTL = 30 * 24 * 3600;
/** Memcached's default item size is 1 MB; leave room for the key and item header. */
export const DEFAULT_MAX_SESSION_BYTES = 1024 * 1024 - 1024;

export function resolveAutoDiscovery(value: unknown): { endpoint: { host: string; port: number }; intervalMs: number } {
  const o = value as { endpoint?: unknown; intervalMs?: unknown } | null | undefined;
  if (!o || typeof o !== 'object' || typeof o.endpoint !== 'string') {
    throw new ConfigError('autoDiscovery', value, 'expected { endpoint: "host:port", intervalMs? }');
  }
  const i = o.endpoint.lastIndexOf(':');
  if (i <= 0) throw new ConfigError('autoDiscovery', o.endpoint, 'endpoint must be host:port');
  const endpoint = parseHostPort('autoDiscovery', o.endpoint.slice(0, i), o.endpoint.slice(i + 1), o.endpoint);
  const intervalMs = o.intervalMs ?? AUTO_DISCOVERY_INTERVAL_MS;
  if (typeof intervalMs !== 'number' || !Number.isFinite(intervalMs) || intervalMs < 100) {
    throw new ConfigError('autoDiscovery.intervalMs', intervalMs, 'expected a number of ms >= 100');
  }
  return { endpoint, intervalMs };
}

/** A finite number >= min (0 unless given), whole when `integer`. */
export function checkNumber(option: string, value: unknown, opts: { integer?: boolean; min?: number } = {}): number {
  const min = opts.min ?? 0;
  if (
    typeof value !== 'number'
    || !Number.isFinite(value)
    || value < min
    || (opts.integer && !Number.isInteger(value))
  ) {
    throw new ConfigError(option, value, `expected a${opts.integer ? 'n integer' : ' number'} >= ${min}`);
  }
  return value;
}

/**
 * Whole seconds, 1 to `max`. A value above `max` is taken for milliseconds given where seconds are meant (a day in
 * ms reads as 2.7 years of seconds), and the message says so.
 */
export function checkSeconds(option: string, value: unknown, max: { seconds: number; text: string }): number {
  if (typeof value === 'number' && Number.isFinite(value) && value > max.seconds) {
    const suggested = Math.max(1, Math.round(value / 1000));
    throw new ConfigError(
      option,
      value,
      `is in seconds, and ${value} seconds is over ${max.text}; milliseconds? use ${suggested} (${value} / 1000)`,
    );
  }
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ConfigError(option, value, `expected whole seconds, 1-${max.seconds}`);
  }
  return value;
}

export function checkBoolean(option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new ConfigError(option, value, 'expected true or false');
  return value;
}

/** A regex for RegExp#test; undefined, null and '' mean none. */
export function parseRegex(option: string, value: unknown): RegExp | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  // RegExp#test with the g or y flag is stateful (lastIndex): matching attribute names would alternate.
  if (value instanceof RegExp)
    return value.global || value.sticky ? new RegExp(value.source, value.flags.replace(/[gy]/g, '')) : value;
  if (typeof value !== 'string') throw new ConfigError(option, value, 'expected a regular expression');
  try {
    return new RegExp(value);
  } catch (e) {
    throw new ConfigError(option, value, (e as Error).message);
  }
}

/** A compiled regex that must match the whole input (Java's Matcher.matches()). */
export function fullMatchRegex(option: string, value: unknown): RegExp | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  let source: string;
  let flags = '';
  if (value instanceof RegExp) {
    source = value.source;
    // g and y make test() stateful (lastIndex): never wanted for a per-request match.
    flags = value.flags.replace(/[gy]/g, '');
  } else if (typeof value === 'string') source = value;
  else throw new ConfigError(option, value, 'expected a regular expression (string or RegExp)');
  try {
    return new RegExp(`^(?:${source})$`, flags);
  } catch (e) {
    throw new ConfigError(option, value, (e as Error).message);
  }
}

/** true -> {} (Node's defaults: system CAs, certificate checked); an object is checked now, not at first connect. */
export function parseTls(value: unknown): ConnectionOptions | undefined {
  if (value === undefined || value === null || value === false) return undefined;
  if (value === true) return {};
  if (typeof value !== 'object' || Array.isArray(value))
    throw new ConfigError('tls', value, 'expected true or tls.connect options');
  const options = { ...(value as ConnectionOptions) };
  try {
    createSecureContext(options); // bad PEM, a key that does not match its certificate, unknown ciphers
  } catch (e) {
    throw new ConfigError('tls', '[options]', (e as Error).message);
  }
  return options;
}

/** msm's storageKeyPrefix tokens: `static:x`, `host`, `host.hash`; joined with ':' and ended with '_'. */
export function parseStorageKeyPrefix(value: unknown, hostname: () => string): string {
  const option = 'storageKeyPrefix';
  if (value === undefined || value === null || value === '') return '';
  if (typeof value !== 'string') throw new ConfigError(option, value, 'expected e.g. "static:shop"');
  const parts: string[] = [];
  for (const token of value
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)) {
    let part: string;
    if (token.startsWith('static:')) part = token.slice('static:'.length);
    else if (token === 'host') part = hostname();
    else if (token === 'host.hash')
      part = require('crypto').createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
    else if (token === 'context' || token === 'context.hash' || token === 'webappVersion') {
      throw new ConfigError(
        option,
        value,
        `"${token}" is a Tomcat concept; use "static:<name>" for one prefix per application`,
      );
    } else throw new ConfigError(option, value, `unknown token "${token}" (use static:<name>, host or host.hash)`);
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(part)) {
      throw new ConfigError(option, value, `"${part}" must be 1-64 of [A-Za-z0-9_.:-]`);
    }
    parts.push(part);
  }
  return parts.length ? parts.join(':') + '_' : '';
}

/** msm's route (Tomcat's jvmRoute); undefined, null and '' mean none. */
export function parseRoute(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || !ROUTE_PATTERN.test(value))
    throw new ConfigError('route', value, 'must be 1-32 of [A-Za-z0-9_]');
  return value;
}

/** lockingMode, parsed: which requests take the session's lock. */
export type LockingStrategy =
  | {
      /** No request locks. */
      kind: 'none';
    }
  | {
      /** Every request with a session locks. */
      kind: 'all';
    }
  | {
      /** Requests of patterns seen to change the session lock (msm's auto). */
      kind: 'auto';
    }
  | {
      /** Requests whose URL fully matches `pattern` lock. */
      kind: 'uriPattern';
      /** Full match against path + query. */
      pattern: RegExp;
    };

/** Parses `none` | `all` | `auto` | `uriPattern:<regex>`; the regex is compiled once, here. */
export function parseLockingMode(value: unknown): LockingStrategy {
  const option = 'lockingMode';
  if (value === undefined || value === null || value === '' || value === 'none') return { kind: 'none' };
  if (value === 'all') return { kind: 'all' };
  if (value === 'auto') return { kind: 'auto' };
  if (typeof value === 'string' && value.startsWith('uriPattern:')) {
    const src = value.slice('uriPattern:'.length);
    if (src === '')
      throw new ConfigError(option, value, 'uriPattern: needs a regular expression, e.g. "uriPattern:/cart.*"');
    return { kind: 'uriPattern', pattern: fullMatchRegex(option, src)! };
  }
  throw new ConfigError(option, value, 'expected "none", "all", "auto" or "uriPattern:<regex>"');
}

/** express-session's options as memcachedSession() passes them on: `store` and `genid` are its own. */
export type SessionOptionsGiven = Omit<SessionOptions, 'store' | 'genid'>;

/**
 * express-session's options, checked, with resave and saveUninitialized defaulting to false (express-session would
 * print a deprecation warning for each, and its true defaults write every request's session).
 */
export function parseSessionOptions(value: unknown): SessionOptionsGiven {
  if (!value || typeof value !== 'object') {
    throw new ConfigError(
      'session',
      value,
      'expected express-session options with a secret, e.g. session: { secret: process.env.SESSION_SECRET }',
    );
  }
  const o = value as Record<string, unknown>;
  if (o.store !== undefined)
    throw new ConfigError(
      'session.store',
      '[store]',
      'is supplied by memcachedSession(); pass the store options at the top level',
    );
  if (o.genid !== undefined)
    throw new ConfigError(
      'session.genid',
      '[function]',
      'is supplied by memcachedSession() (ids carry the memcached node id)',
    );
  const secrets = Array.isArray(o.secret) ? o.secret : [o.secret];
  if (!secrets.length || !secrets.every((s) => (typeof s === 'string' && s !== '') || Buffer.isBuffer(s))) {
    throw new ConfigError(
      'session.secret',
      o.secret === undefined ? undefined : '[redacted]',
      'is required: a non-empty string (or an array of them, newest first) that signs the session cookie',
    );
  }
  return { ...o, resave: o.resave ?? false, saveUninitialized: o.saveUninitialized ?? false } as SessionOptions;
}
