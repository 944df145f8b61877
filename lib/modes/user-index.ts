// Per-user index (indexBy): which session ids belong to a value (a user id), kept in memcached so that any instance
// finds sessions created at any other, and "log this user out everywhere" needs no scan of all keys.
//
// One item per value, `idx:<prefix><sha256-hex of the value>`, on the first two available nodes of a ring that
// starts at a node chosen by the hash; reads take every available node's copy and unite them. The item holds the
// value itself (a hash collision is detected, never merged) and `session id -> expiry (epoch s)`. Changes are
// read-modify-write with CAS. An entry is only a hint: before an id is returned (or destroyed) its session is loaded
// and indexBy(session) must still give the value, so a stale or lost index can miss sessions but never names
// another user's. Dead entries are dropped when read (compaction) and when past their expiry.
import { createHash } from 'crypto';
import { LRUCache } from 'lru-cache';
import { ConfigError, StorageUnavailableError } from '../core/errors';
import { type KeyFormat, MEMCACHED_MAX_KEY_LENGTH, isValidMemcachedKey } from '../memcached/keys';
import { type Logger, hashId } from '../core/logger';
import { mapLimit } from '../core/parallel';
import type { SessionRecord } from './session-record';
import type { LoadResult } from './mode';
import type { NodeSet } from '../memcached/nodes';
import type { SessionId, SessionIdFormat } from '../memcached/session-id';
import type { Statistics } from '../core/stats';
import { HEADER_LENGTH, hasHeader, writeHeader } from '../transcoders/transcoder';
import { nonStickySessionTtl, toMemcachedExpiration } from '../memcached/validity';

/** Returns the value a session is indexed by (a user id), or undefined. Strings and finite numbers count. */
export type IndexBy = (session: Record<string, any>) => unknown;

/** Header kind of an index item (not a session: no transcoder reads it). */
const INDEX_KIND = 0xfe;
/** Copies of each index item. */
const COPIES = 2;
/** CAS tries before a change is given up (counted, logged); a lost race waits a random few ms, growing. */
const CAS_ATTEMPTS = 30;
const casBackoff = (attempt: number) =>
  new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 2 * (attempt + 1))));
/** Bound on one value's entries (item size); the soonest to expire are dropped first. */
export const MAX_INDEX_ENTRIES = 2000;
/** Sessions loaded at once while verifying a value's entries. */
const VERIFY_CONCURRENCY = 8;

type Entries = Map<string, number>;

interface Change {
  add?: ReadonlyArray<{ id: string; expires: number }>;
  remove?: readonly string[];
}

export interface UserIndexContext {
  nodes: NodeSet;
  keys: KeyFormat;
  ids: SessionIdFormat;
  stats: Statistics;
  logger: Logger;
  /** Loads a session as a request would (follows relocation); null when there is none. */
  load(sid: SessionId): Promise<LoadResult | null>;
  destroy(sid: SessionId): Promise<void>;
}

/** Accepted index values: non-empty strings and finite numbers (as their string). */
export function indexValue(v: unknown): string | undefined {
  if (typeof v === 'string') return v.length ? v : undefined;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
}

export function encodeIndex(value: string, entries: Entries): Buffer {
  const json = Buffer.from(JSON.stringify({ v: value, e: Object.fromEntries(entries) }));
  const out = Buffer.allocUnsafe(HEADER_LENGTH + json.length);
  writeHeader(out, INDEX_KIND);
  json.copy(out, HEADER_LENGTH);
  return out;
}

/** null for anything that is not an index item. */
export function decodeIndex(bytes: Buffer | null): { value: string; entries: Entries } | null {
  if (!bytes || !hasHeader(bytes, INDEX_KIND)) return null;
  try {
    const o = JSON.parse(bytes.toString('utf8', HEADER_LENGTH));
    if (typeof o?.v !== 'string' || typeof o.e !== 'object' || o.e === null) return null;
    const entries: Entries = new Map();
    for (const [id, exp] of Object.entries(o.e)) if (typeof exp === 'number') entries.set(id, exp);
    return { value: o.v, entries };
  } catch {
    return null;
  }
}

