// MemcachedStore: express-session's Store contract (callbacks and promises) on top of a mode (non-sticky, sticky).
// Validates every id before anything is built from it, turns sessions into plain data and bytes, and carries what
// a load learnt (bytes, validity, a new id) on the session object until set/touch.
import { Store } from 'express-session';
import type { SessionData } from 'express-session';
import { LRUCache } from 'lru-cache';
import { ConfigError, MemcachedStoreOptions, ResolvedConfig, resolveConfig, resolveNodes } from './config';
import { KeyFormat } from '../memcached/keys';
import { Logger, defaultLogger, hashId } from '../core/logger';
import { LoadResult, LoadedMeta, ModeContext, SessionMode, itemUnderId, unchanged } from '../modes/mode';
import { NodeSet } from '../memcached/nodes';
import { NonStickyMode } from '../modes/non-sticky';
import { SessionId, SessionIdFormat } from '../memcached/session-id';
import { Statistics } from '../core/stats';
import { StickyMode } from '../modes/sticky';
import { JsonTranscoder } from '../transcoders/json';
import { StoredCookie, StoredSession, Transcoder, idInItem, maxInactiveOfCookie, transcodedBytes } from '../transcoders/transcoder';
import { BackupRunner } from '../modes/backup';
import { UserIndex } from '../modes/user-index';
import { SessionLister } from '../modes/listing';
import { DISCOVERED_ID, Discovery } from '../memcached/discovery';

/** Where a loaded session carries its LoadedMeta. A symbol: invisible to JSON, to express-session's hash and to apps. */
export const LOADED: unique symbol = Symbol('express-msm.loaded');
/**
 * What memcachedSession() left on a session for the store call express-session makes after it in the same response:
 * the bytes needsSave encoded (reused by that save or touch), or that the session was saved before the response
 * (the save or touch that follows is then a no-op). A WeakMap, not a property: a property added and deleted per
 * request would turn the session object into a slow dictionary for express-session's hash of it.
 */
const beforeResponse = new WeakMap<object, Encoded | 'saved'>();
/** What memcachedSession() left for this store call, removed: it serves one call. */
function takeBeforeResponse(session: object): Encoded | 'saved' | undefined {
  const left = beforeResponse.get(session);
  if (left !== undefined) beforeResponse.delete(session);
  return left;
}
/** What needsSave computed: the plain session, its bytes, and whether they equal the loaded bytes. */
interface Encoded {
  /** The id the bytes were encoded for (hashed ids carry it in the item): reused only for a save under that id. */
  id: string;
  stored: StoredSession;
  bytes: Buffer;
  unchanged: boolean;
}
/** On req while an id change waits to be applied. */
const PENDING_ID = Symbol('express-msm.pendingIdChange');
/** On req once the app applied id changes itself (applyPendingIdChange): the cookie follows them. */
const APPLIES_IDS = Symbol('express-msm.appliesIdChanges');

/** Memcached's default item size is 1 MB; leave room for the key and item header. */
export const DEFAULT_MAX_SESSION_BYTES = 1024 * 1024 - 1024;

type Callback<T> = (err: any, value?: T) => void;

/**
 * Calls `cb` exactly once, on its own tick, outside the promise chain (as MemoryStore does): an exception it throws
 * is an uncaught exception, never an unhandled rejection or a hung request.
 */
function settle<T>(p: Promise<T>, cb: Callback<T>): void {
  p.then((v) => process.nextTick(cb, null, v), (e) => process.nextTick(cb, e));
}

/** A promise for callers without a callback; with one, it is also settled into the callback (see settle). */
function withCallback<T>(p: Promise<T>, cb: Callback<T> | undefined): Promise<T> {
  if (typeof cb === 'function') settle(p, cb);
  return p;
}

/**
 * express-session's own callbacks in its res.end hook. Answered on the spot, it writes the response in one piece;
 * answered later, it writes all of it but the last byte at once and that byte from the callback: two writes (two
 * syscalls, two segments) per response. So these callbacks are called on the spot when nothing needs waiting for,
 * and otherwise the response's socket is corked until they have run (Node's end() flushes it). Every other callback,
 * an app's `req.session.save(cb)` included, is called on its own tick, as MemoryStore does.
 */
const RESPONSE_HOOKS = new Set(['onsave', 'ontouch']);

/**
 * The Store methods' shared ending. Internals answer synchronously (undefined: done, nothing to wait for) or with a
 * promise; a promise is built only when the caller asked for one (no callback).
 */
function answer<S>(store: MemcachedStore, work: (this: MemcachedStore, raw: string, session: S) => Promise<void> | undefined, raw: string,
  session: S, cb: Callback<void> | undefined): Promise<void> | void {
  let p: Promise<void> | undefined;
  try {
    // A method and its arguments, not a closure: this runs for every save and touch.
    p = work.call(store, raw, session);
  } catch (e) {
    p = Promise.reject(e);
  }
  if (typeof cb !== 'function') return p ?? Promise.resolve();
  const hook = RESPONSE_HOOKS.has(cb.name);
  if (!p) return void (hook ? cb(null) : process.nextTick(cb, null));
  const socket = hook ? responseSocket(session) : undefined;
  if (!socket) return settle(p, cb);
  socket.cork();
  settle(p, (err) => {
    try {
      cb(err);
    } finally {
      socket.uncork();
    }
  });
}

