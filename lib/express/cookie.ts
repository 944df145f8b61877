// The session cookie as stored: what express-session's Cookie holds, reduced to plain data that encodes to the same
// bytes while the session is unchanged, and checked on the way back so express-session can always use it.
import type { SessionData } from 'express-session';
import type { StoredCookie, StoredSession } from '../transcoders/transcoder';

/**
 * Plain data for the transcoder: the cookie's fields and the top-level attributes (those `filter` lets through). The
 * cookie's `expires` moves with every request (express-session resets it), so it is left out whenever it can be
 * rebuilt from originalMaxAge: unchanged sessions then encode to the same bytes and are not rewritten. `loadedMaxAge`:
 * the cookie's originalMaxAge as loaded (its drift is undone).
 */
export function toStored(
  session: SessionData,
  filter: RegExp | undefined,
  loadedMaxAge: number | null | undefined,
): StoredSession {
  const cookie = storedCookieOf(session, loadedMaxAge);
  const out: StoredSession = cookie ? { cookie } : {};
  for (const k of Object.keys(session)) {
    if (k === 'cookie' || (filter && !filter.test(k))) continue;
    const v = (session as any)[k];
    if (v === undefined || typeof v === 'function') continue;
    out[k] = v;
  }
  return out;
}

// What cookie.serialize accepts (cookie 0.7, used by express-session): checked here without building a Cookie.
const COOKIE_PATH = /^[\u0020-\u003A\u003D-\u007E]*$/;
const COOKIE_DOMAIN = /^([.]?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)([.][a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const SAME_SITE = new Set(['lax', 'strict', 'none', 'auto']);
const PRIORITY = new Set(['low', 'medium', 'high']);
const optional = (v: unknown, ok: (v: unknown) => boolean) => v === undefined || v === null || ok(v);
const isBool = (v: unknown) => typeof v === 'boolean';

/**
 * Whether express-session can use this stored cookie: it throws (in res.end, where the request then hangs) on a
 * non-numeric originalMaxAge, a date out of range, an accessor name, or a field cookie.serialize rejects. Plain
 * checks, no Cookie built: this runs on every load.
 */
function isUsableCookie(cookie: StoredCookie): boolean {
  const oma = cookie.originalMaxAge;
  // Bounded so that now + originalMaxAge is still a Date (8.64e15 ms).
  if (!(oma === null || oma === undefined || (typeof oma === 'number' && Math.abs(oma) <= 4e15))) return false;
  const exp = cookie.expires;
  if (!(exp === null || exp === undefined || (typeof exp === 'string' && Number.isFinite(new Date(exp).getTime()))))
    return false;
  // Cookie's constructor assigns every field: `maxAge`, `expires`, `data` are accessors there, not data.
  if ('maxAge' in cookie || 'data' in cookie || '_expires' in cookie) return false;
  return (
    optional(cookie.secure, (v) => isBool(v) || v === 'auto')
    && optional(cookie.httpOnly, isBool)
    && optional(cookie.partitioned, isBool)
    && optional(cookie.path, (v) => typeof v === 'string' && COOKIE_PATH.test(v))
    && optional(cookie.domain, (v) => typeof v === 'string' && COOKIE_DOMAIN.test(v))
    && optional(cookie.sameSite, (v) => isBool(v) || (typeof v === 'string' && SAME_SITE.has(v.toLowerCase())))
    && optional(cookie.priority, (v) => typeof v === 'string' && PRIORITY.has(v.toLowerCase()))
  );
}

/**
 * The cookie as stored: Cookie.toJSON's fields, without `expires` when originalMaxAge can rebuild it, drift undone.
 * A plain cookie an app passes to set() is read as Cookie would read it: `maxAge` becomes originalMaxAge.
 */
function storedCookieOf(session: SessionData, loaded: number | null | undefined): StoredCookie | undefined {
  const src = session.cookie as any;
  if (src === undefined || src === null) return undefined;
  const data = typeof src.toJSON === 'function' ? src.toJSON() : { ...src };
  const maxAge =
    typeof data.originalMaxAge === 'number'
      ? data.originalMaxAge
      : typeof data.maxAge === 'number'
        ? data.maxAge
        : null;
  const cookie: StoredCookie = { originalMaxAge: maxAge };
  if (typeof loaded === 'number' && isMaxAgeDrift(loaded, cookie.originalMaxAge)) cookie.originalMaxAge = loaded;
  for (const k of Object.keys(data)) {
    // Cookie's accessors (maxAge, data) and its backing field are not data: they would break Cookie's constructor.
    if (k === 'originalMaxAge' || k === 'maxAge' || k === 'data' || k === '_expires' || data[k] === undefined) continue;
    if (k === 'expires' && cookie.originalMaxAge !== null) continue;
    cookie[k] = data[k] instanceof Date ? data[k].toISOString() : data[k];
  }
  return cookie;
}

/**
 * express-session calls touch, not set, when only the cookie changed (its modified check skips the cookie), e.g. a
 * "remember me" `cookie.maxAge = 30 days`. The stored cookie must follow, or the next load brings the old one back.
 */
export function cookieChanged(session: SessionData, loaded: StoredCookie): boolean {
  const now = storedCookieOf(session, loaded.originalMaxAge);
  if (!now) return true;
  const keys = Object.keys(now);
  if (keys.length !== Object.keys(loaded).length) return true;
  for (const k of keys) if (now[k] !== loaded[k]) return true;
  return false;
}

/**
 * express-session's resetMaxAge sets `maxAge = originalMaxAge`, and its setter reads the clock twice, so on some
 * requests originalMaxAge comes back a millisecond or two lower. Left alone, that drift would make an untouched
 * session look modified (a rewrite) and shorten its lifetime a little on every drift.
 */
const MAX_AGE_DRIFT_MS = 50;
function isMaxAgeDrift(loaded: number, now: number | null): boolean {
  return typeof now === 'number' && now <= loaded && loaded - now < MAX_AGE_DRIFT_MS;
}

/**
 * What `get` may return of a decoded session (listing too): 'malformed' when express-session could not use its
 * cookie, 'expired' when the cookie's expiry has passed, to the millisecond (memcached and the validity record keep
 * whole seconds; express-session allows `maxAge: 5`). 'live' rebuilds `cookie.expires` in place from `lastAccess`
 * (ms, the last save or touch). A session without a cookie is live and comes back as stored, like MemoryStore.
 */
export function checkCookie(session: StoredSession, lastAccess: number): 'live' | 'malformed' | 'expired' {
  const cookie = session.cookie;
  if (cookie === undefined) return 'live';
  if (!isUsableCookie(cookie)) return 'malformed';
  const expiresAt = restoreExpires(cookie, lastAccess);
  return expiresAt !== null && expiresAt <= Date.now() ? 'expired' : 'live';
}

/**
 * express-session expects `cookie.expires`; rebuild it from the last access and originalMaxAge (see toStored).
 * A Date, as the Cookie type declares it: express-session would parse a string back into one (createSession), so
 * building a string here would cost a format and a parse per load. Returns the expiry (ms; null: none).
 */
function restoreExpires(cookie: StoredCookie, lastAccess: number): number | null {
  if (cookie.expires !== undefined) return cookie.expires ? new Date(cookie.expires as string).getTime() : null;
  if (typeof cookie.originalMaxAge !== 'number') {
    cookie.expires = null;
    return null;
  }
  const at = lastAccess + cookie.originalMaxAge;
  cookie.expires = new Date(at);
  return at;
}
