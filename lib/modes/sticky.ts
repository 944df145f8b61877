// msm's sticky mode: the balancer sends a session back to the instance whose route is in its id, so that instance's
// local lru-cache is the primary copy and memcached holds a backup (only `<prefix><id>` on the node in the id; no
// validity, no bak:). Memcached is read only when the id is not held locally: a route takeover (another instance
// created it), an eviction from the local bounds, or a restart.
//
// A takeover leaves a forwarding marker under the old key (as non-sticky relocation does at `bak:`), so the old id
// keeps working at every instance. When the framework keeps the cookie it was given (no req.res, Fastify), the old
// id stays in use for good and any instance may get it: loads then read memcached every time (see loadShared).
import { ConfigError, StorageUnavailableError } from '../core/errors';
import { LRUCache } from 'lru-cache';
import type { LoadResult, ModeContext, SessionMode } from './mode';
import { itemUnderId } from './mode';
import { SessionRecord } from './session-record';
import { decodeOrDiscard, followMarkers, foreignItem, noteRelocated, outage, relocationOf } from './copies';
import { SingleFlight } from '../core/single-flight';
import type { SessionId } from '../memcached/session-id';
import type { StoredSession } from '../transcoders/transcoder';
import { encodeMoved, isMsmItem, maxInactiveOfCookie, movedTo } from '../transcoders/transcoder';
import { toMemcachedExpiration } from '../memcached/validity';
import { hashId } from '../core/logger';
import type { OpResult } from '../memcached/node-client';

/** s; msm adds processExpiresFrequency * backgroundProcessorDelay (6 * 10 s) to the sticky memcached TTL. */
export const STICKY_TTL_MARGIN = 60;
/** ms between sweeps of expired local sessions (msm's background process; each sweep also deletes memcached copies). */
const PURGE_INTERVAL_MS = 60_000;

/** What is known about a session's memcached copy. Shared by every version of one id's local entry. */
interface MemcachedCopy {
  /** Bytes last written to memcached (undefined: not written by this instance, e.g. loaded). */
  written: Buffer | undefined;
  /** ms epoch until which the copy lives as far as we know; 0 = unknown (refresh at the next save/touch). */
  expiresAt: number;
}

interface LocalEntry {
  /** Encoded session: every request decodes its own copy, so concurrent requests share no mutable state. */
  readonly bytes: Buffer;
  /** s */
  readonly maxInactive: number;
  /** Memcached node holding the backup. */
  readonly node: string;
  readonly copy: MemcachedCopy;
  /** ms of the last save or touch: the cookie's expiry counts from here (the lru-cache TTL is whole seconds). */
  accessedAt: number;
}

/**
 * Bytes the local store keeps, in memory of their own. Small buffers (under 4 KB) are slices of Node's shared 8 KB
 * pool, and a slice held keeps its whole pool alive: sessions kept for minutes, rewritten in any order, held 2.8 times
 * their size (20,000 sessions of 1.3 KB: 72 MB against 26 MB), beyond what localMaxBytes counts.
 */
export function ownMemory(bytes: Buffer): Buffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  const own = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(own);
  return own;
}

/** A memcached load (reload or takeover), shared by concurrent requests for the same id: bytes, never objects. */
interface Loaded {
  id: string;
  bytes: Buffer;
  newId?: string;
  /** ms of the last save or touch, when known (local hits). */
  accessedAt?: number;
}

/** A session copy found in memcached: under `sid` on `node` (after following markers). */
interface Found {
  sid: SessionId;
  node: string;
  bytes: Buffer;
  /** s, from the stored cookie (decoded once, by fetch); null: expired. */
  maxInactive: number | null;
}

/** Memcached TTL of the backup: maxInactive plus a margin (msm: 60 s; at most maxInactive for short sessions). */
export function stickyMemcachedTtl(maxInactive: number): number {
  return maxInactive + stickyMargin(maxInactive);
}

function stickyMargin(maxInactive: number): number {
  return Math.max(1, Math.min(STICKY_TTL_MARGIN, Math.ceil(maxInactive)));
}

