// Issue 11 item 6: frameworks that cannot change the session cookie (a plain node http server with express-session,
// Fastify 5 with @fastify/session). After a relocation (non-sticky, the node in the id is killed) or a route
// takeover (sticky, the cookie of instance a sent to b), the browser keeps the OLD cookie for good. Two instances
// over three real memcached nodes serve it alternately; every increment must be seen, across instances, past the
// 5 s an in-process memory would last, after the dead node returns, without relocating again.
import type { MemcachedStoreOptions } from '../../lib';
import { JsonTranscoder } from '../../lib/transcoders/json';
import { movedTo } from '../../lib/transcoders/transcoder';
import { nodesString } from '../helpers/memcached';
import { useMemcacheds } from '../helpers/use-memcacheds';
import { type Framework, type FrameworkServer, get, startServer } from '../helpers/frameworks';
import { sleep, waitFor } from '../helpers/wait';

// Each scenario is ~50 sequential requests, 300 ms apart, plus two app processes starting and a memcached restart.
jest.setTimeout(120_000);

const json = new JsonTranscoder();
/**
 * Relocations counted by both instances. The old behaviour relocated on every request; here one is expected, and a
 * second is tolerated: on a loaded machine a live node can miss a deadline, and is then (rightly) left once more.
 */
const FEW_RELOCATIONS = 2;
const nodeIndex = (id: string) => Number(/-n(\d)(?:\.|$)/.exec(id)![1]) - 1;
async function counter(servers: FrameworkServer[], name: string): Promise<number> {
  let n = 0;
  for (const s of servers) n += (await s.stats())[name] as number;
  return n;
}

describe.each<Framework>(['plain', 'fastify'])('old cookie kept by the framework (%s)', (kind) => {
  const servers: FrameworkServer[] = [];
  const mc = useMemcacheds(3, servers);

  async function instances(o: Partial<MemcachedStoreOptions>[], maxAge?: number): Promise<void> {
    servers.push(
      ...(await Promise.all(
        o.map((extra) =>
          startServer(kind, { memcachedNodes: nodesString(mc.ps), operationTimeout: 1500, ...extra }, maxAge),
        ),
      )),
    );
  }

  /** `count` requests with `cookie`, alternating instances from `first`; each increments and must see n + 1. */
  async function alternate(
    cookie: string,
    id: string,
    from: number,
    count: number,
    first = 0,
    gapMs = 0,
  ): Promise<number> {
    let n = from;
    for (let i = 0; i < count; i++) {
      if (gapMs) await sleep(gapMs);
      const r = await get(servers[(first + i) % 2].port, '/inc', cookie);
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ id, n: ++n });
    }
    return n;
  }

  // Sessions of 4 s, requests 300 ms apart: the runs outlast the 5 s an in-process memory would, and the markers'
  // own TTLs (validity 4 s non-sticky, 4 + 4 s sticky), so the markers must be kept alive by use.
  it('non-sticky relocation: the old id keeps working at both instances, past 5 s, after the node returned empty', async () => {
    await instances([{}, {}], 4000);
    const created = await get(servers[0].port, '/inc');
    const cookie = created.setCookie!;
    const id: string = created.body.id;
    expect(cookie).toBeDefined();
    let n = await alternate(cookie, id, 1, 3, 1);
    const p = nodeIndex(id);
    const target = (p + 1) % 3;
    const moved = `${id.slice(0, 32)}-n${target + 1}`;
    await mc.ps[p].kill();

    n = await alternate(cookie, id, n, 10);
    // One relocation for both instances; the old id is a marker at its backup place, the session lives under `moved`.
    expect(await counter(servers, 'sessionsRelocated')).toBe(1);
    expect(movedTo((await mc.raw[target].get(`bak:${id}`))!)).toBe(moved);
    expect(json.decode((await mc.raw[target].get(moved))!)).toMatchObject({ n });

    // The node returns empty: the old id must not start over there.
    await mc.ps[p].start();
    for (const s of servers)
      await waitFor(
        async () => {
          await s.ready();
          return (await s.stats()).nodes[`n${p + 1}`].available;
        },
        { timeout: 5000, what: 'node back' },
      );
    n = await alternate(cookie, id, n, 30, 0, 300);
    expect(n).toBe(44);
    expect(await counter(servers, 'sessionsRelocated')).toBeLessThanOrEqual(FEW_RELOCATIONS);
    expect(json.decode((await mc.raw[target].get(moved))!)).toMatchObject({ n });
  });

  it('non-sticky relocation: both instances serving the old id at once do not fork the session', async () => {
    await instances([{}, {}]);
    const created = await get(servers[0].port, '/inc');
    const cookie = created.setCookie!;
    const id: string = created.body.id;
    await mc.ps[nodeIndex(id)].kill();
    // Concurrent requests (no locking): increments may overwrite each other, but there must stay one session,
    // relocated once, which both instances then read and write.
    const rs = await Promise.all([0, 1, 0, 1, 0, 1].map((i) => get(servers[i].port, '/inc', cookie)));
    for (const r of rs) expect(r.status).toBe(200);
    const after = (await get(servers[0].port, '/get', cookie)).body.n;
    expect(after).toBeGreaterThanOrEqual(2);
    await alternate(cookie, id, after, 8, 1);
    expect(await counter(servers, 'sessionsRelocated')).toBeLessThanOrEqual(FEW_RELOCATIONS);

    // Destroyed through the old id: the session it forwards to goes too, for both instances.
    const moved = `${id.slice(0, 32)}-n${((nodeIndex(id) + 1) % 3) + 1}`;
    expect(json.decode((await mc.raw[nodeIndex(moved)].get(moved))!)).toMatchObject({ n: after + 8 }); // what destroy must remove
    expect((await get(servers[0].port, '/destroy', cookie)).body).toEqual({ destroyed: true });
    expect((await get(servers[1].port, '/get', cookie)).body.n).toBeNull();
    expect(await mc.raw[nodeIndex(moved)].get(moved)).toBeNull();
  });

  it('sticky takeover: the old cookie of a keeps working at a and b, past 5 s', async () => {
    await instances(
      [
        { sticky: true, route: 'a' },
        { sticky: true, route: 'b' },
      ],
      4000,
    );
    const created = await get(servers[0].port, '/inc');
    const cookie = created.setCookie!;
    const id: string = created.body.id;
    expect(id).toMatch(/\.a$/);
    let n = await alternate(cookie, id, 1, 2); // both at a
    n = await alternate(cookie, id, n, 1, 1); // at b: takeover
    n = await alternate(cookie, id, n, 40, 0, 300);
    expect(n).toBe(44);
    expect(await counter(servers, 'requestsWithTomcatFailover')).toBe(1);
    expect(movedTo((await mc.raw[nodeIndex(id)].get(id))!)).toBe(id.replace(/\.a$/, '.b'));
  });
});