export class UserIndex {
  /** Ids this process loaded or indexed: under which value, when it last wrote the entry (ms, 0: never), for how long. */
  private readonly known = new LRUCache<string, { value: string; at: number; maxInactive: number }>({ max: 100_000 });

  constructor(
    private readonly ctx: UserIndexContext,
    private readonly indexBy: IndexBy,
  ) {
    if (!isValidMemcachedKey(ctx.keys.index('0'.repeat(64)))) {
      throw new ConfigError(
        'storageKeyPrefix',
        ctx.keys.prefix,
        `too long for indexBy: index keys (idx:<prefix><64 hex>) would exceed ${MEMCACHED_MAX_KEY_LENGTH} bytes`,
      );
    }
  }

  valueOf(session: Record<string, any>): string | undefined {
    try {
      return indexValue(this.indexBy(session));
    } catch (e) {
      this.ctx.logger.warn(`indexBy threw: ${(e as Error)?.message ?? e}; session not indexed`);
      return undefined;
    }
  }

  /** A session was loaded under `requestedId` (its cookie's id). */
  onLoad(record: SessionRecord, requestedId: string, session: Record<string, any>): void {
    const value = this.valueOf(session);
    record.indexed = { value, id: requestedId };
    // So that a destroy in this request takes the entry out, whichever instance wrote it.
    if (value !== undefined && this.known.get(requestedId)?.value !== value)
      this.known.set(requestedId, { value, at: 0, maxInactive: 0 });
  }

  /**
   * After a session was saved or touched under `sid`: index it when it is new, its value or id changed (login,
   * relocation), or its entry's expiry is due for a refresh (every maxInactive/2 per process); a changed or removed
   * value takes the old entry out. Index failures are counted and logged; the session itself is stored.
   */
  async afterWrite(
    sid: SessionId,
    session: Record<string, any>,
    maxInactive: number,
    record: SessionRecord | undefined,
  ): Promise<void> {
    const value = this.valueOf(session);
    const before = record?.indexed;
    if (record) record.indexed = { value, id: sid.id };
    const moved = before !== undefined && before.id !== sid.id;
    const changed = !before || before.value !== value || moved;
    const writes: Array<Promise<void>> = [];
    const expires = Math.floor(Date.now() / 1000) + nonStickySessionTtl(maxInactive);
    if (value !== undefined && (changed || this.due(sid.id, value, maxInactive))) {
      const remove = moved && before.value === value ? [before.id] : undefined;
      writes.push(
        this.change(value, { add: [{ id: sid.id, expires }], remove }).then((ok) => {
          if (ok) this.known.set(sid.id, { value, at: Date.now(), maxInactive });
        }),
      );
    }
    if (before?.value !== undefined && before.value !== value) {
      this.known.delete(before.id);
      writes.push(this.change(before.value, { remove: [before.id] }).then(() => undefined));
    }
    await Promise.all(writes);
  }

  /** A session was destroyed: if this process knows its value, take it out now (else a later read drops it). */
  async onDestroy(id: string): Promise<void> {
    const w = this.known.get(id);
    if (!w) return;
    this.known.delete(id);
    await this.change(w.value, { remove: [id] });
  }

  /** Ids of the value's live sessions, each loaded and checked. Compacts the index on the way. */
  async idsOf(raw: unknown): Promise<string[]> {
    return (await this.verified(this.requireValue(raw))).map((s) => s.id);
  }

