// Every use of express-session's internals by the store, in one place. Checked against express-session 1.17-1.19
// (test/unit/express-session-internals.test.ts pins the versions).
import { Store } from 'express-session';
import type { SessionData } from 'express-session';

/**
 * express-session's own callbacks in its res.end hook (private names in its index.js). Answered on the spot, it
 * writes the response in one piece; answered later, it writes all of it but the last byte at once and that byte
 * from the callback: two writes (two syscalls, two segments) per response.
 */
const RESPONSE_HOOKS = new Set(['onsave', 'ontouch']);

export function isResponseHook(cb: (...a: any[]) => void): boolean {
  return RESPONSE_HOOKS.has(cb.name);
}

/** An express-session Session keeps its request as `req` (non-enumerable). */
export function requestOf(session: unknown): any {
  return session && typeof session === 'object' ? (session as any).req : undefined;
}

/** The socket of the response an express-session Session belongs to, when it can be corked. */
export function responseSocket(session: unknown): { cork(): void; uncork(): void } | undefined {
  const socket = requestOf(session)?.res?.socket;
  return socket && typeof socket.cork === 'function' && !socket.destroyed ? socket : undefined;
}

/** express-session's Store.prototype.createSession (marked private there): builds req.session from stored data. */
export function createSession(store: Store, req: any, sess: SessionData): any {
  return Store.prototype.createSession.call(store, req, sess);
}

/**
 * Runs `swap` just before the response goes out (express-session then sees an id change, saves under the new id
 * and sends the new cookie). Not behind express (no req.res): nothing to wrap.
 */
export function beforeResponseStarts(req: { res?: { end: (...a: any[]) => any; writeHead: (...a: any[]) => any } }, swap: () => void): void {
  const res = req.res;
  if (!res) return;
  const end = res.end;
  const writeHead = res.writeHead;
  res.end = function (this: unknown, ...args: any[]) {
    swap();
    return end.apply(this, args);
  };
  res.writeHead = function (this: unknown, ...args: any[]) {
    swap();
    return writeHead.apply(this, args);
  };
}
