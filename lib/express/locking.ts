// msm's session locking for non-sticky mode: which requests lock (none, all, auto, uriPattern:<regex>), the lock
// itself (`add lock:<prefix><id>` holding a per-request token, with backoff) and an in-process mutex per session id.
// Knows nodes and keys; knows nothing of session bytes or HTTP.
import { randomBytes } from 'crypto';
import { LRUCache } from 'lru-cache';
import type { LockingStrategy } from './option-parsers';
import type { KeyFormat } from '../memcached/keys';
import type { Logger } from '../core/logger';
import { hashId } from '../core/logger';
import type { NodeSet } from '../memcached/nodes';
import type { SessionId } from '../memcached/session-id';
import type { Statistics } from '../core/stats';

/** msm LockingStrategy: first retry after 10 ms, doubling up to 500 ms. */
export const LOCK_BACKOFF_START_MS = 10;
export const LOCK_BACKOFF_MAX_MS = 500;
/** msm ReadOnlyRequestsCache sizes. */
export const READ_ONLY_PATTERNS_MAX = 1000;
export const BLACKLISTED_PATTERNS_MAX = 50_000;

export type { LockingStrategy } from './option-parsers';

/** memcachedSession()'s locking settings, as resolved from its options (`mw.locking`). */
export interface LockingConfig {
  /** Which requests lock (from lockingMode). */
  strategy: LockingStrategy;
  /** s, TTL of the lock item. */
  lockExpiration: number;
  /** ms, the longest a request waits for the lock. */
  lockWaitTimeout: number;
  /** What a request does when the lock was not had in time. */
  lockTimeoutAction: 'proceed' | 'reject';
  /** Full match against path + query; matching requests get no session. */
  requestUriIgnorePattern: RegExp | undefined;
}

/**
 * msm ReadOnlyRequestsCache: request patterns (method + path) seen not to modify the session, and a blacklist of
 * patterns seen modifying it. A blacklisted pattern is never read-only again (until evicted from the 50 000-entry LRU).
 */
export class ReadOnlyRequests {
  private readonly readOnly = new LRUCache<string, true>({ max: READ_ONLY_PATTERNS_MAX });
  private readonly blacklist = new LRUCache<string, true>({ max: BLACKLISTED_PATTERNS_MAX });

  isReadOnly(pattern: string): boolean {
    return this.readOnly.has(pattern);
  }

  isBlacklisted(pattern: string): boolean {
    return this.blacklist.has(pattern);
  }

  /** A request on `pattern` left the session unchanged. true when the pattern became read-only now. */
  readOnlyRequest(pattern: string): boolean {
    if (this.blacklist.has(pattern)) return false;
    if (this.readOnly.get(pattern)) return false;
    this.readOnly.set(pattern, true);
    return true;
  }

  /** A request on `pattern` modified the session. true when the pattern was newly blacklisted. */
  modifyingRequest(pattern: string): boolean {
    this.readOnly.delete(pattern);
    if (this.blacklist.get(pattern)) return false;
    this.blacklist.set(pattern, true);
    return true;
  }

  get size(): { readOnly: number; blacklisted: number } {
    return { readOnly: this.readOnly.size, blacklisted: this.blacklist.size };
  }
}

/** Which requests lock. `url` is path + query, `pattern` is `METHOD path` (no query). */
export class LockDecider {
  readonly readOnly = new ReadOnlyRequests();

  constructor(
    readonly strategy: LockingStrategy,
    private readonly stats: Statistics,
  ) {}

  get learns(): boolean {
    return this.strategy.kind === 'auto';
  }

  shouldLock(url: string, pattern: string): boolean {
    switch (this.strategy.kind) {
      case 'none':
        return false;
      case 'all':
        return true;
      case 'uriPattern':
        return this.strategy.pattern.test(url);
      case 'auto':
        if (this.readOnly.isReadOnly(pattern)) {
          this.stats.readOnlyRequestsUnlocked++;
          return false;
        }
        return true;
    }
  }