export class StickyMode implements SessionMode {
  /** The local primary store (exposed for tests and diagnostics). */
  readonly local: LRUCache<string, LocalEntry>;
  private readonly route: string;
  /** Memcached loads in flight, by the id requested: concurrent requests for one id share one load (one takeover). */
  private readonly inflight = new SingleFlight<Loaded | null>();
  private readonly purgeTimer: NodeJS.Timeout;
  /** loadLocal's options and status, reused: lru-cache fills nine fields of a status object on every load. */
  private readonly lookup: LRUCache.GetOptions<string, LocalEntry, unknown> = { status: {} };
  /** Alias id -> when its marker was last refreshed here (ms). */
  private readonly aliasesRefreshed = new LRUCache<string, number>({ max: 100_000 });

  constructor(private readonly ctx: ModeContext) {
    if (!ctx.cfg.route) throw ConfigError.saying('express-msm: sticky mode needs a route');
    this.route = ctx.cfg.route;
    this.local = new LRUCache<string, LocalEntry>({
      max: ctx.cfg.localMaxSessions,
      maxSize: ctx.cfg.localMaxBytes,
      sizeCalculation: (e) => Math.max(1, e.bytes.length),
      dispose: (e, id, reason) => this.onDispose(e, id, reason),
    });
    this.purgeTimer = setInterval(() => this.local.purgeStale(), PURGE_INTERVAL_MS);
    this.purgeTimer.unref?.();
  }

  newId(): string {
    return this.ctx.idFormat.create(this.ctx.nodes.pickForNewSession(), this.route);
  }

  /** A session held here whose node is up: answered at once, no promise. */
  loadLocal(sid: SessionId): LoadResult | null | undefined {
    // Fixed cookies: every load reads memcached (another instance may have written since).
    if (sid.route !== this.route || this.ctx.moves.fixedCookies) return undefined;
    const status = this.lookup.status!;
    status.get = undefined;
    const e = this.local.get(sid.id, this.lookup);
    if (e) {
      if (!this.ctx.nodes.isAvailable(e.node)) return undefined;
      this.ctx.stats.localHits++;
      return this.result(sid, { id: sid.id, bytes: e.bytes, accessedAt: e.accessedAt });
    }
    if (status.get === 'stale') {
      // Inactive longer than maxInactive: the dispose handler deleted the memcached copy as well.
      this.ctx.stats.requestsWithoutSession++;
      return null;
    }
    return undefined;
  }

  async load(sid: SessionId): Promise<LoadResult | null> {
    if (this.ctx.moves.fixedCookies) return this.loadShared(sid);
    const local = this.loadLocal(sid);
    if (local !== undefined) return local;
    if (sid.route === this.route) {
      const e = this.local.peek(sid.id);
      if (e) {
        // Held here, but its memcached node is down: move the backup first.
        this.ctx.stats.localHits++;
        const moved = await this.shared(sid.id, () => this.relocate(sid, e));
        return this.result(sid, moved ?? { id: sid.id, bytes: e.bytes, accessedAt: e.accessedAt });
      }
      this.ctx.stats.localMisses++;
    }
    const loaded = await this.shared(sid.id, async () => {
      const found = await this.locate(sid);
      if (!found) return null;
      return found.sid.route === this.route ? this.reload(sid, found) : this.takeover(sid, found);
    });
    return loaded ? this.result(sid, loaded) : null;
  }

