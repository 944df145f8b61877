// Loads and saves express-session sessions through a mode: validates every id before anything is built from it,
// turns sessions into plain data and bytes, carries each session's record (modes/session-record.ts) from its load to
// its save, and follows ids that moved. The Store contract around it is store.ts's.
import type { SessionData } from 'express-session';
import { ConfigError, SessionTooLargeError } from '../core/errors';
import type { Logger } from '../core/logger';
import { hashId } from '../core/logger';
import type { Statistics } from '../core/stats';
import type { KeyFormat } from '../memcached/keys';
import type { SessionId, SessionIdFormat } from '../memcached/session-id';
import type { LoadResult, SessionMode } from '../modes/mode';
import { itemUnderId } from '../modes/mode';
import type { IdMoves } from '../modes/session-record';
import { SessionRecord } from '../modes/session-record';
import type { UserIndex } from '../modes/user-index';
import type { StoredCookie, StoredSession, Transcoder } from '../transcoders/transcoder';
import { idInItem, maxInactiveOfCookie, transcodedBytes } from '../transcoders/transcoder';
import type { ResolvedConfig } from './config';
import { checkCookie, cookieChanged, toStored } from './cookie';
import { beforeResponseStarts, createSession, requestOf } from './express-session';

/** Where a session object carries its record. A symbol: invisible to JSON, to express-session's hash and to apps. */
export const RECORD: unique symbol = Symbol('express-msm.record');
/** On req once the app applies id changes itself (applyPendingIdChange): the cookie follows them. */
const APPLIES_IDS = Symbol('express-msm.appliesIdChanges');

export function recordOf(session: unknown): SessionRecord | undefined {
  return session && typeof session === 'object' ? (session as any)[RECORD] : undefined;
}

/** Defined once per session object, never deleted: a deleted property would slow express-session's hash of it. */
function attach(session: object, record: SessionRecord): void {
  if (Object.isExtensible(session))
    Object.defineProperty(session, RECORD, { value: record, configurable: true, writable: true });
}

export interface SessionServiceParts {
  config: ResolvedConfig;
  keys: KeyFormat;
  idFormat: SessionIdFormat;
  transcoder: Transcoder;
  statistics: Statistics;
  logger: Logger;
  mode: SessionMode;
  index: UserIndex | undefined;
  moves: IdMoves;
}

export class SessionService {
  /** Largest encoded session accepted; larger ones fail at set with a message naming the size. */
  maxSessionBytes: number;

  constructor(private readonly p: SessionServiceParts) {
    this.maxSessionBytes = p.config.maxSessionBytes;
  }

  /** Parses and validates a client-supplied id, following a recorded move. null: invalid, never reaches memcached. */
  resolve(raw: unknown, record?: SessionRecord): SessionId | null {
    const known = record?.requested;
    const sid = known && known.id === raw ? known : this.p.idFormat.parse(raw);
    if (!sid) return null;
    const movedTo = this.p.moves.movedTo(sid.id);
    const moved = movedTo ? this.p.idFormat.parse(movedTo) : null;
    return moved ?? sid;
  }

  /** A session held in this process (sticky), answered at once; undefined: only load() can answer. */
  loadLocal(raw: string, sid: SessionId | null, started: number): SessionData | null | undefined {
    const local = sid && this.p.mode.loadLocal ? this.p.mode.loadLocal(sid) : undefined;
    return local === undefined ? undefined : this.loaded(raw, sid!, local, started);
  }

  async load(raw: string, sid: SessionId | null, started: number): Promise<SessionData | null> {
    if (!sid) {
      this.p.statistics.invalidSessionIds++;
      this.p.statistics.requestsWithoutSession++;
      return null;
    }
    return this.loaded(raw, sid, await this.p.mode.load(sid), started);
  }

