// Options, defaults and validation. Knows msm's attribute names and syntax; knows nothing of memcached or HTTP.
import { type ConnectionOptions, createSecureContext } from 'tls';
import type { SessionOptions } from 'express-session';
import type { Transcoder } from '../transcoders/transcoder';
import type { Logger } from '../core/logger';
import type { IndexBy } from '../modes/user-index';
import { ConfigError } from '../core/errors';
import { type NodeList, parseHostPort, resolveNodes } from '../memcached/node-list';

export { ConfigError };
// The node list's syntax is the memcached layer's; these names stay importable from here.
export { NODE_ID_PATTERN, parseHostPort, parseMemcachedNodes, resolveNodes } from '../memcached/node-list';
export type { MemcachedNodeConfig, NodeList } from '../memcached/node-list';

export type LockingModeName = 'none' | 'all' | 'auto' | `uriPattern:${string}`;

export interface MemcachedStoreOptions {
  /** msm syntax: `n1:host:11211,n2:host:11212` (commas or spaces), or a single `host:port` without node id. */
  memcachedNodes?: string;
  /** Instead of memcachedNodes: the nodes from a configuration endpoint (`config get cluster`), polled. */
  autoDiscovery?: AutoDiscoveryOptions;
  /** Node ids used only when no other node is available (msm `failoverNodes`). */
  failoverNodes?: string;
  /** msm `sticky`: local primary + memcached backup (true) or memcached primary + backup node (false, default). */
  sticky?: boolean;
  /** This instance's name (Tomcat's jvmRoute); required when sticky. */
  route?: string;
  /** ms, deadline of one memcached operation (msm `operationTimeout`). */
  operationTimeout?: number;
  /** Backup writes after the response (true) or awaited up to sessionBackupTimeout (false). */
  sessionBackupAsync?: boolean;
  /** ms, how long a synchronous backup is awaited. */
  sessionBackupTimeout?: number;
  /** msm `storageKeyPrefix`: comma-separated `static:<x>`, `host`, `host.hash`. */
  storageKeyPrefix?: string;
  /** s, for sessions whose cookie has no maxAge/expires. */
  defaultMaxInactiveInterval?: number;
  /** SASL PLAIN credentials, passed to each node's client. */
  username?: string;
  password?: string;
  /** TLS to every node: true (system CAs) or tls.connect options (ca, cert + key for mutual TLS, servername, ...). */
  tls?: boolean | ConnectionOptions;
  /** Session <-> bytes. JSON by default. */
  transcoder?: Transcoder;
  /** Regex over top-level attribute names; only matching attributes are stored (msm `sessionAttributeFilter`). */
  sessionAttributeFilter?: string | RegExp;
  /** ms, how long a node's availability is trusted before it is probed again (msm: 1000). */
  nodeAvailabilityCacheTTL?: number;
  /** Sticky: bounds of the local primary store. */
  localMaxSessions?: number;
  localMaxBytes?: number;
  /** Where failover, relocation and decode failures are reported. Silent unless DEBUG includes express-msm. */
  logger?: Logger;
  /**
   * Per-user index (non-sticky): the value a session belongs to, e.g. `(s) => s.userId`; strings and finite numbers
   * count. Enables store.idsOf(value) and store.destroyAllOf(value). See docs/user-index.md.
   */
  indexBy?: IndexBy;
  /** Test hook: called with every key before it reaches memcached. */
  onKey?: (key: string) => void;
}

export interface AutoDiscoveryOptions {
  /** `host:port` of the configuration endpoint. */
  endpoint: string;
  /** ms between polls (default 60 000, as ElastiCache's own clients). */
  intervalMs?: number;
}

/** Options only memcachedSession() has: they need the request, which a Store never sees. */
export interface MiddlewareOnlyOptions {
  /** Locking (non-sticky only). */
  lockingMode?: LockingModeName | string;
  lockExpiration?: number;
  lockTimeoutAction?: 'proceed' | 'reject';
  /** Requests whose path (plus query) fully matches get no session. */
  requestUriIgnorePattern?: string | RegExp;
  /** express-session's options (`secret` required); `store` and `genid` are supplied by the middleware. */
  session: Omit<SessionOptions, 'store' | 'genid'>;
}

