// Issue 11, item 9: new sessions avoid a node that just died. msm's availability cache probes a stale entry before
// answering; express-session's genid is synchronous, so the store keeps the entries fresh in the background (a probe
// when a node's connection closes, and as each entry turns stale). Here a node is killed (or hung), the test waits,
// with no traffic, until the store's cache has it unavailable, then creates sessions over HTTP and with store.genid
// and reads where they landed.
import request from 'supertest';
import type { MemcachedStore } from '../../lib';
import { type MemcachedProcess, killAll, nodesString, startMemcacheds } from '../helpers/memcached';
import { RawClient } from '../helpers/raw-client';
import { idFromSetCookie, makeApp } from '../helpers/app';
import { waitFor } from '../helpers/wait';
import { testStores } from '../helpers/store';

/** The node id an id names: `<random>-<nodeId>[.<route>]`. */
function nodeOf(id: string): string {
  const m = /^[0-9A-F]{32}-(n\d)(?:\.\w+)?$/.exec(id);
  if (!m) throw new Error(`not an msm id: ${id}`);
  return m[1];
}

describe('new sessions avoid a node that just died', () => {
  let ps: MemcachedProcess[];
  /** Every process started, also those a test leaves out of ps. */
  let started: MemcachedProcess[];
  let raw: Map<string, RawClient>;
  const { newStore, closeStores } = testStores(() => ({ memcachedNodes: nodesString(ps), sessionBackupAsync: false }));

  beforeEach(async () => {
    started = ps = await startMemcacheds(3);
    raw = new Map(ps.map((p, i) => [`n${i + 1}`, new RawClient(p.port)]));
  });
  afterEach(async () => {
    await closeStores();
    raw.forEach((r) => r.close());
    started.forEach((p) => p.cont());
    await killAll(started);
  });

  /** Until the store's availability cache has `node` down; stats() reads the cache without probing (no traffic). */
  const noticed = (store: MemcachedStore, node: string, timeout = 10_000) =>
    waitFor(() => store.stats().nodes[node].available === false, { timeout, what: `${node} marked unavailable` });

  /**
   * After the wait: 20 ids from store.genid in one go (no probe can answer between them), 5 of them stored, then 5
   * sessions over HTTP (express-session with store.genid). Returns the nodes the ids name; every stored session is
   * read back from the node its id names (both modes keep it under the id itself there).
   */
  async function createSessions(store: MemcachedStore): Promise<Set<string>> {
    const ids = Array.from({ length: 20 }, () => store.genid());
    const named = new Set(ids.map(nodeOf));
    for (const id of ids.slice(0, 5)) {
      await store.set(id, { cookie: { originalMaxAge: 60_000 }, n: 1 } as any);
      expect(await raw.get(nodeOf(id))!.get(id)).not.toBeNull();
    }
    const app = makeApp(store);
    for (let i = 0; i < 5; i++) {
      const r = await request(app).get('/inc').expect(200);
      const id = idFromSetCookie(r.headers)!;
      named.add(nodeOf(id));
      expect(await raw.get(nodeOf(id))!.get(id)).not.toBeNull();
    }
    return named;
  }

  it("failoverNodes: 'n1', n2 killed: once noticed (no traffic since), new sessions go to n1", async () => {
    ps = ps.slice(0, 2);
    const store = newStore({ failoverNodes: 'n1' });
    await store.ready();
    // Before the kill every new session goes to n2, the only primary.
    expect(nodeOf(store.genid())).toBe('n2');
    await ps[1].kill();
    await noticed(store, 'n2');
    expect([...(await createSessions(store))]).toEqual(['n1']);
  });

  it('non-sticky, 3 nodes, no failoverNodes, n2 killed: new ids name live nodes only', async () => {
    const store = newStore();
    await store.ready();
    await ps[1].kill();
    await noticed(store, 'n2');
    const named = await createSessions(store);
    // 25 ids picked at random between the two live primaries: both appear (all on one would be a 2^-24 chance).
    expect([...named].sort()).toEqual(['n1', 'n3']);
  });

  it('sticky, 3 nodes, n2 killed: new ids name live nodes only', async () => {
    const store = newStore({ sticky: true, route: 'r1' });
    await store.ready();
    await ps[1].kill();
    await noticed(store, 'n2');
    const named = await createSessions(store);
    expect(named.has('n2')).toBe(false);
  });

  it('with a long cache TTL, the closed connection alone tells: n2 is avoided right away', async () => {
    ps = ps.slice(0, 2);
    // No background probe for a minute: only the connection's close can report the kill.
    const store = newStore({ failoverNodes: 'n1', nodeAvailabilityCacheTTL: 60_000 });
    await store.ready();
    await ps[1].kill();
    // Well within the TTL: no probe has run, only the connection's close can have told.
    await noticed(store, 'n2', 5000);
    expect([...(await createSessions(store))]).toEqual(['n1']);
  });

  it('a hung node (SIGSTOP, its connection stays open) is noticed by the background probe, without traffic', async () => {
    ps = ps.slice(0, 2);
    const store = newStore({ failoverNodes: 'n1', operationTimeout: 300 });
    await store.ready();
    await ps[1].stop();
    // The entry turns stale within nodeAvailabilityCacheTTL (1 s), its probe then times out (300 ms). Nothing here
    // calls the store meanwhile: stats() reads the cache without probing.
    await noticed(store, 'n2');
    expect(new Set(Array.from({ length: 20 }, () => nodeOf(store.genid())))).toEqual(new Set(['n1']));
  });

  it("background probes never keep the process alive: their timer is unref'd", async () => {
    const store = newStore();
    const timer = (store.nodes as any).refreshTimer as NodeJS.Timeout;
    expect(timer.hasRef()).toBe(false);
  });
});
