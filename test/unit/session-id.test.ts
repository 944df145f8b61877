import { SessionIdFormat, randomPart } from '../../lib/session-id';
import { KeyFormat } from '../../lib/keys';

const fmt = new SessionIdFormat(new Set(['n1', 'n2']), true, new KeyFormat('').maxIdLength);

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
    const single = new SessionIdFormat(new Set(['n1']), false, 200);
    expect(single.create('n1', undefined)).toMatch(/^[0-9A-F]{32}$/);
    expect(single.parse('ABC-n1')).toMatchObject({ random: 'ABC-n1', nodeId: undefined });
  });

  it.each([
    ['', 'empty'],
    ['has space-n1', 'space'],
    ['abc\u0000-n1', 'control character'],
    ['abc\n', 'newline'],
    ['café-n1', 'non-ASCII'],
    ['a.b.c', 'two routes'],
    ['abc.', 'empty route'],
    ['abc-n1.r-x', 'dash in route'],
    ['x'.repeat(fmt.maxLength + 1), 'too long'],
    [42, 'not a string'],
  ] as Array<[unknown, string]>)('rejects %j (%s)', (id) => {
    expect(fmt.parse(id)).toBeNull();
  });

  it('max length keeps the longest derived key within memcached\'s 250 bytes', () => {
    const keys = new KeyFormat('shop_');
    const f = new SessionIdFormat(new Set(['n1']), true, keys.maxIdLength);
    const id = 'A'.repeat(f.maxLength);
    expect(f.parse(id)).not.toBeNull();
    expect(keys.backupValidity(id).length).toBe(250);
  });
});

describe('keys, exactly as Java msm', () => {
  it('without prefix', () => {
    const k = new KeyFormat('');
    expect([k.session('X-n1'), k.validity('X-n1'), k.backup('X-n1'), k.backupValidity('X-n1'), k.lock('X-n1'), k.ping('n1')])
      .toEqual(['X-n1', 'validity:X-n1', 'bak:X-n1', 'bak:validity:X-n1', 'lock:X-n1', 'ping-n1']);
  });
  it('with prefix: bak: of the formatted validity key (msm createBackupKey(createValidityInfoKeyName))', () => {
    const k = new KeyFormat('shop_');
    expect([k.session('X'), k.validity('X'), k.backup('X'), k.backupValidity('X'), k.lock('X')])
      .toEqual(['shop_X', 'validity:shop_X', 'bak:shop_X', 'bak:shop_validity:shop_X', 'lock:shop_X']);
  });
});
