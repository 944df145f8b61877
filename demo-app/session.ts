// The one place the demo builds its session middleware.
import * as fs from 'fs';
import type { ConnectionOptions } from 'tls';
import type { RequestHandler } from 'express';
import type session from 'express-session';
import { memcachedSession } from '../lib';
import type { MemcachedStore } from '../lib';
import type { DemoConfig } from './config';
import { IGNORE_PATTERN } from './config';

export type SessionMiddleware = RequestHandler & { store: MemcachedStore };

export interface DemoSessionOptions {
  memcachedNodes: string;
  tls?: ConnectionOptions;
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
    ...(cfg.memcachedTlsCa ? { tls: { ca: fs.readFileSync(cfg.memcachedTlsCa) } } : {}),
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
  return memcachedSession(options);
}
