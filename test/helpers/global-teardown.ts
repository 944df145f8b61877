import { killAll } from './memcached';

export default async function globalTeardown(): Promise<void> {
  const ps = (globalThis as any).__MSM_MEMCACHEDS__;
  if (ps) await killAll(ps);
}