  /**
   * The framework keeps the cookie it was given, so an id may reach any instance, in any order: the local copy
   * may be older than what another instance wrote. Memcached is read on every load (following markers), the
   * session is served under the id it lives at without a takeover, and saves are awaited (see save).
   */
  private async loadShared(sid: SessionId): Promise<LoadResult | null> {
    const loaded = await this.shared(sid.id, async (): Promise<Loaded | null> => {
      let found: Found | null;
      try {
        found = await this.locate(sid);
      } catch (e) {
        // memcached is out, but a local copy can still be served (as when its node alone is down).
        if (!(e instanceof StorageUnavailableError) || !this.local.peek(sid.id)) throw e;
        found = null;
      }
      const id = found?.sid ?? sid;
      const held = this.local.peek(id.id);
      const newId = id.id !== sid.id ? id.id : undefined;
      if (!found) {
        // Missing or unreadable in memcached: the local copy, if any, moved off a dead node first.
        if (!held) return null;
        if (!this.ctx.nodes.isAvailable(held.node)) {
          const moved = await this.relocate(id, held);
          if (moved) return { ...moved, id: sid.id };
        }
        return { id: sid.id, bytes: held.bytes, newId, accessedAt: held.accessedAt };
      }
      const { maxInactive } = found;
      if (maxInactive === null) return this.expired(found.sid, found.node);
      // Our own last write: its access time is known. Another instance's: sticky copies carry none.
      const ours = held?.copy.written?.equals(found.bytes) ? held : undefined;
      const bytes = ours?.copy.written ?? ownMemory(found.bytes);
      const copy = ours?.copy ?? { written: bytes, expiresAt: 0 };
      this.local.set(
        id.id,
        { bytes, maxInactive, node: found.node, copy, accessedAt: ours?.accessedAt ?? Date.now() },
        { ttl: maxInactive * 1000 },
      );
      return { id: sid.id, bytes, newId, accessedAt: ours?.accessedAt };
    });
    return loaded ? this.result(sid, loaded) : null;
  }

  /**
   * The copy for `sid`, following takeover markers; for an id whose node is down, the id relocation gives it on
   * the next available node (every instance computes the same one).
   */
  private async locate(sid: SessionId): Promise<Found | null> {
    const found = await followMarkers(
      this.ctx,
      sid,
      (at) => this.read(at),
      (f) => f.bytes,
    );
    return found?.copy ?? null;
  }

  /** The copy under exactly `sid` (possibly a marker); under its relocated id when its node is down. */
  private async read(sid: SessionId): Promise<Found | null> {
    const { nodes, idFormat, cfg } = this.ctx;
    let id = sid;
    let node = nodes.nodeOf(id);
    if (!nodes.isAvailable(node) && cfg.encodeNodeId && id.nodeId) {
      const to = relocationOf(this.ctx, id, node);
      if (to) {
        id = idFormat.parse(to.id)!;
        node = to.node;
      }
    }
    const copy = await this.fetch(id, node);
    return copy && { sid: id, node, ...copy };
  }

  /** One memcached load/move per id at a time; concurrent requests wait for it and then decode their own copy. */
  private shared(id: string, run: () => Promise<Loaded | null>): Promise<Loaded | null> {
    return this.inflight.run(id, run);
  }

  save(
    sid: SessionId,
    bytes: Buffer,
    maxInactive: number,
    record: SessionRecord | undefined,
  ): Promise<void> | undefined {
    const prev = this.local.peek(sid.id);
    if (record?.unchanged(sid.id, bytes)) {
      this.ctx.stats.requestsWithoutSessionModification++;
      return this.refresh(sid, bytes, maxInactive);
    }
    const node = prev?.node ?? this.ctx.nodes.nodeOf(sid);
    const copy = prev?.copy ?? { written: undefined, expiresAt: 0 };
    // The same bytes as the memcached copy: that buffer is kept (no copy of its own made twice).
    const written = copy.written?.equals(bytes) ? copy.written : undefined;
    const e: LocalEntry = { bytes: written ?? ownMemory(bytes), maxInactive, node, copy, accessedAt: Date.now() };
    this.local.set(sid.id, e, { ttl: maxInactive * 1000 });
    record?.wrote(sid.id, e.bytes);
    if (written && !this.refreshDue(e)) return undefined;
    // Fixed cookies: the next request may reach another instance, which reads memcached; it must find this write.
    if (this.ctx.moves.fixedCookies) return this.backup(sid.id, e);
    if (this.ctx.backups.async) return this.backupSoon(sid.id, e);
    return this.ctx.backups.run(() => this.backup(sid.id, e));
  }

