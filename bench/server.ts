// One benchmark configuration: an Express 5 + express-session app in its own process, started by bench/run.ts
// with child_process.fork. The configuration is chosen by BENCH_CONFIG; backend addresses come in env:
//   BENCH_MSM_NODES   "n1:127.0.0.1:p1,n2:127.0.0.1:p2"  (express-msm configurations)
//   BENCH_MEMCACHED   "127.0.0.1:p"                       (connect-memcached)
//   BENCH_REDIS_URL   "redis://127.0.0.1:p"               (connect-redis)
// Messages to the parent: {type:'ready', port} | {type:'skip', reason} | {type:'error', message}.
// Message from the parent: {type:'close'}: closes the store and exits (a normal exit, so --cpu-prof is written).
//
// Routes: GET /login creates the bench session (user object + 10-item cart); GET /read loads it and changes
// nothing; POST /write changes one attribute (counter). GET /__ops (outside the session middleware) answers the
// express-msm client-side operation counters, which the parent diffs for the cost model.
import * as fs from 'fs';
import * as path from 'path';
import express from 'express';
import session from 'express-session';
import type { RequestHandler } from 'express';

// BENCH_LIB: lib/ as JavaScript (run.ts transpiles it before the run), or a copy of it (`<config>@<dir>`), to measure
// a change against the code before it.
const LIB = process.env.BENCH_LIB ? path.resolve(process.env.BENCH_LIB) : path.join(__dirname, '..', 'lib');
const COOKIE_MAX_AGE = 30 * 60 * 1000;
const SESSION_OPTIONS = {
  secret: 'express-msm-bench',
  resave: false,
  saveUninitialized: false,
  cookie: { maxAge: COOKIE_MAX_AGE },
};

/** The Avro schema of the bench session's attributes (cookie and metadata are the transcoder's fixed part). */
export const BENCH_AVRO_SCHEMA = {
  type: 'record',
  name: 'BenchSession',
  fields: [
    {
      name: 'user',
      type: {
        type: 'record',
        name: 'User',
        fields: [
          { name: 'id', type: 'long' },
          { name: 'name', type: 'string' },
          { name: 'email', type: 'string' },
          { name: 'roles', type: { type: 'array', items: 'string' } },
          { name: 'locale', type: 'string' },
          { name: 'createdAt', type: 'string' },
        ],
      },
    },
    {
      name: 'cart',
      type: {
        type: 'array',
        items: {
          type: 'record',
          name: 'CartItem',
          fields: [
            { name: 'sku', type: 'string' },
            { name: 'name', type: 'string' },
            { name: 'qty', type: 'int' },
            { name: 'price', type: 'double' },
          ],
        },
      },
    },
    { name: 'counter', type: 'long', default: 0 },
  ],
};

/** The realistic session: a user object and a 10-item cart (about 1 KB of JSON). */
export function benchSession(n: number): { user: any; cart: any[]; counter: number } {
  return {
    user: {
      id: 100000 + n,
      name: `Bench User ${n}`,
      email: `bench.user.${n}@example.com`,
      roles: ['customer', 'newsletter'],
      locale: 'en-GB',
      createdAt: '2026-01-15T10:20:30.000Z',
    },
    cart: Array.from({ length: 10 }, (_, i) => ({
      sku: `SKU-${1000 + i}`,
      name: `Product number ${i} with a descriptive name`,
      qty: 1 + (i % 3),
      price: 9.99 + i * 2.5,
    })),
    counter: 0,
  };
}

class Skip extends Error {}

interface Built {
  middleware: RequestHandler;
  /** express-msm store, for /__ops and close. */
  msmStore?: any;
  close(): Promise<void>;
}

function libHas(rel: string): boolean {
  return fs.existsSync(path.join(LIB, rel + '.ts')) || fs.existsSync(path.join(LIB, rel + '.js'));
}

function msmNodes(): string {
  const nodes = process.env.BENCH_MSM_NODES;
  if (!nodes) throw new Error('BENCH_MSM_NODES is not set');
  return nodes;
}

/** host:port of each node in BENCH_MSM_NODES. */
function floorAddresses(): string[] {
  return msmNodes()
    .split(',')
    .map((n) => n.split(':').slice(1).join(':'));
}

/** express-session over `store`; express-msm stores also supply genid (ids carry the node). */
function withStore(store: any, close: () => Promise<void>, msm = false): Built {
  const options = { ...SESSION_OPTIONS, store, ...(msm ? { genid: store.genid } : {}) };
  return { middleware: session(options) as unknown as RequestHandler, close, msmStore: msm ? store : undefined };
}

