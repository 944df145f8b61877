// msm's non-sticky mode: the session lives on the memcached node named in its id (with a `validity:` record),
// a `bak:` copy lives on the next available node, and a session whose node is down is relocated to the node that
// holds its backup. Nothing is kept locally between requests.
import type { LoadResult, LoadedMeta, ModeContext, SessionMode } from './mode';
import { unchanged } from './mode';
import type { SessionId } from './session-id';
import type { StoredSession } from './transcoders/transcoder';
import { Validity, decodeValidity, encodeValidity, isValid, nonStickySessionTtl, toMemcachedExpiration } from './validity';
import { hashId } from './logger';

export class NonStickyMode implements SessionMode {
  private readonly relocating = new Map<string, Promise<LoadResult | null>>();

  constructor(private readonly ctx: ModeContext) {}

  newId(): string {
    return this.ctx.ids.create(this.ctx.nodes.pickForNewSession(), undefined);
  }

  /** The node named in the id, or for plain ids (express-session's own genid) a stable hash of it. */
  primaryOf(sid: SessionId): string {
    return sid.nodeId ?? this.ctx.nodes.hashNode(sid.random);
  }

  async load(sid: SessionId): Promise<LoadResult | null> {
    const { nodes, keys, stats } = this.ctx;
    const primary = this.primaryOf(sid);
    if (nodes.isAvailable(primary)) {
      const client = nodes.client(primary);
      const [s, v] = await Promise.all([client.get(keys.session(sid.id)), client.get(keys.validity(sid.id))]);
      if (s.ok && v.ok) {
        nodes.markOk(primary);
        return this.fromPrimary(sid, primary, s.value, v.value);
      }
      nodes.markFailed(primary, s.ok ? (v as { error: Error }).error : s.error);
    }
    return this.loadBackupAndRelocate(sid, primary);
  }

  private fromPrimary(sid: SessionId, node: string, bytes: Buffer | null, validityBytes: Buffer | null): LoadResult | null {
    const { stats } = this.ctx;
    if (!bytes) {
      stats.requestsWithoutSession++;
      return null;
    }
    const validity = decodeValidity(validityBytes);
    if (!validity || !isValid(validity)) {
      // msm: no (or an expired) validity record means the session has expired.
      stats.sessionsExpired++;
      stats.requestsWithoutSession++;
      void this.deleteAll(sid, node);
      return null;
    }
    const session = this.decode(sid, bytes, node, [this.ctx.keys.session(sid.id), this.ctx.keys.validity(sid.id)]);
    if (!session) return null;
    stats.requestsWithSession++;
    return { session, meta: { id: sid.id, bytes, validity } };
  }

  /**
   * The primary is down: read `bak:` and `bak:validity:` from the next available node and move the session there
   * under a new id (same random part, new node: every instance computes the same id). Tried once: when no copy
   * exists the answer is "no session" at once (msm #404 looped here).
   */
  private async loadBackupAndRelocate(sid: SessionId, primary: string): Promise<LoadResult | null> {
    // Concurrent requests with the same id in this process share one relocation.
    const running = this.relocating.get(sid.id);
    if (running) return running.then((r) => (r ? { session: structuredClone(r.session), meta: { ...r.meta } } : null));
    const p = this.relocate(sid, primary).finally(() => this.relocating.delete(sid.id));
    this.relocating.set(sid.id, p);
    return p;
  }

