// Zones and backupCount against real memcached: 6 nodes in 3 zones of 2, listed zone by zone (n1 n2: a, n3 n4: b,
// n5 n6: c), two app instances, lockingMode all, synchronous backups, busy sessions (updated all along, counting the
// increments acknowledged) and idle ones. Whole zones are killed, restarted and stopped; no session and no
// acknowledged update may be lost.
import type express from 'express';
import { nodesString } from '../helpers/memcached';
import { type Served, cookieFor, request, serve, sessionOptions } from '../helpers/session-http';
import { useMemcacheds } from '../helpers/use-memcacheds';
import { waitFor } from '../helpers/wait';
import { capturingLogger } from '../helpers/capturing-logger';

jest.setTimeout(120_000);

const ZONES = { n1: 'a', n2: 'a', n3: 'b', n4: 'b', n5: 'c', n6: 'c' };
const ZONE_NODES = { a: [0, 1], b: [2, 3], c: [4, 5] } as const;
type Zone = keyof typeof ZONE_NODES;

const servers: Served[] = [];
/** Each app's log lines (by port): re-replications are awaited by their end lines. */
const logs = new Map<number, string[]>();
beforeEach(() => logs.clear());
const m = useMemcacheds(6, servers);

function routes(app: express.Express): void {
  app.post('/inc', (req, res, next) => {
    const s = req.session as any;
    s.n = (s.n ?? 0) + 1;
    // Acknowledged only once the store has the session (and, synchronous, its backups).
    req.session.save((err) => (err ? next(err) : res.json({ id: req.sessionID, n: s.n })));
  });
  app.get('/get', (req, res) => res.json({ id: req.sessionID, n: (req.session as any).n ?? null }));
  // A change saved by memcachedSession() before the response (one save, as most applications do).
  app.post('/bump', (req, res) => {
    const s = req.session as any;
    s.n = (s.n ?? 0) + 1;
    res.json({ id: req.sessionID, n: s.n });
  });
}

async function cluster(options: {
  backupCount: number;
  zones?: typeof ZONES;
  lockingMode?: 'none' | 'all';
  operationTimeout?: number;
}): Promise<Served[]> {
  const opts = sessionOptions({
    memcachedNodes: nodesString(m.ps),
    lockingMode: 'all',
    sessionBackupAsync: false,
    // A synchronous backup is awaited this long: long enough that an acknowledged update has every copy.
    sessionBackupTimeout: 3000,
    operationTimeout: 300,
    nodeAvailabilityCacheTTL: 200,
    ...options,
  });
  for (let i = 0; i < 2; i++) {
    const logger = capturingLogger();
    const served = await serve({ ...opts, logger }, routes);
    logs.set(served.port, logger.lines);
    servers.push(served);
  }
  return servers.slice(-2);
}

interface Tracked {
  id: string;
  acked: number;
  failed: number;
}

/** `idle` sessions created and left alone, `busy` ones updated by one driver each until stop() is called. */
async function workload(apps: Served[], idle: number, busy: number) {
  const inc = async (s: Tracked | undefined, app: Served): Promise<Tracked> => {
    const t = s ?? { id: '', acked: 0, failed: 0 };
    try {
      const r = await request(app.port, '/inc', { method: 'POST', cookie: t.id ? cookieFor(t.id) : undefined });
      if (r.status === 200) {
        t.acked++;
        t.id = r.json().id;
      } else t.failed++;
    } catch {
      t.failed++;
    }
    return t;
  };
  const idleSessions: Tracked[] = [];
  for (let i = 0; i < idle; i++) idleSessions.push(await inc(undefined, apps[i % 2]));
  const busySessions: Tracked[] = [];
  for (let i = 0; i < busy; i++) busySessions.push(await inc(undefined, apps[i % 2]));
  let stopped = false;
  const drivers = busySessions.map(async (s, i) => {
    for (let k = i; !stopped; k++) await inc(s, apps[k % 2]);
  });
  return {
    all: () => [...idleSessions, ...busySessions],
    busy: busySessions,
    stop: async () => {
      stopped = true;
      await Promise.all(drivers);
    },
  };
}

/**
 * Every store has seen `down` down (or `up` up), and what that started is done: the re-replication of each node
 * `down` (by one of the stores, after its grace), the repairs.
 */