/** The socket of the response an express-session Session belongs to, when it can be corked. */
function responseSocket(session: unknown): { cork(): void; uncork(): void } | undefined {
  const socket = (session as any)?.req?.res?.socket;
  return socket && typeof socket.cork === 'function' && !socket.destroyed ? socket : undefined;
}

interface RequestLike {
  sessionID?: string;
  session?: any;
  res?: { end: (...a: any[]) => any; writeHead: (...a: any[]) => any };
}

export interface StoreStats {
  [counter: string]: unknown;
  nodes: ReturnType<NodeSet['snapshot']>;
  timings: ReturnType<Statistics['timingSnapshot']>;
  pendingBackups: number;
}

export class MemcachedStore extends Store {
  readonly config: ResolvedConfig;
  readonly nodes: NodeSet;
  readonly keys: KeyFormat;
  readonly idFormat: SessionIdFormat;
  readonly transcoder: Transcoder;
  readonly statistics = new Statistics();
  readonly logger: Logger;
  readonly backups: BackupRunner;
  readonly mode: SessionMode;
  /** indexBy: the per-user index (idsOf, destroyAllOf). */
  readonly index: UserIndex | undefined;
  private readonly lister: SessionLister;
  /** Set with the autoDiscovery option: polls the configuration endpoint and applies its node list. */
  readonly discovery: Discovery | undefined;
  /** Largest encoded session accepted; larger ones fail at set with a message naming the size. */
  maxSessionBytes = DEFAULT_MAX_SESSION_BYTES;
  /**
   * Sticky takeover: old id -> new id for requests already in flight with the old cookie. Seconds only: a session's
   * ids recur (a -> b -> a), so an older entry would redirect a live id to a stale one.
   */
  private readonly idChanges = new LRUCache<string, string>({ max: 10_000, ttl: 5_000 });
  /**
   * Requested id -> what its latest load here learnt, when that load found the session under another id. For
   * frameworks that rebuild the session object from store.get (Fastify), so their set/touch of the same request
   * still knows where the session lives. Each load of the id replaces or drops its entry.
   */
  private readonly forwards = new LRUCache<string, LoadedMeta>({ max: 10_000, ttl: 10 * 60_000 });
  /** Set at the first save showing a framework that keeps the cookie it was given (see noteCookieHandling). */
  private fixedCookies = false;
  private closed = false;
  private readonly counted = new WeakSet<object>();

  constructor(options: MemcachedStoreOptions) {
    super();
    this.config = resolveConfig(options);
    this.logger = options.logger ?? defaultLogger();
    this.transcoder = options.transcoder ?? new JsonTranscoder();
    if (typeof this.transcoder.encode !== 'function' || typeof this.transcoder.decode !== 'function') {
      throw new Error('express-msm: invalid transcoder: expected { encode(session): Buffer, decode(bytes): session | null }');
    }
    this.keys = new KeyFormat(this.config.storageKeyPrefix);
    this.nodes = new NodeSet({
      nodes: this.config.nodes,
      failoverNodeIds: this.config.failoverNodeIds,
      operationTimeout: this.config.operationTimeout,
      nodeAvailabilityCacheTTL: this.config.nodeAvailabilityCacheTTL,
      keys: this.keys,
      logger: this.logger,
      username: this.config.username,
      password: this.config.password,
      tls: this.config.tls,
      onKey: options.onKey,
    });
    // The node set's knownIds, live: ids naming a node removed at run time still parse as naming it.
    this.idFormat = new SessionIdFormat(this.nodes.knownIds, this.config.encodeNodeId);
    this.backups = new BackupRunner(this.config.sessionBackupAsync, this.config.sessionBackupTimeout, this.logger);
    const ctx: ModeContext = {
      cfg: this.config,
      nodes: this.nodes,
      keys: this.keys,
      idFormat: this.idFormat,
      // Modes decode session items: the transcoder's bytes, behind the id when its key is a hash (itemUnderId).
      transcoder: { name: this.transcoder.name, encode: (s, c) => this.transcoder.encode(s, c), decode: (b, c) => this.transcoder.decode(transcodedBytes(b), c) },
      stats: this.statistics,
      logger: this.logger,
      backups: this.backups,
      recordIdChange: (oldId, newId) => this.idChanges.set(oldId, newId),
      fixedCookies: () => this.fixedCookies,
    };
    this.mode = this.config.sticky ? new StickyMode(ctx) : new NonStickyMode(ctx);
    const mode = this.mode;
    this.index = this.config.indexBy && new UserIndex({ nodes: this.nodes, keys: this.keys, ids: this.idFormat, stats: this.statistics,
      logger: this.logger, load: (sid) => mode.load(sid), destroy: (sid) => mode.destroy(sid) }, this.config.indexBy);
    this.lister = new SessionLister(ctx, this.mode);
    const ad = this.config.autoDiscovery;
    this.discovery = ad && new Discovery({ ...ad, timeoutMs: this.config.operationTimeout, tls: this.config.tls, logger: this.logger,
      apply: (nodes) => this.applyNodes({ nodes, encodeNodeId: true, failoverNodeIds: [] }) });
  }

