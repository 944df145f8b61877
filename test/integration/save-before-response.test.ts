// memcachedSession() saves before the response: a session that cannot be stored anywhere is a 5xx, not a 200
// followed by a late error; a saved session is in memcached when the client reads the answer.
import express from 'express';
import request from 'supertest';
import { AvroTranscoder, memcachedSession } from '../../lib';
import { type MemcachedProcess, killAll, nodesString, startMemcacheds } from '../helpers/memcached';
import { RawClient } from '../helpers/raw-client';
import { SECRET } from '../helpers/app';
import { decodeValidity } from '../../lib/memcached/validity';

function app(mw: ReturnType<typeof memcachedSession>) {
  const a = express();
  a.use(mw);
  a.get('/inc', (req, res) => {
    const s = req.session as any;
    s.n = (s.n ?? 0) + 1;
    res.json({ id: req.sessionID, n: s.n });
  });
  a.get('/read', (req, res) => res.json({ n: (req.session as any).n ?? null }));
  a.get('/remember', (req, res) => {
    req.session.cookie.maxAge = 30 * 86400_000;
    res.json({});
  });
  a.use((err: any, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(err.status ?? 500).json({ error: String(err.message) });
  });
  return a;
}

describe('save before response (memcachedSession)', () => {
  let ps: MemcachedProcess[] = [];
  let mw: ReturnType<typeof memcachedSession> | undefined;
  afterEach(async () => {
    await mw?.store.close();
    await killAll(ps);
  });

  it("answers 500 with the transcoder's message, at once, for a loaded session it refuses to encode", async () => {
    ps = await startMemcacheds(1);
    const schema = { type: 'record', name: 'S', fields: [{ name: 'n', type: ['null', 'int'], default: null }] };
    mw = memcachedSession({
      memcachedNodes: nodesString(ps),
      transcoder: new AvroTranscoder({ schema: schema as any }),
      session: { secret: SECRET, resave: false, saveUninitialized: false },
    });
    const a = app(mw);
    a.get('/bad', (req, res) => {
      (req.session as any).undeclared = 1;
      res.json({});
    });
    const agent = request.agent(a);
    await agent.get('/inc').expect(200);
    const r = await agent.get('/bad');
    expect(r.status).toBe(500);
    expect(r.text).toMatch(/undeclared&quot; is not in the Avro schema/);
  });

  it('answers 503 (storage unavailable) when the session cannot be written on any node', async () => {
    ps = await startMemcacheds(1);
    mw = memcachedSession({
      memcachedNodes: `n1:127.0.0.1:${ps[0].port}`,
      operationTimeout: 300,
      session: { secret: SECRET, resave: false, saveUninitialized: false },
    });
    await ps[0].kill();
    const r = await request(app(mw)).get('/inc');
    expect(r.status).toBe(503);
    expect(r.body.error).toMatch(/cannot store session/);
    expect(r.headers['set-cookie']).toBeUndefined();
  });

  it('has the modified session in memcached before the answer, and does not touch it again after saving', async () => {
    ps = await startMemcacheds(2);
    const raw = ps.map((p) => new RawClient(p.port));
    mw = memcachedSession({
      memcachedNodes: nodesString(ps),
      sessionBackupAsync: false,
      session: { secret: SECRET, resave: false, saveUninitialized: false },
    });
    const agent = request.agent(app(mw));
    const id = (await agent.get('/inc').expect(200)).body.id;
    const p = Number(id.slice(-1)) - 1;
    const opsBefore = { ...mw.store.stats().nodes[`n${p + 1}`].ops };
    const r = await agent.get('/inc').expect(200);
    expect(r.body.n).toBe(2);
    // read at once with another client: no wait for a write that follows the response
    const bytes = (await raw[p].get(id))!.toString();
    expect(bytes).toContain('"n":2');
    const ops = mw.store.stats().nodes[`n${p + 1}`].ops;
    expect(ops.set - opsBefore.set).toBe(2); // session + validity, once
    expect(ops.touch - opsBefore.touch).toBe(0); // express-session's touch after our save is a no-op
    expect((await agent.get('/read').expect(200)).body.n).toBe(2);
    raw.forEach((c) => c.close());
  });

  it('stores a cookie-only change before the answer, and rewrites nothing on unchanged requests', async () => {
    ps = await startMemcacheds(2);
    const raw = ps.map((p) => new RawClient(p.port));
    mw = memcachedSession({
      memcachedNodes: nodesString(ps),
      sessionBackupAsync: false,
      nodeAvailabilityCacheTTL: 60_000,
      session: { secret: SECRET, resave: false, saveUninitialized: false, cookie: { maxAge: 60_000 } },
    });
    const agent = request.agent(app(mw));
    const id = (await agent.get('/inc').expect(200)).body.id;
    const p = Number(id.slice(-1)) - 1;
    await agent.get('/remember').expect(200);
    expect(JSON.parse((await raw[p].get(id))!.subarray(4).toString()).cookie.originalMaxAge).toBeGreaterThan(
      29 * 86400_000,
    );
    const cas = (await raw[p].meta(id))!.cas;
    for (let i = 0; i < 3; i++) await agent.get('/read').expect(200);
    expect((await raw[p].meta(id))!.cas).toBe(cas);
    raw.forEach((c) => c.close());
  });
  it('refreshes an unchanged session before the answer (validity on both nodes), and rolling still sends the cookie', async () => {
    ps = await startMemcacheds(2);
    const raw = ps.map((p) => new RawClient(p.port));
    mw = memcachedSession({
      memcachedNodes: nodesString(ps),
      sessionBackupAsync: false,
      nodeAvailabilityCacheTTL: 60_000,
      session: { secret: SECRET, resave: false, saveUninitialized: false, rolling: true, cookie: { maxAge: 60_000 } },
    });
    const agent = request.agent(app(mw));
    const id = (await agent.get('/inc').expect(200)).body.id;
    const p = Number(id.slice(-1)) - 1;
    const version = async (node: number, key: string) => decodeValidity((await raw[node].get(key))!)!.thisAccessedTime;
    const before = await version(p, `validity:${id}`);
    const cas = (await raw[p].meta(id))!.cas;
    await new Promise((r) => setTimeout(r, 5));
    const r = await agent.get('/read').expect(200);
    expect(r.body.n).toBe(1);
    expect(String(r.headers['set-cookie'])).toMatch(/^connect\.sid=/);
    // Read at once with another client: the refresh was done before the answer, and the session was not rewritten.
    const after = await version(p, `validity:${id}`);
    expect(after).toBeGreaterThan(before);
    expect(await version((p + 1) % 2, `bak:validity:${id}`)).toBe(after);
    expect((await raw[p].meta(id))!.cas).toBe(cas);
    raw.forEach((c) => c.close());
  });
});