  /** auto: what a finished request with a loaded session did to it. */
  observe(pattern: string, modified: boolean): void {
    if (!this.learns) return;
    if (modified) {
      if (this.readOnly.modifyingRequest(pattern)) this.stats.readOnlyPatternsBlacklisted++;
    } else if (this.readOnly.readOnlyRequest(pattern)) this.stats.readOnlyPatternsLearnt++;
  }
}

interface Waiter {
  resolve: (owned: boolean) => void;
  timer: NodeJS.Timeout;
}

/**
 * One holder per session id inside this process; the others wait in arrival order (msm #237: requests in one JVM
 * shared the session and the lock without coordination). An entry exists only while the id is held.
 */
export class SessionMutex {
  private readonly held = new Map<string, Waiter[]>();

  /** Resolves true once the caller holds `id`, false when `timeoutMs` passed first. */
  acquire(id: string, timeoutMs: number): Promise<boolean> {
    const queue = this.held.get(id);
    if (!queue) {
      this.held.set(id, []);
      return Promise.resolve(true);
    }
    if (timeoutMs <= 0) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        resolve,
        timer: setTimeout(() => {
          const i = queue.indexOf(waiter);
          if (i >= 0) queue.splice(i, 1);
          resolve(false);
        }, timeoutMs),
      };
      queue.push(waiter);
    });
  }

  /** Hands `id` to the next waiter, or frees it. Only the holder calls this. */
  release(id: string): void {
    const queue = this.held.get(id);
    if (!queue) return;
    const next = queue.shift();
    if (next) {
      clearTimeout(next.timer);
      next.resolve(true);
    } else this.held.delete(id);
  }

  isHeld(id: string): boolean {
    return this.held.has(id);
  }

  /** Ids currently held (tests, diagnostics). */
  get size(): number {
    return this.held.size;
  }
}

/**
 * - `acquired`: we hold the memcached lock (and the in-process mutex);
 * - `timeout`: lockWaitTimeout passed while waiting (in-process queue or memcached lock);
 * - `error`: the session's node is down or failed the `add`: the session is used without the memcached lock.
 */
export type LockOutcome = 'acquired' | 'timeout' | 'error';

/** A lock held (or not) for one request. */
export interface LockHandle {
  /** Whether the lock was had, and how. */
  readonly outcome: LockOutcome;
  /** The `lock:` item's key in memcached. */
  readonly key: string;
  /** ms spent waiting (in-process queue plus memcached retries). */
  readonly waitedMs: number;
  /** Deletes the memcached lock if it is still ours (CAS), then frees the in-process mutex. Idempotent. */
  release(): Promise<void>;
}

