// Every option, declared once: the OPTIONS table below (scope, default, unit, check, one line for users). From it
// come DEFAULTS, the checks resolveConfig runs, the list of valid names ("did you mean") and README's options table
// (npm run options-table). The public interfaces stay hand-written for their JSDoc; the compiler holds them to the
// table. Adding an option: its line in an interface and its entry in OPTIONS, then npm run options-table.
import type { ConnectionOptions } from 'tls';
import type { Transcoder } from '../transcoders/transcoder';
import type { LoggerOption } from '../core/logger';
import type { IndexBy } from '../modes/user-index';
import { ConfigError } from '../core/errors';
import { type NodeList, resolveNodes } from '../memcached/node-list';
import { type ZoneOf, type Zones, zoneResolver } from '../memcached/placement';
import {
  AUTO_DISCOVERY_INTERVAL_MS,
  DEFAULT_MAX_SESSION_BYTES,
  MAX_RELATIVE_TTL,
  type SessionOptionsGiven,
  checkBoolean,
  checkNumber,
  checkSeconds,
  fullMatchRegex,
  parseLockingMode,
  parseRegex,
  parseRoute,
  parseSessionOptions,
  parseStorageKeyPrefix,
  parseTls,
  resolveAutoDiscovery,
} from './option-parsers';

/** msm's locking modes: `none`, `all`, `auto` (learned per request pattern), `uriPattern:<regex>`. */
export type LockingModeName = 'none' | 'all' | 'auto' | `uriPattern:${string}`;

/**
 * Options of `new MemcachedStore()` (and of `memcachedSession()`, which takes these plus {@link MiddlewareOnlyOptions}).
 * Every option may be left out or given as `undefined`; defaults are in the README's options table and {@link DEFAULTS}.
 */
export interface MemcachedStoreOptions {
  /**
   * msm syntax: `n1:host:11211,n2:host:11212` (commas or spaces), or a single `host:port` without node id. Required
   * unless `autoDiscovery` is given.
   */
  memcachedNodes?: string | undefined;
  /** Instead of memcachedNodes: the nodes from a configuration endpoint (`config get cluster`), polled. */
  autoDiscovery?: AutoDiscoveryOptions | undefined;
  /** Node ids used only when no other node is available (msm `failoverNodes`). Default: none. */
  failoverNodes?: string | undefined;
  /**
   * msm `sticky`: local primary + memcached backup (true) or memcached primary + backup node (false, the default).
   */
  sticky?: boolean | undefined;
  /** This instance's name (Tomcat's jvmRoute), carried in its session ids; required when sticky. */
  route?: string | undefined;
  /** ms, deadline of one memcached operation (msm `operationTimeout`). Default 1000. */
  operationTimeout?: number | undefined;
  /** Backup writes after the response (true, the default) or awaited up to sessionBackupTimeout (false). */
  sessionBackupAsync?: boolean | undefined;
  /** ms, how long a synchronous backup is awaited. Default 100. */
  sessionBackupTimeout?: number | undefined;
  /** msm `storageKeyPrefix`: comma-separated `static:<x>`, `host`, `host.hash`. Default: none. */
  storageKeyPrefix?: string | undefined;
  /** s, lifetime of sessions whose cookie has no maxAge/expires. Default 1800. */
  defaultMaxInactiveInterval?: number | undefined;
  /** SASL PLAIN user, passed to each node's client (binary protocol); goes with `password`. */
  username?: string | undefined;
  /** SASL PLAIN password; goes with `username`. */
  password?: string | undefined;
  /**
   * Backup copies besides the primary, each on its own node (non-sticky). Default 1, msm's: the backup on the next
   * node. Sticky mode keeps one memcached copy and accepts only 1.
   */
  backupCount?: number | undefined;
  /**
   * Each node's zone: `{ [nodeId]: zone }` or `(node: { id, host, port }) => zone`; a node not named is a zone of its
   * own. Copies go to zones that hold no copy yet first. Default: every node its own zone (msm's placement).
   */
  zones?: Zones | undefined;
  /** TLS to every node: true (system CAs) or tls.connect options (ca, cert + key for mutual TLS, servername, ...). */
  tls?: boolean | ConnectionOptions | undefined;
  /** Session <-> bytes: JsonTranscoder (the default), AvroTranscoder, EncryptingTranscoder or your own. */
  transcoder?: Transcoder | undefined;
  /** Regex over top-level attribute names; only matching attributes are stored (msm `sessionAttributeFilter`). */
  sessionAttributeFilter?: string | RegExp | undefined;
  /** ms, how long a node's availability is trusted before it is probed again (msm: 1000, the default). */
  nodeAvailabilityCacheTTL?: number | undefined;
  /** Sticky: most sessions the local primary store holds (least recently used go first). Default 100000. */
  localMaxSessions?: number | undefined;
  /** Sticky: most bytes (encoded sessions) the local primary store holds. Default 256 MiB. */
  localMaxBytes?: number | undefined;
  /**
   * bytes, largest encoded session stored; larger ones fail at save with a SessionTooLargeError (memcached's item
   * size, `-I`, minus ~1 KiB). Default 1 MiB - 1 KiB.
   */
  maxSessionBytes?: number | undefined;
  /**
   * Where failover, relocation and decode failures are reported. Default: warnings and errors on stderr, one line
   * each, rate-limited per kind; debug and info only with DEBUG=express-msm. false: nothing at all.
   */
  logger?: LoggerOption | undefined;
  /**
   * Per-user index (non-sticky): the value a session belongs to, e.g. `(s) => s.userId`; strings and finite numbers
   * count. Enables store.idsOf(value) and store.destroyAllOf(value). See docs/user-index.md.
   */
  indexBy?: IndexBy | undefined;
}

