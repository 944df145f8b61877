// memcachedSession(): the request-aware part of msm that a Store cannot see. Per request:
//   requestUriIgnorePattern -> (signed cookie + strategy says lock) in-process mutex, memcached lock
//   -> express-session -> store.applyPendingIdChange -> app -> on response finish/close: learn (auto), unlock.
import { relocationOf } from '../modes/copies';
import { sameBytes } from '../modes/session-record';
import session from 'express-session';
import type { IncomingMessage, ServerResponse } from 'http';
import { ConfigError, LockTimeoutError } from '../core/errors';
import type { Statistics } from '../core/stats';
import { type MemcachedSessionOptions, checkOptionNames, resolveMiddlewareOptions, storeOptionsOf } from './config';
import { type SessionRequest, forgetSession, runExpressSession, sessionCookieReader } from './express-session';
import { LockDecider, type LockHandle, type LockingConfig, SessionLocks } from './locking';
import type { SessionId } from '../memcached/session-id';
import { MemcachedStore } from './store';
import { recordOf } from './session-service';

export type { MemcachedSessionOptions } from './config';

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

/** What memcachedSession() set up, for every request. */
interface Setup {
  store: MemcachedStore;
  stats: Statistics;
  decider: LockDecider;
  locks: SessionLocks;
  expressSession: ReturnType<typeof session>;
  /** The session id express-session will load for a request, unparsed; undefined when it will not load one. */
  cookieId: (req: SessionRequest, path: string) => string | undefined;
  ignore: RegExp | undefined;
  locksAtAll: boolean;
  rejectOnTimeout: boolean;
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
  const locks = sessionLocks(store, locking);
  const setup: Setup = {
    store,
    stats,
    decider: new LockDecider(locking.strategy, stats),
    locks,
    expressSession: session({ ...sessionOptions, store, genid: store.genid }),
    cookieId: sessionCookieReader(sessionOptions),
    ignore: locking.requestUriIgnorePattern,
    locksAtAll: locking.strategy.kind !== 'none',
    rejectOnTimeout: locking.lockTimeoutAction === 'reject',
  };
  const mw = function memcachedSessionMiddleware(req: SessionRequest, res: ServerResponse, next: Next): void {
    handleRequest(setup, req, res, next);
  };
  Object.defineProperty(mw, 'store', { value: store, enumerable: true });
  Object.defineProperty(mw, 'locking', { value: locking, enumerable: true });
  Object.defineProperty(mw, 'locks', { value: locks, enumerable: true });
  return mw as unknown as MemcachedSessionMiddleware;
}

/** The in-process mutex and memcached lock, on the node that holds the session (or would after relocation). */
function sessionLocks(store: MemcachedStore, locking: LockingConfig): SessionLocks {
  return new SessionLocks({
    nodes: store.nodes,
    keys: store.keys,
    stats: store.statistics,
    logger: store.logger,
    lockWaitTimeout: locking.lockWaitTimeout,
    lockTimeoutAction: locking.lockTimeoutAction,
    lockExpiration: locking.lockExpiration,
    lockTarget: (sid: SessionId) => {
      const primary = store.nodes.nodeOf(sid);
      if (store.nodes.isAvailable(primary)) return { node: primary, id: sid.id };
      return relocationOf(store, sid, primary) ?? { node: primary, id: sid.id };
    },
  });
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/** One request: ignored, or run through express-session, after the lock when the strategy says so. */
function handleRequest(s: Setup, req: SessionRequest, res: ServerResponse, next: Next): void {
  // Another session middleware ran already (express-session does the same).
  if (req.session) return next();
  const url: string = req.originalUrl ?? req.url ?? '/';
  if (s.ignore?.test(url)) {
    s.stats.requestsIgnored++;
    return next();
  }
  if (!s.locksAtAll) return runSession(s, req, res, next, undefined);
  const path = pathOf(url);
  const sid = s.store.idFormat.parse(s.cookieId(req, path)) ?? undefined;
  // New sessions (no valid cookie) take no lock and teach auto nothing.
  if (!sid) return runSession(s, req, res, next, undefined);
  const pattern = `${req.method} ${path}`;
  const lock = s.decider.shouldLock(url, pattern);
  if (!lock && !s.decider.learns) return runSession(s, req, res, next, undefined);

  const state: RequestState = { done: false };
  // Exactly once, whichever comes first: finish (response sent, session saved) or close (aborted, errored).
  const onEnd = (finished: boolean) => {
    if (state.done) return;
    state.done = true;
    res.removeListener('finish', onFinish);
    res.removeListener('close', onClose);
    if (finished && s.decider.learns && state.loadedBytes) s.decider.observe(pattern, modified(s, req, state));
    void state.handle?.release();
  };
  const onFinish = () => onEnd(true);
  const onClose = () => onEnd(res.writableFinished);
  res.on('finish', onFinish);
  res.on('close', onClose);

  if (!lock) return runSession(s, req, res, next, state);
  lockThenRun(s, sid, req, res, next, state);
}

/** Takes the session's lock (once its node is known), then runs the request; 503 on timeout when so configured. */
function lockThenRun(
  s: Setup,
  sid: SessionId,
  req: SessionRequest,
  res: ServerResponse,
  next: Next,
  state: RequestState,
): void {
  const { store, locks } = s;
  const known = store.whenNodeKnown(sid.id);
  const locked = known
    ? known.then(
        () => locks.lock(store.idFormat.parse(sid.id) ?? sid),
        () => locks.lock(sid),
      )
    : locks.lock(sid);
  locked.then((handle) => {
    if (state.done) {
      // The client went away while we waited: nothing will run for it.
      void handle.release();
      return;
    }
    if (handle.outcome === 'timeout' && s.rejectOnTimeout) {
      s.stats.lockRejections++;
      void handle.release();
      res.setHeader('Retry-After', '1');
      return next(new LockTimeoutError());
    }
    state.handle = handle;
    runSession(s, req, res, next, state);
  }, next);
}

function runSession(
  s: Setup,
  req: SessionRequest,
  res: ServerResponse,
  next: Next,
  state: RequestState | undefined,
): void {
  runExpressSession(s.expressSession, req, res, (err, plainEnd) => {
    if (err) return next(err);
    s.store.applyPendingIdChange(req);
    saveBeforeResponse(s.store, req, res, next, state, plainEnd);
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
function saveBeforeResponse(
  store: MemcachedStore,
  req: SessionRequest,
  res: ServerResponse,
  next: Next,
  state: RequestState | undefined,
  plainEnd: ServerResponse['end'],
): void {
  const end = res.end;
  let held = false;
  const fail = (err: unknown) => {
    res.end = end;
    forgetSession(req);
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
function modified(s: Setup, req: SessionRequest, state: RequestState): boolean {
  const session = req.session as any;
  if (!session || req.sessionID !== state.loadedId) return true; // destroyed or regenerated
  if (state.modified !== undefined) return state.modified;
  try {
    const sid = s.store.idFormat.parse(req.sessionID);
    return (
      !sid || !sameBytes(state.loadedId, state.loadedBytes, sid.id, s.store.encodeItem(sid, s.store.toStored(session)))
    );
  } catch {
    return true;
  }
}
