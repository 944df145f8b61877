// Real HTTP servers on loopback for middleware tests: requests are truly concurrent, sockets can be destroyed.
import * as http from 'http';
import type { AddressInfo } from 'net';
import express from 'express';
import { memcachedSession } from '../../lib/express/middleware';
import type { MemcachedSessionMiddleware, MemcachedSessionOptions } from '../../lib/express/middleware';
import { type MemcachedProcess, killAll, startMemcacheds } from './memcached';
import { RawClient } from './raw-client';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const signature: { sign(v: string, s: string): string } = require('cookie-signature');

export const SECRET = 'middleware-secret';

export interface Served {
  mw: MemcachedSessionMiddleware;
  app: express.Express;
  port: number;
  close(): Promise<void>;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json(): any;
}

export function sessionOptions(extra: Partial<MemcachedSessionOptions> = {}): MemcachedSessionOptions {
  return {
    memcachedNodes: 'n1:127.0.0.1:1',
    ...extra,
    session: {
      secret: SECRET,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 60_000 },
      ...(extra.session ?? {}),
    },
  };
}

/** An express app with memcachedSession() in front of `routes`, listening on a free loopback port. */
export async function serve(options: MemcachedSessionOptions, routes: (app: express.Express) => void): Promise<Served> {
  const mw = memcachedSession(options);
  const app = express();
  app.use(mw);
  routes(app);
  // Quiet error handler: status from err.status, no stack on stderr.
  app.use((err: any, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(err.status ?? 500).send(String(err.message));
  });
  const server = http.createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    mw,
    app,
    port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await mw.store.close();
    },
  };
}

export const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

export function request(port: number, path: string, opts: { cookie?: string; method?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: opts.method ?? 'GET',
        agent,
        headers: opts.cookie ? { cookie: opts.cookie } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Sends a request on its own socket and destroys the socket after `afterMs`. */
export function abortedRequest(port: number, path: string, cookie: string, afterMs: number): Promise<void> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false, headers: { cookie } });
    req.on('error', () => resolve());
    req.on('response', () => resolve());
    req.end();
    setTimeout(() => {
      req.destroy();
      resolve();
    }, afterMs);
  });
}

export function cookieFor(id: string, name = 'connect.sid', secret = SECRET): string {
  return `${name}=${encodeURIComponent('s:' + signature.sign(id, secret))}`;
}

/** The session id in a Set-Cookie header, or undefined. */
export function idFromSetCookie(headers: http.IncomingHttpHeaders, name = 'connect.sid'): string | undefined {
  for (const c of headers['set-cookie'] ?? []) {
    const m = new RegExp(`^${name}=([^;]+)`).exec(c);
    if (m) {
      const v = decodeURIComponent(m[1]);
      return v.slice(2, v.lastIndexOf('.'));
    }
  }
  return undefined;
}

/** Sum of `add` operations this store sent (only locks use add). */
export function addOps(s: { mw: MemcachedSessionMiddleware }): number {
  return Object.values(s.mw.store.stats().nodes).reduce((n, node) => n + node.ops.add, 0);
}

export function counter(s: { mw: MemcachedSessionMiddleware }, name: string): number {
  return s.mw.store.stats()[name] as number;
}

/** Status and body of a response, the body parsed as JSON when it is JSON. */
export function readJsonReply(res: http.IncomingMessage): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    let text = '';
    res.on('data', (c) => (text += c));
    res.on('end', () => {
      let body: any = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* text */
      }
      resolve({ status: res.statusCode!, body });
    });
    res.on('error', reject);
  });
}

/**
 * Two memcached processes (and raw clients) for one test file, and the app servers a test starts: closed after
 * each test. Register at the top level of a test file.
 */
export function memcachedFixture(n = 2): {
  readonly ps: MemcachedProcess[];
  readonly raws: RawClient[];
  servers: Served[];
} {
  const f = { ps: [] as MemcachedProcess[], raws: [] as RawClient[], servers: [] as Served[] };
  beforeAll(async () => {
    f.ps = await startMemcacheds(n);
    f.raws = f.ps.map((p) => new RawClient(p.port));
  });
  afterEach(async () => {
    await Promise.all(f.servers.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    f.raws.forEach((r) => r.close());
    await killAll(f.ps);
  });
  return f;
}
