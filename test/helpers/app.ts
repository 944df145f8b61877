// A small express + express-session app over a MemcachedStore, for integration tests.
import express from 'express';
import session from 'express-session';
// express-session's own signer (a dependency of it; no types published with it)
const { sign } = require('cookie-signature') as { sign(value: string, secret: string): string };
import type { MemcachedStore } from '../../lib';

export const SECRET = 'test-secret';

export function makeApp(store: MemcachedStore, sessionOptions: Partial<session.SessionOptions> = {}, useGenid = true) {
  const app = express();
  app.use(express.json());
  app.use(
    session({
      store,
      ...(useGenid ? { genid: store.genid } : {}),
      secret: SECRET,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 60_000 },
      ...sessionOptions,
    }),
  );
  const s = (req: express.Request) => req.session as any;
  app.get('/inc', (req, res) => {
    s(req).n = (s(req).n ?? 0) + 1;
    res.json({ id: req.sessionID, n: s(req).n });
  });
  app.get('/get', (req, res) => res.json({ id: req.sessionID, n: s(req).n ?? null, data: s(req).data ?? null }));
  app.post('/data', (req, res) => {
    s(req).data = req.body;
    res.json({ id: req.sessionID });
  });
  app.get('/destroy', (req, res, next) => req.session.destroy((e) => (e ? next(e) : res.json({ ok: true }))));
  app.get('/regenerate', (req, res, next) =>
    req.session.regenerate((e) => {
      if (e) return next(e);
      s(req).regenerated = true;
      res.json({ id: req.sessionID });
    }),
  );
  return app;
}

/** The Cookie header value express-session accepts for `id`. */
export function cookieFor(id: string, name = 'connect.sid'): string {
  return `${name}=${encodeURIComponent('s:' + sign(id, SECRET))}`;
}

/** The session id in a Set-Cookie header, or undefined. */
export function idFromSetCookie(headers: Record<string, any>): string | undefined {
  const set: string[] = headers['set-cookie'] ?? [];
  for (const c of set) {
    const m = /^connect\.sid=([^;]+)/.exec(c);
    if (m) {
      const v = decodeURIComponent(m[1]);
      return v.slice(2, v.lastIndexOf('.'));
    }
  }
  return undefined;
}
