// Options given -> configuration resolved: the store's (ResolvedConfig) and the middleware's (locking, session), by
// the checks of the options table (options.ts). Knows msm's attribute names and syntax; nothing of memcached or HTTP.
import { ConfigError } from '../core/errors';
import type { IndexBy } from '../modes/user-index';
import type { LockingConfig } from './locking';
import type { ConnectionOptions } from 'tls';
import {
  type MemcachedSessionOptions,
  type MemcachedStoreOptions,
  type MiddlewareOnlyOptions,
  type Resolved,
  checkOptionNames,
  checkOptions,
} from './options';
import type { NodeList } from '../memcached/node-list';
import type { ZoneOf } from '../memcached/placement';
import type { SessionOptionsGiven } from './option-parsers';

export { ConfigError };
export { DEFAULTS, checkOptionNames, storeOptionsOf } from './options';
export type {
  AutoDiscoveryOptions,
  LockingModeName,
  MemcachedSessionOptions,
  MemcachedStoreOptions,
  MiddlewareOnlyOptions,
} from './options';
export { ROUTE_PATTERN, parseStorageKeyPrefix, parseTls, resolveAutoDiscovery } from './option-parsers';
// The node list's syntax is the memcached layer's; these names stay importable from here.
export { NODE_ID_PATTERN, parseHostPort, parseMemcachedNodes, resolveNodes } from '../memcached/node-list';
export type { MemcachedNodeConfig, NodeList } from '../memcached/node-list';

export interface ResolvedConfig extends NodeList {
  sticky: boolean;
  route: string | undefined;
  operationTimeout: number;
  sessionBackupAsync: boolean;
  sessionBackupTimeout: number;
  backupCount: number;
  zones: ZoneOf | undefined;
  storageKeyPrefix: string;
  defaultMaxInactiveInterval: number;
  username: string | undefined;
  password: string | undefined;
  tls: ConnectionOptions | undefined;
  sessionAttributeFilter: RegExp | undefined;
  nodeAvailabilityCacheTTL: number;
  localMaxSessions: number;
  localMaxBytes: number;
  maxSessionBytes: number;
  indexBy: IndexBy | undefined;
  autoDiscovery: { endpoint: { host: string; port: number }; intervalMs: number } | undefined;
}

type Checked<Names extends keyof MemcachedSessionOptions> = { [K in Names]: Resolved<K> };
type StoreChecked = Checked<keyof MemcachedStoreOptions>;
/** memcachedNodes (with failoverNodes) becomes the NodeList; the store reads the others as given. */
type NotInConfig = 'memcachedNodes' | 'failoverNodes' | 'transcoder' | 'logger';
type ConfigFromTable = Omit<StoreChecked, NotInConfig> & StoreChecked['memcachedNodes'];
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// Compiles only while ResolvedConfig holds exactly what the store's checks in the options table return.
true satisfies Same<ResolvedConfig, ConfigFromTable>;

export function resolveConfig(options: MemcachedStoreOptions): ResolvedConfig {
  if (!options || typeof options !== 'object') throw new ConfigError('options', options, 'expected an object');
  checkOptionNames(options, 'store');
  const checked = checkOptions('store', options) as StoreChecked;
  const { memcachedNodes, failoverNodes, transcoder, logger, ...rest } = checked;
  return { ...memcachedNodes, ...rest };
}

/** The middleware-only options, checked (memcachedSession() checks the names, and the store its own options). */
export function resolveMiddlewareOptions(options: MemcachedSessionOptions): {
  locking: LockingConfig;
  session: SessionOptionsGiven;
} {
  const r = checkOptions('middleware', options) as Checked<keyof MiddlewareOnlyOptions>;
  return {
    locking: {
      strategy: r.lockingMode,
      lockExpiration: r.lockExpiration,
      lockWaitTimeout: r.lockWaitTimeout,
      lockTimeoutAction: r.lockTimeoutAction,
      requestUriIgnorePattern: r.requestUriIgnorePattern,
    },
    session: r.session,
  };
}
