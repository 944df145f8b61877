// A node that leaves the list drains (non-sticky). Until then its sessions' one current copy may be there alone, or
// their backup on the node after it, which could be the next to fail. The node is held (NodeSet.hold): loads read it
// (never write it) and a background pass walks its keys (`lru_crawler metadump hash`, as repair and clear do),
// rate-limited, and gives every session it held, as primary or backup, its copies on the remaining nodes: where a
// load looks for them now. Then its client closes. Every instance drains after its own list change (no lock: copies
// are compared by version and written with CAS or add, so two drains, or a drain and a request, never lose a write).
import { itemOfKey } from '../memcached/keys';
import { mapLimit } from '../core/parallel';
import type { ModeContext } from './mode';
import { relocationOf } from './copies';
import type { SessionId } from '../memcached/session-id';
import { decodeValidity, isValid } from '../memcached/validity';

/** Sessions checked at once, and per second, by one instance's drain of one node (each check: a few reads). */
const DRAIN_CONCURRENCY = 4;
const DRAIN_RATE = 1000;
/** Backup copies per session (backupCount). */
type Role = 'primary' | 'backup';

/** NodeRepair.copy: one session's copy from `from` to `to`, unless `to` holds the same or newer (CAS or add). */
export type CopyOne = (sid: SessionId, from: string, fromRole: Role, to: string, toRole: Role) => Promise<boolean>;

interface Place {
  node: string;
  role: Role;
}

export class NodeDrain {
  private readonly running = new Map<string, Promise<void>>();
  private closed = false;
  private readonly onLeft = (id: string) => this.start(id);

  constructor(
    private readonly ctx: ModeContext,
    private readonly copy: CopyOne,
  ) {
    ctx.nodes.on('left', this.onLeft);
  }