  /** The alias's key holds the marker to `target`: its TTL is extended (rewritten if gone) once per margin/2. */
  async keepAlias(alias: SessionId, target: SessionId, maxInactive: number): Promise<void> {
    const { nodes, keys } = this.ctx;
    const now = Date.now();
    if (now - (this.aliasesRefreshed.get(alias.id) ?? 0) < stickyMargin(maxInactive) * 500) return;
    const node = nodes.nodeOf(alias);
    if (!nodes.isAvailable(node)) return;
    this.aliasesRefreshed.set(alias.id, now);
    const ttl = toMemcachedExpiration(stickyMemcachedTtl(maxInactive));
    await this.ctx.backups.run(async () => {
      const client = nodes.client(node);
      const t = await client.touch(keys.session(alias.id), ttl);
      const r = t.ok && !t.value ? await client.set(keys.session(alias.id), encodeMoved(target.id), ttl) : t;
      if (!r.ok) {
        this.aliasesRefreshed.delete(alias.id);
        nodes.markFailed(node, r.error);
        this.backupFailed(alias.id, node, r.error);
      }
    });
  }

  touch(
    sid: SessionId,
    bytesOf: () => Buffer,
    maxInactive: number,
    record: SessionRecord | undefined,
  ): Promise<void> | undefined {
    return this.refresh(sid, record?.bytesFor(sid.id) ?? bytesOf(), maxInactive);
  }

  async destroy(sid: SessionId): Promise<void> {
    const { nodes, keys, stats } = this.ctx;
    const e = this.local.peek(sid.id);
    this.local.delete(sid.id);
    stats.sessionsDestroyed++;
    const node = e?.node ?? nodes.nodeOf(sid);
    if (!nodes.isAvailable(node)) return; // its TTL removes the copy
    const r = await nodes.client(node).delete(keys.session(sid.id));
    if (!r.ok) nodes.markFailed(node, r.error);
  }

  async peek(sid: SessionId, node: string): Promise<{ bytes: Buffer } | null> {
    // Local sessions are listed from the local store (localSessions); their memcached copy is their backup.
    if (this.ctx.nodes.nodeOf(sid) !== node || this.local.has(sid.id)) return null;
    const r = await this.ctx.nodes.client(node).get(this.ctx.keys.session(sid.id), true);
    if (!r.ok) throw r.error;
    // A takeover's marker is no session.
    return r.value
      && movedTo(r.value) === undefined
      && this.maxInactiveOf(this.ctx.transcoder.decode(r.value, sid)) !== null
      ? { bytes: r.value }
      : null;
  }

  *localSessions(): Iterable<[id: string, bytes: Buffer, accessedAt: number]> {
    // entries() skips expired entries; it does not change recency.
    for (const [id, e] of this.local.entries()) yield [id, e.bytes, e.accessedAt];
  }

  clearLocal(): void {
    this.local.clear();
  }

  async close(): Promise<void> {
    clearInterval(this.purgeTimer);
    this.inflight.clear();
    this.local.clear();
  }

  // --- internals ---------------------------------------------------------------------------------------------

  private result(sid: SessionId, loaded: Loaded): LoadResult | null {
    const session = this.ctx.transcoder.decode(loaded.bytes, sid);
    if (!session) {
      this.ctx.stats.requestsWithoutSession++;
      return null;
    }
    this.ctx.stats.requestsWithSession++;
    const record = new SessionRecord(loaded.newId ?? loaded.id, loaded.bytes);
    record.accessedAt = loaded.accessedAt;
    if (loaded.newId) record.newId = loaded.newId;
    return { session, record };
  }

  /**
   * Unchanged session: the local entry gets a new TTL (its bytes are kept: a concurrent request may have changed
   * them), and the memcached copy's TTL is extended with `touch` when it would otherwise lapse before the local
   * session does. No write per request.
   */
  private refresh(sid: SessionId, bytes: Buffer, maxInactive: number): Promise<void> | undefined {
    const prev = this.local.peek(sid.id);
    const now = Date.now();
    const e: LocalEntry =
      prev && prev.maxInactive === maxInactive
        ? prev
        : {
            bytes: prev?.bytes ?? ownMemory(bytes),
            maxInactive,
            node: prev?.node ?? this.ctx.nodes.nodeOf(sid),
            copy: prev?.copy ?? { written: undefined, expiresAt: 0 },
            accessedAt: now,
          };
    e.accessedAt = now;
    this.local.set(sid.id, e, { ttl: maxInactive * 1000 });
    if (!this.refreshDue(e)) return undefined;
    // Claim the refresh now so concurrent requests do not send one each; a failure resets it.
    const before = e.copy.expiresAt;
    e.copy.expiresAt = Date.now() + stickyMemcachedTtl(maxInactive) * 1000;
    return this.ctx.backups.run(() => this.touchCopy(sid.id, e, before));
  }

