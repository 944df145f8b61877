// express-session's Store contract answers through callbacks; connect-redis's users expect promises. Both, here.
import { isResponseHook, responseSocket } from './express-session';

/** Node-style callback every Store method takes (each also returns a promise when given none). */
export type Callback<T> = (err: any, value?: T) => void;

/**
 * Calls `cb` exactly once, on its own tick, outside the promise chain (as MemoryStore does): an exception it throws
 * is an uncaught exception, never an unhandled rejection or a hung request.
 */
export function settle<T>(p: Promise<T>, cb: Callback<T>): void {
  p.then(
    (v) => process.nextTick(cb, null, v),
    (e) => process.nextTick(cb, e),
  );
}

/** A promise for callers without a callback; with one, it is also settled into the callback (see settle). */
export function withCallback<T>(p: Promise<T>, cb: Callback<T> | undefined): Promise<T> {
  if (typeof cb === 'function') settle(p, cb);
  return p;
}

/**
 * The write methods' shared ending. `work` answers synchronously (undefined: done, nothing to wait for) or with a
 * promise; a promise is built only when the caller asked for one (no callback). express-session's own response
 * callbacks are called on the spot when nothing needs waiting for, and otherwise the response's socket is corked
 * until they have run (Node's end() flushes it), so the response leaves in one write. Every other callback, an app's
 * `req.session.save(cb)` included, is called on its own tick, as MemoryStore does.
 */
export function answer<T, S>(
  target: T,
  work: (this: T, raw: string, session: S) => Promise<void> | undefined,
  raw: string,
  session: S,
  cb: Callback<void> | undefined,
): Promise<void> | void {
  let p: Promise<void> | undefined;
  try {
    // A method and its arguments, not a closure: this runs for every save and touch.
    p = work.call(target, raw, session);
  } catch (e) {
    p = Promise.reject(e);
  }
  if (typeof cb !== 'function') return p ?? Promise.resolve();
  const hook = isResponseHook(cb);
  if (!p) return void (hook ? cb(null) : process.nextTick(cb, null));
  const socket = hook ? responseSocket(session) : undefined;
  if (!socket) return settle(p, cb);
  socket.cork();
  settle(p, (err) => {
    try {
      cb(err);
    } finally {
      socket.uncork();
    }
  });
}
