// SASL (issue 8): memcached started with -S and a sasldb; memjs speaks SASL PLAIN over the binary protocol.
// Needs saslpasswd2 (Debian: sasl2-bin) and the PLAIN mechanism (libsasl2-modules); skipped, with the reason,
// only when those are missing.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import request from 'supertest';
import express from 'express';
import session from 'express-session';
import { MemcachedStore } from '../../lib/express/store';

import * as net from 'net';
import { freePort, memcachedBinary } from '../helpers/memcached';
import { saslMissing, writeSaslConf } from '../helpers/sasl';
import { capturingLogger } from '../helpers/capturing-logger';

const USER = 'msmuser';
const PASSWORD = 'pw-' + Math.random().toString(36).slice(2) + '-S3cr3t';
const SECRET = 'sasl-secret';

const missing = saslMissing();
if (missing) console.warn(`sasl.test.ts skipped: ${missing}`);
const describeSasl = missing ? describe.skip : describe;

describeSasl('SASL PLAIN against memcached -S', () => {
  let dir: string;
  let mc: ChildProcess;
  let port: number;
  const stores: MemcachedStore[] = [];
  const log = capturingLogger();

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-sasl-'));
    writeSaslConf(dir, USER, PASSWORD);
    // memcached reads SASL_CONF_PATH at start; spawned here because the helper does not pass an environment.
    port = await freePort();
    const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '16', '-t', '1', '-S'];
    if (process.getuid?.() === 0) args.push('-u', 'root');
    mc = spawn(memcachedBinary(), args, { stdio: 'ignore', env: { ...process.env, SASL_CONF_PATH: dir } });
    const until = Date.now() + 5000;
    for (;;) {
      if (mc.exitCode !== null) throw new Error(`memcached -S exited with ${mc.exitCode}`);
      const up = await new Promise<boolean>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
      if (up) break;
      if (Date.now() > until) throw new Error('memcached -S did not start');
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  afterAll(async () => {
    for (const s of stores) await s.close();
    if (mc && mc.exitCode === null) {
      const exited = new Promise((r) => mc.once('exit', r));
      mc.kill('SIGKILL');
      await exited;
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  function makeStore(password: string): MemcachedStore {
    const s = new MemcachedStore({ memcachedNodes: `n1:127.0.0.1:${port}`, storageKeyPrefix: 'static:sasl', username: USER, password, operationTimeout: 1000, logger: log });
    stores.push(s);
    return s;
  }

  function makeApp(store: MemcachedStore, errors: string[]) {
    const app = express();
    app.use(session({ store, genid: store.genid, secret: SECRET, resave: false, saveUninitialized: false, cookie: { maxAge: 60_000 } }));
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
      await expect(call()).rejects.toThrow(/cannot list sessions: memcached n1 .*SASL node speaks only the binary protocol/);
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
    // Nothing was stored by the unauthenticated client.
    await expect(store.get(store.genid())).resolves.toBeNull();
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