/** Each configuration is a small factory. A missing optional module makes it throw Skip with the reason. */
const FACTORIES: Record<string, () => Promise<Built>> = {
  async memory() {
    return withStore(new session.MemoryStore(), async () => {});
  },

  async 'connect-memcached'() {
    const address = process.env.BENCH_MEMCACHED;
    if (!address) throw new Skip('no memcached address');
    const MemcachedStore = require('connect-memcached')(session);
    const store = new MemcachedStore({ hosts: [address] });
    return withStore(store, async () => store.client.end());
  },

  async 'connect-redis'() {
    const url = process.env.BENCH_REDIS_URL;
    if (!url) throw new Skip('redis-server is not installed (apt-get install -y redis-server)');
    const { RedisStore } = require('connect-redis');
    const { createClient } = require('redis');
    const client = createClient({ url });
    client.on('error', () => {});
    await client.connect();
    return withStore(new RedisStore({ client }), async () => {
      await client.quit();
    });
  },

  async 'msm-json'() {
    const { MemcachedStore } = require(LIB);
    const store = new MemcachedStore({ memcachedNodes: msmNodes() });
    await store.ready?.();
    return withStore(store, () => store.close(), true);
  },

  /** memcachedSession() without locking: what the middleware costs over the bare Store. */
  async 'msm-json-mw'() {
    return memcachedSessionOf({ memcachedNodes: msmNodes(), lockingMode: 'none' });
  },

  async 'msm-sticky-mw'() {
    return memcachedSessionOf({ memcachedNodes: msmNodes(), sticky: true, route: 'a' });
  },

  async 'msm-avro'() {
    if (!libHas('transcoders/avro')) throw new Skip('lib/transcoders/avro.ts does not exist in this checkout');
    const lib = require(LIB);
    const AvroTranscoder = lib.AvroTranscoder ?? require(path.join(LIB, 'transcoders', 'avro')).AvroTranscoder;
    if (typeof AvroTranscoder !== 'function') throw new Skip('AvroTranscoder is not exported in this checkout');
    const store = new lib.MemcachedStore({
      memcachedNodes: msmNodes(),
      transcoder: new AvroTranscoder({ schema: BENCH_AVRO_SCHEMA }),
    });
    await store.ready?.();
    return withStore(store, () => store.close(), true);
  },

  async 'msm-sticky'() {
    const { MemcachedStore } = require(LIB);
    let store: any;
    try {
      store = new MemcachedStore({ memcachedNodes: msmNodes(), sticky: true, route: 'a' });
    } catch (e) {
      if (/not implemented/i.test((e as Error).message))
        throw new Skip('lib/modes/sticky.ts is not implemented in this checkout');
      throw e;
    }
    await store.ready?.();
    return withStore(store, () => store.close(), true);
  },

  async 'msm-locking'() {
    return memcachedSessionOf({ memcachedNodes: msmNodes(), lockingMode: 'all' });
  },

  // Floors (bench/floor.ts): the least a mode's memcached traffic costs, to tell a target out of reach from one missed.
  async 'floor-sticky'() {
    const { store, close } = require('./floor').stickyFloor(floorAddresses());
    return withStore(store, async () => close());
  },

  async 'floor-non-sticky'() {
    const { store, close } = require('./floor').nonStickyFloor(floorAddresses());
    return withStore(store, async () => close());
  },
};

async function memcachedSessionOf(options: Record<string, unknown>): Promise<Built> {
  const { memcachedSession } = require(LIB);
  const mw = memcachedSession({ ...options, session: { ...SESSION_OPTIONS } });
  const store = mw.store;
  await store.ready();
  return { middleware: mw, msmStore: store, close: () => store.close() };
}

export const CONFIG_NAMES = Object.keys(FACTORIES);

async function main(): Promise<void> {
  const name = process.env.BENCH_CONFIG ?? process.argv[2];
  const send = (m: object) => (process.send ? process.send(m) : console.log(JSON.stringify(m)));
  const factory = name ? FACTORIES[name] : undefined;
  if (!factory) {
    send({ type: 'error', message: `unknown configuration ${name}; known: ${CONFIG_NAMES.join(', ')}` });
    process.exit(2);
  }
  let built: Built;
  try {
    built = await factory();
  } catch (e) {
    if (e instanceof Skip) send({ type: 'skip', reason: e.message });
    else send({ type: 'error', message: (e as Error).stack ?? String(e) });
    process.exit(0);
  }

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.get('/__ops', (_req, res) => {
    const nodes = built.msmStore?.stats?.().nodes ?? {};
    const ops: Record<string, number> = {};
    for (const n of Object.values<any>(nodes))
      for (const [k, v] of Object.entries<any>(n.ops ?? {})) ops[k] = (ops[k] ?? 0) + v;
    res.json(ops);
  });
  // Server CPU time (user + system, µs): per-request CPU is steadier than req/s on a shared machine.
  app.get('/__cpu', (_req, res) => {
    const u = process.cpuUsage();
    res.json({ us: u.user + u.system });
  });
  // What this process runs: the bench records it, so a run shows the servers ran JavaScript with the harness's flags.
  app.get('/__runtime', (_req, res) => {
    res.json({
      script: __filename,
      lib: LIB,
      execArgv: process.execArgv,
      typescriptLoaded: Object.keys(require.cache).some((f) =>
        f.includes(`${path.sep}node_modules${path.sep}typescript${path.sep}`),
      ),
    });
  });
  app.use(built.middleware);
  let logins = 0;
  app.get('/login', (req, res) => {
    Object.assign(req.session, benchSession(logins++));
    res.json({ ok: true });
  });
  app.get('/read', (req, res) => {
    const s = req.session as any;
    if (!s?.user) return void res.status(401).json({ error: 'no session' });
    res.json({ user: s.user.name, items: s.cart.length });
  });
  app.post('/write', (req, res) => {
    const s = req.session as any;
    if (!s?.user) return void res.status(401).json({ error: 'no session' });
    s.counter = (s.counter ?? 0) + 1;
    res.json({ counter: s.counter });
  });

  const server = app.listen(0, '127.0.0.1', () => {
    send({ type: 'ready', port: (server.address() as any).port });
  });
  server.keepAliveTimeout = 60_000;
  let closing = false;
  const shutdown = async () => {
    if (closing) return;
    closing = true;
    server.closeAllConnections?.();
    server.close();
    try {
      await Promise.race([built.close(), new Promise((r) => setTimeout(r, 2000))]);
    } catch {
      /* closing anyway */
    }
    process.exit(0);
  };
  process.on('message', (m: any) => {
    if (m?.type === 'close') void shutdown();
  });
  process.on('disconnect', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
}

if (require.main === module) void main();