  private async relocate(sid: SessionId, primary: string): Promise<LoadResult | null> {
    const { nodes, keys, stats, ids, logger } = this.ctx;
    const target = nodes.nextAvailable(primary);
    if (!target) {
      logger.warn(`session ${hashId(sid.id)}: node ${primary} is down and no other node is available`);
      stats.requestsWithoutSession++;
      return null;
    }
    const client = nodes.client(target);
    const newId = ids.withNode(sid, target);
    // One round trip reads both the backup and a copy another instance may have relocated already (the new id is
    // deterministic): the relocated copy wins, so a late request never resurrects the older backup.
    const [n, nv, b, bv] = await Promise.all([
      client.get(keys.session(newId)), client.get(keys.validity(newId)),
      client.get(keys.backup(sid.id)), client.get(keys.backupValidity(sid.id)),
    ]);
    const failed = [n, nv, b, bv].find((r) => !r.ok) as { ok: false; error: Error } | undefined;
    if (failed) {
      nodes.markFailed(target, failed.error);
      stats.requestsWithoutSession++;
      return null;
    }
    nodes.markOk(target);
    const relocated = n.ok && n.value ? n.value : null;
    if (relocated) {
      const validity = decodeValidity(nv.ok ? nv.value : null);
      if (validity && isValid(validity)) {
        const session = this.decode(sid, relocated, target, [keys.session(newId), keys.validity(newId)]);
        if (!session) return null;
        stats.requestsWithMemcachedFailover++;
        stats.requestsWithSession++;
        this.ctx.recordIdChange(sid.id, newId);
        return { session, meta: { id: newId, bytes: relocated, validity, newId } };
      }
    }
    const backup = b.ok ? b.value : null;
    if (!backup) {
      stats.requestsWithoutSession++;
      return null;
    }
    const validity = decodeValidity(bv.ok ? bv.value : null);
    if (!validity || !isValid(validity)) {
      stats.sessionsExpired++;
      stats.requestsWithoutSession++;
      void client.delete(keys.backup(sid.id));
      return null;
    }
    const session = this.decode(sid, backup, target, [keys.backup(sid.id), keys.backupValidity(sid.id)]);
    if (!session) return null;

    const moved = ids.parse(newId)!;
    const now = Date.now();
    const newValidity: Validity = { maxInactiveInterval: validity.maxInactiveInterval, lastAccessedTime: validity.thisAccessedTime, thisAccessedTime: now };
    const written = await this.writePrimary(moved, target, backup, newValidity);
    if (!written.ok) {
      nodes.markFailed(target, written.error);
      throw new Error(`express-msm: session could not be relocated: ${written.error.message}`);
    }
    stats.requestsWithMemcachedFailover++;
    stats.sessionsRelocated++;
    stats.requestsWithSession++;
    logger.warn(`session ${hashId(sid.id)} relocated from ${primary} to ${target}`);
    this.ctx.recordIdChange(sid.id, newId);
    // The old backup keys are superseded by the relocated session (written above, before this delete).
    void client.delete(keys.backup(sid.id));
    void client.delete(keys.backupValidity(sid.id));
    await this.ctx.backups.run(() => this.writeBackup(moved, target, backup, newValidity));
    return { session, meta: { id: newId, bytes: backup, validity: newValidity, newId } };
  }

  async save(sid: SessionId, stored: StoredSession, bytes: Buffer, maxInactive: number, meta: LoadedMeta | undefined): Promise<void> {
    if (unchanged(meta, sid.id, bytes)) {
      this.ctx.stats.requestsWithoutSessionModification++;
      return this.refresh(sid, bytes, maxInactive, meta);
    }
    const validity = this.nextValidity(maxInactive, meta);
    const primary = this.primaryOf(sid);
    if (this.ctx.nodes.isAvailable(primary)) {
      const r = await this.writePrimary(sid, primary, bytes, validity);
      if (r.ok) {
        this.ctx.nodes.markOk(primary);
        if (meta) Object.assign(meta, { id: sid.id, bytes, validity });
        return this.ctx.backups.run(() => this.writeBackup(sid, primary, bytes, validity));
      }
      this.ctx.nodes.markFailed(primary, r.error);
    }
    return this.saveToBackupOnly(sid, primary, bytes, validity);
  }

  /**
   * The primary cannot be written. The response's cookie is already on its way (express-session writes headers
   * before the store answers), so the id cannot change now: write the backup keys on the next node, awaited,
   * and the next request relocates from them. No node at all: the error goes to express-session.
   */
  private async saveToBackupOnly(sid: SessionId, primary: string, bytes: Buffer, validity: Validity): Promise<void> {
    const { stats, nodes } = this.ctx;
    stats.primaryWriteFailures++;
    const target = nodes.nextAvailable(primary);
    if (!target) throw new Error(`express-msm: cannot store session: node ${primary} is down and no other node is available`);
    const r = await this.writeBackupKeys(sid, target, bytes, validity);
    if (!r.ok) {
      nodes.markFailed(target, r.error);
      throw new Error(`express-msm: cannot store session: node ${primary} is down and backup node ${target} failed: ${r.error.message}`);
    }
    stats.requestsWithMemcachedFailover++;
    this.ctx.logger.warn(`session ${hashId(sid.id)}: node ${primary} down, stored on ${target} for relocation`);
  }

