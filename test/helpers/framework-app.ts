// One app instance for test/helpers/frameworks.ts: MSM_FRAMEWORK = plain | fastify, MSM_OPTIONS = the store's
// options as JSON. Prints `LISTENING <port>`; SIGTERM closes the server and the store.
import * as http from 'http';
import type { AddressInfo } from 'net';
import session from 'express-session';
import Fastify from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import { MemcachedStore } from '../../lib';

const store = new MemcachedStore(JSON.parse(process.env.MSM_OPTIONS!));
const maxAge = Number(process.env.MSM_MAX_AGE ?? 60_000);

function answer(res: http.ServerResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
}

/** /__stats and /__ready, outside any session handling. */
function admin(url: string | undefined, res: http.ServerResponse): boolean {
  if (url === '/__stats') answer(res, 200, store.stats());
  else if (url === '/__ready')
    store.ready().then(
      () => answer(res, 200, {}),
      (e) => answer(res, 500, { error: String(e) }),
    );
  else return false;
  return true;
}

async function plain(): Promise<() => Promise<void>> {
  const mw = session({
    store,
    genid: store.genid,
    secret: 'plain-secret',
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge },
  });
  const server = http.createServer((req: any, res) => {
    if (admin(req.url, res)) return;
    mw(req, res as any, (err?: unknown) => {
      if (err) return answer(res, 500, { error: String((err as Error).message) });
      const s = req.session;
      if (req.url === '/destroy') return s.destroy((e?: Error) => answer(res, e ? 500 : 200, { destroyed: !e }));
      if (req.url === '/inc') s.n = (s.n ?? 0) + 1;
      answer(res, 200, { id: req.sessionID, n: s.n ?? null });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(`LISTENING ${(server.address() as AddressInfo).port}\n`);
  return async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
}

async function fastify(): Promise<() => Promise<void>> {
  const app = Fastify();
  await app.register(fastifyCookie);
  await app.register(fastifySession, {
    store,
    idGenerator: store.genid,
    secret: 'a-fastify-session-secret-of-32-characters-or-more',
    saveUninitialized: false,
    cookie: { secure: false, maxAge },
  });
  app.get('/inc', async (req) => {
    const s = req.session as any;
    s.n = (s.n ?? 0) + 1;
    return { id: req.session.sessionId, n: s.n };
  });
  app.get('/get', async (req) => ({ id: req.session.sessionId, n: (req.session as any).n ?? null }));
  app.get('/destroy', async (req) => {
    await req.session.destroy();
    return { destroyed: true };
  });
  // No cookie, so @fastify/session only builds an unsaved session for these.
  app.get('/__stats', async () => store.stats());
  app.get('/__ready', async () => {
    await store.ready();
    return {};
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  process.stdout.write(`LISTENING ${(app.server.address() as AddressInfo).port}\n`);
  return () => app.close();
}

(process.env.MSM_FRAMEWORK === 'fastify' ? fastify() : plain()).then(
  (close) => {
    process.once('SIGTERM', () => {
      void close()
        .then(() => store.close())
        .then(() => process.exit(0));
    });
  },
  (e) => {
    process.stderr.write(`${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
