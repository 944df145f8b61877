// Issue 11 (drop-in for express-session): exact cookie expiry, any id express-session accepts, every cookie shape
// set() can be handed. Real memcached, keys and bytes read back with an independent client.
import { createHash } from 'crypto';
import request from 'supertest';
import type { MemcachedStore, MemcachedStoreOptions } from '../../lib';
import { idInItem } from '../../lib/transcoders/transcoder';
import { type MemcachedProcess, killAll, nodesString, startMemcacheds } from '../helpers/memcached';
import { RawClient } from '../helpers/raw-client';
import { cookieFor, idFromSetCookie, makeApp } from '../helpers/app';
import { sleep, waitFor } from '../helpers/wait';
import { testStores } from '../helpers/store';

const PREFIX = 'di_';

describe('drop-in semantics on three nodes', () => {
  let ps: MemcachedProcess[];
  let raw: RawClient[];
  const { newStore, closeStores } = testStores(() => ({
    memcachedNodes: nodesString(ps),
    storageKeyPrefix: 'static:di',
    sessionBackupAsync: false,
    sessionBackupTimeout: 1000,
  }));
  const modes: Array<[string, Partial<MemcachedStoreOptions>]> = [
    ['non-sticky', {}],
    ['sticky', { sticky: true, route: 'a' }],
  ];

  /** The nodes holding `key`, read with the raw client. */
  const holders = async (key: string) =>
    (await Promise.all(raw.map((r) => r.get(key)))).flatMap((v, i) => (v ? [i] : []));
  /** The one node holding `key` (fails if none or several: toEqual([x]) would accept [] when x is undefined). */
  const holder = async (key: string) => {
    const h = await holders(key);
    expect(h).toHaveLength(1);
    return h[0];
  };

  beforeAll(async () => {
    ps = await startMemcacheds(3);
    raw = ps.map((p) => new RawClient(p.port));
  });
  afterAll(async () => {
    await closeStores();
    raw.forEach((r) => r.close());
    await killAll(ps);
  });

  describe.each(modes)('exact expiry (%s)', (_mode, opts) => {
    it('a cookie with maxAge 5 ms is not returned by get once 5 ms have passed, though memcached keeps it for a second', async () => {
      const store = newStore(opts);
      const id = store.genid();
      await store.set(id, { cookie: { originalMaxAge: 5, httpOnly: true, path: '/' }, n: 1 } as any);
      expect((await holders(PREFIX + id)).length).toBe(1);
      await sleep(20);
      expect(await store.get(id)).toBeNull();
      // Still in memcached (whole-second TTL): the cookie decided.
      expect((await holders(PREFIX + id)).length).toBe(1);
      expect(store.stats().sessionsExpired).toBeGreaterThanOrEqual(1);
    });

    it('over HTTP: a maxAge 5 ms session comes back within its 5 ms budget only as a new session', async () => {
      const store = newStore(opts);
      const app = makeApp(store, { cookie: { maxAge: 5 } });
      const r1 = await request(app).get('/inc').expect(200);
      const id = idFromSetCookie(r1.headers)!;
      expect(r1.body).toEqual({ id, n: 1 });
      await sleep(20);
      const r2 = await request(app).get('/inc').set('Cookie', cookieFor(id)).expect(200);
      expect(r2.body.n).toBe(1);
      expect(r2.body.id).not.toBe(id);
    });

    it('a session whose maxAge has not run out is returned, with expires counted from its last save', async () => {
      const store = newStore(opts);
      const id = store.genid();
      const before = Date.now();
      await store.set(id, { cookie: { originalMaxAge: 60_000, path: '/' }, n: 1 } as any);
      const s = (await store.get(id)) as any;
      expect(s.n).toBe(1);
      // A Date, as express-session's Cookie type has it (MemoryStore gives the JSON string; express-session takes both).
      expect(s.cookie.expires).toBeInstanceOf(Date);
      const expires = s.cookie.expires.getTime();
      expect(expires).toBeGreaterThanOrEqual(before + 60_000);
      expect(expires).toBeLessThanOrEqual(Date.now() + 60_000);
    });
  });

  describe('ids express-session accepts from a custom genid (non-sticky)', () => {
    const long = 'x'.repeat(300);
    const hashed = '#' + createHash('sha256').update(long).digest('base64url');
    it.each([
      ['percent', '%', '~%25'],
      ['slash, plus, equals', 'a/b+c=d', '~a%2Fb%2Bc%3Dd'],
      ['spaces', 'has two spaces', '~has%20two%20spaces'],
      ['non-ASCII', 'café☕', '~caf%C3%A9%E2%98%95'],
      ['control characters', 'a\tb\r\n', '~a%09b%0D%0A'],
      ['300 characters (hashed)', long, hashed],
    ])('%s: set/get/touch/destroy round-trip under the escaped key', async (_what, id, part) => {
      const store = newStore();
      await store.set(id, { cookie: { originalMaxAge: 60_000, path: '/' }, n: 1 } as any);
      // Primary (session + validity) on one node, bak: copies on another.
      const primary = await holder(PREFIX + part);
      expect(await holder(`validity:${PREFIX}${part}`)).toBe(primary);
      const backup = await holder(`bak:${PREFIX}${part}`);
      expect(backup).not.toBe(primary);
      expect(await holder(`bak:${PREFIX}validity:${PREFIX}${part}`)).toBe(backup);

      // Escaped keys name the id; a hashed key does not, so its items carry the id (for listings).
      const item = (await raw[primary].get(PREFIX + part))!;
      expect(idInItem(item)).toBe(part.startsWith('#') ? id : undefined);
      if (part.startsWith('#')) expect(idInItem((await raw[backup].get(`bak:${PREFIX}${part}`))!)).toBe(id);
      const s = (await store.get(id)) as any;
      expect(s.n).toBe(1);
      const before = (await raw[primary].get(`validity:${PREFIX}${part}`))!;
      await sleep(5);
      await store.touch(id, s);
      expect((await raw[primary].get(`validity:${PREFIX}${part}`))!.equals(before)).toBe(false);
      await store.destroy(id);
      expect(await holders(PREFIX + part)).toEqual([]);
      expect(await holders(`bak:${PREFIX}${part}`)).toEqual([]);
      expect(await store.get(id)).toBeNull();
    });

    it("msm-format ids keep exactly msm's keys", async () => {
      const store = newStore();
      const id = store.genid();
      expect(id).toMatch(/^[0-9A-F]{32}-n[123]$/);
      await store.set(id, { cookie: { originalMaxAge: 60_000 }, n: 1 } as any);
      expect(await holders(PREFIX + id)).toEqual([Number(id.slice(-1)) - 1]);
      expect((await holders(`bak:${PREFIX}validity:${PREFIX}${id}`)).length).toBe(1);
    });

    it('over HTTP with genid returning "%" and "/x y": the session persists', async () => {
      for (const custom of ['%', '/x y']) {
        const store = newStore();
        const app = makeApp(store, { genid: () => custom }, false);
        const r1 = await request(app).get('/inc').expect(200);
        expect(r1.body).toEqual({ id: custom, n: 1 });
        const r2 = await request(app).get('/inc').set('Cookie', cookieFor(custom)).expect(200);
        expect(r2.body).toEqual({ id: custom, n: 2 });
      }
    });
  });

  describe.each(modes)('listing and clear with odd and hashed ids (%s)', (_mode, opts) => {
    it('ids/all/length name escaped and hashed ids; clear deletes every copy of them', async () => {
      const store = newStore({ ...opts, storageKeyPrefix: 'static:dl' });
      const odd = ['%', 'café ☕', 'y'.repeat(300), store.genid()];
      for (const id of odd) await store.set(id, { cookie: { originalMaxAge: 60_000, path: '/' }, id } as any);
      expect((await store.ids()).sort()).toEqual([...odd].sort());
      expect(await store.length()).toBe(odd.length);
      const all = await store.all();
      for (const id of odd) expect((all as any)[id]).toMatchObject({ id });
      await store.clear();
      expect(await store.length()).toBe(0);
      for (const r of raw)
        expect((await r.keys()).filter((k) => k.includes('dl_') && !k.includes('ping-'))).toEqual([]); // probe markers stay
    });
  });

  it('clear right after writes: neither a queued backup nor a node repair brings a session back', async () => {
    // A new prefix has no probe markers yet, so the first probes start node repairs; backups are written after set.
    for (let i = 0; i < 8; i++) {
      const store = newStore({ storageKeyPrefix: `static:cr${i}`, sessionBackupAsync: true });
      const id = store.genid();
      await store.set(id, { cookie: { originalMaxAge: 60_000, path: '/' }, n: i } as any);
      await store.clear();
      expect(await store.get(id)).toBeNull();
      for (const r of raw)
        expect((await r.keys()).filter((k) => k.includes(`cr${i}_`) && !k.includes('ping-'))).toEqual([]);
    }
  });

  it("sticky: an odd id with this instance's route stays local and its memcached copy is under the escaped key", async () => {
    const store = newStore({ sticky: true, route: 'a' });
    const id = 'a b/%.a';
    await store.set(id, { cookie: { originalMaxAge: 60_000 }, n: 7 } as any);
    expect((await holders(PREFIX + '~a%20b%2F%25.a')).length).toBe(1);
    expect(((await store.get(id)) as any).n).toBe(7);
    await store.destroy(id);
    await waitFor(async () => (await holders(PREFIX + '~a%20b%2F%25.a')).length === 0, {
      timeout: 3000,
      what: 'copy deleted',
    });
  });

  it("sticky takeover of a hashed id: the new id's item names the new id", async () => {
    const store = newStore({ sticky: true, route: 'a' });
    const id = 'y'.repeat(300);
    await store.set(id, { cookie: { originalMaxAge: 60_000 }, n: 3 } as any);
    const hash = (s: string) => '#' + createHash('sha256').update(s).digest('base64url');
    expect(await holders(PREFIX + hash(id))).toHaveLength(1);
    // No route in the id: this instance takes it over as `<id>.a`.
    const loaded = (await store.get(id)) as any;
    expect(loaded.n).toBe(3);
    const node = await holder(PREFIX + hash(id + '.a'));
    expect(idInItem((await raw[node].get(PREFIX + hash(id + '.a')))!)).toBe(id + '.a');
    expect(((await store.get(id + '.a')) as any).n).toBe(3);
  });

  it('a hashed key whose item names another id is no session', async () => {
    const store = newStore();
    const id = 'z'.repeat(300);
    await store.set(id, { cookie: { originalMaxAge: 60_000 }, n: 1 } as any);
    const part = '#' + createHash('sha256').update(id).digest('base64url');
    const primary = await holder(PREFIX + part);
    const item = (await raw[primary].get(PREFIX + part))!;
    // Same bytes, but naming a different id (what a hash collision would look like).
    const forged = Buffer.from(item);
    forged.write('Z', 6, 'utf8');
    await raw[primary].set(PREFIX + part, forged, 60);
    await raw[(primary + 1) % 3].delete(`bak:${PREFIX}${part}`);
    await raw[(primary + 1) % 3].delete(`bak:${PREFIX}validity:${PREFIX}${part}`);
    expect(await store.get(id)).toBeNull();
  });

  describe.each(modes)('every cookie shape set() can be handed round-trips (%s)', (_mode, opts) => {
    const cookieOf = async (store: MemcachedStore, session: any) => {
      const id = store.genid();
      await store.set(id, session);
      const back = (await store.get(id)) as any;
      expect(back).not.toBeNull();
      expect(back.a).toBe(1);
      return back.cookie;
    };

    it('only maxAge: read as Cookie reads it (originalMaxAge, expires from the save)', async () => {
      const store = newStore(opts);
      const before = Date.now();
      const c = await cookieOf(store, { cookie: { maxAge: 60_000 }, a: 1 });
      expect(c.originalMaxAge).toBe(60_000);
      expect(c).not.toHaveProperty('maxAge');
      expect(new Date(c.expires).getTime()).toBeGreaterThanOrEqual(before + 60_000);
    });

    it('only expires: kept as given', async () => {
      const store = newStore(opts);
      const expires = new Date(Date.now() + 120_000).toISOString();
      expect(await cookieOf(store, { cookie: { expires }, a: 1 })).toEqual({ originalMaxAge: null, expires });
      expect(await cookieOf(store, { cookie: { expires: new Date(expires) }, a: 1 })).toEqual({
        originalMaxAge: null,
        expires,
      });
    });

    it('originalMaxAge null (browser-session cookie)', async () => {
      const store = newStore(opts);
      expect(
        await cookieOf(store, { cookie: { originalMaxAge: null, expires: null, path: '/', httpOnly: true }, a: 1 }),
      ).toEqual({ originalMaxAge: null, expires: null, path: '/', httpOnly: true });
    });

    it('no cookie at all: comes back without one, like MemoryStore', async () => {
      const store = newStore(opts);
      const id = store.genid();
      await store.set(id, { a: 1 } as any);
      expect(await store.get(id)).toEqual({ a: 1 });
    });

    it('an expires-only cookie is not returned once its expires has passed (memcached still holds it: 2 s TTLs)', async () => {
      const store = newStore(opts);
      const id = store.genid();
      const expires = Date.now() + 1500;
      await store.set(id, { cookie: { expires: new Date(expires) }, a: 1 } as any);
      expect(await store.get(id)).not.toBeNull();
      await sleep(expires + 10 - Date.now());
      expect(await store.get(id)).toBeNull();
    });
  });
});
