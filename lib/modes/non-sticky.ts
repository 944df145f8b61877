// msm's non-sticky mode: the session lives on the memcached node named in its id (with a `validity:` record),
// a `bak:` copy lives on the next available node, and a session whose node is down is relocated to the node that
// holds its backup. Nothing is kept locally between requests.
//
// Old ids are forwarded through memcached (a relocation marker at `bak:<old id>`), never through memory in one
// process: relocation keeps the random part, so ids recur (n1 -> n2 -> n3 -> n1) and a remembered redirect would go
// stale. Beyond msm: every copy carries a version (its validity record's thisAccessedTime), and reads compare them.
// A load reads the backup's validity in the same round trip as the primary: the newest valid copy wins (a primary
// that missed writes while it was stopped is repaired), a missing or older backup is rewritten, and a primary that
// lost its items (restart, eviction) is restored from the newest backup. NodeRepair (repair.ts) does the same
// proactively for a node that comes back.
import { SessionTooLargeError, StorageUnavailableError } from '../core/errors';
import type { LoadResult, ModeContext, SessionMode } from './mode';
import { itemUnderId } from './mode';
import { SessionRecord } from './session-record';
import { decodeOrDiscard, followMarkers, noteRelocated, outage, relocationOf } from './copies';
import { SingleFlight } from '../core/single-flight';
import type { SessionId } from '../memcached/session-id';
import type { StoredSession } from '../transcoders/transcoder';
import { encodeMoved, movedTo } from '../transcoders/transcoder';
import {
  type Validity,
  decodeValidity,
  encodeValidity,
  isValid,
  nonStickySessionTtl,
  toMemcachedExpiration,
} from '../memcached/validity';
import { hashId } from '../core/logger';
import type { NodeClient, OpResult } from '../memcached/node-client';
import { NodeRepair } from './repair';
import { NodeDrain } from './drain';
import { placeBackups } from '../memcached/placement';
import { LRUCache } from 'lru-cache';

/** A copy found in memcached, not yet decoded: shared by concurrent loads of one id, decoded by each. */
interface Found {
  /** The id the session now lives under (differs from the requested id after a relocation). */
  id: string;
  node: string;
  bytes: Buffer;
  validity: Validity;
  newId?: string;
  /** A backup node answered with an older copy or none: the next save or touch rewrites it. */
  backupStale?: boolean;
  /** The backup nodes whose copy was found current (same version as the copy served). */
  backupNodes?: string[];
}

type Failed = { ok: false; error: Error };

function firstFailure(rs: Array<OpResult<unknown> | undefined>): Failed | undefined {
  return rs.find((r) => r && !r.ok) as Failed | undefined;
}

/** Newer version first; an invalid (expired) validity never wins. */
function newer(a: Validity | null | undefined, b: Validity | null | undefined): boolean {
  if (!a || !isValid(a)) return false;
  return !b || !isValid(b) || a.thisAccessedTime > b.thisAccessedTime;
}

export class NonStickyMode implements SessionMode {
  /** Concurrent requests for one id in this process share one round trip (and one relocation or repair). */
  private readonly inflight = new SingleFlight<Found | null>();
  /**
   * When this process last set or touched a session's items (ms). Their TTL is 2x maxInactive from then, so within
   * maxInactive/2 at least 1.5x maxInactive remains and a read need not touch them again. Conservative: another
   * instance may have refreshed them later. A lost item is found by the next load (read-repair).
   */
  private readonly refreshed = new LRUCache<string, { primary: number; backup: number }>({ max: 100_000 });
  readonly repair: NodeRepair;
  readonly drain: NodeDrain;

  constructor(private readonly ctx: ModeContext) {
    this.repair = new NodeRepair(ctx);
    this.drain = new NodeDrain(ctx, (sid, from, fromRole, to, toRole) =>
      this.repair.copy(sid, from, fromRole, to, toRole),
    );
  }

  newId(): string {
    return this.ctx.idFormat.create(this.ctx.nodes.pickForNewSession(), undefined);
  }

  /** msm's primary node of a session: the node named in the id (NodeSet.nodeOf). */
  primaryOf(sid: SessionId): string {
    return this.ctx.nodes.nodeOf(sid);
  }

  /** The nodes holding the backups of sessions whose primary is `primary` (backupCount of them, placement.ts). */
  private backupNodesOf(primary: string): string[] {
    const { nodes, cfg } = this.ctx;
    return nodes.ids.length < 2 ? [] : nodes.backupNodesOf(primary, cfg.backupCount);
  }