  /** Pass as express-session's `genid`: `<random>-<nodeId>[.<route>]` on a random available node. */
  readonly genid = (_req?: unknown): string => {
    this.assertOpen();
    return this.mode.newId();
  };

  // Callbacks are called once, outside promise chains (see settle); without a callback, a promise is returned.
  get(sid: string): Promise<SessionData | null>;
  get(sid: string, callback: Callback<SessionData | null>): void;
  get(sid: string, callback?: Callback<SessionData | null>): Promise<SessionData | null> | void {
    if (typeof callback !== 'function') return this.loadSession(sid);
    if (this.closed) return void settle(this.loadSession(sid), callback);
    const started = performance.now();
    // An id naming a node autoDiscovery has not listed yet: the promise path waits for it.
    const known = typeof sid === 'string' ? this.whenNodeKnown(sid) : undefined;
    if (known) return void settle(this.loadSession(sid, undefined, started, known), callback);
    // A session held in this process (sticky) is answered without a promise.
    const r = this.resolve(sid);
    let session: SessionData | null | undefined;
    try {
      const local = r && this.mode.loadLocal ? this.mode.loadLocal(r) : undefined;
      if (local !== undefined) session = this.loaded(sid, r!, local, started);
    } catch (e) {
      return void process.nextTick(callback, e);
    }
    if (session !== undefined) return void process.nextTick(callback, null, session);
    settle(this.loadSession(sid, r, started), callback);
  }

  set(sid: string, session: SessionData): Promise<void>;
  set(sid: string, session: SessionData, callback: Callback<void>): void;
  set(sid: string, session: SessionData, callback?: Callback<void>): Promise<void> | void {
    return answer(this, this.saveSession, sid, session, callback);
  }

  touch(sid: string, session: SessionData): Promise<void>;
  touch(sid: string, session: SessionData, callback: Callback<void>): void;
  touch(sid: string, session: SessionData, callback?: Callback<void>): Promise<void> | void {
    return answer(this, this.refreshSession, sid, session, callback);
  }

  destroy(sid: string): Promise<void>;
  destroy(sid: string, callback: Callback<void>): void;
  destroy(sid: string, callback?: Callback<void>): Promise<void> | void {
    return answer(this, this.removeSession, sid, undefined, callback);
  }

  /** indexBy: ids of the live sessions whose indexBy gives `value` (each one loaded and checked). */
  idsOf(value: string | number, callback?: Callback<string[]>): Promise<string[]> {
    return withCallback(this.requireIndex().then((i) => i.idsOf(value)), callback);
  }

  /** indexBy: destroys every live session whose indexBy gives `value` ("log out everywhere"); resolves with how many. */
  destroyAllOf(value: string | number, callback?: Callback<number>): Promise<number> {
    return withCallback(this.requireIndex().then((i) => i.destroyAllOf(value)), callback);
  }

  private async requireIndex(): Promise<UserIndex> {
    this.assertOpen();
    if (!this.index) throw new Error('express-msm: idsOf/destroyAllOf need the indexBy option, e.g. indexBy: (s) => s.userId');
    return this.index;
  }

  /** Every live session, id -> session as `get` returns it (as express-session's MemoryStore). Walks every node. */
  all(callback?: Callback<Record<string, SessionData>>): Promise<Record<string, SessionData>> {
    const out: Record<string, SessionData> = Object.create(null);
    return withCallback(this.eachSession((id, session) => { out[id] = session; }).then(() => out), callback);
  }

  /** How many live sessions there are (streamed: keys are never all in memory). */
  length(callback?: Callback<number>): Promise<number> {
    let n = 0;
    return withCallback(this.eachSession(() => { n++; }).then(() => n), callback);
  }

  /** The ids of every live session (connect-redis's `ids`). */
  ids(callback?: Callback<string[]>): Promise<string[]> {
    const out: string[] = [];
    return withCallback(this.eachSession((id) => { out.push(id); }).then(() => out), callback);
  }

  /** Deletes every copy of this store's sessions on every node (and sticky's local ones); nothing else. */
  clear(callback?: Callback<void>): Promise<void> {
    // Queued backups and a running node repair would otherwise write copies back after the walk deleted them.
    const cleared = Promise.resolve().then(() => this.assertOpen()).then(() => this.backups.flush()).then(() => this.ready())
      .then(() => this.lister.clear());
    return withCallback(cleared.then((n) => { this.logger.info(`clear: ${n} items deleted`); }), callback);
  }

  /**
   * express-session builds req.session here: the one Store hook that sees the request. When the load moved the
   * session to a new id (relocation, route takeover), the id is switched just before the response goes out, so
   * express-session sees an id change, saves under the new id and sends the new cookie.
   */
  createSession(req: any, sess: SessionData): any {
    const meta = (sess as any)[LOADED] as LoadedMeta | undefined;
    const session = super.createSession(req, sess);
    if (meta) Object.defineProperty(session, LOADED, { value: meta, configurable: true, writable: true });
    if (meta?.newId && req.sessionID !== meta.newId) this.switchIdAtResponse(req as RequestLike, req.sessionID, meta);
    return session;
  }