export interface MemcachedSessionOptions extends MemcachedStoreOptions, MiddlewareOnlyOptions {}

/**
 * Every option name, in one place: a name missing here is a compile error, a name given that is not here a
 * ConfigError at construction. Adding an option: its line in the interface above and its line here.
 */
const STORE_OPTION_NAMES: Record<keyof MemcachedStoreOptions, true> = {
  memcachedNodes: true, failoverNodes: true, sticky: true, route: true, operationTimeout: true, sessionBackupAsync: true,
  sessionBackupTimeout: true, storageKeyPrefix: true, defaultMaxInactiveInterval: true, username: true, password: true,
  transcoder: true, sessionAttributeFilter: true, nodeAvailabilityCacheTTL: true, localMaxSessions: true,
  localMaxBytes: true, logger: true, indexBy: true, onKey: true, tls: true, autoDiscovery: true,
};
const MIDDLEWARE_OPTION_NAMES: Record<keyof MiddlewareOnlyOptions, true> = {
  lockingMode: true, lockExpiration: true, lockTimeoutAction: true, requestUriIgnorePattern: true, session: true,
};
/** express-session's own options, a likely mistake at memcachedSession()'s top level. */
const EXPRESS_SESSION_OPTION_NAMES = new Set(['secret', 'resave', 'saveUninitialized', 'cookie', 'name', 'rolling', 'proxy', 'unset']);

export interface ResolvedConfig extends NodeList {
  sticky: boolean;
  route: string | undefined;
  operationTimeout: number;
  sessionBackupAsync: boolean;
  sessionBackupTimeout: number;
  storageKeyPrefix: string;
  defaultMaxInactiveInterval: number;
  username: string | undefined;
  password: string | undefined;
  tls: ConnectionOptions | undefined;
  sessionAttributeFilter: RegExp | undefined;
  nodeAvailabilityCacheTTL: number;
  localMaxSessions: number;
  localMaxBytes: number;
  indexBy: IndexBy | undefined;
  autoDiscovery: { endpoint: { host: string; port: number }; intervalMs: number } | undefined;
}

export const DEFAULTS = {
  sticky: false,
  autoDiscoveryIntervalMs: 60_000,
  operationTimeout: 1000,
  sessionBackupAsync: true,
  sessionBackupTimeout: 100,
  defaultMaxInactiveInterval: 1800,
  nodeAvailabilityCacheTTL: 1000,
  localMaxSessions: 100_000,
  localMaxBytes: 256 * 1024 * 1024,
  lockExpiration: 5,
} as const;

/** Routes, as node ids, separate parts of a session id, so they may not contain `-` or `.`. */
export const ROUTE_PATTERN = /^[A-Za-z0-9_]{1,32}$/;

/** The options of new MemcachedStore() among memcachedSession()'s. */
export function storeOptionsOf(options: MemcachedSessionOptions): MemcachedStoreOptions {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) if (k in STORE_OPTION_NAMES) out[k] = v;
  return out as unknown as MemcachedStoreOptions;
}

/** Edit distance, case-insensitive: `memcachednode` is one edit from `memcachedNodes`. */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * Throws on the first option name that `where` does not know, naming the closest valid one. Silently ignored typos
 * (`memcachedNode`, `failOverNodes`) would otherwise run with a default nobody chose.
 */