  /**
   * Due when the copy would expire within maxInactive + margin/2: then it always outlives the local session (whose
   * TTL restarts at every request), and an active session is touched at most once per margin/2.
   */
  private refreshDue(e: LocalEntry): boolean {
    const keep = (e.maxInactive + stickyMargin(e.maxInactive) / 2) * 1000;
    return e.copy.expiresAt - Date.now() < keep;
  }

  private async touchCopy(id: string, e: LocalEntry, before: number): Promise<void> {
    const { nodes, keys, stats } = this.ctx;
    if (!nodes.isAvailable(e.node)) {
      e.copy.expiresAt = before;
      return this.backupFailed(id, e.node, new Error(`node ${e.node} is unavailable`));
    }
    const ttl = stickyMemcachedTtl(e.maxInactive);
    const started = Date.now();
    const r = await nodes.client(e.node).touch(keys.session(id), toMemcachedExpiration(ttl));
    if (!r.ok) {
      e.copy.expiresAt = before;
      nodes.markFailed(e.node, r.error);
      return this.backupFailed(id, e.node, r.error);
    }
    nodes.markOk(e.node);
    if (r.value) {
      e.copy.expiresAt = started + ttl * 1000;
      return;
    }
    // Gone (memcached evicted it, restarted, or was down when the session changed): write it again.
    stats.sessionsRewrittenAfterMiss++;
    return this.backup(id, this.local.peek(id) ?? e);
  }

  /** Writes the memcached copy. A failure is counted and logged, never thrown to the request. */
  private async backup(id: string, e: LocalEntry): Promise<void> {
    const { nodes, keys } = this.ctx;
    // The next request relocates the session (it is held locally) to an available node.
    if (!nodes.isAvailable(e.node)) return this.backupFailed(id, e.node, new Error(`node ${e.node} is unavailable`));
    const started = Date.now();
    this.backedUp(
      id,
      e,
      started,
      await nodes
        .client(e.node)
        .set(keys.session(id), e.bytes, toMemcachedExpiration(stickyMemcachedTtl(e.maxInactive))),
    );
  }

  /** backup after the response (sessionBackupAsync), with a callback rather than promises: it runs for every change. */
  private backupSoon(id: string, e: LocalEntry): undefined {
    const { nodes, keys } = this.ctx;
    this.ctx.backups.begin();
    if (!nodes.isAvailable(e.node)) return void this.backupAnswered(undefined, id, e, 0);
    nodes
      .client(e.node)
      .setInBackground(
        keys.session(id),
        e.bytes,
        toMemcachedExpiration(stickyMemcachedTtl(e.maxInactive)),
        this.backupAnswered,
        id,
        e,
      );
  }

  /** backupSoon's answer (r undefined: the node was down), one function for every backup. */
  private readonly backupAnswered = (
    r: OpResult<boolean> | undefined,
    id: string,
    e: LocalEntry,
    sentAt: number,
  ): void => {
    // Thrown here (a logger that throws), an error would reach the request or the connection's response parsing.
    try {
      if (r) this.backedUp(id, e, sentAt, r);
      else this.backupFailed(id, e.node, new Error(`node ${e.node} is unavailable`));
    } catch (err) {
      return this.ctx.backups.end(err);
    }
    this.ctx.backups.end();
  };

  /** What a backup's answer tells about the memcached copy (the write began at `started`, ms). */
  private backedUp(id: string, e: LocalEntry, started: number, r: OpResult<boolean>): void {
    const { nodes } = this.ctx;
    if (!r.ok) {
      nodes.markFailed(e.node, r.error);
      e.copy.expiresAt = 0;
      return this.backupFailed(id, e.node, r.error);
    }
    nodes.markOk(e.node);
    e.copy.written = e.bytes;
    e.copy.expiresAt = started + stickyMemcachedTtl(e.maxInactive) * 1000;
  }