  /** Counters (msm's Statistics), timings and per-node availability. */
  stats(): StoreStats {
    return {
      ...this.statistics.counters(),
      timings: this.statistics.timingSnapshot(),
      nodes: this.nodes.snapshot(),
      pendingBackups: this.backups.size,
    };
  }

  /**
   * Replaces the memcached node list at run time (msm: through JMX), in the memcachedNodes/failoverNodes syntax.
   * Invalid input throws a ConfigError and changes nothing. A node id keeps naming the same node: a session id
   * names its node. New nodes take new sessions; sessions on a removed node are served from their backups and
   * relocated on their next request, as when a node dies (sticky: the session's memcached copy is rewritten on
   * another node). Every instance must be given the same list.
   */
  setMemcachedNodes(memcachedNodes: string, failoverNodes?: string): void {
    if (this.closed) throw new Error('express-msm: setMemcachedNodes on a closed store');
    if (this.discovery) throw new Error(`express-msm: the node list comes from autoDiscovery (${this.discovery.endpoint}); setMemcachedNodes is for memcachedNodes`);
    const next = resolveNodes(memcachedNodes, failoverNodes);
    if (next.encodeNodeId !== this.config.encodeNodeId) {
      // Ids without a node suffix are placed by a hash over the nodes; ids with one name their node. Not mixable.
      throw new ConfigError('memcachedNodes', memcachedNodes, this.config.encodeNodeId
        ? 'the store was started with node ids ("n1:host:port,..."): give every node an id'
        : 'the store was started with a single "host:port" (session ids name no node): it can only be replaced by one "host:port"');
    }
    this.applyNodes(next);
  }

  private applyNodes(next: Pick<ResolvedConfig, 'nodes' | 'encodeNodeId' | 'failoverNodeIds'>): void {
    if (this.closed) return;
    const before = this.nodes.ids;
    const { added, removed } = this.nodes.update(next.nodes, next.failoverNodeIds);
    Object.assign(this.config, next);
    if (!added.length && !removed.length) return;
    this.logger.info(`memcached nodes changed: ${this.nodes.ids.join(', ')}${added.length ? `; added ${added.join(', ')}` : ''}${removed.length ? `; removed ${removed.join(', ')}` : ''}`);
    this.mode.nodesChanged?.(before);
  }

  /**
   * autoDiscovery: a promise when `id` names a node not discovered here yet (another instance polled first and
   * put a session on it): a poll, so the session is found rather than taken for a plain id. Undefined otherwise.
   */
  whenNodeKnown(id: string): Promise<unknown> | undefined {
    if (!this.discovery) return undefined;
    if (!this.nodes.ids.length) return this.discovery.waitForNodes(this.config.operationTimeout);
    const sid = this.idFormat.parse(id);
    if (!sid || sid.nodeId) return undefined;
    const suffix = sid.random.slice(sid.random.lastIndexOf('-') + 1);
    if (!DISCOVERED_ID.test(suffix)) return undefined;
    return this.discovery.pollSoon();
  }

  /** Probes every node now (normally probes run in the background when the 1 s cache entry is stale). */
  async ready(): Promise<void> {
    await this.discovery?.waitForNodes(Math.max(this.config.operationTimeout, 5000));
    await this.nodes.refresh();
    await this.mode.idle?.();
  }

  /** Flushes queued backups, then closes every connection and timer. Later operations fail; a second close() does nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.discovery?.close();
    await this.backups.flush();
    // A repair walking a hung node's keys would hold close() up to its idle timeout (10 s): it stops here, and the
    // sessions it did not reach are repaired on their next request.
    this.nodes.abortWalks('the store is closing');
    await this.mode.close();
    await this.backups.flush();
    this.nodes.close();
  }

  // --- internals ---------------------------------------------------------------------------------------------

  /** Operations after close() fail at once (a closed store has no connections to wait on). */
  private assertOpen(): void {
    if (this.closed) throw new Error('express-msm: the store is closed (store.close() was called)');
  }

  /** Parses and validates a client-supplied id, following a recorded move. null: invalid, never reaches memcached. */
  private resolve(raw: unknown, meta?: LoadedMeta): SessionId | null {
    const known = meta?.requested;
    const sid = known && known.id === raw ? known : this.idFormat.parse(raw);
    if (!sid) return null;
    // Empty but for moments after a relocation or takeover: no lookup (lru-cache allocates per get).
    const movedTo = this.idChanges.size ? this.idChanges.get(sid.id) : undefined;
    if (movedTo) {
      const moved = this.idFormat.parse(movedTo);
      if (moved) return moved;
    }
    return sid;
  }