async function settled(apps: Served[], nodes: { down?: number[]; up?: number[] }): Promise<void> {
  const lines = () => apps.flatMap((a) => logs.get(a.port) ?? []);
  const ended = (i: number) => lines().filter((l) => l.includes(`re-replication of n${i + 1} (down)`)).length;
  const before = new Map((nodes.down ?? []).map((i) => [i, ended(i)]));
  await waitFor(
    () =>
      apps.every(
        (a) =>
          (nodes.down ?? []).every((i) => !a.mw.store.nodes.isAvailable(`n${i + 1}`))
          && (nodes.up ?? []).every((i) => a.mw.store.nodes.isAvailable(`n${i + 1}`)),
      ),
    { timeout: 15_000, what: `nodes ${JSON.stringify(nodes)} seen by every store` },
  );
  await waitFor(() => [...before].every(([i, n]) => ended(i) > n), {
    timeout: 20_000,
    what: `re-replication of ${nodes.down}`,
  });
  // ready(): a fresh probe of every node, then idle: repairs (and re-replications) running done.
  await Promise.all(apps.map((a) => a.mw.store.ready()));
}

/** Where copies land on a healthy cluster: no operation may time out on a busy machine and move a copy. */
const HEALTHY = { operationTimeout: 5000 };

const kill = (zone: Zone) => Promise.all(ZONE_NODES[zone].map((i) => m.ps[i].kill()));
const start = (zone: Zone) => Promise.all(ZONE_NODES[zone].map((i) => m.ps[i].start()));
const stop = (zone: Zone) => Promise.all(ZONE_NODES[zone].map((i) => m.ps[i].stop()));
const counter = (apps: Served[], name: string) =>
  apps.reduce((sum, a) => sum + (a.mw.store.stats()[name] as number), 0);

/** Every session read back through the apps: none gone, none missing an acknowledged increment. */
async function expectNothingLost(apps: Served[], sessions: Tracked[]): Promise<void> {
  const lost: string[] = [];
  for (const [i, s] of sessions.entries()) {
    const r = await request(apps[i % 2].port, '/get', { cookie: cookieFor(s.id) });
    const n = r.status === 200 ? r.json().n : undefined;
    // A request that failed may still have been applied (its answer lost): at most acked + failed.
    if (typeof n !== 'number' || n < s.acked || n > s.acked + s.failed)
      lost.push(`${s.id}: ${r.status} n=${n}, ${s.acked} acknowledged, ${s.failed} failed`);
  }
  expect(lost).toEqual([]);
}

describe('zones: copies in other zones survive whole zones', () => {
  it('backupCount 1: zone a killed, re-replicated, restarted; zone b stopped; zone c killed: nothing lost', async () => {
    const apps = await cluster({ backupCount: 1, zones: ZONES });
    const w = await workload(apps, 40, 8);
    await kill('a');
    await settled(apps, { down: [0, 1] });
    expect(counter(apps, 'nodeReReplications')).toBeGreaterThanOrEqual(2);
    expect(counter(apps, 'sessionsReReplicated')).toBeGreaterThan(0);
    await start('a');
    await settled(apps, { up: [0, 1] });
    await stop('b');
    await settled(apps, { down: [2, 3] });
    await kill('c');
    await settled(apps, { down: [4, 5] });
    await w.stop();
    expect(w.busy.reduce((n, s) => n + s.acked, 0)).toBeGreaterThan(w.busy.length * 3);
    await expectNothingLost(apps, w.all());
  });

  it('backupCount 2: zones a and b killed at once, restarted; then b and c killed: nothing lost', async () => {
    const apps = await cluster({ backupCount: 2, zones: ZONES });
    const w = await workload(apps, 40, 8);
    await Promise.all([kill('a'), kill('b')]);
    await settled(apps, { down: [0, 1, 2, 3] });
    await Promise.all([start('a'), start('b')]);
    await settled(apps, { up: [0, 1, 2, 3] });
    await Promise.all([kill('b'), kill('c')]);
    await settled(apps, { down: [2, 3, 4, 5] });
    await w.stop();
    expect(w.busy.reduce((n, s) => n + s.acked, 0)).toBeGreaterThan(w.busy.length * 3);
    await expectNothingLost(apps, w.all());
  });

  it('each copy lands on its zone: primary on the node in the id, backups on the next nodes of other zones', async () => {
    const apps = await cluster({ backupCount: 2, zones: ZONES, ...HEALTHY });
    const w = await workload(apps, 24, 0);
    // placement for a primary on each node: the next two nodes in list order whose zones hold no copy yet
    const expected: Record<string, string[]> = {
      n1: ['n3', 'n5'],
      n2: ['n3', 'n5'],
      n3: ['n5', 'n1'],
      n4: ['n5', 'n1'],
      n5: ['n1', 'n3'],
      n6: ['n1', 'n3'],
    };
    const seen = new Set<string>();
    for (const s of w.all()) {
      const node = s.id.slice(s.id.lastIndexOf('-') + 1);
      seen.add(node);
      for (const [i, raw] of m.raw.entries()) {
        const id = `n${i + 1}`;
        expect([id, 'primary', (await raw.get(s.id)) !== null]).toEqual([id, 'primary', id === node]);
        expect([id, 'backup', (await raw.get(`bak:${s.id}`)) !== null]).toEqual([
          id,
          'backup',
          expected[node].includes(id),
        ]);
        expect((await raw.get(`bak:validity:${s.id}`)) !== null).toBe(expected[node].includes(id));
      }
    }
    // new sessions go to every node
    expect(seen.size).toBeGreaterThanOrEqual(4);
  });

  it('without zones and with backupCount 1, the backup is on the next node, as msm puts it', async () => {
    const apps = await cluster({ backupCount: 1, ...HEALTHY });
    const w = await workload(apps, 12, 0);
    for (const s of w.all()) {
      const node = Number(s.id.slice(s.id.lastIndexOf('-') + 2));
      const holders: number[] = [];
      for (const [i, raw] of m.raw.entries()) if (await raw.get(`bak:${s.id}`)) holders.push(i + 1);
      expect(holders).toEqual([(node % 6) + 1]);
    }
  });

  it('backupCount 0: no backup anywhere', async () => {
    const apps = await cluster({ backupCount: 0, zones: ZONES, ...HEALTHY });
    const w = await workload(apps, 6, 0);
    for (const s of w.all()) for (const raw of m.raw) expect(await raw.get(`bak:${s.id}`)).toBeNull();
  });
});