export function checkOptionNames(options: object, where: 'store' | 'middleware'): void {
  const valid = where === 'store' ? Object.keys(STORE_OPTION_NAMES) : [...Object.keys(STORE_OPTION_NAMES), ...Object.keys(MIDDLEWARE_OPTION_NAMES)];
  for (const name of Object.keys(options)) {
    if (valid.includes(name)) continue;
    if (where === 'middleware' && EXPRESS_SESSION_OPTION_NAMES.has(name)) {
      throw ConfigError.unknownOption(name, `it is an express-session option: pass it inside session: { ${name}: ... }`);
    }
    if (name in MIDDLEWARE_OPTION_NAMES) {
      throw ConfigError.unknownOption(name, 'it is an option of memcachedSession(), not of new MemcachedStore(): it needs the request, '
        + 'which a Store never sees. Use memcachedSession({ memcachedNodes, ' + name + ', session: {...} })');
    }
    let best = '';
    let bestDistance = Infinity;
    for (const v of valid) {
      const d = distance(name, v);
      if (d < bestDistance) [best, bestDistance] = [v, d];
    }
    const hint = bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? `did you mean ${best}?` : `valid options are ${valid.join(', ')}`;
    throw ConfigError.unknownOption(name, hint);
  }
}

export function resolveAutoDiscovery(value: unknown): { endpoint: { host: string; port: number }; intervalMs: number } {
  const o = value as AutoDiscoveryOptions;
  if (!o || typeof o !== 'object' || typeof o.endpoint !== 'string') {
    throw new ConfigError('autoDiscovery', value, 'expected { endpoint: "host:port", intervalMs? }');
  }
  const i = o.endpoint.lastIndexOf(':');
  if (i <= 0) throw new ConfigError('autoDiscovery', o.endpoint, 'endpoint must be host:port');
  const endpoint = parseHostPort('autoDiscovery', o.endpoint.slice(0, i), o.endpoint.slice(i + 1), o.endpoint);
  const intervalMs = o.intervalMs ?? DEFAULTS.autoDiscoveryIntervalMs;
  if (typeof intervalMs !== 'number' || !Number.isFinite(intervalMs) || intervalMs < 100) {
    throw new ConfigError('autoDiscovery.intervalMs', intervalMs, 'expected a number of ms >= 100');
  }
  return { endpoint, intervalMs };
}

function nonNegative(option: string, value: unknown, dflt: number, opts: { integer?: boolean; min?: number } = {}): number {
  if (value === undefined) return dflt;
  const min = opts.min ?? 0;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (opts.integer && !Number.isInteger(value))) {
    throw new ConfigError(option, value, `expected a${opts.integer ? 'n integer' : ' number'} >= ${min}`);
  }
  return value;
}

function bool(option: string, value: unknown, dflt: boolean): boolean {
  if (value === undefined) return dflt;
  if (typeof value !== 'boolean') throw new ConfigError(option, value, 'expected true or false');
  return value;
}

function regex(option: string, value: unknown): RegExp | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  // RegExp#test with the g or y flag is stateful (lastIndex): matching attribute names would alternate.
  if (value instanceof RegExp) return value.global || value.sticky ? new RegExp(value.source, value.flags.replace(/[gy]/g, '')) : value;
  if (typeof value !== 'string') throw new ConfigError(option, value, 'expected a regular expression');
  try {
    return new RegExp(value);
  } catch (e) {
    throw new ConfigError(option, value, (e as Error).message);
  }
}

/** true -> {} (Node's defaults: system CAs, certificate checked); an object is checked now, not at first connect. */
export function parseTls(value: unknown): ConnectionOptions | undefined {
  if (value === undefined || value === null || value === false) return undefined;
  if (value === true) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError('tls', value, 'expected true or tls.connect options');
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
  for (const token of value.split(',').map((t) => t.trim()).filter(Boolean)) {
    let part: string;
    if (token.startsWith('static:')) part = token.slice('static:'.length);
    else if (token === 'host') part = hostname();
    else if (token === 'host.hash') part = require('crypto').createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
    else if (token === 'context' || token === 'context.hash' || token === 'webappVersion') {
      throw new ConfigError(option, value, `"${token}" is a Tomcat concept; use "static:<name>" for one prefix per application`);
    } else throw new ConfigError(option, value, `unknown token "${token}" (use static:<name>, host or host.hash)`);
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(part)) {
      throw new ConfigError(option, value, `"${part}" must be 1-64 of [A-Za-z0-9_.:-]`);
    }
    parts.push(part);
  }
  return parts.length ? parts.join(':') + '_' : '';
}

