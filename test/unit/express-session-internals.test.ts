// lib/express/express-session.ts relies on express-session internals: its Store.createSession, the names of its
// response callbacks, Session's `req`, its getcookie, cookie name and path rules. This pins the versions those were
// checked against (SUPPORTED_VERSIONS) and what each use expects.
import * as fs from 'fs';
import * as path from 'path';
import session from 'express-session';
import {
  SUPPORTED_VERSIONS,
  type SessionRequest,
  isSupportedVersion,
  sessionCookieReader,
} from '../../lib/express/express-session';

// The signer express-session itself uses (not a dependency of this package).
const { sign }: { sign(value: string, secret: string): string } = require(
  require.resolve('cookie-signature', { paths: [path.dirname(require.resolve('express-session/package.json'))] }),
);

describe('the versions', () => {
  it('the installed express-session is one whose internals were checked', () => {
    const { version } = JSON.parse(fs.readFileSync(require.resolve('express-session/package.json'), 'utf8'));
    expect([version, isSupportedVersion(version)]).toEqual([version, true]);
    expect(SUPPORTED_VERSIONS).toEqual({ from: '1.17.0', below: '1.20.0' });
  });

  it.each([
    ['1.16.2', false],
    ['1.17.0', true],
    ['1.18.2', true],
    ['1.19.0', true],
    ['1.19.7', true],
    ['1.20.0', false],
    ['2.0.0', false],
    ['1.20.0-beta.1', false],
    ['x', false],
  ])('version %s supported: %s', (version, supported) => {
    expect(isSupportedVersion(version)).toBe(supported);
  });
});

describe("the store's uses", () => {
  it('express-session still names its response callbacks onsave and ontouch, and keeps createSession on Store', () => {
    const src = fs.readFileSync(require.resolve('express-session'), 'utf8');
    expect(src).toMatch(/function onsave\(/);
    expect(src).toMatch(/function ontouch\(/);
    expect(typeof (session as any).Store.prototype.createSession).toBe('function');
  });

  it('a Session keeps its request as a non-enumerable req', () => {
    const req: any = { sessionID: 'x' };
    const s = new (session as any).Session(req, { cookie: new (session as any).Cookie() });
    expect(s.req).toBe(req);
    expect(Object.keys(s)).not.toContain('req');
  });
});

describe("the middleware's uses: the session id express-session will load", () => {
  const req = (cookie?: string, extra: Partial<SessionRequest> = {}) =>
    ({ headers: cookie ? { cookie } : {}, ...extra }) as SessionRequest;
  const signed = (id: string, secret: string) => 's:' + sign(id, secret);

  it('reads the signed id from the Cookie header, with any of the secrets', () => {
    const read = sessionCookieReader({ secret: ['new', 'old'] });
    expect(read(req(`connect.sid=${encodeURIComponent(signed('abc-n1', 'old'))}`), '/')).toBe('abc-n1');
    expect(read(req(`connect.sid=${encodeURIComponent(signed('abc-n1', 'other'))}`), '/')).toBeUndefined();
    expect(read(req('connect.sid=abc-n1'), '/')).toBeUndefined(); // unsigned
    expect(read(req(), '/')).toBeUndefined();
  });

  it('the cookie name is name, else key, else connect.sid', () => {
    const header = (name: string) => `${name}=${encodeURIComponent(signed('id1', 's'))}`;
    expect(sessionCookieReader({ secret: 's', name: 'sid' })(req(header('sid')), '/')).toBe('id1');
    expect(sessionCookieReader({ secret: 's', key: 'k' } as any)(req(header('k')), '/')).toBe('id1');
    expect(sessionCookieReader({ secret: 's', name: 'sid' })(req(header('connect.sid')), '/')).toBeUndefined();
  });

  it("falls back to cookie-parser's signedCookies, then to a signed value in cookies", () => {
    const read = sessionCookieReader({ secret: 's' });
    expect(read(req(undefined, { signedCookies: { 'connect.sid': 'id2' } }), '/')).toBe('id2');
    expect(read(req(undefined, { cookies: { 'connect.sid': signed('id3', 's') } }), '/')).toBe('id3');
    expect(read(req(undefined, { cookies: { 'connect.sid': 'id3' } }), '/')).toBeUndefined();
  });

  it("no id for a request outside the cookie's path (a fixed path, or one the cookie function gives)", () => {
    const cookie = `connect.sid=${encodeURIComponent(signed('id4', 's'))}`;
    const fixed = sessionCookieReader({ secret: 's', cookie: { path: '/app' } });
    expect(fixed(req(cookie), '/app/x')).toBe('id4');
    expect(fixed(req(cookie), '/other')).toBeUndefined();
    const perRequest = sessionCookieReader({
      secret: 's',
      cookie: ((r: SessionRequest) => ({ path: r.headers['x-base'] as string })) as any,
    });
    expect(perRequest(req(cookie, { headers: { cookie, 'x-base': '/b' } } as any), '/b/1')).toBe('id4');
    expect(perRequest(req(cookie, { headers: { cookie, 'x-base': '/b' } } as any), '/a/1')).toBeUndefined();
  });
});
