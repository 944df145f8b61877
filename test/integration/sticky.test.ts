// Issue 3: sticky mode against real memcached processes (started here, so they can be killed), two app instances
// (routes a and b) in this process sharing the nodes; what lands in memcached is read with an independent client.
import * as http from 'http';
import express from 'express';
import session from 'express-session';
import request from 'supertest';
import { MemcachedStore, type MemcachedStoreOptions } from '../../lib';
import { StickyMode, stickyMemcachedTtl } from '../../lib/modes/sticky';
import { JsonTranscoder } from '../../lib/transcoders/json';
import { movedTo } from '../../lib/transcoders/transcoder';
import { type MemcachedProcess, killAll, nodesString, startMemcacheds } from '../helpers/memcached';
import { RawClient } from '../helpers/raw-client';
import { SECRET, cookieFor, idFromSetCookie, makeApp } from '../helpers/app';
import { sleep, waitFor } from '../helpers/wait';
import { testStores } from '../helpers/store';

const json = new JsonTranscoder();
const ID = /^([0-9A-F]{32})-(n[12])\.([ab])$/;

function parts(id: string) {
  const m = ID.exec(id);
  if (!m) throw new Error(`not a sticky id: ${id}`);
  return { random: m[1], node: m[2], route: m[3], index: Number(m[2].slice(1)) - 1 };
}

function totalOps(store: MemcachedStore, kind: 'get' | 'set' | 'touch' | 'delete'): number {
  return Object.values(store.stats().nodes).reduce((n, s) => n + s.ops[kind], 0);
}