  /** `r`, `started`, `known`: what a callback-first get found already (r undefined: resolve here). */
  private async loadSession(raw: string, r?: SessionId | null, started = performance.now(),
    known?: Promise<unknown>): Promise<SessionData | null> {
    this.assertOpen();
    if (r === undefined) {
      known ??= typeof raw === 'string' ? this.whenNodeKnown(raw) : undefined;
      if (known) await known;
      r = this.resolve(raw);
    }
    if (!r) {
      this.statistics.invalidSessionIds++;
      this.statistics.requestsWithoutSession++;
      return null;
    }
    return this.loaded(raw, r, await this.mode.load(r), started);
  }

  /**
   * What express-session gets from a load: the session with its cookie checked and `expires` rebuilt, or null. `sid`
   * is what `raw` resolved to: another id when a recorded move redirected it.
   */
  private loaded(raw: string, sid: SessionId, loaded: LoadResult | null, started: number): SessionData | null {
    this.statistics.time('load', performance.now() - started);
    if (!loaded) return null;
    const { session, meta } = loaded;
    const moved = sid.id !== raw;
    if (moved && !meta.newId) meta.newId = sid.id;
    // An id whose keys hold its hash: the item must name it (two ids with one hash would otherwise share a session).
    if (this.keys.isHashed(meta.id) && idInItem(meta.bytes) !== meta.id) return null;
    const loadedCookie = session.cookie && { ...session.cookie };
    const state = checkCookie(session, meta.validity?.thisAccessedTime ?? meta.accessedAt ?? Date.now());
    if (state === 'malformed') {
      // Decoded, but express-session would throw on this cookie (in res.end, where the request then hangs).
      this.statistics.decodeFailures++;
      this.logger.warn(`session ${hashId(sid.id)}: stored cookie is malformed; treated as no session`);
      return null;
    }
    if (state === 'expired') {
      this.statistics.sessionsExpired++;
      return null;
    }
    if (loadedCookie) meta.cookie = loadedCookie;
    if (!moved) meta.requested = sid;
    this.index?.onLoad(meta, raw, session);
    Object.defineProperty(session, LOADED, { value: meta, configurable: true, writable: true });
    if (meta.newId && meta.newId !== raw) this.forwards.set(raw, meta);
    else if (this.forwards.size) this.forwards.delete(raw);
    return session as unknown as SessionData;
  }

  /** Every live session as `get` would return it (without its load metadata: a listing is not a request). */
  private async eachSession(each: (id: string, session: SessionData) => void): Promise<void> {
    this.assertOpen();
    return this.lister.forEach((id, bytes, lastAccess) => {
      const sid = this.idFormat.parse(id);
      const session = sid && this.transcoder.decode(transcodedBytes(bytes), sid);
      if (session && checkCookie(session, lastAccess ?? Date.now()) === 'live') each(id, session as unknown as SessionData);
    });
  }

  /** undefined: saved synchronously (sticky with asynchronous backups). Throws on what cannot be stored. */
  private saveSession(raw: string, session: SessionData): Promise<void> | undefined {
    return this.whenUsable(this.saveNow, raw, session);
  }

  private saveNow(raw: string, session: SessionData): Promise<void> | undefined {
    const pre = takeBeforeResponse(session);
    // Saved moments ago by memcachedSession(), before the response: this is express-session's save of the same state.
    if (pre === 'saved') return undefined;
    const started = performance.now();
    const meta = this.loadedMeta(raw, session);
    const r = this.resolve(raw, meta);
    if (!r) throw new Error(`express-msm: refusing to store a session under an id that has no key (empty, longer than 4096 characters, or a lone UTF-16 surrogate): check the genid option`);
    this.noteCookieHandling(session);
    const { sid, alias } = this.whereTo(r, meta);
    const maxInactive = this.maxInactiveOf(session.cookie as unknown as StoredCookie);
    if (maxInactive <= 0) return this.mode.destroy(sid);
    const reuse = pre?.id === sid.id ? pre : undefined;
    const stored = reuse?.stored ?? this.toStored(session);
    const bytes = reuse?.bytes ?? this.encodeItem(sid, stored);
    if (bytes.length > this.maxSessionBytes) {
      throw new Error(`express-msm: session is ${bytes.length} bytes, above the ${this.maxSessionBytes}-byte limit (memcached item size); not stored`);
    }
    const saving = this.mode.save(sid, stored, bytes, maxInactive, meta);
    if (!saving && !alias && !this.index) return void this.saved(session, meta, !!pre, started);
    const done = () => this.saved(session, meta, !!pre, started);
    return (alias || this.index ? this.afterWrite(saving, sid, alias, session, maxInactive, meta) : saving!).then(done);
  }

  /** What follows a save or touch when there is more to write: the old id's alias, the user index. */
  private async afterWrite(writing: Promise<void> | undefined, sid: SessionId, alias: SessionId | undefined, session: SessionData,
    maxInactive: number, meta: LoadedMeta | undefined): Promise<void> {
    await writing;
    if (alias) await this.mode.keepAlias(alias, sid, maxInactive);
    if (this.index) await this.index.afterWrite(sid, session, maxInactive, meta);
  }

  private saved(session: SessionData, meta: LoadedMeta | undefined, early: boolean, started: number): void {
    // Counted when first stored (express-session asks genid for every request without a cookie), once per object.
    if (!meta && !this.counted.has(session)) {
      this.counted.add(session);
      this.statistics.sessionsCreated++;
    }
    if (early) beforeResponse.set(session, 'saved');
    this.statistics.time('save', performance.now() - started);
  }

