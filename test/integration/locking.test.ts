// Session locking through memcachedSession(): two app instances on the same memcached nodes, real HTTP on loopback.
import type express from 'express';
import { nodesString } from '../helpers/memcached';
import type { RawClient } from '../helpers/raw-client';
import {
  type Served,
  abortedRequest,
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
import { sleep, waitFor } from '../helpers/wait';
import { capturingLogger } from '../helpers/capturing-logger';
import { hashId } from '../../lib/core/logger';

const fx = memcachedFixture(2);

/** Handlers shared by every instance; `active`/`maxActive` count concurrency across instances of one test. */
function routes(track: { active: number; maxActive: number }) {
  return (app: express.Express) => {
    const s = (req: express.Request) => req.session as any;
    app.get('/new', (req, res) => {
      s(req).n = 0;
      res.json({ id: req.sessionID });
    });
    const inc = async (req: express.Request, res: express.Response) => {
      track.active++;
      track.maxActive = Math.max(track.maxActive, track.active);
      // Widen the read-modify-write window: without the lock concurrent increments overlap here.
      await sleep(Number(req.query.ms ?? 2));
      s(req).n = (s(req).n ?? 0) + 1;
      track.active--;
      res.json({ n: s(req).n });
    };
    app.get('/inc', inc);
    app.get('/cart/inc', inc);
    app.get('/other/inc', inc);
    app.get('/get', (req, res) => res.json({ n: s(req)?.n ?? null, id: req.sessionID }));
    app.get('/slow', async (req, res) => {
      await sleep(Number(req.query.ms ?? 1000));
      s(req).slow = ((s(req).slow ?? 0) as number) + 1;
      res.json({ ok: true });
    });
    app.get('/throw', () => {
      throw new Error('boom');
    });
    app.get('/next-error', (_req, _res, next) => next(new Error('async boom')));
    app.get('/500', (_req, res) => {
      res.status(500).send('failed');
    });
  };
}

async function instances(n: number, extra: Partial<MemcachedSessionOptions>, track = { active: 0, maxActive: 0 }) {
  const out: Served[] = [];
  for (let i = 0; i < n; i++) {
    const s = await serve(
      sessionOptions({ memcachedNodes: nodesString(fx.ps), nodeAvailabilityCacheTTL: 60_000, ...extra }),
      routes(track),
    );
    fx.servers.push(s);
    out.push(s);
  }
  return { servers: out, track };
}

async function newSession(s: Served): Promise<{ id: string; cookie: string }> {
  const r = await request(s.port, '/new');
  expect(r.status).toBe(200);
  const id = idFromSetCookie(r.headers)!;
  expect(id).toBe(r.json().id);
  return { id, cookie: cookieFor(id) };
}

function rawFor(id: string): RawClient {
  return fx.raws[Number(/-n(\d)$/.exec(id)![1]) - 1];
}

async function lockValue(s: Served, id: string): Promise<Buffer | null> {
  return rawFor(id).get(s.mw.store.keys.lock(id));
}

describe('lockingMode all', () => {
  it('100 concurrent increments of one session over two instances end at exactly 100', async () => {
    // A long lock wait, so that no request times out under a loaded CI box.
    const {
      servers: [a, b],
      track,
    } = await instances(2, { lockingMode: 'all', lockWaitTimeout: 20_000 });
    const { id, cookie } = await newSession(a);
    const replies = await Promise.all(
      Array.from({ length: 100 }, (_, i) => request((i % 2 ? b : a).port, '/inc', { cookie })),
    );
    expect(replies.map((r) => r.status)).toEqual(Array(100).fill(200));
    // Every increment saw the previous one: the replies are exactly 1..100.
    expect(replies.map((r) => r.json().n).sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect((await request(b.port, '/get', { cookie })).json().n).toBe(100);
    expect(track.maxActive).toBe(1);
    expect(counter(a, 'lockTimeouts') + counter(b, 'lockTimeouts')).toBe(0);
    // The /get above locked too: 101 locks.
    expect(counter(a, 'locksAcquired') + counter(b, 'locksAcquired')).toBe(101);
    await waitFor(async () => (await lockValue(a, id)) === null, { timeout: 3000, what: 'lock released' });
  });

  it('queues concurrent requests of one process in-process before the memcached lock (msm #237)', async () => {
    const {
      servers: [a],
      track,
    } = await instances(1, { lockingMode: 'all', lockWaitTimeout: 20_000 });
    const { cookie } = await newSession(a);
    const before = addOps(a);
    const replies = await Promise.all(Array.from({ length: 20 }, () => request(a.port, '/inc', { cookie })));
    expect(replies.every((r) => r.status === 200)).toBe(true);
    expect((await request(a.port, '/get', { cookie })).json().n).toBe(20);
    expect(track.maxActive).toBe(1);
    // One `add` per request: nobody polled memcached while a request of this process held the lock.
    expect(addOps(a) - before).toBe(21);
    await waitFor(() => a.mw.locks.mutex.size === 0, { timeout: 3000, what: 'mutex freed' });
  });

  it('new sessions take no lock and never touch lock: keys', async () => {
    const {
      servers: [a],
    } = await instances(1, { lockingMode: 'all' });
    const keys: string[] = [];
    const before = addOps(a);
    await request(a.port, '/new');
    await request(a.port, '/get');
    // An id longer than any cookie (MAX_ID_LENGTH): refused before a lock or key is built from it.
    await request(a.port, '/get', { cookie: cookieFor('x'.repeat(4097)) });
    await request(a.port, '/get', { cookie: 'connect.sid=' + encodeURIComponent('s:ABC-n1.forgedsignature') });
    expect(addOps(a) - before).toBe(0);
    expect(counter(a, 'locksAcquired')).toBe(0);
    for (const r of fx.raws) keys.push(...(await r.keys()));
    expect(keys.filter((k) => k.startsWith('lock:'))).toEqual([]);
  });
});

describe('lockingMode uriPattern', () => {
  it('serialises matching paths and takes no lock on others', async () => {
    const {
      servers: [a, b],
      track,
    } = await instances(2, { lockingMode: 'uriPattern:/cart/.*', lockWaitTimeout: 20_000 });
    const { cookie } = await newSession(a);

    const adds = () => addOps(a) + addOps(b);
    let before = adds();
    const other = await Promise.all(
      Array.from({ length: 10 }, (_, i) => request((i % 2 ? b : a).port, '/other/inc', { cookie })),
    );
    expect(other.every((r) => r.status === 200)).toBe(true);
    expect(adds() - before).toBe(0);
    expect(counter(a, 'locksAcquired') + counter(b, 'locksAcquired')).toBe(0);

    // Restart from a known value, then 30 concurrent increments on the locked path.
    const start = (await request(a.port, '/get', { cookie })).json().n as number;
    track.maxActive = 0;
    before = adds();
    const cart = await Promise.all(
      Array.from({ length: 30 }, (_, i) => request((i % 2 ? b : a).port, '/cart/inc', { cookie })),
    );
    expect(cart.every((r) => r.status === 200)).toBe(true);
    expect((await request(b.port, '/get', { cookie })).json().n).toBe(start + 30);
    expect(track.maxActive).toBe(1);
    expect(counter(a, 'locksAcquired') + counter(b, 'locksAcquired')).toBe(30);
    expect(adds() - before).toBeGreaterThanOrEqual(30);
  });

  it('matches the whole path plus query, without the method', async () => {
    const {
      servers: [a],
    } = await instances(1, { lockingMode: 'uriPattern:/cart/inc\\?x=1' });
    const { cookie } = await newSession(a);
    await request(a.port, '/cart/inc', { cookie });
    expect(counter(a, 'locksAcquired')).toBe(0);
    await request(a.port, '/cart/inc?x=1', { cookie });
    expect(counter(a, 'locksAcquired')).toBe(1);
    await request(a.port, '/cart/inc?x=12', { cookie });
    expect(counter(a, 'locksAcquired')).toBe(1);
  });
});

describe('lock release', () => {
  async function expectReleased(a: Served, id: string, cookie: string) {
    await waitFor(async () => (await lockValue(a, id)) === null, { timeout: 3000, what: 'lock deleted' });
    expect(a.mw.locks.mutex.isHeld(id)).toBe(false);
    // The next request gets the lock at the first attempt.
    const adds = addOps(a);
    expect((await request(a.port, '/get', { cookie })).status).toBe(200);
    expect(addOps(a) - adds).toBe(1);
    expect(counter(a, 'lockTimeouts')).toBe(0);
  }

  it('after a thrown error, an error passed to next() and a 500', async () => {
    const {
      servers: [a],
    } = await instances(1, { lockingMode: 'all', lockWaitTimeout: 3000 });
    const { id, cookie } = await newSession(a);
    for (const path of ['/throw', '/next-error', '/500']) {
      const before = counter(a, 'locksAcquired');
      const r = await request(a.port, path, { cookie });
      expect(r.status).toBe(500);
      expect(counter(a, 'locksAcquired')).toBe(before + 1);
      await expectReleased(a, id, cookie);
    }
  });

  it('after the client destroys the socket mid-request', async () => {
    const {
      servers: [a],
    } = await instances(1, { lockingMode: 'all', lockWaitTimeout: 3000, lockExpiration: 30 });
    const { id, cookie } = await newSession(a);
    const started = Date.now();
    await abortedRequest(a.port, '/slow?ms=2000', cookie, 200);
    await waitFor(async () => (await lockValue(a, id)) === null, { timeout: 3000, what: 'lock deleted after abort' });
    // Released by the abort, not by the handler finishing (2 s) nor the TTL (30 s).
    expect(Date.now() - started).toBeLessThan(2000);
    expect(counter(a, 'locksAcquired')).toBe(1);
    expect(a.mw.locks.mutex.isHeld(id)).toBe(false);
  });

  it('a held lock expires after lockExpiration', async () => {
    const {
      servers: [a, b],
    } = await instances(2, { lockingMode: 'all', lockExpiration: 2, lockWaitTimeout: 6000 });
    const { id, cookie } = await newSession(a);
    // A holds the lock far longer than lockExpiration.
    const slow = request(a.port, '/slow?ms=4500', { cookie });
    await waitFor(async () => (await lockValue(a, id)) !== null, { timeout: 3000, what: 'lock taken' });
    const meta = await rawFor(id).meta(a.mw.store.keys.lock(id));
    expect(meta!.ttl).toBeGreaterThan(0);
    expect(meta!.ttl).toBeLessThanOrEqual(2);
    // B waits until the lock expires, then proceeds with a lock of its own while A still runs.
    const fast = request(b.port, '/get', { cookie });
    expect(await Promise.race([slow.then(() => 'a'), fast.then(() => 'b')])).toBe('b');
    const r = await fast;
    expect(r.status).toBe(200);
    expect(counter(b, 'locksAcquired')).toBe(1);
    expect(counter(b, 'lockTimeouts')).toBe(0);
    expect((await slow).status).toBe(200);
    // A outlived its lock: it must not delete whatever lock exists now.
    await waitFor(() => counter(a, 'lockReleaseSkipped') === 1, { timeout: 3000, what: 'release skipped' });
  });

  it('releases the lock in one operation: a delete carrying the CAS of its add, no get', async () => {
    const {
      servers: [a],
    } = await instances(1, { lockingMode: 'all', lockExpiration: 10 });
    const { id, cookie } = await newSession(a);
    const node = `n${/-n(\d)$/.exec(id)![1]}`;
    // The session's node also serves the load (get) and the touch; count what the lock adds on top.
    const ops = () => ({ ...a.mw.store.stats().nodes[node].ops });
    await request(a.port, '/get', { cookie }); // warm: the first request may touch/repair
    const before = ops();
    expect((await request(a.port, '/get', { cookie })).status).toBe(200);
    await waitFor(async () => (await lockValue(a, id)) === null, { timeout: 3000, what: 'lock released' });
    const after = ops();
    const again = ops();
    expect(after.add - before.add).toBe(1);
    expect(after.delete - before.delete).toBe(1);
    // Without the lock a read costs 2 gets on this node (session, validity): the release read nothing.
    expect(after.get - before.get).toBe(2);
    expect(again).toEqual(after);
  });

  it('does not delete a lock that is no longer its own (another item, another CAS)', async () => {
    const {
      servers: [a],
    } = await instances(1, { lockingMode: 'all', lockExpiration: 10 });
    const { id, cookie } = await newSession(a);
    const slow = request(a.port, '/slow?ms=600', { cookie });
    const key = a.mw.store.keys.lock(id);
    const mine = await waitFor(async () => lockValue(a, id), { timeout: 3000, what: 'lock taken' });
    expect(mine.length).toBeGreaterThanOrEqual(16);
    // Simulate: our lock expired and another request took it.
    await rawFor(id).set(key, 'someone-else', 10);
    expect((await slow).status).toBe(200);
    await waitFor(() => counter(a, 'lockReleaseSkipped') === 1, { timeout: 3000, what: 'release skipped' });
    expect((await rawFor(id).get(key))!.toString()).toBe('someone-else');
    await rawFor(id).delete(key);
  });
});

describe('lock timeout', () => {
  async function heldByOther(a: Served, id: string) {
    await rawFor(id).set(a.mw.store.keys.lock(id), 'other-instance', 30);
  }

  function timeoutLines(log: { lines: string[] }, id: string): string[] {
    const lines = log.lines.filter((l) => /lock wait timed out/.test(l));
    for (const l of lines) expect(l).not.toContain(id);
    return lines.filter((l) => l.includes(hashId(id)));
  }

  it('answers 503 with Retry-After by default, does not run the handler, logs once with the hashed id', async () => {
    const log = capturingLogger();
    const {
      servers: [a],
      track,
    } = await instances(1, { lockingMode: 'all', lockWaitTimeout: 300, logger: log });
    const { id, cookie } = await newSession(a);
    await heldByOther(a, id);
    const started = Date.now();
    const r = await request(a.port, '/inc', { cookie });
    // The lock wait's own deadline, not operationTimeout's 1000 ms nor lockExpiration's 5 s.
    expect(Date.now() - started).toBeLessThan(1000);
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    expect(r.headers['set-cookie']).toBeUndefined();
    expect(track.maxActive).toBe(0);
    expect(counter(a, 'lockTimeouts')).toBe(1);
    expect(counter(a, 'lockRejections')).toBe(1);
    const lines = timeoutLines(log, id);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^warn .*answering 503/);
    expect(a.mw.locks.mutex.isHeld(id)).toBe(false);
    await rawFor(id).delete(a.mw.store.keys.lock(id));
    const ok = await request(a.port, '/get', { cookie });
    expect(ok.json().n).toBe(0);
  });

  it("proceeds without the lock with lockTimeoutAction 'proceed' (msm), logged and counted", async () => {
    const log = capturingLogger();
    const {
      servers: [a],
    } = await instances(1, { lockingMode: 'all', lockWaitTimeout: 300, lockTimeoutAction: 'proceed', logger: log });
    const { id, cookie } = await newSession(a);
    await heldByOther(a, id);
    const r = await request(a.port, '/inc', { cookie });
    expect(r.status).toBe(200);
    expect(r.json().n).toBe(1);
    expect(counter(a, 'lockTimeouts')).toBe(1);
    expect(counter(a, 'lockRejections')).toBe(0);
    expect(counter(a, 'locksAcquired')).toBe(0);
    // Several attempts with backoff, not one.
    expect(addOps(a)).toBeGreaterThan(2);
    const lines = timeoutLines(log, id);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^warn .*proceeding without the lock/);
    // Not ours: left alone.
    expect((await lockValue(a, id))!.toString()).toBe('other-instance');
    await rawFor(id).delete(a.mw.store.keys.lock(id));
  });

  it('a request queued in this process past lockWaitTimeout is answered 503 too, and logged once', async () => {
    const log = capturingLogger();
    const {
      servers: [a],
    } = await instances(1, { lockingMode: 'all', lockWaitTimeout: 300, logger: log });
    const { id, cookie } = await newSession(a);
    const slow = request(a.port, '/slow?ms=1000', { cookie });
    await waitFor(() => a.mw.locks.mutex.size === 1, { timeout: 3000, what: 'mutex held' });
    const r = await request(a.port, '/get', { cookie });
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    expect((await slow).status).toBe(200);
    expect(counter(a, 'lockTimeouts')).toBe(1);
    const lines = timeoutLines(log, id);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/queued in this process/);
  });
});

describe('lock wait deadline and timeout action, by default', () => {
  it('six concurrent 300 ms increments of one session all count: the wait is not bounded by operationTimeout', async () => {
    const {
      servers: [a],
      track,
    } = await instances(1, { lockingMode: 'all' });
    const { cookie } = await newSession(a);
    const replies = await Promise.all(Array.from({ length: 6 }, () => request(a.port, '/inc?ms=300', { cookie })));
    expect(replies.map((r) => r.status)).toEqual(Array(6).fill(200));
    expect((await request(a.port, '/get', { cookie })).json().n).toBe(6);
    expect(track.maxActive).toBe(1);
    expect(counter(a, 'lockTimeouts')).toBe(0);
  });
});