  async load(sid: SessionId): Promise<LoadResult | null> {
    const found = await this.inflight.run(sid.id, () => this.locate(sid));
    const { stats, nodes } = this.ctx;
    if (!found) {
      // A node this load could not read is marked down now, and it read every node still up: none up means that
      // nothing could be read, not that the session is gone.
      if (!nodes.anyAvailable()) throw outage(nodes, sid, this.primaryOf(sid));
      stats.requestsWithoutSession++;
      return null;
    }
    const session = this.decode(sid, found);
    if (!session) return null;
    stats.requestsWithSession++;
    const record = new SessionRecord(found.id, found.bytes);
    record.validity = found.validity;
    record.newId = found.newId;
    record.backupStale = found.backupStale;
    record.backupNodes = found.backupNodes;
    return { session, record };
  }

  /**
   * Where the newest valid copy of the session is, following relocation markers (a late request with an old id
   * after a relocation must not read the copy its old node still holds once it is back).
   */
  private async locate(sid: SessionId): Promise<Found | null> {
    const found = await followMarkers(
      this.ctx,
      sid,
      (at) => this.locateCopy(at),
      (f) => f.bytes,
    );
    if (found && found.at !== sid && !found.copy.newId) found.copy.newId = found.at.id;
    return found?.copy ?? null;
  }

  /** The newest valid copy under exactly this id (possibly a relocation marker); repairs older copies on the way. */
  private async locateCopy(sid: SessionId): Promise<Found | null> {
    const { nodes, keys, stats } = this.ctx;
    const primary = this.primaryOf(sid);
    if (!nodes.isAvailable(primary)) return this.relocate(sid, primary);
    const backupNodes = this.backupNodesOf(primary);
    const pc = nodes.client(primary);
    // Session and validity in one multi-get; each backup's validity from its node in the same turn.
    const [[s, v], ...bvs] = await Promise.all([
      pc.getPair(keys.session(sid.id), keys.validity(sid.id)),
      ...backupNodes.map((b) => nodes.client(b).get(keys.backupValidity(sid.id))),
    ]);
    if (!s.ok || !v.ok) {
      nodes.markFailed(primary, firstFailure([s, v])!.error);
      return this.relocate(sid, primary);
    }
    nodes.markOk(primary);
    // Per backup node: undefined: unknown (it did not answer); null: it has no valid record.
    const versions = backupNodes.map((node, i): Validity | null | undefined => {
      const bv = bvs[i];
      if (!bv.ok) return void nodes.markFailed(node, bv.error);
      nodes.markOk(node);
      return decodeValidity(bv.value);
    });
    // The newest backup (the first of equals: the first backup node).
    let newest = -1;
    for (let i = 0; i < versions.length; i++) if (newer(versions[i], versions[newest])) newest = i;
    const backupNode = backupNodes[newest] as string | undefined;
    const backupValidity = versions[newest];
    const bytes = s.value;
    const validity = bytes ? decodeValidity(v.value) : null;

    if (bytes && validity && !newer(backupValidity, validity)) {
      if (!isValid(validity)) {
        // msm: an expired validity record means the session has expired.
        stats.sessionsExpired++;
        void this.deleteEverywhere(sid, primary);
        return null;
      }
      return { id: sid.id, node: primary, bytes, validity, ...backupState(backupNodes, versions, validity, false) };
    }

    if (bytes && validity && backupNode && backupValidity) {
      // The backup is newer: the primary missed writes (it was stopped while the session changed elsewhere).
      const b = await nodes.client(backupNode).get(keys.backup(sid.id));
      if (b.ok && b.value) {
        stats.primariesRepaired++;
        this.ctx.logger.warn(
          `session ${hashId(sid.id)}: primary ${primary} held an older copy; repaired from ${backupNode}`,
        );
        await this.writePrimary(sid, primary, b.value, backupValidity);
        const state = backupState(backupNodes, versions, backupValidity, false);
        return { id: sid.id, node: primary, bytes: b.value, validity: backupValidity, ...state };
      }
      // Its bytes are gone (evicted) or did not come: the primary's copy is the best there is; rewrite the backup.
      if (isValid(validity)) return { id: sid.id, node: primary, bytes, validity, backupStale: true };
    }

    if (!bytes || !validity) {
      // The primary answers but holds nothing (restart, eviction, or the session is gone): the newest backup,
      // from any node (it was written to whichever node was next when the session last changed).
      // An id that names no node may have been placed elsewhere by an earlier node list: looked for everywhere.
      const copy: { node: string; bytes: Buffer; validity: Validity; moved?: boolean } | null =
        sid.nodeId === undefined ? await this.newestAnywhere(sid, primary) : await this.newestBackup(sid, [primary]);
      if (!copy) return null;
      stats.primariesRepaired++;
      if (copy.moved)
        this.ctx.logger.info(`session ${hashId(sid.id)}: placed on ${primary} now; moved over from ${copy.node}`);
      else
        this.ctx.logger.warn(`session ${hashId(sid.id)}: primary ${primary} had no copy; restored from ${copy.node}`);
      // Nothing there: add, so a request that wrote the session meanwhile wins; an item without validity: replace.
      await this.writePrimary(sid, primary, copy.bytes, copy.validity, bytes ? 'set' : 'add');
      const state = backupState(backupNodes, versions, copy.validity, true);
      return { id: sid.id, node: primary, bytes: copy.bytes, validity: copy.validity, ...state };
    }
    return null;
  }