  /**
   * memcachedSession()'s question before the response: does this session need a save? Encodes once; the bytes are
   * kept on the session for the save that follows. New sessions need one when they hold attributes.
   */
  needsSave(session: SessionData, sessionId: string): boolean {
    const meta = (session as any)[LOADED] as LoadedMeta | undefined;
    const stored = this.toStored(session);
    const sid = this.idFormat.parse(sessionId);
    const loaded = meta !== undefined && meta.id === sessionId;
    // A new session is saved when it holds attributes; its bytes are then encoded here once, for the save.
    if (!sid || (!loaded && Object.keys(stored).length <= 1)) return !loaded && Object.keys(stored).length > 1;
    const bytes = this.encodeItem(sid, stored);
    const same = loaded && unchanged(meta, sid.id, bytes);
    beforeResponse.set(session, { id: sid.id, stored, bytes, unchanged: same });
    return !same;
  }


  /**
   * memcachedSession()'s end of a request whose loaded session needsSave found unchanged: the refresh express-session
   * would ask for (its touch), without its two hashes of the session to decide so. false: needsSave did not find this
   * session loaded and unchanged; undefined: done; a promise: done when it settles.
   */
  touchUnchanged(session: SessionData, sessionId: string): Promise<void> | undefined | false {
    const left = beforeResponse.get(session);
    if (left === undefined || left === 'saved' || !left.unchanged || left.id !== sessionId) return false;
    return this.refreshSession(sessionId, session);
  }

  /** autoDiscovery before its first answer: wait for it (up to operationTimeout), or fail saying why. */
  private nodesDiscovered(): Promise<void> | undefined {
    return this.discovery && !this.nodes.ids.length ? this.discovery.waitForNodes(this.config.operationTimeout) : undefined;
  }

  /** Runs `op` at once when the store is open and has nodes; after the first discovery answer otherwise. */
  private whenUsable(op: (raw: string, session: SessionData) => Promise<void> | undefined, raw: string, session: SessionData): Promise<void> | undefined {
    this.assertOpen();
    const discovered = this.nodesDiscovered();
    // No closure on the way: this runs for every save and touch.
    return discovered ? discovered.then(() => op.call(this, raw, session)) : op.call(this, raw, session);
  }

  /** undefined: done synchronously (sticky, nothing due in memcached). */
  private refreshSession(raw: string, session: SessionData): Promise<void> | undefined {
    return this.whenUsable(this.refreshNow, raw, session);
  }

  private refreshNow(raw: string, session: SessionData): Promise<void> | undefined {
    const encoded = takeBeforeResponse(session);
    // Saved moments ago in this request (memcachedSession): validity and TTLs are fresh.
    if (encoded === 'saved') return undefined;
    const meta = this.loadedMeta(raw, session);
    // memcachedSession() already compared the whole encoding, cookie included: no second look at the cookie.
    if (!encoded?.unchanged && meta?.cookie && cookieChanged(session, meta.cookie)) return this.saveNow(raw, session);
    const r = this.resolve(raw, meta);
    if (!r) return undefined;
    this.noteCookieHandling(session);
    const { sid, alias } = this.whereTo(r, meta);
    const maxInactive = this.maxInactiveOf(session.cookie as unknown as StoredCookie);
    if (maxInactive <= 0) return this.mode.destroy(sid);
    const touching = this.mode.touch(sid, () => this.encodeItem(sid, this.toStored(session)), maxInactive, meta);
    return alias || this.index ? this.afterWrite(touching, sid, alias, session, maxInactive, meta) : touching;
  }

  /** What the load of this request learnt: on the session object, or (rebuilt by the framework) by its id. */
  private loadedMeta(raw: string, session: SessionData): LoadedMeta | undefined {
    return ((session as any)[LOADED] as LoadedMeta | undefined) ?? this.forwards.get(raw);
  }

  /**
   * Where a save goes: the id the load moved the session to, when the framework kept the old id (no req.res,
   * Fastify). The old id stays an alias of it, served through the mode's forwarding marker.
   */
  private whereTo(sid: SessionId, meta: LoadedMeta | undefined): { sid: SessionId; alias?: SessionId } {
    const moved = meta?.newId && meta.newId !== sid.id ? this.idFormat.parse(meta.newId) : null;
    return moved ? { sid: moved, alias: sid } : { sid };
  }

  /**
   * express-session's sessions carry their request; it sends a changed id as a new cookie when the store can
   * switch req.sessionID in time (req.res, or the app calls applyPendingIdChange). Without that (a plain server),
   * and for another framework's session objects (Fastify's), the cookie stays as it was: from then on sticky mode
   * checks memcached on every load. Plain objects (direct store calls) say nothing about a framework.
   */
  private noteCookieHandling(session: SessionData): void {
    if (this.fixedCookies || !session || typeof session !== 'object' || Object.getPrototypeOf(session) === Object.prototype) return;
    const req = (session as any).req;
    if (req && typeof req === 'object' && (req.res || req[APPLIES_IDS])) return;
    this.fixedCookies = true;
    this.logger.info('the framework keeps the session cookie it was given (no req.res: a plain server, or not express-session): moved sessions stay reachable under their old ids');
  }