export function resolveConfig(options: MemcachedStoreOptions): ResolvedConfig {
  if (!options || typeof options !== 'object') throw new ConfigError('options', options, 'expected an object');
  checkOptionNames(options, 'store');
  let autoDiscovery: ResolvedConfig['autoDiscovery'];
  if (options.autoDiscovery !== undefined) {
    if (options.memcachedNodes !== undefined) throw new ConfigError('autoDiscovery', options.autoDiscovery, 'give memcachedNodes or autoDiscovery, not both');
    if (options.failoverNodes) throw new ConfigError('failoverNodes', options.failoverNodes, 'not with autoDiscovery: discovered nodes are all primaries');
    autoDiscovery = resolveAutoDiscovery(options.autoDiscovery);
  }
  // Discovered nodes arrive after construction; their ids always go into session ids.
  const { nodes, encodeNodeId, failoverNodeIds } = autoDiscovery
    ? { nodes: [], encodeNodeId: true, failoverNodeIds: [] }
    : resolveNodes(options.memcachedNodes, options.failoverNodes);
  const sticky = bool('sticky', options.sticky, DEFAULTS.sticky);
  let route: string | undefined;
  if (options.route !== undefined && options.route !== null && options.route !== '') {
    if (typeof options.route !== 'string' || !ROUTE_PATTERN.test(options.route)) {
      throw new ConfigError('route', options.route, 'must be 1-32 of [A-Za-z0-9_]');
    }
    route = options.route;
  }
  if (sticky && !route) throw new ConfigError('route', options.route, 'is required when sticky is true (like Tomcat\'s jvmRoute)');
  const timeoutOpt = { min: 1 };
  const cfg: ResolvedConfig = {
    nodes,
    encodeNodeId,
    failoverNodeIds,
    sticky,
    route,
    operationTimeout: nonNegative('operationTimeout', options.operationTimeout, DEFAULTS.operationTimeout, timeoutOpt),
    sessionBackupAsync: bool('sessionBackupAsync', options.sessionBackupAsync, DEFAULTS.sessionBackupAsync),
    sessionBackupTimeout: nonNegative('sessionBackupTimeout', options.sessionBackupTimeout, DEFAULTS.sessionBackupTimeout),
    storageKeyPrefix: parseStorageKeyPrefix(options.storageKeyPrefix, () => require('os').hostname()),
    defaultMaxInactiveInterval: nonNegative(
      'defaultMaxInactiveInterval', options.defaultMaxInactiveInterval, DEFAULTS.defaultMaxInactiveInterval, { integer: true, min: 1 }),
    username: options.username,
    password: options.password,
    tls: parseTls(options.tls),
    sessionAttributeFilter: regex('sessionAttributeFilter', options.sessionAttributeFilter),
    nodeAvailabilityCacheTTL: nonNegative('nodeAvailabilityCacheTTL', options.nodeAvailabilityCacheTTL, DEFAULTS.nodeAvailabilityCacheTTL),
    localMaxSessions: nonNegative('localMaxSessions', options.localMaxSessions, DEFAULTS.localMaxSessions, { integer: true, min: 1 }),
    localMaxBytes: nonNegative('localMaxBytes', options.localMaxBytes, DEFAULTS.localMaxBytes, { integer: true, min: 1 }),
    indexBy: options.indexBy ?? undefined,
    autoDiscovery,
  };
  if (cfg.indexBy !== undefined && typeof cfg.indexBy !== 'function') {
    throw new ConfigError('indexBy', typeof cfg.indexBy, 'expected a function (session) => value, e.g. (s) => s.userId');
  }
  if (cfg.indexBy && sticky) {
    // A sticky instance serves its sessions from memory: another instance cannot end them.
    throw new ConfigError('indexBy', '[function]', 'needs non-sticky mode (sticky instances serve sessions from local memory, which other instances cannot end)');
  }
  if ((cfg.username === undefined) !== (cfg.password === undefined)) {
    throw new ConfigError(cfg.username === undefined ? 'username' : 'password', undefined, 'username and password go together (SASL)');
  }
  return cfg;
}