/**
 * @internal A test hook, kept out of the options table and the public option type: called with every key before it
 * reaches memcached. `new MemcachedStore({ ...options, [ON_KEY]: (key) => ... } as MemcachedStoreOptions)`.
 */
export const ON_KEY: unique symbol = Symbol('express-msm.onKey');
/** @internal The store's hooks for tests (symbol-keyed: option name checks and memcachedSession() never see them). */
export interface StoreTestHooks {
  [ON_KEY]?: (key: string) => void;
}

/** The `autoDiscovery` option: where the node list comes from (an ElastiCache-style configuration endpoint). */
export interface AutoDiscoveryOptions {
  /** `host:port` of the configuration endpoint. */
  endpoint: string;
  /** ms between polls (default 60 000, as ElastiCache's own clients). */
  intervalMs?: number | undefined;
}

/** Options only memcachedSession() has: they need the request, which a Store never sees. */
export interface MiddlewareOnlyOptions {
  /** msm `lockingMode` (non-sticky only): `none` (the default), `all`, `auto` or `uriPattern:<regex>`. */
  lockingMode?: LockingModeName | string | undefined;
  /** s, TTL of the `lock:` item (msm `lockExpiration`). Default 5. */
  lockExpiration?: number | undefined;
  /** ms: how long a request waits for its session's lock (in-process queue plus memcached retries). Default 5000. */
  lockWaitTimeout?: number | undefined;
  /** When the lock was not had within lockWaitTimeout: `reject` (503, the default) or `proceed` without it (msm). */
  lockTimeoutAction?: 'proceed' | 'reject' | undefined;
  /**
   * Requests whose URL (path plus query string, as `req.originalUrl`) fully matches get no session, e.g.
   * `.*\.(css|js|png)(\?.*)?` (a RegExp, or the same as a string) for static files with or without a cache-busting query.
   */
  requestUriIgnorePattern?: string | RegExp | undefined;
  /** express-session's options (`secret` required); `store` and `genid` are supplied by the middleware. */
  session: SessionOptionsGiven;
}

/** Options of `memcachedSession()`: the store's options and the middleware's own. */
export interface MemcachedSessionOptions extends MemcachedStoreOptions, MiddlewareOnlyOptions {}