  /** Resolves when no drain is running (tests, store.ready()). */
  async idle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running.values()]);
  }

  /** Stops every drain now (close() does not wait for them): their walks fail, their sessions keep the copies made. */
  close(): void {
    this.closed = true;
    this.ctx.nodes.off('left', this.onLeft);
    for (const id of this.running.keys())
      if (!this.ctx.nodes.has(id)) this.ctx.nodes.client(id).abortWalks('the store is closing');
  }

  private start(left: string): void {
    const { nodes, stats, logger } = this.ctx;
    if (this.closed || this.running.has(left) || !nodes.hold(left)) return;
    stats.nodeDrains++;
    const p = this.drain(left)
      .catch((e: unknown) => logger.error(`drain of ${left} failed: ${(e as Error)?.message ?? e}`))
      .finally(() => {
        this.running.delete(left);
        stats.nodeDrainsDone++;
        nodes.release(left);
      });
    this.running.set(left, p);
  }

  /** Listed again, or the store is closing: the drain stops where it is. */
  private stopped(left: string): boolean {
    return this.closed || this.ctx.nodes.has(left);
  }

  private async drain(left: string): Promise<void> {
    const { nodes, logger } = this.ctx;
    logger.info(
      `drain of ${left} (left the node list): read until its sessions have copies on ${nodes.ids.join(', ')}`,
    );
    const counts = { checked: 0, copied: 0 };
    const said = () => `${counts.checked} sessions checked, ${counts.copied} copies written`;
    const walked = await this.walk(
      left,
      left,
      (sid, kind) => (kind === 'primary' ? sid.nodeId === undefined || sid.nodeId === left : true),
      counts,
    );
    if (this.stopped(left))
      return logger.info(
        `drain of ${left} stopped (${this.closed ? 'the store is closing' : 'listed again'}): ${said()}`,
      );
    if (walked.ok) return logger.info(`drain of ${left} done: ${said()}; ${left} is no longer read`);
    // As before drains: the backups of its sessions, on the node after it, get their second copy from there.
    const holder = nodes.nextAvailable(left);
    logger.warn(
      `drain of ${left}: ${walked.error.message}; ${said()}; copying its sessions' backups from ${holder ?? 'no node'}`,
    );
    if (!holder) return;
    const again = await this.walk(left, holder, (sid, kind) => kind === 'backup' && nodes.nodeOf(sid) === left, counts);
    if (!again.ok) logger.warn(`drain of ${left}: ${again.error.message} (${holder})`);
    logger.info(`drain of ${left} ended: ${said()}`);
  }

  /** Walks `node`'s keys: each session `wanted` (as its primary or backup copy there) gets its copies placed. */
  private async walk(
    left: string,
    node: string,
    wanted: (sid: SessionId, role: Role) => boolean,
    counts: { checked: number; copied: number },
  ): Promise<{ ok: true } | { ok: false; error: Error }> {
    const { nodes, keys, idFormat, stats } = this.ctx;
    const item = itemOfKey(keys, [...nodes.ids, left]);
    const held = (key: string): { sid: SessionId; role: Role } | undefined => {
      const found = item(key);
      if (found?.kind !== 'session' && found?.kind !== 'backup') return undefined;
      const sid = idFormat.parse(found.id);
      const role = found.kind === 'session' ? 'primary' : 'backup';
      return sid && wanted(sid, role) ? { sid, role } : undefined;
    };
    const started = Date.now();
    let checked = 0;
    const walked = await nodes.client(node).walkKeys(
      async (batch) => {
        const found = batch.map(held).filter((h): h is { sid: SessionId; role: Role } => h !== undefined);
        const done = await mapLimit(found, DRAIN_CONCURRENCY, (h) =>
          this.stopped(left) ? 0 : this.drainOne(h.sid, { node, role: h.role }),
        );
        checked += found.length;
        counts.checked += found.length;
        stats.drainChecked += found.length;
        for (const n of done) {
          counts.copied += n;
          stats.drainCopied += n;
        }
        // The rate limit: the nodes and the connections are shared with the requests being served.
        const due = started + (checked * 1000) / DRAIN_RATE - Date.now();
        if (due > 0 && !this.stopped(left)) await new Promise((r) => setTimeout(r, due).unref());
      },
      { keep: (key) => held(key) !== undefined },
    );
    return walked.ok ? { ok: true } : walked;
  }

  /**
   * One session found at `source`: its newest copy among `source`, its listed primary and the places it belongs on
   * now goes to every one of those places that holds an older one or none (a relocation marker too: it outranks the copy it replaced).
   * Returns the copies written.
   */
  private async drainOne(sid: SessionId, source: Place): Promise<number> {
    const { nodes, keys } = this.ctx;
    const places = this.placesOf(sid).filter((p) => p.node !== source.node && nodes.isAvailable(p.node));
    if (!places.length) return 0;
    // A listed primary's own copy may be newer than the backup found here (a backup write that failed).
    const primary = nodes.nodeOf(sid);
    const own = sid.nodeId !== undefined && nodes.has(primary) && nodes.isAvailable(primary);
    const candidates: Place[] = [source, ...places, ...(own ? [{ node: primary, role: 'primary' as const }] : [])];
    const versions = await Promise.all(
      candidates.map(async ({ node, role: r }) => {
        const v = await nodes
          .client(node)
          .get(r === 'primary' ? keys.validity(sid.id) : keys.backupValidity(sid.id), true);
        const validity = v.ok ? decodeValidity(v.value) : null;
        return validity && isValid(validity) ? validity.thisAccessedTime : -1;
      }),
    );
    let best = 0;
    for (let i = 1; i < candidates.length; i++) if (versions[i] > versions[best]) best = i;
    if (versions[best] < 0) return 0;
    const from = candidates[best];
    const written = await Promise.all(
      places
        .filter((p) => p !== from && versions[candidates.indexOf(p)] < versions[best])
        .map((p) => this.copy(sid, from.node, from.role, p.node, p.role)),
    );
    return written.filter(Boolean).length;
  }

  /**
   * Where a session's copies belong now that the node it was read from left, and where loads look for them:
   * - A session whose primary is listed: its backups' nodes (an id that names no node: its node now, by rendezvous,
   *   holds its primary copy too).
   * - A session whose primary left (this node or an earlier leaver): a load relocates it to its primary's first backup
   *   node in the list it left (relocationOf), reading backups from every node: backups there and on its backup nodes.
   */
  private placesOf(sid: SessionId): Place[] {
    const { nodes, cfg } = this.ctx;
    const primary = nodes.nodeOf(sid);
    const backup = (node: string): Place => ({ node, role: 'backup' });
    if (nodes.has(primary)) {
      const own: Place[] = sid.nodeId === undefined ? [{ node: primary, role: 'primary' }] : [];
      return [...own, ...nodes.backupNodesOf(primary, cfg.backupCount).map(backup)];
    }
    const target = relocationOf(this.ctx, sid, primary)?.node;
    return target ? [target, ...nodes.backupNodesOf(target, cfg.backupCount)].map(backup) : [];
  }
}