  private backupFailed(id: string, node: string, error: Error): void {
    this.ctx.stats.requestsWithBackupFailure++;
    this.ctx.logger.warn(`session ${hashId(id)}: memcached backup on ${node} failed: ${error.message}`);
  }

  /**
   * The copy lives under one of our ids: a local miss (evicted, or this instance restarted), or an id that was
   * moved to one of ours. One `get` on the id's node, plus one per marker followed.
   */
  private async reload(sid: SessionId, found: Found): Promise<Loaded | null> {
    const newId = found.sid.id !== sid.id ? found.sid.id : undefined;
    const held = newId ? this.local.get(found.sid.id) : undefined;
    if (held) return { id: sid.id, bytes: held.bytes, newId, accessedAt: held.accessedAt };
    const { sid: at, node, maxInactive } = found;
    if (maxInactive === null) return this.expired(at, node);
    const bytes = ownMemory(found.bytes);
    // The copy's remaining TTL is unknown: the next save/touch refreshes it.
    this.local.set(
      at.id,
      { bytes, maxInactive, node, copy: { written: bytes, expiresAt: 0 }, accessedAt: Date.now() },
      { ttl: maxInactive * 1000 },
    );
    return { id: sid.id, bytes, newId };
  }

  /**
   * Route takeover (msm's Tomcat failover): the copy lives under another instance's route (or none). Change the
   * route to ours (and move it off this instance's failover node), write the new key, then turn the old key into a
   * marker pointing at it: requests that keep the old id (fixed cookies, stragglers) follow it at any instance.
   */
  private async takeover(requested: SessionId, found: Found): Promise<Loaded | null> {
    const { nodes, keys, idFormat, stats, logger, cfg } = this.ctx;
    const { sid, node, bytes, maxInactive } = found;
    if (maxInactive === null) return this.expired(sid, node);

    let target = node;
    if (cfg.encodeNodeId && nodes.failoverIds.includes(node)) {
      // Off this instance's failover node, deterministically: the next available primary in configured order.
      const next = nodes.nextAvailable(node);
      if (next && !nodes.failoverIds.includes(next)) target = next;
    }
    const newId = idFormat.withRoute(target === node ? sid : { ...sid, nodeId: target }, this.route);
    const item = ownMemory(itemUnderId(keys, newId, bytes));
    const copy: MemcachedCopy = { written: undefined, expiresAt: 0 };
    const e: LocalEntry = { bytes: item, maxInactive, node: target, copy, accessedAt: Date.now() };
    this.local.set(newId, e, { ttl: maxInactive * 1000 });

    const ttl = stickyMemcachedTtl(maxInactive);
    const started = Date.now();
    const w = await nodes.client(target).set(keys.session(newId), item, toMemcachedExpiration(ttl));
    if (w.ok) {
      nodes.markOk(target);
      copy.written = item;
      copy.expiresAt = started + ttl * 1000;
      // Only once the new key exists: the old one is superseded.
      const d = await nodes.client(node).set(keys.session(sid.id), encodeMoved(newId), toMemcachedExpiration(ttl));
      if (!d.ok) nodes.markFailed(node, d.error);
    } else {
      // Keep the old key; the next save or touch writes the new one (touch finds it missing and rewrites).
      nodes.markFailed(target, w.error);
      this.backupFailed(newId, target, w.error);
    }
    stats.requestsWithTomcatFailover++;
    if (target !== node) {
      stats.sessionsRelocated++;
      logger.info(
        `session ${hashId(sid.id)} taken over from route ${sid.route ?? '(none)'} and moved from ${node} to ${target}`,
      );
    } else {
      logger.info(`session ${hashId(sid.id)} taken over from route ${sid.route ?? '(none)'}`);
    }
    // The move may lead back to the requested id (a -> b -> a): then nothing changes for the cookie.
    if (newId === requested.id) return { id: requested.id, bytes: item };
    this.ctx.moves.moved(requested.id, newId);
    return { id: requested.id, bytes: item, newId };
  }

