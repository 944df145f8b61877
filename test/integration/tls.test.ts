// TLS to memcached (issue 12): real memcached -Z processes with certificates this test makes with openssl; each also
// has a plain listener so an independent client can read what landed. Skipped, with the reason, without openssl.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import request from 'supertest';
import { ConfigError, MemcachedStore } from '../../lib';
import { type MemcachedProcess, killAll } from '../helpers/memcached';
import { RawClient } from '../helpers/raw-client';
import { cookieFor, idFromSetCookie, makeApp } from '../helpers/app';
import { capturingLogger } from '../helpers/capturing-logger';
import { type TestCerts, makeCerts, opensslMissing, startTlsMemcached } from '../helpers/tls';
import { ConfigEndpoint } from '../helpers/config-endpoint';
import { saslMissing, writeSaslConf } from '../helpers/sasl';
import { waitFor } from '../helpers/wait';
import { testStores } from '../helpers/store';

const missing = opensslMissing();
if (missing) console.warn(`tls.test.ts skipped: ${missing}`);
const describeTls = missing ? describe.skip : describe;

describeTls('TLS to memcached', () => {
  let certs: TestCerts;
  const procs: MemcachedProcess[] = [];
  const raws: RawClient[] = [];
  /** Two TLS nodes with the right CA's certificate. */
  let good: Array<{ mc: MemcachedProcess; raw: RawClient }>;

  const start = async (o: Parameters<typeof startTlsMemcached>[1] = {}) => {
    const { mc, plainPort } = await startTlsMemcached(certs, o);
    procs.push(mc);
    const raw = new RawClient(plainPort);
    raws.push(raw);
    return { mc, raw };
  };
  const nodes = (ns: Array<{ mc: MemcachedProcess }>) => ns.map((n, i) => `n${i + 1}:127.0.0.1:${n.mc.port}`).join(',');
  const { newStore, closeStores } = testStores(() => ({
    memcachedNodes: nodes(good),
    tls: { ca: fs.readFileSync(certs.ca) },
    sessionBackupAsync: false,
    sessionBackupTimeout: 1000,
  }));

  beforeAll(async () => {
    certs = makeCerts();
    good = [await start(), await start()];
  });
  afterEach(closeStores);
  afterAll(async () => {
    raws.forEach((r) => r.close());
    await killAll(procs);
    if (certs) fs.rmSync(certs.dir, { recursive: true, force: true });
  });

  test('the TLS port refuses plain connections: what works below works over TLS', async () => {
    const answer = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: good[0].mc.port }, () => s.write('version\r\n'));
      let got = '';
      s.on('data', (d) => (got += d.toString()));
      s.on('error', () => undefined);
      const t = setTimeout(() => s.destroy(), 2000);
      s.on('close', () => (clearTimeout(t), resolve(got)));
    });
    expect(answer).not.toMatch(/VERSION/);
    expect((await good[0].raw.stats()).pid).toBeGreaterThan(0);
  });

  test('non-sticky: sessions stored over TLS, read back by another instance, primary and backup in memcached', async () => {
    const a = newStore({});
    const b = newStore({});
    const agent = request.agent(makeApp(a));
    const first = await agent.get('/inc').expect(200);
    await agent.get('/inc').expect(200);
    const id: string = first.body.id;
    const node = Number(/-n([12])$/.exec(id)![1]) - 1;
    const stored = await good[node].raw.get(a.keys.session(id));
    expect(stored!.toString()).toContain('"n":2');
    await waitFor(async () => (await good[1 - node].raw.get(a.keys.backup(id))) !== null, {
      timeout: 5000,
      what: 'backup on the other node',
    });
    const fromB = await request(makeApp(b)).get('/get').set('Cookie', cookieFor(id)).expect(200);
    expect(fromB.body).toMatchObject({ id, n: 2 });
  });

  test('sticky: the memcached copy goes over TLS; another route takes the session over from it', async () => {
    const a = newStore({ sticky: true, route: 'a' });
    const b = newStore({ sticky: true, route: 'b' });
    const agent = request.agent(makeApp(a));
    const first = await agent.get('/inc').expect(200);
    await agent.get('/inc').expect(200);
    const id: string = first.body.id;
    const node = Number(/-n([12])\.a$/.exec(id)![1]) - 1;
    const stored = await good[node].raw.get(a.keys.session(id));
    expect(stored!.toString()).toContain('"n":2');
    const fromB = await request(makeApp(b)).get('/inc').set('Cookie', cookieFor(id)).expect(200);
    expect(fromB.body.n).toBe(3);
  });

  test('a certificate from another CA: a clear error naming the node, the node counts as down, sessions fail over', async () => {
    const rogue = await start({ cert: certs.otherServerCert, key: certs.otherServerKey });
    const log = capturingLogger();
    const s = newStore({
      memcachedNodes: `n1:127.0.0.1:${rogue.mc.port},n2:127.0.0.1:${good[1].mc.port}`,
      logger: log,
    });
    await s.ready();
    expect(s.stats().nodes.n1.available).toBe(false);
    expect(s.stats().nodes.n2.available).toBe(true);
    const line = log.lines.find((l) => l.includes('unavailable'));
    expect(line).toMatch(
      new RegExp(
        `memcached node n1 unavailable: .*TLS handshake with 127\\.0\\.0\\.1:${rogue.mc.port} failed: .*certificate`,
      ),
    );
    // New sessions go to n2 only, and requests succeed.
    const app = makeApp(s);
    for (let i = 0; i < 5; i++) {
      const r = await request(app).get('/inc').expect(200);
      expect(r.body.id).toMatch(/-n2$/);
    }
    // A session written to n1 while n1 was trusted (another store, the right certificate) is served from its backup
    // on n2 by the store that cannot reach n1, and relocated.
    const trusted = newStore({ memcachedNodes: `n1:127.0.0.1:${good[0].mc.port},n2:127.0.0.1:${good[1].mc.port}` });
    let oldId = '';
    for (let i = 0; i < 50 && !oldId.endsWith('-n1'); i++)
      oldId = (await request(makeApp(trusted)).get('/inc').expect(200)).body.id;
    expect(oldId).toMatch(/-n1$/);
    await waitFor(async () => (await good[1].raw.get(trusted.keys.backup(oldId))) !== null, {
      timeout: 5000,
      what: 'backup on n2',
    });
    const moved = await request(app).get('/inc').set('Cookie', cookieFor(oldId)).expect(200);
    expect(moved.body).toMatchObject({ n: 2 });
    expect(idFromSetCookie(moved.headers)).toMatch(/-n2$/);
  });

  test('mutual TLS: a node that requires a client certificate serves a store that has one, and fails one that has none', async () => {
    const mtls = await start({ clientCa: certs.ca });
    const ca = fs.readFileSync(certs.ca);
    const withCert = newStore({
      memcachedNodes: `n1:127.0.0.1:${mtls.mc.port}`,
      tls: { ca, cert: fs.readFileSync(certs.clientCert), key: fs.readFileSync(certs.clientKey) },
    });
    const agent = request.agent(makeApp(withCert));
    const r = await agent.get('/inc').expect(200);
    await agent.get('/inc').expect(200);
    expect((await mtls.raw.get(withCert.keys.session(r.body.id)))!.toString()).toContain('"n":2');

    const without = newStore({
      memcachedNodes: `n1:127.0.0.1:${mtls.mc.port}`,
      tls: { ca },
      logger: capturingLogger(),
    });
    await without.ready();
    expect(without.stats().nodes.n1.available).toBe(false);
    await expectSaveFails(without);
  });

  // Skipped (reported as skipped, not passed) where SASL is missing.
  (saslMissing() ? test.skip : test)('SASL over TLS', async () => {
    const sasl = saslSetup();
    const node = await start({ extraArgs: ['-S'], env: { ...process.env, SASL_CONF_PATH: sasl.dir } });
    const ok = newStore({
      memcachedNodes: `n1:127.0.0.1:${node.mc.port}`,
      username: sasl.user,
      password: sasl.password,
    });
    const agent = request.agent(makeApp(ok));
    await agent.get('/inc').expect(200);
    expect((await agent.get('/inc').expect(200)).body.n).toBe(2);
    const log = capturingLogger();
    const wrong = newStore({
      memcachedNodes: `n1:127.0.0.1:${node.mc.port}`,
      username: sasl.user,
      password: 'wrong',
      logger: log,
    });
    await expectSaveFails(wrong);
    expect(log.lines.join('\n')).toMatch(/authentication failed/);
  });

  test('autoDiscovery over TLS: the configuration endpoint and the nodes it lists', async () => {
    const key = fs.readFileSync(certs.serverKey);
    const cert = fs.readFileSync(certs.serverCert);
    const endpoint = await ConfigEndpoint.start({ key, cert });
    try {
      endpoint.setNodes(good.map((n) => n.mc.port));
      const s = newStore({ memcachedNodes: undefined, autoDiscovery: { endpoint: endpoint.address, intervalMs: 100 } });
      await s.ready();
      expect(s.nodes.ids).toHaveLength(2);
      const agent = request.agent(makeApp(s));
      const r = await agent.get('/inc').expect(200);
      expect((await agent.get('/inc').expect(200)).body.n).toBe(2);
      const node = good.find(
        (n) => s.nodes.client(/-(\w+)$/.exec(r.body.id)![1]).address === `127.0.0.1:${n.mc.port}`,
      )!;
      expect((await node.raw.get(s.keys.session(r.body.id)))!.toString()).toContain('"n":2');
      // A store that does not trust the endpoint's CA never gets a list, and says why.
      const log = capturingLogger();
      const untrusting = newStore({
        memcachedNodes: undefined,
        autoDiscovery: { endpoint: endpoint.address, intervalMs: 100 },
        tls: { ca: fs.readFileSync(certs.otherCa) },
        operationTimeout: 300,
        logger: log,
      });
      await expect(untrusting.ready()).rejects.toThrow(/has not answered \(TLS handshake with .* failed/);
    } finally {
      await endpoint.close();
    }
  });

  test('invalid tls options fail at construction, naming the option', () => {
    expect(() => new MemcachedStore({ memcachedNodes: 'localhost:11211', tls: 'yes' as never })).toThrow(ConfigError);
    expect(
      () =>
        new MemcachedStore({ memcachedNodes: 'localhost:11211', tls: { cert: 'not a certificate', key: 'nor a key' } }),
    ).toThrow(/invalid tls/);
  });

  async function expectSaveFails(store: MemcachedStore): Promise<void> {
    const cookie = { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000), httpOnly: true, path: '/' };
    await expect(store.set(store.genid(), { cookie, n: 1 } as never)).rejects.toThrow(
      /express-msm: cannot store session/,
    );
  }

  function saslSetup(): { dir: string; user: string; password: string } {
    const dir = path.join(certs.dir, 'sasl');
    fs.mkdirSync(dir, { recursive: true });
    const user = 'tlsuser';
    const password = 'pw-' + Math.random().toString(36).slice(2);
    writeSaslConf(dir, user, password);
    return { dir, user, password };
  }
});

if (missing) test.skip(`TLS: ${missing}`, () => undefined);