  async touch(sid: SessionId, stored: StoredSession, maxInactive: number, meta: LoadedMeta | undefined): Promise<void> {
    const bytes = meta && meta.id === sid.id ? meta.bytes : this.ctx.transcoder.encode(stored);
    return this.refresh(sid, bytes, maxInactive, meta);
  }

  /**
   * Unchanged session (express-session's touch, or a set with equal bytes): refresh the validity record and the
   * items' TTLs with memcached `touch`, never rewriting the session; rewrite only an item that has gone missing.
   */
  private async refresh(sid: SessionId, bytes: Buffer, maxInactive: number, meta: LoadedMeta | undefined): Promise<void> {
    const { nodes, keys, stats } = this.ctx;
    const validity = this.nextValidity(maxInactive, meta);
    const primary = this.primaryOf(sid);
    if (nodes.isAvailable(primary)) {
      const client = nodes.client(primary);
      const ttl = toMemcachedExpiration(nonStickySessionTtl(maxInactive));
      const [v, t] = await Promise.all([
        client.set(keys.validity(sid.id), encodeValidity(validity), toMemcachedExpiration(maxInactive)),
        client.touch(keys.session(sid.id), ttl),
      ]);
      if (v.ok && t.ok) {
        nodes.markOk(primary);
        if (!t.value) {
          // Evicted or the node restarted: we still hold the bytes, write them back.
          stats.sessionsRewrittenAfterMiss++;
          const w = await client.set(keys.session(sid.id), bytes, ttl);
          if (!w.ok) {
            nodes.markFailed(primary, w.error);
            return this.saveToBackupOnly(sid, primary, bytes, validity);
          }
        }
        if (meta) meta.validity = validity;
        return this.ctx.backups.run(() => this.refreshBackup(sid, primary, bytes, validity));
      }
      nodes.markFailed(primary, v.ok ? (t as { error: Error }).error : v.error);
    }
    return this.saveToBackupOnly(sid, primary, bytes, validity);
  }

  async destroy(sid: SessionId): Promise<void> {
    const primary = this.primaryOf(sid);
    const [p, b] = await Promise.all([this.deleteAll(sid, primary), this.deleteBackup(sid, primary)]);
    this.ctx.stats.sessionsDestroyed++;
    // Only when nothing could be deleted is it an error: a copy on a dead node has no validity refresh and expires.
    if (!p && !b) throw new Error(`express-msm: could not destroy session: no node answered`);
  }

  async close(): Promise<void> {}

  private nextValidity(maxInactive: number, meta: LoadedMeta | undefined): Validity {
    const now = Date.now();
    return { maxInactiveInterval: maxInactive, lastAccessedTime: meta?.validity?.thisAccessedTime ?? now, thisAccessedTime: now };
  }

  private decode(sid: SessionId, bytes: Buffer, node: string, keysToDrop: string[]): StoredSession | null {
    const session = this.ctx.transcoder.decode(bytes);
    if (session) return session;
    const { stats, logger, nodes } = this.ctx;
    stats.decodeFailures++;
    stats.requestsWithoutSession++;
    logger.warn(`session ${hashId(sid.id)} on ${node}: ${bytes.length} bytes do not decode with ${this.ctx.transcoder.name}; deleted`);
    const client = nodes.client(node);
    for (const k of keysToDrop) void client.delete(k);
    return null;
  }

