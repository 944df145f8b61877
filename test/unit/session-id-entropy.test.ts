// Session ids (issue 8): at least 128 bits from crypto, in a fixed alphabet and length.
import { MemcachedStore } from '../../lib/express/store';

describe('store.genid() entropy', () => {
  const store = new MemcachedStore({
    memcachedNodes: 'n1:127.0.0.1:1,n2:127.0.0.1:2',
    storageKeyPrefix: 'static:entropy',
  });
  afterAll(() => store.close());

  test('random part: 32 hex characters (128 bits) before the node suffix; alphabet and shape fixed', () => {
    const ids = Array.from({ length: 2000 }, () => store.genid());
    for (const id of ids) {
      expect(id).toMatch(/^[0-9A-F]{32}-n[12]$/);
      expect(store.idFormat.parse(id)).not.toBeNull();
    }
    const randoms = ids.map((id) => id.slice(0, 32));
    expect(new Set(randoms).size).toBe(ids.length);
    // 16 symbols x 32 positions = 128 bits, and every symbol appears at every position (no fixed or biased nibble).
    const alphabet = new Set(randoms.join(''));
    expect(alphabet.size).toBe(16);
    expect(Math.log2(alphabet.size) * 32).toBeGreaterThanOrEqual(128);
    for (let pos = 0; pos < 32; pos++) {
      const counts = new Map<string, number>();
      for (const r of randoms) counts.set(r[pos], (counts.get(r[pos]) ?? 0) + 1);
      expect(counts.size).toBe(16);
      // Expected 125 per symbol; a fixed or heavily biased position would fall far outside this.
      for (const c of counts.values()) expect(c).toBeGreaterThan(60);
    }
  });

  test('the bytes come from crypto.randomBytes (16 bytes per id)', () => {
    jest.isolateModules(() => {
      const actual = jest.requireActual('crypto');
      const randomBytes = jest.fn((n: number) => actual.randomBytes(n));
      jest.doMock('crypto', () => ({ ...actual, randomBytes }));
      const { randomPart } = require('../../lib/memcached/session-id');
      const r = randomPart();
      expect(randomBytes).toHaveBeenCalledWith(16);
      expect(r).toBe((randomBytes.mock.results[0].value as Buffer).toString('hex').toUpperCase());
      jest.dontMock('crypto');
    });
  });
});
