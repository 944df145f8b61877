// Issue 11, item 7: configuration mistakes fail loudly, at construction, naming the option and what was meant.
import express from 'express';
import session from 'express-session';
import request from 'supertest';
import { decodeValidity } from '../../lib/memcached/validity';
import { ConfigError, MemcachedStore, memcachedSession } from '../../lib';
import type { MemcachedSessionOptions, MemcachedStoreOptions } from '../../lib';
import { RawClient } from '../helpers/raw-client';
import { idFromSetCookie } from '../helpers/app';
import { thrown } from '../helpers/thrown';

const ports = process.env.MSM_TEST_PORTS!.split(',').map(Number);
const memcachedNodes = ports.map((p, i) => `n${i + 1}:127.0.0.1:${p}`).join(',');

describe('new MemcachedStore(): option names', () => {
  it.each([
    ['memcachedNode', /unknown option "memcachedNode": did you mean memcachedNodes\?/],
    ['failOverNodes', /unknown option "failOverNodes": did you mean failoverNodes\?/],
    ['operationTimout', /did you mean operationTimeout\?/],
    ['nodeAvailabilityCacheTtl', /did you mean nodeAvailabilityCacheTTL\?/],
    ['hosts', /unknown option "hosts": valid options are memcachedNodes, failoverNodes, .*maxSessionBytes/],
  ])('%s throws a ConfigError naming it and the closest valid option', (name, msg) => {
    const e = thrown(() => new MemcachedStore({ memcachedNodes, [name]: 1 } as unknown as MemcachedStoreOptions));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(msg);
  });

  it.each(['lockingMode', 'lockExpiration', 'lockWaitTimeout', 'lockTimeoutAction', 'requestUriIgnorePattern'])(
    'the middleware-only option %s throws and points to memcachedSession()',
    (name) => {
      const e = thrown(() => new MemcachedStore({ memcachedNodes, [name]: 'all' } as unknown as MemcachedStoreOptions));
      expect(e).toBeInstanceOf(ConfigError);
      expect(e.message).toMatch(
        new RegExp(
          `unknown option "${name}": it is an option of memcachedSession\\(\\), not of new MemcachedStore\\(\\)`,
        ),
      );
    },
  );

  it("the Store's option type has no middleware-only options (checked by tsc)", () => {
    // @ts-expect-error lockingMode is memcachedSession()'s
    const o: MemcachedStoreOptions = { memcachedNodes, lockingMode: 'all' };
    // @ts-expect-error requestUriIgnorePattern is memcachedSession()'s
    const p: MemcachedStoreOptions = { memcachedNodes, requestUriIgnorePattern: '/x' };
    expect(thrown(() => new MemcachedStore(o)).message).toMatch(/memcachedSession/);
    expect(thrown(() => new MemcachedStore(p)).message).toMatch(/memcachedSession/);
  });

  it('valid names are accepted (every documented option at once)', async () => {
    const store = new MemcachedStore({
      memcachedNodes,
      failoverNodes: 'n3',
      sticky: false,
      operationTimeout: 1000,
      sessionBackupAsync: true,
      sessionBackupTimeout: 100,
      storageKeyPrefix: 'static:opts',
      defaultMaxInactiveInterval: 60,
      sessionAttributeFilter: '.*',
      nodeAvailabilityCacheTTL: 1000,
      localMaxSessions: 10,
      localMaxBytes: 1_000_000,
      maxSessionBytes: 500_000,
    });
    await store.close();
  });
});

describe('store.setMemcachedNodes(): one memcached under two node ids', () => {
  it('throws a ConfigError naming both ids and changes nothing: the store keeps its nodes and its sessions', async () => {
    const store = new MemcachedStore({ memcachedNodes, sessionBackupAsync: false, storageKeyPrefix: 'static:opts' });
    try {
      const id = store.genid();
      await store.set(id, { cookie: { originalMaxAge: 60_000 }, n: 1 } as any);
      const before = { nodes: structuredClone(store.config.nodes), stats: Object.keys(store.stats().nodes) };
      const twice = `n1:127.0.0.1:${ports[0]},n2:127.0.0.1:${ports[1]},n3:127.0.0.1:${ports[1]}`;
      for (const failoverNodes of ['n3', undefined]) {
        const e = thrown(() => store.setMemcachedNodes(twice, failoverNodes));
        expect(e).toBeInstanceOf(ConfigError);
        expect(e.message).toBe(
          `express-msm: invalid memcachedNodes "${twice}": "n2" and "n3" are the same memcached (127.0.0.1:${ports[1]}): list each host:port once`,
        );
      }
      expect(store.config.nodes).toEqual(before.nodes);
      expect(store.config.failoverNodeIds).toEqual([]);
      expect(Object.keys(store.stats().nodes)).toEqual(before.stats);
      expect(((await store.get(id)) as any).n).toBe(1);
    } finally {
      await store.close();
    }
  });
});

