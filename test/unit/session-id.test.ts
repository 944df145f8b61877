import { MAX_ID_LENGTH, SessionIdFormat, randomPart } from '../../lib/memcached/session-id';
import { KeyFormat, isValidMemcachedKey } from '../../lib/memcached/keys';

const fmt = new SessionIdFormat(new Set(['n1', 'n2']), true);

describe('session ids', () => {
  it('random part: 128 bits from crypto as 32 hex chars, never "-" or "."', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const r = randomPart();
      expect(r).toMatch(/^[0-9A-F]{32}$/);
      seen.add(r);
    }
    expect(seen.size).toBe(1000);
  });

  it('creates <random>-<node>[.<route>] and parses it back', () => {
    const id = fmt.create('n2', 'a');
    expect(id).toMatch(/^[0-9A-F]{32}-n2\.a$/);
    const p = fmt.parse(id)!;
    expect(p).toEqual({ id, random: id.slice(0, 32), nodeId: 'n2', route: 'a' });
    expect(fmt.withNode(p, 'n1')).toBe(`${p.random}-n1.a`);
    expect(fmt.withRoute(p, 'b')).toBe(`${p.random}-n2.b`);
  });

  it('treats the text after the last "-" as a node only when it is a configured node id', () => {
    // express-session's default uid-safe ids are base64url and may contain "-"
    expect(fmt.parse('ab-cd_Ef-n1')).toMatchObject({ random: 'ab-cd_Ef', nodeId: 'n1' });
    expect(fmt.parse('ab-cd_Ef-x9')).toMatchObject({ random: 'ab-cd_Ef-x9', nodeId: undefined });
    expect(fmt.parse('-n1')).toMatchObject({ random: '-n1', nodeId: undefined });
    expect(fmt.withNode(fmt.parse('plain-id_x')!, 'n2')).toBe('plain-id_x-n2');
  });

  it('never puts a node id in ids when the single node has none (msm host:port form)', () => {
    const single = new SessionIdFormat(new Set(['n1']), false);
    expect(single.create('n1', undefined)).toMatch(/^[0-9A-F]{32}$/);
    expect(single.parse('ABC-n1')).toMatchObject({ random: 'ABC-n1', nodeId: undefined });
  });

  it.each([
    ['empty', ''],
    ['longer than any cookie', 'x'.repeat(MAX_ID_LENGTH + 1)],
    ['a lone surrogate (no UTF-8 form)', 'a\uD800b'],
    ['not a string', 42],
  ] as Array<[string, unknown]>)('rejects an id that is %s', (_what, id) => {
    expect(fmt.parse(id)).toBeNull();
  });

  it('accepts any other id express-session may hand over (custom genid), reading a route only after the last "."', () => {
    for (const id of ['%', 'a/b+c=', 'has space-n1', 'abc\u0000', 'café-n1', '😀', 'x'.repeat(300), 'abc.', 'a.b-c']) {
      expect(fmt.parse(id)).toMatchObject({ id, route: undefined });
    }
    expect(fmt.parse('café-n1')).toMatchObject({ random: 'café', nodeId: 'n1' });
    expect(fmt.parse('a.b.c')).toMatchObject({ random: 'a.b', route: 'c' });
    expect(fmt.parse('%/x.a')).toMatchObject({ random: '%/x', route: 'a' });
  });
});

describe('id <-> key part (KeyFormat.idToKeyPart / keyPartToId)', () => {
  const k = new KeyFormat('shop_');

  it('keeps msm-format ids verbatim while the longest derived key fits 250 bytes', () => {
    for (const id of ['ABC-n1', 'ABC-n1.a', 'uid_safe-Base64url', 'A'.repeat(k.maxIdLength)]) {
      expect(k.idToKeyPart(id)).toBe(id);
      expect(k.keyPartToId(id)).toBe(id);
    }
    expect(k.backupValidity('A'.repeat(k.maxIdLength)).length).toBe(250);
  });

  it.each([
    ['%', '~%25'],
    ['a/b+c=d', '~a%2Fb%2Bc%3Dd'],
    ['has space', '~has%20space'],
    ['tab\tnl\n', '~tab%09nl%0A'],
    ['café', '~caf%C3%A9'],
    ['a.b.c', '~a.b.c'],
    ['~x', '~%7Ex'],
    ['#x', '~%23x'],
  ])('escapes %j as %j, reversibly', (id, part) => {
    expect(k.idToKeyPart(id)).toBe(part);
    expect(k.keyPartToId(part)).toBe(id);
    expect(isValidMemcachedKey(k.backupValidity(id))).toBe(true);
  });

  it('hashes ids whose escaped form would not fit (not reversible from the key)', () => {
    for (const id of ['x'.repeat(300), 'A'.repeat(k.maxIdLength + 1), 'é'.repeat(100)]) {
      const part = k.idToKeyPart(id);
      expect(part).toMatch(/^#[A-Za-z0-9_-]{43}$/);
      expect(k.keyPartToId(part)).toBeUndefined();
      expect(isValidMemcachedKey(k.backupValidity(id))).toBe(true);
    }
    expect(k.idToKeyPart('x'.repeat(300))).not.toBe(k.idToKeyPart('x'.repeat(301)));
  });

  it('maps no key part to an id that would not map back to it', () => {
    for (const part of ['~%zz', '~ab', 'validity:x', '~%41']) expect(k.keyPartToId(part)).toBeUndefined();
  });
});

describe('keys, exactly as Java msm', () => {
  it('without prefix', () => {
    const k = new KeyFormat('');
    expect([
      k.session('X-n1'),
      k.validity('X-n1'),
      k.backup('X-n1'),
      k.backupValidity('X-n1'),
      k.lock('X-n1'),
      k.ping('n1'),
    ]).toEqual(['X-n1', 'validity:X-n1', 'bak:X-n1', 'bak:validity:X-n1', 'lock:X-n1', 'ping-n1']);
  });
  it('with prefix: bak: of the formatted validity key (msm createBackupKey(createValidityInfoKeyName))', () => {
    const k = new KeyFormat('shop_');
    expect([k.session('X'), k.validity('X'), k.backup('X'), k.backupValidity('X'), k.lock('X')]).toEqual([
      'shop_X',
      'validity:shop_X',
      'bak:shop_X',
      'bak:shop_validity:shop_X',
      'lock:shop_X',
    ]);
  });
});
