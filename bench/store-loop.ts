// The stores without HTTP: CPU µs per request-equivalent (get + createSession + touch for a read, get +
// createSession + set for a write), 16 concurrent workers over 64 sessions, against real memcached nodes. Steadier
// than HTTP req/s on a busy machine, and it isolates the store: lib/ copies given as arguments are measured in
// alternation, rounds paired.
// Usage: node -r ./scripts/register.js bench/store-loop.ts [libDir ...] (default: lib/)  STORE_LOOP_ROUNDS=5
// STORE_LOOP_POLLUTE_KB=1024: each request-equivalent first sweeps that many KB (a byte per cache line), evicting the
// store's code and data from the CPU's caches as a server's other work does; the sweep's own cost is measured alone
// and taken off every figure.
import * as path from 'path';
import session from 'express-session';
import { MemcachedProcess, freePort, killAll } from '../test/helpers/memcached';
import { benchSession } from './server';
import { nonStickyFloor, stickyFloor } from './floor';

const WORKERS = 16;
const SESSIONS = 64;
const ITERATIONS = 8000;
const POLLUTE_KB = Number(process.env.STORE_LOOP_POLLUTE_KB ?? 0);
const junk = new Uint8Array(POLLUTE_KB * 1024);

function pollute(): void {
  let x = 0;
  for (let i = 0; i < junk.length; i += 64) {
    x = (x + junk[i]) | 0;
    junk[i] = x & 255;
  }
}

/** CPU µs of one sweep (pollute), to take off the figures. */
function sweepCost(): number {
  const before = process.cpuUsage();
  for (let i = 0; i < ITERATIONS; i++) pollute();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / ITERATIONS;
}

type Cb<T> = (err: unknown, value?: T) => void;
const call = <T>(f: (cb: Cb<T>) => void) => new Promise<T>((res, rej) => f((e, v) => (e ? rej(e) : res(v as T))));

async function measure(store: any, genid: () => string, route: 'read' | 'write'): Promise<number> {
  const ids: string[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const id = genid();
    ids.push(id);
    await call((cb) =>
      store.set(
        id,
        {
          cookie: { originalMaxAge: 1_800_000, expires: new Date(Date.now() + 1_800_000), httpOnly: true, path: '/' },
          ...benchSession(i),
        },
        cb,
      ),
    );
  }
  let next = 0;
  const one = async (id: string) => {
    if (POLLUTE_KB) pollute();
    const loaded = await call<any>((cb) => store.get(id, cb));
    if (!loaded) throw new Error(`store-loop: session ${id} was not found (a node marked down under load?)`);
    // req.res as under Express: the store can send a changed id (otherwise it assumes fixed cookies, see docs/sticky.md).
    const s = store.createSession({ sessionID: id, sessionStore: store, res: { end() {}, writeHead() {} } }, loaded);
    s.cookie.maxAge = s.cookie.originalMaxAge; // express-session's resetMaxAge
    if (route === 'read') await call((cb) => store.touch(id, s, cb));
    else {
      s.counter++;
      await call((cb) => store.set(id, s, cb));
    }
  };
  const run = async (n: number) => {
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        while (next < n) await one(ids[next++ % SESSIONS]);
      }),
    );
  };
  await run(ITERATIONS / 4); // warm-up
  next = 0;
  const before = process.cpuUsage();
  await run(ITERATIONS);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / ITERATIONS;
}

async function main(): Promise<void> {
  const libs = process.argv.slice(2).length
    ? process.argv.slice(2).map((d) => path.resolve(d))
    : [path.join(__dirname, '..', 'lib')];
  const rounds = Number(process.env.STORE_LOOP_ROUNDS ?? 5);
  const nodes = [
    await new MemcachedProcess(await freePort()).start(),
    await new MemcachedProcess(await freePort()).start(),
  ];
  const memcachedNodes = nodes.map((n, i) => `n${i + 1}:${n.address}`).join(',');
  const results: Record<string, number[]> = {};
  /** µs of the sweep alone, per round (STORE_LOOP_POLLUTE_KB): taken off every figure. */
  const sweeps: number[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      if (POLLUTE_KB) sweeps.push(sweepCost());
      for (const route of ['read', 'write'] as const) {
        results[`memory ${route}`] ??= [];
        results[`memory ${route}`].push(
          await measure(new session.MemoryStore(), () => String(Math.random()).slice(2), route),
        );
        // The floors (bench/floor.ts): the least each mode's memcached traffic costs.
        for (const [name, floor] of [
          ['floor sticky', stickyFloor],
          ['floor non-sticky', nonStickyFloor],
        ] as const) {
          const { store, close } = floor(nodes.map((n) => n.address));
          (results[`${name} ${route}`] ??= []).push(await measure(store, () => String(Math.random()).slice(2), route));
          close();
        }
        for (const lib of libs) {
          const { MemcachedStore } = require(path.join(lib, 'store'));
          for (const [mode, opts] of [
            ['non-sticky', {}],
            ['sticky', { sticky: true, route: 'a' }],
          ] as const) {
            const store = new MemcachedStore({ memcachedNodes, ...opts });
            await store.ready();
            const key = `${path.relative(process.cwd(), lib) || lib} ${mode} ${route}`;
            (results[key] ??= []).push(await measure(store, store.genid, route));
            await store.close();
          }
        }
      }
    }
  } finally {
    await killAll(nodes);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const sweep = sweeps.length ? median(sweeps) : 0;
  const row = (k: string, xs: number[]) =>
    console.log(`${k.padEnd(48)} ${median(xs).toFixed(1).padStart(7)}   (${xs.map((x) => x.toFixed(1)).join(' ')})`);
  console.log(
    `CPU µs per request-equivalent, median of ${rounds} rounds (${WORKERS} workers, ${SESSIONS} sessions, ${ITERATIONS} per round)`,
  );
  if (sweeps.length) row(`sweep of ${POLLUTE_KB} KB alone (taken off the rest)`, sweeps);
  for (const [k, xs] of Object.entries(results))
    row(
      k,
      xs.map((x) => x - sweep),
    );
  process.exit(0);
}

void main();
