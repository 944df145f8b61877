// autoDiscovery (issue 12): a configuration endpoint of the test's own (test/helpers/config-endpoint.ts) in front of
// real memcached processes; nodes join and leave under load from two app instances; 0 sessions lost.
import request from 'supertest';
import type { MemcachedStore } from '../../lib';
import { discoveredNodeId } from '../../lib/memcached/discovery';
import { type MemcachedProcess, killAll, startMemcacheds } from '../helpers/memcached';
import { RawClient } from '../helpers/raw-client';
import { cookieFor, idFromSetCookie, makeApp } from '../helpers/app';
import { capturingLogger } from '../helpers/capturing-logger';
import { ConfigEndpoint } from '../helpers/config-endpoint';
import { SessionLoad } from '../helpers/session-load';
import { sleep, waitFor } from '../helpers/wait';
import { testStores } from '../helpers/store';

const idOf = (p: MemcachedProcess) => discoveredNodeId(`node${p.port}.cluster.test`, p.port);
const nodeOf = (sessionId: string) => /-(\w+)(?:\.\w+)?$/.exec(sessionId)?.[1];

describe('autoDiscovery', () => {
  let ps: MemcachedProcess[];
  let raw: RawClient[];
  let endpoint: ConfigEndpoint;
  const { newStore, closeStores } = testStores(() => ({
    autoDiscovery: { endpoint: endpoint.address, intervalMs: 100 },
    sessionBackupAsync: false,
    sessionBackupTimeout: 1000,
    storageKeyPrefix: 'static:ad',
  }));
  const knows = (s: MemcachedStore, nodes: MemcachedProcess[]) =>
    JSON.stringify(s.nodes.ids) === JSON.stringify(nodes.map(idOf).sort());

  beforeEach(async () => {
    ps = await startMemcacheds(4);
    raw = ps.map((p) => new RawClient(p.port));
    endpoint = await ConfigEndpoint.start();
    endpoint.setNodes(ps.slice(0, 3).map((p) => p.port));
  });
  afterEach(async () => {
    await closeStores();
    raw.forEach((r) => r.close());
    await endpoint.close();
    await killAll(ps);
  });

  test('two instances under load: a node joins, a node leaves, the endpoint stops answering; 0 sessions and 0 updates lost', async () => {
    const a = newStore();
    const b = newStore();
    await Promise.all([a.ready(), b.ready()]);
    expect(a.nodes.ids).toEqual(ps.slice(0, 3).map(idOf).sort());
    const apps = [makeApp(a), makeApp(b)];
    const sessions = await SessionLoad.create(apps, 24);
    const leaving = ps[0];
    const onLeaving = sessions.filter((s) => nodeOf(s.id) === idOf(leaving)).map((s) => s.id);
    expect(onLeaving.length).toBeGreaterThan(0);

    const load = new SessionLoad(apps, sessions);
    await load.progress('load before the changes');
    endpoint.setNodes(ps.map((p) => p.port));
    await waitFor(() => knows(a, ps) && knows(b, ps), {
      timeout: 10_000,
      what: 'both instances to discover the 4th node',
    });
    await load.progress('load after the join');
    endpoint.setNodes(ps.slice(1).map((p) => p.port));
    await waitFor(() => knows(a, ps.slice(1)) && knows(b, ps.slice(1)), {
      timeout: 10_000,
      what: 'both instances to drop the first node',
    });
    await load.progress('load after the leave');
    // The endpoint hangs, then refuses: the last list stays.
    endpoint.silent = true;
    await load.progress('load while the endpoint hangs');
    await endpoint.close();
    await load.progress('load while the endpoint refuses');
    expect(knows(a, ps.slice(1)) && knows(b, ps.slice(1))).toBe(true);
    await load.stop();

    expect(load.failures).toEqual([]);
    expect(await load.verify(apps[1])).toEqual([]);
    for (const s of sessions) expect(nodeOf(s.id)).not.toBe(idOf(leaving));
    for (const id of onLeaving) expect(sessions.some((s) => s.id.startsWith(id.slice(0, 32)))).toBe(true);
    // The joined node takes new sessions.
    const created = new Set<string | undefined>();
    for (let i = 0; i < 40; i++)
      created.add(nodeOf(idFromSetCookie((await request(apps[0]).get('/inc').expect(200)).headers)!));
    expect(created.has(idOf(ps[3]))).toBe(true);
    expect(created.has(idOf(leaving))).toBe(false);
  }, 120_000);

  test('sticky: ids name discovered nodes and the route; a node leaves, the session moves with its next request', async () => {
    const a = newStore({ sticky: true, route: 'a' });
    const b = newStore({ sticky: true, route: 'b' });
    await Promise.all([a.ready(), b.ready()]);
    const appA = makeApp(a);
    let id = '';
    for (let i = 0; i < 60 && nodeOf(id) !== idOf(ps[0]); i++)
      id = idFromSetCookie((await request(appA).get('/inc').expect(200)).headers)!;
    expect(id).toMatch(new RegExp(`^[0-9A-F]{32}-${idOf(ps[0])}\\.a$`));
    endpoint.setNodes(ps.slice(1, 3).map((p) => p.port));
    await waitFor(() => knows(a, ps.slice(1, 3)) && knows(b, ps.slice(1, 3)), {
      timeout: 10_000,
      what: 'both instances to drop the first node',
    });
    const r = await request(appA).get('/inc').set('Cookie', cookieFor(id)).expect(200);
    expect(r.body.n).toBe(2);
    const moved = idFromSetCookie(r.headers)!;
    expect([idOf(ps[1]), idOf(ps[2])]).toContain(nodeOf(moved));
    await a.backups.flush();
    // Instance a is gone: b takes the session over from its new memcached copy.
    expect((await request(makeApp(b)).get('/inc').set('Cookie', cookieFor(moved)).expect(200)).body.n).toBe(3);
  });

  test('the endpoint reorders its list: same ids, same order, nothing changes', async () => {
    const log = capturingLogger();
    const a = newStore({ logger: log });
    await a.ready();
    const before = [...a.nodes.ids];
    const changes = () => log.lines.filter((l) => l.includes('memcached nodes changed')).length;
    expect(changes()).toBe(1); // the first list
    endpoint.entries.reverse();
    endpoint.version++;
    const seen = endpoint.requests;
    await waitFor(() => endpoint.requests >= seen + 3, { timeout: 5000, what: 'polls' });
    expect(a.nodes.ids).toEqual(before);
    expect(changes()).toBe(1);
  });

  test('a session on a node this instance has not discovered yet: it polls at once and finds the session', async () => {
    const a = newStore();
    const b = newStore({ autoDiscovery: { endpoint: endpoint.address, intervalMs: 600_000 } });
    await Promise.all([a.ready(), b.ready()]);
    endpoint.setNodes(ps.map((p) => p.port));
    await waitFor(() => knows(a, ps), { timeout: 10_000, what: 'a to discover the 4th node' });
    expect(knows(b, ps)).toBe(false);
    let id = '';
    for (let i = 0; i < 80 && nodeOf(id) !== idOf(ps[3]); i++)
      id = idFromSetCookie((await request(makeApp(a)).get('/inc').expect(200)).headers)!;
    expect(nodeOf(id)).toBe(idOf(ps[3]));
    const r = await request(makeApp(b)).get('/inc').set('Cookie', cookieFor(id)).expect(200);
    expect(r.body).toEqual({ id, n: 2 });
    expect(knows(b, ps)).toBe(true);
  });

  test('an endpoint that has never answered: ready() and requests fail naming it; they work once it answers', async () => {
    await endpoint.close();
    const s = newStore({ operationTimeout: 300 });
    await expect(s.ready()).rejects.toThrow(
      new RegExp(`autoDiscovery endpoint ${endpoint.address.replace(/\./g, '\\.')} has not answered`),
    );
    const r = await request(makeApp(s)).get('/get').set('Cookie', cookieFor(s.genid()));
    expect(r.status).toBe(503);
    expect(r.text).toMatch(/has not answered/);
    const cookie = { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000), httpOnly: true, path: '/' };
    await expect(s.set(s.genid(), { cookie } as never)).rejects.toThrow(/no memcached nodes: autoDiscovery endpoint/);
    await endpoint.listen();
    await s.ready();
    const agent = request.agent(makeApp(s));
    await agent.get('/inc').expect(200);
    expect((await agent.get('/inc').expect(200)).body.n).toBe(2);
  });

  test('a malformed reply keeps the last list and is logged; setMemcachedNodes is refused', async () => {
    const log = capturingLogger();
    const s = newStore({ logger: log });
    await s.ready();
    const before = [...s.nodes.ids];
    endpoint.garbage = `7\nnode1|127.0.0.1|${ps[3].port} evil;host|127.0.0.1|1\n`;
    await waitFor(() => log.lines.some((l) => l.includes('keeping the last known node list')), {
      timeout: 5000,
      what: 'the warning',
    });
    await sleep(300);
    expect(s.nodes.ids).toEqual(before);
    expect(() => s.setMemcachedNodes(`n1:127.0.0.1:${ps[0].port}`)).toThrow(/autoDiscovery/);
  });
});