  private async removeSession(raw: string): Promise<void> {
    this.assertOpen();
    const discovered = this.nodesDiscovered();
    if (discovered) await discovered;
    const sid = this.idFormat.parse(raw);
    if (!sid) return;
    const movedTo = this.idChanges.get(sid.id) ?? this.forwards.get(sid.id)?.newId;
    this.idChanges.delete(sid.id);
    this.forwards.delete(sid.id);
    const moved = movedTo ? this.idFormat.parse(movedTo) : null;
    await Promise.all([this.mode.destroy(sid), moved ? this.mode.destroy(moved) : undefined]);
    await this.index?.onDestroy(sid.id);
  }

  /** s: the cookie's maxAge, else its expires, else defaultMaxInactiveInterval. <= 0 means already expired. */
  maxInactiveOf(cookie: StoredCookie | undefined): number {
    return maxInactiveOfCookie(cookie, this.config.defaultMaxInactiveInterval);
  }

  /** What is stored under `id` for this plain session (itemUnderId): memcachedSession() compares it with the loaded bytes. */
  encodeItem(sid: SessionId, stored: StoredSession): Buffer {
    return itemUnderId(this.keys, sid.id, this.transcoder.encode(stored, sid));
  }

  /**
   * Plain data for the transcoder: the cookie's fields and the (filtered) top-level attributes. The cookie's
   * `expires` moves with every request (express-session resets it), so it is left out whenever it can be rebuilt
   * from originalMaxAge: unchanged sessions then encode to the same bytes and are not rewritten.
   */
  toStored(session: SessionData): StoredSession {
    const cookie = storedCookieOf(session);
    const out: StoredSession = cookie ? { cookie } : {};
    const filter = this.config.sessionAttributeFilter;
    for (const k of Object.keys(session)) {
      if (k === 'cookie' || (filter && !filter.test(k))) continue;
      const v = (session as any)[k];
      if (v === undefined || typeof v === 'function') continue;
      out[k] = v;
    }
    return out;
  }

  /**
   * Performs a pending id change (relocation, takeover) now rather than when the response goes out, so the app
   * sees the new req.sessionID. memcachedSession() calls it right after express-session. Idempotent.
   */
  applyPendingIdChange(req: any): void {
    // Behind express (req.res) the cookie follows id changes anyway (noteCookieHandling): no mark on every request.
    if (req && typeof req === 'object' && !req.res && !req[APPLIES_IDS]) Object.defineProperty(req, APPLIES_IDS, { value: true });
    const pending = (req as any)[PENDING_ID] as (() => void) | undefined;
    if (pending) pending();
  }

  private switchIdAtResponse(req: RequestLike, oldId: string, meta: LoadedMeta): void {
    const newId = meta.newId!;
    let done = false;
    const store = this;
    const swap = () => {
      if (done) return;
      done = true;
      delete (req as any)[PENDING_ID];
      // Only if the app did not regenerate or destroy the session meanwhile.
      if (!req.session || req.sessionID !== oldId) return;
      req.sessionID = newId;
      const copy = Object.assign({}, req.session);
      Object.defineProperty(copy, LOADED, { value: meta, configurable: true, writable: true });
      store.createSession(req, copy);
    };
    Object.defineProperty(req, PENDING_ID, { value: swap, configurable: true });
    const res = req.res;
    // Not behind express (no req.res): only an explicit applyPendingIdChange() switches the id.
    if (!res) return;
    const end = res.end;
    const writeHead = res.writeHead;
    res.end = function (this: unknown, ...args: any[]) {
      swap();
      return end.apply(this, args);
    };
    res.writeHead = function (this: unknown, ...args: any[]) {
      swap();
      return writeHead.apply(this, args);
    };
  }
}

