// Issue 5 through the HTTP stack (express + express-session + MemcachedStore) on the shared memcached nodes:
// schema evolution across instances, sessionAttributeFilter as stored bytes, a JSON value read by an Avro store.
import express from 'express';
import session from 'express-session';
import request from 'supertest';
import {
  AvroTranscoder,
  JsonTranscoder,
  type MemcachedStore,
  type MemcachedStoreOptions,
  type Transcoder,
} from '../../lib';
import { RawClient } from '../helpers/raw-client';
import { cookieFor, idFromSetCookie } from '../helpers/app';
import { waitFor } from '../helpers/wait';
import { testStores } from '../helpers/store';

const ports = (process.env.MSM_TEST_PORTS ?? '').split(',').filter(Boolean).map(Number);
const nodes = ports
  .slice(0, 2)
  .map((p, i) => `n${i + 1}:127.0.0.1:${p}`)
  .join(',');
const PREFIX = 'static:avro';

/** The field both deploys share. */
const USER = {
  name: 'user',
  type: [
    'null',
    {
      type: 'record',
      name: 'User',
      fields: [
        { name: 'id', type: 'long' },
        { name: 'name', type: 'string' },
      ],
    },
  ],
  default: null,
};
const v1 = {
  type: 'record',
  name: 'Shop',
  namespace: 'app',
  fields: [
    USER,
    { name: 'visits', type: 'int', default: 0 },
    { name: 'lastSeen', type: ['null', { type: 'long', logicalType: 'timestamp-millis' }], default: null },
    { name: 'legacyBanner', type: 'boolean', default: false },
  ],
};
/** Deploy 2: legacyBanner removed, theme and cart added (with defaults). */
const v2 = {
  type: 'record',
  name: 'Shop',
  namespace: 'app',
  fields: [
    USER,
    { name: 'visits', type: 'int', default: 0 },
    { name: 'lastSeen', type: ['null', { type: 'long', logicalType: 'timestamp-millis' }], default: null },
    { name: 'theme', type: 'string', default: 'light' },
    { name: 'cart', type: { type: 'array', items: 'string' }, default: [] },
  ],
};

const made = testStores(() => ({ memcachedNodes: nodes, storageKeyPrefix: PREFIX, sessionBackupAsync: false }));
/** Errors that reached express (express-session saves at res.end: a failed save arrives after the response). */
const errors: Error[] = [];
let raws: RawClient[];

beforeAll(() => {
  if (ports.length < 2) throw new Error('MSM_TEST_PORTS is not set: run through jest (global setup starts memcached)');
  raws = ports.map((p) => new RawClient(p));
});
afterAll(async () => {
  await made.closeStores();
  raws.forEach((r) => r.close());
});

function newStore(transcoder: Transcoder, o: Partial<MemcachedStoreOptions> = {}): MemcachedStore {
  return made.newStore({ transcoder, ...o });
}

function app(store: MemcachedStore) {
  const a = express();
  a.use(express.json());
  a.use(
    session({
      store,
      genid: store.genid,
      secret: 'test-secret',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 60_000 },
    }),
  );
  const s = (req: express.Request) => req.session as any;
  a.get('/login', (req, res) => {
    s(req).user = { id: 9_007_199_254_740_990, name: 'Ada' };
    s(req).visits = 1;
    s(req).lastSeen = new Date(1_767_000_000_123);
    s(req).legacyBanner = true;
    res.json({ id: req.sessionID });
  });
  a.post('/set', (req, res) => {
    Object.assign(s(req), req.body);
    res.json({ id: req.sessionID });
  });
  a.get('/visit', (req, res) => {
    s(req).visits = (s(req).visits ?? 0) + 1;
    res.json({ id: req.sessionID });
  });
  a.get('/get', (req, res) => {
    const { cookie, ...attrs } = s(req);
    res.json({ id: req.sessionID, attrs });
  });
  a.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    errors.push(err);
    if (!res.headersSent) res.status(500).send(err.message);
  });
  return a;
}

/** The stored value of a session, read with an independent client from the node named in its id. */
async function stored(store: MemcachedStore, id: string): Promise<Buffer> {
  const node = Number(/-n(\d)$/.exec(id)![1]) - 1;
  const b = await raws[node].get(store.keys.session(id));
  if (!b) throw new Error(`no value for ${id}`);
  return b;
}

