// Graceful shutdown (issue 8): `await store.close()` flushes backups still in flight, then closes sockets.
import type { MemcachedStore } from '../../lib/express/store';
import type { NonStickyMode } from '../../lib/modes/non-sticky';
import { nodesString } from '../helpers/memcached';
import { useMemcacheds } from '../helpers/use-memcacheds';
import { waitFor } from '../helpers/wait';
import { testStores } from '../helpers/store';

describe('store.close()', () => {
  const stores: MemcachedStore[] = [];
  const mc = useMemcacheds(2, stores);
  const { newStore } = testStores(
    () => ({ memcachedNodes: nodesString(mc.ps), storageKeyPrefix: 'static:shutdown' }),
    stores,
  );

  test('a backup still in flight at close() is in memcached afterwards; the store then refuses work', async () => {
    const store = newStore({ sessionBackupAsync: true, operationTimeout: 10_000 });
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
  test("close() ends a repair walking a hung node's keys instead of waiting out the walk's 10 s idle timeout", async () => {
    const store = newStore({ nodeAvailabilityCacheTTL: 60_000 });
    await store.ready();
    await mc.ps[1].stop();
    // A repair of n1 walks the other nodes' keys: n2 accepts the connection (kernel backlog) and never answers.
    const repair = (store.mode as NonStickyMode).repair.schedule('n1', 'test');
    const walking = (store.nodes.client('n2') as any).walks as Set<unknown>;
    await waitFor(() => walking.size > 0, { timeout: 2000, interval: 10, what: 'the walk of n2' });
    expect(walking.size).toBe(1);
    const started = Date.now();
    await Promise.race([
      store.close(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('close() still waiting after 5 s')), 5000)),
    ]);
    expect(Date.now() - started).toBeLessThan(5000);
    await repair;
    expect(walking.size).toBe(0);
    mc.ps[1].cont();
  });
});