  private async writePrimary(sid: SessionId, node: string, bytes: Buffer, validity: Validity) {
    const { keys, nodes } = this.ctx;
    const client = nodes.client(node);
    const max = validity.maxInactiveInterval;
    const [s, v] = await Promise.all([
      client.set(keys.session(sid.id), bytes, toMemcachedExpiration(nonStickySessionTtl(max))),
      client.set(keys.validity(sid.id), encodeValidity(validity), toMemcachedExpiration(max)),
    ]);
    return !s.ok ? s : v;
  }

  private async writeBackupKeys(sid: SessionId, node: string, bytes: Buffer, validity: Validity) {
    const { keys, nodes } = this.ctx;
    const client = nodes.client(node);
    const max = validity.maxInactiveInterval;
    const [s, v] = await Promise.all([
      client.set(keys.backup(sid.id), bytes, toMemcachedExpiration(nonStickySessionTtl(max))),
      client.set(keys.backupValidity(sid.id), encodeValidity(validity), toMemcachedExpiration(max)),
    ]);
    return !s.ok ? s : v;
  }

  /** Full backup write on the node after the primary. A failure is counted and logged, never thrown. */
  private async writeBackup(sid: SessionId, primary: string, bytes: Buffer, validity: Validity): Promise<void> {
    const target = this.backupNodeOf(primary);
    if (!target) return;
    const r = await this.writeBackupKeys(sid, target, bytes, validity);
    this.afterBackup(sid, target, r);
  }

  /** Unchanged session: new bak:validity, and `touch bak:` which also tells whether the copy is still there. */
  private async refreshBackup(sid: SessionId, primary: string, bytes: Buffer, validity: Validity): Promise<void> {
    const target = this.backupNodeOf(primary);
    if (!target) return;
    const { keys, nodes, stats } = this.ctx;
    const client = nodes.client(target);
    const max = validity.maxInactiveInterval;
    const ttl = toMemcachedExpiration(nonStickySessionTtl(max));
    const [v, t] = await Promise.all([
      client.set(keys.backupValidity(sid.id), encodeValidity(validity), toMemcachedExpiration(max)),
      client.touch(keys.backup(sid.id), ttl),
    ]);
    if (v.ok && t.ok && !t.value) {
      // The backup node restarted or was down when the session last changed (msm #300): write the copy again.
      stats.backupsRewritten++;
      return this.afterBackup(sid, target, await client.set(keys.backup(sid.id), bytes, ttl));
    }
    this.afterBackup(sid, target, !v.ok ? v : t);
  }

  private backupNodeOf(primary: string): string | undefined {
    if (this.ctx.nodes.ids.length < 2) return undefined;
    const target = this.ctx.nodes.nextAvailable(primary);
    if (!target) {
      this.ctx.stats.backupsSkippedNoNode++;
      this.ctx.stats.requestsWithBackupFailure++;
    }
    return target;
  }

  private afterBackup(sid: SessionId, node: string, r: { ok: true } | { ok: false; error: Error }): void {
    if (r.ok) {
      this.ctx.nodes.markOk(node);
      return;
    }
    this.ctx.nodes.markFailed(node, r.error);
    this.ctx.stats.requestsWithBackupFailure++;
    this.ctx.logger.warn(`session ${hashId(sid.id)}: backup on ${node} failed: ${r.error.message}`);
  }

  /** Session + validity on the primary. true when the node answered. */
  private async deleteAll(sid: SessionId, node: string): Promise<boolean> {
    const { keys, nodes } = this.ctx;
    if (!nodes.isAvailable(node)) return false;
    const client = nodes.client(node);
    const [a, b] = await Promise.all([client.delete(keys.session(sid.id)), client.delete(keys.validity(sid.id))]);
    if (!a.ok) nodes.markFailed(node, a.error);
    return a.ok && b.ok;
  }

  private async deleteBackup(sid: SessionId, primary: string): Promise<boolean> {
    if (this.ctx.nodes.ids.length < 2) return false;
    const { keys, nodes } = this.ctx;
    const target = nodes.nextAvailable(primary);
    if (!target) return false;
    const client = nodes.client(target);
    const [a, b] = await Promise.all([client.delete(keys.backup(sid.id)), client.delete(keys.backupValidity(sid.id))]);
    if (!a.ok) nodes.markFailed(target, a.error);
    return a.ok && b.ok;
  }
}
