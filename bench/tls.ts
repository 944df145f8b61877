// What TLS to memcached costs per request: the same store loop (load a session, change it, save it: what a
// request that modifies its session does) over plain sockets and over TLS, against the same two memcached
// processes (each listens on a TLS port and a plain port). Rounds alternate plain/TLS; medians are reported.
// CPU is this process's (process.cpuUsage: the app's cost); memcached's own TLS work is not counted.
//   node -r ./scripts/register.js bench/tls.ts     (TLS_BENCH_REQUESTS, TLS_BENCH_ROUNDS, TLS_BENCH_CONCURRENCY)
import * as fs from 'fs';
import { MemcachedStore } from '../lib';
import { killAll } from '../test/helpers/memcached';
import { makeCerts, startTlsMemcached } from '../test/helpers/tls';

const REQUESTS = Number(process.env.TLS_BENCH_REQUESTS ?? 20_000);
const ROUNDS = Number(process.env.TLS_BENCH_ROUNDS ?? 5);
const CONCURRENCY = Number(process.env.TLS_BENCH_CONCURRENCY ?? 16);

async function loop(store: MemcachedStore, ids: string[]): Promise<{ cpuUs: number; wallUs: number }> {
  let next = 0;
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) {
        const id = ids[next++ % ids.length];
        const s = (await store.get(id)) as any;
        s.n++;
        await store.set(id, s);
      }
    }),
  );
  const wallUs = (performance.now() - t0) * 1000;
  const used = process.cpuUsage(cpu);
  return { cpuUs: (used.user + used.system) / REQUESTS, wallUs: wallUs / REQUESTS };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const certs = makeCerts();
  const nodes = [await startTlsMemcached(certs), await startTlsMemcached(certs)];
  const spec = (ports: number[]) => ports.map((p, i) => `n${i + 1}:127.0.0.1:${p}`).join(',');
  const common = { storageKeyPrefix: 'static:tlsbench', sessionBackupAsync: true };
  const plain = new MemcachedStore({ ...common, memcachedNodes: spec(nodes.map((n) => n.plainPort)) });
  const tls = new MemcachedStore({
    ...common,
    memcachedNodes: spec(nodes.map((n) => n.mc.port)),
    tls: { ca: fs.readFileSync(certs.ca) },
  });
  try {
    await Promise.all([plain.ready(), tls.ready()]);
    const cookie = { originalMaxAge: 3_600_000, expires: new Date(Date.now() + 3_600_000), httpOnly: true, path: '/' };
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) {
      const id = plain.genid();
      await plain.set(id, { cookie, n: 0, user: { name: 'bench', roles: ['a', 'b'] } } as any);
      ids.push(id);
    }
    await loop(plain, ids); // warm-up: JIT, connections, TLS handshakes
    await loop(tls, ids);
    const r = {
      plain: [] as Array<{ cpuUs: number; wallUs: number }>,
      tls: [] as Array<{ cpuUs: number; wallUs: number }>,
    };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 ? (['tls', 'plain'] as const) : (['plain', 'tls'] as const);
      for (const k of order) r[k].push(await loop(k === 'tls' ? tls : plain, ids));
    }
    const m = (k: 'plain' | 'tls', f: 'cpuUs' | 'wallUs') => median(r[k].map((x) => x[f]));
    const out = {
      requests: REQUESTS,
      rounds: ROUNDS,
      concurrency: CONCURRENCY,
      plain: { cpuUsPerRequest: +m('plain', 'cpuUs').toFixed(1), wallUsPerRequest: +m('plain', 'wallUs').toFixed(1) },
      tls: { cpuUsPerRequest: +m('tls', 'cpuUs').toFixed(1), wallUsPerRequest: +m('tls', 'wallUs').toFixed(1) },
      tlsCostCpuUsPerRequest: +(m('tls', 'cpuUs') - m('plain', 'cpuUs')).toFixed(1),
      tlsCpuRatio: +(m('tls', 'cpuUs') / m('plain', 'cpuUs')).toFixed(2),
    };
    console.log(JSON.stringify(out, null, 2));
  } finally {
    await plain.close();
    await tls.close();
    await killAll(nodes.map((n) => n.mc));
    fs.rmSync(certs.dir, { recursive: true, force: true });
  }
}

void main();
