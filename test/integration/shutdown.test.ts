// Graceful shutdown (issue 8): `await store.close()` flushes backups queued just before it, then closes sockets.
import { MemcachedStore } from '../../lib/store';
import { RawClient } from '../helpers/raw-client';

const ports = process.env.MSM_TEST_PORTS!.split(',').map(Number);

describe('store.close()', () => {
  const raws = ports.map((p) => new RawClient(p));
  afterAll(() => raws.forEach((r) => r.close()));

  test('a backup queued just before close() is in memcached afterwards; the store then refuses work', async () => {
    const store = new MemcachedStore({
      memcachedNodes: ports.map((p, i) => `n${i + 1}:127.0.0.1:${p}`).join(','),
      storageKeyPrefix: 'static:shutdown',
      sessionBackupAsync: true,
    });
    await store.ready();
    const ids = Array.from({ length: 20 }, () => store.genid());
    await Promise.all(ids.map((id, n) => store.set(id, { cookie: { originalMaxAge: 60_000 }, n } as any)));
    // The primaries are written; the backups are still queued (sessionBackupAsync).
    expect(store.backups.size).toBeGreaterThan(0);
    await store.close();
    expect(store.backups.size).toBe(0);

    for (const [n, id] of ids.entries()) {
      const primary = Number(id.slice(id.lastIndexOf('-') + 2)) - 1;
      const backupNode = (primary + 1) % ports.length;
      const bak = await raws[backupNode].get('bak:shutdown_' + id);
      expect(bak).not.toBeNull();
      expect(JSON.parse(bak!.subarray(4).toString()).n).toBe(n);
      expect(await raws[backupNode].get('bak:shutdown_validity:shutdown_' + id)).not.toBeNull();
    }
    // Sockets are closed: operations fail at once instead of reconnecting.
    const r = await store.nodes.client('n1').get('shutdown_x');
    expect(r.ok).toBe(false);
    // close() is idempotent.
    await expect(store.close()).resolves.toBeUndefined();
  });
});
