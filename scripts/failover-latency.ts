// What one memcached fault costs a request: 3 real memcached nodes, two app instances (a and b, each an Express app
// with its own MemcachedStore, non-sticky), sessions on n1 with their backup on n2. For each fault (SIGSTOP or kill -9
// of the primary, SIGSTOP of the backup node) it times, on fresh processes each repetition: the first request at
// instance a, a second session's request at a, and the first request at instance b with the same (old) cookie.
// `node -r ./scripts/register.js scripts/failover-latency.ts` (FAILOVER_REPEATS, FAILOVER_OPERATION_TIMEOUT).
import express from 'express';
import session from 'express-session';
import type * as http from 'http';
import type { AddressInfo } from 'net';
import { MemcachedStore } from '../lib';
import { type MemcachedProcess, killAll, nodesString, startMemcacheds } from '../test/helpers/memcached';

const REPEATS = Number(process.env.FAILOVER_REPEATS ?? 5);
const OPERATION_TIMEOUT = Number(process.env.FAILOVER_OPERATION_TIMEOUT ?? 1000);
type Fault = 'stop primary' | 'kill primary' | 'stop backup';

interface Instance {
  store: MemcachedStore;
  server: http.Server;
  port: number;
}

async function instance(nodes: string): Promise<Instance> {
  const store = new MemcachedStore({ memcachedNodes: nodes, operationTimeout: OPERATION_TIMEOUT, logger: false });
  const app = express();
  app.use(session({ store, genid: store.genid, secret: 's', resave: false, saveUninitialized: false }));
  app.get('/inc', (req, res) => {
    const s = req.session as unknown as { n?: number };
    s.n = (s.n ?? 0) + 1;
    res.json({ id: req.sessionID, n: s.n });
  });
  const server = await new Promise<http.Server>((resolve) => {
    const srv = app.listen(0, '127.0.0.1', () => resolve(srv));
  });
  return { store, server, port: (server.address() as AddressInfo).port };
}

/** One GET /inc; the cookie to send next (the new one when the response set one) and how long it took. */
async function hit(port: number, cookie?: string): Promise<{ cookie: string; ms: number; id: string; n: number }> {
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/inc`, { headers: cookie ? { cookie } : {} });
  const body = (await res.json()) as { id: string; n: number };
  const ms = performance.now() - t0;
  const set = res.headers.get('set-cookie');
  return { cookie: set ? set.split(';')[0] : (cookie ?? ''), ms, id: body.id, n: body.n };
}

/** Sessions created at instance a until two live on n1 (so n2 holds their backups). */
async function twoSessionsOnN1(a: Instance): Promise<string[]> {
  const cookies: string[] = [];
  for (let i = 0; i < 200 && cookies.length < 2; i++) {
    const r = await hit(a.port);
    if (r.id.endsWith('-n1')) cookies.push(r.cookie);
  }
  if (cookies.length < 2) throw new Error('no session landed on n1');
  return cookies;
}

async function once(fault: Fault): Promise<number[]> {
  const mc: MemcachedProcess[] = await startMemcacheds(3);
  const nodes = nodesString(mc);
  const a = await instance(nodes);
  const b = await instance(nodes);
  try {
    const [c1, c2] = await twoSessionsOnN1(a);
    // Both instances have read both sessions (connections open, availability known).
    for (const c of [c1, c2]) {
      await hit(a.port, c);
      await hit(b.port, c);
    }
    if (fault === 'stop primary') await mc[0].stop();
    else if (fault === 'kill primary') await mc[0].kill();
    else await mc[1].stop();
    const first = await hit(a.port, c1);
    const second = await hit(a.port, c2);
    const atB = await hit(b.port, c1);
    if (first.n !== 4 || second.n !== 4 || atB.n !== 5)
      throw new Error(`session lost: ${first.n} ${second.n} ${atB.n}`);
    return [first.ms, second.ms, atB.ms];
  } finally {
    for (const m of mc) if (m.stopped) m.cont();
    await Promise.all([a, b].map((i) => new Promise((r) => i.server.close(r))));
    await Promise.all([a.store.close(), b.store.close()]);
    await killAll(mc);
  }
}

async function main(): Promise<void> {
  console.log(`operationTimeout ${OPERATION_TIMEOUT} ms, ${REPEATS} repetitions; ms: min-max (each run)`);
  console.log('| fault | first request at a | next session at a | same session at b |');
  console.log('|---|--:|--:|--:|');
  for (const fault of ['stop primary', 'kill primary', 'stop backup'] as Fault[]) {
    const runs: number[][] = [];
    for (let i = 0; i < REPEATS; i++) runs.push(await once(fault));
    const col = (k: number) => {
      const v = runs.map((r) => r[k]);
      return `${Math.min(...v).toFixed(0)}-${Math.max(...v).toFixed(0)} (${v.map((x) => x.toFixed(0)).join(', ')})`;
    };
    console.log(`| ${fault} | ${col(0)} | ${col(1)} | ${col(2)} |`);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
