// Sessions whose id names no node (express-session's own ids) are placed by rendezvous hashing over the node list:
// when the list changes, a load that finds nothing at the session's new node finds it where an earlier list put it
// and moves it over, at the same instance and at a fresh one that never knew the earlier list.
import request from 'supertest';
import type { MemcachedStore } from '../../lib';
import type { MemcachedProcess } from '../helpers/memcached';
import { useMemcacheds } from '../helpers/use-memcacheds';
import { cookieFor, idFromSetCookie, makeApp } from '../helpers/app';
import { testStores } from '../helpers/store';

const spec = (ps: MemcachedProcess[], ids: string[]) =>
  ids.map((id) => `${id}:127.0.0.1:${ps[Number(id.slice(1)) - 1].port}`).join(',');

describe('placement of ids that name no node', () => {
  const stores: MemcachedStore[] = [];
  const mc = useMemcacheds(3, stores);
  const { newStore } = testStores(() => ({ sessionBackupAsync: false, storageKeyPrefix: 'static:place' }), stores);

  test('2 nodes, a 3rd joins, an original one leaves and is killed: 0 of 40 sessions lost, here and at a fresh instance', async () => {
    const a = newStore({ memcachedNodes: spec(mc.ps, ['n1', 'n2']) });
    // No genid option: express-session's own ids.
    const appA = makeApp(a, {}, false);
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await request(appA).get('/inc').expect(200);
      ids.push(idFromSetCookie(res.headers)!);
    }
    for (const id of ids) expect(a.idFormat.parse(id)?.nodeId).toBeUndefined();
    const before = new Map(ids.map((id) => [id, a.nodes.hashNode(a.idFormat.parse(id)!.random)]));
    expect(new Set(before.values())).toEqual(new Set(['n1', 'n2']));

    // Nothing is requested between the changes: no session is moved before n1 is gone.
    a.setMemcachedNodes(spec(mc.ps, ['n1', 'n2', 'n3']));
    const joined = new Map(ids.map((id) => [id, a.nodes.hashNode(a.idFormat.parse(id)!.random)]));
    // A join takes keys only for the new node.
    for (const id of ids) expect([before.get(id), 'n3']).toContain(joined.get(id));
    expect([...joined.values()]).toContain('n3');
    a.setMemcachedNodes(spec(mc.ps, ['n2', 'n3']));
    await mc.ps[0].kill();
    await a.nodes.refresh();

    const b = newStore({ memcachedNodes: spec(mc.ps, ['n2', 'n3']) });
    const appB = makeApp(b, {}, false);
    const inc = async (app: ReturnType<typeof makeApp>, id: string) => {
      const res = await request(app).get('/inc').set('Cookie', cookieFor(id)).expect(200);
      return res.body as { id: string; n: number | null };
    };
    const lost: string[] = [];
    for (const [i, id] of ids.entries()) {
      // Half are read first at the instance that saw the changes, half first at the fresh one.
      const [first, second] = i < 20 ? [appA, appB] : [appB, appA];
      const r1 = await inc(first, id);
      const r2 = await inc(second, id);
      if (r1.id !== id || r1.n !== 2 || r2.id !== id || r2.n !== 3) lost.push(`${id}: ${JSON.stringify([r1, r2])}`);
    }
    expect(lost).toEqual([]);
  }, 60_000);

  test('one host:port: placement does not depend on the id', async () => {
    const s = newStore({ memcachedNodes: `127.0.0.1:${mc.ps[0].port}` });
    const app = makeApp(s, {}, false);
    const id = idFromSetCookie((await request(app).get('/inc').expect(200)).headers)!;
    expect((await request(app).get('/inc').set('Cookie', cookieFor(id)).expect(200)).body).toEqual({ id, n: 2 });
    expect(new Set(s.nodes.ids)).toEqual(new Set([s.nodes.hashNode(s.idFormat.parse(id)!.random)]));
  });
});
