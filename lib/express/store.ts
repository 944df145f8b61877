// MemcachedStore: express-session's Store contract (callbacks and promises) over a mode (non-sticky, sticky). Each
// method checks the store is open and usable, then hands over to the session service, the mode or the lister.
import { Store } from 'express-session';
import type { SessionData } from 'express-session';
import { type MemcachedStoreOptions, type ResolvedConfig, resolveNodes } from './config';
import { ConfigError, StoreClosedError } from '../core/errors';
import type { Logger } from '../core/logger';
import type { Statistics } from '../core/stats';
import type { KeyFormat } from '../memcached/keys';
import type { NodeSet, StoreHealth } from '../memcached/nodes';
import type { SessionId, SessionIdFormat } from '../memcached/session-id';
import { DISCOVERED_ID, type Discovery } from '../memcached/discovery';
import type { BackupRunner } from '../modes/backup';
import type { SessionLister } from '../modes/listing';
import type { SessionMode } from '../modes/mode';
import type { UserIndex } from '../modes/user-index';
import type { StoredSession, Transcoder } from '../transcoders/transcoder';
import { type Callback, answer, settle, withCallback } from './callbacks';
import type { SessionService } from './session-service';
import { type StoreStats, assemble } from './wiring';

export { DEFAULT_MAX_SESSION_BYTES } from './option-parsers';
export type { StoreStats } from './wiring';

/** The express-session Store: msm's sticky and non-sticky modes over memcached, callback or promise API. */
export class MemcachedStore extends Store {
  /** @internal */
  declare readonly config: ResolvedConfig;
  /** @internal */
  declare readonly nodes: NodeSet;
  /** @internal */
  declare readonly keys: KeyFormat;
  /** @internal */
  declare readonly idFormat: SessionIdFormat;
  /** The transcoder option's instance (JsonTranscoder by default). */
  declare readonly transcoder: Transcoder;
  /** @internal */
  declare readonly statistics: Statistics;
  /** Where this store logs (the logger option, or the default stderr logger). */
  declare readonly logger: Logger;
  /** @internal */
  declare readonly backups: BackupRunner;
  /** @internal */
  declare readonly mode: SessionMode;
  /** @internal indexBy: the per-user index (idsOf, destroyAllOf). */
  declare readonly index: UserIndex | undefined;
  /** Set with the autoDiscovery option: polls the configuration endpoint and applies its node list. */
  declare readonly discovery: Discovery | undefined;
  /** @internal */
  declare readonly sessions: SessionService;
  declare private readonly lister: SessionLister;
  private closed = false;

  constructor(options: MemcachedStoreOptions) {
    super();
    Object.assign(
      this,
      assemble(options, (nodes) => this.applyNodes({ nodes, encodeNodeId: true, failoverNodeIds: [] })),
    );
  }

  /** Largest encoded session accepted (the maxSessionBytes option); larger ones fail at set naming the size. */
  get maxSessionBytes(): number {
    return this.sessions.maxSessionBytes;
  }

  /** Kept for code that set it after construction; the option is the way now. */
  set maxSessionBytes(bytes: number) {
    this.sessions.maxSessionBytes = bytes;
  }

  /** Pass as express-session's `genid`: `<random>-<nodeId>[.<route>]` on a random available node. */
  readonly genid = (_req?: unknown): string => {
    this.assertOpen();
    return this.mode.newId();
  };

  // Callbacks are called once, outside promise chains (see settle); without a callback, a promise is returned.
  /** The session, or null when there is none (missing, expired, undecodable); rejects when no node answers. */
  get(sid: string): Promise<SessionData | null>;
  get(sid: string, callback: Callback<SessionData | null>): void;
  get(sid: string, callback?: Callback<SessionData | null>): Promise<SessionData | null> | undefined {
    if (typeof callback !== 'function') return this.loadSession(sid);
    if (this.closed) return void settle(this.loadSession(sid), callback);
    const started = performance.now();
    // An id naming a node autoDiscovery has not listed yet: the promise path waits for it.
    const known = typeof sid === 'string' ? this.whenNodeKnown(sid) : undefined;
    if (known) return void settle(this.loadSession(sid, started, known), callback);
    // A session held in this process (sticky) is answered without a promise.
    const r = this.sessions.resolve(sid);
    let session: SessionData | null | undefined;
    try {
      session = this.sessions.loadLocal(sid, r, started);
    } catch (e) {
      return void process.nextTick(callback, e);
    }
    if (session !== undefined) return void process.nextTick(callback, null, session);
    settle(this.sessions.load(sid, r, started), callback);
  }

  /** Stores the session (primary, then its backup); rejects with a StorageUnavailableError when nothing can. */
  set(sid: string, session: SessionData): Promise<void>;
  set(sid: string, session: SessionData, callback: Callback<void>): void;
  set(sid: string, session: SessionData, callback?: Callback<void>): Promise<void> | void {
    return answer(this, this.saveSession, sid, session, callback);
  }

