// The one place that knows express-session's internals: what it does that its API does not promise. The store's
// uses first, then the middleware's.
//
// Checked against express-session 1.19.0 (installed: this repo's tests and express-session's own test suite run
// against it) and read against 1.17.0, 1.17.3, 1.18.0 and 1.18.2, where every behaviour below is the same (the cookie
// option as a function exists from 1.19.0 on; earlier versions never see one). SUPPORTED_VERSIONS is that range;
// test/unit/express-session-internals.test.ts fails when the installed express-session is outside it: read its
// index.js again before widening it.
//
// The store relies on: Store.prototype.createSession (private), the names of its res.end callbacks (onsave, ontouch),
// a Session's non-enumerable `req`. The middleware relies on:
// - getcookie and unsigncookie: the session id comes from the Cookie header (signed `s:` values, any secret
//   verifies), else cookie-parser's req.signedCookies, else a signed value in req.cookies; parsed and verified with
//   the `cookie` and `cookie-signature` modules express-session itself depends on;
// - the cookie name is `name`, else the deprecated `key`, else `connect.sid`;
// - requests whose path is outside the cookie's path get no session;
// - res.end is replaced synchronously inside the handler, before the store is asked for the session, and the
//   replacement only saves or touches the session: Set-Cookie comes from a headers hook, which runs either way;
// - no req.session when the headers are written: no Set-Cookie.
import * as path from 'path';
import type { IncomingMessage, ServerResponse } from 'http';
import { Store } from 'express-session';
import type { SessionData } from 'express-session';
import type { SessionOptionsGiven } from './option-parsers';

/** The express-session versions whose internals this module was checked against: from `from`, below `below`. */
export const SUPPORTED_VERSIONS = { from: '1.17.0', below: '1.20.0' } as const;

/** true when `version` (x.y.z) lies in SUPPORTED_VERSIONS. */
export function isSupportedVersion(version: string): boolean {
  const parts = (v: string) => v.split(/[.+-]/, 3).map(Number);
  const compare = (a: number[], b: number[]) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
  const v = parts(version);
  if (v.some((n) => !Number.isInteger(n))) return false;
  return compare(v, parts(SUPPORTED_VERSIONS.from)) >= 0 && compare(v, parts(SUPPORTED_VERSIONS.below)) < 0;
}

// --- the store's ------------------------------------------------------------------------------------------

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
export function beforeResponseStarts(
  req: { res?: { end: (...a: any[]) => any; writeHead: (...a: any[]) => any } },
  swap: () => void,
): void {
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

// --- the middleware's -------------------------------------------------------------------------------------

/** What the middleware reads from a request besides Node's: express's, cookie-parser's and express-session's additions. */
export type SessionRequest = IncomingMessage & {
  originalUrl?: string;
  signedCookies?: Record<string, string | undefined>;
  cookies?: Record<string, string | undefined>;
  session?: unknown;
  sessionID?: string;
};
type Next = (err?: unknown) => void;
type Handler = (req: any, res: any, next: Next) => void;

// The cookie parser and signer express-session itself uses, resolved from its own directory so both agree.
const sessionDir = path.dirname(require.resolve('express-session/package.json'));
const cookieLib: { parse(header: string): Record<string, string | undefined> } = require(
  require.resolve('cookie', { paths: [sessionDir] }),
);
const signature: { unsign(value: string, secret: string | Buffer): string | false } = require(
  require.resolve('cookie-signature', { paths: [sessionDir] }),
);

/** As unsigncookie: any secret verifies. */
function unsign(value: string, secrets: unknown[]): string | undefined {
  for (const s of secrets) {
    const r = signature.unsign(value, s as string);
    if (r !== false) return r;
  }
  return undefined;
}

/** As getcookie: the header first, then cookie-parser's signedCookies / cookies. */
function cookieValue(req: SessionRequest, name: string, secrets: unknown[]): string | undefined {
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

/**
 * The reader of the session id express-session will load for a request (`path`: the request's path, without the
 * query): undefined when it loads none.
 */
export function sessionCookieReader(
  options: SessionOptionsGiven,
): (req: SessionRequest, path: string) => string | undefined {
  const name = options.name ?? (options as { key?: string }).key ?? 'connect.sid';
  const secrets = Array.isArray(options.secret) ? options.secret : [options.secret];
  const cookie = options.cookie as unknown;
  return (req, path) => {
    const resolved = (typeof cookie === 'function' ? cookie(req) : cookie) as { path?: string } | undefined;
    if (!path.startsWith(resolved?.path || '/')) return undefined;
    return cookieValue(req, name, secrets);
  };
}

/**
 * Runs express-session's handler; `then` also receives the res.end it replaced. Ending the response through that one
 * skips express-session's save or touch (for when the store has done it already) and nothing else.
 */
export function runExpressSession(
  handler: Handler,
  req: SessionRequest,
  res: ServerResponse,
  then: (err: unknown, plainEnd: ServerResponse['end']) => void,
): void {
  const plainEnd = res.end;
  handler(req, res, (err?: unknown) => then(err, plainEnd));
}

/** No Set-Cookie for this request's session (one that was not stored): none is set without req.session. */
export function forgetSession(req: SessionRequest): void {
  delete req.session;
}
