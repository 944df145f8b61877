// SASL (issue 8): memcached started with -S and a sasldb; memjs speaks SASL PLAIN over the binary protocol.
// Needs saslpasswd2 (Debian: sasl2-bin) and the PLAIN mechanism (libsasl2-modules); skipped, with the reason,
// only when those are missing.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import request from 'supertest';
import express from 'express';
import session from 'express-session';
import type { MemcachedStore } from '../../lib/express/store';
import { MemcachedProcess, freePort } from '../helpers/memcached';
import { saslMissing, writeSaslConf } from '../helpers/sasl';
import { capturingLogger } from '../helpers/capturing-logger';
import { testStores } from '../helpers/store';

const USER = 'msmuser';
const PASSWORD = 'pw-' + Math.random().toString(36).slice(2) + '-S3cr3t';
const SECRET = 'sasl-secret';

const missing = saslMissing();
if (missing) console.warn(`sasl.test.ts skipped: ${missing}`);
const describeSasl = missing ? describe.skip : describe;

describeSasl('SASL PLAIN against memcached -S', () => {
  let dir: string;
  let mc: MemcachedProcess | undefined;
  let port: number;
  const log = capturingLogger();

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-sasl-'));
    writeSaslConf(dir, USER, PASSWORD);
    // memcached reads SASL_CONF_PATH at start; spawned here because the helper does not pass an environment.
    // memcached reads SASL_CONF_PATH at start (later -m and -t override the helper's).
    mc = await new MemcachedProcess(await freePort(), ['-m', '16', '-t', '1', '-S'], {
      ...process.env,
      SASL_CONF_PATH: dir,
    }).start();
    port = mc.port;
  });

  afterAll(async () => {
    await closeStores();
    await mc?.kill();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const { newStore, closeStores } = testStores(() => ({
    memcachedNodes: `n1:127.0.0.1:${port}`,
    storageKeyPrefix: 'static:sasl',
    username: USER,
    operationTimeout: 1000,
    logger: log,
  }));
  const makeStore = (password: string) => newStore({ password });

  function makeApp(store: MemcachedStore, errors: string[]) {
    const app = express();
    app.use(
      session({
        store,
        genid: store.genid,
        secret: SECRET,
        resave: false,
        saveUninitialized: false,
        cookie: { maxAge: 60_000 },
      }),
    );
    app.get('/inc', (req, res) => {
      const s = req.session as any;
      s.n = (s.n ?? 0) + 1;
      req.session.save((err) => (err ? res.status(500).json({ error: err.message }) : res.json({ n: s.n })));
    });
    app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      errors.push(err.message);
      if (!res.headersSent) res.status(500).json({ error: err.message });
    });
    return app;
  }

  test('the right password: sessions are stored and loaded', async () => {
    const errors: string[] = [];
    const app = makeApp(makeStore(PASSWORD), errors);
    const agent = request.agent(app);
    expect((await agent.get('/inc')).body).toEqual({ n: 1 });
    expect((await agent.get('/inc')).body).toEqual({ n: 2 });
    expect(errors).toEqual([]);
  });

  test('all/length/ids/clear on a SASL node: a clear error (binary protocol only: no lru_crawler), never an empty answer', async () => {
    const store = makeStore(PASSWORD);
    await store.set(store.genid(), { cookie: { originalMaxAge: 60_000 }, n: 1 } as any);
    for (const call of [() => store.length(), () => store.ids(), () => store.all(), () => store.clear()]) {
      await expect(call()).rejects.toThrow(
        /cannot list sessions: memcached n1 .*SASL node speaks only the binary protocol/,
      );
    }
    const viaCallback = await new Promise<unknown>((resolve) => store.length((err) => resolve(err)));
    expect(String(viaCallback)).toMatch(/SASL/);
  });

  test('a wrong password fails cleanly: an error to express-session, no crash, no hang', async () => {
    const errors: string[] = [];
    const store = makeStore('wrong-' + PASSWORD.split('').reverse().join(''));
    const app = makeApp(store, errors);
    const started = Date.now();
    const r = await request(app).get('/inc');
    expect(r.status).toBe(500);
    expect(r.body.error).toMatch(/^express-msm: cannot store session/);
    expect(Date.now() - started).toBeLessThan(10_000);
    // No node answers this client: a load is a storage error (503), not "no session", and says why.
    const err: any = await store.get(store.genid()).catch((e) => e);
    expect(err).toMatchObject({ name: 'StorageUnavailableError', status: 503 });
    expect(String(err.cause?.message)).toMatch(/authentication failed/i);
  });

  test('the password appears in no log line and no error message', () => {
    expect(log.lines.length).toBeGreaterThan(0); // the failing node was logged
    for (const line of log.lines) {
      expect(line).not.toContain(PASSWORD);
      expect(line).not.toContain(PASSWORD.split('').reverse().join(''));
    }
  });
});

if (missing) test.skip(`SASL: ${missing}`, () => undefined);