  /** bak: + bak:validity: from every available node except `exclude`, in one round trip: the newest valid copy. */
  private async newestBackup(
    sid: SessionId,
    exclude: string[],
  ): Promise<{ node: string; bytes: Buffer; validity: Validity } | null> {
    const { nodes, keys } = this.ctx;
    const candidates = nodes.ids.filter((id) => !exclude.includes(id) && nodes.isAvailable(id));
    // Drain: a node that left is read (never written) until drained: the session's backup there, or its own copy.
    const own = this.primaryOf(sid);
    const leaving = nodes.leavingIds().filter((id) => !exclude.includes(id) && id !== own);
    if (nodes.isLeaving(own)) leaving.push(own);
    const copies = await Promise.all(
      [...candidates, ...leaving].map(async (node, i) => {
        const c = nodes.client(node);
        const primary = i >= candidates.length && node === own;
        const [b, bv] = await Promise.all([
          c.get(primary ? keys.session(sid.id) : keys.backup(sid.id)),
          c.get(primary ? keys.validity(sid.id) : keys.backupValidity(sid.id)),
        ]);
        if (!b.ok || !bv.ok) {
          nodes.markFailed(node, firstFailure([b, bv])!.error);
          return null;
        }
        const validity = decodeValidity(bv.value);
        return b.value && validity && isValid(validity) ? { node, bytes: b.value, validity } : null;
      }),
    );
    let best: { node: string; bytes: Buffer; validity: Validity } | null = null;
    for (const c of copies) if (c && (!best || newer(c.validity, best.validity))) best = c;
    return best;
  }

  /**
   * For an id that names no node, after its node answered with nothing: the newest valid copy wherever an earlier
   * node list may have put it. Backups on every node (the node itself too: it may have been the former node's next)
   * and primary copies on every other node, with the former owners this set remembers (removed ones while their
   * client lasts). One round trip. `moved`: a primary copy from another node.
   */
  private async newestAnywhere(
    sid: SessionId,
    primary: string,
  ): Promise<{ node: string; bytes: Buffer; validity: Validity; moved: boolean } | null> {
    const { nodes, keys } = this.ctx;
    const current = nodes.ids.filter((id) => nodes.isAvailable(id));
    const owners = current.filter((id) => id !== primary);
    for (const n of nodes.formerOwners(sid)) if (!owners.includes(n) && !nodes.has(n)) owners.push(n);
    const read = async (node: string, item: string, validityKey: string, moved: boolean) => {
      const c = nodes.client(node);
      const [b, bv] = await Promise.all([c.get(item), c.get(validityKey)]);
      if (!b.ok || !bv.ok) {
        nodes.markFailed(node, firstFailure([b, bv])!.error);
        return null;
      }
      const validity = decodeValidity(bv.value);
      return b.value && validity && isValid(validity) ? { node, bytes: b.value, validity, moved } : null;
    };
    const copies = await Promise.all([
      ...[...current, ...nodes.leavingIds()].map((n) =>
        read(n, keys.backup(sid.id), keys.backupValidity(sid.id), false),
      ),
      ...owners.map((n) => read(n, keys.session(sid.id), keys.validity(sid.id), true)),
    ]);
    let best: { node: string; bytes: Buffer; validity: Validity; moved: boolean } | null = null;
    for (const c of copies) if (c && (!best || newer(c.validity, best.validity))) best = c;
    return best;
  }