  /**
   * What express-session gets from a load: the session with its cookie checked and `expires` rebuilt, or null. `sid`
   * is what `raw` resolved to: another id when a recorded move redirected it.
   */
  private loaded(raw: string, sid: SessionId, loaded: LoadResult | null, started: number): SessionData | null {
    const { statistics, logger, keys } = this.p;
    statistics.time('load', performance.now() - started);
    if (!loaded) return null;
    const { session, record } = loaded;
    const moved = sid.id !== raw;
    if (moved && !record.newId) record.newId = sid.id;
    // An id whose keys hold its hash: the item must name it (two ids with one hash would otherwise share a session).
    if (keys.isHashed(record.id) && idInItem(record.bytes!) !== record.id) return null;
    const loadedCookie = session.cookie && { ...session.cookie };
    const state = checkCookie(session, record.validity?.thisAccessedTime ?? record.accessedAt ?? Date.now());
    if (state === 'malformed') {
      // Decoded, but express-session would throw on this cookie (in res.end, where the request then hangs).
      statistics.decodeFailures++;
      logger.warn(`session ${hashId(sid.id)}: stored cookie is malformed; treated as no session`);
      return null;
    }
    if (state === 'expired') {
      statistics.sessionsExpired++;
      return null;
    }
    if (loadedCookie) record.cookie = loadedCookie;
    if (!moved) record.requested = sid;
    record.counted = true;
    this.p.index?.onLoad(record, raw, session);
    attach(session, record);
    this.p.moves.loaded(raw, record);
    return session as unknown as SessionData;
  }

  /** A listed session as `get` would return it (without a record: a listing is not a request); undefined: not live. */
  listed(id: string, bytes: Buffer, lastAccess: number | undefined): SessionData | undefined {
    const sid = this.p.idFormat.parse(id);
    const session = sid && this.p.transcoder.decode(transcodedBytes(bytes), sid);
    return session && checkCookie(session, lastAccess ?? Date.now()) === 'live'
      ? (session as unknown as SessionData)
      : undefined;
  }

  /** undefined: saved synchronously (sticky with asynchronous backups). Throws on what cannot be stored. */
  save(raw: string, session: SessionData): Promise<void> | undefined {
    const record = this.recordFor(raw, session);
    const pre = this.takePending(record);
    // Saved moments ago by memcachedSession(), before the response: this is express-session's save of the same state.
    if (pre === 'saved') return undefined;
    const started = performance.now();
    const r = this.resolve(raw, record);
    if (!r) {
      throw ConfigError.saying(
        'express-msm: refusing to store a session under an id that has no key (empty, longer '
          + 'than 4096 characters, or a lone UTF-16 surrogate): check the genid option',
      );
    }
    this.noteCookieHandling(session);
    const { sid, alias } = this.whereTo(r, record);
    const maxInactive = this.maxInactiveOf(session.cookie as unknown as StoredCookie);
    if (maxInactive <= 0) return this.p.mode.destroy(sid);
    const reuse = pre?.id === sid.id ? pre : undefined;
    const stored = reuse?.stored ?? this.toStored(session);
    const bytes = reuse?.bytes ?? this.encodeItem(sid, stored);
    if (bytes.length > this.maxSessionBytes) {
      throw new SessionTooLargeError(
        `express-msm: session is ${bytes.length} bytes, above the ${this.maxSessionBytes}-byte limit (memcached item size); not stored`,
        bytes.length,
      );
    }
    const rec = record ?? this.newRecord(session, sid.id);
    const saving = this.p.mode.save(sid, bytes, maxInactive, rec);
    if (!saving && !alias && !this.p.index) return void this.saved(rec, !!pre, started);
    const done = () => this.saved(rec, !!pre, started);
    return (alias || this.p.index ? this.afterWrite(saving, sid, alias, session, maxInactive, rec) : saving!).then(
      done,
    );
  }

