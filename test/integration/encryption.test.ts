// Issue 13: sessions encrypted at rest. What lands in memcached is read with an independent client: no plaintext,
// primary and bak: copies decrypt under their session, relocation and takeover carry the bytes, rotation works, and
// bytes that do not decrypt (retired key, tampered, copied from another session) give a fresh session, never a 500.
import request from 'supertest';
import { randomBytes } from 'crypto';
import express from 'express';
import { EncryptingTranscoder, type MemcachedStore, type MemcachedStoreOptions, memcachedSession } from '../../lib';
import { type MemcachedProcess, killAll, nodesString, startMemcacheds } from '../helpers/memcached';
import { RawClient } from '../helpers/raw-client';
import { useMemcacheds } from '../helpers/use-memcacheds';
import { SECRET, cookieFor, idFromSetCookie, makeApp } from '../helpers/app';
import { testStores } from '../helpers/store';

const SECRET_DATA = { card: 'VISA-4111111111111111', email: 'ada@example.com' };
const PLAINTEXTS = ['4111111111111111', 'ada@example.com', 'originalMaxAge', '"n":', 'card'];
const k1 = { id: 'k1', key: randomBytes(32) };
const k2 = { id: 'k2', key: randomBytes(32) };

const nodeIndex = (id: string) => Number(/-n(\d)(\.|$)/.exec(id)![1]) - 1;
const random = (id: string) => id.slice(0, 32);

function expectNoPlaintext(bytes: Buffer | null): void {
  expect(bytes).not.toBeNull();
  expect([...bytes!.subarray(0, 4)]).toEqual([0x4d, 0x53, 1, 3]);
  const text = bytes!.toString('latin1');
  for (const p of PLAINTEXTS) expect(text).not.toContain(p);
}

