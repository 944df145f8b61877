// The stores without HTTP: CPU µs per request-equivalent (get + createSession + touch for a read, get +
// createSession + set for a write), 16 concurrent workers over 64 sessions, against real memcached nodes. Steadier
// than HTTP req/s on a busy machine, and it isolates the store: lib/ copies given as arguments are measured in
// alternation, rounds paired.
// Usage: node -r ./scripts/register.js bench/store-loop.ts [libDir ...] (default: lib/)  STORE_LOOP_ROUNDS=5
import * as path from 'path';
import session from 'express-session';
import { MemcachedProcess, freePort, killAll } from '../test/helpers/memcached';
import { benchSession } from './server';
import { nonStickyFloor, stickyFloor } from './floor';

const WORKERS = 16;
const SESSIONS = 64;
const ITERATIONS = 8000;

type Cb<T> = (err: unknown, value?: T) => void;
const call = <T>(f: (cb: Cb<T>) => void) => new Promise<T>((res, rej) => f((e, v) => (e ? rej(e) : res(v as T))));

async function measure(store: any, genid: () => string, route: 'read' | 'write'): Promise<number> {
  const ids: string[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const id = genid();
    ids.push(id);
    await call((cb) => store.set(id, { cookie: { originalMaxAge: 1_800_000, expires: new Date(Date.now() + 1_800_000), httpOnly: true, path: '/' }, ...benchSession(i) }, cb));
  }
  let next = 0;
  const one = async (id: string) => {
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
    await Promise.all(Array.from({ length: WORKERS }, async () => {
      while (next < n) await one(ids[next++ % SESSIONS]);
    }));
  };
  await run(ITERATIONS / 4); // warm-up
  next = 0;
  const before = process.cpuUsage();
  await run(ITERATIONS);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / ITERATIONS;
}

async function main(): Promise<void> {
  const libs = process.argv.slice(2).length ? process.argv.slice(2).map((d) => path.resolve(d)) : [path.join(__dirname, '..', 'lib')];
  const rounds = Number(process.env.STORE_LOOP_ROUNDS ?? 5);
  const nodes = [await new MemcachedProcess(await freePort()).start(), await new MemcachedProcess(await freePort()).start()];
  const memcachedNodes = nodes.map((n, i) => `n${i + 1}:${n.address}`).join(',');
  const results: Record<string, number[]> = {};
  try {
    for (let round = 0; round < rounds; round++) {
      for (const route of ['read', 'write'] as const) {
        results[`memory ${route}`] ??= [];
        results[`memory ${route}`].push(await measure(new session.MemoryStore(), () => String(Math.random()).slice(2), route));
        // The floors (bench/floor.ts): the least each mode's memcached traffic costs.
        for (const [name, floor] of [['floor sticky', stickyFloor], ['floor non-sticky', nonStickyFloor]] as const) {
          const { store, close } = floor(nodes.map((n) => n.address));
          (results[`${name} ${route}`] ??= []).push(await measure(store, () => String(Math.random()).slice(2), route));
          close();
        }
        for (const lib of libs) {
          const { MemcachedStore } = require(path.join(lib, 'store'));
          for (const [mode, opts] of [['non-sticky', {}], ['sticky', { sticky: true, route: 'a' }]] as const) {
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
  console.log(`CPU µs per request-equivalent, median of ${rounds} rounds (${WORKERS} workers, ${SESSIONS} sessions, ${ITERATIONS} per round)`);
  for (const [k, xs] of Object.entries(results)) console.log(`${k.padEnd(48)} ${median(xs).toFixed(1).padStart(7)}   (${xs.map((x) => x.toFixed(1)).join(' ')})`);
  process.exit(0);
}

void main();
