// Starts the shared memcached nodes (three, free loopback ports) for tests that do not kill nodes; tests that
// kill, stop or restart nodes start their own with startMemcacheds().
import { startMemcacheds } from './memcached';

export default async function globalSetup(): Promise<void> {
  const ps = await startMemcacheds(3);
  process.env.MSM_TEST_PORTS = ps.map((p) => p.port).join(',');
  (globalThis as any).__MSM_MEMCACHEDS__ = ps;
}