describe('memcached operations per request, by backupCount', () => {
  /** Operations of every node of both stores, by kind. */
  const ops = (apps: Served[]) => {
    const sum: Record<string, number> = {};
    for (const a of apps)
      for (const n of Object.values(a.mw.store.stats().nodes))
        for (const k of ['get', 'set', 'add', 'delete', 'touch'] as const) sum[k] = (sum[k] ?? 0) + n.ops[k];
    return sum;
  };
  const per = (after: Record<string, number>, before: Record<string, number>, requests: number) => {
    const out: Record<string, number> = {};
    for (const k of Object.keys(after)) out[k] = (after[k] - before[k]) / requests;
    out.total = Object.values(out).reduce((a, b) => a + b, 0);
    return out;
  };

  // Without locking (its add and delete are the same for every backupCount). Per backup: a read gets its validity
  // record and refreshes it; a write gets its validity record and sets its copy and validity record.
  it('a read costs a get and a set more per backup, a write a get and two sets', async () => {
    const measured: Record<number, { read: Record<string, number>; write: Record<string, number> }> = {};
    for (const backupCount of [0, 1, 2]) {
      // No node may be taken for down on a busy machine: the counts are of the healthy path.
      const apps = await cluster({ backupCount, zones: ZONES, lockingMode: 'none', ...HEALTHY });
      const w = await workload(apps, 30, 0);
      const sessions = w.all();
      // both reads and writes after a first read of each session, as in a running application
      for (const [i, s] of sessions.entries()) await request(apps[i % 2].port, '/get', { cookie: cookieFor(s.id) });
      let before = ops(apps);
      for (const [i, s] of sessions.entries()) await request(apps[i % 2].port, '/get', { cookie: cookieFor(s.id) });
      const read = per(ops(apps), before, sessions.length);
      before = ops(apps);
      for (const [i, s] of sessions.entries())
        await request(apps[i % 2].port, '/bump', { method: 'POST', cookie: cookieFor(s.id) });
      const write = per(ops(apps), before, sessions.length);
      measured[backupCount] = { read, write };
      await Promise.all(servers.splice(0).map((s) => s.close()));
    }
    if (process.env.ZONES_OPS) console.log(JSON.stringify(measured));
    expect(logs.size && [...logs.values()].flat().filter((l) => /unavailable|failed/.test(l))).toEqual([]);
    // gets and sets: a repair's lock, released with a delete, may run in the background meanwhile
    for (const k of [0, 1, 2]) {
      expect(measured[k].read).toMatchObject({ get: 2 + k, set: 1 + k, touch: 0 });
      expect(measured[k].write).toMatchObject({ get: 2 + k, set: 2 + 2 * k, touch: 0 });
    }
  });
});
