// The stored cookie, without memcached: what is kept, what is rebuilt, what express-session could not use.
import session from 'express-session';
import type { SessionData } from 'express-session';
import { checkCookie, cookieChanged, toStored } from '../../lib/express/cookie';
import type { StoredSession } from '../../lib/transcoders/transcoder';

const { Cookie } = session as unknown as { Cookie: new (o?: object) => any };

function sessionWith(cookie: object, attrs: Record<string, unknown> = {}): SessionData {
  return { cookie: new Cookie(cookie), ...attrs } as unknown as SessionData;
}

describe('toStored', () => {
  it('leaves out expires when originalMaxAge can rebuild it, so an unchanged session encodes to the same bytes', () => {
    const a = toStored(sessionWith({ maxAge: 60_000 }), undefined, undefined);
    expect(a.cookie).toEqual({ originalMaxAge: 60_000, httpOnly: true, path: '/' });
    expect(a.cookie).not.toHaveProperty('expires');
  });

  it('keeps expires when there is no originalMaxAge to rebuild it from, as an ISO string', () => {
    const at = new Date(Date.now() + 3_600_000);
    const s = { cookie: { originalMaxAge: null, expires: at, path: '/' } } as unknown as SessionData;
    expect(toStored(s, undefined, undefined).cookie).toEqual({
      originalMaxAge: null,
      expires: at.toISOString(),
      path: '/',
    });
  });

  it("undoes express-session's millisecond drift of originalMaxAge against the loaded value", () => {
    const s = sessionWith({ maxAge: 59_998 });
    expect(toStored(s, undefined, 60_000).cookie!.originalMaxAge).toBe(60_000);
    // A real change (larger, or more than the drift) is kept.
    expect(toStored(s, undefined, 70_000).cookie!.originalMaxAge).toBe(59_998);
    expect(toStored(sessionWith({ maxAge: 61_000 }), undefined, 60_000).cookie!.originalMaxAge).toBe(61_000);
  });

  it('keeps top-level data, drops functions and undefined, and applies the attribute filter', () => {
    const s = sessionWith({ maxAge: 1000 }, { user: 'ann', cart: [1, 2], fn: () => 1, gone: undefined, _tmp: 1 });
    const all = toStored(s, undefined, undefined);
    expect(Object.keys(all).sort()).toEqual(['_tmp', 'cart', 'cookie', 'user']);
    expect(Object.keys(toStored(s, /^[^_]/, undefined)).sort()).toEqual(['cart', 'cookie', 'user']);
  });

  it('reads a plain cookie with maxAge (a direct store.set) as Cookie would', () => {
    const s = { cookie: { maxAge: 5000, path: '/x' }, n: 1 } as unknown as SessionData;
    expect(toStored(s, undefined, undefined)).toEqual({ cookie: { originalMaxAge: 5000, path: '/x' }, n: 1 });
  });

  it('stores a session without a cookie without one', () => {
    expect(toStored({ n: 1 } as unknown as SessionData, undefined, undefined)).toEqual({ n: 1 });
  });
});

describe('cookieChanged', () => {
  it('sees a changed maxAge ("remember me") and not the drift', () => {
    const loaded = toStored(sessionWith({ maxAge: 60_000 }), undefined, undefined).cookie!;
    expect(cookieChanged(sessionWith({ maxAge: 60_000 }), loaded)).toBe(false);
    expect(cookieChanged(sessionWith({ maxAge: 59_999 }), loaded)).toBe(false);
    expect(cookieChanged(sessionWith({ maxAge: 30 * 86_400_000 }), loaded)).toBe(true);
    expect(cookieChanged(sessionWith({ maxAge: 60_000, secure: true }), loaded)).toBe(true);
  });
});

describe('checkCookie', () => {
  const stored = (cookie: object): StoredSession => ({ cookie: { ...cookie } as any });

  it('rebuilds expires from the last access and originalMaxAge, to the millisecond', () => {
    const lastAccess = Date.now() - 1000;
    const s = stored({ originalMaxAge: 60_000, path: '/' });
    expect(checkCookie(s, lastAccess)).toBe('live');
    expect((s.cookie!.expires as unknown as Date).getTime()).toBe(lastAccess + 60_000);
  });

  it('finds a session expired once its cookie has, even within a second', () => {
    expect(checkCookie(stored({ originalMaxAge: 5 }), Date.now() - 6)).toBe('expired');
    expect(
      checkCookie(stored({ originalMaxAge: null, expires: new Date(Date.now() - 1).toISOString() }), Date.now()),
    ).toBe('expired');
  });

  it('refuses cookies express-session would throw on', () => {
    expect(checkCookie(stored({ originalMaxAge: 'soon' }), Date.now())).toBe('malformed');
    expect(checkCookie(stored({ originalMaxAge: 1000, path: 'a;b' }), Date.now())).toBe('malformed');
    expect(checkCookie(stored({ originalMaxAge: 1000, maxAge: 5 }), Date.now())).toBe('malformed');
    expect(checkCookie(stored({ originalMaxAge: 1000, sameSite: 'sometimes' }), Date.now())).toBe('malformed');
    expect(checkCookie(stored({ originalMaxAge: 1e16 }), Date.now())).toBe('malformed');
  });

  it('takes a session without a cookie as live, as MemoryStore does', () => {
    expect(checkCookie({ n: 1 }, Date.now())).toBe('live');
  });
});
