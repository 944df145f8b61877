// The fixture most integration files repeat: n fresh memcached processes and a raw client on each for every test;
// afterwards the given closables (stores, servers) are closed and emptied, then the raw clients, then the processes.
import { type MemcachedProcess, killAll, startMemcacheds } from './memcached';
import { RawClient } from './raw-client';

export interface Memcacheds {
  readonly ps: MemcachedProcess[];
  readonly raw: RawClient[];
}

/** Registers beforeEach/afterEach; read `ps` and `raw` inside tests (they are replaced for each test). */
export function useMemcacheds(n: number, closeFirst: Array<{ close(): unknown }> = []): Memcacheds {
  let ps: MemcachedProcess[] = [];
  let raw: RawClient[] = [];
  beforeEach(async () => {
    ps = await startMemcacheds(n);
    raw = ps.map((p) => new RawClient(p.port));
  });
  afterEach(async () => {
    await Promise.all(closeFirst.splice(0).map((c) => c.close()));
    raw.forEach((r) => r.close());
    await killAll(ps);
  });
  return {
    get ps() {
      return ps;
    },
    get raw() {
      return raw;
    },
  };
}
