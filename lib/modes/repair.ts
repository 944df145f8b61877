// Proactive re-replication for non-sticky mode. msm refreshes a backup only when a request touches the session
// (#300), so a node that comes back empty leaves every untouched session with one copy, and a second fault loses
// it. When a node returns (restarted, or reachable again), one instance copies back what belongs on it: its
// primaries from their bak: copies on other nodes, and the bak: copies of sessions whose primary precedes it.
// A copy never replaces a newer one (versions: the validity records' thisAccessedTime).
// Keys are listed with `lru_crawler metadump hash` (NodeClient.walkKeys: complete, streamed); a server without it
// (SASL-only, older than 1.6.9) is skipped and logged, and its sessions are repaired by their next request
// (read-repair in non-sticky.ts).
// A node that leaves the list is drained by NodeDrain (drain.ts), with this file's copy.
// When a node goes down and stays down past a short grace, the sessions that had a copy on it get a new copy on
// the next node placement gives them now (reReplicate), so a second fault before it returns loses nothing.
import { itemOfKey } from '../memcached/keys';
import { hashId } from '../core/logger';
import { mapLimit } from '../core/parallel';
import type { ModeContext } from './mode';
import type { SessionId } from '../memcached/session-id';
import { isMsmItem } from '../transcoders/transcoder';
import { type Validity, decodeValidity, encodeValidity, isValid, toMemcachedExpiration } from '../memcached/validity';

const CONCURRENCY = 8;
/** Only one instance repairs a node at a time (an `add` on the returned node). */
const REPAIR_LOCK_TTL = 30;
/** ms a node must stay down before its copies are re-replicated: twice the availability TTL, within these bounds. */
const MIN_DOWN_GRACE_MS = 1000;
const MAX_DOWN_GRACE_MS = 10_000;

/** s left for a validity record, and the session items that live one maxInactive longer. */
function remainingTtls(v: Validity, now = Date.now()): { validity: number; session: number } {
  if (v.maxInactiveInterval <= 0) return { validity: 0, session: 0 };
  const left = Math.max(1, Math.ceil(v.maxInactiveInterval - (now - v.thisAccessedTime) / 1000));
  return {
    validity: toMemcachedExpiration(left, now),
    session: toMemcachedExpiration(left + v.maxInactiveInterval, now),
  };
}

export class NodeRepair {
  private readonly running = new Map<string, Promise<void>>();
  private closed = false;
  private readonly onReturned = (id: string, reason: string) => this.schedule(id, reason);
  /** Graces being waited out, by node: not tracked, so idle() (and ready()) never waits for one. */
  private readonly graces = new Map<string, NodeJS.Timeout>();
  private readonly onDown = (id: string) => {
    if (this.closed || this.graces.has(id)) return;
    const { nodeAvailabilityCacheTTL } = this.ctx.cfg;
    const grace = Math.min(MAX_DOWN_GRACE_MS, Math.max(MIN_DOWN_GRACE_MS, 2 * nodeAvailabilityCacheTTL));
    const t = setTimeout(() => {
      this.graces.delete(id);
      void this.track(`down:${id}`, `re-replication of ${id} (down)`, () => this.stillDown(id));
    }, grace);
    t.unref?.();
    this.graces.set(id, t);
  };

  constructor(private readonly ctx: ModeContext) {
    ctx.nodes.on('returned', this.onReturned); // node lists can grow at run time: run() checks there is another node
    ctx.nodes.on('down', this.onDown);
  }

  /** Starts a repair of `node` unless one runs already in this process. Resolves when it is done. */
  schedule(node: string, reason = 'requested'): Promise<void> {
    return this.track(node, `repair of ${node}`, () => this.run(node, reason));
  }

  /** Runs `work` unless work under `key` (a node id) runs already in this process. */
  private track(key: string, what: string, work: () => Promise<void>): Promise<void> {
    const running = this.running.get(key);
    if (running || this.closed) return running ?? Promise.resolve();
    const p = work()
      .catch((e: unknown) => this.ctx.logger.error(`${what} failed: ${(e as Error)?.message ?? e}`))
      .finally(() => this.running.delete(key));
    this.running.set(key, p);
    return p;
  }