  /**
   * The primary is down: move the session to the next available node under a new id (same random part, new node:
   * every instance computes the same id). A copy relocated there already (by another instance) wins over the
   * backups; otherwise the newest backup on any node. Tried once: no copy means "no session" at once (msm #404).
   */
  private async relocate(sid: SessionId, primary: string, attempt = 0): Promise<Found | null> {
    const { nodes, keys, stats, idFormat, logger } = this.ctx;
    const to = relocationOf(this.ctx, sid, primary);
    if (!to) {
      logger.warn(`session ${hashId(sid.id)}: node ${primary} is down and no other node is available`);
      return null;
    }
    const { node: target, id: newId } = to;
    const tc = nodes.client(target);
    const [[n, nv], copy] = await Promise.all([
      Promise.all([tc.get(keys.session(newId)), tc.get(keys.validity(newId))]),
      this.newestBackup(sid, [primary]),
    ]);
    if (!n.ok || !nv.ok) {
      // The target died too (a zone going down at once): marked down, the next relocation target is tried.
      nodes.markFailed(target, firstFailure([n, nv])!.error);
      return attempt < nodes.ids.length ? this.relocate(sid, primary, attempt + 1) : null;
    }
    const relocatedValidity = n.value ? decodeValidity(nv.value) : null;
    if (n.value && relocatedValidity && isValid(relocatedValidity) && !newer(copy?.validity, relocatedValidity)) {
      stats.requestsWithMemcachedFailover++;
      return { id: newId, node: target, bytes: n.value, validity: relocatedValidity, newId };
    }
    if (!copy) return null;
    // The newest copy is a marker: the session moved on from this id already; locate() follows it.
    if (movedTo(copy.bytes) !== undefined)
      return { id: sid.id, node: copy.node, bytes: copy.bytes, validity: copy.validity };

    const moved = idFormat.parse(newId)!;
    // Newer than the copy it came from even when this instance's clock is behind the writer's.
    const validity: Validity = {
      maxInactiveInterval: copy.validity.maxInactiveInterval,
      lastAccessedTime: copy.validity.thisAccessedTime,
      thisAccessedTime: Math.max(Date.now(), copy.validity.thisAccessedTime + 1),
    };
    const bytes = itemUnderId(keys, newId, copy.bytes);
    // Nothing under the new id yet: add, so an instance that relocated it meanwhile (and maybe saved since) wins.
    const written = await this.writePrimary(moved, target, bytes, validity, n.value ? 'set' : 'add');
    if (!written.ok) {
      nodes.markFailed(target, written.error);
      throw new StorageUnavailableError(`express-msm: session could not be relocated: ${written.error.message}`, {
        cause: written.error,
      });
    }
    if (!written.value) {
      const theirs = await this.locateCopy(moved);
      if (theirs && !theirs.newId) theirs.newId = newId;
      return theirs;
    }
    noteRelocated(this.ctx, sid, primary, target);
    // The old id's backup becomes a marker pointing at the new id, with a newer version than any copy of the old
    // id, so the old node's copy loses when that node comes back. Other old backups are superseded: deleted.
    const marker = { ...validity, thisAccessedTime: validity.thisAccessedTime + 1 };
    await this.writeBackupKeys(sid, target, encodeMoved(newId), marker);
    for (const node of nodes.ids) {
      if (node === primary || node === target || !nodes.isAvailable(node)) continue;
      void nodes.client(node).delete(keys.backup(sid.id));
      void nodes.client(node).delete(keys.backupValidity(sid.id));
    }
    await this.ctx.backups.run(() => this.writeBackup(moved, target, bytes, validity));
    return { id: newId, node: target, bytes, validity, newId };
  }

  save(
    sid: SessionId,
    bytes: Buffer,
    maxInactive: number,
    record: SessionRecord | undefined,
  ): Promise<void> | undefined {
    if (record?.unchanged(sid.id, bytes)) {
      this.ctx.stats.requestsWithoutSessionModification++;
      return this.refresh(sid, bytes, maxInactive, record);
    }
    return this.saveChanged(sid, bytes, maxInactive, record);
  }

  private async saveChanged(
    sid: SessionId,
    bytes: Buffer,
    maxInactive: number,
    record: SessionRecord | undefined,
  ): Promise<void> {
    const validity = this.nextValidity(maxInactive, record);
    const primary = this.primaryOf(sid);
    if (this.ctx.nodes.isAvailable(primary)) {
      const loaded = record?.bytesFor(sid.id);
      const previous = loaded && record!.validity ? { bytes: loaded, validity: record!.validity } : undefined;
      const writing = this.writePrimary(sid, primary, bytes, validity, 'set', previous);
      // The backup leaves in the same turn as the primary (one flush per node, no turn of its own). Should the
      // primary fail, a backup as new as the failed write is what saveToBackupOnly writes anyway.
      const backup = this.ctx.backups.run(() => this.writeBackup(sid, primary, bytes, validity, false, previous));
      const r = await writing;
      if (r.ok) {
        this.ctx.nodes.markOk(primary);
        record?.wrote(sid.id, bytes, validity);
        return backup;
      }
      if (isItemTooLarge(r.error)) {
        // The node is fine and every other node would refuse the same item: no failover, a clear error.
        throw new SessionTooLargeError(
          `express-msm: session is ${bytes.length} bytes, larger than memcached node ${primary} accepts (its item size limit, memcached -I); not stored`,
          bytes.length,
          { cause: r.error },
        );
      }
      this.ctx.nodes.markFailed(primary, r.error);
    }
    return this.saveToBackupOnly(sid, primary, bytes, validity);
  }

