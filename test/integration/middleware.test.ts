// memcachedSession(): setup, validation, requestUriIgnorePattern and lockingMode auto, on real memcached nodes.
import type express from 'express';
import { ConfigError, MemcachedStore, memcachedSession } from '../../lib';
import { killAll, nodesString, startMemcacheds } from '../helpers/memcached';
import {
  type Served,
  addOps,
  cookieFor,
  counter,
  idFromSetCookie,
  request,
  serve,
  sessionOptions,
  memcachedFixture,
} from '../helpers/session-http';
import type { MemcachedSessionOptions } from '../../lib/express/middleware';
import { waitFor } from '../helpers/wait';

const fx = memcachedFixture(2);

function routes(app: express.Express) {
  const s = (req: express.Request) => req.session as any;
  app.get('/new', (req, res) => {
    s(req).n = 0;
    res.json({ id: req.sessionID });
  });
  app.get('/inc', (req, res) => {
    s(req).n++;
    res.json({ n: s(req).n });
  });
  // Reads the session; `?modify=1` writes to it (same pattern for auto: the query is not part of it).
  app.get('/read', (req, res) => {
    if (req.query.modify) s(req).touched = Date.now();
    res.json({ n: s(req)?.n ?? null });
  });
  app.post('/read', (req, res) => res.json({ n: s(req)?.n ?? null }));
  app.get('/regenerate', (req, res, next) =>
    req.session.regenerate((e) => (e ? next(e) : res.json({ id: req.sessionID }))),
  );
  app.get('/reload', (req, res, next) => req.session.reload((e: unknown) => (e ? next(e) : res.json({ n: s(req).n }))));
  // The ignored paths answer what the app saw.
  const probe = (req: express.Request, res: express.Response) =>
    res.json({ session: typeof req.session, sessionID: req.sessionID ?? null });
  app.get('/static/*path', probe);
  app.get('/pixel.gif', probe);
  app.get('/api/static/x', probe);
  app.get(['/x.css', '/assets/app.js', '/favicon.ico', '/page', '/x.css/edit', '/probe'], probe);
}

async function instance(extra: Partial<MemcachedSessionOptions>): Promise<Served> {
  const s = await serve(
    sessionOptions({ memcachedNodes: nodesString(fx.ps), nodeAvailabilityCacheTTL: 60_000, ...extra }),
    routes,
  );
  fx.servers.push(s);
  return s;
}

async function newSession(s: Served): Promise<{ id: string; cookie: string }> {
  const r = await request(s.port, '/new');
  const id = idFromSetCookie(r.headers)!;
  expect(id).toBe(r.json().id);
  return { id, cookie: cookieFor(id) };
}

async function memcachedCounters(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const r of fx.raws) {
    const st = await r.stats();
    for (const k of ['cmd_get', 'cmd_set', 'cmd_touch', 'delete_hits', 'delete_misses'])
      out[k] = (out[k] ?? 0) + (st[k] ?? 0);
  }
  return out;
}