  /**
   * A local session whose memcached node is down: move its backup to the next available node under a new id (same
   * random part and route, so every instance would compute the same id). Null when no node can take it: the
   * session is then served locally under its id.
   */
  private async relocate(sid: SessionId, e: LocalEntry): Promise<Loaded | null> {
    const { nodes, keys, cfg } = this.ctx;
    if (!cfg.encodeNodeId) return null;
    const to = relocationOf(this.ctx, sid, e.node);
    if (!to) return null;
    const { node: target, id: newId } = to;
    const item = ownMemory(itemUnderId(keys, newId, e.bytes));
    const ttl = stickyMemcachedTtl(e.maxInactive);
    const started = Date.now();
    const w = await nodes.client(target).set(keys.session(newId), item, toMemcachedExpiration(ttl));
    if (!w.ok) {
      nodes.markFailed(target, w.error);
      this.backupFailed(newId, target, w.error);
      return null;
    }
    nodes.markOk(target);
    this.local.delete(sid.id);
    this.local.set(
      newId,
      {
        bytes: item,
        maxInactive: e.maxInactive,
        node: target,
        copy: { written: item, expiresAt: started + ttl * 1000 },
        accessedAt: e.accessedAt,
      },
      { ttl: e.maxInactive * 1000 },
    );
    noteRelocated(this.ctx, sid, e.node, target);
    this.ctx.moves.moved(sid.id, newId);
    return { id: sid.id, bytes: item, newId, accessedAt: e.accessedAt };
  }

  /**
   * The copy's bytes from `node` (a marker's: maxInactive null); null when missing, unreadable or the node is down
   * while another node answers. No node answering: a StorageUnavailableError (an outage is not "no session").
   */
  private async fetch(sid: SessionId, node: string): Promise<{ bytes: Buffer; maxInactive: number | null } | null> {
    const { nodes, keys, stats, logger } = this.ctx;
    if (!nodes.isAvailable(node)) {
      if (!(await nodes.anyAnswers())) throw outage(nodes, sid, node);
      logger.warn(`session ${hashId(sid.id)}: node ${node} is down; its memcached copy cannot be read`);
      stats.requestsWithoutSession++;
      return null;
    }
    const r = await nodes.client(node).get(keys.session(sid.id));
    if (!r.ok) {
      nodes.markFailed(node, r.error);
      // The copy lives on this node only; whether it is lost or memcached is out depends on whether others answer.
      if (!(await nodes.anyAnswers())) throw outage(nodes, sid, node);
      stats.requestsWithoutSession++;
      return null;
    }
    nodes.markOk(node);
    if (!r.value) {
      stats.requestsWithoutSession++;
      return null;
    }
    if (!isMsmItem(r.value)) return foreignItem(this.ctx, sid, node);
    if (movedTo(r.value) !== undefined) return { bytes: r.value, maxInactive: null };
    const session = decodeOrDiscard(
      this.ctx,
      sid,
      node,
      r.value,
      () => void nodes.client(node).delete(keys.session(sid.id)),
    );
    return session && { bytes: r.value, maxInactive: this.maxInactiveOf(session) };
  }

  private expired(sid: SessionId, node: string): null {
    this.ctx.stats.sessionsExpired++;
    this.ctx.stats.requestsWithoutSession++;
    void this.ctx.nodes.client(node).delete(this.ctx.keys.session(sid.id));
    return null;
  }

  /** s, from the stored cookie as the store computes it; null when already expired. */
  private maxInactiveOf(session: StoredSession | null): number | null {
    const s = maxInactiveOfCookie(session?.cookie, this.ctx.cfg.defaultMaxInactiveInterval);
    return s > 0 ? s : null;
  }

  private onDispose(e: LocalEntry, id: string, reason: LRUCache.DisposeReason): void {
    if (reason === 'evict') {
      // Bounds, not expiry: the memcached copy stays and the next request loads it back.
      this.ctx.stats.localEvictions++;
    } else if (reason === 'expire' && !this.ctx.moves.fixedCookies) {
      // (With fixed cookies other instances serve the id too: its memcached TTL decides.)
      this.ctx.stats.sessionsExpired++;
      const { nodes, keys } = this.ctx;
      if (nodes.isAvailable(e.node)) void nodes.client(e.node).delete(keys.session(id));
    }
  }
}