describe('sticky mode', () => {
  let ps: MemcachedProcess[];
  let raw: RawClient[];
  const made = testStores(() => ({
    memcachedNodes: nodesString(ps),
    sticky: true,
    sessionBackupAsync: false,
    sessionBackupTimeout: 1000,
    // No background availability probes during a test: they are gets too. Tests call store.ready() after a kill.
    nodeAvailabilityCacheTTL: 600_000,
  }));
  const newStore = (route: string, o: Partial<MemcachedStoreOptions> = {}) => made.newStore({ route, ...o });
  const serverStats = async () => Promise.all(raw.map((r) => r.stats()));
  const cmdGets = (st: Record<string, number>[]) => st.reduce((n, s) => n + s.cmd_get + (s.cmd_touch ?? 0) * 0, 0);

  beforeEach(async () => {
    ps = await startMemcacheds(2);
    raw = ps.map((p) => new RawClient(p.port));
  });
  afterEach(async () => {
    await made.closeStores();
    raw.forEach((r) => r.close());
    await killAll(ps);
  });

  it('creates ids <random>-<node>.<route> and serves later requests from the local copy: no memcached get', async () => {
    const a = newStore('a');
    await a.ready();
    const app = makeApp(a);
    const r1 = await request(app).get('/inc').expect(200);
    const id = idFromSetCookie(r1.headers)!;
    const { node, index, route } = parts(id);
    expect(route).toBe('a');
    expect(a.mode).toBeInstanceOf(StickyMode);
    // Only the session key, on the node in the id; no validity, no bak:.
    expect(await raw[index].sessionKeys()).toEqual([id]);
    expect(await raw[1 - index].sessionKeys()).toEqual([]);
    expect(json.decode((await raw[index].get(id))!)).toMatchObject({ n: 1 });
    const meta = await raw[index].meta(id);
    expect(meta!.ttl).toBeGreaterThan(60);
    expect(meta!.ttl).toBeLessThanOrEqual(stickyMemcachedTtl(60));

    const gets = totalOps(a, 'get');
    const sets = totalOps(a, 'set');
    const serverBefore = cmdGets(await serverStats());
    const hits = a.stats().localHits as number;
    for (let i = 0; i < 3; i++) {
      const r = await request(app).get('/get').set('Cookie', cookieFor(id)).expect(200);
      expect(r.body).toMatchObject({ id, n: 1 });
      expect(r.headers['set-cookie']).toBeUndefined();
    }
    expect(totalOps(a, 'get')).toBe(gets);
    expect(cmdGets(await serverStats())).toBe(serverBefore);
    expect(a.stats().localHits).toBe(hits + 3);
    // Unchanged sessions are not rewritten either.
    expect(totalOps(a, 'set')).toBe(sets);

    // A change is written to the backup on the same node, still without a get.
    await request(app).get('/inc').set('Cookie', cookieFor(id)).expect(200, { id, n: 2 });
    expect(json.decode((await raw[index].get(id))!)).toMatchObject({ n: 2 });
    expect(totalOps(a, 'get')).toBe(gets);
    expect(a.stats().nodes[node].ops.set).toBe(sets + 1);
  });

  it('stores a cookie-only change (express-session calls touch for it) in the local copy and the backup', async () => {
    const a = newStore('a');
    await a.ready();
    const app = makeApp(a);
    app.get('/remember', (req, res) => {
      req.session.cookie.maxAge = 30 * 86400_000;
      res.json({});
    });
    app.get('/maxage', (req, res) => res.json({ originalMaxAge: req.session.cookie.originalMaxAge }));
    const agent = request.agent(app);
    const id = idFromSetCookie((await agent.get('/inc').expect(200)).headers)!;
    const { index } = parts(id);
    await agent.get('/remember').expect(200);
    expect((await agent.get('/maxage').expect(200)).body.originalMaxAge).toBeGreaterThan(29 * 86400_000);
    expect((json.decode((await raw[index].get(id))!) as any).cookie.originalMaxAge).toBeGreaterThan(29 * 86400_000);
    expect((await raw[index].meta(id))!.ttl).toBeGreaterThan(29 * 86400);
  });
  it('route takeover: the same cookie at b keeps the data, the id ends in .b, the old key becomes a marker', async () => {
    const a = newStore('a');
    const b = newStore('b', { sessionBackupAsync: true }); // the default: backups after the response
    const appA = makeApp(a);
    const appB = makeApp(b);
    const idA = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    await request(appA).get('/inc').set('Cookie', cookieFor(idA)).expect(200, { id: idA, n: 2 });
    const { random, node, index } = parts(idA);

    const r = await request(appB).get('/get').set('Cookie', cookieFor(idA)).expect(200);
    expect(r.body.n).toBe(2);
    const idB = idFromSetCookie(r.headers)!;
    expect(idB).toBe(`${random}-${node}.b`);
    expect(b.stats().requestsWithTomcatFailover).toBe(1);
    await b.backups.flush();
    expect(movedTo((await raw[index].get(idA))!)).toBe(idB);
    expect(json.decode((await raw[index].get(idB))!)).toMatchObject({ n: 2 });
    expect((await raw[index].sessionKeys()).sort()).toEqual([idA, idB].sort());

    // The new cookie at b: a local hit, no further get.
    const gets = totalOps(b, 'get');
    await request(appB).get('/inc').set('Cookie', cookieFor(idB)).expect(200, { id: idB, n: 3 });
    expect(totalOps(b, 'get')).toBe(gets);
    // A straggler with the old cookie at b follows the move: same session, the new cookie, no second takeover.
    const late = await request(appB).get('/get').set('Cookie', cookieFor(idA)).expect(200);
    expect(late.body.n).toBe(3);
    expect(idFromSetCookie(late.headers)).toBe(idB);
    expect(b.stats().requestsWithTomcatFailover).toBe(1);
    await b.backups.flush();

    // Back to a with the .b cookie: a takes over again and sees b's change, not its own stale local copy (n=2).
    const back = await request(appA).get('/get').set('Cookie', cookieFor(idB)).expect(200);
    expect(back.body.n).toBe(3);
    expect(idFromSetCookie(back.headers)).toBe(idA);
    expect(json.decode((await raw[index].get(idA))!)).toMatchObject({ n: 3 });
    expect(movedTo((await raw[index].get(idB))!)).toBe(idA);
    expect(a.stats().requestsWithTomcatFailover).toBe(1);
  });

  it('applyPendingIdChange shows the new id to the app at once', async () => {
    const a = newStore('a');
    const b = newStore('b');
    const idA = idFromSetCookie((await request(makeApp(a)).get('/inc').expect(200)).headers)!;
    const app = express();
    app.use(session({ store: b, genid: b.genid, secret: SECRET, resave: false, saveUninitialized: false }));
    app.use((req, _res, next) => {
      b.applyPendingIdChange(req);
      next();
    });
    app.get('/id', (req, res) => res.json({ id: req.sessionID, n: (req.session as any).n }));
    const r = await request(app).get('/id').set('Cookie', cookieFor(idA)).expect(200);
    expect(r.body).toEqual({ id: idA.replace(/\.a$/, '.b'), n: 1 });
    expect(idFromSetCookie(r.headers)).toBe(r.body.id);
  });

  it('a plain node server: with applyPendingIdChange the cookie follows a takeover and reads stay local; without, every load reads memcached', async () => {
    const plainApp = (store: MemcachedStore, applies: boolean) => {
      const mw = session({ store, genid: store.genid, secret: SECRET, resave: false, saveUninitialized: false });
      return http.createServer((req: any, res) =>
        mw(req, res as any, () => {
          if (applies) store.applyPendingIdChange(req);
          req.session.n = (req.session.n ?? 0) + 1;
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ id: req.sessionID, n: req.session.n }));
        }),
      );
    };
    const a = newStore('a');
    const b = newStore('b');
    const idA = idFromSetCookie((await request(plainApp(a, true)).get('/').expect(200)).headers)!;
    const idB = idA.replace(/\.a$/, '.b');
    const r = await request(plainApp(b, true)).get('/').set('Cookie', cookieFor(idA)).expect(200, { id: idB, n: 2 });
    expect(idFromSetCookie(r.headers)).toBe(idB);
    const gets = totalOps(b, 'get');
    await request(plainApp(b, true)).get('/').set('Cookie', cookieFor(idB)).expect(200, { id: idB, n: 3 });
    expect(totalOps(b, 'get')).toBe(gets);

    const c = newStore('c');
    const fixed = plainApp(c, false);
    const idC = idFromSetCookie((await request(fixed).get('/').expect(200)).headers)!;
    const before = totalOps(c, 'get');
    await request(fixed).get('/').set('Cookie', cookieFor(idC)).expect(200, { id: idC, n: 2 });
    expect(totalOps(c, 'get')).toBe(before + 1);
  });

  it('two concurrent requests with the same foreign id give one new id and one takeover', async () => {
    const a = newStore('a');
    const b = newStore('b');
    const idA = idFromSetCookie((await request(makeApp(a)).get('/inc').expect(200)).headers)!;
    const { index } = parts(idA);

    // Store level: both loads overlap for sure.
    await b.ready();
    const getsBefore = totalOps(b, 'get');
    const [s1, s2] = await Promise.all([b.get(idA), b.get(idA)]);
    expect((s1 as any).n).toBe(1);
    expect((s2 as any).n).toBe(1);
    expect(s1).not.toBe(s2); // each request its own copy
    expect(totalOps(b, 'get')).toBe(getsBefore + 1);
    expect(b.stats().requestsWithTomcatFailover).toBe(1);

    // HTTP level, with another session: both responses carry the same new cookie, one takeover.
    const idA2 = idFromSetCookie((await request(makeApp(a)).get('/inc').expect(200)).headers)!;
    const appB = makeApp(b);
    const [r1, r2] = await Promise.all([
      request(appB).get('/get').set('Cookie', cookieFor(idA2)),
      request(appB).get('/get').set('Cookie', cookieFor(idA2)),
    ]);
    expect(r1.body.n).toBe(1);
    expect(r2.body.n).toBe(1);
    const n1 = idFromSetCookie(r1.headers);
    expect(n1).toBe(idA2.replace(/\.a$/, '.b'));
    expect(idFromSetCookie(r2.headers)).toBe(n1);
    expect(b.stats().requestsWithTomcatFailover).toBe(2);
    const i2 = parts(idA2).index;
    expect(movedTo((await raw[i2].get(idA2))!)).toBe(n1);
    expect(json.decode((await raw[i2].get(n1!))!)).toMatchObject({ n: 1 });
    expect(await raw[index].get(idA.replace(/\.a$/, '.b'))).not.toBeNull();
  });

  it("kill -9 of the session's node: the session keeps its data on the other node under a new id", async () => {
    const a = newStore('a');
    const b = newStore('b');
    const appA = makeApp(a);
    const r1 = await request(appA).get('/inc').expect(200);
    const id = idFromSetCookie(r1.headers)!;
    await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200, { id, n: 2 });
    const { random, index } = parts(id);
    const other = 1 - index;
    await ps[index].kill();
    await a.ready(); // the availability probe notices (normally within nodeAvailabilityCacheTTL)

    const r = await request(appA).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(r.body.n).toBe(2);
    const moved = idFromSetCookie(r.headers)!;
    expect(moved).toBe(`${random}-n${other + 1}.a`);
    expect(json.decode((await raw[other].get(moved))!)).toMatchObject({ n: 2 });
    expect(a.stats().requestsWithMemcachedFailover).toBe(1);
    // The new cookie keeps working at a, and the backup on the survivor is good for a takeover at b.
    await request(appA).get('/inc').set('Cookie', cookieFor(moved)).expect(200, { id: moved, n: 3 });
    const rb = await request(makeApp(b)).get('/get').set('Cookie', cookieFor(moved)).expect(200);
    expect(rb.body.n).toBe(3);
    expect(idFromSetCookie(rb.headers)).toBe(`${random}-n${other + 1}.b`);
  });

  it('a failed backup write is counted, never fails the request; the next request relocates', async () => {
    const a = newStore('a', { operationTimeout: 300 });
    const appA = makeApp(a);
    const id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    const { random, index } = parts(id);
    // Stopped, not killed: a killed node's closed connection is noticed at once (a probe), a stopped one only when
    // an operation times out, so the cache still says "up": the write is tried, fails, and the node is marked down.
    await ps[index].stop();
    await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200, { id, n: 2 });
    expect(a.stats().requestsWithBackupFailure).toBe(1);
    const r = await request(appA).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(r.body.n).toBe(2);
    const moved = idFromSetCookie(r.headers)!;
    expect(moved).toBe(`${random}-n${2 - index}.a`);
    expect(json.decode((await raw[1 - index].get(moved))!)).toMatchObject({ n: 2 });
  });

  it('asynchronous backups (the default): the copy lands after the response, unchanged writes send nothing, close() waits for them', async () => {
    const a = newStore('a', { sessionBackupAsync: true });
    const appA = makeApp(a);
    const id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    const { index } = parts(id);
    await waitFor(async () => (await raw[index].get(id)) !== null);
    expect(json.decode((await raw[index].get(id))!)).toMatchObject({ n: 1 });
    await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200, { id, n: 2 });
    await a.backups.flush();
    expect(json.decode((await raw[index].get(id))!)).toMatchObject({ n: 2 });
    const sets = totalOps(a, 'set');
    await request(appA).get('/get').set('Cookie', cookieFor(id)).expect(200);
    await a.backups.flush();
    expect(totalOps(a, 'set')).toBe(sets);
    // A write whose answer has not come yet is waited for by close(), then in memcached.
    await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200, { id, n: 3 });
    await a.close();
    expect(a.stats().pendingBackups).toBe(0);
    expect(json.decode((await raw[index].get(id))!)).toMatchObject({ n: 3 });
  });

  it('an asynchronous backup that fails (node stopped, then marked down) is counted and logged after the response; a logger that throws breaks nothing', async () => {
    const logged: string[] = [];
    let throwing = false;
    const logger = {
      debug() {},
      info() {},
      warn(m: string) {
        logged.push(`warn ${m}`);
        if (throwing) throw new Error('logger failed');
      },
      error(m: string) {
        logged.push(`error ${m}`);
      },
    };
    const a = newStore('a', { sessionBackupAsync: true, operationTimeout: 300, logger });
    const appA = makeApp(a);
    const id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    const { index } = parts(id);
    await a.backups.flush();
    await ps[index].stop();
    // The write is answered before its backup times out.
    await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200, { id, n: 2 });
    expect(a.stats().pendingBackups).toBe(1);
    await a.backups.flush();
    expect(a.stats().requestsWithBackupFailure).toBe(1);
    expect(logged.filter((l) => l.includes(`memcached backup on n${index + 1} failed`))).toHaveLength(1);
    // Both nodes down: the session cannot be relocated, is served locally, and its backup fails at once. The logger
    // throws on that failure: the runner logs it, the request is served.
    await ps[1 - index].stop();
    await a.ready();
    throwing = true;
    await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200, { id, n: 3 });
    expect(a.stats().requestsWithBackupFailure).toBe(2);
    await a.backups.flush();
    expect(logged.some((l) => l.startsWith('error backup task failed: logger failed'))).toBe(true);
    expect(a.stats().pendingBackups).toBe(0);
  });

  it('failoverNodes: new sessions avoid n1 while n2 is up, use n1 when n2 is down', async () => {
    const a = newStore('a', { failoverNodes: 'n1' });
    const appA = makeApp(a);
    for (let i = 0; i < 10; i++) {
      const id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
      expect(parts(id).node).toBe('n2');
    }
    expect(await raw[0].sessionKeys()).toEqual([]);
    await ps[1].kill();
    await a.ready();
    for (let i = 0; i < 5; i++) {
      const id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
      expect(parts(id).node).toBe('n1');
      expect(json.decode((await raw[0].get(id))!)).toMatchObject({ n: 1 });
    }
    expect(a.stats().requestsWithBackupFailure).toBe(0);
  });

  it("takeover moves a session off this instance's failover node to an available primary", async () => {
    const a = newStore('a', { failoverNodes: 'n2' }); // a's sessions live on n1
    const b = newStore('b', { failoverNodes: 'n1' }); // n1 is b's co-located node: only for emergencies
    const idA = idFromSetCookie((await request(makeApp(a)).get('/inc').expect(200)).headers)!;
    const { random, node } = parts(idA);
    expect(node).toBe('n1');
    const r = await request(makeApp(b)).get('/get').set('Cookie', cookieFor(idA)).expect(200);
    expect(r.body.n).toBe(1);
    const idB = idFromSetCookie(r.headers)!;
    expect(idB).toBe(`${random}-n2.b`);
    expect(await raw[0].sessionKeys()).toEqual([idA]);
    expect(movedTo((await raw[0].get(idA))!)).toBe(idB);
    expect(await raw[1].sessionKeys()).toEqual([idB]);
  });

  it('local bounds: with localMaxSessions 10, 50 sessions stay readable (reloaded from memcached)', async () => {
    const a = newStore('a', { localMaxSessions: 10 });
    const appA = makeApp(a);
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      await request(appA)
        .get('/inc')
        .expect(200)
        .then((r) => ids.push(idFromSetCookie(r.headers)!));
    }
    expect(a.stats().localEvictions).toBe(40);
    expect((a.mode as StickyMode).local.size).toBe(10);
    const keys = [...(await raw[0].sessionKeys()), ...(await raw[1].sessionKeys())];
    expect(keys.sort()).toEqual([...ids].sort()); // eviction deleted no memcached copy
    for (const id of ids) {
      const r = await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200);
      expect(r.body).toEqual({ id, n: 2 });
    }
    expect(a.stats().localMisses).toBeGreaterThanOrEqual(40);
    for (const id of ids) expect(json.decode((await raw[parts(id).index].get(id))!)).toMatchObject({ n: 2 });
  });

  it('local bounds: localMaxBytes evicts by encoded size, the memcached copies stay', async () => {
    const a = newStore('a', { localMaxBytes: 4000 });
    const appA = makeApp(a);
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await request(appA)
        .post('/data')
        .send({ blob: 'x'.repeat(900), i })
        .expect(200);
      ids.push(idFromSetCookie(r.headers)!);
    }
    const local = (a.mode as StickyMode).local;
    expect(local.calculatedSize).toBeLessThanOrEqual(4000);
    expect(local.size).toBeLessThan(10);
    expect(a.stats().localEvictions).toBe(10 - local.size);
    for (const [i, id] of ids.entries()) {
      const r = await request(appA).get('/get').set('Cookie', cookieFor(id)).expect(200);
      expect(r.body.data).toEqual({ blob: 'x'.repeat(900), i });
    }
  });

  it('a long run of read-only requests keeps the memcached backup alive past its original TTL, without a write per request', async () => {
    const a = newStore('a');
    const b = newStore('b');
    const appA = makeApp(a, { cookie: { maxAge: 3000 } });
    const id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    const { index } = parts(id);
    const originalTtl = stickyMemcachedTtl(3);
    expect((await raw[index].meta(id))!.ttl).toBeLessThanOrEqual(originalTtl);
    const sets = totalOps(a, 'set');
    const started = Date.now();
    let requests = 0;
    while (Date.now() - started < (originalTtl + 3) * 1000) {
      await request(appA).get('/get').set('Cookie', cookieFor(id)).expect(200, { id, n: 1, data: null });
      requests++;
      await sleep(250);
    }
    // Past the original TTL: still there, with a fresh TTL.
    const meta = await raw[index].meta(id);
    expect(meta).not.toBeNull();
    expect(meta!.ttl).toBeGreaterThan(0);
    expect(totalOps(a, 'set')).toBe(sets);
    const touches = totalOps(a, 'touch');
    expect(touches).toBeGreaterThan(0);
    expect(touches).toBeLessThan(requests / 2);
    // The backup is what a takeover reads.
    const r = await request(makeApp(b)).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(r.body.n).toBe(1);
  }, 30_000);

  it('expiry and destroy delete both copies', async () => {
    const a = newStore('a');
    const appA = makeApp(a, { cookie: { maxAge: 2000 } });
    const id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    const { index } = parts(id);
    expect(await raw[index].get(id)).not.toBeNull();
    await sleep(2300);
    // Locally expired (memcached would keep it until maxInactive + margin): no session, and the copy is deleted.
    const r = await request(appA).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(r.body.n).toBeNull();
    await waitFor(async () => (await raw[index].get(id)) === null, { timeout: 1000, what: 'memcached copy deleted' });
    expect(a.stats().sessionsExpired).toBe(1);

    const id2 = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    await request(appA).get('/destroy').set('Cookie', cookieFor(id2)).expect(200);
    expect(await raw[parts(id2).index].get(id2)).toBeNull();
    expect((a.mode as StickyMode).local.has(id2)).toBe(false);
    const again = await request(appA).get('/get').set('Cookie', cookieFor(id2)).expect(200);
    expect(again.body.n).toBeNull();
  });

  it('sends backup TTLs above 30 days as absolute time (a 40-day session)', async () => {
    const a = newStore('a');
    const appA = makeApp(a, { cookie: { maxAge: 40 * 86_400_000 } });
    const id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    const ttl = (await raw[parts(id).index].meta(id))!.ttl;
    expect(ttl).toBeGreaterThan(40 * 86_400 + 60 - 10);
    expect(ttl).toBeLessThanOrEqual(40 * 86_400 + 60 + 2);
  });

  it('works with a single host:port node (ids without node id): <random>.<route>, takeover included', async () => {
    const single = { memcachedNodes: `127.0.0.1:${ps[0].port}` };
    const a = newStore('a', single);
    const b = newStore('b', single);
    const idA = idFromSetCookie((await request(makeApp(a)).get('/inc').expect(200)).headers)!;
    expect(idA).toMatch(/^[0-9A-F]{32}\.a$/);
    const r = await request(makeApp(b)).get('/get').set('Cookie', cookieFor(idA)).expect(200);
    expect(r.body.n).toBe(1);
    const idB = idFromSetCookie(r.headers)!;
    expect(idB).toBe(idA.replace(/\.a$/, '.b'));
    expect(movedTo((await raw[0].get(idA))!)).toBe(idB);
    expect(json.decode((await raw[0].get(idB))!)).toMatchObject({ n: 1 });
  });

  it("local copies hold their bytes in memory of their own, never a slice of Node's shared buffer pool", async () => {
    // A pooled slice would keep its whole 8 KB pool alive for as long as the session lives.
    const owns = (b: Buffer) => b.byteOffset === 0 && b.byteLength === b.buffer.byteLength;
    const a = newStore('a', { sessionBackupAsync: true });
    const appA = makeApp(a);
    const id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200, { id, n: 2 });
    await a.backups.flush();
    const saved = (a.mode as StickyMode).local.get(id)!;
    expect(saved.bytes.length).toBeLessThan(4096);
    expect(owns(saved.bytes)).toBe(true);
    // The backup's record of what memcached holds is the same buffer, not a second copy.
    expect(saved.copy.written).toBe(saved.bytes);
    expect(json.decode((await raw[parts(id).index].get(id))!)).toMatchObject({ n: 2 });
    // Reloaded after a restart (bytes read from a socket) and taken over by route b (bytes rewritten under a new id).
    const a2 = newStore('a');
    await request(makeApp(a2)).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(owns((a2.mode as StickyMode).local.get(id)!.bytes)).toBe(true);
    const b = newStore('b');
    const r = await request(makeApp(b)).get('/get').set('Cookie', cookieFor(id)).expect(200);
    const idB = idFromSetCookie(r.headers)!;
    expect(parts(idB).route).toBe('b');
    expect(owns((b.mode as StickyMode).local.get(idB)!.bytes)).toBe(true);
  });

  it('a restarted instance (empty local store) reloads its sessions from memcached', async () => {
    const a1 = newStore('a');
    const id = idFromSetCookie((await request(makeApp(a1)).get('/inc').expect(200)).headers)!;
    await a1.close();
    const a2 = newStore('a');
    const appA2 = makeApp(a2);
    const r = await request(appA2).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(r.body).toMatchObject({ id, n: 1 });
    expect(r.headers['set-cookie']).toBeUndefined();
    await request(appA2).get('/inc').set('Cookie', cookieFor(id)).expect(200, { id, n: 2 });
    expect(a2.stats().localMisses).toBe(1);
    expect(a2.stats().requestsWithTomcatFailover).toBe(0);
  });
});

describe('sticky configuration', () => {
  it('rejects sticky without a route', () => {
    expect(() => new MemcachedStore({ memcachedNodes: 'n1:127.0.0.1:11211,n2:127.0.0.1:11212', sticky: true })).toThrow(
      /route.*required when sticky/,
    );
  });
  it('rejects failoverNodes naming every node', () => {
    expect(
      () =>
        new MemcachedStore({
          memcachedNodes: 'n1:127.0.0.1:11211,n2:127.0.0.1:11212',
          sticky: true,
          route: 'a',
          failoverNodes: 'n1 n2',
        }),
    ).toThrow(/every node/);
  });
  it('rejects a route that cannot be part of an id', () => {
    expect(() => new MemcachedStore({ memcachedNodes: 'n1:127.0.0.1:11211', sticky: true, route: 'a.b' })).toThrow(
      /route/,
    );
  });
});