export type OptionName = keyof MemcachedSessionOptions;
/** new MemcachedStore() takes the store's options; memcachedSession() takes both. */
export type OptionScope = 'store' | 'middleware';
export type OptionUnit = 's' | 'ms' | 'bytes' | 'count';

/** What a check sees besides its own value. */
export interface CheckContext {
  /** The options as given. */
  readonly given: Readonly<Record<string, unknown>>;
  /** The options of the same scope checked before this one (table order), as their checks returned them. */
  readonly resolved: Readonly<Record<string, unknown>>;
}

export interface OptionSpec<Given = unknown, Scope extends OptionScope = OptionScope> {
  scope: Scope;
  /** msm's attribute (`context.xml`) this option stands for. */
  msm?: string;
  unit?: OptionUnit;
  /** Taken when the option is not given (undefined), and checked as a given value would be. */
  default?: NonNullable<Given>;
  /** How the default reads in the README where the value alone would not say it. */
  defaultText?: string;
  /** One line for users (Markdown): README's notes. */
  description: string;
  /** The value (undefined when neither given nor defaulted) checked and resolved; throws a ConfigError. Without a
   * check the value is taken as given. */
  check?: (value: unknown, ctx: CheckContext) => unknown;
}

type ScopeOf<K extends OptionName> = K extends keyof MiddlewareOnlyOptions ? 'middleware' : 'store';
type SpecOf<K extends OptionName> = OptionSpec<MemcachedSessionOptions[K], ScopeOf<K>>;

const DOCS = 'https://github.com/express-msm/express-msm/blob/main/docs';
const number = (option: string, opts?: { integer?: boolean; min?: number }) => (v: unknown) =>
  checkNumber(option, v, opts);
const boolean = (option: string) => (v: unknown) => checkBoolean(option, v);
const YEAR = 365 * 24 * 3600;

/**
 * The table. Its order is the order of checks (a check may read the options before it), of the valid names an
 * unknown-option message lists, and of README's rows: store options first.
 */