  /** undefined: done synchronously (sticky, nothing due in memcached). */
  touch(raw: string, session: SessionData): Promise<void> | undefined {
    const record = this.recordFor(raw, session);
    const encoded = this.takePending(record);
    // Saved moments ago in this request (memcachedSession): validity and TTLs are fresh.
    if (encoded === 'saved') return undefined;
    // memcachedSession() already compared the whole encoding, cookie included: no second look at the cookie.
    if (!encoded?.unchanged && record?.cookie && cookieChanged(session, record.cookie)) return this.save(raw, session);
    const r = this.resolve(raw, record);
    if (!r) return undefined;
    this.noteCookieHandling(session);
    const { sid, alias } = this.whereTo(r, record);
    const maxInactive = this.maxInactiveOf(session.cookie as unknown as StoredCookie);
    if (maxInactive <= 0) return this.p.mode.destroy(sid);
    const touching = this.p.mode.touch(sid, () => this.encodeItem(sid, this.toStored(session)), maxInactive, record);
    return alias || this.p.index ? this.afterWrite(touching, sid, alias, session, maxInactive, record) : touching;
  }

  async destroy(raw: string): Promise<void> {
    const sid = this.p.idFormat.parse(raw);
    if (!sid) return;
    const movedTo = this.p.moves.forget(sid.id);
    const moved = movedTo ? this.p.idFormat.parse(movedTo) : null;
    await Promise.all([this.p.mode.destroy(sid), moved ? this.p.mode.destroy(moved) : undefined]);
    await this.p.index?.onDestroy(sid.id);
  }

  /**
   * memcachedSession()'s question before the response: does this session need a save? Encodes once; the bytes are
   * kept in the session's record for the save that follows. New sessions need one when they hold attributes.
   */
  needsSave(session: SessionData, sessionId: string): boolean {
    const record = recordOf(session);
    const stored = this.toStored(session);
    const sid = this.p.idFormat.parse(sessionId);
    const loaded = record?.bytesFor(sessionId) !== undefined;
    if (!sid || (!loaded && Object.keys(stored).length <= 1)) return !loaded && Object.keys(stored).length > 1;
    const bytes = this.encodeItem(sid, stored);
    const same = loaded && record!.unchanged(sid.id, bytes);
    (record ?? this.newRecord(session, sid.id)).pending = { id: sid.id, stored, bytes, unchanged: same };
    return !same;
  }

  /** Whether needsSave found this session loaded and unchanged under `sessionId`: its touch is all that is due. */
  pendingUnchanged(session: SessionData, sessionId: string): boolean {
    const left = recordOf(session)?.pending;
    return left !== undefined && left !== 'saved' && left.unchanged && left.id === sessionId;
  }

  /**
   * express-session builds req.session here: the one Store hook that sees the request. When the load moved the
   * session to a new id (relocation, route takeover), the id is switched just before the response goes out, so
   * express-session sees an id change, saves under the new id and sends the new cookie.
   */
  createSession(store: import('express-session').Store, req: any, sess: SessionData): any {
    const record = recordOf(sess);
    const session = createSession(store, req, sess);
    if (record) attach(session, record);
    if (record?.newId && req.sessionID !== record.newId) this.switchIdAtResponse(store, req, req.sessionID, record);
    return session;
  }

  /**
   * Performs a pending id change (relocation, takeover) now rather than when the response goes out, so the app
   * sees the new req.sessionID. memcachedSession() calls it right after express-session. Idempotent.
   */
  applyPendingIdChange(req: any): void {
    // Behind express (req.res) the cookie follows id changes anyway (noteCookieHandling): no mark on every request.
    if (req && typeof req === 'object' && !req.res && !req[APPLIES_IDS])
      Object.defineProperty(req, APPLIES_IDS, { value: true });
    recordOf(req?.session)?.switchId?.();
  }

  /** s: the cookie's maxAge, else its expires, else defaultMaxInactiveInterval. <= 0 means already expired. */
  maxInactiveOf(cookie: StoredCookie | undefined): number {
    return maxInactiveOfCookie(cookie, this.p.config.defaultMaxInactiveInterval);
  }

  /** What is stored under `id` for this plain session (itemUnderId). */
  encodeItem(sid: SessionId, stored: StoredSession): Buffer {
    return itemUnderId(this.p.keys, sid.id, this.p.transcoder.encode(stored, sid));
  }