// What cookie.serialize accepts (cookie 0.7, used by express-session): checked here without building a Cookie.
const COOKIE_PATH = /^[\u0020-\u003A\u003D-\u007E]*$/;
const COOKIE_DOMAIN = /^([.]?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)([.][a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const SAME_SITE = new Set(['lax', 'strict', 'none', 'auto']);
const PRIORITY = new Set(['low', 'medium', 'high']);
const optional = (v: unknown, ok: (v: unknown) => boolean) => v === undefined || v === null || ok(v);
const isBool = (v: unknown) => typeof v === 'boolean';

/**
 * Whether express-session can use this stored cookie: it throws (in res.end, where the request then hangs) on a
 * non-numeric originalMaxAge, a date out of range, an accessor name, or a field cookie.serialize rejects. Plain
 * checks, no Cookie built: this runs on every load.
 */
function isUsableCookie(cookie: StoredCookie): boolean {
  const oma = cookie.originalMaxAge;
  // Bounded so that now + originalMaxAge is still a Date (8.64e15 ms).
  if (!(oma === null || oma === undefined || (typeof oma === 'number' && Math.abs(oma) <= 4e15))) return false;
  const exp = cookie.expires;
  if (!(exp === null || exp === undefined || (typeof exp === 'string' && Number.isFinite(new Date(exp).getTime())))) return false;
  // Cookie's constructor assigns every field: `maxAge`, `expires`, `data` are accessors there, not data.
  if ('maxAge' in cookie || 'data' in cookie || '_expires' in cookie) return false;
  return optional(cookie.secure, (v) => isBool(v) || v === 'auto')
    && optional(cookie.httpOnly, isBool)
    && optional(cookie.partitioned, isBool)
    && optional(cookie.path, (v) => typeof v === 'string' && COOKIE_PATH.test(v))
    && optional(cookie.domain, (v) => typeof v === 'string' && COOKIE_DOMAIN.test(v))
    && optional(cookie.sameSite, (v) => isBool(v) || (typeof v === 'string' && SAME_SITE.has(v.toLowerCase())))
    && optional(cookie.priority, (v) => typeof v === 'string' && PRIORITY.has(v.toLowerCase()));
}

/**
 * The cookie as stored: Cookie.toJSON's fields, without `expires` when originalMaxAge can rebuild it, drift undone.
 * A plain cookie an app passes to set() is read as Cookie would read it: `maxAge` becomes originalMaxAge.
 */
function storedCookieOf(session: SessionData): StoredCookie | undefined {
  const src = session.cookie as any;
  if (src === undefined || src === null) return undefined;
  const data = typeof src.toJSON === 'function' ? src.toJSON() : { ...src };
  const maxAge = typeof data.originalMaxAge === 'number' ? data.originalMaxAge : typeof data.maxAge === 'number' ? data.maxAge : null;
  const cookie: StoredCookie = { originalMaxAge: maxAge };
  const loaded = ((session as any)[LOADED] as LoadedMeta | undefined)?.cookie?.originalMaxAge;
  if (typeof loaded === 'number' && isMaxAgeDrift(loaded, cookie.originalMaxAge)) cookie.originalMaxAge = loaded;
  for (const k of Object.keys(data)) {
    // Cookie's accessors (maxAge, data) and its backing field are not data: they would break Cookie's constructor.
    if (k === 'originalMaxAge' || k === 'maxAge' || k === 'data' || k === '_expires' || data[k] === undefined) continue;
    if (k === 'expires' && cookie.originalMaxAge !== null) continue;
    cookie[k] = data[k] instanceof Date ? data[k].toISOString() : data[k];
  }
  return cookie;
}

/**
 * express-session calls touch, not set, when only the cookie changed (its modified check skips the cookie), e.g. a
 * "remember me" `cookie.maxAge = 30 days`. The stored cookie must follow, or the next load brings the old one back.
 */
function cookieChanged(session: SessionData, loaded: StoredCookie): boolean {
  const now = storedCookieOf(session);
  if (!now) return true;
  const keys = Object.keys(now);
  if (keys.length !== Object.keys(loaded).length) return true;
  for (const k of keys) if (now[k] !== loaded[k]) return true;
  return false;
}

/**
 * express-session's resetMaxAge sets `maxAge = originalMaxAge`, and its setter reads the clock twice, so on some
 * requests originalMaxAge comes back a millisecond or two lower. Left alone, that drift would make an untouched
 * session look modified (a rewrite) and shorten its lifetime a little on every drift.
 */
const MAX_AGE_DRIFT_MS = 50;
function isMaxAgeDrift(loaded: number, now: number | null): boolean {
  return typeof now === 'number' && now <= loaded && loaded - now < MAX_AGE_DRIFT_MS;
}

/**
 * What `get` may return of a decoded session (listing too): 'malformed' when express-session could not use its
 * cookie, 'expired' when the cookie's expiry has passed, to the millisecond (memcached and the validity record keep
 * whole seconds; express-session allows `maxAge: 5`). 'live' rebuilds `cookie.expires` in place from `lastAccess`
 * (ms, the last save or touch). A session without a cookie is live and comes back as stored, like MemoryStore.
 */
function checkCookie(session: StoredSession, lastAccess: number): 'live' | 'malformed' | 'expired' {
  const cookie = session.cookie;
  if (cookie === undefined) return 'live';
  if (!isUsableCookie(cookie)) return 'malformed';
  const expiresAt = restoreExpires(cookie, lastAccess);
  return expiresAt !== null && expiresAt <= Date.now() ? 'expired' : 'live';
}

/**
 * express-session expects `cookie.expires`; rebuild it from the last access and originalMaxAge (see toStored).
 * A Date, as the Cookie type declares it: express-session would parse a string back into one (createSession), so
 * building a string here would cost a format and a parse per load. Returns the expiry (ms; null: none).
 */
function restoreExpires(cookie: StoredCookie, lastAccess: number): number | null {
  if (cookie.expires !== undefined) return cookie.expires ? new Date(cookie.expires as string).getTime() : null;
  if (typeof cookie.originalMaxAge !== 'number') {
    cookie.expires = null;
    return null;
  }
  const at = lastAccess + cookie.originalMaxAge;
  cookie.expires = new Date(at);
  return at;
}