describe('encryption at rest (non-sticky, three nodes)', () => {
  const stores: MemcachedStore[] = [];
  const mc = useMemcacheds(3, stores);
  const made = testStores(
    () => ({
      memcachedNodes: nodesString(mc.ps),
      sessionBackupAsync: false,
      sessionBackupTimeout: 1000,
      operationTimeout: 500,
    }),
    stores,
  );
  const newStore = (keys = [k1], o: Partial<MemcachedStoreOptions> = {}) =>
    made.newStore({ transcoder: new EncryptingTranscoder({ keys }), ...o });

  it('stores no plaintext on any node; primary and bak: copies decrypt under their session; relocation keeps it', async () => {
    const store = newStore();
    const agent = request.agent(makeApp(store));
    await agent.post('/data').send(SECRET_DATA).expect(200);
    const id: string = (await agent.get('/inc').expect(200)).body.id;
    const p = nodeIndex(id);
    const b = (p + 1) % 3;
    const primary = await mc.raw[p].get(id);
    const backup = await mc.raw[b].get(`bak:${id}`);
    expectNoPlaintext(primary);
    expect(backup!.equals(primary!)).toBe(true);
    const t = store.transcoder;
    expect(t.decode(backup!, { random: random(id) })).toMatchObject({ n: 1, data: SECRET_DATA });
    // Every item on every node: only ciphertext, validity records (timestamps) and markers.
    for (const r of mc.raw)
      for (const k of await r.sessionKeys())
        expect((await r.get(k))!.toString('latin1')).not.toContain('4111111111111111');
    // Listing decrypts each session under its own id.
    expect(await store.ids()).toEqual([id]);
    expect((await store.all())[id]).toMatchObject({ n: 1, data: SECRET_DATA });

    // The primary dies: the backup's bytes are moved to a new id (same random part) and still decrypt.
    await mc.ps[p].kill();
    const r = await agent.get('/inc').expect(200);
    expect(r.body.n).toBe(2);
    const moved = idFromSetCookie(r.headers)!;
    expect(random(moved)).toBe(random(id));
    expect(nodeIndex(moved)).toBe(b);
    expectNoPlaintext(await mc.raw[b].get(moved));
    expect((await agent.get('/get').expect(200)).body).toMatchObject({ id: moved, n: 2, data: SECRET_DATA });
  });

  it('an unchanged session is not rewritten (the encryption is deterministic per session)', async () => {
    const store = newStore();
    // resave: express-session calls set on every request; the store compares the encoded bytes with the loaded ones.
    const agent = request.agent(makeApp(store, { resave: true }));
    const id: string = (await agent.get('/inc').expect(200)).body.id;
    const before = await mc.raw[nodeIndex(id)].meta(id);
    await agent.get('/get').expect(200);
    await agent.get('/get').expect(200);
    expect((await mc.raw[nodeIndex(id)].meta(id))!.cas).toBe(before!.cas);
    expect(store.stats().requestsWithoutSessionModification).toBe(2);
  });

  it('key rotation: [k2, k1] reads k1 sessions and rewrites them with k2; once k1 is retired its sessions are fresh ones', async () => {
    const old = request.agent(makeApp(newStore([k1])));
    const id: string = (await old.get('/inc').expect(200)).body.id;
    const keyIdOf = async (sid: string) => (await mc.raw[nodeIndex(sid)].get(sid))!.toString('latin1', 5, 7);
    expect(await keyIdOf(id)).toBe('k1');

    const rotatedApp = makeApp(newStore([k2, k1]));
    const r = await request(rotatedApp).get('/inc').set('Cookie', cookieFor(id)).expect(200);
    expect(r.body).toMatchObject({ id, n: 2 });
    expect(await keyIdOf(id)).toBe('k2');

    // A k1-only session with data, then an instance that lists k2 only: a fresh session, no error.
    const k1Only = request.agent(makeApp(newStore([k1])));
    await k1Only.post('/data').send(SECRET_DATA).expect(200);
    const stale: string = (await k1Only.get('/inc').expect(200)).body.id;
    expect(await keyIdOf(stale)).toBe('k1');
    const retired = newStore([k2]);
    const retiredApp = makeApp(retired);
    const f = await request(retiredApp).get('/inc').set('Cookie', cookieFor(stale)).expect(200);
    // A new id in a new cookie; n starts over and the k1 data is gone (it had n: 1 and data).
    const fresh = idFromSetCookie(f.headers);
    expect(fresh).toBeDefined();
    expect(fresh).not.toBe(stale);
    expect(f.body).toEqual({ id: fresh, n: 1 });
    expect(retired.stats().decodeFailures).toBe(1);
    expect(await keyIdOf(fresh!)).toBe('k2');
    expect((await request(retiredApp).get('/get').set('Cookie', cookieFor(fresh!)).expect(200)).body).toEqual({
      id: fresh,
      n: 1,
      data: null,
    });
    // Sent again, the old cookie still gets a fresh session, never the k1 data.
    const again = await request(retiredApp).get('/get').set('Cookie', cookieFor(stale)).expect(200);
    expect(again.body).toMatchObject({ n: null, data: null });
    expect(again.body.id).not.toBe(stale);
  });

  it('tampered bytes, and a value copied under another session id, give a fresh session (200), never that data', async () => {
    const store = newStore();
    const app = makeApp(store);
    const victim = request.agent(app);
    await victim.post('/data').send(SECRET_DATA).expect(200);
    const victimId: string = (await victim.get('/get').expect(200)).body.id;
    const attacker = request.agent(app);
    const attackerId: string = (await attacker.get('/inc').expect(200)).body.id;

    // Copy the victim's bytes over the attacker's session (primary and backup; the validity records stay).
    const bytes = (await mc.raw[nodeIndex(victimId)].get(victimId))!;
    await mc.raw[nodeIndex(attackerId)].set(attackerId, bytes, 120);
    await mc.raw[(nodeIndex(attackerId) + 1) % 3].set(`bak:${attackerId}`, bytes, 120);
    const a = await attacker.get('/get').expect(200);
    expect(a.body).toMatchObject({ n: null, data: null });

    // Flip one ciphertext byte of the victim's primary and backup.
    const tampered = Buffer.from(bytes);
    tampered[tampered.length - 1] ^= 0x40;
    await mc.raw[nodeIndex(victimId)].set(victimId, tampered, 120);
    await mc.raw[(nodeIndex(victimId) + 1) % 3].set(`bak:${victimId}`, tampered, 120);
    const v = await victim.get('/get').expect(200);
    expect(v.body).toMatchObject({ n: null, data: null });
    expect(store.stats().decodeFailures).toBe(2);
  });
});