  /**
   * The primary cannot be written. The id cannot change now (with a bare express-session the cookie is already on
   * its way), so the backup keys on the backup nodes are written, awaited: they are newer than anything on the
   * primary, so the next load prefers them (repairing the primary) or relocates from them. No node took them: an
   * error.
   */
  private async saveToBackupOnly(sid: SessionId, primary: string, bytes: Buffer, validity: Validity): Promise<void> {
    const { stats, nodes, cfg } = this.ctx;
    stats.primaryWriteFailures++;
    // Even with backupCount 0: a copy for relocation beats failing the request.
    const targets = nodes.backupNodesOf(primary, Math.max(1, cfg.backupCount));
    if (!targets.length)
      throw new StorageUnavailableError(
        `express-msm: cannot store session: node ${primary} is down and no other node is available`,
        { cause: nodes.lastError(primary) },
      );
    const rs = await Promise.all(targets.map((t) => this.writeBackupKeys(sid, t, bytes, validity)));
    if (!rs.some((r) => r.ok)) {
      const error = (rs[0] as Failed).error;
      for (const [i, t] of targets.entries()) nodes.markFailed(t, (rs[i] as Failed).error);
      throw new StorageUnavailableError(
        `express-msm: cannot store session: node ${primary} is down and backup node ${targets.join(', ')} failed: ${error.message}`,
        { cause: error },
      );
    }
    for (const [i, t] of targets.entries()) this.afterBackup(sid, t, rs[i]);
    stats.requestsWithMemcachedFailover++;
    this.ctx.logger.warn(`session ${hashId(sid.id)}: node ${primary} down, stored on ${targets} for relocation`);
  }

  touch(
    sid: SessionId,
    bytesOf: () => Buffer,
    maxInactive: number,
    record: SessionRecord | undefined,
  ): Promise<void> | undefined {
    return this.refresh(sid, record?.bytesFor(sid.id) ?? bytesOf(), maxInactive, record);
  }

  /**
   * Unchanged session (express-session's touch, or a set with equal bytes): refresh the validity record and the
   * items' TTLs with memcached `touch`, never rewriting the session; rewrite only an item that has gone missing,
   * and the whole backup when the load found it older or missing. With asynchronous backups nothing is awaited:
   * the session's data is already stored, only its expiry moves, so the response need not wait (and
   * express-session writes it in one piece). A failed refresh is handled, counted and logged in the background.
   */
  private refresh(
    sid: SessionId,
    bytes: Buffer,
    maxInactive: number,
    record: SessionRecord | undefined,
  ): Promise<void> | undefined {
    const validity = this.nextValidity(maxInactive, record);
    const primary = this.primaryOf(sid);
    if (!this.ctx.nodes.isAvailable(primary)) return this.saveToBackupOnly(sid, primary, bytes, validity);
    // Only a backup this request's load compared and found current may just be touched: bumping the version of any
    // other copy would let its (possibly older) bytes win a later comparison. Otherwise it is written whole.
    const verified = record?.backupNodes ?? [];
    const repairing = !!record?.backupStale;
    record?.refreshed(validity);
    const { backups } = this.ctx;
    const p = backups.run(() => this.refreshPrimary(sid, primary, bytes, validity));
    const b = backups.run(() => {
      const one = (target: string) =>
        verified.includes(target)
          ? this.refreshBackup(sid, target, bytes, validity)
          : this.writeBackupOn(sid, target, bytes, validity, repairing);
      const targets = this.backupTargets(primary);
      // One backup node, as by default: no Promise.all on every read.
      return targets.length === 1 ? one(targets[0]) : Promise.all(targets.map(one)).then(() => undefined);
    });
    return p && b && Promise.all([p, b]).then(() => undefined);
  }

  /** New validity record, and `touch` of the session item when due (it also tells whether the item is still there). */
  private async refreshPrimary(sid: SessionId, primary: string, bytes: Buffer, validity: Validity): Promise<void> {
    const { nodes, stats } = this.ctx;
    const client = nodes.client(primary);
    const { v, t, due, ttl, item } = await this.refreshKeys(client, 'primary', sid, validity);
    if (!v.ok || !t.ok) {
      nodes.markFailed(primary, firstFailure([v, t])!.error);
      return this.saveToBackupOnly(sid, primary, bytes, validity);
    }
    nodes.markOk(primary);
    if (!t.value) {
      // Evicted or the node restarted: we still hold the bytes, write them back. add: this ran after the response,
      // so a later request may have written newer bytes meanwhile; they win.
      stats.sessionsRewrittenAfterMiss++;
      const w = await client.add(item, bytes, ttl);
      if (!w.ok) {
        nodes.markFailed(primary, w.error);
        return this.saveToBackupOnly(sid, primary, bytes, validity);
      }
    }
    if (due) this.noteRefreshed(sid.id, 'primary');
  }