describe('Avro through express-session and real memcached', () => {
  it('a session written by an instance with the old schema is read by an instance with the new one', async () => {
    const old = newStore(new AvroTranscoder({ schema: v1 }));
    const next = new AvroTranscoder({ schema: v2, previousSchemas: [v1] });
    const neu = newStore(next);

    const r = await request(app(old)).get('/login').expect(200);
    const id = idFromSetCookie(r.headers)!;
    expect(id).toBe(r.body.id);
    const before = await stored(old, id);
    expect(before.subarray(4, 12).toString('hex')).toBe((old.transcoder as AvroTranscoder).fingerprint);

    const g = await request(app(neu)).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(g.body).toEqual({
      id,
      attrs: {
        user: { id: 9_007_199_254_740_990, name: 'Ada' },
        visits: 1,
        lastSeen: '2025-12-29T09:20:00.123Z',
        theme: 'light',
        cart: [],
      },
    });
    expect(neu.stats().decodeFailures).toBe(0);

    // A change through the new instance rewrites the value with the new schema; the old one no longer reads it.
    await request(app(neu)).get('/visit').set('Cookie', cookieFor(id)).expect(200);
    const after = await stored(neu, id);
    expect(after.subarray(4, 12).toString('hex')).toBe(next.fingerprint);
    expect(next.decode(after)).toMatchObject({ visits: 2, theme: 'light', user: { name: 'Ada' } });
    expect((next.decode(after)!.lastSeen as Date).getTime()).toBe(1_767_000_000_123);
  });

  it('a rolling deploy done in two phases keeps every session on both versions', async () => {
    // Phase 1: every instance still writes v1 but already reads v2; phase 2: instances write v2, read v1.
    const phase1 = newStore(new AvroTranscoder({ schema: v1, previousSchemas: [v2] }));
    const phase2 = newStore(new AvroTranscoder({ schema: v2, previousSchemas: [v1] }));
    const r = await request(app(phase2))
      .post('/set')
      .send({ user: { id: 7, name: 'Bob' }, visits: 5, theme: 'dark' })
      .expect(200);
    const id = r.body.id;
    const g = await request(app(phase1)).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(g.body.attrs).toEqual({ user: { id: 7, name: 'Bob' }, visits: 5, legacyBanner: false });
    expect(phase1.stats().decodeFailures).toBe(0);
  });

  it.each([
    ['Avro', () => new AvroTranscoder({ schema: v2 })],
    ['JSON', () => new JsonTranscoder()],
  ])('sessionAttributeFilter stores only matching attributes (%s)', async (_n, make) => {
    const t = make();
    const store = newStore(t, { sessionAttributeFilter: '^(user|cart)$' });
    const r = await request(app(store))
      .post('/set')
      .send({ user: { id: 1, name: 'Cy' }, cart: ['sku-1', 'sku-2'], flash: 'saved!', csrfScratch: 'x' })
      .expect(200);
    const id = r.body.id;
    const decoded = t.decode(await stored(store, id))!;
    expect(decoded).not.toBeNull();
    const { cookie, ...attrs } = decoded;
    expect(cookie).toMatchObject({ httpOnly: true, path: '/' });
    // express-session's maxAge setter reads the clock twice: it may come out a millisecond short
    expect(60_000 - (cookie!.originalMaxAge as number)).toBeGreaterThanOrEqual(0);
    expect(60_000 - (cookie!.originalMaxAge as number)).toBeLessThan(10);
    const defaults = t instanceof AvroTranscoder ? { visits: 0, theme: 'light' } : {};
    expect(attrs).toEqual({ user: { id: 1, name: 'Cy' }, cart: ['sku-1', 'sku-2'], ...defaults });
    // The request itself still saw everything; the next one sees only what was stored.
    const g = await request(app(store)).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(g.body.attrs).toEqual({ user: { id: 1, name: 'Cy' }, cart: ['sku-1', 'sku-2'], ...defaults });
  });

  it('without a filter, an attribute missing from the schema fails the save with a message naming it', async () => {
    const store = newStore(new AvroTranscoder({ schema: v2 }));
    errors.length = 0;
    const r = await request(app(store)).post('/set').send({ flash: 'hi' });
    // express-session saves when the response ends and hands the error to next(): it reaches the error handler.
    await waitFor(async () => errors.length > 0, { timeout: 2000, what: 'the save error' });
    expect(errors[0].message).toMatch(
      /session attribute "flash" is not in the Avro schema app\.Shop.*sessionAttributeFilter/,
    );
    const node = Number(/-n(\d)$/.exec(r.body.id)![1]) - 1;
    expect(await raws[node].get(store.keys.session(r.body.id))).toBeNull(); // nothing half-stored
  });

  it('a JSON-written session read by an Avro store is a fresh session, counted as a decode failure', async () => {
    const jsonStore = newStore(new JsonTranscoder());
    const avroStore = newStore(new AvroTranscoder({ schema: v2 }));
    const r = await request(app(jsonStore)).get('/login').expect(200);
    const id = r.body.id;
    const failures = avroStore.stats().decodeFailures as number;
    const g = await request(app(avroStore)).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(g.body.attrs).toEqual({});
    expect(g.body.id).not.toBe(id); // express-session generated a new session
    expect(avroStore.stats().decodeFailures).toBe(failures + 1);
    // And the other way round: the JSON store does not mis-read an Avro value.
    const a = await request(app(avroStore)).post('/set').send({ visits: 3 }).expect(200);
    const jf = jsonStore.stats().decodeFailures as number;
    const j = await request(app(jsonStore)).get('/get').set('Cookie', cookieFor(a.body.id)).expect(200);
    expect(j.body.attrs).toEqual({});
    expect(jsonStore.stats().decodeFailures).toBe(jf + 1);
  });
});
