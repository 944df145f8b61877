// store.setMemcachedNodes (issue 12): the node list changes at run time against real memcached processes, with two
// app instances under load; every session must survive with every acknowledged increment.
import request from 'supertest';
import { ConfigError, type MemcachedStore } from '../../lib';
import type { MemcachedProcess } from '../helpers/memcached';
import { useMemcacheds } from '../helpers/use-memcacheds';
import { cookieFor, idFromSetCookie, makeApp } from '../helpers/app';
import { SessionLoad } from '../helpers/session-load';
import { testStores } from '../helpers/store';

const spec = (ps: MemcachedProcess[], ids: string[]) =>
  ids.map((id) => `${id}:127.0.0.1:${ps[Number(id.slice(1)) - 1].port}`).join(',');
const nodeOf = (id: string) => /-(n\d)(?:\.\w+)?$/.exec(id)?.[1];

describe('setMemcachedNodes', () => {
  const stores: MemcachedStore[] = [];
  const mc = useMemcacheds(4, stores);
  const { newStore } = testStores(
    () => ({
      memcachedNodes: spec(mc.ps, ['n1', 'n2', 'n3']),
      sessionBackupAsync: false,
      sessionBackupTimeout: 1000,
      storageKeyPrefix: 'static:nc',
    }),
    stores,
  );

  test('non-sticky, two instances under load: a node joins, a node leaves; 0 sessions and 0 acknowledged increments lost', async () => {
    const a = newStore({});
    const b = newStore({});
    const apps = [makeApp(a), makeApp(b)];
    const sessions = await SessionLoad.create(apps, 24);
    expect(new Set(sessions.map((s) => nodeOf(s.id)))).toEqual(new Set(['n1', 'n2', 'n3']));
    const onN1 = sessions.filter((s) => nodeOf(s.id) === 'n1').map((s) => s.id);

    const load = new SessionLoad(apps, sessions);
    await load.progress('load before the changes');
    // Both instances in the same tick: no request sees them disagree (with autoDiscovery they converge by polling).
    a.setMemcachedNodes(spec(mc.ps, ['n1', 'n2', 'n3', 'n4']));
    b.setMemcachedNodes(spec(mc.ps, ['n1', 'n2', 'n3', 'n4']));
    await load.progress('load after n4 joined');
    a.setMemcachedNodes(spec(mc.ps, ['n2', 'n3', 'n4']));
    b.setMemcachedNodes(spec(mc.ps, ['n2', 'n3', 'n4']));
    await load.progress('load after n1 left');
    await load.stop();

    expect(load.failures).toEqual([]);
    expect(await load.verify(apps[0])).toEqual([]);
    for (const s of sessions) expect(nodeOf(s.id)).not.toBe('n1');
    // n1's sessions were relocated (same random part, another node), not recreated.
    for (const id of onN1) expect(sessions.find((x) => x.id.startsWith(id.slice(0, 32)))!.id).not.toMatch(/-n1$/);
    expect(a.stats().nodes).not.toHaveProperty('n1');
    expect(Object.keys(b.stats().nodes)).toEqual(['n2', 'n3', 'n4']);

    // The joined node takes new sessions; the removed one none.
    const created = new Set<string | undefined>();
    for (let i = 0; i < 40; i++)
      created.add(nodeOf(idFromSetCookie((await request(apps[1]).get('/inc').expect(200)).headers)!));
    expect(created.has('n4')).toBe(true);
    expect(created.has('n1')).toBe(false);
    // Backups of sessions whose next node changed were re-placed: every session has a current backup somewhere else.
    await a.ready();
    for (const s of sessions) {
      const primary = Number(nodeOf(s.id)!.slice(1)) - 1;
      const backups = await Promise.all(
        [1, 2, 3].filter((i) => i !== primary).map((i) => mc.raw[i].get(a.keys.backup(s.id))),
      );
      expect(backups.some((x) => x !== null)).toBe(true);
    }
  }, 120_000);

  test('invalid input throws and changes nothing', async () => {
    const s = newStore({ failoverNodes: 'n3' });
    const agent = request.agent(makeApp(s));
    await agent.get('/inc').expect(200);
    const before = JSON.stringify({
      ids: s.nodes.ids,
      failover: s.nodes.failoverIds,
      nodes: Object.keys(s.stats().nodes),
    });
    const bad: Array<[string, string | undefined]> = [
      ['', undefined],
      ['n1:127.0.0.1:notaport', undefined],
      ['n-1:127.0.0.1:11211', undefined],
      ['n1:127.0.0.1:11211,n1:127.0.0.1:11212', undefined],
      [`127.0.0.1:${mc.ps[0].port}`, undefined], // the id-less form: session ids would stop naming nodes
      [spec(mc.ps, ['n1', 'n2']), 'n9'],
      [spec(mc.ps, ['n1', 'n2']), 'n1,n2'],
      [42 as unknown as string, undefined],
    ];
    for (const [nodes, failover] of bad) expect(() => s.setMemcachedNodes(nodes, failover)).toThrow(ConfigError);
    expect(
      JSON.stringify({ ids: s.nodes.ids, failover: s.nodes.failoverIds, nodes: Object.keys(s.stats().nodes) }),
    ).toBe(before);
    expect((await agent.get('/inc').expect(200)).body.n).toBe(2);
  });

  test('a store started with one host:port can only be pointed at another host:port', async () => {
    const s = newStore({ memcachedNodes: `127.0.0.1:${mc.ps[0].port}` });
    expect(() => s.setMemcachedNodes(spec(mc.ps, ['n1', 'n2']))).toThrow(/single "host:port"/);
    s.setMemcachedNodes(`127.0.0.1:${mc.ps[1].port}`);
    const r = await request(makeApp(s)).get('/inc').expect(200);
    expect(await mc.raw[1].get(s.keys.session(r.body.id))).not.toBeNull();
    expect(await mc.raw[0].get(s.keys.session(r.body.id))).toBeNull();
  });

  test('sticky: a session whose memcached copy is on a removed node gets a copy on another node; another route takes it over', async () => {
    const a = newStore({ sticky: true, route: 'a' });
    const b = newStore({ sticky: true, route: 'b' });
    const appA = makeApp(a);
    let id = '';
    for (let i = 0; i < 60 && nodeOf(id) !== 'n1'; i++)
      id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    expect(nodeOf(id)).toBe('n1');
    await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200);
    a.setMemcachedNodes(spec(mc.ps, ['n2', 'n3']));
    b.setMemcachedNodes(spec(mc.ps, ['n2', 'n3']));
    const r = await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200);
    expect(r.body.n).toBe(3);
    const moved = idFromSetCookie(r.headers)!;
    expect(moved.slice(0, 32)).toBe(id.slice(0, 32));
    expect(nodeOf(moved)).toMatch(/^n[23]$/);
    await a.backups.flush();
    expect(await mc.raw[Number(nodeOf(moved)!.slice(1)) - 1].get(a.keys.session(moved))).not.toBeNull();
    // Instance a is gone: b takes the session over from the new copy.
    const t = await request(makeApp(b)).get('/inc').set('Cookie', cookieFor(moved)).expect(200);
    expect(t.body.n).toBe(4);
  });

  test('an instance that saw a node leave writes where one that has not yet looks: no update lost in between', async () => {
    // a still lists n2; b has dropped it. A session on n2 loaded by b before the change is saved by b after it.
    const a = newStore({});
    const b = newStore({});
    const id = a.idFormat.create('n2', undefined);
    await a.set(id, { cookie: { originalMaxAge: 60_000 }, n: 1 } as any);
    const loaded: any = await b.get(id);
    b.setMemcachedNodes(spec(mc.ps, ['n1', 'n3']));
    loaded.n = 2;
    await b.set(id, loaded);
    // a reads n2's primary (n 1) and the backup record on n3, finds the backup newer and serves it.
    expect(((await a.get(id)) as any).n).toBe(2);
    // Both find n2's next node in the list n2 was part of: n3 (before, b took the first node of its list, n1).
    expect(b.nodes.nextAvailable('n2')).toBe('n3');
    expect(a.nodes.nextAvailable('n2')).toBe('n3');
  });

  test("a node leaves, then the node holding its sessions' backups is killed: an untouched session survives", async () => {
    // a drops n1 first; b saves the session on n1 (backup on n2) and drops n1 afterwards. Nobody requests the
    // session, so nothing relocates it; then n1 is retired and n2 dies.
    const a = newStore({});
    const b = newStore({});
    const id = a.idFormat.create('n1', undefined);
    await a.set(id, { cookie: { originalMaxAge: 60_000 }, n: 1 } as any);
    a.setMemcachedNodes(spec(mc.ps, ['n2', 'n3']));
    await a.ready();
    const loaded: any = await b.get(id);
    loaded.n = 2;
    await b.set(id, loaded);
    b.setMemcachedNodes(spec(mc.ps, ['n2', 'n3']));
    await b.ready();
    // A second copy of the backup, on the node after n2, as b saved it (b copied after its own list change).
    const second = await mc.raw[2].get(b.keys.backup(id));
    expect(second).not.toBeNull();
    await mc.ps[0].kill();
    await mc.ps[1].kill();
    await Promise.all([a.nodes.refresh(), b.nodes.refresh()]);
    expect(b.nodes.isAvailable('n2')).toBe(false);
    // Relocated to n3 from that copy, with b's update (before, both copies were gone: no session).
    const s: any = await b.get(id);
    expect(s?.n).toBe(2);
    expect(((await a.get(id)) as any)?.n).toBe(2);
  });

  test('a session id that names a removed node still names it: served from its backup, not hashed to a random node', () => {
    const s = newStore({});
    s.setMemcachedNodes(spec(mc.ps, ['n2', 'n3']));
    const sid = s.idFormat.parse(`${'A'.repeat(32)}-n1`);
    expect(sid).toMatchObject({ nodeId: 'n1', random: 'A'.repeat(32) });
    expect(s.nodes.isAvailable('n1')).toBe(false);
  });
});
