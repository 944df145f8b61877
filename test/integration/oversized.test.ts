// A session bigger than memcached's item size (issue 8): a clear error naming the size, nothing half-written
// (no `bak:` without a primary, no validity record vouching for bytes that were not written), nodes stay up.
import request from 'supertest';
import express from 'express';
import session from 'express-session';
import { MemcachedStore } from '../../lib/express/store';
import { SessionTooLargeError } from '../../lib/core/errors';
import { RawClient } from '../helpers/raw-client';
import { MemcachedProcess, freePort, killAll, nodesString, startMemcacheds } from '../helpers/memcached';
import { SECRET } from '../helpers/app';

const PREFIX = 'big_';
const big = (bytes: number) => 'x'.repeat(bytes);
const cookie = (maxAge = 600_000) => ({ originalMaxAge: maxAge });

function allKeys(id: string, prefix = PREFIX): string[] {
  return [prefix + id, 'validity:' + prefix + id, 'bak:' + prefix + id, 'bak:' + prefix + 'validity:' + prefix + id];
}

async function snapshot(raws: RawClient[], id: string): Promise<Array<Record<string, string | null>>> {
  return Promise.all(
    raws.map(async (r) => {
      const out: Record<string, string | null> = {};
      for (const k of allKeys(id)) out[k] = (await r.get(k))?.toString('base64') ?? null;
      return out;
    }),
  );
}

describe('sessions above the default 1 MB item size (shared nodes)', () => {
  const ports = process.env.MSM_TEST_PORTS!.split(',').map(Number);
  const raws = ports.map((p) => new RawClient(p));
  let store: MemcachedStore;

  beforeAll(async () => {
    store = new MemcachedStore({
      memcachedNodes: ports.map((p, i) => `n${i + 1}:127.0.0.1:${p}`).join(','),
      storageKeyPrefix: 'static:big',
      sessionBackupAsync: false,
      sessionBackupTimeout: 2000,
    });
    await store.ready();
  });
  afterAll(async () => {
    await store.close();
    raws.forEach((r) => r.close());
  });

  test('a new oversized session: error names its size and the limit, nothing is written anywhere', async () => {
    const id = store.genid();
    const err: Error = await store.set(id, { cookie: cookie(), pad: big(1_100_000) } as any).then(
      () => null as any,
      (e) => e,
    );
    expect(err).toBeInstanceOf(Error);
    const m = /session is (\d+) bytes, above the (\d+)-byte limit/.exec(err.message);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(1_100_000);
    expect(Number(m![2])).toBe(store.maxSessionBytes);
    await store.backups.flush();
    for (const snap of await snapshot(raws, id)) expect(Object.values(snap).every((v) => v === null)).toBe(true);
    expect(Object.values(store.stats().nodes).every((n) => n.available)).toBe(true);
  });

  test('growing an existing session past the limit: the stored session, its validity and its backup stay exactly as they were', async () => {
    const id = store.genid();
    await store.set(id, { cookie: cookie(), n: 1 } as any);
    await store.backups.flush();
    const before = await snapshot(raws, id);
    const present = before.flatMap((s) => Object.values(s)).filter((v) => v !== null);
    expect(present).toHaveLength(4); // session + validity on the primary, bak + bak:validity on the next node

    const loaded: any = await store.get(id);
    loaded.pad = big(1_100_000);
    await expect(store.set(id, loaded)).rejects.toThrow(/session is \d+ bytes, above the \d+-byte limit/);
    await store.backups.flush();
    expect(await snapshot(raws, id)).toEqual(before);
    const again: any = await store.get(id);
    expect(again.n).toBe(1);
    expect(again.pad).toBeUndefined();
  });

  test('new MemcachedStore({ maxSessionBytes: 100 }): a larger session is refused before any write, a smaller one stored', async () => {
    const small = new MemcachedStore({
      memcachedNodes: ports.map((p, i) => `n${i + 1}:127.0.0.1:${p}`).join(','),
      storageKeyPrefix: 'static:big',
      sessionBackupAsync: false,
      sessionBackupTimeout: 2000,
      maxSessionBytes: 100,
    });
    try {
      expect(small.maxSessionBytes).toBe(100);
      const id = small.genid();
      const err = await small.set(id, { cookie: cookie(), pad: big(200) } as any).then(
        () => null,
        (e: SessionTooLargeError) => e,
      );
      expect(err).toBeInstanceOf(SessionTooLargeError);
      expect(err!.message).toMatch(/session is \d+ bytes, above the 100-byte limit/);
      expect(err!.bytes).toBeGreaterThan(200);
      await small.backups.flush();
      for (const snap of await snapshot(raws, id)) expect(Object.values(snap).every((v) => v === null)).toBe(true);
      // Under the limit it is stored and loads: the option set this limit, not a smaller one.
      const fits = small.genid();
      await small.set(fits, { cookie: cookie(), n: 1 } as any);
      expect(((await small.get(fits)) as any).n).toBe(1);
    } finally {
      await small.close();
    }
  });

  test('through express-session: the error reaches the app (explicit save) and express error handling', async () => {
    const errors: string[] = [];
    const app = express();
    app.use(
      session({
        store,
        genid: store.genid,
        secret: SECRET,
        resave: false,
        saveUninitialized: false,
        cookie: { maxAge: 600_000 },
      }),
    );
    app.get('/grow', (req, res) => {
      (req.session as any).pad = big(1_100_000);
      req.session.save((err) => (err ? res.status(500).json({ error: err.message }) : res.json({ ok: true })));
    });
    app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      errors.push(err.message);
      if (!res.headersSent) res.status(500).end();
    });
    const r = await request(app).get('/grow');
    expect(r.status).toBe(500);
    expect(r.body.error).toMatch(/session is \d+ bytes, above the \d+-byte limit/);
  });
});

