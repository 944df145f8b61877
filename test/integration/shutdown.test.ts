// Graceful shutdown (issue 8): `await store.close()` flushes backups still in flight, then closes sockets.
import { MemcachedStore } from '../../lib/store';
import { useMemcacheds } from '../helpers/use-memcacheds';

describe('store.close()', () => {
  const stores: MemcachedStore[] = [];
  const mc = useMemcacheds(2, stores);

  test('a backup still in flight at close() is in memcached afterwards; the store then refuses work', async () => {
    const store = new MemcachedStore({
      memcachedNodes: mc.ps.map((p, i) => `n${i + 1}:127.0.0.1:${p.port}`).join(','),
      storageKeyPrefix: 'static:shutdown',
      sessionBackupAsync: true,
      operationTimeout: 10_000,
    });
    stores.push(store);
    await store.ready();
    // Every session on n1, so every backup goes to n2, which is stopped: the primaries answer, the backups wait.
    const ids = Array.from({ length: 20 }, () => store.idFormat.create('n1', undefined));
    await mc.ps[1].stop();
    await Promise.all(ids.map((id, n) => store.set(id, { cookie: { originalMaxAge: 60_000 }, n } as any)));
    expect(store.backups.size).toBe(ids.length);
    const closing = store.close();
    setTimeout(() => mc.ps[1].cont(), 200);
    await closing;
    expect(store.backups.size).toBe(0);

    for (const [n, id] of ids.entries()) {
      const bak = await mc.raw[1].get('bak:shutdown_' + id);
      expect(bak).not.toBeNull();
      expect(JSON.parse(bak!.subarray(4).toString()).n).toBe(n);
      expect(await mc.raw[1].get('bak:shutdown_validity:shutdown_' + id)).not.toBeNull();
    }
    // Sockets are closed: operations fail at once instead of reconnecting.
    const r = await store.nodes.client('n1').get('shutdown_x');
    expect(r.ok).toBe(false);
    // close() is idempotent.
    await expect(store.close()).resolves.toBeUndefined();
  });
});