  async destroy(sid: SessionId): Promise<void> {
    const primary = this.primaryOf(sid);
    const answered = await this.deleteEverywhere(sid, primary);
    this.ctx.stats.sessionsDestroyed++;
    // Only when nothing could be deleted is it an error: a copy on a dead node has no validity refresh and expires.
    if (!answered) throw new StorageUnavailableError(`express-msm: could not destroy session: no node answered`);
  }

  async peek(sid: SessionId, node: string): Promise<{ bytes: Buffer; validity: Validity } | null> {
    if (this.primaryOf(sid) !== node) return null;
    const { nodes, keys } = this.ctx;
    const backupNodes = this.backupNodesOf(node);
    const pc = nodes.client(node);
    const [s, v, ...bvs] = await Promise.all([
      pc.get(keys.session(sid.id), true),
      pc.get(keys.validity(sid.id), true),
      ...backupNodes.map((b) => nodes.client(b).get(keys.backupValidity(sid.id), true)),
    ]);
    if (!s.ok || !v.ok) throw firstFailure([s, v])!.error;
    const validity = decodeValidity(v.value);
    if (!s.value || !validity || !isValid(validity)) return null;
    let backupNode: string | undefined;
    let backupValidity: Validity | null = null;
    for (const [i, bv] of bvs.entries()) {
      const bValidity = bv.ok ? decodeValidity(bv.value) : null;
      if (newer(bValidity, backupValidity ?? validity)) [backupNode, backupValidity] = [backupNodes[i], bValidity];
    }
    if (backupNode) {
      // As locateCopy: a newer backup wins, and a newer relocation marker means the session lives under another id.
      const b = await nodes.client(backupNode).get(keys.backup(sid.id), true);
      if (b.ok && b.value) return movedTo(b.value) === undefined ? { bytes: b.value, validity: backupValidity! } : null;
    }
    return movedTo(s.value) === undefined ? { bytes: s.value, validity } : null;
  }

  /**
   * The old id's marker (`bak:<alias>` on the node after its primary, where relocation left it and where loads look
   * for it) is rewritten when due, with a version newer than any copy of the alias, so it outlives the session's
   * activity and still wins when the alias's old node comes back.
   */
  async keepAlias(alias: SessionId, target: SessionId, maxInactive: number): Promise<void> {
    if (!this.touchDue(alias.id, 'backup', maxInactive)) return;
    const node = this.backupNodesOf(this.primaryOf(alias))[0];
    if (!node || maxInactive <= 0) return;
    const now = Date.now();
    const marker: Validity = { maxInactiveInterval: maxInactive, lastAccessedTime: now, thisAccessedTime: now };
    await this.ctx.backups.run(async () =>
      this.afterBackup(alias, node, await this.writeBackupKeys(alias, node, encodeMoved(target.id), marker)),
    );
  }

  async close(): Promise<void> {
    this.drain.close();
    await this.repair.close();
  }

  private touchDue(id: string, which: 'primary' | 'backup', maxInactive: number): boolean {
    const e = this.refreshed.get(id);
    return !e || maxInactive <= 0 || Date.now() - e[which] >= maxInactive * 500;
  }

  private noteRefreshed(id: string, which: 'primary' | 'backup'): void {
    const e = this.refreshed.get(id);
    if (e) e[which] = Date.now();
    else
      this.refreshed.set(
        id,
        which === 'primary' ? { primary: Date.now(), backup: 0 } : { primary: 0, backup: Date.now() },
      );
  }

  /**
   * A node joined or left: the backups of sessions whose primary now has another next node are copied there now
   * (a repair of that node), rather than on each session's next request. Sessions on a node that left are read there
   * until it is drained (NodeDrain: their copies placed on the remaining nodes), and are relocated by their
   * next request.
   */
  nodesChanged(before: readonly string[]): void {
    const { nodes, cfg } = this.ctx;
    const now = nodes.ids;
    if (now.length < 2) return;
    // Where each list places backups, whatever is up now (placement.ts).
    const placed = (list: readonly string[], id: string) =>
      placeBackups(
        { list, isUp: () => true, isFailover: (n) => nodes.failoverIds.includes(n), zoneOf: (n) => nodes.zoneOf(n) },
        id,
        cfg.backupCount,
      );
    const targets = new Set<string>();
    for (const id of now) {
      const was = before.includes(id) ? placed(before, id) : [];
      for (const t of placed(now, id)) if (!was.includes(t)) targets.add(t);
    }
    for (const node of targets) void this.repair.schedule(node, 'node list changed');
  }

  /** Resolves when no repair or drain is running (tests, start-up). */
  idle(): Promise<void> {
    return Promise.all([this.repair.idle(), this.drain.idle()]).then(() => undefined);
  }

  private nextValidity(maxInactive: number, record: SessionRecord | undefined): Validity {
    const now = Date.now();
    // Strictly increasing per session, so versions stay ordered even within one millisecond.
    const previous = record?.validity?.thisAccessedTime ?? 0;
    return {
      maxInactiveInterval: maxInactive,
      lastAccessedTime: record?.validity?.thisAccessedTime ?? now,
      thisAccessedTime: Math.max(now, previous + 1),
    };
  }