  /** Plain data for the transcoder (cookie.ts), drift of the loaded cookie's maxAge undone. */
  toStored(session: SessionData): StoredSession {
    return toStored(session, this.p.config.sessionAttributeFilter, recordOf(session)?.cookie?.originalMaxAge);
  }

  /** The session's record: on the object, or (a framework rebuilt the object from get) by the id it was loaded as. */
  private recordFor(raw: string, session: SessionData): SessionRecord | undefined {
    return recordOf(session) ?? this.p.moves.forwarded(raw);
  }

  private newRecord(session: SessionData, id: string): SessionRecord {
    const record = new SessionRecord(id, undefined);
    attach(session, record);
    return record;
  }

  /** What memcachedSession() left for this store call, taken: it serves one call. */
  private takePending(record: SessionRecord | undefined): SessionRecord['pending'] {
    const left = record?.pending;
    if (left !== undefined) record!.pending = undefined;
    return left;
  }

  private saved(record: SessionRecord, early: boolean, started: number): void {
    // Counted when first stored (express-session asks genid for every request without a cookie), once per session.
    if (!record.counted) {
      record.counted = true;
      this.p.statistics.sessionsCreated++;
    }
    if (early) record.pending = 'saved';
    this.p.statistics.time('save', performance.now() - started);
  }

  /**
   * Where a save goes: the id the load moved the session to, when the framework kept the old id (no req.res,
   * Fastify). The old id stays an alias of it, served through the mode's forwarding marker.
   */
  private whereTo(sid: SessionId, record: SessionRecord | undefined): { sid: SessionId; alias?: SessionId } {
    const moved = record?.newId && record.newId !== sid.id ? this.p.idFormat.parse(record.newId) : null;
    return moved ? { sid: moved, alias: sid } : { sid };
  }

  /** What follows a save or touch when there is more to write: the old id's alias, the user index. */
  private async afterWrite(
    writing: Promise<void> | undefined,
    sid: SessionId,
    alias: SessionId | undefined,
    session: SessionData,
    maxInactive: number,
    record: SessionRecord | undefined,
  ): Promise<void> {
    await writing;
    if (alias) await this.p.mode.keepAlias(alias, sid, maxInactive);
    if (this.p.index) await this.p.index.afterWrite(sid, session, maxInactive, record);
  }

  /**
   * express-session's sessions carry their request; it sends a changed id as a new cookie when the store can
   * switch req.sessionID in time (req.res, or the app calls applyPendingIdChange). Without that (a plain server),
   * and for another framework's session objects (Fastify's), the cookie stays as it was: from then on sticky mode
   * checks memcached on every load. Plain objects (direct store calls) say nothing about a framework.
   */
  private noteCookieHandling(session: SessionData): void {
    const { moves } = this.p;
    if (
      moves.fixedCookies
      || !session
      || typeof session !== 'object'
      || Object.getPrototypeOf(session) === Object.prototype
    )
      return;
    const req = requestOf(session);
    if (req && typeof req === 'object' && (req.res || req[APPLIES_IDS])) return;
    moves.fixedCookies = true;
    this.p.logger.info(
      'the framework keeps the session cookie it was given (no req.res: a plain server, or not express-session): moved sessions stay reachable under their old ids',
    );
  }

  private switchIdAtResponse(
    store: import('express-session').Store,
    req: any,
    oldId: string,
    record: SessionRecord,
  ): void {
    const newId = record.newId!;
    let done = false;
    const swap = () => {
      if (done) return;
      done = true;
      record.switchId = undefined;
      // Only if the app did not regenerate or destroy the session meanwhile.
      if (!req.session || req.sessionID !== oldId) return;
      req.sessionID = newId;
      const copy = Object.assign({}, req.session);
      attach(copy, record);
      store.createSession(req, copy);
    };
    record.switchId = swap;
    // Not behind express (no req.res): only an explicit applyPendingIdChange() switches the id.
    beforeResponseStarts(req, swap);
  }
}
