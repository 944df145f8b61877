// The one place the demo builds its session middleware.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import session from 'express-session';
import { MemcachedStore } from '../lib';
import type { DemoConfig } from './config';
import { IGNORE_PATTERN } from './config';

export type SessionMiddleware = RequestHandler & { store: MemcachedStore };

export interface DemoSessionOptions {
  memcachedNodes: string;
  failoverNodes?: string;
  sticky: boolean;
  route?: string;
  lockingMode: string;
  requestUriIgnorePattern: string;
  session: session.SessionOptions;
}

export function demoSession(cfg: DemoConfig): SessionMiddleware {
  const options: DemoSessionOptions = {
    memcachedNodes: cfg.memcachedNodes,
    failoverNodes: cfg.failoverNodes,
    sticky: cfg.sticky,
    route: cfg.route,
    lockingMode: cfg.lockingMode,
    requestUriIgnorePattern: IGNORE_PATTERN,
    session: {
      name: cfg.cookieName,
      secret: cfg.sessionSecret,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 30 * 60 * 1000, httpOnly: true, sameSite: 'lax' },
    },
  };
  return interimSession(options);
}

/**
 * Stand-in for memcachedSession() (issue 4) until it lands: express-session + MemcachedStore and the ignore
 * pattern; no locking.
 */
function interimSession(o: DemoSessionOptions): SessionMiddleware {
  const store = new MemcachedStore({ memcachedNodes: o.memcachedNodes, failoverNodes: o.failoverNodes, sticky: o.sticky, route: o.route });
  const ignore = new RegExp(`^(?:${o.requestUriIgnorePattern})$`);
  const inner = session({ ...o.session, store, genid: store.genid });
  const mw = ((req: Request, res: Response, next: NextFunction) => {
    if (ignore.test(req.originalUrl)) return next();
    inner(req, res, (err?: unknown) => {
      if (err) return next(err);
      store.applyPendingIdChange(req);
      next();
    });
  }) as SessionMiddleware;
  mw.store = store;
  return mw;
}