  private decode(sid: SessionId, found: Found): StoredSession | null {
    return decodeOrDiscard(
      this.ctx,
      sid,
      found.node,
      found.bytes,
      () => void this.deleteEverywhere(this.ctx.idFormat.parse(found.id) ?? sid, found.node),
    );
  }

  /**
   * Session and validity, written in parallel. When the session is refused (item too large, out of memory: memcached
   * then also drops the old item) but the validity landed, both are put back as they were loaded (`previous`), or
   * the validity is deleted: never a validity record that vouches for bytes which were not written.
   */
  private async writePrimary(
    sid: SessionId,
    node: string,
    bytes: Buffer,
    validity: Validity,
    how: 'set' | 'add' = 'set',
    previous?: { bytes: Buffer; validity: Validity },
  ): Promise<OpResult<boolean>> {
    const { keys, nodes } = this.ctx;
    const client = nodes.client(node);
    const max = validity.maxInactiveInterval;
    const [s, v] = await Promise.all([
      client[how](keys.session(sid.id), bytes, toMemcachedExpiration(nonStickySessionTtl(max))),
      client[how](keys.validity(sid.id), encodeValidity(validity), toMemcachedExpiration(max)),
    ]);
    if (s.ok && s.value) this.noteRefreshed(sid.id, 'primary');
    if (!s.ok && v.ok) {
      if (previous) await putBack(client, keys.session(sid.id), keys.validity(sid.id), previous);
      else await client.delete(keys.validity(sid.id));
    }
    if (!s.ok) return s;
    // With add: false when either key existed already.
    return v.ok ? { ok: true, value: s.value && v.value } : v;
  }

  /**
   * bak: + bak:validity: on `node`. When the copy is refused but its validity landed, both are put back as loaded
   * (`previous`: the primary is restored the same way), or dropped: never a validity over an older (or no) copy.
   */
  private async writeBackupKeys(
    sid: SessionId,
    node: string,
    bytes: Buffer,
    validity: Validity,
    previous?: { bytes: Buffer; validity: Validity },
  ): Promise<OpResult<boolean>> {
    const { keys, nodes } = this.ctx;
    const client = nodes.client(node);
    const max = validity.maxInactiveInterval;
    const [s, v] = await Promise.all([
      client.set(keys.backup(sid.id), bytes, toMemcachedExpiration(nonStickySessionTtl(max))),
      client.set(keys.backupValidity(sid.id), encodeValidity(validity), toMemcachedExpiration(max)),
    ]);
    if (s.ok && s.value) this.noteRefreshed(sid.id, 'backup');
    if (!s.ok && v.ok) {
      if (previous && isItemTooLarge(s.error))
        await putBack(client, keys.backup(sid.id), keys.backupValidity(sid.id), previous);
      else await Promise.all([client.delete(keys.backupValidity(sid.id)), client.delete(keys.backup(sid.id))]);
    }
    return !s.ok ? s : v;
  }

  /** Full backup write on every backup node of the primary. A failure is counted and logged, never thrown. */
  private async writeBackup(
    sid: SessionId,
    primary: string,
    bytes: Buffer,
    validity: Validity,
    repair = false,
    previous?: { bytes: Buffer; validity: Validity },
  ): Promise<void> {
    const targets = this.backupTargets(primary);
    if (targets.length === 1) return this.writeBackupOn(sid, targets[0], bytes, validity, repair, previous);
    await Promise.all(targets.map((t) => this.writeBackupOn(sid, t, bytes, validity, repair, previous)));
  }

  private async writeBackupOn(
    sid: SessionId,
    target: string,
    bytes: Buffer,
    validity: Validity,
    repair = false,
    previous?: { bytes: Buffer; validity: Validity },
  ): Promise<void> {
    const r = await this.writeBackupKeys(sid, target, bytes, validity, previous);
    if (repair && r.ok) this.ctx.stats.backupsRewritten++;
    this.afterBackup(sid, target, r);
  }

  /** Unchanged session: new bak:validity, and `touch bak:` which also tells whether the copy is still there. */
  private async refreshBackup(sid: SessionId, target: string, bytes: Buffer, validity: Validity): Promise<void> {
    const client = this.ctx.nodes.client(target);
    const { v, t, due, ttl, item } = await this.refreshKeys(client, 'backup', sid, validity);
    if (due && t.ok && t.value) this.noteRefreshed(sid.id, 'backup');
    if (v.ok && t.ok && !t.value) {
      // The backup node restarted or was down when the session last changed (msm #300): write the copy again (add:
      // a later request's backup wins).
      this.ctx.stats.backupsRewritten++;
      return this.afterBackup(sid, target, await client.add(item, bytes, ttl));
    }
    this.afterBackup(sid, target, !v.ok ? v : t);
  }

