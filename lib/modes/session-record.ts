// What is known about one session between its load and its save, in one object (msm's MemcachedBackupSession).
// The store makes it at a load (or at the first save of a new session) and carries it on the session object; the
// mode reads it and records in it what it wrote; nothing else holds per-session state.
import { LRUCache } from 'lru-cache';
import type { SessionId } from '../memcached/session-id';
import type { Validity } from '../memcached/validity';
import type { StoredCookie, StoredSession } from '../transcoders/transcoder';

/** An encoding made before the response (memcachedSession()'s needsSave), for the save or touch that follows it. */
export interface Encoded {
  /** The id the bytes were encoded for (hashed ids carry it in the item): reused only for a save under that id. */
  id: string;
  stored: StoredSession;
  bytes: Buffer;
  unchanged: boolean;
}

export class SessionRecord {
  /** The id its bytes live under (after a relocation or takeover: the new id). */
  id: string;
  /** The bytes as loaded or last written (undefined: a new session not yet written): equal bytes mean unchanged. */
  bytes: Buffer | undefined;
  /** Non-sticky: the version of the copy loaded or last written. */
  validity?: Validity;
  /** Sticky: ms of the last save or touch of the local copy. */
  accessedAt?: number;
  /** Set when the load moved the session to a new id (relocation, route takeover): the response must carry it. */
  newId?: string;
  /** Non-sticky: the load found a backup older or missing; the next save or touch rewrites it. */
  backupStale?: boolean;
  /** Non-sticky: the nodes whose backup the load found current. Only those copies may just be touched. */
  backupNodes?: readonly string[];
  /** The cookie as loaded: a touch saves when it changed; originalMaxAge drift is undone against it. */
  cookie?: StoredCookie;
  /** The id the load was asked for, parsed once. */
  requested?: SessionId;
  /** indexBy: the value and id the session was indexed under. */
  indexed?: { value: string | undefined; id: string };
  /** memcachedSession(): its encoding for the store call that follows, or that it saved the session already. */
  pending?: Encoded | 'saved';
  /** Counted in sessionsCreated (a new session is counted once, at its first save). */
  counted = false;
  /** memcachedSession() or the app applies id changes itself (applyPendingIdChange): the cookie follows them. */
  appliesIdChanges = false;
  /** A pending id change, applied when the response starts or by applyPendingIdChange. */
  switchId?: () => void;

  constructor(id: string, bytes: Buffer | undefined) {
    this.id = id;
    this.bytes = bytes;
  }

  /** The one "unchanged?" decision: equal bytes under the same id as loaded or last written. */
  unchanged(id: string, bytes: Buffer): boolean {
    return sameBytes(this.id, this.bytes, id, bytes);
  }

  /** Whether these bytes under `id` are the ones this record holds (touch reuses them rather than encode). */
  bytesFor(id: string): Buffer | undefined {
    return this.id === id ? this.bytes : undefined;
  }

  /** A mode wrote the session whole under `id`. */
  wrote(id: string, bytes: Buffer, validity?: Validity): void {
    this.id = id;
    this.bytes = bytes;
    if (validity) {
      this.validity = validity;
      this.backupStale = false;
    }
  }

  /** A mode refreshed the session's expiry (new validity); the backup's state is known no more. */
  refreshed(validity: Validity): void {
    this.validity = validity;
    this.backupStale = false;
    this.backupNodes = undefined;
  }
}

/** Equal bytes under one id: the one comparison behind every "was the session modified?". */
export function sameBytes(idA: string | undefined, a: Buffer | undefined, idB: string, b: Buffer): boolean {
  return a !== undefined && idA === idB && a.length === b.length && a.equals(b);
}

/**
 * Where ids moved, across requests: old id -> new id for requests already in flight with the old cookie (sticky
 * takeover and relocation; seconds only, since ids recur a -> b -> a and an older entry would redirect a live id to
 * a stale one), and requested id -> the record of its latest load, when that load found the session under another id
 * (frameworks that rebuild the session object from get, e.g. Fastify, still save it where it lives).
 */
export class IdMoves {
  /** Set once a framework was seen keeping the cookie it was given: moved ids then stay in use (aliases). */
  fixedCookies = false;

  private readonly recent = new LRUCache<string, string>({ max: 10_000, ttl: 5_000 });
  private readonly forwards = new LRUCache<string, SessionRecord>({ max: 10_000, ttl: 10 * 60_000 });

  moved(oldId: string, newId: string): void {
    this.recent.set(oldId, newId);
  }

  /** The id a recent move sent `id` to. Empty but for moments after a move: no lookup then (lru-cache allocates). */
  movedTo(id: string): string | undefined {
    return this.recent.size ? this.recent.get(id) : undefined;
  }

  /** The record of the latest load of `id` that found the session under another id. */
  forwarded(id: string): SessionRecord | undefined {
    return this.forwards.size ? this.forwards.get(id) : undefined;
  }

  /** A load of `requested` made `record`: remembered when it lives under another id, forgotten otherwise. */
  loaded(requested: string, record: SessionRecord): void {
    if (record.newId && record.newId !== requested) this.forwards.set(requested, record);
    else if (this.forwards.size) this.forwards.delete(requested);
  }

  /** Both of `id`'s entries, taken out (a destroy); the id it had moved to, if any. */
  forget(id: string): string | undefined {
    const to = this.recent.get(id) ?? this.forwards.get(id)?.newId;
    this.recent.delete(id);
    this.forwards.delete(id);
    return to;
  }
}
