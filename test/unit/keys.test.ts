// The key -> (kind, session id) step used by listing, clear and repair: the inverse of KeyFormat.
import { KeyFormat, idInKey, keyOfPart } from '../../lib/memcached/keys';

describe('idInKey', () => {
  const id = '0123456789ABCDEF0123456789ABCDEF-n1';

  it.each(['', 'shop_'])('inverts every key KeyFormat builds, escaped ids too (prefix %j)', (prefix) => {
    const keys = new KeyFormat(prefix);
    for (const [sid, part] of [
      [id, id],
      ['a b/é', '~a%20b%2F%C3%A9'],
    ]) {
      for (const kind of ['session', 'validity', 'backup', 'backupValidity', 'lock'] as const) {
        const key = keys[kind](sid);
        expect(idInKey(keys, key)).toEqual({ kind, id: sid, part });
        expect(keyOfPart(keys, kind, part)).toBe(key);
      }
    }
  });

  it('a hashed id: the key gives its part, not the id (the item names it)', () => {
    const keys = new KeyFormat('shop_');
    const long = 'z'.repeat(400);
    const part = keys.idToKeyPart(long);
    expect(keys.isHashedPart(part)).toBe(true);
    expect(idInKey(keys, keys.backupValidity(long))).toEqual({ kind: 'backupValidity', id: undefined, part });
    expect(keyOfPart(keys, 'session', part)).toBe(keys.session(long));
  });

  it('knows no key of another prefix, nor the bare prefix', () => {
    const keys = new KeyFormat('shop_');
    for (const k of ['blog_' + id, id, 'bak:blog_' + id, 'validity:' + id, 'lock:' + id, 'shop_', 'bak:shop_']) {
      expect(idInKey(keys, k)).toBeUndefined();
    }
  });
});
