// Issue 13: the per-user index (indexBy, idsOf, destroyAllOf) against real memcached processes, two store instances
// (two app servers in production), items read back with an independent client.
import request from 'supertest';
import { createHash } from 'crypto';
import { MemcachedStore, memcachedSession } from '../../lib';
import { decodeIndex, encodeIndex } from '../../lib/modes/user-index';
import { nodesString } from '../helpers/memcached';
import { useMemcacheds } from '../helpers/use-memcacheds';
import { SECRET, cookieFor, idFromSetCookie, makeApp } from '../helpers/app';
import express from 'express';
import { sleep, waitFor } from '../helpers/wait';
import { testStores } from '../helpers/store';

const indexBy = (s: any) => s.data?.userId;
const sha = (v: string) => createHash('sha256').update(v).digest('hex');
const nodeIndex = (id: string) => Number(/-n(\d)$/.exec(id)![1]) - 1;

describe('per-user index (non-sticky, three nodes, two instances)', () => {
  const stores: MemcachedStore[] = [];
  const mc = useMemcacheds(3, stores);
  const { newStore } = testStores(
    () => ({
      memcachedNodes: nodesString(mc.ps),
      sessionBackupAsync: false,
      sessionBackupTimeout: 1000,
      operationTimeout: 2000, // no test here waits on a hung node; a loaded CI box must not fail index writes by timeout
      indexBy,
    }),
    stores,
  );
  /** A session logged in as `user` through `app`: its id, and an agent holding its cookie. */
  const login = async (app: express.Express, user: string) => {
    const agent = request.agent(app);
    const id: string = (await agent.post('/data').send({ userId: user }).expect(200)).body.id;
    return { id, agent };
  };
  /** The index item of `user` on every node that holds one. */
  const indexItems = async (user: string) => {
    const out: Array<{ node: number; ids: string[] }> = [];
    for (let i = 0; i < mc.raw.length; i++) {
      if (!mc.ps[i].proc) continue;
      const item = decodeIndex(await mc.raw[i].get(`idx:${sha(user)}`));
      if (item) out.push({ node: i, ids: [...item.entries.keys()].sort() });
    }
    return out;
  };
  /** indexItems, asserting the two copies a user with live sessions has while every node is up. */
  const bothCopies = async (user: string) => {
    const items = await indexItems(user);
    expect(items).toHaveLength(2);
    return items;
  };

  it("destroyAllOf ends every session of a user created through either instance, with a node killed, and no other user's", async () => {
    const a = newStore();
    const b = newStore();
    const appA = makeApp(a);
    const appB = makeApp(b);
    const alice = [
      await login(appA, 'alice'),
      await login(appB, 'alice'),
      await login(appA, 'alice'),
      await login(appB, 'alice'),
    ];
    const bob = [await login(appA, 'bob'), await login(appB, 'bob')];
    const aliceIds = alice.map((s) => s.id).sort();

    // One item per user on two nodes, under a hashed key: no user id in any key.
    const items = await indexItems('alice');
    expect(items).toHaveLength(2);
    for (const it of items) expect(it.ids).toEqual(aliceIds);
    for (const r of mc.raw) for (const k of await r.keys()) expect(k).not.toMatch(/alice|bob/);
    expect((await a.idsOf('alice')).sort()).toEqual(aliceIds);
    expect((await b.idsOf('bob')).sort()).toEqual(bob.map((s) => s.id).sort());

    // Kill a node that holds a copy of alice's index (and the primaries of some sessions).
    const killed = items[0].node;
    await mc.ps[killed].kill();

    expect(await b.destroyAllOf('alice')).toBe(4);
    for (const s of alice) {
      const r = await s.agent.get('/get').expect(200);
      expect(r.body.data).toBeNull();
    }
    for (const s of bob) {
      const r = await s.agent.get('/get').expect(200);
      expect(r.body.data).toEqual({ userId: 'bob' });
    }
    expect(await a.idsOf('alice')).toEqual([]);
    expect(await a.idsOf('bob')).toHaveLength(2);
    // The surviving copy is compacted: no alice entries left.
    for (const it of await indexItems('alice')) expect(it.ids).toEqual([]);
  });

  it('concurrent logins of one user through both instances all land in the index (CAS, no lost update)', async () => {
    const apps = [makeApp(newStore()), makeApp(newStore())];
    const sessions = await Promise.all(Array.from({ length: 16 }, (_, i) => login(apps[i % 2], 'erin')));
    const want = sessions.map((x) => x.id).sort();
    for (const it of await bothCopies('erin')) expect(it.ids).toEqual(want);
    expect((await stores[0].idsOf('erin')).sort()).toEqual(want);
    expect(stores.map((x) => x.stats().indexWriteFailures)).toEqual([0, 0]);
  });

  it('a copy lost to a node restart is written again by the next read', async () => {
    const store = newStore();
    const app = makeApp(store);
    const s1 = await login(app, 'frank');
    const s2 = await login(app, 'frank');
    const [first, second] = (await bothCopies('frank')).map((i) => i.node);
    await mc.ps[first].restart();
    await waitFor(
      async () => {
        await store.ready();
        return store.stats().nodes[`n${first + 1}`].available;
      },
      { timeout: 5000, what: 'node back' },
    );
    expect((await indexItems('frank')).map((i) => i.node)).toEqual([second]);
    // Sessions whose primary was on the restarted node are restored from their backups by the load.
    const live = [s1.id, s2.id].sort();
    expect((await store.idsOf('frank')).sort()).toEqual(live);
    expect(await indexItems('frank')).toEqual(
      [
        { node: first, ids: live },
        { node: second, ids: live },
      ].sort((a, b) => a.node - b.node),
    );
  });

  it('a copy that missed a change (its write failed, the other copy took it) is completed by the next read', async () => {
    const store = newStore();
    const app = makeApp(store);
    const s1 = await login(app, 'grace');
    const s2 = await login(app, 'grace');
    const live = [s1.id, s2.id].sort();
    const [first, second] = (await bothCopies('grace')).map((i) => i.node);
    // As if the write of s2's entry had timed out on `first`: that copy lists s1 only.
    await mc.raw[first].set(`idx:${sha('grace')}`, encodeIndex('grace', new Map([[s1.id, 2e9]])), 600);
    expect(await indexItems('grace')).toEqual(
      [
        { node: first, ids: [s1.id] },
        { node: second, ids: live },
      ].sort((a, b) => a.node - b.node),
    );
    expect((await store.idsOf('grace')).sort()).toEqual(live);
    expect(await indexItems('grace')).toEqual(
      [
        { node: first, ids: live },
        { node: second, ids: live },
      ].sort((a, b) => a.node - b.node),
    );
  });

  it('finds a session relocated off a dead node under its new id, and records the move', async () => {
    const store = newStore();
    const app = makeApp(store);
    const s = await login(app, 'alice');
    // The index has two copies on two nodes: one survives whichever node dies.
    expect(await indexItems('alice')).toHaveLength(2);
    const p = nodeIndex(s.id);
    await mc.ps[p].kill();
    const ids = await store.idsOf('alice');
    const moved = ids.find((id) => id.slice(0, 32) === s.id.slice(0, 32))!;
    expect(moved).toBeDefined();
    expect(moved).not.toBe(s.id);
    expect(nodeIndex(moved)).not.toBe(p);
    const left = await indexItems('alice');
    expect(left.length).toBeGreaterThan(0);
    for (const it of left) {
      expect(it.ids).toContain(moved);
      expect(it.ids).not.toContain(s.id);
    }
    // The user's next request follows the move too; destroyAllOf ends it.
    expect(idFromSetCookie((await s.agent.get('/get').expect(200)).headers)).toBe(moved);
    expect(await store.destroyAllOf('alice')).toBe(1);
    expect((await s.agent.get('/get').expect(200)).body.data).toBeNull();
  });

  it('changing or removing the value, destroy and expiry take a session out of the index', async () => {
    const store = newStore();
    const other = newStore();
    const app = makeApp(store);
    const s1 = await login(app, 'alice');
    const s2 = await login(app, 'alice');
    const s3 = await login(app, 'alice');
    // Changed value: out of alice's item, into carol's.
    await s1.agent.post('/data').send({ userId: 'carol' }).expect(200);
    for (const it of await bothCopies('alice')) expect(it.ids).toEqual([s2.id, s3.id].sort());
    expect(await other.idsOf('carol')).toEqual([s1.id]);
    // Removed value.
    await s2.agent.post('/data').send({}).expect(200);
    for (const it of await bothCopies('alice')) expect(it.ids).toEqual([s3.id]);
    // Destroyed, through the other instance (which never wrote its entry).
    await request(makeApp(other)).get('/destroy').set('Cookie', cookieFor(s3.id)).expect(200);
    for (const it of await indexItems('alice')) expect(it.ids).toEqual([]);
    expect(await other.idsOf('alice')).toEqual([]);

    // Expiry: a 1 s session is gone from idsOf once it expired, and the index drops it when read.
    const short = makeApp(store, { cookie: { maxAge: 1000 } });
    const s4 = await login(short, 'dave');
    expect(await other.idsOf('dave')).toEqual([s4.id]);
    await sleep(1600);
    expect(await other.idsOf('dave')).toEqual([]);
    for (const it of await indexItems('dave')) expect(it.ids).toEqual([]);
  });

  it("a stale or forged index never destroys a session that is not the user's; a lost index only misses", async () => {
    const store = newStore();
    const app = makeApp(store);
    const al = await login(app, 'alice');
    const bo = await login(app, 'bob');
    // alice's items also list bob's session (stale: say bob's session was alice's before a change another instance missed).
    for (const it of await bothCopies('alice')) {
      await mc.raw[it.node].set(
        `idx:${sha('alice')}`,
        encodeIndex(
          'alice',
          new Map([
            [al.id, 2e9],
            [bo.id, 2e9],
            ['not a valid id!', 2e9],
          ]),
        ),
        600,
      );
    }
    expect(await store.idsOf('alice')).toEqual([al.id]);
    expect(await store.destroyAllOf('alice')).toBe(1);
    expect((await bo.agent.get('/get').expect(200)).body.data).toEqual({ userId: 'bob' });
    for (const it of await indexItems('alice')) expect(it.ids).toEqual([]);

    // A key collision (another value's item under alice's key) is left alone and lists nothing.
    const al2 = await login(app, 'alice');
    for (const it of await bothCopies('alice')) {
      await mc.raw[it.node].set(`idx:${sha('alice')}`, encodeIndex('mallory', new Map([[bo.id, 2e9]])), 600);
    }
    expect(await store.idsOf('alice')).toEqual([]);
    expect(await store.destroyAllOf('alice')).toBe(0);
    expect((await bo.agent.get('/get').expect(200)).body.data).toEqual({ userId: 'bob' });

    // Lost index items: nothing found, nothing destroyed; the session itself is fine.
    for (const r of mc.raw) await r.delete(`idx:${sha('alice')}`);
    expect(await store.destroyAllOf('alice')).toBe(0);
    expect((await al2.agent.get('/get').expect(200)).body.data).toEqual({ userId: 'alice' });
  });

  it('works through memcachedSession(), with callbacks, numbers as values, and clear errors', async () => {
    const mw = memcachedSession({
      memcachedNodes: nodesString(mc.ps),
      sessionBackupAsync: false,
      indexBy: (s: any) => s.uid,
      session: { secret: SECRET, resave: false, saveUninitialized: false },
    });
    stores.push(mw.store);
    const app = express();
    app.use(mw);
    app.get('/login', (req, res) => {
      (req.session as any).uid = 42;
      res.json({ id: req.sessionID });
    });
    const id: string = (await request(app).get('/login').expect(200)).body.id;
    const viaCallback = await new Promise<string[]>((resolve, reject) =>
      mw.store.idsOf(42, (e, v) => (e ? reject(e) : resolve(v!))),
    );
    expect(viaCallback).toEqual([id]);
    expect(await mw.store.idsOf('42')).toEqual([id]);
    const n = await new Promise<number>((resolve, reject) =>
      mw.store.destroyAllOf(42, (e, v) => (e ? reject(e) : resolve(v!))),
    );
    expect(n).toBe(1);
    await expect(mw.store.idsOf({} as any)).rejects.toThrow(/non-empty string or a finite number/);
    const plain = newStore({ indexBy: undefined });
    await expect(plain.idsOf('x')).rejects.toThrow(/indexBy option/);
    const err = await new Promise((resolve) => plain.destroyAllOf('x', resolve));
    expect(String(err)).toMatch(/indexBy option/);
  });
});

describe('indexBy configuration', () => {
  it('rejects a non-function, sticky mode, and a prefix too long for index keys', () => {
    expect(() => new MemcachedStore({ memcachedNodes: 'n1:127.0.0.1:11211', indexBy: 'userId' as any })).toThrow(
      /indexBy.*function/,
    );
    expect(
      () => new MemcachedStore({ memcachedNodes: 'n1:127.0.0.1:11211', sticky: true, route: 'a', indexBy }),
    ).toThrow(/indexBy.*non-sticky/);
    const long = ['a', 'b', 'c'].map((c) => `static:${c.repeat(64)}`).join(',');
    expect(() => new MemcachedStore({ memcachedNodes: 'n1:127.0.0.1:11211', storageKeyPrefix: long, indexBy })).toThrow(
      /storageKeyPrefix.*too long for indexBy/,
    );
  });
});