describe('encryption at rest through memcachedSession()', () => {
  let ps: MemcachedProcess[];
  let raw: RawClient[];
  let mw: ReturnType<typeof memcachedSession>;
  afterAll(async () => {
    await mw.store.close();
    raw.forEach((r) => r.close());
    await killAll(ps);
  });

  it('saves before the response and learns read-only requests (auto locking) on encrypted bytes', async () => {
    ps = await startMemcacheds(2);
    raw = ps.map((p) => new RawClient(p.port));
    mw = memcachedSession({
      memcachedNodes: nodesString(ps),
      sessionBackupAsync: false,
      lockingMode: 'auto',
      transcoder: new EncryptingTranscoder({ keys: [k1] }),
      session: { secret: SECRET, resave: false, saveUninitialized: false },
    });
    const app = express();
    app.use(mw);
    app.post('/data', express.json(), (req, res) => {
      (req.session as any).data = req.body;
      res.json({ id: req.sessionID });
    });
    app.get('/get', (req, res) => res.json({ data: (req.session as any).data ?? null }));
    const agent = request.agent(app);
    const id: string = (await agent.post('/data').send(SECRET_DATA).expect(200)).body.id;
    expectNoPlaintext(await raw[nodeIndex(id)].get(id));
    const cas = (await raw[nodeIndex(id)].meta(id))!.cas;
    for (let i = 0; i < 3; i++) expect((await agent.get('/get').expect(200)).body.data).toEqual(SECRET_DATA);
    // Unchanged: never rewritten, and auto locking saw the reads as reads (the byte comparison works on ciphertext).
    expect((await raw[nodeIndex(id)].meta(id))!.cas).toBe(cas);
    expect(mw.store.stats()).toMatchObject({ readOnlyPatternsLearnt: 1, readOnlyPatternsBlacklisted: 0 });
    expect(mw.store.stats().decodeFailures).toBe(0);
  });
});

describe('encryption at rest (sticky)', () => {
  let ps: MemcachedProcess[];
  let raw: RawClient[];
  const { newStore, closeStores } = testStores(() => ({
    memcachedNodes: nodesString(ps),
    sessionBackupAsync: false,
    sessionBackupTimeout: 1000,
    transcoder: new EncryptingTranscoder({ keys: [k1] }),
  }));
  afterAll(async () => {
    await closeStores();
    raw.forEach((r) => r.close());
    await killAll(ps);
  });

  it('the memcached copy is ciphertext, and a route takeover (new id, same bytes) decrypts it', async () => {
    ps = await startMemcacheds(2);
    raw = ps.map((p) => new RawClient(p.port));
    const mk = (route: string) => newStore({ sticky: true, route });
    const a = request.agent(makeApp(mk('a')));
    await a.post('/data').send(SECRET_DATA).expect(200);
    const id: string = (await a.get('/inc').expect(200)).body.id;
    expectNoPlaintext(await raw[nodeIndex(id)].get(id));
    const r = await request(makeApp(mk('b')))
      .get('/get')
      .set('Cookie', cookieFor(id))
      .expect(200);
    expect(r.body).toMatchObject({ n: 1, data: SECRET_DATA });
    const taken = idFromSetCookie(r.headers)!;
    expect(taken).toBe(`${id.slice(0, -2)}.b`);
    expectNoPlaintext(await raw[nodeIndex(taken)].get(taken));
  });
});
