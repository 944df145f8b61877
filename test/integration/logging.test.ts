// Logging (issue 8): failover, relocation, decode failures and lock timeouts are logged once per event, with the
// session id hashed (never the id itself, never a credential).
import * as http from 'http';
import type { AddressInfo } from 'net';
import express from 'express';
import { memcachedSession } from '../../lib/express/middleware';
import type { MemcachedSessionMiddleware } from '../../lib/express/middleware';
import { hashId } from '../../lib/core/logger';
import { MemcachedStore } from '../../lib/express/store';
import { sleep } from '../helpers/wait';
import { capturingLogger } from '../helpers/capturing-logger';
import { readJsonReply } from '../helpers/session-http';
import { RawClient } from '../helpers/raw-client';
import { type MemcachedProcess, killAll, nodesString, startMemcacheds } from '../helpers/memcached';
const signature: { sign(v: string, s: string): string } = require('cookie-signature');

const SECRET = 'logging-secret';
const cookieFor = (id: string) => 'connect.sid=' + encodeURIComponent('s:' + signature.sign(id, SECRET));

describe('logging', () => {
  let ps: MemcachedProcess[];
  let raws: RawClient[];
  let mw: MemcachedSessionMiddleware;
  let server: http.Server;
  let port: number;
  const log = capturingLogger();
  const ids: string[] = [];

  function get(path: string, cookie?: string): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path, headers: cookie ? { cookie } : {} }, (res) => {
        readJsonReply(res).then(resolve, reject);
      });
      req.on('error', reject);
    });
  }

  beforeAll(async () => {
    ps = await startMemcacheds(3);
    raws = ps.map((p) => new RawClient(p.port));
    mw = memcachedSession({
      memcachedNodes: nodesString(ps),
      storageKeyPrefix: 'static:log',
      lockingMode: 'all',
      operationTimeout: 300,
      lockWaitTimeout: 300,
      lockTimeoutAction: 'proceed',
      sessionBackupAsync: false,
      sessionBackupTimeout: 1000,
      logger: log,
      session: { secret: SECRET, resave: false, saveUninitialized: false, cookie: { maxAge: 60_000 } },
    });
    const app = express();
    app.use(mw);
    app.get('/inc', (req, res) => {
      const s = req.session as any;
      s.n = (s.n ?? 0) + 1;
      ids.push(req.sessionID);
      res.json({ id: req.sessionID, n: s.n });
    });
    server = http.createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    await mw.store.ready();
  });

  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await mw?.store.close();
    raws?.forEach((r) => r.close());
    if (ps) await killAll(ps);
  });

  test('decode failure: one line with the hashed id', async () => {
    const id = mw.store.idFormat.create('n1', undefined);
    ids.push(id);
    // express-msm's JSON header over a corrupt body (bytes without the header are another app's: left alone)
    await raws[0].set(
      'log_' + id,
      Buffer.concat([Buffer.from([0x4d, 0x53, 1, 1]), Buffer.from('garbage, not a session')]),
      60,
    );
    await raws[0].set(
      'validity:log_' + id,
      Buffer.from(
        require('../../lib/memcached/validity').encodeValidity({
          maxInactiveInterval: 60,
          lastAccessedTime: Date.now(),
          thisAccessedTime: Date.now(),
        }),
      ),
      60,
    );
    const r = await get('/inc', cookieFor(id));
    expect(r.status).toBe(200);
    expect(r.body.n).toBe(1);
    const lines = log.lines.filter((l) => l.includes(hashId(id)));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/do not decode/);
  });

  test('lock timeout: one line with the hashed id', async () => {
    const first = await get('/inc');
    const id = first.body.id as string;
    const node = id.slice(id.lastIndexOf('-') + 1);
    const raw = raws[Number(node.slice(1)) - 1];
    await raw.set('lock:log_' + id, 'someone-else', 5);
    const before = log.lines.length;
    const r = await get('/inc', cookieFor(id));
    expect(r.status).toBe(200); // lockTimeoutAction 'proceed' (msm)
    await raw.delete('lock:log_' + id);
    const lines = log.lines.slice(before).filter((l) => /lock wait timed out/.test(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(hashId(id));
  });

  test('failover and relocation: node down logged once, relocation logged once per session', async () => {
    const sessions: Array<{ id: string; n: number }> = [];
    while (sessions.filter((s) => s.id.endsWith('-n1')).length < 3) {
      const r = await get('/inc');
      sessions.push({ id: r.body.id, n: r.body.n });
    }
    const onN1 = sessions.filter((s) => s.id.endsWith('-n1'));
    const before = log.lines.length;
    await ps[0].kill();
    for (const s of onN1) {
      const r = await get('/inc', cookieFor(s.id));
      expect(r.status).toBe(200);
      expect(r.body.n).toBe(s.n + 1);
      expect(r.body.id).not.toBe(s.id);
    }
    const lines = log.lines.slice(before);
    expect(lines.filter((l) => /memcached node n1 unavailable/.test(l))).toHaveLength(1);
    for (const s of onN1) {
      expect(lines.filter((l) => l.includes(hashId(s.id)) && /relocated/.test(l))).toHaveLength(1);
    }
    await ps[0].start();
  });

  test('no log line contains a raw session id', () => {
    expect(log.lines.length).toBeGreaterThan(5);
    const seen = new Set([...ids, ...ids.map((id) => id.slice(0, 32))]);
    for (const line of log.lines) for (const id of seen) expect(line.includes(id)).toBe(false);
  });
});

describe('the default logger: failures reach stderr without any setup', () => {
  let ps: MemcachedProcess[];
  let write: jest.SpyInstance;
  const stderrLines = () => write.mock.calls.map((c) => String(c[0])).filter((l) => l.startsWith('express-msm '));

  beforeEach(async () => {
    ps = await startMemcacheds(2);
    write = jest.spyOn(process.stderr, 'write');
  });
  afterEach(async () => {
    write.mockRestore();
    if (ps) await killAll(ps);
  });

  async function killN2Under(options: { logger?: false }): Promise<string[]> {
    const store = new MemcachedStore({ memcachedNodes: nodesString(ps), nodeAvailabilityCacheTTL: 50, ...options });
    try {
      await store.ready();
      write.mockClear();
      await ps[1].kill();
      // Several probes see n2 refuse: the node going down is still one line.
      for (let i = 0; i < 5; i++) {
        await sleep(60);
        await store.nodes.refresh();
      }
      expect(store.stats().nodes.n2.available).toBe(false);
      return stderrLines();
    } finally {
      await store.close();
    }
  }

  test('no logger option: one warn line naming the node and the cause', async () => {
    const lines = await killN2Under({});
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^express-msm warn memcached node n2 unavailable: .*ECONNREFUSED.*\n$/);
  });

  test('logger: false: nothing at all', async () => {
    expect(await killN2Under({ logger: false })).toEqual([]);
  });
});