  async idle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running.values()]);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.graces.values()) clearTimeout(t);
    this.graces.clear();
    this.ctx.nodes.off('returned', this.onReturned);
    this.ctx.nodes.off('down', this.onDown);
    await Promise.allSettled([...this.running.values()]);
  }

  private async run(node: string, reason: string): Promise<void> {
    const { nodes, keys } = this.ctx;
    if (nodes.ids.length < 2 || !nodes.has(node)) return;
    const target = nodes.client(node);
    const lockKey = keys.lock(`repair-${node}`);
    const lock = await target.add(lockKey, Buffer.from('1'), REPAIR_LOCK_TTL, true);
    if (!lock.ok || !lock.value) return;
    try {
      await this.repairLocked(node, reason);
    } finally {
      void target.delete(lockKey);
    }
  }

  private async repairLocked(node: string, reason: string): Promise<void> {
    const { nodes, keys, idFormat, stats, logger } = this.ctx;
    const { backupCount } = this.ctx.cfg;
    stats.nodeRepairs++;
    const item = itemOfKey(keys, nodes.ids);
    const sessionOrBackup = (key: string) => {
      const found = item(key);
      return found && (found.kind === 'backup' || found.kind === 'session') ? found : undefined;
    };
    let checked = 0;
    let copied = 0;
    for (const other of nodes.ids) {
      if (other === node || this.closed || !nodes.isAvailable(other)) continue;
      // Streamed: batches are repaired while the walk goes on (NodeClient.walkKeys says when keys wait in memory).
      const walked = await nodes.client(other).walkKeys(
        async (batch) => {
          const tasks: Array<() => Promise<boolean>> = [];
          for (const key of batch) {
            const found = sessionOrBackup(key);
            if (!found) continue;
            const sid = idFormat.parse(found.id);
            if (!sid) continue;
            const primary = nodes.nodeOf(sid);
            if (found.kind === 'backup') {
              // A backup whose primary is the returned node: the primary copy may be gone or older.
              if (primary === node) tasks.push(() => this.copy(sid, other, 'backup', node, 'primary'));
              // A backup that belongs on the returned node too (backupCount > 1, or copies re-placed while it was
              // down): found here, whether or not its primary's walk comes first.
              else if (nodes.backupNodesOf(primary, backupCount).includes(node))
                tasks.push(() => this.copy(sid, other, 'backup', node, 'backup'));
            } else if (primary === other && nodes.backupNodesOf(other, backupCount).includes(node)) {
              // A primary on `other` whose backup belongs on the returned node.
              tasks.push(() => this.copy(sid, other, 'primary', node, 'backup'));
            }
          }
          checked += tasks.length;
          // A closing store starts no more copies.
          const done = await mapLimit(tasks, CONCURRENCY, (task) => !this.closed && task());
          for (const ok of done) if (ok) copied++;
        },
        { keep: (key) => sessionOrBackup(key) !== undefined },
      );
      if (!walked.ok)
        logger.warn(`repair of ${node}: ${walked.error.message}; its sessions are repaired on their next request`);
    }
    stats.sessionsRepaired += copied;
    logger.info(`repair of ${node} (${reason}): ${checked} sessions checked, ${copied} copies written`);
  }

  /**
   * `node` was marked down a grace ago (it may have been a blip, or it is back already): if it is still down and
   * listed, its copies are re-replicated.
   */
  private async stillDown(node: string): Promise<void> {
    const { nodes, cfg } = this.ctx;
    if (this.closed || cfg.backupCount < 1 || nodes.ids.length < 2 || !nodes.has(node) || nodes.isAvailable(node))
      return;
    // One instance at a time: the lock lives on the first node that is up.
    const holder = nodes.ids.find((id) => id !== node && nodes.isAvailable(id));
    if (!holder) return;
    const lockKey = this.ctx.keys.lock(`rereplicate-${node}`);
    const lock = await nodes.client(holder).add(lockKey, Buffer.from('1'), REPAIR_LOCK_TTL, true);
    if (!lock.ok || !lock.value) return;
    try {
      await this.reReplicate(node);
    } finally {
      void nodes.client(holder).delete(lockKey);
    }
  }

  /**
   * `down` is down: every surviving node's keys are walked. A primary that had a backup on `down` gets a copy on each
   * of its backup nodes now; a backup of a session whose primary is `down` gets a copy on each node placement gives
   * such a session now, one more than backupCount (its primary copy is out of reach). A copy never replaces a newer.
   */
  private async reReplicate(down: string): Promise<void> {
    const { nodes, keys, idFormat, stats, logger } = this.ctx;
    const { backupCount } = this.ctx.cfg;
    const item = itemOfKey(keys, nodes.ids);
    let checked = 0;
    let copied = 0;
    for (const other of nodes.ids) {
      if (other === down || this.closed || !nodes.isAvailable(other)) continue;
      // Which copies of a key found on `other` need a new home, and where.
      const targets = (key: string): { sid: SessionId; role: 'primary' | 'backup'; to: string[] } | undefined => {
        const found = item(key);
        const sid = found && (found.kind === 'backup' || found.kind === 'session') ? idFormat.parse(found.id) : null;
        if (!sid || !found) return undefined;
        const primary = nodes.nodeOf(sid);
        if (found.kind === 'session' && primary === other) {
          if (!nodes.backupNodesOf(other, backupCount, down).includes(down)) return undefined;
          return { sid, role: 'primary', to: nodes.backupNodesOf(other, backupCount) };
        }
        if (found.kind === 'backup' && primary === down) {
          const to = nodes.backupNodesOf(down, backupCount + 1).filter((t) => t !== other);
          return { sid, role: 'backup', to };
        }
        return undefined;
      };
      const walked = await nodes.client(other).walkKeys(
        async (batch) => {
          const tasks: Array<() => Promise<boolean>> = [];
          for (const key of batch) {
            const t = targets(key);
            if (!t?.to.length) continue;
            checked++;
            for (const to of t.to) tasks.push(() => this.copy(t.sid, other, t.role, to, 'backup'));
          }
          const done = await mapLimit(tasks, CONCURRENCY, (task) => !this.closed && task());
          for (const ok of done) if (ok) copied++;
        },
        { keep: (key) => targets(key) !== undefined },
      );
      if (!walked.ok) logger.warn(`re-replication of ${down}: ${walked.error.message}; ${other}'s copies skipped`);
    }
    stats.nodeReReplications++;
    stats.sessionsReReplicated += copied;
    logger.info(`re-replication of ${down} (down): ${checked} copies checked, ${copied} new copies written`);
  }

  /**
   * Copies one session from `from` (as its primary or backup keys) to `to`, unless `to` holds the same or newer. A
   * request may write `to` between this read and this write: each key is written only if it is still as it was read
   * (CAS), or added where it was absent, so that write wins. The session first, its validity only once the session
   * is in place: a validity record never vouches for bytes that were not written. Also the drain's copy (drain.ts).
   */
  async copy(
    sid: SessionId,
    from: string,
    fromRole: 'primary' | 'backup',
    to: string,
    toRole: 'primary' | 'backup',
  ): Promise<boolean> {
    const { nodes, keys } = this.ctx;
    const src = nodes.client(from);
    const dst = nodes.client(to);
    const k = (role: 'primary' | 'backup') =>
      role === 'primary'
        ? { session: keys.session(sid.id), validity: keys.validity(sid.id) }
        : { session: keys.backup(sid.id), validity: keys.backupValidity(sid.id) };
    const s = k(fromRole);
    const d = k(toRole);
    // The bytes and the record must be one version: a save landing between two reads would pair older bytes with a
    // newer record, and that copy would then pass for the newer session. A save writes the session before its record,
    // and memcached answers one connection's requests in order, so a record read before the bytes and again after them
    // (one round trip, in that order), unchanged, vouches for them.
    const [before, bytes, v, there, thereValidity] = await Promise.all([
      src.get(s.validity, true),
      src.get(s.session, true),
      src.get(s.validity, true),
      dst.gets(d.session, true),
      dst.gets(d.validity, true),
    ]);
    if (!before.ok || !v.ok || !before.value || !v.value || !before.value.equals(v.value)) return false;
    // Another application's item under a session key (foreignItems) is not copied.
    if (!bytes.ok || !there.ok || !thereValidity.ok || !bytes.value || !isMsmItem(bytes.value)) return false;
    const validity = decodeValidity(v.value);
    if (!validity || !isValid(validity)) return false;
    const have = thereValidity.value ? decodeValidity(thereValidity.value.value) : null;
    if (have && have.thisAccessedTime >= validity.thisAccessedTime) return false;
    const ttl = remainingTtls(validity);
    const put = (key: string, value: Buffer, expires: number, read: { cas: Buffer } | null) =>
      read ? dst.cas(key, value, expires, read.cas, true) : dst.add(key, value, expires, true);
    const ws = await put(d.session, bytes.value, ttl.session, there.value);
    const wv =
      ws.ok && ws.value
        ? await put(d.validity, encodeValidity(validity), ttl.validity, thereValidity.value)
        : undefined;
    if (wv?.ok && wv.value) return true;
    if (!ws.ok || (wv && !wv.ok)) this.ctx.logger.debug(`repair: copy of ${hashId(sid.id)} to ${to} failed`);
    return false;
  }
}