export const OPTIONS = {
  memcachedNodes: {
    scope: 'store',
    msm: '`memcachedNodes`',
    defaultText: 'required (or `autoDiscovery`)',
    description:
      '`n1:host:port,n2:host:port` (commas or spaces), or one `host:port` (then ids carry no node id); '
      + 'changeable at run time with `store.setMemcachedNodes()`',
    // With failoverNodes: its ids must name these nodes.
    check: (v, { given }): NodeList => {
      if (given.autoDiscovery === undefined) return resolveNodes(v, given.failoverNodes);
      if (v !== undefined) {
        throw new ConfigError('autoDiscovery', given.autoDiscovery, 'give memcachedNodes or autoDiscovery, not both');
      }
      if (given.failoverNodes) {
        throw new ConfigError(
          'failoverNodes',
          given.failoverNodes,
          'not with autoDiscovery: discovered nodes are all primaries',
        );
      }
      // Discovered nodes arrive after construction; their ids always go into session ids.
      return { nodes: [], encodeNodeId: true, failoverNodeIds: [] };
    },
  },
  failoverNodes: {
    scope: 'store',
    msm: '`failoverNodes`',
    description: 'ids used only when no other node is up; must not name every node',
    // Checked by memcachedNodes' check, with the nodes it names.
  },
  sticky: {
    scope: 'store',
    msm: '`sticky`',
    default: false,
    description: "msm's default is `true`; Express apps behind round-robin balancers want `false`",
    check: boolean('sticky'),
  },
  route: {
    scope: 'store',
    msm: '`jvmRoute` (Tomcat)',
    description: "this instance's name, carried in its session ids; required when `sticky`",
    check: (v, { resolved }) => {
      const route = parseRoute(v);
      if (resolved.sticky && !route) {
        throw new ConfigError('route', v, "is required when sticky is true (like Tomcat's jvmRoute)");
      }
      return route;
    },
  },
  operationTimeout: {
    scope: 'store',
    msm: '`operationTimeout`',
    unit: 'ms',
    default: 1000,
    description: 'deadline of each memcached operation (not of the lock wait: `lockWaitTimeout`)',
    check: number('operationTimeout', { min: 1 }),
  },
  sessionBackupAsync: {
    scope: 'store',
    msm: '`sessionBackupAsync`',
    default: true,
    description: 'backup written after the response; `false`: awaited up to `sessionBackupTimeout`',
    check: boolean('sessionBackupAsync'),
  },
  sessionBackupTimeout: {
    scope: 'store',
    msm: '`sessionBackupTimeout`',
    unit: 'ms',
    default: 100,
    description: 'how long a synchronous backup is awaited',
    check: number('sessionBackupTimeout'),
  },
  backupCount: {
    scope: 'store',
    unit: 'count',
    default: 1,
    description:
      'non-sticky: backup copies besides the primary, each in another zone while zones last (`0`: none); sticky '
      + `keeps 1 ([docs/reliability.md](${DOCS}/reliability.md))`,
    check: (v, { resolved }) => {
      const n = checkNumber('backupCount', v, { integer: true });
      // Sticky: the local session's one copy in memcached (on the node in its id) is its backup.
      if (resolved.sticky && n !== 1)
        throw new ConfigError(
          'backupCount',
          v,
          'sticky mode keeps exactly 1 copy in memcached; more need sticky: false',
        );
      const { nodes } = resolved.memcachedNodes as NodeList;
      // Fewer nodes than copies would keep fewer copies than asked for, silently. One node with the default is fine.
      if (n > 1 && nodes.length > 0 && nodes.length <= n)
        throw new ConfigError('backupCount', v, `needs at least ${n + 1} nodes; memcachedNodes has ${nodes.length}`);
      return n;
    },
  },
  zones: {
    scope: 'store',
    defaultText: 'none: every node a zone of its own',
    description:
      "`{ n1: 'a', n2: 'a', n3: 'b' }` or `({ id, host, port }) => zone` (for discovered nodes): copies go to nodes "
      + 'in zones that hold none yet, then to any node',
    check: (v, { resolved }): ZoneOf | undefined => zoneResolver(v, (resolved.memcachedNodes as NodeList).nodes),
  },
  storageKeyPrefix: {
    scope: 'store',
    msm: '`storageKeyPrefix`',
    description:
      '`static:<name>`, `host`, `host.hash` (comma-separated); `-` and `.` are safe here (unlike in Java msm)',
    check: (v) => parseStorageKeyPrefix(v, () => require('os').hostname()),
  },
  defaultMaxInactiveInterval: {
    scope: 'store',
    msm: '`maxInactiveInterval` (Tomcat)',
    unit: 's',
    default: 1800,
    description:
      'for sessions whose express-session cookie has no `maxAge` (or `expires`); otherwise the '
      + "cookie's `maxAge` counts",
    // Over a year: a value in ms (a day in ms would read as 2.7 years).
    check: (v) => checkSeconds('defaultMaxInactiveInterval', v, { seconds: YEAR, text: 'a year' }),
  },
  username: {
    scope: 'store',
    msm: '`username`',
    description: "SASL PLAIN user (memjs's connection, binary protocol); goes with `password`",
  },
  password: {
    scope: 'store',
    msm: '`password`',
    description: 'SASL PLAIN password; goes with `username`',
    check: (v, { given }) => {
      if ((given.username === undefined) !== (v === undefined)) {
        const missing = given.username === undefined ? 'username' : 'password';
        throw new ConfigError(missing, undefined, 'username and password go together (SASL)');
      }
      return v as string | undefined;
    },
  },
  transcoder: {
    scope: 'store',
    msm: '`transcoderFactoryClass`',
    defaultText: '`JsonTranscoder`',
    description:
      `\`AvroTranscoder\`, \`EncryptingTranscoder\` ([docs/encryption.md](${DOCS}/encryption.md)), or any `
      + `\`{ encode, decode }\` ([docs/transcoders.md](${DOCS}/transcoders.md))`,
    check: (v) => {
      const proto = typeof v === 'function' ? (v.prototype as Partial<Transcoder> | undefined) : undefined;
      if (typeof proto?.encode === 'function' && typeof proto.decode === 'function') {
        const name = (v as { name?: string }).name || 'Transcoder';
        const args = (v as { length: number }).length ? '...' : '';
        throw new ConfigError('transcoder', `[class ${name}]`, `is a class; pass an instance: new ${name}(${args})`);
      }
      const t = v as Partial<Transcoder> | null | undefined;
      if (t != null && (typeof t.encode !== 'function' || typeof t.decode !== 'function')) {
        throw ConfigError.saying(
          'express-msm: invalid transcoder: expected { encode(session): Buffer, decode(bytes): session | null }',
        );
      }
      return t as Transcoder | undefined;
    },
  },
  sessionAttributeFilter: {
    scope: 'store',
    msm: '`sessionAttributeFilter`',
    description: 'regex over top-level attribute names; only matches are stored',
    check: (v) => parseRegex('sessionAttributeFilter', v),
  },
  nodeAvailabilityCacheTTL: {
    scope: 'store',
    msm: '`msm.nodeAvailabilityCacheTTL`',
    unit: 'ms',
    default: 1000,
    description: "how long a node's up/down state is trusted before a `ping-<id>` probe",
    check: number('nodeAvailabilityCacheTTL'),
  },
  localMaxSessions: {
    scope: 'store',
    unit: 'count',
    default: 100_000,
    description: 'sticky: most sessions the local primary store holds (least recently used go first)',
    check: number('localMaxSessions', { integer: true, min: 1 }),
  },
  localMaxBytes: {
    scope: 'store',
    unit: 'bytes',
    default: 256 * 1024 * 1024,
    description:
      "sticky: most bytes the local primary store holds (each copy's encoded bytes, held in memory of " + 'its own)',
    check: number('localMaxBytes', { integer: true, min: 1 }),
  },
  maxSessionBytes: {
    scope: 'store',
    unit: 'bytes',
    default: DEFAULT_MAX_SESSION_BYTES,
    defaultText: '`1047552` bytes (1 MiB − 1 KiB)',
    description:
      'largest encoded session stored: a larger one fails at save with a `SessionTooLargeError` naming its size, '
      + "before anything is written; set it to memcached's item size (`-I`) minus ~1 KiB",
    check: number('maxSessionBytes', { integer: true, min: 1 }),
  },
  logger: {
    scope: 'store',
    defaultText:
      'warnings and errors to stderr, one line each, at most one per kind per 10 s; all with `DEBUG=express-msm`',
    description: '`{ debug, info, warn, error }`, or `false` for no logging at all; session ids are logged hashed',
    check: (v) => {
      if (v === undefined || v === false) return v;
      const methods = ['debug', 'info', 'warn', 'error'] as const;
      const missing = methods.filter((m) => typeof (v as Record<string, unknown> | null)?.[m] !== 'function');
      if (missing.length) {
        throw new ConfigError(
          'logger',
          v,
          `expected false or an object with ${methods.join(', ')} functions (missing ${missing.join(', ')})`,
        );
      }
      return v;
    },
  },
  indexBy: {
    scope: 'store',
    description:
      '`(session) => userId`: enables `store.idsOf(value)` and `store.destroyAllOf(value)`; non-sticky only '
      + `([docs/user-index.md](${DOCS}/user-index.md))`,
    check: (v, { resolved }) => {
      const indexBy = (v ?? undefined) as IndexBy | undefined;
      if (indexBy !== undefined && typeof indexBy !== 'function') {
        throw new ConfigError(
          'indexBy',
          typeof indexBy,
          'expected a function (session) => value, e.g. (s) => s.userId',
        );
      }
      if (indexBy && resolved.sticky) {
        // A sticky instance serves its sessions from memory: another instance cannot end them.
        throw new ConfigError(
          'indexBy',
          '[function]',
          'needs non-sticky mode (sticky instances serve sessions from local memory, which other instances cannot end)',
        );
      }
      return indexBy;
    },
  },
  tls: {
    scope: 'store',
    defaultText: 'off',
    description:
      '`true` (system CAs) or '
      + '[`tls.connect` options](https://nodejs.org/api/tls.html#tlsconnectoptions-callback) (`ca`, `cert` + `key` '
      + 'for mutual TLS, `servername`, ...): every connection to every node (and to the configuration endpoint) is '
      + 'TLS; works with SASL',
    check: (v) => parseTls(v),
  },
  autoDiscovery: {
    scope: 'store',
    description:
      `\`{ endpoint: 'host:port', intervalMs: ${AUTO_DISCOVERY_INTERVAL_MS} }\` instead of `
      + '`memcachedNodes`: the nodes come from a configuration endpoint (`config get cluster`, as AWS ElastiCache '
      + 'serves it), polled '
      + `([node lists that change](${DOCS}/store.md#node-lists-that-change))`,
    check: (v) => (v === undefined ? undefined : resolveAutoDiscovery(v)),
  },
  lockingMode: {
    scope: 'middleware',
    msm: '`lockingMode`',
    default: 'none',
    description: '`none`, `all`, `auto`, `uriPattern:<regex>`; non-sticky only',
    check: (v, { given }) => {
      const strategy = parseLockingMode(v);
      if (given.sticky === true && strategy.kind !== 'none') {
        throw new ConfigError(
          'lockingMode',
          given.lockingMode,
          'locking is only available in non-sticky mode '
            + "(sticky: false); in sticky mode the load balancer already sends a session's requests to one instance, "
            + 'use lockingMode "none"',
        );
      }
      return strategy;
    },
  },
  lockExpiration: {
    scope: 'middleware',
    msm: '`lockExpiration`',
    unit: 's',
    default: 5,
    description: 'TTL of the `lock:` item',
    // Over 30 days memcached would read the TTL as a date; such a value was meant in ms.
    check: (v) => checkSeconds('lockExpiration', v, { seconds: MAX_RELATIVE_TTL, text: '30 days' }),
  },
  lockWaitTimeout: {
    scope: 'middleware',
    unit: 'ms',
    // As long as a lock may be held (lockExpiration's default): a burst of six 300 ms requests on one session
    // (1.8 s of work) fits with room for other instances' polling backoff (up to 500 ms a retry).
    default: 5000,
    description:
      "how long a request waits for its session's lock (msm waits `operationTimeout`); then `lockTimeoutAction`",
    check: number('lockWaitTimeout', { min: 0 }),
  },
  lockTimeoutAction: {
    scope: 'middleware',
    default: 'reject',
    description:
      '`reject`: 503 with `Retry-After` when the lock was not had in time; `proceed`: run without the lock (msm)',
    check: (v) => {
      const action = v ?? 'reject';
      if (action !== 'proceed' && action !== 'reject') {
        throw new ConfigError(
          'lockTimeoutAction',
          action,
          'expected "proceed" (msm: use the session without the lock) or "reject" (answer 503)',
        );
      }
      return action;
    },
  },
  requestUriIgnorePattern: {
    scope: 'middleware',
    msm: '`requestUriIgnorePattern`',
    description: "full match against path + query (not msm's `METHOD URI`); matching requests get no session",
    check: (v) => fullMatchRegex('requestUriIgnorePattern', v),
  },
  session: {
    scope: 'middleware',
    defaultText: 'required',
    description:
      "express-session's options: `secret` required; `resave` and `saveUninitialized` default to `false`; "
      + '`store` and `genid` are supplied',
    check: (v) => parseSessionOptions(v),
  },
} as const satisfies { readonly [K in OptionName]-?: SpecOf<K> };