export interface SessionLocksOptions {
  nodes: NodeSet;
  keys: KeyFormat;
  stats: Statistics;
  logger: Logger;
  /** ms: the longest a request waits for the lock; its own deadline, so that a burst on one session serialises
   * (msm shares operationTimeout, 1 s, which a few slow requests outlast). */
  lockWaitTimeout: number;
  /** s */
  lockExpiration: number;
  /** What the caller does on a timeout, named in the warning. */
  lockTimeoutAction: 'proceed' | 'reject';
  /**
   * Where the session lives now: its node, or while that node is down the node it is relocated to, with the id it
   * has there. Requests with the old and the relocated id then take the same lock.
   */
  lockTarget(sid: SessionId): { node: string; id: string };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class SessionLocks {
  readonly mutex = new SessionMutex();

  constructor(private readonly opts: SessionLocksOptions) {}

  /**
   * Queues on the in-process mutex, then `add`s `lock:<prefix><id>` with a random token on the session's node,
   * retrying with backoff (10 ms doubling to 500 ms) until lockWaitTimeout has passed since `startedAt`.
   * Never throws: a timeout or node failure is an outcome (the caller decides: proceed or 503).
   */
  async lock(sid: SessionId, startedAt = Date.now()): Promise<LockHandle> {
    const { nodes, keys, stats, logger, lockWaitTimeout, lockExpiration } = this.opts;
    const deadline = startedAt + lockWaitTimeout;
    const then = this.opts.lockTimeoutAction === 'reject' ? 'answering 503' : 'proceeding without the lock';
    let key = keys.lock(sid.id);
    const finish = (outcome: LockOutcome, ownsMutex: boolean, cas?: Buffer, node?: string): LockHandle => {
      const waitedMs = Date.now() - startedAt;
      stats.lockWaitMsTotal += waitedMs;
      stats.time('lockWait', waitedMs);
      if (outcome === 'acquired') stats.locksAcquired++;
      else if (outcome === 'timeout') stats.lockTimeouts++;
      else stats.lockErrors++;
      return this.handle(sid.random, key, outcome, waitedMs, ownsMutex, cas, node);
    };

    // The random part survives relocation and takeover: one queue for every id the session has had.
    const mutexKey = sid.random;
    if (!(await this.mutex.acquire(mutexKey, deadline - Date.now()))) {
      logger.warn(
        `session ${hashId(sid.id)}: lock wait timed out after ${lockWaitTimeout} ms (queued in this process), ${then}`,
      );
      return finish('timeout', false);
    }
    const target = this.opts.lockTarget(sid);
    const node = target.node;
    key = keys.lock(target.id);
    if (!nodes.has(node) || !nodes.isAvailable(node)) {
      logger.warn(`session ${hashId(sid.id)}: node ${node} is unavailable, continuing without the lock`);
      return finish('error', true);
    }
    const client = nodes.client(node);
    const token = Buffer.from(randomBytes(16).toString('hex'));
    let delay = LOCK_BACKOFF_START_MS;
    for (;;) {
      const r = await client.addWithCas(key, token, lockExpiration);
      if (!r.ok) {
        nodes.markFailed(node, r.error);
        logger.warn(
          `session ${hashId(sid.id)}: could not lock on ${node} (${r.error.message}), continuing without the lock`,
        );
        return finish('error', true);
      }
      if (r.value !== null) return finish('acquired', true, r.value, node);
      const left = deadline - Date.now();
      if (left <= 0) {
        logger.warn(
          `session ${hashId(sid.id)}: lock wait timed out on ${node} after ${lockWaitTimeout} ms (held by another request), ${then}`,
        );
        return finish('timeout', true);
      }
      await sleep(Math.min(delay, left));
      delay = Math.min(delay * 2, LOCK_BACKOFF_MAX_MS);
    }
  }

  private handle(
    id: string,
    key: string,
    outcome: LockOutcome,
    waitedMs: number,
    ownsMutex: boolean,
    cas: Buffer | undefined,
    node: string | undefined,
  ): LockHandle {
    let releasing: Promise<void> | undefined;
    const release = (): Promise<void> => {
      if (releasing) return releasing;
      releasing = (async () => {
        try {
          if (cas !== undefined && node) await this.releaseMemcachedLock(id, key, node, cas);
        } finally {
          if (ownsMutex) this.mutex.release(id);
        }
      })();
      return releasing;
    };
    return { outcome, key, waitedMs, release };
  }

  /**
   * Deletes the lock in one operation, only while it is still ours: delete with the CAS our `add` returned. A lock
   * that expired and was taken by another request carries another CAS and is left alone.
   */
  private async releaseMemcachedLock(id: string, key: string, node: string, cas: Buffer): Promise<void> {
    const { nodes, stats, logger } = this.opts;
    const d = await nodes.client(node).delete(key, cas);
    if (!d.ok) {
      // The lock expires on its own after lockExpiration.
      logger.warn(`session ${hashId(id)}: could not release the lock on ${node}: ${d.error.message}`);
      return;
    }
    if (!d.value) {
      stats.lockReleaseSkipped++;
      logger.warn(`session ${hashId(id)}: the lock had expired (held longer than lockExpiration) and was not deleted`);
    }
  }
}