  /**
   * A copy's validity record rewritten and, when due, `touch` of its item (t.value false: the item is gone). `item`:
   * the item's key, `ttl` its memcached expiration.
   */
  private async refreshKeys(client: NodeClient, which: 'primary' | 'backup', sid: SessionId, validity: Validity) {
    const { keys } = this.ctx;
    const max = validity.maxInactiveInterval;
    const ttl = toMemcachedExpiration(nonStickySessionTtl(max));
    const due = this.touchDue(sid.id, which, max);
    const item = which === 'primary' ? keys.session(sid.id) : keys.backup(sid.id);
    const setting = client.set(
      which === 'primary' ? keys.validity(sid.id) : keys.backupValidity(sid.id),
      encodeValidity(validity),
      toMemcachedExpiration(max),
    );
    // Mostly not due: the validity set alone, without a second promise to wait for.
    const [v, t] = due ? await Promise.all([setting, client.touch(item, ttl)]) : [await setting, FOUND];
    return { v, t, due, ttl, item };
  }

  /** The backup nodes to write now; none available (while backups are due) is counted. */
  private backupTargets(primary: string): string[] {
    const targets = this.backupNodesOf(primary);
    if (!targets.length && this.ctx.nodes.ids.length > 1 && this.ctx.cfg.backupCount > 0) {
      this.ctx.stats.backupsSkippedNoNode++;
      this.ctx.stats.requestsWithBackupFailure++;
    }
    return targets;
  }

  private afterBackup(sid: SessionId, node: string, r: OpResult<unknown>): void {
    if (r.ok) {
      this.ctx.nodes.markOk(node);
      return;
    }
    if (!isItemTooLarge(r.error)) this.ctx.nodes.markFailed(node, r.error);
    this.ctx.stats.requestsWithBackupFailure++;
    this.ctx.logger.warn(`session ${hashId(sid.id)}: backup on ${node} failed: ${r.error.message}`);
  }

  /** Every copy: session + validity on the primary, bak: keys on every other available node. true if any answered. */
  private async deleteEverywhere(sid: SessionId, primary: string): Promise<boolean> {
    const { keys, nodes } = this.ctx;
    const ops: Array<Promise<OpResult<boolean>>> = [];
    for (const node of nodes.ids) {
      if (!nodes.isAvailable(node)) continue;
      const c = nodes.client(node);
      // An id that names no node may have copies of either kind anywhere (placed under earlier node lists): a
      // destroyed session must not come back from one of them.
      if (node === primary || sid.nodeId === undefined)
        ops.push(c.delete(keys.session(sid.id)), c.delete(keys.validity(sid.id)));
      if (node === primary && sid.nodeId !== undefined) continue;
      if (nodes.ids.length > 1) ops.push(c.delete(keys.backup(sid.id)), c.delete(keys.backupValidity(sid.id)));
    }
    const rs = await Promise.all(ops);
    return rs.some((r) => r.ok);
  }
}

/** A copy's item and validity record written back as they were loaded (a refused write dropped the old item). */
async function putBack(
  client: NodeClient,
  itemKey: string,
  validityKey: string,
  previous: { bytes: Buffer; validity: Validity },
): Promise<void> {
  const max = previous.validity.maxInactiveInterval;
  await Promise.all([
    client.set(itemKey, previous.bytes, toMemcachedExpiration(nonStickySessionTtl(max))),
    client.set(validityKey, encodeValidity(previous.validity), toMemcachedExpiration(max)),
  ]);
}

/**
 * What a load learnt of the backups, against the copy it serves (`served`): the nodes whose copy is current (only
 * those may just be touched later), and whether one is older or missing (rewritten, counted as such). A node that did
 * not answer counts as stale only when `unknownIsStale`.
 */
function backupState(
  nodes: readonly string[],
  versions: ReadonlyArray<Validity | null | undefined>,
  served: Validity,
  unknownIsStale: boolean,
): { backupStale: boolean; backupNodes: string[] | undefined } {
  const current = nodes.filter((_, i) => versions[i]?.thisAccessedTime === served.thisAccessedTime);
  const backupStale = versions.some((v) =>
    v === undefined ? unknownIsStale : v === null || v.thisAccessedTime < served.thisAccessedTime,
  );
  return { backupStale, backupNodes: current.length ? current : undefined };
}

/** A `touch` not sent (not due): as if it found the item. */
const FOUND: OpResult<boolean> = Object.freeze({ ok: true, value: true });

/** Memcached refused the item itself (bigger than its -I item size): the node is healthy. */
function isItemTooLarge(e: Error): boolean {
  return /value too large|object too large|too large for cache/i.test(e.message);
}