type Table = typeof OPTIONS;
/** What an option's check returns (the value as given when it has none). */
export type Resolved<K extends OptionName> = Table[K] extends { check: (...args: any[]) => infer R }
  ? R
  : MemcachedSessionOptions[K];

const ENTRIES = Object.entries(OPTIONS) as Array<[OptionName, OptionSpec]>;
const namesOf = (scope: OptionScope): readonly string[] => ENTRIES.filter(([, s]) => s.scope === scope).map(([n]) => n);
export const STORE_OPTION_NAMES = namesOf('store');
export const MIDDLEWARE_OPTION_NAMES = namesOf('middleware');

type NumberOrBooleanDefault = {
  [K in OptionName]: Table[K] extends { default: number | boolean } ? K : never;
}[OptionName];
type Defaults = { readonly [K in NumberOrBooleanDefault]: Table[K]['default'] } & {
  readonly autoDiscoveryIntervalMs: typeof AUTO_DISCOVERY_INTERVAL_MS;
};

/** The numeric and boolean defaults (and autoDiscovery's interval), for code that derives from them. */
export const DEFAULTS = {
  ...Object.fromEntries(
    ENTRIES.filter(([, s]) => typeof s.default === 'number' || typeof s.default === 'boolean').map(([n, s]) => [
      n,
      s.default,
    ]),
  ),
  autoDiscoveryIntervalMs: AUTO_DISCOVERY_INTERVAL_MS,
} as Defaults;