  /** Refreshes an unchanged session's expiry (stores it when the cookie alone changed). */
  touch(sid: string, session: SessionData): Promise<void>;
  touch(sid: string, session: SessionData, callback: Callback<void>): void;
  touch(sid: string, session: SessionData, callback?: Callback<void>): Promise<void> | void {
    return answer(this, this.refreshSession, sid, session, callback);
  }

  /** Deletes every copy of the session (primary, backup, validity records). */
  destroy(sid: string): Promise<void>;
  destroy(sid: string, callback: Callback<void>): void;
  destroy(sid: string, callback?: Callback<void>): Promise<void> | void {
    return answer(this, this.removeSession, sid, undefined, callback);
  }

  /** indexBy: ids of the live sessions whose indexBy gives `value` (each one loaded and checked). */
  idsOf(value: string | number, callback?: Callback<string[]>): Promise<string[]> {
    return withCallback(
      this.requireIndex().then((i) => i.idsOf(value)),
      callback,
    );
  }

  /** indexBy: destroys every live session whose indexBy gives `value` ("log out everywhere"); resolves with how many. */
  destroyAllOf(value: string | number, callback?: Callback<number>): Promise<number> {
    return withCallback(
      this.requireIndex().then((i) => i.destroyAllOf(value)),
      callback,
    );
  }

  /** Every live session, id -> session as `get` returns it (as express-session's MemoryStore). Walks every node. */
  all(callback?: Callback<Record<string, SessionData>>): Promise<Record<string, SessionData>> {
    const out: Record<string, SessionData> = Object.create(null);
    return withCallback(
      this.eachSession((id, session) => {
        out[id] = session;
      }).then(() => out),
      callback,
    );
  }

  /** How many live sessions there are (streamed: keys are never all in memory). */
  length(callback?: Callback<number>): Promise<number> {
    let n = 0;
    return withCallback(
      this.eachSession(() => {
        n++;
      }).then(() => n),
      callback,
    );
  }

  /** The ids of every live session (connect-redis's `ids`). */
  ids(callback?: Callback<string[]>): Promise<string[]> {
    const out: string[] = [];
    return withCallback(
      this.eachSession((id) => {
        out.push(id);
      }).then(() => out),
      callback,
    );
  }

  /** Deletes every copy of this store's sessions on every node (and sticky's local ones); nothing else. */
  clear(callback?: Callback<void>): Promise<void> {
    // Queued backups and a running node repair would otherwise write copies back after the walk deleted them.
    const cleared = Promise.resolve()
      .then(() => this.assertOpen())
      .then(() => this.backups.flush())
      .then(() => this.ready())
      .then(() => this.lister.clear());
    return withCallback(
      cleared.then((n) => {
        this.logger.info(`clear: ${n} items deleted`);
      }),
      callback,
    );
  }