  /** Destroys the value's live sessions; resolves with how many. Rejects when some could not be destroyed. */
  async destroyAllOf(raw: unknown): Promise<number> {
    const value = this.requireValue(raw);
    const live = await this.verified(value);
    const results = await Promise.allSettled(live.map((s) => this.ctx.destroy(s.sid)));
    const destroyed = live.filter((_, i) => results[i].status === 'fulfilled').map((s) => s.id);
    for (const id of destroyed) this.known.delete(id);
    if (destroyed.length) await this.change(value, { remove: destroyed });
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length) {
      throw new StorageUnavailableError(
        `express-msm: destroyAllOf: ${destroyed.length} sessions destroyed, ${failed.length} could not be: ${failed[0].reason?.message ?? failed[0].reason}`,
        { cause: failed[0].reason },
      );
    }
    return destroyed.length;
  }

  // --- internals ---------------------------------------------------------------------------------------------

  private requireValue(raw: unknown): string {
    const value = indexValue(raw);
    if (value === undefined)
      throw new TypeError(`express-msm: expected a non-empty string or a finite number to look up, got ${typeof raw}`);
    return value;
  }

  private due(id: string, value: string, maxInactive: number): boolean {
    const w = this.known.get(id);
    return !w || w.value !== value || w.maxInactive !== maxInactive || Date.now() - w.at >= maxInactive * 500;
  }

  /** The value's item key and the hash that places it (hashed once per operation, passed down). */
  private key(value: string): { key: string; hash: string } {
    const hash = createHash('sha256').update(value, 'utf8').digest('hex');
    return { key: this.ctx.keys.index(hash), hash };
  }

  /** Nodes in ring order from the hash's node: copies go to the first COPIES available ones. */
  private ring(hash: string): string[] {
    const { nodes } = this.ctx;
    const start = nodes.ids.indexOf(nodes.hashNode(hash));
    return nodes.ids.map((_, i) => nodes.ids[(start + i) % nodes.ids.length]);
  }

  /** Every available node's copy of the value's item, united (latest expiry per id); nodes that hold one. */
  private async read(value: string, key: string): Promise<{ entries: Entries; holders: string[]; partial: boolean }> {
    const { nodes } = this.ctx;
    const entries: Entries = new Map();
    const holders: string[] = [];
    const sizes: number[] = [];
    await Promise.all(
      nodes.ids
        .filter((n) => nodes.isAvailable(n))
        .map(async (node) => {
          const r = await nodes.client(node).get(key);
          if (!r.ok) return nodes.markFailed(node, r.error);
          nodes.markOk(node);
          const item = decodeIndex(r.value);
          if (!item) return;
          if (item.value !== value) return this.collision(value, node);
          holders.push(node);
          sizes.push(item.entries.size);
          for (const [id, exp] of item.entries) entries.set(id, Math.max(exp, entries.get(id) ?? 0));
        }),
    );
    // A copy that missed a change (its write failed while the other's succeeded) lists fewer ids than the union.
    return { entries, holders, partial: sizes.some((n) => n < entries.size) };
  }

  /** Loads every listed session; keeps those whose indexBy still gives `value`, under their current id. */
  private async verified(value: string): Promise<Array<{ id: string; sid: SessionId }>> {
    const k = this.key(value);
    const { entries, holders, partial } = await this.read(value, k.key);
    const now = Math.floor(Date.now() / 1000);
    const listed: string[] = [];
    const dead: string[] = [];
    for (const [id, exp] of entries) (exp > now ? listed : dead).push(id);
    // Live sessions under their current id, with their entry's expiry (a relocated one keeps its old entry's).
    const live = new Map<string, { sid: SessionId; expires: number }>();
    let moved = false;
    const found = await mapLimit(listed, VERIFY_CONCURRENCY, (id) => this.currentSid(id, value));
    listed.forEach((id, i) => {
      const current = found[i];
      // Unknown (no node could serve it): not returned, kept in the index.
      if (current === undefined) return;
      if (current === null) return void dead.push(id);
      if (current.id !== id) {
        dead.push(id);
        moved ||= !entries.has(current.id);
      }
      live.set(current.id, { sid: current, expires: Math.max(entries.get(id)!, live.get(current.id)?.expires ?? 0) });
    });
    const targets = this.targets(k.hash);
    if (dead.length || moved || (live.size && (partial || targets.some((n) => !holders.includes(n))))) {
      // Compaction and repair: every copy loses the dead entries (so that none brings them back), and a target that
      // lost its copy (restarted, evicted) or missed a change gets the live entries again.
      const add = [...live].map(([id, l]) => ({ id, expires: l.expires }));
      await Promise.all(
        [...new Set([...holders, ...targets])].map((node) => this.changeOn(node, value, k.key, { remove: dead, add })),
      );
    }
    return [...live].map(([id, l]) => ({ id, sid: l.sid }));
  }

  /**
   * The listed session `id` under its current id; null when it is gone, not a session id, or indexBy no longer gives
   * `value`; undefined when it could not be loaded.
   */
  private async currentSid(id: string, value: string): Promise<SessionId | null | undefined> {
    const { ids, logger } = this.ctx;
    const sid = ids.parse(id);
    if (!sid) return null;
    let loaded: LoadResult | null;
    try {
      loaded = await this.ctx.load(sid);
    } catch (e) {
      logger.warn(`index: session ${hashId(id)} could not be loaded: ${(e as Error)?.message ?? e}`);
      return undefined;
    }
    if (!loaded || this.valueOf(loaded.session) !== value) return null;
    return ids.parse(loaded.record.id) ?? sid;
  }

  private targets(hash: string): string[] {
    const { nodes } = this.ctx;
    return this.ring(hash)
      .filter((n) => nodes.isAvailable(n))
      .slice(0, COPIES);
  }

  /** Applies a change on the value's copies; true when at least one copy took it. */
  private async change(value: string, change: Change): Promise<boolean> {
    const { key, hash } = this.key(value);
    const targets = this.targets(hash);
    const results = await Promise.all(targets.map((node) => this.changeOn(node, value, key, change)));
    const ok = results.some(Boolean);
    if (ok && !results.every(Boolean))
      this.ctx.logger.warn(`index: a copy of ${hashId(value)} missed a change; the next read repairs it`);
    if (!ok) {
      this.ctx.stats.indexWriteFailures++;
      this.ctx.logger.warn(
        `index: could not update the index of ${hashId(value)} (${targets.length ? 'write failed' : 'no node available'})`,
      );
    }
    return ok;
  }

  /** One copy, read-modify-write with CAS (add when missing), retried when another writer got there first. */
  private async changeOn(node: string, value: string, key: string, change: Change): Promise<boolean> {
    const { nodes } = this.ctx;
    const client = nodes.client(node);
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const g = await client.gets(key);
      if (!g.ok) {
        nodes.markFailed(node, g.error);
        return false;
      }
      const item = g.value ? decodeIndex(g.value.value) : null;
      if (item && item.value !== value) return this.collision(value, node);
      const entries: Entries = item?.entries ?? new Map();
      for (const id of change.remove ?? []) entries.delete(id);
      for (const a of change.add ?? []) entries.set(a.id, Math.max(a.expires, entries.get(a.id) ?? 0));
      const now = Math.floor(Date.now() / 1000);
      for (const [id, exp] of entries) if (exp <= now) entries.delete(id);
      if (entries.size > MAX_INDEX_ENTRIES) {
        const keep = [...entries].sort((a, b) => b[1] - a[1]).slice(0, MAX_INDEX_ENTRIES);
        this.ctx.logger.warn(
          `index of ${hashId(value)}: more than ${MAX_INDEX_ENTRIES} sessions; the soonest to expire are no longer listed`,
        );
        entries.clear();
        for (const [id, exp] of keep) entries.set(id, exp);
      }
      const latest = Math.max(0, ...entries.values());
      // An emptied item lives one second (a CAS write, so a concurrent addition is not lost), then is gone.
      const ttl = entries.size ? toMemcachedExpiration(latest - now) : 1;
      const bytes = encodeIndex(value, entries);
      const w = g.value ? await client.cas(key, bytes, ttl, g.value.cas) : await client.add(key, bytes, ttl);
      if (!w.ok) {
        nodes.markFailed(node, w.error);
        return false;
      }
      nodes.markOk(node);
      if (w.value) return true;
      await casBackoff(attempt);
    }
    return false;
  }

  private collision(value: string, node: string): false {
    this.ctx.logger.error(
      `index: ${node} holds another value's item under the key of ${hashId(value)} (sha-256 collision or foreign data); left alone`,
    );
    return false;
  }
}
