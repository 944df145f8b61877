// express-session's optional Store methods all/length/ids/clear over every node. Keys come from a streamed walk of
// each node (NodeClient.walkKeys, `lru_crawler metadump hash`) and are handled a batch at a time. A session is
// listed once, from its primary copy (sticky: the local store, then memcached's copies of sessions not held here);
// backups, validity records, locks, probe markers and other applications' items are never listed.
import { StorageUnavailableError } from '../core/errors';
import { itemOfKey, keyOfPart } from '../memcached/keys';
import type { KeyItem } from '../memcached/keys';
import type { ModeContext, SessionMode } from './mode';
import { idInItem, isMsmItem } from '../transcoders/transcoder';
import { decodeValidity } from '../memcached/validity';

/** Keys handed over per batch: bounds memory and the gets in flight per node. */
const BATCH = 500;
/** A token written by locking.ts: 32 hex characters. */
const LOCK_TOKEN = /^[0-9a-f]{32}$/;

export class SessionLister {
  constructor(
    private readonly ctx: ModeContext,
    private readonly mode: SessionMode,
  ) {}

  /** Calls `each` for every live session (the copy `get` would serve), each session once. */
  async forEach(each: (id: string, bytes: Buffer, lastAccess: number | undefined) => void): Promise<void> {
    const { idFormat } = this.ctx;
    if (this.mode.localSessions)
      for (const [id, bytes, accessedAt] of this.mode.localSessions()) each(id, bytes, accessedAt);
    const item = itemOfKey(this.ctx.keys, this.ctx.nodes.ids);
    const sessionKey = (key: string) => {
      const found = item(key);
      return found?.kind === 'session' && (found.id === undefined || idFormat.parse(found.id) !== null)
        ? found
        : undefined;
    };
    await this.walk(
      (key) => sessionKey(key) !== undefined,
      async (node, batch) => {
        const found = batch.map(sessionKey).filter((f): f is KeyItem => f !== undefined);
        const sids = await Promise.all(
          found.map(async (f) => idFormat.parse(f.id ?? (await this.idOfHashed(node, f.part)))),
        );
        const copies = await Promise.all(sids.map((sid) => sid && this.mode.peek(sid, node)));
        copies.forEach((c, i) => c && each(sids[i]!.id, c.bytes, c.validity?.thisAccessedTime));
      },
    );
  }

  /** A hashed id's key does not hold it: its session item does (idInItem). */
  private async idOfHashed(node: string, part: string): Promise<string | undefined> {
    const r = await this.ctx.nodes.client(node).get(keyOfPart(this.ctx.keys, 'session', part), true);
    if (!r.ok) throw r.error;
    return r.value ? idInItem(r.value) : undefined;
  }

  /**
   * Deletes every item of this store's sessions: session, validity, bak:, bak:validity:, locks, relocation markers
   * (and the sticky local store). An item is deleted only when its bytes are express-msm's, so another application's
   * item under a key of the same shape survives. Returns the number of items deleted.
   */
  async clear(): Promise<number> {
    this.mode.clearLocal?.();
    const { nodes, keys } = this.ctx;
    let deleted = 0;
    const item = itemOfKey(this.ctx.keys, this.ctx.nodes.ids);
    const ours = (key: string) => {
      const found = item(key);
      return found && (found.id === undefined || this.ctx.idFormat.parse(found.id)) ? { key, ...found } : undefined;
    };
    await this.walk(
      (key) => ours(key) !== undefined,
      async (node, batch) => {
        const client = nodes.client(node);
        const items = batch.map(ours).filter((f): f is NonNullable<ReturnType<typeof ours>> => f !== undefined);
        const verdicts = await Promise.all(
          items.map(async (f) => {
            const r = await client.get(f.key, true);
            if (!r.ok) throw r.error;
            if (!r.value) return false;
            if (f.kind === 'session' || f.kind === 'backup') return isMsmItem(r.value);
            if (f.kind === 'lock') return LOCK_TOKEN.test(r.value.toString('latin1'));
            // A validity record has no header: ours when its session item is ours, or gone.
            if (!decodeValidity(r.value)) return false;
            const owner = await client.get(keyOfPart(keys, f.kind === 'validity' ? 'session' : 'backup', f.part), true);
            if (!owner.ok) throw owner.error;
            return !owner.value || isMsmItem(owner.value);
          }),
        );
        const gone = await Promise.all(items.map((f, i) => (verdicts[i] ? client.delete(f.key) : undefined)));
        for (const d of gone) {
          if (d && !d.ok) throw d.error;
          if (d?.value) deleted++;
        }
      },
    );
    return deleted;
  }

  /** Walks every node (in parallel); a node that is down or cannot be listed fails the whole call, loudly. */
  private async walk(
    keep: (key: string) => boolean,
    onBatch: (node: string, batch: string[]) => Promise<void>,
  ): Promise<void> {
    const { nodes } = this.ctx;
    await nodes.refresh();
    const down = nodes.ids.filter((id) => !nodes.isAvailable(id));
    if (down.length)
      throw new StorageUnavailableError(
        `express-msm: cannot list sessions: memcached node ${down.join(', ')} is unavailable`,
      );
    await Promise.all(
      nodes.ids.map(async (node) => {
        const r = await nodes.client(node).walkKeys((batch) => onBatch(node, batch), { batchSize: BATCH, keep });
        if (!r.ok)
          throw new StorageUnavailableError(`express-msm: cannot list sessions: ${r.error.message}`, {
            cause: r.error,
          });
      }),
    );
  }
}