/**
 * Runs the checks of one scope in table order: each option's value, or its default when not given, through its
 * check. Answers what the checks returned, by option name.
 */
export function checkOptions(scope: OptionScope, given: object): Record<string, unknown> {
  const options = given as Record<string, unknown>;
  const resolved: Record<string, unknown> = {};
  for (const [name, spec] of ENTRIES) {
    if (spec.scope !== scope) continue;
    const value = options[name] === undefined ? spec.default : options[name];
    resolved[name] = spec.check ? spec.check(value, { given: options, resolved }) : value;
  }
  return resolved;
}

/** express-session's own options, a likely mistake at memcachedSession()'s top level. */
const EXPRESS_SESSION_OPTION_NAMES = new Set([
  'secret',
  'resave',
  'saveUninitialized',
  'cookie',
  'name',
  'rolling',
  'proxy',
  'unset',
]);

/** The options of new MemcachedStore() among memcachedSession()'s. */
export function storeOptionsOf(options: MemcachedSessionOptions): MemcachedStoreOptions {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) if (STORE_OPTION_NAMES.includes(k)) out[k] = v;
  return out as MemcachedStoreOptions;
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
export function checkOptionNames(options: object, where: OptionScope): void {
  const valid = where === 'store' ? STORE_OPTION_NAMES : [...STORE_OPTION_NAMES, ...MIDDLEWARE_OPTION_NAMES];
  for (const name of Object.keys(options)) {
    if (valid.includes(name)) continue;
    if (where === 'middleware' && EXPRESS_SESSION_OPTION_NAMES.has(name)) {
      throw ConfigError.unknownOption(
        name,
        `it is an express-session option: pass it inside session: { ${name}: ... }`,
      );
    }
    if (MIDDLEWARE_OPTION_NAMES.includes(name)) {
      throw ConfigError.unknownOption(
        name,
        'it is an option of memcachedSession(), not of new MemcachedStore(): it needs the request, '
          + 'which a Store never sees. Use memcachedSession({ memcachedNodes, '
          + name
          + ', session: {...} })',
      );
    }
    let best = '';
    let bestDistance = Infinity;
    for (const v of valid) {
      const d = distance(name, v);
      if (d < bestDistance) [best, bestDistance] = [v, d];
    }
    const hint =
      bestDistance <= Math.max(2, Math.floor(name.length / 3))
        ? `did you mean ${best}?`
        : `valid options are ${valid.join(', ')}`;
    throw ConfigError.unknownOption(name, hint);
  }
}
