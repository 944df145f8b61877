// memcachedSession(): the request-aware part of msm that a Store cannot see. Per request:
//   requestUriIgnorePattern -> (signed cookie + strategy says lock) in-process mutex, memcached lock
//   -> express-session -> store.applyPendingIdChange -> app -> on response finish/close: learn (auto), unlock.
import * as path from 'path';
import session from 'express-session';
import type { IncomingMessage, ServerResponse } from 'http';
import { LockTimeoutError } from '../core/errors';
import { ConfigError, MemcachedSessionOptions, checkOptionNames, resolveMiddlewareOptions, storeOptionsOf } from './config';
import { LockDecider, LockHandle, LockingConfig, SessionLocks } from './locking';
import type { SessionId } from '../memcached/session-id';
import { MemcachedStore } from './store';
import { recordOf } from './session-service';

export type { MemcachedSessionOptions } from './config';

/** What the middleware reads from a request besides Node's: express's, cookie-parser's and express-session's additions. */
type SessionRequest = IncomingMessage & {
  originalUrl?: string;
  signedCookies?: Record<string, string | undefined>;
  cookies?: Record<string, string | undefined>;
  session?: unknown;
  sessionID?: string;
};
type Next = (err?: unknown) => void;

/** A connect-style handler over Node's own http types (express and connect accept it), so the published types
 * need no @types/express. */
export type MemcachedSessionMiddleware = ((req: IncomingMessage, res: ServerResponse, next: Next) => void) & {
  /** The MemcachedStore this middleware built (stats, close, ready). */
  readonly store: MemcachedStore;
  /** The validated locking options. */
  readonly locking: LockingConfig;
  /** The in-process mutex and memcached lock (diagnostics, tests). */
  readonly locks: SessionLocks;
};

// The cookie parser and signer express-session itself uses, resolved from its own directory so both agree.
const sessionDir = path.dirname(require.resolve('express-session/package.json'));
const cookieLib: { parse(header: string): Record<string, string | undefined> } = require(require.resolve('cookie', { paths: [sessionDir] }));
const signature: { unsign(value: string, secret: string | Buffer): string | false } =
  require(require.resolve('cookie-signature', { paths: [sessionDir] }));

/** express-session's unsigncookie: any secret verifies. */
function unsign(value: string, secrets: unknown[]): string | undefined {
  for (const s of secrets) {
    const r = signature.unsign(value, s as string);
    if (r !== false) return r;
  }
  return undefined;
}

