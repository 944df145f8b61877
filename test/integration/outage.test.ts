// Every memcached node down is an outage, not "no session": loads answer with a StorageUnavailableError (503), so
// express-session passes it on instead of starting a fresh session (a silent logout). Copies lost while some node
// still answers stay a quiet failover or a fresh session. store.health() tells which nodes answer.
import request from 'supertest';
import type express from 'express';
import { type MemcachedStore, StorageUnavailableError } from '../../lib';
import { type MemcachedProcess, killAll, nodesString, startMemcacheds } from '../helpers/memcached';
import { cookieFor, idFromSetCookie, makeApp } from '../helpers/app';
import { testStores } from '../helpers/store';
import {
  type Served,
  cookieFor as cookieForMw,
  request as httpRequest,
  idFromSetCookie as idFromSetCookieMw,
  serve,
  sessionOptions,
} from '../helpers/session-http';

/** The node id an msm id names. */
function nodeOf(id: string): string {
  return /-(n\d)(?:\.\w+)?$/.exec(id)![1];
}

describe('every node down', () => {
  let ps: MemcachedProcess[];
  const { newStore, closeStores } = testStores(() => ({ memcachedNodes: nodesString(ps), sessionBackupAsync: false }));
  const servers: Served[] = [];

  beforeEach(async () => {
    ps = await startMemcacheds(2);
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
    await closeStores();
    await killAll(ps);
  });

  async function createdSession(app: express.Express): Promise<string> {
    const r = await request(app).get('/inc').expect(200);
    return idFromSetCookie(r.headers)!;
  }

  /** The load fails with a 503 that names no internals, carrying the node's error; no new session cookie. */
  async function expectOutage(store: MemcachedStore, app: express.Express, id: string): Promise<void> {
    const r = await request(app).get('/get').set('Cookie', cookieFor(id));
    expect(r.status).toBe(503);
    expect(r.headers['set-cookie']).toBeUndefined();
    const err = await store.get(id).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StorageUnavailableError);
    expect(err).toMatchObject({ status: 503, expose: false, name: 'StorageUnavailableError' });
    expect((err as Error).cause).toBeInstanceOf(Error);
  }

  it('non-sticky, bare Store + express-session: 503, not 200 with a fresh session', async () => {
    const store = newStore();
    await store.ready();
    const app = makeApp(store);
    const id = await createdSession(app);
    await Promise.all(ps.map((p) => p.kill()));
    await expectOutage(store, app, id);
  });

  it('non-sticky, plain express-session ids on a single node: 503', async () => {
    await ps[1].kill();
    const store = newStore({ memcachedNodes: ps[0].address });
    await store.ready();
    const app = makeApp(store, {}, false);
    const id = await createdSession(app);
    await ps[0].kill();
    await expectOutage(store, app, id);
  });

  it('sticky, a session not held locally (another instance, or a restart): 503', async () => {
    const a = newStore({ sticky: true, route: 'r1' });
    await a.ready();
    const id = await createdSession(makeApp(a));
    await Promise.all(ps.map((p) => p.kill()));
    // Held locally: served from the local copy, as msm does when memcached is down.
    const held = await request(makeApp(a)).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(held.body.n).toBe(1);
    // A restarted instance holds nothing: it cannot tell, so it must not answer "no session".
    const b = newStore({ sticky: true, route: 'r1' });
    await expectOutage(b, makeApp(b), id);
    const other = newStore({ sticky: true, route: 'r2' });
    await expectOutage(other, makeApp(other), id);
  });

  it('memcachedSession(): 503 for a request with a session cookie; the handler never sees a fresh session', async () => {
    let handled = 0;
    const s = await serve(sessionOptions({ memcachedNodes: nodesString(ps) }), (app) => {
      app.get('/inc', (req, res) => {
        const sess = req.session as any;
        sess.n = (sess.n ?? 0) + 1;
        res.json({ n: sess.n });
      });
      // Reads only: nothing to save, so only the load can fail.
      app.get('/read', (req, res) => {
        handled++;
        res.json({ n: (req.session as any).n ?? null });
      });
    });
    servers.push(s);
    const first = await httpRequest(s.port, '/inc');
    expect(first.status).toBe(200);
    const id = idFromSetCookieMw(first.headers)!;
    await Promise.all(ps.map((p) => p.kill()));
    const r = await httpRequest(s.port, '/read', { cookie: cookieForMw(id) });
    expect(r.status).toBe(503);
    expect(r.headers['set-cookie']).toBeUndefined();
    expect(handled).toBe(0);
  });

  it('copies all on dead nodes while another node answers: a fresh session at once; the last node down: 503', async () => {
    ps.push(...(await startMemcacheds(1)));
    const store = newStore();
    await store.ready();
    const app = makeApp(store);
    let id = await createdSession(app);
    while (nodeOf(id) !== 'n1') id = await createdSession(app);
    // Primary on n1, backup on n2: both killed, n3 answers.
    await Promise.all([ps[0].kill(), ps[1].kill()]);
    const fresh = await request(app).get('/inc').set('Cookie', cookieFor(id)).expect(200);
    expect(fresh.body.n).toBe(1);
    expect(idFromSetCookie(fresh.headers)).not.toBe(id);
    await ps[2].kill();
    await expectOutage(store, app, idFromSetCookie(fresh.headers)!);
  });

  it('store.health(): which nodes answer; ok false when none does, true again after a restart', async () => {
    const store = newStore();
    expect(await store.health()).toEqual({ ok: true, nodes: { n1: { available: true }, n2: { available: true } } });
    await ps[0].kill();
    const one = await store.health();
    expect(one.ok).toBe(true);
    expect(one.nodes.n1).toEqual({ available: false, error: expect.any(String) });
    expect(one.nodes.n2).toEqual({ available: true });
    await ps[1].kill();
    const none = await store.health();
    expect(none.ok).toBe(false);
    expect(none.nodes.n2.available).toBe(false);
    await Promise.all(ps.map((p) => p.start()));
    expect(await store.health()).toEqual({ ok: true, nodes: { n1: { available: true }, n2: { available: true } } });
  });
});