  /** @internal express-session builds req.session here (see SessionService.createSession). */
  createSession(req: any, sess: SessionData): any {
    return this.sessions.createSession(this, req, sess);
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
   * names its node. New nodes take new sessions; a removed node is drained (non-sticky): read, never written, until
   * the sessions it held have their copies on the remaining nodes (sticky: the session's memcached copy is rewritten
   * on another node by its next request). Every instance must be given the same list.
   */
  setMemcachedNodes(memcachedNodes: string, failoverNodes?: string): void {
    if (this.closed) throw new StoreClosedError('express-msm: setMemcachedNodes on a closed store');
    if (this.discovery)
      throw ConfigError.saying(
        `express-msm: the node list comes from autoDiscovery (${this.discovery.endpoint}); setMemcachedNodes is for memcachedNodes`,
      );
    const next = resolveNodes(memcachedNodes, failoverNodes);
    if (next.encodeNodeId !== this.config.encodeNodeId) {
      // Ids without a node suffix are placed by a hash over the nodes; ids with one name their node. Not mixable.
      throw new ConfigError(
        'memcachedNodes',
        memcachedNodes,
        this.config.encodeNodeId
          ? 'the store was started with node ids ("n1:host:port,..."): give every node an id'
          : 'the store was started with a single "host:port" (session ids name no node): it can only be replaced by one "host:port"',
      );
    }
    this.applyNodes(next);
  }

  /** Probes every node now (normally probes run in the background when the 1 s cache entry is stale). */
  async ready(): Promise<void> {
    await this.discovery?.waitForNodes(Math.max(this.config.operationTimeout, 5000));
    await this.nodes.refresh();
    await this.mode.idle?.();
  }

  /**
   * Which memcached nodes answer now, for readiness probes: every node is probed (each bounded by operationTimeout),
   * so a node that died is reported even before a request fails on it. `ok`: at least one node answers, so sessions
   * can be loaded and saved (with failover); false means loads and saves answer with a StorageUnavailableError (503).
   * `nodes[id].error`: why a node does not answer. With autoDiscovery before its first answer: no nodes, ok false.
   *
   * @example app.get('/ready', async (_req, res) => { const h = await store.health(); res.status(h.ok ? 200 : 503).json(h); });
   */
  async health(): Promise<StoreHealth> {
    this.assertOpen();
    return this.nodes.health();
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

  // --- for memcachedSession() ---------------------------------------------------------------------------------

  /** @internal Does this session need a save before the response? (SessionService.needsSave) */
  needsSave(session: SessionData, sessionId: string): boolean {
    return this.sessions.needsSave(session, sessionId);
  }

  /**
   * @internal memcachedSession()'s end of a request whose loaded session needsSave found unchanged: the refresh
   * express-session would ask for (its touch), without its two hashes of the session to decide so. false: needsSave
   * did not find this session loaded and unchanged; undefined: done; a promise: done when it settles.
   */
  touchUnchanged(session: SessionData, sessionId: string): Promise<void> | undefined | false {
    return this.sessions.pendingUnchanged(session, sessionId) && this.refreshSession(sessionId, session);
  }

  /** @internal Applies a pending id change now, so the app sees the new req.sessionID. Idempotent. */
  applyPendingIdChange(req: any): void {
    this.sessions.applyPendingIdChange(req);
  }

  /** @internal What is stored under `sid` for this plain session. */
  encodeItem(sid: SessionId, stored: StoredSession): Buffer {
    return this.sessions.encodeItem(sid, stored);
  }

  /** @internal Plain data for the transcoder. */
  toStored(session: SessionData): StoredSession {
    return this.sessions.toStored(session);
  }

  /**
   * @internal autoDiscovery: a promise when `id` names a node not discovered here yet (another instance polled first
   * and put a session on it): a poll, so the session is found rather than taken for a plain id. Undefined otherwise.
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

  // --- internals ---------------------------------------------------------------------------------------------

  /** Operations after close() fail at once (a closed store has no connections to wait on). */
  private assertOpen(): void {
    if (this.closed) throw new StoreClosedError();
  }

  private async requireIndex(): Promise<UserIndex> {
    this.assertOpen();
    if (!this.index)
      throw ConfigError.saying(
        'express-msm: idsOf/destroyAllOf need the indexBy option, e.g. indexBy: (s) => s.userId',
      );
    return this.index;
  }

  /** `known`: what a callback-first get found already. */
  private async loadSession(
    raw: string,
    started = performance.now(),
    known?: Promise<unknown>,
  ): Promise<SessionData | null> {
    this.assertOpen();
    known ??= typeof raw === 'string' ? this.whenNodeKnown(raw) : undefined;
    if (known) await known;
    return this.sessions.load(raw, this.sessions.resolve(raw), started);
  }

  /** autoDiscovery before its first answer: wait for it (up to operationTimeout), or fail saying why. */
  private nodesDiscovered(): Promise<void> | undefined {
    return this.discovery && !this.nodes.ids.length
      ? this.discovery.waitForNodes(this.config.operationTimeout)
      : undefined;
  }

  /** Runs `op` at once when the store is open and has nodes; after the first discovery answer otherwise. */
  private whenUsable(
    op: (raw: string, session: SessionData) => Promise<void> | undefined,
    raw: string,
    session: SessionData,
  ): Promise<void> | undefined {
    this.assertOpen();
    const discovered = this.nodesDiscovered();
    // No closure on the way: this runs for every save and touch.
    return discovered
      ? discovered.then(() => op.call(this.sessions, raw, session))
      : op.call(this.sessions, raw, session);
  }

  /** undefined: saved synchronously (sticky with asynchronous backups). Throws on what cannot be stored. */
  private saveSession(raw: string, session: SessionData): Promise<void> | undefined {
    return this.whenUsable(this.sessions.save, raw, session);
  }

  /** undefined: done synchronously (sticky, nothing due in memcached). */
  private refreshSession(raw: string, session: SessionData): Promise<void> | undefined {
    return this.whenUsable(this.sessions.touch, raw, session);
  }

  private async removeSession(raw: string): Promise<void> {
    this.assertOpen();
    const discovered = this.nodesDiscovered();
    if (discovered) await discovered;
    await this.sessions.destroy(raw);
  }

  /** Every live session as `get` would return it (without a record: a listing is not a request). */
  private async eachSession(each: (id: string, session: SessionData) => void): Promise<void> {
    this.assertOpen();
    return this.lister.forEach((id, bytes, lastAccess) => {
      const session = this.sessions.listed(id, bytes, lastAccess);
      if (session) each(id, session);
    });
  }

  private applyNodes(next: Pick<ResolvedConfig, 'nodes' | 'encodeNodeId' | 'failoverNodeIds'>): void {
    if (this.closed) return;
    const before = this.nodes.ids;
    const { added, removed } = this.nodes.update(next.nodes, next.failoverNodeIds);
    Object.assign(this.config, next);
    if (!added.length && !removed.length) return;
    this.logger.info(
      `memcached nodes changed: ${this.nodes.ids.join(', ')}${added.length ? `; added ${added.join(', ')}` : ''}${removed.length ? `; removed ${removed.join(', ')}` : ''}`,
    );
    this.mode.nodesChanged?.(before);
  }
}
