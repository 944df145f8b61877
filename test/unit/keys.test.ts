// The key -> (kind, session id) step used by listing, clear and repair: the inverse of KeyFormat.
import { KeyFormat, idInKey } from '../../lib/keys';

describe('idInKey', () => {
  const id = '0123456789ABCDEF0123456789ABCDEF-n1';

  it.each(['', 'shop_'])('inverts every key KeyFormat builds (prefix %j)', (prefix) => {
    const keys = new KeyFormat(prefix);
    expect(idInKey(keys, keys.session(id))).toEqual({ kind: 'session', id });
    expect(idInKey(keys, keys.validity(id))).toEqual({ kind: 'validity', id });
    expect(idInKey(keys, keys.backup(id))).toEqual({ kind: 'backup', id });
    expect(idInKey(keys, keys.backupValidity(id))).toEqual({ kind: 'backupValidity', id });
    expect(idInKey(keys, keys.lock(id))).toEqual({ kind: 'lock', id });
  });

  it('knows no key of another prefix, nor the bare prefix', () => {
    const keys = new KeyFormat('shop_');
    for (const k of ['blog_' + id, id, 'bak:blog_' + id, 'validity:' + id, 'lock:' + id, 'shop_', 'bak:shop_']) {
      expect(idInKey(keys, k)).toBeUndefined();
    }
  });
});