/** express-session's getcookie (1.19): the header first, then cookie-parser's signedCookies / cookies. */
function cookieSessionId(req: any, name: string, secrets: unknown[]): string | undefined {
  let val: string | undefined;
  const header = req.headers?.cookie;
  if (header) {
    const raw = cookieLib.parse(header)[name];
    if (raw && raw.substr(0, 2) === 's:') val = unsign(raw.slice(2), secrets);
  }
  if (!val && req.signedCookies) val = req.signedCookies[name] || undefined;
  if (!val && req.cookies) {
    const raw = req.cookies[name];
    if (typeof raw === 'string' && raw.substr(0, 2) === 's:') val = unsign(raw.slice(2), secrets);
  }
  return typeof val === 'string' ? val : undefined;
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

interface RequestState {
  done: boolean;
  handle?: LockHandle;
  /** auto: what the loaded session looked like when the app got it. */
  loadedBytes?: Buffer;
  loadedId?: string;
  /** auto: the answer saveBeforeResponse already computed (the same byte comparison), so it is not encoded twice. */
  modified?: boolean;
}

/**
 * express-session composed with msm's request-aware features: requestUriIgnorePattern and session locking.
 * `mw.store` is the MemcachedStore it built.
 */
export function memcachedSession(options: MemcachedSessionOptions): MemcachedSessionMiddleware {
  if (!options || typeof options !== 'object') throw new ConfigError('options', options, 'expected an object');
  // Validated before the store opens any connection.
  checkOptionNames(options, 'middleware');
  const { locking, session: sessionOptions } = resolveMiddlewareOptions(options);
  const store = new MemcachedStore(storeOptionsOf(options));
  const stats = store.statistics;
  const decider = new LockDecider(locking.strategy, stats);
  const locks = new SessionLocks({
    nodes: store.nodes,
    keys: store.keys,
    stats,
    logger: store.logger,
    operationTimeout: store.config.operationTimeout,
    lockExpiration: locking.lockExpiration,
    lockTarget: (sid: SessionId) => {
      const primary = store.nodes.nodeOf(sid);
      if (store.nodes.isAvailable(primary)) return { node: primary, id: sid.id };
      const moved = store.nodes.nextAvailable(primary);
      return moved ? { node: moved, id: store.idFormat.withNode(sid, moved) } : { node: primary, id: sid.id };
    },
  });
  const expressSession = session({ ...sessionOptions, store, genid: store.genid });
  const cookieName = sessionOptions.name ?? (sessionOptions as any).key ?? 'connect.sid';
  const secrets = Array.isArray(sessionOptions.secret) ? sessionOptions.secret : [sessionOptions.secret];
  const cookieOptions = sessionOptions.cookie as any;
  const ignore = locking.requestUriIgnorePattern;
  const locksAtAll = locking.strategy.kind !== 'none';
  const rejectOnTimeout = locking.lockTimeoutAction === 'reject';

  /** The id express-session will load for this request, validated; undefined when it will not load one. */
  function sessionIdOf(req: any, url: string): SessionId | undefined {
    const resolved = typeof cookieOptions === 'function' ? cookieOptions(req) : cookieOptions;
    // express-session skips requests outside the cookie's path.
    if (!pathOf(url).startsWith(resolved?.path || '/')) return undefined;
    return store.idFormat.parse(cookieSessionId(req, cookieName, secrets)) ?? undefined;
  }

  function runSession(req: SessionRequest, res: ServerResponse, next: Next, state: RequestState | undefined): void {
    // res.end before express-session wraps it (it does so before it loads the session).
    const plainEnd = res.end;
    expressSession(req as any, res as any, (err?: unknown) => {
      if (err) return next(err);
      store.applyPendingIdChange(req);
      saveBeforeResponse(req, res, next, state, plainEnd);
      if (state) {
        state.loadedBytes = recordOf(req.session)?.bytes;
        state.loadedId = req.sessionID;
      }
      next();
    });
  }

  /**
   * express-session writes the response before store.set answers, so a failed write could only follow a 200.
   * Here the session is saved first (when it needs it) and the response waits: a write that fails on every
   * node becomes an error for the app's error handler (a 5xx), as msm fails the request.
   *
   * Once the store has saved or refreshed the session here, express-session's own end has nothing left to do but
   * hash the session twice to find that out (and call the store for a no-op): the response then ends through
   * `plainEnd`, the res.end express-session wrapped. Everything else (no session, a new session without attributes,
   * a regenerated one) still ends through express-session.
   */
  function saveBeforeResponse(req: SessionRequest, res: ServerResponse, next: Next, state: RequestState | undefined,
    plainEnd: ServerResponse['end']): void {
    const end = res.end;
    let held = false;
    const fail = (err: unknown) => {
      res.end = end;
      // No cookie for a session that was not stored (express-session sets none without req.session).
      delete (req as any).session;
      next(err);
    };
    res.end = function (this: ServerResponse, ...args: any[]) {
      const s = req.session as any;
      if (held || !s || res.headersSent || typeof req.sessionID !== 'string') return (end as any).apply(this, args);
      let needed = true;
      try {
        needed = store.needsSave(s, req.sessionID);
      } catch {
        // A session the transcoder refuses (Avro schema): the save below fails with its message, a 5xx, not a hang.
      }
      if (state) state.modified = needed;
      if (!needed) {
        let touching: Promise<void> | undefined | false;
        try {
          touching = store.touchUnchanged(s, req.sessionID);
        } catch {
          touching = false;
        }
        if (touching === false) return (end as any).apply(this, args);
        if (!touching) return (plainEnd as any).apply(this, args);
        held = true;
        touching.then(() => (plainEnd as any).apply(res, args), fail);
        return this;
      }
      held = true;
      // The store itself, not req.session.save(): express-session's wrapper of save hashes the whole session.
      store.set(req.sessionID, s, (err?: Error) => {
        if (err) return fail(err);
        (plainEnd as any).apply(res, args);
      });
      return this;
    } as any;
  }

  /** auto: did this request modify the session it loaded? Same test as the store's: the encoded bytes. */
  function modified(req: SessionRequest, state: RequestState): boolean {
    const s = req.session as any;
    if (!s || req.sessionID !== state.loadedId) return true; // destroyed or regenerated
    if (state.modified !== undefined) return state.modified;
    try {
      const sid = store.idFormat.parse(req.sessionID);
      return !sid || !store.encodeItem(sid, store.toStored(s)).equals(state.loadedBytes!);
    } catch {
      return true;
    }
  }

  const mw = function memcachedSessionMiddleware(req: SessionRequest, res: ServerResponse, next: Next): void {
    // Another session middleware ran already (express-session does the same).
    if ((req as any).session) return next();
    const url: string = req.originalUrl ?? req.url ?? '/';
    if (ignore && ignore.test(url)) {
      stats.requestsIgnored++;
      return next();
    }
    if (!locksAtAll) return runSession(req, res, next, undefined);
    const sid = sessionIdOf(req, url);
    // New sessions (no valid cookie) take no lock and teach auto nothing.
    if (!sid) return runSession(req, res, next, undefined);
    const pattern = `${req.method} ${pathOf(url)}`;
    const lock = decider.shouldLock(url, pattern);
    if (!lock && !decider.learns) return runSession(req, res, next, undefined);

    const state: RequestState = { done: false };
    // Exactly once, whichever comes first: finish (response sent, session saved) or close (aborted, errored).
    const onEnd = (finished: boolean) => {
      if (state.done) return;
      state.done = true;
      res.removeListener('finish', onFinish);
      res.removeListener('close', onClose);
      if (finished && decider.learns && state.loadedBytes) decider.observe(pattern, modified(req, state));
      void state.handle?.release();
    };
    const onFinish = () => onEnd(true);
    const onClose = () => onEnd(res.writableFinished);
    res.on('finish', onFinish);
    res.on('close', onClose);

    if (!lock) return runSession(req, res, next, state);
    const known = store.whenNodeKnown(sid.id);
    (known ? known.then(() => locks.lock(store.idFormat.parse(sid.id) ?? sid), () => locks.lock(sid)) : locks.lock(sid)).then((handle) => {
      if (state.done) {
        // The client went away while we waited: nothing will run for it.
        void handle.release();
        return;
      }
      if (handle.outcome === 'timeout' && rejectOnTimeout) {
        stats.lockRejections++;
        void handle.release();
        res.setHeader('Retry-After', '1');
        return next(new LockTimeoutError());
      }
      state.handle = handle;
      runSession(req, res, next, state);
    }, next);
  };

  Object.defineProperty(mw, 'store', { value: store, enumerable: true });
  Object.defineProperty(mw, 'locking', { value: locking, enumerable: true });
  Object.defineProperty(mw, 'locks', { value: locks, enumerable: true });
  return mw as unknown as MemcachedSessionMiddleware;
}