describe('setup', () => {
  it('builds a MemcachedStore, exposed as mw.store, and sessions work end to end', async () => {
    const a = await instance({});
    expect(a.mw.store).toBeInstanceOf(MemcachedStore);
    const { id, cookie } = await newSession(a);
    expect(id).toMatch(/^[0-9A-F]{32}-n[12]$/); // store.genid supplied by the middleware
    expect((await request(a.port, '/inc', { cookie })).json().n).toBe(1);
    expect((await request(a.port, '/inc', { cookie })).json().n).toBe(2);
  });

  it('rejects invalid options with a ConfigError naming the option', () => {
    const base = {
      memcachedNodes: nodesString(fx.ps),
      session: { secret: 's', resave: false, saveUninitialized: false },
    };
    const bad: Array<[Partial<MemcachedSessionOptions>, RegExp]> = [
      [{ lockingMode: 'sometimes' }, /lockingMode/],
      [{ lockingMode: 'uriPattern:' }, /lockingMode/],
      [{ lockingMode: 'uriPattern:(' }, /lockingMode/],
      [{ lockExpiration: 0 }, /lockExpiration/],
      [{ lockExpiration: 1.5 }, /lockExpiration/],
      [{ lockWaitTimeout: -1 }, /lockWaitTimeout/],
      [{ lockWaitTimeout: '5s' as any }, /lockWaitTimeout/],
      [{ lockTimeoutAction: 'wait' as any }, /lockTimeoutAction/],
      [{ requestUriIgnorePattern: '[' }, /requestUriIgnorePattern/],
      [{ session: { secret: 's', store: {} } as any }, /session\.store/],
      [{ session: { secret: 's', genid: () => 'x' } as any }, /session\.genid/],
    ];
    for (const [extra, msg] of bad) {
      let err: unknown;
      try {
        memcachedSession({ ...base, ...extra } as MemcachedSessionOptions);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(msg);
    }
  });

  it('rejects any locking mode in sticky mode', () => {
    for (const lockingMode of ['all', 'auto', 'uriPattern:/cart.*']) {
      expect(() =>
        memcachedSession({
          memcachedNodes: nodesString(fx.ps),
          sticky: true,
          route: 'r1',
          lockingMode,
          session: { secret: 's', resave: false, saveUninitialized: false },
        }),
      ).toThrow(/lockingMode.*non-sticky/);
    }
    const mw = memcachedSession({
      memcachedNodes: nodesString(fx.ps),
      sticky: true,
      route: 'r1',
      lockingMode: 'none',
      session: { secret: 's', resave: false, saveUninitialized: false },
    });
    void mw.store.close();
  });
});

describe('requestUriIgnorePattern', () => {
  it('gives a matching request with a valid cookie no session: no memcached traffic, no Set-Cookie', async () => {
    const a = await instance({
      requestUriIgnorePattern: '.*\\.(ico|png|gif|jpg|css|js)|/static/.*',
      lockingMode: 'all',
    });
    const { cookie } = await newSession(a);
    await waitFor(() => a.mw.store.stats().pendingBackups === 0, { timeout: 3000, what: 'backups written' });
    // Nothing of the new session still reaching memcached: two reads of the counters in a row agree.
    let last = '';
    await waitFor(
      async () => {
        const now = JSON.stringify(await memcachedCounters());
        const settled = now === last;
        last = now;
        return settled;
      },
      { timeout: 3000, what: 'memcached counters to settle' },
    );

    const before = await memcachedCounters();
    const addsBefore = addOps(a);
    for (const path of ['/pixel.gif', '/static/app.js', '/static/app.js?v=3']) {
      const r = await request(a.port, path, { cookie });
      expect(r.status).toBe(200);
      expect(r.json()).toEqual({ session: 'undefined', sessionID: null });
      expect(r.headers['set-cookie']).toBeUndefined();
    }
    const after = await memcachedCounters();
    expect(after.cmd_get - before.cmd_get).toBe(0);
    expect(after.cmd_set - before.cmd_set).toBe(0);
    expect(after.cmd_touch - before.cmd_touch).toBe(0);
    expect(addOps(a) - addsBefore).toBe(0);
    expect(counter(a, 'requestsIgnored')).toBe(3);

    // The same measurement sees a normal request: it reads the session (and takes a lock).
    const r = await request(a.port, '/read', { cookie });
    expect(r.json().n).toBe(0);
    expect((await memcachedCounters()).cmd_get - after.cmd_get).toBeGreaterThan(0);
  });

  it('matches the whole path plus query, not "METHOD URI" as Java msm does', async () => {
    const a = await instance({ requestUriIgnorePattern: '/static/.*' });
    const { cookie } = await newSession(a);
    // Not a full match: /api/static/x gets its session.
    expect((await request(a.port, '/api/static/x', { cookie })).json().session).toBe('object');
    // Java msm's form never matches here.
    const b = await instance({ requestUriIgnorePattern: 'GET /static/.*' });
    expect((await request(b.port, '/static/x', { cookie })).json().session).toBe('object');
    expect(counter(a, 'requestsIgnored')).toBe(0);
    // A RegExp object works too (anchored as a full match).
    const c = await instance({ requestUriIgnorePattern: /\/pixel\.gif/ });
    expect((await request(c.port, '/pixel.gif', { cookie })).json().session).toBe('undefined');
    expect((await request(c.port, '/pixel.gif?x', { cookie })).json().session).toBe('object');
  });

  it("README's pattern: static files with or without a cache-busting query, not a page whose query names one", async () => {
    const a = await instance({ requestUriIgnorePattern: '[^?]*\\.(ico|png|gif|jpg|css|js)(\\?.*)?' });
    const { cookie } = await newSession(a);
    for (const path of ['/x.css?v=123', '/assets/app.js', '/favicon.ico?']) {
      expect((await request(a.port, path, { cookie })).json().session).toBe('undefined');
    }
    for (const path of ['/page?file=x.css', '/x.css/edit', '/probe']) {
      expect((await request(a.port, path, { cookie })).json().session).toBe('object');
    }
    expect(counter(a, 'requestsIgnored')).toBe(3);
  });
});

describe('lockingMode auto', () => {
  it('stops locking a read-only pattern; a modifying request on it brings locking back for good', async () => {
    const a = await instance({ lockingMode: 'auto' });
    const { cookie } = await newSession(a);
    const locks = () => counter(a, 'locksAcquired');
    const adds = () => addOps(a);
    /** Lock taken by one request (the release runs after the response: wait for it). */
    const get = async (path: string) => {
      const r = await request(a.port, path, { cookie });
      expect(r.status).toBe(200);
      await waitFor(() => a.mw.locks.mutex.size === 0, { timeout: 3000, what: 'released' });
      return r;
    };

    // Unknown pattern: locked; it did not modify the session, so it is learnt as read-only.
    await get('/read');
    expect(locks()).toBe(1);
    expect(counter(a, 'readOnlyPatternsLearnt')).toBe(1);

    // Now read-only: no lock, no add.
    let before = adds();
    await get('/read');
    await get('/read?page=2');
    expect(adds() - before).toBe(0);
    expect(locks()).toBe(1);
    expect(counter(a, 'readOnlyRequestsUnlocked')).toBe(2);
    // Another method is another pattern.
    await get('/read');
    const r = await request(a.port, '/read', { cookie, method: 'POST' });
    expect(r.status).toBe(200);
    expect(locks()).toBe(2);

    // A modifying request on the read-only pattern (it runs unlocked, as in msm) blacklists it...
    await get('/read?modify=1');
    expect(locks()).toBe(2);
    expect(counter(a, 'readOnlyPatternsBlacklisted')).toBe(1);
    // ...and from now on every request on it locks, even the read-only ones.
    before = adds();
    await get('/read');
    await get('/read');
    expect(locks()).toBe(4);
    expect(adds() - before).toBe(2);
    expect(counter(a, 'readOnlyPatternsLearnt')).toBe(2); // GET /read and POST /read, never GET /read again
  });

  it('counts regenerate as modifying and ignores requests without a loaded session', async () => {
    const a = await instance({ lockingMode: 'auto' });
    const { cookie } = await newSession(a);
    await request(a.port, '/regenerate', { cookie });
    await waitFor(() => a.mw.locks.mutex.size === 0, { timeout: 3000, what: 'released' });
    expect(counter(a, 'readOnlyPatternsBlacklisted')).toBe(1);
    // No cookie: nothing learnt, nothing locked.
    await request(a.port, '/read');
    expect(counter(a, 'readOnlyPatternsLearnt')).toBe(0);
  });
});

describe('ids', () => {
  it('switches req.sessionID before the app when the load relocated the session', async () => {
    const own = await startMemcacheds(2);
    try {
      const s = await serve(
        sessionOptions({
          memcachedNodes: nodesString(own),
          nodeAvailabilityCacheTTL: 100,
          lockingMode: 'all',
          operationTimeout: 300,
          sessionBackupAsync: false,
        }),
        (app) => {
          app.get('/new', (req, res) => {
            (req.session as any).n = 7;
            res.json({ id: req.sessionID });
          });
          app.get('/who', (req, res) => res.json({ id: req.sessionID, n: (req.session as any).n ?? null }));
        },
      );
      fx.servers.push(s);
      let id: string;
      // A session on n1, so that killing n1 relocates it to n2.
      for (;;) {
        const r = await request(s.port, '/new');
        id = idFromSetCookie(r.headers)!;
        if (id.endsWith('-n1')) break;
      }
      await own[0].kill();
      await waitFor(() => s.mw.store.stats().nodes.n1.available === false, {
        timeout: 3000,
        what: 'n1 marked unavailable',
      });
      const r = await request(s.port, '/who', { cookie: cookieFor(id) });
      expect(r.status).toBe(200);
      expect(r.json().n).toBe(7);
      expect(r.json().id).toMatch(/-n2$/);
      expect(idFromSetCookie(r.headers)).toBe(r.json().id);
    } finally {
      await killAll(own);
    }
  });
});
