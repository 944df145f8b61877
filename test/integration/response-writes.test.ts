// express-session writes a response in two pieces (all but the last byte, then that byte) when the store answers
// its end-of-response save or touch later; the store answers on the spot when nothing is left to wait for, and
// otherwise holds the response's socket corked until it has answered: one write per response either way.
import express from 'express';
import session from 'express-session';
import request from 'supertest';
import type { MemcachedStore } from '../../lib';
import { nodesString } from '../helpers/memcached';
import { useMemcacheds } from '../helpers/use-memcacheds';
import { SECRET } from '../helpers/app';
import { testStores } from '../helpers/store';

/** An app counting, per request, the socket writes its response took (by the request's `x-probe` header). */
function countingApp(store: session.Store, writes: Map<string, number>) {
  const app = express();
  app.use((req, res, next) => {
    const sock = req.socket as any;
    const probe = String(req.headers['x-probe']);
    const count = () => writes.set(probe, (writes.get(probe) ?? 0) + 1);
    const w = sock._write,
      wv = sock._writev;
    sock._write = function (...a: unknown[]) {
      count();
      return w.apply(this, a);
    };
    sock._writev = function (...a: unknown[]) {
      count();
      return wv.apply(this, a);
    };
    res.on('finish', () => {
      sock._write = w;
      sock._writev = wv;
    });
    next();
  });
  app.use(session({ store, secret: SECRET, resave: false, saveUninitialized: false, cookie: { maxAge: 60_000 } }));
  app.get('/inc', (req, res) => {
    const s = req.session as any;
    s.n = (s.n ?? 0) + 1;
    res.json({ n: s.n, pad: 'x'.repeat(200) });
  });
  app.get('/read', (req, res) => res.json({ n: (req.session as any).n ?? null, pad: 'x'.repeat(200) }));
  return app;
}

describe('one socket write per response', () => {
  const stores: MemcachedStore[] = [];
  const mc = useMemcacheds(2, stores);
  const { newStore } = testStores(() => ({ memcachedNodes: nodesString(mc.ps) }), stores);

  async function run(store: session.Store) {
    const writes = new Map<string, number>();
    const agent = request.agent(countingApp(store, writes));
    await agent.get('/inc').set('x-probe', 'create').expect(200);
    await agent.get('/inc').set('x-probe', 'write').expect(200);
    const r = await agent.get('/read').set('x-probe', 'read').expect(200);
    expect(r.body.n).toBe(2);
    return writes;
  }

  it('non-sticky: a save (answered after memcached) and a touch (answered at once) each leave in one write', async () => {
    const store = newStore();
    const writes = await run(store);
    expect(writes.get('write')).toBe(1);
    expect(writes.get('read')).toBe(1);
    // The save was answered after memcached: the corked socket, not a synchronous answer, made it one write.
    expect(writes.get('create')).toBe(1);
  });

  it('sticky: a save and a touch leave in one write', async () => {
    const store = newStore({ sticky: true, route: 'a' });
    const writes = await run(store);
    expect(writes.get('write')).toBe(1);
    expect(writes.get('read')).toBe(1);
  });

  it("the count sees express-session's split: MemoryStore (answers on a later tick) takes two writes", async () => {
    const writes = await run(new session.MemoryStore());
    expect(writes.get('write')).toBe(2);
    expect(writes.get('read')).toBe(2);
  });
});
