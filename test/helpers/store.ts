// The stores a test file makes: each from the file's defaults with the test's options over them, kept for teardown.
import { MemcachedStore } from '../../lib';
import type { MemcachedStoreOptions } from '../../lib';
import { ON_KEY } from '../../lib/express/options';

/** Options that call `hook` with every key before it reaches memcached (a test hook, not a public option). */
export function onKey(hook: (key: string) => void): Partial<MemcachedStoreOptions> {
  return { [ON_KEY]: hook } as Partial<MemcachedStoreOptions>;
}

export interface TestStores {
  /** A store from the defaults, `options` over them. */
  newStore(options?: Partial<MemcachedStoreOptions>): MemcachedStore;
  /** Every store made and not yet closed by closeStores() (useMemcacheds() takes it to close them first). */
  readonly stores: MemcachedStore[];
  /** Closes every store made so far and forgets it. */
  closeStores(): Promise<void>;
}

/**
 * `defaults` is called for each store, so it may name memcached processes that a beforeEach starts.
 * `stores` may be an array the file already hands to useMemcacheds().
 */
export function testStores(defaults: () => Partial<MemcachedStoreOptions>, stores: MemcachedStore[] = []): TestStores {
  return {
    newStore(options = {}) {
      const s = new MemcachedStore({ ...defaults(), ...options } as MemcachedStoreOptions);
      stores.push(s);
      return s;
    },
    stores,
    async closeStores() {
      await Promise.all(stores.splice(0).map((s) => s.close()));
    },
  };
}