describe('memcachedSession(): options', () => {
  const secretOnly = { secret: 'opts-secret' };

  it.each([
    ['lockingmode', /unknown option "lockingmode": did you mean lockingMode\?/],
    ['requestUriIgnorePatern', /did you mean requestUriIgnorePattern\?/],
    ['memcachedNode', /did you mean memcachedNodes\?/],
    [
      'secret',
      /unknown option "secret": it is an express-session option: pass it inside session: \{ secret: \.\.\. \}/,
    ],
    ['saveUninitialized', /express-session option/],
  ])('%s throws a ConfigError naming it', (name, msg) => {
    const e = thrown(() =>
      memcachedSession({ memcachedNodes, session: secretOnly, [name]: 'x' } as unknown as MemcachedSessionOptions),
    );
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(msg);
  });

  it.each([
    ['no session options', undefined, /invalid session undefined: expected express-session options with a secret/],
    ['no secret', {}, /invalid session\.secret undefined: is required/],
    ['an empty secret', { secret: '' }, /session\.secret "\[redacted\]": is required/],
    ['an empty secret list', { secret: [] }, /session\.secret "\[redacted\]": is required/],
  ])('%s throws a clear error (and never echoes a secret)', (_what, sessionOptions, msg) => {
    const e = thrown(() =>
      memcachedSession({ memcachedNodes, session: sessionOptions } as unknown as MemcachedSessionOptions),
    );
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(msg);
  });

  it('resave and saveUninitialized default to false: express-session prints no deprecation warning', async () => {
    // depd (express-session's deprecation module) emits 'deprecation' on process instead of writing to stderr
    // while someone listens.
    const warnings: string[] = [];
    const listen = (e: Error) => warnings.push(e.message);
    process.on('deprecation', listen);
    try {
      const mw = memcachedSession({ memcachedNodes, session: { secret: 'opts-secret' } });
      expect(warnings).toEqual([]);
      // saveUninitialized false: a request that leaves its new session empty gets no cookie and stores nothing.
      const app = express();
      app.use(mw);
      app.get('/', (_req, res) => res.send('ok'));
      app.get('/set', (req, res) => {
        (req.session as any).x = 1;
        res.send('ok');
      });
      const r = await request(app).get('/').expect(200);
      expect(r.headers['set-cookie']).toBeUndefined();
      expect(mw.store.stats().sessionsCreated).toBe(0);
      const s = await request(app).get('/set').expect(200);
      expect(s.headers['set-cookie']?.[0]).toMatch(/^connect\.sid=s%3A/);
      expect(mw.store.stats().sessionsCreated).toBe(1);
      await mw.store.close();
      // The listener sees express-session's warnings when they happen: without the defaults, two of them.
      session({ secret: 'opts-secret' });
      expect(warnings).toEqual([
        'undefined resave option; provide resave option',
        'undefined saveUninitialized option; provide saveUninitialized option',
      ]);
    } finally {
      process.off('deprecation', listen);
    }
  });

  describe('explicit resave / saveUninitialized still win', () => {
    const raw = ports.map((p) => new RawClient(p));
    afterAll(() => raw.forEach((r) => r.close()));
    const rawFor = (id: string) => raw[Number(/-n(\d)$/.exec(id)![1]) - 1];

    /** An app over memcachedSession() with these session options: /inc changes the session, /get only reads it. */
    function appWith(sessionOptions: Record<string, unknown>) {
      const mw = memcachedSession({
        memcachedNodes,
        sessionBackupAsync: false,
        session: { secret: 'opts-secret', cookie: { maxAge: 60_000 }, ...sessionOptions },
      });
      const app = express();
      app.use(mw);
      app.get('/', (_req, res) => res.send('ok'));
      app.get('/inc', (req, res) => {
        const s = req.session as any;
        s.n = (s.n ?? 0) + 1;
        res.json({ id: req.sessionID });
      });
      app.get('/get', (req, res) => res.json({ id: req.sessionID, n: (req.session as any).n ?? null }));
      return { mw, app };
    }

    /** The session item's CAS after a request that changed it, and after one that only read it. */
    async function casAcrossUnchangedRequest(sessionOptions: Record<string, unknown>): Promise<[string, string]> {
      const { mw, app } = appWith(sessionOptions);
      try {
        const agent = request.agent(app);
        const id: string = (await agent.get('/inc').expect(200)).body.id;
        const before = (await rawFor(id).meta(id))!.cas;
        expect((await agent.get('/get').expect(200)).body).toEqual({ id, n: 1 });
        return [before, (await rawFor(id).meta(id))!.cas];
      } finally {
        await mw.store.close();
      }
    }

    it('saveUninitialized: true: a new session left empty gets a cookie and is stored', async () => {
      const { mw, app } = appWith({ saveUninitialized: true });
      try {
        const r = await request(app).get('/').expect(200);
        const id = idFromSetCookie(r.headers);
        expect(id).toBeDefined();
        expect(await rawFor(id!).get(id!)).not.toBeNull();
        expect(mw.store.stats().sessionsCreated).toBe(1);
      } finally {
        await mw.store.close();
      }
    });

    it('the control: with the default resave (false) an unchanged loaded session is not rewritten', async () => {
      const [before, after] = await casAcrossUnchangedRequest({});
      expect(after).toBe(before);
    });

    // resave: true saves an unchanged session as a refresh (validity record, TTLs): it stays alive as resave intends,
    // and its identical bytes are not written again, so resave's lost update (a request that read the session before
    // another changed it writes its old copy back) cannot happen. README, "Drop-in".
    it('resave: true: an unchanged loaded session is refreshed (its expiry moves), its identical bytes not rewritten', async () => {
      const { mw, app } = appWith({ resave: true });
      try {
        const agent = request.agent(app);
        const id: string = (await agent.get('/inc').expect(200)).body.id;
        const version = async () => decodeValidity((await rawFor(id).get(`validity:${id}`))!)!.thisAccessedTime;
        const before = { cas: (await rawFor(id).meta(id))!.cas, version: await version() };
        await new Promise((r) => setTimeout(r, 5));
        expect((await agent.get('/get').expect(200)).body).toEqual({ id, n: 1 });
        expect(await version()).toBeGreaterThan(before.version);
        expect((await rawFor(id).meta(id))!.cas).toBe(before.cas);
      } finally {
        await mw.store.close();
      }
    });
  });
});