describe('memcached with a smaller item size (-I 128k) than maxSessionBytes', () => {
  let ps: MemcachedProcess[];
  let raws: RawClient[];
  let store: MemcachedStore;

  beforeAll(async () => {
    ps = await startMemcacheds(2, ['-I', '128k', '-o', 'slab_chunk_max=65536']);
    raws = ps.map((p) => new RawClient(p.port));
    store = new MemcachedStore({
      memcachedNodes: nodesString(ps),
      storageKeyPrefix: 'static:big',
      sessionBackupAsync: false,
      sessionBackupTimeout: 2000,
    });
    await store.ready();
  });
  afterAll(async () => {
    await store?.close();
    raws?.forEach((r) => r.close());
    if (ps) await killAll(ps);
  });

  test('memcached refuses the item: clear error with the size, no half-written keys, nodes not marked down', async () => {
    const id = store.genid();
    const err: Error = await store.set(id, { cookie: cookie(), pad: big(200_000) } as any).then(
      () => null as any,
      (e) => e,
    );
    expect(err?.message).toMatch(/session is 2\d{5} bytes, larger than memcached node n\d accepts/);
    await store.backups.flush();
    for (const snap of await snapshot(raws, id))
      expect(snap).toEqual(Object.fromEntries(allKeys(id).map((k) => [k, null])));
    expect(Object.values(store.stats().nodes).map((n) => n.available)).toEqual([true, true]);
  });

  test('an existing session grown past the node limit keeps its old bytes and validity and still loads', async () => {
    const id = store.genid();
    await store.set(id, { cookie: cookie(), n: 1 } as any);
    await store.backups.flush();
    const before = await snapshot(raws, id);
    const loaded: any = await store.get(id);
    loaded.pad = big(200_000);
    await expect(store.set(id, loaded)).rejects.toThrow(/larger than memcached node/);
    await store.backups.flush();
    expect(await snapshot(raws, id)).toEqual(before);
    expect(((await store.get(id)) as any).n).toBe(1);
    expect(Object.values(store.stats().nodes).map((n) => n.available)).toEqual([true, true]);
  });

  test('a primary that accepts but a backup node that refuses: no bak:validity without bak', async () => {
    // Primary on a default (1 MB) node, backup on the -I 128k node.
    const wide = await new MemcachedProcess(await freePort()).start();
    const rawWide = new RawClient(wide.port);
    const s2 = new MemcachedStore({
      memcachedNodes: `n1:127.0.0.1:${wide.port},n2:127.0.0.1:${ps[0].port}`,
      storageKeyPrefix: 'static:big',
      sessionBackupAsync: false,
      sessionBackupTimeout: 2000,
    });
    try {
      await s2.ready();
      const id = s2.idFormat.create('n1', undefined);
      await s2.set(id, { cookie: cookie(), pad: big(200_000) } as any);
      await s2.backups.flush();
      expect(await rawWide.get(PREFIX + id)).not.toBeNull();
      expect(await raws[0].get('bak:' + PREFIX + id)).toBeNull();
      expect(await raws[0].get('bak:' + PREFIX + 'validity:' + PREFIX + id)).toBeNull();
      expect(Object.values(s2.stats().nodes).map((n) => n.available)).toEqual([true, true]);
    } finally {
      await s2.close();
      rawWide.close();
      await wide.kill();
    }
  });
});
